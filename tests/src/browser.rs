//! A real browser for the scenario tests: headless Debian Chromium driven
//! through chromedriver (WebDriver), with the DevTools protocol for what
//! WebDriver lacks (a visitor's address header, network throttling, the
//! response headers and statuses of what the page loaded, cookies' flags).
//!
//! One [`Driver`] per test process: it starts chromedriver on a free port in
//! a process group of its own and kills that group when dropped, so neither
//! chromedriver nor a Chromium it started outlives the test, even one that
//! panics. Each [`Browser`] is one WebDriver session: a fresh Chromium with
//! its own empty profile (a visitor with no cookies), screenshots of each
//! step under `target/test-artifacts/browser/{test}/`.

pub mod audit;
pub mod budget;
pub mod cdp;
pub mod seed;
pub mod site;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::repo_root;
use cdp::Seen;

/// Chromium's flags for every session: headless, and nothing that talks to
/// the network on its own (updates, sync, QUIC probes), so the only traffic
/// is the test's.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// How long a page or a WebDriver command may take before the step fails.
const STEP_LIMIT: Duration = Duration::from_secs(30);

/// The Chromium binary: `$CITYBOARD_CHROMIUM`, else Debian's `chromium`.
fn chromium_bin() -> PathBuf {
    std::env::var_os("CITYBOARD_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The chromedriver binary: `$CITYBOARD_CHROMEDRIVER`, else Debian's.
fn chromedriver_bin() -> PathBuf {
    std::env::var_os("CITYBOARD_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// A TCP port nobody listens on now (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A chromedriver of this test's own, killed (with its browsers) on drop.
pub struct Driver {
    child: Child,
    port: u16,
    /// Where screenshots and logs of this test go.
    pub artifacts: PathBuf,
    profiles: PathBuf,
    sessions: AtomicUsize,
}

impl Driver {
    /// Starts chromedriver for the test `test` (names its artifact folder,
    /// emptied first) and waits until it is ready.
    pub async fn start(test: &str) -> Driver {
        for bin in [chromium_bin(), chromedriver_bin()] {
            assert!(
                bin.exists(),
                "{} is missing: deploy/install.sh browser installs it",
                bin.display()
            );
        }
        let artifacts = repo_root().join("target/test-artifacts/browser").join(test);
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).expect("artifact folder");
        let profiles =
            std::env::temp_dir().join(format!("cityboard-browser-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profiles);
        std::fs::create_dir_all(&profiles).expect("profile folder");
        let port = free_port();
        let log = artifacts.join("chromedriver.log");
        let child = Command::new(chromedriver_bin())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: Chromium and its helpers join it, and one
            // killpg on drop ends them all.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver_bin().display()));
        let driver = Driver {
            child,
            port,
            artifacts,
            profiles,
            sessions: AtomicUsize::new(0),
        };
        // Ready once it accepts connections: it listens only after its
        // start-up is done.
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver on port {port} not listening after 20 s (log: {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }

    /// A new browser session (a fresh Chromium and profile: no cookies, no
    /// cache) named `label` in screenshots.
    pub async fn session(&self, label: &str, options: Options) -> Browser {
        let n = self.sessions.fetch_add(1, Ordering::SeqCst);
        let profile = self.profiles.join(format!("{n}-{label}"));
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let chrome = json!({
            "binary": chromium_bin(),
            "args": args,
        });
        let mut caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome,
            // An alert stays open, for the XSS checks to see.
            "unhandledPromptBehavior": "ignore",
            "pageLoadStrategy": "normal",
        });
        if options.log_network {
            caps["goog:loggingPrefs"] = json!({"performance": "ALL"});
            caps["goog:chromeOptions"]["perfLoggingPrefs"] =
                json!({"enableNetwork": true, "enablePage": false});
        }
        let caps = caps.as_object().expect("an object").clone();
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("new WebDriver session {label}: {e}"));
        let browser = Browser {
            client,
            label: format!("{n}-{label}"),
            shots: self.artifacts.clone(),
            step: AtomicU32::new(0),
            javascript: options.javascript,
        };
        browser.cdp("Network.enable", json!({})).await;
        if !options.javascript {
            // Page scripts off for every document of the session (the
            // content-setting pref would do too, but then WebDriver's
            // asynchronous scripts, axe-core's, could not run either:
            // this one can be lifted for a moment, see `Browser::axe`).
            browser.scripts_disabled(true).await;
        }
        if let Some(ip) = options.client_ip {
            browser
                .cdp(
                    "Network.setExtraHTTPHeaders",
                    json!({"headers": {"CF-Connecting-IP": ip}}),
                )
                .await;
        }
        browser
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever is left of the group (a Chromium helper slow to exit).
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profiles);
    }
}

/// How a session's browser is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// Whether pages' scripts run.
    pub javascript: bool,
    /// The visitor's address, sent as `CF-Connecting-IP` on every request.
    pub client_ip: Option<String>,
    /// Whether chromedriver logs the network events ([`Browser::responses`]).
    pub log_network: bool,
}

/// One browser session: one visitor.
pub struct Browser {
    client: Client,
    label: String,
    shots: PathBuf,
    step: AtomicU32,
    /// Whether pages' scripts run in it.
    pub javascript: bool,
}

impl Browser {
    /// A DevTools protocol command on the session's page; panics with the
    /// command's name if chromedriver refuses it.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.client
            .issue_cmd(cdp::Execute {
                cmd: cmd.to_string(),
                params,
            })
            .await
            .unwrap_or_else(|e| panic!("[{}] DevTools {cmd}: {e}", self.label))
    }

    /// Turns page scripts off (or back on) for the documents that follow;
    /// a document already loaded keeps what its scripts did or did not do.
    pub async fn scripts_disabled(&self, disabled: bool) {
        self.cdp(
            "Emulation.setScriptExecutionDisabled",
            json!({"value": disabled}),
        )
        .await;
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        let done = tokio::time::timeout(STEP_LIMIT, self.client.goto(url))
            .await
            .unwrap_or_else(|_| {
                panic!("[{}] opening {url}: no load in {STEP_LIMIT:?}", self.label)
            });
        match done {
            Ok(()) => {}
            // A dialog the page opened: the checks that follow report it.
            Err(e) if e.is_unexpected_alert_open() => {}
            Err(e) => panic!("[{}] opening {url}: {e}", self.label),
        }
    }

    /// The current URL.
    pub async fn url(&self) -> url::Url {
        self.client
            .current_url()
            .await
            .unwrap_or_else(|e| panic!("[{}] current URL: {e}", self.label))
    }

    /// The current URL's path and query (`/post/12?x=1`).
    pub async fn path(&self) -> String {
        let url = self.url().await;
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// The page's DOM as it is now (after any script), serialized.
    pub async fn html(&self) -> String {
        self.client
            .source()
            .await
            .unwrap_or_else(|e| panic!("[{}] page source: {e}", self.label))
    }

    /// Saves a screenshot of the viewport as `{label}-{nn}-{step}.png`.
    pub async fn shot(&self, step: &str) -> PathBuf {
        let n = self.step.fetch_add(1, Ordering::SeqCst);
        let name: String = step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path = self.shots.join(format!("{}-{n:02}-{name}.png", self.label));
        match self.client.screenshot().await {
            Ok(png) => std::fs::write(&path, png).expect("screenshot file"),
            // A page with an open alert cannot be shot; the step that
            // checks for dialogs says so more clearly.
            Err(e) => eprintln!("[{}] screenshot {step}: {e}", self.label),
        }
        path
    }

    /// The first element matching `css`, or `None`.
    pub async fn try_find(&self, css: &str) -> Option<Element> {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => Some(e),
            Err(e) if e.is_no_such_element() => None,
            Err(e) => panic!("[{}] finding {css}: {e}", self.label),
        }
    }

    /// The first element matching `css`; panics naming it and the page.
    pub async fn find(&self, css: &str) -> Element {
        match self.try_find(css).await {
            Some(e) => e,
            None => panic!(
                "[{}] on {}: no element `{css}`; the page:\n{}",
                self.label,
                self.path().await,
                excerpt(&self.html().await)
            ),
        }
    }

    /// Every element matching `css`.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("[{}] finding all {css}: {e}", self.label))
    }

    /// Types `text` into the field `css` (emptied first), as a user would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("[{}] clearing {css}: {e}", self.label));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("[{}] typing into {css}: {e}", self.label));
    }

    /// Sets the field `css` to `value` through the DOM: exact for any text
    /// (WebDriver's typing maps some code points to keys), and fast.
    pub async fn set_value(&self, css: &str, value: &str) {
        self.find(css).await;
        self.script(
            "document.querySelector(arguments[0]).value = arguments[1];",
            vec![json!(css), json!(value)],
        )
        .await;
    }

    /// Turns off the browser's own form checks (`required`, `type=email`,
    /// `maxlength` on typed text) for the forms of the page, as a hostile
    /// client would: the server's checks are what a test of bad input is
    /// about.
    pub async fn without_form_checks(&self) {
        self.script(
            "for (const f of document.forms) f.noValidate = true;",
            vec![],
        )
        .await;
    }

    /// Chooses `value` in the `<select>` `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.find(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("[{}] choosing {value} in {css}: {e}", self.label));
    }

    /// Clicks the element `css` (a link or a submit button) and waits for
    /// the document it leads to; panics if none loads.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.navigate_by(&format!("clicking {css}"), element.click())
            .await;
    }

    /// Presses Enter in the field `css` (submits its form) and waits for
    /// the document it leads to.
    pub async fn press_enter(&self, css: &str) {
        let element = self.find(css).await;
        self.navigate_by(&format!("Enter in {css}"), element.send_keys("\u{E007}"))
            .await;
    }

    /// Goes back in history and waits for the page.
    pub async fn back(&self) {
        self.navigate_by("going back", self.client.back()).await;
    }

    /// Runs `action`, which must replace the document, and waits until the
    /// new one has loaded. The old document is marked with a random number
    /// first, so a click that returns before the navigation started cannot
    /// be mistaken for one that finished (a form re-rendered at the same
    /// URL is a new document too).
    async fn navigate_by(
        &self,
        what: &str,
        action: impl std::future::Future<Output = Result<(), CmdError>>,
    ) {
        let mark = self
            .script("return (window.__cityboardMark = Math.random());", vec![])
            .await;
        let done = tokio::time::timeout(STEP_LIMIT, action)
            .await
            .unwrap_or_else(|_| panic!("[{}] {what}: no load in {STEP_LIMIT:?}", self.label));
        match done {
            Ok(()) => {}
            // A dialog the page opened: the checks that follow report it.
            Err(e) if e.is_unexpected_alert_open() => return,
            Err(e) => panic!("[{}] {what}: {e}", self.label),
        }
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let state = self
                .client
                .execute(
                    "return [window.__cityboardMark || null, document.readyState];",
                    vec![],
                )
                .await;
            match state {
                Ok(v) if v[0] != mark && v[1] == "complete" => return,
                Ok(_) => {}
                Err(e) if e.is_unexpected_alert_open() => return,
                // Between documents: the old one is gone, the new one not
                // yet scriptable.
                Err(e) if is_transient(&e) => {}
                Err(e) => panic!("[{}] {what}, waiting for the page: {e}", self.label),
            }
            assert!(
                Instant::now() < deadline,
                "[{}] {what}: still on {} after {STEP_LIMIT:?} (no navigation)",
                self.label,
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page
    /// and returns its value (a returned promise is awaited).
    pub async fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("[{}] script failed: {e}", self.label))
    }

    /// The text of an open JavaScript dialog (alert, confirm, prompt), if
    /// one is open.
    pub async fn dialog(&self) -> Option<String> {
        match self.client.get_alert_text().await {
            Ok(text) => Some(text),
            Err(e) if e.is_no_such_alert() => None,
            Err(e) => panic!("[{}] asking for an open dialog: {e}", self.label),
        }
    }

    /// Every cookie the browser holds, with its flags (DevTools
    /// `Network.getAllCookies`: WebDriver's view leaves out none, but
    /// this one also says `secure` as the browser stored it).
    pub async fn cookies(&self) -> Vec<Value> {
        self.cdp("Network.getAllCookies", json!({})).await["cookies"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The responses the browser received since the last call (from the
    /// performance log).
    pub async fn responses(&self) -> Vec<Seen> {
        let entries = self
            .client
            .issue_cmd(cdp::PerformanceLog)
            .await
            .unwrap_or_else(|e| panic!("[{}] performance log: {e}", self.label));
        cdp::responses(&entries)
    }

    /// Drops the responses logged so far (before a step whose own
    /// responses the test reads).
    pub async fn forget_responses(&self) {
        self.responses().await;
    }

    /// The last document response among `seen` for a URL whose path is
    /// `path` (query ignored), or `None`.
    pub fn document<'a>(seen: &'a [Seen], path: &str) -> Option<&'a Seen> {
        seen.iter().rev().find(|s| {
            s.kind == "Document" && url::Url::parse(&s.url).is_ok_and(|u| u.path() == path)
        })
    }

    /// This session's name in screenshots and messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Ends the session (Chromium exits).
    pub async fn quit(self) {
        let _ = self.client.close().await;
    }
}

/// Errors WebDriver gives while a navigation replaces the document.
fn is_transient(e: &CmdError) -> bool {
    let text = e.to_string();
    e.is_stale_element_reference()
        || text.contains("no such execution context")
        || text.contains("javascript error")
        || text.contains("detached")
}

/// The start of a long page, for failure messages.
pub fn excerpt(html: &str) -> String {
    const MAX: usize = 3000;
    if html.len() <= MAX {
        return html.to_string();
    }
    let mut end = MAX;
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &html[..end], html.len())
}

/// The project's npm tools folder (`.tools`, or `$CITYBOARD_TOOLS`).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("CITYBOARD_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools"))
}

/// Reads a file the test needs, naming who installs it when missing.
pub fn read_tool_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (deploy/install.sh browser installs it)",
            path.display()
        )
    })
}

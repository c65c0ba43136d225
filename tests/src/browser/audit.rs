//! What the browser tests check on every page: accessibility (axe-core, run
//! inside the page) and injection (the page's DOM read back with an HTML
//! parser, looking for anything a payload could have added).

use std::sync::OnceLock;

use scraper::{Html, Node};
use serde_json::Value;

use super::{Browser, read_tool_file, tools_dir};

/// axe-core's browser bundle as `deploy/install.sh browser` installed it.
fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| read_tool_file(&tools_dir().join("node_modules/axe-core/axe.min.js")))
}

/// One axe-core violation: the rule, its impact and where it fails.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The page it was found on.
    pub page: String,
    /// The rule id (`color-contrast`, `label`, ...).
    pub rule: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: String,
    /// What the rule asks for.
    pub help: String,
    /// CSS paths of the first failing nodes.
    pub nodes: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} [{}] {}: {} at {}",
            self.page,
            self.impact,
            self.rule,
            self.help,
            self.nodes.join(", ")
        )
    }
}

impl Browser {
    /// Runs axe-core on the page as it is now and returns its violations.
    /// The bundle is injected through WebDriver (DevTools evaluation, which
    /// the page's CSP does not govern).
    pub async fn axe(&self) -> Vec<Violation> {
        let page = self.path().await;
        let script = format!(
            "{}\n;return axe.run(document, {{resultTypes: ['violations']}}).then(r => \
             r.violations.map(v => ({{rule: v.id, impact: v.impact || '', help: v.help, \
             nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}})));",
            axe_source()
        );
        // With page scripts off, axe-core's timers would never fire: lift
        // the switch while it runs (the page's own scripts, skipped at
        // load, stay skipped).
        if !self.javascript {
            self.scripts_disabled(false).await;
        }
        let found = self.script(&script, vec![]).await;
        if !self.javascript {
            self.scripts_disabled(true).await;
        }
        found
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| Violation {
                page: page.clone(),
                rule: str_of(&v["rule"]),
                impact: str_of(&v["impact"]),
                help: str_of(&v["help"]),
                nodes: v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(str_of)
                    .collect(),
            })
            .collect()
    }

    /// The serious and critical violations on the page now (acceptance 3
    /// allows none).
    pub async fn axe_serious(&self) -> Vec<Violation> {
        self.axe()
            .await
            .into_iter()
            .filter(|v| v.impact == "serious" || v.impact == "critical")
            .collect()
    }

    /// Checks the page now for injection: no dialog open, and nothing in
    /// its DOM that a payload could have put there ([`injected`]). Returns
    /// the findings, each naming the page.
    pub async fn injection_findings(&self) -> Vec<String> {
        if let Some(text) = self.dialog().await {
            // Close it so the test can go on and report everything.
            let _ = self.client.dismiss_alert().await;
            return vec![format!("a dialog opened on this page: {text:?}")];
        }
        injected(&self.html().await)
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Elements the site never renders from data: any of these in a page that
/// shows user input is an injection.
/// (An element a payload could add that the site does use, like
/// `<details>`, is caught by its `on*` attribute instead.)
const FOREIGN: &[&str] = &[
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "svg",
    "math",
    "image",
    "video",
    "audio",
    "source",
    "base",
    "style",
    "marquee",
    "isindex",
    "xmp",
    "plaintext",
    "portal",
];

/// Attributes holding a URL the browser may load or navigate to.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "data",
    "poster",
    "background",
    "xlink:href",
    "srcdoc",
    "ping",
    "manifest",
    "codebase",
];

/// What the HTML parser finds in `html` that no page of the site contains on
/// its own: a script other than the site's own `/static/` files, an element
/// of [`FOREIGN`], any `on*` event attribute, a `javascript:` (or
/// `vbscript:`, `data:text/html`) URL, a `<meta http-equiv>` refresh.
pub fn injected(html: &str) -> Vec<String> {
    let doc = Html::parse_document(html);
    let mut found = Vec::new();
    for node in doc.tree.nodes() {
        let Node::Element(el) = node.value() else {
            continue;
        };
        let name = el.name();
        let shown = || {
            let attrs: Vec<String> = el.attrs().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("<{name} {}>", attrs.join(" "))
        };
        match name {
            "script" => {
                let own = el.attr("src").is_some_and(|s| s.starts_with("/static/"))
                    && node.children().next().is_none();
                if !own {
                    found.push(format!("a script that is not the site's: {}", shown()));
                }
            }
            // The site's images (none yet) come from its own paths.
            "img" if !el.attr("src").is_some_and(|s| s.starts_with("/static/")) => {
                found.push(format!("an image the site did not put there: {}", shown()));
            }
            "meta" if el.attr("http-equiv").is_some() => {
                found.push(format!("a meta http-equiv: {}", shown()));
            }
            _ if FOREIGN.contains(&name) => {
                found.push(format!("an element the site never renders: {}", shown()));
            }
            _ => {}
        }
        for (attr, value) in el.attrs() {
            let attr = attr.to_ascii_lowercase();
            if attr.starts_with("on") {
                found.push(format!("an event attribute {attr}: {}", shown()));
            }
            if URL_ATTRIBUTES.contains(&attr.as_str()) && dangerous_url(value) {
                found.push(format!("a script URL in {attr}: {}", shown()));
            }
        }
    }
    found
}

/// Whether a URL attribute's value would run script: the scheme as a browser
/// reads it (control characters and whitespace dropped, any case).
pub fn dangerous_url(value: &str) -> bool {
    let squeezed: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    squeezed.starts_with("javascript:")
        || squeezed.starts_with("vbscript:")
        || squeezed.starts_with("data:text/html")
}

/// The text content of `html` (every text node, joined), to find a payload
/// shown as text.
pub fn text_of(html: &str) -> String {
    let doc = Html::parse_document(html);
    doc.root_element().text().collect::<Vec<_>>().join("")
}

/// What a journey's pages showed: each page is screenshotted, checked by
/// axe-core and for injection as it is reached; the test asserts at the end,
/// so one run lists every page's problems.
pub struct Audit {
    /// Whether pages are run through axe-core too (the XSS test only looks
    /// for injection).
    pub axe: bool,
    /// Serious and critical axe-core violations, every page.
    pub violations: Vec<Violation>,
    /// The minor and moderate ones (reported, not failed).
    pub lesser: Vec<Violation>,
    /// Injection findings, each naming its page.
    pub injections: Vec<String>,
    /// Pages checked.
    pub pages: usize,
}

impl Audit {
    /// An audit of a journey; `axe` adds axe-core to each page's checks.
    pub fn new(axe: bool) -> Audit {
        Audit {
            axe,
            violations: Vec::new(),
            lesser: Vec::new(),
            injections: Vec::new(),
            pages: 0,
        }
    }

    /// Screenshots the page as step `step` and checks it.
    pub async fn page(&mut self, browser: &Browser, step: &str) {
        browser.shot(step).await;
        self.check(browser, step).await;
    }

    /// Checks the page (no screenshot).
    pub async fn check(&mut self, browser: &Browser, step: &str) {
        // Findings first: they close an open dialog, which would fail any
        // other command.
        let findings = browser.injection_findings().await;
        let path = browser.path().await;
        for f in findings {
            self.injections
                .push(format!("[{}] {step} {path}: {f}", browser.label()));
        }
        if self.axe {
            let (serious, lesser): (Vec<_>, Vec<_>) = browser
                .axe()
                .await
                .into_iter()
                .partition(|v| v.impact == "serious" || v.impact == "critical");
            self.violations.extend(serious);
            self.lesser.extend(lesser);
        }
        self.pages += 1;
    }

    /// Fails listing every serious or critical violation found (and prints
    /// the lesser ones first).
    pub fn assert_accessible(&self) {
        for v in &self.lesser {
            println!("axe-core (not failing): {v}");
        }
        assert!(
            self.violations.is_empty(),
            "axe-core: {} serious or critical violations on {} pages:\n{}",
            self.violations.len(),
            self.pages,
            self.violations
                .iter()
                .map(|v| format!("  {v}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Fails listing every injection found.
    pub fn assert_no_injection(&self) {
        assert!(
            self.injections.is_empty(),
            "injection on {} of {} pages:\n{}",
            self.injections.len(),
            self.pages,
            self.injections.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_payload_is_clean_and_a_raw_one_is_found() {
        let page = |body: &str| {
            format!(
                "<!doctype html><html><head><script src=\"/static/site.1.js\" defer></script>\
                 </head><body><main>{body}</main></body></html>"
            )
        };
        let escaped =
            page("<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1><a href=\"/post/1\">x</a>");
        assert_eq!(injected(&escaped), Vec::<String>::new());
        assert!(text_of(&escaped).contains("<script>alert(1)</script>"));
        for raw in [
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            "<a href=\" JaVaScRiPt:alert(1)\">x</a>",
            "<a href=\"java&#x09;script:alert(1)\">x</a>",
            "<svg onload=alert(1)>",
            "<p title=\"x\" onmouseover=\"alert(1)\">x</p>",
            "<iframe srcdoc=\"x\"></iframe>",
        ] {
            assert!(!injected(&page(raw)).is_empty(), "{raw} not found");
        }
    }
}

//! The supervisor: one long-lived process per stack that owns every
//! component, starts them in order, restarts the ones that die (with
//! backoff, counted) and stops them all on `down`.
//!
//! It keeps no state that matters in memory: pid files and `state.json`
//! say everything, so a supervisor that was SIGKILLed is replaced by the
//! next `up`, which adopts the components still running instead of
//! starting them twice.

use std::fs::File;
use std::iter::Peekable;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{SignalKind, signal};

use crate::arrangement::Arrangement;
use crate::components::{self, Component, Launch};
use crate::home::Home;
use crate::process::{ProcessId, port_is_free};
use crate::state::{ComponentState, Health, Phase, StackState};
use crate::topology::Topology;
use crate::{broker, log_tail};

/// First wait before restarting a component that died; doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A component healthy this long has its backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The waits before each restart of a component: [`FIRST_BACKOFF`],
/// doubling up to [`MAX_BACKOFF`], for as many restarts as it takes. The
/// peeked value is the wait the next restart will use.
fn restart_backoff() -> Peekable<ExponentialBackoff> {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_factor(2.0)
        .without_max_times()
        .build()
        .peekable()
}
/// Longest a component may take to pass its first readiness probe.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the supervisor looks at its components.
const TICK: Duration = Duration::from_millis(250);
/// What `status` shows as the last error of a held component.
const HELD: &str = "held stopped by the arrangement (failover or restore in progress)";
/// How long a component may take to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Takes the supervisor lock of a home; `None` if another process holds it.
pub fn try_lock(home: &Home) -> Result<Option<Flock<File>>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.supervisor_lock())
        .context("opening the supervisor lock")?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(anyhow!("locking the supervisor lock: {e}")),
    }
}

struct Supervised {
    component: Component,
    /// Set when we started it; `None` for an adopted process (not our child).
    child: Option<Child>,
    process: Option<ProcessId>,
    health: Health,
    restarts: u32,
    /// The waits before the coming restarts.
    backoff: Peekable<ExponentialBackoff>,
    next_start: Instant,
    ready_deadline: Instant,
    healthy_since: Option<Instant>,
    last_error: Option<String>,
    /// Kept stopped: the arrangement holds it (a fenced old primary, a
    /// shard being restored).
    held: bool,
}

impl Supervised {
    fn new(component: Component, held: bool) -> Supervised {
        Supervised {
            component,
            child: None,
            process: None,
            health: if held {
                Health::Stopped
            } else {
                Health::Pending
            },
            restarts: 0,
            backoff: restart_backoff(),
            next_start: Instant::now(),
            ready_deadline: Instant::now(),
            healthy_since: None,
            last_error: held.then(|| HELD.to_string()),
            held,
        }
    }

    fn is_alive(&mut self) -> bool {
        match (&mut self.child, self.process) {
            (Some(child), _) => matches!(child.try_wait(), Ok(None)),
            (None, Some(process)) => process.is_alive(),
            (None, None) => false,
        }
    }

    fn exit_reason(&mut self) -> String {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => format!("exited: {status}"),
            _ => "exited".into(),
        }
    }
}

/// Runs the supervisor of `home` until `down` (SIGTERM) or a failed first start.
///
/// SIGHUP makes it re-read the home's arrangement ([`crate::arrangement`]):
/// `cityboard failover`, `restore` and the like write the file and send the
/// signal, then wait for the state file to show the generation they wrote.
/// A signal rather than a socket or a polled control file: the supervisor
/// already lives by signals (`down` is SIGTERM), its pid is in the run
/// directory, and "re-read your configuration" is what SIGHUP means to
/// every daemon; the file, not the signal, carries what changed, so a
/// supervisor started later (`up` after a crash) reads the same thing.
pub async fn run(home: Home) -> Result<()> {
    let _lock = try_lock(&home)?.context("another supervisor already runs this stack")?;
    let topology = Topology::load(&home.topology_file())?;
    let arrangement = Arrangement::load(&home.arrangement_file())?;
    let me = ProcessId::of(std::process::id() as i32).context("reading our own process")?;
    me.write(&home.run_dir().join("supervisor.pid"))?;

    let mut supervisor = Supervisor {
        state: StackState {
            phase: Phase::Starting,
            error: None,
            supervisor: Some(me),
            updated_at: String::new(),
            apex: topology.apex.clone(),
            broker: format!("127.0.0.1:{}", topology.broker_port()),
            regions: components::region_states(&topology, &home.secrets_dir(), &arrangement)?,
            components: Vec::new(),
            arrangement: arrangement.generation,
        },
        items: components::plan(&topology, &home, &arrangement)
            .into_iter()
            .map(|component| {
                let held = arrangement.is_held(&component.name);
                Supervised::new(component, held)
            })
            .collect(),
        topology,
        home,
    };
    supervisor.publish();

    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    // Registered before the first start, so that a SIGHUP then waits in
    // the stream instead of killing us (its default action).
    let mut hangup = signal(SignalKind::hangup())?;
    let started = tokio::select! {
        result = supervisor.bring_up() => result,
        _ = term.recv() => Err(anyhow!("stopped by SIGTERM while starting")),
        _ = interrupt.recv() => Err(anyhow!("stopped by SIGINT while starting")),
    };
    if let Err(e) = started {
        let message = format!("{e:#}");
        say(&format!("start failed: {message}"));
        supervisor.state.phase = Phase::Failed;
        supervisor.state.error = Some(message.clone());
        supervisor.publish();
        supervisor.stop_all();
        supervisor.state.phase = Phase::Failed;
        supervisor.publish();
        bail!(message);
    }
    supervisor.state.phase = Phase::Running;
    supervisor.publish();
    say("stack running");

    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => supervisor.watch().await,
            _ = hangup.recv() => supervisor.reload(),
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    say("stopping");
    supervisor.state.phase = Phase::Stopping;
    supervisor.publish();
    supervisor.stop_all();
    supervisor.state.phase = Phase::Stopped;
    supervisor.publish();
    let _ = std::fs::remove_file(supervisor.home.run_dir().join("supervisor.pid"));
    say("stopped");
    Ok(())
}

struct Supervisor {
    home: Home,
    topology: Topology,
    items: Vec<Supervised>,
    state: StackState,
}

impl Supervisor {
    /// Starts (or adopts) every component in order, each ready before the next.
    async fn bring_up(&mut self) -> Result<()> {
        // Check every port that a fresh start needs before starting anything,
        // so that a taken port fails fast and names who wanted it.
        for item in &mut self.items {
            if item.held {
                // A fence holds across supervisors: a held member some
                // earlier supervisor left running is stopped, not adopted.
                stop_item(&self.home, item);
                item.health = Health::Stopped;
                item.last_error = Some(HELD.into());
                continue;
            }
            if let Some(process) = ProcessId::read(&self.home.pid_file(&item.component.name))
                && process.is_alive()
            {
                say(&format!(
                    "{}: adopting running pid {}",
                    item.component.name, process.pid
                ));
                item.process = Some(process);
                item.health = Health::Starting;
                continue;
            }
            let c = &item.component;
            if !port_is_free(c.port, c.uses_udp()) {
                bail!(
                    "port {} wanted by {} is already in use by another program \
                     (see `ss -ltnp 'sport = :{}'`), or choose another port_base in the topology",
                    c.port,
                    c.name,
                    c.port
                );
            }
        }
        for i in 0..self.items.len() {
            if self.items[i].held {
                continue;
            }
            if self.items[i].process.is_none() {
                self.start(i).await?;
            }
            self.items[i].ready_deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if !self.items[i].is_alive() {
                    let item = &mut self.items[i];
                    let reason = item.exit_reason();
                    let log = self.home.log_file(&item.component.name);
                    bail!(
                        "{} {reason} while starting; last lines of {}:\n{}",
                        item.component.name,
                        log.display(),
                        log_tail(&log, 15)
                    );
                }
                match tokio::time::timeout(Duration::from_secs(3), self.items[i].component.probe())
                    .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => self.items[i].last_error = Some(format!("{e:#}")),
                    Err(_) => self.items[i].last_error = Some("readiness probe timed out".into()),
                }
                if Instant::now() > self.items[i].ready_deadline {
                    let item = &self.items[i];
                    bail!(
                        "{} did not become ready within {:?}: {}",
                        item.component.name,
                        READY_TIMEOUT,
                        item.last_error.as_deref().unwrap_or("no answer")
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            self.items[i]
                .component
                .after_ready()
                .await
                .with_context(|| format!("{}: after start", self.items[i].component.name))?;
            self.items[i]
                .component
                .after_start(&self.topology)
                .await
                .with_context(|| format!("{}: first start", self.items[i].component.name))?;
            self.mark_healthy(i);
            if matches!(self.items[i].component.launch, Launch::Broker { .. }) {
                self.ensure_topics().await?;
            }
        }
        Ok(())
    }

    /// Creates every region's topics, as soon as the broker is ready and
    /// before any role starts: a consumer that subscribes to a topic that
    /// does not exist yet is given no partitions, and librdkafka looks for
    /// the topic again only at its next metadata refresh, five minutes
    /// later (seen: a publisher with nothing to consume for 300 s after
    /// `up`, while its region's posts never reached KV).
    async fn ensure_topics(&self) -> Result<()> {
        for region in &self.topology.regions {
            broker::ensure_topics(
                self.topology.broker_port(),
                &broker::region_topics(&region.name),
                self.topology.partitions,
            )
            .await
            .with_context(|| format!("creating the topics of {}", region.name))?;
        }
        Ok(())
    }

    fn mark_healthy(&mut self, i: usize) {
        let item = &mut self.items[i];
        item.health = Health::Healthy;
        item.healthy_since = Some(Instant::now());
        item.last_error = None;
        say(&format!("{}: healthy", item.component.name));
        self.publish();
    }

    /// Prepares and spawns component `i` as our child.
    async fn start(&mut self, i: usize) -> Result<()> {
        let home = self.home.clone();
        let item = &mut self.items[i];
        let name = item.component.name.clone();
        item.component
            .prepare(&home)
            .await
            .with_context(|| format!("preparing {name}"))?;
        let log_path = home.log_file(&name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = item.component.command()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        let process = ProcessId::of(child.id() as i32)
            .with_context(|| format!("{name} exited at once; see {}", log_path.display()))?;
        process.write(&home.pid_file(&name))?;
        say(&format!("{name}: started pid {}", process.pid));
        item.child = Some(child);
        item.process = Some(process);
        item.health = Health::Starting;
        item.ready_deadline = Instant::now() + READY_TIMEOUT;
        self.publish();
        Ok(())
    }

    /// One look at every component: notice deaths, probe the starting,
    /// restart the dead whose backoff has passed.
    async fn watch(&mut self) {
        let now = Instant::now();
        for i in 0..self.items.len() {
            let item = &mut self.items[i];
            let alive = item.is_alive();
            match item.health {
                Health::Healthy | Health::Starting if !alive => {
                    let reason = item.exit_reason();
                    let wait = item.backoff.next().unwrap_or(MAX_BACKOFF);
                    say(&format!(
                        "{}: {reason}; restarting in {wait:?}",
                        item.component.name
                    ));
                    item.child = None;
                    item.process = None;
                    item.health = Health::Restarting;
                    item.restarts += 1;
                    item.last_error = Some(reason);
                    item.next_start = now + wait;
                    self.publish();
                }
                // A process that stayed up long enough earns a fresh backoff.
                Health::Healthy if item.healthy_since.is_some_and(|t| now - t > STABLE_AFTER) => {
                    item.backoff = restart_backoff();
                }
                Health::Healthy => {}
                Health::Starting => {
                    match tokio::time::timeout(Duration::from_secs(2), item.component.probe()).await
                    {
                        Ok(Ok(())) => {
                            if let Err(e) = item.component.after_ready().await {
                                item.last_error = Some(format!("{e:#}"));
                            } else {
                                self.mark_healthy(i);
                            }
                        }
                        _ if now > item.ready_deadline => {
                            say(&format!(
                                "{}: not ready in time; killing it",
                                item.component.name
                            ));
                            if let Some(p) = item.process {
                                p.stop(item.component.stop_signal(), Duration::from_secs(5));
                            }
                        }
                        _ => {}
                    }
                }
                Health::Restarting if now >= item.next_start => {
                    let c = &item.component;
                    if !port_is_free(c.port, c.uses_udp()) {
                        item.last_error = Some(format!("port {} is still in use", c.port));
                        item.next_start = now + item.backoff.peek().copied().unwrap_or(MAX_BACKOFF);
                        continue;
                    }
                    if let Err(e) = self.start(i).await {
                        let item = &mut self.items[i];
                        say(&format!("{}: restart failed: {e:#}", item.component.name));
                        item.last_error = Some(format!("{e:#}"));
                        item.next_start = now + item.backoff.next().unwrap_or(MAX_BACKOFF);
                        self.publish();
                    }
                }
                _ => {}
            }
        }
    }

    /// Stops every component, last started first, and removes its pid file.
    fn stop_all(&mut self) {
        for item in self.items.iter_mut().rev() {
            stop_item(&self.home, item);
            item.health = Health::Stopped;
        }
    }

    /// Re-reads the arrangement (SIGHUP) and applies it: a member newly
    /// held is stopped and kept stopped; a member released is started (its
    /// `prepare` makes a fresh replica when its data directory was
    /// removed); a running member whose role changed keeps running, as
    /// the command that changed it (promotion, a new primary_conninfo)
    /// already changed the process; the state file gets the shards' new
    /// addresses and the generation applied.
    fn reload(&mut self) {
        if let Err(e) = self.try_reload() {
            say(&format!("cannot apply the arrangement: {e:#}"));
            self.state.error = Some(format!("arrangement not applied: {e:#}"));
            self.publish();
        }
    }

    fn try_reload(&mut self) -> Result<()> {
        let arrangement = Arrangement::load(&self.home.arrangement_file())?;
        let regions =
            components::region_states(&self.topology, &self.home.secrets_dir(), &arrangement)?;
        let mut before = std::mem::take(&mut self.items);
        for component in components::plan(&self.topology, &self.home, &arrangement) {
            let held = arrangement.is_held(&component.name);
            let mut item = match before
                .iter()
                .position(|i| i.component.name == component.name)
            {
                Some(p) => before.remove(p),
                None => Supervised::new(component.clone(), held),
            };
            if held && !item.held {
                say(&format!("{}: held by the arrangement", component.name));
                stop_item(&self.home, &mut item);
                item.health = Health::Stopped;
                item.last_error = Some(HELD.into());
            } else if !held && item.held {
                say(&format!("{}: released by the arrangement", component.name));
                item.health = Health::Restarting;
                item.next_start = Instant::now();
                item.last_error = None;
            }
            item.held = held;
            item.component = component;
            self.items.push(item);
        }
        self.state.regions = regions;
        self.state.arrangement = arrangement.generation;
        self.state.error = None;
        say(&format!("arrangement {} applied", arrangement.generation));
        self.publish();
        Ok(())
    }

    fn publish(&mut self) {
        self.state.components = self
            .items
            .iter()
            .map(|item| ComponentState {
                name: item.component.name.clone(),
                kind: item.component.kind().into(),
                port: item.component.port,
                process: item.process,
                health: item.health,
                restarts: item.restarts,
                last_error: item.last_error.clone(),
                log: self
                    .home
                    .log_file(&item.component.name)
                    .display()
                    .to_string(),
            })
            .collect();
        if let Err(e) = self.state.write(&self.home.state_file()) {
            say(&format!("cannot write the state file: {e:#}"));
        }
    }
}

/// Stops one component's process (its stop signal, then SIGKILL after
/// [`STOP_GRACE`]) and removes its pid file.
fn stop_item(home: &Home, item: &mut Supervised) {
    if let Some(process) = item
        .process
        .take()
        .or_else(|| ProcessId::read(&home.pid_file(&item.component.name)))
        && process.is_alive()
    {
        say(&format!(
            "{}: stopping pid {}",
            item.component.name, process.pid
        ));
        if process.stop(item.component.stop_signal(), STOP_GRACE) {
            say(&format!("{}: had to be killed", item.component.name));
        }
    }
    if let Some(mut child) = item.child.take() {
        let _ = child.wait();
    }
    let _ = std::fs::remove_file(home.pid_file(&item.component.name));
}

fn say(message: &str) {
    println!("{} {message}", chrono::Utc::now().format("%H:%M:%S%.3f"));
}

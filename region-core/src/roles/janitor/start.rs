//! `region-core janitor`: its flags, and how the role is assembled from the
//! stack description.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::kv::KvReader;
use super::mail::{SmtpUrlError, check_smtp_url};
use super::metrics::JanitorMetrics;
use super::reconcile::Reconciler;
use super::{HomeCatalogs, Janitor, JanitorConfig, JanitorParts, Mailer};
use crate::bus::watermarks::Watermarks;
use crate::bus::{Producer, ProducerConfig};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::roles::common::{
    CloudflareKv, Common, catalog_and_router, component_url_from_state, metrics_listener,
    start_role,
};

/// Flags of `region-core janitor`.
#[derive(Debug, Clone, clap::Args)]
pub struct JanitorArgs {
    #[command(flatten)]
    pub common: Common,
    /// Time between sweeps (expiries, then reminders).
    #[arg(long, env = "CITYBOARD_SWEEP_PERIOD", default_value = "1m")]
    pub sweep_period: humantime::Duration,
    /// How long before a post expires its renewal reminder is sent.
    #[arg(long, env = "CITYBOARD_REMINDER_LEAD", default_value = "1day")]
    pub reminder_lead: humantime::Duration,
    /// Posts read per query, and commands produced at once.
    #[arg(long, env = "CITYBOARD_JANITOR_BATCH", default_value_t = 500)]
    pub batch: i64,
    /// Write reminders as `.eml` files here (local stacks); default:
    /// `mail/` beside the stack description. Ignored when the environment
    /// variable CITYBOARD_SMTP_URL names an SMTP server (production), e.g.
    /// `smtps://user:pass@smtp.example.com:465`; that URL is read from the
    /// environment only, never from a flag.
    #[arg(long, env = "CITYBOARD_MAIL_DIR")]
    pub mail_dir: Option<PathBuf>,
    /// Sender of reminders; default `cityboard <no-reply@APEX>`.
    #[arg(long, env = "CITYBOARD_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Commands topic; default `<region>.commands`.
    #[arg(long)]
    pub commands_topic: Option<String>,
    /// Events topic the reconciler republishes to; default `<region>.events`.
    #[arg(long)]
    pub events_topic: Option<String>,
    /// Which KV the reconciler reads (`none`: no reconciling). The
    /// publisher writes the same one (`--kv-sink`).
    #[arg(long, env = "CITYBOARD_KV_SINK", value_enum, default_value = "edge")]
    pub kv_sink: KvKind,
    /// Base URL of the stack's KV service (`--kv-sink edge`); default: the
    /// `edge-kv` component of the stack description, on loopback.
    #[arg(long, env = "CITYBOARD_EDGE_KV_URL")]
    pub edge_kv_url: Option<String>,
    /// Directory holding `edge-kv.key`, the KV service's bearer key
    /// (`--kv-sink edge`).
    #[arg(long, env = "CITYBOARD_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// The namespace `--kv-sink cloudflare` reads; its token needs read
    /// access.
    #[command(flatten)]
    pub cloudflare: CloudflareKv,
    /// Posts of each city the reconciler compares with KV per sweep: one
    /// bulk read of KV each (100 keys), so that a sweep costs a city one
    /// query and one call.
    #[arg(long, env = "CITYBOARD_RECONCILE_BATCH", default_value_t = 100)]
    pub reconcile_batch: i64,
    /// Posts changed more recently are compared at a later sweep.
    #[arg(long, env = "CITYBOARD_RECONCILE_SETTLE", default_value = "5m")]
    pub reconcile_settle: humantime::Duration,
    /// Where the api keeps photos (orphans are swept from it); default:
    /// `photos/` beside the stack description, as the api's.
    #[arg(long, env = "CITYBOARD_PHOTOS_URL")]
    pub photos_url: Option<String>,
    /// TESTS ONLY: run the clock this far ahead of the system's (e.g.
    /// `6days 1h`), so a test can see a process expire posts.
    #[arg(long, env = "CITYBOARD_CLOCK_OFFSET", hide = true)]
    pub clock_offset: Option<humantime::Duration>,
}

/// The environment variable naming the SMTP server reminders go through
/// (production): `smtps://user:pass@host:465`,
/// `smtp://user:pass@host:587?tls=required`, or `smtp://host:25` for a relay
/// that takes no credentials. Only the environment, never a flag: the URL
/// may carry a password, and every user of the machine sees a command line
/// (`ps`). Unset or empty: reminders are written as files.
pub const SMTP_URL_ENV: &str = "CITYBOARD_SMTP_URL";

/// The SMTP URL of [`SMTP_URL_ENV`]'s `value`, if one is set; a value that is
/// not UTF-8 is refused as a URL would be.
fn smtp_url(value: Option<OsString>) -> Result<Option<String>, SmtpUrlError> {
    match value.map(OsString::into_string) {
        None => Ok(None),
        Some(Ok(url)) if url.trim().is_empty() => Ok(None),
        Some(Ok(url)) => Ok(Some(url)),
        Some(Err(_)) => Err(SmtpUrlError::Invalid {
            url: format!("in {SMTP_URL_ENV}"),
            reason: "it is not UTF-8".into(),
        }),
    }
}

/// Which KV the reconciler reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvKind {
    /// The stack's KV service (`cityboard edge-kv`), behind the local edge.
    Edge,
    /// Cloudflare KV's REST API (production).
    Cloudflare,
    /// None: the reconciler does not run.
    None,
}

/// The name of the file in the secrets directory holding the stack's
/// edge-kv key (`cityboard up` writes it).
const EDGE_KV_KEY_FILE: &str = "edge-kv.key";

/// The reader of the KV `args` name; `None` when there is none to read
/// (`--kv-sink none`, or a local stack that lists no KV service).
fn kv_reader(state: &Path, args: &JanitorArgs) -> anyhow::Result<Option<KvReader>> {
    match args.kv_sink {
        KvKind::None => Ok(None),
        KvKind::Edge => {
            let url = match &args.edge_kv_url {
                Some(u) => u.clone(),
                None => match component_url_from_state(state, "edge-kv") {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(error = format!("{e:#}"), "no KV to read: not reconciling");
                        return Ok(None);
                    }
                },
            };
            let dir = args
                .secrets_dir
                .as_deref()
                .context("--kv-sink edge needs --secrets-dir (for edge-kv.key)")?;
            let key_file = dir.join(EDGE_KV_KEY_FILE);
            let key = std::fs::read_to_string(&key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            Ok(Some(KvReader::edge_kv(&url, &key)?))
        }
        KvKind::Cloudflare => {
            let (account, namespace, token) = args.cloudflare.account_namespace_token()?;
            Ok(Some(KvReader::cloudflare(
                &args.cloudflare.cloudflare_api,
                account,
                namespace,
                &token,
            )?))
        }
    }
}

/// The system clock shifted by a fixed offset (`--clock-offset`).
#[derive(Debug)]
struct OffsetClock(chrono::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        SystemClock.now() + self.0
    }
}

/// Assembles the janitor of `region` and runs it until `shutdown`.
pub async fn run(
    state: &Path,
    region: &str,
    args: JanitorArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // Before anything connects: a refused SMTP URL is a configuration
    // mistake, reported at once (exit status 2).
    let smtp = smtp_url(std::env::var_os(SMTP_URL_ENV))?;
    if let Some(url) = &smtp {
        check_smtp_url(url)?;
    }
    let start = start_role(state, region, "janitor", &args.common)?;
    let stack = &start.stack;
    let (catalog, router) = catalog_and_router(&start.entry().catalog_url, region, 2).await?;
    // Ids run on the system clock (a frozen one would exhaust a
    // millisecond's sequence and wait), whatever `--clock-offset` says.
    let (ids, lease) = start.lease_ids(&catalog, "command ids").await?;

    let clock: SharedClock = match args.clock_offset {
        Some(offset) => {
            let offset = chrono::Duration::from_std(offset.into()).context("--clock-offset")?;
            tracing::warn!(%offset, "--clock-offset: the janitor's clock runs ahead (tests only)");
            Arc::new(OffsetClock(offset))
        }
        None => Arc::new(SystemClock),
    };
    let from = args
        .mail_from
        .clone()
        .unwrap_or_else(|| format!("cityboard <no-reply@{}>", stack.apex));
    let mailer = match &smtp {
        Some(url) => {
            tracing::info!(smtp = %crate::redact::url(url), "reminders are sent through SMTP");
            Mailer::smtp(url, &from, &stack.apex)?
        }
        None => {
            let dir = match &args.mail_dir {
                Some(d) => d.clone(),
                None => state
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join("mail"),
            };
            tracing::info!(dir = %dir.display(), "reminders are written as files");
            Mailer::to_dir(&dir, &from, &stack.apex)?
        }
    };

    let metrics = Arc::new(JanitorMetrics::default());
    let listener = metrics_listener(&args.common, metrics.clone()).await?;
    let mut config = JanitorConfig::new(region);
    config.sweep_period = args.sweep_period.into();
    config.reminder_lead =
        chrono::Duration::from_std(args.reminder_lead.into()).context("--reminder-lead")?;
    config.batch = args.batch.max(1);
    if let Some(t) = &args.commands_topic {
        config.commands_topic = t.clone();
    }
    if let Some(t) = &args.events_topic {
        config.events_topic = t.clone();
    }
    config.reconcile_batch = args.reconcile_batch.max(1);
    config.reconcile_settle =
        chrono::Duration::from_std(args.reconcile_settle.into()).context("--reconcile-settle")?;
    let reconciler = kv_reader(state, &args)?.map(|kv| {
        tracing::info!(url = %kv.url(), "reconciling posts with KV");
        Reconciler::new(kv)
    });
    let janitor = Janitor {
        config,
        parts: JanitorParts {
            router,
            catalog: catalog.clone(),
            ids,
            producer: Producer::new(
                ProducerConfig::new(&start.brokers).waking(&start.entry().redis_store_url),
            )?,
            watermarks: Watermarks::new(&start.brokers)?,
            clock,
            mailer,
            homes: HomeCatalogs::of_stack(stack)?,
            metrics,
            reconciler,
            photos: Some(crate::media::Photos::open(
                &args
                    .photos_url
                    .clone()
                    .unwrap_or_else(|| crate::roles::common::beside_state(state, "photos")),
            )?),
        },
    };
    tracing::info!(region, "janitor running");
    let result = janitor.run(shutdown).await;
    if let Some(l) = listener {
        l.abort();
    }
    lease.release(&catalog).await;
    result
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `region-core janitor`'s flags, alone.
    #[derive(Debug, Parser)]
    struct Janitor {
        #[command(flatten)]
        args: JanitorArgs,
    }

    #[test]
    fn the_smtp_url_is_no_flag() {
        let err =
            Janitor::try_parse_from(["janitor", "--smtp-url", "smtp://u:p@mail:587"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(Janitor::try_parse_from(["janitor"]).is_ok());
    }

    #[test]
    fn the_smtp_url_comes_from_the_environment_value() {
        assert_eq!(smtp_url(None), Ok(None));
        assert_eq!(smtp_url(Some("  ".into())), Ok(None));
        assert_eq!(
            smtp_url(Some("smtp://127.0.0.1:2525".into())),
            Ok(Some("smtp://127.0.0.1:2525".to_string()))
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let bad = OsString::from_vec(vec![b's', 0xff]);
            assert!(matches!(
                smtp_url(Some(bad)),
                Err(SmtpUrlError::Invalid { .. })
            ));
        }
    }
}

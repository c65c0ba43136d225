//! `region-core janitor`: its flags, and how the role is assembled from the
//! stack description.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::metrics::JanitorMetrics;
use super::{HomeCatalogs, Janitor, JanitorConfig, JanitorParts, Mailer};
use crate::bus::{Producer, ProducerConfig};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::roles::common::{Common, catalog_and_router, metrics_listener, start_role};

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
    /// `mail/` beside the stack description. Ignored with `--smtp-url`.
    #[arg(long, env = "CITYBOARD_MAIL_DIR")]
    pub mail_dir: Option<PathBuf>,
    /// Send reminders through this SMTP server (production), e.g.
    /// `smtps://user:pass@smtp.example.com:465`.
    #[arg(long, env = "CITYBOARD_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender of reminders; default `cityboard <no-reply@APEX>`.
    #[arg(long, env = "CITYBOARD_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Commands topic; default `<region>.commands`.
    #[arg(long)]
    pub commands_topic: Option<String>,
    /// TESTS ONLY: run the clock this far ahead of the system's (e.g.
    /// `6days 1h`), so a test can see a process expire posts.
    #[arg(long, env = "CITYBOARD_CLOCK_OFFSET", hide = true)]
    pub clock_offset: Option<humantime::Duration>,
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
    let mailer = match &args.smtp_url {
        Some(url) => Mailer::smtp(url, &from, &stack.apex)?,
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
    if let Some(t) = args.commands_topic {
        config.commands_topic = t;
    }
    let janitor = Janitor {
        config,
        parts: JanitorParts {
            router,
            ids,
            producer: Producer::new(ProducerConfig::new(&start.brokers))?,
            clock,
            mailer,
            homes: HomeCatalogs::of_stack(stack)?,
            metrics,
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

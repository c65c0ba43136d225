//! The command bus: how the api sends a command (design §4). Through the
//! pipeline: produce it to `<region>.commands` and wait a bounded time for
//! the writer's notification (the status stays readable for a client that
//! got a 202). Or, as the baseline `bench write-pipeline` compares with,
//! straight to the city's primary (`direct`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::bus::applied::AppliedWaiters;
use crate::bus::direct::DirectApply;
use crate::bus::error::BusError;
use crate::bus::failpoint::{self, API_AFTER_PRODUCE};
use crate::bus::notify::{CommandStatus, STATUS_TTL, status_key};
use crate::bus::{Producer, ProducerConfig};
use crate::model::{ACCOUNT_KEY, AccountCommand, Command, Id};
use crate::store::Store;

/// How long the api lets librdkafka retry one command before answering 503:
/// far shorter than the roles' 30 s, since a client is waiting and may
/// retry with its `Idempotency-Key`.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the api's writes reach the shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WritePath {
    /// Produce the command to `<region>.commands` and wait for the writer
    /// (design §4).
    #[default]
    Pipeline,
    /// Apply each command in its own transaction on the city's primary,
    /// in the api's process. No outbox relay ordering, no retry on a shard
    /// that is down: the baseline `bench write-pipeline` compares with.
    Direct,
}

/// Who issued a command, stored before it is produced: only that user may
/// read its status (ids are guessable; outcomes are the user's business).
#[derive(Debug, Serialize, Deserialize)]
pub struct Issued {
    /// The user who sent it.
    pub user: Id,
    /// The post it is about.
    pub post: Option<Id>,
}

/// Produces commands and waits for their outcome; shared by every handler.
///
/// The producer is created on the first write, not at start-up, so an api
/// whose broker is down (or unknown) still serves every read; only writes
/// answer 503.
pub struct CommandBus {
    topic: String,
    account_topics: Vec<String>,
    brokers: Option<String>,
    producer: OnceCell<Producer>,
    applied: OnceLock<Arc<AppliedWaiters>>,
    store: Store,
    apply_wait: Duration,
    /// Set for the direct-apply baseline: commands skip the broker.
    direct: Option<DirectApply>,
}

impl std::fmt::Debug for CommandBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBus")
            .field("topic", &self.topic)
            .field("brokers", &self.brokers)
            .field("apply_wait", &self.apply_wait)
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

fn issued_key(command: Id) -> String {
    format!("cmd-issued:{command}")
}

impl CommandBus {
    /// A bus producing to `topic` on `brokers` (none: writes answer 503),
    /// account commands to every topic of `account_topics` (each region's
    /// commands topic), keeping its records in `store`, waiting
    /// `apply_wait` for the writer.
    pub fn new(
        topic: String,
        account_topics: Vec<String>,
        brokers: Option<String>,
        store: Store,
        apply_wait: Duration,
    ) -> CommandBus {
        CommandBus {
            topic,
            account_topics,
            brokers,
            producer: OnceCell::new(),
            applied: OnceLock::new(),
            store,
            apply_wait,
            direct: None,
        }
    }

    /// The same bus applying each command directly on its city's primary
    /// (`WritePath::Direct`) instead of producing it.
    pub fn with_direct(mut self, direct: DirectApply) -> CommandBus {
        self.direct = Some(direct);
        self
    }

    async fn producer(&self) -> Result<&Producer, BusError> {
        let brokers = self.brokers.as_deref().ok_or(BusError::BrokerUnavailable)?;
        self.producer
            .get_or_try_init(|| async {
                let mut config = ProducerConfig::new(brokers).waking(self.store.url());
                config.message_timeout = PRODUCE_TIMEOUT;
                Producer::new(config).map_err(|e| {
                    tracing::warn!(error = %e, "creating the api's producer");
                    BusError::BrokerUnavailable
                })
            })
            .await
    }

    /// Sends `command`: applied directly when the bus is the direct
    /// baseline, else produced (keyed by its city) with a wait up to the
    /// apply wait for its outcome. `None` when it is not known yet (a 202).
    ///
    /// The wait is registered with the process's one subscription before
    /// producing, since Redis drops a message nobody listens to; the status
    /// key is read after the wait whatever happened, so a notification
    /// missed (or a wait of zero) still finds an outcome already stored.
    pub async fn submit(
        &self,
        user: Id,
        command: &Command,
    ) -> Result<Option<CommandStatus>, BusError> {
        if let Some(direct) = &self.direct {
            return direct.apply(command.clone()).await.map(Some);
        }
        let producer = self.producer().await?;
        let payload = serde_json::to_vec(command).map_err(anyhow::Error::from)?;
        let issued = serde_json::to_string(&Issued {
            user,
            post: command.kind.post_id(),
        })
        .map_err(anyhow::Error::from)?;
        self.store
            .put(&issued_key(command.id), &issued, STATUS_TTL)
            .await
            .map_err(|_| BusError::StoreUnavailable)?;
        if self.apply_wait.is_zero() {
            producer
                .produce(&self.topic, &command.city, &payload, &[])
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, command = %command.id, "command not produced");
                    BusError::BrokerUnavailable
                })?;
            return Ok(None);
        }
        let waiter = self
            .applied
            .get_or_init(|| AppliedWaiters::start(self.store.url()))
            .register(command.id);
        if let Err(e) = producer
            .produce(&self.topic, &command.city, &payload, &[])
            .await
        {
            tracing::warn!(error = %e, command = %command.id, "command not produced");
            return Err(BusError::BrokerUnavailable);
        }
        failpoint::crash_point(API_AFTER_PRODUCE).map_err(anyhow::Error::from)?;
        waiter
            .wait(self.apply_wait, || async {
                matches!(self.status(command.id).await, Ok(Some(_)))
            })
            .await;
        self.status(command.id).await
    }

    /// The outcome of `command`, produced earlier (a 202), waiting up to
    /// `limit` for the writer if it has none yet: a client reading the post
    /// it just wrote would otherwise be told it does not exist.
    pub async fn outcome_within(
        &self,
        command: Id,
        limit: Duration,
    ) -> Result<Option<CommandStatus>, BusError> {
        if let Some(done) = self.status(command).await? {
            return Ok(Some(done));
        }
        // Registered after the first look: a notification sent before it is
        // missed, but the look after the wait still finds the status.
        let waiter = self
            .applied
            .get_or_init(|| AppliedWaiters::start(self.store.url()))
            .register(command);
        if let Some(done) = self.status(command).await? {
            return Ok(Some(done));
        }
        waiter
            .wait(limit, || async {
                matches!(self.status(command).await, Ok(Some(_)))
            })
            .await;
        self.status(command).await
    }

    /// How long `submit` waits for the writer after producing.
    pub fn apply_wait(&self) -> Duration {
        self.apply_wait
    }

    /// The longest `submit` takes (the broker's timeout, then the apply
    /// wait): how long a write's `Idempotency-Key` lease must last.
    pub fn longest_submit(&self) -> Duration {
        PRODUCE_TIMEOUT + self.apply_wait
    }

    /// The regions account commands go to.
    pub fn regions(&self) -> Vec<String> {
        self.account_topics
            .iter()
            .map(|t| t.strip_suffix(".commands").unwrap_or(t).to_string())
            .collect()
    }

    /// Produces `command` to every region's commands topic and waits for
    /// every acknowledgement: an `Ok` means each region will apply it (its
    /// writer commits offsets only past finished work). Any failure is a
    /// 503, and the caller changes nothing of its own before this is done,
    /// so a retry of the whole request is always safe (account commands
    /// are idempotent).
    pub async fn broadcast(&self, command: &AccountCommand) -> Result<(), BusError> {
        let producer = self.producer().await?;
        let payload = serde_json::to_vec(command).map_err(anyhow::Error::from)?;
        let sends = self
            .account_topics
            .iter()
            .map(|topic| producer.produce(topic, ACCOUNT_KEY, &payload, &[]));
        for (topic, result) in self
            .account_topics
            .iter()
            .zip(futures_util::future::join_all(sends).await)
        {
            if let Err(e) = result {
                tracing::warn!(error = %e, %topic, command = %command.id, "account command not produced");
                return Err(BusError::BrokerUnavailable);
            }
        }
        Ok(())
    }

    /// The stored outcome of `command`, if the writer finished it.
    pub async fn status(&self, command: Id) -> Result<Option<CommandStatus>, BusError> {
        let text = self
            .store
            .get(&status_key(command))
            .await
            .map_err(|_| BusError::StoreUnavailable)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Who issued `command`, while its status is kept.
    pub async fn issued(&self, command: Id) -> Result<Option<Issued>, BusError> {
        let text = self
            .store
            .get(&issued_key(command))
            .await
            .map_err(|_| BusError::StoreUnavailable)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

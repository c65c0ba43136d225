//! The api's side of the write pipeline (design §4): produce one command to
//! `<region>.commands`, wait a bounded time for the writer's notification,
//! and `GET /commands/{id}` for a client that got a 202.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::error::{ApiError, Problem};
use crate::http::applied::AppliedWaiters;
use crate::http::{AppState, AuthUser};
use crate::model::{ACCOUNT_KEY, AccountCommand, Command, Id};
use crate::pipeline::failpoint::{self, API_AFTER_PRODUCE};
use crate::pipeline::notify::{CommandState, CommandStatus, STATUS_TTL, status_key};
use crate::pipeline::{Producer, ProducerConfig};
use crate::store::Store;

/// How long the api lets librdkafka retry one command before answering 503:
/// far shorter than the roles' 30 s, since a client is waiting and may
/// retry with its `Idempotency-Key`.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(5);

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
}

impl std::fmt::Debug for CommandBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandBus")
            .field("topic", &self.topic)
            .field("brokers", &self.brokers)
            .field("apply_wait", &self.apply_wait)
            .finish()
    }
}

/// Who issued a command, stored before it is produced: only that user may
/// read its status (ids are guessable; outcomes are the user's business).
#[derive(Debug, Serialize, Deserialize)]
struct Issued {
    user: Id,
    post: Option<Id>,
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
        }
    }

    async fn producer(&self) -> Result<&Producer, ApiError> {
        let brokers = self.brokers.as_deref().ok_or(ApiError::BrokerUnavailable)?;
        self.producer
            .get_or_try_init(|| async {
                let mut config = ProducerConfig::new(brokers);
                config.message_timeout = PRODUCE_TIMEOUT;
                Producer::new(config).map_err(|e| {
                    tracing::warn!(error = %e, "creating the api's producer");
                    ApiError::BrokerUnavailable
                })
            })
            .await
    }

    /// Produces `command` (keyed by its city) and waits up to the apply
    /// wait for its outcome: `None` when it is not known yet (a 202).
    ///
    /// The wait is registered with the process's one subscription before
    /// producing, since Redis drops a message nobody listens to; the status
    /// key is read after the wait whatever happened, so a notification
    /// missed (or a wait of zero) still finds an outcome already stored.
    pub async fn submit(
        &self,
        user: Id,
        command: &Command,
    ) -> Result<Option<CommandStatus>, ApiError> {
        let producer = self.producer().await?;
        let payload = serde_json::to_vec(command).map_err(|e| ApiError::Internal(e.into()))?;
        let issued = serde_json::to_string(&Issued {
            user,
            post: command.kind.post_id(),
        })
        .map_err(|e| ApiError::Internal(e.into()))?;
        self.store
            .put(&issued_key(command.id), &issued, STATUS_TTL)
            .await
            .map_err(|_| ApiError::StoreUnavailable)?;
        if self.apply_wait.is_zero() {
            producer
                .produce(&self.topic, &command.city, &payload, &[])
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, command = %command.id, "command not produced");
                    ApiError::BrokerUnavailable
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
            return Err(ApiError::BrokerUnavailable);
        }
        failpoint::crash_point(API_AFTER_PRODUCE).map_err(|e| ApiError::Internal(e.into()))?;
        waiter
            .wait(self.apply_wait, || async {
                matches!(self.status(command.id).await, Ok(Some(_)))
            })
            .await;
        self.status(command.id).await
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
    pub async fn broadcast(&self, command: &AccountCommand) -> Result<(), ApiError> {
        let producer = self.producer().await?;
        let payload = serde_json::to_vec(command).map_err(|e| ApiError::Internal(e.into()))?;
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
                return Err(ApiError::BrokerUnavailable);
            }
        }
        Ok(())
    }

    /// The stored outcome of `command`, if the writer finished it.
    pub async fn status(&self, command: Id) -> Result<Option<CommandStatus>, ApiError> {
        let text = self
            .store
            .get(&status_key(command))
            .await
            .map_err(|_| ApiError::StoreUnavailable)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn issued(&self, command: Id) -> Result<Option<Issued>, ApiError> {
        let text = self
            .store
            .get(&issued_key(command))
            .await
            .map_err(|_| ApiError::StoreUnavailable)?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }
}

/// Where a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommandProgress {
    /// Accepted, not applied yet.
    Pending,
    /// Applied: the post is written.
    Applied,
    /// Never applied; `reason` says why.
    Rejected,
}

/// A command's outcome, as a write's answer and `GET /commands/{id}` show it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandView {
    /// The command's id.
    pub command: Id,
    /// Pending, applied or rejected.
    pub state: CommandProgress,
    /// The post it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<Id>,
    /// The post version it produced (applied; 0 when it changed none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CommandView {
    /// A command accepted but not finished.
    pub fn pending(command: Id, post: Option<Id>) -> CommandView {
        CommandView {
            command,
            state: CommandProgress::Pending,
            post,
            version: None,
            reason: None,
        }
    }

    /// What a stored status says.
    pub fn from_status(s: &CommandStatus) -> CommandView {
        CommandView {
            command: s.command,
            state: match s.state {
                CommandState::Applied => CommandProgress::Applied,
                CommandState::Rejected => CommandProgress::Rejected,
            },
            post: s.post,
            version: s.applied.as_ref().map(|a| a.version),
            reason: s.reason.clone(),
        }
    }
}

/// The outcome of a write accepted earlier (a 202's `Content-Location`).
/// Only the user who issued the command may read it; to anyone else it
/// does not exist.
#[utoipa::path(get, path = "/commands/{id}", tag = "writes",
    security(("bearer" = []), ("cookie" = [])),
    params(("id" = String, Path, description = "Command id (decimal)", pattern = "^[1-9][0-9]{0,18}$")),
    responses(
        (status = 200, description = "Pending, applied (with post and version) or rejected (with reason)", body = CommandView),
        (status = 401, description = "No valid session", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such command of this user (or its status has expired after 24 h)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The region store is down", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_command(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<CommandView>, ApiError> {
    let id: Id = id.parse().map_err(|_| ApiError::NotFound)?;
    let issued = st.commands.issued(id).await?.ok_or(ApiError::NotFound)?;
    if issued.user != user.id {
        return Err(ApiError::NotFound);
    }
    Ok(Json(match st.commands.status(id).await? {
        Some(s) => CommandView::from_status(&s),
        None => CommandView::pending(id, issued.post),
    }))
}

//! `GET /commands/{id}` for a client that got a 202, and how a command's
//! outcome is shown (the bus that sends commands is `bus::commands`).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use crate::bus::notify::{CommandState, CommandStatus};
use crate::http::error::{ApiError, Problem};
use crate::http::{AppState, AuthUser};
use crate::model::Id;

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

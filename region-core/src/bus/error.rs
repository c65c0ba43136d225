//! What sending a command can fail with, for the api to map to its
//! answers (`http::error`).

use crate::db::RouteError;

/// Why a command could not be sent (each maps to one api answer).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker did not take the command: nothing was written, and a
    /// retry is safe.
    #[error("writes are unavailable; retry shortly")]
    BrokerUnavailable,
    /// The region store (issuers, statuses) does not answer.
    #[error("the region store is unavailable; retry shortly")]
    StoreUnavailable,
    /// The city's shard refused or failed the direct apply.
    #[error("city {0} is unavailable")]
    ShardUnavailable(String),
    /// The city could not be routed (direct apply).
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

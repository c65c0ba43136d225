//! GET /healthz: the catalog and every shard primary answer.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::http::AppState;

/// What `/healthz` reports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` when every database answered, `degraded` otherwise.
    pub status: &'static str,
    /// Whether the catalog answered.
    pub catalog: bool,
    /// Shard name → whether its primary answered.
    pub shards: BTreeMap<String, bool>,
}

/// 200 when the catalog and every shard primary answer within 2 s, 503
/// (with the same body, naming what is down) otherwise.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "Every database answers", body = Health),
        (status = 503, description = "A database does not answer", body = Health),
    ))]
pub async fn healthz(State(st): State<AppState>) -> (StatusCode, Json<Health>) {
    let ping = |pool: sqlx::PgPool| async move {
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&pool),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    };
    // All at once: a down node costs its timeout once, not once per node.
    let shard_pings = st.router.shards().into_iter().map(|s| {
        let name = s.name.clone();
        let pool = s.primary.clone();
        async move { (name, ping(pool).await) }
    });
    let (catalog, shards) = tokio::join!(
        ping(st.catalog.clone()),
        futures_util::future::join_all(shard_pings)
    );
    let shards: BTreeMap<String, bool> = shards.into_iter().collect();
    let ok = catalog && shards.values().all(|up| *up);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: if ok { "ok" } else { "degraded" },
            catalog,
            shards,
        }),
    )
}

//! What every handler shares (`roles::api` builds it).

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::csrf::CsrfKey;
use crate::auth::{Passwords, SessionKey};
use crate::bus::commands::CommandBus;
use crate::cache::hot::LocalCache;
use crate::cache::pages::PageCache;
use crate::clock::SharedClock;
use crate::db::Router;
use crate::http::edge_trust::EdgeTrust;
use crate::http::metrics::Metrics;
use crate::model::IdGenerator;
use crate::model::{Id, Post};
use crate::store::Store;

/// Shared by every handler: one `Arc`, so the clones axum makes of it for
/// each request (every `State` extractor and stateful middleware) cost a
/// reference count, not a copy of the shard map, its pool handles and
/// every key. (As a plain struct it was copied a few times per request,
/// which showed in a profile of `bench origin-read` as allocator time.)
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl AppState {
    /// The state every handler of one api process shares.
    pub fn new(context: AppContext) -> AppState {
        AppState(Arc::new(context))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppContext {
    /// Routes each city's queries to its shard.
    pub router: Router,
    /// The region's catalog: users, revocations, the shard map.
    pub catalog: PgPool,
    /// The one clock (tests move it).
    pub clock: SharedClock,
    /// Apex of city host names: `boston.<apex>`.
    pub apex: String,
    /// This region's number (the region bits of its users' ids).
    pub region_number: u16,
    /// Signs listing cursors.
    pub cursor_key: Arc<Vec<u8>>,
    /// Signs and verifies session tokens (shared by all regions).
    pub sessions: SessionKey,
    /// Signs CSRF tokens.
    pub csrf: CsrfKey,
    /// argon2id hashing, bounded.
    pub passwords: Passwords,
    /// Ids of new users (node number leased from the catalog).
    pub ids: IdGenerator,
    /// Listing and search pages in the LRU Redis.
    pub cache: PageCache,
    /// Hot posts in this process, by (city, id); reads without a token only.
    pub views: Arc<LocalCache<(String, Id), Arc<Post>>>,
    /// Hot listing pages in this process, by page-cache key, in front of
    /// Redis; reads without a token only.
    pub pages: Arc<LocalCache<String, axum::body::Bytes>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Lifetime of a session access token.
    pub session_ttl: chrono::Duration,
    /// Longest a request may take (see `http::request_timeout`).
    pub request_timeout: std::time::Duration,
    /// Verifies the edge's request signatures.
    pub edge: EdgeTrust,
    /// Seals and opens read-your-writes cookies.
    pub ryw_keys: crate::token::RywKeys,
    /// The region's non-evicting Redis (signature nonces, idempotency
    /// keys, command statuses).
    pub store: Store,
    /// Produces write commands and waits for their outcome.
    pub commands: Arc<CommandBus>,
    /// Rate limits, shared by the region's api instances through `store`.
    pub limiter: crate::limits::Limiter,
    /// Signs the device cookie of browsers that logged in (exempt from
    /// their account's failed log-in limit).
    pub device_key: crate::auth::device::DeviceKey,
    /// Operator endpoints (`DELETE /old_posts`): their token and archive.
    pub operator: Arc<crate::http::operator::Operator>,
    /// Where photos are kept; none answers uploads and `/media/` 503.
    pub photos: Option<crate::media::Photos>,
    /// The bounded pool uploads are decoded and resized on.
    pub media: crate::media::Pool,
    /// Signs and opens the upload tokens of photo forms.
    pub uploads: crate::auth::upload::UploadKey,
}

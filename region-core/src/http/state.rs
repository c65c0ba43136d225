//! What every handler shares, and how `serve` (or a test) builds it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::auth::csrf::CsrfKey;
use crate::auth::{Passwords, SessionKey};
use crate::cache::PageCache;
use crate::catalog::NodeLease;
use crate::clock::SharedClock;
use crate::db::{ReadConfig, Router};
use crate::http::commands::CommandBus;
use crate::http::edge_trust::EdgeTrust;
use crate::http::metrics::Metrics;
use crate::http::writes::WritePath;
use crate::local_cache::LocalCache;
use crate::model::IdGenerator;
use crate::model::{Id, Post};
use crate::pipeline::Topics;
use crate::stack::{RegionEntry, Secrets};
use crate::store::Store;

/// Shared by every handler: one `Arc`, so the clones axum makes of it for
/// each request (every `State` extractor and stateful middleware) cost a
/// reference count, not a copy of the shard map, its pool handles and
/// every key. (As a plain struct it was copied a few times per request,
/// which showed in a profile of `bench origin-read` as allocator time.)
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

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
    /// Verifies the edge's request signatures.
    pub edge: EdgeTrust,
    /// The region's non-evicting Redis (signature nonces, idempotency
    /// keys, command statuses).
    pub store: Store,
    /// Produces write commands and waits for their outcome.
    pub commands: Arc<CommandBus>,
    /// Through the writer (the default) or straight to the primary.
    pub write_path: WritePath,
    /// Operator endpoints (`DELETE /old_posts`): their token and archive.
    pub operator: Arc<crate::http::operator::Operator>,
}

/// What `serve` (or a test) chooses about the api.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Lifetime of access tokens: short, because revocation reaches other
    /// regions only through the pipeline and a token is its own proof.
    pub session_ttl: chrono::Duration,
    /// TTL of cached listing pages; zero turns the cache off.
    pub cache_ttl: Duration,
    /// Longest a cache lookup may take before it counts as a miss.
    pub cache_timeout: Duration,
    /// TTL of the in-process caches of posts and pages; zero (the default,
    /// until events invalidate them) turns them off.
    pub local_cache_ttl: Duration,
    /// Entries each in-process cache holds at most.
    pub local_cache_entries: usize,
    /// argon2id parameters (tests use lighter ones).
    pub argon2: argon2::Params,
    /// Password hashes computed at once.
    pub hash_parallelism: usize,
    /// Replica choice and pool sizes.
    pub read: ReadConfig,
    /// Refuse requests without an edge signature (design §4). Only the
    /// development flag `--allow-unsigned` turns it off, and then only for
    /// requests with no signature header at all.
    pub require_signatures: bool,
    /// Longest a write waits for the writer's apply notification before
    /// answering 202; zero answers 202 at once.
    pub apply_wait: Duration,
    /// The broker (`host:port`) writes are produced to; none makes every
    /// write a 503 while reads go on.
    pub broker: Option<String>,
    /// Every region of the deployment, this one included: account commands
    /// (log-outs, deletions) go to each one's commands topic. Empty: this
    /// region only.
    pub regions: Vec<String>,
    /// How writes reach the shard: through the writer, or (a benchmark's
    /// baseline) one transaction per write straight to the primary.
    pub write_path: WritePath,
    /// Where `DELETE /old_posts` archives (`janitor::archive::Archive::open`);
    /// none answers it 503.
    pub archive_url: Option<String>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            session_ttl: chrono::Duration::minutes(15),
            cache_ttl: Duration::from_secs(5),
            cache_timeout: Duration::from_millis(100),
            local_cache_ttl: Duration::ZERO,
            local_cache_entries: 10_000,
            argon2: argon2::Params::default(),
            hash_parallelism: 2,
            read: ReadConfig::default(),
            require_signatures: true,
            apply_wait: Duration::from_millis(1500),
            broker: None,
            regions: Vec::new(),
            write_path: WritePath::Pipeline,
            archive_url: None,
        }
    }
}

/// What `AppState::connect` started and the caller must keep alive (and may
/// abort on shutdown).
pub struct Background {
    /// Shard-map watcher, lag monitors, node-lease renewal.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The node lease, released on clean shutdown.
    pub lease: NodeLease,
}

impl AppState {
    /// Connects to the region's catalog (checking its schema), its shards
    /// (through `Router::connect`) and its cache; leases a node number for
    /// user ids.
    pub async fn connect(
        apex: &str,
        region_number: u16,
        region: &RegionEntry,
        secrets: &Secrets,
        clock: SharedClock,
        options: ApiOptions,
    ) -> anyhow::Result<(AppState, Background)> {
        use anyhow::Context;
        let catalog = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect(&region.catalog_url)
            .await
            .with_context(|| format!("connecting to the catalog of {}", region.name))?;
        crate::migrate::check_catalog(&catalog)
            .await
            .with_context(|| format!("catalog of {}", region.name))?;
        let router = Router::connect(catalog.clone(), &region.name, options.read).await?;
        router.poll_now().await;
        let mut tasks = router.spawn_background(Duration::from_secs(5));

        let (lease, ids, renew) =
            NodeLease::ids_for(&catalog, "api", &region.name, region_number, clock.clone())
                .await
                .context("leasing a node number for ids")?;
        tasks.push(renew);

        let passwords = Passwords::new(options.argon2.clone(), options.hash_parallelism)?;
        let metrics = Arc::new(Metrics::default());
        let cache = PageCache::new(
            &region.redis_cache_url,
            options.cache_ttl,
            options.cache_timeout,
            metrics.clone(),
        );
        let store = Store::new(&region.redis_store_url);
        let edge = EdgeTrust::new(secrets, store.clone(), options.require_signatures);
        let mut regions = options.regions.clone();
        if !regions.contains(&region.name) {
            regions.push(region.name.clone());
        }
        let commands = Arc::new(CommandBus::new(
            Topics::of_region(&region.name).commands,
            regions
                .iter()
                .map(|r| Topics::of_region(r).commands)
                .collect(),
            options.broker.clone(),
            store.clone(),
            options.apply_wait,
        ));
        let state = AppState(Arc::new(AppContext {
            router,
            catalog,
            clock,
            apex: apex.trim_end_matches('.').to_ascii_lowercase(),
            region_number,
            cursor_key: Arc::new(secrets.derive("cursor")),
            sessions: SessionKey::new(secrets.session.clone()),
            csrf: CsrfKey::new(secrets.derive("csrf")),
            passwords,
            ids,
            cache,
            views: Arc::new(LocalCache::new(
                options.local_cache_ttl,
                options.local_cache_entries,
            )),
            pages: Arc::new(LocalCache::new(
                options.local_cache_ttl,
                options.local_cache_entries,
            )),
            metrics,
            session_ttl: options.session_ttl,
            edge,
            store,
            commands,
            write_path: options.write_path,
            operator: Arc::new(crate::http::operator::Operator::new(
                secrets.operator_token.clone(),
                options
                    .archive_url
                    .as_deref()
                    .map(crate::janitor::archive::Archive::open)
                    .transpose()?,
            )),
        }));
        Ok((state, Background { tasks, lease }))
    }
}

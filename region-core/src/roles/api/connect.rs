//! How the api's shared state is built from the region's stack entry and
//! secrets: catalog, shard router, caches, keys, command bus.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cityboard_protocol::sign::Version;
use sqlx::postgres::PgPoolOptions;

use crate::auth::csrf::CsrfKey;
use crate::auth::{Passwords, SessionKey};
use crate::bus::Topics;
use crate::bus::commands::{CommandBus, WritePath};
use crate::bus::direct::DirectApply;
use crate::cache::hot::LocalCache;
use crate::cache::pages::PageCache;
use crate::catalog::NodeLease;
use crate::clock::SharedClock;
use crate::db::{ReadConfig, Router};
use crate::http::edge_trust::EdgeTrust;
use crate::http::metrics::{CacheLookups, Metrics};
use crate::http::state::{AppContext, AppState};
use crate::limits::{Limiter, Limits};
use crate::stack::{RegionEntry, Secrets};
use crate::store::Store;

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
    /// The oldest signature scheme version accepted: version 1 (the
    /// default) while edges that sign it may still be running, version 2
    /// once every edge signs with it (`--signing-min-version 2`).
    pub signing_min_version: Version,
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
    /// Where `DELETE /old_posts` archives (`archive::Archive::open`);
    /// none answers it 503.
    pub archive_url: Option<String>,
    /// Where photos are kept (`media::Photos::open`); none answers uploads
    /// and `/media/` 503.
    pub photos_url: Option<String>,
    /// Photos decoded and resized at once (`media::Pool`).
    pub photo_workers: usize,
    /// Longest a request may take before it is stopped with a 503 (the
    /// operator's `DELETE /old_posts` excepted). `serve` makes it the shard
    /// connections' `statement_timeout` too (`read`), so a query never
    /// outlives its request.
    pub request_timeout: Duration,
    /// Rate limits (counted in the region store) and the password-hash
    /// wait.
    pub limits: Limits,
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
            // A statement never outlives the request that waits for it.
            read: ReadConfig {
                statement_timeout: Some(Duration::from_secs(10)),
                ..ReadConfig::default()
            },
            require_signatures: true,
            signing_min_version: Version::V1,
            apply_wait: Duration::from_millis(1500),
            request_timeout: Duration::from_secs(10),
            broker: None,
            regions: Vec::new(),
            write_path: WritePath::Pipeline,
            archive_url: None,
            photos_url: None,
            photo_workers: 1,
            limits: Limits::default(),
        }
    }
}

/// What `connect` started and the caller must keep alive (and may
/// abort on shutdown).
pub struct Background {
    /// Shard-map watcher, lag monitors, node-lease renewal.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The node lease, released on clean shutdown.
    pub lease: NodeLease,
}

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

    let passwords = Passwords::new(options.argon2.clone(), options.hash_parallelism)?
        .with_wait(options.limits.hash_wait);
    let cache = PageCache::new(
        &region.redis_cache_url,
        options.cache_ttl,
        options.cache_timeout,
    );
    let views = Arc::new(LocalCache::new(
        options.local_cache_ttl,
        options.local_cache_entries,
    ));
    let pages = Arc::new(LocalCache::new(
        options.local_cache_ttl,
        options.local_cache_entries,
    ));
    // The caches count their own lookups; `/metrics` reads them.
    let metrics = Arc::new(Metrics::new(CacheLookups {
        page_cache: cache.counts().clone(),
        post: views.counts.clone(),
        page: pages.counts.clone(),
    }));
    let store = Store::new(&region.redis_store_url);
    let edge = EdgeTrust::new(
        secrets,
        store.clone(),
        options.require_signatures,
        options.signing_min_version,
    )?;
    let mut regions = options.regions.clone();
    if !regions.contains(&region.name) {
        regions.push(region.name.clone());
    }
    let commands = CommandBus::new(
        Topics::of_region(&region.name).commands,
        regions
            .iter()
            .map(|r| Topics::of_region(r).commands)
            .collect(),
        options.broker.clone(),
        store.clone(),
        options.apply_wait,
    );
    // The benches' baseline: each command one transaction on its primary.
    let commands = Arc::new(match options.write_path {
        WritePath::Pipeline => commands,
        WritePath::Direct => commands.with_direct(DirectApply::new(router.clone(), ids.clone())),
    });
    let clock_for_limits = clock.clone();
    // Cookies sealed under the previous key open if it had not expired at
    // the start (a cookie lives minutes; the signatures are what the expiry
    // guards, on every request).
    let ryw_keys = crate::token::RywKeys::new(
        &secrets.edge_forward,
        secrets
            .edge_forward_previous
            .as_ref()
            .filter(|p| p.expires > clock.now())
            .map(|p| p.key.as_slice()),
    );
    let photos = options
        .photos_url
        .as_deref()
        .map(crate::media::Photos::open)
        .transpose()?;
    let state = AppState::new(AppContext {
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
        views,
        pages,
        metrics,
        session_ttl: options.session_ttl,
        request_timeout: options.request_timeout,
        ryw_keys,
        edge,
        limiter: Limiter::new(options.limits.clone(), store.clone(), clock_for_limits),
        device_key: crate::auth::device::DeviceKey::new(secrets.derive("device")),
        store,
        commands,
        operator: Arc::new(crate::http::operator::Operator::new(
            secrets.operator_token.clone(),
            options
                .archive_url
                .as_deref()
                .map(crate::archive::Archive::open)
                .transpose()?
                .map(|archive| match &photos {
                    Some(p) => archive.with_photos(p.clone()),
                    None => archive,
                }),
        )),
        photos,
        media: crate::media::Pool::new(
            options.photo_workers,
            crate::media::DecodeLimits::default(),
        ),
        uploads: crate::auth::upload::UploadKey::new(secrets.derive("upload")),
    });
    Ok((state, Background { tasks, lease }))
}

//! `cityboard capacity`: a fleet plan from the benchmarks' measured
//! figures, so that sizing a production fleet starts from numbers this
//! code has actually reached (BENCHMARKS.md), each named with its section
//! and date, rather than from guesses.
//!
//! The figures were measured on one 2-core machine that ran the api,
//! Postgres and the load generator together; a figure "per core" is the
//! machine's rate divided by its two cores, which charges each request its
//! share of Postgres and of the load generator too (conservative).
//!
//! The model: page views split into post views, listings and searches
//! ([`MIX`]); the edge serves post views from KV at the hit rate, every
//! other read goes to an origin (listings and searches always do); peak
//! traffic is `peak_factor` times the month's average. Writes are posts a
//! day at the same peak factor. Postgres holds the 7-day window of live
//! posts, in shards no larger than the benchmarks measured.

use serde::Serialize;

/// One measured figure and where it comes from.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// What it measures.
    pub what: &'static str,
    /// The rate (per second) or size.
    pub value: f64,
    /// BENCHMARKS.md section, run and date.
    pub source: &'static str,
}

/// Cores of the machine every figure was measured on (BENCHMARKS.md).
pub const BENCH_CORES: f64 = 2.0;

/// `GET /post/{id}` at the origin, caches off, per 2-core machine.
pub const VIEWS: Figure = Figure {
    what: "origin post views/s (2 cores)",
    value: 9_083.0,
    source: "origin-read, run of 2026-12-06 evening, B2 (seed), caches off",
};

/// A city listing with filters (category, price range, has photo).
pub const LISTINGS: Figure = Figure {
    what: "origin listings/s (2 cores)",
    value: 1_898.0,
    source: "origin-read, run of 2026-12-06 evening, B2 (seed), filters only, caches off",
};

/// Text searches: an equal mix of the common-word (1 961/s), rare-word
/// (1 813/s) and two-word (553/s) classes, i.e. their harmonic mean.
pub const SEARCHES: Figure = Figure {
    what: "origin searches/s (2 cores)",
    value: 3.0 / (1.0 / 1_961.0 + 1.0 / 1_813.0 + 1.0 / 553.0),
    source: "origin-read, run of 2026-12-06 evening, B2 (seed), three search classes, caches off",
};

/// Posts the api accepted through the pipeline with 512 posters.
pub const API_WRITES: Figure = Figure {
    what: "api posts/s (2 cores)",
    value: 990.0,
    source: "write-pipeline, run of 2026-12-06 evening, B2 (fresh), 512 posters",
};

/// Commands one writer applied draining a backlog.
pub const WRITER: Figure = Figure {
    what: "writer commands/s (one writer, 2 cores)",
    value: 8_709.0,
    source: "write-pipeline, run of 2026-12-06 evening, B2 (fresh), drain",
};

/// Posts/s at which the publisher kept visibility p99 under 1 s (a rate
/// it sustained, not its ceiling).
pub const PUBLISHER: Figure = Figure {
    what: "publisher posts/s at visibility p99 435 ms (2 cores)",
    value: 495.0,
    source: "write-pipeline, run of 2026-12-06 evening, B2 (fresh), visibility",
};

/// Posts per shard the read figures were measured at.
pub const ROWS_PER_SHARD: Figure = Figure {
    what: "live posts per shard",
    value: 1_000_000.0,
    source: "origin-read, run of 2026-12-06 evening (1 000 000 posts in one shard)",
};

/// Every figure the plan uses, for the output.
pub const FIGURES: [Figure; 7] = [
    VIEWS,
    LISTINGS,
    SEARCHES,
    API_WRITES,
    WRITER,
    PUBLISHER,
    ROWS_PER_SHARD,
];

/// Shares of page views: post pages, listings, searches (an assumption,
/// printed with the plan; classifieds browsing is mostly listings and
/// posts).
pub const MIX: [(&str, f64); 3] = [("post views", 0.6), ("listings", 0.3), ("searches", 0.1)];

/// Edge KV hit rates the plan is computed for.
pub const HIT_RATES: [f64; 3] = [0.5, 0.8, 0.95];

/// Days a post lives (design §1).
const POST_DAYS: f64 = 7.0;
/// Partitions of a topic per consumer, so a rebalance spreads evenly.
const PARTITIONS_PER_CONSUMER: u64 = 2;
/// The topology's smallest useful partition count.
const MIN_PARTITIONS: u64 = 4;
/// A primary and one streaming replica per shard, on different servers.
const COPIES_PER_SHARD: u64 = 2;
/// Two servers at least, so that a shard's replica is not on its primary's.
const MIN_SERVERS: u64 = 2;

/// What the plan is asked for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Demand {
    /// Page views a month (30 days).
    pub views_per_month: f64,
    /// New posts a day.
    pub posts_per_day: f64,
    /// Peak traffic over the month's average.
    pub peak_factor: f64,
    /// Cores of one origin server.
    pub cores_per_server: f64,
}

/// The plan at one edge hit rate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// Edge KV hit rate of post views.
    pub hit_rate: f64,
    /// Origin reads a second at peak (post-view misses, listings, searches).
    pub origin_reads_per_sec: f64,
    /// Cores the reads need (api and Postgres).
    pub read_cores: f64,
    /// Cores the writes need (api, writer, publisher).
    pub write_cores: f64,
    /// Origin servers of `cores_per_server`.
    pub servers: u64,
    /// Postgres shards for the 7-day window.
    pub shards: u64,
    /// Partitions of each commands and events topic.
    pub partitions: u64,
    /// Whether the origin fleet is within [`GOAL_SERVERS`].
    pub meets_goal: bool,
}

/// The goal of issue 31: an origin fleet of at most this many servers.
pub const GOAL_SERVERS: u64 = 10;

/// The plan for each of [`HIT_RATES`].
pub fn plan(demand: &Demand) -> Vec<Row> {
    let per_core = |f: Figure| f.value / BENCH_CORES;
    let views_per_sec = demand.views_per_month / (30.0 * 86_400.0) * demand.peak_factor;
    let posts_per_sec = demand.posts_per_day / 86_400.0 * demand.peak_factor;
    let write_cores = posts_per_sec / per_core(API_WRITES)
        + posts_per_sec / per_core(WRITER)
        + posts_per_sec / per_core(PUBLISHER);
    let shards = ((demand.posts_per_day * POST_DAYS) / ROWS_PER_SHARD.value)
        .ceil()
        .max(1.0) as u64;
    // One writer and one publisher instance per measured rate, at least one.
    let consumers = (posts_per_sec / WRITER.value)
        .max(posts_per_sec / PUBLISHER.value)
        .ceil()
        .max(1.0) as u64;
    let partitions = (consumers * PARTITIONS_PER_CONSUMER).max(MIN_PARTITIONS);
    // Each shard instance (a primary and its replica) was measured with a
    // 2-core machine to itself: a server holds cores / 2 of them.
    let instances = shards * COPIES_PER_SHARD;
    let shard_servers =
        (instances as f64 / (demand.cores_per_server / BENCH_CORES).max(1.0)).ceil() as u64;
    HIT_RATES
        .iter()
        .map(|&hit_rate| {
            let post_views = views_per_sec * MIX[0].1 * (1.0 - hit_rate);
            let listings = views_per_sec * MIX[1].1;
            let searches = views_per_sec * MIX[2].1;
            let read_cores = post_views / per_core(VIEWS)
                + listings / per_core(LISTINGS)
                + searches / per_core(SEARCHES);
            let cpu_servers = ((read_cores + write_cores) / demand.cores_per_server).ceil() as u64;
            let servers = cpu_servers.max(shard_servers).max(MIN_SERVERS);
            Row {
                hit_rate,
                origin_reads_per_sec: post_views + listings + searches,
                read_cores,
                write_cores,
                servers,
                shards,
                partitions,
                meets_goal: servers <= GOAL_SERVERS,
            }
        })
        .collect()
}

/// The plan as a table, with its figures and assumptions.
pub fn table(demand: &Demand, rows: &[Row]) -> String {
    let mut out = format!(
        "fleet plan for {:.0} page views a month, {:.0} posts a day (peak {}x the average, {} cores a server)\n\n",
        demand.views_per_month, demand.posts_per_day, demand.peak_factor, demand.cores_per_server
    );
    out.push_str(&format!("| edge hit rate | origin reads/s | read cores | write cores | servers | shards | partitions | ≤ {GOAL_SERVERS} servers |\n"));
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| {:.0} % | {:.0} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
            row.hit_rate * 100.0,
            row.origin_reads_per_sec,
            row.read_cores,
            row.write_cores,
            row.servers,
            row.shards,
            row.partitions,
            if row.meets_goal { "yes" } else { "no" }
        ));
    }
    out.push_str("\nmix of page views: ");
    let mix: Vec<String> = MIX
        .iter()
        .map(|(what, share)| format!("{what} {:.0} %", share * 100.0))
        .collect();
    out.push_str(&mix.join(", "));
    out.push_str(" (only post views are served from edge KV)\n\nfigures (BENCHMARKS.md; per core = figure / 2):\n");
    for f in FIGURES {
        out.push_str(&format!("  {:>9.0}  {} — {}\n", f.value, f.what, f.source));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn craigslist() -> Demand {
        Demand {
            views_per_month: 10e9,
            posts_per_day: 1.5e6,
            peak_factor: 3.0,
            cores_per_server: 32.0,
        }
    }

    #[test]
    fn craigslist_scale_fits_ten_servers_at_every_hit_rate() {
        let rows = plan(&craigslist());
        // 10e9 / 2 592 000 s = 3 858 views/s, x3 at peak = 11 574/s.
        let views = 10e9 / 2_592_000.0 * 3.0;
        assert!((rows[0].origin_reads_per_sec - views * (0.6 * 0.5 + 0.4)).abs() < 1e-6);
        assert!((rows[2].origin_reads_per_sec - views * (0.6 * 0.05 + 0.4)).abs() < 1e-6);
        // 1.5 M posts a day for 7 days over 1 M posts per shard.
        assert!(rows.iter().all(|r| r.shards == 11));
        assert!(
            rows.iter().all(|r| r.servers <= 10 && r.meets_goal),
            "{rows:?}"
        );
        // Reads fall as the hit rate rises; writes do not depend on it.
        assert!(rows[0].read_cores > rows[1].read_cores && rows[1].read_cores > rows[2].read_cores);
        assert!(rows.iter().all(|r| r.write_cores == rows[0].write_cores));
    }

    #[test]
    fn a_known_small_input_gives_known_cores() {
        // 2 592 000 views a month = 1 view/s on average, peak 1: 0.6 post
        // views, 0.3 listings, 0.1 searches a second.
        let demand = Demand {
            views_per_month: 2_592_000.0,
            posts_per_day: 86_400.0,
            peak_factor: 1.0,
            cores_per_server: 8.0,
        };
        let rows = plan(&demand);
        let want_reads =
            0.6 * 0.5 / (9_083.0 / 2.0) + 0.3 / (1_898.0 / 2.0) + 0.1 / (SEARCHES.value / 2.0);
        assert!((rows[0].read_cores - want_reads).abs() < 1e-12);
        let want_writes = 1.0 / 495.0 + 1.0 / 4_354.5 + 1.0 / 247.5;
        assert!((rows[0].write_cores - want_writes).abs() < 1e-12);
        // Well under a core, but a replica wants a server of its own.
        assert_eq!(rows[0].servers, MIN_SERVERS);
        // 604 800 live posts: one shard; one consumer: the minimum partitions.
        assert_eq!((rows[0].shards, rows[0].partitions), (1, MIN_PARTITIONS));
    }

    #[test]
    fn the_search_figure_is_the_harmonic_mean_of_its_classes() {
        assert!((SEARCHES.value - 1_045.3).abs() < 0.1, "{}", SEARCHES.value);
    }
}

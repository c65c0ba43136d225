//! Demo posts: a few dozen per city, written through `apply` like any post.
//!
//! A city that already has live demo posts is left alone, so a second run
//! adds nothing; once they expire (7 days) the next `up` adds fresh ones.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use rand::seq::SliceRandom;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::apply::{ApplyConfig, CityBatch, ShardTarget, apply};
use crate::catalog::{NodeLease, ShardMap};
use crate::clock::{Clock, SystemClock};
use crate::model::{Command, CommandKind, Id, IdGenerator, PostFields};
use crate::stack::RegionEntry;

/// Posts per city.
pub const PER_CITY: usize = 36;

/// The author of every demo post: node 0, sequence 1 of time zero in this
/// region, an id no generator ever issues (time zero is 2025-01-01).
pub fn demo_user(region_number: u16) -> Id {
    Id::compose(0, region_number, 0, 1)
}

const ITEMS: &[(&str, &[&str], (i64, i64))] = &[
    (
        "for-sale",
        &[
            "Mid-century walnut dresser",
            "Trek hybrid bike, 54 cm",
            "IKEA Kallax shelf, white",
            "Sony WH-1000XM4 headphones",
            "Cast iron skillet set",
            "Standing desk, electric",
            "Vintage Pentax K1000 camera",
            "Kids' bunk bed with mattress",
            "Espresso machine, barely used",
            "Road bike helmet (M)",
            "Leather sofa, 3-seater",
            "Nintendo Switch with two games",
        ],
        (5, 900),
    ),
    (
        "housing",
        &[
            "Sunny 1BR near the park",
            "Room in shared 3BR, utilities included",
            "Studio, walk to subway",
            "2BR with parking and laundry",
            "Sublet for the summer, furnished",
            "Basement apartment, private entrance",
        ],
        (700, 4200),
    ),
    (
        "jobs",
        &[
            "Line cook, evenings",
            "Barista wanted, weekends",
            "Part-time bookkeeper",
            "Delivery driver with own car",
            "Front desk receptionist",
            "Junior web developer",
        ],
        (15, 60),
    ),
    (
        "services",
        &[
            "Piano lessons for beginners",
            "Handyman: shelves, doors, small repairs",
            "Dog walking, midday",
            "Bike tune-ups at your door",
            "House cleaning, weekly or once",
            "Math tutoring, grades 6-12",
        ],
        (20, 120),
    ),
    (
        "community",
        &[
            "Lost cat near the library",
            "Book club looking for members",
            "Free yoga in the park, Sundays",
            "Community garden plots open",
            "Volunteers for the food bank",
        ],
        (0, 0),
    ),
    (
        "gigs",
        &[
            "Help moving a couch Saturday",
            "Photographer for a birthday party",
            "Assemble IKEA wardrobe",
            "Flyer distribution, one afternoon",
        ],
        (30, 200),
    ),
    (
        "vehicles",
        &[
            "2012 Honda Civic, 98k miles",
            "Vespa scooter, runs great",
            "2016 Subaru Outback, AWD",
            "Cargo e-bike with child seat",
        ],
        (800, 14000),
    ),
    (
        "free",
        &[
            "Moving boxes, about 20",
            "Firewood, you haul",
            "Old upright piano, free to a good home",
            "Houseplants: pothos cuttings",
        ],
        (0, 0),
    ),
];

const PLACES: &[&str] = &[
    "Downtown",
    "Near the university",
    "East side",
    "Riverside",
    "Old town",
    "North end",
    "By the train station",
];

/// Demo posts for every city of `region` (as the catalog places them now)
/// that has no live demo post yet.
pub async fn seed(
    catalog: &PgPool,
    region: &str,
    region_number: u16,
    entry: &RegionEntry,
) -> anyhow::Result<Vec<String>> {
    let map = ShardMap::load(catalog)
        .await
        .context("reading the shard map")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let lease = NodeLease::acquire(
        catalog,
        &format!("setup/{region}/{}", std::process::id()),
        Duration::from_secs(120),
    )
    .await
    .context("leasing a node number for demo ids")?;
    let ids = IdGenerator::new(clock.clone(), region_number, lease.node, lease.valid_until);
    let user = demo_user(region_number);
    let mut lines = Vec::new();
    let result = async {
        for shard in &entry.shards {
            // The stack's own cities only (cities tests or shard-tool added
            // are not for demo data), where the catalog places them now.
            let mut cities: Vec<_> = map
                .cities
                .values()
                .filter(|r| r.region == region && r.shard == shard.name)
                .filter(|r| entry.shards.iter().any(|s| s.cities.contains(&r.city)))
                .cloned()
                .collect();
            cities.sort_by(|a, b| a.city.cmp(&b.city));
            if cities.is_empty() {
                continue;
            }
            let primary = PgPoolOptions::new()
                .max_connections(1)
                .connect(&shard.primary_url)
                .await
                .with_context(|| format!("connecting to {region}/{}", shard.name))?;
            let target = ShardTarget {
                name: shard.name.clone(),
                primary: primary.clone(),
            };
            for route in cities {
                let live: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM posts WHERE city = $1 AND user_id = $2
                     AND status = 'live' AND expires_at > now()",
                )
                .bind(&route.city)
                .bind(user)
                .fetch_one(&primary)
                .await?;
                if live > 0 {
                    lines.push(format!(
                        "{region}/{}: {}: {live} demo posts present, none added",
                        shard.name, route.city
                    ));
                    continue;
                }
                let commands =
                    demo_commands(&ids, &route.city, route.epoch, user, clock.now()).await?;
                let applied = apply(
                    &target,
                    &[CityBatch {
                        city: route.city.clone(),
                        epoch: route.epoch,
                        commands,
                    }],
                    &ids,
                    ApplyConfig::default(),
                )
                .await
                .with_context(|| format!("applying demo posts for {}", route.city))?;
                // A city being moved right now: no demo posts this time, and
                // no reason to fail `up` for them.
                if let Some(refused) = applied.refused.first() {
                    lines.push(format!(
                        "{region}/{}: {}: no demo posts added: {refused}",
                        shard.name, route.city
                    ));
                    continue;
                }
                lines.push(format!(
                    "{region}/{}: {}: {} demo posts added",
                    shard.name,
                    route.city,
                    applied.events.len()
                ));
            }
            primary.close().await;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = lease.release(catalog).await {
        tracing::warn!(error = %e, "releasing the demo node lease");
    }
    result?;
    Ok(lines)
}

async fn demo_commands(
    ids: &IdGenerator,
    city: &str,
    epoch: i64,
    user: Id,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<Command>> {
    let mut rng = rand::thread_rng();
    let mut all: Vec<(&str, &str, (i64, i64))> = ITEMS
        .iter()
        .flat_map(|(cat, titles, range)| titles.iter().map(move |t| (*cat, *t, *range)))
        .collect();
    all.shuffle(&mut rng);
    let mut out = Vec::with_capacity(PER_CITY);
    for (i, (category, title, (lo, hi))) in all.into_iter().cycle().take(PER_CITY).enumerate() {
        // Spread over the last three days, newest first.
        let age = chrono::Duration::minutes(i as i64 * 110 + rng.gen_range(0..60));
        let price = if hi == 0 {
            if category == "free" { Some(0) } else { None }
        } else {
            Some(rng.gen_range(lo..=hi))
        };
        let place = PLACES[rng.gen_range(0..PLACES.len())];
        out.push(Command {
            id: ids.next().await?,
            city: city.to_string(),
            created_at: now - age,
            epoch,
            request_id: None,
            kind: CommandKind::Create {
                post_id: ids.next().await?,
                user_id: user,
                post: PostFields {
                    category: category.to_string(),
                    title: title.to_string(),
                    description: format!(
                        "{title}. Pick up in {place}. Message me through cityboard; \
                         serious offers only."
                    ),
                    price,
                    location: Some(place.to_string()),
                    image_count: 0,
                },
            },
        });
    }
    Ok(out)
}

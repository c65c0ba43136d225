//! Health checks: which api instances are in the answer.
//!
//! Every `interval`, each instance's `GET /healthz` is tried with a timeout;
//! a 2xx is a pass. An instance in the answer leaves it after `fall`
//! consecutive failures and comes back after `rise` consecutive passes (the
//! HAProxy model: one lost packet does not flap the answer). Instances start
//! in the answer, so a freshly started server answers at once.
//!
//! A region with no healthy instance answers its standby addresses if it has
//! any, otherwise the last set that was healthy, both with a short TTL so
//! that resolvers come back soon: a stale answer that may work beats
//! NXDOMAIN, which resolvers cache and clients treat as final.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::config::{DnsConfig, Instance};
use super::zone::{RegionAnswer, Zone};

/// Check timing and thresholds.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    /// Time between rounds.
    pub interval: Duration,
    /// Longest a single check may take.
    pub timeout: Duration,
    /// Consecutive failures that take an instance out.
    pub fall: u32,
    /// Consecutive passes that bring it back.
    pub rise: u32,
    /// TTL of a healthy answer, seconds.
    pub ttl: u32,
    /// TTL of a fallback answer (standby or last known), seconds.
    pub fallback_ttl: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
            ttl: 30,
            fallback_ttl: 5,
        }
    }
}

#[derive(Debug, Clone)]
struct State {
    instance: Instance,
    up: bool,
    fails: u32,
    passes: u32,
}

/// The client every check goes through: plain HTTP/1.1 to an address, no
/// TLS (the api's `/healthz` is on the region's private network).
type HealthClient = Client<HttpConnector, Empty<Bytes>>;

/// Owns the instance states and publishes answers into the zone.
#[derive(Debug)]
pub struct Checker {
    client: HealthClient,
    zone: Arc<Zone>,
    policy: HealthPolicy,
    regions: Vec<String>,
    states: Vec<State>,
    standby: BTreeMap<String, Vec<IpAddr>>,
    last_known: BTreeMap<String, Vec<IpAddr>>,
}

impl Checker {
    /// A checker for the configured instances; publishes the initial
    /// (everyone healthy) answers right away.
    pub fn new(zone: Arc<Zone>, config: &DnsConfig, policy: HealthPolicy) -> Self {
        let states = config
            .instances
            .iter()
            .map(|i| State {
                instance: i.clone(),
                up: true,
                fails: 0,
                passes: 0,
            })
            .collect();
        let mut checker = Checker {
            client: health_client(),
            zone,
            policy,
            regions: config.regions.clone(),
            states,
            standby: config.standby.clone(),
            last_known: BTreeMap::new(),
        };
        checker.publish();
        checker
    }

    /// Checks forever.
    pub async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.policy.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.round().await;
        }
    }

    /// One round: check every instance concurrently, apply the thresholds, publish.
    pub async fn round(&mut self) {
        let mut set = tokio::task::JoinSet::new();
        for (index, state) in self.states.iter().enumerate() {
            let (addr, timeout) = (state.instance.check, self.policy.timeout);
            let client = self.client.clone();
            set.spawn(async move { (index, check(&client, addr, timeout).await) });
        }
        while let Some(joined) = set.join_next().await {
            let Ok((index, passed)) = joined else {
                continue;
            };
            let Some(state) = self.states.get_mut(index) else {
                continue;
            };
            if passed {
                state.passes += 1;
                state.fails = 0;
                if !state.up && state.passes >= self.policy.rise {
                    state.up = true;
                    tracing::info!(instance = %state.instance.check, region = %state.instance.region, "back in the answer");
                }
            } else {
                state.fails += 1;
                state.passes = 0;
                if state.up && state.fails >= self.policy.fall {
                    state.up = false;
                    tracing::warn!(instance = %state.instance.check, region = %state.instance.region, "out of the answer");
                }
            }
        }
        self.publish();
    }

    fn publish(&mut self) {
        for region in &self.regions {
            let mut healthy: Vec<IpAddr> = Vec::new();
            for s in self
                .states
                .iter()
                .filter(|s| s.up && &s.instance.region == region)
            {
                if !healthy.contains(&s.instance.answer) {
                    healthy.push(s.instance.answer);
                }
            }
            let answer = if !healthy.is_empty() {
                self.last_known.insert(region.clone(), healthy.clone());
                RegionAnswer {
                    addrs: healthy,
                    ttl: self.policy.ttl,
                }
            } else {
                let fallback = self
                    .standby
                    .get(region)
                    .filter(|s| !s.is_empty())
                    .or_else(|| self.last_known.get(region))
                    .cloned()
                    .unwrap_or_default();
                RegionAnswer {
                    addrs: fallback,
                    ttl: self.policy.fallback_ttl,
                }
            };
            self.zone.set_answer(region, answer);
        }
    }
}

/// A client that opens a new connection for every check (no idle pool), as
/// a load balancer's check does: a check must find out whether the instance
/// accepts connections now, not whether an old connection still stands.
fn health_client() -> HealthClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// One `GET /healthz`: true on a 2xx status within the timeout.
async fn check(client: &HealthClient, addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(request) = http::Request::get(format!("http://{addr}/healthz"))
        .header(http::header::USER_AGENT, "geo-router")
        .body(Empty::new())
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, client.request(request)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}

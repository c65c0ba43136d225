//! Rate limits (GCRA) kept in the region's non-evicting Redis, so every api
//! instance of the region counts against the same buckets and answers the
//! same `Retry-After`.
//!
//! Each limit is a rate `count/period` with a burst of `count`: GCRA keeps
//! one number per bucket, the theoretical arrival time (TAT), in ms of the
//! api's clock. One Lua script checks every bucket a request touches and
//! takes from all of them or from none, so a request refused by its
//! per-account limit does not also spend its per-IP allowance.
//!
//! Why the api's clock and not Redis's `TIME`: tests move a manual clock,
//! and the same clock decides session expiry; instances' clocks agree to
//! well under the one-second resolution of `Retry-After`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::store::{Store, StoreUnavailable};

/// `count` requests per `period`, in a burst of up to `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed per period (and in one burst).
    pub count: u32,
    /// The period.
    pub period: Duration,
}

impl Rate {
    /// `count` per `period`.
    pub const fn new(count: u32, period: Duration) -> Rate {
        Rate { count, period }
    }

    /// The GCRA emission interval: the time one request "costs", in ms
    /// (fractional, so 1000/1s is exact).
    fn interval_ms(&self) -> f64 {
        self.period.as_secs_f64() * 1000.0 / f64::from(self.count.max(1))
    }
}

/// A rate that cannot be read: `N/PERIOD` is expected.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a rate: write COUNT/PERIOD with COUNT ≥ 1, e.g. `10/15m` or `120/1m`")]
pub struct BadRate(String);

impl FromStr for Rate {
    type Err = BadRate;
    fn from_str(s: &str) -> Result<Rate, BadRate> {
        let bad = || BadRate(s.to_string());
        let (count, period) = s.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let period: Duration = humantime::parse_duration(period.trim()).map_err(|_| bad())?;
        if count == 0 || period.is_zero() {
            return Err(bad());
        }
        Ok(Rate { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The limits of a region, as the topology's `[limits]` table sets them.
/// The defaults are for a public site: a person never meets them, a script
/// soon does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// False turns every limit off (a benchmark's baseline).
    pub enabled: bool,
    /// Accounts created from one address.
    pub signup_per_ip: Rate,
    /// Failed log-ins from one address, whatever the account.
    pub login_failures_per_ip: Rate,
    /// Failed log-ins on one account (by e-mail), from browsers that never
    /// logged in to it: its owner's browser is exempt.
    pub login_failures_per_account: Rate,
    /// Post creates, edits, deletes and renewals from one address.
    pub writes_per_ip: Rate,
    /// The same, by one account.
    pub writes_per_account: Rate,
    /// Reports from one address.
    pub reports_per_ip: Rate,
    /// Reports by one account.
    pub reports_per_account: Rate,
    /// Longest a request waits for a password-hash slot before a 429
    /// (hashing is slow on purpose, and only a few run at once).
    #[serde(with = "duration_text")]
    pub hash_wait: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            enabled: true,
            signup_per_ip: Rate::new(20, HOUR),
            login_failures_per_ip: Rate::new(100, 15 * MINUTE),
            login_failures_per_account: Rate::new(10, 15 * MINUTE),
            writes_per_ip: Rate::new(300, MINUTE),
            writes_per_account: Rate::new(60, MINUTE),
            reports_per_ip: Rate::new(60, HOUR),
            reports_per_account: Rate::new(30, HOUR),
            hash_wait: Duration::from_secs(2),
        }
    }
}

/// One bucket family: what is counted, by whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `signup_per_ip`.
    SignupPerIp,
    /// `login_failures_per_ip`.
    LoginFailuresPerIp,
    /// `login_failures_per_account`.
    LoginFailuresPerAccount,
    /// `writes_per_ip`.
    WritesPerIp,
    /// `writes_per_account`.
    WritesPerAccount,
    /// `reports_per_ip`.
    ReportsPerIp,
    /// `reports_per_account`.
    ReportsPerAccount,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::SignupPerIp => "signup-ip",
            Limit::LoginFailuresPerIp => "login-fail-ip",
            Limit::LoginFailuresPerAccount => "login-fail-account",
            Limit::WritesPerIp => "write-ip",
            Limit::WritesPerAccount => "write-account",
            Limit::ReportsPerIp => "report-ip",
            Limit::ReportsPerAccount => "report-account",
        }
    }

    fn rate(self, limits: &Limits) -> Rate {
        match self {
            Limit::SignupPerIp => limits.signup_per_ip,
            Limit::LoginFailuresPerIp => limits.login_failures_per_ip,
            Limit::LoginFailuresPerAccount => limits.login_failures_per_account,
            Limit::WritesPerIp => limits.writes_per_ip,
            Limit::WritesPerAccount => limits.writes_per_account,
            Limit::ReportsPerIp => limits.reports_per_ip,
            Limit::ReportsPerAccount => limits.reports_per_account,
        }
    }
}

/// Who a bucket counts: an address, an account, or an e-mail typed at the
/// log-in form (hashed: the store need not hold addresses people typed).
pub fn ip_subject(ip: Option<IpAddr>) -> String {
    // An IPv6 visitor controls its whole /64: count the prefix.
    match ip {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V4(v4)) => v4.to_string(),
        // Only in-process tests have neither a signed address nor a peer.
        None => "unknown".to_string(),
    }
}

/// The bucket subject of an e-mail address typed at log-in.
pub fn email_subject(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    hex::encode(&digest[..16])
}

/// Over a limit: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Until the request would be allowed, rounded up to whole seconds
    /// (what `Retry-After` says).
    pub retry_after_secs: u64,
}

/// Why a check could not say yes.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// Over a limit.
    #[error("rate limited; retry after {} s", .0.retry_after_secs)]
    Limited(Limited),
    /// The store does not answer: the request is not served (a limit that
    /// fails open is no limit during the attack that took the store down).
    #[error(transparent)]
    Store(#[from] StoreUnavailable),
}

/// Checks all buckets, then takes one from each (`take` = 1) or none
/// (`take` = 0 only looks).
/// KEYS: the buckets. ARGV[1]: now (ms); then per bucket: its interval (ms)
/// and burst. ARGV[2 + 2n]: 1 to take, 0 to only look.
/// Returns 0, or the ms until every bucket would allow it.
const GCRA: &str = r"
local now = tonumber(ARGV[1])
local take = tonumber(ARGV[2 + 2 * #KEYS]) == 1
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * burst
  if allow_at - now > wait then wait = allow_at - now end
  tats[i] = new_tat
end
if wait > 0 then return math.ceil(wait) end
if take then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, tostring(tats[i]), 'PX', math.ceil(tats[i] - now) + 1)
  end
end
return 0
";

/// Moves each bucket's TAT back by one interval (never before now, where a
/// bucket is full and its key can go). KEYS: the buckets. ARGV[1]: now
/// (ms); then each bucket's interval (ms).
const REFUND: &str = r"
local now = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', key))
  if tat then
    local new_tat = tat - interval
    if new_tat <= now then
      redis.call('DEL', key)
    else
      redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
    end
  end
end
return 0
";

/// The store key of a bucket.
fn key(limit: Limit, subject: &str) -> String {
    format!("rl:{}:{subject}", limit.name())
}

/// Checks and takes from the region's buckets; cheap to clone.
#[derive(Clone)]
pub struct Limiter {
    limits: std::sync::Arc<Limits>,
    store: Store,
    clock: SharedClock,
    script: std::sync::Arc<redis::Script>,
    refund: std::sync::Arc<redis::Script>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Limiter {
    /// A limiter counting in `store` by `clock`.
    pub fn new(limits: Limits, store: Store, clock: SharedClock) -> Limiter {
        Limiter {
            limits: std::sync::Arc::new(limits),
            store,
            clock,
            script: std::sync::Arc::new(redis::Script::new(GCRA)),
            refund: std::sync::Arc::new(redis::Script::new(REFUND)),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes one request from each of `buckets` (limit, subject), or, if
    /// any is empty, from none: `Limited` with the wait.
    pub async fn take(&self, buckets: &[(Limit, &str)]) -> Result<(), LimitError> {
        self.run(buckets, true).await
    }

    /// Gives back what `take` took from each of `buckets` (a log-in whose
    /// password was right: only failures count, but every attempt takes
    /// before it is hashed, so that concurrent attempts cannot all pass a
    /// look that none of them has counted yet).
    pub async fn refund(&self, buckets: &[(Limit, &str)]) -> Result<(), LimitError> {
        if !self.limits.enabled || buckets.is_empty() {
            return Ok(());
        }
        let now = self.clock.now().timestamp_millis();
        let mut call = self.refund.prepare_invoke();
        call.arg(now);
        for (limit, subject) in buckets {
            call.key(key(*limit, subject))
                .arg(limit.rate(&self.limits).interval_ms());
        }
        let _: i64 = self.store.invoke(&call).await?;
        Ok(())
    }

    async fn run(&self, buckets: &[(Limit, &str)], take: bool) -> Result<(), LimitError> {
        if !self.limits.enabled || buckets.is_empty() {
            return Ok(());
        }
        let now = self.clock.now().timestamp_millis();
        let mut call = self.script.prepare_invoke();
        call.arg(now);
        for (limit, subject) in buckets {
            let rate = limit.rate(&self.limits);
            call.key(key(*limit, subject))
                .arg(rate.interval_ms())
                .arg(rate.count);
        }
        call.arg(i32::from(take));
        let wait_ms: i64 = self.store.invoke(&call).await?;
        if wait_ms <= 0 {
            return Ok(());
        }
        Err(LimitError::Limited(Limited {
            retry_after_secs: u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000),
        }))
    }
}

/// A duration written as people write it (`2s`, `500ms`), as in the
/// topology.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_print_as_the_topology_writes_them() {
        let r: Rate = "10/15m".parse().unwrap();
        assert_eq!(r, Rate::new(10, 15 * MINUTE));
        assert_eq!(r.to_string(), "10/15m");
        assert_eq!(r.interval_ms(), 90_000.0);
        assert_eq!(
            "3 / 1s".parse::<Rate>().unwrap().interval_ms(),
            1000.0 / 3.0
        );
        for bad in ["", "10", "0/1m", "10/0s", "x/1m", "10/soon", "-1/1m"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_round_trip_and_unknown_keys_are_refused() {
        let text = serde_json::to_string(&Limits::default()).unwrap();
        assert_eq!(
            serde_json::from_str::<Limits>(&text).unwrap(),
            Limits::default()
        );
        let some: Limits =
            serde_json::from_str(r#"{"signup_per_ip": "5/1h", "hash_wait": "500ms"}"#).unwrap();
        assert_eq!(some.signup_per_ip, Rate::new(5, HOUR));
        assert_eq!(some.hash_wait, Duration::from_millis(500));
        assert_eq!(some.writes_per_ip, Limits::default().writes_per_ip);
        assert!(serde_json::from_str::<Limits>(r#"{"signup": "5/1h"}"#).is_err());
    }

    #[test]
    fn subjects_fold_what_one_visitor_controls() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(ip_subject(Some(a)), ip_subject(Some(b)));
        assert_eq!(ip_subject(Some("192.0.2.7".parse().unwrap())), "192.0.2.7");
        assert_eq!(
            email_subject(" Ann@Example.com"),
            email_subject("ann@example.com")
        );
    }
}

//! What makes token checks cheap without making them stale or abusable: a bounded cache of
//! token records with a short lifetime, emptied of a token the moment any gateway's `token
//! revoke` announces it on a Redis channel, and a limit on failed lookups per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::backend::Backend;
use crate::tokens::TokenRecord;

/// The channel `token revoke` publishes a revoked token's hash on.
pub fn revocation_channel(key_prefix: &str) -> String {
    format!("{key_prefix}tokens:revoked")
}

/// The channel each gateway confirms a revocation on (the hash again) once it has dropped
/// the token, so that `token revoke` returns only when every gateway has.
pub fn revoked_channel(key_prefix: &str) -> String {
    format!("{key_prefix}tokens:revoked:done")
}

/// Token records by hash, each kept for at most `ttl`. Used only while the revocation
/// listener is subscribed, so a revocation reaches it at once; without the listener
/// every request looks its token up in Redis.
pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (TokenRecord, Instant)>>,
    /// Raised by every revocation and every clear: a lookup that began before it must not
    /// put back the record it read, which may be the revoked one.
    generation: AtomicU64,
    live: AtomicBool,
}

impl TokenCache {
    /// `ttl` zero or `capacity` zero: no cache.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TokenCache {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0 && self.live.load(Ordering::Acquire)
    }

    pub fn get(&self, hash: &str) -> Option<TokenRecord> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let (record, at) = entries.get(hash)?;
        (at.elapsed() < self.ttl).then(|| record.clone())
    }

    /// The generation to hand back to [`TokenCache::insert`] after the lookup.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn insert(&self, record: &TokenRecord, generation: u64) {
        if !self.enabled() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else { return };
        // Checked under the lock that `revoke` and `clear` take too.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(record.hash.clone(), (record.clone(), Instant::now()));
    }

    pub fn revoke(&self, hash: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.remove(hash);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
        }
    }

    fn set_live(&self, live: bool) {
        if !live {
            self.live.store(false, Ordering::Release);
        }
        self.clear();
        if live {
            self.live.store(true, Ordering::Release);
        }
    }

    /// Drops expired entries (run now and then, so that the table does not hold them).
    pub fn prune(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
        }
    }
}

/// Listens on the revocation channel for the life of the process: drops each revoked
/// token from the cache, and empties the cache whenever the subscription is (re)made,
/// since a revocation may have been missed while it was down.
pub async fn listen_for_revocations(backend: Arc<Backend>, cache: Arc<TokenCache>, key_prefix: String) {
    let channel = revocation_channel(&key_prefix);
    let done = revoked_channel(&key_prefix);
    loop {
        match backend.pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    cache.set_live(true);
                    tracing::debug!(channel, "token cache on");
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        match msg.get_payload::<String>() {
                            Ok(hash) => {
                                cache.revoke(&hash);
                                let _ = backend.call(redis::cmd("PUBLISH").arg(&done).arg(&hash)).await;
                            }
                            Err(_) => cache.clear(),
                        }
                    }
                    cache.set_live(false);
                    tracing::debug!(channel, "token cache off: revocation channel lost");
                }
                Err(e) => tracing::debug!(error = %e, "cannot subscribe to the revocation channel"),
            },
            Err(why) => tracing::debug!(error = %why, "no connection for the revocation channel"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A limit on failed token lookups per client address: past it, requests from that address
/// that carry a token are answered 429 without a lookup until the limit allows one again.
pub struct FailedAuthLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl FailedAuthLimit {
    /// `per_sec` zero: no limit.
    pub fn new(per_sec: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(burst).unwrap_or(rate);
        Some(FailedAuthLimit {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
        })
    }

    /// Whole seconds to wait when `ip` is over its limit now.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let blocked = self.blocked.lock().ok()?;
        let until = *blocked.get(&ip)?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(whole_seconds(left))
    }

    /// Counts a failed lookup from `ip`; whole seconds to wait when it was one too many.
    pub fn failed(&self, ip: IpAddr) -> Option<u64> {
        let not_until = self.limiter.check_key(&ip).err()?;
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.insert(ip, Instant::now() + wait);
        }
        Some(whole_seconds(wait))
    }

    /// Forgets addresses not seen lately, so the tables stay small.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
    }
}

/// Proxies in front of the gateway (`--trusted-proxy`) whose `X-Forwarded-For` is believed:
/// the address a request counts as coming from (for the limit on failed lookups) is then the
/// last one in that header that is not itself a trusted proxy. A request from anywhere else is
/// counted by its own address, whatever its headers say, so a client cannot pick the address
/// its failures are counted against.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// From `ADDRESS` or `ADDRESS/PREFIX` items (`10.0.0.0/8`, `::1`).
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in items {
            let item = item.as_ref().trim();
            let (addr, prefix) = match item.split_once('/') {
                Some((addr, prefix)) => (addr, Some(prefix)),
                None => (item, None),
            };
            let addr: IpAddr =
                addr.parse().map_err(|_| format!("--trusted-proxy {item}: not an IP address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= max)
                    .ok_or_else(|| format!("--trusted-proxy {item}: the prefix must be 0 to {max}"))?,
            };
            nets.push((addr, prefix));
        }
        Ok(TrustedProxies(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|&(net, prefix)| match (canonical(net), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net).into(), prefix, 32) == masked(u32::from(ip).into(), prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), prefix, 128) == masked(u128::from(ip), prefix, 128)
            }
            _ => false,
        })
    }

    /// The address a request from `peer` with these `X-Forwarded-For` values counts as.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // Right to left: each hop was added by the proxy it reached; stop at the first
        // address no trusted proxy vouches for (or at one that does not parse).
        for hop in forwarded_for.rev().flat_map(|v| v.rsplit(',')) {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.contains(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`, as a dual-stack socket reports it) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn masked(bits: u128, prefix: u8, width: u32) -> u128 {
    let keep = u32::from(prefix).min(width);
    if keep == 0 {
        0
    } else {
        bits >> (width - keep)
    }
}

fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Scopes;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "::1"]).unwrap();
        assert!(proxies.contains(ip("10.1.2.3")) && proxies.contains(ip("::ffff:10.9.9.9")));
        assert!(!proxies.contains(ip("11.0.0.1")) && !proxies.contains(ip("::2")));
        // A client that is not a trusted proxy cannot choose its address.
        assert_eq!(proxies.client(ip("192.0.2.7"), ["203.0.113.9"].into_iter()), ip("192.0.2.7"));
        // Behind the proxy: the last hop no trusted proxy added, whatever came before it.
        assert_eq!(proxies.client(ip("10.0.0.1"), ["1.1.1.1, 203.0.113.9"].into_iter()), ip("203.0.113.9"));
        assert_eq!(
            proxies.client(ip("10.0.0.1"), ["1.1.1.1", "203.0.113.9, 10.0.0.2"].into_iter()),
            ip("203.0.113.9")
        );
        // No header, or one that does not parse: the proxy's own address.
        assert_eq!(proxies.client(ip("10.0.0.1"), std::iter::empty()), ip("10.0.0.1"));
        assert_eq!(proxies.client(ip("10.0.0.1"), ["garbage"].into_iter()), ip("10.0.0.1"));
        assert_eq!(proxies.client(ip("::1"), ["10.0.0.5, 2001:db8::1"].into_iter()), ip("2001:db8::1"));
        // No proxies configured: nobody's header is believed.
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.1"), ["1.2.3.4"].into_iter()), ip("10.0.0.1"));
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local"]).is_err());
        assert!(TrustedProxies::parse(&["0.0.0.0/0"]).unwrap().contains(ip("8.8.8.8")));
    }

    fn record(hash: &str) -> TokenRecord {
        TokenRecord {
            hash: hash.to_string(),
            agent: "alice".to_string(),
            scopes: Scopes { send: true, read: true, admin: false },
            created_ms: 0,
            expires_ms: 0,
        }
    }

    #[test]
    fn the_cache_holds_records_only_while_live_and_forgets_revoked_ones() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        cache.insert(&record("a"), cache.generation());
        assert!(cache.get("a").is_none(), "not live: nothing cached");
        cache.set_live(true);
        cache.insert(&record("a"), cache.generation());
        assert_eq!(cache.get("a").map(|r| r.agent), Some("alice".to_string()));
        // A lookup that began before a revocation does not put its record back.
        let before = cache.generation();
        cache.revoke("a");
        cache.insert(&record("a"), before);
        assert!(cache.get("a").is_none());
        // Bounded: a third record finds no room.
        cache.insert(&record("a"), cache.generation());
        cache.insert(&record("b"), cache.generation());
        cache.insert(&record("c"), cache.generation());
        assert!(cache.get("c").is_none() && cache.get("b").is_some());
        cache.set_live(false);
        assert!(cache.get("b").is_none());
    }

    #[test]
    fn entries_expire() {
        let cache = TokenCache::new(Duration::from_millis(20), 10);
        cache.set_live(true);
        cache.insert(&record("a"), cache.generation());
        assert!(cache.get("a").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn failed_lookups_are_limited_per_address() {
        let limit = FailedAuthLimit::new(1, 3).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!((0..3).all(|_| limit.failed(ip).is_none()));
        assert!(limit.blocked(ip).is_none());
        assert_eq!(limit.failed(ip), Some(1));
        assert_eq!(limit.blocked(ip), Some(1));
        assert!(limit.blocked(other).is_none() && limit.failed(other).is_none());
        assert!(FailedAuthLimit::new(0, 10).is_none());
    }
}

//! Per-agent send quotas: a token bucket per (namespace, agent), refilled at
//! `mailbox.send-rate` tokens a second up to `mailbox.send-burst` (or the agent's
//! override from `MAILBOX.ACL QUOTA`). The buckets live in memory on the master:
//! they shape traffic and need no persistence; a restart starts them full.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

/// Set once any namespace holds a per-agent quota override (from `MAILBOX.ACL
/// QUOTA`, a load or a replica's effect): until then a send has nothing to look up.
static OVERRIDES: AtomicBool = AtomicBool::new(false);

/// Records that some namespace holds a per-agent quota override.
pub fn overrides_exist() {
    OVERRIDES.store(true, Ordering::Relaxed);
}

/// Whether any namespace may hold a per-agent quota override.
pub fn any_overrides() -> bool {
    OVERRIDES.load(Ordering::Relaxed)
}

struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// (namespace key, agent) -> bucket.
type Buckets = HashMap<(Vec<u8>, Vec<u8>), Bucket>;

static BUCKETS: LazyLock<Mutex<Buckets>> = LazyLock::new(Mutex::default);

/// Takes `n` tokens from the bucket of (`space`, `agent`) at `now`; false (and
/// nothing taken) when there are not enough. A rate of 0 means unlimited.
pub fn take(space: &[u8], agent: &[u8], rate: u64, burst: u64, n: u64, now: u64) -> bool {
    if rate == 0 {
        return true;
    }
    let mut buckets = match BUCKETS.lock() {
        Ok(b) => b,
        Err(poisoned) => poisoned.into_inner(),
    };
    let bucket = buckets
        .entry((space.to_vec(), agent.to_vec()))
        .or_insert(Bucket { tokens: burst as f64, last_ms: now });
    let elapsed = now.saturating_sub(bucket.last_ms) as f64 / 1000.0;
    bucket.tokens = (bucket.tokens + elapsed * rate as f64).min(burst as f64);
    bucket.last_ms = bucket.last_ms.max(now);
    if bucket.tokens + 1e-9 < n as f64 {
        return false;
    }
    bucket.tokens -= n as f64;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let (space, agent) = (b"ns-test".as_slice(), b"agent-a".as_slice());
        for _ in 0..3 {
            assert!(take(space, agent, 2, 3, 1, 1000));
        }
        assert!(!take(space, agent, 2, 3, 1, 1000));
        // Half a second at 2 tokens/s gives one token back.
        assert!(take(space, agent, 2, 3, 1, 1500));
        assert!(!take(space, agent, 2, 3, 1, 1500));
        // Never above the burst.
        assert!(take(space, agent, 2, 3, 3, 100_000));
        assert!(!take(space, agent, 2, 3, 1, 100_000));
        assert!(take(b"x", b"y", 0, 1, 1_000_000, 0));
    }
}

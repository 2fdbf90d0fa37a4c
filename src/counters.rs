//! Server-wide counters and gauges, shown by `MAILBOX.STATS` and `INFO mailbox`.
//! Atomics, because Redis may free a large value on its lazy-free thread.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

pub struct Counter(AtomicI64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicI64::new(0))
    }

    pub fn add(&self, n: usize) {
        self.0.fetch_add(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn sub(&self, n: usize) {
        self.0.fetch_sub(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn delta(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub static SENT: Counter = Counter::new();
pub static EPHEMERAL: Counter = Counter::new();
pub static DEDUP_HITS: Counter = Counter::new();
pub static DELIVERED: Counter = Counter::new();
pub static ACKED: Counter = Counter::new();
pub static NACKED: Counter = Counter::new();
pub static REDELIVERED: Counter = Counter::new();
pub static LEASE_EXPIRED: Counter = Counter::new();
pub static EXPIRED: Counter = Counter::new();
pub static DEAD_LETTERED: Counter = Counter::new();
pub static DEAD_REQUEUED: Counter = Counter::new();
pub static DEAD_PURGED: Counter = Counter::new();
pub static DENIED: Counter = Counter::new();
pub static QUOTA_REFUSED: Counter = Counter::new();
pub static SIZE_REFUSED: Counter = Counter::new();
pub static FULL_REFUSED: Counter = Counter::new();
pub static OVERFLOW_DROPPED: Counter = Counter::new();
pub static THREAD_REFUSED: Counter = Counter::new();
pub static RECEIPTS: Counter = Counter::new();
pub static PUSHES: Counter = Counter::new();
pub static PUSHES_SKIPPED: Counter = Counter::new();
pub static RECEIPTS_DROPPED: Counter = Counter::new();
pub static BLOCKED_READERS: Counter = Counter::new();
/// Gauges kept by the data type's life cycle (create, load, copy, free).
pub static MAILBOXES: Counter = Counter::new();
pub static MESSAGES: Counter = Counter::new();
pub static BYTES: Counter = Counter::new();

/// Set while `maxmemory-policy` lets Redis evict keys (and so whole mailboxes).
pub static EVICTION_RISK: AtomicBool = AtomicBool::new(false);

/// Name and value of every figure, in the order `MAILBOX.STATS` replies them.
pub fn figures() -> Vec<(&'static str, i64)> {
    vec![
        ("sent", SENT.get()),
        ("ephemeral", EPHEMERAL.get()),
        ("dedup_hits", DEDUP_HITS.get()),
        ("delivered", DELIVERED.get()),
        ("acked", ACKED.get()),
        ("nacked", NACKED.get()),
        ("redelivered", REDELIVERED.get()),
        ("lease_expired", LEASE_EXPIRED.get()),
        ("expired", EXPIRED.get()),
        ("dead_lettered", DEAD_LETTERED.get()),
        ("dead_requeued", DEAD_REQUEUED.get()),
        ("dead_purged", DEAD_PURGED.get()),
        ("denied", DENIED.get()),
        ("quota_refused", QUOTA_REFUSED.get()),
        ("size_refused", SIZE_REFUSED.get()),
        ("full_refused", FULL_REFUSED.get()),
        ("overflow_dropped", OVERFLOW_DROPPED.get()),
        ("thread_refused", THREAD_REFUSED.get()),
        ("receipts", RECEIPTS.get()),
        ("receipts_dropped", RECEIPTS_DROPPED.get()),
        ("pushes", PUSHES.get()),
        ("pushes_skipped", PUSHES_SKIPPED.get()),
        ("blocked_readers", BLOCKED_READERS.get()),
        ("mailboxes", MAILBOXES.get()),
        ("messages", MESSAGES.get()),
        ("bytes", BYTES.get()),
    ]
}

//! The module's configs (`mailbox.*`): settable in `redis.conf` after `loadmodule`,
//! with `MODULE LOADEX ... CONFIG mailbox.<name> <value>` and `CONFIG SET` at run time.
//! The values live in atomics so they can be read from any context cheaply.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;

use crate::core::{Overflow, Settings};

/// An integer config's default and the range `CONFIG SET` accepts: written once,
/// used by its atomic, the `redis_module!` table and any clamp.
pub struct Limits {
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

impl Limits {
    /// `value` brought within the range.
    pub const fn clamp(&self, value: i64) -> i64 {
        if value < self.min {
            self.min
        } else if value > self.max {
            self.max
        } else {
            value
        }
    }
}

/// Upper bound of every duration config and option: about 10 years in ms.
pub const MAX_DURATION_MS: i64 = 315_360_000_000;
/// Upper bound of the rate and burst of a send quota.
pub const MAX_QUOTA: i64 = 1_000_000_000;

pub const MAX_PAYLOAD_BYTES_LIMITS: Limits = Limits { default: 1 << 20, min: 1, max: 512 * 1024 * 1024 };
pub const DEFAULT_LEASE_MS_LIMITS: Limits = Limits { default: 30_000, min: 1, max: MAX_DURATION_MS };
pub const DEFAULT_MAX_DELIVERIES_LIMITS: Limits = Limits { default: 5, min: 0, max: u32::MAX as i64 };
pub const DEFAULT_MAXLEN_LIMITS: Limits = Limits { default: 0, min: 0, max: i64::MAX };
pub const DEFAULT_TTL_MS_LIMITS: Limits = Limits { default: 0, min: 0, max: MAX_DURATION_MS };
pub const DEDUP_WINDOW_MS_LIMITS: Limits = Limits { default: 3_600_000, min: 0, max: MAX_DURATION_MS };
pub const AUDIT_MAXLEN_LIMITS: Limits = Limits { default: 10_000, min: 0, max: i64::MAX };
pub const SEND_RATE_LIMITS: Limits = Limits { default: 0, min: 0, max: MAX_QUOTA };
pub const SEND_BURST_LIMITS: Limits = Limits { default: 100, min: 1, max: MAX_QUOTA };
pub const MAX_THREAD_MESSAGES_LIMITS: Limits = Limits { default: 0, min: 0, max: i64::MAX };
pub const THREAD_IDLE_MS_LIMITS: Limits = Limits { default: 3_600_000, min: 1, max: MAX_DURATION_MS };
pub const SWEEP_INTERVAL_MS_LIMITS: Limits = Limits { default: 100, min: 1, max: 60_000 };

/// Largest payload `MAILBOX.SEND` accepts, in bytes.
pub static MAX_PAYLOAD_BYTES: AtomicI64 = AtomicI64::new(MAX_PAYLOAD_BYTES_LIMITS.default);
/// Lease (visibility timeout) of new mailboxes, in ms.
pub static DEFAULT_LEASE_MS: AtomicI64 = AtomicI64::new(DEFAULT_LEASE_MS_LIMITS.default);
/// Deliveries before dead-lettering, for new mailboxes; 0 = unlimited.
pub static DEFAULT_MAX_DELIVERIES: AtomicI64 = AtomicI64::new(DEFAULT_MAX_DELIVERIES_LIMITS.default);
/// Maximum held messages of new mailboxes; 0 = unlimited.
pub static DEFAULT_MAXLEN: AtomicI64 = AtomicI64::new(DEFAULT_MAXLEN_LIMITS.default);
/// TTL of messages sent without one, for new mailboxes, in ms; 0 = none.
pub static DEFAULT_TTL_MS: AtomicI64 = AtomicI64::new(DEFAULT_TTL_MS_LIMITS.default);
/// Dedup window of new mailboxes, in ms; 0 disables dedup.
pub static DEDUP_WINDOW_MS: AtomicI64 = AtomicI64::new(DEDUP_WINDOW_MS_LIMITS.default);
/// How often the master looks for expired leases and TTLs, in ms.
pub static SWEEP_INTERVAL_MS: AtomicI64 = AtomicI64::new(SWEEP_INTERVAL_MS_LIMITS.default);

/// Prefix of the pub/sub channel each mailbox's deliveries are pushed on.
pub static PUSH_PREFIX: Mutex<String> = Mutex::new(String::new());
/// Whether deliveries are pushed on pub/sub at all.
pub static PUSH: AtomicBool = AtomicBool::new(true);

pub const DEFAULT_PUSH_PREFIX: &str = "mailbox:";

redis_module::enum_configuration! {
    /// `mailbox.policy`: the values are the config's words.
    #[allow(non_camel_case_types)]
    #[derive(Copy, PartialEq, Eq, Debug)]
    pub enum PolicyConfig {
        open = 0,
        closed = 1,
    }
}

/// Open: everyone may send, subscribe and publish. Closed: everything needs a grant
/// except reading one's own mailbox.
pub static POLICY: Mutex<PolicyConfig> = Mutex::new(PolicyConfig::open);
/// ACL users that bypass the module's grants (space-separated).
pub static SUPERUSERS: Mutex<String> = Mutex::new(String::new());
pub const DEFAULT_SUPERUSERS: &str = "default";
/// Name of the audit stream (the namespace's hash tag is appended).
pub static AUDIT_STREAM: Mutex<String> = Mutex::new(String::new());
pub const DEFAULT_AUDIT_STREAM: &str = "mailbox:audit";
/// Approximate cap of each audit stream; 0 turns auditing off.
pub static AUDIT_MAXLEN: AtomicI64 = AtomicI64::new(AUDIT_MAXLEN_LIMITS.default);
/// Per-agent send quota: tokens per second (0 = unlimited) and bucket size.
pub static SEND_RATE: AtomicI64 = AtomicI64::new(SEND_RATE_LIMITS.default);
pub static SEND_BURST: AtomicI64 = AtomicI64::new(SEND_BURST_LIMITS.default);
/// Messages a thread may hold in a namespace before further ones are refused; 0 = no limit.
pub static MAX_THREAD_MESSAGES: AtomicI64 = AtomicI64::new(MAX_THREAD_MESSAGES_LIMITS.default);
/// A thread's counter is forgotten once nothing was counted in it for this long, in ms.
pub static THREAD_IDLE_MS: AtomicI64 = AtomicI64::new(THREAD_IDLE_MS_LIMITS.default);

fn text(value: &Mutex<String>) -> String {
    match value.lock() {
        Ok(v) => v.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

pub fn policy() -> crate::core::grants::Policy {
    let closed = match POLICY.lock() {
        Ok(p) => *p == PolicyConfig::closed,
        Err(poisoned) => *poisoned.into_inner() == PolicyConfig::closed,
    };
    if closed {
        crate::core::grants::Policy::Closed
    } else {
        crate::core::grants::Policy::Open
    }
}

pub fn is_superuser(agent: &[u8]) -> bool {
    let check = |users: &String| users.split_ascii_whitespace().any(|u| u.as_bytes() == agent);
    match SUPERUSERS.lock() {
        Ok(users) => check(&users),
        Err(poisoned) => check(&poisoned.into_inner()),
    }
}

pub fn audit_stream() -> String {
    text(&AUDIT_STREAM)
}

/// Runs `f` on the configured audit stream name, without copying it.
pub fn with_audit_stream<R>(f: impl FnOnce(&str) -> R) -> R {
    match AUDIT_STREAM.lock() {
        Ok(v) => f(&v),
        Err(poisoned) => f(&poisoned.into_inner()),
    }
}

pub fn push_prefix() -> String {
    text(&PUSH_PREFIX)
}

pub fn push_enabled() -> bool {
    PUSH.load(Ordering::Relaxed)
}

pub fn get(value: &AtomicI64) -> i64 {
    value.load(Ordering::Relaxed)
}

fn get_u64(value: &AtomicI64) -> u64 {
    u64::try_from(get(value)).unwrap_or(0)
}

/// The settings a mailbox created now gets, resolved from the configs so that they
/// travel explicitly to replicas and the AOF.
pub fn default_settings() -> Settings {
    Settings {
        maxlen: get_u64(&DEFAULT_MAXLEN),
        ttl_ms: get_u64(&DEFAULT_TTL_MS),
        lease_ms: get_u64(&DEFAULT_LEASE_MS).max(1),
        max_deliveries: u32::try_from(get(&DEFAULT_MAX_DELIVERIES)).unwrap_or(u32::MAX),
        dedup_window_ms: get_u64(&DEDUP_WINDOW_MS),
        overflow: Overflow::Refuse,
    }
}

//! Time-driven work on the master: leases that run out, TTLs that pass, dedup
//! windows that end. Mailboxes tell the sweeper when they next need attention; a
//! timer visits the ones that are due. The schedule is a cache: it is rebuilt from
//! the keys after a load, a promotion, a flush or a `SWAPDB`, and keys that move
//! (`RENAME`, `MOVE`, `COPY`, `RESTORE`) are looked at again, so nothing depends
//! on it being complete except the promptness of expiry. Each mailbox remembers
//! the deadline it last gave (`Hints::scheduled`), so an unchanged one costs
//! nothing; a visit and a rebuild always set the schedule and that hint together.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis_module::{Context, KeysCursor, NotifyEvent, RedisString, RedisValue};

use crate::config;
use crate::core::mailbox::Scheduled;
use crate::core::Mailbox;
use crate::counters;
use crate::schedule::{schedule, with_schedule, Schedule};
use crate::server::context::{is_master, now_ms, rstring, select_db};
use crate::server::keys::mailbox_mut;
use crate::types::ffi::MAILBOX_TYPE;

/// Mailboxes visited per timer tick at most, so one tick never stalls the server.
const VISITS_PER_TICK: usize = 1000;

static LAST_POLICY_CHECK: AtomicU64 = AtomicU64::new(0);

/// Starts the periodic timer; each tick arms the next one.
pub fn start(ctx: &Context) {
    arm(ctx);
}

fn arm(ctx: &Context) {
    let every = config::SWEEP_INTERVAL_MS_LIMITS.clamp(config::get(&config::SWEEP_INTERVAL_MS)) as u64;
    ctx.create_timer(Duration::from_millis(every), tick, ());
}

fn tick(ctx: &Context, _: ()) {
    arm(ctx);
    let now = now_ms();
    check_eviction_policy(ctx, now);
    // Timers fire on replicas too, and while a dataset loads (Redis serves events
    // between chunks of a load): only a master that is not loading decides what time did.
    if !is_master(ctx) || ctx.get_flags().contains(redis_module::ContextFlags::LOADING) {
        return;
    }
    if crate::schedule::take_rebuild() {
        rebuild(ctx);
    }
    let due = with_schedule(|s| s.pop_due(now, VISITS_PER_TICK));
    for (db, name) in due {
        if !select_db(ctx, db) {
            continue;
        }
        let key_name = rstring(ctx, name.as_slice());
        let key = ctx.open_key_writable(&key_name);
        if let Ok(Some(mailbox)) = mailbox_mut(&key) {
            crate::upkeep::apply_due(ctx, &key_name, mailbox, now);
            // Always told: this visit took the key out of the schedule, and the key
            // may have come from another name or db with the same deadline.
            let deadline = mailbox.next_deadline();
            schedule(ctx, &name, deadline);
            mailbox.hints.scheduled.set(Scheduled::Told(deadline));
            // A mailbox that arrived by RENAME, MOVE, COPY or RESTORE joins its namespace's
            // list (for BROADCAST) here; for the others this is a lookup.
            let _ = crate::delivery::register(ctx, &name);
        }
        crate::receipts::flush(ctx);
    }
}

/// Scans every database for mailboxes and schedules each by its next deadline.
fn rebuild(ctx: &Context) {
    with_schedule(Schedule::clear);
    let databases = match ctx.call("CONFIG", &["GET", "databases"]) {
        Ok(RedisValue::Array(items)) => items.get(1).and_then(value_as_i64).unwrap_or(16),
        _ => 16,
    };
    for db in 0..databases.clamp(1, 1 << 20) as i32 {
        if !select_db(ctx, db) {
            continue;
        }
        let cursor = KeysCursor::new();
        let mut found: Vec<(Vec<u8>, u64)> = Vec::new();
        let collect = |_: &Context, name: &RedisString, key: Option<&redis_module::key::RedisKey>| {
            if let Some(Ok(Some(mailbox))) = key.map(|k| k.get_value::<Mailbox>(&MAILBOX_TYPE)) {
                let deadline = mailbox.next_deadline();
                mailbox.hints.scheduled.set(Scheduled::Told(deadline));
                if let Some(at) = deadline {
                    found.push((name.as_slice().to_vec(), at));
                }
            }
        };
        while cursor.scan(ctx, &collect) {}
        with_schedule(|s| {
            for (name, at) in found {
                s.set(db, &name, Some(at));
            }
        });
    }
}

fn value_as_i64(value: &RedisValue) -> Option<i64> {
    match value {
        RedisValue::SimpleString(s) => s.parse().ok(),
        RedisValue::BulkString(s) => s.parse().ok(),
        RedisValue::BulkRedisString(s) => s.try_as_str().ok()?.parse().ok(),
        RedisValue::StringBuffer(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        RedisValue::Integer(n) => Some(*n),
        _ => None,
    }
}

/// Keeps `counters::EVICTION_RISK` in step with `maxmemory-policy` (once a second)
/// and logs a warning when it turns on.
pub fn check_eviction_policy(ctx: &Context, now: u64) {
    if now.saturating_sub(LAST_POLICY_CHECK.load(Ordering::Relaxed)) < 1000 {
        return;
    }
    LAST_POLICY_CHECK.store(now, Ordering::Relaxed);
    let policy = match ctx.call("CONFIG", &["GET", "maxmemory-policy"]) {
        Ok(RedisValue::Array(items)) => items.get(1).map(value_as_string).unwrap_or_default(),
        _ => return,
    };
    let risky = !policy.is_empty() && policy != "noeviction";
    if risky && !counters::EVICTION_RISK.swap(true, Ordering::Relaxed) {
        ctx.log_warning(&format!(
            "mailbox: maxmemory-policy is {policy}: Redis may evict whole mailboxes under memory pressure; \
             use maxmemory-policy noeviction"
        ));
    } else if !risky {
        counters::EVICTION_RISK.store(false, Ordering::Relaxed);
    }
}

fn value_as_string(value: &RedisValue) -> String {
    match value {
        RedisValue::SimpleString(s) | RedisValue::BulkString(s) => s.clone(),
        RedisValue::BulkRedisString(s) => s.to_string_lossy(),
        RedisValue::StringBuffer(s) => String::from_utf8_lossy(s).into_owned(),
        _ => String::new(),
    }
}

/// Generic keyspace events: a mailbox that arrived under a new name or db is
/// visited at the next tick (which reschedules it properly).
pub fn on_keyspace_event(ctx: &Context, _kind: NotifyEvent, event: &str, key: &[u8]) {
    if matches!(event, "rename_to" | "move_to" | "copy_to" | "restore") {
        schedule(ctx, key, Some(0));
    }
    if event == "rename_to" {
        // The mailbox's push channel is named after its key.
        crate::push::listeners_may_have_changed();
    }
}

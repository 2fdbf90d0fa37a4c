//! When each mailbox next needs the sweeper: a table of deadlines by (db, key),
//! written by the services after every change (`upkeep::reschedule`) and by
//! keyspace events, read by the timer. It is a cache: the timer rebuilds it from the
//! keys whenever `invalidate` was called (a load, a promotion, a flush, a `SWAPDB`).

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};

use redis_module::Context;

use crate::server::context::selected_db;

pub type Slot = (i32, Vec<u8>);

#[derive(Default)]
pub struct Schedule {
    by_time: BTreeSet<(u64, i32, Vec<u8>)>,
    /// Per database: key -> its deadline in `by_time`.
    by_key: HashMap<i32, HashMap<Vec<u8>, u64>>,
}

impl Schedule {
    pub fn set(&mut self, db: i32, key: &[u8], deadline: Option<u64>) {
        let keys = self.by_key.entry(db).or_default();
        // The common case (a send to a mailbox with nothing timed) costs a lookup, no allocation.
        if keys.get(key).copied() == deadline {
            return;
        }
        if let Some(old) = keys.remove(key) {
            self.by_time.remove(&(old, db, key.to_vec()));
        }
        if let Some(at) = deadline {
            self.by_time.insert((at, db, key.to_vec()));
            keys.insert(key.to_vec(), at);
        }
    }

    pub fn pop_due(&mut self, now: u64, max: usize) -> Vec<Slot> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some(first) = self.by_time.first().cloned() else { break };
            if first.0 > now {
                break;
            }
            self.by_time.remove(&first);
            if let Some(keys) = self.by_key.get_mut(&first.1) {
                keys.remove(&first.2);
            }
            due.push((first.1, first.2));
        }
        due
    }

    /// Forgets every deadline but the visits asked for by keyspace events (deadline
    /// 0): a key that arrived by RENAME just before a rebuild is still looked at.
    pub fn clear(&mut self) {
        let visits: Vec<_> = self.by_time.iter().take_while(|(at, _, _)| *at == 0).cloned().collect();
        self.by_time.clear();
        self.by_key.clear();
        for (_, db, key) in visits {
            self.set(db, &key, Some(0));
        }
    }
}

static SCHEDULE: LazyLock<Mutex<Schedule>> = LazyLock::new(Mutex::default);
/// Set by events that invalidate the schedule; the next tick on a master rebuilds it.
static REBUILD: AtomicBool = AtomicBool::new(true);

pub fn with_schedule<R>(f: impl FnOnce(&mut Schedule) -> R) -> R {
    match SCHEDULE.lock() {
        Ok(mut guard) => f(&mut guard),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// Records when the mailbox `key` of the context's current db next needs a visit.
pub fn schedule(ctx: &Context, key: &[u8], deadline: Option<u64>) {
    let db = selected_db(ctx);
    with_schedule(|s| s.set(db, key, deadline));
}

/// Asks for a rebuild of the whole schedule at the next tick.
pub fn invalidate() {
    REBUILD.store(true, Ordering::Relaxed);
}

/// Takes the rebuild request, if there is one: the caller rebuilds.
pub fn take_rebuild() -> bool {
    REBUILD.swap(false, Ordering::Relaxed)
}

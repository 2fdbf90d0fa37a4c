//! One mailbox: held messages in priority/age order, leases, dead letters and the
//! dedup window. Every operation is O(log n) per message touched. Its settings,
//! ready set and dedup window have files of their own beside this one.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::chunked::ChunkedMap;
use super::id::MessageId;
use super::message::{DeadLetter, DeadReason, Entry, Envelope, EnvelopeRef, State};

mod dedup;
mod ready;
mod settings;

use ready::ReadySet;
pub use settings::{Overflow, Settings};

/// What `sweep` did; the master replicates these lists as explicit effects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepOutcome {
    /// Held messages past their TTL, removed.
    pub expired: Vec<MessageId>,
    /// Leases or nack delays that ran out: the message is ready again.
    pub requeued: Vec<MessageId>,
    /// Leases that ran out at max deliveries: moved to the dead letters.
    pub dead: Vec<MessageId>,
    /// Leases that ran out (requeued or dead-lettered; not those that expired by TTL).
    pub leases_ended: usize,
}

impl SweepOutcome {
    pub fn is_empty(&self) -> bool {
        self.expired.is_empty() && self.requeued.is_empty() && self.dead.is_empty()
    }
}

/// What `nack` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NackOutcome {
    /// Ready again at once.
    pub requeued: Vec<MessageId>,
    /// Ready again at `until` (nack with a delay).
    pub delayed: Vec<MessageId>,
    /// At max deliveries: moved to the dead letters.
    pub dead: Vec<MessageId>,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    pub ready: u64,
    pub leased: u64,
    pub delayed: u64,
    pub dead: u64,
    pub dedup_keys: u64,
}

#[derive(Clone, Debug)]
pub struct Mailbox {
    pub settings: Settings,
    /// The highest id ever stored here; new ids are strictly greater.
    pub last_id: MessageId,
    entries: ChunkedMap<Entry>,
    /// Ready messages: highest priority first, then oldest first.
    ready: ReadySet,
    /// Deadlines of leased and delayed messages.
    timed: BTreeSet<(u64, MessageId)>,
    /// TTL deadlines of held messages.
    expiries: BTreeSet<(u64, MessageId)>,
    dead: BTreeMap<MessageId, DeadLetter>,
    /// dedup key -> (first id, remembered until).
    dedup: HashMap<Vec<u8>, (MessageId, u64)>,
    dedup_order: BTreeSet<(u64, Vec<u8>)>,
    /// Sum of `Envelope::content_bytes` over held and dead messages.
    content_bytes: u64,
    /// Held messages in `State::Leased`; the rest of `timed` are delayed.
    leased: u64,
    /// Sum of the dedup keys' lengths, for `mem_usage`.
    dedup_key_bytes: u64,
    /// Held messages by thread id, for `MAILBOX.THREAD`.
    threads: HashMap<Vec<u8>, BTreeSet<MessageId>>,
    /// The highest id ever held or dead here (unlike `last_id`, never set from
    /// outside): no id above it is known.
    max_stored: MessageId,
    /// Not data: see `Hints`.
    pub hints: Hints,
}

/// What the server last learnt about this mailbox, to skip work that would
/// change nothing. Runtime only: never saved, digested nor copied (a copy starts
/// from "unknown").
#[derive(Debug, Default)]
pub struct Hints {
    /// The listen epoch (see `push.rs`) at which a push to this mailbox found
    /// nobody listening, or 0.
    pub push_quiet: std::cell::Cell<u64>,
    /// What the sweeper's schedule holds for this mailbox (see `schedule.rs`).
    pub scheduled: std::cell::Cell<Scheduled>,
}

/// What a mailbox last told the schedule.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Scheduled {
    /// Nothing yet, or nothing known (a new, loaded or copied mailbox).
    #[default]
    Unknown,
    /// Its next deadline, or `None`: nothing of it is timed.
    Told(Option<u64>),
}

impl Clone for Hints {
    fn clone(&self) -> Self {
        Hints::default()
    }
}

fn any_state(_: State) -> bool {
    true
}

fn is_leased(state: State) -> bool {
    matches!(state, State::Leased { .. })
}

/// Estimated heap bytes per held message beyond its content and the chunks of
/// `entries` and `ready` (counted as allocated): the envelope's counters, length
/// and header, and a share of `timed` and `expiries`.
const HELD_OVERHEAD: usize = 56;
/// The same for a dead letter: the structs and its node in `dead`.
const DEAD_OVERHEAD: usize = 150;
/// The same for a dedup key, on top of the key's length (stored twice).
const DEDUP_OVERHEAD: usize = 100;

fn size_of_content(env: &Envelope) -> usize {
    env.content_bytes()
}

impl Mailbox {
    pub fn new(settings: Settings) -> Self {
        Mailbox {
            settings,
            last_id: MessageId::MIN,
            entries: ChunkedMap::new(),
            ready: ReadySet::default(),
            timed: BTreeSet::new(),
            expiries: BTreeSet::new(),
            dead: BTreeMap::new(),
            dedup: HashMap::new(),
            dedup_order: BTreeSet::new(),
            content_bytes: 0,
            leased: 0,
            dedup_key_bytes: 0,
            threads: HashMap::new(),
            max_stored: MessageId::MIN,
            hints: Hints::default(),
        }
    }

    // ---- sending -------------------------------------------------------

    /// True when one more message would pass `settings.maxlen`.
    pub fn is_full(&self) -> bool {
        self.settings.maxlen != 0 && self.entries.len() as u64 >= self.settings.maxlen
    }

    /// Stores a ready message with 0 deliveries. Dedup entries whose window ended at
    /// or before `env.ts()` are dropped first (deterministic: depends on `env.ts()` only);
    /// then `dedup`, if given, is remembered as `(key, until)` for this id.
    /// Raises `last_id` to `env.id()` if greater. Returns false (and changes nothing)
    /// if a message with this id is already held or dead.
    pub fn push(&mut self, env: EnvelopeRef, dedup: Option<(Vec<u8>, u64)>) -> bool {
        if self.knows(&env.id()) {
            return false;
        }
        self.expire_dedup(env.ts());
        if let Some((key, until)) = dedup {
            self.remember(key, env.id(), until);
        }
        self.add_held(Entry::ready(env));
        true
    }

    /// Stores a message in any state (RDB load, AOF rewrite replay); keeps every index right.
    pub fn restore_entry(&mut self, entry: Entry) -> bool {
        let content = size_of_content(&entry.env);
        self.restore_entry_sized(entry, content)
    }

    /// `restore_entry` where the caller knows `Envelope::content_bytes` already.
    pub fn restore_entry_sized(&mut self, entry: Entry, content_bytes: usize) -> bool {
        debug_assert_eq!(content_bytes, entry.env.content_bytes());
        let id = entry.env.id();
        if self.knows(&id) {
            return false;
        }
        let newest = id > self.max_stored;
        self.raise_last_id(id);
        self.content_bytes += content_bytes as u64;
        self.index_held(entry, newest);
        true
    }

    pub fn restore_dead(&mut self, dead: DeadLetter) -> bool {
        let content = size_of_content(&dead.env);
        self.restore_dead_sized(dead, content)
    }

    /// `restore_dead` where the caller knows `Envelope::content_bytes` already.
    pub fn restore_dead_sized(&mut self, dead: DeadLetter, content_bytes: usize) -> bool {
        debug_assert_eq!(content_bytes, dead.env.content_bytes());
        let id = dead.env.id();
        if self.knows(&id) {
            return false;
        }
        self.raise_last_id(id);
        self.content_bytes += content_bytes as u64;
        self.dead.insert(id, dead);
        true
    }

    // ---- time ----------------------------------------------------------

    /// The earliest moment at which `sweep` would change something (a TTL, a lease
    /// or delay deadline, a dedup window end), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        [
            self.timed.first().map(|(at, _)| *at),
            self.expiries.first().map(|(at, _)| *at),
            self.dedup_order.first().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Applies everything due at `now`: removes held messages whose TTL passed
    /// (`expires_at <= now`), requeues leases and delays whose deadline passed
    /// (`until <= now`) — a lease that ran out with `deliveries >= max_deliveries`
    /// (when that is not 0) goes to the dead letters instead, with `at = now` —
    /// and forgets dedup keys whose window ended. Dead letters never expire.
    pub fn sweep(&mut self, now: u64) -> SweepOutcome {
        let mut out = SweepOutcome::default();
        // TTLs first: a message past its TTL is expired, never requeued or killed.
        while self.expiries.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, id)) = self.expiries.pop_first() else {
                break;
            };
            if self.remove_held(&id).is_some() {
                out.expired.push(id);
            }
        }
        let max = self.settings.max_deliveries;
        while self.timed.first().is_some_and(|(until, _)| *until <= now) {
            let Some((_, id)) = self.timed.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            match entry.state() {
                State::Leased { .. } if max != 0 && entry.deliveries >= max => {
                    self.kill_held(&id, DeadReason::MaxDeliveries, now);
                    out.dead.push(id);
                    out.leases_ended += 1;
                }
                State::Leased { .. } => {
                    self.set_state(&id, any_state, State::Ready, false);
                    out.requeued.push(id);
                    out.leases_ended += 1;
                }
                State::Delayed { .. } => {
                    self.set_state(&id, any_state, State::Ready, false);
                    out.requeued.push(id);
                }
                State::Ready => {}
            }
        }
        self.expire_dedup(now);
        out.expired.sort_unstable();
        out.requeued.sort_unstable();
        out.dead.sort_unstable();
        out
    }

    /// Replica side of `SweepOutcome::expired` (and of `NOACK` reads): removes these
    /// held messages. Returns how many were present.
    pub fn remove(&mut self, ids: &[MessageId]) -> usize {
        ids.iter().filter(|id| self.remove_held(id).is_some()).count()
    }

    /// Makes these leased or delayed messages ready again (deliveries unchanged).
    pub fn requeue(&mut self, ids: &[MessageId]) -> usize {
        ids.iter().filter(|id| self.set_state(id, |s| s != State::Ready, State::Ready, false)).count()
    }

    /// Moves these held messages to the dead letters with `reason` and `at`.
    pub fn kill(&mut self, ids: &[MessageId], reason: DeadReason, at: u64) -> usize {
        ids.iter().filter(|id| self.kill_held(id, reason, at)).count()
    }

    // ---- reading -------------------------------------------------------

    /// Ids of up to `count` ready messages in delivery order (priority desc, then id asc),
    /// skipping any whose TTL passed at `now`. Does not change anything.
    pub fn next_ready(&self, count: usize, now: u64) -> Vec<MessageId> {
        // Without a TTL on any held message, nothing can have expired: no lookups.
        let any_ttl = !self.expiries.is_empty();
        self.ready
            .iter()
            .filter(|id| !any_ttl || self.entries.get(id).is_some_and(|e| !e.env.is_expired(now)))
            .take(count)
            .copied()
            .collect()
    }

    /// Leases these ready messages until `until`, raising their deliveries by one.
    /// Ids that are not ready are skipped. Returns the ids leased.
    pub fn lease(&mut self, ids: &[MessageId], until: u64) -> Vec<MessageId> {
        self.lease_owned(ids.to_vec(), until)
    }

    /// `lease`, keeping in `ids` the ids leased (no second list).
    pub fn lease_owned(&mut self, mut ids: Vec<MessageId>, until: u64) -> Vec<MessageId> {
        ids.retain(|id| self.set_state(id, |s| s == State::Ready, State::Leased { until }, true));
        ids
    }

    /// Removes these ready messages as delivered (`NOACK`), returning them with
    /// deliveries raised by one.
    pub fn take(&mut self, ids: &[MessageId]) -> Vec<Entry> {
        let mut taken = Vec::new();
        for id in ids {
            if !self.is_ready(id) {
                continue;
            }
            if let Some(mut entry) = self.remove_held(id) {
                entry.deliveries = entry.deliveries.saturating_add(1);
                taken.push(entry);
            }
        }
        taken
    }

    pub fn get(&self, id: &MessageId) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Held messages with `start <= id <= end`, oldest first, at most `count`
    /// (0 = no limit), skipping those whose TTL passed at `now`.
    pub fn range(&self, start: MessageId, end: MessageId, count: usize, now: u64) -> Vec<&Entry> {
        self.entries
            .iter_from(&start)
            .take_while(|e| e.env.id() <= end)
            .filter(|e| !e.env.is_expired(now))
            .take(if count == 0 { usize::MAX } else { count })
            .collect()
    }

    /// Held messages of one thread, oldest first, at most `count` (0 = no limit),
    /// skipping those whose TTL passed at `now`.
    pub fn thread(&self, thread: &[u8], count: usize, now: u64) -> Vec<&Entry> {
        let limit = if count == 0 { usize::MAX } else { count };
        self.threads
            .get(thread)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
            .filter(|e| !e.env.is_expired(now))
            .take(limit)
            .collect()
    }

    /// Every held message in id order (RDB save, digest, AOF rewrite).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    // ---- settling ------------------------------------------------------

    /// Removes these messages if they were handed out at least once (deliveries > 0)
    /// and are still held (leased, delayed, or ready again after a lease ran out).
    /// Returns the ids removed, in the order given, without repeats.
    pub fn ack(&mut self, ids: &[MessageId]) -> Vec<MessageId> {
        let mut acked = Vec::new();
        for id in ids {
            if self.entries.get(id).is_some_and(|e| e.deliveries > 0) && self.remove_held(id).is_some() {
                acked.push(*id);
            }
        }
        acked
    }

    /// Puts these leased messages back: with `deliveries >= max_deliveries` (when
    /// not 0) to the dead letters at `now`; else ready at once when `delay_ms` is 0,
    /// or delayed until `now + delay_ms`. Ids not leased are skipped.
    pub fn nack(&mut self, ids: &[MessageId], now: u64, delay_ms: u64) -> NackOutcome {
        let mut out = NackOutcome::default();
        let max = self.settings.max_deliveries;
        for id in ids {
            let Some(entry) = self.entries.get(id) else {
                continue;
            };
            if !is_leased(entry.state()) {
                continue;
            }
            if max != 0 && entry.deliveries >= max {
                self.kill_held(id, DeadReason::MaxDeliveries, now);
                out.dead.push(*id);
            } else if delay_ms == 0 {
                self.set_state(id, any_state, State::Ready, false);
                out.requeued.push(*id);
            } else {
                self.set_state(id, any_state, State::Delayed { until: now.saturating_add(delay_ms) }, false);
                out.delayed.push(*id);
            }
        }
        out
    }

    /// Replica side of a nack with a delay: these leased messages become delayed until `until`.
    pub fn delay(&mut self, ids: &[MessageId], until: u64) -> usize {
        ids.iter().filter(|id| self.set_state(id, is_leased, State::Delayed { until }, false)).count()
    }

    // ---- dead letters --------------------------------------------------

    /// Dead letters with `start <= id <= end`, oldest first, at most `count` (0 = all).
    pub fn dead_range(&self, start: MessageId, end: MessageId, count: usize) -> Vec<&DeadLetter> {
        if start > end {
            return Vec::new();
        }
        self.dead
            .range(start..=end)
            .map(|(_, d)| d)
            .take(if count == 0 { usize::MAX } else { count })
            .collect()
    }

    /// Every dead letter in id order.
    pub fn dead_letters(&self) -> impl Iterator<Item = &DeadLetter> {
        self.dead.values()
    }

    /// Moves these dead letters back to ready with deliveries reset to 0.
    /// Returns the ids requeued, without repeats.
    pub fn revive(&mut self, ids: &[MessageId]) -> Vec<MessageId> {
        let mut revived = Vec::new();
        for id in ids {
            let Some(dead) = self.dead.remove(id) else {
                continue;
            };
            self.index_held(Entry::ready(dead.env), false);
            revived.push(*id);
        }
        revived
    }

    /// Deletes these dead letters. Returns the ids deleted, without repeats.
    pub fn purge_dead(&mut self, ids: &[MessageId]) -> Vec<MessageId> {
        let mut purged = Vec::new();
        for id in ids {
            if let Some(dead) = self.dead.remove(id) {
                self.content_bytes -= size_of_content(&dead.env) as u64;
                purged.push(*id);
            }
        }
        purged
    }

    // ---- figures -------------------------------------------------------

    pub fn counts(&self) -> MailboxCounts {
        MailboxCounts {
            ready: self.ready.len() as u64,
            leased: self.leased,
            delayed: (self.timed.len() as u64).saturating_sub(self.leased),
            dead: self.dead.len() as u64,
            dedup_keys: self.dedup.len() as u64,
        }
    }

    /// Held messages (ready + leased + delayed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Held messages whose TTL has passed at `now` (what the next sweep expires).
    pub fn expiring(&self, now: u64) -> Vec<EnvelopeRef> {
        self.expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter_map(|(_, id)| self.entries.get(id).map(|e| e.env.clone()))
            .collect()
    }

    pub fn dead_letter(&self, id: &MessageId) -> Option<&DeadLetter> {
        self.dead.get(id)
    }

    /// The id of the oldest held message.
    pub fn oldest(&self) -> Option<MessageId> {
        self.entries.keys().next()
    }

    /// Timestamp of the oldest held message.
    pub fn oldest_ts(&self) -> Option<u64> {
        self.entries.first().map(|e| e.env.ts())
    }

    /// Sum of `Envelope::content_bytes` over held and dead messages.
    pub fn content_bytes(&self) -> u64 {
        self.content_bytes
    }

    /// An estimate of the heap bytes this mailbox owns (for `MEMORY USAGE`):
    /// content plus a fixed per-entry overhead for the indexes.
    pub fn mem_usage(&self) -> usize {
        let dedup_keys = usize::try_from(self.dedup_key_bytes).unwrap_or(usize::MAX);
        usize::try_from(self.content_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(self.entries.len().saturating_mul(HELD_OVERHEAD))
            .saturating_add(self.entries.allocated_bytes())
            .saturating_add(self.ready.allocated_bytes())
            .saturating_add(self.dead.len().saturating_mul(DEAD_OVERHEAD))
            .saturating_add(dedup_keys.saturating_mul(2))
            .saturating_add(self.dedup.len().saturating_mul(DEDUP_OVERHEAD))
            .saturating_add(std::mem::size_of::<Mailbox>())
    }

    /// How much work freeing this takes (for lazy free): held + dead + dedup entries.
    pub fn free_effort(&self) -> usize {
        (self.entries.len() + self.dead.len() + self.dedup.len()).max(1)
    }

    // ---- index keeping -------------------------------------------------

    /// Whether this id is held or dead here.
    fn knows(&self, id: &MessageId) -> bool {
        // Ids only grow: one past every id ever stored here needs no lookup.
        *id <= self.max_stored && (self.entries.contains_key(id) || self.dead.contains_key(id))
    }

    fn is_ready(&self, id: &MessageId) -> bool {
        self.entries.get(id).is_some_and(|e| e.state() == State::Ready)
    }

    /// Raises `last_id` and `max_stored` to a stored `id`.
    fn raise_last_id(&mut self, id: MessageId) {
        if id > self.last_id {
            self.last_id = id;
        }
        self.max_stored = self.max_stored.max(id);
    }

    /// Stores a new held message (not known here): counts its content and indexes it.
    fn add_held(&mut self, entry: Entry) {
        let newest = entry.env.id() > self.max_stored;
        self.raise_last_id(entry.env.id());
        self.content_bytes += size_of_content(&entry.env) as u64;
        self.index_held(entry, newest);
    }

    /// Puts a message in `entries` and every index; content is not counted here.
    /// `newest`: its id is above every id held here.
    fn index_held(&mut self, entry: Entry, newest: bool) {
        let id = entry.env.id();
        if let Some(at) = entry.env.expires_at() {
            self.expiries.insert((at, id));
        }
        if let Some(thread) = entry.env.thread() {
            self.threads.entry(thread.to_vec()).or_default().insert(id);
        }
        self.index_state(id, entry.env.priority(), entry.state());
        if newest {
            self.entries.push_last(entry);
        } else {
            self.entries.insert(entry);
        }
    }

    /// Takes a held message out of `entries` and every index; content is not uncounted.
    fn unindex_held(&mut self, id: &MessageId) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        if let Some(at) = entry.env.expires_at() {
            self.expiries.remove(&(at, *id));
        }
        if let Some(thread) = entry.env.thread() {
            if let Some(ids) = self.threads.get_mut(thread) {
                ids.remove(id);
                if ids.is_empty() {
                    self.threads.remove(thread);
                }
            }
        }
        self.unindex_state(*id, entry.env.priority(), entry.state());
        Some(entry)
    }

    /// Removes a held message for good, uncounting its content.
    fn remove_held(&mut self, id: &MessageId) -> Option<Entry> {
        let entry = self.unindex_held(id)?;
        self.content_bytes -= size_of_content(&entry.env) as u64;
        Some(entry)
    }

    /// Moves a held message to the dead letters; its content stays counted.
    fn kill_held(&mut self, id: &MessageId, reason: DeadReason, at: u64) -> bool {
        let Some(entry) = self.unindex_held(id) else {
            return false;
        };
        let dead = DeadLetter { env: entry.env, deliveries: entry.deliveries, reason, at };
        self.dead.insert(*id, dead);
        true
    }

    fn index_state(&mut self, id: MessageId, priority: u8, state: State) {
        match state {
            State::Ready => {
                self.ready.insert(priority, id);
            }
            State::Leased { until } => {
                self.timed.insert((until, id));
                self.leased += 1;
            }
            State::Delayed { until } => {
                self.timed.insert((until, id));
            }
        }
    }

    fn unindex_state(&mut self, id: MessageId, priority: u8, state: State) {
        match state {
            State::Ready => {
                self.ready.remove(priority, &id);
            }
            State::Leased { until } => {
                self.timed.remove(&(until, id));
                self.leased -= 1;
            }
            State::Delayed { until } => {
                self.timed.remove(&(until, id));
            }
        }
    }

    /// Moves a held message whose state passes `from` to `state`, one more delivery
    /// if `deliver`. False if it is not held or its state did not pass.
    fn set_state(&mut self, id: &MessageId, from: fn(State) -> bool, state: State, deliver: bool) -> bool {
        let Some(entry) = self.entries.get_mut(id) else {
            return false;
        };
        let (priority, old) = (entry.env.priority(), entry.state());
        if !from(old) {
            return false;
        }
        entry.set_state(state);
        if deliver {
            entry.deliveries = entry.deliveries.saturating_add(1);
        }
        self.unindex_state(*id, priority, old);
        self.index_state(*id, priority, state);
        true
    }

    /// Panics if any index disagrees with `entries`, `dead` or `dedup`.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut leased = 0;
        let mut with_ttl = 0;
        let mut content = 0u64;
        for e in self.entries.iter() {
            let id = &e.env.id();
            assert!(*id <= self.last_id, "{id} above last_id");
            assert!(!self.dead.contains_key(id), "{id} both held and dead");
            match e.state() {
                State::Ready => {
                    assert!(self.ready.contains(e.env.priority(), id), "{id} ready but not indexed");
                }
                State::Leased { until } | State::Delayed { until } => {
                    assert!(
                        !self.ready.contains(e.env.priority(), id),
                        "{id} in ready while {:?}",
                        e.state()
                    );
                    assert!(self.timed.contains(&(until, *id)), "{id} not in timed");
                    if matches!(e.state(), State::Leased { .. }) {
                        leased += 1;
                    }
                }
            }
            if let Some(at) = e.env.expires_at() {
                assert!(self.expiries.contains(&(at, *id)), "{id} not in expiries");
                with_ttl += 1;
            }
            content += size_of_content(&e.env) as u64;
        }
        assert_eq!(self.ready.len() + self.timed.len(), self.entries.len());
        for (_, id) in &self.timed {
            assert!(self.entries.contains_key(id), "timed {id} not held");
        }
        assert_eq!(self.expiries.len(), with_ttl);
        assert_eq!(self.leased, leased);
        for (id, d) in &self.dead {
            assert_eq!(*id, d.env.id());
            assert!(*id <= self.last_id, "dead {id} above last_id");
            content += size_of_content(&d.env) as u64;
        }
        assert_eq!(self.content_bytes, content);
        assert_eq!(self.dedup.len(), self.dedup_order.len());
        let mut key_bytes = 0;
        for (until, key) in &self.dedup_order {
            assert_eq!(self.dedup.get(key).map(|(_, u)| *u), Some(*until));
            key_bytes += key.len() as u64;
        }
        assert_eq!(self.dedup_key_bytes, key_bytes);
    }
}

#[cfg(test)]
mod tests;

//! One mailbox: held messages in priority/age order, leases, dead letters and the
//! dedup window. Every operation is O(log n) per message touched.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::chunked::ChunkedMap;
use super::id::MessageId;
use super::message::{DeadLetter, DeadReason, Entry, Envelope, EnvelopeRef, State};

/// Per-mailbox settings. Always explicit values (resolved from the module's
/// configs when the mailbox is created), so a replica never depends on its own
/// configs. 0 means "no limit" / "none" where stated.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Maximum number of held messages (ready + leased + delayed); 0 = unlimited.
    pub maxlen: u64,
    /// Default TTL in ms for messages sent without one; 0 = never expire.
    pub ttl_ms: u64,
    /// Default lease (visibility timeout) in ms for reads without `LEASE`; >= 1.
    pub lease_ms: u64,
    /// Deliveries after which an expired lease or a nack dead-letters; 0 = unlimited.
    pub max_deliveries: u32,
    /// How long a `DEDUP` key is remembered, in ms; 0 = dedup disabled.
    pub dedup_window_ms: u64,
    /// What a send to a full mailbox does.
    pub overflow: Overflow,
}

/// What happens when a message arrives at a mailbox holding `maxlen` messages.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The send is refused.
    Refuse,
    /// The oldest held message moves to the dead letters to make room.
    DropOldest,
}

impl Overflow {
    pub fn code(self) -> u8 {
        match self {
            Overflow::Refuse => 0,
            Overflow::DropOldest => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<Overflow> {
        match code {
            0 => Some(Overflow::Refuse),
            1 => Some(Overflow::DropOldest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Refuse => "refuse",
            Overflow::DropOldest => "drop-oldest",
        }
    }
}

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
    /// The deadline last given to the sweeper for this mailbox (see `sweeper.rs`),
    /// `None` when unknown.
    pub scheduled: std::cell::Cell<Option<Option<u64>>>,
}

impl Clone for Hints {
    fn clone(&self) -> Self {
        Hints::default()
    }
}

/// Ready messages: one id map per priority that has any, highest priority
/// first, each oldest first. (One map keyed by (priority, id) would spend 8
/// more bytes per message on the priority and its padding.)
#[derive(Clone, Debug, Default)]
struct ReadySet {
    levels: Vec<(u8, ChunkedMap<MessageId>)>,
}

impl ReadySet {
    fn level(&self, priority: u8) -> Result<usize, usize> {
        self.levels.binary_search_by(|(p, _)| priority.cmp(p))
    }

    fn insert(&mut self, priority: u8, id: MessageId) {
        let at = match self.level(priority) {
            Ok(at) => at,
            Err(at) => {
                self.levels.insert(at, (priority, ChunkedMap::new()));
                at
            }
        };
        self.levels[at].1.insert(id);
    }

    fn remove(&mut self, priority: u8, id: &MessageId) {
        if let Ok(at) = self.level(priority) {
            self.levels[at].1.remove(id);
            if self.levels[at].1.is_empty() {
                self.levels.remove(at);
                if self.levels.is_empty() {
                    self.levels = Vec::new();
                }
            }
        }
    }

    #[cfg(test)]
    fn contains(&self, priority: u8, id: &MessageId) -> bool {
        self.level(priority).is_ok_and(|at| self.levels[at].1.contains_key(id))
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|(_, ids)| ids.len()).sum()
    }

    fn allocated_bytes(&self) -> usize {
        self.levels.iter().map(|(_, ids)| ids.allocated_bytes()).sum::<usize>()
            + self.levels.capacity() * std::mem::size_of::<(u8, ChunkedMap<MessageId>)>()
    }

    /// In delivery order: highest priority first, then oldest first.
    fn iter(&self) -> impl Iterator<Item = &MessageId> + '_ {
        self.levels.iter().flat_map(|(_, ids)| ids.iter())
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

fn size_of_content(env: &Envelope) -> u64 {
    env.content_bytes() as u64
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

    /// The first id stored under `key` if it is still inside the dedup window at `now`.
    pub fn dedup_hit(&self, key: &[u8], now: u64) -> Option<MessageId> {
        match self.dedup.get(key) {
            Some(&(id, until)) if until > now => Some(id),
            _ => None,
        }
    }

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
        if self.knows(&entry.env.id()) {
            return false;
        }
        self.add_held(entry);
        true
    }

    pub fn restore_dead(&mut self, dead: DeadLetter) -> bool {
        let id = dead.env.id();
        if self.knows(&id) {
            return false;
        }
        self.raise_last_id(id);
        self.content_bytes += size_of_content(&dead.env);
        self.dead.insert(id, dead);
        true
    }

    pub fn restore_dedup(&mut self, key: Vec<u8>, id: MessageId, until: u64) {
        self.remember(key, id, until);
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

    /// Forgets dedup keys whose window ends at or before `now`.
    pub fn expire_dedup(&mut self, now: u64) -> usize {
        let mut forgotten = 0;
        while self.dedup_order.first().is_some_and(|(until, _)| *until <= now) {
            let Some((_, key)) = self.dedup_order.pop_first() else {
                break;
            };
            self.dedup.remove(&key);
            self.dedup_key_bytes -= key.len() as u64;
            forgotten += 1;
        }
        forgotten
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
                self.content_bytes -= size_of_content(&dead.env);
                purged.push(*id);
            }
        }
        purged
    }

    /// Every dedup entry as (key, id, until), ordered by (until, key).
    pub fn dedup_entries(&self) -> impl Iterator<Item = (&[u8], MessageId, u64)> {
        self.dedup_order
            .iter()
            .filter_map(|(until, key)| self.dedup.get(key).map(|(id, _)| (key.as_slice(), *id, *until)))
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

    /// Remembers `key` for `id` until `until`, replacing an earlier window for it.
    fn remember(&mut self, mut key: Vec<u8>, id: MessageId, until: u64) {
        if let Some((_, old_until)) = self.dedup.remove(&key) {
            let probe = (old_until, key);
            self.dedup_order.remove(&probe);
            key = probe.1;
            self.dedup_key_bytes -= key.len() as u64;
        }
        self.dedup_key_bytes += key.len() as u64;
        self.dedup_order.insert((until, key.clone()));
        self.dedup.insert(key, (id, until));
    }

    /// Stores a new held message (not known here): counts its content and indexes it.
    fn add_held(&mut self, entry: Entry) {
        let newest = entry.env.id() > self.max_stored;
        self.raise_last_id(entry.env.id());
        self.content_bytes += size_of_content(&entry.env);
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
        self.content_bytes -= size_of_content(&entry.env);
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
            content += size_of_content(&e.env);
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
            content += size_of_content(&d.env);
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
mod tests {
    use super::*;
    use crate::core::message::Parts;

    fn settings(max_deliveries: u32) -> Settings {
        Settings {
            maxlen: 0,
            ttl_ms: 0,
            lease_ms: 30_000,
            max_deliveries,
            dedup_window_ms: 60_000,
            overflow: Overflow::Refuse,
        }
    }

    fn id(ms: u64) -> MessageId {
        MessageId::new(ms, 0)
    }

    fn env(ms: u64, priority: u8, expires_at: Option<u64>) -> EnvelopeRef {
        Envelope::new(Parts {
            id: id(ms),
            from: b"alice",
            to: b"bob",
            ts: ms,
            priority,
            expires_at,
            content_type: None,
            payload: format!("payload {ms}").as_bytes(),
            meta: Some(&b"{}"[..]),
            thread: None,
            correlation: None,
            reply_to: None,
            via: None,
            confirm: false,
        })
    }

    fn mailbox_with(max_deliveries: u32, msgs: &[(u64, u8, Option<u64>)]) -> Mailbox {
        let mut mb = Mailbox::new(settings(max_deliveries));
        for &(ms, priority, ttl) in msgs {
            assert!(mb.push(env(ms, priority, ttl), None));
        }
        mb.check_invariants();
        mb
    }

    fn state_of(mb: &Mailbox, ms: u64) -> Option<(State, u32)> {
        mb.get(&id(ms)).map(|e| (e.state(), e.deliveries))
    }

    type Snapshot =
        (Vec<Entry>, Vec<DeadLetter>, Vec<(Vec<u8>, MessageId, u64)>, MessageId, u64, MailboxCounts);

    fn snapshot(mb: &Mailbox) -> Snapshot {
        (
            mb.entries().cloned().collect(),
            mb.dead_letters().cloned().collect(),
            mb.dedup_entries().map(|(k, id, until)| (k.to_vec(), id, until)).collect(),
            mb.last_id,
            mb.content_bytes(),
            mb.counts(),
        )
    }

    #[test]
    fn new_mailbox_is_empty() {
        let mb = Mailbox::new(settings(0));
        mb.check_invariants();
        assert!(mb.is_empty());
        assert_eq!(mb.len(), 0);
        assert_eq!(mb.counts(), MailboxCounts::default());
        assert_eq!(mb.next_deadline(), None);
        assert_eq!(mb.oldest_ts(), None);
        assert_eq!(mb.free_effort(), 1);
        assert_eq!(mb.mem_usage(), std::mem::size_of::<Mailbox>());
        assert_eq!(mb.last_id, MessageId::MIN);
        assert!(!mb.is_full());
    }

    #[test]
    fn push_stores_ready_and_refuses_known_ids() {
        let mut mb = mailbox_with(0, &[(10, 0, None), (5, 3, Some(100))]);
        assert_eq!(mb.len(), 2);
        assert_eq!(mb.last_id, id(10));
        assert_eq!(state_of(&mb, 5), Some((State::Ready, 0)));
        assert_eq!(
            mb.content_bytes(),
            (env(10, 0, None).content_bytes() + env(5, 3, None).content_bytes()) as u64
        );
        assert_eq!(mb.next_deadline(), Some(100));
        assert_eq!(mb.oldest_ts(), Some(5));

        // A held id, then a dead id, is refused without change.
        let before = snapshot(&mb);
        assert!(!mb.push(env(10, 9, Some(1)), Some((b"k".to_vec(), 50))));
        assert_eq!(snapshot(&mb), before);
        mb.kill(&[id(10)], DeadReason::MaxDeliveries, 7);
        assert!(!mb.push(env(10, 0, None), None));
        assert!(!mb.restore_entry(Entry::new(env(10, 0, None), 0, State::Ready)));
        assert!(!mb.restore_dead(DeadLetter {
            env: env(5, 0, None),
            deliveries: 0,
            reason: DeadReason::MaxDeliveries,
            at: 0
        }));
        mb.check_invariants();
    }

    #[test]
    fn is_full_follows_maxlen() {
        let mut mb = Mailbox::new(Settings { maxlen: 2, ..settings(0) });
        assert!(!mb.is_full());
        mb.push(env(1, 0, None), None);
        assert!(!mb.is_full());
        mb.push(env(2, 0, None), None);
        assert!(mb.is_full());
        // Dead letters do not count.
        mb.kill(&[id(1)], DeadReason::MaxDeliveries, 0);
        assert!(!mb.is_full());
    }

    #[test]
    fn next_ready_orders_by_priority_then_age() {
        let mb = mailbox_with(0, &[(1, 0, None), (2, 5, None), (3, 5, Some(50)), (4, 9, None), (5, 0, None)]);
        assert_eq!(mb.next_ready(10, 0), vec![id(4), id(2), id(3), id(1), id(5)]);
        assert_eq!(mb.next_ready(2, 0), vec![id(4), id(2)]);
        assert_eq!(mb.next_ready(0, 0), Vec::<MessageId>::new());
        // Expired at `now` is skipped without being removed.
        assert_eq!(mb.next_ready(10, 50), vec![id(4), id(2), id(1), id(5)]);
        assert_eq!(mb.next_ready(10, 49).len(), 5);
        assert_eq!(mb.len(), 5);
    }

    #[test]
    fn lease_only_ready_messages() {
        let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, None), (3, 0, None)]);
        assert_eq!(mb.lease(&[id(1), id(1), id(9)], 100), vec![id(1)]);
        assert_eq!(state_of(&mb, 1), Some((State::Leased { until: 100 }, 1)));
        // Already leased: skipped, deadline unchanged.
        assert_eq!(mb.lease(&[id(1), id(2)], 200), vec![id(2)]);
        assert_eq!(state_of(&mb, 1), Some((State::Leased { until: 100 }, 1)));
        assert_eq!(mb.next_ready(10, 0), vec![id(3)]);
        assert_eq!(mb.next_deadline(), Some(100));
        let c = mb.counts();
        assert_eq!((c.ready, c.leased, c.delayed), (1, 2, 0));
        mb.check_invariants();
    }

    #[test]
    fn take_removes_ready_messages() {
        let mut mb = mailbox_with(0, &[(1, 0, Some(10)), (2, 0, None), (3, 0, None)]);
        mb.lease(&[id(2)], 100);
        let taken = mb.take(&[id(1), id(2), id(1), id(7)]);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].env.id(), id(1));
        assert_eq!(taken[0].deliveries, 1);
        assert_eq!(mb.len(), 2);
        assert_eq!(mb.next_deadline(), Some(100));
        assert_eq!(
            mb.content_bytes(),
            (env(2, 0, None).content_bytes() + env(3, 0, None).content_bytes()) as u64
        );
        mb.check_invariants();
    }

    #[test]
    fn ack_needs_a_delivery() {
        let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, None), (3, 0, None), (4, 0, None)]);
        mb.lease(&[id(1), id(2), id(3)], 100);
        mb.nack(&[id(2)], 10, 0); // ready again, deliveries 1
        mb.nack(&[id(3)], 10, 50); // delayed
        assert_eq!(mb.ack(&[id(4), id(3), id(2), id(1), id(1), id(9)]), vec![id(3), id(2), id(1)]);
        assert_eq!(mb.len(), 1);
        assert_eq!(state_of(&mb, 4), Some((State::Ready, 0)));
        assert_eq!(mb.next_deadline(), None);
        mb.check_invariants();
    }

    #[test]
    fn nack_requeues_delays_or_kills() {
        let mut mb = mailbox_with(2, &[(1, 0, None), (2, 0, None), (3, 0, None), (4, 0, None)]);
        mb.lease(&[id(1), id(2), id(3)], 100);
        let out = mb.nack(&[id(3), id(1), id(4), id(9)], 20, 0);
        assert_eq!(out, NackOutcome { requeued: vec![id(3), id(1)], delayed: vec![], dead: vec![] });
        assert_eq!(state_of(&mb, 1), Some((State::Ready, 1)));

        let out = mb.nack(&[id(2)], 20, 30);
        assert_eq!(out.delayed, vec![id(2)]);
        assert_eq!(state_of(&mb, 2), Some((State::Delayed { until: 50 }, 1)));
        assert_eq!(mb.counts().delayed, 1);
        // Not leased: skipped.
        assert_eq!(mb.nack(&[id(2)], 20, 0), NackOutcome::default());

        // Second delivery reaches max_deliveries = 2: a nack kills it.
        mb.lease(&[id(1)], 200);
        let out = mb.nack(&[id(1)], 60, 0);
        assert_eq!(out.dead, vec![id(1)]);
        let dead = mb.dead_range(MessageId::MIN, MessageId::MAX, 0);
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].deliveries, dead[0].reason, dead[0].at), (2, DeadReason::MaxDeliveries, 60));
        mb.check_invariants();

        // A huge delay saturates.
        let mut mb = mailbox_with(0, &[(1, 0, None)]);
        mb.lease(&[id(1)], 200);
        mb.nack(&[id(1)], 60, u64::MAX);
        assert_eq!(state_of(&mb, 1), Some((State::Delayed { until: u64::MAX }, 1)));
        mb.check_invariants();
    }

    #[test]
    fn unlimited_deliveries_never_kill() {
        let mut mb = mailbox_with(0, &[(1, 0, None)]);
        for round in 1..=50u64 {
            assert_eq!(mb.lease(&[id(1)], round * 10), vec![id(1)]);
            if round % 2 == 0 {
                assert_eq!(mb.nack(&[id(1)], round * 10, 0).requeued, vec![id(1)]);
            } else {
                assert_eq!(mb.sweep(round * 10).requeued, vec![id(1)]);
            }
        }
        assert_eq!(state_of(&mb, 1), Some((State::Ready, 50)));
        assert_eq!(mb.counts().dead, 0);
    }

    #[test]
    fn delay_requeue_remove_and_kill() {
        let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, None), (3, 0, Some(500)), (4, 0, None)]);
        mb.lease(&[id(1), id(2), id(3)], 100);
        assert_eq!(mb.delay(&[id(1), id(4), id(1)], 300), 1);
        assert_eq!(state_of(&mb, 1), Some((State::Delayed { until: 300 }, 1)));
        assert_eq!(mb.requeue(&[id(1), id(2), id(4), id(2)]), 2);
        assert_eq!(state_of(&mb, 2), Some((State::Ready, 1)));
        assert_eq!(mb.remove(&[id(2), id(2), id(9)]), 1);
        // Kill works in any state and drops the TTL index.
        assert_eq!(mb.kill(&[id(3), id(4), id(3)], DeadReason::MaxDeliveries, 77), 2);
        assert_eq!(mb.next_deadline(), None);
        assert_eq!(mb.counts().dead, 2);
        assert_eq!(mb.dead_letters().map(|d| d.deliveries).collect::<Vec<_>>(), vec![1, 0]);
        mb.check_invariants();
    }

    #[test]
    fn sweep_expires_requeues_and_kills() {
        let mut mb = mailbox_with(
            1,
            &[
                (1, 0, Some(50)),
                (2, 0, None),
                (3, 0, None),
                (4, 0, Some(40)),
                (5, 0, None),
                (6, 0, None),
                (7, 0, None),
            ],
        );
        mb.lease(&[id(5), id(3)], 30); // deliveries 1 = max: die at the deadline
        mb.lease(&[id(4)], 45); // TTL 40 passes first: expired, not killed
        mb.lease(&[id(6)], 90); // not due
        mb.lease(&[id(7)], 10);
        mb.delay(&[id(7)], 25);
        assert_eq!(mb.next_deadline(), Some(25));
        assert_eq!(mb.sweep(24), SweepOutcome::default());

        let out = mb.sweep(50);
        assert_eq!(
            out,
            SweepOutcome {
                expired: vec![id(1), id(4)],
                requeued: vec![id(7)],
                dead: vec![id(3), id(5)],
                leases_ended: 2
            }
        );
        assert!(!out.is_empty());
        assert_eq!(state_of(&mb, 7), Some((State::Ready, 1)));
        assert_eq!(
            mb.dead_letters().map(|d| (d.env.id(), d.at)).collect::<Vec<_>>(),
            vec![(id(3), 50), (id(5), 50)]
        );
        assert_eq!(mb.next_deadline(), Some(90));
        mb.check_invariants();
        // Dead letters never expire; a second sweep at the same time does nothing.
        assert!(mb.sweep(50).is_empty());
        assert_eq!(mb.sweep(90).dead, vec![id(6)]);
        assert_eq!(mb.next_deadline(), None);
        assert!(mb.sweep(u64::MAX).is_empty());
        mb.check_invariants();
    }

    #[test]
    fn sweep_expires_exactly_at_the_ttl() {
        let mut mb = mailbox_with(0, &[(1, 0, Some(100))]);
        assert!(mb.sweep(99).is_empty());
        assert_eq!(mb.range(MessageId::MIN, MessageId::MAX, 0, 99).len(), 1);
        assert_eq!(mb.range(MessageId::MIN, MessageId::MAX, 0, 100).len(), 0);
        assert_eq!(mb.sweep(100).expired, vec![id(1)]);
        assert!(mb.is_empty());
        assert_eq!(mb.content_bytes(), 0);
    }

    #[test]
    fn dedup_window() {
        let mut mb = Mailbox::new(settings(0));
        assert!(mb.push(env(10, 0, None), Some((b"k1".to_vec(), 110))));
        assert_eq!(mb.dedup_hit(b"k1", 10), Some(id(10)));
        assert_eq!(mb.dedup_hit(b"k1", 109), Some(id(10)));
        assert_eq!(mb.dedup_hit(b"k1", 110), None);
        assert_eq!(mb.dedup_hit(b"k2", 10), None);
        assert!(mb.push(env(20, 0, None), Some((b"k2".to_vec(), 60))));
        assert_eq!(mb.next_deadline(), Some(60));
        assert_eq!(
            mb.dedup_entries().collect::<Vec<_>>(),
            vec![(&b"k2"[..], id(20), 60), (&b"k1"[..], id(10), 110)]
        );
        // A push at ts 60 drops windows ended at or before 60.
        assert!(mb.push(env(60, 0, None), None));
        assert_eq!(mb.counts().dedup_keys, 1);
        assert_eq!(mb.dedup_hit(b"k2", 0), None);
        // Remembering a key again replaces its window.
        mb.restore_dedup(b"k1".to_vec(), id(60), 500);
        assert_eq!(mb.dedup_entries().collect::<Vec<_>>(), vec![(&b"k1"[..], id(60), 500)]);
        mb.check_invariants();
        assert_eq!(mb.expire_dedup(499), 0);
        assert_eq!(mb.sweep(500), SweepOutcome::default());
        assert_eq!(mb.counts().dedup_keys, 0);
        assert_eq!(mb.next_deadline(), None);
        mb.check_invariants();
    }

    #[test]
    fn revive_and_purge() {
        let mut mb = mailbox_with(1, &[(1, 4, Some(1_000)), (2, 0, None), (3, 0, None)]);
        mb.lease(&[id(1), id(2), id(3)], 10);
        assert_eq!(mb.sweep(10).dead, vec![id(1), id(2), id(3)]);
        let bytes = mb.content_bytes();
        assert_eq!(mb.next_deadline(), None);
        assert_eq!(mb.revive(&[id(1), id(1), id(9)]), vec![id(1)]);
        assert_eq!(mb.content_bytes(), bytes);
        assert_eq!(state_of(&mb, 1), Some((State::Ready, 0)));
        assert_eq!(mb.next_deadline(), Some(1_000));
        assert_eq!(mb.next_ready(5, 0), vec![id(1)]);
        assert_eq!(mb.purge_dead(&[id(2), id(2), id(1)]), vec![id(2)]);
        assert_eq!(mb.content_bytes(), bytes - env(2, 0, None).content_bytes() as u64);
        mb.check_invariants();
        // A revived message whose TTL passed goes at the next sweep.
        mb.kill(&[id(1)], DeadReason::MaxDeliveries, 11);
        assert_eq!(mb.revive(&[id(1)]), vec![id(1)]);
        assert_eq!(mb.sweep(2_000).expired, vec![id(1)]);
        mb.check_invariants();
    }

    #[test]
    fn thread_index_follows_held_messages() {
        let mut mb = Mailbox::new(settings(0));
        for ms in 1..=4u64 {
            let e = env(ms, 0, None);
            let e = Envelope::new(Parts { thread: (ms != 3).then_some(&b"t"[..]), ..e.parts() });
            assert!(mb.push(e, None));
        }
        let ids = |mb: &Mailbox| mb.thread(b"t", 0, 0).iter().map(|e| e.env.id().ms).collect::<Vec<_>>();
        assert_eq!(ids(&mb), vec![1, 2, 4]);
        assert_eq!(mb.thread(b"t", 2, 0).len(), 2);
        let leased = mb.lease(&[id(2)], 100);
        assert_eq!(leased.len(), 1);
        assert_eq!(ids(&mb), vec![1, 2, 4]);
        mb.ack(&[id(2)]);
        assert_eq!(ids(&mb), vec![1, 4]);
        mb.remove(&[id(1), id(4)]);
        assert!(mb.thread(b"t", 0, 0).is_empty());
        assert!(mb.threads.is_empty());
    }

    #[test]
    fn ranges() {
        let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, Some(5)), (3, 0, None), (4, 0, None)]);
        let ids = |v: Vec<&Entry>| v.iter().map(|e| e.env.id()).collect::<Vec<_>>();
        assert_eq!(ids(mb.range(MessageId::MIN, MessageId::MAX, 0, 0)), vec![id(1), id(2), id(3), id(4)]);
        assert_eq!(ids(mb.range(MessageId::MIN, MessageId::MAX, 0, 5)), vec![id(1), id(3), id(4)]);
        assert_eq!(ids(mb.range(id(2), id(3), 0, 0)), vec![id(2), id(3)]);
        assert_eq!(ids(mb.range(id(1), MessageId::MAX, 2, 5)), vec![id(1), id(3)]);
        assert!(mb.range(id(3), id(2), 0, 0).is_empty());
        assert!(mb.range(MessageId::MAX, MessageId::MIN, 1, 0).is_empty());
        mb.kill(&[id(1), id(3), id(4)], DeadReason::MaxDeliveries, 0);
        let dead = |v: Vec<&DeadLetter>| v.iter().map(|d| d.env.id()).collect::<Vec<_>>();
        assert_eq!(dead(mb.dead_range(MessageId::MIN, MessageId::MAX, 0)), vec![id(1), id(3), id(4)]);
        assert_eq!(dead(mb.dead_range(id(2), MessageId::MAX, 1)), vec![id(3)]);
        assert!(mb.dead_range(id(4), id(1), 0).is_empty());
    }

    #[test]
    fn restore_rebuilds_every_index() {
        let mut mb = Mailbox::new(settings(3));
        assert!(mb.restore_entry(Entry::new(env(1, 2, Some(70)), 2, State::Leased { until: 40 })));
        assert!(mb.restore_entry(Entry::new(env(2, 0, None), 1, State::Delayed { until: 30 })));
        assert!(mb.restore_entry(Entry::new(env(3, 0, None), 5, State::Ready)));
        assert!(mb.restore_dead(DeadLetter {
            env: env(9, 0, None),
            deliveries: 3,
            reason: DeadReason::MaxDeliveries,
            at: 8
        }));
        mb.restore_dedup(b"d".to_vec(), id(3), 20);
        mb.check_invariants();
        assert_eq!(mb.last_id, id(9));
        assert_eq!(mb.counts(), MailboxCounts { ready: 1, leased: 1, delayed: 1, dead: 1, dedup_keys: 1 });
        assert_eq!(mb.next_deadline(), Some(20));
        assert_eq!(mb.free_effort(), 5);
        assert!(mb.restore_entry(Entry::new(env(0, 0, None), 0, State::Ready)));
        assert_eq!(mb.last_id, id(9));
        assert_eq!(mb.oldest_ts(), Some(0));
        assert!(!mb.restore_entry(Entry::new(env(9, 0, None), 0, State::Ready)));
        mb.check_invariants();
    }

    #[test]
    fn mem_usage_counts_everything() {
        let mut mb = Mailbox::new(settings(0));
        let base = mb.mem_usage();
        mb.push(env(1, 0, None), Some((b"key".to_vec(), 100)));
        let one = mb.mem_usage();
        assert!(one >= base + env(1, 0, None).content_bytes() + HELD_OVERHEAD + 100);
        mb.kill(&[id(1)], DeadReason::MaxDeliveries, 0);
        assert!(mb.mem_usage() < one);
        mb.purge_dead(&[id(1)]);
        mb.expire_dedup(100);
        assert_eq!(mb.mem_usage(), base);
    }

    // ---- randomized -----------------------------------------------------

    use crate::core::xorshift::XorShift;

    /// Some ids: mostly known ones, some unknown, some repeated.
    fn pick_ids(rng: &mut XorShift, mb: &Mailbox) -> Vec<MessageId> {
        let known: Vec<MessageId> =
            mb.entries().map(|e| e.env.id()).chain(mb.dead_letters().map(|d| d.env.id())).collect();
        (0..rng.below(5))
            .map(|_| {
                if known.is_empty() || rng.below(8) == 0 {
                    MessageId::new(rng.below(400), 0)
                } else {
                    known[rng.below(known.len() as u64) as usize]
                }
            })
            .collect()
    }

    /// The delivery order computed the slow way.
    fn expected_ready(mb: &Mailbox, now: u64) -> Vec<MessageId> {
        let mut ready: Vec<&Entry> =
            mb.entries().filter(|e| e.state() == State::Ready && !e.env.is_expired(now)).collect();
        ready.sort_by_key(|e| (std::cmp::Reverse(e.env.priority()), e.env.id()));
        ready.iter().map(|e| e.env.id()).collect()
    }

    /// Loading what an RDB save writes gives the same mailbox.
    fn reload(mb: &Mailbox) -> Mailbox {
        let mut copy = Mailbox::new(mb.settings);
        for e in mb.entries() {
            assert!(copy.restore_entry(e.clone()));
        }
        for d in mb.dead_letters() {
            assert!(copy.restore_dead(d.clone()));
        }
        for (key, id, until) in mb.dedup_entries() {
            copy.restore_dedup(key.to_vec(), id, until);
        }
        copy.last_id = mb.last_id;
        copy
    }

    #[test]
    fn random_operations_keep_every_index_consistent() {
        for seed in 1..=40u64 {
            let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let max_deliveries = rng.below(4) as u32;
            let mut mb = Mailbox::new(Settings {
                maxlen: 0,
                ttl_ms: 0,
                lease_ms: 10,
                max_deliveries,
                dedup_window_ms: 0,
                overflow: Overflow::Refuse,
            });
            let mut now = 0u64;
            for step in 0..400 {
                now += rng.below(6);
                let ids = pick_ids(&mut rng, &mb);
                match rng.below(14) {
                    0..=2 => {
                        let new_id = MessageId::next_after(mb.last_id, now);
                        let ttl = if rng.below(3) == 0 { Some(now + rng.below(60)) } else { None };
                        let e = env(0, rng.below(10) as u8, ttl);
                        let payload = vec![b'x'; rng.below(50) as usize];
                        let e = Envelope::new(Parts { id: new_id, ts: now, payload: &payload, ..e.parts() });
                        let dedup = if rng.below(3) == 0 {
                            let key = format!("k{}", rng.below(6)).into_bytes();
                            if mb.dedup_hit(&key, now).is_some() {
                                None
                            } else {
                                Some((key, now + rng.below(40)))
                            }
                        } else {
                            None
                        };
                        assert!(mb.push(e, dedup));
                    }
                    3 => {
                        let want = expected_ready(&mb, now);
                        let count = rng.below(4) as usize;
                        let got = mb.next_ready(count, now);
                        assert_eq!(got, want.into_iter().take(count).collect::<Vec<_>>());
                        let leased = mb.lease(&got, now + 1 + rng.below(20));
                        assert_eq!(leased, got);
                    }
                    4 => {
                        let ids = mb.next_ready(rng.below(3) as usize, now);
                        let taken = mb.take(&ids);
                        assert_eq!(taken.iter().map(|e| e.env.id()).collect::<Vec<_>>(), ids);
                    }
                    5 => {
                        let before: Vec<Option<u32>> =
                            ids.iter().map(|i| mb.get(i).map(|e| e.deliveries)).collect();
                        let acked = mb.ack(&ids);
                        for (i, d) in ids.iter().zip(before) {
                            assert_eq!(acked.contains(i), d.is_some_and(|d| d > 0));
                        }
                    }
                    6 => {
                        // A nack on the master, replayed on a replica as effects.
                        let mut replica = mb.clone();
                        let delay = if rng.below(2) == 0 { 0 } else { rng.below(30) };
                        let out = mb.nack(&ids, now, delay);
                        replica.requeue(&out.requeued);
                        replica.delay(&out.delayed, now + delay);
                        replica.kill(&out.dead, DeadReason::MaxDeliveries, now);
                        replica.check_invariants();
                        assert_eq!(snapshot(&replica), snapshot(&mb));
                    }
                    7 => {
                        let until = now + rng.below(20);
                        let n = mb.delay(&ids, until);
                        assert!(n <= ids.len());
                    }
                    8 => {
                        mb.requeue(&ids);
                    }
                    9 => {
                        mb.kill(&ids, DeadReason::MaxDeliveries, now);
                    }
                    10 => {
                        mb.revive(&ids);
                    }
                    11 => {
                        mb.purge_dead(&ids);
                    }
                    12 => {
                        mb.remove(&ids);
                    }
                    _ => {
                        // A sweep on the master, replayed on a replica as effects.
                        let mut replica = mb.clone();
                        let deadline = mb.next_deadline();
                        let out = mb.sweep(now);
                        assert_eq!(
                            out.is_empty() && mb.counts().dedup_keys == replica.counts().dedup_keys,
                            deadline.is_none_or(|d| d > now)
                        );
                        for list in [&out.expired, &out.requeued, &out.dead] {
                            assert!(list.windows(2).all(|w| w[0] < w[1]), "not sorted: {list:?}");
                        }
                        assert!(mb.next_deadline().is_none_or(|d| d > now));
                        assert!(mb.entries().all(|e| !e.env.is_expired(now)));
                        assert_eq!(replica.remove(&out.expired), out.expired.len());
                        assert_eq!(replica.requeue(&out.requeued), out.requeued.len());
                        assert_eq!(replica.kill(&out.dead, DeadReason::MaxDeliveries, now), out.dead.len());
                        replica.expire_dedup(now);
                        replica.check_invariants();
                        assert_eq!(snapshot(&replica), snapshot(&mb));
                    }
                }
                mb.check_invariants();
                if step % 50 == 0 {
                    let copy = reload(&mb);
                    copy.check_invariants();
                    assert_eq!(snapshot(&copy), snapshot(&mb));
                }
            }
        }
    }
}

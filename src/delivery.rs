//! Storing messages: one envelope in one mailbox (`send_one`, also how a receipt is
//! stored) or in many (`deliver_many`), with what every sending command shares:
//! opening (or creating) receiver mailboxes and their namespace, the admission checks
//! (send quota, thread loop breaker), the announcement of a stored message (event,
//! wake-up, push, schedule) and the presence cache of the agents that send.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use redis_module::key::RedisKeyWritable;
use redis_module::{Context, ContextFlags, RedisError, RedisString, RedisValue};

use crate::access::Caller;
use crate::args::SendOptions;
use crate::config;
use crate::core::names;
use crate::core::namespace::Namespace;
use crate::core::{DeadReason, Entry, Envelope, EnvelopeRef, Mailbox, MessageId, Overflow, Parts};
use crate::counters;
use crate::effects::{dedup_for, Effect, NsEffect};
use crate::errors;
use crate::ids::{self, new_id};
use crate::push;
use crate::server::context::{now_ms, replaying, rstring};
use crate::server::keys::{mailbox_mut, namespace_mut};
use crate::server::replicate::{replicate, replicate_args, replicate_put};
use crate::server::signal::{notify, signal_ready};
use crate::types::ffi::{MAILBOX_TYPE, NAMESPACE_TYPE};
use crate::types::mailbox::{gauge_add, tracked};
use crate::upkeep::{apply_due, report_dead, reschedule};

/// Presence is refreshed at most this often per agent, to keep replication light.
const PRESENCE_RESOLUTION_MS: u64 = 1000;

/// Runs `f` on the namespace of `name`, creating it (and replicating that) if needed.
pub fn with_namespace<R>(
    ctx: &Context,
    name: &[u8],
    f: impl FnOnce(&mut Namespace, &[u8]) -> R,
) -> Result<R, RedisError> {
    let ns_name = names::namespace_key(name);
    let key_name = rstring(ctx, ns_name.as_slice());
    let key = ctx.open_key_writable(&key_name);
    if namespace_mut(&key)?.is_none() {
        replicate_ns(ctx, &ns_name, &NsEffect::Init);
        key.set_value(&NAMESPACE_TYPE, Namespace::new()).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
    }
    let ns = namespace_mut(&key)?.ok_or(RedisError::Str(errors::WRONGTYPE))?;
    Ok(f(ns, &ns_name))
}

/// Records a namespace effect: applies it and replicates it.
pub fn ns_apply(ctx: &Context, ns: &mut Namespace, ns_key: &[u8], effect: NsEffect) {
    replicate_ns(ctx, ns_key, &effect);
    effect.apply(ns);
}

pub fn replicate_ns(ctx: &Context, ns_key: &[u8], effect: &NsEffect) {
    replicate_args(ctx, ns_key, &effect.to_args());
}

/// Opens the mailbox `name`, creating it with the configured defaults if the key
/// is empty (replicated, and registered in its namespace). `WRONGTYPE` if the key
/// holds something else.
pub fn open_or_create<'k>(
    ctx: &Context,
    key: &'k RedisKeyWritable,
    name: &[u8],
) -> Result<(&'k mut Mailbox, bool), RedisError> {
    if let Some(mb) = mailbox_mut(key)? {
        return Ok((mb, false));
    }
    Ok((create(ctx, key, name, config::default_settings())?, true))
}

/// Creates mailbox `name` at the empty `key` with `settings`: registered in its
/// namespace, replicated.
pub fn create<'k>(
    ctx: &Context,
    key: &'k RedisKeyWritable,
    name: &[u8],
    settings: crate::core::Settings,
) -> Result<&'k mut Mailbox, RedisError> {
    // The namespace first: it is the step that can fail (its key may hold another
    // type), and a refused command must leave no mailbox behind.
    register(ctx, name)?;
    let mb = Mailbox::new(settings);
    replicate(ctx, name, &Effect::Init { settings: mb.settings, last_id: mb.last_id });
    gauge_add(&mb);
    key.set_value(&MAILBOX_TYPE, mb).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
    mailbox_mut(key)?.ok_or(RedisError::Str(errors::WRONGTYPE))
}

/// Makes sure the namespace lists mailbox `name` (for broadcast and presence).
pub fn register(ctx: &Context, name: &[u8]) -> Result<(), RedisError> {
    with_namespace(ctx, name, |ns, ns_key| {
        if !ns.has_mailbox(name) {
            ns_apply(ctx, ns, ns_key, NsEffect::AddMailbox(name.to_vec()));
        }
    })
}

/// Refreshes the last-seen time of `agent` in the namespace of `name`. Only for
/// commands from a client on the master.
pub fn touch(ctx: &Context, name: &[u8], agent: &[u8], now: u64) {
    if replaying(ctx) || !ctx.get_flags().contains(ContextFlags::MASTER) || !presence_due(name, agent, now) {
        return;
    }
    let _ = with_namespace(ctx, name, |ns, ns_key| {
        let stale = ns.last_seen(agent).is_none_or(|last| now >= last.saturating_add(PRESENCE_RESOLUTION_MS));
        if stale {
            ns_apply(ctx, ns, ns_key, NsEffect::Seen { agent: agent.to_vec(), at: now });
        }
    });
}

/// Per namespace tag and agent, when presence was last written: a cache that
/// spares the namespace key a visit on every command. Losing it (a restart) only
/// costs one write. `last` repeats the most recent entry, which a busy agent
/// hits on every command without hashing.
#[derive(Default)]
struct TouchCache {
    by_tag: HashMap<Vec<u8>, HashMap<Vec<u8>, u64>>,
    last: Option<(Vec<u8>, Vec<u8>, u64)>,
}
static LAST_TOUCH: LazyLock<Mutex<TouchCache>> = LazyLock::new(Mutex::default);

/// Forgets every cached presence write: after a flush, a load or a `SWAPDB` the
/// namespace keys it vouches for may be gone.
pub fn forget_presence_writes() {
    match LAST_TOUCH.lock() {
        Ok(mut cache) => *cache = TouchCache::default(),
        Err(poisoned) => *poisoned.into_inner() = TouchCache::default(),
    }
}

fn presence_due(name: &[u8], agent: &[u8], now: u64) -> bool {
    let tag = names::hash_tag(name).unwrap_or_default();
    let mut cache = match LAST_TOUCH.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    let fresh = |last: u64| now >= last && now < last.saturating_add(PRESENCE_RESOLUTION_MS);
    if let Some((last_tag, last_agent, at)) = &cache.last {
        if last_tag == tag && last_agent == agent && fresh(*at) {
            return false;
        }
    }
    if let Some(&at) = cache.by_tag.get(tag).and_then(|agents| agents.get(agent)) {
        if fresh(at) {
            cache.last = Some((tag.to_vec(), agent.to_vec(), at));
            return false;
        }
    }
    match cache.by_tag.get_mut(tag) {
        Some(agents) => {
            agents.insert(agent.to_vec(), now);
        }
        None => {
            cache.by_tag.insert(tag.to_vec(), HashMap::from([(agent.to_vec(), now)]));
        }
    }
    cache.last = Some((tag.to_vec(), agent.to_vec(), now));
    true
}

/// The checks every sending command makes before it changes anything: the
/// agent's send quota (a token bucket per namespace) and the loop breaker (a
/// thread may hold at most `mailbox.max-thread-messages` messages in a namespace).
pub fn admit(
    ctx: &Context,
    name: &[u8],
    agent: &[u8],
    thread: Option<&[u8]>,
    now: u64,
) -> Result<(), RedisError> {
    let max_thread = config::get(&config::MAX_THREAD_MESSAGES);
    let rate = config::get(&config::SEND_RATE);
    if max_thread <= 0 && rate <= 0 && !crate::quota::any_overrides() {
        return Ok(());
    }
    let ns_key = names::namespace_key(name);
    let key = ctx.open_key(&rstring(ctx, ns_key.as_slice()));
    let ns = key.get_value::<Namespace>(&NAMESPACE_TYPE).ok().flatten();
    let (rate, burst) = ns.and_then(|ns| ns.quota(agent)).unwrap_or((
        u64::try_from(config::get(&config::SEND_RATE)).unwrap_or(0),
        u64::try_from(config::get(&config::SEND_BURST)).unwrap_or(1),
    ));
    if let (Some(thread), true) = (thread, max_thread > 0) {
        if ns.map_or(0, |ns| ns.thread_count(thread)) >= max_thread as u64 {
            counters::THREAD_REFUSED.incr();
            return Err(RedisError::String(errors::thread_limit(thread, max_thread)));
        }
    }
    if !crate::quota::take(&ns_key, agent, rate, burst, 1, now) {
        counters::QUOTA_REFUSED.incr();
        return Err(RedisError::String(errors::quota_exceeded(agent, rate, burst)));
    }
    Ok(())
}

/// Counts one message of `thread` for the loop breaker (only while it is on).
pub fn count_thread(ctx: &Context, name: &[u8], thread: Option<&[u8]>) {
    let Some(thread) = thread else { return };
    if config::get(&config::MAX_THREAD_MESSAGES) <= 0 {
        return;
    }
    let now = now_ms();
    let idle_ms = u64::try_from(config::get(&config::THREAD_IDLE_MS)).unwrap_or(u64::MAX);
    let _ = with_namespace(ctx, name, |ns, ns_key| {
        // Threads quiet for mailbox.thread-idle-ms are forgotten (replicated as a count of 0).
        for idle in ns.idle_threads(now, idle_ms) {
            if idle != thread {
                ns_apply(ctx, ns, ns_key, NsEffect::ThreadCount { thread: idle, count: 0 });
            }
        }
        let count = ns.thread_count(thread) + 1;
        ns_apply(ctx, ns, ns_key, NsEffect::ThreadCount { thread: thread.to_vec(), count });
        ns.thread_counted(thread, now);
    });
}

/// After a message landed in mailbox `key_name`: event, wake readers, push, schedule.
pub fn announce(ctx: &Context, key_name: &RedisString, mailbox: &Mailbox, env: &Envelope) {
    counters::SENT.incr();
    notify(ctx, c"mailbox.send", key_name);
    signal_ready(ctx, key_name);
    push::publish(ctx, key_name.as_slice(), &mailbox.hints, env);
    reschedule(ctx, key_name, mailbox);
}

/// A receiver of a delivery to many: its name, its last id and, when the message
/// is stored, its key opened for writing, all found in one visit to the key.
pub struct Receiver {
    pub name: Vec<u8>,
    pub last_id: MessageId,
    key_name: RedisString,
    key: Option<RedisKeyWritable>,
}

impl Receiver {
    /// `None` unless `name` holds a mailbox. The key is first only read; with
    /// `to_store` it is then opened for writing, which counts as changing it
    /// (`WATCH`): an `EPHEMERAL` publish and a forgotten subscriber's key are not.
    pub fn find(ctx: &Context, name: Vec<u8>, to_store: bool) -> Result<Receiver, Vec<u8>> {
        let key_name = rstring(ctx, &name);
        let last_id = {
            let key = ctx.open_key(&key_name);
            match key.get_value::<Mailbox>(&MAILBOX_TYPE) {
                Ok(Some(mb)) => mb.last_id,
                _ => return Err(name),
            }
        };
        let key = to_store.then(|| ctx.open_key_writable(&key_name));
        Ok(Receiver { name, last_id, key_name, key })
    }

    fn mailbox(&self) -> Option<&mut Mailbox> {
        mailbox_mut(self.key.as_ref()?).ok().flatten()
    }
}

/// Outcome of one delivery to many mailboxes.
pub struct Delivered {
    pub receivers: Vec<Vec<u8>>,
    /// Receivers that were full (`MAXLEN`) and skipped.
    pub full: usize,
}

/// Stores `env` in every mailbox of `receivers` (found `to_store`) that can take it
/// (not a dedup hit, not full), sharing the one envelope. The caller replicates the
/// `DELIVER` effect.
pub fn deliver_many(
    ctx: &Context,
    receivers: &[Receiver],
    env: &EnvelopeRef,
    dedup: &Option<Vec<u8>>,
    now: u64,
) -> Delivered {
    let mut delivered = Delivered { receivers: Vec::with_capacity(receivers.len()), full: 0 };
    for receiver in receivers {
        let Some(mailbox) = receiver.mailbox() else { continue };
        apply_due(ctx, &receiver.key_name, mailbox, now);
        if let Some(k) = dedup {
            if mailbox.dedup_hit(k, now).is_some() {
                counters::DEDUP_HITS.incr();
                continue;
            }
        }
        if mailbox.is_full() {
            delivered.full += 1;
            continue;
        }
        let entry_dedup = dedup_for(mailbox, dedup.clone(), env.ts());
        tracked(mailbox, |mb| mb.push(env.clone(), entry_dedup));
        announce(ctx, &receiver.key_name, mailbox, env);
        delivered.receivers.push(receiver.name.clone());
    }
    delivered
}

/// The id for a message going to all of `receivers`: later than each one's last id.
pub fn next_id(receivers: &[Receiver], now: u64) -> Result<MessageId, RedisError> {
    new_id(receivers.iter().map(|r| r.last_id).max().unwrap_or(MessageId::MIN), now)
}

/// `EPHEMERAL`: `env` is pushed on the channel of each of `mailboxes`, never stored
/// nor replicated as data; replies `[id, listeners]`.
pub fn push_ephemeral<'a>(
    ctx: &Context,
    env: &Envelope,
    mailboxes: impl IntoIterator<Item = &'a [u8]>,
    agent: &[u8],
    now: u64,
) -> RedisValue {
    let listeners: usize = mailboxes.into_iter().map(|name| push::push_now(ctx, name, env)).sum();
    counters::EPHEMERAL.incr();
    touch(ctx, env.to(), agent, now);
    RedisValue::Array(vec![
        RedisValue::BulkString(env.id().to_string()),
        RedisValue::Integer(listeners as i64),
    ])
}

/// The payload, and the payload with `META`, within `mailbox.max-payload-bytes`.
pub fn check_payload(payload: &[u8], opts: &SendOptions) -> Result<(), RedisError> {
    let limit = config::get(&config::MAX_PAYLOAD_BYTES);
    let max = limit.max(0) as u64;
    let with_meta = payload.len() + opts.meta.as_ref().map_or(0, Vec::len);
    if payload.len() as u64 > max {
        counters::SIZE_REFUSED.incr();
        return Err(errors::err(errors::payload_too_large(payload.len(), limit)));
    }
    if with_meta as u64 > max {
        counters::SIZE_REFUSED.incr();
        return Err(errors::err(errors::payload_and_meta_too_large(with_meta, limit)));
    }
    Ok(())
}

/// Builds the envelope a send stores; `default_ttl_ms` applies when the send gives none.
pub fn envelope(
    id: MessageId,
    to: &[u8],
    payload: &[u8],
    opts: SendOptions,
    caller: &Caller,
    default_ttl_ms: u64,
    now: u64,
) -> EnvelopeRef {
    let ttl = opts.ttl_ms.or((default_ttl_ms > 0).then_some(default_ttl_ms));
    Envelope::new(Parts {
        id,
        from: &caller.agent,
        to,
        ts: now,
        priority: opts.priority.unwrap_or(0),
        expires_at: ttl.map(|t| now.saturating_add(t)),
        content_type: opts.content_type.as_deref(),
        payload,
        meta: opts.meta.as_deref(),
        thread: opts.thread.as_deref(),
        correlation: opts.correlation.as_deref(),
        reply_to: opts.reply_to.as_deref(),
        via: caller.via.as_deref(),
        confirm: opts.confirm,
    })
}

/// Makes room in a full mailbox by its overflow policy: `Err` for `refuse`; for
/// `drop-oldest` the oldest held message moves to the dead letters (replicated).
fn make_room(
    ctx: &Context,
    key_name: &RedisString,
    mailbox: &mut Mailbox,
    now: u64,
) -> Result<(), RedisError> {
    if !mailbox.is_full() {
        return Ok(());
    }
    match (mailbox.settings.overflow, mailbox.oldest()) {
        (Overflow::DropOldest, Some(oldest)) => {
            let ids = vec![oldest];
            tracked(mailbox, |mb| mb.kill(&ids, DeadReason::Overflow, now));
            counters::OVERFLOW_DROPPED.incr();
            report_dead(ctx, key_name, mailbox, ids, DeadReason::Overflow, None, now);
            Ok(())
        }
        _ => {
            counters::FULL_REFUSED.incr();
            Err(RedisError::Str(errors::MAILBOX_FULL))
        }
    }
}

/// Stores one direct message in mailbox `key_name` (created on first use) and
/// replicates it; returns its id, or the first id on a dedup hit.
pub fn send_one(
    ctx: &Context,
    key_name: &RedisString,
    payload: &[u8],
    opts: SendOptions,
    caller: &Caller,
    now: u64,
) -> Result<MessageId, RedisError> {
    let name = key_name.as_slice();
    let key = ctx.open_key_writable(key_name);
    // Refuses another type (WRONGTYPE) before it creates anything.
    let (mailbox, created) = open_or_create(ctx, &key, name)?;
    if !created {
        apply_due(ctx, key_name, mailbox, now);
    }
    if let Some(dedup) = &opts.dedup {
        if let Some(first) = mailbox.dedup_hit(dedup, now) {
            counters::DEDUP_HITS.incr();
            return Ok(first);
        }
    }
    make_room(ctx, key_name, mailbox, now)?;
    let id = ids::new_id(mailbox.last_id, now)?;
    let dedup = dedup_for(mailbox, opts.dedup.clone(), now);
    let env = envelope(id, name, payload, opts, caller, mailbox.settings.ttl_ms, now);
    let entry = Entry::ready(env.clone());
    replicate_put(ctx, key_name, &entry, dedup.as_ref());
    tracked(mailbox, |mb| mb.push(env.clone(), dedup));
    announce(ctx, key_name, mailbox, &env);
    Ok(id)
}

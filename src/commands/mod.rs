//! Command handlers: parse, call the core, replicate the effects, reply. One file
//! per command; this file holds what they share.

pub mod ack;
pub mod acl;
pub mod create;
pub mod dead;
pub mod effect;
pub mod info;
pub mod nack;
pub mod peek;
pub mod presence;
pub mod publish;
pub mod read;
pub mod reply;
pub mod send;
pub mod stats;
pub mod status;
pub mod sub;
pub mod thread;

use redis_module::key::RedisKeyWritable;
use redis_module::{raw, Context, ContextFlags, NotifyEvent, RedisError, RedisString};

use crate::config;
use crate::core::{Entry, Envelope, Mailbox, SweepOutcome};
use crate::data_type::{tracked, MAILBOX_TYPE};
use crate::effects::Effect;
use crate::errors;
use crate::receipts::Outcome;
use crate::sweeper;

pub type Args<'a> = Vec<&'a [u8]>;

/// The raw bytes of every argument after the command name.
pub fn arg_slices(args: &[RedisString]) -> Args<'_> {
    args.iter().skip(1).map(RedisString::as_slice).collect()
}

/// A name a command takes (mailbox, topic, namespace): non-empty UTF-8, and in a
/// cluster it must carry a hash tag, so everything the command touches lies in
/// one slot (the default namespace cannot live in one slot).
pub fn check_name(ctx: &Context, name: &[u8]) -> Result<(), RedisError> {
    crate::args::check_name(name).map_err(err)?;
    check_not_reserved(name)?;
    check_cluster_tag(ctx, name)
}

/// The module's own keys are no mailbox or topic: the namespace keys
/// (`mailbox:ns`, `mailbox:ns:{tag}`) and the audit streams (`mailbox.audit-stream`,
/// with `:{tag}`). A command that took one as a mailbox would turn it into one.
pub fn check_not_reserved(name: &[u8]) -> Result<(), RedisError> {
    use crate::core::namespace;
    let is_ns_key =
        name.starts_with(namespace::NAMESPACE_KEY_PREFIX) && namespace::namespace_key(name) == name;
    let is_audit = !is_ns_key
        && config::with_audit_stream(|stream| {
            name.starts_with(stream.as_bytes()) && crate::acl::audit_stream_in(stream, name) == name
        });
    if is_ns_key || is_audit {
        return Err(err(errors::reserved_name(name)));
    }
    Ok(())
}

/// Whether the server runs in cluster mode (`cluster-enabled`, fixed at start):
/// read once, not on every command.
pub fn in_cluster(ctx: &Context) -> bool {
    static CLUSTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CLUSTER.get_or_init(|| ctx.get_flags().contains(ContextFlags::CLUSTER))
}

/// In a cluster, `name` must carry a hash tag.
pub fn check_cluster_tag(ctx: &Context, name: &[u8]) -> Result<(), RedisError> {
    if in_cluster(ctx) && crate::core::namespace::hash_tag(name).is_none() {
        return Err(err(errors::needs_hash_tag(name)));
    }
    Ok(())
}

/// A Redis string of any bytes. (The crate's `Context::create_string` goes
/// through a C string and panics on a NUL byte, which a client may well send.)
pub fn rstring(ctx: &Context, bytes: impl AsRef<[u8]>) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes.as_ref())
}

pub fn now_ms() -> u64 {
    let now = unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) };
    u64::try_from(now).unwrap_or(0)
}

pub fn err(text: impl Into<String>) -> RedisError {
    RedisError::String(text.into())
}

/// The mailbox stored at an open key: `Ok(None)` when the key is empty,
/// `WRONGTYPE` when it holds something else.
pub fn mailbox_mut(key: &RedisKeyWritable) -> Result<Option<&mut Mailbox>, RedisError> {
    key.get_value::<Mailbox>(&MAILBOX_TYPE).map_err(|_| RedisError::Str(errors::WRONGTYPE))
}

/// Whether this server decides time-driven changes (lease expiry, TTL): only a
/// master does; a replica waits for the master's effects.
pub fn is_master(ctx: &Context) -> bool {
    ctx.get_flags().contains(ContextFlags::MASTER)
}

/// For the writing subcommands of commands that also read (`MAILBOX.ACL`,
/// `MAILBOX.DEAD`): those are registered without the `write` flag so that their
/// reading forms run on replicas, and refuse to write there themselves.
pub fn require_master(ctx: &Context) -> Result<(), RedisError> {
    let flags = ctx.get_flags();
    if flags.contains(ContextFlags::MASTER)
        || flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
    {
        Ok(())
    } else {
        Err(RedisError::Str(errors::READONLY))
    }
}

/// Replicates one effect on `key` to replicas and the AOF.
pub fn replicate(ctx: &Context, key: &[u8], effect: &Effect) {
    replicate_with(ctx, key, |emit| effect.each_arg(emit));
}

/// Replicates a delivery to many mailboxes, on the namespace key `key`.
pub fn replicate_delivery(ctx: &Context, key: &[u8], delivery: &crate::effects::Delivery) {
    replicate_with(ctx, key, |emit| delivery.each_arg(emit));
}

/// Replicates `MAILBOX.EFFECT <key> <args...>` to replicas and the AOF.
pub fn replicate_args(ctx: &Context, key: &[u8], args: &[Vec<u8>]) {
    replicate_with(ctx, key, |emit| args.iter().for_each(|arg| emit(arg)));
}

/// Replicates `MAILBOX.EFFECT <key>` and the arguments `args` gives: each becomes
/// a Redis string at once (no list of owned copies first), and the command name is
/// a C string constant.
fn replicate_with(ctx: &Context, key: &[u8], args: impl FnOnce(&mut dyn FnMut(&[u8]))) {
    let (Some(replicate), Some(create), Some(free)) =
        (unsafe { (raw::RedisModule_Replicate, raw::RedisModule_CreateString, raw::RedisModule_FreeString) })
    else {
        return;
    };
    // Most effects have a few arguments: those stay on the stack.
    const ON_STACK: usize = 16;
    let mut stack = [std::ptr::null_mut::<raw::RedisModuleString>(); ON_STACK];
    let (mut n, mut more) = (0, Vec::new());
    let mut push = |arg: &[u8]| {
        // No context: the strings are freed below, not by automatic memory.
        let s = unsafe { create(std::ptr::null_mut(), arg.as_ptr().cast(), arg.len()) };
        if n < ON_STACK && more.is_empty() {
            stack[n] = s;
            n += 1;
        } else {
            if more.is_empty() {
                more.extend_from_slice(&stack[..n]);
            }
            more.push(s);
        }
    };
    push(key);
    args(&mut push);
    let strings = if more.is_empty() { &stack[..n] } else { &more[..] };
    unsafe {
        replicate(ctx.ctx, c"MAILBOX.EFFECT".as_ptr(), c"v".as_ptr(), strings.as_ptr(), strings.len());
        for &s in strings {
            free(std::ptr::null_mut(), s);
        }
    }
}

/// Replicates a send (`Effect::Put`) without building the generic argument list:
/// this runs for every message, so the entry is encoded once, straight into the
/// replicated command.
pub fn replicate_put(ctx: &Context, key: &RedisString, entry: &Entry, dedup: Option<&(Vec<u8>, u64)>) {
    let Some(replicate) = (unsafe { raw::RedisModule_Replicate }) else { return };
    // One buffer for every send, kept between calls (Redis copies the bytes).
    thread_local! {
        static BLOB: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BLOB.with_borrow_mut(|blob| {
        blob.clear();
        crate::core::codec::encode_entry(entry, blob);
        replicate_blob(replicate, ctx, key, blob, dedup);
        // A rare huge message does not keep its room.
        if blob.capacity() > 64 * 1024 {
            *blob = Vec::new();
        }
    });
}

type ReplicateFn = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *const std::os::raw::c_char,
    *const std::os::raw::c_char,
    ...
) -> std::os::raw::c_int;

/// `MAILBOX.EFFECT <key> PUT <blob> [<dedup key> <until>]`.
fn replicate_blob(
    replicate: ReplicateFn,
    ctx: &Context,
    key: &RedisString,
    blob: &[u8],
    dedup: Option<&(Vec<u8>, u64)>,
) {
    let (blob_ptr, blob_len) = (blob.as_ptr().cast::<std::os::raw::c_char>(), blob.len());
    let command = c"MAILBOX.EFFECT".as_ptr();
    unsafe {
        match dedup {
            None => {
                replicate(ctx.ctx, command, c"scb".as_ptr(), key.inner, c"PUT".as_ptr(), blob_ptr, blob_len)
            }
            Some((dedup_key, until)) => replicate(
                ctx.ctx,
                command,
                c"scbbl".as_ptr(),
                key.inner,
                c"PUT".as_ptr(),
                blob_ptr,
                blob_len,
                dedup_key.as_ptr().cast::<std::os::raw::c_char>(),
                dedup_key.len(),
                i64::try_from(*until).unwrap_or(i64::MAX) as std::os::raw::c_longlong,
            ),
        };
    }
}

/// Raises a module keyspace event (class `d`) named `mailbox.<what>` on `key`.
pub fn notify(ctx: &Context, event: &std::ffi::CStr, key: &RedisString) {
    // Not `Context::notify_keyspace_event`, which copies the name into a new C string.
    if let Some(notify) = unsafe { raw::RedisModule_NotifyKeyspaceEvent } {
        unsafe { notify(ctx.ctx, NotifyEvent::MODULE.bits(), event.as_ptr(), key.inner) };
    }
}

/// Wakes clients blocked in `MAILBOX.READ ... BLOCK` on `key`.
pub fn signal_ready(ctx: &Context, key: &RedisString) {
    if let Some(signal) = unsafe { raw::RedisModule_SignalKeyAsReady } {
        unsafe { signal(ctx.ctx, key.inner) };
    }
}

/// On the master, applies whatever is due at `now` to one mailbox, counts it,
/// replicates it as explicit effects and wakes readers if messages became ready.
pub fn sweep(ctx: &Context, key: &RedisString, mailbox: &mut Mailbox, now: u64) {
    // Nothing due (the common case): one look at the earliest deadline.
    if mailbox.next_deadline().is_none_or(|at| at > now) || !is_master(ctx) {
        return;
    }
    let expiring = mailbox.expiring(now);
    let before = mailbox.counts();
    let SweepOutcome { expired, requeued, dead, leases_ended } = tracked(mailbox, |mb| mb.sweep(now));
    let after = mailbox.counts();
    let dedup_forgotten = after.dedup_keys != before.dedup_keys;
    crate::stats::LEASE_EXPIRED.add(leases_ended);
    let name = key.as_slice();
    crate::receipts::queue(ctx, key.as_slice(), expiring, Outcome::Expired, None, None, now);
    let dead_envs: Vec<_> =
        dead.iter().filter_map(|id| mailbox.dead_letter(id)).map(|d| d.env.clone()).collect();
    crate::receipts::queue(ctx, key.as_slice(), dead_envs, Outcome::Dead, None, Some("maxdeliveries"), now);
    if !expired.is_empty() {
        crate::stats::EXPIRED.add(expired.len());
        replicate(ctx, name, &Effect::Remove { ids: expired });
        notify(ctx, c"mailbox.expired", key);
    }
    if !requeued.is_empty() {
        replicate(ctx, name, &Effect::Requeue { ids: requeued });
        notify(ctx, c"mailbox.requeued", key);
        signal_ready(ctx, key);
    }
    if !dead.is_empty() {
        crate::stats::DEAD_LETTERED.add(dead.len());
        replicate(
            ctx,
            name,
            &Effect::Kill { at: now, reason: crate::core::DeadReason::MaxDeliveries, ids: dead },
        );
        notify(ctx, c"mailbox.deadlettered", key);
    }
    if dedup_forgotten {
        replicate(ctx, name, &Effect::ForgetDedup { now });
    }
}

/// Tells the sweeper when this mailbox next needs attention.
pub fn reschedule(ctx: &Context, key: &RedisString, mailbox: &Mailbox) {
    let deadline = mailbox.next_deadline();
    // The sweeper has it already (the tick and a rebuild keep this hint true).
    if mailbox.hints.scheduled.get() == Some(deadline) {
        return;
    }
    sweeper::schedule(ctx, key.as_slice(), deadline);
    mailbox.hints.scheduled.set(Some(deadline));
}

// ---- replies -----------------------------------------------------------

fn reply_array(ctx: &Context, len: usize) {
    raw::reply_with_array(ctx.ctx, len as std::os::raw::c_long);
}

pub fn reply_bulk(ctx: &Context, bytes: &[u8]) {
    raw::reply_with_string_buffer(ctx.ctx, bytes.as_ptr().cast(), bytes.len());
}

pub fn reply_int(ctx: &Context, n: i64) {
    raw::reply_with_long_long(ctx.ctx, n);
}

pub fn reply_null_array(ctx: &Context) {
    if let Some(f) = unsafe { raw::RedisModule_ReplyWithNullArray } {
        unsafe { f(ctx.ctx) };
    }
}

/// A message as `[id, [field, value, ...]]`, fields as the README lists them,
/// followed by `extra` fields.
pub fn reply_message(ctx: &Context, env: &Envelope, deliveries: u32, extra: &[(&str, Vec<u8>)]) {
    use crate::core::id::decimal;
    let env = env.parts();
    let optional = [
        ("meta", env.meta),
        ("thread", env.thread),
        ("correlation", env.correlation),
        ("reply_to", env.reply_to),
        ("via", env.via),
    ];
    // from, to, ts, priority, payload, deliveries; then what is present.
    let pairs = 6
        + usize::from(env.content_type.is_some())
        + optional.iter().filter(|(_, v)| v.is_some()).count()
        + usize::from(env.expires_at.is_some())
        + extra.len();
    let pair = |name: &str, value: &[u8]| {
        reply_bulk(ctx, name.as_bytes());
        reply_bulk(ctx, value);
    };
    reply_array(ctx, 2);
    reply_bulk(ctx, env.id.text(&mut [0; 41]));
    reply_array(ctx, pairs * 2);
    pair("from", env.from);
    pair("to", env.to);
    pair("ts", decimal(env.ts, &mut [0; 20]));
    pair("priority", decimal(u64::from(env.priority), &mut [0; 20]));
    if let Some(t) = env.content_type {
        pair("type", t);
    }
    pair("payload", env.payload);
    for (name, value) in optional {
        if let Some(v) = value {
            pair(name, v);
        }
    }
    if let Some(at) = env.expires_at {
        pair("expires", decimal(at, &mut [0; 20]));
    }
    pair("deliveries", decimal(u64::from(deliveries), &mut [0; 20]));
    for (name, value) in extra {
        pair(name, value);
    }
}

pub fn reply_entries(
    ctx: &Context,
    entries: &[&Entry],
    extra: impl Fn(&Entry) -> Vec<(&'static str, Vec<u8>)>,
) {
    reply_array(ctx, entries.len());
    for entry in entries {
        reply_message(ctx, &entry.env, entry.deliveries, &extra(entry));
    }
}

/// Replies a flat array of name/value pairs; values are integers, strings or nil.
pub enum Field {
    Int(i64),
    Str(Vec<u8>),
    Nil,
}

pub fn reply_fields(ctx: &Context, fields: &[(&str, Field)]) {
    reply_array(ctx, fields.len() * 2);
    for (name, value) in fields {
        reply_bulk(ctx, name.as_bytes());
        match value {
            Field::Int(n) => reply_int(ctx, *n),
            Field::Str(s) => reply_bulk(ctx, s),
            Field::Nil => {
                raw::reply_with_null(ctx.ctx);
            }
        }
    }
}

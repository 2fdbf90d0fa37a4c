//! `MAILBOX.PUBLISH topic payload [options]` and
//! `MAILBOX.BROADCAST namespace payload [options]`: one message to many mailboxes
//! of one namespace, stored once and shared by every receiver.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access::{self, Caller};
use crate::args::{self, SendOptions};
use crate::core::grants::Permission;
use crate::core::names;
use crate::core::topics;
use crate::core::Entry;
use crate::delivery::{admit, count_thread, deliver_many, next_id, replicate_ns, touch, Receiver};
use crate::delivery::{check_payload, envelope, push_ephemeral};
use crate::effects::{Delivery, NsEffect};
use crate::errors;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::context::rstring;
use crate::server::keys::{namespace_mut, read_namespace};
use crate::server::replicate::replicate_delivery;

/// How the server knows `MAILBOX.PUBLISH`.
pub const PUBLISH: Meta = Meta {
    name: "mailbox.publish",
    handler: publish,
    flags: "write deny-oom",
    key: 1,
    arity: -3,
    summary: "Publishes a message to a topic",
    key_spec: Some(KeySpecFlags::READ_ONLY),
    subcommands: &[],
};

/// How the server knows `MAILBOX.BROADCAST`.
pub const BROADCAST: Meta = Meta {
    name: "mailbox.broadcast",
    handler: broadcast,
    flags: "write deny-oom",
    key: 1,
    arity: -3,
    summary: "Sends a message to every mailbox of a namespace",
    key_spec: Some(KeySpecFlags::READ_ONLY),
    subcommands: &[],
};

pub fn publish(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let topic = all[0];
    topics::validate_topic(&names::local_part(topic)).map_err(|e| RedisError::Str(errors::topic(&e)))?;
    access::check_not_reserved(topic)?;
    access::check_cluster_tag(ctx, topic)?;
    let opts = args::parse_send(&all[2..]).map_err(err)?;
    let caller = access::caller(ctx, topic, opts.as_agent.as_deref(), "mailbox.publish")?;
    access::authorize(ctx, &caller.agent, Permission::Publish, topic, "mailbox.publish")?;
    access::authorize_options(ctx, topic, &caller, &opts, "mailbox.publish")?;
    let opts = opts.dedup_scoped_to(&caller.agent);
    check_payload(all[1], &opts)?;
    // Admitted before any receiver's key is opened for writing.
    let now = now_ms();
    admit(ctx, topic, &caller.agent, opts.thread.as_deref(), now)?;
    let path = names::local_part(topic);
    let (from, priority, content_type) =
        (&caller.agent, opts.priority.unwrap_or(0), opts.content_type.as_deref());
    let receivers: Vec<Vec<u8>> = read_namespace(ctx, topic, |ns| {
        ns.map(|ns| {
            ns.receivers_admitting(&path, |f| f.admits_parts(from, priority, content_type))
                .into_iter()
                .collect()
        })
        .unwrap_or_default()
    })?;
    let receivers = live_only(ctx, topic, receivers, !opts.ephemeral)?;
    send_to_all(ctx, topic, &receivers, all[1], opts, &caller, now)
}

pub fn broadcast(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let space = all[0];
    access::check_name(ctx, space)?;
    let opts = args::parse_send(&all[2..]).map_err(err)?;
    let caller = access::caller(ctx, space, opts.as_agent.as_deref(), "mailbox.broadcast")?;
    access::authorize(ctx, &caller.agent, Permission::Publish, space, "mailbox.broadcast")?;
    access::authorize_options(ctx, space, &caller, &opts, "mailbox.broadcast")?;
    let opts = opts.dedup_scoped_to(&caller.agent);
    check_payload(all[1], &opts)?;
    let now = now_ms();
    admit(ctx, space, &caller.agent, opts.thread.as_deref(), now)?;
    let receivers = live_mailboxes(ctx, space, !opts.ephemeral)?;
    send_to_all(ctx, space, &receivers, all[1], opts, &caller, now)
}

/// The mailboxes a namespace lists that still exist; forgets (and replicates
/// forgetting) those whose key is gone or holds something else now.
fn live_mailboxes(ctx: &Context, space: &[u8], to_store: bool) -> Result<Vec<Receiver>, RedisError> {
    let listed: Vec<Vec<u8>> = read_namespace(ctx, space, |ns| {
        ns.map(|ns| ns.mailboxes().map(<[u8]>::to_vec).collect()).unwrap_or_default()
    })?;
    live_only(ctx, space, listed, to_store)
}

/// The names that still hold a mailbox, found for the delivery (see
/// `Receiver::find`). Those whose key is gone or holds something else now are
/// forgotten by the namespace (with their subscriptions), replicated, so a deleted
/// mailbox is not brought back by a publish.
fn live_only(
    ctx: &Context,
    space: &[u8],
    names: Vec<Vec<u8>>,
    to_store: bool,
) -> Result<Vec<Receiver>, RedisError> {
    let mut live = Vec::with_capacity(names.len());
    let mut gone = Vec::new();
    for name in names {
        match Receiver::find(ctx, name, to_store) {
            Ok(receiver) => live.push(receiver),
            Err(name) => gone.push(name),
        }
    }
    if !gone.is_empty() {
        let ns_key = rstring(ctx, names::namespace_key(space));
        let key = ctx.open_key_writable(&ns_key);
        if let Some(ns) = namespace_mut(&key)? {
            for name in gone {
                let effect = NsEffect::DropMailbox(name);
                replicate_ns(ctx, ns_key.as_slice(), &effect);
                effect.apply(ns);
            }
        }
    }
    Ok(live)
}

/// Builds one envelope addressed to `to` and delivers it to every receiver (the
/// sender admitted at `now`). Replies `[id, receivers]`.
fn send_to_all(
    ctx: &Context,
    to: &[u8],
    receivers: &[Receiver],
    payload: &[u8],
    opts: SendOptions,
    caller: &Caller,
    now: u64,
) -> RedisResult {
    let id = next_id(receivers, now)?;
    if opts.ephemeral {
        let env = envelope(id, to, payload, opts, caller, 0, now);
        return Ok(push_ephemeral(
            ctx,
            &env,
            receivers.iter().map(|r| r.name.as_slice()),
            &caller.agent,
            now,
        ));
    }
    let dedup = opts.dedup.clone();
    let thread = opts.thread.clone();
    // A topic message is one envelope for every receiver: the mailboxes' own
    // default TTLs do not apply to it.
    let env = envelope(id, to, payload, opts, caller, 0, now);
    let delivered = deliver_many(ctx, receivers, &env, &dedup, now);
    crate::receipts::flush(ctx);
    let count = delivered.receivers.len();
    if count > 0 {
        let effect = Delivery { entry: Entry::ready(env.clone()), dedup, receivers: delivered.receivers };
        replicate_delivery(ctx, &names::namespace_key(to), &effect);
        count_thread(ctx, to, thread.as_deref());
    }
    touch(ctx, to, &caller.agent, now);
    Ok(RedisValue::Array(vec![RedisValue::BulkString(id.to_string()), RedisValue::Integer(count as i64)]))
}

//! `MAILBOX.REPLY mailbox id payload [options]`: answers a message `mailbox` holds
//! (or holds as a dead letter) — to its `reply_to`, else to its sender's mailbox in
//! the same namespace — with `correlation` set to the original id and the same
//! thread (the original id as a new thread when it had none).

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::core::names;
use crate::delivery::{admit, count_thread, touch};
use crate::delivery::{check_payload, send_one};
use crate::errors;
use crate::errors::err;
use crate::server::context::in_cluster;
use crate::server::context::now_ms;
use crate::server::context::rstring;
use crate::server::keys::mailbox_mut;

/// How the server knows `MAILBOX.REPLY`.
pub const META: Meta = Meta {
    name: "mailbox.reply",
    handler: command,
    flags: "write deny-oom",
    key: 1,
    arity: -4,
    summary: "Answers a message a mailbox holds",
    key_spec: Some(KeySpecFlags::READ_ONLY.union(KeySpecFlags::ACCESS)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 4 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    access::check_name(ctx, all[0])?;
    let id = args::parse_id(all[1]).map_err(err)?;
    let opts = args::parse_send(&all[3..]).map_err(err)?;
    if opts.correlation.is_some() {
        return Err(RedisError::Str(errors::REPLY_CORRELATION));
    }
    let caller = access::caller(ctx, all[0], opts.as_agent.as_deref(), "mailbox.reply")?;
    access::authorize(ctx, &caller.agent, Permission::Read, all[0], "mailbox.reply")?;
    check_payload(all[2], &opts)?;

    let (target, thread) = {
        let key = ctx.open_key_writable(&argv[1]);
        let mailbox = mailbox_mut(&key)?.ok_or(RedisError::Str(errors::NO_SUCH_MESSAGE))?;
        let env = match mailbox.get(&id) {
            Some(entry) => entry.env.clone(),
            None => mailbox
                .dead_letters()
                .find(|d| d.env.id() == id)
                .map(|d| d.env.clone())
                .ok_or(RedisError::Str(errors::NO_SUCH_MESSAGE))?,
        };
        let parts = env.parts();
        let target = parts.reply_to.map_or_else(|| names::agent_mailbox(all[0], parts.from), <[u8]>::to_vec);
        (target, parts.thread.map_or_else(|| id.to_string().into_bytes(), <[u8]>::to_vec))
    };
    access::check_name(ctx, &target)?;
    // In a cluster every key of one command lies in one slot: the answer must stay
    // in the namespace of the mailbox it answers from.
    if in_cluster(ctx) && names::hash_tag(&target) != names::hash_tag(all[0]) {
        return Err(RedisError::Str(errors::CROSSSLOT));
    }
    // Acting for an agent in one namespace is no licence in another: the answer
    // lands in the target's namespace, so the gateway needs `impersonate` there too.
    if let Some(via) = &caller.via {
        if names::hash_tag(&target) != names::hash_tag(all[0]) {
            let as_target = names::agent_mailbox(&target, &caller.agent);
            access::authorize(ctx, via, Permission::Impersonate, &as_target, "mailbox.reply")?;
        }
    }
    access::authorize(ctx, &caller.agent, Permission::Send, &target, "mailbox.reply")?;
    access::authorize_options(ctx, &target, &caller, &opts, "mailbox.reply")?;
    let mut opts = opts.dedup_scoped_to(&caller.agent);
    if opts.thread.is_none() {
        opts.thread = Some(thread);
    }
    opts.correlation = Some(id.to_string().into_bytes());
    let now = now_ms();
    // Charged to the namespace the answer lands in: its quota and its thread limit.
    admit(ctx, &target, &caller.agent, opts.thread.as_deref(), now)?;
    let thread = opts.thread.clone();
    let target_key = rstring(ctx, target.as_slice());
    let sent = send_one(ctx, &target_key, all[2], opts, &caller, now);
    crate::receipts::flush(ctx);
    let new_id = sent?;
    count_thread(ctx, &target, thread.as_deref());
    touch(ctx, all[0], &caller.agent, now);
    Ok(RedisValue::BulkString(new_id.to_string()))
}

//! `MAILBOX.THREAD mailbox thread [COUNT n] [AS agent]`: the messages of one conversation that
//! a mailbox holds, oldest first, read or not. Read-only.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::peek::state_field;
use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::keys::read_mailbox;
use crate::server::reply::reply_entries;

/// How the server knows `MAILBOX.THREAD`.
pub const META: Meta = Meta {
    name: "mailbox.thread",
    handler: command,
    flags: "readonly",
    key: 1,
    arity: -3,
    summary: "Lists the messages of a thread",
    key_spec: Some(KeySpecFlags::READ_ONLY.union(KeySpecFlags::ACCESS)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    // The mailbox, the thread, then option-value pairs.
    if argv.len() < 3 || argv.len().is_multiple_of(2) {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    access::check_name(ctx, all[0])?;
    let opts = args::parse_thread(&all[2..]).map_err(err)?;
    let caller = access::caller(ctx, all[0], opts.as_agent.as_deref(), "mailbox.thread")?;
    access::authorize(ctx, &caller.agent, Permission::Read, all[0], "mailbox.thread")?;
    read_mailbox(ctx, &argv[1], |mailbox| {
        let entries = mailbox.map(|mb| mb.thread(all[1], opts.count, now_ms())).unwrap_or_default();
        reply_entries(ctx, &entries, state_field);
    })?;
    Ok(RedisValue::NoReply)
}

//! `MAILBOX.THREAD mailbox thread [COUNT n]`: the messages of one conversation that
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
    if argv.len() != 3 && argv.len() != 5 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    access::check_name(ctx, all[0])?;
    crate::access::authorize(
        ctx,
        ctx.get_current_user().as_slice(),
        Permission::Read,
        all[0],
        "mailbox.thread",
    )?;
    let count = args::parse_thread_count(&all[2..]).map_err(err)?;
    read_mailbox(ctx, &argv[1], |mailbox| {
        let entries = mailbox.map(|mb| mb.thread(all[1], count, now_ms())).unwrap_or_default();
        reply_entries(ctx, &entries, state_field);
    })?;
    Ok(RedisValue::NoReply)
}

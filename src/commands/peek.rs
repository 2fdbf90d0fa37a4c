//! `MAILBOX.PEEK mailbox [start end] [COUNT n] [AS agent]`: read-only, so it never changes
//! state (and runs on replicas); messages past their TTL are skipped, not purged.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::core::Entry;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::keys::read_mailbox;
use crate::server::reply::reply_entries;

/// How the server knows `MAILBOX.PEEK`.
pub const META: Meta = Meta {
    name: "mailbox.peek",
    handler: command,
    flags: "readonly",
    key: 1,
    arity: -2,
    summary: "Lists messages without leasing them",
    key_spec: Some(KeySpecFlags::READ_ONLY.union(KeySpecFlags::ACCESS)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    access::check_name(ctx, all[0])?;
    let range = args::parse_range(&all[1..]).map_err(err)?;
    let caller = access::caller(ctx, all[0], range.as_agent.as_deref(), "mailbox.peek")?;
    access::authorize(ctx, &caller.agent, Permission::Read, all[0], "mailbox.peek")?;
    read_mailbox(ctx, &argv[1], |mailbox| {
        let entries = match mailbox {
            Some(mb) => mb.range(range.start, range.end, range.count, now_ms()),
            None => Vec::new(),
        };
        reply_entries(ctx, &entries, state_field);
    })?;
    Ok(RedisValue::NoReply)
}

/// The `state` field PEEK and THREAD add to each message.
pub fn state_field(entry: &Entry) -> Vec<(&'static str, Vec<u8>)> {
    vec![("state", entry.state().as_str().as_bytes().to_vec())]
}

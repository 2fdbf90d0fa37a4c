//! `MAILBOX.STATUS mailbox id [AS agent]`: where a message stands — `ready`, `leased`,
//! `delayed`, `dead`, or `unknown` (never there, or settled: acked or expired).

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::keys::read_mailbox;

/// How the server knows `MAILBOX.STATUS`.
pub const META: Meta = Meta {
    name: "mailbox.status",
    handler: command,
    flags: "readonly fast",
    key: 1,
    arity: -3,
    summary: "Where a message stands in a mailbox",
    key_spec: Some(KeySpecFlags::READ_ONLY),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let name = all[0];
    access::check_name(ctx, name)?;
    let id = args::parse_id(all[1]).map_err(err)?;
    let as_agent = args::only_as(&all[2..]).map_err(err)?;
    let caller = access::caller(ctx, name, as_agent.as_deref(), "mailbox.status")?;
    access::authorize(ctx, &caller.agent, Permission::Read, name, "mailbox.status")?;
    let status = read_mailbox(ctx, &argv[1], |mailbox| match mailbox {
        Some(mb) => match mb.get(&id) {
            Some(e) if e.env.is_expired(now_ms()) => "unknown",
            Some(e) => e.state().as_str(),
            None if mb.dead_letter(&id).is_some() => "dead",
            None => "unknown",
        },
        None => "unknown",
    })?;
    Ok(RedisValue::SimpleStringStatic(status))
}

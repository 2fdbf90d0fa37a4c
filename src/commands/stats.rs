//! `MAILBOX.STATS`: the server-wide counters of `INFO mailbox`.

#![forbid(unsafe_code)]

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::counters;
use crate::server::reply::reply_fields;
use crate::server::reply::Field;

/// How the server knows `MAILBOX.STATS`.
pub const META: Meta = Meta {
    name: "mailbox.stats",
    handler: command,
    flags: "readonly fast",
    key: 0,
    arity: 1,
    summary: "Server-wide mailbox counters",
    key_spec: None,
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    let fields: Vec<(&str, Field)> =
        counters::figures().into_iter().map(|(n, v)| (n, Field::Int(v))).collect();
    reply_fields(ctx, &fields);
    Ok(RedisValue::NoReply)
}

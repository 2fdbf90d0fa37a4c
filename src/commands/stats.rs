//! `MAILBOX.STATS`: the server-wide counters of `INFO mailbox`.

#![forbid(unsafe_code)]

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::counters;
use crate::server::reply::reply_fields;
use crate::server::reply::Field;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    let fields: Vec<(&str, Field)> =
        counters::figures().into_iter().map(|(n, v)| (n, Field::Int(v))).collect();
    reply_fields(ctx, &fields);
    Ok(RedisValue::NoReply)
}

//! `MAILBOX.STATS`: the server-wide counters of `INFO mailbox`.

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::{reply_fields, Field};
use crate::stats;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() != 1 {
        return Err(RedisError::WrongArity);
    }
    let fields: Vec<(&str, Field)> = stats::figures().into_iter().map(|(n, v)| (n, Field::Int(v))).collect();
    reply_fields(ctx, &fields);
    Ok(RedisValue::NoReply)
}

//! `MAILBOX.PRESENCE namespace`: the agents active in a namespace, when each was
//! last seen and how many messages wait in its own mailbox. Read-only.

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::now_ms;
use crate::core::grants::Permission;
use crate::core::namespace::{self, Namespace};
use crate::core::Mailbox;
use crate::data_type::MAILBOX_TYPE;
use crate::errors;
use crate::namespace_type::NAMESPACE_TYPE;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() != 2 {
        return Err(RedisError::WrongArity);
    }
    let space = argv[1].as_slice();
    super::check_name(ctx, space)?;
    let agent = ctx.get_current_user();
    crate::acl::authorize(ctx, agent.as_slice(), Permission::Send, space, "mailbox.presence")?;
    let key = ctx.open_key(&crate::commands::rstring(ctx, namespace::namespace_key(space)));
    let ns = key.get_value::<Namespace>(&NAMESPACE_TYPE).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
    let Some(ns) = ns else { return Ok(RedisValue::Array(Vec::new())) };
    let now = now_ms();
    let rows = ns
        .presence()
        .map(|(agent, seen)| {
            let own = ctx.open_key(&crate::commands::rstring(ctx, namespace::agent_mailbox(space, agent)));
            let waiting = match own.get_value::<Mailbox>(&MAILBOX_TYPE) {
                Ok(Some(mb)) => mb.counts().ready,
                _ => 0,
            };
            RedisValue::Array(vec![
                RedisValue::StringBuffer(agent.to_vec()),
                RedisValue::SimpleStringStatic("last-seen"),
                RedisValue::Integer(seen as i64),
                RedisValue::SimpleStringStatic("idle"),
                RedisValue::Integer(now.saturating_sub(seen) as i64),
                RedisValue::SimpleStringStatic("waiting"),
                RedisValue::Integer(waiting as i64),
            ])
        })
        .collect();
    Ok(RedisValue::Array(rows))
}

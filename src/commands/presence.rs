//! `MAILBOX.PRESENCE namespace [AS agent]`: the agents active in a namespace, when each was
//! last seen and how many messages wait in its own mailbox. Read-only.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::core::names;
use crate::core::namespace::Namespace;
use crate::core::Mailbox;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::context::rstring;
use crate::server::keys::read_namespace;
use crate::types::ffi::MAILBOX_TYPE;

/// How the server knows `MAILBOX.PRESENCE`.
pub const META: Meta = Meta {
    name: "mailbox.presence",
    handler: command,
    flags: "readonly",
    key: 1,
    arity: -2,
    summary: "Agents of a namespace and their last activity",
    key_spec: Some(KeySpecFlags::READ_ONLY),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let space = all[0];
    access::check_name(ctx, space)?;
    let as_agent = args::only_as(&all[1..]).map_err(err)?;
    let caller = access::caller(ctx, space, as_agent.as_deref(), "mailbox.presence")?;
    access::authorize(ctx, &caller.agent, Permission::Send, space, "mailbox.presence")?;
    let now = now_ms();
    let rows =
        read_namespace(ctx, space, |ns| ns.map(|ns| presence(ctx, ns, space, now)).unwrap_or_default())?;
    Ok(RedisValue::Array(rows))
}

/// `[agent, last-seen, idle, waiting]` for each agent the namespace has seen.
fn presence(ctx: &Context, ns: &Namespace, space: &[u8], now: u64) -> Vec<RedisValue> {
    ns.presence()
        .map(|(agent, seen)| {
            let own = ctx.open_key(&rstring(ctx, names::agent_mailbox(space, agent)));
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
        .collect()
}

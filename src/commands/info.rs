//! `MAILBOX.INFO mailbox [AS agent]`

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::core::Mailbox;
use crate::errors;
use crate::server::context::now_ms;
use crate::server::keys::read_mailbox;
use crate::server::reply::reply_fields;
use crate::server::reply::Field;

/// How the server knows `MAILBOX.INFO`.
pub const META: Meta = Meta {
    name: "mailbox.info",
    handler: command,
    flags: "readonly fast",
    key: 1,
    arity: -2,
    summary: "Settings and counts of a mailbox",
    key_spec: Some(KeySpecFlags::READ_ONLY),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let name = all[0];
    access::check_name(ctx, name)?;
    let as_agent = args::only_as(&all[1..]).map_err(errors::err)?;
    let caller = access::caller(ctx, name, as_agent.as_deref(), "mailbox.info")?;
    access::authorize(ctx, &caller.agent, Permission::Read, name, "mailbox.info")?;
    read_mailbox(ctx, &argv[1], |mailbox| match mailbox {
        Some(mb) => {
            reply_info(ctx, mb);
            Ok(RedisValue::NoReply)
        }
        None => Err(RedisError::Str(errors::NO_SUCH_MAILBOX)),
    })?
}

/// Settings and counts as a flat list of fields.
fn reply_info(ctx: &Context, mb: &Mailbox) {
    let s = mb.settings;
    let c = mb.counts();
    let int = |n: u64| Field::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let oldest = match mb.oldest_ts() {
        Some(ts) => int(now_ms().saturating_sub(ts)),
        None => Field::Nil,
    };
    reply_fields(
        ctx,
        &[
            ("maxlen", int(s.maxlen)),
            ("ttl", int(s.ttl_ms)),
            ("lease", int(s.lease_ms)),
            ("maxdeliver", int(u64::from(s.max_deliveries))),
            ("dedup-window", int(s.dedup_window_ms)),
            ("ready", int(c.ready)),
            ("leased", int(c.leased)),
            ("delayed", int(c.delayed)),
            ("dead", int(c.dead)),
            ("dedup-keys", int(c.dedup_keys)),
            ("last-id", Field::Str(mb.last_id.to_string().into_bytes())),
            ("oldest-age", oldest),
            ("bytes", int(mb.content_bytes())),
        ],
    );
}

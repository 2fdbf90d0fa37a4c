//! `MAILBOX.ACK mailbox id [id ...] [AS agent]`

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::counters;
use crate::delivery::touch;
use crate::effects::Effect;
use crate::errors::err;
use crate::receipt_queue::{self, Outcome};
use crate::receipts;
use crate::server::context::now_ms;
use crate::server::keys::mailbox_mut;
use crate::server::replicate::replicate;
use crate::server::signal::notify;
use crate::types::mailbox::tracked;
use crate::upkeep::apply_due;
use crate::upkeep::reschedule;

/// How the server knows `MAILBOX.ACK`.
pub const META: Meta = Meta {
    name: "mailbox.ack",
    handler: command,
    flags: "write fast",
    key: 1,
    arity: -3,
    summary: "Settles leased messages",
    key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::DELETE)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let name = all[0];
    access::check_name(ctx, name)?;
    let opts = args::parse_settle(&all[1..], &["AS"]).map_err(err)?;
    let caller = access::caller(ctx, name, opts.as_agent.as_deref(), "mailbox.ack")?;
    access::authorize(ctx, &caller.agent, Permission::Read, name, "mailbox.ack")?;
    let key = ctx.open_key_writable(&argv[1]);
    let Some(mailbox) = mailbox_mut(&key)? else {
        return Ok(RedisValue::Integer(0));
    };
    let now = now_ms();
    apply_due(ctx, &argv[1], mailbox, now);
    let confirmed: Vec<_> = opts
        .ids
        .iter()
        .filter_map(|id| mailbox.get(id))
        .filter(|e| e.env.confirm())
        .map(|e| e.env.clone())
        .collect();
    let acked = tracked(mailbox, |mb| mb.ack(&opts.ids));
    let settled = confirmed.into_iter().filter(|env| acked.contains(&env.id()));
    receipt_queue::queue(ctx, name, settled, Outcome::Acked, Some(&caller.agent), None, now);
    let n = acked.len();
    if n > 0 {
        counters::ACKED.add(n);
        replicate(ctx, name, &Effect::Remove { ids: acked });
        notify(ctx, c"mailbox.ack", &argv[1]);
        reschedule(ctx, &argv[1], mailbox);
    }
    touch(ctx, name, &caller.agent, now);
    receipts::flush(ctx);
    Ok(RedisValue::Integer(n as i64))
}

//! `MAILBOX.NACK mailbox id [id ...] [DELAY ms] [AS agent]`

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args;
use crate::core::grants::Permission;
use crate::core::{DeadReason, NackOutcome};
use crate::counters;
use crate::delivery::touch;
use crate::effects::Effect;
use crate::errors::err;
use crate::receipts;
use crate::server::context::now_ms;
use crate::server::keys::mailbox_mut;
use crate::server::replicate::replicate;
use crate::server::signal::notify;
use crate::server::signal::signal_ready;
use crate::types::mailbox::tracked;
use crate::upkeep::apply_due;
use crate::upkeep::report_dead;
use crate::upkeep::reschedule;

/// How the server knows `MAILBOX.NACK`.
pub const META: Meta = Meta {
    name: "mailbox.nack",
    handler: command,
    flags: "write fast",
    key: 1,
    arity: -3,
    summary: "Puts leased messages back",
    key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::UPDATE)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let name = all[0];
    access::check_name(ctx, name)?;
    let opts = args::parse_settle(&all[1..], &["DELAY", "AS"]).map_err(err)?;
    let caller = access::caller(ctx, name, opts.as_agent.as_deref(), "mailbox.nack")?;
    access::authorize(ctx, &caller.agent, Permission::Read, name, "mailbox.nack")?;
    let key = ctx.open_key_writable(&argv[1]);
    let Some(mailbox) = mailbox_mut(&key)? else {
        return Ok(RedisValue::Integer(0));
    };
    let now = now_ms();
    apply_due(ctx, &argv[1], mailbox, now);
    let NackOutcome { requeued, delayed, dead } =
        tracked(mailbox, |mb| mb.nack(&opts.ids, now, opts.delay_ms));
    let total = requeued.len() + delayed.len() + dead.len();
    counters::NACKED.add(total);
    if !requeued.is_empty() {
        replicate(ctx, name, &Effect::Requeue { ids: requeued });
        signal_ready(ctx, &argv[1]);
    }
    if !delayed.is_empty() {
        replicate(ctx, name, &Effect::Delay { until: now.saturating_add(opts.delay_ms), ids: delayed });
    }
    report_dead(ctx, &argv[1], mailbox, dead, DeadReason::MaxDeliveries, Some(&caller.agent), now);
    if total > 0 {
        notify(ctx, c"mailbox.nack", &argv[1]);
        reschedule(ctx, &argv[1], mailbox);
    }
    touch(ctx, name, &caller.agent, now);
    receipts::flush(ctx);
    Ok(RedisValue::Integer(total as i64))
}

//! `MAILBOX.ACK mailbox id [id ...] [AS agent]`

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::{err, mailbox_mut, notify, now_ms, replicate, reschedule, sweep};
use crate::acl;
use crate::args;
use crate::core::grants::Permission;
use crate::data_type::tracked;
use crate::delivery::touch;
use crate::effects::Effect;
use crate::receipts::{self, Outcome};
use crate::stats;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let name = all[0];
    super::check_name(ctx, name)?;
    let opts = args::parse_settle(&all[1..], &["AS"]).map_err(err)?;
    let caller = acl::caller(ctx, name, opts.as_agent.as_deref(), "mailbox.ack")?;
    acl::authorize(ctx, &caller.agent, Permission::Read, name, "mailbox.ack")?;
    let key = ctx.open_key_writable(&argv[1]);
    let Some(mailbox) = mailbox_mut(&key)? else {
        return Ok(RedisValue::Integer(0));
    };
    let now = now_ms();
    sweep(ctx, &argv[1], mailbox, now);
    let confirmed: Vec<_> = opts
        .ids
        .iter()
        .filter_map(|id| mailbox.get(id))
        .filter(|e| e.env.confirm())
        .map(|e| e.env.clone())
        .collect();
    let acked = tracked(mailbox, |mb| mb.ack(&opts.ids));
    let settled = confirmed.into_iter().filter(|env| acked.contains(&env.id()));
    receipts::queue(ctx, name, settled, Outcome::Acked, Some(&caller.agent), None, now);
    let n = acked.len();
    if n > 0 {
        stats::ACKED.add(n);
        replicate(ctx, name, &Effect::Remove { ids: acked });
        notify(ctx, c"mailbox.ack", &argv[1]);
        reschedule(ctx, &argv[1], mailbox);
    }
    touch(ctx, name, &caller.agent, now);
    receipts::flush(ctx);
    Ok(RedisValue::Integer(n as i64))
}

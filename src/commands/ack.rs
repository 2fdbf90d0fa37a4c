//! `MAILBOX.ACK mailbox id [id ...]`

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::{err, mailbox_mut, notify, now_ms, replicate, reschedule, sweep};
use crate::args;
use crate::data_type::tracked;
use crate::effects::Effect;
use crate::stats;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    args::check_name(all[0]).map_err(err)?;
    let ids = args::parse_ids(&all[1..]).map_err(err)?;
    let key = ctx.open_key_writable(&argv[1]);
    let Some(mailbox) = mailbox_mut(&key)? else {
        return Ok(RedisValue::Integer(0));
    };
    sweep(ctx, &argv[1], mailbox, now_ms());
    let acked = tracked(mailbox, |mb| mb.ack(&ids));
    crate::delivery::touch(ctx, all[0], now_ms());
    if !acked.is_empty() {
        stats::ACKED.add(acked.len());
        let n = acked.len();
        replicate(ctx, all[0], &Effect::Remove { ids: acked });
        notify(ctx, "mailbox.ack", &argv[1]);
        reschedule(ctx, &argv[1], mailbox);
        return Ok(RedisValue::Integer(n as i64));
    }
    Ok(RedisValue::Integer(0))
}

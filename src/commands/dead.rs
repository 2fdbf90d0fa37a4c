//! `MAILBOX.DEAD mailbox LIST [start end] [COUNT n] | REQUEUE id... | ALL | PURGE id... | ALL`

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::{err, mailbox_mut, notify, now_ms, replicate, reply_message, reschedule, signal_ready, sweep};
use crate::acl;
use crate::args::{self, DeadAction, Selection};
use crate::core::grants::Permission;
use crate::core::{Mailbox, MessageId};
use crate::data_type::tracked;
use crate::effects::Effect;
use crate::stats;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    super::check_name(ctx, all[0])?;
    let action = args::parse_dead(&all[1..]).map_err(err)?;
    let agent = ctx.get_current_user();
    acl::authorize(ctx, agent.as_slice(), Permission::Admin, all[0], "mailbox.dead")?;
    let key = ctx.open_key_writable(&argv[1]);
    let mailbox = mailbox_mut(&key)?;
    let name = all[0];
    match action {
        DeadAction::List(range) => {
            let dead =
                mailbox.map(|mb| mb.dead_range(range.start, range.end, range.count)).unwrap_or_default();
            redis_module::raw::reply_with_array(ctx.ctx, dead.len() as std::os::raw::c_long);
            for d in dead {
                let extra = [
                    ("reason", d.reason.as_str().as_bytes().to_vec()),
                    ("dead_at", d.at.to_string().into_bytes()),
                ];
                reply_message(ctx, &d.env, d.deliveries, &extra);
            }
            Ok(RedisValue::NoReply)
        }
        DeadAction::Requeue(selection) => {
            super::require_master(ctx)?;
            let Some(mb) = mailbox else { return Ok(RedisValue::Integer(0)) };
            sweep(ctx, &argv[1], mb, now_ms());
            let ids = select(mb, selection);
            let revived = tracked(mb, |mb| mb.revive(&ids));
            let n = revived.len();
            if n > 0 {
                stats::DEAD_REQUEUED.add(n);
                acl::audit(
                    ctx,
                    name,
                    &[
                        ("event", b"dead-requeue"),
                        ("agent", agent.as_slice()),
                        ("name", name),
                        ("count", n.to_string().as_bytes()),
                    ],
                );
                replicate(ctx, name, &Effect::Revive { ids: revived });
                notify(ctx, c"mailbox.dead-requeue", &argv[1]);
                signal_ready(ctx, &argv[1]);
                reschedule(ctx, &argv[1], mb);
            }
            crate::receipts::flush(ctx);
            Ok(RedisValue::Integer(n as i64))
        }
        DeadAction::Purge(selection) => {
            super::require_master(ctx)?;
            let Some(mb) = mailbox else { return Ok(RedisValue::Integer(0)) };
            let ids = select(mb, selection);
            let purged = tracked(mb, |mb| mb.purge_dead(&ids));
            let n = purged.len();
            if n > 0 {
                stats::DEAD_PURGED.add(n);
                acl::audit(
                    ctx,
                    name,
                    &[
                        ("event", b"dead-purge"),
                        ("agent", agent.as_slice()),
                        ("name", name),
                        ("count", n.to_string().as_bytes()),
                    ],
                );
                replicate(ctx, name, &Effect::Bury { ids: purged });
                notify(ctx, c"mailbox.dead-purge", &argv[1]);
            }
            Ok(RedisValue::Integer(n as i64))
        }
    }
}

fn select(mailbox: &Mailbox, selection: Selection) -> Vec<MessageId> {
    match selection {
        Selection::All => mailbox.dead_letters().map(|d| d.env.id()).collect(),
        Selection::Ids(ids) => ids,
    }
}

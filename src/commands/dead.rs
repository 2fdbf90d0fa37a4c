//! `MAILBOX.DEAD LIST mailbox [start end] [COUNT n] [AS agent]`,
//! `MAILBOX.DEAD REQUEUE mailbox id...|ALL [AS agent]`, `MAILBOX.DEAD PURGE mailbox id...|ALL [AS agent]`:
//! subcommands, so that LIST is read-only (it runs on replicas and in `EVAL_RO`) and the
//! others carry the `write` flag.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args::{self, DeadAction, Selection};
use crate::core::grants::Permission;
use crate::core::{Mailbox, MessageId};
use crate::counters;
use crate::effects::Effect;
use crate::errors::err;
use crate::server::context::now_ms;
use crate::server::context::require_master;
use crate::server::keys::mailbox_mut;
use crate::server::keys::read_mailbox;
use crate::server::replicate::replicate;
use crate::server::reply::{reply_array, reply_message};
use crate::server::signal::notify;
use crate::server::signal::signal_ready;
use crate::types::mailbox::tracked;
use crate::upkeep::apply_due;
use crate::upkeep::reschedule;

/// How the server knows `MAILBOX.DEAD`: a container, each subcommand with flags and a key
/// position of its own (the key is the name whose namespace holds the grants, or the mailbox).
pub const META: Meta = Meta {
    name: "mailbox.dead",
    handler: command,
    flags: "",
    key: 0,
    arity: -2,
    summary: "Lists, requeues or purges dead letters",
    key_spec: None,
    subcommands: SUBCOMMANDS,
};

const SUBCOMMANDS: &[Meta] = &[
    Meta {
        name: "list",
        handler: command,
        flags: "readonly",
        key: 2,
        arity: -3,
        summary: "Lists the dead letters of a mailbox",
        key_spec: Some(KeySpecFlags::READ_ONLY.union(KeySpecFlags::ACCESS)),
        subcommands: &[],
    },
    Meta {
        name: "requeue",
        handler: command,
        flags: "write deny-oom",
        key: 2,
        arity: -4,
        summary: "Makes dead letters deliverable again",
        key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::UPDATE)),
        subcommands: &[],
    },
    Meta {
        name: "purge",
        handler: command,
        flags: "write",
        key: 2,
        arity: -4,
        summary: "Deletes dead letters",
        key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::DELETE)),
        subcommands: &[],
    },
];

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    // argv: MAILBOX.DEAD <action> <mailbox> [args]; the parser takes <action> [args].
    let mut all = super::arg_slices(&argv);
    let name = all.remove(1);
    access::check_name(ctx, name)?;
    let opts = args::parse_dead(&all).map_err(err)?;
    let caller = access::caller(ctx, name, opts.as_agent.as_deref(), "mailbox.dead")?;
    access::authorize(ctx, &caller.agent, Permission::Admin, name, "mailbox.dead")?;
    let key_name = &argv[2];
    let count_event = |event: &'static [u8], n: usize| {
        let n = n.to_string();
        let mut fields: Vec<(&str, &[u8])> = vec![("event", event)];
        fields.extend(caller.audit_fields("agent"));
        fields.extend([("name", name), ("count", n.as_bytes())]);
        access::audit(ctx, name, &fields);
    };
    match opts.action {
        DeadAction::List(range) => {
            read_mailbox(ctx, key_name, |mailbox| {
                let dead =
                    mailbox.map(|mb| mb.dead_range(range.start, range.end, range.count)).unwrap_or_default();
                reply_array(ctx, dead.len());
                for d in dead {
                    let extra = [
                        ("reason", d.reason.as_str().as_bytes().to_vec()),
                        ("dead_at", d.at.to_string().into_bytes()),
                    ];
                    reply_message(ctx, &d.env, d.deliveries, &extra);
                }
            })?;
            Ok(RedisValue::NoReply)
        }
        DeadAction::Requeue(selection) => {
            require_master(ctx)?;
            let key = ctx.open_key_writable(key_name);
            let Some(mb) = mailbox_mut(&key)? else { return Ok(RedisValue::Integer(0)) };
            apply_due(ctx, key_name, mb, now_ms());
            let ids = select(mb, selection);
            let revived = tracked(mb, |mb| mb.revive(&ids));
            let n = revived.len();
            if n > 0 {
                counters::DEAD_REQUEUED.add(n);
                count_event(b"dead-requeue", n);
                replicate(ctx, name, &Effect::Revive { ids: revived });
                notify(ctx, c"mailbox.dead-requeue", key_name);
                signal_ready(ctx, key_name);
                reschedule(ctx, key_name, mb);
            }
            crate::receipts::flush(ctx);
            Ok(RedisValue::Integer(n as i64))
        }
        DeadAction::Purge(selection) => {
            require_master(ctx)?;
            let key = ctx.open_key_writable(key_name);
            let Some(mb) = mailbox_mut(&key)? else { return Ok(RedisValue::Integer(0)) };
            let ids = select(mb, selection);
            let purged = tracked(mb, |mb| mb.purge_dead(&ids));
            let n = purged.len();
            if n > 0 {
                counters::DEAD_PURGED.add(n);
                count_event(b"dead-purge", n);
                replicate(ctx, name, &Effect::PurgeDead { ids: purged });
                notify(ctx, c"mailbox.dead-purge", key_name);
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

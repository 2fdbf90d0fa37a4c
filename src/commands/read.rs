//! `MAILBOX.READ mailbox [COUNT n] [BLOCK ms] [LEASE ms] [NOACK]`

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::access;
use crate::args::{self, ReadOptions};
use crate::core::grants::Permission;
use crate::counters;
use crate::effects::Effect;
use crate::errors::err;
use crate::server::block::block_on_key;
use crate::server::context::now_ms;
use crate::server::keys::mailbox_mut;
use crate::server::replicate::replicate;
use crate::server::reply::reply_entries;
use crate::server::reply::reply_null_array;
use crate::server::signal::notify;
use crate::types::mailbox::tracked;
use crate::upkeep::apply_due;
use crate::upkeep::reschedule;

/// How the server knows `MAILBOX.READ`.
pub const META: Meta = Meta {
    name: "mailbox.read",
    handler: command,
    flags: "write",
    key: 1,
    arity: -2,
    summary: "Leases the next messages of a mailbox, optionally blocking",
    key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::ACCESS).union(KeySpecFlags::UPDATE)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    access::check_name(ctx, all[0])?;
    let opts = args::parse_read(&all[1..]).map_err(err)?;
    let caller = access::caller(ctx, all[0], opts.as_agent.as_deref(), "mailbox.read")?;
    access::authorize(ctx, &caller.agent, Permission::Read, all[0], "mailbox.read")?;
    let can_block = opts.block_ms.is_some() && !ctx.get_flags().contains(ContextFlags::DENY_BLOCKING);
    let served = serve(ctx, &argv[1], &opts, can_block);
    crate::receipts::flush(ctx);
    if served? {
        return Ok(RedisValue::NoReply);
    }
    match opts.block_ms {
        Some(timeout) if can_block => block_on_key(ctx, &argv[1], timeout, serve_blocked, serve_timed_out),
        _ => reply_null_array(ctx),
    }
    Ok(RedisValue::NoReply)
}

/// Called when a blocked reader times out: with `MIN`, it gets whatever is ready
/// (fewer than `MIN`); `Ok(false)` when nothing is. Stores the receipts it decided.
fn serve_timed_out(ctx: &Context, argv: &[RedisString]) -> Result<bool, RedisError> {
    let served = timed_out(ctx, argv);
    crate::receipts::flush(ctx);
    served
}

fn timed_out(ctx: &Context, argv: &[RedisString]) -> Result<bool, RedisError> {
    let all = super::arg_slices(argv);
    let opts = args::parse_read(all.get(1..).unwrap_or_default()).map_err(err)?;
    match (argv.get(1), opts.min) {
        (Some(key), Some(_)) => {
            still_allowed(ctx, key.as_slice(), &opts)?;
            serve(ctx, key, &opts, false)
        }
        _ => Ok(false),
    }
}

/// A blocked reader is checked again whenever it would be served: a grant revoked
/// (or an impersonation withdrawn) while it waited ends the wait with `NOPERM`.
fn still_allowed(ctx: &Context, name: &[u8], opts: &ReadOptions) -> Result<(), RedisError> {
    let caller = access::caller_unaudited(ctx, name, opts.as_agent.as_deref(), "mailbox.read")?;
    access::authorize(ctx, &caller.agent, Permission::Read, name, "mailbox.read")
}

/// Called when a blocked reader's key was signalled: the same read again.
/// `Ok(false)` keeps the client blocked. Stores the receipts it decided.
fn serve_blocked(ctx: &Context, argv: &[RedisString]) -> Result<bool, RedisError> {
    let served = signalled(ctx, argv);
    crate::receipts::flush(ctx);
    served
}

fn signalled(ctx: &Context, argv: &[RedisString]) -> Result<bool, RedisError> {
    let all = super::arg_slices(argv);
    let opts = args::parse_read(all.get(1..).unwrap_or_default()).map_err(err)?;
    match argv.get(1) {
        Some(key) => {
            still_allowed(ctx, key.as_slice(), &opts)?;
            serve(ctx, key, &opts, true)
        }
        None => Err(RedisError::WrongArity),
    }
}

/// Leases (or, with `NOACK`, removes) the next ready messages and replies them.
/// Replies nothing and returns `Ok(false)` when none is ready.
fn serve(
    ctx: &Context,
    key_name: &RedisString,
    opts: &ReadOptions,
    wait_for_min: bool,
) -> Result<bool, RedisError> {
    let key = ctx.open_key_writable(key_name);
    let Some(mailbox) = mailbox_mut(&key)? else {
        return Ok(false);
    };
    let now = now_ms();
    apply_due(ctx, key_name, mailbox, now);
    if wait_for_min && opts.min.is_some_and(|min| (mailbox.counts().ready as usize) < min) {
        reschedule(ctx, key_name, mailbox);
        return Ok(false);
    }
    let ids = mailbox.next_ready(opts.count, now);
    if ids.is_empty() {
        reschedule(ctx, key_name, mailbox);
        return Ok(false);
    }
    let name = key_name.as_slice();
    if opts.noack {
        let taken = tracked(mailbox, |mb| mb.take(&ids));
        let reader = opts.as_agent.clone().unwrap_or_else(|| ctx.get_current_user().as_slice().to_vec());
        let envs: Vec<_> = taken.iter().map(|e| e.env.clone()).collect();
        crate::receipt_queue::queue(
            ctx,
            name,
            envs,
            crate::receipt_queue::Outcome::Acked,
            Some(&reader),
            None,
            now,
        );
        replicate(ctx, name, &Effect::Remove { ids: taken.iter().map(|e| e.env.id()).collect() });
        count_deliveries(taken.iter().map(|e| e.deliveries));
        let refs: Vec<_> = taken.iter().collect();
        reply_entries(ctx, &refs, |_| Vec::new());
    } else {
        let lease_ms = opts.lease_ms.unwrap_or(mailbox.settings.lease_ms);
        let until = now.saturating_add(lease_ms);
        let leased = mailbox.lease_owned(ids, until);
        let entries: Vec<_> = leased.iter().filter_map(|id| mailbox.get(id)).collect();
        replicate(ctx, name, &Effect::Lease { until, ids: leased });
        count_deliveries(entries.iter().map(|e| e.deliveries));
        reply_entries(ctx, &entries, |_| Vec::new());
    }
    notify(ctx, c"mailbox.read", key_name);
    reschedule(ctx, key_name, mailbox);
    match &opts.as_agent {
        Some(agent) => crate::delivery::touch(ctx, name, agent, now),
        None => crate::delivery::touch(ctx, name, ctx.get_current_user().as_slice(), now),
    }
    Ok(true)
}

fn count_deliveries(deliveries: impl Iterator<Item = u32>) {
    for n in deliveries {
        counters::DELIVERED.incr();
        if n > 1 {
            counters::REDELIVERED.incr();
        }
    }
}

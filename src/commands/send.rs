//! `MAILBOX.SEND mailbox payload [options]`

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::{err, now_ms, replicate, sweep};
use crate::acl::{self, Caller};
use crate::args::{self, SendOptions};
use crate::config;
use crate::core::grants::Permission;
use crate::core::{DeadReason, Entry, Envelope, EnvelopeRef, Mailbox, MessageId, Overflow, Parts};
use crate::data_type::tracked;
use crate::delivery::{admit, announce, count_thread, open_or_create, touch};
use crate::effects::{dedup_for, Effect};
use crate::errors;
use crate::receipts::Outcome;
use crate::stats;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let (name, payload) = (all[0], all[1]);
    super::check_name(ctx, name)?;
    let opts = args::parse_send(&all[2..]).map_err(err)?;
    let caller = acl::caller(ctx, name, opts.as_agent.as_deref(), "mailbox.send")?;
    acl::authorize(ctx, &caller.agent, Permission::Send, name, "mailbox.send")?;
    acl::authorize_options(ctx, name, &caller, &opts, "mailbox.send")?;
    let opts = opts.dedup_scoped_to(&caller.agent);
    check_payload(payload, &opts)?;
    let now = now_ms();
    admit(ctx, name, &caller.agent, opts.thread.as_deref(), now)?;
    if opts.ephemeral {
        return send_ephemeral(ctx, &argv[1], payload, opts, &caller, now);
    }
    let thread = opts.thread.clone();
    let sent = send_one(ctx, &argv[1], payload, opts, &caller, now);
    crate::receipts::flush(ctx);
    let id = sent?;
    count_thread(ctx, name, thread.as_deref());
    touch(ctx, name, &caller.agent, now);
    crate::receipts::flush(ctx);
    super::reply_bulk(ctx, id.text(&mut [0; 41]));
    Ok(RedisValue::NoReply)
}

/// `EPHEMERAL`: pushed on the mailbox's channel, never stored nor replicated as
/// data; replies `[id, listeners]`. The id is what the next stored message could
/// have had, so it still sorts in time.
fn send_ephemeral(
    ctx: &Context,
    key_name: &RedisString,
    payload: &[u8],
    opts: SendOptions,
    caller: &Caller,
    now: u64,
) -> RedisResult {
    let last = {
        let key = ctx.open_key(key_name);
        match key.get_value::<Mailbox>(&crate::data_type::MAILBOX_TYPE) {
            Ok(Some(mb)) => mb.last_id,
            _ => MessageId::MIN,
        }
    };
    let id = crate::delivery::new_id(last, now)?;
    let env = envelope(id, key_name.as_slice(), payload, opts, caller, 0, now);
    let listeners = crate::push::push_now(ctx, key_name.as_slice(), &env);
    stats::EPHEMERAL.incr();
    touch(ctx, key_name.as_slice(), &caller.agent, now);
    Ok(RedisValue::Array(vec![RedisValue::BulkString(id.to_string()), RedisValue::Integer(listeners as i64)]))
}

/// The payload, and the payload with `META`, within `mailbox.max-payload-bytes`.
pub fn check_payload(payload: &[u8], opts: &SendOptions) -> Result<(), RedisError> {
    let limit = config::get(&config::MAX_PAYLOAD_BYTES);
    let max = limit.max(0) as u64;
    let with_meta = payload.len() + opts.meta.as_ref().map_or(0, Vec::len);
    if payload.len() as u64 > max {
        stats::SIZE_REFUSED.incr();
        return Err(err(errors::payload_too_large(payload.len(), limit)));
    }
    if with_meta as u64 > max {
        stats::SIZE_REFUSED.incr();
        return Err(err(errors::payload_and_meta_too_large(with_meta, limit)));
    }
    Ok(())
}

/// Builds the envelope a send stores; `default_ttl_ms` applies when the send gives none.
pub fn envelope(
    id: MessageId,
    to: &[u8],
    payload: &[u8],
    opts: SendOptions,
    caller: &Caller,
    default_ttl_ms: u64,
    now: u64,
) -> EnvelopeRef {
    let ttl = opts.ttl_ms.or((default_ttl_ms > 0).then_some(default_ttl_ms));
    Envelope::new(Parts {
        id,
        from: &caller.agent,
        to,
        ts: now,
        priority: opts.priority.unwrap_or(0),
        expires_at: ttl.map(|t| now.saturating_add(t)),
        content_type: opts.content_type.as_deref(),
        payload,
        meta: opts.meta.as_deref(),
        thread: opts.thread.as_deref(),
        correlation: opts.correlation.as_deref(),
        reply_to: opts.reply_to.as_deref(),
        via: caller.via.as_deref(),
        confirm: opts.confirm,
    })
}

/// Makes room in a full mailbox by its overflow policy: `Err` for `refuse`; for
/// `drop-oldest` the oldest held message moves to the dead letters (replicated).
fn make_room(
    ctx: &Context,
    key_name: &RedisString,
    mailbox: &mut Mailbox,
    now: u64,
) -> Result<(), RedisError> {
    if !mailbox.is_full() {
        return Ok(());
    }
    match (mailbox.settings.overflow, mailbox.oldest()) {
        (Overflow::DropOldest, Some(oldest)) => {
            let ids = vec![oldest];
            let dropped = mailbox.get(&oldest).map(|e| e.env.clone());
            crate::receipts::queue(
                ctx,
                key_name.as_slice(),
                dropped,
                Outcome::Dead,
                None,
                Some("overflow"),
                now,
            );
            tracked(mailbox, |mb| mb.kill(&ids, DeadReason::Overflow, now));
            replicate(ctx, key_name.as_slice(), &Effect::Kill { at: now, reason: DeadReason::Overflow, ids });
            stats::OVERFLOW_DROPPED.incr();
            stats::DEAD_LETTERED.incr();
            super::notify(ctx, c"mailbox.deadlettered", key_name);
            Ok(())
        }
        _ => {
            stats::FULL_REFUSED.incr();
            Err(RedisError::Str(errors::MAILBOX_FULL))
        }
    }
}

/// Stores one direct message in mailbox `key_name` (created on first use) and
/// replicates it; returns its id, or the first id on a dedup hit.
pub fn send_one(
    ctx: &Context,
    key_name: &RedisString,
    payload: &[u8],
    opts: SendOptions,
    caller: &Caller,
    now: u64,
) -> Result<MessageId, RedisError> {
    let name = key_name.as_slice();
    let key = ctx.open_key_writable(key_name);
    // Refuses another type (WRONGTYPE) before it creates anything.
    let (mailbox, created) = open_or_create(ctx, &key, name)?;
    if !created {
        sweep(ctx, key_name, mailbox, now);
    }
    if let Some(dedup) = &opts.dedup {
        if let Some(first) = mailbox.dedup_hit(dedup, now) {
            stats::DEDUP_HITS.incr();
            return Ok(first);
        }
    }
    make_room(ctx, key_name, mailbox, now)?;
    let id = crate::delivery::new_id(mailbox.last_id, now)?;
    let dedup = dedup_for(mailbox, opts.dedup.clone(), now);
    let env = envelope(id, name, payload, opts, caller, mailbox.settings.ttl_ms, now);
    let entry = Entry::ready(env.clone());
    super::replicate_put(ctx, key_name, &entry, dedup.as_ref());
    tracked(mailbox, |mb| mb.push(env.clone(), dedup));
    announce(ctx, key_name, mailbox, &env);
    Ok(id)
}

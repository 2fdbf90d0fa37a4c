//! `MAILBOX.SEND mailbox payload [options]`

use std::sync::Arc;

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::{err, now_ms, replicate, sweep};
use crate::args::{self, SendOptions};
use crate::config;
use crate::core::{Entry, Envelope, Mailbox, MessageId, State};
use crate::data_type::tracked;
use crate::delivery::{announce, open_or_create, touch};
use crate::effects::{dedup_for, Effect};
use crate::errors;
use crate::stats;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let all = super::arg_slices(&argv);
    let (name, payload) = (all[0], all[1]);
    args::check_name(name).map_err(err)?;
    let opts = args::parse_send(&all[2..]).map_err(err)?;
    check_payload(payload)?;
    let sender = ctx.get_current_user();
    let now = now_ms();
    let id = send_one(ctx, &argv[1], payload, opts, sender.as_slice(), now)?;
    touch(ctx, name, now);
    Ok(RedisValue::BulkString(id.to_string()))
}

pub fn check_payload(payload: &[u8]) -> Result<(), RedisError> {
    let limit = config::get(&config::MAX_PAYLOAD_BYTES);
    if payload.len() as u64 > limit.max(0) as u64 {
        return Err(err(errors::payload_too_large(payload.len(), limit)));
    }
    Ok(())
}

/// Builds the envelope a send stores, with the mailbox's default TTL if none given.
pub fn envelope(
    mailbox: &Mailbox,
    id: MessageId,
    to: &[u8],
    payload: &[u8],
    opts: SendOptions,
    from: &[u8],
    now: u64,
) -> Envelope {
    let ttl = opts.ttl_ms.or((mailbox.settings.ttl_ms > 0).then_some(mailbox.settings.ttl_ms));
    Envelope {
        id,
        from: from.to_vec(),
        to: to.to_vec(),
        ts: now,
        priority: opts.priority.unwrap_or(0),
        expires_at: ttl.map(|t| now.saturating_add(t)),
        content_type: opts.content_type,
        payload: payload.to_vec(),
        meta: opts.meta,
        thread: opts.thread,
        correlation: opts.correlation,
        reply_to: opts.reply_to,
        via: None,
    }
}

/// Stores one direct message in mailbox `key_name` (created on first use) and
/// replicates it; returns its id, or the first id on a dedup hit.
pub fn send_one(
    ctx: &Context,
    key_name: &RedisString,
    payload: &[u8],
    opts: SendOptions,
    from: &[u8],
    now: u64,
) -> Result<MessageId, RedisError> {
    let name = key_name.as_slice();
    let key = ctx.open_key_writable(key_name);
    // Check the type before creating anything, so a failing send changes nothing.
    super::mailbox_mut(&key)?;
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
    if mailbox.is_full() {
        return Err(RedisError::Str(errors::MAILBOX_FULL));
    }
    let id = MessageId::next_after(mailbox.last_id, now);
    let dedup = dedup_for(mailbox, opts.dedup.clone(), now);
    let env = Arc::new(envelope(mailbox, id, name, payload, opts, from, now));
    let effect = Effect::Put {
        entry: Entry { env: Arc::clone(&env), deliveries: 0, state: State::Ready },
        dedup: dedup.clone(),
    };
    tracked(mailbox, |mb| mb.push(Arc::clone(&env), dedup));
    replicate(ctx, name, &effect);
    announce(ctx, key_name, mailbox, &env);
    Ok(id)
}

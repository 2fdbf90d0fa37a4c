//! `MAILBOX.SEND mailbox payload [options]`

use std::sync::Arc;

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::{err, mailbox_mut, notify, now_ms, replicate, reschedule, signal_ready, sweep};
use crate::args;
use crate::config;
use crate::core::{Entry, Envelope, Mailbox, MessageId, State};
use crate::data_type::{gauge_add, tracked, MAILBOX_TYPE};
use crate::effects::Effect;
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
    let limit = config::get(&config::MAX_PAYLOAD_BYTES);
    if payload.len() as u64 > limit.max(0) as u64 {
        return Err(err(errors::payload_too_large(payload.len(), limit)));
    }
    let sender = ctx.get_current_user();

    let key_name = &argv[1];
    let key = ctx.open_key_writable(key_name);
    let now = now_ms();
    let mut created = false;
    let mailbox: &mut Mailbox = match mailbox_mut(&key)? {
        Some(mb) => mb,
        None => {
            let mb = Mailbox::new(config::default_settings());
            replicate(ctx, name, &Effect::Init { settings: mb.settings, last_id: mb.last_id });
            gauge_add(&mb);
            key.set_value(&MAILBOX_TYPE, mb).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
            created = true;
            mailbox_mut(&key)?.ok_or(RedisError::Str(errors::WRONGTYPE))?
        }
    };
    if !created {
        sweep(ctx, key_name, mailbox, now);
    }

    if let Some(dedup) = &opts.dedup {
        if let Some(first) = mailbox.dedup_hit(dedup, now) {
            stats::DEDUP_HITS.incr();
            return Ok(RedisValue::BulkString(first.to_string()));
        }
    }
    if mailbox.is_full() {
        return Err(RedisError::Str(errors::MAILBOX_FULL));
    }

    let id = MessageId::next_after(mailbox.last_id, now);
    let ttl = opts.ttl_ms.or((mailbox.settings.ttl_ms > 0).then_some(mailbox.settings.ttl_ms));
    let env = Envelope {
        id,
        from: sender.as_slice().to_vec(),
        to: name.to_vec(),
        ts: now,
        priority: opts.priority.unwrap_or(0),
        expires_at: ttl.map(|t| now.saturating_add(t)),
        content_type: opts.content_type,
        payload: payload.to_vec(),
        meta: opts.meta,
        thread: opts.thread,
        correlation: opts.correlation,
        reply_to: opts.reply_to,
    };
    let window = mailbox.settings.dedup_window_ms;
    let dedup = opts.dedup.filter(|_| window > 0).map(|k| (k, now.saturating_add(window)));
    let env = Arc::new(env);
    let effect = Effect::Put {
        entry: Entry { env: Arc::clone(&env), deliveries: 0, state: State::Ready },
        dedup: dedup.clone(),
    };
    tracked(mailbox, |mb| mb.push(env, dedup));
    replicate(ctx, name, &effect);
    stats::SENT.incr();
    notify(ctx, "mailbox.send", key_name);
    signal_ready(ctx, key_name);
    reschedule(ctx, key_name, mailbox);
    Ok(RedisValue::BulkString(id.to_string()))
}

//! `MAILBOX.EFFECT key op ...`: applies an effect the master replicated or the AOF
//! recorded. Refused on ordinary connections, so nobody can forge a sender or an id.

use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

use super::{mailbox_mut, signal_ready};
use crate::core::Mailbox;
use crate::data_type::{gauge_add, tracked, MAILBOX_TYPE};
use crate::effects::Effect;
use crate::errors;

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    let flags = ctx.get_flags();
    if !flags.intersects(ContextFlags::REPLICATED | ContextFlags::LOADING) {
        return Err(RedisError::Str(errors::EFFECT_FORBIDDEN));
    }
    let all = super::arg_slices(&argv);
    let effect = Effect::parse(&all[1..]).map_err(|_| RedisError::Str(errors::CORRUPT_EFFECT))?;
    let key = ctx.open_key_writable(&argv[1]);
    match mailbox_mut(&key)? {
        Some(mailbox) => {
            let wakes = matches!(effect, Effect::Put { .. } | Effect::Requeue { .. } | Effect::Revive { .. });
            tracked(mailbox, |mb| effect.apply(mb));
            if wakes {
                signal_ready(ctx, &argv[1]);
            }
        }
        None if effect.creates() => {
            let Effect::Init { settings, .. } = &effect else {
                return Err(RedisError::Str(errors::CORRUPT_EFFECT));
            };
            let mut mailbox = Mailbox::new(*settings);
            effect.apply(&mut mailbox);
            gauge_add(&mailbox);
            key.set_value(&MAILBOX_TYPE, mailbox).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
        }
        // An effect on a mailbox that is gone (deleted since) changes nothing.
        None => {}
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

//! `MAILBOX.EFFECT key op ...`: applies an effect the master replicated or the AOF
//! recorded. Refused on ordinary connections, so nobody can forge a sender or an id.

#![forbid(unsafe_code)]

use redis_module::commands::KeySpecFlags;
use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use super::Meta;
use crate::core::namespace::Namespace;
use crate::core::Mailbox;
use crate::effects::{dedup_for, parse_any, AnyEffect, Delivery, Effect, NsEffect};
use crate::errors;
use crate::server::context::replaying;
use crate::server::context::rstring;
use crate::server::keys::mailbox_mut;
use crate::server::keys::namespace_mut;
use crate::server::signal::signal_ready;
use crate::types::ffi::MAILBOX_TYPE;
use crate::types::ffi::NAMESPACE_TYPE;
use crate::types::mailbox::{gauge_add, tracked};

/// How the server knows `MAILBOX.EFFECT`.
pub const META: Meta = Meta {
    name: "mailbox.effect",
    handler: command,
    flags: "write",
    key: 1,
    arity: -3,
    summary: "Internal: applies a replicated effect",
    key_spec: Some(KeySpecFlags::READ_WRITE.union(KeySpecFlags::UPDATE)),
    subcommands: &[],
};

pub fn command(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 3 {
        return Err(RedisError::WrongArity);
    }
    if !replaying(ctx) {
        return Err(RedisError::Str(errors::EFFECT_FORBIDDEN));
    }
    let all = super::arg_slices(&argv);
    let effect = parse_any(&all[1..]).map_err(|_| RedisError::Str(errors::CORRUPT_EFFECT))?;
    match &effect {
        AnyEffect::Mailbox(Effect::Put { entry, .. } | Effect::Restore(entry)) => {
            crate::ids::observe(entry.env.id())
        }
        AnyEffect::Mailbox(Effect::Init { last_id, .. }) => crate::ids::observe(*last_id),
        AnyEffect::Deliver(d) => crate::ids::observe(d.entry.env.id()),
        _ => {}
    }
    match effect {
        AnyEffect::Mailbox(effect) => apply_mailbox(ctx, &argv[1], effect)?,
        AnyEffect::Namespace(effect) => apply_namespace(ctx, &argv[1], effect)?,
        AnyEffect::Deliver(delivery) => apply_delivery(ctx, delivery),
    }
    Ok(RedisValue::SimpleStringStatic("OK"))
}

fn apply_mailbox(ctx: &Context, key_name: &RedisString, effect: Effect) -> Result<(), RedisError> {
    let key = ctx.open_key_writable(key_name);
    match mailbox_mut(&key)? {
        Some(mailbox) => {
            let wakes = matches!(effect, Effect::Put { .. } | Effect::Requeue { .. } | Effect::Revive { .. });
            tracked(mailbox, |mb| effect.apply(mb));
            if wakes {
                signal_ready(ctx, key_name);
            }
        }
        None => {
            if let Effect::Init { settings, .. } = &effect {
                let mut mailbox = Mailbox::new(*settings);
                effect.apply(&mut mailbox);
                gauge_add(&mailbox);
                key.set_value(&MAILBOX_TYPE, mailbox).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
            }
            // Any other effect on a mailbox that is gone changes nothing.
        }
    }
    Ok(())
}

fn apply_namespace(ctx: &Context, key_name: &RedisString, effect: NsEffect) -> Result<(), RedisError> {
    if matches!(effect, NsEffect::Quota { quota: Some(_), .. }) {
        crate::quota::overrides_exist();
    }
    let key = ctx.open_key_writable(key_name);
    match namespace_mut(&key)? {
        Some(ns) => effect.apply(ns),
        None => {
            let mut ns = Namespace::new();
            effect.apply(&mut ns);
            key.set_value(&NAMESPACE_TYPE, ns).map_err(|_| RedisError::Str(errors::WRONGTYPE))?;
        }
    }
    Ok(())
}

/// The same envelope into every receiver, shared.
fn apply_delivery(ctx: &Context, delivery: Delivery) {
    let env = delivery.entry.env.clone();
    for name in &delivery.receivers {
        let key_name = rstring(ctx, name.as_slice());
        let key = ctx.open_key_writable(&key_name);
        if let Ok(Some(mailbox)) = mailbox_mut(&key) {
            let dedup = dedup_for(mailbox, delivery.dedup.clone(), env.ts());
            tracked(mailbox, |mb| mb.push(env.clone(), dedup));
            signal_ready(ctx, &key_name);
        }
    }
}

//! Replies written piece by piece, through the raw reply calls (no `RedisValue`
//! tree built first): messages, entry lists, field lists.

use redis_module::{raw, Context};

use crate::core::{Entry, Envelope};

/// Starts an array reply of `len` elements.
pub fn reply_array(ctx: &Context, len: usize) {
    raw::reply_with_array(ctx.ctx, len as std::os::raw::c_long);
}

pub fn reply_bulk(ctx: &Context, bytes: &[u8]) {
    raw::reply_with_string_buffer(ctx.ctx, bytes.as_ptr().cast(), bytes.len());
}

pub fn reply_int(ctx: &Context, n: i64) {
    raw::reply_with_long_long(ctx.ctx, n);
}

pub fn reply_null_array(ctx: &Context) {
    // SAFETY: reading a function pointer the module API filled in at load.
    if let Some(f) = unsafe { raw::RedisModule_ReplyWithNullArray } {
        // SAFETY: `ctx.ctx` is the live context of the command replying.
        unsafe { f(ctx.ctx) };
    }
}

/// A message as `[id, [field, value, ...]]`, fields as the README lists them,
/// followed by `extra` fields.
pub fn reply_message(ctx: &Context, env: &Envelope, deliveries: u32, extra: &[(&str, Vec<u8>)]) {
    use crate::core::id::decimal;
    let env = env.parts();
    let optional = [
        ("meta", env.meta),
        ("thread", env.thread),
        ("correlation", env.correlation),
        ("reply_to", env.reply_to),
        ("via", env.via),
    ];
    // from, to, ts, priority, payload, deliveries; then what is present.
    let pairs = 6
        + usize::from(env.content_type.is_some())
        + optional.iter().filter(|(_, v)| v.is_some()).count()
        + usize::from(env.expires_at.is_some())
        + extra.len();
    let pair = |name: &str, value: &[u8]| {
        reply_bulk(ctx, name.as_bytes());
        reply_bulk(ctx, value);
    };
    reply_array(ctx, 2);
    reply_bulk(ctx, env.id.text(&mut [0; 41]));
    reply_array(ctx, pairs * 2);
    pair("from", env.from);
    pair("to", env.to);
    pair("ts", decimal(env.ts, &mut [0; 20]));
    pair("priority", decimal(u64::from(env.priority), &mut [0; 20]));
    if let Some(t) = env.content_type {
        pair("type", t);
    }
    pair("payload", env.payload);
    for (name, value) in optional {
        if let Some(v) = value {
            pair(name, v);
        }
    }
    if let Some(at) = env.expires_at {
        pair("expires", decimal(at, &mut [0; 20]));
    }
    pair("deliveries", decimal(u64::from(deliveries), &mut [0; 20]));
    for (name, value) in extra {
        pair(name, value);
    }
}

pub fn reply_entries(
    ctx: &Context,
    entries: &[&Entry],
    extra: impl Fn(&Entry) -> Vec<(&'static str, Vec<u8>)>,
) {
    reply_array(ctx, entries.len());
    for entry in entries {
        reply_message(ctx, &entry.env, entry.deliveries, &extra(entry));
    }
}

/// Replies a flat array of name/value pairs; values are integers, strings or nil.
pub enum Field {
    Int(i64),
    Str(Vec<u8>),
    Nil,
}

pub fn reply_fields(ctx: &Context, fields: &[(&str, Field)]) {
    reply_array(ctx, fields.len() * 2);
    for (name, value) in fields {
        reply_bulk(ctx, name.as_bytes());
        match value {
            Field::Int(n) => reply_int(ctx, *n),
            Field::Str(s) => reply_bulk(ctx, s),
            Field::Nil => {
                raw::reply_with_null(ctx.ctx);
            }
        }
    }
}

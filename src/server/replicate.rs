//! Replication of effects: every change a command makes travels to replicas and
//! the AOF as `MAILBOX.EFFECT <key> <effect...>`, with every generated value explicit.

use redis_module::{raw, Context, RedisString};

use crate::core::Entry;
use crate::effects::{Delivery, Effect, EFFECT_COMMAND};

/// Replicates one effect on `key` to replicas and the AOF.
pub fn replicate(ctx: &Context, key: &[u8], effect: &Effect) {
    replicate_with(ctx, key, |emit| effect.each_arg(emit));
}

/// Replicates a delivery to many mailboxes, on the namespace key `key`.
pub fn replicate_delivery(ctx: &Context, key: &[u8], delivery: &Delivery) {
    replicate_with(ctx, key, |emit| delivery.each_arg(emit));
}

/// Replicates `MAILBOX.EFFECT <key> <args...>` to replicas and the AOF.
pub fn replicate_args(ctx: &Context, key: &[u8], args: &[Vec<u8>]) {
    replicate_with(ctx, key, |emit| args.iter().for_each(|arg| emit(arg)));
}

/// Replicates `MAILBOX.EFFECT <key>` and the arguments `args` gives: each becomes
/// a Redis string at once (no list of owned copies first).
fn replicate_with(ctx: &Context, key: &[u8], args: impl FnOnce(&mut dyn FnMut(&[u8]))) {
    // SAFETY: reading function pointers the module API filled in at load.
    let (Some(replicate), Some(create), Some(free)) =
        (unsafe { (raw::RedisModule_Replicate, raw::RedisModule_CreateString, raw::RedisModule_FreeString) })
    else {
        return;
    };
    // Most effects have a few arguments: those stay on the stack.
    const ON_STACK: usize = 16;
    let mut stack = [std::ptr::null_mut::<raw::RedisModuleString>(); ON_STACK];
    let (mut n, mut more) = (0, Vec::new());
    let mut push = |arg: &[u8]| {
        // No context: the strings are freed below, not by automatic memory.
        // SAFETY: `arg` is `arg.len()` readable bytes, copied by Redis.
        let s = unsafe { create(std::ptr::null_mut(), arg.as_ptr().cast(), arg.len()) };
        if n < ON_STACK && more.is_empty() {
            stack[n] = s;
            n += 1;
        } else {
            if more.is_empty() {
                more.extend_from_slice(&stack[..n]);
            }
            more.push(s);
        }
    };
    push(key);
    args(&mut push);
    let strings = if more.is_empty() { &stack[..n] } else { &more[..] };
    // SAFETY: `ctx.ctx` is the live context; format "v" takes the vector of the
    // `strings.len()` strings made above, which are freed once Redis copied them.
    unsafe {
        replicate(ctx.ctx, EFFECT_COMMAND.as_ptr(), c"v".as_ptr(), strings.as_ptr(), strings.len());
        for &s in strings {
            free(std::ptr::null_mut(), s);
        }
    }
}

/// Replicates a send (`Effect::Put`) without building the generic argument list:
/// this runs for every message, so the entry is encoded once, straight into the
/// replicated command.
pub fn replicate_put(ctx: &Context, key: &RedisString, entry: &Entry, dedup: Option<&(Vec<u8>, u64)>) {
    // SAFETY: reading a function pointer the module API filled in at load.
    let Some(replicate) = (unsafe { raw::RedisModule_Replicate }) else { return };
    // One buffer for every send, kept between calls (Redis copies the bytes).
    thread_local! {
        static BLOB: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BLOB.with_borrow_mut(|blob| {
        blob.clear();
        crate::core::codec::encode_entry(entry, blob);
        replicate_blob(replicate, ctx, key, blob, dedup);
        // A rare huge message does not keep its room.
        if blob.capacity() > 64 * 1024 {
            *blob = Vec::new();
        }
    });
}

type ReplicateFn = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *const std::os::raw::c_char,
    *const std::os::raw::c_char,
    ...
) -> std::os::raw::c_int;

/// `MAILBOX.EFFECT <key> PUT <blob> [<dedup key> <until>]`.
fn replicate_blob(
    replicate: ReplicateFn,
    ctx: &Context,
    key: &RedisString,
    blob: &[u8],
    dedup: Option<&(Vec<u8>, u64)>,
) {
    let (blob_ptr, blob_len) = (blob.as_ptr().cast::<std::os::raw::c_char>(), blob.len());
    let command = EFFECT_COMMAND.as_ptr();
    // SAFETY: `ctx.ctx` is the live context; each format letter is matched by its
    // arguments (s: a Redis string, c: a C string, b: a pointer and a length, l: a
    // long long), all alive for the call.
    unsafe {
        match dedup {
            None => {
                replicate(ctx.ctx, command, c"scb".as_ptr(), key.inner, c"PUT".as_ptr(), blob_ptr, blob_len)
            }
            Some((dedup_key, until)) => replicate(
                ctx.ctx,
                command,
                c"scbbl".as_ptr(),
                key.inner,
                c"PUT".as_ptr(),
                blob_ptr,
                blob_len,
                dedup_key.as_ptr().cast::<std::os::raw::c_char>(),
                dedup_key.len(),
                i64::try_from(*until).unwrap_or(i64::MAX) as std::os::raw::c_longlong,
            ),
        };
    }
}

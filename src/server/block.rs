//! Block-on-keys for `MAILBOX.READ ... BLOCK`, through Redis's own machinery (the
//! crate has no safe wrapper for it): the reader waits on the mailbox key; a write
//! that makes a message ready signals the key; the reply callback then runs the
//! read again and keeps the client blocked if someone else got there first.
//!
//! The command hands over the two reads to run (`Serve`); they travel with the
//! blocked client as its private data, so this file calls no command by name.

use std::os::raw::{c_int, c_void};

use redis_module::{decode_args, raw, Context, RedisError, RedisString};

use crate::counters;
use crate::server::reply::reply_null_array;

/// A read run for a blocked client: `Ok(true)` when it replied, `Ok(false)` when
/// there was nothing to serve (nothing replied), an error to reply.
pub type Serve = fn(&Context, &[RedisString]) -> Result<bool, RedisError>;

/// What a blocked client carries: what to run when its key is signalled, and when
/// its timeout passes. Freeing it uncounts the client, whichever way it leaves
/// (served, timed out, killed, unblocked).
struct Waiting {
    on_ready: Serve,
    on_timeout: Serve,
}

/// Blocks the client on `key` for `timeout_ms` (0: forever); `on_ready` runs each
/// time the key is signalled, `on_timeout` once if it never served. Replies a null
/// array at once where the server cannot block on keys.
pub fn block_on_key(ctx: &Context, key: &RedisString, timeout_ms: u64, on_ready: Serve, on_timeout: Serve) {
    // SAFETY: reading a function pointer the module API filled in at load.
    let Some(block) = (unsafe { raw::RedisModule_BlockClientOnKeys }) else {
        reply_null_array(ctx);
        return;
    };
    let waiting = Box::into_raw(Box::new(Waiting { on_ready, on_timeout })).cast::<c_void>();
    let mut keys = [key.inner];
    let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
    counters::BLOCKED_READERS.incr();
    // SAFETY: `ctx.ctx` is the live context of the command; `keys` outlives the call
    // (Redis copies the key names); `waiting` is a leaked box that `on_free` takes back.
    unsafe {
        block(
            ctx.ctx,
            Some(on_key_ready),
            Some(on_timeout_passed),
            Some(on_free),
            timeout,
            keys.as_mut_ptr(),
            1,
            waiting,
        );
    }
}

/// The reads the blocked client of `ctx` carries.
fn waiting(ctx: *mut raw::RedisModuleCtx) -> Option<&'static Waiting> {
    // SAFETY: reading a function pointer the module API filled in at load.
    let get = unsafe { raw::RedisModule_GetBlockedClientPrivateData }?;
    // SAFETY: called from the reply or timeout callback of a client blocked by
    // `block_on_key`, whose private data is a `Waiting` alive until `on_free`, which
    // Redis calls only after these callbacks returned.
    unsafe { get(ctx).cast::<Waiting>().as_ref() }
}

/// Runs `serve` for a blocked client. Replies an error itself; `Some(served)`
/// otherwise (nothing replied when not served).
fn run(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    serve: impl FnOnce(&Waiting) -> Serve,
) -> (Context, Option<bool>) {
    let context = Context::new(ctx);
    let Some(waiting) = waiting(ctx) else { return (context, Some(false)) };
    let args = decode_args(ctx, argv, argc);
    match serve(waiting)(&context, &args) {
        Ok(served) => (context, Some(served)),
        Err(e) => {
            context.reply(Err(e));
            (context, None)
        }
    }
}

extern "C" fn on_key_ready(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // Err keeps the client blocked: someone else took the messages first.
    match run(ctx, argv, argc, |w| w.on_ready) {
        (_, Some(false)) => raw::Status::Err as c_int,
        _ => raw::Status::Ok as c_int,
    }
}

extern "C" fn on_timeout_passed(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    if let (context, Some(false)) = run(ctx, argv, argc, |w| w.on_timeout) {
        reply_null_array(&context);
    }
    raw::Status::Ok as c_int
}

extern "C" fn on_free(_ctx: *mut raw::RedisModuleCtx, waiting: *mut c_void) {
    if !waiting.is_null() {
        // SAFETY: `waiting` is the box `block_on_key` leaked; Redis frees it once.
        drop(unsafe { Box::from_raw(waiting.cast::<Waiting>()) });
        counters::BLOCKED_READERS.sub(1);
    }
}

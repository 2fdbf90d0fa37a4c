//! Block-on-keys for `MAILBOX.READ ... BLOCK`, through Redis's own machinery (the
//! crate has no safe wrapper for it): the reader waits on the mailbox key; a write
//! that makes a message ready signals the key; the reply callback then runs the
//! read again and keeps the client blocked if someone else got there first.

use std::os::raw::{c_int, c_void};

use redis_module::{decode_args, raw, Context, RedisString};

use crate::commands::{self, read};
use crate::stats;

pub fn block_on_key(ctx: &Context, key: &RedisString, timeout_ms: u64) {
    let Some(block) = (unsafe { raw::RedisModule_BlockClientOnKeys }) else {
        commands::reply_null_array(ctx);
        return;
    };
    // The private data only marks the client as counted; freeing it uncounts it,
    // whichever way the client leaves (served, timed out, killed, unblocked).
    let token = Box::into_raw(Box::new(0u8)).cast::<c_void>();
    let mut keys = [key.inner];
    let timeout = i64::try_from(timeout_ms).unwrap_or(i64::MAX);
    stats::BLOCKED_READERS.incr();
    unsafe {
        block(
            ctx.ctx,
            Some(on_key_ready),
            Some(on_timeout),
            Some(on_free),
            timeout,
            keys.as_mut_ptr(),
            1,
            token,
        );
    }
}

/// Runs a read for a blocked client and flushes the receipts it decided. Replies
/// an error itself; `Ok(served)` otherwise (nothing replied when not served).
fn run_read(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    read: fn(&Context, &[RedisString]) -> Result<bool, redis_module::RedisError>,
) -> (Context, Option<bool>) {
    let context = Context::new(ctx);
    let args = decode_args(ctx, argv, argc);
    let served = read(&context, &args);
    crate::receipts::flush(&context);
    match served {
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
    match run_read(ctx, argv, argc, read::serve_blocked) {
        (_, Some(false)) => raw::Status::Err as c_int,
        _ => raw::Status::Ok as c_int,
    }
}

extern "C" fn on_timeout(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    if let (context, Some(false)) = run_read(ctx, argv, argc, read::serve_timed_out) {
        commands::reply_null_array(&context);
    }
    raw::Status::Ok as c_int
}

extern "C" fn on_free(_ctx: *mut raw::RedisModuleCtx, token: *mut c_void) {
    if !token.is_null() {
        drop(unsafe { Box::from_raw(token.cast::<u8>()) });
        stats::BLOCKED_READERS.sub(1);
    }
}

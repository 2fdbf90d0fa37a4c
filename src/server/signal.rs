//! Telling others that something happened: keyspace events, blocked readers,
//! pub/sub subscribers.

use redis_module::{raw, Context, NotifyEvent, RedisString};

/// Raises a module keyspace event (class `d`) named `mailbox.<what>` on `key`.
pub fn notify(ctx: &Context, event: &std::ffi::CStr, key: &RedisString) {
    // Not `Context::notify_keyspace_event`, which copies the name into a new C string.
    // SAFETY: reading a function pointer the module API filled in at load.
    if let Some(notify) = unsafe { raw::RedisModule_NotifyKeyspaceEvent } {
        // SAFETY: `ctx.ctx` is the live context; `event` and `key` outlive the call.
        unsafe { notify(ctx.ctx, NotifyEvent::MODULE.bits(), event.as_ptr(), key.inner) };
    }
}

/// Wakes clients blocked in `MAILBOX.READ ... BLOCK` on `key`.
pub fn signal_ready(ctx: &Context, key: &RedisString) {
    // SAFETY: reading a function pointer the module API filled in at load.
    if let Some(signal) = unsafe { raw::RedisModule_SignalKeyAsReady } {
        // SAFETY: `ctx.ctx` is the live context; `key` outlives the call.
        unsafe { signal(ctx.ctx, key.inner) };
    }
}
/// Publishes `message` on `channel`; returns how many listeners Redis reports.
pub fn publish(ctx: &Context, channel: &RedisString, message: &RedisString) -> usize {
    // Sharded pub/sub keeps a cluster from copying every push to every node.
    // SAFETY: reading function pointers the module API filled in at load.
    let publish = unsafe { raw::RedisModule_PublishMessageShard.or(raw::RedisModule_PublishMessage) };
    match publish {
        // SAFETY: `ctx.ctx` is the live context; both strings outlive the call.
        Some(publish) => {
            usize::try_from(unsafe { publish(ctx.ctx, channel.inner, message.inner) }).unwrap_or(0)
        }
        None => 0,
    }
}

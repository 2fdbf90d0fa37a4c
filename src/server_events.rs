//! `INFO mailbox` and the server events that keep the sweeper's schedule honest.

use std::os::raw::{c_int, c_void};
use std::sync::atomic::Ordering;

use redis_module::{raw, Context};

use crate::counters;

pub fn register(ctx: &Context) {
    // Replaces the crate's default handler, which would print nothing of ours.
    raw::register_info_function(ctx.ctx, Some(info_func));
}

extern "C" fn info_func(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    raw::add_info_section(ctx, None);
    for (name, value) in counters::figures() {
        raw::add_info_field_long_long(ctx, name, value);
    }
    let risk = i64::from(counters::EVICTION_RISK.load(Ordering::Relaxed));
    raw::add_info_field_long_long(ctx, "eviction_policy_warning", risk);
}

pub fn subscribe_server_events(ctx: &Context) {
    // SAFETY: reading a function pointer the module API filled in at load.
    let Some(subscribe) = (unsafe { raw::RedisModule_SubscribeToServerEvent }) else { return };
    for id in [
        raw::REDISMODULE_EVENT_LOADING,
        raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
        raw::REDISMODULE_EVENT_FLUSHDB,
        raw::REDISMODULE_EVENT_SWAPDB,
    ] {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: `ctx.ctx` is the context of `OnLoad`; the callback is a plain function.
        unsafe { subscribe(ctx.ctx, event, Some(on_server_event)) };
    }
}

extern "C" fn on_server_event(
    _ctx: *mut raw::RedisModuleCtx,
    event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    if event.id == raw::REDISMODULE_EVENT_LOADING {
        match subevent {
            raw::REDISMODULE_SUBEVENT_LOADING_RDB_START
            | raw::REDISMODULE_SUBEVENT_LOADING_AOF_START
            | raw::REDISMODULE_SUBEVENT_LOADING_REPL_START => crate::types::mailbox::loading_started(),
            _ => crate::types::mailbox::loading_ended(),
        }
    }
    // Loading, a role change, a flush or a SWAPDB all move keys behind our back.
    crate::schedule::invalidate();
    crate::delivery::forget_presence_writes();
}

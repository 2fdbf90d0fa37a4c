//! redis-mailbox: durable mailboxes for LLM agents, as a Redis module.
//! This file only registers; see `commands/` for what each command does.

pub mod acl;
mod acl_categories;
mod alloc;
pub mod args;
mod blocking;
mod command_info;
pub mod commands;
pub mod config;
pub mod core;
pub mod data_type;
pub mod delivery;
pub mod effects;
pub mod errors;
mod info;
pub mod namespace_type;
pub mod push;
pub mod quota;
pub mod receipts;
pub mod stats;
pub mod sweeper;
mod type_callbacks;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{redis_module, Context, ModuleOptions, RedisString, Status};

use crate::config::*;
use crate::data_type::MAILBOX_TYPE;
use crate::namespace_type::NAMESPACE_TYPE;

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    // Corrupt RDB or RESTORE input must fail the load, not abort the server.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    log_panics();
    info::register(ctx);
    command_info::register(ctx);
    acl_categories::register(ctx);
    info::subscribe_server_events(ctx);
    sweeper::check_eviction_policy(ctx, u64::MAX);
    sweeper::start(ctx);
    watch_subscribes(ctx)
}

/// A command filter tells `push` when a client may have begun to listen.
fn watch_subscribes(ctx: &Context) -> Status {
    let Some(register) = (unsafe { redis_module::raw::RedisModule_RegisterCommandFilter }) else {
        return Status::Err;
    };
    let filter = unsafe { register(ctx.ctx, Some(push::watch_subscribes), 0) };
    if filter.is_null() {
        Status::Err
    } else {
        Status::Ok
    }
}

/// A panic inside Redis ends the server; make sure its reason reaches the Redis log.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        redis_module::logging::log_warning(format!("mailbox: panic: {info}"));
    }));
}

redis_module! {
    name: "mailbox",
    version: 1,
    allocator: (crate::alloc::MailboxAlloc, crate::alloc::MailboxAlloc),
    data_types: [MAILBOX_TYPE, NAMESPACE_TYPE],
    init: init,
    commands: [
        ["mailbox.send", commands::send::command, "write deny-oom", 1, 1, 1, ""],
        ["mailbox.read", commands::read::command, "write", 1, 1, 1, ""],
        ["mailbox.ack", commands::ack::command, "write fast", 1, 1, 1, ""],
        ["mailbox.nack", commands::nack::command, "write fast", 1, 1, 1, ""],
        ["mailbox.peek", commands::peek::command, "readonly", 1, 1, 1, ""],
        ["mailbox.create", commands::create::command, "write deny-oom", 1, 1, 1, ""],
        ["mailbox.info", commands::info::command, "readonly fast", 1, 1, 1, ""],
        ["mailbox.dead", commands::dead::command, "", 1, 1, 1, ""],
        ["mailbox.stats", commands::stats::command, "readonly fast", 0, 0, 0, ""],
        ["mailbox.publish", commands::publish::publish, "write deny-oom", 1, 1, 1, ""],
        ["mailbox.broadcast", commands::publish::broadcast, "write deny-oom", 1, 1, 1, ""],
        ["mailbox.reply", commands::reply::command, "write deny-oom", 1, 1, 1, ""],
        ["mailbox.status", commands::status::command, "readonly fast", 1, 1, 1, ""],
        ["mailbox.thread", commands::thread::command, "readonly", 1, 1, 1, ""],
        ["mailbox.presence", commands::presence::command, "readonly", 1, 1, 1, ""],
        ["mailbox.sub", commands::sub::sub, "write deny-oom", 1, 1, 1, ""],
        ["mailbox.unsub", commands::sub::unsub, "write", 1, 1, 1, ""],
        ["mailbox.subs", commands::sub::subs, "readonly", 1, 1, 1, ""],
        ["mailbox.acl", commands::acl::command, "", 0, 0, 0, ""],
        ["mailbox.effect", commands::effect::command, "write", 1, 1, 1, ""],
    ],
    event_handlers: [
        [@GENERIC: sweeper::on_keyspace_event],
    ],
    configurations: [
        i64: [
            ["max-payload-bytes", &MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES, 1, 512 * 1024 * 1024, ConfigurationFlags::DEFAULT, None],
            ["default-lease-ms", &DEFAULT_LEASE_MS, DEFAULT_DEFAULT_LEASE_MS, 1, MAX_DURATION_MS, ConfigurationFlags::DEFAULT, None],
            ["default-max-deliveries", &DEFAULT_MAX_DELIVERIES, DEFAULT_DEFAULT_MAX_DELIVERIES, 0, u32::MAX as i64, ConfigurationFlags::DEFAULT, None],
            ["default-maxlen", &DEFAULT_MAXLEN, DEFAULT_DEFAULT_MAXLEN, 0, i64::MAX, ConfigurationFlags::DEFAULT, None],
            ["default-ttl-ms", &DEFAULT_TTL_MS, DEFAULT_DEFAULT_TTL_MS, 0, MAX_DURATION_MS, ConfigurationFlags::DEFAULT, None],
            ["dedup-window-ms", &DEDUP_WINDOW_MS, DEFAULT_DEDUP_WINDOW_MS, 0, MAX_DURATION_MS, ConfigurationFlags::DEFAULT, None],
            ["audit-maxlen", &AUDIT_MAXLEN, DEFAULT_AUDIT_MAXLEN, 0, i64::MAX, ConfigurationFlags::DEFAULT, None],
            ["send-rate", &SEND_RATE, DEFAULT_SEND_RATE, 0, 1_000_000_000, ConfigurationFlags::DEFAULT, None],
            ["send-burst", &SEND_BURST, DEFAULT_SEND_BURST, 1, 1_000_000_000, ConfigurationFlags::DEFAULT, None],
            ["max-thread-messages", &MAX_THREAD_MESSAGES, DEFAULT_MAX_THREAD_MESSAGES, 0, i64::MAX, ConfigurationFlags::DEFAULT, None],
            ["sweep-interval-ms", &SWEEP_INTERVAL_MS, DEFAULT_SWEEP_INTERVAL_MS, 1, 60_000, ConfigurationFlags::DEFAULT, None],
        ],
        string: [
            ["push-prefix", &PUSH_PREFIX, DEFAULT_PUSH_PREFIX, ConfigurationFlags::DEFAULT, Some(Box::new(|_, _, _| push::listeners_may_have_changed()))],
            ["superusers", &SUPERUSERS, DEFAULT_SUPERUSERS, ConfigurationFlags::DEFAULT, None],
            ["audit-stream", &AUDIT_STREAM, DEFAULT_AUDIT_STREAM, ConfigurationFlags::DEFAULT, None],
        ],
        bool: [
            ["push", &PUSH, true, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [
            ["policy", &POLICY, PolicyConfig::open, ConfigurationFlags::DEFAULT, None],
        ],
        module_args_as_configuration: true,
    ]
}

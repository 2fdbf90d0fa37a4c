//! redis-mailbox: durable mailboxes for LLM agents, as a Redis module.
//! This file only registers; see `commands/` for what each command does.

pub mod access;
pub mod args;
mod command_info;
pub mod commands;
pub mod config;
pub mod core;
pub mod counters;
pub mod delivery;
pub mod effects;
pub mod errors;
pub mod ids;
pub mod push;
pub mod quota;
pub mod receipt_queue;
pub mod receipts;
pub mod schedule;
pub mod server;
mod server_events;
pub mod sweeper;
pub mod types;
pub mod upkeep;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{redis_module, Context, ModuleOptions, RedisString, Status};

use crate::config::*;
use crate::types::ffi::{MAILBOX_TYPE, NAMESPACE_TYPE};

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    // Corrupt RDB or RESTORE input must fail the load, not abort the server.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    log_panics();
    if register_subcommands(ctx) == Status::Err {
        return Status::Err;
    }
    server_events::register(ctx);
    command_info::register(ctx);
    server_events::subscribe_server_events(ctx);
    sweeper::check_eviction_policy(ctx, u64::MAX);
    sweeper::start(ctx);
    watch_subscribes(ctx)
}

type Subcommand = (&'static std::ffi::CStr, &'static std::ffi::CStr, std::os::raw::c_int);

/// `MAILBOX.ACL` and `MAILBOX.DEAD` are containers: each subcommand has flags of its
/// own, so the writing ones carry `write` (held by `CLIENT PAUSE WRITE`, refused in
/// `EVAL_RO` and on replicas) and the reading ones stay runnable everywhere.
/// Name, flags and the position of its one key (the mailbox, or the name whose
/// namespace holds the grants).
const SUBCOMMANDS: [(&str, &[Subcommand]); 2] = [
    (
        "mailbox.acl",
        &[
            (c"grant", c"write deny-oom", 4),
            (c"revoke", c"write", 4),
            (c"quota", c"write deny-oom", 4),
            (c"check", c"readonly fast", 4),
            (c"list", c"readonly", 2),
        ],
    ),
    (
        "mailbox.dead",
        &[(c"list", c"readonly", 2), (c"requeue", c"write deny-oom", 2), (c"purge", c"write", 2)],
    ),
];

fn register_subcommands(ctx: &Context) -> Status {
    use redis_module::raw;
    // SAFETY: reading function pointers the module API filled in at load.
    let (Some(create), Some(get), Some(create_sub)) = (unsafe {
        (raw::RedisModule_CreateCommand, raw::RedisModule_GetCommand, raw::RedisModule_CreateSubcommand)
    }) else {
        ctx.log_warning("mailbox: this server has no module subcommands (Redis 7.0 or later is needed)");
        return Status::Err;
    };
    for (container, subs) in SUBCOMMANDS {
        let Ok(name) = std::ffi::CString::new(container) else { return Status::Err };
        let handler: raw::RedisModuleCmdFunc =
            if container == "mailbox.acl" { Some(acl_command) } else { Some(dead_command) };
        // SAFETY: the module API is initialised (OnLoad), the strings outlive the calls,
        // and a container command is created with no handler, as the API requires.
        let parent = unsafe {
            if create(ctx.ctx, name.as_ptr(), None, c"".as_ptr(), 0, 0, 0) != raw::Status::Ok as i32 {
                return Status::Err;
            }
            get(ctx.ctx, name.as_ptr())
        };
        if parent.is_null() {
            return Status::Err;
        }
        for (sub, flags, key) in subs.iter() {
            // SAFETY: `parent` is the container just created; the strings are constants.
            let status = unsafe { create_sub(parent, sub.as_ptr(), handler, flags.as_ptr(), *key, *key, 1) };
            if status != raw::Status::Ok as i32 {
                ctx.log_warning(&format!("mailbox: could not create {container}|{}", sub.to_string_lossy()));
                return Status::Err;
            }
        }
    }
    Status::Ok
}

extern "C" fn acl_command(
    ctx: *mut redis_module::raw::RedisModuleCtx,
    argv: *mut *mut redis_module::raw::RedisModuleString,
    argc: std::os::raw::c_int,
) -> std::os::raw::c_int {
    run_command(ctx, argv, argc, commands::acl::command)
}

extern "C" fn dead_command(
    ctx: *mut redis_module::raw::RedisModuleCtx,
    argv: *mut *mut redis_module::raw::RedisModuleString,
    argc: std::os::raw::c_int,
) -> std::os::raw::c_int {
    run_command(ctx, argv, argc, commands::dead::command)
}

/// What the `redis_module!` macro does for each of its commands.
fn run_command(
    ctx: *mut redis_module::raw::RedisModuleCtx,
    argv: *mut *mut redis_module::raw::RedisModuleString,
    argc: std::os::raw::c_int,
    command: fn(&Context, Vec<RedisString>) -> redis_module::RedisResult,
) -> std::os::raw::c_int {
    let context = Context::new(ctx);
    let args = redis_module::decode_args(ctx, argv, argc);
    context.reply(command(&context, args)) as std::os::raw::c_int
}

/// A command filter tells `push` when a client may have begun to listen.
fn watch_subscribes(ctx: &Context) -> Status {
    // SAFETY: reading a function pointer the module API filled in at load.
    let Some(register) = (unsafe { redis_module::raw::RedisModule_RegisterCommandFilter }) else {
        return Status::Err;
    };
    // SAFETY: `ctx.ctx` is the context of `OnLoad`; the filter is a plain function.
    let filter = unsafe { register(ctx.ctx, Some(on_any_command), 0) };
    if filter.is_null() {
        Status::Err
    } else {
        Status::Ok
    }
}

/// The command filter: runs before every command any client sends; a `SUBSCRIBE`,
/// `PSUBSCRIBE` or `SSUBSCRIBE` tells `push` that someone may have begun to listen.
///
/// # Safety
/// Called by Redis only, with the filter context of the command about to run.
unsafe extern "C" fn on_any_command(fctx: *mut redis_module::raw::RedisModuleCommandFilterCtx) {
    use redis_module::raw;
    let (Some(arg_get), Some(ptr_len)) =
        (raw::RedisModule_CommandFilterArgGet, raw::RedisModule_StringPtrLen)
    else {
        return;
    };
    let name = arg_get(fctx, 0);
    if name.is_null() {
        return;
    }
    let mut len = 0;
    let ptr = ptr_len(name, &mut len);
    if ptr.is_null() || !(9..=10).contains(&len) {
        return;
    }
    // SAFETY: Redis gave `len` bytes at `ptr`, alive while the filter runs.
    let name = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    if [&b"subscribe"[..], b"psubscribe", b"ssubscribe"].iter().any(|s| name.eq_ignore_ascii_case(s)) {
        push::listeners_may_have_changed();
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
    allocator: (crate::server::alloc::MailboxAlloc, crate::server::alloc::MailboxAlloc),
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
        ["mailbox.effect", commands::effect::command, "write", 1, 1, 1, ""],
    ],
    event_handlers: [
        [@GENERIC: sweeper::on_keyspace_event],
    ],
    configurations: [
        i64: [
            ["max-payload-bytes", &MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES_LIMITS.default, MAX_PAYLOAD_BYTES_LIMITS.min, MAX_PAYLOAD_BYTES_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["default-lease-ms", &DEFAULT_LEASE_MS, DEFAULT_LEASE_MS_LIMITS.default, DEFAULT_LEASE_MS_LIMITS.min, DEFAULT_LEASE_MS_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["default-max-deliveries", &DEFAULT_MAX_DELIVERIES, DEFAULT_MAX_DELIVERIES_LIMITS.default, DEFAULT_MAX_DELIVERIES_LIMITS.min, DEFAULT_MAX_DELIVERIES_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["default-maxlen", &DEFAULT_MAXLEN, DEFAULT_MAXLEN_LIMITS.default, DEFAULT_MAXLEN_LIMITS.min, DEFAULT_MAXLEN_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["default-ttl-ms", &DEFAULT_TTL_MS, DEFAULT_TTL_MS_LIMITS.default, DEFAULT_TTL_MS_LIMITS.min, DEFAULT_TTL_MS_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["dedup-window-ms", &DEDUP_WINDOW_MS, DEDUP_WINDOW_MS_LIMITS.default, DEDUP_WINDOW_MS_LIMITS.min, DEDUP_WINDOW_MS_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["audit-maxlen", &AUDIT_MAXLEN, AUDIT_MAXLEN_LIMITS.default, AUDIT_MAXLEN_LIMITS.min, AUDIT_MAXLEN_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["send-rate", &SEND_RATE, SEND_RATE_LIMITS.default, SEND_RATE_LIMITS.min, SEND_RATE_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["send-burst", &SEND_BURST, SEND_BURST_LIMITS.default, SEND_BURST_LIMITS.min, SEND_BURST_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["max-thread-messages", &MAX_THREAD_MESSAGES, MAX_THREAD_MESSAGES_LIMITS.default, MAX_THREAD_MESSAGES_LIMITS.min, MAX_THREAD_MESSAGES_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["thread-idle-ms", &THREAD_IDLE_MS, THREAD_IDLE_MS_LIMITS.default, THREAD_IDLE_MS_LIMITS.min, THREAD_IDLE_MS_LIMITS.max, ConfigurationFlags::DEFAULT, None],
            ["sweep-interval-ms", &SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS_LIMITS.default, SWEEP_INTERVAL_MS_LIMITS.min, SWEEP_INTERVAL_MS_LIMITS.max, ConfigurationFlags::DEFAULT, None],
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

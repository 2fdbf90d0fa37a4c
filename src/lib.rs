//! redis-mailbox: durable mailboxes for LLM agents, as a Redis module.
//! This file only registers: commands (each one's `Meta` stands beside its handler
//! in `commands/`), the data types, the configs and the command filter.

pub mod access;
mod acl_categories;
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

use std::ffi::CString;
use std::os::raw::c_int;

use redis_module::configuration::ConfigurationFlags;
use redis_module::{raw, redis_module, Context, ModuleOptions, RedisString, Status};

use crate::commands::Meta;
use crate::config::*;
use crate::types::ffi::{MAILBOX_TYPE, NAMESPACE_TYPE};

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    // Corrupt RDB or RESTORE input must fail the load, not abort the server.
    ctx.set_module_options(ModuleOptions::HANDLE_IO_ERRORS);
    log_panics();
    let commands = commands();
    if register_commands(ctx, &commands) == Status::Err {
        return Status::Err;
    }
    server_events::register(ctx);
    command_info::register(ctx, commands.iter().map(|&(meta, _)| meta));
    acl_categories::register(ctx);
    server_events::subscribe_server_events(ctx);
    sweeper::check_eviction_policy(ctx, u64::MAX);
    sweeper::start(ctx);
    watch_subscribes(ctx)
}

type CmdFn = unsafe extern "C" fn(*mut raw::RedisModuleCtx, *mut *mut raw::RedisModuleString, c_int) -> c_int;

/// Every command with the `extern "C"` entry Redis calls, one per command (each
/// expansion defines its own `entry`).
macro_rules! with_entries {
    ($($meta:path),* $(,)?) => {
        vec![$({
            extern "C" fn entry(ctx: *mut raw::RedisModuleCtx, argv: *mut *mut raw::RedisModuleString, argc: c_int) -> c_int {
                run_command(ctx, argv, argc, $meta.handler)
            }
            (&$meta, entry as CmdFn)
        }),*]
    };
}

/// The module's commands; each one's name, flags, keys and info stand beside its handler.
fn commands() -> Vec<(&'static Meta, CmdFn)> {
    use commands::*;
    with_entries![
        send::META,
        read::META,
        ack::META,
        nack::META,
        peek::META,
        create::META,
        info::META,
        stats::META,
        publish::PUBLISH,
        publish::BROADCAST,
        reply::META,
        status::META,
        thread::META,
        presence::META,
        sub::SUB,
        sub::UNSUB,
        sub::SUBS,
        acl::META,
        dead::META,
        effect::META,
    ]
}

/// Registers every command. A container (`MAILBOX.ACL`, `MAILBOX.DEAD`) is created
/// without a handler and each of its subcommands with flags of its own, so the
/// writing ones carry `write` (held by `CLIENT PAUSE WRITE`, refused in `EVAL_RO` and
/// on replicas) and the reading ones stay runnable everywhere.
fn register_commands(ctx: &Context, commands: &[(&'static Meta, CmdFn)]) -> Status {
    // SAFETY: reading function pointers the module API filled in at load.
    let (Some(create), Some(get), Some(create_sub)) = (unsafe {
        (raw::RedisModule_CreateCommand, raw::RedisModule_GetCommand, raw::RedisModule_CreateSubcommand)
    }) else {
        ctx.log_warning("mailbox: this server has no module subcommands (Redis 7.0 or later is needed)");
        return Status::Err;
    };
    for &(meta, entry) in commands {
        let (Ok(name), Ok(flags)) = (CString::new(meta.name), CString::new(meta.flags)) else {
            return Status::Err;
        };
        let (key, step) = (meta.key, i32::from(meta.key > 0));
        if meta.subcommands.is_empty() {
            // SAFETY: the module API is initialised (OnLoad) and the strings outlive the call.
            let status =
                unsafe { create(ctx.ctx, name.as_ptr(), Some(entry), flags.as_ptr(), key, key, step) };
            if status != raw::Status::Ok as c_int {
                ctx.log_warning(&format!("mailbox: could not create {}", meta.name));
                return Status::Err;
            }
            continue;
        }
        // SAFETY: as above; a container command is created with no handler, as the API requires.
        let parent = unsafe {
            if create(ctx.ctx, name.as_ptr(), None, c"".as_ptr(), 0, 0, 0) != raw::Status::Ok as c_int {
                return Status::Err;
            }
            get(ctx.ctx, name.as_ptr())
        };
        if parent.is_null() {
            return Status::Err;
        }
        for sub in meta.subcommands {
            let (Ok(sub_name), Ok(sub_flags)) = (CString::new(sub.name), CString::new(sub.flags)) else {
                return Status::Err;
            };
            // SAFETY: `parent` is the container just created; the strings outlive the call.
            let status = unsafe {
                create_sub(parent, sub_name.as_ptr(), Some(entry), sub_flags.as_ptr(), sub.key, sub.key, 1)
            };
            if status != raw::Status::Ok as c_int {
                ctx.log_warning(&format!("mailbox: could not create {}|{}", meta.name, sub.name));
                return Status::Err;
            }
        }
    }
    Status::Ok
}

/// What the `redis_module!` macro does for each of its commands.
fn run_command(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    command: fn(&Context, Vec<RedisString>) -> redis_module::RedisResult,
) -> c_int {
    let context = Context::new(ctx);
    let args = redis_module::decode_args(ctx, argv, argc);
    context.reply(command(&context, args)) as c_int
}

/// A command filter tells `push` when a client may have begun to listen.
fn watch_subscribes(ctx: &Context) -> Status {
    // SAFETY: reading a function pointer the module API filled in at load.
    let Some(register) = (unsafe { raw::RedisModule_RegisterCommandFilter }) else {
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
unsafe extern "C" fn on_any_command(fctx: *mut raw::RedisModuleCommandFilterCtx) {
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

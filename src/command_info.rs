//! `COMMAND INFO` / `COMMAND DOCS` for every command, from the `Meta` beside its
//! handler: arity, a summary and key specs.
//! The key specs say what each command does to its key, so Redis ACL key
//! permissions apply precisely (a user with write-only access to a mailbox can send
//! to it but not read it) and cluster clients route by the right argument.

use std::ffi::CString;
use std::os::raw::c_int;

use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context};

use crate::commands::Meta;

/// Sets the info of every registered command; logs and goes on where the server
/// lacks the API (the commands still work, with legacy key positions).
pub fn register<'a>(ctx: &Context, commands: impl Iterator<Item = &'a Meta>) {
    // SAFETY: reading function pointers the module API filled in at load.
    let (Some(get_command), Some(set_info)) =
        (unsafe { raw::RedisModule_GetCommand }, unsafe { raw::RedisModule_SetCommandInfo })
    else {
        ctx.log_warning("mailbox: this server cannot take command info; key specs not set");
        return;
    };
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
    };
    let with_subcommands = commands.flat_map(|meta| {
        std::iter::once((meta.name.to_string(), meta))
            .chain(meta.subcommands.iter().map(|sub| (format!("{}|{}", meta.name, sub.name), sub)))
    });
    for (full_name, info) in with_subcommands {
        let (Ok(name), Ok(summary)) = (CString::new(full_name.as_str()), CString::new(info.summary)) else {
            continue;
        };
        let specs = info.key_spec.as_ref().map(|flags| {
            get_redis_key_spec(vec![KeySpec::new(
                None,
                KeySpecFlags::from_bits_retain(flags.bits()),
                BeginSearch::new_index(info.key),
                FindKeys::new_range(0, 1, 0),
            )])
        });
        let command_info = raw::RedisModuleCommandInfo {
            version: &version,
            summary: summary.as_ptr(),
            complexity: std::ptr::null(),
            since: c"0.1.0".as_ptr(),
            history: std::ptr::null_mut(),
            tips: std::ptr::null(),
            arity: info.arity,
            key_specs: specs.as_ref().map_or(std::ptr::null_mut(), |s| s.as_ptr().cast_mut()),
            args: std::ptr::null_mut(),
        };
        // SAFETY: `ctx.ctx` is the context of `OnLoad`; `name` is a C string alive here.
        let command = unsafe { get_command(ctx.ctx, name.as_ptr()) };
        // SAFETY: `command` is non-null (checked first); `command_info` and every
        // pointer in it (summary, key specs, version) outlive the call, which copies them.
        if command.is_null() || unsafe { set_info(command, &command_info) } != raw::Status::Ok as c_int {
            ctx.log_warning(&format!("mailbox: could not set the command info of {full_name}"));
        }
    }
}

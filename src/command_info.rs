//! `COMMAND INFO` / `COMMAND DOCS` for every command: arity, a summary and key specs.
//! The key specs say what each command does to its key, so Redis ACL key
//! permissions apply precisely (a user with write-only access to a mailbox can send
//! to it but not read it) and cluster clients route by the right argument.

use std::ffi::CString;
use std::os::raw::c_int;

use redis_module::commands::{get_redis_key_spec, BeginSearch, FindKeys, KeySpec, KeySpecFlags};
use redis_module::{raw, Context};

const RW: KeySpecFlags = KeySpecFlags::READ_WRITE;
const RO: KeySpecFlags = KeySpecFlags::READ_ONLY;

struct Info {
    name: &'static str,
    arity: c_int,
    summary: &'static str,
    /// Flags of the one key (argument 1), or `None` for a command without keys.
    key: Option<KeySpecFlags>,
    /// Where that key is: 1, or further for a subcommand.
    key_index: i32,
}

fn table() -> Vec<Info> {
    use KeySpecFlags as F;
    let info = |name, arity, summary, key| Info { name, arity, summary, key, key_index: 1 };
    // `MAILBOX.ACL GRANT|REVOKE|CHECK|QUOTA` route by the pattern, name or namespace
    // (argument 4); `LIST` by its namespace and `MAILBOX.DEAD`'s by the mailbox (2).
    let sub = |name, arity, summary, key, key_index| Info { name, arity, summary, key: Some(key), key_index };
    vec![
        info("mailbox.send", -3, "Sends a message to a mailbox", Some(RW.union(F::INSERT))),
        info(
            "mailbox.read",
            -2,
            "Leases the next messages of a mailbox, optionally blocking",
            Some(RW.union(F::ACCESS).union(F::UPDATE)),
        ),
        info("mailbox.ack", -3, "Settles leased messages", Some(RW.union(F::DELETE))),
        info("mailbox.nack", -3, "Puts leased messages back", Some(RW.union(F::UPDATE))),
        info("mailbox.peek", -2, "Lists messages without leasing them", Some(RO.union(F::ACCESS))),
        info("mailbox.create", -2, "Creates a mailbox or changes its settings", Some(RW.union(F::INSERT))),
        info("mailbox.info", 2, "Settings and counts of a mailbox", Some(RO)),
        info("mailbox.dead", -2, "Lists, requeues or purges dead letters", None),
        sub("mailbox.dead|list", -3, "Lists the dead letters of a mailbox", RO.union(F::ACCESS), 2),
        sub("mailbox.dead|requeue", -4, "Makes dead letters deliverable again", RW.union(F::UPDATE), 2),
        sub("mailbox.dead|purge", -4, "Deletes dead letters", RW.union(F::DELETE), 2),
        info("mailbox.stats", 1, "Server-wide mailbox counters", None),
        info("mailbox.publish", -3, "Publishes a message to a topic", Some(RO)),
        info("mailbox.broadcast", -3, "Sends a message to every mailbox of a namespace", Some(RO)),
        info("mailbox.reply", -4, "Answers a message a mailbox holds", Some(RO.union(F::ACCESS))),
        info("mailbox.status", 3, "Where a message stands in a mailbox", Some(RO)),
        info("mailbox.thread", -3, "Lists the messages of a thread", Some(RO.union(F::ACCESS))),
        info("mailbox.presence", 2, "Agents of a namespace and their last activity", Some(RO)),
        info("mailbox.sub", -3, "Subscribes a mailbox to topic patterns", Some(RW.union(F::INSERT))),
        info("mailbox.unsub", -3, "Unsubscribes a mailbox from topic patterns", Some(RO)),
        info("mailbox.subs", 2, "Lists a mailbox's topic subscriptions", Some(RO)),
        info(
            "mailbox.acl",
            -2,
            "Grants, revokes, lists and checks the module's permissions; sets send quotas",
            None,
        ),
        sub("mailbox.acl|grant", 5, "Grants a permission on a name pattern", RO, 4),
        sub("mailbox.acl|revoke", 5, "Revokes a permission on a name pattern", RO, 4),
        sub("mailbox.acl|check", 5, "Whether an agent holds a permission on a name", RO, 4),
        sub("mailbox.acl|list", -3, "Lists the grants of a namespace", RO, 2),
        sub("mailbox.acl|quota", -5, "Sets or resets an agent's send quota in a namespace", RO, 4),
        info("mailbox.effect", -3, "Internal: applies a replicated effect", Some(RW.union(F::UPDATE))),
    ]
}

/// Sets the info of every registered command; logs and goes on where the server
/// lacks the API (the commands still work, with legacy key positions).
pub fn register(ctx: &Context) {
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
    for info in table() {
        let (Ok(name), Ok(summary)) = (CString::new(info.name), CString::new(info.summary)) else { continue };
        let specs = info.key.map(|flags| {
            get_redis_key_spec(vec![KeySpec::new(
                None,
                flags,
                BeginSearch::new_index(info.key_index),
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
            ctx.log_warning(&format!("mailbox: could not set the command info of {}", info.name));
        }
    }
}

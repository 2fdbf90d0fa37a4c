//! ACL categories of the module's commands, on servers that have the API: a `mailbox` category
//! holding every command (`RedisModule_AddACLCategory`, Redis 7.4+ and Valkey 8+), and the
//! standard `read`/`write`/`fast`/`slow`/`blocking` categories on each command
//! (`RedisModule_SetCommandACLCategories`, Redis 7.2+), so that `+@mailbox` and `-@write` in an
//! ACL rule mean what an operator expects.
//!
//! Redis 7.0 has neither API: there the module's commands are in no category but `@all`, and ACL
//! rules must name them (`+mailbox.send`). What the server offers is found by its function
//! pointers at load time, never by its version string. The categories are not passed through
//! the `redis_module!` command table, whose category slot makes 7.0 refuse the module.

use std::ffi::CString;
use std::os::raw::c_int;

use redis_module::{raw, Context};

/// The module's own ACL category.
pub const MODULE_CATEGORY: &str = "mailbox";

/// Standard categories of each command, as Redis gives its own commands: `write` to whatever
/// changes data (a read leases, so it writes, as `XREADGROUP` does), `read` to what only looks,
/// `fast` or `slow`, and `blocking` to what can block. `MAILBOX.DEAD` and `MAILBOX.ACL` are
/// containers, never run themselves: each subcommand has its own (the containers count as
/// `write`, as some of their subcommands write).
const CATEGORIES: &[(&str, &str)] = &[
    ("mailbox.send", "write slow"),
    ("mailbox.read", "write slow blocking"),
    ("mailbox.ack", "write fast"),
    ("mailbox.nack", "write fast"),
    ("mailbox.peek", "read slow"),
    ("mailbox.create", "write slow"),
    ("mailbox.info", "read fast"),
    ("mailbox.dead", "write slow"),
    ("mailbox.dead|list", "read slow"),
    ("mailbox.dead|requeue", "write slow"),
    ("mailbox.dead|purge", "write slow"),
    ("mailbox.stats", "read fast"),
    ("mailbox.publish", "write slow"),
    ("mailbox.broadcast", "write slow"),
    ("mailbox.reply", "write slow"),
    ("mailbox.status", "read fast"),
    ("mailbox.thread", "read slow"),
    ("mailbox.presence", "read slow"),
    ("mailbox.sub", "write slow"),
    ("mailbox.unsub", "write slow"),
    ("mailbox.subs", "read slow"),
    ("mailbox.acl", "write slow"),
    ("mailbox.acl|grant", "write slow"),
    ("mailbox.acl|revoke", "write slow"),
    ("mailbox.acl|quota", "write slow"),
    ("mailbox.acl|check", "read fast"),
    ("mailbox.acl|list", "read slow"),
    ("mailbox.effect", "write slow"),
];

/// The categories one command gets: its standard ones, with `mailbox` when the server added it.
pub fn categories_of(standard: &str, with_module_category: bool) -> String {
    if with_module_category {
        format!("{MODULE_CATEGORY} {standard}")
    } else {
        standard.to_string()
    }
}

/// Adds the `mailbox` category and puts every command in its categories. Runs during the
/// module's load (both APIs work only then), after the commands are created. A server that
/// refuses a category keeps the module loaded: the commands still work, and the log says which
/// ACL category rules will not apply to them.
pub fn register(ctx: &Context) {
    // SAFETY: reading the API's function pointers, filled in before OnLoad runs.
    let (Some(get_command), Some(set_categories)) =
        (unsafe { raw::RedisModule_GetCommand }, unsafe { raw::RedisModule_SetCommandACLCategories })
    else {
        ctx.log_notice(
            "mailbox: this server has no module ACL categories; ACL rules must name the commands \
             (+mailbox.send), as @read, @write and @mailbox do not hold them",
        );
        return;
    };
    let with_module_category = add_module_category(ctx);
    for (name, standard) in CATEGORIES {
        let categories = categories_of(standard, with_module_category);
        let (Ok(c_name), Ok(c_categories)) = (CString::new(*name), CString::new(categories.as_str())) else {
            continue;
        };
        // SAFETY: a live context during OnLoad and a NUL-terminated name that outlives the call.
        let command = unsafe { get_command(ctx.ctx, c_name.as_ptr()) };
        // SAFETY: `command` is a command of this module, checked not null first; the
        // categories are a NUL-terminated string that outlives the call.
        if command.is_null()
            || unsafe { set_categories(command, c_categories.as_ptr()) } != raw::Status::Ok as c_int
        {
            ctx.log_warning(&format!("mailbox: could not put {name} in the ACL categories {categories}"));
        }
    }
    if !with_module_category {
        ctx.log_notice("mailbox: this server cannot add ACL categories; the commands have no @mailbox");
    }
}

fn add_module_category(ctx: &Context) -> bool {
    // SAFETY: reading the API's function pointer, filled in before OnLoad runs.
    let Some(add) = (unsafe { raw::RedisModule_AddACLCategory }) else {
        return false;
    };
    let Ok(name) = CString::new(MODULE_CATEGORY) else {
        return false;
    };
    // SAFETY: a live context during OnLoad and a NUL-terminated name that outlives the call.
    if unsafe { add(ctx.ctx, name.as_ptr()) } == raw::Status::Ok as c_int {
        true
    } else {
        ctx.log_warning("mailbox: the server refused to add the ACL category mailbox");
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_read_or_write_and_fast_or_slow() {
        for (name, standard) in CATEGORIES {
            let words: Vec<&str> = standard.split(' ').collect();
            assert!(
                words.contains(&"read") ^ words.contains(&"write"),
                "{name}: exactly one of read and write: {standard}"
            );
            assert!(
                words.contains(&"fast") ^ words.contains(&"slow"),
                "{name}: exactly one of fast and slow: {standard}"
            );
        }
    }

    #[test]
    fn the_module_category_comes_first_when_added() {
        assert_eq!(categories_of("write slow", true), "mailbox write slow");
        assert_eq!(categories_of("read fast", false), "read fast");
    }
}

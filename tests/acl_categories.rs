//! ACL categories of the module's commands, on whichever server the tests run on. Where the
//! server has the module API for them (Redis 7.2+ for `read`/`write`/`fast`/..., Redis 7.4+ and
//! Valkey 8+ for a module's own category), every command is in `@mailbox` and in `@write` or
//! `@read`, so `+@mailbox` and `-@write` mean what an operator expects. On Redis 7.0 the module
//! loads and works, and its commands are in no category: `-@write` leaves `MAILBOX.SEND` allowed
//! and `+@mailbox` is an unknown category. What each server does is asserted, not skipped.

mod common;

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

/// What the server lets the module declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Support {
    /// Redis 7.0: no categories for module commands.
    None,
    /// Redis 7.2 (and Valkey 7.2): standard categories, no module category.
    Standard,
    /// Redis 7.4+, Valkey 8+: standard categories and `@mailbox`.
    Full,
}

fn expected_support() -> Support {
    match server_version() {
        (ServerKind::Redis, v) if v < (7, 2, 0) => Support::None,
        (ServerKind::Redis, v) if v < (7, 4, 0) => Support::Standard,
        (ServerKind::Redis, _) => Support::Full,
        (ServerKind::Valkey, v) if v < (8, 0, 0) => Support::Standard,
        (ServerKind::Valkey, _) => Support::Full,
    }
}

const UNKNOWN_MAILBOX_CATEGORY: &str =
    "ERR Error in ACL SETUSER modifier '+@mailbox': Unknown command or category name in ACL";

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) | Value::Set(items) => items.iter().map(text).collect(),
        Value::Nil => Vec::new(),
        other => panic!("not a list: {other:?}"),
    }
}

/// The module's commands as the server lists them.
fn module_commands(con: &mut Connection) -> Vec<String> {
    let mut names = strings(&run(con, &["COMMAND", "LIST", "FILTERBY", "MODULE", "mailbox"]));
    names.sort();
    names
}

/// One `COMMAND INFO` entry (or a subcommand's): name, flags, ACL categories, subcommands.
struct CommandInfo {
    name: String,
    flags: Vec<String>,
    categories: Vec<String>,
    subcommands: Vec<CommandInfo>,
}

fn parse_info(entry: &Value) -> CommandInfo {
    let Value::Array(fields) = entry else { panic!("COMMAND INFO entry: {entry:?}") };
    assert!(fields.len() >= 10, "COMMAND INFO entry has {} fields: {entry:?}", fields.len());
    let subcommands = match &fields[9] {
        Value::Array(subs) => subs.iter().map(parse_info).collect(),
        _ => Vec::new(),
    };
    CommandInfo {
        name: text(&fields[0]),
        flags: strings(&fields[2]),
        categories: strings(&fields[6]),
        subcommands,
    }
}

fn command_info(con: &mut Connection, name: &str) -> CommandInfo {
    let reply = run(con, &["COMMAND", "INFO", name]);
    let Value::Array(entries) = &reply else { panic!("COMMAND INFO {name}: {reply:?}") };
    assert_eq!(entries.len(), 1, "COMMAND INFO {name}: {reply:?}");
    parse_info(&entries[0])
}

/// The categories a command must have, from its flags: `write` for a command flagged write,
/// and for `MAILBOX.DEAD` and `MAILBOX.ACL` (flagged neither, one of their subcommands
/// writes); `read` for a command flagged readonly; `fast` when flagged fast, else `slow`.
fn check_categories(info: &CommandInfo, support: Support) {
    let has = |c: &str| info.categories.iter().any(|x| x == c);
    let flag = |f: &str| info.flags.iter().any(|x| x == f);
    if support == Support::None {
        assert!(
            info.categories.is_empty(),
            "{}: Redis 7.0 gives module commands no category: {:?}",
            info.name,
            info.categories
        );
        return;
    }
    assert_eq!(has("@mailbox"), support == Support::Full, "{}: @mailbox in {:?}", info.name, info.categories);
    let writes = flag("write") || !flag("readonly");
    assert_eq!(
        has("@write"),
        writes,
        "{}: flags {:?}, categories {:?}",
        info.name,
        info.flags,
        info.categories
    );
    assert_eq!(
        has("@read"),
        !writes,
        "{}: flags {:?}, categories {:?}",
        info.name,
        info.flags,
        info.categories
    );
    assert_eq!(
        has("@fast"),
        flag("fast"),
        "{}: flags {:?}, categories {:?}",
        info.name,
        info.flags,
        info.categories
    );
    assert_eq!(
        has("@slow"),
        !flag("fast"),
        "{}: flags {:?}, categories {:?}",
        info.name,
        info.flags,
        info.categories
    );
}

#[test]
fn every_command_is_in_the_categories_its_flags_say() {
    let support = expected_support();
    let server = Server::start();
    let mut con = server.client();
    let commands = module_commands(&mut con);
    for name in ["mailbox.send", "mailbox.read", "mailbox.peek", "mailbox.ack", "mailbox.acl"] {
        assert!(commands.iter().any(|c| c == name), "{name} not in {commands:?}");
    }
    for name in &commands {
        let info = command_info(&mut con, name);
        check_categories(&info, support);
        for sub in &info.subcommands {
            check_categories(sub, support);
        }
    }
    // MAILBOX.READ can block.
    let read = command_info(&mut con, "mailbox.read");
    assert_eq!(
        read.categories.iter().any(|c| c == "@blocking"),
        support != Support::None,
        "{:?}",
        read.categories
    );

    // ACL CAT lists the module's category, holding every command, or does not know it.
    match support {
        Support::Full => {
            let cats = strings(&run(&mut con, &["ACL", "CAT"]));
            assert!(cats.iter().any(|c| c == "mailbox"), "{cats:?}");
            let mut in_category = strings(&run(&mut con, &["ACL", "CAT", "mailbox"]));
            in_category.sort();
            assert_eq!(in_category, commands);
        }
        Support::Standard | Support::None => {
            let err = error_of(&mut con, &["ACL", "CAT", "mailbox"]);
            assert!(err.contains("Unknown category 'mailbox'"), "{err}");
        }
    }
    // @write lists exactly the module commands that write, @read the others (none on 7.0).
    let in_write: Vec<String> = strings(&run(&mut con, &["ACL", "CAT", "write"]))
        .into_iter()
        .filter(|c| c.starts_with("mailbox."))
        .collect();
    let in_read: Vec<String> = strings(&run(&mut con, &["ACL", "CAT", "read"]))
        .into_iter()
        .filter(|c| c.starts_with("mailbox."))
        .collect();
    if support == Support::None {
        assert!(in_write.is_empty() && in_read.is_empty(), "{in_write:?} {in_read:?}");
    } else {
        assert!(in_write.iter().any(|c| c == "mailbox.send"), "{in_write:?}");
        assert!(in_read.iter().any(|c| c == "mailbox.peek"), "{in_read:?}");
        assert_eq!(in_write.len() + in_read.len(), commands.len(), "{in_write:?} {in_read:?}");
    }
}

/// `ACL SETUSER name on >name-pw rules...`, then a connection as that user.
fn user(server: &Server, admin: &mut Connection, name: &str, rules: &[&str]) -> Connection {
    let password = format!(">{name}-pw");
    let mut args = vec!["ACL", "SETUSER", name, "on", password.as_str()];
    args.extend_from_slice(rules);
    assert_eq!(run(admin, &args), Value::Okay, "ACL SETUSER {name} {rules:?}");
    server.client_as(name, &format!("{name}-pw"))
}

/// The server's own ACL refusal of a command (not the module's grant check).
fn denied_by_acl(con: &mut Connection, args: &[&str]) -> bool {
    match try_run(con, args) {
        Ok(_) => false,
        Err(e) => {
            let e = err_text(&e);
            let expected = format!("no permissions to run the '{}' command", args[0].to_lowercase());
            assert!(e.starts_with("NOPERM") && e.contains(&expected), "{args:?}: {e}");
            true
        }
    }
}

#[test]
fn minus_write_and_plus_read_reach_the_module_commands_where_the_server_can() {
    let support = expected_support();
    let server = Server::start();
    let mut admin = server.client();
    let mut before = user(&server, &mut admin, "nowrite", &["~*", "&*", "+@all"]);
    send(&mut before, "nowrite", "before", &[]);

    // Everything but @write: looking at one's own mailbox is allowed; sending, leasing and
    // acking are not (on 7.0 all of them still are).
    let mut nowrite = user(&server, &mut admin, "nowrite", &["-@write"]);
    let denied = support != Support::None;
    assert_eq!(denied_by_acl(&mut nowrite, &["MAILBOX.SEND", "nowrite", "x"]), denied);
    assert_eq!(denied_by_acl(&mut nowrite, &["MAILBOX.READ", "nowrite", "COUNT", "1"]), denied);
    assert_eq!(denied_by_acl(&mut nowrite, &["MAILBOX.ACK", "nowrite", "1-0"]), denied);
    assert_eq!(denied_by_acl(&mut nowrite, &["MAILBOX.PUBLISH", "t.a", "x"]), denied);
    assert!(!denied_by_acl(&mut nowrite, &["MAILBOX.STATS"]));
    assert!(denied_by_acl(&mut nowrite, &["SET", "k", "v"]));
    let held = peek(&mut nowrite, "nowrite", &[]);
    assert_eq!(held[0].payload(), "before");
    // The send ACL let through (7.0) is stored, the refused one is not.
    assert_eq!(peek(&mut admin, "nowrite", &[]).len(), if denied { 1 } else { 2 });

    // Only @read: peeking is allowed where the server has categories, nothing on 7.0.
    let mut reader = user(&server, &mut admin, "reader", &["~*", "&*", "+@read"]);
    assert_eq!(denied_by_acl(&mut reader, &["MAILBOX.PEEK", "reader"]), support == Support::None);
    assert!(denied_by_acl(&mut reader, &["MAILBOX.SEND", "reader", "x"]));
}

#[test]
fn plus_mailbox_allows_the_module_and_nothing_else_where_the_server_can() {
    let support = expected_support();
    let server = Server::start();
    let mut admin = server.client();
    if support != Support::Full {
        let err =
            error_of(&mut admin, &["ACL", "SETUSER", "agent", "on", ">agent-pw", "~*", "&*", "+@mailbox"]);
        assert_eq!(err, UNKNOWN_MAILBOX_CATEGORY);
        // What works on every server: the commands by name.
        let mut agent = user(&server, &mut admin, "agent", &["~*", "&*", "+mailbox.send", "+mailbox.read"]);
        send(&mut agent, "agent", "by name", &[]);
        assert_eq!(read_one(&mut agent, "agent", &[]).payload(), "by name");
        assert!(denied_by_acl(&mut agent, &["GET", "k"]));
        return;
    }
    let mut agent = user(&server, &mut admin, "agent", &["~*", "&*", "+@mailbox"]);
    let id = send(&mut agent, "agent", "hello", &[]);
    let msg = read_one(&mut agent, "agent", &[]);
    assert_eq!((msg.id.as_str(), msg.payload().as_str()), (id.as_str(), "hello"));
    assert_eq!(ack(&mut agent, "agent", &[&id]), 1);
    assert!(denied_by_acl(&mut agent, &["GET", "k"]));
    assert!(denied_by_acl(&mut agent, &["SET", "k", "v"]));
    assert!(denied_by_acl(&mut agent, &["DEL", "agent"]));

    // +@mailbox -@write: the module's read-only commands.
    let mut looker = user(&server, &mut admin, "looker", &["~*", "&*", "+@mailbox", "-@write"]);
    assert!(denied_by_acl(&mut looker, &["MAILBOX.SEND", "looker", "x"]));
    assert!(denied_by_acl(&mut looker, &["MAILBOX.READ", "looker"]));
    assert!(!denied_by_acl(&mut looker, &["MAILBOX.PEEK", "looker"]));
    assert!(!denied_by_acl(&mut looker, &["MAILBOX.STATS"]));
    assert!(denied_by_acl(&mut looker, &["GET", "k"]));
}

/// A `user` line in the server's configuration naming `@mailbox` is read after the module has
/// added the category: the server starts and the user has the module's commands.
#[test]
fn a_configured_user_may_name_the_mailbox_category() {
    let support = expected_support();
    let opts = ServerOptions {
        config: vec![("user".to_string(), "cfg on >cfg-pw ~* &* +@mailbox".to_string())],
        module_args: Vec::new(),
    };
    match Server::try_start_with(opts) {
        Ok(server) => {
            assert_eq!(support, Support::Full, "the server accepted +@mailbox");
            let mut cfg = server.client_as("cfg", "cfg-pw");
            let id = send(&mut cfg, "cfg", "from config", &[]);
            assert_eq!(read_one(&mut cfg, "cfg", &[]).id, id);
            assert!(denied_by_acl(&mut cfg, &["GET", "k"]));
        }
        Err(e) => {
            assert_ne!(support, Support::Full, "the server refused +@mailbox: {e}");
            assert!(e.contains("Unknown command or category name in ACL"), "{e}");
        }
    }
}

//! R14: bad inputs against a real server. Each one gets a clear error starting with a
//! Redis code (the exact text where the module defines it), changes nothing (`DEBUG
//! DIGEST` equal before and after), and the server is still up at the end.

mod common;

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

/// Ten years: the largest duration any option accepts.
const MAX_MS: &str = "315360000000";

/// A refused command and the exact error it must reply.
struct Case {
    args: Vec<Vec<u8>>,
    expect: String,
}

fn bytes_of(args: &[&str]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.as_bytes().to_vec()).collect()
}

fn exact(args: &[&str], text: impl Into<String>) -> Case {
    Case { args: bytes_of(args), expect: text.into() }
}

fn exact_bytes(args: Vec<Vec<u8>>, text: impl Into<String>) -> Case {
    Case { args, expect: text.into() }
}

fn show(args: &[Vec<u8>]) -> String {
    let shown: Vec<String> = args
        .iter()
        .take(8)
        .map(|a| {
            let s = String::from_utf8_lossy(a);
            if s.len() > 40 {
                format!("{}...({} bytes)", &s[..40.min(s.len())], a.len())
            } else {
                s.into_owned()
            }
        })
        .collect();
    let more = if args.len() > 8 { format!(" ... ({} arguments)", args.len()) } else { String::new() };
    format!("{}{more}", shown.join(" "))
}

/// Runs every case: an error with the expected text, and no change to the dataset.
fn check_all(server: &Server, con: &mut Connection, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let before = debug_digest(con);
        let mut cmd = redis::cmd(std::str::from_utf8(&case.args[0]).expect("a command name"));
        for a in &case.args[1..] {
            cmd.arg(&a[..]);
        }
        let got = match cmd.query::<Value>(con) {
            Ok(v) => format!("no error, replied {v:?}"),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                panic!("the server went away on `{}`: {e}\nlog:\n{}", show(&case.args), server.log_tail(30))
            }
            Err(e) => err_text(&e),
        };
        let want = &case.expect;
        let ok = got == *want;
        let coded = got.starts_with("ERR ") || got.starts_with("WRONGTYPE ") || got.starts_with("BUSYKEY ");
        if !ok || !coded {
            failures.push(format!("`{}`\n    want {want:?}\n    got  {got:?}", show(&case.args)));
        }
        let after = debug_digest(con);
        if after != before {
            failures.push(format!("`{}` changed the dataset (DEBUG DIGEST)", show(&case.args)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs misbehaved:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(text(&run(con, &["PING"])), "PONG");
    eprintln!("{} bad inputs refused, each with the expected error and no change", cases.len());
}

/// A server holding `{t}a` (one leased, one ready message, a subscription) and a string
/// key `str`. Nothing in it is due to change by itself while the test runs.
fn setup() -> (Server, Connection) {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "{t}a", &["LEASE", MAX_MS, "MAXDELIVER", "3"]);
    send(&mut con, "{t}a", "one", &[]);
    send(&mut con, "{t}a", "two", &[]);
    read_one(&mut con, "{t}a", &[]);
    run(&mut con, &["MAILBOX.SUB", "{t}a", "x.#"]);
    run(&mut con, &["SET", "str", "a string"]);
    (server, con)
}

fn int_range(option: &str, min: &str, max: &str) -> String {
    format!("ERR {option} must be an integer from {min} to {max}")
}

/// Values no integer option accepts (besides the out-of-range ones each case adds).
const NOT_INTEGERS: &[&str] = &[
    "abc",
    "",
    " 1",
    "1 ",
    "+1",
    "1.5",
    "1e3",
    "0x10",
    "--1",
    "1-",
    "١", // an Arabic-Indic one
    "99999999999999999999",
    "-99999999999999999999",
    "9223372036854775808",
    "-9223372036854775809",
];

#[test]
fn options_of_every_command() {
    let (server, mut con) = setup();
    let send =
        |opts: &[&'static str]| -> Vec<&'static str> { [&["MAILBOX.SEND", "{t}a", "p"][..], opts].concat() };
    let read =
        |opts: &[&'static str]| -> Vec<&'static str> { [&["MAILBOX.READ", "{t}a"][..], opts].concat() };
    let create =
        |opts: &[&'static str]| -> Vec<&'static str> { [&["MAILBOX.CREATE", "{t}new"][..], opts].concat() };
    let mut cases = vec![
        // Unknown, repeated (in any case), valueless options.
        exact(&send(&["BOGUS", "1"]), "ERR unknown option 'BOGUS'"),
        exact(&send(&["PRIORITY", "1", "priority", "2"]), "ERR option 'PRIORITY' given more than once"),
        exact(&send(&["META", "{}", "META", "{}"]), "ERR option 'META' given more than once"),
        exact(&send(&["TTL"]), "ERR option 'TTL' needs a value"),
        exact(&send(&["PRIORITY"]), "ERR option 'PRIORITY' needs a value"),
        exact(&send(&["META"]), "ERR option 'META' needs a value"),
        exact(&send(&["DEDUP"]), "ERR option 'DEDUP' needs a value"),
        exact(&send(&["REPLYTO"]), "ERR option 'REPLYTO' needs a value"),
        exact(&send(&["TTL", "5", "THREAD"]), "ERR option 'THREAD' needs a value"),
        exact(&read(&["COUNT", "1", "COUNT", "2"]), "ERR option 'COUNT' given more than once"),
        exact(&read(&["NOACK", "noack"]), "ERR option 'NOACK' given more than once"),
        exact(&read(&["COUNT"]), "ERR option 'COUNT' needs a value"),
        exact(&read(&["BLOCK"]), "ERR option 'BLOCK' needs a value"),
        exact(&read(&["LEASE"]), "ERR option 'LEASE' needs a value"),
        exact(&read(&["WAIT", "1"]), "ERR unknown option 'WAIT'"),
        exact(&create(&["MAXLEN", "1", "MAXLEN", "2"]), "ERR option 'MAXLEN' given more than once"),
        exact(&create(&["UPDATE", "UPDATE"]), "ERR option 'UPDATE' given more than once"),
        exact(&create(&["MAXDELIVER"]), "ERR option 'MAXDELIVER' needs a value"),
        exact(&create(&["NOPE"]), "ERR unknown option 'NOPE'"),
        exact(&["MAILBOX.PEEK", "{t}a", "-", "+", "COUNT"], "ERR option 'COUNT' needs a value"),
        exact(&["MAILBOX.PEEK", "{t}a", "-", "+", "LIMIT", "1"], "ERR unknown option 'LIMIT'"),
        exact(
            &["MAILBOX.PEEK", "{t}a", "COUNT", "1", "COUNT", "1"],
            "ERR option 'COUNT' given more than once",
        ),
        exact(
            &["MAILBOX.NACK", "{t}a", "1-0", "DELAY", "5", "DELAY", "6"],
            "ERR option 'DELAY' given more than once",
        ),
        exact(&["MAILBOX.THREAD", "{t}a", "t", "LIMIT", "1"], "ERR unknown option 'LIMIT'"),
        // Missing arguments where the arity allows the command.
        exact(&["MAILBOX.NACK", "{t}a", "DELAY", "5"], "ERR syntax error"),
        exact(
            &["MAILBOX.DEAD", "REQUEUE", "{t}a"],
            "ERR wrong number of arguments for 'mailbox.dead|requeue' command",
        ),
        exact(
            &["MAILBOX.DEAD", "PURGE", "{t}a"],
            "ERR wrong number of arguments for 'mailbox.dead|purge' command",
        ),
        exact(
            &["MAILBOX.DEAD", "EXPLODE", "{t}a"],
            "ERR unknown subcommand 'EXPLODE'. Try MAILBOX.DEAD HELP.",
        ),
        exact(&["MAILBOX.DEAD", "LIST", "{t}a", "-"], "ERR unknown option '-'"),
        // Ids.
        exact(&["MAILBOX.ACK", "{t}a", "abc"], "ERR invalid message id 'abc'"),
        exact(&["MAILBOX.ACK", "{t}a", "1-0", "1-"], "ERR invalid message id '1-'"),
        exact(&["MAILBOX.ACK", "{t}a", "-1-0"], "ERR invalid message id '-1-0'"),
        exact(&["MAILBOX.ACK", "{t}a", "1-0-0"], "ERR invalid message id '1-0-0'"),
        exact(
            &["MAILBOX.ACK", "{t}a", "18446744073709551616-0"],
            "ERR invalid message id '18446744073709551616-0'",
        ),
        exact(&["MAILBOX.NACK", "{t}a", "x"], "ERR invalid message id 'x'"),
        exact(&["MAILBOX.PEEK", "{t}a", "x", "+"], "ERR invalid message id 'x'"),
        exact(&["MAILBOX.PEEK", "{t}a", "-", "1-x"], "ERR invalid message id '1-x'"),
        exact(&["MAILBOX.DEAD", "PURGE", "{t}a", "1-0", "zz"], "ERR invalid message id 'zz'"),
        exact(&["MAILBOX.STATUS", "{t}a", "zz"], "ERR invalid message id 'zz'"),
        exact(&["MAILBOX.REPLY", "{t}a", "zz", "p"], "ERR invalid message id 'zz'"),
        // Refused on the state of the data.
        exact(&["MAILBOX.CREATE", "{t}a"], "BUSYKEY mailbox already exists"),
        exact(&["MAILBOX.INFO", "{t}missing"], "ERR no such mailbox"),
        exact(&["MAILBOX.REPLY", "{t}a", "1-0", "p"], "ERR no such message in this mailbox"),
        exact(
            &["MAILBOX.REPLY", "{t}a", "1-0", "p", "CORRELATION", "c"],
            "ERR MAILBOX.REPLY sets CORRELATION itself",
        ),
        // Empty values where a value is needed.
        exact(&send(&["DEDUP", ""]), "ERR DEDUP must not be empty"),
        exact(&send(&["TYPE", ""]), "ERR TYPE must not be empty"),
        exact(&send(&["THREAD", ""]), "ERR THREAD must not be empty"),
        exact(&send(&["CORRELATION", ""]), "ERR CORRELATION must not be empty"),
        exact(&send(&["REPLYTO", ""]), "ERR mailbox name must be non-empty UTF-8"),
        exact(&send(&["AS", ""]), "ERR agent name must be non-empty UTF-8 without spaces"),
        exact(&send(&["AS", "two words"]), "ERR agent name must be non-empty UTF-8 without spaces"),
        // Topics and patterns.
        exact(&["MAILBOX.SUB", "{t}a", ""], "ERR topic must not be empty"),
        exact(&["MAILBOX.SUB", "{t}a", "a..b"], "ERR topic has an empty segment"),
        exact(&["MAILBOX.SUB", "{t}a", "a*.b"], "ERR wildcards * and # must be whole segments"),
        exact(
            &["MAILBOX.SUB", "{t}a", "{u}x.#"],
            "ERR '{u}x.#' is in another namespace (hash tag) than the mailbox",
        ),
        exact(&["MAILBOX.UNSUB", "{t}a", "a..b"], "ERR topic has an empty segment"),
        exact(&["MAILBOX.PUBLISH", "", "p"], "ERR topic must not be empty"),
        exact(&["MAILBOX.PUBLISH", "{t}x.*", "p"], "ERR a topic cannot contain * or # segments"),
        exact(
            &["MAILBOX.PUBLISH", "{t}x", "p", "PRIORITY", "10"],
            "ERR PRIORITY must be an integer from 0 to 9",
        ),
        exact(&["MAILBOX.BROADCAST", "{t}", "p", "BOGUS"], "ERR unknown option 'BOGUS'"),
        // Wrong type.
        exact(&["MAILBOX.SEND", "str", "p"], WRONGTYPE),
        exact(&["MAILBOX.READ", "str"], WRONGTYPE),
        exact(&["MAILBOX.PEEK", "str"], WRONGTYPE),
        exact(&["MAILBOX.INFO", "str"], WRONGTYPE),
        exact(&["MAILBOX.ACK", "str", "1-0"], WRONGTYPE),
        exact(&["MAILBOX.NACK", "str", "1-0"], WRONGTYPE),
        exact(&["MAILBOX.CREATE", "str"], WRONGTYPE),
        exact(&["MAILBOX.DEAD", "LIST", "str"], WRONGTYPE),
        exact(&["MAILBOX.THREAD", "str", "t"], WRONGTYPE),
        exact(&["MAILBOX.STATUS", "str", "1-0"], WRONGTYPE),
        exact(&["MAILBOX.SUB", "str", "x"], WRONGTYPE),
        // The replication channel is not for clients, well-formed or not.
        exact(&["MAILBOX.EFFECT", "{t}a", "REMOVE", "1-0"], EFFECT_FORBIDDEN),
        exact(&["MAILBOX.EFFECT", "{t}a", "NS.INIT"], EFFECT_FORBIDDEN),
        exact(&["MAILBOX.EFFECT", "{t}new", "INIT", "garbage", "1-0"], EFFECT_FORBIDDEN),
        exact(&["MAILBOX.EFFECT", "{t}a", "NOPE"], EFFECT_FORBIDDEN),
    ];

    // Every numeric option: negative, zero where not allowed, overflowing, not numbers.
    let numeric: Vec<(Vec<&str>, &str, String, Vec<&str>)> = vec![
        (
            send(&[]),
            "PRIORITY",
            "ERR PRIORITY must be an integer from 0 to 9".into(),
            vec!["-1", "10", "-0x1"],
        ),
        (send(&[]), "TTL", int_range("TTL", "1", MAX_MS), vec!["-1", "0", "315360000001"]),
        (read(&[]), "COUNT", int_range("COUNT", "1", "100000"), vec!["-1", "0", "100001"]),
        (read(&[]), "BLOCK", int_range("BLOCK", "0", MAX_MS), vec!["-1", "315360000001"]),
        (read(&[]), "LEASE", int_range("LEASE", "1", MAX_MS), vec!["-1", "0", "315360000001"]),
        (
            vec!["MAILBOX.NACK", "{t}a", "1-0"],
            "DELAY",
            int_range("DELAY", "0", MAX_MS),
            vec!["-1", "315360000001"],
        ),
        (vec!["MAILBOX.PEEK", "{t}a"], "COUNT", int_range("COUNT", "1", "100000"), vec!["-1", "0", "100001"]),
        (vec!["MAILBOX.THREAD", "{t}a", "t"], "COUNT", int_range("COUNT", "1", "100000"), vec!["-1", "0"]),
        (
            vec!["MAILBOX.SUB", "{t}a", "x.#"],
            "MINPRIORITY",
            int_range("MINPRIORITY", "0", "9"),
            vec!["-1", "10"],
        ),
        (create(&[]), "MAXLEN", int_range("MAXLEN", "0", "9223372036854775807"), vec!["-1"]),
        (create(&[]), "TTL", int_range("TTL", "0", MAX_MS), vec!["-1", "315360000001"]),
        (create(&[]), "LEASE", int_range("LEASE", "1", MAX_MS), vec!["-1", "0", "315360000001"]),
        (create(&[]), "MAXDELIVER", int_range("MAXDELIVER", "0", "4294967295"), vec!["-1", "4294967296"]),
        (create(&[]), "DEDUPWINDOW", int_range("DEDUPWINDOW", "0", MAX_MS), vec!["-1", "315360000001"]),
    ];
    for (base, option, error, out_of_range) in &numeric {
        for value in out_of_range.iter().chain(NOT_INTEGERS) {
            let mut args = base.clone();
            args.push(option);
            args.push(value);
            cases.push(exact(&args, error.clone()));
        }
    }
    check_all(&server, &mut con, &cases);
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const EFFECT_FORBIDDEN: &str =
    "ERR MAILBOX.EFFECT is only accepted from the master link or while loading the AOF";
const BAD_NAME: &str = "ERR mailbox name must be non-empty UTF-8";
const META_NOT_OBJECT: &str = "ERR META must be a JSON object";
const META_TOO_DEEP: &str = "ERR META nests too deeply";

/// Commands whose first argument is a mailbox name, with valid arguments after it.
const NAMED: &[&[&str]] = &[
    &["MAILBOX.SEND", "", "p"],
    &["MAILBOX.READ", ""],
    &["MAILBOX.ACK", "", "1-0"],
    &["MAILBOX.NACK", "", "1-0"],
    &["MAILBOX.PEEK", ""],
    &["MAILBOX.CREATE", ""],
    &["MAILBOX.INFO", ""],
    &["MAILBOX.DEAD", "LIST", ""],
    &["MAILBOX.THREAD", "", "t"],
    &["MAILBOX.STATUS", "", "1-0"],
    &["MAILBOX.SUB", "", "x"],
    &["MAILBOX.UNSUB", "", "x"],
    &["MAILBOX.SUBS", ""],
    &["MAILBOX.REPLY", "", "1-0", "p"],
    &["MAILBOX.PRESENCE", ""],
    &["MAILBOX.BROADCAST", "", "p"],
];

#[test]
fn empty_and_invalid_utf8_names() {
    let (server, mut con) = setup();
    let mut cases = Vec::new();
    for template in NAMED {
        for name in [&b""[..], &[0xff, 0xfe], b"{t}\xc3", b"ok\xed\xa0\x80"] {
            let mut args = bytes_of(template);
            let at = template.iter().position(|a| a.is_empty()).expect("a name to fill in");
            args[at] = name.to_vec();
            cases.push(exact_bytes(args, BAD_NAME));
        }
    }
    // A bad name anywhere else a name goes.
    cases.push(exact_bytes(
        vec![
            b"MAILBOX.SEND".to_vec(),
            b"{t}a".to_vec(),
            b"p".to_vec(),
            b"REPLYTO".to_vec(),
            vec![0xff, 0xfe],
        ],
        BAD_NAME,
    ));
    cases.push(exact_bytes(
        vec![b"MAILBOX.PUBLISH".to_vec(), vec![b'{', b't', b'}', 0xff], b"p".to_vec()],
        "ERR topic must be valid UTF-8",
    ));
    cases.push(exact_bytes(
        vec![b"MAILBOX.SUB".to_vec(), b"{t}a".to_vec(), vec![b'x', b'.', 0xfe]],
        "ERR topic must be valid UTF-8",
    ));
    check_all(&server, &mut con, &cases);
}

/// A name with a NUL byte is valid UTF-8: whether the module takes it or refuses it, the
/// server must survive it. Every command is tried on a fresh start after a crash, so the
/// failure lists each one that took the server down.
#[test]
fn names_with_a_nul_byte_do_not_crash_the_server() {
    let mut server = Server::start_with(ServerOptions {
        config: vec![("crash-memcheck-enabled".into(), "no".into())],
        ..Default::default()
    });
    let mut con = server.client();
    let names: [&[u8]; 3] = [b"a\x00b", b"{t\x00}a", b"{t}a\x00"];
    let mut crashes = Vec::new();
    for name in names {
        for args in [
            vec![&b"MAILBOX.SEND"[..], name, b"p"],
            vec![b"MAILBOX.CREATE", name],
            vec![b"MAILBOX.SUB", name, b"x.#"],
            vec![b"MAILBOX.READ", name],
            vec![b"MAILBOX.PRESENCE", name],
            vec![b"MAILBOX.BROADCAST", name, b"p"],
            vec![b"MAILBOX.PUBLISH", name, b"p"],
            vec![b"MAILBOX.SEND", b"{t}b", b"p", b"REPLYTO", name],
        ] {
            let mut cmd = redis::cmd(std::str::from_utf8(args[0]).expect("a command name"));
            for a in &args[1..] {
                cmd.arg(*a);
            }
            let shown = format!("{} {:?}", String::from_utf8_lossy(args[0]), String::from_utf8_lossy(name));
            match cmd.query::<Value>(&mut con) {
                Ok(_) => {}
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                    let log = std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default();
                    // The log is appended to across restarts: the last panic is this one.
                    let lines: Vec<&str> = log.lines().collect();
                    let last =
                        lines.iter().rposition(|l| l.contains("mailbox: panic")).unwrap_or(lines.len());
                    let panic = &lines[last..(last + 2).min(lines.len())];
                    crashes.push(format!("{shown}: {e}\n    {}", panic.join("\n    ")));
                    server.restart();
                    con = server.client();
                }
                Err(e) => {
                    // A clear Redis error (CREATE after SEND made the mailbox: BUSYKEY).
                    let t = err_text(&e);
                    assert!(t.starts_with("ERR ") || t.starts_with("BUSYKEY "), "{shown}: {t}");
                }
            }
        }
    }
    assert!(crashes.is_empty(), "the server crashed on {} commands:\n{}", crashes.len(), crashes.join("\n"));
    assert_eq!(text(&run(&mut con, &["PING"])), "PONG");
}

#[test]
fn meta_that_is_not_an_object_or_nests_too_deep() {
    let (server, mut con) = setup();
    let send_meta = |meta: &str| -> Vec<Vec<u8>> {
        vec![
            b"MAILBOX.SEND".to_vec(),
            b"{t}a".to_vec(),
            b"p".to_vec(),
            b"META".to_vec(),
            meta.as_bytes().to_vec(),
        ]
    };
    let mut cases = Vec::new();
    for meta in
        ["[1]", "\"x\"", "{", "1", "null", "true", "", " ", "{}{}", "{\"a\":1", "{'a':1}", "{\"a\":1,}", "[]"]
    {
        cases.push(exact_bytes(send_meta(meta), META_NOT_OBJECT));
    }
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let deep_arrays = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let unclosed = "{\"a\":".repeat(10_000);
    let just_brackets = "[".repeat(10_000);
    for meta in [&deep_objects, &deep_arrays, &unclosed, &just_brackets] {
        cases.push(exact_bytes(send_meta(meta), META_TOO_DEEP));
    }
    // Invalid UTF-8 inside a JSON string is not JSON.
    let mut bad = send_meta("");
    bad[4] = b"{\"a\":\"\xff\"}".to_vec();
    cases.push(exact_bytes(bad, META_NOT_OBJECT));
    // The same on the commands that take SEND's options.
    for meta in ["[1]", deep_objects.as_str()] {
        let want = if meta == "[1]" { META_NOT_OBJECT } else { META_TOO_DEEP };
        for mut base in [
            vec![b"MAILBOX.PUBLISH".to_vec(), b"{t}x.y".to_vec(), b"p".to_vec()],
            vec![b"MAILBOX.BROADCAST".to_vec(), b"{t}".to_vec(), b"p".to_vec()],
        ] {
            base.push(b"META".to_vec());
            base.push(meta.as_bytes().to_vec());
            cases.push(exact_bytes(base, want));
        }
    }
    check_all(&server, &mut con, &cases);
}

#[test]
fn payload_over_the_limit() {
    let (server, mut con) = setup();
    config_set(&mut con, "mailbox.max-payload-bytes", "16");
    let limit = "ERR payload is 17 bytes, over the mailbox.max-payload-bytes limit of 16";
    let big = "x".repeat(17);
    let cases = vec![
        exact(&["MAILBOX.SEND", "{t}a", &big], limit),
        exact(&["MAILBOX.SEND", "{t}new", &big], limit),
        exact(&["MAILBOX.PUBLISH", "{t}x.y", &big], limit),
        exact(&["MAILBOX.BROADCAST", "{t}", &big], limit),
        exact(
            &["MAILBOX.SEND", "{t}a", &"y".repeat(1 << 20)],
            "ERR payload is 1048576 bytes, over the mailbox.max-payload-bytes limit of 16",
        ),
    ];
    check_all(&server, &mut con, &cases);
    // At the limit it is taken.
    send(&mut con, "{t}a", &"x".repeat(16), &[]);
}

#[test]
fn ten_thousand_arguments() {
    let (server, mut con) = setup();
    let many = |head: &[&str], repeat: &[&str], n: usize| -> Vec<Vec<u8>> {
        let mut args = bytes_of(head);
        for _ in 0..n {
            args.extend(bytes_of(repeat));
        }
        args
    };
    let cases = vec![
        exact_bytes(
            many(&["MAILBOX.SEND", "{t}a", "p"], &["PRIORITY", "1"], 5_000),
            "ERR option 'PRIORITY' given more than once",
        ),
        exact_bytes(many(&["MAILBOX.SEND", "{t}a", "p"], &["X"], 10_000), "ERR unknown option 'X'"),
        exact_bytes(
            many(&["MAILBOX.SEND", "{t}a", "p", "TTL", "5"], &["1"], 10_000),
            "ERR unknown option '1'",
        ),
        exact_bytes(
            many(&["MAILBOX.READ", "{t}a"], &["NOACK"], 10_000),
            "ERR option 'NOACK' given more than once",
        ),
        exact_bytes(
            many(&["MAILBOX.CREATE", "{t}new"], &["UPDATE"], 10_000),
            "ERR option 'UPDATE' given more than once",
        ),
        exact_bytes(many(&["MAILBOX.ACK", "{t}a"], &["nope"], 10_000), "ERR invalid message id 'nope'"),
        exact_bytes(many(&["MAILBOX.NACK", "{t}a"], &["1-0", "x"], 5_000), "ERR invalid message id 'x'"),
        exact_bytes(many(&["MAILBOX.SUB", "{t}a"], &["a..b"], 10_000), "ERR topic has an empty segment"),
        exact_bytes(
            many(&["MAILBOX.PEEK", "{t}a", "-", "+"], &["COUNT", "1"], 5_000),
            "ERR option 'COUNT' given more than once",
        ),
        exact_bytes(many(&["MAILBOX.INFO", "{t}a"], &["x"], 10_000), "ERR unknown option 'x'"),
    ];
    check_all(&server, &mut con, &cases);
    // Valid but long: ten thousand unknown ids settle nothing and change nothing.
    let before = debug_digest(&mut con);
    let mut ack = redis::cmd("MAILBOX.ACK");
    ack.arg("{t}a");
    for i in 0..10_000u64 {
        ack.arg(format!("{}-{i}", i + 1));
    }
    assert_eq!(ack.query::<i64>(&mut con).expect("ACK of 10,000 unknown ids"), 0);
    assert_eq!(debug_digest(&mut con), before);
}

#[test]
fn wrong_arity_for_every_command() {
    let (server, mut con) = setup();
    let names = strings(&run(&mut con, &["COMMAND", "LIST", "FILTERBY", "MODULE", "mailbox"]));
    for known in
        ["mailbox.send", "mailbox.read", "mailbox.ack", "mailbox.nack", "mailbox.peek", "mailbox.info"]
    {
        assert!(names.iter().any(|n| n == known), "{known} is not in {names:?}");
    }
    let mut cases = Vec::new();
    for name in &names {
        let Value::Array(info) = run(&mut con, &["COMMAND", "INFO", name]) else {
            panic!("COMMAND INFO {name}")
        };
        let Some(Value::Array(fields)) = info.first() else { panic!("COMMAND INFO {name}: {info:?}") };
        let Value::Int(arity) = fields[1] else { panic!("the arity of {name}: {fields:?}") };
        let error = format!("ERR wrong number of arguments for '{name}' command");
        // Arguments made of the command and `n - 1` arguments that would otherwise be valid
        // enough to reach the module.
        // A subcommand (`mailbox.dead|list`) is called as two words.
        let with = |n: usize| -> Vec<&str> {
            let mut args: Vec<&str> = name.split('|').collect();
            let words = args.len();
            args.extend(std::iter::repeat_n("{t}a", n.saturating_sub(words)));
            args
        };
        let first = name.split('|').count();
        let counts: Vec<usize> = if arity > 0 {
            let a = arity as usize;
            (first..a).chain([a + 1, a + 5]).collect()
        } else {
            (first..(-arity) as usize).collect()
        };
        for n in counts {
            cases.push(exact(&with(n), error.clone()));
        }
    }
    // Arity checks the module makes itself.
    cases.push(exact(
        &["MAILBOX.THREAD", "{t}a", "t", "COUNT"],
        "ERR wrong number of arguments for 'mailbox.thread' command",
    ));
    assert!(cases.len() >= names.len(), "a case per command");
    check_all(&server, &mut con, &cases);
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

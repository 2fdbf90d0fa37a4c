//! Every `MAILBOX.*` command: its replies, exactly, and its errors, with the exact texts of
//! `src/errors.rs`. An error never changes the dataset.

mod common;

use common::mailbox::*;
use common::*;
use redis::Value;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const SYNTAX: &str = "ERR syntax error";
const NO_SUCH_MAILBOX: &str = "ERR no such mailbox";
const MAILBOX_EXISTS: &str = "BUSYKEY mailbox already exists";
const BAD_NAME: &str = "ERR mailbox name must be non-empty UTF-8";
const BAD_PRIORITY: &str = "ERR PRIORITY must be an integer from 0 to 9";
const META_NOT_OBJECT: &str = "ERR META must be a JSON object";
const META_TOO_DEEP: &str = "ERR META nests too deeply";
const MAILBOX_FULL: &str = "ERR mailbox is full (MAXLEN reached)";
const EFFECT_FORBIDDEN: &str =
    "ERR MAILBOX.EFFECT is only accepted from the master link or while loading the AOF";
/// The upper bound of every duration option (about 10 years in ms).
const MAX_MS: &str = "315360000000";

fn arity(command: &str) -> String {
    format!("ERR wrong number of arguments for '{command}' command")
}

fn ms_range(option: &str, min: u64) -> String {
    format!("ERR {option} must be an integer from {min} to {MAX_MS}")
}

/// Runs each command, expecting exactly its error, and checks the dataset did not change.
fn expect_errors(server: &Server, con: &mut redis::Connection, cases: &[(Vec<&str>, String)]) {
    let before = server.digest();
    for (args, expected) in cases {
        assert_eq!(&error_of(con, args), expected, "error of {args:?}");
    }
    assert_eq!(server.digest(), before, "an error reply changed the dataset");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

// ---- MAILBOX.SEND ----------------------------------------------------------

#[test]
fn send_replies_unique_increasing_ids() {
    let server = Server::start();
    let mut con = server.client();
    let ids: Vec<String> = (0..50).map(|i| send(&mut con, "bob", &format!("m{i}"), &[])).collect();
    for pair in ids.windows(2) {
        assert!(parse_id(&pair[0]) < parse_id(&pair[1]), "ids not increasing: {} then {}", pair[0], pair[1]);
    }
    // Ids are `<ms>-<seq>` with the server's clock in milliseconds.
    let (ms, _) = parse_id(&ids[0]);
    assert!(ms.abs_diff(now_ms()) < 60_000, "id {} is not a millisecond timestamp", ids[0]);
    let held: Vec<String> = peek(&mut con, "bob", &[]).into_iter().map(|m| m.id).collect();
    assert_eq!(held, ids);
}

#[test]
fn read_reply_has_every_field_in_order() {
    let server = Server::start();
    let mut con = server.client();
    let before = now_ms();
    let id = send(
        &mut con,
        "bob",
        "summarise the paper",
        &[
            "PRIORITY",
            "5",
            "TTL",
            "60000",
            "TYPE",
            "text/plain",
            "THREAD",
            "t1",
            "CORRELATION",
            "c1",
            "REPLYTO",
            "alice",
            "META",
            r#"{"k":[1,2],"s":"x"}"#,
        ],
    );
    let after = now_ms();
    let m = read_one(&mut con, "bob", &[]);
    assert_eq!(m.id, id);
    assert_eq!(
        m.names(),
        vec![
            "from",
            "to",
            "ts",
            "priority",
            "type",
            "payload",
            "meta",
            "thread",
            "correlation",
            "reply_to",
            "expires",
            "deliveries"
        ]
    );
    assert_eq!(m.str("from"), "default");
    assert_eq!(m.str("to"), "bob");
    let ts = m.num("ts");
    assert!(ts + 1000 >= before && ts <= after + 1000, "ts {ts} not around [{before}, {after}]");
    assert_eq!(parse_id(&id).0, ts, "the id's milliseconds are the send time");
    assert_eq!(m.str("priority"), "5");
    assert_eq!(m.str("type"), "text/plain");
    assert_eq!(m.str("payload"), "summarise the paper");
    assert_eq!(m.str("meta"), r#"{"k":[1,2],"s":"x"}"#);
    assert_eq!(m.str("thread"), "t1");
    assert_eq!(m.str("correlation"), "c1");
    assert_eq!(m.str("reply_to"), "alice");
    assert_eq!(m.num("expires"), ts + 60_000);
    assert_eq!(m.str("deliveries"), "1");
}

#[test]
fn read_reply_without_options_has_only_the_required_fields() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "hi", &[]);
    let m = read_one(&mut con, "bob", &[]);
    assert_eq!(m.id, id);
    assert_eq!(m.names(), vec!["from", "to", "ts", "priority", "payload", "deliveries"]);
    assert_eq!(m.str("priority"), "0");
    assert_eq!(m.str("payload"), "hi");
    assert_eq!(m.str("deliveries"), "1");
}

#[test]
fn sender_is_the_connections_acl_user() {
    let server = Server::start();
    let mut admin = server.client();
    run(&mut admin, &["ACL", "SETUSER", "alice", "on", ">pw", "~*", "&*", "+@all"]);
    let mut alice = server.client_as("alice", "pw");
    let from_alice = send(&mut alice, "bob", "from alice", &[]);
    let from_default = send(&mut admin, "bob", "from default", &[]);
    let got = read(&mut admin, "bob", &["COUNT", "10"]).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].id.as_str(), got[0].str("from").as_str()), (from_alice.as_str(), "alice"));
    assert_eq!((got[1].id.as_str(), got[1].str("from").as_str()), (from_default.as_str(), "default"));
    // Nobody chooses the sender.
    assert_eq!(
        error_of(&mut alice, &["MAILBOX.SEND", "bob", "x", "FROM", "mallory"]),
        "ERR unknown option 'FROM'"
    );
}

#[test]
fn payload_is_binary_safe() {
    let server = Server::start();
    let mut con = server.client();
    let payload: Vec<u8> = (0..=255u8).chain([0, 0, b'\r', b'\n', 0xff]).collect();
    let id = send_bytes(&mut con, "bin", &payload, &[]);
    let peeked = peek(&mut con, "bin", &[]);
    assert_eq!(peeked[0].bytes("payload"), Some(payload.as_slice()));
    let m = read_one(&mut con, "bin", &[]);
    assert_eq!(m.id, id);
    assert_eq!(m.bytes("payload"), Some(payload.as_slice()));
    // An empty payload is a payload too.
    send(&mut con, "bin", "", &[]);
    assert_eq!(read_one(&mut con, "bin", &[]).bytes("payload"), Some(&b""[..]));
}

#[test]
fn send_options_are_case_insensitive() {
    let server = Server::start();
    let mut con = server.client();
    send(&mut con, "bob", "x", &["priority", "7", "Thread", "t", "ttl", "5000"]);
    let m = read_one(&mut con, "bob", &[]);
    assert_eq!(m.str("priority"), "7");
    assert_eq!(m.str("thread"), "t");
    assert_eq!(m.num("expires"), m.num("ts") + 5000);
}

#[test]
fn send_errors() {
    let server = Server::start();
    let mut con = server.client();
    send(&mut con, "bob", "already here", &[]);
    run(&mut con, &["SET", "str", "v"]);
    let sent = stat(&mut con, "sent");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.SEND"], arity("mailbox.send")),
        (vec!["MAILBOX.SEND", "bob"], arity("mailbox.send")),
        (vec!["MAILBOX.SEND", "", "x"], BAD_NAME.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "PRIORITY", "10"], BAD_PRIORITY.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "PRIORITY", "-1"], BAD_PRIORITY.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "PRIORITY", "high"], BAD_PRIORITY.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "PRIORITY", "1.5"], BAD_PRIORITY.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "BOGUS", "1"], "ERR unknown option 'BOGUS'".into()),
        (vec!["MAILBOX.SEND", "bob", "x", "bogus"], "ERR unknown option 'bogus'".into()),
        (
            vec!["MAILBOX.SEND", "bob", "x", "TTL", "5", "ttl", "6"],
            "ERR option 'TTL' given more than once".into(),
        ),
        (
            vec!["MAILBOX.SEND", "bob", "x", "PRIORITY", "1", "PRIORITY", "1"],
            "ERR option 'PRIORITY' given more than once".into(),
        ),
        (vec!["MAILBOX.SEND", "bob", "x", "TTL"], "ERR option 'TTL' needs a value".into()),
        (vec!["MAILBOX.SEND", "bob", "x", "THREAD", "t", "META"], "ERR option 'META' needs a value".into()),
        (vec!["MAILBOX.SEND", "bob", "x", "TTL", "0"], ms_range("TTL", 1)),
        (vec!["MAILBOX.SEND", "bob", "x", "TTL", "-5"], ms_range("TTL", 1)),
        (vec!["MAILBOX.SEND", "bob", "x", "TTL", "1e3"], ms_range("TTL", 1)),
        (vec!["MAILBOX.SEND", "bob", "x", "TTL", "99999999999999999999999"], ms_range("TTL", 1)),
        (vec!["MAILBOX.SEND", "bob", "x", "TTL", "315360000001"], ms_range("TTL", 1)),
        (vec!["MAILBOX.SEND", "bob", "x", "META", "[1]"], META_NOT_OBJECT.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "META", "\"x\""], META_NOT_OBJECT.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "META", "42"], META_NOT_OBJECT.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "META", "{"], META_NOT_OBJECT.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "META", "{\"a\":1} {}"], META_NOT_OBJECT.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "META", ""], META_NOT_OBJECT.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "REPLYTO", ""], BAD_NAME.into()),
        (vec!["MAILBOX.SEND", "bob", "x", "THREAD", ""], "ERR THREAD must not be empty".into()),
        (vec!["MAILBOX.SEND", "bob", "x", "DEDUP", ""], "ERR DEDUP must not be empty".into()),
        (vec!["MAILBOX.SEND", "str", "x"], WRONGTYPE.into()),
        // A new mailbox is not created by a send that fails.
        (vec!["MAILBOX.SEND", "new", "x", "PRIORITY", "10"], BAD_PRIORITY.into()),
    ];
    expect_errors(&server, &mut con, &cases);
    assert_eq!(run(&mut con, &["EXISTS", "new"]), Value::Int(0));
    assert_eq!(stat(&mut con, "sent"), sent);
    assert_eq!(peek(&mut con, "bob", &[]).len(), 1);
}

#[test]
fn meta_nesting_is_bounded() {
    let server = Server::start();
    let mut con = server.client();
    // 10 levels is fine and comes back byte for byte.
    let ten = format!("{}1{}", r#"{"a":"#.repeat(10), "}".repeat(10));
    send(&mut con, "bob", "x", &["META", &ten]);
    assert_eq!(read_one(&mut con, "bob", &[]).str("meta"), ten);
    let before = server.digest();
    let huge = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    assert_eq!(error_of(&mut con, &["MAILBOX.SEND", "bob", "x", "META", &huge]), META_TOO_DEEP);
    let arrays = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(error_of(&mut con, &["MAILBOX.SEND", "bob", "x", "META", &arrays]), META_TOO_DEEP);
    // Brackets inside strings do not count as nesting.
    let in_string = format!("{{\"a\":\"{}\"}}", "[{".repeat(1000));
    send(&mut con, "bob", "x", &["META", &in_string]);
    assert_ne!(server.digest(), before);
}

#[test]
fn payload_size_limit() {
    let server = Server::start();
    let mut con = server.client();
    config_set(&mut con, "mailbox.max-payload-bytes", "10");
    let got: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("mailbox.max-payload-bytes").query(&mut con).unwrap();
    assert_eq!(got, vec!["mailbox.max-payload-bytes", "10"]);
    send(&mut con, "bob", "0123456789", &[]);
    let before = server.digest();
    assert_eq!(
        error_of(&mut con, &["MAILBOX.SEND", "bob", "0123456789a"]),
        "ERR payload is 11 bytes, over the mailbox.max-payload-bytes limit of 10"
    );
    assert_eq!(server.digest(), before);
    assert_eq!(peek(&mut con, "bob", &[]).len(), 1);
}

#[test]
fn maxlen_refuses_sends() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "small", &["MAXLEN", "1"]);
    send(&mut con, "small", "one", &[]);
    let before = server.digest();
    assert_eq!(error_of(&mut con, &["MAILBOX.SEND", "small", "two"]), MAILBOX_FULL);
    assert_eq!(server.digest(), before);
}

// ---- MAILBOX.READ ----------------------------------------------------------

#[test]
fn read_counts_and_null_replies() {
    let server = Server::start();
    let mut con = server.client();
    // A missing mailbox and an empty one both reply a null array.
    assert_eq!(run(&mut con, &["MAILBOX.READ", "nobody"]), Value::Nil);
    assert_eq!(run(&mut con, &["EXISTS", "nobody"]), Value::Int(0), "a read must not create the mailbox");
    create(&mut con, "empty", &[]);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "empty", "COUNT", "5"]), Value::Nil);

    let ids: Vec<String> = (0..5).map(|i| send(&mut con, "bob", &format!("m{i}"), &[])).collect();
    let one = read(&mut con, "bob", &[]).unwrap();
    assert_eq!(one.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids[..1]);
    let three = read(&mut con, "bob", &["COUNT", "3"]).unwrap();
    assert_eq!(three.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids[1..4]);
    // Fewer ready than COUNT: the ones there are.
    let rest = read(&mut con, "bob", &["count", "100"]).unwrap();
    assert_eq!(rest.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids[4..]);
    // All leased now.
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
}

#[test]
fn read_noack_removes_the_messages() {
    let server = Server::start();
    let mut con = server.client();
    let a = send(&mut con, "bob", "a", &[]);
    let b = send(&mut con, "bob", "b", &[]);
    let got = read(&mut con, "bob", &["NOACK", "COUNT", "1"]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, a);
    assert_eq!(got[0].str("deliveries"), "1");
    let held: Vec<String> = peek(&mut con, "bob", &[]).into_iter().map(|m| m.id).collect();
    assert_eq!(held, vec![b]);
    assert_eq!(ack(&mut con, "bob", &[&a]), 0, "a NOACK message is already settled");
    assert_eq!(info_int(&mut con, "bob", "leased"), 0);
}

#[test]
fn read_errors() {
    let server = Server::start();
    let mut con = server.client();
    send(&mut con, "bob", "x", &[]);
    run(&mut con, &["SET", "str", "v"]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.READ"], arity("mailbox.read")),
        (vec!["MAILBOX.READ", ""], BAD_NAME.into()),
        (vec!["MAILBOX.READ", "bob", "COUNT", "0"], "ERR COUNT must be an integer from 1 to 100000".into()),
        (
            vec!["MAILBOX.READ", "bob", "COUNT", "100001"],
            "ERR COUNT must be an integer from 1 to 100000".into(),
        ),
        (vec!["MAILBOX.READ", "bob", "COUNT", "x"], "ERR COUNT must be an integer from 1 to 100000".into()),
        (vec!["MAILBOX.READ", "bob", "COUNT"], "ERR option 'COUNT' needs a value".into()),
        (vec!["MAILBOX.READ", "bob", "LEASE", "0"], ms_range("LEASE", 1)),
        (vec!["MAILBOX.READ", "bob", "BLOCK", "-5"], ms_range("BLOCK", 0)),
        (vec!["MAILBOX.READ", "bob", "BLOCK", "soon"], ms_range("BLOCK", 0)),
        (vec!["MAILBOX.READ", "bob", "NOACK", "noack"], "ERR option 'NOACK' given more than once".into()),
        (
            vec!["MAILBOX.READ", "bob", "COUNT", "1", "COUNT", "2"],
            "ERR option 'COUNT' given more than once".into(),
        ),
        (vec!["MAILBOX.READ", "bob", "GROUP", "g"], "ERR unknown option 'GROUP'".into()),
        (vec!["MAILBOX.READ", "str"], WRONGTYPE.into()),
        (vec!["MAILBOX.READ", "str", "BLOCK", "100"], WRONGTYPE.into()),
    ];
    expect_errors(&server, &mut con, &cases);
    // Still there, still ready.
    assert_eq!(read_one(&mut con, "bob", &[]).str("deliveries"), "1");
}

// ---- MAILBOX.ACK / MAILBOX.NACK ------------------------------------------

#[test]
fn ack_replies_how_many_were_removed() {
    let server = Server::start();
    let mut con = server.client();
    let a = send(&mut con, "bob", "a", &[]);
    let b = send(&mut con, "bob", "b", &[]);
    let c = send(&mut con, "bob", "c", &[]);
    let got = read(&mut con, "bob", &["COUNT", "2"]).unwrap();
    assert_eq!((got[0].id.as_str(), got[1].id.as_str()), (a.as_str(), b.as_str()));
    // c was never delivered; an unknown id and a repeat count 0.
    assert_eq!(ack(&mut con, "bob", &[&a, &c, "1-0", &a]), 1);
    assert_eq!(ack(&mut con, "bob", &[&a]), 0, "already settled");
    assert_eq!(ack(&mut con, "bob", &[&b]), 1);
    assert_eq!(ack(&mut con, "nobody", &[&b]), 0, "a missing mailbox");
    let held: Vec<String> = peek(&mut con, "bob", &[]).into_iter().map(|m| m.id).collect();
    assert_eq!(held, vec![c]);
}

#[test]
fn ack_errors() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &[]);
    read_one(&mut con, "bob", &[]);
    run(&mut con, &["SET", "str", "v"]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.ACK"], arity("mailbox.ack")),
        (vec!["MAILBOX.ACK", "bob"], arity("mailbox.ack")),
        (vec!["MAILBOX.ACK", "", "1-0"], BAD_NAME.into()),
        (vec!["MAILBOX.ACK", "bob", "nope"], "ERR invalid message id 'nope'".into()),
        // One bad id refuses the whole command, the good one included.
        (vec!["MAILBOX.ACK", "bob", &id, "12"], "ERR invalid message id '12'".into()),
        (vec!["MAILBOX.ACK", "bob", "-1-0"], "ERR invalid message id '-1-0'".into()),
        (vec!["MAILBOX.ACK", "str", "1-0"], WRONGTYPE.into()),
    ];
    expect_errors(&server, &mut con, &cases);
    assert_eq!(ack(&mut con, "bob", &[&id]), 1);
}

#[test]
fn nack_replies_how_many_were_put_back() {
    let server = Server::start();
    let mut con = server.client();
    let a = send(&mut con, "bob", "a", &[]);
    let b = send(&mut con, "bob", "b", &[]);
    let c = send(&mut con, "bob", "c", &[]);
    read(&mut con, "bob", &["COUNT", "2"]).unwrap();
    // c is ready (not leased), 1-0 unknown: neither counts.
    assert_eq!(nack(&mut con, "bob", &[&a, &c, "1-0"]), 1);
    assert_eq!(nack(&mut con, "bob", &[&a]), 0, "no longer leased");
    assert_eq!(nack_delay(&mut con, "bob", &[&b], 60_000), 1);
    assert_eq!(nack_delay(&mut con, "bob", &[&b], 60_000), 0, "delayed, not leased");
    assert_eq!(nack(&mut con, "nobody", &[&a]), 0);
    let states: Vec<(String, String)> =
        peek(&mut con, "bob", &[]).into_iter().map(|m| (m.id.clone(), m.str("state"))).collect();
    assert_eq!(states, vec![(a, "ready".into()), (b, "delayed".into()), (c, "ready".into())]);
}

#[test]
fn nack_errors() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &[]);
    read_one(&mut con, "bob", &[]);
    run(&mut con, &["SET", "str", "v"]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.NACK"], arity("mailbox.nack")),
        (vec!["MAILBOX.NACK", "bob"], arity("mailbox.nack")),
        (vec!["MAILBOX.NACK", "", "1-0"], BAD_NAME.into()),
        (vec!["MAILBOX.NACK", "bob", "DELAY", "50"], SYNTAX.into()),
        (vec!["MAILBOX.NACK", "bob", "nope"], "ERR invalid message id 'nope'".into()),
        (vec!["MAILBOX.NACK", "bob", &id, "DELAY", "-1"], ms_range("DELAY", 0)),
        (vec!["MAILBOX.NACK", "bob", &id, "DELAY", "x"], ms_range("DELAY", 0)),
        (vec!["MAILBOX.NACK", "bob", &id, "DELAY", "315360000001"], ms_range("DELAY", 0)),
        (vec!["MAILBOX.NACK", "str", "1-0"], WRONGTYPE.into()),
    ];
    expect_errors(&server, &mut con, &cases);
    assert_eq!(nack(&mut con, "bob", &[&id]), 1);
}

// ---- MAILBOX.PEEK ----------------------------------------------------------

#[test]
fn peek_lists_held_messages_oldest_first_with_state() {
    let server = Server::start();
    let mut con = server.client();
    assert_eq!(run(&mut con, &["MAILBOX.PEEK", "nobody"]), Value::Array(vec![]));
    let a = send(&mut con, "bob", "a", &["PRIORITY", "1"]);
    let b = send(&mut con, "bob", "b", &["PRIORITY", "9"]);
    let c = send(&mut con, "bob", "c", &[]);
    let d = send(&mut con, "bob", "d", &[]);
    // b (priority 9) then a are read; a is nacked with a delay.
    let got = read(&mut con, "bob", &["COUNT", "2"]).unwrap();
    assert_eq!((got[0].id.as_str(), got[1].id.as_str()), (b.as_str(), a.as_str()));
    assert_eq!(nack_delay(&mut con, "bob", &[&a], 60_000), 1);

    let all = peek(&mut con, "bob", &[]);
    let summary: Vec<(String, String, String)> =
        all.iter().map(|m| (m.id.clone(), m.str("state"), m.str("deliveries"))).collect();
    assert_eq!(
        summary,
        vec![
            (a.clone(), "delayed".into(), "1".into()),
            (b.clone(), "leased".into(), "1".into()),
            (c.clone(), "ready".into(), "0".into()),
            (d.clone(), "ready".into(), "0".into()),
        ]
    );
    assert_eq!(all[0].names(), vec!["from", "to", "ts", "priority", "payload", "deliveries", "state"]);

    let ids = |v: Vec<Msg>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(ids(peek(&mut con, "bob", &["-", "+"])), vec![a.clone(), b.clone(), c.clone(), d.clone()]);
    assert_eq!(ids(peek(&mut con, "bob", &[&b, &c])), vec![b.clone(), c.clone()]);
    assert_eq!(ids(peek(&mut con, "bob", &[&b, "+", "COUNT", "2"])), vec![b.clone(), c.clone()]);
    assert_eq!(ids(peek(&mut con, "bob", &["COUNT", "1"])), vec![a.clone()]);
    assert_eq!(ids(peek(&mut con, "bob", &[&c, &b])), Vec::<String>::new(), "an inverted range");
    // A bare millisecond bound covers that whole millisecond.
    let d_ms = parse_id(&d).0.to_string();
    assert!(ids(peek(&mut con, "bob", &[&d_ms, &d_ms])).contains(&d));

    // Peeking leases nothing and counts no delivery.
    let m = read_one(&mut con, "bob", &[]);
    assert_eq!((m.id.as_str(), m.str("deliveries").as_str()), (c.as_str(), "1"));
}

#[test]
fn peek_errors() {
    let server = Server::start();
    let mut con = server.client();
    send(&mut con, "bob", "x", &[]);
    run(&mut con, &["SET", "str", "v"]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.PEEK"], arity("mailbox.peek")),
        (vec!["MAILBOX.PEEK", ""], BAD_NAME.into()),
        (vec!["MAILBOX.PEEK", "bob", "x", "+"], "ERR invalid message id 'x'".into()),
        (vec!["MAILBOX.PEEK", "bob", "-", "1-x"], "ERR invalid message id '1-x'".into()),
        (vec!["MAILBOX.PEEK", "bob", "COUNT", "0"], "ERR COUNT must be an integer from 1 to 100000".into()),
        (vec!["MAILBOX.PEEK", "bob", "COUNT"], "ERR option 'COUNT' needs a value".into()),
        (vec!["MAILBOX.PEEK", "bob", "-", "+", "LIMIT", "1"], "ERR unknown option 'LIMIT'".into()),
        (vec!["MAILBOX.PEEK", "str"], WRONGTYPE.into()),
    ];
    expect_errors(&server, &mut con, &cases);
}

// ---- MAILBOX.CREATE / MAILBOX.INFO ------------------------------------------

fn settings_of(con: &mut redis::Connection, mailbox: &str) -> Vec<(String, i64)> {
    ["maxlen", "ttl", "lease", "maxdeliver", "dedup-window"]
        .iter()
        .map(|f| (f.to_string(), info_int(con, mailbox, f)))
        .collect()
}

fn expected_settings(values: [i64; 5]) -> Vec<(String, i64)> {
    ["maxlen", "ttl", "lease", "maxdeliver", "dedup-window"]
        .iter()
        .zip(values)
        .map(|(f, v)| (f.to_string(), v))
        .collect()
}

#[test]
fn create_busykey_and_update() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "a", &[]);
    assert_eq!(settings_of(&mut con, "a"), expected_settings([0, 0, 30_000, 5, 3_600_000]));
    create(
        &mut con,
        "b",
        &["MAXLEN", "10", "TTL", "2000", "LEASE", "700", "MAXDELIVER", "3", "DEDUPWINDOW", "900"],
    );
    assert_eq!(settings_of(&mut con, "b"), expected_settings([10, 2000, 700, 3, 900]));
    assert_eq!(run(&mut con, &["TYPE", "b"]), Value::SimpleString("mailboxes".into()));

    let before = server.digest();
    assert_eq!(error_of(&mut con, &["MAILBOX.CREATE", "b"]), MAILBOX_EXISTS);
    assert_eq!(error_of(&mut con, &["MAILBOX.CREATE", "b", "LEASE", "5"]), MAILBOX_EXISTS);
    assert_eq!(server.digest(), before);

    // UPDATE changes only what it names, and keeps the messages.
    let id = send(&mut con, "b", "kept", &[]);
    create(&mut con, "b", &["LEASE", "1234", "UPDATE"]);
    assert_eq!(settings_of(&mut con, "b"), expected_settings([10, 2000, 1234, 3, 900]));
    create(&mut con, "b", &["update", "MAXLEN", "0", "MAXDELIVER", "0"]);
    assert_eq!(settings_of(&mut con, "b"), expected_settings([0, 2000, 1234, 0, 900]));
    assert_eq!(peek(&mut con, "b", &[]).into_iter().map(|m| m.id).collect::<Vec<_>>(), vec![id]);
}

#[test]
fn create_takes_the_module_defaults() {
    let server = Server::start();
    let mut con = server.client();
    config_set(&mut con, "mailbox.default-lease-ms", "1500");
    config_set(&mut con, "mailbox.default-max-deliveries", "7");
    config_set(&mut con, "mailbox.default-maxlen", "40");
    config_set(&mut con, "mailbox.default-ttl-ms", "90000");
    config_set(&mut con, "mailbox.dedup-window-ms", "0");
    create(&mut con, "made", &["LEASE", "300"]);
    assert_eq!(settings_of(&mut con, "made"), expected_settings([40, 90_000, 300, 7, 0]));
    // A send creates its mailbox with the defaults too.
    send(&mut con, "sent-to", "x", &[]);
    assert_eq!(settings_of(&mut con, "sent-to"), expected_settings([40, 90_000, 1500, 7, 0]));
    // Configs changed later do not touch existing mailboxes.
    config_set(&mut con, "mailbox.default-lease-ms", "2500");
    assert_eq!(info_int(&mut con, "sent-to", "lease"), 1500);
    let all: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("mailbox.*").query(&mut con).unwrap();
    for (name, value) in [
        ("mailbox.default-lease-ms", "2500"),
        ("mailbox.default-max-deliveries", "7"),
        ("mailbox.default-maxlen", "40"),
        ("mailbox.default-ttl-ms", "90000"),
        ("mailbox.dedup-window-ms", "0"),
        ("mailbox.max-payload-bytes", "1048576"),
        ("mailbox.sweep-interval-ms", "100"),
    ] {
        let at = all.iter().position(|n| n == name).unwrap_or_else(|| panic!("{name} not in {all:?}"));
        assert_eq!(all[at + 1], value, "{name}");
    }
}

#[test]
fn module_args_set_configs_at_load() {
    let server = Server::start_with(ServerOptions {
        module_args: vec![
            "default-lease-ms".into(),
            "4321".into(),
            "default-max-deliveries".into(),
            "2".into(),
        ],
        ..Default::default()
    });
    let mut con = server.client();
    create(&mut con, "m", &[]);
    assert_eq!(info_int(&mut con, "m", "lease"), 4321);
    assert_eq!(info_int(&mut con, "m", "maxdeliver"), 2);
}

#[test]
fn create_errors() {
    let server = Server::start();
    let mut con = server.client();
    run(&mut con, &["SET", "str", "v"]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.CREATE"], arity("mailbox.create")),
        (vec!["MAILBOX.CREATE", ""], BAD_NAME.into()),
        (vec!["MAILBOX.CREATE", "m", "LEASE", "0"], ms_range("LEASE", 1)),
        (vec!["MAILBOX.CREATE", "m", "TTL", "-1"], ms_range("TTL", 0)),
        (vec!["MAILBOX.CREATE", "m", "DEDUPWINDOW", "x"], ms_range("DEDUPWINDOW", 0)),
        (
            vec!["MAILBOX.CREATE", "m", "MAXDELIVER", "-1"],
            "ERR MAXDELIVER must be an integer from 0 to 4294967295".into(),
        ),
        (
            vec!["MAILBOX.CREATE", "m", "MAXDELIVER", "4294967296"],
            "ERR MAXDELIVER must be an integer from 0 to 4294967295".into(),
        ),
        (
            vec!["MAILBOX.CREATE", "m", "MAXLEN", "-1"],
            "ERR MAXLEN must be an integer from 0 to 9223372036854775807".into(),
        ),
        (vec!["MAILBOX.CREATE", "m", "MAXLEN"], "ERR option 'MAXLEN' needs a value".into()),
        (vec!["MAILBOX.CREATE", "m", "UPDATE", "UPDATE"], "ERR option 'UPDATE' given more than once".into()),
        (vec!["MAILBOX.CREATE", "m", "PRIORITY", "1"], "ERR unknown option 'PRIORITY'".into()),
        (vec!["MAILBOX.CREATE", "str"], WRONGTYPE.into()),
        (vec!["MAILBOX.CREATE", "str", "UPDATE"], WRONGTYPE.into()),
    ];
    expect_errors(&server, &mut con, &cases);
    assert_eq!(run(&mut con, &["EXISTS", "m"]), Value::Int(0));
}

#[test]
fn info_reports_settings_and_counts() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "ib", &["MAXLEN", "10", "LEASE", "60000", "MAXDELIVER", "0", "DEDUPWINDOW", "60000"]);
    let empty = info(&mut con, "ib");
    // The README's fields, in its order, first (later features may append more).
    let names: Vec<&str> = empty.iter().take(13).map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "maxlen",
            "ttl",
            "lease",
            "maxdeliver",
            "dedup-window",
            "ready",
            "leased",
            "delayed",
            "dead",
            "dedup-keys",
            "last-id",
            "oldest-age",
            "bytes"
        ]
    );
    assert_eq!(empty[10].1, Value::BulkString(b"0-0".to_vec()), "last-id of an empty mailbox");
    assert_eq!(empty[11].1, Value::Nil, "oldest-age of an empty mailbox");
    assert_eq!(empty[12].1, Value::Int(0));

    // One message in each state, each from "default" (7 bytes) to "ib" (2) with a 5-byte payload.
    let m1 = send(&mut con, "ib", "hello", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut con, "ib", &[]).id, m1); // leased
    let m2 = send(&mut con, "ib", "hello", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut con, "ib", &[]).id, m2);
    assert_eq!(nack_delay(&mut con, "ib", &[&m2], 60_000), 1); // delayed
    let m3 = send(&mut con, "ib", "hello", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut con, "ib", &[]).id, m3);
    create(&mut con, "ib", &["UPDATE", "MAXDELIVER", "1"]);
    assert_eq!(nack(&mut con, "ib", &[&m3]), 1); // dead
    send(&mut con, "ib", "hello", &["DEDUP", "k"]);
    let m5 = send(&mut con, "ib", "hello", &[]);

    let all = info(&mut con, "ib");
    let expected: Vec<(&str, Value)> = vec![
        ("maxlen", Value::Int(10)),
        ("ttl", Value::Int(0)),
        ("lease", Value::Int(60_000)),
        ("maxdeliver", Value::Int(1)),
        ("dedup-window", Value::Int(60_000)),
        ("ready", Value::Int(2)),
        ("leased", Value::Int(1)),
        ("delayed", Value::Int(1)),
        ("dead", Value::Int(1)),
        ("dedup-keys", Value::Int(1)),
        ("last-id", Value::BulkString(m5.clone().into_bytes())),
    ];
    for (i, (name, value)) in expected.iter().enumerate() {
        assert_eq!((all[i].0.as_str(), &all[i].1), (*name, value), "INFO field {i}");
    }
    match &all[11].1 {
        Value::Int(age) => assert!((0..60_000).contains(age), "oldest-age {age}"),
        other => panic!("oldest-age should be an integer, got {other:?}"),
    }
    assert_eq!(all[12].1, Value::Int(5 * 14), "bytes: 5 messages of 14 content bytes");
    // Acking the last one does not lower last-id.
    read(&mut con, "ib", &["COUNT", "2"]).unwrap();
    assert_eq!(ack(&mut con, "ib", &[&m5]), 1);
    assert_eq!(info(&mut con, "ib")[10].1, Value::BulkString(m5.into_bytes()));
}

#[test]
fn info_errors() {
    let server = Server::start();
    let mut con = server.client();
    run(&mut con, &["SET", "str", "v"]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.INFO"], arity("mailbox.info")),
        (vec!["MAILBOX.INFO", "a", "b"], "ERR unknown option 'b'".into()),
        (vec!["MAILBOX.INFO", "a", "AS"], "ERR option 'AS' needs a value".into()),
        (vec!["MAILBOX.INFO", ""], BAD_NAME.into()),
        (vec!["MAILBOX.INFO", "nobody"], NO_SUCH_MAILBOX.into()),
        (vec!["MAILBOX.INFO", "str"], WRONGTYPE.into()),
    ];
    expect_errors(&server, &mut con, &cases);
}

// ---- MAILBOX.DEAD ----------------------------------------------------------

#[test]
fn dead_list_requeue_and_purge_replies() {
    let server = Server::start();
    let mut con = server.client();
    assert_eq!(run(&mut con, &["MAILBOX.DEAD", "LIST", "nobody"]), Value::Array(vec![]));
    assert_eq!(dead(&mut con, "nobody", "REQUEUE", &["ALL"]), 0);
    assert_eq!(dead(&mut con, "nobody", "PURGE", &["ALL"]), 0);

    create(&mut con, "d", &["MAXDELIVER", "1"]);
    let ids: Vec<String> = (0..3).map(|i| send(&mut con, "d", &format!("m{i}"), &["THREAD", "t"])).collect();
    read(&mut con, "d", &["COUNT", "3"]).unwrap();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(nack(&mut con, "d", &refs), 3);

    let listed = dead_list(&mut con, "d", &[]);
    assert_eq!(listed.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), ids);
    let first = &listed[0];
    assert_eq!(
        first.names(),
        vec!["from", "to", "ts", "priority", "payload", "thread", "deliveries", "reason", "dead_at"]
    );
    assert_eq!(first.str("reason"), "maxdeliveries");
    assert_eq!(first.str("deliveries"), "1");
    assert_eq!(first.str("payload"), "m0");
    let dead_at = first.num("dead_at");
    assert!(dead_at >= first.num("ts") && dead_at.abs_diff(now_ms()) < 60_000, "dead_at {dead_at}");
    let only = |v: Vec<Msg>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
    assert_eq!(only(dead_list(&mut con, "d", &["COUNT", "2"])), ids[..2]);
    assert_eq!(only(dead_list(&mut con, "d", &[&ids[1], "+"])), ids[1..]);
    assert_eq!(only(dead_list(&mut con, "d", &[&ids[1], &ids[1]])), ids[1..2]);

    // REQUEUE and PURGE count only dead letters they found.
    assert_eq!(dead(&mut con, "d", "REQUEUE", &[&ids[0], "1-0", &ids[0]]), 1);
    assert_eq!(dead(&mut con, "d", "REQUEUE", &[&ids[0]]), 0, "no longer dead");
    assert_eq!(dead(&mut con, "d", "PURGE", &[&ids[0]]), 0, "held, not dead: purge leaves it");
    assert_eq!(dead(&mut con, "d", "PURGE", &[&ids[1]]), 1);
    assert_eq!(dead(&mut con, "d", "purge", &["all"]), 1);
    assert_eq!(dead(&mut con, "d", "PURGE", &["ALL"]), 0);
    assert_eq!(info_int(&mut con, "d", "dead"), 0);
    let held = peek(&mut con, "d", &[]);
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].id.as_str(), held[0].str("deliveries").as_str()), (ids[0].as_str(), "0"));
}

#[test]
fn dead_errors() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "d", &[]);
    run(&mut con, &["SET", "str", "v"]);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MAILBOX.DEAD"], arity("mailbox.dead")),
        (vec!["MAILBOX.DEAD", "LIST"], arity("mailbox.dead|list")),
        (vec!["MAILBOX.DEAD", "d"], "ERR unknown subcommand 'd'. Try MAILBOX.DEAD HELP.".into()),
        (vec!["MAILBOX.DEAD", "LIST", ""], BAD_NAME.into()),
        (
            vec!["MAILBOX.DEAD", "EXPLODE", "d"],
            "ERR unknown subcommand 'EXPLODE'. Try MAILBOX.DEAD HELP.".into(),
        ),
        (vec!["MAILBOX.DEAD", "REQUEUE", "d"], arity("mailbox.dead|requeue")),
        (vec!["MAILBOX.DEAD", "PURGE", "d"], arity("mailbox.dead|purge")),
        (vec!["MAILBOX.DEAD", "REQUEUE", "d", "nope"], "ERR invalid message id 'nope'".into()),
        (vec!["MAILBOX.DEAD", "PURGE", "d", "1-0", "ALL"], "ERR invalid message id 'ALL'".into()),
        (vec!["MAILBOX.DEAD", "LIST", "d", "x", "+"], "ERR invalid message id 'x'".into()),
        (
            vec!["MAILBOX.DEAD", "LIST", "d", "COUNT", "0"],
            "ERR COUNT must be an integer from 1 to 100000".into(),
        ),
        (vec!["MAILBOX.DEAD", "LIST", "str"], WRONGTYPE.into()),
        (vec!["MAILBOX.DEAD", "PURGE", "str", "ALL"], WRONGTYPE.into()),
    ];
    expect_errors(&server, &mut con, &cases);
}

// ---- MAILBOX.STATS ---------------------------------------------------------

const STAT_NAMES: [&str; 16] = [
    "sent",
    "dedup_hits",
    "delivered",
    "acked",
    "nacked",
    "redelivered",
    "lease_expired",
    "expired",
    "dead_lettered",
    "dead_requeued",
    "dead_purged",
    "denied",
    "blocked_readers",
    "mailboxes",
    "messages",
    "bytes",
];

/// Checks every figure of `MAILBOX.STATS` and of `INFO mailbox` against `expected`.
fn assert_stats(server: &Server, con: &mut redis::Connection, expected: &[(&str, i64)], step: &str) {
    // The figures the README lists, in its order (later features may add more).
    let got: Vec<(String, i64)> =
        stats(con).into_iter().filter(|(n, _)| expected.iter().any(|(e, _)| e == n)).collect();
    let want: Vec<(String, i64)> = expected.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert_eq!(got, want, "MAILBOX.STATS after {step}");
    for (name, value) in expected {
        assert_eq!(
            server.info_field("mailbox", &format!("mailbox_{name}")),
            Some(value.to_string()),
            "INFO mailbox mailbox_{name} after {step}"
        );
    }
}

#[test]
fn stats_count_every_kind_of_event() {
    let server = Server::start();
    let mut con = server.client();
    let mut want: Vec<(&str, i64)> = STAT_NAMES.iter().map(|n| (*n, 0)).collect();
    let set = |want: &mut Vec<(&str, i64)>, changes: &[(&str, i64)]| {
        for (name, value) in changes {
            want.iter_mut().find(|(n, _)| n == name).unwrap().1 = *value;
        }
    };
    assert_stats(&server, &mut con, &want, "start");

    // Each message: "default" (7) + "s" (1) + "p" (1) = 9 content bytes.
    for _ in 0..3 {
        send(&mut con, "s", "p", &[]);
    }
    set(&mut want, &[("sent", 3), ("mailboxes", 1), ("messages", 3), ("bytes", 27)]);
    assert_stats(&server, &mut con, &want, "3 sends");

    let first = send(&mut con, "s", "p", &["DEDUP", "k"]);
    assert_eq!(send(&mut con, "s", "p", &["DEDUP", "k"]), first);
    set(&mut want, &[("sent", 4), ("dedup_hits", 1), ("messages", 4), ("bytes", 36)]);
    assert_stats(&server, &mut con, &want, "a dedup hit");

    let got = read(&mut con, "s", &["COUNT", "2"]).unwrap();
    set(&mut want, &[("delivered", 2)]);
    assert_stats(&server, &mut con, &want, "a read of 2");

    assert_eq!(ack(&mut con, "s", &[&got[0].id]), 1);
    set(&mut want, &[("acked", 1), ("messages", 3), ("bytes", 27)]);
    assert_stats(&server, &mut con, &want, "an ack");

    assert_eq!(nack(&mut con, "s", &[&got[1].id]), 1);
    set(&mut want, &[("nacked", 1)]);
    assert_stats(&server, &mut con, &want, "a nack");

    let again = read_one(&mut con, "s", &[]);
    assert_eq!((again.id.as_str(), again.deliveries()), (got[1].id.as_str(), 2));
    set(&mut want, &[("delivered", 3), ("redelivered", 1)]);
    assert_stats(&server, &mut con, &want, "a redelivery");

    // A second mailbox, "dd" (2 bytes): 10 content bytes a message.
    create(&mut con, "dd", &["MAXDELIVER", "1"]);
    let id = send(&mut con, "dd", "p", &[]);
    read_one(&mut con, "dd", &[]);
    assert_eq!(nack(&mut con, "dd", &[&id]), 1);
    set(
        &mut want,
        &[
            ("sent", 5),
            ("delivered", 4),
            ("nacked", 2),
            ("dead_lettered", 1),
            ("mailboxes", 2),
            ("messages", 4),
            ("bytes", 37),
        ],
    );
    assert_stats(&server, &mut con, &want, "a dead letter");

    assert_eq!(dead(&mut con, "dd", "REQUEUE", &["ALL"]), 1);
    set(&mut want, &[("dead_requeued", 1)]);
    assert_stats(&server, &mut con, &want, "a dead requeue");

    let m = read_one(&mut con, "dd", &["NOACK"]);
    assert_eq!(m.deliveries(), 1, "a requeued dead letter starts again at 0 deliveries");
    set(&mut want, &[("delivered", 5), ("messages", 3), ("bytes", 27)]);
    assert_stats(&server, &mut con, &want, "a NOACK read");

    let id = send(&mut con, "dd", "p", &[]);
    read_one(&mut con, "dd", &[]);
    assert_eq!(nack(&mut con, "dd", &[&id]), 1);
    assert_eq!(dead(&mut con, "dd", "PURGE", &["ALL"]), 1);
    set(&mut want, &[("sent", 6), ("delivered", 6), ("nacked", 3), ("dead_lettered", 2), ("dead_purged", 1)]);
    assert_stats(&server, &mut con, &want, "a dead purge");

    run(&mut con, &["DEL", "s"]);
    set(&mut want, &[("mailboxes", 1), ("messages", 0), ("bytes", 0)]);
    assert_stats(&server, &mut con, &want, "DEL of a mailbox");

    assert_eq!(error_of(&mut con, &["MAILBOX.STATS", "x"]), arity("mailbox.stats"));
}

// ---- MAILBOX.EFFECT and the command table -----------------------------------

#[test]
fn effect_is_refused_from_clients() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &[]);
    let before = server.digest();
    // Well-formed effects (remove a message, kill it, create a mailbox) and a malformed one.
    for args in [
        vec!["MAILBOX.EFFECT", "bob", "REMOVE", id.as_str()],
        vec!["MAILBOX.EFFECT", "bob", "KILL", "1", "1", id.as_str()],
        vec!["MAILBOX.EFFECT", "bob", "FORGETDEDUP", "99999999999999"],
        vec!["MAILBOX.EFFECT", "new", "NOPE"],
    ] {
        assert_eq!(error_of(&mut con, &args), EFFECT_FORBIDDEN, "{args:?}");
    }
    assert_eq!(error_of(&mut con, &["MAILBOX.EFFECT", "bob"]), arity("mailbox.effect"));
    // Not inside MULTI either.
    let result: redis::RedisResult<Value> =
        redis::pipe().atomic().cmd("MAILBOX.EFFECT").arg("bob").arg("REMOVE").arg(&id).query(&mut con);
    match result {
        Err(e) => assert_eq!(err_text(&e), EFFECT_FORBIDDEN),
        Ok(v) => panic!("MAILBOX.EFFECT in MULTI replied {v:?}"),
    }
    // Nor from a script.
    let script = redis::cmd("EVAL")
        .arg("return redis.call('MAILBOX.EFFECT', KEYS[1], 'REMOVE', ARGV[1])")
        .arg(1)
        .arg("bob")
        .arg(&id)
        .query::<Value>(&mut con);
    let e = script.expect_err("MAILBOX.EFFECT from a script should fail");
    assert!(err_text(&e).contains("MAILBOX.EFFECT is only accepted"), "{}", err_text(&e));
    assert_eq!(server.digest(), before);
    assert_eq!(run(&mut con, &["EXISTS", "new"]), Value::Int(0));
    assert_eq!(read_one(&mut con, "bob", &[]).id, id);
}

#[test]
fn commands_are_registered_with_the_right_flags() {
    let server = Server::start();
    let mut con = server.client();
    let names: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("mailbox")
        .query(&mut con)
        .unwrap();
    // Read-only commands run on replicas; sends and creates are refused under OOM.
    for (name, flags) in [
        ("mailbox.send", &["write", "denyoom"][..]),
        ("mailbox.create", &["write", "denyoom"]),
        ("mailbox.read", &["write"]),
        ("mailbox.ack", &["write"]),
        ("mailbox.nack", &["write"]),
        // DEAD and ACL read on replicas (LIST, CHECK) and refuse to write there themselves.
        ("mailbox.dead", &["module"]),
        ("mailbox.acl", &["module"]),
        ("mailbox.effect", &["write"]),
        ("mailbox.peek", &["readonly"]),
        ("mailbox.info", &["readonly"]),
        ("mailbox.stats", &["readonly"]),
    ] {
        assert!(names.iter().any(|n| n == name), "{name} is not registered: {names:?}");
        let info = run(&mut con, &["COMMAND", "INFO", name]);
        let Value::Array(entries) = info else { panic!("COMMAND INFO {name}: {info:?}") };
        let Some(Value::Array(entry)) = entries.first() else { panic!("COMMAND INFO {name}: {entries:?}") };
        let Value::Array(got) = &entry[2] else { panic!("COMMAND INFO {name} flags: {:?}", entry[2]) };
        let got: Vec<String> = got.iter().map(text).collect();
        for flag in flags {
            assert!(got.iter().any(|g| g == flag), "{name} lacks the {flag} flag: {got:?}");
        }
        if flags == ["readonly"] {
            assert!(!got.iter().any(|g| g == "write"), "{name} is flagged write: {got:?}");
        }
    }
}

#[test]
fn names_must_be_non_empty_utf8() {
    let server = Server::start();
    let mut con = server.client();
    let before = server.digest();
    let bad: &[u8] = b"\xc3\x28";
    for (command, rest) in [
        ("MAILBOX.SEND", vec!["x"]),
        ("MAILBOX.READ", vec![]),
        ("MAILBOX.ACK", vec!["1-0"]),
        ("MAILBOX.NACK", vec!["1-0"]),
        ("MAILBOX.PEEK", vec![]),
        ("MAILBOX.CREATE", vec![]),
        ("MAILBOX.INFO", vec![]),
        ("MAILBOX.DEAD LIST", vec![]),
    ] {
        // A subcommand's words come before the name.
        let mut words = command.split(' ');
        let mut c = redis::cmd(words.next().unwrap());
        c.arg(words.collect::<Vec<_>>());
        c.arg(bad);
        for r in &rest {
            c.arg(*r);
        }
        assert_eq!(error_of_cmd(&mut con, &c), BAD_NAME, "{command} with invalid UTF-8");
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("");
        args.extend(rest.iter());
        assert_eq!(error_of(&mut con, &args), BAD_NAME, "{command} with an empty name");
    }
    // REPLYTO is a mailbox name too.
    let mut c = redis::cmd("MAILBOX.SEND");
    c.arg("bob").arg("x").arg("REPLYTO").arg(bad);
    assert_eq!(error_of_cmd(&mut con, &c), BAD_NAME);
    assert_eq!(server.digest(), before);
    // A hash tag is just part of the name.
    send(&mut con, "{team1}alice", "x", &["REPLYTO", "{team1}bob"]);
    let m = read_one(&mut con, "{team1}alice", &[]);
    assert_eq!((m.str("to").as_str(), m.str("reply_to").as_str()), ("{team1}alice", "{team1}bob"));
}

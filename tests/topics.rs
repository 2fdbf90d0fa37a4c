//! Topics, broadcast, replies, threads, presence and push: `MAILBOX.SUB`/`UNSUB`/`SUBS`,
//! `MAILBOX.PUBLISH` with `*` and `#` patterns, `MAILBOX.BROADCAST` over a namespace,
//! `MAILBOX.REPLY` and `MAILBOX.THREAD` between two ACL agents, `MAILBOX.PRESENCE`, the JSON
//! pushed on `mailbox:<name>` (sharded pub/sub), the memory a shared payload costs, and the
//! same state after `DEBUG RELOAD`, an AOF restart and on a replica.

mod common;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

/// Leases long enough that nothing expires while a test runs.
const LONG_LEASE: &str = "600000";

// ---- helpers ------------------------------------------------------------------

/// `[id, receivers]` of `MAILBOX.PUBLISH` / `MAILBOX.BROADCAST`.
fn id_and_count(value: &Value, what: &str) -> (String, i64) {
    let Value::Array(parts) = value else {
        panic!("{what}: expected [id, receivers], got {value:?}");
    };
    assert_eq!(parts.len(), 2, "{what}: expected [id, receivers], got {value:?}");
    let id = text(&parts[0]);
    parse_id(&id);
    let Value::Int(n) = parts[1] else {
        panic!("{what}: receivers is not an integer: {value:?}");
    };
    (id, n)
}

fn publish(con: &mut Connection, topic: &str, payload: &str, opts: &[&str]) -> (String, i64) {
    let mut args = vec!["MAILBOX.PUBLISH", topic, payload];
    args.extend_from_slice(opts);
    id_and_count(&run(con, &args), &format!("PUBLISH {topic}"))
}

fn publish_bytes(con: &mut Connection, topic: &str, payload: &[u8]) -> (String, i64) {
    let value: Value = redis::cmd("MAILBOX.PUBLISH")
        .arg(topic)
        .arg(payload)
        .query(con)
        .unwrap_or_else(|e| panic!("PUBLISH {topic} failed: {}", err_text(&e)));
    id_and_count(&value, &format!("PUBLISH {topic}"))
}

fn broadcast(con: &mut Connection, space: &str, payload: &str, opts: &[&str]) -> (String, i64) {
    let mut args = vec!["MAILBOX.BROADCAST", space, payload];
    args.extend_from_slice(opts);
    id_and_count(&run(con, &args), &format!("BROADCAST {space}"))
}

fn int_reply(value: Value, what: &str) -> i64 {
    match value {
        Value::Int(n) => n,
        other => panic!("{what}: expected an integer, got {other:?}"),
    }
}

fn sub(con: &mut Connection, mailbox: &str, patterns: &[&str]) -> i64 {
    let mut args = vec!["MAILBOX.SUB", mailbox];
    args.extend_from_slice(patterns);
    int_reply(run(con, &args), &format!("SUB {mailbox} {patterns:?}"))
}

fn unsub(con: &mut Connection, mailbox: &str, patterns: &[&str]) -> i64 {
    let mut args = vec!["MAILBOX.UNSUB", mailbox];
    args.extend_from_slice(patterns);
    int_reply(run(con, &args), &format!("UNSUB {mailbox} {patterns:?}"))
}

/// `MAILBOX.SUBS`, sorted (the README does not promise an order).
fn subs(con: &mut Connection, mailbox: &str) -> Vec<String> {
    let Value::Array(items) = run(con, &["MAILBOX.SUBS", mailbox]) else {
        panic!("SUBS {mailbox} is not an array");
    };
    // Each subscription is `[pattern, filter field, value, ...]`; these tests use no filters.
    let mut out: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::Array(row) if row.len() == 1 => text(&row[0]),
            other => panic!("SUBS row {other:?} is not [pattern]"),
        })
        .collect();
    out.sort();
    out
}

fn peek_ids(con: &mut Connection, mailbox: &str) -> Vec<String> {
    peek(con, mailbox, &[]).into_iter().map(|m| m.id).collect()
}

/// The payloads a mailbox holds, oldest first. Ids are per mailbox (two mailboxes may hold
/// different messages with the same id), so "did this mailbox get it" is asked by payload.
fn peek_payloads(con: &mut Connection, mailbox: &str) -> Vec<String> {
    peek(con, mailbox, &[]).iter().map(Msg::payload).collect()
}

fn exists(con: &mut Connection, key: &str) -> bool {
    int_reply(run(con, &["EXISTS", key]), "EXISTS") == 1
}

fn acl_agent(con: &mut Connection, name: &str) {
    let reply = run(con, &["ACL", "SETUSER", name, "on", ">pw", "~*", "&*", "+@all"]);
    assert_eq!(reply, Value::Okay);
}

fn redis_time_ms(con: &mut Connection) -> u64 {
    let parts: Vec<u64> = redis::cmd("TIME").query(con).expect("TIME");
    parts[0] * 1000 + parts[1] / 1000
}

fn wall_clock_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock before 1970").as_millis() as u64
}

fn used_memory(server: &Server) -> i64 {
    let v = server.info_field("memory", "used_memory").expect("INFO memory has used_memory");
    v.parse().unwrap_or_else(|_| panic!("used_memory is not a number: {v}"))
}

/// One row of `MAILBOX.PRESENCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Presence {
    agent: String,
    last_seen: i64,
    idle: i64,
    waiting: i64,
}

fn presence(con: &mut Connection, space: &str) -> Vec<Presence> {
    let Value::Array(rows) = run(con, &["MAILBOX.PRESENCE", space]) else {
        panic!("PRESENCE {space} is not an array");
    };
    rows.iter()
        .map(|row| {
            let Value::Array(items) = row else { panic!("a presence row is an array: {row:?}") };
            assert_eq!(items.len(), 7, "[agent, last-seen, ms, idle, ms, waiting, n]: {row:?}");
            assert_eq!(text(&items[1]), "last-seen", "{row:?}");
            assert_eq!(text(&items[3]), "idle", "{row:?}");
            assert_eq!(text(&items[5]), "waiting", "{row:?}");
            let num = |v: &Value| match v {
                Value::Int(n) => *n,
                other => panic!("presence value is not an integer: {other:?} in {row:?}"),
            };
            Presence {
                agent: text(&items[0]),
                last_seen: num(&items[2]),
                idle: num(&items[4]),
                waiting: num(&items[6]),
            }
        })
        .collect()
}

/// What must be identical after a reload, a restart or on a replica: the subscriptions, every
/// held and dead message (with state and deliveries), and the presence (without the idle time,
/// which moves with the clock). `dead`: include `MAILBOX.DEAD LIST` (read-only: it runs on a
/// replica too).
fn snapshot(server: &Server, mailboxes: &[&str], spaces: &[&str], dead: bool) -> Vec<String> {
    let mut con = server.client();
    let mut out = Vec::new();
    for mb in mailboxes {
        out.push(format!("{mb} SUBS {:?}", subs(&mut con, mb)));
        out.push(format!("{mb} PEEK {:?}", run(&mut con, &["MAILBOX.PEEK", mb])));
        if dead && exists(&mut con, mb) {
            out.push(format!("{mb} DEAD {:?}", run(&mut con, &["MAILBOX.DEAD", "LIST", mb])));
        }
    }
    for space in spaces {
        let rows: Vec<(String, i64, i64)> =
            presence(&mut con, space).into_iter().map(|p| (p.agent, p.last_seen, p.waiting)).collect();
        out.push(format!("{space} PRESENCE {rows:?}"));
    }
    out
}

// ---- 1. patterns ------------------------------------------------------------------

#[test]
fn publish_routes_by_star_and_hash_patterns() {
    let server = Server::start();
    let mut con = server.client();

    let table: &[(&str, &[&str])] = &[
        ("{t}rs", &["research.*"]),
        ("{t}spn", &["*.papers.nlp"]),
        ("{t}rh", &["research.#"]),
        ("{t}hn", &["#.nlp"]),
        ("{t}rhn", &["research.#.nlp"]),
        ("{t}all", &["#"]),
        ("{t}one", &["*"]),
        // A pattern may carry the mailbox's own tag.
        ("{t}xsz", &["{t}x.*.z"]),
        // Two patterns matching the same topic: the mailbox still gets the message once.
        ("{t}dup", &["research.#", "#.nlp"]),
    ];
    for (mb, patterns) in table {
        assert_eq!(sub(&mut con, mb, patterns), patterns.len() as i64, "SUB {mb} {patterns:?}");
    }

    // Expected receivers worked out by hand from the pattern semantics.
    let cases: &[(&str, &[&str])] = &[
        ("research.papers.nlp", &["{t}spn", "{t}rh", "{t}hn", "{t}rhn", "{t}all", "{t}dup"]),
        ("research", &["{t}rh", "{t}all", "{t}one", "{t}dup"]),
        ("research.nlp", &["{t}rs", "{t}rh", "{t}hn", "{t}rhn", "{t}all", "{t}dup"]),
        ("nlp", &["{t}hn", "{t}all", "{t}one", "{t}dup"]),
        ("research.a.b.nlp", &["{t}rh", "{t}hn", "{t}rhn", "{t}all", "{t}dup"]),
        ("sports.papers.nlp", &["{t}spn", "{t}hn", "{t}all", "{t}dup"]),
        ("papers.nlp", &["{t}hn", "{t}all", "{t}dup"]),
        ("researcher.nlp", &["{t}hn", "{t}all", "{t}dup"]),
        ("research.nlp.x", &["{t}rh", "{t}all", "{t}dup"]),
        ("x.y.z", &["{t}xsz", "{t}all"]),
        ("x.z", &["{t}all"]),
        ("x.y.y.z", &["{t}all"]),
    ];
    let mut expected: BTreeMap<&str, Vec<String>> = table.iter().map(|(mb, _)| (*mb, Vec::new())).collect();
    for (path, receivers) in cases {
        let topic = format!("{{t}}{path}");
        let (id, n) = publish(&mut con, &topic, &format!("on {path}"), &[]);
        assert_eq!(n, receivers.len() as i64, "PUBLISH {topic}: receivers");
        for mb in *receivers {
            expected.get_mut(mb).unwrap().push(id.clone());
        }
        for (mb, ids) in &expected {
            assert_eq!(&peek_ids(&mut con, mb), ids, "{mb} after PUBLISH {topic} (receivers {receivers:?})");
        }
        for mb in *receivers {
            let last = peek(&mut con, mb, &[]).pop().unwrap();
            assert_eq!(last.str("to"), topic, "{mb}");
            assert_eq!(last.payload(), format!("on {path}"), "{mb}");
        }
    }

    // Nobody subscribes: not an error, 0 receivers, nothing lands anywhere.
    let before: Vec<Vec<String>> = table.iter().map(|(mb, _)| peek_ids(&mut con, mb)).collect();
    assert_eq!(publish(&mut con, "{v}research.papers.nlp", "x", &[]).1, 0);
    assert_eq!(publish(&mut con, "research.papers.nlp", "x", &[]).1, 0, "default namespace");
    assert_eq!(publish(&mut con, "{u}nlp", "x", &[]).1, 0);
    let after: Vec<Vec<String>> = table.iter().map(|(mb, _)| peek_ids(&mut con, mb)).collect();
    assert_eq!(before, after, "a publish in another namespace delivered into {{t}}");

    // Unsubscribing stops delivery.
    assert_eq!(unsub(&mut con, "{t}all", &["#"]), 1);
    assert_eq!(unsub(&mut con, "{t}one", &["*"]), 1);
    assert_eq!(publish(&mut con, "{t}zzz", "x", &[]).1, 0, "only # and * matched {{t}}zzz");
    assert_eq!(publish(&mut con, "{t}zzz.q", "x", &[]).1, 0);
    let (id, n) = publish(&mut con, "{t}nlp", "after unsub", &[]);
    assert_eq!(n, 2, "{{t}}nlp after UNSUB of # and *: {{t}}hn and {{t}}dup");
    assert_eq!(peek_ids(&mut con, "{t}hn").last(), Some(&id));
    assert_eq!(peek_ids(&mut con, "{t}dup").last(), Some(&id));
    for mb in ["{t}all", "{t}one"] {
        assert!(!peek_payloads(&mut con, mb).contains(&"after unsub".to_string()), "{mb} after UNSUB");
    }

    // A topic of exactly 64 segments is fine.
    let long = vec!["a"; 64].join(".");
    assert_eq!(publish(&mut con, &format!("{{v}}{long}"), "x", &[]).1, 0);
}

/// Runs `PING` in a transaction after `WATCH key` and `between`: whether `EXEC` ran it.
fn watch_survives(con: &mut Connection, key: &str, between: impl FnOnce()) -> bool {
    run(con, &["WATCH", key]);
    between();
    run(con, &["MULTI"]);
    run(con, &["PING"]);
    match run(con, &["EXEC"]) {
        Value::Nil => false,
        Value::Array(replies) => {
            assert_eq!(replies.len(), 1, "EXEC replied {replies:?}");
            true
        }
        other => panic!("EXEC replied {other:?}"),
    }
}

#[test]
fn a_publish_changes_only_the_mailboxes_it_stores_to() {
    let server = Server::start();
    let mut con = server.client();
    let mut watcher = server.client();
    sub(&mut con, "{w}a", &["news"]);
    sub(&mut con, "{w}b", &["news"]);

    // A stored publish changes its receivers: a WATCH on one aborts the transaction.
    assert!(!watch_survives(&mut watcher, "{w}a", || {
        assert_eq!(publish(&mut con, "{w}news", "stored", &[]).1, 2);
    }));
    // An EPHEMERAL publish stores nothing: the receivers are not changed.
    assert!(watch_survives(&mut watcher, "{w}a", || {
        publish(&mut con, "{w}news", "fleeting", &["EPHEMERAL"]);
    }));
    // A subscriber whose key now holds something else is forgotten, its key left alone.
    run(&mut con, &["DEL", "{w}b"]);
    run(&mut con, &["SET", "{w}b", "not a mailbox"]);
    assert!(watch_survives(&mut watcher, "{w}b", || {
        assert_eq!(publish(&mut con, "{w}news", "stored", &[]).1, 1);
    }));
    assert_eq!(run(&mut con, &["GET", "{w}b"]), Value::BulkString(b"not a mailbox".to_vec()));
    // A publish refused by the send quota changes nothing either: one token a second,
    // taken by the publish just before.
    run(&mut con, &["CONFIG", "SET", "mailbox.send-rate", "1", "mailbox.send-burst", "1"]);
    publish(&mut con, "{w}news", "the one token", &[]);
    assert!(watch_survives(&mut watcher, "{w}a", || {
        let refused = error_of(&mut con, &["MAILBOX.PUBLISH", "{w}news", "over the quota"]);
        assert!(refused.contains("send quota exceeded"), "{refused}");
    }));
    run(&mut con, &["CONFIG", "SET", "mailbox.send-rate", "0"]);
    assert_eq!(peek_payloads(&mut con, "{w}a"), ["stored", "stored", "the one token"]);
}

#[test]
fn sub_unsub_subs_counts() {
    let server = Server::start();
    let mut con = server.client();
    assert!(subs(&mut con, "{t}c").is_empty(), "SUBS of a missing mailbox");

    assert_eq!(sub(&mut con, "{t}c", &["a.#", "b.*"]), 2);
    assert!(exists(&mut con, "{t}c"), "SUB creates the mailbox");
    assert_eq!(info_int(&mut con, "{t}c", "ready"), 0);
    assert_eq!(sub(&mut con, "{t}c", &["a.#", "b.*"]), 0, "repeated SUB");
    assert_eq!(sub(&mut con, "{t}c", &["a.#", "c", "c"]), 1, "one new, given twice");
    assert_eq!(sub(&mut con, "{t}c", &["{t}d.#"]), 1, "tagged pattern");
    assert_eq!(sub(&mut con, "{t}c", &["d.#"]), 0, "the same pattern without the tag");
    assert_eq!(subs(&mut con, "{t}c"), vec!["a.#", "b.*", "c", "d.#"]);
    // SUBS is per mailbox.
    assert_eq!(sub(&mut con, "{t}other", &["z"]), 1);
    assert_eq!(subs(&mut con, "{t}other"), vec!["z"]);
    assert_eq!(subs(&mut con, "{t}c"), vec!["a.#", "b.*", "c", "d.#"]);

    assert_eq!(unsub(&mut con, "{t}c", &["a.#", "nope.x"]), 1);
    assert_eq!(unsub(&mut con, "{t}c", &["a.#"]), 0, "repeated UNSUB");
    assert_eq!(unsub(&mut con, "{t}c", &["{t}d.#", "c", "c"]), 2);
    assert_eq!(subs(&mut con, "{t}c"), vec!["b.*"]);
    assert_eq!(unsub(&mut con, "{t}nobody", &["b.*"]), 0, "UNSUB on a mailbox without subscriptions");
    assert_eq!(unsub(&mut con, "{t}c", &["b.*"]), 1);
    assert!(subs(&mut con, "{t}c").is_empty());
    assert_eq!(publish(&mut con, "{t}b.x", "p", &[]).1, 0);
}

#[test]
fn invalid_topics_and_patterns_are_refused_exactly() {
    let server = Server::start();
    let mut con = server.client();
    const EMPTY: &str = "ERR topic must not be empty";
    const EMPTY_SEGMENT: &str = "ERR topic has an empty segment";
    const PARTIAL: &str = "ERR wildcards * and # must be whole segments";
    const WILDCARD_IN_TOPIC: &str = "ERR a topic cannot contain * or # segments";
    const TOO_LONG: &str = "ERR topic is longer than 1024 bytes";
    const TOO_MANY: &str = "ERR topic has more than 64 segments";
    const NOT_UTF8: &str = "ERR topic must be valid UTF-8";

    for (pattern, expected) in [
        ("a..b", EMPTY_SEGMENT),
        (".a", EMPTY_SEGMENT),
        ("a.", EMPTY_SEGMENT),
        ("a.b*", PARTIAL),
        ("#a.b", PARTIAL),
        ("a.*x.b", PARTIAL),
        ("", EMPTY),
        ("{t}", EMPTY),
    ] {
        assert_eq!(
            error_of(&mut con, &["MAILBOX.SUB", "{t}e", pattern]),
            expected,
            "SUB pattern {pattern:?}"
        );
        assert_eq!(
            error_of(&mut con, &["MAILBOX.UNSUB", "{t}e", pattern]),
            expected,
            "UNSUB pattern {pattern:?}"
        );
    }
    let long_pattern = format!("{}.#", "a".repeat(1023));
    assert_eq!(error_of(&mut con, &["MAILBOX.SUB", "{t}e", &long_pattern]), TOO_LONG);
    let many = vec!["*"; 65].join(".");
    assert_eq!(error_of(&mut con, &["MAILBOX.SUB", "{t}e", &many]), TOO_MANY);
    let mut bad = redis::cmd("MAILBOX.SUB");
    bad.arg("{t}e").arg(&b"a.\xff.#"[..]);
    assert_eq!(error_of_cmd(&mut con, &bad), NOT_UTF8);

    // Another namespace's tag on the pattern.
    assert_eq!(
        error_of(&mut con, &["MAILBOX.SUB", "{t}e", "{u}a.#"]),
        "ERR '{u}a.#' is in another namespace (hash tag) than the mailbox"
    );
    assert_eq!(
        error_of(&mut con, &["MAILBOX.SUB", "plain", "{t}a.#"]),
        "ERR '{t}a.#' is in another namespace (hash tag) than the mailbox"
    );
    // A failing SUB changes nothing, not even for its valid patterns.
    assert_eq!(error_of(&mut con, &["MAILBOX.SUB", "{t}e", "good.#", "a..b"]), EMPTY_SEGMENT);
    assert!(!exists(&mut con, "{t}e"), "a refused SUB created the mailbox");
    assert!(subs(&mut con, "{t}e").is_empty());
    assert_eq!(publish(&mut con, "{t}good.x", "p", &[]).1, 0);

    // Topics: no wildcards at all.
    for (topic, expected) in [
        ("{t}a.*.b", WILDCARD_IN_TOPIC),
        ("{t}*", WILDCARD_IN_TOPIC),
        ("{t}#", WILDCARD_IN_TOPIC),
        ("{t}a.b.#", WILDCARD_IN_TOPIC),
        ("a.*", WILDCARD_IN_TOPIC),
        ("{t}a.b*", PARTIAL),
        ("{t}a#.b", PARTIAL),
        ("{t}a..b", EMPTY_SEGMENT),
        ("{t}.a", EMPTY_SEGMENT),
        ("{t}a.", EMPTY_SEGMENT),
        ("{t}", EMPTY),
    ] {
        assert_eq!(error_of(&mut con, &["MAILBOX.PUBLISH", topic, "p"]), expected, "PUBLISH {topic:?}");
    }
    let long_topic = format!("{{t}}{}", "a".repeat(1025));
    assert_eq!(error_of(&mut con, &["MAILBOX.PUBLISH", &long_topic, "p"]), TOO_LONG);
    let many_topic = format!("{{t}}{}", vec!["a"; 65].join("."));
    assert_eq!(error_of(&mut con, &["MAILBOX.PUBLISH", &many_topic, "p"]), TOO_MANY);
    let mut bad = redis::cmd("MAILBOX.PUBLISH");
    bad.arg(&b"{t}a.\xfe"[..]).arg("p");
    assert_eq!(error_of_cmd(&mut con, &bad), NOT_UTF8);
}

// ---- 2. one message, many receivers ----------------------------------------------

#[test]
fn every_receiver_has_the_same_message_and_its_own_lease() {
    let server = Server::start();
    let mut con = server.client();
    for mb in ["{t}a", "{t}b", "{t}c"] {
        assert_eq!(sub(&mut con, mb, &["jobs.#"]), 1);
    }
    let (id, n) = publish(
        &mut con,
        "{t}jobs.new",
        "do the thing",
        &["PRIORITY", "3", "THREAD", "th-1", "TYPE", "text/plain", "META", r#"{"k":1}"#],
    );
    assert_eq!(n, 3);
    let copies: Vec<Msg> = ["{t}a", "{t}b", "{t}c"]
        .iter()
        .map(|mb| {
            let mut got = peek(&mut con, mb, &[]);
            assert_eq!(got.len(), 1, "{mb}: {got:?}");
            got.remove(0)
        })
        .collect();
    for m in &copies {
        assert_eq!(m.id, id);
        assert_eq!(m.payload(), "do the thing");
        assert_eq!(m.str("from"), "default");
        assert_eq!(m.str("to"), "{t}jobs.new");
        assert_eq!(m.str("priority"), "3");
        assert_eq!(m.str("type"), "text/plain");
        assert_eq!(m.str("thread"), "th-1");
        assert_eq!(m.str("meta"), r#"{"k":1}"#);
        assert_eq!(m.str("state"), "ready");
        assert_eq!(m.deliveries(), 0);
        assert_eq!(m.get("expires"), None, "no TTL given, none set");
    }
    assert_eq!(copies[0].str("ts"), copies[1].str("ts"));
    assert_eq!(copies[0].str("ts"), copies[2].str("ts"));

    // Read and ack in a: b and c are untouched.
    let got = read_one(&mut con, "{t}a", &["LEASE", LONG_LEASE]);
    assert_eq!(got.id, id);
    assert_eq!(got.deliveries(), 1);
    assert_eq!(peek(&mut con, "{t}b", &[])[0].str("state"), "ready");
    assert_eq!(ack(&mut con, "{t}a", &[&id]), 1);
    assert!(peek(&mut con, "{t}a", &[]).is_empty());
    assert_eq!(peek_ids(&mut con, "{t}b"), vec![id.clone()]);
    assert_eq!(peek_ids(&mut con, "{t}c"), vec![id.clone()]);
    // Acking the id in b before b read it counts 0, and removes nothing.
    assert_eq!(ack(&mut con, "{t}b", &[&id]), 0);
    assert_eq!(peek_ids(&mut con, "{t}b"), vec![id.clone()]);

    // b reads: its first delivery, whatever a did.
    let got = read_one(&mut con, "{t}b", &["LEASE", LONG_LEASE]);
    assert_eq!((got.id.as_str(), got.deliveries()), (id.as_str(), 1));
    assert_eq!(info_int(&mut con, "{t}b", "leased"), 1);
    assert_eq!(info_int(&mut con, "{t}c", "ready"), 1);
    assert_eq!(info_int(&mut con, "{t}c", "leased"), 0);
    // b nacks: ready again in b only; c reads it once, a has nothing.
    assert_eq!(nack(&mut con, "{t}b", &[&id]), 1);
    assert_eq!(read_one(&mut con, "{t}b", &[]).deliveries(), 2);
    assert_eq!(read_one(&mut con, "{t}c", &[]).deliveries(), 1);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "{t}a"]), Value::Nil);

    // A receiver that already saw the DEDUP key or is full is skipped.
    send(&mut con, "{t}b", "earlier", &["DEDUP", "k1"]);
    create(&mut con, "{t}full", &["MAXLEN", "1"]);
    send(&mut con, "{t}full", "filler", &[]);
    assert_eq!(sub(&mut con, "{t}full", &["jobs.#"]), 1);
    let (id2, n) = publish(&mut con, "{t}jobs.more", "again", &["DEDUP", "k1"]);
    assert_eq!(n, 2, "a and c take it; b saw k1, full is full");
    assert_eq!(peek_ids(&mut con, "{t}a"), vec![id2.clone()]);
    assert!(!peek_payloads(&mut con, "{t}b").contains(&"again".to_string()), "b saw the DEDUP key");
    assert_eq!(peek_ids(&mut con, "{t}c").last(), Some(&id2));
    assert_eq!(peek_payloads(&mut con, "{t}full"), vec!["filler"], "full is at its MAXLEN");
}

// ---- 3. broadcast -------------------------------------------------------------

#[test]
fn broadcast_reaches_every_mailbox_of_the_namespace_only() {
    let server = Server::start();
    let mut con = server.client();
    send(&mut con, "{t}sent", "hello", &[]);
    create(&mut con, "{t}made", &[]);
    assert_eq!(sub(&mut con, "{t}subbed", &["x.#"]), 1);
    send(&mut con, "{u}other", "hello", &[]);
    send(&mut con, "plain", "hello", &[]);
    let ours = ["{t}sent", "{t}made", "{t}subbed"];

    let (id, n) = broadcast(&mut con, "{t}", "to all", &["PRIORITY", "7"]);
    assert_eq!(n, 3);
    for mb in ours {
        let last = peek(&mut con, mb, &[]).pop().unwrap_or_else(|| panic!("{mb} is empty"));
        assert_eq!(last.id, id, "{mb}");
        assert_eq!(last.payload(), "to all");
        assert_eq!(last.str("to"), "{t}");
        assert_eq!(last.str("priority"), "7");
    }
    for mb in ["{u}other", "plain"] {
        assert_eq!(peek_payloads(&mut con, mb), vec!["hello"], "{mb} got the {{t}} broadcast");
    }

    // Another namespace, and the default one.
    let (uid, n) = broadcast(&mut con, "{u}", "u only", &[]);
    assert_eq!(n, 1);
    assert_eq!(peek_ids(&mut con, "{u}other").last(), Some(&uid));
    let (did, n) = broadcast(&mut con, "everyone", "default only", &[]);
    assert_eq!(n, 1, "the default namespace holds only `plain`");
    assert_eq!(peek_ids(&mut con, "plain").last(), Some(&did));
    for mb in ours {
        let got = peek_payloads(&mut con, mb);
        assert!(
            !got.contains(&"u only".to_string()) && !got.contains(&"default only".to_string()),
            "{mb}: {got:?}"
        );
    }
    assert_eq!(broadcast(&mut con, "{nobody}", "x", &[]).1, 0, "an unknown namespace");

    // A deleted mailbox is not counted and not brought back.
    assert_eq!(int_reply(run(&mut con, &["DEL", "{t}made"]), "DEL"), 1);
    assert_eq!(broadcast(&mut con, "{t}", "after del", &[]).1, 2);
    assert!(!exists(&mut con, "{t}made"), "BROADCAST re-created a deleted mailbox");
    // A key of another type under that name is not a receiver and is left alone.
    assert_eq!(run(&mut con, &["SET", "{t}made", "a string"]), Value::Okay);
    assert_eq!(broadcast(&mut con, "{t}", "after set", &[]).1, 2);
    assert_eq!(text(&run(&mut con, &["GET", "{t}made"])), "a string");
    // Created again by a send: counted again.
    assert_eq!(int_reply(run(&mut con, &["DEL", "{t}made"]), "DEL"), 1);
    send(&mut con, "{t}made", "back", &[]);
    assert_eq!(broadcast(&mut con, "{t}", "again", &[]).1, 3);
}

// ---- 4. offline subscriber --------------------------------------------------------

#[test]
fn offline_subscriber_finds_its_messages_later_in_order() {
    let server = Server::start();
    {
        let mut bob = server.client();
        assert_eq!(sub(&mut bob, "{t}bob", &["news.#"]), 1);
    } // Bob goes away.
    let mut con = server.client();
    let published: Vec<String> = (0..6)
        .map(|i| {
            let (id, n) = publish(&mut con, &format!("{{t}}news.item{i}"), &format!("n{i}"), &[]);
            assert_eq!(n, 1);
            id
        })
        .collect();
    let mut sorted = published.clone();
    sorted.sort_by_key(|id| parse_id(id));
    assert_eq!(sorted, published, "ids increase");

    let mut bob = server.client();
    let got = read(&mut bob, "{t}bob", &["COUNT", "100", "LEASE", LONG_LEASE]).expect("messages waiting");
    assert_eq!(got.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), published);
    assert_eq!(
        got.iter().map(Msg::payload).collect::<Vec<_>>(),
        (0..6).map(|i| format!("n{i}")).collect::<Vec<_>>()
    );
    let refs: Vec<&str> = published.iter().map(String::as_str).collect();
    assert_eq!(ack(&mut bob, "{t}bob", &refs), 6);

    // A reader blocked on the mailbox wakes on a publish.
    let port = server.port;
    let reader = std::thread::spawn(move || {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .expect("connect");
        read(&mut con, "{t}bob", &["BLOCK", "20000"])
    });
    let mut admin = server.client();
    wait_until("the reader is blocked", 10_000, || {
        server.info_field("clients", "blocked_clients").as_deref() == Some("1")
    });
    let (id, n) = publish(&mut admin, "{t}news.late", "late", &[]);
    assert_eq!(n, 1);
    let got = reader.join().expect("reader thread").expect("the blocked read got nothing");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].payload(), "late");
}

// ---- 5. push ------------------------------------------------------------------

#[test]
fn deliveries_are_pushed_as_json_on_the_sharded_channel() {
    let server = Server::start();
    let mut admin = server.client();
    acl_agent(&mut admin, "bob");
    let mut bob = server.client_as("bob", "pw");
    assert_eq!(sub(&mut admin, "{t}alice", &["alerts.*"]), 1);
    let mut listener = Listener::ssubscribe(&server, "mailbox:{t}alice");
    let mut other = Listener::ssubscribe(&server, "mailbox:{t}carol");

    // A direct send with every optional field.
    let id = send(
        &mut bob,
        "{t}alice",
        "hello alice",
        &[
            "PRIORITY",
            "4",
            "TYPE",
            "text/plain",
            "META",
            r#"{"k":[1,2],"s":"x"}"#,
            "THREAD",
            "th-9",
            "REPLYTO",
            "{t}bob",
            "TTL",
            "600000",
        ],
    );
    let push = listener.next();
    let stored = peek(&mut admin, "{t}alice", &[]).pop().unwrap();
    assert_eq!(push["id"], id.as_str(), "{push}");
    assert_eq!(push["mailbox"], "{t}alice");
    assert_eq!(push["from"], "bob");
    assert_eq!(push["to"], "{t}alice");
    let ts = push["ts"].as_u64().unwrap_or_else(|| panic!("ts is not a number: {push}"));
    assert_eq!(ts, stored.num("ts"));
    assert_eq!(push["priority"].as_u64(), Some(4), "priority is a number: {push}");
    assert_eq!(push["type"], "text/plain");
    assert_eq!(push["payload"], "hello alice");
    assert!(push.get("payload_base64").is_none(), "{push}");
    assert!(push["meta"].is_object(), "meta is an object, not a string: {push}");
    assert_eq!(push["meta"], serde_json::json!({"k": [1, 2], "s": "x"}));
    assert_eq!(push["thread"], "th-9");
    assert_eq!(push["reply_to"], "{t}bob");
    assert!(push.get("correlation").is_none(), "{push}");
    assert_eq!(push["expires"].as_u64(), Some(stored.num("expires")), "{push}");
    assert_eq!(stored.num("expires"), ts + 600_000);

    // A topic delivery: only the mandatory fields.
    let (pid, n) = publish(&mut bob, "{t}alerts.fire", "burning", &[]);
    assert_eq!(n, 1);
    let push = listener.next();
    assert_eq!(push["id"], pid.as_str());
    assert_eq!(push["mailbox"], "{t}alice");
    assert_eq!(push["to"], "{t}alerts.fire");
    assert_eq!(push["from"], "bob");
    assert_eq!(push["priority"].as_u64(), Some(0));
    assert_eq!(push["payload"], "burning");
    for absent in ["type", "meta", "thread", "correlation", "reply_to", "expires", "payload_base64"] {
        assert!(push.get(absent).is_none(), "{absent} should be absent: {push}");
    }
    let keys: Vec<&str> = push.as_object().unwrap().keys().map(String::as_str).collect();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort();
    assert_eq!(keys_sorted, vec!["from", "id", "mailbox", "payload", "priority", "to", "ts"]);

    // A payload that is not UTF-8 comes as payload_base64.
    let (bid, _) = publish_bytes(&mut bob, "{t}alerts.bin", &[0xff, 0x00, 0x41]);
    let push = listener.next();
    assert_eq!(push["id"], bid.as_str());
    assert_eq!(push["payload_base64"], "/wBB");
    assert!(push.get("payload").is_none(), "{push}");

    // A broadcast is pushed too.
    let (cid, n) = broadcast(&mut bob, "{t}", "all hands", &[]);
    assert_eq!(n, 1, "only {{t}}alice exists in {{t}}");
    let push = listener.next();
    assert_eq!(push["id"], cid.as_str());
    assert_eq!(push["to"], "{t}");

    // Another mailbox's channel got none of alice's deliveries: its first push is its own.
    let own = send(&mut bob, "{t}carol", "for carol", &[]);
    let push = other.next();
    assert_eq!(push["id"], own.as_str(), "carol's listener got {push}");
    assert_eq!(push["mailbox"], "{t}carol");

    // Pushing settles nothing: all four are still there and none counted as delivered.
    let all =
        read(&mut admin, "{t}alice", &["COUNT", "10", "LEASE", LONG_LEASE]).expect("still in the mailbox");
    let mut ids: Vec<String> = all.iter().map(|m| m.id.clone()).collect();
    ids.sort_by_key(|id| parse_id(id));
    assert_eq!(ids, vec![id.clone(), pid.clone(), bid.clone(), cid.clone()]);
    assert!(all.iter().all(|m| m.deliveries() == 1), "{all:?}");

    // `mailbox.push no` stops pushing: the next push seen is the one sent after turning it on.
    config_set(&mut admin, "mailbox.push", "no");
    send(&mut bob, "{t}alice", "silent", &[]);
    config_set(&mut admin, "mailbox.push", "yes");
    let loud = send(&mut bob, "{t}alice", "loud", &[]);
    let push = listener.next();
    assert_eq!(push["id"], loud.as_str(), "a push while mailbox.push was no: {push}");
    assert_eq!(push["payload"], "loud");
}

/// A push that found no listener is not encoded again until someone may listen:
/// a new subscription, a renamed key or a new `mailbox.push-prefix` each bring
/// the pushes back.
#[test]
fn pushes_resume_as_soon_as_someone_may_listen() {
    let server = Server::start();
    let mut admin = server.client();

    // Nobody listens: the first send finds nobody, the next ones are not pushed.
    for n in 0..3 {
        send(&mut admin, "{t}quiet", &format!("q{n}"), &[]);
    }
    assert_eq!(stat(&mut admin, "pushes"), 1);
    assert_eq!(stat(&mut admin, "pushes_skipped"), 2);

    // A subscriber arrives: the very next send reaches it.
    let mut listener = Listener::ssubscribe(&server, "mailbox:{t}quiet");
    let id = send(&mut admin, "{t}quiet", "heard", &[]);
    assert_eq!(listener.next()["id"], id.as_str());

    // A renamed mailbox pushes on its new name's channel, where someone already listens.
    let mut renamed = Listener::ssubscribe(&server, "mailbox:{t}new-name");
    send(&mut admin, "{t}old-name", "o1", &[]);
    send(&mut admin, "{t}old-name", "o2", &[]);
    let skipped = stat(&mut admin, "pushes_skipped");
    run(&mut admin, &["RENAME", "{t}old-name", "{t}new-name"]);
    let id = send(&mut admin, "{t}new-name", "after rename", &[]);
    assert_eq!(renamed.next()["id"], id.as_str());
    assert_eq!(stat(&mut admin, "pushes_skipped"), skipped);

    // A new prefix names new channels.
    let mut prefixed = Listener::ssubscribe(&server, "agents:{t}pre");
    send(&mut admin, "{t}pre", "p1", &[]);
    send(&mut admin, "{t}pre", "p2", &[]);
    config_set(&mut admin, "mailbox.push-prefix", "agents:");
    let id = send(&mut admin, "{t}pre", "after prefix", &[]);
    assert_eq!(prefixed.next()["id"], id.as_str());
    config_set(&mut admin, "mailbox.push-prefix", "mailbox:");

    // The filter sees a subscription before it runs, which is only safe because no
    // subscription can run later, inside a transaction: Redis refuses it there.
    let mut tx = server.client();
    let queued = redis::pipe()
        .cmd("MULTI")
        .cmd("MAILBOX.SEND")
        .arg("{t}multi")
        .arg("in tx")
        .cmd("SSUBSCRIBE")
        .arg("mailbox:{t}multi")
        .cmd("EXEC")
        .get_packed_pipeline();
    tx.send_packed_command(&queued).expect("send the transaction");
    let replies: Vec<Value> = (0..4).map(|_| tx.recv_response().expect("transaction reply")).collect();
    let Value::Array(results) = &replies[3] else { panic!("EXEC replied {replies:?}") };
    let Value::ServerError(refused) = &results[1] else { panic!("SSUBSCRIBE ran in EXEC: {results:?}") };
    assert!(format!("{refused:?}").contains("isn't allowed"), "{refused:?}");
}

// ---- 6. replies and threads ------------------------------------------------------

#[test]
fn reply_round_trip_between_two_agents() {
    let server = Server::start();
    let mut admin = server.client();
    acl_agent(&mut admin, "alice");
    acl_agent(&mut admin, "bob");
    let mut alice = server.client_as("alice", "pw");
    let mut bob = server.client_as("bob", "pw");

    let q1 = send(&mut alice, "{t}bob", "what is 2+2?", &["THREAD", "conv-1"]);
    let got = read_one(&mut bob, "{t}bob", &["LEASE", LONG_LEASE]);
    assert_eq!((got.id.as_str(), got.str("from").as_str()), (q1.as_str(), "alice"));
    let r1 = text(&run(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q1, "4"]));
    parse_id(&r1);
    assert_eq!(ack(&mut bob, "{t}bob", &[&q1]), 1);

    let inbox = peek(&mut alice, "{t}alice", &[]);
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let answer = &inbox[0];
    assert_eq!(answer.id, r1);
    assert_eq!(answer.payload(), "4");
    assert_eq!(answer.str("from"), "bob");
    assert_eq!(answer.str("to"), "{t}alice");
    assert_eq!(answer.str("correlation"), q1);
    assert_eq!(answer.str("thread"), "conv-1");

    // A question without a thread: its id becomes the thread.
    let q2 = send(&mut alice, "{t}bob", "and 3+3?", &[]);
    let r2 = text(&run(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q2, "6", "PRIORITY", "2"]));
    let answer = peek(&mut alice, "{t}alice", &[]).pop().unwrap();
    assert_eq!(answer.id, r2);
    assert_eq!(answer.str("correlation"), q2);
    assert_eq!(answer.str("thread"), q2);
    assert_eq!(answer.str("priority"), "2");

    // REPLYTO redirects the answer.
    let q3 = send(&mut alice, "{t}bob", "answer elsewhere", &["REPLYTO", "{t}desk", "THREAD", "conv-1"]);
    let r3 = text(&run(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q3, "done"]));
    let desk = peek(&mut admin, "{t}desk", &[]);
    assert_eq!(desk.len(), 1, "{desk:?}");
    assert_eq!(desk[0].id, r3);
    assert_eq!(desk[0].str("from"), "bob");
    assert_eq!(desk[0].str("correlation"), q3);
    assert_eq!(desk[0].str("thread"), "conv-1");
    assert_eq!(peek_ids(&mut alice, "{t}alice"), vec![r1.clone(), r2.clone()], "REPLYTO ignored");

    // Errors.
    assert_eq!(
        error_of(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q2, "x", "CORRELATION", "c"]),
        "ERR MAILBOX.REPLY sets CORRELATION itself"
    );
    assert_eq!(
        error_of(&mut bob, &["MAILBOX.REPLY", "{t}bob", "1-0", "x"]),
        "ERR no such message in this mailbox"
    );
    assert_eq!(
        error_of(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q1, "x"]),
        "ERR no such message in this mailbox"
    );
    assert_eq!(
        error_of(&mut admin, &["MAILBOX.REPLY", "{t}nobox", &q2, "x"]),
        "ERR no such message in this mailbox"
    );
    assert_eq!(error_of(&mut bob, &["MAILBOX.REPLY", "{t}bob", "abc", "x"]), "ERR invalid message id 'abc'");
    assert_eq!(
        peek_ids(&mut alice, "{t}alice"),
        vec![r1.clone(), r2.clone()],
        "a failed REPLY sent something"
    );

    // A dead letter can be answered too.
    create(&mut admin, "{t}bob", &["MAXDELIVER", "1", "UPDATE"]);
    let q4 = send(&mut alice, "{t}bob", "last chance", &["THREAD", "conv-2", "PRIORITY", "9"]);
    assert_eq!(read_one(&mut bob, "{t}bob", &[]).id, q4);
    assert_eq!(nack(&mut bob, "{t}bob", &[&q4]), 1);
    assert_eq!(
        dead_list(&mut admin, "{t}bob", &[]).iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        vec![q4.clone()]
    );
    let r4 = text(&run(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q4, "too late"]));
    let answer = peek(&mut alice, "{t}alice", &[]).pop().unwrap();
    assert_eq!((answer.id.as_str(), answer.str("correlation")), (r4.as_str(), q4.clone()));
    assert_eq!(answer.str("thread"), "conv-2");

    // THREAD: the thread's messages in alice's mailbox, oldest first, read or not, whatever
    // their priority.
    let fyi = send(&mut bob, "{t}alice", "fyi", &["THREAD", "conv-1", "PRIORITY", "9"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &["LEASE", LONG_LEASE]).id, fyi, "priority 9 first");
    let thread = messages(&run(&mut alice, &["MAILBOX.THREAD", "{t}alice", "conv-1"])).unwrap();
    assert_eq!(thread.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![r1.clone(), fyi.clone()]);
    assert_eq!(thread[1].str("state"), "leased");
    assert_eq!(thread[0].str("state"), "ready");
    let first = messages(&run(&mut alice, &["MAILBOX.THREAD", "{t}alice", "conv-1", "COUNT", "1"])).unwrap();
    assert_eq!(first.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![r1.clone()]);
    let by_id = messages(&run(&mut alice, &["MAILBOX.THREAD", "{t}alice", &q2])).unwrap();
    assert_eq!(by_id.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![r2.clone()]);
    assert_eq!(messages(&run(&mut alice, &["MAILBOX.THREAD", "{t}alice", "nope"])), Some(vec![]));
    // Acked messages leave the thread.
    assert_eq!(ack(&mut alice, "{t}alice", &[&fyi]), 1);
    let thread = messages(&run(&mut alice, &["MAILBOX.THREAD", "{t}alice", "conv-1"])).unwrap();
    assert_eq!(thread.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![r1]);
}

// ---- 7. presence ----------------------------------------------------------------

#[test]
fn presence_lists_agents_with_last_seen_and_waiting() {
    let server = Server::start();
    let mut admin = server.client();
    for agent in ["alice", "bob", "carol"] {
        acl_agent(&mut admin, agent);
    }
    let mut alice = server.client_as("alice", "pw");
    let mut bob = server.client_as("bob", "pw");
    let mut carol = server.client_as("carol", "pw");

    for i in 0..3 {
        send(&mut alice, "{t}bob", &format!("task {i}"), &[]);
    }
    send(&mut bob, "{t}alice", "ack", &[]);
    read_one(&mut bob, "{t}bob", &["LEASE", LONG_LEASE]);
    // carol only reads (her own mailbox) without writing: not an active agent.
    peek(&mut carol, "{t}carol", &[]);
    run(&mut carol, &["MAILBOX.SUBS", "{t}carol"]);
    // alice is active in {u} too, bob is not.
    send(&mut alice, "{u}x", "elsewhere", &[]);

    let now = redis_time_ms(&mut admin);
    let wall = wall_clock_ms();
    let rows = presence(&mut admin, "{t}");
    let agents: Vec<&str> = rows.iter().map(|p| p.agent.as_str()).collect();
    let mut sorted = agents.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["alice", "bob"], "{rows:?}");
    for p in &rows {
        assert!((p.last_seen - now as i64).abs() < 60_000, "{p:?} vs TIME {now}");
        assert!((p.last_seen - wall as i64).abs() < 60_000, "{p:?} vs the test's clock {wall}");
        assert!(p.idle >= 0 && p.idle < 60_000, "{p:?}");
    }
    let waiting = |agent: &str| rows.iter().find(|p| p.agent == agent).unwrap().waiting;
    assert_eq!(waiting("alice"), 1, "one ready in {{t}}alice: {rows:?}");
    assert_eq!(waiting("bob"), 2, "two ready (one leased) in {{t}}bob: {rows:?}");

    let rows_u = presence(&mut admin, "{u}");
    assert_eq!(rows_u.iter().map(|p| p.agent.as_str()).collect::<Vec<_>>(), vec!["alice"], "{rows_u:?}");
    assert_eq!(rows_u[0].waiting, 0, "alice has no mailbox in {{u}}");
    assert_eq!(presence(&mut admin, "{empty}"), vec![]);

    // waiting follows the mailbox; idle grows while an agent is away.
    let before = rows.iter().find(|p| p.agent == "alice").unwrap().clone();
    send(&mut bob, "{t}alice", "more", &[]);
    wait_until("alice's idle time grows", 10_000, || {
        let now = presence(&mut admin, "{t}");
        let a = now.iter().find(|p| p.agent == "alice").unwrap();
        a.waiting == 2 && a.idle > before.idle && a.last_seen == before.last_seen
    });
}

// ---- 8. memory ------------------------------------------------------------------

#[test]
fn a_published_payload_is_stored_once() {
    const RECEIVERS: usize = 1000;
    const PAYLOAD: usize = 100_000;
    const SMALL_ROUNDS: usize = 20;
    let server = Server::start();
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..RECEIVERS {
        pipe.cmd("MAILBOX.SUB").arg(format!("{{s}}agent{i}")).arg("news.#");
    }
    let added: Vec<i64> = pipe.query(&mut con).expect("SUB pipeline");
    assert_eq!(added.iter().sum::<i64>(), RECEIVERS as i64);

    // The first message into an empty mailbox allocates its queue structures (about 1 KB each
    // here, once per mailbox): a tiny warm-up publish keeps that out of the payload figure.
    let empty = used_memory(&server);
    assert_eq!(publish(&mut con, "{s}news.warmup", "w", &[]).1, RECEIVERS as i64);
    let first = used_memory(&server) - empty;
    eprintln!(
        "first (tiny) message into {RECEIVERS} empty mailboxes: used_memory +{first} bytes ({} per mailbox)",
        first / RECEIVERS as i64
    );
    assert!(first < 10_000 * RECEIVERS as i64, "{first} bytes for one tiny message to {RECEIVERS} mailboxes");

    let before = used_memory(&server);
    let payload = "x".repeat(PAYLOAD);
    let (id, n) = publish(&mut con, "{s}news.big", &payload, &[]);
    assert_eq!(n, RECEIVERS as i64);
    let after = used_memory(&server);
    let growth = after - before;
    eprintln!(
        "one {PAYLOAD}-byte publish to {RECEIVERS} receivers: used_memory +{growth} bytes \
         ({} per receiver)",
        growth / RECEIVERS as i64
    );
    assert!(
        growth < 10 * PAYLOAD as i64,
        "used_memory grew by {growth} bytes for one {PAYLOAD}-byte payload to {RECEIVERS} receivers"
    );
    for i in [0, 499, 999] {
        let got = peek(&mut con, &format!("{{s}}agent{i}"), &[]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].id, id);
        assert_eq!(got[1].bytes("payload").map(<[u8]>::len), Some(PAYLOAD));
    }

    // After a reload the payload is shared again.
    let digest = server.digest();
    assert_eq!(run(&mut con, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(server.digest(), digest);
    let reloaded = used_memory(&server);
    eprintln!("after DEBUG RELOAD: used_memory {reloaded} (+{} over before the publish)", reloaded - before);
    assert!(
        reloaded - before < 10 * PAYLOAD as i64,
        "after DEBUG RELOAD used_memory is {} bytes over the figure before the publish",
        reloaded - before
    );
    assert_eq!(peek(&mut con, "{s}agent7", &[])[1].bytes("payload").map(<[u8]>::len), Some(PAYLOAD));

    // The cost of one more message per receiver, amortized over small publishes.
    let start = used_memory(&server);
    for i in 0..SMALL_ROUNDS {
        assert_eq!(publish(&mut con, "{s}news.tick", &format!("t{i}"), &[]).1, RECEIVERS as i64);
    }
    let end = used_memory(&server);
    let per = (end - start) as f64 / (SMALL_ROUNDS * RECEIVERS) as f64;
    eprintln!(
        "{SMALL_ROUNDS} tiny publishes to {RECEIVERS} receivers: used_memory +{} bytes, \
         {per:.1} bytes per receiver per message",
        end - start
    );
    assert!(per < 2000.0, "{per:.1} bytes per receiver per message");
    assert_eq!(peek(&mut con, "{s}agent3", &[]).len(), 2 + SMALL_ROUNDS);
}

// ---- 9. persistence and replication -------------------------------------------------

const STATE_MAILBOXES: &[&str] =
    &["{t}alice", "{t}bob", "{t}carol", "{t}desk", "{t}gone", "{u}dave", "plain", "{t}never"];
const STATE_SPACES: &[&str] = &["{t}", "{u}", "default"];

/// Subscriptions, published messages in several mailboxes (ready, leased, acked, nacked, dead),
/// a broadcast, replies, an unsub and presence.
fn build_state(server: &Server) {
    let mut admin = server.client();
    acl_agent(&mut admin, "alice");
    acl_agent(&mut admin, "bob");
    let mut alice = server.client_as("alice", "pw");
    let mut bob = server.client_as("bob", "pw");
    build_state_part1(&mut admin, &mut alice, &mut bob);
    build_state_part2(&mut admin, &mut alice, &mut bob);
}

fn build_state_part1(admin: &mut Connection, alice: &mut Connection, bob: &mut Connection) {
    assert_eq!(sub(alice, "{t}alice", &["news.#", "*.urgent"]), 2);
    assert_eq!(sub(bob, "{t}bob", &["news.sports", "#.urgent"]), 2);
    assert_eq!(sub(admin, "{t}carol", &["#"]), 1);
    create(admin, "{t}gone", &["MAXDELIVER", "1"]);
    assert_eq!(sub(admin, "{u}dave", &["x.*"]), 1);
    let (n1, c) = publish(alice, "{t}news.sports", "goal", &["PRIORITY", "3", "META", r#"{"a":1}"#]);
    assert_eq!(c, 3);
    let (_n2, c) = publish(bob, "{t}ops.urgent", "fire", &["THREAD", "inc-1", "TTL", "3600000"]);
    assert_eq!(c, 3);
    assert_eq!(publish(admin, "{u}x.y", "for dave", &[]).1, 1);
    send(admin, "plain", "default ns", &[]);
    // alice reads two (leased), acks one; bob reads one and nacks it.
    let got = read(alice, "{t}alice", &["COUNT", "2", "LEASE", LONG_LEASE]).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(ack(alice, "{t}alice", &[&n1]), 1);
    let b = read_one(bob, "{t}bob", &["LEASE", LONG_LEASE]);
    assert_eq!(nack(bob, "{t}bob", &[&b.id]), 1);
    // carol: one leased.
    read_one(admin, "{t}carol", &["LEASE", LONG_LEASE]);
}

fn build_state_part2(admin: &mut Connection, alice: &mut Connection, bob: &mut Connection) {
    let (_b, c) = broadcast(admin, "{t}", "all hands", &["PRIORITY", "1"]);
    assert_eq!(c, 4, "{{t}}alice, bob, carol, gone");
    // A question, a reply to it, a redirected reply, a dead letter.
    let q = send(alice, "{t}bob", "question", &["THREAD", "conv", "REPLYTO", "{t}desk"]);
    let got = read(bob, "{t}bob", &["COUNT", "10", "LEASE", LONG_LEASE]).unwrap();
    assert!(got.iter().any(|m| m.id == q));
    text(&run(bob, &["MAILBOX.REPLY", "{t}bob", &q, "answer"]));
    let q2 = send(alice, "{t}bob", "another", &[]);
    text(&run(bob, &["MAILBOX.REPLY", "{t}bob", &q2, "answer 2", "TYPE", "text/plain"]));
    let g = read_one(admin, "{t}gone", &[]);
    assert_eq!(nack(admin, "{t}gone", &[&g.id]), 1, "dead-lettered (MAXDELIVER 1)");
    assert_eq!(dead_list(admin, "{t}gone", &[]).len(), 1);
    // Unsubscribe, publish again, delete a mailbox and broadcast (the namespace forgets it).
    assert_eq!(unsub(alice, "{t}alice", &["*.urgent"]), 1);
    assert_eq!(publish(bob, "{t}db.urgent", "disk full", &[]).1, 2, "bob and carol");
    create(admin, "{t}never", &[]);
    assert_eq!(int_reply(run(admin, &["DEL", "{t}never"]), "DEL"), 1);
    assert_eq!(broadcast(admin, "{t}", "second", &[]).1, 5, "alice, bob, carol, gone, desk");
    let p = publish(alice, "{t}news.tech", "binary?", &[]);
    assert_eq!(p.1, 2, "alice and carol");
}

#[test]
fn debug_reload_keeps_subscriptions_messages_and_presence() {
    let server = Server::start();
    build_state(&server);
    let digest = server.digest();
    assert_ne!(digest, ZERO_DIGEST);
    let before = snapshot(&server, STATE_MAILBOXES, STATE_SPACES, true);
    let mut con = server.client();
    assert_eq!(run(&mut con, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(server.digest(), digest, "DEBUG DIGEST after DEBUG RELOAD");
    assert_eq!(snapshot(&server, STATE_MAILBOXES, STATE_SPACES, true), before);
    // Routing still works after the reload (the index is rebuilt from the subscriptions).
    assert_eq!(publish(&mut con, "{t}news.sports", "after reload", &[]).1, 3);
    assert_eq!(publish(&mut con, "{t}x.urgent", "after reload", &[]).1, 2, "bob and carol; alice unsubbed");
}

#[test]
fn aof_restart_keeps_subscriptions_messages_and_presence() {
    let mut server = Server::start_aof();
    build_state(&server);
    let digest = server.digest();
    let before = snapshot(&server, STATE_MAILBOXES, STATE_SPACES, true);
    server.kill9();
    server.restart();
    assert_eq!(server.digest(), digest, "DEBUG DIGEST after kill -9 and an AOF restart");
    assert_eq!(snapshot(&server, STATE_MAILBOXES, STATE_SPACES, true), before);
    let mut con = server.client();
    assert_eq!(publish(&mut con, "{t}news.sports", "after restart", &[]).1, 3);
    // And once more after a rewrite of the AOF.
    run(&mut con, &["BGREWRITEAOF"]);
    wait_until("the AOF rewrite finishes", 20_000, || {
        server.info_field("persistence", "aof_rewrite_in_progress").as_deref() == Some("0")
            && server.info_field("persistence", "aof_rewrite_scheduled").as_deref() == Some("0")
    });
    let digest = server.digest();
    let before = snapshot(&server, STATE_MAILBOXES, STATE_SPACES, true);
    server.kill9();
    server.restart();
    assert_eq!(server.digest(), digest, "DEBUG DIGEST after an AOF rewrite and a restart");
    assert_eq!(snapshot(&server, STATE_MAILBOXES, STATE_SPACES, true), before);
}

#[test]
fn replica_has_the_masters_state() {
    let master = Server::start();
    let mut admin = master.client();
    acl_agent(&mut admin, "alice");
    acl_agent(&mut admin, "bob");
    let mut alice = master.client_as("alice", "pw");
    let mut bob = master.client_as("bob", "pw");
    // Part one reaches the replica by the initial sync, part two by the replication stream.
    build_state_part1(&mut admin, &mut alice, &mut bob);
    let replica = master.replica();
    master.wait_for_replica(&replica);
    assert_eq!(replica.digest(), master.digest(), "after the initial sync");
    build_state_part2(&mut admin, &mut alice, &mut bob);
    master.wait_for_replica(&replica);
    assert_eq!(replica.digest(), master.digest(), "after subs, publishes, broadcasts, replies, unsubs");
    assert_eq!(
        snapshot(&replica, STATE_MAILBOXES, STATE_SPACES, false),
        snapshot(&master, STATE_MAILBOXES, STATE_SPACES, false)
    );
    // A reply answered from a dead letter, and the subscriptions of a deleted mailbox.
    let dead = dead_list(&mut admin, "{t}gone", &[]);
    text(&run(&mut admin, &["MAILBOX.REPLY", "{t}gone", &dead[0].id, "from the dead"]));
    assert_eq!(sub(&mut admin, "{t}temp", &["news.#"]), 1);
    assert_eq!(int_reply(run(&mut admin, &["DEL", "{t}temp"]), "DEL"), 1);
    broadcast(&mut admin, "{t}", "third", &[]);
    publish(&mut admin, "{t}news.last", "last", &[]);
    master.wait_for_replica(&replica);
    assert_eq!(replica.digest(), master.digest(), "after a reply from a dead letter and a DEL");
    // The broadcast forgot {t}temp and its subscription, on both sides.
    for (side, server) in [("master", &master), ("replica", &replica)] {
        let mut con = server.client();
        assert!(!exists(&mut con, "{t}temp"), "{side}: {{t}}temp came back");
        assert!(subs(&mut con, "{t}temp").is_empty(), "{side}: {{t}}temp still subscribed");
    }
    assert_eq!(
        snapshot(&replica, STATE_MAILBOXES, STATE_SPACES, false),
        snapshot(&master, STATE_MAILBOXES, STATE_SPACES, false)
    );
}

#[test]
fn deleting_a_mailbox_unsubscribes_it() {
    let server = Server::start();
    let mut con = server.client();
    assert_eq!(sub(&mut con, "{t}temp", &["news.#"]), 1);
    assert_eq!(sub(&mut con, "{t}stay", &["news.#"]), 1);
    let _: i64 = redis::cmd("DEL").arg("{t}temp").query(&mut con).unwrap();
    let (_, receivers) = publish(&mut con, "{t}news.x", "hi", &[]);
    assert_eq!(receivers, 1, "only the mailbox that still exists receives");
    assert!(!exists(&mut con, "{t}temp"), "a publish must not bring a deleted mailbox back");
    assert!(subs(&mut con, "{t}temp").is_empty(), "the deleted mailbox's subscriptions are gone");
    assert_eq!(subs(&mut con, "{t}stay"), vec!["news.#".to_string()]);
    let replica_check = server.replica();
    server.wait_for_replica(&replica_check);
    assert_eq!(replica_check.digest(), server.digest());
}

#[test]
fn a_renamed_mailbox_joins_its_namespace() {
    let server = Server::start();
    let mut con = server.client();
    let _: String = redis::cmd("MAILBOX.SEND").arg("{t}old").arg("x").query(&mut con).unwrap();
    let _: String = redis::cmd("RENAME").arg("{t}old").arg("{t}new").query(&mut con).unwrap();
    // The sweeper looks at keys that arrived under a new name at its next tick.
    wait_until("the renamed mailbox is broadcast to", 5_000, || {
        let (_, receivers) = broadcast(&mut con, "{t}", "probe", &[]);
        peek_payloads(&mut con, "{t}new").contains(&"probe".to_string()) && receivers >= 1
    });
    assert!(!exists(&mut con, "{t}old"), "the old name is not brought back");
}

#[test]
fn presence_is_written_again_right_after_a_flush() {
    let server = Server::start();
    let mut admin = server.client();
    acl_agent(&mut admin, "alice");
    let mut alice = server.client_as("alice", "pw");
    send(&mut alice, "{t}bob", "before", &[]);
    assert_eq!(run(&mut admin, &["FLUSHALL"]), Value::Okay);
    // Within the second that presence is written at most once: the flush emptied the
    // namespace, so this send writes it again.
    send(&mut alice, "{t}bob", "after", &[]);
    let agents: Vec<String> = presence(&mut admin, "{t}").into_iter().map(|p| p.agent).collect();
    assert_eq!(agents, ["alice"]);
}

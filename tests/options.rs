//! The delivery options: `EPHEMERAL` sends (pushed, never stored), `CONFIRM` receipts for every
//! outcome (acked, dead, expired) and `MAILBOX.STATUS`, subscription filters (`FROM`,
//! `MINPRIORITY`, `TYPE`) and their persistence, `READ ... BLOCK ms MIN n` batching, and
//! `DEBUG DIGEST` agreement (reload, AOF restart, replica) for a state holding all of them.

mod common;

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::mailbox::*;
use common::*;
use redis::{Connection, RedisResult, Value};

const RECEIPT_TYPE: &str = "application/vnd.mailbox.receipt+json";
const EPHEMERAL_CONFLICT: &str =
    "ERR EPHEMERAL messages are never stored: they take neither CONFIRM nor DEDUP";
const BAD_MINPRIORITY: &str = "ERR MINPRIORITY must be an integer from 0 to 9";
/// How long the master's timer gets to settle something time-driven (lease, TTL, delay).
const TIMER_WAIT_MS: u64 = 10_000;

// ---- helpers ---------------------------------------------------------------------------

/// `ACL SETUSER name on >pw ~* &* +@all`.
fn add_agent(admin: &mut Connection, name: &str) {
    let reply = run(admin, &["ACL", "SETUSER", name, "on", ">pw", "~*", "&*", "+@all"]);
    assert_eq!(reply, Value::Okay, "ACL SETUSER {name}");
}

/// Options with the AOF on (fsync always) and the agents as ACL users from the config, so they
/// survive restarts and exist on replicas.
fn aof_with_agents(agents: &[&str]) -> common::ServerOptions {
    let mut opts = common::ServerOptions::default();
    opts.config.push(("appendonly".into(), "yes".into()));
    opts.config.push(("appendfsync".into(), "always".into()));
    for a in agents {
        opts.config.push(("user".into(), format!("{a} on >pw ~* &* +@all")));
    }
    opts
}

/// An `[id, n]` reply (`EPHEMERAL`, `PUBLISH`, `BROADCAST`).
fn id_and_count(value: &Value) -> (String, i64) {
    let Value::Array(items) = value else { panic!("expected [id, n], got {value:?}") };
    assert_eq!(items.len(), 2, "expected [id, n], got {value:?}");
    let Value::Int(n) = items[1] else { panic!("second element is not an integer: {value:?}") };
    parse_id(&text(&items[0]));
    (text(&items[0]), n)
}

fn publish(con: &mut Connection, topic: &str, payload: &str, opts: &[&str]) -> (String, i64) {
    let mut args = vec!["MAILBOX.PUBLISH", topic, payload];
    args.extend_from_slice(opts);
    id_and_count(&run(con, &args))
}

fn status(con: &mut Connection, mailbox: &str, id: &str) -> String {
    text(&run(con, &["MAILBOX.STATUS", mailbox, id]))
}

fn exists(con: &mut Connection, key: &str) -> i64 {
    match run(con, &["EXISTS", key]) {
        Value::Int(n) => n,
        other => panic!("EXISTS {key}: {other:?}"),
    }
}

fn ids_of(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(|m| m.id.clone()).collect()
}

/// The message of `mailbox` whose `correlation` is `id`, if any.
fn receipt_for(con: &mut Connection, mailbox: &str, id: &str) -> Option<Msg> {
    let mut found: Vec<Msg> =
        peek(con, mailbox, &[]).into_iter().filter(|m| m.get("correlation").as_deref() == Some(id)).collect();
    assert!(found.len() <= 1, "more than one message in {mailbox} correlates with {id}: {found:?}");
    found.pop()
}

/// Waits (for the master's timer) until `mailbox` holds the receipt of `id`.
fn wait_receipt(con: &mut Connection, mailbox: &str, id: &str) -> Msg {
    let mut got = None;
    wait_until(&format!("a receipt of {id} in {mailbox}"), TIMER_WAIT_MS, || {
        got = receipt_for(con, mailbox, id);
        got.is_some()
    });
    got.unwrap()
}

/// Checks the receipt's envelope and returns its JSON payload, whose `id`, `outcome`, `mailbox`,
/// `by` and (for a dead letter) `reason` are checked too.
fn check_receipt(
    receipt: &Msg,
    original: &str,
    outcome: &str,
    mailbox: &str,
    by: &str,
    reason: Option<&str>,
) -> serde_json::Value {
    assert_eq!(receipt.get("type").as_deref(), Some(RECEIPT_TYPE), "{receipt:?}");
    assert_eq!(receipt.get("correlation").as_deref(), Some(original), "{receipt:?}");
    assert_eq!(receipt.str("from"), "mailbox receipt", "no agent's name on a receipt: {receipt:?}");
    let body: serde_json::Value = serde_json::from_slice(receipt.bytes("payload").unwrap())
        .unwrap_or_else(|e| panic!("receipt payload is not JSON ({e}): {receipt:?}"));
    assert_eq!(body["id"], original, "{body}");
    assert_eq!(body["outcome"], outcome, "{body}");
    assert_eq!(body["mailbox"], mailbox, "{body}");
    assert_eq!(body["by"], by, "{body}");
    assert!(body["at"].is_u64(), "`at` is a number of ms: {body}");
    match reason {
        Some(r) => assert_eq!(body["reason"], r, "{body}"),
        None => assert!(body.get("reason").is_none(), "no reason for {outcome}: {body}"),
    }
    body
}

/// Runs an ephemeral command (`f`, which checks its own reply and the push) until the master's
/// `DEBUG DIGEST` is the same before and after it. The command refreshes the sender's presence
/// in the namespace at most once a second, which does change the digest; a second run right
/// after cannot, so the message itself must leave no trace.
fn digest_unchanged_by(server: &Server, mut f: impl FnMut()) {
    for _ in 0..4 {
        let before = server.digest();
        f();
        if server.digest() == before {
            return;
        }
    }
    panic!("every EPHEMERAL command changed the master's DEBUG DIGEST: the message was stored");
}

/// What `MAILBOX.SUBS` replies for a row: `[pattern, "from", glob, "minpriority", n, "type", glob]`.
fn sub_row(pattern: &str, from: Option<&str>, min: Option<i64>, ty: Option<&str>) -> Value {
    let mut row = vec![Value::BulkString(pattern.as_bytes().to_vec())];
    if let Some(f) = from {
        row.push(Value::SimpleString("from".into()));
        row.push(Value::BulkString(f.as_bytes().to_vec()));
    }
    if let Some(m) = min {
        row.push(Value::SimpleString("minpriority".into()));
        row.push(Value::Int(m));
    }
    if let Some(t) = ty {
        row.push(Value::SimpleString("type".into()));
        row.push(Value::BulkString(t.as_bytes().to_vec()));
    }
    Value::Array(row)
}

fn subs(con: &mut Connection, mailbox: &str) -> Value {
    run(con, &["MAILBOX.SUBS", mailbox])
}

/// A `MAILBOX.READ` running on its own connection in a thread.
struct Reader {
    done: Receiver<(RedisResult<Value>, Instant)>,
    started: Instant,
}

impl Reader {
    fn start(server: &Server, args: &[&str]) -> Reader {
        let mut con = server.client();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (tx, done) = mpsc::channel();
        let started = Instant::now();
        thread::spawn(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let result = try_run(&mut con, &refs);
            let _ = tx.send((result, Instant::now()));
        });
        Reader { done, started }
    }

    fn still_blocked_after(&self, ms: u64) -> bool {
        matches!(self.done.recv_timeout(Duration::from_millis(ms)), Err(RecvTimeoutError::Timeout))
    }

    /// The reply and when it came (panics after 15 s).
    fn outcome(&self) -> (Value, Instant) {
        let (result, at) =
            self.done.recv_timeout(Duration::from_secs(15)).expect("the blocked reader was not answered");
        (result.unwrap_or_else(|e| panic!("blocked read failed: {}", err_text(&e))), at)
    }
}

fn wait_blocked(server: &Server, n: i64) {
    wait_until(&format!("{n} blocked clients"), 5_000, || blocked_clients(server) == n);
}

// ---- 1. EPHEMERAL ----------------------------------------------------------------------

#[test]
fn ephemeral_messages_are_pushed_and_never_stored() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    let mut listener = Listener::ssubscribe(&master, "mailbox:{t}bob");

    // SEND to a mailbox that does not exist: pushed to the one listener, nothing created.
    digest_unchanged_by(&master, || {
        let reply = run(&mut con, &["MAILBOX.SEND", "{t}bob", "typing...", "EPHEMERAL", "PRIORITY", "3"]);
        let (id, listeners) = id_and_count(&reply);
        assert_eq!(listeners, 1, "{reply:?}");
        let push = listener.next();
        assert_eq!(push["id"], id.as_str(), "{push}");
        assert_eq!(push["mailbox"], "{t}bob", "{push}");
        assert_eq!(push["to"], "{t}bob", "{push}");
        assert_eq!(push["from"], "default", "{push}");
        assert_eq!(push["payload"], "typing...", "{push}");
        assert_eq!(push["priority"], 3, "{push}");
    });
    assert_eq!(exists(&mut con, "{t}bob"), 0, "an EPHEMERAL send created the mailbox");
    assert!(peek(&mut con, "{t}bob", &[]).is_empty());

    // Nobody listening: 0 listeners, still nothing stored.
    let (_, listeners) = id_and_count(&run(&mut con, &["MAILBOX.SEND", "{t}carol", "ping", "EPHEMERAL"]));
    assert_eq!(listeners, 0);
    assert_eq!(exists(&mut con, "{t}carol"), 0);

    // A stored message first, so the mailbox exists (and has a digest to keep).
    let stored = send(&mut con, "{t}bob", "kept", &[]);
    assert_eq!(listener.next()["id"], stored.as_str());
    assert_eq!(run(&mut con, &["MAILBOX.SUB", "{t}bob", "news.#"]), Value::Int(1));
    let bob_digest = digest_value(&mut con, "{t}bob");

    // PUBLISH to a subscribed topic and BROADCAST to the namespace, EPHEMERAL.
    digest_unchanged_by(&master, || {
        let (id, listeners) = publish(&mut con, "{t}news.x", "progress 50%", &["EPHEMERAL"]);
        assert_eq!(listeners, 1);
        let push = listener.next();
        assert_eq!(push["id"], id.as_str(), "{push}");
        assert_eq!(push["to"], "{t}news.x", "{push}");
        assert_eq!(push["mailbox"], "{t}bob", "{push}");
        assert_eq!(push["payload"], "progress 50%", "{push}");
    });
    digest_unchanged_by(&master, || {
        let reply = run(&mut con, &["MAILBOX.BROADCAST", "{t}", "online", "EPHEMERAL", "TYPE", "text/plain"]);
        let (id, listeners) = id_and_count(&reply);
        assert_eq!(listeners, 1, "{reply:?}");
        let push = listener.next();
        assert_eq!(push["id"], id.as_str(), "{push}");
        assert_eq!(push["type"], "text/plain", "{push}");
        assert_eq!(push["payload"], "online", "{push}");
    });
    assert_eq!(digest_value(&mut con, "{t}bob"), bob_digest);
    assert_eq!(ids_of(&peek(&mut con, "{t}bob", &[])), vec![stored.clone()]);

    // The replica holds exactly what the master holds: the stored message only.
    master.wait_for_replica(&replica);
    assert_eq!(replica.digest(), master.digest());
    let mut rcon = replica.client();
    assert_eq!(ids_of(&peek(&mut rcon, "{t}bob", &[])), vec![stored]);
    assert_eq!(exists(&mut rcon, "{t}carol"), 0);

    // Counted as ephemeral, not as sent (at least 4: the digest loops may have repeated some).
    let ephemeral = stat(&mut con, "ephemeral");
    assert!((4..=13).contains(&ephemeral), "ephemeral = {ephemeral}");
    assert_eq!(stat(&mut con, "sent"), 1);

    // EPHEMERAL takes neither CONFIRM nor DEDUP, on any sending command; nothing is pushed.
    for args in [
        &["MAILBOX.SEND", "{t}bob", "x", "EPHEMERAL", "CONFIRM"][..],
        &["MAILBOX.SEND", "{t}bob", "x", "CONFIRM", "EPHEMERAL"],
        &["MAILBOX.SEND", "{t}bob", "x", "EPHEMERAL", "DEDUP", "k"],
        &["MAILBOX.SEND", "{t}bob", "x", "DEDUP", "k", "EPHEMERAL"],
        &["MAILBOX.PUBLISH", "{t}news.x", "x", "EPHEMERAL", "CONFIRM"],
        &["MAILBOX.PUBLISH", "{t}news.x", "x", "EPHEMERAL", "DEDUP", "k"],
        &["MAILBOX.BROADCAST", "{t}", "x", "EPHEMERAL", "CONFIRM"],
        &["MAILBOX.BROADCAST", "{t}", "x", "DEDUP", "k", "EPHEMERAL"],
    ] {
        assert_eq!(error_of(&mut con, args), EPHEMERAL_CONFLICT, "{args:?}");
    }
    assert_eq!(stat(&mut con, "ephemeral"), ephemeral);
    // The next push the listener sees is a new stored message, not one of the refused ones.
    let last = send(&mut con, "{t}bob", "after the refusals", &[]);
    assert_eq!(listener.next()["id"], last.as_str());
}

// ---- 2. receipts and STATUS ------------------------------------------------------------

#[test]
fn receipts_report_acked_dead_and_expired_messages() {
    let server = Server::start();
    let mut admin = server.client();
    add_agent(&mut admin, "alice");
    add_agent(&mut admin, "bob");
    let mut alice = server.client_as("alice", "pw");
    let mut bob = server.client_as("bob", "pw");

    // Acked: bob reads and acks; the receipt lands in alice's own mailbox of the namespace.
    let id = send(&mut alice, "{t}bob", "task", &["CONFIRM", "THREAD", "th1"]);
    assert!(peek(&mut admin, "{t}alice", &[]).is_empty(), "a receipt before any outcome");
    assert_eq!(read_one(&mut bob, "{t}bob", &[]).id, id);
    assert!(peek(&mut admin, "{t}alice", &[]).is_empty(), "a read alone is no outcome");
    assert_eq!(ack(&mut bob, "{t}bob", &[&id]), 1);
    let receipt = receipt_for(&mut admin, "{t}alice", &id).expect("a receipt of the acked message");
    check_receipt(&receipt, &id, "acked", "{t}bob", "bob", None);
    assert_eq!(receipt.str("to"), "{t}alice");
    assert_eq!(receipt.get("thread").as_deref(), Some("th1"), "the receipt keeps the thread");
    assert_eq!(stat(&mut admin, "receipts"), 1);

    // A receipt asks for no receipt: alice acks it and nothing comes back to bob.
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, receipt.id);
    assert_eq!(ack(&mut alice, "{t}alice", &[&receipt.id]), 1);
    assert!(peek(&mut admin, "{t}bob", &[]).is_empty(), "acking a receipt produced a receipt");
    assert!(peek(&mut admin, "{t}alice", &[]).is_empty());
    assert_eq!(stat(&mut admin, "receipts"), 1);

    // NOACK counts as acked.
    let id = send(&mut alice, "{t}bob", "fire and forget", &["CONFIRM"]);
    assert_eq!(read_one(&mut bob, "{t}bob", &["NOACK"]).id, id);
    let receipt = receipt_for(&mut admin, "{t}alice", &id).expect("a receipt of the NOACK read");
    check_receipt(&receipt, &id, "acked", "{t}bob", "bob", None);
    assert_eq!(stat(&mut admin, "receipts"), 2);

    // Without CONFIRM: no receipt.
    let plain = send(&mut alice, "{t}bob", "no receipt please", &[]);
    assert_eq!(read_one(&mut bob, "{t}bob", &[]).id, plain);
    assert_eq!(ack(&mut bob, "{t}bob", &[&plain]), 1);
    assert!(receipt_for(&mut admin, "{t}alice", &plain).is_none());
    assert_eq!(stat(&mut admin, "receipts"), 2);

    // REPLYTO redirects the receipt.
    let id = send(&mut alice, "{t}bob", "answer elsewhere", &["CONFIRM", "REPLYTO", "{t}inbox"]);
    assert_eq!(read_one(&mut bob, "{t}bob", &[]).id, id);
    assert_eq!(ack(&mut bob, "{t}bob", &[&id]), 1);
    let receipt = receipt_for(&mut admin, "{t}inbox", &id).expect("a receipt in the REPLYTO mailbox");
    check_receipt(&receipt, &id, "acked", "{t}bob", "bob", None);
    assert!(receipt_for(&mut admin, "{t}alice", &id).is_none(), "REPLYTO receipt also went to alice");
    assert_eq!(stat(&mut admin, "receipts"), 3);

    // Dead-lettered by the master's timer: the lease of its only delivery runs out.
    create(&mut admin, "{t}bob2", &["MAXDELIVER", "1"]);
    let id = send(&mut alice, "{t}bob2", "one chance", &["CONFIRM"]);
    assert_eq!(read_one(&mut admin, "{t}bob2", &["LEASE", "200"]).id, id);
    let receipt = wait_receipt(&mut admin, "{t}alice", &id);
    check_receipt(&receipt, &id, "dead", "{t}bob2", "bob2", Some("maxdeliveries"));
    assert_eq!(status(&mut admin, "{t}bob2", &id), "dead");
    assert_eq!(stat(&mut admin, "receipts"), 4);

    // Dead-lettered by a NACK at the maximum: `by` is the agent that nacked.
    let id = send(&mut alice, "{t}bob2", "nacked", &["CONFIRM"]);
    assert_eq!(read_one(&mut admin, "{t}bob2", &[]).id, id);
    assert_eq!(nack(&mut admin, "{t}bob2", &[&id]), 1);
    let receipt = receipt_for(&mut admin, "{t}alice", &id).expect("a receipt of the nacked message");
    check_receipt(&receipt, &id, "dead", "{t}bob2", "default", Some("maxdeliveries"));
    assert_eq!(stat(&mut admin, "receipts"), 5);

    // OVERFLOW drop-oldest pushes a confirmed message out.
    create(&mut admin, "{t}bob3", &["MAXLEN", "1", "OVERFLOW", "drop-oldest"]);
    let id = send(&mut alice, "{t}bob3", "first", &["CONFIRM"]);
    let newer = send(&mut alice, "{t}bob3", "second", &[]);
    assert_eq!(ids_of(&peek(&mut admin, "{t}bob3", &[])), vec![newer]);
    let dead = dead_list(&mut admin, "{t}bob3", &[]);
    assert_eq!((ids_of(&dead), dead[0].str("reason")), (vec![id.clone()], "overflow".to_string()));
    let receipt = receipt_for(&mut admin, "{t}alice", &id).expect("a receipt of the dropped message");
    check_receipt(&receipt, &id, "dead", "{t}bob3", "bob3", Some("overflow"));
    assert_eq!(stat(&mut admin, "receipts"), 6);

    // TTL expiry, by the master's timer.
    let id = send(&mut alice, "{t}bob", "short-lived", &["CONFIRM", "TTL", "200"]);
    let receipt = wait_receipt(&mut admin, "{t}alice", &id);
    check_receipt(&receipt, &id, "expired", "{t}bob", "bob", None);
    assert_eq!(status(&mut admin, "{t}bob", &id), "unknown");
    assert!(peek(&mut admin, "{t}bob", &[]).is_empty());
    assert_eq!(stat(&mut admin, "receipts"), 7);
    assert_eq!(stat(&mut admin, "receipts_dropped"), 0);

    // Every receipt alice holds is a receipt, none of them confirmed: acking them all sends none.
    let held = peek(&mut admin, "{t}alice", &[]);
    assert_eq!(held.len(), 5, "{held:?}");
    assert!(held.iter().all(|m| m.get("type").as_deref() == Some(RECEIPT_TYPE)), "{held:?}");
    let got = read(&mut alice, "{t}alice", &["COUNT", "10"]).expect("alice's receipts");
    let ids = ids_of(&got);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(ack(&mut alice, "{t}alice", &refs), 5);
    assert_eq!(stat(&mut admin, "receipts"), 7);
    for mailbox in ["{t}bob", "{t}bob2", "{t}bob3", "{t}alice"] {
        let held = peek(&mut admin, mailbox, &[]);
        assert!(held.iter().all(|m| m.get("type").as_deref() != Some(RECEIPT_TYPE)), "{mailbox}: {held:?}");
    }
}

#[test]
fn status_follows_a_message_through_its_life() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "{t}s", &["MAXDELIVER", "2"]);
    let id = send(&mut con, "{t}s", "m", &[]);
    assert_eq!(status(&mut con, "{t}s", &id), "ready");
    assert_eq!(read_one(&mut con, "{t}s", &[]).id, id);
    assert_eq!(status(&mut con, "{t}s", &id), "leased");
    assert_eq!(nack_delay(&mut con, "{t}s", &[&id], 300), 1);
    assert_eq!(status(&mut con, "{t}s", &id), "delayed");
    wait_until("the delayed message to be ready again", TIMER_WAIT_MS, || {
        status(&mut con, "{t}s", &id) == "ready"
    });
    let again = read_one(&mut con, "{t}s", &[]);
    assert_eq!((again.id.clone(), again.deliveries()), (id.clone(), 2));
    assert_eq!(status(&mut con, "{t}s", &id), "leased");
    assert_eq!(nack(&mut con, "{t}s", &[&id]), 1);
    assert_eq!(status(&mut con, "{t}s", &id), "dead");

    let acked = send(&mut con, "{t}s", "m2", &[]);
    assert_eq!(read_one(&mut con, "{t}s", &[]).id, acked);
    assert_eq!(ack(&mut con, "{t}s", &[&acked]), 1);
    assert_eq!(status(&mut con, "{t}s", &acked), "unknown");

    assert_eq!(status(&mut con, "{t}s", "1-0"), "unknown");
    assert_eq!(status(&mut con, "{t}nowhere", "1-0"), "unknown");
    assert_eq!(error_of(&mut con, &["MAILBOX.STATUS", "{t}s", "nope"]), "ERR invalid message id 'nope'");
}

// ---- 3. subscription filters -----------------------------------------------------------

#[test]
fn subscription_filters_decide_who_receives() {
    let server = Server::start();
    let mut admin = server.client();
    add_agent(&mut admin, "bot-1");
    add_agent(&mut admin, "human");
    let mut bot = server.client_as("bot-1", "pw");
    let mut human = server.client_as("human", "pw");

    let filtered = ["MAILBOX.SUB", "{t}a", "news.*", "FROM", "bot-*", "MINPRIORITY", "5", "TYPE", "text/*"];
    assert_eq!(run(&mut admin, &filtered), Value::Int(1));
    assert_eq!(run(&mut admin, &filtered), Value::Int(0), "the same filter again changes nothing");

    let (ok, n) = publish(&mut bot, "{t}news.x", "from a bot", &["PRIORITY", "7", "TYPE", "text/plain"]);
    assert_eq!(n, 1);
    for (by_bot, opts, why) in [
        (false, &["PRIORITY", "7", "TYPE", "text/plain"][..], "sender is not bot-*"),
        (true, &["PRIORITY", "4", "TYPE", "text/plain"], "priority below 5"),
        (true, &["PRIORITY", "7", "TYPE", "application/json"], "type is not text/*"),
        (true, &["PRIORITY", "7"], "no type"),
    ] {
        let con = if by_bot { &mut bot } else { &mut human };
        assert_eq!(publish(con, "{t}news.x", why, opts).1, 0, "{why}");
    }
    let (edge, n) = publish(&mut bot, "{t}news.y", "priority 5", &["PRIORITY", "5", "TYPE", "text/markdown"]);
    assert_eq!(n, 1, "MINPRIORITY 5 admits priority 5");
    assert_eq!(ids_of(&peek(&mut admin, "{t}a", &[])), vec![ok.clone(), edge.clone()]);
    assert_eq!(peek(&mut admin, "{t}a", &[])[0].str("from"), "bot-1");

    // An unfiltered subscription of the same mailbox lets in what the filtered one rejects; a
    // message both admit arrives once.
    assert_eq!(run(&mut admin, &["MAILBOX.SUB", "{t}a", "news.#"]), Value::Int(1));
    let (h, n) = publish(&mut human, "{t}news.x", "from a human", &["PRIORITY", "7", "TYPE", "text/plain"]);
    assert_eq!(n, 1);
    let (low, n) = publish(&mut bot, "{t}news.x", "low", &["PRIORITY", "4"]);
    assert_eq!(n, 1);
    let (both, n) = publish(&mut bot, "{t}news.x", "both", &["PRIORITY", "9", "TYPE", "text/html"]);
    assert_eq!(n, 1);
    assert_eq!(ids_of(&peek(&mut admin, "{t}a", &[])), vec![ok, edge, h, low, both]);

    assert_eq!(
        subs(&mut admin, "{t}a"),
        Value::Array(vec![
            sub_row("news.#", None, None, None),
            sub_row("news.*", Some("bot-*"), Some(5), Some("text/*")),
        ])
    );

    // Invalid MINPRIORITY: refused, nothing changed.
    for bad in ["10", "-1", "x"] {
        let e = error_of(&mut admin, &["MAILBOX.SUB", "{t}a", "other.*", "MINPRIORITY", bad]);
        assert_eq!(e, BAD_MINPRIORITY, "MINPRIORITY {bad}");
    }
    assert_eq!(
        error_of(&mut admin, &["MAILBOX.SUB", "{t}a", "x.*", "FROM", "a", "FROM", "b"]),
        "ERR option 'FROM' given more than once"
    );

    // Re-SUB with another filter counts 1 and replaces the filter.
    assert_eq!(run(&mut admin, &["MAILBOX.SUB", "{t}a", "news.*", "FROM", "bot-*"]), Value::Int(1));
    assert_eq!(
        subs(&mut admin, "{t}a"),
        Value::Array(vec![sub_row("news.#", None, None, None), sub_row("news.*", Some("bot-*"), None, None)])
    );
    assert_eq!(run(&mut admin, &["MAILBOX.UNSUB", "{t}a", "news.#"]), Value::Int(1));
    let before = peek(&mut admin, "{t}a", &[]).len();
    assert_eq!(publish(&mut bot, "{t}news.x", "any priority now", &[]).1, 1, "old filter still applied");
    assert_eq!(publish(&mut human, "{t}news.x", "still not human", &["PRIORITY", "9"]).1, 0);
    assert_eq!(peek(&mut admin, "{t}a", &[]).len(), before + 1);
    // And re-SUB without filter options removes the filter.
    assert_eq!(run(&mut admin, &["MAILBOX.SUB", "{t}a", "news.*"]), Value::Int(1));
    assert_eq!(subs(&mut admin, "{t}a"), Value::Array(vec![sub_row("news.*", None, None, None)]));
    assert_eq!(publish(&mut human, "{t}news.x", "human welcome", &[]).1, 1);
}

#[test]
fn filters_survive_reload_aof_restart_and_replication() {
    let mut master = Server::start_aof();
    let replica = master.replica();
    let mut con = master.client();
    let sub = |con: &mut Connection, args: &[&str]| {
        let mut all = vec!["MAILBOX.SUB"];
        all.extend_from_slice(args);
        run(con, &all)
    };
    assert_eq!(
        sub(&mut con, &["{t}a", "news.*", "FROM", "bot-*", "MINPRIORITY", "5", "TYPE", "text/*"]),
        Value::Int(1)
    );
    assert_eq!(sub(&mut con, &["{t}a", "{t}alerts.#"]), Value::Int(1));
    assert_eq!(
        sub(&mut con, &["{t}b", "news.*", "TYPE", "application/*", "MINPRIORITY", "0"]),
        Value::Int(1)
    );
    assert_eq!(sub(&mut con, &["{t}c", "*.x", "FROM", "monitor-?"]), Value::Int(1));

    let expected_a = Value::Array(vec![
        sub_row("alerts.#", None, None, None),
        sub_row("news.*", Some("bot-*"), Some(5), Some("text/*")),
    ]);
    let expected_b = Value::Array(vec![sub_row("news.*", None, Some(0), Some("application/*"))]);
    let expected_c = Value::Array(vec![sub_row("*.x", Some("monitor-?"), None, None)]);
    let check = |con: &mut Connection, when: &str| {
        assert_eq!(subs(con, "{t}a"), expected_a, "{{t}}a {when}");
        assert_eq!(subs(con, "{t}b"), expected_b, "{{t}}b {when}");
        assert_eq!(subs(con, "{t}c"), expected_c, "{{t}}c {when}");
    };
    check(&mut con, "on the master");
    let digest = master.digest();

    master.wait_for_replica(&replica);
    check(&mut replica.client(), "on the replica");
    assert_eq!(replica.digest(), digest, "replica");

    assert_eq!(run(&mut con, &["DEBUG", "RELOAD"]), Value::Okay);
    check(&mut con, "after DEBUG RELOAD");
    assert_eq!(master.digest(), digest, "after DEBUG RELOAD");

    master.kill9();
    master.restart();
    let mut con = master.client();
    check(&mut con, "after an AOF restart");
    assert_eq!(master.digest(), digest, "after an AOF restart");

    // The restored filters still decide.
    add_agent(&mut con, "bot-1");
    add_agent(&mut con, "human");
    let mut bot = master.client_as("bot-1", "pw");
    let mut human = master.client_as("human", "pw");
    assert_eq!(publish(&mut human, "{t}news.x", "no", &["PRIORITY", "9", "TYPE", "text/plain"]).1, 0);
    assert_eq!(publish(&mut bot, "{t}news.x", "no", &["PRIORITY", "4", "TYPE", "text/plain"]).1, 0);
    let (id, n) = publish(&mut bot, "{t}news.x", "yes", &["PRIORITY", "5", "TYPE", "text/plain"]);
    assert_eq!(n, 1);
    assert_eq!(ids_of(&peek(&mut con, "{t}a", &[])), vec![id]);
    assert_eq!(publish(&mut human, "{t}news.z", "to b", &["TYPE", "application/json"]).1, 1);
    assert_eq!(peek(&mut con, "{t}b", &[]).len(), 1);
}

// ---- 4. READ ... BLOCK ms MIN n --------------------------------------------------------

#[test]
fn min_keeps_a_reader_blocked_until_enough_messages_are_ready() {
    let server = Server::start();
    let mut con = server.client();
    let reader =
        Reader::start(&server, &["MAILBOX.READ", "{t}q", "COUNT", "10", "BLOCK", "5000", "MIN", "3"]);
    wait_blocked(&server, 1);

    let mut sent = Vec::new();
    for n in 1..=2 {
        sent.push(send(&mut con, "{t}q", &format!("m{n}"), &[]));
        assert!(reader.still_blocked_after(250), "the reader returned after {n} of MIN 3 messages");
        assert_eq!(blocked_clients(&server), 1, "after {n} sends");
        assert_eq!(info_int(&mut con, "{t}q", "ready"), n as i64, "a woken-and-reblocked reader leased");
    }
    let third = Instant::now();
    sent.push(send(&mut con, "{t}q", "m3", &[]));
    let (reply, at) = reader.outcome();
    let got = messages(&reply).expect("the reader got nil");
    assert_eq!(ids_of(&got), sent);
    let after_third = at.duration_since(third);
    assert!(after_third < Duration::from_millis(2_000), "answered {after_third:?} after the 3rd send");
    let took = at.duration_since(reader.started);
    assert!(took < Duration::from_millis(5_000), "the reader timed out ({took:?}) instead of waking");
    assert_eq!(info_int(&mut con, "{t}q", "leased"), 3);
    wait_blocked(&server, 0);
}

#[test]
fn min_timeout_returns_what_is_there() {
    let server = Server::start();
    let mut con = server.client();
    let a = send(&mut con, "{t}q", "a", &[]);
    let b = send(&mut con, "{t}q", "b", &[]);

    // Two ready, MIN 5: the reader waits the whole timeout, then gets the two.
    let reader = Reader::start(&server, &["MAILBOX.READ", "{t}q", "COUNT", "10", "BLOCK", "400", "MIN", "5"]);
    let (reply, at) = reader.outcome();
    let took = at.duration_since(reader.started);
    assert!(took >= Duration::from_millis(350), "MIN 5 with 2 ready answered after {took:?}");
    assert_eq!(ids_of(&messages(&reply).expect("nil instead of the 2 ready messages")), vec![a, b]);
    assert_eq!(info_int(&mut con, "{t}q", "leased"), 2);

    // Nothing ready (an empty mailbox, then a missing one): nil after the timeout.
    for mailbox in ["{t}q", "{t}missing"] {
        let reader = Reader::start(&server, &["MAILBOX.READ", mailbox, "BLOCK", "400", "MIN", "2"]);
        let (reply, at) = reader.outcome();
        let took = at.duration_since(reader.started);
        assert_eq!(reply, Value::Nil, "{mailbox}");
        assert!(took >= Duration::from_millis(350), "{mailbox}: nil after {took:?}");
    }
    wait_blocked(&server, 0);

    // MIN needs BLOCK.
    assert_eq!(error_of(&mut con, &["MAILBOX.READ", "{t}q", "MIN", "3"]), "ERR MIN needs BLOCK");
    assert_eq!(
        error_of(&mut con, &["MAILBOX.READ", "{t}q", "COUNT", "5", "MIN", "1"]),
        "ERR MIN needs BLOCK"
    );

    // Inside MULTI nothing waits: MIN gets what is there at once.
    let c = send(&mut con, "{t}m", "c", &[]);
    let start = Instant::now();
    let replies: Vec<Value> = redis::pipe()
        .atomic()
        .cmd("MAILBOX.READ")
        .arg("{t}m")
        .arg("COUNT")
        .arg(10)
        .arg("BLOCK")
        .arg(5000)
        .arg("MIN")
        .arg(5)
        .cmd("MAILBOX.READ")
        .arg("{t}empty")
        .arg("BLOCK")
        .arg(5000)
        .arg("MIN")
        .arg(5)
        .query(&mut con)
        .unwrap_or_else(|e| panic!("MULTI/EXEC: {}", err_text(&e)));
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2_000), "MIN inside MULTI waited {took:?}");
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(ids_of(&messages(&replies[0]).expect("nil inside MULTI")), vec![c]);
    assert_eq!(replies[1], Value::Nil);
}

// ---- 5. digests ------------------------------------------------------------------------

#[test]
fn digests_match_with_receipts_filters_and_confirmed_messages() {
    let mut master = Server::start_with(aof_with_agents(&["alice", "bob"]));
    let replica = master.replica();
    let mut admin = master.client();
    let mut alice = master.client_as("alice", "pw");
    let mut bob = master.client_as("bob", "pw");

    // Filtered and unfiltered subscriptions, and a topic message through them.
    let filtered = ["MAILBOX.SUB", "{t}bob", "news.*", "FROM", "ali*", "MINPRIORITY", "2", "TYPE", "text/*"];
    assert_eq!(run(&mut admin, &filtered), Value::Int(1));
    assert_eq!(run(&mut admin, &["MAILBOX.SUB", "{t}alice", "news.#"]), Value::Int(1));
    let (_, n) =
        publish(&mut alice, "{t}news.x", "topic", &["PRIORITY", "3", "TYPE", "text/plain", "CONFIRM"]);
    assert_eq!(n, 2);

    // A receipt by an ack.
    let acked = send(&mut alice, "{t}bob", "acked", &["CONFIRM", "THREAD", "th"]);
    let first = read(&mut bob, "{t}bob", &["COUNT", "10", "LEASE", "60000"]).expect("bob's messages");
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(ack(&mut bob, "{t}bob", &[&acked]), 1);
    assert!(receipt_for(&mut admin, "{t}alice", &acked).is_some());
    // Receipts by the master's timer: a dead letter and an expiry.
    create(&mut admin, "{t}bob2", &["MAXDELIVER", "1"]);
    let dead = send(&mut alice, "{t}bob2", "dies", &["CONFIRM"]);
    assert_eq!(read_one(&mut admin, "{t}bob2", &["LEASE", "200"]).id, dead);
    let expired = send(&mut alice, "{t}bob", "expires", &["CONFIRM", "TTL", "200"]);
    check_receipt(
        &wait_receipt(&mut admin, "{t}alice", &dead),
        &dead,
        "dead",
        "{t}bob2",
        "bob2",
        Some("maxdeliveries"),
    );
    check_receipt(
        &wait_receipt(&mut admin, "{t}alice", &expired),
        &expired,
        "expired",
        "{t}bob",
        "bob",
        None,
    );
    // Confirmed messages still held: one ready, one leased for long.
    let pending = send(&mut alice, "{t}bob", "pending", &["CONFIRM", "PRIORITY", "1", "META", "{\"k\":1}"]);
    let leased = send(&mut alice, "{t}carol", "leased", &["CONFIRM", "REPLYTO", "{t}inbox"]);
    assert_eq!(read_one(&mut admin, "{t}carol", &["LEASE", "60000"]).id, leased);
    let receipts = stat(&mut admin, "receipts");
    assert_eq!(receipts, 3);

    let digest = master.digest();
    assert_ne!(digest, ZERO_DIGEST);

    // The replica, with the timer's receipts.
    master.wait_for_replica(&replica);
    assert_eq!(replica.digest(), digest, "replica");
    let mut rcon = replica.client();
    assert!(receipt_for(&mut rcon, "{t}alice", &dead).is_some(), "the timer's receipt is not on the replica");
    assert!(receipt_for(&mut rcon, "{t}alice", &expired).is_some());

    // DEBUG RELOAD.
    assert_eq!(run(&mut admin, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(master.digest(), digest, "after DEBUG RELOAD");

    // The replica, promoted, kept the CONFIRM flags: acking there sends the receipts.
    assert_eq!(run(&mut rcon, &["REPLICAOF", "NO", "ONE"]), Value::Okay);
    let mut rbob = replica.client_as("bob", "pw");
    assert_eq!(ack(&mut rbob, "{t}bob", &[&first.iter().find(|m| m.id != acked).unwrap().id]), 1);
    assert_eq!(ack(&mut rcon, "{t}carol", &[&leased]), 1);
    assert!(receipt_for(&mut rcon, "{t}inbox", &leased).is_some(), "no receipt on the promoted replica");

    // A crash and an AOF replay.
    master.kill9();
    master.restart();
    assert_eq!(master.digest(), digest, "after an AOF restart");
    // The CONFIRM flag survived: bob acks the pending message, a receipt comes back.
    let mut bob = master.client_as("bob", "pw");
    let mut admin = master.client();
    let got = read(&mut bob, "{t}bob", &["COUNT", "10"]).expect("the pending message");
    assert!(ids_of(&got).contains(&pending), "{got:?}");
    assert_eq!(ack(&mut bob, "{t}bob", &[&pending]), 1);
    let receipt = receipt_for(&mut admin, "{t}alice", &pending).expect("no receipt after the restart");
    check_receipt(&receipt, &pending, "acked", "{t}bob", "bob", None);
}

//! Faults: `kill -9` under load with `appendfsync always` (R4, R5), replication of every write
//! command and of the master's timer (R6), failover after `WAIT` (R7), blocked readers (R8),
//! readers that vanish the instant a message arrives (R9), `maxmemory` with `noeviction` (R10),
//! and keyspace operations on mailboxes with leased messages (R11).
//!
//! The crash tests keep a ledger of every id a `MAILBOX.SEND` returned and of what happened to it
//! (acked, still held, dead-lettered) and print the losses and duplicates they count.
//! `MAILBOX_LONG=1` runs more rounds; `MAILBOX_SEED=n` repeats the random timings of a run.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// (mailbox, id): ids are unique per mailbox only.
type Key = (String, String);

fn key(mailbox: &str, id: &str) -> Key {
    (mailbox.to_string(), id.to_string())
}

/// One `MAILBOX.SEND` that returned an id.
#[derive(Clone, Debug)]
struct Sent {
    mailbox: String,
    id: String,
    payload: String,
}

/// What the clients of a crash test saw.
#[derive(Default)]
struct Ledger {
    sent: Vec<Sent>,
    /// `MAILBOX.ACK` of this one id replied 1.
    acked: HashSet<Key>,
    /// An ACK was sent but no reply came (the server died): either outcome is right.
    ack_unknown: HashSet<Key>,
    /// Highest `deliveries` a read handed out before the crash, for messages not acked.
    delivered: HashMap<Key, u64>,
}

type SharedLedger = Arc<Mutex<Ledger>>;

fn lock(ledger: &SharedLedger) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// `MAILBOX.ACK mailbox id` for one id, recorded in the ledger. Returns false if the
/// connection failed.
fn ack_logged(con: &mut Connection, ledger: &SharedLedger, mailbox: &str, id: &str) -> bool {
    match try_run(con, &["MAILBOX.ACK", mailbox, id]) {
        Ok(Value::Int(1)) => {
            lock(ledger).acked.insert(key(mailbox, id));
            true
        }
        Ok(Value::Int(0)) => true,
        Ok(other) => panic!("ACK {mailbox} {id} replied {other:?}"),
        Err(e) if is_io(&e) => {
            lock(ledger).ack_unknown.insert(key(mailbox, id));
            false
        }
        Err(e) => panic!("ACK {mailbox} {id} failed: {}", err_text(&e)),
    }
}

/// A connection-level failure (the server went away), as opposed to an error reply.
fn is_io(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.code().is_none()
}

/// The held messages of a mailbox (`PEEK`), by id; panics on an id that appears twice.
fn held(con: &mut Connection, mailbox: &str) -> BTreeMap<String, Msg> {
    let mut out = BTreeMap::new();
    for m in peek(con, mailbox, &[]) {
        let id = m.id.clone();
        assert!(out.insert(id.clone(), m).is_none(), "PEEK {mailbox} lists id {id} twice");
    }
    out
}

/// Reads every ready message of a mailbox with a long lease, until a read replies nil.
fn drain(con: &mut Connection, mailbox: &str) -> Vec<Msg> {
    let mut all = Vec::new();
    while let Some(batch) = read(con, mailbox, &["COUNT", "1000", "LEASE", "600000"]) {
        all.extend(batch);
    }
    all
}

fn used_memory(server: &Server) -> i64 {
    server.info_field("memory", "used_memory").expect("INFO memory has used_memory").parse().unwrap()
}

/// Waits until `n` readers are blocked, as both the module and Redis count them.
fn wait_blocked(server: &Server, con: &mut Connection, n: i64) {
    wait_until(&format!("{n} blocked readers"), 10_000, || {
        stat(con, "blocked_readers") == n && blocked_clients(server) == n
    });
}

fn int_of(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// The losses and duplicates a check counted, printed and asserted by the caller.
#[derive(Default, Debug)]
struct Tally {
    /// Ids a SEND returned that are neither held nor acked (nor dead, nor expired).
    lost: Vec<Key>,
    /// Acked ids that came back, payloads held under two ids, ids read twice.
    duplicates: Vec<String>,
}

impl Tally {
    fn report(&self, what: &str) {
        eprintln!("{what}: losses {}, duplicates {}", self.lost.len(), self.duplicates.len());
        for k in self.lost.iter().take(20) {
            eprintln!("  lost: {} {}", k.0, k.1);
        }
        for d in self.duplicates.iter().take(20) {
            eprintln!("  duplicate: {d}");
        }
    }

    fn assert_clean(&self, what: &str) {
        assert!(
            self.lost.is_empty() && self.duplicates.is_empty(),
            "{what}: {} lost {:?}, {} duplicated {:?}",
            self.lost.len(),
            self.lost.iter().take(10).collect::<Vec<_>>(),
            self.duplicates.len(),
            self.duplicates.iter().take(10).collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// R4: every SEND that returned an id survives kill -9 with appendfsync always
// ---------------------------------------------------------------------------------------------

const R4_PRODUCERS: usize = 3;
const R4_SHARED: &str = "r4:shared";

fn r4_producer(mut con: Connection, ledger: SharedLedger, round: usize, t: usize) {
    let own = format!("r4:own{t}");
    for n in 0.. {
        let mailbox = if n % 2 == 0 { own.as_str() } else { R4_SHARED };
        let payload = format!("r{round}-t{t}-n{n}");
        match try_run(&mut con, &["MAILBOX.SEND", mailbox, &payload]) {
            Ok(v) => lock(&ledger).sent.push(Sent { mailbox: mailbox.to_string(), id: text(&v), payload }),
            Err(e) if is_io(&e) => return,
            Err(e) => panic!("SEND {mailbox} failed: {}", err_text(&e)),
        }
    }
}

/// Reads the shared mailbox and acks what it reads, one id per ACK.
fn r4_consumer(mut con: Connection, ledger: SharedLedger) {
    loop {
        let got = match try_run(&mut con, &["MAILBOX.READ", R4_SHARED, "COUNT", "5", "LEASE", "600000"]) {
            Ok(v) => messages(&v).unwrap_or_default(),
            Err(e) if is_io(&e) => return,
            Err(e) => panic!("READ failed: {}", err_text(&e)),
        };
        if got.is_empty() {
            sleep_ms(2);
        }
        for m in got {
            if !ack_logged(&mut con, &ledger, R4_SHARED, &m.id) {
                return;
            }
        }
    }
}

/// After a restart: every logged id is held or was acked; no acked id is held; no payload is
/// held twice.
fn r4_check(con: &mut Connection, ledger: &Ledger) -> (Tally, usize, usize) {
    let mut boxes: Vec<String> = (0..R4_PRODUCERS).map(|t| format!("r4:own{t}")).collect();
    boxes.push(R4_SHARED.to_string());
    let mut present: HashMap<Key, String> = HashMap::new();
    let mut tally = Tally::default();
    let mut payloads: HashMap<String, Key> = HashMap::new();
    for b in &boxes {
        for (id, m) in held(con, b) {
            let payload = m.payload();
            if let Some(other) = payloads.insert(payload.clone(), key(b, &id)) {
                tally.duplicates.push(format!("payload {payload} held as {other:?} and {b} {id}"));
            }
            present.insert(key(b, &id), payload);
        }
    }
    let mut logged = HashSet::new();
    for s in &ledger.sent {
        let k = key(&s.mailbox, &s.id);
        assert!(logged.insert(k.clone()), "SEND returned id {} of {} twice", s.id, s.mailbox);
        match present.get(&k) {
            Some(p) => {
                assert_eq!(p, &s.payload, "{} {} holds another payload than was sent", s.mailbox, s.id);
                if ledger.acked.contains(&k) {
                    tally.duplicates.push(format!("{} {} was acked and is back", s.mailbox, s.id));
                }
            }
            None if ledger.acked.contains(&k) || ledger.ack_unknown.contains(&k) => {}
            None => tally.lost.push(k),
        }
    }
    let unlogged = present.keys().filter(|k| !logged.contains(*k)).count();
    (tally, present.len(), unlogged)
}

#[test]
fn r4_logged_sends_survive_kill9_with_appendfsync_always() {
    let rounds = if long_run() { 20 } else { 3 };
    let mut rng = Rng::new("R4");
    let mut server = Server::start_aof();
    let ledger: SharedLedger = Arc::default();
    let started = Instant::now();
    for round in 0..rounds {
        let mut handles = Vec::new();
        for t in 0..R4_PRODUCERS {
            let (con, ledger) = (server.client(), ledger.clone());
            handles.push(thread::spawn(move || r4_producer(con, ledger, round, t)));
        }
        let (con, l) = (server.client(), ledger.clone());
        handles.push(thread::spawn(move || r4_consumer(con, l)));
        let delay = rng.range(200, 800);
        sleep_ms(delay);
        server.kill9();
        for h in handles {
            h.join().expect("a client thread panicked");
        }
        server.restart();
        let mut con = server.client();
        let ledger = lock(&ledger);
        let (tally, present, unlogged) = r4_check(&mut con, &ledger);
        eprintln!(
            "R4 round {}/{rounds}: killed after {delay} ms; {} ids logged in all, {} acked, {} acks \
             unanswered, {present} held, {unlogged} held without a logged reply (sends in flight)",
            round + 1,
            ledger.sent.len(),
            ledger.acked.len(),
            ledger.ack_unknown.len()
        );
        tally.report(&format!("R4 round {}", round + 1));
        tally.assert_clean(&format!("R4 round {} (killed after {delay} ms)", round + 1));
    }
    eprintln!("R4: {rounds} rounds in {:?}", started.elapsed());
    assert!(!lock(&ledger).sent.is_empty(), "no send returned an id before the kills");
}

// ---------------------------------------------------------------------------------------------
// R5: unacked messages are redelivered after a crash, acked ones never come back
// ---------------------------------------------------------------------------------------------

/// Whether the consumers of R5 ack this payload: half of them, by number.
fn r5_acks(payload: &str) -> bool {
    payload.rsplit('-').next().and_then(|n| n.parse::<u64>().ok()).map(|n| n % 2 == 0).unwrap_or(false)
}

fn r5_consumer(mut con: Connection, ledger: SharedLedger, boxes: Vec<String>) {
    for n in 0.. {
        let mailbox = &boxes[n % boxes.len()];
        let got = match try_run(&mut con, &["MAILBOX.READ", mailbox, "COUNT", "5", "LEASE", "300"]) {
            Ok(v) => messages(&v).unwrap_or_default(),
            Err(e) if is_io(&e) => return,
            Err(e) => panic!("READ failed: {}", err_text(&e)),
        };
        for m in got {
            {
                let mut l = lock(&ledger);
                let d = l.delivered.entry(key(mailbox, &m.id)).or_insert(0);
                *d = (*d).max(m.deliveries());
            }
            if r5_acks(&m.payload()) && !ack_logged(&mut con, &ledger, mailbox, &m.id) {
                return;
            }
        }
    }
}

fn r5_producer(mut con: Connection, ledger: SharedLedger, mailbox: String, round: usize) {
    for n in 1_000_000.. {
        let payload = format!("r{round}-late-{n}");
        match try_run(&mut con, &["MAILBOX.SEND", &mailbox, &payload]) {
            Ok(v) => lock(&ledger).sent.push(Sent { mailbox: mailbox.clone(), id: text(&v), payload }),
            Err(e) if is_io(&e) => return,
            Err(e) => panic!("SEND failed: {}", err_text(&e)),
        }
        sleep_ms(1);
    }
}

#[test]
fn r5_unacked_messages_are_redelivered_after_kill9() {
    let rounds = if long_run() { 10 } else { 2 };
    let mut rng = Rng::new("R5");
    let mut server = Server::start_aof();
    let started = Instant::now();
    for round in 0..rounds {
        let boxes: Vec<String> = (0..2).map(|i| format!("r5:{round}:{i}")).collect();
        let ledger: SharedLedger = Arc::default();
        let mut con = server.client();
        for b in &boxes {
            // No dead-lettering here: every unacked message must come back.
            create(&mut con, b, &["MAXDELIVER", "0"]);
            let mut pipe = redis::pipe();
            for n in 0..300 {
                pipe.cmd("MAILBOX.SEND").arg(b).arg(format!("r{round}-pre-{n}"));
            }
            let ids: Vec<String> = pipe.query(&mut con).expect("prefill");
            let mut l = lock(&ledger);
            for (n, id) in ids.into_iter().enumerate() {
                l.sent.push(Sent { mailbox: b.clone(), id, payload: format!("r{round}-pre-{n}") });
            }
        }
        let mut handles = Vec::new();
        for _ in 0..2 {
            let (c, l, b) = (server.client(), ledger.clone(), boxes.clone());
            handles.push(thread::spawn(move || r5_consumer(c, l, b)));
        }
        let (c, l, b) = (server.client(), ledger.clone(), boxes[0].clone());
        handles.push(thread::spawn(move || r5_producer(c, l, b, round)));
        let delay = rng.range(200, 800);
        sleep_ms(delay);
        server.kill9();
        for h in handles {
            h.join().expect("a client thread panicked");
        }
        server.restart();
        let mut con = server.client();
        // The leases (300 ms) run out and the master's timer makes the messages ready again.
        for b in &boxes {
            wait_until(&format!("the leases of {b} run out after the restart"), 20_000, || {
                info_int(&mut con, b, "leased") == 0
            });
        }
        let ledger = lock(&ledger);
        let mut tally = Tally::default();
        let mut drained: HashMap<Key, u64> = HashMap::new();
        for b in &boxes {
            for m in drain(&mut con, b) {
                if drained.insert(key(b, &m.id), m.deliveries()).is_some() {
                    tally.duplicates.push(format!("{b} {} handed out twice by the drain", m.id));
                }
            }
        }
        let (mut redelivered, mut not_raised) = (0, Vec::new());
        for s in &ledger.sent {
            let k = key(&s.mailbox, &s.id);
            let acked = ledger.acked.contains(&k);
            match drained.get(&k) {
                Some(_) if acked => tally.duplicates.push(format!("{} {} was acked and is back", k.0, k.1)),
                Some(&d) => {
                    if let Some(&before) = ledger.delivered.get(&k) {
                        redelivered += 1;
                        if d < 2 || d <= before {
                            not_raised.push(format!("{} {}: delivered {before} before, now {d}", k.0, k.1));
                        }
                    }
                }
                None if acked || ledger.ack_unknown.contains(&k) => {}
                None => tally.lost.push(k),
            }
        }
        eprintln!(
            "R5 round {}/{rounds}: killed after {delay} ms; {} sent, {} read before the kill, {} acked, \
             {} acks unanswered, {redelivered} redelivered after the restart, {} drained in all",
            round + 1,
            ledger.sent.len(),
            ledger.delivered.len(),
            ledger.acked.len(),
            ledger.ack_unknown.len(),
            drained.len()
        );
        tally.report(&format!("R5 round {}", round + 1));
        tally.assert_clean(&format!("R5 round {} (killed after {delay} ms)", round + 1));
        assert!(not_raised.is_empty(), "R5: redelivered without a raised delivery count: {not_raised:?}");
    }
    eprintln!("R5: {rounds} rounds in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// R6: every write command, and the master's timer, reach the replica; the replica has no timer
// ---------------------------------------------------------------------------------------------

/// The module's commands that may write, from `COMMAND LIST FILTERBY MODULE mailbox` and the
/// flags of `COMMAND INFO`, lowercase: those flagged `write`, and those flagged neither `write`
/// nor `readonly` (commands with reading and writing forms, e.g. `DEAD LIST` / `DEAD PURGE`).
/// Returns (flagged write, mixed).
fn module_write_commands(con: &mut Connection) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("mailbox")
        .query(con)
        .expect("COMMAND LIST FILTERBY MODULE mailbox");
    assert!(!names.is_empty(), "the module registers no commands?");
    let mut info = redis::cmd("COMMAND");
    info.arg("INFO");
    for n in &names {
        info.arg(n);
    }
    let Value::Array(entries) = info.query::<Value>(con).expect("COMMAND INFO") else {
        panic!("COMMAND INFO did not reply an array");
    };
    let (mut writes, mut mixed) = (Vec::new(), Vec::new());
    for entry in entries {
        let Value::Array(parts) = entry else { panic!("COMMAND INFO entry {entry:?}") };
        let name = text(&parts[0]).to_lowercase();
        // A container (`mailbox.acl`) only holds subcommands, which carry the flags.
        if names.iter().any(|n| n.to_lowercase().starts_with(&format!("{name}|"))) {
            continue;
        }
        let flags: Vec<String> = match &parts[2] {
            Value::Array(f) | Value::Set(f) => f.iter().map(text).collect(),
            other => panic!("flags of {name}: {other:?}"),
        };
        if flags.iter().any(|f| f == "write") {
            writes.push(name);
        } else if !flags.iter().any(|f| f == "readonly") {
            mixed.push(name);
        }
    }
    writes.sort();
    mixed.sort();
    (writes, mixed)
}

fn assert_replica_digest(master: &Server, replica: &Server, after: &str) {
    master.wait_for_replica(replica);
    assert_eq!(replica.digest(), master.digest(), "the replica's DEBUG DIGEST differs after {after}");
}

fn wait_info(con: &mut Connection, mailbox: &str, field: &str, value: i64) {
    wait_until(&format!("INFO {mailbox} {field} = {value}"), 10_000, || {
        info_int(con, mailbox, field) == value
    });
}

#[test]
fn r6_every_write_command_and_timer_reaches_the_replica() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    let mut rcon = replica.client();
    let (writes, mixed) = module_write_commands(&mut con);
    eprintln!("R6: the module's write commands: {writes:?}; with reading and writing forms: {mixed:?}");
    let mut exercised: HashSet<&str> = HashSet::new();
    let sync = |what: &str| assert_replica_digest(&master, &replica, what);

    // MAILBOX.EFFECT: clients cannot call it.
    let digest = master.digest();
    let e = error_of(&mut con, &["MAILBOX.EFFECT", "r6:a", "REMOVE", "1-0"]);
    assert!(e.starts_with("ERR MAILBOX.EFFECT is only accepted"), "MAILBOX.EFFECT from a client: {e}");
    assert_eq!(master.digest(), digest, "a refused MAILBOX.EFFECT changed the data");
    exercised.insert("mailbox.effect");

    create(&mut con, "r6:a", &["MAXDELIVER", "2", "LEASE", "60000", "DEDUPWINDOW", "60000"]);
    sync("CREATE");
    create(&mut con, "r6:a", &["UPDATE", "MAXLEN", "100"]);
    sync("CREATE UPDATE");
    exercised.insert("mailbox.create");

    let plain = send(&mut con, "r6:a", "plain", &[]);
    sync("SEND");
    let full = send(
        &mut con,
        "r6:a",
        "every option",
        &[
            "PRIORITY",
            "7",
            "TTL",
            "600000",
            "DEDUP",
            "d1",
            "TYPE",
            "text/plain",
            "THREAD",
            "t1",
            "CORRELATION",
            "c1",
            "REPLYTO",
            "r6:b",
            "META",
            r#"{"k":[1,2]}"#,
            "CONFIRM",
        ],
    );
    sync("SEND with every option");
    assert_eq!(send(&mut con, "r6:a", "again", &["DEDUP", "d1"]), full);
    sync("SEND, a dedup hit");
    send(&mut con, "{t}alice", "as bob", &["AS", "bob"]);
    sync("SEND AS");
    // Past the once-a-second presence refresh, so the EPHEMERAL send updates the sender's
    // presence in the namespace key: that change must reach the replica too.
    sleep_ms(1100);
    let digest = master.digest_value("r6:a");
    let eph = run(&mut con, &["MAILBOX.SEND", "r6:eph", "ping", "EPHEMERAL"]);
    assert!(matches!(&eph, Value::Array(v) if v.len() == 2), "SEND EPHEMERAL replied {eph:?}");
    // It stores no message (the sender's presence in the namespace key may change).
    assert_eq!(run(&mut con, &["EXISTS", "r6:eph"]), Value::Int(0), "an EPHEMERAL send created a mailbox");
    assert_eq!(master.digest_value("r6:a"), digest);
    sync("SEND EPHEMERAL");
    exercised.insert("mailbox.send");

    assert_eq!(read_one(&mut con, "r6:a", &[]).id, full);
    sync("READ");
    assert_eq!(read_one(&mut con, "r6:a", &["NOACK"]).id, plain);
    sync("READ NOACK");
    let mut reader = master.client();
    let blocked =
        thread::spawn(move || read(&mut reader, "r6:blocked", &["BLOCK", "30000", "LEASE", "600000"]));
    wait_until("a blocked reader", 10_000, || stat(&mut con, "blocked_readers") == 1);
    let woke = send(&mut con, "r6:blocked", "wake", &[]);
    assert_eq!(blocked.join().unwrap().expect("the blocked reader got nil")[0].id, woke);
    sync("READ BLOCK served by a SEND");
    let mut reader = master.client();
    let batch = thread::spawn(move || {
        read(&mut reader, "r6:batch", &["COUNT", "5", "BLOCK", "30000", "MIN", "2", "LEASE", "600000"])
    });
    wait_until("a blocked reader", 10_000, || stat(&mut con, "blocked_readers") == 1);
    send(&mut con, "r6:batch", "one", &[]);
    send(&mut con, "r6:batch", "two", &[]);
    assert_eq!(batch.join().unwrap().expect("READ BLOCK MIN 2 got nil").len(), 2);
    sync("READ BLOCK MIN served by two SENDs");
    exercised.insert("mailbox.read");

    // The ACK of a CONFIRM message also writes a receipt (to REPLYTO r6:b).
    assert_eq!(ack(&mut con, "r6:a", &[&full]), 1);
    sync("ACK (with a receipt)");
    exercised.insert("mailbox.ack");

    let n = send(&mut con, "r6:a", "to nack", &[]);
    read_one(&mut con, "r6:a", &[]);
    assert_eq!(nack(&mut con, "r6:a", &[&n]), 1);
    sync("NACK");
    read_one(&mut con, "r6:a", &[]);
    assert_eq!(nack(&mut con, "r6:a", &[&n]), 1);
    sync("NACK at MAXDELIVER (dead letter)");
    exercised.insert("mailbox.nack");
    assert_eq!(dead_list(&mut rcon, "r6:a", &[]).len(), 1, "DEAD LIST on the replica");
    let e = error_of(&mut rcon, &["MAILBOX.DEAD", "REQUEUE", "r6:a", &n]);
    assert!(!e.is_empty(), "DEAD REQUEUE on the replica is refused");
    assert_eq!(dead(&mut con, "r6:a", "REQUEUE", &[&n]), 1);
    sync("DEAD REQUEUE");
    read_one(&mut con, "r6:a", &[]);
    assert_eq!(nack_delay(&mut con, "r6:a", &[&n], 600_000), 1);
    sync("NACK DELAY");
    let d = send(&mut con, "r6:a", "dies", &[]);
    for _ in 0..2 {
        assert_eq!(read_one(&mut con, "r6:a", &[]).id, d);
        nack(&mut con, "r6:a", &[&d]);
    }
    assert_eq!(dead(&mut con, "r6:a", "PURGE", &["ALL"]), 1);
    sync("DEAD PURGE");
    exercised.extend(["mailbox.dead|requeue", "mailbox.dead|purge"]);

    assert_eq!(int_of(&run(&mut con, &["MAILBOX.SUB", "{t}alice", "research.#", "#.urgent"])), 2);
    sync("SUB");
    run(
        &mut con,
        &["MAILBOX.SUB", "{t}alice", "alerts.*", "FROM", "mon*", "MINPRIORITY", "5", "TYPE", "text/*"],
    );
    sync("SUB with filters");
    exercised.insert("mailbox.sub");
    let published = run(&mut con, &["MAILBOX.PUBLISH", "{t}research.nlp", "paper", "PRIORITY", "2"]);
    let Value::Array(p) = &published else { panic!("PUBLISH replied {published:?}") };
    assert_eq!(int_of(&p[1]), 1, "PUBLISH receivers");
    sync("PUBLISH");
    run(&mut con, &["MAILBOX.PUBLISH", "{t}alerts.disk", "filtered out", "PRIORITY", "1"]);
    sync("PUBLISH that a filter drops");
    exercised.insert("mailbox.publish");
    let broadcast = run(&mut con, &["MAILBOX.BROADCAST", "{t}", "to all"]);
    let Value::Array(b) = &broadcast else { panic!("BROADCAST replied {broadcast:?}") };
    assert!(int_of(&b[1]) >= 1, "BROADCAST receivers: {broadcast:?}");
    sync("BROADCAST");
    exercised.insert("mailbox.broadcast");
    let question = read_one(&mut con, "{t}alice", &[]);
    run(&mut con, &["MAILBOX.REPLY", "{t}alice", &question.id, "an answer"]);
    sync("REPLY");
    exercised.insert("mailbox.reply");
    assert_eq!(int_of(&run(&mut con, &["MAILBOX.UNSUB", "{t}alice", "#.urgent"])), 1);
    sync("UNSUB");
    exercised.insert("mailbox.unsub");

    let e = error_of(&mut rcon, &["MAILBOX.ACL", "GRANT", "carol", "read", "{t}alice"]);
    assert!(!e.is_empty(), "ACL GRANT on the replica is refused");
    assert_eq!(int_of(&run(&mut con, &["MAILBOX.ACL", "GRANT", "carol", "read", "{t}alice"])), 1);
    sync("ACL GRANT");
    assert_eq!(int_of(&run(&mut rcon, &["MAILBOX.ACL", "CHECK", "carol", "read", "{t}alice"])), 1);
    assert_eq!(int_of(&run(&mut con, &["MAILBOX.ACL", "REVOKE", "carol", "read", "{t}alice"])), 1);
    sync("ACL REVOKE");
    run(&mut con, &["MAILBOX.ACL", "QUOTA", "carol", "10", "{t}", "BURST", "5"]);
    sync("ACL QUOTA");
    run(&mut con, &["MAILBOX.ACL", "QUOTA", "carol", "RESET", "{t}"]);
    sync("ACL QUOTA RESET");
    exercised.extend(["mailbox.acl|grant", "mailbox.acl|revoke", "mailbox.acl|quota"]);

    // The master's timer: lease expiry, TTL expiry, dead-lettering (each with a receipt), the
    // end of a NACK delay and of a dedup window. INFO does not sweep, so each change below comes
    // from the timer.
    create(&mut con, "r6:timer", &["LEASE", "300", "MAXDELIVER", "2", "DEDUPWINDOW", "300"]);
    send(&mut con, "r6:timer", "lease", &["CONFIRM", "REPLYTO", "r6:receipts"]);
    read_one(&mut con, "r6:timer", &[]);
    sync("a 300 ms lease");
    wait_info(&mut con, "r6:timer", "leased", 0);
    sync("lease expiry by the timer");
    read_one(&mut con, "r6:timer", &[]);
    wait_info(&mut con, "r6:timer", "dead", 1);
    sync("dead-lettering by the timer, with a receipt");
    send(&mut con, "r6:ttl", "ttl", &["TTL", "300", "CONFIRM", "REPLYTO", "r6:receipts"]);
    send(&mut con, "r6:ttl", "stays", &[]);
    sync("a send with TTL");
    wait_info(&mut con, "r6:ttl", "ready", 1);
    sync("TTL expiry by the timer, with a receipt");
    wait_info(&mut con, "r6:receipts", "ready", 2);
    let x = send(&mut con, "r6:delay", "x", &[]);
    read_one(&mut con, "r6:delay", &["LEASE", "600000"]);
    nack_delay(&mut con, "r6:delay", &[&x], 300);
    wait_info(&mut con, "r6:delay", "ready", 1);
    sync("the end of a NACK delay by the timer");
    send(&mut con, "r6:timer", "dedup", &["DEDUP", "k"]);
    wait_info(&mut con, "r6:timer", "dedup-keys", 0);
    sync("the end of a dedup window by the timer");

    let may_write: Vec<&String> = writes.iter().chain(&mixed).collect();
    let missing: Vec<&&String> = may_write.iter().filter(|w| !exercised.contains(w.as_str())).collect();
    assert!(
        missing.is_empty(),
        "commands of the module that may write and this test does not exercise: {missing:?}"
    );
    let unknown: Vec<&&str> = exercised.iter().filter(|e| !may_write.iter().any(|w| w == *e)).collect();
    assert!(unknown.is_empty(), "exercised commands flagged readonly: {unknown:?}");
}

#[test]
fn r6_the_replica_runs_no_timer_of_its_own() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    // Deadlines 1.5 s after the first write; the master is frozen for 3 s from well before them.
    for attempt in 1..=3 {
        let mailbox = format!("frozen{attempt}");
        let start = Instant::now();
        create(&mut con, &mailbox, &["LEASE", "1500", "MAXDELIVER", "1"]);
        send(&mut con, &mailbox, "leased, dead when the lease ends", &[]);
        read_one(&mut con, &mailbox, &[]);
        send(&mut con, &mailbox, "ttl", &["TTL", "1500"]);
        master.wait_for_replica(&replica);
        let before = replica.digest();
        assert_eq!(before, master.digest());
        let mut sleeper = master.client();
        let frozen = thread::spawn(move || run(&mut sleeper, &["DEBUG", "SLEEP", "3"]));
        sleep_ms(100);
        if start.elapsed() > Duration::from_millis(1200) {
            eprintln!("R6 attempt {attempt}: setup took {:?}, too slow to judge; again", start.elapsed());
            frozen.join().unwrap();
            continue;
        }
        while start.elapsed() < Duration::from_millis(1800) {
            sleep_ms(20);
        }
        let mut rcon = replica.client();
        let mut checks = 0;
        while start.elapsed() < Duration::from_millis(2900) {
            assert_eq!(replica.digest(), before, "the replica changed its data while the master was frozen");
            // A read on the replica may hide the message past its TTL (like an expired key),
            // but the replica stores it until the master's effect removes it.
            let on_replica = peek(&mut rcon, &mailbox, &[]);
            assert_eq!(on_replica[0].get("state").as_deref(), Some("leased"), "{on_replica:?}");
            let counts: Vec<i64> =
                ["leased", "ready", "dead"].iter().map(|f| info_int(&mut rcon, &mailbox, f)).collect();
            assert_eq!(counts, [1, 1, 0], "the replica's leased, ready, dead past the deadlines");
            checks += 1;
            sleep_ms(100);
        }
        let slept = frozen.join().unwrap();
        assert_eq!(slept, Value::Okay);
        assert!(checks > 0);
        // The master wakes; its timer dead-letters and expires; the replica follows.
        wait_info(&mut con, &mailbox, "dead", 1);
        wait_info(&mut con, &mailbox, "ready", 0);
        assert_replica_digest(&master, &replica, "the master's timer caught up");
        assert_ne!(replica.digest(), before);
        eprintln!("R6: the replica kept its digest through {checks} checks past the deadlines");
        return;
    }
    panic!("the machine was too slow three times to freeze the master before the deadlines");
}

// ---------------------------------------------------------------------------------------------
// R7: sends confirmed by WAIT 1 survive a failover
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct FailoverLedger {
    confirmed: Vec<Sent>,
    unconfirmed: usize,
    /// ACK replied 1 (whether or not WAIT confirmed it).
    acked: HashSet<Key>,
    /// ACK replied 1 and WAIT confirmed it.
    ack_confirmed: HashSet<Key>,
    ack_unknown: HashSet<Key>,
}

fn r7_producer(mut con: Connection, ledger: Arc<Mutex<FailoverLedger>>, t: usize) {
    let mailbox = format!("r7:{}", t % 2);
    for n in 0.. {
        let payload = format!("t{t}-{n}");
        let id = match try_run(&mut con, &["MAILBOX.SEND", &mailbox, &payload]) {
            Ok(v) => text(&v),
            Err(e) if is_io(&e) => return,
            Err(e) => panic!("SEND failed: {}", err_text(&e)),
        };
        match redis::cmd("WAIT").arg(1).arg(1000).query::<i64>(&mut con) {
            Ok(n) if n >= 1 => {
                let mut l = ledger.lock().unwrap();
                l.confirmed.push(Sent { mailbox: mailbox.clone(), id, payload })
            }
            Ok(_) => ledger.lock().unwrap().unconfirmed += 1,
            Err(e) => {
                assert!(is_io(&e), "WAIT failed: {}", err_text(&e));
                ledger.lock().unwrap().unconfirmed += 1;
                return;
            }
        }
    }
}

fn r7_consumer(mut con: Connection, ledger: Arc<Mutex<FailoverLedger>>) {
    loop {
        let got = match try_run(&mut con, &["MAILBOX.READ", "r7:0", "COUNT", "3", "LEASE", "600000"]) {
            Ok(v) => messages(&v).unwrap_or_default(),
            Err(_) => return,
        };
        if got.is_empty() {
            sleep_ms(5);
        }
        for m in got {
            let k = key("r7:0", &m.id);
            match try_run(&mut con, &["MAILBOX.ACK", "r7:0", &m.id]) {
                Ok(Value::Int(1)) => {
                    ledger.lock().unwrap().acked.insert(k.clone());
                }
                Ok(_) => continue,
                Err(_) => {
                    ledger.lock().unwrap().ack_unknown.insert(k);
                    return;
                }
            }
            match redis::cmd("WAIT").arg(1).arg(1000).query::<i64>(&mut con) {
                Ok(n) if n >= 1 => {
                    ledger.lock().unwrap().ack_confirmed.insert(k);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }
}

#[test]
fn r7_sends_confirmed_by_wait_survive_failover() {
    let rounds = if long_run() { 10 } else { 2 };
    let mut rng = Rng::new("R7");
    let started = Instant::now();
    for round in 1..=rounds {
        let mut master = Server::start();
        let replica = master.replica();
        // After a diskless sync the master streams to the replica only once the replica's first
        // REPLCONF ACK arrives (up to a second later): until then WAIT cannot be answered.
        let mut con = master.client();
        create(&mut con, "r7:0", &[]);
        wait_until("WAIT 1 sees the replica", 20_000, || {
            redis::cmd("WAIT").arg(1).arg(500).query::<i64>(&mut con).unwrap() >= 1
        });
        let ledger: Arc<Mutex<FailoverLedger>> = Arc::default();
        let mut handles = Vec::new();
        for t in 0..3 {
            let (c, l) = (master.client(), ledger.clone());
            handles.push(thread::spawn(move || r7_producer(c, l, t)));
        }
        let (c, l) = (master.client(), ledger.clone());
        handles.push(thread::spawn(move || r7_consumer(c, l)));
        let delay = rng.range(200, 800);
        sleep_ms(delay);
        master.kill9();
        for h in handles {
            h.join().expect("a client thread panicked");
        }
        let mut rcon = replica.client();
        assert_eq!(run(&mut rcon, &["REPLICAOF", "NO", "ONE"]), Value::Okay);
        wait_until("the replica is promoted", 10_000, || {
            replica.info_field("replication", "role").as_deref() == Some("master")
        });
        let l = ledger.lock().unwrap();
        let mut present: HashMap<Key, String> = HashMap::new();
        for b in ["r7:0", "r7:1"] {
            for (id, m) in held(&mut rcon, b) {
                present.insert(key(b, &id), m.payload());
            }
        }
        let mut tally = Tally::default();
        for s in &l.confirmed {
            let k = key(&s.mailbox, &s.id);
            match present.get(&k) {
                Some(p) => assert_eq!(p, &s.payload, "{} {} holds another payload", k.0, k.1),
                None if l.acked.contains(&k) || l.ack_unknown.contains(&k) => {}
                None => tally.lost.push(k),
            }
        }
        for k in &l.ack_confirmed {
            if present.contains_key(k) {
                tally.duplicates.push(format!("{} {}: an ACK confirmed by WAIT is undone", k.0, k.1));
            }
        }
        // The promoted replica takes writes, and its ids do not collide with the old ones.
        let id = send(&mut rcon, "r7:0", "after the failover", &[]);
        assert!(!present.contains_key(&key("r7:0", &id)), "the new master reused id {id}");
        eprintln!(
            "R7 round {round}/{rounds}: master killed after {delay} ms; {} sends confirmed by WAIT, {} \
             not confirmed, {} acked ({} confirmed), {} held on the promoted replica",
            l.confirmed.len(),
            l.unconfirmed,
            l.acked.len(),
            l.ack_confirmed.len(),
            present.len()
        );
        tally.report(&format!("R7 round {round}"));
        tally.assert_clean(&format!("R7 round {round} (master killed after {delay} ms)"));
        assert!(!l.confirmed.is_empty(), "R7 round {round}: WAIT confirmed no send");
    }
    eprintln!("R7: {rounds} rounds in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// R8: several blocked readers; BLOCK inside Lua; memory flat over many block/unblock loops
// ---------------------------------------------------------------------------------------------

#[test]
fn r8_four_blocked_readers_get_each_message_exactly_once() {
    const READERS: usize = 4;
    const MESSAGES: usize = 20;
    let server = Server::start();
    let mut con = server.client();
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(usize, Vec<Msg>)>();
    let mut ids = Vec::new();
    let mut handles = Vec::new();
    for r in 0..READERS {
        let mut c = server.client();
        ids.push(client_id(&mut c));
        let (tx, done) = (tx.clone(), done.clone());
        handles.push(thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                match read(&mut c, "r8:many", &["BLOCK", "0", "LEASE", "600000", "COUNT", "5"]) {
                    Some(msgs) => tx.send((r, msgs)).unwrap(),
                    None => continue, // CLIENT UNBLOCK
                }
            }
        }));
    }
    drop(tx);
    wait_blocked(&server, &mut con, READERS as i64);
    let mut sent = Vec::new();
    let mut got: Vec<(usize, Msg)> = Vec::new();
    for i in 0..MESSAGES {
        sent.push(send(&mut con, "r8:many", &format!("m{i}"), &[]));
        let (r, msgs) = rx.recv_timeout(Duration::from_secs(10)).expect("no reader was woken by a send");
        got.extend(msgs.into_iter().map(|m| (r, m)));
        // Every reader is blocked again before the next message.
        wait_blocked(&server, &mut con, READERS as i64);
    }
    done.store(true, Ordering::SeqCst);
    for id in &ids {
        run(&mut con, &["CLIENT", "UNBLOCK", &id.to_string()]);
    }
    for h in handles {
        h.join().unwrap();
    }
    while let Ok((r, msgs)) = rx.try_recv() {
        got.extend(msgs.into_iter().map(|m| (r, m)));
    }
    let mut per_id: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (r, m) in &got {
        assert_eq!(m.deliveries(), 1, "{} handed out with deliveries {}", m.id, m.deliveries());
        per_id.entry(m.id.clone()).or_default().push(*r);
    }
    let dups: Vec<_> = per_id.iter().filter(|(_, rs)| rs.len() > 1).collect();
    let lost: Vec<_> = sent.iter().filter(|id| !per_id.contains_key(*id)).collect();
    let mut per_reader = [0usize; READERS];
    for (r, _) in &got {
        per_reader[*r] += 1;
    }
    eprintln!(
        "R8: {MESSAGES} messages to {READERS} blocked readers: per reader {per_reader:?}; losses {}, \
         duplicates {}",
        lost.len(),
        dups.len()
    );
    assert!(dups.is_empty(), "messages handed to more than one reader: {dups:?}");
    assert!(lost.is_empty(), "messages no reader got: {lost:?}");
    assert_eq!(got.len(), MESSAGES);
    assert_eq!(info_int(&mut con, "r8:many", "leased"), MESSAGES as i64);
    wait_blocked(&server, &mut con, 0);
}

#[test]
fn r8_block_inside_lua_returns_nil_at_once_without_side_effects() {
    let server = Server::start();
    let mut con = server.client();
    // A mailbox whose only message is leased, and one that does not exist.
    send(&mut con, "r8:lua", "leased", &[]);
    read_one(&mut con, "r8:lua", &["LEASE", "600000"]);
    let digest = server.digest();
    let delivered = stat(&mut con, "delivered");
    let script = "return redis.call('MAILBOX.READ', KEYS[1], 'BLOCK', '0')";
    for mailbox in ["r8:lua", "r8:missing"] {
        let start = Instant::now();
        let reply: Value = redis::cmd("EVAL").arg(script).arg(1).arg(mailbox).query(&mut con).unwrap();
        assert_eq!(reply, Value::Nil, "EVAL READ BLOCK on {mailbox}");
        assert!(start.elapsed() < Duration::from_secs(10), "EVAL waited {:?}", start.elapsed());
        let replies: Vec<Value> = redis::pipe()
            .atomic()
            .cmd("MAILBOX.READ")
            .arg(mailbox)
            .arg("BLOCK")
            .arg(0)
            .query(&mut con)
            .unwrap();
        assert_eq!(replies, vec![Value::Nil], "MULTI READ BLOCK on {mailbox}");
    }
    assert_eq!(server.digest(), digest, "READ BLOCK in a script changed the data");
    assert_eq!(stat(&mut con, "delivered"), delivered);
    assert_eq!(stat(&mut con, "blocked_readers"), 0);
    assert_eq!(blocked_clients(&server), 0);
    assert_eq!(run(&mut con, &["EXISTS", "r8:missing"]), Value::Int(0));
}

#[test]
fn r8_memory_is_flat_over_many_block_unblock_loops() {
    let server = Server::start();
    let mut con = server.client();
    let mut reader = server.client();
    let mut reader_id = client_id(&mut reader);
    let one_loop = |i: usize, con: &mut Connection, reader: &mut Connection, reader_id: &mut i64| {
        if i % 5 == 4 {
            // A timeout.
            assert_eq!(run(reader, &["MAILBOX.READ", "r8:mem", "BLOCK", "20"]), Value::Nil);
            return;
        }
        thread::scope(|s| {
            let h = s.spawn(|| try_run(reader, &["MAILBOX.READ", "r8:mem", "BLOCK", "0", "LEASE", "60000"]));
            wait_blocked(&server, con, 1);
            match i % 5 {
                0 => {
                    let id = send(con, "r8:mem", "payload of a few bytes", &["TTL", "60000"]);
                    let got = messages(&h.join().unwrap().expect("woken read")).expect("woken read got nil");
                    assert_eq!(got[0].id, id);
                    assert_eq!(ack(con, "r8:mem", &[&id]), 1);
                }
                1 => {
                    run(con, &["CLIENT", "UNBLOCK", &reader_id.to_string()]);
                    assert_eq!(h.join().unwrap().unwrap(), Value::Nil);
                }
                2 => {
                    run(con, &["CLIENT", "UNBLOCK", &reader_id.to_string(), "ERROR"]);
                    assert!(h.join().unwrap().is_err());
                }
                _ => {
                    run(con, &["CLIENT", "KILL", "ID", &reader_id.to_string()]);
                    assert!(h.join().unwrap().is_err());
                }
            }
        });
        if i % 5 == 3 {
            *reader = server.client();
            *reader_id = client_id(reader);
        }
        wait_blocked(&server, con, 0);
    };
    for i in 0..25 {
        one_loop(i, &mut con, &mut reader, &mut reader_id);
    }
    let before = used_memory(&server);
    for i in 0..200 {
        one_loop(i, &mut con, &mut reader, &mut reader_id);
    }
    let after = used_memory(&server);
    eprintln!("R8: used_memory {before} before 200 block/unblock loops, {after} after");
    assert!(after - before < 1 << 20, "used_memory grew by {} bytes over 200 loops", after - before);
    assert_eq!(blocked_clients(&server), 0);
    assert_eq!(stat(&mut con, "blocked_readers"), 0);
    assert_eq!(info_int(&mut con, "r8:mem", "ready") + info_int(&mut con, "r8:mem", "leased"), 0);
}

// ---------------------------------------------------------------------------------------------
// R9: a reader that vanishes the instant a message arrives loses nothing
// ---------------------------------------------------------------------------------------------

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Everything the server sends on `stream` until it closes it (or 5 s pass).
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn r9_a_reader_vanishing_as_a_message_arrives_loses_nothing() {
    const ROUNDS: usize = 100;
    let mut rng = Rng::new("R9");
    let server = Server::start();
    let mut con = server.client();
    // A mailbox per round: a message the vanished reader never took stays ready in it.
    let mut sent: Vec<Key> = Vec::new();
    let mut delivered: HashSet<Key> = HashSet::new();
    let mut acked: HashSet<Key> = HashSet::new();
    let mut modes = [0usize; 3];
    for i in 0..ROUNDS {
        let mailbox = format!("r9:{i}");
        let mailbox = mailbox.as_str();
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect the reader");
        stream.write_all(&resp(&["CLIENT", "ID"])).unwrap();
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).unwrap();
        let reader_id: i64 = String::from_utf8_lossy(&buf[1..n]).trim().parse().expect("CLIENT ID reply");
        stream.write_all(&resp(&["MAILBOX.READ", mailbox, "BLOCK", "0", "LEASE", "3000"])).unwrap();
        wait_blocked(&server, &mut con, 1);
        let payload = format!("m{i}");
        let mode = i % 3;
        modes[mode] += 1;
        let id = match mode {
            0 => {
                // SEND and CLIENT KILL in one pipeline: the reader is served, then killed before
                // its reply can be written.
                let (id, killed): (String, i64) = redis::pipe()
                    .cmd("MAILBOX.SEND")
                    .arg(mailbox)
                    .arg(&payload)
                    .cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(reader_id)
                    .query(&mut con)
                    .unwrap();
                assert_eq!(killed, 1);
                id
            }
            1 => {
                // The reader closes its side a random few microseconds after the SEND goes out.
                let spin = rng.range(0, 400);
                let closer = stream.try_clone().unwrap();
                let h = thread::spawn(move || {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(spin) {
                        std::hint::spin_loop();
                    }
                    let _ = closer.shutdown(Shutdown::Write);
                });
                let id = send(&mut con, mailbox, &payload, &[]);
                h.join().unwrap();
                id
            }
            _ => {
                // The reader closes first, the SEND follows at once.
                stream.shutdown(Shutdown::Write).unwrap();
                send(&mut con, mailbox, &payload, &[])
            }
        };
        let _ = stream.shutdown(Shutdown::Write);
        let got = read_to_close(&mut stream);
        if contains(&got, &id) {
            delivered.insert(key(mailbox, &id));
            if ack(&mut con, mailbox, &[&id]) == 1 {
                acked.insert(key(mailbox, &id));
            }
        }
        sent.push(key(mailbox, &id));
        wait_blocked(&server, &mut con, 0);
    }
    // Leases of readers that never got their reply run out; the timer makes them ready.
    let mut tally = Tally::default();
    let mut drained: HashMap<Key, u64> = HashMap::new();
    for i in 0..ROUNDS {
        let mailbox = format!("r9:{i}");
        wait_until(&format!("the lease in {mailbox} runs out"), 20_000, || {
            info_int(&mut con, &mailbox, "leased") == 0
        });
        for m in drain(&mut con, &mailbox) {
            if drained.insert(key(&mailbox, &m.id), m.deliveries()).is_some() {
                tally.duplicates.push(format!("{mailbox} {} drained twice", m.id));
            }
        }
    }
    for k in &sent {
        match (acked.contains(k), drained.contains_key(k)) {
            (true, true) => tally.duplicates.push(format!("{} {} acked and readable again", k.0, k.1)),
            (false, false) => tally.lost.push(k.clone()),
            _ => {}
        }
    }
    let undelivered_leased = drained.values().filter(|&&d| d >= 2).count();
    eprintln!(
        "R9: {ROUNDS} readers vanished (pipelined CLIENT KILL {}, close after the send {}, close before \
         {}): {} replies reached the reader, {} readable again ({undelivered_leased} of them leased to \
         the vanished reader first)",
        modes[0],
        modes[1],
        modes[2],
        delivered.len(),
        drained.len()
    );
    tally.report("R9");
    tally.assert_clean("R9");
    assert_eq!(blocked_clients(&server), 0);
    assert_eq!(stat(&mut con, "blocked_readers"), 0);
}

// ---------------------------------------------------------------------------------------------
// R10: maxmemory with noeviction
// ---------------------------------------------------------------------------------------------

#[test]
fn r10_oom_refuses_sends_and_lets_consumers_drain() {
    let server = Server::start_with(ServerOptions {
        config: vec![("maxmemory-policy".into(), "noeviction".into())],
        module_args: vec![],
    });
    let mut con = server.client();
    let early = send(&mut con, "r10:box", "early", &[]);
    let limit = used_memory(&server) + (2 << 20);
    config_set(&mut con, "maxmemory", &limit.to_string());
    let payload = "x".repeat(8 * 1024);
    let mut stored = 1;
    let oom = loop {
        match try_run(&mut con, &["MAILBOX.SEND", "r10:box", &payload]) {
            Ok(_) => stored += 1,
            Err(e) => break err_text(&e),
        }
        assert!(stored < 10_000, "2 MB over used_memory and 10,000 sends of 8 KB were all accepted");
    };
    eprintln!("R10: {stored} messages stored under maxmemory {limit}; then: {oom}");
    assert!(oom.starts_with("OOM"), "a SEND past maxmemory: {oom}");

    let digest = server.digest();
    let held_before = info_int(&mut con, "r10:box", "ready");
    let e = error_of(&mut con, &["MAILBOX.SEND", "r10:box", "one more"]);
    assert!(e.starts_with("OOM"), "SEND under OOM: {e}");
    let e = error_of(&mut con, &["MAILBOX.CREATE", "r10:other"]);
    assert!(e.starts_with("OOM"), "CREATE under OOM: {e}");
    assert_eq!(server.digest(), digest, "a refused SEND changed the data");
    assert_eq!(info_int(&mut con, "r10:box", "ready"), held_before);

    // Consumers still work: READ, NACK, ACK.
    let got = read(&mut con, "r10:box", &["COUNT", "10", "LEASE", "600000"]).expect("READ under OOM");
    assert_eq!(got.len(), 10);
    assert_eq!(got[0].id, early);
    assert_eq!(nack(&mut con, "r10:box", &[&got[9].id]), 1);
    let ids: Vec<&str> = got[..9].iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ack(&mut con, "r10:box", &ids), 9);
    let mut drained = 9;
    while let Some(batch) = read(&mut con, "r10:box", &["COUNT", "100", "NOACK"]) {
        drained += batch.len();
    }
    assert_eq!(drained, stored, "every stored message was read under OOM");
    config_set(&mut con, "maxmemory", "0");
    send(&mut con, "r10:box", "after", &[]);
}

// ---------------------------------------------------------------------------------------------
// R11: keyspace operations keep timers and gauges consistent with the keys
// ---------------------------------------------------------------------------------------------

/// `MAILBOX.STATS mailboxes` and `messages` equal what the keys of dbs 0–3 hold.
fn gauges_match_keys(server: &Server) -> bool {
    let mut con = server.client();
    let (mut boxes, mut msgs) = (0, 0);
    for db in 0..4 {
        select(&mut con, db);
        let mut cursor = "0".to_string();
        loop {
            let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("TYPE")
                .arg("mailboxes")
                .arg("COUNT")
                .arg(1000)
                .query(&mut con)
                .expect("SCAN");
            for k in keys {
                boxes += 1;
                msgs += ["ready", "leased", "delayed", "dead"]
                    .iter()
                    .map(|f| info_int(&mut con, &k, f))
                    .sum::<i64>();
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
    }
    select(&mut con, 0);
    stat(&mut con, "mailboxes") == boxes && stat(&mut con, "messages") == msgs
}

fn assert_gauges(server: &Server, after: &str) {
    wait_until(&format!("MAILBOX.STATS gauges match the keys after {after}"), 10_000, || {
        gauges_match_keys(server)
    });
}

fn gauges(con: &mut Connection) -> (i64, i64) {
    (stat(con, "mailboxes"), stat(con, "messages"))
}

/// Sends one message to `mailbox` and leases it for 300 ms; returns its id.
fn leased(con: &mut Connection, mailbox: &str) -> String {
    let id = send(con, mailbox, &format!("in {mailbox}"), &[]);
    assert_eq!(read_one(con, mailbox, &["LEASE", "300"]).id, id);
    id
}

/// The master's timer (INFO does not sweep) makes the message ready again; a read then gets it
/// with `deliveries` 2.
fn assert_lease_expires(con: &mut Connection, mailbox: &str, id: &str, after: &str) {
    wait_until(&format!("the lease in {mailbox} runs out after {after}"), 10_000, || {
        info_int(con, mailbox, "leased") == 0 && info_int(con, mailbox, "ready") == 1
    });
    let m = read_one(con, mailbox, &["LEASE", "600000"]);
    assert_eq!((m.id.as_str(), m.deliveries()), (id, 2), "{mailbox} after {after}");
}

#[test]
fn r11_keyspace_operations_keep_timers_and_gauges_consistent() {
    let server = Server::start();
    let mut con = server.client();
    let mut db1 = server.client();
    select(&mut db1, 1);

    // RENAME
    let id = leased(&mut con, "r11:a");
    assert_eq!(run(&mut con, &["RENAME", "r11:a", "r11:renamed"]), Value::Okay);
    assert_gauges(&server, "RENAME");
    assert_lease_expires(&mut con, "r11:renamed", &id, "RENAME");
    assert_eq!(run(&mut con, &["EXISTS", "r11:a"]), Value::Int(0));

    // COPY: both keys count, both leases run out, each key is its own.
    let id = leased(&mut con, "r11:c");
    let before = gauges(&mut con);
    assert_eq!(run(&mut con, &["COPY", "r11:c", "r11:copy"]), Value::Int(1));
    assert_eq!(gauges(&mut con), (before.0 + 1, before.1 + 1), "COPY counts the copy");
    assert_gauges(&server, "COPY");
    assert_lease_expires(&mut con, "r11:c", &id, "COPY (source)");
    assert_lease_expires(&mut con, "r11:copy", &id, "COPY (copy)");
    assert_eq!(ack(&mut con, "r11:c", &[&id]), 1);
    assert_eq!(info_int(&mut con, "r11:copy", "leased"), 1, "an ACK on the source touched the copy");
    assert_gauges(&server, "an ACK after COPY");

    // COPY to another db
    let id = leased(&mut con, "r11:cdb");
    assert_eq!(run(&mut con, &["COPY", "r11:cdb", "r11:cdb", "DB", "1"]), Value::Int(1));
    assert_gauges(&server, "COPY DB");
    assert_lease_expires(&mut db1, "r11:cdb", &id, "COPY DB 1");

    // MOVE
    let id = leased(&mut con, "r11:m");
    assert_eq!(run(&mut con, &["MOVE", "r11:m", "1"]), Value::Int(1));
    assert_gauges(&server, "MOVE");
    assert_lease_expires(&mut db1, "r11:m", &id, "MOVE");

    // SWAPDB: a key of db 0 goes to db 1 and one of db 1 to db 0.
    let id0 = leased(&mut con, "r11:s0");
    let id1 = leased(&mut db1, "r11:s1");
    assert_eq!(run(&mut con, &["SWAPDB", "0", "1"]), Value::Okay);
    assert_gauges(&server, "SWAPDB");
    assert_lease_expires(&mut db1, "r11:s0", &id0, "SWAPDB");
    assert_lease_expires(&mut con, "r11:s1", &id1, "SWAPDB");
    assert_eq!(run(&mut con, &["SWAPDB", "0", "1"]), Value::Okay);

    // DUMP / RESTORE, to a new name and over an existing mailbox.
    let id = leased(&mut con, "r11:d");
    let dump: Vec<u8> = redis::cmd("DUMP").arg("r11:d").query(&mut con).unwrap();
    assert_eq!(run(&mut con, &["DEL", "r11:d"]), Value::Int(1));
    let restored: Value =
        redis::cmd("RESTORE").arg("r11:restored").arg(0).arg(&dump).query(&mut con).unwrap();
    assert_eq!(restored, Value::Okay);
    send(&mut con, "r11:existing", "replaced", &[]);
    let replaced: Value =
        redis::cmd("RESTORE").arg("r11:existing").arg(0).arg(&dump).arg("REPLACE").query(&mut con).unwrap();
    assert_eq!(replaced, Value::Okay);
    assert_gauges(&server, "DUMP/RESTORE");
    assert_lease_expires(&mut con, "r11:restored", &id, "RESTORE");
    assert_lease_expires(&mut con, "r11:existing", &id, "RESTORE REPLACE");

    // FLUSHDB of db 1 only: db 0 keeps its mailboxes and its timers.
    let id = leased(&mut con, "r11:keep");
    leased(&mut db1, "r11:gone");
    assert_eq!(run(&mut db1, &["FLUSHDB"]), Value::Okay);
    assert_gauges(&server, "FLUSHDB");
    assert_eq!(run(&mut db1, &["DBSIZE"]), Value::Int(0));
    assert_lease_expires(&mut con, "r11:keep", &id, "FLUSHDB of the other db");

    // FLUSHALL, sync and ASYNC: gauges 0, nothing comes back when the old leases would have run
    // out, and a new mailbox under an old name gets a working timer.
    for how in [None, Some("ASYNC")] {
        let what = format!("FLUSHALL {}", how.unwrap_or("(sync)"));
        leased(&mut con, "r11:f");
        leased(&mut db1, "r11:f1");
        send(&mut con, "r11:f", "ready", &["TTL", "300"]);
        let mut flush = vec!["FLUSHALL"];
        flush.extend(how);
        assert_eq!(run(&mut con, &flush), Value::Okay);
        wait_until(&format!("gauges 0 after {what}"), 10_000, || gauges(&mut con) == (0, 0));
        sleep_ms(600);
        assert_eq!(run(&mut con, &["DBSIZE"]), Value::Int(0), "a key came back after {what}");
        assert_eq!(run(&mut db1, &["DBSIZE"]), Value::Int(0), "a key came back after {what}");
        assert_eq!(gauges(&mut con), (0, 0));
        let id = leased(&mut con, "r11:f");
        assert_lease_expires(&mut con, "r11:f", &id, &what);
        assert_gauges(&server, &what);
    }

    // FLUSHDB ASYNC of db 0 with several leased mailboxes.
    for i in 0..5 {
        leased(&mut con, &format!("r11:many{i}"));
    }
    assert_eq!(run(&mut con, &["FLUSHDB", "ASYNC"]), Value::Okay);
    assert_gauges(&server, "FLUSHDB ASYNC");
    assert_eq!(gauges(&mut con), (0, 0));
}

//! R17 soak: producers and consumers run against a master (`appendonly yes`,
//! `appendfsync always`) with a replica attached, while the master is killed with `kill -9` and
//! restarted from its AOF again and again. A ledger keeps every id a `MAILBOX.SEND` returned and
//! what became of it; at the end every one of them is acked, dead-lettered, expired on record, or
//! still held, the replica holds the master's data, and memory is bounded once the mailboxes are
//! drained. Every send asks for a receipt (`CONFIRM REPLYTO soak:receipts`): the receipts are the
//! record of each ack, dead letter and expiry, and are checked against the ledger.
//!
//! Default: about 20 s and 2 kills. `MAILBOX_LONG=1`: 5 minutes, a kill every 30–60 s.
//! `MAILBOX_SOAK_SECS=n` sets the length; `MAILBOX_SEED=n` repeats the random choices.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mailbox::*;
use common::*;
use redis::{Connection, RedisError, RedisResult, Value};

const MAILBOXES: usize = 3;
const PRODUCERS: usize = 2;
const CONSUMERS: usize = 2;
/// Lease of the consumers' reads; a message they neither ack nor nack comes back after it.
const LEASE_MS: u64 = 1000;
/// TTL of every seventh message.
const TTL_MS: u64 = 1500;
/// Deliveries before a message is dead-lettered.
const MAX_DELIVER: &str = "3";
/// Where the receipts of every send land.
const RECEIPTS: &str = "soak:receipts";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn mailbox(i: usize) -> String {
    format!("soak:{i}")
}

type Key = (String, String);

fn key(mailbox: &str, id: &str) -> Key {
    (mailbox.to_string(), id.to_string())
}

#[derive(Clone, Debug)]
struct Sent {
    payload: String,
    /// Absolute expiry (the id's milliseconds plus the TTL), for messages sent with one.
    expires: Option<u64>,
}

#[derive(Default)]
struct Ledger {
    sent: BTreeMap<Key, Sent>,
    /// ACK of this one id replied 1.
    acked: HashSet<Key>,
    /// An ACK went out and no reply came back (the server died): either outcome is right.
    ack_unknown: HashSet<Key>,
    /// Twice the same id from SEND, or ACK replying 1 twice for one id.
    duplicates: Vec<String>,
    deliveries: u64,
    redeliveries: u64,
    nacks: u64,
    /// Error replies other than LOADING: the module misbehaving under the faults.
    errors: Vec<String>,
    reconnects: u64,
    /// Receipts read, by the message they report on: (receipt id, outcome).
    receipts: HashMap<Key, Vec<(String, String)>>,
}

impl Ledger {
    /// Records a receipt (a receipt redelivered after a crash is the same receipt id).
    fn receipt(&mut self, m: &Msg) {
        let body: serde_json::Value = serde_json::from_slice(m.bytes("payload").unwrap_or_default())
            .unwrap_or_else(|e| panic!("receipt {} is not JSON: {e}: {:?}", m.id, m.get("payload")));
        let field = |name: &str| {
            body.get(name)
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("receipt {} has no {name}: {body}", m.id))
                .to_string()
        };
        let (orig, outcome, mailbox) = (field("id"), field("outcome"), field("mailbox"));
        assert_eq!(m.get("correlation").as_deref(), Some(orig.as_str()), "receipt {}: correlation", m.id);
        let seen = self.receipts.entry(key(&mailbox, &orig)).or_default();
        if !seen.iter().any(|(id, _)| *id == m.id) {
            seen.push((m.id.clone(), outcome));
        }
    }
}

type Shared = Arc<Mutex<Ledger>>;

fn lock(ledger: &Shared) -> MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// The port the master listens on (it does not change across restarts) and the stop flag.
struct Load {
    port: AtomicU16,
    stop: AtomicBool,
}

/// A connection-level failure (the server went away), as opposed to an error reply.
fn is_io(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.code().is_none()
}

/// What to do with the result of a command: the value, or whether to reconnect.
enum Outcome {
    Value(Value),
    /// The connection failed: the reply, if any, is unknown.
    Lost,
    /// An error reply (LOADING while the server loads its AOF, or a real error, recorded).
    Refused,
}

fn classify(result: RedisResult<Value>, ledger: &Shared, what: &str) -> Outcome {
    match result {
        Ok(v) => Outcome::Value(v),
        Err(e) if is_io(&e) => Outcome::Lost,
        Err(e) => {
            let text = err_text(&e);
            if !text.starts_with("LOADING") {
                lock(ledger).errors.push(format!("{what}: {text}"));
            }
            sleep_ms(50);
            Outcome::Refused
        }
    }
}

/// Connects to the master, retrying while it is down, until `stop`.
fn connect(load: &Load, ledger: &Shared) -> Option<Connection> {
    while !load.stop.load(Ordering::SeqCst) {
        let port = load.port.load(Ordering::SeqCst);
        let con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)));
        if let Ok(con) = con {
            if con.set_read_timeout(Some(Duration::from_secs(15))).is_ok() {
                lock(ledger).reconnects += 1;
                return Some(con);
            }
        }
        sleep_ms(50);
    }
    None
}

fn producer(load: Arc<Load>, ledger: Shared, t: usize, seed: u64) {
    let mut rng = Rng::from_seed(seed);
    let mut n = 0u64;
    'connect: while let Some(mut con) = connect(&load, &ledger) {
        while !load.stop.load(Ordering::SeqCst) {
            n += 1;
            let target = mailbox(rng.range(0, MAILBOXES as u64 - 1) as usize);
            let payload = format!("p{t}-{n}");
            let ttl = n.is_multiple_of(7);
            let mut c = redis::cmd("MAILBOX.SEND");
            c.arg(&target).arg(&payload).arg("PRIORITY").arg(rng.range(0, 3));
            c.arg("CONFIRM").arg("REPLYTO").arg(RECEIPTS);
            if ttl {
                c.arg("TTL").arg(TTL_MS);
            }
            match classify(c.query(&mut con), &ledger, "SEND") {
                Outcome::Value(v) => {
                    let id = text(&v);
                    let expires = ttl.then(|| parse_id(&id).0 + TTL_MS);
                    let mut l = lock(&ledger);
                    if l.sent.insert(key(&target, &id), Sent { payload, expires }).is_some() {
                        l.duplicates.push(format!("SEND returned id {id} of {target} twice"));
                    }
                }
                Outcome::Lost => continue 'connect,
                Outcome::Refused => {}
            }
            if n.is_multiple_of(4) {
                sleep_ms(1);
            }
        }
        return;
    }
}

fn consumer(load: Arc<Load>, ledger: Shared, seed: u64) {
    let mut rng = Rng::from_seed(seed);
    let lease = LEASE_MS.to_string();
    'connect: while let Some(mut con) = connect(&load, &ledger) {
        while !load.stop.load(Ordering::SeqCst) {
            let target = mailbox(rng.range(0, MAILBOXES as u64 - 1) as usize);
            let args =
                ["MAILBOX.READ", target.as_str(), "COUNT", "10", "LEASE", lease.as_str(), "BLOCK", "200"];
            let got = match classify(try_run(&mut con, &args), &ledger, "READ") {
                Outcome::Value(v) => messages(&v).unwrap_or_default(),
                Outcome::Lost => continue 'connect,
                Outcome::Refused => continue,
            };
            for m in got {
                {
                    let mut l = lock(&ledger);
                    l.deliveries += 1;
                    if m.deliveries() > 1 {
                        l.redeliveries += 1;
                    }
                }
                let k = key(&target, &m.id);
                match rng.range(0, 99) {
                    // Most are acked, one id per ACK, so the ledger knows which.
                    0..=69 => {
                        match classify(try_run(&mut con, &["MAILBOX.ACK", &target, &m.id]), &ledger, "ACK") {
                            Outcome::Value(Value::Int(1)) => {
                                let mut l = lock(&ledger);
                                if !l.acked.insert(k.clone()) {
                                    l.duplicates.push(format!("ACK {} {} replied 1 twice", k.0, k.1));
                                }
                            }
                            Outcome::Value(_) | Outcome::Refused => {}
                            Outcome::Lost => {
                                lock(&ledger).ack_unknown.insert(k);
                                continue 'connect;
                            }
                        }
                    }
                    // Some are put back, and come again until MAXDELIVER sends them to the dead.
                    70..=84 => {
                        match classify(try_run(&mut con, &["MAILBOX.NACK", &target, &m.id]), &ledger, "NACK")
                        {
                            Outcome::Value(_) => lock(&ledger).nacks += 1,
                            Outcome::Lost => continue 'connect,
                            Outcome::Refused => {}
                        }
                    }
                    // The rest are dropped: their lease runs out.
                    _ => {}
                }
            }
        }
        return;
    }
}

/// Reads the receipts, records them, and acks them (a crash between the two redelivers them).
fn receipt_reader(load: Arc<Load>, ledger: Shared) {
    'connect: while let Some(mut con) = connect(&load, &ledger) {
        while !load.stop.load(Ordering::SeqCst) {
            let args = ["MAILBOX.READ", RECEIPTS, "COUNT", "100", "LEASE", "2000", "BLOCK", "200"];
            let got = match classify(try_run(&mut con, &args), &ledger, "READ receipts") {
                Outcome::Value(v) => messages(&v).unwrap_or_default(),
                Outcome::Lost => continue 'connect,
                Outcome::Refused => continue,
            };
            if got.is_empty() {
                continue;
            }
            {
                let mut l = lock(&ledger);
                for m in &got {
                    l.receipt(m);
                }
            }
            let mut ack = vec!["MAILBOX.ACK", RECEIPTS];
            ack.extend(got.iter().map(|m| m.id.as_str()));
            if let Outcome::Lost = classify(try_run(&mut con, &ack), &ledger, "ACK receipts") {
                continue 'connect;
            }
        }
        return;
    }
}

/// What became of the ledger's ids at the end.
#[derive(Default, Debug)]
struct Audit {
    acked: usize,
    acked_unanswered: usize,
    dead: usize,
    expired: usize,
    held: usize,
    lost: Vec<String>,
    duplicates: Vec<String>,
    /// Held or dead messages no logged SEND returned (sends whose reply the kill swallowed).
    unlogged: usize,
    /// Acked or dead-lettered without the matching receipt, or a held message with one.
    bad_receipts: Vec<String>,
}

fn audit(con: &mut Connection, ledger: &Ledger) -> Audit {
    let mut a = Audit::default();
    let mut held: HashMap<Key, String> = HashMap::new();
    let mut dead: HashMap<Key, String> = HashMap::new();
    for i in 0..MAILBOXES {
        let b = mailbox(i);
        for m in peek(con, &b, &[]) {
            if held.insert(key(&b, &m.id), m.payload()).is_some() {
                a.duplicates.push(format!("PEEK {b} lists {} twice", m.id));
            }
        }
        for m in dead_list(con, &b, &[]) {
            let reason = m.str("reason");
            assert_eq!(reason, "maxdeliveries", "dead letter {} {b}: unexpected reason", m.id);
            if dead.insert(key(&b, &m.id), m.payload()).is_some() {
                a.duplicates.push(format!("DEAD LIST {b} lists {} twice", m.id));
            }
        }
    }
    let now = now_ms();
    let none = Vec::new();
    for (k, s) in &ledger.sent {
        let (is_held, is_dead, is_acked) = (held.get(k), dead.get(k), ledger.acked.contains(k));
        for p in [is_held, is_dead].into_iter().flatten() {
            assert_eq!(p, &s.payload, "{} {} holds another payload than was sent", k.0, k.1);
        }
        let receipts = ledger.receipts.get(k).unwrap_or(&none);
        let outcome = receipts.first().map(|(_, o)| o.as_str());
        if receipts.len() > 1 {
            a.duplicates.push(format!("{} {}: {} receipts {receipts:?}", k.0, k.1, receipts.len()));
        }
        let places = [is_held.is_some(), is_dead.is_some(), is_acked].iter().filter(|&&b| b).count();
        if places > 1 {
            a.duplicates.push(format!(
                "{} {}: held {}, dead {}, acked {}",
                k.0,
                k.1,
                is_held.is_some(),
                is_dead.is_some(),
                is_acked
            ));
        }
        let wrong_receipt = |a: &mut Audit, expected: Option<&str>| {
            if outcome != expected {
                a.bad_receipts.push(format!("{} {}: receipt {outcome:?}, expected {expected:?}", k.0, k.1));
            }
        };
        if is_held.is_some() {
            a.held += 1;
            wrong_receipt(&mut a, None);
        } else if is_dead.is_some() {
            a.dead += 1;
            wrong_receipt(&mut a, Some("dead"));
        } else if is_acked {
            a.acked += 1;
            wrong_receipt(&mut a, Some("acked"));
        } else if ledger.ack_unknown.contains(k) && outcome.is_none_or(|o| o == "acked") {
            a.acked_unanswered += 1;
        } else if outcome == Some("expired") {
            a.expired += 1;
            if s.expires.is_none_or(|at| at > now) {
                a.bad_receipts.push(format!("{} {}: expired before its TTL ({:?})", k.0, k.1, s.expires));
            }
        } else {
            a.lost.push(format!("{} {} ({}, ttl {:?}, receipt {outcome:?})", k.0, k.1, s.payload, s.expires));
        }
    }
    a.unlogged = held.keys().chain(dead.keys()).filter(|k| !ledger.sent.contains_key(*k)).count();
    a
}

fn used_memory(server: &Server) -> i64 {
    server.info_field("memory", "used_memory").expect("used_memory").parse().unwrap()
}

#[test]
fn r17_soak_with_kills_and_a_replica() {
    let (secs, kill_every, max_kills) =
        match std::env::var("MAILBOX_SOAK_SECS").ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(s) if s >= 120 => (s, (30_000, 60_000), usize::MAX),
            Some(s) => (s, (s * 250, s * 350), usize::MAX),
            None if long_run() => (300, (30_000, 60_000), usize::MAX),
            None => (16, (4_500, 6_000), 2),
        };
    let seed = std::env::var("MAILBOX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(now_ms);
    eprintln!("R17: seed {seed} (MAILBOX_SEED={seed} repeats the choices), {secs} s of load");
    let mut rng = Rng::from_seed(seed);
    let started = Instant::now();

    let mut master = Server::start_aof();
    let replica = master.replica();
    {
        let mut con = master.client();
        for i in 0..MAILBOXES {
            create(&mut con, &mailbox(i), &["MAXDELIVER", MAX_DELIVER, "LEASE", "60000"]);
        }
    }
    let baseline = used_memory(&master);
    let load = Arc::new(Load { port: AtomicU16::new(master.port), stop: AtomicBool::new(false) });
    let ledger: Shared = Arc::default();
    let mut handles = Vec::new();
    for t in 0..PRODUCERS {
        let (l, g, s) = (load.clone(), ledger.clone(), rng.next());
        handles.push(thread::spawn(move || producer(l, g, t, s)));
    }
    for _ in 0..CONSUMERS {
        let (l, g, s) = (load.clone(), ledger.clone(), rng.next());
        handles.push(thread::spawn(move || consumer(l, g, s)));
    }
    let (l, g) = (load.clone(), ledger.clone());
    handles.push(thread::spawn(move || receipt_reader(l, g)));

    let end = started + Duration::from_secs(secs);
    let mut kills = 0;
    while kills < max_kills {
        let wait = Duration::from_millis(rng.range(kill_every.0, kill_every.1));
        if Instant::now() + wait + Duration::from_millis(3000) > end {
            break;
        }
        thread::sleep(wait);
        let sent_before = lock(&ledger).sent.len();
        master.kill9();
        kills += 1;
        let down = rng.range(0, 500);
        sleep_ms(down);
        master.restart();
        eprintln!(
            "R17: kill {kills} at {:.1} s ({sent_before} sends logged), down {down} ms, restarted from the AOF",
            started.elapsed().as_secs_f64()
        );
    }
    // Some load after the last restart, however slow the restarts were.
    let end = end.max(Instant::now() + Duration::from_secs(2));
    while Instant::now() < end {
        sleep_ms(50);
    }
    load.stop.store(true, Ordering::SeqCst);
    for h in handles {
        h.join().expect("a load thread panicked");
    }

    // Let every lease run out and every TTL pass; the master's timer requeues, dead-letters and
    // expires the messages, and writes their receipts.
    let mut con = master.client();
    for b in (0..MAILBOXES).map(mailbox).chain([RECEIPTS.to_string()]) {
        wait_until(&format!("the leases of {b} run out"), 30_000, || info_int(&mut con, &b, "leased") == 0);
    }
    let last_expiry = lock(&ledger).sent.values().filter_map(|s| s.expires).max().unwrap_or(0);
    while now_ms() < last_expiry + 500 {
        sleep_ms(50);
    }
    for b in (0..MAILBOXES).map(mailbox) {
        wait_until(&format!("the leases of {b} run out"), 30_000, || info_int(&mut con, &b, "leased") == 0);
    }
    while let Some(batch) = read(&mut con, RECEIPTS, &["COUNT", "1000", "LEASE", "600000"]) {
        let mut l = lock(&ledger);
        for m in &batch {
            l.receipt(m);
        }
    }
    // The replica reconnected after the last restart and holds the master's data.
    wait_until("the replica is linked to the restarted master", 60_000, || {
        replica.info_field("replication", "master_link_status").as_deref() == Some("up")
            && replica.info_field("replication", "master_sync_in_progress").as_deref() == Some("0")
    });
    master.wait_for_replica(&replica);
    assert_eq!(
        replica.digest(),
        master.digest(),
        "the replica's digest differs from the master's at the end"
    );

    let ledger = lock(&ledger);
    let a = audit(&mut con, &ledger);
    let mut duplicates = ledger.duplicates.clone();
    duplicates.extend(a.duplicates.iter().cloned());

    // Drain everything; memory comes back down.
    let mut drained = 0;
    for i in 0..MAILBOXES {
        let b = mailbox(i);
        while let Some(batch) = read(&mut con, &b, &["COUNT", "1000", "NOACK"]) {
            drained += batch.len();
        }
        run(&mut con, &["MAILBOX.DEAD", "PURGE", &b, "ALL"]);
        assert_eq!(info_int(&mut con, &b, "ready") + info_int(&mut con, &b, "dead"), 0);
    }
    // The receipts of the drain itself, and the receipts read above.
    run(&mut con, &["DEL", RECEIPTS]);
    // Valkey frees a big key in the background (lazyfree-lazy-user-del yes by default), so
    // the gauge reaches 0 when its free callback has run, a moment after DEL replied.
    wait_until("MAILBOX.STATS messages back to 0 after draining", 10_000, || stat(&mut con, "messages") == 0);
    let after = used_memory(&master);
    let bound = baseline + 8 * (1 << 20);

    eprintln!(
        "R17: {:.1} s, {kills} kills; {} sends logged ({} held, {} acked, {} acks unanswered, {} dead, \
         {} expired), {} unlogged held; {} deliveries ({} redeliveries), {} nacks, {} reconnects; \
         {} receipts; losses {}, duplicates {}, receipt mismatches {}; used_memory {baseline} at the \
         start, {after} after draining {drained}",
        started.elapsed().as_secs_f64(),
        ledger.sent.len(),
        a.held,
        a.acked,
        a.acked_unanswered,
        a.dead,
        a.expired,
        a.unlogged,
        ledger.deliveries,
        ledger.redeliveries,
        ledger.nacks,
        ledger.reconnects,
        ledger.receipts.len(),
        a.lost.len(),
        duplicates.len(),
        a.bad_receipts.len()
    );
    for r in a.bad_receipts.iter().take(20) {
        eprintln!("  receipt: {r}");
    }
    for l in a.lost.iter().take(20) {
        eprintln!("  lost: {l}");
    }
    for d in duplicates.iter().take(20) {
        eprintln!("  duplicate: {d}");
    }
    assert!(
        ledger.errors.is_empty(),
        "error replies under load: {:?}",
        &ledger.errors[..ledger.errors.len().min(10)]
    );
    assert!(
        a.lost.is_empty(),
        "{} acknowledged sends lost: {:?}",
        a.lost.len(),
        &a.lost[..a.lost.len().min(10)]
    );
    assert!(
        duplicates.is_empty(),
        "{} duplicates: {:?}",
        duplicates.len(),
        &duplicates[..duplicates.len().min(10)]
    );
    assert!(
        a.bad_receipts.is_empty(),
        "{} receipts missing or wrong: {:?}",
        a.bad_receipts.len(),
        &a.bad_receipts[..a.bad_receipts.len().min(10)]
    );
    assert!(kills >= 1 || secs < 5, "the soak ran without a kill");
    assert!(!ledger.sent.is_empty(), "no send returned an id");
    assert!(after < bound, "used_memory {after} after draining, over {bound} (start {baseline} + 8 MB)");
}

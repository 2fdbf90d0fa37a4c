//! R18: failover under Sentinel. One master and two replicas with the module, three sentinels.
//! A producer sends a steady stream, each send confirmed with `WAIT 1`; the master is killed
//! with SIGKILL; Sentinel promotes a replica. Every confirmed message is on the new master
//! exactly once with its id; leases, dead letters, subscriptions and grants are there; lease
//! and TTL deadlines that had not passed at the kill are acted on by the new master, once (one
//! more delivery, one receipt), a lease that ran out between the kill and the promotion
//! included; a client that asks Sentinel for the master resumes sending and
//! reading; the survivors end with equal `DEBUG DIGEST`s, and so does the old master once it is
//! back and Sentinel has made it a replica.
//!
//! The sentinels run the same server binary as the data servers (`--sentinel`), so the test runs
//! on Redis and on Valkey alike. A sentinel loads no module.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

const MASTER_NAME: &str = "mymaster";
/// How long a master may be unreachable before a sentinel thinks it down. Short, so the test is
/// quick; long enough that a busy machine does not fail over by itself.
const DOWN_AFTER_MS: u64 = 2000;
const FAILOVER_TIMEOUT_MS: u64 = 10000;
/// Generous deadlines for what Sentinel does on its own clock.
const DISCOVERY_TIMEOUT_MS: u64 = 60_000;
const FAILOVER_DEADLINE_MS: u64 = 90_000;
/// Leases and the TTL that must run out after the kill, on the new master.
const LEASE_MS: u64 = 10_000;
/// A lease that runs out while there is no master: shorter than `DOWN_AFTER_MS`, so no
/// sentinel can have promoted a replica yet when it passes.
const GAP_LEASE_MS: u64 = 1_500;
/// Sends confirmed before the kill.
const CONFIRMED_BEFORE_KILL: usize = 150;
/// Sends confirmed after the failover, through the master Sentinel names.
const CONFIRMED_AFTER: usize = 30;

/// A sentinel process, in a directory of its own, stopped by its pid when dropped.
struct Sentinel {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        let port = free_port();
        let dir = new_temp_dir();
        let conf = dir.join("sentinel.conf");
        fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.display(),
                log = dir.join("sentinel.log").display(),
            ),
        )
        .expect("write sentinel.conf");
        let out = fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
        let err = out.try_clone().expect("clone stdout.log");
        let child = Command::new(server_binary())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("run {} --sentinel: {e}", server_binary().display()));
        let mut sentinel = Sentinel { port, dir, child: Some(child) };
        let pid = sentinel.child.as_ref().map(Child::id).unwrap_or_default();
        wait_until(&format!("sentinel on port {port} answers PING"), 20_000, || {
            if let Some(Ok(Some(status))) = sentinel.child.as_mut().map(Child::try_wait) {
                panic!("sentinel on port {port} exited with {status}:\n{}", sentinel.log());
            }
            let Ok(mut con) = connect(port, Duration::from_millis(500)) else { return false };
            let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut con) else { return false };
            parse_info_field(&info, "process_id") == Some(pid.to_string())
        });
        sentinel
    }

    fn client(&self) -> Connection {
        let con = connect(self.port, Duration::from_secs(5)).expect("connect to a sentinel");
        con.set_read_timeout(Some(Duration::from_secs(10))).expect("set read timeout");
        con
    }

    /// How many replicas and other sentinels this sentinel knows for the master.
    fn known(&self) -> (usize, usize) {
        let mut con = self.client();
        let count = |what: &str, con: &mut Connection| match redis::cmd("SENTINEL")
            .arg(what)
            .arg(MASTER_NAME)
            .query(con)
        {
            Ok(Value::Array(items)) => items.len(),
            _ => 0,
        };
        (count("replicas", &mut con), count("sentinels", &mut con))
    }

    /// The master's address as this sentinel names it.
    fn master_addr(&self) -> Option<(String, u16)> {
        let mut con = connect(self.port, Duration::from_secs(2)).ok()?;
        let addr: Vec<String> =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER_NAME).query(&mut con).ok()?;
        match addr.as_slice() {
            [host, port] => Some((host.clone(), port.parse().ok()?)),
            _ => None,
        }
    }

    fn log(&self) -> String {
        let mut text = fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
        text.push_str(&fs::read_to_string(self.dir.join("sentinel.log")).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // by its pid
            let _ = child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "keeping sentinel dir {} (port {}); log:\n{}",
                self.dir.display(),
                self.port,
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Asks each sentinel in turn for the master, the way a Sentinel-aware client does.
fn ask_sentinels(sentinels: &[Sentinel]) -> Option<u16> {
    sentinels.iter().find_map(|s| s.master_addr()).map(|(_, port)| port)
}

/// One field of `INFO replication`, or `None` when the server does not answer: Sentinel closes
/// the client connections of a server it reconfigures, a query may meet that.
fn replication_field(port: u16, field: &str) -> Option<String> {
    let mut con = connect(port, Duration::from_secs(2)).ok()?;
    let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
    let info: String = redis::cmd("INFO").arg("replication").query(&mut con).ok()?;
    parse_info_field(&info, field)
}

fn role(port: u16) -> Option<String> {
    replication_field(port, "role")
}

/// The server on `port` is a replica of `master_port`, with its link up and no sync under way.
fn follows(port: u16, master_port: u16) -> bool {
    replication_field(port, "master_port") == Some(master_port.to_string())
        && replication_field(port, "master_link_status").as_deref() == Some("up")
        && replication_field(port, "master_sync_in_progress").as_deref() == Some("0")
}

fn wait_count(con: &mut Connection, replicas: i64, timeout_ms: i64) -> i64 {
    redis::cmd("WAIT").arg(replicas).arg(timeout_ms).query(con).expect("WAIT")
}

/// A producer sending `payload-<n>` to `stream`, each send followed by `WAIT 1 2000`. The sends
/// whose WAIT saw a replica are `confirmed`; it stops at the first error (the master is gone)
/// and returns how many it sent.
struct Producer {
    confirmed: Arc<Mutex<Vec<(String, String)>>>,
    count: Arc<AtomicUsize>,
    handle: thread::JoinHandle<usize>,
}

impl Producer {
    fn start(mut con: Connection) -> Producer {
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let (c, n) = (confirmed.clone(), count.clone());
        let handle = thread::spawn(move || {
            let mut next = 0;
            loop {
                let payload = format!("payload-{next}");
                next += 1;
                let Ok(id) = redis::cmd("MAILBOX.SEND").arg("stream").arg(&payload).query::<String>(&mut con)
                else {
                    break;
                };
                match redis::cmd("WAIT").arg(1).arg(2000).query::<i64>(&mut con) {
                    Ok(n_replicas) if n_replicas >= 1 => {
                        c.lock().unwrap().push((id, payload));
                        n.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            next
        });
        Producer { confirmed, count, handle }
    }
}

/// The held messages of a mailbox on `con`, by id.
fn held(con: &mut Connection, mailbox: &str) -> Vec<Msg> {
    peek(con, mailbox, &["COUNT", "100000"])
}

/// Receipts in the `default` agent's mailbox (the sender of every confirmed message here), as
/// (original id, outcome) pairs.
fn receipts(con: &mut Connection) -> Vec<(String, String)> {
    held(con, "default")
        .iter()
        .filter(|m| m.get("type").as_deref() == Some("application/vnd.mailbox.receipt+json"))
        .map(|m| {
            let body: serde_json::Value = serde_json::from_str(&m.payload()).expect("a receipt is JSON");
            (m.str("correlation"), body["outcome"].as_str().unwrap_or("?").to_string())
        })
        .collect()
}

#[test]
fn sentinel_failover_keeps_every_confirmed_message_and_moves_the_timers() {
    let mut master = Server::start();
    let first = master.replica();
    let second = master.replica();
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(master.port)).collect();
    wait_until(
        "every sentinel knows both replicas and the other two sentinels",
        DISCOVERY_TIMEOUT_MS,
        || sentinels.iter().all(|s| s.known() == (2, 2)),
    );
    assert_eq!(ask_sentinels(&sentinels), Some(master.port));

    // State of every kind, on both replicas before the stream starts.
    let mut con = master.client();
    create(&mut con, "held", &[]);
    send(&mut con, "held", "kept leased", &[]);
    let held_id = read_one(&mut con, "held", &["LEASE", "600000"]).id;
    create(&mut con, "dl", &["MAXDELIVER", "1"]);
    let dead_id = send(&mut con, "dl", "to the dead letters", &[]);
    read_one(&mut con, "dl", &[]);
    assert_eq!(nack(&mut con, "dl", &[&dead_id]), 1);
    assert_eq!(run(&mut con, &["MAILBOX.SUB", "inbox", "news.*"]), Value::Int(1));
    assert_eq!(run(&mut con, &["MAILBOX.ACL", "GRANT", "alice", "read", "held"]), Value::Int(1));
    create(&mut con, "expiring", &["MAXDELIVER", "5"]);
    create(&mut con, "dying", &["MAXDELIVER", "1"]);
    create(&mut con, "ttl", &[]);
    create(&mut con, "gap", &["MAXDELIVER", "5"]);
    let grants = run(&mut con, &["MAILBOX.ACL", "LIST", "held", "alice"]);
    let subs = run(&mut con, &["MAILBOX.SUBS", "inbox"]);
    assert!(format!("{subs:?}").contains("news.*"), "{subs:?}");
    assert_eq!(wait_count(&mut con, 2, 5000), 2, "both replicas have the set-up");

    let producer = Producer::start(master.client());
    wait_until("confirmed sends before the kill", 60_000, || {
        producer.count.load(Ordering::Relaxed) >= CONFIRMED_BEFORE_KILL
    });

    // Deadlines that pass only after the kill: two leases and a TTL, each with a receipt asked.
    let lease = LEASE_MS.to_string();
    let expiring_id = send(&mut con, "expiring", "lease runs out", &["CONFIRM"]);
    assert_eq!(read_one(&mut con, "expiring", &["LEASE", &lease]).deliveries(), 1);
    let dying_id = send(&mut con, "dying", "lease runs out, dead", &["CONFIRM"]);
    read_one(&mut con, "dying", &["LEASE", &lease]);
    let ttl_id = send(&mut con, "ttl", "expires", &["TTL", &lease, "CONFIRM"]);
    let gap_id = send(&mut con, "gap", "lease runs out between the masters", &[]);
    read_one(&mut con, "gap", &["LEASE", &GAP_LEASE_MS.to_string()]);
    assert_eq!(wait_count(&mut con, 2, 5000), 2, "both replicas have the leases");
    let deadlines_set = Instant::now();
    drop(con);

    let old_port = master.port;
    master.kill9();
    let killed_at = Instant::now();
    let stopped_at = producer.handle.join().expect("the producer thread");
    let confirmed = producer.confirmed.lock().unwrap().clone();
    assert!(confirmed.len() >= CONFIRMED_BEFORE_KILL);

    // At the kill no deadline had passed: both replicas still hold the leases and the TTL
    // message, so whatever acts on them later is the new master.
    assert!(
        deadlines_set.elapsed() < Duration::from_millis(LEASE_MS / 2),
        "the kill came {:?} after the leases were taken; the test needs it well before {LEASE_MS} ms",
        deadlines_set.elapsed()
    );
    for replica in [&first, &second] {
        let mut r = replica.client();
        assert_eq!(info_int(&mut r, "expiring", "leased"), 1, "replica {}", replica.port);
        assert_eq!(info_int(&mut r, "dying", "leased"), 1, "replica {}", replica.port);
        assert_eq!(info_int(&mut r, "ttl", "ready"), 1, "replica {}", replica.port);
        assert_eq!(info_int(&mut r, "gap", "leased"), 1, "replica {}", replica.port);
    }

    // Sentinel promotes one replica and points the other at it.
    let mut new_port = 0;
    wait_until(
        "Sentinel names a new master that says it is one",
        FAILOVER_DEADLINE_MS,
        || match ask_sentinels(&sentinels) {
            Some(port) if port != old_port && role(port).as_deref() == Some("master") => {
                new_port = port;
                true
            }
            _ => false,
        },
    );
    let (promoted, rest) = if new_port == first.port { (&first, &second) } else { (&second, &first) };
    assert_eq!(promoted.port, new_port);
    assert!(
        killed_at.elapsed() > Duration::from_millis(GAP_LEASE_MS),
        "promoted before the gap lease ran out"
    );

    // The lease that ran out while there was no master is acted on by the new one, once.
    let mut m = promoted.client();
    wait_until("the new master acts on the lease that ran out between masters", FAILOVER_DEADLINE_MS, || {
        info_int(&mut m, "gap", "ready") == 1
    });
    let again = read_one(&mut m, "gap", &[]);
    assert_eq!((again.id.as_str(), again.deliveries()), (gap_id.as_str(), 2));
    assert_eq!(ack(&mut m, "gap", &[&gap_id]), 1);
    wait_until("the other replica follows the new master", FAILOVER_DEADLINE_MS, || {
        follows(rest.port, new_port)
    });
    promoted.wait_for_replica(rest);
    eprintln!(
        "{} sends, {} confirmed before the kill; port {new_port} promoted, both survivors settled {:?} after the kill",
        stopped_at,
        confirmed.len(),
        killed_at.elapsed()
    );

    // Every confirmed send is there exactly once, with its id; nothing is there twice.
    let stored = held(&mut m, "stream");
    let mut by_payload: HashMap<String, Vec<String>> = HashMap::new();
    for msg in &stored {
        by_payload.entry(msg.payload()).or_default().push(msg.id.clone());
    }
    assert!(by_payload.values().all(|ids| ids.len() == 1), "a payload stored twice");
    for (id, payload) in &confirmed {
        assert_eq!(
            by_payload.get(payload),
            Some(&vec![id.clone()]),
            "confirmed {payload} ({id}) on the new master"
        );
    }
    assert!(stored.len() <= stopped_at, "{} stored, {stopped_at} sent", stored.len());

    // Leases, dead letters, subscriptions and grants came through.
    let kept = held(&mut m, "held");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].id.as_str(), kept[0].str("state").as_str(), kept[0].deliveries()),
        (held_id.as_str(), "leased", 1)
    );
    let dead = dead_list(&mut m, "dl", &[]);
    assert_eq!(dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![dead_id.as_str()]);
    assert_eq!(run(&mut m, &["MAILBOX.SUBS", "inbox"]), subs, "the subscriptions on the new master");
    assert_eq!(run(&mut m, &["MAILBOX.ACL", "CHECK", "alice", "read", "held"]), Value::Int(1));
    assert_eq!(
        run(&mut m, &["MAILBOX.ACL", "LIST", "held", "alice"]),
        grants,
        "the grants on the new master"
    );
    let published = run(&mut m, &["MAILBOX.PUBLISH", "news.today", "after the failover"]);
    let Value::Array(reply) = &published else { panic!("PUBLISH replied {published:?}") };
    assert_eq!(reply.get(1), Some(&Value::Int(1)), "the subscription receives: {published:?}");

    // A client that asks Sentinel for the master resumes sending and reading.
    let port = ask_sentinels(&sentinels).expect("Sentinel names the master");
    let mut client = connect(port, Duration::from_secs(5)).expect("connect to the master Sentinel names");
    let mut after = Vec::new();
    let mut n = stopped_at;
    wait_until("sends confirmed by the remaining replica", 60_000, || {
        let payload = format!("payload-{n}");
        n += 1;
        let id: String =
            redis::cmd("MAILBOX.SEND").arg("stream").arg(&payload).query(&mut client).expect("SEND");
        if wait_count(&mut client, 1, 2000) >= 1 {
            after.push((id, payload));
        }
        after.len() >= CONFIRMED_AFTER
    });
    let mut read_ids = Vec::new();
    while let Some(batch) = read(&mut client, "stream", &["COUNT", "500"]) {
        let ids: Vec<String> = batch.iter().map(|msg| msg.id.clone()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(ack(&mut client, "stream", &refs), ids.len() as i64);
        read_ids.extend(ids);
    }
    let unique: BTreeSet<&String> = read_ids.iter().collect();
    assert_eq!(unique.len(), read_ids.len(), "a message read twice");
    for (id, payload) in confirmed.iter().chain(&after) {
        assert!(unique.contains(id), "confirmed {payload} ({id}) was not read after the failover");
    }

    // The deadlines run out on the new master, once each: one more delivery for the lease that
    // ran out, a dead letter for the one at MAXDELIVER, the TTL message expired, one receipt each.
    let deadline_ms = LEASE_MS + FAILOVER_DEADLINE_MS;
    wait_until("the new master acts on the lease, the dead letter and the TTL", deadline_ms, || {
        info_int(&mut m, "expiring", "ready") == 1
            && info_int(&mut m, "dying", "dead") == 1
            && info_int(&mut m, "ttl", "ready") == 0
    });
    let again = read_one(&mut m, "expiring", &[]);
    assert_eq!(
        (again.id.as_str(), again.deliveries()),
        (expiring_id.as_str(), 2),
        "one delivery more, not two"
    );
    assert_eq!(ack(&mut m, "expiring", &[&expiring_id]), 1);
    let dead = dead_list(&mut m, "dying", &[]);
    assert_eq!(dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![dying_id.as_str()]);
    let mut got = receipts(&mut m);
    got.sort();
    let mut want = vec![
        (expiring_id.clone(), "acked".to_string()),
        (dying_id.clone(), "dead".to_string()),
        (ttl_id.clone(), "expired".to_string()),
    ];
    want.sort();
    assert_eq!(got, want, "one receipt per message");

    // The survivors settle on the same data.
    promoted.wait_for_replica(rest);
    assert_eq!(rest.digest(), promoted.digest(), "DEBUG DIGEST of the replica and the new master");
    let mut r = rest.client();
    assert_eq!(receipts(&mut r).len(), 3, "the replica made no receipt of its own");
    assert_eq!(promoted.info_field("replication", "role").as_deref(), Some("master"));
    assert_eq!(rest.info_field("replication", "role").as_deref(), Some("slave"));

    // The old master comes back (empty: it had no persistence); Sentinel makes it a replica of
    // the new master and it takes the new master's data, not the other way round.
    master.restart();
    wait_until("Sentinel turns the old master into a replica of the new one", FAILOVER_DEADLINE_MS, || {
        follows(master.port, new_port)
    });
    promoted.wait_for_replica(&master);
    assert_eq!(master.digest(), promoted.digest(), "DEBUG DIGEST of the old master, now a replica");
    assert_eq!(ask_sentinels(&sentinels), Some(new_port));
}

/// `min-replicas-to-write 1`: a master without a connected replica refuses sends, reads and
/// acks, and changes nothing; with a replica attached they work again.
#[test]
fn min_replicas_to_write_holds_back_writes_without_a_replica() {
    let master = Server::start_with(ServerOptions {
        config: vec![
            ("min-replicas-to-write".to_string(), "1".to_string()),
            ("min-replicas-max-lag".to_string(), "10".to_string()),
        ],
        module_args: Vec::new(),
    });
    let mut con = master.client();
    let digest = master.digest();
    for args in [
        &["MAILBOX.SEND", "bob", "x"][..],
        &["MAILBOX.READ", "bob"],
        &["MAILBOX.ACK", "bob", "1-0"],
        &["MAILBOX.CREATE", "bob"],
        &["MAILBOX.SUB", "bob", "news.*"],
        &["MAILBOX.ACL", "GRANT", "alice", "read", "held"],
        &["MAILBOX.ACL", "QUOTA", "alice", "5", "held"],
        &["MAILBOX.DEAD", "PURGE", "bob", "ALL"],
        &["MAILBOX.DEAD", "REQUEUE", "bob", "ALL"],
    ] {
        assert_eq!(error_of(&mut con, args), "NOREPLICAS Not enough good replicas to write.", "{args:?}");
    }
    assert_eq!(master.digest(), digest, "a refused write changed nothing");
    assert!(peek(&mut con, "bob", &[]).is_empty());

    let replica = master.replica();
    // The master counts the replica as good at its next check; until then sends are refused.
    let mut id = String::new();
    wait_until("a send accepted once the replica is attached", 20_000, || {
        match try_run(&mut con, &["MAILBOX.SEND", "bob", "with a replica"]) {
            Ok(reply) => {
                id = text(&reply);
                true
            }
            Err(e) => {
                assert!(err_text(&e).starts_with("NOREPLICAS"), "{}", err_text(&e));
                false
            }
        }
    });
    assert_eq!(wait_count(&mut con, 1, 5000), 1);
    master.wait_for_replica(&replica);
    let mut r = replica.client();
    assert_eq!(peek(&mut r, "bob", &[]).iter().map(|m| m.id.clone()).collect::<Vec<_>>(), vec![id]);
}

//! Persistence: mailboxes holding messages in every state (ready, leased, delayed by
//! `NACK ... DELAY`, dead, with a TTL, dedup keys) in two databases come back identical —
//! `DEBUG DIGEST`, every `DEBUG DIGEST-VALUE`, `PEEK`, `DEAD LIST` and `INFO` — after
//! `DEBUG RELOAD` (RDB), after `kill -9` and a restart from the AOF, and after `BGREWRITEAOF`
//! with and without the RDB preamble. Changing one message changes the digest.

mod common;

use std::fs;

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

/// Leases, delays, TTLs and dedup windows long enough that nothing changes by itself while a
/// test runs.
const HOUR: &str = "3600000";

const DB0_KEYS: &[&str] = &["p:a", "p:b", "p:empty", "p:acked", "{team}c"];
const DB1_KEYS: &[&str] = &["p:a", "q"];

/// Ids and facts the checks after a load need.
#[derive(Debug, Clone)]
struct Populated {
    /// `p:a` in db 0: ready ids in delivery order, the dedup key's first id, and last-id.
    ready_in_order: Vec<String>,
    dedup_first: String,
    last_id: String,
}

fn client_in(server: &Server, db: u32) -> Connection {
    let mut con = server.client();
    select(&mut con, db);
    con
}

/// Fills db 0 and db 1 with messages in every state.
fn populate(server: &Server) -> Populated {
    let mut con = server.client();
    run(&mut con, &["ACL", "SETUSER", "alice", "on", ">pw", "~*", "&*", "+@all"]);
    let mut alice = server.client_as("alice", "pw");

    // ---- db 0, "p:a": one message in each state.
    create(&mut con, "p:a", &["MAXDELIVER", "2", "LEASE", HOUR, "DEDUPWINDOW", HOUR]);
    let leased = send(&mut con, "p:a", "leased", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut con, "p:a", &[]).id, leased);
    let delayed = send(&mut con, "p:a", "delayed", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut con, "p:a", &[]).id, delayed);
    assert_eq!(nack_delay(&mut con, "p:a", &[&delayed], 3_600_000), 1);
    let dead_id = send(&mut con, "p:a", "dead", &["PRIORITY", "9", "THREAD", "t-dead"]);
    for _ in 0..2 {
        assert_eq!(read_one(&mut con, "p:a", &[]).id, dead_id);
        assert_eq!(nack(&mut con, "p:a", &[&dead_id]), 1);
    }
    let full = send(
        &mut con,
        "p:a",
        "every field",
        &[
            "PRIORITY",
            "3",
            "TYPE",
            "application/json",
            "META",
            r#"{"model":"x","n":[1,2,{"deep":true}]}"#,
            "THREAD",
            "t1",
            "CORRELATION",
            "c1",
            "REPLYTO",
            "{team}c",
        ],
    );
    let with_ttl = send(&mut con, "p:a", "with ttl", &["TTL", HOUR]);
    let dedup_first = send(&mut con, "p:a", "dedup", &["DEDUP", "key1"]);
    let from_alice = send(&mut alice, "p:a", "from alice", &[]);
    // A message read twice (nacked once) and ready again, deliveries 1.
    let redelivered = send(&mut con, "p:a", "nacked once", &["PRIORITY", "1"]);
    let acked = send(&mut con, "p:a", "acked", &["PRIORITY", "8"]);
    let noack = send(&mut con, "p:a", "noack", &["PRIORITY", "8"]);
    assert_eq!(read_one(&mut con, "p:a", &[]).id, acked);
    assert_eq!(ack(&mut con, "p:a", &[&acked]), 1);
    assert_eq!(read_one(&mut con, "p:a", &["NOACK"]).id, noack);
    assert_eq!(read_one(&mut con, "p:a", &["LEASE", HOUR]).id, full);
    assert_eq!(nack(&mut con, "p:a", &[&full]), 1);
    // The last message sent is gone: last-id must survive on its own.
    let last = send(&mut con, "p:a", "last, acked", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut con, "p:a", &[]).id, last);
    assert_eq!(ack(&mut con, "p:a", &[&last]), 1);
    let _ = redelivered;

    // ---- db 0, "p:b": a mailbox TTL and a binary payload.
    create(&mut con, "p:b", &["MAXLEN", "100", "TTL", HOUR, "DEDUPWINDOW", "7200000"]);
    send_bytes(&mut con, "p:b", b"\x00\x01binary\xff\r\n", &["PRIORITY", "2"]);
    send(&mut con, "p:b", "b2", &["DEDUP", "kb"]);
    send(&mut alice, "p:b", "b3", &["TTL", "7200000"]);
    // ---- db 0: empty, emptied, and one created by a send with the defaults.
    create(&mut con, "p:empty", &["LEASE", "1234", "MAXDELIVER", "0"]);
    let gone = send(&mut con, "p:acked", "gone", &[]);
    read_one(&mut con, "p:acked", &[]);
    assert_eq!(ack(&mut con, "p:acked", &[&gone]), 1);
    for (i, p) in ["0", "5", "9", "5"].iter().enumerate() {
        send(&mut con, "{team}c", &format!("c{i}"), &["PRIORITY", p]);
    }
    read(&mut con, "{team}c", &["COUNT", "2", "LEASE", HOUR]).unwrap();

    // ---- db 1: the same name holding something else, and another mailbox.
    let mut db1 = client_in(server, 1);
    create(&mut db1, "p:a", &["MAXDELIVER", "1", "LEASE", HOUR]);
    let d1 = send(&mut db1, "p:a", "db1 dead", &[]);
    read_one(&mut db1, "p:a", &[]);
    assert_eq!(nack(&mut db1, "p:a", &[&d1]), 1);
    send(&mut db1, "p:a", "db1 ready", &["PRIORITY", "4"]);
    send(&mut db1, "q", "q dedup", &["DEDUP", "kq"]);
    send(&mut db1, "q", "q leased", &["PRIORITY", "9"]);
    read_one(&mut db1, "q", &["LEASE", HOUR]);
    send(&mut db1, "q", "q ready", &["TTL", HOUR]);

    // Ready messages of db 0 "p:a" in delivery order: full (3), redelivered (1), then the
    // priority-0 ones oldest first.
    let states: Vec<(String, String)> =
        peek(&mut con, "p:a", &[]).into_iter().map(|m| (m.id.clone(), m.str("state"))).collect();
    let state_of = |id: &str| states.iter().find(|(i, _)| i == id).map(|(_, s)| s.clone());
    assert_eq!(state_of(&leased).as_deref(), Some("leased"));
    assert_eq!(state_of(&delayed).as_deref(), Some("delayed"));
    assert_eq!(state_of(&dead_id), None);
    assert_eq!(info_int(&mut con, "p:a", "dead"), 1);
    Populated {
        ready_in_order: vec![full, redelivered, with_ttl, dedup_first.clone(), from_alice],
        dedup_first,
        last_id: last,
    }
}

/// Everything observable about the dataset that must not change across a reload.
#[derive(Debug, PartialEq)]
struct Snapshot {
    digest: String,
    keys: Vec<(u32, Vec<String>)>,
    values: Vec<(u32, String, String)>,
    peeks: Vec<(u32, String, Value)>,
    dead: Vec<(u32, String, Value)>,
    /// `MAILBOX.INFO` without `oldest-age`, which grows with time.
    infos: Vec<(u32, String, Fields)>,
}

type Fields = Vec<(String, Value)>;

fn snapshot(server: &Server) -> Snapshot {
    let mut snap = Snapshot {
        digest: server.digest(),
        keys: Vec::new(),
        values: Vec::new(),
        peeks: Vec::new(),
        dead: Vec::new(),
        infos: Vec::new(),
    };
    for (db, names) in [(0u32, DB0_KEYS), (1, DB1_KEYS)] {
        let mut con = client_in(server, db);
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
        keys.sort();
        snap.keys.push((db, keys));
        for name in names {
            snap.values.push((db, name.to_string(), digest_value(&mut con, name)));
            snap.peeks.push((db, name.to_string(), run(&mut con, &["MAILBOX.PEEK", name])));
            snap.dead.push((db, name.to_string(), run(&mut con, &["MAILBOX.DEAD", "LIST", name])));
            let info = info(&mut con, name).into_iter().filter(|(n, _)| n != "oldest-age").collect();
            snap.infos.push((db, name.to_string(), info));
        }
    }
    snap
}

/// The snapshot is of a populated dataset (not an empty one that trivially matches).
fn assert_populated(snap: &Snapshot) {
    assert_ne!(snap.digest, ZERO_DIGEST);
    for (db, key, digest) in &snap.values {
        assert_ne!(digest, ZERO_DIGEST, "db {db} key {key} is missing");
    }
    for (db, names) in [(0u32, DB0_KEYS), (1, DB1_KEYS)] {
        for name in names {
            assert!(snap.keys[db as usize].1.iter().any(|k| k == name), "db {db} has no key {name}");
        }
    }
}

fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    assert_eq!(after.digest, before.digest, "DEBUG DIGEST changed across {what}");
    for (b, a) in before.values.iter().zip(&after.values) {
        assert_eq!(a, b, "DEBUG DIGEST-VALUE changed across {what}");
    }
    assert_eq!(after.keys, before.keys, "keys changed across {what}");
    for (b, a) in before.peeks.iter().zip(&after.peeks) {
        assert_eq!(a, b, "PEEK changed across {what}");
    }
    for (b, a) in before.dead.iter().zip(&after.dead) {
        assert_eq!(a, b, "DEAD LIST changed across {what}");
    }
    for (b, a) in before.infos.iter().zip(&after.infos) {
        assert_eq!(a, b, "MAILBOX.INFO changed across {what}");
    }
    assert_eq!(after, before);
}

/// After a load the mailboxes behave as before: leased and delayed messages stay hidden, the
/// dedup key still answers, dead letters stay dead, new ids follow the old last-id.
fn assert_behaves_the_same(server: &Server, populated: &Populated) {
    let mut con = server.client();
    assert_eq!(send(&mut con, "p:a", "again", &["DEDUP", "key1"]), populated.dedup_first);
    let got = read(&mut con, "p:a", &["COUNT", "100", "LEASE", HOUR]).unwrap();
    let got: Vec<String> = got.into_iter().map(|m| m.id).collect();
    assert_eq!(got, populated.ready_in_order, "ready messages of p:a after the load");
    let new = send(&mut con, "p:a", "new", &[]);
    assert!(parse_id(&new) > parse_id(&populated.last_id), "new id {new} not after {}", populated.last_id);
    assert_eq!(info_int(&mut con, "p:a", "dead"), 1);
    let mut db1 = client_in(server, 1);
    assert_eq!(read_one(&mut db1, "p:a", &[]).payload(), "db1 ready");
    assert_eq!(run(&mut db1, &["MAILBOX.READ", "p:a"]), Value::Nil);
}

fn wait_for_rewrite(server: &Server) {
    wait_until("the AOF rewrite to finish", 20_000, || {
        server.info_field("persistence", "aof_rewrite_in_progress").as_deref() == Some("0")
            && server.info_field("persistence", "aof_rewrite_scheduled").as_deref() == Some("0")
    });
    assert_eq!(server.info_field("persistence", "aof_last_bgrewrite_status").as_deref(), Some("ok"));
}

/// The names of the files in the server's `appendonlydir`.
fn aof_files(server: &Server) -> Vec<String> {
    let dir = server.dir.join("appendonlydir");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn aof_options(rdb_preamble: bool) -> ServerOptions {
    let config = [
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("aof-use-rdb-preamble", if rdb_preamble { "yes" } else { "no" }),
    ];
    ServerOptions {
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    }
}

#[test]
fn debug_reload_keeps_every_state() {
    let server = Server::start();
    let populated = populate(&server);
    let before = snapshot(&server);
    assert_populated(&before);
    let mut con = server.client();
    assert_eq!(run(&mut con, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_same(&before, &snapshot(&server), "DEBUG RELOAD");
    // Twice: what was loaded saves the same way.
    assert_eq!(run(&mut con, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_same(&before, &snapshot(&server), "a second DEBUG RELOAD");
    assert_behaves_the_same(&server, &populated);
}

#[test]
fn changing_one_message_changes_the_digest() {
    let server = Server::start();
    populate(&server);
    let mut db0 = client_in(&server, 0);
    let mut db1 = client_in(&server, 1);

    // Each change touches exactly one key of one db.
    type Change = Box<dyn Fn(&mut Connection, &mut Connection)>;
    let changes: Vec<(&str, u32, &str, Change)> = vec![
        (
            "READ leases a ready message",
            1,
            "q",
            Box::new(|_, db1| {
                read_one(db1, "q", &["LEASE", HOUR]);
            }),
        ),
        (
            "NACK DELAY of that message",
            1,
            "q",
            Box::new(|_, db1| {
                let id =
                    peek(db1, "q", &[]).into_iter().rev().find(|m| m.str("state") == "leased").unwrap().id;
                assert_eq!(nack_delay(db1, "q", &[&id], 3_600_000), 1);
            }),
        ),
        (
            "SEND",
            0,
            "{team}c",
            Box::new(|db0, _| {
                send(db0, "{team}c", "one more", &[]);
            }),
        ),
        (
            "DEAD PURGE",
            0,
            "p:a",
            Box::new(|db0, _| {
                assert_eq!(dead(db0, "p:a", "PURGE", &["ALL"]), 1);
            }),
        ),
        (
            "CREATE UPDATE of one setting",
            0,
            "p:empty",
            Box::new(|db0, _| create(db0, "p:empty", &["UPDATE", "LEASE", "1235"])),
        ),
        (
            "ACK",
            1,
            "p:a",
            Box::new(|_, db1| {
                let id = read_one(db1, "p:a", &[]).id;
                // The read itself is a change; digest it separately below.
                assert_eq!(ack(db1, "p:a", &[&id]), 1);
            }),
        ),
    ];
    for (what, db, key, change) in changes {
        let before = snapshot(&server);
        change(&mut db0, &mut db1);
        let after = snapshot(&server);
        assert_ne!(after.digest, before.digest, "DEBUG DIGEST did not change after {what}");
        for (b, a) in before.values.iter().zip(&after.values) {
            if b.0 == db && b.1 == key {
                assert_ne!(a.2, b.2, "DIGEST-VALUE of db {db} {key} did not change after {what}");
            } else {
                assert_eq!(a, b, "{what} changed another key");
            }
        }
    }

    // A dedup hit and a PEEK change nothing.
    let before = snapshot(&server);
    send(&mut db0, "p:a", "dup", &["DEDUP", "key1"]);
    peek(&mut db0, "p:a", &[]);
    assert_same(&before, &snapshot(&server), "a dedup hit and a PEEK");
}

#[test]
fn aof_restart_after_kill9_keeps_every_state() {
    let mut server = Server::start_aof();
    let populated = populate(&server);
    let before = snapshot(&server);
    assert_populated(&before);
    server.kill9();
    server.restart();
    assert_same(&before, &snapshot(&server), "kill -9 and an AOF restart");
    assert_behaves_the_same(&server, &populated);
}

fn rewrite_then_restart(rdb_preamble: bool) {
    let mut server = Server::start_with(aof_options(rdb_preamble));
    let populated = populate(&server);
    let mut con = server.client();
    let reply = run(&mut con, &["BGREWRITEAOF"]);
    assert!(text(&reply).contains("rewriting"), "BGREWRITEAOF replied {reply:?}");
    wait_for_rewrite(&server);
    let files = aof_files(&server);
    let base_ext = if rdb_preamble { ".base.rdb" } else { ".base.aof" };
    let base =
        files.iter().find(|f| f.ends_with(base_ext)).unwrap_or_else(|| panic!("no *{base_ext} in {files:?}"));
    if !rdb_preamble {
        let text = fs::read(server.dir.join("appendonlydir").join(base)).unwrap();
        assert!(
            text.windows(14).any(|w| w == b"MAILBOX.EFFECT"),
            "the rewritten AOF has no MAILBOX.EFFECT command"
        );
    }
    // Writes after the rewrite go to the incremental file on top of the base.
    let mut db1 = client_in(&server, 1);
    send(&mut db1, "q", "after the rewrite", &["PRIORITY", "7"]);
    read_one(&mut db1, "q", &["LEASE", HOUR]);
    let extra = send(&mut con, "p:b", "after the rewrite", &[]);
    drop((con, db1));

    let before = snapshot(&server);
    assert_populated(&before);
    let mut con = server.client();
    assert_eq!(run(&mut con, &["DEBUG", "LOADAOF"]), Value::Okay);
    assert_same(&before, &snapshot(&server), "BGREWRITEAOF and DEBUG LOADAOF");
    server.kill9();
    server.restart();
    assert_same(&before, &snapshot(&server), "BGREWRITEAOF and a restart");
    let mut con = server.client();
    assert!(peek(&mut con, "p:b", &[]).iter().any(|m| m.id == extra));
    assert_behaves_the_same(&server, &populated);
}

#[test]
fn bgrewriteaof_then_restart_keeps_every_state() {
    rewrite_then_restart(true);
}

#[test]
fn bgrewriteaof_without_rdb_preamble_then_restart_keeps_every_state() {
    rewrite_then_restart(false);
}

#[test]
fn a_rewrite_of_a_rewrite_keeps_every_state() {
    let mut server = Server::start_with(aof_options(false));
    populate(&server);
    let before = snapshot(&server);
    let mut con = server.client();
    for _ in 0..2 {
        run(&mut con, &["BGREWRITEAOF"]);
        wait_for_rewrite(&server);
        server.restart();
        con = server.client();
        assert_same(&before, &snapshot(&server), "a rewrite and a restart");
    }
}

#[test]
fn leases_that_ran_out_while_down_are_redelivered_and_acks_stay_acked() {
    let mut server = Server::start_aof();
    let mut con = server.client();
    let sent: Vec<String> = (0..6).map(|i| send(&mut con, "w", &format!("m{i}"), &[])).collect();
    let got = read(&mut con, "w", &["COUNT", "4", "LEASE", "1000"]).unwrap();
    assert_eq!(got.len(), 4);
    // Ack half of what was handed out.
    assert_eq!(ack(&mut con, "w", &[&sent[0], &sent[2]]), 2);
    drop(con);
    server.kill9();
    sleep_ms(1_200);
    server.restart();

    let mut con = server.client();
    let mut seen: Vec<(String, u64)> = Vec::new();
    wait_until("every unacked message is handed out again", 10_000, || {
        if let Some(msgs) = read(&mut con, "w", &["COUNT", "10", "LEASE", HOUR]) {
            seen.extend(msgs.into_iter().map(|m| (m.id.clone(), m.deliveries())));
        }
        seen.len() >= 4
    });
    seen.sort();
    let want: Vec<(String, u64)> =
        vec![(sent[1].clone(), 2), (sent[3].clone(), 2), (sent[4].clone(), 1), (sent[5].clone(), 1)];
    assert_eq!(seen, want, "unacked messages come back once, acked ones never");
    assert_eq!(run(&mut con, &["MAILBOX.READ", "w"]), Value::Nil);
}

#[test]
fn timer_driven_changes_are_in_the_aof() {
    let mut server = Server::start_aof();
    let mut con = server.client();
    create(&mut con, "lease", &["LEASE", "300"]);
    send(&mut con, "lease", "x", &[]);
    read_one(&mut con, "lease", &[]);
    send(&mut con, "ttl", "gone", &["TTL", "300"]);
    send(&mut con, "ttl", "kept", &[]);
    let id = send(&mut con, "delay", "x", &[]);
    read_one(&mut con, "delay", &[]);
    assert_eq!(nack_delay(&mut con, "delay", &[&id], 300), 1);
    create(&mut con, "dead", &["LEASE", "300", "MAXDELIVER", "1"]);
    send(&mut con, "dead", "x", &[]);
    read_one(&mut con, "dead", &[]);
    create(&mut con, "dedup", &["DEDUPWINDOW", "300"]);
    send(&mut con, "dedup", "x", &["DEDUP", "k"]);

    // INFO never sweeps: these changes are the timer's.
    wait_until("the timer expired, requeued, dead-lettered and forgot", 5_000, || {
        info_int(&mut con, "lease", "ready") == 1
            && info_int(&mut con, "ttl", "ready") == 1
            && info_int(&mut con, "delay", "ready") == 1
            && info_int(&mut con, "dead", "dead") == 1
            && info_int(&mut con, "dedup", "dedup-keys") == 0
    });
    let before = server.digest();
    let dead_before = run(&mut con, &["MAILBOX.DEAD", "LIST", "dead"]);
    drop(con);
    server.kill9();
    server.restart();
    assert_eq!(server.digest(), before, "the timer's changes were not replayed as they happened");
    let mut con = server.client();
    // `dead_at` is the master's time of death, not the replay's.
    assert_eq!(run(&mut con, &["MAILBOX.DEAD", "LIST", "dead"]), dead_before);
}

#[test]
fn a_blocked_read_is_in_the_aof() {
    let mut server = Server::start_aof();
    let mut reader = server.client();
    let handle = std::thread::spawn(move || read(&mut reader, "bob", &["BLOCK", "30000", "LEASE", HOUR]));
    let mut con = server.client();
    wait_until("the reader blocks", 5_000, || stat(&mut con, "blocked_readers") == 1);
    let id = send(&mut con, "bob", "x", &[]);
    let got = handle.join().unwrap().expect("the blocked reader got nil");
    assert_eq!(got[0].id, id);
    assert_eq!(info_int(&mut con, "bob", "leased"), 1);
    let before = server.digest();
    drop(con);
    server.kill9();
    server.restart();
    assert_eq!(server.digest(), before, "the lease a blocked read took is lost after a restart");
    let mut con = server.client();
    assert_eq!(info_int(&mut con, "bob", "leased"), 1);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
}

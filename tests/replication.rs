//! Replication: after every kind of write — commands and the master's timer alike — a replica
//! reaches the master's `DEBUG DIGEST`. The replica applies the master's effects and never
//! decides anything by its own clock. `MAILBOX.EFFECT` is refused from normal clients.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

const EFFECT_FORBIDDEN: &str =
    "ERR MAILBOX.EFFECT is only accepted from the master link or while loading the AOF";

/// `MAILBOX.INFO` without `oldest-age` (which grows with time), or `None` if there is no such
/// mailbox.
fn stable_info(con: &mut Connection, mailbox: &str) -> Option<Vec<(String, Value)>> {
    match try_run(con, &["MAILBOX.INFO", mailbox]) {
        Ok(v) => Some(pairs(&v).into_iter().filter(|(n, _)| n != "oldest-age").collect()),
        Err(e) => {
            assert_eq!(err_text(&e), "ERR no such mailbox");
            None
        }
    }
}

/// Waits for the replica to catch up, then checks it holds exactly the master's data: the
/// digest, and `PEEK` and `INFO` of each of `mailboxes` in db 0.
fn assert_in_sync(master: &Server, replica: &Server, mailboxes: &[&str], after: &str) {
    master.wait_for_replica(replica);
    let digest = master.digest();
    assert_eq!(replica.digest(), digest, "the replica's DEBUG DIGEST differs after {after}");
    let (mut m, mut r) = (master.client(), replica.client());
    for name in mailboxes {
        assert_eq!(
            run(&mut r, &["MAILBOX.PEEK", name]),
            run(&mut m, &["MAILBOX.PEEK", name]),
            "PEEK {name} differs after {after}"
        );
        assert_eq!(stable_info(&mut r, name), stable_info(&mut m, name), "INFO {name} differs after {after}");
        assert_eq!(replica.digest_value(name), master.digest_value(name), "{name} differs after {after}");
    }
}

/// Waits until the master's `MAILBOX.INFO` field has this value. INFO never sweeps, so the
/// change comes from the master's timer.
fn wait_master_info(master: &Server, mailbox: &str, field: &str, value: i64) {
    let mut con = master.client();
    wait_until(&format!("master INFO {mailbox} {field} = {value}"), 5_000, || {
        info_int(&mut con, mailbox, field) == value
    });
}

#[test]
fn every_write_command_reaches_the_replica() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    let boxes = ["r:a", "r:b"];
    let sync = |what: &str| assert_in_sync(&master, &replica, &boxes, what);

    create(&mut con, "r:a", &["MAXDELIVER", "2", "LEASE", "60000", "DEDUPWINDOW", "60000"]);
    sync("CREATE");
    create(&mut con, "r:a", &["UPDATE", "MAXLEN", "50"]);
    sync("CREATE UPDATE");

    run(&mut con, &["ACL", "SETUSER", "alice", "on", ">pw", "~*", "&*", "+@all"]);
    let mut alice = master.client_as("alice", "pw");
    let from_alice = send(&mut alice, "r:a", "hello", &[]);
    sync("SEND");
    // The sender travels with the message: the replica does not know alice.
    let mut rcon = replica.client();
    let on_replica = peek(&mut rcon, "r:a", &[]);
    assert_eq!(
        (on_replica[0].id.as_str(), on_replica[0].str("from").as_str()),
        (from_alice.as_str(), "alice")
    );

    let full = send(
        &mut con,
        "r:a",
        "all options",
        &[
            "PRIORITY",
            "7",
            "TTL",
            "600000",
            "TYPE",
            "text/plain",
            "THREAD",
            "t",
            "CORRELATION",
            "c",
            "REPLYTO",
            "r:b",
            "META",
            r#"{"a":1}"#,
        ],
    );
    sync("SEND with every option");

    assert_eq!(read_one(&mut con, "r:a", &[]).id, full);
    sync("READ (lease)");
    assert_eq!(read_one(&mut con, "r:a", &["NOACK"]).id, from_alice);
    sync("READ NOACK");
    assert_eq!(ack(&mut con, "r:a", &[&full]), 1);
    sync("ACK");

    let id = send(&mut con, "r:a", "to nack", &[]);
    read_one(&mut con, "r:a", &["LEASE", "60000"]);
    assert_eq!(nack(&mut con, "r:a", &[&id]), 1);
    sync("NACK");
    read_one(&mut con, "r:a", &["LEASE", "60000"]);
    assert_eq!(nack(&mut con, "r:a", &[&id]), 1);
    sync("NACK at max deliveries (dead letter)");
    assert_eq!(dead(&mut con, "r:a", "REQUEUE", &[&id]), 1);
    sync("DEAD REQUEUE");
    read_one(&mut con, "r:a", &["LEASE", "60000"]);
    assert_eq!(nack_delay(&mut con, "r:a", &[&id], 600_000), 1);
    sync("NACK DELAY");
    let other = send(&mut con, "r:a", "dies too", &[]);
    for _ in 0..2 {
        assert_eq!(read_one(&mut con, "r:a", &[]).id, other);
        assert_eq!(nack(&mut con, "r:a", &[&other]), 1);
    }
    assert_eq!(dead(&mut con, "r:a", "PURGE", &["ALL"]), 1);
    sync("DEAD PURGE");

    let first = send(&mut con, "r:a", "once", &["DEDUP", "k"]);
    sync("SEND with DEDUP");
    assert_eq!(send(&mut con, "r:a", "twice", &["DEDUP", "k"]), first);
    sync("a dedup hit");

    // A mailbox a send creates gets the master's defaults, whatever the replica's are.
    config_set(&mut rcon, "mailbox.default-lease-ms", "999");
    config_set(&mut con, "mailbox.default-lease-ms", "777");
    send(&mut con, "r:b", "x", &[]);
    sync("SEND creating a mailbox");
    assert_eq!(info_int(&mut rcon, "r:b", "lease"), 777);

    // Effects with more ids than fit in one replication call's stack room.
    let many: Vec<String> = (0..40).map(|i| send(&mut con, "r:b", &format!("m{i}"), &[])).collect();
    // "x" above comes first.
    let leased = read(&mut con, "r:b", &["COUNT", "41", "LEASE", "60000"]).expect("41 messages");
    let leased: Vec<&str> = leased.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(leased[1..], many);
    sync("READ COUNT 41");
    assert_eq!(ack(&mut con, "r:b", &leased), 41);
    sync("ACK of 41");
    assert_eq!(info_int(&mut rcon, "r:b", "leased"), 0);

    let mut db1 = master.client();
    select(&mut db1, 1);
    send(&mut db1, "r:a", "db 1", &[]);
    read_one(&mut db1, "r:a", &[]);
    sync("writes in db 1");
    run(&mut con, &["DEL", "r:b"]);
    sync("DEL");
}

#[test]
fn timer_driven_changes_reach_the_replica() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    let boxes = ["lease", "ttl", "delay", "dead", "dedup"];
    let sync = |what: &str| assert_in_sync(&master, &replica, &boxes, what);

    create(&mut con, "lease", &["LEASE", "300"]);
    send(&mut con, "lease", "x", &[]);
    read_one(&mut con, "lease", &[]);
    sync("a lease");
    wait_master_info(&master, "lease", "ready", 1);
    sync("lease expiry by the timer");

    send(&mut con, "ttl", "x", &["TTL", "300"]);
    send(&mut con, "ttl", "y", &[]);
    sync("a send with TTL");
    wait_master_info(&master, "ttl", "ready", 1);
    sync("TTL expiry by the timer");
    assert_eq!(stat(&mut con, "expired"), 1);

    send(&mut con, "delay", "x", &[]);
    let id = read_one(&mut con, "delay", &[]).id;
    assert_eq!(nack_delay(&mut con, "delay", &[&id], 300), 1);
    sync("NACK DELAY");
    wait_master_info(&master, "delay", "ready", 1);
    sync("the end of a NACK delay by the timer");

    create(&mut con, "dead", &["LEASE", "300", "MAXDELIVER", "1"]);
    send(&mut con, "dead", "x", &[]);
    read_one(&mut con, "dead", &[]);
    wait_master_info(&master, "dead", "dead", 1);
    sync("dead-lettering by the timer");

    create(&mut con, "dedup", &["DEDUPWINDOW", "300"]);
    send(&mut con, "dedup", "x", &["DEDUP", "k"]);
    sync("a dedup key");
    wait_master_info(&master, "dedup", "dedup-keys", 0);
    sync("the end of a dedup window by the timer");
}

#[test]
fn the_replica_never_expires_anything_by_itself() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    create(&mut con, "frozen", &["LEASE", "2000"]);
    send(&mut con, "frozen", "leased", &[]);
    send(&mut con, "frozen", "short ttl", &["TTL", "2000"]);
    let start = Instant::now();
    read_one(&mut con, "frozen", &[]);
    assert_in_sync(&master, &replica, &["frozen"], "the setup");
    let digest = replica.digest();

    // Freeze the master (its timer included) past both deadlines.
    let mut sleeper = master.client();
    let frozen = thread::spawn(move || run(&mut sleeper, &["DEBUG", "SLEEP", "4"]));
    sleep_ms(100);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "the setup took {:?}: the master may have expired things before it was frozen",
        start.elapsed()
    );
    while start.elapsed() < Duration::from_millis(2600) {
        sleep_ms(50);
    }
    let mut rcon = replica.client();
    for _ in 0..5 {
        assert_eq!(replica.digest(), digest, "the replica changed its data while the master was frozen");
        assert_eq!((info_int(&mut rcon, "frozen", "leased"), info_int(&mut rcon, "frozen", "ready")), (1, 1));
        sleep_ms(100);
    }
    assert_eq!(frozen.join().unwrap(), Value::Okay);

    // The master wakes, its timer does the work, and the replica follows.
    wait_master_info(&master, "frozen", "leased", 0);
    wait_master_info(&master, "frozen", "ready", 1);
    assert_in_sync(&master, &replica, &["frozen"], "the master's timer caught up");
    assert_ne!(replica.digest(), digest);
}

#[test]
fn a_replica_attached_later_gets_every_state() {
    let master = Server::start();
    let mut con = master.client();
    create(&mut con, "s", &["MAXDELIVER", "1", "LEASE", "600000"]);
    let dead_id = send(&mut con, "s", "dead", &[]);
    read_one(&mut con, "s", &[]);
    nack(&mut con, "s", &[&dead_id]);
    send(&mut con, "s", "leased", &[]);
    read_one(&mut con, "s", &[]);
    send(&mut con, "s", "ttl", &["TTL", "600000", "DEDUP", "k"]);
    let replica = master.replica();
    assert_in_sync(&master, &replica, &["s"], "the initial sync");
    assert_ne!(replica.digest(), ZERO_DIGEST);
}

#[test]
fn effect_is_refused_from_a_normal_client() {
    let master = Server::start();
    let replica = master.replica();
    let mut con = master.client();
    let id = send(&mut con, "bob", "x", &[]);
    assert_in_sync(&master, &replica, &["bob"], "a send");
    let digest = master.digest();

    for args in [
        vec!["MAILBOX.EFFECT", "bob", "REMOVE", id.as_str()],
        vec!["MAILBOX.EFFECT", "forged", "NOPE"],
        vec!["MAILBOX.EFFECT", "bob", "FORGETDEDUP", "1"],
    ] {
        assert_eq!(error_of(&mut con, &args), EFFECT_FORBIDDEN, "{args:?} on the master");
        let mut rcon = replica.client();
        let on_replica = error_of(&mut rcon, &args);
        assert!(
            on_replica == EFFECT_FORBIDDEN || on_replica.starts_with("READONLY"),
            "{args:?} on the replica: {on_replica}"
        );
    }
    assert_in_sync(&master, &replica, &["bob"], "refused effects");
    assert_eq!(master.digest(), digest);
    assert_eq!(read_one(&mut con, "bob", &[]).id, id);
}

#[test]
fn a_blocked_read_reaches_the_replica() {
    let master = Server::start();
    let replica = master.replica();
    let mut reader = master.client();
    let handle = thread::spawn(move || read(&mut reader, "bob", &["BLOCK", "30000", "LEASE", "600000"]));
    let mut con = master.client();
    wait_until("the reader blocks", 5_000, || stat(&mut con, "blocked_readers") == 1);
    let id = send(&mut con, "bob", "x", &[]);
    let got = handle.join().unwrap().expect("the blocked reader got nil");
    assert_eq!(got[0].id, id);
    assert_eq!(info_int(&mut con, "bob", "leased"), 1);
    assert_in_sync(&master, &replica, &["bob"], "a blocked read served by a send");
}

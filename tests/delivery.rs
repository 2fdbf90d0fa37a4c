//! Delivery semantics: priority then FIFO order, leases, lease expiry and redelivery, NACK with
//! and without DELAY, max deliveries and the dead letters, TTL, DEDUP and MAXLEN.

mod common;

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

const MAILBOX_FULL: &str = "ERR mailbox is full (MAXLEN reached)";
/// Generous deadline for anything the sweeper does (it runs every 100 ms).
const SWEEP_DEADLINE_MS: u64 = 5_000;

fn ids(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(|m| m.id.clone()).collect()
}

fn payloads(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(Msg::payload).collect()
}

/// Waits until a `MAILBOX.INFO` field has this value. INFO is read-only and never sweeps, so
/// a change seen through it was made by the sweeper's timer.
fn wait_info(server: &Server, mailbox: &str, field: &str, value: i64) {
    let mut con = server.client();
    wait_until(&format!("MAILBOX.INFO {mailbox} {field} = {value}"), SWEEP_DEADLINE_MS, || {
        info_int(&mut con, mailbox, field) == value
    });
}

/// Polls `MAILBOX.READ` until it hands out a message.
fn read_when_ready(con: &mut Connection, mailbox: &str, opts: &[&str]) -> Msg {
    let mut got = None;
    wait_until(&format!("READ {mailbox} hands out a message"), SWEEP_DEADLINE_MS, || {
        got = read(con, mailbox, opts);
        got.is_some()
    });
    let got = got.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    got.into_iter().next().unwrap()
}

fn states(con: &mut Connection, mailbox: &str) -> Vec<(String, String)> {
    peek(con, mailbox, &[]).into_iter().map(|m| (m.id.clone(), m.str("state"))).collect()
}

// ---- order ------------------------------------------------------------------

#[test]
fn highest_priority_first_then_oldest_first() {
    let server = Server::start();
    let mut con = server.client();
    for (payload, priority) in
        [("a", "0"), ("b", "5"), ("c", "9"), ("d", "5"), ("e", "0"), ("f", "9"), ("g", "1")]
    {
        send(&mut con, "bob", payload, &["PRIORITY", priority]);
    }
    let got = read(&mut con, "bob", &["COUNT", "10"]).unwrap();
    assert_eq!(payloads(&got), vec!["c", "f", "b", "d", "g", "a", "e"]);

    // One at a time gives the same order.
    for (payload, priority) in [("a", "0"), ("b", "5"), ("c", "9"), ("d", "5"), ("e", "0")] {
        send(&mut con, "one", payload, &["PRIORITY", priority]);
    }
    let order: Vec<String> = (0..5).map(|_| read_one(&mut con, "one", &[]).payload()).collect();
    assert_eq!(order, vec!["c", "b", "d", "a", "e"]);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "one"]), Value::Nil);
}

#[test]
fn same_priority_is_fifo() {
    let server = Server::start();
    let mut con = server.client();
    let sent: Vec<String> = (0..30).map(|i| send(&mut con, "bob", &format!("m{i}"), &[])).collect();
    let mut got = Vec::new();
    for count in [1, 4, 10, 15] {
        got.extend(ids(&read(&mut con, "bob", &["COUNT", &count.to_string()]).unwrap()));
    }
    assert_eq!(got, sent);
}

#[test]
fn a_requeued_message_keeps_its_place_by_age() {
    let server = Server::start();
    let mut con = server.client();
    let a = send(&mut con, "bob", "a", &[]);
    let b = send(&mut con, "bob", "b", &[]);
    assert_eq!(read_one(&mut con, "bob", &[]).id, a);
    let c = send(&mut con, "bob", "c", &[]);
    assert_eq!(nack(&mut con, "bob", &[&a]), 1);
    let got = read(&mut con, "bob", &["COUNT", "3"]).unwrap();
    assert_eq!(ids(&got), vec![a, b, c]);
    assert_eq!(got.iter().map(Msg::deliveries).collect::<Vec<_>>(), vec![2, 1, 1]);
}

// ---- leases -----------------------------------------------------------------

#[test]
fn a_lease_hides_the_message_until_ack() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &[]);
    let m = read_one(&mut con, "bob", &[]);
    assert_eq!((m.id.as_str(), m.deliveries()), (id.as_str(), 1));
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil, "leased: invisible to other readers");
    let mut other = server.client();
    assert_eq!(run(&mut other, &["MAILBOX.READ", "bob", "COUNT", "10"]), Value::Nil);
    assert_eq!((info_int(&mut con, "bob", "ready"), info_int(&mut con, "bob", "leased")), (0, 1));
    assert_eq!(states(&mut con, "bob"), vec![(id.clone(), "leased".to_string())]);

    assert_eq!(ack(&mut con, "bob", &[&id]), 1);
    assert_eq!((info_int(&mut con, "bob", "ready"), info_int(&mut con, "bob", "leased")), (0, 0));
    assert!(peek(&mut con, "bob", &[]).is_empty());
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
    assert_eq!(stat(&mut con, "acked"), 1);
}

#[test]
fn an_expired_lease_is_redelivered_with_deliveries_raised() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "work", &["THREAD", "t"]);
    let first = read_one(&mut con, "bob", &["LEASE", "300"]);
    assert_eq!(first.deliveries(), 1);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);

    let second = read_when_ready(&mut con, "bob", &["LEASE", "300"]);
    assert_eq!(second.id, id);
    assert_eq!(second.deliveries(), 2);
    // Everything but the delivery count is the same message.
    let strip = |m: &Msg| m.fields.iter().filter(|(n, _)| n != "deliveries").cloned().collect::<Vec<_>>();
    assert_eq!(strip(&second), strip(&first));

    let third = read_when_ready(&mut con, "bob", &[]);
    assert_eq!((third.id.as_str(), third.deliveries()), (id.as_str(), 3));
    assert_eq!(stat(&mut con, "lease_expired"), 2);
    assert_eq!(stat(&mut con, "redelivered"), 2);
    assert_eq!(stat(&mut con, "delivered"), 3);
}

#[test]
fn the_timer_requeues_expired_leases_without_any_access() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["LEASE", "300"]);
    let id = send(&mut con, "bob", "x", &[]);
    read_one(&mut con, "bob", &[]);
    assert_eq!(info_int(&mut con, "bob", "leased"), 1);
    wait_info(&server, "bob", "ready", 1);
    assert_eq!(info_int(&mut con, "bob", "leased"), 0);
    assert_eq!(stat(&mut con, "lease_expired"), 1);
    let held = peek(&mut con, "bob", &[]);
    assert_eq!((held[0].id.as_str(), held[0].str("state").as_str()), (id.as_str(), "ready"));
    assert_eq!(held[0].deliveries(), 1);
}

#[test]
fn read_lease_overrides_the_mailbox_lease() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["LEASE", "300"]);
    let long = send(&mut con, "bob", "long", &[]);
    let short = send(&mut con, "bob", "short", &[]);
    assert_eq!(read_one(&mut con, "bob", &["LEASE", "60000"]).id, long);
    assert_eq!(read_one(&mut con, "bob", &[]).id, short);
    // The mailbox's 300 ms lease runs out; the read's 60 s lease does not.
    wait_info(&server, "bob", "ready", 1);
    assert_eq!(states(&mut con, "bob"), vec![(long, "leased".to_string()), (short, "ready".to_string())]);
}

#[test]
fn ack_after_the_lease_ran_out_still_settles() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "slow", &[]);
    read_one(&mut con, "bob", &["LEASE", "200"]);
    wait_info(&server, "bob", "ready", 1);
    // Handed out once, not yet handed out again: the slow consumer's ack still counts.
    assert_eq!(ack(&mut con, "bob", &[&id]), 1);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
}

// ---- NACK -------------------------------------------------------------------

#[test]
fn nack_makes_the_message_ready_at_once() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &[]);
    read_one(&mut con, "bob", &["LEASE", "60000"]);
    assert_eq!(nack(&mut con, "bob", &[&id]), 1);
    let again = read_one(&mut con, "bob", &[]);
    assert_eq!((again.id.as_str(), again.deliveries()), (id.as_str(), 2));
    // DELAY 0 is the same as no delay.
    assert_eq!(nack_delay(&mut con, "bob", &[&id], 0), 1);
    assert_eq!(read_one(&mut con, "bob", &[]).deliveries(), 3);
    assert_eq!(stat(&mut con, "nacked"), 2);
    assert_eq!(stat(&mut con, "lease_expired"), 0);
}

#[test]
fn nack_delay_holds_the_message_back() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &[]);
    let other = send(&mut con, "bob", "y", &[]);
    read(&mut con, "bob", &["COUNT", "2", "LEASE", "60000"]).unwrap();
    assert_eq!(nack_delay(&mut con, "bob", &[&id], 400), 1);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil, "delayed: not ready yet");
    assert_eq!(
        states(&mut con, "bob"),
        vec![(id.clone(), "delayed".into()), (other.clone(), "leased".into())]
    );
    assert_eq!(info_int(&mut con, "bob", "delayed"), 1);

    // The timer makes it ready when the delay is over.
    wait_info(&server, "bob", "ready", 1);
    assert_eq!(info_int(&mut con, "bob", "delayed"), 0);
    let again = read_one(&mut con, "bob", &[]);
    assert_eq!((again.id.as_str(), again.deliveries()), (id.as_str(), 2));

    // And a read finds it as soon as it is due, timer or not.
    assert_eq!(nack_delay(&mut con, "bob", &[&id], 300), 1);
    let third = read_when_ready(&mut con, "bob", &[]);
    assert_eq!((third.id.as_str(), third.deliveries()), (id.as_str(), 3));
}

// ---- max deliveries and dead letters ------------------------------------------

#[test]
fn nack_at_max_deliveries_moves_the_message_to_the_dead_letters() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["MAXDELIVER", "2"]);
    let id = send(&mut con, "bob", "poison", &["PRIORITY", "3"]);
    assert_eq!(read_one(&mut con, "bob", &[]).deliveries(), 1);
    assert_eq!(nack(&mut con, "bob", &[&id]), 1);
    assert_eq!(read_one(&mut con, "bob", &[]).deliveries(), 2);
    assert_eq!(nack(&mut con, "bob", &[&id]), 1, "a dead-lettering nack counts as put back");

    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
    assert!(peek(&mut con, "bob", &[]).is_empty());
    assert_eq!((info_int(&mut con, "bob", "ready"), info_int(&mut con, "bob", "dead")), (0, 1));
    let dead = dead_list(&mut con, "bob", &[]);
    assert_eq!(ids(&dead), vec![id.clone()]);
    assert_eq!(dead[0].deliveries(), 2);
    assert_eq!(dead[0].str("reason"), "maxdeliveries");
    assert_eq!(dead[0].payload(), "poison");
    assert_eq!(dead[0].str("priority"), "3");
    assert_eq!(stat(&mut con, "dead_lettered"), 1);
    assert_eq!(ack(&mut con, "bob", &[&id]), 0, "a dead letter is not acked");
    assert_eq!(nack(&mut con, "bob", &[&id]), 0);
}

#[test]
fn lease_expiry_at_max_deliveries_moves_the_message_to_the_dead_letters() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["MAXDELIVER", "1", "LEASE", "200"]);
    let id = send(&mut con, "bob", "crashy", &[]);
    read_one(&mut con, "bob", &[]);
    wait_info(&server, "bob", "dead", 1);
    assert_eq!((info_int(&mut con, "bob", "leased"), info_int(&mut con, "bob", "ready")), (0, 0));
    let dead = dead_list(&mut con, "bob", &[]);
    assert_eq!(ids(&dead), vec![id]);
    assert_eq!((dead[0].deliveries(), dead[0].str("reason")), (1, "maxdeliveries".to_string()));
    assert!(dead[0].num("dead_at") >= dead[0].num("ts") + 200);
    assert_eq!(stat(&mut con, "dead_lettered"), 1);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
}

#[test]
fn default_max_deliveries_is_five() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &[]);
    assert_eq!(info_int(&mut con, "bob", "maxdeliver"), 5);
    for round in 1..=4 {
        assert_eq!(read_one(&mut con, "bob", &[]).deliveries(), round);
        assert_eq!(nack(&mut con, "bob", &[&id]), 1);
        assert_eq!(info_int(&mut con, "bob", "dead"), 0, "after delivery {round}");
    }
    assert_eq!(read_one(&mut con, "bob", &[]).deliveries(), 5);
    assert_eq!(nack(&mut con, "bob", &[&id]), 1);
    assert_eq!(info_int(&mut con, "bob", "dead"), 1);
    assert_eq!(dead_list(&mut con, "bob", &[])[0].deliveries(), 5);
}

#[test]
fn default_max_deliveries_config_applies_to_mailboxes_created_afterwards() {
    let server = Server::start();
    let mut con = server.client();
    let old = send(&mut con, "old", "x", &[]);
    config_set(&mut con, "mailbox.default-max-deliveries", "1");
    let new = send(&mut con, "new", "x", &[]);
    assert_eq!((info_int(&mut con, "old", "maxdeliver"), info_int(&mut con, "new", "maxdeliver")), (5, 1));
    read_one(&mut con, "old", &[]);
    read_one(&mut con, "new", &[]);
    assert_eq!(nack(&mut con, "old", &[&old]), 1);
    assert_eq!(nack(&mut con, "new", &[&new]), 1);
    assert_eq!((info_int(&mut con, "old", "dead"), info_int(&mut con, "new", "dead")), (0, 1));
}

#[test]
fn maxdeliver_zero_never_dead_letters() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["MAXDELIVER", "0"]);
    let id = send(&mut con, "bob", "x", &[]);
    for round in 1..=12 {
        assert_eq!(read_one(&mut con, "bob", &[]).deliveries(), round);
        assert_eq!(nack(&mut con, "bob", &[&id]), 1);
    }
    assert_eq!(info_int(&mut con, "bob", "dead"), 0);
}

#[test]
fn dead_requeue_resets_deliveries_and_purge_deletes() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["MAXDELIVER", "1"]);
    let sent: Vec<String> = (0..4).map(|i| send(&mut con, "bob", &format!("m{i}"), &[])).collect();
    read(&mut con, "bob", &["COUNT", "4"]).unwrap();
    let refs: Vec<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(nack(&mut con, "bob", &refs), 4);
    assert_eq!(ids(&dead_list(&mut con, "bob", &[])), sent);
    let bytes = info_int(&mut con, "bob", "bytes");
    assert_eq!(bytes, 4 * (7 + 3 + 2), "dead letters still hold their content");

    // REQUEUE one: ready again with deliveries reset.
    assert_eq!(dead(&mut con, "bob", "REQUEUE", &[&sent[1]]), 1);
    assert_eq!(info_int(&mut con, "bob", "dead"), 3);
    let back = peek(&mut con, "bob", &[]);
    assert_eq!(
        (back[0].id.as_str(), back[0].deliveries(), back[0].str("state").as_str()),
        (sent[1].as_str(), 0, "ready")
    );
    let m = read_one(&mut con, "bob", &[]);
    assert_eq!((m.id.as_str(), m.deliveries()), (sent[1].as_str(), 1));
    assert_eq!(ack(&mut con, "bob", &[&sent[1]]), 1);

    // PURGE one, then REQUEUE ALL, then the requeued ones die again and PURGE ALL.
    assert_eq!(dead(&mut con, "bob", "PURGE", &[&sent[0]]), 1);
    assert_eq!(ids(&dead_list(&mut con, "bob", &[])), sent[2..]);
    assert_eq!(dead(&mut con, "bob", "REQUEUE", &["ALL"]), 2);
    assert_eq!(info_int(&mut con, "bob", "dead"), 0);
    let again = read(&mut con, "bob", &["COUNT", "10"]).unwrap();
    assert_eq!(ids(&again), sent[2..]);
    assert!(again.iter().all(|m| m.deliveries() == 1));
    assert_eq!(nack(&mut con, "bob", &[&sent[2], &sent[3]]), 2);
    assert_eq!(dead(&mut con, "bob", "PURGE", &["ALL"]), 2);
    assert_eq!(info_int(&mut con, "bob", "dead"), 0);
    assert_eq!(info_int(&mut con, "bob", "bytes"), 0);
    assert!(peek(&mut con, "bob", &[]).is_empty());
    assert_eq!(stat(&mut con, "dead_lettered"), 6);
    assert_eq!(stat(&mut con, "dead_requeued"), 3);
    assert_eq!(stat(&mut con, "dead_purged"), 3);
}

// ---- TTL --------------------------------------------------------------------

#[test]
fn an_expired_message_is_never_delivered() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "stale", &["TTL", "300"]);
    send(&mut con, "bob", "fresh", &[]);
    let held = peek(&mut con, "bob", &[]);
    assert_eq!(held[0].num("expires"), held[0].num("ts") + 300);
    assert!(held[1].get("expires").is_none());
    // Before its TTL it is delivered like any other (and put back).
    let m = read_one(&mut con, "bob", &["LEASE", "60000"]);
    assert_eq!((m.id.as_str(), m.num("expires")), (id.as_str(), held[0].num("expires")));
    assert_eq!(nack(&mut con, "bob", &[&id]), 1);

    // Once the TTL passed, PEEK hides it and reads skip it for good.
    let mut other = server.client();
    wait_until("the stale message leaves PEEK", SWEEP_DEADLINE_MS, || {
        !ids(&peek(&mut other, "bob", &[])).contains(&id)
    });
    let got = read(&mut con, "bob", &["COUNT", "10"]).unwrap();
    assert_eq!(payloads(&got), vec!["fresh"]);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
    assert_eq!(stat(&mut con, "expired"), 1);
    assert_eq!(info_int(&mut con, "bob", "leased") + info_int(&mut con, "bob", "ready"), 1);
    assert_eq!(ack(&mut con, "bob", &[&id]), 0);
    assert!(dead_list(&mut con, "bob", &[]).is_empty(), "an expired message is not a dead letter");
}

#[test]
fn the_timer_removes_expired_messages_without_any_access() {
    let server = Server::start();
    let mut con = server.client();
    send(&mut con, "bob", "a", &["TTL", "250"]);
    send(&mut con, "bob", "b", &["TTL", "250"]);
    send(&mut con, "bob", "c", &[]);
    assert_eq!(info_int(&mut con, "bob", "ready"), 3);
    wait_info(&server, "bob", "ready", 1);
    assert_eq!(stat(&mut con, "expired"), 2);
    assert_eq!(info_int(&mut con, "bob", "bytes"), 7 + 3 + 1);
    assert_eq!(payloads(&read(&mut con, "bob", &["COUNT", "10"]).unwrap()), vec!["c"]);
}

#[test]
fn a_leased_message_past_its_ttl_expires_instead_of_coming_back() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "x", &["TTL", "400"]);
    read_one(&mut con, "bob", &["LEASE", "60000"]);
    wait_info(&server, "bob", "leased", 0);
    assert_eq!(info_int(&mut con, "bob", "ready"), 0);
    assert_eq!(stat(&mut con, "expired"), 1);
    assert_eq!(ack(&mut con, "bob", &[&id]), 0);
    assert_eq!(nack(&mut con, "bob", &[&id]), 0);
    assert_eq!(run(&mut con, &["MAILBOX.READ", "bob"]), Value::Nil);
    assert!(dead_list(&mut con, "bob", &[]).is_empty());
    assert_eq!(stat(&mut con, "lease_expired"), 0, "its 60 s lease did not run out: the TTL did");
}

#[test]
fn the_mailbox_ttl_applies_to_messages_sent_without_one() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["TTL", "300"]);
    let short = send(&mut con, "bob", "default ttl", &[]);
    let long = send(&mut con, "bob", "own ttl", &["TTL", "60000"]);
    let held = peek(&mut con, "bob", &[]);
    assert_eq!(ids(&held), vec![short, long.clone()]);
    assert_eq!(held[0].num("expires"), held[0].num("ts") + 300);
    assert_eq!(held[1].num("expires"), held[1].num("ts") + 60_000);
    wait_info(&server, "bob", "ready", 1);
    assert_eq!(ids(&peek(&mut con, "bob", &[])), vec![long]);
    assert_eq!(stat(&mut con, "expired"), 1);
}

// ---- DEDUP --------------------------------------------------------------------

#[test]
fn dedup_returns_the_first_id_and_stores_nothing() {
    let server = Server::start();
    let mut con = server.client();
    let first = send(&mut con, "bob", "first", &["DEDUP", "job-1"]);
    let digest = server.digest();
    let again = send(&mut con, "bob", "second", &["DEDUP", "job-1", "PRIORITY", "9", "TTL", "5000"]);
    assert_eq!(again, first);
    assert_eq!(server.digest(), digest, "a dedup hit changes nothing");
    assert_eq!((info_int(&mut con, "bob", "ready"), info_int(&mut con, "bob", "dedup-keys")), (1, 1));
    assert_eq!(payloads(&peek(&mut con, "bob", &[])), vec!["first"]);
    assert_eq!((stat(&mut con, "sent"), stat(&mut con, "dedup_hits")), (1, 1));

    // Another key, or the same key in another mailbox, is a new message.
    let other = send(&mut con, "bob", "other", &["DEDUP", "job-2"]);
    assert_ne!(other, first);
    let elsewhere = send(&mut con, "carol", "first", &["DEDUP", "job-1"]);
    assert_ne!(elsewhere, first);
    // No DEDUP at all: always stored.
    send(&mut con, "bob", "first", &[]);
    assert_eq!(info_int(&mut con, "bob", "ready"), 3);

    // Within the window the key still answers after the message was consumed.
    let m = read_one(&mut con, "bob", &[]);
    assert_eq!(m.id, first);
    assert_eq!(ack(&mut con, "bob", &[&first]), 1);
    assert_eq!(send(&mut con, "bob", "third", &["DEDUP", "job-1"]), first);
    assert_eq!(info_int(&mut con, "bob", "ready"), 2);
    assert!(!ids(&peek(&mut con, "bob", &[])).contains(&first));
    assert_eq!((stat(&mut con, "sent"), stat(&mut con, "dedup_hits")), (4, 2));
}

#[test]
fn dedup_keys_are_forgotten_after_the_window() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["DEDUPWINDOW", "300"]);
    let first = send(&mut con, "bob", "a", &["DEDUP", "k"]);
    assert_eq!(send(&mut con, "bob", "a", &["DEDUP", "k"]), first);
    wait_info(&server, "bob", "dedup-keys", 0);
    let second = send(&mut con, "bob", "a", &["DEDUP", "k"]);
    assert!(parse_id(&second) > parse_id(&first));
    assert_eq!(info_int(&mut con, "bob", "ready"), 2);
}

#[test]
fn dedup_window_zero_disables_dedup() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["DEDUPWINDOW", "0"]);
    let a = send(&mut con, "bob", "a", &["DEDUP", "k"]);
    let b = send(&mut con, "bob", "a", &["DEDUP", "k"]);
    assert_ne!(a, b);
    assert_eq!((info_int(&mut con, "bob", "ready"), info_int(&mut con, "bob", "dedup-keys")), (2, 0));
    assert_eq!(stat(&mut con, "dedup_hits"), 0);
}

// ---- MAXLEN -------------------------------------------------------------------

#[test]
fn maxlen_refuses_sends_while_full() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["MAXLEN", "2", "MAXDELIVER", "1"]);
    let a = send(&mut con, "bob", "a", &["DEDUP", "ka"]);
    let b = send(&mut con, "bob", "b", &[]);
    let digest = server.digest();
    assert_eq!(error_of(&mut con, &["MAILBOX.SEND", "bob", "c"]), MAILBOX_FULL);
    assert_eq!(
        error_of(&mut con, &["MAILBOX.SEND", "bob", "c", "PRIORITY", "9", "DEDUP", "kc"]),
        MAILBOX_FULL
    );
    assert_eq!(server.digest(), digest, "a refused send stores nothing");
    assert_eq!(stat(&mut con, "sent"), 2);
    // A dedup hit is not a new message: it answers even when full.
    assert_eq!(send(&mut con, "bob", "a", &["DEDUP", "ka"]), a);

    // Leased and delayed messages are still held: still full.
    read_one(&mut con, "bob", &["LEASE", "60000"]);
    assert_eq!(error_of(&mut con, &["MAILBOX.SEND", "bob", "c"]), MAILBOX_FULL);
    // Acking one makes room.
    assert_eq!(ack(&mut con, "bob", &[&a]), 1);
    let c = send(&mut con, "bob", "c", &[]);
    assert_eq!(error_of(&mut con, &["MAILBOX.SEND", "bob", "d"]), MAILBOX_FULL);
    // Dead letters do not count.
    assert_eq!(read_one(&mut con, "bob", &[]).id, b);
    assert_eq!(nack(&mut con, "bob", &[&b]), 1);
    assert_eq!(info_int(&mut con, "bob", "dead"), 1);
    let d = send(&mut con, "bob", "d", &[]);
    assert_eq!(ids(&peek(&mut con, "bob", &[])), vec![c, d]);
    // MAXLEN 0 is unlimited.
    create(&mut con, "bob", &["UPDATE", "MAXLEN", "0"]);
    for i in 0..20 {
        send(&mut con, "bob", &format!("more {i}"), &[]);
    }
    assert_eq!(info_int(&mut con, "bob", "ready"), 22);
}

// ---- the timer follows mailboxes that move ----------------------------------------

#[test]
fn leases_expire_after_rename_move_swapdb_and_reload() {
    let server = Server::start();
    let mut con = server.client();
    let mut db1 = server.client();
    select(&mut db1, 1);
    let mut db2 = server.client();
    select(&mut db2, 2);
    for name in ["renamed", "moved", "swapped", "reloaded"] {
        create(&mut con, name, &["LEASE", "1000"]);
        send(&mut con, name, "x", &[]);
        read_one(&mut con, name, &[]);
    }
    run(&mut con, &["RENAME", "renamed", "renamed-to"]);
    assert_eq!(run(&mut con, &["MOVE", "moved", "1"]), Value::Int(1));
    run(&mut con, &["MOVE", "swapped", "2"]);
    run(&mut con, &["SWAPDB", "2", "3"]);
    run(&mut con, &["DEBUG", "RELOAD"]);
    let mut db3 = server.client();
    select(&mut db3, 3);

    // INFO never sweeps: each lease must be requeued by the timer where the mailbox is now.
    wait_until("every lease expired wherever its mailbox went", SWEEP_DEADLINE_MS, || {
        info_int(&mut con, "renamed-to", "ready") == 1
            && info_int(&mut db1, "moved", "ready") == 1
            && info_int(&mut db3, "swapped", "ready") == 1
            && info_int(&mut con, "reloaded", "ready") == 1
    });
    assert_eq!(run(&mut db2, &["EXISTS", "swapped"]), Value::Int(0));
    assert_eq!(stat(&mut con, "lease_expired"), 4);
}

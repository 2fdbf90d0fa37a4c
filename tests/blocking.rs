//! `MAILBOX.READ ... BLOCK`: readers woken by sends, nacks, requeues and expiring leases;
//! timeouts; one message for one reader; `CLIENT KILL` and `CLIENT UNBLOCK` of a blocked reader
//! leave no blocked client behind; no blocking inside `MULTI` or a script.

mod common;

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::mailbox::*;
use common::*;
use redis::{RedisResult, Value};

/// Timeout of a blocked read that should be woken long before it.
const LONG_BLOCK_MS: &str = "30000";
/// How long a woken reader may take to answer (generous: loaded 2-core machines).
const WAKE_DEADLINE: Duration = Duration::from_secs(10);

/// What a reader thread saw: the reply and how long the command took.
type Outcome = (RedisResult<Value>, Duration);

/// A `MAILBOX.READ` running on its own connection in a thread.
struct Reader {
    client_id: i64,
    done: Receiver<Outcome>,
}

impl Reader {
    fn start(server: &Server, args: &[&str]) -> Reader {
        let mut con = server.client();
        let client_id = client_id(&mut con);
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (tx, done) = mpsc::channel();
        thread::spawn(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let start = Instant::now();
            let result = try_run(&mut con, &refs);
            let _ = tx.send((result, start.elapsed()));
        });
        Reader { client_id, done }
    }

    /// The reply, once it comes (panics after `WAKE_DEADLINE`).
    fn outcome(&self) -> Outcome {
        self.done.recv_timeout(WAKE_DEADLINE).expect("the blocked reader was not answered in time")
    }

    /// The messages it got; panics on nil or an error.
    fn messages(&self) -> (Vec<Msg>, Duration) {
        let (result, took) = self.outcome();
        let value = result.unwrap_or_else(|e| panic!("blocked read failed: {}", err_text(&e)));
        (messages(&value).expect("a woken reader got nil"), took)
    }

    /// True if no reply came within `ms`.
    fn still_blocked_after(&self, ms: u64) -> bool {
        matches!(self.done.recv_timeout(Duration::from_millis(ms)), Err(RecvTimeoutError::Timeout))
    }
}

/// Waits until `n` readers are blocked, as both the module and Redis count them.
fn wait_blocked(server: &Server, n: i64) {
    let mut con = server.client();
    wait_until(&format!("{n} blocked readers"), 5_000, || {
        stat(&mut con, "blocked_readers") == n && blocked_clients(server) == n
    });
}

fn assert_no_blocked_clients(server: &Server) {
    wait_blocked(server, 0);
}

#[test]
fn a_send_wakes_a_blocked_reader() {
    let server = Server::start();
    let mut con = server.client();
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS, "COUNT", "5"]);
    wait_blocked(&server, 1);
    let id = send(&mut con, "bob", "wake up", &[]);
    let (got, took) = reader.messages();
    assert_eq!(ids_of(&got), vec![id.clone()]);
    assert_eq!((got[0].payload(), got[0].deliveries()), ("wake up".to_string(), 1));
    assert!(took < Duration::from_secs(20), "woken after {took:?}, near its 30 s timeout");
    // It leased the message like any read.
    assert_eq!(info_int(&mut con, "bob", "leased"), 1);
    assert_eq!(ack(&mut con, "bob", &[&id]), 1);
    assert_no_blocked_clients(&server);
}

fn ids_of(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(|m| m.id.clone()).collect()
}

#[test]
fn a_ready_message_is_returned_without_blocking() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "here", &[]);
    let got = read(&mut con, "bob", &["BLOCK", "0"]).expect("a ready message");
    assert_eq!(ids_of(&got), vec![id]);
    assert_eq!(stat(&mut con, "blocked_readers"), 0);
}

#[test]
fn block_timeout_replies_nil() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "empty", &[]);
    for mailbox in ["empty", "missing"] {
        let start = Instant::now();
        let reply = run(&mut con, &["MAILBOX.READ", mailbox, "BLOCK", "300"]);
        assert_eq!(reply, Value::Nil, "BLOCK timeout on {mailbox}");
        assert!(start.elapsed() >= Duration::from_millis(250), "returned after {:?}", start.elapsed());
    }
    assert_eq!(run(&mut con, &["EXISTS", "missing"]), Value::Int(0));
    assert_no_blocked_clients(&server);
    // The connection is usable afterwards.
    assert_eq!(run(&mut con, &["PING"]), Value::SimpleString("PONG".into()));
}

#[test]
fn block_zero_waits_until_woken() {
    let server = Server::start();
    let mut con = server.client();
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", "0"]);
    wait_blocked(&server, 1);
    assert!(reader.still_blocked_after(700), "BLOCK 0 returned without a message");
    // A message in another mailbox does not wake it.
    send(&mut con, "carol", "not for bob", &[]);
    assert!(reader.still_blocked_after(300));
    let id = send(&mut con, "bob", "for bob", &[]);
    let (got, _) = reader.messages();
    assert_eq!(ids_of(&got), vec![id]);
    assert_no_blocked_clients(&server);
}

#[test]
fn one_message_wakes_exactly_one_of_two_readers() {
    let server = Server::start();
    let mut con = server.client();
    let first = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS]);
    wait_blocked(&server, 1);
    let second = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS, "COUNT", "10"]);
    wait_blocked(&server, 2);

    let m1 = send(&mut con, "bob", "one", &[]);
    // Whichever reader got it, the other must stay blocked.
    let deadline = Instant::now() + WAKE_DEADLINE;
    let (winner, loser) = loop {
        if let Ok(outcome) = first.done.try_recv() {
            break (outcome, &second);
        }
        if let Ok(outcome) = second.done.try_recv() {
            break (outcome, &first);
        }
        assert!(Instant::now() < deadline, "neither reader was woken by the send");
        sleep_ms(10);
    };
    let got = messages(&winner.0.expect("winner's read failed")).expect("winner got nil");
    assert_eq!(ids_of(&got), vec![m1.clone()]);
    assert!(loser.still_blocked_after(500), "the second reader returned with no second message");
    assert_eq!(stat(&mut con, "blocked_readers"), 1);
    assert_eq!(blocked_clients(&server), 1);
    assert_eq!(info_int(&mut con, "bob", "leased"), 1);

    let m2 = send(&mut con, "bob", "two", &[]);
    let (got, _) = loser.messages();
    assert_eq!(ids_of(&got), vec![m2]);
    assert_eq!(info_int(&mut con, "bob", "leased"), 2);
    assert_eq!(stat(&mut con, "delivered"), 2);
    assert_no_blocked_clients(&server);
}

#[test]
fn client_kill_of_a_blocked_reader_leaves_no_blocked_client() {
    let server = Server::start();
    let mut con = server.client();
    for round in 0..3 {
        let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", "0"]);
        wait_blocked(&server, 1);
        let killed = run(&mut con, &["CLIENT", "KILL", "ID", &reader.client_id.to_string()]);
        assert_eq!(killed, Value::Int(1), "round {round}");
        let (result, _) = reader.outcome();
        assert!(result.is_err(), "a killed reader gets no reply: {result:?}");
        assert_no_blocked_clients(&server);
    }
    // A message sent now is not swallowed by a dead reader.
    let id = send(&mut con, "bob", "after", &[]);
    assert_eq!(info_int(&mut con, "bob", "ready"), 1);
    assert_eq!(read_one(&mut con, "bob", &[]).id, id);
}

#[test]
fn client_unblock_of_a_blocked_reader_replies_nil_or_the_error() {
    let server = Server::start();
    let mut con = server.client();
    for round in 0..3 {
        let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", "0"]);
        wait_blocked(&server, 1);
        let unblocked = run(&mut con, &["CLIENT", "UNBLOCK", &reader.client_id.to_string()]);
        assert_eq!(unblocked, Value::Int(1), "round {round}");
        let (result, _) = reader.outcome();
        assert_eq!(result.expect("an unblocked reader gets a reply"), Value::Nil, "round {round}");
        assert_no_blocked_clients(&server);
    }
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", "0"]);
    wait_blocked(&server, 1);
    let unblocked = run(&mut con, &["CLIENT", "UNBLOCK", &reader.client_id.to_string(), "ERROR"]);
    assert_eq!(unblocked, Value::Int(1));
    let (result, _) = reader.outcome();
    let e = result.expect_err("CLIENT UNBLOCK ... ERROR gives the reader an error");
    assert_eq!(err_text(&e), "UNBLOCKED client unblocked via CLIENT UNBLOCK");
    assert_no_blocked_clients(&server);
    // Nothing was leased on the way.
    let id = send(&mut con, "bob", "after", &[]);
    assert_eq!((info_int(&mut con, "bob", "ready"), info_int(&mut con, "bob", "leased")), (1, 0));
    assert_eq!(read_one(&mut con, "bob", &[]).id, id);
    assert_eq!(stat(&mut con, "delivered"), 1);
}

#[test]
fn block_inside_multi_or_a_script_does_not_wait() {
    let server = Server::start();
    let mut con = server.client();
    let start = Instant::now();
    let replies: Vec<Value> =
        redis::pipe().atomic().cmd("MAILBOX.READ").arg("bob").arg("BLOCK").arg(0).query(&mut con).unwrap();
    assert_eq!(replies, vec![Value::Nil]);
    let script = "return redis.call('MAILBOX.READ', KEYS[1], 'BLOCK', '0')";
    let reply: Value = redis::cmd("EVAL").arg(script).arg(1).arg("bob").query(&mut con).unwrap();
    assert_eq!(reply, Value::Nil);
    // Both returned at once: far less than any client timeout.
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(blocked_clients(&server), 0);
    assert_eq!(stat(&mut con, "blocked_readers"), 0);
    assert_eq!(run(&mut con, &["EXISTS", "bob"]), Value::Int(0), "no side effect");

    // With a message there, MULTI hands it out as a plain read would.
    let id = send(&mut con, "bob", "x", &[]);
    let replies: Vec<Value> =
        redis::pipe().atomic().cmd("MAILBOX.READ").arg("bob").arg("BLOCK").arg(0).query(&mut con).unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(ids_of(&messages(&replies[0]).unwrap()), vec![id]);
    assert_eq!(info_int(&mut con, "bob", "leased"), 1);
}

#[test]
fn an_expiring_lease_wakes_a_blocked_reader() {
    let server = Server::start();
    let mut con = server.client();
    let id = send(&mut con, "bob", "retry me", &[]);
    read_one(&mut con, "bob", &["LEASE", "1000"]);
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS]);
    wait_blocked(&server, 1);
    let (got, took) = reader.messages();
    assert_eq!(ids_of(&got), vec![id]);
    assert_eq!(got[0].deliveries(), 2);
    assert!(took < Duration::from_secs(20), "woken after {took:?}");
    assert_no_blocked_clients(&server);
}

#[test]
fn nack_delay_and_dead_requeue_wake_blocked_readers() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &["MAXDELIVER", "2"]);
    let id = send(&mut con, "bob", "x", &[]);
    read_one(&mut con, "bob", &["LEASE", "60000"]);

    // NACK: ready at once.
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS, "LEASE", "60000"]);
    wait_blocked(&server, 1);
    assert_eq!(nack(&mut con, "bob", &[&id]), 1);
    let (got, _) = reader.messages();
    assert_eq!((got[0].id.as_str(), got[0].deliveries()), (id.as_str(), 2));

    // NACK at max deliveries: dead, nothing to wake anyone for.
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS, "LEASE", "60000"]);
    wait_blocked(&server, 1);
    assert_eq!(nack(&mut con, "bob", &[&id]), 1);
    assert!(reader.still_blocked_after(500), "a dead letter was handed to a reader");
    // DEAD REQUEUE: ready again.
    assert_eq!(dead(&mut con, "bob", "REQUEUE", &["ALL"]), 1);
    let (got, _) = reader.messages();
    assert_eq!((got[0].id.as_str(), got[0].deliveries()), (id.as_str(), 1));

    // NACK DELAY: the timer makes it ready and wakes the reader.
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS]);
    wait_blocked(&server, 1);
    assert_eq!(nack_delay(&mut con, "bob", &[&id], 300), 1);
    let (got, _) = reader.messages();
    assert_eq!((got[0].id.as_str(), got[0].deliveries()), (id.as_str(), 2));
    assert_no_blocked_clients(&server);
}

#[test]
fn a_reader_stays_blocked_across_del_and_flushall() {
    let server = Server::start();
    let mut con = server.client();
    create(&mut con, "bob", &[]);
    let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", LONG_BLOCK_MS]);
    wait_blocked(&server, 1);
    assert_eq!(run(&mut con, &["DEL", "bob"]), Value::Int(1));
    assert!(reader.still_blocked_after(300));
    create(&mut con, "bob", &[]);
    run(&mut con, &["FLUSHALL"]);
    assert!(reader.still_blocked_after(300));
    assert_eq!(stat(&mut con, "blocked_readers"), 1);
    let id = send(&mut con, "bob", "after the flush", &[]);
    let (got, _) = reader.messages();
    assert_eq!(ids_of(&got), vec![id]);
    assert_no_blocked_clients(&server);
}

#[test]
fn many_blocked_reads_leave_nothing_behind() {
    let server = Server::start();
    let mut con = server.client();
    for i in 0..20 {
        let reader = Reader::start(&server, &["MAILBOX.READ", "bob", "BLOCK", "0"]);
        wait_blocked(&server, 1);
        match i % 3 {
            0 => {
                send(&mut con, "bob", "m", &["TTL", "60000"]);
                let (got, _) = reader.messages();
                assert_eq!(ack(&mut con, "bob", &[&got[0].id]), 1);
            }
            1 => {
                run(&mut con, &["CLIENT", "UNBLOCK", &reader.client_id.to_string()]);
                assert_eq!(reader.outcome().0.unwrap(), Value::Nil);
            }
            _ => {
                run(&mut con, &["CLIENT", "KILL", "ID", &reader.client_id.to_string()]);
                assert!(reader.outcome().0.is_err());
            }
        }
        assert_no_blocked_clients(&server);
    }
    let timed_out = run(&mut con, &["MAILBOX.READ", "bob", "BLOCK", "50"]);
    assert_eq!(timed_out, Value::Nil);
    assert_eq!(info_int(&mut con, "bob", "ready") + info_int(&mut con, "bob", "leased"), 0);
    assert_no_blocked_clients(&server);
}

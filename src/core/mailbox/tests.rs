//! Unit tests of the mailbox algorithm.

#![forbid(unsafe_code)]

use super::*;
use crate::core::message::Parts;

fn settings(max_deliveries: u32) -> Settings {
    Settings {
        maxlen: 0,
        ttl_ms: 0,
        lease_ms: 30_000,
        max_deliveries,
        dedup_window_ms: 60_000,
        overflow: Overflow::Refuse,
    }
}

fn id(ms: u64) -> MessageId {
    MessageId::new(ms, 0)
}

fn env(ms: u64, priority: u8, expires_at: Option<u64>) -> EnvelopeRef {
    Envelope::new(Parts {
        id: id(ms),
        from: b"alice",
        to: b"bob",
        ts: ms,
        priority,
        expires_at,
        content_type: None,
        payload: format!("payload {ms}").as_bytes(),
        meta: Some(&b"{}"[..]),
        thread: None,
        correlation: None,
        reply_to: None,
        via: None,
        confirm: false,
    })
}

fn mailbox_with(max_deliveries: u32, msgs: &[(u64, u8, Option<u64>)]) -> Mailbox {
    let mut mb = Mailbox::new(settings(max_deliveries));
    for &(ms, priority, ttl) in msgs {
        assert!(mb.push(env(ms, priority, ttl), None));
    }
    mb.check_invariants();
    mb
}

fn state_of(mb: &Mailbox, ms: u64) -> Option<(State, u32)> {
    mb.get(&id(ms)).map(|e| (e.state(), e.deliveries))
}

type Snapshot = (Vec<Entry>, Vec<DeadLetter>, Vec<(Vec<u8>, MessageId, u64)>, MessageId, u64, MailboxCounts);

fn snapshot(mb: &Mailbox) -> Snapshot {
    (
        mb.entries().cloned().collect(),
        mb.dead_letters().cloned().collect(),
        mb.dedup_entries().map(|(k, id, until)| (k.to_vec(), id, until)).collect(),
        mb.last_id,
        mb.content_bytes(),
        mb.counts(),
    )
}

#[test]
fn new_mailbox_is_empty() {
    let mb = Mailbox::new(settings(0));
    mb.check_invariants();
    assert!(mb.is_empty());
    assert_eq!(mb.len(), 0);
    assert_eq!(mb.counts(), MailboxCounts::default());
    assert_eq!(mb.next_deadline(), None);
    assert_eq!(mb.oldest_ts(), None);
    assert_eq!(mb.free_effort(), 1);
    assert_eq!(mb.mem_usage(), std::mem::size_of::<Mailbox>());
    assert_eq!(mb.last_id, MessageId::MIN);
    assert!(!mb.is_full());
}

#[test]
fn push_stores_ready_and_refuses_known_ids() {
    let mut mb = mailbox_with(0, &[(10, 0, None), (5, 3, Some(100))]);
    assert_eq!(mb.len(), 2);
    assert_eq!(mb.last_id, id(10));
    assert_eq!(state_of(&mb, 5), Some((State::Ready, 0)));
    assert_eq!(
        mb.content_bytes(),
        (env(10, 0, None).content_bytes() + env(5, 3, None).content_bytes()) as u64
    );
    assert_eq!(mb.next_deadline(), Some(100));
    assert_eq!(mb.oldest_ts(), Some(5));

    // A held id, then a dead id, is refused without change.
    let before = snapshot(&mb);
    assert!(!mb.push(env(10, 9, Some(1)), Some((b"k".to_vec(), 50))));
    assert_eq!(snapshot(&mb), before);
    mb.kill(&[id(10)], DeadReason::MaxDeliveries, 7);
    assert!(!mb.push(env(10, 0, None), None));
    assert!(!mb.restore_entry(Entry::new(env(10, 0, None), 0, State::Ready)));
    assert!(!mb.restore_dead(DeadLetter {
        env: env(5, 0, None),
        deliveries: 0,
        reason: DeadReason::MaxDeliveries,
        at: 0
    }));
    mb.check_invariants();
}

#[test]
fn is_full_follows_maxlen() {
    let mut mb = Mailbox::new(Settings { maxlen: 2, ..settings(0) });
    assert!(!mb.is_full());
    mb.push(env(1, 0, None), None);
    assert!(!mb.is_full());
    mb.push(env(2, 0, None), None);
    assert!(mb.is_full());
    // Dead letters do not count.
    mb.kill(&[id(1)], DeadReason::MaxDeliveries, 0);
    assert!(!mb.is_full());
}

#[test]
fn next_ready_orders_by_priority_then_age() {
    let mb = mailbox_with(0, &[(1, 0, None), (2, 5, None), (3, 5, Some(50)), (4, 9, None), (5, 0, None)]);
    assert_eq!(mb.next_ready(10, 0), vec![id(4), id(2), id(3), id(1), id(5)]);
    assert_eq!(mb.next_ready(2, 0), vec![id(4), id(2)]);
    assert_eq!(mb.next_ready(0, 0), Vec::<MessageId>::new());
    // Expired at `now` is skipped without being removed.
    assert_eq!(mb.next_ready(10, 50), vec![id(4), id(2), id(1), id(5)]);
    assert_eq!(mb.next_ready(10, 49).len(), 5);
    assert_eq!(mb.len(), 5);
}

#[test]
fn lease_only_ready_messages() {
    let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, None), (3, 0, None)]);
    assert_eq!(mb.lease(&[id(1), id(1), id(9)], 100), vec![id(1)]);
    assert_eq!(state_of(&mb, 1), Some((State::Leased { until: 100 }, 1)));
    // Already leased: skipped, deadline unchanged.
    assert_eq!(mb.lease(&[id(1), id(2)], 200), vec![id(2)]);
    assert_eq!(state_of(&mb, 1), Some((State::Leased { until: 100 }, 1)));
    assert_eq!(mb.next_ready(10, 0), vec![id(3)]);
    assert_eq!(mb.next_deadline(), Some(100));
    let c = mb.counts();
    assert_eq!((c.ready, c.leased, c.delayed), (1, 2, 0));
    mb.check_invariants();
}

#[test]
fn take_removes_ready_messages() {
    let mut mb = mailbox_with(0, &[(1, 0, Some(10)), (2, 0, None), (3, 0, None)]);
    mb.lease(&[id(2)], 100);
    let taken = mb.take(&[id(1), id(2), id(1), id(7)]);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].env.id(), id(1));
    assert_eq!(taken[0].deliveries, 1);
    assert_eq!(mb.len(), 2);
    assert_eq!(mb.next_deadline(), Some(100));
    assert_eq!(
        mb.content_bytes(),
        (env(2, 0, None).content_bytes() + env(3, 0, None).content_bytes()) as u64
    );
    mb.check_invariants();
}

#[test]
fn ack_needs_a_delivery() {
    let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, None), (3, 0, None), (4, 0, None)]);
    mb.lease(&[id(1), id(2), id(3)], 100);
    mb.nack(&[id(2)], 10, 0); // ready again, deliveries 1
    mb.nack(&[id(3)], 10, 50); // delayed
    assert_eq!(mb.ack(&[id(4), id(3), id(2), id(1), id(1), id(9)]), vec![id(3), id(2), id(1)]);
    assert_eq!(mb.len(), 1);
    assert_eq!(state_of(&mb, 4), Some((State::Ready, 0)));
    assert_eq!(mb.next_deadline(), None);
    mb.check_invariants();
}

#[test]
fn nack_requeues_delays_or_kills() {
    let mut mb = mailbox_with(2, &[(1, 0, None), (2, 0, None), (3, 0, None), (4, 0, None)]);
    mb.lease(&[id(1), id(2), id(3)], 100);
    let out = mb.nack(&[id(3), id(1), id(4), id(9)], 20, 0);
    assert_eq!(out, NackOutcome { requeued: vec![id(3), id(1)], delayed: vec![], dead: vec![] });
    assert_eq!(state_of(&mb, 1), Some((State::Ready, 1)));

    let out = mb.nack(&[id(2)], 20, 30);
    assert_eq!(out.delayed, vec![id(2)]);
    assert_eq!(state_of(&mb, 2), Some((State::Delayed { until: 50 }, 1)));
    assert_eq!(mb.counts().delayed, 1);
    // Not leased: skipped.
    assert_eq!(mb.nack(&[id(2)], 20, 0), NackOutcome::default());

    // Second delivery reaches max_deliveries = 2: a nack kills it.
    mb.lease(&[id(1)], 200);
    let out = mb.nack(&[id(1)], 60, 0);
    assert_eq!(out.dead, vec![id(1)]);
    let dead = mb.dead_range(MessageId::MIN, MessageId::MAX, 0);
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].deliveries, dead[0].reason, dead[0].at), (2, DeadReason::MaxDeliveries, 60));
    mb.check_invariants();

    // A huge delay saturates.
    let mut mb = mailbox_with(0, &[(1, 0, None)]);
    mb.lease(&[id(1)], 200);
    mb.nack(&[id(1)], 60, u64::MAX);
    assert_eq!(state_of(&mb, 1), Some((State::Delayed { until: u64::MAX }, 1)));
    mb.check_invariants();
}

#[test]
fn unlimited_deliveries_never_kill() {
    let mut mb = mailbox_with(0, &[(1, 0, None)]);
    for round in 1..=50u64 {
        assert_eq!(mb.lease(&[id(1)], round * 10), vec![id(1)]);
        if round % 2 == 0 {
            assert_eq!(mb.nack(&[id(1)], round * 10, 0).requeued, vec![id(1)]);
        } else {
            assert_eq!(mb.sweep(round * 10).requeued, vec![id(1)]);
        }
    }
    assert_eq!(state_of(&mb, 1), Some((State::Ready, 50)));
    assert_eq!(mb.counts().dead, 0);
}

#[test]
fn delay_requeue_remove_and_kill() {
    let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, None), (3, 0, Some(500)), (4, 0, None)]);
    mb.lease(&[id(1), id(2), id(3)], 100);
    assert_eq!(mb.delay(&[id(1), id(4), id(1)], 300), 1);
    assert_eq!(state_of(&mb, 1), Some((State::Delayed { until: 300 }, 1)));
    assert_eq!(mb.requeue(&[id(1), id(2), id(4), id(2)]), 2);
    assert_eq!(state_of(&mb, 2), Some((State::Ready, 1)));
    assert_eq!(mb.remove(&[id(2), id(2), id(9)]), 1);
    // Kill works in any state and drops the TTL index.
    assert_eq!(mb.kill(&[id(3), id(4), id(3)], DeadReason::MaxDeliveries, 77), 2);
    assert_eq!(mb.next_deadline(), None);
    assert_eq!(mb.counts().dead, 2);
    assert_eq!(mb.dead_letters().map(|d| d.deliveries).collect::<Vec<_>>(), vec![1, 0]);
    mb.check_invariants();
}

#[test]
fn sweep_expires_requeues_and_kills() {
    let mut mb = mailbox_with(
        1,
        &[
            (1, 0, Some(50)),
            (2, 0, None),
            (3, 0, None),
            (4, 0, Some(40)),
            (5, 0, None),
            (6, 0, None),
            (7, 0, None),
        ],
    );
    mb.lease(&[id(5), id(3)], 30); // deliveries 1 = max: die at the deadline
    mb.lease(&[id(4)], 45); // TTL 40 passes first: expired, not killed
    mb.lease(&[id(6)], 90); // not due
    mb.lease(&[id(7)], 10);
    mb.delay(&[id(7)], 25);
    assert_eq!(mb.next_deadline(), Some(25));
    assert_eq!(mb.sweep(24), SweepOutcome::default());

    let out = mb.sweep(50);
    assert_eq!(
        out,
        SweepOutcome {
            expired: vec![id(1), id(4)],
            requeued: vec![id(7)],
            dead: vec![id(3), id(5)],
            leases_ended: 2
        }
    );
    assert!(!out.is_empty());
    assert_eq!(state_of(&mb, 7), Some((State::Ready, 1)));
    assert_eq!(
        mb.dead_letters().map(|d| (d.env.id(), d.at)).collect::<Vec<_>>(),
        vec![(id(3), 50), (id(5), 50)]
    );
    assert_eq!(mb.next_deadline(), Some(90));
    mb.check_invariants();
    // Dead letters never expire; a second sweep at the same time does nothing.
    assert!(mb.sweep(50).is_empty());
    assert_eq!(mb.sweep(90).dead, vec![id(6)]);
    assert_eq!(mb.next_deadline(), None);
    assert!(mb.sweep(u64::MAX).is_empty());
    mb.check_invariants();
}

#[test]
fn sweep_expires_exactly_at_the_ttl() {
    let mut mb = mailbox_with(0, &[(1, 0, Some(100))]);
    assert!(mb.sweep(99).is_empty());
    assert_eq!(mb.range(MessageId::MIN, MessageId::MAX, 0, 99).len(), 1);
    assert_eq!(mb.range(MessageId::MIN, MessageId::MAX, 0, 100).len(), 0);
    assert_eq!(mb.sweep(100).expired, vec![id(1)]);
    assert!(mb.is_empty());
    assert_eq!(mb.content_bytes(), 0);
}

#[test]
fn dedup_window() {
    let mut mb = Mailbox::new(settings(0));
    assert!(mb.push(env(10, 0, None), Some((b"k1".to_vec(), 110))));
    assert_eq!(mb.dedup_hit(b"k1", 10), Some(id(10)));
    assert_eq!(mb.dedup_hit(b"k1", 109), Some(id(10)));
    assert_eq!(mb.dedup_hit(b"k1", 110), None);
    assert_eq!(mb.dedup_hit(b"k2", 10), None);
    assert!(mb.push(env(20, 0, None), Some((b"k2".to_vec(), 60))));
    assert_eq!(mb.next_deadline(), Some(60));
    assert_eq!(
        mb.dedup_entries().collect::<Vec<_>>(),
        vec![(&b"k2"[..], id(20), 60), (&b"k1"[..], id(10), 110)]
    );
    // A push at ts 60 drops windows ended at or before 60.
    assert!(mb.push(env(60, 0, None), None));
    assert_eq!(mb.counts().dedup_keys, 1);
    assert_eq!(mb.dedup_hit(b"k2", 0), None);
    // Remembering a key again replaces its window.
    mb.restore_dedup(b"k1".to_vec(), id(60), 500);
    assert_eq!(mb.dedup_entries().collect::<Vec<_>>(), vec![(&b"k1"[..], id(60), 500)]);
    mb.check_invariants();
    assert_eq!(mb.expire_dedup(499), 0);
    assert_eq!(mb.sweep(500), SweepOutcome::default());
    assert_eq!(mb.counts().dedup_keys, 0);
    assert_eq!(mb.next_deadline(), None);
    mb.check_invariants();
}

#[test]
fn revive_and_purge() {
    let mut mb = mailbox_with(1, &[(1, 4, Some(1_000)), (2, 0, None), (3, 0, None)]);
    mb.lease(&[id(1), id(2), id(3)], 10);
    assert_eq!(mb.sweep(10).dead, vec![id(1), id(2), id(3)]);
    let bytes = mb.content_bytes();
    assert_eq!(mb.next_deadline(), None);
    assert_eq!(mb.revive(&[id(1), id(1), id(9)]), vec![id(1)]);
    assert_eq!(mb.content_bytes(), bytes);
    assert_eq!(state_of(&mb, 1), Some((State::Ready, 0)));
    assert_eq!(mb.next_deadline(), Some(1_000));
    assert_eq!(mb.next_ready(5, 0), vec![id(1)]);
    assert_eq!(mb.purge_dead(&[id(2), id(2), id(1)]), vec![id(2)]);
    assert_eq!(mb.content_bytes(), bytes - env(2, 0, None).content_bytes() as u64);
    mb.check_invariants();
    // A revived message whose TTL passed goes at the next sweep.
    mb.kill(&[id(1)], DeadReason::MaxDeliveries, 11);
    assert_eq!(mb.revive(&[id(1)]), vec![id(1)]);
    assert_eq!(mb.sweep(2_000).expired, vec![id(1)]);
    mb.check_invariants();
}

#[test]
fn thread_index_follows_held_messages() {
    let mut mb = Mailbox::new(settings(0));
    for ms in 1..=4u64 {
        let e = env(ms, 0, None);
        let e = Envelope::new(Parts { thread: (ms != 3).then_some(&b"t"[..]), ..e.parts() });
        assert!(mb.push(e, None));
    }
    let ids = |mb: &Mailbox| mb.thread(b"t", 0, 0).iter().map(|e| e.env.id().ms).collect::<Vec<_>>();
    assert_eq!(ids(&mb), vec![1, 2, 4]);
    assert_eq!(mb.thread(b"t", 2, 0).len(), 2);
    let leased = mb.lease(&[id(2)], 100);
    assert_eq!(leased.len(), 1);
    assert_eq!(ids(&mb), vec![1, 2, 4]);
    mb.ack(&[id(2)]);
    assert_eq!(ids(&mb), vec![1, 4]);
    mb.remove(&[id(1), id(4)]);
    assert!(mb.thread(b"t", 0, 0).is_empty());
    assert!(mb.threads.is_empty());
}

#[test]
fn ranges() {
    let mut mb = mailbox_with(0, &[(1, 0, None), (2, 0, Some(5)), (3, 0, None), (4, 0, None)]);
    let ids = |v: Vec<&Entry>| v.iter().map(|e| e.env.id()).collect::<Vec<_>>();
    assert_eq!(ids(mb.range(MessageId::MIN, MessageId::MAX, 0, 0)), vec![id(1), id(2), id(3), id(4)]);
    assert_eq!(ids(mb.range(MessageId::MIN, MessageId::MAX, 0, 5)), vec![id(1), id(3), id(4)]);
    assert_eq!(ids(mb.range(id(2), id(3), 0, 0)), vec![id(2), id(3)]);
    assert_eq!(ids(mb.range(id(1), MessageId::MAX, 2, 5)), vec![id(1), id(3)]);
    assert!(mb.range(id(3), id(2), 0, 0).is_empty());
    assert!(mb.range(MessageId::MAX, MessageId::MIN, 1, 0).is_empty());
    mb.kill(&[id(1), id(3), id(4)], DeadReason::MaxDeliveries, 0);
    let dead = |v: Vec<&DeadLetter>| v.iter().map(|d| d.env.id()).collect::<Vec<_>>();
    assert_eq!(dead(mb.dead_range(MessageId::MIN, MessageId::MAX, 0)), vec![id(1), id(3), id(4)]);
    assert_eq!(dead(mb.dead_range(id(2), MessageId::MAX, 1)), vec![id(3)]);
    assert!(mb.dead_range(id(4), id(1), 0).is_empty());
}

#[test]
fn restore_rebuilds_every_index() {
    let mut mb = Mailbox::new(settings(3));
    assert!(mb.restore_entry(Entry::new(env(1, 2, Some(70)), 2, State::Leased { until: 40 })));
    assert!(mb.restore_entry(Entry::new(env(2, 0, None), 1, State::Delayed { until: 30 })));
    assert!(mb.restore_entry(Entry::new(env(3, 0, None), 5, State::Ready)));
    assert!(mb.restore_dead(DeadLetter {
        env: env(9, 0, None),
        deliveries: 3,
        reason: DeadReason::MaxDeliveries,
        at: 8
    }));
    mb.restore_dedup(b"d".to_vec(), id(3), 20);
    mb.check_invariants();
    assert_eq!(mb.last_id, id(9));
    assert_eq!(mb.counts(), MailboxCounts { ready: 1, leased: 1, delayed: 1, dead: 1, dedup_keys: 1 });
    assert_eq!(mb.next_deadline(), Some(20));
    assert_eq!(mb.free_effort(), 5);
    assert!(mb.restore_entry(Entry::new(env(0, 0, None), 0, State::Ready)));
    assert_eq!(mb.last_id, id(9));
    assert_eq!(mb.oldest_ts(), Some(0));
    assert!(!mb.restore_entry(Entry::new(env(9, 0, None), 0, State::Ready)));
    mb.check_invariants();
}

#[test]
fn mem_usage_counts_everything() {
    let mut mb = Mailbox::new(settings(0));
    let base = mb.mem_usage();
    mb.push(env(1, 0, None), Some((b"key".to_vec(), 100)));
    let one = mb.mem_usage();
    assert!(one >= base + env(1, 0, None).content_bytes() + HELD_OVERHEAD + 100);
    mb.kill(&[id(1)], DeadReason::MaxDeliveries, 0);
    assert!(mb.mem_usage() < one);
    mb.purge_dead(&[id(1)]);
    mb.expire_dedup(100);
    assert_eq!(mb.mem_usage(), base);
}

// ---- randomized -----------------------------------------------------

use crate::core::xorshift::XorShift;

/// Some ids: mostly known ones, some unknown, some repeated.
fn pick_ids(rng: &mut XorShift, mb: &Mailbox) -> Vec<MessageId> {
    let known: Vec<MessageId> =
        mb.entries().map(|e| e.env.id()).chain(mb.dead_letters().map(|d| d.env.id())).collect();
    (0..rng.below(5))
        .map(|_| {
            if known.is_empty() || rng.below(8) == 0 {
                MessageId::new(rng.below(400), 0)
            } else {
                known[rng.below(known.len() as u64) as usize]
            }
        })
        .collect()
}

/// The delivery order computed the slow way.
fn expected_ready(mb: &Mailbox, now: u64) -> Vec<MessageId> {
    let mut ready: Vec<&Entry> =
        mb.entries().filter(|e| e.state() == State::Ready && !e.env.is_expired(now)).collect();
    ready.sort_by_key(|e| (std::cmp::Reverse(e.env.priority()), e.env.id()));
    ready.iter().map(|e| e.env.id()).collect()
}

/// Loading what an RDB save writes gives the same mailbox.
fn reload(mb: &Mailbox) -> Mailbox {
    let mut copy = Mailbox::new(mb.settings);
    for e in mb.entries() {
        assert!(copy.restore_entry(e.clone()));
    }
    for d in mb.dead_letters() {
        assert!(copy.restore_dead(d.clone()));
    }
    for (key, id, until) in mb.dedup_entries() {
        copy.restore_dedup(key.to_vec(), id, until);
    }
    copy.last_id = mb.last_id;
    copy
}

#[test]
fn random_operations_keep_every_index_consistent() {
    for seed in 1..=40u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let max_deliveries = rng.below(4) as u32;
        let mut mb = Mailbox::new(Settings {
            maxlen: 0,
            ttl_ms: 0,
            lease_ms: 10,
            max_deliveries,
            dedup_window_ms: 0,
            overflow: Overflow::Refuse,
        });
        let mut now = 0u64;
        for step in 0..400 {
            now += rng.below(6);
            let ids = pick_ids(&mut rng, &mb);
            match rng.below(14) {
                0..=2 => {
                    let new_id = MessageId::next_after(mb.last_id, now);
                    let ttl = if rng.below(3) == 0 { Some(now + rng.below(60)) } else { None };
                    let e = env(0, rng.below(10) as u8, ttl);
                    let payload = vec![b'x'; rng.below(50) as usize];
                    let e = Envelope::new(Parts { id: new_id, ts: now, payload: &payload, ..e.parts() });
                    let dedup = if rng.below(3) == 0 {
                        let key = format!("k{}", rng.below(6)).into_bytes();
                        if mb.dedup_hit(&key, now).is_some() {
                            None
                        } else {
                            Some((key, now + rng.below(40)))
                        }
                    } else {
                        None
                    };
                    assert!(mb.push(e, dedup));
                }
                3 => {
                    let want = expected_ready(&mb, now);
                    let count = rng.below(4) as usize;
                    let got = mb.next_ready(count, now);
                    assert_eq!(got, want.into_iter().take(count).collect::<Vec<_>>());
                    let leased = mb.lease(&got, now + 1 + rng.below(20));
                    assert_eq!(leased, got);
                }
                4 => {
                    let ids = mb.next_ready(rng.below(3) as usize, now);
                    let taken = mb.take(&ids);
                    assert_eq!(taken.iter().map(|e| e.env.id()).collect::<Vec<_>>(), ids);
                }
                5 => {
                    let before: Vec<Option<u32>> =
                        ids.iter().map(|i| mb.get(i).map(|e| e.deliveries)).collect();
                    let acked = mb.ack(&ids);
                    for (i, d) in ids.iter().zip(before) {
                        assert_eq!(acked.contains(i), d.is_some_and(|d| d > 0));
                    }
                }
                6 => {
                    // A nack on the master, replayed on a replica as effects.
                    let mut replica = mb.clone();
                    let delay = if rng.below(2) == 0 { 0 } else { rng.below(30) };
                    let out = mb.nack(&ids, now, delay);
                    replica.requeue(&out.requeued);
                    replica.delay(&out.delayed, now + delay);
                    replica.kill(&out.dead, DeadReason::MaxDeliveries, now);
                    replica.check_invariants();
                    assert_eq!(snapshot(&replica), snapshot(&mb));
                }
                7 => {
                    let until = now + rng.below(20);
                    let n = mb.delay(&ids, until);
                    assert!(n <= ids.len());
                }
                8 => {
                    mb.requeue(&ids);
                }
                9 => {
                    mb.kill(&ids, DeadReason::MaxDeliveries, now);
                }
                10 => {
                    mb.revive(&ids);
                }
                11 => {
                    mb.purge_dead(&ids);
                }
                12 => {
                    mb.remove(&ids);
                }
                _ => {
                    // A sweep on the master, replayed on a replica as effects.
                    let mut replica = mb.clone();
                    let deadline = mb.next_deadline();
                    let out = mb.sweep(now);
                    assert_eq!(
                        out.is_empty() && mb.counts().dedup_keys == replica.counts().dedup_keys,
                        deadline.is_none_or(|d| d > now)
                    );
                    for list in [&out.expired, &out.requeued, &out.dead] {
                        assert!(list.windows(2).all(|w| w[0] < w[1]), "not sorted: {list:?}");
                    }
                    assert!(mb.next_deadline().is_none_or(|d| d > now));
                    assert!(mb.entries().all(|e| !e.env.is_expired(now)));
                    assert_eq!(replica.remove(&out.expired), out.expired.len());
                    assert_eq!(replica.requeue(&out.requeued), out.requeued.len());
                    assert_eq!(replica.kill(&out.dead, DeadReason::MaxDeliveries, now), out.dead.len());
                    replica.expire_dedup(now);
                    replica.check_invariants();
                    assert_eq!(snapshot(&replica), snapshot(&mb));
                }
            }
            mb.check_invariants();
            if step % 50 == 0 {
                let copy = reload(&mb);
                copy.check_invariants();
                assert_eq!(snapshot(&copy), snapshot(&mb));
            }
        }
    }
}

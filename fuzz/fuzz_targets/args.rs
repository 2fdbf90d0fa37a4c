//! Every argument parser over arbitrary arguments: the input is split into arguments on
//! the byte 0x00, then handed to each `args::parse_*`, `check_name`, `check_agent`,
//! `parse_ids` and the topic parsers. None may panic; what they accept must round-trip where it can.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_mailbox::args::{self, DeadAction, Selection};
use redis_mailbox::core::meta;
use redis_mailbox::core::topics::{validate_topic, TopicIndex, TopicPattern};
use redis_mailbox::core::MessageId;

const SEPARATOR: u8 = 0;

fuzz_target!(|data: &[u8]| {
    let args: Vec<&[u8]> = data.split(|b| *b == SEPARATOR).collect();

    if let Ok(opts) = args::parse_send(&args) {
        if let Some(p) = opts.priority {
            assert!(p <= 9, "accepted PRIORITY {p}");
        }
        if let Some(m) = &opts.meta {
            assert_eq!(meta::validate(m), Ok(()), "accepted META that does not validate");
        }
        if let Some(a) = &opts.as_agent {
            assert!(args::check_agent(a).is_ok(), "accepted a bad AS agent");
        }
        if let Some(r) = &opts.reply_to {
            assert!(args::check_name(r).is_ok(), "accepted a bad REPLYTO");
        }
        for v in [&opts.dedup, &opts.content_type, &opts.thread, &opts.correlation].into_iter().flatten() {
            assert!(!v.is_empty(), "accepted an empty option value");
        }
    }
    if let Ok(opts) = args::parse_read(&args) {
        assert!(opts.count >= 1 && opts.count as i64 <= args::MAX_COUNT, "COUNT {}", opts.count);
        assert_ne!(opts.lease_ms, Some(0), "accepted LEASE 0");
    }
    if let Ok(range) = args::parse_range(&args) {
        assert!(range.count as i64 <= args::MAX_COUNT);
        if let Some(agent) = &range.as_agent {
            assert!(args::check_agent(agent).is_ok(), "accepted a bad AS agent");
        }
    }
    if let Ok((end, agent)) = args::split_as(&args) {
        assert_eq!(end + 2 * usize::from(agent.is_some()), args.len());
        assert!(agent.is_none_or(|a| args::check_agent(&a).is_ok()), "accepted a bad AS agent");
    }
    // MAILBOX.NACK and MAILBOX.ACK arguments.
    for allowed in [&["DELAY", "AS"][..], &["AS"]] {
        if let Ok(settle) = args::parse_settle(&args, allowed) {
            assert!(!settle.ids.is_empty(), "a settle without ids accepted");
            round_trip_ids(&settle.ids);
            if let Some(agent) = &settle.as_agent {
                assert!(args::check_agent(agent).is_ok(), "accepted a bad AS agent");
            }
            if !allowed.contains(&"DELAY") {
                assert_eq!(settle.delay_ms, 0, "DELAY accepted where it is not allowed");
            }
        }
    }
    if let Ok(create) = args::parse_create(&args) {
        assert_ne!(create.lease_ms, Some(0), "accepted LEASE 0");
    }
    if let Ok(DeadAction::Requeue(Selection::Ids(ids)) | DeadAction::Purge(Selection::Ids(ids))) =
        args::parse_dead(&args).map(|d| d.action)
    {
        assert!(!ids.is_empty());
        round_trip_ids(&ids);
    }
    if let Ok(ids) = args::parse_ids(&args) {
        assert_eq!(ids.len(), args.len());
        round_trip_ids(&ids);
    }
    if let Ok(thread) = args::parse_thread(&args) {
        assert!(thread.count as i64 <= args::MAX_COUNT);
    }
    if let Some((rate, opts)) = args.split_first() {
        if let Ok(Some((_, burst))) = args::parse_quota(rate, opts, 100) {
            assert!(burst >= 1, "accepted BURST 0");
        }
    }
    if let Ok(sub) = args::parse_sub(&args) {
        assert!((2..=args.len()).contains(&sub.end));
        assert!(sub.filter.min_priority.is_none_or(|p| p <= 9));
    }

    for arg in &args {
        if args::check_name(arg).is_ok() {
            assert!(!arg.is_empty() && std::str::from_utf8(arg).is_ok());
        }
        if args::check_agent(arg).is_ok() {
            assert!(args::check_name(arg).is_ok(), "an agent name that is no mailbox name");
        }
        if let Ok(v) = args::parse_int("N", arg, -5, 1_000) {
            assert!((-5..=1_000).contains(&v));
            assert_eq!(v.to_string().as_bytes(), strip_leading_zeros(arg).as_slice());
        }
        let _ = args::parse_int("N", arg, i64::MIN, i64::MAX);
        if let Ok(id) = args::parse_id(arg) {
            assert_eq!(MessageId::parse(id.to_string().as_bytes()), Some(id));
        }
        if let Ok(pattern) = TopicPattern::parse(arg) {
            // A stored pattern parses back to itself; a valid topic is a literal pattern
            // matching exactly itself.
            assert_eq!(TopicPattern::parse(pattern.as_bytes()).as_ref(), Ok(&pattern));
            if validate_topic(arg).is_ok() {
                assert!(pattern.is_literal() && pattern.matches(arg), "topic does not match itself");
            }
        }
    }
    // The trie index must agree with matching each pattern on its own: subscriber i
    // holds the i-th argument as its pattern, every argument is tried as a topic.
    let patterns: Vec<(usize, TopicPattern)> =
        args.iter().enumerate().filter_map(|(i, p)| TopicPattern::parse(p).ok().map(|p| (i, p))).collect();
    let mut index = TopicIndex::new();
    for (i, p) in &patterns {
        assert!(index.insert(p, *i));
    }
    assert_eq!(index.len(), patterns.len());
    for topic in args.iter().filter(|t| validate_topic(t).is_ok()) {
        let expected: std::collections::BTreeSet<usize> =
            patterns.iter().filter(|(_, p)| p.matches(topic)).map(|(i, _)| *i).collect();
        assert_eq!(index.matches(topic), expected, "index and patterns disagree on a topic");
    }
    // Removing half of them keeps the rest matching.
    for (i, p) in patterns.iter().step_by(2) {
        assert!(index.remove(p, i));
    }
    for topic in args.iter().filter(|t| validate_topic(t).is_ok()) {
        let expected: std::collections::BTreeSet<usize> =
            patterns.iter().skip(1).step_by(2).filter(|(_, p)| p.matches(topic)).map(|(i, _)| *i).collect();
        assert_eq!(index.matches(topic), expected, "index after removals disagrees");
    }
});

fn round_trip_ids(ids: &[MessageId]) {
    for id in ids {
        assert_eq!(MessageId::parse(id.to_string().as_bytes()), Some(*id));
    }
}

/// `-007` is read as -7: the canonical text of an accepted integer.
fn strip_leading_zeros(arg: &[u8]) -> Vec<u8> {
    let (sign, digits) = match arg.split_first() {
        Some((b'-', rest)) => (&b"-"[..], rest),
        _ => (&b""[..], arg),
    };
    let trimmed = match digits.iter().position(|b| *b != b'0') {
        Some(i) => &digits[i..],
        None => &b"0"[..],
    };
    if trimmed == b"0" {
        return b"0".to_vec();
    }
    [sign, trimmed].concat()
}

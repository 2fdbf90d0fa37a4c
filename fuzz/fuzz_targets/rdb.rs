//! The RDB decoders over arbitrary input. The bytes are a stream of items, each a tag
//! byte then its value, read by an `RdbIn` that behaves like Redis's module IO (a read of
//! the wrong kind or past the end is an error):
//!
//! | tag % 4 | item |
//! | --- | --- |
//! | 0 | unsigned: 8 bytes little-endian |
//! | 1 | unsigned: 1 byte (small counts are easy to reach) |
//! | 2 | buffer: u16 little-endian length, then the bytes |
//! | 3 | buffer: u8 length, then the bytes |
//!
//! The stream goes to `types::mailbox::load` and `types::namespace::load` at every encoding
//! version each reads, and versions from the future must refuse it; the raw bytes go to
//! each `codec::decode_*`, and split on 0x00 to `effects::parse_any`. Whatever decodes
//! must save and load again to the same digest, and rebuild from its AOF-rewrite effects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_mailbox::core::codec;
use redis_mailbox::core::namespace::Namespace;
use redis_mailbox::core::{Mailbox, MessageId};
use redis_mailbox::types::mailbox as data_type;
use redis_mailbox::types::rdb::{RdbIn, RdbItems};
use redis_mailbox::effects::{self, AnyEffect};
use redis_mailbox::types::namespace as namespace_type;

/// `RdbIn` over the fuzz bytes.
struct FuzzIn<'a> {
    data: &'a [u8],
}

impl FuzzIn<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.data.len() < n {
            self.data = &[];
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    fn tag(&mut self) -> Option<u8> {
        self.take(1).map(|t| t[0] % 4)
    }
}

impl RdbIn for FuzzIn<'_> {
    fn unsigned(&mut self) -> Option<u64> {
        match self.tag()? {
            0 => self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
            1 => self.take(1).map(|b| u64::from(b[0])),
            _ => {
                // A buffer where a number was expected: an IO error, and like Redis
                // every later read fails too.
                self.data = &[];
                None
            }
        }
    }

    fn buffer(&mut self) -> Option<Vec<u8>> {
        let len = match self.tag()? {
            2 => self.take(2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))?,
            3 => self.take(1).map(|b| usize::from(b[0]))?,
            _ => {
                self.data = &[];
                return None;
            }
        };
        self.take(len).map(<[u8]>::to_vec)
    }
}

fn mailbox_digest(mb: &Mailbox) -> Vec<u8> {
    let mut all = Vec::new();
    data_type::digest_parts(mb, |b| {
        all.extend_from_slice(&(b.len() as u64).to_le_bytes());
        all.extend_from_slice(b);
    });
    all
}

fn namespace_digest(ns: &Namespace) -> Vec<u8> {
    let mut all = Vec::new();
    namespace_type::digest_parts(ns, |b| {
        all.extend_from_slice(&(b.len() as u64).to_le_bytes());
        all.extend_from_slice(b);
    });
    all
}

fn check_mailbox(mb: &Mailbox) {
    let counts = mb.counts();
    assert_eq!(counts.ready + counts.leased + counts.delayed, mb.len() as u64, "counts {counts:?}");
    assert!(mb.entries().all(|e| e.env.id() <= mb.last_id), "an entry above last_id");
    assert!(mb.dead_letters().all(|d| d.env.id() <= mb.last_id), "a dead letter above last_id");
    let _ = (mb.mem_usage(), mb.free_effort(), mb.oldest_ts(), mb.next_deadline());

    // Saved, it loads back to the same digest.
    let mut out = RdbItems::default();
    data_type::save(mb, &mut out);
    let again = data_type::load(&mut out, data_type::ENCODING_VERSION).expect("a saved mailbox must load");
    assert_eq!(mailbox_digest(&again), mailbox_digest(mb), "save/load changed the mailbox");
    assert_eq!(again.last_id, mb.last_id);

    // The AOF rewrite's effects, through their argument form, rebuild it.
    let mut rebuilt: Option<Mailbox> = None;
    for effect in effects::rebuild(mb) {
        let args = effect.to_args();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let parsed = match effects::parse_any(&refs) {
            Ok(AnyEffect::Mailbox(e)) => e,
            other => panic!("a rewrite effect did not parse back: {other:?}"),
        };
        assert_eq!(parsed, effect);
        match (&mut rebuilt, parsed) {
            (None, effects::Effect::Init { settings, last_id }) => {
                let mut fresh = Mailbox::new(settings);
                effects::Effect::Init { settings, last_id }.apply(&mut fresh);
                rebuilt = Some(fresh);
            }
            (Some(target), e) => e.apply(target),
            (None, e) => panic!("the rewrite does not start with INIT: {e:?}"),
        }
    }
    let rebuilt = rebuilt.expect("the rewrite has an INIT");
    assert_eq!(mailbox_digest(&rebuilt), mailbox_digest(mb), "AOF rewrite changed the mailbox");
}

fn exercise_mailbox(mb: &Mailbox, now: u64) {
    check_mailbox(mb);
    let _ = mb.range(MessageId::MIN, MessageId::MAX, 0, now);
    let _ = mb.dead_range(MessageId::MIN, MessageId::MAX, 3);
    let _ = mb.thread(b"t", 0, now);

    // Time passes: what is due is applied and the indexes stay consistent.
    let mut later = mb.clone();
    later.sweep(now);
    check_mailbox(&later);
    let ids = later.next_ready(4, now);
    later.lease(&ids, now.saturating_add(1000));
    later.nack(&ids[..ids.len() / 2], now, 10);
    later.ack(&ids[ids.len() / 2..]);
    check_mailbox(&later);

    // At the end of time nothing is leased or delayed any more.
    let mut end = mb.clone();
    end.sweep(u64::MAX);
    let counts = end.counts();
    assert_eq!((counts.leased, counts.delayed), (0, 0), "sweep(u64::MAX) left timed messages");
    check_mailbox(&end);
}

fn check_namespace(ns: &Namespace) {
    let mut out = RdbItems::default();
    namespace_type::save(ns, &mut out);
    let again = namespace_type::load(&mut out, namespace_type::ENCODING_VERSION)
        .expect("a saved namespace must load");
    assert_eq!(namespace_digest(&again), namespace_digest(ns), "save/load changed the namespace");

    let mut rebuilt = Namespace::new();
    for effect in namespace_type::rewrite(ns) {
        let args = effect.to_args();
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        match effects::parse_any(&refs) {
            Ok(AnyEffect::Namespace(parsed)) => {
                assert_eq!(parsed, effect);
                parsed.apply(&mut rebuilt);
            }
            other => panic!("a namespace rewrite effect did not parse back: {other:?}"),
        }
    }
    assert_eq!(namespace_digest(&rebuilt), namespace_digest(ns), "AOF rewrite changed the namespace");

    // The subscription index agrees with the patterns, on every literal pattern as a topic.
    for (_, pattern) in ns.subscriptions() {
        if !pattern.is_literal() {
            continue;
        }
        let topic = pattern.as_bytes();
        // In order and each once: what a set of the names gives.
        let expected: std::collections::BTreeSet<Vec<u8>> =
            ns.subscriptions().filter(|(_, p)| p.matches(topic)).map(|(m, _)| m.to_vec()).collect();
        assert_eq!(ns.receivers(topic), Vec::from_iter(expected), "receivers disagree with the patterns");
    }
    let _ = (ns.mem_usage(), ns.free_effort(), ns.is_empty());
}

fuzz_target!(|data: &[u8]| {
    // The RDB stream.
    for encver in 1..=data_type::ENCODING_VERSION {
        if let Some(mb) = data_type::load(&mut FuzzIn { data }, encver) {
            let now = data.iter().fold(0u64, |acc, b| acc.rotate_left(5) ^ u64::from(*b));
            exercise_mailbox(&mb, now);
        }
    }
    // Versions from the future (and nonsense) are refused whatever follows.
    for encver in [0, -1, 1023, data_type::ENCODING_VERSION + 1] {
        assert!(data_type::load(&mut FuzzIn { data }, encver).is_none(), "mailbox encver {encver} loaded");
    }
    for encver in [0, -1, 1023, namespace_type::ENCODING_VERSION + 1] {
        assert!(namespace_type::load(&mut FuzzIn { data }, encver).is_none(), "ns encver {encver} loaded");
    }
    // Every namespace version this module reads.
    for encver in 1..=namespace_type::ENCODING_VERSION {
        if let Some(ns) = namespace_type::load(&mut FuzzIn { data }, encver) {
            check_namespace(&ns);
        }
    }

    // The raw bytes as codec blobs.
    if let Ok(env) = codec::decode_envelope(data) {
        let mut blob = Vec::new();
        codec::encode_envelope(&env, &mut blob);
        assert_eq!(codec::decode_envelope(&blob), Ok(env));
    }
    if let Ok(entry) = codec::decode_entry(data) {
        let mut blob = Vec::new();
        codec::encode_entry(&entry, &mut blob);
        assert_eq!(codec::decode_entry(&blob), Ok(entry));
    }
    if let Ok(dead) = codec::decode_dead(data) {
        let mut blob = Vec::new();
        codec::encode_dead(&dead, &mut blob);
        assert_eq!(codec::decode_dead(&blob), Ok(dead));
    }
    if let Ok(settings) = codec::decode_settings(data) {
        let mut blob = Vec::new();
        codec::encode_settings(&settings, &mut blob);
        assert_eq!(codec::decode_settings(&blob), Ok(settings));
    }

    // The raw bytes as the arguments of a MAILBOX.EFFECT.
    let args: Vec<&[u8]> = data.split(|b| *b == 0).collect();
    if let Ok(effect) = effects::parse_any(&args) {
        let again = match &effect {
            AnyEffect::Mailbox(e) => e.to_args(),
            AnyEffect::Namespace(e) => e.to_args(),
            AnyEffect::Deliver(d) => d.to_args(),
        };
        let refs: Vec<&[u8]> = again.iter().map(Vec::as_slice).collect();
        assert_eq!(effects::parse_any(&refs).as_ref(), Ok(&effect), "an effect did not round-trip");
        if let AnyEffect::Mailbox(e) = effect {
            // Applying any well-formed effect to an empty mailbox must not panic.
            // Settings from a format-1 blob (maxlen 0, ttl 0, lease 1, max deliveries 2,
            // dedup window 10), so this target does not follow every new settings field.
            let Ok(settings) = codec::decode_settings(&[1, 0, 0, 1, 2, 10]) else {
                panic!("a format-1 settings blob no longer decodes");
            };
            let mut mb = Mailbox::new(settings);
            e.apply(&mut mb);
            let counts = mb.counts();
            assert_eq!(counts.ready + counts.leased + counts.delayed, mb.len() as u64);
        }
    }
});

//! Unit tests of the codec, with writers of the old formats it still reads.

#![forbid(unsafe_code)]

use super::*;
use crate::core::xorshift::XorShift;

fn full_envelope() -> EnvelopeRef {
    Envelope::new(Parts {
        id: MessageId::new(1_700_000_000_123, 42),
        from: b"alice",
        to: b"bob",
        ts: 1_700_000_000_123,
        priority: 9,
        expires_at: Some(1_700_000_060_000),
        content_type: Some(&b"application/json"[..]),
        payload: &vec![0xAB; 300],
        meta: Some(&b"{\"k\":1}"[..]),
        thread: Some(&b"t-1"[..]),
        correlation: Some(&b"c-9"[..]),
        reply_to: Some(&b"alice"[..]),
        via: None,
        confirm: false,
    })
}

fn bare_envelope() -> EnvelopeRef {
    Envelope::new(Parts::default())
}

fn extreme_envelope() -> EnvelopeRef {
    Envelope::new(Parts {
        id: MessageId::MAX,
        ts: u64::MAX,
        expires_at: Some(u64::MAX),
        content_type: Some(b""),
        meta: Some(b""),
        ..Parts::default()
    })
}

fn envelopes() -> Vec<EnvelopeRef> {
    vec![full_envelope(), bare_envelope(), extreme_envelope()]
}

fn states() -> Vec<State> {
    vec![
        State::Ready,
        State::Leased { until: 5 },
        State::Delayed { until: u64::MAX },
        State::Leased { until: 0 },
    ]
}

fn settings_samples() -> Vec<Settings> {
    vec![
        Settings {
            maxlen: 0,
            ttl_ms: 0,
            lease_ms: 1,
            max_deliveries: 0,
            dedup_window_ms: 0,
            overflow: Overflow::Refuse,
        },
        Settings {
            maxlen: 10_000,
            ttl_ms: 86_400_000,
            lease_ms: 30_000,
            max_deliveries: 5,
            dedup_window_ms: 600_000,
            overflow: Overflow::Refuse,
        },
        Settings {
            maxlen: u64::MAX,
            ttl_ms: u64::MAX,
            lease_ms: u64::MAX,
            max_deliveries: u32::MAX,
            dedup_window_ms: u64::MAX,
            overflow: Overflow::Refuse,
        },
    ]
}

fn enc<T: ?Sized>(value: &T, f: fn(&T, &mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(value, &mut out);
    out
}

/// A decoder reduced to "did it decode".
type Decodes = fn(&[u8]) -> bool;

/// Every blob kind, with its decoder.
fn sample_blobs() -> Vec<(Vec<u8>, Decodes)> {
    let mut blobs: Vec<(Vec<u8>, Decodes)> = Vec::new();
    for env in envelopes() {
        blobs.push((enc(&*env, encode_envelope), |b| decode_envelope(b).is_ok()));
        let entry = Entry::new(env.clone(), 3, State::Leased { until: 99 });
        blobs.push((enc(&entry, encode_entry), |b| decode_entry(b).is_ok()));
        let dead = DeadLetter { env, deliveries: 7, reason: DeadReason::MaxDeliveries, at: 1234 };
        blobs.push((enc(&dead, encode_dead), |b| decode_dead(b).is_ok()));
    }
    for s in settings_samples() {
        blobs.push((enc(&s, encode_settings), |b| decode_settings(b).is_ok()));
    }
    blobs
}

fn varint_of(v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, v);
    out
}

#[test]
fn varints_round_trip() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut values = vec![0, 1, 0x7f, 0x80, 0x3fff, 0x4000, u64::from(u32::MAX), u64::MAX - 1, u64::MAX];
    for _ in 0..1000 {
        let r = rng.next();
        values.push(r >> (r % 64));
    }
    for v in values {
        let bytes = varint_of(v);
        assert!(bytes.len() <= 10);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.varint(), Ok(v));
        assert_eq!(r.finish(), Ok(()));
    }
    assert_eq!(varint_of(0), vec![0]);
    assert_eq!(varint_of(300), vec![0xAC, 0x02]);
    assert_eq!(varint_of(u64::MAX).len(), 10);
}

#[test]
fn bad_varints_are_refused() {
    // Eleven bytes.
    let mut long = vec![0x80; 10];
    long.push(0);
    assert!(Reader::new(&long).varint().is_err());
    // Ten bytes whose last one has the continuation bit.
    let mut r = Reader::new(&[0xFF; 10]);
    assert!(r.varint().is_err());
    // Ten bytes overflowing u64.
    let mut over = vec![0xFF; 9];
    over.push(0x02);
    assert_eq!(Reader::new(&over).varint(), Err(DecodeError("varint overflows u64")));
    // Non-minimal but in range is fine.
    assert_eq!(Reader::new(&[0x81, 0x00]).varint(), Ok(1));
    // Truncated.
    assert!(Reader::new(&[0x80]).varint().is_err());
    assert!(Reader::new(&[]).varint().is_err());
}

#[test]
fn envelopes_round_trip() {
    for env in envelopes() {
        let blob = enc(&*env, encode_envelope);
        assert_eq!(blob.first(), Some(&FORMAT));
        assert_eq!(decode_envelope(&blob), Ok(env));
    }
}

#[test]
fn entries_round_trip() {
    for env in envelopes() {
        for state in states() {
            for deliveries in [0, 1, u32::MAX] {
                let entry = Entry::new(env.clone(), deliveries, state);
                let blob = enc(&entry, encode_entry);
                assert_eq!(blob.first(), Some(&FORMAT));
                assert_eq!(decode_entry(&blob), Ok(entry));
            }
        }
    }
}

#[test]
fn dead_letters_round_trip() {
    for env in envelopes() {
        for (deliveries, at) in [(0, 0), (5, 1_700_000_000_000), (u32::MAX, u64::MAX)] {
            let dead = DeadLetter { env: env.clone(), deliveries, reason: DeadReason::MaxDeliveries, at };
            let blob = enc(&dead, encode_dead);
            assert_eq!(decode_dead(&blob), Ok(dead));
        }
    }
}

#[test]
fn settings_round_trip() {
    for s in settings_samples() {
        let blob = enc(&s, encode_settings);
        assert_eq!(decode_settings(&blob), Ok(s));
    }
}

#[test]
fn random_envelopes_round_trip() {
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut next = move || rng.next();
    for _ in 0..500 {
        let pool: Vec<u8> = (0..200u32).map(|i| (i as u8).wrapping_mul(31)).collect();
        let bytes = |n: u64| &pool[..n as usize];
        let r = next();
        let opt = |bit: u64, v| if r >> bit & 1 == 1 { Some(v) } else { None };
        let env = Envelope::new(Parts {
            id: MessageId::new(r >> 3, r % 17),
            from: bytes(r % 7),
            to: bytes(r % 11),
            ts: r.rotate_left(7),
            priority: (r % 10) as u8,
            expires_at: if r & 1 == 1 { Some(r >> 1) } else { None },
            content_type: opt(1, bytes(r % 5)),
            payload: bytes(r % 200),
            meta: opt(2, bytes(r % 13)),
            thread: opt(3, bytes(r % 3)),
            correlation: opt(4, bytes(r % 130)),
            reply_to: opt(5, bytes(1)),
            via: opt(6, bytes(r % 9)),
            confirm: r & 128 == 128,
        });
        let state = match r % 3 {
            0 => State::Ready,
            1 => State::Leased { until: r >> 5 },
            _ => State::Delayed { until: r >> 9 },
        };
        let entry = Entry::new(env, (r >> 32) as u32, state);
        assert_eq!(decode_entry(&enc(&entry, encode_entry)), Ok(entry));
    }
}

#[test]
fn format_1_blobs_still_decode() {
    // A format-1 entry: no `via`; format-1 settings: no `overflow`.
    let mut entry = vec![1u8];
    for v in [5u64, 0] {
        entry.push(v as u8);
    }
    entry.extend_from_slice(&[1, b'a', 1, b'b', 9, 3, 0, 0, 2, b'h', b'i', 0, 0, 0, 0, 2, 0]);
    let decoded = decode_entry(&entry).unwrap();
    assert_eq!(decoded.env.payload(), b"hi");
    assert_eq!(decoded.env.parts().via, None);
    assert_eq!(decoded.deliveries, 2);
    let settings = decode_settings(&[1, 0, 0, 5, 3, 7]).unwrap();
    assert_eq!(settings.lease_ms, 5);
    assert_eq!(settings.overflow, Overflow::Refuse);
    assert!(decode_settings(&[3, 0, 0, 5, 3, 7]).is_err());
}

#[test]
fn every_truncation_is_an_error() {
    for (blob, decodes) in sample_blobs() {
        assert!(decodes(&blob));
        for n in 0..blob.len() {
            assert!(!decodes(&blob[..n]), "prefix of {n} bytes decoded");
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    for (blob, decodes) in sample_blobs() {
        for extra in [&[0u8][..], &[FORMAT], &[0xFF, 0xFF]] {
            let mut longer = blob.clone();
            longer.extend_from_slice(extra);
            assert!(!decodes(&longer));
        }
    }
}

#[test]
fn wrong_format_byte_is_an_error() {
    for (blob, decodes) in sample_blobs() {
        for format in [0u8, FORMAT + 1, 0xFF] {
            let mut other = blob.clone();
            other[0] = format;
            assert!(!decodes(&other));
        }
    }
}

#[test]
fn every_single_bit_flip_is_handled() {
    for (blob, decodes) in sample_blobs() {
        for bit in 0..blob.len() * 8 {
            let mut flipped = blob.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            // Must not panic; either answer is acceptable.
            let _ = decodes(&flipped);
        }
    }
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = XorShift(0xDEAD_BEEF_CAFE_F00D);
    for len in 0..400usize {
        let mut blob: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = blob.first_mut() {
            *first = FORMAT;
        }
        let _ = decode_envelope(&blob);
        let _ = decode_entry(&blob);
        let _ = decode_dead(&blob);
        let _ = decode_settings(&blob);
    }
}

/// `bare_envelope` encoded by hand in format 3, with another priority. Byte 7
/// is the `expires_at` flag.
fn hand_envelope(priority: u8) -> Vec<u8> {
    vec![FIELDS_FORMAT, 0, 0, 0, 0, 0, priority, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Blobs of formats 1 to 3 (the envelope as a list of fields) still decode to
/// the same envelope.
#[test]
fn field_formats_still_decode() {
    for env in envelopes() {
        let mut blob = vec![FIELDS_FORMAT];
        put_envelope_fields(&env, &mut blob);
        assert_eq!(decode_envelope(&blob), Ok(env.clone()));
        let mut entry = vec![FIELDS_FORMAT];
        put_envelope_fields(&env, &mut entry);
        entry.extend([2, STATE_LEASED, 7]);
        let decoded = decode_entry(&entry).expect("a format 3 entry");
        assert_eq!(
            (decoded.env.clone(), decoded.deliveries, decoded.state()),
            (env, 2, State::Leased { until: 7 })
        );
    }
}

/// What checking the bytes learns is what walking the envelope gives.
#[test]
fn a_scan_learns_what_the_envelope_says() {
    for env in envelopes() {
        let (loaded, scanned) = Envelope::from_bytes_scanned(env.as_bytes()).expect("loads");
        assert_eq!(loaded, env);
        assert_eq!(scanned, Scanned::of(&env));
        assert_eq!(scanned.content_bytes, env.content_bytes());
        assert_eq!(&env.as_bytes()[scanned.to.clone()], env.to());
    }
}

/// Format 4 takes the stored bytes only when they are exactly an envelope's.
#[test]
fn stored_bytes_are_checked_whole() {
    let mut padded_cases = 0;
    for env in envelopes() {
        let raw = env.as_bytes();
        assert_eq!(Envelope::from_bytes(raw), Some(env.clone()));
        for cut in 0..raw.len() {
            assert!(Envelope::from_bytes(&raw[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = raw.to_vec();
        longer.push(0);
        assert!(Envelope::from_bytes(&longer).is_none());
        for (at, bad) in [(0, 4u8), (1, 10), (2, 0x40)] {
            let mut wrong = raw.to_vec();
            wrong[at] = bad;
            assert!(Envelope::from_bytes(&wrong).is_none(), "byte {at} = {bad}");
        }
        // The id's sequence written in two bytes where one would do (`0x80 | s, 0`):
        // the same value, not the bytes `new` writes.
        let seq = raw[11];
        if seq < 0x80 {
            let padded = [&raw[..11], &[0x80 | seq, 0], &raw[12..]].concat();
            assert!(Envelope::from_bytes(&padded).is_none(), "a padded varint");
            padded_cases += 1;
        }
    }
    assert!(padded_cases > 0);
}

#[test]
fn hand_made_blobs() {
    assert_eq!(decode_envelope(&hand_envelope(0)), Ok(bare_envelope()));
    assert_eq!(decode_envelope(&hand_envelope(9)).map(|e| e.priority()), Ok(9));
    assert_eq!(decode_envelope(&hand_envelope(10)), Err(DecodeError("priority out of range")));
    assert!(decode_envelope(&hand_envelope(255)).is_err());

    // An optional flag other than 0/1.
    let mut bad_flag = hand_envelope(0);
    bad_flag[7] = 2;
    assert_eq!(decode_envelope(&bad_flag), Err(DecodeError("bad optional flag")));

    // A huge claimed length must fail before any allocation.
    let mut huge = vec![FIELDS_FORMAT, 0, 0];
    huge.extend(varint_of(u64::MAX));
    huge.extend_from_slice(b"abc");
    assert_eq!(decode_envelope(&huge), Err(DecodeError("length past the end")));
    let mut just_over = vec![FIELDS_FORMAT, 0, 0, 4];
    just_over.extend_from_slice(b"abc");
    assert_eq!(decode_envelope(&just_over), Err(DecodeError("length past the end")));
    // Format 4: the stored bytes' length is checked the same way.
    let mut huge = vec![FORMAT];
    huge.extend(varint_of(u64::MAX));
    huge.extend_from_slice(b"abc");
    assert_eq!(decode_envelope(&huge), Err(DecodeError("length past the end")));
}

#[test]
fn entry_fields_are_checked() {
    let env = enc(&*bare_envelope(), encode_envelope);
    let entry = |tail: &[u8]| {
        let mut b = env.clone();
        b.extend_from_slice(tail);
        decode_entry(&b)
    };
    assert_eq!(entry(&[0, 0]).map(|e| e.state()), Ok(State::Ready));
    assert_eq!(entry(&[2, 1, 7]).map(|e| (e.deliveries, e.state())), Ok((2, State::Leased { until: 7 })));
    assert_eq!(entry(&[0, 2, 7]).map(|e| e.state()), Ok(State::Delayed { until: 7 }));
    assert_eq!(entry(&[0, 3]), Err(DecodeError("unknown entry state")));
    assert_eq!(entry(&[0, 3, 7]), Err(DecodeError("unknown entry state")));
    assert!(entry(&[0, 1]).is_err());
    let mut over = varint_of(u64::from(u32::MAX) + 1);
    over.push(0);
    assert_eq!(entry(&over), Err(DecodeError("deliveries out of range")));
    let mut max = varint_of(u64::from(u32::MAX));
    max.push(0);
    assert_eq!(entry(&max).map(|e| e.deliveries), Ok(u32::MAX));
}

#[test]
fn dead_fields_are_checked() {
    let env = enc(&*bare_envelope(), encode_envelope);
    let dead = |tail: &[u8]| {
        let mut b = env.clone();
        b.extend_from_slice(tail);
        decode_dead(&b)
    };
    assert_eq!(
        dead(&[4, 1, 9]).map(|d| (d.deliveries, d.reason, d.at)),
        Ok((4, DeadReason::MaxDeliveries, 9))
    );
    assert_eq!(dead(&[4, 0, 9]), Err(DecodeError("unknown dead reason")));
    assert_eq!(dead(&[4, 2, 9]).map(|d| d.reason), Ok(DeadReason::Overflow));
    assert_eq!(dead(&[4, 3, 9]), Err(DecodeError("unknown dead reason")));
    let mut over = varint_of(u64::from(u32::MAX) + 1);
    over.extend_from_slice(&[1, 0]);
    assert_eq!(dead(&over), Err(DecodeError("deliveries out of range")));
}

#[test]
fn settings_fields_are_checked() {
    assert!(decode_settings(&[FORMAT, 0, 0, 1, 0, 0, 0]).is_ok());
    assert_eq!(decode_settings(&[FORMAT, 0, 0, 1, 0, 0, 1]).map(|s| s.overflow), Ok(Overflow::DropOldest));
    assert_eq!(decode_settings(&[FORMAT, 0, 0, 1, 0, 0, 2]), Err(DecodeError("unknown overflow policy")));
    assert_eq!(decode_settings(&[FORMAT, 0, 0, 0, 0, 0, 0]), Err(DecodeError("lease_ms must be at least 1")));
    let mut over = vec![FORMAT, 0, 0, 1];
    over.extend(varint_of(u64::from(u32::MAX) + 1));
    over.extend([0, 0]);
    assert_eq!(decode_settings(&over), Err(DecodeError("max_deliveries out of range")));
    assert_eq!(decode_settings(&[FORMAT + 1, 0, 0, 1, 0, 0, 0]), Err(DecodeError("unknown format")));
    assert_eq!(decode_settings(&[]), Err(DecodeError("truncated")));
}

#[test]
fn an_envelope_blob_is_not_an_entry() {
    // The entry decoder wants more after the envelope; the envelope decoder
    // refuses the entry's extra bytes.
    let env = full_envelope();
    let blob = enc(&*env, encode_envelope);
    assert!(decode_entry(&blob).is_err());
    let entry = Entry::ready(env);
    assert!(decode_envelope(&enc(&entry, encode_entry)).is_err());
}

// ---- writers of the old formats ------------------------------------------

/// An envelope in the field layout of format 3 (tests of the old formats' decoding).
fn put_envelope_fields(env: &Envelope, out: &mut Vec<u8>) {
    let env = env.parts();
    put_varint(out, env.id.ms);
    put_varint(out, env.id.seq);
    put_bytes(out, env.from);
    put_bytes(out, env.to);
    put_varint(out, env.ts);
    out.push(env.priority);
    match env.expires_at {
        None => out.push(0),
        Some(at) => {
            out.push(1);
            put_varint(out, at);
        }
    }
    put_opt_bytes(out, env.content_type);
    put_bytes(out, env.payload);
    put_opt_bytes(out, env.meta);
    put_opt_bytes(out, env.thread);
    put_opt_bytes(out, env.correlation);
    put_opt_bytes(out, env.reply_to);
    put_opt_bytes(out, env.via);
    out.push(if env.confirm { FLAG_CONFIRM } else { 0 });
}

fn put_opt_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

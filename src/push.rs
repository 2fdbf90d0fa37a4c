//! Real-time push: every delivery is also published, as one JSON object, on the
//! receiving mailbox's channel (`mailbox.push-prefix` + mailbox name), with sharded
//! pub/sub where the server has it. Pushing settles nothing: the message stays in
//! the mailbox until acked.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::Context;

use crate::config;
use crate::core::mailbox::Hints;
use crate::core::Envelope;
use crate::counters;
use crate::server::context::{in_cluster, rstring};
use crate::server::signal;

/// Moves whenever a client may have begun to listen on some channel (a command
/// filter sees every SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE) or channel names may
/// have changed (`mailbox.push-prefix`, a renamed key). A mailbox whose last push
/// found no listener at the current epoch is not encoded and pushed again until
/// the epoch moves: nobody could receive it.
static LISTEN_EPOCH: AtomicU64 = AtomicU64::new(1);

/// Forgets every "nobody listens" that `publish` learnt.
pub fn listeners_may_have_changed() {
    LISTEN_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The push message: `id`, `mailbox`, `from`, `to`, `ts`, `priority`, then the
/// optional `type`, `meta` (the object itself), `thread`, `correlation`,
/// `reply_to`, `via`, `expires`; the payload as `payload` when it is UTF-8, else as
/// `payload_base64`. Written by hand: this runs on every delivery.
pub fn encode(env: &Envelope, mailbox: &[u8]) -> Vec<u8> {
    let env = env.parts();
    let mut out = Vec::with_capacity(env.payload.len() + 160);
    out.extend_from_slice(b"{\"id\":\"");
    push_decimal(&mut out, env.id.ms);
    out.push(b'-');
    push_decimal(&mut out, env.id.seq);
    out.push(b'"');
    field_text(&mut out, "mailbox", mailbox);
    field_text(&mut out, "from", env.from);
    field_text(&mut out, "to", env.to);
    field_raw(&mut out, "ts", &[]);
    push_decimal(&mut out, env.ts);
    field_raw(&mut out, "priority", &[]);
    push_decimal(&mut out, u64::from(env.priority));
    if let Some(t) = env.content_type {
        field_text(&mut out, "type", t);
    }
    match std::str::from_utf8(env.payload) {
        Ok(text) => {
            field_raw(&mut out, "payload", b"\"");
            escape_into(&mut out, text.as_bytes());
            out.push(b'"');
        }
        Err(_) => field_text(&mut out, "payload_base64", base64(env.payload).as_bytes()),
    }
    if let Some(meta) = env.meta {
        // Validated as a JSON object at send: embedded as it is.
        if serde_json::from_slice::<serde::de::IgnoredAny>(meta).is_ok() {
            field_raw(&mut out, "meta", meta);
        } else {
            field_text(&mut out, "meta", meta);
        }
    }
    for (name, value) in [
        ("thread", env.thread),
        ("correlation", env.correlation),
        ("reply_to", env.reply_to),
        ("via", env.via),
    ] {
        if let Some(v) = value {
            field_text(&mut out, name, v);
        }
    }
    if let Some(at) = env.expires_at {
        field_raw(&mut out, "expires", &[]);
        push_decimal(&mut out, at);
    }
    out.push(b'}');
    out
}

fn field_raw(out: &mut Vec<u8>, name: &str, raw: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(raw);
}

/// A JSON string of `bytes` (invalid UTF-8 replaced), escaped.
fn field_text(out: &mut Vec<u8>, name: &str, bytes: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    match std::str::from_utf8(bytes) {
        Ok(text) => escape_into(out, text.as_bytes()),
        Err(_) => escape_into(out, String::from_utf8_lossy(bytes).as_bytes()),
    }
    out.push(b'"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Where the first byte that needs an escape is, if any: eight bytes at a time
/// while none does (a payload is mostly plain text).
fn first_escape(text: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(word) = text.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let (quote, backslash) = (w ^ (ONES * u64::from(b'"')), w ^ (ONES * u64::from(b'\\')));
        // Non-zero when some byte is < 0x20, or zero after the xor (exact as a whole).
        let found = (w.wrapping_sub(ONES * 0x20) & !w)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash);
        if found & HIGH != 0 {
            break;
        }
        at += 8;
    }
    text[at..].iter().position(|&b| needs_escape(b)).map(|i| at + i)
}

/// Appends UTF-8 `text` as the inside of a JSON string: runs that need no escape
/// are copied whole (UTF-8 continuation bytes are >= 0x80 and need none).
fn escape_into(out: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    while let Some(i) = first_escape(rest) {
        out.extend_from_slice(&rest[..i]);
        match rest[i] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// Appends `n` in decimal without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(crate::core::id::decimal(n, &mut [0; 20]));
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The channel a mailbox's deliveries are pushed on.
pub fn channel(mailbox: &[u8]) -> Vec<u8> {
    let mut name = config::push_prefix().into_bytes();
    name.extend_from_slice(mailbox);
    name
}

/// Publishes a delivery on the mailbox's channel, unless pushing is off or the
/// mailbox's hints say nobody listened at the current epoch.
pub fn publish(ctx: &Context, mailbox: &[u8], hints: &Hints, env: &Envelope) {
    if !config::push_enabled() {
        return;
    }
    let epoch = LISTEN_EPOCH.load(Ordering::Relaxed);
    if hints.push_quiet.get() == epoch {
        counters::PUSHES_SKIPPED.incr();
        return;
    }
    if push_now(ctx, mailbox, env) == 0 && may_remember_quiet(ctx) {
        hints.push_quiet.set(epoch);
    }
}

/// Whether "nobody listened" can be trusted until the epoch moves: not in a
/// cluster, where the push also reaches the shard's replicas, whose subscribers
/// this server never sees. (The filter sees a SUBSCRIBE before it runs; that is
/// enough because Redis refuses one inside MULTI, and scripts cannot subscribe.)
fn may_remember_quiet(ctx: &Context) -> bool {
    !in_cluster(ctx)
}

/// Publishes on the mailbox's channel whatever the config says (ephemeral
/// messages have no other way); returns how many listeners Redis reports.
pub fn push_now(ctx: &Context, mailbox: &[u8], env: &Envelope) -> usize {
    let channel = rstring(ctx, channel(mailbox));
    let message = rstring(ctx, encode(env, mailbox));
    counters::PUSHES.incr();
    signal::publish(ctx, &channel, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::MessageId;
    use crate::core::Parts;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn the_word_scan_finds_what_the_byte_scan_finds() {
        let mut rng = crate::core::xorshift::XorShift(0x9e37_79b9_7f4a_7c15);
        for len in 0..80 {
            for _ in 0..50 {
                let text: Vec<u8> = (0..len)
                    // Mostly plain bytes, sometimes one that needs an escape.
                    .map(|_| [b'a', b' ', 0xc3, b'~', 0x7f, b'"', b'\\', 0x1f, 0x00, 0x20][rng.index(10)])
                    .collect();
                let plain = rng
                    .0
                    .is_multiple_of(3)
                    .then(|| text.iter().map(|&b| if needs_escape(b) { b'x' } else { b }));
                let text: Vec<u8> = match plain {
                    Some(p) => p.collect(),
                    None => text,
                };
                assert_eq!(first_escape(&text), text.iter().position(|&b| needs_escape(b)), "{text:?}");
            }
        }
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 1795832163057, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn strings_are_escaped() {
        let env = Envelope::new(Parts {
            id: MessageId::new(1, 0),
            from: "a\"l\\ice\u{1}".as_bytes(),
            to: "to\n\r\t".as_bytes(),
            ts: 1,
            priority: 0,
            expires_at: None,
            content_type: None,
            payload: "héllo \"x\" \u{7f} 😀".as_bytes(),
            meta: Some(&b"not json"[..]),
            thread: None,
            correlation: None,
            reply_to: None,
            via: Some(&b"gw"[..]),
            confirm: false,
        });
        let v: serde_json::Value = serde_json::from_slice(&encode(&env, b"m\xffx")).unwrap();
        assert_eq!(v["from"], "a\"l\\ice\u{1}");
        assert_eq!(v["to"], "to\n\r\t");
        assert_eq!(v["payload"], "héllo \"x\" \u{7f} 😀");
        assert_eq!(v["mailbox"], "m\u{fffd}x");
        assert_eq!(v["meta"], "not json");
        assert_eq!(v["via"], "gw");
    }

    #[test]
    fn push_message_is_parseable_json() {
        let env = Envelope::new(Parts {
            id: MessageId::new(5, 1),
            from: b"alice",
            to: b"{t}research.nlp",
            ts: 5,
            priority: 2,
            expires_at: Some(99),
            content_type: Some(&b"text/plain"[..]),
            payload: &[0xff, 0x00],
            meta: Some(&br#"{"k":[1,2]}"#[..]),
            thread: Some(&b"t1"[..]),
            correlation: None,
            reply_to: None,
            via: None,
            confirm: false,
        });
        let v: serde_json::Value = serde_json::from_slice(&encode(&env, b"{t}bob")).unwrap();
        assert_eq!(v["id"], "5-1");
        assert_eq!(v["mailbox"], "{t}bob");
        assert_eq!(v["payload_base64"], "/wA=");
        assert!(v.get("payload").is_none());
        assert_eq!(v["meta"]["k"][1], 2);
        assert_eq!(v["expires"], 99);
        assert!(v.get("correlation").is_none());
    }
}

//! Real-time push: every delivery is also published, as one JSON object, on the
//! receiving mailbox's channel (`mailbox.push-prefix` + mailbox name), with sharded
//! pub/sub where the server has it. Pushing settles nothing: the message stays in
//! the mailbox until acked.

use redis_module::{raw, Context};
use serde_json::{Map, Value};

use crate::config;
use crate::core::Envelope;

/// The push message: `id`, `mailbox`, `from`, `to`, `ts`, `priority`, then the
/// optional `type`, `meta` (the object itself), `thread`, `correlation`,
/// `reply_to`, `expires`; the payload as `payload` when it is UTF-8, else as
/// `payload_base64`.
pub fn encode(env: &Envelope, mailbox: &[u8]) -> Vec<u8> {
    let text = |b: &[u8]| Value::String(String::from_utf8_lossy(b).into_owned());
    let mut m = Map::new();
    m.insert("id".into(), Value::String(env.id.to_string()));
    m.insert("mailbox".into(), text(mailbox));
    m.insert("from".into(), text(&env.from));
    m.insert("to".into(), text(&env.to));
    m.insert("ts".into(), env.ts.into());
    m.insert("priority".into(), env.priority.into());
    if let Some(t) = &env.content_type {
        m.insert("type".into(), text(t));
    }
    match std::str::from_utf8(&env.payload) {
        Ok(s) => m.insert("payload".into(), Value::String(s.to_owned())),
        Err(_) => m.insert("payload_base64".into(), Value::String(base64(&env.payload))),
    };
    if let Some(meta) = &env.meta {
        // Validated as a JSON object at send; fall back to text if it somehow is not.
        let value = serde_json::from_slice(meta).unwrap_or_else(|_| text(meta));
        m.insert("meta".into(), value);
    }
    for (name, field) in [
        ("thread", &env.thread),
        ("correlation", &env.correlation),
        ("reply_to", &env.reply_to),
        ("via", &env.via),
    ] {
        if let Some(v) = field {
            m.insert(name.into(), text(v));
        }
    }
    if let Some(at) = env.expires_at {
        m.insert("expires".into(), at.into());
    }
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
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

/// Publishes a delivery on the mailbox's channel, unless pushing is off.
pub fn publish(ctx: &Context, mailbox: &[u8], env: &Envelope) {
    if config::push_enabled() {
        push_now(ctx, mailbox, env);
    }
}

/// Publishes on the mailbox's channel whatever the config says (ephemeral
/// messages have no other way); returns how many listeners Redis reports.
pub fn push_now(ctx: &Context, mailbox: &[u8], env: &Envelope) -> usize {
    let channel = crate::commands::rstring(ctx, channel(mailbox));
    let message = crate::commands::rstring(ctx, encode(env, mailbox));
    // Sharded pub/sub keeps a cluster from copying every push to every node.
    let publish = unsafe { raw::RedisModule_PublishMessageShard.or(raw::RedisModule_PublishMessage) };
    match publish {
        Some(publish) => {
            usize::try_from(unsafe { publish(ctx.ctx, channel.inner, message.inner) }).unwrap_or(0)
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::MessageId;

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
    fn push_message_is_parseable_json() {
        let env = Envelope {
            id: MessageId::new(5, 1),
            from: b"alice".to_vec(),
            to: b"{t}research.nlp".to_vec(),
            ts: 5,
            priority: 2,
            expires_at: Some(99),
            content_type: Some(b"text/plain".to_vec()),
            payload: vec![0xff, 0x00],
            meta: Some(br#"{"k":[1,2]}"#.to_vec()),
            thread: Some(b"t1".to_vec()),
            correlation: None,
            reply_to: None,
            via: None,
            confirm: false,
        };
        let v: Value = serde_json::from_slice(&encode(&env, b"{t}bob")).unwrap();
        assert_eq!(v["id"], "5-1");
        assert_eq!(v["mailbox"], "{t}bob");
        assert_eq!(v["payload_base64"], "/wA=");
        assert!(v.get("payload").is_none());
        assert_eq!(v["meta"]["k"][1], 2);
        assert_eq!(v["expires"], 99);
        assert!(v.get("correlation").is_none());
    }
}

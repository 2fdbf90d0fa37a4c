//! Every error text the module replies with. Each starts with a Redis error code.
//! Texts with a `{}` are completed with `format!`-style helpers below.
//!
//! Every text is ASCII: the redis-module crate writes each char of an error as one
//! byte (`c as u8`), so any other char would reach the client as bytes that are not
//! UTF-8, which clients such as redis-rs cannot decode. What a client sent (names,
//! options, ids) is shown through `shown`, with other bytes escaped (`caf\xc3\xa9`).

#![forbid(unsafe_code)]

use redis_module::RedisError;

use crate::core::topics::TopicError;

/// A reply error from any text here.
/// Bytes a client sent, for an error text: printable ASCII as it is, anything else
/// escaped as `\xNN` (and `'`, `"`, `\` with a backslash).
fn shown(bytes: &[u8]) -> std::slice::EscapeAscii<'_> {
    bytes.escape_ascii()
}

pub fn err(text: impl Into<String>) -> RedisError {
    RedisError::String(text.into())
}

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const SYNTAX: &str = "ERR syntax error";
pub const NO_SUCH_MAILBOX: &str = "ERR no such mailbox";
pub const MAILBOX_EXISTS: &str = "BUSYKEY mailbox already exists";
pub const BAD_NAME: &str = "ERR mailbox name must be non-empty UTF-8";
pub const BAD_PRIORITY: &str = "ERR PRIORITY must be an integer from 0 to 9";
pub const META_NOT_OBJECT: &str = "ERR META must be a JSON object";
pub const META_TOO_DEEP: &str = "ERR META nests too deeply";
pub const MAILBOX_FULL: &str = "ERR mailbox is full (MAXLEN reached)";
pub const EFFECT_FORBIDDEN: &str =
    "ERR MAILBOX.EFFECT is only accepted from the master link or while loading the AOF";
pub const CORRUPT_EFFECT: &str = "ERR malformed MAILBOX.EFFECT";

pub fn unknown_option(opt: &[u8]) -> String {
    format!("ERR unknown option '{}'", shown(opt))
}

pub fn repeated_option(opt: &str) -> String {
    format!("ERR option '{opt}' given more than once")
}

pub fn missing_value(opt: &str) -> String {
    format!("ERR option '{opt}' needs a value")
}

/// For integer options: `what` is the option name, `range` says what is allowed.
pub fn bad_integer(what: &str, range: &str) -> String {
    format!("ERR {what} must be {range}")
}

pub fn bad_id(id: &[u8]) -> String {
    format!("ERR invalid message id '{}'", shown(id))
}

pub fn payload_too_large(len: usize, limit: i64) -> String {
    format!("ERR payload is {len} bytes, over the mailbox.max-payload-bytes limit of {limit}")
}

pub fn payload_and_meta_too_large(len: usize, limit: i64) -> String {
    format!("ERR payload and META are {len} bytes, over the mailbox.max-payload-bytes limit of {limit}")
}

pub fn field_too_long(name: &str, len: usize, limit: usize) -> String {
    format!("ERR {name} is {len} bytes, over the limit of {limit}")
}

pub fn other_namespace(name: &[u8]) -> String {
    format!("ERR '{}' is in another namespace (hash tag) than the mailbox", shown(name))
}

pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
pub const NO_SUCH_MESSAGE: &str = "ERR no such message in this mailbox";
pub const REPLY_CORRELATION: &str = "ERR MAILBOX.REPLY sets CORRELATION itself";

pub const BAD_AGENT: &str = "ERR agent name must be non-empty UTF-8 without spaces";
pub const BAD_OVERFLOW: &str = "ERR OVERFLOW must be refuse or drop-oldest";

pub fn quota_exceeded(agent: &[u8], rate: u64, burst: u64) -> String {
    format!("ERR send quota exceeded for agent '{}' ({rate} messages/s, burst {burst})", shown(agent))
}

pub fn thread_limit(thread: &[u8], limit: i64) -> String {
    format!(
        "ERR thread '{}' reached mailbox.max-thread-messages ({limit}); start a new thread",
        shown(thread)
    )
}

pub const EMPTY_PATTERN: &str = "ERR pattern must not be empty";

pub fn unknown_permission(p: &[u8]) -> String {
    format!(
        "ERR unknown permission '{}', expected send, read, subscribe, publish, admin or impersonate",
        shown(p)
    )
}

pub fn needs_hash_tag(name: &[u8]) -> String {
    format!(
        "ERR in Redis Cluster every name needs a hash tag, like {{team1}}alice; '{}' has none",
        shown(name)
    )
}

pub fn noperm(agent: &[u8], permission: &str, name: &[u8]) -> String {
    format!("NOPERM agent '{}' has no '{permission}' permission on '{}'", shown(agent), shown(name))
}

pub fn mightier_agent(user: &[u8], agent: &[u8]) -> String {
    format!(
        "NOPERM agent '{}' may not act as '{}', who is a superuser or holds admin or impersonate where '{}' does not",
        shown(user),
        shown(agent),
        shown(user)
    )
}

pub fn reserved_name(name: &[u8]) -> String {
    format!(
        "ERR '{}' is a key of the module's own (a namespace or an audit stream), not a mailbox or topic name",
        shown(name)
    )
}

pub fn no_receipt_mailbox(home: &[u8]) -> String {
    format!("ERR CONFIRM sends receipts to '{}', which is not a mailbox name; give REPLYTO", shown(home))
}

pub const NO_NEXT_ID: &str = "ERR no message id is left after the last one this server or mailbox used";

pub const MIN_NEEDS_BLOCK: &str = "ERR MIN needs BLOCK";
pub const EPHEMERAL_CONFLICT: &str =
    "ERR EPHEMERAL messages are never stored: they take neither CONFIRM nor DEDUP";
pub const READONLY: &str = "READONLY You can't write against a read only replica.";

/// The reply text of a refused topic or pattern.
pub fn topic(e: &TopicError) -> &'static str {
    match e {
        TopicError::Empty => "ERR topic must not be empty",
        TopicError::TooLong => "ERR topic is longer than 1024 bytes",
        TopicError::TooManySegments => "ERR topic has more than 64 segments",
        TopicError::EmptySegment => "ERR topic has an empty segment",
        TopicError::NotUtf8 => "ERR topic must be valid UTF-8",
        TopicError::WildcardInTopic => "ERR a topic cannot contain * or # segments",
        TopicError::PartialWildcard => "ERR wildcards * and # must be whole segments",
    }
}

pub fn must_not_be_empty(name: &str) -> String {
    format!("ERR {name} must not be empty")
}

pub fn unknown_dead_subcommand(action: &[u8]) -> String {
    format!("ERR unknown MAILBOX.DEAD subcommand '{}', expected LIST, REQUEUE or PURGE", shown(action))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn topic_errors_each_have_their_text() {
        let all = [
            TopicError::Empty,
            TopicError::TooLong,
            TopicError::TooManySegments,
            TopicError::EmptySegment,
            TopicError::NotUtf8,
            TopicError::WildcardInTopic,
            TopicError::PartialWildcard,
        ];
        let texts: BTreeSet<&str> = all.iter().map(topic).collect();
        assert_eq!(texts.len(), all.len(), "each error has its own text");
        assert!(texts.iter().all(|t| t.starts_with("ERR ")));
        assert_eq!(topic(&TopicError::Empty), "ERR topic must not be empty");
        assert_eq!(topic(&TopicError::EmptySegment), "ERR topic has an empty segment");
        assert_eq!(topic(&TopicError::WildcardInTopic), "ERR a topic cannot contain * or # segments");
        assert_eq!(topic(&TopicError::PartialWildcard), "ERR wildcards * and # must be whole segments");
    }
}

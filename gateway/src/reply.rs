//! The module's replies turned into JSON types: messages (`[id, [field, value, ...]]`),
//! integers, flat field/value arrays.

use base64::Engine;
use redis::Value;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, ApiResult};

/// A message as the module holds it. Optional fields appear only when set.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct Message {
    /// Server-assigned id, `<ms>-<seq>`.
    pub id: String,
    /// The agent that sent it (stamped by the server).
    pub from: String,
    /// The mailbox, topic or namespace it was sent to.
    pub to: String,
    /// Send time, milliseconds since the epoch.
    pub ts: i64,
    pub priority: i64,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The payload, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in standard base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The gateway user that sent it for `from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<i64>,
    /// `ready`, `leased` or `delayed` (peek and thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why it is a dead letter (`maxdeliveries`, `overflow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_at: Option<i64>,
}

pub fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes().to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

pub fn string(v: &Value) -> Option<String> {
    bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => string(other)?.parse().ok(),
    }
}

fn unexpected(what: &str) -> ApiError {
    tracing::debug!(what, "unexpected reply");
    ApiError::unavailable(format!("unexpected reply from Redis to {what}"))
}

pub fn expect_int(v: &Value, what: &str) -> ApiResult<i64> {
    int(v).ok_or_else(|| unexpected(what))
}

pub fn expect_string(v: &Value, what: &str) -> ApiResult<String> {
    string(v).ok_or_else(|| unexpected(what))
}

/// `[id, n]` (PUBLISH, BROADCAST, ephemeral SEND).
pub fn id_and_count(v: &Value, what: &str) -> ApiResult<(String, i64)> {
    match v {
        Value::Array(items) if items.len() == 2 => {
            Ok((expect_string(&items[0], what)?, expect_int(&items[1], what)?))
        }
        _ => Err(unexpected(what)),
    }
}

/// One message, `[id, [field, value, ...]]`.
pub fn message(v: &Value) -> Option<Message> {
    let Value::Array(parts) = v else { return None };
    let [id, Value::Array(fields)] = parts.as_slice() else { return None };
    let mut m = Message { id: string(id)?, ..Message::default() };
    for kv in fields.chunks(2) {
        let [k, val] = kv else { continue };
        let key = string(k)?;
        match key.as_str() {
            "from" => m.from = string(val)?,
            "to" => m.to = string(val)?,
            "ts" => m.ts = int(val)?,
            "priority" => m.priority = int(val)?,
            "type" => m.content_type = string(val),
            "payload" => {
                let raw = bytes(val)?;
                match String::from_utf8(raw) {
                    Ok(s) => m.payload = Some(s),
                    Err(e) => {
                        m.payload_base64 =
                            Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))
                    }
                }
            }
            "meta" => m.meta = string(val).and_then(|s| serde_json::from_str(&s).ok()),
            "thread" => m.thread = string(val),
            "correlation" => m.correlation = string(val),
            "reply_to" => m.reply_to = string(val),
            "via" => m.via = string(val),
            "expires" => m.expires = int(val),
            "deliveries" => m.deliveries = int(val),
            "state" => m.state = string(val),
            "reason" => m.reason = string(val),
            "dead_at" => m.dead_at = int(val),
            _ => {}
        }
    }
    Some(m)
}

/// A list of messages; a null reply is an empty list.
pub fn messages(v: &Value, what: &str) -> ApiResult<Vec<Message>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => items.iter().map(|i| message(i).ok_or_else(|| unexpected(what))).collect(),
        other => {
            tracing::warn!(what, reply = ?other, "unexpected reply");
            Err(unexpected(what))
        }
    }
}

/// A flat `[name, value, ...]` array (or a RESP3 map) as pairs.
pub fn pairs(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Array(items) => {
            items.chunks(2).filter_map(|kv| Some((string(kv.first()?)?, kv.get(1)?.clone()))).collect()
        }
        Value::Map(items) => items.iter().filter_map(|(k, v)| Some((string(k)?, v.clone()))).collect(),
        _ => Vec::new(),
    }
}

/// A reply value as JSON (for INFO-like replies).
pub fn json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Array(items) => serde_json::Value::Array(items.iter().map(json).collect()),
        other => match string(other) {
            Some(s) => s.parse::<i64>().map(serde_json::Value::from).unwrap_or(serde_json::Value::String(s)),
            None => serde_json::Value::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn a_message_with_a_binary_payload_comes_as_base64() {
        let v = Value::Array(vec![
            bulk(b"1-0"),
            Value::Array(vec![
                bulk(b"from"),
                bulk(b"alice"),
                bulk(b"to"),
                bulk(b"bob"),
                bulk(b"ts"),
                bulk(b"1"),
                bulk(b"priority"),
                bulk(b"5"),
                bulk(b"payload"),
                bulk(&[0xff, 0x00]),
                bulk(b"meta"),
                bulk(br#"{"k":1}"#),
            ]),
        ]);
        let m = message(&v).unwrap();
        assert_eq!(m.id, "1-0");
        assert_eq!(m.priority, 5);
        assert_eq!(m.payload, None);
        assert_eq!(m.payload_base64.as_deref(), Some("/wA="));
        assert_eq!(m.meta.unwrap()["k"], 1);
    }

    #[test]
    fn null_is_no_messages_and_garbage_is_an_error() {
        assert!(messages(&Value::Nil, "READ").unwrap().is_empty());
        assert!(messages(&Value::Int(3), "READ").is_err());
    }
}

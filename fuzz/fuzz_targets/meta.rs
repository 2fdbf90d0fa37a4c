//! `core::meta::validate` over arbitrary bytes. It must never panic nor recurse on deep
//! input, and it must agree with serde_json: what it accepts is a JSON object, and a JSON
//! object nested at most `MAX_DEPTH` levels is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_mailbox::core::meta::{self, MetaError, MAX_DEPTH};
use serde_json::Value;

/// Nesting of a parsed value: a scalar is 0, `{}` or `[]` is 1. serde_json refuses
/// input nested deeper than 128, so this recursion is bounded.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let verdict = meta::validate(data);
    let parsed = serde_json::from_slice::<Value>(data);
    match (&verdict, &parsed) {
        (Ok(()), Ok(Value::Object(_))) => {}
        (Ok(()), other) => panic!("validate accepted something that is not a JSON object: {other:?}"),
        (Err(_), Ok(v @ Value::Object(_))) if depth(v) <= MAX_DEPTH => {
            panic!("validate refused a JSON object {} deep: {verdict:?}", depth(v))
        }
        (Err(MetaError::NotObject), Ok(v)) => assert!(!v.is_object()),
        (Err(MetaError::NotObject), Err(e)) => panic!("NotObject for input serde_json refuses: {e}"),
        (Err(_), _) => {}
    }
});

//! Validation of the `META` argument: a JSON object, bounded in depth.

#![forbid(unsafe_code)]

/// Nesting deeper than this is refused (serde_json's own limit is 128).
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaError {
    NotJson,
    NotObject,
    TooDeep,
}

/// Accepts exactly one JSON object (surrounding whitespace allowed) nested at most
/// `MAX_DEPTH` levels. Never recurses on the input, so 10,000 levels are refused
/// without touching the stack.
pub fn validate(bytes: &[u8]) -> Result<(), MetaError> {
    if max_depth(bytes) > MAX_DEPTH {
        return Err(MetaError::TooDeep);
    }
    // The scan bounds the nesting, so serde_json's recursive parser stays shallow.
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(MetaError::NotObject),
        Err(_) => Err(MetaError::NotJson),
    }
}

/// The deepest `[`/`{` nesting outside strings, found in one pass without
/// recursion. It stops counting once past `MAX_DEPTH`; it does not check syntax.
fn max_depth(bytes: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                if deepest > MAX_DEPTH {
                    return deepest;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_objects(levels: usize) -> String {
        let mut s = String::new();
        for _ in 1..levels {
            s.push_str("{\"a\":");
        }
        s.push_str("{}");
        for _ in 1..levels {
            s.push('}');
        }
        s
    }

    fn nested_arrays_in_object(levels: usize) -> String {
        // One object level plus `levels - 1` array levels.
        format!("{{\"a\":{}{}}}", "[".repeat(levels - 1), "]".repeat(levels - 1))
    }

    #[test]
    fn accepts_objects() {
        for ok in [
            &b"{}"[..],
            b"  {}  ",
            b"\n\t{\"a\":1}\r\n",
            b"{\"a\":[1,2,{\"b\":null}],\"c\":\"x\"}",
            b"{\"k\":\"\\u00e9\\\"\\\\\"}",
            "{\"caf\u{e9}\":\"\u{1F600}\"}".as_bytes(),
        ] {
            assert_eq!(validate(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn refuses_non_objects() {
        for v in [&b"[]"[..], b"1", b"\"x\"", b"null", b"true", b" [ {} ] "] {
            assert_eq!(validate(v), Err(MetaError::NotObject), "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn refuses_non_json() {
        for v in [
            &b""[..],
            b"   ",
            b"{",
            b"}",
            b"{}{}",
            b"{} x",
            b"{'a':1}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"}}}{",
            b"{\"a\":\"\xff\"}",
            b"\xef\xbb\xbf{}",
        ] {
            assert_eq!(validate(v), Err(MetaError::NotJson), "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn depth_limit_is_exact() {
        assert_eq!(max_depth(nested_objects(MAX_DEPTH).as_bytes()), MAX_DEPTH);
        assert_eq!(validate(nested_objects(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(validate(nested_objects(MAX_DEPTH + 1).as_bytes()), Err(MetaError::TooDeep));
        assert_eq!(validate(nested_arrays_in_object(MAX_DEPTH).as_bytes()), Ok(()));
        assert_eq!(validate(nested_arrays_in_object(MAX_DEPTH + 1).as_bytes()), Err(MetaError::TooDeep));
        // Siblings do not add up: depth is nesting, not a count of brackets.
        let wide =
            format!("{{{}}}", (0..100).map(|i| format!("\"k{i}\":[[]]")).collect::<Vec<_>>().join(","));
        assert_eq!(validate(wide.as_bytes()), Ok(()));
    }

    #[test]
    fn very_deep_input_is_refused_without_recursion() {
        let arrays = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(validate(arrays.as_bytes()), Err(MetaError::TooDeep));
        let objects = nested_objects(10_000);
        assert_eq!(validate(objects.as_bytes()), Err(MetaError::TooDeep));
        // Unbalanced too: only opening brackets.
        assert_eq!(validate("{".repeat(1_000_000).as_bytes()), Err(MetaError::TooDeep));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let deep_text = "[{".repeat(100);
        let s = format!("{{\"a\":\"{deep_text}\"}}");
        assert_eq!(validate(s.as_bytes()), Ok(()));
        // An escaped quote does not end the string.
        let s = format!("{{\"a\":\"\\\"{deep_text}\"}}");
        assert_eq!(validate(s.as_bytes()), Ok(()));
        // An escaped backslash does end it: the brackets after count.
        let s = format!("{{\"a\":\"\\\\\",\"b\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(validate(s.as_bytes()), Err(MetaError::TooDeep));
        // Keys are strings too.
        let s = format!("{{\"{deep_text}\":1}}");
        assert_eq!(validate(s.as_bytes()), Ok(()));
    }
}

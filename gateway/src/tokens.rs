//! Bearer tokens: random, shown once, stored in Redis only as their SHA-256 (so
//! several gateways share them), mapped to the agent they act for.
//!
//! Key `<prefix>token:<sha256 hex>` is a hash: `agent`, `scopes`, `created`
//! (ms), `expires` (ms, 0 = never); a token with a TTL also has the key expire.

use std::fmt;

use base64::Engine;
use rand::RngCore;
use redis::Value;
use sha2::{Digest, Sha256};

pub const TOKEN_PREFIX: &str = "mbx_";

/// What a token may do, on top of the module's grants for its agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scopes {
    pub send: bool,
    pub read: bool,
    pub admin: bool,
}

impl Scopes {
    pub fn parse(s: &str) -> Result<Scopes, String> {
        let mut out = Scopes { send: false, read: false, admin: false };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "send" => out.send = true,
                "read" => out.read = true,
                "admin" => out.admin = true,
                other => return Err(format!("unknown scope '{other}', expected send, read or admin")),
            }
        }
        if out == (Scopes { send: false, read: false, admin: false }) {
            return Err("no scope given".to_string());
        }
        Ok(out)
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.send {
            v.push("send");
        }
        if self.read {
            v.push("read");
        }
        if self.admin {
            v.push("admin");
        }
        v
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// The stored record of a token (never the token itself).
#[derive(Clone, Debug)]
pub struct TokenRecord {
    /// The hex SHA-256 of the token; its first 12 characters name it in lists.
    pub hash: String,
    pub agent: String,
    pub scopes: Scopes,
    pub created_ms: i64,
    pub expires_ms: i64,
}

impl TokenRecord {
    pub fn id(&self) -> &str {
        &self.hash[..12]
    }
}

/// A new random token: `mbx_` and 32 random bytes in URL-safe base64.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn hash(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

pub fn key(prefix: &str, hash: &str) -> String {
    format!("{prefix}token:{hash}")
}

/// An agent name as the module accepts it (non-empty, no spaces or control characters).
pub fn valid_agent(agent: &str) -> bool {
    !agent.is_empty() && !agent.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn store_cmd(prefix: &str, record: &TokenRecord, ttl_ms: Option<u64>) -> redis::Pipeline {
    let k = key(prefix, &record.hash);
    let mut p = redis::pipe();
    p.atomic();
    p.cmd("HSET")
        .arg(&k)
        .arg("agent")
        .arg(&record.agent)
        .arg("scopes")
        .arg(record.scopes.to_string())
        .arg("created")
        .arg(record.created_ms)
        .arg("expires")
        .arg(record.expires_ms)
        .ignore();
    if let Some(ttl) = ttl_ms {
        p.cmd("PEXPIRE").arg(&k).arg(ttl).ignore();
    }
    p
}

/// The record from an `HGETALL` reply, or `None` when the token is unknown,
/// malformed, or past its expiry at `now_ms`.
pub fn parse_record(hash: &str, reply: &Value, now_ms: i64) -> Option<TokenRecord> {
    let mut agent = None;
    let mut scopes = None;
    let mut created = 0;
    let mut expires = 0;
    let pairs: Vec<(String, String)> = match reply {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((crate::reply::string(k)?, crate::reply::string(v)?)),
                _ => None,
            })
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((crate::reply::string(k)?, crate::reply::string(v)?)))
            .collect(),
        _ => return None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "agent" => agent = Some(v),
            "scopes" => scopes = Scopes::parse(&v).ok(),
            "created" => created = v.parse().unwrap_or(0),
            "expires" => expires = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    if expires > 0 && expires <= now_ms {
        return None;
    }
    Some(TokenRecord {
        hash: hash.to_string(),
        agent: agent?,
        scopes: scopes?,
        created_ms: created,
        expires_ms: expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a));
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn scopes_parse_and_refuse_unknown() {
        assert_eq!(Scopes::parse("send,read").unwrap(), Scopes { send: true, read: true, admin: false });
        assert!(Scopes::parse("send,root").is_err());
        assert!(Scopes::parse("").is_err());
        assert_eq!(Scopes::parse("admin").unwrap().to_string(), "admin");
    }

    #[test]
    fn expired_and_incomplete_records_are_refused() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let rec = Value::Array(vec![
            bulk("agent"),
            bulk("bob"),
            bulk("scopes"),
            bulk("read"),
            bulk("expires"),
            bulk("100"),
        ]);
        assert!(parse_record("ab".repeat(32).as_str(), &rec, 50).is_some());
        assert!(parse_record("ab".repeat(32).as_str(), &rec, 100).is_none());
        assert!(parse_record("ab".repeat(32).as_str(), &Value::Array(vec![]), 0).is_none());
    }
}

//! Shared helpers of the mailbox integration tests: run `MAILBOX.*` commands, parse the
//! messages they reply (`[id, [field, value, ...]]`) and their flat field lists, and get the
//! exact text of an error reply.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{Connection, RedisError, RedisResult, Value};

use super::Server;

/// One message as `MAILBOX.READ`, `MAILBOX.PEEK` and `MAILBOX.DEAD LIST` reply it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub id: String,
    /// Field/value pairs in the order the server sent them.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Msg {
    /// Parses `[id, [field, value, ...]]`; panics on any other shape.
    pub fn from_value(value: &Value) -> Msg {
        let Value::Array(parts) = value else {
            panic!("a message is a 2-element array, got {value:?}");
        };
        assert_eq!(parts.len(), 2, "a message is [id, fields], got {value:?}");
        let id = text(&parts[0]);
        let Value::Array(flat) = &parts[1] else {
            panic!("message fields are an array, got {:?}", parts[1]);
        };
        assert!(flat.len() % 2 == 0, "odd number of field/value items: {flat:?}");
        let fields = flat
            .chunks(2)
            .map(|pair| {
                let Value::BulkString(value) = &pair[1] else {
                    panic!("field {} is not a bulk string: {:?}", text(&pair[0]), pair[1]);
                };
                (text(&pair[0]), value.clone())
            })
            .collect();
        Msg { id, fields }
    }

    /// The field names, in reply order.
    pub fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// The field as text, if present.
    pub fn get(&self, name: &str) -> Option<String> {
        self.bytes(name).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The field as text; panics if missing.
    pub fn str(&self, name: &str) -> String {
        self.get(name)
            .unwrap_or_else(|| panic!("message {} has no field {name}: {:?}", self.id, self.names()))
    }

    /// The field as an unsigned integer; panics if missing or not a number.
    pub fn num(&self, name: &str) -> u64 {
        let s = self.str(name);
        s.parse().unwrap_or_else(|_| panic!("field {name} of {} is not a number: {s:?}", self.id))
    }

    pub fn deliveries(&self) -> u64 {
        self.num("deliveries")
    }

    pub fn payload(&self) -> String {
        self.str("payload")
    }
}

/// `<ms>-<seq>` as numbers, so ids compare in time order; panics on another form.
pub fn parse_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or_else(|| panic!("not an id: {id:?}"));
    let ms = ms.parse().unwrap_or_else(|_| panic!("not an id: {id:?}"));
    let seq = seq.parse().unwrap_or_else(|_| panic!("not an id: {id:?}"));
    (ms, seq)
}

/// A reply as text: bulk and simple strings, integers, `OK`; panics on anything else.
pub fn text(value: &Value) -> String {
    match value {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Okay => "OK".to_string(),
        Value::Int(n) => n.to_string(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// A list of messages; `None` for a null (array) reply.
pub fn messages(value: &Value) -> Option<Vec<Msg>> {
    match value {
        Value::Nil => None,
        Value::Array(items) => Some(items.iter().map(Msg::from_value).collect()),
        other => panic!("expected an array of messages or nil, got {other:?}"),
    }
}

/// A flat `name, value, name, value...` array as pairs.
pub fn pairs(value: &Value) -> Vec<(String, Value)> {
    let Value::Array(flat) = value else {
        panic!("expected a flat field/value array, got {value:?}");
    };
    assert!(flat.len() % 2 == 0, "odd number of items: {flat:?}");
    flat.chunks(2).map(|p| (text(&p[0]), p[1].clone())).collect()
}

/// The whole text of an error reply as the server sent it, e.g. `ERR syntax error` or
/// `WRONGTYPE Operation against a key holding the wrong kind of value`.
pub fn err_text(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// A command from its name and arguments.
pub fn cmd(args: &[&str]) -> redis::Cmd {
    let (name, rest) = args.split_first().expect("a command needs a name");
    let mut c = redis::cmd(name);
    for a in rest {
        c.arg(*a);
    }
    c
}

pub fn try_run(con: &mut Connection, args: &[&str]) -> RedisResult<Value> {
    cmd(args).query(con)
}

/// Runs a command; panics (showing it) on an error reply.
pub fn run(con: &mut Connection, args: &[&str]) -> Value {
    try_run(con, args).unwrap_or_else(|e| panic!("{args:?} failed: {}", err_text(&e)))
}

/// Runs a command that must fail and returns its error text.
pub fn error_of(con: &mut Connection, args: &[&str]) -> String {
    match try_run(con, args) {
        Ok(v) => panic!("{args:?} should have failed, replied {v:?}"),
        Err(e) => err_text(&e),
    }
}

/// The same for a command built by hand (binary arguments).
pub fn error_of_cmd(con: &mut Connection, c: &redis::Cmd) -> String {
    match c.query::<Value>(con) {
        Ok(v) => panic!("command should have failed, replied {v:?}"),
        Err(e) => err_text(&e),
    }
}

fn with(base: &[&str], opts: &[&str]) -> Vec<String> {
    base.iter().chain(opts).map(|s| s.to_string()).collect()
}

fn run_owned(con: &mut Connection, args: &[String]) -> Value {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(con, &refs)
}

/// `MAILBOX.SEND mailbox payload opts...`; returns the id.
pub fn send(con: &mut Connection, mailbox: &str, payload: &str, opts: &[&str]) -> String {
    text(&run_owned(con, &with(&["MAILBOX.SEND", mailbox, payload], opts)))
}

/// `MAILBOX.SEND` with a binary payload.
pub fn send_bytes(con: &mut Connection, mailbox: &str, payload: &[u8], opts: &[&str]) -> String {
    let mut c = redis::cmd("MAILBOX.SEND");
    c.arg(mailbox).arg(payload);
    for o in opts {
        c.arg(*o);
    }
    c.query(con).unwrap_or_else(|e| panic!("MAILBOX.SEND {mailbox} failed: {}", err_text(&e)))
}

/// `MAILBOX.READ mailbox opts...`; `None` for the null reply.
pub fn read(con: &mut Connection, mailbox: &str, opts: &[&str]) -> Option<Vec<Msg>> {
    messages(&run_owned(con, &with(&["MAILBOX.READ", mailbox], opts)))
}

/// `MAILBOX.READ` that must hand out exactly one message.
pub fn read_one(con: &mut Connection, mailbox: &str, opts: &[&str]) -> Msg {
    let got = read(con, mailbox, opts).unwrap_or_else(|| panic!("READ {mailbox} {opts:?} replied nil"));
    assert_eq!(got.len(), 1, "READ {mailbox} {opts:?} should give one message: {got:?}");
    got.into_iter().next().unwrap()
}

pub fn peek(con: &mut Connection, mailbox: &str, opts: &[&str]) -> Vec<Msg> {
    messages(&run_owned(con, &with(&["MAILBOX.PEEK", mailbox], opts)))
        .unwrap_or_else(|| panic!("PEEK {mailbox} replied nil"))
}

pub fn dead_list(con: &mut Connection, mailbox: &str, opts: &[&str]) -> Vec<Msg> {
    messages(&run_owned(con, &with(&["MAILBOX.DEAD", "LIST", mailbox], opts)))
        .unwrap_or_else(|| panic!("DEAD {mailbox} LIST replied nil"))
}

fn int(value: Value, what: &str) -> i64 {
    match value {
        Value::Int(n) => n,
        other => panic!("{what}: expected an integer, got {other:?}"),
    }
}

pub fn ack(con: &mut Connection, mailbox: &str, ids: &[&str]) -> i64 {
    int(run_owned(con, &with(&["MAILBOX.ACK", mailbox], ids)), "ACK")
}

pub fn nack(con: &mut Connection, mailbox: &str, ids: &[&str]) -> i64 {
    int(run_owned(con, &with(&["MAILBOX.NACK", mailbox], ids)), "NACK")
}

pub fn nack_delay(con: &mut Connection, mailbox: &str, ids: &[&str], delay_ms: u64) -> i64 {
    let delay = delay_ms.to_string();
    let mut args = with(&["MAILBOX.NACK", mailbox], ids);
    args.push("DELAY".into());
    args.push(delay);
    int(run_owned(con, &args), "NACK DELAY")
}

/// `MAILBOX.DEAD REQUEUE|PURGE mailbox ids...`
pub fn dead(con: &mut Connection, mailbox: &str, action: &str, ids: &[&str]) -> i64 {
    int(run_owned(con, &with(&["MAILBOX.DEAD", action, mailbox], ids)), "DEAD")
}

pub fn create(con: &mut Connection, mailbox: &str, opts: &[&str]) {
    let reply = run_owned(con, &with(&["MAILBOX.CREATE", mailbox], opts));
    assert_eq!(reply, Value::Okay, "MAILBOX.CREATE {mailbox} {opts:?}");
}

/// `MAILBOX.INFO` as pairs, in reply order.
pub fn info(con: &mut Connection, mailbox: &str) -> Vec<(String, Value)> {
    pairs(&run(con, &["MAILBOX.INFO", mailbox]))
}

/// One integer field of `MAILBOX.INFO`.
pub fn info_int(con: &mut Connection, mailbox: &str, field: &str) -> i64 {
    let all = info(con, mailbox);
    match all.iter().find(|(n, _)| n == field) {
        Some((_, Value::Int(n))) => *n,
        other => panic!("MAILBOX.INFO {mailbox} field {field}: {other:?} in {all:?}"),
    }
}

/// `MAILBOX.STATS` as pairs of name and integer, in reply order.
pub fn stats(con: &mut Connection) -> Vec<(String, i64)> {
    pairs(&run(con, &["MAILBOX.STATS"]))
        .into_iter()
        .map(|(n, v)| {
            let value = match v {
                Value::Int(i) => i,
                other => panic!("MAILBOX.STATS {n} is not an integer: {other:?}"),
            };
            (n, value)
        })
        .collect()
}

pub fn stat(con: &mut Connection, name: &str) -> i64 {
    let all = stats(con);
    all.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or_else(|| panic!("no stat {name}: {all:?}"))
}

/// `DEBUG DIGEST-VALUE key` in the connection's current database.
pub fn digest_value(con: &mut Connection, key: &str) -> String {
    let mut digests: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(con)
        .unwrap_or_else(|e| panic!("DEBUG DIGEST-VALUE {key}: {}", err_text(&e)));
    assert_eq!(digests.len(), 1);
    digests.remove(0)
}

pub fn debug_digest(con: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(con).unwrap_or_else(|e| panic!("DEBUG DIGEST: {}", err_text(&e)))
}

/// `SELECT db` on this connection.
pub fn select(con: &mut Connection, db: u32) {
    let reply = run(con, &["SELECT", &db.to_string()]);
    assert_eq!(reply, Value::Okay);
}

/// `CONFIG SET name value`.
pub fn config_set(con: &mut Connection, name: &str, value: &str) {
    let reply = run(con, &["CONFIG", "SET", name, value]);
    assert_eq!(reply, Value::Okay, "CONFIG SET {name} {value}");
}

/// Clients blocked on the server, as `INFO clients` counts them.
pub fn blocked_clients(server: &Server) -> i64 {
    server
        .info_field("clients", "blocked_clients")
        .expect("INFO clients has blocked_clients")
        .parse()
        .unwrap()
}

/// The server's id for this connection (`CLIENT ID`).
pub fn client_id(con: &mut Connection) -> i64 {
    int(run(con, &["CLIENT", "ID"]), "CLIENT ID")
}

pub const ZERO_DIGEST: &str = "0000000000000000000000000000000000000000";

/// A connection listening on one sharded pub/sub channel (`SSUBSCRIBE`).
pub struct Listener {
    con: Connection,
    channel: String,
}

impl Listener {
    pub fn ssubscribe(server: &Server, channel: &str) -> Listener {
        let mut con = server.client();
        con.set_read_timeout(Some(Duration::from_secs(10))).expect("set read timeout");
        con.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(channel).get_packed_command())
            .expect("send SSUBSCRIBE");
        let ack = con.recv_response().expect("SSUBSCRIBE confirmation");
        let Value::Array(items) = &ack else { panic!("SSUBSCRIBE replied {ack:?}") };
        assert_eq!(text(&items[0]), "ssubscribe", "{ack:?}");
        assert_eq!(text(&items[1]), channel, "{ack:?}");
        Listener { con, channel: channel.to_string() }
    }

    /// The next pushed message, parsed as JSON (waits up to 10 s).
    pub fn next(&mut self) -> serde_json::Value {
        let push = self
            .con
            .recv_response()
            .unwrap_or_else(|e| panic!("no push on {} within 10 s: {e}", self.channel));
        let Value::Array(items) = &push else { panic!("push is not an array: {push:?}") };
        assert_eq!(items.len(), 3, "[smessage, channel, message]: {push:?}");
        assert_eq!(text(&items[0]), "smessage", "{push:?}");
        assert_eq!(text(&items[1]), self.channel, "{push:?}");
        let Value::BulkString(body) = &items[2] else { panic!("push body is not a string: {push:?}") };
        serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!("push on {} is not JSON ({e}): {}", self.channel, String::from_utf8_lossy(body))
        })
    }
}

/// `MAILBOX_LONG=1` (or any value but `0` and empty) selects the long variants.
pub fn long_run() -> bool {
    std::env::var("MAILBOX_LONG").map(|v| !v.is_empty() && v != "0").unwrap_or(false)
}

/// A small xorshift generator: the tests need random timings, not good randomness.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `MAILBOX_SEED` or the clock; the seed is printed so a failure can be repeated.
    pub fn new(test: &str) -> Rng {
        let seed = std::env::var("MAILBOX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        eprintln!("{test}: seed {seed} (MAILBOX_SEED={seed} repeats the timings)");
        Rng::from_seed(seed)
    }

    pub fn from_seed(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number from `lo` to `hi`, both included.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// An index below `len` (0 when `len` is 0).
    pub fn below(&mut self, len: usize) -> usize {
        (self.next() % len.max(1) as u64) as usize
    }
}

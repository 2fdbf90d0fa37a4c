//! R13: corrupt `RESTORE` payloads. Each must give an error or a valid value (which the
//! module's commands then read without trouble), and the server must stay up with the
//! original keys unchanged.
//!
//! Redis checks a `DUMP` payload's footer (RDB version and CRC64) before the module sees
//! it, so plain truncations and flips only exercise that check. Most variants here are
//! crafted with a valid footer, so they reach the module's decoder: the object bytes
//! truncated or flipped, and the module value's fields (the opcode stream
//! `RedisModule_Save*` writes) replaced, dropped, duplicated, or given huge counts and
//! lengths.
//!
//! By default (about 10,000 RESTOREs, a few seconds): every truncation, every bit of the
//! object flipped with a valid footer, every 13th bit of the raw payload, 2,000 random
//! multi-byte mutations and the structural variants, for each of the two keys.
//! `MAILBOX_LONG=1` flips every bit of the raw payload too and runs 100,000 random
//! mutations per key (about 200,000 RESTOREs).

mod common;

use std::time::{Duration, Instant};

use common::mailbox::*;
use common::*;
use redis::{Connection, Value};

fn long() -> bool {
    std::env::var("MAILBOX_LONG").is_ok_and(|v| v == "1")
}

// ---- DUMP payloads -------------------------------------------------------------

/// CRC-64/Jones as Redis computes it (src/crc64.c): reflected, polynomial
/// 0xad93d23594c935a9, initial value 0, no final xor.
fn crc64(bytes: &[u8]) -> u64 {
    const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut crc = i as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ POLY_REFLECTED } else { crc >> 1 };
            }
            *slot = crc;
        }
        t
    });
    bytes.iter().fold(0u64, |crc, &b| table[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8))
}

/// A DUMP payload: `<object bytes><RDB version, 2 bytes LE><CRC64 of all before, 8 bytes LE>`.
struct Dump {
    object: Vec<u8>,
    version: [u8; 2],
}

impl Dump {
    fn split(payload: &[u8]) -> Dump {
        assert!(payload.len() > 10, "a DUMP payload has a 10-byte footer: {payload:?}");
        let (rest, crc) = payload.split_at(payload.len() - 8);
        assert_eq!(
            crc64(rest).to_le_bytes(),
            crc,
            "the test's crc64 does not reproduce the footer of a genuine DUMP"
        );
        let (object, version) = rest.split_at(rest.len() - 2);
        Dump { object: object.to_vec(), version: [version[0], version[1]] }
    }

    /// `object` with this dump's version and a correct checksum.
    fn seal(&self, object: &[u8]) -> Vec<u8> {
        let mut out = object.to_vec();
        out.extend_from_slice(&self.version);
        let crc = crc64(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

// ---- the module value inside a DUMP ---------------------------------------------

/// One field of a module value: `RedisModule_SaveUnsigned` (opcode 2) or
/// `RedisModule_SaveStringBuffer` (opcode 5).
#[derive(Clone, Debug, PartialEq)]
enum Field {
    Uint(u64),
    Str(Vec<u8>),
}

const OP_EOF: u64 = 0;
const OP_UINT: u64 = 2;
const OP_STRING: u64 = 5;
const RDB_TYPE_MODULE_2: u8 = 7;

/// The RDB length encoding (`rdbSaveLen`).
fn put_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(0x40 | (len >> 8) as u8);
        out.push(len as u8);
    } else if len <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// A length, or `Err(encoding)` for the special string encodings (`11xxxxxx`).
fn get_len(bytes: &[u8], pos: &mut usize) -> Option<Result<u64, u8>> {
    let first = *bytes.get(*pos)?;
    *pos += 1;
    let take = |pos: &mut usize, n: usize| -> Option<&[u8]> {
        let s = bytes.get(*pos..*pos + n)?;
        *pos += n;
        Some(s)
    };
    Some(match first >> 6 {
        0 => Ok(u64::from(first & 0x3f)),
        1 => Ok(u64::from(first & 0x3f) << 8 | u64::from(take(pos, 1)?[0])),
        2 if first == 0x80 => Ok(u64::from(u32::from_be_bytes(take(pos, 4)?.try_into().ok()?))),
        2 if first == 0x81 => Ok(u64::from_be_bytes(take(pos, 8)?.try_into().ok()?)),
        2 => return None,
        _ => Err(first & 0x3f),
    })
}

/// A module value: its type byte and 64-bit type id as written, then its fields.
#[derive(Clone, Debug)]
struct ModuleValue {
    head: Vec<u8>,
    fields: Vec<Field>,
}

impl ModuleValue {
    /// Parses a DUMP object of a module type (saved with `rdbcompression no`).
    fn parse(object: &[u8]) -> ModuleValue {
        assert_eq!(object.first(), Some(&RDB_TYPE_MODULE_2), "a module value: {object:?}");
        let mut pos = 1;
        let id = get_len(object, &mut pos).expect("a module type id");
        assert!(matches!(id, Ok(id) if id > 1023), "a module type id: {id:?}");
        let head = object[..pos].to_vec();
        let mut fields = Vec::new();
        loop {
            let op = get_len(object, &mut pos).expect("an opcode").expect("a plain opcode");
            match op {
                OP_EOF => break,
                OP_UINT => {
                    fields.push(Field::Uint(get_len(object, &mut pos).expect("a uint").expect("plain")))
                }
                OP_STRING => {
                    let s = match get_len(object, &mut pos).expect("a string length") {
                        Ok(len) => {
                            let s = object[pos..pos + len as usize].to_vec();
                            pos += len as usize;
                            s
                        }
                        // Integers saved as strings (RDB_ENC_INT8/16/32).
                        Err(enc @ 0..=2) => {
                            let n = 1usize << enc;
                            let raw = &object[pos..pos + n];
                            pos += n;
                            let v = match enc {
                                0 => i64::from(raw[0] as i8),
                                1 => i64::from(i16::from_le_bytes([raw[0], raw[1]])),
                                _ => i64::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]])),
                            };
                            v.to_string().into_bytes()
                        }
                        Err(enc) => panic!("string encoding {enc} (LZF?): DUMP with rdbcompression no"),
                    };
                    fields.push(Field::Str(s));
                }
                other => panic!("unexpected module opcode {other}"),
            }
        }
        assert_eq!(pos, object.len(), "bytes after the module value's EOF");
        ModuleValue { head, fields }
    }

    fn encode(&self) -> Vec<u8> {
        self.encode_with(&self.fields, true)
    }

    fn encode_with(&self, fields: &[Field], eof: bool) -> Vec<u8> {
        let mut out = self.head.clone();
        for f in fields {
            put_field(&mut out, f);
        }
        if eof {
            put_len(&mut out, OP_EOF);
        }
        out
    }
}

fn put_field(out: &mut Vec<u8>, f: &Field) {
    match f {
        Field::Uint(v) => {
            put_len(out, OP_UINT);
            put_len(out, *v);
        }
        Field::Str(s) => {
            put_len(out, OP_STRING);
            put_len(out, s.len() as u64);
            out.extend_from_slice(s);
        }
    }
}

/// Every structural variant of a module value: fields changed, dropped, duplicated,
/// retyped, huge counts and lengths, a missing EOF.
fn structural_variants(v: &ModuleValue, rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let n = v.fields.len();
    for i in 0..n {
        let mut with = |what: String, f: Vec<Field>| out.push((what, v.encode_with(&f, true)));
        let replaced = |field: Field| {
            let mut f = v.fields.clone();
            f[i] = field;
            f
        };
        match &v.fields[i] {
            Field::Uint(x) => {
                for huge in
                    [0, 1, x.wrapping_add(1), x.wrapping_sub(1), 1 << 31, (1 << 32) + 5, 1 << 62, u64::MAX]
                {
                    with(format!("field {i}: uint {x} -> {huge}"), replaced(Field::Uint(huge)));
                }
                with(
                    format!("field {i}: uint as a string"),
                    replaced(Field::Str(x.to_string().into_bytes())),
                );
            }
            Field::Str(s) => {
                let mut contents: Vec<(String, Vec<u8>)> = vec![
                    ("empty".into(), Vec::new()),
                    ("half".into(), s[..s.len() / 2].to_vec()),
                    ("one byte short".into(), s[..s.len().saturating_sub(1)].to_vec()),
                    ("a byte more".into(), [s.as_slice(), &[0]].concat()),
                    ("all 0xff".into(), vec![0xff; s.len()]),
                    ("doubled".into(), [s.as_slice(), s.as_slice()].concat()),
                ];
                for first in [0u8, 3, 0x7f, 0xff] {
                    if let Some((_, rest)) = s.split_first() {
                        contents.push((format!("first byte {first}"), [&[first][..], rest].concat()));
                    }
                }
                for k in 0..8 {
                    if s.is_empty() {
                        break;
                    }
                    let mut m = s.clone();
                    let at = rng.below(m.len());
                    m[at] = rng.next() as u8;
                    contents.push((format!("random byte {k} at {at}"), m));
                    let mut m = s.clone();
                    let at = rng.below(m.len());
                    // A varint byte with the continuation bit: lengths and counts
                    // inside the blob run past its end.
                    m[at] |= 0x80;
                    contents.push((format!("continuation bit at {at}"), m));
                }
                for (what, c) in contents {
                    with(format!("field {i}: string {what}"), replaced(Field::Str(c)));
                }
                with(format!("field {i}: string as a uint"), replaced(Field::Uint(s.len() as u64)));
                // A string claiming a huge length: Redis runs out of payload.
                for claimed in [(1u64 << 31) - 1, 1 << 32, 1 << 40, u64::MAX] {
                    let mut bytes = v.encode_with(&v.fields[..i], false);
                    put_len(&mut bytes, OP_STRING);
                    put_len(&mut bytes, claimed);
                    bytes.extend_from_slice(s);
                    for f in &v.fields[i + 1..] {
                        put_field(&mut bytes, f);
                    }
                    put_len(&mut bytes, OP_EOF);
                    out.push((format!("field {i}: string claims {claimed} bytes"), bytes));
                }
            }
        }
        let mut f = v.fields.clone();
        f.remove(i);
        out.push((format!("field {i} dropped"), v.encode_with(&f, true)));
        let mut f = v.fields.clone();
        f.insert(i, v.fields[i].clone());
        out.push((format!("field {i} twice"), v.encode_with(&f, true)));
        if i + 1 < n {
            let mut f = v.fields.clone();
            f.swap(i, i + 1);
            out.push((format!("fields {i} and {} swapped", i + 1), v.encode_with(&f, true)));
        }
        out.push((format!("only the first {i} fields"), v.encode_with(&v.fields[..i], true)));
    }
    out.push(("no EOF".into(), v.encode_with(&v.fields, false)));
    let mut f = v.fields.clone();
    f.push(Field::Uint(0));
    out.push(("an extra uint".into(), v.encode_with(&f, true)));
    let mut f = v.fields.clone();
    f.push(Field::Str(b"extra".to_vec()));
    out.push(("an extra string".into(), v.encode_with(&f, true)));
    let mut bytes = v.encode_with(&v.fields, false);
    put_len(&mut bytes, 3); // RDB_MODULE_OPCODE_FLOAT where none was written
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    put_len(&mut bytes, OP_EOF);
    out.push(("a float field".into(), bytes));
    out
}

// ---- restoring and checking -------------------------------------------------------

struct Tally {
    restored: usize,
    refused: usize,
    started: Instant,
}

/// RESTOREs `payload` under a fresh key. It must be refused with an `ERR`, or give a value
/// the module's commands handle. A dropped connection means the server died: fail with
/// the variant that did it.
fn try_restore(server: &Server, con: &mut Connection, tally: &mut Tally, what: &str, payload: &[u8]) {
    let key = format!("restored:{}", tally.restored + tally.refused);
    let reply = redis::cmd("RESTORE").arg(&key).arg(0).arg(payload).query::<Value>(con);
    match reply {
        Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => panic!(
            "the server went away on RESTORE of {what} ({e}); payload {payload:02x?}\n{}",
            log_hint(server)
        ),
        Err(e) => {
            let text = err_text(&e);
            assert!(text.starts_with("ERR "), "RESTORE of {what}: unexpected error {text:?}");
            tally.refused += 1;
        }
        Ok(v) => {
            assert_eq!(v, Value::Okay, "RESTORE of {what}");
            tally.restored += 1;
            check_restored(server, con, &key, what, payload);
        }
    }
}

/// What the server's log says about a panic or a crash, and its last lines.
fn log_hint(server: &Server) -> String {
    let log = std::fs::read_to_string(server.dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let notable: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("panic") || l.contains("crashed by signal"))
        .flat_map(|(i, _)| lines[i..(i + 2).min(lines.len())].iter().copied())
        .collect();
    format!(
        "log, panics and crashes:\n{}\nlog, last lines:\n{}",
        notable.join("\n"),
        lines[lines.len().saturating_sub(10)..].join("\n")
    )
}

/// Runs a command on a restored value; it must not fail.
fn must(con: &mut Connection, args: &[&str], ctx: &dyn Fn() -> String) {
    if let Err(e) = try_run(con, args) {
        panic!("{args:?} on a restored value failed: {} — {}", err_text(&e), ctx());
    }
}

/// Whatever RESTORE accepted must be a working value: read it every way, digest it,
/// dump and restore it again, delete it.
fn check_restored(server: &Server, con: &mut Connection, key: &str, what: &str, payload: &[u8]) {
    let ctx = || format!("{what} restored as {key}; payload {payload:02x?}\n{}", log_hint(server));
    let kind = text(&run(con, &["TYPE", key]));
    match kind.as_str() {
        "mailboxes" => {
            for args in [
                &["MAILBOX.INFO", key][..],
                &["MAILBOX.PEEK", key],
                &["MAILBOX.DEAD", "LIST", key],
                &["MAILBOX.THREAD", key, "th"],
                &["DEBUG", "DIGEST-VALUE", key],
                &["MEMORY", "USAGE", key],
                &["MAILBOX.READ", key, "COUNT", "100", "LEASE", "1"],
                &["MAILBOX.INFO", key],
            ] {
                must(con, args, &ctx);
            }
            let again: Vec<u8> =
                redis::cmd("DUMP").arg(key).query(con).unwrap_or_else(|e| panic!("DUMP: {e} — {}", ctx()));
            let copy = format!("{key}:again");
            must(con, &["DEL", key], &ctx);
            let reply = redis::cmd("RESTORE").arg(&copy).arg(0).arg(&again[..]).query::<Value>(con);
            assert_eq!(
                reply.ok(),
                Some(Value::Okay),
                "a re-DUMP of a restored mailbox must restore — {}",
                ctx()
            );
            must(con, &["DEL", &copy], &ctx);
        }
        "mailboxns" => {
            // A namespace is read through its tag: give it one of its own, so nothing
            // here touches the original mailboxes.
            let ns_key = "mailbox:ns:{restored}";
            for args in [
                &["RENAME", key, ns_key][..],
                &["MAILBOX.PRESENCE", "{restored}"],
                &["MAILBOX.SUBS", "{restored}a"],
                &["DEBUG", "DIGEST-VALUE", ns_key],
                &["MEMORY", "USAGE", ns_key],
                &["DEL", ns_key],
            ] {
                must(con, args, &ctx);
            }
        }
        other => panic!("RESTORE made a value of type {other:?} — {}", ctx()),
    }
}

/// Truncations, flips and structural variants of one genuine DUMP payload.
fn corrupt_all(server: &Server, con: &mut Connection, name: &str, payload: &[u8], tally: &mut Tally) {
    let mut rng = Rng::from_seed(payload.len() as u64);
    let dump = Dump::split(payload);
    let value = ModuleValue::parse(&dump.object);
    assert_eq!(value.encode(), dump.object, "{name}: the parser does not reproduce the DUMP");
    let every = |stride: usize| if long() { 1 } else { stride };

    // The genuine payload, resealed by the test, restores to the same value.
    let resealed = dump.seal(&dump.object);
    assert_eq!(resealed, payload, "{name}: resealing changed the payload");
    let reply = redis::cmd("RESTORE").arg("genuine").arg(0).arg(&resealed[..]).query::<Value>(con);
    assert_eq!(reply.ok(), Some(Value::Okay), "{name}: the genuine payload was refused");
    assert_eq!(
        server.digest_value("genuine"),
        server.digest_value(name),
        "{name}: restored to another value"
    );
    run(con, &["DEL", "genuine"]);

    // The raw payload truncated and flipped: Redis's footer check refuses these.
    for n in 0..payload.len() {
        try_restore(server, con, tally, &format!("{name} raw, first {n} bytes"), &payload[..n]);
    }
    for bit in (0..payload.len() * 8).step_by(every(13)) {
        let mut p = payload.to_vec();
        p[bit / 8] ^= 1 << (bit % 8);
        try_restore(server, con, tally, &format!("{name} raw, bit {bit} flipped"), &p);
    }

    // With a valid footer, so the module decodes them.
    for n in 0..dump.object.len() {
        try_restore(
            server,
            con,
            tally,
            &format!("{name} sealed, first {n} bytes"),
            &dump.seal(&dump.object[..n]),
        );
    }
    for bit in 0..dump.object.len() * 8 {
        let mut o = dump.object.clone();
        o[bit / 8] ^= 1 << (bit % 8);
        try_restore(server, con, tally, &format!("{name} sealed, bit {bit} flipped"), &dump.seal(&o));
    }
    let randoms = if long() { 100_000 } else { 2_000 };
    for k in 0..randoms {
        let mut o = dump.object.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(o.len());
            o[at] = rng.next() as u8;
        }
        try_restore(server, con, tally, &format!("{name} sealed, random bytes #{k}"), &dump.seal(&o));
    }
    for (what, object) in structural_variants(&value, &mut rng) {
        try_restore(server, con, tally, &format!("{name} sealed, {what}"), &dump.seal(&object));
    }
}

const DECADE_MS: &str = "315360000000";

#[test]
fn corrupt_restore_payloads_are_refused_or_valid() {
    // A server that crashes must go away at once, not run its memory test first.
    let server = Server::start_with(ServerOptions {
        config: vec![("crash-memcheck-enabled".into(), "no".into())],
        ..Default::default()
    });
    let mut con = server.client();
    con.set_read_timeout(Some(Duration::from_secs(10))).expect("set read timeout");
    // Plain strings in the payload, no LZF: the test parses the module value.
    config_set(&mut con, "rdbcompression", "no");

    // A mailbox with messages in every state, and its namespace.
    create(&mut con, "{t}a", &["MAXDELIVER", "2", "DEDUPWINDOW", DECADE_MS, "LEASE", DECADE_MS]);
    let full = send(
        &mut con,
        "{t}a",
        "full message",
        &[
            "PRIORITY",
            "9",
            "META",
            r#"{"k":[1,{"x":null}]}"#,
            "THREAD",
            "th",
            "TTL",
            DECADE_MS,
            "DEDUP",
            "dd",
            "TYPE",
            "text/plain",
            "CORRELATION",
            "c-1",
            "REPLYTO",
            "{t}b",
        ],
    );
    assert_eq!(read_one(&mut con, "{t}a", &[]).id, full); // leased
    let delayed = send(&mut con, "{t}a", "to delay", &["PRIORITY", "8", "THREAD", "th"]);
    assert_eq!(read_one(&mut con, "{t}a", &[]).id, delayed);
    assert_eq!(nack_delay(&mut con, "{t}a", &[&delayed], 315_360_000_000), 1);
    let dead = send(&mut con, "{t}a", "to kill", &["PRIORITY", "7"]);
    for _ in 0..2 {
        assert_eq!(read_one(&mut con, "{t}a", &[]).id, dead);
        assert_eq!(nack(&mut con, "{t}a", &[&dead]), 1);
    }
    send_bytes(&mut con, "{t}a", b"\x00\x01\xfe\xff binary", &["PRIORITY", "1"]);
    send(&mut con, "{t}a", "ready", &[]);
    assert_eq!(run(&mut con, &["MAILBOX.SUB", "{t}a", "x.#", "y.*.z"]), Value::Int(2));
    assert_info_counts(&mut con);

    let originals = ["{t}a", "mailbox:ns:{t}"];
    let digests: Vec<String> = originals.iter().map(|k| server.digest_value(k)).collect();
    let mut tally = Tally { restored: 0, refused: 0, started: Instant::now() };
    for key in originals {
        let payload: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut con).expect("DUMP");
        corrupt_all(&server, &mut con, key, &payload, &mut tally);
    }

    assert_eq!(text(&run(&mut con, &["PING"])), "PONG");
    let after: Vec<String> = originals.iter().map(|k| server.digest_value(k)).collect();
    assert_eq!(after, digests, "the original keys changed");
    let log = server.log_tail(100_000);
    assert!(!log.contains("mailbox: panic"), "a panic in the log:\n{log}");
    eprintln!(
        "{} RESTOREs ({} accepted, {} refused) in {:.1?}",
        tally.restored + tally.refused,
        tally.restored,
        tally.refused,
        tally.started.elapsed()
    );
}

fn assert_info_counts(con: &mut Connection) {
    for (field, n) in [("ready", 2), ("leased", 1), ("delayed", 1), ("dead", 1), ("dedup-keys", 1)] {
        assert_eq!(info_int(con, "{t}a", field), n, "{field} of the mailbox the test corrupts");
    }
}

#[test]
fn crc64_is_redis_crc64() {
    // The check value of CRC-64/Jones, as Redis's own crc64 self-test prints it.
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    // And the footer of a genuine DUMP.
    let server = Server::start();
    let mut con = server.client();
    send(&mut con, "box", "payload", &[]);
    let payload: Vec<u8> = redis::cmd("DUMP").arg("box").query(&mut con).expect("DUMP");
    let _ = Dump::split(&payload); // asserts the footer
    let mut text_dump: Vec<u8> = Vec::new();
    run(&mut con, &["SET", "s", "hello"]);
    text_dump.extend(redis::cmd("DUMP").arg("s").query::<Vec<u8>>(&mut con).expect("DUMP"));
    let _ = Dump::split(&text_dump);
}

//! R12: RDB files written by released encoding versions keep loading; a file from a future
//! version, or a file loaded without the module, is refused cleanly.
//!
//! `tests/fixtures/mailbox-v1.rdb` was written by the module at commit c777eea (type
//! `mailboxes` encoding version 1 with codec format 1, type `mailboxns` encoding version 1):
//! see `tests/fixtures/README.md`, and `generate_v1_fixture` below, which made it.
//!
//! `tests/fixtures/mailbox-v3.rdb` was written by the module of commit 51b8dd6 (type
//! `mailboxes` encoding version 1 with codec format 3, type `mailboxns` encoding version 3),
//! by `generate_v3_fixture` below: every field of those encodings.
//!
//! `tests/fixtures/mailbox-v4.rdb` holds the same data as the v3 file, loaded and saved
//! again by the module of commit c45b7c0 (type `mailboxes` encoding version 2 with codec
//! format 4, `mailboxns` encoding version 3), by `generate_v4_fixture` below.
//!
//! `tests/fixtures/mailbox-v5.rdb` holds it again, loaded and saved by the module of commit
//! 96c9c52 (type `mailboxes` encoding version 3, batches shared in place at load,
//! `mailboxns` encoding version 3), by `generate_v5_fixture` below.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mailbox::*;
use common::*;
use redis::Value;

/// Written by `mailboxes` v1 (codec format 1) and `mailboxns` v1.
const FIXTURE_V1: &str = "mailbox-v1.rdb";
/// Written by `mailboxes` v1 (codec format 3) and `mailboxns` v3.
const FIXTURE_V3: &str = "mailbox-v3.rdb";
/// The v3 file's data written by `mailboxes` v2 (batches, codec format 4) and `mailboxns` v3.
const FIXTURE_V4: &str = "mailbox-v4.rdb";
/// The v3 file's data written by `mailboxes` v3 (batches shared in place) and `mailboxns` v3.
const FIXTURE_V5: &str = "mailbox-v5.rdb";
/// Every fixture with the encoding versions of its `mailboxes` and `mailboxns` values.
const FIXTURES: [(&str, u64, u64); 4] =
    [(FIXTURE_V1, 1, 1), (FIXTURE_V3, 1, 3), (FIXTURE_V4, 2, 3), (FIXTURE_V5, 3, 3)];
/// The name of the copy of a fixture a test server loads, in a directory of its own.
const DBFILENAME: &str = "fixture.rdb";
/// How long a server that should refuse the file may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Ten years: the longest lease, delay and TTL the module accepts, so the fixture's
/// leased, delayed and expiring messages stay that way for a decade.
const DECADE_MS: &str = "315360000000";

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn module_path() -> PathBuf {
    match std::env::var_os("MAILBOX_MODULE") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/libredis_mailbox.so"),
    }
}

/// A fresh directory of this test's own, removed by `TempDir::drop` unless the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("redis-mailbox-rdb-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A copy of `bytes` as `<dir>/<DBFILENAME>`.
fn place(dir: &TempDir, bytes: &[u8]) {
    fs::write(dir.0.join(DBFILENAME), bytes).expect("write the RDB copy");
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---- the RDB file format -------------------------------------------------------

/// CRC-64/Jones as Redis computes it (src/crc64.c): reflected, polynomial
/// 0xad93d23594c935a9, initial value 0, no final xor. It checksums whole RDB files and
/// `DUMP` payloads.
fn crc64(bytes: &[u8]) -> u64 {
    const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut crc = 0u64;
    for &b in bytes {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY_REFLECTED } else { crc >> 1 };
        }
    }
    crc
}

/// The file with its trailing 8-byte checksum recomputed.
fn fix_checksum(mut rdb: Vec<u8>) -> Vec<u8> {
    let body = rdb.len() - 8;
    let crc = crc64(&rdb[..body]);
    rdb[body..].copy_from_slice(&crc.to_le_bytes());
    rdb
}

/// Redis's `moduleTypeEncodeId`: the 9 characters of the type name, 6 bits each from
/// this alphabet, then 10 bits of encoding version.
fn module_type_id(name: &str, encver: u64) -> u64 {
    const CHARSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(name.len(), 9, "a module type name is 9 characters");
    let mut id = 0u64;
    for c in name.bytes() {
        let pos = CHARSET.iter().position(|&x| x == c).expect("a type name character") as u64;
        id = (id << 6) | pos;
    }
    (id << 10) | encver
}

/// Where the value of a module type with this id starts in the file: the type byte
/// `RDB_TYPE_MODULE_2` (7) is followed by a key and then `0x81` and the id as 8 bytes
/// big-endian (`rdbSaveLen` of a 64-bit value). Returns the offsets of the 8 id bytes.
fn type_id_offsets(rdb: &[u8], id: u64) -> Vec<usize> {
    let mut needle = vec![0x81];
    needle.extend_from_slice(&id.to_be_bytes());
    rdb.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .map(|(i, _)| i + 1)
        .collect()
}

/// A copy of the fixture with every value of `name` claiming encoding version `to`.
fn with_encver(rdb: &[u8], name: &str, from: u64, to: u64) -> Vec<u8> {
    let mut out = rdb.to_vec();
    let offsets = type_id_offsets(rdb, module_type_id(name, from));
    assert!(!offsets.is_empty(), "no {name} value of encoding version {from} in the fixture");
    for at in offsets {
        out[at..at + 8].copy_from_slice(&module_type_id(name, to).to_be_bytes());
    }
    fix_checksum(out)
}

// ---- a redis-server that is expected to exit ------------------------------------

/// How a server started on an RDB file ended.
struct Outcome {
    /// `None`: still running (and answering PING) at the deadline; it was killed then.
    status: Option<ExitStatus>,
    log: String,
}

/// Starts `redis-server` on `<dir>/<DBFILENAME>` (with the module unless `with_module` is
/// false) and waits up to `EXIT_TIMEOUT` for it to exit, as it must when it refuses the
/// file. A server still up at the deadline is killed (by its pid) and reported.
fn start_expecting_exit(dir: &TempDir, with_module: bool) -> Outcome {
    let log_path = dir.0.join("redis.log");
    let mut cmd = Command::new(server_binary());
    cmd.arg("--port")
        .arg(free_port().to_string())
        .args(["--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(&dir.0)
        .args(["--dbfilename", DBFILENAME])
        .arg("--logfile")
        .arg(&log_path)
        .args(["--save", ""])
        .args(["--appendonly", "no"]);
    if with_module {
        cmd.arg("--loadmodule").arg(module_path());
    }
    let out = fs::File::create(dir.0.join("stdout.log")).expect("create stdout.log");
    let err = out.try_clone().expect("clone stdout.log");
    cmd.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
    let mut child = cmd.spawn().expect("run the server binary");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut log = fs::read_to_string(dir.0.join("stdout.log")).unwrap_or_default();
    log.push_str(&fs::read_to_string(&log_path).unwrap_or_default());
    Outcome { status, log }
}

/// The server refused the file by exiting, not by crashing, and the module never panicked.
fn assert_clean_exit(outcome: &Outcome, what: &str) {
    let Some(status) = outcome.status else {
        panic!("{what}: redis-server was still running after {EXIT_TIMEOUT:?}:\n{}", outcome.log);
    };
    use std::os::unix::process::ExitStatusExt;
    assert!(status.signal().is_none(), "{what}: redis-server died of a signal ({status}):\n{}", outcome.log);
    for bad in ["panic", "crashed by signal", "Segmentation fault", "STACK TRACE"] {
        assert!(!outcome.log.contains(bad), "{what}: {bad:?} in the log:\n{}", outcome.log);
    }
    assert!(
        !outcome.log.contains("Ready to accept connections"),
        "{what}: the server came up:\n{}",
        outcome.log
    );
}

// ---- the fixture's expected contents ---------------------------------------------

/// A message as PEEK / DEAD LIST reply it: id and every field, values as text.
fn fields_of(m: &Msg) -> Vec<(String, String)> {
    m.fields.iter().map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned())).collect()
}

fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// `MAILBOX.INFO` without `oldest-age` (it grows with time), as text.
fn info_text(con: &mut redis::Connection, mailbox: &str) -> Vec<(String, String)> {
    info(con, mailbox)
        .into_iter()
        .filter(|(n, _)| n != "oldest-age")
        .map(|(n, v)| {
            let v = match v {
                Value::Nil => "nil".to_string(),
                other => text(&other),
            };
            (n, v)
        })
        .collect()
}

fn info_expect(settings: [&str; 5], counts: [&str; 5], last_id: &str, bytes: &str) -> Vec<(String, String)> {
    let names = ["maxlen", "ttl", "lease", "maxdeliver", "dedup-window"];
    let count_names = ["ready", "leased", "delayed", "dead", "dedup-keys"];
    let mut out: Vec<(String, String)> =
        names.iter().zip(settings).map(|(n, v)| (n.to_string(), v.to_string())).collect();
    out.extend(count_names.iter().zip(counts).map(|(n, v)| (n.to_string(), v.to_string())));
    out.push(("last-id".into(), last_id.into()));
    out.push(("bytes".into(), bytes.into()));
    out
}

/// The fields of `INFO` a future version may add go after these; compare the known ones.
fn assert_info(con: &mut redis::Connection, mailbox: &str, expected: Vec<(String, String)>) {
    let got = info_text(con, mailbox);
    let known: Vec<(String, String)> =
        got.iter().filter(|(n, _)| expected.iter().any(|(e, _)| e == n)).cloned().collect();
    assert_eq!(known, expected, "MAILBOX.INFO {mailbox}: {got:?}");
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        other => panic!("expected an array, got {other:?}"),
    }
}

/// One expected message: id, then its fields as PEEK / DEAD LIST reply them.
type Expected = (&'static str, &'static [(&'static str, &'static str)]);

fn assert_messages(what: &str, got: &[Msg], want: &[Expected]) {
    let got: Vec<(String, Vec<(String, String)>)> =
        got.iter().map(|m| (m.id.clone(), fields_of(m))).collect();
    let want: Vec<(String, Vec<(String, String)>)> =
        want.iter().map(|(id, f)| (id.to_string(), expect(f))).collect();
    assert_eq!(got, want, "{what}");
}

const ALICE: &[Expected] = &[
    (
        "1795833215021-0",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795833215021"),
            ("priority", "9"),
            ("payload", "leased"),
            ("deliveries", "1"),
            ("state", "leased"),
        ],
    ),
    (
        "1795833215022-0",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795833215022"),
            ("priority", "8"),
            ("payload", "delayed"),
            ("deliveries", "1"),
            ("state", "delayed"),
        ],
    ),
    (
        "1795833215023-0",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795833215023"),
            ("priority", "6"),
            ("payload", "read once"),
            ("deliveries", "1"),
            ("state", "ready"),
        ],
    ),
    (
        "1795833215024-0",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795833215024"),
            ("priority", "3"),
            ("type", "text/plain"),
            ("payload", "full"),
            ("meta", r#"{"k":[1,2],"s":"x"}"#),
            ("thread", "th-1"),
            ("correlation", "c-1"),
            ("reply_to", "{t}bob"),
            ("expires", "2111193215024"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795833215024-1",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795833215024"),
            ("priority", "0"),
            ("payload", "\0\u{fffd}\r\nbin"), // checked byte for byte below
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795833215025-1",
        &[
            ("from", "alice"),
            ("to", "{t}news.paper"),
            ("ts", "1795833215025"),
            ("priority", "2"),
            ("payload", "shared news"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
];

const ALICE_DEAD: &[Expected] = &[(
    "1795833215022-1",
    &[
        ("from", "bob"),
        ("to", "{t}alice"),
        ("ts", "1795833215022"),
        ("priority", "7"),
        ("payload", "dead"),
        ("deliveries", "2"),
        ("reason", "maxdeliveries"),
        ("dead_at", "1795833215023"),
    ],
)];

const BOB: &[Expected] = &[
    (
        "1795833215025-0",
        &[
            ("from", "alice"),
            ("to", "{t}bob"),
            ("ts", "1795833215025"),
            ("priority", "0"),
            ("payload", "hello bob"),
            ("thread", "th-1"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795833215025-1",
        &[
            ("from", "alice"),
            ("to", "{t}news.paper"),
            ("ts", "1795833215025"),
            ("priority", "2"),
            ("payload", "shared news"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
];

const PLAIN: &[Expected] = &[(
    "1795833215025-0",
    &[
        ("from", "alice"),
        ("to", "plain"),
        ("ts", "1795833215025"),
        ("priority", "0"),
        ("payload", "no tag"),
        ("deliveries", "0"),
        ("state", "ready"),
    ],
)];

const DB1BOX: &[Expected] = &[(
    "1795833215026-0",
    &[
        ("from", "default"),
        ("to", "db1box"),
        ("ts", "1795833215026"),
        ("priority", "0"),
        ("payload", "in db 1"),
        ("deliveries", "0"),
        ("state", "ready"),
    ],
)];

/// {t}carol as saved: two leases that end at 1795833216027 and a TTL that ends at
/// 1795833218027, so a server whose clock is past those applies them once it has loaded.
const CAROL_DEADLINE_MS: u64 = 1_795_833_218_027;

const CAROL_AS_SAVED: &[Expected] = &[
    (
        "1795833215026-0",
        &[
            ("from", "alice"),
            ("to", "{t}carol"),
            ("ts", "1795833215026"),
            ("priority", "9"),
            ("payload", "to die"),
            ("deliveries", "2"),
            ("state", "leased"),
        ],
    ),
    (
        "1795833215027-0",
        &[
            ("from", "alice"),
            ("to", "{t}carol"),
            ("ts", "1795833215027"),
            ("priority", "5"),
            ("payload", "to requeue"),
            ("deliveries", "1"),
            ("state", "leased"),
        ],
    ),
    (
        "1795833215027-1",
        &[
            ("from", "alice"),
            ("to", "{t}carol"),
            ("ts", "1795833215027"),
            ("priority", "0"),
            ("payload", "to expire"),
            ("expires", "1795833218027"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
];

const CAROL_SWEPT: &[Expected] = &[(
    "1795833215027-0",
    &[
        ("from", "alice"),
        ("to", "{t}carol"),
        ("ts", "1795833215027"),
        ("priority", "5"),
        ("payload", "to requeue"),
        ("deliveries", "1"),
        ("state", "ready"),
    ],
)];

/// The patterns `MAILBOX.SUBS` lists (each row starts with its pattern; a file from before
/// subscription filters has none).
fn subscriptions(con: &mut redis::Connection, mailbox: &str) -> Vec<String> {
    let Value::Array(rows) = run(con, &["MAILBOX.SUBS", mailbox]) else {
        panic!("MAILBOX.SUBS {mailbox} is not an array");
    };
    rows.iter()
        .map(|row| match row {
            Value::Array(fields) => {
                assert_eq!(fields.len(), 1, "a v1 subscription has no filter: {row:?}");
                text(&fields[0])
            }
            other => text(other),
        })
        .collect()
}

fn server_time_ms(con: &mut redis::Connection) -> u64 {
    let t = strings(&run(con, &["TIME"]));
    t[0].parse::<u64>().expect("seconds") * 1000 + t[1].parse::<u64>().expect("micros") / 1000
}

/// The presence rows of a namespace as (agent, last-seen, waiting); `idle` grows with time.
fn presence(con: &mut redis::Connection, space: &str) -> Vec<(String, i64, i64)> {
    let Value::Array(rows) = run(con, &["MAILBOX.PRESENCE", space]) else {
        panic!("MAILBOX.PRESENCE {space} is not an array");
    };
    rows.iter()
        .map(|row| {
            let Value::Array(f) = row else { panic!("a presence row is an array: {row:?}") };
            let labels: Vec<String> = [1, 3, 5].iter().map(|&i| text(&f[i])).collect();
            assert_eq!(labels, ["last-seen", "idle", "waiting"], "presence row {row:?}");
            let int = |v: &Value| match v {
                Value::Int(n) => *n,
                other => panic!("not an integer: {other:?}"),
            };
            (text(&f[0]), int(&f[2]), int(&f[6]))
        })
        .collect()
}

/// A server (debug commands on) that loaded a copy of `rdb`, in `dir`.
fn start_on(dir: &TempDir, rdb: &[u8]) -> Server {
    place(dir, rdb);
    Server::start_with(ServerOptions {
        config: vec![("dir".into(), dir.0.display().to_string()), ("dbfilename".into(), DBFILENAME.into())],
        ..Default::default()
    })
}

#[test]
fn v1_fixture_loads_with_exact_contents() {
    let dir = TempDir::new("v1");
    let server = start_on(&dir, &fixture_bytes(FIXTURE_V1));
    let mut con = server.client();
    let mut keys = strings(&run(&mut con, &["KEYS", "*"]));
    keys.sort();
    assert_eq!(
        keys,
        ["mailbox:ns", "mailbox:ns:{t}", "plain", "{t}alice", "{t}bob", "{t}carol", "{t}empty"],
        "keys in db 0"
    );
    for key in ["{t}alice", "{t}bob", "{t}carol", "{t}empty", "plain"] {
        assert_eq!(text(&run(&mut con, &["TYPE", key])), "mailboxes", "TYPE {key}");
    }
    for key in ["mailbox:ns", "mailbox:ns:{t}"] {
        assert_eq!(text(&run(&mut con, &["TYPE", key])), "mailboxns", "TYPE {key}");
    }

    // {t}alice: leased, delayed, ready after a nack, every optional field, a binary
    // payload, the published message; one dead letter; one dedup key.
    let alice = peek(&mut con, "{t}alice", &[]);
    assert_messages("PEEK {t}alice", &alice, ALICE);
    assert_eq!(alice[4].bytes("payload"), Some(&b"\x00\xff\r\nbin"[..]), "the binary payload");
    assert_messages("DEAD {t}alice LIST", &dead_list(&mut con, "{t}alice", &[]), ALICE_DEAD);
    let decade = "315360000000";
    assert_info(
        &mut con,
        "{t}alice",
        info_expect(["0", "0", decade, "2", decade], ["4", "1", "1", "1", "1"], "1795833215025-1", "174"),
    );
    assert_eq!(subscriptions(&mut con, "{t}alice"), ["news.#"]);

    // {t}bob: default settings of that release, one subscription left after an UNSUB.
    assert_messages("PEEK {t}bob", &peek(&mut con, "{t}bob", &[]), BOB);
    assert_messages("DEAD {t}bob LIST", &dead_list(&mut con, "{t}bob", &[]), &[]);
    assert_info(
        &mut con,
        "{t}bob",
        info_expect(["0", "0", "30000", "5", "3600000"], ["2", "0", "0", "0", "0"], "1795833215025-1", "53"),
    );
    assert_eq!(subscriptions(&mut con, "{t}bob"), ["*.paper"]);

    // {t}empty: settings only.
    assert_messages("PEEK {t}empty", &peek(&mut con, "{t}empty", &[]), &[]);
    assert_info(
        &mut con,
        "{t}empty",
        info_expect(["5", "60000", "5000", "3", "3600000"], ["0", "0", "0", "0", "0"], "0-0", "0"),
    );

    // plain: the default namespace.
    assert_messages("PEEK plain", &peek(&mut con, "plain", &[]), PLAIN);
    assert_info(
        &mut con,
        "plain",
        info_expect(["0", "0", "30000", "5", "3600000"], ["1", "0", "0", "0", "0"], "1795833215025-0", "16"),
    );

    // The namespaces: presence as saved (the namespace key lists the mailboxes, which a
    // broadcast reaches; checked last, as it changes the data).
    assert_eq!(
        presence(&mut con, "{t}"),
        [
            ("alice".into(), 1_795_833_215_021, 4),
            ("bob".into(), 1_795_833_215_021, 2),
            ("default".into(), 1_795_833_215_025, 0)
        ]
    );
    assert_eq!(presence(&mut con, "plain"), [("alice".to_string(), 1_795_833_215_025, 0)]);

    // {t}carol: saved with leases and a TTL that have run out since, unless this
    // machine's clock is behind the one that wrote the file.
    if server_time_ms(&mut con) > CAROL_DEADLINE_MS + 1000 {
        let mut swept = Vec::new();
        wait_until("the sweeper applies {t}carol's expired leases and TTL after the load", 5000, || {
            swept = info_text(&mut con, "{t}carol");
            let count =
                |n: &str| swept.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
            count("leased") == "0" && count("dead") == "1" && count("ready") == "1"
        });
        assert_messages("PEEK {t}carol after the sweep", &peek(&mut con, "{t}carol", &[]), CAROL_SWEPT);
        let dead = dead_list(&mut con, "{t}carol", &[]);
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert_eq!(dead[0].id, "1795833215026-0");
        assert_eq!(dead[0].payload(), "to die");
        assert_eq!(dead[0].str("reason"), "maxdeliveries");
        assert_eq!(dead[0].deliveries(), 2);
        assert!(dead[0].num("dead_at") > 1_795_833_216_027, "dead_at {}", dead[0].str("dead_at"));
        assert_eq!(stat(&mut con, "expired"), 1, "the TTL ran out");
    } else {
        assert_messages("PEEK {t}carol", &peek(&mut con, "{t}carol", &[]), CAROL_AS_SAVED);
    }

    // The second database.
    select(&mut con, 1);
    let mut keys = strings(&run(&mut con, &["KEYS", "*"]));
    keys.sort();
    assert_eq!(keys, ["db1box", "mailbox:ns"], "keys in db 1");
    assert_messages("PEEK db1box", &peek(&mut con, "db1box", &[]), DB1BOX);
    select(&mut con, 0);

    // The loaded data works: the dedup key is held (a key saved before DEDUP keys were
    // scoped by sender matches no send: the retry is stored), a broadcast reaches every
    // mailbox the namespace listed, and a read of bob's copy of the published message
    // leaves alice's copy alone.
    assert_eq!(info_int(&mut con, "{t}alice", "dedup-keys"), 1);
    assert_ne!(send(&mut con, "{t}alice", "again", &["DEDUP", "d-1"]), "1795833215024-0");
    let reply = run(&mut con, &["MAILBOX.BROADCAST", "{t}", "to all"]);
    let Value::Array(parts) = &reply else { panic!("BROADCAST replied {reply:?}") };
    assert_eq!(parts[1], Value::Int(4), "receivers of a broadcast to {{t}}: {reply:?}");
    let got = read(&mut con, "{t}bob", &["COUNT", "10"]).expect("bob's messages");
    assert!(got.iter().any(|m| m.id == "1795833215025-1"), "{got:?}");
    let alice_copy = peek(&mut con, "{t}alice", &["1795833215025-1", "1795833215025-1"]);
    assert_eq!(alice_copy.len(), 1);
    assert_eq!((alice_copy[0].deliveries(), alice_copy[0].str("state")), (0, "ready".to_string()));

    // And it saves and loads again to the same dataset.
    let before = server.digest();
    assert_eq!(run(&mut con, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(server.digest(), before, "DEBUG RELOAD of the loaded fixture changed the dataset");
}

// ---- the v3 fixture (namespace encoding 3, codec format 3) ----------------------------

/// `{t}alice` of `mailbox-v3.rdb`: leased, delayed, every optional field, sent `AS` robot
/// by gateway (`via`, with `CONFIRM`), the published message.
const V3_ALICE: &[Expected] = &[
    (
        "1795835203117-0",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795835203117"),
            ("priority", "9"),
            ("payload", "leased"),
            ("deliveries", "1"),
            ("state", "leased"),
        ],
    ),
    (
        "1795835203118-0",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795835203118"),
            ("priority", "8"),
            ("payload", "delayed"),
            ("deliveries", "1"),
            ("state", "delayed"),
        ],
    ),
    (
        "1795835203121-0",
        &[
            ("from", "bob"),
            ("to", "{t}alice"),
            ("ts", "1795835203121"),
            ("priority", "3"),
            ("type", "text/plain"),
            ("payload", "full"),
            ("meta", r#"{"k":[1,2],"s":"x"}"#),
            ("thread", "th-1"),
            ("correlation", "c-1"),
            ("reply_to", "{t}bob"),
            ("expires", "2111195203121"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795835203121-1",
        &[
            ("from", "robot"),
            ("to", "{t}alice"),
            ("ts", "1795835203121"),
            ("priority", "5"),
            ("payload", "on behalf"),
            ("thread", "th-1"),
            ("via", "gateway"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795835203122-0",
        &[
            ("from", "alice"),
            ("to", "{t}news.paper"),
            ("ts", "1795835203122"),
            ("priority", "2"),
            ("type", "text/plain"),
            ("payload", "shared news"),
            ("thread", "th-2"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
];

const V3_ALICE_DEAD: &[Expected] = &[(
    "1795835203119-0",
    &[
        ("from", "bob"),
        ("to", "{t}alice"),
        ("ts", "1795835203119"),
        ("priority", "7"),
        ("payload", "dead"),
        ("deliveries", "2"),
        ("reason", "maxdeliveries"),
        ("dead_at", "1795835203120"),
    ],
)];

/// `{t}bob`: the receipt of alice's ACK of bob's confirmed 1795835203120-0, a direct
/// message, the published message.
const V3_BOB: &[Expected] = &[
    (
        "1795835203120-0",
        &[
            ("from", "alice"),
            ("to", "{t}bob"),
            ("ts", "1795835203120"),
            ("priority", "0"),
            ("type", RECEIPT_TYPE),
            (
                "payload",
                r#"{"at":1795835203120,"by":"alice","id":"1795835203120-0","mailbox":"{t}alice","outcome":"acked"}"#,
            ),
            ("correlation", "1795835203120-0"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795835203121-0",
        &[
            ("from", "alice"),
            ("to", "{t}bob"),
            ("ts", "1795835203121"),
            ("priority", "0"),
            ("payload", "hello bob"),
            ("thread", "th-1"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795835203122-0",
        &[
            ("from", "alice"),
            ("to", "{t}news.paper"),
            ("ts", "1795835203122"),
            ("priority", "2"),
            ("type", "text/plain"),
            ("payload", "shared news"),
            ("thread", "th-2"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
];

/// `{t}carol`: the receipt of carol's confirmed message that `{t}ring` pushed out.
const V3_CAROL: &[Expected] = &[(
    "1795835203123-0",
    &[
        ("from", "ring"),
        ("to", "{t}carol"),
        ("ts", "1795835203123"),
        ("priority", "0"),
        ("type", RECEIPT_TYPE),
        (
            "payload",
            r#"{"at":1795835203123,"by":"ring","id":"1795835203122-0","mailbox":"{t}ring","outcome":"dead","reason":"overflow"}"#,
        ),
        ("correlation", "1795835203122-0"),
        ("deliveries", "0"),
        ("state", "ready"),
    ],
)];

/// `{t}ring` (MAXLEN 2, OVERFLOW drop-oldest).
const V3_RING: &[Expected] = &[
    (
        "1795835203123-0",
        &[
            ("from", "alice"),
            ("to", "{t}ring"),
            ("ts", "1795835203123"),
            ("priority", "0"),
            ("payload", "second"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
    (
        "1795835203123-1",
        &[
            ("from", "alice"),
            ("to", "{t}ring"),
            ("ts", "1795835203123"),
            ("priority", "0"),
            ("payload", "third"),
            ("deliveries", "0"),
            ("state", "ready"),
        ],
    ),
];

/// Carol's `CONFIRM` message, pushed out of the full `{t}ring` by the third send (the
/// same id as the published message in the other mailboxes: a different envelope).
const V3_RING_DEAD: &[Expected] = &[(
    "1795835203122-0",
    &[
        ("from", "carol"),
        ("to", "{t}ring"),
        ("ts", "1795835203122"),
        ("priority", "0"),
        ("payload", "first"),
        ("deliveries", "0"),
        ("reason", "overflow"),
        ("dead_at", "1795835203123"),
    ],
)];

const RECEIPT_TYPE: &str = "application/vnd.mailbox.receipt+json";

/// `MAILBOX.SUBS` rows as text: the pattern, then the filter's name/value pairs.
fn subscription_rows(con: &mut redis::Connection, mailbox: &str) -> Vec<Vec<String>> {
    let Value::Array(rows) = run(con, &["MAILBOX.SUBS", mailbox]) else {
        panic!("MAILBOX.SUBS {mailbox} is not an array");
    };
    rows.iter().map(strings).collect()
}

fn rows(expected: &[&[&str]]) -> Vec<Vec<String>> {
    expected.iter().map(|row| row.iter().map(|s| s.to_string()).collect()).collect()
}

fn acl_check(con: &mut redis::Connection, agent: &str, permission: &str, name: &str) -> bool {
    run(con, &["MAILBOX.ACL", "CHECK", agent, permission, name]) == Value::Int(1)
}

/// `MAILBOX.PUBLISH` (or another sending command replying `[id, receivers]`): the receivers.
fn receivers_of(con: &mut redis::Connection, args: &[&str]) -> i64 {
    match run(con, args) {
        Value::Array(parts) if parts.len() == 2 => match parts[1] {
            Value::Int(n) => n,
            ref other => panic!("{args:?}: receivers {other:?}"),
        },
        other => panic!("{args:?} replied {other:?}"),
    }
}

/// `DEBUG RELOAD` (save, then load that file) leaves `DEBUG DIGEST` as it was.
fn assert_reload_keeps_digest(server: &Server, what: &str) {
    let before = server.digest();
    let mut con = server.client();
    assert_eq!(run(&mut con, &["DEBUG", "RELOAD"]), Value::Okay);
    assert_eq!(server.digest(), before, "DEBUG RELOAD of {what} changed the dataset");
}

#[test]
fn the_v3_fixture_loads_with_every_field() {
    assert_v3_data_loads(FIXTURE_V3);
}

/// The same data in `mailboxes` encoding version 2.
#[test]
fn the_v4_fixture_loads_with_every_field() {
    assert_v3_data_loads(FIXTURE_V4);
}

/// The same data in the current encoding.
#[test]
fn the_v5_fixture_loads_with_every_field() {
    assert_v3_data_loads(FIXTURE_V5);
}

/// Loads `fixture` (the data `generate_v3_fixture` made) and checks all of it, then
/// runs more commands on it.
fn assert_v3_data_loads(fixture: &str) {
    let dir = TempDir::new("v3");
    let server = start_on(&dir, &fixture_bytes(fixture));
    let mut con = server.client();
    let mut keys = strings(&run(&mut con, &["KEYS", "*"]));
    keys.sort();
    assert_eq!(keys, ["mailbox:ns:{t}", "{t}alice", "{t}bob", "{t}carol", "{t}ring"], "keys in db 0");
    for key in ["{t}alice", "{t}bob", "{t}carol", "{t}ring"] {
        assert_eq!(text(&run(&mut con, &["TYPE", key])), "mailboxes", "TYPE {key}");
    }
    assert_eq!(text(&run(&mut con, &["TYPE", "mailbox:ns:{t}"])), "mailboxns");

    // The mailboxes, as saved.
    let decade = DECADE_MS;
    assert_messages("PEEK {t}alice", &peek(&mut con, "{t}alice", &[]), V3_ALICE);
    assert_messages("DEAD {t}alice LIST", &dead_list(&mut con, "{t}alice", &[]), V3_ALICE_DEAD);
    assert_info(
        &mut con,
        "{t}alice",
        info_expect(["0", "0", decade, "2", decade], ["3", "1", "1", "1", "1"], "1795835203122-0", "183"),
    );
    assert_messages("PEEK {t}bob", &peek(&mut con, "{t}bob", &[]), V3_BOB);
    assert_messages("DEAD {t}bob LIST", &dead_list(&mut con, "{t}bob", &[]), &[]);
    assert_info(
        &mut con,
        "{t}bob",
        info_expect(["0", "0", "30000", "5", "3600000"], ["3", "0", "0", "0", "0"], "1795835203122-0", "224"),
    );
    assert_messages("PEEK {t}carol", &peek(&mut con, "{t}carol", &[]), V3_CAROL);
    assert_messages("DEAD {t}carol LIST", &dead_list(&mut con, "{t}carol", &[]), &[]);
    assert_info(
        &mut con,
        "{t}carol",
        info_expect(["0", "0", "30000", "5", "3600000"], ["1", "0", "0", "0", "0"], "1795835203123-0", "175"),
    );
    assert_messages("PEEK {t}ring", &peek(&mut con, "{t}ring", &[]), V3_RING);
    assert_messages("DEAD {t}ring LIST", &dead_list(&mut con, "{t}ring", &[]), V3_RING_DEAD);
    assert_info(
        &mut con,
        "{t}ring",
        info_expect(["2", "0", "30000", "5", "3600000"], ["2", "0", "0", "1", "0"], "1795835203123-1", "52"),
    );
    for (mailbox, id, status) in [
        ("{t}alice", "1795835203117-0", "leased"),
        ("{t}alice", "1795835203118-0", "delayed"),
        ("{t}alice", "1795835203119-0", "dead"),
        ("{t}alice", "1795835203120-0", "unknown"), // acked before the save
        ("{t}alice", "1795835203121-0", "ready"),
        ("{t}ring", "1795835203122-0", "dead"),
        ("{t}ring", "1795835203123-1", "ready"),
    ] {
        assert_eq!(text(&run(&mut con, &["MAILBOX.STATUS", mailbox, id])), status, "STATUS {mailbox} {id}");
    }

    // The namespace: subscriptions with and without filters, grants, presence.
    assert_eq!(subscription_rows(&mut con, "{t}alice"), rows(&[&["news.#"]]));
    assert_eq!(
        subscription_rows(&mut con, "{t}bob"),
        rows(&[&["*.paper", "from", "al*", "minpriority", "2", "type", "text/*"]])
    );
    assert_eq!(
        subscription_rows(&mut con, "{t}carol"),
        rows(&[&["alerts.*", "minpriority", "5"], &["news.*", "from", "bob"]])
    );
    assert_eq!(subscription_rows(&mut con, "{t}ring"), rows(&[]));
    let grants: Vec<Vec<String>> = match run(&mut con, &["MAILBOX.ACL", "LIST", "{t}"]) {
        Value::Array(rows) => rows.iter().map(strings).collect(),
        other => panic!("MAILBOX.ACL LIST replied {other:?}"),
    };
    assert_eq!(
        grants,
        rows(&[
            &["*", "read", "{t}ring"],
            &["*", "subscribe", "{t}alerts.*"],
            &["alice", "admin", "{t}alice"],
            &["bob", "publish", "{t}news.*"],
            &["gateway", "send", "{t}*"],
            &["gateway", "impersonate", "{t}robot"],
        ])
    );
    assert_eq!(
        presence(&mut con, "{t}"),
        [
            ("alice".into(), 1_795_835_203_117, 3),
            ("bob".into(), 1_795_835_203_117, 3),
            ("carol".into(), 1_795_835_203_117, 1),
            ("default".into(), 1_795_835_203_116, 0),
            ("robot".into(), 1_795_835_203_121, 0),
        ]
    );

    // The loaded dataset saves and loads again to itself.
    assert_reload_keeps_digest(&server, "the loaded v3 fixture");
    let mut con = server.client();

    // The grants decide, under the closed policy too (which needs a grant for every
    // permission but reading one's own mailbox).
    for policy in ["open", "closed"] {
        config_set(&mut con, "mailbox.policy", policy);
        for (agent, permission, name, allowed) in [
            ("gateway", "impersonate", "{t}robot", true),
            ("gateway", "impersonate", "{t}alice", false),
            ("anyone", "read", "{t}ring", true),
            ("anyone", "read", "{t}alice", false),
            ("alice", "admin", "{t}alice", true),
            ("bob", "admin", "{t}alice", false),
        ] {
            assert_eq!(acl_check(&mut con, agent, permission, name), allowed, "{agent} {permission} {name}");
        }
    }
    for (agent, permission, name, allowed) in [
        ("gateway", "send", "{t}anything", true),
        ("bob", "send", "{t}anything", false),
        ("bob", "publish", "{t}news.sports", true),
        ("alice", "publish", "{t}news.sports", false),
        ("anyone", "subscribe", "{t}alerts.fire", true),
        ("anyone", "subscribe", "{t}news.sports", false),
    ] {
        assert_eq!(
            acl_check(&mut con, agent, permission, name),
            allowed,
            "closed: {agent} {permission} {name}"
        );
    }
    config_set(&mut con, "mailbox.policy", "open");

    // The dedup key is held; saved before DEDUP keys were scoped by sender, it matches no send.
    assert_eq!(info_int(&mut con, "{t}alice", "dedup-keys"), 1);
    assert_ne!(send(&mut con, "{t}alice", "again", &["DEDUP", "d-1"]), "1795835203121-0");

    // CONFIRM survived: acking the loaded message sent AS robot sends robot a receipt.
    let via = read_one(&mut con, "{t}alice", &["COUNT", "1"]);
    assert_eq!((via.id.as_str(), via.str("via").as_str()), ("1795835203121-1", "gateway"));
    let before_ack = server_time_ms(&mut con);
    assert_eq!(ack(&mut con, "{t}alice", &["1795835203121-1"]), 1);
    let receipts = peek(&mut con, "{t}robot", &[]);
    assert_eq!(receipts.len(), 1, "one receipt in {{t}}robot: {receipts:?}");
    let receipt = &receipts[0];
    assert_eq!(
        (receipt.str("from"), receipt.get("type"), receipt.get("correlation"), receipt.get("thread")),
        (
            "mailbox receipt".to_string(),
            Some(RECEIPT_TYPE.to_string()),
            Some("1795835203121-1".to_string()),
            Some("th-1".to_string())
        ),
        "{receipt:?}"
    );
    let body = receipt.payload();
    let tail = r#","by":"default","id":"1795835203121-1","mailbox":"{t}alice","outcome":"acked"}"#;
    let at = body.strip_prefix(r#"{"at":"#).and_then(|rest| rest.strip_suffix(tail));
    let at: u64 = at.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("receipt payload {body}"));
    assert!(at >= before_ack, "receipt at {at}, before the ack {before_ack}");

    // A message without CONFIRM sends none: acking bob's copy of the published message
    // (from alice) leaves {t}alice as it was, with its own copy ready and undelivered.
    let alice_before = peek(&mut con, "{t}alice", &[]);
    assert_eq!(read_one(&mut con, "{t}bob", &["COUNT", "1"]).id, "1795835203122-0");
    assert_eq!(ack(&mut con, "{t}bob", &["1795835203122-0"]), 1);
    assert_eq!(peek(&mut con, "{t}alice", &[]), alice_before);
    let alice_copy = peek(&mut con, "{t}alice", &["1795835203122-0", "1795835203122-0"]);
    assert_eq!(alice_copy.len(), 1);
    assert_eq!((alice_copy[0].deliveries(), alice_copy[0].str("state")), (0, "ready".to_string()));

    // OVERFLOW drop-oldest survived: a send to the full {t}ring pushes "second" out.
    let fourth = send(&mut con, "{t}ring", "fourth", &[]);
    let ring: Vec<String> = peek(&mut con, "{t}ring", &[]).iter().map(|m| m.payload()).collect();
    assert_eq!(ring, ["third", "fourth"], "{{t}}ring after sending {fourth}");
    let dead: Vec<(String, String)> =
        dead_list(&mut con, "{t}ring", &[]).iter().map(|m| (m.payload(), m.str("reason"))).collect();
    assert_eq!(dead, [("first".into(), "overflow".into()), ("second".into(), "overflow".into())]);

    // The thread counts: th-1 holds 3, th-2 holds 1.
    let thread_error = |thread: &str, limit: i64| {
        format!("ERR thread '{thread}' reached mailbox.max-thread-messages ({limit}); start a new thread")
    };
    config_set(&mut con, "mailbox.max-thread-messages", "3");
    assert_eq!(
        error_of(&mut con, &["MAILBOX.SEND", "{t}bob", "x", "THREAD", "th-1"]),
        thread_error("th-1", 3)
    );
    config_set(&mut con, "mailbox.max-thread-messages", "4");
    send(&mut con, "{t}bob", "x", &["THREAD", "th-1"]);
    config_set(&mut con, "mailbox.max-thread-messages", "2");
    send(&mut con, "{t}bob", "y", &["THREAD", "th-2"]);
    assert_eq!(
        error_of(&mut con, &["MAILBOX.SEND", "{t}bob", "z", "THREAD", "th-2"]),
        thread_error("th-2", 2)
    );
    config_set(&mut con, "mailbox.max-thread-messages", "0");

    // The quota override: robot may send 2 at once, then 1 a second.
    send(&mut con, "{t}bob", "q1", &["AS", "robot"]);
    send(&mut con, "{t}bob", "q2", &["AS", "robot"]);
    assert_eq!(
        error_of(&mut con, &["MAILBOX.SEND", "{t}bob", "q3", "AS", "robot"]),
        "ERR send quota exceeded for agent 'robot' (1 messages/s, burst 2)"
    );

    // The subscription filters (the topic index is rebuilt on load).
    for (args, receivers) in [
        (&["{t}news.paper", "p", "PRIORITY", "2", "TYPE", "text/plain", "AS", "alice"][..], 2), // alice, bob
        (&["{t}news.paper", "p", "PRIORITY", "1", "TYPE", "text/plain", "AS", "alice"][..], 1), // alice
        (&["{t}news.paper", "p", "PRIORITY", "9", "TYPE", "text/plain", "AS", "bob"][..], 2), // alice, carol
        (&["{t}alerts.fire", "p", "PRIORITY", "5"][..], 1),                                   // carol
        (&["{t}alerts.fire", "p", "PRIORITY", "4"][..], 0),
    ] {
        let mut command = vec!["MAILBOX.PUBLISH"];
        command.extend_from_slice(args);
        assert_eq!(receivers_of(&mut con, &command), receivers, "{command:?}");
    }

    assert_reload_keeps_digest(&server, "the v3 fixture after more commands");
}

#[test]
fn a_future_encoding_version_is_refused() {
    for (fixture, mb_encver, ns_encver) in FIXTURES {
        let rdb = fixture_bytes(fixture);
        for (name, from) in [("mailboxes", mb_encver), ("mailboxns", ns_encver)] {
            let dir = TempDir::new("future");
            place(&dir, &with_encver(&rdb, name, from, 1023));
            let outcome = start_expecting_exit(&dir, true);
            assert_clean_exit(&outcome, &format!("{fixture}: {name} encoding version 1023"));
            let expected = match name {
                "mailboxes" => "mailbox: refusing a mailbox saved with encoding version 1023",
                _ => "mailbox: refusing a namespace (encoding version 1023)",
            };
            assert!(
                outcome.log.contains(expected),
                "{fixture}: {name}: no {expected:?} in the log:\n{}",
                outcome.log
            );
            // Redis then finds the value unread and stops loading the file.
            assert!(
                outcome.log.contains("The RDB file contains module data for the module 'mailbox'"),
                "{fixture}: {name}: Redis did not report the refused value:\n{}",
                outcome.log
            );
        }
    }
}

#[test]
fn the_fixture_without_the_module_is_refused() {
    for (fixture, _, _) in FIXTURES {
        let dir = TempDir::new("nomodule");
        place(&dir, &fixture_bytes(fixture));
        let outcome = start_expecting_exit(&dir, false);
        assert_clean_exit(&outcome, &format!("{fixture}: no module loaded"));
        assert!(
            outcome.log.contains("The RDB file contains module data I can't load: no matching module type"),
            "{fixture}: no module error in the log:\n{}",
            outcome.log
        );
        assert!(
            outcome.log.contains("'mailboxes'") || outcome.log.contains("'mailboxns'"),
            "{fixture}: {}",
            outcome.log
        );
    }
}

#[test]
fn crc64_matches_redis() {
    // The check value of CRC-64/Jones as Redis's own crc64 test prints it.
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    // And the fixtures' own trailers.
    for (fixture, _, _) in FIXTURES {
        let rdb = fixture_bytes(fixture);
        let body = rdb.len() - 8;
        assert_eq!(crc64(&rdb[..body]).to_le_bytes(), rdb[body..], "the checksum of {fixture}");
    }
}

/// The file is an RDB of version 10 (Redis 7.0) holding `mailboxes` values of encoding
/// version `mb_encver` only and `mailboxns` values of encoding version `ns_encver` only.
fn assert_encodings(fixture: &str, mailboxes: usize, namespaces: usize, mb_encver: u64, ns_encver: u64) {
    let rdb = fixture_bytes(fixture);
    assert!(rdb.starts_with(b"REDIS0010"), "{fixture}: an RDB file of version 10 (Redis 7.0)");
    assert_eq!(type_id_offsets(&rdb, module_type_id("mailboxes", mb_encver)).len(), mailboxes, "{fixture}");
    assert_eq!(type_id_offsets(&rdb, module_type_id("mailboxns", ns_encver)).len(), namespaces, "{fixture}");
    for encver in 0..8 {
        if encver != mb_encver {
            assert!(type_id_offsets(&rdb, module_type_id("mailboxes", encver)).is_empty(), "{fixture}");
        }
        if encver != ns_encver {
            assert!(type_id_offsets(&rdb, module_type_id("mailboxns", encver)).is_empty(), "{fixture}");
        }
    }
}

#[test]
fn the_fixture_is_encoding_version_1() {
    assert_encodings(FIXTURE_V1, 6, 3, 1, 1);
}

#[test]
fn the_v3_fixture_is_namespace_encoding_version_3() {
    assert_encodings(FIXTURE_V3, 4, 1, 1, 3);
}

#[test]
fn the_v4_fixture_is_mailbox_encoding_version_2() {
    assert_encodings(FIXTURE_V4, 4, 1, 2, 3);
}

#[test]
fn the_v5_fixture_is_mailbox_encoding_version_3() {
    assert_encodings(FIXTURE_V5, 4, 1, 3, 3);
}

/// Writes `tests/fixtures/mailbox-v1.rdb`. Run by hand, once per released encoding, with
/// the module of that release:
///
/// ```sh
/// git archive c777eea | tar -x -C /tmp/mailbox-v1 && (cd /tmp/mailbox-v1 && cargo build)
/// MAILBOX_MODULE=/tmp/mailbox-v1/target/debug/libredis_mailbox.so \
///     cargo test --test rdb_compat -- --ignored --nocapture generate_v1_fixture
/// ```
///
/// It prints what the test above then asserts.
#[test]
#[ignore = "writes tests/fixtures/mailbox-v1.rdb: run by hand with the module of that release"]
fn generate_v1_fixture() {
    let server = Server::start();
    let mut admin = server.client();
    for user in ["alice", "bob"] {
        run(&mut admin, &["ACL", "SETUSER", user, "on", &format!(">{user}-pw"), "~*", "&*", "+@all"]);
    }
    let mut alice = server.client_as("alice", "alice-pw");
    let mut bob = server.client_as("bob", "bob-pw");

    // {t}alice: ten-year leases, delays, TTL and dedup window; at most 2 deliveries.
    create(&mut alice, "{t}alice", &["LEASE", DECADE_MS, "MAXDELIVER", "2", "DEDUPWINDOW", DECADE_MS]);
    run(&mut alice, &["MAILBOX.SUB", "{t}alice", "news.#"]);
    let leased = send(&mut bob, "{t}alice", "leased", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, leased);
    let delayed = send(&mut bob, "{t}alice", "delayed", &["PRIORITY", "8"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, delayed);
    assert_eq!(nack_delay(&mut alice, "{t}alice", &[&delayed], 315_360_000_000), 1);
    let dead = send(&mut bob, "{t}alice", "dead", &["PRIORITY", "7"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, dead);
    assert_eq!(nack(&mut alice, "{t}alice", &[&dead]), 1);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, dead);
    assert_eq!(nack(&mut alice, "{t}alice", &[&dead]), 1); // second delivery: dead-lettered
    let again = send(&mut bob, "{t}alice", "read once", &["PRIORITY", "6"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, again);
    assert_eq!(nack(&mut alice, "{t}alice", &[&again]), 1);
    let full = send(
        &mut bob,
        "{t}alice",
        "full",
        &[
            "PRIORITY",
            "3",
            "TTL",
            DECADE_MS,
            "DEDUP",
            "d-1",
            "TYPE",
            "text/plain",
            "THREAD",
            "th-1",
            "CORRELATION",
            "c-1",
            "REPLYTO",
            "{t}bob",
            "META",
            r#"{"k":[1,2],"s":"x"}"#,
        ],
    );
    let binary = send_bytes(&mut bob, "{t}alice", b"\x00\xff\r\nbin", &[]);

    // {t}bob: default settings, subscriptions (one removed again), a message in a thread.
    run(&mut bob, &["MAILBOX.SUB", "{t}bob", "*.paper", "old.topic"]);
    run(&mut bob, &["MAILBOX.UNSUB", "{t}bob", "old.topic"]);
    let hello = send(&mut alice, "{t}bob", "hello bob", &["THREAD", "th-1"]);
    // One message, stored once, held by both subscribers.
    let published = run(&mut alice, &["MAILBOX.PUBLISH", "{t}news.paper", "shared news", "PRIORITY", "2"]);

    // Outside any namespace, an empty mailbox, and a second database.
    let plain = send(&mut alice, "plain", "no tag", &[]);
    create(&mut admin, "{t}empty", &["MAXLEN", "5", "TTL", "60000", "LEASE", "5000", "MAXDELIVER", "3"]);
    select(&mut admin, 1);
    let db1 = send(&mut admin, "db1box", "in db 1", &[]);
    select(&mut admin, 0);

    // {t}carol: states that change once loaded, as time has passed: a lease at its last
    // delivery (dead-lettered on load), a lease with deliveries left (requeued), a TTL
    // (expired). Everything from here to SAVE must take less than a second.
    create(&mut bob, "{t}carol", &["MAXDELIVER", "2"]);
    let c_dead = send(&mut alice, "{t}carol", "to die", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut bob, "{t}carol", &[]).id, c_dead);
    assert_eq!(nack(&mut bob, "{t}carol", &[&c_dead]), 1);
    let c_requeue = send(&mut alice, "{t}carol", "to requeue", &["PRIORITY", "5"]);
    let c_expire = send(&mut alice, "{t}carol", "to expire", &["TTL", "3000"]);
    let got = read(&mut bob, "{t}carol", &["COUNT", "2", "LEASE", "1000"]).expect("two messages");
    assert_eq!(got.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), [c_dead.clone(), c_requeue.clone()]);
    assert_eq!(run(&mut admin, &["SAVE"]), Value::Okay);

    let out = fixtures_dir().join(FIXTURE_V1);
    fs::copy(server.dir.join("dump.rdb"), &out).expect("copy dump.rdb");
    println!("wrote {}", out.display());
    println!(
        "alice: leased {leased} delayed {delayed} dead {dead} again {again} full {full} binary {binary}"
    );
    println!("bob: hello {hello} published {published:?}");
    println!("plain {plain} db1 {db1}");
    println!("carol: dead {c_dead} requeue {c_requeue} expire {c_expire}");
    for key in ["{t}alice", "{t}bob", "{t}carol", "{t}empty", "plain"] {
        for m in peek(&mut admin, key, &[]) {
            println!("PEEK {key}: {} {:?}", m.id, fields_of(&m));
        }
        for m in dead_list(&mut admin, key, &[]) {
            println!("DEAD {key}: {} {:?}", m.id, fields_of(&m));
        }
        println!("INFO {key}: {:?}", info_text(&mut admin, key));
        println!("SUBS {key}: {:?}", run(&mut admin, &["MAILBOX.SUBS", key]));
    }
    println!("PRESENCE {{t}}: {:?}", run(&mut admin, &["MAILBOX.PRESENCE", "{t}"]));
    println!("PRESENCE plain: {:?}", run(&mut admin, &["MAILBOX.PRESENCE", "plain"]));
    select(&mut admin, 1);
    for m in peek(&mut admin, "db1box", &[]) {
        println!("PEEK db1box: {} {:?}", m.id, fields_of(&m));
    }
    println!("KEYS db 1: {:?}", run(&mut admin, &["KEYS", "*"]));
}

/// Writes `tests/fixtures/mailbox-v3.rdb` with the module as built now (`mailboxes`
/// encoding version 1 with codec format 3, `mailboxns` encoding version 3). Run by hand,
/// once, with a build of the release that writes those encodings:
///
/// ```sh
/// cargo build
/// cargo test --test rdb_compat -- --ignored --nocapture generate_v3_fixture
/// ```
///
/// (`MAILBOX_MODULE=/path/to/libredis_mailbox.so` picks another build.) Never run it again
/// once a later encoding exists: add a new fixture for that. It prints what
/// `the_v3_fixture_loads_with_every_field` then asserts.
#[test]
#[ignore = "writes tests/fixtures/mailbox-v3.rdb: run by hand with the module of that release"]
fn generate_v3_fixture() {
    let server = Server::start();
    let mut admin = server.client();
    for user in ["alice", "bob", "carol", "gateway"] {
        run(&mut admin, &["ACL", "SETUSER", user, "on", &format!(">{user}-pw"), "~*", "&*", "+@all"]);
    }
    // Threads are counted only while the loop breaker is on; no audit stream in the file.
    config_set(&mut admin, "mailbox.max-thread-messages", "100");
    config_set(&mut admin, "mailbox.audit-maxlen", "0");
    let mut alice = server.client_as("alice", "alice-pw");
    let mut bob = server.client_as("bob", "bob-pw");
    let mut carol = server.client_as("carol", "carol-pw");
    let mut gateway = server.client_as("gateway", "gateway-pw");

    // Grants: every permission, one for every agent (`*`).
    for (agent, permission, pattern) in [
        ("gateway", "impersonate", "{t}robot"),
        ("gateway", "send", "{t}*"),
        ("*", "read", "{t}ring"),
        ("*", "subscribe", "{t}alerts.*"),
        ("alice", "admin", "{t}alice"),
        ("bob", "publish", "{t}news.*"),
    ] {
        assert_eq!(run(&mut admin, &["MAILBOX.ACL", "GRANT", agent, permission, pattern]), Value::Int(1));
    }

    // Subscriptions: without a filter, with all three filters, with one each.
    create(&mut alice, "{t}alice", &["LEASE", DECADE_MS, "MAXDELIVER", "2", "DEDUPWINDOW", DECADE_MS]);
    run(&mut alice, &["MAILBOX.SUB", "{t}alice", "news.#"]);
    run(&mut bob, &["MAILBOX.SUB", "{t}bob", "*.paper", "FROM", "al*", "MINPRIORITY", "2", "TYPE", "text/*"]);
    run(&mut carol, &["MAILBOX.SUB", "{t}carol", "alerts.*", "MINPRIORITY", "5"]);
    run(&mut carol, &["MAILBOX.SUB", "{t}carol", "news.*", "FROM", "bob"]);

    // {t}alice: leased, delayed, dead by maxdeliveries, a confirmed message acked (its
    // receipt goes to {t}bob), every optional field, a message sent AS robot by gateway
    // with CONFIRM, a published message.
    let leased = send(&mut bob, "{t}alice", "leased", &["PRIORITY", "9"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, leased);
    let delayed = send(&mut bob, "{t}alice", "delayed", &["PRIORITY", "8"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, delayed);
    assert_eq!(nack_delay(&mut alice, "{t}alice", &[&delayed], 315_360_000_000), 1);
    let dead = send(&mut bob, "{t}alice", "dead", &["PRIORITY", "7"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, dead);
    assert_eq!(nack(&mut alice, "{t}alice", &[&dead]), 1);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, dead);
    assert_eq!(nack(&mut alice, "{t}alice", &[&dead]), 1); // second delivery: dead-lettered
    let confirmed = send(&mut bob, "{t}alice", "please confirm", &["PRIORITY", "6", "CONFIRM"]);
    assert_eq!(read_one(&mut alice, "{t}alice", &[]).id, confirmed);
    assert_eq!(ack(&mut alice, "{t}alice", &[&confirmed]), 1);
    let full = send(
        &mut bob,
        "{t}alice",
        "full",
        &[
            "PRIORITY",
            "3",
            "TTL",
            DECADE_MS,
            "DEDUP",
            "d-1",
            "TYPE",
            "text/plain",
            "THREAD",
            "th-1",
            "CORRELATION",
            "c-1",
            "REPLYTO",
            "{t}bob",
            "META",
            r#"{"k":[1,2],"s":"x"}"#,
        ],
    );
    let via = send(
        &mut gateway,
        "{t}alice",
        "on behalf",
        &["AS", "robot", "CONFIRM", "PRIORITY", "5", "THREAD", "th-1"],
    );

    // {t}bob: a direct message in the thread, and the published one (shared with {t}alice;
    // {t}carol's filter FROM bob keeps it out).
    let hello = send(&mut alice, "{t}bob", "hello bob", &["THREAD", "th-1"]);
    let published = run(
        &mut alice,
        &[
            "MAILBOX.PUBLISH",
            "{t}news.paper",
            "shared news",
            "PRIORITY",
            "2",
            "TYPE",
            "text/plain",
            "THREAD",
            "th-2",
        ],
    );

    // {t}ring: full at 2, drops its oldest (a confirmed message from carol: its receipt
    // goes to {t}carol) to the dead letters.
    create(&mut admin, "{t}ring", &["MAXLEN", "2", "OVERFLOW", "drop-oldest"]);
    let first = send(&mut carol, "{t}ring", "first", &["CONFIRM"]);
    let second = send(&mut alice, "{t}ring", "second", &[]);
    let third = send(&mut alice, "{t}ring", "third", &[]);

    // A quota override, set last so it limits nothing above.
    assert_eq!(run(&mut admin, &["MAILBOX.ACL", "QUOTA", "robot", "1", "{t}", "BURST", "2"]), Value::Okay);
    assert_eq!(run(&mut admin, &["SAVE"]), Value::Okay);

    let out = fixtures_dir().join(FIXTURE_V3);
    fs::copy(server.dir.join("dump.rdb"), &out).expect("copy dump.rdb");
    println!("wrote {}", out.display());
    println!(
        "alice: leased {leased} delayed {delayed} dead {dead} confirmed {confirmed} full {full} via {via}"
    );
    println!("bob: hello {hello} published {published:?}");
    println!("ring: first {first} second {second} third {third}");
    println!("KEYS: {:?}", run(&mut admin, &["KEYS", "*"]));
    for key in ["{t}alice", "{t}bob", "{t}carol", "{t}ring"] {
        for m in peek(&mut admin, key, &[]) {
            println!("PEEK {key}: {} {:?}", m.id, fields_of(&m));
        }
        for m in dead_list(&mut admin, key, &[]) {
            println!("DEAD {key}: {} {:?}", m.id, fields_of(&m));
        }
        println!("INFO {key}: {:?}", info_text(&mut admin, key));
        println!("SUBS {key}: {:?}", run(&mut admin, &["MAILBOX.SUBS", key]));
    }
    println!("ACL LIST: {:?}", run(&mut admin, &["MAILBOX.ACL", "LIST", "{t}"]));
    println!("PRESENCE {{t}}: {:?}", run(&mut admin, &["MAILBOX.PRESENCE", "{t}"]));
    println!("DIGEST: {}", debug_digest(&mut admin));
}

/// Writes `tests/fixtures/mailbox-v4.rdb`: the v3 file loaded by this module and saved
/// again, so the same data in the current encoding. Run by hand, once, with the module of
/// commit c45b7c0 (`cargo build` first):
///
/// ```sh
/// cargo test --test rdb_compat -- --ignored --nocapture generate_v4_fixture
/// ```
///
/// Never run it again once a later encoding exists: add a new fixture for that.
#[test]
#[ignore = "writes tests/fixtures/mailbox-v4.rdb: run by hand with the module of that release"]
fn generate_v4_fixture() {
    resave_v3_data(FIXTURE_V4);
}

/// Writes `tests/fixtures/mailbox-v5.rdb` as `generate_v4_fixture` wrote its file, with the
/// module of commit 96c9c52:
///
/// ```sh
/// cargo test --test rdb_compat -- --ignored --nocapture generate_v5_fixture
/// ```
///
/// Never run it again once a later encoding exists: add a new fixture for that.
#[test]
#[ignore = "writes tests/fixtures/mailbox-v5.rdb: run by hand with the module of that release"]
fn generate_v5_fixture() {
    resave_v3_data(FIXTURE_V5);
}

/// Starts a server on `mailbox-v3.rdb`, saves, checks that the saved file holds the same
/// `DEBUG DIGEST`, and copies it to `tests/fixtures/<name>`.
fn resave_v3_data(name: &str) {
    let dir = TempDir::new("resave");
    let server = start_on(&dir, &fixture_bytes(FIXTURE_V3));
    let before = server.digest();
    let mut con = server.client();
    assert_eq!(run(&mut con, &["SAVE"]), Value::Okay);
    assert_eq!(run(&mut con, &["DEBUG", "RELOAD", "NOSAVE"]), Value::Okay);
    assert_eq!(server.digest(), before, "the saved file holds other data");
    let out = fixtures_dir().join(name);
    fs::copy(dir.0.join(DBFILENAME), &out).expect("copy the saved file");
    println!("wrote {}", out.display());
}

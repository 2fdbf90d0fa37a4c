//! The benchmark client of `scripts/bench`: the measurements redis-benchmark cannot express, and
//! the report (the table of ratios, `docs/bench/latest.md`, and the SVG charts).
//!
//! `scripts/bench` starts the servers (one with the module, one plain Redis as the baseline), runs
//! redis-benchmark, then runs this program for the rest. Every measuring subcommand prints
//! `key value` lines on stdout (progress goes to stderr); the script collects them in one results
//! file, and `report` turns that file into the table and the charts. A key printed more than once
//! (repetitions) counts with its median.
//!
//! ```text
//! bench data    --mod-port P --base-port B --messages N [--consumers 4] [--reloads 1]
//! bench wakeup  --mod-port P --base-port B [--samples 2000]
//! bench topic   --mod-port P [--subs 1,100,10000] [--publishes 100]
//! bench scale   --mod-port P [--sizes 1000,10000,100000,1000000] [--mailboxes 1000,10000,100000]
//!               [--probes 2000] [--reps 3]
//! bench report  --results FILE [--md FILE] [--svg FILE] [--scale-svg FILE]
//! ```
//!
//! Build and run it with `cargo run --release --example bench -- <subcommand> ...`.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Connection, Value};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Payload size of every message, as in the issue.
const PAYLOAD_BYTES: usize = 256;
/// Commands per pipelined round trip when filling.
const FILL_BATCH: u64 = 1000;
/// Commands per pipelined round trip when probing (scale curves).
const PROBE_BATCH: usize = 100;
/// Messages a read takes in the read + ack cycle.
const CYCLE_COUNT: usize = 16;
/// Topic the subscribers of `topic` subscribe to.
const TOPIC: &str = "bench.topic";

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((sub, rest)) = argv.split_first() else {
        eprintln!("usage: bench data|wakeup|topic|scale|report [--option value ...]");
        std::process::exit(2);
    };
    let opts = match Opts::parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let result = match sub.as_str() {
        "data" => data(&opts),
        "wakeup" => wakeup(&opts),
        "topic" => topic(&opts),
        "scale" => scale(&opts),
        "report" => report(&opts),
        other => Err(format!("unknown subcommand '{other}'").into()),
    };
    if let Err(e) = result {
        eprintln!("bench {sub}: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Options, output, server helpers

struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Res<Opts> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let name = flag.strip_prefix("--").ok_or_else(|| format!("expected --option, got '{flag}'"))?;
            let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_string(), value.clone());
        }
        Ok(Opts(map))
    }

    fn str(&self, name: &str) -> Res<&str> {
        self.0.get(name).map(String::as_str).ok_or_else(|| format!("--{name} is required").into())
    }

    fn num(&self, name: &str, default: Option<u64>) -> Res<u64> {
        match (self.0.get(name), default) {
            (Some(v), _) => v.parse().map_err(|_| format!("--{name}: '{v}' is not a number").into()),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{name} is required").into()),
        }
    }

    fn list(&self, name: &str, default: &[u64]) -> Res<Vec<u64>> {
        match self.0.get(name) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .split(',')
                .map(|s| s.trim().parse().map_err(|_| format!("--{name}: '{s}' is not a number").into()))
                .collect(),
        }
    }

    fn port(&self, name: &str) -> Res<u16> {
        Ok(u16::try_from(self.num(name, None)?)?)
    }
}

/// One result line for the script's results file.
fn emit(key: &str, value: f64) {
    println!("{key} {value:.4}");
}

fn progress(msg: &str) {
    eprintln!("  bench: {msg}");
}

fn connect(port: u16) -> Res<Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    Ok(client.get_connection()?)
}

fn payload() -> Vec<u8> {
    vec![b'x'; PAYLOAD_BYTES]
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn info(con: &mut Connection, section: &str) -> Res<String> {
    Ok(redis::cmd("INFO").arg(section).query::<String>(con)?)
}

fn info_field(text: &str, field: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).map(|v| v.trim().to_string())
}

fn used_memory(con: &mut Connection) -> Res<f64> {
    let text = info(con, "memory")?;
    let v = info_field(&text, "used_memory").ok_or("INFO memory has no used_memory")?;
    Ok(v.parse()?)
}

fn blocked_clients(con: &mut Connection) -> Res<u64> {
    let text = info(con, "clients")?;
    Ok(info_field(&text, "blocked_clients").and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Server time per call of `command` (its `INFO commandstats` name: `xadd`, `mailbox.send`)
/// since the last `CONFIG RESETSTAT`, in microseconds; computed from `usec` and `calls` for more
/// digits than `usec_per_call` has.
fn usec_per_call(con: &mut Connection, command: &str) -> Res<f64> {
    let text = info(con, "commandstats")?;
    let line = info_field(&text, &format!("cmdstat_{command}"))
        .ok_or_else(|| format!("no calls of {command} in INFO commandstats"))?;
    let field = |name: &str| -> Option<f64> {
        line.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    let (calls, usec) = (field("calls").unwrap_or(0.0), field("usec").unwrap_or(0.0));
    if field("failed_calls").unwrap_or(0.0) > 0.0 || field("rejected_calls").unwrap_or(0.0) > 0.0 {
        return Err(format!("{command} failed during the measurement: {line}").into());
    }
    if calls == 0.0 {
        return Err(format!("no calls of {command}").into());
    }
    Ok(usec / calls)
}

fn resetstat(con: &mut Connection) -> Res<()> {
    redis::cmd("CONFIG").arg("RESETSTAT").query::<()>(con)?;
    Ok(())
}

fn flushall(con: &mut Connection) -> Res<()> {
    redis::cmd("FLUSHALL").arg("SYNC").query::<()>(con)?;
    Ok(())
}

/// Runs `add(pipe, i)` for every i in `from..to`, `FILL_BATCH` commands per round trip.
fn fill(con: &mut Connection, from: u64, to: u64, add: impl Fn(&mut redis::Pipeline, u64)) -> Res<()> {
    let mut i = from;
    while i < to {
        let end = (i + FILL_BATCH).min(to);
        let mut pipe = redis::pipe();
        for j in i..end {
            add(&mut pipe, j);
        }
        pipe.query::<()>(con)?;
        i = end;
    }
    Ok(())
}

/// The ids of a reply shaped like `XRANGE`'s: `[[id, [field, value, ...]], ...]` (also what
/// `MAILBOX.READ` replies); empty for a null reply.
fn entry_ids(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Array(entries) => entries
            .iter()
            .filter_map(|e| match e {
                Value::Array(pair) => match pair.first() {
                    Some(Value::BulkString(id)) => Some(id.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The entries of the first stream of an `XREAD`/`XREADGROUP` reply (RESP2).
fn stream_entry_ids(v: &Value) -> Vec<Vec<u8>> {
    match v {
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(pair)) => pair.get(1).map(entry_ids).unwrap_or_default(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A small deterministic generator for the probes' random picks.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// data: memory per message, DEBUG RELOAD time, read + ack cycle

const MAILBOX_KEY: &str = "bench:mailbox";
const STREAM_KEY: &str = "bench:stream";

fn data(opts: &Opts) -> Res<()> {
    let (mod_port, base_port) = (opts.port("mod-port")?, opts.port("base-port")?);
    let n = opts.num("messages", None)?;
    let consumers = opts.num("consumers", Some(4))?.max(1) as usize;
    let reloads = opts.num("reloads", Some(1))?.max(1);
    let mut m = connect(mod_port)?;
    let mut b = connect(base_port)?;
    let body = payload();

    // Memory per stored message: used_memory before and after N messages in one key.
    for (con, side) in [(&mut m, "mod"), (&mut b, "base")] {
        flushall(con)?;
        let before = used_memory(con)?;
        progress(&format!("{side}: filling {n} messages"));
        let started = Instant::now();
        if side == "mod" {
            fill(con, 0, n, |p, _| {
                p.cmd("MAILBOX.SEND").arg(MAILBOX_KEY).arg(&body).ignore();
            })?;
        } else {
            let ts = now_ms();
            fill(con, 0, n, |p, i| {
                p.cmd("XADD")
                    .arg(STREAM_KEY)
                    .arg("*")
                    .arg("from")
                    .arg("default")
                    .arg("to")
                    .arg(STREAM_KEY)
                    .arg("ts")
                    .arg(ts + i / 1000)
                    .arg("priority")
                    .arg(0)
                    .arg("payload")
                    .arg(&body)
                    .ignore();
            })?;
        }
        let fill_secs = started.elapsed().as_secs_f64();
        let after = used_memory(con)?;
        emit(&format!("mem.{side}.bytes_per_msg"), (after - before) / n as f64);
        emit(&format!("fill.{side}.msgs_per_s"), n as f64 / fill_secs);
    }

    // DEBUG RELOAD: save and load the same data.
    for _ in 0..reloads {
        for (con, side) in [(&mut m, "mod"), (&mut b, "base")] {
            progress(&format!("{side}: DEBUG RELOAD"));
            let started = Instant::now();
            redis::cmd("DEBUG").arg("RELOAD").query::<()>(con)?;
            emit(&format!("reload.{side}.ms"), started.elapsed().as_secs_f64() * 1000.0);
        }
    }

    // Read + ack cycle: `consumers` connections drain the N messages, COUNT 16 per read, the ack
    // of one batch pipelined with the next read (one round trip per cycle).
    redis::cmd("XGROUP").arg("CREATE").arg(STREAM_KEY).arg("g").arg("0").query::<()>(&mut b)?;
    for (port, side) in [(mod_port, "mod"), (base_port, "base")] {
        progress(&format!("{side}: read + ack cycle, {consumers} consumers"));
        let (done, secs) = drain(port, side == "mod", consumers)?;
        if done != n {
            return Err(format!("{side}: the read + ack cycle settled {done} of {n} messages").into());
        }
        emit(&format!("cycle.{side}.msgs_per_s"), done as f64 / secs);
    }
    flushall(&mut m)?;
    flushall(&mut b)?;
    Ok(())
}

/// Drains the mailbox (`module`) or the stream's group with `consumers` threads; returns the
/// messages settled and the seconds it took.
fn drain(port: u16, module: bool, consumers: usize) -> Res<(u64, f64)> {
    let barrier = Arc::new(Barrier::new(consumers + 1));
    let mut handles = Vec::new();
    for c in 0..consumers {
        let mut con = connect(port)?;
        let barrier = Arc::clone(&barrier);
        handles.push(thread::spawn(move || -> Res<u64> {
            let consumer = format!("c{c}");
            let mut settled = 0u64;
            let mut prev: Vec<Vec<u8>> = Vec::new();
            barrier.wait();
            loop {
                let mut pipe = redis::pipe();
                if module {
                    if !prev.is_empty() {
                        pipe.cmd("MAILBOX.ACK").arg(MAILBOX_KEY).arg(&prev).ignore();
                    }
                    pipe.cmd("MAILBOX.READ").arg(MAILBOX_KEY).arg("COUNT").arg(CYCLE_COUNT);
                } else {
                    if !prev.is_empty() {
                        pipe.cmd("XACK").arg(STREAM_KEY).arg("g").arg(&prev).ignore();
                    }
                    pipe.cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg("g")
                        .arg(&consumer)
                        .arg("COUNT")
                        .arg(CYCLE_COUNT)
                        .arg("STREAMS")
                        .arg(STREAM_KEY)
                        .arg(">");
                }
                let mut replies: Vec<Value> = pipe.query(&mut con)?;
                settled += prev.len() as u64;
                let reply = replies.pop().unwrap_or(Value::Nil);
                prev = if module { entry_ids(&reply) } else { stream_entry_ids(&reply) };
                if prev.is_empty() {
                    return Ok(settled);
                }
            }
        }));
    }
    barrier.wait();
    let started = Instant::now();
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| "a consumer thread panicked")??;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

// ---------------------------------------------------------------------------------------------
// wakeup: send -> blocked reader's reply latency

fn wakeup(opts: &Opts) -> Res<()> {
    let (mod_port, base_port) = (opts.port("mod-port")?, opts.port("base-port")?);
    let samples = opts.num("samples", Some(2000))?.max(1) as usize;
    let mut lat: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (port, _) in [(mod_port, "mod"), (base_port, "base")] {
        flushall(&mut connect(port)?)?;
    }
    // Alternate blocks of samples so drifting machine noise hits both sides alike.
    let block = 250.min(samples);
    let mut left = samples;
    while left > 0 {
        let this = block.min(left);
        for (port, side) in [(mod_port, "mod"), (base_port, "base")] {
            let got = wake_samples(port, side == "mod", this)?;
            lat.entry(side).or_default().extend(got);
        }
        left -= this;
    }
    for (side, mut v) in lat {
        v.sort_by(f64::total_cmp);
        emit(&format!("wake.{side}.p50_us"), percentile(&v, 50.0));
        emit(&format!("wake.{side}.p99_us"), percentile(&v, 99.0));
    }
    Ok(())
}

/// `count` samples: a reader thread blocks (`MAILBOX.READ ... BLOCK 0` or `XREAD BLOCK 0`), the
/// sender waits until the server reports it blocked, then sends; the latency is from just before
/// the send to the moment the reader has its reply, in microseconds.
fn wake_samples(port: u16, module: bool, count: usize) -> Res<Vec<f64>> {
    const KEY: &str = "bench:wake";
    let mut reader = connect(port)?;
    let mut sender = connect(port)?;
    let mut poll = connect(port)?;
    let (tx, rx) = mpsc::channel::<Instant>();
    let handle = thread::spawn(move || -> Res<()> {
        // "$": only what is sent after the reader blocked (the sender waits for that).
        let mut last = b"$".to_vec();
        // Both readers make one round trip per sample: the module's leased messages are
        // acked once the samples are taken. An ack after each read was a second round trip
        // on the core the sender shares, which added about 9 µs at p50 to XREAD too when
        // tried there (a PING after each XREAD).
        let mut leased = Vec::with_capacity(count);
        for _ in 0..count {
            if module {
                let v: Value = redis::cmd("MAILBOX.READ").arg(KEY).arg("BLOCK").arg(0).query(&mut reader)?;
                tx.send(Instant::now())?;
                leased.extend(entry_ids(&v));
            } else {
                let v: Value = redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(0)
                    .arg("STREAMS")
                    .arg(KEY)
                    .arg(&last)
                    .query(&mut reader)?;
                let at = Instant::now();
                tx.send(at)?;
                if let Some(id) = stream_entry_ids(&v).pop() {
                    last = id;
                }
            }
        }
        if !leased.is_empty() {
            let acked: u64 = redis::cmd("MAILBOX.ACK").arg(KEY).arg(&leased).query(&mut reader)?;
            if acked != leased.len() as u64 {
                return Err(format!("acked {acked} of {} wake-up messages", leased.len()).into());
            }
        }
        Ok(())
    });
    let body = payload();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let deadline = Instant::now() + Duration::from_secs(10);
        while blocked_clients(&mut poll)? < 1 {
            if Instant::now() > deadline {
                return Err("the reader never blocked".into());
            }
        }
        let sent = Instant::now();
        if module {
            redis::cmd("MAILBOX.SEND").arg(KEY).arg(&body).query::<()>(&mut sender)?;
        } else {
            redis::cmd("XADD")
                .arg(KEY)
                .arg("*")
                .arg("from")
                .arg("default")
                .arg("to")
                .arg(KEY)
                .arg("ts")
                .arg(now_ms())
                .arg("priority")
                .arg(0)
                .arg("payload")
                .arg(&body)
                .query::<()>(&mut sender)?;
        }
        let woke = rx.recv_timeout(Duration::from_secs(10))?;
        out.push(woke.saturating_duration_since(sent).as_secs_f64() * 1e6);
    }
    handle.join().map_err(|_| "the reader thread panicked")??;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// topic: publish cost and memory per receiver at 1 / 100 / 10,000 subscribers

fn topic(opts: &Opts) -> Res<()> {
    let port = opts.port("mod-port")?;
    let levels = opts.list("subs", &[1, 100, 10_000])?;
    let publishes = opts.num("publishes", Some(100))?.max(1);
    let mut con = connect(port)?;
    flushall(&mut con)?;
    let body = payload();
    let mut subscribed = 0;
    for level in levels {
        progress(&format!("topic: {level} subscribers"));
        resetstat(&mut con)?;
        fill(&mut con, subscribed, level, |p, i| {
            p.cmd("MAILBOX.SUB").arg(format!("tsub:{i}")).arg(TOPIC).ignore();
        })?;
        if level > subscribed {
            emit(&format!("scale.subs.sub.{level}"), usec_per_call(&mut con, "mailbox.sub")?);
        }
        subscribed = subscribed.max(level);
        resetstat(&mut con)?;
        let before = used_memory(&mut con)?;
        for _ in 0..publishes {
            let reply: (String, u64) = redis::cmd("MAILBOX.PUBLISH").arg(TOPIC).arg(&body).query(&mut con)?;
            if reply.1 != subscribed {
                return Err(format!("a publish reached {} receivers, not {subscribed}", reply.1).into());
            }
        }
        let after = used_memory(&mut con)?;
        let per_publish = usec_per_call(&mut con, "mailbox.publish")?;
        let receivers = subscribed as f64;
        emit(&format!("topic.{subscribed}.usec_per_publish"), per_publish);
        emit(&format!("topic.{subscribed}.usec_per_receiver"), per_publish / receivers);
        emit(&format!("topic.{subscribed}.bytes_per_publish"), (after - before) / publishes as f64);
        emit(
            &format!("topic.{subscribed}.bytes_per_receiver"),
            (after - before) / (publishes as f64 * receivers),
        );
    }
    flushall(&mut con)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// scale: usec per call as the mailbox, the number of mailboxes grow

fn scale(opts: &Opts) -> Res<()> {
    let port = opts.port("mod-port")?;
    let sizes = opts.list("sizes", &[1000, 10_000, 100_000, 1_000_000])?;
    let counts = opts.list("mailboxes", &[1000, 10_000, 100_000])?;
    let probes = opts.num("probes", Some(2000))?.max(1) as usize;
    let reps = opts.num("reps", Some(3))?.max(1);
    let mut con = connect(port)?;
    let body = payload();
    let mut rng = Lcg(0x5eed);

    // One mailbox of growing size.
    flushall(&mut con)?;
    let mut held = 0;
    for size in sizes {
        progress(&format!("scale: one mailbox of {size} messages"));
        fill(&mut con, held, size, |p, _| {
            p.cmd("MAILBOX.SEND").arg("scale:big").arg(&body).ignore();
        })?;
        held = held.max(size);
        for _ in 0..reps {
            resetstat(&mut con)?;
            probe(&mut con, &body, |_| "scale:big".to_string(), probes)?;
            for command in ["send", "read", "ack"] {
                emit(
                    &format!("scale.size.{command}.{size}"),
                    usec_per_call(&mut con, &format!("mailbox.{command}"))?,
                );
            }
        }
    }

    // Many mailboxes of one message each; `create` is the first send to a new mailbox.
    flushall(&mut con)?;
    let mut made = 0;
    for count in counts {
        progress(&format!("scale: {count} mailboxes"));
        resetstat(&mut con)?;
        fill(&mut con, made, count, |p, i| {
            p.cmd("MAILBOX.SEND").arg(format!("scale:mb:{i}")).arg(&body).ignore();
        })?;
        if count > made {
            emit(&format!("scale.mailboxes.create.{count}"), usec_per_call(&mut con, "mailbox.send")?);
        }
        made = made.max(count);
        for _ in 0..reps {
            resetstat(&mut con)?;
            probe(&mut con, &body, |_| format!("scale:mb:{}", rng.below(made)), probes)?;
            for command in ["send", "read", "ack"] {
                emit(
                    &format!("scale.mailboxes.{command}.{count}"),
                    usec_per_call(&mut con, &format!("mailbox.{command}"))?,
                );
            }
        }
    }
    flushall(&mut con)?;
    Ok(())
}

/// `count` rounds of SEND, READ COUNT 1 and ACK of what was read, on the mailbox `pick` names,
/// `PROBE_BATCH` per round trip.
fn probe(con: &mut Connection, body: &[u8], mut pick: impl FnMut(usize) -> String, count: usize) -> Res<()> {
    let mut done = 0;
    while done < count {
        let n = PROBE_BATCH.min(count - done);
        let names: Vec<String> = (0..n).map(&mut pick).collect();
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("MAILBOX.SEND").arg(name).arg(body).ignore();
        }
        pipe.query::<()>(con)?;
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("MAILBOX.READ").arg(name).arg("COUNT").arg(1);
        }
        let reads: Vec<Value> = pipe.query(con)?;
        let mut pipe = redis::pipe();
        for (name, reply) in names.iter().zip(&reads) {
            let ids = entry_ids(reply);
            if ids.is_empty() {
                return Err(format!("probe: nothing to read in {name}").into());
            }
            pipe.cmd("MAILBOX.ACK").arg(name).arg(&ids).ignore();
        }
        pipe.query::<()>(con)?;
        done += n;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// report: the table, docs/bench/latest.md, the charts

struct Results {
    nums: BTreeMap<String, Vec<f64>>,
    text: BTreeMap<String, String>,
}

impl Results {
    fn load(path: &str) -> Res<Results> {
        let body = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut nums: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut text = BTreeMap::new();
        for line in body.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let value = value.trim();
            match value.parse::<f64>() {
                Ok(v) if !key.starts_with("info.") => nums.entry(key.to_string()).or_default().push(v),
                _ => {
                    text.insert(key.to_string(), value.to_string());
                }
            }
        }
        Ok(Results { nums, text })
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.nums.get(key).map(|v| median(v)).filter(|v| v.is_finite())
    }

    /// An info value that is a count, with thousands separators.
    fn info_count(&self, key: &str) -> String {
        let v = self.info(key);
        v.parse().map_or(v, count)
    }

    fn info(&self, key: &str) -> String {
        self.text.get(&format!("info.{key}")).cloned().unwrap_or_else(|| "?".to_string())
    }
}

#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met(self, v: f64) -> bool {
        match self {
            Goal::AtLeast(t) => v >= t,
            Goal::AtMost(t) => v <= t,
        }
    }

    fn value(self) -> f64 {
        match self {
            Goal::AtLeast(t) | Goal::AtMost(t) => t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Goal::AtLeast(t) => format!("≥ {}{unit}", num(t)),
            Goal::AtMost(t) => format!("≤ {}{unit}", num(t)),
        }
    }
}

struct Row {
    what: String,
    /// Short label for the chart; rows without one are not charted.
    label: Option<String>,
    module: String,
    base: String,
    ratio: Option<f64>,
    target: String,
    goal: Option<Goal>,
    met: Option<bool>,
}

/// A number with a sensible count of digits and thousands separators.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, int) = int.strip_prefix('-').map_or(("", int), |i| ("-", i));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn with_unit(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{} {unit}", num(v)))
}

fn rows(r: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    // `goal` is `None` for a row shown for reference only.
    let mut compare = |what: String, label: &str, m: &str, b: &str, unit: &str, goal: Option<Goal>| {
        let (mv, bv) = (r.get(m), r.get(b));
        let ratio = match (mv, bv) {
            (Some(m), Some(b)) if b != 0.0 => Some(m / b),
            _ => None,
        };
        rows.push(Row {
            what,
            label: Some(label.to_string()),
            module: with_unit(mv, unit),
            base: with_unit(bv, unit),
            ratio,
            target: goal.map_or_else(|| "— (reference)".to_string(), |g| g.text("×")),
            goal,
            met: goal.and_then(|g| ratio.map(|x| g.met(x))),
        });
    };
    // The throughput targets are set at pipeline 16; pipeline 1, where every call is a
    // round trip, is shown for reference.
    let at_p16 = |pipe: u32, goal: Goal| (pipe == 16).then_some(goal);
    let modes = [("none", "no persistence"), ("aof", "AOF everysec")];
    for (mode, mode_text) in modes {
        for pipe in [16, 1] {
            compare(
                format!("MAILBOX.SEND vs XADD throughput, pipeline {pipe}, {mode_text}"),
                &format!("SEND/XADD P{pipe} {mode}"),
                &format!("rb.send.p{pipe}.{mode}.rps"),
                &format!("rb.xadd.p{pipe}.{mode}.rps"),
                "ops/s",
                at_p16(pipe, Goal::AtLeast(0.7)),
            );
        }
    }
    for (mode, mode_text) in modes {
        for pipe in [16, 1] {
            compare(
                format!("MAILBOX.SEND vs Lua send (INCR+HSET+ZADD) throughput, pipeline {pipe}, {mode_text}"),
                &format!("SEND/Lua P{pipe} {mode}"),
                &format!("rb.send.p{pipe}.{mode}.rps"),
                &format!("rb.lua.p{pipe}.{mode}.rps"),
                "ops/s",
                at_p16(pipe, Goal::AtLeast(4.0)),
            );
        }
    }
    for (mode, mode_text) in modes {
        compare(
            format!("server time per call (usec_per_call), SEND vs XADD, pipeline 16, {mode_text}"),
            &format!("usec/call SEND/XADD {mode}"),
            &format!("usec.send.p16.{mode}"),
            &format!("usec.xadd.p16.{mode}"),
            "µs",
            Some(Goal::AtMost(1.5)),
        );
    }
    compare(
        "read + ack cycle: READ COUNT 16 + ACK vs XREADGROUP COUNT 16 + XACK".to_string(),
        "read+ack cycle",
        "cycle.mod.msgs_per_s",
        "cycle.base.msgs_per_s",
        "msg/s",
        Some(Goal::AtLeast(0.7)),
    );
    let n = r.info_count("messages");
    compare(
        format!("memory per stored message ({n} messages, used_memory) vs one XADD entry"),
        "memory/message",
        "mem.mod.bytes_per_msg",
        "mem.base.bytes_per_msg",
        "B",
        Some(Goal::AtMost(1.25)),
    );
    for p in ["p50", "p99"] {
        compare(
            format!("send → blocked MAILBOX.READ wake-up, {p}, vs XADD → XREAD BLOCK"),
            &format!("wake-up {p}"),
            &format!("wake.mod.{p}_us"),
            &format!("wake.base.{p}_us"),
            "µs",
            Some(Goal::AtMost(1.1)),
        );
    }
    compare(
        format!("DEBUG RELOAD time, {n} messages, vs the same data as a stream"),
        "DEBUG RELOAD",
        "reload.mod.ms",
        "reload.base.ms",
        "ms",
        Some(Goal::AtMost(1.0)),
    );
    compare(
        format!("restart from the AOF (RDB preamble), {n} messages, vs the same data as a stream"),
        "AOF restart",
        "aof_restart.mod.ms",
        "aof_restart.base.ms",
        "ms",
        Some(Goal::AtMost(1.0)),
    );

    // Topics: no baseline; "flat per receiver" = the per-receiver time at the most subscribers
    // within 1.5x of the one at 100; memory per extra receiver from the fewest to the most.
    let levels = levels_of(r, "topic.", ".usec_per_receiver");
    let time_at = |l: u64| r.get(&format!("topic.{l}.usec_per_receiver"));
    let mem_at = |l: u64| r.get(&format!("topic.{l}.bytes_per_receiver"));
    let reference = levels.iter().copied().find(|&l| l >= 100).or(levels.first().copied());
    for &l in &levels {
        let flat = (Some(l) != reference && reference.is_some_and(|rf| l > rf))
            .then(|| Some(time_at(l)? / time_at(reference?)?))
            .flatten();
        let goal = Goal::AtMost(1.5);
        rows.push(Row {
            what: format!(
                "topic publish to {}: server time per receiver{}",
                subscribers(l),
                if flat.is_some() {
                    format!(" (ratio: ÷ the figure at {})", count(reference.unwrap_or(0)))
                } else {
                    String::new()
                }
            ),
            label: flat.map(|_| format!("publish/receiver {}÷{}", l, reference.unwrap_or(0))),
            module: with_unit(time_at(l), "µs"),
            base: "—".to_string(),
            ratio: flat,
            target: if flat.is_some() { "flat: ≤ 1.5×".to_string() } else { "—".to_string() },
            goal: flat.map(|_| goal),
            met: flat.map(|x| goal.met(x)),
        });
    }
    for &l in &levels {
        rows.push(Row {
            what: format!("topic publish to {}: memory per receiver", subscribers(l)),
            label: None,
            module: with_unit(mem_at(l), "B"),
            base: "—".to_string(),
            ratio: None,
            target: "—".to_string(),
            goal: None,
            met: None,
        });
    }
    if let (Some(&lo), Some(&hi)) = (levels.first(), levels.last()) {
        let per_publish = |l: u64| r.get(&format!("topic.{l}.bytes_per_publish"));
        let extra = match (per_publish(lo), per_publish(hi)) {
            (Some(a), Some(b)) if hi > lo => Some((b - a) / (hi - lo) as f64),
            _ => None,
        };
        rows.push(Row {
            what: format!(
                "topic publish: memory per extra receiver ({} → {} subscribers, {} publishes)",
                count(lo),
                count(hi),
                r.info("publishes")
            ),
            label: None,
            module: with_unit(extra, "B"),
            base: "—".to_string(),
            ratio: None,
            target: "≤ 64 B".to_string(),
            goal: None,
            met: extra.map(|x| x <= 64.0),
        });
    }

    // Scale: usec per call from the smallest to the largest n; O(log n) over a 1000-fold growth
    // is 2x; allow 3x for cache effects (O(sqrt n) would be ~32x, O(n) ~1000x).
    let goal = Goal::AtMost(3.0);
    let curves = [
        ("size", "send", "MAILBOX.SEND", "messages in one mailbox"),
        ("size", "read", "MAILBOX.READ COUNT 1", "messages in one mailbox"),
        ("size", "ack", "MAILBOX.ACK", "messages in one mailbox"),
        ("mailboxes", "create", "MAILBOX.SEND to a new mailbox", "mailboxes"),
        ("mailboxes", "send", "MAILBOX.SEND", "mailboxes"),
        ("mailboxes", "read", "MAILBOX.READ COUNT 1", "mailboxes"),
        ("mailboxes", "ack", "MAILBOX.ACK", "mailboxes"),
        ("subs", "sub", "MAILBOX.SUB", "subscribers on one topic"),
    ];
    for (dim, command, name, over) in curves {
        let prefix = format!("scale.{dim}.{command}.");
        let ls = curve_levels(r, &prefix, "");
        let (Some(&lo), Some(&hi)) = (ls.first(), ls.last()) else { continue };
        let (a, b) = (r.get(&format!("{prefix}{lo}")), r.get(&format!("{prefix}{hi}")));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a > 0.0 && hi > lo => Some(b / a),
            _ => None,
        };
        rows.push(Row {
            what: format!(
                "scale: {name} server time, {} → {} {over} (ratio: ÷ the smallest)",
                count(lo),
                count(hi)
            ),
            label: Some(format!("scale {command} {}→{}", short(lo), short(hi))),
            module: format!("{} → {}", with_unit(a, "µs"), with_unit(b, "µs")),
            base: "—".to_string(),
            ratio,
            target: "≤ 3× (O(log n))".to_string(),
            goal: Some(goal),
            met: ratio.map(|x| goal.met(x)),
        });
    }
    rows
}

/// An integer with thousands separators.
fn count(n: u64) -> String {
    if n < 100 {
        n.to_string()
    } else {
        num(n as f64)
    }
}

/// "1 subscriber", "10,000 subscribers".
fn subscribers(n: u64) -> String {
    if n == 1 {
        "1 subscriber".to_string()
    } else {
        format!("{} subscribers", count(n))
    }
}

/// 1000 -> "1k", 1000000 -> "1M".
fn short(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// The points of a curve: the levels of `levels_of` from 100 on (the first subscriber is one
/// call, not a measurement), or all of them when none is that large.
fn curve_levels(r: &Results, prefix: &str, suffix: &str) -> Vec<u64> {
    let all = levels_of(r, prefix, suffix);
    let big: Vec<u64> = all.iter().copied().filter(|&l| l >= 100).collect();
    if big.is_empty() {
        all
    } else {
        big
    }
}

/// The numeric middles of keys `prefix<n>suffix`, sorted.
fn levels_of(r: &Results, prefix: &str, suffix: &str) -> Vec<u64> {
    let mut v: Vec<u64> =
        r.nums.keys().filter_map(|k| k.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str("| what | module | baseline | ratio | target | met |\n");
    s.push_str("| --- | ---: | ---: | ---: | --- | --- |\n");
    for row in rows {
        let ratio = row.ratio.map_or_else(|| "—".to_string(), |x| format!("{x:.2}×"));
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            row.what, row.module, row.base, ratio, row.target, met
        );
    }
    s
}

fn report(opts: &Opts) -> Res<()> {
    let r = Results::load(opts.str("results")?)?;
    let rows = rows(&r);
    let table = table(&rows);
    println!("{table}");
    let met = rows.iter().filter(|x| x.met == Some(true)).count();
    let missed: Vec<&str> = rows.iter().filter(|x| x.met == Some(false)).map(|x| x.what.as_str()).collect();
    println!("targets met: {met} of {}", met + missed.len());
    for m in &missed {
        println!("  not met: {m}");
    }
    if let Some(path) = opts.0.get("md") {
        std::fs::write(path, markdown(&r, &table, met, &missed))?;
        eprintln!("wrote {path}");
    }
    if let Some(path) = opts.0.get("svg") {
        std::fs::write(path, ratio_svg(&rows, &r))?;
        eprintln!("wrote {path}");
    }
    if let Some(path) = opts.0.get("scale-svg") {
        std::fs::write(path, scale_svg(&r))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

fn markdown(r: &Results, table: &str, met: usize, missed: &[&str]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# redis-mailbox benchmarks\n");
    let _ = writeln!(
        s,
        "Produced by `{}` on {}. Ratios are module ÷ baseline, both measured in the same run on the \
         same machine; the baseline is plain Redis (no module loaded) doing the nearest thing. \
         Benchmarks, not tests: nothing in CI asserts a timing.\n",
        r.info("command"),
        r.info("date")
    );
    let _ = writeln!(s, "## Machine\n");
    for (k, label) in [
        ("cpu", "CPU"),
        ("nproc", "cores (nproc)"),
        ("pinning", "pinning"),
        ("redis", "redis-server"),
        ("kernel", "kernel"),
        ("load_start", "load average at start"),
        ("load_end", "load average at end"),
        ("mode", "mode"),
    ] {
        let _ = writeln!(s, "- {label}: {}", r.info(k));
    }
    let _ = writeln!(
        s,
        "- counts: {} messages for memory, reload and the read + ack cycle; redis-benchmark \
         -n {} (pipeline 16) / {} (pipeline 1), -c 50, -r 1000 keys, {} repetitions (median); \
         {} wake-up samples per side\n",
        r.info_count("messages"),
        r.info_count("rb_n16"),
        r.info_count("rb_n1"),
        r.info("reps"),
        r.info_count("samples")
    );
    let _ = writeln!(s, "## Results\n");
    s.push_str(table);
    let _ = writeln!(s, "\nTargets met: {met} of {}.", met + missed.len());
    if !missed.is_empty() {
        let _ = writeln!(s, "Not met yet:\n");
        for m in missed {
            let _ = writeln!(s, "- {m}");
        }
    }
    let _ = writeln!(s, "\n![ratios](latest.svg)\n\n![scale](scale.svg)\n");
    let _ = writeln!(s, "## Scale curves (server µs per call, INFO commandstats)\n");
    for (dim, over, commands) in [
        ("size", "messages in one mailbox", &["send", "read", "ack"][..]),
        ("mailboxes", "mailboxes", &["create", "send", "read", "ack"][..]),
        ("subs", "subscribers on one topic", &["sub"][..]),
    ] {
        let levels = levels_of(r, &format!("scale.{dim}.{}.", commands[0]), "");
        if levels.is_empty() {
            continue;
        }
        let _ = write!(s, "| {over} |");
        for c in commands {
            let _ = write!(s, " {c} |");
        }
        let _ = write!(s, "\n| ---: |");
        for _ in commands {
            s.push_str(" ---: |");
        }
        s.push('\n');
        for l in levels {
            let _ = write!(s, "| {} |", count(l));
            for c in commands {
                let _ = write!(s, " {} |", with_unit(r.get(&format!("scale.{dim}.{c}.{l}")), "µs"));
            }
            s.push('\n');
        }
        s.push('\n');
    }
    let levels = levels_of(r, "topic.", ".usec_per_receiver");
    if !levels.is_empty() {
        let _ = writeln!(s, "| topic subscribers | µs per publish | µs per receiver | bytes per publish | bytes per receiver |");
        let _ = writeln!(s, "| ---: | ---: | ---: | ---: | ---: |");
        for l in levels {
            let g = |f: &str| r.get(&format!("topic.{l}.{f}"));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                count(l),
                with_unit(g("usec_per_publish"), "µs"),
                with_unit(g("usec_per_receiver"), "µs"),
                with_unit(g("bytes_per_publish"), "B"),
                with_unit(g("bytes_per_receiver"), "B"),
            );
        }
        s.push('\n');
    }
    let _ = writeln!(s, "## What is measured\n");
    s.push_str(
        "- **Throughput**: redis-benchmark, 50 clients, random keys among 1000 (`mb:__rand_int__`), \
         256-byte payload. Module: `MAILBOX.SEND key payload`. XADD: `XADD key * from default to key ts \
         <ms> priority 0 payload <256 B>`. Lua: the script in `scripts/bench`, run via `EVALSHA` (INCR for the \
         sequence, HSET of the message hash with the same fields, ZADD to a priority/sequence sorted \
         set). AOF runs: `appendonly yes`, `appendfsync everysec`.\n\
         - **Server time per call**: `usec / calls` of `INFO commandstats` over the pipeline-16 run.\n\
         - **Read + ack cycle**: 4 consumers drain the stored messages; each round trip pipelines the \
         ack of the previous 16 with the next read of 16.\n\
         - **Memory**: `used_memory` after storing N messages in one mailbox / one stream, minus \
         before, ÷ N.\n\
         - **Wake-up**: a reader blocks (`BLOCK 0`); once `INFO clients` shows it blocked, another \
         connection sends; time from before the send to the reader holding its reply. Each reader makes \
         one round trip per sample: the module reader leases (`MAILBOX.READ` without `NOACK`) and acks \
         its messages once the block of samples is taken.\n\
         - **DEBUG RELOAD**: wall time of `DEBUG RELOAD` (save, free, load) with the N messages held.\n\
         - **AOF restart**: the N messages held (sent by redis-benchmark to one key), `appendonly yes` \
         with `aof-use-rdb-preamble yes` (the rewrite writes them as an RDB preamble), the server stopped \
         and started again on its files: time from the start until it answers `PING` (polled every 10 ms).\n\
         - **Topics**: subscribers are mailboxes subscribed to one topic; `usec_per_call` of \
         `MAILBOX.PUBLISH` ÷ receivers, and `used_memory` growth ÷ (publishes × receivers); the quick and \
         the full run both publish 100 times, since each receiver's first message also pays for its \
         mailbox's queue and index, a fixed cost spread over the publishes.\n\
         - **Scale**: `usec_per_call` of SEND, READ COUNT 1 and ACK probes (2000 of each, 3 times, median) once a \
         mailbox holds n messages / once there are n mailboxes.\n",
    );
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Horizontal bars of the ratios, on a log axis, with each row's target as a tick and 1× marked.
fn ratio_svg(rows: &[Row], r: &Results) -> String {
    let charted: Vec<&Row> = rows.iter().filter(|x| x.label.is_some() && x.ratio.is_some()).collect();
    let (label_w, plot_w, bar_h, gap, top) = (230.0, 520.0, 16.0, 6.0, 56.0);
    let width = label_w + plot_w + 150.0;
    let height = top + charted.len() as f64 * (bar_h + gap) + 50.0;
    let values = charted.iter().flat_map(|x| [x.ratio.unwrap_or(1.0), x.goal.map_or(1.0, Goal::value)]);
    let (mut lo, mut hi) = (0.1f64, 10.0f64);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v / 1.5);
        hi = hi.max(v * 1.5);
    }
    let (llo, lhi) = (lo.log10().floor(), hi.log10().ceil());
    let x = |v: f64| label_w + (v.max(10f64.powf(llo)).log10() - llo) / (lhi - llo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="10" y="20" font-size="15" font-weight="bold">redis-mailbox ÷ baseline (same run; log scale)</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#555">{} — {} — {}; bar: ratio, black tick: target; green met, red not met</text>"##,
        esc(&r.info("mode")),
        esc(&r.info("cpu")),
        esc(&r.info("date"))
    );
    let plot_bottom = top + charted.len() as f64 * (bar_h + gap);
    let mut decade = llo;
    while decade <= lhi {
        for m in [1.0, 2.0, 5.0] {
            let v = 10f64.powf(decade) * m;
            if v > 10f64.powf(lhi) * 1.0001 {
                break;
            }
            let xv = x(v);
            let stroke = if (v - 1.0).abs() < 1e-9 { "#333" } else { "#ddd" };
            let _ = writeln!(
                s,
                r##"<line x1="{xv:.1}" y1="{}" x2="{xv:.1}" y2="{plot_bottom}" stroke="{stroke}"/>"##,
                top - 4.0
            );
            let _ = writeln!(
                s,
                r##"<text x="{xv:.1}" y="{}" text-anchor="middle" fill="#555">{}×</text>"##,
                plot_bottom + 16.0,
                trim_num(v)
            );
        }
        decade += 1.0;
    }
    for (i, row) in charted.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let ratio = row.ratio.unwrap_or(f64::NAN);
        let color = match row.met {
            Some(true) => "#4caf50",
            Some(false) => "#e53935",
            None => "#9e9e9e",
        };
        let (x1, x2) = (x(1.0).min(x(ratio)), x(1.0).max(x(ratio)));
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>"##,
            label_w - 8.0,
            y + bar_h - 4.0,
            esc(row.label.as_deref().unwrap_or(""))
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x1:.1}" y="{y:.1}" width="{:.1}" height="{bar_h}" fill="{color}"/>"##,
            (x2 - x1).max(1.0)
        );
        if let Some(goal) = row.goal {
            let tx = x(goal.value());
            let _ = writeln!(
                s,
                r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="black" stroke-width="3"/>"##,
                y - 2.0,
                y + bar_h + 2.0
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}">{:.2}× ({})</text>"##,
            label_w + plot_w + 8.0,
            y + bar_h - 4.0,
            ratio,
            esc(&row.goal.map_or_else(String::new, |g| g.text("×")))
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A round tick step (1, 2, 2.5 or 5 times a power of ten) and how many steps reach past `max`.
fn nice_ticks(max: f64) -> (f64, u32) {
    let max = if max > 0.0 && max.is_finite() { max } else { 1.0 };
    let raw = max / 4.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * pow).find(|s| *s >= raw).unwrap_or(10.0 * pow);
    (step, (max / step).floor() as u32 + 1)
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Line charts of the scale curves: server µs per call against n (log axis), one panel per
/// dimension.
fn scale_svg(r: &Results) -> String {
    let panels: [(&str, &str, &[&str]); 3] = [
        ("size", "messages in one mailbox", &["send", "read", "ack"]),
        ("mailboxes", "mailboxes", &["create", "send", "read", "ack"]),
        ("subs", "subscribers on one topic", &["sub", "publish per receiver"]),
    ];
    let colors = ["#1e88e5", "#43a047", "#e53935", "#8e24aa"];
    let (pw, ph, ml, mt, gap) = (300.0, 220.0, 50.0, 72.0, 70.0);
    let width = ml + panels.len() as f64 * (pw + gap);
    let height = mt + ph + 90.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="10" y="20" font-size="15" font-weight="bold">redis-mailbox: server µs per call as n grows (INFO commandstats)</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#555">{} — {}</text>"##,
        esc(&r.info("mode")),
        esc(&r.info("date"))
    );
    for (p, (dim, title, commands)) in panels.iter().enumerate() {
        let left = ml + p as f64 * (pw + gap);
        let series: Vec<(String, Vec<(u64, f64)>)> = commands
            .iter()
            .map(|c| {
                let points: Vec<(u64, f64)> = if *c == "publish per receiver" {
                    curve_levels(r, "topic.", ".usec_per_receiver")
                        .into_iter()
                        .filter_map(|l| Some((l, r.get(&format!("topic.{l}.usec_per_receiver"))?)))
                        .collect()
                } else {
                    let prefix = format!("scale.{dim}.{c}.");
                    curve_levels(r, &prefix, "")
                        .into_iter()
                        .filter_map(|l| Some((l, r.get(&format!("{prefix}{l}"))?)))
                        .collect()
                };
                (c.to_string(), points)
            })
            .filter(|(_, pts)| !pts.is_empty())
            .collect();
        let all: Vec<(u64, f64)> = series.iter().flat_map(|(_, p)| p.iter().copied()).collect();
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"##,
            left + pw / 2.0,
            mt - 8.0,
            esc(title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{left:.1}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        if all.is_empty() {
            continue;
        }
        let nmin = all.iter().map(|p| p.0).min().unwrap_or(1).max(1) as f64;
        let nmax = all.iter().map(|p| p.0).max().unwrap_or(10).max(2) as f64;
        let (lx0, lx1) = (nmin.log10().floor(), nmax.log10().ceil().max(nmin.log10().floor() + 1.0));
        let (step, ticks) = nice_ticks(all.iter().map(|p| p.1).fold(0.0f64, f64::max));
        let ymax = step * ticks as f64;
        let px = |n: f64| left + (n.log10() - lx0) / (lx1 - lx0) * pw;
        let py = |v: f64| mt + ph - v / ymax * ph;
        let mut d = lx0;
        while d <= lx1 {
            let xv = px(10f64.powf(d));
            let _ = writeln!(
                s,
                r##"<line x1="{xv:.1}" y1="{mt}" x2="{xv:.1}" y2="{}" stroke="#eee"/><text x="{xv:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                mt + ph,
                mt + ph + 15.0,
                short(10f64.powf(d).round() as u64)
            );
            d += 1.0;
        }
        for k in 0..=ticks {
            let v = step * k as f64;
            let yv = py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{left:.1}" y1="{yv:.1}" x2="{:.1}" y2="{yv:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                left + pw,
                left - 4.0,
                yv + 4.0,
                trim_num((v * 100.0).round() / 100.0)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#555">n (log)   ·   y: µs per call</text>"##,
            left + pw / 2.0,
            mt + ph + 32.0
        );
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            let path: Vec<String> =
                pts.iter().map(|(n, v)| format!("{:.1},{:.1}", px(*n as f64), py(*v))).collect();
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"##,
                path.join(" ")
            );
            for (n, v) in pts {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"##,
                    px(*n as f64),
                    py(*v)
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"##,
                left + (i % 2) as f64 * 150.0,
                mt + ph + 52.0 + (i / 2) as f64 * 16.0,
                esc(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

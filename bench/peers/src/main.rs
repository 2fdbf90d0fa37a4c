//! The benchmark client of `scripts/bench-peers`: the module beside NATS JetStream and RabbitMQ,
//! each driven by its ecosystem's own client (`redis`, `async-nats`, `lapin`), with the same
//! payloads, connections and in-flight window.
//!
//! `scripts/bench-peers` starts and restarts the servers; this program does one measurement per
//! call and prints `key value` lines on stdout (progress goes to stderr). `report` turns the
//! collected lines into the table, `docs/bench/peers.md` and `docs/bench/peers.svg`.
//!
//! ```text
//! peers-bench send    --system mod|js|rmq --name CONFIG --port P --messages N --payload BYTES
//!                     [--conns 4] [--window 64] [--pid PID] [--queue-type classic|quorum]
//! peers-bench consume --system ... --name ... --port P --messages N --payload BYTES [--conns] [--window]
//! peers-bench ready   --system ... --name ... --port P --messages N --since UNIX_NS [--conns]
//! peers-bench latency --system ... --name ... --port P --rate PER_SEC --samples S
//! peers-bench fanout  --system ... --name ... --port P --subs 1000 --publishes P --pid PID
//! peers-bench report  --results FILE [--md FILE] [--svg FILE]
//! ```
//!
//! Every system gets `--conns` queues (module: mailboxes `peers:q:<i>`; JetStream: subjects
//! `bench.q.<i>` of a work-queue stream `BENCH`, one durable pull consumer each; RabbitMQ: durable
//! queues `peers.q.<i>`), one connection each, `--window` sends or deliveries in flight on each.

mod report;

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ConnectionProperties, ExchangeKind};
use redis::aio::MultiplexedConnection;
use redis::Value;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The stream of the queue measurements (work-queue retention: an ack removes the message).
const JS_STREAM: &str = "BENCH";
/// The stream of the fan-out (interest retention: removed once every consumer acked it).
const JS_FAN_STREAM: &str = "FAN";
/// The longest one measurement may take.
const LIMIT_SECS: u64 = 1800;
/// The topic of the fan-out, in each system's syntax.
const FAN_TOPIC: &str = "bench.fan";

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((sub, rest)) = argv.split_first() else {
        eprintln!("usage: peers-bench send|consume|ready|latency|fanout|report [--option value ...]");
        std::process::exit(2);
    };
    let opts = match Opts::parse(rest) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("peers-bench: {e}");
            std::process::exit(2);
        }
    };
    let work = async {
        match sub.as_str() {
            "send" => send(&opts).await,
            "consume" => consume(&opts).await,
            "ready" => ready(&opts).await,
            "latency" => latency(&opts).await,
            "fanout" => fanout(&opts).await,
            "report" => report::run(&opts.0),
            other => Err(format!("unknown subcommand '{other}'").into()),
        }
    };
    // Every measurement is bounded in time: a broker that stops answering fails the run.
    let result = match tokio::time::timeout(Duration::from_secs(LIMIT_SECS), work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no result after {LIMIT_SECS} s").into()),
    };
    if let Err(e) = result {
        eprintln!("peers-bench {sub}: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Options, output, helpers

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
}

#[derive(Clone, Copy, PartialEq)]
enum System {
    Module,
    JetStream,
    Rabbit,
}

/// What every measurement needs: which system, on which port, the key prefix of its results.
struct Target {
    system: System,
    name: String,
    port: u16,
    conns: usize,
    window: usize,
    quorum: bool,
}

impl Target {
    fn from(opts: &Opts) -> Res<Target> {
        let system = match opts.str("system")? {
            "mod" => System::Module,
            "js" => System::JetStream,
            "rmq" => System::Rabbit,
            other => return Err(format!("--system: '{other}' is not mod, js or rmq").into()),
        };
        Ok(Target {
            system,
            name: opts.str("name")?.to_string(),
            port: u16::try_from(opts.num("port", None)?)?,
            conns: opts.num("conns", Some(4))?.max(1) as usize,
            window: opts.num("window", Some(64))?.max(1) as usize,
            quorum: opts.0.get("queue-type").map(String::as_str) == Some("quorum"),
        })
    }

    fn emit(&self, key: &str, value: f64) {
        println!("{}.{key} {value:.4}", self.name);
    }
}

fn progress(msg: &str) {
    eprintln!("  peers-bench: {msg}");
}

fn unix_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Resident set size of a process in bytes (VmRSS of /proc/PID/status).
fn rss(pid: u64) -> Res<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .ok_or("no VmRSS")?;
    Ok(kb * 1024.0)
}

/// A payload of `size` bytes whose first 8 bytes carry `stamp` (nanoseconds, for the latency).
fn payload(size: usize, stamp: u64) -> Vec<u8> {
    let mut p = vec![b'x'; size.max(8)];
    p[..8].copy_from_slice(&stamp.to_le_bytes());
    p
}

fn stamp_of(body: &[u8]) -> Option<u64> {
    body.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

// --- the module ----------------------------------------------------------------------------------

async fn redis_con(port: u16) -> Res<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    Ok(client.get_multiplexed_async_connection().await?)
}

fn mailbox(i: usize) -> String {
    format!("peers:q:{i}")
}

/// `[[id, [field, value, ...]], ...]` (what `MAILBOX.READ` replies) as (id, payload) pairs.
fn read_entries(v: &Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Value::Array(entries) = v else { return Vec::new() };
    entries
        .iter()
        .filter_map(|e| {
            let Value::Array(pair) = e else { return None };
            let Some(Value::BulkString(id)) = pair.first() else { return None };
            let mut body = Vec::new();
            if let Some(Value::Array(fields)) = pair.get(1) {
                for kv in fields.chunks(2) {
                    if let [Value::BulkString(k), Value::BulkString(v)] = kv {
                        if k == b"payload" {
                            body = v.clone();
                        }
                    }
                }
            }
            Some((id.clone(), body))
        })
        .collect()
}

/// Messages ready in a mailbox (`ready` of `MAILBOX.INFO`); 0 when there is no such mailbox.
async fn mailbox_ready(con: &mut MultiplexedConnection, name: &str) -> Res<u64> {
    let reply: redis::RedisResult<Vec<Value>> = redis::cmd("MAILBOX.INFO").arg(name).query_async(con).await;
    let fields = match reply {
        Ok(f) => f,
        Err(e) if e.to_string().contains("no such mailbox") => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    for kv in fields.chunks(2) {
        if let [Value::BulkString(k), Value::Int(n)] = kv {
            if k == b"ready" {
                return Ok(*n as u64);
            }
        }
    }
    Err("MAILBOX.INFO has no ready field".into())
}

async fn redis_used_memory(con: &mut MultiplexedConnection) -> Res<f64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(con).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory".into())
}

// --- JetStream -----------------------------------------------------------------------------------

async fn nats(port: u16) -> Res<async_nats::Client> {
    Ok(async_nats::connect(format!("127.0.0.1:{port}")).await?)
}

fn js_context(client: &async_nats::Client) -> async_nats::jetstream::Context {
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(30));
    js
}

async fn js_stream(js: &async_nats::jetstream::Context) -> Res<async_nats::jetstream::stream::Stream> {
    use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
    Ok(js
        .get_or_create_stream(Config {
            name: JS_STREAM.to_string(),
            subjects: vec!["bench.q.*".to_string(), "bench.lat".to_string()],
            storage: StorageType::File,
            retention: RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await?)
}

async fn js_consumer(
    stream: &async_nats::jetstream::stream::Stream,
    name: &str,
    subject: &str,
) -> Res<async_nats::jetstream::consumer::Consumer<async_nats::jetstream::consumer::pull::Config>> {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    Ok(stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_string()),
                filter_subject: subject.to_string(),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 100_000,
                ..Default::default()
            },
        )
        .await?)
}

// --- RabbitMQ ------------------------------------------------------------------------------------

async fn amqp(port: u16) -> Res<lapin::Connection> {
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Ok(lapin::Connection::connect(&format!("amqp://guest:guest@127.0.0.1:{port}/%2f"), props).await?)
}

fn rmq_queue(i: usize) -> String {
    format!("peers.q.{i}")
}

fn queue_args(quorum: bool) -> FieldTable {
    let mut args = FieldTable::default();
    if quorum {
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    }
    args
}

async fn declare(ch: &Channel, name: &str, quorum: bool) -> Res<u32> {
    let q = ch
        .queue_declare(name, QueueDeclareOptions { durable: true, ..Default::default() }, queue_args(quorum))
        .await?;
    Ok(q.message_count())
}

/// A persistent message (delivery mode 2).
fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn confirmed(ch: &Channel, exchange: &str, key: &str, body: &[u8]) -> Res<()> {
    let confirm =
        ch.basic_publish(exchange, key, BasicPublishOptions::default(), body, persistent()).await?.await?;
    if !confirm.is_ack() {
        return Err("RabbitMQ nacked a publish".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// send: durable send throughput; memory per stored message

/// Sends `n` messages to queue `q` on one connection, `window` of them waiting for their ack.
async fn send_queue(t: &Target, q: usize, n: u64, size: usize) -> Res<()> {
    let body = Bytes::from(payload(size, 0));
    let window = t.window;
    match t.system {
        System::Module => {
            let con = redis_con(t.port).await?;
            let name = mailbox(q);
            futures::stream::iter(0..n)
                .map(|_| {
                    let (mut con, name, body) = (con.clone(), name.clone(), body.clone());
                    async move {
                        let _: Value = redis::cmd("MAILBOX.SEND")
                            .arg(&name)
                            .arg(&body[..])
                            .query_async(&mut con)
                            .await?;
                        Ok::<(), Box<dyn Error + Send + Sync>>(())
                    }
                })
                .buffer_unordered(window)
                .try_collect::<()>()
                .await
        }
        System::JetStream => {
            let client = nats(t.port).await?;
            let js = js_context(&client);
            let subject = format!("bench.q.{q}");
            futures::stream::iter(0..n)
                .map(|_| {
                    let (js, subject, body) = (js.clone(), subject.clone(), body.clone());
                    async move {
                        js.publish(subject, body).await?.await?;
                        Ok::<(), Box<dyn Error + Send + Sync>>(())
                    }
                })
                .buffer_unordered(window)
                .try_collect::<()>()
                .await
        }
        System::Rabbit => {
            let conn = amqp(t.port).await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            let name = rmq_queue(q);
            declare(&ch, &name, t.quorum).await?;
            futures::stream::iter(0..n)
                .map(|_| {
                    let (ch, name, body) = (ch.clone(), name.clone(), body.clone());
                    async move { confirmed(&ch, "", &name, &body).await }
                })
                .buffer_unordered(window)
                .try_collect::<()>()
                .await?;
            conn.close(200, "done").await?;
            Ok(())
        }
    }
}

async fn send(opts: &Opts) -> Res<()> {
    let t = Arc::new(Target::from(opts)?);
    let n = opts.num("messages", None)?;
    let size = opts.num("payload", None)? as usize;
    let pid = opts.num("pid", Some(0))?;
    if t.system == System::JetStream {
        js_stream(&js_context(&nats(t.port).await?)).await?;
    }
    let mut redis = if t.system == System::Module { Some(redis_con(t.port).await?) } else { None };
    let used_before = match redis.as_mut() {
        Some(con) => redis_used_memory(con).await?,
        None => 0.0,
    };
    let rss_before = if pid > 0 { rss(pid)? } else { 0.0 };
    progress(&format!("{}: send {n} x {size} B, {} connections x {} in flight", t.name, t.conns, t.window));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for q in 0..t.conns {
        let share = n / t.conns as u64 + u64::from((q as u64) < n % t.conns as u64);
        let t = t.clone();
        tasks.push(tokio::spawn(async move { send_queue(&t, q, share, size).await }));
    }
    for task in tasks {
        task.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    t.emit(&format!("send.{size}.msgs_per_sec"), n as f64 / secs);
    if pid > 0 {
        // Let the broker settle (flushes, GC) before reading its memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        t.emit("mem.rss_bytes_per_msg", (rss(pid)? - rss_before) / n as f64);
        if let Some(con) = redis.as_mut() {
            t.emit("mem.used_memory_bytes_per_msg", (redis_used_memory(con).await? - used_before) / n as f64);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// consume: read and ack a backlog

/// Reads and acks `n` messages from queue `q` on one connection, `window` unacked at a time.
async fn consume_queue(t: &Target, q: usize, n: u64) -> Res<()> {
    let window = t.window;
    match t.system {
        System::Module => {
            let mut con = redis_con(t.port).await?;
            let name = mailbox(q);
            let mut got = 0u64;
            let mut acks = Vec::new();
            while got < n {
                let v: Value = redis::cmd("MAILBOX.READ")
                    .arg(&name)
                    .arg("COUNT")
                    .arg(window.min((n - got) as usize))
                    .arg("BLOCK")
                    .arg(1000)
                    .query_async(&mut con)
                    .await?;
                let entries = read_entries(&v);
                if entries.is_empty() {
                    return Err(format!("{name}: no message after {got} of {n}").into());
                }
                got += entries.len() as u64;
                let mut ack = redis::cmd("MAILBOX.ACK");
                ack.arg(&name);
                for (id, _) in &entries {
                    ack.arg(&id[..]);
                }
                // The ack goes out on the same connection ahead of the next read; its reply is
                // awaited at the end.
                let mut c = con.clone();
                acks.push(tokio::spawn(async move { ack.query_async::<Value>(&mut c).await }));
            }
            for a in acks {
                a.await??;
            }
            Ok(())
        }
        System::JetStream => {
            let client = nats(t.port).await?;
            let js = js_context(&client);
            let stream = js_stream(&js).await?;
            let consumer = js_consumer(&stream, &format!("c{q}"), &format!("bench.q.{q}")).await?;
            let mut messages = consumer.stream().max_messages_per_batch(window).messages().await?;
            let mut got = 0u64;
            while got < n {
                let msg = messages.next().await.ok_or("the consumer's stream ended")??;
                msg.ack().await?;
                got += 1;
            }
            client.flush().await?;
            Ok(())
        }
        System::Rabbit => {
            let conn = amqp(t.port).await?;
            let ch = conn.create_channel().await?;
            let name = rmq_queue(q);
            declare(&ch, &name, t.quorum).await?;
            ch.basic_qos(window as u16, BasicQosOptions::default()).await?;
            let mut consumer = ch
                .basic_consume(&name, "bench", BasicConsumeOptions::default(), FieldTable::default())
                .await?;
            let mut got = 0u64;
            let half = (window as u64 / 2).max(1);
            while got < n {
                let d = consumer.next().await.ok_or("the consumer ended")??;
                got += 1;
                if got % half == 0 || got == n {
                    ch.basic_ack(d.delivery_tag, BasicAckOptions { multiple: true }).await?;
                }
            }
            ch.close(200, "done").await?;
            conn.close(200, "done").await?;
            Ok(())
        }
    }
}

async fn consume(opts: &Opts) -> Res<()> {
    let t = Arc::new(Target::from(opts)?);
    let n = opts.num("messages", None)?;
    let size = opts.num("payload", None)?;
    progress(&format!("{}: consume + ack {n} x {size} B", t.name));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for q in 0..t.conns {
        let share = n / t.conns as u64 + u64::from((q as u64) < n % t.conns as u64);
        let t = t.clone();
        tasks.push(tokio::spawn(async move { consume_queue(&t, q, share).await }));
    }
    for task in tasks {
        task.await??;
    }
    t.emit(&format!("consume.{size}.msgs_per_sec"), n as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ready: time from a (re)start to serving the stored messages

/// The messages stored in the `conns` queues, or an error while the server is not serving.
async fn stored(t: &Target) -> Res<u64> {
    match t.system {
        System::Module => {
            let mut con = redis_con(t.port).await?;
            let mut total = 0;
            for q in 0..t.conns {
                total += mailbox_ready(&mut con, &mailbox(q)).await?;
            }
            Ok(total)
        }
        System::JetStream => {
            let client = nats(t.port).await?;
            let js = js_context(&client);
            let mut stream = js.get_stream(JS_STREAM).await?;
            Ok(stream.info().await?.state.messages)
        }
        System::Rabbit => {
            let conn = amqp(t.port).await?;
            let ch = conn.create_channel().await?;
            let mut total = 0u64;
            for q in 0..t.conns {
                total += u64::from(declare(&ch, &rmq_queue(q), t.quorum).await?);
            }
            conn.close(200, "done").await?;
            Ok(total)
        }
    }
}

async fn ready(opts: &Opts) -> Res<()> {
    let t = Target::from(opts)?;
    let n = opts.num("messages", None)?;
    let since: u128 = opts.str("since")?.parse()?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stored(&t)).await {
            Ok(Ok(count)) if count >= n => break,
            _ if Instant::now() > deadline => {
                return Err(format!("{}: not serving {n} messages after 600 s", t.name).into())
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    t.emit("restart.secs", (unix_ns() - since) as f64 / 1e9);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// latency: send -> a waiting consumer, at a fixed rate

async fn latency(opts: &Opts) -> Res<()> {
    let t = Target::from(opts)?;
    let rate = opts.num("rate", Some(1000))?.max(1);
    let samples = opts.num("samples", Some(5000))? as usize;
    let size = 256;
    progress(&format!("{}: latency, {samples} sends at {rate}/s", t.name));
    let base = Instant::now();
    let now_ns = move || base.elapsed().as_nanos() as u64;
    let received = Arc::new(AtomicU64::new(0));
    let lat: Arc<std::sync::Mutex<Vec<f64>>> = Arc::new(std::sync::Mutex::new(Vec::with_capacity(samples)));
    let record = {
        let (lat, received) = (lat.clone(), received.clone());
        move |body: &[u8]| {
            if let Some(s) = stamp_of(body) {
                lat.lock().unwrap().push((now_ns().saturating_sub(s)) as f64 / 1000.0);
                received.fetch_add(1, Ordering::Relaxed);
            }
        }
    };

    // The consumer, waiting before the first send.
    let consumer: tokio::task::JoinHandle<Res<()>> = match t.system {
        System::Module => {
            let mut con = redis_con(t.port).await?;
            let acker = redis_con(t.port).await?;
            let name = "peers:lat".to_string();
            let received = received.clone();
            tokio::spawn(async move {
                while (received.load(Ordering::Relaxed) as usize) < samples {
                    let v: Value = redis::cmd("MAILBOX.READ")
                        .arg(&name)
                        .arg("COUNT")
                        .arg(64)
                        .arg("BLOCK")
                        .arg(1000)
                        .query_async(&mut con)
                        .await?;
                    let entries = read_entries(&v);
                    if entries.is_empty() {
                        continue;
                    }
                    let mut ack = redis::cmd("MAILBOX.ACK");
                    ack.arg(&name);
                    for (id, body) in &entries {
                        record(body);
                        ack.arg(&id[..]);
                    }
                    let mut a = acker.clone();
                    tokio::spawn(async move { ack.query_async::<Value>(&mut a).await });
                }
                Ok(())
            })
        }
        System::JetStream => {
            let client = nats(t.port).await?;
            let stream = js_stream(&js_context(&client)).await?;
            let consumer = js_consumer(&stream, "lat", "bench.lat").await?;
            let mut messages = consumer.stream().max_messages_per_batch(64).messages().await?;
            let received = received.clone();
            tokio::spawn(async move {
                let _client = client;
                while (received.load(Ordering::Relaxed) as usize) < samples {
                    let msg = messages.next().await.ok_or("the consumer's stream ended")??;
                    record(&msg.payload);
                    msg.ack().await?;
                }
                Ok(())
            })
        }
        System::Rabbit => {
            let conn = amqp(t.port).await?;
            let ch = conn.create_channel().await?;
            declare(&ch, "peers.lat", t.quorum).await?;
            ch.basic_qos(64, BasicQosOptions::default()).await?;
            let mut consumer = ch
                .basic_consume("peers.lat", "lat", BasicConsumeOptions::default(), FieldTable::default())
                .await?;
            let received = received.clone();
            tokio::spawn(async move {
                let _conn = conn;
                while (received.load(Ordering::Relaxed) as usize) < samples {
                    let d = consumer.next().await.ok_or("the consumer ended")??;
                    record(&d.data);
                    ch.basic_ack(d.delivery_tag, BasicAckOptions::default()).await?;
                }
                Ok(())
            })
        }
    };

    // The sender: one send every 1/rate s, each waiting for its ack without holding the next.
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut pending = futures::stream::FuturesUnordered::new();
    match t.system {
        System::Module => {
            let con = redis_con(t.port).await?;
            for _ in 0..samples {
                tick.tick().await;
                let body = payload(size, now_ns());
                let mut c = con.clone();
                pending.push(tokio::spawn(async move {
                    redis::cmd("MAILBOX.SEND")
                        .arg("peers:lat")
                        .arg(body)
                        .query_async::<Value>(&mut c)
                        .await?;
                    Ok::<(), Box<dyn Error + Send + Sync>>(())
                }));
            }
            while let Some(r) = pending.next().await {
                r??;
            }
        }
        System::JetStream => {
            let client = nats(t.port).await?;
            let js = js_context(&client);
            for _ in 0..samples {
                tick.tick().await;
                let ack = js.publish("bench.lat", Bytes::from(payload(size, now_ns()))).await?;
                pending.push(tokio::spawn(async move {
                    ack.await?;
                    Ok(())
                }));
            }
            while let Some(r) = pending.next().await {
                r??;
            }
        }
        System::Rabbit => {
            let conn = amqp(t.port).await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            for _ in 0..samples {
                tick.tick().await;
                let body = payload(size, now_ns());
                let confirm = ch
                    .basic_publish("", "peers.lat", BasicPublishOptions::default(), &body, persistent())
                    .await?;
                pending.push(tokio::spawn(async move {
                    if !confirm.await?.is_ack() {
                        return Err("RabbitMQ nacked a publish".into());
                    }
                    Ok(())
                }));
            }
            while let Some(r) = pending.next().await {
                r??;
            }
        }
    }
    tokio::time::timeout(Duration::from_secs(60), consumer)
        .await
        .map_err(|_| "the consumer fell behind")???;
    let mut v = std::mem::take(&mut *lat.lock().unwrap());
    v.sort_by(f64::total_cmp);
    for (key, p) in [("p50", 50.0), ("p99", 99.0), ("p999", 99.9)] {
        t.emit(&format!("latency.{key}_usec"), report::percentile(&v, p));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// fanout: one topic, `subs` receivers, `publishes` messages; time until every receiver acked
// every message, memory per receiver (RSS from before the subscriptions to after the publishes)

async fn fanout(opts: &Opts) -> Res<()> {
    let t = Target::from(opts)?;
    let subs = opts.num("subs", Some(1000))? as usize;
    let publishes = opts.num("publishes", Some(10))?.max(1) as usize;
    let pid = opts.num("pid", None)?;
    let size = 256;
    let body = Bytes::from(payload(size, 0));
    progress(&format!("{}: fan-out to {subs} subscribers, {publishes} publishes", t.name));
    let rss_before = rss(pid)?;
    let setup = Instant::now();
    let (publish_secs, drain_secs);
    match t.system {
        System::Module => {
            let mut con = redis_con(t.port).await?;
            let mut p = redis::pipe();
            for i in 0..subs {
                p.cmd("MAILBOX.SUB").arg(format!("peers:fan:{i}")).arg(FAN_TOPIC).ignore();
            }
            p.query_async::<()>(&mut con).await?;
            let setup_secs = setup.elapsed().as_secs_f64();
            t.emit("fan.setup_secs", setup_secs);
            let start = Instant::now();
            futures::stream::iter(0..publishes)
                .map(|_| {
                    let (mut con, body) = (con.clone(), body.clone());
                    async move {
                        let (_, n): (String, u64) = redis::cmd("MAILBOX.PUBLISH")
                            .arg(FAN_TOPIC)
                            .arg(&body[..])
                            .query_async(&mut con)
                            .await?;
                        if n as usize != subs {
                            return Err(format!("a publish reached {n} receivers, not {subs}").into());
                        }
                        Ok::<(), Box<dyn Error + Send + Sync>>(())
                    }
                })
                .buffer_unordered(t.window)
                .try_collect::<()>()
                .await?;
            publish_secs = start.elapsed().as_secs_f64();
            t.emit("fan.rss_bytes_per_receiver", (rss(pid)? - rss_before) / subs as f64);
            let drain = Instant::now();
            let cons: Vec<MultiplexedConnection> =
                futures::future::try_join_all((0..t.conns).map(|_| redis_con(t.port))).await?;
            futures::stream::iter(0..subs)
                .map(|i| {
                    let mut con = cons[i % cons.len()].clone();
                    async move {
                        let name = format!("peers:fan:{i}");
                        let mut got = 0;
                        while got < publishes {
                            let v: Value = redis::cmd("MAILBOX.READ")
                                .arg(&name)
                                .arg("COUNT")
                                .arg(publishes)
                                .query_async(&mut con)
                                .await?;
                            let entries = read_entries(&v);
                            if entries.is_empty() {
                                return Err(format!("{name}: {got} of {publishes}").into());
                            }
                            got += entries.len();
                            let mut ack = redis::cmd("MAILBOX.ACK");
                            ack.arg(&name);
                            for (id, _) in &entries {
                                ack.arg(&id[..]);
                            }
                            ack.query_async::<Value>(&mut con).await?;
                        }
                        Ok::<(), Box<dyn Error + Send + Sync>>(())
                    }
                })
                .buffer_unordered(t.window * t.conns)
                .try_collect::<()>()
                .await?;
            drain_secs = drain.elapsed().as_secs_f64();
            // Leave no fan-out state behind for the measurements after this one.
            let mut p = redis::pipe();
            for i in 0..subs {
                p.cmd("DEL").arg(format!("peers:fan:{i}")).ignore();
            }
            p.query_async::<()>(&mut con).await?;
        }
        System::JetStream => {
            use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
            let client = nats(t.port).await?;
            let js = js_context(&client);
            let stream = js
                .get_or_create_stream(Config {
                    name: JS_FAN_STREAM.to_string(),
                    subjects: vec![FAN_TOPIC.to_string()],
                    storage: StorageType::File,
                    retention: RetentionPolicy::Interest,
                    ..Default::default()
                })
                .await?;
            let consumers = futures::stream::iter(0..subs)
                .map(|i| {
                    let stream = stream.clone();
                    async move { js_consumer(&stream, &format!("f{i}"), FAN_TOPIC).await }
                })
                .buffered(t.window)
                .try_collect::<Vec<_>>()
                .await?;
            t.emit("fan.setup_secs", setup.elapsed().as_secs_f64());
            let start = Instant::now();
            futures::stream::iter(0..publishes)
                .map(|_| {
                    let (js, body) = (js.clone(), body.clone());
                    async move {
                        js.publish(FAN_TOPIC, body).await?.await?;
                        Ok::<(), Box<dyn Error + Send + Sync>>(())
                    }
                })
                .buffer_unordered(t.window)
                .try_collect::<()>()
                .await?;
            publish_secs = start.elapsed().as_secs_f64();
            t.emit("fan.rss_bytes_per_receiver", (rss(pid)? - rss_before) / subs as f64);
            let drain = Instant::now();
            futures::stream::iter(consumers)
                .map(|c| async move {
                    let mut got = 0;
                    while got < publishes {
                        let mut batch = c
                            .fetch()
                            .max_messages(publishes - got)
                            .expires(Duration::from_secs(5))
                            .messages()
                            .await?;
                        let before = got;
                        while let Some(m) = batch.next().await {
                            m?.ack().await?;
                            got += 1;
                        }
                        if got == before {
                            return Err(format!("a consumer got {got} of {publishes}").into());
                        }
                    }
                    Ok::<(), Box<dyn Error + Send + Sync>>(())
                })
                .buffer_unordered(t.window * t.conns)
                .try_collect::<()>()
                .await?;
            client.flush().await?;
            drain_secs = drain.elapsed().as_secs_f64();
            js.delete_stream(JS_FAN_STREAM).await?;
        }
        System::Rabbit => {
            let conn = amqp(t.port).await?;
            let ch = conn.create_channel().await?;
            ch.exchange_declare(
                "peers.fan",
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
            futures::stream::iter(0..subs)
                .map(|i| {
                    let ch = ch.clone();
                    let quorum = t.quorum;
                    async move {
                        let q = format!("peers.fan.{i}");
                        declare(&ch, &q, quorum).await?;
                        ch.queue_bind(
                            &q,
                            "peers.fan",
                            FAN_TOPIC,
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                        Ok::<(), Box<dyn Error + Send + Sync>>(())
                    }
                })
                .buffer_unordered(t.window)
                .try_collect::<()>()
                .await?;
            t.emit("fan.setup_secs", setup.elapsed().as_secs_f64());
            let pubch = conn.create_channel().await?;
            pubch.confirm_select(ConfirmSelectOptions::default()).await?;
            let start = Instant::now();
            futures::stream::iter(0..publishes)
                .map(|_| {
                    let (ch, body) = (pubch.clone(), body.clone());
                    async move { confirmed(&ch, "peers.fan", FAN_TOPIC, &body).await }
                })
                .buffer_unordered(t.window)
                .try_collect::<()>()
                .await?;
            publish_secs = start.elapsed().as_secs_f64();
            t.emit("fan.rss_bytes_per_receiver", (rss(pid)? - rss_before) / subs as f64);
            let drain = Instant::now();
            let conns: Vec<lapin::Connection> =
                futures::future::try_join_all((0..t.conns).map(|_| amqp(t.port))).await?;
            // One channel a connection, a consumer on each of its queues (prefetch: the
            // publishes), one ack with `multiple` once the channel has every delivery.
            futures::future::try_join_all(conns.iter().enumerate().map(|(c, conn)| async move {
                let ch = conn.create_channel().await?;
                ch.basic_qos(publishes as u16, BasicQosOptions::default()).await?;
                let mut consumers = Vec::new();
                for i in (c..subs).step_by(t.conns) {
                    consumers.push(
                        ch.basic_consume(
                            &format!("peers.fan.{i}"),
                            &format!("fan{i}"),
                            BasicConsumeOptions::default(),
                            FieldTable::default(),
                        )
                        .await?,
                    );
                }
                let expect = consumers.len() * publishes;
                let mut all = futures::stream::select_all(consumers);
                let mut last = 0;
                for _ in 0..expect {
                    last = all.next().await.ok_or("the consumers ended")??.delivery_tag;
                }
                ch.basic_ack(last, BasicAckOptions { multiple: true }).await?;
                ch.close(200, "done").await?;
                Ok::<(), Box<dyn Error + Send + Sync>>(())
            }))
            .await?;
            drain_secs = drain.elapsed().as_secs_f64();
            futures::stream::iter(0..subs)
                .map(|i| {
                    let ch = ch.clone();
                    async move {
                        ch.queue_delete(&format!("peers.fan.{i}"), QueueDeleteOptions::default()).await?;
                        Ok::<(), Box<dyn Error + Send + Sync>>(())
                    }
                })
                .buffer_unordered(t.window)
                .try_collect::<()>()
                .await?;
            ch.exchange_delete("peers.fan", ExchangeDeleteOptions::default()).await?;
            for c in conns {
                c.close(200, "done").await?;
            }
            conn.close(200, "done").await?;
        }
    }
    let deliveries = (subs * publishes) as f64;
    t.emit("fan.publish_usec_per_delivery", publish_secs * 1e6 / deliveries);
    t.emit("fan.usec_per_delivery", (publish_secs + drain_secs) * 1e6 / deliveries);
    Ok(())
}

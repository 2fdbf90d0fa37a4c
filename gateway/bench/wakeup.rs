//! Send -> delivery latency: a WebSocket client of the gateway beside a client blocked in
//! `MAILBOX.READ ... BLOCK` on Redis directly.
//!
//! What is timed, the same way on both sides: from just before the sender writes `MAILBOX.SEND`
//! to the moment the reader's `read()` returned the last byte of the delivery (the whole RESP
//! reply on the direct side, the whole WebSocket frame on the gateway side), read from the clock
//! right after each `read()` of the socket, before the bytes are parsed. Both readers are plain
//! blocking sockets read on the measuring thread, so no thread hand-off is timed on either side.
//!
//! Both sides ask the module for the same work: the direct reader reads as the gateway does
//! (`COUNT 16`, leased), both ack each message after the clock stops, and both block again at
//! once (the gateway's reader does so by itself). Before each sample the harness polls
//! `INFO clients` until Redis reports both readers blocked, so that no sample starts before its
//! reader waits and none waits on a timer. The sender is the same RESP connection for both.
//! Samples alternate between the sides (direct then WebSocket, then the other way round), after a
//! warm-up of each that is not counted, so that both share the machine's noise.
//!
//!     wakeup <redis port> <gateway url> <token> <samples>
//!
//! Prints `RESULT wake.<direct|ws>.<p50|p90|p99|max> <microseconds>` lines.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use redis::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const WARMUP: usize = 50;
const DIRECT_MAILBOX: &str = "wake-direct";
const WS_MAILBOX: &str = "bench";

/// A socket that notes when a read last returned bytes: the arrival of the last byte of
/// whatever the parser on top of it has just completed.
struct Timed {
    s: TcpStream,
    last: Instant,
}

impl Timed {
    fn connect(addr: &str) -> Res<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        Ok(Timed { s, last: Instant::now() })
    }
}

impl Read for Timed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.s.read(buf)?;
        if n > 0 {
            self.last = Instant::now();
        }
        Ok(n)
    }
}

impl Write for Timed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

/// A RESP connection written and read by hand, so that a reply can be awaited apart from
/// its command.
struct Resp {
    io: Timed,
    parser: redis::Parser,
}

impl Resp {
    fn connect(port: u16) -> Res<Self> {
        Ok(Resp { io: Timed::connect(&format!("127.0.0.1:{port}"))?, parser: redis::Parser::new() })
    }

    fn write(&mut self, cmd: &redis::Cmd) -> Res<()> {
        self.io.write_all(&cmd.get_packed_command())?;
        Ok(())
    }

    /// The next reply and the time its last byte was read.
    fn reply(&mut self) -> Res<(Value, Instant)> {
        let v = self.parser.parse_value(&mut self.io)?.extract_error()?;
        Ok((v, self.io.last))
    }

    fn call(&mut self, cmd: &redis::Cmd) -> Res<Value> {
        self.write(cmd)?;
        Ok(self.reply()?.0)
    }
}

/// What each side does around one timed delivery.
trait Reader {
    /// Waits for one delivery; returns it and the time its last byte was read.
    fn wait(&mut self) -> Res<(Delivery, Instant)>;
    /// Acks the delivery (after the clock stopped) and leaves the reader blocked again.
    fn settle(&mut self, d: Delivery) -> Res<()>;
}

enum Delivery {
    Resp(Value),
    Ws(Message),
}

/// A RESP client blocked in `MAILBOX.READ` on its own connection.
struct Direct(Resp);

impl Direct {
    fn arm(&mut self) -> Res<()> {
        self.0.write(redis::cmd("MAILBOX.READ").arg(DIRECT_MAILBOX).arg("COUNT").arg(16).arg("BLOCK").arg(0))
    }
}

impl Reader for Direct {
    fn wait(&mut self) -> Res<(Delivery, Instant)> {
        let (v, at) = self.0.reply()?;
        Ok((Delivery::Resp(v), at))
    }

    fn settle(&mut self, d: Delivery) -> Res<()> {
        let Delivery::Resp(Value::Array(entries)) = d else {
            return Err("MAILBOX.READ: not an array".into());
        };
        let [Value::Array(entry)] = entries.as_slice() else {
            return Err(format!("MAILBOX.READ: {} entries, not 1", entries.len()).into());
        };
        let Some(Value::BulkString(id)) = entry.first() else {
            return Err("MAILBOX.READ: an entry without an id".into());
        };
        let acked = self.0.call(redis::cmd("MAILBOX.ACK").arg(DIRECT_MAILBOX).arg(id))?;
        if acked != Value::Int(1) {
            return Err(format!("MAILBOX.ACK: {acked:?}").into());
        }
        self.arm()
    }
}

/// A WebSocket client of the gateway on a plain blocking socket, read on this thread.
struct Ws(WebSocket<Timed>);

impl Ws {
    fn connect(url: &str, token: &str) -> Res<Self> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse()?);
        let host = request.uri().authority().ok_or("the gateway URL has no host")?.to_string();
        let (ws, _) = tungstenite::client::client(request, Timed::connect(&host)?)?;
        let mut ws = Ws(ws);
        ws.send(serde_json::json!({"op": "subscribe", "mailbox": WS_MAILBOX}))?;
        ws.expect("subscribed")?;
        Ok(ws)
    }

    fn send(&mut self, frame: serde_json::Value) -> Res<()> {
        self.0.send(Message::text(frame.to_string()))?;
        Ok(())
    }

    fn frame(&mut self) -> Res<serde_json::Value> {
        match self.0.read()? {
            Message::Text(t) => Ok(serde_json::from_str(&t)?),
            other => Err(format!("unexpected frame {other:?}").into()),
        }
    }

    fn expect(&mut self, kind: &str) -> Res<serde_json::Value> {
        let f = self.frame()?;
        if f["type"] != kind {
            return Err(format!("expected a {kind} frame, got {f}").into());
        }
        Ok(f)
    }
}

impl Reader for Ws {
    fn wait(&mut self) -> Res<(Delivery, Instant)> {
        let m = self.0.read()?;
        Ok((Delivery::Ws(m), self.0.get_ref().last))
    }

    fn settle(&mut self, d: Delivery) -> Res<()> {
        let Delivery::Ws(Message::Text(t)) = d else {
            return Err("the delivery is not a text frame".into());
        };
        let f: serde_json::Value = serde_json::from_str(&t)?;
        if f["type"] != "message" {
            return Err(format!("expected a message frame, got {f}").into());
        }
        let id = f["message"]["id"].clone();
        self.send(serde_json::json!({"op": "ack", "mailbox": WS_MAILBOX, "ids": [id]}))?;
        let acked = self.expect("acked")?;
        if acked["count"] != 1 {
            return Err(format!("ack: {acked}").into());
        }
        Ok(())
    }
}

/// Clients that Redis reports blocked (`blocked_clients` of `INFO clients`).
fn blocked(poll: &mut Resp) -> Res<u64> {
    let Value::BulkString(info) = poll.call(redis::cmd("INFO").arg("clients"))? else {
        return Err("INFO: not a bulk string".into());
    };
    let info = String::from_utf8_lossy(&info);
    let n = info
        .lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .ok_or("INFO clients has no blocked_clients")?;
    Ok(n.trim().parse()?)
}

/// Waits until both readers are blocked, sends one message to `mailbox` and times its
/// delivery to `reader`, in microseconds.
fn sample(
    sender: &mut Resp,
    poll: &mut Resp,
    reader: &mut dyn Reader,
    mailbox: &str,
    body: &str,
) -> Res<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked(poll)? < 2 {
        if Instant::now() > deadline {
            return Err("the readers never blocked".into());
        }
    }
    let sent = Instant::now();
    sender.write(redis::cmd("MAILBOX.SEND").arg(mailbox).arg(body))?;
    let (delivery, at) = reader.wait()?;
    let elapsed = at.saturating_duration_since(sent);
    sender.reply()?;
    reader.settle(delivery)?;
    Ok(elapsed.as_secs_f64() * 1e6)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, url, token, samples] = args.as_slice() else {
        return Err("usage: wakeup <redis port> <gateway url> <token> <samples>".into());
    };
    let (port, samples): (u16, usize) = (port.parse()?, samples.parse()?);
    let mut sender = Resp::connect(port)?;
    let mut poll = Resp::connect(port)?;
    let mut direct = Direct(Resp::connect(port)?);
    direct.arm()?;
    let ws_url = format!("{}/v1/ws", url.replacen("http://", "ws://", 1));
    let mut ws = Ws::connect(&ws_url, token)?;
    let body = "x".repeat(100);
    let (mut lat_direct, mut lat_ws) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..WARMUP + samples {
        for first in [i % 2 == 0, i % 2 != 0] {
            let (t, into) = if first {
                (sample(&mut sender, &mut poll, &mut direct, DIRECT_MAILBOX, &body)?, &mut lat_direct)
            } else {
                (sample(&mut sender, &mut poll, &mut ws, WS_MAILBOX, &body)?, &mut lat_ws)
            };
            if i >= WARMUP {
                into.push(t);
            }
        }
    }
    for (name, mut lat) in [("direct", lat_direct), ("ws", lat_ws)] {
        lat.sort_by(f64::total_cmp);
        for p in [50, 90, 99] {
            println!("RESULT wake.{name}.p{p} {:.0}", percentile(&lat, f64::from(p) / 100.0));
        }
        println!("RESULT wake.{name}.max {:.0}", lat[lat.len() - 1]);
    }
    Ok(())
}

//! Real-time delivery: Server-Sent Events per mailbox and a WebSocket that carries
//! several mailboxes and their acks. Both read with `MAILBOX.READ ... BLOCK ... AS
//! <agent>` on a dedicated connection, so each pushed message is leased, and nothing
//! is settled until the client acks it. When a stream goes away its unacked
//! messages are put back at once (`MAILBOX.NACK`); if the gateway itself dies, their
//! leases run out and the module makes them ready again.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, Stream};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::sync::oneshot::{self, error::TryRecvError};
use utoipa::IntoParams;

use crate::app::{require_read, valid_id, Agent, App, AppState, Path, Query};
use crate::backend::{CallError, Dedicated};
use crate::problem::ApiResult;
use crate::reply::{self, Message};
use crate::routes::mailboxes::{ack_ids, nack_ids, SendRequest};
use crate::routes::Errors;

/// What a reader task hands its stream.
enum Item {
    Message(String, Box<Message>),
    Error(String, crate::problem::ApiError),
}

/// Ids handed to a stream and not yet acked over it.
type Held = Arc<Mutex<HashSet<String>>>;

/// The sending half of a WebSocket, shared by its session (answers to the client's frames) and
/// its readers (messages), each writing and flushing its own frames at once.
#[derive(Clone)]
struct WsWriter(Arc<tokio::sync::Mutex<SplitSink<WebSocket, WsMessage>>>);

impl WsWriter {
    /// Writes one text frame; false once the socket is gone.
    async fn send(&self, text: String) -> bool {
        self.0.lock().await.send(WsMessage::Text(text.into())).await.is_ok()
    }
}

/// Where a reader hands what it reads.
enum Outlet {
    /// An SSE stream's channel, which the response body drains.
    Channel(mpsc::Sender<Item>),
    /// A WebSocket: the reader writes each frame itself, from the task that received the
    /// reply (each hop between tasks is a wake-up on the way to the client).
    Socket(WsWriter, prometheus::IntCounter),
}

impl Outlet {
    fn is_closed(&self) -> bool {
        match self {
            Outlet::Channel(tx) => tx.is_closed(),
            // A WebSocket's readers are stopped by their session (see `Subscription`).
            Outlet::Socket(..) => false,
        }
    }

    async fn closed(&self) {
        match self {
            Outlet::Channel(tx) => tx.closed().await,
            Outlet::Socket(..) => std::future::pending().await,
        }
    }

    /// Hands on one message; false once the stream is gone.
    async fn message(&self, mailbox: &str, m: Message) -> bool {
        match self {
            Outlet::Channel(tx) => tx.send(Item::Message(mailbox.to_string(), Box::new(m))).await.is_ok(),
            Outlet::Socket(w, delivered) => {
                let frame = MessageFrame { kind: "message", mailbox, message: &m };
                let Ok(text) = serde_json::to_string(&frame) else {
                    return false;
                };
                let sent = w.send(text).await;
                if sent {
                    delivered.inc();
                }
                sent
            }
        }
    }

    async fn error(&self, mailbox: &str, e: crate::problem::ApiError) {
        match self {
            Outlet::Channel(tx) => {
                let _ = tx.send(Item::Error(mailbox.to_string(), e)).await;
            }
            Outlet::Socket(w, _) => {
                let frame = json!({"type": "error", "mailbox": mailbox, "status": e.status.as_u16(), "detail": e.detail});
                let _ = w.send(frame.to_string()).await;
            }
        }
    }
}

/// A delivery as the streams write it: `{"mailbox", "message"}` in an SSE event's data, with
/// `"type": "message"` on a WebSocket. Serialised straight from the message, with no JSON
/// tree built in between.
#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type", skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    mailbox: &'a str,
    message: &'a Message,
}

/// Reads `mailbox` for `agent` until the stream goes away or `stop`'s sender is dropped, then
/// puts back whatever it handed out that was not acked.
async fn reader(
    app: AppState,
    agent: String,
    mailbox: String,
    lease_ms: Option<u64>,
    out: Outlet,
    held: Held,
    mut stop: oneshot::Receiver<()>,
) {
    let block = app.settings.stream_block;
    let mut conn: Option<Dedicated> = None;
    let stopped = |stop: &mut oneshot::Receiver<()>| !matches!(stop.try_recv(), Err(TryRecvError::Empty));
    while !out.is_closed() && !stopped(&mut stop) {
        let d = match conn.as_mut() {
            Some(d) => d,
            None => match app.backend.dedicated(&mailbox).await {
                Ok(d) => conn.insert(d),
                Err(_) => {
                    // Redis is down: wait for the circuit to close, keep the stream.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        _ = out.closed() => break,
                        _ = &mut stop => break,
                    }
                }
            },
        };
        let (client_id, node) = (d.id, d.addr.clone());
        let mut cmd = redis::cmd("MAILBOX.READ");
        cmd.arg(&mailbox).arg("COUNT").arg(16).arg("BLOCK").arg(block.as_millis() as u64);
        if let Some(l) = lease_ms {
            cmd.arg("LEASE").arg(l);
        }
        cmd.arg("AS").arg(&agent);
        let backend = app.backend.clone();
        let (result, closed) = {
            let read = backend.call_dedicated(d, &cmd, block);
            tokio::pin!(read);
            let gone = async {
                tokio::select! {
                    _ = out.closed() => {},
                    _ = &mut stop => {},
                }
            };
            tokio::select! {
                r = &mut read => (r, false),
                _ = gone => {
                    // Wake the blocked read so that it hands out nothing more, and put back
                    // whatever it got before it woke.
                    let _ = app.backend.unblock(client_id, &node).await;
                    (read.await, true)
                }
            }
        };
        match result {
            Ok(v) => {
                let msgs = match reply::messages(&v, "MAILBOX.READ") {
                    Ok(m) => m,
                    Err(e) => {
                        out.error(&mailbox, e).await;
                        break;
                    }
                };
                let mut gone = closed;
                for m in msgs {
                    if let Ok(mut h) = held.lock() {
                        h.insert(m.id.clone());
                    }
                    if gone || !out.message(&mailbox, m).await {
                        gone = true;
                    }
                }
                if gone {
                    break;
                }
            }
            Err(CallError::Unavailable(_)) => conn = None,
            Err(e) => {
                out.error(&mailbox, e.into()).await;
                break;
            }
        }
    }
    release(&app, &agent, &mailbox, &held).await;
}

async fn release(app: &App, agent: &str, mailbox: &str, held: &Held) {
    let ids: Vec<String> = held.lock().map(|mut h| h.drain().collect()).unwrap_or_default();
    for chunk in ids.chunks(500) {
        if let Err(e) = nack_ids(app, agent, mailbox, chunk, None).await {
            tracing::warn!(mailbox, error = %e.detail, "could not put back unacked stream messages");
        }
    }
}

fn event_json(mailbox: &str, m: &Message) -> String {
    serde_json::to_string(&MessageFrame { kind: "", mailbox, message: m }).unwrap_or_default()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Lease of each pushed message in milliseconds (default: the mailbox's lease).
    pub lease_ms: Option<u64>,
}

/// Counts an open stream for as long as it lives.
struct StreamGauge(prometheus::IntGauge);

impl StreamGauge {
    fn new(app: &App, kind: &str) -> Self {
        let g = app.metrics.open_streams.with_label_values(&[kind]);
        g.inc();
        StreamGauge(g)
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Server-Sent Events: each message of the mailbox as it lands (event `message`,
/// `id:` the message id, data `{"mailbox", "message"}`), leased until acked with
/// `POST /v1/mailboxes/{name}/ack`. Reconnecting with `Last-Event-ID` puts back at
/// once the messages up to that id still leased, so they come again.
#[utoipa::path(get, path = "/v1/mailboxes/{name}/events", tag = "real-time",
    params(("name" = String, Path, description = "mailbox name"), EventParams,
           ("Last-Event-ID" = Option<String>, Header, description = "the last id received on a previous stream")),
    responses((status = 200, description = "an event stream", content_type = "text/event-stream", body = String), Errors),
    security(("bearer" = [])))]
pub async fn events(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    Query(q): Query<EventParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    agent.require("read")?;
    require_read(&app, agent.name(), &name).await?;
    if let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        if valid_id(last) {
            release_leased_up_to(&app, agent.name(), &name, last).await?;
        }
    }
    let (tx, rx) = mpsc::channel::<Item>(64);
    let held: Held = Arc::default();
    // The stream keeps `_stop` and so ends the reader when it is dropped, as it does by
    // dropping the receiver.
    let (_stop, stop) = oneshot::channel::<()>();
    tokio::spawn(reader(
        app.clone(),
        agent.name().to_string(),
        name.clone(),
        q.lease_ms,
        Outlet::Channel(tx),
        held,
        stop,
    ));
    let gauge = StreamGauge::new(&app, "sse");
    let counter = app.metrics.delivered.with_label_values(&["sse"]);
    // The stream owns the reader's receiver: when the client goes, the body is
    // dropped, the receiver with it, and the reader puts back what was not acked.
    let stream = futures_util::stream::unfold((rx, gauge, _stop), move |(mut rx, gauge, keep)| {
        let counter = counter.clone();
        async move {
            let event = match rx.recv().await? {
                Item::Message(mb, m) => {
                    counter.inc();
                    Event::default().event("message").id(m.id.clone()).data(event_json(&mb, &m))
                }
                Item::Error(mb, e) => Event::default().event("error").data(
                    json!({"mailbox": mb, "status": e.status.as_u16(), "detail": e.detail}).to_string(),
                ),
            };
            Some((Ok::<_, Infallible>(event), (rx, gauge, keep)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `Last-Event-ID`: the client saw messages up to `last`; those still leased (by the
/// stream it lost) are put back so they come again now, not when their lease runs out.
async fn release_leased_up_to(app: &App, agent: &str, mailbox: &str, last: &str) -> ApiResult<()> {
    let reply = app
        .backend
        .api(redis::cmd("MAILBOX.PEEK").arg(mailbox).arg("-").arg(last).arg("AS").arg(agent))
        .await?;
    let leased: Vec<String> = reply::messages(&reply, "MAILBOX.PEEK")?
        .into_iter()
        .filter(|m| m.state.as_deref() == Some("leased"))
        .map(|m| m.id)
        .collect();
    if !leased.is_empty() {
        nack_ids(app, agent, mailbox, &leased, None).await?;
    }
    Ok(())
}

/// A frame a WebSocket client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum ClientFrame {
    Subscribe {
        mailbox: String,
        lease_ms: Option<u64>,
        #[serde(rename = "ref")]
        reference: Option<serde_json::Value>,
    },
    Unsubscribe {
        mailbox: String,
        #[serde(rename = "ref")]
        reference: Option<serde_json::Value>,
    },
    Ack {
        mailbox: String,
        ids: Vec<String>,
        #[serde(rename = "ref")]
        reference: Option<serde_json::Value>,
    },
    Nack {
        mailbox: String,
        ids: Vec<String>,
        delay_ms: Option<u64>,
        #[serde(rename = "ref")]
        reference: Option<serde_json::Value>,
    },
    Send {
        mailbox: String,
        #[serde(flatten)]
        message: Box<SendRequest>,
        #[serde(rename = "ref")]
        reference: Option<serde_json::Value>,
    },
}

/// WebSocket: send `{"op":"subscribe","mailbox":"bob"}` to receive the mailbox's
/// messages as they land (`{"type":"message","mailbox","message"}`), settle them with
/// `{"op":"ack","mailbox","ids"}` / `{"op":"nack",...}`, send with `{"op":"send",
/// "mailbox", "payload", ...}`. Each answer echoes the frame's `ref`.
#[utoipa::path(get, path = "/v1/ws", tag = "real-time",
    responses((status = 101, description = "switching to the WebSocket protocol"), Errors),
    security(("bearer" = [])))]
pub async fn ws(State(app): State<AppState>, agent: Agent, upgrade: WebSocketUpgrade) -> ApiResult<Response> {
    agent.require("read")?;
    Ok(upgrade
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| ws_session(app, agent, socket))
        .into_response())
}

struct Subscription {
    held: Held,
    /// Dropped to stop the subscription's reader.
    _stop: oneshot::Sender<()>,
}

async fn ws_session(app: AppState, agent: Agent, socket: WebSocket) {
    let _gauge = StreamGauge::new(&app, "ws");
    let delivered = app.metrics.delivered.with_label_values(&["ws"]);
    let (sink, mut frames) = socket.split();
    let writer = WsWriter(Arc::new(tokio::sync::Mutex::new(sink)));
    let mut subs: std::collections::HashMap<String, Subscription> = Default::default();
    while let Some(frame) = frames.next().await {
        let text = match frame {
            Ok(WsMessage::Text(t)) => t.to_string(),
            Ok(WsMessage::Binary(b)) => String::from_utf8_lossy(&b).into_owned(),
            Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => continue,
            Ok(WsMessage::Close(_)) | Err(_) => break,
        };
        let answered = handle_frame(&app, &agent, &text, &writer, &delivered, &mut subs).await;
        if let Some(answer) = answered {
            if !writer.send(answer.to_string()).await {
                break;
            }
        }
    }
    // Dropping every subscription stops its reader, which puts back what was not acked.
    drop(subs);
}

/// Handles one frame of the client; returns the answer to write, or None when it has
/// written it already.
async fn handle_frame(
    app: &AppState,
    agent: &Agent,
    text: &str,
    writer: &WsWriter,
    delivered: &prometheus::IntCounter,
    subs: &mut std::collections::HashMap<String, Subscription>,
) -> Option<serde_json::Value> {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => return Some(json!({"type": "error", "status": 400, "detail": format!("bad frame: {e}")})),
    };
    let fail = |e: crate::problem::ApiError, r: &Option<serde_json::Value>| json!({"type": "error", "status": e.status.as_u16(), "detail": e.detail, "ref": r});
    Some(match frame {
        ClientFrame::Subscribe { mailbox, lease_ms, reference } => {
            if let Err(e) = require_read(app, agent.name(), &mailbox).await {
                return Some(fail(e, &reference));
            }
            let answer = json!({"type": "subscribed", "mailbox": mailbox, "ref": reference});
            if subs.contains_key(&mailbox) {
                return Some(answer);
            }
            // The answer goes out before the reader starts, so that it comes before the
            // mailbox's first message. The reader writes its messages to the socket itself;
            // dropping the subscription (unsubscribing) drops `stop`'s sender, which ends it.
            if !writer.send(answer.to_string()).await {
                return None;
            }
            let held: Held = Arc::default();
            let (stop_tx, stop) = oneshot::channel::<()>();
            tokio::spawn(reader(
                app.clone(),
                agent.name().to_string(),
                mailbox.clone(),
                lease_ms,
                Outlet::Socket(writer.clone(), delivered.clone()),
                held.clone(),
                stop,
            ));
            subs.insert(mailbox, Subscription { held, _stop: stop_tx });
            return None;
        }
        ClientFrame::Unsubscribe { mailbox, reference } => {
            subs.remove(&mailbox);
            json!({"type": "unsubscribed", "mailbox": mailbox, "ref": reference})
        }
        ClientFrame::Ack { mailbox, ids, reference } => {
            match ack_ids(app, agent.name(), &mailbox, &ids).await {
                Ok(n) => {
                    if let Some(s) = subs.get(&mailbox) {
                        if let Ok(mut h) = s.held.lock() {
                            for id in &ids {
                                h.remove(id);
                            }
                        }
                    }
                    json!({"type": "acked", "mailbox": mailbox, "count": n, "ref": reference})
                }
                Err(e) => fail(e, &reference),
            }
        }
        ClientFrame::Nack { mailbox, ids, delay_ms, reference } => {
            match nack_ids(app, agent.name(), &mailbox, &ids, delay_ms).await {
                Ok(n) => {
                    if let Some(s) = subs.get(&mailbox) {
                        if let Ok(mut h) = s.held.lock() {
                            for id in &ids {
                                h.remove(id);
                            }
                        }
                    }
                    json!({"type": "nacked", "mailbox": mailbox, "count": n, "ref": reference})
                }
                Err(e) => fail(e, &reference),
            }
        }
        ClientFrame::Send { mailbox, message, reference } => {
            if let Err(e) = agent.require("send") {
                return Some(fail(e, &reference));
            }
            let payload = match message.payload() {
                Ok(p) => p,
                Err(e) => return Some(fail(e, &reference)),
            };
            let mut cmd = redis::cmd("MAILBOX.SEND");
            cmd.arg(&mailbox).arg(payload);
            if let Err(e) = message.push_options(&mut cmd) {
                return Some(fail(e, &reference));
            }
            cmd.arg("AS").arg(agent.name());
            match app.backend.api(&cmd).await {
                Ok(v) => match reply::string(&v) {
                    Some(id) if message.ephemeral != Some(true) => {
                        json!({"type": "sent", "id": id, "ref": reference})
                    }
                    _ => match reply::id_and_count(&v, "MAILBOX.SEND") {
                        Ok((id, n)) => json!({"type": "sent", "id": id, "listeners": n, "ref": reference}),
                        Err(e) => fail(e, &reference),
                    },
                },
                Err(e) => fail(e, &reference),
            }
        }
    })
}

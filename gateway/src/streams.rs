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
use futures_util::stream::Stream;
use serde::Deserialize;
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

/// Reads `mailbox` for `agent` until the stream's receiver goes away or `stop`'s sender is
/// dropped, then puts back whatever it handed out that was not acked. It hands each message
/// straight to the stream's channel (no task in between: each hop is a wake-up on the way).
async fn reader(
    app: AppState,
    agent: String,
    mailbox: String,
    lease_ms: Option<u64>,
    tx: mpsc::Sender<Item>,
    held: Held,
    mut stop: oneshot::Receiver<()>,
) {
    let block = app.settings.stream_block;
    let mut conn: Option<Dedicated> = None;
    let stopped = |stop: &mut oneshot::Receiver<()>| !matches!(stop.try_recv(), Err(TryRecvError::Empty));
    while !tx.is_closed() && !stopped(&mut stop) {
        let d = match conn.as_mut() {
            Some(d) => d,
            None => match app.backend.dedicated(&mailbox).await {
                Ok(d) => conn.insert(d),
                Err(_) => {
                    // Redis is down: wait for the circuit to close, keep the stream.
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        _ = tx.closed() => break,
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
                    _ = tx.closed() => {},
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
                        let _ = tx.send(Item::Error(mailbox.clone(), e)).await;
                        break;
                    }
                };
                let mut gone = closed;
                for m in msgs {
                    if let Ok(mut h) = held.lock() {
                        h.insert(m.id.clone());
                    }
                    if gone || tx.send(Item::Message(mailbox.clone(), Box::new(m))).await.is_err() {
                        gone = true;
                    }
                }
                if gone {
                    break;
                }
            }
            Err(CallError::Unavailable(_)) => conn = None,
            Err(e) => {
                let _ = tx.send(Item::Error(mailbox.clone(), e.into())).await;
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

fn event_json(mailbox: &str, m: &Message) -> serde_json::Value {
    json!({"mailbox": mailbox, "message": m})
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
    tokio::spawn(reader(app.clone(), agent.name().to_string(), name.clone(), q.lease_ms, tx, held, stop));
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
                    Event::default().event("message").id(m.id.clone()).data(event_json(&mb, &m).to_string())
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

async fn ws_session(app: AppState, agent: Agent, mut socket: WebSocket) {
    let _gauge = StreamGauge::new(&app, "ws");
    let counter = app.metrics.delivered.with_label_values(&["ws"]);
    let (tx, mut rx) = mpsc::channel::<Item>(64);
    let mut subs: std::collections::HashMap<String, Subscription> = Default::default();
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(WsMessage::Text(t))) => t.to_string(),
                    Some(Ok(WsMessage::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                };
                let answer = handle_frame(&app, &agent, &text, &tx, &mut subs).await;
                if socket.send(WsMessage::Text(answer.to_string().into())).await.is_err() {
                    break;
                }
            }
            Some(item) = rx.recv() => {
                let out = match item {
                    Item::Message(mb, m) => {
                        counter.inc();
                        json!({"type": "message", "mailbox": mb, "message": m})
                    }
                    Item::Error(mb, e) => json!({"type": "error", "mailbox": mb, "status": e.status.as_u16(), "detail": e.detail}),
                };
                if socket.send(WsMessage::Text(out.to_string().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping every per-mailbox sender closes the readers, which put back what was not acked.
    drop(subs);
    drop(rx);
}

async fn handle_frame(
    app: &AppState,
    agent: &Agent,
    text: &str,
    tx: &mpsc::Sender<Item>,
    subs: &mut std::collections::HashMap<String, Subscription>,
) -> serde_json::Value {
    let frame: ClientFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => return json!({"type": "error", "status": 400, "detail": format!("bad frame: {e}")}),
    };
    let fail = |e: crate::problem::ApiError, r: &Option<serde_json::Value>| json!({"type": "error", "status": e.status.as_u16(), "detail": e.detail, "ref": r});
    match frame {
        ClientFrame::Subscribe { mailbox, lease_ms, reference } => {
            if let Err(e) = require_read(app, agent.name(), &mailbox).await {
                return fail(e, &reference);
            }
            if !subs.contains_key(&mailbox) {
                // The reader hands its messages straight to the socket's channel; dropping
                // the subscription (unsubscribing) drops `stop`'s sender, which ends it.
                let held: Held = Arc::default();
                let (stop_tx, stop) = oneshot::channel::<()>();
                tokio::spawn(reader(
                    app.clone(),
                    agent.name().to_string(),
                    mailbox.clone(),
                    lease_ms,
                    tx.clone(),
                    held.clone(),
                    stop,
                ));
                subs.insert(mailbox.clone(), Subscription { held, _stop: stop_tx });
            }
            json!({"type": "subscribed", "mailbox": mailbox, "ref": reference})
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
                return fail(e, &reference);
            }
            let payload = match message.payload() {
                Ok(p) => p,
                Err(e) => return fail(e, &reference),
            };
            let mut cmd = redis::cmd("MAILBOX.SEND");
            cmd.arg(&mailbox).arg(payload);
            if let Err(e) = message.push_options(&mut cmd) {
                return fail(e, &reference);
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
    }
}

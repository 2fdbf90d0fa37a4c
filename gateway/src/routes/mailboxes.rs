//! Mailbox routes: send, read (with a bounded long-poll), ack, nack, peek, reply,
//! status, thread, info and the mailbox's topic subscriptions.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use base64::Engine;
use redis::Cmd;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Errors;
use crate::app::{check_ids, Agent, AppState, JsonBody, Path, Query};
use crate::problem::{ApiError, ApiResult};
use crate::reply::{self, Message};

/// A message to send, with every option of `MAILBOX.SEND`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The payload as text. Give this or `payload_base64`.
    pub payload: Option<String>,
    /// The payload in standard base64, for binary payloads.
    pub payload_base64: Option<String>,
    /// 0 (lowest, the default) to 9.
    #[schema(minimum = 0, maximum = 9)]
    pub priority: Option<u8>,
    /// Time to live in milliseconds.
    pub ttl_ms: Option<u64>,
    /// Deduplication key: a second send with the same key within the mailbox's window
    /// returns the first message's id and stores nothing.
    pub dedup: Option<String>,
    /// Content type of the payload.
    #[serde(rename = "type")]
    pub content_type: Option<String>,
    pub thread: Option<String>,
    pub correlation: Option<String>,
    pub reply_to: Option<String>,
    /// A JSON object carried with the message.
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// Ask for a delivery receipt in the sender's mailbox (or `reply_to`).
    pub confirm: Option<bool>,
    /// Push only (to listeners of the mailbox), store nothing.
    pub ephemeral: Option<bool>,
}

impl SendRequest {
    pub fn payload(&self) -> ApiResult<Vec<u8>> {
        match (&self.payload, &self.payload_base64) {
            (Some(p), None) => Ok(p.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| ApiError::bad_request(format!("payload_base64 is not base64: {e}"))),
            _ => Err(ApiError::bad_request("give exactly one of payload and payload_base64")),
        }
    }

    /// Appends the options, in `MAILBOX.SEND`'s words, to `cmd`.
    pub fn push_options(&self, cmd: &mut Cmd) -> ApiResult<()> {
        if let Some(p) = self.priority {
            cmd.arg("PRIORITY").arg(p);
        }
        if let Some(t) = self.ttl_ms {
            cmd.arg("TTL").arg(t);
        }
        let strings = [
            ("DEDUP", &self.dedup),
            ("TYPE", &self.content_type),
            ("THREAD", &self.thread),
            ("CORRELATION", &self.correlation),
            ("REPLYTO", &self.reply_to),
        ];
        for (name, value) in strings {
            if let Some(v) = value {
                cmd.arg(name).arg(v.as_bytes());
            }
        }
        if let Some(meta) = &self.meta {
            let text = serde_json::to_string(meta).map_err(|e| ApiError::bad_request(e.to_string()))?;
            cmd.arg("META").arg(text);
        }
        if self.confirm == Some(true) {
            cmd.arg("CONFIRM");
        }
        if self.ephemeral == Some(true) {
            cmd.arg("EPHEMERAL");
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SendResponse {
    /// The id the module stored the message under (for an ephemeral message, the id it was pushed with).
    pub id: String,
    /// Ephemeral messages only: how many listeners received it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listeners: Option<i64>,
}

/// The options of a send whose body is the raw payload (any content type but JSON).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RawSendParams {
    #[param(minimum = 0, maximum = 9)]
    pub priority: Option<u8>,
    pub ttl_ms: Option<u64>,
    pub dedup: Option<String>,
    pub thread: Option<String>,
    pub correlation: Option<String>,
    pub reply_to: Option<String>,
    /// A JSON object, as text.
    pub meta: Option<String>,
    pub confirm: Option<bool>,
    pub ephemeral: Option<bool>,
}

/// The payload and options of a send: a JSON body (`SendRequest`), or the raw payload as
/// the body, recorded with its `Content-Type`, and the options in the query string.
pub fn send_input(
    headers: &HeaderMap,
    query: RawSendParams,
    raw: &[u8],
) -> ApiResult<(Vec<u8>, SendRequest)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "give Content-Type: application/json, or the raw payload with its own content type",
            )
        })?;
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "application/json" {
        let given = [
            query.priority.is_some(),
            query.ttl_ms.is_some(),
            query.dedup.is_some(),
            query.thread.is_some(),
            query.correlation.is_some(),
            query.reply_to.is_some(),
            query.meta.is_some(),
            query.confirm.is_some(),
            query.ephemeral.is_some(),
        ];
        if given.iter().any(|g| *g) {
            return Err(ApiError::bad_request(
                "with a JSON body, give the options in the body, not the query",
            ));
        }
        let req: SendRequest = serde_json::from_slice(raw)
            .map_err(|e| ApiError::bad_request(format!("Failed to parse the JSON body: {e}")))?;
        return Ok((req.payload()?, req));
    }
    let meta = match query.meta {
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(m)) => Some(m),
            _ => return Err(ApiError::bad_request("meta must be a JSON object")),
        },
        None => None,
    };
    let req = SendRequest {
        payload: None,
        payload_base64: None,
        priority: query.priority,
        ttl_ms: query.ttl_ms,
        dedup: query.dedup,
        content_type: Some(content_type),
        thread: query.thread,
        correlation: query.correlation,
        reply_to: query.reply_to,
        meta,
        confirm: query.confirm,
        ephemeral: query.ephemeral,
    };
    Ok((raw.to_vec(), req))
}

/// The body of a send, bounded by the body limit; its rejections are problem details.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|e| ApiError::new(e.status(), e.body_text()))
}

/// Sends a message to a mailbox (`MAILBOX.SEND ... AS <agent>`): a JSON body with the
/// payload and every option, or the raw payload as the body with its content type (the
/// options then in the query string).
#[utoipa::path(post, path = "/v1/mailboxes/{name}/messages", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name, e.g. `bob` or `{team1}bob`"), RawSendParams),
    request_body(content((SendRequest = "application/json"), (String = "application/octet-stream"), (String = "text/plain"))),
    responses((status = 201, description = "stored (only when the module replied with the id)", body = SendResponse), Errors),
    security(("bearer" = [])))]
pub async fn send(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    Query(query): Query<RawSendParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<SendResponse>)> {
    agent.require("send")?;
    let raw = body_bytes(body)?;
    let (payload, opts) = send_input(&headers, query, &raw)?;
    let mut cmd = redis::cmd("MAILBOX.SEND");
    cmd.arg(&name).arg(payload);
    opts.push_options(&mut cmd)?;
    cmd.arg("AS").arg(agent.name());
    let reply = app.backend.api(&cmd).await?;
    let res = if opts.ephemeral == Some(true) {
        let (id, listeners) = reply::id_and_count(&reply, "MAILBOX.SEND")?;
        SendResponse { id, listeners: Some(listeners) }
    } else {
        SendResponse { id: reply::expect_string(&reply, "MAILBOX.SEND")?, listeners: None }
    };
    Ok((StatusCode::CREATED, Json(res)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Most messages to return (default 1).
    #[param(minimum = 1, maximum = 1000)]
    pub count: Option<u64>,
    /// Lease in milliseconds (default: the mailbox's lease).
    pub lease_ms: Option<u64>,
    /// Long-poll: wait up to this many milliseconds for a message when none is ready
    /// (0, the default, does not wait; longer waits are cut to the gateway's bound).
    pub wait_ms: Option<u64>,
    /// Remove the messages as they are returned (no ack needed).
    pub noack: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Messages {
    pub messages: Vec<Message>,
}

pub fn check_count(count: Option<u64>, max: u64) -> ApiResult<u64> {
    let n = count.unwrap_or(1);
    if n == 0 || n > max {
        return Err(ApiError::bad_request(format!("count must be from 1 to {max}")));
    }
    Ok(n)
}

/// Reads (and leases) the next messages (`MAILBOX.READ ... AS <agent>`), waiting up to
/// `wait_ms` for one to land.
#[utoipa::path(get, path = "/v1/mailboxes/{name}/messages", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name"), ReadParams),
    responses((status = 200, description = "the messages handed out (possibly none)", body = Messages), Errors),
    security(("bearer" = [])))]
pub async fn read(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    Query(q): Query<ReadParams>,
) -> ApiResult<Json<Messages>> {
    agent.require("read")?;
    let count = check_count(q.count, app.settings.max_count)?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(app.settings.max_wait);
    let mut cmd = redis::cmd("MAILBOX.READ");
    cmd.arg(&name).arg("COUNT").arg(count);
    if let Some(lease) = q.lease_ms {
        cmd.arg("LEASE").arg(lease);
    }
    if q.noack == Some(true) {
        cmd.arg("NOACK");
    }
    let reply = if wait.is_zero() {
        cmd.arg("AS").arg(agent.name());
        app.backend.api(&cmd).await?
    } else {
        cmd.arg("BLOCK").arg(wait.as_millis() as u64).arg("AS").arg(agent.name());
        app.backend.call_blocking(&cmd, wait).await?
    };
    Ok(Json(Messages { messages: reply::messages(&reply, "MAILBOX.READ")? }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Ids of messages a read handed out.
    pub ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AckResponse {
    /// How many were settled (unknown or already settled ids count 0).
    pub acked: i64,
}

/// Acknowledges (settles) leased messages (`MAILBOX.ACK ... AS <agent>`).
#[utoipa::path(post, path = "/v1/mailboxes/{name}/ack", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name")),
    request_body = AckRequest,
    responses((status = 200, description = "settled", body = AckResponse), Errors),
    security(("bearer" = [])))]
pub async fn ack(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<AckRequest>,
) -> ApiResult<Json<AckResponse>> {
    agent.require("read")?;
    let acked = ack_ids(&app, agent.name(), &name, &body.ids).await?;
    Ok(Json(AckResponse { acked }))
}

pub async fn ack_ids(app: &crate::app::App, agent: &str, name: &str, ids: &[String]) -> ApiResult<i64> {
    check_ids(ids)?;
    let mut cmd = redis::cmd("MAILBOX.ACK");
    cmd.arg(name).arg(ids).arg("AS").arg(agent);
    reply::expect_int(&app.backend.api(&cmd).await?, "MAILBOX.ACK")
}

pub async fn nack_ids(
    app: &crate::app::App,
    agent: &str,
    name: &str,
    ids: &[String],
    delay_ms: Option<u64>,
) -> ApiResult<i64> {
    check_ids(ids)?;
    let mut cmd = redis::cmd("MAILBOX.NACK");
    cmd.arg(name).arg(ids);
    if let Some(d) = delay_ms {
        cmd.arg("DELAY").arg(d);
    }
    cmd.arg("AS").arg(agent);
    reply::expect_int(&app.backend.api(&cmd).await?, "MAILBOX.NACK")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NackRequest {
    pub ids: Vec<String>,
    /// Make them ready again only after this many milliseconds.
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NackResponse {
    /// How many leased messages were put back (requeued, delayed or dead-lettered).
    pub requeued: i64,
}

/// Puts leased messages back (`MAILBOX.NACK ... AS <agent>`).
#[utoipa::path(post, path = "/v1/mailboxes/{name}/nack", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name")),
    request_body = NackRequest,
    responses((status = 200, description = "put back", body = NackResponse), Errors),
    security(("bearer" = [])))]
pub async fn nack(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NackRequest>,
) -> ApiResult<Json<NackResponse>> {
    agent.require("read")?;
    let requeued = nack_ids(&app, agent.name(), &name, &body.ids, body.delay_ms).await?;
    Ok(Json(NackResponse { requeued }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// First id (`-`, the default, for the oldest; `(id` excludes it).
    pub start: Option<String>,
    /// Last id (`+`, the default, for the newest).
    pub end: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub count: Option<u64>,
}

fn valid_bound(b: &str) -> bool {
    let b = b.strip_prefix('(').unwrap_or(b);
    b == "-"
        || b == "+"
        || (!b.is_empty() && b.len() <= 20 && b.bytes().all(|c| c.is_ascii_digit()))
        || crate::app::valid_id(b)
}

/// `start end [COUNT n]` for PEEK and DEAD LIST.
pub fn push_range(cmd: &mut Cmd, q: &RangeParams, max: u64) -> ApiResult<()> {
    let start = q.start.as_deref().unwrap_or("-");
    let end = q.end.as_deref().unwrap_or("+");
    if !valid_bound(start) || !valid_bound(end) {
        return Err(ApiError::bad_request("start and end must be message ids, '-' or '+'"));
    }
    cmd.arg(start).arg(end);
    if let Some(c) = q.count {
        cmd.arg("COUNT").arg(check_count(Some(c), max)?);
    }
    Ok(())
}

/// The held messages (ready, leased, delayed) without leasing anything (`MAILBOX.PEEK`).
#[utoipa::path(get, path = "/v1/mailboxes/{name}/peek", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name"), RangeParams),
    responses((status = 200, description = "the held messages, oldest first, with their state", body = Messages), Errors),
    security(("bearer" = [])))]
pub async fn peek(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    Query(q): Query<RangeParams>,
) -> ApiResult<Json<Messages>> {
    agent.require("read")?;
    let mut cmd = redis::cmd("MAILBOX.PEEK");
    cmd.arg(&name);
    push_range(&mut cmd, &q, app.settings.max_count)?;
    cmd.arg("AS").arg(agent.name());
    Ok(Json(Messages { messages: reply::messages(&app.backend.api(&cmd).await?, "MAILBOX.PEEK")? }))
}

/// Answers message `id` of the mailbox (`MAILBOX.REPLY ... AS <agent>`): to its
/// `reply_to`, else to its sender, with `correlation` = `id`. The body is JSON
/// (`SendRequest`), or the raw payload with its content type (the options then in the
/// query string).
#[utoipa::path(post, path = "/v1/mailboxes/{name}/messages/{id}/reply", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox holding the message"), ("id" = String, Path, description = "message id"), RawSendParams),
    request_body(content((SendRequest = "application/json"), (String = "application/octet-stream"), (String = "text/plain"))),
    responses((status = 201, description = "the answer is stored", body = SendResponse), Errors),
    security(("bearer" = [])))]
pub async fn reply_to(
    State(app): State<AppState>,
    agent: Agent,
    Path((name, id)): Path<(String, String)>,
    Query(query): Query<RawSendParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<SendResponse>)> {
    agent.require("send")?;
    check_ids(std::slice::from_ref(&id))?;
    let raw = body_bytes(body)?;
    let (payload, opts) = send_input(&headers, query, &raw)?;
    if opts.ephemeral == Some(true) {
        return Err(ApiError::bad_request("a reply cannot be ephemeral"));
    }
    let mut cmd = redis::cmd("MAILBOX.REPLY");
    cmd.arg(&name).arg(&id).arg(payload);
    opts.push_options(&mut cmd)?;
    cmd.arg("AS").arg(agent.name());
    let id = reply::expect_string(&app.backend.api(&cmd).await?, "MAILBOX.REPLY")?;
    Ok((StatusCode::CREATED, Json(SendResponse { id, listeners: None })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    pub id: String,
    /// `ready`, `leased`, `delayed`, `dead` or `unknown` (never there, or settled).
    pub status: String,
}

/// Where a message stands (`MAILBOX.STATUS`).
#[utoipa::path(get, path = "/v1/mailboxes/{name}/messages/{id}/status", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name"), ("id" = String, Path, description = "message id")),
    responses((status = 200, description = "the message's state", body = StatusResponse), Errors),
    security(("bearer" = [])))]
pub async fn status(
    State(app): State<AppState>,
    agent: Agent,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<StatusResponse>> {
    agent.require("read")?;
    check_ids(std::slice::from_ref(&id))?;
    let status = reply::expect_string(
        &app.backend
            .api(redis::cmd("MAILBOX.STATUS").arg(&name).arg(&id).arg("AS").arg(agent.name()))
            .await?,
        "MAILBOX.STATUS",
    )?;
    Ok(Json(StatusResponse { id, status }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CountParams {
    #[param(minimum = 1, maximum = 1000)]
    pub count: Option<u64>,
}

/// The messages of one thread that the mailbox holds (`MAILBOX.THREAD`).
#[utoipa::path(get, path = "/v1/mailboxes/{name}/threads/{thread}", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name"), ("thread" = String, Path, description = "thread id"), CountParams),
    responses((status = 200, description = "the thread's messages, oldest first", body = Messages), Errors),
    security(("bearer" = [])))]
pub async fn thread(
    State(app): State<AppState>,
    agent: Agent,
    Path((name, thread)): Path<(String, String)>,
    Query(q): Query<CountParams>,
) -> ApiResult<Json<Messages>> {
    agent.require("read")?;
    let mut cmd = redis::cmd("MAILBOX.THREAD");
    cmd.arg(&name).arg(thread.as_bytes());
    if let Some(c) = q.count {
        cmd.arg("COUNT").arg(check_count(Some(c), app.settings.max_count)?);
    }
    cmd.arg("AS").arg(agent.name());
    Ok(Json(Messages { messages: reply::messages(&app.backend.api(&cmd).await?, "MAILBOX.THREAD")? }))
}

/// The mailbox's settings and state (`MAILBOX.INFO`), as a JSON object.
#[utoipa::path(get, path = "/v1/mailboxes/{name}", tag = "mailboxes",
    params(("name" = String, Path, description = "mailbox name")),
    responses((status = 200, description = "`MAILBOX.INFO` fields (maxlen, ttl, lease, ready, leased, dead, ...)", body = Object), Errors),
    security(("bearer" = [])))]
pub async fn info(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Map<String, serde_json::Value>>> {
    agent.require("read")?;
    let reply = app.backend.api(redis::cmd("MAILBOX.INFO").arg(&name).arg("AS").arg(agent.name())).await?;
    Ok(Json(reply::pairs(&reply).into_iter().map(|(k, v)| (k, reply::json(&v))).collect()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Subscription {
    /// The topic pattern (without the namespace tag).
    pub pattern: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_priority: Option<i64>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Subscriptions {
    pub subscriptions: Vec<Subscription>,
}

/// The mailbox's topic subscriptions (`MAILBOX.SUBS`).
#[utoipa::path(get, path = "/v1/mailboxes/{name}/subscriptions", tag = "subscriptions",
    params(("name" = String, Path, description = "mailbox name")),
    responses((status = 200, description = "the subscriptions", body = Subscriptions), Errors),
    security(("bearer" = [])))]
pub async fn list_subscriptions(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
) -> ApiResult<Json<Subscriptions>> {
    agent.require("read")?;
    let reply = app.backend.api(redis::cmd("MAILBOX.SUBS").arg(&name).arg("AS").arg(agent.name())).await?;
    let items = match reply {
        redis::Value::Array(items) => items,
        redis::Value::Nil => Vec::new(),
        _ => return Err(ApiError::unavailable("unexpected reply from Redis to MAILBOX.SUBS")),
    };
    let mut subscriptions = Vec::new();
    for item in items {
        let redis::Value::Array(fields) = item else { continue };
        let Some(pattern) = fields.first().and_then(reply::string) else { continue };
        let mut s = Subscription { pattern, from: None, min_priority: None, content_type: None };
        for kv in fields[1..].chunks(2) {
            if let [k, v] = kv {
                match reply::string(k).as_deref() {
                    Some("from") => s.from = reply::string(v),
                    Some("minpriority") => s.min_priority = reply::int(v),
                    Some("type") => s.content_type = reply::string(v),
                    _ => {}
                }
            }
        }
        subscriptions.push(s);
    }
    Ok(Json(Subscriptions { subscriptions }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// Topic patterns (`research.#`, `*.urgent`).
    pub patterns: Vec<String>,
    /// Only messages from senders matching this glob.
    pub from: Option<String>,
    /// Only messages of at least this priority.
    #[schema(minimum = 0, maximum = 9)]
    pub min_priority: Option<u8>,
    /// Only messages whose content type matches this glob.
    #[serde(rename = "type")]
    pub content_type: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CountResponse {
    pub count: i64,
}

/// `MAILBOX.SUB` reads its options (`FROM glob`, `MINPRIORITY n`, `TYPE glob`, `AS agent`)
/// from the end, so a pattern spelt like one could read as an option: such patterns are refused.
pub fn is_sub_option(pattern: &str) -> bool {
    ["FROM", "MINPRIORITY", "TYPE", "AS"].iter().any(|o| pattern.eq_ignore_ascii_case(o))
}

pub const SUB_OPTION_PATTERN: &str = "a pattern cannot be FROM, MINPRIORITY, TYPE or AS";

/// Subscribes the mailbox to topic patterns (`MAILBOX.SUB`); replies with how many
/// subscriptions are new or changed.
#[utoipa::path(post, path = "/v1/mailboxes/{name}/subscriptions", tag = "subscriptions",
    params(("name" = String, Path, description = "mailbox name")),
    request_body = SubscribeRequest,
    responses((status = 200, description = "subscribed", body = CountResponse), Errors),
    security(("bearer" = [])))]
pub async fn subscribe(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<SubscribeRequest>,
) -> ApiResult<Json<CountResponse>> {
    agent.require("read")?;
    if body.patterns.is_empty() || body.patterns.len() > 100 {
        return Err(ApiError::bad_request("patterns must hold 1 to 100 patterns"));
    }
    if body.patterns.iter().any(|p| is_sub_option(p)) {
        return Err(ApiError::bad_request(SUB_OPTION_PATTERN));
    }
    let mut cmd = redis::cmd("MAILBOX.SUB");
    cmd.arg(&name).arg(&body.patterns);
    if let Some(f) = &body.from {
        cmd.arg("FROM").arg(f);
    }
    if let Some(p) = body.min_priority {
        cmd.arg("MINPRIORITY").arg(p);
    }
    if let Some(t) = &body.content_type {
        cmd.arg("TYPE").arg(t);
    }
    cmd.arg("AS").arg(agent.name());
    let count = reply::expect_int(&app.backend.api(&cmd).await?, "MAILBOX.SUB")?;
    Ok(Json(CountResponse { count }))
}

/// Removes one topic subscription of the mailbox (`MAILBOX.UNSUB`); replies with how
/// many were removed (0 or 1).
#[utoipa::path(delete, path = "/v1/mailboxes/{name}/subscriptions/{pattern}", tag = "subscriptions",
    params(("name" = String, Path, description = "mailbox name"), ("pattern" = String, Path, description = "the pattern, URL-encoded")),
    responses((status = 200, description = "unsubscribed", body = CountResponse), Errors),
    security(("bearer" = [])))]
pub async fn unsubscribe(
    State(app): State<AppState>,
    agent: Agent,
    Path((name, pattern)): Path<(String, String)>,
) -> ApiResult<Json<CountResponse>> {
    agent.require("read")?;
    let count = reply::expect_int(
        &app.backend
            .api(redis::cmd("MAILBOX.UNSUB").arg(&name).arg(&pattern).arg("AS").arg(agent.name()))
            .await?,
        "MAILBOX.UNSUB",
    )?;
    Ok(Json(CountResponse { count }))
}

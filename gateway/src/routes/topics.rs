//! Topic and namespace routes: publish, broadcast, presence.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::mailboxes::{body_bytes, send_input, RawSendParams, SendRequest};
use super::Errors;
use crate::app::{Agent, AppState, Path, Query};
use crate::problem::{ApiError, ApiResult};
use crate::reply;

#[derive(Debug, Serialize, ToSchema)]
pub struct FanOutResponse {
    pub id: String,
    /// How many mailboxes received it.
    pub receivers: i64,
}

async fn fan_out(
    app: &AppState,
    agent: &Agent,
    command: &str,
    target: &str,
    input: (Vec<u8>, SendRequest),
) -> ApiResult<(StatusCode, Json<FanOutResponse>)> {
    let (payload, opts) = input;
    if opts.ephemeral == Some(true) {
        return Err(ApiError::bad_request("ephemeral applies to a mailbox send only"));
    }
    let mut cmd = redis::cmd(command);
    cmd.arg(target).arg(payload);
    opts.push_options(&mut cmd)?;
    cmd.arg("AS").arg(agent.name());
    let (id, receivers) = reply::id_and_count(&app.backend.api(&cmd).await?, command)?;
    Ok((StatusCode::CREATED, Json(FanOutResponse { id, receivers })))
}

/// Publishes to every mailbox subscribed to a matching pattern (`MAILBOX.PUBLISH ... AS
/// <agent>`). The body is JSON (`SendRequest`), or the raw payload with its content type
/// (the options then in the query string).
#[utoipa::path(post, path = "/v1/topics/{topic}/messages", tag = "topics",
    params(("topic" = String, Path, description = "dot-separated topic, e.g. `{team1}research.papers`"), RawSendParams),
    request_body(content((SendRequest = "application/json"), (String = "application/octet-stream"), (String = "text/plain"))),
    responses((status = 201, description = "published", body = FanOutResponse), Errors),
    security(("bearer" = [])))]
pub async fn publish(
    State(app): State<AppState>,
    agent: Agent,
    Path(topic): Path<String>,
    Query(query): Query<RawSendParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<FanOutResponse>)> {
    agent.require("send")?;
    let raw = body_bytes(body)?;
    fan_out(&app, &agent, "MAILBOX.PUBLISH", &topic, send_input(&headers, query, &raw)?).await
}

/// Sends to every mailbox of a namespace (`MAILBOX.BROADCAST ... AS <agent>`). The body is
/// JSON (`SendRequest`), or the raw payload with its content type (the options then in the
/// query string).
#[utoipa::path(post, path = "/v1/namespaces/{namespace}/broadcast", tag = "topics",
    params(("namespace" = String, Path, description = "`{team1}`, or a name without a hash tag (e.g. `default`) for the default namespace"), RawSendParams),
    request_body(content((SendRequest = "application/json"), (String = "application/octet-stream"), (String = "text/plain"))),
    responses((status = 201, description = "broadcast", body = FanOutResponse), Errors),
    security(("bearer" = [])))]
pub async fn broadcast(
    State(app): State<AppState>,
    agent: Agent,
    Path(namespace): Path<String>,
    Query(query): Query<RawSendParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<FanOutResponse>)> {
    agent.require("send")?;
    let raw = body_bytes(body)?;
    fan_out(&app, &agent, "MAILBOX.BROADCAST", &namespace, send_input(&headers, query, &raw)?).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PresenceEntry {
    pub agent: String,
    /// When it was last seen, ms since the epoch.
    pub last_seen: i64,
    /// Milliseconds since then.
    pub idle: i64,
    /// Ready messages in its own mailbox of the namespace.
    pub waiting: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Presence {
    pub agents: Vec<PresenceEntry>,
}

/// Who was active in a namespace (`MAILBOX.PRESENCE`; needs `send` on the namespace).
#[utoipa::path(get, path = "/v1/namespaces/{namespace}/presence", tag = "topics",
    params(("namespace" = String, Path, description = "`{team1}`, or `default`")),
    responses((status = 200, description = "the agents seen", body = Presence), Errors),
    security(("bearer" = [])))]
pub async fn presence(
    State(app): State<AppState>,
    agent: Agent,
    Path(namespace): Path<String>,
) -> ApiResult<Json<Presence>> {
    agent.require("read")?;
    let reply =
        app.backend.api(redis::cmd("MAILBOX.PRESENCE").arg(&namespace).arg("AS").arg(agent.name())).await?;
    let mut agents = Vec::new();
    if let redis::Value::Array(items) = reply {
        for item in items {
            let redis::Value::Array(fields) = item else { continue };
            let Some(name) = fields.first().and_then(reply::string) else { continue };
            let mut e = PresenceEntry { agent: name, last_seen: 0, idle: 0, waiting: 0 };
            for kv in fields[1..].chunks(2) {
                if let [k, v] = kv {
                    let n = reply::int(v).unwrap_or(0);
                    match reply::string(k).as_deref() {
                        Some("last-seen") => e.last_seen = n,
                        Some("idle") => e.idle = n,
                        Some("waiting") => e.waiting = n,
                        _ => {}
                    }
                }
            }
            agents.push(e);
        }
    }
    Ok(Json(Presence { agents }))
}

//! Admin routes (tokens with the `admin` scope, agents with the module's `admin`
//! grant): dead letters and grants; and `GET /v1/me`.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::mailboxes::{push_range, CountResponse, Messages, RangeParams};
use super::Errors;
use crate::app::{check_ids, Agent, AppState, JsonBody, Path, Query};
use crate::problem::{ApiError, ApiResult};
use crate::reply;

/// `MAILBOX.DEAD <sub> <mailbox>`; the caller adds the arguments, then `AS <agent>`.
fn dead_cmd(name: &str, sub: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("MAILBOX.DEAD");
    cmd.arg(sub).arg(name);
    cmd
}

/// The dead letters of a mailbox (`MAILBOX.DEAD ... LIST`).
#[utoipa::path(get, path = "/v1/mailboxes/{name}/dead", tag = "admin",
    params(("name" = String, Path, description = "mailbox name"), RangeParams),
    responses((status = 200, description = "dead letters, with reason and dead_at", body = Messages), Errors),
    security(("bearer" = [])))]
pub async fn dead_list(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    Query(q): Query<RangeParams>,
) -> ApiResult<Json<Messages>> {
    agent.require("admin")?;
    let mut cmd = dead_cmd(&name, "LIST");
    push_range(&mut cmd, &q, app.settings.max_count)?;
    cmd.arg("AS").arg(agent.name());
    Ok(Json(Messages { messages: reply::messages(&app.backend.api(&cmd).await?, "MAILBOX.DEAD")? }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadRequest {
    /// The dead letters to act on; omit and set `all` for every one.
    pub ids: Option<Vec<String>>,
    pub all: Option<bool>,
}

async fn dead_action(
    app: &AppState,
    agent: &Agent,
    name: &str,
    action: &str,
    body: &DeadRequest,
) -> ApiResult<i64> {
    agent.require("admin")?;
    let mut cmd = dead_cmd(name, action);
    match (&body.ids, body.all) {
        (Some(ids), None | Some(false)) => {
            check_ids(ids)?;
            cmd.arg(ids);
        }
        (None, Some(true)) => {
            cmd.arg("ALL");
        }
        _ => return Err(ApiError::bad_request("give either ids or all: true")),
    }
    cmd.arg("AS").arg(agent.name());
    reply::expect_int(&app.backend.api(&cmd).await?, "MAILBOX.DEAD")
}

/// Makes dead letters ready again (`MAILBOX.DEAD ... REQUEUE`).
#[utoipa::path(post, path = "/v1/mailboxes/{name}/dead/requeue", tag = "admin",
    params(("name" = String, Path, description = "mailbox name")),
    request_body = DeadRequest,
    responses((status = 200, description = "how many were requeued", body = CountResponse), Errors),
    security(("bearer" = [])))]
pub async fn dead_requeue(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DeadRequest>,
) -> ApiResult<Json<CountResponse>> {
    Ok(Json(CountResponse { count: dead_action(&app, &agent, &name, "REQUEUE", &body).await? }))
}

/// Deletes dead letters (`MAILBOX.DEAD ... PURGE`).
#[utoipa::path(post, path = "/v1/mailboxes/{name}/dead/purge", tag = "admin",
    params(("name" = String, Path, description = "mailbox name")),
    request_body = DeadRequest,
    responses((status = 200, description = "how many were purged", body = CountResponse), Errors),
    security(("bearer" = [])))]
pub async fn dead_purge(
    State(app): State<AppState>,
    agent: Agent,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DeadRequest>,
) -> ApiResult<Json<CountResponse>> {
    Ok(Json(CountResponse { count: dead_action(&app, &agent, &name, "PURGE", &body).await? }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// The agent (or `*`, every agent).
    pub agent: String,
    /// `send`, `read`, `subscribe`, `publish`, `admin` or `impersonate`.
    pub permission: String,
    /// A glob over mailbox and topic names (`{team1}*`).
    pub pattern: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Grants {
    pub grants: Vec<Grant>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantFilter {
    /// The namespace (`{team1}`, or `default`); the module lists one namespace at a time.
    pub namespace: Option<String>,
    /// Only this agent's grants.
    pub agent: Option<String>,
}

/// The grants of a namespace (`MAILBOX.ACL LIST`).
#[utoipa::path(get, path = "/v1/grants", tag = "admin",
    params(GrantFilter),
    responses((status = 200, description = "the grants", body = Grants), Errors),
    security(("bearer" = [])))]
pub async fn grants_list(
    State(app): State<AppState>,
    agent: Agent,
    Query(q): Query<GrantFilter>,
) -> ApiResult<Json<Grants>> {
    agent.require("admin")?;
    let mut cmd = redis::cmd("MAILBOX.ACL");
    cmd.arg("LIST").arg(q.namespace.as_deref().unwrap_or("default"));
    if let Some(a) = &q.agent {
        cmd.arg(a);
    }
    cmd.arg("AS").arg(agent.name());
    let reply = app.backend.api(&cmd).await?;
    let mut grants = Vec::new();
    if let redis::Value::Array(items) = reply {
        for item in items {
            if let redis::Value::Array(f) = item {
                if let [a, p, pat] = f.as_slice() {
                    grants.push(Grant {
                        agent: reply::string(a).unwrap_or_default(),
                        permission: reply::string(p).unwrap_or_default(),
                        pattern: reply::string(pat).unwrap_or_default(),
                    });
                }
            }
        }
    }
    Ok(Json(Grants { grants }))
}

async fn change_grant(app: &AppState, agent: &Agent, verb: &str, g: &Grant) -> ApiResult<i64> {
    agent.require("admin")?;
    if g.pattern.is_empty() {
        return Err(ApiError::bad_request("pattern must not be empty"));
    }
    const PERMISSIONS: [&str; 6] = ["send", "read", "subscribe", "publish", "admin", "impersonate"];
    if !PERMISSIONS.contains(&g.permission.as_str()) {
        return Err(ApiError::bad_request(format!(
            "unknown permission '{}', expected one of {}",
            g.permission,
            PERMISSIONS.join(", ")
        )));
    }
    let cmd = redis::cmd("MAILBOX.ACL")
        .arg(verb)
        .arg(&g.agent)
        .arg(&g.permission)
        .arg(&g.pattern)
        .arg("AS")
        .arg(agent.name())
        .clone();
    reply::expect_int(&app.backend.api(&cmd).await?, "MAILBOX.ACL")
}

/// Grants a permission (`MAILBOX.ACL GRANT`); needs `admin` on the pattern. Count 1 when it changed something.
#[utoipa::path(post, path = "/v1/grants", tag = "admin",
    request_body = Grant,
    responses((status = 200, description = "granted", body = CountResponse), Errors),
    security(("bearer" = [])))]
pub async fn grant(
    State(app): State<AppState>,
    agent: Agent,
    JsonBody(g): JsonBody<Grant>,
) -> ApiResult<Json<CountResponse>> {
    Ok(Json(CountResponse { count: change_grant(&app, &agent, "GRANT", &g).await? }))
}

/// Revokes a permission (`MAILBOX.ACL REVOKE`); needs `admin` on the pattern.
#[utoipa::path(post, path = "/v1/grants/revoke", tag = "admin",
    request_body = Grant,
    responses((status = 200, description = "revoked", body = CountResponse), Errors),
    security(("bearer" = [])))]
pub async fn revoke(
    State(app): State<AppState>,
    agent: Agent,
    JsonBody(g): JsonBody<Grant>,
) -> ApiResult<Json<CountResponse>> {
    Ok(Json(CountResponse { count: change_grant(&app, &agent, "REVOKE", &g).await? }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub agent: String,
    /// The token's short id (the start of its hash), as `token list` shows it.
    pub token_id: String,
    pub scopes: Vec<String>,
    /// When the token expires (ms since the epoch), 0 for never.
    pub expires: i64,
    /// The agent's own mailbox (default namespace).
    pub mailbox: String,
    /// Ready messages waiting there.
    pub waiting: i64,
}

/// Who this token acts for, and what waits in its mailbox.
#[utoipa::path(get, path = "/v1/me", tag = "mailboxes",
    responses((status = 200, description = "the token's agent", body = Me), Errors),
    security(("bearer" = [])))]
pub async fn me(State(app): State<AppState>, agent: Agent) -> ApiResult<Json<Me>> {
    let mailbox = agent.name().to_string();
    let waiting = match app
        .backend
        .call(redis::cmd("MAILBOX.INFO").arg(&mailbox).arg("AS").arg(&mailbox))
        .await
    {
        Ok(v) => reply::pairs(&v)
            .into_iter()
            .find(|(k, _)| k == "ready")
            .and_then(|(_, v)| reply::int(&v))
            .unwrap_or(0),
        Err(crate::backend::CallError::Refused { detail, .. }) if detail.starts_with("no such mailbox") => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(Json(Me {
        agent: mailbox.clone(),
        token_id: agent.record.id().to_string(),
        scopes: agent.record.scopes.names().into_iter().map(String::from).collect(),
        expires: agent.record.expires_ms,
        mailbox,
        waiting,
    }))
}

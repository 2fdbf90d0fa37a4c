//! `/healthz`, `/readyz` and `/metrics`: no token needed.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::reply;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// The process is up (says nothing about Redis).
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".to_string() })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether the gateway can serve: Redis reachable, the module loaded, a master.
    pub ready: bool,
    pub redis_reachable: bool,
    pub module_loaded: bool,
    /// `master`, `slave` (a replica) or `unknown`.
    pub role: String,
    /// A replica's `master_link_status` (`up`/`down`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_link: Option<String>,
    /// On a Redis Cluster: `cluster_state` (`ok` or `fail`) of the node asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_state: Option<String>,
    /// On a Redis Cluster: the masters that answered (every one must, with the module loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masters: Option<usize>,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Ready when Redis answers, the module is loaded and the server is a master; on a Redis
/// Cluster, when the cluster's state is `ok` and every master answers with the module loaded.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "ready", body = Readiness),
              (status = 503, description = "not ready; `reason` says why", body = Readiness)))]
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let mut r = Readiness {
        ready: false,
        redis_reachable: false,
        module_loaded: false,
        role: "unknown".to_string(),
        master_link: None,
        cluster_state: None,
        masters: None,
        reason: None,
    };
    let b = &app.backend;
    match b.call(&redis::cmd("PING")).await {
        Ok(_) => r.redis_reachable = true,
        Err(_) => {
            r.reason = Some(format!("Redis unreachable: {}", b.last_error()));
            return (StatusCode::SERVICE_UNAVAILABLE, Json(r));
        }
    }
    if b.is_cluster() {
        return cluster_readiness(&app, r).await;
    }
    match b.call(redis::cmd("COMMAND").arg("INFO").arg("mailbox.send")).await {
        Ok(v) => r.module_loaded = has_command(&v),
        Err(_) => r.reason = Some("COMMAND INFO failed".to_string()),
    }
    if let Ok(redis::Value::Array(role)) = b.call(&redis::cmd("ROLE")).await {
        if let Some(name) = role.first().and_then(reply::string) {
            r.role = name;
        }
    }
    if r.role == "slave" {
        if let Ok(v) = b.call(redis::cmd("INFO").arg("replication")).await {
            let text = reply::string(&v).unwrap_or_default();
            r.master_link = text
                .lines()
                .find_map(|l| l.strip_prefix("master_link_status:"))
                .map(|s| s.trim().to_string());
        }
    }
    r.ready = r.module_loaded && r.role == "master";
    if !r.module_loaded {
        r.reason = Some("the mailbox module is not loaded".to_string());
    } else if r.role != "master" {
        r.reason = Some(format!("the server is a {}, not a master", r.role));
    }
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r))
}

/// `COMMAND INFO`'s reply names the command.
fn has_command(reply: &redis::Value) -> bool {
    matches!(reply, redis::Value::Array(items) if items.iter().any(|i| !matches!(i, redis::Value::Nil)))
}

async fn cluster_readiness(app: &AppState, mut r: Readiness) -> (StatusCode, Json<Readiness>) {
    let b = &app.backend;
    if let Ok(v) = b.call(redis::cmd("CLUSTER").arg("INFO")).await {
        let text = reply::string(&v).unwrap_or_default();
        r.cluster_state =
            text.lines().find_map(|l| l.strip_prefix("cluster_state:")).map(|s| s.trim().to_string());
    }
    match b.call_masters(redis::cmd("COMMAND").arg("INFO").arg("mailbox.send")).await {
        Ok(replies) => {
            r.masters = Some(replies.len());
            r.module_loaded = !replies.is_empty() && replies.iter().all(|(_, v)| has_command(v));
            r.role = "master".to_string();
            if let Some((addr, _)) = replies.iter().find(|(_, v)| !has_command(v)) {
                r.reason = Some(format!("the mailbox module is not loaded on the master at {addr}"));
            }
        }
        Err(crate::backend::CallError::Refused { code, detail }) => {
            r.reason = Some(format!("a master refused COMMAND INFO: {code} {detail}"))
        }
        Err(crate::backend::CallError::Unavailable(why)) => {
            r.reason = Some(format!("a master did not answer: {why}"))
        }
    }
    r.ready = r.module_loaded && r.cluster_state.as_deref() == Some("ok") && r.reason.is_none();
    if !r.ready && r.reason.is_none() {
        r.reason = Some(format!("cluster_state is {}", r.cluster_state.as_deref().unwrap_or("unknown")));
    }
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(r))
}

/// Prometheus text format: the gateway's metrics, the module's `MAILBOX.STATS` and
/// `INFO mailbox`'s eviction policy warning.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    // On a Redis Cluster every master's figures, added up.
    let (stats, up) = match app.backend.call_masters(&redis::cmd("MAILBOX.STATS")).await {
        Ok(replies) => {
            let mut pairs: Vec<(String, i64)> = Vec::new();
            for (_, v) in &replies {
                for (name, value) in
                    reply::pairs(v).into_iter().filter_map(|(k, v)| Some((k, reply::int(&v)?)))
                {
                    match pairs.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, sum)) => *sum = sum.saturating_add(value),
                        None => pairs.push((name, value)),
                    }
                }
            }
            // INFO mailbox has one figure more than MAILBOX.STATS: 1 when any master warns.
            if let Ok(infos) = app.backend.call_masters(redis::cmd("INFO").arg("mailbox")).await {
                let warning = infos
                    .iter()
                    .filter_map(|(_, info)| {
                        let text = reply::string(info)?;
                        text.lines()
                            .find_map(|l| l.strip_prefix("mailbox_eviction_policy_warning:"))
                            .and_then(|v| v.trim().parse::<i64>().ok())
                    })
                    .max();
                if let Some(w) = warning {
                    pairs.push(("eviction_policy_warning".to_string(), w));
                }
            }
            (Some(pairs), true)
        }
        Err(crate::backend::CallError::Refused { .. }) => (None, true),
        Err(_) => (None, false),
    };
    let body = app.metrics.render(stats.as_deref(), up);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

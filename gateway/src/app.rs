//! The gateway's shared state, the identity extractor (bearer token → agent, with
//! the per-token rate limit) and extractors whose rejections are problem details.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::de::DeserializeOwned;

use crate::auth::{FailedAuthLimit, TokenCache, TrustedProxies};
use crate::backend::Backend;
use crate::metrics::Metrics;
use crate::problem::{ApiError, ApiResult};
use crate::tokens::{self, Scopes, TokenRecord};

/// Settings of a running gateway.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Prefix of the gateway's own Redis keys (tokens).
    pub key_prefix: String,
    /// Longest `wait` a long-poll read may ask for.
    pub max_wait: Duration,
    /// Messages a read may ask for at once.
    pub max_count: u64,
    /// How long a real-time stream's read blocks before looking again.
    pub stream_block: Duration,
}

pub struct App {
    pub backend: Arc<Backend>,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub limiter: Option<DefaultKeyedRateLimiter<String>>,
    pub auth: AuthGuard,
}

/// The token cache and the limit on failed lookups.
pub struct AuthGuard {
    pub cache: Arc<TokenCache>,
    pub failed: Option<FailedAuthLimit>,
    /// Whose `X-Forwarded-For` names the client for `failed`.
    pub proxies: TrustedProxies,
}

pub type AppState = Arc<App>;

impl App {
    pub fn new(
        backend: Arc<Backend>,
        metrics: Arc<Metrics>,
        settings: Settings,
        rate_per_sec: u32,
        burst: u32,
        auth: AuthGuard,
    ) -> AppState {
        let limiter = NonZeroU32::new(rate_per_sec).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Arc::new(App { backend, metrics, settings, limiter, auth })
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The agent a request acts for, from its bearer token.
#[derive(Clone, Debug)]
pub struct Agent {
    pub record: TokenRecord,
}

impl Agent {
    pub fn name(&self) -> &str {
        &self.record.agent
    }

    pub fn require(&self, scope: &str) -> ApiResult<()> {
        let s: Scopes = self.record.scopes;
        let ok = match scope {
            "send" => s.send,
            "read" => s.read,
            "admin" => s.admin,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this token lacks the '{scope}' scope")))
        }
    }
}

fn bearer(parts: &Parts) -> ApiResult<String> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) =
        value.split_once(' ').ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized("Authorization must be Bearer <token>"));
    }
    Ok(token.trim().to_string())
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| {
            let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
            app.auth.proxies.client(c.0.ip(), forwarded)
        });
        authenticate_from(app, &bearer(parts)?, peer).await
    }
}

/// The agent a bearer token acts for, with the token's rate limit applied.
pub async fn authenticate(app: &App, token: &str) -> ApiResult<Agent> {
    authenticate_from(app, token, None).await
}

/// [`authenticate`] for a request from `peer`, whose failed lookups are limited. The record
/// comes from the token cache (which a revocation empties at once, on every gateway) or
/// from Redis.
pub async fn authenticate_from(app: &App, token: &str, peer: Option<IpAddr>) -> ApiResult<Agent> {
    let failed = peer.and_then(|ip| Some((ip, app.auth.failed.as_ref()?)));
    let hash = tokens::hash(token);
    let now = now_ms();
    let record = match app.auth.cache.get(&hash).filter(|r| r.expires_ms == 0 || r.expires_ms > now) {
        Some(r) => r,
        None => {
            // An address over its limit of failed lookups gets no lookup at all.
            if let Some(secs) = failed.and_then(|(ip, limit)| limit.blocked(ip)) {
                return Err(ApiError::too_many(
                    "too many requests with unknown tokens from this address",
                    secs,
                ));
            }
            let generation = app.auth.cache.generation();
            let reply = app
                .backend
                .api(redis::cmd("HGETALL").arg(tokens::key(&app.settings.key_prefix, &hash)))
                .await?;
            match tokens::parse_record(&hash, &reply, now) {
                Some(r) => {
                    app.auth.cache.insert(&r, generation);
                    r
                }
                None => {
                    if let Some(secs) = failed.and_then(|(ip, limit)| limit.failed(ip)) {
                        return Err(ApiError::too_many(
                            "too many requests with unknown tokens from this address",
                            secs,
                        ));
                    }
                    return Err(ApiError::unauthorized("unknown, expired or revoked token"));
                }
            }
        }
    };
    if let Some(limiter) = &app.limiter {
        if let Err(not_until) = limiter.check_key(&record.hash) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(ApiError::too_many("request rate limit of this token exceeded", secs));
        }
    }
    Ok(Agent { record })
}

/// JSON body whose rejections (bad JSON, wrong type, too large) are problem details.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            // A body that is JSON but not of the expected shape is bad input like any other.
            Err(e) if e.status() == StatusCode::UNPROCESSABLE_ENTITY => {
                Err(ApiError::bad_request(e.body_text()))
            }
            Err(e) => Err(ApiError::new(e.status(), e.body_text())),
        }
    }
}

/// Query string whose rejections are problem details.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// Path parameters whose rejections are problem details.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::new(StatusCode::BAD_REQUEST, e.body_text())),
        }
    }
}

/// Refuses at once (the module's `NOPERM`) a stream `agent` may not read from
/// `mailbox`: a read-only command run `AS` the agent, which the module checks and
/// audits as it does the stream's own reads. Those reads are checked again each time.
pub async fn require_read(app: &App, agent: &str, mailbox: &str) -> ApiResult<()> {
    app.backend.api(redis::cmd("MAILBOX.STATUS").arg(mailbox).arg("0-0").arg("AS").arg(agent)).await?;
    Ok(())
}

/// A message id as the module writes them (`<ms>-<seq>`); anything else is refused
/// before it reaches a command line where it could read as an option.
pub fn valid_id(id: &str) -> bool {
    match id.split_once('-') {
        Some((ms, seq)) => {
            !ms.is_empty()
                && !seq.is_empty()
                && ms.len() <= 20
                && seq.len() <= 20
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

pub fn check_ids(ids: &[String]) -> ApiResult<()> {
    if ids.is_empty() {
        return Err(ApiError::bad_request("ids must name at least one message id"));
    }
    if ids.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 ids at once"));
    }
    match ids.iter().find(|id| !valid_id(id)) {
        Some(bad) => Err(ApiError::bad_request(format!("invalid message id '{bad}'"))),
        None => Ok(()),
    }
}

/// The namespace tag of a name (`{team1}alice` → `team1`), as the module reads it.
pub fn hash_tag(name: &str) -> Option<&str> {
    let open = name.find('{')?;
    let rest = &name[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

/// The agent's own mailbox in the namespace of `name`.
pub fn agent_mailbox(name: &str, agent: &str) -> String {
    match hash_tag(name) {
        Some(tag) => format!("{{{tag}}}{agent}"),
        None => agent.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_strictly() {
        assert!(valid_id("1764295200000-0"));
        for bad in ["AS", "1-", "-1", "1-0 AS", "1-a", "", "1"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn hash_tags_as_the_module_reads_them() {
        assert_eq!(hash_tag("{team1}alice"), Some("team1"));
        assert_eq!(hash_tag("alice"), None);
        assert_eq!(hash_tag("{}alice"), None);
        assert_eq!(agent_mailbox("{t}x.y", "bob"), "{t}bob");
        assert_eq!(agent_mailbox("x.y", "bob"), "bob");
    }
}

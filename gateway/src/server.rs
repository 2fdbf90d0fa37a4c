//! The HTTP server: routes (with their OpenAPI document), limits, CORS, request
//! metrics and logs, and the listener (plain, or TLS with the `tls` feature).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::problem::ApiError;
use crate::routes::{admin, health, mailboxes, topics};
use crate::streams;

#[derive(OpenApi)]
#[openapi(
    info(title = "mailbox-gateway", description = "REST, Server-Sent Events and WebSocket access to redis-mailbox: durable mailboxes for LLM agents."),
    modifiers(&BearerAuth),
    components(schemas(crate::problem::Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document, made once from the routes when the router is built.
static OPENAPI: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// This OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "the OpenAPI 3.1 document of these routes", body = Object)))]
async fn openapi_document() -> impl IntoResponse {
    let body = OPENAPI.get().cloned().unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], body)
}

/// Limits of the HTTP side.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    pub request_timeout: Duration,
    pub cors_origins: Vec<String>,
    /// `Host` and `Origin` checks of the MCP endpoint.
    pub mcp: crate::mcp::HttpSettings,
}

/// The routes and the OpenAPI document generated from the same list.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(mailboxes::send, mailboxes::read))
        .routes(routes!(mailboxes::ack))
        .routes(routes!(mailboxes::nack))
        .routes(routes!(mailboxes::peek))
        .routes(routes!(mailboxes::reply_to))
        .routes(routes!(mailboxes::status))
        .routes(routes!(mailboxes::thread))
        .routes(routes!(mailboxes::info))
        .routes(routes!(mailboxes::list_subscriptions, mailboxes::subscribe))
        .routes(routes!(mailboxes::unsubscribe))
        .routes(routes!(topics::publish))
        .routes(routes!(topics::broadcast))
        .routes(routes!(topics::presence))
        .routes(routes!(admin::dead_list))
        .routes(routes!(admin::dead_requeue))
        .routes(routes!(admin::dead_purge))
        .routes(routes!(admin::grants_list, admin::grant))
        .routes(routes!(admin::revoke))
        .routes(routes!(admin::me))
        .routes(routes!(streams::events))
        .routes(routes!(streams::ws))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi_document))
        .split_for_parts()
}

pub fn build(app: AppState, limits: &HttpLimits) -> Router {
    let (router, api) = routes();
    let _ = OPENAPI.set(api.to_pretty_json().unwrap_or_default());
    let mut router = router
        .merge(crate::mcp::http_router(app.clone(), &limits.mcp))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, limits.request_timeout));
    if !limits.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = limits.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([axum::http::header::AUTHORIZATION, axum::http::header::CONTENT_TYPE])
                .expose_headers([axum::http::header::RETRY_AFTER]),
        );
    }
    let max_header = limits.max_header_bytes;
    router
        .layer(middleware::from_fn(move |req: Request, next: Next| header_limit(max_header, req, next)))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

async fn header_limit(max: usize, req: Request, next: Next) -> Response {
    let size: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum();
    if size > max {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("request headers are {size} bytes, over the limit of {max}"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Counts and times every request by its route template, and logs it (never its
/// headers or query: they may carry a token).
async fn observe(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16().to_string();
    app.metrics.requests.with_label_values(&[&route, method.as_str(), &status]).inc();
    app.metrics.latency.with_label_values(&[&route, method.as_str()]).observe(elapsed.as_secs_f64());
    tracing::info!(%method, route, status, ms = elapsed.as_millis() as u64, "request");
    res
}

pub fn openapi_json() -> String {
    routes().1.to_pretty_json().unwrap_or_default()
}

pub async fn serve(
    router: Router,
    addr: SocketAddr,
    tls: Option<(String, String)>,
    header_timeout: Duration,
) -> std::io::Result<()> {
    match tls {
        None => serve_plain(router, addr, header_timeout).await,
        Some((cert, key)) => serve_tls(router, addr, cert, key).await,
    }
}

/// HTTP/1.1 with upgrades (WebSocket), and a deadline for a request's headers to arrive,
/// so a client that trickles them in does not hold a connection for ever.
async fn serve_plain(router: Router, addr: SocketAddr, header_timeout: Duration) -> std::io::Result<()> {
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "listening (http)");
    let stop = shutdown();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        // The peer address, for the limit on failed token lookups per address.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |req: axum::http::Request<Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

#[cfg(feature = "tls")]
async fn serve_tls(router: Router, addr: SocketAddr, cert: String, key: String) -> std::io::Result<()> {
    let _ = rustls_provider();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
    tracing::info!(%addr, "listening (https)");
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown().await;
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    // TCP_NODELAY, as on the plain listener: a pushed message leaves at once.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(config)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    axum_server::bind(addr)
        .acceptor(acceptor)
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}

#[cfg(feature = "tls")]
fn rustls_provider() -> Result<(), std::sync::Arc<rustls::crypto::CryptoProvider>> {
    rustls::crypto::ring::default_provider().install_default()
}

#[cfg(not(feature = "tls"))]
async fn serve_tls(_router: Router, _addr: SocketAddr, _cert: String, _key: String) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "this build has no TLS: rebuild with `cargo build -p mailbox-gateway --features tls`, or terminate TLS in front",
    ))
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

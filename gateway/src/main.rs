//! `mailbox-gateway`: HTTP, Server-Sent Events and WebSocket access to redis-mailbox
//! for agents that do not speak RESP. `serve` runs the gateway; `token` manages the
//! bearer tokens (stored in Redis as hashes only).

mod app;
mod auth;
mod backend;
mod mcp;
mod metrics;
mod problem;
mod reply;
mod routes;
mod server;
mod streams;
mod tokens;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app::{now_ms, App, Settings};
use crate::backend::Backend;
use crate::metrics::Metrics;
use crate::tokens::{Scopes, TokenRecord};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "mailbox-gateway", version, about = "REST, SSE, WebSocket and MCP gateway to redis-mailbox")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct RedisArgs {
    /// Redis URL with the gateway's own ACL user: redis://gateway:password@127.0.0.1:6399
    /// (rediss:// for TLS); redis+sentinel://gateway:password@host:26379[,host:port...]/<master>
    /// behind Sentinel; Redis Cluster nodes as a comma-separated list
    /// (redis://gateway:password@h1:7000,h2:7001,h3:7002) or with --redis repeated.
    #[arg(long, env = "MAILBOX_GATEWAY_REDIS", default_value = "redis://127.0.0.1:6399", action = clap::ArgAction::Append)]
    redis: Vec<String>,
    /// Redis Cluster even when --redis names a single node (several nodes imply it).
    #[arg(long)]
    cluster: bool,
    /// Prefix of the gateway's own keys in Redis (tokens).
    #[arg(long, default_value = "gateway:")]
    key_prefix: String,
    /// Timeout of each Redis call, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    redis_timeout_ms: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Create, revoke or list tokens.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Serve the MCP tools to one application over stdin/stdout, for the agent of a token.
    Mcp(McpArgs),
}

#[derive(Args)]
struct McpArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Speak MCP on stdin/stdout (the only transport of this command; streamable HTTP is
    /// served by `serve` at /mcp).
    #[arg(long, required = true)]
    stdio: bool,
    /// The bearer token whose agent the tools act for.
    #[arg(long, env = "MAILBOX_GATEWAY_TOKEN", hide_env_values = true)]
    token: String,
    /// Longest `wait_s` of mailbox_read, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    max_wait_ms: u64,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Longest long-poll `wait_ms` of a read, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    max_wait_ms: u64,
    /// Requests per second per token (0: no limit).
    #[arg(long, default_value_t = 50)]
    rate_limit: u32,
    /// Burst of the per-token rate limit.
    #[arg(long, default_value_t = 100)]
    rate_burst: u32,
    /// Failed token lookups (unknown, expired or revoked tokens) per second per client
    /// address; past it that address gets 429 without a lookup (0: no limit).
    #[arg(long, default_value_t = 5)]
    auth_fail_rate: u32,
    /// Burst of the failed-lookup limit.
    #[arg(long, default_value_t = 20)]
    auth_fail_burst: u32,
    /// A proxy in front of the gateway (ADDRESS or ADDRESS/PREFIX; repeat for more): for
    /// requests from it, the failed-lookup limit counts the client named by
    /// `X-Forwarded-For` (the last address there that is not a trusted proxy). Without it,
    /// `X-Forwarded-For` is ignored.
    #[arg(long = "trusted-proxy", value_name = "ADDRESS[/PREFIX]")]
    trusted_proxies: Vec<String>,
    /// How long a token record is kept in memory, in milliseconds (0: look every token up
    /// in Redis on every request). A revocation reaches every gateway at once regardless.
    #[arg(long, default_value_t = 10_000)]
    token_cache_ms: u64,
    /// Most token records kept in memory.
    #[arg(long, default_value_t = 100_000)]
    token_cache_size: usize,
    /// Largest request body, in bytes (a message payload also meets the module's
    /// mailbox.max-payload-bytes).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest total size of the request headers, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// How long a client may take to send a request's headers, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Worker threads of the async runtime (default: one per core). Fewer threads than cores
    /// leave the rest to Redis on a shared machine, and hand fewer wake-ups between threads.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Blocking reads (long-polls and streams) in progress at once, each on its own connection.
    #[arg(long, default_value_t = 512)]
    max_blocking: usize,
    /// Allow cross-origin requests from this origin (repeatable); none: CORS off.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// `Host` accepted by the MCP endpoint /mcp besides localhost, 127.0.0.1, ::1 and the
    /// --listen address (repeatable; `*` accepts any): its guard against DNS rebinding.
    #[arg(long = "mcp-allowed-host")]
    mcp_allowed_hosts: Vec<String>,
    /// Browser `Origin` accepted by /mcp, e.g. https://app.example.com:443 (repeatable);
    /// a request with any other Origin is refused. Requests without Origin pass.
    #[arg(long = "mcp-allowed-origin")]
    mcp_allowed_origins: Vec<String>,
    /// PEM certificate: serve HTTPS (needs the `tls` feature).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<String>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<String>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for an agent; it is printed once and stored only as a hash.
    Create {
        #[command(flatten)]
        redis: RedisArgs,
        /// The agent (Redis ACL user name) the token acts for.
        agent: String,
        /// Lifetime, e.g. 3600s, 90m, 12h, 30d (default: no expiry).
        #[arg(long)]
        ttl: Option<String>,
        /// Comma-separated scopes: send, read, admin.
        #[arg(long, default_value = "send,read")]
        scope: String,
    },
    /// Revoke a token: give the token itself, or its id as `token list` shows it.
    Revoke {
        #[command(flatten)]
        redis: RedisArgs,
        token_or_id: String,
    },
    /// List tokens (ids, agents, scopes, expiry; never the tokens).
    List {
        #[command(flatten)]
        redis: RedisArgs,
    },
}

fn parse_ttl(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("bad --ttl '{s}': expected e.g. 3600s, 90m, 12h, 30d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("bad --ttl unit in '{s}': use s, m, h or d")),
    };
    if secs == 0 {
        return Err("--ttl must be positive".to_string());
    }
    Ok(secs * 1000)
}

/// The connection of a `token` command: to the server, or to the cluster.
enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

fn source(args: &RedisArgs) -> Result<backend::Source, String> {
    backend::Source::parse_all(&args.redis, args.cluster)
}

async fn connect(args: &RedisArgs) -> Result<Conn, String> {
    let t = Duration::from_millis(args.redis_timeout_ms);
    let source = source(args)?;
    if let backend::Source::Cluster { seeds, .. } = source {
        let client = redis::cluster::ClusterClientBuilder::new(seeds)
            .connection_timeout(t)
            .response_timeout(t)
            .build()
            .map_err(|e| e.to_string())?;
        return client
            .get_async_connection()
            .await
            .map(Conn::Cluster)
            .map_err(|e| format!("cannot reach the Redis Cluster: {e}"));
    }
    source
        .master(t)
        .await?
        .get_multiplexed_async_connection_with_config(
            &redis::AsyncConnectionConfig::new().set_connection_timeout(t).set_response_timeout(t),
        )
        .await
        .map(Conn::Single)
        .map_err(|e| format!("cannot reach Redis: {e}"))
}

async fn token_command(action: TokenCommand) -> Result<(), String> {
    match action {
        TokenCommand::Create { redis, agent, ttl, scope } => {
            if !tokens::valid_agent(&agent) {
                return Err(format!("bad agent name '{agent}'"));
            }
            let scopes = Scopes::parse(&scope)?;
            let ttl_ms = ttl.as_deref().map(parse_ttl).transpose()?;
            let token = tokens::generate();
            let now = now_ms();
            let record = TokenRecord {
                hash: tokens::hash(&token),
                agent,
                scopes,
                created_ms: now,
                expires_ms: ttl_ms.map(|t| now + t as i64).unwrap_or(0),
            };
            let mut conn = connect(&redis).await?;
            tokens::store_cmd(&redis.key_prefix, &record, ttl_ms)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| format!("could not store the token: {e}"))?;
            eprintln!(
                "token {} for agent '{}' (scopes {}); shown only now:",
                record.id(),
                record.agent,
                record.scopes
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::Revoke { redis, token_or_id } => {
            let mut conn = connect(&redis).await?;
            let keys: Vec<String> = if token_or_id.starts_with(tokens::TOKEN_PREFIX) {
                vec![tokens::key(&redis.key_prefix, &tokens::hash(&token_or_id))]
            } else {
                if token_or_id.len() < 8 || !token_or_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("give the token, or its id (at least 8 hex characters)".to_string());
                }
                let pattern =
                    format!("{}*", tokens::key(&redis.key_prefix, &token_or_id.to_ascii_lowercase()));
                scan(&redis, &mut conn, &pattern).await?
            };
            if keys.len() > 1 {
                return Err(format!("'{token_or_id}' matches {} tokens; give more of the id", keys.len()));
            }
            let removed: i64 = match keys.first() {
                Some(k) => {
                    redis::cmd("DEL").arg(k).query_async(&mut conn).await.map_err(|e| e.to_string())?
                }
                None => 0,
            };
            if removed == 0 {
                return Err("no such token".to_string());
            }
            if let Some(hash) = keys.first().and_then(|k| k.rsplit(':').next()) {
                announce_revocation(&redis, hash).await?;
            }
            eprintln!("revoked");
            Ok(())
        }
        TokenCommand::List { redis } => {
            let mut conn = connect(&redis).await?;
            let keys = scan(&redis, &mut conn, &format!("{}*", tokens::key(&redis.key_prefix, ""))).await?;
            println!("{:<14} {:<24} {:<16} {:<14} expires_ms", "id", "agent", "scopes", "created_ms");
            for k in keys {
                let hash = k.rsplit(':').next().unwrap_or_default().to_string();
                let v: redis::Value =
                    redis::cmd("HGETALL").arg(&k).query_async(&mut conn).await.map_err(|e| e.to_string())?;
                if let Some(r) = tokens::parse_record(&hash, &v, now_ms()) {
                    if hash.len() == 64 {
                        println!(
                            "{:<14} {:<24} {:<16} {:<14} {}",
                            r.id(),
                            r.agent,
                            r.scopes.to_string(),
                            r.created_ms,
                            r.expires_ms
                        );
                    }
                }
            }
            Ok(())
        }
    }
}

/// Tells every running gateway to drop a revoked token from its cache, and waits (a little)
/// until each has confirmed it, so that the token fails everywhere once this returns. On a
/// cluster the count is of the gateways listening on the first node given (classic pub/sub
/// reaches every node, but each node counts its own subscribers).
async fn announce_revocation(args: &RedisArgs, hash: &str) -> Result<(), String> {
    let t = Duration::from_millis(args.redis_timeout_ms);
    let fail = |e: redis::RedisError| format!("revoked, but could not tell the running gateways: {e}");
    let client = source(args)?.master(t).await?;
    let mut confirmations = client.get_async_pubsub().await.map_err(fail)?;
    confirmations.subscribe(auth::revoked_channel(&args.key_prefix)).await.map_err(fail)?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(fail)?;
    let listeners: usize = redis::cmd("PUBLISH")
        .arg(auth::revocation_channel(&args.key_prefix))
        .arg(hash)
        .query_async(&mut conn)
        .await
        .map_err(fail)?;
    let mut confirmed = 0;
    let mut messages = confirmations.on_message();
    let deadline = tokio::time::sleep(t.max(Duration::from_secs(1)));
    tokio::pin!(deadline);
    while confirmed < listeners {
        tokio::select! {
            msg = futures_util::StreamExt::next(&mut messages) => match msg {
                Some(m) if m.get_payload::<String>().ok().as_deref() == Some(hash) => confirmed += 1,
                Some(_) => {}
                None => break,
            },
            _ = &mut deadline => break,
        }
    }
    if confirmed < listeners {
        eprintln!(
            "{confirmed} of {listeners} gateways confirmed; the others drop the token within their --token-cache-ms"
        );
    }
    Ok(())
}

/// The keys matching `pattern`: on a cluster, those of every master.
async fn scan(args: &RedisArgs, conn: &mut Conn, pattern: &str) -> Result<Vec<String>, String> {
    let mut keys = match conn {
        Conn::Single(c) => scan_node(c, pattern).await?,
        Conn::Cluster(c) => {
            let nodes: String =
                redis::cmd("CLUSTER").arg("NODES").query_async(c).await.map_err(|e| e.to_string())?;
            let backend::Source::Cluster { seeds, .. } = source(args)? else {
                return Err("not a cluster".to_string());
            };
            let mut keys = Vec::new();
            for addr in cluster_masters(&nodes) {
                let mut info = seeds[0].clone();
                let Some((host, port)) = addr.rsplit_once(':').and_then(|(h, p)| Some((h, p.parse().ok()?)))
                else {
                    continue;
                };
                info.addr = match info.addr {
                    redis::ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                        redis::ConnectionAddr::TcpTls { host: host.to_string(), port, insecure, tls_params }
                    }
                    _ => redis::ConnectionAddr::Tcp(host.to_string(), port),
                };
                let mut node = redis::Client::open(info)
                    .map_err(|e| e.to_string())?
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("cannot reach {addr}: {e}"))?;
                keys.extend(scan_node(&mut node, pattern).await?);
            }
            keys
        }
    };
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// `host:port` of each master that `CLUSTER NODES` lists as up.
fn cluster_masters(nodes: &str) -> Vec<String> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            let addr = fields.get(1)?.split('@').next()?;
            (is_master && !failed).then(|| addr.to_string())
        })
        .collect()
}

async fn scan_node(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> Result<Vec<String>, String> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    Ok(keys)
}

/// The limits and caches of the token check.
struct AuthArgs {
    rate: u32,
    burst: u32,
    fail_rate: u32,
    fail_burst: u32,
    proxies: auth::TrustedProxies,
    cache: Duration,
    cache_size: usize,
}

fn build_app(
    redis: &RedisArgs,
    settings: Settings,
    auth: AuthArgs,
    max_blocking: usize,
) -> Result<app::AppState, String> {
    let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
    let backend = Backend::new(
        source(redis)?,
        Duration::from_millis(redis.redis_timeout_ms),
        max_blocking,
        metrics.clone(),
    );
    let guard = app::AuthGuard {
        cache: Arc::new(auth::TokenCache::new(auth.cache, auth.cache_size)),
        failed: auth::FailedAuthLimit::new(auth.fail_rate, auth.fail_burst),
        proxies: auth.proxies,
    };
    let app = App::new(backend, metrics, settings, auth.rate, auth.burst, guard);
    tokio::spawn(app.backend.clone().supervise());
    tokio::spawn(auth::listen_for_revocations(
        app.backend.clone(),
        app.auth.cache.clone(),
        app.settings.key_prefix.clone(),
    ));
    Ok(app)
}

fn settings(redis: &RedisArgs, max_wait_ms: u64) -> Settings {
    Settings {
        key_prefix: redis.key_prefix.clone(),
        max_wait: Duration::from_millis(max_wait_ms),
        max_count: 1000,
        stream_block: Duration::from_secs(5),
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let settings = settings(&args.redis, args.max_wait_ms);
    let auth = AuthArgs {
        rate: args.rate_limit,
        burst: args.rate_burst,
        fail_rate: args.auth_fail_rate,
        fail_burst: args.auth_fail_burst,
        proxies: auth::TrustedProxies::parse(&args.trusted_proxies)?,
        cache: Duration::from_millis(args.token_cache_ms),
        cache_size: args.token_cache_size,
    };
    let app = build_app(&args.redis, settings, auth, args.max_blocking)?;
    let limits_app = app.clone();
    tokio::spawn(async move {
        // Forget the rate-limit state of tokens and addresses not seen lately, and expired
        // cache entries, so the tables stay small.
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            if let Some(limiter) = &limits_app.limiter {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
            if let Some(failed) = &limits_app.auth.failed {
                failed.prune();
            }
            limits_app.auth.cache.prune();
        }
    });
    let limits = server::HttpLimits {
        max_body_bytes: args.max_body_bytes,
        max_header_bytes: args.max_header_bytes,
        request_timeout: Duration::from_millis(args.max_wait_ms)
            + Duration::from_millis(args.redis.redis_timeout_ms) * 2
            + Duration::from_secs(5),
        cors_origins: args.cors_origins.clone(),
        mcp: mcp::HttpSettings {
            allowed_hosts: ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()]
                .into_iter()
                .chain(std::iter::once(args.listen.ip().to_string()))
                .chain(args.mcp_allowed_hosts.iter().cloned())
                .collect(),
            allowed_origins: args.mcp_allowed_origins.clone(),
        },
    };
    let router = server::build(app, &limits);
    let tls = args.tls_cert.zip(args.tls_key);
    server::serve(router, args.listen, tls, Duration::from_millis(args.header_timeout_ms))
        .await
        .map_err(|e| format!("cannot serve on {}: {e}", args.listen))
}

async fn mcp_stdio(args: McpArgs) -> Result<(), String> {
    let settings = settings(&args.redis, args.max_wait_ms);
    let auth = AuthArgs {
        rate: 0,
        burst: 0,
        fail_rate: 0,
        fail_burst: 0,
        proxies: auth::TrustedProxies::default(),
        cache: Duration::from_secs(10),
        cache_size: 16,
    };
    let app = build_app(&args.redis, settings, auth, 16)?;
    // Give the backend a moment to connect, then refuse a token that names nobody at once,
    // rather than at the application's first tool call.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(args.redis.redis_timeout_ms * 2);
    while app.backend.is_open() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match app::authenticate(&app, &args.token).await {
        Ok(agent) => tracing::info!(agent = agent.name(), "serving MCP over stdio"),
        Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => return Err(e.detail),
        Err(e) => tracing::warn!(error = %e.detail, "token not checked yet; serving MCP over stdio"),
    }
    mcp::serve_stdio(app, args.token).await
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MAILBOX_GATEWAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(ServeArgs { workers: Some(n), .. }) = &cli.command {
        builder.worker_threads(usize::from(*n));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailbox-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Token { action } => token_command(action).await,
            Command::Mcp(args) => mcp_stdio(args).await,
            Command::Openapi => {
                println!("{}", server::openapi_json());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailbox-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90m").unwrap(), 5_400_000);
        assert_eq!(parse_ttl("10").unwrap(), 10_000);
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("5w").is_err());
        assert!(parse_ttl("x").is_err());
    }
}

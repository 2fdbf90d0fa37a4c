//! The gateway's link to Redis: one managed (multiplexed, reconnecting) connection
//! for ordinary commands, a pool of dedicated connections for blocking reads, a
//! timeout on every call, and a circuit breaker that answers 503 at once while
//! Redis is unreachable and closes again by itself when a probe gets through.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{Client, Cmd, RedisError, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::problem::{ApiError, ApiResult};

/// Where the server is: one address, or the master that Sentinel names.
pub enum Source {
    Direct(Client),
    Sentinel {
        sentinel: tokio::sync::Mutex<redis::sentinel::Sentinel>,
        service: String,
        node: redis::sentinel::SentinelNodeConnectionInfo,
    },
}

impl Source {
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/<master name>`, or any URL
    /// the redis crate takes.
    pub fn parse(url: &str) -> Result<Source, String> {
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            return Client::open(url).map(Source::Direct).map_err(|e| format!("bad --redis URL: {e}"));
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hosts, service) =
            rest.split_once('/').ok_or("a redis+sentinel:// URL ends with /<master name>")?;
        if service.is_empty() || hosts.is_empty() {
            return Err("a redis+sentinel:// URL needs sentinels and a master name".to_string());
        }
        let nodes: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
        let sentinel =
            redis::sentinel::Sentinel::build(nodes).map_err(|e| format!("bad sentinel address: {e}"))?;
        let (username, password) = match auth.map(|a| a.split_once(':')) {
            Some(Some((u, p))) => (Some(u.to_string()).filter(|u| !u.is_empty()), Some(p.to_string())),
            Some(None) => (None, auth.map(str::to_string)),
            None => (None, None),
        };
        let node = redis::sentinel::SentinelNodeConnectionInfo {
            tls_mode: None,
            redis_connection_info: Some(redis::RedisConnectionInfo {
                db: 0,
                username,
                password,
                protocol: Default::default(),
            }),
        };
        Ok(Source::Sentinel {
            sentinel: tokio::sync::Mutex::new(sentinel),
            service: service.to_string(),
            node,
        })
    }

    /// The client of the server to use now: with Sentinel, the master it names at this moment.
    pub async fn master(&self, timeout: Duration) -> Result<Client, String> {
        match self {
            Source::Direct(c) => Ok(c.clone()),
            Source::Sentinel { sentinel, service, node } => {
                let mut s = sentinel.lock().await;
                tokio::time::timeout(timeout, s.async_master_for(service, Some(node)))
                    .await
                    .map_err(|_| "Sentinel did not answer in time".to_string())?
                    .map_err(|e| format!("Sentinel: {e}"))
            }
        }
    }
}

pub struct Backend {
    source: Source,
    client: RwLock<Option<Client>>,
    manager: RwLock<Option<ConnectionManager>>,
    open: AtomicBool,
    last_error: Mutex<String>,
    idle: Mutex<Vec<MultiplexedConnection>>,
    blocking_slots: Arc<Semaphore>,
    max_idle: usize,
    pub timeout: Duration,
    metrics: Arc<Metrics>,
}

/// A failure talking to Redis: the server's own refusal, or no answer at all.
pub enum CallError {
    /// Redis answered with an error reply (`code detail`).
    Refused { code: String, detail: String },
    /// No usable answer: connection refused or lost, timeout, circuit open.
    Unavailable(String),
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Refused { code, detail } => ApiError::from_module(&code, &detail),
            CallError::Unavailable(why) => ApiError::unavailable(format!("Redis is unavailable: {why}")),
        }
    }
}

fn is_link_failure(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.code().is_none()
}

impl Backend {
    pub fn new(source: Source, timeout: Duration, max_blocking: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let client = match &source {
            Source::Direct(c) => Some(c.clone()),
            Source::Sentinel { .. } => None,
        };
        let backend = Arc::new(Backend {
            source,
            client: RwLock::new(client),
            manager: RwLock::new(None),
            open: AtomicBool::new(true),
            last_error: Mutex::new("not connected yet".to_string()),
            idle: Mutex::new(Vec::new()),
            blocking_slots: Arc::new(Semaphore::new(max_blocking)),
            max_idle: 32,
            timeout,
            metrics,
        });
        backend.metrics.circuit_open.set(1);
        backend
    }

    /// Keeps probing while the circuit is open; closes it (with a fresh managed
    /// connection) when Redis answers again. Runs for the life of the process.
    pub async fn supervise(self: Arc<Self>) {
        loop {
            if self.open.load(Ordering::Acquire) {
                match self.connect_manager().await {
                    Ok(manager) => {
                        if let Ok(mut slot) = self.manager.write() {
                            *slot = Some(manager);
                        }
                        if let Ok(mut idle) = self.idle.lock() {
                            idle.clear();
                        }
                        self.open.store(false, Ordering::Release);
                        self.metrics.circuit_open.set(0);
                        tracing::info!("redis reachable: circuit closed");
                    }
                    Err(why) => self.set_error(why),
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Finds the server (asks Sentinel again) and keeps its client for dedicated connections.
    async fn resolve(&self) -> Result<Client, String> {
        let client = self.source.master(self.timeout * 2).await?;
        if let Ok(mut slot) = self.client.write() {
            *slot = Some(client.clone());
        }
        Ok(client)
    }

    fn client(&self) -> Result<Client, CallError> {
        self.client
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| CallError::Unavailable("no master known yet".to_string()))
    }

    async fn connect_manager(&self) -> Result<ConnectionManager, String> {
        let client = self.resolve().await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_number_of_retries(1);
        let fut = ConnectionManager::new_with_config(client, config);
        let mut manager = match tokio::time::timeout(self.timeout * 2, fut).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connect timed out".to_string()),
        };
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.timeout, manager.send_packed_command(&ping)).await {
            Ok(Ok(_)) => Ok(manager),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("PING timed out".to_string()),
        }
    }

    fn set_error(&self, why: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = why;
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub fn last_error(&self) -> String {
        self.last_error.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn trip(&self, why: String) {
        if !self.open.swap(true, Ordering::AcqRel) {
            tracing::warn!(error = %why, "redis unreachable: circuit open");
        }
        self.metrics.circuit_open.set(1);
        self.set_error(why);
    }

    fn fail_fast(&self) -> Result<(), CallError> {
        if self.is_open() {
            return Err(CallError::Unavailable(format!("circuit open ({})", self.last_error())));
        }
        Ok(())
    }

    fn classify(&self, e: RedisError) -> CallError {
        if e.kind() == redis::ErrorKind::ParseError {
            // Redis answered, with an error reply whose text is not UTF-8 (the module
            // echoes arguments in its error texts): a refusal, not an outage. The
            // managed connection reconnects by itself.
            self.metrics.redis_errors.with_label_values(&["reply"]).inc();
            return CallError::Refused {
                code: "ERR".to_string(),
                detail: "the request was refused; the server's error text was not UTF-8".to_string(),
            };
        }
        if is_link_failure(&e) {
            self.metrics.redis_errors.with_label_values(&["connection"]).inc();
            let why = e.to_string();
            self.trip(why.clone());
            CallError::Unavailable(why)
        } else {
            self.metrics.redis_errors.with_label_values(&["reply"]).inc();
            if matches!(e.code(), Some("READONLY" | "MASTERDOWN")) {
                // The server is not (or no longer) the master: find the master again.
                self.trip(e.to_string());
            }
            CallError::Refused {
                code: e.code().unwrap_or("ERR").to_string(),
                detail: e.detail().unwrap_or_default().to_string(),
            }
        }
    }

    /// One ordinary command on the shared connection, within the call timeout.
    pub async fn call(&self, cmd: &Cmd) -> Result<Value, CallError> {
        self.fail_fast()?;
        let Some(mut manager) = self.manager.read().ok().and_then(|m| m.clone()) else {
            return Err(CallError::Unavailable("not connected".to_string()));
        };
        match tokio::time::timeout(self.timeout, manager.send_packed_command(cmd)).await {
            Ok(Ok(v)) => v.extract_error().map_err(|e| self.classify(e)),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => {
                self.metrics.redis_errors.with_label_values(&["timeout"]).inc();
                self.trip("timed out".to_string());
                Err(CallError::Unavailable("timed out".to_string()))
            }
        }
    }

    /// A command that may block for up to `block` on the server (`MAILBOX.READ ... BLOCK`):
    /// on a dedicated connection, so that it stalls nobody else.
    pub async fn call_blocking(&self, cmd: &Cmd, block: Duration) -> Result<Value, CallError> {
        self.fail_fast()?;
        let _permit = match tokio::time::timeout(self.timeout, self.blocking_slots.acquire()).await {
            Ok(Ok(p)) => p,
            _ => return Err(CallError::Unavailable("too many blocking reads in progress".to_string())),
        };
        let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(Duration::from_secs(24 * 3600));
                let client = self.client()?;
                let fut = client.get_multiplexed_async_connection_with_config(&config);
                match tokio::time::timeout(self.timeout, fut).await {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => return Err(self.classify(e)),
                    Err(_) => {
                        self.trip("connect timed out".to_string());
                        return Err(CallError::Unavailable("connect timed out".to_string()));
                    }
                }
            }
        };
        let result = tokio::time::timeout(block + self.timeout, conn.send_packed_command(cmd))
            .await
            .map(|r| r.and_then(Value::extract_error));
        match result {
            Ok(Ok(v)) => {
                if let Ok(mut idle) = self.idle.lock() {
                    if idle.len() < self.max_idle {
                        idle.push(conn);
                    }
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                let err = self.classify(e);
                if let CallError::Refused { .. } = err {
                    if let Ok(mut idle) = self.idle.lock() {
                        if idle.len() < self.max_idle {
                            idle.push(conn);
                        }
                    }
                }
                Err(err)
            }
            // The connection is dropped with its pending reply: never reused.
            Err(_) => {
                self.metrics.redis_errors.with_label_values(&["timeout"]).inc();
                self.trip("blocking read timed out".to_string());
                Err(CallError::Unavailable("timed out".to_string()))
            }
        }
    }

    /// A connection of its own for a real-time stream's reads, with its client id so
    /// that a blocked read can be woken (`CLIENT UNBLOCK`) when the stream goes away.
    pub async fn dedicated(&self) -> Result<Dedicated, CallError> {
        self.fail_fast()?;
        let permit = match self.blocking_slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => return Err(CallError::Unavailable("too many blocking reads in progress".to_string())),
        };
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(Duration::from_secs(24 * 3600));
        let client = self.client()?;
        let mut conn = match tokio::time::timeout(
            self.timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.classify(e)),
            Err(_) => return Err(CallError::Unavailable("connect timed out".to_string())),
        };
        let id = match tokio::time::timeout(
            self.timeout,
            conn.send_packed_command(&redis::cmd("CLIENT").arg("ID").clone()),
        )
        .await
        {
            Ok(Ok(Value::Int(id))) => id,
            Ok(Err(e)) => return Err(self.classify(e)),
            _ => return Err(CallError::Unavailable("CLIENT ID failed".to_string())),
        };
        Ok(Dedicated { conn, id, _permit: permit })
    }

    /// A blocking command on a stream's own connection.
    pub async fn call_dedicated(
        &self,
        d: &mut Dedicated,
        cmd: &Cmd,
        block: Duration,
    ) -> Result<Value, CallError> {
        self.fail_fast()?;
        let result = tokio::time::timeout(block + self.timeout, d.conn.send_packed_command(cmd))
            .await
            .map(|r| r.and_then(Value::extract_error));
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => {
                self.metrics.redis_errors.with_label_values(&["timeout"]).inc();
                self.trip("blocking read timed out".to_string());
                Err(CallError::Unavailable("timed out".to_string()))
            }
        }
    }

    /// A RESP3 connection of its own whose pub/sub pushes (`smessage` after `SSUBSCRIBE`)
    /// go to `pushes`; the caller keeps it for as long as it listens.
    pub async fn push_connection(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<MultiplexedConnection, CallError> {
        self.fail_fast()?;
        let mut info = self.client()?.get_connection_info().clone();
        info.redis.protocol = redis::ProtocolVersion::RESP3;
        let client = Client::open(info).map_err(|e| CallError::Unavailable(e.to_string()))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(self.timeout)
            .set_push_sender(pushes);
        match tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection_with_config(&config))
            .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(CallError::Unavailable("connect timed out".to_string())),
        }
    }

    pub async fn api(&self, cmd: &Cmd) -> ApiResult<Value> {
        self.call(cmd).await.map_err(ApiError::from)
    }
}

/// A stream's own connection (see [`Backend::dedicated`]).
pub struct Dedicated {
    conn: MultiplexedConnection,
    pub id: i64,
    _permit: OwnedSemaphorePermit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let Ok(Source::Sentinel { service, node, .. }) =
            Source::parse("redis+sentinel://gw:pw@h1:26379,h2:26380/mymaster")
        else {
            panic!("not a sentinel source");
        };
        assert_eq!(service, "mymaster");
        let info = node.redis_connection_info.unwrap();
        assert_eq!((info.username.as_deref(), info.password.as_deref()), (Some("gw"), Some("pw")));
        assert!(matches!(Source::parse("redis://127.0.0.1:6399"), Ok(Source::Direct(_))));
        assert!(Source::parse("redis+sentinel://h1:26379").is_err());
        assert!(Source::parse("redis+sentinel://h1:26379/").is_err());
        assert!(Source::parse("nonsense://x").is_err());
    }
}

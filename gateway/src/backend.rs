//! The gateway's link to Redis: one managed (multiplexed, reconnecting) connection
//! for ordinary commands (a cluster connection that routes each command to its slot's
//! master, on Redis Cluster), a pool of dedicated connections for blocking reads, a
//! timeout on every call, and a circuit breaker that answers 503 at once while
//! Redis is unreachable and closes again by itself when a probe gets through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Routable, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisError, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;
use crate::problem::{ApiError, ApiResult};

/// Where the server is: one address, the master that Sentinel names, or a Redis Cluster.
pub enum Source {
    Direct(Client),
    Sentinel {
        sentinel: tokio::sync::Mutex<redis::sentinel::Sentinel>,
        service: String,
        node: redis::sentinel::SentinelNodeConnectionInfo,
    },
    /// The cluster's seed nodes (all with the same credentials, those of the first).
    Cluster {
        seeds: Vec<ConnectionInfo>,
    },
}

impl Source {
    /// One `--redis` value, or several: `redis+sentinel://[user:password@]host:port[,host:port...]/<master
    /// name>`; a comma-separated list of cluster nodes (`redis://user:pw@h1:7000,h2:7001`, a
    /// node without a scheme taking the first one's scheme and credentials); any URL the redis
    /// crate takes. Several nodes, or `cluster`, mean Redis Cluster.
    pub fn parse_all(urls: &[String], cluster: bool) -> Result<Source, String> {
        if let [one] = urls {
            if one.starts_with("redis+sentinel://") {
                if cluster {
                    return Err("--cluster does not go with a redis+sentinel:// URL".to_string());
                }
                return Source::parse(one);
            }
        }
        let mut nodes: Vec<String> = Vec::new();
        for url in urls {
            for part in url.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if part.starts_with("redis+sentinel://") {
                    return Err("a redis+sentinel:// URL cannot be one of several --redis nodes".to_string());
                }
                nodes.push(part.to_string());
            }
        }
        let Some(first) = nodes.first().cloned() else {
            return Err("--redis needs a URL".to_string());
        };
        if nodes.len() == 1 && !cluster {
            return Source::parse(&first);
        }
        let (scheme, rest) = first.split_once("://").ok_or("a cluster node URL starts with redis://")?;
        let auth = rest.rsplit_once('@').map(|(a, _)| a);
        let seeds = nodes
            .iter()
            .map(|n| {
                let url = if n.contains("://") {
                    n.clone()
                } else {
                    match auth {
                        Some(a) => format!("{scheme}://{a}@{n}"),
                        None => format!("{scheme}://{n}"),
                    }
                };
                url.as_str().into_connection_info().map_err(|e| format!("bad cluster node '{n}': {e}"))
            })
            .collect::<Result<Vec<ConnectionInfo>, String>>()?;
        ClusterClient::new(seeds.clone()).map_err(|e| format!("bad cluster nodes: {e}"))?;
        Ok(Source::Cluster { seeds })
    }

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
            Source::Cluster { seeds } => {
                Client::open(seeds[0].clone()).map_err(|e| format!("bad cluster node: {e}"))
            }
        }
    }
}

pub struct Backend {
    source: Source,
    client: RwLock<Option<Client>>,
    shared: RwLock<Option<Shared>>,
    open: AtomicBool,
    last_error: Mutex<String>,
    /// Idle blocking-read connections by node address ("" outside a cluster).
    idle: Mutex<HashMap<String, Vec<MultiplexedConnection>>>,
    /// On a cluster: the node serving each slot, as `MOVED` replies taught it.
    slots: Mutex<HashMap<u16, String>>,
    blocking_slots: Arc<Semaphore>,
    max_idle: usize,
    pub timeout: Duration,
    metrics: Arc<Metrics>,
}

/// The connection for ordinary commands. Cloned onto the stack for each call (both are handles
/// to a shared connection), so the size difference of the variants costs nothing worth a box.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Shared {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
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

/// The slot a command is routed by, for the module commands whose routing name is not their
/// first argument (the cluster client routes the others by it): `MAILBOX.ACL GRANT|REVOKE|
/// CHECK|QUOTA` by the name after the subcommand's agent and permission (or rate), `MAILBOX.ACL
/// LIST` by its namespace, `MAILBOX.DEAD LIST|REQUEUE|PURGE` by its mailbox.
fn module_route(cmd: &Cmd) -> Option<RoutingInfo> {
    let name = Routable::arg_idx(cmd, 0)?.to_ascii_uppercase();
    let sub = Routable::arg_idx(cmd, 1)?.to_ascii_uppercase();
    let key = match (name.as_slice(), sub.as_slice()) {
        (b"MAILBOX.ACL", b"LIST") => Routable::arg_idx(cmd, 2)?,
        (b"MAILBOX.ACL", _) => Routable::arg_idx(cmd, 4)?,
        (b"MAILBOX.DEAD", b"LIST" | b"REQUEUE" | b"PURGE") => Routable::arg_idx(cmd, 2)?,
        _ => return None,
    };
    Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        redis::cluster_routing::get_slot(key),
        SlotAddr::Master,
    ))))
}

/// `host:port` of a connection's address.
fn address_of(info: &ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } => format!("{h}:{p}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
    }
}

impl Backend {
    pub fn new(source: Source, timeout: Duration, max_blocking: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let client = match &source {
            Source::Direct(c) => Some(c.clone()),
            Source::Sentinel { .. } | Source::Cluster { .. } => None,
        };
        let backend = Arc::new(Backend {
            source,
            client: RwLock::new(client),
            shared: RwLock::new(None),
            open: AtomicBool::new(true),
            last_error: Mutex::new("not connected yet".to_string()),
            idle: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
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
                match self.connect_shared().await {
                    Ok(shared) => {
                        if let Ok(mut slot) = self.shared.write() {
                            *slot = Some(shared);
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

    async fn connect_shared(&self) -> Result<Shared, String> {
        let mut shared = match &self.source {
            Source::Cluster { seeds, .. } => {
                // A cluster client of our own, with this gateway's timeouts.
                let client = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| e.to_string())?;
                self.resolve().await?;
                match tokio::time::timeout(self.timeout * 2, client.get_async_connection()).await {
                    Ok(Ok(c)) => Shared::Cluster(c),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("connect timed out".to_string()),
                }
            }
            _ => {
                let client = self.resolve().await?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(self.timeout)
                    .set_number_of_retries(1);
                let fut = ConnectionManager::new_with_config(client, config);
                match tokio::time::timeout(self.timeout * 2, fut).await {
                    Ok(Ok(m)) => Shared::Single(m),
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("connect timed out".to_string()),
                }
            }
        };
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.timeout, shared.send(&ping)).await {
            Ok(Ok(_)) => Ok(shared),
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
        if let Some((addr, slot)) = e.redirect_node() {
            // A cluster slot moved: go to its new node next time.
            self.learn(slot, addr);
            return CallError::Unavailable(format!("slot {slot} moved to {addr}"));
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
        let Some(mut shared) = self.shared.read().ok().and_then(|m| m.clone()) else {
            return Err(CallError::Unavailable("not connected".to_string()));
        };
        match tokio::time::timeout(self.timeout, shared.send(cmd)).await {
            Ok(Ok(v)) => v.extract_error().map_err(|e| self.classify(e)),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => {
                self.metrics.redis_errors.with_label_values(&["timeout"]).inc();
                self.trip("timed out".to_string());
                Err(CallError::Unavailable("timed out".to_string()))
            }
        }
    }

    /// Whether the server is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.source, Source::Cluster { .. })
    }

    /// One ordinary command on every master: on a cluster each master's reply with its
    /// address (a node that fails fails the call), elsewhere the one server's reply.
    pub async fn call_masters(&self, cmd: &Cmd) -> Result<Vec<(String, Value)>, CallError> {
        self.fail_fast()?;
        let Some(Shared::Cluster(mut conn)) = self.shared.read().ok().and_then(|m| m.clone()) else {
            return Ok(vec![(String::new(), self.call(cmd).await?)]);
        };
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let reply = match tokio::time::timeout(self.timeout, conn.route_command(cmd, routing)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(self.classify(e)),
            Err(_) => return Err(CallError::Unavailable("timed out".to_string())),
        };
        match reply {
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(addr, v)| {
                    let addr = crate::reply::string(&addr).unwrap_or_default();
                    v.extract_error().map(|v| (addr, v)).map_err(|e| self.classify(e))
                })
                .collect(),
            other => Ok(vec![(String::new(), other)]),
        }
    }

    /// On a cluster: remembers the node `MOVED` named for a slot.
    fn learn(&self, slot: u16, addr: &str) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(slot, addr.to_string());
        }
    }

    /// The node to open a dedicated connection on for `key`, and its client: the server
    /// (or Sentinel's master), or on a cluster the node last known to serve the key's slot
    /// (a seed node until a `MOVED` says otherwise).
    fn node_for(&self, key: &[u8]) -> Result<(String, Client), CallError> {
        let Source::Cluster { seeds, .. } = &self.source else {
            return Ok((String::new(), self.client()?));
        };
        let slot = redis::cluster_routing::get_slot(key);
        let known = self.slots.lock().ok().and_then(|s| s.get(&slot).cloned());
        let mut info = seeds[0].clone();
        let addr = match known {
            Some(addr) => {
                let (host, port) = addr
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                    .ok_or_else(|| CallError::Unavailable(format!("bad node address {addr}")))?;
                info.addr = match info.addr {
                    ConnectionAddr::TcpTls { insecure, tls_params, .. } => {
                        ConnectionAddr::TcpTls { host, port, insecure, tls_params }
                    }
                    _ => ConnectionAddr::Tcp(host, port),
                };
                addr
            }
            None => address_of(&info),
        };
        let client = Client::open(info).map_err(|e| CallError::Unavailable(e.to_string()))?;
        Ok((addr, client))
    }

    async fn open_dedicated(&self, client: &Client) -> Result<MultiplexedConnection, CallError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(Duration::from_secs(24 * 3600));
        match tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection_with_config(&config))
            .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => {
                self.trip("connect timed out".to_string());
                Err(CallError::Unavailable("connect timed out".to_string()))
            }
        }
    }

    fn put_idle(&self, addr: String, conn: MultiplexedConnection) {
        if let Ok(mut idle) = self.idle.lock() {
            let pool = idle.entry(addr).or_default();
            if pool.len() < self.max_idle {
                pool.push(conn);
            }
        }
    }

    /// A command that may block for up to `block` on the server (`MAILBOX.READ ... BLOCK`):
    /// on a dedicated connection, so that it stalls nobody else. On a cluster, on the node of
    /// the command's key (its first argument), followed once if that slot has moved.
    pub async fn call_blocking(&self, cmd: &Cmd, block: Duration) -> Result<Value, CallError> {
        self.fail_fast()?;
        let _permit = match tokio::time::timeout(self.timeout, self.blocking_slots.acquire()).await {
            Ok(Ok(p)) => p,
            _ => return Err(CallError::Unavailable("too many blocking reads in progress".to_string())),
        };
        let key = Routable::arg_idx(cmd, 1).unwrap_or_default().to_vec();
        let mut redirected = false;
        loop {
            let (addr, client) = self.node_for(&key)?;
            let pooled = self.idle.lock().ok().and_then(|mut idle| idle.get_mut(&addr)?.pop());
            let mut conn = match pooled {
                Some(c) => c,
                None => self.open_dedicated(&client).await?,
            };
            let result = tokio::time::timeout(block + self.timeout, conn.send_packed_command(cmd))
                .await
                .map(|r| r.and_then(Value::extract_error));
            return match result {
                Ok(Ok(v)) => {
                    self.put_idle(addr, conn);
                    Ok(v)
                }
                Ok(Err(e)) => {
                    let moved = e.redirect_node().is_some();
                    let err = self.classify(e);
                    if moved || matches!(err, CallError::Refused { .. }) {
                        self.put_idle(addr, conn);
                    }
                    if moved && !redirected {
                        redirected = true;
                        continue;
                    }
                    Err(err)
                }
                // The connection is dropped with its pending reply: never reused.
                Err(_) => {
                    self.metrics.redis_errors.with_label_values(&["timeout"]).inc();
                    self.trip("blocking read timed out".to_string());
                    Err(CallError::Unavailable("timed out".to_string()))
                }
            };
        }
    }

    /// A connection of its own for a real-time stream's reads of `key`, with its client id so
    /// that a blocked read can be woken ([`Backend::unblock`]) when the stream goes away.
    ///
    /// A plain connection, not a multiplexed one: the stream's reader task writes the command
    /// and reads the reply itself, where a multiplexed connection reads replies in a task of its
    /// own and hands each one over, a wake-up more between Redis and the client.
    pub async fn dedicated(&self, key: &str) -> Result<Dedicated, CallError> {
        self.fail_fast()?;
        let permit = match self.blocking_slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => return Err(CallError::Unavailable("too many blocking reads in progress".to_string())),
        };
        let (addr, client) = self.node_for(key.as_bytes())?;
        // The plain connection is deprecated in favour of the multiplexed one, for its
        // sharing; a stream's connection is never shared.
        #[allow(deprecated)]
        let mut conn = match tokio::time::timeout(self.timeout, client.get_async_connection()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.classify(e)),
            Err(_) => {
                self.trip("connect timed out".to_string());
                return Err(CallError::Unavailable("connect timed out".to_string()));
            }
        };
        let id = match tokio::time::timeout(
            self.timeout,
            conn.req_packed_command(&redis::cmd("CLIENT").arg("ID").clone()),
        )
        .await
        {
            Ok(Ok(Value::Int(id))) => id,
            Ok(Err(e)) => return Err(self.classify(e)),
            _ => return Err(CallError::Unavailable("CLIENT ID failed".to_string())),
        };
        Ok(Dedicated { conn, id, addr, _permit: permit })
    }

    /// A blocking command on a stream's own connection. A moved slot is `Unavailable`: the
    /// stream opens a new connection, on the node that serves the slot now.
    pub async fn call_dedicated(
        &self,
        d: &mut Dedicated,
        cmd: &Cmd,
        block: Duration,
    ) -> Result<Value, CallError> {
        self.fail_fast()?;
        let result = tokio::time::timeout(block + self.timeout, d.conn.req_packed_command(cmd))
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

    /// Wakes the read blocked on a stream's connection (`CLIENT UNBLOCK`, on its node).
    pub async fn unblock(&self, d_id: i64, d_addr: &str) -> Result<Value, CallError> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNBLOCK").arg(d_id);
        let Some(Shared::Cluster(mut conn)) = self.shared.read().ok().and_then(|m| m.clone()) else {
            return self.call(&cmd).await;
        };
        let (host, port) = d_addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| CallError::Unavailable(format!("bad node address {d_addr}")))?;
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        match tokio::time::timeout(self.timeout, conn.route_command(&cmd, routing)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(e)),
            Err(_) => Err(CallError::Unavailable("timed out".to_string())),
        }
    }

    /// A RESP3 connection of its own, subscribed (`SSUBSCRIBE`) to the sharded pub/sub
    /// `channel`, whose pushes go to `pushes`; the caller keeps it for as long as it
    /// listens. On a cluster, on the node of the channel's slot.
    pub async fn push_subscription(
        &self,
        channel: &str,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<MultiplexedConnection, CallError> {
        self.fail_fast()?;
        let mut redirected = false;
        loop {
            let (_, client) = self.node_for(channel.as_bytes())?;
            let mut info = client.get_connection_info().clone();
            info.redis.protocol = redis::ProtocolVersion::RESP3;
            let client = Client::open(info).map_err(|e| CallError::Unavailable(e.to_string()))?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(self.timeout)
                .set_response_timeout(self.timeout)
                .set_push_sender(pushes.clone());
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
            let sub = redis::cmd("SSUBSCRIBE").arg(channel).clone();
            match tokio::time::timeout(self.timeout, conn.send_packed_command(&sub)).await {
                Ok(Ok(_)) => return Ok(conn),
                Ok(Err(e)) => {
                    let moved = e.redirect_node().is_some();
                    let err = self.classify(e);
                    if moved && !redirected {
                        redirected = true;
                        continue;
                    }
                    return Err(err);
                }
                Err(_) => return Err(CallError::Unavailable("SSUBSCRIBE timed out".to_string())),
            }
        }
    }

    /// A pub/sub connection of its own (classic pub/sub reaches every node of a cluster,
    /// so any node will do).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, String> {
        let client = match self.client() {
            Ok(c) => c,
            Err(_) => self.resolve().await?,
        };
        match tokio::time::timeout(self.timeout, client.get_async_pubsub()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".to_string()),
        }
    }

    pub async fn api(&self, cmd: &Cmd) -> ApiResult<Value> {
        self.call(cmd).await.map_err(ApiError::from)
    }
}

impl Shared {
    async fn send(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Shared::Single(m) => m.send_packed_command(cmd).await,
            Shared::Cluster(c) => match module_route(cmd) {
                Some(routing) => c.route_command(cmd, routing).await,
                None => c.req_packed_command(cmd).await,
            },
        }
    }
}

/// A stream's own connection (see [`Backend::dedicated`]).
pub struct Dedicated {
    #[allow(deprecated)]
    conn: redis::aio::Connection,
    pub id: i64,
    /// Its node on a cluster (`host:port`), for `CLIENT UNBLOCK`.
    pub addr: String,
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

    #[test]
    fn cluster_node_lists_parse() {
        let one = |s: &str| vec![s.to_string()];
        let Ok(Source::Cluster { seeds }) = Source::parse_all(&one("redis://gw:pw@h1:7000,h2:7001"), false)
        else {
            panic!("not a cluster source");
        };
        assert_eq!(seeds.iter().map(address_of).collect::<Vec<_>>(), ["h1:7000", "h2:7001"]);
        assert_eq!(seeds[1].redis.username.as_deref(), Some("gw"));
        assert_eq!(seeds[1].redis.password.as_deref(), Some("pw"));
        let repeated = vec!["redis://h1:7000".to_string(), "redis://h2:7000".to_string()];
        assert!(matches!(Source::parse_all(&repeated, false), Ok(Source::Cluster { .. })));
        assert!(matches!(Source::parse_all(&one("redis://h1:7000"), false), Ok(Source::Direct(_))));
        assert!(matches!(Source::parse_all(&one("redis://h1:7000"), true), Ok(Source::Cluster { .. })));
        assert!(matches!(
            Source::parse_all(&one("redis+sentinel://h1:26379,h2:26379/m"), false),
            Ok(Source::Sentinel { .. })
        ));
        assert!(Source::parse_all(&one("redis+sentinel://h1:26379/m"), true).is_err());
        assert!(Source::parse_all(&[], false).is_err());
    }

    #[test]
    fn module_commands_are_routed_by_their_name_argument() {
        let slot = |k: &str| redis::cluster_routing::get_slot(k.as_bytes());
        let route_of = |cmd: &Cmd| match module_route(cmd) {
            Some(RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(r))) => {
                (0..16384).find(|s| r == Route::new(*s, SlotAddr::Master))
            }
            _ => None,
        };
        let check = redis::cmd("MAILBOX.ACL").arg("CHECK").arg("alice").arg("read").arg("{t1}bob").clone();
        assert_eq!(route_of(&check), Some(slot("{t1}bob")));
        let list = redis::cmd("mailbox.acl").arg("list").arg("{t2}").clone();
        assert_eq!(route_of(&list), Some(slot("{t2}")));
        let dead = redis::cmd("MAILBOX.DEAD").arg("LIST").arg("{t3}bob").clone();
        assert_eq!(route_of(&dead), Some(slot("{t3}bob")));
        assert_eq!(route_of(&redis::cmd("MAILBOX.SEND").arg("{t1}bob").arg("x").clone()), None);
    }
}

//! Integration-test harness: each test starts its own `redis-server` with the module loaded, on a
//! free port, in a temporary directory of its own.
//!
//! Every test file uses it with `mod common;`; `common::mailbox` holds the helpers that run
//! `MAILBOX.*` commands and parse their replies. The module is `MAILBOX_MODULE` or
//! `target/debug/libredis_mailbox.so` (run `cargo build` first; `scripts/test` does).
//! The server binary is `MAILBOX_SERVER` or `redis-server` from PATH; a `valkey-server` there runs
//! the same tests on Valkey (`scripts/test --server valkey`), and `server_kind()` tells a test
//! which server it runs on where the two legitimately differ.
//! A server is shut down and its directory removed when the `Server` is dropped; if the test is
//! panicking, the directory is kept and its path and log tail are printed to stderr.
#![allow(dead_code)]

pub mod mailbox;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a server has to answer PING and finish loading.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a replica has to connect and finish its initial sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SHUTDOWN may take before the process is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout of the connections `client()` hands out, so a stuck test fails instead of
/// hanging CI. A test that blocks longer can call `set_read_timeout(None)`.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Starting attempts, each on a fresh port, before giving up (another process may grab a port
/// between the probe and redis-server binding it).
const START_TRIES: usize = 3;
/// Log lines printed when a test fails with a server still around.
const LOG_LINES_ON_PANIC: usize = 30;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// How to start a server, on top of the harness's defaults.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Extra redis-server options, e.g. `("appendonly", "yes")`, passed as `--key value` after the
    /// defaults, so they override them. The value is split on whitespace into separate arguments
    /// (`("user", "alice on >pw ~* +@all")`, `("replicaof", "127.0.0.1 6379")`); an empty value
    /// passes one empty argument (`("save", "")`).
    pub config: Vec<(String, String)>,
    /// Appended after the module path on `--loadmodule`. The module reads its configs from
    /// these by their bare names: `"default-lease-ms", "500"`. (A `"mailbox.default-lease-ms"`
    /// here is ignored; in `config` it is the full name: `("mailbox.default-lease-ms", "500")`.)
    pub module_args: Vec<String>,
}

impl ServerOptions {
    fn with(mut self, key: &str, value: &str) -> Self {
        self.config.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running `redis-server` with the module loaded, owned by one test.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    options: ServerOptions,
}

impl Server {
    /// A server with the default options (no persistence, debug commands on).
    pub fn start() -> Server {
        Server::start_with(ServerOptions::default())
    }

    pub fn start_with(opts: ServerOptions) -> Server {
        Server::try_start_with(opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `start_with`, with the reason (and the log tails of each try) as an error instead of a
    /// panic, for a test that expects a server to refuse its options.
    pub fn try_start_with(opts: ServerOptions) -> Result<Server, String> {
        let mut failures = Vec::new();
        for _ in 0..START_TRIES {
            let mut server =
                Server { port: free_port(), dir: new_temp_dir(), child: None, options: opts.clone() };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    failures.push(format!(
                        "{}\n  dir {}\n  log tail:\n{}",
                        e.message(),
                        server.dir.display(),
                        server.log_tail(LOG_LINES_ON_PANIC)
                    ));
                    server.kill_child();
                    // It exited by itself, maybe because the port was taken: try a new port.
                    // A server that hangs is not worth two more waits.
                    if !matches!(e, StartError::Exited(_)) {
                        break;
                    }
                }
            }
        }
        Err(format!(
            "{} did not start ({} tries):\n{}",
            server_binary().display(),
            failures.len(),
            failures.join("\n")
        ))
    }

    /// A server with the AOF on and fsynced on every write, for restart and crash tests.
    pub fn start_aof() -> Server {
        Server::start_with(ServerOptions::default().with("appendonly", "yes").with("appendfsync", "always"))
    }

    /// A connection to this server (connect timeout 5 s, read timeout 60 s).
    pub fn client(&self) -> redis::Connection {
        let con = connect(self.port, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("cannot connect to redis on port {}: {e}", self.port));
        con.set_read_timeout(Some(CLIENT_READ_TIMEOUT)).expect("set read timeout");
        con
    }

    /// A connection authenticated as an ACL user (`AUTH user password`); panics if refused.
    pub fn client_as(&self, user: &str, password: &str) -> redis::Connection {
        let mut con = self.client();
        redis::cmd("AUTH")
            .arg(user)
            .arg(password)
            .query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("AUTH {user} failed on port {}: {e}", self.port));
        con
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("redis-server on port {} is not running", self.port))
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed) and waits for it to exit.
    pub fn kill9(&mut self) {
        assert!(self.child.is_some(), "kill9: redis-server on port {} is not running", self.port);
        self.kill_child();
    }

    /// Starts the server again on the same port, in the same directory, with the same options,
    /// and waits until it has loaded its data. A server still running is stopped first
    /// (`SHUTDOWN NOSAVE`); after `kill9` this is a crash recovery.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if let Err(e) = self.spawn_and_wait() {
            self.kill_child();
            panic!(
                "redis-server did not restart on port {}: {}\nlog tail:\n{}",
                self.port,
                e.message(),
                self.log_tail(LOG_LINES_ON_PANIC)
            );
        }
    }

    /// `SHUTDOWN NOSAVE`, wait for the process to exit, kill it if it does not.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(mut con) = connect(self.port, Duration::from_secs(2)) {
            let _ = con.set_read_timeout(Some(SHUTDOWN_TIMEOUT));
            // The server closes the connection instead of replying: an error is the usual result.
            let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut con);
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => {
                    self.child = None;
                    return;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        self.kill_child();
    }

    /// `DEBUG DIGEST`: a hash of the whole dataset (40 zeros when it is empty).
    pub fn digest(&self) -> String {
        let mut con = self.client();
        redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("DEBUG DIGEST failed: {e}"))
    }

    /// `DEBUG DIGEST-VALUE key`: a hash of one key's value (40 zeros when it does not exist).
    pub fn digest_value(&self, key: &str) -> String {
        let mut con = self.client();
        let mut digests: Vec<String> = redis::cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg(key)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("DEBUG DIGEST-VALUE {key} failed: {e}"));
        assert_eq!(digests.len(), 1, "DEBUG DIGEST-VALUE {key}: {digests:?}");
        digests.remove(0)
    }

    /// A new server replicating this one (same options and module args), returned once the
    /// link is up and the initial sync is done.
    pub fn replica(&self) -> Server {
        // Redis 7.0 waits 5 s before a diskless full sync in case more replicas come along.
        let mut con = self.client();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg(0)
            .query::<()>(&mut con)
            .unwrap_or_else(|e| panic!("CONFIG SET repl-diskless-sync-delay 0 failed: {e}"));
        let opts = self.options.clone().with("replicaof", &format!("127.0.0.1 {}", self.port));
        let replica = Server::start_with(opts);
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let up = replica.info_field("replication", "master_link_status").as_deref() == Some("up");
            let syncing =
                replica.info_field("replication", "master_sync_in_progress").as_deref() != Some("0");
            let loading = replica.info_field("persistence", "loading").as_deref() != Some("0");
            if up && !syncing && !loading {
                return replica;
            }
            if Instant::now() >= deadline {
                panic!(
                    "replica on port {} did not sync with the master on port {} within {:?}\n\
                     replica log:\n{}\nmaster log:\n{}",
                    replica.port,
                    self.port,
                    SYNC_TIMEOUT,
                    replica.log_tail(LOG_LINES_ON_PANIC),
                    self.log_tail(LOG_LINES_ON_PANIC)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `replica` has processed everything this master sent it: `WAIT 1 5000`, then
    /// polls until both report the same `master_repl_offset` (10 s), panics on timeout.
    pub fn wait_for_replica(&self, replica: &Server) {
        let mut con = self.client();
        let _: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("WAIT failed: {e}"));
        let offset = |s: &Server| s.info_field("replication", "master_repl_offset");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let master = offset(self);
            let copy = offset(replica);
            if master.is_some() && master == copy {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "replica on port {} did not catch up with the master on port {}: \
                     master_repl_offset {master:?} vs {copy:?}",
                    replica.port, self.port
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// One field of `INFO <section>`, e.g. `info_field("replication", "role")`.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let mut con = self.client();
        let info: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("INFO {section} failed: {e}"));
        parse_info_field(&info, field)
    }

    /// The last `lines` lines of the server's log file.
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.dir, lines)
    }

    fn module_path() -> PathBuf {
        let path = match std::env::var_os("MAILBOX_MODULE") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/libredis_mailbox.so"),
        };
        if !path.is_file() {
            panic!(
                "the redis-mailbox module is not at {}: run `cargo build` first \
                 (or set MAILBOX_MODULE to the .so to test)",
                path.display()
            );
        }
        path
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(server_binary());
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .arg("--loadmodule")
            .arg(Server::module_path())
            .args(&self.options.module_args);
        for (key, value) in &self.options.config {
            cmd.arg(format!("--{key}"));
            let words: Vec<&str> = value.split_whitespace().collect();
            if words.is_empty() {
                cmd.arg("");
            } else {
                cmd.args(words);
            }
        }
        // Errors before the log file is open (a bad option, a port in use) land here.
        let out = fs::File::create(self.dir.join("stdout.log")).expect("create stdout.log");
        let err = out.try_clone().expect("clone stdout.log handle");
        cmd.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err));
        cmd
    }

    /// Spawns redis-server and waits until it answers PING and has finished loading.
    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let child = self.command().spawn().map_err(|e| {
            StartError::NotReady(format!("cannot run {} (is it installed?): {e}", server_binary().display()))
        })?;
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(StartError::Exited(format!(
                        "redis-server on port {} exited with {status}",
                        self.port
                    )));
                }
            }
            if self.is_ready(pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::NotReady(format!(
                    "redis-server on port {} not ready within {READY_TIMEOUT:?}",
                    self.port
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// PONG, done loading, and the server answering is ours (not another process that won a
    /// race for the port).
    fn is_ready(&self, pid: u32) -> bool {
        let Ok(mut con) = connect(self.port, Duration::from_millis(500)) else {
            return false;
        };
        let _ = con.set_read_timeout(Some(Duration::from_secs(2)));
        match redis::cmd("PING").query::<String>(&mut con) {
            Ok(pong) if pong == "PONG" => {}
            _ => return false,
        }
        let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut con) else {
            return false;
        };
        if parse_info_field(&info, "process_id") != Some(pid.to_string()) {
            return false;
        }
        let Ok(info) = redis::cmd("INFO").arg("persistence").query::<String>(&mut con) else {
            return false;
        };
        parse_info_field(&info, "loading").as_deref() == Some("0")
    }

    fn kill_child(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

/// Why a server did not come up.
enum StartError {
    /// The process exited (a bad option, the module refused to load, the port was taken).
    Exited(String),
    /// It could not be run, or did not get ready in time.
    NotReady(String),
}

impl StartError {
    fn message(&self) -> &str {
        match self {
            StartError::Exited(m) | StartError::NotReady(m) => m,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "test failed: keeping redis-server dir {} (port {}); last {} log lines:\n{}",
                self.dir.display(),
                self.port,
                LOG_LINES_ON_PANIC,
                self.log_tail(LOG_LINES_ON_PANIC)
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Which server the tests run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    Redis,
    Valkey,
}

/// The server binary the tests start: `MAILBOX_SERVER`, or `redis-server` from PATH.
pub fn server_binary() -> PathBuf {
    match std::env::var_os("MAILBOX_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("redis-server"),
    }
}

/// The kind and version of `server_binary()`, from its `--version` line
/// ("Redis server v=7.0.15 ..." or "Valkey server v=9.1.2 ..."), asked once per test process.
pub fn server_version() -> (ServerKind, (u32, u32, u32)) {
    static VERSION: OnceLock<(ServerKind, (u32, u32, u32))> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let binary = server_binary();
        let out = Command::new(&binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", binary.display()));
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        parse_server_version(&line)
            .unwrap_or_else(|| panic!("{} --version printed {line:?}", binary.display()))
    })
}

pub fn server_kind() -> ServerKind {
    server_version().0
}

/// "Redis server v=7.0.15 sha=..." -> (Redis, (7, 0, 15)); "Valkey server v=9.1.2 ..." -> Valkey.
pub fn parse_server_version(line: &str) -> Option<(ServerKind, (u32, u32, u32))> {
    let kind = if line.starts_with("Valkey server") {
        ServerKind::Valkey
    } else if line.starts_with("Redis server") {
        ServerKind::Redis
    } else {
        return None;
    };
    let v = line.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((kind, (major, minor, patch)))
}

pub fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

/// Polls `f` every 20 ms until it returns true; panics with `what` after `timeout_ms`.
pub fn wait_until(what: &str, timeout_ms: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout_ms} ms waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

pub fn connect(port: u16, timeout: Duration) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))?.get_connection_with_timeout(timeout)
}

/// Ports handed out stay below this, so that a cluster node's bus port (port + 10000) exists.
const MAX_PORT: u16 = 55535;

/// A port below `MAX_PORT` nobody listens on right now: bind port 0 (again while the kernel
/// hands out a higher one) and let the listener go.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0 to find a free port");
        if port < MAX_PORT {
            return port;
        }
    }
    panic!("the kernel handed out no port below {MAX_PORT} in 1000 tries");
}

/// A fresh directory under the system temp dir, unique by pid, counter and time.
pub fn new_temp_dir() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "redis-mailbox-test-{}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed),
        nanos
    ));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

pub fn parse_info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == field).then(|| value.trim().to_string())
    })
}

/// The last `lines` lines of the server's log, with whatever it printed before opening it.
fn read_tail(dir: &Path, lines: usize) -> String {
    let mut text = String::new();
    for name in ["stdout.log", "redis.log"] {
        if let Ok(content) = fs::read_to_string(dir.join(name)) {
            text.push_str(&content);
        }
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

//! Redis Cluster: the module on a real cluster of 3 masters and 3 replicas. Each test starts its
//! own cluster on free loopback ports (the `tests/common` harness with `cluster-enabled yes`, each
//! node in its own temporary directory, stopped by pid when the test ends, also on a panic).
//!
//! A small cluster-aware client below routes commands the way cluster clients do: the slot is
//! CRC16 (XMODEM) of the name's hash tag, the slot map comes from `CLUSTER SLOTS`, and `MOVED` /
//! `ASK` redirects are followed.

mod common;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mailbox::*;
use common::*;
use redis::{Connection, ErrorKind, RedisResult, Value};

const NODES: usize = 6;
const MASTERS: usize = 3;
/// Slot ranges of masters 0, 1 and 2; node `MASTERS + i` replicates master `i`.
const RANGES: [(u16, u16); MASTERS] = [(0, 5460), (5461, 10922), (10923, 16383)];
/// Small, so that a replica takes over a killed master within a few seconds.
const NODE_TIMEOUT_MS: &str = "2000";
/// Read timeout of every connection the tests open: a hang fails instead of blocking CI.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Slots

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster hashes keys with.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The slot of a key as Redis computes it: only the hash tag (between the first `{` and the
/// next `}`) counts when it is not empty.
fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &bytes[open + 1..];
            let len = rest.iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &rest[..len])
        })
        .unwrap_or(bytes);
    crc16(hashed) & 0x3FFF
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn connect(port: u16) -> RedisResult<Connection> {
    let con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
        .get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(con)
}

/// One `name:value` line of an `INFO` or `CLUSTER INFO` text.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_string())
    })
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn array(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

fn ids(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(|m| m.id.clone()).collect()
}

/// `[id, receivers]` of `MAILBOX.PUBLISH` / `MAILBOX.BROADCAST`.
fn id_and_receivers(value: &Value) -> (String, i64) {
    let items = array(value);
    assert_eq!(items.len(), 2, "[id, receivers] expected, got {value:?}");
    (text(&items[0]), int(&items[1]))
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// Six `redis-server` processes with the module loaded, joined into one cluster: nodes 0-2 are
/// masters holding `RANGES`, node 3+i replicates node i. Dropping it stops every node by pid.
struct Cluster {
    nodes: Vec<Server>,
    ids: Vec<String>,
    /// Connections the polling helpers reuse, by port (a connection per poll would leave
    /// thousands of sockets in TIME-WAIT on the loopback ports).
    polls: Mutex<HashMap<u16, Connection>>,
}

impl Cluster {
    fn start() -> Cluster {
        let bus = bus_ports(NODES);

        let nodes: Vec<Server> = thread::scope(|s| {
            let handles: Vec<_> = bus
                .iter()
                .map(|&bus_port| s.spawn(move || Server::start_with(node_options(bus_port))))
                .collect();
            handles.into_iter().map(|h| h.join().expect("a cluster node did not start")).collect()
        });
        let mut cons: Vec<Connection> = nodes.iter().map(|n| n.client()).collect();
        let ids: Vec<String> = cons.iter_mut().map(|c| text(&run(c, &["CLUSTER", "MYID"]))).collect();
        let cluster = Cluster { nodes, ids, polls: Mutex::new(HashMap::new()) };

        for (i, con) in cons.iter_mut().enumerate() {
            run(con, &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]);
        }
        for (con, (first, last)) in cons.iter_mut().zip(RANGES) {
            run(con, &["CLUSTER", "ADDSLOTSRANGE", &first.to_string(), &last.to_string()]);
        }
        for (node, bus_port) in cluster.nodes.iter().zip(&bus).skip(1) {
            let (port, bus_port) = (node.port.to_string(), bus_port.to_string());
            run(&mut cons[0], &["CLUSTER", "MEET", "127.0.0.1", &port, &bus_port]);
        }
        wait_until("every node knows the 6 nodes", 20_000, || {
            (0..NODES).all(|i| field(&cluster.cluster_info(i), "cluster_known_nodes").as_deref() == Some("6"))
        });
        for (i, con) in cons.iter_mut().enumerate().skip(MASTERS) {
            let master = &cluster.ids[i - MASTERS];
            wait_until(&format!("node {i} replicates node {}", i - MASTERS), 20_000, || {
                try_run(con, &["CLUSTER", "REPLICATE", master]).is_ok()
            });
        }
        wait_until("cluster_state:ok with 3 masters and 3 synced replicas everywhere", 30_000, || {
            cluster.is_ready()
        });
        cluster
    }

    fn port(&self, node: usize) -> u16 {
        self.nodes[node].port
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    fn node_of_port(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port == port).unwrap_or_else(|| panic!("no node on port {port}"))
    }

    fn con(&self, node: usize) -> Connection {
        self.nodes[node].client()
    }

    /// Runs `f` on the reused connection to `node`; `None` (and a fresh connection next time) if
    /// the node does not answer.
    fn poll<T>(&self, node: usize, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Option<T> {
        let port = self.port(node);
        let mut polls = self.polls.lock().expect("poll connections");
        let con = match polls.entry(port) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(connect(port).ok()?),
        };
        let result = f(con);
        if result.is_err() {
            polls.remove(&port);
        }
        result.ok()
    }

    fn cluster_info(&self, node: usize) -> String {
        // A node that is down has no info: empty.
        self.poll(node, |c| redis::cmd("CLUSTER").arg("INFO").query(c)).unwrap_or_default()
    }

    /// A counter of `MAILBOX.STATS` on `node`.
    fn stat(&self, node: usize, name: &str) -> i64 {
        self.poll(node, |c| Ok(stat(c, name))).unwrap_or_else(|| panic!("node {node} does not answer"))
    }

    fn role(&self, node: usize) -> Option<String> {
        let info: String = self.poll(node, |c| redis::cmd("INFO").arg("replication").query(c))?;
        let role = field(&info, "role")?;
        if role == "slave" && field(&info, "master_link_status").as_deref() != Some("up") {
            return Some("slave-not-synced".into());
        }
        Some(role)
    }

    /// Every node says cluster_state:ok, sees every slot served and 3 replicas in its
    /// `CLUSTER NODES`; the replicas' links are up.
    fn is_ready(&self) -> bool {
        (0..NODES).all(|i| {
            let info = self.cluster_info(i);
            if field(&info, "cluster_state").as_deref() != Some("ok")
                || field(&info, "cluster_slots_ok").as_deref() != Some("16384")
            {
                return false;
            }
            let Some(nodes) = self.poll(i, |c| redis::cmd("CLUSTER").arg("NODES").query::<String>(c)) else {
                return false;
            };
            if nodes.lines().filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("slave"))).count() != 3
            {
                return false;
            }
            match self.role(i).as_deref() {
                Some("master") => i < MASTERS,
                Some("slave") => i >= MASTERS,
                _ => false,
            }
        })
    }

    /// The port of the master serving `slot` according to `node`'s `CLUSTER SLOTS`.
    fn owner_seen_by(&self, node: usize, slot: u16) -> Option<u16> {
        self.poll(node, slot_map)?.into_iter().find(|r| r.0 <= slot && slot <= r.1).map(|r| r.2)
    }

    /// Waits until each of `nodes` says cluster_state:ok and that `port` serves `slot`.
    fn wait_owner(&self, nodes: &[usize], slot: u16, port: u16, timeout_ms: u64) {
        wait_until(&format!("nodes {nodes:?} agree that port {port} serves slot {slot}"), timeout_ms, || {
            nodes.iter().all(|&n| {
                field(&self.cluster_info(n), "cluster_state").as_deref() == Some("ok")
                    && self.owner_seen_by(n, slot) == Some(port)
            })
        });
    }

    /// The master (0-2 at the start) that serves `slot`.
    fn master_of(&self, slot: u16) -> usize {
        let port = self.owner_seen_by(0, slot).unwrap_or_else(|| panic!("nobody serves slot {slot}"));
        self.node_of_port(port)
    }

    /// The first tags from a, b, c, ..., z, aa, ab, ... whose slot `master` serves, `count` of them.
    fn tags_on(&self, master: usize, count: usize) -> Vec<String> {
        let (first, last) = RANGES[master];
        candidate_tags()
            .filter(|t| (first..=last).contains(&key_slot(&format!("{{{t}}}"))))
            .take(count)
            .collect()
    }

    /// Runs an ACL SETUSER line on every node (ACL users are per node, not cluster-wide).
    fn add_user(&self, name: &str, password: &str) {
        for i in 0..NODES {
            let mut con = self.con(i);
            let pass = format!(">{password}");
            run(&mut con, &["ACL", "SETUSER", name, "on", &pass, "~*", "&*", "+@all"]);
        }
    }

    fn client(&self) -> ClusterClient {
        ClusterClient::new(self.ports(), None)
    }

    fn client_as(&self, user: &str, password: &str) -> ClusterClient {
        ClusterClient::new(self.ports(), Some((user.to_string(), password.to_string())))
    }
}

fn node_options(bus_port: u16) -> ServerOptions {
    let config = [
        ("cluster-enabled", "yes".to_string()),
        ("cluster-config-file", "nodes.conf".to_string()),
        ("cluster-port", bus_port.to_string()),
        ("cluster-node-timeout", NODE_TIMEOUT_MS.to_string()),
        ("appendonly", "yes".to_string()),
        ("repl-diskless-sync-delay", "0".to_string()),
    ];
    ServerOptions {
        config: config.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        module_args: Vec::new(),
    }
}

/// The next bus port to try; all the tests of this process share it, so they never pick the
/// same one.
static NEXT_BUS_PORT: AtomicU32 = AtomicU32::new(0);
const BUS_PORTS: std::ops::Range<u32> = 15_000..30_000;

/// `count` free ports for the cluster bus (`cluster-port`). They come from below the kernel's
/// ephemeral range (32768 and up on Linux), where binding port 0 lands, so the node ports the
/// harness picks that way never take a bus port before its node binds it.
fn bus_ports(count: usize) -> Vec<u16> {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
        ^ std::process::id().wrapping_mul(7919);
    let _ =
        NEXT_BUS_PORT.compare_exchange(0, BUS_PORTS.start + seed % BUS_PORTS.len() as u32, SeqCst, SeqCst);
    let mut held = Vec::new();
    for _ in 0..BUS_PORTS.len() {
        if held.len() == count {
            break;
        }
        let n = NEXT_BUS_PORT.fetch_add(1, SeqCst);
        let port = BUS_PORTS.start + (n - BUS_PORTS.start) % BUS_PORTS.len() as u32;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port as u16)) {
            held.push(listener);
        }
    }
    assert_eq!(held.len(), count, "no {count} free ports in {BUS_PORTS:?}");
    held.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

fn candidate_tags() -> impl Iterator<Item = String> {
    let letters = || (b'a'..=b'z').map(|c| (c as char).to_string());
    letters().chain(letters().flat_map(move |a| letters().map(move |b| format!("{a}{b}"))))
}

/// `CLUSTER SLOTS` as (first, last, master port).
fn slot_map(con: &mut Connection) -> RedisResult<Vec<(u16, u16, u16)>> {
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query(con)?;
    let mut map = Vec::new();
    for range in array(&reply) {
        let items = array(range);
        let master = array(&items[2]);
        let as_u16 = |v: &Value| u16::try_from(int(v)).expect("a slot or port fits u16");
        map.push((as_u16(&items[0]), as_u16(&items[1]), as_u16(&master[1])));
    }
    Ok(map)
}

// ---------------------------------------------------------------------------------------------
// A minimal cluster-aware client

/// Routes each command by a name's slot to the master serving it and follows `MOVED` and `ASK`.
/// While a master is down (connection refused, `CLUSTERDOWN`, `TRYAGAIN`) it refreshes the slot
/// map and retries until `retry_for` has passed.
struct ClusterClient {
    ports: Vec<u16>,
    user: Option<(String, String)>,
    slots: Vec<(u16, u16, u16)>,
    cons: HashMap<u16, Connection>,
    retry_for: Duration,
}

impl ClusterClient {
    fn new(ports: Vec<u16>, user: Option<(String, String)>) -> ClusterClient {
        let mut client = ClusterClient {
            ports,
            user,
            slots: Vec::new(),
            cons: HashMap::new(),
            retry_for: Duration::from_secs(5),
        };
        client.refresh();
        assert!(!client.slots.is_empty(), "no node answered CLUSTER SLOTS");
        client
    }

    /// Reloads the slot map from the first node that answers with every slot served.
    fn refresh(&mut self) {
        for port in self.ports.clone() {
            match self.con(port).and_then(slot_map) {
                Ok(map) => {
                    let covered: u32 = map.iter().map(|r| u32::from(r.1 - r.0) + 1).sum();
                    if covered == 16384 {
                        self.slots = map;
                        return;
                    }
                }
                Err(_) => {
                    self.cons.remove(&port);
                }
            }
        }
    }

    fn owner(&self, slot: u16) -> u16 {
        self.slots.iter().find(|r| r.0 <= slot && slot <= r.1).map(|r| r.2).unwrap_or(self.ports[0])
    }

    /// A connection to `port` (authenticated if the client has a user), opened once.
    fn con(&mut self, port: u16) -> RedisResult<&mut Connection> {
        if !self.cons.contains_key(&port) {
            let mut con = connect(port)?;
            if let Some((user, password)) = &self.user {
                redis::cmd("AUTH").arg(user).arg(password).query::<()>(&mut con)?;
            }
            self.cons.insert(port, con);
        }
        Ok(self.cons.get_mut(&port).expect("just inserted"))
    }

    /// Runs `args` on the master serving `route`'s slot; replies with the reply and the port of
    /// the node that finally answered.
    fn query_at(&mut self, route: &str, args: &[&str]) -> RedisResult<(Value, u16)> {
        let slot = key_slot(route);
        let mut port = self.owner(slot);
        let mut asking = false;
        let deadline = Instant::now() + self.retry_for;
        loop {
            let result = self.con(port).and_then(|con| {
                if asking {
                    redis::cmd("ASKING").query::<()>(con)?;
                }
                cmd(args).query::<Value>(con)
            });
            let err = match result {
                Ok(value) => return Ok((value, port)),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            asking = false;
            match err.kind() {
                ErrorKind::Moved | ErrorKind::Ask => {
                    let (addr, _) = err.redirect_node().expect("a redirect names its node");
                    port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("host:port");
                    if err.kind() == ErrorKind::Ask {
                        asking = true;
                    } else {
                        self.refresh();
                    }
                }
                ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::ReadOnly => {
                    thread::sleep(Duration::from_millis(50));
                    self.refresh();
                    port = self.owner(slot);
                }
                _ if err.is_io_error() || err.is_connection_dropped() || err.is_connection_refusal() => {
                    self.cons.remove(&port);
                    thread::sleep(Duration::from_millis(50));
                    self.refresh();
                    port = self.owner(slot);
                }
                _ => return Err(err),
            }
        }
    }

    fn try_query(&mut self, route: &str, args: &[&str]) -> RedisResult<Value> {
        self.query_at(route, args).map(|(value, _)| value)
    }

    /// Like `query_at`, panicking on an error.
    fn q(&mut self, route: &str, args: &[&str]) -> Value {
        self.try_query(route, args)
            .unwrap_or_else(|e| panic!("{args:?} (routed by {route}): {}", err_text(&e)))
    }

    fn send(&mut self, mailbox: &str, payload: &str, opts: &[&str]) -> String {
        let mut args = vec!["MAILBOX.SEND", mailbox, payload];
        args.extend_from_slice(opts);
        text(&self.q(mailbox, &args))
    }

    fn read(&mut self, mailbox: &str, opts: &[&str]) -> Vec<Msg> {
        let mut args = vec!["MAILBOX.READ", mailbox];
        args.extend_from_slice(opts);
        messages(&self.q(mailbox, &args)).unwrap_or_default()
    }

    fn peek(&mut self, mailbox: &str) -> Vec<Msg> {
        messages(&self.q(mailbox, &["MAILBOX.PEEK", mailbox, "COUNT", "100000"])).unwrap_or_default()
    }

    fn ack(&mut self, mailbox: &str, msg_ids: &[String]) -> i64 {
        let mut args = vec!["MAILBOX.ACK", mailbox];
        args.extend(msg_ids.iter().map(String::as_str));
        int(&self.q(mailbox, &args))
    }

    /// `DEBUG DIGEST-VALUE key` on the node serving the key's slot.
    fn digest(&mut self, key: &str) -> String {
        let reply = self.q(key, &["DEBUG", "DIGEST-VALUE", key]);
        let items = array(&reply);
        assert_eq!(items.len(), 1, "DEBUG DIGEST-VALUE {key}: {reply:?}");
        text(&items[0])
    }
}

// ---------------------------------------------------------------------------------------------
// (a) agents in namespaces spread over every master

#[test]
fn agents_in_namespaces_on_every_shard_send_publish_broadcast_and_read() {
    let cluster = Cluster::start();
    cluster.add_user("alice", "alice-pw");
    cluster.add_user("bob", "bob-pw");
    let mut admin = cluster.client();
    let mut alice = cluster.client_as("alice", "alice-pw");
    let mut bob = cluster.client_as("bob", "bob-pw");

    // Two namespaces per master, so every shard serves some.
    let tags: Vec<String> = (0..MASTERS).flat_map(|m| cluster.tags_on(m, 2)).collect();
    let mut con0 = cluster.con(0);
    for t in &tags {
        let name = format!("{{{t}}}bob");
        assert_eq!(
            int(&run(&mut con0, &["CLUSTER", "KEYSLOT", &name])),
            i64::from(key_slot(&name)),
            "our CRC16 slot of {name} differs from CLUSTER KEYSLOT"
        );
    }
    // Some keys with odd braces, to be sure the hash tag rule is Redis's.
    for key in ["{}x", "{x", "x}{y}", "{a}{b}", "plain", "{user1000}.following"] {
        assert_eq!(int(&run(&mut con0, &["CLUSTER", "KEYSLOT", key])), i64::from(key_slot(key)), "{key}");
    }

    let mut served_by = BTreeSet::new();
    for t in &tags {
        let ns = format!("{{{t}}}");
        let (a, b, c) = (format!("{ns}alice"), format!("{ns}bob"), format!("{ns}carol"));
        let owner = cluster.master_of(key_slot(&ns));

        // Bob listens for pushes on his mailbox's sharded channel, on the shard's master.
        let mut listener = cluster.con(owner);
        let channel = format!("mailbox:{b}");
        let reply = run(&mut listener, &["SSUBSCRIBE", &channel]);
        assert_eq!(array(&reply).first().map(text).as_deref(), Some("ssubscribe"), "{reply:?}");

        assert_eq!(int(&bob.q(&b, &["MAILBOX.SUB", &b, "news.#"])), 1);
        assert_eq!(int(&alice.q(&a, &["MAILBOX.SUB", &a, "news.sports"])), 1);
        assert_eq!(admin.q(&c, &["MAILBOX.CREATE", &c]), Value::Okay);

        let (direct, port) = alice
            .query_at(&b, &["MAILBOX.SEND", &b, &format!("task for bob in {ns}"), "THREAD", "th"])
            .unwrap_or_else(|e| panic!("SEND {b}: {}", err_text(&e)));
        let direct = text(&direct);
        assert_eq!(port, cluster.port(owner), "SEND {b} ran on port {port}, not on the slot's master");
        served_by.insert(port);
        let sports = format!("{ns}news.sports");
        let (goal, n) = id_and_receivers(&alice.q(&sports, &["MAILBOX.PUBLISH", &sports, "goal"]));
        assert_eq!(n, 2, "PUBLISH {sports} reaches bob (news.#) and alice (news.sports)");
        let weather = format!("{ns}news.weather");
        let (rain, n) = id_and_receivers(&alice.q(&weather, &["MAILBOX.PUBLISH", &weather, "rain"]));
        assert_eq!(n, 1, "PUBLISH {weather} reaches bob only");
        let (all_hands, n) = id_and_receivers(&alice.q(&ns, &["MAILBOX.BROADCAST", &ns, "all hands"]));
        assert_eq!(n, 3, "BROADCAST {ns} reaches alice, bob and carol");

        let got = bob.read(&b, &["COUNT", "10"]);
        assert_eq!(
            ids(&got),
            vec![direct.clone(), goal.clone(), rain.clone(), all_hands.clone()],
            "bob's read"
        );
        let payloads: Vec<String> = got.iter().map(Msg::payload).collect();
        assert_eq!(
            payloads,
            vec![format!("task for bob in {ns}"), "goal".into(), "rain".into(), "all hands".into()]
        );
        assert!(got.iter().all(|m| m.str("from") == "alice"), "from is the sender's ACL user: {got:?}");
        let tos: Vec<String> = got.iter().map(|m| m.str("to")).collect();
        assert_eq!(tos, vec![b.clone(), sports.clone(), weather.clone(), ns.clone()]);
        // Bob answers the task (a message he holds), then settles everything he read.
        let answer = text(&bob.q(&b, &["MAILBOX.REPLY", &b, &direct, "done"]));
        assert_eq!(bob.ack(&b, &ids(&got)), 4);
        let got = alice.read(&a, &["COUNT", "10"]);
        assert_eq!(ids(&got), vec![goal.clone(), all_hands.clone(), answer.clone()], "alice's read");
        let reply_msg = &got[2];
        assert_eq!(
            (reply_msg.str("from"), reply_msg.str("correlation"), reply_msg.str("thread")),
            ("bob".to_string(), direct.clone(), "th".to_string())
        );
        assert_eq!(alice.ack(&a, &ids(&got)), 3);
        assert_eq!(alice.ack(&a, &ids(&got)), 0, "acked twice");

        let carol = admin.peek(&c);
        assert_eq!(ids(&carol), vec![all_hands.clone()]);

        // Presence: the agents, nothing waiting for them any more.
        let presence = admin.q(&ns, &["MAILBOX.PRESENCE", &ns]);
        let mut seen: Vec<(String, i64)> = array(&presence)
            .iter()
            .map(|entry| {
                let items = array(entry);
                let waiting = items.iter().position(|v| text(v) == "waiting").expect("a waiting field");
                (text(&items[0]), int(&items[waiting + 1]))
            })
            .collect();
        seen.sort();
        // `default` created carol's mailbox: a write command too.
        let expected = vec![("alice".to_string(), 0), ("bob".to_string(), 0), ("default".to_string(), 0)];
        assert_eq!(seen, expected, "PRESENCE {ns}: {presence:?}");

        // The pushes of bob's 4 deliveries, on the sharded channel.
        let mut pushed = Vec::new();
        for _ in 0..4 {
            let push = listener.recv_response().unwrap_or_else(|e| panic!("no push on {channel}: {e}"));
            let items = array(&push);
            assert_eq!((text(&items[0]), text(&items[1])), ("smessage".to_string(), channel.clone()));
            let json: serde_json::Value = serde_json::from_str(&text(&items[2])).expect("a JSON push");
            assert_eq!(json["mailbox"], serde_json::Value::String(b.clone()), "{json}");
            pushed.push(json["id"].as_str().expect("an id in the push").to_string());
        }
        assert_eq!(pushed, vec![direct, goal, rain, all_hands], "the pushes on {channel}");
    }
    let masters: BTreeSet<u16> = (0..MASTERS).map(|m| cluster.port(m)).collect();
    assert_eq!(served_by, masters, "the namespaces were not spread over every master");

    // Everything a namespace holds lives in its slot: every key of a master hashes to one of its
    // slots, and each namespace's keys (mailboxes, namespace key) are on its slot's master.
    for (m, (first, last)) in RANGES.iter().enumerate() {
        let mut con = cluster.con(m);
        let keys: Vec<String> =
            redis::cmd("KEYS").arg("*").query(&mut con).unwrap_or_else(|e| panic!("KEYS: {}", err_text(&e)));
        for key in &keys {
            let slot = key_slot(key);
            assert!((*first..=*last).contains(&slot), "master {m} holds {key} of slot {slot}");
        }
    }
    for t in &tags {
        let ns = format!("{{{t}}}");
        let mut con = cluster.con(cluster.master_of(key_slot(&ns)));
        for key in
            [format!("{ns}alice"), format!("{ns}bob"), format!("{ns}carol"), format!("mailbox:ns:{ns}")]
        {
            assert_eq!(int(&run(&mut con, &["EXISTS", &key])), 1, "{key} is not on its slot's master");
        }
    }

    // Every command is routed by its name argument: COMMAND GETKEYS names it, and a node that
    // does not serve the slot redirects with MOVED to the one that does.
    let ns = format!("{{{}}}", tags[0]);
    let (b, topic) = (format!("{ns}bob"), format!("{ns}news.x"));
    let grant_pattern = format!("{ns}*");
    let keyed: Vec<Vec<&str>> = vec![
        vec!["MAILBOX.SEND", &b, "hi"],
        vec!["MAILBOX.READ", &b, "COUNT", "1"],
        vec!["MAILBOX.ACK", &b, "1-0"],
        vec!["MAILBOX.NACK", &b, "1-0"],
        vec!["MAILBOX.PEEK", &b],
        vec!["MAILBOX.CREATE", &b, "UPDATE"],
        vec!["MAILBOX.INFO", &b],
        vec!["MAILBOX.REPLY", &b, "1-0", "hi"],
        vec!["MAILBOX.THREAD", &b, "th"],
        vec!["MAILBOX.SUB", &b, "news.#"],
        vec!["MAILBOX.UNSUB", &b, "news.#"],
        vec!["MAILBOX.SUBS", &b],
    ];
    // Routed by an argument that names no key of its own (a topic, a namespace, a pattern):
    // declared as a read-only key all the same, so GETKEYS and ACL key patterns see it.
    let not_keys: Vec<(Vec<&str>, usize)> = vec![
        (vec!["MAILBOX.PUBLISH", &topic, "hi"], 1),
        (vec!["MAILBOX.BROADCAST", &ns, "hi"], 1),
        (vec!["MAILBOX.PRESENCE", &ns], 1),
        (vec!["MAILBOX.ACL", "GRANT", "bob", "read", &grant_pattern], 4),
        (vec!["MAILBOX.ACL", "REVOKE", "bob", "read", &grant_pattern], 4),
        (vec!["MAILBOX.ACL", "CHECK", "bob", "read", &b], 4),
        (vec!["MAILBOX.ACL", "QUOTA", "bob", "10", &ns], 4),
        (vec!["MAILBOX.ACL", "LIST", &ns], 2),
    ];
    let owner_port = cluster.port(cluster.master_of(key_slot(&ns)));
    let other = (0..MASTERS).find(|&m| cluster.port(m) != owner_port).expect("another master");
    let mut wrong = cluster.con(other);
    let expected_moved = format!("MOVED {} 127.0.0.1:{owner_port}", key_slot(&ns));
    // MAILBOX.DEAD's subcommands name the mailbox after the subcommand.
    for args in [vec!["MAILBOX.DEAD", "LIST", &b], vec!["MAILBOX.DEAD", "PURGE", &b, "ALL"]] {
        let mut getkeys = vec!["COMMAND", "GETKEYS"];
        getkeys.extend_from_slice(&args);
        assert_eq!(run(&mut con0, &getkeys), Value::Array(vec![Value::BulkString(b.as_bytes().to_vec())]));
        assert_eq!(error_of(&mut wrong, &args), expected_moved, "{args:?} on a node without the slot");
    }
    for args in &keyed {
        let mut getkeys = vec!["COMMAND", "GETKEYS"];
        getkeys.extend_from_slice(args);
        let keys = run(&mut con0, &getkeys);
        assert_eq!(
            keys,
            Value::Array(vec![Value::BulkString(args[1].as_bytes().to_vec())]),
            "GETKEYS {args:?}"
        );
        assert_eq!(error_of(&mut wrong, args), expected_moved, "{args:?} on a node without the slot");
    }
    for (args, index) in &not_keys {
        let route = args[*index];
        let mut getkeys = vec!["COMMAND", "GETKEYS"];
        getkeys.extend_from_slice(args);
        let keys = run(&mut con0, &getkeys);
        assert_eq!(
            keys,
            Value::Array(vec![Value::BulkString(route.as_bytes().to_vec())]),
            "GETKEYS {args:?}"
        );
        // MAILBOX.ACL is a container: its subcommands hold the key positions.
        let name = if args[0] == "MAILBOX.ACL" {
            format!("mailbox.acl|{}", args[1].to_ascii_lowercase())
        } else {
            args[0].to_string()
        };
        let info = run(&mut con0, &["COMMAND", "INFO", &name]);
        let first_key = int(&array(&array(&info)[0])[3]);
        assert_eq!(first_key, *index as i64, "COMMAND INFO {name}: first key position");
        assert_eq!(error_of(&mut wrong, args), expected_moved, "{args:?} on a node without the slot");
    }

    // redis-cli -c follows the redirect from a node that does not serve {x}.
    let x_port = cluster.port(cluster.master_of(key_slot("{x}")));
    let entry = cluster.ports().into_iter().find(|&p| p != x_port).expect("another node");
    let out = Command::new("redis-cli")
        .args(["-c", "-p", &entry.to_string(), "MAILBOX.SEND", "{x}bob", "hi"])
        .output()
        .expect("run redis-cli");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "redis-cli -c failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    let parts: Vec<&str> = stdout.split('-').collect();
    assert!(
        parts.len() == 2 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())),
        "redis-cli -c -p {entry} MAILBOX.SEND {{x}}bob hi replied {stdout:?}"
    );
    let held = admin.peek("{x}bob");
    let sent = held.iter().find(|m| m.id == stdout).unwrap_or_else(|| panic!("{stdout} not in {{x}}bob"));
    assert_eq!(sent.payload(), "hi");

    // A command that would cross slots fails with CROSSSLOT and changes nothing: a REPLY whose
    // answer goes to a mailbox of another namespace.
    let (ns2, ns3) = (format!("{{{}}}", tags[0]), format!("{{{}}}", tags[2]));
    assert_ne!(key_slot(&ns2), key_slot(&ns3));
    let (asker, answerer) = (format!("{ns3}alice"), format!("{ns2}bob"));
    let q = alice.send(&answerer, "question", &["REPLYTO", &asker]);
    let got = bob.read(&answerer, &[]);
    assert_eq!(ids(&got), vec![q.clone()]);
    let keys = [answerer.clone(), format!("mailbox:ns:{ns2}")];
    // Past the one-second window of presence updates, so a refused command that still touched
    // bob's presence would show in the namespace key's digest.
    sleep_ms(1100);
    let before: Vec<String> = keys.iter().map(|k| admin.digest(k)).collect();
    let peek_before = admin.peek(&answerer);
    let err = bob
        .try_query(&answerer, &["MAILBOX.REPLY", &answerer, &q, "answer"])
        .expect_err("REPLY across slots");
    assert!(err_text(&err).starts_with("CROSSSLOT"), "REPLY across slots: {}", err_text(&err));
    let after: Vec<String> = keys.iter().map(|k| admin.digest(k)).collect();
    assert_eq!(after, before, "a refused REPLY changed {keys:?}");
    assert_eq!(admin.peek(&answerer), peek_before);
    assert_eq!(admin.peek(&asker), Vec::new(), "the refused answer landed in {asker}");
}

// ---------------------------------------------------------------------------------------------
// (b) names without a hash tag

#[test]
fn names_without_a_hash_tag_are_refused_in_cluster_mode() {
    let cluster = Cluster::start();
    let mut client = cluster.client();
    let refused: Vec<(&str, Vec<&str>)> = vec![
        ("bob", vec!["MAILBOX.SEND", "bob", "hi"]),
        ("bob", vec!["MAILBOX.CREATE", "bob"]),
        ("bob", vec!["MAILBOX.READ", "bob"]),
        ("bob", vec!["MAILBOX.PEEK", "bob"]),
        ("bob", vec!["MAILBOX.ACK", "bob", "1-0"]),
        ("bob", vec!["MAILBOX.NACK", "bob", "1-0"]),
        ("bob", vec!["MAILBOX.INFO", "bob"]),
        ("bob", vec!["MAILBOX.DEAD", "LIST", "bob"]),
        ("bob", vec!["MAILBOX.REPLY", "bob", "1-0", "hi"]),
        ("bob", vec!["MAILBOX.THREAD", "bob", "t1"]),
        ("bob", vec!["MAILBOX.SUB", "bob", "news.#"]),
        ("bob", vec!["MAILBOX.UNSUB", "bob", "news.#"]),
        ("bob", vec!["MAILBOX.SUBS", "bob"]),
        ("research.papers", vec!["MAILBOX.PUBLISH", "research.papers", "hi"]),
        ("team", vec!["MAILBOX.BROADCAST", "team", "hi"]),
        ("team", vec!["MAILBOX.PRESENCE", "team"]),
        ("bob*", vec!["MAILBOX.ACL", "GRANT", "alice", "read", "bob*"]),
        ("bob*", vec!["MAILBOX.ACL", "REVOKE", "alice", "read", "bob*"]),
        ("team", vec!["MAILBOX.ACL", "QUOTA", "alice", "10", "team"]),
    ];
    for (route, args) in &refused {
        match client.try_query(route, args) {
            Ok(v) => panic!("{args:?} in cluster mode succeeded: {v:?}"),
            Err(e) => {
                let msg = err_text(&e);
                assert!(msg.starts_with("ERR") && msg.contains("hash tag"), "{args:?}: {msg}");
            }
        }
    }
    for m in 0..MASTERS {
        let mut con = cluster.con(m);
        assert_eq!(int(&run(&mut con, &["DBSIZE"])), 0, "a refused command left a key on master {m}");
        assert_eq!(stat(&mut con, "sent"), 0, "a refused command counted a send on master {m}");
    }
}

// ---------------------------------------------------------------------------------------------
// (c) resharding a namespace's slot

/// Moves `slot` from master node `from` to master node `to` the way `redis-cli --cluster reshard`
/// does: IMPORTING / MIGRATING, `MIGRATE ... KEYS` of every key in the slot, then `SETSLOT NODE`
/// on the target, the source and the other masters. `between` runs after the keys moved and
/// before the slot's owner changes. Replies the keys moved.
fn move_slot(cluster: &Cluster, slot: u16, from: usize, to: usize, between: impl FnOnce()) -> Vec<String> {
    let (mut src, mut dst) = (cluster.con(from), cluster.con(to));
    let slot_s = slot.to_string();
    run(&mut dst, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &cluster.ids[from]]);
    run(&mut src, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &cluster.ids[to]]);
    let keys: Vec<String> =
        array(&run(&mut src, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "1000"])).iter().map(text).collect();
    let port = cluster.port(to).to_string();
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
    migrate.extend(keys.iter().map(String::as_str));
    if !keys.is_empty() {
        assert_eq!(run(&mut src, &migrate), Value::Okay, "MIGRATE {keys:?}");
    }
    between();
    let mut order = vec![to, from];
    order
        .extend((0..NODES).filter(|&n| n != to && n != from && cluster.role(n).as_deref() == Some("master")));
    for n in order {
        let mut con = cluster.con(n);
        run(&mut con, &["CLUSTER", "SETSLOT", &slot_s, "NODE", &cluster.ids[to]]);
    }
    cluster.wait_owner(&(0..NODES).collect::<Vec<_>>(), slot, cluster.port(to), 20_000);
    keys
}

#[test]
fn resharding_a_namespace_moves_its_messages_intact_and_redirects_blocked_readers() {
    let cluster = Cluster::start();
    let mut client = cluster.client();
    let ns = "{r}";
    let slot = key_slot(ns);
    let from = cluster.master_of(slot);
    let to = (0..MASTERS).find(|&m| m != from).expect("another master");
    let (bx, short, dl, waiter) = ("{r}box", "{r}short", "{r}dl", "{r}waiter");

    // Waiting, leased, delayed and dead messages, a subscription, a dedup key and a TTL.
    assert_eq!(client.q(bx, &["MAILBOX.CREATE", bx, "LEASE", "60000"]), Value::Okay);
    assert_eq!(int(&client.q(bx, &["MAILBOX.SUB", bx, "alerts.#"])), 1);
    let mut sent = Vec::new();
    for (i, opts) in [
        vec!["PRIORITY", "5", "THREAD", "t1"],
        vec!["META", r#"{"k":1}"#, "TYPE", "application/json"],
        vec!["DEDUP", "once", "TTL", "600000"],
        vec!["REPLYTO", "{r}short", "CORRELATION", "c-1"],
        vec![],
        vec!["PRIORITY", "9"],
    ]
    .into_iter()
    .enumerate()
    {
        sent.push(client.send(bx, &format!("message {i}"), &opts));
    }
    let (published, n) =
        id_and_receivers(&client.q("{r}alerts.fire", &["MAILBOX.PUBLISH", "{r}alerts.fire", "fire"]));
    assert_eq!(n, 1);
    let leased = client.read(bx, &["COUNT", "3"]);
    assert_eq!(leased.len(), 3);
    let nacked = leased[2].id.clone();
    assert_eq!(int(&client.q(bx, &["MAILBOX.NACK", bx, &nacked, "DELAY", "600000"])), 1);
    let leased_ids = ids(&leased[..2]);

    assert_eq!(client.q(dl, &["MAILBOX.CREATE", dl, "MAXDELIVER", "1"]), Value::Okay);
    let dead_id = client.send(dl, "to the dead letters", &[]);
    let got = client.read(dl, &[]);
    assert_eq!(int(&client.q(dl, &["MAILBOX.NACK", dl, &got[0].id])), 1);

    // A short lease that runs out on the new node: its timer must know the moved key.
    client.send(short, "short lease", &[]);
    let short_read_at = Instant::now();
    let short_lease_ms = 8000;
    assert_eq!(client.read(short, &["LEASE", &short_lease_ms.to_string()]).len(), 1);

    // A reader blocked on the old node on an empty mailbox of the namespace.
    let reader = BlockedReader::start(&cluster, from, waiter);
    let mut src = cluster.con(from);

    let held_before: HashMap<&str, Vec<Msg>> =
        [bx, short, dl].into_iter().map(|m| (m, client.peek(m))).collect();
    let dead_before = dead_list_of(&mut client, dl);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for state in held_before[bx].iter().map(|m| m.str("state")) {
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    counts.sort();
    let expected: Vec<(String, usize)> =
        [("delayed", 1), ("leased", 2), ("ready", 4)].iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(counts, expected, "{bx} before the move: 6 sent + 1 published, 3 read, 1 of them nacked");
    let keys_before: Vec<String> = {
        let mut k: Vec<String> =
            array(&run(&mut src, &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "1000"]))
                .iter()
                .map(text)
                .collect();
        k.sort();
        k
    };
    for key in [bx, short, dl, "mailbox:ns:{r}"] {
        assert!(keys_before.iter().any(|k| k == key), "{key} is not in slot {slot}: {keys_before:?}");
    }
    let digests: Vec<(String, String)> = keys_before.iter().map(|k| (k.clone(), client.digest(k))).collect();
    let stats_before = cluster.stat(to, "lease_expired");

    let mut during = Vec::new();
    let moved = move_slot(&cluster, slot, from, to, || {
        // The keys are on the new node while the slot still belongs to the old one.
        let mut dst = cluster.con(to);
        for (key, digest) in &digests {
            assert_eq!(&digest_value(&mut dst, key), digest, "DEBUG DIGEST-VALUE of {key} after MIGRATE");
        }
        assert!(
            short_read_at.elapsed() < Duration::from_millis(short_lease_ms - 1000),
            "too slow: the short lease nearly ran out before the digests were compared"
        );
        let mut src = cluster.con(from);
        let err = try_run(&mut src, &["MAILBOX.PEEK", bx]).expect_err("PEEK on the old node while migrating");
        assert!(err_text(&err).starts_with(&format!("ASK {slot} ")), "{}", err_text(&err));
        // A cluster client follows the ASK.
        during.push(client.peek(bx));
    });
    let mut moved_sorted = moved.clone();
    moved_sorted.sort();
    assert_eq!(moved_sorted, keys_before);
    assert_eq!(during, vec![held_before[bx].clone()], "PEEK through ASK while migrating");

    // The blocked reader is redirected, not left hanging.
    assert_eq!(reader.error(), format!("MOVED {slot} 127.0.0.1:{}", cluster.port(to)));

    // On the new node: the same keys, digests and messages; nothing left on the old one.
    let mut dst = cluster.con(to);
    for (key, digest) in &digests {
        assert_eq!(&digest_value(&mut dst, key), digest, "DEBUG DIGEST-VALUE of {key} on the new node");
    }
    assert_eq!(int(&run(&mut src, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])), 0);
    // The new node's replica got them too.
    assert!(int(&run(&mut dst, &["WAIT", "1", "5000"])) >= 1, "the new node's replica did not acknowledge");
    let mut dst_replica = cluster.con(MASTERS + to);
    for (key, digest) in &digests {
        assert_eq!(
            &digest_value(&mut dst_replica, key),
            digest,
            "DEBUG DIGEST-VALUE of {key} on its replica"
        );
    }
    let mut client = cluster.client();
    for m in [bx, short, dl] {
        assert_eq!(client.peek(m), held_before[m], "PEEK {m} on the new node");
    }
    assert_eq!(dead_list_of(&mut client, dl), dead_before);
    assert_eq!(ids(&dead_list_of(&mut client, dl)), vec![dead_id]);
    let err = try_run(&mut src, &["MAILBOX.PEEK", bx]).expect_err("the old node serves the slot still");
    assert_eq!(err_text(&err), format!("MOVED {slot} 127.0.0.1:{}", cluster.port(to)));

    // The leases came along: the leased messages are not handed out again, a NACK finds them.
    let ready = client.read(bx, &["COUNT", "10"]);
    let mut expected_ready: Vec<String> =
        held_before[bx].iter().filter(|m| m.str("state") == "ready").map(|m| m.id.clone()).collect();
    expected_ready.sort();
    let mut ready_ids = ids(&ready);
    ready_ids.sort();
    assert_eq!(ready_ids, expected_ready, "READ on the new node");
    assert!(ready_ids.contains(&published), "the published message moved too");
    assert_eq!(int(&client.q(bx, &["MAILBOX.NACK", bx, &leased_ids[0], &leased_ids[1]])), 2, "leases moved");
    // The dedup window came along.
    assert_eq!(client.send(bx, "again", &["DEDUP", "once"]), sent[2], "DEDUP after the move");
    // The subscriptions came along.
    let (_, n) = id_and_receivers(&client.q("{r}alerts.x", &["MAILBOX.PUBLISH", "{r}alerts.x", "x"]));
    assert_eq!(n, 1, "a publish on the new node reaches the moved subscription");
    let (_, n) = id_and_receivers(&client.q(ns, &["MAILBOX.BROADCAST", ns, "everyone"]));
    assert_eq!(n, 3, "a broadcast on the new node reaches {bx}, {short} and {dl}");

    // The short lease runs out on the new node by its timer, without anyone touching the mailbox.
    wait_until("the new node's timer expires the moved lease", 15_000, || {
        cluster.stat(to, "lease_expired") > stats_before
    });
    let again = client.read(short, &[]);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].deliveries(), 2);

    // Move the slot back, after changing the subscriptions on the new node: the old node must use
    // the subscriptions the key holds now, not what it remembered.
    assert_eq!(int(&client.q(bx, &["MAILBOX.UNSUB", bx, "alerts.#"])), 1);
    assert_eq!(int(&client.q(short, &["MAILBOX.SUB", short, "alerts.#"])), 1);
    move_slot(&cluster, slot, to, from, || {});
    let mut client = cluster.client();
    let before_box = client.peek(bx).len();
    let (id, n) =
        id_and_receivers(&client.q("{r}alerts.back", &["MAILBOX.PUBLISH", "{r}alerts.back", "back"]));
    assert_eq!(n, 1, "a publish after the move back");
    assert!(ids(&client.peek(short)).contains(&id), "the publish after the move back missed {short}");
    assert_eq!(
        client.peek(bx).len(),
        before_box,
        "the publish after the move back reached the unsubscribed {bx}"
    );
}

/// A `MAILBOX.READ mailbox BLOCK 0` on its own thread and connection.
struct BlockedReader {
    thread: thread::JoinHandle<()>,
    reply: mpsc::Receiver<RedisResult<Value>>,
}

impl BlockedReader {
    /// Starts the read on `node` and waits until the node counts it as blocked (no other
    /// client may be blocked there at that moment).
    fn start(cluster: &Cluster, node: usize, mailbox: &str) -> BlockedReader {
        let (port, mailbox) = (cluster.port(node), mailbox.to_string());
        let (tx, reply) = mpsc::channel();
        let thread = thread::spawn(move || {
            let mut con = connect(port).expect("connect the blocked reader");
            let _ = tx.send(cmd(&["MAILBOX.READ", &mailbox, "BLOCK", "0"]).query::<Value>(&mut con));
        });
        wait_until(&format!("a reader blocks on node {node}"), 10_000, || {
            let info = cluster.poll(node, |c| redis::cmd("INFO").arg("clients").query::<String>(c));
            info.and_then(|i| field(&i, "blocked_clients")).as_deref() == Some("1")
        });
        BlockedReader { thread, reply }
    }

    /// The error the read ended with, within 10 s (its connection's read timeout).
    fn error(self) -> String {
        let result = self.reply.recv_timeout(Duration::from_secs(12)).expect("the blocked reader hangs");
        self.thread.join().expect("reader thread");
        err_text(&result.expect_err("the blocked reader got messages instead of an error"))
    }
}

fn dead_list_of(client: &mut ClusterClient, mailbox: &str) -> Vec<Msg> {
    messages(&client.q(mailbox, &["MAILBOX.DEAD", "LIST", mailbox])).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// (d) failover

/// What a producer saw: the sends a replica confirmed, as (id, payload, port of the master that
/// took it), and a count of the other outcomes, for the failure messages.
#[derive(Default)]
struct Produced {
    confirmed: Vec<(String, String, u16)>,
    unconfirmed: usize,
    errors: usize,
    last_error: Option<String>,
}

/// Sends to `mailbox` until `stop`, each send followed by `WAIT 1 1000` on the node that took it.
fn produce(ports: Vec<u16>, mailbox: String, stop: Arc<AtomicBool>, out: Arc<Mutex<Produced>>) {
    let mut client = ClusterClient::new(ports, None);
    client.retry_for = Duration::from_secs(15);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) && i < 50_000 {
        i += 1;
        let payload = format!("payload {i}");
        let sent = client.query_at(&mailbox, &["MAILBOX.SEND", &mailbox, &payload]);
        let outcome = match sent {
            Ok((Value::BulkString(id), port)) => {
                let id = String::from_utf8(id).expect("utf-8 id");
                match client.con(port).and_then(|c| redis::cmd("WAIT").arg(1).arg(1000).query::<i64>(c)) {
                    Ok(n) if n >= 1 => Ok(Some((id, payload, port))),
                    Ok(_) => Ok(None),
                    Err(e) => {
                        client.cons.remove(&port);
                        Err(format!("WAIT: {}", err_text(&e)))
                    }
                }
            }
            Ok((other, _)) => Err(format!("SEND replied {other:?}")),
            Err(e) => Err(format!("SEND: {}", err_text(&e))),
        };
        let mut out = out.lock().expect("producer results");
        match outcome {
            Ok(Some(confirmed)) => out.confirmed.push(confirmed),
            Ok(None) => out.unconfirmed += 1,
            Err(e) => {
                out.errors += 1;
                out.last_error = Some(e);
            }
        }
        drop(out);
        thread::sleep(Duration::from_millis(1));
    }
}

/// Produces to `mailbox` while `failover` runs and until `new_master` serves the slot on every
/// `alive` node (and, if `confirm_after`, until the new master confirmed sends too); then checks
/// that every send a replica confirmed is on the new master, intact.
fn confirmed_sends_survive(
    cluster: &mut Cluster,
    mailbox: &str,
    new_master: usize,
    alive: &[usize],
    confirm_after: bool,
    failover: impl FnOnce(&mut Cluster),
) {
    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(Mutex::new(Produced::default()));
    let producer = {
        let (ports, mailbox, stop, out) =
            (cluster.ports(), mailbox.to_string(), stop.clone(), produced.clone());
        thread::spawn(move || produce(ports, mailbox, stop, out))
    };
    let port = cluster.port(new_master);
    let confirmed_at = |p: &dyn Fn(u16) -> bool| {
        produced.lock().expect("results").confirmed.iter().filter(|c| p(c.2)).count()
    };
    wait_until("sends confirmed before the failover", 10_000, || confirmed_at(&|p| p != port) >= 100);
    failover(cluster);
    let cluster = &*cluster;
    let slot = key_slot(mailbox);
    cluster.wait_owner(alive, slot, port, 30_000);
    wait_until(&format!("node {new_master} is a master"), 10_000, || {
        cluster.role(new_master).as_deref() == Some("master")
    });
    if confirm_after {
        wait_until("sends confirmed by the new master", 15_000, || confirmed_at(&|p| p == port) >= 20);
    } else {
        sleep_ms(200);
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("producer thread");
    let produced = produced.lock().expect("results");
    let confirmed = &produced.confirmed;
    let after = confirmed.iter().filter(|c| c.2 == port).count();
    eprintln!(
        "{mailbox}: {} sends confirmed by WAIT 1 ({} before the failover, {after} after), {} unconfirmed, \
         {} errors (last {:?})",
        confirmed.len(),
        confirmed.len() - after,
        produced.unconfirmed,
        produced.errors,
        produced.last_error
    );

    let mut client = cluster.client();
    let (held, at) = client.query_at(mailbox, &["MAILBOX.PEEK", mailbox, "COUNT", "100000"]).expect("PEEK");
    assert_eq!(at, port, "PEEK {mailbox} was not served by the new master");
    let held: HashMap<String, String> =
        messages(&held).unwrap_or_default().into_iter().map(|m| (m.id.clone(), m.payload())).collect();
    let missing: Vec<&(String, String, u16)> =
        confirmed.iter().filter(|(id, payload, _)| held.get(id) != Some(payload)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} sends confirmed by WAIT 1 are not on the new master ({} unconfirmed, {} errors, last {:?}), \
         e.g. {:?}",
        missing.len(),
        confirmed.len(),
        produced.unconfirmed,
        produced.errors,
        produced.last_error,
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn failover_keeps_every_send_a_replica_confirmed() {
    let mut cluster = Cluster::start();

    // A coordinated failover (CLUSTER FAILOVER on the replica of master 0).
    let tag = &cluster.tags_on(0, 1)[0];
    let mailbox = format!("{{{tag}}}box");
    let replica = MASTERS;
    let all: Vec<usize> = (0..NODES).collect();
    let reader = BlockedReader::start(&cluster, 0, &format!("{{{tag}}}idle"));
    confirmed_sends_survive(&mut cluster, &mailbox, replica, &all, true, |cluster| {
        let mut con = cluster.con(replica);
        assert_eq!(run(&mut con, &["CLUSTER", "FAILOVER"]), Value::Okay);
    });
    // A reader blocked on the old master is told, not left hanging.
    let error = reader.error();
    eprintln!("the reader blocked on the old master got: {error}");
    let moved = format!("MOVED {} 127.0.0.1:{}", key_slot(&mailbox), cluster.port(replica));
    assert!(
        error == moved || error.starts_with("UNBLOCKED"),
        "the reader blocked on the old master got {error}"
    );
    wait_until("the old master 0 becomes a replica", 10_000, || cluster.role(0).as_deref() == Some("slave"));

    // A crash: kill -9 master 1; its replica takes over. A message leased on the dead master
    // runs out on the new one, by the new master's timer.
    let tag = &cluster.tags_on(1, 1)[0];
    let mailbox = format!("{{{tag}}}box");
    let leased_box = format!("{{{tag}}}leased");
    let mut client = cluster.client();
    client.send(&leased_box, "leased when the master dies", &[]);
    let leased_at = Instant::now();
    assert_eq!(client.read(&leased_box, &["LEASE", "3000"]).len(), 1);
    let (_, port) = client.query_at(&leased_box, &["WAIT", "1", "1000"]).expect("WAIT");
    assert_eq!(port, cluster.port(1));
    let replica = MASTERS + 1;
    let expired_before = cluster.stat(replica, "lease_expired");
    let alive: Vec<usize> = (0..NODES).filter(|&n| n != 1).collect();
    confirmed_sends_survive(&mut cluster, &mailbox, replica, &alive, false, |cluster| {
        // The lease must still run when the master dies, so that only the new master can end it.
        assert!(leased_at.elapsed() < Duration::from_millis(2500), "too slow: the lease nearly ran out");
        cluster.nodes[1].kill9();
    });
    wait_until("the new master's timer expires the lease taken on the dead master", 10_000, || {
        cluster.stat(replica, "lease_expired") > expired_before
    });
    let again = cluster.client().read(&leased_box, &[]);
    assert_eq!(again.len(), 1, "the message leased on the dead master is deliverable again");
    assert_eq!(again[0].deliveries(), 2);

    // The killed master comes back (same port, dir and AOF) as a replica of the new master and
    // resyncs to exactly its data.
    cluster.nodes[1].restart();
    wait_until("the old master 1 rejoins as a synced replica", 20_000, || {
        cluster.role(1).as_deref() == Some("slave")
    });
    let (mut new_master, mut old_master) = (cluster.con(replica), cluster.con(1));
    wait_until("the rejoined replica has the new master's DEBUG DIGEST", 10_000, || {
        debug_digest(&mut new_master) == debug_digest(&mut old_master)
    });
    assert_ne!(debug_digest(&mut new_master), ZERO_DIGEST);
}

//! The test harness itself: servers start with the module, survive restarts and crashes with
//! the AOF on, and replicate.

mod common;

use common::{
    free_port, parse_server_version, server_version, wait_until, Server, ServerKind, ServerOptions,
};
use redis::Commands;

#[test]
fn server_answers_ping() {
    let server = Server::start();
    let mut con = server.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    assert!(server.pid() > 0);
    assert_eq!(server.info_field("server", "tcp_port"), Some(server.port.to_string()));
}

#[test]
fn module_is_loaded() {
    let server = Server::start();
    let mut con = server.client();
    // Each entry is a flat list: name, <name>, ver, <version>, ...
    let modules: Vec<Vec<redis::Value>> = redis::cmd("MODULE").arg("LIST").query(&mut con).unwrap();
    let names: Vec<String> = modules
        .iter()
        .filter_map(|fields| {
            let at = fields
                .iter()
                .position(|v| redis::from_redis_value::<String>(v).ok().as_deref() == Some("name"))?;
            redis::from_redis_value(fields.get(at + 1)?).ok()
        })
        .collect();
    assert!(names.iter().any(|n| n == "mailbox"), "MODULE LIST has no module named mailbox: {names:?}");
}

#[test]
fn restart_keeps_data_with_aof() {
    let mut server = Server::start_aof();
    let mut con = server.client();
    let _: () = con.set("greeting", "hello").unwrap();
    let before = server.digest();
    let old_pid = server.pid();
    drop(con);

    server.restart();

    assert_ne!(server.pid(), old_pid);
    let mut con = server.client();
    let value: Option<String> = con.get("greeting").unwrap();
    assert_eq!(value.as_deref(), Some("hello"));
    assert_eq!(server.digest(), before);
}

#[test]
fn kill9_then_restart_recovers_from_aof() {
    let mut server = Server::start_aof();
    let mut con = server.client();
    let _: () = con.set("k", "v").unwrap();
    let digest = server.digest_value("k");
    drop(con);

    server.kill9();
    server.restart();

    let mut con = server.client();
    let value: Option<String> = con.get("k").unwrap();
    assert_eq!(value.as_deref(), Some("v"));
    assert_eq!(server.digest_value("k"), digest);
}

#[test]
fn replica_sees_master_writes() {
    let master = Server::start();
    let replica = master.replica();
    assert_eq!(replica.info_field("replication", "role").as_deref(), Some("slave"));

    let mut con = master.client();
    let _: () = con.set("shared", "42").unwrap();
    master.wait_for_replica(&replica);

    let mut rcon = replica.client();
    let value: Option<String> = rcon.get("shared").unwrap();
    assert_eq!(value.as_deref(), Some("42"));
    assert_eq!(replica.digest(), master.digest());
}

#[test]
fn wait_until_polls_until_true() {
    let mut calls = 0;
    wait_until("third call", 2_000, || {
        calls += 1;
        calls >= 3
    });
    assert_eq!(calls, 3);
}

#[test]
fn module_args_and_config_reach_the_module() {
    let server = Server::start_with(ServerOptions {
        config: vec![("mailbox.default-maxlen".into(), "7".into())],
        module_args: vec!["default-lease-ms".into(), "500".into()],
    });
    let mut con = server.client();
    let get = |con: &mut redis::Connection, name: &str| -> String {
        let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(con).unwrap();
        pair.get(1).cloned().unwrap_or_default()
    };
    assert_eq!(get(&mut con, "mailbox.default-lease-ms"), "500");
    assert_eq!(get(&mut con, "mailbox.default-maxlen"), "7");

    // A replica gets the same options.
    let replica = server.replica();
    let mut rcon = replica.client();
    assert_eq!(get(&mut rcon, "mailbox.default-lease-ms"), "500");
}

#[test]
fn the_server_is_the_one_mailbox_server_names() {
    assert_eq!(
        parse_server_version(
            "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0"
        ),
        Some((ServerKind::Redis, (7, 0, 15)))
    );
    assert_eq!(
        parse_server_version(
            "Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64 build=1536df31c0395150"
        ),
        Some((ServerKind::Valkey, (9, 1, 2)))
    );
    assert_eq!(parse_server_version("KeyDB server v=6.3.4"), None);
    // The running server reports the version its binary printed.
    let (kind, (major, minor, patch)) = server_version();
    let server = Server::start();
    let field = match kind {
        ServerKind::Redis => "redis_version",
        ServerKind::Valkey => "valkey_version",
    };
    assert_eq!(server.info_field("server", field), Some(format!("{major}.{minor}.{patch}")));
}

#[test]
fn free_ports_leave_room_for_a_cluster_bus_port() {
    for _ in 0..200 {
        assert!(free_port() < 55535);
    }
}

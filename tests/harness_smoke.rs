//! The test harness itself: servers start with the module, survive restarts and crashes with
//! the AOF on, and replicate.

mod common;

use common::{wait_until, Server, ServerOptions};
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

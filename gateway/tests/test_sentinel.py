"""The gateway behind Sentinel (redis+sentinel://): the master is killed, Sentinel promotes the
replica, and the gateway finds the new master by itself; what it reported stored is there."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import DEADLINE, GATEWAY, GW_PASS, GW_USER, Gateway, Redis, free_port, wait_until


class Sentinel:
    def __init__(self, workdir: Path, master_port: int):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.dir / "sentinel.conf").write_text(
            f"""bind 127.0.0.1
port {self.port}
dir {self.dir}
sentinel monitor mymaster 127.0.0.1 {master_port} 1
sentinel down-after-milliseconds mymaster 1000
sentinel failover-timeout mymaster 5000
"""
        )
        self.log = open(self.dir / "sentinel.log", "ab")
        self.proc = subprocess.Popen(
            ["redis-server", str(self.dir / "sentinel.conf"), "--sentinel"], stdout=self.log, stderr=subprocess.STDOUT
        )

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, timeout=DEADLINE)
        return out.stdout.decode().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=DEADLINE)
        self.log.close()


@pytest.fixture
def sentinel_setup(tmp_path):
    master = Redis(tmp_path / "master")
    master.start()
    master.grant_gateway()
    replica = Redis(tmp_path / "replica", extra=f"replicaof 127.0.0.1 {master.port}")
    replica.start()
    wait_until(lambda: "master_link_status:up" in replica.cli("INFO", "replication"), "the replica to sync")
    sentinel = Sentinel(tmp_path / "sentinel", master.port)
    wait_until(lambda: str(master.port) in sentinel.cli("SENTINEL", "get-master-addr-by-name", "mymaster"), "sentinel")
    wait_until(lambda: str(replica.port) in sentinel.cli("SENTINEL", "replicas", "mymaster"), "sentinel to see the replica")
    yield master, replica, sentinel
    sentinel.stop()
    replica.stop()
    master.stop()


def test_a_gateway_on_a_replica_is_not_ready(sentinel_setup, tmp_path):
    _, replica, _ = sentinel_setup
    g = Gateway(replica, tmp_path)
    g.log = open(g.log_path, "ab")
    g.proc = subprocess.Popen(
        [str(GATEWAY), "serve", "--redis", g.redis_url, "--listen", f"127.0.0.1:{g.port}"],
        stdout=g.log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: httpx.get(g.url + "/readyz", timeout=5).json()["redis_reachable"], "Redis reachable")
        r = httpx.get(g.url + "/readyz", timeout=10)
        body = r.json()
        assert r.status_code == 503 and not body["ready"], body
        assert body["role"] == "slave" and body["master_link"] == "up" and "not a master" in body["reason"]
    finally:
        g.stop()


def test_failover_behind_sentinel(sentinel_setup, tmp_path):
    master, replica, sentinel = sentinel_setup
    # The gateway knows only the sentinel and the master's name.
    url = f"redis+sentinel://{GW_USER}:{GW_PASS}@127.0.0.1:{sentinel.port}/mymaster"
    g = Gateway(master, tmp_path, "--rate-limit", "0", "--redis-timeout-ms", "1000", redis_url=url)
    g.start()
    try:
        token = g.token("alice")
        with g.client(token, timeout=10) as c:
            before = c.post("/v1/mailboxes/alice/messages", json={"payload": "before"})
            assert before.status_code == 201
            assert master.cli("WAIT", "1", "5000") == "1"
            pid = g.proc.pid
            master.kill9()
            codes = []
            end = time.monotonic() + 90
            while True:
                r = c.post("/v1/mailboxes/alice/messages", json={"payload": "after"})
                codes.append(r.status_code)
                if r.status_code == 201:
                    after = r.json()["id"]
                    break
                assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, r.text
                assert time.monotonic() < end, f"no failover seen: {codes[-5:]}"
                time.sleep(0.2)
            assert 503 in codes
            assert g.proc.poll() is None and g.proc.pid == pid
            assert str(replica.port) in sentinel.cli("SENTINEL", "get-master-addr-by-name", "mymaster")
            # Both messages are on the promoted replica.
            for mid in (before.json()["id"], after):
                assert c.get(f"/v1/mailboxes/alice/messages/{mid}/status").json()["status"] == "ready"
            assert replica.cli("MAILBOX.STATUS", "alice", after) == "ready"
            ready = httpx.get(g.url + "/readyz", timeout=10).json()
            assert ready["ready"] and ready["role"] == "master"
    finally:
        g.stop()

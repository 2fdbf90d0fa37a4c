"""The gateway on a Redis Cluster of three masters (given as a list of nodes): every route
reaches the master of its name's slot, blocking reads and streams included."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from conftest import DEADLINE, GW_USER, Gateway, Redis, wait_until
from test_rest import problem

# '{b}', '{c}' and '{a}' hash to slots 3300, 7365 and 15495: one namespace on each master.
NAMESPACES = ("{a}", "{b}", "{c}")


def cluster_cli(port: int, *args: str) -> str:
    out = subprocess.run(["redis-cli", "-c", "-p", str(port), *args], capture_output=True, timeout=DEADLINE)
    return out.stdout.decode(errors="replace").strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base: Path = tmp_path_factory.mktemp("cluster")
    nodes = [
        Redis(base / f"node{i}", extra="cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout 5000")
        for i in range(3)
    ]
    try:
        for n in nodes:
            n.start()
        addrs = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=DEADLINE,
            check=True,
        )
        wait_until(
            lambda: all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in nodes), "cluster_state:ok everywhere"
        )
        owners = {cluster_cli(nodes[0].port, "CLUSTER", "KEYSLOT", ns) for ns in NAMESPACES}
        assert len(owners) == 3
        for ns in NAMESPACES:
            for perm in ("impersonate", "read", "subscribe", "send", "admin"):
                assert cluster_cli(nodes[0].port, "MAILBOX.ACL", "GRANT", GW_USER, perm, f"{ns}*") != ""
        yield nodes
    finally:
        for n in nodes:
            n.stop()


def cluster_gateway(cluster: list[Redis], tmp_path: Path) -> Gateway:
    """A gateway started on the cluster, given every node."""
    first = cluster[0]
    others = ",".join(f"127.0.0.1:{n.port}" for n in cluster[1:])
    url = f"redis://{GW_USER}:gw-secret-pw@127.0.0.1:{first.port},{others}"
    g = Gateway(first, tmp_path, "--rate-limit", "0", redis_url=url)
    g.start()
    return g


def test_send_read_ack_and_stream_on_every_master(cluster, tmp_path):
    g = cluster_gateway(cluster, tmp_path)
    try:
        alice, bob = g.token("alice"), g.token("bob")
        listed = g.token_cmd("list").stdout.decode()
        assert listed.count(" alice ") == 1 and listed.count(" bob ") == 1, listed
        with g.client(alice) as a, g.client(bob) as b:
            for ns in NAMESPACES:
                mb = f"{ns}bob"
                # Long-poll first: the read blocks on the node of the mailbox's slot.
                r = a.post(f"/v1/mailboxes/{mb}/messages", json={"payload": f"hello {ns}"})
                assert r.status_code == 201, r.text
                mid = r.json()["id"]
                msgs = b.get(f"/v1/mailboxes/{mb}/messages", params={"wait_ms": 5000}).json()["messages"]
                assert [(m["id"], m["payload"], m["from"]) for m in msgs] == [(mid, f"hello {ns}", "alice")]
                assert b.post(f"/v1/mailboxes/{mb}/ack", json={"ids": [mid]}).json() == {"acked": 1}
                raw = bytes(range(256))
                r = a.post(f"/v1/mailboxes/{mb}/messages", content=raw, headers={"content-type": "application/octet-stream"})
                assert r.status_code == 201
                assert b.get(f"/v1/mailboxes/{mb}/messages", params={"noack": "true"}).json()["messages"][0]["id"] == r.json()["id"]
                # The module's routing rules hold: a name without a hash tag is refused.
                problem(a.post("/v1/mailboxes/bob/messages", json={"payload": "x"}), 400)
            # A WebSocket over two mailboxes on two masters.
            ws_url = g.url.replace("http://", "ws://") + "/v1/ws"
            with ws_connect(ws_url, additional_headers={"Authorization": f"Bearer {bob}"}, open_timeout=DEADLINE) as ws:
                for ns in NAMESPACES[:2]:
                    ws.send(json.dumps({"op": "subscribe", "mailbox": f"{ns}bob"}))
                    assert json.loads(ws.recv(timeout=DEADLINE))["type"] == "subscribed"
                sent = {}
                for ns in NAMESPACES[:2]:
                    sent[a.post(f"/v1/mailboxes/{ns}bob/messages", json={"payload": ns}).json()["id"]] = f"{ns}bob"
                got = {}
                while len(got) < 2:
                    frame = json.loads(ws.recv(timeout=DEADLINE))
                    assert frame["type"] == "message", frame
                    got[frame["message"]["id"]] = frame["mailbox"]
                assert got == sent
                for mid, mb in got.items():
                    ws.send(json.dumps({"op": "ack", "mailbox": mb, "ids": [mid]}))
                    assert json.loads(ws.recv(timeout=DEADLINE))["type"] == "acked"
        # Revoking by id finds the token on whichever master holds it.
        token_id = next(line.split()[0] for line in listed.splitlines() if " alice " in line)
        assert g.token_cmd("revoke", token_id).returncode == 0
        with g.client(alice) as a:
            problem(a.get("/v1/me"), 401)
        ready = g.client().get("/readyz").json()
        assert ready["ready"], ready
    finally:
        g.stop()


def stats(node: Redis) -> dict[str, int]:
    lines = node.cli("MAILBOX.STATS").splitlines()
    return {lines[i]: int(lines[i + 1]) for i in range(0, len(lines) - 1, 2)}


def metric(text: str, name: str) -> int:
    return int(float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " "))))


def test_readiness_and_metrics_cover_every_master(cluster, tmp_path):
    # Last in this file: it stops a master at the end.
    g = cluster_gateway(cluster, tmp_path)
    try:
        ready = g.client().get("/readyz").json()
        assert ready["ready"] and ready["masters"] == 3 and ready["cluster_state"] == "ok", ready
        alice = g.token("alice")
        with g.client(alice) as a:
            for i, ns in enumerate(NAMESPACES):
                for _ in range(i + 1):
                    assert a.post(f"/v1/mailboxes/{ns}dave/messages", json={"payload": "x"}).status_code == 201
        per_node = [stats(n) for n in cluster]
        # Each master holds some of them, and /metrics adds every master's figures up.
        assert all(s["messages"] > 0 for s in per_node), per_node
        text = g.client().get("/metrics").text
        assert metric(text, "mailbox_messages") == sum(s["messages"] for s in per_node)
        assert metric(text, "mailbox_mailboxes") == sum(s["mailboxes"] for s in per_node)
        # A master down: not ready, whichever node the gateway asks first.
        cluster[2].stop()
        wait_until(lambda: g.client().get("/readyz").status_code == 503, "/readyz to say 503 with a master down")
        assert not g.client().get("/readyz").json()["ready"]
    finally:
        g.stop()

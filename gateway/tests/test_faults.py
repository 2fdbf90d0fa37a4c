"""Redis killed (by pid, SIGKILL) and restarted under a stream of REST sends: 503 with
Retry-After while it is down, no send reported stored that is not stored, and the
gateway resumes by itself (same process)."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import httpx_sse
import pytest

from conftest import DEADLINE, GATEWAY, Gateway, Redis, wait_until


@pytest.fixture
def own(tmp_path):
    r = Redis(tmp_path / "redis")
    r.start()
    r.grant_gateway()
    g = Gateway(r, tmp_path, "--rate-limit", "0", "--redis-timeout-ms", "1000")
    g.start()
    yield r, g
    g.stop()
    r.stop()


def test_redis_killed_and_restarted_under_sends(own):
    redis, gw = own
    token = gw.token("alice")
    bob_token = gw.token("bob")
    results: list[tuple[int, int, str | None, str | None]] = []
    stop = threading.Event()

    def sender():
        with gw.client(token, timeout=10) as c:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = c.post("/v1/mailboxes/alice/messages", json={"payload": f"m{i}"})
                except httpx.HTTPError:
                    results.append((i, 0, None, None))
                    continue
                mid = r.json().get("id") if r.status_code == 201 else None
                results.append((i, r.status_code, mid, r.headers.get("retry-after")))
                time.sleep(0.005)

    # A stream open across the outage must get a message sent after it.
    stream_got: list[str] = []

    def listener():
        with gw.client(bob_token, timeout=httpx.Timeout(120)) as c:
            with httpx_sse.connect_sse(c, "GET", "/v1/mailboxes/bob/events") as es:
                for ev in es.iter_sse():
                    if ev.event == "message" and "after-restart" in ev.data:
                        stream_got.append(ev.id)
                        return

    # WebSocket sends go on across the outage on one socket.
    ws_results: list[dict] = []

    def ws_sender():
        import json

        from websockets.sync.client import connect

        url = gw.url.replace("http://", "ws://") + "/v1/ws"
        with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            i = 0
            while not stop.is_set():
                i += 1
                ws.send(json.dumps({"op": "send", "mailbox": "alice", "payload": f"w{i}", "ref": i}))
                ws_results.append(json.loads(ws.recv(timeout=DEADLINE)))
                time.sleep(0.01)

    wt = threading.Thread(target=ws_sender)
    wt.start()
    lt = threading.Thread(target=listener)
    lt.start()
    wait_until(lambda: "blocked_clients:1" in redis.cli("INFO", "clients"), "the stream to block")
    t = threading.Thread(target=sender)
    t.start()
    wait_until(lambda: sum(1 for r in results if r[1] == 201) >= 20, "sends to succeed")
    gw_pid = gw.proc.pid
    redis.kill9()
    wait_until(lambda: sum(1 for r in results if r[1] == 503) >= 10, "503s while Redis is down")
    down = [r for r in results if r[1] == 503]
    assert all(r[3] is not None and int(r[3]) >= 1 for r in down), "a 503 without Retry-After"
    ready = httpx.get(gw.url + "/readyz", timeout=10)
    assert ready.status_code == 503 and "unreachable" in ready.json()["reason"], ready.text
    metrics = httpx.get(gw.url + "/metrics", timeout=10).text
    assert "mailbox_gateway_circuit_open 1" in metrics and "mailbox_gateway_redis_up 0" in metrics
    before_restart = len(results)
    ws_before_restart = len(ws_results)
    redis.start()
    n_ok_before = sum(1 for r in results[:before_restart] if r[1] == 201)
    wait_until(
        lambda: sum(1 for r in results[before_restart:] if r[1] == 201) >= 20,
        "sends to succeed again without restarting the gateway",
        deadline=60,
    )
    wait_until(
        lambda: any(r["type"] == "sent" for r in ws_results[ws_before_restart:]), "WebSocket sends to resume"
    )
    stop.set()
    t.join(timeout=DEADLINE)
    wt.join(timeout=DEADLINE)
    assert any(r["type"] == "error" and r["status"] == 503 for r in ws_results), "no 503 over the socket"
    assert {r["type"] for r in ws_results} <= {"sent", "error"}
    assert {r["status"] for r in ws_results if r["type"] == "error"} == {503}
    assert gw.proc.poll() is None and gw.proc.pid == gw_pid
    assert n_ok_before >= 20
    codes = {r[1] for r in results}
    assert codes <= {201, 503}, codes
    # Every id the gateway reported is stored (appendfsync always: a kill -9 loses none).
    stored = [r[2] for r in results if r[1] == 201] + [r["id"] for r in ws_results if r["type"] == "sent"]
    with gw.client(token) as c:
        for mid in stored:
            assert c.get(f"/v1/mailboxes/alice/messages/{mid}/status").json()["status"] == "ready", mid
    # The stream opened before the outage is still there and gets a message sent now.
    with gw.client(token) as c:
        mid = c.post("/v1/mailboxes/bob/messages", json={"payload": "after-restart"}).json()["id"]
    lt.join(timeout=120)
    assert stream_got == [mid]


def test_gateway_starts_while_redis_is_down_and_connects_later(tmp_path):
    redis = Redis(tmp_path / "redis")
    g = Gateway(redis, tmp_path)
    # Redis is not started: the gateway runs, says not ready, and answers 503 at once.
    g.log = open(g.log_path, "ab")
    g.proc = subprocess.Popen(
        [str(GATEWAY), "serve", "--redis", g.redis_url, "--listen", f"127.0.0.1:{g.port}"],
        stdout=g.log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: httpx.get(g.url + "/healthz", timeout=5).status_code == 200, "the gateway to listen")
        r = httpx.get(g.url + "/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["ready"] is False
        r = httpx.get(g.url + "/v1/me", headers={"Authorization": "Bearer mbx_x"}, timeout=10)
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.headers["content-type"].startswith("application/problem+json")
        redis.start()
        redis.grant_gateway()
        wait_until(lambda: httpx.get(g.url + "/readyz", timeout=10).status_code == 200, "readiness once Redis is up")
        with g.client(g.token("bob")) as c:
            assert c.post("/v1/mailboxes/bob/messages", json={"payload": "late"}).status_code == 201
    finally:
        g.stop()
        redis.stop()

"""Tokens: one agent's token reaches no other agent's mail; a revoked token fails at
once; tokens never appear in the gateway's logs or in Redis in clear."""

from __future__ import annotations

import json
import ssl
import subprocess
import time

import httpx
from websockets.sync.client import connect as ws_connect

from conftest import DEADLINE
from test_rest import drain, problem, send
from test_streams import recv_type, ws_url


def test_one_agent_cannot_touch_another_agents_mailbox(gateway, alice, bob, tokens):
    drain(bob, "bob")
    mid = send(alice, "bob", "for bob only")
    # alice may send to bob but not read, ack, nack, peek, subscribe or inspect his mailbox.
    attempts = [
        alice.get("/v1/mailboxes/bob/messages"),
        alice.get("/v1/mailboxes/bob/messages", params={"wait_ms": 200}),
        alice.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}),
        alice.post("/v1/mailboxes/bob/nack", json={"ids": [mid]}),
        alice.get("/v1/mailboxes/bob/peek"),
        alice.get("/v1/mailboxes/bob/threads/t"),
        alice.get(f"/v1/mailboxes/bob/messages/{mid}/status"),
        alice.get("/v1/mailboxes/bob"),
        alice.get("/v1/mailboxes/bob/subscriptions"),
        alice.post("/v1/mailboxes/bob/subscriptions", json={"patterns": ["x.#"]}),
        alice.delete("/v1/mailboxes/bob/subscriptions/x.%23"),
        alice.post(f"/v1/mailboxes/bob/messages/{mid}/reply", json={"payload": "x"}),
        alice.get("/v1/mailboxes/bob/events"),
    ]
    for r in attempts:
        body = problem(r, 403)
        assert "NOPERM" in body["detail"], body
    # Over the WebSocket too.
    with ws_connect(ws_url(gateway), additional_headers={"Authorization": f"Bearer {tokens['alice']}"}) as ws:
        ws.send(json.dumps({"op": "subscribe", "mailbox": "bob"}))
        frame = json.loads(ws.recv(timeout=DEADLINE))
        assert frame["type"] == "error" and frame["status"] == 403, frame
        ws.send(json.dumps({"op": "ack", "mailbox": "bob", "ids": [mid]}))
        frame = json.loads(ws.recv(timeout=DEADLINE))
        assert frame["type"] == "error" and frame["status"] == 403, frame
    # The message is untouched: still ready, never delivered.
    [m] = bob.get("/v1/mailboxes/bob/peek").json()["messages"]
    assert m["id"] == mid and m["state"] == "ready" and m["deliveries"] == 0
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 0
    drain(bob, "bob")


def test_no_impersonation_through_the_body_or_the_names(alice, bob):
    drain(bob, "bob")
    # A name or value that reads like an option stays a value: the sender is still alice.
    mid = send(alice, "bob", "AS", thread="AS", dedup="AS bob", reply_to="AS")
    [m] = bob.get("/v1/mailboxes/bob/messages").json()["messages"]
    assert m["id"] == mid and m["from"] == "alice" and m["payload"] == "AS"
    bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]})
    problem(alice.post("/v1/mailboxes/bob/messages", json={"payload": "x", "from": "bob"}), 400)
    problem(alice.post("/v1/mailboxes/bob/messages", json={"payload": "x", "as": "bob"}), 400)


def test_a_revoked_token_fails_at_once(gateway):
    token = gateway.token("carol")
    with gateway.client(token) as c:
        assert c.get("/v1/me").status_code == 200
        token_id = c.get("/v1/me").json()["token_id"]
        listed = gateway.token_cmd("list").stdout.decode()
        assert token_id in listed and token not in listed
        assert gateway.token_cmd("revoke", token_id).returncode == 0
        problem(c.get("/v1/me"), 401)
        problem(c.post("/v1/mailboxes/bob/messages", json={"payload": "x"}), 401)
        assert token_id not in gateway.token_cmd("list").stdout.decode()
    # Revoking by the token itself works too; revoking twice says so.
    other = gateway.token("carol")
    assert gateway.token_cmd("revoke", other).returncode == 0
    assert gateway.token_cmd("revoke", other).returncode != 0
    assert httpx.get(gateway.url + "/v1/me", headers={"Authorization": f"Bearer {other}"}).status_code == 401


def test_a_revoked_token_fails_at_once_on_every_gateway(redis, tmp_path):
    """Two gateways on one Redis, both holding the token in their caches: a revocation through
    either one's command line reaches both before the command returns."""
    from conftest import Gateway

    gateways = [Gateway(redis, tmp_path, "--rate-limit", "0", "--token-cache-ms", "60000") for _ in range(2)]
    for g in gateways:
        g.start()
    try:
        for round_ in range(3):
            token = gateways[0].token("carol")
            clients = [g.client(token) for g in gateways]
            for c in clients:
                for _ in range(3):  # the first lookup fills the cache, the others hit it
                    assert c.get("/v1/me").status_code == 200
            assert gateways[round_ % 2].token_cmd("revoke", token).returncode == 0
            for c in clients:
                problem(c.get("/v1/me"), 401)
                problem(c.post("/v1/mailboxes/carol/messages", json={"payload": "x"}), 401)
                c.close()
        # A token created after an unknown one was looked up works at once (nothing negative is cached).
        late = "mbx_" + "A" * 43
        assert httpx.get(gateways[0].url + "/v1/me", headers={"Authorization": f"Bearer {late}"}).status_code == 401
        fresh = gateways[1].token("carol")
        assert httpx.get(gateways[0].url + "/v1/me", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    finally:
        for g in gateways:
            g.stop()


def test_unknown_tokens_are_rate_limited_per_address(redis, tmp_path):
    from conftest import Gateway

    g = Gateway(redis, tmp_path, "--auth-fail-rate", "1", "--auth-fail-burst", "3")
    g.start()
    try:
        good = g.token("alice")
        with httpx.Client(base_url=g.url, timeout=DEADLINE) as c:
            codes = [c.get("/v1/me", headers={"Authorization": f"Bearer mbx_guess{i}"}).status_code for i in range(8)]
            assert codes[:3] == [401, 401, 401] and codes[3:] == [429] * 5, codes
            r = c.get("/v1/me", headers={"Authorization": "Bearer mbx_guess-again"})
            problem(r, 429)
            assert 1 <= int(r.headers["retry-after"]) <= 2
            # A blocked address gets no lookups: at most one a second gets through to Redis.
            def lookups() -> int:
                stats = redis.cli("INFO", "commandstats").splitlines()
                line = next((x for x in stats if x.startswith("cmdstat_hgetall:")), "calls=0,")
                return int(line.split("calls=", 1)[1].split(",", 1)[0])

            before, start = lookups(), time.monotonic()
            for _ in range(20):
                assert c.get("/v1/me", headers={"Authorization": "Bearer mbx_guess"}).status_code == 429
            assert lookups() - before <= time.monotonic() - start + 1
            # Requests without a token are 401 as before; the budget comes back with time.
            assert c.get("/v1/me").status_code == 401
            time.sleep(1.2)
            assert c.get("/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200
            assert c.get("/v1/me", headers={"Authorization": "Bearer mbx_guess"}).status_code == 401
    finally:
        g.stop()


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(redis, tmp_path):
    from conftest import Gateway

    def guesses(c: httpx.Client, n: int, forwarded: str) -> list[int]:
        return [
            c.get("/v1/me", headers={"Authorization": f"Bearer mbx_guess{i}", "X-Forwarded-For": forwarded}).status_code
            for i in range(n)
        ]

    # Not a trusted proxy: the header changes nothing, the connection's address is counted.
    (tmp_path / "plain").mkdir()
    (tmp_path / "proxied").mkdir()
    g = Gateway(redis, tmp_path / "plain", "--auth-fail-rate", "1", "--auth-fail-burst", "3")
    g.start()
    try:
        with httpx.Client(base_url=g.url, timeout=DEADLINE) as c:
            assert guesses(c, 3, "203.0.113.1") == [401] * 3
            assert guesses(c, 2, "203.0.113.2") == [429] * 2
    finally:
        g.stop()

    # Behind a trusted proxy: each client named by the header has its own budget, and a client
    # cannot escape its own by writing addresses to the left of what the proxy appended.
    g = Gateway(redis, tmp_path / "proxied", "--auth-fail-rate", "1", "--auth-fail-burst", "3",
                "--trusted-proxy", "127.0.0.0/8")
    g.start()
    try:
        with httpx.Client(base_url=g.url, timeout=DEADLINE) as c:
            assert guesses(c, 5, "203.0.113.1") == [401] * 3 + [429] * 2
            assert guesses(c, 3, "203.0.113.2") == [401] * 3
            assert guesses(c, 2, "198.51.100.9, 203.0.113.1") == [429] * 2
            good = g.token("alice")
            r = c.get("/v1/me", headers={"Authorization": f"Bearer {good}", "X-Forwarded-For": "203.0.113.3"})
            assert r.status_code == 200
    finally:
        g.stop()


def test_an_expired_token_fails(gateway):
    token = gateway.token("carol", "--ttl", "1s")
    with gateway.client(token) as c:
        first = c.get("/v1/me")
        if first.status_code == 200:
            assert first.json()["expires"] > 0
        end = time.monotonic() + DEADLINE
        while c.get("/v1/me").status_code != 401:
            assert time.monotonic() < end, "the token never expired"
            time.sleep(0.2)


def test_tokens_are_never_in_logs_or_in_redis_in_clear(gateway, tokens, alice, redis):
    # Use every token once, including a failing one, so that they pass through the logs.
    for t in tokens.values():
        httpx.get(gateway.url + "/v1/me", headers={"Authorization": f"Bearer {t}"})
    httpx.get(gateway.url + "/v1/me?access_token=" + tokens["alice"])
    bogus = "mbx_this-one-is-unknown-but-still-secret"
    httpx.get(gateway.url + "/v1/me", headers={"Authorization": f"Bearer {bogus}"})
    secrets = list(tokens.values()) + [bogus]
    log = gateway.log_path.read_bytes()
    assert b"request" in log  # the log is written, and...
    for s in secrets:
        assert s.encode() not in log, "a token is in the gateway log"
        assert s[4:].encode() not in log
    # Redis: every key name and every value of the gateway's keys, plus the AOF on disk.
    keys = redis.cli("--scan").splitlines()
    token_keys = [k for k in keys if k.startswith("gateway:token:")]
    assert len(token_keys) >= len(tokens)
    for k in token_keys:
        fields = redis.cli("HGETALL", k)
        for s in secrets:
            assert s not in k and s not in fields
    redis.cli("BGREWRITEAOF")
    disk = b"".join(p.read_bytes() for p in redis.dir.rglob("*") if p.is_file() and p.suffix != ".log")
    for s in secrets:
        assert s.encode() not in disk, "a token is in Redis's files"


def test_a_client_that_trickles_its_headers_is_cut_off(redis, tmp_path):
    import socket

    from conftest import Gateway

    g = Gateway(redis, tmp_path, "--header-timeout-ms", "500")
    g.start()
    try:
        slow = socket.create_connection(("127.0.0.1", g.port))
        slow.sendall(b"GET /v1/me HTTP/1.1\r\nHost: gateway\r\n")  # and never the end of the headers
        slow.settimeout(DEADLINE)
        closed_or_refused = slow.recv(4096)
        assert closed_or_refused == b"" or closed_or_refused.startswith(b"HTTP/1.1 408"), closed_or_refused
        slow.close()
        # Others are served meanwhile and after.
        assert httpx.get(g.url + "/healthz").status_code == 200
    finally:
        g.stop()


def test_https_with_a_certificate(redis, tmp_path):
    """TLS served by the gateway itself (rustls), given a certificate and its key."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=DEADLINE,
    )
    from conftest import Gateway

    g = Gateway(redis, tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), ca=cert)
    g.start()
    try:
        token = g.token("alice")
        ctx = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=g.url, verify=ctx, headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.get("/v1/me").json()["agent"] == "alice"
            assert c.post("/v1/mailboxes/alice/messages", json={"payload": "over tls"}).status_code == 201
        # Plain HTTP to the TLS port gets no HTTP answer.
        try:
            r = httpx.get(f"http://127.0.0.1:{g.port}/healthz", timeout=10)
            assert r.status_code != 200
        except httpx.HTTPError:
            pass
    finally:
        g.stop()

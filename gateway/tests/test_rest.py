"""Every REST route with its success and error statuses, against a real
redis-server with the module and the real gateway."""

from __future__ import annotations

import base64

import httpx

from conftest import wait_until

PROBLEM = "application/problem+json"


def problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


def send(c: httpx.Client, mailbox: str, payload: str = "hello", **opts) -> str:
    r = c.post(f"/v1/mailboxes/{mailbox}/messages", json={"payload": payload, **opts})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_send_read_ack_round_trip_keeps_every_option(alice, gateway, tokens, unique):
    mb = f"bob{unique}"
    with gateway.client(tokens["bob"]) as owner:
        # bob reads his own mailbox: grant him read on it (ownership is by name).
        gateway.redis.cli("MAILBOX.ACL", "GRANT", "bob", "read", mb)
        mid = send(
            alice, mb, "summarise", priority=5, ttl_ms=600000, dedup=f"d{unique}", type="text/plain",
            thread="t1", correlation="c1", reply_to="alice", meta={"k": [1, 2]}, confirm=True,
        )
        # The same dedup key returns the same id and stores nothing new.
        assert send(alice, mb, "summarise again", dedup=f"d{unique}") == mid
        r = owner.get(f"/v1/mailboxes/{mb}/messages", params={"count": 10})
        assert r.status_code == 200, r.text
        msgs = r.json()["messages"]
        assert [m["id"] for m in msgs] == [mid]
        m = msgs[0]
        assert m["from"] == "alice" and m["via"] == "gw" and m["to"] == mb
        assert (m["priority"], m["type"], m["thread"], m["correlation"], m["reply_to"]) == (
            5, "text/plain", "t1", "c1", "alice")
        assert m["meta"] == {"k": [1, 2]} and m["payload"] == "summarise" and m["deliveries"] == 1
        assert m["expires"] > m["ts"]
        r = owner.get(f"/v1/mailboxes/{mb}/messages/{mid}/status")
        assert r.json() == {"id": mid, "status": "leased"}
        r = owner.post(f"/v1/mailboxes/{mb}/ack", json={"ids": [mid]})
        assert r.status_code == 200 and r.json() == {"acked": 1}
        assert owner.post(f"/v1/mailboxes/{mb}/ack", json={"ids": [mid]}).json() == {"acked": 0}
        assert owner.get(f"/v1/mailboxes/{mb}/messages/{mid}/status").json()["status"] == "unknown"
    # CONFIRM: a receipt landed in alice's own mailbox.
    r = alice.get("/v1/mailboxes/alice/messages", params={"count": 100})
    receipts = [x for x in r.json()["messages"] if x.get("correlation") == mid]
    assert receipts and receipts[0]["type"] == "application/vnd.mailbox.receipt+json", r.text
    alice.post("/v1/mailboxes/alice/ack", json={"ids": [x["id"] for x in r.json()["messages"]]})


def test_binary_payload_round_trips_as_base64(alice, unique):
    mb = f"alice{unique}"
    raw = bytes([0, 255, 1, 254])
    r = alice.post(f"/v1/mailboxes/{mb}/messages", json={"payload_base64": base64.b64encode(raw).decode()})
    assert r.status_code == 201
    gw_read = alice.get(f"/v1/mailboxes/{mb}/peek")
    # alice does not own alice<unique>: the module says no, and so does the gateway.
    problem(gw_read, 403)
    r = alice.get("/v1/mailboxes/alice/peek")
    assert r.status_code == 200


def test_own_mailbox_binary(alice, gateway, unique):
    raw = bytes([0, 255, 1, 254])
    mid = alice.post(
        "/v1/mailboxes/alice/messages", json={"payload_base64": base64.b64encode(raw).decode(), "thread": unique}
    ).json()["id"]
    r = alice.get(f"/v1/mailboxes/alice/threads/{unique}")
    assert r.status_code == 200
    [m] = r.json()["messages"]
    assert m["id"] == mid and base64.b64decode(m["payload_base64"]) == raw and "payload" not in m
    assert m["state"] == "ready"
    r = alice.get("/v1/mailboxes/alice/messages", params={"count": 1000, "noack": "true"})
    assert mid in [x["id"] for x in r.json()["messages"]]
    assert alice.get(f"/v1/mailboxes/alice/threads/{unique}").json()["messages"] == []


def test_raw_body_send_keeps_its_content_type_and_query_options(alice, unique):
    raw = bytes(range(256))
    r = alice.post(
        "/v1/mailboxes/alice/messages",
        content=raw,
        headers={"content-type": "application/octet-stream"},
        params={"priority": 7, "thread": unique, "meta": '{"n": 1}', "dedup": unique},
    )
    assert r.status_code == 201, r.text
    mid = r.json()["id"]
    [m] = alice.get(f"/v1/mailboxes/alice/threads/{unique}").json()["messages"]
    assert m["id"] == mid and base64.b64decode(m["payload_base64"]) == raw
    assert (m["type"], m["priority"], m["meta"]) == ("application/octet-stream", 7, {"n": 1})
    r = alice.post("/v1/mailboxes/alice/messages", content="é text", headers={"content-type": "text/plain; charset=utf-8"},
                   params={"thread": unique})
    assert r.status_code == 201
    msgs = alice.get(f"/v1/mailboxes/alice/threads/{unique}").json()["messages"]
    assert msgs[-1]["payload"] == "é text" and msgs[-1]["type"] == "text/plain; charset=utf-8"
    alice.post("/v1/mailboxes/alice/ack", json={"ids": [x["id"] for x in msgs]})
    drain(alice, "alice")


def test_raw_body_reply_publish_and_broadcast(alice, bob, carol, unique):
    """Every route that takes a payload takes it as base64 in JSON or as the raw body."""
    raw = bytes(range(255, -1, -1))
    octets = {"content-type": "application/octet-stream"}
    drain(bob, "bob")
    mid = send(alice, "bob", "question", reply_to="alice", thread=unique)
    r = bob.post(f"/v1/mailboxes/bob/messages/{mid}/reply", content=raw, headers=octets, params={"priority": 3})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = bob.post(f"/v1/mailboxes/bob/messages/{mid}/reply", json={"payload_base64": base64.b64encode(raw).decode()})
    assert r.status_code == 201, r.text
    rid2 = r.json()["id"]
    by_id = {m["id"]: m for m in alice.get(f"/v1/mailboxes/alice/threads/{unique}").json()["messages"]}
    assert base64.b64decode(by_id[rid]["payload_base64"]) == raw and by_id[rid]["correlation"] == mid
    assert (by_id[rid]["type"], by_id[rid]["priority"]) == ("application/octet-stream", 3)
    assert base64.b64decode(by_id[rid2]["payload_base64"]) == raw
    problem(bob.post(f"/v1/mailboxes/bob/messages/{mid}/reply", content=b"x", headers=octets,
                     params={"ephemeral": "true"}), 400)
    bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]})
    drain(carol, "carol")
    assert carol.post("/v1/mailboxes/carol/subscriptions", json={"patterns": [f"bin{unique}.#"]}).status_code == 200
    r = alice.post(f"/v1/topics/bin{unique}.x/messages", content=raw, headers=octets, params={"thread": unique})
    assert r.status_code == 201 and r.json()["receivers"] == 1, r.text
    pid = r.json()["id"]
    r = alice.post(f"/v1/topics/bin{unique}.x/messages", json={"payload_base64": base64.b64encode(raw).decode()})
    assert r.status_code == 201 and r.json()["receivers"] == 1
    r = alice.post("/v1/namespaces/default/broadcast", content="all: é", headers={"content-type": "text/plain; charset=utf-8"},
                   params={"thread": unique})
    assert r.status_code == 201 and r.json()["receivers"] >= 3, r.text
    bid = r.json()["id"]
    held = {m["id"]: m for m in carol.get("/v1/mailboxes/carol/peek").json()["messages"]}
    assert base64.b64decode(held[pid]["payload_base64"]) == raw and held[pid]["type"] == "application/octet-stream"
    assert held[bid]["payload"] == "all: é" and held[bid]["type"] == "text/plain; charset=utf-8"
    problem(alice.post(f"/v1/topics/bin{unique}.x/messages", content=b"x", headers={"content-type": ""}), 415)
    problem(alice.post(f"/v1/topics/bin{unique}.x/messages", json={"payload": "x"}, params={"priority": 1}), 400)
    problem(alice.post("/v1/namespaces/default/broadcast", content=b"x", headers=octets, params={"ephemeral": "true"}), 400)
    carol.delete(f"/v1/mailboxes/carol/subscriptions/bin{unique}.%23")
    for who, mb in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        drain(who, mb)


def test_long_poll_read_wakes_when_a_message_lands(alice, bob, gateway):
    import threading

    got: dict = {}

    def reader():
        got["r"] = bob.get("/v1/mailboxes/bob/messages", params={"wait_ms": 10000, "count": 1})

    drain(bob, "bob")
    t = threading.Thread(target=reader)
    t.start()
    # The read is blocked on its own connection: other requests still go through.
    wait_until(lambda: gateway.redis.cli("INFO", "clients").count("blocked_clients:1") == 1, "the read to block")
    assert alice.get("/v1/me").status_code == 200
    mid = send(alice, "bob", "wake up")
    t.join(timeout=30)
    assert not t.is_alive()
    r = got["r"]
    assert r.status_code == 200 and [m["id"] for m in r.json()["messages"]] == [mid]
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 1


def drain(c: httpx.Client, mb: str) -> None:
    while True:
        msgs = c.get(f"/v1/mailboxes/{mb}/messages", params={"count": 1000, "noack": "true"}).json()["messages"]
        if not msgs:
            return


def test_long_poll_with_nothing_returns_empty(bob):
    drain(bob, "bob")
    r = bob.get("/v1/mailboxes/bob/messages", params={"wait_ms": 300})
    assert r.status_code == 200 and r.json() == {"messages": []}


def test_nack_puts_back_and_delay_holds(alice, bob):
    drain(bob, "bob")
    mid = send(alice, "bob", "again")
    [m] = bob.get("/v1/mailboxes/bob/messages").json()["messages"]
    assert m["id"] == mid
    r = bob.post("/v1/mailboxes/bob/nack", json={"ids": [mid]})
    assert r.json() == {"requeued": 1}
    [m2] = bob.get("/v1/mailboxes/bob/messages").json()["messages"]
    assert m2["id"] == mid and m2["deliveries"] == 2
    assert bob.post("/v1/mailboxes/bob/nack", json={"ids": [mid], "delay_ms": 600000}).json()["requeued"] == 1
    assert bob.get(f"/v1/mailboxes/bob/messages/{mid}/status").json()["status"] == "delayed"
    peek = bob.get("/v1/mailboxes/bob/peek", params={"start": mid, "end": mid}).json()["messages"]
    assert [p["state"] for p in peek] == ["delayed"]
    assert bob.get("/v1/mailboxes/bob/messages").json()["messages"] == []
    # A delayed message can still be settled by its id.
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 1


def test_reply_goes_to_reply_to_with_correlation(alice, bob):
    drain(bob, "bob")
    mid = send(alice, "bob", "question", thread="th-r", reply_to="alice")
    r = bob.post(f"/v1/mailboxes/bob/messages/{mid}/reply", json={"payload": "answer"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    msgs = alice.get("/v1/mailboxes/alice/peek").json()["messages"]
    [ans] = [m for m in msgs if m["id"] == rid]
    assert ans["correlation"] == mid and ans["thread"] == "th-r" and ans["from"] == "bob"
    problem(bob.post("/v1/mailboxes/bob/messages/1-1/reply", json={"payload": "x"}), 404)
    body = problem(bob.post(f"/v1/mailboxes/bob/messages/{mid}/reply", json={"payload": "x", "correlation": "c"}), 400)
    assert "CORRELATION" in body["detail"]


def test_info_and_me(alice, bob, unique):
    drain(bob, "bob")
    send(alice, "bob", "waiting")
    r = bob.get("/v1/mailboxes/bob")
    assert r.status_code == 200 and r.json()["ready"] == 1 and "lease" in r.json()
    me = bob.get("/v1/me").json()
    assert me["agent"] == "bob" and me["waiting"] == 1 and me["scopes"] == ["send", "read"] and me["expires"] == 0
    problem(bob.get(f"/v1/mailboxes/bob{unique}x"), 403)
    drain(bob, "bob")


def test_info_of_a_missing_mailbox_is_404(gateway, tokens, unique):
    with gateway.client(tokens["admin"]) as adm:
        gateway.redis.cli("MAILBOX.ACL", "GRANT", "admin", "read", f"nobox{unique}")
        problem(adm.get(f"/v1/mailboxes/nobox{unique}"), 404)


def test_subscriptions_publish_and_broadcast(alice, bob, carol, gateway, unique):
    drain(carol, "carol")
    r = carol.post("/v1/mailboxes/carol/subscriptions", json={"patterns": [f"news{unique}.#"], "min_priority": 2})
    assert r.status_code == 200 and r.json() == {"count": 1}
    subs = carol.get("/v1/mailboxes/carol/subscriptions").json()["subscriptions"]
    assert {"pattern": f"news{unique}.#", "min_priority": 2} in subs
    r = alice.post(f"/v1/topics/news{unique}.ai/messages", json={"payload": "low", "priority": 1})
    assert r.status_code == 201 and r.json()["receivers"] == 0
    r = alice.post(f"/v1/topics/news{unique}.ai/messages", json={"payload": "high", "priority": 5})
    assert r.status_code == 201 and r.json()["receivers"] == 1
    pid = r.json()["id"]
    assert [m["id"] for m in carol.get("/v1/mailboxes/carol/peek").json()["messages"]] == [pid]
    r = carol.delete(f"/v1/mailboxes/carol/subscriptions/news{unique}.%23")
    assert r.status_code == 200 and r.json() == {"count": 1}
    assert f"news{unique}.#" not in [s["pattern"] for s in carol.get("/v1/mailboxes/carol/subscriptions").json()["subscriptions"]]
    r = alice.post(f"/v1/topics/news{unique}.ai/messages", json={"payload": "gone", "priority": 5})
    assert r.json()["receivers"] == 0
    r = alice.post("/v1/namespaces/default/broadcast", json={"payload": "all hands"})
    assert r.status_code == 201 and r.json()["receivers"] >= 3
    assert "all hands" in [m.get("payload") for m in carol.get("/v1/mailboxes/carol/peek").json()["messages"]]
    problem(alice.post(f"/v1/topics/news{unique}.ai/messages", json={"payload": "x", "ephemeral": True}), 400)
    drain(carol, "carol")
    drain(bob, "bob")


def test_presence(alice):
    r = alice.get("/v1/namespaces/default/presence")
    assert r.status_code == 200
    agents = {a["agent"]: a for a in r.json()["agents"]}
    assert "alice" in agents and agents["alice"]["last_seen"] > 0


def test_ephemeral_send_reports_listeners(alice, unique):
    r = alice.post(f"/v1/mailboxes/eph{unique}/messages", json={"payload": "typing", "ephemeral": True})
    assert r.status_code == 201 and r.json()["listeners"] == 0 and r.json()["id"]


def test_dead_letters_and_grants_need_admin(alice, gateway, tokens, unique):
    mb = f"dl{unique}"
    gateway.redis.cli("MAILBOX.CREATE", mb, "MAXDELIVER", "1")
    gateway.redis.cli("MAILBOX.ACL", "GRANT", "admin", "admin", mb)
    gateway.redis.cli("MAILBOX.ACL", "GRANT", "admin", "read", mb)
    mid = send(alice, mb, "poison")
    with gateway.client(tokens["admin"]) as adm:
        [m] = adm.get(f"/v1/mailboxes/{mb}/messages").json()["messages"]
        assert adm.post(f"/v1/mailboxes/{mb}/nack", json={"ids": [mid]}).json()["requeued"] == 1
        dead = adm.get(f"/v1/mailboxes/{mb}/dead")
        assert dead.status_code == 200
        [d] = dead.json()["messages"]
        assert d["id"] == mid and d["reason"] == "maxdeliveries" and d["dead_at"] > 0
        assert adm.get(f"/v1/mailboxes/{mb}/messages/{mid}/status").json()["status"] == "dead"
        assert adm.post(f"/v1/mailboxes/{mb}/dead/requeue", json={"ids": [mid]}).json() == {"count": 1}
        assert adm.get(f"/v1/mailboxes/{mb}/dead").json()["messages"] == []
        [m] = adm.get(f"/v1/mailboxes/{mb}/messages").json()["messages"]
        adm.post(f"/v1/mailboxes/{mb}/nack", json={"ids": [mid]})
        assert adm.post(f"/v1/mailboxes/{mb}/dead/purge", json={"all": True}).json() == {"count": 1}
        problem(adm.post(f"/v1/mailboxes/{mb}/dead/purge", json={"all": True, "ids": [mid]}), 400)
        # alice's token has no admin scope; with it she would still lack the module's admin grant.
        problem(alice.get(f"/v1/mailboxes/{mb}/dead"), 403)
        # Grants: admin needs the module's admin grant on the pattern.
        g = {"agent": "carol", "permission": "read", "pattern": mb}
        assert adm.post("/v1/grants", json=g).json() == {"count": 1}
        # Its own grants the agent may list; another agent's need admin on the namespace.
        own = adm.get("/v1/grants", params={"agent": "admin"}).json()["grants"]
        assert {"agent": "admin", "permission": "admin", "pattern": mb} in own
        body = problem(adm.get("/v1/grants", params={"agent": "carol"}), 403)
        assert body["detail"] == "NOPERM agent 'admin' has no 'admin' permission on 'default'", body
        gateway.redis.cli("MAILBOX.ACL", "GRANT", "admin", "admin", "default")
        assert g in adm.get("/v1/grants", params={"agent": "carol"}).json()["grants"]
        assert adm.post("/v1/grants/revoke", json=g).json() == {"count": 1}
        assert g not in adm.get("/v1/grants", params={"agent": "carol"}).json()["grants"]
        gateway.redis.cli("MAILBOX.ACL", "REVOKE", "admin", "admin", "default")
        body = problem(adm.post("/v1/grants", json={**g, "pattern": f"other{unique}"}), 403)
        assert "NOPERM" in body["detail"]
        problem(alice.get("/v1/grants"), 403)
        problem(adm.post("/v1/grants", json={**g, "permission": "root"}), 400)
    # Each ran as one command AS the token's agent: the module audited the agent, with the
    # gateway's user as `via`.
    events = audit_events(gateway.redis)
    assert {"event": "dead-requeue", "agent": "admin", "via": "gw", "name": mb, "count": "1"} in events
    assert {"event": "dead-purge", "agent": "admin", "via": "gw", "name": mb, "count": "1"} in events
    granted = [e for e in events if e.get("event") == "grant" and e.get("pattern") == mb and e.get("agent") == "carol"]
    assert granted and granted[-1]["by"] == "admin" and granted[-1]["via"] == "gw", granted
    commands = {e["command"] for e in events if e.get("event") == "as" and e.get("user") == "gw" and e.get("agent") == "admin"}
    assert {"mailbox.dead", "mailbox.acl grant", "mailbox.acl revoke", "mailbox.acl list"} <= commands, commands


def audit_events(redis, stream: str = "mailbox:audit") -> list[dict[str, str]]:
    """The entries of an audit stream as dicts; every entry's first field is `event`."""
    lines = redis.cli("XRANGE", stream, "-", "+").splitlines()
    starts = [i for i, line in enumerate(lines) if line == "event"]
    events = []
    for n, start in enumerate(starts):
        end = starts[n + 1] - 1 if n + 1 < len(starts) else len(lines)
        fields = lines[start:end]
        events.append(dict(zip(fields[::2], fields[1::2])))
    return events


def test_unauthenticated_and_unknown_tokens_get_401(gateway):
    with gateway.client() as anon:
        problem(anon.get("/v1/me"), 401)
        assert anon.get("/v1/me").headers["www-authenticate"] == "Bearer"
        problem(anon.post("/v1/mailboxes/bob/messages", json={"payload": "x"}), 401)
    for bad in ("Bearer mbx_nope", "Basic YWxpY2U6cHc=", "Bearer", "mbx_x"):
        r = httpx.get(gateway.url + "/v1/me", headers={"Authorization": bad})
        problem(r, 401)


def test_bad_input_is_400(alice):
    url = "/v1/mailboxes/alice/messages"
    problem(alice.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)
    problem(alice.post(url, json={}), 400)
    problem(alice.post(url, json={"payload": "a", "payload_base64": "YQ=="}), 400)
    problem(alice.post(url, json={"payload_base64": "***"}), 400)
    problem(alice.post(url, json={"payload": "a", "priority": 10}), 400)
    problem(alice.post(url, json={"payload": "a", "priority": -1}), 400)
    problem(alice.post(url, json={"payload": "a", "unknown": 1}), 400)
    problem(alice.post(url, json={"payload": "a", "meta": [1]}), 400)
    problem(alice.post(url, content=b"x", headers={"content-type": ""}), 415)
    problem(alice.post(url, json={"payload": "a"}, params={"priority": 1}), 400)
    problem(alice.post(url, content=b"x", headers={"content-type": "text/plain"}, params={"meta": "[1]"}), 400)
    problem(alice.post(url, content=b"x", headers={"content-type": "text/plain"}, params={"bogus": "1"}), 400)
    problem(alice.get(url, params={"count": 0}), 400)
    problem(alice.get(url, params={"count": "many"}), 400)
    # Ids are checked before they reach a command line where they could read as options.
    for ids in (["AS", "bob"], [], ["1-0", "DELAY"], ["1-0 AS bob"]):
        problem(alice.post("/v1/mailboxes/alice/ack", json={"ids": ids}), 400)
    problem(alice.get("/v1/mailboxes/alice/peek", params={"start": "COUNT"}), 400)
    problem(alice.get("/v1/mailboxes/alice/messages/not-an-id/status"), 400)
    body = problem(alice.post("/v1/mailboxes/alice/subscriptions", json={"patterns": ["a..b"]}), 400)
    assert body["code"] == "ERR"


def test_unknown_route_and_method(alice):
    problem(alice.get("/v1/nothing-here"), 404)
    problem(alice.put("/v1/mailboxes/alice/messages", json={}), 405)


def test_wrongtype_and_full_mailbox_are_409(alice, gateway, unique):
    gateway.redis.cli("SET", f"str{unique}", "x")
    body = problem(alice.post(f"/v1/mailboxes/str{unique}/messages", json={"payload": "x"}), 409)
    assert body["code"] == "WRONGTYPE"
    gateway.redis.cli("MAILBOX.CREATE", f"full{unique}", "MAXLEN", "1")
    send(alice, f"full{unique}", "one")
    body = problem(alice.post(f"/v1/mailboxes/full{unique}/messages", json={"payload": "two"}), 409)
    assert "full" in body["detail"]


def test_oversized_body_and_payload_are_413(alice, gateway, unique):
    big = "x" * (2 * 1024 * 1024 + 10)
    problem(alice.post("/v1/mailboxes/alice/messages", json={"payload": big}), 413)
    gateway.redis.cli("CONFIG", "SET", "mailbox.max-payload-bytes", "1000")
    try:
        body = problem(alice.post(f"/v1/mailboxes/p{unique}/messages", json={"payload": "y" * 1001}), 413)
        assert "max-payload-bytes" in body["detail"]
    finally:
        gateway.redis.cli("CONFIG", "SET", "mailbox.max-payload-bytes", "1048576")


def test_oversized_headers_are_431(alice):
    r = alice.get("/v1/me", headers={"x-filler": "z" * 20000})
    problem(r, 431)


def test_module_send_quota_is_429_with_retry_after(gateway, unique):
    agent = f"q{unique}"
    gateway.redis.cli("MAILBOX.ACL", "QUOTA", agent, "1", "default", "BURST", "1")
    with gateway.client(gateway.token(agent)) as c:
        assert c.post("/v1/mailboxes/alice/messages", json={"payload": "1"}).status_code == 201
        statuses = [c.post("/v1/mailboxes/alice/messages", json={"payload": "n"}) for _ in range(3)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited, [r.status_code for r in statuses]
        problem(limited[0], 429)
        assert int(limited[0].headers["retry-after"]) >= 1


def test_token_rate_limit_is_429_with_retry_after(redis, tmp_path):
    from conftest import Gateway

    g = Gateway(redis, tmp_path, "--rate-limit", "1", "--rate-burst", "3")
    g.start()
    try:
        with g.client(g.token("alice")) as c:
            codes = [c.get("/v1/me").status_code for _ in range(8)]
            assert codes[:3] == [200, 200, 200] and 429 in codes, codes
            r = c.get("/v1/me")
            if r.status_code == 429:
                problem(r, 429)
                assert int(r.headers["retry-after"]) >= 1
        # Another token has its own budget.
        with g.client(g.token("bob")) as other:
            assert other.get("/v1/me").status_code == 200
    finally:
        g.stop()


def test_scopes_limit_what_a_token_does(gateway, unique):
    with gateway.client(gateway.token("alice", "--scope", "read")) as ro:
        problem(ro.post("/v1/mailboxes/bob/messages", json={"payload": "x"}), 403)
        assert ro.get("/v1/mailboxes/alice/peek").status_code == 200
    with gateway.client(gateway.token("alice", "--scope", "send")) as wo:
        assert wo.post(f"/v1/mailboxes/s{unique}/messages", json={"payload": "x"}).status_code == 201
        problem(wo.get("/v1/mailboxes/alice/messages"), 403)


def test_health_and_readiness(gateway):
    assert httpx.get(gateway.url + "/healthz").json() == {"status": "ok"}
    r = httpx.get(gateway.url + "/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] and body["module_loaded"] and body["role"] == "master"


def test_cors_is_off_unless_configured(gateway, redis, tmp_path):
    from conftest import Gateway

    origin = {"Origin": "https://agents.example", "Access-Control-Request-Method": "POST"}
    r = httpx.options(gateway.url + "/v1/me", headers=origin)
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in httpx.get(gateway.url + "/healthz", headers=origin).headers
    g = Gateway(redis, tmp_path, "--cors-origin", "https://agents.example")
    g.start()
    try:
        r = httpx.options(g.url + "/v1/me", headers=origin)
        assert r.headers["access-control-allow-origin"] == "https://agents.example"
        other = {**origin, "Origin": "https://evil.example"}
        assert "access-control-allow-origin" not in httpx.options(g.url + "/v1/me", headers=other).headers
    finally:
        g.stop()

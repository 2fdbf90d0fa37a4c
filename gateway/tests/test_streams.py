"""Real-time delivery: SSE and WebSocket clients receive messages sent by another
agent through REST and through redis-cli, ack them, and lose nothing when the stream
drops before the ack."""

from __future__ import annotations

import json

import httpx
import httpx_sse
from websockets.sync.client import connect as ws_connect

from conftest import DEADLINE
from test_rest import drain, send


def sse_events(client: httpx.Client, path: str, n: int, headers: dict | None = None) -> list:
    """The first n `message` events of an SSE stream, then the stream is closed."""
    out = []
    with httpx_sse.connect_sse(client, "GET", path, headers=headers or {}) as es:
        assert es.response.status_code == 200, es.response.read()
        assert es.response.headers["content-type"].startswith("text/event-stream")
        for ev in es.iter_sse():
            if ev.event == "message":
                out.append(ev)
                if len(out) == n:
                    break
    return out


def cli_send(redis, sender: str, mailbox: str, payload: str) -> str:
    mid = redis.cli("MAILBOX.SEND", mailbox, payload, user=sender)
    assert mid and "-" in mid and not mid.startswith("ERR"), mid
    return mid


def test_sse_gets_rest_and_redis_cli_messages_then_acks(gateway, alice, bob, tokens):
    drain(bob, "bob")
    rest_id = send(alice, "bob", "via rest")
    cli_id = cli_send(gateway.redis, "alice", "bob", "via redis-cli")
    with gateway.client(tokens["bob"], timeout=httpx.Timeout(DEADLINE)) as c:
        events = sse_events(c, "/v1/mailboxes/bob/events", 2)
    assert [e.id for e in events] == [rest_id, cli_id]
    datas = [json.loads(e.data) for e in events]
    assert [d["message"]["payload"] for d in datas] == ["via rest", "via redis-cli"]
    assert all(d["mailbox"] == "bob" and d["message"]["from"] == "alice" for d in datas)
    # Nothing is settled by the push: the ack does it.
    r = bob.post("/v1/mailboxes/bob/ack", json={"ids": [rest_id, cli_id]})
    assert r.json() == {"acked": 2}
    assert bob.get(f"/v1/mailboxes/bob/messages/{rest_id}/status").json()["status"] == "unknown"


def test_sse_receives_a_message_sent_after_it_opened(gateway, alice, bob, tokens):
    import threading

    drain(bob, "bob")
    got: list = []

    def listen():
        with gateway.client(tokens["bob"]) as c:
            got.extend(sse_events(c, "/v1/mailboxes/bob/events", 1))

    t = threading.Thread(target=listen)
    t.start()
    from conftest import wait_until

    wait_until(lambda: "blocked_clients:1" in gateway.redis.cli("INFO", "clients"), "the stream's read to block")
    mid = cli_send(gateway.redis, "alice", "bob", "live")
    t.join(timeout=DEADLINE)
    assert not t.is_alive() and [e.id for e in got] == [mid]
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 1


def test_sse_dropped_before_ack_loses_nothing(gateway, alice, bob, tokens):
    drain(bob, "bob")
    mid = send(alice, "bob", "do not lose me")
    with gateway.client(tokens["bob"]) as c:
        [ev] = sse_events(c, "/v1/mailboxes/bob/events", 1)
    assert ev.id == mid
    # The stream is gone without an ack: the message comes back, at once (the gateway
    # puts its lease back), well within the deadline.
    r = bob.get("/v1/mailboxes/bob/messages", params={"wait_ms": 10000})
    [m] = r.json()["messages"]
    assert m["id"] == mid and m["deliveries"] == 2
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 1


def test_sse_reconnect_with_last_event_id_gets_what_is_not_acked(gateway, alice, bob, tokens):
    drain(bob, "bob")
    mid = send(alice, "bob", "seen, not acked")
    # Leased for ten minutes by a reader that went away (as a stream lost without the
    # gateway noticing would leave it).
    [m] = bob.get("/v1/mailboxes/bob/messages", params={"lease_ms": 600000}).json()["messages"]
    assert m["id"] == mid
    assert bob.get(f"/v1/mailboxes/bob/messages/{mid}/status").json()["status"] == "leased"
    with gateway.client(tokens["bob"]) as c:
        [ev] = sse_events(c, "/v1/mailboxes/bob/events", 1, headers={"Last-Event-ID": mid})
    assert ev.id == mid and json.loads(ev.data)["message"]["deliveries"] == 2
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 1


def ws_url(gateway) -> str:
    return gateway.url.replace("http://", "ws://") + "/v1/ws"


def recv_type(ws, kind: str) -> dict:
    while True:
        frame = json.loads(ws.recv(timeout=DEADLINE))
        if frame["type"] == kind:
            return frame
        assert frame["type"] != "error", frame


def test_websocket_receives_acks_and_sends(gateway, alice, bob, tokens):
    drain(bob, "bob")
    with ws_connect(ws_url(gateway), additional_headers={"Authorization": f"Bearer {tokens['bob']}"}) as ws:
        ws.send(json.dumps({"op": "subscribe", "mailbox": "bob", "ref": 1}))
        assert recv_type(ws, "subscribed") == {"type": "subscribed", "mailbox": "bob", "ref": 1}
        rest_id = send(alice, "bob", "ws via rest")
        first = recv_type(ws, "message")
        cli_id = cli_send(gateway.redis, "alice", "bob", "ws via redis-cli")
        second = recv_type(ws, "message")
        assert [first["message"]["id"], second["message"]["id"]] == [rest_id, cli_id]
        assert second["message"]["payload"] == "ws via redis-cli" and second["mailbox"] == "bob"
        ws.send(json.dumps({"op": "ack", "mailbox": "bob", "ids": [rest_id, cli_id], "ref": "a"}))
        assert recv_type(ws, "acked") == {"type": "acked", "mailbox": "bob", "count": 2, "ref": "a"}
        ws.send(json.dumps({"op": "send", "mailbox": "alice", "payload": "from the socket", "ref": "s"}))
        sent = recv_type(ws, "sent")
        assert sent["ref"] == "s" and sent["id"]
        ws.send("not json")
        assert json.loads(ws.recv(timeout=DEADLINE))["status"] == 400
    assert bob.get(f"/v1/mailboxes/bob/messages/{rest_id}/status").json()["status"] == "unknown"
    peek = alice.get("/v1/mailboxes/alice/peek").json()["messages"]
    assert any(m["id"] == sent["id"] and m["from"] == "bob" for m in peek)


def test_websocket_dropped_before_ack_loses_nothing(gateway, alice, bob, tokens):
    drain(bob, "bob")
    mid = send(alice, "bob", "ws keep me")
    with ws_connect(ws_url(gateway), additional_headers={"Authorization": f"Bearer {tokens['bob']}"}) as ws:
        ws.send(json.dumps({"op": "subscribe", "mailbox": "bob"}))
        assert recv_type(ws, "message")["message"]["id"] == mid
    r = bob.get("/v1/mailboxes/bob/messages", params={"wait_ms": 10000})
    [m] = r.json()["messages"]
    assert m["id"] == mid and m["deliveries"] == 2
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 1


def test_websocket_nack_over_the_socket(gateway, alice, bob, tokens):
    drain(bob, "bob")
    mid = send(alice, "bob", "nack me")
    with ws_connect(ws_url(gateway), additional_headers={"Authorization": f"Bearer {tokens['bob']}"}) as ws:
        ws.send(json.dumps({"op": "subscribe", "mailbox": "bob"}))
        assert recv_type(ws, "message")["message"]["id"] == mid
        ws.send(json.dumps({"op": "nack", "mailbox": "bob", "ids": [mid], "delay_ms": 600000}))
        assert recv_type(ws, "nacked")["count"] == 1
    assert bob.get(f"/v1/mailboxes/bob/messages/{mid}/status").json()["status"] == "delayed"
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [mid]}).json()["acked"] == 1

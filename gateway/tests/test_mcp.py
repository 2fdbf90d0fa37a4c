"""MCP: the mailbox as tools, driven by the Python `mcp` SDK (a third-party client) over
streamable HTTP (`/mcp` on the gateway) and over stdio (`mailbox-gateway mcp --stdio`),
against the real redis-server with the module."""

from __future__ import annotations

import json
import os
import re
import subprocess
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import DEADLINE, GATEWAY
from test_rest import drain, send

TOOLS = {
    "mailbox_send",
    "mailbox_read",
    "mailbox_ack",
    "mailbox_nack",
    "mailbox_reply",
    "mailbox_publish",
    "mailbox_subscribe",
    "mailbox_thread",
    "mailbox_whoami",
}
ID = re.compile(r"^\d+-\d+$")


class Agent:
    """One MCP client session acting for one token."""

    def __init__(self, session: ClientSession, notes: list[Any], noted: anyio.Event):
        self.session = session
        self.notes = notes
        self.noted = noted

    async def call(self, tool: str, **args: Any) -> dict:
        """A tool call that must succeed; its JSON answer."""
        r = await self.session.call_tool(tool, args)
        assert not r.is_error, (tool, args, r.content)
        [content] = r.content
        return json.loads(content.text)

    async def refused(self, tool: str, **args: Any) -> str:
        """A tool call that must come back as a tool error (not a protocol error); its text."""
        r = await self.session.call_tool(tool, args)
        assert r.is_error, (tool, args, r.content)
        return " ".join(c.text for c in r.content)


@asynccontextmanager
async def _session(streams, notes: list[Any], noted: anyio.Event) -> AsyncIterator[Agent]:
    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/resources/updated":
            notes.append(message)
            noted.set()

    read, write = streams
    async with ClientSession(read, write, message_handler=on_message) as session:
        await session.initialize()
        yield Agent(session, notes, noted)


@asynccontextmanager
async def over_http(gateway, token: str) -> AsyncIterator[Agent]:
    notes: list[Any] = []
    noted = anyio.Event()
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with client, streamable_http_client(gateway.url + "/mcp", http_client=client) as (read, write):
        async with _session((read, write), notes, noted) as agent:
            yield agent


@asynccontextmanager
async def over_stdio(gateway, token: str) -> AsyncIterator[Agent]:
    notes: list[Any] = []
    noted = anyio.Event()
    params = StdioServerParameters(
        command=str(GATEWAY),
        args=["mcp", "--stdio", "--redis", gateway.redis_url],
        env={"MAILBOX_GATEWAY_TOKEN": token, "MAILBOX_GATEWAY_LOG": "warn"},
    )
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with _session((read, write), notes, noted) as agent:
                yield agent


@pytest.fixture(params=["http", "stdio"])
def connect(request, gateway) -> Callable[[str], Any]:
    """Opens an MCP session for a token over the transport of the test's parameter."""
    opener = over_http if request.param == "http" else over_stdio
    return lambda token: opener(gateway, token)


def run(main) -> None:
    anyio.run(main)


def test_tools_list_has_the_tools_with_exact_schemas(connect, tokens):
    async def main():
        async with connect(tokens["alice"]) as a:
            tools = {t.name: t for t in (await a.session.list_tools()).tools}
            assert set(tools) == TOOLS
            for t in tools.values():
                assert t.description and len(t.description) > 30, t
                assert t.input_schema["type"] == "object"
            send = tools["mailbox_send"].input_schema
            assert sorted(send["required"]) == ["body", "to"]
            assert send["additionalProperties"] is False
            assert set(send["properties"]) == {"to", "body", "thread", "priority", "reply_to", "ttl_s", "confirm"}
            assert send["properties"]["priority"]["minimum"] == 0 and send["properties"]["priority"]["maximum"] == 9
            read = tools["mailbox_read"].input_schema
            assert not read.get("required")
            assert set(read["properties"]) == {"limit", "wait_s", "thread", "include_bodies", "max_body_chars"}
            ack = tools["mailbox_ack"].input_schema
            assert ack["required"] == ["ids"] and ack["properties"]["ids"]["type"] == "array"
            assert ack["properties"]["ids"]["items"]["type"] == "string"
            assert sorted(tools["mailbox_reply"].input_schema["required"]) == ["body", "id"]
            assert sorted(tools["mailbox_publish"].input_schema["required"]) == ["body", "topic"]
            assert tools["mailbox_subscribe"].input_schema["required"] == ["pattern"]
            assert tools["mailbox_thread"].input_schema["required"] == ["thread"]
            assert not tools["mailbox_whoami"].input_schema.get("required")

    run(main)


def test_each_tool_succeeds_and_is_refused(connect, gateway, tokens, alice, bob, unique):
    drain(bob, "bob")
    drain(alice, "alice")
    carol_ro = gateway.token("carol", "--scope", "read")
    topic = f"news{unique}.today"

    async def main():
        async with connect(tokens["alice"]) as a, connect(tokens["bob"]) as b, connect(carol_ro) as ro:
            me = await a.call("mailbox_whoami")
            assert me["agent"] == "alice" and me["mailbox"] == "alice" and me["namespace"] == "default"
            assert me["inbox"] == "mailbox://alice/inbox" and me["scopes"] == ["send", "read"]

            # send: an id; refused by the module (bad priority, the module's reserved key) and by scope.
            sent = await a.call("mailbox_send", to="bob", body="ping", thread=f"t{unique}", priority=3, ttl_s=600)
            assert ID.match(sent["id"])
            assert "PRIORITY" in await a.refused("mailbox_send", to="bob", body="x", priority=12)
            assert "module's own" in await a.refused("mailbox_send", to="mailbox:ns", body="x")
            assert "'send' scope" in await ro.refused("mailbox_send", to="bob", body="x")

            # whoami counts what waits.
            assert (await b.call("mailbox_whoami"))["waiting"] == 1

            # read: the message, leased; refused without the read scope and with a bad limit.
            got = await b.call("mailbox_read")
            [m] = got["messages"]
            assert m["id"] == sent["id"] and m["from"] == "alice" and m["body"] == "ping"
            assert m["priority"] == 3 and m["thread"] == f"t{unique}" and m["deliveries"] == 1
            assert (await b.call("mailbox_read"))["messages"] == []
            assert "limit" in await b.refused("mailbox_read", limit=0)
            wo_carol = gateway.token("carol", "--scope", "send")
            async with connect(wo_carol) as wo:
                assert "'read' scope" in await wo.refused("mailbox_read")
                assert "'read' scope" in await wo.refused("mailbox_ack", ids=["1-1"])
                assert "'read' scope" in await wo.refused("mailbox_subscribe", pattern="x.#")

            # nack puts it back, ack settles it; malformed ids are refused.
            assert (await b.call("mailbox_nack", ids=[m["id"]])) == {"requeued": 1}
            [again] = (await b.call("mailbox_read"))["messages"]
            assert again["id"] == m["id"] and again["deliveries"] == 2
            assert "invalid message id" in await b.refused("mailbox_nack", ids=["AS"])
            assert "at least one" in await b.refused("mailbox_ack", ids=[])
            assert (await b.call("mailbox_ack", ids=[m["id"]])) == {"acked": 1}
            assert (await b.call("mailbox_ack", ids=[m["id"]])) == {"acked": 0}

            # reply: to a message bob holds; refused for one he does not.
            sent2 = await a.call("mailbox_send", to="bob", body="second", thread=f"t{unique}")
            await b.call("mailbox_read")
            replied = await b.call("mailbox_reply", id=sent2["id"], body="pong")
            assert ID.match(replied["id"])
            await b.call("mailbox_ack", ids=[sent2["id"]])
            assert "no such message" in await b.refused("mailbox_reply", id="1-1", body="x")

            # subscribe + publish: bob gets the topic message; refusals from the gateway and the module.
            assert (await b.call("mailbox_subscribe", pattern=f"news{unique}.#")) == {"count": 1}
            pub = await a.call("mailbox_publish", topic=topic, body="extra")
            assert ID.match(pub["id"]) and pub["receivers"] == 1
            assert f"news{unique}.#" in (await b.call("mailbox_whoami"))["subscriptions"]
            [tm] = (await b.call("mailbox_read"))["messages"]
            assert tm["body"] == "extra" and tm["from"] == "alice"
            await b.call("mailbox_ack", ids=[tm["id"]])
            assert (await b.call("mailbox_subscribe", pattern=f"news{unique}.#", unsubscribe=True)) == {"count": 1}
            assert (await a.call("mailbox_publish", topic=topic, body="nobody"))["receivers"] == 0
            assert "FROM" in await b.refused("mailbox_subscribe", pattern="FROM")
            assert "'send' scope" in await ro.refused("mailbox_publish", topic=topic, body="x")

            # thread: what alice's mailbox holds of the thread (bob's reply), without leasing it.
            th = await a.call("mailbox_thread", thread=f"t{unique}")
            assert [(x["id"], x["body"], x["from"]) for x in th["messages"]] == [(replied["id"], "pong", "bob")]
            assert th["messages"][0]["correlation"] == sent2["id"] and th["messages"][0]["state"] == "ready"
            assert "limit" in await a.refused("mailbox_thread", thread="t", limit=0)
            async with connect(gateway.token("carol", "--scope", "send")) as wo:
                assert "'read' scope" in await wo.refused("mailbox_thread", thread="t")

    run(main)
    drain(alice, "alice")
    drain(bob, "bob")


def test_two_agents_exchange_a_request_and_a_reply_through_the_tools(connect, tokens, alice, bob, unique):
    drain(alice, "alice")
    drain(bob, "bob")
    thread = f"job{unique}"

    async def main():
        async with connect(tokens["alice"]) as a, connect(tokens["bob"]) as b:
            got: dict = {}

            async def bob_waits():
                got["read"] = await b.call("mailbox_read", wait_s=20)

            async with anyio.create_task_group() as tg:
                tg.start_soon(bob_waits)
                await anyio.sleep(0.3)  # not needed for correctness: the message waits either way
                req = await a.call("mailbox_send", to="bob", body="summarise 2401.00001", thread=thread)
            [m] = got["read"]["messages"]
            assert m["id"] == req["id"] and m["from"] == "alice" and m["thread"] == thread
            assert m["body"] == "summarise 2401.00001"
            rep = await b.call("mailbox_reply", id=m["id"], body="three bullets")
            assert (await b.call("mailbox_ack", ids=[m["id"]])) == {"acked": 1}

            [answer] = (await a.call("mailbox_read", wait_s=20))["messages"]
            assert answer["id"] == rep["id"] and answer["from"] == "bob" and answer["body"] == "three bullets"
            assert answer["correlation"] == req["id"] and answer["thread"] == thread
            assert (await a.call("mailbox_ack", ids=[answer["id"]])) == {"acked": 1}
            # Both settled: nothing waits on either side.
            assert (await a.call("mailbox_whoami"))["waiting"] == 0
            assert (await b.call("mailbox_whoami"))["waiting"] == 0

    run(main)


def test_one_token_cannot_read_or_ack_another_agents_mail(connect, gateway, tokens, alice, bob, carol, unique):
    drain(bob, "bob")
    drain(carol, "carol")
    thread = f"secret{unique}"
    mid = send(alice, "bob", "for bob only", thread=thread)

    async def main():
        async with connect(tokens["carol"]) as c:
            # Every tool acts on carol's own mailbox: bob's message is out of reach.
            assert (await c.call("mailbox_read", wait_s=1))["messages"] == []
            assert (await c.call("mailbox_ack", ids=[mid])) == {"acked": 0}
            assert (await c.call("mailbox_nack", ids=[mid])) == {"requeued": 0}
            assert (await c.call("mailbox_thread", thread=thread))["messages"] == []
            assert "no such message" in await c.refused("mailbox_reply", id=mid, body="hijack")
            assert (await c.call("mailbox_whoami"))["agent"] == "carol"
            # An argument cannot name another agent: unknown arguments are refused by the schema.
            assert "unknown field `mailbox`" in await c.refused("mailbox_read", mailbox="bob")
            assert "unknown field `mailbox`" in await c.refused("mailbox_ack", ids=[mid], mailbox="bob")
            # Nor can carol watch or read bob's inbox resource.
            with pytest.raises(Exception, match="NOPERM"):
                await c.session.subscribe_resource("mailbox://bob/inbox")
            with pytest.raises(Exception, match="NOPERM"):
                await c.session.read_resource("mailbox://bob/inbox")
        # The message is untouched: ready, never delivered; bob gets it.
        [m] = bob.get("/v1/mailboxes/bob/peek").json()["messages"]
        assert m["id"] == mid and m["state"] == "ready" and m["deliveries"] == 0
        async with connect(tokens["bob"]) as b:
            [got] = (await b.call("mailbox_read"))["messages"]
            assert got["id"] == mid and got["body"] == "for bob only"
            assert (await b.call("mailbox_ack", ids=[mid])) == {"acked": 1}

    run(main)


def test_inbox_resource_subscription_notifies_on_send(connect, tokens, alice, bob):
    drain(bob, "bob")

    async def main():
        async with connect(tokens["bob"]) as b:
            listed = (await b.session.list_resources()).resources
            assert [str(r.uri) for r in listed] == ["mailbox://bob/inbox"]
            # The server listens before it answers, so a send right after is notified.
            await b.session.subscribe_resource("mailbox://bob/inbox")
            assert b.notes == []
            mid = send(alice, "bob", "wake up")
            with anyio.fail_after(10):
                await b.noted.wait()
            assert b.notes[0].params.uri == "mailbox://bob/inbox"
            # The resource shows the waiting message without leasing it.
            res = await b.session.read_resource("mailbox://bob/inbox")
            inbox = json.loads(res.contents[0].text)
            assert [m["id"] for m in inbox["messages"]] == [mid]
            assert inbox["messages"][0]["state"] == "ready"
            [m] = (await b.call("mailbox_read"))["messages"]
            assert m["id"] == mid
            await b.call("mailbox_ack", ids=[mid])
            # After unsubscribing, no more notifications.
            await b.session.unsubscribe_resource("mailbox://bob/inbox")
            count = len(b.notes)
            send(alice, "bob", "quiet")
            await anyio.sleep(1.0)
            assert len(b.notes) == count

    run(main)
    drain(bob, "bob")


def test_long_bodies_are_cut_with_a_marker_and_headers_only_on_request(connect, tokens, alice, bob):
    drain(bob, "bob")
    body = "é" * 3000 + "x" * 2000
    mid = send(alice, "bob", body, thread="long")

    async def main():
        async with connect(tokens["bob"]) as b:
            [m] = (await b.call("mailbox_read", max_body_chars=100))["messages"]
            assert m["id"] == mid and m["body_chars"] == 5000
            assert m["body"] == "é" * 100 + "…[cut 4900 of 5000 characters]"
            await b.call("mailbox_nack", ids=[mid])
            [h] = (await b.call("mailbox_read", include_bodies=False))["messages"]
            assert h["id"] == mid and "body" not in h and h["body_chars"] == 5000 and h["thread"] == "long"
            await b.call("mailbox_nack", ids=[mid])
            # The default budget is 2000 characters.
            [d] = (await b.call("mailbox_read"))["messages"]
            assert d["body"].startswith("é" * 2000) and d["body"].endswith("…[cut 3000 of 5000 characters]")
            await b.call("mailbox_ack", ids=[mid])

    run(main)


def test_read_with_a_thread_returns_only_that_thread(connect, tokens, alice, bob, unique):
    drain(bob, "bob")
    other = send(alice, "bob", "other", thread=f"o{unique}")
    mine = send(alice, "bob", "mine", thread=f"m{unique}")

    async def main():
        async with connect(tokens["bob"]) as b:
            [m] = (await b.call("mailbox_read", thread=f"m{unique}", limit=5))["messages"]
            assert m["id"] == mine
            [o] = (await b.call("mailbox_read"))["messages"]
            assert o["id"] == other  # put back, so readable at once
            await b.call("mailbox_ack", ids=[mine, other])

    run(main)


def test_http_endpoint_checks_token_origin_and_host(gateway, tokens):
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    # A new connection each: a refusal answered before the body was read may close its connection.
    with httpx.Client(base_url=gateway.url, timeout=DEADLINE, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        assert c.post("/mcp", json=init, headers=headers).status_code == 401
        assert c.post("/mcp", json=init, headers={**headers, "Authorization": "Bearer mbx_nope"}).status_code == 401
        r = c.post("/mcp", json=init, headers={**headers, **auth})
        assert r.status_code == 200, r.text
        assert "mailbox-gateway" in r.text and "2025-11-25" in r.text
        # A browser page from another origin (DNS rebinding, or any cross-site page) is refused.
        r = c.post("/mcp", json=init, headers={**headers, **auth, "Origin": "http://evil.example"})
        assert r.status_code == 403, r.text
        r = c.post("/mcp", json=init, headers={**headers, **auth, "Host": "evil.example"})
        assert r.status_code == 403, r.text


def test_http_endpoint_takes_the_allowed_origins_and_hosts(redis, tmp_path, tokens):
    from conftest import Gateway

    g = Gateway(
        redis, tmp_path, "--rate-limit", "0",
        "--mcp-allowed-origin", "https://app.example:443", "--mcp-allowed-host", "mail.example",
    )
    g.start()
    try:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
        }
        headers = {
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {tokens['alice']}",
        }
        with httpx.Client(base_url=g.url, timeout=DEADLINE, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            ok = c.post("/mcp", json=init, headers={**headers, "Origin": "https://app.example"})
            assert ok.status_code == 200, ok.text
            assert c.post("/mcp", json=init, headers={**headers, "Origin": "https://evil.example"}).status_code == 403
            assert c.post("/mcp", json=init, headers={**headers, "Host": "mail.example"}).status_code == 200
            assert c.post("/mcp", json=init, headers={**headers, "Host": "other.example"}).status_code == 403
    finally:
        g.stop()


def test_stdio_refuses_an_unknown_token(gateway):
    out = subprocess.run(
        [str(GATEWAY), "mcp", "--stdio", "--redis", gateway.redis_url, "--token", "mbx_unknown"],
        input=b"",
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )
    assert out.returncode != 0
    assert b"unknown, expired or revoked token" in out.stderr


def test_stdio_stops_working_once_its_token_is_revoked(gateway, alice):
    token = gateway.token("alice")

    async def main():
        async with over_stdio(gateway, token) as a:
            assert (await a.call("mailbox_whoami"))["agent"] == "alice"
            assert gateway.token_cmd("revoke", token).returncode == 0
            assert "revoked" in await a.refused("mailbox_whoami")

    run(main)



def test_an_http_session_stays_with_the_agent_that_used_it(gateway, tokens):
    def rpc(c: httpx.Client, token: str, body: dict, session: str | None = None) -> httpx.Response:
        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
        if session:
            headers |= {"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-11-25"}
        return c.post("/mcp", json=body, headers=headers)

    def result(r: httpx.Response) -> dict:
        assert r.status_code == 200, r.text
        [data] = [line[5:] for line in r.text.splitlines() if line.startswith("data:") and line[5:].strip()]
        return json.loads(data)["result"]

    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    whoami = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "mailbox_whoami", "arguments": {}}}
    with httpx.Client(base_url=gateway.url, timeout=DEADLINE) as c:
        r = rpc(c, tokens["alice"], init)
        session = r.headers["mcp-session-id"]
        result(r)
        assert rpc(c, tokens["alice"], {"jsonrpc": "2.0", "method": "notifications/initialized"}, session).status_code == 202
        mine = result(rpc(c, tokens["alice"], whoami, session))
        assert not mine.get("isError") and json.loads(mine["content"][0]["text"])["agent"] == "alice"
        theirs = result(rpc(c, tokens["bob"], {**whoami, "id": 3}, session))
        assert theirs["isError"] is True and "belongs to another agent" in theirs["content"][0]["text"]

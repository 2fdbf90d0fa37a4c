"""Pipelines: many commands in one round trip, results in order, refusals in place, the outbox
when Redis is away; sync and asyncio."""

from __future__ import annotations

import pytest
import redis
from conftest import RedisServer, async_client, quiet_client, sid

from redis_mailbox import (
    AsyncMailbox,
    InvalidArgument,
    Mailbox,
    Outbox,
    Published,
    RetryPolicy,
    Sent,
    Unavailable,
)


def test_pipeline_results_in_order(r: redis.Redis, server: RedisServer) -> None:
    mb = Mailbox(server.client())
    old = sid(mb.send("{t}bob", "old"))
    mb.read("{t}bob")
    mb.subscribe("{t}carol", "news.#")
    with mb.pipeline() as pipe:
        for i in range(5):
            pipe.send("{t}bob", f"m{i}", priority=1)
        pipe.send("{t}bob", "bad", priority=42)
        pipe.publish("{t}news.x", "n")
        pipe.ack("{t}bob", old)
        pipe.nack("{t}bob", "1-1")
        assert len(pipe) == 9
        res = pipe.execute()
    sends = res[:5]
    assert all(isinstance(s, Sent) and s.id and s.dedup for s in sends)
    assert isinstance(res[5], InvalidArgument)
    assert res[5].text == "ERR PRIORITY must be an integer from 0 to 9"
    assert isinstance(res[6], Published) and res[6].receivers == 1
    assert res[7:] == [1, 0]
    assert [m.text for m in mb.peek("{t}bob")] == [f"m{i}" for i in range(5)]
    assert pipe.execute() == []


def test_pipeline_sends_of_each_form(r: redis.Redis, server: RedisServer) -> None:
    mb = Mailbox(server.client())
    with mb.pipeline() as pipe:
        pipe.send("{t}bob", b"bytes")
        pipe.send("{t}bob", "text")
        pipe.send("{t}bob", {"k": 1})
        pipe.send("{t}bob", "own key", dedup="mine")
        pipe.send("{t}bob", "own key again", dedup="mine")
        sent = pipe.execute()
    assert all(isinstance(s, Sent) and not s.queued for s in sent)
    keys = [s.dedup for s in sent[:3]]
    assert all(k is not None and k.startswith("pyc:") for k in keys) and len(set(keys)) == 3
    assert sent[3].dedup == "mine" and sent[4].id == sent[3].id
    msgs = mb.peek("{t}bob")
    assert [m.payload for m in msgs] == [b"bytes", b"text", b'{"k":1}', b"own key"]
    assert [m.content_type for m in msgs] == [None, None, "application/json", None]
    # The key a pipelined send carried deduplicates a send made again with it.
    assert mb.send("{t}bob", "bytes", dedup=keys[0]).id == sent[0].id
    assert len(mb.peek("{t}bob")) == 4
    plain = Mailbox(server.client(), idempotent=False)
    with plain.pipeline() as pipe:
        pipe.send("{t}carol", "x")
        pipe.send("{t}carol", b"x")
        a, b = pipe.execute()
    assert a.dedup is None and b.dedup is None and a.id != b.id


def test_pipeline_of_sends_goes_to_the_outbox(fresh_server: RedisServer) -> None:
    box = Outbox(":memory:")
    mb = Mailbox(quiet_client(fresh_server.port), retry=RetryPolicy(max_attempts=1), outbox=box)
    fresh_server.kill()
    pipe = mb.pipeline()
    pipe.send("{t}bob", "a")
    pipe.send("{t}bob", "b")
    res = pipe.execute()
    assert [s.queued for s in res] == [True, True] and len(box) == 2
    pipe.send("{t}bob", "c")
    pipe.ack("{t}bob", "1-1")
    with pytest.raises(Unavailable):
        pipe.execute()
    fresh_server.start()
    pipe.send("{t}bob", "d")
    (d,) = pipe.execute()
    assert d.id is not None and len(box) == 0
    assert [m.text for m in Mailbox(fresh_server.client()).peek("{t}bob")] == ["a", "b", "d"]


async def test_async_pipeline(r: redis.Redis, server: RedisServer) -> None:
    c = async_client(server.port)
    mb = AsyncMailbox(c)
    async with mb.pipeline() as pipe:
        pipe.send("{t}bob", "x")
        pipe.send("{t}bob", "y", dedup="same")
        pipe.send("{t}bob", "y again", dedup="same")
        a, b, again = await pipe.execute()
    assert a.id and b.id and again.id == b.id
    assert [m.text for m in await mb.peek("{t}bob")] == ["x", "y"]
    await c.aclose()

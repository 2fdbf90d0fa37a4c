"""listen() and receive(): a message is acked when the caller's block ends normally, nacked when
it raises; sync and asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from conftest import RedisServer, async_client, sid

from redis_mailbox import AsyncMailbox, Mailbox, Status

BOX = "{t}worker"


class Boom(Exception):
    pass


@pytest.fixture
def smb(r: redis.Redis, server: RedisServer) -> Iterator[Mailbox]:
    c = server.client()
    yield Mailbox(c)
    c.close()


@pytest.fixture
async def amb(r: redis.Redis, server: RedisServer) -> AsyncIterator[AsyncMailbox]:
    c = async_client(server.port)
    yield AsyncMailbox(c)
    await c.aclose()


def test_listen_acks_each_handled_message(smb: Mailbox) -> None:
    ids = [sid(smb.send(BOX, f"task {i}")) for i in range(5)]
    seen = []
    with smb.listen(BOX, count=2, block=200, idle_timeout=1.0) as stream:
        for msg in stream:
            seen.append(msg.id)
    assert seen == ids
    assert stream.acked == 5 and stream.nacked == 0
    assert smb.peek(BOX) == []


def test_listen_nacks_on_exception(smb: Mailbox) -> None:
    first = sid(smb.send(BOX, "ok"))
    bad = sid(smb.send(BOX, "fails"))
    smb.send(BOX, "read ahead")
    with pytest.raises(Boom), smb.listen(BOX, count=3, block=200) as stream:
        for msg in stream:
            if msg.id == bad:
                raise Boom()
    assert stream.acked == 1 and stream.nacked == 2
    assert smb.status(BOX, first) is Status.UNKNOWN
    assert smb.status(BOX, bad) is Status.READY
    again = smb.read(BOX, count=5)
    assert [m.text for m in again] == ["fails", "read ahead"]
    assert again[0].deliveries == 2


def test_listen_break_in_with_acks(smb: Mailbox) -> None:
    mid = sid(smb.send(BOX, "one"))
    smb.send(BOX, "two")
    with smb.listen(BOX, block=200) as stream:
        for msg in stream:
            assert msg.id == mid
            break
    assert smb.status(BOX, mid) is Status.UNKNOWN
    assert [m.text for m in smb.peek(BOX)] == ["two"]


def test_bare_for_acks_and_nacks_on_exception(smb: Mailbox) -> None:
    a = sid(smb.send(BOX, "a"))
    b = sid(smb.send(BOX, "b"))
    with pytest.raises(Boom):
        for msg in smb.listen(BOX, block=200):
            if msg.id == b:
                raise Boom()
    assert smb.status(BOX, a) is Status.UNKNOWN
    assert smb.status(BOX, b) is Status.READY


def test_listen_idle_timeout_ends(smb: Mailbox) -> None:
    assert list(smb.listen(BOX, block=100, idle_timeout=0.3)) == []


def test_receive_context_manager(smb: Mailbox) -> None:
    a = sid(smb.send(BOX, "a"))
    with smb.receive(BOX, block=200) as msg:
        assert msg is not None and msg.id == a
    assert smb.status(BOX, a) is Status.UNKNOWN
    b = sid(smb.send(BOX, "b"))
    with pytest.raises(Boom), smb.receive(BOX, block=200) as msg:
        raise Boom()
    assert smb.status(BOX, b) is Status.READY
    smb.ack(BOX, *[m.id for m in smb.read(BOX)])
    with smb.receive(BOX, block=50) as none:
        assert none is None


async def test_async_listen_acks_and_nacks(amb: AsyncMailbox) -> None:
    ids = [sid(await amb.send(BOX, f"t{i}")) for i in range(3)]
    seen = []
    with pytest.raises(Boom):
        async with amb.listen(BOX, count=2, block=200) as stream:
            async for msg in stream:
                seen.append(msg.id)
                if msg.id == ids[1]:
                    raise Boom()
    assert seen == ids[:2]
    assert await amb.status(BOX, ids[0]) is Status.UNKNOWN
    assert await amb.status(BOX, ids[1]) is Status.READY
    assert await amb.status(BOX, ids[2]) is Status.READY
    got = []
    async with amb.listen(BOX, block=200, idle_timeout=0.5) as stream:
        async for msg in stream:
            got.append(msg.id)
    assert got == ids[1:]
    assert await amb.peek(BOX) == []


async def test_async_break_acks_and_bare_for_nacks(amb: AsyncMailbox) -> None:
    a = sid(await amb.send(BOX, "a"))
    b = sid(await amb.send(BOX, "b"))
    async with amb.listen(BOX, block=200) as stream:
        async for msg in stream:
            assert msg.id == a
            break
    assert await amb.status(BOX, a) is Status.UNKNOWN
    it = amb.listen(BOX, block=200).__aiter__()
    with pytest.raises(Boom):
        async for msg in it:
            assert msg.id == b
            raise Boom()
    await it.aclose()
    assert await amb.status(BOX, b) is Status.READY


async def test_async_receive(amb: AsyncMailbox) -> None:
    a = sid(await amb.send(BOX, "a"))
    async with amb.receive(BOX, block=200) as msg:
        assert msg is not None and msg.id == a
    assert await amb.status(BOX, a) is Status.UNKNOWN
    b = sid(await amb.send(BOX, "b"))
    with pytest.raises(Boom):
        async with amb.receive(BOX, block=200) as msg:
            raise Boom()
    assert await amb.status(BOX, b) is Status.READY

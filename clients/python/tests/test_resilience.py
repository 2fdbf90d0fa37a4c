"""Retries, the circuit breaker, the outbox and the cache, with redis-server killed by pid."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import DEADLINE, RedisServer, async_client, quiet_client, raw, wait_for

from redis_mailbox import (
    AsyncMailbox,
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    InvalidArgument,
    Mailbox,
    Outbox,
    OutboxFull,
    RetryPolicy,
    Sent,
    Unavailable,
    WhenFull,
)

FAST = RetryPolicy(max_attempts=3, base_delay=0.02, max_delay=0.1)
BOX = "{t}bob"


class Counting:
    """A redis-py client that counts the commands it is asked to run."""

    def __init__(self, inner: redis.Redis) -> None:
        self.inner = inner
        self.calls = 0

    def execute_command(self, *args: Any) -> Any:
        self.calls += 1
        return raw(self.inner, *args)


def state(b: CircuitBreaker) -> BreakerState:
    return b.state


def payloads(server: RedisServer, box: str = BOX) -> list[str]:
    c = server.client()
    try:
        return [m.text for m in Mailbox(c).peek(box)]
    finally:
        c.close()


def test_retry_policy_delays() -> None:
    p = RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=0.5, exponential_base=2, jitter=0.2)
    mid = [p.delay(n, rng=lambda: 0.5) for n in range(1, 6)]
    assert mid == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert p.delay(1, rng=lambda: 0.0) == pytest.approx(0.08)
    assert p.delay(1, rng=lambda: 1.0) == pytest.approx(0.12)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(jitter=2)


def test_breaker_state_machine_with_a_clock() -> None:
    now = [0.0]
    b = CircuitBreaker(failure_threshold=2, recovery_timeout=10, clock=lambda: now[0])
    b.before_call()
    b.failure()
    assert state(b).value == "closed"
    b.failure()
    assert state(b).value == "open"
    with pytest.raises(CircuitOpen):
        b.before_call()
    now[0] = 10.0
    assert state(b) is BreakerState.HALF_OPEN
    b.before_call()  # the probe
    with pytest.raises(CircuitOpen):
        b.before_call()  # only one probe at a time
    b.failure()
    assert state(b).value == "open" and b.opened_count == 2
    now[0] = 20.0
    b.before_call()
    b.success()
    assert state(b).value == "closed"


def test_refusals_are_not_retried_transient_errors_are(r: redis.Redis, server: RedisServer) -> None:
    counting = Counting(server.client())
    mb = Mailbox(counting, retry=RetryPolicy(max_attempts=5, base_delay=0.01))
    with pytest.raises(InvalidArgument):
        mb.send(BOX, "x", priority=12)
    assert counting.calls == 1
    dead = Counting(quiet_client(1))  # nothing listens on port 1
    mb2 = Mailbox(dead, retry=RetryPolicy(max_attempts=4, base_delay=0.01))
    with pytest.raises(Unavailable):
        mb2.info(BOX)
    assert dead.calls == 4


def test_breaker_opens_fails_fast_and_closes(fresh_server: RedisServer) -> None:
    counting = Counting(fresh_server.client())
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=0.5)
    mb = Mailbox(counting, retry=RetryPolicy(max_attempts=1), breaker=breaker)
    mb.send(BOX, "before")
    fresh_server.kill()
    for _ in range(3):
        with pytest.raises(Unavailable) as e:
            mb.stats()
        assert not isinstance(e.value, CircuitOpen)
    assert state(breaker) is BreakerState.OPEN
    calls = counting.calls
    with pytest.raises(CircuitOpen):
        mb.stats()
    assert counting.calls == calls, "an open breaker must not touch Redis"
    # A failed probe opens it again.
    wait_for(lambda: state(breaker) is BreakerState.HALF_OPEN, "half-open")
    with pytest.raises(Unavailable) as probe:
        mb.stats()
    assert not isinstance(probe.value, CircuitOpen)
    assert state(breaker) is BreakerState.OPEN and breaker.opened_count == 2
    # Redis is back: the next probe closes it.
    fresh_server.start()
    wait_for(lambda: state(breaker) is BreakerState.HALF_OPEN, "half-open again")
    assert mb.stats()["mailboxes"] == 1
    assert state(breaker).value == "closed"
    # A refusal is an answer: it does not count as a failure.
    for _ in range(5):
        with pytest.raises(InvalidArgument):
            mb.send(BOX, "x", priority=99)
    assert state(breaker).value == "closed"


def test_stale_cache_while_redis_is_away(fresh_server: RedisServer) -> None:
    mb = Mailbox(fresh_server.client(), retry=RetryPolicy(max_attempts=1))
    mb.send(BOX, "one", thread="th")
    mb.send(BOX, "two")
    got = mb.read(BOX, count=2)
    fresh_server.kill()
    cached = mb.peek(BOX)
    assert [m.text for m in cached] == ["one", "two"]
    assert all(m.stale for m in cached) and not any(m.stale for m in got)
    assert [m.text for m in mb.thread(BOX, "th")] == ["one"]
    one = mb.cached(BOX, got[0].id)
    assert one is not None and one.stale and one.text == "one"
    with pytest.raises(Unavailable):
        mb.peek("{t}never-read")


async def async_wait_for(cond: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _blocked(server: RedisServer) -> bool:
    c = server.client()
    try:
        return int(c.info("clients")["blocked_clients"]) >= 1
    finally:
        c.close()


def test_kill_mid_stream_every_message_once(fresh_server: RedisServer) -> None:
    """Sends while Redis is killed and restarted: each arrives exactly once, in order, including
    one in flight when the server died (paused with CLIENT PAUSE WRITE so it is surely unsent)."""
    mb = Mailbox(fresh_server.client(), retry=FAST, outbox=Outbox(":memory:"))
    admin = fresh_server.client()
    n, k, down_for = 80, 30, 15
    results: dict[int, Sent] = {}
    for i in range(n):
        if i == k:
            raw(admin, "CLIENT", "PAUSE", 60_000, "WRITE")
            t = threading.Thread(target=lambda: results.__setitem__(k, mb.send(BOX, f"m{k}")))
            t.start()
            wait_for(lambda: _blocked(fresh_server), "the send to be in flight")
            fresh_server.kill()
            t.join(timeout=60)
            assert not t.is_alive()
            continue
        if i == k + down_for:
            fresh_server.start()
        results[i] = mb.send(BOX, f"m{i}")
    assert results[k].queued and results[k].id is None
    assert all(results[i].queued for i in range(k, k + down_for))
    assert all(not results[i].queued for i in range(k + down_for, n))
    assert mb.flush_outbox() == 0
    assert payloads(fresh_server) == [f"m{i}" for i in range(n)]


def test_in_flight_send_stored_but_reply_lost(fresh_server: RedisServer) -> None:
    """The server stored the send (and fsynced it) but died before the reply: the outbox sends
    it again with the same DEDUP key, and the module answers with the first id."""
    mb = Mailbox(
        fresh_server.client(),
        retry=FAST,
        outbox=Outbox(":memory:"),
        wait_replicas=1,
        wait_timeout_ms=0,  # WAIT blocks for ever: there is no replica
    )
    mb.send_ephemeral(BOX, "warm-up")
    result: list[Sent] = []
    t = threading.Thread(target=lambda: result.append(mb.send(BOX, "in flight")))
    t.start()
    wait_for(lambda: _blocked(fresh_server), "the WAIT after the send")
    fresh_server.kill()
    t.join(timeout=60)
    assert result and result[0].queued
    fresh_server.start()
    assert payloads(fresh_server) == ["in flight"], "stored before the kill, kept by the AOF"
    mb.wait_replicas = 0
    assert mb.flush_outbox() == 0
    assert payloads(fresh_server) == ["in flight"]


def test_outbox_full_raise_or_drop_oldest(fresh_server: RedisServer) -> None:
    fresh_server.kill()
    strict = Mailbox(
        quiet_client(fresh_server.port),
        retry=RetryPolicy(max_attempts=1),
        outbox=Outbox(":memory:", max_messages=2),
    )
    assert strict.send(BOX, "a").queued and strict.send(BOX, "b").queued
    with pytest.raises(OutboxFull):
        strict.send(BOX, "c")
    lossy_box = Outbox(":memory:", max_messages=2, when_full=WhenFull.DROP_OLDEST)
    lossy = Mailbox(
        quiet_client(fresh_server.port), retry=RetryPolicy(max_attempts=1), outbox=lossy_box
    )
    for x in "abc":
        assert lossy.send(BOX, x).queued
    assert [e.args[2] for e in lossy_box.entries()] == [b"b", b"c"]
    assert len(lossy_box) == 2
    (dropped,) = lossy_box.rejected()
    assert dropped.args[2] == b"a" and dropped.reason.startswith("dropped")
    fresh_server.start()
    assert lossy.flush_outbox() == 0
    assert strict.flush_outbox() == 0
    assert len(lossy_box) == 0
    assert sorted(payloads(fresh_server)) == ["a", "b", "b", "c"]


def test_outbox_refusal_on_flush_is_recorded(fresh_server: RedisServer) -> None:
    box = Outbox(":memory:")
    mb = Mailbox(quiet_client(fresh_server.port), retry=RetryPolicy(max_attempts=1), outbox=box)
    fresh_server.client().config_set("mailbox.max-payload-bytes", 5)
    fresh_server.kill()
    mb.send(BOX, "too large for the server")
    mb.send(BOX, "ok")
    fresh_server.start()
    fresh_server.client().config_set("mailbox.max-payload-bytes", 5)
    assert mb.flush_outbox() == 0
    (rej,) = box.rejected()
    assert "max-payload-bytes" in rej.reason
    assert len(box) == 0
    assert payloads(fresh_server) == ["ok"]


def test_replayed_outbox_entry_is_stored_once(fresh_server: RedisServer) -> None:
    """The agent died after the module stored an outbox entry but before removing it."""
    box = Outbox(":memory:")
    mb = Mailbox(quiet_client(fresh_server.port), retry=RetryPolicy(max_attempts=1), outbox=box)
    fresh_server.kill()
    mb.send(BOX, "x")
    fresh_server.start()
    entry = box.first()
    assert entry is not None
    first_id = raw(fresh_server.client(), *entry.args)  # stored, never marked done
    assert mb.flush_outbox() == 0
    assert payloads(fresh_server) == ["x"]
    assert Mailbox(fresh_server.client()).peek(BOX)[0].id == first_id.decode()


async def test_async_kill_mid_stream_every_message_once(fresh_server: RedisServer) -> None:
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=0.2)
    amb = AsyncMailbox(
        async_client(fresh_server.port), retry=FAST, breaker=breaker, outbox=Outbox(":memory:")
    )
    admin = fresh_server.client()
    n, k, down_for = 40, 10, 10
    results: dict[int, Sent] = {}
    for i in range(n):
        if i == k:
            raw(admin, "CLIENT", "PAUSE", 60_000, "WRITE")
            task = asyncio.create_task(amb.send(BOX, f"m{k}"))
            await async_wait_for(lambda: _blocked(fresh_server), "the send to be in flight")
            fresh_server.kill()
            results[k] = await asyncio.wait_for(task, 60)
            continue
        if i == k + down_for:
            fresh_server.start()
            await async_wait_for(lambda: state(breaker) is not BreakerState.OPEN, "half-open")
        results[i] = await amb.send(BOX, f"m{i}")
    assert results[k].queued
    assert breaker.opened_count >= 1
    assert await amb.flush_outbox() == 0
    assert payloads(fresh_server) == [f"m{i}" for i in range(n)]

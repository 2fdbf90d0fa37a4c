"""A failover in the middle of a stream of sends: the master is killed (by pid), a replica is
promoted by hand (REPLICAOF NO ONE) and the other replica follows it; the client's connections
find the new master the way redis-py's Sentinel connections do (a connection asks where the
master is whenever it connects). Every message ends up on the new master exactly once, in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from conftest import RedisServer, raw, wait_for

from redis_mailbox import Mailbox, Outbox, RetryPolicy, Sent


class FollowingConnection(redis.Connection):
    """Connects to wherever ``locate()`` says the master is, like SentinelManagedConnection."""

    def __init__(self, *, locate: Callable[[], int], **kw: Any) -> None:
        self._locate = locate
        super().__init__(**kw)  # type: ignore[no-untyped-call]

    def connect(self) -> None:
        if self._sock is None:
            self.port = self._locate()
        super().connect()  # type: ignore[no-untyped-call]


def linked(replica: RedisServer) -> bool:
    c = replica.client()
    try:
        info = c.info("replication")
        return info.get("master_link_status") == "up"
    finally:
        c.close()


@pytest.fixture
def trio() -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    servers: list[RedisServer] = []

    def started(*extra: str) -> RedisServer:
        s = RedisServer(*extra)
        servers.append(s)
        return s.start()

    try:
        master = started()
        a = started("--replicaof", "127.0.0.1", str(master.port))
        b = started("--replicaof", "127.0.0.1", str(master.port))
        wait_for(lambda: linked(a) and linked(b), "replicas in sync")
        yield master, a, b
    finally:
        for s in servers:
            s.cleanup()


def test_failover_mid_stream_every_message_once(
    trio: tuple[RedisServer, RedisServer, RedisServer],
) -> None:
    master, a, b = trio
    where = [master.port]
    pool = redis.ConnectionPool(
        connection_class=FollowingConnection,
        locate=lambda: where[0],
        retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        socket_connect_timeout=1,
        socket_timeout=10,
    )
    mb = Mailbox(
        redis.Redis(connection_pool=pool),
        retry=RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.3),
        outbox=Outbox(":memory:"),
        wait_replicas=1,
        wait_timeout_ms=2000,
    )
    n = 150
    sent: list[Sent] = []
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(n):
                sent.append(mb.send("{t}bob", f"m{i}"))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=produce)
    t.start()
    wait_for(lambda: len(sent) >= 40, "the first sends")
    master.kill()
    at_kill = len(sent)
    time.sleep(0.2)  # the producer meets the dead master (retries, then the outbox)
    raw(a.client(), "REPLICAOF", "NO", "ONE")
    raw(b.client(), "REPLICAOF", "127.0.0.1", str(a.port))
    where[0] = a.port
    t.join(timeout=120)
    assert not t.is_alive() and not errors, errors
    assert len(sent) == n
    assert at_kill < n, "the failover must happen in the middle of the stream"
    wait_for(lambda: mb.flush_outbox() == 0, "the outbox to drain on the new master")
    confirmed = {s.id for s in sent if not s.queued}
    got = Mailbox(a.client()).peek("{t}bob")
    assert [m.text for m in got] == [f"m{i}" for i in range(n)]
    assert confirmed <= {m.id for m in got}, "a send confirmed by WAIT 1 was lost"
    wait_for(lambda: linked(b), "the other replica to follow the new master")

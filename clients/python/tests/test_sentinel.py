"""Over a Sentinel-managed connection (redis-py's ``Sentinel.master_for``): a failover ordered
with ``SENTINEL FAILOVER`` in the middle of a stream of sends; redis-py finds the new master, and
every message is on it exactly once, in order."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import RedisServer, free_port, quiet_client, raw, wait_for
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from redis_mailbox import Mailbox, Outbox, RetryPolicy, Sent

SERVICE = "mbx"


class SentinelProcess:
    def __init__(self, master_port: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mbx-py-sentinel-"))
        self.port = free_port()
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 2000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self.proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel", "--logfile", str(self.dir / "log")],
            stdout=subprocess.DEVNULL,
        )

    def client(self) -> redis.Redis:
        return quiet_client(self.port)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def role(s: RedisServer) -> str:
    """The server's role; "" when it cannot say (Sentinel kills the clients of a server it
    reconfigures, ours included)."""
    c = s.client()
    try:
        return str(c.info("replication")["role"])
    except redis.RedisError:
        return ""
    finally:
        c.close()


@pytest.fixture
def managed() -> Iterator[tuple[RedisServer, RedisServer, SentinelProcess]]:
    servers: list[RedisServer] = []
    sentinels: list[SentinelProcess] = []

    def started(*extra: str) -> RedisServer:
        s = RedisServer(*extra)
        servers.append(s)
        return s.start()

    try:
        master = started()
        replica = started("--replicaof", "127.0.0.1", str(master.port))
        sentinel = SentinelProcess(master.port)
        sentinels.append(sentinel)

        def ready() -> bool:
            try:
                reps = raw(sentinel.client(), "SENTINEL", "REPLICAS", SERVICE)
            except redis.RedisError:
                return False
            # One map per replica (RESP3), or a flat field/value list (RESP2).
            maps = [
                r if isinstance(r, dict) else dict(zip(r[::2], r[1::2], strict=True)) for r in reps
            ]
            return any(m.get(b"master-link-status") == b"ok" for m in maps)

        wait_for(ready, "sentinel to know the replica")
        yield master, replica, sentinel
    finally:
        for sp in sentinels:
            sp.cleanup()
        for s in servers:
            s.cleanup()


def test_sentinel_failover_mid_stream_every_message_once(
    managed: tuple[RedisServer, RedisServer, SentinelProcess],
) -> None:
    _, replica, sentinel = managed
    s: Any = Sentinel([("127.0.0.1", sentinel.port)], socket_timeout=5)  # type: ignore[no-untyped-call]
    client: Any = s.master_for(SERVICE, socket_timeout=3, retry=Retry(NoBackoff(), 0))
    mb = Mailbox(
        client,
        retry=RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.5),
        outbox=Outbox(":memory:"),
        wait_replicas=1,
        wait_timeout_ms=1000,
    )
    sent: list[Sent] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                sent.append(mb.send("{t}bob", f"m{len(sent)}"))
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=produce)
    t.start()
    try:
        wait_for(lambda: len(sent) >= 40, "the first sends")
        raw(sentinel.client(), "SENTINEL", "FAILOVER", SERVICE)
        wait_for(lambda: role(replica) == "master", "the replica to be promoted")
        at_promotion = len(sent)
        # The stream goes on across the switch, until 40 more sends came back.
        wait_for(lambda: len(sent) >= at_promotion + 40, "sends after the promotion", 60)
    finally:
        stop.set()
        t.join(timeout=120)
    assert not t.is_alive() and not errors, errors
    n = len(sent)
    wait_for(lambda: mb.flush_outbox() == 0, "the outbox to drain")
    got = Mailbox(replica.client()).peek("{t}bob")
    assert [m.text for m in got] == [f"m{i}" for i in range(n)]
    assert {x.id for x in sent if not x.queued} <= {m.id for m in got}

    def sentinel_names_replica() -> bool:
        addr = raw(sentinel.client(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(addr[1]) == replica.port

    wait_for(sentinel_names_replica, "Sentinel to name the promoted replica as master")

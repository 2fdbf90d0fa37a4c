"""Real redis-server processes with the module loaded, on free loopback ports, stopped by pid."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from redis_mailbox import AsyncMailbox, Mailbox

REPO = Path(__file__).resolve().parents[3]
MODULE = Path(os.environ.get("MAILBOX_MODULE", REPO / "target" / "debug" / "libredis_mailbox.so"))
DEADLINE = 30.0


def free_port() -> int:
    """A loopback port that nothing listens on, nor on its cluster bus port (+10000): both below
    the kernel's ephemeral range (32768 and up), where outgoing connections take their ports."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(12000, 22700)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def sid(sent: Any) -> str:
    """The id of a send that reached Redis (not one queued in the outbox)."""
    assert sent.id is not None, "expected a stored message, got one queued in the outbox"
    return str(sent.id)


def raw(c: redis.Redis, *args: Any) -> Any:
    """``execute_command``, typed (redis-py leaves it untyped)."""
    return cast(Any, c).execute_command(*args)


def wait_for(cond: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def quiet_client(port: int, **kw: Any) -> redis.Redis:
    """A client without redis-py's own retries, so the tests see what the Mailbox does."""
    return redis.Redis(
        port=port,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=2,
        socket_timeout=20,
        **kw,
    )


def async_client(port: int, **kw: Any) -> redis.asyncio.Redis:
    return redis.asyncio.Redis(
        port=port,
        retry=AsyncRetry(NoBackoff(), 0),
        socket_connect_timeout=2,
        socket_timeout=20,
        **kw,
    )


class PortTaken(RuntimeError):
    pass


class RedisServer:
    """One redis-server with the module, in its own temp dir; AOF with fsync always so that
    every send that returned an id survives ``kill -9``."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        if not MODULE.exists():
            raise RuntimeError(f"{MODULE} is missing: run cargo build at the repository root")
        self.dir = Path(tempfile.mkdtemp(prefix="mbx-py-"))
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_once = False

    def start(self) -> RedisServer:
        """Start (or restart on the same port). A first start whose port was taken meanwhile by
        another process tries again on another free port."""
        for _ in range(5):
            try:
                return self._start_once()
            except PortTaken:
                if self.started_once:
                    raise
                self.port = free_port()
        raise RuntimeError("no port could be bound")

    def _start_once(self) -> RedisServer:
        args = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--loadmodule", str(MODULE),
            "--enable-debug-command", "yes",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        c = quiet_client(self.port)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                if "Address already in use" in log:
                    raise PortTaken(log)
                raise RuntimeError(f"redis-server exited: {log}")
            try:
                return bool(c.ping())
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                return False

        try:
            wait_for(up, f"redis-server on {self.port}")
        finally:
            c.close()
        self.started_once = True
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """``kill -9`` by the pid this harness started."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=DEADLINE)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                c = quiet_client(self.port)
                c.shutdown(nosave=True)
            except redis.RedisError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self, **kw: Any) -> redis.Redis:
        return quiet_client(self.port, **kw)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _serve() -> Iterator[RedisServer]:
    s = RedisServer()
    try:
        yield s.start()
    finally:
        s.cleanup()  # also when it failed to start: no temp dir is left behind


@pytest.fixture(scope="session")
def server() -> Iterator[RedisServer]:
    yield from _serve()


@pytest.fixture
def fresh_server() -> Iterator[RedisServer]:
    yield from _serve()


_CONFIG_DEFAULTS = {
    "mailbox.max-payload-bytes": "1048576",
    "mailbox.send-rate": "0",
    "mailbox.send-burst": "100",
    "mailbox.policy": "open",
}


@pytest.fixture
def r(server: RedisServer) -> Iterator[redis.Redis]:
    c = server.client()
    c.flushall()
    for k, v in _CONFIG_DEFAULTS.items():
        c.config_set(k, v)
    yield c
    c.close()


class AsyncAsSync:
    """Drives an AsyncMailbox from sync test code: every method call runs to completion on a
    private event loop, so one test body checks both clients."""

    def __init__(self, amb: AsyncMailbox, loop: asyncio.AbstractEventLoop) -> None:
        self._amb = amb
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._amb, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            res = attr(*a, **k)
            if asyncio.iscoroutine(res):
                return self._loop.run_until_complete(res)
            return res

        return call


@pytest.fixture(params=["sync", "asyncio"])
def mb(request: pytest.FixtureRequest, r: redis.Redis, server: RedisServer) -> Iterator[Any]:
    """A Mailbox, or an AsyncMailbox driven through AsyncAsSync: the same calls on both."""
    if request.param == "sync":
        c = server.client()
        yield Mailbox(c)
        c.close()
        return
    loop = asyncio.new_event_loop()
    ac = async_client(server.port)
    yield AsyncAsSync(AsyncMailbox(ac), loop)
    loop.run_until_complete(ac.aclose())
    loop.close()

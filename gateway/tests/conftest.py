"""Test harness: a real redis-server with the module and the real mailbox-gateway
binary, each on a free loopback port in a temporary directory, stopped by the pid
the harness started."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
if not TARGET.is_absolute():
    TARGET = REPO / TARGET
# MAILBOX_TEST_MODULE runs the tests against another build of the module.
MODULE = Path(os.environ.get("MAILBOX_TEST_MODULE", TARGET / "debug" / "libredis_mailbox.so"))
GATEWAY = TARGET / "debug" / "mailbox-gateway"
GW_USER, GW_PASS = "gw", "gw-secret-pw"
AGENT_PASS = "agent-pw"
DEADLINE = 30.0


def free_port() -> int:
    """A free loopback port below 55535 (the range the project keeps for tests)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55535:
            return port
    raise RuntimeError("no free port below 55535")


def wait_until(pred, what: str, deadline: float = DEADLINE, interval: float = 0.05):
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Redis:
    def __init__(
        self, workdir: Path, agents: tuple[str, ...] = ("alice", "bob", "carol", "admin"), extra: str = ""
    ):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        users = "\n".join(f"user {a} on >{AGENT_PASS} ~* &* +@all" for a in agents)
        (self.dir / "redis.conf").write_text(
            f"""bind 127.0.0.1
port {self.port}
dir {self.dir}
loadmodule {MODULE}
appendonly yes
appendfsync always
save ""
enable-debug-command yes
maxmemory-policy noeviction
user default on nopass ~* &* +@all
user {GW_USER} on >{GW_PASS} ~* &* +@all
{users}
{extra}
"""
        )

    def start(self) -> None:
        self.log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            ["redis-server", str(self.dir / "redis.conf")], stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir
        )
        wait_until(lambda: self.cli("PING") == "PONG", "redis-server to answer PING")

    def grant_gateway(self, pattern: str = "*") -> None:
        for perm in ("impersonate", "admin"):
            self.cli("MAILBOX.ACL", "GRANT", GW_USER, perm, pattern)

    def cli(self, *args: str, user: str | None = None) -> str:
        cmd = ["redis-cli", "-p", str(self.port), "--no-auth-warning"]
        if user:
            cmd += ["--user", user, "--pass", AGENT_PASS]
        out = subprocess.run(cmd + list(args), capture_output=True, timeout=DEADLINE, check=False)
        return out.stdout.decode(errors="replace").strip()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=DEADLINE)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


class Gateway:
    def __init__(
        self, redis: Redis, workdir: Path, *extra: str, redis_url: str | None = None, ca: Path | None = None
    ):
        self.redis = redis
        self._redis_url = redis_url
        self.port = free_port()
        self.ca = ca
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gateway-{self.port}.log"
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def redis_url(self) -> str:
        return self._redis_url or f"redis://{GW_USER}:{GW_PASS}@127.0.0.1:{self.redis.port}"

    def start(self) -> None:
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, MAILBOX_GATEWAY_LOG="debug")
        self.proc = subprocess.Popen(
            [str(GATEWAY), "serve", "--redis", self.redis_url, "--listen", f"127.0.0.1:{self.port}", *self.extra],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        verify = ssl.create_default_context(cafile=str(self.ca)) if self.ca else True
        wait_until(
            lambda: httpx.get(self.url + "/readyz", timeout=5, verify=verify).status_code == 200,
            "the gateway to be ready",
        )

    def token(self, agent: str, *args: str) -> str:
        out = subprocess.run(
            [str(GATEWAY), "token", "create", agent, "--redis", self.redis_url, *args],
            capture_output=True,
            timeout=DEADLINE,
            check=True,
        )
        token = out.stdout.decode().strip()
        assert token.startswith("mbx_"), out
        return token

    def token_cmd(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(GATEWAY), "token", *args, "--redis", self.redis_url], capture_output=True, timeout=DEADLINE, check=False
        )

    def client(self, token: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", DEADLINE), **kw)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()


def require_binaries() -> None:
    for p in (MODULE, GATEWAY):
        if not p.exists():
            raise RuntimeError(f"{p} is missing: run cargo build at the repository root first")


@pytest.fixture(scope="session")
def redis(tmp_path_factory) -> Iterator[Redis]:
    require_binaries()
    r = Redis(tmp_path_factory.mktemp("redis"))
    r.start()
    r.grant_gateway()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def gateway(redis, tmp_path_factory) -> Iterator[Gateway]:
    g = Gateway(redis, tmp_path_factory.mktemp("gateway"), "--rate-limit", "0", "--max-wait-ms", "10000")
    g.start()
    yield g
    g.stop()


@pytest.fixture(scope="session")
def tokens(gateway) -> dict[str, str]:
    return {
        "alice": gateway.token("alice"),
        "bob": gateway.token("bob"),
        "carol": gateway.token("carol"),
        "admin": gateway.token("admin", "--scope", "send,read,admin"),
    }


@pytest.fixture
def alice(gateway, tokens) -> Iterator[httpx.Client]:
    with gateway.client(tokens["alice"]) as c:
        yield c


@pytest.fixture
def bob(gateway, tokens) -> Iterator[httpx.Client]:
    with gateway.client(tokens["bob"]) as c:
        yield c


@pytest.fixture
def carol(gateway, tokens) -> Iterator[httpx.Client]:
    with gateway.client(tokens["carol"]) as c:
        yield c


_counter = [0]


@pytest.fixture
def unique() -> str:
    """A fresh suffix for names, so tests do not see each other's mail."""
    _counter[0] += 1
    return f"{os.getpid()}x{_counter[0]}x{time.monotonic_ns()}"

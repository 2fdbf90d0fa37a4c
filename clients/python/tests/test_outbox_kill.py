"""The outbox survives the agent process being killed (SIGKILL) and flushes on the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from conftest import DEADLINE, RedisServer, quiet_client

from redis_mailbox import Mailbox, Outbox, RetryPolicy

HERE = Path(__file__).resolve().parent


def run_agent_until_ready(port: int, path: Path, count: int, cap: int) -> list[str]:
    """Start the agent, read its report up to "ready", then kill -9 it by its pid."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "outbox_agent.py"), str(port), str(path), str(count), str(cap)],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    # If the agent never says "ready", kill it anyway so the read below ends.
    guard = threading.Timer(DEADLINE * 2, proc.kill)
    guard.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if line.strip() == "ready":
                break
    finally:
        guard.cancel()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
    assert proc.returncode == -signal.SIGKILL
    assert lines and lines[-1] == "ready", lines
    return lines


def test_outbox_survives_sigkill_and_flushes_on_next_start(
    fresh_server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "agent.outbox"
    fresh_server.kill()  # Redis is down while the agent works
    lines = run_agent_until_ready(fresh_server.port, path, count=25, cap=1000)
    assert lines[:-1] == [f"queued {i} True" for i in range(25)]
    fresh_server.start()
    # The next start of the agent: same outbox file.
    box = Outbox(path)
    assert len(box) == 25
    mb = Mailbox(quiet_client(fresh_server.port), retry=RetryPolicy(max_attempts=2), outbox=box)
    assert mb.send("{t}bob", "after restart").id is not None
    assert len(box) == 0
    got = [m.text for m in Mailbox(fresh_server.client()).peek("{t}bob")]
    assert got == [f"m{i}" for i in range(25)] + ["after restart"]


def test_full_outbox_then_sigkill(fresh_server: RedisServer, tmp_path: Path) -> None:
    """R22: the agent is killed with a full outbox; what it kept arrives once, what it refused
    was reported to it."""
    path = tmp_path / "full.outbox"
    fresh_server.kill()
    lines = run_agent_until_ready(fresh_server.port, path, count=12, cap=8)
    assert lines[:8] == [f"queued {i} True" for i in range(8)]
    assert lines[8:-1] == [f"full at {i}" for i in range(8, 12)]
    fresh_server.start()
    box = Outbox(path)
    mb = Mailbox(quiet_client(fresh_server.port), outbox=box)
    assert mb.flush_outbox() == 0
    assert mb.flush_outbox() == 0  # a second flush sends nothing again
    got = [m.text for m in Mailbox(fresh_server.client()).peek("{t}bob")]
    assert got == [f"m{i}" for i in range(8)]

"""The examples run against a real server and print what the README shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis
from conftest import RedisServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(example: str, server: RedisServer) -> list[str]:
    env = {**os.environ, "MAILBOX_URL": f"redis://127.0.0.1:{server.port}"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return out.stdout.splitlines()


def test_planner_worker(r: redis.Redis, server: RedisServer) -> None:
    lines = run("planner_worker.py", server)
    answers = sorted(line for line in lines if line.startswith("[planner] answer from worker"))
    assert answers == [
        "[planner] answer from worker for 'add 2 3': 5",
        "[planner] answer from worker for 'add 40 2': 42",
        "[planner] answer from worker for 'mul 6 7': 42",
    ]
    assert sum("[planner] progress on {demo}progress." in line for line in lines) == 3
    assert sum(line.startswith("[worker]  planner asked") for line in lines) == 3
    assert lines[-1] == "[planner] all 3 answers in; its mailbox holds 0"


def test_llm_tools(r: redis.Redis, server: RedisServer) -> None:
    lines = run("llm_tools.py", server)
    assert lines[0].startswith('[tool]  read_inbox({"count": 5}) -> [{"id": ')
    assert sum(line.startswith("[tool]  reply(") for line in lines) == 2
    assert "[model] All messages answered." in lines
    assert lines[-2].startswith("[boss]  got 'Done: summarise the q3 report'")
    assert lines[-1].startswith("[boss]  got 'Done: book the team offsite'")

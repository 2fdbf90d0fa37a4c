"""Throughput of the client against raw redis-py ``execute_command``, side by side.

    .venv/python/bin/python clients/python/bench/bench.py [--messages 20000] [--module PATH]
    .venv/python/bin/python clients/python/bench/bench.py --overhead

Starts its own redis-server with the module (the release build when there is one, else the
debug build; ``--module`` to choose) on a free loopback port, with no persistence, and measures:

* sends in pipelines of 100: raw ``MAILBOX.SEND ... DEDUP key`` (the same server work as the
  client, which gives every send a DEDUP key), raw without DEDUP for reference, and
  ``Mailbox.pipeline()``;
* one send per round trip: raw against ``Mailbox.send``;
* consuming: raw ``MAILBOX.READ COUNT 100`` with an ``ACK`` per message (what ``listen()`` does)
  against ``Mailbox.listen(count=100)``.

Raw and client take turns within each of ``--rounds`` rounds: ``--turn`` messages each (who
goes first swaps every turn), until each side has done its count, so both meet the same noise of
a busy machine; a warm-up turn of each side comes first. The table gives the best round's rate of
each side and the median of the rounds' ratios. A benchmark, not a test: nothing asserts a timing.

``--overhead`` measures instead, without a server, what the client adds to redis-py's own work
on each row: redis-py packs each command as it would for the socket and every command is
answered at once (a send with an id, a read with as many messages as it asks for, as the server
returns them, an ack with 1). CPU time per message, raw and client in alternating turns of 2000
messages (``--turns`` of each), the medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import redis
import redis.client
from redis.connection import Connection

from redis_mailbox import Mailbox

REPO = Path(__file__).resolve().parents[3]
BATCH = 100


def free_port() -> int:
    """A free loopback port below 55535, so that a cluster bus port (+10000) would fit too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 55535:
            return port


def start_server(module: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    d = Path(tempfile.mkdtemp(prefix="mbx-bench-"))
    port = free_port()
    log = d / "redis.log"
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
         "--save", "", "--appendonly", "no", "--loadmodule", str(module),
         "--logfile", str(log)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    c = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"redis-server exited ({proc.returncode}); its log: {log}")
        try:
            c.ping()
            return proc, port, d
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit(f"redis-server did not answer on port {port} within 10 s; its log: {log}")


def raw(c: redis.Redis, *args: Any) -> Any:
    return cast(Any, c).execute_command(*args)


def timed(n: int, fn: Callable[[int], None], reset: Callable[[], None]) -> float:
    reset()
    t0 = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t0)


def compare(
    n: int,
    raw_fn: Callable[[int], None],
    client_fn: Callable[[int], None],
    reset: Callable[[], None],
    rounds: int,
    turn: int,
) -> tuple[float, float, float]:
    """Each round: a reset, then raw and client take turns of ``turn`` messages (``fn(count)``
    does that many; who goes first swaps every turn) until each has done ``n``, the time of each
    side summed over its turns. Returns the best round's rate of each side and the median of the
    rounds' ratios (client rate / raw rate)."""
    sides = (raw_fn, client_fn)
    raws: list[float] = []
    clients: list[float] = []
    ratios: list[float] = []
    clock = time.perf_counter
    for i in range(rounds):
        reset()
        for fn in sides:  # warm-up: connections, server allocations, caches
            fn(min(turn, n))
        spent = [0.0, 0.0]
        for t, start in enumerate(range(0, n, turn)):
            count = min(turn, n - start)
            first = (i + t) % 2
            for side in (first, 1 - first):
                t0 = clock()
                sides[side](count)
                spent[side] += clock() - t0
        raws.append(n / spent[0])
        clients.append(n / spent[1])
        ratios.append(spent[0] / spent[1])
    ratios.sort()
    return max(raws), max(clients), ratios[len(ratios) // 2]


# --overhead: redis-py without a server.

CANNED_ID = b"1764680000000-1"
CANNED_FIELDS = [b"from", b"default", b"to", b"{bench}box", b"ts", b"1764680000000",
                 b"priority", b"0", b"payload", b"x" * 256, b"deliveries", b"1",
                 b"state", b"leased"]  # fmt: skip
PACKER: Any = cast(Any, Connection)()  # never connected: it packs commands only


def canned_reply(args: tuple[Any, ...]) -> Any:
    if args[0] == "MAILBOX.READ":
        count = int(args[args.index("COUNT") + 1])
        return [[CANNED_ID, list(CANNED_FIELDS)] for _ in range(count)]
    if args[0] == "MAILBOX.ACK":
        return 1
    return CANNED_ID


class CannedPipeline(redis.client.Pipeline):
    """A redis-py pipeline whose commands are packed as for the socket, then each answered at
    once."""

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = self.command_stack
        self.command_stack = []
        PACKER.pack_commands([args for args, _options in stack])
        return [canned_reply(args) for args, _options in stack]


class CannedRedis(redis.Redis):
    """A ``redis.Redis`` that packs each command and answers it at once."""

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> CannedPipeline:
        return CannedPipeline(
            self.connection_pool, self.response_callbacks, transaction, shard_hint
        )

    def execute_command(self, *args: Any, **options: Any) -> Any:
        PACKER.pack_command(*args)
        return canned_reply(args)


def overhead(turns: int) -> None:
    """The client's own CPU time per message beside raw redis-py's, with no server."""
    payload = b"x" * 256
    box = "{bench}box"
    r = CannedRedis()
    mb = Mailbox(CannedRedis())
    count = 2000
    rows = [
        ("send, pipeline of 100", raw_pipe(r, box, payload, True), client_pipe(mb, box, payload)),
        ("send, one per round trip", raw_single(r, box, payload), client_single(mb, box, payload)),
        ("read + ack each (listen)", raw_consume(r, box), client_consume(mb, box)),
    ]
    print(f"CPU time per message without a server (median of {turns} alternating turns of")
    print(f"{count} messages each; raw: redis-py execute_command, client: redis_mailbox)")
    print(f"{'':28} {'raw µs/msg':>12} {'client µs/msg':>14} {'client - raw':>13}")
    clock = time.process_time
    for name, raw_fn, client_fn in rows:
        raw_fn(count)
        client_fn(count)
        spent: tuple[list[float], list[float]] = ([], [])
        for t in range(turns):
            for side in (t % 2, 1 - t % 2):
                fn = (raw_fn, client_fn)[side]
                t0 = clock()
                fn(count)
                spent[side].append((clock() - t0) / count * 1e6)
        extra = [client_us - raw_us for raw_us, client_us in zip(*spent, strict=True)]
        raw_us, client_us = (sorted(x)[len(x) // 2] for x in spent)
        print(f"{name:28} {raw_us:12.2f} {client_us:14.2f} {sorted(extra)[len(extra) // 2]:13.2f}")


# The workloads: fn(count) does count messages.


def raw_pipe(r: redis.Redis, box: str, payload: bytes, dedup: bool) -> Callable[[int], None]:
    def run(count: int) -> None:
        for start in range(0, count, BATCH):
            pipe = r.pipeline(transaction=False)
            for _ in range(start, min(count, start + BATCH)):
                extra = ("DEDUP", "b:" + os.urandom(16).hex()) if dedup else ()
                cast(Any, pipe).execute_command("MAILBOX.SEND", box, payload, *extra)
            pipe.execute()

    return run


def client_pipe(mb: Mailbox, box: str, payload: bytes) -> Callable[[int], None]:
    def run(count: int) -> None:
        for start in range(0, count, BATCH):
            with mb.pipeline() as pipe:
                for _ in range(start, min(count, start + BATCH)):
                    pipe.send(box, payload)
                pipe.execute()

    return run


def raw_single(r: redis.Redis, box: str, payload: bytes) -> Callable[[int], None]:
    def run(count: int) -> None:
        for _ in range(count):
            raw(r, "MAILBOX.SEND", box, payload, "DEDUP", "b:" + os.urandom(16).hex())

    return run


def client_single(mb: Mailbox, box: str, payload: bytes) -> Callable[[int], None]:
    def run(count: int) -> None:
        for _ in range(count):
            mb.send(box, payload)

    return run


def raw_consume(r: redis.Redis, box: str) -> Callable[[int], None]:
    def run(count: int) -> None:
        got = 0
        while got < count:
            reply = raw(r, "MAILBOX.READ", box, "COUNT", min(BATCH, count - got), "BLOCK", 100)
            for mid, _fields in reply or []:
                raw(r, "MAILBOX.ACK", box, mid)
                got += 1

    return run


def client_consume(mb: Mailbox, box: str) -> Callable[[int], None]:
    def run(count: int) -> None:
        got = 0
        with mb.listen(box, count=min(BATCH, count), block=100) as stream:
            for _msg in stream:
                got += 1
                if got == count:
                    break

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--turn", type=int, default=1000, help="messages per turn (a multiple of 100)")
    ap.add_argument("--module", type=Path)
    ap.add_argument("--overhead", action="store_true", help="the client's own CPU time, no server")
    ap.add_argument("--turns", type=int, default=41, help="turns of each side with --overhead")
    args = ap.parse_args()
    if args.overhead:
        overhead(args.turns)
        return
    module = args.module
    if module is None:
        release = REPO / "target" / "release" / "libredis_mailbox.so"
        module = release if release.exists() else REPO / "target" / "debug" / "libredis_mailbox.so"
    module = module.resolve()  # the server runs in a directory of its own
    n, rounds, turn = args.messages, args.rounds, max(BATCH, args.turn // BATCH * BATCH)
    payload = b"x" * 256
    box = "{bench}box"
    proc, port, d = start_server(module)
    try:
        r = redis.Redis(host="127.0.0.1", port=port)
        mb = Mailbox(redis.Redis(host="127.0.0.1", port=port))

        def reset() -> None:
            r.flushall()

        single = max(1, n // 4)

        def fill() -> None:
            # Both sides consume from one mailbox: their counts and the warm-up turns.
            reset()
            raw_pipe(r, box, payload, False)(2 * n + 2 * turn)

        rows = [
            ("send, pipeline of 100",
             compare(n, raw_pipe(r, box, payload, True), client_pipe(mb, box, payload), reset,
                     rounds, turn)),
            ("send, one per round trip",
             compare(single, raw_single(r, box, payload), client_single(mb, box, payload), reset,
                     rounds, turn)),
            ("read + ack each (listen)",
             compare(n, raw_consume(r, box), client_consume(mb, box), fill, rounds, turn)),
        ]  # fmt: skip
        no_dedup = max(timed(n, raw_pipe(r, box, payload, False), reset) for _ in range(rounds))
        shown = module.relative_to(REPO) if module.is_relative_to(REPO) else module
        print(f"redis-mailbox Python client vs raw redis-py, {n} messages of 256 bytes,")
        print(f"{rounds} rounds of alternating turns of {turn} messages, module {shown}")
        print(f"{'':28} {'raw msg/s':>12} {'client msg/s':>13} {'client/raw':>11}")
        for name, (raw_rate, client_rate, ratio) in rows:
            print(f"{name:28} {raw_rate:12,.0f} {client_rate:13,.0f} {ratio:10.2f}x")
        print("(msg/s: the best round of each; client/raw: the median of the rounds' ratios)")
        print(f"(raw pipelined sends without DEDUP: {no_dedup:,.0f} msg/s)")
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Latency of one send and one read, the same operation three ways: an MCP tool call over
streamable HTTP (`mailbox_send`, `mailbox_read`), the REST call, and the RESP command straight
to Redis. One client, one keep-alive connection per way, one call at a time, the three ways
interleaved sample by sample so that the machine's noise falls on all of them alike.

    python mcp_latency.py <redis port> <gateway url> <token of agent 'bench'> <samples>

Prints `RESULT <way>.<op>.p50|p99 <microseconds>` lines."""

from __future__ import annotations

import json
import socket
import sys
import time

import httpx

BODY = "x" * 100


class Resp:
    """A minimal RESP2 client: enough for MAILBOX.SEND, READ and ACK."""

    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb")

    def call(self, *args: str):
        out = b"*%d\r\n" % len(args)
        for a in args:
            b = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
        self.s.sendall(out)
        return self._read()

    def _read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")


class Mcp:
    """JSON-RPC over streamable HTTP on one session, as an MCP client sends it."""

    def __init__(self, url: str, token: str):
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
            timeout=30,
        )
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
        }
        r = self.http.post("/mcp", json=init)
        r.raise_for_status()
        self.http.headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
        self.http.headers["Mcp-Protocol-Version"] = "2025-11-25"
        self.http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}).raise_for_status()
        self.next_id = 1

    def tool(self, name: str, args: dict) -> dict:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": "tools/call", "params": {"name": name, "arguments": args}}
        r = self.http.post("/mcp", json=body)
        r.raise_for_status()
        data = [line[5:] for line in r.text.splitlines() if line.startswith("data:") and line[5:].strip()]
        result = json.loads(data[-1])["result"]
        if result.get("isError"):
            raise RuntimeError(result["content"][0]["text"])
        return json.loads(result["content"][0]["text"])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    port, url, token, samples = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    resp = Resp(port)
    rest = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    mcp = Mcp(url, token)
    ways = {
        "send": {
            "mcp": lambda: mcp.tool("mailbox_send", {"to": "benchsink", "body": BODY})["id"],
            "rest": lambda: rest.post("/v1/mailboxes/benchsink/messages", json={"payload": BODY}).json()["id"],
            "resp": lambda: resp.call("MAILBOX.SEND", "benchsink", BODY),
        },
        "read": {
            "mcp": lambda: mcp.tool("mailbox_read", {"limit": 1})["messages"][0]["id"],
            "rest": lambda: rest.get("/v1/mailboxes/bench/messages", params={"count": 1}).json()["messages"][0]["id"],
            "resp": lambda: resp.call("MAILBOX.READ", "bench", "COUNT", "1")[0][0],
        },
    }
    # Enough mail for every read; each read's message is acked outside the timing.
    for _ in range(3 * samples + 30):
        resp.call("MAILBOX.SEND", "bench", BODY)
    times: dict[str, list[float]] = {f"{w}.{op}": [] for op in ways for w in ways[op]}
    for i in range(samples + 10):
        for op, by_way in ways.items():
            for way, fn in by_way.items():
                t0 = time.perf_counter()
                out = fn()
                dt = time.perf_counter() - t0
                if not out:
                    raise RuntimeError(f"{way} {op} returned nothing")
                if op == "read":
                    resp.call("MAILBOX.ACK", "bench", out)
                if i >= 10:  # warm-up
                    times[f"{way}.{op}"].append(dt)
    resp.call("DEL", "benchsink")
    for key, xs in times.items():
        print(f"RESULT {key}.p50 {pct(xs, 0.50) * 1e6:.0f}")
        print(f"RESULT {key}.p99 {pct(xs, 0.99) * 1e6:.0f}")


if __name__ == "__main__":
    main()

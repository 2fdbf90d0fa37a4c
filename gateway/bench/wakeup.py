"""Send -> delivery latency: a WebSocket client of the gateway against a client blocked in
MAILBOX.READ ... BLOCK on Redis directly; the sender is the same RESP client both times."""

from __future__ import annotations

import json
import socket
import sys
import time

from websockets.sync.client import connect


def resp(*args: str) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        b = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out


class Resp:
    def __init__(self, port: int):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, *args: str) -> None:
        self.s.sendall(resp(*args))

    def reply(self) -> bytes:
        """Reads one whole reply (enough for the replies used here)."""
        while True:
            chunk = self.s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
            # A READ reply ends with the deliveries count; an id reply is one bulk string.
            if self.buf.startswith(b"$") and self.buf.count(b"\r\n") >= 2:
                out, self.buf = self.buf, b""
                return out
            if self.buf.startswith(b"*") and b"deliveries\r\n" in self.buf and self.buf.endswith(b"\r\n"):
                tail = self.buf.split(b"deliveries\r\n", 1)[1]
                if tail.count(b"\r\n") >= 2:
                    out, self.buf = self.buf, b""
                    return out
            if self.buf.startswith((b"-", b":", b"+")) and self.buf.endswith(b"\r\n"):
                out, self.buf = self.buf, b""
                return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> None:
    redis_port, gw_url, token, samples = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    sender = Resp(redis_port)
    # Direct: a reader blocked in MAILBOX.READ on its own connection.
    reader = Resp(redis_port)
    direct = []
    for _ in range(samples):
        reader.send("MAILBOX.READ", "wake-direct", "BLOCK", "0", "NOACK")
        time.sleep(0.002)  # let the read block
        t0 = time.perf_counter()
        sender.send("MAILBOX.SEND", "wake-direct", "x" * 100)
        reader.reply()
        direct.append(time.perf_counter() - t0)
        sender.reply()
    # Gateway: a WebSocket subscribed to the agent's mailbox; acks are not timed.
    ws_lat = []
    with connect(gw_url.replace("http://", "ws://") + "/v1/ws",
                 additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send(json.dumps({"op": "subscribe", "mailbox": "bench"}))
        assert json.loads(ws.recv())["type"] == "subscribed"
        for _ in range(samples):
            time.sleep(0.002)
            t0 = time.perf_counter()
            sender.send("MAILBOX.SEND", "bench", "x" * 100)
            frame = json.loads(ws.recv())
            ws_lat.append(time.perf_counter() - t0)
            assert frame["type"] == "message", frame
            sender.reply()
            ws.send(json.dumps({"op": "ack", "mailbox": "bench", "ids": [frame["message"]["id"]]}))
            assert json.loads(ws.recv())["type"] == "acked"
    for name, xs in (("direct", direct), ("ws", ws_lat)):
        print(f"RESULT wake.{name}.p50 {pct(xs, 0.50) * 1e6:.0f}")
        print(f"RESULT wake.{name}.p99 {pct(xs, 0.99) * 1e6:.0f}")


if __name__ == "__main__":
    main()

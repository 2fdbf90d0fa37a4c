"""Send -> delivery latency: a WebSocket client of the gateway beside a client blocked in
MAILBOX.READ ... BLOCK on Redis directly.

What is timed, the same way on both sides: from just before the sender writes MAILBOX.SEND to
the moment the reader's recv() returned the last byte of the delivery (the whole RESP reply on
the direct side, the whole WebSocket frame on the gateway side), read from the clock right after
each recv(), before the bytes are looked at. Both readers are plain
blocking sockets read on the measuring thread, so no thread handoff is timed on either side;
the WebSocket handshake, and the frames once the clock has stopped, go through websockets'
sans-I/O protocol. Parsing a delivery (RESP, JSON) happens after the clock stops, on both sides.

Both sides ask the module for the same work: the direct reader reads as the gateway does
(COUNT 16, leased), and both ack each message after the clock stops. The sender is the same RESP
connection for both. Samples alternate between the sides (direct then WebSocket, then the other
way round), after a warm-up of each that is not counted, so that both share the machine's noise.

    wakeup.py <redis port> <gateway url> <token> <samples>

Prints `RESULT wake.<direct|ws>.<p50|p90|p99> <microseconds>` lines.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

WARMUP = 50
SETTLE_S = 0.002  # before each sample: time for the reader's read to block again


def resp(*args: str) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        b = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(b), b)
    return out


def resp_end(buf: bytes, i: int = 0) -> int:
    """The offset just past the RESP2 value at `i` in `buf`, or -1 if it is not all there."""
    eol = buf.find(b"\r\n", i)
    if eol < 0:
        return -1
    kind = buf[i : i + 1]
    if kind in (b"+", b"-", b":"):
        return eol + 2
    n = int(buf[i + 1 : eol])
    if kind == b"$":
        end = eol + 2 + max(n, 0) + (2 if n >= 0 else 0)
        return end if len(buf) >= end else -1
    pos = eol + 2
    for _ in range(max(n, 0)):
        pos = resp_end(buf, pos)
        if pos < 0:
            return -1
    return pos


def resp_parse(buf: bytes, i: int = 0) -> tuple[object, int]:
    eol = buf.index(b"\r\n", i)
    kind, line = buf[i : i + 1], buf[i + 1 : eol]
    if kind == b"+":
        return line.decode(), eol + 2
    if kind == b"-":
        raise RuntimeError(line.decode())
    if kind == b":":
        return int(line), eol + 2
    n = int(line)
    if kind == b"$":
        return (None, eol + 2) if n < 0 else (buf[eol + 2 : eol + 2 + n], eol + 4 + n)
    items, pos = [], eol + 2
    for _ in range(n):
        item, pos = resp_parse(buf, pos)
        items.append(item)
    return items, pos


def ws_frame_end(buf: bytes) -> int:
    """The offset just past the server frame at the start of `buf` (unmasked), or -1."""
    if len(buf) < 2:
        return -1
    n, head = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return -1
        n, head = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        if len(buf) < 10:
            return -1
        n, head = int.from_bytes(buf[2:10], "big"), 10
    return head + n if len(buf) >= head + n else -1


def connect(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Direct:
    """A RESP client blocked in MAILBOX.READ on its own connection."""

    def __init__(self, port: int, mailbox: str):
        self.s = connect("127.0.0.1", port)
        self.mailbox = mailbox
        self.buf = b""

    def call(self, *args: str) -> object:
        self.s.sendall(resp(*args))
        while (end := resp_end(self.buf)) < 0:
            self.buf += self.s.recv(65536)
        value, _ = resp_parse(self.buf[:end])
        self.buf = self.buf[end:]
        return value

    def arm(self) -> None:
        self.s.sendall(resp("MAILBOX.READ", self.mailbox, "COUNT", "16", "BLOCK", "0"))

    def wait(self) -> tuple[bytes, float]:
        """Returns the whole reply and the time its last byte was read."""
        at = time.perf_counter()
        while (end := resp_end(self.buf)) < 0:
            chunk = self.s.recv(65536)
            at = time.perf_counter()
            if not chunk:
                raise RuntimeError("redis closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:end], self.buf[end:]
        return out, at

    def settle(self, reply: bytes) -> None:
        value, _ = resp_parse(reply)
        assert isinstance(value, list) and len(value) == 1, value
        entry = value[0]  # [id, [field, value, ...]]
        assert isinstance(entry, list) and isinstance(entry[0], bytes), entry
        msg_id = entry[0]
        assert self.call("MAILBOX.ACK", self.mailbox, msg_id.decode()) == 1


class Ws:
    """A WebSocket client of the gateway on a plain blocking socket, read on this thread."""

    def __init__(self, url: str, token: str, mailbox: str):
        parts = urlsplit(url)
        self.s = connect(parts.hostname or "127.0.0.1", parts.port or 80)
        self.proto = ClientProtocol(parse_uri(url))
        request = self.proto.connect()
        request.headers["Authorization"] = f"Bearer {token}"
        self.proto.send_request(request)
        self.flush()
        while not any(isinstance(e, Response) for e in self.events()):
            pass
        if self.proto.handshake_exc is not None:
            raise self.proto.handshake_exc
        self.mailbox = mailbox
        self.buf = b""
        self.send({"op": "subscribe", "mailbox": mailbox})
        assert self.frame()["type"] == "subscribed"

    def flush(self) -> None:
        for data in self.proto.data_to_send():
            self.s.sendall(data)

    def events(self) -> list[object]:
        data = self.s.recv(65536)
        if not data:
            raise RuntimeError("the gateway closed the connection")
        self.proto.receive_data(data)
        return self.proto.events_received()

    def send(self, frame: dict[str, object]) -> None:
        self.proto.send_text(json.dumps(frame).encode())
        self.flush()

    def wait(self) -> tuple[bytes, float]:
        """Returns the bytes of one whole frame and the time its last byte was read."""
        at = time.perf_counter()
        while (end := ws_frame_end(self.buf)) < 0:
            chunk = self.s.recv(65536)
            at = time.perf_counter()
            if not chunk:
                raise RuntimeError("the gateway closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:end], self.buf[end:]
        return out, at

    def decode(self, raw: bytes) -> dict[str, object]:
        self.proto.receive_data(raw)
        frames = [e for e in self.proto.events_received() if getattr(e, "opcode", None) is Opcode.TEXT]
        assert len(frames) == 1, frames
        out = json.loads(frames[0].data)
        assert isinstance(out, dict)
        return out

    def frame(self) -> dict[str, object]:
        return self.decode(self.wait()[0])

    def settle(self, raw: bytes) -> None:
        frame = self.decode(raw)
        assert frame["type"] == "message", frame
        message = frame["message"]
        assert isinstance(message, dict)
        self.send({"op": "ack", "mailbox": self.mailbox, "ids": [message["id"]]})
        assert self.frame()["type"] == "acked"


class Sender:
    def __init__(self, port: int):
        self.s = connect("127.0.0.1", port)
        self.buf = b""

    def send(self, mailbox: str) -> None:
        self.s.sendall(resp("MAILBOX.SEND", mailbox, "x" * 100))

    def reply(self) -> None:
        while (end := resp_end(self.buf)) < 0:
            self.buf += self.s.recv(65536)
        self.buf = self.buf[end:]


def sample(sender: Sender, reader: Direct | Ws, mailbox: str) -> float:
    if isinstance(reader, Direct):
        reader.arm()
    time.sleep(SETTLE_S)
    t0 = time.perf_counter()
    sender.send(mailbox)
    raw, t1 = reader.wait()
    elapsed = t1 - t0
    sender.reply()
    reader.settle(raw)
    return elapsed


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main() -> None:
    redis_port, gw_url, token, samples = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    sender = Sender(redis_port)
    direct = Direct(redis_port, "wake-direct")
    ws = Ws(gw_url.replace("http://", "ws://") + "/v1/ws", token, "bench")
    sides: dict[str, tuple[Direct | Ws, str]] = {"direct": (direct, "wake-direct"), "ws": (ws, "bench")}
    lat: dict[str, list[float]] = {"direct": [], "ws": []}
    for i in range(WARMUP + samples):
        order = ("direct", "ws") if i % 2 == 0 else ("ws", "direct")
        for name in order:
            reader, mailbox = sides[name]
            t = sample(sender, reader, mailbox)
            if i >= WARMUP:
                lat[name].append(t)
    for name in ("direct", "ws"):
        for p in (50, 90, 99):
            print(f"RESULT wake.{name}.p{p} {pct(lat[name], p / 100) * 1e6:.0f}")


if __name__ == "__main__":
    main()

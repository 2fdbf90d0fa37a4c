"""The local outbox: sends kept on the agent's side while Redis cannot be reached.

Each entry is the complete command (``MAILBOX.SEND``, ``PUBLISH``, ``BROADCAST`` or ``REPLY``)
with its ``DEDUP`` key, stored in SQLite: in a file by default, so an agent that crashes finds
its unsent messages on the next start, or in memory (``Outbox(":memory:")``). Entries are sent
oldest first and removed only after the module replied with an id; a send that reaches Redis
twice (the agent died between the reply and the removal, or a reply was lost with the
connection) is stored once, because the module answers the second one with the first id.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import OutboxFull

Arg = bytes | str | int


class WhenFull(str, enum.Enum):
    """What a full outbox does with one more message."""

    RAISE = "raise"
    """Refuse it with :class:`OutboxFull`: the caller knows it was not kept."""
    DROP_OLDEST = "drop-oldest"
    """Keep it and drop the oldest entry, recorded in :meth:`Outbox.rejected` as ``dropped``."""


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    args: tuple[bytes, ...]
    dedup: str | None
    created: float

    @property
    def command(self) -> str:
        return self.args[0].decode()


@dataclass(frozen=True)
class Rejected:
    """An outbox entry that was not delivered: the module refused it, or it was dropped."""

    seq: int
    args: tuple[bytes, ...]
    dedup: str | None
    reason: str
    at: float


def _pack(args: Sequence[Arg]) -> bytes:
    out = bytearray()
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode("utf-8")
        out += struct.pack(">I", len(b)) + b
    return bytes(out)


def _unpack(blob: bytes) -> tuple[bytes, ...]:
    out: list[bytes] = []
    i = 0
    while i < len(blob):
        (n,) = struct.unpack_from(">I", blob, i)
        i += 4
        out.append(blob[i : i + n])
        i += n
    return tuple(out)


class Outbox:
    """A bounded, ordered, durable queue of sends.

    ``path`` is a SQLite file (created if missing), or ``":memory:"`` for an outbox that dies
    with the process. ``max_messages`` bounds it; ``when_full`` says what happens past that.
    One process at a time uses a file: the outbox counts its entries in memory, so that a send
    while the outbox is empty does not read the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_messages: int = 10_000,
        when_full: WhenFull | str = WhenFull.RAISE,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.path = os.fspath(path)
        self.max_messages = max_messages
        self.when_full = WhenFull(when_full)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " args BLOB NOT NULL, dedup TEXT, created REAL NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, args BLOB NOT NULL,"
            " dedup TEXT, reason TEXT NOT NULL, at REAL NOT NULL)"
        )
        (self._count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return int(self._count)

    def put(self, args: Sequence[Arg], dedup: str | None) -> int:
        """Keep one command; returns its sequence number. Obeys ``when_full``."""
        blob = _pack(args)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                n = self._count
                dropped = 0
                if n >= self.max_messages:
                    if self.when_full is WhenFull.RAISE:
                        raise OutboxFull(
                            f"outbox {self.path} holds {n} messages (max_messages); not kept"
                        )
                    oldest = self._db.execute(
                        "SELECT seq, args, dedup FROM outbox ORDER BY seq LIMIT ?",
                        (n - self.max_messages + 1,),
                    ).fetchall()
                    dropped = len(oldest)
                    for seq, old_args, old_dedup in oldest:
                        self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                        self._db.execute(
                            "INSERT OR REPLACE INTO rejected VALUES (?, ?, ?, ?, ?)",
                            (seq, old_args, old_dedup, "dropped: outbox full", time.time()),
                        )
                cur = self._db.execute(
                    "INSERT INTO outbox (args, dedup, created) VALUES (?, ?, ?)",
                    (blob, dedup, time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count = n + 1 - dropped
        return int(cur.lastrowid or 0)

    def first(self) -> OutboxEntry | None:
        """The oldest entry, left in place until :meth:`done` or :meth:`reject`."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, args, dedup, created FROM outbox ORDER BY seq LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return OutboxEntry(seq=row[0], args=_unpack(row[1]), dedup=row[2], created=row[3])

    def entries(self) -> list[OutboxEntry]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, args, dedup, created FROM outbox ORDER BY seq"
            ).fetchall()
        return [OutboxEntry(seq=r[0], args=_unpack(r[1]), dedup=r[2], created=r[3]) for r in rows]

    def contains(self, seq: int) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return row is not None

    def done(self, seq: int) -> None:
        """The module stored it (replied with an id): forget it."""
        with self._lock:
            cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._count -= cur.rowcount

    def reject(self, seq: int, reason: str) -> None:
        """The module refused it: move it to the rejected list with the module's text."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO rejected SELECT seq, args, dedup, ?, ? FROM outbox"
                    " WHERE seq = ?",
                    (reason, time.time(), seq),
                )
                cur = self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= cur.rowcount

    def rejected(self) -> list[Rejected]:
        """Entries that will not be sent: refused by the module, or dropped when full."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, args, dedup, reason, at FROM rejected ORDER BY seq"
            ).fetchall()
        return [
            Rejected(seq=r[0], args=_unpack(r[1]), dedup=r[2], reason=r[3], at=r[4]) for r in rows
        ]

"""Typed results of the module's commands."""

from __future__ import annotations

import enum
import json as _json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One message as ``MAILBOX.READ``, ``PEEK``, ``THREAD`` and ``DEAD LIST`` reply it.

    ``payload`` is the bytes as sent (opened, when it was sealed and this client holds the key);
    ``sender`` is the module's ``from``: the ACL user that sent it, which no client can choose.
    ``stale`` is true for a message served from the local cache while Redis was unreachable:
    it may have been acked, expired or changed since.
    """

    id: str
    sender: str
    to: str
    ts: int
    priority: int
    payload: bytes
    content_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    thread: str | None = None
    correlation: str | None = None
    reply_to: str | None = None
    via: str | None = None
    expires: int | None = None
    deliveries: int = 0
    state: str | None = None
    mailbox: str | None = None
    sealed_by: str | None = None
    stale: bool = False

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode("utf-8")

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return _json.loads(self.payload)


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter: the message, why (``maxdeliveries`` or ``overflow``) and when (ms)."""

    message: Message
    reason: str
    dead_at: int

    @property
    def id(self) -> str:
        return self.message.id


@dataclass(frozen=True)
class MailboxInfo:
    """``MAILBOX.INFO``: settings and state. Fields the module adds later land in ``extra``."""

    maxlen: int
    ttl: int
    lease: int
    maxdeliver: int
    dedup_window: int
    ready: int
    leased: int
    delayed: int
    dead: int
    dedup_keys: int
    last_id: str | None
    oldest_age: int | None
    bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


class Status(str, enum.Enum):
    """``MAILBOX.STATUS``: where a message stands."""

    READY = "ready"
    LEASED = "leased"
    DELAYED = "delayed"
    DEAD = "dead"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Presence:
    """An agent of ``MAILBOX.PRESENCE``: last seen (ms since the epoch), idle ms, ready count."""

    agent: str
    last_seen: int
    idle: int
    waiting: int


@dataclass(frozen=True)
class Subscription:
    """One subscription of ``MAILBOX.SUBS``, with its filters when set."""

    pattern: str
    sender: str | None = None
    min_priority: int | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Grant:
    """One grant of ``MAILBOX.ACL LIST``."""

    agent: str
    permission: str
    pattern: str


@dataclass(frozen=True)
class Sent:
    """The outcome of a send or a reply.

    ``id`` is the module's id. When Redis was unreachable and the message went to the local
    outbox, ``queued`` is true and ``id`` is None: the outbox sends it, with the same ``dedup``
    key, once Redis answers again.
    """

    id: str | None
    dedup: str | None
    queued: bool = False


@dataclass(frozen=True)
class Published:
    """The outcome of a publish or a broadcast: the id and how many mailboxes received it."""

    id: str | None
    receivers: int
    dedup: str | None
    queued: bool = False


@dataclass(frozen=True)
class Pushed:
    """The outcome of an ephemeral send: the id and how many listeners received the push."""

    id: str
    listeners: int

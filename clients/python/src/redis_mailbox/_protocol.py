"""The command layer shared by the sync and asyncio clients: arguments in, typed results out.

Nothing here does I/O. Each builder returns the exact argument list of one module command; each
parser turns the reply redis-py hands back (RESP2 or RESP3, bytes or decoded strings) into the
types of :mod:`redis_mailbox.types`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from .errors import ProtocolError
from .types import (
    DeadLetter,
    Grant,
    MailboxInfo,
    Message,
    Presence,
    Published,
    Pushed,
    Sent,
    Status,
    Subscription,
)

T = TypeVar("T")
Arg = bytes | str | int
Payload = bytes | str | Mapping[str, Any] | Sequence[Any]

JSON_TYPE = "application/json"
DEDUP_PREFIX = "pyc:"
_new = object.__new__


class ReplyOptions(TypedDict, total=False):
    """The options of ``MAILBOX.REPLY`` (those of SEND but ``CORRELATION``, set by the module)."""

    priority: int
    ttl: int
    dedup: str
    content_type: str
    thread: str
    reply_to: str
    meta: Mapping[str, Any]
    confirm: bool
    as_agent: str


class SendOptions(ReplyOptions, total=False):
    """The options of ``MAILBOX.SEND``, ``PUBLISH`` and ``BROADCAST``, by their names here."""

    correlation: str


@dataclass(frozen=True)
class Call(Generic[T]):
    """One command: its arguments and how to read its reply."""

    args: tuple[Arg, ...]
    parse: Callable[[Any], T]


def new_dedup_key() -> str:
    """A DEDUP key unique to one message, so sending it again stores it once."""
    return DEDUP_PREFIX + os.urandom(16).hex()


def encode_payload(payload: Payload, content_type: str | None) -> tuple[bytes, str | None]:
    """Bytes and str go as they are; a mapping or a list goes as JSON (type application/json)."""
    if isinstance(payload, bytes):
        return payload, content_type
    if isinstance(payload, str):
        return payload.encode("utf-8"), content_type
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload), content_type
    data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return data, content_type or JSON_TYPE


def _s(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, str):
        return v
    if v is None:
        raise ProtocolError("unexpected nil in a reply")
    return str(v)


def _b(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8", "surrogateescape")
    raise ProtocolError(f"expected a string in a reply, got {type(v).__name__}")


def _i(v: Any) -> int:
    if type(v) is bytes:  # the usual case, first
        try:
            return int(v.decode("utf-8", "replace"))
        except ValueError as e:
            raise ProtocolError(f"expected an integer in a reply, got {v!r}") from e
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    try:
        return int(_s(v))
    except ValueError as e:
        raise ProtocolError(f"expected an integer in a reply, got {v!r}") from e


def _pairs(flat: Any) -> list[tuple[str, Any]]:
    """A flat ``[field, value, ...]`` array (or a RESP3 map) as a list of pairs."""
    if isinstance(flat, dict):
        return [(_s(k), v) for k, v in flat.items()]
    if not isinstance(flat, (list, tuple)) or len(flat) % 2:
        raise ProtocolError(f"expected field/value pairs, got {flat!r}")
    return [(_s(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]


# ----------------------------------------------------------------------------- options


def send_options(
    *,
    priority: int | None = None,
    ttl: int | None = None,
    dedup: str | None = None,
    content_type: str | None = None,
    thread: str | None = None,
    correlation: str | None = None,
    reply_to: str | None = None,
    meta: Mapping[str, Any] | None = None,
    confirm: bool = False,
    as_agent: str | None = None,
) -> list[Arg]:
    """The options of ``MAILBOX.SEND`` (and PUBLISH, BROADCAST, REPLY) in the module's order."""
    out: list[Arg] = []
    if priority is not None:
        out += ["PRIORITY", priority]
    if ttl is not None:
        out += ["TTL", ttl]
    if dedup is not None:
        out += ["DEDUP", dedup]
    if content_type is not None:
        out += ["TYPE", content_type]
    if thread is not None:
        out += ["THREAD", thread]
    if correlation is not None:
        out += ["CORRELATION", correlation]
    if reply_to is not None:
        out += ["REPLYTO", reply_to]
    if meta is not None:
        out += ["META", json.dumps(dict(meta), separators=(",", ":"))]
    if confirm:
        out.append("CONFIRM")
    if as_agent is not None:
        out += ["AS", as_agent]
    return out


# ----------------------------------------------------------------------------- parsers


def parse_message(entry: Any, mailbox: str | None = None) -> Message:
    """``[id, [field, value, ...]]`` as a :class:`Message`; unknown fields are ignored."""
    msg, _, _ = _parse_entry(entry, mailbox)
    return msg


def _fields(raw: Any) -> dict[str, Any]:
    """The ``[field, value, ...]`` of an entry (or a RESP3 map) as a dict, names decoded."""
    if isinstance(raw, dict):
        items: Any = raw.items()
    elif isinstance(raw, (list, tuple)) and len(raw) % 2 == 0:
        it = iter(raw)
        items = zip(it, it, strict=True)
    else:
        raise ProtocolError(f"expected field/value pairs, got {raw!r}")
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in items}


def _parse_entry(entry: Any, mailbox: str | None) -> tuple[Message, str | None, int | None]:
    if not isinstance(entry, (list, tuple)) or len(entry) != 2:
        raise ProtocolError(f"expected [id, fields], got {entry!r}")
    f = _fields(entry[1])
    get = f.get
    meta: dict[str, Any] = {}
    raw_meta = get("meta")
    if raw_meta is not None:
        try:
            loaded = json.loads(_b(raw_meta))
        except ValueError as e:
            raise ProtocolError(f"META of {_s(entry[0])} is not JSON") from e
        if isinstance(loaded, dict):
            meta = loaded
    # Optional fields are mostly absent: None is checked here rather than in a call each.
    ctype, thread, correlation = get("type"), get("thread"), get("correlation")
    reply_to, via, state = get("reply_to"), get("via"), get("state")
    expires, reason, dead_at = get("expires"), get("reason"), get("dead_at")
    # Filled in directly, one per message read: the same instance the frozen dataclass's
    # __init__ makes with an object.__setattr__ call per field (all 18 are set).
    msg = _new(Message)
    msg.__dict__.update(
        id=_s(entry[0]),
        sender=_s(get("from", b"")),
        to=_s(get("to", b"")),
        ts=_i(get("ts", 0)),
        priority=_i(get("priority", 0)),
        payload=_b(get("payload", b"")),
        content_type=None if ctype is None else _s(ctype),
        meta=meta,
        thread=None if thread is None else _s(thread),
        correlation=None if correlation is None else _s(correlation),
        reply_to=None if reply_to is None else _s(reply_to),
        via=None if via is None else _s(via),
        expires=None if expires is None else _i(expires),
        deliveries=_i(get("deliveries", 0)),
        state=None if state is None else _s(state),
        mailbox=mailbox,
        sealed_by=None,
        stale=False,
    )
    return msg, None if reason is None else _s(reason), None if dead_at is None else _i(dead_at)


def parse_messages(reply: Any, mailbox: str | None = None) -> list[Message]:
    """A READ/PEEK/THREAD reply: nil (nothing ready) or an array of entries."""
    if reply is None:
        return []
    if not isinstance(reply, (list, tuple)):
        raise ProtocolError(f"expected an array of messages, got {reply!r}")
    return [parse_message(e, mailbox) for e in reply]


def parse_dead_letters(reply: Any, mailbox: str | None = None) -> list[DeadLetter]:
    if reply is None:
        return []
    out: list[DeadLetter] = []
    for e in reply:
        msg, reason, dead_at = _parse_entry(e, mailbox)
        out.append(DeadLetter(message=msg, reason=reason or "", dead_at=dead_at or 0))
    return out


def parse_id(reply: Any) -> str:
    return _s(reply)


def parse_int(reply: Any) -> int:
    return _i(reply)


def parse_bool(reply: Any) -> bool:
    return _i(reply) != 0


def parse_ok(reply: Any) -> bool:
    if reply is True:
        return True
    return _s(reply) == "OK"


def parse_id_count(reply: Any) -> tuple[str, int]:
    if not isinstance(reply, (list, tuple)) or len(reply) != 2:
        raise ProtocolError(f"expected [id, count], got {reply!r}")
    return _s(reply[0]), _i(reply[1])


_INFO_INT = (
    "maxlen",
    "ttl",
    "lease",
    "maxdeliver",
    "dedup-window",
    "ready",
    "leased",
    "delayed",
    "dead",
    "dedup-keys",
    "bytes",
)


def parse_info(reply: Any) -> MailboxInfo:
    fields = dict(_pairs(reply))
    known: dict[str, int] = {}
    for name in _INFO_INT:
        if name not in fields:
            raise ProtocolError(f"MAILBOX.INFO reply lacks {name!r}")
        known[name.replace("-", "_")] = _i(fields[name])
    last = fields.get("last-id")
    age = fields.get("oldest-age")
    extra = {
        k: (_s(v) if isinstance(v, bytes) else v)
        for k, v in fields.items()
        if k not in _INFO_INT and k not in ("last-id", "oldest-age")
    }
    return MailboxInfo(
        last_id=None if last is None or _s(last) in ("", "0-0") else _s(last),
        oldest_age=None if age is None else _i(age),
        extra=extra,
        **known,
    )


def parse_status(reply: Any) -> Status:
    text = _s(reply)
    try:
        return Status(text)
    except ValueError as e:
        raise ProtocolError(f"unexpected MAILBOX.STATUS reply {text!r}") from e


def parse_presence(reply: Any) -> list[Presence]:
    out: list[Presence] = []
    for row in reply or []:
        fields = dict(_pairs(row[1:]))
        out.append(
            Presence(
                agent=_s(row[0]),
                last_seen=_i(fields.get("last-seen", 0)),
                idle=_i(fields.get("idle", 0)),
                waiting=_i(fields.get("waiting", 0)),
            )
        )
    return out


def parse_subscriptions(reply: Any) -> list[Subscription]:
    out: list[Subscription] = []
    for row in reply or []:
        fields = dict(_pairs(row[1:]))
        mp = fields.get("minpriority")
        out.append(
            Subscription(
                pattern=_s(row[0]),
                sender=None if fields.get("from") is None else _s(fields["from"]),
                min_priority=None if mp is None else _i(mp),
                content_type=None if fields.get("type") is None else _s(fields["type"]),
            )
        )
    return out


def parse_grants(reply: Any) -> list[Grant]:
    return [Grant(agent=_s(r[0]), permission=_s(r[1]), pattern=_s(r[2])) for r in reply or []]


def parse_stats(reply: Any) -> dict[str, int]:
    return {k: _i(v) for k, v in _pairs(reply)}


# ----------------------------------------------------------------------------- builders


def read(
    mailbox: str,
    *,
    count: int | None = None,
    block: int | None = None,
    min: int | None = None,
    lease: int | None = None,
    noack: bool = False,
    as_agent: str | None = None,
) -> Call[list[Message]]:
    args: list[Arg] = ["MAILBOX.READ", mailbox]
    if count is not None:
        args += ["COUNT", count]
    if block is not None:
        args += ["BLOCK", block]
        if min is not None:
            args += ["MIN", min]
    elif min is not None:
        raise ValueError("min needs block")
    if lease is not None:
        args += ["LEASE", lease]
    if noack:
        args.append("NOACK")
    if as_agent is not None:
        args += ["AS", as_agent]
    return Call(tuple(args), lambda r: parse_messages(r, mailbox))


def _ids(ids: Sequence[str]) -> list[Arg]:
    if not ids:
        raise ValueError("at least one id is needed")
    return list(ids)


def ack(mailbox: str, ids: Sequence[str], *, as_agent: str | None = None) -> Call[int]:
    args: list[Arg] = ["MAILBOX.ACK", mailbox, *_ids(ids)]
    if as_agent is not None:
        args += ["AS", as_agent]
    return Call(tuple(args), parse_int)


def nack(
    mailbox: str, ids: Sequence[str], *, delay: int | None = None, as_agent: str | None = None
) -> Call[int]:
    args: list[Arg] = ["MAILBOX.NACK", mailbox, *_ids(ids)]
    if delay is not None:
        args += ["DELAY", delay]
    if as_agent is not None:
        args += ["AS", as_agent]
    return Call(tuple(args), parse_int)


def peek(
    mailbox: str, start: str = "-", end: str = "+", *, count: int | None = None
) -> Call[list[Message]]:
    args: list[Arg] = ["MAILBOX.PEEK", mailbox, start, end]
    if count is not None:
        args += ["COUNT", count]
    return Call(tuple(args), lambda r: parse_messages(r, mailbox))


def thread(mailbox: str, thread_id: str, *, count: int | None = None) -> Call[list[Message]]:
    args: list[Arg] = ["MAILBOX.THREAD", mailbox, thread_id]
    if count is not None:
        args += ["COUNT", count]
    return Call(tuple(args), lambda r: parse_messages(r, mailbox))


def status(mailbox: str, message_id: str) -> Call[Status]:
    return Call(("MAILBOX.STATUS", mailbox, message_id), parse_status)


def create(
    mailbox: str,
    *,
    maxlen: int | None = None,
    ttl: int | None = None,
    lease: int | None = None,
    maxdeliver: int | None = None,
    dedup_window: int | None = None,
    overflow: str | None = None,
    update: bool = False,
) -> Call[bool]:
    args: list[Arg] = ["MAILBOX.CREATE", mailbox]
    for name, value in (
        ("MAXLEN", maxlen),
        ("TTL", ttl),
        ("LEASE", lease),
        ("MAXDELIVER", maxdeliver),
        ("DEDUPWINDOW", dedup_window),
        ("OVERFLOW", overflow),
    ):
        if value is not None:
            args += [name, value]
    if update:
        args.append("UPDATE")
    return Call(tuple(args), parse_ok)


def info(mailbox: str) -> Call[MailboxInfo]:
    return Call(("MAILBOX.INFO", mailbox), parse_info)


def dead_list(
    mailbox: str, start: str = "-", end: str = "+", *, count: int | None = None
) -> Call[list[DeadLetter]]:
    args: list[Arg] = ["MAILBOX.DEAD", "LIST", mailbox, start, end]
    if count is not None:
        args += ["COUNT", count]
    return Call(tuple(args), lambda r: parse_dead_letters(r, mailbox))


def dead_settle(mailbox: str, action: str, ids: Sequence[str] | None) -> Call[int]:
    """REQUEUE or PURGE the given ids, or ALL when ``ids`` is None."""
    rest: list[Arg] = ["ALL"] if ids is None else _ids(ids)
    return Call(("MAILBOX.DEAD", action, mailbox, *rest), parse_int)


def subscribe(
    mailbox: str,
    patterns: Sequence[str],
    *,
    sender: str | None = None,
    min_priority: int | None = None,
    content_type: str | None = None,
) -> Call[int]:
    if not patterns:
        raise ValueError("at least one pattern is needed")
    args: list[Arg] = ["MAILBOX.SUB", mailbox, *patterns]
    if sender is not None:
        args += ["FROM", sender]
    if min_priority is not None:
        args += ["MINPRIORITY", min_priority]
    if content_type is not None:
        args += ["TYPE", content_type]
    return Call(tuple(args), parse_int)


def unsubscribe(mailbox: str, patterns: Sequence[str]) -> Call[int]:
    if not patterns:
        raise ValueError("at least one pattern is needed")
    return Call(("MAILBOX.UNSUB", mailbox, *patterns), parse_int)


def subscriptions(mailbox: str) -> Call[list[Subscription]]:
    return Call(("MAILBOX.SUBS", mailbox), parse_subscriptions)


def presence(namespace: str) -> Call[list[Presence]]:
    return Call(("MAILBOX.PRESENCE", namespace), parse_presence)


def grant(agent: str, permission: str, pattern: str) -> Call[bool]:
    return Call(("MAILBOX.ACL", "GRANT", agent, permission, pattern), parse_bool)


def revoke(agent: str, permission: str, pattern: str) -> Call[bool]:
    return Call(("MAILBOX.ACL", "REVOKE", agent, permission, pattern), parse_bool)


def check(agent: str, permission: str, name: str) -> Call[bool]:
    return Call(("MAILBOX.ACL", "CHECK", agent, permission, name), parse_bool)


def grants(namespace: str, agent: str | None = None) -> Call[list[Grant]]:
    """The grants of one namespace (``{team1}``, or an untagged name for the default one)."""
    args: tuple[Arg, ...] = ("MAILBOX.ACL", "LIST", namespace)
    if agent is not None:
        args += (agent,)
    return Call(args, parse_grants)


def quota(agent: str, rate: int | None, namespace: str, *, burst: int | None = None) -> Call[bool]:
    """Set an agent's send quota in a namespace; ``rate=None`` resets it to the configs."""
    args: list[Arg] = ["MAILBOX.ACL", "QUOTA", agent, "RESET" if rate is None else rate, namespace]
    if burst is not None and rate is not None:
        args += ["BURST", burst]
    return Call(tuple(args), parse_ok)


def stats() -> Call[dict[str, int]]:
    return Call(("MAILBOX.STATS",), parse_stats)


# Sends: the target command and its options, kept apart so the outbox can store them and the
# encryption layer can change payload, type and meta before the arguments are fixed.


def sent_outcome(reply: Any, dedup: str | None) -> Sent:
    """The reply of SEND or REPLY; None when the message went to the outbox."""
    if type(reply) is bytes:
        # The usual reply, one per send: the Sent is filled in directly, the same instance its
        # frozen dataclass __init__ makes with an object.__setattr__ call per field.
        sent = _new(Sent)
        sent.__dict__.update(id=reply.decode("utf-8", "replace"), dedup=dedup, queued=False)
        return sent
    if reply is None:
        return Sent(id=None, dedup=dedup, queued=True)
    return Sent(id=parse_id(reply), dedup=dedup)


def published_outcome(reply: Any, dedup: str | None) -> Published:
    """The reply of PUBLISH or BROADCAST; None when the message went to the outbox."""
    if reply is None:
        return Published(id=None, receivers=0, dedup=dedup, queued=True)
    mid, n = parse_id_count(reply)
    return Published(id=mid, receivers=n, dedup=dedup)


def ephemeral(mailbox: str, payload: Payload, content_type: str | None) -> Call[Pushed]:
    data, ctype = encode_payload(payload, content_type)
    args: list[Arg] = ["MAILBOX.SEND", mailbox, data]
    if ctype is not None:
        args += ["TYPE", ctype]
    args.append("EPHEMERAL")

    def parse(reply: Any) -> Pushed:
        mid, n = parse_id_count(reply)
        return Pushed(id=mid, listeners=n)

    return Call(tuple(args), parse)


def namespace_of(name: str) -> str:
    """The hash tag of a name with its braces (``{team1}``), or ``""`` (default namespace)."""
    start = name.find("{")
    if start >= 0:
        end = name.find("}", start + 1)
        if end > start + 1:
            return name[start : end + 1]
    return ""


def agent_of(mailbox: str) -> str:
    """The agent whose own mailbox this is: the name without its hash tag."""
    ns = namespace_of(mailbox)
    return mailbox.replace(ns, "", 1) if ns else mailbox

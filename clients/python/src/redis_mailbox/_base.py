"""What the sync and asyncio clients share besides the command layer: settings and the
preparation of sends (DEDUP keys, JSON payloads, sealing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import _protocol as p
from .cache import MessageCache
from .crypto import Keyring, seal_direct, seal_group
from .errors import MissingKey
from .outbox import Outbox
from .resilience import CircuitBreaker, RetryPolicy

STORING = frozenset({b"MAILBOX.SEND", b"MAILBOX.PUBLISH", b"MAILBOX.BROADCAST", b"MAILBOX.REPLY"})


@dataclass(frozen=True)
class PreparedSend:
    args: tuple[p.Arg, ...]
    dedup: str | None


class _Settings:
    def __init__(
        self,
        *,
        retry: RetryPolicy | None,
        breaker: CircuitBreaker | None,
        outbox: Outbox | None,
        cache_size: int,
        keyring: Keyring | None,
        idempotent: bool,
        wait_replicas: int,
        wait_timeout_ms: int,
    ) -> None:
        self.retry = retry if retry is not None else RetryPolicy()
        self.breaker = breaker
        self.outbox = outbox
        self.cache = MessageCache(cache_size)
        self.keyring = keyring
        self.idempotent = idempotent
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._public_keys: dict[tuple[str, str], bytes] = {}

    def _dedup(self, dedup: str | None) -> str | None:
        if dedup is not None:
            return dedup
        return p.new_dedup_key() if self.idempotent else None

    def _prepare(
        self,
        command: str,
        head: tuple[p.Arg, ...],
        payload: p.Payload,
        *,
        public_key: bytes | None,
        group: str | None,
        priority: int | None,
        ttl: int | None,
        dedup: str | None,
        content_type: str | None,
        thread: str | None,
        correlation: str | None,
        reply_to: str | None,
        meta: Mapping[str, Any] | None,
        confirm: bool,
        as_agent: str | None,
    ) -> PreparedSend:
        data, ctype = p.encode_payload(payload, content_type)
        meta_d = None if meta is None else dict(meta)
        if public_key is not None:
            s = seal_direct(public_key, data, ctype, meta_d)
            data, ctype, meta_d = s.payload, s.content_type, s.meta
        elif group is not None:
            if self.keyring is None or group not in self.keyring.groups:
                raise MissingKey(f"no key for group {group!r} in this client's keyring")
            s = seal_group(group, self.keyring.groups[group], data, ctype, meta_d)
            data, ctype, meta_d = s.payload, s.content_type, s.meta
        key = self._dedup(dedup)
        opts = p.send_options(
            priority=priority,
            ttl=ttl,
            dedup=key,
            content_type=ctype,
            thread=thread,
            correlation=correlation,
            reply_to=reply_to,
            meta=meta_d,
            confirm=confirm,
            as_agent=as_agent,
        )
        return PreparedSend(args=(command, *head, data, *opts), dedup=key)


def reply_target(mailbox: str, original: Any) -> tuple[str, str]:
    """(namespace, agent) a reply to ``original`` goes to, as the module routes it."""
    from .types import Message

    if not isinstance(original, Message):
        raise ValueError("to seal a reply, pass the original Message, not its id")
    if original.reply_to:
        return p.namespace_of(original.reply_to), p.agent_of(original.reply_to)
    return p.namespace_of(mailbox), original.sender


def is_storing(args: tuple[p.Arg, ...]) -> bool:
    head = args[0]
    name = head if isinstance(head, bytes) else str(head).encode()
    return name.upper() in STORING and "EPHEMERAL" not in args

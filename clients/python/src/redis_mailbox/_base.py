"""What the sync and asyncio clients share besides the command layer: settings and the
preparation of sends (DEDUP keys, JSON payloads, sealing)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import redis.exceptions as rex

from . import _protocol as p
from .cache import MessageCache
from .crypto import Keyring, keys_hash, seal_direct, seal_group
from .errors import MissingKey, NotReplicated, Unavailable, from_redis, is_transient
from .outbox import Outbox
from .resilience import CircuitBreaker, RetryPolicy
from .types import Message

if TYPE_CHECKING:
    from typing_extensions import Unpack

STORING = frozenset({b"MAILBOX.SEND", b"MAILBOX.PUBLISH", b"MAILBOX.BROADCAST", b"MAILBOX.REPLY"})


class PreparedSend(NamedTuple):
    """A storing command's arguments and its DEDUP key (a tuple: one is made per send)."""

    args: tuple[p.Arg, ...]
    dedup: str | None


class _Settings:
    """Settings and state of a client; the class docstring of :class:`Mailbox` says what each is."""

    _lock_type: Any  # threading.Lock or asyncio.Lock, guarding the outbox's flush

    def __init__(
        self,
        client: Any,
        *,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        outbox: Outbox | None = None,
        cache_size: int = 256,
        keyring: Keyring | None = None,
        idempotent: bool = True,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.client = client
        self.retry = retry if retry is not None else RetryPolicy()
        self.breaker = breaker
        self.outbox = outbox
        self.cache = MessageCache(cache_size)
        self.keyring = keyring
        self.idempotent = idempotent
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._public_keys: dict[tuple[str, str], bytes] = {}
        self._flush_lock = self._lock_type()
        self._agent: str | None = None

    # The retry loop, shared by both clients: each attempt is bracketed by these three.

    def _before_attempt(self) -> None:
        if self.breaker is not None:
            self.breaker.before_call()

    def _attempt_failed(self, err: Exception, attempt: int) -> float:
        """Raise what the caller should see, or return the seconds to wait before retrying."""
        if isinstance(err, NotReplicated):
            if self.breaker is not None:
                self.breaker.neutral()
            if attempt >= self.retry.max_attempts:
                raise err
            return self.retry.delay(attempt)
        if not isinstance(err, rex.RedisError):
            raise err
        if not is_transient(err):
            if self.breaker is not None:
                self.breaker.neutral()
            raise from_redis(err) from err
        if self.breaker is not None:
            self.breaker.failure()
        if attempt >= self.retry.max_attempts:
            raise Unavailable(f"{type(err).__name__}: {err}") from err
        return self.retry.delay(attempt)

    def _attempt_succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.success()

    def _wait_checked(self, reply: Any, acked: Any) -> Any:
        """The reply of a send followed by WAIT; NotReplicated when too few replicas confirmed."""
        if int(acked) < self.wait_replicas:
            mid = p.parse_id(reply[0] if isinstance(reply, (list, tuple)) else reply)
            raise NotReplicated(
                f"message {mid} reached {int(acked)} of {self.wait_replicas} replicas"
                f" within {self.wait_timeout_ms} ms",
                mid,
            )
        return reply

    def _keep_unsent(self, prep: PreparedSend, err: Exception) -> None:
        """A send that could not be stored (or confirmed): into the outbox, or raise."""
        if self.outbox is None:
            raise err
        self.outbox.put(prep.args, prep.dedup)

    def _known_key(self, namespace: str, agent: str) -> bytes | None:
        return self._public_keys.get((namespace, agent))

    def _learn_key(self, namespace: str, agent: str, raw: Any) -> bytes:
        if raw is None:
            raise MissingKey(
                f"agent {agent!r} has published no public key in {keys_hash(namespace)}"
            )
        self._public_keys[(namespace, agent)] = bytes(raw)
        return bytes(raw)

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
        public_key: bytes | None = None,
        group: str | None = None,
        opts: Mapping[str, Any],
    ) -> PreparedSend:
        """The arguments of a storing command: payload encoded (and sealed), a DEDUP key."""
        if not opts and public_key is None and group is None:
            # The common case, kept short: a payload and the DEDUP key alone.
            data, ctype = p.encode_payload(payload, None)
            key = self._dedup(None)
            plain: tuple[p.Arg, ...] = (command, *head, data)
            if key is not None:
                plain += ("DEDUP", key)
            if ctype is not None:
                plain += ("TYPE", ctype)
            return PreparedSend(args=plain, dedup=key)
        options = dict(opts)
        data, ctype = p.encode_payload(payload, options.pop("content_type", None))
        meta = options.pop("meta", None)
        meta_d = None if meta is None else dict(meta)
        if public_key is not None:
            s = seal_direct(public_key, data, ctype, meta_d)
            data, ctype, meta_d = s.payload, s.content_type, s.meta
        elif group is not None:
            if self.keyring is None or group not in self.keyring.groups:
                raise MissingKey(f"no key for group {group!r} in this client's keyring")
            s = seal_group(group, self.keyring.groups[group], data, ctype, meta_d)
            data, ctype, meta_d = s.payload, s.content_type, s.meta
        key = self._dedup(options.pop("dedup", None))
        args = p.send_options(dedup=key, content_type=ctype, meta=meta_d, **options)
        return PreparedSend(args=(command, *head, data, *args), dedup=key)


def reply_target(mailbox: str, original: Any) -> tuple[str, str]:
    """(namespace, agent) a reply to ``original`` goes to, as the module routes it."""
    if not isinstance(original, Message):
        raise ValueError("to seal a reply, pass the original Message, not its id")
    if original.reply_to:
        return p.namespace_of(original.reply_to), p.agent_of(original.reply_to)
    return p.namespace_of(mailbox), original.sender


def is_storing(args: tuple[p.Arg, ...]) -> bool:
    head = args[0]
    name = head if isinstance(head, bytes) else str(head).encode()
    return name.upper() in STORING and "EPHEMERAL" not in args


class ListenerState:
    """What a listener holds, shared by the sync and asyncio listeners: the message in the
    caller's hands, those read ahead, and the settlement counts."""

    def __init__(
        self, mailbox: str, *, count: int, block: int, lease: int | None, idle: float | None
    ) -> None:
        self.mailbox = mailbox
        self._count = count
        self._block = block
        self._lease = lease
        self._idle = idle
        self._buffer: deque[Message] = deque()
        self._current: Message | None = None
        self._managed = False
        self.acked = 0
        self.nacked = 0

    def _take_current(self) -> Message | None:
        cur, self._current = self._current, None
        return cur

    def _take_rest(self, current: Message | None) -> list[str]:
        """Ids to put back: the message in hand (unless settled) and those read ahead."""
        back = ([current.id] if current is not None else []) + [m.id for m in self._buffer]
        self._buffer.clear()
        return back

    def _deadline(self) -> float | None:
        return None if self._idle is None else time.monotonic() + self._idle

    def _wait_ms(self, deadline: float | None) -> int | None:
        """The BLOCK of the next read, or None when the idle timeout has passed."""
        if deadline is None:
            return self._block
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        return max(1, min(self._block, int(left * 1000)))

    def _hand_out(self) -> Message:
        self._current = self._buffer.popleft()
        return self._current


class Queued(NamedTuple):
    """One command of a pipeline: its arguments, how to read its reply, and, for a storing
    command, the prepared send (what the outbox keeps)."""

    args: tuple[p.Arg, ...]
    parse: Any
    prep: PreparedSend | None


class PipelineBuffer:
    """The commands a pipeline collects, shared by the sync and asyncio pipelines. Sends get
    their DEDUP key here, so a pipeline retried whole stores each message once."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._queued: list[Queued] = []

    def __len__(self) -> int:
        return len(self._queued)

    def _storing(self, command: str, target: str, payload: p.Payload, group: str | None,
                 opts: Mapping[str, Any], outcome: Any) -> None:  # fmt: skip
        prep = self._settings._prepare(command, (target,), payload, group=group, opts=opts)
        self._queued.append(Queued(prep.args, lambda r: outcome(r, prep.dedup), prep))

    def send(self, mailbox: str, payload: p.Payload, **opts: Unpack[p.SendOptions]) -> None:
        """Queue a ``MAILBOX.SEND`` (no sealing in a pipeline); its result is a ``Sent``."""
        self._storing("MAILBOX.SEND", mailbox, payload, None, opts, p.sent_outcome)

    def publish(
        self, topic: str, payload: p.Payload, *, group: str | None = None,
        **opts: Unpack[p.SendOptions],
    ) -> None:  # fmt: skip
        """Queue a ``MAILBOX.PUBLISH``; its result is a ``Published``."""
        self._storing("MAILBOX.PUBLISH", topic, payload, group, opts, p.published_outcome)

    def ack(self, mailbox: str, *ids: str) -> None:
        """Queue a ``MAILBOX.ACK``; its result is the count."""
        call = p.ack(mailbox, ids)
        self._queued.append(Queued(call.args, call.parse, None))

    def nack(self, mailbox: str, *ids: str, delay: int | None = None) -> None:
        """Queue a ``MAILBOX.NACK``; its result is the count."""
        call = p.nack(mailbox, ids, delay=delay)
        self._queued.append(Queued(call.args, call.parse, None))

    def _take(self) -> list[Queued]:
        out, self._queued = self._queued, []
        return out

    def _outboxed(self, queued: list[Queued], err: Exception) -> list[Any]:
        """Every command of the pipeline into the outbox, when they are all sends; else raise."""
        ob = self._settings.outbox
        if ob is None or any(q.prep is None for q in queued):
            raise err
        results = []
        for q in queued:
            assert q.prep is not None
            ob.put(q.prep.args, q.prep.dedup)
            results.append(q.parse(None))
        return results


def pipeline_results(queued: list[Queued], replies: list[Any]) -> list[Any]:
    """Each reply parsed; a refusal in place as its typed exception (not raised)."""
    out: list[Any] = []
    for q, reply in zip(queued, replies, strict=True):
        if isinstance(reply, rex.RedisError):
            out.append(from_redis(reply))
        else:
            out.append(q.parse(reply))
    return out


def first_transient(replies: list[Any]) -> rex.RedisError | None:
    """A transient error among a pipeline's replies (the whole pipeline is then retried)."""
    for reply in replies:
        if isinstance(reply, rex.RedisError) and is_transient(reply):
            return reply
    return None

"""What the sync and asyncio clients share besides the command layer: settings and the
preparation of sends (DEDUP keys, JSON payloads, sealing)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
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
SEND = "MAILBOX.SEND"
# The DEDUP option and its key go to redis-py as bytes, which it passes through as they are (a
# str it would encode again for every command). The command name stays a str: redis-py's cluster
# client routes by it.
DEDUP = b"DEDUP"


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
            if type(payload) is bytes:
                data, ctype = payload, None
            else:
                data, ctype = p.encode_payload(payload, None)
            plain: tuple[p.Arg, ...] = (command, *head, data)
            key = self._dedup(None)
            if key is not None:
                plain += (DEDUP, key.encode())
            if ctype is not None:
                plain += ("TYPE", ctype)
            return PreparedSend(plain, key)
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


class Batch:
    """The commands a pipeline collected, side by side: each one's arguments, how to read its
    reply (a function of the reply and the DEDUP key) and its DEDUP key, as parallel lists,
    cheaper to fill than an object per command. ``others`` counts the commands that are not
    sends (acks, nacks): a batch with any cannot go to the outbox."""

    __slots__ = ("args", "dedups", "others", "parsers")

    def __init__(self) -> None:
        self.args: list[tuple[p.Arg, ...]] = []
        self.parsers: list[Callable[[Any, str | None], Any]] = []
        self.dedups: list[str | None] = []
        self.others = 0

    def __len__(self) -> int:
        return len(self.args)

    def results(self, replies: list[Any]) -> list[Any]:
        """Each reply parsed; a refusal in place as its typed exception (not raised)."""
        out: list[Any] = []
        add = out.append
        error = rex.RedisError
        for reply, parse, dedup in zip(replies, self.parsers, self.dedups, strict=True):
            if isinstance(reply, error):
                add(from_redis(reply))
            else:
                add(parse(reply, dedup))
        return out


def _count(reply: Any, dedup: str | None) -> int:
    return p.parse_int(reply)


class PipelineBuffer:
    """The commands a pipeline collects, shared by the sync and asyncio pipelines. Sends get
    their DEDUP key here, so a pipeline retried whole stores each message once."""

    def __init__(self, settings: _Settings) -> None:
        self._settings = settings
        self._batch = Batch()

    def __len__(self) -> int:
        return len(self._batch.args)

    def _storing(self, prep: PreparedSend, outcome: Callable[[Any, str | None], Any]) -> None:
        batch = self._batch
        batch.args.append(prep.args)
        batch.parsers.append(outcome)
        batch.dedups.append(prep.dedup)

    def send(self, mailbox: str, payload: p.Payload, **opts: Unpack[p.SendOptions]) -> None:
        """Queue a ``MAILBOX.SEND`` (no sealing in a pipeline); its result is a ``Sent``."""
        settings = self._settings
        if type(payload) is bytes and not opts and settings.idempotent:
            data = payload
        elif type(payload) is str and not opts and settings.idempotent:
            data = payload.encode("utf-8")
        else:
            self._storing(settings._prepare(SEND, (mailbox,), payload, opts=opts), p.sent_outcome)
            return
        # The common case, without the general preparation: bytes or text and a DEDUP key.
        key = p.new_dedup_key()
        batch = self._batch
        batch.args.append((SEND, mailbox, data, DEDUP, key.encode()))
        batch.parsers.append(p.sent_outcome)
        batch.dedups.append(key)

    def publish(
        self, topic: str, payload: p.Payload, *, group: str | None = None,
        **opts: Unpack[p.SendOptions],
    ) -> None:  # fmt: skip
        """Queue a ``MAILBOX.PUBLISH``; its result is a ``Published``."""
        prep = self._settings._prepare("MAILBOX.PUBLISH", (topic,), payload, group=group, opts=opts)
        self._storing(prep, p.published_outcome)

    def _other(self, call: p.Call[int]) -> None:
        batch = self._batch
        batch.args.append(call.args)
        batch.parsers.append(_count)
        batch.dedups.append(None)
        batch.others += 1

    def ack(self, mailbox: str, *ids: str) -> None:
        """Queue a ``MAILBOX.ACK``; its result is the count."""
        self._other(p.ack(mailbox, ids))

    def nack(self, mailbox: str, *ids: str, delay: int | None = None) -> None:
        """Queue a ``MAILBOX.NACK``; its result is the count."""
        self._other(p.nack(mailbox, ids, delay=delay))

    def _take(self) -> Batch:
        out, self._batch = self._batch, Batch()
        return out

    def _outboxed(self, batch: Batch, err: Exception) -> list[Any]:
        """Every command of the pipeline into the outbox, when they are all sends; else raise."""
        ob = self._settings.outbox
        if ob is None or batch.others:
            raise err
        results = []
        for args, parse, dedup in zip(batch.args, batch.parsers, batch.dedups, strict=True):
            ob.put(args, dedup)
            results.append(parse(None, dedup))
        return results


def first_transient(replies: list[Any]) -> rex.RedisError | None:
    """A transient error among a pipeline's replies (the whole pipeline is then retried)."""
    for reply in replies:
        if isinstance(reply, rex.RedisError) and is_transient(reply):
            return reply
    return None

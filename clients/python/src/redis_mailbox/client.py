"""The synchronous client: :class:`Mailbox` over an existing ``redis.Redis``."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions as rex

from . import _protocol as p
from ._base import (
    ListenerState,
    PipelineBuffer,
    PreparedSend,
    _Settings,
    first_transient,
    is_storing,
    reply_target,
)
from .crypto import keys_hash, open_message
from .errors import (
    CommandError,
    EncryptionError,
    MissingKey,
    NotReplicated,
    Unavailable,
)
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

if TYPE_CHECKING:
    from typing_extensions import Unpack

T = TypeVar("T")


class Mailbox(_Settings):
    """The module's commands as typed methods over an existing redis-py client.

    ``client`` is a ``redis.Redis`` (standalone, or from ``Sentinel.master_for``) or a
    ``redis.cluster.RedisCluster``; keep its ``decode_responses`` off (payloads are bytes).

    * ``retry``: how transient failures are retried (refusals never are).
    * ``breaker``: an optional :class:`CircuitBreaker`; while open, calls fail fast.
    * ``outbox``: an optional :class:`Outbox`; while Redis is unreachable, sends go there and
      leave it in order once Redis answers.
    * ``idempotent``: give every send a fresh ``DEDUP`` key unless the caller gives one, so a
      retried or replayed send is stored once (within the mailbox's dedup window).
    * ``wait_replicas``: after each send, ``WAIT`` for this many replicas (up to
      ``wait_timeout_ms``); a send they did not confirm is sent again with its DEDUP key.
    * ``keyring``: this agent's keys for end-to-end encryption.
    """

    _lock_type = threading.Lock

    # ------------------------------------------------------------------ execution

    def _once(self, args: tuple[p.Arg, ...]) -> Any:
        """One attempt; a storing command is followed by WAIT when replicas are asked for."""
        if self.wait_replicas > 0 and is_storing(args):
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command(*args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            reply, acked = pipe.execute()
            return self._wait_checked(reply, acked)
        return self.client.execute_command(*args)

    def _execute(self, args: tuple[p.Arg, ...]) -> Any:
        """Run one command under the retry policy and the circuit breaker."""
        attempt = 0
        while True:
            attempt += 1
            self._before_attempt()
            try:
                reply = self._once(args)
            except (rex.RedisError, NotReplicated) as e:
                time.sleep(self._attempt_failed(e, attempt))
                continue
            self._attempt_succeeded()
            return reply

    def _run(self, call: p.Call[T]) -> T:
        return call.parse(self._execute(call.args))

    def execute_command(self, *args: p.Arg) -> Any:
        """Any command through the same retries and breaker (the raw reply)."""
        return self._execute(tuple(args))

    # ------------------------------------------------------------------ pipelines

    def _execute_many(self, commands: list[tuple[p.Arg, ...]]) -> list[Any]:
        """Several commands in one round trip, under the retry policy and the breaker."""
        attempt = 0
        while True:
            attempt += 1
            self._before_attempt()
            try:
                pipe = self.client.pipeline(transaction=False)
                for args in commands:
                    pipe.execute_command(*args)
                replies = list(pipe.execute(raise_on_error=False))
                bad = first_transient(replies)
                if bad is not None:
                    raise bad
            except rex.RedisError as e:
                time.sleep(self._attempt_failed(e, attempt))
                continue
            self._attempt_succeeded()
            return replies

    def pipeline(self) -> Pipeline:
        """Batch sends, publishes, acks and nacks into one round trip:

            with mb.pipeline() as pipe:
                pipe.send(box, "a")
                pipe.ack(box, old_id)
                sent, acked = pipe.execute()

        ``execute()`` returns one result per command, in order: ``Sent``, ``Published``, a
        count, or the typed exception of a refused command (in place, not raised). Each send
        carries a DEDUP key, so a pipeline retried whole stores each message once. While Redis
        is unreachable, a pipeline of sends only goes to the outbox; a pipeline with acks or
        nacks raises :class:`Unavailable`. No ``WAIT`` and no sealing in a pipeline."""
        return Pipeline(self)

    # ------------------------------------------------------------------ sends and the outbox

    def _send(self, prep: PreparedSend) -> Any:
        """The reply to a storing command, or None when it went to the outbox."""
        ob = self.outbox
        if ob is not None and len(ob) > 0:
            seq = ob.put(prep.args, prep.dedup)
            return self._flush(want=seq)
        try:
            return self._execute(prep.args)
        except (NotReplicated, Unavailable) as e:
            self._keep_unsent(prep, e)
            return None

    def _flush(self, want: int | None = None) -> Any:
        ob = self.outbox
        if ob is None:
            return None
        wanted: Any = None
        with self._flush_lock:
            while True:
                entry = ob.first()
                if entry is None:
                    break
                try:
                    reply = self._execute(entry.args)
                except (Unavailable, NotReplicated):
                    break
                except CommandError as e:
                    ob.reject(entry.seq, e.text)
                    if entry.seq == want:
                        raise
                    continue
                ob.done(entry.seq)
                if entry.seq == want:
                    wanted = reply
        return wanted

    def flush_outbox(self) -> int:
        """Send what the outbox holds, oldest first; returns how many entries are left."""
        self._flush()
        return 0 if self.outbox is None else len(self.outbox)

    def _public_key(self, namespace: str, agent: str) -> bytes:
        known = self._known_key(namespace, agent)
        if known is not None:
            return known
        raw = self._execute(("HGET", keys_hash(namespace), agent))
        return self._learn_key(namespace, agent, raw)

    def send(
        self,
        mailbox: str,
        payload: p.Payload,
        *,
        seal: bool = False,
        **opts: Unpack[p.SendOptions],
    ) -> Sent:
        """``MAILBOX.SEND``; the options are those of the command (``priority``, ``ttl``,
        ``dedup``, ``content_type``, ``thread``, ``correlation``, ``reply_to``, ``meta``,
        ``confirm``, ``as_agent``). ``seal=True`` seals the payload to the receiver's public
        key. While Redis is unreachable and an outbox is set, the result is ``queued``."""
        pk = self._public_key(p.namespace_of(mailbox), p.agent_of(mailbox)) if seal else None
        prep = self._prepare("MAILBOX.SEND", (mailbox,), payload, public_key=pk, opts=opts)
        return p.sent_outcome(self._send(prep), prep.dedup)

    def send_ephemeral(
        self, mailbox: str, payload: p.Payload, *, content_type: str | None = None
    ) -> Pushed:
        """``MAILBOX.SEND ... EPHEMERAL``: pushed to listeners, never stored (nor outboxed)."""
        return self._run(p.ephemeral(mailbox, payload, content_type))

    def publish(
        self,
        topic: str,
        payload: p.Payload,
        *,
        group: str | None = None,
        **opts: Unpack[p.SendOptions],
    ) -> Published:
        """``MAILBOX.PUBLISH``. With ``group`` the payload is sealed with that group's key."""
        prep = self._prepare("MAILBOX.PUBLISH", (topic,), payload, group=group, opts=opts)
        return p.published_outcome(self._send(prep), prep.dedup)

    def broadcast(
        self,
        namespace: str,
        payload: p.Payload,
        *,
        group: str | None = None,
        **opts: Unpack[p.SendOptions],
    ) -> Published:
        """``MAILBOX.BROADCAST`` to every mailbox of ``namespace`` (``{team1}``)."""
        prep = self._prepare("MAILBOX.BROADCAST", (namespace,), payload, group=group, opts=opts)
        return p.published_outcome(self._send(prep), prep.dedup)

    def reply(
        self,
        mailbox: str,
        original: Message | str,
        payload: p.Payload,
        *,
        seal: bool = False,
        **opts: Unpack[p.ReplyOptions],
    ) -> Sent:
        """``MAILBOX.REPLY`` to a message ``mailbox`` holds (give the Message to seal it)."""
        pk = self._public_key(*reply_target(mailbox, original)) if seal else None
        mid = original.id if isinstance(original, Message) else original
        prep = self._prepare("MAILBOX.REPLY", (mailbox, mid), payload, public_key=pk, opts=opts)
        return p.sent_outcome(self._send(prep), prep.dedup)

    # ------------------------------------------------------------------ reading

    def _opened(self, mailbox: str, msgs: list[Message], *, settle: bool) -> list[Message]:
        """Open sealed messages. On a failure, put the batch back and raise; a NOACK read
        (``settle`` false) has nothing to put back, so it returns such a message as stored."""
        if not settle:
            return [self._try_open(m) for m in msgs]
        out: list[Message] = []
        for m in msgs:
            try:
                out.append(open_message(m, self.keyring))
            except EncryptionError:
                self.nack(mailbox, [x.id for x in msgs])
                raise
        return out

    def read(
        self,
        mailbox: str,
        count: int | None = None,
        block: int | None = None,
        lease: int | None = None,
        min: int | None = None,
        *,
        noack: bool = False,
        as_agent: str | None = None,
    ) -> list[Message]:
        """``MAILBOX.READ``: up to ``count`` messages, leased for ``lease`` ms; ``block`` ms to
        wait (0: forever). A sealed message this client cannot open puts the batch back (nack)
        and raises :class:`MissingKey` or :class:`DecryptionFailed`."""
        call = p.read(
            mailbox, count=count, block=block, min=min, lease=lease, noack=noack, as_agent=as_agent
        )
        msgs = self._run(call)
        msgs = self._opened(mailbox, msgs, settle=not noack)
        self.cache.put(msgs)
        return msgs

    def ack(self, mailbox: str, *ids: str, as_agent: str | None = None) -> int:
        """``MAILBOX.ACK``: how many were removed."""
        return self._run(p.ack(mailbox, ids, as_agent=as_agent))

    def nack(
        self,
        mailbox: str,
        ids: Sequence[str] | str,
        *,
        delay: int | None = None,
        as_agent: str | None = None,
    ) -> int:
        """``MAILBOX.NACK``: how many leased messages were put back."""
        seq = [ids] if isinstance(ids, str) else list(ids)
        return self._run(p.nack(mailbox, seq, delay=delay, as_agent=as_agent))

    def _view(self, mailbox: str, call: p.Call[list[Message]], thread: str | None) -> list[Message]:
        try:
            msgs = self._run(call)
        except Unavailable:
            cached = self.cache.messages(mailbox, thread)
            if cached:
                return cached
            raise
        opened = [self._try_open(m) for m in msgs]
        self.cache.put(opened)
        return opened

    def _try_open(self, m: Message) -> Message:
        try:
            return open_message(m, self.keyring)
        except EncryptionError:
            return m

    def peek(
        self, mailbox: str, start: str = "-", end: str = "+", *, count: int | None = None
    ) -> list[Message]:
        """``MAILBOX.PEEK``, without leasing. While Redis is unreachable, the cached messages of
        the mailbox (``stale=True``) if there are any. Sealed messages this client cannot open
        keep their ciphertext."""
        return self._view(mailbox, p.peek(mailbox, start, end, count=count), None)

    def thread(self, mailbox: str, thread_id: str, *, count: int | None = None) -> list[Message]:
        """``MAILBOX.THREAD``; falls back to the cache like :meth:`peek`."""
        return self._view(mailbox, p.thread(mailbox, thread_id, count=count), thread_id)

    def cached(self, mailbox: str, message_id: str) -> Message | None:
        """A message this client received before, from the local cache (``stale=True``)."""
        return self.cache.get(mailbox, message_id)

    def status(self, mailbox: str, message_id: str) -> Status:
        return self._run(p.status(mailbox, message_id))

    # ------------------------------------------------------------------ subscriptions, state

    def subscribe(
        self,
        mailbox: str,
        *patterns: str,
        sender: str | None = None,
        min_priority: int | None = None,
        content_type: str | None = None,
    ) -> int:
        """``MAILBOX.SUB``: the number of new (or changed) subscriptions."""
        return self._run(
            p.subscribe(
                mailbox,
                patterns,
                sender=sender,
                min_priority=min_priority,
                content_type=content_type,
            )
        )

    def unsubscribe(self, mailbox: str, *patterns: str) -> int:
        return self._run(p.unsubscribe(mailbox, patterns))

    def subscriptions(self, mailbox: str) -> list[Subscription]:
        return self._run(p.subscriptions(mailbox))

    def presence(self, namespace: str) -> list[Presence]:
        return self._run(p.presence(namespace))

    def info(self, mailbox: str) -> MailboxInfo:
        return self._run(p.info(mailbox))

    def create(
        self,
        mailbox: str,
        *,
        maxlen: int | None = None,
        ttl: int | None = None,
        lease: int | None = None,
        maxdeliver: int | None = None,
        dedup_window: int | None = None,
        overflow: str | None = None,
        update: bool = False,
    ) -> bool:
        """``MAILBOX.CREATE``; :class:`MailboxExists` unless ``update``."""
        return self._run(
            p.create(
                mailbox,
                maxlen=maxlen,
                ttl=ttl,
                lease=lease,
                maxdeliver=maxdeliver,
                dedup_window=dedup_window,
                overflow=overflow,
                update=update,
            )
        )

    def dead(
        self, mailbox: str, start: str = "-", end: str = "+", *, count: int | None = None
    ) -> list[DeadLetter]:
        """``MAILBOX.DEAD LIST mailbox ...``."""
        return self._run(p.dead_list(mailbox, start, end, count=count))

    def dead_requeue(self, mailbox: str, ids: Sequence[str] | None = None) -> int:
        """``MAILBOX.DEAD REQUEUE mailbox ...``: the given ids, or all when None."""
        return self._run(p.dead_settle(mailbox, "REQUEUE", ids))

    def dead_purge(self, mailbox: str, ids: Sequence[str] | None = None) -> int:
        """``MAILBOX.DEAD PURGE mailbox ...``: the given ids, or all when None."""
        return self._run(p.dead_settle(mailbox, "PURGE", ids))

    def grant(self, agent: str, permission: str, pattern: str) -> bool:
        return self._run(p.grant(agent, permission, pattern))

    def revoke(self, agent: str, permission: str, pattern: str) -> bool:
        return self._run(p.revoke(agent, permission, pattern))

    def check(self, agent: str, permission: str, name: str) -> bool:
        return self._run(p.check(agent, permission, name))

    def grants(self, namespace: str, agent: str | None = None) -> list[Grant]:
        """``MAILBOX.ACL LIST namespace [agent]``: one namespace's grants."""
        return self._run(p.grants(namespace, agent))

    def quota(
        self, agent: str, rate: int | None, namespace: str, *, burst: int | None = None
    ) -> bool:
        """``MAILBOX.ACL QUOTA``; ``rate=None`` resets the agent to the configs."""
        return self._run(p.quota(agent, rate, namespace, burst=burst))

    def stats(self) -> dict[str, int]:
        return self._run(p.stats())

    # ------------------------------------------------------------------ keys

    def whoami(self) -> str:
        if self._agent is None:
            self._agent = p._s(self._execute(("ACL", "WHOAMI")))
        return self._agent

    def publish_key(self, namespace: str = "") -> None:
        """Write this agent's public key into the namespace's key hash (``mailbox:keys:{ns}``)."""
        if self.keyring is None:
            raise MissingKey("this client has no keyring")
        self._execute(("HSET", keys_hash(namespace), self.whoami(), self.keyring.public_key))

    # ------------------------------------------------------------------ listening

    def listen(
        self,
        mailbox: str,
        *,
        count: int = 1,
        block: int = 5000,
        lease: int | None = None,
        idle_timeout: float | None = None,
    ) -> Listener:
        """Messages of ``mailbox`` as they arrive, each acked when the caller's block for it
        ends without an exception and nacked otherwise. See :class:`Listener`."""
        return Listener(self, mailbox, count=count, block=block, lease=lease, idle=idle_timeout)

    def receive(self, mailbox: str, *, block: int = 5000, lease: int | None = None) -> Received:
        """One message as a context manager: acked when the ``with`` block ends normally,
        nacked when it raises. ``msg`` is None when nothing came within ``block`` ms."""
        return Received(self, mailbox, block=block, lease=lease)


class Listener(ListenerState):
    """An iterator of messages that settles each one.

    ``with mb.listen(box) as stream: for msg in stream: ...`` acks a message when the loop asks
    for the next one or the ``with`` block ends normally (``break`` included), and nacks it when
    an exception leaves the block. A bare ``for msg in mb.listen(box)`` acks the same way and
    nacks the message in hand when the loop ends any other way (an exception, or ``break``).
    Messages read ahead (``count`` > 1) and not yet handed out are nacked at the end.
    ``idle_timeout`` seconds without a message end the iteration; None waits forever.
    """

    def __init__(
        self,
        mb: Mailbox,
        mailbox: str,
        *,
        count: int,
        block: int,
        lease: int | None,
        idle: float | None,
    ) -> None:
        super().__init__(mailbox, count=count, block=block, lease=lease, idle=idle)
        self._mb = mb

    def _settle(self, ok: bool) -> None:
        cur = self._take_current()
        if cur is not None and ok:
            self.acked += self._mb.ack(self.mailbox, cur.id)
            cur = None
        back = self._take_rest(cur)
        if back:
            # When Redis is away their leases run out and they come back all the same.
            with contextlib.suppress(Unavailable):
                self.nacked += self._mb.nack(self.mailbox, back)

    def _next(self) -> Message | None:
        cur = self._take_current()
        if cur is not None:
            self.acked += self._mb.ack(self.mailbox, cur.id)
        deadline = self._deadline()
        while not self._buffer:
            wait = self._wait_ms(deadline)
            if wait is None:
                return None
            self._buffer.extend(
                self._mb.read(self.mailbox, count=self._count, block=wait, lease=self._lease)
            )
        return self._hand_out()

    def __iter__(self) -> Iterator[Message]:
        try:
            while True:
                msg = self._next()
                if msg is None:
                    return
                yield msg
        finally:
            if not self._managed:
                self._settle(ok=False)

    def __enter__(self) -> Listener:
        self._managed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._managed = False
        self._settle(ok=exc_type is None)

    def close(self) -> None:
        """Nack the message in hand and those read ahead."""
        self._settle(ok=False)


class Received:
    """``with mb.receive(box) as msg:``: one message, acked on a normal exit, nacked otherwise."""

    def __init__(self, mb: Mailbox, mailbox: str, *, block: int, lease: int | None) -> None:
        self._mb = mb
        self.mailbox = mailbox
        self._block = block
        self._lease = lease
        self.message: Message | None = None

    def __enter__(self) -> Message | None:
        got = self._mb.read(self.mailbox, count=1, block=self._block, lease=self._lease)
        self.message = got[0] if got else None
        return self.message

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.message is None:
            return
        if exc_type is None:
            self._mb.ack(self.mailbox, self.message.id)
        else:
            self._mb.nack(self.mailbox, self.message.id)


class Pipeline(PipelineBuffer):
    """Commands collected for one round trip; see :meth:`Mailbox.pipeline`."""

    def __init__(self, mb: Mailbox) -> None:
        super().__init__(mb)
        self._mb = mb

    def execute(self) -> list[Any]:
        batch = self._take()
        if not batch:
            return []
        mb = self._mb
        if mb.outbox is not None and len(mb.outbox) > 0 and mb.flush_outbox() > 0:
            return self._outboxed(batch, Unavailable("the outbox still holds unsent messages"))
        try:
            replies = mb._execute_many(batch.args)
        except Unavailable as e:
            return self._outboxed(batch, e)
        return batch.results(replies)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._take()  # what was not executed is dropped


__all__ = ["Listener", "Mailbox", "Pipeline", "Received"]

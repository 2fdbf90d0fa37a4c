"""The asyncio client: :class:`AsyncMailbox` over an existing ``redis.asyncio.Redis``, the twin
of :class:`redis_mailbox.Mailbox` (same methods, same behaviour, awaited)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import redis.exceptions as rex

from . import _protocol as p
from ._base import PreparedSend, _Settings, is_storing, reply_target
from .crypto import Keyring, keys_hash, open_message
from .errors import (
    CommandError,
    EncryptionError,
    MissingKey,
    NotReplicated,
    Unavailable,
    from_redis,
    is_transient,
)
from .outbox import Outbox
from .resilience import CircuitBreaker, RetryPolicy
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


class AsyncMailbox(_Settings):
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
        super().__init__(
            retry=retry,
            breaker=breaker,
            outbox=outbox,
            cache_size=cache_size,
            keyring=keyring,
            idempotent=idempotent,
            wait_replicas=wait_replicas,
            wait_timeout_ms=wait_timeout_ms,
        )
        self.client = client
        self._flush_lock = asyncio.Lock()
        self._agent: str | None = None

    # ------------------------------------------------------------------ execution

    async def _once(self, args: tuple[p.Arg, ...]) -> Any:
        """One attempt; a storing command is followed by WAIT when replicas are asked for."""
        if self.wait_replicas > 0 and is_storing(args):
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command(*args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            reply, acked = await pipe.execute()
            if int(acked) < self.wait_replicas:
                mid = p.parse_id(reply[0] if isinstance(reply, (list, tuple)) else reply)
                raise NotReplicated(
                    f"message {mid} reached {int(acked)} of {self.wait_replicas} replicas"
                    f" within {self.wait_timeout_ms} ms",
                    mid,
                )
            return reply
        return await self.client.execute_command(*args)

    async def _execute(self, args: tuple[p.Arg, ...]) -> Any:
        """Run one command under the retry policy and the circuit breaker."""
        attempt = 0
        while True:
            attempt += 1
            if self.breaker is not None:
                self.breaker.before_call()
            try:
                reply = await self._once(args)
            except NotReplicated:
                if self.breaker is not None:
                    self.breaker.neutral()
                if attempt >= self.retry.max_attempts:
                    raise
            except rex.RedisError as e:
                if not is_transient(e):
                    if self.breaker is not None:
                        self.breaker.neutral()
                    raise from_redis(e) from e
                if self.breaker is not None:
                    self.breaker.failure()
                if attempt >= self.retry.max_attempts:
                    raise Unavailable(f"{type(e).__name__}: {e}") from e
            else:
                if self.breaker is not None:
                    self.breaker.success()
                return reply
            await asyncio.sleep(self.retry.delay(attempt))

    async def _run(self, call: p.Call[T]) -> T:
        return call.parse(await self._execute(call.args))

    async def execute_command(self, *args: p.Arg) -> Any:
        """Any command through the same retries and breaker (the raw reply)."""
        return await self._execute(tuple(args))

    # ------------------------------------------------------------------ sends and the outbox

    async def _send(self, prep: PreparedSend) -> Any:
        """The reply to a storing command, or None when it went to the outbox."""
        ob = self.outbox
        if ob is not None and len(ob) > 0:
            seq = ob.put(prep.args, prep.dedup)
            return await self._flush(want=seq)
        try:
            return await self._execute(prep.args)
        except NotReplicated:
            if ob is None:
                raise
            ob.put(prep.args, prep.dedup)
            return None
        except Unavailable:
            if ob is None:
                raise
            ob.put(prep.args, prep.dedup)
            return None

    async def _flush(self, want: int | None = None) -> Any:
        ob = self.outbox
        if ob is None:
            return None
        wanted: Any = None
        async with self._flush_lock:
            while True:
                entry = ob.first()
                if entry is None:
                    break
                try:
                    reply = await self._execute(entry.args)
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

    async def flush_outbox(self) -> int:
        """Send what the outbox holds, oldest first; returns how many entries are left."""
        await self._flush()
        return 0 if self.outbox is None else len(self.outbox)

    async def _public_key(self, namespace: str, agent: str) -> bytes:
        key = (namespace, agent)
        if key not in self._public_keys:
            raw = await self._execute(("HGET", keys_hash(namespace), agent))
            if raw is None:
                raise MissingKey(
                    f"agent {agent!r} has published no public key in {keys_hash(namespace)}"
                )
            self._public_keys[key] = bytes(raw)
        return self._public_keys[key]

    async def send(
        self,
        mailbox: str,
        payload: p.Payload,
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
        seal: bool = False,
        as_agent: str | None = None,
    ) -> Sent:
        """``MAILBOX.SEND``. ``seal=True`` seals the payload to the receiver's public key."""
        pk = await self._public_key(p.namespace_of(mailbox), p.agent_of(mailbox)) if seal else None
        prep = self._prepare(
            "MAILBOX.SEND",
            (mailbox,),
            payload,
            public_key=pk,
            group=None,
            priority=priority,
            ttl=ttl,
            dedup=dedup,
            content_type=content_type,
            thread=thread,
            correlation=correlation,
            reply_to=reply_to,
            meta=meta,
            confirm=confirm,
            as_agent=as_agent,
        )
        reply = await self._send(prep)
        if reply is None:
            return Sent(id=None, dedup=prep.dedup, queued=True)
        return p.sent_result(reply, prep.dedup)

    async def send_ephemeral(
        self, mailbox: str, payload: p.Payload, *, content_type: str | None = None
    ) -> Pushed:
        """``MAILBOX.SEND ... EPHEMERAL``: pushed to listeners, never stored (nor outboxed)."""
        data, ctype = p.encode_payload(payload, content_type)
        args: list[p.Arg] = ["MAILBOX.SEND", mailbox, data]
        if ctype is not None:
            args += ["TYPE", ctype]
        args.append("EPHEMERAL")
        return p.pushed_result(await self._execute(tuple(args)))

    async def _publish(
        self,
        command: str,
        target: str,
        payload: p.Payload,
        group: str | None,
        opts: dict[str, Any],
    ) -> Published:
        prep = self._prepare(command, (target,), payload, public_key=None, group=group, **opts)
        reply = await self._send(prep)
        if reply is None:
            return Published(id=None, receivers=0, dedup=prep.dedup, queued=True)
        return p.published_result(reply, prep.dedup)

    async def publish(
        self,
        topic: str,
        payload: p.Payload,
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
        group: str | None = None,
        as_agent: str | None = None,
    ) -> Published:
        """``MAILBOX.PUBLISH``. With ``group`` the payload is sealed with that group's key."""
        return await self._publish(
            "MAILBOX.PUBLISH",
            topic,
            payload,
            group,
            dict(
                priority=priority,
                ttl=ttl,
                dedup=dedup,
                content_type=content_type,
                thread=thread,
                correlation=correlation,
                reply_to=reply_to,
                meta=meta,
                confirm=confirm,
                as_agent=as_agent,
            ),
        )

    async def broadcast(
        self,
        namespace: str,
        payload: p.Payload,
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
        group: str | None = None,
        as_agent: str | None = None,
    ) -> Published:
        """``MAILBOX.BROADCAST`` to every mailbox of ``namespace`` (``{team1}``)."""
        return await self._publish(
            "MAILBOX.BROADCAST",
            namespace,
            payload,
            group,
            dict(
                priority=priority,
                ttl=ttl,
                dedup=dedup,
                content_type=content_type,
                thread=thread,
                correlation=correlation,
                reply_to=reply_to,
                meta=meta,
                confirm=confirm,
                as_agent=as_agent,
            ),
        )

    async def reply(
        self,
        mailbox: str,
        original: Message | str,
        payload: p.Payload,
        *,
        priority: int | None = None,
        ttl: int | None = None,
        dedup: str | None = None,
        content_type: str | None = None,
        thread: str | None = None,
        reply_to: str | None = None,
        meta: Mapping[str, Any] | None = None,
        confirm: bool = False,
        seal: bool = False,
        as_agent: str | None = None,
    ) -> Sent:
        """``MAILBOX.REPLY`` to a message ``mailbox`` holds (give the Message to seal it)."""
        pk = None
        if seal:
            ns, agent = reply_target(mailbox, original)
            pk = await self._public_key(ns, agent)
        mid = original.id if isinstance(original, Message) else original
        prep = self._prepare(
            "MAILBOX.REPLY",
            (mailbox, mid),
            payload,
            public_key=pk,
            group=None,
            priority=priority,
            ttl=ttl,
            dedup=dedup,
            content_type=content_type,
            thread=thread,
            correlation=None,
            reply_to=reply_to,
            meta=meta,
            confirm=confirm,
            as_agent=as_agent,
        )
        reply = await self._send(prep)
        if reply is None:
            return Sent(id=None, dedup=prep.dedup, queued=True)
        return p.sent_result(reply, prep.dedup)

    # ------------------------------------------------------------------ reading

    async def _opened(self, mailbox: str, msgs: list[Message], *, settle: bool) -> list[Message]:
        """Open sealed messages; on a failure, put the batch back (``settle``) and raise."""
        out: list[Message] = []
        for m in msgs:
            try:
                out.append(open_message(m, self.keyring))
            except EncryptionError:
                if settle and msgs:
                    await self.nack(mailbox, [x.id for x in msgs])
                raise
        return out

    async def read(
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
        msgs = await self._run(call)
        msgs = await self._opened(mailbox, msgs, settle=not noack)
        self.cache.put(msgs)
        return msgs

    async def ack(self, mailbox: str, *ids: str, as_agent: str | None = None) -> int:
        """``MAILBOX.ACK``: how many were removed."""
        return await self._run(p.ack(mailbox, ids, as_agent=as_agent))

    async def nack(
        self,
        mailbox: str,
        ids: Sequence[str] | str,
        *,
        delay: int | None = None,
        as_agent: str | None = None,
    ) -> int:
        """``MAILBOX.NACK``: how many leased messages were put back."""
        seq = [ids] if isinstance(ids, str) else list(ids)
        return await self._run(p.nack(mailbox, seq, delay=delay, as_agent=as_agent))

    async def _view(
        self, mailbox: str, call: p.Call[list[Message]], thread: str | None
    ) -> list[Message]:
        try:
            msgs = await self._run(call)
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

    async def peek(
        self, mailbox: str, start: str = "-", end: str = "+", *, count: int | None = None
    ) -> list[Message]:
        """``MAILBOX.PEEK``, without leasing. While Redis is unreachable, the cached messages of
        the mailbox (``stale=True``) if there are any. Sealed messages this client cannot open
        keep their ciphertext."""
        return await self._view(mailbox, p.peek(mailbox, start, end, count=count), None)

    async def thread(
        self, mailbox: str, thread_id: str, *, count: int | None = None
    ) -> list[Message]:
        """``MAILBOX.THREAD``; falls back to the cache like :meth:`peek`."""
        return await self._view(mailbox, p.thread(mailbox, thread_id, count=count), thread_id)

    def cached(self, mailbox: str, message_id: str) -> Message | None:
        """A message this client received before, from the local cache (``stale=True``)."""
        return self.cache.get(mailbox, message_id)

    async def status(self, mailbox: str, message_id: str) -> Status:
        return await self._run(p.status(mailbox, message_id))

    # ------------------------------------------------------------------ subscriptions, state

    async def subscribe(
        self,
        mailbox: str,
        *patterns: str,
        sender: str | None = None,
        min_priority: int | None = None,
        content_type: str | None = None,
    ) -> int:
        """``MAILBOX.SUB``: the number of new (or changed) subscriptions."""
        return await self._run(
            p.subscribe(
                mailbox,
                patterns,
                sender=sender,
                min_priority=min_priority,
                content_type=content_type,
            )
        )

    async def unsubscribe(self, mailbox: str, *patterns: str) -> int:
        return await self._run(p.unsubscribe(mailbox, patterns))

    async def subscriptions(self, mailbox: str) -> list[Subscription]:
        return await self._run(p.subscriptions(mailbox))

    async def presence(self, namespace: str) -> list[Presence]:
        return await self._run(p.presence(namespace))

    async def info(self, mailbox: str) -> MailboxInfo:
        return await self._run(p.info(mailbox))

    async def create(
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
        return await self._run(
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

    async def dead(
        self, mailbox: str, start: str = "-", end: str = "+", *, count: int | None = None
    ) -> list[DeadLetter]:
        """``MAILBOX.DEAD ... LIST``."""
        return await self._run(p.dead_list(mailbox, start, end, count=count))

    async def dead_requeue(self, mailbox: str, ids: Sequence[str] | None = None) -> int:
        """``MAILBOX.DEAD ... REQUEUE``: the given ids, or all when None."""
        return await self._run(p.dead_settle(mailbox, "REQUEUE", ids))

    async def dead_purge(self, mailbox: str, ids: Sequence[str] | None = None) -> int:
        """``MAILBOX.DEAD ... PURGE``: the given ids, or all when None."""
        return await self._run(p.dead_settle(mailbox, "PURGE", ids))

    async def grant(self, agent: str, permission: str, pattern: str) -> bool:
        return await self._run(p.grant(agent, permission, pattern))

    async def revoke(self, agent: str, permission: str, pattern: str) -> bool:
        return await self._run(p.revoke(agent, permission, pattern))

    async def check(self, agent: str, permission: str, name: str) -> bool:
        return await self._run(p.check(agent, permission, name))

    async def grants(self, agent: str | None = None) -> list[Grant]:
        """``MAILBOX.ACL LIST``."""
        return await self._run(p.grants(agent))

    async def quota(
        self, agent: str, rate: int | None, namespace: str, *, burst: int | None = None
    ) -> bool:
        """``MAILBOX.ACL QUOTA``; ``rate=None`` resets the agent to the configs."""
        return await self._run(p.quota(agent, rate, namespace, burst=burst))

    async def stats(self) -> dict[str, int]:
        return await self._run(p.stats())

    # ------------------------------------------------------------------ keys

    async def whoami(self) -> str:
        if self._agent is None:
            self._agent = p._s(await self._execute(("ACL", "WHOAMI")))
        return self._agent

    async def publish_key(self, namespace: str = "") -> None:
        """Write this agent's public key into the namespace's key hash (``mailbox:keys:{ns}``)."""
        if self.keyring is None:
            raise MissingKey("this client has no keyring")
        await self._execute(
            ("HSET", keys_hash(namespace), await self.whoami(), self.keyring.public_key)
        )

    # ------------------------------------------------------------------ listening

    def listen(
        self,
        mailbox: str,
        *,
        count: int = 1,
        block: int = 5000,
        lease: int | None = None,
        idle_timeout: float | None = None,
    ) -> AsyncListener:
        """Messages of ``mailbox`` as they arrive, each acked when the caller's block for it
        ends without an exception and nacked otherwise. See :class:`Listener`."""
        return AsyncListener(
            self, mailbox, count=count, block=block, lease=lease, idle=idle_timeout
        )

    def receive(
        self, mailbox: str, *, block: int = 5000, lease: int | None = None
    ) -> AsyncReceived:
        """One message as a context manager: acked when the ``with`` block ends normally,
        nacked when it raises. ``msg`` is None when nothing came within ``block`` ms."""
        return AsyncReceived(self, mailbox, block=block, lease=lease)


class AsyncListener:
    """The asyncio twin of :class:`redis_mailbox.Listener`.

    ``async with mb.listen(box) as stream: async for msg in stream: ...`` acks a message when the
    loop asks for the next one or the block ends normally (``break`` included), and nacks it when
    an exception leaves the block. A bare ``async for`` acks the same way and nacks the message
    in hand when the async generator is closed (an exception, ``break``: at its ``aclose``).
    """

    def __init__(
        self,
        mb: AsyncMailbox,
        mailbox: str,
        *,
        count: int,
        block: int,
        lease: int | None,
        idle: float | None,
    ) -> None:
        self._mb = mb
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

    async def _settle(self, ok: bool) -> None:
        cur, self._current = self._current, None
        if cur is not None and ok:
            self.acked += await self._mb.ack(self.mailbox, cur.id)
            cur = None
        back = ([cur.id] if cur is not None else []) + [m.id for m in self._buffer]
        self._buffer.clear()
        if back:
            # When Redis is away their leases run out and they come back all the same.
            with contextlib.suppress(Unavailable):
                self.nacked += await self._mb.nack(self.mailbox, back)

    async def _next(self) -> Message | None:
        if self._current is not None:
            cur, self._current = self._current, None
            self.acked += await self._mb.ack(self.mailbox, cur.id)
        deadline = None if self._idle is None else time.monotonic() + self._idle
        while not self._buffer:
            wait = self._block
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                wait = max(1, min(wait, int(left * 1000)))
            self._buffer.extend(
                await self._mb.read(self.mailbox, count=self._count, block=wait, lease=self._lease)
            )
        self._current = self._buffer.popleft()
        return self._current

    async def _iterate(self) -> AsyncGenerator[Message, None]:
        try:
            while True:
                msg = await self._next()
                if msg is None:
                    return
                yield msg
        finally:
            if not self._managed:
                await self._settle(ok=False)

    def __aiter__(self) -> AsyncGenerator[Message, None]:
        return self._iterate()

    async def __aenter__(self) -> AsyncListener:
        self._managed = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._managed = False
        await self._settle(ok=exc_type is None)

    async def close(self) -> None:
        """Nack the message in hand and those read ahead."""
        await self._settle(ok=False)


class AsyncReceived:
    """``async with mb.receive(box) as msg:``: acked on a normal exit, nacked otherwise."""

    def __init__(self, mb: AsyncMailbox, mailbox: str, *, block: int, lease: int | None) -> None:
        self._mb = mb
        self.mailbox = mailbox
        self._block = block
        self._lease = lease
        self.message: Message | None = None

    async def __aenter__(self) -> Message | None:
        got = await self._mb.read(self.mailbox, count=1, block=self._block, lease=self._lease)
        self.message = got[0] if got else None
        return self.message

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.message is None:
            return
        if exc_type is None:
            await self._mb.ack(self.mailbox, self.message.id)
        else:
            await self._mb.nack(self.mailbox, self.message.id)


__all__ = ["AsyncListener", "AsyncMailbox", "AsyncReceived"]

"""Every command method, against a real server, on the sync client and the asyncio twin."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from conftest import RedisServer, quiet_client, wait_for

from redis_mailbox import (
    DeadLetter,
    InvalidArgument,
    Mailbox,
    MailboxExists,
    MailboxFull,
    MailboxInfo,
    Message,
    NoSuchMailbox,
    NoSuchMessage,
    PayloadTooLarge,
    PermissionDenied,
    Presence,
    ProtocolError,
    QuotaExceeded,
    Sent,
    Status,
    Subscription,
    WrongType,
)


def test_send_read_ack(mb: Any) -> None:
    sent = mb.send(
        "{t}bob",
        "summarise the paper",
        priority=5,
        thread="paper-42",
        reply_to="{t}alice",
        content_type="text/plain",
        meta={"deadline": "today"},
        ttl=60_000,
        correlation="c-1",
    )
    assert sent.id is not None and not sent.queued
    assert sent.dedup is not None and sent.dedup.startswith("pyc:")
    msgs = mb.read("{t}bob", count=10)
    assert len(msgs) == 1
    m = msgs[0]
    assert isinstance(m, Message)
    assert m.id == sent.id
    assert m.sender == "default"
    assert m.to == "{t}bob"
    assert m.priority == 5
    assert m.text == "summarise the paper"
    assert m.payload == b"summarise the paper"
    assert m.content_type == "text/plain"
    assert m.meta == {"deadline": "today"}
    assert m.thread == "paper-42"
    assert m.correlation == "c-1"
    assert m.reply_to == "{t}alice"
    assert m.expires is not None and m.expires > m.ts
    assert m.deliveries == 1
    assert m.mailbox == "{t}bob"
    assert not m.stale
    assert mb.read("{t}bob") == []
    assert mb.ack("{t}bob", m.id) == 1
    assert mb.ack("{t}bob", m.id) == 0
    assert mb.status("{t}bob", m.id) is Status.UNKNOWN


def test_json_and_binary_payloads(mb: Any) -> None:
    mb.send("{t}bob", {"task": "sum", "args": [1, 2]})
    mb.send("{t}bob", b"\x00\xff\x10")
    first, second = mb.read("{t}bob", count=2)
    assert first.json() == {"task": "sum", "args": [1, 2]}
    assert first.content_type == "application/json"
    assert second.payload == b"\x00\xff\x10"


def test_dedup_stores_once(mb: Any) -> None:
    a = mb.send("{t}bob", "once", dedup="k1")
    b = mb.send("{t}bob", "once", dedup="k1")
    assert a.id == b.id
    assert len(mb.peek("{t}bob")) == 1


def test_not_idempotent_sends_no_dedup(r: redis.Redis, server: RedisServer) -> None:
    c = server.client()
    m = Mailbox(c, idempotent=False)
    s = m.send("{t}bob", "x")
    assert s.dedup is None
    assert m.info("{t}bob").dedup_keys == 0


def test_nack_and_delay_and_status(mb: Any) -> None:
    mid = mb.send("{t}bob", "x").id
    assert mb.status("{t}bob", mid) is Status.READY
    (m,) = mb.read("{t}bob", lease=60_000)
    assert mb.status("{t}bob", mid) is Status.LEASED
    assert mb.nack("{t}bob", m.id) == 1
    (again,) = mb.read("{t}bob")
    assert again.id == mid and again.deliveries == 2
    assert mb.nack("{t}bob", [again.id], delay=60_000) == 1
    assert mb.status("{t}bob", mid) is Status.DELAYED
    assert mb.read("{t}bob") == []


def test_read_noack_block_min(mb: Any) -> None:
    mb.send("{t}bob", "1")
    mb.send("{t}bob", "2")
    got = mb.read("{t}bob", count=5, block=2000, min=2, noack=True)
    assert [m.text for m in got] == ["1", "2"]
    assert mb.peek("{t}bob") == []
    assert mb.read("{t}bob", block=50) == []


def test_peek_range_and_state(mb: Any) -> None:
    ids = [mb.send("{t}bob", str(i)).id for i in range(3)]
    mb.read("{t}bob")
    peeked = mb.peek("{t}bob")
    assert [m.id for m in peeked] == ids
    assert [m.state for m in peeked] == ["leased", "ready", "ready"]
    assert [m.id for m in mb.peek("{t}bob", ids[1], "+")] == ids[1:]
    assert len(mb.peek("{t}bob", count=1)) == 1
    assert mb.peek("{t}nobody") == []


def test_thread_and_reply(mb: Any) -> None:
    q = mb.send("{t}bob", "question", thread="th1", reply_to="{t}alice")
    mb.send("{t}bob", "other")
    (m,) = mb.read("{t}bob")
    assert m.id == q.id
    answer = mb.reply("{t}bob", m, "answer", meta={"ok": True})
    assert answer.id is not None
    (a,) = mb.read("{t}alice")
    assert a.correlation == q.id and a.thread == "th1" and a.text == "answer"
    assert a.meta == {"ok": True}
    assert [x.id for x in mb.thread("{t}bob", "th1")] == [q.id]
    assert mb.thread("{t}bob", "th1", count=1)[0].thread == "th1"
    # by id too, and to the sender's own mailbox when there is no reply_to
    other = mb.peek("{t}bob")[1]
    r2 = mb.reply("{t}bob", other.id, "to the sender")
    (back,) = mb.read("{t}default")
    assert back.id == r2.id and back.correlation == other.id
    with pytest.raises(NoSuchMessage) as e:
        mb.reply("{t}bob", "1-1", "nobody")
    assert e.value.text == "ERR no such message in this mailbox"


def test_publish_subscribe(mb: Any) -> None:
    assert mb.subscribe("{t}alice", "news.#", "#.urgent") == 2
    assert (
        mb.subscribe("{t}carol", "alerts.*", sender="mon*", min_priority=5, content_type="t/*") == 1
    )
    subs = mb.subscriptions("{t}carol")
    assert subs == [Subscription("alerts.*", sender="mon*", min_priority=5, content_type="t/*")]
    assert [s.pattern for s in mb.subscriptions("{t}alice")] == ["#.urgent", "news.#"]
    pub = mb.publish("{t}news.papers", "new paper", priority=2)
    assert pub.receivers == 1 and pub.id is not None and not pub.queued
    (m,) = mb.read("{t}alice")
    assert m.to == "{t}news.papers" and m.text == "new paper"
    assert mb.publish("{t}alerts.x", "low", priority=1).receivers == 0
    assert mb.unsubscribe("{t}alice", "news.#") == 1
    assert mb.publish("{t}news.papers", "again").receivers == 0


def test_broadcast(mb: Any) -> None:
    mb.create("{t}a")
    mb.create("{t}b")
    res = mb.broadcast("{t}", "everyone")
    assert res.receivers == 2
    assert mb.read("{t}a")[0].text == "everyone"
    assert mb.read("{t}b")[0].to == "{t}"


def test_send_ephemeral(mb: Any) -> None:
    pushed = mb.send_ephemeral("{t}bob", "typing...")
    assert pushed.listeners == 0 and "-" in pushed.id
    assert mb.peek("{t}bob") == []


def test_presence(mb: Any) -> None:
    # Presence is written at most once a second per agent, so poll with a deadline.
    mb.send("{t}default", "note to self")
    seen: list[Presence] = []

    def present() -> bool:
        seen[:] = mb.presence("{t}")
        if not seen:
            mb.send_ephemeral("{t}default", "ping")
        return bool(seen)

    wait_for(present, "presence of default")
    (p,) = seen
    assert isinstance(p, Presence)
    assert p.agent == "default" and p.waiting == 1 and p.last_seen > 0 and p.idle >= 0


def test_create_info(mb: Any) -> None:
    assert mb.create("{t}box", maxlen=2, ttl=0, lease=1000, maxdeliver=3, dedup_window=5000)
    with pytest.raises(MailboxExists) as e:
        mb.create("{t}box")
    assert e.value.text == "BUSYKEY mailbox already exists" and e.value.code == "BUSYKEY"
    assert mb.create("{t}box", overflow="refuse", maxlen=1, update=True)
    info = mb.info("{t}box")
    assert isinstance(info, MailboxInfo)
    assert (info.maxlen, info.lease, info.maxdeliver, info.dedup_window) == (1, 1000, 3, 5000)
    assert (info.ready, info.leased, info.dead, info.bytes) == (0, 0, 0, 0)
    assert info.oldest_age is None
    mid = mb.send("{t}box", "x").id
    info = mb.info("{t}box")
    assert info.ready == 1 and info.last_id == mid and info.dedup_keys == 1
    assert info.oldest_age is not None
    with pytest.raises(MailboxFull) as full:
        mb.send("{t}box", "y")
    assert full.value.text == "ERR mailbox is full (MAXLEN reached)"
    with pytest.raises(NoSuchMailbox):
        mb.info("{t}missing")


def test_dead_letters(mb: Any) -> None:
    mb.create("{t}d", maxdeliver=1)
    ids = [mb.send("{t}d", str(i)).id for i in range(3)]
    got = mb.read("{t}d", count=3)
    assert mb.nack("{t}d", [m.id for m in got]) == 3
    dead = mb.dead("{t}d")
    assert [d.id for d in dead] == ids
    assert all(isinstance(d, DeadLetter) and d.reason == "maxdeliveries" for d in dead)
    assert dead[0].dead_at > 0 and dead[0].message.text == "0"
    assert len(mb.dead("{t}d", count=1)) == 1
    assert mb.status("{t}d", ids[0]) is Status.DEAD
    assert mb.dead_requeue("{t}d", [ids[0]]) == 1
    (back,) = mb.read("{t}d")
    assert back.id == ids[0] and back.deliveries == 1
    assert mb.nack("{t}d", back.id) == 1
    assert mb.dead_purge("{t}d", [ids[1]]) == 1
    assert mb.dead_requeue("{t}d") == 2
    assert mb.dead("{t}d") == []
    assert mb.nack("{t}d", [m.id for m in mb.read("{t}d", count=5)]) == 2
    assert mb.dead_purge("{t}d") == 2
    assert mb.info("{t}d").dead == 0


def test_grants_and_quota(mb: Any) -> None:
    assert mb.grant("zed", "read", "{t}*") is True
    assert mb.grant("zed", "read", "{t}*") is False
    assert mb.check("zed", "read", "{t}bob") is True
    assert mb.check("zed", "admin", "{t}bob") is False
    gs = mb.grants("{t}")
    assert [(g.agent, g.permission, g.pattern) for g in gs] == [("zed", "read", "{t}*")]
    assert [g.agent for g in mb.grants("{t}", "zed")] == ["zed"]
    assert mb.grants("{u}") == []
    assert mb.quota("zed", 5, "{t}", burst=3) is True
    assert mb.quota("zed", None, "{t}") is True
    assert mb.revoke("zed", "read", "{t}*") is True
    assert mb.grants("{t}") == []


def test_stats(mb: Any) -> None:
    before = mb.stats()
    mb.send("{t}bob", "x")
    after = mb.stats()
    assert after["sent"] == before["sent"] + 1
    assert "dead_lettered" in after and "bytes" in after


def test_as_agent(mb: Any) -> None:
    mid = mb.send("{t}bob", "on behalf", as_agent="carol").id
    (m,) = mb.read("{t}bob", as_agent="bob")
    assert m.id == mid and m.sender == "carol" and m.via == "default"
    assert mb.ack("{t}bob", m.id, as_agent="bob") == 1


def test_refusals_are_typed(mb: Any, r: redis.Redis, server: RedisServer) -> None:
    with pytest.raises(InvalidArgument) as bad:
        mb.send("{t}bob", "x", priority=12)
    assert bad.value.text == "ERR PRIORITY must be an integer from 0 to 9"
    assert bad.value.code == "ERR"
    r.config_set("mailbox.max-payload-bytes", 10)
    with pytest.raises(PayloadTooLarge) as big:
        mb.send("{t}bob", "y" * 20)
    assert "over the mailbox.max-payload-bytes limit of 10" in big.value.text
    r.config_set("mailbox.max-payload-bytes", 1048576)
    r.set("{t}plain", "string")
    with pytest.raises(WrongType) as wt:
        mb.send("{t}plain", "x")
    assert wt.value.text.startswith("WRONGTYPE")


def test_permission_denied_and_quota(r: redis.Redis, server: RedisServer) -> None:
    r.acl_setuser(
        "eve", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"]
    )
    eve = Mailbox(quiet_client(server.port, username="eve", password="pw"))
    with pytest.raises(PermissionDenied) as e:
        eve.read("{t}bob")
    assert e.value.text == "NOPERM agent 'eve' has no 'read' permission on '{t}bob'"
    assert e.value.code == "NOPERM"
    r.config_set("mailbox.send-rate", 1)
    r.config_set("mailbox.send-burst", 1)
    with pytest.raises(QuotaExceeded) as q:
        for _ in range(3):
            eve.send("{t}bob", "x")
    assert q.value.text == "ERR send quota exceeded for agent 'eve' (1 messages/s, burst 1)"


def test_error_texts_without_status_code() -> None:
    """redis-py versions that keep no status_code still map to the module's full text."""
    import redis.exceptions as rex

    from redis_mailbox.errors import from_redis, module_text

    assert module_text(rex.ResponseError("mailbox is full (MAXLEN reached)")) == (
        "ERR mailbox is full (MAXLEN reached)"
    )
    assert isinstance(
        from_redis(rex.ResponseError("mailbox is full (MAXLEN reached)")), MailboxFull
    )
    assert module_text(rex.ResponseError("BUSYKEY mailbox already exists")).startswith("BUSYKEY ")
    denied = from_redis(rex.NoPermissionError("agent 'e' has no 'read' permission on 'x'"))
    assert isinstance(denied, PermissionDenied) and denied.text.startswith("NOPERM agent 'e'")
    other = from_redis(rex.ResponseError("ERR something new the module says"))
    assert type(other).__name__ == "CommandError" and other.text.endswith("module says")


def test_transient_or_refusal() -> None:
    import redis.exceptions as rex

    from redis_mailbox.errors import is_transient

    assert is_transient(rex.ConnectionError("reset"))
    assert is_transient(rex.TimeoutError("slow"))
    assert is_transient(rex.ReadOnlyError("You can't write against a read only replica."))
    assert is_transient(rex.ResponseError("NOREPLICAS Not enough good replicas to write."))
    assert is_transient(rex.BusyLoadingError("Redis is loading the dataset in memory"))
    assert not is_transient(rex.AuthenticationError("invalid password"))
    assert not is_transient(rex.NoPermissionError("agent 'e' has no 'read' permission on 'x'"))
    assert not is_transient(rex.ResponseError("mailbox is full (MAXLEN reached)"))


def test_sent_outcome_is_the_dataclass() -> None:
    """A send's result, built without the dataclass __init__, is the same as one built by it."""
    import dataclasses

    from redis_mailbox._protocol import sent_outcome

    for reply, want in [
        (b"1-1", Sent(id="1-1", dedup="pyc:k")),
        ("1-2", Sent(id="1-2", dedup="pyc:k")),
        (None, Sent(id=None, dedup="pyc:k", queued=True)),
    ]:
        got = sent_outcome(reply, "pyc:k")
        assert type(got) is Sent and got == want and repr(got) == repr(want)
        assert vars(got) == vars(want) and hash(got) == hash(want)
        assert dataclasses.asdict(got) == dataclasses.asdict(want)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.id = "2-2"  # type: ignore[misc]


def test_parsed_message_is_the_dataclass() -> None:
    """A message read, built without the dataclass __init__, is the same as one built by it."""
    import dataclasses

    from redis_mailbox._protocol import parse_dead_letters, parse_message

    fields = [b"from", b"alice", b"to", b"{t}bob", b"ts", b"5", b"priority", b"2",
              b"payload", b"hi", b"type", b"text/plain", b"meta", b'{"k":1}', b"thread", b"th",
              b"correlation", b"c", b"reply_to", b"{t}alice", b"via", b"v", b"expires", b"9",
              b"deliveries", b"3", b"state", b"leased", b"unknown", b"x"]  # fmt: skip
    want = Message(
        id="1-1", sender="alice", to="{t}bob", ts=5, priority=2, payload=b"hi",
        content_type="text/plain", meta={"k": 1}, thread="th", correlation="c",
        reply_to="{t}alice", via="v", expires=9, deliveries=3, state="leased", mailbox="{t}bob",
    )  # fmt: skip
    for entry in ([b"1-1", fields], ["1-1", [f.decode() for f in fields]]):
        got = parse_message(entry, "{t}bob")
        assert type(got) is Message and got == want and repr(got) == repr(want)
        assert vars(got) == vars(want) and list(vars(got)) == list(vars(want))
        assert dataclasses.replace(got, stale=True) == dataclasses.replace(want, stale=True)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.id = "2-2"  # type: ignore[misc]
    bare = Message(id="1-2", sender="", to="", ts=0, priority=0, payload=b"")
    assert vars(parse_message([b"1-2", []])) == vars(bare)
    dead = parse_dead_letters([[b"1-3", [b"payload", b"p", b"reason", b"ttl", b"dead_at", b"7"]]])
    assert dead == [DeadLetter(message=dataclasses.replace(bare, id="1-3", payload=b"p"),
                               reason="ttl", dead_at=7)]  # fmt: skip
    with pytest.raises(ProtocolError):
        parse_message([b"1-4", [b"ts", b"soon"]])

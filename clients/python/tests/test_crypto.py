"""End-to-end encryption: round trips, a wrong key and a tampered ciphertext are refused
clearly, and the message is not lost (put back in the mailbox)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from conftest import RedisServer, async_client, quiet_client, raw, sid

from redis_mailbox import (
    SEALED_TYPE,
    AsyncMailbox,
    DecryptionFailed,
    Keyring,
    Mailbox,
    MissingKey,
    Status,
    keys_hash,
    new_group_key,
)
from redis_mailbox.crypto import key_id, open_message, seal_direct

AGENTS = ("alice", "bob", "carol")


@pytest.fixture
def agents(r: redis.Redis, server: RedisServer) -> Iterator[dict[str, Mailbox]]:
    out: dict[str, Mailbox] = {}
    for name in AGENTS:
        r.acl_setuser(
            name, enabled=True, passwords=[f"+{name}-pw"], keys=["*"], channels=["*"],
            commands=["+@all"],
        )  # fmt: skip
        c = quiet_client(server.port, username=name, password=f"{name}-pw")
        out[name] = Mailbox(c, keyring=Keyring.generate())
    out["alice"].publish_key("{t}")
    out["bob"].publish_key("{t}")
    yield out
    for m in out.values():
        m.client.close()


def stored(r: redis.Redis, box: str) -> list[Any]:
    return list(raw(r, "MAILBOX.PEEK", box))


def test_direct_round_trip_server_holds_no_plaintext(
    agents: dict[str, Mailbox], r: redis.Redis
) -> None:
    alice, bob = agents["alice"], agents["bob"]
    assert r.hget(keys_hash("{t}"), "bob") == bob.keyring.public_key  # type: ignore[union-attr]
    sent = alice.send(
        "{t}bob", "the launch code is 1234", seal=True, content_type="text/plain", meta={"k": 1}
    )
    ((mid, fields),) = stored(r, "{t}bob")
    f = dict(zip(fields[::2], fields[1::2], strict=True))
    assert mid.decode() == sent.id
    assert b"launch code" not in f[b"payload"]
    assert f[b"type"].decode() == SEALED_TYPE
    env = json.loads(f[b"meta"])["e2e"]
    assert env["kid"] == key_id(bob.keyring.public_key)  # type: ignore[union-attr]
    assert env["type"] == "text/plain"
    (m,) = bob.read("{t}bob")
    assert m.text == "the launch code is 1234"
    assert m.content_type == "text/plain" and m.meta == {"k": 1}
    assert m.sealed_by == env["kid"] and m.sender == "alice"
    # Bob answers, sealed to Alice (her key is found from the original's sender).
    bob.reply("{t}bob", m, "ack: received", seal=True)
    (back,) = alice.read("{t}alice")
    assert back.text == "ack: received" and back.correlation == m.id and back.sealed_by


def test_wrong_key_is_refused_and_message_kept(
    agents: dict[str, Mailbox], server: RedisServer
) -> None:
    alice, bob = agents["alice"], agents["bob"]
    mid = sid(alice.send("{t}bob", "for bob's published key", seal=True))
    # Bob restarted with a fresh key he has not published.
    bob_new = Mailbox(bob.client, keyring=Keyring.generate())
    with pytest.raises(MissingKey) as e:
        bob_new.read("{t}bob")
    assert mid in e.value.text and "not this agent's" in e.value.text
    assert bob.status("{t}bob", mid) is Status.READY  # put back, not lost
    no_keys = Mailbox(bob.client)
    with pytest.raises(MissingKey), no_keys.listen("{t}bob", block=200) as stream:
        for _ in stream:
            pass
    assert bob.status("{t}bob", mid) is Status.READY
    peeked = bob_new.peek("{t}bob")[0]  # peek keeps the ciphertext it cannot open
    assert peeked.content_type == SEALED_TYPE and peeked.sealed_by is None
    (m,) = bob.read("{t}bob")
    assert m.text == "for bob's published key" and m.deliveries == 3


def test_tampered_ciphertext_is_refused_and_message_kept(agents: dict[str, Mailbox]) -> None:
    alice, bob = agents["alice"], agents["bob"]
    s = seal_direct(bob.keyring.public_key, b"pay 10 EUR", None, None)  # type: ignore[union-attr]
    forged = bytearray(s.payload)
    forged[-1] ^= 0x01
    mid = raw(
        alice.client, "MAILBOX.SEND", "{t}bob", bytes(forged), "TYPE", s.content_type,
        "META", json.dumps(s.meta),
    ).decode()  # fmt: skip
    with pytest.raises(DecryptionFailed) as e:
        bob.read("{t}bob")
    assert mid in e.value.text and "tampered" in e.value.text
    assert bob.status("{t}bob", mid) is Status.READY
    assert bob.info("{t}bob").ready == 1


def test_group_key_for_topics(agents: dict[str, Mailbox]) -> None:
    alice, bob, carol = agents["alice"], agents["bob"], agents["carol"]
    key = new_group_key()
    for member in (alice, bob):
        member.keyring.add_group("research", key)  # type: ignore[union-attr]
    bob.subscribe("{t}bob", "research.#")
    carol.subscribe("{t}carol", "research.#")
    pub = alice.publish("{t}research.papers", {"title": "secret"}, group="research")
    assert pub.receivers == 2
    (m,) = bob.read("{t}bob")
    assert m.json() == {"title": "secret"} and m.content_type == "application/json"
    with pytest.raises(MissingKey) as e:
        carol.read("{t}carol")
    assert "group key" in e.value.text
    assert carol.info("{t}carol").ready == 1
    with pytest.raises(MissingKey):
        carol.publish("{t}research.papers", "no key", group="research")


def test_sealing_to_an_agent_without_a_key_sends_nothing(
    agents: dict[str, Mailbox], r: redis.Redis
) -> None:
    alice = agents["alice"]
    with pytest.raises(MissingKey) as e:
        alice.send("{t}carol", "x", seal=True)
    assert "carol" in e.value.text and "mailbox:keys:{t}" in e.value.text
    assert stored(r, "{t}carol") == []


async def test_async_round_trip_and_wrong_key(
    agents: dict[str, Mailbox], server: RedisServer
) -> None:
    bob_keys = agents["bob"].keyring
    ac = async_client(server.port, username="alice", password="alice-pw")
    bc = async_client(server.port, username="bob", password="bob-pw")
    alice = AsyncMailbox(ac, keyring=Keyring.generate())
    bob = AsyncMailbox(bc, keyring=bob_keys)
    await alice.publish_key("{t}")
    sent = await alice.send("{t}bob", "async secret", seal=True)
    stranger = AsyncMailbox(bc, keyring=Keyring.generate())
    with pytest.raises(MissingKey):
        await stranger.read("{t}bob")
    assert await bob.status("{t}bob", sid(sent)) is Status.READY
    async with bob.listen("{t}bob", block=200, idle_timeout=0.5) as stream:
        texts = [m.text async for m in stream]
    assert texts == ["async secret"]
    assert await bob.peek("{t}bob") == []
    await ac.aclose()
    await bc.aclose()


def test_noack_read_without_the_key_returns_the_ciphertext(agents: dict[str, Mailbox]) -> None:
    """A NOACK read removed the message already: it comes back sealed rather than lost."""
    alice, bob = agents["alice"], agents["bob"]
    sid(alice.send("{t}bob", "sealed for bob", seal=True))
    stranger = Mailbox(bob.client, keyring=Keyring.generate())
    (m,) = stranger.read("{t}bob", noack=True)
    assert m.content_type == SEALED_TYPE and m.sealed_by is None
    assert b"sealed for bob" not in m.payload
    assert bob.keyring is not None
    assert open_message(m, bob.keyring).text == "sealed for bob"


def test_without_pynacl_only_encryption_fails() -> None:
    """PyNaCl is an optional extra: without it the client imports and works, and only sealing
    says what to install."""
    code = (
        "import sys; sys.modules['nacl'] = None\n"
        "import redis_mailbox as m\n"
        "from redis_mailbox.crypto import HAVE_NACL\n"
        "assert not HAVE_NACL\n"
        "try:\n"
        "    m.Keyring.generate()\n"
        "except m.EncryptionError as e:\n"
        "    print(e.text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "end-to-end encryption needs PyNaCl: pip install 'redis-mailbox[e2e]'"
    )

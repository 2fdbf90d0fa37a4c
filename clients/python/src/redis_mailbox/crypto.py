"""Optional end-to-end encryption of payloads, with PyNaCl (libsodium).

* A direct message (``send``, ``reply``) is sealed to the receiver's X25519 public key with a
  sealed box: only the holder of the receiver's private key opens it.
* A topic or broadcast message is sealed with a group key (XSalsa20-Poly1305 secret box) that
  every member holds; how the group key reaches the members is the application's choice (a
  sealed direct message to each member works).

A sealed message has the content type :data:`SEALED_TYPE` and says in its ``meta`` which key
sealed it: ``{"e2e": {"alg": ..., "kid": ..., "type": <the original content type>}}``; the rest
of ``meta`` stays readable by the server (routing needs none of it, but it is not secret).
The key id (``kid``) is the first 16 hex digits of the SHA-256 of the public key or group key.

Public keys live in one Redis hash per namespace, ``mailbox:keys:{ns}`` (``mailbox:keys`` for
the default namespace), field = agent name, value = the 32-byte public key, written by the agent
itself with :meth:`Mailbox.publish_key`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from .errors import DecryptionFailed, EncryptionError, MissingKey
from .types import Message

try:  # PyNaCl is optional (the ``e2e`` extra); without it only sealing and opening fail.
    from nacl.exceptions import CryptoError
    from nacl.public import PrivateKey, PublicKey, SealedBox
    from nacl.secret import SecretBox
    from nacl.utils import random as _random

    HAVE_NACL = True
except ImportError:
    HAVE_NACL = False

KEY_SIZE = 32  # X25519 keys and XSalsa20-Poly1305 group keys alike


def _need_nacl() -> None:
    if not HAVE_NACL:
        raise EncryptionError(
            "end-to-end encryption needs PyNaCl: pip install 'redis-mailbox[e2e]'"
        )


SEALED_TYPE = "application/vnd.mailbox.sealed"
ALG_DIRECT = "x25519-sealedbox"
ALG_GROUP = "xsalsa20poly1305"
KEYS_PREFIX = "mailbox:keys"


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def keys_hash(namespace: str) -> str:
    """The hash holding the public keys of a namespace (``{team1}`` or ``""``)."""
    return f"{KEYS_PREFIX}:{namespace}" if namespace else KEYS_PREFIX


def new_group_key() -> bytes:
    _need_nacl()
    return bytes(_random(KEY_SIZE))


@dataclass
class Keyring:
    """This agent's private key and the group keys it holds, by group name."""

    private_key: PrivateKey | None = None
    groups: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> Keyring:
        _need_nacl()
        return cls(private_key=PrivateKey.generate())

    @property
    def public_key(self) -> bytes:
        if self.private_key is None:
            raise MissingKey("this keyring has no private key")
        return bytes(self.private_key.public_key)

    def add_group(self, name: str, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a group key is {KEY_SIZE} bytes")
        self.groups[name] = key


@dataclass(frozen=True)
class Sealed:
    payload: bytes
    content_type: str
    meta: dict[str, Any]


def seal_direct(
    public_key: bytes, payload: bytes, content_type: str | None, meta: dict[str, Any] | None
) -> Sealed:
    _need_nacl()
    box = SealedBox(PublicKey(public_key))
    env = {"alg": ALG_DIRECT, "kid": key_id(public_key)}
    if content_type is not None:
        env["type"] = content_type
    return Sealed(box.encrypt(payload), SEALED_TYPE, {**(meta or {}), "e2e": env})


def seal_group(
    group: str,
    key: bytes,
    payload: bytes,
    content_type: str | None,
    meta: dict[str, Any] | None,
) -> Sealed:
    _need_nacl()
    box = SecretBox(key)
    env = {"alg": ALG_GROUP, "kid": key_id(key), "group": group}
    if content_type is not None:
        env["type"] = content_type
    return Sealed(bytes(box.encrypt(payload)), SEALED_TYPE, {**(meta or {}), "e2e": env})


def is_sealed(msg: Message) -> bool:
    return msg.content_type == SEALED_TYPE and isinstance(msg.meta.get("e2e"), dict)


def open_message(msg: Message, keyring: Keyring | None) -> Message:
    """The message with its payload opened; raises :class:`MissingKey` or
    :class:`DecryptionFailed` (the caller keeps the message in the mailbox)."""
    if not is_sealed(msg):
        return msg
    _need_nacl()
    env: dict[str, Any] = msg.meta["e2e"]
    kid = str(env.get("kid", ""))
    alg = env.get("alg")
    if keyring is None:
        raise MissingKey(f"message {msg.id} is sealed with key {kid}; this client has no keyring")
    if alg == ALG_DIRECT:
        if keyring.private_key is None or key_id(keyring.public_key) != kid:
            raise MissingKey(
                f"message {msg.id} is sealed to public key {kid}, which is not this agent's"
            )
        try:
            plain = SealedBox(keyring.private_key).decrypt(msg.payload)
        except CryptoError as e:
            raise DecryptionFailed(
                f"message {msg.id} does not open with key {kid}: tampered with or corrupt"
            ) from e
    elif alg == ALG_GROUP:
        group = str(env.get("group", ""))
        gkey = keyring.groups.get(group)
        if gkey is None or key_id(gkey) != kid:
            raise MissingKey(f"message {msg.id} is sealed with group key {kid} of {group!r}")
        try:
            plain = SecretBox(gkey).decrypt(msg.payload)
        except CryptoError as e:
            raise DecryptionFailed(
                f"message {msg.id} does not open with group key {kid}: tampered with or corrupt"
            ) from e
    else:
        raise MissingKey(f"message {msg.id} is sealed with an unknown algorithm {alg!r}")
    meta = {k: v for k, v in msg.meta.items() if k != "e2e"}
    ctype = env.get("type")
    return dataclasses.replace(
        msg,
        payload=plain,
        content_type=None if ctype is None else str(ctype),
        meta=meta,
        sealed_by=kid,
    )

"""Exceptions of the client.

Every refusal of the module becomes a :class:`CommandError` subclass chosen from the error code
and a stable fragment of the module's text; the full text is kept in ``.text``. A text the
mapping does not know still becomes a :class:`CommandError` (or :class:`MailboxError`), so a new
wording in the module never turns into a crash here.
"""

from __future__ import annotations

import redis.exceptions as rex


class MailboxError(Exception):
    """Base of every exception this package raises."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    @property
    def code(self) -> str:
        """The Redis error code the text starts with (``ERR``, ``NOPERM``, ...), or ``""``."""
        head = self.text.split(" ", 1)[0]
        return head if head.isupper() else ""


class CommandError(MailboxError):
    """The module refused the command. Never retried: sending it again gets the same answer."""


class InvalidArgument(CommandError):
    """Bad arguments: unknown or repeated option, out-of-range number, META not an object, ..."""


class PermissionDenied(CommandError):
    """``NOPERM``: Redis ACL or a missing module grant."""


class QuotaExceeded(CommandError):
    """The agent's send quota in this namespace is used up."""


class MailboxFull(CommandError):
    """The mailbox reached its ``MAXLEN`` with ``OVERFLOW refuse``."""


class PayloadTooLarge(CommandError):
    """The payload is over ``mailbox.max-payload-bytes``."""


class ThreadLimitReached(CommandError):
    """The thread reached ``mailbox.max-thread-messages``."""


class NoSuchMailbox(CommandError):
    """``MAILBOX.INFO`` (or another command that needs it) on a missing mailbox."""


class NoSuchMessage(CommandError):
    """``MAILBOX.REPLY`` to an id the mailbox does not hold."""


class MailboxExists(CommandError):
    """``BUSYKEY``: ``MAILBOX.CREATE`` without ``UPDATE`` on an existing mailbox."""


class WrongType(CommandError):
    """``WRONGTYPE``: the key holds another type."""


class CrossSlot(CommandError):
    """``CROSSSLOT``: the command would touch two namespaces (cluster slots)."""


class OutOfMemory(CommandError):
    """``OOM``: the server reached ``maxmemory``; consumers can still drain."""


class Unavailable(MailboxError):
    """Redis could not be reached (after the retry policy's attempts)."""


class CircuitOpen(Unavailable):
    """The circuit breaker is open: the call failed fast without touching Redis."""


class NotReplicated(MailboxError):
    """The message is stored (``.id``) but fewer replicas than asked acknowledged it in time."""

    def __init__(self, text: str, message_id: str) -> None:
        super().__init__(text)
        self.id = message_id


class OutboxFull(MailboxError):
    """The local outbox is full and its policy is to refuse new messages."""


class ProtocolError(MailboxError):
    """A reply had a shape this client does not understand."""


class EncryptionError(MailboxError):
    """Base of the end-to-end encryption errors."""


class MissingKey(EncryptionError):
    """No key to seal for the receiver, or to open a sealed message."""


class DecryptionFailed(EncryptionError):
    """The ciphertext did not authenticate: tampered with, or sealed with another key."""


# (code, fragment of the text after the code, class). The first match wins; fragments are the
# stable parts of the module's texts, so a reworded detail still maps.
_BY_FRAGMENT: tuple[tuple[str, str, type[CommandError]], ...] = (
    ("ERR", "send quota exceeded", QuotaExceeded),
    ("ERR", "mailbox is full", MailboxFull),
    ("ERR", "max-payload-bytes", PayloadTooLarge),
    ("ERR", "max-thread-messages", ThreadLimitReached),
    ("ERR", "no such mailbox", NoSuchMailbox),
    ("ERR", "no such message", NoSuchMessage),
    ("ERR", "unknown option", InvalidArgument),
    ("ERR", "given more than once", InvalidArgument),
    ("ERR", "needs a value", InvalidArgument),
    ("ERR", "must be", InvalidArgument),
    ("ERR", "must not be", InvalidArgument),
    ("ERR", "syntax error", InvalidArgument),
    ("ERR", "invalid message id", InvalidArgument),
    ("ERR", "META", InvalidArgument),
    ("ERR", "topic", InvalidArgument),
    ("ERR", "wildcards", InvalidArgument),
    ("ERR", "unknown", InvalidArgument),
    ("ERR", "needs a hash tag", InvalidArgument),
    ("ERR", "another namespace", InvalidArgument),
    ("ERR", "EPHEMERAL", InvalidArgument),
    ("ERR", "MIN needs BLOCK", InvalidArgument),
)

_BY_CODE: dict[str, type[CommandError]] = {
    "NOPERM": PermissionDenied,
    "BUSYKEY": MailboxExists,
    "WRONGTYPE": WrongType,
    "CROSSSLOT": CrossSlot,
    "OOM": OutOfMemory,
}

# Errors worth another attempt: the server is away, loading, read-only during a failover, short
# of replicas (min-replicas-to-write), busy with a script, or a cluster slot is moving.
# Everything else the server answers is a refusal.
TRANSIENT_CODES = frozenset(
    {
        "LOADING",
        "READONLY",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "UNBLOCKED",
        "BUSY",
        "NOREPLICAS",
    }
)


# Codes redis-py strips off the message, by the exception class it raises for them (for the
# versions of redis-py that do not keep the code in ``status_code``).
_CODE_OF_CLASS: tuple[tuple[type[rex.RedisError], str], ...] = (
    (rex.NoPermissionError, "NOPERM"),
    (rex.OutOfMemoryError, "OOM"),
    (rex.ReadOnlyError, "READONLY"),
    (rex.BusyLoadingError, "LOADING"),
    (rex.ExecAbortError, "EXECABORT"),
    (rex.NoScriptError, "NOSCRIPT"),
    (rex.TryAgainError, "TRYAGAIN"),
    (rex.ClusterCrossSlotError, "CROSSSLOT"),
    (rex.MasterDownError, "MASTERDOWN"),
    (rex.ClusterDownError, "CLUSTERDOWN"),
)


_KEPT_CODES = frozenset(
    {"BUSYKEY", "WRONGTYPE", "UNBLOCKED", "BUSY", "NOREPLICAS", "NOPROTO", "BUSYGROUP", "NOGROUP"}
)


def module_text(err: rex.RedisError) -> str:
    """The error as the server sent it: redis-py strips known codes off the message."""
    msg = str(err)
    code = getattr(err, "status_code", None)
    if not code:
        for cls, name in _CODE_OF_CLASS:
            if isinstance(err, cls):
                code = name
                break
    if not code and type(err) is rex.ResponseError:
        # redis-py keeps the codes it does not know (BUSYKEY, WRONGTYPE) and strips ERR.
        code = None if msg.split(" ", 1)[0] in _KEPT_CODES else "ERR"
    if code and not msg.startswith(str(code) + " "):
        return f"{code} {msg}"
    return msg


def is_transient(err: BaseException) -> bool:
    """True for failures worth retrying (no answer, or a server that is not ready yet)."""
    if isinstance(err, (rex.ConnectionError, rex.TimeoutError)):
        # Wrong credentials are a ConnectionError subclass in redis-py, but no retry fixes them.
        return not isinstance(err, (rex.AuthenticationError, rex.AuthorizationError))
    if isinstance(err, (rex.ReadOnlyError, rex.TryAgainError, rex.ClusterDownError)):
        return True
    if isinstance(err, rex.RedisClusterException):
        return True
    if isinstance(err, rex.ResponseError):
        return module_text(err).split(" ", 1)[0] in TRANSIENT_CODES
    return False


def from_redis(err: rex.RedisError) -> MailboxError:
    """The typed exception for a refusal the server replied with."""
    text = module_text(err)
    code, _, rest = text.partition(" ")
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls(text)
    for want_code, fragment, frag_cls in _BY_FRAGMENT:
        if code == want_code and fragment in rest:
            return frag_cls(text)
    if isinstance(err, rex.ResponseError):
        return CommandError(text)
    return MailboxError(text)

"""Typed Python client for redis-mailbox: durable mailboxes for LLM agents inside Redis.

import redis
from redis_mailbox import Mailbox

mb = Mailbox(redis.Redis(port=6399))
mb.send("{team1}bob", "summarise the paper", priority=5, thread="t1")
with mb.listen("{team1}bob") as stream:
    for msg in stream:
        handle(msg)          # acked when this returns, nacked if it raises
"""

from .aio import AsyncListener, AsyncMailbox, AsyncPipeline, AsyncReceived
from .client import Listener, Mailbox, Pipeline, Received
from .crypto import SEALED_TYPE, Keyring, keys_hash, new_group_key
from .errors import (
    CircuitOpen,
    CommandError,
    CrossSlot,
    DecryptionFailed,
    EncryptionError,
    InvalidArgument,
    MailboxError,
    MailboxExists,
    MailboxFull,
    MissingKey,
    NoSuchMailbox,
    NoSuchMessage,
    NotReplicated,
    OutboxFull,
    OutOfMemory,
    PayloadTooLarge,
    PermissionDenied,
    ProtocolError,
    QuotaExceeded,
    ThreadLimitReached,
    Unavailable,
    WrongType,
)
from .outbox import Outbox, OutboxEntry, Rejected, WhenFull
from .resilience import BreakerState, CircuitBreaker, RetryPolicy
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

__version__ = "0.1.0"

__all__ = [
    "SEALED_TYPE",
    "AsyncListener",
    "AsyncMailbox",
    "AsyncPipeline",
    "AsyncReceived",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "CommandError",
    "CrossSlot",
    "DeadLetter",
    "DecryptionFailed",
    "EncryptionError",
    "Grant",
    "InvalidArgument",
    "Keyring",
    "Listener",
    "Mailbox",
    "MailboxError",
    "MailboxExists",
    "MailboxFull",
    "MailboxInfo",
    "Message",
    "MissingKey",
    "NoSuchMailbox",
    "NoSuchMessage",
    "NotReplicated",
    "OutOfMemory",
    "Outbox",
    "OutboxEntry",
    "OutboxFull",
    "PayloadTooLarge",
    "PermissionDenied",
    "Pipeline",
    "Presence",
    "ProtocolError",
    "Published",
    "Pushed",
    "QuotaExceeded",
    "Received",
    "Rejected",
    "RetryPolicy",
    "Sent",
    "Status",
    "Subscription",
    "ThreadLimitReached",
    "Unavailable",
    "WhenFull",
    "WrongType",
    "keys_hash",
    "new_group_key",
]

"""A small cache of messages already received, for reading them back while Redis is away."""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict

from .types import Message


class MessageCache:
    """The last ``size`` messages seen by read, peek and thread, by mailbox and id.

    What it returns is marked ``stale=True``: the message may have been acked, expired or
    redelivered since it was seen.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], Message] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, messages: list[Message]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            for m in messages:
                key = (m.mailbox or "", m.id)
                self._items[key] = m
                self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, mailbox: str, message_id: str) -> Message | None:
        with self._lock:
            m = self._items.get((mailbox, message_id))
        return None if m is None else dataclasses.replace(m, stale=True)

    def messages(self, mailbox: str, thread: str | None = None) -> list[Message]:
        """The cached messages of a mailbox (of one thread, if given), oldest id first."""
        with self._lock:
            found = [
                m
                for (box, _), m in self._items.items()
                if box == mailbox and (thread is None or m.thread == thread)
            ]
        found.sort(key=lambda m: _id_key(m.id))
        return [dataclasses.replace(m, stale=True) for m in found]

    def forget(self, mailbox: str, ids: list[str]) -> None:
        with self._lock:
            for i in ids:
                self._items.pop((mailbox, i), None)


def _id_key(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0

"""Retries with backoff and a circuit breaker: the client's defences against an unreachable Redis.

Both only ever see transient failures (no answer, a server loading or read-only during a
failover). A refusal of the module (``NOPERM``, a full mailbox, a bad argument) is an answer: it
is neither retried nor counted against the server.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import CircuitOpen


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried.

    Attempt ``n`` (from 1) waits ``min(max_delay, base_delay * exponential_base ** (n - 1))``
    seconds before the next one, spread by ``jitter`` (a fraction: 0.2 waits 80 % to 120 % of
    that). ``max_attempts`` counts the first try: 1 means no retry.
    """

    max_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 2.0
    exponential_base: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        raw = min(self.max_delay, self.base_delay * self.exponential_base ** (attempt - 1))
        spread = 1.0 + self.jitter * (2.0 * rng() - 1.0)
        return max(0.0, raw * spread)


NO_RETRY = RetryPolicy(max_attempts=1)


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Stops calling a Redis that keeps failing, then probes it.

    ``failure_threshold`` consecutive transient failures open it. While open, calls fail at once
    with :class:`CircuitOpen`. After ``recovery_timeout`` seconds the next call goes through as a
    probe (half-open; other calls still fail fast): its success closes the breaker, its failure
    opens it for another ``recovery_timeout``. Shared by threads and by the asyncio client.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        recovery_timeout: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.recovery_timeout = recovery_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            if (
                self._state is BreakerState.OPEN
                and self._clock() - self._opened_at >= self.recovery_timeout
            ):
                return BreakerState.HALF_OPEN
            return self._state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go to Redis now."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return
            if self._state is BreakerState.OPEN:
                waited = self._clock() - self._opened_at
                if waited < self.recovery_timeout:
                    left = self.recovery_timeout - waited
                    raise CircuitOpen(
                        f"circuit open after {self._failures} failures; next probe in {left:.1f}s"
                    )
                self._state = BreakerState.HALF_OPEN
                self._probe_out = False
            if self._probe_out:
                raise CircuitOpen("circuit half-open: a probe call is in flight")
            self._probe_out = True

    def success(self) -> None:
        with self._lock:
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._probe_out = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probe_out = False
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold
            ):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self.opened_count += 1

    def neutral(self) -> None:
        """The call got an answer that says nothing about health (a refusal): release a probe."""
        self.success()

"""How the clients' calls wait their turn, and how long they wait before trying a read again.

A client paces each call under a per-minute budget and holds a slot while the call is in flight, both
under a name that says whose limit it is: `xero-<tenantId>-calls`, `xero-<tenantId>-in-flight`,
`autotask-<integration>-<endpoint>`. Where the count is kept is a `CallLimits`:

- `LocalLimits` (the default of every client) keeps it in this process: a rolling minute and a semaphore
  per name, on an injectable clock and sleep;
- `ledger.limits.LedgerLimits` keeps it in the ledger database, so every process, worker and run that
  shares the ledger keeps one budget per Xero organisation and Autotask endpoint (atx/connections.py
  gives it to the tenants' clients).

The clients know only this protocol: they stay usable on their own, and tests swap the clock and the sleep.
"""
from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class CallLimits(Protocol):
    def pace(self, name: str, per_minute: int) -> float:
        """Wait until one more call under `name` keeps within `per_minute`; returns the seconds waited
        (in the limiter's clock)."""

    def hold(self, name: str, at_once: int) -> AbstractContextManager[None]:
        """A slot of `name`, of which at most `at_once` are held at a time, for as long as the block runs."""


class LocalLimits:
    """CallLimits within this process: each name a rolling 60-second window and a bounded semaphore.

    One instance shared by several clients makes them share their limits (the tenants' clients in one
    process); a client given none gets its own."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._sent: dict[str, deque[float]] = {}
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self.waited = 0.0

    def pace(self, name: str, per_minute: int) -> float:
        waited = 0.0
        while True:
            with self._lock:
                sent = self._sent.setdefault(name, deque())
                now = self._clock()
                while sent and now - sent[0] >= 60:
                    sent.popleft()
                if len(sent) < max(per_minute, 1):
                    sent.append(now)
                    self.waited += waited
                    return waited
                delay = 60 - (now - sent[0])
            waited += delay
            self._sleep(delay)

    @contextmanager
    def hold(self, name: str, at_once: int) -> Iterator[None]:
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                slot = self._slots[name] = threading.BoundedSemaphore(max(at_once, 1))
        with slot:
            yield

    def __repr__(self) -> str:
        return "LocalLimits()"


# ---- waiting before a read is tried again ------------------------------------------------------------
_jitter = random.Random()


def backoff(attempt: int, *, base: float, cap: float, retry_after: float | None = None,
            rand: Callable[[], float] = _jitter.random) -> float:
    """Seconds to wait before try `attempt + 1` (attempt counts from 0).

    The server's Retry-After when it sent one: it knows when it will answer again, and a wait shorter than
    that only costs another refusal. Otherwise exponential from `base`, capped at `cap`, and jittered over
    the upper half of the step, so processes that failed together do not all come back together."""
    if retry_after is not None:
        return max(retry_after, 0.0)
    step = min(cap, base * 2 ** attempt)
    return step * (0.5 + 0.5 * rand())

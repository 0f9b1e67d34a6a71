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

`paced` counts a call's minute from its answer, not from its sending: the server counted the call at some
moment in between, so a slot used again 60 seconds after the answer is used again at least 60 seconds after
the server counted it, whatever the network's delays. N slots then never put more than N calls in any of the
server's minutes, rolling or fixed, which lets a client pace close to the server's own limit.
"""
from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class CallLimits(Protocol):
    def pace(self, name: str, per_minute: int) -> float:
        """Wait until one more call under `name` keeps within `per_minute`; returns the seconds waited
        (in the limiter's clock)."""

    def hold(self, name: str, at_once: int) -> AbstractContextManager[None]:
        """A slot of `name`, of which at most `at_once` are held at a time, for as long as the block runs."""

    def paced(self, name: str, per_minute: int) -> AbstractContextManager[float]:
        """As `pace`, for a call made inside the block (which receives the seconds waited): its minute counts
        from when the block ends, when the answer is in."""


class LocalLimits:
    """CallLimits within this process: each paced name N slots, each free again 60 seconds after its call,
    and each held name a bounded semaphore.

    One instance shared by several clients makes them share their limits (the tenants' clients in one
    process); a client given none gets its own."""

    # How often a pacer with every slot in flight asks again (seconds of the clock): no slot says in
    # advance when its answer comes.
    IN_FLIGHT_POLL = 0.25

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._free_at: dict[str, list[float]] = {}  # per name, when each slot comes free (inf: in flight)
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self.waited = 0.0

    def _take(self, name: str, per_minute: int, in_flight: bool) -> tuple[int, float]:
        waited = 0.0
        while True:
            with self._lock:
                slots = self._free_at.setdefault(name, [])
                now = self._clock()
                count = max(per_minute, 1)
                while len(slots) < count:
                    slots.append(now - 60)
                free = [n for n in range(count) if slots[n] <= now]
                if free:
                    slot = min(free, key=lambda n: (slots[n], n))
                    slots[slot] = float("inf") if in_flight else now + 60
                    self.waited += waited
                    return slot, waited
                soonest = min(slots[:count])
                delay = soonest - now if soonest != float("inf") else self.IN_FLIGHT_POLL
            waited += delay
            self._sleep(delay)

    def pace(self, name: str, per_minute: int) -> float:
        return self._take(name, per_minute, in_flight=False)[1]

    @contextmanager
    def paced(self, name: str, per_minute: int) -> Iterator[float]:
        slot, waited = self._take(name, per_minute, in_flight=True)
        try:
            yield waited
        finally:
            with self._lock:
                self._free_at[name][slot] = self._clock() + 60

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

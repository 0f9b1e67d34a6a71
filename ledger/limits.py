"""Call limits kept in the ledger database, so that every process, worker and run that uses the ledger keeps
them together: Xero's calls a minute and calls in flight per organisation, Autotask's requests in flight per
integration and endpoint. It is the `CallLimits` of clients/limits.py that atx/connections.py gives the
tenants' clients.

A limit of N is N rows of `call_slot` (made the first time the limit is used; a process that loses the
race to make one finds it made). A call takes a free slot, one whose `busy_until` has passed, with one
conditional UPDATE; the database applies it atomically (SQLite's write lock; PostgreSQL re-checks the
condition on the row it locks), so two processes can never take the same slot and never pass the limit
together, without a lock held across any call:

- `pace`: the slot stays busy for 60 seconds after the call. N slots are then exactly "at most N calls in
  any 60 seconds", a rolling minute: a run's first N calls go at once, and a long run goes at N a minute.
  `paced` keeps it busy while the call is in flight (leased, as `hold`'s) and then 60 seconds from the
  answer: Xero counted the call before it answered, so a slot is used again only once Xero's minute of
  its last call has passed, whatever the network's delays.
- `hold`: the slot stays busy while the call is in flight and is freed when it ends; its lease
  (`lease_seconds`, longer than any call may take) frees it when the process died during the call.

Time is the tenants' clock (epoch seconds of its `now`), so a test's compressed clock paces exactly as the
system clock does, and a dead process's slots come back by the passing of time alone.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ledger.models import CallSlot

MINUTE = 60.0
# Longer than any call may take (Xero's read timeout is 60 s and its connect timeout 10 s, Autotask's 30 s).
LEASE_SECONDS = 150.0
# A call waiting for a slot in flight asks again this often (seconds of the clock): slots in flight come
# free when a call ends, which no row says in advance.
HOLD_POLL_SECONDS = 0.25

_TABLE = CallSlot.__table__


def _epoch_now() -> float:
    return time.time()


class LedgerLimits:
    def __init__(self, ledger, *, now: Callable[[], float] = _epoch_now, sleep: Callable[[float], None] = time.sleep,
                 lease_seconds: float = LEASE_SECONDS):
        """`now`: epoch seconds of the tenants' clock; `sleep`: how a wait for a slot is made."""
        self._ledger, self._now, self._sleep = ledger, now, sleep
        self.lease_seconds = lease_seconds
        self._made: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.waited = 0.0

    def pace(self, name: str, per_minute: int) -> float:
        count = max(int(per_minute), 1)
        self._ensure(name, count)
        waited = 0.0
        while True:
            now = self._now()
            if self._take(name, count, now, until=now + MINUTE, holder=None):
                with self._lock:
                    self.waited += waited
                return waited
            delay = self._next_free(name, count, now)
            if delay > 0:  # otherwise another process took the free slot first: try the next at once
                waited += delay
                self._sleep(delay)

    @contextmanager
    def paced(self, name: str, per_minute: int) -> Iterator[float]:
        count = max(int(per_minute), 1)
        self._ensure(name, count)
        holder = uuid.uuid4().hex
        waited = 0.0
        while True:
            now = self._now()
            # In flight until the answer; the lease frees it should this process die during the call.
            if self._take(name, count, now, until=now + MINUTE + self.lease_seconds, holder=holder):
                break
            delay = self._next_free(name, count, now)
            if delay > 0:
                delay = min(delay, MINUTE)  # a slot in flight may be freed sooner than its lease says
                waited += delay
                self._sleep(delay)
        with self._lock:
            self.waited += waited
        try:
            yield waited
        finally:
            with self._ledger.engine.begin() as conn:
                conn.execute(update(_TABLE).where(_TABLE.c.name == name, _TABLE.c.holder == holder)
                             .values(busy_until=self._now() + MINUTE, holder=None))

    @contextmanager
    def hold(self, name: str, at_once: int) -> Iterator[None]:
        count = max(int(at_once), 1)
        self._ensure(name, count)
        holder = uuid.uuid4().hex
        while True:
            now = self._now()
            if self._take(name, count, now, until=now + self.lease_seconds, holder=holder):
                break
            delay = self._next_free(name, count, now)
            if delay > 0:
                self._sleep(min(delay, HOLD_POLL_SECONDS))
        try:
            yield
        finally:
            with self._ledger.engine.begin() as conn:
                conn.execute(update(_TABLE).where(_TABLE.c.name == name, _TABLE.c.holder == holder)
                             .values(busy_until=0.0, holder=None))

    # ---- the rows --------------------------------------------------------------------------------------
    def _take(self, name: str, count: int, now: float, *, until: float, holder: str | None) -> bool:
        """Take the longest-free slot of the limit's first `count`; False when none is free (or another
        process took the one this saw free)."""
        free = (select(_TABLE.c.slot)
                .where(_TABLE.c.name == name, _TABLE.c.slot < count, _TABLE.c.busy_until <= now)
                .order_by(_TABLE.c.busy_until, _TABLE.c.slot).limit(1).scalar_subquery())
        # One statement, its own short transaction: its condition decides, not anything read before it.
        with self._ledger.engine.begin() as conn:
            done = conn.execute(update(_TABLE)
                                .where(_TABLE.c.name == name, _TABLE.c.slot == free, _TABLE.c.busy_until <= now)
                                .values(busy_until=until, holder=holder))
            return done.rowcount == 1

    def _next_free(self, name: str, count: int, now: float) -> float:
        """Seconds until the first of the limit's slots comes free (0 or less: one is free now)."""
        with self._ledger.engine.connect() as conn:
            soonest = conn.execute(select(func.min(_TABLE.c.busy_until))
                                   .where(_TABLE.c.name == name, _TABLE.c.slot < count)).scalar()
        return 0.0 if soonest is None else float(soonest) - now

    def _ensure(self, name: str, count: int) -> None:
        """The limit's first `count` slots exist (made at most once per process; idempotent across them)."""
        with self._lock:
            if (name, count) in self._made:
                return
        for _ in range(3):
            with self._ledger.engine.connect() as conn:
                have = set(conn.execute(select(_TABLE.c.slot).where(_TABLE.c.name == name, _TABLE.c.slot < count))
                           .scalars())
            missing = [{"name": name, "slot": n, "busy_until": 0.0, "holder": None}
                       for n in range(count) if n not in have]
            if not missing:
                break
            try:
                with self._ledger.engine.begin() as conn:
                    conn.execute(insert(_TABLE), missing)
                break
            except IntegrityError:
                continue  # another process made some of them first: read again, make the rest
        with self._lock:
            self._made.add((name, count))

    def slots(self, name: str) -> int:
        """How many slots the limit has in the ledger (0: never used)."""
        with self._ledger.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE).where(_TABLE.c.name == name)).scalar())

    def __repr__(self) -> str:
        return "LedgerLimits()"

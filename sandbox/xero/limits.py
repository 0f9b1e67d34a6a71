"""Xero's API rate limits, on the sandbox clock.

Per connection (app + organisation): 60 calls a minute, 5,000 a day, 5 in flight at once; per app:
10,000 calls a minute across all organisations. Windows are fixed and start with the first call in
them, so each organisation's window resets at its own time, as Xero's do.
"""
from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass

from sandbox.clock import Clock

MINUTE = 60.0
DAY = 86_400.0


@dataclass(frozen=True)
class XeroLimits:
    per_minute: int = 60
    per_day: int = 5000
    concurrent: int = 5
    app_per_minute: int = 10_000


class _Window:
    """A fixed window counter: `limit` calls from the window's first call until `length` later."""

    def __init__(self, limit: int, length: float):
        self.limit = limit
        self.length = length
        self.started: float | None = None
        self.used = 0

    def _roll(self, now: float) -> None:
        if self.started is None or now >= self.started + self.length:
            self.started = now
            self.used = 0

    def full(self, now: float) -> bool:
        self._roll(now)
        return self.used >= self.limit

    def take(self, now: float) -> None:
        self._roll(now)
        self.used += 1

    def remaining(self, now: float) -> int:
        self._roll(now)
        return max(self.limit - self.used, 0)

    def retry_after(self, now: float) -> int:
        assert self.started is not None
        return max(math.ceil(self.started + self.length - now), 1)


@dataclass(frozen=True)
class Admission:
    """The outcome of asking for one call: admitted, or the problem and how long to wait."""

    admitted: bool
    headers: dict[str, str]
    problem: str | None = None  # minute | day | concurrent | appminute
    retry_after: int | None = None


class RateLimiter:
    def __init__(self, clock: Clock, limits: XeroLimits | None = None):
        self.clock = clock
        self.limits = limits or XeroLimits()
        self._lock = threading.Lock()
        self._minute: dict[tuple[str, str], _Window] = {}
        self._day: dict[tuple[str, str], _Window] = {}
        self._app_minute: dict[str, _Window] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        # Calls answered 429, by problem (minute, day, concurrent, appminute): what tests assert never happened.
        self.refused: Counter[str] = Counter()
        # Calls admitted in each of a connection's minutes, in order: how close a client paces to the limit.
        self._minutes: dict[tuple[str, str], list[list[float]]] = {}

    def set_limits(self, limits: XeroLimits) -> None:
        """Change the limits at runtime; counts so far are kept."""
        with self._lock:
            self.limits = limits
            for window in self._minute.values():
                window.limit = limits.per_minute
            for window in self._day.values():
                window.limit = limits.per_day
            for window in self._app_minute.values():
                window.limit = limits.app_per_minute

    def admit(self, client_id: str, tenant_id: str) -> Admission:
        """Count one call, or refuse it. An admitted call must be `release`d when its response is sent."""
        key = (client_id, tenant_id)
        now = self.clock.monotonic()
        with self._lock:
            minute = self._minute.setdefault(key, _Window(self.limits.per_minute, MINUTE))
            day = self._day.setdefault(key, _Window(self.limits.per_day, DAY))
            app_minute = self._app_minute.setdefault(client_id, _Window(self.limits.app_per_minute, MINUTE))
            # A refused call is not counted: Xero did nothing with it.
            problem, retry_after = None, None
            if day.full(now):
                problem, retry_after = "day", day.retry_after(now)
            elif app_minute.full(now):
                problem, retry_after = "appminute", app_minute.retry_after(now)
            elif minute.full(now):
                problem, retry_after = "minute", minute.retry_after(now)
            elif self._in_flight.get(key, 0) >= self.limits.concurrent:
                problem = "concurrent"
            if problem is None:
                for window in (minute, day, app_minute):
                    window.take(now)
                minutes = self._minutes.setdefault(key, [])
                if not minutes or minutes[-1][0] != minute.started:
                    minutes.append([minute.started, 0])
                minutes[-1][1] = minute.used
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
            else:
                self.refused[problem] += 1
            headers = {
                "X-DayLimit-Remaining": str(day.remaining(now)),
                "X-MinLimit-Remaining": str(minute.remaining(now)),
                "X-AppMinLimit-Remaining": str(app_minute.remaining(now)),
            }
        if problem is None:
            return Admission(True, headers)
        headers["X-Rate-Limit-Problem"] = problem
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return Admission(False, headers, problem, retry_after)

    def minute_counts(self, tenant_id: str) -> list[int]:
        """Calls admitted in each minute window of the organisation so far, oldest first (every app's)."""
        with self._lock:
            return [int(used) for (_, tenant), minutes in self._minutes.items() if tenant == tenant_id
                    for _, used in minutes]

    def busiest_minute(self, tenant_id: str) -> int:
        """The most calls one minute window of the organisation admitted."""
        return max(self.minute_counts(tenant_id), default=0)

    def release(self, client_id: str, tenant_id: str) -> None:
        key = (client_id, tenant_id)
        with self._lock:
            self._in_flight[key] = max(self._in_flight.get(key, 0) - 1, 0)

    def in_flight(self, client_id: str, tenant_id: str) -> int:
        with self._lock:
            return self._in_flight.get((client_id, tenant_id), 0)

"""Time for the simulators, injectable so tests can compress an hour into a moment.

Both simulators read time only through a `Clock`. `SystemClock` follows the wall clock;
`ManualClock` stands still until a test advances it.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""

    def monotonic(self) -> float:
        """Seconds, for windows and budgets."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told: `advance(seconds=3600)` drains an hourly window."""

    def __init__(self, start: datetime | None = None):
        self._lock = threading.Lock()
        self._now = start or datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
        self._mono = 1_000_000.0

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

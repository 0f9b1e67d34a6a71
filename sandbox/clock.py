"""Time for the simulators, injectable so tests can compress an hour into a moment.

Both simulators read time only through a `Clock`. `SystemClock` follows the wall clock;
`ManualClock` stands still until a test advances it; `ScaledClock` runs a steady number of times
faster than the wall clock, and agrees across processes (so several workers can share it).
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


class ScaledClock:
    """A clock `speed` times as fast as the wall clock, from `start` at the wall-clock moment `origin`.

    Every process given the same three values reads the same time, so a sandbox in one process and flow
    runs in others agree on it: with speed=20 a minute's rate limit passes in three real seconds."""

    def __init__(self, speed: float, *, start: datetime | None = None, origin: float | None = None):
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = float(speed)
        self.start = start or datetime.now(timezone.utc).replace(microsecond=0)
        self.origin = time.time() if origin is None else origin

    def _elapsed(self) -> float:
        return (time.time() - self.origin) * self.speed

    def now(self) -> datetime:
        from datetime import timedelta

        return self.start + timedelta(seconds=self._elapsed())

    def monotonic(self) -> float:
        return 1_000_000.0 + self._elapsed()

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock."""
        time.sleep(max(seconds, 0.0) / self.speed)

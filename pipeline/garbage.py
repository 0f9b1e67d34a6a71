"""Python's cyclic garbage collector, spaced out while a run holds a window's records.

A run holds every record of its window at once: at 10,000 invoices, millions of objects (billing items,
frame cells, drafts, plans). With the default thresholds (700, 10, 10) the collector kept scanning all of
them, thousands of collections and a seventh of a 10,000-invoice sync's CPU, for almost no garbage: what
a run lets go of is freed by reference counting, not by the collector. While any run is in progress in
the process the thresholds are raised, then put back as they were; the collector still runs, less often.
"""
from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Young objects before a first-generation collection, and collections before each older one is collected.
RUN_THRESHOLDS = (100_000, 50, 1_000)

_lock = threading.Lock()
_runs = 0
_before: tuple[int, int, int] | None = None


@contextmanager
def spaced_out_collections() -> Iterator[None]:
    """Raise the collector's thresholds for the duration (runs nest: a backfill's chunks, runs in threads)."""
    global _runs, _before
    with _lock:
        if _runs == 0:
            _before = gc.get_threshold()
            gc.set_threshold(*RUN_THRESHOLDS)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _before is not None:
                gc.set_threshold(*_before)
                _before = None

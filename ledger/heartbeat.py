"""Heartbeats of the flow runs that claim documents, kept in the ledger database.

A `sending` row names the run that claimed it. Whether that run can still record the answer is what the
next run must know before it may look the row up in Xero and move it on: a run killed with SIGKILL
stays RUNNING in Prefect for good, so Prefect's state cannot tell, and a lease long enough for the
slowest batch keeps documents blocked for minutes. Instead each run beats every few seconds from a
thread of its own while it runs (`beating`), and ends its heartbeat when it finishes, however it
finishes short of being killed. A run that has ended, or whose last beat is older than the tenant's
heartbeat timeout, is dead: its `sending` rows are resolved by the next run.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from ledger.models import RunHeartbeat, aware, utc_now

log = logging.getLogger(__name__)




@dataclass(frozen=True)
class Beat:
    """What the ledger knows of a run's heartbeat."""

    run_id: str
    flow: str
    beat_at: datetime
    ended_at: datetime | None

    def dead(self, timeout: timedelta, now: datetime) -> bool:
        return self.ended_at is not None or self.beat_at <= now - timeout

    def silent_for(self, now: datetime) -> timedelta:
        return now - self.beat_at


class RunHeartbeats:
    def __init__(self, ledger):
        self._ledger = ledger

    def beat(self, run_id: str, tenant: str, flow: str) -> None:
        now = utc_now()
        for _ in range(2):  # a racing first insert loses once to the primary key, then updates
            with self._ledger.session() as s:
                row = s.get(RunHeartbeat, run_id)
                if row is None:
                    s.add(RunHeartbeat(run_id=run_id, tenant=tenant, flow=flow, started_at=now, beat_at=now))
                else:
                    row.beat_at, row.ended_at = now, None
                try:
                    s.commit()
                    return
                except IntegrityError:
                    s.rollback()

    def end(self, run_id: str) -> None:
        with self._ledger.session() as s:
            s.execute(update(RunHeartbeat).where(RunHeartbeat.run_id == run_id).values(ended_at=utc_now()))
            s.commit()

    def of(self, run_ids: Iterable[str]) -> dict[str, Beat]:
        wanted = sorted({r for r in run_ids if r})
        if not wanted:
            return {}
        with self._ledger.session() as s:
            rows = s.scalars(select(RunHeartbeat).where(RunHeartbeat.run_id.in_(wanted))).all()
        return {r.run_id: Beat(r.run_id, r.flow, aware(r.beat_at), aware(r.ended_at)) for r in rows}

    @contextlib.contextmanager
    def beating(self, run_id: str, tenant: str, flow: str, *, every: float) -> Iterator[None]:
        """Beat now and every `every` seconds until the block ends, then end the heartbeat. A nested block
        of the same run (a flow calling another in-process) shares the outer one's thread."""
        with _RUNNING_LOCK:
            nested = run_id in _RUNNING
            _RUNNING.add(run_id)
        if nested:
            yield
            return
        self.beat(run_id, tenant, flow)
        stop = threading.Event()

        def keep_beating() -> None:
            while not stop.wait(every):
                try:
                    self.beat(run_id, tenant, flow)
                except OperationalError as exc:  # a busy database: the next beat tries again
                    log.warning("heartbeat of run %s not written: %s", run_id, exc)

        thread = threading.Thread(target=keep_beating, name=f"heartbeat-{run_id[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=every + 5)
            with _RUNNING_LOCK:
                _RUNNING.discard(run_id)
            self.end(run_id)


_RUNNING: set[str] = set()
_RUNNING_LOCK = threading.Lock()

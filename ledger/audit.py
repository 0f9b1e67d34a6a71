"""The audit trail in the ledger database: every write the sync sent to Xero and Autotask, per run.

The clients hand each write to a `TenantAuditSink` as a redacted `core.audit.WriteEntry`; the sink adds the
tenant and the Prefect flow run it was made in, and inserts it in one short transaction of its own (a
write is one call for a batch of up to 50 documents, so an entry costs little next to the call). Entries
are kept for the tenant's `audit_days` (90 by default): every run starts by deleting the tenant's older
ones, one DELETE on the (tenant, at) index.

An entry that cannot be written (the database busy or gone) is logged and dropped: the write it describes
has happened, and failing the sync over its audit entry would turn a document Xero took into one whose
outcome looks unknown.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError

from core.audit import WriteEntry, outcome_line, to_json
from ledger.models import AuditEntry

log = logging.getLogger(__name__)
DEFAULT_AUDIT_DAYS = 90


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class KeptWrite:
    """One stored entry, read back."""

    id: int
    run_id: str | None
    tenant: str
    api: str
    method: str
    path: str
    status: int | None
    request: dict
    response: dict
    at: datetime
    elapsed_ms: int | None

    @property
    def outcome(self) -> str:
        return outcome_line(self.response)


class AuditTrail:
    def __init__(self, ledger):
        self._ledger = ledger

    def add(self, entries: list[WriteEntry], *, tenant: str, run_id: str | None) -> None:
        """Insert the entries in one transaction."""
        if not entries:
            return
        with self._ledger.session() as s:
            s.add_all([AuditEntry(run_id=run_id, tenant=tenant, api=e.api, method=e.method, path=e.path,
                                  status=e.status, request=to_json(e.request), response=to_json(e.response),
                                  at=e.at, elapsed_ms=e.elapsed_ms) for e in entries])
            s.commit()

    def of_run(self, run_id: str, tenant: str | None = None) -> list[KeptWrite]:
        """A run's writes in the order they were sent."""
        query = select(AuditEntry).where(AuditEntry.run_id == run_id)
        if tenant is not None:
            query = query.where(AuditEntry.tenant == tenant)
        with self._ledger.session() as s:
            rows = s.scalars(query.order_by(AuditEntry.at, AuditEntry.id)).all()
        return [KeptWrite(r.id, r.run_id, r.tenant, r.api, r.method, r.path, r.status, json.loads(r.request),
                          json.loads(r.response), _aware(r.at), r.elapsed_ms) for r in rows]

    def count(self, run_id: str) -> int:
        with self._ledger.session() as s:
            return s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.run_id == run_id)) or 0

    def purge(self, tenant: str, days: int, now: datetime | None = None) -> int:
        """Delete the tenant's entries older than `days`; returns how many went."""
        cutoff = (now or _now()) - timedelta(days=days)
        with self._ledger.session() as s:
            result = s.execute(delete(AuditEntry).where(AuditEntry.tenant == tenant, AuditEntry.at < cutoff))
            s.commit()
            return result.rowcount or 0

    def sink(self, tenant: str, run_id: Callable[[], str | None]) -> "TenantAuditSink":
        return TenantAuditSink(self, tenant, run_id)


class TenantAuditSink:
    """What a tenant's clients record their writes in (core.audit.AuditSink). `run_id` says which flow run a
    write belongs to when it is made: clients outlive runs (one Xero gateway per tenant and process)."""

    def __init__(self, trail: AuditTrail, tenant: str, run_id: Callable[[], str | None]):
        self._trail, self.tenant, self._run_id = trail, tenant, run_id

    def record(self, entry: WriteEntry) -> None:
        try:
            self._trail.add([entry], tenant=self.tenant, run_id=self._run_id())
        except SQLAlchemyError as exc:
            log.warning("the audit entry of %s %s (%s) was not kept: %s", entry.method, entry.path, self.tenant,
                        type(exc).__name__)

    def __repr__(self) -> str:
        return f"TenantAuditSink({self.tenant!r})"

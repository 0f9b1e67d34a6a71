"""The sync ledger: our own record of what reached the target system (Xero).

Xero's Idempotency-Key is remembered for minutes; this table is remembered for good. One row per
(tenant, kind, source system, source id) says where that document stands:

    pending ──claim──► sending ──► synced
       ▲                  │  └───► set_aside (reason, fix) ──► claimed again on the next run
       └──── not in Xero ◄┘ (outcome unknown: looked up by its natural key before anything is re-sent)

    set_aside / pending ──`atx ledger skip`──► skipped (never sent) ──`atx ledger resend`──► pending

Rows are claimed with a conditional update on `version`, so two overlapping runs can never both send
the same document, even without Prefect's concurrency limit.

The schema is general: every document kind (invoices, credit notes, contacts, later bills, purchase
orders and payments) shares these columns, and what only one kind needs lives in `facts` (JSON). The
schema is changed only by the Alembic revisions in ledger/migrations/versions; `Ledger` upgrades the
database to the newest one when it starts.
"""
from __future__ import annotations

from datetime import date, datetime, timezone

from sqlalchemy import JSON, Date, DateTime, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utc_now() -> datetime:
    """The one clock every ledger table's timestamps come from."""
    return datetime.now(timezone.utc)


def aware(value: datetime | None) -> datetime | None:
    """A stored moment as an aware UTC datetime: SQLite hands back naive ones even for timezone=True columns."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class Base(DeclarativeBase):
    pass


class DocState:
    PENDING = "pending"
    SENDING = "sending"
    SYNCED = "synced"
    SET_ASIDE = "set_aside"
    # The source document was voided and its Xero copy voided (or deleted while DRAFT) by this sync.
    VOIDED = "voided"
    # A person said this document must never reach Xero (`atx ledger skip`, with the reason); only
    # `atx ledger resend` takes it back. Never claimed, so never sent, whatever a run plans for it.
    SKIPPED = "skipped"


class NaturalKeyKind:
    """What a row's natural key is, so a lookup after a lost answer knows how to ask Xero for it."""

    NUMBER = "number"                  # the document number we sent (InvoiceNumber, CreditNoteNumber, ...)
    URL = "url"                        # the link back to the source document (Xero numbers invoices)
    REFERENCE = "reference"            # "Reference:<text>" (Xero numbers credit notes, which have no Url)
    CONTACT_NUMBER = "contact_number"  # a contact's ContactNumber


class SyncRecord(Base):
    __tablename__ = "sync_ledger"
    __table_args__ = (UniqueConstraint("tenant", "kind", "source", "source_id", name="uq_ledger_document"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    # "invoice", "credit_note", "contact"; later "bill", "purchase_order", "payment".
    kind: Mapped[str] = mapped_column(String(30))
    # The source system and its id of the document (text: not every source numbers with integers).
    source: Mapped[str] = mapped_column(String(30), default="autotask", server_default="autotask")
    source_id: Mapped[str] = mapped_column(Text)
    source_number: Mapped[str | None] = mapped_column(String(100))
    # The key Xero can be asked about when an answer was lost, and what kind of key it is (NaturalKeyKind).
    natural_key: Mapped[str | None] = mapped_column(String(255))
    natural_key_kind: Mapped[str | None] = mapped_column(String(20))
    document_date: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(20), index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    # The document in the target system (Xero): its id, number, and status and total as last seen
    # (the total as text, so the Decimal survives every database exactly).
    target_id: Mapped[str | None] = mapped_column(String(64))
    target_number: Mapped[str | None] = mapped_column(String(255))
    target_status: Mapped[str | None] = mapped_column(String(20))
    target_total: Mapped[str | None] = mapped_column(String(40))
    # The Xero contact the document was sent to (the Url lookup asks for that contact's documents).
    contact_id: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    fix: Mapped[str | None] = mapped_column(Text)
    # A note for a person on a synced document (changed after approval, voided but paid, ...).
    attention: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Facts only some kinds have, e.g. {"attached_at": "2026-11-24T06:00:00+00:00"} (the PDF attached).
    facts: Mapped[dict] = mapped_column(JSON, default=dict, server_default=text("'{}'"))

    @property
    def attached_at(self) -> datetime | None:
        """When the source PDF was attached to the Xero document (None: not yet); kept in `facts`."""
        value = (self.facts or {}).get("attached_at")
        if not value:
            return None
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class SyncWatermark(Base):
    """Where the last completed run of a tenant's flow ended, so the next one picks up there."""

    __tablename__ = "sync_watermark"
    __table_args__ = (UniqueConstraint("tenant", "flow", name="uq_watermark"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100))
    flow: Mapped[str] = mapped_column(String(50))  # the flow's name: "invoices", ...
    high_water: Mapped[date] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WindowState:
    RUNNING = "running"
    DONE = "done"


class SyncWindow(Base):
    """One date window of a tenant's flow worked through on its own (a backfill goes window by window)."""

    __tablename__ = "sync_window"
    __table_args__ = (UniqueConstraint("tenant", "flow", "window_start", "window_end", name="uq_window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100))
    flow: Mapped[str] = mapped_column(String(50))
    window_start: Mapped[date] = mapped_column(Date)
    window_end: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(20))  # WindowState
    run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    facts: Mapped[dict] = mapped_column(JSON, default=dict, server_default=text("'{}'"))


class CallSlot(Base):
    """One slot of a call limit that every process using this ledger shares (ledger/limits.py): a limit of N
    has N rows, and a call takes a free one (`busy_until` passed) with a conditional update. A minute's pace
    keeps a slot busy for 60 seconds after its call; a call in flight keeps it until the call ends (or its
    lease runs out, when the process died). Times are epoch seconds of the tenants' clock."""

    __tablename__ = "call_slot"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # xero-<tenantId>-calls, autotask-...-invoices
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    busy_until: Mapped[float] = mapped_column(Float, default=0.0)
    holder: Mapped[str | None] = mapped_column(String(32), nullable=True)  # who holds a call in flight


class XeroCallUsage(Base):
    """The calls made to one Xero organisation on one UTC day, by every process and tenant of it: the count
    the tenant's daily call budget (`xero.daily_call_budget`) is checked against. The gateway takes calls
    from it a few at a time with a conditional update (ledger/usage.py), so processes never lose each
    other's counts and never pass the budget together."""

    __tablename__ = "xero_call_usage"
    __table_args__ = (UniqueConstraint("tenant_id", "day", name="uq_xero_call_usage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))  # the Xero organisation's tenantId
    day: Mapped[date] = mapped_column(Date)  # the UTC calendar day
    calls: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoredToken(Base):
    """A Xero connection's token set. Refreshes are serialised on this row (see clients/xero)."""

    __tablename__ = "xero_token"

    connection: Mapped[str] = mapped_column(String(100), primary_key=True)
    token_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunHeartbeat(Base):
    """A flow run that claims documents beats here while it runs (ledger/heartbeat.py). Its `sending` rows
    are presumed dead once it has ended, or has not beaten for the tenant's heartbeat timeout: a process
    killed with SIGKILL leaves its Prefect run RUNNING for good, but its heartbeat stops at once."""

    __tablename__ = "run_heartbeat"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    flow: Mapped[str] = mapped_column(String(50))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditEntry(Base):
    """One write request the sync sent to Xero or Autotask, and its answer, kept for the tenant's `audit_days`
    (ledger/audit.py). Redacted before it gets here (core/audit.py): no credential is ever in a row."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_run_id", "run_id"),
        Index("ix_audit_entries_tenant_at", "tenant", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(64))  # the Prefect flow run; None outside a run
    tenant: Mapped[str] = mapped_column(String(100))
    api: Mapped[str] = mapped_column(String(20))  # "xero", "autotask"
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)  # None: no answer came back
    request: Mapped[str] = mapped_column(Text)   # JSON: {"headers": ..., "body": ...}
    response: Mapped[str] = mapped_column(Text)  # JSON: {"body": ids, statuses, errors} or {"error": ...}
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    elapsed_ms: Mapped[int | None] = mapped_column(Integer)

"""The sync ledger: our own record of what reached Xero.

Xero's Idempotency-Key is remembered for minutes; this table is remembered for good. One row per
(tenant, document type, Autotask id) says where that document stands:

    pending ──claim──► sending ──► synced
       ▲                  │  └───► set_aside (reason, fix) ──► claimed again on the next run
       └──── not in Xero ◄┘ (outcome unknown: looked up by its natural key before anything is re-sent)

Rows are claimed with a conditional update on `version`, so two overlapping runs can never both send
the same document, even without Prefect's concurrency limit.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class DocState:
    PENDING = "pending"
    SENDING = "sending"
    SYNCED = "synced"
    SET_ASIDE = "set_aside"
    # The Autotask invoice was voided and its Xero copy voided (or deleted while DRAFT) by this sync.
    VOIDED = "voided"


class SyncRecord(Base):
    __tablename__ = "sync_ledger"
    __table_args__ = (UniqueConstraint("tenant", "doc_type", "autotask_id", name="uq_ledger_document"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    doc_type: Mapped[str] = mapped_column(String(30))
    autotask_id: Mapped[int] = mapped_column(BigInteger)
    autotask_number: Mapped[str | None] = mapped_column(String(100))
    # The key Xero can be asked about when an answer was lost (the invoice number we sent).
    natural_key: Mapped[str | None] = mapped_column(String(255))
    document_date: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(20), index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    xero_id: Mapped[str | None] = mapped_column(String(64))
    xero_number: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    run_id: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    fix: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Added after the first release (Ledger adds missing nullable columns on start):
    # the Xero contact the document was sent to (the Url lookup asks for that contact's documents),
    xero_contact_id: Mapped[str | None] = mapped_column(String(64))
    # Xero's status and total as last seen (text, so the Decimal survives every database exactly),
    xero_status: Mapped[str | None] = mapped_column(String(20))
    xero_total: Mapped[str | None] = mapped_column(String(40))
    # when the Autotask PDF was attached to the Xero document (None: not yet),
    attached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # and a note for a person on a synced document (changed after approval, voided but paid, ...).
    attention: Mapped[str | None] = mapped_column(Text)


class SyncWatermark(Base):
    """Where the last completed run of a tenant's flow ended, so the next one picks up there."""

    __tablename__ = "sync_watermark"
    __table_args__ = (UniqueConstraint("tenant", "doc_type", name="uq_watermark"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100))
    doc_type: Mapped[str] = mapped_column(String(30))
    high_water: Mapped[date] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StoredToken(Base):
    """A Xero connection's token set. Refreshes are serialised on this row (see clients/xero)."""

    __tablename__ = "xero_token"

    connection: Mapped[str] = mapped_column(String(100), primary_key=True)
    token_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

"""Ledger test helpers: databases of their own (a SQLite file, a PostgreSQL schema), and a ledger as the
releases before Alembic made it.

`LegacyBase` is a frozen copy of ledger/models.py as those releases had it (the invoice-shaped ledger,
created by `Base.metadata.create_all`, with the nullable columns `_add_missing_columns` added later). It
must never change: it is what existing installations hold.
"""
from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, DateTime, Engine, Integer, String, Text, UniqueConstraint, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class LegacyBase(DeclarativeBase):
    pass


class LegacySyncRecord(LegacyBase):
    __tablename__ = "sync_ledger"
    __table_args__ = (UniqueConstraint("tenant", "doc_type", "autotask_id", name="uq_ledger_document"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    doc_type: Mapped[str] = mapped_column(String(30))
    autotask_id: Mapped[int] = mapped_column(BigInteger)
    autotask_number: Mapped[str | None] = mapped_column(String(100))
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
    xero_contact_id: Mapped[str | None] = mapped_column(String(64))
    xero_status: Mapped[str | None] = mapped_column(String(20))
    xero_total: Mapped[str | None] = mapped_column(String(40))
    attached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attention: Mapped[str | None] = mapped_column(Text)


class LegacySyncWatermark(LegacyBase):
    __tablename__ = "sync_watermark"
    __table_args__ = (UniqueConstraint("tenant", "doc_type", name="uq_watermark"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(100))
    doc_type: Mapped[str] = mapped_column(String(30))
    high_water: Mapped[date] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LegacyStoredToken(LegacyBase):
    __tablename__ = "xero_token"

    connection: Mapped[str] = mapped_column(String(100), primary_key=True)
    token_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# The columns the first release did not have yet (later releases added them on start).
LATE_COLUMNS = ("xero_contact_id", "xero_status", "xero_total", "attached_at", "attention")


def create_legacy_ledger(engine: Engine, *, first_release: bool = False) -> None:
    """The tables as a release before Alembic left them: today's, or the first release's (no late columns)."""
    LegacyBase.metadata.create_all(engine)
    if first_release:
        with engine.begin() as conn:
            for name in LATE_COLUMNS:
                conn.execute(text(f"ALTER TABLE sync_ledger DROP COLUMN {name}"))


def engine_in_schema(url: str, schema: str) -> Engine:
    """A PostgreSQL engine whose every unqualified name (Alembic's too) lives in `schema`."""
    return create_engine(url, connect_args={"options": f"-csearch_path={schema}"})


@contextmanager
def postgres_schema(url: str):
    """A fresh PostgreSQL schema of its own, so parallel test workers never meet; dropped afterwards."""
    schema = f"ledger_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

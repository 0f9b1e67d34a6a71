"""Reading and moving ledger rows. Every state change is a short transaction of its own.

The order of writes is what keeps a document in Xero exactly once:
1. `claim` marks rows `sending` with the batch's idempotency key and commits, before any call to Xero;
2. `record_synced` / `set_aside` store each element's outcome as soon as Xero answers;
3. rows left `sending` by a run that died or lost its answer are `stale`; they are looked up in Xero by
   their natural key, then `record_synced` or `release`d to `pending`, before anything is re-sent.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Engine, create_engine, event, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ledger.models import Base, DocState, SyncRecord, SyncWatermark

# A run that has not recorded an answer within this time is presumed dead; its rows get resolved.
DEFAULT_LEASE = timedelta(minutes=15)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone=True columns.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _row(s: Session, tenant: str, doc_type: str, autotask_id: int) -> SyncRecord | None:
    return s.scalars(
        select(SyncRecord).where(
            SyncRecord.tenant == tenant, SyncRecord.doc_type == doc_type, SyncRecord.autotask_id == autotask_id
        )
    ).one_or_none()


@dataclass(frozen=True)
class Candidate:
    """A document this run wants to send."""

    autotask_id: int
    autotask_number: str | None
    natural_key: str | None
    content_hash: str
    document_date: date | None = None
    contact_id: str | None = None  # the Xero ContactID it is sent to (kept for lookups by Url)


def engine_for_url(url: str) -> Engine:
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        # Several threads and processes share one SQLite file: wait for the lock rather than fail.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.close()

    return engine


class Ledger:
    def __init__(self, engine: Engine):
        self.engine = engine
        Base.metadata.create_all(engine)
        _add_missing_columns(engine)
        self._session = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_connector(cls, connector) -> "Ledger":
        """Build from a prefect-sqlalchemy `SqlAlchemyConnector` block (SQLite or PostgreSQL)."""
        info = connector.connection_info
        url = info.create_url() if hasattr(info, "create_url") else info
        engine = engine_for_url(url.render_as_string(hide_password=False) if hasattr(url, "render_as_string") else str(url))
        return cls(engine)

    def session(self) -> Session:
        return self._session()

    # ---- reading ---------------------------------------------------------------------------
    def records(self, tenant: str, doc_type: str, ids: Iterable[int] | None = None) -> dict[int, SyncRecord]:
        with self.session() as s:
            q = select(SyncRecord).where(SyncRecord.tenant == tenant, SyncRecord.doc_type == doc_type)
            if ids is not None:
                ids = list(ids)
                if not ids:
                    return {}
                q = q.where(SyncRecord.autotask_id.in_(ids))
            return {r.autotask_id: r for r in s.scalars(q)}

    def stale(
        self,
        tenant: str,
        doc_type: str,
        *,
        run_id: str,
        owner_alive: Callable[[str], bool] = lambda run_id: True,
        lease: timedelta = DEFAULT_LEASE,
    ) -> list[SyncRecord]:
        """Rows left `sending` whose answer will never come: this run's own (answer lost), those of
        a run that has finished or crashed, and any whose lease ran out."""
        cutoff = _now() - lease
        with self.session() as s:
            rows = s.scalars(
                select(SyncRecord).where(
                    SyncRecord.tenant == tenant, SyncRecord.doc_type == doc_type, SyncRecord.state == DocState.SENDING
                )
            ).all()
        return [
            r
            for r in rows
            if r.run_id == run_id or _aware(r.claimed_at) <= cutoff or not owner_alive(r.run_id or "")
        ]

    def set_aside_records(self, tenant: str, doc_type: str) -> list[SyncRecord]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(SyncRecord).where(
                        SyncRecord.tenant == tenant,
                        SyncRecord.doc_type == doc_type,
                        SyncRecord.state == DocState.SET_ASIDE,
                    )
                )
            )

    # ---- claiming --------------------------------------------------------------------------
    def claim(
        self,
        tenant: str,
        doc_type: str,
        candidates: Sequence[Candidate],
        *,
        run_id: str,
        idempotency_key: str,
    ) -> list[Candidate]:
        """Mark these documents `sending` for this run; return the ones this run now owns.

        A document already synced, or being sent by another live run, is not claimed. The
        conditional update on `version` makes two racing runs agree on a single owner.
        """
        claimed: list[Candidate] = []
        now = _now()
        for c in candidates:
            with self.session() as s:
                row = _row(s, tenant, doc_type, c.autotask_id)
                if row is None:
                    s.add(
                        SyncRecord(
                            tenant=tenant,
                            doc_type=doc_type,
                            autotask_id=c.autotask_id,
                            autotask_number=c.autotask_number,
                            natural_key=c.natural_key,
                            document_date=c.document_date,
                            state=DocState.SENDING,
                            content_hash=c.content_hash,
                            idempotency_key=idempotency_key,
                            run_id=run_id,
                            claimed_at=now,
                            attempts=1,
                            updated_at=now,
                            version=1,
                            xero_contact_id=c.contact_id,
                        )
                    )
                    try:
                        s.commit()
                        claimed.append(c)
                    except IntegrityError:
                        s.rollback()  # another run inserted it first: it owns the document
                    continue
                if row.state in (DocState.SYNCED, DocState.VOIDED):
                    continue
                if row.state == DocState.SENDING:
                    # In flight in a live run, or stale: either way Xero may hold it, so only a
                    # lookup by natural key (resolve) may move it on, never a second send.
                    continue
                result = s.execute(
                    update(SyncRecord)
                    .where(SyncRecord.id == row.id, SyncRecord.version == row.version)
                    .values(
                        state=DocState.SENDING,
                        autotask_number=c.autotask_number,
                        natural_key=c.natural_key,
                        document_date=c.document_date,
                        content_hash=c.content_hash,
                        idempotency_key=idempotency_key,
                        run_id=run_id,
                        claimed_at=now,
                        attempts=row.attempts + 1,
                        updated_at=now,
                        version=row.version + 1,
                        xero_contact_id=c.contact_id,
                    )
                )
                s.commit()
                if result.rowcount == 1:
                    claimed.append(c)
        return claimed

    # ---- recording outcomes ------------------------------------------------------------------
    def record_synced(
        self, tenant: str, doc_type: str, autotask_id: int, *, xero_id: str, xero_number: str | None,
        xero_status: str | None = None, xero_total=None,
    ) -> None:
        values = {}
        if xero_status is not None:
            values["xero_status"] = xero_status
        if xero_total is not None:
            values["xero_total"] = str(xero_total)
        self._move(
            tenant, doc_type, autotask_id, state=DocState.SYNCED, xero_id=xero_id, xero_number=xero_number,
            reason=None, fix=None, **values,
        )

    def record_updated(
        self, tenant: str, doc_type: str, autotask_id: int, *, content_hash: str, xero_status: str | None,
        xero_total=None,
    ) -> None:
        """A synced document was changed in Xero to match Autotask again (it was still a draft there)."""
        self._move(tenant, doc_type, autotask_id, content_hash=content_hash, xero_status=xero_status,
                   xero_total=None if xero_total is None else str(xero_total), attention=None)

    def record_voided(self, tenant: str, doc_type: str, autotask_id: int, *, xero_status: str) -> None:
        self._move(tenant, doc_type, autotask_id, state=DocState.VOIDED, xero_status=xero_status, attention=None)

    def note(self, tenant: str, doc_type: str, autotask_id: int, attention: str | None, **values) -> None:
        """Leave a note for a person on a document, without changing its state."""
        self._move(tenant, doc_type, autotask_id, attention=attention, **values)

    def mark_attached(self, tenant: str, doc_type: str, autotask_id: int) -> None:
        self._move(tenant, doc_type, autotask_id, attached_at=_now())

    def upsert_synced(
        self, tenant: str, doc_type: str, autotask_id: int, *, xero_id: str, content_hash: str | None,
        autotask_number: str | None = None, xero_number: str | None = None,
    ) -> None:
        """Record a document that needs no claim (a contact: Xero keys it by ContactNumber, so a repeat is
        an update, never a duplicate)."""
        now = _now()
        with self.session() as s:
            row = _row(s, tenant, doc_type, autotask_id)
            if row is None:
                s.add(SyncRecord(
                    tenant=tenant, doc_type=doc_type, autotask_id=autotask_id, autotask_number=autotask_number,
                    natural_key=xero_number, state=DocState.SYNCED, content_hash=content_hash, xero_id=xero_id,
                    xero_number=xero_number, attempts=1, updated_at=now, version=1,
                ))
            else:
                row.state, row.xero_id, row.content_hash = DocState.SYNCED, xero_id, content_hash
                row.xero_number = xero_number or row.xero_number
                row.reason = row.fix = None
                row.updated_at, row.version = now, row.version + 1
            try:
                s.commit()
            except IntegrityError:
                s.rollback()

    def set_aside(
        self,
        tenant: str,
        doc_type: str,
        autotask_id: int,
        *,
        autotask_number: str | None,
        reason: str,
        fix: str,
        content_hash: str | None = None,
        document_date: date | None = None,
        run_id: str | None = None,
    ) -> bool:
        """Keep a document out of Xero with the reason and the fix; the next run tries it again.

        A row `sending` is moved only by the run that claimed it (pass its run_id): any other run's
        `sending` row may already be in Xero, and only a lookup by its natural key may move it on.
        Setting it aside here would let a later claim send it again without that lookup. Synced and
        voided rows are in Xero and stay as they are. Returns whether the row is now set aside."""
        now = _now()
        with self.session() as s:
            row = _row(s, tenant, doc_type, autotask_id)
            if row is not None and (
                row.state in (DocState.SYNCED, DocState.VOIDED)
                or (row.state == DocState.SENDING and (run_id is None or row.run_id != run_id))
            ):
                return False
            if row is None:
                s.add(
                    SyncRecord(
                        tenant=tenant, doc_type=doc_type, autotask_id=autotask_id, autotask_number=autotask_number,
                        document_date=document_date, state=DocState.SET_ASIDE, content_hash=content_hash,
                        reason=reason, fix=fix, attempts=0, updated_at=now, version=1,
                    )
                )
            else:
                row.state = DocState.SET_ASIDE
                row.reason, row.fix = reason, fix
                row.updated_at = now
                row.version += 1
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return False
        return True

    def unfinished(self, tenant: str, doc_types: Iterable[str]) -> list[int]:
        """Autotask ids of documents not yet in Xero (set aside, or released after a lookup): each run
        reads them again by id, whatever their date, so the window's high-water mark never leaves one behind."""
        with self.session() as s:
            ids = s.scalars(
                select(SyncRecord.autotask_id).where(
                    SyncRecord.tenant == tenant,
                    SyncRecord.doc_type.in_(list(doc_types)),
                    SyncRecord.state.in_([DocState.SET_ASIDE, DocState.PENDING]),
                )
            ).all()
        return sorted(set(int(i) for i in ids))

    def forget_set_aside(self, tenant: str, doc_type: str, autotask_ids: Iterable[int]) -> None:
        """Drop set-aside rows of a document now mapped as the other type (a credit recorded as an
        invoice by an older release): they would otherwise be read again on every run."""
        ids = list(autotask_ids)
        if not ids:
            return
        with self.session() as s:
            for row in s.scalars(select(SyncRecord).where(
                SyncRecord.tenant == tenant, SyncRecord.doc_type == doc_type, SyncRecord.autotask_id.in_(ids),
                SyncRecord.state == DocState.SET_ASIDE,
            )):
                s.delete(row)
            s.commit()

    def release(self, tenant: str, doc_type: str, autotask_id: int) -> None:
        """Xero has no copy of a document whose answer was lost: it may be sent again."""
        self._move(tenant, doc_type, autotask_id, state=DocState.PENDING)

    def _move(self, tenant: str, doc_type: str, autotask_id: int, **values) -> None:
        with self.session() as s:
            row = _row(s, tenant, doc_type, autotask_id)
            if row is None:
                raise LookupError(f"no ledger row for {doc_type} {autotask_id} of tenant {tenant}")
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = _now()
            row.version += 1
            s.commit()

    # ---- windows -----------------------------------------------------------------------------
    def high_water(self, tenant: str, doc_type: str) -> date | None:
        with self.session() as s:
            row = s.scalars(
                select(SyncWatermark).where(SyncWatermark.tenant == tenant, SyncWatermark.doc_type == doc_type)
            ).one_or_none()
            return row.high_water if row else None

    def advance_high_water(self, tenant: str, doc_type: str, until: date) -> None:
        with self.session() as s:
            row = s.scalars(
                select(SyncWatermark).where(SyncWatermark.tenant == tenant, SyncWatermark.doc_type == doc_type)
            ).one_or_none()
            if row is None:
                s.add(SyncWatermark(tenant=tenant, doc_type=doc_type, high_water=until, updated_at=_now()))
            elif until > row.high_water:
                row.high_water, row.updated_at = until, _now()
            s.commit()


def _add_missing_columns(engine: Engine) -> None:
    """Ledgers made by an older release lack the newer nullable columns: add them (no data changes)."""
    existing = {c["name"] for c in inspect(engine).get_columns(SyncRecord.__tablename__)}
    missing = [c for c in SyncRecord.__table__.columns if c.name not in existing and c.nullable]
    if not missing:
        return
    for column in missing:
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {SyncRecord.__tablename__} ADD COLUMN {column.name} {kind}"))
        except Exception:  # noqa: BLE001 - another process added it first
            if column.name not in {c["name"] for c in inspect(engine).get_columns(SyncRecord.__tablename__)}:
                raise


"""Reading and moving ledger rows. Every state change is a short transaction of its own.

The order of writes is what keeps a document in Xero exactly once:
1. `claim` marks rows `sending` with the batch's idempotency key and commits, before any call to Xero;
2. `record_synced` / `set_aside` store each element's outcome as soon as Xero answers;
3. rows left `sending` by a run that died or lost its answer are `stale`; they are looked up in Xero by
   their natural key, then `record_synced` or `release`d to `pending`, before anything is re-sent.

A row is addressed by (tenant, kind, source, source_id): the kind of document ("invoice", "credit_note",
"contact", ...), the system it comes from ("autotask") and its id there, always text. Where rows are
returned by id, the dict is keyed by that text.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ledger import migrations
from ledger.audit import AuditTrail
from ledger.heartbeat import RunHeartbeats
from ledger.models import DocState, RunHeartbeat, SyncRecord, SyncWatermark, SyncWindow, WindowState, aware, utc_now

# A run that has not recorded an answer within this time is presumed dead; its rows get resolved.
DEFAULT_LEASE = timedelta(minutes=15)
# A run whose heartbeat (ledger/heartbeat.py) is older than this is presumed dead, however long its lease.
DEFAULT_HEARTBEAT_TIMEOUT = timedelta(seconds=60)
AUTOTASK = "autotask"
# The states a person may skip a document from: not in Xero, and no run is sending it.
SKIPPABLE = (DocState.SET_ASIDE, DocState.PENDING, DocState.SKIPPED)




def _text_id(source_id) -> str:
    """Source ids are text at the ledger's boundary: an int here is a caller not yet converted, and
    PostgreSQL would refuse to compare it with a TEXT column while SQLite silently would."""
    if not isinstance(source_id, str):
        raise TypeError(f"ledger source ids are text: got {type(source_id).__name__} {source_id!r} (pass str(...))")
    return source_id


def _row(s: Session, tenant: str, kind: str, source_id: str, source: str) -> SyncRecord | None:
    return s.scalars(
        select(SyncRecord).where(
            SyncRecord.tenant == tenant,
            SyncRecord.kind == kind,
            SyncRecord.source == source,
            SyncRecord.source_id == _text_id(source_id),
        )
    ).one_or_none()


def _id_order(source_id: str) -> tuple:
    # Numeric ids in numeric order ("9" before "10"), any others after them.
    return (0, int(source_id), "") if source_id.isdigit() else (1, 0, source_id)


@dataclass(frozen=True)
class Candidate:
    """A document this run wants to send."""

    source_id: str
    source_number: str | None
    natural_key: str | None
    content_hash: str
    document_date: date | None = None
    contact_id: str | None = None  # the Xero ContactID it is sent to (kept for lookups by Url)
    natural_key_kind: str | None = None  # ledger.models.NaturalKeyKind
    source: str = AUTOTASK


def engine_for_url(url: str) -> Engine:
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        # Several threads and processes share one SQLite file: wait for the lock rather than fail.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 30000")
            _wal(cur)
            cur.close()

    return engine


def _wal(cur) -> None:
    """Switch a SQLite file to WAL. Switching needs the file to itself, and SQLite answers "locked" at once
    (not after the busy timeout) while another process holds it, for example during a migration. WAL is
    kept in the file, so once any connection has switched it the others find it set: try a few times,
    then go on in whatever mode the file is in."""
    import sqlite3
    import time

    for attempt in range(20):
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05 * (attempt + 1))


class Ledger:
    def __init__(self, engine: Engine):
        self.engine = engine
        migrations.upgrade(engine)  # the schema at the newest revision, whoever else is starting now
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

    @property
    def heartbeats(self) -> RunHeartbeats:
        return RunHeartbeats(self)

    @property
    def audit(self) -> AuditTrail:
        """The writes sent to Xero and Autotask, per run (ledger/audit.py)."""
        return AuditTrail(self)

    # ---- reading ---------------------------------------------------------------------------
    def records(
        self, tenant: str, kind: str, ids: Iterable[str] | None = None, *, source: str = AUTOTASK
    ) -> dict[str, SyncRecord]:
        with self.session() as s:
            q = select(SyncRecord).where(SyncRecord.tenant == tenant, SyncRecord.kind == kind, SyncRecord.source == source)
            if ids is not None:
                ids = [_text_id(i) for i in ids]
                if not ids:
                    return {}
                q = q.where(SyncRecord.source_id.in_(ids))
            return {r.source_id: r for r in s.scalars(q)}

    def documents(self, tenant: str, *, states: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                  needs_a_person: bool = False, limit: int | None = None) -> list[SyncRecord]:
        """The tenant's rows, most recently changed first (`atx ledger show`). `needs_a_person`: only rows
        carrying a note for a person (in Xero, changed after approval, voided but paid, ...)."""
        with self.session() as s:
            q = select(SyncRecord).where(SyncRecord.tenant == tenant)
            if states is not None:
                q = q.where(SyncRecord.state.in_(list(states)))
            if kinds is not None:
                q = q.where(SyncRecord.kind.in_(list(kinds)))
            if needs_a_person:
                q = q.where(SyncRecord.attention.is_not(None))
            q = q.order_by(SyncRecord.updated_at.desc(), SyncRecord.id.desc())
            if limit is not None:
                q = q.limit(limit)
            return list(s.scalars(q))

    def by_target(self, tenant: str, kind: str, target_ids: Iterable[str], *, source: str = AUTOTASK,
                  chunk: int = 500) -> dict[str, SyncRecord]:
        """Synced rows by the target's id (a Xero InvoiceID -> the Autotask invoice it was made from)."""
        wanted = list(dict.fromkeys(str(i) for i in target_ids if i))
        found: dict[str, SyncRecord] = {}
        with self.session() as s:
            for start in range(0, len(wanted), chunk):
                q = select(SyncRecord).where(
                    SyncRecord.tenant == tenant, SyncRecord.kind == kind, SyncRecord.source == source,
                    SyncRecord.state == DocState.SYNCED, SyncRecord.target_id.in_(wanted[start:start + chunk]))
                found.update({r.target_id: r for r in s.scalars(q)})
        return found

    def stale(
        self,
        tenant: str,
        kind: str,
        *,
        run_id: str,
        owner_alive: Callable[[str], bool] = lambda run_id: True,
        lease: timedelta = DEFAULT_LEASE,
        heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
        source: str = AUTOTASK,
        ids: Iterable[str] | None = None,
    ) -> list[SyncRecord]:
        """Rows left `sending` whose answer will never come: this run's own (answer lost), those of a run
        that has ended or whose heartbeat stopped, and any whose lease ran out. A run with no heartbeat
        (claimed by an earlier release) is asked about through `owner_alive`, once per run."""
        now = utc_now()
        with self.session() as s:
            q = select(SyncRecord).where(
                SyncRecord.tenant == tenant, SyncRecord.kind == kind, SyncRecord.source == source,
                SyncRecord.state == DocState.SENDING,
            )
            if ids is not None:
                q = q.where(SyncRecord.source_id.in_([_text_id(i) for i in ids]))
            rows = s.scalars(q).all()
        beats = self.heartbeats.of(r.run_id for r in rows if r.run_id != run_id)
        verdicts: dict[str, bool] = {}

        def dead(owner: str) -> bool:
            if owner not in verdicts:
                beat = beats.get(owner)
                verdicts[owner] = beat.dead(heartbeat_timeout, now) if beat is not None else not owner_alive(owner)
            return verdicts[owner]

        return [r for r in rows
                if r.run_id == run_id or aware(r.claimed_at) <= now - lease or dead(r.run_id or "")]

    def set_aside_records(self, tenant: str, kind: str, *, source: str = AUTOTASK) -> list[SyncRecord]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(SyncRecord).where(
                        SyncRecord.tenant == tenant,
                        SyncRecord.kind == kind,
                        SyncRecord.source == source,
                        SyncRecord.state == DocState.SET_ASIDE,
                    )
                )
            )

    # ---- claiming --------------------------------------------------------------------------
    def claim(
        self,
        tenant: str,
        kind: str,
        candidates: Sequence[Candidate],
        *,
        run_id: str,
        idempotency_key: str,
    ) -> list[Candidate]:
        """Mark these documents `sending` for this run; return the ones this run now owns.

        A document already synced, or being sent by another live run, is not claimed. The
        conditional update on `version` makes two racing runs agree on a single owner.
        """
        together = self._claim_together(tenant, kind, candidates, run_id=run_id, idempotency_key=idempotency_key)
        if together is not None:
            return together
        claimed: list[Candidate] = []
        now = utc_now()
        for c in candidates:
            with self.session() as s:
                row = _row(s, tenant, kind, c.source_id, c.source)
                if row is None:
                    s.add(
                        SyncRecord(
                            tenant=tenant,
                            kind=kind,
                            source=c.source,
                            source_id=c.source_id,
                            source_number=c.source_number,
                            natural_key=c.natural_key,
                            natural_key_kind=c.natural_key_kind,
                            document_date=c.document_date,
                            state=DocState.SENDING,
                            content_hash=c.content_hash,
                            idempotency_key=idempotency_key,
                            run_id=run_id,
                            claimed_at=now,
                            attempts=1,
                            updated_at=now,
                            version=1,
                            contact_id=c.contact_id,
                            facts={},
                        )
                    )
                    try:
                        s.commit()
                        claimed.append(c)
                    except IntegrityError:
                        s.rollback()  # another run inserted it first: it owns the document
                    continue
                if row.state in (DocState.SYNCED, DocState.VOIDED, DocState.SKIPPED):
                    continue  # in Xero already, or a person said it must never go there
                if row.state == DocState.SENDING:
                    # In flight in a live run, or stale: either way Xero may hold it, so only a
                    # lookup by natural key (resolve) may move it on, never a second send.
                    continue
                result = s.execute(
                    update(SyncRecord)
                    .where(SyncRecord.id == row.id, SyncRecord.version == row.version)
                    .values(
                        state=DocState.SENDING,
                        source_number=c.source_number,
                        natural_key=c.natural_key,
                        natural_key_kind=c.natural_key_kind,
                        document_date=c.document_date,
                        content_hash=c.content_hash,
                        idempotency_key=idempotency_key,
                        run_id=run_id,
                        claimed_at=now,
                        attempts=row.attempts + 1,
                        updated_at=now,
                        version=row.version + 1,
                        contact_id=c.contact_id,
                    )
                )
                s.commit()
                if result.rowcount == 1:
                    claimed.append(c)
        return claimed

    def _claim_together(self, tenant: str, kind: str, candidates: Sequence[Candidate], *, run_id: str,
                        idempotency_key: str) -> list[Candidate] | None:
        """The same claim as one transaction for the whole batch: one read, then every insert and
        compare-and-set update, one commit (a commit per document was a third of a sync's CPU). None when
        another run got in between (a row it inserted first, a lock it holds): the caller then claims
        document by document, as before."""
        sources = {c.source for c in candidates}
        if len(sources) != 1:
            return None
        rows = self.records(tenant, kind, [c.source_id for c in candidates], source=sources.pop())
        now = utc_now()
        won: set[str] = set()
        new_rows: list[dict] = []
        with self.session() as s:
            try:
                # One order for every run, so two runs' locks on PostgreSQL are never taken crosswise: the
                # updates in it, then the inserts in it.
                for c in sorted(candidates, key=lambda c: _id_order(c.source_id)):
                    row = rows.get(_text_id(c.source_id))
                    facts = dict(source_number=c.source_number, natural_key=c.natural_key,
                                 natural_key_kind=c.natural_key_kind, document_date=c.document_date,
                                 state=DocState.SENDING, content_hash=c.content_hash, idempotency_key=idempotency_key,
                                 run_id=run_id, claimed_at=now, updated_at=now, contact_id=c.contact_id)
                    if row is None:
                        new_rows.append(dict(tenant=tenant, kind=kind, source=c.source, source_id=_text_id(c.source_id),
                                             attempts=1, version=1, facts={}, **facts))
                        won.add(c.source_id)
                    elif row.state not in (DocState.SYNCED, DocState.VOIDED, DocState.SENDING, DocState.SKIPPED):
                        moved = s.execute(update(SyncRecord)
                                          .where(SyncRecord.id == row.id, SyncRecord.version == row.version)
                                          .values(attempts=row.attempts + 1, version=row.version + 1, **facts))
                        if moved.rowcount == 1:
                            won.add(c.source_id)
                if new_rows:  # one INSERT for the batch: a flush a row was most of a claim's time
                    s.execute(insert(SyncRecord), new_rows)
                s.commit()
            except (IntegrityError, OperationalError):
                s.rollback()
                return None
        return [c for c in candidates if c.source_id in won]

    # ---- recording outcomes ------------------------------------------------------------------
    def record_synced_many(self, tenant: str, kind: str, written: Sequence[tuple[str, dict]], *,
                           source: str = AUTOTASK) -> None:
        """Record a batch's created documents in one transaction: (source id, the target_id, target_number,
        target_status and target_total) each. Only this run's `sending` rows are passed here.

        One statement for the batch, executed for each row (a statement a row was a tenth of a sync's CPU):
        an answer without an id, status or total keeps what the row held; the number is always written."""
        if not written:
            return
        table = SyncRecord.__table__
        kept = {name: func.coalesce(bindparam(f"new_{name}"), table.c[name])
                for name in ("target_id", "target_status", "target_total")}
        statement = (update(table)
                     .where(table.c.tenant == tenant, table.c.kind == kind, table.c.source == source,
                            table.c.source_id == bindparam("the_source_id"))
                     .values(state=DocState.SYNCED, reason=None, fix=None, updated_at=utc_now(),
                             version=table.c.version + 1, target_number=bindparam("new_target_number"), **kept))
        rows = [{"the_source_id": _text_id(source_id), "new_target_id": values.get("target_id"),
                 "new_target_number": values.get("target_number"), "new_target_status": values.get("target_status"),
                 "new_target_total": None if values.get("target_total") is None else str(values["target_total"])}
                for source_id, values in written]
        with self.session() as s:
            s.connection().execute(statement, rows)
            s.commit()

    def record_synced(
        self, tenant: str, kind: str, source_id: str, *, target_id: str, target_number: str | None,
        target_status: str | None = None, target_total=None, source: str = AUTOTASK, version: int | None = None,
    ) -> bool:
        """The document is in its target. With `version`, only if the row is still as it was read then
        (see `release`); returns whether the row was moved."""
        values = {}
        if target_status is not None:
            values["target_status"] = target_status
        if target_total is not None:
            values["target_total"] = str(target_total)
        return self._move(
            tenant, kind, source_id, source, state=DocState.SYNCED, target_id=target_id, target_number=target_number,
            reason=None, fix=None, version=version, **values,
        )

    def record_updated(
        self, tenant: str, kind: str, source_id: str, *, content_hash: str, target_status: str | None,
        target_total=None, target_number: str | None = None, source: str = AUTOTASK,
    ) -> None:
        """A synced document was changed in its target to match its source again (a Xero draft rewritten,
        an Autotask paid date set or cleared). A target number given replaces the one held."""
        numbered = {} if target_number is None else {"target_number": target_number}
        self._move(tenant, kind, source_id, source, content_hash=content_hash, target_status=target_status,
                   target_total=None if target_total is None else str(target_total), attention=None, **numbered)

    def record_voided(self, tenant: str, kind: str, source_id: str, *, target_status: str, source: str = AUTOTASK) -> None:
        self._move(tenant, kind, source_id, source, state=DocState.VOIDED, target_status=target_status, attention=None)

    def note(self, tenant: str, kind: str, source_id: str, attention: str | None, *, source: str = AUTOTASK,
             **values) -> None:
        """Leave a note for a person on a document, without changing its state."""
        self._move(tenant, kind, source_id, source, attention=attention, **values)

    def set_facts(self, tenant: str, kind: str, source_id: str, *, source: str = AUTOTASK, **facts) -> None:
        """Merge these kind-specific facts (JSON values) into the row's `facts`."""
        self._move(tenant, kind, source_id, source, facts=facts)

    def mark_attached(self, tenant: str, kind: str, source_id: str, *, source: str = AUTOTASK) -> None:
        """The source PDF is attached to the Xero document (facts["attached_at"], an ISO timestamp)."""
        self.set_facts(tenant, kind, source_id, source=source, attached_at=utc_now().isoformat())

    def upsert_synced(
        self, tenant: str, kind: str, source_id: str, *, target_id: str, content_hash: str | None,
        source_number: str | None = None, target_number: str | None = None, natural_key_kind: str | None = None,
        source: str = AUTOTASK, natural_key: str | None = None,
    ) -> None:
        """Record a document that needs no claim (a contact: Xero keys it by ContactNumber, so a repeat is
        an update, never a duplicate). Its natural key is the target number, unless one is given (a
        document Xero numbered, found by its Url: `atx reconcile --repair`)."""
        now = utc_now()
        with self.session() as s:
            row = _row(s, tenant, kind, source_id, source)
            if row is None:
                s.add(SyncRecord(
                    tenant=tenant, kind=kind, source=source, source_id=source_id, source_number=source_number,
                    natural_key=natural_key or target_number,
                    natural_key_kind=natural_key_kind if natural_key or target_number else None,
                    state=DocState.SYNCED, content_hash=content_hash, target_id=target_id,
                    target_number=target_number, attempts=1, updated_at=now, version=1, facts={},
                ))
            else:
                row.state, row.target_id, row.content_hash = DocState.SYNCED, target_id, content_hash
                row.target_number = target_number or row.target_number
                if natural_key:
                    row.natural_key, row.natural_key_kind = natural_key, natural_key_kind
                row.reason = row.fix = None
                row.updated_at, row.version = now, row.version + 1
            try:
                s.commit()
            except IntegrityError:
                s.rollback()

    def set_aside(
        self,
        tenant: str,
        kind: str,
        source_id: str,
        *,
        source_number: str | None,
        reason: str,
        fix: str,
        content_hash: str | None = None,
        document_date: date | None = None,
        run_id: str | None = None,
        source: str = AUTOTASK,
    ) -> bool:
        """Keep a document out of Xero with the reason and the fix; the next run tries it again.

        A row `sending` is moved only by the run that claimed it (pass its run_id): any other run's
        `sending` row may already be in Xero, and only a lookup by its natural key may move it on.
        Setting it aside here would let a later claim send it again without that lookup. Synced and
        voided rows are in Xero and stay as they are; a skipped row stays skipped (a person's word outlasts
        whatever a run finds wrong with it). Returns whether the row is now set aside."""
        now = utc_now()
        with self.session() as s:
            row = _row(s, tenant, kind, source_id, source)
            if row is not None and (
                row.state in (DocState.SYNCED, DocState.VOIDED, DocState.SKIPPED)
                or (row.state == DocState.SENDING and (run_id is None or row.run_id != run_id))
            ):
                return False
            if row is None:
                s.add(
                    SyncRecord(
                        tenant=tenant, kind=kind, source=source, source_id=source_id, source_number=source_number,
                        document_date=document_date, state=DocState.SET_ASIDE, content_hash=content_hash,
                        reason=reason, fix=fix, attempts=0, updated_at=now, version=1, facts={},
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

    def unfinished(self, tenant: str, kinds: Iterable[str], *, source: str = AUTOTASK,
                   between: tuple[date, date] | None = None) -> list[str]:
        """Source ids of documents not yet in Xero (set aside, or released after a lookup): each run
        reads them again by id, whatever their date, so the window's high-water mark never leaves one behind.
        `between`: only those dated in this window (a backfill chunk reads only its own days)."""
        with self.session() as s:
            q = select(SyncRecord.source_id).where(
                SyncRecord.tenant == tenant,
                SyncRecord.kind.in_(list(kinds)),
                SyncRecord.source == source,
                SyncRecord.state.in_([DocState.SET_ASIDE, DocState.PENDING]),
            )
            if between is not None:
                q = q.where(SyncRecord.document_date >= between[0], SyncRecord.document_date <= between[1])
            ids = s.scalars(q).all()
        return sorted(set(ids), key=_id_order)

    def forget_set_aside(self, tenant: str, kind: str, source_ids: Iterable[str], *, source: str = AUTOTASK) -> None:
        """Drop set-aside rows of a document now mapped as another kind (a credit recorded as an
        invoice by an older release): they would otherwise be read again on every run."""
        ids = [_text_id(i) for i in source_ids]
        if not ids:
            return
        with self.session() as s:
            for row in s.scalars(select(SyncRecord).where(
                SyncRecord.tenant == tenant, SyncRecord.kind == kind, SyncRecord.source == source,
                SyncRecord.source_id.in_(ids), SyncRecord.state == DocState.SET_ASIDE,
            )):
                s.delete(row)
            s.commit()

    def release(self, tenant: str, kind: str, source_id: str, *, source: str = AUTOTASK,
                version: int | None = None) -> bool:
        """Xero has no copy of a document whose answer was lost: it may be sent again.

        `version`: the row's version when the caller read it, before looking the document up. The row moves
        only if no one changed it since: another run may have claimed it meanwhile and be sending it now,
        and releasing that claim would let a third send make a second copy. Returns whether it moved."""
        return self._move(tenant, kind, source_id, source, state=DocState.PENDING, version=version)

    def skip(self, tenant: str, kind: str, source_id: str, *, reason: str, by: str, version: int,
             source: str = AUTOTASK) -> bool:
        """A person says this document must never reach Xero: it is never claimed again (`claim`), and each
        run reports it skipped with `reason`. Only a row not in Xero and not being sent (set aside, pending,
        or skipped already) moves, and only if it is still at `version` as the caller read it: a run that
        claimed it meanwhile may be sending it now. Returns whether it moved."""
        with self.session() as s:
            row = _row(s, tenant, kind, source_id, source)
            if row is None or row.version != version or row.state not in SKIPPABLE:
                return False
            facts = {**(row.facts or {}), "skipped_by": by, "skipped_at": utc_now().isoformat()}
            moved = s.execute(update(SyncRecord).where(
                SyncRecord.id == row.id, SyncRecord.version == version, SyncRecord.state.in_(SKIPPABLE),
            ).values(state=DocState.SKIPPED, reason=reason, fix=None, facts=facts, updated_at=utc_now(),
                     version=version + 1))
            s.commit()
            return moved.rowcount == 1

    def unskip(self, tenant: str, kind: str, source_id: str, *, source: str = AUTOTASK) -> bool:
        """A skipped document may be sent again: pending, so the next run (or the resend now) reads it by id
        and sends it through the pipeline. Returns whether it was skipped."""
        with self.session() as s:
            moved = s.execute(update(SyncRecord).where(
                SyncRecord.tenant == tenant, SyncRecord.kind == kind, SyncRecord.source == source,
                SyncRecord.source_id == _text_id(source_id), SyncRecord.state == DocState.SKIPPED,
            ).values(state=DocState.PENDING, reason=None, fix=None, updated_at=utc_now(),
                     version=SyncRecord.version + 1))
            s.commit()
            return moved.rowcount == 1

    def _move(self, tenant: str, kind: str, source_id: str, source: str, *, version: int | None = None,
              **values) -> bool:
        with self.session() as s:
            row = _row(s, tenant, kind, source_id, source)
            if row is None:
                raise LookupError(f"no ledger row for {kind} {source}:{source_id} of tenant {tenant}")
            if version is not None:
                # A compare-and-set on the version, as a claim is: of two runs, only one moves the row.
                values.update(updated_at=utc_now(), version=version + 1)
                if "facts" in values:
                    values["facts"] = {**(row.facts or {}), **(values["facts"] or {})}
                moved = s.execute(update(SyncRecord).where(SyncRecord.id == row.id, SyncRecord.version == version)
                                  .values(**values))
                s.commit()
                return moved.rowcount == 1
            facts = values.pop("facts", None)
            if facts:
                row.facts = {**(row.facts or {}), **facts}  # a new dict, so the change is seen and written
            for k, v in values.items():
                setattr(row, k, v)
            row.updated_at = utc_now()
            row.version += 1
            s.commit()
            return True

    # ---- high-water marks ------------------------------------------------------------------
    def high_water(self, tenant: str, flow: str) -> date | None:
        """Where the last completed run of this tenant's flow ("invoices", ...) ended."""
        with self.session() as s:
            row = s.scalars(
                select(SyncWatermark).where(SyncWatermark.tenant == tenant, SyncWatermark.flow == flow)
            ).one_or_none()
            return row.high_water if row else None

    def advance_high_water(self, tenant: str, flow: str, until: date) -> None:
        for _ in range(2):  # a racing first insert loses to the unique key once, then updates
            with self.session() as s:
                row = s.scalars(
                    select(SyncWatermark).where(SyncWatermark.tenant == tenant, SyncWatermark.flow == flow)
                ).one_or_none()
                if row is None:
                    s.add(SyncWatermark(tenant=tenant, flow=flow, high_water=until, updated_at=utc_now()))
                elif until > row.high_water:
                    row.high_water, row.updated_at = until, utc_now()
                try:
                    s.commit()
                    return
                except IntegrityError:
                    s.rollback()

    # ---- windows (a backfill works through a date range window by window) --------------------
    def start_window(self, tenant: str, flow: str, start: date, end: date, *, run_id: str) -> SyncWindow:
        """This run works on [start, end] of the tenant's flow now (a window done before is opened again)."""
        for _ in range(2):
            with self.session() as s:
                row = _window(s, tenant, flow, start, end)
                now = utc_now()
                if row is None:
                    row = SyncWindow(tenant=tenant, flow=flow, window_start=start, window_end=end, facts={})
                    s.add(row)
                row.state, row.run_id, row.started_at, row.finished_at = WindowState.RUNNING, run_id, now, None
                try:
                    s.commit()
                    return row
                except IntegrityError:
                    s.rollback()  # another run inserted it first: take it over on the next pass
        raise RuntimeError(f"could not start window {start}..{end} of {flow} for {tenant}")

    def finish_window(
        self, tenant: str, flow: str, start: date, end: date, *, run_id: str, facts: dict | None = None
    ) -> bool:
        """The window is done, with facts about it merged in (counts, ...). Only the run that started it
        last may finish it: returns False (and changes nothing) when another run has taken it over."""
        with self.session() as s:
            row = _window(s, tenant, flow, start, end)
            if row is None:
                raise LookupError(f"window {start}..{end} of {flow} for {tenant} was never started")
            if row.run_id != run_id:
                return False
            row.state, row.finished_at = WindowState.DONE, utc_now()
            if facts:
                row.facts = {**(row.facts or {}), **facts}
            s.commit()
            return True

    def windows(self, tenant: str, flow: str) -> list[SyncWindow]:
        with self.session() as s:
            return list(s.scalars(
                select(SyncWindow).where(SyncWindow.tenant == tenant, SyncWindow.flow == flow)
                .order_by(SyncWindow.window_start, SyncWindow.window_end)
            ))

    def forget_tenant(self, tenant: str) -> int:
        """Delete everything this ledger holds about one tenant's documents: its rows, high-water marks,
        backfill windows and run heartbeats (not its token set: see LedgerTokenStore.delete). For a Xero
        organisation that no longer exists, such as a sandbox that was reset; returns how many documents
        were forgotten."""
        with self.session() as s:
            forgotten = s.execute(delete(SyncRecord).where(SyncRecord.tenant == tenant)).rowcount
            for model in (SyncWatermark, SyncWindow, RunHeartbeat):
                s.execute(delete(model).where(model.tenant == tenant))
            s.commit()
            return forgotten


def _window(s: Session, tenant: str, flow: str, start: date, end: date) -> SyncWindow | None:
    return s.scalars(
        select(SyncWindow).where(
            SyncWindow.tenant == tenant, SyncWindow.flow == flow,
            SyncWindow.window_start == start, SyncWindow.window_end == end,
        )
    ).one_or_none()

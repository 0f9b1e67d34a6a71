"""The ledger's schema comes from Alembic revisions: a ledger made before them upgrades in place with
nothing lost, a new database upgrades from empty, and openers racing on one database all succeed.

Each test gets a database of its own: a SQLite file, or (ATX_TEST_POSTGRES_URL) a fresh PostgreSQL schema.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, insert, inspect, select, text

from ledger import DocState, Ledger, LedgerCallUsage, LedgerTokenStore, TokenCipher, engine_for_url, migrations
from ledger.models import Base
from tests.ledger_support import (
    LATE_COLUMNS,
    LegacyStoredToken,
    LegacySyncRecord,
    LegacySyncWatermark,
    create_legacy_ledger,
    engine_in_schema,
)

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 20, 6, 30, 15, 123456, tzinfo=timezone.utc)
BIG_ID = 9_007_199_254_740_993  # beyond a double's exact integers: it must arrive as text digit for digit


@dataclass
class Database:
    """One test's database: engines on it, and how a child process reaches it."""

    url: str
    schema: str | None = None

    def engine(self) -> Engine:
        return engine_in_schema(self.url, self.schema) if self.schema else engine_for_url(self.url)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    if request.param == "sqlite":
        yield Database(f"sqlite+pysqlite:///{tmp_path / 'ledger.db'}")
        return
    yield Database(request.getfixturevalue("postgres_url"), request.getfixturevalue("postgres_schema"))


def _legacy_rows(engine: Engine, *, first_release: bool = False) -> None:
    """What a release before Alembic left: documents in every state, a watermark, a token."""
    ledger, watermark, token = LegacySyncRecord.__table__, LegacySyncWatermark.__table__, LegacyStoredToken.__table__
    base = dict(tenant="acme", attempts=1, version=1, updated_at=T0)
    rows = [
        # A synced invoice: Xero's id, number, status and total, its contact, its PDF attached, a note.
        dict(base, doc_type="invoice", autotask_id=29684, autotask_number="INV-1001", natural_key="INV-1001",
             document_date=date(2026, 11, 2), state=DocState.SYNCED, content_hash="a" * 64, xero_id="x-inv-1",
             xero_number="INV-1001", idempotency_key="k" * 64, run_id="run-1", claimed_at=T0 - timedelta(minutes=3),
             attempts=2, version=5, xero_contact_id="contact-174", xero_status="AUTHORISED", xero_total="1234.50",
             attached_at=T0, attention="changed in Autotask after it was approved in Xero"),
        # Xero numbers this one: its key is the Url back to Autotask.
        dict(base, doc_type="invoice", autotask_id=BIG_ID, autotask_number="INV-1002",
             natural_key=f"https://ww5.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenInvoice&InvoiceID={BIG_ID}",
             state=DocState.SYNCED, xero_id="x-inv-2", xero_number="INV-0042", xero_contact_id="contact-175",
             xero_status="DRAFT", xero_total="0.10"),
        # A set-aside credit note, Xero numbering: its key is the Reference marker.
        dict(base, doc_type="credit_note", autotask_id=29690, autotask_number="INV-1003",
             natural_key="Reference:INV-1003 / PO 7", state=DocState.SET_ASIDE, attempts=0,
             reason="tax type OUTPUT3 is not in Xero", fix="map the tax category to a TaxType"),
        # A contact, keyed by its ContactNumber.
        dict(base, doc_type="contact", autotask_id=174, autotask_number="174", natural_key="174",
             state=DocState.SYNCED, content_hash="c" * 64, xero_id="contact-174", xero_number="174"),
        # A row in flight when the old release stopped: its answer is still owed.
        dict(base, doc_type="invoice", autotask_id=29700, autotask_number="INV-1004", natural_key="INV-1004",
             state=DocState.SENDING, content_hash="s" * 64, idempotency_key="send-key", run_id="run-2",
             claimed_at=T0, xero_contact_id="contact-176"),
        # Released after a lookup found nothing; never given a key.
        dict(base, doc_type="invoice", autotask_id=29701, autotask_number=None, natural_key=None,
             state=DocState.PENDING, attempts=1),
        # Another tenant's row with the same Autotask id.
        dict(base, tenant="globex", doc_type="invoice", autotask_id=29684, autotask_number="G-1", natural_key="G-1",
             state=DocState.SYNCED, xero_id="x-globex"),
    ]
    with engine.begin() as conn:
        for row in rows:
            if first_release:
                row = {k: v for k, v in row.items() if k not in LATE_COLUMNS}
            conn.execute(insert(ledger).values(**row))
        conn.execute(insert(watermark).values(tenant="acme", doc_type="invoice", high_water=date(2026, 11, 24), updated_at=T0))
        conn.execute(insert(watermark).values(tenant="globex", doc_type="invoice", high_water=date(2026, 10, 31), updated_at=T0))
        conn.execute(insert(token).values(connection="acme-xero", token_json='{"refresh_token": "r-1"}', updated_at=T0))


def _schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        assert migrations.current(conn) == (migrations.head(),)
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_a_ledger_made_before_alembic_upgrades_in_place_with_nothing_lost(database):
    engine = database.engine()
    create_legacy_ledger(engine)
    _legacy_rows(engine)
    with engine.connect() as conn:
        assert migrations.current(conn) == ()  # no alembic_version: the old releases never made one

    ledger = Ledger(engine)
    _schema_matches_the_models(engine)

    rows = ledger.records("acme", "invoice")
    assert set(rows) == {"29684", str(BIG_ID), "29700", "29701"}
    inv = rows["29684"]
    assert (inv.tenant, inv.kind, inv.source, inv.source_id, inv.source_number) == ("acme", "invoice", "autotask", "29684", "INV-1001")
    assert (inv.natural_key, inv.natural_key_kind, inv.document_date) == ("INV-1001", "number", date(2026, 11, 2))
    assert (inv.state, inv.content_hash, inv.idempotency_key, inv.run_id) == (DocState.SYNCED, "a" * 64, "k" * 64, "run-1")
    assert inv.claimed_at.replace(tzinfo=inv.claimed_at.tzinfo or timezone.utc) == T0 - timedelta(minutes=3)
    assert (inv.attempts, inv.version, inv.reason, inv.fix) == (2, 5, None, None)
    assert (inv.target_id, inv.target_number, inv.target_status, inv.target_total) == ("x-inv-1", "INV-1001", "AUTHORISED", "1234.50")
    assert inv.contact_id == "contact-174"
    assert inv.attention == "changed in Autotask after it was approved in Xero"
    assert inv.facts == {"attached_at": T0.isoformat()} and inv.attached_at == T0

    url_row = rows[str(BIG_ID)]
    assert url_row.natural_key_kind == "url" and url_row.natural_key.endswith(f"InvoiceID={BIG_ID}")
    assert (url_row.target_number, url_row.target_status, url_row.target_total) == ("INV-0042", "DRAFT", "0.10")
    assert url_row.facts == {} and url_row.attached_at is None
    sending = rows["29700"]
    assert (sending.state, sending.run_id, sending.idempotency_key, sending.contact_id) == (DocState.SENDING, "run-2", "send-key", "contact-176")
    assert rows["29701"].natural_key is None and rows["29701"].natural_key_kind is None

    [credit] = ledger.set_aside_records("acme", "credit_note")
    assert (credit.source_id, credit.natural_key_kind, credit.state) == ("29690", "reference", DocState.SET_ASIDE)
    assert (credit.reason, credit.fix) == ("tax type OUTPUT3 is not in Xero", "map the tax category to a TaxType")
    contact = ledger.records("acme", "contact")["174"]
    assert (contact.natural_key, contact.natural_key_kind, contact.target_id, contact.content_hash) == (
        "174", "contact_number", "contact-174", "c" * 64)
    assert ledger.records("globex", "invoice")["29684"].target_id == "x-globex"

    assert ledger.high_water("acme", "invoices") == date(2026, 11, 24)
    assert ledger.high_water("globex", "invoices") == date(2026, 10, 31)
    assert ledger.high_water("acme", "invoice") is None
    assert LedgerTokenStore(ledger, "acme-xero", TokenCipher([TokenCipher.new_key()])).load() == {"refresh_token": "r-1"}
    assert ledger.windows("acme", "invoices") == []
    # Revision 0003's call count starts empty and counts.
    usage = LedgerCallUsage(ledger)
    assert usage.used("org-1", date(2026, 11, 24)) == 0
    assert usage.take("org-1", date(2026, 11, 24), 10, 1000) == 10 and usage.used("org-1", date(2026, 11, 24)) == 10

    # And the migrated rows behave as before: the owed answer is still owed, nothing is claimed twice.
    assert [r.source_id for r in ledger.stale("acme", "invoice", run_id="me", lease=timedelta(0))] == ["29700"]
    assert ledger.unfinished("acme", ("invoice", "credit_note")) == ["29690", "29701"]
    from ledger import Candidate

    again = [Candidate("29684", "INV-1001", "INV-1001", "a" * 64), Candidate("29701", "INV-1005", "INV-1005", "p")]
    assert [c.source_id for c in ledger.claim("acme", "invoice", again, run_id="me", idempotency_key="k")] == ["29701"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Base.metadata.tables["sync_ledger"])).scalar() == 7

    Ledger(engine)  # opening it again changes nothing
    _schema_matches_the_models(engine)
    assert ledger.records("acme", "invoice")["29684"].facts == {"attached_at": T0.isoformat()}
    engine.dispose()


def test_a_ledger_of_the_first_release_gets_the_late_columns_then_upgrades(database):
    engine = database.engine()
    create_legacy_ledger(engine, first_release=True)
    _legacy_rows(engine, first_release=True)
    assert not {c["name"] for c in inspect(engine).get_columns("sync_ledger")} & set(LATE_COLUMNS)

    ledger = Ledger(engine)
    _schema_matches_the_models(engine)
    inv = ledger.records("acme", "invoice")["29684"]
    assert (inv.target_id, inv.natural_key_kind, inv.contact_id, inv.target_status, inv.facts) == (
        "x-inv-1", "number", None, None, {})
    assert ledger.high_water("acme", "invoices") == date(2026, 11, 24)
    engine.dispose()


def test_a_new_database_is_upgraded_from_empty(database):
    engine = database.engine()
    with engine.connect() as conn:
        assert inspect(conn).get_table_names() == []
    ledger = Ledger(engine)
    _schema_matches_the_models(engine)
    assert set(inspect(engine).get_table_names()) == {"alembic_version", "audit_entries", "call_slot", "sync_ledger",
                                                      "sync_watermark", "sync_window", "xero_call_usage", "xero_token",
                                                      "run_heartbeat"}
    assert ledger.records("acme", "invoice") == {} and ledger.high_water("acme", "invoices") is None
    engine.dispose()


def test_two_threads_opening_one_fresh_database_both_succeed(database):
    engines = [database.engine(), database.engine()]
    barrier = threading.Barrier(len(engines))
    opened, failed = [], []

    def open_it(engine):
        barrier.wait()
        try:
            opened.append(Ledger(engine))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            failed.append(repr(exc))

    threads = [threading.Thread(target=open_it, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == [] and len(opened) == 2
    _schema_matches_the_models(engines[0])
    for e in engines:
        e.dispose()


_CHILD = """
import sys, time
from ledger import Ledger, engine_for_url
from tests.ledger_support import engine_in_schema
url, schema, at = sys.argv[1], sys.argv[2], float(sys.argv[3])
engine = engine_in_schema(url, schema) if schema else engine_for_url(url)
while time.time() < at:
    time.sleep(0.001)
Ledger(engine)
print("opened")
"""


def _open_in_processes(database: Database, n: int = 3) -> None:
    at = time.time() + 4  # every child has imported everything by then, and they start together
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, database.url, database.schema or "", str(at)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n)
    ]
    results = [c.communicate(timeout=180) for c in children]
    assert [c.returncode for c in children] == [0] * n, [err[-2000:] for _, err in results]
    assert all(out.strip() == "opened" for out, _ in results)


def test_processes_opening_one_fresh_database_at_once_all_succeed(database):
    _open_in_processes(database)
    _schema_matches_the_models(engine := database.engine())
    engine.dispose()


def test_processes_opening_one_old_ledger_at_once_migrate_it_once(database):
    engine = database.engine()
    create_legacy_ledger(engine)
    _legacy_rows(engine)
    engine.dispose()
    _open_in_processes(database)  # a second run of revision 0002 would fail: doc_type is gone by then
    engine = database.engine()
    _schema_matches_the_models(engine)
    ledger = Ledger(engine)
    assert ledger.records("acme", "invoice")["29684"].facts == {"attached_at": T0.isoformat()}
    assert ledger.high_water("acme", "invoices") == date(2026, 11, 24)
    engine.dispose()


def test_a_database_migrated_by_a_newer_release_is_refused_with_the_reason(database):
    engine = database.engine()
    Ledger(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrations.LedgerTooNew, match="newer release"):
        Ledger(engine)
    engine.dispose()

"""The ledger keeps one owner per document, even when runs race, on SQLite and on PostgreSQL."""
from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from ledger import Candidate, DocState, Ledger, engine_for_url


def _candidates(n: int, offset: int = 0) -> list[Candidate]:
    return [Candidate(autotask_id=offset + i, autotask_number=f"INV-{offset + i}", natural_key=f"INV-{offset + i}", content_hash=f"h{i}") for i in range(n)]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        yield Ledger(engine_for_url(f"sqlite+pysqlite:///{tmp_path / 'ledger.db'}"))
        return
    url = request.getfixturevalue("postgres_url")
    engine = engine_for_url(url)
    schema = f"ledger_test_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = engine_for_url(url).execution_options(schema_translate_map={None: schema})
    yield Ledger(engine)
    with engine_for_url(url).begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def test_racing_runs_claim_each_document_once(ledger):
    docs = _candidates(40)
    claims: dict[str, list[Candidate]] = {}
    barrier = threading.Barrier(4)

    def run(name: str) -> None:
        barrier.wait()
        claims[name] = ledger.claim("acme", "invoice", docs, run_id=name, idempotency_key=f"key-{name}")

    threads = [threading.Thread(target=run, args=(f"run-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners: dict[int, list[str]] = {}
    for name, claimed in claims.items():
        for c in claimed:
            owners.setdefault(c.autotask_id, []).append(name)
    assert sorted(owners) == [d.autotask_id for d in docs]
    assert all(len(v) == 1 for v in owners.values()), owners


def test_synced_documents_are_never_claimed_again(ledger):
    docs = _candidates(3)
    ledger.claim("acme", "invoice", docs, run_id="r1", idempotency_key="k1")
    ledger.record_synced("acme", "invoice", 0, xero_id="x0", xero_number="INV-0")
    # Only the run that claimed a `sending` row may set it aside: for any other, Xero may hold it.
    assert not ledger.set_aside("acme", "invoice", 1, autotask_number="INV-1", reason="bad tax", fix="map it")
    assert not ledger.set_aside("acme", "invoice", 1, autotask_number="INV-1", reason="bad tax", fix="map it", run_id="r2")
    assert ledger.records("acme", "invoice")[1].state == DocState.SENDING
    assert ledger.set_aside("acme", "invoice", 1, autotask_number="INV-1", reason="bad tax", fix="map it", run_id="r1")
    again = ledger.claim("acme", "invoice", docs, run_id="r2", idempotency_key="k2")
    # 0 is synced; 1 was set aside and is retried; 2 is still in flight in r1.
    assert [c.autotask_id for c in again] == [1]
    rows = ledger.records("acme", "invoice")
    assert rows[0].state == DocState.SYNCED and rows[0].xero_id == "x0"
    assert rows[2].state == DocState.SENDING and rows[2].run_id == "r1"


def test_unanswered_rows_are_stale_only_when_their_run_is_gone(ledger):
    ledger.claim("acme", "invoice", _candidates(2), run_id="dead", idempotency_key="k")
    ledger.claim("acme", "invoice", _candidates(2, offset=10), run_id="live", idempotency_key="k2")
    stale = ledger.stale("acme", "invoice", run_id="me", owner_alive=lambda run: run == "live")
    assert sorted(r.autotask_id for r in stale) == [0, 1]
    # With the lease over, even a run that looks alive is presumed stuck.
    stale = ledger.stale("acme", "invoice", run_id="me", owner_alive=lambda run: True, lease=timedelta(0))
    assert sorted(r.autotask_id for r in stale) == [0, 1, 10, 11]
    ledger.release("acme", "invoice", 0)
    assert [c.autotask_id for c in ledger.claim("acme", "invoice", _candidates(2), run_id="me", idempotency_key="k3")] == [0]


def test_tenants_do_not_see_each_others_rows(ledger):
    ledger.claim("acme", "invoice", _candidates(2), run_id="r", idempotency_key="k")
    assert [c.autotask_id for c in ledger.claim("globex", "invoice", _candidates(2), run_id="r", idempotency_key="k")] == [0, 1]
    assert len(ledger.records("acme", "invoice")) == 2


def test_high_water_only_moves_forward(ledger):
    from datetime import date

    assert ledger.high_water("acme", "invoice") is None
    ledger.advance_high_water("acme", "invoice", date(2026, 11, 20))
    ledger.advance_high_water("acme", "invoice", date(2026, 11, 1))
    assert ledger.high_water("acme", "invoice") == date(2026, 11, 20)

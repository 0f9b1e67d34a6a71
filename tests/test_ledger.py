"""The ledger keeps one owner per document, even when runs race, on SQLite and on PostgreSQL."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from ledger import Candidate, DocState, Ledger, NaturalKeyKind, WindowState, engine_for_url
from tests.ledger_support import engine_in_schema


def _candidates(n: int, offset: int = 0) -> list[Candidate]:
    return [Candidate(source_id=str(offset + i), source_number=f"INV-{offset + i}", natural_key=f"INV-{offset + i}",
                      content_hash=f"h{i}", natural_key_kind=NaturalKeyKind.NUMBER) for i in range(n)]


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        yield Ledger(engine_for_url(f"sqlite+pysqlite:///{tmp_path / 'ledger.db'}"))
        return
    url = request.getfixturevalue("postgres_url")
    engine = engine_in_schema(url, request.getfixturevalue("postgres_schema"))
    yield Ledger(engine)
    engine.dispose()


def _race(ledger, batches: dict[str, list[Candidate]]) -> dict[str, list[str]]:
    """Each run claims its batch at the same moment, in a thread of its own: source id -> the runs that own it."""
    claims: dict[str, list[Candidate]] = {}
    barrier = threading.Barrier(len(batches))

    def run(name: str) -> None:
        barrier.wait()
        claims[name] = ledger.claim("acme", "invoice", batches[name], run_id=name, idempotency_key=f"key-{name}")

    threads = [threading.Thread(target=run, args=(name,)) for name in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners: dict[str, list[str]] = {}
    for name, claimed in claims.items():
        for c in claimed:
            owners.setdefault(c.source_id, []).append(name)
    return owners


def test_racing_runs_claim_each_document_once(ledger):
    docs = _candidates(40)
    owners = _race(ledger, {f"run-{i}": docs for i in range(4)})
    assert sorted(owners, key=int) == [d.source_id for d in docs]
    assert all(len(v) == 1 for v in owners.values()), owners


def test_racing_batches_of_new_and_released_rows_in_any_order_each_have_one_owner(ledger):
    # A batch is claimed in one transaction; runs whose batches overlap in another order, over rows that
    # are new and rows released after a lost answer, still agree on one owner per document.
    import random

    released = _candidates(20)
    ledger.claim("acme", "invoice", released, run_id="old", idempotency_key="k-old")
    for c in released:
        assert ledger.release("acme", "invoice", c.source_id)
    docs = released + _candidates(20, offset=20)
    owners = _race(ledger, {f"run-{i}": random.Random(i).sample(docs, 30) for i in range(4)})
    assert all(len(v) == 1 for v in owners.values()), owners
    rows = ledger.records("acme", "invoice")
    for source_id, (owner,) in owners.items():
        assert rows[source_id].state == DocState.SENDING and rows[source_id].run_id == owner
        assert rows[source_id].attempts == (2 if int(source_id) < 20 else 1)
    unowned = {d.source_id for d in docs} - set(owners)
    assert all(rows[i].state == DocState.PENDING for i in unowned if i in rows)


def test_a_batch_is_recorded_synced_in_one_go(ledger):
    docs = _candidates(5)
    ledger.claim("acme", "invoice", docs, run_id="r1", idempotency_key="k")
    before = ledger.records("acme", "invoice")
    ledger.record_synced_many("acme", "invoice", [
        (c.source_id, dict(target_id=f"x-{c.source_id}", target_number=c.natural_key, target_status="DRAFT",
                           target_total=Decimal("10.50"))) for c in docs[:4]])
    rows = ledger.records("acme", "invoice")
    for c in docs[:4]:
        r = rows[c.source_id]
        assert (r.state, r.target_id, r.target_number, r.target_status) == (DocState.SYNCED, f"x-{c.source_id}",
                                                                              c.natural_key, "DRAFT")
        assert Decimal(r.target_total) == Decimal("10.50") and r.version == before[c.source_id].version + 1
    assert rows[docs[4].source_id].state == DocState.SENDING
    assert ledger.claim("acme", "invoice", docs, run_id="r2", idempotency_key="k2") == []
    # An answer that leaves out the id, status or total keeps what the row holds; the number is its own.
    ledger.record_synced_many("acme", "invoice", [
        (docs[0].source_id, dict(target_id=None, target_number=None, target_status=None, target_total=None)),
        (docs[4].source_id, dict(target_id="x-4", target_number="INV-4", target_status=None, target_total=None))])
    again = ledger.records("acme", "invoice")
    first = again[docs[0].source_id]
    assert (first.target_id, first.target_number, first.target_status, Decimal(first.target_total)) == (
        f"x-{docs[0].source_id}", None, "DRAFT", Decimal("10.50"))
    last = again[docs[4].source_id]
    assert (last.state, last.target_id, last.target_number, last.target_status, last.target_total) == (
        DocState.SYNCED, "x-4", "INV-4", None, None)
    assert again[docs[1].source_id].version == rows[docs[1].source_id].version


def test_synced_documents_are_never_claimed_again(ledger):
    docs = _candidates(3)
    ledger.claim("acme", "invoice", docs, run_id="r1", idempotency_key="k1")
    ledger.record_synced("acme", "invoice", "0", target_id="x0", target_number="INV-0")
    # Only the run that claimed a `sending` row may set it aside: for any other, Xero may hold it.
    assert not ledger.set_aside("acme", "invoice", "1", source_number="INV-1", reason="bad tax", fix="map it")
    assert not ledger.set_aside("acme", "invoice", "1", source_number="INV-1", reason="bad tax", fix="map it", run_id="r2")
    assert ledger.records("acme", "invoice")["1"].state == DocState.SENDING
    assert ledger.set_aside("acme", "invoice", "1", source_number="INV-1", reason="bad tax", fix="map it", run_id="r1")
    again = ledger.claim("acme", "invoice", docs, run_id="r2", idempotency_key="k2")
    # 0 is synced; 1 was set aside and is retried; 2 is still in flight in r1.
    assert [c.source_id for c in again] == ["1"]
    rows = ledger.records("acme", "invoice")
    assert rows["0"].state == DocState.SYNCED and rows["0"].target_id == "x0"
    assert rows["2"].state == DocState.SENDING and rows["2"].run_id == "r1"


def test_a_lookup_moves_a_row_only_if_no_other_run_claimed_it_since(ledger):
    # Found by the fault soak (seed 219): a run looked up a pending row whose answer had been lost, another
    # run claimed and sent it meanwhile, and the first run's "not in Xero" released that claim, so the
    # document was sent a second time.
    [doc] = _candidates(1)
    ledger.claim("acme", "invoice", [doc], run_id="r1", idempotency_key="k1")
    ledger.release("acme", "invoice", "0")
    read = ledger.records("acme", "invoice")["0"]  # r1 reads it pending, and looks it up
    assert ledger.claim("acme", "invoice", [doc], run_id="r2", idempotency_key="k2") == [doc]
    assert not ledger.release("acme", "invoice", "0", version=read.version)
    assert not ledger.record_synced("acme", "invoice", "0", target_id="x0", target_number="INV-0", version=read.version)
    row = ledger.records("acme", "invoice")["0"]
    assert (row.state, row.run_id, row.target_id) == (DocState.SENDING, "r2", None)
    # The row as r2 holds it moves, once.
    assert ledger.record_synced("acme", "invoice", "0", target_id="x1", target_number="INV-0", version=row.version)
    assert not ledger.release("acme", "invoice", "0", version=row.version)
    assert ledger.records("acme", "invoice")["0"].state == DocState.SYNCED


def test_unanswered_rows_are_stale_only_when_their_run_is_gone(ledger):
    ledger.claim("acme", "invoice", _candidates(2), run_id="dead", idempotency_key="k")
    ledger.claim("acme", "invoice", _candidates(2, offset=10), run_id="live", idempotency_key="k2")
    stale = ledger.stale("acme", "invoice", run_id="me", owner_alive=lambda run: run == "live")
    assert sorted(r.source_id for r in stale) == ["0", "1"]
    # With the lease over, even a run that looks alive is presumed stuck.
    stale = ledger.stale("acme", "invoice", run_id="me", owner_alive=lambda run: True, lease=timedelta(0))
    assert sorted(r.source_id for r in stale) == ["0", "1", "10", "11"]
    ledger.release("acme", "invoice", "0")
    assert [c.source_id for c in ledger.claim("acme", "invoice", _candidates(2), run_id="me", idempotency_key="k3")] == ["0"]


def test_tenants_do_not_see_each_others_rows(ledger):
    ledger.claim("acme", "invoice", _candidates(2), run_id="r", idempotency_key="k")
    assert [c.source_id for c in ledger.claim("globex", "invoice", _candidates(2), run_id="r", idempotency_key="k")] == ["0", "1"]
    assert len(ledger.records("acme", "invoice")) == 2


def test_high_water_only_moves_forward(ledger):
    assert ledger.high_water("acme", "invoices") is None
    ledger.advance_high_water("acme", "invoices", date(2026, 11, 20))
    ledger.advance_high_water("acme", "invoices", date(2026, 11, 1))
    assert ledger.high_water("acme", "invoices") == date(2026, 11, 20)
    assert ledger.high_water("acme", "credit_notes") is None  # one mark per flow


def test_a_row_keeps_every_field_under_its_general_name(ledger):
    c = Candidate(source_id="501", source_number="INV-501", natural_key="https://at.example/501", content_hash="h",
                  document_date=date(2026, 11, 2), contact_id="contact-1", natural_key_kind=NaturalKeyKind.URL)
    assert ledger.claim("acme", "invoice", [c], run_id="r1", idempotency_key="k") == [c]
    ledger.record_synced("acme", "invoice", "501", target_id="x-501", target_number="INV-9", target_status="AUTHORISED",
                         target_total=Decimal("1234.50"))
    row = ledger.records("acme", "invoice", ["501"])["501"]
    assert (row.source, row.source_id, row.source_number, row.kind) == ("autotask", "501", "INV-501", "invoice")
    assert (row.natural_key, row.natural_key_kind, row.contact_id) == ("https://at.example/501", "url", "contact-1")
    assert (row.target_id, row.target_number, row.target_status, row.target_total) == ("x-501", "INV-9", "AUTHORISED", "1234.50")
    assert row.document_date == date(2026, 11, 2) and row.facts == {} and row.attached_at is None

    ledger.mark_attached("acme", "invoice", "501")
    ledger.set_facts("acme", "invoice", "501", pdf_name="Invoice_501.pdf")
    row = ledger.records("acme", "invoice")["501"]
    assert set(row.facts) == {"attached_at", "pdf_name"}  # merged, not replaced
    assert isinstance(row.attached_at, datetime) and row.attached_at.tzinfo is not None
    assert row.attached_at == datetime.fromisoformat(row.facts["attached_at"])

    ledger.record_updated("acme", "invoice", "501", content_hash="h2", target_status="DRAFT", target_total=7)
    ledger.note("acme", "invoice", "501", "look at it", target_status="PAID")
    row = ledger.records("acme", "invoice")["501"]
    assert (row.content_hash, row.target_status, row.target_total, row.attention) == ("h2", "PAID", "7", "look at it")
    ledger.record_voided("acme", "invoice", "501", target_status="VOIDED")
    assert ledger.records("acme", "invoice")["501"].state == DocState.VOIDED


def test_source_ids_are_text_and_sources_are_kept_apart(ledger):
    with pytest.raises(TypeError, match="text"):
        ledger.records("acme", "invoice", [501])
    with pytest.raises(TypeError, match="text"):
        ledger.release("acme", "invoice", 501)
    # The same id from two source systems is two documents.
    ledger.upsert_synced("acme", "contact", "174", target_id="c-at", content_hash="h", source_number="174",
                         target_number="174", natural_key_kind=NaturalKeyKind.CONTACT_NUMBER)
    ledger.upsert_synced("acme", "contact", "174", target_id="c-other", content_hash="h", source="other")
    assert ledger.records("acme", "contact")["174"].target_id == "c-at"
    assert ledger.records("acme", "contact", source="other")["174"].target_id == "c-other"
    assert ledger.records("acme", "contact")["174"].natural_key_kind == "contact_number"


def test_unfinished_lists_text_ids_in_numeric_order(ledger):
    for i in ("10", "9", "100"):
        assert ledger.set_aside("acme", "invoice", i, source_number=f"INV-{i}", reason="r", fix="f")
    ledger.set_aside("acme", "credit_note", "11", source_number="CN-11", reason="r", fix="f")
    assert ledger.unfinished("acme", ("invoice", "credit_note")) == ["9", "10", "11", "100"]
    ledger.forget_set_aside("acme", "invoice", ["9", "10"])
    assert ledger.unfinished("acme", ["invoice"]) == ["100"]


def test_windows_are_started_finished_and_listed(ledger):
    nov, dec = (date(2026, 11, 1), date(2026, 11, 30)), (date(2026, 12, 1), date(2026, 12, 31))
    ledger.start_window("acme", "invoices", *dec, run_id="r1")
    started = ledger.start_window("acme", "invoices", *nov, run_id="r1")
    assert started.state == WindowState.RUNNING and started.finished_at is None
    assert ledger.finish_window("acme", "invoices", *nov, run_id="r1", facts={"created": 12})
    # A run that took a window over is the one that may finish it.
    ledger.start_window("acme", "invoices", *dec, run_id="r2")
    assert not ledger.finish_window("acme", "invoices", *dec, run_id="r1")
    windows = ledger.windows("acme", "invoices")
    assert [(w.window_start, w.window_end, w.state, w.run_id) for w in windows] == [
        (*nov, WindowState.DONE, "r1"), (*dec, WindowState.RUNNING, "r2")]
    assert windows[0].facts == {"created": 12} and windows[0].finished_at is not None
    assert ledger.windows("acme", "bills") == [] and ledger.windows("globex", "invoices") == []
    with pytest.raises(LookupError):
        ledger.finish_window("acme", "invoices", date(2027, 1, 1), date(2027, 1, 31), run_id="r1")

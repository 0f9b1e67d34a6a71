"""Invoice options end to end, each a real Prefect run of the invoices flow over HTTP against both simulators:
the import status "approved and marked sent", the write-back to Autotask of Xero's invoice numbers and the
sync date, and the warning before Xero's refresh token goes unused for too long.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from atx.connections import ledger_for
from ledger import DocState
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import END, SINCE, UNTIL, connect, live_invoices, manual_clock, mapping_file, run
from tests.test_invoices_mapping_e2e import NZ, add_invoice

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=6, window_end=END, clock=manual_clock()) as s:
        yield s


def synced(settings, kind: str) -> dict:
    rows = ledger_for(settings).records(settings.name, kind)
    return {sid: r for sid, r in rows.items() if r.state == DocState.SYNCED}


# ---- 1. approved and marked sent -------------------------------------------------------------------------
def test_approved_and_sent_invoices_arrive_authorised_and_marked_sent(stack, tmp_path):
    add_invoice(stack, 990101, NZ, date(2026, 11, 20), [{"rate": "-40.00"}])
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, status="AUTHORISED_SENT"))
    _, summary = run()
    assert summary.set_aside_count == 0, summary.message
    invoices = synced(settings, "invoice")
    credits = synced(settings, "credit_note")
    assert invoices and "990101" in credits
    for row in invoices.values():
        doc = stack.org.invoices[row.target_id]
        assert doc["Status"] == "AUTHORISED" and doc.get("SentToContact") is True, row.source_number
    # Xero keeps a credit note's SentToContact read-only: the credit note is approved, not marked sent.
    for row in credits.values():
        doc = stack.org.credit_notes[row.target_id]
        assert doc["Status"] == "AUTHORISED" and doc.get("SentToContact") is not True


# ---- 3. refresh-token age --------------------------------------------------------------------------------
def _token_saved_days_ago(settings, days: int) -> datetime:
    """Set the ledger's record of when the token set was last saved (each refresh saves it)."""
    from sqlalchemy import update

    from ledger.models import StoredToken

    moment = datetime.now(timezone.utc) - timedelta(days=days)
    ledger = ledger_for(settings)
    with ledger.session() as s:
        s.execute(update(StoredToken).where(StoredToken.connection == settings.token_connection)
                  .values(updated_at=moment))
        s.commit()
    return moment


def test_a_refresh_token_unused_for_46_days_is_warned_in_check_and_in_the_run(stack):
    from atx.check import check_tenant

    settings = connect(stack, "acme")
    assert not [p for p in check_tenant("acme") if "refresh token" in p.problem]
    _, fresh = run()
    assert fresh.warnings == []

    saved = _token_saved_days_ago(settings, 46)
    deadline = (saved + timedelta(days=60)).date().isoformat()
    warned = [p for p in check_tenant("acme") if "refresh token" in p.problem]
    assert len(warned) == 1 and warned[0].severity == "warning"
    assert f"run any sync or `atx connect xero --tenant acme` before {deadline}" in warned[0].problem
    _, summary = run()
    assert len(summary.warnings) == 1 and deadline in summary.warnings[0]
    from tasks.report import summary_markdown
    assert f"before {deadline}" in summary_markdown(summary)


# ---- 2. write-back to Autotask ------------------------------------------------------------------------------
def test_xero_numbers_and_the_sync_date_are_written_back_once_and_a_lost_answer_is_read_back(stack, tmp_path):
    from zoneinfo import ZoneInfo

    from atx.connections import autotask_client
    from clients.autotask import autotask_day
    from core.documents import WRITE_BACK
    from tasks.outcomes import Result

    mapping = mapping_file(tmp_path, invoice_number="xero", status="AUTHORISED",
                           write_back={"invoice_number": True, "web_service_date": True})
    settings = connect(stack, "acme", mapping=mapping)
    before = {str(i["id"]): i["invoiceNumber"] for i in live_invoices(stack)}
    lost = stack.autotask_faults.script("lost_response", method="PATCH", times=1)
    _, first = run()
    assert lost.fired == 1
    invoices = synced(settings, "invoice") | synced(settings, "credit_note")
    assert invoices and first.set_aside_count == 0, first.message
    written = [o for o in first.outcomes if o.kind == WRITE_BACK.name]
    # The PATCH whose answer was lost had been applied: read back and recorded, not written again.
    assert sorted(o.source_id for o in written) == sorted(invoices)
    assert [o.result for o in written].count(Result.RECOVERED) == 1
    assert all(o.result in (Result.CREATED, Result.RECOVERED) for o in written)

    tz = ZoneInfo(settings.time_zone)
    rows = ledger_for(settings).records("acme", WRITE_BACK.name)
    with autotask_client(settings) as at:
        for autotask_id, row in invoices.items():
            held = at.get("Invoices", int(autotask_id))
            assert held["invoiceNumber"] == row.target_number != before[autotask_id]
            claimed = row.claimed_at if row.claimed_at.tzinfo else row.claimed_at.replace(tzinfo=timezone.utc)
            assert autotask_day(held["webServiceDate"]) == claimed.astimezone(tz).date()
            assert rows[autotask_id].state == DocState.SYNCED
            assert row.source_number == before[autotask_id]  # the ledger keeps Autotask's own number

    # A rerun writes nothing (any PATCH would fail), and the invoices, mapped with their own numbers, are unchanged.
    patches = stack.autotask_faults.script("500", method="PATCH", times=1000)
    _, second = run()
    assert patches.fired == 0
    assert not [o for o in second.outcomes if o.kind == WRITE_BACK.name]
    assert second.count(Result.UPDATED) == 0 and second.attention == []
    assert second.count(Result.ALREADY) == len(invoices)


def test_writing_back_the_invoice_number_needs_xero_numbering(tmp_path):
    from core.mapping import MappingError, load_mapping

    with pytest.raises(MappingError, match="invoice_number: xero"):
        load_mapping(mapping_file(tmp_path, write_back={"invoice_number": True}))

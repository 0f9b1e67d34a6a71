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

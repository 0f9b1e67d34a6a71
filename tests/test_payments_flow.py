"""The payments flow end to end: real Prefect runs, over HTTP, against both simulators.

The invoices flow first puts approved invoices into Xero. Then a person acts in Xero (a payment, a
credit note, a deletion) or in Autotask (an invoice marked paid), over the same HTTP APIs, and the
payments flow carries it to the other side. Every test ends by checking that the ledger agrees with
both simulators: each paid date it holds is the one Autotask shows, each payment it made is in Xero
once, and no invoice was paid twice.
"""
from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import httpx
import pytest
import yaml

from atx.connections import autotask_client, ledger_for, xero_gateway
from clients.autotask import autotask_day
from core.documents import INVOICE, PAID_DATE, PAYMENT, PaymentDraft
from core.payments import written_paid_date
from ledger import DocState
from sandbox.stack import XERO_CLIENT_ID, SandboxStack

pytestmark = pytest.mark.e2e

SINCE, UNTIL = date(2026, 10, 1), date(2026, 11, 30)
BANK = "090"


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=12, window_end=UNTIL) as s:
        yield s


def approved_mapping(tmp_path) -> str:
    mapping = yaml.safe_load(open("mappings/demo.yaml"))
    mapping["status"] = "AUTHORISED"
    path = tmp_path / "approved.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return str(path)


def connect(stack, tmp_path, tenant="acme", **payments):
    payments.setdefault("bank_account", BANK)
    return stack.connect_tenant(tenant, approved_mapping(tmp_path), payments=payments)


def sync_invoices(tenant="acme"):
    from flows.invoices import invoices

    state = invoices(tenant=tenant, since=SINCE, until=UNTIL, return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def sync_payments(tenant="acme", **params):
    from flows.payments import payments

    params.setdefault("since", SINCE)
    params.setdefault("until", UNTIL)
    state = payments(tenant=tenant, return_state=True, **params)
    assert state.is_completed(), state.message
    return state.result()


def synced_invoices(settings) -> dict[str, object]:
    """Autotask invoice id -> its ledger row, for the invoices this sync put into Xero."""
    rows = ledger_for(settings).records(settings.name, INVOICE.name)
    return {sid: r for sid, r in rows.items() if r.state == DocState.SYNCED}


def xero_invoice(settings, xero_id):
    return xero_gateway(settings).find(INVOICE, ids=[xero_id])[0]


def autotask_invoice(settings, autotask_id) -> dict:
    with autotask_client(settings) as at:
        return at.get("Invoices", int(autotask_id))


def pay_in_xero(settings, xero_id, amount, on: date, reference="bank feed"):
    """A person records a payment in Xero."""
    written = xero_gateway(settings).create_payments(
        [PaymentDraft(invoice_id=xero_id, amount=Decimal(amount), date=on, account_code=BANK, reference=reference)],
        idempotency_key=f"person-{xero_id}-{amount}-{on}")
    assert written[0].ok, written[0].errors
    return written[0].payment


def paid_and_written_back(settings, on: date = date(2026, 11, 26)):
    """The first synced invoice, paid in full in Xero on `on`, and a payments run that wrote it back."""
    autotask_id, row = next(iter(synced_invoices(settings).items()))
    payment = pay_in_xero(settings, row.target_id, xero_invoice(settings, row.target_id).amount_due, on)
    sync_payments()
    return autotask_id, row, payment


def xero_raw(stack, settings, method, path, **kwargs) -> httpx.Response:
    token = stack.xero.issue_tokens(XERO_CLIENT_ID, [settings.xero.tenant_id])["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Xero-Tenant-Id": settings.xero.tenant_id, "Accept": "application/json",
               "Content-Type": "application/json"}
    return httpx.request(method, stack.xero_url + "/api.xro/2.0/" + path, headers=headers, timeout=10, **kwargs)


def assert_ledger_agrees(stack, settings) -> None:
    """Each paid date the ledger wrote is what Autotask holds; each payment it made is in Xero, once; no
    synced invoice is paid beyond its total."""
    ledger = ledger_for(settings)
    for sid, row in ledger.records(settings.name, PAID_DATE.name).items():
        if row.state != DocState.SYNCED:
            continue
        written = written_paid_date(row.target_number)
        assert autotask_day(autotask_invoice(settings, sid).get("paidDate")) == written, (sid, written)
    payments = {p.id: p for p in xero_gateway(settings).find_payments()}
    made = [r for r in ledger.records(settings.name, PAYMENT.name).values() if r.state == DocState.SYNCED]
    for row in made:
        assert row.target_id in payments and not payments[row.target_id].deleted, row.source_id
    references = Counter(p.reference for p in payments.values() if not p.deleted and (p.reference or "").startswith("Autotask "))
    assert all(n == 1 for n in references.values()), references
    for row in synced_invoices(settings).values():
        doc = xero_invoice(settings, row.target_id)
        assert doc.amount_due is None or doc.amount_due >= 0


def outcome(summary, kind, source_id):
    found = [o for o in summary.outcomes if o.kind == kind and o.source_id == str(source_id)]
    assert len(found) == 1, (kind, source_id, [(o.kind, o.source_id, o.action) for o in summary.outcomes])
    return found[0]


# ---- Xero → Autotask ----------------------------------------------------------------------------------
def test_a_full_payment_is_written_back_once_and_a_partial_one_is_only_reported(stack, tmp_path):
    settings = connect(stack, tmp_path)
    sync_invoices()
    (full_id, full), (part_id, part) = list(synced_invoices(settings).items())[:2]
    full_doc = xero_invoice(settings, full.target_id)
    pay_in_xero(settings, full.target_id, full_doc.amount_due, date(2026, 11, 27))
    part_doc = xero_invoice(settings, part.target_id)
    pay_in_xero(settings, part.target_id, Decimal("10.00"), date(2026, 11, 27))

    planned = sync_payments(dry_run=True)
    assert outcome(planned, PAID_DATE.name, full_id).action == "planned (dry run)"
    assert autotask_invoice(settings, full_id)["paidDate"] is None  # a dry run writes nothing

    first = sync_payments()
    assert outcome(first, PAID_DATE.name, full_id).action == "created"
    from tasks.report import summary_markdown

    report = summary_markdown(first)
    assert "| paid date → Autotask | created | 1 |" in report and "| paid date → Autotask | partly paid | 1 |" in report
    assert autotask_day(autotask_invoice(settings, full_id)["paidDate"]) == date(2026, 11, 27)
    partial = outcome(first, PAID_DATE.name, part_id)
    assert partial.action == "partly paid" and str(part_doc.amount_due - Decimal("10.00")) in partial.reason
    assert autotask_invoice(settings, part_id)["paidDate"] is None

    second = sync_payments()
    assert outcome(second, PAID_DATE.name, full_id).action == "already in Autotask"
    assert second.count("created") == 0
    assert_ledger_agrees(stack, settings)


def test_a_settlement_by_credit_note_sets_the_paid_date_of_the_allocation(stack, tmp_path):
    settings = connect(stack, tmp_path)
    sync_invoices()
    autotask_id, row = next(iter(synced_invoices(settings).items()))
    doc = xero_invoice(settings, row.target_id)
    pay_in_xero(settings, row.target_id, Decimal("5.00"), date(2026, 11, 20))
    rest = doc.amount_due - Decimal("5.00")  # money goes on the wire as a JSON number, digit for digit
    credit = xero_raw(stack, settings, "PUT", "CreditNotes", content=(
        '{"CreditNotes": [{"Type": "ACCRECCREDIT", "Contact": {"ContactID": "%s"}, "Date": "2026-11-25", '
        '"Status": "AUTHORISED", "LineAmountTypes": "NoTax", "LineItems": [{"Description": "Goodwill", '
        '"Quantity": 1, "UnitAmount": %s, "AccountCode": "200"}]}]}' % (doc.contact_id, rest)))
    assert credit.status_code == 200, credit.text
    credit_id = credit.json()["CreditNotes"][0]["CreditNoteID"]
    allocated = xero_raw(stack, settings, "PUT", f"CreditNotes/{credit_id}/Allocations", content=(
        '{"Allocations": [{"Invoice": {"InvoiceID": "%s"}, "Amount": %s, "Date": "2026-11-28"}]}' % (row.target_id, rest)))
    assert allocated.status_code == 200, allocated.text

    summary = sync_payments()
    assert outcome(summary, PAID_DATE.name, autotask_id).action == "created"
    assert autotask_day(autotask_invoice(settings, autotask_id)["paidDate"]) == date(2026, 11, 28)
    assert_ledger_agrees(stack, settings)


def test_a_payment_deleted_in_xero_after_write_back_clears_the_paid_date(stack, tmp_path):
    settings = connect(stack, tmp_path)
    sync_invoices()
    autotask_id, row, payment = paid_and_written_back(settings)
    assert autotask_invoice(settings, autotask_id)["paidDate"] is not None

    assert xero_gateway(settings).delete_payment(payment.id, idempotency_key=f"delete-{payment.id}").ok
    summary = sync_payments()
    assert outcome(summary, PAID_DATE.name, autotask_id).action == "updated in Autotask"
    assert autotask_invoice(settings, autotask_id)["paidDate"] is None
    assert sync_payments().count("updated") == 0  # cleared once
    assert_ledger_agrees(stack, settings)


def test_a_lost_answer_on_clearing_the_paid_date_is_read_back(stack, tmp_path):
    settings = connect(stack, tmp_path)
    sync_invoices()
    autotask_id, row, payment = paid_and_written_back(settings)
    assert xero_gateway(settings).delete_payment(payment.id, idempotency_key=f"delete-{payment.id}").ok
    lost = stack.autotask_faults.script("lost_response", method="PATCH", times=1)
    summary = sync_payments()
    assert lost.fired == 1
    assert outcome(summary, PAID_DATE.name, autotask_id).action == "updated in Autotask"
    assert autotask_invoice(settings, autotask_id)["paidDate"] is None
    assert ledger_for(settings).records("acme", PAID_DATE.name)[autotask_id].target_number.endswith("@unpaid")
    assert sync_payments().count("updated") == 0
    assert_ledger_agrees(stack, settings)


def test_with_clearing_off_a_deleted_payment_is_listed_for_a_person(stack, tmp_path):
    settings = connect(stack, tmp_path, clear_paid_date=False)
    sync_invoices()
    autotask_id, row, payment = paid_and_written_back(settings)
    assert xero_gateway(settings).delete_payment(payment.id, idempotency_key=f"delete-{payment.id}").ok
    summary = sync_payments()
    listed = outcome(summary, PAID_DATE.name, autotask_id)
    assert listed.action == "needs attention" and "2026-11-26" in listed.reason and "by hand" in listed.fix
    assert autotask_day(autotask_invoice(settings, autotask_id)["paidDate"]) == date(2026, 11, 26)
    assert_ledger_agrees(stack, settings)


def test_a_lost_answer_on_the_paid_date_patch_is_read_back_and_not_written_twice(stack, tmp_path):
    settings = connect(stack, tmp_path)
    sync_invoices()
    autotask_id, row = next(iter(synced_invoices(settings).items()))
    pay_in_xero(settings, row.target_id, xero_invoice(settings, row.target_id).amount_due, date(2026, 11, 26))
    lost = stack.autotask_faults.script("lost_response", method="PATCH", times=1)
    summary = sync_payments()
    assert lost.fired == 1
    # Written, its answer lost, read back: recorded as Autotask holds it, and never PATCHed again.
    assert outcome(summary, PAID_DATE.name, autotask_id).action == "recovered"
    assert autotask_day(autotask_invoice(settings, autotask_id)["paidDate"]) == date(2026, 11, 26)
    assert sync_payments().count("created") == 0
    assert_ledger_agrees(stack, settings)


# ---- Autotask → Xero ----------------------------------------------------------------------------------
def mark_paid_in_autotask(settings, autotask_id, on: date):
    with autotask_client(settings) as at:
        assert at.update_invoices([{"id": int(autotask_id), "paidDate": on}])[0].ok


def test_an_invoice_marked_paid_in_autotask_is_paid_in_xero_once(stack, tmp_path):
    settings = connect(stack, tmp_path, to_xero=True)
    sync_invoices()
    (paid_id, paid), (done_id, done) = list(synced_invoices(settings).items())[:2]
    due = xero_invoice(settings, paid.target_id).amount_due
    mark_paid_in_autotask(settings, paid_id, date(2026, 11, 25))
    # One already paid in Xero by a person: nothing is sent for it.
    pay_in_xero(settings, done.target_id, xero_invoice(settings, done.target_id).amount_due, date(2026, 11, 24))
    mark_paid_in_autotask(settings, done_id, date(2026, 11, 24))

    summary = sync_payments(direction="to_xero")
    made = outcome(summary, PAYMENT.name, paid_id)
    assert made.action == "created" and made.xero_total == due
    doc = xero_invoice(settings, paid.target_id)
    assert doc.amount_due == 0 and doc.fully_paid_on_date == date(2026, 11, 25)
    assert outcome(summary, PAYMENT.name, done_id).action == "already paid in Xero"
    assert sync_payments(direction="to_xero").count("created") == 0
    assert_ledger_agrees(stack, settings)


def test_a_lost_answer_on_the_payment_batch_is_looked_up_before_anything_is_sent_again(stack, tmp_path):
    settings = connect(stack, tmp_path, to_xero=True)
    sync_invoices()
    ids = list(synced_invoices(settings))[:2]
    for autotask_id in ids:
        mark_paid_in_autotask(settings, autotask_id, date(2026, 11, 25))
    lost = stack.xero.faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Payments", times=1)
    first = sync_payments(direction="to_xero")
    assert lost.fired == 1
    # The batch reached Xero; its answer did not. The payments are looked up by their marker and recorded,
    # and nothing is sent again.
    assert {outcome(first, PAYMENT.name, i).action for i in ids} == {"recovered"}
    for i in ids:
        assert xero_invoice(settings, synced_invoices(settings)[i].target_id).amount_due == 0
    assert sync_payments(direction="to_xero").count("created") == 0
    assert_ledger_agrees(stack, settings)


def test_the_directions_never_echo_whatever_order_they_run_in(stack, tmp_path):
    settings = connect(stack, tmp_path, to_xero=True)
    sync_invoices()
    (from_xero, a), (from_autotask, b) = list(synced_invoices(settings).items())[:2]
    pay_in_xero(settings, a.target_id, xero_invoice(settings, a.target_id).amount_due, date(2026, 11, 26))
    mark_paid_in_autotask(settings, from_autotask, date(2026, 11, 27))

    # Xero → Autotask, then Autotask → Xero: the paid date written from Xero is not paid back.
    sync_payments(direction="to_autotask")
    back = sync_payments(direction="to_xero")
    assert outcome(back, PAYMENT.name, from_xero).action == "came from the other side"
    made = outcome(back, PAYMENT.name, from_autotask)
    assert made.action == "created"
    # Autotask → Xero, then Xero → Autotask: the payment made from Autotask is not written back.
    again = sync_payments(direction="to_autotask")
    assert outcome(again, PAID_DATE.name, from_autotask).action == "came from the other side"
    # A payment deleted in Xero after its paid date was written: the stale Autotask date is not paid again.
    payment = [p for p in xero_gateway(settings).find_payments(invoice_ids=[a.target_id]) if not p.deleted][0]
    assert xero_gateway(settings).delete_payment(payment.id, idempotency_key=f"delete-{payment.id}").ok
    echo = sync_payments(direction="to_xero")
    assert outcome(echo, PAYMENT.name, from_xero).action == "came from the other side"
    assert xero_invoice(settings, a.target_id).amount_due > 0
    both = sync_payments()
    assert both.count("created") == 0
    assert autotask_invoice(settings, from_xero)["paidDate"] is None
    assert_ledger_agrees(stack, settings)


def test_a_draft_invoice_in_xero_is_set_aside_with_the_fix(stack, tmp_path):
    settings = stack.connect_tenant("acme", payments={"to_xero": True, "bank_account": BANK})  # the demo's drafts
    sync_invoices()
    autotask_id, _ = next(iter(synced_invoices(settings).items()))
    mark_paid_in_autotask(settings, autotask_id, date(2026, 11, 25))
    summary = sync_payments(direction="to_xero")
    aside = outcome(summary, PAYMENT.name, autotask_id)
    assert aside.action == "set aside" and "DRAFT" in aside.reason and "approve" in aside.fix
    assert xero_invoice(settings, synced_invoices(settings)[autotask_id].target_id).amount_paid == 0
    assert_ledger_agrees(stack, settings)


def test_an_autotask_invoice_already_showing_xeros_date_is_recorded_not_written(stack, tmp_path):
    settings = connect(stack, tmp_path)
    sync_invoices()
    autotask_id, row = next(iter(synced_invoices(settings).items()))
    pay_in_xero(settings, row.target_id, xero_invoice(settings, row.target_id).amount_due, date(2026, 11, 26))
    mark_paid_in_autotask(settings, autotask_id, date(2026, 11, 26))  # a person did both
    patches = stack.autotask_faults.script("500", method="PATCH", times=1000)  # any PATCH would fail the run's write
    summary = sync_payments()
    assert patches.fired == 0
    assert outcome(summary, PAID_DATE.name, autotask_id).action == "recovered"
    assert_ledger_agrees(stack, settings)


def test_the_paid_date_is_the_day_in_the_organisation_where_the_payment_was_made(atx_home, prefect_server, tmp_path):
    from datetime import datetime, timezone

    from sandbox.clock import ManualClock

    # 20:00 UTC on 29 November is 09:00 on 30 November in Auckland, where the demo organisation is.
    clock = ManualClock(datetime(2026, 11, 29, 20, 0, tzinfo=timezone.utc))
    with SandboxStack(seed=11, invoices=6, window_end=UNTIL, clock=clock) as stack:
        settings = connect(stack, tmp_path)
        sync_invoices()
        autotask_id, row = next(iter(synced_invoices(settings).items()))
        due = xero_invoice(settings, row.target_id).amount_due
        # A person records the payment in Xero without a date: Xero dates it today where the organisation is.
        made = xero_raw(stack, settings, "PUT", "Payments", content=(
            '{"Payments": [{"Invoice": {"InvoiceID": "%s"}, "Account": {"Code": "%s"}, "Amount": %s}]}'
            % (row.target_id, BANK, due)))
        assert made.status_code == 200, made.text
        sync_payments()
        assert autotask_invoice(settings, autotask_id)["paidDate"].startswith("2026-11-30")
        assert_ledger_agrees(stack, settings)


def test_atx_sync_payments_runs_the_flow_from_the_command_line(stack, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    settings = connect(stack, tmp_path)
    sync_invoices()
    autotask_id, row = next(iter(synced_invoices(settings).items()))
    pay_in_xero(settings, row.target_id, xero_invoice(settings, row.target_id).amount_due, date(2026, 11, 26))
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    result = subprocess.run([sys.executable, "-m", "atx.cli", "sync", "payments", "--tenant", "acme", "--since",
                             SINCE.isoformat(), "--until", UNTIL.isoformat()], env=env, capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parent.parent, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert row.source_number in result.stdout and "created" in result.stdout
    assert autotask_invoice(settings, autotask_id)["paidDate"].startswith("2026-11-26")

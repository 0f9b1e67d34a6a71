"""core/payments.py: which paid dates go back to Autotask and which Autotask paid dates become payments.
Pure functions over plain values; the flow tests (test_payments_flow.py) run them over HTTP."""
from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.documents import KeyKind, Status, XeroAllocation, XeroDocument
from core.payments import (
    FROM_OTHER_SIDE, NOT_CLEARED, PAID_IN_XERO, PARTLY_PAID, AutotaskPaid, SyncedInvoice, local_date, paid_date_key, written_paid_date,
    plan_paid_dates, plan_payments, settled_on,
)

AUCKLAND, NEW_YORK = ZoneInfo("Pacific/Auckland"), ZoneInfo("America/New_York")
INVOICE = SyncedInvoice("101", "INV-101", "x-101")


def doc(status=Status.AUTHORISED, due="100.00", paid="0", allocations=(), fully_paid_on=None, updated=None) -> XeroDocument:
    return XeroDocument(kind="invoice", id="x-101", number="INV-101", status=status, total=Decimal("100.00"),
                        amount_due=Decimal(due), amount_paid=Decimal(paid), allocations=tuple(allocations),
                        fully_paid_on_date=fully_paid_on, updated=updated)


def payment(pid="p1", amount="100.00", on=date(2026, 11, 27)) -> XeroAllocation:
    return XeroAllocation("payment", pid, Decimal(amount), on)


def plan_back(*docs, written=None, ours=(), clear=True):
    return plan_paid_dates(list(docs), {"x-101": INVOICE}, written or {}, set(ours), clear=clear, tz=AUCKLAND)


def test_dates_stay_dates_and_moments_become_the_tenants_day():
    assert local_date(date(2026, 11, 30), NEW_YORK) == date(2026, 11, 30)
    # Xero's date fields arrive as midnight UTC of the organisation's day: never shifted back a day in New York.
    assert local_date(datetime(2026, 11, 30, tzinfo=timezone.utc), NEW_YORK) == date(2026, 11, 30)
    # A real moment (UpdatedDateUTC) is the day it was where the tenant is: an Auckland evening, not the UTC day.
    evening = datetime(2026, 11, 30, 7, 30, tzinfo=timezone.utc)  # 20:30 on 30 November in Auckland
    morning = datetime(2026, 11, 30, 20, 30, tzinfo=timezone.utc)  # 09:30 on 1 December in Auckland
    assert local_date(evening, AUCKLAND) == date(2026, 11, 30) and local_date(morning, AUCKLAND) == date(2026, 12, 1)
    assert local_date(morning, NEW_YORK) == date(2026, 11, 30)


def test_the_settlement_date_is_xeros_fully_paid_date_else_the_last_allocation_else_the_moment():
    assert settled_on(doc(Status.PAID, "0", allocations=[payment(on=date(2026, 11, 20))],
                          fully_paid_on=date(2026, 11, 21)), AUCKLAND) == date(2026, 11, 21)
    assert settled_on(doc(Status.PAID, "0", allocations=[payment("a", "40", date(2026, 11, 20)),
                                                         payment("b", "60", date(2026, 11, 25))]), AUCKLAND) == date(2026, 11, 25)
    assert settled_on(doc(Status.PAID, "0", updated=datetime(2026, 11, 30, 20, 30, tzinfo=timezone.utc)),
                      AUCKLAND) == date(2026, 12, 1)


def test_a_fully_paid_invoice_gets_its_paid_date_keyed_by_invoice_and_date():
    plans, remarks = plan_back(doc(Status.PAID, "0", "100.00", [payment()], date(2026, 11, 27)))
    assert remarks == [] and len(plans) == 1
    p = plans[0]
    assert (p.kind, p.source_id, p.date, p.natural_key, p.natural_key_kind) == (
        "paid_date", "101", date(2026, 11, 27), "101@2026-11-27", KeyKind.NUMBER)
    assert paid_date_key("101", None) == "101@unpaid"
    assert written_paid_date(p.natural_key) == date(2026, 11, 27) and written_paid_date("101@unpaid") is None


def test_a_partial_payment_writes_nothing_and_is_reported_with_the_amount_due():
    plans, remarks = plan_back(doc(Status.AUTHORISED, "60.00", "40.00", [payment(amount="40.00")]))
    assert plans == [] and [r.result for r in remarks] == [PARTLY_PAID] and "60.00 of 100.00" in remarks[0].reason


def test_an_undone_settlement_clears_the_written_date_or_is_listed_when_clearing_is_off():
    undone = doc(Status.AUTHORISED, "100.00")
    plans, _ = plan_back(undone, written={"101": date(2026, 11, 27)})
    assert [(p.date, p.natural_key) for p in plans] == [(None, "101@unpaid")]
    plans, remarks = plan_back(undone, written={"101": date(2026, 11, 27)}, clear=False)
    assert plans == [] and remarks[0].result == NOT_CLEARED and "2026-11-27" in remarks[0].reason
    # Cleared before (the ledger holds "unpaid"): nothing more to do.
    assert plan_back(undone, written={"101": None}) == ([], [])


def test_a_settlement_made_only_by_this_syncs_own_payments_is_not_written_back():
    plans, remarks = plan_back(doc(Status.PAID, "0", "100.00", [payment("ours")], date(2026, 11, 27)), ours={"ours"})
    assert plans == [] and remarks[0].result == FROM_OTHER_SIDE


def test_a_settlement_by_this_syncs_payment_not_recorded_yet_is_known_by_its_marker():
    # Found by the fault soak (seed 212): a run reading settlements while another run's payment was in Xero
    # but not yet recorded wrote Xero's settlement back as a paid date of its own: an echo.
    marker = "Autotask INV-101 paid 2026-11-27"
    ours = XeroAllocation("payment", "p1", Decimal("100.00"), date(2026, 11, 27), marker)
    paid = {"status": Status.PAID, "due": "0", "paid": "100.00", "fully_paid_on": date(2026, 11, 27)}
    plans, remarks = plan_back(doc(**paid, allocations=[ours]), ours={marker})
    assert plans == [] and [r.result for r in remarks] == [FROM_OTHER_SIDE]
    a_persons = XeroAllocation("payment", "p2", Decimal("100.00"), date(2026, 11, 27), "bank feed")
    plans, _ = plan_back(doc(**paid, allocations=[a_persons]), ours={marker})
    assert [p.natural_key for p in plans] == ["101@2026-11-27"]


def test_invoices_this_sync_did_not_create_are_left_alone():
    other = XeroDocument(kind="invoice", id="someone-elses", number="X", status=Status.PAID, total=Decimal(1),
                         amount_due=Decimal(0))
    assert plan_back(other) == ([], [])


def test_an_autotask_paid_date_becomes_a_payment_of_the_amount_due_unless_xero_is_settled():
    paid = [AutotaskPaid("101", "INV-101", date(2026, 11, 25))]
    plans, remarks = plan_payments(paid, {"101": doc(Status.AUTHORISED, "60.00", "40.00")}, {}, account_id="acc",
                                   account_name="090")
    p = plans[0]
    assert (p.total, p.date, p.applies_to, p.account_id, p.natural_key_kind) == (
        Decimal("60.00"), date(2026, 11, 25), "x-101", "acc", KeyKind.REFERENCE)
    assert p.reference == p.natural_key == "Autotask INV-101 paid 2026-11-25" and p.sendable and remarks == []
    plans, remarks = plan_payments(paid, {"101": doc(Status.PAID, "0")}, {}, account_id="acc", account_name="090")
    assert plans == [] and remarks[0].result == PAID_IN_XERO


def test_a_paid_date_this_sync_wrote_is_never_paid_back():
    paid = [AutotaskPaid("101", "INV-101", date(2026, 11, 25))]
    plans, remarks = plan_payments(paid, {"101": doc()}, {"101": date(2026, 11, 25)}, account_id="acc",
                                   account_name="090")
    assert plans == [] and remarks[0].result == FROM_OTHER_SIDE


def test_a_draft_invoice_or_an_unknown_account_sets_the_payment_aside_with_the_fix():
    paid = [AutotaskPaid("101", "INV-101", date(2026, 11, 25))]
    plans, _ = plan_payments(paid, {"101": doc(Status.DRAFT)}, {}, account_id="acc", account_name="090")
    assert "DRAFT" in plans[0].set_aside.reason and "approve" in plans[0].set_aside.fix
    plans, _ = plan_payments(paid, {"101": doc()}, {}, account_id=None, account_name="Bank of Nowhere")
    assert "Bank of Nowhere" in plans[0].set_aside.reason and "payments.bank_account" in plans[0].set_aside.fix

"""The document kind table and decide(): pure, no HTTP."""
from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal as D

import pytest

from core.documents import (
    BILL, CREDIT_NOTE, INVOICE, KINDS, PURCHASE_ORDER, Action, ContactRef, DocumentPlan, KeyKind, Line, SetAside,
    Status, XeroDocument, decide, plan_hash, with_hash,
)


@dataclass
class Row:
    state: str
    content_hash: str | None = None
    target_id: str | None = None
    natural_key: str | None = None
    attempts: int = 1
    contact_id: str | None = None


def plan(kind: str = "invoice", **values) -> DocumentPlan:
    base = DocumentPlan(
        kind=kind, source_id="101", source_number="INV-101", contact=ContactRef("7", "Acme"), number="INV-101",
        natural_key="INV-101", natural_key_kind=KeyKind.NUMBER,
        lines=(Line("Support", D("2"), D("50.00"), D("100.00"), "200", "OUTPUT2"),), total=D("115.00"),
    )
    return with_hash(replace(base, **values))


def doc(status: Status = Status.AUTHORISED, **values) -> XeroDocument:
    return XeroDocument(**{"kind": "invoice", "id": "x-1", "number": "INV-101", "status": status, "total": D("115.00"),
                           "contact_id": "c-7", **values})


def test_every_kind_names_its_endpoint_and_how_it_is_removed():
    assert set(KINDS) == {"invoice", "credit_note", "bill", "purchase_order", "paid_date", "payment", "write_back"}
    assert INVOICE.endpoint == BILL.endpoint == "Invoices" and INVOICE.xero_type == "ACCREC" and BILL.xero_type == "ACCPAY"
    assert CREDIT_NOTE.endpoint == "CreditNotes" and PURCHASE_ORDER.endpoint == "PurchaseOrders"
    assert INVOICE.numbers_unique and not BILL.numbers_unique
    assert INVOICE.remove_status(Status.AUTHORISED) == Status.VOIDED
    assert INVOICE.remove_status(Status.DRAFT) == Status.DELETED
    assert INVOICE.remove_status(Status.PAID) is None
    assert PURCHASE_ORDER.remove_status(Status.AUTHORISED) == Status.DELETED
    assert PURCHASE_ORDER.remove_status(Status.BILLED) is None
    assert INVOICE.attachments and CREDIT_NOTE.attachments and not BILL.attachments
    assert BILL.editable == frozenset() and Status.AUTHORISED in PURCHASE_ORDER.editable
    # What flows back to Autotask is never voided there, and a payment is never rewritten.
    assert KINDS["paid_date"].target == "Autotask" and KINDS["paid_date"].remove == {}
    assert KINDS["payment"].target == "Xero" and KINDS["payment"].editable == frozenset()


def test_a_new_document_is_sent():
    assert decide(plan(), None, None).action == Action.SEND
    assert decide(plan(), Row("pending"), None).action == Action.SEND
    assert decide(plan(), Row("set_aside"), None).action == Action.SEND


def test_a_document_xero_numbers_without_a_marker_is_set_aside():
    d = decide(plan(number=None, natural_key=None, natural_key_kind=None), None, None)
    assert d.action == Action.SET_ASIDE and "lookup marker" in d.why


def test_a_number_xero_holds_for_someone_else_is_a_clash():
    d = decide(plan(), None, doc(contact_id="c-other"))
    assert d.action == Action.CLASH and "INV-101" in d.why and "prefix" in d.fix


def test_our_own_earlier_copy_is_adopted_not_clashed():
    row = Row("pending", natural_key="INV-101", attempts=1, contact_id="c-7")
    assert decide(plan(), row, doc(status=Status.DRAFT)).action == Action.ADOPT
    # Same number but another total: not ours.
    assert decide(plan(), row, doc(total=D("99.00"))).action == Action.CLASH
    # Never attempted: not ours either.
    assert decide(plan(), replace(row, attempts=0), doc()).action == Action.CLASH


def test_a_deleted_document_under_the_number_is_no_clash():
    assert decide(plan(), None, doc(status=Status.DELETED)).action == Action.SEND


def test_a_bill_already_in_xero_for_the_supplier_is_reported():
    bill = plan("bill", number="V-9", natural_key="V-9", natural_key_kind=KeyKind.CONTACT_NUMBER)
    d = decide(bill, None, doc(kind="bill", number="V-9", contact_id="c-7", total=D("1.00")))
    assert d.action == Action.CLASH and "supplier" in d.why


def test_sending_elsewhere_is_left_alone():
    assert decide(plan(), Row("sending"), None).action == Action.SKIP


def test_unchanged_synced_is_skipped_changed_draft_updated_changed_approved_needs_a_person():
    p = plan()
    synced = Row("synced", content_hash=p.content_hash, target_id="x-1")
    assert decide(p, synced, None).action == Action.SKIP
    changed = replace(synced, content_hash="old")
    assert decide(p, changed, doc(status=Status.DRAFT)).action == Action.UPDATE
    d = decide(p, changed, doc(status=Status.AUTHORISED))
    assert d.action == Action.NEEDS_PERSON and "credit note" in d.fix
    assert decide(p, changed, None).action == Action.NEEDS_PERSON


def test_a_corrected_bill_is_never_rewritten():
    bill = plan("bill", natural_key_kind=KeyKind.CONTACT_NUMBER)
    changed = Row("synced", content_hash="old", target_id="x-1")
    assert decide(bill, changed, doc(kind="bill", status=Status.DRAFT)).action == Action.NEEDS_PERSON


def test_a_purchase_order_is_kept_in_step_while_not_billed():
    po = plan("purchase_order")
    changed = Row("synced", content_hash="old", target_id="x-1")
    assert decide(po, changed, doc(kind="purchase_order", status=Status.AUTHORISED)).action == Action.UPDATE
    assert decide(po, changed, doc(kind="purchase_order", status=Status.BILLED)).action == Action.NEEDS_PERSON


@pytest.mark.parametrize("status, action", [
    (Status.AUTHORISED, Action.VOID), (Status.DRAFT, Action.DELETE), (Status.SUBMITTED, Action.DELETE),
    (Status.VOIDED, Action.RECORD_VOIDED), (Status.PAID, Action.NEEDS_PERSON),
])
def test_voided_in_autotask(status, action):
    voided = plan(void=True)
    row = Row("synced", content_hash=voided.content_hash, target_id="x-1")
    assert decide(voided, row, doc(status=status)).action == action


def test_voided_with_money_allocated_needs_a_person():
    voided = plan(void=True)
    row = Row("synced", target_id="x-1")
    d = decide(voided, row, doc(amount_paid=D("10.00")))
    assert d.action == Action.NEEDS_PERSON and "payments" in d.why


def test_voided_before_it_reached_xero_or_already_voided_is_skipped():
    voided = plan(void=True)
    assert decide(voided, None, None).action == Action.SKIP
    assert decide(voided, Row("set_aside"), None).action == Action.SKIP
    assert decide(voided, Row("voided", target_id="x-1"), None).action == Action.SKIP


def test_a_cancelled_purchase_order_is_deleted_unless_billed():
    cancelled = plan("purchase_order", void=True)
    row = Row("synced", target_id="x-1")
    assert decide(cancelled, row, doc(kind="purchase_order", status=Status.AUTHORISED)).action == Action.DELETE
    assert decide(cancelled, row, doc(kind="purchase_order", status=Status.BILLED)).action == Action.NEEDS_PERSON


def test_set_aside_plans():
    aside = plan(set_aside=SetAside("unmapped billing code 5", "map it"))
    assert decide(aside, None, None).action == Action.SET_ASIDE
    # Already in Xero: kept as it is, never set aside (a later send would skip the lookup).
    assert decide(aside, Row("synced", target_id="x-1"), None).action == Action.SKIP


def test_plan_hash_is_stable_and_sees_content_only():
    a = plan()
    assert plan_hash(a) == plan_hash(replace(a, note="rounding note", content_hash="whatever"))
    assert plan_hash(a) == plan_hash(replace(a, total=D("115.0")))  # 115.00 and 115.0 are one amount
    assert plan_hash(a) != plan_hash(replace(a, lines=(replace(a.lines[0], quantity=D("3")),)))

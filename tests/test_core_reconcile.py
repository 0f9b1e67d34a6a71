"""Reconciliation's comparison (core/reconcile.py): pure, no HTTP. Plans, ledger rows and Xero documents in;
findings, each with its fix and what --repair may do, out."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from core.documents import (
    BILL, CREDIT_NOTE, INVOICE, PAYMENT, ContactRef, DocumentPlan, KeyKind, Line, SetAside, Status, XeroAllocation,
    XeroDocument, with_hash,
)
from core.reconcile import Problem, Recorded, Repair, reconcile, reconcile_recorded

CONTACT = "c-7"


def plan(kind: str = "invoice", **values) -> DocumentPlan:
    base = DocumentPlan(
        kind=kind, source_id="101", source_number="INV-101", contact=ContactRef("7", "Acme"), number="INV-101",
        natural_key="INV-101", natural_key_kind=KeyKind.NUMBER,
        lines=(Line("Support", D("2"), D("50.00"), D("100.00"), "200", "OUTPUT2"),), total=D("115.00"), tax=D("15.00"),
    )
    return with_hash(replace(base, **values))


def synced(p: DocumentPlan, **values) -> Recorded:
    base = Recorded(source_id=p.source_id, state="synced", source_number=p.source_number, target_id="x-1",
                    target_number=p.number, target_total=p.total, target_status="DRAFT", content_hash=p.content_hash,
                    natural_key=p.natural_key, contact_id=CONTACT)
    return replace(base, **values)


def doc(p: DocumentPlan, **values) -> XeroDocument:
    base = XeroDocument(kind=p.kind, id="x-1", number=p.number, status=Status.DRAFT, total=p.total, total_tax=p.tax,
                        contact_id=CONTACT, contact_number="7", url=p.url, reference=p.reference)
    return replace(base, **values)


def check(p, row, held, kind=INVOICE):
    return reconcile(kind, [p], {p.source_id: row} if row else {}, held, {"7": CONTACT})


def only(result):
    assert len(result.findings) == 1, result.findings
    return result.findings[0]


def test_a_document_that_agrees_everywhere_is_no_finding():
    p = plan()
    result = check(p, synced(p), [doc(p)])
    assert result.findings == [] and result.compared == 1


def test_approved_and_paid_in_xero_is_no_difference():
    p = plan(status=Status.DRAFT)
    assert check(p, synced(p), [doc(p, status=Status.PAID)]).findings == []


def test_synced_but_not_in_xero_is_resent_through_the_sync():
    p = plan()
    f = only(check(p, synced(p), []))
    assert (f.problem, f.what, f.repair) == (Problem.MISSING, "document", Repair.RESEND)
    assert "does not hold it" in f.found and f.xero_id == "x-1"
    assert "void it in Autotask" in f.fix and "--repair" in f.fix


def test_deleted_in_xero_frees_its_number_so_it_is_resent():
    p = plan()
    f = only(check(p, synced(p), [doc(p, status=Status.DELETED)]))
    assert (f.problem, f.repair) == (Problem.MISSING, Repair.RESEND)
    assert "DELETED" in f.found


def test_voided_in_xero_keeps_its_number_so_a_person_decides():
    p = plan()
    f = only(check(p, synced(p), [doc(p, status=Status.VOIDED)]))
    assert (f.problem, f.repair) == (Problem.MISSING, Repair.NONE)
    assert "keeps the number" in f.fix and "void it in Autotask" in f.fix


def test_voided_in_xero_when_xero_numbers_it_is_resent():
    url = "https://ww5.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenInvoice&InvoiceID=101"
    p = plan(number=None, natural_key=url, natural_key_kind=KeyKind.URL, url=url)
    f = only(check(p, synced(p, target_number="INV-0042"), [doc(p, number="INV-0042", status=Status.VOIDED)]))
    assert (f.problem, f.repair) == (Problem.MISSING, Repair.RESEND)


def test_never_sent_and_not_in_xero_waits_for_the_sync():
    p = plan()
    f = only(check(p, None, []))
    assert (f.problem, f.repair) == (Problem.MISSING, Repair.RUN)
    assert "no run has sent it" in f.found


def test_set_aside_documents_are_counted_not_reported():
    p = plan()
    row = Recorded(source_id=p.source_id, state="set_aside")
    result = check(p, row, [])
    assert result.findings == [] and result.set_aside == 1
    unsendable = plan(set_aside=SetAside("no account", "map it"))
    result = check(unsendable, None, [])
    assert result.findings == [] and result.set_aside == 1


def test_a_second_live_copy_under_the_number_is_a_duplicate_to_void_by_hand():
    p = plan()
    copy = doc(p, id="x-2")
    f = only(check(p, synced(p), [doc(p), copy]))
    assert (f.problem, f.repair) == (Problem.DUPLICATED, Repair.NONE)
    assert f.extra_ids == ("x-2",) and f.xero_id == "x-1"
    assert f.fix.startswith("void INV-101 (id x-2)") and "keep INV-101 (id x-1)" in f.fix
    # A voided copy is no duplicate.
    assert check(p, synced(p), [doc(p), doc(p, id="x-2", status=Status.VOIDED)]).findings == []


def test_two_copies_with_one_url_are_a_duplicate_whatever_their_numbers():
    url = "https://at.example/OpenInvoice&InvoiceID=101"
    p = plan(number=None, natural_key=url, natural_key_kind=KeyKind.URL, url=url)
    held = [doc(p, number="INV-0001"), doc(p, id="x-2", number="INV-0002")]
    f = only(check(p, synced(p, target_number="INV-0001"), held))
    assert f.problem == Problem.DUPLICATED and f.extra_ids == ("x-2",)


def test_duplicates_nobody_recorded_leave_the_choice_to_a_person():
    p = plan()
    f = only(check(p, None, [doc(p), doc(p, id="x-2")]))
    assert f.problem == Problem.DUPLICATED and f.xero_id is None and set(f.extra_ids) == {"x-1", "x-2"}
    assert "keep one" in f.fix


def test_another_suppliers_bill_with_the_same_number_is_no_duplicate():
    p = plan("bill", natural_key_kind=KeyKind.CONTACT_NUMBER, number="V-9", natural_key="V-9")
    other = doc(p, id="x-2", contact_id="c-8", contact_number="8")
    assert check(p, synced(p), [doc(p), other], kind=BILL).findings == []
    same = doc(p, id="x-3")
    assert only(check(p, synced(p), [doc(p), same], kind=BILL)).problem == Problem.DUPLICATED


def test_a_total_changed_in_xero_is_for_a_person():
    p = plan()
    f = only(check(p, synced(p), [doc(p, total=D("120.00"))]))
    assert (f.problem, f.what, f.expected, f.found, f.repair) == (Problem.DIFFERENT, "total", "115.00", "120.00",
                                                                  Repair.NONE)
    assert "changed in Xero" in f.fix


def test_a_total_changed_in_autotask_is_the_syncs_while_a_draft():
    before = plan()
    now = plan(total=D("230.00"), tax=D("30.00"),
               lines=(Line("Support", D("4"), D("50.00"), D("200.00"), "200", "OUTPUT2"),))
    row = synced(before)  # Xero still holds what the sync sent
    findings = check(now, row, [doc(before)]).findings
    assert {f.what for f in findings} == {"total", "tax"}
    assert all(f.repair == Repair.RUN and "rewrites" in f.fix for f in findings)
    approved = check(now, row, [doc(before, status=Status.AUTHORISED)]).findings
    assert all(f.repair == Repair.NONE and "credit note" in f.fix for f in approved)


def test_tax_contact_and_status_differences():
    p = plan(status=Status.AUTHORISED)
    f = only(check(p, synced(p), [doc(p, status=Status.AUTHORISED, total_tax=D("14.00"))]))
    assert (f.what, f.expected, f.found) == ("tax", "15.00", "14.00")
    f = only(check(p, synced(p), [doc(p, status=Status.AUTHORISED, contact_id="c-8", contact_number="8")]))
    assert f.what == "contact" and "Acme" in f.expected and "8" in f.found and "move it back" in f.fix
    f = only(check(p, synced(p), [doc(p, status=Status.DRAFT)]))
    assert (f.what, f.expected, f.found) == ("status", "AUTHORISED", "DRAFT") and "approve" in f.fix


def test_renumbered_in_xero():
    p = plan()
    f = only(check(p, synced(p), [doc(p, number="INV-101-X")]))
    assert (f.what, f.expected, f.found) == ("number", "INV-101", "INV-101-X")


def test_in_xero_but_not_in_the_ledger_is_recorded():
    p = plan()
    f = only(check(p, None, [doc(p, id="x-9")]))
    assert (f.problem, f.repair, f.xero_id, f.content_hash) == (Problem.UNRECORDED, Repair.RECORD, "x-9", p.content_hash)
    # Pending, or set aside as a clash by a run that no longer knew it: the same.
    f = only(check(p, Recorded(source_id=p.source_id, state="set_aside"), [doc(p, id="x-9")]))
    assert f.repair == Repair.RECORD


def test_a_number_held_by_someone_elses_document_is_never_recorded():
    p = plan()
    theirs = doc(p, id="x-9", contact_id="c-8", contact_number="8")
    f = only(check(p, None, [theirs]))
    assert (f.problem, f.what, f.repair) == (Problem.MISSING, "number", Repair.NONE)
    assert "did not create" in f.found and "prefix" in f.fix
    # Same contact, another total: typed in Xero by hand, not the sync's.
    assert only(check(p, None, [doc(p, id="x-9", total=D("1.00"))])).repair == Repair.NONE
    # Already set aside for it: every run reports that.
    result = check(p, Recorded(source_id=p.source_id, state="set_aside"), [theirs])
    assert result.findings == [] and result.set_aside == 1


def test_a_marker_found_with_another_total_is_recorded_for_the_sync_to_compare_again():
    url = "https://at.example/OpenInvoice&InvoiceID=101"
    p = plan(number=None, natural_key=url, natural_key_kind=KeyKind.URL, url=url)
    f = only(check(p, None, [doc(p, number="INV-0042", total=D("99.00"))]))
    assert f.repair == Repair.RECORD and f.content_hash == ""


def test_ledger_pointing_at_a_voided_copy_while_a_live_one_exists_is_recorded_again():
    p = plan("credit_note", number=None, natural_key="INV-101 credit", natural_key_kind=KeyKind.REFERENCE,
             reference="INV-101 credit")
    held = [doc(p, status=Status.VOIDED), doc(p, id="x-2", number="CN-0002")]
    f = only(check(p, synced(p), held, kind=CREDIT_NOTE))
    assert (f.problem, f.repair, f.xero_id) == (Problem.UNRECORDED, Repair.RECORD, "x-2")


def test_voided_in_autotask_but_live_in_xero():
    p = plan(void=True)
    f = only(check(p, synced(p), [doc(p, status=Status.AUTHORISED)]))
    assert (f.what, f.repair) == ("status", Repair.RUN) and "takes it out of Xero" in f.fix
    paid = doc(p, status=Status.AUTHORISED, amount_paid=D("5.00"),
               allocations=(XeroAllocation("payment", "p-1", D("5.00"), None),))
    f = only(check(p, synced(p), [paid]))
    assert f.repair == Repair.NONE and "payments" in f.fix
    assert check(p, synced(p), [doc(p, status=Status.VOIDED)]).findings == []


def test_a_document_being_sent_is_in_flight_not_a_finding():
    p = plan()
    result = check(p, Recorded(source_id=p.source_id, state="sending"), [])
    assert result.findings == [] and result.in_flight == 1


def test_payments_against_the_ledger():
    marker = "Autotask INV-101 paid 2026-11-30"
    row = Recorded(source_id="101", state="synced", source_number="INV-101", target_id="p-1", target_number=marker,
                   target_total=D("115.00"), natural_key=marker)
    payment = XeroDocument(kind="payment", id="p-1", number=marker, reference=marker, status=Status.AUTHORISED,
                           total=D("115.00"))
    assert reconcile_recorded(PAYMENT, [row], [payment]).findings == []
    f = only(reconcile_recorded(PAYMENT, [row], [replace(payment, status=Status.DELETED)]))
    assert (f.problem, f.repair) == (Problem.MISSING, Repair.NONE) and "clear_paid_date" in f.fix
    f = only(reconcile_recorded(PAYMENT, [row], [payment, replace(payment, id="p-2")]))
    assert f.problem == Problem.DUPLICATED and f.extra_ids == ("p-2",)
    f = only(reconcile_recorded(PAYMENT, [row], [replace(payment, total=D("100.00"))]))
    assert (f.what, f.expected, f.found) == ("total", "115.00", "100.00")

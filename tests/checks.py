"""The checks a run (or a soak case) ends with, against both simulators and the ledger, for every flow.

The flow tests' own checks are reused as they are (`assert_each_once` for invoices, the bills and the
payments tests' `assert_ledger_agrees`); the rest are what a soak needs on top of them: nothing left
`sending` or `pending`, every Xero document accounted for by exactly one ledger row, write-backs and paid
dates as Autotask holds them, payments made once, and the outcome of every document equal to a fault-free
run's over the same data (`outcomes` / `assert_same_outcomes`), which is what makes "set aside with a
reason" an answer only where a fault-free run sets the document aside too.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from atx.connections import autotask_client, ledger_for
from clients.autotask import autotask_day
from core.documents import BILL, CREDIT_NOTE, INVOICE, KINDS, PAID_DATE, PAYMENT, PURCHASE_ORDER, WRITE_BACK
from ledger import DocState
from tests.test_bills_flow import assert_ledger_agrees as assert_bills_agree
from tests.test_invoices_changes import assert_each_once
from tests.test_payments_flow import assert_ledger_agrees as assert_payments_agree

__all__ = ["assert_each_once", "assert_bills_agree", "assert_payments_agree", "assert_nothing_unresolved",
           "assert_xero_documents_accounted_for", "assert_write_backs_held", "assert_payments_as_made",
           "PersonsPayments", "outcomes", "assert_same_outcomes"]

UNRESOLVED = (DocState.SENDING, DocState.PENDING)


def assert_nothing_unresolved(settings) -> None:
    """No ledger row of any kind is left `sending` or `pending`."""
    ledger = ledger_for(settings)
    left = [(kind, r.source_id, r.source_number, r.state) for kind in KINDS
            for r in ledger.records(settings.name, kind).values() if r.state in UNRESOLVED]
    assert not left, f"{len(left)} ledger rows left unresolved: {left[:10]}"


def _live(store: dict, *, types: tuple[str, ...] | None = None) -> dict[str, dict]:
    return {i: d for i, d in store.items() if d.get("Status") != "DELETED" and (types is None or d.get("Type") in types)}


def assert_xero_documents_accounted_for(stack, settings, kinds) -> None:
    """Each document Xero holds of these kinds (not deleted, not voided by this sync) is the target of exactly
    one synced ledger row, and each synced row's target is in Xero: nothing made twice, nothing unrecorded."""
    ledger = ledger_for(settings)
    org = stack.org
    stores = {INVOICE.name: _live(org.invoices, types=("ACCREC",)), CREDIT_NOTE.name: _live(org.credit_notes),
              BILL.name: _live(org.invoices, types=("ACCPAY",)), PURCHASE_ORDER.name: _live(org.purchase_orders)}
    held: dict[str, dict] = {}
    rows = []
    for kind in kinds:
        held.update({i: d for i, d in stores[kind.name].items() if d.get("Status") != "VOIDED"})
        rows += [r for r in ledger.records(settings.name, kind.name).values() if r.state == DocState.SYNCED]
    targets = Counter(r.target_id for r in rows)
    twice = [t for t, n in targets.items() if n > 1]
    assert not twice, f"one Xero document recorded for several source documents: {twice}"
    missing = [(r.kind, r.source_number, r.target_id) for r in rows if r.target_id not in held]
    assert not missing, f"synced rows whose Xero document is not there: {missing[:10]}"
    unrecorded = sorted(set(held) - set(targets))
    assert not unrecorded, ("Xero documents no ledger row names (a second copy?): "
                            f"{[(held[i].get('InvoiceNumber') or held[i].get('CreditNoteNumber') or held[i].get('PurchaseOrderNumber'), held[i].get('Total')) for i in unrecorded[:10]]}")


def _write_fields(natural_key: str) -> dict[str, str]:
    """The fields and values a write-back's natural key names (`6001@invoiceNumber=INV-0042;webServiceDate=…`)."""
    fields = natural_key.partition("@")[2]
    return dict(part.split("=", 1) for part in fields.split(";") if part)


def assert_write_backs_held(stack, settings, *, invoice_number: bool, web_service_date: bool) -> None:
    """Each invoice or credit note in Xero has its write-back recorded, and Autotask holds exactly what it
    names: Xero's number (when written back) and the day it reached Xero."""
    ledger = ledger_for(settings)
    synced = {**{sid: r for sid, r in ledger.records(settings.name, INVOICE.name).items() if r.state == DocState.SYNCED},
              **{sid: r for sid, r in ledger.records(settings.name, CREDIT_NOTE.name).items() if r.state == DocState.SYNCED}}
    writes = ledger.records(settings.name, WRITE_BACK.name)
    held = {str(i["id"]): i for i in stack.autotask.records("Invoices")}
    for sid, row in synced.items():
        write = writes.get(sid)
        assert write is not None and write.state == DocState.SYNCED, (row.source_number, write and write.state)
        fields = _write_fields(write.natural_key)
        invoice = held[sid]
        if invoice_number:
            assert fields.get("invoiceNumber") == row.target_number == invoice["invoiceNumber"], (sid, fields, invoice["invoiceNumber"])
        if web_service_date:
            assert autotask_day(invoice.get("webServiceDate")) == date.fromisoformat(fields["webServiceDate"]), (sid, fields)
    assert not [sid for sid, w in writes.items() if sid not in synced], "a write-back for an invoice not in Xero"


@dataclass(frozen=True)
class PersonsPayments:
    """What people did before the payments runs, by Autotask invoice id: paid in Xero in full or in part (with
    the day), marked paid in Autotask (with the day); and whether the tenant applies Autotask's paid dates."""

    paid_in_xero: dict[str, date]
    partly_paid_in_xero: dict[str, date]
    marked_paid_in_autotask: dict[str, date]
    to_xero: bool


def assert_payments_as_made(stack, settings, made: PersonsPayments) -> None:
    """Each settlement made in Xero is Autotask's paid date; each paid date marked in Autotask is one Xero
    payment of the amount due (when the tenant applies them); nothing else was paid or dated."""
    rows = {sid: r for sid, r in ledger_for(settings).records(settings.name, INVOICE.name).items() if r.state == DocState.SYNCED}
    org = stack.org
    with autotask_client(settings) as at:
        for sid, row in rows.items():
            doc = org.invoices[row.target_id]
            payments = [org.payments[p] for p in doc.get("Payments", [])]
            ours = [p for p in payments if p["Status"] != "DELETED" and str(p.get("Reference", "")).startswith("Autotask ")]
            paid_on = autotask_day(at.get("Invoices", int(sid)).get("paidDate"))
            if sid in made.paid_in_xero:
                assert paid_on == made.paid_in_xero[sid], (row.source_number, "paid in Xero", paid_on)
                assert not ours, (row.source_number, "paid in Xero and paid again by the sync")
            elif sid in made.marked_paid_in_autotask:
                assert paid_on == made.marked_paid_in_autotask[sid], (row.source_number, paid_on)
                if made.to_xero:
                    assert len(ours) == 1, (row.source_number, f"{len(ours)} payments made by the sync")
                    assert doc["AmountDue"] == 0 and ours[0]["Date"] == made.marked_paid_in_autotask[sid], row.source_number
                else:
                    assert not ours, row.source_number
            else:
                assert paid_on is None, (row.source_number, "paid date written for an invoice nobody paid", paid_on)
                assert not ours, (row.source_number, "paid by the sync though Autotask never marked it paid")
            assert doc["AmountDue"] >= 0, row.source_number


# ---- equal to a fault-free run --------------------------------------------------------------------------
def _doc_outcome(stack, kind: str, target_id: str | None) -> tuple:
    org = stack.org
    store = {INVOICE.name: org.invoices, BILL.name: org.invoices, CREDIT_NOTE.name: org.credit_notes,
             PURCHASE_ORDER.name: org.purchase_orders, PAYMENT.name: org.payments}.get(kind)
    if store is None or target_id is None or target_id not in store:
        return ()
    doc = store[target_id]
    contact = org.contacts.get(str((doc.get("Contact") or {}).get("ContactID", "")).lower(), {}).get("Name")
    if kind == PAYMENT.name:
        return (doc["Status"], doc["Amount"], doc["Date"])
    return (doc.get("Status"), contact, Decimal(doc.get("Total") or 0), Decimal(doc.get("TotalTax") or 0))


def outcomes(stack, settings, kinds, *, compare_numbers: bool = True) -> dict[tuple[str, str], tuple]:
    """(kind, source id) -> what became of the document: its ledger state and, when synced, the Xero document's
    status, contact, total and tax (its number too, unless Xero numbers it); a paid date's or write-back's
    value. The same data run without faults gives the same answer for every document."""
    ledger = ledger_for(settings)
    found = {}
    for kind in kinds:
        for sid, row in ledger.records(settings.name, kind.name).items():
            if row.state != DocState.SYNCED:
                found[(kind.name, sid)] = (row.state,)
            elif kind is PAID_DATE:
                found[(kind.name, sid)] = (row.state, row.natural_key)
            elif kind is WRITE_BACK:
                fields = _write_fields(row.natural_key)
                if not compare_numbers:
                    fields.pop("invoiceNumber", None)
                found[(kind.name, sid)] = (row.state, tuple(sorted(fields.items())))
            else:
                number = (row.target_number,) if compare_numbers and kind is not PAYMENT else ()
                found[(kind.name, sid)] = (row.state, *number, *_doc_outcome(stack, kind.name, row.target_id))
    return found


def assert_same_outcomes(found: dict, expected: dict) -> None:
    differ = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    extra = {k: v for k, v in found.items() if k not in expected}
    assert not differ and not extra, (
        f"{len(differ)} documents ended otherwise than in a fault-free run (found, fault-free): "
        f"{dict(list(differ.items())[:8])}; {len(extra)} documents a fault-free run does not have: {dict(list(extra.items())[:8])}")

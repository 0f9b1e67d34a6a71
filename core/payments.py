"""Payments both ways, pure: which paid dates go back to Autotask, and which Autotask paid dates become
Xero payments. No HTTP; the payments flow reads, these functions plan, the pipeline sends.

Two kinds carry them (core/documents.py):
- PAID_DATE: a synced invoice settled in Xero (AmountDue 0, by payments, credit notes, prepayments or
  overpayments) sets the Autotask invoice's `paidDate`; a settlement undone in Xero clears it again.
- PAYMENT: an Autotask invoice marked paid, still due in Xero, gets a Xero payment of the amount due.

Neither direction sends back what the other wrote: a settlement made only by this sync's own payments
is not written to Autotask, and a paid date this sync wrote is not paid in Xero.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from core.documents import PAID_DATE, PAYMENT, DocumentPlan, KeyKind, SetAside, Status, XeroDocument, with_hash

UNPAID = "unpaid"

# What a remark says happened (tasks/outcomes.py shows each as a result of its own).
PARTLY_PAID = "partly paid"
PAID_IN_XERO = "already paid in Xero"
FROM_OTHER_SIDE = "came from the other side"
NOT_CLEARED = "needs attention"
NOT_SYNCED = "skipped"


@dataclass(frozen=True)
class SyncedInvoice:
    """An Autotask invoice this sync created in Xero, as the ledger knows it."""

    autotask_id: str
    autotask_number: str
    xero_id: str


@dataclass(frozen=True)
class AutotaskPaid:
    """An Autotask invoice and the paid date Autotask holds for it (None: not marked paid)."""

    autotask_id: str
    autotask_number: str
    paid_date: dt.date | None


@dataclass(frozen=True)
class Remark:
    """Something the report lists that needs no write: a partial payment, one already paid, ..."""

    kind: str
    source_id: str
    source_number: str
    result: str
    reason: str
    fix: str | None = None
    xero_id: str | None = None
    xero_number: str | None = None
    xero_total: Decimal | None = None
    amount_due: Decimal | None = None


def paid_date_key(autotask_id: str, paid: dt.date | None) -> str:
    """The natural key of a paid-date write: the invoice and the date ("123@2026-11-30", "123@unpaid")."""
    return f"{autotask_id}@{paid.isoformat() if paid else UNPAID}"


def written_paid_date(key: str) -> dt.date | None:
    """The paid date a paid-date key names (paid_date_key's inverse); None for "unpaid"."""
    written = key.rpartition("@")[2]
    return None if written == UNPAID else dt.date.fromisoformat(written)


def payment_marker(autotask_number: str, paid: dt.date) -> str:
    """The Reference of a payment this sync makes: how it is found again, and how a person knows it."""
    return f"Autotask {autotask_number} paid {paid.isoformat()}"


def local_date(value, tz: ZoneInfo) -> dt.date | None:
    """The calendar date in the tenant's time zone. Xero's and Autotask's dates are already dates (kept
    as they are, never shifted); a real moment (a timestamp) is the date it was where the tenant is."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        at_midnight_utc = value.astimezone(dt.timezone.utc).time() == dt.time(0)
        return value.astimezone(dt.timezone.utc).date() if at_midnight_utc else value.astimezone(tz).date()
    return value


def settled_on(doc: XeroDocument, tz: ZoneInfo) -> dt.date | None:
    """The date of the settlement that paid the invoice in full: Xero's FullyPaidOnDate, else the latest
    dated payment or allocation, else (nothing dated) the moment Xero last changed it, where the tenant is."""
    if doc.fully_paid_on_date is not None:
        return local_date(doc.fully_paid_on_date, tz)
    dated = [local_date(a.date, tz) for a in doc.allocations if a.date is not None]
    return max(dated) if dated else local_date(doc.updated, tz)


def _fully_paid(doc: XeroDocument) -> bool:
    return doc.status == Status.PAID or (doc.status == Status.AUTHORISED and doc.amount_due == 0
                                         and (doc.total or 0) > 0)


def _only_ours(doc: XeroDocument, our_payments: set[str]) -> bool:
    # By id once recorded; by its marker while the answer is not recorded yet (a run in flight, or killed).
    return bool(doc.allocations) and all(a.kind == "payment" and (a.id in our_payments or a.reference in our_payments)
                                         for a in doc.allocations)


def _paid_date_plan(invoice: SyncedInvoice, doc: XeroDocument, paid: dt.date | None) -> DocumentPlan:
    return with_hash(DocumentPlan(
        kind=PAID_DATE.name, source_id=invoice.autotask_id, source_number=invoice.autotask_number,
        natural_key=paid_date_key(invoice.autotask_id, paid), natural_key_kind=KeyKind.NUMBER, date=paid,
        reference=doc.number, total=doc.total, source_total=doc.total,
    ))


def plan_paid_dates(invoices: list[XeroDocument], synced: dict[str, SyncedInvoice], written: dict[str, dt.date | None],
                    our_payments: set[str], *, clear: bool, tz: ZoneInfo) -> tuple[list[DocumentPlan], list[Remark]]:
    """Xero → Autotask. `invoices`: Xero's sales invoices that changed; `synced`: Xero InvoiceID → the
    Autotask invoice this sync created it from; `written`: Autotask id → the paid date this sync last
    wrote (None once cleared), for each invoice it wrote one for; `our_payments`: PaymentIDs this sync
    made from Autotask's paid dates, and the markers (`payment_marker`, each payment's Reference) of those it
    made or is making, whose answer may not be recorded yet; `clear`: undo a written paid date when Xero's
    settlement is undone."""
    plans: list[DocumentPlan] = []
    remarks: list[Remark] = []
    for doc in invoices:
        invoice = synced.get(doc.id)
        if invoice is None:
            continue  # not one of this sync's invoices
        last = written.get(invoice.autotask_id)
        remark = _remarker(PAID_DATE.name, invoice.autotask_id, invoice.autotask_number, doc)
        if _fully_paid(doc):
            if _only_ours(doc, our_payments):
                remarks.append(remark(FROM_OTHER_SIDE, "paid in Xero by this sync from Autotask's paid date; "
                                                       "nothing written back"))
                continue
            plans.append(_paid_date_plan(invoice, doc, settled_on(doc, tz)))
            continue
        if last is not None:  # this sync wrote a paid date, and Xero no longer shows the invoice paid
            shown = "voided" if doc.status in (Status.VOIDED, Status.DELETED) else f"{doc.amount_due} due again"
            if clear and doc.status not in (Status.VOIDED, Status.DELETED):
                plans.append(_paid_date_plan(invoice, doc, None))
            else:
                remarks.append(remark(NOT_CLEARED, f"the payment was deleted or reversed in Xero ({shown}) after "
                                                   f"Autotask's paid date {last} was written",
                                      "clear the paid date on the Autotask invoice by hand, or re-apply the payment "
                                      "in Xero"))
        if doc.status == Status.AUTHORISED and doc.money_allocated and (doc.amount_due or 0) > 0:
            remarks.append(remark(PARTLY_PAID, f"partly paid in Xero: {doc.amount_due} of {doc.total} still due; "
                                               "Autotask records only a full payment",
                                  "nothing to do: the paid date is written when Xero shows it paid in full"))
    return plans, remarks


def plan_payments(paid: list[AutotaskPaid], in_xero: dict[str, XeroDocument], written: dict[str, dt.date | None], *,
                  account_id: str | None, account_name: str | None) -> tuple[list[DocumentPlan], list[Remark]]:
    """Autotask → Xero. `paid`: Autotask invoices marked paid; `in_xero`: Autotask id → the Xero invoice
    this sync created for it; `written`: the paid dates this sync wrote to Autotask (never paid back);
    `account_id`: the tenant's payment account (None when its setting names no usable account)."""
    plans: list[DocumentPlan] = []
    remarks: list[Remark] = []
    for invoice in paid:
        if invoice.paid_date is None:
            continue
        doc = in_xero.get(invoice.autotask_id)
        remark = _remarker(PAYMENT.name, invoice.autotask_id, invoice.autotask_number, doc)
        if written.get(invoice.autotask_id) == invoice.paid_date:
            remarks.append(remark(FROM_OTHER_SIDE, f"the paid date {invoice.paid_date} was written by this sync from "
                                                   "Xero's payment; nothing paid back"))
            continue
        if doc is None:
            remarks.append(remark(NOT_SYNCED, "not in Xero through this sync: no payment made"))
            continue
        if _fully_paid(doc) or doc.status in (Status.VOIDED, Status.DELETED) or (doc.amount_due or 0) <= 0:
            remarks.append(remark(PAID_IN_XERO, f"Xero shows it {doc.status.value if doc.status else 'settled'} with "
                                                f"nothing due; no payment sent"))
            continue
        set_aside = None
        if doc.status != Status.AUTHORISED:
            set_aside = SetAside(f"Xero invoice {doc.number} is {doc.status.value if doc.status else 'unknown'}: Xero takes "
                                 "payments only on approved invoices",
                                 "approve the invoice in Xero; the payment is made on the next run")
        elif account_id is None:
            set_aside = SetAside(f"no Xero account takes payments under the name or code {account_name!r}",
                                 "set payments.bank_account in the tenant file to an active bank account's code or "
                                 "name (atx check lists the problem)")
        plans.append(with_hash(DocumentPlan(
            kind=PAYMENT.name, source_id=invoice.autotask_id, source_number=invoice.autotask_number,
            natural_key=payment_marker(invoice.autotask_number, invoice.paid_date), natural_key_kind=KeyKind.REFERENCE,
            reference=payment_marker(invoice.autotask_number, invoice.paid_date), date=invoice.paid_date,
            total=doc.amount_due, source_total=doc.total, applies_to=doc.id, account_id=account_id,
            number=None, set_aside=set_aside,
        )))
    return plans, remarks


def _remarker(kind: str, source_id: str, source_number: str, doc: XeroDocument | None):
    def remark(result: str, reason: str, fix: str | None = None) -> Remark:
        return Remark(kind=kind, source_id=source_id, source_number=source_number, result=result, reason=reason, fix=fix,
                      xero_id=doc.id if doc else None, xero_number=doc.number if doc else None,
                      xero_total=doc.total if doc else None, amount_due=doc.amount_due if doc else None)
    return remark

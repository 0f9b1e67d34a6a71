"""The document pipeline's pure half: what a document kind is, what one planned document holds, and
what to do with it given what the ledger and Xero already hold.

Every flow maps its Autotask records into `DocumentPlan`s; `decide` turns a plan, its ledger row and
the Xero document found for it into an `Action`; the shell (`tasks/sync.py`) carries the action out.
A new document type is a `DocumentKind` entry below and a pure mapping that yields plans.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Protocol


# ---- what a target's calls may raise ------------------------------------------------------------
# Each client's errors (clients/xero.py, clients/autotask.py) derive from these, so the shell that
# claims, sends and records handles Xero and Autotask targets alike.
class TargetError(Exception):
    """A call to the system a document is written to failed or was refused as a whole."""


class TargetOutcomeUnknown(TargetError):
    """A write was sent but no usable answer came back: look the document up before sending it again."""


class TargetLimitReached(TargetError):
    """The target's API allowance is used up (Xero's day limit, Autotask's hourly threshold): stop sending."""


class KeyKind(str, Enum):
    """How a document is found in Xero again when an answer was lost (the natural key's kind)."""

    NUMBER = "number"                    # the number we send; Xero refuses a second document with it
    URL = "url"                          # Xero numbers it; its Url (a link back to Autotask) is the marker
    REFERENCE = "reference"              # Xero numbers it and it has no Url: its Reference is the marker
    CONTACT_NUMBER = "contact_number"    # numbers need not be unique (bills): the contact and the number


class Status(str, Enum):
    """Xero document statuses, for invoices, credit notes, bills and purchase orders alike."""

    DRAFT = "DRAFT"
    SUBMITTED = "SUBMITTED"
    AUTHORISED = "AUTHORISED"
    PAID = "PAID"
    BILLED = "BILLED"
    VOIDED = "VOIDED"
    DELETED = "DELETED"

    @classmethod
    def of(cls, value) -> "Status | None":
        text = str(getattr(value, "value", value) or "").upper()
        return cls.__members__.get(text)


GONE = frozenset({Status.VOIDED, Status.DELETED})


@dataclass(frozen=True)
class DocumentKind:
    """One Xero document type and everything the pipeline needs to know to sync it."""

    name: str                       # the ledger's kind: "invoice", "credit_note", "bill", "purchase_order"
    noun: str                       # how the report names one: "invoice", "bill", ...
    endpoint: str                   # Xero collection: "Invoices", "CreditNotes", "PurchaseOrders"
    xero_type: str | None           # Type sent to Xero (ACCREC, ACCRECCREDIT, ACCPAY), None for purchase orders
    numbers_unique: bool            # Xero refuses a second document of this type with the same number
    marker: KeyKind | None          # the lookup marker when Xero numbers it (None: we always number it)
    # What takes a document out of Xero, by its status there; a status missing here needs a person.
    remove: dict[Status, Status] = field(default_factory=dict)
    # Statuses in which the pipeline may rewrite the document to match the source again.
    editable: frozenset[Status] = frozenset({Status.DRAFT})
    attachments: bool = False
    link: str | None = None         # where a person opens it in Xero ({id})
    # How the set-aside reason names a number Xero already holds, and what to do about it.
    number_label: str = "Invoice"
    clash_fix: str = ("give Autotask invoice numbers a prefix (invoice_number: \"AT-{invoiceNumber}\" in the mapping file), "
                      "or use invoice_number: xero")
    # What a person does when the source changed after Xero's copy went past rewriting.
    after_change: str = ("changed in Autotask after it was approved in Xero: raise a credit note in Xero "
                         "(and a new invoice if needed)")

    # The system the document is written to: "Xero", or "Autotask" for what flows back (a paid date).
    # TenantContext.target(kind) gives its gateway; every gateway answers the same find/create/update.
    target: str = "Xero"
    # A document found under the natural key is this sync's own earlier write, never a clash: the key
    # names the whole write (an invoice and its paid date) or carries the sync's own marker.
    match_is_ours: bool = False

    def remove_status(self, current: Status | None) -> Status | None:
        return self.remove.get(current) if current is not None else None

    @property
    def refuses_taken_numbers(self) -> bool:
        """Xero itself refuses, element by element, a new document whose number it already holds: sending first
        and looking up only what it refused finds every clash for one call per batch fewer."""
        return self.numbers_unique and self.target == "Xero" and not self.match_is_ours


_VOID_OR_DELETE = {Status.DRAFT: Status.DELETED, Status.SUBMITTED: Status.DELETED, Status.AUTHORISED: Status.VOIDED}

INVOICE = DocumentKind(
    name="invoice", noun="invoice", endpoint="Invoices", xero_type="ACCREC", numbers_unique=True,
    marker=KeyKind.URL, remove=_VOID_OR_DELETE, attachments=True,
    link="https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={id}",
)
CREDIT_NOTE = DocumentKind(
    name="credit_note", noun="credit note", endpoint="CreditNotes", xero_type="ACCRECCREDIT", numbers_unique=True,
    marker=KeyKind.REFERENCE, remove=_VOID_OR_DELETE, attachments=True, number_label="Credit Note",
    link="https://go.xero.com/AccountsReceivable/ViewCreditNote.aspx?creditNoteID={id}",
)
BILL = DocumentKind(
    name="bill", noun="bill", endpoint="Invoices", xero_type="ACCPAY", numbers_unique=False,
    marker=None, remove=_VOID_OR_DELETE, attachments=False,
    # A receiving corrected after it was billed is reported, never re-billed, whatever the bill's status.
    editable=frozenset(),
    after_change=("a receiving changed in Autotask after its bill reached Xero: correct the bill in Xero "
                  "(or ask the supplier for a credit note); the sync never bills a receiving twice"),
    link="https://go.xero.com/AccountsPayable/View.aspx?InvoiceID={id}",
)
PURCHASE_ORDER = DocumentKind(
    name="purchase_order", noun="purchase order", endpoint="PurchaseOrders", xero_type=None, numbers_unique=True,
    marker=None, number_label="Purchase Order",
    clash_fix="give purchase order numbers a prefix (bills.purchase_order_number in the mapping file)",
    # Purchase orders post nothing to the ledger: any status short of BILLED may be deleted or rewritten.
    remove={Status.DRAFT: Status.DELETED, Status.SUBMITTED: Status.DELETED, Status.AUTHORISED: Status.DELETED},
    editable=frozenset({Status.DRAFT, Status.SUBMITTED, Status.AUTHORISED}),
    link="https://go.xero.com/Accounts/Payable/PurchaseOrders/View/{id}",
)
# What flows back: Xero's settlement of a synced invoice, as the Autotask invoice's paidDate. The natural
# key names the invoice and the date ("123@2026-11-30", "123@unpaid" once cleared), so Autotask already
# holding it means the write is done, and a lost PATCH is resolved by reading the invoice back.
PAID_DATE = DocumentKind(
    name="paid_date", noun="paid date", endpoint="Invoices", xero_type=None, numbers_unique=True, marker=None,
    target="Autotask", match_is_ours=True, number_label="Paid date",
    # Set, moved or cleared while the Autotask invoice is open or paid; a voided one needs a person.
    editable=frozenset({Status.AUTHORISED, Status.PAID}),
    after_change=("the Autotask invoice was voided after its paid date was written: check the payment in Xero "
                  "and the invoice in Autotask"),
)
# Autotask's paid date applied in Xero as a payment of the amount due. Its Reference is the sync's marker,
# found again by reading the payments that carry it; Xero refuses a second payment over the amount due.
PAYMENT = DocumentKind(
    name="payment", noun="payment", endpoint="Payments", xero_type="ACCRECPAYMENT", numbers_unique=False,
    marker=KeyKind.REFERENCE, match_is_ours=True, editable=frozenset(), number_label="Payment",
    after_change=("the invoice's paid date changed in Autotask after its payment reached Xero: correct or delete "
                  "the payment in Xero by hand"),
)
# What the invoices flow writes back to an Autotask invoice once it is in Xero (the mapping's write_back):
# Xero's number as its invoiceNumber, the day it was synced as its webServiceDate. The natural key names
# the invoice and every field and value written ("123@invoiceNumber=INV-0042;webServiceDate=2026-11-24"),
# so Autotask holding them means the write is done, and a lost PATCH is resolved by reading the invoice back.
WRITE_BACK = DocumentKind(
    name="write_back", noun="write-back", endpoint="Invoices", xero_type=None, numbers_unique=True, marker=None,
    target="Autotask", match_is_ours=True, number_label="Write-back", editable=frozenset(),
    after_change=("the Autotask invoice changed after Xero's number or the sync date was written to it: check the "
                  "invoice in Autotask"),
)
KINDS: dict[str, DocumentKind] = {k.name: k for k in (INVOICE, CREDIT_NOTE, BILL, PURCHASE_ORDER, PAID_DATE, PAYMENT,
                                                      WRITE_BACK)}


# ---- one planned document ----------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One Xero LineItem."""

    description: str
    quantity: Decimal
    unit_amount: Decimal
    line_amount: Decimal
    account_code: str | None = None
    tax_type: str | None = None
    tax_amount: Decimal | None = None          # sent only when Autotask's tax differs from Xero's rounding
    tracking: tuple[tuple[str, str], ...] = ()  # (category, option), at most two
    item_code: str | None = None
    source_line_id: str | None = None


@dataclass(frozen=True)
class ContactRef:
    """The Xero contact a document is for: keyed by ContactNumber, the Autotask company id."""

    number: str
    name: str


@dataclass(frozen=True)
class ContactAddress:
    """The postal (billing) address of a contact, each part already cut to Xero's length."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None
    attention_to: str | None = None


@dataclass(frozen=True)
class ContactDraft:
    """The Xero contact the pure core wants for one source company, in plain values.

    clients.xero.sdk_contact turns it into the SDK's Contact; a field left None is not sent, so Xero
    keeps what it holds."""

    contact_number: str                  # the Autotask company id, as text
    name: str
    tax_number: str | None = None
    is_customer: bool | None = None      # True for a customer; None leaves it to Xero (a supplier's bills mark it)
    address: ContactAddress | None = None
    phone: str | None = None
    website: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email_address: str | None = None
    default_currency: str | None = None  # an ISO code Xero knows
    account_number: str | None = None    # Xero's AccountNumber (Autotask's companyNumber), when the mapping matches by it


@dataclass(frozen=True)
class SetAside:
    """Why a document cannot be sent as it is, and what a person does about it."""

    reason: str
    fix: str


@dataclass(frozen=True)
class DocumentPlan:
    """Everything the pure core decided about one document, before anything is asked of Xero."""

    kind: str                            # a KINDS key
    source_id: str                       # the source record's id, as text (Autotask invoice id, ...)
    source_number: str                   # how people name it in the source system
    content_hash: str = ""
    contact: ContactRef | None = None
    number: str | None = None            # the number we send; None when Xero numbers it
    natural_key: str | None = None
    natural_key_kind: KeyKind | None = None
    date: dt.date | None = None
    due_date: dt.date | None = None
    delivery_date: dt.date | None = None
    reference: str | None = None
    currency_code: str | None = None
    currency_rate: Decimal | None = None
    line_amount_types: str = "Exclusive"
    status: Status = Status.DRAFT
    url: str | None = None
    branding_theme_id: str | None = None
    lines: tuple[Line, ...] = ()
    total: Decimal | None = None         # what Xero will show: the sum of the lines and their tax
    tax: Decimal | None = None
    source_total: Decimal | None = None  # the total as the source system shows it
    note: str | None = None              # rounding notes and other remarks for the report
    source: str = "autotask"
    set_aside: SetAside | None = None    # the document cannot be sent as it is
    void: bool = False                   # voided or cancelled in the source: take it out of Xero if it is there
    applies_to: str | None = None        # the target document it settles: the Xero invoice a payment pays
    account_id: str | None = None        # the account money goes to: a payment's bank account (Xero AccountID)
    sent_to_contact: bool | None = None  # an approved sales invoice marked sent in Xero (Xero e-mails nobody)
    # The Autotask fields and values a write to Autotask sets (field, value), in order; None for any other plan.
    writes: tuple[tuple[str, object], ...] | None = None

    @property
    def document_kind(self) -> DocumentKind:
        return KINDS[self.kind]

    @property
    def sendable(self) -> bool:
        return self.set_aside is None and not self.void


# Fields added after ledgers held hashes: left out while empty, so a document synced before keeps its hash.
_ADDED_LATER = frozenset({"applies_to", "account_id", "sent_to_contact", "writes"})


def plan_hash(plan: DocumentPlan) -> str:
    """A stable sha256 of what a plan would send: same content, same hash. The hash itself, the report
    note and the set-aside reason are not content."""
    def canonical(value):
        if isinstance(value, Decimal):
            # 100, 100.0 and 100.00 are the same amount and must hash the same.
            return format(value.normalize(), "f") if value != 0 else "0"
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [canonical(v) for v in value]
        if dataclasses.is_dataclass(value):
            return {f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return value

    content = {f.name: canonical(getattr(plan, f.name)) for f in dataclasses.fields(plan)
               if f.name not in ("content_hash", "note", "set_aside")
               and not (f.name in _ADDED_LATER and getattr(plan, f.name) is None)}
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_hash(plan: DocumentPlan) -> DocumentPlan:
    return dataclasses.replace(plan, content_hash=plan_hash(plan))


# ---- what Xero and the ledger hold -------------------------------------------------------------
@dataclass(frozen=True)
class XeroDocument:
    """A document as Xero holds it, in plain types (the gateway's answer to every read)."""

    kind: str
    id: str
    number: str | None
    status: Status | None
    total: Decimal | None = None
    contact_id: str | None = None
    contact_number: str | None = None
    url: str | None = None
    reference: str | None = None
    amount_due: Decimal | None = None
    amount_paid: Decimal | None = None
    amount_credited: Decimal | None = None
    has_allocations: bool = False       # payments, credit notes, prepayments or overpayments against it
    updated: dt.datetime | None = None
    # Settlement, for the payments flow: when it was paid in full, and what settled it, each with its date.
    fully_paid_on_date: dt.date | None = None
    allocations: tuple["XeroAllocation", ...] = ()
    total_tax: Decimal | None = None    # Xero's TotalTax (reconciliation compares it with the plan's tax)

    @property
    def money_allocated(self) -> bool:
        return self.has_allocations or any((a or 0) > 0 for a in (self.amount_paid, self.amount_credited))


@dataclass(frozen=True)
class Written:
    """One document's answer to a batch write, from any target, in plain types."""

    ok: bool
    document: XeroDocument | None
    errors: list[str]


@dataclass(frozen=True)
class XeroAllocation:
    """One settlement of a document as the document lists it: a payment, or a credit note, prepayment or
    overpayment applied to it. Deleted payments are not listed by Xero."""

    kind: str                           # "payment", "credit_note", "prepayment", "overpayment"
    id: str | None                      # PaymentID, CreditNoteID, PrepaymentID, OverpaymentID
    amount: Decimal
    date: dt.date | None
    reference: str | None = None        # a payment's Reference, a credit note's number


# ---- payments --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class XeroPayment:
    """A payment as Xero holds it (GET /Payments), in plain types."""

    id: str
    invoice_id: str | None              # None for a payment on a credit note (a refund)
    invoice_number: str | None
    amount: Decimal
    date: dt.date | None
    status: str | None                  # AUTHORISED or DELETED
    payment_type: str | None            # ACCRECPAYMENT, ACCPAYPAYMENT, ARCREDITPAYMENT, ...
    account_code: str | None
    currency_rate: Decimal | None
    reference: str | None
    updated: dt.datetime | None
    credit_note_id: str | None = None

    @property
    def deleted(self) -> bool:
        return (self.status or "").upper() == "DELETED"


@dataclass(frozen=True)
class PaymentDraft:
    """A payment to make in Xero against one invoice (PUT /Payments). The account is named by its code or
    its AccountID; it must be a bank account or have payments enabled. The amount may not exceed the
    invoice's AmountDue, and the invoice must be AUTHORISED."""

    invoice_id: str
    amount: Decimal
    date: dt.date
    account_code: str | None = None
    account_id: str | None = None
    reference: str | None = None
    currency_rate: Decimal | None = None  # only for an invoice outside the base currency

    def __post_init__(self):
        if not self.account_code and not self.account_id:
            raise ValueError("a payment needs an account: account_code or account_id")


class LedgerRow(Protocol):
    """What `decide` reads of a ledger row (ledger.models.SyncRecord)."""

    state: str
    content_hash: str | None
    target_id: str | None
    natural_key: str | None
    attempts: int
    contact_id: str | None


class Action(str, Enum):
    SEND = "send"                     # create it in Xero
    ADOPT = "adopt"                   # Xero holds our own earlier copy: record it, send nothing
    CLASH = "clash"                   # Xero holds a document this sync did not create under its key
    UPDATE = "update"                 # changed in the source; Xero's copy may still be rewritten
    NEEDS_PERSON = "needs_person"     # changed or voided in the source, but Xero's copy is past rewriting
    VOID = "void"                     # voided in the source: void Xero's copy
    DELETE = "delete"                 # voided in the source: delete Xero's (draft) copy
    RECORD_VOIDED = "record_voided"   # voided in the source and already gone from Xero: record it
    SET_ASIDE = "set_aside"           # cannot be sent as it is
    SKIP = "skip"                     # nothing to do


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str = ""                     # for SKIP, CLASH, NEEDS_PERSON, SET_ASIDE: what a person reads
    fix: str | None = None
    target_status: Status | None = None  # for VOID and DELETE: the status to set


# Why a document needs nothing this run (Decision.why of a SKIP); the report shows each on its own.
ALREADY_IN_XERO = "already in Xero"
ALREADY_VOIDED = "already voided in Xero"
IN_FLIGHT = "in flight elsewhere"
VOIDED_BEFORE_SYNC = "voided before sync"
# Why a document a person skipped (`atx ledger skip`) is not sent: the run reports it with their reason.
SKIPPED_BY_A_PERSON = "by a person"

# Ledger states (ledger.models.DocState), repeated as plain text so the core needs no database import.
_SENDING, _SYNCED, _VOIDED, _SKIPPED = "sending", "synced", "voided", "skipped"

def decide(plan: DocumentPlan, row: LedgerRow | None, xero_doc: XeroDocument | None) -> Decision:
    """What to do with one planned document.

    `xero_doc` is what Xero holds for it: by the ledger's target id when the row has one, otherwise by
    its natural key (None when nothing was found, or nothing was looked up)."""
    kind = plan.document_kind
    in_xero = row is not None and row.state in (_SYNCED, _VOIDED) and bool(row.target_id)
    if row is not None and row.state == _SKIPPED:
        return Decision(Action.SKIP, SKIPPED_BY_A_PERSON)  # whatever it looks like now: a person's word
    if plan.void:
        return _decide_void(kind, row, xero_doc, in_xero)
    if row is not None and row.state == _SENDING:
        return Decision(Action.SKIP, IN_FLIGHT)
    if plan.set_aside is not None:
        if in_xero:
            return Decision(Action.SKIP, f"in Xero already; as it is now it could not be sent: {plan.set_aside.reason}",
                            plan.set_aside.fix)
        return Decision(Action.SET_ASIDE, plan.set_aside.reason, plan.set_aside.fix)
    if in_xero:
        return _decide_synced(kind, plan, row, xero_doc)
    if xero_doc is not None and xero_doc.status not in GONE:
        if kind.match_is_ours or _our_earlier_copy(plan, row, xero_doc):
            return Decision(Action.ADOPT, "found in Xero from an earlier attempt; recorded, nothing re-sent")
        return Decision(Action.CLASH, *_clash_text(kind, plan, xero_doc))
    if not plan.natural_key:
        return Decision(Action.SET_ASIDE,
                        "Xero numbers this document and its link back to Autotask (the lookup marker) is unknown",
                        "check that Autotask's zoneInformation answers (it names the web address); the document is "
                        "retried next run")
    return Decision(Action.SEND)


def _decide_void(kind: DocumentKind, row, xero_doc, in_xero: bool) -> Decision:
    if not in_xero:
        return Decision(Action.SKIP, VOIDED_BEFORE_SYNC)
    if row.state == _VOIDED:
        return Decision(Action.SKIP, ALREADY_VOIDED)
    status = xero_doc.status if xero_doc is not None else None
    if status in GONE:
        return Decision(Action.RECORD_VOIDED, ALREADY_VOIDED, target_status=status)
    allocated = xero_doc is not None and xero_doc.money_allocated
    target = kind.remove_status(status)
    if xero_doc is None or allocated or target is None:
        shown = status.value if status is not None else "missing"
        why = (f"voided in Autotask, but in Xero it is {shown}"
               + (" with payments or credit notes allocated" if allocated else "")
               + ": remove the payments or credits in Xero, then void it there (or reissue it in Autotask)")
        return Decision(Action.NEEDS_PERSON, why, "a person decides: the sync never voids a document with payments")
    return Decision(Action.VOID if target == Status.VOIDED else Action.DELETE, target_status=target)


def _decide_synced(kind: DocumentKind, plan: DocumentPlan, row, xero_doc) -> Decision:
    if row.state == _VOIDED:
        return Decision(Action.SKIP, ALREADY_VOIDED)
    if row.content_hash == plan.content_hash:
        return Decision(Action.SKIP, ALREADY_IN_XERO)
    status = xero_doc.status if xero_doc is not None else None
    if status in kind.editable:
        return Decision(Action.UPDATE)
    shown = status.value if status is not None else "missing"
    return Decision(Action.NEEDS_PERSON, f"changed in Autotask after it reached Xero, where it is {shown}",
                    kind.after_change)


def _our_earlier_copy(plan: DocumentPlan, row, xero_doc: XeroDocument) -> bool:
    """The Xero document under this key is one we sent before: this row was attempted with that very
    key, and the document is for the same contact with the same total. Anything else is a clash with a
    document this sync did not create, and is never touched."""
    if row is None or not row.attempts or row.natural_key != plan.natural_key or not row.contact_id:
        return False
    return xero_doc.contact_id == row.contact_id and xero_doc.total is not None and xero_doc.total == plan.total


def _clash_text(kind: DocumentKind, plan: DocumentPlan, doc: XeroDocument) -> tuple[str, str]:
    status = doc.status.value if doc.status is not None else "unknown status"
    if kind.numbers_unique:
        reason = (f"{kind.number_label} number {plan.natural_key} is already used in Xero by a document this sync did "
                  f"not create ({status}, total {doc.total}); it was not sent, and the Xero document was not changed")
        return reason, kind.clash_fix
    reason = (f"the supplier already has a {kind.noun} numbered {plan.number} in Xero that this sync did not create "
              f"({status}, total {doc.total}); it was not sent again")
    return reason, "if Xero's bill is this one, nothing to do; otherwise correct the vendor invoice number in Autotask"


_NUMBER_TAKEN = re.compile(r"(#|\bnumber) must be unique", re.IGNORECASE)


def number_taken(errors: list[str]) -> bool:
    """Xero refused the element because another document already carries its number."""
    return any(_NUMBER_TAKEN.search(e) for e in errors)


def fix_for(message: str) -> str:
    """Turn Xero's wording into the action a finance person can take."""
    m = message.lower()
    if "item code" in m:
        return ("create the item with that code in Xero (Business > Products and services), correct items.rules in "
                "the tenant's mapping file, or set items.create_missing: true")
    if "account code" in m:
        return "map the billing code to an active Xero account code in the tenant's mapping file"
    if "taxtype" in m or "tax type" in m:
        return "map the tax category to a TaxType that suits the account in the tenant's mapping file"
    if "lock date" in m:
        return "the invoice date is in a locked period: ask the accountant to move the lock date, or re-date the invoice"
    if "not subscribed to currency" in m:
        return "enable the currency in Xero (Settings > Currencies) or change the company's currency in Autotask"
    if "must be unique" in m:
        return "the number is already used in Xero by a document this sync did not create: give Autotask invoice numbers a prefix"
    if "tracking" in m:
        return "activate the tracking option in Xero or change the tracking mapping"
    if "payment" in m or "allocated" in m:
        return "remove the payments or credit notes allocated to it in Xero first, then rerun"
    return "correct the document in Autotask or the mapping, then run the sync again"


def batches(items: list, size: int = 50) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]

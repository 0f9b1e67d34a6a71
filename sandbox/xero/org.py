"""All state of one simulated Xero organisation.

Documents are stored as plain dicts keyed the way Xero names fields (`InvoiceID`, `LineItems`, ...),
holding Python values (Decimal, date, datetime); `serialise` renders them on the way out. Tests read and
poke this state directly, e.g. `org.invoices[invoice_id]["Status"]` or `org.period_lock_date = date(...)`.

Each collection of documents is a `DocumentStore`: a dict that also indexes its documents by number,
name, reference and contact, so a uniqueness check or a filtered read costs the same with 50,000
documents held as with 50. The indexes follow every write to the store (saving, replacing, deleting,
rolling back) and only narrow a search: every lookup still checks each candidate itself, so a status
changed in place is seen at once. Changing an indexed field of a stored document in place (its number,
name, code, reference or contact) needs `org.reindex()` afterwards.
"""
from __future__ import annotations

import bisect
import copy
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from sandbox.clock import Clock
from sandbox.xero.acc_query import comparable

_MISSING = object()


def _folded(value) -> str | None:
    """How Xero compares text: without regard to case."""
    return value.casefold() if isinstance(value, str) else None


class DocumentStore(dict):
    """Documents by id, with indexes: name -> (document -> key, or None for no key). `find(name, key)`
    gives the documents filed under `key`, in the order iterating the store gives them."""

    def __init__(self, indexes: dict[str, Callable[[dict], Hashable | None]], documents: Iterable = (),
                 ranges: dict[str, Callable[[dict], object]] | None = None):
        super().__init__()
        self._key_of = indexes
        self._index: dict[str, dict[Hashable, dict[str, None]]] = {name: {} for name in indexes}
        # Ordered indexes, for ranges: name -> (document -> comparable key, or None); per id its key, and
        # the (key, id) pairs sorted, re-sorted on the first range read after a write.
        self._range_of = ranges or {}
        self._range_keys: dict[str, dict[str, object]] = {name: {} for name in self._range_of}
        self._range_sorted: dict[str, list | None] = {name: None for name in self._range_of}
        # Where each id sits in the dict's own order (insertion; a replaced document keeps its place).
        self._position: dict[str, int] = {}
        self._next_position = 0
        for doc_id, document in dict(documents).items():
            self[doc_id] = document

    def _keys(self, document) -> list[tuple[str, Hashable]]:
        keys = []
        for name, key_of in self._key_of.items():
            try:
                key = key_of(document)
            except (KeyError, TypeError, AttributeError):  # a document lacking the field is filed nowhere
                key = None
            if key is not None:
                keys.append((name, key))
        return keys

    def _file(self, doc_id, document) -> None:
        for name, key in self._keys(document):
            self._index[name].setdefault(key, {})[doc_id] = None
        for name, key_of in self._range_of.items():
            try:
                key = key_of(document)
            except (KeyError, TypeError, AttributeError):
                key = None
            if key is not None:
                self._range_keys[name][doc_id] = key
            else:
                self._range_keys[name].pop(doc_id, None)
            self._range_sorted[name] = None

    def _unfile(self, doc_id, document) -> None:
        for name in self._range_of:
            if self._range_keys[name].pop(doc_id, None) is not None:
                self._range_sorted[name] = None
        for name, key in self._keys(document):
            filed = self._index[name].get(key)
            if filed is not None:
                filed.pop(doc_id, None)
                if not filed:
                    del self._index[name][key]

    def __setitem__(self, doc_id, document) -> None:
        if doc_id in self:
            self._unfile(doc_id, dict.__getitem__(self, doc_id))
        else:
            self._position[doc_id] = self._next_position
            self._next_position += 1
        dict.__setitem__(self, doc_id, document)
        self._file(doc_id, document)

    def __delitem__(self, doc_id) -> None:
        document = dict.__getitem__(self, doc_id)
        dict.__delitem__(self, doc_id)
        self._unfile(doc_id, document)
        del self._position[doc_id]

    def pop(self, doc_id, *default):
        if doc_id not in self:
            return dict.pop(self, doc_id, *default)
        document = dict.__getitem__(self, doc_id)
        del self[doc_id]
        return document

    def popitem(self):
        doc_id, document = next(reversed(self.items()))
        del self[doc_id]
        return doc_id, document

    def setdefault(self, doc_id, default=None):
        if doc_id not in self:
            self[doc_id] = default
        return dict.__getitem__(self, doc_id)

    def update(self, *others, **more) -> None:
        for doc_id, document in dict(*others, **more).items():
            self[doc_id] = document

    def __ior__(self, other):
        self.update(other)
        return self

    def clear(self) -> None:
        dict.clear(self)
        self.reindex()

    def reindex(self) -> None:
        """File every document again, after an indexed field was changed in place."""
        self._index = {name: {} for name in self._key_of}
        self._range_keys = {name: {} for name in self._range_of}
        self._range_sorted = {name: None for name in self._range_of}
        self._position = {doc_id: n for n, doc_id in enumerate(self)}
        self._next_position = len(self._position)
        for doc_id, document in self.items():
            self._file(doc_id, document)

    def find(self, name: str, key: Hashable) -> list[dict]:
        filed = self._index[name].get(key)
        if not filed:
            return []
        return [dict.__getitem__(self, doc_id) for doc_id in sorted(filed, key=self._position.__getitem__)]

    def filed(self, name: str, keys: Iterable[Hashable]) -> set[str]:
        """The ids filed under any of `keys`."""
        found: set[str] = set()
        for key in keys:
            found.update(self._index[name].get(key) or ())
        return found

    def between(self, name: str, low, low_inclusive: bool, high, high_inclusive: bool) -> set[str]:
        """The ids whose ordered key lies between the bounds (None: unbounded on that side)."""
        ordered = self._range_sorted[name]
        if ordered is None:
            pairs = sorted(self._range_keys[name].items(), key=lambda pair: pair[1])
            ordered = self._range_sorted[name] = ([key for _, key in pairs], [doc_id for doc_id, _ in pairs])
        keys, ids = ordered
        start = 0 if low is None else (bisect.bisect_left if low_inclusive else bisect.bisect_right)(keys, low)
        end = len(keys) if high is None else (bisect.bisect_right if high_inclusive else bisect.bisect_left)(keys, high)
        return set(ids[start:end])

    def in_order(self, doc_ids: Iterable[str]) -> list[dict]:
        """The stored documents among these ids, in store order."""
        present = {doc_id for doc_id in doc_ids if doc_id in self}
        return [dict.__getitem__(self, doc_id) for doc_id in sorted(present, key=self._position.__getitem__)]

    # The saved state and copies are plain dicts: the indexes are rebuilt from the documents.
    def copy(self) -> dict:
        return dict(self)

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo) -> dict:
        return {copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self):
        return dict, (dict(self),)


def _number(field_name: str) -> Callable[[dict], str]:
    # As the rules compare numbers: as text (str), without regard to case.
    return lambda doc: str(doc.get(field_name, "")).casefold()


def _contact_of(doc: dict) -> str | None:
    return _folded(doc["Contact"]["ContactID"])


def _reference(doc: dict) -> str | None:
    return _folded(doc.get("Reference"))


def _moment(field_name: str) -> Callable[[dict], datetime | None]:
    # As the where-clause compares dates: a date is its midnight UTC.
    def key_of(doc: dict) -> datetime | None:
        value = doc.get(field_name)
        return comparable(value) if isinstance(value, (date, datetime)) else None
    return key_of


# Ordered indexes, for `where` date ranges.
DOCUMENT_RANGES = {"invoices": {"date": _moment("Date")}, "credit_notes": {"date": _moment("Date")}}


# What each collection is indexed by. "number" keys are the rules' (str, case-folded); the others are
# the where-clause's (text, case-folded), for the fields the sync filters on.
DOCUMENT_INDEXES = {
    "invoices": {"number": _number("InvoiceNumber"), "reference": _reference, "contact": _contact_of},
    "credit_notes": {"number": _number("CreditNoteNumber"), "reference": _reference, "contact": _contact_of},
    "purchase_orders": {"number": _number("PurchaseOrderNumber"), "reference": _reference, "contact": _contact_of},
    "contacts": {
        "name": lambda c: c["Name"].strip().casefold(),
        "number": lambda c: (c.get("ContactNumber") or "").strip().casefold(),
        "account_number": lambda c: _folded(c.get("AccountNumber")),
        # The where-clause compares Name and ContactNumber as they are, not trimmed.
        "where_name": lambda c: _folded(c.get("Name")),
        "where_number": lambda c: _folded(c.get("ContactNumber")),
    },
    "payments": {"reference": _reference,
                 "invoice": lambda p: _folded(p["TargetID"]) if p.get("Target") == "invoice" else None},
    "items": {"code": lambda i: i["Code"].casefold()},
}


class Journal:
    """Undo log for one batch, so a batch that fails as a whole leaves the organisation untouched."""

    def __init__(self) -> None:
        self._undo: list[tuple[dict, str, object]] = []

    def record(self, collection: dict, key: str) -> None:
        self._undo.append((collection, key, collection.get(key, _MISSING)))

    def absorb(self, child: "Journal") -> None:
        self._undo.extend(child._undo)

    def changes(self) -> list[tuple[dict, str, bool]]:
        """What this journal saw saved, once per document in first-saved order: (collection, key,
        whether it existed before). Read after a commit, to tell the webhooks what changed."""
        seen: dict[tuple[int, str], tuple[dict, str, bool]] = {}
        for collection, key, previous in self._undo:
            seen.setdefault((id(collection), key), (collection, key, previous is not _MISSING))
        return list(seen.values())

    def rollback(self) -> None:
        for collection, key, previous in reversed(self._undo):
            if previous is _MISSING:
                collection.pop(key, None)
            else:
                collection[key] = previous
        self._undo.clear()


# Organisation.Timezone is a Windows zone name; the IANA zone each of the seeded organisations lives in.
XERO_TIME_ZONES = {"NEWZEALANDSTANDARDTIME": "Pacific/Auckland", "AUSEASTERNSTANDARDTIME": "Australia/Sydney",
                   "GMTSTANDARDTIME": "Europe/London", "EASTERNSTANDARDTIME": "America/New_York", "UTC": "UTC"}


@dataclass
class XeroOrg:
    tenant_id: str
    name: str
    country_code: str
    base_currency: str
    clock: Clock
    timezone: str = "UTC"
    period_lock_date: date | None = None
    end_of_year_lock_date: date | None = None
    organisation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    short_code: str = "!sim01"
    created: datetime | None = None
    sales_tax_type: str = "OUTPUT2"
    purchases_tax_type: str = "INPUT2"
    # Settings: AccountID -> account, TaxType -> tax rate, ids -> categories/themes, code -> currency.
    accounts: dict[str, dict] = field(default_factory=dict)
    tax_rates: dict[str, dict] = field(default_factory=dict)
    tracking_categories: dict[str, dict] = field(default_factory=dict)
    branding_themes: dict[str, dict] = field(default_factory=dict)
    currencies: dict[str, dict] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    # Documents, each keyed by its Xero id.
    contacts: dict[str, dict] = field(default_factory=dict)
    invoices: dict[str, dict] = field(default_factory=dict)
    credit_notes: dict[str, dict] = field(default_factory=dict)
    purchase_orders: dict[str, dict] = field(default_factory=dict)
    payments: dict[str, dict] = field(default_factory=dict)
    # Items (products and services), keyed by ItemID; codes are unique without regard to case.
    items: dict[str, dict] = field(default_factory=dict)
    # document id -> lower-cased file name -> attachment (with its bytes under "Content")
    attachments: dict[str, dict[str, dict]] = field(default_factory=dict)
    # (client_id, key) -> stored response; see accounting.py
    idempotency: dict[tuple[str, str], dict] = field(default_factory=dict)
    # next numbers Xero would hand out when the caller sends none
    sequences: dict[str, int] = field(default_factory=lambda: {"INV": 0, "CN": 0, "PO": 0})
    max_attachments_per_document: int = 10
    max_attachment_bytes: int = 10 * 1024 * 1024
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _order: int = 0

    def __setattr__(self, name: str, value) -> None:
        # Every collection is a DocumentStore: the ones given to the constructor (a sandbox's saved
        # state) and one replaced whole later.
        if name in DOCUMENT_INDEXES and not isinstance(value, DocumentStore):
            value = DocumentStore(DOCUMENT_INDEXES[name], value, DOCUMENT_RANGES.get(name))
        object.__setattr__(self, name, value)

    def reindex(self) -> None:
        """File every document again: after a test changed a number, name, code, reference or contact
        of a stored document in place."""
        for collection in DOCUMENT_INDEXES:
            getattr(self, collection).reindex()

    # -- lookups ----------------------------------------------------------------------------------
    def account_by_code(self, code: str) -> dict | None:
        wanted = str(code).strip().lower()
        for account in self.accounts.values():
            if str(account.get("Code", "")).lower() == wanted and account["Status"] != "DELETED":
                return account
        return None

    def contact_by_name(self, name: str, *, active_only: bool = True) -> dict | None:
        wanted = name.strip().casefold()
        for contact in self.contacts.find("name", wanted):
            if active_only and contact["ContactStatus"] != "ACTIVE":
                continue
            if contact["Name"].strip().casefold() == wanted:
                return contact
        return None

    def contact_by_number(self, number: str) -> dict | None:
        wanted = number.strip().casefold()
        for contact in self.contacts.find("number", wanted):
            if (contact.get("ContactNumber") or "").strip().casefold() == wanted:
                return contact
        return None

    def invoice_by_number(self, number: str, invoice_type: str = "ACCREC") -> dict | None:
        wanted = number.strip().casefold()
        for invoice in self.invoices.find("number", wanted):
            if invoice["Type"] == invoice_type and invoice.get("InvoiceNumber", "").casefold() == wanted:
                return invoice
        return None

    def item_by_code(self, code: str) -> dict | None:
        wanted = str(code).strip().casefold()
        return next((item for item in self.items.find("code", wanted) if item["Code"].casefold() == wanted), None)

    def now(self) -> datetime:
        # Xero timestamps carry milliseconds; keep stored times equal to what clients can read back.
        moment = self.clock.now()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def today(self) -> date:
        """Today where the organisation is: Xero dates a payment or document sent without a Date so."""
        from zoneinfo import ZoneInfo

        return self.clock.now().astimezone(ZoneInfo(XERO_TIME_ZONES.get(self.timezone, "UTC"))).date()

    def next_number(self, prefix: str) -> str:
        self.sequences[prefix] += 1
        return f"{prefix}-{self.sequences[prefix]:04d}"

    def next_order(self) -> int:
        """A creation counter: ties on UpdatedDateUTC keep a stable order across pages."""
        self._order += 1
        return self._order

    def save(self, collection: dict, key: str, document: dict, journal: Journal | None) -> None:
        if journal is not None:
            journal.record(collection, key)
        collection[key] = document


def seed_org(name: str, country_code: str, clock: Clock, *, tenant_id: str | None = None,
             currencies: list[str] | None = None) -> XeroOrg:
    from sandbox.xero.seed import build_org

    return build_org(name, country_code, clock, tenant_id=tenant_id, currencies=currencies)

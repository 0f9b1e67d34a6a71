"""All state of one simulated Xero organisation.

Documents are stored as plain dicts keyed the way Xero names fields (`InvoiceID`, `LineItems`, ...),
holding Python values (Decimal, date, datetime); `serialise` renders them on the way out. Tests read and
poke this state directly, e.g. `org.invoices[invoice_id]["Status"]` or `org.period_lock_date = date(...)`.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from sandbox.clock import Clock

_MISSING = object()


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

    # -- lookups ----------------------------------------------------------------------------------
    def account_by_code(self, code: str) -> dict | None:
        wanted = str(code).strip().lower()
        for account in self.accounts.values():
            if str(account.get("Code", "")).lower() == wanted and account["Status"] != "DELETED":
                return account
        return None

    def contact_by_name(self, name: str, *, active_only: bool = True) -> dict | None:
        wanted = name.strip().casefold()
        for contact in self.contacts.values():
            if active_only and contact["ContactStatus"] != "ACTIVE":
                continue
            if contact["Name"].strip().casefold() == wanted:
                return contact
        return None

    def contact_by_number(self, number: str) -> dict | None:
        wanted = number.strip().casefold()
        for contact in self.contacts.values():
            if (contact.get("ContactNumber") or "").strip().casefold() == wanted:
                return contact
        return None

    def invoice_by_number(self, number: str, invoice_type: str = "ACCREC") -> dict | None:
        wanted = number.strip().casefold()
        for invoice in self.invoices.values():
            if invoice["Type"] == invoice_type and invoice.get("InvoiceNumber", "").casefold() == wanted:
                return invoice
        return None

    def item_by_code(self, code: str) -> dict | None:
        wanted = str(code).strip().casefold()
        return next((item for item in self.items.values() if item["Code"].casefold() == wanted), None)

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

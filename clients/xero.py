"""The Xero gateway: the only code that talks to Xero. It owns tokens, pacing, batches and errors.

Built on the official xero-python SDK, with its traps disarmed:
- the SDK's `Configuration` is a copy-of-first singleton: each gateway sets its own token object;
- urllib3's hidden retries would re-send a PUT after a dropped connection (a duplicate invoice) or
  sleep through a day-limit 429 for hours: they are switched off, and pacing and backoff live here;
- token refresh is done here, explicitly, under a lock, and the rotated refresh token is saved
  before it is used, so two runs of one connection never lose it.

Writes whose outcome is unknown raise `XeroOutcomeUnknown`: the caller looks the document up by its
natural key instead of sending it again.

Every call goes through `XeroGateway._call`, which also keeps the tenant's daily call budget
(`DailyCallBudget`, counted per organisation and UTC day in a store every process shares) and stops
before Xero's own day limit is reached (`X-DayLimit-Remaining`): both raise `XeroRateLimited`, a
`TargetLimitReached`, so a run stops cleanly and the next one resumes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol

import httpx
import urllib3
from xero_python.accounting import (
    Account, AccountingApi, Address, Contact, Contacts, CreditNote, CreditNotes, CurrencyCode, Invoice, Invoices, Item,
    Items, LineAmountTypes, Purchase, LineItem, LineItemTracking, Payment, PaymentDelete, Payments, Phone, PurchaseOrder, PurchaseOrders,
)
from xero_python.api_client import ApiClient
from xero_python.api_client.configuration import Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import HTTPStatusException
from xero_python.identity import IdentityApi
from xero_python.rest import RESTClientObject

from clients.http import tls
from clients.limits import CallLimits, LocalLimits, backoff
from core.audit import WRITE_METHODS, AuditSink, write_entry
from core.call_budget import (BudgetStatus, budget_used_up, calls_to_take, next_day_starts, seconds_until_next_day,
                              utc_day, xero_day_nearly_used, xero_day_reached)
from core.items import ItemDraft, ItemWritten, XeroItem
from core.documents import (ContactDraft, DocumentKind, DocumentPlan, PaymentDraft, Status, TargetError,
                            TargetLimitReached, TargetOutcomeUnknown, Written, XeroAllocation, XeroDocument,
                            XeroPayment)

BATCH_LIMIT = 50
SUMMARY_PAGE_LIMIT = 1000  # GET /Invoices?summaryOnly pages: pageSize 1..1000
TOKEN_KEYS = ("access_token", "refresh_token", "expires_in", "token_type", "scope", "id_token", "expires_at")
# Refresh well before expiry so a long call never starts with a token about to die.
REFRESH_MARGIN_SECONDS = 300
RECONNECT_HINT = "run `atx connect xero --tenant {tenant}` to connect it again"
# A read Xero fails (5xx, a timeout, a dropped connection) is tried this many times in all, waiting Xero's
# Retry-After or a jittered backoff from RETRY_BASE_SECONDS between tries. Writes are never tried again
# when their outcome is unknown: the pipeline looks the document up first.
READ_ATTEMPTS = 5
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 30.0
# Xero allows 60 calls a minute per organisation and app. Every process of the sync paces under one shared
# count whose minutes start at each call's answer (clients/limits.py), so 60 would never pass Xero's minute;
# one is kept spare for a call made outside it (a second deployment of the same Xero app, a person's script).
CALLS_PER_MINUTE = 59
XERO_MINUTE_SECONDS = 60.0


# ---- errors ---------------------------------------------------------------------------------------
class XeroError(TargetError):
    """Base of every error the gateway raises. Messages never carry tokens or secrets."""


class XeroAuthError(XeroError):
    """The connection needs a person: revoked, expired beyond refresh, or the organisation disconnected."""


class XeroTokenRefused(XeroAuthError):
    """Xero refused an access token (HTTP 401): one refresh may cure it, a second refusal needs a person."""


class XeroRateLimited(XeroError, TargetLimitReached):
    def __init__(self, problem: str, retry_after: float | None, message: str):
        super().__init__(message)
        self.problem = problem
        self.retry_after = retry_after


class XeroUnavailable(XeroError):
    """Xero kept failing a read (5xx, timeouts) after retries."""


class XeroOutcomeUnknown(XeroError, TargetOutcomeUnknown):
    """A write was sent but no usable answer came back: look the document up before re-sending."""


class XeroRequestError(XeroError):
    """Xero refused a request as a whole (HTTP 400 outside per-element results)."""


# ---- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class XeroEndpoints:
    accounting_url: str = "https://api.xero.com/api.xro/2.0"
    identity_url: str = "https://api.xero.com"
    token_url: str = "https://identity.xero.com/connect/token"
    revoke_url: str = "https://identity.xero.com/connect/revocation"
    authorize_url: str = "https://login.xero.com/identity/connect/authorize"

    @classmethod
    def at(cls, base: str) -> "XeroEndpoints":
        """Every Xero path on one host, as the sandbox serves them."""
        base = base.rstrip("/")
        return cls(
            accounting_url=f"{base}/api.xro/2.0",
            identity_url=base,
            token_url=f"{base}/connect/token",
            revoke_url=f"{base}/connect/revocation",
            authorize_url=f"{base}/identity/connect/authorize",
        )


class TokenStore(Protocol):
    def load(self) -> dict | None: ...

    def save(self, token: dict) -> None: ...


class MemoryTokenStore:
    def __init__(self, token: dict | None = None):
        self._token = dict(token) if token else None

    def load(self) -> dict | None:
        return dict(self._token) if self._token else None

    def save(self, token: dict) -> None:
        self._token = dict(token)

    def __repr__(self) -> str:
        return "MemoryTokenStore(<hidden>)"


@dataclass
class ElementResult:
    """One document's answer inside a batch (`summarizeErrors=false`)."""

    ok: bool
    xero_id: str | None
    number: str | None
    errors: list[str]
    element: Any = field(repr=False)


# ---- the organisation's settings, as plain values --------------------------------------------------
@dataclass(frozen=True)
class XeroAccount:
    code: str | None
    name: str | None
    type: str | None  # REVENUE, SALES, EXPENSE, BANK...
    status: str | None  # ACTIVE, ARCHIVED...
    tax_type: str | None  # the account's default TaxType
    id: str | None = None  # AccountID: bank accounts often have no code
    payments_enabled: bool = False  # EnablePaymentsToAccount: payments may go to it though it is no bank account


@dataclass(frozen=True)
class XeroTaxRate:
    tax_type: str
    name: str | None
    effective_rate: Decimal  # percent
    status: str | None  # ACTIVE, DELETED, ARCHIVED, PENDING; None when Xero sent none


@dataclass(frozen=True)
class XeroTrackingOption:
    name: str
    status: str | None


@dataclass(frozen=True)
class XeroTrackingCategory:
    name: str
    status: str | None
    options: tuple[XeroTrackingOption, ...] = ()


@dataclass(frozen=True)
class XeroSettings:
    """What the organisation is set up with, read once per settings TTL by `XeroGateway.settings()`, in
    plain values (str, Decimal, date): no SDK model or enum leaves this module.

    Nothing is filtered out: archived accounts, inactive tax rates and archived tracking options are
    here with their status. Statuses are upper case, None when Xero sent none. What is usable for
    sending is decided in one place, core/xero_settings.py, for `atx check` and the mapping alike."""

    organisation_name: str
    base_currency: str
    timezone: str | None
    period_lock_date: date | None
    end_of_year_lock_date: date | None
    accounts: tuple[XeroAccount, ...]
    tax_rates: tuple[XeroTaxRate, ...]
    tracking_categories: tuple[XeroTrackingCategory, ...]
    branding_themes: dict[str, str]  # name -> BrandingThemeID
    currencies: frozenset[str]  # codes of the currencies the organisation is subscribed to


def _plain(value) -> str | None:
    """An SDK enum or string as its text; None stays None."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _status_text(value) -> str | None:
    text = _plain(value)
    return text.upper() if text else None


def _day(value) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def _rate(tax_rate) -> Decimal:
    rate = tax_rate.effective_rate if tax_rate.effective_rate is not None else tax_rate.display_tax_rate
    return Decimal(str(rate or 0))


def settings_from_models(organisation, accounts, tax_rates, tracking_categories, branding_themes,
                         currencies) -> XeroSettings:
    """XeroSettings from the SDK's models of the six settings endpoints."""
    return XeroSettings(
        organisation_name=str(organisation.name or ""),
        base_currency=_plain(organisation.base_currency) or "",
        timezone=_plain(organisation.timezone),
        period_lock_date=_day(organisation.period_lock_date),
        end_of_year_lock_date=_day(organisation.end_of_year_lock_date),
        accounts=tuple(
            XeroAccount(code=_plain(a.code), name=_plain(a.name), type=_plain(a.type), status=_status_text(a.status),
                        tax_type=_plain(a.tax_type), id=_text(a.account_id),
                        payments_enabled=bool(getattr(a, "enable_payments_to_account", False)))
            for a in accounts
        ),
        tax_rates=tuple(
            XeroTaxRate(tax_type=str(t.tax_type), name=_plain(t.name), effective_rate=_rate(t),
                        status=_status_text(t.status))
            for t in tax_rates if t.tax_type
        ),
        tracking_categories=tuple(
            XeroTrackingCategory(
                name=str(c.name), status=_status_text(c.status),
                options=tuple(XeroTrackingOption(name=str(o.name), status=_status_text(o.status))
                              for o in (c.options or []) if o.name),
            )
            for c in tracking_categories if c.name
        ),
        branding_themes={str(t.name): str(t.branding_theme_id) for t in branding_themes if t.name},
        currencies=frozenset(code for code in (_plain(c.code) for c in currencies) if code),
    )


# ---- identity: the consent's code exchange and the connections list ----------------------------------
def exchange_code(endpoints: XeroEndpoints, *, client_id: str, client_secret: str, code: str, redirect_uri: str,
                  code_verifier: str, timeout: float = 30) -> dict:
    """POST the consent's authorisation code and its PKCE verifier to Xero's token endpoint.

    Returns the token set as token stores keep it (`expires_at` added, `scope` a list). A refused code,
    verifier, redirect URI or client is XeroAuthError (run the consent again); an identity service that
    fails or does not answer is XeroUnavailable. No message carries the secret, the code, the verifier
    or a token."""
    hidden = (client_secret, code, code_verifier)
    try:
        response = httpx.post(
            endpoints.token_url,
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                  "code_verifier": code_verifier},
            auth=(client_id, client_secret), headers={"Accept": "application/json"}, timeout=timeout, verify=tls(),
        )
    except httpx.HTTPError as exc:
        raise XeroUnavailable(f"Xero's token endpoint did not answer ({type(exc).__name__}) while exchanging the "
                              "authorisation code; run `atx connect xero` again later") from None
    status = response.status_code
    if status == 429 or status >= 500:
        raise XeroUnavailable(f"Xero's token endpoint answered {status} while exchanging the authorisation code; "
                              "run `atx connect xero` again later")
    if status != 200:
        error = _scrub(str(_safe_json(response).get("error") or f"HTTP {status}"), hidden)
        if error == "invalid_client":
            raise XeroAuthError("Xero refused the app's client id or secret (invalid_client): check xero.client_id "
                                "in the tenant file and the client secret, then run `atx connect xero` again")
        raise XeroAuthError(f"Xero refused the authorisation code ({error}); run `atx connect xero` again")
    body = _safe_json(response)
    if not body.get("access_token"):
        raise XeroError("Xero's token endpoint answered without an access token; run `atx connect xero` again")
    return _token_set(body)


def list_connections(endpoints: XeroEndpoints, access_token: str, *, timeout: float = 30, attempts: int = READ_ATTEMPTS,
                     sleep: Callable[[float], None] = time.sleep, max_wait: float = 120) -> list[dict]:
    """GET /connections: the organisations (tenants) the grant behind `access_token` reaches.

    A read: no answer, 429 and 5xx are tried `attempts` times in all (waiting Retry-After when it is at
    most `max_wait`), then XeroUnavailable. A refused token is XeroTokenRefused (a XeroAuthError)."""
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.get(
                f"{endpoints.identity_url}/connections",
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}, timeout=timeout,
                verify=tls(),
            )
        except httpx.HTTPError as exc:
            if attempt < attempts:
                sleep(backoff(attempt - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS))
                continue
            raise XeroUnavailable(f"no answer from Xero while listing connections ({type(exc).__name__})") from None
        status = response.status_code
        if status == 401:
            raise XeroTokenRefused("Xero refused the access token while listing connections (HTTP 401)")
        if status == 403:
            raise XeroAuthError("Xero refused access to the connections list (HTTP 403); run `atx connect xero` again")
        if status == 429 or status >= 500:
            if attempt < attempts:
                retry_after = _float(response.headers.get("Retry-After"))
                sleep(backoff(attempt - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS,
                              retry_after=retry_after if retry_after is not None and retry_after <= max_wait else None))
                continue
            raise XeroUnavailable(f"Xero answered {status} {attempt} times while listing connections")
        if status != 200:
            raise XeroError(f"Xero answered {status} while listing connections")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise XeroError("Xero's connections list was not a list")
        return body
    raise XeroUnavailable("Xero was not asked for its connections (attempts must be at least 1)")


def _token_set(body: dict) -> dict:
    token = dict(body)
    token["expires_at"] = time.time() + int(token.get("expires_in") or 1800)
    if isinstance(token.get("scope"), str):
        token["scope"] = token["scope"].split()
    return {k: v for k, v in token.items() if k in TOKEN_KEYS}


def _scrub(text: str, hidden: Iterable[str]) -> str:
    for secret in hidden:
        if secret:
            text = text.replace(secret, "***")
    return text


# ---- the daily call budget ---------------------------------------------------------------------------
class CallUsageStore(Protocol):
    """Calls counted per Xero organisation (tenant_id) and UTC day, shared by every gateway that uses it
    (ledger/usage.py keeps them in the ledger database, for every process and worker)."""

    def used(self, tenant_id: str, day: date) -> int: ...

    def take(self, tenant_id: str, day: date, calls: int, budget: int) -> int:
        """Add up to `calls` to the day's count without passing `budget`; return how many were added."""

    def give_back(self, tenant_id: str, day: date, calls: int) -> None: ...


class MemoryCallUsage:
    """A CallUsageStore in this process's memory: gateways built without a ledger share it."""

    def __init__(self):
        self._counts: dict[tuple[str, date], int] = {}
        self._lock = threading.Lock()

    def used(self, tenant_id: str, day: date) -> int:
        with self._lock:
            return self._counts.get((tenant_id, day), 0)

    def take(self, tenant_id: str, day: date, calls: int, budget: int) -> int:
        with self._lock:
            used = self._counts.get((tenant_id, day), 0)
            grant = calls_to_take(calls, used, budget)
            self._counts[(tenant_id, day)] = used + grant
            return grant

    def give_back(self, tenant_id: str, day: date, calls: int) -> None:
        with self._lock:
            key = (tenant_id, day)
            self._counts[key] = max(self._counts.get(key, 0) - max(calls, 0), 0)


_PROCESS_USAGE = MemoryCallUsage()
# Calls taken from the shared count at once: one write to the store per this many calls, not per call.
CALL_BUDGET_BLOCK = 10
# Xero's X-DayLimit-Remaining at or below this stops a run: the calls other integrations (and calls
# still in flight here, up to max_in_flight) may need before Xero itself would answer 429.
DAY_LIMIT_RESERVE = 5


class DailyCallBudget:
    """The tenant's daily budget of calls to one Xero organisation, drawn from a count every gateway of
    that organisation shares (a `CallUsageStore`).

    A gateway takes calls from the stored count `block` at a time, with one conditional write, and spends
    them one per call; `settle()` gives back the ones it did not spend (a run calls it when it ends). A
    call is spent only after it was taken, so however many processes share the organisation they never
    pass the budget together. A process that dies before settling leaves at most `block - 1` calls counted
    but never made: the count errs on the side of fewer calls, never of 429s."""

    def __init__(self, tenant_id: str, budget: int, store: CallUsageStore, *, block: int = CALL_BUDGET_BLOCK):
        if budget < 1 or block < 1:
            raise ValueError("the daily call budget and its block must be at least 1")
        self.tenant_id, self.budget, self.store, self.block = tenant_id, budget, store, block
        self._lock = threading.Lock()
        self._day: date | None = None
        self._held = 0  # taken from the store for self._day, not spent yet

    def spend(self, moment: datetime) -> bool:
        """Count one call made at this moment; False (nothing counted) when the day's budget is used up."""
        day = utc_day(moment)
        with self._lock:
            if self._day != day:
                self._settle()
                self._day = day
            if self._held == 0:
                self._held = self.store.take(self.tenant_id, day, self.block, self.budget)
            if self._held == 0:
                return False
            self._held -= 1
            return True

    def refund(self, moment: datetime) -> None:
        """A call counted that never reached Xero (no connection): it may be made again."""
        with self._lock:
            if self._day == utc_day(moment):
                self._held += 1

    def available(self, moment: datetime) -> bool:
        """Whether a call at this moment would be allowed; counts nothing."""
        day = utc_day(moment)
        with self._lock:
            if self._day == day and self._held:
                return True
        return self.store.used(self.tenant_id, day) < self.budget

    def settle(self) -> None:
        """Give the calls taken but not spent back to the shared count."""
        with self._lock:
            self._settle()

    def _settle(self) -> None:
        if self._held and self._day is not None:
            self.store.give_back(self.tenant_id, self._day, self._held)
        self._held = 0

    def status(self, moment: datetime) -> BudgetStatus:
        """The day's calls as every gateway of the organisation counted them (this one's unspent ones left out)."""
        day = utc_day(moment)
        with self._lock:
            held = self._held if self._day == day else 0
            used = self.store.used(self.tenant_id, day) - held
        return BudgetStatus(day=day, used=max(used, 0), budget=self.budget)

    def __repr__(self) -> str:
        return f"DailyCallBudget({self.budget} calls a day)"


@dataclass(frozen=True)
class _DayLimitSeen:
    """What Xero last said of the organisation's own day limit: calls remaining, believed until `until`."""

    remaining: int
    until: datetime
    refused: bool = False  # Xero answered 429 for its day limit


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class _PerCallToken(OAuth2Token):
    """The SDK's token object keeps the current token in shared attributes: a thread can overwrite
    another's between `update_token` and the header being built. Build each header from the token the
    gateway hands out for that very call instead; the SDK never refreshes (the gateway does)."""

    def create_auth_settings(self, api_client):
        token = api_client.get_oauth2_token()
        return {"type": "oauth2", "in": "header", "key": "Authorization",
                "value": f"{token.get('token_type') or 'Bearer'} {token['access_token']}"}

    def __repr__(self) -> str:
        return "OAuth2Token(<hidden>)"


_refresh_locks: dict[str, threading.Lock] = {}
_refresh_locks_guard = threading.Lock()


def _refresh_lock(key: str) -> threading.Lock:
    with _refresh_locks_guard:
        return _refresh_locks.setdefault(key, threading.Lock())


# ---- documents in plain types ------------------------------------------------------------------------
class _DocumentEndpoint:
    """How one Xero collection is read and written through the SDK (the only place that knows)."""

    def __init__(self, model, plural, collection, create, update, get_list, id_attr, number_attr):
        self.model, self.plural, self.collection = model, plural, collection
        self.create, self.update, self.get_list = create, update, get_list
        self.id_attr, self.number_attr = id_attr, number_attr


_ENDPOINTS = {
    "Invoices": _DocumentEndpoint(Invoice, Invoices, "invoices", "create_invoices", "update_or_create_invoices",
                                  "get_invoices", "invoice_id", "invoice_number"),
    "CreditNotes": _DocumentEndpoint(CreditNote, CreditNotes, "credit_notes", "create_credit_notes",
                                     "update_or_create_credit_notes", "get_credit_notes", "credit_note_id",
                                     "credit_note_number"),
    "PurchaseOrders": _DocumentEndpoint(PurchaseOrder, PurchaseOrders, "purchase_orders", "create_purchase_orders",
                                        "update_or_create_purchase_orders", "get_purchase_orders",
                                        "purchase_order_id", "purchase_order_number"),
}


def sdk_document(kind: DocumentKind, plan: DocumentPlan, contact_id: str | None = None, *, target_id: str | None = None):
    """The SDK model for one plan. With `target_id` it rewrites that document (never renumbering it)."""
    fields: dict[str, Any] = {
        "contact": Contact(contact_id=contact_id) if contact_id else Contact(contact_number=plan.contact.number),
        "line_items": [_line_item(line) for line in plan.lines],
        "date": plan.date,
        "line_amount_types": LineAmountTypes(plan.line_amount_types),
        "status": plan.status.value,
    }
    if plan.currency_code:
        fields["currency_code"] = CurrencyCode(plan.currency_code)
    optional = {"branding_theme_id": plan.branding_theme_id, "currency_rate": plan.currency_rate}
    endpoint = _ENDPOINTS[kind.endpoint]
    if kind.endpoint == "Invoices":
        fields["type"] = kind.xero_type
        optional.update(due_date=plan.due_date, url=plan.url)
        if kind.xero_type == "ACCREC":
            optional["reference"] = plan.reference  # Xero keeps Reference on sales invoices only
            optional["sent_to_contact"] = plan.sent_to_contact  # marked sent (approved invoices only)
    elif kind.endpoint == "CreditNotes":
        fields["type"] = kind.xero_type
        optional["reference"] = plan.reference
    else:
        optional.update(delivery_date=plan.delivery_date, reference=plan.reference)
    if target_id:
        optional[endpoint.id_attr] = target_id
    else:
        optional[endpoint.number_attr] = plan.number
    fields.update({k: v for k, v in optional.items() if v is not None})
    return endpoint.model(**fields)


def _line_item(line) -> LineItem:
    optional: dict[str, Any] = {}
    if line.tax_amount is not None:
        optional["tax_amount"] = line.tax_amount
    if line.tracking:
        optional["tracking"] = [LineItemTracking(name=name, option=option) for name, option in line.tracking]
    if line.item_code:
        optional["item_code"] = line.item_code
    if line.account_code:
        optional["account_code"] = line.account_code
    if line.tax_type:
        optional["tax_type"] = line.tax_type
    return LineItem(description=line.description, quantity=line.quantity, unit_amount=line.unit_amount,
                    line_amount=line.line_amount, **optional)


def sdk_contact(draft: ContactDraft, contact_id: str | None = None) -> Contact:
    """The SDK model for one contact draft; with `contact_id` it rewrites that contact."""
    fields: dict[str, Any] = {
        "contact_number": draft.contact_number, "name": draft.name, "tax_number": draft.tax_number,
        "is_customer": draft.is_customer, "website": draft.website, "first_name": draft.first_name,
        "last_name": draft.last_name, "email_address": draft.email_address,
        "account_number": getattr(draft, "account_number", None),
    }
    if contact_id:
        fields["contact_id"] = contact_id
    a = draft.address
    if a is not None:
        # POBOX is the address Xero prints on invoices (the billing address).
        fields["addresses"] = [Address(
            address_type="POBOX", address_line1=a.line1, address_line2=a.line2, city=a.city, region=a.region,
            postal_code=a.postal_code, country=a.country, attention_to=a.attention_to,
        )]
    if draft.phone:
        fields["phones"] = [Phone(phone_type="DEFAULT", phone_number=draft.phone)]
    if draft.default_currency:
        fields["default_currency"] = CurrencyCode(draft.default_currency)
    return Contact(**{k: v for k, v in fields.items() if v is not None})


def contact_hash(draft: ContactDraft) -> str:
    """A stable sha256 of what a draft sends Xero (without its ContactID).

    It hashes the SDK model's to_dict(), as the ledger's contact hashes always have, so a contact
    whose Autotask company did not change keeps its hash and is not sent again."""
    text = json.dumps(sdk_contact(draft).to_dict(), sort_keys=True, default=lambda v: str(getattr(v, "value", v)))
    return hashlib.sha256(text.encode()).hexdigest()


def _sdk_contacts(contacts: list) -> list[Contact]:
    """Drafts (or (ContactID, draft) pairs, to rewrite that contact) as SDK models; SDK models pass as they are."""
    out = []
    for c in contacts:
        if isinstance(c, ContactDraft):
            out.append(sdk_contact(c))
        elif isinstance(c, tuple):
            contact_id, draft = c
            out.append(sdk_contact(draft, contact_id))
        else:
            out.append(c)
    return out


def plain_document(kind: DocumentKind, model) -> XeroDocument:
    """An SDK model as the pipeline sees it."""
    endpoint = _ENDPOINTS[kind.endpoint]
    contact = getattr(model, "contact", None)
    allocated = bool(getattr(model, "payments", None) or getattr(model, "allocations", None)
                     or getattr(model, "credit_notes", None) or getattr(model, "prepayments", None)
                     or getattr(model, "overpayments", None))
    remaining, total = _decimal(getattr(model, "remaining_credit", None)), _decimal(getattr(model, "total", None))
    if remaining is not None and total is not None and remaining < total:
        allocated = True  # part of a credit note is used
    return XeroDocument(
        kind=kind.name,
        id=str(getattr(model, endpoint.id_attr)),
        number=getattr(model, endpoint.number_attr, None),
        status=Status.of(getattr(model, "status", None)),
        total=total,
        contact_id=str(contact.contact_id) if contact is not None and contact.contact_id else None,
        contact_number=getattr(contact, "contact_number", None) if contact is not None else None,
        url=getattr(model, "url", None),
        reference=getattr(model, "reference", None),
        amount_due=_decimal(getattr(model, "amount_due", None)),
        amount_paid=_decimal(getattr(model, "amount_paid", None)),
        amount_credited=_decimal(getattr(model, "amount_credited", None)),
        has_allocations=allocated,
        updated=getattr(model, "updated_date_utc", None),
        fully_paid_on_date=_day(getattr(model, "fully_paid_on_date", None)),
        allocations=_allocations(model),
        total_tax=_decimal(getattr(model, "total_tax", None)),
    )


def _allocations(model) -> tuple[XeroAllocation, ...]:
    """What the document lists as settling it, in plain types (deleted payments are not listed)."""
    found: list[XeroAllocation] = []
    for payment in getattr(model, "payments", None) or []:
        found.append(XeroAllocation("payment", _text(payment.payment_id), _decimal(payment.amount) or Decimal(0),
                                    _day(payment.date), payment.reference or None))
    applied = (("credit_note", "credit_notes", "credit_note_id"), ("prepayment", "prepayments", "prepayment_id"),
               ("overpayment", "overpayments", "overpayment_id"))
    for kind, attr, id_attr in applied:
        for item in getattr(model, attr, None) or []:
            amount = getattr(item, "applied_amount", None)
            found.append(XeroAllocation(kind, _text(getattr(item, id_attr, None)),
                                        _decimal(amount if amount is not None else getattr(item, "total", None))
                                        or Decimal(0), _day(getattr(item, "date", None)),
                                        getattr(item, "credit_note_number", None) or None))
    for allocation in getattr(model, "allocations", None) or []:  # a credit note's own allocations to invoices
        invoice = getattr(allocation, "invoice", None)
        found.append(XeroAllocation("allocation", _text(getattr(invoice, "invoice_id", None)),
                                    _decimal(allocation.amount) or Decimal(0), _day(allocation.date),
                                    getattr(invoice, "invoice_number", None) or None))
    return tuple(found)


def _text(value) -> str | None:
    return str(value) if value else None


def _decimal(value):
    from decimal import Decimal

    return None if value is None else Decimal(str(value))


class DocumentsMixin:
    """Generic create / update / find / set_status / attach, driven by the kind table."""

    def create(self, kind: DocumentKind, plans: list[DocumentPlan], contact_ids: dict[str, str], *,
               idempotency_key: str) -> list[Written]:
        """PUT: create only, at most 50, each answered on its own."""
        if kind.endpoint == "Payments":
            written = self.create_payments([payment_draft(p) for p in plans], idempotency_key=idempotency_key)
            return [Written(ok=w.ok, document=payment_document(kind, w.payment) if w.ok else None, errors=w.errors)
                    for w in written]
        models = [sdk_document(kind, p, contact_ids.get(p.contact.number) if p.contact else None) for p in plans]
        return self._write(kind, "create", models, idempotency_key, f"creating {len(models)} {kind.noun}s")

    def update(self, kind: DocumentKind, changes: list[tuple[str, DocumentPlan]], contact_ids: dict[str, str], *,
               idempotency_key: str) -> list[Written]:
        """POST by id: the lines are replaced, the number Xero holds is kept."""
        models = [sdk_document(kind, p, contact_ids.get(p.contact.number) if p.contact else None, target_id=target)
                  for target, p in changes]
        return self._write(kind, "update", models, idempotency_key, f"updating {len(models)} {kind.noun}s")

    def set_status(self, kind: DocumentKind, changes: list[tuple[str, Status]], *, idempotency_key: str) -> list[Written]:
        """POST with only the id and the status (VOIDED, DELETED): nothing else changes."""
        endpoint = _ENDPOINTS[kind.endpoint]
        models = [endpoint.model(**{endpoint.id_attr: doc_id, "status": status.value}) for doc_id, status in changes]
        return self._write(kind, "update", models, idempotency_key, f"changing the status of {len(models)} {kind.noun}s")

    def _write(self, kind: DocumentKind, how: str, models: list, idempotency_key: str, what: str) -> list[Written]:
        _check_batch(models)
        endpoint = _ENDPOINTS[kind.endpoint]
        method = getattr(self.accounting, endpoint.create if how == "create" else endpoint.update)
        extra = {} if kind.endpoint == "PurchaseOrders" else {"unitdp": 4}
        data = self._call(method, endpoint.plural(**{endpoint.collection: models}), write=True, what=what,
                          summarize_errors=False, idempotency_key=idempotency_key, **extra)
        results = []
        for model in getattr(data, endpoint.collection) or []:
            element = _element(model, endpoint.id_attr, endpoint.number_attr)
            results.append(Written(ok=element.ok, document=plain_document(kind, model) if element.ok else None,
                                   errors=element.errors))
        return results

    def find(self, kind: DocumentKind, *, ids=(), numbers=(), contact_ids=(), created_by_my_app: bool = False,
             modified_since=None, where: str | None = None,
             details: Callable[[XeroDocument], bool] | None = None) -> list[XeroDocument]:
        """Documents of this kind by id, by number, or by any narrower read; deleted ones included.
        `details` (invoices read by anything but id or number): which of the summaries found are read again
        for their settlements and link; the others keep the summary's status and amounts."""
        ids, numbers = [str(i) for i in ids if i], [str(n) for n in numbers if n]
        if kind.endpoint == "Payments":
            # A payment's "number" is its Reference, the sync's marker.
            return [payment_document(kind, p) for p in
                    self.find_payments(ids=ids, references=numbers, where=where, modified_since=modified_since)]
        if kind.endpoint == "Invoices":
            # A batch's 50 numbers in one read (the URL stays well inside Xero's limit).
            models = self.find_invoices(ids=ids, numbers=numbers, contact_ids=contact_ids, where=where,
                                        created_by_my_app=created_by_my_app, modified_since=modified_since,
                                        chunk_size=BATCH_LIMIT,
                                        details=None if details is None else (lambda m: details(plain_document(kind, m))))
            models = [m for m in models if str(getattr(m.type, "value", m.type)) == kind.xero_type]
        elif kind.endpoint == "CreditNotes":
            models = self.find_credit_notes(ids=ids, numbers=numbers, where=where, modified_since=modified_since)
        else:
            models = self._find_purchase_orders(ids, numbers, modified_since)
        return [plain_document(kind, m) for m in models]

    def _find_purchase_orders(self, ids: list[str], numbers: list[str], modified_since) -> list:
        """Purchase orders have no list filters by id or number: one read each (they are few)."""
        found = []
        for doc_id in ids:
            found += self._call(self.accounting.get_purchase_order, doc_id, write=False,
                                what="reading a purchase order").purchase_orders or []
        for number in numbers:
            try:
                found += self._call(self.accounting.get_purchase_order_by_number, number, write=False,
                                    what="reading a purchase order").purchase_orders or []
            except XeroError as exc:
                if "404" not in str(exc):
                    raise
        if not ids and not numbers:
            kwargs = {"if_modified_since": modified_since} if modified_since is not None else {}
            found = self._pages(self.accounting.get_purchase_orders, "purchase_orders", "reading purchase orders", **kwargs)
        return found

    def attach(self, kind: DocumentKind, doc_id: str, file_name: str, content: bytes, *, idempotency_key: str) -> None:
        if kind.endpoint == "CreditNotes":
            self.attach_to_credit_note(doc_id, file_name, content, idempotency_key=idempotency_key)
        elif kind.endpoint == "Invoices":
            self.attach_to_invoice(doc_id, file_name, content, idempotency_key=idempotency_key)
        else:
            raise ValueError(f"{kind.noun}s carry no attachments here")


# ---- payments in plain types -------------------------------------------------------------------------
PAYMENT_PAGE_LIMIT = 1000  # GET /Payments takes pageSize 1..1000


@dataclass(frozen=True)
class PaymentWritten:
    """One payment's answer to a batch write, in plain types, with the draft it answers (Xero keeps order)."""

    ok: bool
    payment: XeroPayment | None
    errors: list[str]
    draft: PaymentDraft | None = None


def sdk_payment(draft: PaymentDraft) -> Payment:
    account = Account(account_id=draft.account_id) if draft.account_id else Account(code=draft.account_code)
    fields: dict[str, Any] = {"invoice": Invoice(invoice_id=draft.invoice_id), "account": account,
                              "amount": draft.amount, "date": draft.date}
    if draft.reference:
        fields["reference"] = draft.reference
    if draft.currency_rate is not None:
        fields["currency_rate"] = draft.currency_rate
    return Payment(**fields)


def plain_payment(model) -> XeroPayment:
    invoice, account = getattr(model, "invoice", None), getattr(model, "account", None)
    credit_note = getattr(model, "credit_note", None)
    return XeroPayment(
        id=str(model.payment_id),
        invoice_id=_text(getattr(invoice, "invoice_id", None)),
        invoice_number=getattr(invoice, "invoice_number", None) or None,
        amount=_decimal(model.amount) if model.amount is not None else Decimal(0),
        date=_day(model.date),
        status=_status_text(model.status),
        payment_type=_plain(model.payment_type),
        account_code=getattr(account, "code", None) or None,
        currency_rate=_decimal(model.currency_rate),
        reference=model.reference or None,
        updated=model.updated_date_utc,
        credit_note_id=_text(getattr(credit_note, "credit_note_id", None)),
    )


def payment_draft(plan: DocumentPlan) -> PaymentDraft:
    """A planned payment (kind PAYMENT): the invoice it pays, its amount, date, bank account and marker."""
    return PaymentDraft(invoice_id=plan.applies_to, amount=plan.total, date=plan.date, account_id=plan.account_id,
                        reference=plan.reference, currency_rate=plan.currency_rate)


def payment_document(kind: DocumentKind, payment: XeroPayment) -> XeroDocument:
    """A payment as the pipeline reads any target document: numbered by its Reference (the marker)."""
    return XeroDocument(kind=kind.name, id=payment.id, number=payment.reference, status=Status.of(payment.status),
                        total=payment.amount, reference=payment.reference, updated=payment.updated)


def _payment_written(model, draft: PaymentDraft | None) -> PaymentWritten:
    errors = [e.message for e in (model.validation_errors or []) if getattr(e, "message", None)]
    refused = bool(errors) or bool(model.has_validation_errors) or _status_text(model.status_attribute_string) == "ERROR"
    if refused:
        return PaymentWritten(ok=False, payment=None, errors=errors or ["Xero refused the payment without a reason"],
                              draft=draft)
    return PaymentWritten(ok=True, payment=plain_payment(model), errors=[], draft=draft)


class PaymentsMixin:
    """Payments both ways: read Xero's (new, changed, deleted) and make them, in plain types."""

    def find_payments(self, *, modified_since=None, invoice_ids: Iterable[str] = (), statuses: Iterable[str] = (),
                      ids: Iterable[str] = (), references: Iterable[str] = (), where: str | None = None,
                      page_size: int = PAYMENT_PAGE_LIMIT, chunk_size: int = 25) -> list[XeroPayment]:
        """GET /Payments, paged (`page_size` up to 1000), narrowed by If-Modified-Since (a datetime), by
        invoice, payment id or Reference (a `where` of ORs, in chunks), by Status (AUTHORISED, DELETED) and
        by any further `where`. Deleted payments are included unless `statuses` leaves them out: they are
        reversals to apply."""
        if not 1 <= page_size <= PAYMENT_PAGE_LIMIT:
            raise ValueError(f"page_size must be between 1 and {PAYMENT_PAGE_LIMIT}")
        kwargs: dict[str, Any] = {}
        if modified_since is not None:
            kwargs["if_modified_since"] = modified_since
        status_clause = " OR ".join(f'Status=="{_quote(s.upper())}"' for s in statuses if s)
        terms = ([f'Invoice.InvoiceID==Guid("{_quote(str(i))}")' for i in invoice_ids if i]
                 + [f'PaymentID==Guid("{_quote(str(i))}")' for i in ids if i]
                 + [f'Reference=="{_quote(str(r))}"' for r in references if r])
        wheres = [" OR ".join(chunk) for chunk in _chunks(terms, chunk_size)] or [""]
        found: dict[str, XeroPayment] = {}
        for narrowed in wheres:
            clause = " AND ".join(f"({c})" for c in (narrowed, status_clause, where or "") if c)
            extra = {"where": clause} if clause else {}
            for model in self._pages(self.accounting.get_payments, "payments", "reading payments",
                                     page_size=page_size, **extra, **kwargs):
                payment = plain_payment(model)
                found.pop(payment.id, None)  # one changed while paging comes again later: keep the last
                found[payment.id] = payment
        return list(found.values())

    def create_payments(self, payments: list[PaymentDraft], *, idempotency_key: str) -> list[PaymentWritten]:
        """PUT /Payments with summarizeErrors=false: one call, at most 50, each answered on its own (a payment
        over the invoice's AmountDue, or on an invoice that is not AUTHORISED, is refused alone). A lost
        answer is XeroOutcomeUnknown: find the invoice's payments before sending again."""
        _check_batch(payments)
        data = self._call(
            self.accounting.create_payments, Payments(payments=[sdk_payment(p) for p in payments]), write=True,
            what=f"creating {len(payments)} payments", summarize_errors=False, idempotency_key=idempotency_key,
        )
        models = data.payments or []
        drafts: list[PaymentDraft | None] = list(payments) if len(models) == len(payments) else [None] * len(models)
        return [_payment_written(model, draft) for model, draft in zip(models, drafts)]

    def delete_payment(self, payment_id: str, *, idempotency_key: str) -> PaymentWritten:
        """POST /Payments/{id} with Status DELETED (Xero's only change to a payment): the invoice's AmountDue
        comes back. Refusals (already deleted, a locked period) come back as ok=False."""
        try:
            data = self._call(self.accounting.delete_payment, payment_id, PaymentDelete(status="DELETED"), write=True,
                              what="deleting a payment", idempotency_key=idempotency_key)
        except XeroRequestError as exc:
            return PaymentWritten(ok=False, payment=None, errors=[str(exc)])
        models = data.payments or []
        if not models:
            raise XeroError("Xero answered a payment deletion without the payment")
        return _payment_written(models[0], None)


# ---- items -----------------------------------------------------------------------------------------
ITEM_BATCH_LIMIT = 500  # Xero takes up to 500 items a request


def sdk_item(draft: ItemDraft) -> Item:
    sales = {k: v for k, v in {"account_code": draft.account_code, "tax_type": draft.tax_type,
                               "unit_price": draft.unit_price}.items() if v is not None}
    fields: dict[str, Any] = {"code": draft.code, "name": draft.name, "is_sold": True}
    if sales:
        fields["sales_details"] = Purchase(**sales)
    if draft.description:
        fields["description"] = draft.description
    return Item(**fields)


def plain_item(model) -> XeroItem:
    return XeroItem(id=str(model.item_id), code=model.code, name=model.name or None)


class ItemsMixin:
    """Xero items (products and services), in plain types."""

    def find_items(self, codes: Iterable[str]) -> list[XeroItem]:
        """GET /Items narrowed to these codes: one call for up to 100 codes (a `where` of ORs; Xero compares
        strings without regard to case)."""
        wanted = list(dict.fromkeys(c for c in codes if c))
        found: dict[str, XeroItem] = {}
        for chunk in _chunks(wanted, 100):
            where = " OR ".join(f'Code=="{_quote(c)}"' for c in chunk)
            data = self._call(self.accounting.get_items, write=False, what="reading items", where=where)
            for model in data.items or []:
                item = plain_item(model)
                found[item.id] = item
        return list(found.values())

    def create_items(self, drafts: list[ItemDraft], *, idempotency_key: str) -> list[ItemWritten]:
        """PUT /Items with summarizeErrors=false: one call (at most 500), each item answered on its own (a code
        Xero already holds is refused alone). A lost answer is XeroOutcomeUnknown: find the codes again."""
        if not drafts:
            raise ValueError("an empty batch")
        if len(drafts) > ITEM_BATCH_LIMIT:
            raise ValueError(f"at most {ITEM_BATCH_LIMIT} items per request, got {len(drafts)}")
        data = self._call(self.accounting.create_items, Items(items=[sdk_item(d) for d in drafts]), write=True,
                          what=f"creating {len(drafts)} items", summarize_errors=False,
                          idempotency_key=idempotency_key)
        models = data.items or []
        answers: list[ItemDraft | None] = list(drafts) if len(models) == len(drafts) else [None] * len(models)
        written = []
        for model, draft in zip(models, answers):
            errors = [e.message for e in (model.validation_errors or []) if getattr(e, "message", None)]
            if errors or _status_text(model.status_attribute_string) == "ERROR":
                written.append(ItemWritten(ok=False, item=None, draft=draft,
                                           errors=errors or ["Xero refused the item without a reason"]))
            else:
                written.append(ItemWritten(ok=True, item=plain_item(model), errors=[], draft=draft))
        return written


# ---- the gateway -----------------------------------------------------------------------------------
class XeroGateway(DocumentsMixin, PaymentsMixin, ItemsMixin):
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        tenant_id: str,
        token_store: TokenStore,
        endpoints: XeroEndpoints = XeroEndpoints(),
        calls_per_minute: int = CALLS_PER_MINUTE,
        max_in_flight: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 60,
        max_wait_seconds: float = 120,
        settings_ttl_seconds: float = 0,
        connection_name: str = "xero",
        daily_call_budget: int | None = None,
        call_usage: CallUsageStore | None = None,
        now: Callable[[], datetime] = _utc_now,
        call_budget_block: int = CALL_BUDGET_BLOCK,
        day_limit_reserve: int = DAY_LIMIT_RESERVE,
        limits: CallLimits | None = None,
        read_attempts: int = READ_ATTEMPTS,
        audit: AuditSink | None = None,
    ):
        """`clock` (monotonic seconds) paces calls; `now` (an aware datetime) says which UTC day a call counts
        in. `limits` keeps the organisation's calls a minute and calls in flight (default: this gateway
        alone, on `clock` and `sleep`); gateways of one organisation given one shared limits
        (ledger/limits.py, as atx/connections.py does) keep Xero's together. A read is tried
        `read_attempts` times in all when Xero fails it (5xx, no answer). With `daily_call_budget`, at most
        that many calls a UTC day reach the organisation, counted in `call_usage` (shared by every gateway of the organisation; default: this process's memory), and a
        run stops before Xero's own day limit when X-DayLimit-Remaining falls to `day_limit_reserve`.
        Without it (bare gateways in tests, `atx connect`), only Xero's 429s stop a run. `audit` receives every
        write request (POST, PUT, DELETE) and its answer, redacted (core/audit.py)."""
        self.client_id = client_id
        self._client_secret = client_secret
        self.tenant_id = tenant_id
        self.endpoints = endpoints
        self.connection_name = connection_name
        self._store = token_store
        self._sleep = sleep
        # The SDK ignores a bare float timeout (only an int or a pair reach urllib3), and int() would turn
        # a sub-second timeout into 0, which urllib3 refuses: always pass a (connect, read) pair of floats.
        self._timeout = (min(10.0, float(timeout)), float(timeout))
        self._max_wait = max_wait_seconds
        self.limits = limits if limits is not None else LocalLimits(clock=clock, sleep=sleep)
        self.calls_per_minute, self.max_in_flight = calls_per_minute, max_in_flight
        # Xero's limits are per organisation (and app): every gateway of this one paces under these names.
        self.minute_limit, self.in_flight_limit = f"xero-{tenant_id}-calls", f"xero-{tenant_id}-in-flight"
        self.waited = 0.0  # seconds this gateway waited for its turn (pacing, not retries)
        self.read_attempts = max(read_attempts, 1)
        self.calls = 0
        self.day_remaining: int | None = None  # Xero's X-DayLimit-Remaining, as last answered
        self._clock = clock
        self._now = now
        self.budget = (DailyCallBudget(tenant_id, daily_call_budget, call_usage or _PROCESS_USAGE,
                                       block=call_budget_block) if daily_call_budget else None)
        self.day_limit_reserve = day_limit_reserve
        self._day_limit: _DayLimitSeen | None = None
        self._minute_used_until: float | None = None  # on `clock`: Xero said its minute had no call left
        self.settings_ttl = settings_ttl_seconds
        self._settings: dict[str, tuple[float, Any]] = {}
        self._calls_lock = threading.Lock()
        self._sent = threading.local()

        configuration = Configuration()
        # Configuration() copies the first instance ever made: give this one its own token object.
        configuration.oauth2_token = _PerCallToken(client_id=client_id, client_secret=client_secret)
        self.api_client = ApiClient(
            configuration, oauth2_token_getter=self._token_for_sdk, oauth2_token_saver=self._ignore_sdk_save
        )
        self.audit = audit
        # Every request of the SDK passes through its REST client: writes are recorded there, in one place.
        self.api_client.rest_client = _AuditedRestClient(configuration, self._audit_write)
        # No hidden retries: a re-sent PUT after a dropped connection is how duplicates are made.
        self.api_client.rest_client.pool_manager = urllib3.PoolManager(
            num_pools=4, maxsize=max_in_flight + 1, retries=False, cert_reqs="CERT_REQUIRED",
            ca_certs=_certifi_where(),
        )
        self.accounting = AccountingApi(self.api_client, base_url=endpoints.accounting_url)
        self.identity = IdentityApi(self.api_client, base_url=endpoints.identity_url)

    def __repr__(self) -> str:
        return f"XeroGateway(tenant_id={self.tenant_id!r}, connection={self.connection_name!r})"

    # ---- tokens ----------------------------------------------------------------------------------
    def _token_for_sdk(self) -> dict:
        token = self.current_token()
        # Without expires_at the SDK never refreshes on its own; this gateway does it, under a lock.
        self._sent.access_token = token.get("access_token")  # which token a 401 refers to, per thread
        sdk = {k: token.get(k) for k in TOKEN_KEYS if k != "expires_at"}
        # Keys missing from the store come out as None, which setdefault would keep ("None <token>").
        sdk["token_type"] = sdk.get("token_type") or "Bearer"
        sdk["expires_in"] = sdk.get("expires_in") or 1800
        if isinstance(sdk.get("scope"), str):
            sdk["scope"] = sdk["scope"].split()
        return sdk

    def _ignore_sdk_save(self, token: dict) -> None:
        pass  # the SDK never refreshes here (see _token_for_sdk), so it has nothing to save

    def current_token(self, *, force_refresh: bool = False) -> dict:
        token = self._store.load()
        if not token or not token.get("access_token"):
            raise XeroAuthError(f"Xero connection {self.connection_name!r} has no token: " + RECONNECT_HINT.format(tenant=self.connection_name))
        if force_refresh or _expires_soon(token):
            with self._refresh_serialised():
                latest = self._store.load() or token
                # Another thread may have refreshed while this one waited for the lock.
                if latest.get("access_token") != token.get("access_token") and not _expires_soon(latest):
                    return latest
                token = self._refresh(latest)
        return token

    @contextlib.contextmanager
    def _refresh_serialised(self):
        """One refresh at a time per connection: across threads here, and across processes when the
        token store can lock (a database row lock), because a refresh token works only once."""
        with _refresh_lock(f"{self.endpoints.token_url}|{self.connection_name}"):
            locked = getattr(self._store, "locked", None)
            if locked is None:
                yield
            else:
                with locked():
                    yield

    def _refresh_refused(self, refused_access_token: str | None) -> dict:
        """After a 401: refresh, unless another thread or process already replaced the refused token."""
        with self._refresh_serialised():
            latest = self._store.load()
            if not latest or not latest.get("access_token"):
                raise XeroAuthError(f"Xero connection {self.connection_name!r} has no token: "
                                    + RECONNECT_HINT.format(tenant=self.connection_name))
            if refused_access_token is not None and latest.get("access_token") != refused_access_token:
                return latest
            return self._refresh(latest)

    def _refresh(self, token: dict) -> dict:
        refresh_token = token.get("refresh_token")
        if not refresh_token:
            raise XeroAuthError(f"Xero connection {self.connection_name!r} cannot be refreshed: " + RECONNECT_HINT.format(tenant=self.connection_name))
        # Xero: "If you don't receive a response from a token refresh you can retry using your existing refresh
        # token for up to 30 minutes". So a lost answer, a 5xx or a 429 is tried again with the same refresh
        # token (the retries take minutes, not half an hour); the grant is untouched, so no person is needed.
        attempt = 0
        while True:
            attempt += 1
            try:
                response = httpx.post(
                    self.endpoints.token_url,
                    data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                    auth=(self.client_id, self._client_secret),
                    timeout=30, verify=tls(),
                )
            except httpx.HTTPError as exc:
                if attempt < self.read_attempts:
                    self._sleep(backoff(attempt - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS))
                    continue
                raise XeroUnavailable(f"Xero's token endpoint did not answer ({type(exc).__name__}) {attempt} times "
                                      f"while refreshing connection {self.connection_name!r}; try again later") from None
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = _float(response.headers.get("Retry-After"))
                if attempt < self.read_attempts and (retry_after or 0) <= self._max_wait:
                    self._sleep(backoff(attempt - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS,
                                        retry_after=retry_after))
                    continue
                raise XeroUnavailable(
                    f"Xero's token endpoint answered {response.status_code} {attempt} times while refreshing "
                    f"connection {self.connection_name!r}; try again later"
                )
            break
        if response.status_code != 200:
            latest = self._store.load() or {}
            if latest.get("refresh_token") and latest.get("refresh_token") != refresh_token and not _expires_soon(latest):
                return latest  # another process rotated it first; its token is the good one
            error = _safe_json(response).get("error", f"HTTP {response.status_code}")
            raise XeroAuthError(
                f"Xero refused to refresh connection {self.connection_name!r} ({error}): "
                + RECONNECT_HINT.format(tenant=self.connection_name)
            )
        new = response.json()
        new["expires_at"] = time.time() + int(new.get("expires_in", 1800))
        if isinstance(new.get("scope"), str):
            new["scope"] = new["scope"].split()
        new = {k: v for k, v in new.items() if k in TOKEN_KEYS}
        # Save before use: the old refresh token is single-use, so losing the new one loses the connection.
        self._store.save(new)
        return new

    # ---- the audit trail ----------------------------------------------------------------------------
    def _audit_write(self, method: str, url: str, query, headers: dict, body, status: int | None, answer,
                     error: str | None, started: datetime, elapsed: float) -> None:
        if self.audit is None:
            return
        # Besides the headers and fields that name a credential, the secrets this gateway holds are cut out of
        # any text they might be echoed in.
        known = [self._client_secret, getattr(self._sent, "access_token", None)]
        entry = write_entry(api="xero", method=method, url=url, query=query, headers=headers, body=body,
                            status=status, answer=answer, error=error, at=started, elapsed_ms=int(elapsed * 1000),
                            known=known)
        pending = getattr(self._sent, "audited", None)
        if pending is None:
            self.audit.record(entry)
        else:
            pending.append(entry)

    def _keep_audited(self) -> None:
        pending, self._sent.audited = getattr(self._sent, "audited", None) or [], None
        for entry in pending:
            self.audit.record(entry)

    # ---- one call ----------------------------------------------------------------------------------
    def _call(self, method: Callable, *args, write: bool, what: str, **kwargs):
        attempt, refreshed = 0, False
        while True:
            attempt += 1
            self._count_in_budget()  # every attempt that may reach Xero counts, answered or refused
            self._wait_for_xero_minute()
            try:
                self._sent.audited = []
                try:
                    # The minute's slot is taken before the in-flight one and counts from the answer.
                    with (self.limits.paced(self.minute_limit, self.calls_per_minute) as waited,
                          self.limits.hold(self.in_flight_limit, self.max_in_flight)):
                        self._add_waited(waited)
                        data, _status, headers = method(
                            self.tenant_id, *args, _return_http_data_only=False, _request_timeout=self._timeout,
                            **kwargs
                        )
                finally:
                    self._keep_audited()  # after the in-flight slot is given back: the insert never holds it
                self._count(headers)
                self._note_xero_minute(headers)
                return data
            except HTTPStatusException as exc:
                self._count(exc.headers)
                status = exc.status
                if status == 429:
                    problem = (exc.headers or {}).get("X-Rate-Limit-Problem", "minute")
                    retry_after = _float((exc.headers or {}).get("Retry-After"))
                    if problem == "day":
                        self._day_limit_reached(retry_after)
                    if problem == "day" or attempt > 5 or (retry_after or 0) > self._max_wait:
                        raise XeroRateLimited(
                            problem, retry_after,
                            f"Xero's {problem} limit for this organisation is reached while {what}; "
                            + ("the run stops and resumes next time" if problem == "day" else "try again shortly"),
                        ) from None
                    # A 429 means Xero did nothing, so even a write may be sent again.
                    self._sleep(retry_after if retry_after is not None else 2**attempt)
                    continue
                if status == 401 and not refreshed:
                    # A 401 means Xero did nothing, so even a write may be sent again after one refresh.
                    refreshed = True
                    self._refresh_refused(getattr(self._sent, "access_token", None))
                    continue
                if status in (401, 403):
                    detail = _safe_json_text(exc.body).get("Detail") or _safe_json_text(exc.body).get("Title") or f"HTTP {status}"
                    raise XeroAuthError(
                        f"Xero refused access while {what} ({detail}): the organisation may be disconnected; "
                        + RECONNECT_HINT.format(tenant=self.connection_name)
                    ) from None
                if status == 400:
                    body = _safe_json_text(exc.body)
                    if body.get("error") == "invalid_grant":
                        raise XeroAuthError(f"Xero connection {self.connection_name!r} was revoked: " + RECONNECT_HINT.format(tenant=self.connection_name)) from None
                    raise XeroRequestError(f"Xero refused the request while {what}: {_validation_messages(body)}") from None
                if status >= 500:
                    if write:
                        raise XeroOutcomeUnknown(f"Xero answered {status} while {what}; the outcome is unknown") from None
                    retry_after = _float((exc.headers or {}).get("Retry-After"))
                    if attempt < self.read_attempts and (retry_after or 0) <= self._max_wait:
                        self._sleep(backoff(attempt - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS,
                                            retry_after=retry_after))
                        continue
                    raise XeroUnavailable(f"Xero answered {status} {attempt} times while {what}") from None
                raise XeroError(f"Xero answered {status} while {what}") from None
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError) as exc:
                # Nothing reached Xero, so a retry is safe for writes too, and the call is not counted.
                if self.budget is not None:
                    self.budget.refund(self._now())
                if attempt < self.read_attempts:
                    self._sleep(backoff(attempt - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS))
                    continue
                raise XeroUnavailable(f"cannot reach Xero while {what}: {type(exc).__name__}") from None
            except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
                if write:
                    raise XeroOutcomeUnknown(f"no answer from Xero while {what} ({type(exc).__name__}); the outcome is unknown") from None
                if attempt < self.read_attempts:
                    self._sleep(backoff(attempt - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS))
                    continue
                raise XeroUnavailable(f"no answer from Xero while {what} ({type(exc).__name__})") from None

    def _count(self, headers) -> None:
        with self._calls_lock:
            self.calls += 1
            if headers is not None:
                remaining = headers.get("X-DayLimit-Remaining")
                if remaining is not None and str(remaining).isdigit():
                    self.day_remaining = int(remaining)
                    # Believed for the rest of the UTC day: the first call of the next one asks Xero again.
                    self._day_limit = _DayLimitSeen(int(remaining), next_day_starts(self._now()))

    # ---- Xero's minute, as Xero answers it ------------------------------------------------------------
    def _add_waited(self, seconds: float) -> None:
        with self._calls_lock:
            self.waited += seconds

    def _note_xero_minute(self, headers) -> None:
        """Xero answered that its minute has no call left (X-MinLimit-Remaining: 0) although the shared
        pacing left room: calls this sync does not pace (another deployment of the same app, a lowered
        limit) share the organisation's minute. The minute ends at most 60 seconds after this answer, so
        no call of this gateway goes before then: waiting costs less than a 429 and its wait."""
        remaining = (headers or {}).get("X-MinLimit-Remaining")
        if remaining is not None and str(remaining).strip() == "0":
            until = self._clock() + XERO_MINUTE_SECONDS
            with self._calls_lock:
                self._minute_used_until = max(self._minute_used_until or 0.0, until)

    def _wait_for_xero_minute(self) -> None:
        with self._calls_lock:
            until = self._minute_used_until
        if until is None:
            return
        wait = until - self._clock()
        if wait > 0:
            self._add_waited(wait)
            self._sleep(wait)
        with self._calls_lock:
            if self._minute_used_until == until:
                self._minute_used_until = None

    def _day_limit_reached(self, retry_after: float | None) -> None:
        """Xero answered 429 for its day limit: no call until its Retry-After (else the next UTC day)."""
        moment = self._now()
        until = moment + timedelta(seconds=retry_after) if retry_after else next_day_starts(moment)
        with self._calls_lock:
            self._day_limit = _DayLimitSeen(0, until, refused=True)

    # ---- the daily call budget -------------------------------------------------------------------------
    def _count_in_budget(self) -> None:
        """Count one call in the tenant's daily budget, or raise XeroRateLimited (nothing sent) when the
        budget is used up or Xero's own day limit is down to the reserve."""
        if self.budget is None:
            return
        moment = self._now()
        self._stop_before_xero_day_limit(moment)
        if not self.budget.spend(moment):
            raise XeroRateLimited("budget", seconds_until_next_day(moment),
                                  budget_used_up(utc_day(moment), self.budget.budget, moment))

    def _stop_before_xero_day_limit(self, moment: datetime) -> None:
        with self._calls_lock:
            seen = self._day_limit
        if seen is not None and moment < seen.until and seen.remaining <= self.day_limit_reserve:
            raise XeroRateLimited("day", (seen.until - moment).total_seconds(),
                                  xero_day_reached(moment, seen.until) if seen.refused else
                                  xero_day_nearly_used(seen.remaining, self.day_limit_reserve, moment, seen.until))

    def check_call_budget(self) -> None:
        """Raise XeroRateLimited, as the next call would, when it could not be made now; counts nothing.
        A run asks before it starts, so a day whose budget is spent costs it no call at all."""
        if self.budget is None:
            return
        moment = self._now()
        self._stop_before_xero_day_limit(moment)
        if not self.budget.available(moment):
            raise XeroRateLimited("budget", seconds_until_next_day(moment),
                                  budget_used_up(utc_day(moment), self.budget.budget, moment))

    def call_budget_status(self) -> BudgetStatus | None:
        """Today's calls for this organisation against the tenant's budget (None: no budget)."""
        return None if self.budget is None else self.budget.status(self._now())

    def settle_calls(self) -> None:
        """Give the calls taken from the shared count but not made back to it (when a run ends)."""
        if self.budget is not None:
            self.budget.settle()

    # ---- invoices ------------------------------------------------------------------------------------
    def create_invoices(self, invoices: list[Invoice], *, idempotency_key: str) -> list[ElementResult]:
        """PUT /Invoices: create only. One call, at most 50 invoices, each answered on its own."""
        _check_batch(invoices)
        data = self._call(
            self.accounting.create_invoices, Invoices(invoices=invoices), write=True,
            what=f"creating {len(invoices)} invoices", summarize_errors=False, unitdp=4, idempotency_key=idempotency_key,
        )
        return [_element(i, "invoice_id", "invoice_number") for i in (data.invoices or [])]

    def update_invoices(self, invoices: list[Invoice], *, idempotency_key: str) -> list[ElementResult]:
        """POST /Invoices: update (by InvoiceID) or create."""
        _check_batch(invoices)
        data = self._call(
            self.accounting.update_or_create_invoices, Invoices(invoices=invoices), write=True,
            what=f"updating {len(invoices)} invoices", summarize_errors=False, unitdp=4, idempotency_key=idempotency_key,
        )
        return [_element(i, "invoice_id", "invoice_number") for i in (data.invoices or [])]

    def find_invoices(
        self, *, numbers: Iterable[str] = (), ids: Iterable[str] = (), statuses: Iterable[str] = (), where: str | None = None,
        contact_ids: Iterable[str] = (), created_by_my_app: bool = False, modified_since=None, chunk_size: int = 40,
        details: Callable[[Invoice], bool] | None = None, with_lines: bool = False,
    ) -> list[Invoice]:
        """GET /Invoices without line items (nothing here reads them, and Xero meters the bytes it sends).

        Numbers and ids are asked in chunks of at most 50, each one unpaged read, which Xero answers with
        everything but the lines. Any other read pages through summaries (summaryOnly, 1,000 a page), which
        may also leave out the settlements and the link; the ones `details` picks (default: every one) are
        then read again by id for those. contact_ids, created_by_my_app and modified_since (a datetime:
        If-Modified-Since) narrow any read; they are how a document Xero numbered is found again by its Url
        after a lost answer. `with_lines`: paged reads instead, which carry the lines (for a person checking).
        """
        numbers, ids = [n for n in numbers if n], [str(i) for i in ids if i]
        kwargs: dict[str, Any] = {"unitdp": 4}
        if statuses:
            kwargs["statuses"] = list(statuses)
        if where:
            kwargs["where"] = where
        contact_ids = [str(c) for c in contact_ids if c]
        if contact_ids:
            kwargs["contact_i_ds"] = contact_ids
        if created_by_my_app:
            kwargs["created_by_my_app"] = True
        if modified_since is not None:
            kwargs["if_modified_since"] = modified_since
        read = self._pages if with_lines else self._listed
        if numbers or ids:
            found: list[Invoice] = []
            for chunk in _chunks(numbers, min(chunk_size, BATCH_LIMIT)):
                found += read(self.accounting.get_invoices, "invoices", "reading invoices", invoice_numbers=chunk, **kwargs)
            for chunk in _chunks(ids, min(chunk_size, BATCH_LIMIT)):
                found += read(self.accounting.get_invoices, "invoices", "reading invoices", i_ds=chunk, **kwargs)
            return found
        if with_lines:
            return self._pages(self.accounting.get_invoices, "invoices", "reading invoices", **kwargs)
        summaries = self._pages(self.accounting.get_invoices, "invoices", "reading invoice summaries",
                                page_size=SUMMARY_PAGE_LIMIT, summary_only=True, **kwargs)
        wanted = [str(s.invoice_id) for s in summaries if details is None or details(s)]
        full = {str(m.invoice_id): m for m in self.find_invoices(ids=wanted, chunk_size=BATCH_LIMIT)} if wanted else {}
        return [full.get(str(s.invoice_id), s) for s in summaries]

    def set_invoice_statuses(self, changes: list[tuple[str, str]], *, idempotency_key: str) -> list[ElementResult]:
        """POST /Invoices with only InvoiceID and Status (VOIDED, DELETED): nothing else changes."""
        invoices = [Invoice(invoice_id=invoice_id, status=status) for invoice_id, status in changes]
        return self.update_invoices(invoices, idempotency_key=idempotency_key)

    # ---- credit notes --------------------------------------------------------------------------------
    def create_credit_notes(self, credit_notes: list[CreditNote], *, idempotency_key: str) -> list[ElementResult]:
        """PUT /CreditNotes: create only, at most 50, each answered on its own."""
        _check_batch(credit_notes)
        data = self._call(
            self.accounting.create_credit_notes, CreditNotes(credit_notes=credit_notes), write=True,
            what=f"creating {len(credit_notes)} credit notes", summarize_errors=False, unitdp=4,
            idempotency_key=idempotency_key,
        )
        return [_element(c, "credit_note_id", "credit_note_number") for c in (data.credit_notes or [])]

    def update_credit_notes(self, credit_notes: list[CreditNote], *, idempotency_key: str) -> list[ElementResult]:
        """POST /CreditNotes: update (by CreditNoteID) or create."""
        _check_batch(credit_notes)
        data = self._call(
            self.accounting.update_or_create_credit_notes, CreditNotes(credit_notes=credit_notes), write=True,
            what=f"updating {len(credit_notes)} credit notes", summarize_errors=False, unitdp=4,
            idempotency_key=idempotency_key,
        )
        return [_element(c, "credit_note_id", "credit_note_number") for c in (data.credit_notes or [])]

    def set_credit_note_statuses(self, changes: list[tuple[str, str]], *, idempotency_key: str) -> list[ElementResult]:
        notes = [CreditNote(credit_note_id=note_id, status=status) for note_id, status in changes]
        return self.update_credit_notes(notes, idempotency_key=idempotency_key)

    def find_credit_notes(
        self, *, numbers: Iterable[str] = (), ids: Iterable[str] = (), where: str | None = None, modified_since=None,
        chunk_size: int = 25,
    ) -> list[CreditNote]:
        """GET /CreditNotes by CreditNoteNumber or CreditNoteID (the SDK has no list parameters for them:
        a `where` of ORs, in chunks), or by any `where`; paged, with line items."""
        kwargs: dict[str, Any] = {"unitdp": 4}
        if modified_since is not None:
            kwargs["if_modified_since"] = modified_since
        clauses = [f'CreditNoteNumber=="{_quote(n)}"' for n in numbers if n]
        clauses += [f'CreditNoteID==Guid("{_quote(i)}")' for i in ids if i]
        found: list[CreditNote] = []
        for chunk in _chunks(clauses, chunk_size):
            found += self._pages(self.accounting.get_credit_notes, "credit_notes", "reading credit notes",
                                 where=" OR ".join(chunk), **kwargs)
        if not clauses:
            found = self._pages(self.accounting.get_credit_notes, "credit_notes", "reading credit notes",
                                **({"where": where} if where else {}), **kwargs)
        return found

    def _listed(self, method: Callable, attr: str, what: str, **kwargs) -> list:
        """One unpaged read: for a list bounded by its own filter (at most 50 ids or numbers)."""
        return getattr(self._call(method, write=False, what=what, **kwargs), attr) or []

    def _pages(self, method: Callable, attr: str, what: str, page_size: int = 100, **kwargs) -> list:
        items: list = []
        page = 1
        while True:
            data = self._call(method, write=False, what=what, page=page, page_size=page_size, **kwargs)
            batch = getattr(data, attr) or []
            items += batch
            if len(batch) < page_size:
                return items
            page += 1

    # ---- contacts ------------------------------------------------------------------------------------
    def create_contacts(self, contacts: list[ContactDraft | Contact], *, idempotency_key: str) -> list[ElementResult]:
        """PUT: create only, at most 50, each answered on its own (in the order given)."""
        _check_batch(contacts)
        contacts = _sdk_contacts(contacts)
        data = self._call(
            self.accounting.create_contacts, Contacts(contacts=contacts), write=True,
            what=f"creating {len(contacts)} contacts", summarize_errors=False, idempotency_key=idempotency_key,
        )
        return [_element(c, "contact_id", "contact_number") for c in (data.contacts or [])]

    def update_contacts(self, contacts: list[tuple[str, ContactDraft] | Contact], *,
                        idempotency_key: str) -> list[ElementResult]:
        """POST: each (ContactID, draft) rewrites that contact; at most 50, each answered on its own."""
        _check_batch(contacts)
        contacts = _sdk_contacts(contacts)
        data = self._call(
            self.accounting.update_or_create_contacts, Contacts(contacts=contacts), write=True,
            what=f"updating {len(contacts)} contacts", summarize_errors=False, idempotency_key=idempotency_key,
        )
        return [_element(c, "contact_id", "contact_number") for c in (data.contacts or [])]

    def find_contacts(self, *, numbers: Iterable[str] = (), names: Iterable[str] = (), ids: Iterable[str] = (),
                      account_numbers: Iterable[str] = ()) -> list[Contact]:
        """Contacts by ContactNumber, Name or AccountNumber (archived ones too), all asked together in `where`s
        of 25 ORs, so a run's lookup of its customers by number and by name is one call; or by ContactID."""
        terms = ([f'AccountNumber=="{_quote(n)}"' for n in account_numbers if n]
                 + [f'ContactNumber=="{_quote(n)}"' for n in numbers if n]
                 + [f'Name=="{_quote(n)}"' for n in names if n])
        found: dict[str, Contact] = {}
        for chunk in _chunks(list(dict.fromkeys(terms)), 25):
            for contact in self._pages(self.accounting.get_contacts, "contacts", "reading contacts",
                                       where=" OR ".join(chunk), include_archived=True):
                found[str(contact.contact_id)] = contact
        for chunk in _chunks([str(i) for i in ids if i], 40):
            for contact in self._pages(self.accounting.get_contacts, "contacts", "reading contacts", i_ds=chunk,
                                       include_archived=True):
                found[str(contact.contact_id)] = contact
        return list(found.values())

    # ---- settings ------------------------------------------------------------------------------------
    # Settings change rarely and every run reads them twice (the preflight check, then the mapping's
    # reference): a short memory spares the organisation's 60 calls a minute.
    def _setting(self, name: str, read: Callable[[], Any]):
        now = self._clock()
        with self._calls_lock:
            hit = self._settings.get(name)
        if hit is not None and now - hit[0] < self.settings_ttl:
            return hit[1]
        value = read()
        with self._calls_lock:
            self._settings[name] = (now, value)
        return value

    def forget_settings(self) -> None:
        with self._calls_lock:
            self._settings.clear()

    def accounts(self) -> list:
        return self._setting("accounts", lambda: self._call(
            self.accounting.get_accounts, write=False, what="reading accounts").accounts or [])

    def tax_rates(self) -> list:
        return self._setting("tax_rates", lambda: self._call(
            self.accounting.get_tax_rates, write=False, what="reading tax rates").tax_rates or [])

    def tracking_categories(self, *, include_archived: bool = False) -> list:
        """Active categories and options; with include_archived, the archived ones too (with their status)."""
        extra = {"include_archived": True} if include_archived else {}
        return self._setting("tracking+archived" if include_archived else "tracking", lambda: self._call(
            self.accounting.get_tracking_categories, write=False, what="reading tracking categories",
            **extra).tracking_categories or [])

    def branding_themes(self) -> list:
        return self._setting("themes", lambda: self._call(
            self.accounting.get_branding_themes, write=False, what="reading branding themes").branding_themes or [])

    def currencies(self) -> list:
        return self._setting("currencies", lambda: self._call(
            self.accounting.get_currencies, write=False, what="reading currencies").currencies or [])

    def organisation(self):
        return self._setting("organisation", lambda: self._call(
            self.accounting.get_organisations, write=False, what="reading the organisation").organisations[0])

    def settings(self) -> XeroSettings:
        """The organisation, accounts, tax rates, tracking categories (archived included), branding themes
        and currencies as plain values. Each endpoint goes through the settings memory above, so within
        `settings_ttl_seconds` the preflight check and the mapping see the very same reading."""
        return settings_from_models(
            self.organisation(), self.accounts(), self.tax_rates(), self.tracking_categories(include_archived=True),
            self.branding_themes(), self.currencies(),
        )

    # ---- attachments and identity --------------------------------------------------------------------
    def attach_to_invoice(self, invoice_id: str, file_name: str, content: bytes, *, idempotency_key: str) -> None:
        self._call(
            self.accounting.create_invoice_attachment_by_file_name, invoice_id, file_name, content, write=True,
            what=f"attaching {file_name}", include_online=True, idempotency_key=idempotency_key,
        )

    def attach_to_credit_note(self, credit_note_id: str, file_name: str, content: bytes, *, idempotency_key: str) -> None:
        self._call(
            self.accounting.create_credit_note_attachment_by_file_name, credit_note_id, file_name, content, write=True,
            what=f"attaching {file_name}", include_online=True, idempotency_key=idempotency_key,
        )

    def connections(self) -> list[dict]:
        """GET /connections (list_connections): the organisations this grant reaches. A read: retried, and
        refreshed once when Xero refuses the token."""
        token = self.current_token()
        try:
            return self._list_connections(token)
        except XeroTokenRefused:
            # Xero's clock may disagree with expires_at: one refresh decides.
            token = self._refresh_refused(token.get("access_token"))
        try:
            return self._list_connections(token)
        except XeroTokenRefused:
            raise XeroAuthError("Xero refused the token while listing connections: "
                                + RECONNECT_HINT.format(tenant=self.connection_name)) from None

    def _list_connections(self, token: dict) -> list[dict]:
        return list_connections(self.endpoints, token["access_token"], timeout=self._timeout[1], sleep=self._sleep,
                                max_wait=self._max_wait)


# ---- helpers -----------------------------------------------------------------------------------------
class _AuditedRestClient(RESTClientObject):
    """The SDK's REST client, telling the gateway about each write it sends and what came back (a status and
    body, or no answer at all). Reads pass straight through."""

    def __init__(self, configuration, on_write: Callable[..., None]):
        super().__init__(configuration)
        self._on_write = on_write

    def request(self, method, url, query_params=None, headers=None, body=None, post_params=None,
                _preload_content=True, _request_timeout=None):
        if method.upper() not in WRITE_METHODS:
            return super().request(method, url, query_params, headers, body, post_params, _preload_content,
                                   _request_timeout)
        started, clock = _utc_now(), time.monotonic()
        sent_headers = dict(headers or {})
        try:
            answer = super().request(method, url, query_params, headers, body, post_params, _preload_content,
                                     _request_timeout)
        except HTTPStatusException as exc:
            self._on_write(method, url, query_params, sent_headers, body, exc.status, exc.body, None, started,
                           time.monotonic() - clock)
            raise
        except Exception as exc:
            self._on_write(method, url, query_params, sent_headers, body, None, None, type(exc).__name__, started,
                           time.monotonic() - clock)
            raise
        self._on_write(method, url, query_params, sent_headers, body, answer.status, getattr(answer, "data", None),
                       None, started, time.monotonic() - clock)
        return answer


def _element(model, id_attr: str, number_attr: str) -> ElementResult:
    errors = [e.message for e in (getattr(model, "validation_errors", None) or []) if getattr(e, "message", None)]
    status = getattr(model, "status_attribute_string", None)
    ok = not errors and str(status or "OK").upper() != "ERROR"
    xero_id = getattr(model, id_attr, None)
    return ElementResult(ok=ok, xero_id=str(xero_id) if xero_id and ok else None,
                         number=getattr(model, number_attr, None), errors=errors, element=model)


def _check_batch(items: list) -> None:
    if not items:
        raise ValueError("an empty batch")
    if len(items) > BATCH_LIMIT:
        raise ValueError(f"at most {BATCH_LIMIT} documents per request, got {len(items)}")


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _quote(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')


def _expires_soon(token: dict) -> bool:
    expires_at = token.get("expires_at")
    return expires_at is not None and float(expires_at) - time.time() < REFRESH_MARGIN_SECONDS


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _safe_json(response: httpx.Response) -> dict:
    try:
        body = response.json()
        return body if isinstance(body, dict) else {}
    except ValueError:
        return {}


def _safe_json_text(body) -> dict:
    import json

    try:
        parsed = json.loads(body.decode() if isinstance(body, bytes) else body or "")
        return parsed if isinstance(parsed, dict) else {}
    except (ValueError, AttributeError):
        return {}


def _validation_messages(body: dict) -> str:
    messages = [
        e.get("Message")
        for element in body.get("Elements", []) or []
        for e in element.get("ValidationErrors", []) or []
        if e.get("Message")
    ]
    return "; ".join(messages) or body.get("Message") or body.get("Detail") or "no reason given"


def _certifi_where() -> str:
    import certifi

    return certifi.where()

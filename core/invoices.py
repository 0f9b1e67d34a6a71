"""Autotask invoices -> Xero ACCREC invoice (and ACCRECCREDIT credit note) drafts: the pure mapping at the heart of the sync.

Nothing here talks to a network. Frames go in, a plan comes out: draft rows for every invoice that maps
cleanly and adds up to Autotask's totals to the cent, and a SetAside (reason and fix) for every other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache

import pandas as pd
import pandera.pandas as pa
import calendar

from core import documents
from core.frames import (
    RejectedRecord, companies_with_rejects, frame_of_rows, invoices_with_rejects, lines_with_rejects, read_int,
    rejected_number, shown,
)
from core.mapping import AUTHORISED_SENT, DayOfFollowingMonth, DaysAfterInvoice, InvoiceMapping, TrackingRule
from core.schemas import XeroInvoiceDraft, column_dtypes

CENT = Decimal("0.01")
FOUR_DP = Decimal("0.0001")
SIX_DP = Decimal("0.000001")  # Xero keeps CurrencyRate to 6 decimal places
REFERENCE_LIMIT = 255
DESCRIPTION_LIMIT = 4000  # Xero's maximum for LineItem.Description
ELLIPSIS = "…"
# Xero rounds each line's tax on its own; Autotask may round differently, but never by more than a cent
# a line. A bigger gap means the TaxType's rate is not the rate Autotask charged: a mapping mistake.
TAX_ROUNDING_TOLERANCE = Decimal("0.01")
_PLACEHOLDER = re.compile(r"{([^{}]*)}")
# The ISO currency codes Xero's Accounting API knows (its CurrencyCode enumeration).
_KNOWN_CURRENCIES = frozenset("""
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
    BYR BZD CAD CDF CHF CLF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EEK EGP ERN ETB EUR FJD
    FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LTL LVL LYD MAD MDL MGA MKD MMK MNT MOP MRO
    MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON
    RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SKK SLE SLL SOS SRD STD STN SVC SYP SZL THB TJS TMT TND
    TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VEF VES VND VUV WST XAF XCD XOF XPF YER ZAR ZMK ZMW ZWD
""".split())

# Keys of plan_invoices' frames, kept so the flow can hand them on unchanged.
_REJECTED_INVOICES = "rejected_invoices"
_REJECTED_LINES = "rejected_lines"
_REJECTED_COMPANIES = "rejected_companies"


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class XeroReference:
    """What the Xero organisation has, read once per run by the flow."""

    account_codes: frozenset[str]
    tax_types: dict[str, Decimal]  # TaxType -> effective rate in percent
    currencies: frozenset[str]
    base_currency: str
    # Tracking category name -> names of its ACTIVE options (archived ones are left out).
    tracking: dict[str, frozenset[str]] = field(default_factory=dict)
    # Branding theme name -> BrandingThemeID.
    branding_themes: dict[str, str] = field(default_factory=dict)
    # Accounts a payment may go to (active, BANK or payments enabled): code and name -> AccountID.
    payment_accounts: dict[str, str] = field(default_factory=dict)

    def payment_account(self, code_or_name: str) -> str | None:
        """The AccountID of the payment account with this code or name (names without regard to case)."""
        wanted = code_or_name.strip()
        if wanted in self.payment_accounts:
            return self.payment_accounts[wanted]
        return next((i for key, i in self.payment_accounts.items() if key.casefold() == wanted.casefold()), None)

    # Names are looked up as Xero compares them, without regard to case; `atx check` uses the same lookups.
    def tracking_category(self, name: str) -> str | None:
        """Xero's own name of the active tracking category called `name`, or None."""
        wanted = name.casefold()
        return next((category for category in self.tracking if category.casefold() == wanted), None)

    def tracking_option(self, category: str, option: str) -> str | None:
        """Xero's own name of the active option `option` of the active category `category`, or None."""
        found = self.tracking_category(category)
        if found is None:
            return None
        wanted = option.casefold()
        return next((name for name in self.tracking[found] if name.casefold() == wanted), None)

    def branding_theme_id(self, name: str) -> str | None:
        """The BrandingThemeID of the theme called `name`, or None."""
        wanted = name.casefold()
        return next((theme_id for theme, theme_id in self.branding_themes.items() if theme.casefold() == wanted), None)


@dataclass(frozen=True)
class SetAside:
    """A document kept out of this run, with why and how to fix it, and whom and how much it is for when the
    invoice could be read that far (the report shows them beside the reason)."""

    autotask_id: int
    autotask_number: str
    reason: str
    fix: str
    company_id: int | None = None
    contact_name: str | None = None
    total: Decimal | None = None


@dataclass
class InvoicePlan:
    drafts: pd.DataFrame  # XeroInvoiceDraft rows for every invoice that mapped cleanly
    set_aside: list[SetAside] = field(default_factory=list)
    # Documents deliberately left alone (voided before they ever reached Xero): reported, not retried.
    skipped: list[SetAside] = field(default_factory=list)


# -- frames ------------------------------------------------------------------------------------------

def invoices_frame(records: list[dict]) -> pd.DataFrame:
    """Validated AutotaskInvoices. Malformed invoices are left out and travel in frame.attrs to plan_invoices."""
    frame, rejected = invoices_with_rejects(records)
    frame.attrs[_REJECTED_INVOICES] = rejected
    return frame


def lines_frame(records: list[dict]) -> pd.DataFrame:
    """Validated AutotaskInvoiceLines. A malformed line sets its whole invoice aside in plan_invoices."""
    frame, rejected = lines_with_rejects(records)
    frame.attrs[_REJECTED_LINES] = rejected
    return frame


def companies_frame(records: list[dict]) -> pd.DataFrame:
    """Validated AutotaskCompanies. Invoices of a malformed company are set aside in plan_invoices."""
    frame, rejected = companies_with_rejects(records)
    frame.attrs[_REJECTED_COMPANIES] = rejected
    return frame


def _present(value) -> bool:
    if value is None or value is pd.NA:
        return False
    if isinstance(value, float) and value != value:
        return False
    return not (isinstance(value, str) and not value.strip())


def _text(value) -> str | None:
    return str(value).strip() if _present(value) else None


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values (None for missing), so the mapping below reads like prose."""
    rows = frame.astype(object).to_dict("records")
    return [{key: (value if _present(value) or isinstance(value, bool) else None) for key, value in row.items()}
            for row in rows]


# -- single fields -----------------------------------------------------------------------------------

def autotask_number(invoice: dict) -> str:
    """How people in Autotask name the invoice; Autotask itself shows the id when the number is empty."""
    return _text(invoice.get("invoiceNumber")) or str(invoice.get("id"))


def _render(template: str, invoice: dict) -> str | None:
    """Fill {field} placeholders from the invoice; None when any of them is empty there."""
    values = {}
    for name in _PLACEHOLDER.findall(template):
        value = _text(invoice.get(name))
        if value is None:
            return None
        values[name] = value
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def invoice_number_for(invoice_row, mapping: InvoiceMapping) -> str | None:
    """The InvoiceNumber to send: Autotask's number, a template such as "INV:{id}", or None when Xero numbers."""
    invoice = dict(invoice_row)
    scheme = mapping.invoice_number
    if scheme == "xero":
        return None
    if scheme == "autotask":
        return _text(invoice.get("invoiceNumber"))
    return _render(scheme, invoice)


def description_for(item_name: str | None, description: str | None, note: str | None = None,
                    fallback: str = "") -> str:
    """itemName and description, cut to Xero's limit keeping the start; a note, if any, always survives."""
    parts = [p for p in (_text(item_name), _text(description)) if p]
    if len(parts) == 2 and parts[1].startswith(parts[0]):
        parts = parts[1:]  # Autotask often repeats the item name at the start of the description
    body = "\n".join(parts) or fallback
    suffix = f" ({note})" if note else ""
    room = DESCRIPTION_LIMIT - len(suffix)
    if len(body) > room:
        body = body[: room - len(ELLIPSIS)] + ELLIPSIS
    return body + suffix


def _date_part(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value[:10]) if value else None


def fit_quantity_and_unit(quantity: Decimal, rate: Decimal | None, line_amount: Decimal) -> tuple[Decimal, Decimal, bool]:
    """Quantity and UnitAmount for which Xero's round(qty x unit, 2) equals the line amount exactly.

    Tries the Autotask rate as Autotask has it, to 4 dp (Xero keeps 4 with unitdp=4, which every write
    sends), so the Xero line shows the rate the Autotask invoice shows; then the rate at 2 dp, then the
    amount divided by the quantity. Returns (quantity, unit, collapsed): collapsed means no unit fits, so
    the line is sent as 1 x line amount and the caller keeps the original "qty x rate" in the description.
    """
    if quantity == quantity.quantize(FOUR_DP) and quantity != 0:
        candidates = []
        if rate is not None:
            candidates += [rate.quantize(FOUR_DP, rounding=ROUND_HALF_UP), rate.quantize(CENT, rounding=ROUND_HALF_UP)]
        per_unit = line_amount / quantity
        candidates += [per_unit.quantize(CENT, rounding=ROUND_HALF_UP), per_unit.quantize(FOUR_DP, rounding=ROUND_HALF_UP)]
        for unit in candidates:
            if money(quantity * unit) == line_amount:
                return quantity, unit, False
    if quantity == 0 and line_amount == 0 and rate is not None:
        return quantity, rate.quantize(FOUR_DP, rounding=ROUND_HALF_UP), False
    return Decimal(1), line_amount, True


def apportion(target: Decimal, exact: list[Decimal]) -> list[Decimal]:
    """Cent amounts, one per exact amount, that add up to `target` (a cent amount), by largest remainder.

    Each amount starts at its value cut down to the cent; the cents still missing go one each to the amounts
    that lost the most in the cut (the first of equals first), cents too many come off those that lost the
    least. When the exact amounts add up to `target` (to the cent), each result is within a cent of its
    exact amount, and amounts already in cents are kept as they are.
    """
    if not exact:
        return []
    floors = [value.quantize(CENT, rounding=ROUND_FLOOR) for value in exact]
    missing = int(((target - sum(floors, Decimal(0))) / CENT).to_integral_value())
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - floors[i]), i))
    result = list(floors)
    step = CENT if missing > 0 else -CENT
    if missing < 0:
        order = order[::-1]
    for n in range(abs(missing)):
        result[order[n % len(order)]] += step
    return result


def xero_line_tax(line_amount: Decimal, rate_percent: Decimal, line_amount_types: str) -> Decimal:
    """The tax Xero computes on one line: per line, rounded half-up to the cent."""
    if line_amount_types == "NoTax":
        return Decimal("0.00")
    if line_amount_types == "Inclusive":
        return money(line_amount * rate_percent / (100 + rate_percent))
    return money(line_amount * rate_percent / 100)


# -- reference data ----------------------------------------------------------------------------------

# The Autotask entities whose picklist labels mapping rules may name (GL accounts, billing item types,
# company classifications): the extract and `atx check` read the same ones.
PICKLIST_ENTITIES = ("BillingCodes", "BillingItems", "Companies")


class _Reference:
    """Autotask reference entities, indexed by id."""

    def __init__(self, reference_data: dict[str, list[dict]]):
        def by_id(name):
            return {row["id"]: row for row in reference_data.get(name) or [] if row.get("id") is not None}

        self.billing_codes = by_id("BillingCodes")
        self.tax_categories = by_id("TaxCategories")
        self.tax_regions = by_id("TaxRegions")
        self.currencies = by_id("Currencies")
        self.payment_terms = by_id("PaymentTerms")
        self.invoice_templates = by_id("InvoiceTemplates")
        self.contracts = by_id("Contracts")
        self.products = by_id("Products")
        # Read only when the mapping's line_presentation.time_entries asks for them.
        self.time_entries = by_id("TimeEntries")
        self.resources = by_id("Resources")
        self.products_by_name: dict[str, list[dict]] = {}
        for product in self.products.values():
            name = _text(product.get("name"))
            if name:
                self.products_by_name.setdefault(name.casefold(), []).append(product)
        internal = [c for c in self.currencies.values() if c.get("isInternalCurrency")]
        self.internal_currency = _text(internal[0].get("name")) if internal else None
        # "Entity.field" -> {value as text: label}, from entityInformation/fields picklistValues.
        self.picklists: dict[str, dict[str, str]] = {}
        for key, values in (reference_data.get("Picklists") or {}).items():
            self.picklists[key] = {str(v.get("value")): str(v.get("label")) for v in values or []
                                   if v.get("value") is not None and v.get("label") is not None}

    def label(self, picklist: str, value) -> str | None:
        return self.picklists.get(picklist, {}).get(str(value)) if value is not None else None

    def product_for(self, line: dict) -> dict | None:
        """The line's product: its productID when the client joined one in, else the product its charge was
        named after (Autotask names a charge after its product) with the same billing code."""
        if line.get("productID") is not None:
            return self.products.get(line["productID"])
        named = self.products_by_name.get((_text(line.get("itemName")) or "").casefold(), [])
        same_code = [p for p in named if p.get("productBillingCodeID") in (None, line.get("billingCodeID"))]
        return same_code[0] if len(same_code) == 1 else None

    def currency_named(self, code: str) -> dict | None:
        return next((c for c in self.currencies.values() if (_text(c.get("name")) or "").upper() == code), None)


class _Problems:
    """Everything wrong with one invoice, gathered so the user can fix it all in one go."""

    def __init__(self):
        # reason template -> billing item ids it applies to; one entry per distinct problem
        self._items: dict[str, list[int]] = {}
        self.fixes: list[str] = []

    def add(self, reason: str, fix: str, item: int | None = None) -> None:
        """`reason` may say "{items}": the same problem on several lines is then reported once, naming them all."""
        items = self._items.setdefault(reason, [])
        if item is not None and item not in items:
            items.append(item)
        if fix not in self.fixes:
            self.fixes.append(fix)

    @property
    def reasons(self) -> list[str]:
        def named(items):
            return ("billing item " if len(items) == 1 else "billing items ") + ", ".join(map(str, items))
        return [reason.replace("{items}", named(items)) for reason, items in self._items.items()]

    def __bool__(self):
        return bool(self._items)


def _account_code_for(line: dict, code: dict | None, mapping: InvoiceMapping, reference: _Reference) -> str | None:
    rules = mapping.accounts
    code = code or {}
    product = reference.product_for(line) or {}
    gl_label = reference.label("BillingCodes.generalLedgerAccount", code.get("generalLedgerAccount"))
    candidates = [
        rules.by_product_id.get(product.get("id")),
        rules.by_product_name.get(_text(product.get("name")) or ""),
        rules.by_product_name.get(_text(product.get("sku")) or ""),
        rules.by_billing_code_id.get(code.get("id")),
        rules.by_billing_code_name.get(_text(code.get("name")) or ""),
        rules.by_gl_account.get(code.get("generalLedgerAccount")),
        rules.by_gl_account_label.get(gl_label or ""),
        rules.by_external_number.get(_text(code.get("externalNumber")) or ""),
        rules.by_billing_item_type.get(line.get("billingItemType")),
    ]
    for candidate in candidates:
        if candidate:
            return candidate
    return None if rules.refuse_unmapped else rules.default


def _billing_code_for(line: dict, reference: _Reference) -> dict | None:
    """The line's billing code; a product line without one takes its product's billing code."""
    code = reference.billing_codes.get(line.get("billingCodeID"))
    if code is None and line.get("billingCodeID") is None:
        product = reference.product_for(line)
        if product is not None:
            code = reference.billing_codes.get(product.get("productBillingCodeID"))
    return code


def _tax_type_for(line: dict, code: dict | None, region_name: str | None, exempt: bool,
                  mapping: InvoiceMapping, reference: _Reference) -> tuple[str | None, str]:
    """(TaxType or None, what was looked up, for the message when nothing matched)."""
    rules = mapping.tax
    if exempt:
        return rules.tax_exempt, "tax.tax_exempt (the company is tax-exempt in Autotask)"
    category_id = line.get("taxCategoryID") or (code or {}).get("taxCategoryID")
    category_name = _text(reference.tax_categories.get(category_id, {}).get("name")) if category_id else None
    if region_name and region_name in rules.by_region:
        region_rules = rules.by_region[region_name]
        chosen = region_rules.get(category_name or "") or region_rules.get("*")
        if chosen:
            return chosen, ""
    chosen = rules.by_category_id.get(category_id) or rules.by_category_name.get(category_name or "") or rules.default
    if category_id is None:
        wanted = "tax.default (the billing item and its billing code have no tax category)"
    else:
        label = f"'{category_name}'" if category_name else f"id {category_id}"
        wanted = f"tax.by_category_name['{category_name}']" if category_name else f"tax.by_category_id[{category_id}]"
        wanted += f" (tax category {label})"
    return chosen, wanted


def _currency_for(company: dict, reference: _Reference, xero: XeroReference,
                  problems: _Problems) -> tuple[str | None, dict | None]:
    """(ISO code, Autotask Currencies record or None when the company uses the internal currency)."""
    currency_id = company.get("currencyID")
    record = None
    if currency_id is None:
        code = reference.internal_currency or xero.base_currency
        record = reference.currency_named(code.upper())
    else:
        record = reference.currencies.get(currency_id)
        code = _text((record or {}).get("name"))
        if code is None:
            problems.add(f"company {company['id']} uses Autotask currency id {currency_id}, which was not read",
                         "check that the Autotask API user can read Currencies, then rerun")
            return None, None
    code = code.upper()
    if code not in _KNOWN_CURRENCIES:
        problems.add(f"currency '{code}' is not an ISO currency code Xero knows",
                     "correct the currency's name in Autotask (Admin > Currencies) to its ISO code")
        return None, None
    if code != xero.base_currency and code not in xero.currencies:
        problems.add(f"the Xero organisation is not subscribed to currency {code}",
                     f"add {code} in Xero (Settings > Currencies; needs a plan with multi-currency)")
        return None, None
    return code, record


def _exchange_rate(record: dict | None, code: str, reference: _Reference) -> Decimal | None:
    if record is None:
        return Decimal(1) if code == reference.internal_currency else None
    if record.get("isInternalCurrency"):
        return Decimal(1)
    rate = record.get("exchangeRate")
    if rate is None or isinstance(rate, bool):
        return None
    rate = rate if isinstance(rate, Decimal) else Decimal(str(rate))
    return rate if rate.is_finite() and rate > 0 else None


def currency_rate_for(code: str, record: dict | None, reference_data_or_ref, base_currency: str) -> Decimal | None:
    """Xero's CurrencyRate (units of `code` per 1 unit of the Xero base currency) from Autotask's rates.

    Autotask's Currencies.exchangeRate is units of that currency per 1 unit of Autotask's internal
    currency (the generator derives internal amounts as amount / exchangeRate). With base = internal the
    rate passes through; otherwise both are expressed per internal unit and divided. None when a rate is
    missing, or the base currency is unknown to Autotask.
    """
    reference = (reference_data_or_ref if isinstance(reference_data_or_ref, _Reference)
                 else _Reference(reference_data_or_ref))
    invoice_rate = _exchange_rate(record, code, reference)
    base_record = reference.currency_named(base_currency)
    base_rate = _exchange_rate(base_record, base_currency, reference)
    if invoice_rate is None or base_rate is None:
        return None
    return (invoice_rate / base_rate).quantize(SIX_DP, rounding=ROUND_HALF_UP)


def _missing_lines_reason(invoice: dict, lines: list[dict]) -> tuple[str, str] | None:
    """Compare the lines with the invoice's totals; when they differ, name the likely cause."""
    total = sum((line["totalAmount"] for line in lines), Decimal(0))
    tax = sum((line["taxDollars"] for line in lines), Decimal(0))
    if money(total) == money(invoice["invoiceTotal"]) and money(tax) == money(invoice["totalTaxValue"]):
        return None
    seen = (f"{len(lines)} billing item(s) add up to {money(total)} (tax {money(tax)}), but the invoice says "
            f"{money(invoice['invoiceTotal'])} (tax {money(invoice['totalTaxValue'])})")
    if money(total) == money(invoice["invoiceTotal"]):
        # Nothing is missing (a missing billing item would lower the total too): only the tax disagrees.
        return (seen + ": the billing items' tax differs from the invoice's although their total agrees; the "
                "invoice may have been changed while it was read",
                "rerun; if it persists, check the tax of the invoice and of its billing items in Autotask")
    if not lines or abs(total) < abs(invoice["invoiceTotal"]):
        return (seen + ": billing items are missing. Likely causes: the Autotask API user cannot see every "
                "Line of Business, or the invoice is still being processed in Autotask",
                "give the API user's security level access to all Lines of Business (or wait until invoicing "
                "finishes); the invoice is retried on the next run")
    return (seen + ": the billing items carry more than the invoice; the invoice may have been changed while "
            "it was read",
            "rerun; if it persists, check the invoice's billing items in Autotask")


def _for_company(overrides: dict, company: dict, default):
    """A per-company override, keyed by Autotask company id or exact company name."""
    if str(company["id"]) in overrides:
        return overrides[str(company["id"])]
    name = _text(company.get("companyName"))
    return overrides.get(name, default) if name else default


def _add_months(day: dt.date, months: int, wanted_day: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(wanted_day, calendar.monthrange(year, month)[1]))


def _due_date_for(rule, invoice: dict, date: dt.date, company: dict, mapping: InvoiceMapping,
                  reference: _Reference, problems: _Problems) -> dt.date | None:
    where = ("due_date_overrides for this company" if rule is not mapping.due_date else "due_date")
    if isinstance(rule, DaysAfterInvoice):
        return _days_after(date, rule.days_after_invoice, where, problems)
    if isinstance(rule, DayOfFollowingMonth):
        if (date.year, date.month) == (dt.date.max.year, 12):  # the following month would be in year 10000
            return _past_the_calendar(date, "after 9999-12-31", where, problems)
        return _add_months(date, 1, rule.day_of_following_month)
    if rule == "autotask":
        due = _date_part(invoice.get("dueDate"))
        if due is None:
            problems.add("the invoice has no due date in Autotask",
                         f"set {where} to payment_term, {{days_after_invoice: N}} or xero_contact in the mapping file")
        return due
    if rule == "payment_term":
        term = reference.payment_terms.get(invoice.get("paymentTerm"))
        days = term.get("paymentDueInDays") if term else None
        if days is None:
            problems.add(f"the invoice's payment term {invoice.get('paymentTerm')} was not read from Autotask "
                         "PaymentTerms (or has no paymentDueInDays)",
                         f"let the Autotask API user read PaymentTerms, or set {where} to autotask or "
                         "{days_after_invoice: N}")
            return None
        return _days_after(date, int(days), where, problems)
    if rule == "invoice_date":
        return _days_after(date, mapping.due_days, where, problems)
    return None  # xero_contact


def _days_after(date: dt.date, days: int, where: str, problems: _Problems) -> dt.date | None:
    """The invoice date plus days; a problem, not an OverflowError, when that is past the last date there is."""
    try:
        return date + dt.timedelta(days=days)
    except OverflowError:
        return _past_the_calendar(date, "after 9999-12-31" if days > 0 else "before 0001-01-01", where, problems)


def _past_the_calendar(date: dt.date, edge: str, where: str, problems: _Problems) -> None:
    problems.add(f"the due date ({where}) falls {edge}: the invoice date is {date.isoformat()}",
                 "correct the invoice date in Autotask; the invoice is retried on the next run")
    return None


def _udf(company: dict, name: str) -> str | None:
    for field_ in company.get("userDefinedFields") or []:
        if str(field_.get("name", "")).casefold() == name.casefold():
            return _text(field_.get("value"))
    return None


def _tracking_value(rule: TrackingRule, invoice: dict, line: dict, code: dict | None, company: dict,
                    region_name: str | None, reference: _Reference) -> tuple[str | None, str | None]:
    """(Autotask value as text, its label when it is a picklist) that the rule reads."""
    source = rule.source
    code = code or {}

    def picklist(entity_field: str, value):
        return (None if value is None else str(value)), reference.label(entity_field, value)

    if source.startswith("company.udf:"):
        return _udf(company, source.removeprefix("company.udf:")), None
    if source == "company.classification":
        return picklist("Companies.classification", company.get("classification"))
    if source == "company.territory":
        return picklist("Companies.territoryID", company.get("territoryID"))
    if source == "company.companyType":
        return picklist("Companies.companyType", company.get("companyType"))
    if source == "billing_code.department":
        return picklist("BillingCodes.department", code.get("department"))
    if source == "billing_code.gl_account":
        return picklist("BillingCodes.generalLedgerAccount", code.get("generalLedgerAccount"))
    if source == "billing_code.name":
        return _text(code.get("name")), None
    if source == "billing_item_type":
        return picklist("BillingItems.billingItemType", line.get("billingItemType"))
    if source == "contract":
        contract = line.get("contractID")
        name = _text(reference.contracts.get(contract, {}).get("contractName")) if contract is not None else None
        return (None if contract is None else str(contract)), name
    if source == "invoice_template":
        template = invoice.get("invoiceEditorTemplateID") or company.get("invoiceTemplateID")
        name = _text(reference.invoice_templates.get(template, {}).get("name")) if template is not None else None
        return (None if template is None else str(template)), name
    return region_name, None  # tax_region


def _tracking_for(rules: list[TrackingRule], invoice: dict, line: dict, code: dict | None, company: dict,
                  region_name: str | None, reference: _Reference, xero: XeroReference,
                  problems: _Problems, item: int) -> list[tuple[str, str]]:
    """[(Xero category, option)] for one Autotask line; unknown values and options become problems."""
    chosen = []
    for index, rule in enumerate(rules):
        value, label = _tracking_value(rule, invoice, line, code, company, region_name, reference)
        shown = f"'{label}' ({value})" if label else f"'{value}'"
        option = None
        if rule.options:
            for key in (value, label):
                if key is not None and key in rule.options:
                    option = rule.options[key]
                    break
            else:
                folded = {k.casefold(): v for k, v in rule.options.items()}
                option = next((folded[k.casefold()] for k in (value, label) if k and k.casefold() in folded), None)
            if option is None:
                option = rule.options.get("*")
            if option is None and value is not None:
                problems.add(f"{{items}}: {rule.source} is {shown}, which tracking[{index}].options does not map",
                             f"add tracking[{index}].options '{label or value}': <{rule.category} option> (or a "
                             f"\"*\" default) to the mapping file", item)
                continue
        else:
            option = label or value  # no table: the Autotask value is the option's name
        if option is None:
            continue  # nothing to track on this line
        category = xero.tracking_category(rule.category)
        if category is None:
            problems.add(f"tracking category '{rule.category}' does not exist or is not active in Xero",
                         f"add tracking category '{rule.category}' in Xero (Accounting > Advanced > Tracking "
                         "categories), or correct tracking[].category in the mapping file")
            continue
        found = xero.tracking_option(category, option)
        if found is None:
            problems.add(f"{{items}}: tracking option '{option}' does not exist or is archived in Xero's "
                         f"tracking category '{category}'",
                         f"add (or restore) option '{option}' in Xero's '{category}' tracking category, or map "
                         f"{rule.source} to an active option in tracking[{index}].options", item)
            continue
        chosen.append((category, found))
    return chosen


def _branding_theme_for(invoice: dict, company: dict, mapping: InvoiceMapping, reference: _Reference,
                        xero: XeroReference, problems: _Problems) -> str | None:
    rules = mapping.branding_themes
    if not (rules.by_template_id or rules.by_template_name or rules.default):
        return None  # Xero applies the organisation's default theme
    template_id = invoice.get("invoiceEditorTemplateID") or company.get("invoiceTemplateID")
    template_name = _text(reference.invoice_templates.get(template_id, {}).get("name")) if template_id else None
    theme = (rules.by_template_id.get(template_id) if template_id is not None else None) \
        or rules.by_template_name.get(template_name or "") or rules.default
    if theme is None:
        shown = f"{template_id} '{template_name}'" if template_name else f"{template_id}"
        problems.add(f"Autotask invoice template {shown} has no branding theme mapping",
                     f"add branding_themes.by_template_id {template_id}: <Xero theme name>"
                     + (f" (or by_template_name '{template_name}')" if template_name else "")
                     + ", or set branding_themes.default")
        return None
    theme_id = xero.branding_theme_id(theme)
    if theme_id is None:
        known = ", ".join(f"'{n}'" for n in sorted(xero.branding_themes)) or "none were read"
        problems.add(f"branding theme '{theme}' does not exist in Xero (its themes: {known})",
                     f"create branding theme '{theme}' in Xero (Settings > Invoice settings), or map the template "
                     "to an existing theme under branding_themes")
        return None
    return theme_id


def _amount(value: Decimal) -> str:
    """An amount as Autotask shows it: in cents, or with the further decimals it keeps."""
    return f"{money(value)}" if value == money(value) else f"{value.normalize():f}"


def _format(value) -> str:
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)


def _reference_fields(invoice: dict, lines: list[dict], company: dict) -> dict:
    purchase_orders = list(dict.fromkeys(_text(l.get("purchaseOrderNumber")) for l in lines
                                         if _text(l.get("purchaseOrderNumber"))))
    return {**invoice, "purchaseOrderNumbers": ", ".join(purchase_orders) or None,
            "companyName": company.get("companyName"), "companyNumber": company.get("companyNumber"),
            "invoiceDate": (invoice.get("invoiceDateTime") or "")[:10] or None,
            "fromDate": (invoice.get("fromDate") or "")[:10] or None,
            "toDate": (invoice.get("toDate") or "")[:10] or None}


def reference_for(invoice: dict, lines: list[dict], company: dict, mapping: InvoiceMapping) -> str | None:
    """Xero's Reference: the template filled in (None when a field it uses is empty), at most 255 characters.

    When Xero numbers the invoice, the Autotask number leads the reference unless the template shows it.
    """
    template = mapping.reference
    text = _render(template, _reference_fields(invoice, lines, company)) if template else None
    if mapping.invoice_number == "xero" and "{invoiceNumber}" not in (template or ""):
        number = autotask_number(invoice)
        text = f"{number} / {text}" if text else number
    if text and len(text) > REFERENCE_LIMIT:
        text = text[: REFERENCE_LIMIT - 1] + ELLIPSIS
    return text or None


def source_url_for(invoice_id: int, autotask_web_url: str | None) -> str | None:
    """The link that opens the invoice in Autotask; also the loader's marker for finding it in Xero again."""
    if not autotask_web_url:
        return None
    base = autotask_web_url if autotask_web_url.endswith("/") else autotask_web_url + "/"
    return f"{base}Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenInvoice&InvoiceID={invoice_id}"


def line_body(line: dict, template: str | None, reference: _Reference) -> str:
    """A billing item's text before any cut: the mapping's template, or its itemName and description."""
    if template is None:
        parts = [p for p in (_text(line.get("itemName")), _text(line.get("description"))) if p]
        if len(parts) == 2 and parts[1].startswith(parts[0]):
            parts = parts[1:]  # Autotask often repeats the item name at the start of the description
        return "\n".join(parts)
    code = reference.billing_codes.get(line.get("billingCodeID"), {})
    fields = {**line, "billingCode": code.get("name"), "itemDate": (line.get("itemDate") or "")[:10] or None}
    text = _PLACEHOLDER.sub(lambda m: _format(fields[m.group(1)]) if _present(fields.get(m.group(1))) else "",
                            template)
    # An empty field leaves its separator dangling ("Remote Support - "); trim it rather than send it.
    return text.strip().strip("-–—:|,/").strip()


def time_entry_text(entry: dict, resources: dict) -> str:
    """One time entry as a line of text: date, resource, hours and its summary notes."""
    resource = resources.get(entry.get("resourceID")) or {}
    who = " ".join(p for p in (_text(resource.get("firstName")), _text(resource.get("lastName"))) if p) \
        or (f"resource {entry['resourceID']}" if entry.get("resourceID") is not None else None)
    hours = entry.get("hoursToBill") if entry.get("hoursToBill") is not None else entry.get("hoursWorked")
    day = (_text(entry.get("dateWorked")) or _text(entry.get("startDateTime")) or "")[:10] or None
    head = " ".join(p for p in (day, who, f"{_format(Decimal(str(hours)))}h" if hours is not None else None) if p)
    notes = " ".join((_text(entry.get("summaryNotes")) or "").split())
    return f"{head}: {notes}" if head and notes else head or notes


def _with_time_entries(body: str, line: dict, mapping: InvoiceMapping, reference: _Reference) -> str:
    """A labour line's text with its time entry after it, when the mapping asks for time entries."""
    if not mapping.line_presentation.time_entries or line.get("timeEntryID") is None:
        return body
    entry = reference.time_entries.get(line["timeEntryID"])
    text = time_entry_text(entry, reference.resources) if entry else ""
    return f"{body}\n{text}" if text else body


def _cut_description(body: str, note: str | None = None) -> str:
    suffix = f" ({note})" if note else ""
    room = DESCRIPTION_LIMIT - len(suffix)
    if len(body) > room:
        body = body[: room - len(ELLIPSIS)] + ELLIPSIS
    return body + suffix


def _turned(line: dict) -> dict:
    """A credit's billing item with its signs turned, so the credit note carries positive amounts."""
    return {**line, "quantity": -line["quantity"], "extendedPrice": -line["extendedPrice"],
            "taxDollars": -line["taxDollars"], "totalAmount": -line["totalAmount"]}


def xero_totals(draft_rows, tax_rates: dict[str, Decimal]) -> tuple[Decimal, Decimal, Decimal]:
    """(SubTotal, TotalTax, Total) as Xero computes them from one document's draft rows.

    Xero recomputes each line as round(Quantity x UnitAmount, 2) and its tax per line (TaxAmount when sent).
    """
    rows = _records(draft_rows) if isinstance(draft_rows, pd.DataFrame) else list(draft_rows)
    lines_total = tax_total = Decimal("0.00")
    for row in rows:
        line_amount = money(row["quantity"] * row["unit_amount"])
        kind = row["line_amount_types"]
        if kind == "NoTax":
            tax = Decimal("0.00")
        elif row.get("tax_amount") is not None:
            tax = money(row["tax_amount"])
        else:
            tax = xero_line_tax(line_amount, Decimal(tax_rates[row["tax_type"]]), kind)
        lines_total += line_amount
        tax_total += tax
    inclusive = bool(rows) and rows[0]["line_amount_types"] == "Inclusive"
    subtotal = lines_total - tax_total if inclusive else lines_total
    return subtotal, tax_total, subtotal + tax_total


@dataclass
class _Part:
    """One Xero line in the making: a billing item, or the billing items of one group."""

    items: list[int]
    lines: list[dict]
    code_id: int | None
    account_code: str | None
    tax_type: str | None
    rate_percent: Decimal | None
    wanted: str
    tracking: tuple


def _plan_one(invoice: dict, lines: list[dict], company: dict | None, reference: _Reference,
              mapping: InvoiceMapping, xero: XeroReference, contact_name: str | None = None,
              autotask_web_url: str | None = None) -> list[dict] | _Problems:
    problems = _Problems()
    number = autotask_number(invoice)

    if company is None:
        problems.add(f"company {invoice['companyID']} was not read from Autotask",
                     "check that the Autotask API user can see this company, then rerun")
        return problems

    missing = _missing_lines_reason(invoice, lines)
    if missing:
        problems.add(*missing)
        return problems
    if not lines:
        problems.add("the invoice has no billing items and a total of zero; there is nothing to send",
                     "nothing to do unless the invoice should have lines in Autotask")
        return problems
    for line in lines:
        if money(line["extendedPrice"] + line["taxDollars"]) != money(line["totalAmount"]):
            problems.add(f"billing item {line['id']}: extendedPrice {_amount(line['extendedPrice'])} + taxDollars "
                         f"{_amount(line['taxDollars'])} does not equal its totalAmount {_amount(line['totalAmount'])}",
                         "correct the billing item's amounts in Autotask; the invoice is not sent until they agree")
    if problems:
        return problems

    # A credit is a credit note in Xero, whose amounts are positive: every sign turns, line by line.
    credit = money(invoice["invoiceTotal"]) < 0
    document_type = "ACCRECCREDIT" if credit else "ACCREC"
    if credit:
        lines = [_turned(line) for line in lines]
    target_total = -money(invoice["invoiceTotal"]) if credit else money(invoice["invoiceTotal"])
    target_tax = -money(invoice["totalTaxValue"]) if credit else money(invoice["totalTaxValue"])

    currency, currency_record = _currency_for(company, reference, xero, problems)
    currency_rate = None
    if currency and mapping.currency_rate == "autotask" and currency != xero.base_currency:
        currency_rate = currency_rate_for(currency, currency_record, reference, xero.base_currency)
        if currency_rate is None:
            problems.add(f"currency_rate is autotask, but Autotask has no exchange rate for {currency} (or for "
                         f"the Xero base currency {xero.base_currency})",
                         f"set the exchange rate of {currency} in Autotask (Admin > Currencies), or set "
                         "currency_rate: xero to let Xero apply its daily rate")

    invoice_number = invoice_number_for(invoice, mapping)
    if invoice_number is None and mapping.invoice_number != "xero":
        problems.add(f"the invoice number setting '{mapping.invoice_number}' needs a field that is empty "
                     "on this invoice",
                     "set invoice_number to \"INV:{id}\" (or give the invoice a number in Autotask)")

    date = _date_part(invoice["invoiceDateTime"])
    due_rule = _for_company(mapping.due_date_overrides, company, mapping.due_date)
    due_date = _due_date_for(due_rule, invoice, date, company, mapping, reference, problems)
    status = _for_company(mapping.status_overrides, company, mapping.status)
    # Approved and marked sent: Xero's SentToContact, on sales invoices only (a credit note's is read-only).
    sent_to_contact = True if status == AUTHORISED_SENT and not credit else None
    if status == AUTHORISED_SENT:
        status = "AUTHORISED"
    reference_text = reference_for(invoice, lines, company, mapping)
    branding_theme_id = _branding_theme_for(invoice, company, mapping, reference, xero, problems)
    source_url = source_url_for(invoice["id"], autotask_web_url)

    line_amount_types = mapping.line_amount_types
    if line_amount_types == "NoTax" and target_tax != 0:
        problems.add(f"the invoice carries tax {money(invoice['totalTaxValue'])} but line_amount_types is NoTax",
                     "set line_amount_types: Exclusive in the mapping file")

    exempt = bool(company.get("isTaxExempt"))
    region_name = _text(invoice.get("taxRegionName")) or _text(
        reference.tax_regions.get(company.get("taxRegionID"), {}).get("name"))
    if contact_name is None:
        contact_name = _cut(company.get("companyName"), 255) or str(company["id"])

    # Each billing item is mapped on its own first, so every problem names its item.
    parts: list[_Part] = []
    ordered = sorted(lines, key=lambda l: (l.get("sortOrderID") is None, l.get("sortOrderID") or 0, l["id"]))
    for line in ordered:
        item = line["id"]
        code = _billing_code_for(line, reference)
        code_label = (f"billing code {line.get('billingCodeID')} '{_text(code.get('name'))}'" if code
                      else f"billing code {line.get('billingCodeID')}")

        account_code = _account_code_for(line, code, mapping, reference)
        if account_code is None:
            name = _text((code or {}).get("name"))
            problems.add(f"{{items}} ({code_label}) has no account mapping",
                         f"add accounts.by_billing_code_id {line.get('billingCodeID')}: <Xero account code>"
                         + (f" (or accounts.by_billing_code_name '{name}')" if name else "")
                         + ", or set accounts.default with refuse_unmapped: false", item)
        elif account_code not in xero.account_codes:
            problems.add(f"account code '{account_code}' (for {{items}}, {code_label}) does not exist "
                         "or is archived in Xero",
                         f"add account {account_code} to Xero's chart of accounts, or map the billing code to "
                         "an existing account", item)

        tax_type, wanted = _tax_type_for(line, code, region_name, exempt, mapping, reference)
        rate_percent = None
        if tax_type is None:
            problems.add(f"{{items}} has no TaxType mapping: {wanted} is not set",
                         f"add {wanted.split(' (')[0]}: <Xero TaxType> to the mapping file", item)
        elif tax_type not in xero.tax_types:
            problems.add(f"TaxType '{tax_type}' (for {{items}}) does not exist in Xero",
                         f"add tax rate {tax_type} in Xero (Settings > Tax rates), or map to an existing TaxType", item)
        else:
            rate_percent = Decimal(xero.tax_types[tax_type])

        tracking = tuple(_tracking_for(mapping.tracking, invoice, line, code, company, region_name, reference,
                                       xero, problems, item))
        part = _Part([item], [line], line.get("billingCodeID"), account_code, tax_type, rate_percent, wanted,
                     tracking)
        if mapping.line_presentation.mode == "summary":
            # One line for the whole invoice per account and TaxType (and tracking, which a line carries once).
            key = (account_code, tax_type, tracking)
            same = next((p for p in parts if (p.account_code, p.tax_type, p.tracking) == key), None)
            if same is not None:
                same.items.append(item)
                same.lines.append(line)
                continue
        elif mapping.lines.group_by == "billing_code":
            key = (part.code_id, account_code, tax_type, tracking)
            same = next((p for p in parts if (p.code_id, p.account_code, p.tax_type, p.tracking) == key), None)
            if same is not None:
                same.items.append(item)
                same.lines.append(line)
                continue
        parts.append(part)

    # Autotask keeps each billing item's tax (and may keep its amount) to four decimals and the invoice's
    # totals from their unrounded sums, while Xero keeps each line in cents: the invoice's cents are spread
    # over the lines by largest remainder, so the lines add up to Autotask's total and tax exactly.
    inclusive = line_amount_types == "Inclusive"
    exact_taxes = [sum((l["taxDollars"] for l in part.lines), Decimal(0)) for part in parts]
    exact_amounts = [sum((l["extendedPrice"] + (l["taxDollars"] if inclusive else 0) for l in part.lines), Decimal(0))
                     for part in parts]
    line_taxes = apportion(target_tax, exact_taxes)
    line_amounts = apportion(target_total if inclusive else target_total - target_tax, exact_amounts)

    rows = []
    explicit_tax_items: list[int] = []
    # TaxType -> Autotask's tax minus Xero's own, for the rounding lines
    tax_gaps: dict[str, Decimal] = {}
    rounding = mapping.tax.rounding
    for line_no, part in enumerate(parts, start=1):
        index = line_no - 1
        line_amount, autotask_tax, exact_tax = line_amounts[index], line_taxes[index], exact_taxes[index]
        bodies = [_with_time_entries(line_body(l, mapping.lines.description, reference)
                                     or f"Autotask billing item {l['id']}", l, mapping, reference)
                  for l in part.lines]
        if mapping.line_presentation.mode == "summary":
            bodies = [_render(mapping.line_presentation.summary_description,
                              _reference_fields(invoice, lines, company)) or f"Invoice {number}"]
        if len(part.lines) == 1:
            line = part.lines[0]
            quantity, unit_amount, collapsed = fit_quantity_and_unit(line["quantity"], line.get("rate"),
                                                                     line_amount)
            note = (f"{line['quantity'].normalize():f} x {line['rate'].normalize():f}"
                    if collapsed and line.get("rate") is not None else None)
        else:
            quantity, unit_amount, note = Decimal(1), line_amount, None
        description = _cut_description("\n".join(bodies), note)

        tax_amount = None
        if part.rate_percent is not None and line_amount_types != "NoTax":
            expected = xero_line_tax(line_amount, part.rate_percent, line_amount_types)
            if abs(expected - exact_tax) > TAX_ROUNDING_TOLERANCE * len(part.lines):
                shown = ", ".join(map(str, part.items))
                extended = sum((l["extendedPrice"] for l in part.lines), Decimal(0))
                problems.add(f"billing item {shown}: Autotask charged tax {_amount(exact_tax)} on {_amount(extended)}"
                             f", but TaxType {part.tax_type} at {part.rate_percent.normalize():f}% gives {expected}",
                             f"map this line's tax ({part.wanted.split(' (')[0] or 'tax.by_region'}) to a Xero "
                             "TaxType with the rate Autotask charges")
            elif expected != autotask_tax:
                if rounding.strategy == "tax_amount":
                    tax_amount = autotask_tax
                    explicit_tax_items += part.items
                else:
                    tax_gaps[part.tax_type] = tax_gaps.get(part.tax_type, Decimal("0.00")) + autotask_tax - expected

        tracking = list(part.tracking) + [(None, None)] * (2 - len(part.tracking))
        rows.append({
            "autotask_invoice_id": invoice["id"], "document_type": document_type, "autotask_number": number,
            "invoice_number": invoice_number, "contact_number": str(company["id"]), "contact_name": contact_name,
            "date": date, "due_date": due_date, "reference": reference_text, "currency_code": currency,
            "line_amount_types": line_amount_types, "status": status, "source_url": source_url,
            "branding_theme_id": branding_theme_id, "currency_rate": currency_rate, "rounding_note": None,
            "sent_to_contact": sent_to_contact,
            "line_no": line_no, "autotask_billing_item_id": part.items[0], "description": description,
            "quantity": quantity, "unit_amount": unit_amount, "account_code": part.account_code,
            "tax_type": part.tax_type, "tax_amount": tax_amount, "line_amount": line_amount,
            "autotask_total": invoice["invoiceTotal"], "autotask_tax": invoice["totalTaxValue"],
            "tracking1_name": tracking[0][0], "tracking1_option": tracking[0][1],
            "tracking2_name": tracking[1][0], "tracking2_option": tracking[1][1],
        })

    note = None
    tax_gaps = {tax_type: gap for tax_type, gap in tax_gaps.items() if gap}
    if explicit_tax_items:
        note = ("Xero's per-line tax rounding differs from Autotask's; Autotask's tax is sent as TaxAmount on "
                + ("billing item " if len(explicit_tax_items) == 1 else "billing items ")
                + ", ".join(map(str, explicit_tax_items)))
    elif tax_gaps and rows:
        # The lines keep Xero's own tax; one line of no amount per TaxType carries the difference as its tax,
        # so the total and the tax both match Autotask's, each rate's tax reported under its own TaxType.
        if rounding.account_code not in xero.account_codes:
            problems.add(f"the rounding account '{rounding.account_code}' does not exist or is archived in Xero",
                         "add the account in Xero, or correct tax.rounding.account_code in the mapping file")
        note = "Xero's per-line tax rounding differs from Autotask's; " + ", ".join(
            f"added a rounding line of {gap} tax ({tax_type}) on account {rounding.account_code}"
            for tax_type, gap in tax_gaps.items())
        for tax_type, gap in tax_gaps.items():
            rows.append({**rows[-1], "line_no": len(rows) + 1, "autotask_billing_item_id": None,
                         "description": rounding.description, "quantity": Decimal(1), "unit_amount": Decimal("0.00"),
                         "account_code": rounding.account_code, "tax_type": tax_type, "tax_amount": gap,
                         "line_amount": Decimal("0.00"), "tracking1_name": None, "tracking1_option": None,
                         "tracking2_name": None, "tracking2_option": None})
    for row in rows:
        row["rounding_note"] = note

    if problems:
        return problems
    _, xero_tax, xero_total = xero_totals(rows, xero.tax_types)
    if xero_total != target_total or xero_tax != target_tax:
        # Every billing item adds up (checked above) and the lines were fitted to Autotask's totals: a gap
        # here is the mapping's fault, not the invoice's.
        problems.add(f"the Xero {'credit note' if credit else 'invoice'} would total {xero_total} (tax {xero_tax}) "
                     f"but Autotask says {money(invoice['invoiceTotal'])} (tax {money(invoice['totalTaxValue'])}), "
                     "although every billing item adds up",
                     "report this invoice: the sync could not reproduce Autotask's totals; it is not sent until "
                     "they agree")
        return problems
    return rows


def _cut(value, limit: int) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def contact_names(companies) -> dict[int, str]:
    """Company id -> Xero contact name, unique across the companies (see contact_name_for)."""
    rows = _records(companies) if isinstance(companies, pd.DataFrame) else list(companies)
    by_name: dict[str, list[int]] = {}
    plain: dict[int, str] = {}
    for row in rows:
        name = _text(row.get("companyName")) or str(row["id"])
        plain[row["id"]] = name
        # Xero refuses a second active contact whose name differs only in case or spacing.
        by_name.setdefault(" ".join(name.casefold().split()), []).append(row["id"])
    names = {}
    for ids in by_name.values():
        for position, company_id in enumerate(sorted(ids)):
            name = plain[company_id]
            if position == 0:
                names[company_id] = _cut(name, 255)
            else:
                suffix = f" (Autotask #{company_id})"
                names[company_id] = (name if len(name) + len(suffix) <= 255
                                     else name[: 255 - len(suffix) - 1] + ELLIPSIS) + suffix
    return names


def contact_name_for(company: dict, companies) -> str:
    """The Xero contact name for an Autotask company. Two companies with one name would be one Xero
    contact; the lowest company id keeps the plain name and the others get " (Autotask #<id>)"."""
    rows = _records(companies) if isinstance(companies, pd.DataFrame) else list(companies)
    if not any(row["id"] == company["id"] for row in rows):
        rows.append(company)
    return contact_names(rows)[company["id"]]


def plan_invoices(invoices: pd.DataFrame, lines: pd.DataFrame, companies: pd.DataFrame,
                  reference_data: dict[str, list[dict]], mapping: InvoiceMapping,
                  xero: XeroReference, *, autotask_web_url: str | None = None) -> InvoicePlan:
    """Draft every invoice (or credit note) that maps cleanly; set aside every other with its reason and fix.

    autotask_web_url is the Autotask zone's webUrl (for example "https://ww5.autotask.net/"); with it each
    draft carries source_url, the link back to its Autotask invoice.
    """
    reference = _Reference(reference_data)
    set_aside: list[SetAside] = []

    for rejected in invoices.attrs.get(_REJECTED_INVOICES, []):
        record = rejected.record
        set_aside.append(SetAside(
            autotask_id=_int_or_zero(record.get("id")), autotask_number=rejected_number(record),
            reason="the invoice cannot be read: " + "; ".join(rejected.problems),
            fix=f"correct {', '.join(rejected.fields) or 'the invoice'} on the invoice in Autotask; "
                "it is retried on the next run"))

    bad_lines: dict[int, list[RejectedRecord]] = {}
    # Rejected records that name no invoice (billing items) or no company (companies) they can be placed by.
    unplaced_lines: list[RejectedRecord] = []
    for rejected in lines.attrs.get(_REJECTED_LINES, []):
        owner = read_int(rejected.record.get("invoiceID"))
        if owner is None:
            unplaced_lines.append(rejected)
        else:
            bad_lines.setdefault(owner, []).append(rejected)
    bad_companies: dict[int, RejectedRecord] = {}
    unplaced_companies: list[RejectedRecord] = []
    for rejected in companies.attrs.get(_REJECTED_COMPANIES, []):
        company_id = read_int(rejected.record.get("id"))
        if company_id is None:
            unplaced_companies.append(rejected)
        else:
            bad_companies[company_id] = rejected

    company_rows = _records(companies)
    companies_by_id = {row["id"]: row for row in company_rows}
    names = contact_names(company_rows)
    lines_by_invoice: dict[int, list[dict]] = {}
    for line in _records(lines):
        lines_by_invoice.setdefault(line["invoiceID"], []).append(line)

    drafts: list[dict] = []
    skipped: list[SetAside] = []
    whose: dict[int, dict] = {}  # invoice id -> the company and total a set-aside row shows
    for invoice in _records(invoices):
        invoice_id, number = invoice["id"], autotask_number(invoice)
        company_id = invoice["companyID"]
        whose[invoice_id] = {"company_id": company_id, "total": money(invoice["invoiceTotal"]),
                             "contact_name": names.get(company_id)}

        def keep_out(reason: str, fix: str) -> None:
            set_aside.append(SetAside(autotask_id=invoice_id, autotask_number=number, reason=reason, fix=fix,
                                      **whose[invoice_id]))

        if invoice["isVoided"]:
            skipped.append(SetAside(autotask_id=invoice_id, autotask_number=number,
                                    reason="voided in Autotask", fix="nothing to do"))
            continue
        if invoice_id in bad_lines:
            details = "; ".join(f"billing item {_shown_id(r.record.get('id'))}: " + ", ".join(r.problems)
                                for r in bad_lines[invoice_id])
            keep_out(f"billing items cannot be read ({details})",
                     "check these billing items in Autotask; the invoice is retried on the next run")
            continue
        if invoice["companyID"] in bad_companies:
            keep_out(f"company {invoice['companyID']} cannot be read: "
                     + "; ".join(bad_companies[invoice["companyID"]].problems),
                     "correct the company in Autotask; the invoice is retried on the next run")
            continue

        if unplaced_companies and invoice["companyID"] not in companies_by_id:
            details = "; ".join(", ".join(r.problems) for r in unplaced_companies)
            keep_out(f"company {invoice['companyID']} was not read, and companies whose id cannot be read came "
                     f"with it ({details})",
                     "correct the companies' ids in Autotask; the invoice is retried on the next run")
            continue
        if unplaced_lines and _missing_lines_reason(invoice, lines_by_invoice.get(invoice_id, [])):
            details = "; ".join(f"billing item {_shown_id(r.record.get('id'))}: " + ", ".join(r.problems)
                                for r in unplaced_lines)
            keep_out("the invoice's billing items do not add up to its total, and billing items whose invoiceID "
                     f"cannot be read came with it; one may be this invoice's ({details})",
                     "correct these billing items in Autotask; the invoice is retried on the next run")
            continue

        result = _plan_one(invoice, lines_by_invoice.get(invoice_id, []), companies_by_id.get(invoice["companyID"]),
                           reference, mapping, xero, names.get(invoice["companyID"]), autotask_web_url)
        if isinstance(result, _Problems):
            keep_out("; ".join(result.reasons), "; ".join(result.fixes))
        else:
            drafts.extend(result)

    frame, invalid = _validated_drafts(drafts)
    for invoice_id, number, problem in invalid:
        set_aside.append(SetAside(autotask_id=invoice_id, autotask_number=number,
                                  reason=f"the Xero draft is not valid: {problem}",
                                  fix=next((fix for start, fix in _INVALID_DRAFT_FIXES.items()
                                            if problem.startswith(start)), _INVALID_DRAFT_FIX),
                                  **whose.get(invoice_id, {})))
    return InvoicePlan(drafts=frame, set_aside=set_aside, skipped=skipped)


# What to change when a draft fails XeroInvoiceDraft, by the start of the failure ("column: check"): the limits
# of Xero's a mapping choice or an invoice can push a draft past; any other failure is the sync's fault.
_INVALID_DRAFT_FIX = "report this invoice; the mapping produced a draft Xero would refuse"
_INVALID_DRAFT_FIXES = {
    "line_amount: Xero accepts line amounts up to":
        "send these billing items as separate lines (lines.group_by: item, and no line_presentation summary) or "
        "split the invoice in Autotask: one Xero line carries at most ±9,999,999,999.99",
    "invoice_number: must be text of at most":
        "shorten the invoice_number template in the mapping file (or the invoice's fields it uses): Xero keeps "
        "at most 255 characters",
}


def _int_or_zero(value) -> int:
    number = read_int(value)
    return 0 if number is None else number


def _shown_id(value) -> str:
    return str(value) if read_int(value) is not None else shown(value)


def _validated_drafts(drafts: list[dict]) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """Check the drafts against XeroInvoiceDraft; an invoice with any bad row is dropped whole."""
    frame = frame_of_rows(drafts, XeroInvoiceDraft)
    invalid: list[tuple[int, str, str]] = []
    try:
        return XeroInvoiceDraft.validate(frame, lazy=True), invalid
    except pa.errors.SchemaErrors as errors:
        bad_ids: dict[int, str] = {}
        for case in errors.failure_cases.itertuples():
            row = frame.iloc[int(case.index)]
            bad_ids.setdefault(int(row["autotask_invoice_id"]), f"{case.column}: {case.check}")
        for invoice_id, problem in bad_ids.items():
            number = frame.loc[frame["autotask_invoice_id"] == invoice_id, "autotask_number"].iloc[0]
            invalid.append((invoice_id, number, problem))
        kept = frame[~frame["autotask_invoice_id"].isin(list(bad_ids))].reset_index(drop=True)
        return XeroInvoiceDraft.validate(kept), invalid


# -- to Xero -----------------------------------------------------------------------------------------

def _canonical(value):
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, Decimal):
        # 100, 100.0 and 100.00 are the same amount and must hash the same.
        return format(value.normalize(), "f") if value != 0 else "0"
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


# The columns hashed before documents other than plain invoices existed. A newer column joins the hash only
# when some row holds more than its neutral value, so drafts that did not change keep their old hash and
# are not reported as changed in Autotask after an upgrade.
_HASHED_COLUMNS = (
    "autotask_invoice_id", "autotask_number", "invoice_number", "contact_number", "contact_name", "date",
    "due_date", "reference", "currency_code", "line_amount_types", "status", "line_no",
    "autotask_billing_item_id", "description", "quantity", "unit_amount", "account_code", "tax_type",
    "tax_amount", "line_amount", "autotask_total", "autotask_tax",
)
_NEUTRAL = (None, "ACCREC")


def content_hash(draft_rows: pd.DataFrame) -> str:
    """A stable sha256 of one invoice's draft: same content, same hash, whatever the row or column order."""
    return _hash_of(sorted(_records(draft_rows), key=lambda row: row["line_no"]), frozenset(draft_rows.columns))


@lru_cache(maxsize=1)
def _newer_columns() -> tuple[str, ...]:
    return tuple(c for c in column_dtypes(XeroInvoiceDraft) if c not in _HASHED_COLUMNS)


def _hash_of(rows: list[dict], present: frozenset[str]) -> str:
    """content_hash of one invoice's rows (sorted by line_no), `present` the columns its frame has."""
    newer = [c for c in _newer_columns() if c in present and any(row[c] not in _NEUTRAL for row in rows)]
    columns = list(_HASHED_COLUMNS) + newer
    canonical = [[_canonical(row.get(c)) for c in columns] for row in rows]
    text = json.dumps({"columns": columns, "rows": canonical}, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def contact_draft(company: dict, primary_contact: dict | None, *, currency_code: str | None = None,
                  country: str | None = None, name: str | None = None, supplier: bool = False,
                  account_number: bool = False) -> documents.ContactDraft:
    """The Xero contact for an Autotask company, keyed by ContactNumber = the Autotask company id.

    The billing address is used when the company has one, else the company's own address. Autotask
    holds countries and currencies as ids, so the caller passes their names when it knows them. `name`
    is the contact's name when it must differ from the company's (see contact_name_for). `account_number`:
    send the company's companyNumber as Xero's AccountNumber (the mapping's contacts.match names it).
    """
    billing = _text(company.get("billingAddress1"))
    if billing:
        lines = (company.get("billingAddress1"), company.get("billingAddress2"), company.get("billToCity"),
                 company.get("billToState"), company.get("billToZipCode"))
    else:
        lines = (company.get("address1"), company.get("address2"), company.get("city"),
                 company.get("state"), company.get("postalCode"))
    line1, line2, city, region, postal_code = lines
    address = None
    if any(_text(v) for v in lines) or country:
        address = documents.ContactAddress(
            line1=_cut(line1, 500), line2=_cut(line2, 500), city=_cut(city, 255), region=_cut(region, 255),
            postal_code=_cut(postal_code, 50), country=_cut(country, 50),
            attention_to=_cut(company.get("billToAttention"), 255),
        )
    person = primary_contact or {}
    return documents.ContactDraft(
        contact_number=str(company["id"]),
        name=_cut(name, 255) or _cut(company.get("companyName"), 255) or str(company["id"]),
        tax_number=_cut(company.get("taxID"), 50),
        # A vendor's contact is one the MSP buys from; Xero marks it a supplier once a bill names it.
        is_customer=None if supplier else True,
        address=address,
        phone=_cut(company.get("phone"), 50),
        website=_text(company.get("webAddress")),
        first_name=_cut(person.get("firstName"), 255),
        last_name=_cut(person.get("lastName"), 255),
        email_address=_cut(person.get("emailAddress"), 255),
        default_currency=currency_code.upper() if currency_code and currency_code.upper() in _KNOWN_CURRENCIES else None,
        account_number=_cut(company.get("companyNumber"), 50) if account_number else None,
    )


# -- to the document pipeline ------------------------------------------------------------------------

def credit_ids(invoices: pd.DataFrame) -> frozenset[int]:
    """Autotask invoices with a negative total (credit notes in Xero), rejected records included."""
    records = invoices[["id", "invoiceTotal"]].to_dict("records") if len(invoices) else []
    records += [r.record for r in invoices.attrs.get(_REJECTED_INVOICES, [])]
    found = set()
    for r in records:
        invoice_id = read_int(r.get("id"))  # as the frames read it: never int(inf), nor 1.5 as invoice 1
        try:
            if invoice_id is not None and Decimal(str(r.get("invoiceTotal"))) < 0:
                found.add(invoice_id)
        except (ArithmeticError, TypeError, ValueError):
            continue
    return frozenset(found)


def invoice_documents(plan: InvoicePlan, credits: frozenset[int] = frozenset()) -> list[documents.DocumentPlan]:
    """The plan as the pipeline's DocumentPlans: one per invoice or credit note, drafted, set aside or voided.

    The content hash is the draft rows' (content_hash), so ledgers written before the pipeline existed
    still recognise every document they hold as unchanged."""
    # One conversion of the whole frame to plain rows, then grouped: per invoice it cost more than the mapping.
    by_invoice: dict = {}
    for row in _records(plan.drafts) if len(plan.drafts) else []:
        by_invoice.setdefault(row["autotask_invoice_id"], []).append(row)
    present = frozenset(plan.drafts.columns)
    out = [_document_of_rows(rows, present) for rows in by_invoice.values()]
    for s in plan.set_aside:
        contact = (documents.ContactRef(number=str(s.company_id), name=s.contact_name)
                   if s.company_id is not None and s.contact_name else None)
        out.append(documents.DocumentPlan(
            kind="credit_note" if int(s.autotask_id) in credits else "invoice", source_id=str(s.autotask_id),
            source_number=s.autotask_number, set_aside=documents.SetAside(s.reason, s.fix), contact=contact,
            source_total=s.total))
    for s in plan.skipped:
        out.append(documents.DocumentPlan(
            kind="credit_note" if int(s.autotask_id) in credits else "invoice", source_id=str(s.autotask_id),
            source_number=s.autotask_number, void=True))
    return out


def document_of(draft_rows: pd.DataFrame) -> documents.DocumentPlan:
    """The DocumentPlan of one invoice's draft rows."""
    return _document_of_rows(_records(draft_rows), frozenset(draft_rows.columns))


def _document_of_rows(rows: list[dict], present: frozenset[str]) -> documents.DocumentPlan:
    rows = sorted(rows, key=lambda row: row["line_no"])
    head = rows[0]
    credit = head["document_type"] == "ACCRECCREDIT"
    number = head["invoice_number"]
    if number:
        key, key_kind = number, documents.KeyKind.NUMBER
    elif credit:
        key, key_kind = head["reference"], documents.KeyKind.REFERENCE
    else:
        key, key_kind = head["source_url"], documents.KeyKind.URL
    lines = tuple(
        documents.Line(
            description=row["description"], quantity=row["quantity"], unit_amount=row["unit_amount"],
            line_amount=row["line_amount"], account_code=row["account_code"], tax_type=row["tax_type"],
            tax_amount=row["tax_amount"],
            tracking=tuple((row[f"tracking{n}_name"], row[f"tracking{n}_option"]) for n in (1, 2)
                           if row.get(f"tracking{n}_name") and row.get(f"tracking{n}_option")),
            source_line_id=None if row["autotask_billing_item_id"] is None else str(row["autotask_billing_item_id"]),
        )
        for row in rows
    )
    return documents.DocumentPlan(
        kind="credit_note" if credit else "invoice", source_id=str(head["autotask_invoice_id"]),
        source_number=head["autotask_number"], content_hash=_hash_of(rows, present),
        contact=documents.ContactRef(number=head["contact_number"], name=head["contact_name"]),
        number=number or None, natural_key=key or None, natural_key_kind=key_kind if key else None,
        date=head["date"], due_date=head["due_date"], reference=head["reference"], currency_code=head["currency_code"],
        currency_rate=head["currency_rate"], line_amount_types=head["line_amount_types"],
        status=documents.Status(head["status"]), url=head["source_url"], branding_theme_id=head["branding_theme_id"],
        # A credit note carries every amount with its sign turned; an invoice keeps the tax's own sign (a
        # positive invoice whose adjustment lines credit more tax than the rest charge has negative tax).
        lines=lines, total=abs(money(head["autotask_total"])),
        tax=-money(head["autotask_tax"]) if credit else money(head["autotask_tax"]),
        source_total=head["autotask_total"], note=head["rounding_note"] or None,
        sent_to_contact=True if head.get("sent_to_contact") is True else None,
    )


# ---- tax from the Xero contact ------------------------------------------------------------------------
def with_contact_tax(plans: list[documents.DocumentPlan], sales_tax_types: dict[str, str],
                     rates: dict[str, Decimal]) -> list[documents.DocumentPlan]:
    """`tax.from_contact`: each line takes its Xero contact's default sales tax (AccountsReceivableTaxType)
    instead of the mapped TaxType. Only a TaxType of the same rate keeps Xero's tax equal to Autotask's to
    the cent; a contact whose default has another rate sets the invoice aside, with both rates named.
    Contacts without a default (and this sync's new contacts) keep the mapping's TaxType."""
    out = []
    for plan in plans:
        wanted = sales_tax_types.get(plan.contact.number) if plan.contact and plan.sendable else None
        if not wanted or not plan.lines:
            out.append(plan)
            continue
        clash = next((line for line in plan.lines if line.tax_type and line.tax_type != wanted
                      and rates.get(line.tax_type) != rates.get(wanted)), None)
        if clash is not None or wanted not in rates:
            shown = f"{rates[wanted]} %" if wanted in rates else "not an active tax rate"
            theirs = f"{rates.get(clash.tax_type)} %" if clash is not None else ""
            out.append(documents.with_hash(replace(plan, set_aside=documents.SetAside(
                f"the Xero contact {plan.contact.name}'s default sales tax {wanted} is {shown}, but Autotask taxed "
                + (f"line '{clash.description[:60]}' at {theirs} ({clash.tax_type})" if clash is not None else "this invoice")
                + ": Xero's tax would not equal Autotask's",
                "change the contact's default sales tax in Xero (or the tax in Autotask), or turn off "
                "tax.from_contact in the mapping"))))
            continue
        lines = tuple(replace(line, tax_type=wanted) if line.tax_type else line for line in plan.lines)
        out.append(documents.with_hash(replace(plan, lines=lines)))
    return out

"""Autotask invoices -> Xero ACCREC invoice drafts: the pure mapping at the heart of the sync.

Nothing here talks to a network. Frames go in, a plan comes out: draft rows for every invoice that maps
cleanly and adds up to Autotask's totals to the cent, and a SetAside (reason and fix) for every other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd
import pandera.pandas as pa
from xero_python.accounting import Address, Contact, CurrencyCode, Invoice, LineAmountTypes, LineItem, Phone

from core.frames import RejectedRecord, companies_with_rejects, frame_of_rows, invoices_with_rejects, lines_with_rejects
from core.mapping import InvoiceMapping
from core.schemas import XeroInvoiceDraft, column_dtypes

CENT = Decimal("0.01")
FOUR_DP = Decimal("0.0001")
DESCRIPTION_LIMIT = 4000  # Xero's maximum for LineItem.Description
ELLIPSIS = "…"
# Xero rounds each line's tax on its own; Autotask may round differently, but never by more than a cent
# a line. A bigger gap means the TaxType's rate is not the rate Autotask charged: a mapping mistake.
TAX_ROUNDING_TOLERANCE = Decimal("0.01")
_PLACEHOLDER = re.compile(r"{([^{}]*)}")
_KNOWN_CURRENCIES = frozenset(member.value for member in CurrencyCode)

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


@dataclass(frozen=True)
class SetAside:
    """A document kept out of this run, with why and how to fix it."""

    autotask_id: int
    autotask_number: str
    reason: str
    fix: str


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

    Tries the Autotask rate at 2 dp, then at 4 dp (Xero keeps 4 with unitdp=4), then the amount divided by
    the quantity. Returns (quantity, unit, collapsed): collapsed means no unit fits, so the line is sent
    as 1 x line amount and the caller keeps the original "qty x rate" in the description.
    """
    if quantity == quantity.quantize(FOUR_DP) and quantity != 0:
        candidates = []
        if rate is not None:
            candidates += [rate.quantize(CENT, rounding=ROUND_HALF_UP), rate.quantize(FOUR_DP, rounding=ROUND_HALF_UP)]
        per_unit = line_amount / quantity
        candidates += [per_unit.quantize(CENT, rounding=ROUND_HALF_UP), per_unit.quantize(FOUR_DP, rounding=ROUND_HALF_UP)]
        for unit in candidates:
            if money(quantity * unit) == line_amount:
                return quantity, unit, False
    if quantity == 0 and line_amount == 0 and rate is not None:
        return quantity, rate.quantize(FOUR_DP, rounding=ROUND_HALF_UP), False
    return Decimal(1), line_amount, True


def xero_line_tax(line_amount: Decimal, rate_percent: Decimal, line_amount_types: str) -> Decimal:
    """The tax Xero computes on one line: per line, rounded half-up to the cent."""
    if line_amount_types == "NoTax":
        return Decimal("0.00")
    if line_amount_types == "Inclusive":
        return money(line_amount * rate_percent / (100 + rate_percent))
    return money(line_amount * rate_percent / 100)


# -- reference data ----------------------------------------------------------------------------------

class _Reference:
    """Autotask reference entities, indexed by id."""

    def __init__(self, reference_data: dict[str, list[dict]]):
        def by_id(name):
            return {row["id"]: row for row in reference_data.get(name) or [] if row.get("id") is not None}

        self.billing_codes = by_id("BillingCodes")
        self.tax_categories = by_id("TaxCategories")
        self.tax_regions = by_id("TaxRegions")
        self.currencies = by_id("Currencies")
        internal = [c for c in self.currencies.values() if c.get("isInternalCurrency")]
        self.internal_currency = _text(internal[0].get("name")) if internal else None


class _Problems:
    """Everything wrong with one invoice, gathered so the user can fix it all in one go."""

    def __init__(self):
        # reason template -> billing item ids it applies to; one entry per distinct problem
        self._items: dict[str, list[int]] = {}
        self.fixes: list[str] = []

    def add(self, reason: str, fix: str, item: int | None = None) -> None:
        """`reason` may say "{items}": the same problem on several lines is then reported once, naming them all."""
        items = self._items.setdefault(reason, [])
        if item is not None:
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


def _account_code_for(line: dict, code: dict | None, mapping: InvoiceMapping) -> str | None:
    rules = mapping.accounts
    code = code or {}
    candidates = [
        rules.by_billing_code_id.get(code.get("id")),
        rules.by_billing_code_name.get(_text(code.get("name")) or ""),
        rules.by_gl_account.get(code.get("generalLedgerAccount")),
        rules.by_external_number.get(_text(code.get("externalNumber")) or ""),
        rules.by_billing_item_type.get(line.get("billingItemType")),
    ]
    for candidate in candidates:
        if candidate:
            return candidate
    return None if rules.refuse_unmapped else rules.default


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


def _currency_for(company: dict, reference: _Reference, xero: XeroReference, problems: _Problems) -> str | None:
    currency_id = company.get("currencyID")
    if currency_id is None:
        code = reference.internal_currency or xero.base_currency
    else:
        code = _text(reference.currencies.get(currency_id, {}).get("name"))
        if code is None:
            problems.add(f"company {company['id']} uses Autotask currency id {currency_id}, which was not read",
                         "check that the Autotask API user can read Currencies, then rerun")
            return None
    code = code.upper()
    if code not in _KNOWN_CURRENCIES:
        problems.add(f"currency '{code}' is not an ISO currency code Xero knows",
                     "correct the currency's name in Autotask (Admin > Currencies) to its ISO code")
        return None
    if code != xero.base_currency and code not in xero.currencies:
        problems.add(f"the Xero organisation is not subscribed to currency {code}",
                     f"add {code} in Xero (Settings > Currencies; needs a plan with multi-currency)")
        return None
    return code


def _missing_lines_reason(invoice: dict, lines: list[dict]) -> tuple[str, str] | None:
    """Compare the lines with the invoice's totals; when they differ, name the likely cause."""
    total = sum((line["totalAmount"] for line in lines), Decimal(0))
    tax = sum((line["taxDollars"] for line in lines), Decimal(0))
    if money(total) == money(invoice["invoiceTotal"]) and money(tax) == money(invoice["totalTaxValue"]):
        return None
    seen = (f"{len(lines)} billing item(s) add up to {money(total)} (tax {money(tax)}), but the invoice says "
            f"{money(invoice['invoiceTotal'])} (tax {money(invoice['totalTaxValue'])})")
    if not lines or abs(total) < abs(invoice["invoiceTotal"]):
        return (seen + ": billing items are missing. Likely causes: the Autotask API user cannot see every "
                "Line of Business, or the invoice is still being processed in Autotask",
                "give the API user's security level access to all Lines of Business (or wait until invoicing "
                "finishes); the invoice is retried on the next run")
    return (seen + ": the billing items carry more than the invoice; the invoice may have been changed while "
            "it was read",
            "rerun; if it persists, check the invoice's billing items in Autotask")


def _plan_one(invoice: dict, lines: list[dict], company: dict | None, reference: _Reference,
              mapping: InvoiceMapping, xero: XeroReference) -> list[dict] | _Problems:
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
    if money(invoice["invoiceTotal"]) < 0:
        problems.add(f"the invoice total is negative ({money(invoice['invoiceTotal'])}): Xero takes credits as "
                     "credit notes, not as invoices",
                     "nothing to do here; credit notes are synced separately")
        return problems
    if not lines:
        problems.add("the invoice has no billing items and a total of zero; there is nothing to send",
                     "nothing to do unless the invoice should have lines in Autotask")
        return problems

    currency = _currency_for(company, reference, xero, problems)

    invoice_number = invoice_number_for(invoice, mapping)
    if invoice_number is None and mapping.invoice_number != "xero":
        problems.add(f"the invoice number setting '{mapping.invoice_number}' needs a field that is empty "
                     "on this invoice",
                     "set invoice_number to \"INV:{id}\" (or give the invoice a number in Autotask)")

    date = _date_part(invoice["invoiceDateTime"])
    due_date = None
    if mapping.due_date == "autotask":
        due_date = _date_part(invoice.get("dueDate"))
        if due_date is None:
            problems.add("the invoice has no due date in Autotask",
                         "set due_date: invoice_date (with due_days) or xero_contact in the mapping file")
    elif mapping.due_date == "invoice_date":
        due_date = date + dt.timedelta(days=mapping.due_days)

    reference_text = _render(mapping.reference, invoice) if mapping.reference else None
    if reference_text and len(reference_text) > 255:
        reference_text = reference_text[:254] + ELLIPSIS

    line_amount_types = mapping.line_amount_types
    if line_amount_types == "NoTax" and money(invoice["totalTaxValue"]) != 0:
        problems.add(f"the invoice carries tax {money(invoice['totalTaxValue'])} but line_amount_types is NoTax",
                     "set line_amount_types: Exclusive in the mapping file")

    exempt = bool(company.get("isTaxExempt"))
    region_name = _text(invoice.get("taxRegionName")) or _text(
        reference.tax_regions.get(company.get("taxRegionID"), {}).get("name"))
    contact_name = _text(company.get("companyName")) or str(company["id"])
    if len(contact_name) > 255:
        contact_name = contact_name[:254] + ELLIPSIS

    rows = []
    xero_total = xero_tax_total = Decimal("0.00")
    ordered = sorted(lines, key=lambda l: (l.get("sortOrderID") is None, l.get("sortOrderID") or 0, l["id"]))
    for line_no, line in enumerate(ordered, start=1):
        item = line["id"]
        code = reference.billing_codes.get(line.get("billingCodeID"))
        code_label = (f"billing code {line.get('billingCodeID')} '{_text(code.get('name'))}'" if code
                      else f"billing code {line.get('billingCodeID')}")

        account_code = _account_code_for(line, code, mapping)
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

        autotask_tax = money(line["taxDollars"])
        if line_amount_types == "Inclusive":
            line_amount = money(line["extendedPrice"]) + autotask_tax
        else:
            line_amount = money(line["extendedPrice"])
        quantity, unit_amount, collapsed = fit_quantity_and_unit(line["quantity"], line.get("rate"), line_amount)
        note = f"{line['quantity'].normalize():f} x {line['rate'].normalize():f}" if collapsed and line.get(
            "rate") is not None else None
        description = description_for(line.get("itemName"), line.get("description"), note,
                                      fallback=f"Autotask billing item {item}")

        tax_amount = None
        if rate_percent is not None and line_amount_types != "NoTax":
            expected = xero_line_tax(line_amount, rate_percent, line_amount_types)
            if abs(expected - autotask_tax) > TAX_ROUNDING_TOLERANCE:
                problems.add(f"billing item {item}: Autotask charged tax {autotask_tax} on {money(line['extendedPrice'])}"
                             f", but TaxType {tax_type} at {rate_percent.normalize():f}% gives {expected}",
                             f"map this line's tax ({wanted.split(' (')[0] or 'tax.by_region'}) to a Xero TaxType "
                             "with the rate Autotask charges")
            elif expected != autotask_tax:
                # Xero's per-line rounding differs from Autotask's: send Autotask's cents explicitly.
                tax_amount = autotask_tax
        line_tax = autotask_tax if line_amount_types != "NoTax" else Decimal("0.00")
        xero_tax_total += line_tax
        xero_total += line_amount if line_amount_types == "Inclusive" else line_amount + line_tax

        rows.append({
            "autotask_invoice_id": invoice["id"], "autotask_number": number, "invoice_number": invoice_number,
            "contact_number": str(company["id"]), "contact_name": contact_name, "date": date,
            "due_date": due_date, "reference": reference_text, "currency_code": currency,
            "line_amount_types": line_amount_types, "status": mapping.status, "line_no": line_no,
            "autotask_billing_item_id": item, "description": description, "quantity": quantity,
            "unit_amount": unit_amount, "account_code": account_code, "tax_type": tax_type,
            "tax_amount": tax_amount, "line_amount": line_amount,
            "autotask_total": invoice["invoiceTotal"], "autotask_tax": invoice["totalTaxValue"],
        })

    if problems:
        return problems
    if xero_total != money(invoice["invoiceTotal"]) or xero_tax_total != money(invoice["totalTaxValue"]):
        problems.add(f"the Xero invoice would total {xero_total} (tax {xero_tax_total}) but Autotask says "
                     f"{money(invoice['invoiceTotal'])} (tax {money(invoice['totalTaxValue'])}); a billing item's "
                     "extendedPrice + taxDollars does not equal its totalAmount",
                     "check the billing items' amounts in Autotask; the invoice is not sent until they agree")
        return problems
    return rows


def plan_invoices(invoices: pd.DataFrame, lines: pd.DataFrame, companies: pd.DataFrame,
                  reference_data: dict[str, list[dict]], mapping: InvoiceMapping,
                  xero: XeroReference) -> InvoicePlan:
    """Draft every invoice that maps cleanly; set aside every other with its reason and fix."""
    reference = _Reference(reference_data)
    set_aside: list[SetAside] = []

    for rejected in invoices.attrs.get(_REJECTED_INVOICES, []):
        record = rejected.record
        set_aside.append(SetAside(
            autotask_id=_int_or_zero(record.get("id")), autotask_number=autotask_number(record),
            reason="the invoice cannot be read: " + "; ".join(rejected.problems),
            fix="check the invoice in Autotask; it is retried on the next run"))

    bad_lines: dict[int, list[RejectedRecord]] = {}
    for rejected in lines.attrs.get(_REJECTED_LINES, []):
        bad_lines.setdefault(_int_or_zero(rejected.record.get("invoiceID")), []).append(rejected)
    bad_companies = {_int_or_zero(r.record.get("id")): r for r in companies.attrs.get(_REJECTED_COMPANIES, [])}

    companies_by_id = {row["id"]: row for row in _records(companies)}
    lines_by_invoice: dict[int, list[dict]] = {}
    for line in _records(lines):
        lines_by_invoice.setdefault(line["invoiceID"], []).append(line)

    drafts: list[dict] = []
    skipped: list[SetAside] = []
    for invoice in _records(invoices):
        invoice_id, number = invoice["id"], autotask_number(invoice)

        def keep_out(reason: str, fix: str) -> None:
            set_aside.append(SetAside(autotask_id=invoice_id, autotask_number=number, reason=reason, fix=fix))

        if invoice["isVoided"]:
            skipped.append(SetAside(autotask_id=invoice_id, autotask_number=number,
                                    reason="voided in Autotask", fix="nothing to do"))
            continue
        if invoice_id in bad_lines:
            details = "; ".join(f"billing item {r.record.get('id')}: " + ", ".join(r.problems)
                                for r in bad_lines[invoice_id])
            keep_out(f"billing items cannot be read ({details})",
                     "check these billing items in Autotask; the invoice is retried on the next run")
            continue
        if invoice["companyID"] in bad_companies:
            keep_out(f"company {invoice['companyID']} cannot be read: "
                     + "; ".join(bad_companies[invoice["companyID"]].problems),
                     "correct the company in Autotask; the invoice is retried on the next run")
            continue

        result = _plan_one(invoice, lines_by_invoice.get(invoice_id, []), companies_by_id.get(invoice["companyID"]),
                           reference, mapping, xero)
        if isinstance(result, _Problems):
            keep_out("; ".join(result.reasons), "; ".join(result.fixes))
        else:
            drafts.extend(result)

    frame, invalid = _validated_drafts(drafts)
    for invoice_id, number, problem in invalid:
        set_aside.append(SetAside(autotask_id=invoice_id, autotask_number=number,
                                  reason=f"the Xero draft is not valid: {problem}",
                                  fix="report this invoice; the mapping produced a draft Xero would refuse"))
    return InvoicePlan(drafts=frame, set_aside=set_aside, skipped=skipped)


def _int_or_zero(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


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


def content_hash(draft_rows: pd.DataFrame) -> str:
    """A stable sha256 of one invoice's draft: same content, same hash, whatever the row or column order."""
    columns = list(column_dtypes(XeroInvoiceDraft))
    rows = sorted(_records(draft_rows[columns]), key=lambda row: row["line_no"])
    canonical = [[_canonical(row[c]) for c in columns] for row in rows]
    text = json.dumps({"columns": columns, "rows": canonical}, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_xero_invoice(draft_rows: pd.DataFrame, contact_id: str | None = None) -> Invoice:
    """The SDK model for one invoice's draft rows (send with unitdp=4: unit amounts may carry 4 decimals)."""
    rows = sorted(_records(draft_rows), key=lambda row: row["line_no"])
    if not rows:
        raise ValueError("to_xero_invoice needs the draft rows of one invoice, got none")
    head = rows[0]
    if len({row["autotask_invoice_id"] for row in rows}) != 1:
        raise ValueError("to_xero_invoice needs the draft rows of exactly one invoice")
    contact = Contact(contact_id=contact_id) if contact_id else Contact(contact_number=head["contact_number"])
    line_items = [
        LineItem(
            description=row["description"], quantity=row["quantity"], unit_amount=row["unit_amount"],
            account_code=row["account_code"], tax_type=row["tax_type"], line_amount=row["line_amount"],
            **({"tax_amount": row["tax_amount"]} if row["tax_amount"] is not None else {}),
        )
        for row in rows
    ]
    optional = {}
    if head["due_date"] is not None:
        optional["due_date"] = head["due_date"]
    if head["invoice_number"] is not None:
        optional["invoice_number"] = head["invoice_number"]
    if head["reference"] is not None:
        optional["reference"] = head["reference"]
    return Invoice(
        type="ACCREC", contact=contact, line_items=line_items, date=head["date"],
        line_amount_types=LineAmountTypes(head["line_amount_types"]), status=head["status"],
        currency_code=CurrencyCode(head["currency_code"]), **optional,
    )


def _cut(value, limit: int) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def to_xero_contact(company: dict, primary_contact: dict | None, *, currency_code: str | None = None,
                    country: str | None = None) -> Contact:
    """The Xero contact for an Autotask company, keyed by ContactNumber = the Autotask company id.

    The billing address is used when the company has one, else the company's own address. Autotask
    holds countries and currencies as ids, so the caller passes their names when it knows them.
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
        address = Address(
            address_type="POBOX", address_line1=_cut(line1, 500), address_line2=_cut(line2, 500),
            city=_cut(city, 255), region=_cut(region, 255), postal_code=_cut(postal_code, 50),
            country=_cut(country, 50), attention_to=_cut(company.get("billToAttention"), 255),
        )
    fields = {
        "contact_number": str(company["id"]),
        "name": _cut(company.get("companyName"), 255) or str(company["id"]),
        "tax_number": _cut(company.get("taxID"), 50),
        "is_customer": True,
    }
    if address is not None:
        fields["addresses"] = [address]
    if _text(company.get("phone")):
        fields["phones"] = [Phone(phone_type="DEFAULT", phone_number=_cut(company["phone"], 50))]
    if _text(company.get("webAddress")):
        fields["website"] = _text(company["webAddress"])
    if primary_contact:
        fields["first_name"] = _cut(primary_contact.get("firstName"), 255)
        fields["last_name"] = _cut(primary_contact.get("lastName"), 255)
        fields["email_address"] = _cut(primary_contact.get("emailAddress"), 255)
    if currency_code and currency_code.upper() in _KNOWN_CURRENCIES:
        fields["default_currency"] = CurrencyCode(currency_code.upper())
    return Contact(**{k: v for k, v in fields.items() if v is not None})

"""Invoices deliberately not sent: the mapping's `filters:` section as one pure function.

Each skipped invoice comes back with the rule that skipped it, so the run report lists it ("skipped
(under 5.00: filters.minimum_total)"); nothing is dropped silently and nothing skipped is sent.
Voided invoices are never filtered: a void must still reach a copy that is already in Xero.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import pandas as pd

from core.mapping import InvoiceFilters

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Filtered:
    """One invoice a filter keeps out of this run."""

    invoice_id: int
    number: str
    total: Decimal | None
    company: str
    detail: str      # the rule, shown after "skipped": "under 5.00: filters.minimum_total"
    fix: str


def _text(value) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _udf(company: dict, name: str) -> tuple[str, str | None]:
    """(the UDF's name as Autotask spells it, its value)."""
    for field in company.get("userDefinedFields") or []:
        if isinstance(field, dict) and str(field.get("name", "")).strip().casefold() == name.strip().casefold():
            return str(field["name"]), _text(field.get("value"))
    return name, None


def _labels(reference_data: dict, picklist: str) -> dict[str, str]:
    values = (reference_data.get("Picklists") or {}).get(picklist) or []
    return {str(v.get("value")): str(v.get("label")) for v in values
            if v.get("value") is not None and v.get("label") is not None}


def company_rule(company: dict, filters: InvoiceFilters, reference_data: dict) -> str | None:
    """The filter that marks this company "no sync", as the report shows it; None when none does."""
    udf = filters.no_sync_udf
    if udf is not None:
        name, value = _udf(company, udf.name)
        if value is not None and value.casefold() in {v.strip().casefold() for v in udf.values}:
            return f"company {company['id']} {name} is '{value}': filters.no_sync_udf"
    if filters.no_sync_classifications:
        classification = company.get("classification")
        if classification is not None and classification is not pd.NA:
            value = str(int(classification))
            label = _labels(reference_data, "Companies.classification").get(value)
            wanted = {w.strip().casefold() for w in filters.no_sync_classifications}
            if value in wanted or (label is not None and label.casefold() in wanted):
                shown = f"'{label}'" if label else value
                return f"company {company['id']} classification {shown}: filters.no_sync_classifications"
    return None


def under_minimum(total: Decimal, filters: InvoiceFilters) -> str | None:
    """The minimum-total rule when this total (a credit's made positive) is under it."""
    minimum = filters.minimum_total
    if minimum is None or abs(total) >= minimum:
        return None
    return f"under {minimum.quantize(CENT, rounding=ROUND_HALF_UP)}: filters.minimum_total"


def filter_invoices(invoices: pd.DataFrame, companies: pd.DataFrame, reference_data: dict,
                    filters: InvoiceFilters) -> list[Filtered]:
    """The invoices the filters keep out, each with its rule. Voided invoices are never filtered."""
    if not len(invoices) or not (filters.minimum_total is not None or filters.no_sync_udf
                                 or filters.no_sync_classifications):
        return []
    by_id = {int(c["id"]): c for c in companies.astype(object).to_dict("records")} if len(companies) else {}
    out = []
    for invoice in invoices.astype(object).to_dict("records"):
        if invoice.get("isVoided") is True:
            continue
        company = by_id.get(int(invoice["companyID"]))
        rule = company_rule(company, filters, reference_data) if company is not None else None
        if rule is not None:
            fix = "nothing to do; clear the company's flag in Autotask (or the rule in the mapping's filters) to send it"
        else:
            rule = under_minimum(Decimal(invoice["invoiceTotal"]), filters)
            fix = "nothing to do; lower filters.minimum_total in the mapping file to send it"
        if rule is None:
            continue
        out.append(Filtered(
            invoice_id=int(invoice["id"]), number=_text(invoice.get("invoiceNumber")) or str(invoice["id"]),
            total=Decimal(invoice["invoiceTotal"]), company=_text((company or {}).get("companyName")) or "",
            detail=rule, fix=fix))
    return out

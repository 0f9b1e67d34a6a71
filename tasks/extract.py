"""Extract: Autotask records for a window, in as few calls as the API allows.

Invoices by date window, their BillingItems with `in` batches (never one query per invoice), the
companies and contacts they name, and the small reference tables the mapping needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.invoices import PICKLIST_ENTITIES, companies_frame, invoices_frame, lines_frame

REFERENCE_ENTITIES = (
    "BillingCodes", "TaxCategories", "Taxes", "TaxRegions", "Currencies", "PaymentTerms", "InvoiceTemplates", "Products",
)
ALL_RECORDS = [{"op": "gte", "field": "id", "value": 0}]


@dataclass
class AutotaskExtract:
    invoices: pd.DataFrame
    lines: pd.DataFrame
    companies: pd.DataFrame
    contacts: list[dict]
    reference: dict[str, list[dict]]
    api_calls: int = 0
    rejected: list[tuple[dict, str]] = field(default_factory=list)
    # The Autotask zone's web address: links back to each invoice (Xero's Url, the marker by which a
    # document Xero numbered is found again after a lost answer).
    web_url: str | None = None


def _utc(d: date) -> str:
    return datetime.combine(d, time.min, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@task(name="extract-autotask-invoices", retries=3, retry_delay_seconds=[5, 30, 120], cache_policy=NONE)
def extract_invoices(ctx: TenantContext, since: date, until: date, revisit: list[int] | None = None) -> AutotaskExtract:
    """Reads are always safe to retry, so this task retries on any failure.

    `revisit`: ids of documents the ledger holds as not yet in Xero (set aside, or released after a
    lookup). They are read by id whatever their date, so a document dated before the window is still
    tried again on every run."""
    with ctx.autotask() as at:
        window = [
            {"op": "gte", "field": "invoiceDateTime", "value": _utc(since)},
            {"op": "lt", "field": "invoiceDateTime", "value": _utc(until + timedelta(days=1))},
        ]
        invoice_records = list(at.query("Invoices", window))
        # An invoice voided since the window began may be dated before it: read those too, so a void
        # reaches Xero whatever the invoice's date.
        seen = {r["id"] for r in invoice_records}
        voided = [{"op": "gte", "field": "voidedDate", "value": _utc(since)}, {"op": "eq", "field": "isVoided", "value": True}]
        invoice_records += [r for r in at.query("Invoices", voided) if r["id"] not in seen]
        seen = {r["id"] for r in invoice_records}
        again = [i for i in dict.fromkeys(revisit or []) if i not in seen]
        if again:
            invoice_records += [r for r in at.query_in("Invoices", "id", again) if r["id"] not in seen]
        invoice_ids = [r["id"] for r in invoice_records]
        line_records = list(at.query_in("BillingItems", "invoiceID", invoice_ids)) if invoice_ids else []
        company_ids = sorted({r["companyID"] for r in invoice_records if r.get("companyID") is not None})
        company_records = list(at.query_in("Companies", "id", company_ids)) if company_ids else []
        contacts = (
            list(at.query_in("Contacts", "companyID", company_ids, filter=[{"op": "eq", "field": "primaryContact", "value": True}]))
            if company_ids
            else []
        )
        reference = {entity: list(at.query(entity, ALL_RECORDS)) for entity in REFERENCE_ENTITIES}
        reference["Picklists"] = at.picklists_of(PICKLIST_ENTITIES)
        web_url = at.web_url  # from the zone lookup the client already made
        return AutotaskExtract(
            invoices=invoices_frame(invoice_records),
            lines=lines_frame(line_records),
            companies=companies_frame(company_records),
            contacts=contacts,
            reference=reference,
            api_calls=at.calls,
            web_url=web_url,
        )


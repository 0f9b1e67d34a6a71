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

from atx.connections import autotask_client
from atx.settings import load_tenant
from core.invoices import companies_frame, invoices_frame, lines_frame

REFERENCE_ENTITIES = ("BillingCodes", "TaxCategories", "Taxes", "TaxRegions", "Currencies", "PaymentTerms", "InvoiceTemplates")
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


def _utc(d: date) -> str:
    return datetime.combine(d, time.min, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@task(name="extract-autotask-invoices", retries=3, retry_delay_seconds=[5, 30, 120], cache_policy=NONE)
def extract_invoices(tenant: str, since: date, until: date) -> AutotaskExtract:
    """Reads are always safe to retry, so this task retries on any failure."""
    settings = load_tenant(tenant)
    with autotask_client(settings) as at:
        window = [
            {"op": "gte", "field": "invoiceDateTime", "value": _utc(since)},
            {"op": "lt", "field": "invoiceDateTime", "value": _utc(until + timedelta(days=1))},
        ]
        invoice_records = list(at.query("Invoices", window))
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
        return AutotaskExtract(
            invoices=invoices_frame(invoice_records),
            lines=lines_frame(line_records),
            companies=companies_frame(company_records),
            contacts=contacts,
            reference=reference,
            api_calls=at.calls,
        )

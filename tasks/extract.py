"""Extract: Autotask records for a window, in as few calls as the API allows.

Invoices by date window, their BillingItems with `in` batches (never one query per invoice), the
companies and contacts they name, and the small reference tables the mapping needs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core import windows
from core.frames import read_int
from core.invoices import PICKLIST_ENTITIES, companies_frame, invoices_frame, lines_frame
from tasks.sync import worth_retrying
from tasks.prefect_task import task

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
    return windows.timestamp(d)


def _not_seen(records, seen: set[int]) -> list[dict]:
    """Records whose id is not in `seen`; a record whose id cannot be read is kept (the frames report it)."""
    return [r for r in records if (i := read_int(r.get("id"))) is None or i not in seen]


def _ids(records, field: str) -> list[int]:
    """The distinct readable ids in `field`, for the follow-up queries (an unreadable one cannot be asked for)."""
    return [i for i in dict.fromkeys(read_int(r.get(field)) for r in records) if i is not None]


@task(name="extract-autotask-invoices", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def extract_invoices(ctx: TenantContext, since: date, until: date, revisit: list[int] | None = None,
                     bounded: bool = False) -> AutotaskExtract:
    """Reads are always safe to retry, so this task retries on any failure but an API limit or refused
    credentials (waiting would not cure them).

    `revisit`: ids of documents the ledger holds as not yet in Xero (set aside, or released after a
    lookup). They are read by id whatever their date, so a document dated before the window is still
    tried again on every run."""
    gte, lt = windows.autotask_range(since, until)  # the day after 9999-12-31 is capped, not overflowed
    with ctx.autotask() as at:
        dated = [{"op": "gte", "field": "invoiceDateTime", "value": gte},
                 {"op": "lt", "field": "invoiceDateTime", "value": lt}]
        # An invoice voided since the window began may be dated before it: it is read in the same query, so a
        # void reaches Xero whatever the invoice's date. A backfill chunk reads only the voids of its own days.
        voided = [{"op": "gte", "field": "voidedDate", "value": gte}, {"op": "eq", "field": "isVoided", "value": True},
                  *([{"op": "lt", "field": "voidedDate", "value": lt}] if bounded else [])]
        either = [{"op": "or", "items": [{"op": "and", "items": dated}, {"op": "and", "items": voided}]}]
        invoice_records = list(at.query("Invoices", either))
        seen = set(_ids(invoice_records, "id"))
        again = [i for i in dict.fromkeys(revisit or []) if i not in seen]
        if again:
            invoice_records += _not_seen(at.query_in("Invoices", "id", again), seen)
        invoice_ids = _ids(invoice_records, "id")
        line_records = list(at.query_in("BillingItems", "invoiceID", invoice_ids)) if invoice_ids else []
        company_ids = sorted(_ids(invoice_records, "companyID"))
        company_records = list(at.query_in("Companies", "id", company_ids)) if company_ids else []
        # The primary contacts; every contact of the companies when a company UDF names the billing contact.
        only_primary = [] if ctx.mapping.contacts.billing_contact_udf else [
            {"op": "eq", "field": "primaryContact", "value": True}]
        contacts = list(at.query_in("Contacts", "companyID", company_ids, filter=only_primary)) if company_ids else []
        reference = {entity: list(at.query(entity, ALL_RECORDS)) for entity in REFERENCE_ENTITIES}
        reference["Picklists"] = at.picklists_of(PICKLIST_ENTITIES)
        if ctx.mapping.line_presentation.time_entries:
            # The labour lines' time entries and who worked them, in `in` batches: never a query per line.
            entry_ids = _ids(line_records, "timeEntryID")
            reference["TimeEntries"] = list(at.query_in("TimeEntries", "id", entry_ids)) if entry_ids else []
            resource_ids = _ids(reference["TimeEntries"], "resourceID")
            reference["Resources"] = (list(at.query_in("Resources", "id", resource_ids,
                                                       include_fields=["id", "firstName", "lastName"]))
                                      if resource_ids else [])
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


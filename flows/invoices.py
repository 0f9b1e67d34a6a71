"""invoices: Autotask invoices and their BillingItems become Xero sales invoices (ACCREC), once each.

Negative Autotask invoices become credit notes (ACCRECCREDIT). Reading and planning are this flow's
own: extract the window, keep this tenant's invoices (routing), map them with the pure core. The rest
is the document pipeline (pipeline/flow.py) that every flow shares.
"""
from __future__ import annotations

import dataclasses
from datetime import date
from zoneinfo import ZoneInfo

from prefect import flow, get_run_logger, runtime
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.documents import CREDIT_NOTE, INVOICE, WRITE_BACK, DocumentPlan
from core.invoices import XeroReference, credit_ids, invoice_documents, plan_invoices, with_contact_tax
from core.items import assign_item_codes
from core.payments import local_date
from core.writeback import INVOICE_NUMBER, SyncedDocument, key_fields, plan_write_backs, with_original_numbers
from ledger import DocState
from pipeline import FlowSpec, Planned, run, run_name
from pipeline.parameters import DryRun, OnlyIds, OnlyWindow, Since, Tenant, Until
from tasks.extract import AutotaskExtract, extract_invoices
from tasks.filters import apply_filters
from tasks.items import ensure_items
from tasks.reference import read_xero_reference
from tasks.tenancy import route_invoices
from tasks.prefect_task import task


@task(name="map-invoices", cache_policy=NONE)
def map_invoices(ctx: TenantContext, extract: AutotaskExtract, xero: XeroReference) -> list[DocumentPlan]:
    """Pure mapping (core.invoices) wrapped for logging."""
    plan = plan_invoices(extract.invoices, extract.lines, extract.companies, extract.reference, ctx.mapping, xero,
                         autotask_web_url=extract.web_url)
    documents = invoice_documents(plan, credit_ids(extract.invoices))
    # Xero items on the lines (the mapping's items: section); missing ones are created, once, in a real run.
    items = assign_item_codes(documents, extract.lines, extract.reference, ctx.mapping.items)
    documents = items.plans
    if ctx.mapping.items.create_missing and not runtime.flow_run.parameters.get("dry_run", False):
        documents = ensure_items(ctx, documents, items.drafts)
    get_run_logger().info("mapped %d invoices for Xero; %d set aside",
                          sum(1 for d in documents if d.sendable), len(plan.set_aside))
    return documents


def read_and_plan(ctx: TenantContext, since: date, until: date, revisit: list[str], xero: XeroReference, *,
                  bounded: bool = False) -> Planned:
    extract = extract_invoices(ctx, since, until, [int(i) for i in revisit if i.isdigit()], bounded)
    routed = route_invoices(ctx, extract)  # only this tenant's invoices; the rest are reported
    kept = apply_filters(ctx, routed.extract)  # the mapping's filters: skipped invoices are reported, never sent
    extract = kept.extract
    # Invoices whose number this sync overwrote with Xero's are mapped with the number they had.
    extract = dataclasses.replace(extract, invoices=with_original_numbers(extract.invoices, numbers_written(ctx)))
    return Planned(
        plans=map_invoices(ctx, extract, xero), companies=extract.companies, contacts=extract.contacts,
        currencies=extract.reference.get("Currencies", []), outcomes=routed.outcomes + kept.outcomes,
        autotask_calls=extract.api_calls, other_tenants=routed.others,
    )


def _synced_rows(ctx: TenantContext) -> dict[str, object]:
    """Autotask invoice id -> the ledger's synced invoice or credit-note row."""
    rows = {}
    for kind in (INVOICE, CREDIT_NOTE):
        rows.update({i: r for i, r in ctx.ledger.records(ctx.tenant, kind.name).items() if r.state == DocState.SYNCED})
    return rows


def numbers_written(ctx: TenantContext) -> dict[str, tuple[str, str]]:
    """Autotask id -> (Xero's number this sync wrote into its invoiceNumber, the Autotask number it replaced)."""
    if not ctx.mapping.write_back.invoice_number:
        return {}
    written = [i for i, r in ctx.ledger.records(ctx.tenant, WRITE_BACK.name).items()
               if r.state == DocState.SYNCED and INVOICE_NUMBER in key_fields(r.natural_key or "")[1]]
    synced = _synced_rows(ctx)
    return {i: (synced[i].target_number, synced[i].source_number) for i in written
            if i in synced and synced[i].target_number and synced[i].source_number}


@task(name="plan-write-back", cache_policy=NONE)
def plan_write_back(ctx: TenantContext) -> list[DocumentPlan]:
    """Xero's numbers and the sync date for the synced invoices not written back to Autotask yet (mapping
    write_back), planned from the ledger once this run's invoices have their Xero numbers."""
    option = ctx.mapping.write_back
    if not option.enabled:
        return []
    done = {i for i, r in ctx.ledger.records(ctx.tenant, WRITE_BACK.name).items() if r.state == DocState.SYNCED}
    tz = ZoneInfo(ctx.settings.time_zone)
    synced = [SyncedDocument(autotask_id=i, autotask_number=r.source_number or i, xero_number=r.target_number,
                             synced_on=local_date(r.claimed_at or r.updated_at, tz))
              for i, r in sorted(_synced_rows(ctx).items()) if i not in done]
    plans = plan_write_backs(synced, invoice_number=option.invoice_number, web_service_date=option.web_service_date)
    get_run_logger().info("%d synced invoices to write back to Autotask", len(plans))
    return plans


def invoice_pdf(at, row) -> tuple[str, bytes]:
    return at.invoice_pdf(int(row.source_id))


@task(name="tax-from-contacts", cache_policy=NONE)
def tax_from_contacts(ctx: TenantContext, plans: list, contacts) -> list:
    """tax.from_contact: the Xero contacts' default sales taxes replace the mapped TaxTypes (pure, core.invoices)."""
    if not ctx.mapping.tax.from_contact:
        return plans
    return with_contact_tax(plans, contacts.sales_tax_types, read_xero_reference(ctx).tax_types)


INVOICES = FlowSpec(name="invoices", kinds=(INVOICE, CREDIT_NOTE), read_and_plan=read_and_plan, fetch_pdf=invoice_pdf,
                    follow_up=plan_write_back, follow_up_kinds=(WRITE_BACK,), after_contacts=tax_from_contacts)


@flow(name="invoices", flow_run_name=run_name, persist_result=False, log_prints=False)
def invoices(tenant: Tenant, since: Since = None, until: Until = None, dry_run: DryRun = False,
             only_window: OnlyWindow = False, only_ids: OnlyIds = None):
    """Sync one tenant's Autotask invoices dated in [since, until] into its Xero organisation.

    `only_window`: a backfill chunk (read only this window; the scheduled runs' high-water mark stays).
    `only_ids`: only these Autotask invoices, whatever their date (`atx ledger resend`)."""
    return run(INVOICES, tenant, since, until, dry_run, only_window, only_ids)

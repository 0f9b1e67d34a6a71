"""invoices: Autotask invoices and their BillingItems become Xero sales invoices (ACCREC), once each.

Negative Autotask invoices become credit notes (ACCRECCREDIT). Reading and planning are this flow's
own: extract the window, keep this tenant's invoices (routing), map them with the pure core. The rest
is the document pipeline (pipeline/flow.py) that every flow shares.
"""
from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.documents import CREDIT_NOTE, INVOICE, DocumentPlan
from core.invoices import XeroReference, credit_ids, invoice_documents, plan_invoices
from core.items import assign_item_codes
from pipeline import FlowSpec, Planned, run, run_name
from tasks.extract import AutotaskExtract, extract_invoices
from tasks.filters import apply_filters
from tasks.items import ensure_items
from tasks.tenancy import route_invoices


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
    return Planned(
        plans=map_invoices(ctx, extract, xero), companies=extract.companies, contacts=extract.contacts,
        currencies=extract.reference.get("Currencies", []), outcomes=routed.outcomes + kept.outcomes,
        autotask_calls=extract.api_calls,
    )


def invoice_pdf(at, row) -> tuple[str, bytes]:
    return at.invoice_pdf(int(row.source_id))


INVOICES = FlowSpec(name="invoices", kinds=(INVOICE, CREDIT_NOTE), read_and_plan=read_and_plan, fetch_pdf=invoice_pdf)


@flow(name="invoices", flow_run_name=run_name, persist_result=False, log_prints=False)
def invoices(tenant: str, since: date | None = None, until: date | None = None, dry_run: bool = False,
             only_window: bool = False):
    """Sync one tenant's Autotask invoices dated in [since, until] into its Xero organisation.

    `only_window`: a backfill chunk (read only this window; the scheduled runs' high-water mark stays)."""
    return run(INVOICES, tenant, since, until, dry_run, only_window)

"""bills: Autotask purchase orders become Xero bills (ACCPAY) from their receivings, or Xero purchase orders.

The tenant's mapping chooses (`bills.target`). Reading and planning are this flow's own; the rest is
the document pipeline (pipeline/flow.py) that every flow shares.
"""
from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.bills import plan_bills, plan_purchase_orders
from core.documents import BILL, PURCHASE_ORDER, DocumentPlan
from core.invoices import XeroReference
from pipeline import FlowSpec, Planned, run, run_name
from pipeline.parameters import DryRun, OnlyIds, OnlyWindow, Since, Tenant, Until
from tasks.extract_purchasing import PurchasingExtract, read_for_bills, read_for_purchase_orders
from tasks.sync import worth_retrying
from tasks.prefect_task import task


def _target(ctx: TenantContext) -> str:
    return ctx.mapping.bills.target


@task(name="extract-autotask-purchasing", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def extract_purchasing(ctx: TenantContext, since: date, until: date, revisit: list[str],
                       bounded: bool = False) -> PurchasingExtract:
    """Reads are always safe to retry. `revisit`: the ledger's unfinished documents, read whatever their date."""
    read = read_for_bills if _target(ctx) == "bill" else read_for_purchase_orders
    with ctx.autotask() as at:
        return read(at, since, until, revisit, bounded)


@task(name="map-purchasing", cache_policy=NONE)
def map_purchasing(ctx: TenantContext, extract: PurchasingExtract, xero: XeroReference) -> list[DocumentPlan]:
    """Pure mapping (core.bills) wrapped for logging."""
    if _target(ctx) == "bill":
        plans = plan_bills(extract.purchase_orders, extract.items, extract.receivings, extract.vendors,
                           extract.reference, ctx.mapping, xero, autotask_web_url=extract.web_url,
                           other_receivings=extract.other_receivings, rejected=extract.rejected)
    else:
        plans = plan_purchase_orders(extract.purchase_orders, extract.items, extract.vendors, extract.reference,
                                     ctx.mapping, xero, autotask_web_url=extract.web_url, rejected=extract.rejected)
    get_run_logger().info("mapped %d %ss for Xero; %d set aside", sum(1 for p in plans if p.sendable),
                          "bill" if _target(ctx) == "bill" else "purchase order",
                          sum(1 for p in plans if p.set_aside is not None))
    return plans


@task(name="retire-superseded-receivings", cache_policy=NONE)
def retire_superseded(ctx: TenantContext, plans: list[DocumentPlan]) -> None:
    """A receiving set aside for lacking a vendor invoice number is, once the number is filled in, a
    line of its bill: its own set-aside row would otherwise be read again on every run."""
    lines = {line.source_line_id for p in plans if p.kind == BILL.name and p.set_aside is None for line in p.lines}
    superseded = sorted(i for i in lines if i and i.startswith("receiving:"))
    if superseded:
        ctx.ledger.forget_set_aside(ctx.tenant, BILL.name, superseded)


def read_and_plan(ctx: TenantContext, since: date, until: date, revisit: list[str], xero: XeroReference, *,
                  bounded: bool = False) -> Planned:
    extract = extract_purchasing(ctx, since, until, revisit, bounded)
    plans = map_purchasing(ctx, extract, xero)
    return Planned(plans=plans, companies=extract.vendors, currencies=extract.reference.get("Currencies", []),
                   autotask_calls=extract.api_calls, supplier=True)


BILLS = FlowSpec(name="bills", kinds=(BILL, PURCHASE_ORDER), read_and_plan=read_and_plan, before_send=retire_superseded)


@flow(name="bills", flow_run_name=run_name, persist_result=False, log_prints=False)
def bills(tenant: Tenant, since: Since = None, until: Until = None, dry_run: DryRun = False,
          only_window: OnlyWindow = False, only_ids: OnlyIds = None):
    """Sync one tenant's Autotask purchasing received (bills) or raised (purchase orders) in [since, until].

    `only_window`: a backfill chunk (read only this window; the scheduled runs' high-water mark stays).
    `only_ids`: only these documents (their ledger ids: "201:VI-1" for a vendor's invoice, "receiving:7"), whatever their date."""
    return run(BILLS, tenant, since, until, dry_run, only_window, only_ids)

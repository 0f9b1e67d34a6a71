"""payments: Xero's settlements written back to Autotask as paid dates, and (when the tenant enables it)
Autotask's paid dates applied in Xero as payments.

Reading and planning are this flow's own (tasks/extract_payments.py, core/payments.py); claiming,
sending, recording and resolving lost answers are the document pipeline's, for both directions.
Scheduled like the other flows, and also run by Xero's webhooks when the tenant enables them (an
INVOICE UPDATE event, debounced: see deployments/generate.py).
"""
from __future__ import annotations

from datetime import date
from functools import partial
from zoneinfo import ZoneInfo

import pandas as pd
from prefect import flow, get_run_logger
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.documents import PAID_DATE, PAYMENT, DocumentPlan
from core.invoices import XeroReference
from core.payments import Remark, plan_paid_dates, plan_payments
from pipeline import FlowSpec, Planned, run, run_name
from pipeline.parameters import Direction, DryRun, OnlyWindow, PaymentsDirection, Reason, Since, Tenant, Until
from tasks.extract_payments import read_paid_invoices, read_settlements
from tasks.outcomes import Outcome, Result
from tasks.prefect_task import task


def remark_outcome(remark: Remark) -> Outcome:
    return Outcome(kind=remark.kind, source_id=remark.source_id, source_number=remark.source_number,
                   result=Result(remark.result), xero_id=remark.xero_id, xero_number=remark.xero_number,
                   xero_total=remark.xero_total, reason=remark.reason, fix=remark.fix)


@task(name="plan-paid-dates", cache_policy=NONE)
def paid_dates_for_autotask(ctx: TenantContext, since: date, until: date, revisit: list[str],
                            bounded: bool) -> tuple[list[DocumentPlan], list[Remark]]:
    settlements = read_settlements(ctx, since, until, revisit, dated_in_window=bounded)
    plans, remarks = plan_paid_dates(settlements.invoices, settlements.synced, settlements.written,
                                     settlements.our_payments, clear=ctx.settings.payments.clear_paid_date,
                                     tz=ZoneInfo(ctx.settings.time_zone))
    get_run_logger().info("%d synced invoices changed in Xero: %d paid dates to write or clear, %d listed",
                          len(settlements.synced), len(plans), len(remarks))
    return plans, remarks


@task(name="plan-payments", cache_policy=NONE)
def payments_for_xero(ctx: TenantContext, since: date, until: date, revisit: list[str],
                      xero: XeroReference) -> tuple[list[DocumentPlan], list[Remark], int]:
    found = read_paid_invoices(ctx, since, until, revisit)
    bank = ctx.settings.payments.bank_account
    plans, remarks = plan_payments(found.paid, found.in_xero, found.written,
                                   account_id=xero.payment_account(bank) if bank else None, account_name=bank)
    get_run_logger().info("%d invoices marked paid in Autotask: %d payments planned, %d listed",
                          len(found.paid), len(plans), len(remarks))
    return plans, remarks, found.autotask_calls


def _read_and_plan(ctx: TenantContext, since: date, until: date, revisit: list[str], xero: XeroReference, *,
                   direction: Direction, bounded: bool = False) -> Planned:
    settings = ctx.settings.payments
    plans: list[DocumentPlan] = []
    remarks: list[Remark] = []
    calls = 0
    if direction in ("both", "to_autotask") and settings.to_autotask:
        more, noted = paid_dates_for_autotask(ctx, since, until, revisit, bounded)
        plans, remarks = plans + more, remarks + noted
    if direction in ("both", "to_xero") and settings.to_xero:
        more, noted, calls = payments_for_xero(ctx, since, until, revisit, xero)
        plans, remarks = plans + more, remarks + noted
    return Planned(plans=plans, companies=pd.DataFrame(), outcomes=[remark_outcome(r) for r in remarks],
                   autotask_calls=calls)


def spec(direction: Direction) -> FlowSpec:
    """One spec per direction, each with its own high-water mark: a run one way never moves the other's."""
    return FlowSpec(name="payments", kinds=(PAID_DATE, PAYMENT), read_and_plan=partial(_read_and_plan, direction=direction),
                    high_water_key="payments" if direction == "both" else f"payments:{direction}")


@flow(name="payments", flow_run_name=run_name, persist_result=False, log_prints=False)
def payments(tenant: Tenant, since: Since = None, until: Until = None, dry_run: DryRun = False,
             direction: PaymentsDirection = "both", reason: Reason = None, only_window: OnlyWindow = False):
    """Sync one tenant's payments: Xero → Autotask paid dates and, when enabled, Autotask → Xero payments.

    `reason`: why the run happened, when a Xero webhook started it (shown in the log). `only_window`: a
    backfill chunk: the settlements of invoices dated in the window, not everything changed since it began."""
    if reason:
        get_run_logger().info("started by %s", reason)
    return run(spec(direction), tenant, since, until, dry_run, only_window)

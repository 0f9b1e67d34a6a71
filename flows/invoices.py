"""invoices: Autotask invoices and their BillingItems become Xero sales invoices (ACCREC), once each.

The flow only composes tasks: extract from Autotask, map with the tenant's mapping (pure core),
resolve answers a previous run never got, ensure contacts, load invoices in batches of 50, report.
"""
from __future__ import annotations

from datetime import date

import pandas as pd
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed

from atx.connections import ledger_for, xero_gateway
from atx.settings import load_tenant
from core import windows
from core.frames import read_int
from core.invoices import InvoicePlan, SetAside, XeroReference, plan_invoices
from core.mapping import load_mapping
from tasks.extract import AutotaskExtract, extract_invoices
from clients.xero import XeroRateLimited
from tasks.load import (
    BATCH_SIZE,
    DEFERRED,
    DOC_CREDIT_NOTE,
    DOC_INVOICE,
    InvoiceOutcome,
    apply_voids,
    attach_pdfs,
    deferred_outcome,
    load_invoice_batch,
    read_xero_reference,
    resolve_unanswered,
    sync_contacts,
)
from tasks.report import RunSummary, publish_report
from tasks.tenancy import preflight, route_invoices


def _run_name() -> str:
    p = runtime.flow_run.parameters
    since, until = p.get("since"), p.get("until")
    window = f"{since or 'last run'}..{until or 'today'}"
    return f"invoices · {p['tenant']} · {window}"


@task(name="choose-window", cache_policy=NONE)
def choose_window(tenant: str, since: date | None, until: date | None) -> tuple[date, date]:
    """Parameters win; otherwise pick up where the last completed run ended, with an overlap."""
    settings = load_tenant(tenant)
    until = until or date.today()
    if since is None:
        high_water = ledger_for(settings).high_water(tenant, DOC_INVOICE)
        since = windows.default_since(until, high_water, settings.lookback_days, settings.first_sync_days, date.today())
    return windows.check_window(since, until)  # WindowError (a ValueError) when it starts after it ends


@task(name="map-invoices", cache_policy=NONE)
def map_invoices(tenant: str, extract: AutotaskExtract, xero: XeroReference) -> InvoicePlan:
    """Pure mapping (core.invoices.plan_invoices) wrapped for logging."""
    settings = load_tenant(tenant)
    mapping = load_mapping(settings.mapping_path())
    plan = plan_invoices(extract.invoices, extract.lines, extract.companies, extract.reference, mapping, xero,
                         autotask_web_url=getattr(extract, "web_url", None))
    get_run_logger().info(
        "mapped %d invoices for Xero; %d set aside",
        plan.drafts["autotask_invoice_id"].nunique() if len(plan.drafts) else 0,
        len(plan.set_aside),
    )
    return plan


@task(name="record-set-aside", cache_policy=NONE)
def record_set_aside(tenant: str, set_aside: list[SetAside], credits: frozenset[int] = frozenset()) -> None:
    """Documents the mapping refused are kept in the ledger with the reason and retried next run.

    `credits`: ids of Autotask invoices with a negative total, which are credit notes in Xero; their rows
    are recorded as credit notes (core's SetAside does not say which type a document is)."""
    ledger = ledger_for(load_tenant(tenant))
    logger = get_run_logger()
    for s in set_aside:
        doc_type = DOC_CREDIT_NOTE if int(s.autotask_id) in credits else DOC_INVOICE
        if not ledger.set_aside(tenant, doc_type, s.autotask_id, autotask_number=s.autotask_number, reason=s.reason, fix=s.fix):
            # Synced, voided, or `sending` (in flight, or awaiting a lookup after a lost answer): the row
            # keeps its state, so nothing can be sent again without that lookup.
            logger.warning("%s cannot be sent as it is (%s), but the ledger shows it in Xero or in flight: left as it is",
                           s.autotask_number, s.reason)
            continue
        logger.warning("set aside %s: %s (fix: %s)", s.autotask_number, s.reason, s.fix)


def _credits(extract: AutotaskExtract) -> frozenset[int]:
    """Autotask invoices with a negative total (credit notes in Xero), rejected records included."""
    from decimal import Decimal, InvalidOperation

    from core.invoices import _REJECTED_INVOICES

    records = extract.invoices[["id", "invoiceTotal"]].to_dict("records") if len(extract.invoices) else []
    records += [r.record for r in extract.invoices.attrs.get(_REJECTED_INVOICES, [])]
    found = set()
    for r in records:
        invoice_id = read_int(r.get("id"))  # as the frames read it: never int(inf), nor 1.5 as invoice 1
        try:
            if invoice_id is not None and Decimal(str(r.get("invoiceTotal"))) < 0:
                found.add(invoice_id)
        except (InvalidOperation, TypeError, ValueError):
            continue
    return frozenset(found)


@task(name="advance-high-water", cache_policy=NONE)
def advance_high_water(tenant: str, until: date) -> None:
    ledger_for(load_tenant(tenant)).advance_high_water(tenant, DOC_INVOICE, windows.high_water_mark(until, date.today()))


def _label_run(name: str, tenant: str) -> None:
    """Name the run after its real window and tag it with the tenant, however it was started."""
    from prefect.client.orchestration import get_client

    tags = sorted(set(runtime.flow_run.tags) | {f"tenant:{tenant}"})
    with get_client(sync_client=True) as client:
        client.update_flow_run(runtime.flow_run.id, name=name, tags=tags)


def _skipped(plan: InvoicePlan, extract: AutotaskExtract) -> list[InvoiceOutcome]:
    totals = dict(zip(extract.invoices["id"], extract.invoices["invoiceTotal"])) if len(extract.invoices) else {}
    return [
        InvoiceOutcome(
            autotask_id=s.autotask_id,
            autotask_number=s.autotask_number,
            contact="",
            currency="",
            autotask_total=totals.get(s.autotask_id, 0),
            action=f"skipped ({s.reason})",
        )
        for s in plan.skipped
    ]


def _planned(plan: InvoicePlan) -> list[InvoiceOutcome]:
    return [
        InvoiceOutcome(
            autotask_id=int(k),
            autotask_number=str(g["autotask_number"].iloc[0]),
            contact=str(g["contact_name"].iloc[0]),
            currency=str(g["currency_code"].iloc[0]),
            autotask_total=g["autotask_total"].iloc[0],
            action="planned (dry run)",
            xero_number=g["invoice_number"].iloc[0],
        )
        for k, g in plan.drafts.groupby("autotask_invoice_id", sort=False)
    ]


@flow(name="invoices", flow_run_name=_run_name, persist_result=False, log_prints=False)
def invoices(tenant: str, since: date | None = None, until: date | None = None, dry_run: bool = False):
    """Sync one tenant's Autotask invoices dated in [since, until] into its Xero organisation."""
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id)
    since, until = choose_window(tenant, since, until)
    _label_run(f"invoices · {tenant} · {since}..{until}" + (" · dry run" if dry_run else ""), tenant)
    summary = RunSummary(tenant=tenant, since=since, until=until, dry_run=dry_run)
    # The gateway is shared by every task of this process; count only this run's calls.
    xero_calls_before = xero_gateway(load_tenant(tenant)).calls

    preflight(tenant)  # stops the run before any write when credentials or mapped Xero names are wrong
    stopped: str | None = None  # why the run stopped sending early (Xero's API limit)
    revisit: list[int] = []
    if not dry_run:
        try:
            # Answers a dead run never got are looked up first, so documents found missing are read again below.
            resolve_unanswered(tenant, run_id)
        except XeroRateLimited as exc:
            stopped = str(exc)
        revisit = ledger_for(load_tenant(tenant)).unfinished(tenant, (DOC_INVOICE, DOC_CREDIT_NOTE))
    extract = extract_invoices(tenant, since, until, revisit)
    routed = route_invoices(tenant, extract)  # only this tenant's invoices; the rest are reported
    extract = routed.extract
    summary.outcomes += routed.outcomes
    summary.autotask_calls = extract.api_calls
    reference = read_xero_reference(tenant)
    plan = map_invoices(tenant, extract, reference)
    summary.set_aside = list(plan.set_aside)
    summary.outcomes += _skipped(plan, extract)

    if dry_run:
        summary.outcomes = _planned(plan)
    else:
        credits = _credits(extract)
        record_set_aside(tenant, plan.set_aside, credits)
        done: set[int] = set()  # documents this run has dealt with (sent, found, set aside, ...)
        try:
            if stopped:
                raise XeroRateLimited("day", None, stopped)
            voids = apply_voids(tenant, run_id, plan.skipped)  # voided in Autotask after reaching Xero
            summary.outcomes = [o for o in summary.outcomes if o.autotask_id not in voids] + list(voids.values())
            company_ids = sorted({int(n) for n in plan.drafts["contact_number"]}) if len(plan.drafts) else []
            contacts = sync_contacts(
                tenant, extract.companies, extract.contacts, company_ids, extract.reference.get("Currencies", [])
            )
            drafts = _without_failed_contacts(plan.drafts, contacts["failed"], summary, credits)
            done |= set(plan.drafts["autotask_invoice_id"].astype(int)) - set(drafts["autotask_invoice_id"].astype(int)) \
                if len(plan.drafts) else set()
            invoice_ids = list(dict.fromkeys(drafts["autotask_invoice_id"])) if len(drafts) else []
            progress = create_progress_artifact(progress=0.0, description=f"Invoices into Xero for {tenant}")
            for start in range(0, len(invoice_ids), BATCH_SIZE):
                batch_ids = set(invoice_ids[start : start + BATCH_SIZE])
                batch = drafts[drafts["autotask_invoice_id"].isin(batch_ids)]
                outcomes = load_invoice_batch(tenant, run_id, batch, contacts["ids"])
                deferred = [o for o in outcomes if o.action.startswith(DEFERRED)]
                summary.outcomes += outcomes
                done |= {int(i) for i in batch_ids}
                update_progress_artifact(progress, progress=100.0 * min(start + BATCH_SIZE, len(invoice_ids)) / len(invoice_ids))
                if deferred:
                    stopped = deferred[0].reason
                    break
            if not invoice_ids:
                update_progress_artifact(progress, progress=100.0)
            if not stopped:
                summary.attach_failures = attach_pdfs(tenant)
        except XeroRateLimited as exc:
            stopped = str(exc)
        if stopped:
            # Nothing is lost: what was sent is recorded; the rest has no claim (or a `sending` row that the
            # next run looks up first), and the window stays where it was, so the next run picks it all up.
            for k, g in (plan.drafts.groupby("autotask_invoice_id", sort=False) if len(plan.drafts) else []):
                if int(k) not in done:
                    summary.outcomes.append(deferred_outcome(int(k), g, stopped))
            get_run_logger().warning("stopped early, the high-water mark is not moved: %s", stopped)
        else:
            advance_high_water(tenant, until)

    summary.xero_calls = xero_gateway(load_tenant(tenant)).calls - xero_calls_before
    publish_report(summary)
    message = (
        f"{summary.count('created')} created, {summary.count('already in Xero')} already in Xero, "
        f"{summary.set_aside_count} set aside"
    )
    logger.info(message)
    if stopped:
        left = summary.count(DEFERRED)
        return Completed(
            message=f"stopped early, {left} documents left for the next run: {stopped}; {message}", data=summary
        )
    if summary.set_aside_count:
        return Completed(message=f"completed with {summary.set_aside_count} set aside", data=summary)
    return Completed(message=message, data=summary)


def _without_failed_contacts(drafts: pd.DataFrame, failed: dict[int, str], summary: RunSummary,
                             credits: frozenset[int] = frozenset()) -> pd.DataFrame:
    """An invoice whose contact could not be made in Xero is set aside, not sent."""
    if not failed or not len(drafts):
        return drafts
    bad = drafts["contact_number"].astype(int).isin(failed)
    refused = []
    for k, g in drafts[bad].groupby("autotask_invoice_id", sort=False):
        company = int(g["contact_number"].iloc[0])
        refused.append(
            SetAside(
                autotask_id=int(k),
                autotask_number=str(g["autotask_number"].iloc[0]),
                reason=f"the Xero contact for company {company} could not be created: {failed[company]}",
                fix="fix the company in Autotask (name, tax number, currency) or the contact in Xero, then rerun",
            )
        )
    record_set_aside(summary.tenant, refused, credits)
    summary.set_aside += refused
    return drafts[~bad]

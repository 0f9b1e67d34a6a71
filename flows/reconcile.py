"""reconcile: compare a window's documents in Autotask, the ledger and Xero; report each one missing,
duplicated or different in Xero, or in Xero but not in the ledger, with the fix. With `repair`, do what the
pipeline would do and nothing else: record the documents found, release the missing ones, and run the
flow for the window so they are sent again through `sync_documents`.

Autotask is read with the flows' own reading and planning (flows/invoices.py, flows/bills.py), so what is
expected of Xero is what the sync would send. The comparison is pure (core/reconcile.py); the reading and
the ledger writes are tasks/reconcile.py's.
"""
from __future__ import annotations

import dataclasses
from datetime import date, timedelta

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.states import Completed

from atx.context import TenantContext, open_tenant
from core import windows
from core.documents import KINDS, DocumentPlan, TargetLimitReached
from core.reconcile import Repair, reconcile as compare, reconcile_recorded
from flows.bills import BILLS, bills
from flows.invoices import INVOICES, invoices
from tasks.reconcile import (
    KIND_FLOWS, Checked, ReconcileSummary, default_kinds, note_flow_outcomes, publish_reconcile_report,
    read_contact_ids, read_ledger, read_ledger_window, read_xero, recorded_reads, repair_ledger, xero_reads,
)
from tasks.reference import read_xero_reference

# The flows whose planning names every document of their kinds, with their specs (whose reading and
# planning reconcile reuses) and the flow --repair runs; payments are expected by the ledger's rows alone.
_SPECS = {"invoices": INVOICES, "bills": BILLS}
_FLOWS = {"invoices": invoices, "bills": bills}
_PLANNED = tuple(_SPECS)


def reconcile_run_name() -> str:
    p = runtime.flow_run.parameters
    window = f"{p.get('since') or 'default'}..{p.get('until') or 'today'}"
    return f"reconcile · {p['tenant']} · {window}" + (" · repair" if p.get("repair") else "")


def check_kinds(kinds: list[str]) -> list[str]:
    unknown = [k for k in kinds if k not in KIND_FLOWS]
    if unknown:
        raise ValueError(f"cannot reconcile {', '.join(unknown)}: the kinds are {', '.join(KIND_FLOWS)}")
    return list(dict.fromkeys(kinds))


@flow(name="reconcile", flow_run_name=reconcile_run_name, persist_result=False, log_prints=False)
def reconcile(tenant: str, since: date | None = None, until: date | None = None, kinds: list[str] | None = None,
              repair: bool = False):
    """Compare one tenant's documents dated in [since, until] (default: the `first_sync_days` up to today)
    in Autotask, the ledger and Xero. Writes nothing unless `repair`."""
    ctx = open_tenant(tenant, str(runtime.flow_run.id))
    until = until or date.today()
    since, until = windows.check_window(since or until - timedelta(days=ctx.settings.first_sync_days), until)
    kinds = check_kinds(kinds or default_kinds(ctx))
    summary = ReconcileSummary(tenant=tenant, since=since, until=until, kinds=kinds, repair=repair)
    progress = create_progress_artifact(progress=0.0, description=f"Reconciling {tenant}, {since}..{until}")
    calls_before = ctx.xero.calls
    try:
        ctx.xero.check_call_budget()
        plans = _compare(ctx, summary, progress)
        if repair and summary.checked:
            _repair(ctx, summary, plans)
    except TargetLimitReached as exc:
        summary.stopped = str(exc)
    finally:
        ctx.xero.settle_calls()  # calls taken from the day's budget and not made go back to it
    summary.xero_calls = ctx.xero.calls - calls_before
    update_progress_artifact(progress, progress=100.0)
    publish_reconcile_report(summary)
    get_run_logger().info(summary.message)
    return Completed(message=summary.message, data=summary)


def _reading(ctx: TenantContext) -> TenantContext:
    """The context the planning reads with: it creates no Xero items (items.create_missing is a real run's
    write). Item codes are assigned all the same, so the plans and their hashes are the sync's."""
    items = ctx.mapping.items.model_copy(update={"create_missing": False})
    return dataclasses.replace(ctx, mapping=ctx.mapping.model_copy(update={"items": items}))


def _compare(ctx: TenantContext, summary: ReconcileSummary, progress) -> dict[tuple[str, str], DocumentPlan]:
    logger = get_run_logger()
    since, until = summary.since, summary.until
    wanted = [f for f in _PLANNED if any(KIND_FLOWS[k] == f for k in summary.kinds)]
    plans: dict[str, list[DocumentPlan]] = {}
    if wanted:
        reference = read_xero_reference(ctx)
        for step, flow_name in enumerate(wanted, start=1):
            planned = _SPECS[flow_name].read_and_plan(_reading(ctx), since, until, [], reference, bounded=True)
            summary.autotask_calls += planned.autotask_calls
            for kind in summary.kinds:
                if KIND_FLOWS[kind] == flow_name:
                    plans[kind] = [p for p in planned.plans if p.kind == kind]
            update_progress_artifact(progress, progress=30.0 * step / len(wanted))

    # Everything Xero is asked, known before the first call, so the progress bar moves with each one.
    work: list[tuple[str, list, dict, dict, list]] = []
    for kind_name in summary.kinds:
        kind = KINDS[kind_name]
        if kind_name in plans:
            mine = plans[kind_name]
            rows = read_ledger(ctx, kind_name, [p.source_id for p in mine])
            contact_ids = read_contact_ids(ctx, mine)
            work.append((kind_name, mine, rows, contact_ids, xero_reads(ctx, kind, mine, rows.values(), contact_ids)))
        else:
            rows = read_ledger_window(ctx, kind_name, since, until)
            work.append((kind_name, [], {r.source_id: r for r in rows}, {}, recorded_reads(ctx, kind, rows)))
    total = max(sum(len(w[4]) for w in work), 1)
    done = 0

    def on_read() -> None:
        nonlocal done
        done += 1
        update_progress_artifact(progress, progress=30.0 + 65.0 * done / total)

    for kind_name, mine, rows, contact_ids, reads in work:
        held = read_xero(reads, on_read)
        kind = KINDS[kind_name]
        result = (compare(kind, mine, rows, held, contact_ids) if kind_name in plans
                  else reconcile_recorded(kind, list(rows.values()), held))
        summary.checked += [Checked(f) for f in result.findings]
        summary.compared += result.compared
        summary.set_aside += result.set_aside
        summary.in_flight += result.in_flight
        logger.info("%ss: %d compared, %d findings", kind.noun, result.compared, len(result.findings))
    for c in summary.checked:
        f = c.finding
        logger.warning("%s %s %s (%s): expected %s, Xero %s; fix: %s", KINDS[f.kind].noun, f.source_number,
                       f.problem.value, f.what, f.expected, f.found, f.fix)
    return {(p.kind, p.source_id): p for mine in plans.values() for p in mine}


def _repair(ctx: TenantContext, summary: ReconcileSummary, plans: dict[tuple[str, str], DocumentPlan]) -> None:
    """Record and release in the ledger, then run each flow concerned over the window, as a backfill chunk
    does: it reads only its own days and leaves the scheduled runs' high-water mark where it is."""
    repair_ledger(ctx, summary.checked, plans)
    needed = {KIND_FLOWS[c.finding.kind] for c in summary.checked if c.finding.repair == Repair.RUN or c.released}
    for flow_name in [f for f in _PLANNED if f in needed]:
        state = _FLOWS[flow_name](tenant=summary.tenant, since=summary.since, until=summary.until, dry_run=False,
                                    only_window=True, return_state=True)
        if state.is_completed():
            note_flow_outcomes(summary.checked, flow_name, state.result().outcomes, None)
            summary.runs.append(f"{flow_name} {summary.since}..{summary.until}: {state.message}")
        else:
            note_flow_outcomes(summary.checked, flow_name, None, state.message or state.name)
            summary.runs.append(f"{flow_name} {summary.since}..{summary.until} ended {state.name}: {state.message}")


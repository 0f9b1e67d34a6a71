"""reconcile: compare a window's documents in Autotask, the ledger and Xero; report each one missing,
duplicated or different in Xero, or in Xero but not in the ledger, with the fix. With `repair`, do what the
pipeline would do and nothing else: record the documents found, release the missing ones, and run the
flow for the window so they are sent again through `sync_documents`.

Autotask is read with the flows' own reading and planning (flows/invoices.py, flows/bills.py), so what is
expected of Xero is what the sync would send. The comparison is pure (core/reconcile.py); the reading and
the ledger writes are tasks/reconcile.py's.
"""
from __future__ import annotations

from datetime import date, timedelta

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.states import Completed

from atx.context import TenantContext, open_tenant
from core import windows
from core.documents import DocumentPlan, TargetLimitReached
from core.reconcile import Repair
from flows.bills import BILLS, bills
from flows.invoices import INVOICES, invoices
from tasks.reconcile import (
    KIND_FLOWS, ReconcileSummary, compare_window, default_kinds, note_flow_outcomes, publish_reconcile_report,
    repair_ledger,
)

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
        plans = compare_window(ctx, summary, progress, _SPECS)
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


"""backfill: any historical window, chunk by chunk, oldest first, through the same document flows.

The body is `pipeline.backfill.run_backfill`; this module names the flow and the document flows it runs.
"""
from __future__ import annotations

from prefect import flow, runtime

from flows.bills import bills
from flows.invoices import invoices
from flows.payments import payments
from pipeline.backfill import DOCUMENT_TYPES, Backfill, run_backfill

FLOWS = dict(zip(DOCUMENT_TYPES, (invoices, bills, payments)))

__all__ = ["Backfill", "FLOWS", "backfill"]


def backfill_run_name() -> str:
    request = runtime.flow_run.parameters.get("request") or {}
    value = request if isinstance(request, dict) else request.model_dump()
    return f"backfill · {value.get('tenant')} · {value.get('start')}..{value.get('end')}"


@flow(name="backfill", flow_run_name=backfill_run_name, persist_result=False, log_prints=False)
def backfill(request: Backfill):
    """Sync a tenant's history, chunk by chunk, oldest first; resumable, within the API budgets."""
    return run_backfill(request, FLOWS)

"""Count what a backfill will read (Autotask's query/count: one cheap call per chunk and document type),
and estimate and publish its cost before it writes anything."""
from __future__ import annotations

from datetime import date

from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core import windows
from core.estimate import ChunkCount, Estimate, estimate, estimate_markdown
from tasks.prefect_task import task


def _range(field: str, start: date, end: date) -> list[dict]:
    gte, lt = windows.autotask_range(start, end)
    return [{"op": "gte", "field": field, "value": gte}, {"op": "lt", "field": field, "value": lt}]


# What each document type's runs read, counted by the field its window is on.
def _counted(ctx: TenantContext, document_type: str) -> tuple[str, str]:
    if document_type == "bills":
        return ("PurchaseOrderItemReceiving", "receiveDate") if ctx.mapping.bills.target == "bill" \
            else ("PurchaseOrders", "createDateTime")
    return "Invoices", "invoiceDateTime"  # invoices, and the payments of the invoices dated in the chunk


@task(name="estimate-backfill", retries=3, retry_delay_seconds=[5, 30, 120], cache_policy=NONE)
def estimate_backfill(ctx: TenantContext, document_types: list[str], chunks: list[tuple[date, date]]) -> Estimate:
    counts: list[ChunkCount] = []
    with ctx.autotask() as at:
        for start, end in chunks:
            for document_type in document_types:
                entity, field = _counted(ctx, document_type)
                counts.append(ChunkCount(document_type, start, end, at.count(entity, _range(field, start, end))))
        calls = at.calls
    result = estimate(counts, xero_daily_budget=ctx.settings.xero.daily_call_budget,
                      xero_calls_per_minute=ctx.settings.xero.calls_per_minute, counting_calls=calls)
    create_markdown_artifact(key=f"backfill-{ctx.tenant}-estimate".lower(), markdown=estimate_markdown(ctx.tenant, result),
                             description="Backfill estimate: API calls and time, before anything is written")
    return result

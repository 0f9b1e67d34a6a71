"""The backfill's body: any historical window, chunk by chunk, oldest first, through the same document flows.

Each chunk of each document type is one run of that flow (a subflow named after the chunk's window) that
reads only its own days (`only_window`), and is recorded in the ledger when it finishes. Run the backfill
again with the same parameters and it resumes after the last finished chunk. Before writing anything it
publishes an estimate of the calls and time; a dry run stops there. When Xero's day limit or the tenant's
daily call budget runs out it stops cleanly; the next run goes on.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Literal

from prefect import Flow, get_run_logger, runtime, tags
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.states import Completed, Failed
from pydantic import BaseModel, Field, model_validator

from atx.check import PreflightFailed
from atx.context import open_tenant
from core import windows
from pipeline.flow import cannot_sync, refused_for_another_tenant
from tasks.backfill import (
    BackfillSummary, ChunkResult, chunk_result, finish_chunk, finished_chunks, publish_backfill_report, start_chunk,
)
from tasks.estimate import estimate_backfill
from tasks.tenancy import preflight

DocumentType = Literal["invoices", "bills", "payments"]
# In this order within a chunk: payments settle the invoices synced just before them.
DOCUMENT_TYPES: tuple[str, ...] = ("invoices", "bills", "payments")


def _a_year_ago() -> date:
    return date.today() - timedelta(days=365)


class Backfill(BaseModel):
    """A historical window to sync into Xero, chunk by chunk."""

    tenant: str = Field(title="Tenant", description="The tenant to sync: the name of its file in tenants/ (NAME.yaml).")
    start: date = Field(default_factory=_a_year_ago, title="From",
                        description="The first day of the history to sync (documents dated on or after it).",
                        json_schema_extra={"pattern": windows.DATE_PATTERN})
    end: date = Field(default_factory=date.today, title="To",
                      description="The last day of the history to sync (documents dated on or before it).",
                      json_schema_extra={"pattern": windows.DATE_PATTERN})
    document_types: list[DocumentType] = Field(
        default_factory=lambda: ["invoices"], title="Documents", min_length=1,
        description="What to sync: invoices (and credit notes), bills (purchase orders), payments.")
    chunk_days: int = Field(30, ge=1, le=366, title="Days per chunk",
                            description="Each chunk is one run of each document flow, recorded when it finishes; "
                                        "a rerun resumes after the last finished one.")
    dry_run: bool = Field(False, title="Estimate only",
                          description="Count the documents and estimate the API calls and time; write nothing.")

    @model_validator(mode="after")
    def _start_before_end(self) -> "Backfill":
        windows.check_window(self.start, self.end)
        return self

    @property
    def types(self) -> list[str]:
        return [t for t in DOCUMENT_TYPES if t in self.document_types]


def run_backfill(request: Backfill, flows: Mapping[str, Flow]):
    """Sync a tenant's history with `flows` (document type -> its flow), chunk by chunk; resumable."""
    tenant, run_id = request.tenant, str(runtime.flow_run.id)
    refused = refused_for_another_tenant("backfill", tenant)
    if refused is not None:
        return refused
    try:
        preflight(tenant, request.types[0])
    except PreflightFailed as exc:
        return cannot_sync("backfill", tenant, exc, "run the backfill again once it is fixed.")
    chunks = windows.chunks(request.start, request.end, request.chunk_days)
    summary = BackfillSummary(tenant=tenant, start=request.start, end=request.end, dry_run=request.dry_run)
    summary.estimate = estimate_backfill(open_tenant(tenant, run_id), request.types, chunks)
    if request.dry_run:
        summary.chunks = [ChunkResult(t, s, e, "not started") for s, e in chunks for t in request.types]
        publish_backfill_report(summary)
        return Completed(message=f"estimate only: about {summary.estimate.xero_calls} Xero calls", data=summary)
    failed = _run_chunks(request, flows, chunks, summary, run_id)
    publish_backfill_report(summary)
    if failed is not None:
        return Failed(message=f"chunk {failed.start}..{failed.end} of {failed.document_type} failed: "
                              f"{failed.note}; {summary.message}", data=summary)
    get_run_logger().info(summary.message)
    return Completed(message=summary.message, data=summary)


def _run_chunks(request: Backfill, flows: Mapping[str, Flow], chunks: list[tuple[date, date]],
                summary: BackfillSummary, run_id: str) -> ChunkResult | None:
    """Each chunk of each type once, oldest first, skipping those done before; stops at the first failed chunk
    (returned) and, at an API limit, reports the rest as not started."""
    tenant = request.tenant
    done = finished_chunks(tenant, request.types)
    units = [(chunk, t) for chunk in chunks for t in request.types]
    described = f"Backfill {request.start}..{request.end} for {tenant}: {{}} of {len(units)} chunk runs done"
    progress = create_progress_artifact(progress=0.0, key=f"backfill-{tenant}-progress".lower(),
                                        description=described.format(0))
    for number, (chunk, document_type) in enumerate(units, start=1):
        if summary.stopped:
            summary.chunks.append(ChunkResult(document_type, *chunk, "not started"))
            continue
        if (document_type, *chunk) in done:
            summary.chunks.append(ChunkResult(document_type, *chunk, "done before"))
        else:
            result = _run_chunk(tenant, flows[document_type], document_type, chunk, run_id)
            summary.chunks.append(result)
            if result.state == "failed":
                return result
            if result.state == "stopped":
                summary.stopped = result.note
                get_run_logger().warning("stopping at %s..%s: %s", *chunk, summary.stopped)
        update_progress_artifact(progress, progress=100.0 * number / len(units), description=described.format(number))
    return None


def _run_chunk(tenant: str, document_flow: Flow, document_type: str, chunk: tuple[date, date], run_id: str) -> ChunkResult:
    start_chunk(tenant, document_type, chunk, run_id)
    # Tagged when created, not only by the run itself: Prefect's events of a run name the tags it was created
    # with, and a tenant's alerts (atx/alerts.py) match on them.
    with tags(f"tenant:{tenant}"):
        state = document_flow(tenant=tenant, since=chunk[0], until=chunk[1], dry_run=False, only_window=True,
                              return_state=True)
    if not state.is_completed():
        return ChunkResult(document_type, *chunk, "failed", note=state.message or state.name)
    result = chunk_result(document_type, chunk, state.result())
    if result.state == "done":
        finish_chunk(tenant, result, run_id)
    return result

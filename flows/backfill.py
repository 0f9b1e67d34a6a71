"""backfill: any historical window, chunk by chunk, oldest first, through the same document flows.

Each chunk of each document type is one run of that flow (a subflow named after the chunk's window)
that reads only its own days (`only_window`), and is recorded in the ledger when it finishes. Run the
backfill again with the same parameters and it resumes after the last finished chunk. Before writing
anything it publishes an estimate of the calls and time; a dry run stops there. When Xero's day limit
or the tenant's daily call budget runs out it stops cleanly; the next run goes on.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.states import Completed, Failed
from pydantic import BaseModel, Field, model_validator

from atx.context import open_tenant
from core import windows
from flows.bills import bills
from flows.invoices import invoices
from flows.payments import payments
from tasks.backfill import (
    BackfillSummary, ChunkResult, chunk_result, finish_chunk, finished_chunks, publish_backfill_report, start_chunk,
)
from atx.check import PreflightFailed
from tasks.estimate import estimate_backfill
from tasks.report import publish_failure
from tasks.tenancy import deployment_tenant, preflight

DocumentType = Literal["invoices", "bills", "payments"]
# In this order within a chunk: payments settle the invoices synced just before them.
FLOWS = {"invoices": invoices, "bills": bills, "payments": payments}


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
        return [t for t in FLOWS if t in self.document_types]


def backfill_run_name() -> str:
    request = runtime.flow_run.parameters.get("request") or {}
    value = request if isinstance(request, dict) else request.model_dump()
    return f"backfill · {value.get('tenant')} · {value.get('start')}..{value.get('end')}"


@flow(name="backfill", flow_run_name=backfill_run_name, persist_result=False, log_prints=False)
def backfill(request: Backfill):
    """Sync a tenant's history, chunk by chunk, oldest first; resumable, within the API budgets."""
    logger = get_run_logger()
    tenant, run_id = request.tenant, str(runtime.flow_run.id)
    chunks = windows.chunks(request.start, request.end, request.chunk_days)
    owner = deployment_tenant()
    if owner is not None and owner != tenant:
        problem = (f"this run of the deployment backfill/{owner} asked for tenant {tenant!r}; a tenant's deployment "
                   f"syncs only its own tenant. Fix: run the deployment backfill/{tenant} instead")
        publish_failure("backfill", owner, "refused", f"The run was refused: {problem}. Nothing was read or written.")
        return Failed(message=problem)
    try:
        preflight(tenant, request.types[0])
    except PreflightFailed as exc:  # the problems and their fixes, without a traceback
        publish_failure("backfill", tenant, "cannot sync", " ".join(
            f"{p.area}: {' '.join(p.problem.split())} Fix: {' '.join(p.fix.split())}" for p in exc.problems)
            + " Nothing was written. Fix it, then run the backfill again.")
        return Failed(message=str(exc))
    summary = BackfillSummary(tenant=tenant, start=request.start, end=request.end, dry_run=request.dry_run)
    summary.estimate = estimate_backfill(open_tenant(tenant, run_id), request.types, chunks)
    if request.dry_run:
        summary.chunks = [ChunkResult(t, s, e, "not started") for s, e in chunks for t in request.types]
        publish_backfill_report(summary)
        return Completed(message=f"estimate only: about {summary.estimate.xero_calls} Xero calls", data=summary)

    done = finished_chunks(tenant, request.types)
    units = [(chunk, t) for chunk in chunks for t in request.types]
    progress = create_progress_artifact(progress=0.0, key=f"backfill-{tenant}-progress".lower(),
                                        description=f"Backfill {request.start}..{request.end} for {tenant}: "
                                                    f"0 of {len(units)} chunk runs done")
    for number, (chunk, document_type) in enumerate(units, start=1):
        if summary.stopped:
            summary.chunks.append(ChunkResult(document_type, *chunk, "not started"))
            continue
        if (document_type, *chunk) in done:
            summary.chunks.append(ChunkResult(document_type, *chunk, "done before"))
        else:
            summary.chunks.append(_run_chunk(tenant, document_type, chunk, run_id))
            if summary.chunks[-1].state == "failed":
                publish_backfill_report(summary)
                return Failed(message=f"chunk {chunk[0]}..{chunk[1]} of {document_type} failed: "
                                      f"{summary.chunks[-1].note}; {summary.message}", data=summary)
            if summary.chunks[-1].state == "stopped":
                summary.stopped = summary.chunks[-1].note
                logger.warning("stopping at %s..%s: %s", *chunk, summary.stopped)
        update_progress_artifact(progress, progress=100.0 * number / len(units),
                                 description=f"Backfill {request.start}..{request.end} for {tenant}: "
                                             f"{number} of {len(units)} chunk runs done")
    publish_backfill_report(summary)
    logger.info(summary.message)
    return Completed(message=summary.message, data=summary)


def _run_chunk(tenant: str, document_type: str, chunk: tuple[date, date], run_id: str) -> ChunkResult:
    from prefect import tags

    start_chunk(tenant, document_type, chunk, run_id)
    # Tagged when created, not only by the run itself: Prefect's events of a run name the tags it was created
    # with, and a tenant's alerts (atx/alerts.py) match on them.
    with tags(f"tenant:{tenant}"):
        state = FLOWS[document_type](tenant=tenant, since=chunk[0], until=chunk[1], dry_run=False, only_window=True,
                                     return_state=True)
    if not state.is_completed():
        return ChunkResult(document_type, *chunk, "failed", note=state.message or state.name)
    result = chunk_result(document_type, chunk, state.result())
    if result.state == "done":
        finish_chunk(tenant, result, run_id)
    return result

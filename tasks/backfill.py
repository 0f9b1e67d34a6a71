"""A backfill's bookkeeping: which chunks are done (the ledger's sync_window table), the estimate it
publishes before writing anything, and its report. The flow (flows/backfill.py) only composes these
with the document flows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from atx.connections import ledger_for
from atx.settings import load_tenant
from ledger import WindowState
from tasks.prefect_task import task

Chunk = tuple[date, date]


def window_flow(document_type: str) -> str:
    """The sync_window key of a backfill's chunks of one document type."""
    return f"backfill:{document_type}"


@dataclass
class ChunkResult:
    document_type: str
    start: date
    end: date
    state: str                      # "done before", "done", "unfinished", "stopped", "not started", "failed"
    created: int = 0
    already: int = 0
    set_aside: int = 0
    left: int = 0                   # in flight elsewhere or not sent yet: the chunk is run again
    autotask_calls: int = 0
    xero_calls: int = 0
    note: str = ""

    @property
    def window(self) -> str:
        return f"{self.start}..{self.end}"


@dataclass
class BackfillSummary:
    tenant: str
    start: date
    end: date
    dry_run: bool
    chunks: list[ChunkResult] = field(default_factory=list)
    stopped: str | None = None      # why it stopped before the last chunk (an API budget); it resumes
    estimate: "object | None" = None

    def count(self, state: str) -> int:
        return sum(1 for c in self.chunks if c.state == state)

    @property
    def message(self) -> str:
        done = self.count("done") + self.count("done before")
        text = f"{done} of {len(self.chunks)} chunks done ({self.count('done before')} before this run)"
        if self.stopped:
            text += f"; stopped: {self.stopped}; run it again with the same parameters to resume"
        elif self.count("unfinished"):
            text += f"; {self.count('unfinished')} unfinished (documents in flight or not sent): run it again"
        return text


@task(name="finished-chunks", cache_policy=NONE)
def finished_chunks(tenant: str, document_types: list[str]) -> set[tuple[str, date, date]]:
    ledger = ledger_for(load_tenant(tenant))
    return {(t, w.window_start, w.window_end) for t in document_types
            for w in ledger.windows(tenant, window_flow(t)) if w.state == WindowState.DONE}


@task(name="start-chunk", cache_policy=NONE)
def start_chunk(tenant: str, document_type: str, chunk: Chunk, run_id: str) -> None:
    ledger_for(load_tenant(tenant)).start_window(tenant, window_flow(document_type), chunk[0], chunk[1], run_id=run_id)


@task(name="finish-chunk", cache_policy=NONE)
def finish_chunk(tenant: str, result: ChunkResult, run_id: str) -> bool:
    facts = {"created": result.created, "already": result.already, "set_aside": result.set_aside,
             "autotask_calls": result.autotask_calls, "xero_calls": result.xero_calls}
    return ledger_for(load_tenant(tenant)).finish_window(tenant, window_flow(result.document_type), result.start,
                                                        result.end, run_id=run_id, facts=facts)


def chunk_result(document_type: str, chunk: Chunk, summary) -> ChunkResult:
    """What one document flow's run of one chunk did, from its RunSummary."""
    from tasks.outcomes import Result

    left = summary.count(Result.IN_FLIGHT) + summary.count(Result.NOT_SENT)
    state = "stopped" if summary.stopped else "unfinished" if left else "done"
    return ChunkResult(document_type, chunk[0], chunk[1], state, created=summary.count(Result.CREATED),
                       already=summary.count(Result.ALREADY), set_aside=summary.set_aside_count, left=left,
                       autotask_calls=summary.autotask_calls, xero_calls=summary.xero_calls,
                       note=summary.stopped or "")


@task(name="publish-backfill-report", cache_policy=NONE)
def publish_backfill_report(summary: BackfillSummary) -> str:
    key = f"backfill-{summary.tenant}".lower()
    create_table_artifact(key=key, table=[{
        "Chunk": c.window, "Documents": c.document_type, "State": c.state, "Created": c.created,
        "Already there": c.already, "Set aside": c.set_aside, "Left for the next run": c.left,
        "Autotask calls": c.autotask_calls, "Xero calls": c.xero_calls, "Note": c.note,
    } for c in summary.chunks], description=f"Backfill {summary.start}..{summary.end} for {summary.tenant}, every chunk")
    lines = [f"# Backfill for {summary.tenant}, {summary.start} to {summary.end}" + (" (dry run)" if summary.dry_run else ""),
             "", summary.message, ""]
    create_markdown_artifact(key=f"{key}-summary", markdown="\n".join(lines), description="Backfill summary")
    return "\n".join(lines)

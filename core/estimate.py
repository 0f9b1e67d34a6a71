"""What a backfill will cost before it writes anything: API calls per chunk from Autotask's counts, and how
long Xero's limits (per minute, and the tenant's daily budget) make it take. Pure arithmetic.

The call model follows what one run of a document flow makes (tasks/extract*.py, pipeline/flow.py):
a fixed part per run (the preflight check, reference tables, the settings read) and a part per batch of
documents (queries of 500 Autotask records, Xero reads and writes of 50 documents).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

AUTOTASK_PAGE = 500
XERO_BATCH = 50


@dataclass(frozen=True)
class ChunkCount:
    """How many source records one chunk of one document type holds (Autotask's query/count)."""

    document_type: str
    start: date
    end: date
    documents: int


@dataclass(frozen=True)
class CallModel:
    """Calls one run of a document flow makes: fixed per run, and per page or batch of its documents."""

    autotask_per_run: int
    xero_per_run: int
    autotask_per_page: float = 2.0      # the records, and the records each one names (lines, receivings)
    xero_per_batch: float = 2.0         # the contacts read and a write per 50 documents
    xero_per_document: float = 0.0      # contacts, attachments: at most one each


# Measured on the sandbox against the flows as they are; `tests/test_backfill_flow.py` holds the estimate
# to within 10 % of a real backfill's calls.
MODELS: dict[str, CallModel] = {
    # Invoices: the preflight's calls, the invoices (and voids, in one query), billing items, companies,
    # contacts, eight reference tables and the picklists per run (the zone is looked up once a process, not a
    # run); in Xero the contacts read and a create per 50 (Xero's refusal of a taken number is the clash
    # check), and now and then new contacts.
    "invoices": CallModel(autotask_per_run=12, xero_per_run=0, autotask_per_page=4, xero_per_batch=2,
                          xero_per_document=0.1),
    # Not yet measured against a backfill: the same shape, fewer reference tables, and one lookup per batch
    # (bill numbers are not unique in Xero, so the batch's numbers and contacts are looked up before it is sent).
    "bills": CallModel(autotask_per_run=8, xero_per_run=0, autotask_per_page=4, xero_per_batch=2,
                       xero_per_document=0.1),
    "payments": CallModel(autotask_per_run=1, xero_per_run=1, autotask_per_page=1, xero_per_batch=1),
}


@dataclass(frozen=True)
class ChunkEstimate:
    count: ChunkCount
    autotask_calls: int
    xero_calls: int


@dataclass
class Estimate:
    chunks: list[ChunkEstimate] = field(default_factory=list)
    xero_calls_per_minute: int = 59
    xero_daily_budget: int = 1000
    autotask_calls_per_hour: int = 10_000
    counting_calls: int = 0             # what the estimate itself cost (Autotask query/count)

    @property
    def documents(self) -> int:
        return sum(c.count.documents for c in self.chunks)

    @property
    def autotask_calls(self) -> int:
        return sum(c.autotask_calls for c in self.chunks)

    @property
    def xero_calls(self) -> int:
        return sum(c.xero_calls for c in self.chunks)

    @property
    def xero_days(self) -> int:
        """Days the daily budget spreads the Xero calls over (1 when they fit in today's)."""
        return max(1, math.ceil(self.xero_calls / self.xero_daily_budget))

    @property
    def minutes(self) -> float:
        """The time Xero's per-minute limit (and Autotask's hourly one) alone takes, within the budget."""
        return max(self.xero_calls / self.xero_calls_per_minute, 60 * self.autotask_calls / self.autotask_calls_per_hour)


def estimate_chunk(count: ChunkCount) -> ChunkEstimate:
    model = MODELS[count.document_type]
    n = count.documents
    pages, batches = math.ceil(n / AUTOTASK_PAGE), math.ceil(n / XERO_BATCH)
    return ChunkEstimate(
        count=count,
        autotask_calls=round(model.autotask_per_run + model.autotask_per_page * pages),
        xero_calls=round(model.xero_per_run + model.xero_per_batch * batches + model.xero_per_document * n),
    )


def estimate(counts: list[ChunkCount], *, xero_daily_budget: int, xero_calls_per_minute: int = 59,
             counting_calls: int = 0) -> Estimate:
    return Estimate([estimate_chunk(c) for c in counts], xero_calls_per_minute=xero_calls_per_minute,
                    xero_daily_budget=xero_daily_budget, counting_calls=counting_calls)


def estimate_markdown(tenant: str, e: Estimate) -> str:
    days = e.xero_days
    lines = [
        f"# Backfill estimate for {tenant}",
        "",
        f"{e.documents} documents in {len(e.chunks)} chunks: about **{e.autotask_calls} Autotask calls** and "
        f"**{e.xero_calls} Xero calls**.",
        "",
        f"At {e.xero_calls_per_minute} Xero calls a minute that is about {math.ceil(e.minutes)} minutes of work; "
        + (f"the tenant's daily Xero budget of {e.xero_daily_budget} calls holds it in one day."
           if days == 1 else
           f"the tenant's daily Xero budget of {e.xero_daily_budget} calls spreads it over **{days} days**: the "
           "backfill stops when a day's budget is used and the next run (scheduled or started again) goes on."),
        "",
        "| chunk | documents | records | Autotask calls | Xero calls |",
        "|---|---|---|---|---|",
        *[f"| {c.count.start}..{c.count.end} | {c.count.document_type} | {c.count.documents} | {c.autotask_calls} | "
          f"{c.xero_calls} |" for c in e.chunks],
        "",
        f"Counting cost {e.counting_calls} Autotask calls (query/count).",
    ]
    return "\n".join(lines)

"""The mapping's `filters:` applied to an extract: skipped invoices leave it, and each gets its report row."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from prefect import get_run_logger
from prefect.cache_policies import NONE

from core.filters import filter_invoices
from tasks.extract import AutotaskExtract
from tasks.outcomes import Outcome, Result
from tasks.prefect_task import task


@dataclass
class Kept:
    extract: AutotaskExtract
    outcomes: list[Outcome] = field(default_factory=list)  # one "skipped (<rule>)" row per filtered invoice


def _without(frame, column: str, ids: set[int]):
    out = frame[~frame[column].isin(list(ids))].copy() if len(frame) else frame.copy()
    out.attrs = dict(frame.attrs)  # rejected records travel on unchanged: they are set aside, not filtered
    return out


@task(name="filter-invoices", cache_policy=NONE)
def apply_filters(ctx, extract: AutotaskExtract) -> Kept:
    skipped = filter_invoices(extract.invoices, extract.companies, extract.reference, ctx.mapping.filters)
    if not skipped:
        return Kept(extract=extract)
    ids = {s.invoice_id for s in skipped}
    outcomes = [
        Outcome(kind="credit_note" if s.total is not None and s.total < 0 else "invoice", source_id=str(s.invoice_id),
                source_number=s.number, result=Result.SKIPPED, detail=s.detail, contact=s.company,
                source_total=s.total, reason=f"the mapping's filters skip it ({s.detail})", fix=s.fix)
        for s in skipped
    ]
    logger = get_run_logger()
    for o in outcomes:
        logger.info("%s %s", o.source_number, o.action)
    narrowed = replace(extract, invoices=_without(extract.invoices, "id", ids),
                       lines=_without(extract.lines, "invoiceID", ids))
    return Kept(extract=narrowed, outcomes=outcomes)

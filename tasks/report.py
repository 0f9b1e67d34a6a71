"""The run report: what a finance person reads in the Prefect dashboard after each run."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from core.invoices import SetAside
from tasks.load import InvoiceOutcome


@dataclass
class RunSummary:
    tenant: str
    since: date
    until: date
    dry_run: bool
    outcomes: list[InvoiceOutcome] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)
    autotask_calls: int = 0
    xero_calls: int = 0

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action.startswith(action))

    @property
    def set_aside_count(self) -> int:
        return len(self.set_aside) + self.count("set aside")


def _money(v) -> str:
    return "" if v is None else f"{Decimal(v):,.2f}"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


@task(name="publish-run-report", cache_policy=NONE)
def publish_report(summary: RunSummary) -> str:
    key = _slug(f"invoices-{summary.tenant}")
    rows = [
        {
            "Autotask number": o.autotask_number,
            "Xero number": o.xero_number or "",
            "Contact": o.contact,
            "Currency": o.currency,
            "Autotask total": _money(o.autotask_total),
            "Xero total": _money(o.xero_total),
            "Status": o.status or "",
            "Action": o.action,
            "Link": o.link or "",
        }
        for o in summary.outcomes
    ]
    create_table_artifact(key=key, table=rows, description=f"Invoices {summary.since}..{summary.until} for {summary.tenant}")
    aside = [
        {"Autotask number": s.autotask_number, "Autotask id": s.autotask_id, "Reason": s.reason, "Fix": s.fix}
        for s in summary.set_aside
    ] + [
        {"Autotask number": o.autotask_number, "Autotask id": o.autotask_id, "Reason": o.reason, "Fix": o.fix}
        for o in summary.outcomes
        if o.action == "set aside"
    ]
    if aside:
        create_table_artifact(key=f"{key}-set-aside", table=aside, description="Documents set aside, with the fix")
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for o in summary.outcomes:
        if o.action != "set aside" and not o.action.startswith("skipped"):
            totals[o.currency] += Decimal(o.autotask_total)
    lines = [
        f"# Invoices for {summary.tenant}, {summary.since} to {summary.until}" + (" (dry run)" if summary.dry_run else ""),
        "",
        "| | count |",
        "|---|---|",
        f"| created in Xero | {summary.count('created')} |",
        f"| already in Xero | {summary.count('already in Xero')} |",
        f"| recovered after a lost answer | {summary.count('recovered')} |",
        f"| planned (dry run) | {summary.count('planned')} |",
        f"| in flight in another run | {summary.count('in flight')} |",
        f"| skipped (voided before sync) | {summary.count('skipped')} |",
        f"| set aside | {summary.set_aside_count} |",
        "",
        "| currency | total |",
        "|---|---|",
        *[f"| {c} | {_money(t)} |" for c, t in sorted(totals.items())],
        "",
        f"API calls: Autotask {summary.autotask_calls}, Xero {summary.xero_calls}.",
    ]
    markdown = "\n".join(lines)
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description="Run summary")
    return markdown

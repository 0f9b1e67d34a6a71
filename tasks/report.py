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
    attach_failures: dict = field(default_factory=dict)  # autotask id -> why its PDF is not attached yet

    def count(self, action: str) -> int:
        return sum(1 for o in self.outcomes if o.action.startswith(action))

    @property
    def set_aside_count(self) -> int:
        return len(self.set_aside) + self.count("set aside")

    @property
    def attention(self) -> list[InvoiceOutcome]:
        """Documents in Xero that a person must look at (changed after approval, voided but paid, ...)."""
        return [o for o in self.outcomes if o.action in ("needs attention", "changed after approval")]


def _money(v) -> str:
    return "" if v is None else f"{Decimal(v):,.2f}"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


_NOT_IN_XERO = ("set aside", "skipped", "planned", "in flight", "not this tenant", "not sent yet")


@task(name="publish-run-report", cache_policy=NONE)
def publish_report(summary: RunSummary) -> str:
    key = _slug(f"invoices-{summary.tenant}")
    rows = [
        {
            "Autotask number": o.autotask_number,
            "Document": "credit note" if o.document_type == "ACCRECCREDIT" else "invoice",
            "Xero number": o.xero_number or "",
            "Contact": o.contact,
            "Currency": o.currency,
            "Autotask total": _money(o.autotask_total),
            "Xero total": _money(o.xero_total),
            "Status": o.status or "",
            "Action": o.action,
            "Note": "; ".join(x for x in (o.note, o.reason if o.action not in ("set aside",) else None) if x),
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
        create_table_artifact(key=f"{key}-set-aside", table=aside, description="Documents set aside, with the fix (retried on the next run)")
    attention = [
        {"Autotask number": o.autotask_number, "Xero number": o.xero_number or "", "Xero status": o.status or "",
         "Problem": o.reason or "", "What to do": o.fix or "", "Link": o.link or ""}
        for o in summary.attention
    ]
    if attention:
        create_table_artifact(key=f"{key}-attention", table=attention, description="Documents in Xero a person must look at")
    at_totals: dict[str, Decimal] = defaultdict(Decimal)
    xero_totals: dict[str, Decimal] = defaultdict(Decimal)
    for o in summary.outcomes:
        if o.action.startswith(_NOT_IN_XERO) or "voided" in o.action or "deleted" in o.action or not o.currency:
            continue
        sign = -1 if o.document_type == "ACCRECCREDIT" else 1  # Autotask's credit is negative; Xero's credit note positive
        at_totals[o.currency] += Decimal(o.autotask_total)
        if o.xero_total is not None:
            xero_totals[o.currency] += sign * Decimal(o.xero_total)
    unsubscribed = sorted({s.reason.split("currency ")[-1].strip() for s in summary.set_aside
                           if "not subscribed to currency" in (s.reason or "")})
    lines = [
        f"# Invoices for {summary.tenant}, {summary.since} to {summary.until}" + (" (dry run)" if summary.dry_run else ""),
        "",
        "| | count |",
        "|---|---|",
        f"| created in Xero | {summary.count('created')} |",
        f"| already in Xero | {summary.count('already in Xero')} |",
        f"| recovered after a lost answer | {summary.count('recovered')} |",
        f"| updated in Xero (changed in Autotask while a draft) | {summary.count('updated in Xero')} |",
        f"| voided or deleted in Xero (voided in Autotask) | {summary.count('voided in Xero') + summary.count('deleted in Xero')} |",
        f"| needs a person (see the attention table) | {len(summary.attention)} |",
        f"| planned (dry run) | {summary.count('planned')} |",
        f"| in flight in another run | {summary.count('in flight')} |",
        f"| not sent yet (an API limit or a lost answer; the next run sends or finds them) | {summary.count('not sent yet')} |",
        f"| skipped (voided before sync) | {summary.count('skipped')} |",
        f"| set aside | {summary.set_aside_count} |",
        f"| PDF attachments not done yet (retried next run) | {len(summary.attach_failures)} |",
        "",
        "| currency | Autotask total | Xero total |",
        "|---|---|---|",
        *[f"| {c} | {_money(t)} | {_money(xero_totals.get(c))} |" for c, t in sorted(at_totals.items())],
        "",
        f"API calls: Autotask {summary.autotask_calls}, Xero {summary.xero_calls}.",
    ]
    if unsubscribed:
        lines += ["", f"Currencies the Xero organisation lacks (their invoices are set aside): {', '.join(unsubscribed)}. "
                  "Add them in Xero (Settings > Currencies), then rerun."]
    markdown = "\n".join(lines)
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description="Run summary")
    return markdown

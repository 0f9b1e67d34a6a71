"""The run report: what a finance person reads in the Prefect dashboard after each run, for every flow."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from core.documents import KINDS, SKIPPED_BY_A_PERSON, VOIDED_BEFORE_SYNC
from tasks.outcomes import NEEDS_A_PERSON, NOT_IN_XERO, Outcome, Result
from tasks.prefect_task import task

# What a skipped document's detail starts with when routing could not pick one tenant (tasks/tenancy.py).
NOT_ROUTED = "not routed"
NOT_ROUTED_LABEL = "not routed (no tenant's routing rules, or several, claim it)"
# How many documents set aside (and how many needing a person) the summary lists with their reason and fix.
SHOWN_IN_SUMMARY = 10
SKIPPED_LABEL = "by a person (`atx ledger skip`, with the reason in the table; `atx ledger resend` sends it)"


@dataclass
class RunSummary:
    tenant: str
    since: date
    until: date
    dry_run: bool
    flow: str = "invoices"
    heartbeat_timeout_seconds: float = 60  # how soon a killed run's documents are resolved (the report says so)
    outcomes: list[Outcome] = field(default_factory=list)
    autotask_calls: int = 0
    xero_calls: int = 0
    attach_failures: dict[str, str] = field(default_factory=dict)  # source id -> why its PDF is not attached yet
    pdfs: str | None = None  # what became of the PDFs waiting: "12 PDFs attached, 30 left for the next run (...)"
    stopped: str | None = None  # why the run stopped sending early (an API limit, the daily Xero call budget)
    window_unread: bool = False  # it stopped before reading its window: nothing was planned
    contacts_adopted: list[str] = field(default_factory=list)  # existing Xero contacts companies adopted, and how
    contact_notes: list[str] = field(default_factory=list)     # contact choices a person may want to check
    warnings: list[str] = field(default_factory=list)  # for a person, outside any document (a token ageing)
    other_tenants: int = 0  # documents of this Autotask account that routing gave to another tenant
    xero_links: bool = True  # the tenant talks to Xero itself, so go.xero.com links open its documents
    only_ids: list[str] | None = None  # the run was for these documents alone (`atx ledger resend`)
    run_id: str | None = None  # the flow run, whose writes the audit trail keeps under its id
    audited_writes: int = 0  # writes to Xero and Autotask the audit trail holds for this run

    def count(self, what: Result | str) -> int:
        """Outcomes of this result (whatever the kind), or whose action starts with this text."""
        if isinstance(what, Result):
            return sum(1 for o in self.outcomes if o.result == what)
        return sum(1 for o in self.outcomes if o.action.startswith(what))

    @property
    def set_aside(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == Result.SET_ASIDE]

    @property
    def set_aside_count(self) -> int:
        return len(self.set_aside)

    @property
    def attention(self) -> list[Outcome]:
        """Documents in Xero that a person must look at (changed after approval, voided but paid, ...)."""
        return [o for o in self.outcomes if o.result in NEEDS_A_PERSON]

    @property
    def unrouted(self) -> list[Outcome]:
        """Documents routing gave to no tenant, or to several: a person fixes the rules."""
        return [o for o in self.outcomes if o.result == Result.SKIPPED and (o.detail or "").startswith(NOT_ROUTED)]

    @property
    def message(self) -> str:
        return (f"{self.count(Result.CREATED)} created, {self.count(Result.ALREADY)} already in Xero, "
                f"{self.set_aside_count} set aside")

    @property
    def key(self) -> str:
        """The run's artifact key; the set-aside, attention, summary and progress keys start with it."""
        return _slug(f"{self.flow}-{self.tenant}")

    @property
    def routing_key(self) -> str:
        return routing_key(self.tenant)

    def for_a_person(self) -> list[tuple[str, str]]:
        """What a person must look at after this run: (how many of what, the artifact that lists them)."""
        found = []
        if self.set_aside_count:
            found.append((f"{self.set_aside_count} set aside", f"{self.key}-set-aside"))
        if self.attention:
            found.append((f"{len(self.attention)} needing a person", f"{self.key}-attention"))
        if self.unrouted:
            found.append((f"{len(self.unrouted)} not routed to exactly one tenant", self.routing_key))
        return found


def routing_key(tenant: str) -> str:
    return _slug(f"routing-{tenant}")


def skip_reason(o: Outcome) -> str:
    """Why a document was skipped, one label per reason: the summary counts each on its own row."""
    detail = o.detail or ""
    if detail == VOIDED_BEFORE_SYNC:
        return "voided before sync (voided in Autotask before it reached Xero)"
    if detail.startswith(NOT_ROUTED):
        return NOT_ROUTED_LABEL
    if detail == SKIPPED_BY_A_PERSON:
        return SKIPPED_LABEL
    if (o.reason or "").startswith("the mapping's filters"):
        return "filtered by the mapping (its filters: section)"
    return detail or o.reason or "skipped"


def _money(v) -> str:
    return "" if v is None else f"{Decimal(v):,.2f}"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def _row(o: Outcome, links: bool = True) -> dict:
    """One document, what matters first so that it reads at a laptop's width beside the Prefect UI's panels:
    the number, the contact, both totals, Xero's status and what happened; then the currency, the Xero number
    and the kind of document; the long text (the action's detail, notes, reasons) in the last column."""
    row = {
        "Autotask number": o.source_number,
        "Contact": o.contact,
        "Autotask total": _money(o.source_total),
        "Xero total": _money(o.xero_total),
        "Status": o.status or "",
        "Action": o.label,
        "Currency": o.currency,
        "Xero number": o.xero_number or "",
        "Document": KINDS[o.kind].noun,
    }
    if links:  # go.xero.com opens only documents of Xero itself, not of another host (the sandbox)
        row["Link"] = o.link or ""
    row["Note"] = "; ".join(x for x in (o.detail, o.note, o.reason if o.result != Result.SET_ASIDE else None) if x)
    return row


def _totals(summary: RunSummary) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    at_totals: dict[str, Decimal] = defaultdict(Decimal)
    xero_totals: dict[str, Decimal] = defaultdict(Decimal)
    for o in summary.outcomes:
        if o.result in NOT_IN_XERO or not o.currency or o.source_total is None:
            continue
        # Autotask's credit is negative; Xero's credit note positive.
        sign = -1 if KINDS[o.kind].xero_type == "ACCRECCREDIT" else 1
        at_totals[o.currency] += Decimal(o.source_total)
        if o.xero_total is not None:
            xero_totals[o.currency] += sign * Decimal(o.xero_total)
    return at_totals, xero_totals


def by_document_type(summary: RunSummary) -> list[str]:
    """What happened to each kind of document, named with where it was written (a paid date → Autotask)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for o in summary.outcomes:
        kind = KINDS[o.kind]
        counts[(f"{kind.noun} → {kind.target}", o.result.value)] += 1
    if not counts:
        return []
    return ["| document | result | count |", "|---|---|---|",
            *[f"| {what} | {result} | {n} |" for (what, result), n in sorted(counts.items())], ""]


# Rows of the per-document table. Prefect refuses to publish an event over 1.5 MB, and an artifact's event carries
# its table: 10,000 rows were 2.9 MB. Nobody reads that many rows in the UI; `atx ledger show` lists them all.
TABLE_ROWS = 2_000
# What went as expected; past TABLE_ROWS these rows give way to the ones a person must read.
ROUTINE = frozenset({Result.CREATED, Result.ALREADY, Result.RECOVERED, Result.UPDATED, Result.PLANNED})


def table_outcomes(outcomes: list[Outcome], limit: int = TABLE_ROWS) -> list[Outcome]:
    """The outcomes the table shows, in their order: all of them up to `limit`; past it, every one that is not
    routine, then routine ones up to the limit."""
    if len(outcomes) <= limit:
        return list(outcomes)
    unusual = {id(o) for o in outcomes if o.result not in ROUTINE}
    room = max(limit - len(unusual), 0)
    kept = []
    for o in outcomes:
        if id(o) in unusual:
            kept.append(o)
        elif room:
            kept.append(o)
            room -= 1
    return kept


@task(name="publish-run-report", cache_policy=NONE)
def publish_report(summary: RunSummary) -> str:
    key = summary.key
    shown = table_outcomes(summary.outcomes)
    cut = (f"; the first {len(shown):,} of {len(summary.outcomes):,} documents (every one not routine among them): "
           f"`atx ledger show --tenant {summary.tenant}` lists all") if len(shown) < len(summary.outcomes) else ""
    create_table_artifact(key=key, table=[_row(o, summary.xero_links) for o in shown],
                          description=f"{summary.flow.capitalize()} {summary.since}..{summary.until} for {summary.tenant}"
                                      + (" (dry run)" if summary.dry_run else "") + cut)
    # A run that stopped before reading its window does not know them: the last run's tables stay.
    if not summary.window_unread:
        aside = [{"Autotask number": o.source_number, "Reason": o.reason, "Fix": o.fix, "Autotask id": o.source_id}
                 for o in summary.set_aside]
        _table_or_none(f"{key}-set-aside", aside, "Documents set aside, with the fix (retried on the next run)",
                       f"No document was set aside by the {summary.flow} run of {summary.since}..{summary.until}.")
        attention = [
            {"Autotask number": o.source_number, "Xero number": o.xero_number or "", "Xero status": o.status or "",
             "What to do": o.fix or "", **({"Link": o.link or ""} if summary.xero_links else {}), "Problem": o.reason or ""}
            for o in summary.attention
        ]
        _table_or_none(f"{key}-attention", attention, "Documents in Xero a person must look at",
                       f"No document needs a person after the {summary.flow} run of {summary.since}..{summary.until}.")
    markdown = summary_markdown(summary)
    create_markdown_artifact(key=f"{key}-summary", markdown=markdown, description="Run summary")
    return markdown


def _table_or_none(key: str, rows: list[dict], description: str, none: str) -> None:
    """The current state under a key, also when it is empty: an earlier run's table must not look current."""
    if rows:
        create_table_artifact(key=key, table=rows, description=description)
    else:
        create_markdown_artifact(key=key, markdown=f"**None.** {none}", description=f"{description}: none")


@task(name="publish-failure-report", cache_policy=NONE)
def publish_failure(flow: str, tenant: str, headline: str, paragraph: str) -> str:
    """A failed run's report, one paragraph with the fix, under the run's summary key."""
    markdown = f"# {flow.capitalize()} for {tenant}: {headline}\n\n{paragraph}"
    create_markdown_artifact(key=f"{_slug(f'{flow}-{tenant}')}-summary", markdown=markdown,
                             description="Run summary: the run failed")
    return markdown


def _skipped_rows(summary: RunSummary) -> list[str]:
    """One row per reason a document was skipped (never sent, and nothing to fix in the document itself)."""
    counts: dict[str, int] = defaultdict(int)
    for o in summary.outcomes:
        if o.result == Result.SKIPPED:
            counts[skip_reason(o)] += 1
    rows = [f"| skipped: {why}"
            + (f"; see {summary.routing_key}" if why == NOT_ROUTED_LABEL else "") + f" | {n} |"
            for why, n in sorted(counts.items())]
    if summary.other_tenants:
        rows.append(f"| skipped: another tenant's (routing gives it to another Xero organisation) | {summary.other_tenants} |")
    return rows or ["| skipped | 0 |"]


def _for_a_person(summary: RunSummary) -> list[str]:
    found = summary.for_a_person()
    if not found:
        return []
    return ["**Needs attention**: " + "; ".join(f"{what} (see the artifact `{key}`)" for what, key in found) + ".", ""]


def _markdown_text(text: str) -> str:
    """Text shown as itself in markdown: a fix's "<Xero account code>" must not vanish as an HTML tag, nor an
    account's underscores turn into emphasis."""
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    return text


def _to_act_on(summary: RunSummary) -> list[str]:
    """The first documents a person must act on, each with its reason and fix. Markdown wraps them at any
    width, where the cells of the set-aside and attention tables run off a laptop's screen."""
    lines: list[str] = []
    groups = (("Would be set aside" if summary.dry_run else "Set aside", summary.set_aside, f"{summary.key}-set-aside",
               "fix"),
              ("Needing a person", summary.attention, f"{summary.key}-attention", "what to do"))
    for title, outcomes, key, fix in groups:
        if not outcomes:
            continue
        lines.append(f"**{title}** (every one in `{key}`):")
        for o in outcomes[:SHOWN_IN_SUMMARY]:
            lines.append(f"- {KINDS[o.kind].noun} {_markdown_text(o.source_number)}: {_markdown_text(o.reason or '')}"
                         + (f"; {fix}: {_markdown_text(o.fix)}" if o.fix else ""))
        if len(outcomes) > SHOWN_IN_SUMMARY:
            lines.append(f"- and {len(outcomes) - SHOWN_IN_SUMMARY} more in `{key}`")
        lines.append("")
    return lines


def _stopped(summary: RunSummary) -> list[str]:
    if not summary.stopped:
        return []
    what = ("before reading the window; the next run reads it again" if summary.window_unread else
            "what was sent is recorded, and the documents not sent yet go with the next run")
    return [f"**Stopped early**: {summary.stopped}. Nothing is lost: {what} (the high-water mark is not moved).", ""]


def _audit_trail(summary: RunSummary) -> list[str]:
    if summary.run_id is None:
        return []
    writes = f"{summary.audited_writes} write" + ("" if summary.audited_writes == 1 else "s")
    return ["", f"Audit trail: `atx audit show --run {summary.run_id} --tenant {summary.tenant}` ({writes})."]


def summary_markdown(summary: RunSummary) -> str:
    at_totals, xero_totals = _totals(summary)
    unsubscribed = sorted({o.reason.split("currency ")[-1].strip() for o in summary.set_aside
                           if "not subscribed to currency" in (o.reason or "")})
    count = summary.count
    lines = [
        f"# {summary.flow.capitalize()} for {summary.tenant}, {summary.since} to {summary.until}"
        + (f", only Autotask {', '.join(summary.only_ids)}" if summary.only_ids else "")
        + (" (dry run)" if summary.dry_run else ""),
        "",
        *_stopped(summary),
        *_for_a_person(summary),
        *_to_act_on(summary),
        *[f"**Warning**: {w}." for w in summary.warnings],
        *([""] if summary.warnings else []),
        "| | count |",
        "|---|---|",
        f"| created in Xero | {count(Result.CREATED)} |",
        f"| already in Xero | {count(Result.ALREADY)} |",
        f"| recovered after a lost answer | {count(Result.RECOVERED)} |",
        f"| updated in Xero (changed in Autotask while a draft) | {count(Result.UPDATED)} |",
        f"| voided or deleted in Xero (voided in Autotask) | {count(Result.VOIDED) + count(Result.DELETED)} |",
        f"| needs a person (see {summary.key}-attention) | {len(summary.attention)} |",
        f"| planned (dry run) | {count(Result.PLANNED)} |",
        f"| in flight in another run | {count(Result.IN_FLIGHT)} |",
        f"| not sent yet (an API limit or a lost answer; the next run sends or finds them) | {count(Result.NOT_SENT)} |",
        *_skipped_rows(summary),
        f"| set aside (see {summary.key}-set-aside) | {summary.set_aside_count} |",
        f"| PDF attachments not done yet (retried next run) | {len(summary.attach_failures)} |",
        "",
        *by_document_type(summary),
        "| currency | Autotask total | Xero total |",
        "|---|---|---|",
        *[f"| {c} | {_money(t)} | {_money(xero_totals.get(c))} |" for c, t in sorted(at_totals.items())],
        "",
        *([f"PDFs: {summary.pdfs}.", ""] if summary.pdfs else []),
        f"API calls: Autotask {summary.autotask_calls}, Xero {summary.xero_calls}.",
        *_audit_trail(summary),
    ]
    if summary.contacts_adopted:
        lines += ["", ("Existing Xero contacts a real run would adopt:" if summary.dry_run else
                       "Existing Xero contacts adopted (each now carries its Autotask company id as ContactNumber):"),
                  *[f"- {m}" for m in summary.contacts_adopted]]
    if summary.contact_notes:
        lines += ["", "Contacts:", *[f"- {m}" for m in summary.contact_notes]]
    if unsubscribed:
        lines += ["", f"Currencies the Xero organisation lacks (their documents are set aside): {', '.join(unsubscribed)}. "
                  "Add them in Xero (Settings > Currencies), then rerun."]
    return "\n".join(lines)

"""`atx reconcile`'s reading and repairing: the ledger's rows and the Xero documents for a window's plans,
and, with --repair, the ledger writes the pipeline itself makes (record a document found, release one
missing). The comparison is core/reconcile.py; flows/reconcile.py composes the steps.

Xero is asked as the pipeline asks it, in few calls: the ledger's documents by id, 50 a call; the plans'
numbers, 50 a call; documents Xero numbers by their contacts (this app's, in the window's dates, 50 contacts
a call) and matched on their Url; credit notes Xero numbers by Reference, 25 a call.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
import dataclasses
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.documents import KINDS, DocumentKind, DocumentPlan, KeyKind, XeroDocument, batches
from core.reconcile import (
    SENDING, SYNCED, VOIDED, Finding, Problem, Recorded, Repair, reconcile as compare, reconcile_recorded,
)
from ledger import DocState
from tasks.contacts import KIND_CONTACT
from tasks.outcomes import Outcome, Result
from tasks.reference import read_xero_reference
from tasks.sync import worth_retrying
from tasks.prefect_task import task

# The flow that sends each kind reconcile compares, and so the flow --repair runs for it.
KIND_FLOWS = {"invoice": "invoices", "credit_note": "invoices", "bill": "bills", "purchase_order": "bills",
              "payment": "payments"}
CHUNK = 50            # ids and numbers asked per call (Xero's batch size; the URL stays short)
REFERENCE_CHUNK = 25  # Reference=="…" terms OR-ed in one `where`
_LEDGER_CHUNK = 500   # source ids per ledger query (inside every database's parameter limit)
PURCHASE_ORDERS_ONE_BY_ONE = 25  # more ids and numbers than this: read every purchase order, 100 a page
# What the flow's run did to a document that repairs it.
REPAIRED = frozenset({Result.CREATED, Result.RECOVERED, Result.UPDATED, Result.VOIDED, Result.DELETED,
                      Result.ALREADY_VOIDED})


def default_kinds(ctx: TenantContext) -> list[str]:
    """The kinds the tenant's scheduled flows send (the tenant file's `flows:`)."""
    flows = ctx.settings.flows
    kinds = ["invoice", "credit_note"] if "invoices" in flows else []
    if "bills" in flows:
        kinds.append(ctx.mapping.bills.target)
    if "payments" in flows and ctx.settings.payments.to_xero:
        kinds.append("payment")
    return kinds or ["invoice", "credit_note"]


# ---- the report ------------------------------------------------------------------------------------
@dataclass
class Checked:
    """One finding, and what --repair made of it."""

    finding: Finding
    repaired: bool = False
    note: str = ""            # what --repair did, or why it did not
    released: bool = False    # RESEND: its row was released, so the flow's run sends it again


@dataclass
class ReconcileSummary:
    tenant: str
    since: date
    until: date
    kinds: list[str]
    repair: bool = False
    checked: list[Checked] = field(default_factory=list)
    compared: int = 0
    set_aside: int = 0
    in_flight: int = 0
    skipped: int = 0
    autotask_calls: int = 0
    xero_calls: int = 0
    stopped: str | None = None     # an API limit stopped the reading: nothing was compared past it
    runs: list[str] = field(default_factory=list)  # the flow runs --repair started, and how they ended

    @property
    def findings(self) -> list[Finding]:
        return [c.finding for c in self.checked]

    @property
    def left(self) -> list[Checked]:
        """Findings still standing: all of them without --repair, those it could not repair with it."""
        return [c for c in self.checked if not c.repaired]

    @property
    def clean(self) -> bool:
        return not self.left and not self.stopped

    def count(self, problem: Problem) -> int:
        return sum(1 for f in self.findings if f.problem == problem)

    @property
    def message(self) -> str:
        window = f"{self.tenant} {self.since}..{self.until}"
        if self.stopped:
            return f"{window}: stopped before the comparison was complete: {self.stopped}"
        extras = [f"{n} {what}" for n, what in ((self.set_aside, "set aside (each run reports them with the fix)"),
                                               (self.in_flight, "in flight in a run now"),
                                               (self.skipped, "skipped by a person (`atx ledger skip`)")) if n]
        tail = f"; {', '.join(extras)}" if extras else ""
        if not self.checked:
            return f"{window}: clean, {self.compared} documents agree in Autotask, the ledger and Xero{tail}"
        counts = ", ".join(f"{self.count(p)} {p.value}" for p in Problem if self.count(p))
        text = (f"{window}: {len(self.checked)} finding{'s' if len(self.checked) != 1 else ''} in {self.compared} "
                f"documents ({counts}){tail}")
        if self.repair:
            done = len(self.checked) - len(self.left)
            text += f"; repaired {done}, {len(self.left)} left for a person"
        return text


@task(name="publish-reconcile-report", cache_policy=NONE)
def publish_reconcile_report(summary: ReconcileSummary) -> None:
    key = f"reconcile-{summary.tenant}".lower()
    rows = [{"Problem": c.finding.problem.value, "Document": KINDS[c.finding.kind].noun,
             "Autotask number": c.finding.source_number, "What": c.finding.what, "Expected": c.finding.expected,
             "Xero": c.finding.found, "Fix": c.finding.fix, "Repair": c.note or c.finding.repair.value}
            for c in summary.checked]
    if rows:
        create_table_artifact(key=key, table=rows, description=f"Reconcile {summary.since}..{summary.until} for "
                                                              f"{summary.tenant}: each finding with its fix")
    lines = [f"# Reconcile for {summary.tenant}, {summary.since} to {summary.until}", "", summary.message, "",
             f"Kinds: {', '.join(summary.kinds)}. API calls: Autotask {summary.autotask_calls}, Xero {summary.xero_calls}."]
    lines += [f"- {r}" for r in summary.runs]
    create_markdown_artifact(key=f"{key}-summary", markdown="\n".join(lines), description="Reconcile summary")


# ---- the ledger ------------------------------------------------------------------------------------
def _decimal(text) -> Decimal | None:
    try:
        return None if text is None else Decimal(str(text))
    except InvalidOperation:
        return None


def recorded(row) -> Recorded:
    return Recorded(source_id=row.source_id, state=row.state, source_number=row.source_number, target_id=row.target_id,
                    target_number=row.target_number, target_total=_decimal(row.target_total),
                    target_status=row.target_status, content_hash=row.content_hash, natural_key=row.natural_key,
                    contact_id=row.contact_id, document_date=row.document_date)


def read_ledger(ctx: TenantContext, kind: str, source_ids: Iterable[str]) -> dict[str, Recorded]:
    ids = list(dict.fromkeys(source_ids))
    rows: dict[str, Recorded] = {}
    for chunk in batches(ids, _LEDGER_CHUNK):
        rows.update({i: recorded(r) for i, r in ctx.ledger.records(ctx.tenant, kind, chunk).items()})
    return rows


def read_ledger_window(ctx: TenantContext, kind: str, since: date, until: date) -> list[Recorded]:
    """Rows of a kind dated in the window (payments: dated by the paid date)."""
    return [recorded(r) for r in ctx.ledger.records(ctx.tenant, kind).values()
            if r.document_date is not None and since <= r.document_date <= until]


def read_contact_ids(ctx: TenantContext, plans: Iterable[DocumentPlan]) -> dict[str, str]:
    """Autotask company id → the Xero ContactID the ledger records for it."""
    numbers = sorted({p.contact.number for p in plans if p.contact})
    rows = {}
    for chunk in batches(numbers, _LEDGER_CHUNK):
        rows.update(ctx.ledger.records(ctx.tenant, KIND_CONTACT, chunk))
    return {n: r.target_id for n, r in rows.items() if r.state == DocState.SYNCED and r.target_id}


# ---- Xero ------------------------------------------------------------------------------------------
def _xero_day(day: date) -> str:
    return f"DateTime({day.year}, {day.month:02d}, {day.day:02d})"


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class _Read:
    what: str
    call: Callable[[], list[XeroDocument]]


def xero_reads(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan], rows: Iterable[Recorded],
               contact_ids: dict[str, str]) -> list[_Read]:
    """The reads that find what Xero holds for these documents, one per call (or per few calls)."""
    xero, reads = ctx.target(kind), []
    rows = list(rows)
    ids = sorted({r.target_id for r in rows if r.target_id and r.state in (SYNCED, VOIDED)})
    for chunk in batches(ids, CHUNK):
        reads.append(_Read("by id", lambda chunk=chunk: xero.find(kind, ids=chunk)))
    keyed: dict[KeyKind, list[DocumentPlan]] = {}
    for p in plans:
        if p.natural_key and p.natural_key_kind is not None:
            keyed.setdefault(p.natural_key_kind, []).append(p)
    numbers = sorted({p.natural_key for k in (KeyKind.NUMBER, KeyKind.CONTACT_NUMBER) for p in keyed.get(k, [])})
    if kind.endpoint == "PurchaseOrders" and len(ids) + len(numbers) > PURCHASE_ORDERS_ONE_BY_ONE:
        # Xero reads purchase orders one id or number a call: past a few, its pages of 100 cost fewer calls.
        return [_Read("every purchase order", lambda: xero.find(kind))]
    for chunk in batches(numbers, CHUNK):
        reads.append(_Read("by number", lambda chunk=chunk: xero.find(kind, numbers=chunk)))
    linked = keyed.get(KeyKind.URL, [])
    if linked:
        # Xero numbers them: this app's documents of their contacts, in their dates, matched on the Url.
        dates = [p.date for p in linked if p.date]
        where = f"Date>={_xero_day(min(dates))} AND Date<={_xero_day(max(dates))}" if dates else None
        contacts = sorted({contact_ids[p.contact.number] for p in linked if p.contact and p.contact.number in contact_ids}
                          | {r.contact_id for r in rows if r.contact_id})
        for chunk in batches(contacts, CHUNK):
            reads.append(_Read("by link", lambda chunk=chunk: xero.find(kind, contact_ids=chunk, created_by_my_app=True,
                                                                        where=where)))
    references = sorted({p.natural_key for p in keyed.get(KeyKind.REFERENCE, [])})
    for chunk in batches(references, REFERENCE_CHUNK):
        where = " OR ".join(f'Reference=="{_quoted(r)}"' for r in chunk)
        reads.append(_Read("by reference", lambda where=where: xero.find(kind, where=where)))
    return reads


def recorded_reads(ctx: TenantContext, kind: DocumentKind, rows: list[Recorded]) -> list[_Read]:
    """Reads for documents only the ledger expects (payments): by id, and by their marker for copies."""
    xero, reads = ctx.target(kind), []
    ids = sorted({r.target_id for r in rows if r.target_id and r.state == SYNCED})
    for chunk in batches(ids, CHUNK):
        reads.append(_Read("by id", lambda chunk=chunk: xero.find(kind, ids=chunk)))
    markers = sorted({r.natural_key for r in rows if r.natural_key and r.state == SYNCED})
    for chunk in batches(markers, CHUNK):
        reads.append(_Read("by marker", lambda chunk=chunk: xero.find(kind, numbers=chunk)))
    return reads


@task(name="reconcile-read-xero", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def read_xero(reads: list[_Read], on_read: Callable[[], None] | None = None) -> list[XeroDocument]:
    """Run the reads; each document once, whichever reads found it. Reads only: safe to retry."""
    found: dict[tuple[str, str], XeroDocument] = {}
    for read in reads:
        for doc in read.call():
            found[(doc.kind, doc.id)] = doc
        if on_read is not None:
            on_read()
    return list(found.values())


# ---- --repair: the pipeline's own ledger writes ------------------------------------------------------
@task(name="reconcile-repair-ledger", cache_policy=NONE)
def repair_ledger(ctx: TenantContext, checked: list[Checked], plans: dict[tuple[str, str], DocumentPlan]) -> None:
    """Record each document found in Xero (as resolving a lost answer does), and release each missing one
    so the flow's run sends it again. A row that a run is sending now is left to that run."""
    logger = get_run_logger()
    for c in checked:
        f = c.finding
        if f.repair not in (Repair.RECORD, Repair.RESEND):
            continue
        row = ctx.ledger.records(ctx.tenant, f.kind, [f.source_id]).get(f.source_id)
        if row is not None and row.state == SENDING:
            c.note = "left alone: a run is sending it now; reconcile again when it ends"
            continue
        if f.repair == Repair.RECORD:
            plan = plans.get((f.kind, f.source_id))
            if plan is None or (row is not None and row.state == VOIDED):
                c.note = "not recorded: the ledger row changed since it was read; reconcile again"
                continue
            doc_kind = plan.natural_key_kind.value if plan.natural_key_kind else None
            ctx.ledger.upsert_synced(ctx.tenant, f.kind, f.source_id, target_id=f.xero_id, content_hash=f.content_hash,
                                     source_number=plan.source_number, target_number=f.xero_number,
                                     natural_key=plan.natural_key, natural_key_kind=doc_kind)
            ctx.ledger.record_synced(ctx.tenant, f.kind, f.source_id, target_id=f.xero_id, target_number=f.xero_number,
                                     target_status=f.xero_status, target_total=f.xero_total)
            c.repaired, c.note = True, f"recorded {f.xero_number or f.xero_id} in the ledger"
            logger.info("recorded %s %s: Xero holds it as %s", KINDS[f.kind].noun, f.source_number, f.xero_number)
        elif row is not None and row.state == SYNCED and row.target_id == f.xero_id:
            ctx.ledger.release(ctx.tenant, f.kind, f.source_id)
            c.released, c.note = True, "released: the sync sends it again"
            logger.info("released %s %s: Xero does not hold it; the sync sends it again", KINDS[f.kind].noun,
                        f.source_number)
        else:
            c.note = "not released: the ledger row changed since it was read; reconcile again"


def note_flow_outcomes(checked: list[Checked], flow_name: str, outcomes: list[Outcome] | None, failure: str | None) -> None:
    """What the flow's run did to each finding it was run for."""
    by_document = {(o.kind, o.source_id): o for o in outcomes or []}
    for c in checked:
        f = c.finding
        if KIND_FLOWS[f.kind] != flow_name or not (f.repair == Repair.RUN or c.released):
            continue
        if failure is not None:
            c.note = f"the {flow_name} run did not complete: {failure}"
            continue
        o = by_document.get((f.kind, f.source_id))
        if o is not None and o.result in REPAIRED:
            c.repaired = True
            c.note = f"{o.action} by the {flow_name} run" + (f": {o.xero_number}" if o.xero_number else "")
        elif o is not None:
            c.note = f"the {flow_name} run left it {o.action}" + (f": {o.reason}" if o.reason else "") + (
                f" (fix: {o.fix})" if o.fix else "")
        else:
            c.note = f"the {flow_name} run did not take it up"


def _reading(ctx: TenantContext) -> TenantContext:
    """The context the planning reads with: it creates no Xero items (items.create_missing is a real run's
    write). Item codes are assigned all the same, so the plans and their hashes are the sync's."""
    items = ctx.mapping.items.model_copy(update={"create_missing": False})
    return dataclasses.replace(ctx, mapping=ctx.mapping.model_copy(update={"items": items}))


def compare_window(ctx: TenantContext, summary: ReconcileSummary, progress, specs: dict) -> dict[tuple[str, str], DocumentPlan]:
    """Plan the window with the flows' own reading and planning (`specs`: flow name -> FlowSpec), read the
    ledger and Xero for every kind asked, and compare: the findings go into `summary`. Returns the plans."""
    logger = get_run_logger()
    since, until = summary.since, summary.until
    wanted = [f for f in specs if any(KIND_FLOWS[k] == f for k in summary.kinds)]
    plans: dict[str, list[DocumentPlan]] = {}
    if wanted:
        reference = read_xero_reference(ctx)
        for step, flow_name in enumerate(wanted, start=1):
            planned = specs[flow_name].read_and_plan(_reading(ctx), since, until, [], reference, bounded=True)
            summary.autotask_calls += planned.autotask_calls
            for kind in summary.kinds:
                if KIND_FLOWS[kind] == flow_name:
                    plans[kind] = [p for p in planned.plans if p.kind == kind]
            update_progress_artifact(progress, progress=30.0 * step / len(wanted))

    # Everything Xero is asked, known before the first call, so the progress bar moves with each one.
    work: list[tuple[str, list, dict, dict, list]] = []
    for kind_name in summary.kinds:
        kind = KINDS[kind_name]
        if kind_name in plans:
            mine = plans[kind_name]
            rows = read_ledger(ctx, kind_name, [p.source_id for p in mine])
            contact_ids = read_contact_ids(ctx, mine)
            work.append((kind_name, mine, rows, contact_ids, xero_reads(ctx, kind, mine, rows.values(), contact_ids)))
        else:
            rows = read_ledger_window(ctx, kind_name, since, until)
            work.append((kind_name, [], {r.source_id: r for r in rows}, {}, recorded_reads(ctx, kind, rows)))
    total = max(sum(len(w[4]) for w in work), 1)
    done = 0

    def on_read() -> None:
        nonlocal done
        done += 1
        update_progress_artifact(progress, progress=30.0 + 65.0 * done / total)

    for kind_name, mine, rows, contact_ids, reads in work:
        held = read_xero(reads, on_read)
        kind = KINDS[kind_name]
        result = (compare(kind, mine, rows, held, contact_ids) if kind_name in plans
                  else reconcile_recorded(kind, list(rows.values()), held))
        summary.checked += [Checked(f) for f in result.findings]
        summary.compared += result.compared
        summary.set_aside += result.set_aside
        summary.in_flight += result.in_flight
        summary.skipped += result.skipped
        logger.info("%ss: %d compared, %d findings", kind.noun, result.compared, len(result.findings))
    for c in summary.checked:
        f = c.finding
        logger.warning("%s %s %s (%s): expected %s, Xero %s; fix: %s", KINDS[f.kind].noun, f.source_number,
                       f.problem.value, f.what, f.expected, f.found, f.fix)
    return {(p.kind, p.source_id): p for mine in plans.values() for p in mine}

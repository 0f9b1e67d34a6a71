"""The one flow body every document flow runs: a flow is a `FlowSpec` and a few lines that call `run`.

choose the window → check the tenant → resolve answers a dead run never got → read and plan (the
flow's own part) → contacts → documents in batches of 50 (`tasks.sync.sync_documents`) → PDFs →
report. Nothing here knows a document type: the spec names its kinds and its reading and planning.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
from prefect import get_run_logger, runtime
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NONE
from prefect.states import Completed, Failed

from atx.check import PreflightFailed
from atx.context import TenantContext, open_tenant
from atx.settings import SettingsError
from clients.autotask import metered
from core import windows
from core.documents import KINDS, DocumentKind, DocumentPlan, SetAside, TargetError, TargetLimitReached, batches
from core.mapping import MappingError
from ledger import DocState
from core.invoices import XeroReference
from ledger.migrations import LedgerTooNew
from pipeline.garbage import spaced_out_collections
from tasks.attachments import FetchPdf, attach_pdfs
from tasks.contacts import Contacts, sync_contacts
from tasks.outcomes import NEEDS_A_PERSON, Outcome, Result
from tasks.reference import read_xero_reference
from tasks.report import NOT_ROUTED, RunSummary, publish_failure, publish_report
from tasks.sync import not_sent, prefect_run_alive, resolve_rows, resolve_unanswered, sync_documents
from tasks.tenancy import check_before_writing, deployment_tenant
from tasks.prefect_task import task

# Failures whose message is written for a person (what is wrong, and the fix): the run fails with that message
# and a report, without a traceback. Anything else is a bug, and keeps its traceback.
EXPECTED_FAILURES = (PreflightFailed, SettingsError, MappingError, windows.WindowError, TargetError, LedgerTooNew)
# Documents a person must look at, each named in the run's log (the first of each kind per batch).
LOGGED_PER_BATCH = 10


@dataclass
class Planned:
    """What a flow's reading and planning hands the pipeline."""

    plans: list[DocumentPlan]
    companies: pd.DataFrame                 # the companies the plans' contacts are made from
    contacts: list[dict] = field(default_factory=list)      # their primary contacts
    currencies: list[dict] = field(default_factory=list)    # Autotask Currencies (contact default currency)
    outcomes: list[Outcome] = field(default_factory=list)   # reported before any send (routing, ...)
    autotask_calls: int = 0
    supplier: bool = False                  # the contacts are suppliers (bills), not customers
    other_tenants: int = 0                  # documents routing gave to another tenant (counted, never listed)


# (context, since, until, ids the ledger holds as unfinished, Xero's settings) -> Planned. Called with
# bounded=True for a backfill chunk: read only what belongs to the window, not everything since it began.
ReadAndPlan = Callable[..., Planned]


@dataclass(frozen=True)
class FlowSpec:
    name: str                               # the flow's name: "invoices", "bills"
    kinds: tuple[DocumentKind, ...]
    read_and_plan: ReadAndPlan
    fetch_pdf: FetchPdf | None = None       # attachments, for kinds that carry them
    # Ledger housekeeping a real run (never a dry run) does once the plans are known.
    before_send: Callable[[TenantContext, list[DocumentPlan]], None] | None = None
    high_water_key: str | None = None       # where the window's end is kept (default: the flow's name)
    # Plans revised once their Xero contacts are known (a tax taken from the contact), before any send.
    after_contacts: Callable[[TenantContext, list[DocumentPlan], Contacts], list[DocumentPlan]] | None = None
    # Documents planned once `kinds` are sent, from what the ledger then holds (the write-back to Autotask of
    # the numbers Xero gave), sent through the same sync_documents; their kinds are resolved like the others.
    follow_up: Callable[[TenantContext], list[DocumentPlan]] | None = None
    follow_up_kinds: tuple[DocumentKind, ...] = ()

    @property
    def high_water(self) -> str:
        return self.high_water_key or self.name


@task(name="choose-window", cache_policy=NONE)
def choose_window(ctx: TenantContext, flow: str, since: date | None, until: date | None) -> tuple[date, date]:
    """Parameters win; otherwise pick up where the last completed run ended, with an overlap."""
    until = until or date.today()
    if since is None:
        high_water = ctx.ledger.high_water(ctx.tenant, flow)
        since = windows.default_since(until, high_water, ctx.settings.lookback_days, ctx.settings.first_sync_days,
                                      date.today())
    return windows.check_window(since, until)  # WindowError (a ValueError) when it starts after it ends


@task(name="advance-high-water", cache_policy=NONE)
def advance_high_water(ctx: TenantContext, flow: str, until: date) -> None:
    # Never past today: a run up to 9999-12-31 must not leave every later default window empty.
    ctx.ledger.advance_high_water(ctx.tenant, flow, windows.high_water_mark(until, date.today()))


def _label_run(name: str, tenant: str) -> None:
    """Name the run after its real window and tag it with the tenant, however it was started."""
    from prefect.client.orchestration import get_client

    tags = sorted(set(runtime.flow_run.tags) | {f"tenant:{tenant}"})
    with get_client(sync_client=True) as client:
        client.update_flow_run(runtime.flow_run.id, name=name, tags=tags)


def run_name() -> str:
    p = runtime.flow_run.parameters
    window = f"{p.get('since') or 'last run'}..{p.get('until') or 'today'}"
    return f"{runtime.flow_run.flow_name} · {p['tenant']} · {window}"


def run(spec: FlowSpec, tenant: str, since: date | None, until: date | None, dry_run: bool, only_window: bool = False,
        only_ids: list[str] | None = None):
    """The flow body: every step a task, every document through sync_documents.

    `only_window`: a backfill chunk. It reads only its own days (unfinished documents dated in it, not
    all of them) and leaves the high-water mark of the scheduled runs where it is.

    `only_ids`: only these documents (source ids), read by id whatever their date (`atx ledger resend`).
    They go the same way as in any run (read, plan, claim, send, record), so a document already in Xero is
    never sent again; everything else the window holds is left alone, and so is the high-water mark.

    The run ends Completed when there is nothing for a person; "Needs attention" (Completed) when documents
    were set aside, need a person or were not routed; "Stopped early" (Completed) at an API limit or the daily
    call budget; "Unfinished" (Failed) when another run still holds documents; Failed, with a report saying
    what to fix, when it cannot sync at all."""
    refused = refused_for_another_tenant(spec.name, tenant)
    if refused is not None:
        return refused
    summary = None
    try:
        if since is not None and until is not None:
            windows.check_window(since, until)  # before any task: a window backwards is the person's to fix
        ctx = open_tenant(tenant, str(runtime.flow_run.id))
        if not dry_run:  # a dry run leaves the ledger as it found it
            # The audit trail keeps audit_days: older entries go as each run starts (one DELETE).
            ctx.ledger.audit.purge(tenant, ctx.settings.audit_days)
        since, until = choose_window(ctx, spec.high_water, since, until)
        only = f" · only {', '.join(only_ids)}" if only_ids else ""
        _label_run(f"{spec.name} · {tenant} · {since}..{until}{only}" + (" · dry run" if dry_run else ""), tenant)
        summary = RunSummary(tenant=tenant, since=since, until=until, dry_run=dry_run, flow=spec.name,
                             only_ids=list(only_ids) if only_ids else None,
                             heartbeat_timeout_seconds=ctx.settings.heartbeat_timeout_seconds,
                             xero_links=not ctx.settings.xero.api_base)
        return _run(ctx, spec, summary, only_window)
    except PreflightFailed as exc:
        return cannot_sync(spec.name, tenant, exc, "the window and the high-water mark are where they were.")
    except EXPECTED_FAILURES as exc:
        return _failed(spec.name, tenant, "failed", [_one_line(str(exc))], _what_was_kept(summary))
    except Exception as exc:
        # A bug: the report says so, and the traceback stays in the run's log and state for whoever fixes it.
        _failed(spec.name, tenant, "failed", [f"{type(exc).__name__}: {_one_line(str(exc))}"],
                _what_was_kept(summary) + " The run's log has the details.")
        raise


def _run(ctx: TenantContext, spec: FlowSpec, summary: RunSummary, only_window: bool):
    tenant, dry_run, until = ctx.tenant, summary.dry_run, summary.until
    xero_calls_before = ctx.xero.calls  # the gateway is shared by the process's runs: count only this one's

    # The heartbeat tells other runs this one is alive while it holds documents `sending` (ledger/heartbeat.py).
    # Every Autotask call of the run is counted: the preflight's, the reads', the PDFs' and the write-backs'.
    with metered() as autotask_calls, spaced_out_collections(), \
            ctx.ledger.heartbeats.beating(ctx.run_id, tenant, spec.name, every=ctx.settings.heartbeat_seconds):
        try:
            planned = _check_and_read(ctx, spec, summary, only_window)
            if planned is not None:
                summary.outcomes += planned.outcomes
                summary.other_tenants = planned.other_tenants
                _log_for_a_person(summary, planned.outcomes)
                _sync(ctx, spec, planned, summary)
        finally:
            ctx.xero.settle_calls()  # calls taken from the day's budget and not made go back to it
    held = summary.count(Result.IN_FLIGHT)
    if summary.stopped:
        get_run_logger().warning("stopped early, the high-water mark is not moved: %s", summary.stopped)
    elif held:
        get_run_logger().warning("%d documents are still held by another run; the high-water mark is not moved", held)
    elif not dry_run and not only_window and not summary.only_ids:
        advance_high_water(ctx, spec.high_water, until)
    _token_age(ctx, summary)
    summary.xero_calls = ctx.xero.calls - xero_calls_before
    summary.autotask_calls = autotask_calls.count
    summary.run_id, summary.audited_writes = ctx.run_id, ctx.ledger.audit.count(ctx.run_id)
    publish_report(summary)
    return _final_state(summary)


def refused_for_another_tenant(flow: str, tenant: str):
    """A run of one tenant's deployment asked for another tenant: the Failed state that refuses it, before
    anything is read; None when the run may go on."""
    owner = deployment_tenant()
    if owner is None or owner == tenant:
        return None
    return _failed(flow, owner, "refused", [
        f"this run of the deployment {flow}/{owner} asked for tenant {tenant!r}; a tenant's deployment "
        f"syncs only its own tenant. Fix: run the deployment {flow}/{tenant} instead"],
        "Nothing was read or written.")


def cannot_sync(flow: str, tenant: str, exc: PreflightFailed, kept: str):
    """The preflight found problems: each with its fix, and nothing written (`kept`: what stays as it was)."""
    return _failed(flow, tenant, "cannot sync", [_one_line(f"{p.area}: {p.problem} Fix: {p.fix}") for p in exc.problems],
                   f"Nothing was written; {kept}",
                   first=f"tenant {tenant} cannot sync until this is fixed (nothing was written):")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _what_was_kept(summary: RunSummary | None) -> str:
    if summary is None:
        return "Nothing was read or written."
    return ("Whatever was sent before it stopped is recorded in the ledger, and the window and the high-water mark "
            "are where they were: the next run goes on from there.")


def _failed(flow: str, tenant: str, headline: str, problems: list[str], kept: str, *, first: str | None = None):
    """A run that cannot sync: each problem on a line of its own in the state's message and the log, and a
    one-paragraph report with the fix under the run's summary key, so that the dashboard shows what to do."""
    logger = get_run_logger()
    for problem in problems:
        logger.error("%s", problem)
    publish_failure(flow, tenant, headline,
                    f"The run {'cannot sync' if headline == 'cannot sync' else 'failed'}: " + " ".join(
                        p if p.endswith(".") else p + "." for p in problems) + f" {kept} Fix it, then run it again.")
    lines = [first] if first else []
    return Failed(message="\n".join(lines + [f"- {p}" if first else p for p in problems]))


def _token_age(ctx: TenantContext, summary: RunSummary) -> None:
    """Warn when Xero's refresh token has gone unused for 45 days (it dies at 60). Read after the run, so a
    run that refreshed the token does not warn about the one it replaced."""
    from atx.check import refresh_token_warning_for

    text = refresh_token_warning_for(ctx.settings)
    if text:
        summary.warnings.append(text)
        get_run_logger().warning("%s", text)


def _check_and_read(ctx: TenantContext, spec: FlowSpec, summary: RunSummary, only_window: bool) -> Planned | None:
    """Check the tenant, resolve dead runs' rows, read and plan. None when an API limit (the tenant's daily
    Xero call budget, Xero's own day limit) stops the run before it has read its window: the window is
    kept, and the next run reads it all again."""
    try:
        # A day whose budget is spent costs the run no Xero call at all, and is no failure.
        ctx.xero.check_call_budget()
        # Stops the run before any write when credentials or mapped Xero names are wrong (PreflightFailed).
        checked = check_before_writing(ctx.tenant, spec.name)
        if checked.problems:
            raise PreflightFailed(ctx.tenant, checked.problems)
        if checked.stopped:
            raise TargetLimitReached(checked.stopped)
        revisit: list[str] = []
        if not summary.dry_run:
            try:
                # Answers a dead run never got are looked up first, so documents found missing are read again below.
                resolve_unanswered(ctx, spec.kinds + spec.follow_up_kinds)
            except TargetLimitReached as exc:
                summary.stopped = str(exc)
            revisit = ctx.ledger.unfinished(ctx.tenant, [k.name for k in spec.kinds],
                                            between=(summary.since, summary.until) if only_window else None)
        if summary.only_ids:
            # Read by id, as an unfinished document is; the window read is only its own days.
            return _only(spec.read_and_plan(ctx, summary.since, summary.until, list(summary.only_ids),
                                            read_xero_reference(ctx), bounded=True), summary.only_ids)
        return spec.read_and_plan(ctx, summary.since, summary.until, revisit, read_xero_reference(ctx),
                                  bounded=only_window)
    except TargetLimitReached as exc:
        summary.stopped, summary.window_unread = str(exc), True
        return None


def _only(planned: Planned, ids: list[str]) -> Planned:
    """What planning made of these documents alone: their plans, and their outcomes found before any send
    (routed elsewhere, filtered out by the mapping)."""
    wanted = set(ids)
    return dataclasses.replace(planned, plans=[p for p in planned.plans if p.source_id in wanted],
                               outcomes=[o for o in planned.outcomes if o.source_id in wanted], other_tenants=0)


def _sync(ctx: TenantContext, spec: FlowSpec, planned: Planned, summary: RunSummary) -> None:
    plans = planned.plans
    done: set[tuple[str, str]] = set()
    try:
        if summary.stopped:
            raise TargetLimitReached(summary.stopped)
        # A dry run finds the contacts and revises the plans as a real run would, writing nothing, so that its
        # documents compare with the ledger's as the real run's will ("already in Xero", not "planned").
        plans, contacts = _with_contacts(ctx, planned, summary, dry_run=summary.dry_run)
        contact_ids = contacts.ids
        if spec.after_contacts is not None:
            plans = spec.after_contacts(ctx, plans, contacts)
        if not summary.dry_run:
            _forget_other_kinds(ctx, spec, plans)
            if spec.before_send is not None:
                spec.before_send(ctx, plans)
        total, sent = len(plans), 0
        progress = create_progress_artifact(progress=0.0, key=f"{summary.key}-progress",
                                            description=_progress_text(spec, ctx.tenant, 0, total))
        for kind in spec.kinds:
            for batch in batches([p for p in plans if p.kind == kind.name]):
                result = sync_documents(ctx, kind, batch, contact_ids, dry_run=summary.dry_run)
                summary.outcomes += result.outcomes
                _log_for_a_person(summary, result.outcomes)
                done |= {(p.kind, p.source_id) for p in batch}
                sent += len(batch)
                update_progress_artifact(progress, progress=100.0 * sent / max(total, 1),
                                         description=_progress_text(spec, ctx.tenant, sent, total))
                if result.stopped:
                    raise TargetLimitReached(result.stopped)
        if not summary.dry_run:
            _wait_for_other_runs(ctx, spec, plans, contact_ids, summary)
        update_progress_artifact(progress, progress=100.0, description=_progress_text(spec, ctx.tenant, total, total))
        if spec.follow_up is not None:
            _follow_up(ctx, spec, summary)
        if spec.fetch_pdf is not None and not summary.dry_run:
            # After the documents, which come first: the PDFs spend what the day's call budget leaves.
            attached = attach_pdfs(ctx, spec.kinds, spec.fetch_pdf, only_ids=summary.only_ids)
            summary.attach_failures = attached.failures
            if attached.attached or attached.left:
                summary.pdfs = attached.text
    except TargetLimitReached as exc:
        # Nothing is lost: what was sent is recorded; the rest has no claim (or a `sending` row that the
        # next run looks up first), and the window stays where it was, so the next run picks it all up.
        summary.stopped = str(exc)
        summary.outcomes += [not_sent(p, str(exc)) for p in plans if (p.kind, p.source_id) not in done and p.sendable]


def _progress_text(spec: FlowSpec, tenant: str, done: int, total: int) -> str:
    return f"{spec.name.capitalize()} for {tenant}: {done} of {total} documents done"


def _log_for_a_person(summary: RunSummary, outcomes: list[Outcome]) -> None:
    """What a person must act on, in the flow run's own log, where it stands out from the tasks' lines."""
    logger = get_run_logger()
    would = "would be " if summary.dry_run else ""
    shown: dict[str, int] = {}

    def tell(what: str, text: str, *args) -> None:
        shown[what] = shown.get(what, 0) + 1
        if shown[what] <= LOGGED_PER_BATCH:
            logger.warning(text, *args)

    for o in outcomes:
        noun = KINDS[o.kind].noun
        if o.result == Result.SET_ASIDE:
            tell("set aside", f"{would}set aside: %s %s: %s (fix: %s)", noun, o.source_number, o.reason, o.fix)
        elif o.result in NEEDS_A_PERSON:
            tell("attention", "needs a person: %s %s: %s (what to do: %s)", noun, o.source_number, o.reason, o.fix)
        elif o.result == Result.SKIPPED and (o.detail or "").startswith(NOT_ROUTED):
            tell("routing", "not routed: %s %s: %s (fix: %s)", noun, o.source_number, o.detail, o.fix)
    keys = {"set aside": f"{summary.key}-set-aside", "attention": f"{summary.key}-attention",
            "routing": summary.routing_key}
    for what, n in shown.items():
        if n > LOGGED_PER_BATCH:
            logger.warning("... and %d more (%s): see the artifact %s", n - LOGGED_PER_BATCH, what, keys[what])


def _wait_for_other_runs(ctx: TenantContext, spec: FlowSpec, plans: list[DocumentPlan], contact_ids: dict[str, str],
                         summary: RunSummary, kinds: tuple[DocumentKind, ...] | None = None) -> None:
    """Documents another run held `sending` as this one went by. A live run records them within its batch
    (seconds): they are reported as that run's. A run that stops beating was killed: once its heartbeat is
    older than the timeout its documents are looked up in Xero here, and sent when Xero does not hold them.
    So a killed run's documents are resolved within about a minute; any still held after that are left
    in the report, and the run ends unfinished. `kinds`: the plans' kinds (default: the spec's own)."""
    settings = ctx.settings
    deadline = time.monotonic() + settings.heartbeat_timeout_seconds + settings.heartbeat_seconds
    by_key = {(p.kind, p.source_id): p for p in plans}
    logged = False
    while True:
        held = [o for o in summary.outcomes if o.result == Result.IN_FLIGHT and (o.kind, o.source_id) in by_key]
        if not held or time.monotonic() >= deadline:
            return
        if not logged:
            get_run_logger().info("waiting for %d documents another run holds (%s)", len(held),
                                  ", ".join(sorted({o.detail or "run unknown" for o in held})))
            logged = True
        time.sleep(min(2.0, settings.heartbeat_seconds))
        for kind in kinds or spec.kinds:
            ids = [o.source_id for o in held if o.kind == kind.name]
            if not ids:
                continue
            dead = ctx.ledger.stale(ctx.tenant, kind.name, run_id=ctx.run_id, ids=ids, lease=settings.send_lease,
                                    heartbeat_timeout=settings.heartbeat_timeout, owner_alive=prefect_run_alive)
            if dead:
                resolve_rows(ctx, kind, dead)
            rows = ctx.ledger.records(ctx.tenant, kind.name, ids)
            settled = {i for i in ids if i not in rows or rows[i].state != DocState.SENDING}
            if not settled:
                continue
            summary.outcomes = [o for o in summary.outcomes
                                if not (o.kind == kind.name and o.source_id in settled and o.result == Result.IN_FLIGHT)]
            again = []
            for i in sorted(settled):
                outcome = _recorded_by_another_run(ctx, by_key[(kind.name, i)], rows.get(i))
                if outcome is not None:
                    summary.outcomes.append(outcome)
                else:
                    again.append(by_key[(kind.name, i)])
            for batch in batches(again):
                result = sync_documents(ctx, kind, batch, contact_ids)
                summary.outcomes += result.outcomes
                if result.stopped:
                    raise TargetLimitReached(result.stopped)


def _recorded_by_another_run(ctx: TenantContext, plan: DocumentPlan, row) -> Outcome | None:
    """The other run's answer for a document it held, as that run's; None when it is this run's to send."""
    if row is None or row.run_id == ctx.run_id:
        return None
    if row.state in (DocState.SYNCED, DocState.VOIDED) and row.target_id:
        return Outcome.of_row(plan, Result.ALREADY, row, detail=f"sent by run {row.run_id}")
    if row.state == DocState.SET_ASIDE:
        return Outcome.of(plan, Result.SET_ASIDE, reason=row.reason, fix=row.fix, detail=f"by run {row.run_id}")
    return None


def _follow_up(ctx: TenantContext, spec: FlowSpec, summary: RunSummary) -> None:
    """Plan from the ledger what follows the sent documents, and send it through the same pipeline."""
    plans = spec.follow_up(ctx)
    if summary.only_ids:
        plans = [p for p in plans if p.source_id in set(summary.only_ids)]
    for kind in spec.follow_up_kinds:
        for batch in batches([p for p in plans if p.kind == kind.name]):
            result = sync_documents(ctx, kind, batch, {}, dry_run=summary.dry_run)
            summary.outcomes += result.outcomes
            if result.stopped:
                raise TargetLimitReached(result.stopped)
    if not summary.dry_run:
        # A run killed while it wrote back holds these too; met straight after the kill, its heartbeat is
        # still fresh, and only waiting for it to go silent resolves them in this run.
        _wait_for_other_runs(ctx, spec, plans, {}, summary, kinds=spec.follow_up_kinds)


def _with_contacts(ctx: TenantContext, planned: Planned, summary: RunSummary | None = None, *, dry_run: bool = False
                   ) -> tuple[list[DocumentPlan], Contacts]:
    """Ensure the plans' contacts (a dry run only finds them); a document whose contact could not be made is
    set aside, not sent. Existing Xero contacts adopted (and why) go into the run report."""
    numbers = sorted({p.contact.number for p in planned.plans if p.sendable and p.contact})
    contacts = sync_contacts(ctx, planned.companies, planned.contacts, numbers, planned.currencies,
                             supplier=planned.supplier, dry_run=dry_run)
    if summary is not None:
        summary.contacts_adopted += contacts.adopted
        summary.contact_notes += contacts.notes
    if contacts.stopped:
        raise TargetLimitReached(contacts.stopped)
    plans = []
    for p in planned.plans:
        reason = contacts.failed.get(p.contact.number) if p.sendable and p.contact else None
        if reason:
            p = dataclasses.replace(p, set_aside=SetAside(
                f"the Xero contact for company {p.contact.number} could not be created: {reason}",
                "fix the company in Autotask (name, tax number, currency) or the contact in Xero, then rerun"))
        plans.append(p)
    return plans, contacts


def _forget_other_kinds(ctx: TenantContext, spec: FlowSpec, plans: list[DocumentPlan]) -> None:
    """A document now planned as one kind leaves any set-aside row of another kind of this flow behind
    (an invoice whose total turned negative is now a credit note): it would be read again every run."""
    for kind in spec.kinds:
        ids = [p.source_id for p in plans if p.kind == kind.name]
        for other in spec.kinds:
            if other is not kind and ids:
                ctx.ledger.forget_set_aside(ctx.tenant, other.name, ids)


def _final_state(summary: RunSummary):
    """The run's state, named for what a person must do: see the README's *Run states* section."""
    logger = get_run_logger()
    held = [o for o in summary.outcomes if o.result == Result.IN_FLIGHT]
    if held and not summary.stopped:
        shown = ", ".join(f"{o.source_number} ({o.detail or 'run unknown'})" for o in held[:10])
        more = f" and {len(held) - 10} more" if len(held) > 10 else ""
        # Not green: these documents are neither in Xero by this run nor known to be in it by another.
        message = (
            f"{len(held)} documents are still held by another run: {shown}{more}. That run may still record "
            f"them; if it was killed, the next run resolves them (a killed run is known dead "
            f"{summary.heartbeat_timeout_seconds:g} s after its last heartbeat). The high-water mark was not moved; "
            f"{summary.message}")
        logger.warning("%s", message)
        return Failed(name="Unfinished", data=summary, message=message)
    for_a_person = summary.for_a_person()
    look = ("; look at " + ", ".join(f"{what} in the artifact {key}" for what, key in for_a_person)) if for_a_person else ""
    if summary.stopped:
        if summary.window_unread:
            message = (f"stopped early, before reading the window (the next run reads it again): {summary.stopped}")
        else:
            message = (f"stopped early, {summary.count('not sent yet')} documents left for the next run: "
                       f"{summary.stopped}; {summary.message}{look}")
        logger.warning("%s", message)
        return Completed(name="Stopped early", message=message, data=summary)
    if for_a_person:
        message = f"completed with {', '.join(what for what, _ in for_a_person)}{look}; {summary.message}"
        logger.warning("%s", message)
        return Completed(name="Needs attention", message=message, data=summary)
    # Documents whose every answer was lost and that Xero does not hold: pending, and sent by the next run.
    not_sent = summary.count(Result.NOT_SENT)
    if not_sent:
        message = f"completed with {not_sent} not sent yet (answers lost; the next run looks them up and sends them); {summary.message}"
        logger.warning("%s", message)
        return Completed(message=message, data=summary)
    logger.info("%s", summary.message)
    return Completed(message=summary.message, data=summary)

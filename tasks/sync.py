"""The document pipeline's shell: the one implementation of claim, send, record and resolve.

Every kind goes through `sync_documents`. For a batch of at most 50 plans of one kind it reads the
ledger rows, looks up in Xero what decide() needs (documents by id when the ledger knows them, by
natural key when it does not), decides each plan, and carries the decisions out:

1. **Claim**: rows are marked `sending` with the batch's idempotency key and committed before the call.
2. **Send** with summarizeErrors=false, so each element answers on its own.
3. **Record** each element at once: synced with Xero's id and number, or set aside with the reason.
4. **Resolve**: when an answer is lost, or a run died between 1 and 3, the document is looked up by
   its natural key before anything is sent again (`resolve_rows`).

Only reads are retried by Prefect; a write is repeated only after a lookup said Xero does not hold it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from prefect import get_run_logger
from prefect.cache_policies import NONE

from atx.context import TenantContext
from clients.autotask import AutotaskAuthError
from clients.xero import XeroAuthError
from core.documents import (
    ALREADY_IN_XERO, ALREADY_VOIDED, GONE, IN_FLIGHT, SKIPPED_BY_A_PERSON, Action, Decision, DocumentKind,
    DocumentPlan, KeyKind, Status, TargetError, TargetLimitReached, TargetOutcomeUnknown, Written, XeroDocument,
    batches, decide, fix_for, number_taken,
)
from core.ledger_rows import skipped_by, skipped_fix
from ledger import Candidate, DocState
from tasks.outcomes import Outcome, Result
from tasks.prefect_task import task

# How far before the attempt a marker lookup reads back (our clock and Xero's may disagree a little).
LOOKUP_MARGIN = timedelta(hours=1)
# Ledgers made before natural keys had a kind of their own prefixed credit-note references so.
_OLD_REFERENCE_PREFIX = "Reference:"


@dataclass
class SyncResult:
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: str | None = None  # why the run stopped sending (a day limit, the call budget); None when it did not


def worth_retrying(task, task_run, state) -> bool:
    """Prefect retries reads, but not into Xero's day limit or a connection that needs a person."""
    try:
        state.result()
    except (TargetLimitReached, XeroAuthError, AutotaskAuthError):
        return False
    except Exception:  # noqa: BLE001 - any other failure of a read is worth another try
        return True
    return True


# ---- answers that never came ---------------------------------------------------------------------
def prefect_run_alive(run_id: str) -> bool:
    """A ledger row's owner is alive while its Prefect flow run is not in a final state."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
    except Exception:  # noqa: BLE001 - an unknown run is not alive
        return False
    return not (run.state and run.state.is_final())


@task(name="resolve-unanswered", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def resolve_unanswered(ctx: TenantContext, kinds: tuple[DocumentKind, ...]) -> None:
    """Rows left `sending` by a run that died: look each up in Xero before it may be sent again."""
    for kind in kinds:
        stale = ctx.ledger.stale(ctx.tenant, kind.name, run_id=ctx.run_id, owner_alive=prefect_run_alive,
                                 lease=ctx.settings.send_lease, heartbeat_timeout=ctx.settings.heartbeat_timeout)
        if stale:
            resolve_rows(ctx, kind, stale)


def resolve_rows(ctx: TenantContext, kind: DocumentKind, rows) -> None:
    """Found in Xero by its natural key → synced; not found → it may be sent again. Each row moves only if it
    is still as read before the lookup: a row another run claimed meanwhile is that run's to record (the
    lookup may have been answered before that run's copy was made)."""
    logger = get_run_logger()
    found = find_by_natural_key(ctx.target(kind), kind, rows)
    for r in rows:
        doc = found.get(r.source_id)
        if doc is not None:
            moved = ctx.ledger.record_synced(ctx.tenant, kind.name, r.source_id, target_id=doc.id, target_number=doc.number,
                                             target_status=doc.status.value if doc.status else None,
                                             target_total=doc.total, version=r.version)
            if moved:
                logger.info("found %s in %s after a lost answer; recorded it, nothing re-sent",
                            doc.number or r.source_number, kind.target)
        elif ctx.ledger.release(ctx.tenant, kind.name, r.source_id, version=r.version):
            logger.info("%s is not in %s after a lost answer; it will be sent again", r.source_number, kind.target)
        else:
            logger.info("%s was taken by another run while it was looked up; left to that run", r.source_number)


def _key_kind(row) -> KeyKind:
    """The row's natural-key kind; a row claimed without one (by a release before kinds were recorded)
    is read from the key's shape, as the ledger migration does."""
    if row.natural_key_kind:
        return KeyKind(row.natural_key_kind)
    if row.natural_key.startswith(("http://", "https://")):
        return KeyKind.URL
    return KeyKind.REFERENCE if row.natural_key.startswith(_OLD_REFERENCE_PREFIX) else KeyKind.NUMBER


def _since(rows) -> datetime | None:
    claimed = [r.claimed_at if r.claimed_at.tzinfo else r.claimed_at.replace(tzinfo=timezone.utc)
               for r in rows if r.claimed_at is not None]
    return min(claimed) - LOOKUP_MARGIN if claimed else None


def _live(docs: list[XeroDocument]) -> list[XeroDocument]:
    return [d for d in docs if d.status not in GONE]


def find_by_natural_key(xero, kind: DocumentKind, rows) -> dict[str, XeroDocument]:
    """source id → the live Xero document that carries the row's natural key."""
    found: dict[str, XeroDocument] = {}
    by_kind: dict[KeyKind, list] = {}
    for r in rows:
        if r.natural_key:
            by_kind.setdefault(_key_kind(r), []).append(r)
    numbered = by_kind.get(KeyKind.NUMBER, [])
    if numbered:
        docs = {d.number: d for d in _live(xero.find(kind, numbers=[r.natural_key for r in numbered]))}
        found.update({r.source_id: docs[r.natural_key] for r in numbered if r.natural_key in docs})
    # A row without a contact id is looked up among all of this app's documents since the attempt:
    # releasing it unlooked-up could send a second copy.
    for contact_id, mine in _by_contact(by_kind.get(KeyKind.URL, [])).items():
        docs = _live(xero.find(kind, contact_ids=[contact_id] if contact_id else [], created_by_my_app=True,
                               modified_since=_since(mine)))
        for r in mine:
            match = [d for d in docs if (d.url or "") == r.natural_key]
            if match:
                found[r.source_id] = match[0]
    for r in by_kind.get(KeyKind.REFERENCE, []):
        reference = r.natural_key.removeprefix(_OLD_REFERENCE_PREFIX).replace('"', '\\"')
        where = f'Reference=="{reference}"' + (f' AND Contact.ContactID==Guid("{r.contact_id}")' if r.contact_id else "")
        docs = _live(xero.find(kind, where=where, modified_since=_since([r])))
        if docs:
            found[r.source_id] = docs[0]
    for contact_id, mine in _by_contact(by_kind.get(KeyKind.CONTACT_NUMBER, [])).items():
        docs = _live(xero.find(kind, numbers=[r.natural_key for r in mine], contact_ids=[contact_id] if contact_id else []))
        for r in mine:
            match = [d for d in docs if d.number == r.natural_key and (not contact_id or d.contact_id == contact_id)]
            if match:
                found[r.source_id] = match[0]
    return found


def _by_contact(rows) -> dict[str, list]:
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r.contact_id or "", []).append(r)
    return groups


# ---- one batch of one kind -------------------------------------------------------------------------
@task(name="sync-documents", cache_policy=NONE)
def sync_documents(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan], contact_ids: dict[str, str],
                   dry_run: bool = False) -> SyncResult:
    """Decide and carry out every plan of one batch (at most 50, one kind); record each as Xero answers."""
    outcomes: dict[str, Outcome] = {}
    try:
        rows, recovered = _rows_after_marker_lookups(ctx, kind, plans, dry_run)
        outcomes.update({i: Outcome.of_row(p, Result.RECOVERED, rows[i]) for p in plans if (i := p.source_id) in recovered})
        # Reads only, in a dry run too: what Xero holds decides an update, a void or a clash. A real run leaves
        # the clash check of numbers Xero refuses twice to Xero's own answer (_after_number_refused).
        docs = lookup(ctx.target(kind), kind, plans, rows, contact_ids, refusal_finds_clashes=not dry_run)
        decisions = {p.source_id: decide(p, rows.get(p.source_id), docs.get(p.source_id)) for p in plans}
        if dry_run:
            return SyncResult([_planned(p, rows.get(p.source_id), decisions[p.source_id], docs.get(p.source_id))
                               for p in plans])
        outcomes.update(_another_runs(ctx, kind, [p for p in plans if decisions[p.source_id].action == Action.CLASH]))
        for p in plans:
            if p.source_id in recovered or p.source_id in outcomes:
                continue
            outcome = _record_decision(ctx, kind, p, rows.get(p.source_id), decisions[p.source_id], docs.get(p.source_id))
            if outcome is not None:
                outcomes[p.source_id] = outcome
        _update(ctx, kind, [p for p in plans if decisions[p.source_id].action == Action.UPDATE], rows, contact_ids, outcomes)
        _remove(ctx, kind, [(p, decisions[p.source_id]) for p in plans
                            if decisions[p.source_id].action in (Action.VOID, Action.DELETE)], rows, outcomes)
        _send(ctx, kind, [p for p in plans if decisions[p.source_id].action == Action.SEND], rows, contact_ids, outcomes)
    except TargetLimitReached as exc:
        # The target did nothing with the refused call; what this batch recorded stays recorded. The rest is
        # reported as left for the next run, and the flow stops sending.
        get_run_logger().warning("stopping: %s", exc)
        for p in plans:
            outcomes.setdefault(p.source_id, not_sent(p, str(exc)))
        return SyncResult([outcomes[p.source_id] for p in plans], stopped=str(exc))
    return SyncResult([outcomes[p.source_id] for p in plans if p.source_id in outcomes])


def _another_runs(ctx: TenantContext, kind: DocumentKind, clashing: list[DocumentPlan]) -> dict[str, Outcome]:
    """A clash found with a document another run of this tenant claimed after this batch read the ledger is
    that run's own document, not a clash: read the rows again and report those as the other run's."""
    if not clashing:
        return {}
    rows = ctx.ledger.records(ctx.tenant, kind.name, [p.source_id for p in clashing])
    found: dict[str, Outcome] = {}
    for p in clashing:
        row = rows.get(p.source_id)
        if row is None or not row.run_id or row.run_id == ctx.run_id:
            continue
        if row.state == DocState.SENDING:
            found[p.source_id] = Outcome.of(p, Result.IN_FLIGHT, detail=held_by(row))
        elif row.state in (DocState.SYNCED, DocState.VOIDED):
            found[p.source_id] = Outcome.of_row(p, Result.ALREADY, row, detail=f"sent by run {row.run_id}")
    return found


def held_by(row) -> str | None:
    return f"held by run {row.run_id}" if row is not None and row.run_id else None


def not_sent(plan: DocumentPlan, reason: str) -> Outcome:
    return Outcome.of(plan, Result.NOT_SENT, detail="an API limit or the daily call budget was reached; the next run sends it",
                      reason=reason, fix="nothing to do: the next run picks it up")


def _rows_after_marker_lookups(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan],
                               dry_run: bool) -> tuple[dict, set[str]]:
    """Documents Xero numbers carry no number Xero could refuse twice. One attempted before (its answer
    lost, its row waiting again) is looked up by its marker before it may be sent. Returns the rows
    and the ids found in Xero so."""
    rows = ctx.ledger.records(ctx.tenant, kind.name, [p.source_id for p in plans])
    attempted = [rows[p.source_id] for p in plans
                 if p.sendable and p.natural_key_kind in (KeyKind.URL, KeyKind.REFERENCE) and p.source_id in rows
                 and rows[p.source_id].state in (DocState.PENDING, DocState.SET_ASIDE) and rows[p.source_id].attempts]
    if not attempted or dry_run:
        return rows, set()
    resolve_rows(ctx, kind, attempted)
    rows = ctx.ledger.records(ctx.tenant, kind.name, [p.source_id for p in plans])
    return rows, {r.source_id for r in attempted if rows[r.source_id].state == DocState.SYNCED}


def lookup(xero, kind: DocumentKind, plans: list[DocumentPlan], rows: dict, contact_ids: dict[str, str], *,
           refusal_finds_clashes: bool = False) -> dict[str, XeroDocument]:
    """What decide() needs from Xero: documents the ledger knows, by id, when they changed or were voided;
    documents it does not know, by natural key, so a clash is found before anything is written.
    `refusal_finds_clashes`: numbers the kind's Xero type refuses twice are not looked up; the send's
    refusals are (a batch of 50 new invoices costs one call, not two)."""
    found: dict[str, XeroDocument] = {}
    known = {p.source_id: rows[p.source_id].target_id for p in plans
             if p.source_id in rows and rows[p.source_id].state == DocState.SYNCED and rows[p.source_id].target_id
             and (p.void or rows[p.source_id].content_hash != p.content_hash)}
    if known:
        docs = {d.id: d for d in xero.find(kind, ids=list(known.values()))}
        found.update({source_id: docs[target] for source_id, target in known.items() if target in docs})
    fresh = [p for p in plans if p.sendable and p.natural_key
             and (p.source_id not in rows or rows[p.source_id].state in (DocState.PENDING, DocState.SET_ASIDE))]
    numbered = [p for p in fresh if p.natural_key_kind == KeyKind.NUMBER
                and not (refusal_finds_clashes and kind.refuses_taken_numbers)]
    if numbered:
        docs = {d.number: d for d in xero.find(kind, numbers=[p.natural_key for p in numbered]) if d.status != Status.DELETED}
        found.update({p.source_id: docs[p.natural_key] for p in numbered if p.natural_key in docs})
    # Numbers unique only per contact (bills): one read for the batch's numbers and contacts together,
    # each plan then matched on both (not a read per contact).
    of_contact = {p.source_id: contact_ids[p.contact.number] for p in fresh
                  if p.natural_key_kind == KeyKind.CONTACT_NUMBER and contact_ids.get(p.contact.number)}
    if of_contact:
        mine = [p for p in fresh if p.source_id in of_contact]
        docs = _live(xero.find(kind, numbers=list(dict.fromkeys(p.natural_key for p in mine)),
                               contact_ids=list(dict.fromkeys(of_contact.values()))))
        for p in mine:
            match = [d for d in docs if d.number == p.natural_key and d.contact_id == of_contact[p.source_id]]
            if match:
                found[p.source_id] = match[0]
    return found


def _planned(plan: DocumentPlan, row, decision: Decision, doc: XeroDocument | None = None) -> Outcome:
    """A dry run shows what a real run would do, from the ledger and Xero's answers, writing nothing: the
    same result a real run reports where it would write nothing either (already in Xero, set aside, a
    person's), and "planned" with what it would write otherwise."""
    action = decision.action
    if action == Action.SKIP and row is not None and row.target_id:
        return Outcome.of_row(plan, Result.ALREADY_VOIDED if decision.why == ALREADY_VOIDED else Result.ALREADY, row)
    if action in (Action.SET_ASIDE, Action.CLASH):
        return Outcome.of(plan, Result.SET_ASIDE, reason=decision.why, fix=decision.fix)
    if action == Action.SKIP:
        return _skip(plan, row, decision)
    if action == Action.NEEDS_PERSON:
        status = doc.status.value if doc is not None and doc.status else "missing"
        return Outcome.of_row(plan, Result.NEEDS_ATTENTION if plan.void else Result.CHANGED_AFTER_APPROVAL, row,
                              status=status, reason=decision.why, fix=decision.fix,
                              xero_total=doc.total if doc is not None else None)
    if action == Action.RECORD_VOIDED:
        return Outcome.of_row(plan, Result.ALREADY_VOIDED, row, status=decision.target_status.value)
    if action == Action.ADOPT:
        return Outcome.of(plan, Result.PLANNED, detail=f"found in {plan.document_kind.target}: recorded, not sent",
                          xero_id=doc.id, xero_number=doc.number, xero_total=doc.total,
                          status=doc.status.value if doc.status else None)
    would = {Action.UPDATE: f"update in {plan.document_kind.target}", Action.VOID: "void in Xero",
             Action.DELETE: "delete in Xero (a draft)"}
    if action in would:
        return Outcome.of_row(plan, Result.PLANNED, row, detail=would[action])
    return Outcome.of(plan, Result.PLANNED)


def _skip(plan: DocumentPlan, row, decision: Decision) -> Outcome:
    if row is not None and row.target_id and decision.why in (ALREADY_IN_XERO, ALREADY_VOIDED):
        result = Result.ALREADY if decision.why == ALREADY_IN_XERO else Result.ALREADY_VOIDED
        return Outcome.of_row(plan, result, row, reason=row.attention)
    if row is not None and row.target_id:
        return Outcome.of_row(plan, Result.ALREADY, row, reason=decision.why, fix=decision.fix)
    if decision.why == IN_FLIGHT:
        return Outcome.of(plan, Result.IN_FLIGHT, detail=held_by(row))
    if decision.why == SKIPPED_BY_A_PERSON:
        return skipped_by_a_person(plan, row)
    return Outcome.of(plan, Result.SKIPPED, detail=decision.why)


def skipped_by_a_person(plan: DocumentPlan, row) -> Outcome:
    """A document a person skipped (`atx ledger skip`): reported with their reason, never sent."""
    who = skipped_by(row)
    return Outcome.of(plan, Result.SKIPPED, detail=SKIPPED_BY_A_PERSON,
                      reason=(row.reason or "no reason given") + (f" ({who})" if who else ""), fix=skipped_fix(row))


def _record_decision(ctx: TenantContext, kind: DocumentKind, plan: DocumentPlan, row, decision: Decision,
                     doc: XeroDocument | None) -> Outcome | None:
    """Decisions that need no write to Xero are recorded at once; the others return None."""
    ledger, tenant, logger = ctx.ledger, ctx.tenant, get_run_logger()
    action = decision.action
    if action == Action.SKIP:
        return _skip(plan, row, decision)
    if action in (Action.SET_ASIDE, Action.CLASH):
        ledger.set_aside(tenant, kind.name, plan.source_id, source_number=plan.source_number, reason=decision.why,
                         fix=decision.fix or "", content_hash=plan.content_hash or None, document_date=plan.date)
        logger.warning("set aside %s %s: %s (fix: %s)", kind.noun, plan.source_number, decision.why, decision.fix)
        return Outcome.of(plan, Result.SET_ASIDE, reason=decision.why, fix=decision.fix)
    if action == Action.ADOPT:
        if row is None:  # never claimed: the target already held exactly this write (a kind whose match is ours)
            ledger.upsert_synced(tenant, kind.name, plan.source_id, target_id=doc.id, content_hash=plan.content_hash,
                                 source_number=plan.source_number, target_number=doc.number,
                                 natural_key_kind=plan.natural_key_kind.value if plan.natural_key_kind else None)
        ledger.record_synced(tenant, kind.name, plan.source_id, target_id=doc.id, target_number=doc.number,
                             target_status=doc.status.value if doc.status else None, target_total=doc.total)
        logger.info("found %s in %s already; recorded it, nothing sent", doc.number, kind.target)
        return Outcome.of(plan, Result.RECOVERED, xero_id=doc.id, xero_number=doc.number, xero_total=doc.total,
                          status=doc.status.value if doc.status else None)
    if action == Action.NEEDS_PERSON:
        status = doc.status.value if doc is not None and doc.status else "missing"
        ledger.note(tenant, kind.name, plan.source_id, decision.fix if not plan.void else decision.why,
                    target_status=status)
        logger.warning("%s %s: %s", kind.noun, plan.source_number, decision.why)
        result = Result.NEEDS_ATTENTION if plan.void else Result.CHANGED_AFTER_APPROVAL
        return Outcome.of_row(plan, result, row, status=status, reason=decision.why, fix=decision.fix,
                              xero_total=doc.total if doc is not None else None)
    if action == Action.RECORD_VOIDED:
        ledger.record_voided(tenant, kind.name, plan.source_id, target_status=decision.target_status.value)
        return Outcome.of_row(plan, Result.ALREADY_VOIDED, row, status=decision.target_status.value)
    return None


# ---- writes ----------------------------------------------------------------------------------------
def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:64]


SEND_ATTEMPTS = 3  # sends of one batch in a run, each after a lookup found nothing of the last one's


def _send(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan], rows: dict, contact_ids: dict[str, str],
          outcomes: dict[str, Outcome]) -> None:
    """Claim, create, record. A lost answer is looked up by natural key; documents with a number Xero
    would refuse twice are sent again at once, the others wait for the next run's lookup."""
    logger = get_run_logger()
    by_id = {p.source_id: p for p in plans}
    candidates = [_candidate(p, contact_ids) for p in plans]
    for attempt in range(SEND_ATTEMPTS):
        if not candidates:
            return
        key = _key(ctx.tenant, kind.name, ctx.run_id, attempt, *[f"{c.source_id}:{c.content_hash}" for c in candidates])
        claimed = ctx.ledger.claim(ctx.tenant, kind.name, candidates, run_id=ctx.run_id, idempotency_key=key)
        claimed_ids = {c.source_id for c in claimed}
        for c in candidates:
            if c.source_id not in claimed_ids:
                outcomes.setdefault(c.source_id, _not_claimed(ctx, kind, by_id[c.source_id]))
        if not claimed:
            return
        mine = [by_id[c.source_id] for c in claimed]
        try:
            results = ctx.target(kind).create(kind, mine, contact_ids, idempotency_key=key)
        except TargetOutcomeUnknown:
            logger.warning("%s's answer to a batch of %d %ss was lost; looking them up before re-sending", kind.target,
                           len(mine), kind.noun)
            again = _after_lost_answer(ctx, kind, mine, outcomes)
            candidates = [c for c in claimed if c.source_id in again]
            # Their rows now carry this attempt: a refusal of the next one may be our own copy, landed late.
            rows = {**rows, **ctx.ledger.records(ctx.tenant, kind.name, list(again))}
            continue
        except TargetLimitReached:
            for p in mine:  # a 429 means the target did nothing with the batch
                ctx.ledger.release(ctx.tenant, kind.name, p.source_id)
            raise
        except TargetError as exc:
            # Refused as a whole (a 400 outside per-element results): nothing was created.
            for p in mine:
                _set_aside_after_send(ctx, kind, p, str(exc), outcomes)
            return
        taken = [p for p, written in zip(mine, results) if not written.ok and kind.refuses_taken_numbers
                 and p.natural_key_kind == KeyKind.NUMBER and number_taken(written.errors)]
        explained = _after_number_refused(ctx, kind, taken, rows, outcomes)
        created = [(p, written.document) for p, written in zip(mine, results) if written.ok]
        ctx.ledger.record_synced_many(ctx.tenant, kind.name, [
            (p.source_id, dict(target_id=doc.id, target_number=doc.number, target_total=doc.total,
                               target_status=doc.status.value if doc.status else None)) for p, doc in created])
        for p, doc in created:
            outcomes[p.source_id] = Outcome.of(p, Result.CREATED, xero_id=doc.id, xero_number=doc.number,
                                               xero_total=doc.total, status=doc.status.value if doc.status else None)
        if created:
            # One line a batch: a line a document cost the Prefect server more than the sync itself.
            logger.info("created %d %ss in %s: %s", len(created), kind.noun, kind.target,
                        ", ".join(str(doc.number or p.source_number) for p, doc in created))
        for p, written in zip(mine, results):
            if not written.ok and p.source_id not in explained:
                _set_aside_after_send(ctx, kind, p, "; ".join(written.errors) or f"{kind.target} refused it without a message",
                                      outcomes)
        return
    # Every attempt's answer was lost and each lookup found nothing: the rows are released (pending), this
    # run's own, held by no one. The next run reads them again (Ledger.unfinished), looks them up and sends.
    for c in candidates:
        outcomes.setdefault(c.source_id, Outcome.of(
            by_id[c.source_id], Result.NOT_SENT, detail=f"{kind.target}'s answer was lost {SEND_ATTEMPTS} times and it does "
                                                        "not hold the document; the next run looks it up and sends it"))


def _after_number_refused(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan], rows: dict,
                          outcomes: dict[str, Outcome]) -> set[str]:
    """Xero refused these because a document already carries their number: one lookup of those numbers, then
    the decision a lookup before the send would have made, from the rows as they were before this run's claim
    (our own earlier copy is recorded, anyone else's is a clash, never touched). Returns the ids so decided;
    a number held only by a deleted or voided document keeps Xero's refusal."""
    if not plans:
        return set()
    held = {d.number: d for d in _live(ctx.target(kind).find(kind, numbers=[p.natural_key for p in plans]))}
    explained: set[str] = set()
    for p in plans:
        doc = held.get(p.natural_key)
        if doc is None:
            continue
        decision = decide(p, rows.get(p.source_id), doc)
        if decision.action == Action.ADOPT:
            status = doc.status.value if doc.status else None
            ctx.ledger.record_synced(ctx.tenant, kind.name, p.source_id, target_id=doc.id, target_number=doc.number,
                                     target_status=status, target_total=doc.total)
            outcomes[p.source_id] = Outcome.of(p, Result.RECOVERED, xero_id=doc.id, xero_number=doc.number,
                                               xero_total=doc.total, status=status)
            get_run_logger().info("found %s in %s already; recorded it, nothing sent", doc.number, kind.target)
        else:
            _set_aside_after_send(ctx, kind, p, decision.why, outcomes, fix=decision.fix)
        explained.add(p.source_id)
    return explained


def _candidate(plan: DocumentPlan, contact_ids: dict[str, str]) -> Candidate:
    return Candidate(
        source_id=plan.source_id, source_number=plan.source_number, natural_key=plan.natural_key,
        content_hash=plan.content_hash, document_date=plan.date,
        contact_id=contact_ids.get(plan.contact.number) if plan.contact else None,
        natural_key_kind=plan.natural_key_kind.value if plan.natural_key_kind else None, source=plan.source,
    )


def _not_claimed(ctx: TenantContext, kind: DocumentKind, plan: DocumentPlan) -> Outcome:
    row = ctx.ledger.records(ctx.tenant, kind.name, [plan.source_id]).get(plan.source_id)
    if row is not None and row.state == DocState.SYNCED:
        return Outcome.of_row(plan, Result.ALREADY, row, reason=row.attention)
    if row is not None and row.state == DocState.SKIPPED:  # skipped after this batch read the ledger
        return skipped_by_a_person(plan, row)
    return Outcome.of(plan, Result.IN_FLIGHT, detail=held_by(row))


def _after_lost_answer(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan],
                       outcomes: dict[str, Outcome]) -> set[str]:
    """Look the batch up; record what Xero holds. Returns the ids that may be sent again at once."""
    ids = [p.source_id for p in plans]
    resolve_rows(ctx, kind, list(ctx.ledger.records(ctx.tenant, kind.name, ids).values()))
    state = ctx.ledger.records(ctx.tenant, kind.name, ids)
    again: set[str] = set()
    for p in plans:
        row = state[p.source_id]
        if row.state == DocState.SYNCED:
            outcomes[p.source_id] = Outcome.of_row(p, Result.RECOVERED, row)
        elif p.natural_key_kind == KeyKind.NUMBER:
            again.add(p.source_id)  # Xero would refuse a second copy with this number
        else:
            outcomes[p.source_id] = Outcome.of(p, Result.NOT_SENT, detail="answer lost; looked up again next run")
    return again


def _set_aside_after_send(ctx: TenantContext, kind: DocumentKind, plan: DocumentPlan, reason: str,
                          outcomes: dict[str, Outcome], *, fix: str | None = None) -> None:
    fix = fix or fix_for(reason)
    ctx.ledger.set_aside(ctx.tenant, kind.name, plan.source_id, source_number=plan.source_number, reason=reason, fix=fix,
                         run_id=ctx.run_id)
    outcomes[plan.source_id] = Outcome.of(plan, Result.SET_ASIDE, reason=reason, fix=fix)
    get_run_logger().warning("set aside %s %s: %s (fix: %s)", kind.noun, plan.source_number, reason, fix)


def _update(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan], rows: dict, contact_ids: dict[str, str],
            outcomes: dict[str, Outcome]) -> None:
    """Changed in Autotask while Xero's copy may still be rewritten: rewrite it by id, never renumbered."""
    for chunk in batches(plans):
        key = _key(ctx.tenant, "update", kind.name, *[f"{p.source_id}:{p.content_hash}" for p in chunk])
        try:
            results = ctx.target(kind).update(kind, [(rows[p.source_id].target_id, p) for p in chunk], contact_ids,
                                              idempotency_key=key)
        except TargetOutcomeUnknown:
            results = _read_back(ctx, kind, chunk, rows)
        for p, written in zip(chunk, results):
            row = rows[p.source_id]
            if written is not None and written.ok:
                doc = written.document
                status = doc.status.value if doc.status else None
                ctx.ledger.record_updated(ctx.tenant, kind.name, p.source_id, content_hash=p.content_hash,
                                          target_status=status, target_total=doc.total, target_number=doc.number)
                outcomes[p.source_id] = Outcome.of_row(p, Result.UPDATED, row, xero_total=doc.total, status=status,
                                                       xero_number=doc.number or row.target_number)
                get_run_logger().info("updated %s %s in %s to match its source", kind.noun, doc.number or row.target_number,
                                      kind.target)
            else:
                reason = ("; ".join(written.errors) if written is not None
                          else f"{kind.target} did not answer the update; it is sent again next run")
                ctx.ledger.note(ctx.tenant, kind.name, p.source_id, f"update refused: {reason}")
                outcomes[p.source_id] = Outcome.of_row(p, Result.NEEDS_ATTENTION, row, reason=reason, fix=fix_for(reason))


def _read_back(ctx: TenantContext, kind: DocumentKind, plans: list[DocumentPlan], rows: dict) -> list[Written | None]:
    """After a lost answer on an update: where the key names the whole write (a paid date), the target
    holding that key is the answer; otherwise None, and the update by id, harmless to repeat, is sent
    again next run."""
    if not kind.match_is_ours:
        return [None] * len(plans)
    held = {d.id: d for d in ctx.target(kind).find(kind, ids=[rows[p.source_id].target_id for p in plans])}
    answers: list[Written | None] = []
    for p in plans:
        doc = held.get(rows[p.source_id].target_id)
        answers.append(Written(ok=True, document=doc, errors=[]) if doc is not None and doc.number == p.natural_key
                       else None)
    return answers


def _remove(ctx: TenantContext, kind: DocumentKind, pairs: list[tuple[DocumentPlan, Decision]], rows: dict,
            outcomes: dict[str, Outcome]) -> None:
    """Voided in Autotask: Xero's copy is voided, or deleted while a draft."""
    for chunk in batches(pairs):
        changes = [(rows[p.source_id].target_id, d.target_status) for p, d in chunk]
        key = _key(ctx.tenant, "void", kind.name, *[f"{a}:{b.value}" for a, b in changes])
        try:
            results = ctx.target(kind).set_status(kind, changes, idempotency_key=key)
        except TargetOutcomeUnknown:
            results = [None] * len(chunk)  # a status change repeats harmlessly: the next run checks and sends again
        for (p, d), written in zip(chunk, results):
            row = rows[p.source_id]
            if written is not None and written.ok:
                ctx.ledger.record_voided(ctx.tenant, kind.name, p.source_id, target_status=d.target_status.value)
                result = Result.VOIDED if d.target_status == Status.VOIDED else Result.DELETED
                outcomes[p.source_id] = Outcome.of_row(p, result, row, status=d.target_status.value)
                get_run_logger().info("%s voided in Autotask: %s", p.source_number, result.value)
            else:
                reason = "; ".join(written.errors) if written is not None else "Xero did not answer; retried next run"
                text = f"voided in Autotask; Xero refused to void it: {reason}"
                ctx.ledger.note(ctx.tenant, kind.name, p.source_id, text)
                outcomes[p.source_id] = Outcome.of_row(p, Result.NEEDS_ATTENTION, row, status=None, reason=text,
                                                       fix=fix_for(reason))

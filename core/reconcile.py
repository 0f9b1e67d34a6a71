"""Reconciliation, pure: where Autotask (the plans the sync would send), the ledger and Xero disagree about
a document, and what a person, or `atx reconcile --repair`, does about it.

Plain values in: the `DocumentPlan`s the flows' own reading and planning make for the window, the ledger's
rows as `Recorded`, and the Xero documents read for them (`XeroDocument`, by the ledger's ids and by each
plan's natural key). A list of `Finding`s out, each naming the document, what differs, what was expected
and what Xero holds, the fix, and what `--repair` may do about it (`Repair`). No HTTP, no database.

`--repair` only ever does what the pipeline itself does: record a document Xero holds under the
document's natural key (as resolving a lost answer does), or release a row so that the flow's own run
sends the document again through `sync_documents`. It never voids, deletes or rewrites anything in Xero
by itself; duplicates and documents changed in Xero by hand are a person's to fix.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from core.documents import GONE, DocumentKind, DocumentPlan, KeyKind, Status, XeroDocument

# Ledger states (ledger.models.DocState), as plain text: the core needs no database import.
PENDING, SENDING, SYNCED, SET_ASIDE, VOIDED, SKIPPED = "pending", "sending", "synced", "set_aside", "voided", "skipped"


class Problem(str, Enum):
    MISSING = "missing in Xero"
    DUPLICATED = "duplicated in Xero"
    DIFFERENT = "different in Xero"
    UNRECORDED = "not in the ledger"


class Repair(str, Enum):
    """What `--repair` does about a finding: only what the pipeline itself would do."""

    NONE = "by hand"            # a person's: the fix says what to do in Xero or Autotask
    RECORD = "record"           # record the Xero document in the ledger, as resolving a lost answer does
    RESEND = "resend"           # release the ledger row; the flow's run for the window sends it again
    RUN = "run the sync"        # nothing to mark: the flow's run for the window does it (send, update, void)


@dataclass(frozen=True)
class Recorded:
    """One ledger row, as reconciliation reads it (ledger.models.SyncRecord in plain values)."""

    source_id: str
    state: str
    source_number: str | None = None
    target_id: str | None = None
    target_number: str | None = None
    target_total: Decimal | None = None     # Xero's total when the sync last wrote or saw it
    target_status: str | None = None
    content_hash: str | None = None
    natural_key: str | None = None
    contact_id: str | None = None           # the Xero contact the document was sent to
    document_date: dt.date | None = None


@dataclass(frozen=True)
class Finding:
    problem: Problem
    kind: str
    source_id: str
    source_number: str
    what: str                 # what differs: "document", "copies", "ledger", "number", "total", "tax", "contact", "status"
    expected: str
    found: str
    fix: str
    repair: Repair = Repair.NONE
    xero_id: str | None = None          # the Xero document it is about (the one to record, the ledger's copy)
    xero_number: str | None = None
    # RECORD: the content hash to record. Empty when Xero's copy differs from the plan, so the sync's next
    # run compares them again (rewrites a draft, or lists it for a person) instead of taking it as sent.
    content_hash: str | None = None
    extra_ids: tuple[str, ...] = ()     # DUPLICATED: the copies a person voids
    xero_status: str | None = None      # RECORD: the status and total Xero holds, for the ledger
    xero_total: Decimal | None = None


@dataclass
class Reconciled:
    findings: list[Finding] = field(default_factory=list)
    compared: int = 0        # documents looked at
    set_aside: int = 0       # not in Xero because the sync set them aside: every run reports them with the fix
    in_flight: int = 0       # being sent by a run right now: the ledger and Xero may disagree for a moment
    skipped: int = 0         # kept out of Xero by a person (`atx ledger skip`): not in Xero, as they should be


# How far along its life a document is: Xero moves it forward (approved, paid), a person never back.
_PROGRESS = {Status.DRAFT: 0, Status.SUBMITTED: 1, Status.AUTHORISED: 2, Status.PAID: 3, Status.BILLED: 3}


def reconcile(kind: DocumentKind, plans: Iterable[DocumentPlan], recorded: dict[str, Recorded],
              held: Iterable[XeroDocument], contact_ids: dict[str, str] | None = None) -> Reconciled:
    """Compare each plan of `kind` with its ledger row and the Xero documents `held` (every one read for
    the window: by the ledger's ids and by the plans' natural keys). `contact_ids`: the Autotask company id
    of each contact → its Xero ContactID, as the ledger records the contacts."""
    contact_ids = contact_ids or {}
    docs = [d for d in held if d.kind == kind.name]
    by_id = {d.id: d for d in docs}
    out = Reconciled()
    for plan in plans:
        if plan.kind != kind.name:
            continue
        out.compared += 1
        _one(out, kind, plan, recorded.get(plan.source_id), by_id, docs, contact_ids)
    return out


def reconcile_recorded(kind: DocumentKind, recorded: Iterable[Recorded], held: Iterable[XeroDocument]) -> Reconciled:
    """Documents whose ledger rows are the whole expectation (payments: the sync plans one only while the
    invoice is still due, so no plan says one should exist). Each synced row against Xero, by id and by
    its marker."""
    docs = [d for d in held if d.kind == kind.name]
    by_id = {d.id: d for d in docs}
    out = Reconciled()
    for row in recorded:
        if row.state == SENDING:
            out.compared += 1
            out.in_flight += 1
            continue
        if row.state != SYNCED or not row.target_id:
            continue
        out.compared += 1
        number = row.source_number or row.source_id
        ours = by_id.get(row.target_id)
        expected = f"{kind.noun} {row.target_number or row.target_id} of {_money(row.target_total)}"
        if ours is None or ours.status in GONE:
            out.findings.append(Finding(
                Problem.MISSING, kind.name, row.source_id, number, "document", expected,
                "not in Xero" if ours is None else f"{ours.status.value} in Xero",
                f"a {kind.noun} removed in Xero is the payments flow's to follow (with payments.clear_paid_date it "
                f"clears the Autotask paid date, otherwise it lists it); to settle the invoice in Xero again, apply "
                f"the {kind.noun} there by hand", xero_id=row.target_id, xero_number=row.target_number))
            continue
        copies = [d for d in docs if d.status not in GONE and row.natural_key and d.reference == row.natural_key]
        if len({d.id for d in copies} | {ours.id}) > 1:
            extra = tuple(sorted(d.id for d in copies if d.id != ours.id))
            out.findings.append(Finding(
                Problem.DUPLICATED, kind.name, row.source_id, number, "copies", "1", str(len(extra) + 1),
                f"delete the extra {kind.noun} {', '.join(extra)} in Xero by hand (keep {ours.id}, the one the "
                f"ledger records); the sync never deletes one itself", xero_id=ours.id, extra_ids=extra))
        if row.target_total is not None and ours.total is not None and ours.total != row.target_total:
            out.findings.append(Finding(
                Problem.DIFFERENT, kind.name, row.source_id, number, "total", _money(row.target_total),
                _money(ours.total), f"the {kind.noun} was changed in Xero after the sync made it: correct it in Xero",
                xero_id=ours.id, xero_number=ours.number))
    return out


# ---- one planned document ------------------------------------------------------------------------
def _one(out: Reconciled, kind: DocumentKind, plan: DocumentPlan, row: Recorded | None, by_id: dict[str, XeroDocument],
         docs: list[XeroDocument], contact_ids: dict[str, str]) -> None:
    expected_contact = (contact_ids.get(plan.contact.number) if plan.contact else None) or (row.contact_id if row else None)
    in_ledger = row is not None and row.state in (SYNCED, VOIDED) and bool(row.target_id)
    ours = by_id.get(row.target_id) if in_ledger else None
    live = {d.id: d for d in docs if d.status not in GONE and _carries(plan, d, expected_contact)}
    if ours is not None and ours.status not in GONE:
        live[ours.id] = ours
    if len(live) > 1:
        out.findings.append(_duplicated(kind, plan, ours if ours is not None and ours.id in live else None, live))

    if plan.void:
        _voided_at_source(out, kind, plan, row, ours, live, expected_contact)
        return
    if row is not None and row.state == SENDING:
        out.in_flight += 1
        return
    if in_ledger:
        if row.state == VOIDED:
            return  # voided in Xero by this sync; Autotask never takes a void back
        if ours is None or ours.status in GONE:
            _gone_from_xero(out, kind, plan, row, ours, live, expected_contact)
            return
        if plan.set_aside is None or plan.total is not None:
            out.findings += _differences(kind, plan, row, ours, expected_contact)
        return
    # The ledger says it is not in Xero: no row yet, pending, or set aside.
    if len(live) == 1:
        found = next(iter(live.values()))
        if _is_ours(kind, plan, found, expected_contact):
            out.findings.append(_unrecorded(kind, plan, found))
        elif row is not None and row.state == SET_ASIDE:
            out.set_aside += 1  # the clash is the set-aside reason every run reports
        elif row is not None and row.state == SKIPPED:
            out.skipped += 1  # a person keeps it out of Xero: the number's other holder is no concern of the sync
        else:
            out.findings.append(Finding(
                Problem.MISSING, kind.name, plan.source_id, plan.source_number, "number",
                f"{plan.natural_key} free for this {kind.noun}",
                f"used by {_shown(found)}, which this sync did not create", kind.clash_fix,
                xero_id=found.id, xero_number=found.number))
        return
    if live:
        return  # duplicated, reported above: which copy is the document is a person's call
    if row is not None and row.state == SKIPPED:
        out.skipped += 1
        return
    if (row is not None and row.state == SET_ASIDE) or not plan.sendable:
        out.set_aside += 1
        return
    why = ("the ledger has no row for it: no run has sent it yet" if row is None
           else "the ledger holds it as pending: a lookup found it missing, and it waits for the next run")
    out.findings.append(Finding(
        Problem.MISSING, kind.name, plan.source_id, plan.source_number, "document", f"in Xero ({_money(plan.total)})",
        f"not in Xero; {why}",
        f"the next sync for this window sends it; `atx reconcile --repair` runs that sync now", Repair.RUN))


def _voided_at_source(out: Reconciled, kind: DocumentKind, plan: DocumentPlan, row: Recorded | None,
                      ours: XeroDocument | None, live: dict[str, XeroDocument], expected_contact: str | None) -> None:
    if row is not None and row.state == SENDING:
        out.in_flight += 1
        return
    if ours is not None and ours.status not in GONE:
        if row.state == VOIDED:
            out.findings.append(Finding(
                Problem.DIFFERENT, kind.name, plan.source_id, plan.source_number, "status", "VOIDED",
                ours.status.value if ours.status else "unknown",
                f"the ledger records that this sync took it out of Xero, but Xero holds it {_status(ours)}: void it in "
                "Xero by hand", xero_id=ours.id, xero_number=ours.number))
        elif ours.money_allocated or kind.remove_status(ours.status) is None:
            out.findings.append(Finding(
                Problem.DIFFERENT, kind.name, plan.source_id, plan.source_number, "status", "VOIDED (voided in Autotask)",
                _status(ours), "payments or credit notes are allocated to it in Xero (or its status cannot be undone "
                "by the sync): remove them in Xero, then void it there", xero_id=ours.id, xero_number=ours.number))
        else:
            out.findings.append(Finding(
                Problem.DIFFERENT, kind.name, plan.source_id, plan.source_number, "status", "VOIDED (voided in Autotask)",
                _status(ours), "the next sync takes it out of Xero (voids it, or deletes a draft); `atx reconcile "
                "--repair` runs that sync now", Repair.RUN, xero_id=ours.id, xero_number=ours.number))
        return
    if not (row is not None and row.state in (SYNCED, VOIDED)) and len(live) == 1:
        found = next(iter(live.values()))
        if _is_ours(kind, plan, found, expected_contact):
            out.findings.append(_unrecorded(kind, plan, found, voided=True))


def _gone_from_xero(out: Reconciled, kind: DocumentKind, plan: DocumentPlan, row: Recorded, ours: XeroDocument | None,
                    live: dict[str, XeroDocument], expected_contact: str | None) -> None:
    """The ledger says synced, but Xero does not hold that document (or holds it voided or deleted)."""
    others = [d for d in live.values() if d.id != row.target_id]
    if len(others) > 1:
        return  # duplicated, reported already
    held = "does not hold it" if ours is None else f"holds it {ours.status.value}"
    recorded = row.target_number or plan.number or row.target_id
    if others:
        found = others[0]
        if _is_ours(kind, plan, found, expected_contact):
            out.findings.append(Finding(
                Problem.UNRECORDED, kind.name, plan.source_id, plan.source_number, "ledger", f"the ledger's {_named(row)}",
                f"Xero {held}; it holds {_shown(found)} under this {kind.noun}'s key",
                "`atx reconcile --repair` records the live copy in the ledger (nothing is sent)", Repair.RECORD,
                xero_id=found.id, xero_number=found.number, content_hash=_hash_if_same(plan, found),
                xero_status=_status_value(found), xero_total=found.total))
        else:
            out.findings.append(Finding(
                Problem.MISSING, kind.name, plan.source_id, plan.source_number, "number",
                f"{plan.natural_key} for this {kind.noun}", f"Xero {held}; {_shown(found)}, which this sync did not "
                "create, holds the number", kind.clash_fix, xero_id=found.id, xero_number=found.number))
        return
    if _resendable(kind, plan, ours):
        out.findings.append(Finding(
            Problem.MISSING, kind.name, plan.source_id, plan.source_number, "document", f"in Xero as {recorded}",
            f"the ledger says synced, but Xero {held}",
            f"if it should not be in Xero, void it in Autotask; otherwise `atx reconcile --repair` sends it again "
            f"(through the sync, under the same {'number' if plan.number else 'link'})", Repair.RESEND,
            xero_id=row.target_id, xero_number=row.target_number))
    else:
        out.findings.append(Finding(
            Problem.MISSING, kind.name, plan.source_id, plan.source_number, "document", f"in Xero as {recorded}",
            f"the ledger says synced, but Xero {held}",
            f"Xero keeps the number of a voided {kind.noun}, so it cannot be sent again as {plan.number}: if it should "
            f"be gone, void it in Autotask too; otherwise reissue it in Autotask under a new number",
            xero_id=row.target_id, xero_number=row.target_number))


def _differences(kind: DocumentKind, plan: DocumentPlan, row: Recorded, doc: XeroDocument,
                 expected_contact: str | None) -> list[Finding]:
    """Total, tax, contact, status and number of the ledger's own copy against the plan."""
    changed_in_autotask = bool(row.content_hash) and row.content_hash != plan.content_hash
    if doc.status in kind.editable:
        at_source = (f"changed in Autotask since it was synced: the next sync rewrites it while it is "
                     f"{doc.status.value} in Xero; `atx reconcile --repair` runs that sync now", Repair.RUN)
    else:
        at_source = (f"changed in Autotask since it was synced, and it is {_status(doc)} in Xero: {kind.after_change}",
                     Repair.NONE)
    by_hand = (f"changed in Xero after the sync: correct it in Xero to match Autotask (or correct the {kind.noun} in "
               "Autotask: a draft is then rewritten)", Repair.NONE)
    found: list[Finding] = []

    def differs(what: str, expected: str, held: str, fix: tuple[str, Repair]) -> None:
        found.append(Finding(Problem.DIFFERENT, kind.name, plan.source_id, plan.source_number, what, expected, held,
                             fix[0], fix[1], xero_id=doc.id, xero_number=doc.number))

    if plan.total is not None and doc.total is not None and doc.total != plan.total:
        # Xero's total is not the one the sync recorded: someone changed it there.
        in_xero = row.target_total is not None and doc.total != row.target_total
        differs("total", _money(plan.total), _money(doc.total), by_hand if in_xero or not changed_in_autotask else at_source)
    if plan.tax is not None and doc.total_tax is not None and doc.total_tax != plan.tax:
        differs("tax", _money(plan.tax), _money(doc.total_tax), at_source if changed_in_autotask else by_hand)
    if _same_contact(plan, doc, expected_contact) is False:
        moved = bool(row.contact_id) and doc.contact_id != row.contact_id
        differs("contact", f"{plan.contact.name} (company {plan.contact.number})",
                f"contact {doc.contact_number or doc.contact_id}",
                ("moved to another contact in Xero after the sync: move it back to "
                 f"{plan.contact.name} in Xero", Repair.NONE) if moved or not changed_in_autotask else at_source)
    if doc.status in _PROGRESS and plan.status in _PROGRESS and _PROGRESS[doc.status] < _PROGRESS[plan.status]:
        differs("status", plan.status.value, doc.status.value,
                at_source if changed_in_autotask else (f"approve it in Xero (the mapping sends it {plan.status.value})",
                                                       Repair.NONE))
    if (plan.number and doc.number and doc.number != plan.number and row.target_number == plan.number
            and plan.natural_key_kind in (KeyKind.NUMBER, KeyKind.CONTACT_NUMBER)):
        differs("number", plan.number, doc.number,
                (f"renumbered in Xero after the sync: give it back the number {plan.number}, by which the sync finds "
                 "it", Repair.NONE))
    return found


def _duplicated(kind: DocumentKind, plan: DocumentPlan, ours: XeroDocument | None,
                live: dict[str, XeroDocument]) -> Finding:
    copies = sorted(live.values(), key=lambda d: d.id)
    if ours is not None:
        extra = [d for d in copies if d.id != ours.id]
        fix = (f"void {', '.join(_named(d) for d in extra)} in Xero by hand; keep {_named(ours)}, the one the ledger "
               "records (the sync never voids a copy itself)")
    else:
        extra = copies
        fix = (f"keep one of {', '.join(_named(d) for d in copies)} and void the others in Xero by hand, then "
               "`atx reconcile --repair` records the one left")
    return Finding(Problem.DUPLICATED, kind.name, plan.source_id, plan.source_number, "copies", "1",
                   f"{len(copies)} live: {'; '.join(_shown(d) for d in copies)}", fix,
                   xero_id=ours.id if ours is not None else None, xero_number=ours.number if ours is not None else None,
                   extra_ids=tuple(d.id for d in extra))


def _unrecorded(kind: DocumentKind, plan: DocumentPlan, found: XeroDocument, *, voided: bool = False) -> Finding:
    then = " The sync then takes it out of Xero (it was voided in Autotask)." if voided else ""
    return Finding(
        Problem.UNRECORDED, kind.name, plan.source_id, plan.source_number, "ledger", "a ledger row for it",
        f"no synced row; Xero holds {_shown(found)} under its key",
        "`atx reconcile --repair` records it in the ledger, as the sync does after a lost answer (nothing is sent)."
        + then, Repair.RECORD, xero_id=found.id, xero_number=found.number, content_hash=_hash_if_same(plan, found),
        xero_status=_status_value(found), xero_total=found.total)


# ---- matching ------------------------------------------------------------------------------------
def _carries(plan: DocumentPlan, doc: XeroDocument, expected_contact: str | None) -> bool:
    """Whether a Xero document carries this plan's natural key."""
    key = plan.natural_key
    if not key:
        return False
    if plan.natural_key_kind == KeyKind.NUMBER:
        return doc.number == key
    if plan.natural_key_kind == KeyKind.URL:
        return doc.url == key
    if plan.natural_key_kind == KeyKind.REFERENCE:
        return doc.reference == key
    if plan.natural_key_kind == KeyKind.CONTACT_NUMBER:
        # Numbers of one supplier only: another supplier's bill may carry the same number.
        return doc.number == key and _same_contact(plan, doc, expected_contact) is True
    return False


def _same_contact(plan: DocumentPlan, doc: XeroDocument, expected_contact: str | None) -> bool | None:
    """True or False where it can be told (by ContactNumber, the Autotask company id, or by ContactID); None
    when neither side says."""
    if plan.contact is None:
        return None
    if doc.contact_number:
        return doc.contact_number == plan.contact.number
    if expected_contact and doc.contact_id:
        return doc.contact_id == expected_contact
    return None


def _is_ours(kind: DocumentKind, plan: DocumentPlan, doc: XeroDocument, expected_contact: str | None) -> bool:
    """A Xero document under this plan's key that the sync made: the pipeline's own test (decide's "our
    earlier copy"). A marker (the Url back to Autotask, the Reference) on the right contact is the sync's;
    a number is only when contact and total agree too, so a document typed into Xero by hand is never
    taken for the sync's."""
    if kind.match_is_ours:
        return True
    if _same_contact(plan, doc, expected_contact) is not True:
        return False
    if plan.natural_key_kind in (KeyKind.URL, KeyKind.REFERENCE):
        return True
    return doc.total is not None and doc.total == plan.total


def _hash_if_same(plan: DocumentPlan, doc: XeroDocument) -> str:
    same = doc.total == plan.total and (doc.total_tax is None or plan.tax is None or doc.total_tax == plan.tax)
    return plan.content_hash if same else ""


def _resendable(kind: DocumentKind, plan: DocumentPlan, doc: XeroDocument | None) -> bool:
    """Sending it again can work: Xero holds no copy, a deleted one (its number is free), or a voided one of
    a kind whose number Xero does not keep unique or that Xero numbers itself."""
    if doc is None or doc.status == Status.DELETED:
        return True
    return not (kind.numbers_unique and plan.natural_key_kind == KeyKind.NUMBER)


# ---- wording -------------------------------------------------------------------------------------
def _money(value) -> str:
    return "" if value is None else f"{Decimal(value):,.2f}"


def _status_value(doc: XeroDocument) -> str | None:
    return doc.status.value if doc.status else None


def _status(doc: XeroDocument) -> str:
    return doc.status.value if doc.status else "of unknown status"


def _shown(doc: XeroDocument) -> str:
    return f"{doc.number or 'unnumbered'} ({_status(doc)}, total {_money(doc.total)}, id {doc.id})"


def _named(doc) -> str:
    """A Xero document (or the ledger's record of one) as a person finds it: its number and id."""
    number = getattr(doc, "number", None) or getattr(doc, "target_number", None)
    doc_id = getattr(doc, "id", None) or getattr(doc, "target_id", None)
    return f"{number or 'unnumbered'} (id {doc_id})"

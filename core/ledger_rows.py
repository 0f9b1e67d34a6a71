"""What a ledger row says to a person: its state, why it is there and the fix (`atx ledger show`, and the
run report for a document a person skipped). Pure: rows in, text out.

The reasons and fixes are the ones the pipeline recorded (a set-aside row's `reason` and `fix`, a synced row's
note for a person in `attention`); where only Xero's wording was kept, `fix_for` turns it into the action, as
the run report does.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from core.documents import KINDS, fix_for

# Ledger states (ledger.models.DocState), as plain text: the core needs no database import.
PENDING, SENDING, SYNCED, SET_ASIDE, VOIDED, SKIPPED = "pending", "sending", "synced", "set_aside", "voided", "skipped"
STATES = (SET_ASIDE, SKIPPED, PENDING, SENDING, SYNCED, VOIDED)
# Not a state of its own: synced (or voided) rows that carry a note for a person.
NEEDS_A_PERSON = "needs_a_person"
SHOWN_STATES = STATES + (NEEDS_A_PERSON,)
# Notes for a person that hold Xero's refusal after this text; the fix is read from Xero's words.
_REFUSALS = ("update refused: ", "Xero refused to void it: ")


class Row(Protocol):
    """What is read of a ledger row (ledger.models.SyncRecord)."""

    tenant: str
    kind: str
    source_id: str
    source_number: str | None
    state: str
    target_id: str | None
    target_number: str | None
    target_status: str | None
    run_id: str | None
    claimed_at: datetime | None
    reason: str | None
    fix: str | None
    attention: str | None
    facts: dict


def resend_command(row: Row) -> str:
    option = "" if row.kind == "invoice" else f" --kind {row.kind}"
    return f"atx ledger resend {row.source_id} --tenant {row.tenant}{option}"


def skipped_by(row: Row) -> str:
    """Who skipped the document and when, as recorded (`atx ledger skip`)."""
    facts = row.facts or {}
    who, when = facts.get("skipped_by"), facts.get("skipped_at")
    said = [f"by {who}" if who else "", f"on {when[:16].replace('T', ' ')} UTC" if when else ""]
    return " ".join(p for p in said if p)


def skipped_fix(row: Row) -> str:
    return f"nothing, if it must stay out of Xero; `{resend_command(row)}` un-skips it and sends it"


def reason_and_fix(row: Row) -> tuple[str, str]:
    """(why the document is where it is, what a person does about it); both empty when nothing is wrong."""
    if row.state == SET_ASIDE:
        reason = row.reason or "set aside without a reason recorded"
        return reason, row.fix or fix_for(reason)
    if row.state == SKIPPED:
        who = skipped_by(row)
        return f"skipped{' ' + who if who else ''}: {row.reason or 'no reason given'}", skipped_fix(row)
    if row.state == PENDING:
        return ("not in Xero yet: an earlier answer was lost and a lookup found it missing, or it was un-skipped",
                f"nothing: the next run sends it (`{resend_command(row)}` sends it now)")
    if row.state == SENDING:
        since = f" since {row.claimed_at:%Y-%m-%d %H:%M} UTC" if row.claimed_at else ""
        return (f"being sent by run {row.run_id or 'unknown'}{since}",
                "nothing: if that run was killed, the next run looks it up in Xero before anything is sent again")
    if row.attention:
        return _attention(row.attention)
    return "", ""


def _attention(note: str) -> tuple[str, str]:
    """A synced document's note for a person. The pipeline writes either Xero's refusal after a known lead
    ("update refused: ..."), or what happened and what to do, joined by the first ': '."""
    for lead in _REFUSALS:
        if lead in note:
            return note, fix_for(note.split(lead, 1)[1])
    what, sep, todo = note.partition(": ")
    if not sep:
        return note, fix_for(note)
    return what, todo


@dataclass(frozen=True)
class ShownRow:
    """One line of `atx ledger show`."""

    kind: str
    source: str     # the Autotask id and number
    state: str
    xero: str       # Xero's number (or id) and status
    reason: str
    fix: str


def shown(row: Row) -> ShownRow:
    kind = KINDS[row.kind].noun if row.kind in KINDS else row.kind
    number = f" ({row.source_number})" if row.source_number and row.source_number != row.source_id else ""
    state = row.state.replace("_", " ") + (", needs a person" if row.attention and row.state in (SYNCED, VOIDED) else "")
    xero = row.target_number or row.target_id or ""
    if xero and row.target_status:
        xero += f" ({row.target_status})"
    reason, fix = reason_and_fix(row)
    return ShownRow(kind=kind, source=f"{row.source_id}{number}", state=state, xero=xero, reason=reason, fix=fix)


def check_state(state: str) -> str:
    """The state as stored ("set aside" and "set-aside" read as set_aside); ValueError naming the states."""
    wanted = state.strip().lower().replace("-", "_").replace(" ", "_")
    if wanted not in SHOWN_STATES:
        raise ValueError(f"unknown state {state!r}: the states are {', '.join(SHOWN_STATES)}")
    return wanted

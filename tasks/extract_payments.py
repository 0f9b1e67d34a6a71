"""Read what the payments flow plans from, in as few calls as each API allows.

Xero → Autotask: the sales invoices this app created that changed since the window's start, as
summaries (If-Modified-Since, 1,000 a call, no line items), and the ones Xero shows paid again by id
(50 a call) for their payments, credit notes, prepayments and overpayments: never one call per
invoice. Autotask → Xero: Autotask invoices whose paidDate falls in the window (one query), and their
Xero invoices by id (50 a call, no line items either). The ledger says which invoices are
this sync's and what each direction already wrote.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

from prefect.cache_policies import NONE

from atx.context import TenantContext
from clients.autotask import autotask_day
from core import windows
from core.documents import INVOICE, PAID_DATE, PAYMENT, Status, XeroDocument
from core.payments import AutotaskPaid, SyncedInvoice, written_paid_date
from tasks.sync import worth_retrying
from tasks.prefect_task import task


@dataclass
class Settlements:
    """Xero → Autotask: what plan_paid_dates needs."""

    invoices: list[XeroDocument]
    synced: dict[str, SyncedInvoice]          # Xero InvoiceID -> the Autotask invoice it was made from
    written: dict[str, date | None]           # Autotask id -> the paid date this sync last wrote (None: cleared)
    our_payments: set[str] = field(default_factory=set)  # PaymentIDs and markers of the payments made from Autotask


@dataclass
class PaidInAutotask:
    """Autotask → Xero: what plan_payments needs."""

    paid: list[AutotaskPaid]
    in_xero: dict[str, XeroDocument]          # Autotask id -> the Xero invoice this sync made for it
    written: dict[str, date | None]
    autotask_calls: int = 0


def written_paid_dates(ctx: TenantContext, autotask_ids) -> dict[str, date | None]:
    """The paid date this sync last wrote to each of these Autotask invoices (None once it cleared it)."""
    rows = ctx.ledger.records(ctx.tenant, PAID_DATE.name, list(autotask_ids))
    out: dict[str, date | None] = {}
    for source_id, row in rows.items():
        if row.state == "synced" and row.target_number:
            out[source_id] = written_paid_date(row.target_number)
    return out


def _xero_day(day: date) -> str:
    return f"DateTime({day.year}, {day.month:02d}, {day.day:02d})"


def _shown_paid(doc: XeroDocument) -> bool:
    return doc.status == Status.PAID


def _synced_invoice(row) -> SyncedInvoice:
    return SyncedInvoice(autotask_id=row.source_id, autotask_number=row.source_number or row.source_id,
                         xero_id=row.target_id)


@task(name="read-xero-settlements", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def read_settlements(ctx: TenantContext, since: date, until: date, revisit: list[str], *,
                     dated_in_window: bool = False) -> Settlements:
    """Sales invoices this app created, changed in Xero since `since` (midnight UTC), and those whose
    paid date the ledger holds as unfinished, whatever their date. `dated_in_window` (a backfill chunk):
    the invoices dated in [since, until] instead, whenever they changed."""
    # Summaries, a thousand a call; only an invoice Xero shows paid is read again for what settled it
    # and when (its status and amounts say all the rest plan_paid_dates asks).
    if dated_in_window:
        where = f'Type=="ACCREC" AND Date>={_xero_day(since)} AND Date<={_xero_day(until)}'
        changed = ctx.xero.find(INVOICE, where=where, created_by_my_app=True, details=_shown_paid)
    else:
        modified = datetime.combine(since, time(0), tzinfo=timezone.utc)
        changed = ctx.xero.find(INVOICE, where='Type=="ACCREC"', created_by_my_app=True, modified_since=modified,
                                details=_shown_paid)
    again = ctx.ledger.records(ctx.tenant, INVOICE.name, revisit)
    missing = [r.target_id for r in again.values() if r.target_id and r.target_id not in {d.id for d in changed}]
    if missing:
        changed += ctx.xero.find(INVOICE, ids=missing)
    synced = {target: _synced_invoice(row)
              for target, row in ctx.ledger.by_target(ctx.tenant, INVOICE.name, [d.id for d in changed]).items()}
    ids = [s.autotask_id for s in synced.values()]
    made = ctx.ledger.records(ctx.tenant, PAYMENT.name, ids).values()
    # A payment whose row is still `sending` (another run's, or a killed run's) is known by its marker alone.
    ours = {r.target_id for r in made if r.state == "synced" and r.target_id} | {r.natural_key for r in made if r.natural_key}
    return Settlements(invoices=changed, synced=synced, written=written_paid_dates(ctx, ids), our_payments=ours)


@task(name="read-autotask-paid-invoices", retries=3, retry_delay_seconds=[5, 30, 120],
      retry_condition_fn=worth_retrying, cache_policy=NONE)
def read_paid_invoices(ctx: TenantContext, since: date, until: date, revisit: list[str]) -> PaidInAutotask:
    """Autotask invoices marked paid in [since, until] (and the ledger's unfinished ones), with the Xero
    invoices this sync made for them."""
    fields = ["id", "invoiceNumber", "paidDate", "isVoided"]
    gte, lt = windows.autotask_range(since, until)
    window = [{"op": "gte", "field": "paidDate", "value": gte}, {"op": "lt", "field": "paidDate", "value": lt}]
    with ctx.autotask() as at:
        records = {r["id"]: r for r in at.query("Invoices", window, include_fields=fields)}
        again = [int(i) for i in revisit if i.isdigit() and int(i) not in records]
        records.update({r["id"]: r for r in at.query_in("Invoices", "id", again, include_fields=fields)})
        calls = at.calls
    paid = [AutotaskPaid(str(r["id"]), str(r.get("invoiceNumber") or r["id"]), autotask_day(r.get("paidDate")))
            for r in records.values() if not r.get("isVoided")]
    written = written_paid_dates(ctx, [p.autotask_id for p in paid])
    # A paid date this sync wrote from Xero's payment is never paid back (plan_payments says so before it
    # looks at Xero), so its invoice is not read.
    wanted = [p.autotask_id for p in paid if written.get(p.autotask_id) != p.paid_date]
    rows = ctx.ledger.records(ctx.tenant, INVOICE.name, wanted)
    synced = {sid: row.target_id for sid, row in rows.items() if row.state == "synced" and row.target_id}
    # By id, 50 to a call (the gateway chunks them).
    docs = {d.id: d for d in ctx.xero.find(INVOICE, ids=list(synced.values()))} if synced else {}
    in_xero = {sid: docs[target] for sid, target in synced.items() if target in docs}
    return PaidInAutotask(paid=paid, in_xero=in_xero, written=written, autotask_calls=calls)

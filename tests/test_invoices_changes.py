"""After the sync: voids, changes, number clashes, Xero numbering after a lost answer, quarantine.

Each test is a real Prefect run of the invoices flow over HTTP against both simulators, and ends with
the same check: every Autotask invoice is in Xero exactly once (same total and tax to the cent), or the
ledger says why not.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from atx.connections import ledger_for, use_clock, xero_gateway
from ledger import DocState
from sandbox.clock import ManualClock
from sandbox.stack import SandboxStack

pytestmark = pytest.mark.e2e

END = date(2026, 11, 24)
SINCE, UNTIL = END - timedelta(days=40), END
DEMO = Path(__file__).resolve().parent.parent / "mappings" / "demo.yaml"


def run(tenant="acme", expect_completed=True, **params):
    from flows.invoices import invoices

    params.setdefault("since", SINCE)
    params.setdefault("until", UNTIL)
    state = invoices(tenant=tenant, return_state=True, **params)
    if not expect_completed:
        return state, None
    assert state.is_completed(), state.message
    return state, state.result()


def mapping_file(tmp_path: Path, name: str = "mapping", **changes) -> str:
    data = yaml.safe_load(DEMO.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def live_invoices(stack) -> list[dict]:
    return [i for i in stack.autotask.records("Invoices") if not i.get("isVoided")]


def assert_each_once(stack: SandboxStack, settings) -> None:
    """Every live Autotask invoice: one Xero document (invoice or credit note) with the same total and
    tax to the cent, whose id the ledger holds; or a set-aside row with reason and fix."""
    org = stack.org
    ledger = ledger_for(settings)
    # A credit's row is kind credit_note once it maps; an older set-aside row as "invoice" may remain.
    rows = ledger.records(settings.name, "invoice")
    rows.update({k: r for k, r in ledger.records(settings.name, "credit_note").items()
                 if k not in rows or rows[k].state == DocState.SET_ASIDE})
    invoices = [d for d in org.invoices.values() if d["Type"] == "ACCREC" and d["Status"] != "DELETED"]
    credits = [d for d in org.credit_notes.values() if d["Status"] != "DELETED"]
    urls = Counter(d.get("Url") for d in invoices if d.get("Url"))
    assert all(n == 1 for n in urls.values()), "two Xero invoices for one Autotask invoice"
    numbers = Counter(d["InvoiceNumber"] for d in invoices)
    assert all(n == 1 for n in numbers.values())
    by_id = {d["InvoiceID"]: d for d in invoices} | {d["CreditNoteID"]: d for d in credits}
    for inv in live_invoices(stack):
        row = rows.get(str(inv["id"]))
        assert row is not None, f"{inv['invoiceNumber']} was silently dropped"
        if row.state == DocState.SET_ASIDE:
            assert row.reason and row.fix
            continue
        assert row.state == DocState.SYNCED, (inv["invoiceNumber"], row.state)
        doc = by_id[row.target_id]
        sign = -1 if "CreditNoteID" in doc else 1
        assert sign * doc["Total"] == Decimal(str(inv["invoiceTotal"])), inv["invoiceNumber"]
        assert sign * doc["TotalTax"] == Decimal(str(inv["totalTaxValue"])), inv["invoiceNumber"]


def connect(stack: SandboxStack, tenant: str = "acme", **kwargs):
    """connect_tenant, and when the stack runs on a ManualClock, gateways that read that clock (pacing, and
    the day of the daily call budget) and whose waits advance it: the sandbox's real limits (60 calls a
    minute) apply and the pacer keeps to them, without a test ever sleeping."""
    if isinstance(stack.clock, ManualClock):
        use_clock(stack.clock, sleep=stack.clock.advance)  # undone by the atx_home fixture
    return stack.connect_tenant(tenant, **kwargs)


def manual_clock() -> ManualClock:
    return ManualClock(start=datetime.now(timezone.utc).replace(microsecond=0))


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=30, window_end=END, clock=manual_clock()) as s:
        yield s


def _xero_doc(stack, settings, autotask_id, doc_type="invoice") -> dict:
    row = ledger_for(settings).records(settings.name, doc_type)[str(autotask_id)]
    store = stack.org.invoices if doc_type == "invoice" else stack.org.credit_notes
    return store[row.target_id]


# ---- 4. changes after sync ---------------------------------------------------------------------------
def test_voids_and_changes_after_sync_reach_xero_or_a_person(stack):
    settings = connect(stack, "acme")
    _, first = run()
    assert first.count("created") > 10
    by_date = sorted(live_invoices(stack), key=lambda i: i["invoiceDateTime"])
    old = by_date[0]  # dated before the second run's window; voided within it
    later = [i for i in by_date if i["invoiceDateTime"][:10] > old["invoiceDateTime"][:10]]
    draft_void, approved_void, paid_void, draft_change, approved_change = later[:5]
    since2 = date.fromisoformat(later[0]["invoiceDateTime"][:10])

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    org = stack.org
    for inv in (approved_void, paid_void, approved_change):
        org.invoices[_xero_doc(stack, settings, inv["id"])["InvoiceID"]]["Status"] = "AUTHORISED"
    org.invoices[_xero_doc(stack, settings, paid_void["id"])["InvoiceID"]]["AmountPaid"] = Decimal("5.00")
    for inv in (old, draft_void, approved_void, paid_void):
        stack.autotask.update("Invoices", inv["id"], {"isVoided": True, "voidedDate": now})
    for inv in (draft_change, approved_change):
        line = next(l for l in stack.autotask.records("BillingItems") if l["invoiceID"] == inv["id"])
        stack.autotask.update("BillingItems", line["id"], {"description": "Changed after sync"})
    untouched = _xero_doc(stack, settings, approved_change["id"])["UpdatedDateUTC"]

    _, second = run(since=since2)
    actions = {o.autotask_id: o.action for o in second.outcomes}
    assert actions[old["id"]] == "deleted in Xero (was a draft)"  # read by voidedDate, outside the window
    assert actions[draft_void["id"]] == "deleted in Xero (was a draft)"
    assert actions[approved_void["id"]] == "voided in Xero"
    assert actions[paid_void["id"]] == "needs attention"
    assert actions[draft_change["id"]] == "updated in Xero"
    assert actions[approved_change["id"]] == "changed after approval"
    assert _xero_doc(stack, settings, old["id"])["Status"] == "DELETED"
    assert _xero_doc(stack, settings, approved_void["id"])["Status"] == "VOIDED"
    assert _xero_doc(stack, settings, paid_void["id"])["Status"] == "AUTHORISED"
    changed = _xero_doc(stack, settings, draft_change["id"])
    assert any("Changed after sync" in l["Description"] for l in changed["LineItems"])
    assert _xero_doc(stack, settings, approved_change["id"])["UpdatedDateUTC"] == untouched
    attention = {o.autotask_id: o for o in second.attention}
    assert "raise a credit note" in attention[approved_change["id"]].fix
    assert "payments" in attention[paid_void["id"]].reason
    assert second.count("created") == 0

    _, third = run(since=since2)  # nothing more to do: no second void, no second update
    actions = {o.autotask_id: o.action for o in third.outcomes}
    assert actions[approved_void["id"]] == "already voided in Xero"
    assert actions[draft_change["id"]] == "already in Xero"
    assert actions[paid_void["id"]] == "needs attention"
    assert third.count("created") == third.count("updated in Xero") == 0
    assert_each_once(stack, settings)


def test_a_number_clash_xero_refuses_is_named_a_clash_and_never_overwritten(stack, tmp_path):
    settings = connect(stack, "acme")
    from xero_python.accounting import Contact, Invoice, LineItem

    victim = live_invoices(stack)[3]
    theirs = xero_gateway(settings).create_invoices(
        [Invoice(type="ACCREC", contact=Contact(name="Someone Else Ltd"), invoice_number=victim["invoiceNumber"],
                 status="AUTHORISED", date=date(2026, 10, 1),
                 line_items=[LineItem(description="typed in Xero by hand", quantity=1, unit_amount=7, account_code="200")])],
        idempotency_key="by-hand",
    )[0]
    before = dict(stack.org.invoices[theirs.xero_id])
    state, summary = run()
    assert state.message.startswith("completed with") and "set aside" in state.message
    outcome = next(o for o in summary.outcomes if o.autotask_id == victim["id"])
    assert outcome.action == "set aside"
    assert "did not create" in outcome.reason and "prefix" in outcome.fix
    assert "must be unique" not in outcome.reason  # looked up after the refusal: named as the clash it is
    assert stack.org.invoices[theirs.xero_id] == before
    row = ledger_for(settings).records("acme", "invoice")[str(victim["id"])]
    assert row.state == DocState.SET_ASIDE and row.target_id is None

    # The fix: a prefix. The rerun creates it under the new number; the other document stays as it was.
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, invoice_number="AT-{invoiceNumber}"))
    _, again = run()
    outcome = next(o for o in again.outcomes if o.autotask_id == victim["id"])
    assert outcome.action == "created" and outcome.xero_number == f"AT-{victim['invoiceNumber']}"
    assert stack.org.invoices[theirs.xero_id] == before


# ---- 6. Xero numbering exactly once ------------------------------------------------------------------
def test_xero_numbering_lost_answer_and_a_rerun_days_later_makes_one_copy(atx_home, prefect_server, tmp_path):
    clock = manual_clock()
    with SandboxStack(seed=11, invoices=12, window_end=END, clock=clock) as stack:
        settings = connect(stack, "acme", mapping=mapping_file(tmp_path, invoice_number="xero"))
        # The batch is created but its answer is lost; the lookup that follows is refused (429 far beyond
        # the wait budget), so the run stops with its rows still `sending`, as a crash between send and record would.
        stack.xero.faults.retry_after_seconds = 3600
        stack.xero.faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Invoices", times=1)
        stack.xero.faults.script("429", method="GET", path_prefix="/api.xro/2.0/Invoices", times=1)
        state, _ = run(expect_completed=False)
        assert state.message.startswith("stopped early"), state.message
        rows = ledger_for(settings).records("acme", "invoice")
        sending = [r for r in rows.values() if r.state == DocState.SENDING]
        assert sending and all(r.natural_key.startswith("http") and r.contact_id for r in sending)
        created = [d for d in stack.org.invoices.values() if d["Type"] == "ACCREC"]
        assert len(created) == len(sending)  # Xero holds them; only the answer was lost

        clock.advance(3 * 24 * 3600)  # days later: Xero has long forgotten the Idempotency-Key
        stack.xero.faults.clear()
        _, summary = run()
        assert summary.count("created") == len(live_invoices(stack)) - len(sending) - summary.set_aside_count
        urls = Counter(d.get("Url") for d in stack.org.invoices.values() if d["Type"] == "ACCREC")
        assert len(urls) == len(live_invoices(stack)) - summary.set_aside_count
        assert all(n == 1 for n in urls.values())
        rows = ledger_for(settings).records("acme", "invoice")
        for r in sending:
            now = rows[r.source_id]
            assert now.state == DocState.SYNCED
            assert now.target_number == stack.org.invoices[now.target_id]["InvoiceNumber"]  # Xero's own number
            assert now.target_number.startswith("INV-")
        reported = {o.autotask_id: o for o in summary.outcomes}
        assert all(o.xero_number for o in reported.values() if o.action in ("created", "already in Xero"))
        assert_each_once(stack, settings)


# ---- 7. quarantine -----------------------------------------------------------------------------------
def test_an_unmapped_billing_code_is_set_aside_then_created_once_the_mapping_is_fixed(stack, tmp_path):
    demo = yaml.safe_load(DEMO.read_text())
    partial = dict(demo["accounts"], by_gl_account={k: v for k, v in demo["accounts"]["by_gl_account"].items() if k != 5})
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, "partial", accounts=partial))
    state, first = run()
    aside = {s.autotask_id: s for s in first.set_aside}
    assert aside, "the sandbox data should bill expenses (GL 5) somewhere"
    assert state.name == "Needs attention"
    assert state.message.startswith(f"completed with {first.set_aside_count} set aside; look at ")
    assert all("account mapping" in s.reason and "by_billing_code" in s.fix for s in aside.values())
    assert first.count("created") == len(live_invoices(stack)) - len(aside)
    rows = ledger_for(settings).records("acme", "invoice")
    assert all(rows[str(k)].state == DocState.SET_ASIDE and rows[str(k)].reason for k in aside)

    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, "fixed"))
    state, second = run()
    created = {o.autotask_id for o in second.outcomes if o.action == "created"}
    assert created == set(aside)
    assert second.set_aside_count == 0
    assert_each_once(stack, settings)


def test_a_locked_period_sets_invoices_aside_with_the_fix(stack, tmp_path):
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, status="AUTHORISED"))
    dates = sorted(i["invoiceDateTime"][:10] for i in live_invoices(stack))
    lock = date.fromisoformat(dates[len(dates) // 2])
    stack.org.period_lock_date = lock
    state, summary = run()
    locked = [o for o in summary.outcomes if o.action == "set aside"]
    assert locked and all("lock date" in o.reason and "lock date" in o.fix for o in locked)
    assert state.message.startswith("completed with")
    assert summary.count("created") > 0  # the rest of each batch went on
    assert_each_once(stack, settings)


# ---- 9. a big window ---------------------------------------------------------------------------------
def test_three_thousand_invoices_each_once_within_the_limits(atx_home, prefect_server):
    """3,200 invoices: 64 batches, each one create (Xero's refusal of a taken number is the clash check),
    plus contacts and settings: more than a minute's 60 calls. The sandbox keeps its real limits on a
    ManualClock that the pacer's waits advance, so minutes of pacing pass in no time; a 429 would stop the run."""
    with SandboxStack(seed=5, invoices=3200, window_end=END, clock=manual_clock()) as stack:
        settings = connect(stack, "bulk")
        _, summary = run("bulk")
        live = live_invoices(stack)
        assert len(live) > 3000
        assert summary.count("created") + summary.set_aside_count == len(live)
        gateway = xero_gateway(settings)
        assert gateway.waited > 0  # more than a minute's worth of calls: the pacer spread them out
        # Xero's busiest minute carried 57 or more of its 60 calls (95 %), and none was refused.
        assert stack.xero.limiter.busiest_minute(stack.org.tenant_id) >= 57
        assert stack.xero.limiter.refused == {}, dict(stack.xero.limiter.refused)
        assert summary.xero_calls < len(live) / 50 + 30  # one call a batch, not a lookup and a create
        assert_each_once(stack, settings)

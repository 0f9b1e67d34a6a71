"""The tenant's daily Xero call budget through real runs of the invoices flow, over HTTP against both
simulators on a manual clock: a run stops cleanly when the budget runs out, the next run that day costs
no Xero call, and the run after 00:00 UTC finishes the job with every document in Xero exactly once.
"""
from __future__ import annotations

from collections import Counter

import pytest

from atx.check import check_tenant
from atx.connections import ledger_for, xero_gateway
from core.call_budget import BudgetStatus, seconds_until_next_day, utc_day
from ledger import DocState
from sandbox.stack import SandboxStack
from tasks.report import summary_markdown
from tests.test_invoices_changes import END, assert_each_once, connect, live_invoices, manual_clock, run

pytestmark = pytest.mark.e2e

# 58 live invoices (two batches) take 10 Xero calls: the organisation's settings (6), contacts (2: one lookup
# by number and name, one create), then one create per batch (Xero's refusal of a taken number is the clash
# check). 9 lets the first batch through and stops before the second is created; the next day's run needs 8
# (the settings, one contact read, the second batch).
BUDGET = 9


def xero_invoices(stack) -> list[dict]:
    return [d for d in stack.org.invoices.values() if d["Type"] == "ACCREC" and d["Status"] != "DELETED"]


def assert_xero_matches_the_ledger(stack, settings) -> None:
    """Xero holds exactly the invoices the ledger records as synced, each once, under the recorded id."""
    in_xero = xero_invoices(stack)
    numbers = Counter(d["InvoiceNumber"] for d in in_xero)
    assert all(n == 1 for n in numbers.values()), [k for k, n in numbers.items() if n > 1]
    synced = {r.target_id for r in ledger_for(settings).records(settings.name, "invoice").values()
              if r.state == DocState.SYNCED}
    assert {d["InvoiceID"] for d in in_xero} == synced


def test_a_budget_too_small_for_the_window_stops_cleanly_and_the_next_day_finishes(atx_home, prefect_server):
    clock = manual_clock()
    with SandboxStack(seed=11, invoices=60, window_end=END, clock=clock) as stack:
        settings = connect(stack, "acme", xero={"daily_call_budget": BUDGET})
        assert settings.xero.daily_call_budget == BUDGET
        live = len(live_invoices(stack))

        # Day 1: the budget runs out in the middle of the window.
        state, first = run()
        assert state.is_completed() and state.name == "Stopped early"
        assert state.message.startswith("stopped early"), state.message
        assert "xero.daily_call_budget" in state.message and "goes on after 00:00 UTC, in " in state.message
        assert first.stopped and first.stopped in state.message and "used up for" in first.stopped
        created = {o.source_id for o in first.outcomes if o.action == "created"}
        left = {o.source_id for o in first.outcomes if o.action.startswith("not sent yet")}
        assert created and left and len(created) + len(left) == live
        assert all(o.reason == first.stopped for o in first.outcomes if o.source_id in left)
        assert first.xero_calls == BUDGET
        assert stack.xero.limiter.refused == {}, "the simulator answered 429: the budget let a call through too many"
        # What was sent is in Xero once and recorded; nothing else is in Xero, nothing is left `sending`.
        rows = ledger_for(settings).records("acme", "invoice")
        assert {k for k, r in rows.items() if r.state == DocState.SYNCED} == created
        assert not [r for r in rows.values() if r.state == DocState.SENDING]
        assert_xero_matches_the_ledger(stack, settings)
        assert ledger_for(settings).high_water("acme", "invoices") is None  # the window is kept
        # The report says why and what happens next; nothing secret is in it.
        report = summary_markdown(first)
        assert f"**Stopped early**: {first.stopped}" in report
        assert stack.xero_client_secret not in report + state.message

        # The same day, later: the run stops before reading anything, without one Xero call.
        clock.advance(3600)
        state, second = run()
        assert state.message.startswith("stopped early, before reading the window"), state.message
        assert "used up for" in state.message
        assert second.xero_calls == 0 and second.outcomes == []
        assert len(xero_invoices(stack)) == len(created)

        # After 00:00 UTC the budget is new: the run sends the rest and moves the high-water mark.
        clock.advance(seconds_until_next_day(clock.now()) + 60)
        state, third = run()
        assert not state.message.startswith("stopped early"), state.message
        assert {o.source_id for o in third.outcomes if o.action == "created"} == left
        assert third.count("already in Xero") == len(created)
        assert third.xero_calls <= BUDGET
        assert len(xero_invoices(stack)) == live
        assert ledger_for(settings).high_water("acme", "invoices") is not None
        assert stack.xero.limiter.refused == {}
        assert_xero_matches_the_ledger(stack, settings)
        assert_each_once(stack, settings)


def test_two_tenants_of_one_organisation_share_its_budget(atx_home, prefect_server):
    clock = manual_clock()
    with SandboxStack(seed=11, invoices=12, window_end=END, clock=clock) as stack:
        connect(stack, "acme", xero={"daily_call_budget": 8})
        state, first = run()
        assert state.message.startswith("stopped early") and first.xero_calls == 8
        assert not xero_invoices(stack)  # the settings (6) and the contact reads (2) used it up

        # A second tenant of the same organisation, with a gateway of its own: the day's count is the same.
        other = connect(stack, "acme-two", xero={"daily_call_budget": 8})
        assert other.xero.tenant_id == stack.org.tenant_id
        state, second = run("acme-two")
        assert state.message.startswith("stopped early, before reading the window"), state.message
        assert second.xero_calls == 0
        # With a larger budget of its own it may use what is left of that: 2 calls, not enough for its check,
        # which then stops the run as cleanly.
        other = connect(stack, "acme-two", xero={"daily_call_budget": 10})
        assert xero_gateway(other).call_budget_status() == BudgetStatus(day=utc_day(clock.now()), used=8, budget=10)
        state, third = run("acme-two")
        assert state.message.startswith("stopped early, before reading the window"), state.message
        assert "(10 calls)" in state.message and third.xero_calls == 2
        assert xero_gateway(other).call_budget_status().used == 10
        assert not xero_invoices(stack) and stack.xero.limiter.refused == {}


def test_atx_check_warns_when_most_of_the_budget_is_used_and_names_the_setting(atx_home):
    with SandboxStack(seed=3, invoices=8, window_end=END) as stack:
        stack.connect_tenant("acme", xero={"daily_call_budget": 7})
        problems = check_tenant("acme")  # the check itself reads the organisation's settings: 6 calls
        assert [p for p in problems if p.severity == "error"] == []
        [warning] = [p for p in problems if p.area == "Xero call budget"]
        assert warning.severity == "warning" and warning.problem.startswith("6 of the 7 Xero calls")
        assert "xero.daily_call_budget" in warning.problem and "xero.daily_call_budget" in warning.fix

        # With the budget spent part-way through, the check says so instead of failing.
        stack.connect_tenant("acme", xero={"daily_call_budget": 9})
        problems = check_tenant("acme")
        assert [p for p in problems if p.severity == "error"] == []
        limits = next(p for p in problems if p.area == "Xero limits")
        assert "the Xero checks were not made" in limits.problem and "xero.daily_call_budget" in limits.problem
        assert any(p.area == "Xero call budget" and p.problem.startswith("9 of the 9") for p in problems)


def test_pdfs_spend_what_the_budget_leaves_after_the_documents_and_the_next_days_runs_attach_the_rest(
        atx_home, prefect_server):
    """Each PDF is one Xero call. With 60 calls a day, the documents (11 calls) go first and all of them; the
    PDFs take what is left less the reserve kept for the day's later runs (10), and wait for the next day;
    the next day's runs attach them although their window holds none of those invoices, oldest first,
    each once, without a 429 and without passing the budget."""
    import re
    from datetime import timedelta

    from core.call_budget import pdf_reserve

    budget = 60
    clock = manual_clock()
    with SandboxStack(seed=11, invoices=60, window_end=END, clock=clock) as stack:
        settings = connect(stack, "acme", attach_pdfs=True, xero={"daily_call_budget": budget})
        live = len(live_invoices(stack))

        # Day 1: every document, and as many PDFs as the budget leaves.
        state, first = run()
        assert state.is_completed() and not first.stopped, state.message
        assert first.count("created") == live == len(xero_invoices(stack))
        day_one = xero_gateway(settings).call_budget_status()
        assert first.xero_calls == day_one.used <= budget - pdf_reserve(budget)
        rows = ledger_for(settings).records("acme", "invoice")
        attached = {k for k, r in rows.items() if r.attached_at}
        assert 0 < len(attached) < live and not first.attach_failures
        pdfs = re.search(r"PDFs: (\d+) PDFs attached, (\d+) left for the next run \(daily budget\)\.",
                         summary_markdown(first))
        assert pdfs and (int(pdfs[1]), int(pdfs[2])) == (len(attached), live - len(attached)), summary_markdown(first)
        # The oldest rows got theirs first.
        by_age = sorted(rows.values(), key=lambda r: r.id)
        assert {r.source_id for r in by_age[:len(attached)]} == attached
        stamps = {k: rows[k].attached_at for k in attached}

        # Day 2, with a window that holds none of them: a run capped at 5 PDFs, then one that attaches the rest.
        clock.advance(seconds_until_next_day(clock.now()) + 60)
        later = dict(since=END + timedelta(days=1), until=END + timedelta(days=2))
        settings = connect(stack, "acme", attach_pdfs=True, xero={"daily_call_budget": budget, "pdfs_per_run": 5})
        state, capped = run(**later)
        assert capped.outcomes == [] and state.is_completed(), state.message
        assert capped.pdfs == f"5 PDFs attached, {live - len(attached) - 5} left for the next run (xero.pdfs_per_run)"
        settings = connect(stack, "acme", attach_pdfs=True, xero={"daily_call_budget": budget})
        state, rest = run(**later)
        assert rest.pdfs == f"{live - len(attached) - 5} PDFs attached" and not rest.attach_failures
        assert xero_gateway(settings).call_budget_status().used <= budget

        rows = ledger_for(settings).records("acme", "invoice")
        assert all(r.attached_at for r in rows.values() if r.state == DocState.SYNCED)
        assert all(rows[k].attached_at == v for k, v in stamps.items())  # nothing attached twice
        for doc in xero_invoices(stack):
            assert len(stack.org.attachments.get(doc["InvoiceID"], {})) == 1, doc["InvoiceNumber"]
        assert stack.xero.limiter.refused == {}
        assert_each_once(stack, settings)


def test_xeros_day_running_out_under_the_pdfs_stops_them_and_calls_none_a_failure(atx_home, prefect_server):
    """Other integrations have used most of the organisation's day at Xero (X-DayLimit-Remaining), more
    than the tenant's own budget knows: the gateway stops before Xero's limit, the PDFs not attached wait
    for the next run, and none is reported as a failed attachment."""
    from sandbox.xero.limits import XeroLimits

    with SandboxStack(seed=11, invoices=60, window_end=END, clock=manual_clock()) as stack:
        stack.xero.limits = XeroLimits(per_day=30)
        settings = connect(stack, "acme", attach_pdfs=True)
        live = len(live_invoices(stack))
        state, first = run()
        assert state.is_completed() and not first.stopped, state.message
        assert first.count("created") == live and not first.attach_failures
        attached = [r for r in ledger_for(settings).records("acme", "invoice").values() if r.attached_at]
        assert 0 < len(attached) < live
        assert first.pdfs == f"{len(attached)} PDFs attached, {live - len(attached)} left for the next run " \
                             "(an API limit was reached)"
        assert stack.xero.limiter.refused == {}

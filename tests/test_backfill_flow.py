"""The backfill flow end to end: real Prefect runs over HTTP against both simulators.

A year of history in monthly chunks, each chunk a run of the document flow for its own days; a rerun
resumes after the last finished chunk; a dry run estimates and writes nothing. After each, every
document is in Xero exactly once and the ledger agrees with both simulators.
"""
from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from atx.connections import ledger_for
from core.documents import INVOICE
from ledger import DocState
from sandbox.stack import SandboxStack

pytestmark = pytest.mark.e2e

START, END = date(2025, 12, 1), date(2026, 11, 30)


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=21, invoices=48, window_end=END, history_days=365) as s:
        yield s


def run_backfill(**fields):
    from flows.backfill import Backfill, backfill

    fields.setdefault("tenant", "acme")
    fields.setdefault("start", START)
    fields.setdefault("end", END)
    state = backfill(request=Backfill(**fields), return_state=True)
    assert state.is_completed(), state.message
    return state.result()


def assert_each_invoice_once(stack, settings) -> None:
    """Every Autotask invoice of the window that was synced is in Xero once; the ledger names it."""
    ours = [d for d in stack.org.invoices.values() if d.get("Type") == "ACCREC" and d["Status"] != "DELETED"]
    numbers = Counter(d["InvoiceNumber"] for d in ours)
    assert numbers and all(n == 1 for n in numbers.values()), [k for k, n in numbers.items() if n > 1]
    rows = ledger_for(settings).records(settings.name, INVOICE.name)
    synced = {r.target_id for r in rows.values() if r.state == DocState.SYNCED}
    assert synced == {d["InvoiceID"] for d in ours}
    # And with Autotask: each synced row is an Autotask invoice of that number, in Xero under that number.
    autotask = {str(i["id"]): i["invoiceNumber"] for i in stack.autotask.records("Invoices")}
    by_id = {d["InvoiceID"]: d["InvoiceNumber"] for d in ours}
    for r in rows.values():
        if r.state == DocState.SYNCED:
            assert autotask[r.source_id] == r.source_number == by_id[r.target_id], r.source_id


def _tagged_run_ends(tenant: str) -> int:
    """How many invoices runs' Completed events name the tenant's tag, once the server has stored them."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    wanted = EventFilter(event=EventNameFilter(name=["prefect.flow-run.Completed"]),
                         related=EventRelatedFilter(id=[f"prefect.tag.tenant:{tenant}"]))
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while True:
            found = [e for e in client.read_events(wanted, limit=50).events
                     if (e.resource.name or "").startswith("invoices")]
            if len(found) >= 12 or time.monotonic() > deadline:  # events are stored every few seconds
                return len(found)
            time.sleep(1)


def test_a_year_in_monthly_chunks_syncs_each_month_once_and_a_rerun_resumes_with_nothing_to_do(stack):
    settings = stack.connect_tenant("acme")
    first = run_backfill(chunk_days=31)
    assert len(first.chunks) == 12 and {c.state for c in first.chunks} == {"done"}
    assert [c.start for c in first.chunks] == sorted(c.start for c in first.chunks)  # oldest first
    live = [i for i in stack.autotask.records("Invoices") if not i["isVoided"]]
    assert sum(c.created for c in first.chunks) >= len(live) - 2  # a credit note or two may be negative invoices
    assert_each_invoice_once(stack, settings)
    windows = ledger_for(settings).windows("acme", "backfill:invoices")
    assert len(windows) == 12 and all(w.state == "done" for w in windows)
    assert ledger_for(settings).high_water("acme", "invoices") is None  # the scheduled runs' mark is untouched
    # Each chunk run was created tagged with its tenant, so its end event names the tenant (alerts match it).
    assert _tagged_run_ends("acme") >= 12

    again = run_backfill(chunk_days=31)
    assert {c.state for c in again.chunks} == {"done before"} and "12 of 12 chunks done" in again.message
    assert_each_invoice_once(stack, settings)


def test_a_dry_run_writes_nothing_and_its_estimate_is_within_ten_percent_of_the_real_calls(stack):
    settings = stack.connect_tenant("acme")
    dry = run_backfill(chunk_days=31, dry_run=True)
    assert not [d for d in stack.org.invoices.values() if d.get("Type") == "ACCREC"]
    assert ledger_for(settings).windows("acme", "backfill:invoices") == []
    estimate = dry.estimate
    assert estimate.documents == len(stack.autotask.records("Invoices"))
    real = run_backfill(chunk_days=31)
    autotask = sum(c.autotask_calls for c in real.chunks)
    xero = sum(c.xero_calls for c in real.chunks)
    assert abs(estimate.autotask_calls - autotask) <= 0.1 * autotask, (estimate.autotask_calls, autotask)
    assert abs(estimate.xero_calls - xero) <= 0.1 * xero, (estimate.xero_calls, xero)


def _cli(*args, env):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.Popen([sys.executable, "-m", "atx.cli", "backfill", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=Path(__file__).resolve().parent.parent)


def test_a_backfill_killed_midway_resumes_where_it_stopped_with_no_duplicates(stack):
    import os
    import signal
    import time

    from prefect.settings import PREFECT_API_URL

    # A killed process's flow runs stay "Running" in Prefect: its heartbeat stops, here known dead after 3 s.
    settings = stack.connect_tenant("acme", heartbeat_seconds=0.5, heartbeat_timeout_seconds=3)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    args = ["--tenant", "acme", "--start", START.isoformat(), "--end", END.isoformat(), "--chunk-days", "31"]
    proc = _cli(*args, env=env)
    ledger = ledger_for(settings)
    deadline = time.monotonic() + 180
    while len([w for w in ledger.windows("acme", "backfill:invoices") if w.state == "done"]) < 4:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the backfill made no progress"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = {(w.window_start, w.window_end) for w in ledger.windows("acme", "backfill:invoices") if w.state == "done"}
    assert 4 <= len(done_before) < 12

    resumed = run_backfill(chunk_days=31)
    assert {(c.start, c.end) for c in resumed.chunks if c.state == "done before"} == done_before
    assert {c.state for c in resumed.chunks} == {"done before", "done"}
    assert_each_invoice_once(stack, settings)


def test_atx_backfill_dry_run_prints_the_estimate_and_writes_nothing(stack):
    import os

    from prefect.settings import PREFECT_API_URL

    stack.connect_tenant("acme")
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    proc = _cli("--tenant", "acme", "--start", START.isoformat(), "--end", END.isoformat(), "--dry-run", env=env)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "Estimate: 48 documents" in out and "Xero calls" in out
    assert not [d for d in stack.org.invoices.values() if d.get("Type") == "ACCREC"]
    bad = _cli("--tenant", "acme", "--start", END.isoformat(), "--end", START.isoformat(), env=env)
    out, _ = bad.communicate(timeout=120)
    assert bad.returncode == 2
    assert out == f"Error: --start {END} is after --end {START}: pass a --start on or before it\n"


def test_the_deployment_form_names_and_describes_every_field_with_date_pickers():
    from prefect.utilities.callables import parameter_schema

    from flows.backfill import backfill

    schema = parameter_schema(backfill).model_dump_for_openapi()
    fields = schema["definitions"]["Backfill"]["properties"]
    assert set(fields) == {"tenant", "start", "end", "document_types", "chunk_days", "dry_run"}
    for name, field in fields.items():
        assert field.get("title") and field.get("description"), name
        assert "anyOf" not in field and field.get("type") != "null", name  # no "Property is type None"
    assert fields["start"]["format"] == fields["end"]["format"] == "date"
    assert fields["document_types"]["items"]["enum"] == ["invoices", "bills", "payments"]


def test_a_backfill_of_invoices_and_payments_writes_back_the_settlements_of_each_chunk(stack, tmp_path):
    import yaml

    from atx.connections import autotask_client, xero_gateway
    from core.documents import PaymentDraft

    mapping = yaml.safe_load(open("mappings/demo.yaml"))
    mapping["status"] = "AUTHORISED"
    (tmp_path / "approved.yaml").write_text(yaml.safe_dump(mapping))
    settings = stack.connect_tenant("acme", str(tmp_path / "approved.yaml"), flows=["invoices", "payments"])
    first = run_backfill(chunk_days=92, document_types=["invoices"])
    assert {c.state for c in first.chunks} == {"done"}
    rows = [r for r in ledger_for(settings).records("acme", INVOICE.name).values() if r.state == DocState.SYNCED]
    gateway = xero_gateway(settings)
    paid = rows[:3]
    for row in paid:
        due = gateway.find(INVOICE, ids=[row.target_id])[0].amount_due
        assert gateway.create_payments([PaymentDraft(invoice_id=row.target_id, amount=due, date=date(2026, 11, 28),
                                                     account_code="090")], idempotency_key=f"p-{row.target_id}")[0].ok
    both = run_backfill(chunk_days=92, document_types=["invoices", "payments"])
    assert [c.state for c in both.chunks if c.document_type == "invoices"] == ["done before"] * 4
    assert {c.state for c in both.chunks if c.document_type == "payments"} == {"done"}
    assert sum(c.created for c in both.chunks if c.document_type == "payments") == len(paid)
    with autotask_client(settings) as at:
        assert all(at.get("Invoices", int(r.source_id))["paidDate"].startswith("2026-11-28") for r in paid)
    assert_each_invoice_once(stack, settings)


def test_a_backfill_that_uses_up_the_daily_budget_stops_cleanly_and_goes_on_the_next_day(atx_home, prefect_server):
    from datetime import datetime, timezone

    from atx.connections import use_clock
    from sandbox.clock import ManualClock

    clock = ManualClock(start=datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))
    with SandboxStack(seed=21, invoices=48, window_end=END, history_days=365, clock=clock) as stack:
        use_clock(clock, sleep=clock.advance)  # undone by the atx_home fixture
        # The settings read and about three calls a chunk: a budget of 20 runs out a few chunks in.
        settings = stack.connect_tenant("acme", xero={"daily_call_budget": 20})
        first = run_backfill(chunk_days=31)
        states = [c.state for c in first.chunks]
        assert "stopped" in states and states[0] == "done" and states[-1] == "not started", states
        assert first.stopped and "xero.daily_call_budget" in first.stopped and "goes on after 00:00 UTC" in first.stopped
        assert "run it again with the same parameters to resume" in first.message
        assert stack.xero.limiter.refused == {}, "the budget let a call through to Xero's own limit"
        done = {(w.window_start, w.window_end) for w in ledger_for(settings).windows("acme", "backfill:invoices")
                if w.state == "done"}
        assert len(done) == states.index("stopped")

        same_day = run_backfill(chunk_days=31)  # nothing more today: no chunk is done twice
        assert same_day.stopped and {(c.start, c.end) for c in same_day.chunks if c.state == "done before"} == done

        days = 0
        while True:  # day after day, each run goes on where the last one stopped
            clock.advance(24 * 3600)
            days += 1
            later = run_backfill(chunk_days=31)
            if not later.stopped:
                break
            assert days < 10, later.message
        assert {c.state for c in later.chunks} <= {"done before", "done"}
        assert_each_invoice_once(stack, settings)

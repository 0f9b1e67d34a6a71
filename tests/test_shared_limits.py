"""Call limits that hold across processes: Xero's calls a minute and in flight per organisation, and Autotask's
requests in flight per endpoint, kept in the ledger (ledger/limits.py); Autotask's hourly threshold, watched
through ThresholdInformation (clients/autotask.py HourlyThreshold).

Separate processes are played by separate limiters on one ledger (each process has its own), or, end to
end, by separate worker processes running flows against one sandbox whose simulators keep their limits."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from atx.connections import ledger_for
from clients.autotask import AutotaskClient, AutotaskRateLimited, HourlyThreshold
from ledger import Ledger
from ledger.limits import LedgerLimits
from ledger.models import CallSlot
from sandbox.autotask import AutotaskSandbox, create_app, generate_data
from sandbox.clock import ManualClock, ScaledClock
from sandbox.serving import serve
from sandbox.stack import SandboxStack
from sandbox.xero.limits import XeroLimits
from tests.ledger_support import engine_in_schema
from tests.test_invoices_changes import END, SINCE, UNTIL, assert_each_once, connect, live_invoices, run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    if request.param == "sqlite":
        from ledger import engine_for_url

        yield Ledger(engine_for_url(f"sqlite:///{tmp_path / 'ledger.db'}"))
        return
    url = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("postgres_schema")
    yield Ledger(engine_in_schema(url, schema))


def on_clock(clock: ManualClock):
    """A limiter's view of a manual clock: its epoch seconds, and waits that move it."""
    return dict(now=lambda: clock.now().timestamp(), sleep=clock.advance)


# ---- the ledger's limits, between processes ------------------------------------------------------------
def test_two_processes_share_one_rolling_minute(ledger):
    clock = ManualClock()
    first, second = LedgerLimits(ledger, **on_clock(clock)), LedgerLimits(ledger, **on_clock(clock))
    made: list[float] = []
    for turn in range(25):  # the two take turns, each believing it is alone
        (first if turn % 2 else second).pace("xero-org-1-calls", 10)
        made.append(clock.monotonic())
    # Together, never more than 10 in any 60 seconds; the first 10 went at once.
    assert max(sum(1 for t in made if start <= t < start + 60) for start in made) == 10
    assert made[:10] == [made[0]] * 10
    assert made[-1] - made[0] == 120  # 25 calls: two full minutes of waiting, not more
    assert first.waited + second.waited == 120
    # Another organisation has its own minute.
    assert first.pace("xero-org-2-calls", 10) == 0.0


def most_in_flight(processes: list, name: str, at_once: int, calls: int = 24) -> int:
    """The most calls in flight at once when six threads make `calls` calls, each holding a slot of `name`
    from one of `processes`' limiters in turn. A call stays until `at_once` are in flight (or 2 s pass), so the
    limit is reached however slowly a loaded machine hands out the slots."""
    in_flight, most, changed = 0, 0, threading.Condition()

    def call(n: int) -> None:
        nonlocal in_flight, most
        with processes[n % len(processes)].hold(name, at_once):
            with changed:
                in_flight += 1
                most = max(most, in_flight)
                changed.notify_all()
                changed.wait_for(lambda: in_flight >= at_once, timeout=2)
            time.sleep(0.02)
            with changed:
                in_flight -= 1

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(call, range(calls)))
    return most


def test_calls_in_flight_are_shared_and_a_dead_holders_slot_comes_back_after_its_lease(ledger):
    limits = [LedgerLimits(ledger, sleep=lambda s: time.sleep(0.01)) for _ in range(3)]
    assert most_in_flight(limits, "autotask-abc-invoices", 2) == 2

    # A process that died in the middle of a call never gives its slot back: the lease does.
    clock = ManualClock()
    dead, alive = LedgerLimits(ledger, **on_clock(clock)), LedgerLimits(ledger, **on_clock(clock))
    dying = dead.hold("xero-org-1-in-flight", 1)
    dying.__enter__()  # and never exits
    started = clock.monotonic()
    with alive.hold("xero-org-1-in-flight", 1):
        assert clock.monotonic() - started >= dead.lease_seconds
    del dying


def test_making_a_limit_is_idempotent_and_safe_when_processes_race(ledger):
    barrier = threading.Barrier(4)

    def make() -> None:
        limits = LedgerLimits(Ledger(ledger.engine))  # as another process: nothing remembered
        barrier.wait()
        limits.pace("xero-org-9-calls", 30)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: make(), range(4)))
    with ledger.engine.connect() as conn:
        slots = conn.execute(select(CallSlot.slot).where(CallSlot.name == "xero-org-9-calls")).scalars().all()
    assert sorted(slots) == list(range(30))
    # A tenant setting raised later adds the missing slots and keeps the others.
    LedgerLimits(ledger).pace("xero-org-9-calls", 40)
    assert LedgerLimits(ledger).slots("xero-org-9-calls") == 40


# ---- Autotask over HTTP ---------------------------------------------------------------------------------
def _client(sandbox, server, **options) -> AutotaskClient:
    cred = sandbox.credentials
    return AutotaskClient(username=cred.username, secret=cred.secret, integration_code=cred.integration_code,
                          zone_lookup_url=server.base_url + "/atservicesrest", **options)


def _wait_until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_two_processes_keep_autotasks_three_threads_per_endpoint_together(ledger):
    sandbox = AutotaskSandbox(generate_data(invoices=12))
    with serve(create_app(sandbox)) as server:
        # Each client is another process's: its own limiter, on the one ledger they share.
        clients = [_client(sandbox, server, limits=LedgerLimits(ledger), sleep=lambda s: time.sleep(0.01))
                   for _ in range(2)]
        for c in clients:
            c.get("Companies", 174)  # each finds its zone before the burst
        with ThreadPoolExecutor(12) as pool:
            with sandbox.hold("Invoices"):
                futures = [pool.submit(clients[n % 2].invoice_pdf, 6001 + n) for n in range(12)]
                _wait_until(lambda: sandbox.in_flight("Invoices") == 3)
                time.sleep(0.3)  # every chance for a fourth to (wrongly) reach Autotask
                assert sandbox.in_flight("Invoices") == 3
            assert all(f.result()[1].startswith(b"%PDF-") for f in futures)
        for c in clients:
            c.close()
    assert sandbox.thread_rejections == 0 and sandbox.max_in_flight["Invoices"] == 3


def test_three_processes_stop_short_of_the_hourly_threshold_together():
    clock = ManualClock()
    sandbox = AutotaskSandbox(generate_data(invoices=5), clock=clock, hourly_threshold=300)
    with serve(create_app(sandbox)) as server:
        # Three processes: each its own watch of the database's hour, knowing nothing of the others' calls.
        clients = [_client(sandbox, server, hourly=HourlyThreshold(clock=clock.monotonic)) for _ in range(3)]
        stops: list[AutotaskRateLimited] = []

        def keep_reading(c: AutotaskClient) -> int:
            made = 0
            try:
                while True:
                    c.get("Invoices", 6001)
                    made += 1
            except AutotaskRateLimited as exc:
                stops.append(exc)
            return made

        with ThreadPoolExecutor(3) as pool:
            made = list(pool.map(keep_reading, clients))
        for c in clients:
            c.close()
    assert sandbox.rate_rejections == 0, "Autotask answered 429: the watches let the database pass its threshold"
    assert len(stops) == 3 and all("hourly request threshold" in str(e) for e in stops)
    assert all(made)  # each got its share
    used = sandbox.request_count
    assert 0.9 * 300 <= used < 300  # most of the hour was used, and the reserve was left


def test_a_run_near_the_hourly_threshold_stops_cleanly_and_keeps_its_window(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=30, window_end=END, clock=ManualClock()) as stack:
        stack.autotask.hourly_threshold = 20  # a database whose hour other integrations have nearly used
        settings = connect(stack, "acme")
        state, summary = run()
        assert state.is_completed() and state.message.startswith("stopped early"), state.message
        assert "hourly request threshold" in state.message
        assert stack.autotask.rate_rejections == 0  # stopped before Autotask had to refuse anything
        assert not stack.org.invoices
        assert ledger_for(settings).high_water("acme", "invoices") is None  # the next run reads the window again


# ---- flow runs in separate processes at once -------------------------------------------------------------
SPEED = 20.0  # the sandbox's minute passes in three real seconds


@pytest.mark.parametrize("kept_in", ["ledger", "prefect"])
def test_three_runs_of_one_tenant_in_separate_processes_meet_no_429(atx_home, prefect_server, kept_in):
    """Three workers run the invoices flow of one tenant at the same moment against simulators that keep
    their limits on a clock twenty times as fast as real time: Xero's calls a minute (lowered to 12, the
    tenant allows itself 10) and in flight (3; the tenant 2), Autotask's three threads per endpoint. Each
    worker alone would keep within them; only limits the three keep together, in the ledger or in Prefect's
    global concurrency limits, keep the simulators from answering 429."""
    from prefect.settings import PREFECT_API_URL

    from atx.connections import CALL_LIMITS_ENV

    clock = ScaledClock(SPEED, start=datetime.now(timezone.utc).replace(microsecond=0))
    with SandboxStack(seed=11, invoices=60, window_end=END, clock=clock) as stack:
        stack.xero.limits = XeroLimits(per_minute=12, per_day=5000, concurrent=3, app_per_minute=10_000)
        settings = stack.connect_tenant("acme", xero={"calls_per_minute": 10, "max_in_flight": 2})
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT),
               CALL_LIMITS_ENV: kept_in}
        ready, go = [atx_home / f"ready-{n}" for n in range(3)], atx_home / "go"
        # Files, not pipes: a worker whose pipe filled up would stall in the middle of its run.
        logs = [(open(atx_home / f"out-{n}", "w+"), open(atx_home / f"err-{n}", "w+")) for n in range(3)]
        workers = [subprocess.Popen(
            [sys.executable, "-m", "tests.limits_worker", "--tenant", "acme", "--since", SINCE.isoformat(),
             "--until", UNTIL.isoformat(), "--speed", str(SPEED), "--clock-start", clock.start.isoformat(),
             "--clock-origin", repr(clock.origin), "--ready", str(ready[n]), "--go", str(go)],
            cwd=ROOT, env=env, stdout=out, stderr=err, text=True) for n, (out, err) in enumerate(logs)]
        deadline = time.monotonic() + 300
        while not all(r.exists() for r in ready) and all(w.poll() is None for w in workers):
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.05)
        go.touch()  # every run starts now
        for w in workers:
            w.wait(timeout=600)
        states = []
        for out, err in logs:
            out.seek(0), err.seek(0)
            lines = out.read().strip().splitlines()
            states.append(json.loads(lines[-1]) if lines else {"state": "none", "message": err.read()[-3000:]})
            out.close(), err.close()

        assert [s["state"] for s in states] == ["COMPLETED"] * 3, states
        assert stack.xero.limiter.refused == {}, f"Xero answered 429: {dict(stack.xero.limiter.refused)}"
        assert stack.autotask.thread_rejections == 0 and stack.autotask.rate_rejections == 0
        tenant_id = stack.org.tenant_id
        if kept_in == "ledger":
            limits = LedgerLimits(ledger_for(settings))
            sizes = [limits.slots(f"xero-{tenant_id}-calls"), limits.slots(f"xero-{tenant_id}-in-flight")]
        else:
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                sizes = [client.read_global_concurrency_limit_by_name(f"xero-{tenant_id}-{what}").limit
                         for what in ("calls", "in-flight")]
        assert sizes == [10, 2]
        assert live_invoices(stack)
        assert_each_once(stack, settings)




# ---- Xero's minute, used to the full by two tenants of one organisation -----------------------------------
@pytest.mark.parametrize("kept_in", ["ledger", "prefect"])
def test_two_tenants_of_one_organisation_use_59_of_xeros_60_calls_a_minute_and_meet_no_429(
        atx_home, kept_in, monkeypatch, request):
    """Two tenants synced into one Xero organisation share its 60 calls a minute through the ledger, or
    through Prefect's global concurrency limits (ATX_CALL_LIMITS=prefect). Xero's minutes are fixed windows
    (the sandbox's limiter keeps them as Xero does, on a ManualClock the pacer's waits advance): each full
    one carries 59 calls (xero.calls_per_minute), and none is ever refused."""
    from atx.connections import CALL_LIMITS_ENV, use_clock, xero_gateway

    monkeypatch.setenv(CALL_LIMITS_ENV, kept_in)
    if kept_in == "prefect":
        request.getfixturevalue("prefect_server")

    clock = ManualClock(start=datetime.now(timezone.utc).replace(microsecond=0))
    with SandboxStack(seed=3, invoices=4, window_end=END, clock=clock) as stack:
        tenants = [stack.connect_tenant(name) for name in ("acme", "acme-two")]
        assert tenants[0].xero.tenant_id == tenants[1].xero.tenant_id == stack.org.tenant_id
        assert tenants[0].xero.calls_per_minute == 59  # the default
        use_clock(clock, sleep=clock.advance)
        gateways = [xero_gateway(t) for t in tenants]

        # The two take turns, each pacing as if alone: one shared count keeps both within Xero's minute.
        for turn in range(5 * 59):
            gateways[turn % 2].find_invoices(numbers=["NONE-1"])
        minutes = stack.xero.limiter.minute_counts(stack.org.tenant_id)
        assert stack.xero.limiter.refused == {}, dict(stack.xero.limiter.refused)
        assert minutes == [59] * 5  # 98 % of Xero's 60, every minute
        assert gateways[0].waited + gateways[1].waited == 4 * 60

        # At the same moment, in two threads, each gateway with its calls in flight: still no 429.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda g: [g.find_invoices(numbers=["NONE-1"]) for _ in range(150)], gateways))
        minutes = stack.xero.limiter.minute_counts(stack.org.tenant_id)
        assert stack.xero.limiter.refused == {}, dict(stack.xero.limiter.refused)
        assert sum(minutes) == 5 * 59 + 300 and max(minutes) == 59
        assert stack.xero.limiter.busiest_minute(stack.org.tenant_id) >= 57
        if kept_in == "prefect":  # the dashboard's Concurrency page shows the organisation's limits
            from prefect.client.orchestration import get_client

            with get_client(sync_client=True) as client:
                sizes = {name: client.read_global_concurrency_limit_by_name(name).limit
                         for name in (f"xero-{stack.org.tenant_id}-calls", f"xero-{stack.org.tenant_id}-in-flight")}
            assert sizes == {f"xero-{stack.org.tenant_id}-calls": 59,
                             f"xero-{stack.org.tenant_id}-in-flight": tenants[0].xero.max_in_flight}

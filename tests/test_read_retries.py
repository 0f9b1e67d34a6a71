"""Transient failures of reads are retried where it is safe: in the clients, with backoff, jitter and the
server's Retry-After, so neither the preflight nor a batch's lookups fail a run. Writes are never retried
when their outcome is unknown (the pipeline looks the document up first), and refusals are never retried.

The faults are the simulators' own (sandbox/faults.py), seeded, on reads only: Xero's GETs, and Autotask's
GETs and POSTs (its queries are POSTs; its one write, the invoice PATCH, is never faulted here)."""
from __future__ import annotations

import pytest

from atx.connections import autotask_client, forget_clients, use_clock, xero_gateway
from atx.settings import save_tenant
from clients.autotask import AutotaskQueryError
from clients.limits import backoff
from sandbox.clock import ManualClock
from sandbox.faults import FaultConfig
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import END, assert_each_once, connect, live_invoices, manual_clock, run

AUTOTASK = "/atservicesrest/v1.0"
XERO = "/api.xro/2.0"
CLIENT_TIMEOUT, HELD = 2.0, 5.0  # a held answer outlasts the clients' timeout: a real timeout, not a delay


def read_faults(seed: int, *methods: str) -> FaultConfig:
    """About 10 % of reads fail: 503 (with Retry-After), 500, dropped connections, timeouts."""
    return FaultConfig(rate_503=0.04, rate_500=0.03, rate_drop=0.02, rate_timeout=0.01, methods=methods, seed=seed,
                       timeout_seconds=HELD)


def short_timeouts(settings):
    """The tenant's clients give up on an answer after CLIENT_TIMEOUT seconds."""
    settings = settings.model_copy(update={
        "autotask": settings.autotask.model_copy(update={"timeout_seconds": CLIENT_TIMEOUT}),
        "xero": settings.xero.model_copy(update={"timeout_seconds": CLIENT_TIMEOUT}),
    })
    save_tenant(settings)
    forget_clients(settings.name)
    return settings


@pytest.mark.e2e
def test_an_invoices_run_finishes_its_window_under_read_faults_on_both_simulators(atx_home, prefect_server):
    xero, autotask = read_faults(8, "GET"), read_faults(8, "GET", "POST")
    scripted = [
        # An Autotask zone lookup failing with a bare 500 once read as a refused user: the run failed its check.
        autotask.script("500", method="GET", path_prefix=f"{AUTOTASK}/zoneInformation"),
        autotask.script("drop", method="POST", path_prefix=f"{AUTOTASK}/Companies/query"),
        autotask.script("timeout", method="POST", path_prefix=f"{AUTOTASK}/BillingItems/query"),
        # The organisation's settings, read before any batch, and the contacts' lookup. (A batch of new invoices
        # reads nothing: Xero's answer to the send is its clash check.)
        xero.script("503", method="GET", path_prefix=f"{XERO}/Accounts"),
        xero.script("timeout", method="GET", path_prefix=f"{XERO}/Contacts"),
        xero.script("drop", method="GET", path_prefix=f"{XERO}/TaxRates"),
    ]
    with SandboxStack(seed=11, invoices=60, window_end=END, clock=manual_clock(), xero_faults=xero,
                      autotask_faults=autotask) as stack:
        settings = short_timeouts(connect(stack, "acme"))
        state, summary = run()

        assert not state.message.startswith("stopped early"), state.message
        assert summary.count("created") + summary.set_aside_count == len(live_invoices(stack))
        assert_each_once(stack, settings)
        assert all(s.fired == s.times for s in scripted), [(s.kind, s.path_prefix) for s in scripted if not s.fired]
        # The seeded rates failed more reads than the scripts did, and never a write.
        assert len(xero.log) + len(autotask.log) > len(scripted)
        assert {method for _, method, _ in xero.log} == {"GET"}
        assert {method for _, method, _ in autotask.log} <= {"GET", "POST"}


def test_the_preflight_survives_a_failure_of_each_read_it_makes(atx_home):
    from prefect.logging import disable_run_logger

    from tasks.tenancy import check_before_writing

    xero, autotask = FaultConfig(timeout_seconds=HELD), FaultConfig(timeout_seconds=HELD)
    scripted = [
        autotask.script("500", method="GET", path_prefix=f"{AUTOTASK}/zoneInformation", times=2),
        autotask.script("429", method="GET", path_prefix=f"{AUTOTASK}/zoneInformation"),  # busy, not a refused user
        autotask.script("503", method="GET", path_prefix=f"{AUTOTASK}/ThresholdInformation"),
        xero.script("drop", method="GET", path_prefix="/connections"),
        xero.script("503", method="GET", path_prefix=f"{XERO}/Organisation"),
        xero.script("timeout", method="GET", path_prefix=f"{XERO}/Accounts"),
        xero.script("500", method="GET", path_prefix=f"{XERO}/TaxRates"),
        xero.script("drop", method="GET", path_prefix=f"{XERO}/TrackingCategories"),
    ]
    with SandboxStack(seed=11, invoices=5, window_end=END, clock=manual_clock(), xero_faults=xero,
                      autotask_faults=autotask) as stack:
        short_timeouts(connect(stack, "acme"))
        with disable_run_logger():
            checked = check_before_writing.fn("acme")
        assert checked.problems == [] and checked.stopped is None, checked  # checked: no problem, no stop
    assert all(s.fired == s.times for s in scripted), [(s.kind, s.path_prefix) for s in scripted if s.fired < s.times]


# ---- how long a read waits, and what is never retried ------------------------------------------------------
def test_a_503_with_retry_after_is_waited_as_asked_by_both_clients(atx_home):
    clock, waits = ManualClock(), []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    xero, autotask = FaultConfig(retry_after_seconds=7), FaultConfig(retry_after_seconds=7)
    with SandboxStack(seed=11, invoices=5, window_end=END, clock=clock, xero_faults=xero,
                      autotask_faults=autotask) as stack:
        settings = stack.connect_tenant("acme")
        use_clock(clock, sleep=sleep)
        xero.script("503", method="GET", path_prefix=f"{XERO}/Organisation")
        assert xero_gateway(settings).organisation().name
        autotask.script("503", method="POST", path_prefix=f"{AUTOTASK}/Invoices/query")
        with autotask_client(settings) as at:
            assert list(at.query("Invoices", [{"op": "eq", "field": "id", "value": 6001}]))
    assert waits == [7.0, 7.0]


def test_a_refused_query_is_not_retried(atx_home):
    with SandboxStack(seed=11, invoices=5, window_end=END) as stack:
        settings = stack.connect_tenant("acme")
        with autotask_client(settings) as at:
            at.threshold()
            before = stack.autotask.request_count
            with pytest.raises(AutotaskQueryError):
                list(at.query("Invoices", [{"op": "eq", "field": "noSuchField", "value": 1}]))
            assert stack.autotask.request_count - before == 1


def test_backoff_waits_retry_after_else_a_jittered_exponential_step():
    assert backoff(3, base=2, cap=30, retry_after=7.5) == 7.5
    assert [backoff(n, base=2, cap=30, rand=lambda: 0.0) for n in range(6)] == [1, 2, 4, 8, 15, 15]
    assert [backoff(n, base=2, cap=30, rand=lambda: 1.0) for n in range(6)] == [2, 4, 8, 16, 30, 30]
    waits = {backoff(2, base=2, cap=30) for _ in range(50)}
    assert len(waits) > 1 and all(4 <= w <= 8 for w in waits)

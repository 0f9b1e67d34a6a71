"""Call limits kept in Prefect's global concurrency limits (atx/limits.py), against a real Prefect API: separate
processes are played by separate limiters, each with its own Prefect client and nothing remembered between them,
so all they share is what the Prefect server keeps."""
from __future__ import annotations

import time

import pytest

from atx.limits import PrefectLimits
from sandbox.clock import ManualClock
from tests.test_shared_limits import most_in_flight

pytestmark = pytest.mark.usefixtures("prefect_server")


def read_limit(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


def test_calls_in_flight_are_shared_through_a_prefect_limit_of_that_size():
    processes = [PrefectLimits(sleep=lambda s: time.sleep(0.01)) for _ in range(3)]
    assert most_in_flight(processes, "autotask-abc-invoices", 2) == 2
    limit = read_limit("autotask-abc-invoices")
    assert (limit.limit, limit.active_slots) == (2, 0)  # every slot given back
    for p in processes:
        p.close()


def test_two_processes_share_one_rolling_minute_and_use_all_of_it():
    clock = ManualClock()
    first, second = (PrefectLimits(now=lambda: clock.now().timestamp(), sleep=clock.advance) for _ in range(2))
    made: list[float] = []
    for turn in range(25):  # the two take turns, each believing it is alone
        with (first if turn % 2 else second).paced("xero-org-p1-calls", 10):
            made.append(clock.monotonic())
    # Together, never more than 10 in any 60 seconds, and the minutes are used to the full.
    assert max(sum(1 for t in made if start <= t < start + 60) for start in made) == 10
    assert made[:10] == [made[0]] * 10
    assert 120 <= made[-1] - made[0] <= 121  # two minutes of waiting (within one poll of each), not more
    assert read_limit("xero-org-p1-calls").limit == 10
    # Another organisation has its own minute.
    with first.paced("xero-org-p2-calls", 10) as waited:
        assert waited == 0.0
    for p in (first, second):
        p.close()


def test_one_process_alone_waits_for_its_own_slots_without_asking_prefect_again():
    clock = ManualClock()
    alone = PrefectLimits(now=lambda: clock.now().timestamp(), sleep=clock.advance)
    for _ in range(3 * 5):
        with alone.paced("xero-org-p3-calls", 5):
            pass
    assert alone.waited == 2 * 60
    # A slot taken for each call, one ask a minute that found every slot taken, and the first ten given back
    # (the last five are still inside their minute); besides, off the calls' path, the leases shortened.
    assert alone.api_calls - alone.renewals == 15 + 2 + 10
    assert alone.renewals <= 15
    alone.close()


def test_a_limit_follows_the_tenants_setting_and_is_switched_back_on():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    PrefectLimits().pace("xero-org-p4-calls", 30)
    assert read_limit("xero-org-p4-calls").limit == 30
    with get_client(sync_client=True) as client:  # someone switched it off in the dashboard
        client.update_global_concurrency_limit("xero-org-p4-calls", GlobalConcurrencyLimitUpdate(active=False))
    PrefectLimits().pace("xero-org-p4-calls", 40)  # a new process, with the setting raised
    limit = read_limit("xero-org-p4-calls")
    assert (limit.limit, limit.active) == (40, True)


def test_a_slot_whose_minute_is_over_is_given_back_by_the_background_thread():
    clock = ManualClock()
    limits = PrefectLimits(now=lambda: clock.now().timestamp(), sleep=clock.advance)
    with limits.paced("xero-org-p5-calls", 3):
        pass
    assert read_limit("xero-org-p5-calls").active_slots == 1  # still inside its minute
    clock.advance(60)
    deadline = time.monotonic() + 10
    while read_limit("xero-org-p5-calls").active_slots and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_limit("xero-org-p5-calls").active_slots == 0
    limits.close()


def test_a_slot_prefect_cannot_take_back_leaves_the_call_it_limited_alone(caplog):
    """The call inside `hold` has happened (a write Xero made): a Prefect API that fails as the slot is given
    back must not turn its answer into an error. The slot is left to its lease."""
    import httpx

    from prefect.client.orchestration import get_client

    class ReleaseFails:
        def __init__(self):
            self._real = get_client(sync_client=True)

        def __enter__(self):
            self._real.__enter__()
            return self

        def __exit__(self, *exc):
            return self._real.__exit__(*exc)

        def release_concurrency_slots_with_lease(self, lease):
            raise httpx.ConnectError("the Prefect server went away")

        def __getattr__(self, name):
            return getattr(self._real, name)

    limits = PrefectLimits(client_factory=ReleaseFails)
    with limits.hold("xero-org-p6-in-flight", 1):
        answer = "the write's answer"
    assert answer == "the write's answer"
    assert read_limit("xero-org-p6-in-flight").active_slots == 1  # until its lease runs out
    assert "could not give back a slot of xero-org-p6-in-flight (ConnectError)" in caplog.text

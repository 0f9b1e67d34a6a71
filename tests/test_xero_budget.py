"""The tenant's daily Xero call budget (xero.daily_call_budget): the pure arithmetic on its own, the count
in the ledger database, and the gateway keeping to it over real HTTP against the Xero simulator, alone,
with a second gateway of the same organisation, and with gateways in two other processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from clients.xero import DailyCallBudget, MemoryCallUsage, XeroRateLimited, XeroUnavailable
from core.call_budget import (BudgetStatus, budget_used_up, calls_to_take, next_day_starts, seconds_until_next_day,
                              usage_warning, utc_day, wait_text, xero_day_nearly_used, xero_day_reached)
from ledger import Ledger, LedgerCallUsage, engine_for_url
from sandbox.xero.limits import XeroLimits
from tests.test_ledger_migrations import database  # noqa: F401 - the fixture: SQLite, and PostgreSQL when set
from tests.test_xero_gateway import CLIENT_ID, CLIENT_SECRET, INVOICES, world  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[1]
ORGANISATION = "/api.xro/2.0/Organisation"
T = datetime(2026, 12, 1, 18, 48, tzinfo=timezone.utc)


# ---- the pure parts ------------------------------------------------------------------------------------
def test_the_day_is_the_utc_calendar_day_and_the_next_begins_at_midnight_utc():
    auckland = timezone(timedelta(hours=13))
    assert utc_day(datetime(2026, 12, 2, 9, 0, tzinfo=auckland)) == date(2026, 12, 1)  # still the 1st in UTC
    assert utc_day(datetime(2026, 12, 1, 23, 59, 59)) == date(2026, 12, 1)  # naive: taken as UTC
    assert next_day_starts(T) == datetime(2026, 12, 2, tzinfo=timezone.utc)
    assert seconds_until_next_day(T) == 5 * 3600 + 12 * 60
    # At midnight itself the day has just begun: a whole day to wait, never zero.
    assert seconds_until_next_day(datetime(2026, 12, 2, tzinfo=timezone.utc)) == 86_400
    # The last day of the year rolls into the next year.
    assert next_day_starts(datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)) == datetime(2027, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("seconds, text", [
    (5 * 3600 + 12 * 60, "5 h 12 min"), (5 * 3600 + 11 * 60 + 1, "5 h 12 min"), (2 * 3600, "2 h"),
    (59 * 60 + 30, "1 h"), (180, "3 min"), (1, "1 min"), (0.2, "1 min"), (86_400, "24 h"),
])
def test_waits_read_in_hours_and_minutes_rounded_up(seconds, text):
    assert wait_text(seconds) == text


def test_calls_are_taken_only_as_far_as_the_budget_goes():
    assert calls_to_take(10, 0, 1000) == 10
    assert calls_to_take(10, 995, 1000) == 5
    assert calls_to_take(10, 1000, 1000) == 0
    assert calls_to_take(10, 1200, 1000) == 0  # the budget lowered below the day's use
    assert calls_to_take(10, 0, 3) == 3


def test_the_messages_name_the_setting_the_day_and_when_the_sync_goes_on():
    message = budget_used_up(date(2026, 12, 1), 1000, T)
    assert message == ("the daily Xero call budget (the tenant setting xero.daily_call_budget) is used up for "
                       "2026-12-01 (1000 calls); the sync goes on after 00:00 UTC, in 5 h 12 min, or raise "
                       "xero.daily_call_budget")
    low = xero_day_nearly_used(4, 5, T, next_day_starts(T))
    assert "X-DayLimit-Remaining" in low and "4 calls remain" in low and "after 00:00 UTC, in 5 h 12 min" in low
    assert "when Xero's day limit renews, in 2 h" in xero_day_nearly_used(0, 5, T, T + timedelta(hours=2))
    status = BudgetStatus(day=date(2026, 12, 1), used=850, budget=1000)
    assert (status.left, status.share) == (150, 0.85)
    assert usage_warning(status).startswith("850 of the 1000 Xero calls of the daily budget (xero.daily_call_budget)")
    assert BudgetStatus(day=date(2026, 12, 1), used=1200, budget=1000).left == 0


def test_a_budget_takes_calls_in_blocks_spends_them_one_by_one_and_gives_back_the_rest():
    store = MemoryCallUsage()
    budget = DailyCallBudget("org", 25, store, block=10)
    day = utc_day(T)
    assert budget.spend(T) and store.used("org", day) == 10  # one block taken for the first call
    assert all(budget.spend(T) for _ in range(9)) and store.used("org", day) == 10
    assert budget.spend(T) and store.used("org", day) == 20  # the next block
    assert budget.status(T) == BudgetStatus(day=day, used=11, budget=25)  # what was made, not what is held
    budget.settle()
    assert store.used("org", day) == 11
    assert all(budget.spend(T) for _ in range(14)) and not budget.spend(T)  # 25 made, the 26th refused
    assert store.used("org", day) == 25 and not budget.available(T)
    # The next UTC day starts from nothing.
    tomorrow = next_day_starts(T) + timedelta(minutes=1)
    assert budget.available(tomorrow) and budget.spend(tomorrow) and store.used("org", utc_day(tomorrow)) == 10


# ---- the count in the ledger database ------------------------------------------------------------------
def test_the_ledger_count_is_shared_and_never_passes_the_budget_under_racing_threads(database):  # noqa: F811
    ledger = Ledger(database.engine())
    usages = [LedgerCallUsage(ledger), LedgerCallUsage(Ledger(database.engine()))]  # two engines: two "processes"
    day, taken = date(2026, 12, 1), []
    barrier = threading.Barrier(8)

    def take_all(usage):
        barrier.wait()
        while got := usage.take("org-1", day, 3, 100):
            taken.append(got)

    threads = [threading.Thread(target=take_all, args=(usages[n % 2],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 100 == usages[0].used("org-1", day)
    usages[1].give_back("org-1", day, 7)
    assert usages[0].used("org-1", day) == 93
    assert usages[0].take("org-1", day, 10, 100) == 7 and usages[0].take("org-1", day, 10, 100) == 0
    # Each organisation and day has its own count.
    assert usages[0].used("org-2", day) == 0 and usages[0].used("org-1", day + timedelta(days=1)) == 0
    assert usages[0].take("org-2", day, 10, 100) == 10


# ---- the gateway over HTTP -----------------------------------------------------------------------------
def test_a_used_up_budget_stops_before_the_call_and_the_next_utc_day_goes_on(world):  # noqa: F811
    gateway = world.gateway(daily_call_budget=3, now=world.clock.now, clock=world.clock.monotonic,
                            sleep=world.sleep_on_sandbox_clock)
    for _ in range(3):
        gateway.find_invoices(numbers=["NONE-1"])
    error = world.raises(XeroRateLimited, gateway.find_invoices, numbers=["NONE-1"])
    # Refused here: nothing reached Xero, and Xero never had to answer 429.
    assert world.log.count("GET", INVOICES) == 3 and gateway.calls == 3
    assert world.sb.limiter.refused == {}
    moment = world.clock.now()  # the ManualClock starts at 2026-11-24 09:00 UTC
    assert error.problem == "budget" and error.retry_after == seconds_until_next_day(moment) == 15 * 3600
    assert str(error) == budget_used_up(date(2026, 11, 24), 3, moment)
    assert "xero.daily_call_budget" in str(error) and "in 15 h" in str(error)
    world.raises(XeroRateLimited, gateway.check_call_budget)  # the same refusal, asked without a call
    assert gateway.call_budget_status() == BudgetStatus(day=date(2026, 11, 24), used=3, budget=3)

    world.clock.advance(error.retry_after + 60)  # 00:01 UTC the next day
    gateway.check_call_budget()
    gateway.find_invoices(numbers=["NONE-1"])
    # The access token expired overnight: Xero's 401 and the call made again after the refresh both count.
    assert world.log.count("GET", INVOICES) == 5
    assert gateway.call_budget_status() == BudgetStatus(day=date(2026, 11, 25), used=2, budget=3)


def test_every_attempt_that_reaches_xero_counts_and_one_that_cannot_connect_does_not(world):  # noqa: F811
    import socket

    world.sb.limits = XeroLimits(per_minute=2)
    store = MemoryCallUsage()
    for _ in range(2):  # another gateway's calls (no budget) use Xero's minute; this one never hears of it
        world.gateway().find_invoices(numbers=["NONE-1"])
    gateway = world.gateway(daily_call_budget=10, call_usage=store, now=world.clock.now, clock=world.clock.monotonic,
                            calls_per_minute=100, sleep=world.sleep_on_sandbox_clock)
    gateway.find_invoices(numbers=["NONE-1"])  # meets the minute limit: 429, a wait, and the same call again
    assert world.sb.limiter.refused == {"minute": 1}
    assert gateway.call_budget_status().used == 2 == world.log.count("GET", INVOICES) - 2
    gateway.settle_calls()

    with socket.socket() as closed:  # bound, never listening: every connection is refused
        closed.bind(("127.0.0.1", 0))
        nowhere = world.gateway(base_url=f"http://127.0.0.1:{closed.getsockname()[1]}", daily_call_budget=10,
                                call_usage=store, now=world.clock.now)
        world.raises(XeroUnavailable, nowhere.find_invoices, numbers=["NONE-1"])
    nowhere.settle_calls()
    assert store.used(world.acme.tenant_id, date(2026, 11, 24)) == 2  # the refused connections took nothing


def test_two_gateways_of_one_organisation_share_its_budget_through_the_ledger(world, tmp_path):  # noqa: F811
    usage = LedgerCallUsage(Ledger(engine_for_url(f"sqlite+pysqlite:///{tmp_path / 'ledger.db'}")))
    # Two tenants of one organisation, each with its own token set and gateway: one count.
    first, second = (world.gateway(daily_call_budget=12, call_usage=usage, now=world.clock.now) for _ in range(2))
    for _ in range(3):
        first.find_invoices(numbers=["NONE-1"])
    # The first took a block of 10 and holds 7 of it: the second gets the 2 the budget has left.
    for _ in range(2):
        second.find_invoices(numbers=["NONE-1"])
    world.raises(XeroRateLimited, second.find_invoices, numbers=["NONE-1"])
    assert usage.used(world.acme.tenant_id, date(2026, 11, 24)) == 12
    first.settle_calls()  # the first's run ends: its 7 unmade calls go back
    for _ in range(7):
        second.find_invoices(numbers=["NONE-1"])
    world.raises(XeroRateLimited, second.find_invoices, numbers=["NONE-1"])
    world.raises(XeroRateLimited, first.find_invoices, numbers=["NONE-1"])
    assert world.log.count("GET", INVOICES) == 12 == usage.used(world.acme.tenant_id, date(2026, 11, 24))
    assert world.sb.limiter.refused == {}
    # Another organisation's budget is its own.
    other = world.gateway(org=world.kiwi, daily_call_budget=12, call_usage=usage, now=world.clock.now)
    other.find_invoices(numbers=["NONE-1"])


_CHILD = """
import json, sys, time
from datetime import datetime, timezone
from clients.xero import MemoryTokenStore, XeroEndpoints, XeroGateway, XeroRateLimited
from ledger import Ledger, LedgerCallUsage, engine_for_url
args = json.loads(sys.stdin.read())
gateway = XeroGateway(client_id=args["client_id"], client_secret=args["client_secret"], tenant_id=args["tenant_id"],
                      token_store=MemoryTokenStore(args["token"]), endpoints=XeroEndpoints.at(args["base_url"]),
                      daily_call_budget=args["budget"], call_usage=LedgerCallUsage(Ledger(engine_for_url(args["ledger"]))),
                      now=lambda: datetime.fromisoformat(args["now"]), calls_per_minute=1000)
while time.time() < args["at"]:
    time.sleep(0.001)
made = 0
try:
    while True:
        gateway.find_invoices(numbers=["NONE-1"])
        made += 1
except XeroRateLimited as exc:
    print(json.dumps({"made": made, "problem": exc.problem}))
"""


def test_gateways_in_two_processes_together_make_exactly_the_budget(world, tmp_path):  # noqa: F811
    import time

    world.sb.limits = XeroLimits(per_minute=1000)
    ledger_url = f"sqlite+pysqlite:///{tmp_path / 'ledger.db'}"
    Ledger(engine_for_url(ledger_url))  # migrated once, before the children race
    at = time.time() + 4  # both have imported everything by then, and start together
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = []
    for _ in range(2):
        args = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "tenant_id": world.acme.tenant_id,
                "token": world.token(), "base_url": world.base_url, "budget": 25, "ledger": ledger_url,
                "now": world.clock.now().isoformat(), "at": at}
        child = subprocess.Popen([sys.executable, "-c", _CHILD], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        child.stdin.write(json.dumps(args))
        child.stdin.close()
        children.append(child)
    results = []
    for child in children:
        out, err = child.stdout.read(), child.stderr.read()
        assert child.wait(timeout=120) == 0, err[-2000:]
        results.append(json.loads(out))
    assert all(r["problem"] == "budget" for r in results)
    assert sum(r["made"] for r in results) == 25 == world.log.count("GET", INVOICES)
    assert LedgerCallUsage(Ledger(engine_for_url(ledger_url))).used(world.acme.tenant_id, date(2026, 11, 24)) == 25
    assert world.sb.limiter.refused == {}


def test_xero_s_own_day_limit_stops_the_run_before_its_429(world):  # noqa: F811
    # Xero's day for this organisation (shared with other integrations) has fewer calls left than the budget.
    world.sb.limits = XeroLimits(per_day=9)
    gateway = world.gateway(daily_call_budget=1000, now=world.clock.now, clock=world.clock.monotonic)
    for _ in range(4):
        gateway.find_invoices(numbers=["NONE-1"])
    assert gateway.day_remaining == 5  # the reserve: kept for calls in flight and the other integrations
    error = world.raises(XeroRateLimited, gateway.find_invoices, numbers=["NONE-1"])
    assert error.problem == "day" and error.retry_after == 15 * 3600
    assert "X-DayLimit-Remaining" in str(error) and "after 00:00 UTC, in 15 h" in str(error)
    assert world.log.count("GET", INVOICES) == 4 and world.sb.limiter.refused == {}

    # After 00:00 UTC the gateway asks Xero once more; Xero's day (24 hours from its first call) has not
    # renewed yet, so its answer stops the gateway again, still without a 429.
    world.clock.advance(error.retry_after + 60)
    gateway.find_invoices(numbers=["NONE-1"])  # (a 401 first: the access token expired overnight)
    assert gateway.day_remaining == 4
    world.raises(XeroRateLimited, gateway.find_invoices, numbers=["NONE-1"])
    assert world.log.count("GET", INVOICES) == 6 and world.sb.limiter.refused == {}


def test_after_a_day_limit_429_no_call_is_made_until_its_retry_after(world):  # noqa: F811
    gateway = world.gateway(daily_call_budget=1000, now=world.clock.now, clock=world.clock.monotonic)
    world.sb.faults.headers_429["X-Rate-Limit-Problem"] = "day"
    world.sb.faults.retry_after_seconds = 3600
    world.sb.faults.script("429", method="GET", path_prefix=INVOICES, times=1)
    error = world.raises(XeroRateLimited, gateway.find_invoices, numbers=["NONE-1"])
    assert error.problem == "day" and error.retry_after == 3600
    again = world.raises(XeroRateLimited, gateway.find_invoices, numbers=["NONE-1"])
    assert again.problem == "day" and str(again) == xero_day_reached(world.clock.now(), world.clock.now() + timedelta(hours=1))
    assert "Xero answered 429" in str(again) and "in 1 h" in str(again)
    assert world.log.count("GET", INVOICES) == 1  # the second was stopped here
    world.clock.advance(3600)
    gateway.find_invoices(numbers=["NONE-1"])  # a 401 (the token expired meanwhile), then the call
    assert world.log.count("GET", INVOICES) == 3

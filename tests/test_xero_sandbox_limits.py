"""Xero's rate limits in the sandbox, on a manual clock, over HTTP."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox.xero.limits import XeroLimits
from tests.xero_sandbox_support import ACCOUNTING, CLIENT_ID, start_sandbox, stop_sandbox

ACME, KIWI = "Acme Pty Ltd", "Kiwi Ltd"


@pytest.fixture
def sb():
    release = threading.Event()

    def hold_until_released():
        release.wait(timeout=10)
        return {"held": True}

    # A slow accounting endpoint, so calls can be kept in flight on purpose.
    sandbox = start_sandbox(configure_app=lambda app: app.add_api_route(ACCOUNTING + "/SandboxHold", hold_until_released),
                            limits=XeroLimits(per_minute=3, per_day=1000, concurrent=5, app_per_minute=1000))
    sandbox.release = release
    yield sandbox
    release.set()
    stop_sandbox(sandbox)


def limit_headers(response) -> tuple[str, str, str]:
    return (response.headers["X-MinLimit-Remaining"], response.headers["X-DayLimit-Remaining"],
            response.headers["X-AppMinLimit-Remaining"])


def test_minute_limit_per_connection_with_headers_and_retry_after(sb):
    token = sb.tokens()
    seen = [limit_headers(sb.call("GET", "/Organisation", token, ACME)) for _ in range(3)]
    assert seen == [("2", "999", "999"), ("1", "998", "998"), ("0", "997", "997")]

    refused = sb.call("GET", "/Organisation", token, ACME)
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "minute"
    assert refused.headers["Retry-After"] == "60"
    # Another organisation has its own minute.
    other_org = sb.call("GET", "/Organisation", token, KIWI)
    assert (other_org.status_code, other_org.headers["X-MinLimit-Remaining"]) == (200, "2")

    sb.clock.advance(45)
    assert sb.call("GET", "/Organisation", token, ACME).headers["Retry-After"] == "15"
    sb.clock.advance(15)
    again = sb.call("GET", "/Organisation", token, ACME)
    assert again.status_code == 200
    # Refused calls were not counted: a fresh window, one call used.
    assert limit_headers(again) == ("2", "996", "999")


def test_day_limit(sb):
    sb.sandbox.limits = XeroLimits(per_minute=60, per_day=2, concurrent=5, app_per_minute=1000)
    token = sb.tokens()
    assert [sb.call("GET", "/Organisation", token, ACME).headers["X-DayLimit-Remaining"] for _ in range(2)] == ["1", "0"]
    refused = sb.call("GET", "/Organisation", token, ACME)
    assert (refused.status_code, refused.headers["X-Rate-Limit-Problem"]) == (429, "day")
    assert refused.headers["Retry-After"] == "86400"
    sb.clock.advance(3600)
    token = sb.tokens()  # the access token lives only 30 minutes
    assert sb.call("GET", "/Organisation", token, ACME).headers["Retry-After"] == "82800"
    sb.clock.advance(82_800)
    token = sb.tokens()
    assert sb.call("GET", "/Organisation", token, ACME).headers["X-DayLimit-Remaining"] == "1"


def test_app_wide_minute_limit_spans_organisations(sb):
    sb.sandbox.limits = XeroLimits(per_minute=60, per_day=1000, concurrent=5, app_per_minute=3)
    token = sb.tokens()
    remaining = [sb.call("GET", "/Organisation", token, org).headers["X-AppMinLimit-Remaining"]
                 for org in (ACME, KIWI, ACME)]
    assert remaining == ["2", "1", "0"]
    refused = sb.call("GET", "/Organisation", token, KIWI)
    assert (refused.status_code, refused.headers["X-Rate-Limit-Problem"]) == (429, "appminute")
    assert refused.headers["Retry-After"] == "60"


def test_calls_in_flight_then_concurrent_problem(sb):
    sb.sandbox.limits = XeroLimits(per_minute=60, per_day=1000, concurrent=2, app_per_minute=1000)
    token = sb.tokens()
    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(sb.call, "GET", "/SandboxHold", token, ACME) for _ in range(2)]
        for _ in range(1000):  # wait until both calls are inside the handler
            if sb.sandbox.limiter.in_flight(CLIENT_ID, sb.org(ACME).tenant_id) == 2:
                break
            threading.Event().wait(0.01)
        refused = sb.call("GET", "/Organisation", token, ACME)
        assert (refused.status_code, refused.headers["X-Rate-Limit-Problem"]) == (429, "concurrent")
        assert "Retry-After" not in refused.headers
        assert sb.call("GET", "/Organisation", token, KIWI).status_code == 200
        sb.release.set()
        assert [f.result().json() for f in held] == [{"held": True}] * 2
    assert sb.call("GET", "/Organisation", token, ACME).status_code == 200


def test_unauthenticated_calls_do_not_spend_the_budget(sb):
    token = sb.tokens()
    for _ in range(5):
        assert sb.call("GET", "/Organisation", "bogus", ACME).status_code == 401
        assert sb.call("GET", "/Organisation", token, None).status_code == 403
    assert sb.call("GET", "/Organisation", token, ACME).headers["X-MinLimit-Remaining"] == "2"


def test_limits_count_per_app(sb):
    sb.sandbox.register_app("another-app", "another-secret")
    ours = sb.tokens()
    theirs = sb.sandbox.issue_tokens("another-app")
    for _ in range(3):
        sb.call("GET", "/Organisation", ours, ACME)
    assert sb.call("GET", "/Organisation", ours, ACME).status_code == 429
    assert sb.call("GET", "/Organisation", theirs, ACME).headers["X-MinLimit-Remaining"] == "2"


def test_every_accounting_response_carries_the_limit_headers(sb):
    token = sb.tokens()
    missing = sb.call("GET", "/Invoices/00000000-0000-0000-0000-000000000000", token, ACME)
    assert missing.status_code == 404
    assert limit_headers(missing) == ("2", "999", "999")
    invalid = sb.call("PUT", "/Invoices", token, ACME, params={"summarizeErrors": "true"},
                      json={"Invoices": [{"Type": "ACCREC", "LineItems": []}]})
    assert invalid.status_code == 400
    assert limit_headers(invalid) == ("1", "998", "998")

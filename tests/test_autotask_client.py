"""The Autotask client against the simulator over real HTTP."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from decimal import Decimal

import pytest

from clients.autotask import (AutotaskAuthError, ZoneBook, AutotaskClient, AutotaskError, AutotaskQueryError,
                              AutotaskRateLimited)
from sandbox.autotask import AutotaskSandbox, create_app, generate_data
from sandbox.clock import ManualClock
from sandbox.serving import free_port, serve

EVERYTHING = [{"op": "gte", "field": "id", "value": 0}]


def client_for(sandbox: AutotaskSandbox, server, **overrides) -> AutotaskClient:
    cred = sandbox.credentials
    options = dict(username=cred.username, secret=cred.secret, integration_code=cred.integration_code,
                   zone_lookup_url=server.base_url + "/atservicesrest", sleep=lambda s: None)
    options.update(overrides)
    return AutotaskClient(**options)


@pytest.fixture(scope="module")
def served():
    sandbox = AutotaskSandbox(generate_data(seed=7, invoices=200))
    with serve(create_app(sandbox)) as server:
        yield sandbox, server


@pytest.fixture
def client(served):
    with client_for(*served) as c:
        yield c


def test_zone_is_discovered_once_and_cached(served, client):
    sandbox, _ = served
    assert client.count("Invoices", EVERYTHING) == len(sandbox.records("Invoices"))
    assert client.calls == 2  # zone lookup + count
    client.get("Invoices", 6001)
    assert client.calls == 3


class ZoneLookups:
    """ASGI wrapper counting the zoneInformation requests that reach the server."""

    def __init__(self, app):
        self.app, self.count = app, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].lower().endswith("/zoneinformation"):
            self.count += 1
        await self.app(scope, receive, send)


def test_the_web_url_comes_from_the_zone_lookup_and_is_counted():
    sandbox = AutotaskSandbox(generate_data(invoices=5))
    lookups = ZoneLookups(create_app(sandbox))
    with serve(lookups) as server, client_for(sandbox, server) as c:
        assert c.web_url == server.base_url + "/"  # the zone's webUrl, asked first: the lookup happens now
        assert (c.calls, lookups.count) == (1, 1)
        assert c.get("Invoices", 6001)["id"] == 6001
        assert c.web_url == server.base_url + "/"
        assert (c.calls, lookups.count) == (2, 1)  # one lookup for the API base and the web address

    with serve(lookups) as server, client_for(sandbox, server) as c:
        c.get("Invoices", 6001)
        before = lookups.count
        assert c.web_url == server.base_url + "/" and c.zone_url == server.base_url + "/atservicesrest/v1.0/"
        assert (c.calls, lookups.count - before) == (2, 0)


def test_a_zone_without_a_web_address_gives_none():
    from fastapi import FastAPI

    sandbox = AutotaskSandbox(generate_data(invoices=5))
    with serve(create_app(sandbox)) as api:
        zone = FastAPI()

        @zone.get("/atservicesrest/v1.0/zoneInformation")
        def zone_information(user: str):
            return {"zoneName": "No Web", "url": api.base_url + "/atservicesrest/", "ci": 1}

        with serve(zone) as lookup, client_for(sandbox, lookup) as c:
            assert c.get("Invoices", 6001)["id"] == 6001  # the API is found through the lookup
            assert c.web_url is None and c.calls == 2


def test_with_base_url_the_web_url_costs_one_lookup_and_never_breaks_the_api(served):
    sandbox, server = served
    with client_for(sandbox, server, base_url=server.base_url + "/atservicesrest/") as c:
        assert c.web_url == server.base_url + "/" and c.calls == 1
        assert c.web_url == server.base_url + "/" and c.calls == 1
    with client_for(sandbox, server, zone_lookup_url=f"http://127.0.0.1:{free_port()}/nothing",
                    base_url=server.base_url + "/atservicesrest/", max_retries=1) as c:
        assert c.web_url is None and c.calls == 2  # two tries at the lookup, then unknown
        assert c.web_url is None and c.calls == 2
        assert c.get("Invoices", 6001)["invoiceNumber"] == "INV-10001"


def test_picklists_of_several_entities_in_one_mapping(client):
    assert client.web_url  # the zone is known
    before = client.calls
    picklists = client.picklists_of(["BillingCodes", "Companies", "BillingCodes"])
    assert client.calls - before == 2  # one entityInformation/fields call per entity
    assert picklists == {**client.picklists("BillingCodes"), **client.picklists("Companies")}
    labels = {v["value"]: v["label"] for v in picklists["BillingCodes.generalLedgerAccount"]}
    assert labels["1"] == "4000 Labour Revenue"  # Autotask sends picklist values as text
    assert {v["label"] for v in picklists["Companies.companyType"]} >= {"Customer", "Vendor"}
    assert all(key.split(".")[0] in ("BillingCodes", "Companies") for key in picklists)


def test_base_url_skips_zone_discovery(served):
    sandbox, server = served
    with client_for(sandbox, server, zone_lookup_url=f"http://127.0.0.1:{free_port()}/nothing",
                    base_url=server.base_url + "/atservicesrest/") as c:
        assert c.get("Invoices", 6001)["invoiceNumber"] == "INV-10001"
        assert c.calls == 1


def test_wrong_secret_is_an_auth_error_without_the_secret(served):
    sandbox, server = served
    with client_for(sandbox, server, secret="wrong-secret-value") as c:
        with pytest.raises(AutotaskAuthError) as caught:
            c.get("Invoices", 6001)
        message = str(caught.value)
        assert "secret" in message and "integration code" in message
        assert "wrong-secret-value" not in message and "wrong-secret-value" not in repr(c)
        assert caught.value.status == 401


def test_unknown_user_and_bad_integration_code_are_auth_errors(served):
    sandbox, server = served
    with client_for(sandbox, server, username="ghost@example.com") as c:
        with pytest.raises(AutotaskAuthError, match="ghost@example.com"):
            c.get("Invoices", 6001)
    with client_for(sandbox, server, integration_code="NOT-OUR-CODE") as c:
        with pytest.raises(AutotaskAuthError) as caught:
            c.get("Invoices", 6001)
        assert caught.value.status == 500 and sandbox.credentials.secret not in str(caught.value)


def test_zone_is_resolved_again_after_a_401():
    data = generate_data(invoices=5)
    old_zone, new_zone = AutotaskSandbox(data), AutotaskSandbox(data)
    cred = old_zone.credentials
    new_zone.add_credential(cred.username, cred.secret, cred.integration_code)
    with serve(create_app(old_zone)) as old_server, serve(create_app(new_zone)) as new_server:
        with client_for(old_zone, old_server) as c:
            assert c.get("Invoices", 6001)
            # The tenant moves: the old zone stops accepting the user and points at the new one.
            old_zone.add_credential(cred.username, "moved-away", cred.integration_code)
            old_zone.zone_url = new_server.base_url + "/atservicesrest/"
            before = new_zone.request_count
            assert c.get("Invoices", 6002)["id"] == 6002
            assert new_zone.request_count == before + 1


def test_clients_sharing_a_zone_book_look_the_zone_up_once_until_it_is_old_or_moved():
    data = generate_data(invoices=5)
    old_zone, new_zone = AutotaskSandbox(data), AutotaskSandbox(data)
    cred = old_zone.credentials
    new_zone.add_credential(cred.username, cred.secret, cred.integration_code)
    now = [0.0]
    book = ZoneBook(keep_seconds=3600, clock=lambda: now[0])
    old_app, new_app = ZoneLookups(create_app(old_zone)), ZoneLookups(create_app(new_zone))
    with serve(old_app) as old_server, serve(new_app) as new_server:
        for n in range(3):  # a run's tasks each make their own client
            with client_for(old_zone, old_server, zones=book) as c:
                assert c.get("Invoices", 6001 + n)
                assert c.web_url == old_server.base_url + "/"
        assert old_app.count == 1
        now[0] = 3601  # an hour on: looked up again
        with client_for(old_zone, old_server, zones=book) as c:
            assert c.get("Invoices", 6001)
        assert old_app.count == 2
        # The database moves: the kept zone refuses the user, the next client finds the new one and keeps it.
        old_zone.add_credential(cred.username, "moved-away", cred.integration_code)
        old_zone.zone_url = new_server.base_url + "/atservicesrest/"
        with client_for(old_zone, old_server, zones=book) as c:
            assert c.get("Invoices", 6002)["id"] == 6002
        assert old_app.count == 3
        with client_for(old_zone, old_server, zones=book) as c:
            assert c.get("Invoices", 6003)["id"] == 6003
        assert old_app.count == 3 and new_app.count == 0


def test_query_follows_pages_and_keeps_decimals(served, client):
    sandbox, _ = served
    expected = sandbox.records("BillingItems")
    assert len(expected) > 500
    got = list(client.query("BillingItems", EVERYTHING))
    assert [r["id"] for r in got] == [r["id"] for r in expected]
    assert all(isinstance(r["totalAmount"], Decimal) and isinstance(r["quantity"], Decimal) for r in got)
    by_id = {r["id"]: r for r in expected}
    assert all(r["rate"] == by_id[r["id"]]["rate"] for r in got)
    small_pages = list(client.query("BillingItems", EVERYTHING, include_fields=["invoiceID"], page_size=150))
    assert [r["id"] for r in small_pages] == [r["id"] for r in expected]
    assert set(small_pages[0]) == {"id", "invoiceID"}


def test_every_invoice_reconciles_over_http(served, client):
    invoices = list(client.query("Invoices", [{"op": "eq", "field": "isVoided", "value": False}]))
    lines = defaultdict(list)
    for line in client.query_in("BillingItems", "invoiceID", [i["id"] for i in invoices]):
        lines[line["invoiceID"]].append(line)
    for invoice in invoices:
        assert sum(line["totalAmount"] for line in lines[invoice["id"]]) == invoice["invoiceTotal"]
        assert sum(line["taxDollars"] for line in lines[invoice["id"]]) == invoice["totalTaxValue"]


def test_query_in_batches_beyond_500_values(served, client):
    sandbox, _ = served
    invoice_ids = [r["id"] for r in sandbox.records("Invoices")]
    values = invoice_ids + list(range(1, 1001))  # 1,200 values: Autotask refuses > 500 in one query
    before = client.calls
    got = list(client.query_in("BillingItems", "invoiceID", values, include_fields=["invoiceID"]))
    assert sorted(r["id"] for r in got) == [r["id"] for r in sandbox.records("BillingItems")]
    assert client.calls - before >= 3
    assert list(client.query_in("BillingItems", "invoiceID", [])) == []


def test_count_get_missing_and_threshold(served, client):
    sandbox, _ = served
    voided = sum(r["isVoided"] for r in sandbox.records("Invoices"))
    assert client.count("Invoices", [{"op": "eq", "field": "isVoided", "value": True}]) == voided
    assert client.get("Companies", 174)["companyName"]
    assert client.get("Invoices", 123456789) is None
    info = client.threshold()
    assert info["externalRequestThreshold"] == 10_000 and info["currentTimeframeRequestCount"] >= 1


def test_bad_queries_raise_query_errors(client):
    with pytest.raises(AutotaskQueryError, match="dueDate") as caught:
        list(client.query("Invoices", [{"op": "gte", "field": "dueDate", "value": "2026-01-01"}]))
    assert caught.value.entity == "Invoices" and caught.value.status == 500
    with pytest.raises(AutotaskQueryError, match="isVoided"):
        client.count("Invoices", [{"op": "eq", "field": "isVoided", "value": "false"}])


def test_invoice_pdf(client):
    name, pdf = client.invoice_pdf(6004)
    assert name.endswith(".pdf") and pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-8:]
    assert b"INV-10004" in pdf


def test_update_writes_back_and_refuses_read_only_fields(served, client):
    sandbox, _ = served
    assert client.update("Invoices", {"id": 6005, "paidDate": date(2026, 11, 20)}) == 6005
    assert client.get("Invoices", 6005)["paidDate"] == "2026-11-20T00:00:00.000Z"
    with pytest.raises(AutotaskError, match="invoiceTotal"):
        client.update("Invoices", {"id": 6005, "invoiceTotal": Decimal("1.00")})
    assert sandbox.records("Invoices")[4]["invoiceTotal"] != Decimal("1.00")


def test_hourly_threshold_backs_off_using_retry_after():
    clock = ManualClock()
    sandbox = AutotaskSandbox(generate_data(invoices=5), clock=clock, hourly_threshold=3)
    with serve(create_app(sandbox)) as server:
        sleeps: list[float] = []

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            clock.advance(seconds)

        with client_for(sandbox, server, sleep=sleep) as c:
            for _ in range(3):
                c.get("Invoices", 6001)
            assert c.get("Invoices", 6002)["id"] == 6002
            assert sleeps == [3600]
        clock.advance(3600)

        with client_for(sandbox, server, max_retries=2) as c:
            for _ in range(3):
                c.get("Invoices", 6001)
            before = sandbox.rate_rejections
            with pytest.raises(AutotaskRateLimited, match="hourly"):
                c.get("Invoices", 6001)
            assert sandbox.rate_rejections - before == 3


def _wait_until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_thread_limit_rejections_are_retried():
    sandbox = AutotaskSandbox(generate_data(invoices=5))
    with serve(create_app(sandbox)) as server:
        sleeps: list[float] = []
        with sandbox.hold("Invoices") as gate:
            def sleep(seconds: float) -> None:
                sleeps.append(seconds)
                # Release the held requests only once both extra calls have been turned away,
                # or a slow machine lets the last one in after the first release.
                _wait_until(lambda: sandbox.thread_rejections >= 2)
                gate.set()
                # The retry comes straight back (this sleep takes no time): let the held requests
                # finish first, or a slow machine turns every retry away while they are still open.
                _wait_until(lambda: sandbox.in_flight("Invoices") == 0)

            with client_for(sandbox, server, threads_per_entity=5, sleep=sleep) as c:
                c.get("Companies", 174)  # resolve the zone before the burst
                with ThreadPoolExecutor(5) as pool:
                    results = list(pool.map(lambda n: c.get("Invoices", 6001 + n), range(5)))
        assert [r["id"] for r in results] == [6001, 6002, 6003, 6004, 6005]
        assert sandbox.thread_rejections >= 2 and sleeps


def test_client_semaphore_keeps_under_the_thread_limit():
    sandbox = AutotaskSandbox(generate_data(invoices=8))
    with serve(create_app(sandbox)) as server:
        with client_for(sandbox, server, threads_per_entity=3) as c:
            c.get("Companies", 174)
            with ThreadPoolExecutor(8) as pool:
                with sandbox.hold("Invoices"):
                    futures = [pool.submit(c.invoice_pdf, 6001 + n) for n in range(8)]
                    _wait_until(lambda: sandbox.in_flight("Invoices") == 3)
                    # Give the other five threads every chance to (wrongly) reach the server.
                    time.sleep(0.3)
                    assert sandbox.in_flight("Invoices") == 3
                pdfs = [f.result() for f in futures]
        assert all(pdf.startswith(b"%PDF-") for _, pdf in pdfs)
        assert sandbox.thread_rejections == 0 and sandbox.max_in_flight["Invoices"] == 3


class FailFirst:
    """ASGI wrapper answering the first `failures` API calls with a bare 503, as a proxy would."""

    def __init__(self, app, failures: int):
        self.app, self.failures, self.lock = app, failures, threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and "zoneinformation" not in scope["path"].lower():
            with self.lock:
                fail = self.failures > 0
                self.failures -= fail
            if fail:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


def test_reads_retry_server_errors_but_writes_do_not():
    sandbox = AutotaskSandbox(generate_data(invoices=5))
    wrapped = FailFirst(create_app(sandbox), failures=2)
    with serve(wrapped) as server:
        sleeps: list[float] = []
        with client_for(sandbox, server, sleep=sleeps.append) as c:
            assert c.get("Invoices", 6001)["id"] == 6001
            assert len(sleeps) == 2
            wrapped.failures = 1
            with pytest.raises(AutotaskError, match="503"):
                c.update("Invoices", {"id": 6001, "webServiceDate": "2026-11-24T09:00:00Z"})
            assert sandbox.records("Invoices")[0]["webServiceDate"] is None


def test_unreachable_api_is_a_clear_error():
    sleeps: list[float] = []
    with AutotaskClient(username="u", secret="s3cr3t-value", integration_code="c",
                        base_url=f"http://127.0.0.1:{free_port()}/atservicesrest/", max_retries=2,
                        sleep=sleeps.append) as c:
        with pytest.raises(AutotaskError, match="could not be reached") as caught:
            c.get("Invoices", 1)
    assert len(sleeps) == 2 and "s3cr3t-value" not in str(caught.value)

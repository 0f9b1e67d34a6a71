"""What the fault soak relies on the simulators for, over real HTTP: limits that overlapping clients can
reach (Autotask's three threads per endpoint, Xero's five calls in flight), Xero's per-element error
flags and its answers to unknown paths, and faults a test can steer and count while the stack runs."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from clients.autotask import THREAD_LIMIT_MARKERS, AutotaskClient
from sandbox.faults import FaultConfig
from sandbox.stack import XERO_CLIENT_ID, SandboxStack
from sandbox.xero import spec
from sandbox.xero.limits import XeroLimits
from sandbox.xero.serialise import dumps, loads

API = "/v1.0/"
# Autotask's answer to a fourth request in flight on one endpoint for one integration code.
THREAD_LIMIT_ANSWER = ("Itgenatr005: Thread Threshold Exceeded \u2014 The Autotask API thread threshold of 3 "
                       "threads has been exceeded.")
NOT_FOUND = "The resource you're looking for cannot be found"
# Long enough that requests stay in flight until a test lowers it; lowering it frees them at once.
HOLD = 60.0


@pytest.fixture(scope="module")
def stack():
    with SandboxStack(invoices=5) as running:
        # These tests are about concurrency, not the minute limit: keep only Xero's five in flight.
        running.xero.limits = XeroLimits(per_minute=100_000, per_day=1_000_000, concurrent=5,
                                         app_per_minute=1_000_000)
        yield running


@pytest.fixture(autouse=True)
def fast_again(stack):
    yield
    stack.autotask.request_latency = 0.0
    stack.xero.latency = 0.0
    stack.set_faults(autotask=FaultConfig(), xero=FaultConfig())


def autotask_headers(stack) -> dict:
    cred = stack.autotask.credentials
    return {"ApiIntegrationCode": cred.integration_code, "UserName": cred.username, "Secret": cred.secret}


def wait_until(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


# ---- Autotask: the thread limit is reachable -------------------------------------------------------------

def test_a_fourth_request_in_flight_on_one_entity_gets_autotasks_thread_limit_answer(stack):
    sandbox = stack.autotask
    sandbox.request_latency = HOLD
    before = sandbox.thread_rejections
    headers = autotask_headers(stack)
    url = stack.autotask_url + API
    with ThreadPoolExecutor(6) as pool:
        held = [pool.submit(httpx.get, f"{url}Invoices/{6001 + n}", headers=headers, timeout=HOLD + 30)
                for n in range(3)]
        wait_until(lambda: sandbox.in_flight("Invoices") == 3)
        refused = httpx.get(url + "Invoices/6004", headers=headers, timeout=30)
        # Other endpoints have slots of their own: three Companies requests are all taken in.
        others = [pool.submit(httpx.get, f"{url}Companies/174", headers=headers, timeout=HOLD + 30)
                  for _ in range(3)]
        wait_until(lambda: sandbox.in_flight("Companies") == 3)
        sandbox.request_latency = 0.0
        answers = [f.result() for f in held + others]

    assert refused.status_code == 429
    assert refused.json() == {"errors": [THREAD_LIMIT_ANSWER]}
    assert any(marker in refused.text.lower() for marker in THREAD_LIMIT_MARKERS)  # what the client recognises
    assert [a.status_code for a in answers] == [200] * 6
    assert [a.json()["item"]["id"] for a in answers[:3]] == [6001, 6002, 6003]
    assert sandbox.thread_rejections - before == 1


def client_for(stack, **options) -> AutotaskClient:
    cred = stack.autotask.credentials
    return AutotaskClient(username=cred.username, secret=cred.secret, integration_code=cred.integration_code,
                          zone_lookup_url=stack.autotask_url, **options)


def test_one_clients_slots_keep_it_under_the_limit_while_requests_take_time(stack):
    sandbox = stack.autotask
    before = sandbox.thread_rejections
    with client_for(stack, sleep=lambda s: None) as client:
        client.get("Companies", 174)  # the zone lookup, before the burst
        sandbox.request_latency = HOLD
        sandbox.max_in_flight["Invoices"] = 0
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client.get, "Invoices", 6001 + n % 5) for n in range(8)]
            wait_until(lambda: sandbox.in_flight("Invoices") == 3)
            # Give the other five threads every chance to (wrongly) reach the server.
            time.sleep(0.3)
            assert sandbox.in_flight("Invoices") == 3 and sandbox.thread_rejections == before
            sandbox.request_latency = 0.0
            found = [f.result()["id"] for f in futures]
    assert found == [6001 + n % 5 for n in range(8)]
    assert sandbox.thread_rejections == before and sandbox.max_in_flight["Invoices"] == 3


def test_two_clients_on_one_integration_code_exceed_it_and_are_told_so(stack):
    """Two processes each keeping to three slots are six requests in flight: Autotask refuses three.
    Each client waits and retries; only a limit shared between processes avoids the refusals."""
    sandbox = stack.autotask
    before = sandbox.thread_rejections
    retried = threading.Event()

    def wait_for_the_slots(seconds: float) -> None:
        retried.set()
        wait_until(lambda: sandbox.request_latency == 0.0 and sandbox.in_flight("Invoices") == 0)

    first, second = (client_for(stack, sleep=wait_for_the_slots) for _ in range(2))
    with first, second:
        for client in (first, second):
            client.get("Companies", 174)
        sandbox.request_latency = HOLD
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(client.get, "Invoices", 6001 + n) for client in (first, second) for n in range(3)]
            wait_until(lambda: sandbox.in_flight("Invoices") == 3 and sandbox.thread_rejections - before == 3)
            assert retried.is_set()
            sandbox.request_latency = 0.0
            assert sorted(f.result()["id"] for f in futures) == [6001, 6001, 6002, 6002, 6003, 6003]


# ---- Xero: five calls in flight ------------------------------------------------------------------------------

@pytest.fixture
def xero(stack):
    token = stack.xero.issue_tokens(XERO_CLIENT_ID, [stack.org.tenant_id])
    headers = {"Authorization": f"Bearer {token['access_token']}", "xero-tenant-id": stack.org.tenant_id,
               "Accept": "application/json"}
    with httpx.Client(base_url=stack.xero_url, headers=headers, timeout=HOLD + 30) as client:
        yield client


def test_a_sixth_xero_call_in_flight_gets_the_concurrent_limit(stack, xero):
    stack.xero.latency = HOLD
    in_flight = lambda: stack.xero.limiter.in_flight(XERO_CLIENT_ID, stack.org.tenant_id)  # noqa: E731
    with ThreadPoolExecutor(5) as pool:
        held = [pool.submit(xero.get, "/api.xro/2.0/Organisation") for _ in range(5)]
        wait_until(lambda: in_flight() == 5)
        refused = xero.get("/api.xro/2.0/Organisation")
        stack.xero.latency = 0.0
        answers = [f.result() for f in held]
    assert (refused.status_code, refused.headers["X-Rate-Limit-Problem"]) == (429, "concurrent")
    assert [a.status_code for a in answers] == [200] * 5


# ---- Xero: per-element errors ----------------------------------------------------------------------------------

def put(xero, path: str, body: dict) -> tuple[int, dict]:
    answer = xero.put("/api.xro/2.0" + path, content=dumps(body), headers={"Content-Type": "application/json"})
    return answer.status_code, loads(answer.content)


def test_refused_contacts_carry_has_validation_errors_as_the_schema_names_it(stack, xero):
    status, _ = put(xero, "/Contacts", {"Contacts": [{"Name": "Fidelity Twice Ltd"}]})
    assert status == 200
    body = {"Contacts": [{"Name": "Fidelity Once Ltd"}, {"Name": "Fidelity Twice Ltd"}]}
    status, answer = put(xero, "/Contacts?summarizeErrors=false", body)
    assert status == 200
    ok, refused = answer["Contacts"]
    assert (ok["StatusAttributeString"], ok["HasValidationErrors"]) == ("OK", False)
    assert (refused["StatusAttributeString"], refused["HasValidationErrors"]) == ("ERROR", True)
    assert refused["ValidationErrors"] and "HasErrors" not in refused
    assert spec.schema_errors(spec.response_validator("/Contacts", "put"), answer) == []
    # Summarised (the default): a 400 whose element carries the same flag, and nothing is kept.
    status, answer = put(xero, "/Contacts", {"Contacts": [{"Name": "Fidelity Thrice Ltd"},
                                                          {"Name": "Fidelity Twice Ltd"}]})
    assert status == 400 and answer["Type"] == "ValidationException"
    assert [e["HasValidationErrors"] for e in answer["Elements"]] == [True]
    assert not [c for c in stack.org.contacts.values() if c["Name"] == "Fidelity Thrice Ltd"]


def test_each_refused_element_carries_the_flag_its_schema_has(stack, xero):
    """Payments: HasValidationErrors; invoices: HasErrors; purchase orders: no flag in the schema."""
    status, made = put(xero, "/Invoices?summarizeErrors=false", {"Invoices": [
        {"Type": "ACCREC", "Contact": {"Name": "Fidelity Payer Ltd"}, "Date": "2026-11-20", "Status": "AUTHORISED",
         "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 10, "AccountCode": "200"}]},
        {"Type": "ACCREC", "Contact": {"Name": "Fidelity Payer Ltd"}, "Date": "2026-11-20",
         "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 10, "AccountCode": "NOPE"}]}]})
    assert status == 200
    invoice, bad_invoice = made["Invoices"]
    assert (invoice["StatusAttributeString"], invoice["HasErrors"]) == ("OK", False)
    assert (bad_invoice["StatusAttributeString"], bad_invoice["HasErrors"]) == ("ERROR", True)

    status, paid = put(xero, "/Payments?summarizeErrors=false", {"Payments": [
        {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Date": "2026-11-21",
         "Amount": 4},
        {"Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Date": "2026-11-21",
         "Amount": 99}]})
    assert status == 200
    payment, too_much = paid["Payments"]
    assert (payment["StatusAttributeString"], payment["HasValidationErrors"]) == ("OK", False)
    assert (too_much["StatusAttributeString"], too_much["HasValidationErrors"]) == ("ERROR", True)
    assert "HasErrors" not in too_much and too_much["ValidationErrors"]
    assert spec.schema_errors(spec.response_validator("/Payments", "put"), paid) == []

    status, ordered = put(xero, "/PurchaseOrders?summarizeErrors=false", {"PurchaseOrders": [
        {"Contact": {"Name": "Nobody Yet Ltd"}, "Date": "2026-11-20",
         "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 1, "AccountCode": "300"}]}]})
    assert status == 200
    (order,) = ordered["PurchaseOrders"]
    assert order["StatusAttributeString"] == "ERROR" and order["ValidationErrors"]
    assert "HasErrors" not in order and "HasValidationErrors" not in order


# ---- Xero: unknown paths ------------------------------------------------------------------------------------

def test_unknown_paths_answer_as_xero_does_on_every_host(stack, xero):
    for path in ("/api.xro/2.0/NoSuchThing", "/api.xro/2.0/Invoices/00000000-0000-0000-0000-000000000000",
                 "/api.xro/2.0/Contacts/not-a-guid", "/api.xro/2.0", "/connect/nothing",
                 "/identity/connect/nothing", "/"):
        answer = xero.get(path)
        assert (answer.status_code, answer.text) == (404, NOT_FOUND), path
        assert answer.headers["content-type"].startswith("text/plain"), path
    # Before any route: an unknown accounting path without a token is still a 401 in Xero's problem shape.
    anonymous = httpx.get(stack.xero_url + "/api.xro/2.0/NoSuchThing")
    assert anonymous.status_code == 401 and anonymous.json()["Title"] == "Unauthorized"
    # A known path with another method: 405 in the problem shape, never FastAPI's {"detail": ...}.
    wrong = xero.delete("/api.xro/2.0/Invoices")
    assert wrong.status_code == 405 and wrong.json()["Status"] == 405 and "detail" not in wrong.json()


def test_the_sdk_reads_an_unknown_id_as_not_found(stack):
    from xero_python.accounting import AccountingApi
    from xero_python.api_client import ApiClient, Configuration
    from xero_python.api_client.oauth2 import OAuth2Token
    from xero_python.exceptions import NotFoundException

    token = stack.xero.issue_tokens(XERO_CLIENT_ID, [stack.org.tenant_id])
    token["scope"] = token["scope"].split()
    configuration = Configuration()
    configuration.oauth2_token = OAuth2Token(client_id=XERO_CLIENT_ID, client_secret=stack.xero_client_secret)
    api_client = ApiClient(configuration, pool_threads=1, oauth2_token_getter=lambda: token,
                           oauth2_token_saver=lambda new: None)
    accounting = AccountingApi(api_client, base_url=stack.xero_url + "/api.xro/2.0")
    with pytest.raises(NotFoundException) as missing:
        accounting.get_contact(stack.org.tenant_id, "00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404 and missing.value.error_message == NOT_FOUND


def test_the_token_endpoints_take_form_bodies_only(stack):
    for path in ("/connect/token", "/connect/revocation"):
        answer = httpx.post(stack.xero_url + path, json={"grant_type": "refresh_token", "refresh_token": "x"},
                            auth=(XERO_CLIENT_ID, stack.xero_client_secret))
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", path
    # The same request form-encoded reaches the grant check.
    answer = httpx.post(stack.xero_url + "/connect/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
                        auth=(XERO_CLIENT_ID, stack.xero_client_secret))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


# ---- faults, steered while the stack runs ------------------------------------------------------------------

def test_faults_are_swapped_and_counted_for_both_simulators_while_the_stack_runs(stack, xero):
    headers = autotask_headers(stack)
    threshold = stack.autotask_url + API + "ThresholdInformation"
    assert httpx.get(threshold, headers=headers).status_code == 200

    autotask_faults, xero_faults = FaultConfig(), FaultConfig()
    stack.set_faults(autotask=autotask_faults, xero=xero_faults)
    autotask_faults.script("503", path_prefix="/atservicesrest/v1.0/ThresholdInformation")
    xero_faults.rule("429", 1.0, methods=("GET",), path_prefix="/api.xro/2.0/Organisation")

    assert httpx.get(threshold, headers=headers).status_code == 503
    assert httpx.get(threshold, headers=headers).status_code == 200
    limited = xero.get("/api.xro/2.0/Organisation")
    assert limited.status_code == 429 and limited.headers["X-Rate-Limit-Problem"] == "minute"
    assert xero.get("/api.xro/2.0/Currencies").status_code == 200

    counts = stack.fault_counts()
    assert counts["autotask"] == {"requests": 2, "429": 0, "500": 0, "503": 1, "timeout": 0, "drop": 0,
                                  "lost_response": 0}
    assert counts["xero"]["requests"] == 2 and counts["xero"]["429"] == 1
    assert sum(counts["xero"].values()) == 3


def test_latency_settings_reach_both_simulators():
    stack = SandboxStack(invoices=1, autotask_latency=0.25, xero_latency=0.5)
    assert (stack.autotask.request_latency, stack.xero.latency) == (0.25, 0.5)
    assert (SandboxStack(invoices=1).autotask.request_latency, SandboxStack(invoices=1).xero.latency) == (0.0, 0.0)

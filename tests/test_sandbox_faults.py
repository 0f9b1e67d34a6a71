"""Fault injection over real HTTP: what each fault does to httpx and to the Xero SDK (urllib3)."""
from __future__ import annotations

import httpx
import pytest
import urllib3
from fastapi import FastAPI

from sandbox.faults import FaultConfig, with_faults
from sandbox.serving import serve
from tests.xero_sandbox_support import CLIENT_ID, CLIENT_SECRET, start_sandbox, stop_sandbox

CLIENT_TIMEOUT = 0.5  # how long a client waits for an answer a timeout fault holds (5 s)
# Any other answer: long enough that a busy machine never looks like a fault.
ANSWER_TIMEOUT = 10.0


def store_app(writes: list):
    app = FastAPI()

    @app.put("/things")
    def put_thing(thing: dict):
        writes.append(thing)
        return {"stored": len(writes), "padding": "x" * 200}

    @app.get("/things")
    def list_things():
        return {"count": len(writes)}

    return app


@pytest.fixture
def store():
    writes: list = []
    faults = FaultConfig(timeout_seconds=5)
    with serve(with_faults(store_app(writes), faults)) as server:
        with httpx.Client(base_url=server.base_url, timeout=ANSWER_TIMEOUT) as client:
            yield client, faults, writes


@pytest.mark.parametrize("kind, status, processed", [("429", 429, False), ("500", 500, False), ("503", 503, False)])
def test_error_faults_answer_before_processing(store, kind, status, processed):
    client, faults, writes = store
    faults.script(kind, method="PUT")
    response = client.put("/things", json={"n": 1})
    assert response.status_code == status
    assert bool(writes) is processed
    if status in (429, 503):
        assert response.headers["Retry-After"] == "1"
    assert client.put("/things", json={"n": 2}).status_code == 200


# A closed connection reads as "disconnected" or as "reset by peer" depending on timing; both mean
# the client has no answer.
NO_ANSWER = (httpx.RemoteProtocolError, httpx.ReadError)


@pytest.mark.parametrize("kind, error, processed", [
    ("drop", NO_ANSWER, False),
    ("lost_response", NO_ANSWER, True),
    ("timeout", httpx.ReadTimeout, True),
])
def test_connection_faults_with_httpx(store, kind, error, processed):
    client, faults, writes = store
    faults.script(kind, method="PUT", path_prefix="/things")
    with pytest.raises(error):
        client.put("/things", json={"n": 1}, timeout=CLIENT_TIMEOUT)
    assert (writes == [{"n": 1}]) is processed
    assert client.get("/things").status_code == 200


@pytest.mark.parametrize("kind, processed", [("drop", False), ("lost_response", True), ("timeout", True)])
def test_connection_faults_with_urllib3(store, kind, processed):
    client, faults, writes = store
    faults.script(kind)
    pool = urllib3.PoolManager(retries=False)
    expected = urllib3.exceptions.ReadTimeoutError if kind == "timeout" else urllib3.exceptions.ProtocolError
    with pytest.raises(expected):
        pool.request("PUT", str(client.base_url).rstrip("/") + "/things", json={"n": 1}, timeout=CLIENT_TIMEOUT)
    assert bool(writes) is processed


def test_scripts_match_method_and_path_and_fire_a_set_number_of_times(store):
    client, faults, writes = store
    faults.script("500", method="PUT", path_prefix="/things", times=2)
    assert client.get("/things").status_code == 200
    assert [client.put("/things", json={"n": n}).status_code for n in range(3)] == [500, 500, 200]
    assert writes == [{"n": 2}]
    assert faults.log == [("500", "PUT", "/things")] * 2 and faults.pending_scripts() == []


def test_rates_are_seeded_filtered_and_changeable_at_runtime(store):
    client, faults, writes = store

    def statuses():
        return [client.put("/things", json={}).status_code for _ in range(20)]

    faults.rate_503, faults.methods = 0.5, ["PUT"]
    faults.reseed(42)
    first = statuses()
    faults.reseed(42)
    assert statuses() == first
    assert set(first) == {200, 503}
    assert all(client.get("/things").status_code == 200 for _ in range(10))  # GET is not in `methods`

    faults.clear()
    assert set(statuses()) == {200}


def test_rules_give_writes_their_own_faults_and_counts_say_what_fired(store):
    """A soak's mix: 429s on reads, answers lost after writes, seeded, and a count of each for its report."""
    client, faults, writes = store

    def run() -> tuple[list, list]:
        reads = [client.get("/things").status_code for _ in range(20)]
        puts = []
        for n in range(20):
            try:
                puts.append(client.put("/things", json={"n": n}).status_code)
            except NO_ANSWER:
                puts.append("lost")
        return reads, puts

    faults.configure(seed=11)
    faults.rule("429", 0.3, methods=("GET",))
    faults.rule("lost_response", 0.3, methods=("PUT", "POST"), path_prefix="/things")
    reads, puts = run()
    assert set(reads) == {200, 429} and set(puts) == {200, "lost"}
    # A lost answer is a write that happened: every PUT was stored.
    assert [w["n"] for w in writes] == list(range(20))
    counts = faults.counts()
    assert counts == {"429": reads.count(429), "500": 0, "503": 0, "timeout": 0, "drop": 0,
                      "lost_response": puts.count("lost")}
    assert faults.requests_seen == 40

    faults.configure(seed=11)
    assert run() == (reads, puts)  # the same seed and order, the same faults

    faults.clear()
    assert run() == ([200] * 20, [200] * 20)
    assert faults.counts()["429"] == 2 * reads.count(429)  # clearing stops faults, not the count


def test_requests_and_answered_bytes_are_counted_by_api_and_resource(store):
    client, faults, writes = store
    answers = [client.put("/things", json={"n": 1}), client.get("/things"), client.get("/things")]
    faults.script("503", method="GET")
    answers.append(client.get("/things"))
    assert answers[-1].status_code == 503
    assert faults.requests_by_api == {"/things": 4}
    assert faults.requests_by_resource == {"PUT /things": 1, "GET /things": 3}
    # What the client received, body for body, the injected 503's included.
    assert faults.bytes_by_api["/things"] == sum(len(a.content) for a in answers) > 200
    assert faults.bytes_by_resource["PUT /things"] == len(answers[0].content)


def test_configure_refuses_unknown_faults_and_impossible_rates(store):
    _, faults, _ = store
    for bad in ({"rate_502": 0.1}, {"sed": 1}, {"rate_500": 1.5}, {"500": -0.1}, {"timeout": "often"}):
        with pytest.raises(ValueError):
            faults.configure(**bad)
    with pytest.raises(ValueError):
        faults.rule("lost_response", 2)
    with pytest.raises(ValueError):
        FaultConfig(rate_503=7)
    assert faults.configure(**{"503": 0.25}, methods=["PUT"]).rate_503 == 0.25 and faults.methods == ["PUT"]


# --- the Xero sandbox and the official SDK ---------------------------------------------------------------

@pytest.fixture
def xero():
    sb = start_sandbox()
    yield sb
    stop_sandbox(sb)


def sdk_accounting(sb, *, retries_off: bool = True):
    from xero_python.accounting import AccountingApi
    from xero_python.api_client import ApiClient, Configuration
    from xero_python.api_client.oauth2 import OAuth2Token

    token = sb.tokens()
    token["scope"] = token["scope"].split()
    configuration = Configuration()
    configuration.oauth2_token = OAuth2Token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    api_client = ApiClient(configuration, pool_threads=1, oauth2_token_getter=lambda: token,
                           oauth2_token_saver=lambda new: None)
    if retries_off:
        api_client.rest_client.pool_manager = urllib3.PoolManager(retries=False)
    return AccountingApi(api_client, base_url=sb.base_url + "/api.xro/2.0")


def test_sdk_sees_each_fault(xero):
    from xero_python.exceptions import HTTPStatusException, RateLimitException

    accounting = sdk_accounting(xero)
    tenant = xero.org("Acme Pty Ltd").tenant_id
    faults = xero.sandbox.faults
    faults.timeout_seconds = 5

    faults.script("429", method="GET")
    with pytest.raises(RateLimitException) as limited:
        accounting.get_organisations(tenant)
    assert limited.value.rate_limit == "minute"

    for kind in ("500", "503"):
        faults.script(kind, method="GET")
        with pytest.raises(HTTPStatusException) as failed:
            accounting.get_organisations(tenant)
        assert failed.value.status == int(kind)

    for kind, error in (("drop", urllib3.exceptions.ProtocolError),
                        ("lost_response", urllib3.exceptions.ProtocolError),
                        ("timeout", urllib3.exceptions.ReadTimeoutError)):
        faults.script(kind, path_prefix="/api.xro/2.0/Organisation")
        with pytest.raises(error):
            # The SDK ignores a float timeout: only an int or a (connect, read) pair reach urllib3.
            accounting.get_organisations(tenant, _request_timeout=(CLIENT_TIMEOUT, CLIENT_TIMEOUT))

    assert [kind for kind, _, _ in faults.log] == ["429", "500", "503", "drop", "lost_response", "timeout"]
    assert accounting.get_organisations(tenant).organisations[0].name == "Acme Pty Ltd"


def test_sdk_default_pool_hides_a_503_by_retrying(xero):
    """The trap our gateway must switch off: urllib3's default retries re-send after a 503."""
    accounting = sdk_accounting(xero, retries_off=False)
    xero.sandbox.faults.retry_after_seconds = 0
    xero.sandbox.faults.script("503", method="GET")
    assert accounting.get_organisations(xero.org("Acme Pty Ltd").tenant_id).organisations
    assert [kind for kind, _, _ in xero.sandbox.faults.log] == ["503"]


def test_lost_response_on_put_invoices_leaves_the_invoice_in_xero(xero):
    from xero_python.accounting import Contact, Invoice, Invoices, LineAmountTypes, LineItem

    accounting = sdk_accounting(xero)
    org = xero.org("Acme Pty Ltd")
    invoice = Invoice(type="ACCREC", contact=Contact(name="Lost Response Pty"), invoice_number="LOST-1",
                      line_amount_types=LineAmountTypes.EXCLUSIVE, status="DRAFT",
                      line_items=[LineItem(description="Managed services", quantity=1, unit_amount=100,
                                           account_code="200")])
    xero.sandbox.faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Invoices")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        accounting.create_invoices(org.tenant_id, Invoices(invoices=[invoice]), summarize_errors=False,
                                   idempotency_key="lost-1")

    stored = [i for i in org.invoices.values() if i.get("InvoiceNumber") == "LOST-1"]
    assert len(stored) == 1
    found = accounting.get_invoices(org.tenant_id, invoice_numbers=["LOST-1"])
    assert [i.invoice_number for i in found.invoices] == ["LOST-1"]


def test_fault_specs_from_the_command_line_are_parsed_strictly():
    from sandbox.faults import parse_fault_spec

    config = parse_fault_spec("500=0.05, rate_lost_response=0.5", seed=3)
    assert (config.rate_500, config.rate_lost_response, config.rate_429, config.seed) == (0.05, 0.5, 0.0, 3)
    assert parse_fault_spec(None).rate_503 == 0.0
    for bad in ("502=0.1", "500=2", "500=often"):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)

"""The Xero gateway (clients/xero.py) over real HTTP against the Xero simulator.

Nothing of ours is mocked: every call goes through the xero-python SDK, urllib3 and a socket to the
sandbox. Waits are recorded by an injected `sleep` instead of being slept, and the sandbox runs on a
ManualClock wherever limits or token lifetimes matter. A thin ASGI wrapper records every request
that reaches the server, so "sent exactly once" is counted where it counts.
"""
from __future__ import annotations

import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import httpx
import pytest
from xero_python.accounting import Contact, Invoice, LineAmountTypes, LineItem

from clients.xero import (ElementResult, MemoryTokenStore, XeroAuthError, XeroEndpoints, XeroError, XeroGateway,
                          XeroOutcomeUnknown, XeroRateLimited, XeroSettings, XeroTokenRefused, XeroUnavailable,
                          READ_ATTEMPTS, exchange_code, list_connections)
from core.documents import ContactDraft
from sandbox.clock import ManualClock
from sandbox.serving import BackgroundServer
from sandbox.xero.app import create_app
from sandbox.xero.limits import XeroLimits
from sandbox.xero.state import XeroSandbox

CLIENT_ID = "gateway-tests-client"
CLIENT_SECRET = "gateway-tests-secret-never-print-me"
REDIRECT_URI = "http://127.0.0.1/callback"
INVOICES = "/api.xro/2.0/Invoices"
TOKEN_PATH = "/connect/token"


# ---- harness -------------------------------------------------------------------------------------------
@dataclass
class Seen:
    method: str
    path: str
    authorization: str
    query: str = ""


class RequestLog:
    """Outermost ASGI layer: records each request that reached the server, then hands it on with
    uvicorn's own `send`, so the sandbox's socket-level faults still work underneath."""

    def __init__(self, app):
        self.app = app
        self.entries: list[Seen] = []
        self._lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            with self._lock:
                self.entries.append(Seen(scope["method"], scope["path"], headers.get("authorization", ""),
                                         scope.get("query_string", b"").decode("latin-1")))
        await self.app(scope, receive, send)

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for e in self.entries if e.method == method and e.path.lower().startswith(prefix.lower()))


@dataclass
class World:
    sb: XeroSandbox
    clock: ManualClock
    server: BackgroundServer
    log: RequestLog
    sleeps: list = field(default_factory=list)
    raised: list = field(default_factory=list)  # every gateway error seen, checked for secrets at teardown
    stores: list = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def acme(self):
        return self.sb.org_named("Acme NZ")

    @property
    def kiwi(self):
        return self.sb.org_named("Kiwi Two Ltd")

    def token(self, org=None, *, expires_in: float = 1800, user_id: str | None = None) -> dict:
        """A fresh grant to one organisation, with `expires_at` in real time as the ledger stores it."""
        token = self.sb.issue_tokens(CLIENT_ID, [(org or self.acme).tenant_id], user_id=user_id)
        token["expires_at"] = time.time() + expires_in
        return token

    def record_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def sleep_on_sandbox_clock(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def gateway(self, store=None, org=None, *, base_url: str | None = None, **kwargs) -> XeroGateway:
        store = store if store is not None else MemoryTokenStore(self.token(org))
        self.stores.append(store)
        kwargs.setdefault("sleep", self.record_sleep)
        return XeroGateway(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tenant_id=(org or self.acme).tenant_id,
                           token_store=store, endpoints=XeroEndpoints.at(base_url or self.base_url), **kwargs)

    def raises(self, error_type, call, *args, **kwargs):
        with pytest.raises(error_type) as caught:
            call(*args, **kwargs)
        self.raised.append(caught.value)
        return caught.value

    def secrets(self) -> set[str]:
        found = {CLIENT_SECRET}
        for store in self.stores:
            token = store.load() or {}
            found |= {token[k] for k in ("access_token", "refresh_token") if token.get(k)}
        return found


@pytest.fixture
def world():
    clock = ManualClock()
    sb = XeroSandbox(clock=clock)
    sb.add_org("Acme NZ", "NZ")
    sb.add_org("Kiwi Two Ltd", "NZ")
    sb.register_app(CLIENT_ID, CLIENT_SECRET, redirect_uris=[REDIRECT_URI])
    log = RequestLog(create_app(sb))
    server = BackgroundServer(log).start()
    w = World(sb, clock, server, log)
    try:
        yield w
        # 8. no error the gateway raised in any test carries a token or the client secret
        secrets = w.secrets()
        for error in w.raised:
            text = "".join(traceback.format_exception(error)) + repr(error)
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{type(error).__name__} leaks a secret: {text}"
    finally:
        server.stop()


def invoice(number: str, *, account: str = "200", unit: str = "12.3456", contact: str = "Gateway Test Customer") -> Invoice:
    return Invoice(type="ACCREC", contact=Contact(name=contact), invoice_number=number, date=date(2026, 11, 20),
                   due_date=date(2026, 12, 20), line_amount_types=LineAmountTypes.EXCLUSIVE, status="DRAFT",
                   line_items=[LineItem(description="Managed services", quantity=Decimal("3"),
                                        unit_amount=Decimal(unit), account_code=account, tax_type="OUTPUT2")])


def stored_invoices(org, number: str) -> list[dict]:
    return [i for i in org.invoices.values() if i.get("InvoiceNumber") == number]


# ---- 1. batches with per-element results ---------------------------------------------------------------
def test_create_invoices_answers_each_element_in_order_with_four_decimal_units(world):
    gateway = world.gateway()
    results = gateway.create_invoices([invoice("GW-1"), invoice("GW-2", account="999"), invoice("GW-3", unit="0.0125")],
                                      idempotency_key="batch-1")

    assert [type(r) for r in results] == [ElementResult] * 3
    assert [r.ok for r in results] == [True, False, True]
    assert [r.number for r in results] == ["GW-1", "GW-2", "GW-3"]
    first, refused, third = results
    assert first.xero_id and third.xero_id and first.xero_id != third.xero_id
    assert refused.xero_id is None
    assert refused.errors == ["Account code '999' is not a valid code for this document."] or any(
        "999" in e for e in refused.errors)
    # Only the two good ones exist in Xero, with their ids.
    org = world.acme
    assert {i["InvoiceID"] for i in org.invoices.values()} == {first.xero_id, third.xero_id}
    # unitdp=4 both ways: stored with 4 decimals, answered with 4, read back with 4.
    assert stored_invoices(org, "GW-1")[0]["LineItems"][0]["UnitAmount"] == Decimal("12.3456")
    assert stored_invoices(org, "GW-3")[0]["LineItems"][0]["UnitAmount"] == Decimal("0.0125")
    assert Decimal(str(first.element.line_items[0].unit_amount)) == Decimal("12.3456")
    found = {i.invoice_number: i for i in gateway.find_invoices(numbers=["GW-1", "GW-3"], with_lines=True)}
    assert Decimal(str(found["GW-1"].line_items[0].unit_amount)) == Decimal("12.3456")
    assert Decimal(str(found["GW-3"].line_items[0].unit_amount)) == Decimal("0.0125")
    assert world.log.count("PUT", INVOICES) == 1


def test_more_than_fifty_documents_are_refused_before_any_call(world):
    gateway = world.gateway()
    with pytest.raises(ValueError, match="50"):
        gateway.create_invoices([invoice(f"BIG-{n}") for n in range(51)], idempotency_key="too-big")
    with pytest.raises(ValueError, match="50"):
        gateway.create_contacts([Contact(name=f"C{n}") for n in range(51)], idempotency_key="too-big-c")
    assert world.log.entries == [] and gateway.calls == 0


# ---- 2. reading back: chunks and pages -----------------------------------------------------------------
def test_find_invoices_reads_no_line_items_unless_asked(world):
    gateway = world.gateway()
    numbers = [f"PG-{n:03d}" for n in range(120)]
    for start in range(0, 120, 50):
        results = gateway.create_invoices([invoice(n) for n in numbers[start:start + 50]], idempotency_key=f"pg-{start}")
        assert all(r.ok for r in results)

    def reads() -> list:
        return [e for e in world.log.entries if e.method == "GET" and e.path.endswith(INVOICES)]

    # Any read but by id or number: one page of summaries (up to 1,000), then by id in fifties (120: three).
    before = len(reads())
    everything = gateway.find_invoices()
    asked = reads()[before:]
    assert [("summaryonly=true" in e.query.lower(), "page=" in e.query) for e in asked] == [(True, True)] + [(False, False)] * 3
    assert sorted(i.invoice_number for i in everything) == numbers
    assert not any(i.line_items for i in everything)

    # `details` picks which summaries are read again: here none, so one call in all.
    before = len(reads())
    summaries = gateway.find_invoices(details=lambda m: False)
    assert len(reads()) - before == 1 and len(summaries) == 120

    # A person checking the lines pages with them (100 a page).
    before = len(reads())
    with_lines = gateway.find_invoices(with_lines=True)
    assert len(reads()) - before == 2 and all(i.line_items for i in with_lines)

    wanted = numbers[5:50] + ["PG-NOT-THERE"]  # 46 numbers: two unpaged chunks of at most 40
    before = len(reads())
    found = gateway.find_invoices(numbers=wanted)
    assert [("page=" in e.query) for e in reads()[before:]] == [False, False]
    assert sorted(i.invoice_number for i in found) == numbers[5:50]
    assert not any(i.line_items for i in found)


def test_find_contacts_by_numbers_and_names(world):
    gateway = world.gateway()
    contacts = [Contact(name=f"Customer {n}", contact_number=f"AT-{n}") for n in range(30)]
    contacts.append(Contact(name='The "Quoted" Company', contact_number="AT-Q"))
    results = gateway.create_contacts(contacts, idempotency_key="contacts-1")
    assert all(r.ok for r in results) and len({r.xero_id for r in results}) == 31

    before = world.log.count("GET", "/api.xro/2.0/Contacts")
    by_number = gateway.find_contacts(numbers=[f"AT-{n}" for n in range(30)] + ["AT-Q", "AT-MISSING"])
    assert world.log.count("GET", "/api.xro/2.0/Contacts") - before == 2  # chunks of 25
    assert sorted(c.contact_number for c in by_number) == sorted([f"AT-{n}" for n in range(30)] + ["AT-Q"])

    by_name = gateway.find_contacts(names=["customer 7", 'The "Quoted" Company', "Nobody"])
    assert sorted(c.name for c in by_name) == ["Customer 7", 'The "Quoted" Company']
    ids = {str(c.contact_id) for c in by_name}
    assert ids <= {r.xero_id for r in results}


# ---- 3. lost answers, 5xx and dropped connections --------------------------------------------------------
def test_lost_response_on_put_is_outcome_unknown_and_the_invoice_can_be_found(world):
    gateway = world.gateway()
    world.sb.faults.script("lost_response", method="PUT", path_prefix=INVOICES, times=1)

    error = world.raises(XeroOutcomeUnknown, gateway.create_invoices, [invoice("LOST-1")], idempotency_key="lost-1")
    assert "unknown" in str(error)
    # 7. sent exactly once: no hidden urllib3 retry re-sent the PUT.
    assert world.log.count("PUT", INVOICES) == 1
    assert world.sb.faults.log == [("lost_response", "PUT", INVOICES)]
    assert world.sleeps == []
    assert len(stored_invoices(world.acme, "LOST-1")) == 1
    assert [i.invoice_number for i in gateway.find_invoices(numbers=["LOST-1"])] == ["LOST-1"]


def test_timeout_on_put_is_outcome_unknown(world):
    gateway = world.gateway(timeout=1)
    world.sb.faults.timeout_seconds = 5
    world.sb.faults.script("timeout", method="PUT", path_prefix=INVOICES)
    world.raises(XeroOutcomeUnknown, gateway.create_invoices, [invoice("SLOW-1")], idempotency_key="slow-1")
    assert world.log.count("PUT", INVOICES) == 1
    assert len(stored_invoices(world.acme, "SLOW-1")) == 1


def test_a_fractional_timeout_still_allows_calls(world):
    gateway = world.gateway(timeout=0.75)
    assert gateway.organisation().name == "Acme NZ"


def test_a_stored_token_with_only_the_essentials_works(world):
    token = world.token()
    essentials = {k: token[k] for k in ("access_token", "refresh_token")}
    assert world.gateway(MemoryTokenStore(essentials)).organisation().name == "Acme NZ"
    assert [e.authorization for e in world.log.entries] == ["Bearer " + token["access_token"]]  # no 401, no refresh


def test_503_on_a_read_is_retried_after_a_recorded_wait(world):
    gateway = world.gateway()
    world.sb.faults.script("503", method="GET", path_prefix="/api.xro/2.0/Organisation")
    assert gateway.organisation().name == "Acme NZ"
    assert world.log.count("GET", "/api.xro/2.0/Organisation") == 2
    assert len(world.sleeps) == 1 and world.sleeps[0] > 0


def test_repeated_500s_on_a_read_raise_unavailable(world):
    gateway = world.gateway()
    world.sb.faults.script("500", method="GET", path_prefix="/api.xro/2.0/Accounts", times=100)
    world.raises(XeroUnavailable, gateway.accounts)
    attempts = world.log.count("GET", "/api.xro/2.0/Accounts")
    assert 2 <= attempts <= 6
    assert len(world.sleeps) == attempts - 1
    world.sb.faults.clear()
    assert gateway.accounts()


def test_500_on_a_put_is_outcome_unknown_and_not_resent(world):
    gateway = world.gateway()
    world.sb.faults.script("500", method="PUT", path_prefix=INVOICES)
    world.raises(XeroOutcomeUnknown, gateway.create_invoices, [invoice("FIVE-1")], idempotency_key="five-1")
    assert world.log.count("PUT", INVOICES) == 1 and world.sleeps == []


def test_dropped_connection_on_put_is_outcome_unknown(world):
    # sandbox/faults.py: "drop" closes the connection before the app processes the request, so here
    # nothing was written. But the request did reach the server, and the client sees exactly what it
    # would see had Xero crashed after saving: no status line. Only Xero knows, so: outcome unknown.
    gateway = world.gateway()
    world.sb.faults.script("drop", method="PUT", path_prefix=INVOICES)
    world.raises(XeroOutcomeUnknown, gateway.create_invoices, [invoice("DROP-1")], idempotency_key="drop-1")
    assert world.log.count("PUT", INVOICES) == 1 and world.sleeps == []
    assert stored_invoices(world.acme, "DROP-1") == []
    assert gateway.find_invoices(numbers=["DROP-1"]) == []


def test_a_write_that_cannot_connect_is_unavailable_not_unknown(world):
    # Connection refused: nothing can have reached Xero, so retrying (even a PUT) is safe and the
    # caller may release its claim.
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        gateway = world.gateway(base_url=f"http://127.0.0.1:{closed.getsockname()[1]}")
        world.raises(XeroUnavailable, gateway.create_invoices, [invoice("NOWHERE-1")], idempotency_key="nowhere-1")
    assert len(world.sleeps) >= 1


# ---- 4. rate limits and pacing --------------------------------------------------------------------------
def test_minute_limit_429_waits_retry_after_then_succeeds(world):
    world.sb.limits = XeroLimits(per_minute=3)
    other = world.gateway()  # calls this gateway neither paces nor hears about use the organisation's minute
    for _ in range(3):
        other.organisation()
    gateway = world.gateway(sleep=world.sleep_on_sandbox_clock)
    assert gateway.organisation().name == "Acme NZ"  # 429 minute, wait, retry
    assert world.sleeps == [60.0]
    assert world.log.count("GET", "/api.xro/2.0/Organisation") == 5
    assert gateway.calls == 2
    assert gateway.day_remaining == 5000 - 4


def test_xero_saying_its_minute_is_used_up_stops_calls_until_it_has_passed(world):
    # Xero allows fewer calls than the gateway paces itself to (a lowered limit, or calls of another
    # deployment of the app): its X-MinLimit-Remaining of 0 makes the gateway wait, never meet a 429.
    world.sb.limits = XeroLimits(per_minute=3)
    gateway = world.gateway(calls_per_minute=59, sleep=world.sleep_on_sandbox_clock, clock=world.clock.monotonic)
    for _ in range(7):
        gateway.organisation()
    assert world.sb.limiter.refused == {}
    assert world.sleeps == [60.0, 60.0] and gateway.waited == 120.0
    assert world.log.count("GET", "/api.xro/2.0/Organisation") == 7 == gateway.calls


def test_day_limit_429_raises_at_once_without_sleeping(world):
    world.sb.limits = XeroLimits(per_day=2)
    gateway = world.gateway(sleep=world.sleep_on_sandbox_clock)
    gateway.organisation()
    assert gateway.day_remaining == 1
    gateway.organisation()
    assert gateway.day_remaining == 0
    error = world.raises(XeroRateLimited, gateway.organisation)
    assert error.problem == "day" and error.retry_after and error.retry_after > 0
    assert world.sleeps == []
    assert world.log.count("GET", "/api.xro/2.0/Organisation") == 3 and gateway.calls == 3


def test_day_limit_on_a_write_raises_at_once_and_nothing_is_written(world):
    world.sb.limits = XeroLimits(per_day=1)
    gateway = world.gateway()
    gateway.organisation()
    error = world.raises(XeroRateLimited, gateway.create_invoices, [invoice("DAY-1")], idempotency_key="day-1")
    assert error.problem == "day" and world.sleeps == []
    assert stored_invoices(world.acme, "DAY-1") == []


def test_the_pacer_keeps_calls_under_the_budget(world):
    world.sb.limits = XeroLimits(per_minute=3)
    arrivals: list[float] = []
    gateway = world.gateway(calls_per_minute=3, sleep=world.sleep_on_sandbox_clock, clock=world.clock.monotonic)
    for _ in range(7):
        gateway.organisation()
        arrivals.append(world.clock.monotonic())
    # No 429 was ever met: exactly 7 requests, and the waits were the pacer's own.
    assert world.log.count("GET", "/api.xro/2.0/Organisation") == 7 and gateway.calls == 7
    assert world.sleeps == [60.0, 60.0]
    assert gateway.waited == 120.0
    for start in arrivals:
        assert sum(1 for t in arrivals if start <= t < start + 60) <= 3


def test_settings_are_remembered_for_their_ttl_only(world):
    gateway = world.gateway(clock=world.clock.monotonic, settings_ttl_seconds=120)
    for _ in range(3):
        gateway.tax_rates()
        gateway.organisation()
    assert world.log.count("GET", "/api.xro/2.0/TaxRates") == 1
    assert world.log.count("GET", "/api.xro/2.0/Organisation") == 1
    world.clock.advance(121)
    gateway.tax_rates()
    assert world.log.count("GET", "/api.xro/2.0/TaxRates") == 2


# ---- 5. tokens -----------------------------------------------------------------------------------------
class WatchedStore(MemoryTokenStore):
    """A token store that notes, at each save, which requests the server had already seen."""

    def __init__(self, token, log: RequestLog):
        super().__init__(token)
        self.saves: list[tuple[dict, list[Seen]]] = []
        self._log = log

    def save(self, token: dict) -> None:
        self.saves.append((dict(token), list(self._log.entries)))
        super().save(token)


def refresh_with(world, refresh_token: str) -> httpx.Response:
    return httpx.post(world.base_url + TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                      auth=(CLIENT_ID, CLIENT_SECRET))


def test_a_token_near_expiry_is_refreshed_once_and_saved_before_use(world):
    old = world.token(expires_in=120)  # inside the 300 s margin
    store = WatchedStore(old, world.log)
    gateway = world.gateway(store)

    assert gateway.organisation().name == "Acme NZ"
    assert gateway.accounts()
    assert world.log.count("POST", TOKEN_PATH) == 1
    assert len(store.saves) == 1
    saved, seen_at_save = store.saves[0]
    assert saved["refresh_token"] != old["refresh_token"] and saved["access_token"] != old["access_token"]
    assert saved["expires_at"] > time.time() + 1000
    # Saved after the token endpoint answered and before any accounting call was made with it.
    assert [(e.method, e.path) for e in seen_at_save] == [("POST", TOKEN_PATH)]
    accounting = [e for e in world.log.entries if e.path.startswith("/api.xro")]
    assert [e.authorization for e in accounting] == ["Bearer " + saved["access_token"]] * 2

    # The old refresh token still works inside the 30-minute grace, and is dead after it.
    world.clock.advance(31 * 60)
    assert refresh_with(world, old["refresh_token"]).json() == {"error": "invalid_grant"}
    # ... while the saved one keeps the connection alive (the access token has meanwhile expired on
    # Xero's clock: a 401 makes the gateway refresh once and retry).
    assert gateway.organisation().name == "Acme NZ"
    assert world.log.count("POST", TOKEN_PATH) == 3  # ours, the test's dead one, the gateway's second
    assert store.load()["refresh_token"] != saved["refresh_token"]


def test_a_401_for_an_expired_access_token_refreshes_once_and_retries(world):
    store = MemoryTokenStore(world.token())
    gateway = world.gateway(store)
    world.clock.advance(1801)  # Xero's clock: the access token is now expired; ours does not know
    first = store.load()
    assert gateway.organisation().name == "Acme NZ"
    statuses = [(e.method, e.path) for e in world.log.entries]
    assert statuses == [("GET", "/api.xro/2.0/Organisation"), ("POST", TOKEN_PATH), ("GET", "/api.xro/2.0/Organisation")]
    assert store.load()["refresh_token"] != first["refresh_token"]


def test_a_401_on_a_write_refreshes_and_sends_again(world):
    store = MemoryTokenStore(world.token())
    gateway = world.gateway(store)
    world.clock.advance(1801)
    results = gateway.create_invoices([invoice("AUTH-1")], idempotency_key="auth-1")
    assert results[0].ok
    assert world.log.count("PUT", INVOICES) == 2 and len(stored_invoices(world.acme, "AUTH-1")) == 1


def test_two_gateways_on_one_store_refresh_once(world):
    store = MemoryTokenStore(world.token(expires_in=60))
    gateways = [world.gateway(store), world.gateway(store)]
    barrier = threading.Barrier(2)
    answers, errors = [], []

    def work(gateway):
        barrier.wait()
        try:
            answers.append(gateway.organisation().name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(g,)) for g in gateways]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and answers == ["Acme NZ", "Acme NZ"]
    assert world.log.count("POST", TOKEN_PATH) == 1
    # The connection survives: the stored refresh token still refreshes, after the grace too.
    world.clock.advance(31 * 60)
    assert refresh_with(world, store.load()["refresh_token"]).status_code == 200


def test_two_processes_refreshing_one_connection_both_keep_it(world):
    # Two processes (no shared lock: different connection names) read the same stored token, both
    # refresh; whichever saves last wins, and its refresh token must still be good.
    token = world.token(expires_in=60)
    store_a, store_b = MemoryTokenStore(token), MemoryTokenStore(token)
    a = world.gateway(store_a, connection_name="process-a")
    b = world.gateway(store_b, connection_name="process-b")
    assert a.organisation() and b.organisation()
    assert world.log.count("POST", TOKEN_PATH) == 2
    world.clock.advance(31 * 60)
    for store in (store_a, store_b):
        assert refresh_with(world, store.load()["refresh_token"]).status_code == 200


@pytest.mark.parametrize("how", ["revocation endpoint", "disconnect"])
def test_a_revoked_grant_asks_for_atx_connect(world, how):
    token = world.token()
    gateway = world.gateway(MemoryTokenStore(token))
    assert gateway.organisation()
    if how == "revocation endpoint":
        revoked = httpx.post(world.base_url + "/connect/revocation", data={"token": token["refresh_token"]},
                             auth=(CLIENT_ID, CLIENT_SECRET))
        assert revoked.status_code == 200
    else:
        world.sb.disconnect_app(CLIENT_ID)
    error = world.raises(XeroAuthError, gateway.organisation)
    assert "atx connect xero" in str(error)
    error = world.raises(XeroAuthError, gateway.create_invoices, [invoice("REV-1")], idempotency_key="rev-1")
    assert "atx connect xero" in str(error)
    assert stored_invoices(world.acme, "REV-1") == []


def test_a_revoked_grant_found_at_a_scheduled_refresh(world):
    token = world.token(expires_in=10)
    world.sb.disconnect_app(CLIENT_ID)
    error = world.raises(XeroAuthError, world.gateway(MemoryTokenStore(token)).organisation)
    assert "atx connect xero" in str(error)
    assert not any(e.path.startswith("/api.xro") for e in world.log.entries)


def test_a_failing_token_endpoint_is_tried_again_and_not_mistaken_for_a_revoked_grant(world):
    token = world.token(expires_in=10)
    store = MemoryTokenStore(token)
    gateway = world.gateway(store)
    world.sb.faults.script("503", method="POST", path_prefix=TOKEN_PATH, times=2)
    assert gateway.organisation().name == "Acme NZ"  # the third try refreshed
    assert world.log.count("POST", TOKEN_PATH) == 3
    assert store.load()["refresh_token"] != token["refresh_token"]

    # Failing every time: the run stops as for any unavailable Xero, and the grant is untouched.
    token = world.token(expires_in=10)
    store = MemoryTokenStore(token)
    gateway = world.gateway(store)
    world.sb.faults.script("503", method="POST", path_prefix=TOKEN_PATH, times=READ_ATTEMPTS)
    error = world.raises(XeroUnavailable, gateway.organisation)
    assert f"answered 503 {READ_ATTEMPTS} times while refreshing" in str(error)
    assert store.load()["refresh_token"] == token["refresh_token"]
    assert gateway.organisation().name == "Acme NZ"  # the next run refreshes and carries on


def test_a_lost_refresh_answer_is_tried_again_with_the_same_refresh_token(world):
    token = world.token(expires_in=10)
    store = MemoryTokenStore(token)
    gateway = world.gateway(store)
    world.sb.faults.script("lost_response", method="POST", path_prefix=TOKEN_PATH)
    # Xero rotated the token and its answer was lost: within the grace the old refresh token is honoured again.
    assert gateway.organisation().name == "Acme NZ"
    assert world.log.count("POST", TOKEN_PATH) == 2
    refreshed = store.load()
    assert refreshed["refresh_token"] != token["refresh_token"]
    # And the token kept is the one that works from now on.
    assert refresh_with(world, refreshed["refresh_token"]).status_code == 200


def test_no_token_at_all_asks_for_atx_connect(world):
    error = world.raises(XeroAuthError, world.gateway(MemoryTokenStore()).organisation)
    assert "atx connect xero" in str(error)
    assert world.log.entries == []


# ---- 6. the SDK Configuration singleton ------------------------------------------------------------------
def test_two_gateways_for_two_orgs_each_reach_their_own(world):
    acme = world.gateway(org=world.acme)
    kiwi = world.gateway(org=world.kiwi)
    for round_ in range(3):
        for gateway, prefix in ((acme, "Acme"), (kiwi, "Kiwi")):
            [result] = gateway.create_contacts([Contact(name=f"{prefix} customer {round_}")],
                                               idempotency_key=f"{prefix}-{round_}")
            assert result.ok
    assert sorted(c["Name"] for c in world.acme.contacts.values()) == [f"Acme customer {n}" for n in range(3)]
    assert sorted(c["Name"] for c in world.kiwi.contacts.values()) == [f"Kiwi customer {n}" for n in range(3)]
    assert acme.organisation().name == "Acme NZ" and kiwi.organisation().name == "Kiwi Two Ltd"
    # Each sent its own token: the two grants are different users with one organisation each.
    tokens = {e.authorization for e in world.log.entries if e.method == "PUT"}
    assert len(tokens) == 2


# ---- 8. secrets --------------------------------------------------------------------------------------------
def test_secrets_stay_out_of_repr_and_str(world):
    token = world.token()
    store = MemoryTokenStore(token)
    gateway = world.gateway(store)
    gateway.organisation()
    for text in (repr(gateway), str(gateway), repr(store), str(store)):
        for secret in (CLIENT_SECRET, token["access_token"], token["refresh_token"]):
            assert secret not in text
    assert world.acme.tenant_id in repr(gateway)


def test_error_messages_are_plain_xero_errors(world):
    # Every error above is a XeroError, so callers can catch one family.
    for cls in (XeroAuthError, XeroOutcomeUnknown, XeroRateLimited, XeroUnavailable):
        assert issubclass(cls, XeroError)


class GatedStore(MemoryTokenStore):
    """Makes a race happen every time: threads A and B both read the (expired) token first; B sends it
    only after A has met its 401 and saved a refreshed token, so B's 401 comes second."""

    def __init__(self, token):
        super().__init__(token)
        self.both_read = threading.Barrier(2)
        self.saved = threading.Event()
        self.reads: set[str] = set()

    def load(self):
        me = threading.current_thread().name
        if me not in ("A", "B") or me in self.reads:
            return super().load()
        self.reads.add(me)
        token = super().load()
        self.both_read.wait(10)
        if me == "B":
            self.saved.wait(10)
        return token

    def save(self, token):
        super().save(token)
        self.saved.set()


def test_threads_meeting_one_expired_token_refresh_once(world):
    # expires_at says nothing (an old token, or clocks apart): both threads learn of the expiry from a
    # 401; the one that comes second must use the token the first saved, not rotate it again.
    token = world.token()
    del token["expires_at"]
    store = GatedStore(token)
    gateway = world.gateway(store)
    world.clock.advance(1801)
    answers, errors = [], []

    def work():
        try:
            answers.append(gateway.organisation().name)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, name=name) for name in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and answers == ["Acme NZ"] * 2
    assert world.log.count("GET", "/api.xro/2.0/Organisation") == 4  # two 401s, two retries
    assert world.log.count("POST", TOKEN_PATH) == 1


def test_a_disconnected_organisation_asks_for_atx_connect(world):
    token = world.token()
    gateway = world.gateway(MemoryTokenStore(token))
    auth = {"Authorization": "Bearer " + token["access_token"]}
    [connection] = httpx.get(world.base_url + "/connections", headers=auth).json()
    assert httpx.delete(f"{world.base_url}/connections/{connection['id']}", headers=auth).status_code == 204
    error = world.raises(XeroAuthError, gateway.organisation)
    assert "atx connect xero" in str(error) and "disconnected" in str(error)


def test_a_minute_429_on_a_write_is_sent_again_and_creates_once(world):
    world.sb.limits = XeroLimits(per_minute=1)
    world.gateway().organisation()  # another gateway's call: this one never heard the minute is used
    gateway = world.gateway(sleep=world.sleep_on_sandbox_clock)
    [result] = gateway.create_invoices([invoice("RL-1")], idempotency_key="rl-1")
    assert result.ok and world.sleeps == [60.0]
    assert world.log.count("PUT", INVOICES) == 2 and len(stored_invoices(world.acme, "RL-1")) == 1


def test_a_429_asking_for_too_long_a_wait_is_raised(world):
    world.sb.limits = XeroLimits(per_minute=1)
    world.gateway().organisation()  # another gateway's call: this one never heard the minute is used
    gateway = world.gateway(sleep=world.sleep_on_sandbox_clock, max_wait_seconds=30)
    error = world.raises(XeroRateLimited, gateway.organisation)
    assert error.problem == "minute" and error.retry_after == 60 and world.sleeps == []


# ---- the rest of the surface, once each -------------------------------------------------------------------
def test_settings_updates_attachments_and_connections(world):
    gateway = world.gateway()
    assert {a.code for a in gateway.accounts()} >= {"200", "090"}
    assert {t.tax_type for t in gateway.tax_rates()} >= {"OUTPUT2", "NONE"}
    assert gateway.tracking_categories() and gateway.branding_themes()
    assert "NZD" in {str(getattr(c.code, "value", c.code)) for c in gateway.currencies()}
    assert [c["tenantId"] for c in gateway.connections()] == [world.acme.tenant_id]

    [created] = gateway.create_invoices([invoice("UPD-1")], idempotency_key="upd-1")
    [updated] = gateway.update_invoices([Invoice(invoice_id=created.xero_id, reference="PO 42")],
                                        idempotency_key="upd-1b")
    assert updated.ok and updated.xero_id == created.xero_id
    assert stored_invoices(world.acme, "UPD-1")[0]["Reference"] == "PO 42"

    [contact] = gateway.create_contacts([Contact(name="Renamed Later", contact_number="AT-R")], idempotency_key="c-r")
    [renamed] = gateway.update_contacts([Contact(contact_id=contact.xero_id, name="Renamed Now")], idempotency_key="c-r2")
    assert renamed.ok and world.acme.contacts[contact.xero_id]["Name"] == "Renamed Now"
    # Drafts, as the contacts task sends them: created as they are, rewritten with the contact's id.
    [drafted] = gateway.create_contacts([ContactDraft(contact_number="AT-D", name="Drafted Ltd", is_customer=True)],
                                        idempotency_key="c-d")
    assert drafted.ok and world.acme.contacts[drafted.xero_id]["ContactNumber"] == "AT-D"
    [redrafted] = gateway.update_contacts([(drafted.xero_id, ContactDraft(contact_number="AT-D", name="Drafted Again Ltd"))],
                                          idempotency_key="c-d2")
    assert redrafted.ok and redrafted.xero_id == drafted.xero_id
    assert world.acme.contacts[drafted.xero_id]["Name"] == "Drafted Again Ltd"

    pdf = b"%PDF-1.4 tiny test attachment"
    gateway.attach_to_invoice(created.xero_id, "invoice.pdf", pdf, idempotency_key="att-1")
    stored = world.acme.attachments[created.xero_id]["invoice.pdf"]
    assert stored["Content"] == pdf and stored.get("IncludeOnline") is True


def test_connections_refreshes_on_401_and_retries_failures(world):
    store = MemoryTokenStore(world.token())
    gateway = world.gateway(store)
    world.clock.advance(1801)  # expired on Xero's clock only
    assert [c["tenantId"] for c in gateway.connections()] == [world.acme.tenant_id]
    assert world.log.count("POST", TOKEN_PATH) == 1
    world.sb.faults.script("503", method="GET", path_prefix="/connections")
    assert gateway.connections()
    assert len(world.sleeps) == 1
    world.sb.faults.script("500", method="GET", path_prefix="/connections", times=10)
    world.raises(XeroUnavailable, gateway.connections)
    world.sb.faults.clear()
    world.sb.disconnect_app(CLIENT_ID)
    assert "atx connect xero" in str(world.raises(XeroAuthError, gateway.connections))


# ---- the identity calls `atx connect` makes ----------------------------------------------------------------
def consent(world) -> tuple[str, str]:
    """The consent page with PKCE, as `atx connect` asks for it and a browser walks it: (code, verifier)."""
    from atx.connect import consent_url

    request = consent_url(world.base_url + "/identity/connect/authorize", CLIENT_ID, REDIRECT_URI,
                          "offline_access accounting.settings")
    answer = httpx.get(request.url)  # the sandbox consents at once and redirects to the callback
    assert answer.status_code in (302, 303, 307), answer.text
    return httpx.URL(answer.headers["location"]).params["code"], request.verifier


def exchange(world, code: str, verifier: str, **overrides):
    arguments = dict(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, code=code, redirect_uri=REDIRECT_URI,
                     code_verifier=verifier)
    arguments.update(overrides)
    return exchange_code(XeroEndpoints.at(world.base_url), **arguments)


def no_secret_in(error: BaseException, *secrets: str) -> None:
    text = "".join(traceback.format_exception(error)) + repr(error)
    assert not [s for s in (CLIENT_SECRET, *secrets) if s and s in text], text


def test_exchange_code_and_list_connections_as_atx_connect_does(world):
    code, verifier = consent(world)
    token = exchange(world, code, verifier)
    assert token["access_token"] and token["refresh_token"] and token["token_type"] == "Bearer"
    assert token["scope"] == ["offline_access", "accounting.settings"]
    assert token["expires_at"] == pytest.approx(time.time() + 1800, abs=60)
    assert set(token) <= {"access_token", "refresh_token", "expires_in", "token_type", "scope", "id_token", "expires_at"}
    granted = list_connections(XeroEndpoints.at(world.base_url), token["access_token"])
    assert {c["tenantName"] for c in granted} == {"Acme NZ", "Kiwi Two Ltd"}
    assert {c["tenantType"] for c in granted} == {"ORGANISATION"}
    # The token set works for the gateway as stored by `atx connect`.
    store = MemoryTokenStore(token)
    assert world.gateway(store).organisation().name == "Acme NZ"
    assert {c["tenantId"] for c in world.gateway(store).connections()} == {world.acme.tenant_id, world.kiwi.tenant_id}


def test_a_refused_code_is_an_auth_error_without_any_secret(world):
    code, verifier = consent(world)
    wrong_verifier = world.raises(XeroAuthError, exchange, world, code, "not-the-verifier-" + "x" * 40)
    assert "invalid_grant" in str(wrong_verifier) and "atx connect xero" in str(wrong_verifier)
    no_secret_in(wrong_verifier, code, verifier, "not-the-verifier-" + "x" * 40)

    code, verifier = consent(world)
    assert exchange(world, code, verifier)["access_token"]
    reused = world.raises(XeroAuthError, exchange, world, code, verifier)  # a code works once
    assert "invalid_grant" in str(reused)
    no_secret_in(reused, code, verifier)

    code, verifier = consent(world)
    wrong_secret = "a-wrong-client-secret-that-must-not-show"
    refused_client = world.raises(XeroAuthError, exchange, world, code, verifier, client_secret=wrong_secret)
    assert "invalid_client" in str(refused_client) and "client secret" in str(refused_client)
    no_secret_in(refused_client, code, verifier, wrong_secret)


@pytest.mark.parametrize("fault", ["503", "500", "lost_response", "drop"])
def test_an_identity_outage_during_the_exchange_is_unavailable(world, fault):
    code, verifier = consent(world)
    world.sb.faults.script(fault, method="POST", path_prefix=TOKEN_PATH)
    error = world.raises(XeroUnavailable, exchange, world, code, verifier)
    assert "atx connect xero" in str(error) and not isinstance(error, XeroAuthError)
    no_secret_in(error, code, verifier)


def test_list_connections_retries_an_outage_and_translates_refusals(world):
    endpoints = XeroEndpoints.at(world.base_url)
    token = world.token()
    world.sb.faults.script("503", method="GET", path_prefix="/connections", times=2)
    sleeps: list[float] = []
    assert [c["tenantId"] for c in list_connections(endpoints, token["access_token"], sleep=sleeps.append)] == [
        world.acme.tenant_id]
    assert len(sleeps) == 2  # waited out (Retry-After when Xero sends one), then answered
    world.sb.faults.script("500", method="GET", path_prefix="/connections", times=10)
    outage = world.raises(XeroUnavailable, list_connections, endpoints, token["access_token"], sleep=sleeps.append)
    assert "listing connections" in str(outage)
    no_secret_in(outage, token["access_token"])
    world.sb.faults.clear()
    refused = world.raises(XeroTokenRefused, list_connections, endpoints, "not-a-token-we-issued")
    assert isinstance(refused, XeroAuthError) and "401" in str(refused)
    no_secret_in(refused, "not-a-token-we-issued")


# ---- the organisation's settings, read once -------------------------------------------------------------
SETTINGS_PATHS = ("Organisation", "Accounts", "TaxRates", "TrackingCategories", "BrandingThemes", "Currencies")


def test_settings_read_each_endpoint_once_per_ttl(world):
    gateway = world.gateway(clock=world.clock.monotonic, settings_ttl_seconds=120)
    first = gateway.settings()
    for _ in range(2):
        assert gateway.settings() == first
    gateway.accounts(), gateway.organisation()  # the SDK-model readers share the same memory
    assert {p: world.log.count("GET", f"/api.xro/2.0/{p}") for p in SETTINGS_PATHS} == dict.fromkeys(SETTINGS_PATHS, 1)
    world.clock.advance(121)
    gateway.settings()
    assert {p: world.log.count("GET", f"/api.xro/2.0/{p}") for p in SETTINGS_PATHS} == dict.fromkeys(SETTINGS_PATHS, 2)


def test_settings_are_plain_values_with_every_status(world):
    world.acme.period_lock_date = date(2026, 9, 30)
    world.acme.tax_rates["ZERORATED"]["Status"] = "ARCHIVED"
    settings = world.gateway().settings()
    assert isinstance(settings, XeroSettings)
    assert (settings.organisation_name, settings.base_currency) == ("Acme NZ", "NZD")
    assert settings.timezone == "NEWZEALANDSTANDARDTIME"
    assert settings.period_lock_date == date(2026, 9, 30) and settings.end_of_year_lock_date is None
    accounts = {a.code: a for a in settings.accounts}
    assert (accounts["200"].name, accounts["200"].type, accounts["200"].status, accounts["200"].tax_type) == (
        "Sales", "REVENUE", "ACTIVE", "OUTPUT2")
    assert accounts["466"].status == "ARCHIVED"  # archived accounts are read, with their status
    rates = {t.tax_type: t for t in settings.tax_rates}
    assert rates["OUTPUT2"].effective_rate == Decimal("15") and isinstance(rates["OUTPUT2"].effective_rate, Decimal)
    assert rates["OUTPUT2"].name == "15% GST on Income" and rates["ZERORATED"].status == "ARCHIVED"
    department = next(c for c in settings.tracking_categories if c.name == "Department")
    assert {(o.name, o.status) for o in department.options} >= {("Projects", "ACTIVE"), ("Legacy Support", "ARCHIVED")}
    assert set(settings.branding_themes) == {"Standard", "Managed Services"}
    assert settings.branding_themes["Standard"] == next(
        t["BrandingThemeID"] for t in world.acme.branding_themes.values() if t["Name"] == "Standard")
    assert settings.currencies >= {"NZD", "AUD"}
    # No SDK model or enum leaks out: every value is a plain str, Decimal, date, tuple, dict or frozenset.
    plain = (str, Decimal, date, bool, type(None))
    assert all(type(v) in plain for a in settings.accounts for v in vars(a).values())
    assert all(type(v) in plain for t in settings.tax_rates for v in vars(t).values())
    assert all(type(o.name) is str and type(o.status) in plain for c in settings.tracking_categories for o in c.options)
    assert all(type(code) is str for code in settings.currencies)
    assert type(settings.base_currency) is str and type(settings.timezone) is str

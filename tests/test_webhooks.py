"""Xero webhooks pushed instead of polled: the receiver (atx/webhooks.py) over real HTTP, fed by the
Xero simulator's own signed deliveries, and the deployment trigger that acts on its events."""
from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from atx.webhooks import PATH, create_app, signature, tenants_by_organisation
from sandbox.serving import BackgroundServer, free_port
from sandbox.xero.app import create_app as create_xero_app
from sandbox.xero.limits import XeroLimits
from sandbox.xero.serialise import dumps, loads
from sandbox.xero.state import XeroSandbox
from sandbox.xero.webhooks import WebhookSubscription

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "webhook-tests-client"
ACCOUNTING = "/api.xro/2.0"


class Recorder:
    """Stands in for prefect.events.emit_event: keeps what would have been emitted."""

    def __init__(self):
        self.calls: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, **kwargs):
        with self._lock:
            self.calls.append(kwargs)

    def wait_for(self, predicate, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                calls = list(self.calls)
            if predicate(calls):
                return calls
            time.sleep(0.02)
        raise AssertionError(f"not emitted in {timeout}s; got {[c['event'] for c in self.calls]}")


@pytest.fixture
def key() -> str:
    return secrets.token_urlsafe(32)


@pytest.fixture
def xero():
    sandbox = XeroSandbox(limits=XeroLimits(per_minute=100_000, per_day=1_000_000, concurrent=50,
                                            app_per_minute=1_000_000))
    sandbox.add_org("Kiwi IT Ltd", "NZ")
    sandbox.add_org("Nobody's Org Ltd", "NZ")
    sandbox.register_app(CLIENT_ID, "webhook-tests-secret", ["http://127.0.0.1/callback"])
    token = sandbox.issue_tokens(CLIENT_ID, scopes=["offline_access", "accounting.transactions",
                                                    "accounting.contacts", "accounting.settings"])
    server = BackgroundServer(create_xero_app(sandbox)).start()
    http = httpx.Client(base_url=server.base_url, timeout=10)
    sandbox.http, sandbox.token = http, token
    yield sandbox
    sandbox.unsubscribe_webhooks()
    http.close()
    server.stop()


@pytest.fixture
def receiver(xero, key, caplog):
    """The receiver on a free port, knowing one tenant (acme) for the Kiwi organisation."""
    caplog.set_level(logging.DEBUG)
    recorder = Recorder()
    org = xero.org_named("Kiwi IT Ltd")
    server = BackgroundServer(create_app(key, {org.tenant_id: "acme"}, recorder)).start()
    recorder.url = server.base_url + PATH
    recorder.org = org
    yield recorder
    server.stop()


def call(xero: XeroSandbox, method: str, path: str, body: dict, org_name: str = "Kiwi IT Ltd") -> dict:
    response = xero.http.request(method, ACCOUNTING + path, content=dumps(body), headers={
        "Authorization": f"Bearer {xero.token['access_token']}", "Accept": "application/json",
        "Content-Type": "application/json", "xero-tenant-id": xero.org_named(org_name).tenant_id})
    assert response.status_code == 200, response.text
    return loads(response.content)


def xero_event(tenant_id: str, category: str = "INVOICE", event_type: str = "UPDATE") -> dict:
    resource = str(uuid.uuid4())
    path = "Invoices" if category == "INVOICE" else "Contacts"
    return {"resourceUrl": f"https://api.xero.com/api.xro/2.0/{path}/{resource}", "resourceId": resource,
            "eventDateUtc": "2026-11-20T01:02:03.456", "eventType": event_type, "eventCategory": category,
            "tenantId": tenant_id, "tenantType": "ORGANISATION"}


def post(url: str, body: bytes, sig: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["x-xero-signature"] = sig
    return httpx.post(url, content=body, headers=headers, timeout=5)


def payload(*events: dict) -> bytes:
    return json.dumps({"events": list(events), "firstEventSequence": 1, "lastEventSequence": len(events),
                       "entropy": "ABCDEFGHIJKLMNOPQRST"}).encode()


# --- the receiver -----------------------------------------------------------------------------------

def test_the_intent_to_receive_handshake_passes(xero, receiver, key, caplog):
    subscription = xero.subscribe_webhooks(receiver.url, key)
    assert not subscription.verified
    assert xero.webhook_intent_to_receive() is True
    assert subscription.verified
    answers = {(c.signed_correctly, c.status, c.body) for c in subscription.intent_checks}
    assert answers == {(True, 200, b""), (False, 401, b"")}
    assert all(c.seconds < 5 for c in subscription.intent_checks)
    assert receiver.calls == []
    assert key not in caplog.text


def test_a_receiver_with_another_key_fails_the_handshake_and_gets_no_events(xero, receiver):
    subscription = xero.subscribe_webhooks(receiver.url, secrets.token_urlsafe(32))
    assert xero.webhook_intent_to_receive() is False
    assert not subscription.verified
    call(xero, "PUT", "/Contacts", {"Contacts": [{"Name": "Unheard Ltd"}]})
    assert subscription.flush(2) and subscription.deliveries == [] and subscription.dropped == 1


def test_a_bad_signature_gets_401_and_emits_nothing(receiver, key, caplog):
    body = payload(xero_event(receiver.org.tenant_id))
    wrong = signature(secrets.token_urlsafe(32), body)
    tampered = body.replace(b"UPDATE", b"CREATE")
    for sig, sent in [(wrong, body), (None, body), ("", body), ("not-base64!!", body),
                      (signature(key, body), tampered)]:
        response = post(receiver.url, sent, sig)
        assert response.status_code == 401 and response.content == b""
    assert receiver.calls == []
    refusals = [r for r in caplog.records if r.name == "atx.webhooks" and "does not match" in r.getMessage()]
    assert len(refusals) == 5
    assert key not in caplog.text and receiver.org.tenant_id not in caplog.text


def test_a_signed_payload_emits_one_event_per_xero_event_for_the_known_organisation(receiver, key, caplog):
    tenant_id = receiver.org.tenant_id
    events = [xero_event(tenant_id), xero_event(tenant_id, "INVOICE", "CREATE"),
              xero_event(tenant_id, "CONTACT", "UPDATE"), xero_event(tenant_id.upper(), "CONTACT", "CREATE")]
    stranger = str(uuid.uuid4())
    body = payload(*events, xero_event(stranger))
    response = post(receiver.url, body, signature(key, body))
    assert response.status_code == 200 and response.content == b""

    assert [c["event"] for c in receiver.calls] == [
        "xero.invoice.updated", "xero.invoice.created", "xero.contact.updated", "xero.contact.created"]
    for emitted, sent in zip(receiver.calls, events):
        assert emitted["resource"] == {"prefect.resource.id": f"xero.organisation.{tenant_id}",
                                       "xero.tenant-id": tenant_id, "atx.tenant": "acme"}
        assert emitted["payload"]["resourceId"] == sent["resourceId"]
        assert emitted["payload"]["eventDateUtc"] == "2026-11-20T01:02:03.456"
        assert emitted["related"][0]["prefect.resource.id"].endswith(sent["resourceId"])
    # Xero redelivering the same payload gives the same Prefect event ids (the server keeps one).
    post(receiver.url, body, signature(key, body))
    assert [c["id"] for c in receiver.calls[4:]] == [c["id"] for c in receiver.calls[:4]]
    assert any(stranger in r.getMessage() and "dropped 1" in r.getMessage() for r in caplog.records)
    assert key not in caplog.text


def test_a_failing_emit_answers_500_so_xero_delivers_again(key):
    def broken(**kwargs):
        raise ConnectionError("prefect api is down")

    org = str(uuid.uuid4())
    server = BackgroundServer(create_app(key, {org: "acme"}, broken)).start()
    try:
        body = payload(xero_event(org))
        assert post(server.base_url + PATH, body, signature(key, body)).status_code == 500
    finally:
        server.stop()


# --- the simulator delivers --------------------------------------------------------------------------

def test_an_invoice_and_its_payment_in_the_simulator_reach_the_receiver_as_events(xero, receiver, key, caplog):
    subscription = xero.subscribe_webhooks(receiver.url, key, delay=0.05)
    assert xero.webhook_intent_to_receive()
    org = receiver.org
    created = call(xero, "PUT", "/Invoices", {"Invoices": [{
        "Type": "ACCREC", "Contact": {"Name": "Contoso Ltd"}, "Date": "2026-11-20", "DueDate": "2026-12-20",
        "Status": "AUTHORISED", "LineItems": [{"Description": "Managed services", "Quantity": Decimal("1"),
                                               "UnitAmount": Decimal("100.00"), "AccountCode": "200"}]}]})
    invoice = created["Invoices"][0]
    calls = receiver.wait_for(lambda c: {e["event"] for e in c} >= {"xero.invoice.created", "xero.contact.created"})
    by_event = {c["event"]: c for c in calls}
    assert by_event["xero.invoice.created"]["payload"]["resourceId"] == invoice["InvoiceID"]
    assert by_event["xero.contact.created"]["payload"]["resourceId"] == invoice["Contact"]["ContactID"]
    assert by_event["xero.invoice.created"]["resource"]["atx.tenant"] == "acme"

    paid = call(xero, "PUT", "/Payments", {"Payments": [{
        "Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": "090"}, "Date": "2026-11-25",
        "Amount": Decimal("40.00")}]})
    payment_id = paid["Payments"][0]["PaymentID"]
    updated = receiver.wait_for(lambda c: any(e["event"] == "xero.invoice.updated" for e in c))
    update = next(e for e in updated if e["event"] == "xero.invoice.updated")
    assert update["payload"]["resourceId"] == invoice["InvoiceID"]
    assert update["resource"]["prefect.resource.id"] == f"xero.organisation.{org.tenant_id}"

    # Deleting the payment changes the invoice again: a second update.
    call(xero, "POST", f"/Payments/{payment_id}", {"Status": "DELETED"})
    receiver.wait_for(lambda c: sum(e["event"] == "xero.invoice.updated" for e in c) == 2)

    # Another organisation's changes are delivered too, and dropped by the receiver: no tenant has it.
    call(xero, "PUT", "/Contacts", {"Contacts": [{"Name": "Stranger Ltd"}]}, org_name="Nobody's Org Ltd")
    assert subscription.flush(5)
    assert all(d.status == 200 for d in subscription.deliveries)
    sequences = [(d.first_sequence, d.last_sequence) for d in subscription.deliveries]
    assert sequences[0][0] == 1 and all(b[0] == a[1] + 1 for a, b in zip(sequences, sequences[1:]))
    assert len(receiver.calls) == 4
    assert "dropped 1 Xero event(s) for organisation " + xero.org_named("Nobody's Org Ltd").tenant_id in caplog.text
    assert key not in caplog.text


def test_a_refused_write_sends_nothing_and_a_dead_receiver_never_fails_the_api_call(xero, key):
    port = free_port()  # nothing listens here
    subscription = xero.subscribe_webhooks(f"http://127.0.0.1:{port}{PATH}", key, delay=0.01, retries=1,
                                           backoff=0.01)
    subscription.verified = True  # as if the receiver had passed the handshake, then gone away
    refused = xero.http.put(ACCOUNTING + "/Invoices", content=dumps({"Invoices": [{"Type": "ACCREC"}]}), headers={
        "Authorization": f"Bearer {xero.token['access_token']}", "Content-Type": "application/json",
        "xero-tenant-id": xero.org_named("Kiwi IT Ltd").tenant_id})
    assert refused.status_code == 400
    assert subscription.flush(1) and subscription.deliveries == []
    started = time.monotonic()
    call(xero, "PUT", "/Contacts", {"Contacts": [{"Name": "Still Works Ltd"}]})
    assert time.monotonic() - started < 1
    assert subscription.flush(3)
    assert [(d.status, d.attempt) for d in subscription.deliveries] == [(None, 1), (None, 2)]


def test_the_simulator_signs_what_it_sends(key):
    body = b'{"events":[]}'
    assert WebhookSubscription.__module__ == "sandbox.xero.webhooks"
    from sandbox.xero.webhooks import sign

    assert sign(key, body) == signature(key, body)


# --- the command line and the deployment trigger -------------------------------------------------------

def test_atx_webhooks_serve_passes_the_handshake_and_never_prints_the_key(key, atx_home):
    port = free_port()
    env = {**os.environ, "ATX_XERO_WEBHOOK_KEY": key}
    process = subprocess.Popen([sys.executable, "-m", "atx.cli", "webhooks", "serve", "--port", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{port}{PATH}", content=b"{}", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "atx webhooks serve did not start"
                time.sleep(0.1)
        subscription = WebhookSubscription(f"http://127.0.0.1:{port}{PATH}", key)
        try:
            assert subscription.intent_to_receive()
        finally:
            subscription.close()
    finally:
        process.terminate()
        out, err = process.communicate(timeout=15)
    assert "does not match" in err and key not in out + err


def test_atx_webhooks_serve_without_a_key_says_what_to_set(atx_home):
    env = {k: v for k, v in os.environ.items() if k != "ATX_XERO_WEBHOOK_KEY"}
    result = subprocess.run([sys.executable, "-m", "atx.cli", "webhooks", "serve"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "ATX_XERO_WEBHOOK_KEY" in result.stderr  # errors go to stderr, one line


def test_the_payments_trigger_is_a_valid_prefect_deployment_trigger_for_the_tenants_organisation():
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from atx.settings import TenantSettings
    from deployments import payments_trigger

    org = str(uuid.uuid4())
    acme = TenantSettings.model_validate({
        "name": "acme", "mapping": "demo",
        "autotask": {"username": "api@acme.example", "integration_code": "CODE", "secret": "env:AT_SECRET"},
        "xero": {"client_id": "CLIENT", "client_secret": "env:XERO_SECRET", "tenant_id": org.upper()}})
    trigger = payments_trigger(acme)
    assert trigger["match"] == {"prefect.resource.id": f"xero.organisation.{org}"}
    assert trigger["expect"] == ["xero.invoice.updated"] and trigger["threshold"] == 1 and trigger["within"] == 60
    assert trigger["parameters"]["tenant"] == "acme"
    parsed = DeploymentEventTrigger.model_validate(trigger)
    assert parsed.within.total_seconds() == 60 and parsed.posture == "Reactive" and parsed.enabled
    assert parsed.parameters["reason"].startswith("{{ event.event }}")
    # It matches the resource the receiver emits for this tenant's organisation.
    assert tenants_by_organisation([acme]) == {org: "acme"}
    emitted = Recorder()
    body = payload(xero_event(org))
    key = secrets.token_urlsafe(32)
    server = BackgroundServer(create_app(key, tenants_by_organisation([acme]), emitted)).start()
    try:
        assert post(server.base_url + PATH, body, signature(key, body)).status_code == 200
    finally:
        server.stop()
    assert emitted.calls[0]["resource"]["prefect.resource.id"] == trigger["match"]["prefect.resource.id"]
    assert emitted.calls[0]["event"] in trigger["expect"]

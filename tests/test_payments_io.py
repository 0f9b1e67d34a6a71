"""The payments flow's building blocks over real HTTP: Xero payments in plain types (find, create in one
batch, delete), invoices' settlement in plain types, and the Autotask invoice write-back (PATCH paidDate).

Nothing of ours is mocked: the Xero calls go through the xero-python SDK to the Xero simulator, the
Autotask calls through httpx to the Autotask simulator, both behind the fault injector.
"""
from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest
from xero_python.accounting import Contact, Invoice, LineAmountTypes, LineItem

from clients.autotask import AutotaskClient, AutotaskOutcomeUnknown, InvoiceUpdate
from clients.xero import MemoryTokenStore, PaymentWritten, XeroEndpoints, XeroGateway, XeroOutcomeUnknown
from core.documents import INVOICE, PaymentDraft, Status, XeroPayment
from sandbox.autotask import AutotaskSandbox, create_app as autotask_app, generate_data
from sandbox.clock import ManualClock
from sandbox.faults import FaultConfig, with_faults
from sandbox.serving import BackgroundServer, serve
from sandbox.xero.app import create_app as xero_app
from sandbox.xero.state import XeroSandbox

CLIENT_ID = "payments-io-client"
CLIENT_SECRET = "payments-io-secret"
ACCOUNTING = "/api.xro/2.0"
PAYMENTS = ACCOUNTING + "/Payments"
BANK = "090"


# ---- Xero harness --------------------------------------------------------------------------------------
class XeroWorld:
    def __init__(self):
        self.clock = ManualClock()
        self.sb = XeroSandbox(clock=self.clock)
        self.org = self.sb.add_org("Payments NZ", "NZ")
        self.sb.register_app(CLIENT_ID, CLIENT_SECRET, redirect_uris=["http://127.0.0.1/callback"])
        self.server = BackgroundServer(xero_app(self.sb)).start()

    def gateway(self) -> XeroGateway:
        token = self.sb.issue_tokens(CLIENT_ID, [self.org.tenant_id])
        token["expires_at"] = time.time() + 1800
        return XeroGateway(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, tenant_id=self.org.tenant_id,
                           token_store=MemoryTokenStore(token), endpoints=XeroEndpoints.at(self.server.base_url),
                           sleep=lambda s: None)

    def raw(self, method: str, path: str, **kwargs) -> httpx.Response:
        token = self.sb.issue_tokens(CLIENT_ID, [self.org.tenant_id])["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Xero-Tenant-Id": self.org.tenant_id,
                   "Accept": "application/json"}
        return httpx.request(method, self.server.base_url + path, headers=headers, timeout=10, **kwargs)


@pytest.fixture
def xw():
    w = XeroWorld()
    try:
        yield w
    finally:
        w.server.stop()


def invoices(gateway: XeroGateway, *amounts: str, status: str = "AUTHORISED", prefix: str = "PAY") -> list[str]:
    """ACCREC invoices of these totals (no tax), created in one call; their ids."""
    models = [Invoice(type="ACCREC", contact=Contact(name="Payments Customer"), invoice_number=f"{prefix}-{n}",
                      date=date(2026, 11, 20), due_date=date(2026, 12, 20),
                      line_amount_types=LineAmountTypes.NOTAX, status=status,
                      line_items=[LineItem(description="Managed services", quantity=Decimal("1"),
                                           unit_amount=Decimal(amount), account_code="200")])
              for n, amount in enumerate(amounts)]
    results = gateway.create_invoices(models, idempotency_key=f"inv-{prefix}-{status}")
    assert all(r.ok for r in results), [r.errors for r in results]
    return [r.xero_id for r in results]


def draft(invoice_id: str, amount: str, **extra) -> PaymentDraft:
    return PaymentDraft(invoice_id=invoice_id, amount=Decimal(amount), date=date(2026, 11, 23), account_code=BANK,
                        **extra)


# ---- Xero: one batch, per-element answers --------------------------------------------------------------
def test_a_batch_with_bad_elements_makes_the_good_payments_and_refuses_each_bad_one(xw):
    gateway = xw.gateway()
    paid, over, fine = invoices(gateway, "100.00", "50.00", "80.00")
    (draft_id,) = invoices(gateway, "70.00", status="DRAFT", prefix="DRF")
    calls = gateway.calls

    results = gateway.create_payments(
        [draft(paid, "100.00", reference="AT 6001"), draft(over, "50.01"), draft(draft_id, "10.00"),
         draft(fine, "30.00", reference="part")],
        idempotency_key="payments-1")

    assert gateway.calls == calls + 1  # one PUT for the whole batch
    assert [type(r) for r in results] == [PaymentWritten] * 4
    assert [r.ok for r in results] == [True, False, False, True]
    assert [r.draft.invoice_id for r in results] == [paid, over, draft_id, fine]
    first, too_much, not_authorised, part = results
    assert "exceeds the amount outstanding" in too_much.errors[0] and too_much.payment is None
    assert "AUTHORISED" in not_authorised.errors[0] and not_authorised.payment is None
    assert isinstance(first.payment, XeroPayment)
    assert (first.payment.invoice_id, first.payment.amount, first.payment.date) == (paid, Decimal("100.00"), date(2026, 11, 23))
    assert (first.payment.status, first.payment.payment_type, first.payment.account_code) == ("AUTHORISED", "ACCRECPAYMENT", BANK)
    assert first.payment.reference == "AT 6001" and first.payment.invoice_number == "PAY-0"
    assert part.payment.amount == Decimal("30.00")
    # Only the two good payments exist; the refused invoices are untouched.
    assert {p["TargetID"] for p in xw.org.payments.values()} == {paid, fine}
    assert xw.org.invoices[over]["AmountDue"] == Decimal("50.00")

    # The invoices' settlement, read back by id in one call, in plain types.
    before = gateway.calls
    docs = {d.id: d for d in gateway.find(INVOICE, ids=[paid, over, fine])}
    assert gateway.calls == before + 1
    assert docs[paid].status is Status.PAID and docs[paid].amount_due == Decimal("0.00")
    assert docs[paid].fully_paid_on_date == date(2026, 11, 23)
    assert [(a.kind, a.id, a.amount, a.date, a.reference) for a in docs[paid].allocations] == [
        ("payment", first.payment.id, Decimal("100.00"), date(2026, 11, 23), "AT 6001")]
    assert docs[fine].status is Status.AUTHORISED and docs[fine].amount_due == Decimal("50.00")
    assert docs[fine].fully_paid_on_date is None and docs[fine].amount_paid == Decimal("30.00")
    assert docs[over].allocations == ()


def test_refused_payment_elements_carry_has_validation_errors_on_the_wire(xw):
    gateway = xw.gateway()
    (invoice_id,) = invoices(gateway, "10.00")
    body = {"Payments": [{"Invoice": {"InvoiceID": invoice_id}, "Account": {"Code": BANK}, "Date": "2026-11-23",
                          "Amount": 99}]}
    answer = xw.raw("PUT", PAYMENTS + "?summarizeErrors=false", json=body)
    assert answer.status_code == 200
    (element,) = answer.json()["Payments"]
    assert element["HasValidationErrors"] is True and element["StatusAttributeString"] == "ERROR"
    assert "HasErrors" not in element
    # summarizeErrors=true: a 400 ValidationException whose element carries the same flag.
    refused = xw.raw("PUT", PAYMENTS, json=body)
    assert refused.status_code == 400 and refused.json()["Type"] == "ValidationException"
    assert refused.json()["Elements"][0]["HasValidationErrors"] is True


def test_refused_contact_elements_carry_has_validation_errors_and_deserialise(xw):
    gateway = xw.gateway()
    assert gateway.create_contacts([Contact(name="Twice Ltd")], idempotency_key="c-1")[0].ok
    ok, refused = gateway.create_contacts([Contact(name="Once Ltd"), Contact(name="Twice Ltd")], idempotency_key="c-2")
    assert ok.ok and not refused.ok and refused.errors
    assert refused.element.has_validation_errors is True
    assert str(refused.element.status_attribute_string).upper() == "ERROR"


# ---- Xero: reading payments back -----------------------------------------------------------------------
def test_find_payments_pages_past_one_page_and_honours_if_modified_since(xw):
    gateway = xw.gateway()
    ids = invoices(gateway, *["10.00"] * 7)
    first = gateway.create_payments([draft(i, "4.00") for i in ids[:5]], idempotency_key="p-1")
    assert all(r.ok for r in first)
    watermark = xw.clock.now() + timedelta(seconds=1)
    xw.clock.advance(60)
    later = gateway.create_payments([draft(i, "6.00") for i in ids[5:]], idempotency_key="p-2")
    assert all(r.ok for r in later)

    before = gateway.calls
    everything = gateway.find_payments(page_size=2)
    assert gateway.calls - before == 4  # pages of 2, 2, 2, 1
    assert len(everything) == 7 and len({p.id for p in everything}) == 7
    assert all(isinstance(p, XeroPayment) and p.status == "AUTHORISED" for p in everything)

    recent = gateway.find_payments(modified_since=watermark)
    assert sorted(p.id for p in recent) == sorted(r.payment.id for r in later)
    assert {p.invoice_id for p in gateway.find_payments(invoice_ids=[ids[0], ids[6]])} == {ids[0], ids[6]}
    with pytest.raises(ValueError, match="1000"):
        gateway.find_payments(page_size=1001)


def test_a_deleted_payment_comes_back_deleted_and_the_invoice_is_due_again(xw):
    gateway = xw.gateway()
    (invoice_id,) = invoices(gateway, "120.00")
    (made,) = gateway.create_payments([draft(invoice_id, "120.00")], idempotency_key="p-del")
    assert made.ok
    (paid,) = gateway.find(INVOICE, ids=[invoice_id])
    assert paid.status is Status.PAID and paid.amount_due == Decimal("0.00")

    watermark = xw.clock.now() + timedelta(seconds=1)
    xw.clock.advance(3600)
    deleted = gateway.delete_payment(made.payment.id, idempotency_key="del-1")
    assert deleted.ok and deleted.payment.status == "DELETED" and deleted.payment.deleted

    (changed,) = gateway.find_payments(modified_since=watermark)
    assert (changed.id, changed.status, changed.amount) == (made.payment.id, "DELETED", Decimal("120.00"))
    assert gateway.find_payments(statuses=["AUTHORISED"]) == []
    assert [p.id for p in gateway.find_payments(statuses=["DELETED"], invoice_ids=[invoice_id])] == [made.payment.id]
    # The invoice: due again, no longer paid, its deleted payment gone from its list, and changed since.
    (again,) = gateway.find(INVOICE, ids=[invoice_id], modified_since=watermark)
    assert again.status is Status.AUTHORISED and again.amount_due == Decimal("120.00")
    assert again.fully_paid_on_date is None and again.allocations == ()
    assert again.updated > paid.updated
    # Deleting twice is refused, not an exception.
    twice = gateway.delete_payment(made.payment.id, idempotency_key="del-2")
    assert not twice.ok and "already been deleted" in twice.errors[0]


def test_a_lost_answer_on_create_payments_is_outcome_unknown_and_the_payment_is_found(xw):
    gateway = xw.gateway()
    (invoice_id,) = invoices(gateway, "15.00")
    xw.sb.faults.script("lost_response", method="PUT", path_prefix=PAYMENTS, times=1)
    with pytest.raises(XeroOutcomeUnknown):
        gateway.create_payments([draft(invoice_id, "15.00")], idempotency_key="lost-1")
    (found,) = gateway.find_payments(invoice_ids=[invoice_id])
    assert found.amount == Decimal("15.00") and found.status == "AUTHORISED"


def test_unknown_xero_paths_answer_in_xeros_error_shape(xw):
    # Xero's 404 is one plain-text sentence, for an unknown path as for an unknown id.
    missing = xw.raw("GET", ACCOUNTING + "/NoSuchThing")
    assert (missing.status_code, missing.text) == (404, "The resource you're looking for cannot be found")
    wrong = xw.raw("DELETE", PAYMENTS)
    assert wrong.status_code == 405 and wrong.json()["Status"] == 405 and wrong.json()["Title"]
    unknown_payment = xw.raw("GET", PAYMENTS + "/00000000-0000-0000-0000-000000000000")
    assert (unknown_payment.status_code, unknown_payment.text) == (404, missing.text)


# ---- Autotask: invoice write-back -----------------------------------------------------------------------
@pytest.fixture
def autotask():
    sandbox = AutotaskSandbox(generate_data(seed=11, invoices=5))
    faults = FaultConfig()
    with serve(with_faults(autotask_app(sandbox), faults)) as server:
        cred = sandbox.credentials
        with AutotaskClient(username=cred.username, secret=cred.secret, integration_code=cred.integration_code,
                            zone_lookup_url=server.base_url + "/atservicesrest", sleep=lambda s: None) as client:
            yield sandbox, faults, client


def test_patch_paid_date_one_invoice_per_call_time_stripped(autotask):
    sandbox, _, client = autotask
    first, second = (r["id"] for r in sandbox.records("Invoices")[:2])
    client.get("Invoices", first)  # the zone lookup happens here
    before = client.calls
    results = client.update_invoices([
        {"id": first, "paidDate": datetime(2026, 11, 23, 17, 45, tzinfo=timezone.utc)},
        {"id": second, "paidDate": "2026-11-24T23:30:00Z", "webServiceDate": "2026-11-24T23:30:00Z"},
    ])
    assert results == [InvoiceUpdate(first, True), InvoiceUpdate(second, True)]
    assert client.calls - before == 2  # one PATCH per invoice
    assert client.get("Invoices", first)["paidDate"] == "2026-11-23T00:00:00.000Z"
    read = client.get("Invoices", second)
    assert read["paidDate"] == "2026-11-24T00:00:00.000Z"  # the date only, no zone shift
    assert read["webServiceDate"].startswith("2026-11-24T23:30:00")  # a timestamp keeps its time


def test_a_field_autotask_does_not_let_the_api_write_is_refused_alone(autotask):
    sandbox, _, client = autotask
    first, third = (r["id"] for r in sandbox.records("Invoices")[:2])
    results = client.update_invoices([
        {"id": first, "orderNumber": "PO-1"},
        {"id": 999_999, "paidDate": "2026-11-23"},
        {"id": third, "paidDate": "2026-11-23"},
    ])
    assert [r.ok for r in results] == [False, False, True]
    assert "read-only" in results[0].errors[0] and "orderNumber" in results[0].errors[0]
    assert "999999" in results[1].errors[0]
    assert client.get("Invoices", first)["orderNumber"] != "PO-1"
    assert client.get("Invoices", third)["paidDate"] == "2026-11-23T00:00:00.000Z"
    with pytest.raises(ValueError):
        client.update_invoices([{"paidDate": "2026-11-23"}])


@pytest.mark.parametrize("fault", ["lost_response", "503"])
def test_a_lost_answer_on_patch_is_outcome_unknown_naming_the_invoice(autotask, fault):
    sandbox, faults, client = autotask
    first, second, third = (r["id"] for r in sandbox.records("Invoices")[:3])
    client.get("Invoices", first)
    faults.script(fault, method="PATCH", path_prefix="/atservicesrest/v1.0/Invoices", times=1, after=1)
    with pytest.raises(AutotaskOutcomeUnknown) as caught:
        client.update_invoices([{"id": first, "paidDate": "2026-11-20"}, {"id": second, "paidDate": "2026-11-21"},
                                {"id": third, "paidDate": "2026-11-22"}])
    assert caught.value.record_id == second and caught.value.entity == "Invoices"
    assert caught.value.done == [InvoiceUpdate(first, True)]
    assert [k for k, _, _ in faults.log] == [fault]  # the write was sent once, never repeated
    # Re-reading decides: a lost response was applied, an injected 503 was not; the third was never sent.
    expected = "2026-11-21T00:00:00.000Z" if fault == "lost_response" else None
    assert client.get("Invoices", second)["paidDate"] == expected
    assert client.get("Invoices", third)["paidDate"] is None


def test_payment_responses_match_the_official_schemas_and_deserialise_with_the_sdk(xw):
    from sandbox.xero import spec
    from xero_python.accounting.models import Payments

    def problems(template: str, method: str, body) -> list[str]:
        return spec.schema_errors(spec.response_validator(template, method), body)

    gateway = xw.gateway()
    good, paid_off = invoices(gateway, "20.00", "5.00")
    body = {"Payments": [
        {"Invoice": {"InvoiceID": good}, "Account": {"Code": BANK}, "Date": "2026-11-23", "Amount": 20},
        {"Invoice": {"InvoiceID": paid_off}, "Account": {"Code": BANK}, "Date": "2026-11-23", "Amount": 6},
    ]}
    made = xw.raw("PUT", PAYMENTS + "?summarizeErrors=false", json=body)
    assert made.status_code == 200 and problems("/Payments", "put", made.json()) == []
    payment_id = made.json()["Payments"][0]["PaymentID"]
    deleted = xw.raw("POST", f"{PAYMENTS}/{payment_id}", json={"Status": "DELETED"})
    assert deleted.status_code == 200 and problems("/Payments/{PaymentID}", "post", deleted.json()) == []
    listed = xw.raw("GET", PAYMENTS + "?page=1&pageSize=1000")
    assert listed.status_code == 200 and problems("/Payments", "get", listed.json()) == []
    assert listed.json()["pagination"]["pageSize"] == 1000

    # The SDK's own deserialiser takes each answer, the refused element and the deleted payment included.
    for answer in (made, deleted, listed):
        models = gateway.api_client.deserialize(answer, "Payments", gateway.accounting.get_model_finder()).payments
        assert models and all(m.payment_id is not None or m.has_validation_errors for m in models)
    refused = gateway.api_client.deserialize(made, "Payments", gateway.accounting.get_model_finder()).payments[1]
    assert refused.has_validation_errors is True and refused.validation_errors[0].message
    assert isinstance(gateway.api_client.deserialize(listed, "Payments", gateway.accounting.get_model_finder()), Payments)

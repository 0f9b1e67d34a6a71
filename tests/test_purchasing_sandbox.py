"""Autotask purchasing over real HTTP: the sandbox's purchasing cases read through AutotaskClient with the
extract functions, planned by the pure core, and sent to the Xero simulator, which must compute the
same totals and keep to Xero's rules for bills (numbers not unique) and purchase orders (statuses)."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from clients.autotask import AutotaskClient
from core.bills import plan_bills, plan_purchase_orders
from core.documents import KeyKind, Status
from core.invoices import XeroReference
from core.mapping import load_mapping
from sandbox.autotask import catalog, generate_data
from sandbox.clock import ManualClock
from sandbox.stack import XERO_CLIENT_ID, SandboxStack
from sandbox.xero.seed import build_org
from sandbox.xero.serialise import dumps, loads
from tasks.extract_purchasing import RECEIVINGS, read_for_bills, read_for_purchase_orders

START = date(2026, 11, 1)          # the generator's first day with window_end 2026-11-30
WEB_URL = "https://ww5.autotask.net/"
DEMO = load_mapping(Path(__file__).resolve().parent.parent / "mappings" / "demo.yaml")


def day(offset: int) -> date:
    """A day of the sandbox's purchasing cases (sandbox/autotask/generator.py _purchasing_cases)."""
    return START + timedelta(days=offset)


@pytest.fixture(scope="module")
def stack():
    with SandboxStack(seed=7, invoices=40, window_end=date(2026, 11, 30)) as running:
        yield running


@pytest.fixture
def at(stack):
    cred = stack.autotask.credentials
    with AutotaskClient(username=cred.username, secret=cred.secret, integration_code=cred.integration_code,
                        zone_lookup_url=stack.autotask_url) as client:
        yield client


@pytest.fixture(scope="module")
def xero(stack):
    token = stack.xero.issue_tokens(XERO_CLIENT_ID, [stack.org.tenant_id])
    with httpx.Client(base_url=stack.xero_url + "/api.xro/2.0", timeout=10, headers={
            "Authorization": f"Bearer {token['access_token']}", "xero-tenant-id": stack.org.tenant_id,
            "Accept": "application/json"}) as client:
        def call(method: str, path: str, body=None):
            response = client.request(method, path, content=dumps(body) if body is not None else None,
                                      headers={"Content-Type": "application/json"} if body is not None else {})
            return response.status_code, loads(response.content)
        yield call


def xero_reference(stack) -> XeroReference:
    org = stack.org
    return XeroReference(
        account_codes=frozenset(a["Code"] for a in org.accounts.values() if a["Status"] == "ACTIVE"),
        tax_types={t: r["EffectiveRate"] for t, r in org.tax_rates.items() if r["Status"] == "ACTIVE"},
        currencies=frozenset(org.currencies), base_currency=org.base_currency)


def bills_of(extract, stack, mapping=DEMO):
    return {p.source_id: p for p in plan_bills(
        extract.purchase_orders, extract.items, extract.receivings, extract.vendors, extract.reference, mapping,
        xero_reference(stack), autotask_web_url=WEB_URL, other_receivings=extract.other_receivings,
        rejected=extract.rejected)}


# ---- reading -----------------------------------------------------------------------------------
def test_a_window_holding_half_a_vendor_invoice_reads_the_whole_bill(stack, at):
    # INV-88101 covers the laptops received on day 10 and the switches on day 11; the window is day 11.
    extract = read_for_bills(at, day(11), day(11))
    assert extract.api_calls <= 14
    assert not extract.rejected
    assert set(extract.receivings["id"]) == {59002, 59003}
    # Dicker Data's own INV-88101 (another supplier, the same number) is not part of Ingram's bill.
    assert 59008 not in set(extract.receivings["id"]) | set(extract.other_receivings["id"])
    # The purchase order's later delivery is read to place the freight, not billed now.
    assert set(extract.other_receivings["id"]) == {59006}
    assert set(extract.vendors["id"]) == {201}
    plans = bills_of(extract, stack)
    bill = plans["201:INV-88101"]
    assert bill.sendable and bill.natural_key_kind is KeyKind.CONTACT_NUMBER and bill.date == day(10)
    assert [l.source_line_id for l in bill.lines] == ["receiving:59002", "receiving:59003", "freight:7901"]


def test_a_later_delivery_of_the_same_order_does_not_carry_its_freight_again(stack, at):
    extract = read_for_bills(at, day(14), day(14))
    assert set(extract.receivings["id"]) == {59006}
    assert {59002, 59003} <= set(extract.other_receivings["id"])
    bill = bills_of(extract, stack)["201:INV-88342"]
    assert [l.source_line_id for l in bill.lines] == ["receiving:59006"]
    assert bill.total == D("3267.15")  # 2 x 1420.50 + 15 % GST


def test_the_whole_month_plans_every_case(stack, at):
    extract = read_for_bills(at, START, day(29))
    plans = bills_of(extract, stack)
    ingram, dicker = plans["201:INV-88101"], plans["202:INV-88101"]
    assert ingram.contact.number == "201" and dicker.contact.number == "202"  # one number, two suppliers
    usd = plans["203:PCI-2026-0412"]
    assert usd.currency_code == "USD" and usd.tax == D("0.00") and usd.sendable
    assert usd.lines[0].unit_amount == D("368.1250") and usd.lines[0].line_amount == D("1104.38")
    cancelled_after_a_delivery = plans["202:DD-55120"]
    assert cancelled_after_a_delivery.sendable and cancelled_after_a_delivery.lines[-1].source_line_id == "freight:7903"
    missing = plans["receiving:59007"]
    assert not missing.sendable and "receiving 59007" in missing.set_aside.reason
    assert "vendorInvoiceNumber" in missing.set_aside.reason
    assert all(p.url and "PurchaseOrderID=" in p.url for p in plans.values())
    assert sum(l.source_line_id.startswith("freight:7901") for p in plans.values() for l in p.lines) == 1


def test_revisits_read_bills_and_receivings_outside_the_window(stack, at):
    far = date(2030, 1, 1)
    extract = read_for_bills(at, far, far, revisit_ids=["201:INV-88342", "receiving:59007", 59001])
    assert set(extract.receivings["id"]) == {59006, 59007, 59001}
    plans = bills_of(extract, stack)
    assert set(plans) == {"201:INV-88342", "receiving:59007", "202:DD-55120"}
    # A revisit by number keeps to its supplier: Dicker Data's INV-88101 is not Ingram's INV-88342, and
    # Ingram's INV-88101 was not asked for.
    assert "201:INV-88101" not in plans


def test_purchase_orders_created_submitted_or_cancelled_in_the_window(stack, at):
    extract = read_for_purchase_orders(at, day(2), day(29))
    ids = set(extract.purchase_orders["id"])
    assert {7901, 7902, 7903, 7904, 7905, 7906, 7907} <= ids
    assert set(extract.vendors["id"]) >= {201, 202, 203}
    assert extract.reference["Picklists"]["PurchaseOrders.status"]
    # Cancelled since the window began, whatever the purchase order's date.
    late = set(read_for_purchase_orders(at, day(11), day(11)).purchase_orders["id"])
    assert 7903 in late and not late & {7901, 7902}  # 7902 was cancelled on day 6, before this window
    plans = {p.source_id: p for p in plan_purchase_orders(
        extract.purchase_orders, extract.items, extract.vendors, extract.reference, DEMO, xero_reference(stack),
        autotask_web_url=WEB_URL, rejected=extract.rejected)}
    assert plans["7902"].void and plans["7903"].void
    assert plans["7907"].status is Status.DRAFT and plans["7901"].status is Status.AUTHORISED
    assert plans["7901"].delivery_date == day(12) and plans["7904"].delivery_date == day(8)
    assert plans["7901"].natural_key == "PO2026B001" and plans["7901"].natural_key_kind is KeyKind.NUMBER


# ---- into the Xero simulator -------------------------------------------------------------------
def _contacts(xero, plans_or_vendors):
    """Xero contacts for the plans' suppliers (or for {ContactNumber: Name}): ContactNumber -> ContactID."""
    vendors = (plans_or_vendors if isinstance(plans_or_vendors, dict) else
               {p.contact.number: p.contact.name for p in plans_or_vendors if p.contact is not None})
    status, body = xero("POST", "/Contacts?summarizeErrors=false", {"Contacts": [
        {"Name": name, "ContactNumber": number} for number, name in sorted(vendors.items())]})
    assert status == 200, body
    return {c["ContactNumber"]: c["ContactID"] for c in body["Contacts"]}


def _lines(plan):
    return [{"Description": l.description, "Quantity": l.quantity, "UnitAmount": l.unit_amount,
             "AccountCode": l.account_code, "TaxType": l.tax_type} for l in plan.lines]


def test_xero_computes_the_planned_totals_of_every_bill(stack, at, xero):
    plans = [p for p in bills_of(read_for_bills(at, START, day(29)), stack).values() if p.sendable]
    contact_ids = _contacts(xero, plans)
    status, body = xero("PUT", "/Invoices?summarizeErrors=false&unitdp=4", {"Invoices": [{
        "Type": "ACCPAY", "Contact": {"ContactID": contact_ids[p.contact.number]}, "InvoiceNumber": p.number,
        "Date": p.date.isoformat(), "DueDate": p.due_date.isoformat(), "CurrencyCode": p.currency_code,
        "LineAmountTypes": p.line_amount_types, "Status": p.status.value, "Url": p.url, "LineItems": _lines(p),
    } for p in plans]})
    assert status == 200
    for plan, bill in zip(plans, body["Invoices"]):
        assert bill["StatusAttributeString"] == "OK", bill.get("ValidationErrors")
        assert (bill["Total"], bill["TotalTax"]) == (plan.total, plan.tax), plan.source_id
    # The same bill number at two suppliers: both kept, each found by its supplier and number.
    for number in ("201", "202"):
        status, found = xero("GET", f"/Invoices?InvoiceNumbers=INV-88101&ContactIDs={contact_ids[number]}")
        assert [i["Contact"]["ContactID"] for i in found["Invoices"]] == [contact_ids[number]]


def test_a_bill_cannot_carry_a_reference(stack, xero):
    status, body = xero("PUT", "/Invoices?summarizeErrors=false", {"Invoices": [{
        "Type": "ACCPAY", "Contact": {"Name": "Reference Test Supplier"}, "InvoiceNumber": "R-1",
        "Reference": "PO2026B001", "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 1,
                                                   "AccountCode": "300"}]}]})
    assert body["Invoices"][0]["StatusAttributeString"] == "ERROR"
    assert "Reference" in body["Invoices"][0]["ValidationErrors"][0]["Message"]


def test_purchase_orders_follow_xero_statuses(stack, at, xero):
    extract = read_for_purchase_orders(at, day(2), day(29))
    plans = [p for p in plan_purchase_orders(extract.purchase_orders, extract.items, extract.vendors,
                                             extract.reference, DEMO, xero_reference(stack)) if p.sendable]
    contact_ids = _contacts(xero, plans)
    status, body = xero("PUT", "/PurchaseOrders?summarizeErrors=false", {"PurchaseOrders": [{
        "Contact": {"ContactID": contact_ids[p.contact.number]}, "PurchaseOrderNumber": p.number,
        "Date": p.date.isoformat() if p.date else None, "CurrencyCode": p.currency_code,
        **({"DeliveryDate": p.delivery_date.isoformat()} if p.delivery_date else {}),
        "Status": p.status.value, "LineItems": _lines(p)} for p in plans]})
    assert status == 200
    created = {}
    for plan, order in zip(plans, body["PurchaseOrders"]):
        assert order["StatusAttributeString"] == "OK", order.get("ValidationErrors")
        assert (order["Total"], order["TotalTax"]) == (plan.total, plan.tax), plan.source_id
        created[plan.source_id] = order["PurchaseOrderID"]
    # A second purchase order with a number Xero holds is refused.
    status, body = xero("PUT", "/PurchaseOrders?summarizeErrors=false", {"PurchaseOrders": [{
        "Contact": {"ContactID": contact_ids["201"]}, "PurchaseOrderNumber": "PO2026B001",
        "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 1, "AccountCode": "300"}]}]})
    assert body["PurchaseOrders"][0]["ValidationErrors"][0]["Message"] == "Order number must be unique"

    def move(source_id, to):
        status, body = xero("POST", f"/PurchaseOrders/{created[source_id]}?summarizeErrors=false",
                            {"PurchaseOrders": [{"Status": to}]})
        order = body["PurchaseOrders"][0] if "PurchaseOrders" in body else body["Elements"][0]
        return order.get("Status") if not order.get("ValidationErrors") else None

    # DRAFT -> SUBMITTED -> AUTHORISED -> BILLED; a billed order cannot be deleted.
    assert [move("7907", s) for s in ("SUBMITTED", "AUTHORISED", "BILLED")] == ["SUBMITTED", "AUTHORISED", "BILLED"]
    assert move("7907", "DELETED") is None
    # An approved order that was not billed may be deleted (what a cancellation in Autotask does), for good.
    assert move("7901", "DELETED") == "DELETED"
    assert move("7901", "AUTHORISED") is None


def test_listing_purchase_orders_takes_only_the_parameters_xero_documents(xero):
    contact_ids = _contacts(xero, {"201": "Ingram Micro NZ", "202": "Dicker Data Ltd"})
    for number, status in (("LIST-1", "DRAFT"), ("LIST-2", "AUTHORISED")):
        code, body = xero("PUT", "/PurchaseOrders?summarizeErrors=false", {"PurchaseOrders": [{
            "Contact": {"ContactID": contact_ids["202"]}, "PurchaseOrderNumber": number, "Date": "2026-11-20",
            "Status": status, "LineItems": [{"Description": "x", "Quantity": 1, "UnitAmount": 1, "AccountCode": "300"}]}]})
        assert body["PurchaseOrders"][0]["StatusAttributeString"] == "OK"
    code, everything = xero("GET", "/PurchaseOrders")
    # GET /PurchaseOrders has no `where` and no ContactIDs: Xero ignores them, and so does the simulator.
    for query in ('where=PurchaseOrderNumber=="LIST-1"', f"ContactIDs={contact_ids['201']}"):
        code, body = xero("GET", f"/PurchaseOrders?{query}")
        assert code == 200 and len(body["PurchaseOrders"]) == len(everything["PurchaseOrders"]), query
    code, body = xero("GET", "/PurchaseOrders?Status=DRAFT&DateFrom=2026-11-20&DateTo=2026-11-20")
    assert [p["PurchaseOrderNumber"] for p in body["PurchaseOrders"]] == ["LIST-1"]
    # One purchase order by its number: the lookup after a lost answer.
    code, body = xero("GET", "/PurchaseOrders/LIST-2")
    assert code == 200 and body["PurchaseOrders"][0]["Status"] == "AUTHORISED"


def test_a_malformed_record_travels_in_the_extract_and_sets_its_bill_aside(stack, at):
    stack.autotask.insert(RECEIVINGS, {
        "id": 59901, "purchaseOrderItemID": 49001, "quantityNowReceiving": D("1.5"), "quantityPreviouslyReceived": 4,
        "receiveDate": "2031-01-05T02:00:00.000Z", "vendorInvoiceNumber": "INV-99001"})
    extract = read_for_bills(at, date(2031, 1, 5), date(2031, 1, 5))
    assert [r.record["id"] for r in extract.rejected.receivings] == [59901]
    assert extract.receivings.empty and not extract.receivings.attrs
    bill = bills_of(extract, stack)["201:INV-99001"]
    assert not bill.sendable
    assert "receiving 59901 cannot be read: quantityNowReceiving = 1.5 cannot be read: not a whole number" in bill.set_aside.reason


# ---- the generated data ------------------------------------------------------------------------
@pytest.mark.parametrize("seed, invoices", [(7, 40), (11, 400), (3, 8)])
def test_every_seed_has_the_purchasing_cases_joined_up(seed, invoices):
    data = generate_data(seed=seed, invoices=invoices)
    companies = {c["id"]: c for c in data["Companies"]}
    pos = {p["id"]: p for p in data["PurchaseOrders"]}
    items = {i["id"]: i for i in data["PurchaseOrderItems"]}
    assert {p["purchaseOrderNumber"] for p in pos.values()} >= {f"PO2026B00{n}" for n in range(1, 8)}
    assert all(companies[p["vendorID"]]["companyType"] == 7 for p in pos.values())  # vendors are Companies
    assert all(items[r["purchaseOrderItemID"]]["orderID"] in pos for r in data["PurchaseOrderItemReceiving"])
    foreign = companies[203]
    code = catalog.CURRENCIES[foreign["currencyID"]][0]
    assert code != "NZD" and code in build_org("Demo", "NZ", ManualClock()).currencies
    by_number = {p["purchaseOrderNumber"]: p for p in pos.values()}
    cancelled = [n for n, p in by_number.items() if p["status"] == 5 and n.startswith("PO2026B")]
    received = {items[r["purchaseOrderItemID"]]["orderID"] for r in data["PurchaseOrderItemReceiving"]}
    assert {by_number[n]["id"] in received for n in cancelled} == {True, False}  # with and without receivings
    assert any(r["vendorInvoiceNumber"] is None for r in data["PurchaseOrderItemReceiving"])
    assert any(i["productID"] is None for i in items.values())

"""The Xero Accounting simulator over real HTTP, through the real xero-python SDK where it matters.

Each rule is checked the way a sync would meet it: create, read back, and compare with what Xero
would have answered.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import httpx
import pytest
from xero_python.accounting import AccountingApi
from xero_python.accounting.models import (Account, Contact, Contacts, Invoice, Invoices, LineAmountTypes,
                                           LineItem, Payment, Payments)
from xero_python.api_client import ApiClient
from xero_python.api_client.configuration import Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import AccountingBadRequestException, NotFoundException

from sandbox.clock import ManualClock
from sandbox.serving import BackgroundServer
from sandbox.xero.app import create_app
from sandbox.xero.limits import XeroLimits
from sandbox.xero.serialise import dumps, loads
from sandbox.xero.state import XeroSandbox

CLIENT_ID = "accounting-tests-client"
CLIENT_SECRET = "accounting-tests-secret"
ACCOUNTING = "/api.xro/2.0"


@dataclass
class XeroHarness:
    """One running sandbox with an NZ and an AU organisation, an SDK client and a raw HTTP client."""

    sandbox: XeroSandbox
    clock: ManualClock
    server: BackgroundServer
    http: httpx.Client
    token: dict

    @property
    def nz(self):
        return self.sandbox.org_named("Kiwi IT Ltd")

    @property
    def au(self):
        return self.sandbox.org_named("Aussie MSP Pty Ltd")

    def api(self) -> AccountingApi:
        configuration = Configuration()
        # Set after construction: Configuration() hands back a copy of the first one ever made.
        configuration.oauth2_token = OAuth2Token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
        token = dict(self.token)
        client = ApiClient(configuration, oauth2_token_getter=lambda: token, oauth2_token_saver=lambda t: None)
        return AccountingApi(client, base_url=self.server.base_url + ACCOUNTING)

    def raw(self, method: str, path: str, org=None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token['access_token']}",
                   "xero-tenant-id": (org or self.nz).tenant_id, "Accept": "application/json",
                   **kwargs.pop("headers", {})}
        if "json" in kwargs:  # our encoder keeps Decimals exact (httpx's would refuse them)
            kwargs["content"] = dumps(kwargs.pop("json"))
            headers["Content-Type"] = "application/json"
        return self.http.request(method, ACCOUNTING + path, headers=headers, **kwargs)

    def json(self, method: str, path: str, org=None, **kwargs):
        response = self.raw(method, path, org, **kwargs)
        return response.status_code, loads(response.content)


def start_harness() -> XeroHarness:
    clock = ManualClock()
    sandbox = XeroSandbox(clock=clock, limits=XeroLimits(per_minute=100_000, per_day=1_000_000, concurrent=50,
                                                          app_per_minute=1_000_000))
    sandbox.add_org("Kiwi IT Ltd", "NZ")
    sandbox.add_org("Aussie MSP Pty Ltd", "AU", currencies=["NZD"])
    sandbox.register_app(CLIENT_ID, CLIENT_SECRET, ["http://127.0.0.1/callback"])
    token = sandbox.issue_tokens(CLIENT_ID, scopes=[
        "offline_access", "accounting.transactions", "accounting.contacts", "accounting.settings",
        "accounting.attachments"])
    server = BackgroundServer(create_app(sandbox)).start()
    return XeroHarness(sandbox, clock, server, httpx.Client(base_url=server.base_url, timeout=10), token)


@pytest.fixture(scope="module")
def xero():
    harness = start_harness()
    yield harness
    harness.http.close()
    harness.server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def line(description="Managed services", quantity="1", unit="100.00", account="200", **extra) -> dict:
    numbers = {k: Decimal(v) for k, v in extra.items() if k in ("TaxAmount", "DiscountRate", "DiscountAmount")}
    return {"Description": description, "Quantity": Decimal(quantity), "UnitAmount": Decimal(unit),
            "AccountCode": account, **extra, **numbers}


def invoice_body(contact_name=None, *lines, **fields) -> dict:
    return {"Type": "ACCREC", "Contact": {"Name": contact_name or unique("Customer")}, "Date": "2026-11-20",
            "DueDate": "2026-12-20", "LineItems": list(lines) or [line()], **fields}


def put_invoices(xero, *invoices, query="summarizeErrors=false", org=None, headers=None):
    return xero.json("PUT", f"/Invoices?{query}", org, json={"Invoices": list(invoices)}, headers=headers or {})


# --- invoices through the SDK --------------------------------------------------------------------

def test_sdk_creates_and_reads_back_an_invoice_with_exact_totals(xero):
    api = xero.api()
    tenant = xero.nz.tenant_id
    number = unique("AT")
    invoice = Invoice(
        type="ACCREC", contact=Contact(name=unique("Contoso")), date=date(2026, 11, 20), due_date=date(2026, 12, 20),
        invoice_number=number, reference="Ticket 42", line_amount_types=LineAmountTypes.EXCLUSIVE, status="AUTHORISED",
        line_items=[LineItem(description="Hours", quantity=3, unit_amount=Decimal("33.3333"), account_code="200",
                             tax_type="OUTPUT2")],
    )
    created = api.create_invoices(tenant, Invoices(invoices=[invoice]), summarize_errors=False, unitdp=4)
    result = created.invoices[0]
    assert result.status_attribute_string == "OK"
    assert result.invoice_number == number and result.status == "AUTHORISED"
    assert result.line_items[0].unit_amount == Decimal("33.3333")
    assert result.line_items[0].line_amount == Decimal("100.00")
    assert result.total_tax == Decimal("15.00") and result.total == Decimal("115.00")
    assert result.date == date(2026, 11, 20)

    fetched = api.get_invoice(tenant, result.invoice_id).invoices[0]
    assert fetched.line_items[0].unit_amount == Decimal("33.33")  # no unitdp: rounded to 2 dp
    assert fetched.total == Decimal("115.00") and fetched.amount_due == Decimal("115.00")
    assert fetched.contact.contact_id == result.contact.contact_id
    stored = xero.nz.invoices[result.invoice_id]
    assert stored["LineItems"][0]["UnitAmount"] == Decimal("33.3333")


def test_rounding_is_per_line_half_up_and_inclusive_differs_from_exclusive(xero):
    three_lines = [line(unit="33.3333"), line(unit="33.3333"), line(unit="33.3333")]
    status, body = put_invoices(xero, invoice_body(None, *three_lines), query="summarizeErrors=false&unitdp=4")
    exclusive = body["Invoices"][0]
    assert status == 200
    # each line 33.33 -> tax 5.00 (4.9995 rounds up), summed per line
    assert [l["LineAmount"] for l in exclusive["LineItems"]] == [Decimal("33.33")] * 3
    assert [l["TaxAmount"] for l in exclusive["LineItems"]] == [Decimal("5.00")] * 3
    assert (exclusive["SubTotal"], exclusive["TotalTax"], exclusive["Total"]) == (
        Decimal("99.99"), Decimal("15.00"), Decimal("114.99"))

    status, body = put_invoices(xero, invoice_body(None, line(unit="115.00"), line(unit="10.00"),
                                                   LineAmountTypes="Inclusive"))
    inclusive = body["Invoices"][0]
    # 115 incl. 15 % -> 15.00 tax; 10 incl. -> 1.30 (1.3043 rounded)
    assert [l["TaxAmount"] for l in inclusive["LineItems"]] == [Decimal("15.00"), Decimal("1.30")]
    assert (inclusive["SubTotal"], inclusive["TotalTax"], inclusive["Total"]) == (
        Decimal("108.70"), Decimal("16.30"), Decimal("125.00"))

    status, body = put_invoices(xero, invoice_body(None, line(unit="50.00"), LineAmountTypes="NoTax"))
    assert body["Invoices"][0]["TotalTax"] == Decimal("0.00") and body["Invoices"][0]["Total"] == Decimal("50.00")


def test_explicit_tax_amount_and_discount_and_unitdp(xero):
    status, body = put_invoices(xero, invoice_body(None, line(quantity="2", unit="10.005", TaxAmount="3.10"),
                                                   line(quantity="1", unit="200", DiscountRate="12.5")))
    first, second = body["Invoices"][0]["LineItems"]
    assert first["UnitAmount"] == Decimal("10.01") and first["LineAmount"] == Decimal("20.02")
    assert first["TaxAmount"] == Decimal("3.10")  # sent explicitly, used as given
    assert second["LineAmount"] == Decimal("175.00") and second["TaxAmount"] == Decimal("26.25")
    assert body["Invoices"][0]["Total"] == Decimal("224.37")


def test_half_failed_batch_reports_each_element_in_request_order(xero):
    number = unique("DUP")
    status, body = put_invoices(xero, invoice_body(None, InvoiceNumber=number))
    assert status == 200
    batch = [invoice_body(None, InvoiceNumber=unique("OK1")),
             invoice_body(None, InvoiceNumber=number),
             invoice_body(None, line(account="999"), InvoiceNumber=unique("BAD")),
             invoice_body(None, InvoiceNumber=unique("OK2"))]
    status, body = put_invoices(xero, *batch)
    assert status == 200
    results = body["Invoices"]
    assert [r["StatusAttributeString"] for r in results] == ["OK", "ERROR", "ERROR", "OK"]
    assert [r["InvoiceNumber"] for r in results] == [b["InvoiceNumber"] for b in batch]
    assert results[1]["ValidationErrors"] == [{"Message": "Invoice # must be unique."}]
    assert "Account code '999'" in results[2]["ValidationErrors"][0]["Message"]
    assert "InvoiceID" in results[0] and "InvoiceID" not in results[1]
    # the failed elements' auto-created contacts are rolled back with them
    assert xero.nz.contact_by_name(batch[2]["Contact"]["Name"]) is None
    assert xero.nz.contact_by_name(batch[0]["Contact"]["Name"]) is not None


def test_summarized_errors_fail_the_whole_batch_with_a_validation_exception(xero):
    good = invoice_body(None, InvoiceNumber=unique("ALL"))
    bad = invoice_body(None, line(account="466"))  # archived account
    status, body = put_invoices(xero, good, bad, query="")
    assert status == 400
    assert body["ErrorNumber"] == 10 and body["Type"] == "ValidationException"
    assert "archived" in body["Elements"][0]["ValidationErrors"][0]["Message"]
    assert xero.nz.invoice_by_number(good["InvoiceNumber"]) is None

    api = xero.api()
    with pytest.raises(AccountingBadRequestException) as refused:
        api.create_invoices(xero.nz.tenant_id, Invoices(invoices=[Invoice(
            type="ACCREC", contact=Contact(name="X"), line_items=[LineItem(description="d", quantity=1,
                                                                            unit_amount=1, account_code="999")])]))
    assert "Account code '999'" in refused.value.error_data["Elements"][0]["ValidationErrors"][0]["Message"]


@pytest.mark.parametrize("edit, message", [
    (lambda b: b["LineItems"][0].update(TaxType="INPUT2"), "The TaxType code 'INPUT2' cannot be used with account code '200'."),
    (lambda b: b["LineItems"][0].update(TaxType="NOPE"), "The TaxType code 'NOPE' does not exist"),
    (lambda b: b["LineItems"][0].update(AccountCode="090"), "Account code '090' is not a valid code for this document."),
    (lambda b: b["LineItems"][0].update(AccountCode="610"), "Account code '610' is not a valid code for this document."),
    (lambda b: b.update(CurrencyCode="EUR"), "Organisation is not subscribed to currency EUR"),
    (lambda b: b["LineItems"][0].update(Description="x" * 4001), "no more than 4000 characters"),
    (lambda b: b["LineItems"][0].update(Description=""), "The description field is mandatory for each line item."),
    (lambda b: b.update(Contact={}), "The Contact must contain at least 1 of the following elements"),
    (lambda b: b.update(Type="ACCPAY", Reference="R1"), "Reference can only be set on ACCREC invoices"),
    (lambda b: b["LineItems"][0].update(Tracking=[{"Name": "Region", "Option": "Atlantis"}]), "'Atlantis' does not exist"),
    (lambda b: b["LineItems"][0].update(Tracking=[{"Name": "Department", "Option": "Legacy Support"}]), "is archived"),
    (lambda b: b["LineItems"][0].update(Tracking=[{"Name": "Region", "Option": "North"}, {"Name": "Department", "Option": "Projects"},
                                                  {"Name": "Region", "Option": "South"}]), "at most 2 tracking categories"),
    (lambda b: b.update(Status="VOIDED"), "when it is created"),
])
def test_business_rules_refuse_with_xeros_wording(xero, edit, message):
    body = invoice_body()
    edit(body)
    status, answer = put_invoices(xero, body)
    assert status == 200
    element = answer["Invoices"][0]
    assert element["StatusAttributeString"] == "ERROR"
    assert any(message in error["Message"] for error in element["ValidationErrors"]), element["ValidationErrors"]


def test_tracking_by_name_and_by_id_is_stored_with_both(xero):
    region = next(c for c in xero.nz.tracking_categories.values() if c["Name"] == "Region")
    south = next(o for o in region["Options"] if o["Name"] == "South")
    status, body = put_invoices(xero, invoice_body(None, line(Tracking=[
        {"TrackingCategoryID": region["TrackingCategoryID"], "TrackingOptionID": south["TrackingOptionID"]},
        {"Name": "department", "Option": "projects"}])))
    tracking = body["Invoices"][0]["LineItems"][0]["Tracking"]
    assert [(t["Name"], t["Option"]) for t in tracking] == [("Region", "South"), ("Department", "Projects")]


def test_auto_numbering_and_post_updates_by_invoice_number(xero):
    status, body = put_invoices(xero, invoice_body(), invoice_body())
    first, second = (i["InvoiceNumber"] for i in body["Invoices"])
    assert first.startswith("INV-") and second.startswith("INV-") and first != second

    number = unique("UPS")
    put_invoices(xero, invoice_body(None, line(unit="10"), line(unit="20"), InvoiceNumber=number))
    status, body = xero.json("POST", "/Invoices?summarizeErrors=false", json={"Invoices": [
        {"Type": "ACCREC", "InvoiceNumber": number, "LineItems": [line(unit="7")]}]})
    updated = body["Invoices"][0]
    assert updated["StatusAttributeString"] == "OK"
    assert len(updated["LineItems"]) == 1 and updated["Total"] == Decimal("8.05")  # lines replaced
    assert len([i for i in xero.nz.invoices.values() if i.get("InvoiceNumber") == number]) == 1

    bill_number = unique("SUPP")
    for _ in range(2):  # ACCPAY numbers are the supplier's: not unique, POST without an id creates
        status, body = xero.json("POST", "/Invoices?summarizeErrors=false", json={"Invoices": [
            invoice_body("Supplier Co", line(account="400"), Type="ACCPAY", InvoiceNumber=bill_number)]})
        assert body["Invoices"][0]["StatusAttributeString"] == "OK"
    assert len([i for i in xero.nz.invoices.values() if i.get("InvoiceNumber") == bill_number]) == 2


def test_line_items_keep_their_ids_when_sent_back(xero):
    status, body = put_invoices(xero, invoice_body(None, line(unit="10"), line(unit="20")))
    created = body["Invoices"][0]
    kept = created["LineItems"][0]["LineItemID"]
    status, body = xero.json("POST", f"/Invoices/{created['InvoiceID']}", json={"Invoices": [
        {"LineItems": [{"LineItemID": kept, "Quantity": 2}]}]})
    assert status == 200
    lines = body["Invoices"][0]["LineItems"]
    assert [l["LineItemID"] for l in lines] == [kept] and lines[0]["LineAmount"] == Decimal("20.00")


def test_status_transitions(xero):
    def create(status):
        _, body = put_invoices(xero, invoice_body(None, Status=status))
        return body["Invoices"][0]["InvoiceID"]

    def change(invoice_id, status):
        return xero.json("POST", f"/Invoices/{invoice_id}", json={"Invoices": [{"Status": status}]})

    draft = create("DRAFT")
    assert change(draft, "SUBMITTED")[1]["Invoices"][0]["Status"] == "SUBMITTED"
    assert change(draft, "DELETED")[1]["Invoices"][0]["Status"] == "DELETED"
    status, body = change(draft, "AUTHORISED")
    assert status == 400 and "DELETED" in body["Elements"][0]["ValidationErrors"][0]["Message"]

    approved = create("AUTHORISED")
    status, body = change(approved, "DELETED")
    assert status == 400 and "void it instead" in body["Elements"][0]["ValidationErrors"][0]["Message"]
    status, body = change(approved, "DRAFT")
    assert status == 400
    assert change(approved, "VOIDED")[1]["Invoices"][0]["Status"] == "VOIDED"
    status, body = change(approved, "AUTHORISED")
    assert status == 400

    assert xero.raw("POST", f"/Invoices/{uuid.uuid4()}", json={"Invoices": [{"Status": "DELETED"}]}).status_code == 404


def test_lock_dates_refuse_posted_documents_in_the_locked_period(xero):
    org = xero.au
    org.period_lock_date = date(2026, 10, 31)
    try:
        status, body = put_invoices(xero, invoice_body(None, Date="2026-10-15", Status="AUTHORISED"), org=org)
        assert body["Invoices"][0]["ValidationErrors"][0]["Message"] == (
            "The document date cannot be before the period lock date, currently set at 31 October 2026.")
        # a draft may sit in a locked period until it is approved
        status, body = put_invoices(xero, invoice_body(None, Date="2026-10-15"), org=org)
        assert body["Invoices"][0]["StatusAttributeString"] == "OK"
        org.end_of_year_lock_date = date(2026, 6, 30)
        status, body = put_invoices(xero, invoice_body(None, Date="2026-06-30", Status="AUTHORISED"), org=org)
        assert "end of year lock date, currently set at 30 June 2026" in body["Invoices"][0]["ValidationErrors"][0]["Message"]
        status, body = put_invoices(xero, invoice_body(None, Date="2026-11-01", Status="AUTHORISED"), org=org)
        assert body["Invoices"][0]["StatusAttributeString"] == "OK"
    finally:
        org.period_lock_date = None
        org.end_of_year_lock_date = None


def test_foreign_currency_needs_a_subscription(xero):
    status, body = put_invoices(xero, invoice_body(None, CurrencyCode="USD", CurrencyRate=Decimal("0.612345")))
    assert body["Invoices"][0]["CurrencyCode"] == "USD" and body["Invoices"][0]["CurrencyRate"] == Decimal("0.612345")
    status, body = put_invoices(xero, invoice_body(None, CurrencyCode="USD"), org=xero.au)
    assert body["Invoices"][0]["ValidationErrors"][0]["Message"] == "Organisation is not subscribed to currency USD"


# --- idempotency --------------------------------------------------------------------------------------

def test_idempotency_key_replays_within_six_minutes_and_refuses_reuse(xero):
    key = {"Idempotency-Key": unique("key")}
    body = invoice_body(None, InvoiceNumber=unique("IDEM"))
    first = put_invoices(xero, body, headers=key)
    again = put_invoices(xero, body, headers=key)
    assert first == again
    assert len([i for i in xero.nz.invoices.values() if i.get("InvoiceNumber") == body["InvoiceNumber"]]) == 1

    status, refused = put_invoices(xero, dict(body, Reference="changed"), headers=key)
    assert status == 400 and "is used with a different request" in refused["Message"]

    # errors are replayed too, even after the cause is gone
    bad_key = {"Idempotency-Key": unique("key")}
    bad = invoice_body(None, CurrencyCode="EUR")
    assert put_invoices(xero, bad, query="", headers=bad_key)[0] == 400
    xero.nz.currencies["EUR"] = {"Code": "EUR", "Description": "Euro"}
    try:
        assert put_invoices(xero, bad, query="", headers=bad_key)[0] == 400
        xero.clock.advance(6 * 60 + 1)
        status, body_after = put_invoices(xero, bad, query="", headers=bad_key)
        assert status == 200 and body_after["Invoices"][0]["CurrencyCode"] == "EUR"
    finally:
        del xero.nz.currencies["EUR"]


# --- reading: paging, filters, If-Modified-Since ----------------------------------------------------

def test_paging_where_filters_and_if_modified_since(xero):
    org = xero.au
    contact_number = unique("AT-CO")
    status, body = xero.json("PUT", "/Contacts", org, json={"Contacts": [{"Name": unique("Paged Co"),
                                                                            "ContactNumber": contact_number}]})
    contact_id = body["Contacts"][0]["ContactID"]
    xero.clock.advance(60)
    since = xero.clock.now()
    numbers = [unique("PG") for _ in range(7)]
    for number in numbers:
        put_invoices(xero, invoice_body(None, line(account="200"), InvoiceNumber=number,
                                        Contact={"ContactID": contact_id}, Status="AUTHORISED"), org=org)
    status, page1 = xero.json("GET", f'/Invoices?page=1&pageSize=3&where=Contact.ContactNumber=="{contact_number}"', org)
    assert page1["pagination"] == {"page": 1, "pageSize": 3, "pageCount": 3, "itemCount": 7}
    assert [i["InvoiceNumber"] for i in page1["Invoices"]] == numbers[:3]
    assert page1["Invoices"][0]["LineItems"]
    status, page3 = xero.json("GET", f'/Invoices?page=3&pageSize=3&where=Contact.ContactNumber=="{contact_number}"', org)
    assert [i["InvoiceNumber"] for i in page3["Invoices"]] == numbers[6:]

    status, unpaged = xero.json("GET", f"/Invoices?ContactIDs={contact_id}", org)
    assert len(unpaged["Invoices"]) == 7 and "LineItems" not in unpaged["Invoices"][0] and "pagination" not in unpaged

    status, by_number = xero.json("GET", f'/Invoices?where=InvoiceNumber=="{numbers[2]}"', org)
    assert [i["InvoiceNumber"] for i in by_number["Invoices"]] == [numbers[2]]
    status, listed = xero.json("GET", f"/Invoices?InvoiceNumbers={numbers[0]},{numbers[1]}&Statuses=AUTHORISED", org)
    assert sorted(i["InvoiceNumber"] for i in listed["Invoices"]) == sorted(numbers[:2])
    status, typed = xero.json("GET", f'/Invoices?where=Type=="ACCREC" AND Status=="AUTHORISED" AND Contact.ContactID==guid("{contact_id}")', org)
    assert len(typed["Invoices"]) == 7
    status, ordered = xero.json("GET", f"/Invoices?ContactIDs={contact_id}&order=InvoiceNumber DESC", org)
    assert [i["InvoiceNumber"] for i in ordered["Invoices"]] == sorted(numbers, reverse=True)

    api = xero.api()
    modified = api.get_invoices(org.tenant_id, if_modified_since=since, page=1, page_size=100)
    assert {i.invoice_number for i in modified.invoices} >= set(numbers)
    xero.clock.advance(60)
    later = xero.clock.now()
    xero.json("POST", "/Invoices", org, json={"Invoices": [{"Type": "ACCREC", "InvoiceNumber": numbers[4],
                                                             "Url": "https://psa.example/t/4"}]})
    modified = api.get_invoices(org.tenant_id, if_modified_since=later)
    assert [i.invoice_number for i in modified.invoices] == [numbers[4]]

    status, refused = xero.json("GET", '/Invoices?where=Status=="AUTHORISED" AND (', org)
    assert status == 400


# --- contacts -----------------------------------------------------------------------------------------

def test_contacts_unique_name_and_number_and_lookup(xero):
    api = xero.api()
    tenant = xero.nz.tenant_id
    name, number = unique("Globex"), unique("AT-42")
    created = api.create_contacts(tenant, Contacts(contacts=[Contact(name=name, contact_number=number,
                                                                     email_address="ap@globex.example")]),
                                  summarize_errors=False).contacts[0]
    assert created.status_attribute_string == "OK" and created.contact_id

    duplicate = api.create_contacts(tenant, Contacts(contacts=[
        Contact(name=name.upper()), Contact(name=unique("Other"), contact_number=number)]), summarize_errors=False)
    assert duplicate.contacts[0].validation_errors[0].message == (
        f"The contact name {name.upper()} is already assigned to another contact. "
        "The contact name must be unique across all active contacts.")
    assert duplicate.contacts[1].validation_errors[0].message == (
        f"The contact number {number} is already assigned to another contact.")

    found = api.get_contacts(tenant, where=f'ContactNumber=="{number}"').contacts
    assert [c.contact_id for c in found] == [created.contact_id]
    assert [c.contact_id for c in api.get_contacts(tenant, where=f'Name=="{name.lower()}"').contacts] == [created.contact_id]
    assert [c.contact_id for c in api.get_contacts(tenant, i_ds=[created.contact_id]).contacts] == [created.contact_id]
    assert [c.contact_id for c in api.get_contacts(tenant, search_term=number[-8:]).contacts] == [created.contact_id]

    # POST matches by ContactNumber and updates
    updated = api.update_or_create_contacts(tenant, Contacts(contacts=[Contact(contact_number=number, name=name,
                                                                               first_name="Hank")]),
                                            summarize_errors=False).contacts[0]
    assert updated.contact_id == created.contact_id and updated.first_name == "Hank"
    archived = api.update_contact(tenant, created.contact_id, Contacts(contacts=[Contact(
        contact_id=created.contact_id, contact_status="ARCHIVED")])).contacts[0]
    assert archived.contact_status == "ARCHIVED"
    assert api.get_contacts(tenant, i_ds=[created.contact_id]).contacts == []
    assert len(api.get_contacts(tenant, i_ds=[created.contact_id], include_archived=True).contacts) == 1
    # an archived contact's name is free again
    again = api.create_contacts(tenant, Contacts(contacts=[Contact(name=name)]), summarize_errors=False).contacts[0]
    assert again.status_attribute_string == "OK"
    assert api.get_contact(tenant, again.contact_id).contacts[0].name == name
    with pytest.raises(NotFoundException):
        api.get_contact(tenant, str(uuid.uuid4()))


def test_invoice_with_unknown_contact_name_creates_the_contact(xero):
    name = unique("Walk-in")
    status, body = put_invoices(xero, invoice_body(name))
    contact = xero.nz.contact_by_name(name)
    assert contact is not None and body["Invoices"][0]["Contact"]["ContactID"] == contact["ContactID"]
    status, body = put_invoices(xero, invoice_body(name.lower()))
    assert body["Invoices"][0]["Contact"]["ContactID"] == contact["ContactID"]


# --- payments --------------------------------------------------------------------------------------------

def test_payments_settle_invoices_and_deleting_restores_the_amount_due(xero):
    api = xero.api()
    tenant = xero.nz.tenant_id
    _, body = put_invoices(xero, invoice_body(None, line(unit="100.00"), Status="AUTHORISED"))
    invoice_id = body["Invoices"][0]["InvoiceID"]
    _, draft = put_invoices(xero, invoice_body())
    draft_id = draft["Invoices"][0]["InvoiceID"]

    results = api.create_payments(tenant, Payments(payments=[
        Payment(invoice=Invoice(invoice_id=invoice_id), account=Account(code="090"), date=date(2026, 11, 25),
                amount=Decimal("15.00"), reference="part"),
        Payment(invoice=Invoice(invoice_id=invoice_id), account=Account(code="090"), date=date(2026, 11, 25),
                amount=Decimal("200.00")),
        Payment(invoice=Invoice(invoice_id=draft_id), account=Account(code="090"), amount=Decimal("1.00")),
        Payment(invoice=Invoice(invoice_id=invoice_id), account=Account(code="200"), amount=Decimal("1.00")),
    ]), summarize_errors=False).payments
    assert [p.status_attribute_string for p in results] == ["OK", "ERROR", "ERROR", "ERROR"]
    assert results[1].validation_errors[0].message == "Payment amount exceeds the amount outstanding on this document"
    assert "AUTHORISED" in results[2].validation_errors[0].message
    assert results[0].payment_type == "ACCRECPAYMENT" and results[0].account.code == "090"
    assert api.get_invoice(tenant, invoice_id).invoices[0].amount_due == Decimal("100.00")

    rest = api.create_payment(tenant, Payment(invoice=Invoice(invoice_id=invoice_id), account=Account(code="091"),
                                              date=date(2026, 11, 26), amount=Decimal("100.00"))).payments[0]
    paid = api.get_invoice(tenant, invoice_id).invoices[0]
    assert paid.status == "PAID" and paid.amount_due == Decimal("0.00") and paid.amount_paid == Decimal("115.00")
    assert paid.fully_paid_on_date == date(2026, 11, 26) and len(paid.payments) == 2
    # A read by ids shows the payments without the lines; a summary (Xero: no "computation-heavy" fields)
    # is taken at its narrowest: its status and amounts, no settlements and no lines.
    status, by_ids = xero.json("GET", f"/Invoices?IDs={invoice_id}")
    assert status == 200 and len(by_ids["Invoices"][0]["Payments"]) == 2 and "LineItems" not in by_ids["Invoices"][0]
    status, summaries = xero.json("GET", f"/Invoices?IDs={invoice_id}&summaryOnly=true&page=1&pageSize=1000")
    summary = summaries["Invoices"][0]
    assert status == 200 and summary["Status"] == "PAID" and summary["AmountPaid"] == 115
    assert not {"Payments", "CreditNotes", "LineItems", "Url"} & set(summary)

    status, voiding = xero.json("POST", f"/Invoices/{invoice_id}", json={"Invoices": [{"Status": "VOIDED"}]})
    assert status == 400

    from xero_python.accounting.models import PaymentDelete
    deleted = api.delete_payment(tenant, rest.payment_id, PaymentDelete(status="DELETED")).payments[0]
    assert deleted.status == "DELETED"
    reopened = api.get_invoice(tenant, invoice_id).invoices[0]
    assert reopened.status == "AUTHORISED" and reopened.amount_due == Decimal("100.00")

    listed = api.get_payments(tenant, where=f'Invoice.InvoiceID==guid("{invoice_id}")', page=1).payments
    assert sorted((p.amount, p.status) for p in listed) == [(Decimal("15.00"), "AUTHORISED"), (Decimal("100.00"), "DELETED")]
    assert api.get_payment(tenant, rest.payment_id).payments[0].status == "DELETED"


def test_sent_to_contact_is_kept_on_approved_invoices_only_and_read_only_on_credit_notes(xero):
    status, body = put_invoices(xero, invoice_body(None, Status="AUTHORISED", SentToContact=True),
                                invoice_body(None, Status="DRAFT", SentToContact=True))
    approved, draft = body["Invoices"]
    assert status == 200 and [r["StatusAttributeString"] for r in body["Invoices"]] == ["OK", "OK"]
    assert approved["SentToContact"] is True and "Warnings" not in approved
    # a draft is written, without the flag, and Xero says why in the element's Warnings
    assert draft.get("SentToContact") is not True and draft["Status"] == "DRAFT"
    assert draft["Warnings"] == [{"Message": "Only AUTHORISED and PAID invoices may have SentToContact updated."}]
    assert xero.nz.invoices[draft["InvoiceID"]].get("SentToContact") is not True
    # the SDK reads the element, warnings included
    fetched = xero.api().get_invoice(xero.nz.tenant_id, approved["InvoiceID"]).invoices[0]
    assert fetched.sent_to_contact is True

    credit = {"Type": "ACCRECCREDIT", "Contact": {"Name": unique("Customer")}, "Date": "2026-11-20",
              "LineItems": [line()], "Status": "AUTHORISED", "SentToContact": True}
    status, body = xero.json("PUT", "/CreditNotes?summarizeErrors=false", json={"CreditNotes": [credit]})
    assert status == 200 and body["CreditNotes"][0]["StatusAttributeString"] == "OK"
    assert body["CreditNotes"][0].get("SentToContact") is not True  # read-only in the OpenAPI document

"""Conformance: every endpoint through the real xero-python SDK (so responses deserialise into its models),
responses checked against the official OpenAPI schemas, and schema-invalid bodies refused."""
from __future__ import annotations

import os
from datetime import date
from decimal import Decimal

import pytest
from xero_python.accounting.models import (Allocation, Allocations, Contact, CreditNote, CreditNotes, Invoice,
                                           Invoices, LineAmountTypes, LineItem, PurchaseOrder, PurchaseOrders)
from xero_python.exceptions import AccountingBadRequestException

from sandbox.xero import spec
from tests.test_xero_accounting import invoice_body, line, put_invoices, start_harness, unique


@pytest.fixture(scope="module")
def xero():
    harness = start_harness()
    yield harness
    harness.http.close()
    harness.server.stop()


def _schema_problems(path: str, method: str, body) -> list[str]:
    return spec.schema_errors(spec.response_validator(path, method), body)


def test_settings_endpoints_through_the_sdk(xero):
    api = xero.api()
    tenant = xero.nz.tenant_id
    accounts = api.get_accounts(tenant).accounts
    codes = {a.code: a for a in accounts}
    assert {"090", "091", "200", "260", "300", "310", "400", "610", "800"} <= set(codes)
    assert codes["090"].enable_payments_to_account and getattr(codes["466"].status, "value", codes["466"].status) == "ARCHIVED"
    assert [a.code for a in api.get_accounts(tenant, where='Type=="BANK" AND Status=="ACTIVE"').accounts] == ["090", "091"]
    assert api.get_account(tenant, codes["200"].account_id).accounts[0].name == "Sales"

    rates = {r.tax_type: r for r in api.get_tax_rates(tenant).tax_rates}
    assert rates["OUTPUT2"].effective_rate == Decimal("15") and {"INPUT2", "NONE", "ZERORATED", "EXEMPTOUTPUT"} <= set(rates)
    assert api.get_tax_rate_by_tax_type(tenant, "OUTPUT2").tax_rates[0].name == "15% GST on Income"

    categories = api.get_tracking_categories(tenant).tracking_categories
    assert sorted(c.name for c in categories) == ["Department", "Region"]
    department = next(c for c in categories if c.name == "Department")
    assert "Legacy Support" not in [o.name for o in department.options]
    everything = api.get_tracking_categories(tenant, include_archived=True).tracking_categories
    assert "Legacy Support" in [o.name for c in everything for o in c.options]
    assert api.get_tracking_category(tenant, department.tracking_category_id).tracking_categories[0].name == "Department"

    themes = api.get_branding_themes(tenant).branding_themes
    assert [(t.name, t.sort_order) for t in themes] == [("Standard", 0), ("Managed Services", 1)]
    assert api.get_branding_theme(tenant, themes[1].branding_theme_id).branding_themes[0].name == "Managed Services"
    assert [c.code.value for c in api.get_currencies(tenant).currencies] == ["NZD", "AUD", "GBP", "USD"]

    organisation = api.get_organisations(tenant).organisations[0]
    assert organisation.base_currency.value == "NZD" and organisation.country_code.value == "NZ"
    assert organisation.period_lock_date is None
    xero.nz.period_lock_date = date(2026, 9, 30)
    try:
        assert api.get_organisations(tenant).organisations[0].period_lock_date == date(2026, 9, 30)
    finally:
        xero.nz.period_lock_date = None
    actions = api.get_organisation_actions(tenant).actions
    assert ("UseMulticurrency", "ALLOWED") in [(a.name, a.status) for a in actions]

    au_rates = {r.tax_type for r in api.get_tax_rates(xero.au.tenant_id).tax_rates}
    assert {"OUTPUT", "INPUT", "EXEMPTOUTPUT", "BASEXCLUDED"} <= au_rates


def test_responses_match_the_official_response_schemas(xero):
    put_invoices(xero, invoice_body(None, InvoiceNumber=unique("SCH"), Status="AUTHORISED"))
    for path, template in [("/Invoices?page=1", "/Invoices"), ("/Contacts", "/Contacts"), ("/Accounts", "/Accounts"),
                           ("/TaxRates", "/TaxRates"), ("/TrackingCategories", "/TrackingCategories"),
                           ("/BrandingThemes", "/BrandingThemes"), ("/Currencies", "/Currencies"),
                           ("/Organisation", "/Organisation"), ("/Payments", "/Payments")]:
        status, body = xero.json("GET", path)
        assert status == 200
        assert _schema_problems(template, "get", body) == [], path
    status, body = put_invoices(xero, invoice_body(), invoice_body(None, CurrencyCode="EUR"))
    assert _schema_problems("/Invoices", "put", body) == []
    assert body["Invoices"][0]["DateString"] == "2026-11-20T00:00:00"
    assert body["Invoices"][0]["Date"] == "/Date(1795132800000+0000)/"  # 2026-11-20T00:00:00Z


@pytest.mark.parametrize("body, fragment", [
    ({"Invoices": [{"Type": "ACCREC", "LineAmountTypes": "Excl"}]}, "'Excl' is not one of"),
    ({"Invoices": [{"Type": "ACCREC", "Status": "APPROVED"}]}, "'APPROVED' is not one of"),
    ({"Invoices": [{"Type": "ACCREC", "LineItems": [{"Quantity": "three"}]}]}, "'three' is not of type 'number'"),
    ({"Invoices": {"Type": "ACCREC"}}, "is not of type 'array'"),
])
def test_schema_invalid_bodies_are_refused_before_any_rule(xero, body, fragment):
    before = len(xero.nz.invoices)
    status, answer = xero.json("PUT", "/Invoices?summarizeErrors=false", json=body)
    assert status == 400 and answer["Type"] == "ValidationException"
    assert "does not match the Xero Accounting API schema" in answer["Message"] and fragment in answer["Message"]
    assert len(xero.nz.invoices) == before
    status, answer = xero.json("PUT", "/Contacts", json={"Contacts": [{"Name": "x", "ContactStatus": "GONE"}]})
    assert status == 400 and "'GONE' is not one of" in answer["Message"]


def test_sdk_request_bodies_validate_against_the_schema():
    """What the SDK sends (with its read-only flags) is exactly what the simulator must accept."""
    from xero_python.api_client.serializer import serialize

    invoice = Invoice(type="ACCREC", contact=Contact(name="A"), date=date(2026, 1, 2),
                      line_amount_types=LineAmountTypes.INCLUSIVE,
                      line_items=[LineItem(description="d", quantity=1, unit_amount=Decimal("2.50"), account_code="200")])
    body = serialize(Invoices(invoices=[invoice]))
    assert body["Invoices"][0]["HasAttachments"] is False
    assert spec.request_errors("/Invoices", "put", body) == []


def test_invoice_pdf_and_attachments_through_the_sdk(xero):
    api = xero.api()
    tenant = xero.nz.tenant_id
    _, body = put_invoices(xero, invoice_body(None, InvoiceNumber=unique("PDF")))
    invoice_id = body["Invoices"][0]["InvoiceID"]
    pdf_path = api.get_invoice_as_pdf(tenant, invoice_id)
    with open(pdf_path, "rb") as handle:
        pdf = handle.read()
    os.remove(pdf_path)
    assert pdf.startswith(b"%PDF-") and body["Invoices"][0]["InvoiceNumber"].encode() in pdf

    stored = api.create_invoice_attachment_by_file_name(tenant, invoice_id, "timesheet 1.csv", b"a,b\n1,2\n",
                                                        include_online=True).attachments[0]
    assert stored.file_name == "timesheet 1.csv" and stored.content_length == 8 and stored.include_online
    replaced = api.update_invoice_attachment_by_file_name(tenant, invoice_id, "timesheet 1.csv", b"a,b\n3,4\n5,6\n")
    assert replaced.attachments[0].attachment_id == stored.attachment_id
    listed = api.get_invoice_attachments(tenant, invoice_id).attachments
    assert [(a.file_name, a.content_length) for a in listed] == [("timesheet 1.csv", 12)]
    downloaded = xero.raw("GET", f"/Invoices/{invoice_id}/Attachments/timesheet 1.csv")
    assert downloaded.content == b"a,b\n3,4\n5,6\n"
    assert api.get_invoice(tenant, invoice_id).invoices[0].has_attachments is True

    with pytest.raises(AccountingBadRequestException):
        api.create_invoice_attachment_by_file_name(tenant, invoice_id, "bad+name.txt", b"x")
    for n in range(9):
        api.create_invoice_attachment_by_file_name(tenant, invoice_id, f"file{n}.txt", b"x")
    with pytest.raises(AccountingBadRequestException) as too_many:
        api.create_invoice_attachment_by_file_name(tenant, invoice_id, "eleventh.txt", b"x")
    assert "at most 10 attachments" in too_many.value.error_data["Message"]
    xero.nz.max_attachment_bytes = 16
    try:
        too_big = xero.raw("PUT", f"/Invoices/{invoice_id}/Attachments/file0.txt", content=b"x" * 17)
        assert too_big.status_code == 413
    finally:
        xero.nz.max_attachment_bytes = 10 * 1024 * 1024


def test_credit_notes_and_allocations_through_the_sdk(xero):
    api = xero.api()
    tenant = xero.nz.tenant_id
    name = unique("Credit Co")
    _, body = put_invoices(xero, invoice_body(name, line(unit="100.00"), Status="AUTHORISED"))
    invoice = body["Invoices"][0]
    note = api.create_credit_notes(tenant, CreditNotes(credit_notes=[CreditNote(
        type="ACCRECCREDIT", contact=Contact(contact_id=invoice["Contact"]["ContactID"]), date=date(2026, 11, 21),
        status="AUTHORISED", line_amount_types=LineAmountTypes.EXCLUSIVE,
        line_items=[LineItem(description="Goodwill", quantity=1, unit_amount=Decimal("20.00"), account_code="200")])]),
        summarize_errors=False).credit_notes[0]
    assert note.credit_note_number.startswith("CN-") and note.total == Decimal("23.00")
    allocation = api.create_credit_note_allocation(tenant, note.credit_note_id, Allocations(allocations=[Allocation(
        invoice=Invoice(invoice_id=invoice["InvoiceID"]), amount=Decimal("23.00"), date=date(2026, 11, 22))]))
    assert allocation.allocations[0].amount == Decimal("23.00")
    credited = api.get_invoice(tenant, invoice["InvoiceID"]).invoices[0]
    assert credited.amount_credited == Decimal("23.00") and credited.amount_due == Decimal("92.00")
    fetched = api.get_credit_note(tenant, note.credit_note_id).credit_notes[0]
    assert fetched.status == "PAID" and fetched.remaining_credit == Decimal("0.00")
    assert any(c.credit_note_id == note.credit_note_id for c in api.get_credit_notes(tenant, page=1).credit_notes)
    with pytest.raises(AccountingBadRequestException):
        api.create_credit_note_allocation(tenant, note.credit_note_id, Allocations(allocations=[Allocation(
            invoice=Invoice(invoice_id=invoice["InvoiceID"]), amount=Decimal("1.00"), date=date(2026, 11, 22))]))


def test_purchase_orders_through_the_sdk(xero):
    api = xero.api()
    tenant = xero.nz.tenant_id
    supplier = xero.nz.contacts[put_invoices(xero, invoice_body(unique("Supplier")))[1]["Invoices"][0]["Contact"]["ContactID"]]
    number = unique("PO")
    order = PurchaseOrder(contact=Contact(contact_id=supplier["ContactID"]), date=date(2026, 11, 20),
                          delivery_date=date(2026, 12, 1), purchase_order_number=number, reference="Ticket 7",
                          line_items=[LineItem(description="Laptop", quantity=2, unit_amount=Decimal("1234.5678"),
                                               account_code="720")])
    created = api.create_purchase_orders(tenant, PurchaseOrders(purchase_orders=[order]),
                                         summarize_errors=False).purchase_orders[0]
    assert created.status_attribute_string == "OK"
    assert created.line_items[0].unit_amount == Decimal("1234.5678") and created.sub_total == Decimal("2469.14")
    duplicate = api.create_purchase_orders(tenant, PurchaseOrders(purchase_orders=[order]), summarize_errors=False)
    assert duplicate.purchase_orders[0].validation_errors[0].message == "Order number must be unique"
    stranger = api.create_purchase_orders(tenant, PurchaseOrders(purchase_orders=[PurchaseOrder(
        contact=Contact(name=unique("Nobody")), line_items=[LineItem(description="x", quantity=1, unit_amount=1)])]),
        summarize_errors=False).purchase_orders[0]
    assert stranger.status_attribute_string == "ERROR"
    approved = api.update_purchase_order(tenant, created.purchase_order_id, PurchaseOrders(purchase_orders=[
        PurchaseOrder(status="AUTHORISED")])).purchase_orders[0]
    assert approved.status == "AUTHORISED" and approved.delivery_date == date(2026, 12, 1)
    assert api.get_purchase_order(tenant, created.purchase_order_id).purchase_orders[0].purchase_order_number == number
    assert number in [p.purchase_order_number for p in api.get_purchase_orders(tenant, status="AUTHORISED").purchase_orders]

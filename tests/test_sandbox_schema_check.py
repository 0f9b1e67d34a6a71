"""The Xero simulator's compiled schema check is never looser than jsonschema on the official spec.

`certainly_valid` lets a request body skip jsonschema. If it ever said "valid" to a body jsonschema
refuses, the simulator would accept what Xero refuses, and the tests would stop seeing our mistakes. So real
bodies are mutated at random (a value replaced by any JSON value, a key dropped or added) and every
"valid" it gives must be jsonschema's verdict too; the real bodies themselves must take the fast path.
"""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.xero import spec
from sandbox.xero.serialise import dumps, loads

LINE = {"Description": "Managed services: November", "Quantity": 1.5, "UnitAmount": 120.0, "LineAmount": 180.0,
        "AccountCode": "200", "TaxType": "OUTPUT2", "TaxAmount": 27.0, "ItemCode": "MS-1",
        "Tracking": [{"Name": "Department", "Option": "Managed Services"}]}
CONTACT = {"ContactNumber": "29683", "Name": "Harbourside Dental", "IsCustomer": True, "EmailAddress": "a@b.nz",
           "Addresses": [{"AddressType": "POBOX", "AddressLine1": "1 Quay St", "City": "Auckland",
                          "PostalCode": "1010", "Country": "New Zealand"}],
           "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": "09 555 0100"}]}
BODIES = {
    "Invoices": {"Invoices": [
        {"Type": "ACCREC", "InvoiceNumber": "INV-10001", "Reference": "PO 4471", "Contact": {"ContactNumber": "29683"},
         "Date": "2026-11-02", "DueDate": "2026-11-20", "LineAmountTypes": "Exclusive", "Status": "AUTHORISED",
         "CurrencyCode": "NZD", "CurrencyRate": 1.0, "BrandingThemeID": "5d4b1a39-6f16-4f3a-9a52-3b1f1a2e6a10",
         "Url": "https://ww5.autotask.net/x", "LineItems": [LINE, {**LINE, "Tracking": []}]},
        {"Type": "ACCREC", "Contact": {"ContactID": "6c0a53e4-44de-45a4-8d0a-6bd0a0f7e3cf"}, "LineItems": [LINE],
         "Status": "DRAFT"}]},
    "CreditNotes": {"CreditNotes": [
        {"Type": "ACCRECCREDIT", "CreditNoteNumber": "CN-1", "Reference": "INV-10001", "Date": "2026-11-02",
         "Contact": {"ContactNumber": "29683"}, "LineAmountTypes": "Inclusive", "Status": "AUTHORISED",
         "LineItems": [LINE]}]},
    "Contacts": {"Contacts": [CONTACT, {"Name": "Kauri Legal", "ContactStatus": "ACTIVE"}]},
    "PurchaseOrders": {"PurchaseOrders": [
        {"PurchaseOrderNumber": "PO-7", "Contact": {"ContactNumber": "501"}, "Date": "2026-11-02",
         "DeliveryDate": "2026-11-09", "Status": "AUTHORISED", "LineItems": [LINE]}]},
    "Payments": {"Payments": [
        {"Invoice": {"InvoiceID": "6c0a53e4-44de-45a4-8d0a-6bd0a0f7e3cf"}, "Account": {"Code": "090"},
         "Date": "2026-11-21", "Amount": 207.0, "Reference": "AT payment 88"}]},
}
# As the simulator reads them: every JSON number with a fraction a Decimal.
BODIES = {name: loads(dumps(body)) for name, body in BODIES.items()}
REFS = {name: f"#/components/schemas/{name}" for name in BODIES}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=2)
    | st.text(max_size=5) | st.sampled_from(["ACCREC", "AUTHORISED", "Exclusive", "NZD", "x" * 5000]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["Name", "Type", "Quantity", "LineItems", "Tracking", "Status", "Other"]), children,
        max_size=3),
    max_leaves=6)


def _paths(value, here=()):
    yield here
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, here + (key,))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _paths(item, here + (n,))


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(BODIES)))
    body = copy.deepcopy(BODIES[name])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(body))))
        if not path:
            continue
        *parent_path, last = path
        parent = body
        for step in parent_path:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "drop", "add"]))
        if how == "replace":
            parent[last] = draw(json_values)
        elif how == "drop":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["Type", "Status", "Quantity", "Unknown", "LineItems", "Name"]))] = draw(json_values)
    return name, body


def _jsonschema_errors(name: str, body, skipped: frozenset[str]) -> list:
    validator = spec.component_validator(name)
    return [e for e in validator.iter_errors(body) if e.validator not in skipped]


@pytest.mark.parametrize("name", sorted(BODIES))
def test_real_bodies_take_the_fast_path(name):
    assert not _jsonschema_errors(name, BODIES[name], frozenset())
    assert spec.certainly_valid(REFS[name], BODIES[name])


@pytest.mark.parametrize("skipped", [frozenset(), frozenset({"maxLength"})])
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_never_valid_where_jsonschema_refuses(case, skipped):
    name, body = case
    if spec.certainly_valid(REFS[name], body, skipped):
        assert not _jsonschema_errors(name, body, skipped), body


def test_what_it_is_not_sure_of_goes_to_jsonschema():
    """The simulator still words every refusal: a bad enum and a wrong type reach jsonschema's messages."""
    body = copy.deepcopy(BODIES["Invoices"])
    body["Invoices"][0]["LineAmountTypes"] = "Excl"
    body["Invoices"][0]["LineItems"][0]["Quantity"] = "1.5"
    assert not spec.certainly_valid(REFS["Invoices"], body)
    problems = spec.request_errors("/Invoices", "PUT", body)
    assert any("Invoices.0.LineAmountTypes" in p and "'Excl'" in p for p in problems)
    assert any("Invoices.0.LineItems.0.Quantity" in p for p in problems)

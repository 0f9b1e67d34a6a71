"""The demo data generator: deterministic, swagger-faithful, and arithmetically exact."""
from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest

from sandbox.autotask import ENTITY_MODELS, catalog, generate_data, load_data, save_data, swagger_field_names
from sandbox.autotask.generator import TAX_ROUNDING_CASES

CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def data():
    return generate_data(seed=11, invoices=400, rounding_cases=True)


def test_same_seed_same_data_and_different_seed_differs():
    assert generate_data(seed=3, invoices=60) == generate_data(seed=3, invoices=60)
    assert generate_data(seed=3, invoices=60) != generate_data(seed=4, invoices=60)


def test_records_use_only_swagger_field_names(data):
    assert set(data) == set(ENTITY_MODELS)
    for entity, rows in data.items():
        allowed = swagger_field_names(entity)
        for row in rows:
            assert set(row) <= allowed, (entity, set(row) - allowed)


def test_every_invoice_reconciles_to_the_cent(data):
    taxes = {(t["taxRegionID"], t["taxCategoryID"]): t["taxRate"] for t in data["Taxes"]}
    companies = {c["id"]: c for c in data["Companies"]}
    codes = {b["id"]: b for b in data["BillingCodes"]}
    lines = defaultdict(list)
    for line in data["BillingItems"]:
        lines[line["invoiceID"]].append(line)
    for invoice in data["Invoices"]:
        items = lines[invoice["id"]]
        assert items, invoice["invoiceNumber"]
        company = companies[invoice["companyID"]]
        for line in items:
            assert isinstance(line["quantity"], Decimal) and isinstance(line["rate"], Decimal)
            assert line["extendedPrice"] == (line["quantity"] * line["rate"]).quantize(CENT, ROUND_HALF_UP)
            rate = Decimal(0) if company["isTaxExempt"] else \
                taxes[(company["taxRegionID"], codes[line["billingCodeID"]]["taxCategoryID"])]
            # the INV-R cases keep their tax to four decimals, as Autotask can
            places = Decimal("0.0001") if invoice["invoiceNumber"].startswith("INV-R") else CENT
            assert line["taxDollars"] == (line["extendedPrice"] * rate / 100).quantize(places, ROUND_HALF_UP)
            assert line["totalAmount"] == line["extendedPrice"] + line["taxDollars"]
        assert invoice["invoiceTotal"] == sum(line["totalAmount"] for line in items)
        assert invoice["totalTaxValue"] == sum(line["taxDollars"] for line in items)


def test_data_covers_the_hard_cases(data):
    lines = data["BillingItems"]
    assert {line["billingItemType"] for line in lines} == set(catalog.BILLING_ITEM_TYPES)
    assert any(line["quantity"] != line["quantity"].to_integral_value() for line in lines)
    assert any(line["rate"] != line["rate"].quantize(CENT) for line in lines)
    assert any(line["quantity"] < 0 and line["totalAmount"] < 0 for line in lines)
    assert any(line["quantity"] < 0 and line["totalAmount"] > 0 for line in lines)
    companies = data["Companies"]
    assert 8 <= sum(c["companyType"] == 1 for c in companies) <= 15
    assert any(c["companyType"] == 7 for c in companies)
    assert {c["taxRegionID"] for c in companies} == set(catalog.TAX_REGIONS)
    assert {c["currencyID"] for c in companies} == set(catalog.CURRENCIES)
    exempt = {c["id"] for c in companies if c["isTaxExempt"]}
    assert exempt and all(i["totalTaxValue"] == 0 for i in data["Invoices"] if i["companyID"] in exempt)
    assert any(i["companyID"] in exempt for i in data["Invoices"])
    assert sum(i["isVoided"] for i in data["Invoices"]) >= 2
    assert all(i["voidedDate"] for i in data["Invoices"] if i["isVoided"])
    assert any(i["orderNumber"] for i in data["Invoices"])
    assert all(i["invoiceTotal"] > 0 for i in data["Invoices"])  # credits are not invoices
    assert {t["taxRate"] for t in data["Taxes"]} >= {Decimal("15.0000"), Decimal("10.0000"), Decimal("20.0000"),
                                                      Decimal("0.0000")}
    primaries = [c for c in data["Contacts"] if c["primaryContact"]]
    assert {c["companyID"] for c in primaries} == {c["id"] for c in companies}
    assert all("@" in c["emailAddress"] for c in primaries)
    assert any(r["vendorInvoiceNumber"] for r in data["PurchaseOrderItemReceiving"])
    numbers = [i["invoiceNumber"] for i in data["Invoices"]]
    assert numbers[0] == "INV-10001" and len(set(numbers)) == len(numbers)


def test_invoice_dates_stay_in_the_window():
    generated = generate_data(seed=5, invoices=50, start=date(2026, 3, 1), days=10)
    days = {i["invoiceDateTime"][:10] for i in generated["Invoices"]}
    assert min(days) >= "2026-03-01" and max(days) <= "2026-03-10"


def test_large_data_set_and_round_trip_through_json(tmp_path):
    big = generate_data(seed=1, invoices=2000)
    assert len(big["Invoices"]) == 2000
    assert len(generate_data(seed=1, invoices=20, rounding_cases=True)["Invoices"]) == 20 + TAX_ROUNDING_CASES
    path = tmp_path / "autotask.json"
    save_data(big, path)
    assert load_data(path) == big

"""The Xero simulator's Items endpoint over HTTP, and what invoices whose lines name items meet."""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.test_xero_accounting import invoice_body, line, put_invoices, start_harness, unique


@pytest.fixture(scope="module")
def xero():
    harness = start_harness()
    yield harness
    harness.http.close()
    harness.server.stop()


def put_items(xero, *items, query="summarizeErrors=false", method="PUT"):
    return xero.json(method, f"/Items?{query}", json={"Items": list(items)})


def service(code, **extra) -> dict:
    return {"Code": code, "Name": f"Item {code}"[:50], "Description": "Remote support",
            "SalesDetails": {"UnitPrice": Decimal("150.00"), "AccountCode": "200", "TaxType": "OUTPUT2"}, **extra}


def messages(element) -> list[str]:
    return [e["Message"] for e in element.get("ValidationErrors", [])]


def test_items_are_created_read_by_id_and_by_code_and_listed(xero):
    code = unique("LAB")
    status, body = put_items(xero, service(code))
    assert status == 200
    created = body["Items"][0]
    assert created["StatusAttributeString"] == "OK" and created["Code"] == code
    assert created["IsSold"] is True and created["IsPurchased"] is True and created["IsTrackedAsInventory"] is False
    assert created["SalesDetails"] == {"UnitPrice": 150.0, "AccountCode": "200", "TaxType": "OUTPUT2"}

    status, by_id = xero.json("GET", f"/Items/{created['ItemID']}")
    assert status == 200 and by_id["Items"][0]["Code"] == code
    status, by_code = xero.json("GET", f"/Items/{code.lower()}")
    assert status == 200 and by_code["Items"][0]["ItemID"] == created["ItemID"]
    assert xero.raw("GET", "/Items/NO-SUCH-ITEM").status_code == 404

    status, listed = xero.json("GET", "/Items", params={"where": f'Code=="{code}"'})
    assert status == 200 and [i["ItemID"] for i in listed["Items"]] == [created["ItemID"]]
    xero.clock.advance(60)
    later = xero.clock.now()
    status, recent = xero.json("GET", "/Items", headers={"If-Modified-Since": later.strftime("%Y-%m-%dT%H:%M:%S")})
    assert created["ItemID"] not in [i["ItemID"] for i in recent["Items"]]


def test_codes_are_unique_without_regard_to_case_per_element(xero):
    code = unique("DUP")
    put_items(xero, service(code))
    status, body = put_items(xero, service(code.lower()), service(unique("NEW")))
    assert status == 200
    refused, accepted = body["Items"]
    assert refused["StatusAttributeString"] == "ERROR"
    assert messages(refused) == [f"Item code '{code.lower()}' already exists"]
    assert accepted["StatusAttributeString"] == "OK"

    # summarizeErrors (the default) refuses the whole batch and keeps nothing.
    fresh = unique("ALL")
    status, body = put_items(xero, service(fresh), service(code.upper()), query="")
    assert status == 400 and body["Type"] == "ValidationException"
    assert xero.nz.item_by_code(fresh) is None


def test_code_and_name_lengths_are_answered_per_element(xero):
    status, body = put_items(xero, service("C" * 31), service(unique("OK"), Name="N" * 51))
    assert status == 200
    too_long_code, too_long_name = body["Items"]
    assert messages(too_long_code) == ["The Code must not be more than 30 characters long."]
    assert messages(too_long_name) == ["The Name must not be more than 50 characters long."]


def test_sales_details_must_name_accounts_and_tax_types_xero_has(xero):
    status, body = put_items(xero, service(unique("BAD"), SalesDetails={"AccountCode": "999", "TaxType": "NOPE"}))
    assert messages(body["Items"][0]) == [
        "Account code '999' does not exist or cannot be applied to Items.",
        "The TaxType code 'NOPE' does not exist or cannot be used for this type of transaction."]


def test_tracked_items_need_an_inventory_account_and_cannot_be_services(xero):
    org = xero.nz
    inventory = {"AccountID": "inventory-account", "Code": "630", "Name": "Inventory", "Type": "INVENTORY",
                 "Status": "ACTIVE", "Class": "ASSET", "TaxType": "NONE"}
    org.accounts.setdefault("inventory-account", inventory)
    status, body = put_items(
        xero, service(unique("TRK"), IsTrackedAsInventory=True),
        service(unique("SVC"), IsTrackedAsInventory=True, IsPurchased=False, InventoryAssetAccountCode="630",
                PurchaseDetails={"COGSAccountCode": "310"}),
        service(unique("HW"), IsTrackedAsInventory=True, InventoryAssetAccountCode="630",
                PurchaseDetails={"COGSAccountCode": "310", "UnitPrice": Decimal("80")}))
    no_account, a_service, tracked = body["Items"]
    assert messages(no_account) == [
        "An InventoryAssetAccountCode is required to track an item as inventory.",
        "A COGSAccountCode in PurchaseDetails is required to track an item as inventory."]
    assert messages(a_service) == [
        "Only items that are both bought and sold can be tracked as inventory; a service item cannot be tracked."]
    assert tracked["StatusAttributeString"] == "OK" and tracked["IsTrackedAsInventory"] is True
    assert tracked["InventoryAssetAccountCode"] == "630"


def test_post_updates_an_item_by_code_and_creates_an_unknown_one(xero):
    code = unique("UPD")
    _, body = put_items(xero, service(code))
    item_id = body["Items"][0]["ItemID"]
    status, body = put_items(xero, {"Code": code, "Name": "Renamed"}, service(unique("UPS")), method="POST")
    assert status == 200
    updated, created = body["Items"]
    assert updated["ItemID"] == item_id and updated["Name"] == "Renamed"
    assert updated["SalesDetails"]["AccountCode"] == "200"
    assert created["StatusAttributeString"] == "OK" and created["ItemID"] != item_id


def test_invoice_lines_naming_an_unknown_item_are_refused_per_element(xero):
    code = unique("INV")
    put_items(xero, service(code))
    known = invoice_body(None, line(ItemCode=code.lower()))
    unknown = invoice_body(None, line(ItemCode="NO-SUCH"))
    status, body = put_invoices(xero, known, unknown)
    assert status == 200
    good, bad = body["Invoices"]
    assert good["StatusAttributeString"] == "OK" and good["LineItems"][0]["ItemCode"] == code
    assert bad["StatusAttributeString"] == "ERROR"
    assert "Item code 'NO-SUCH' is not valid" in messages(bad)


def test_a_line_leaving_fields_out_takes_them_from_its_item(xero):
    code = unique("DEF")
    put_items(xero, service(code))
    status, body = put_invoices(xero, invoice_body(None, {"ItemCode": code, "Quantity": Decimal("2")}))
    created = body["Invoices"][0]
    assert created["StatusAttributeString"] == "OK", created
    assert created["LineItems"][0]["Description"] == "Remote support"
    assert created["LineItems"][0]["AccountCode"] == "200" and created["LineItems"][0]["LineAmount"] == 300.0

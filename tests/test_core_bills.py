"""Autotask purchasing -> bill and purchase-order plans: the pure core, no network.

Every set-aside reason is checked against a record that really has that fault, and every other
document of the same call still goes through.
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_UP, Decimal as D


from core.bills import (
    PurchasingRejects, parse_bill_source_id, plan_bills, plan_purchase_orders, purchasing_frames,
)
from core.documents import Action, KeyKind, Status, XeroDocument, decide
from core.invoices import XeroReference
from core.mapping import InvoiceMapping

WEB = "https://ww5.autotask.net/"
REFERENCE = {
    "Products": [
        {"id": 31001, "name": "Dell Latitude 5550 Laptop", "sku": "DL-5550", "productBillingCodeID": 29682804},
        {"id": 31002, "name": "Ubiquiti UniFi Switch 24 PoE", "sku": "USW-24-POE", "productBillingCodeID": 29682804},
        {"id": 31004, "name": "Microsoft 365 Business Premium", "sku": "M365-BP", "productBillingCodeID": 29682805},
        {"id": 31009, "name": "Brand New Gadget", "sku": "NEW-1", "productBillingCodeID": 29682899},
    ],
    "TaxRegions": [{"id": 1, "name": "New Zealand GST"}, {"id": 4, "name": "Zero Rated Export"}],
    "Currencies": [{"id": 1, "name": "NZD", "isInternalCurrency": True}, {"id": 4, "name": "USD"},
                   {"id": 9, "name": "EUR"}],
    "PaymentTerms": [{"id": 5, "name": "Net 30", "paymentDueInDays": 30}, {"id": 7, "name": "Odd"}],
    "Picklists": {"PurchaseOrders.status": [
        {"value": "1", "label": "New"}, {"value": "2", "label": "Submitted"}, {"value": "3", "label": "Received Partial"},
        {"value": "4", "label": "Received Full"}, {"value": "5", "label": "Cancelled"}, {"value": "6", "label": "On Hold"}]},
}
XERO = XeroReference(
    account_codes=frozenset({"300", "310", "429", "485"}),
    tax_types={"INPUT2": D("15"), "NONE": D("0")},
    currencies=frozenset({"NZD", "USD"}), base_currency="NZD",
)


def mapping(**bills) -> InvoiceMapping:
    base = {
        "accounts": {"by_billing_code_id": {29682804: "300", 29682805: "485"}, "refuse_unmapped": True},
        "tax": {"by_region": {"New Zealand GST": "INPUT2"}, "tax_exempt": "NONE", "default": "INPUT2"},
        "freight": {"account_code": "310"},
        "lines": {"description_rules": [{"contains": "cable", "account_code": "300"}]},
    }
    for key, value in bills.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return InvoiceMapping.model_validate({"bills": base})


def vendor(vendor_id=201, name="Ingram Micro NZ", **fields) -> dict:
    return {"id": vendor_id, "companyName": name, "companyType": 7, "isTaxExempt": False, "taxRegionID": 1,
            "currencyID": 1, **fields}


def po(po_id=7901, vendor_id=201, number=None, *, status=4, freight="0.00", **fields) -> dict:
    return {"id": po_id, "purchaseOrderNumber": number or f"PO-{po_id}", "vendorID": vendor_id, "status": status,
            "createDateTime": "2026-11-02T21:30:00.000Z", "submitDateTime": "2026-11-03T01:30:00.000Z",
            "paymentTerm": 5, "taxRegionID": 1, "freight": D(freight), **fields}


def item(item_id, po_id=7901, product=31001, quantity=4, cost="1420.5000", memo=None) -> dict:
    return {"id": item_id, "orderID": po_id, "productID": product, "quantity": quantity, "unitCost": D(cost),
            "memo": memo}


def received(receiving_id, item_id, quantity, day, number) -> dict:
    return {"id": receiving_id, "purchaseOrderItemID": item_id, "quantityNowReceiving": quantity,
            "receiveDate": f"2026-11-{day:02d}T03:00:00.000Z", "vendorInvoiceNumber": number}


def bills(*, pos, items, receivings, vendors=None, other=(), the_mapping=None, xero=XERO, reference=REFERENCE,
          web=WEB):
    frames = purchasing_frames(purchase_orders=pos, items=items, receivings=receivings, other_receivings=other,
                               vendors=[vendor()] if vendors is None else vendors)
    plans = plan_bills(frames.purchase_orders, frames.items, frames.receivings, frames.vendors, reference,
                       the_mapping or mapping(), xero, autotask_web_url=web, other_receivings=frames.other_receivings,
                       rejected=frames.rejected)
    return {plan.source_id: plan for plan in plans}


def orders(*, pos, items, vendors=None, the_mapping=None, xero=XERO, reference=REFERENCE):
    frames = purchasing_frames(purchase_orders=pos, items=items, vendors=[vendor()] if vendors is None else vendors)
    plans = plan_purchase_orders(frames.purchase_orders, frames.items, frames.vendors, reference,
                                 the_mapping or mapping(), xero, autotask_web_url=WEB, rejected=frames.rejected)
    return {plan.source_id: plan for plan in plans}


def cents(value: D) -> D:
    return value.quantize(D("0.01"), rounding=ROUND_HALF_UP)


# Two partial deliveries of one purchase order, invoiced separately by the vendor.
PARTIAL = dict(
    pos=[po(freight="35.00")],
    items=[item(49001), item(49002, product=31002, quantity=2, cost="612.0000")],
    receivings=[received(59002, 49001, 2, 11, "INV-88101"), received(59003, 49002, 2, 12, "INV-88101"),
                received(59006, 49001, 2, 15, "INV-88342")],
)


# ---- bills -------------------------------------------------------------------------------------
def test_two_partial_deliveries_make_two_bills_and_the_freight_goes_on_the_first_once():
    plans = bills(**PARTIAL)
    assert set(plans) == {"201:INV-88101", "201:INV-88342"}
    first, second = plans["201:INV-88101"], plans["201:INV-88342"]
    assert [(l.source_line_id, l.quantity, l.unit_amount, l.line_amount) for l in first.lines] == [
        ("receiving:59002", D(2), D("1420.50"), D("2841.00")),
        ("receiving:59003", D(2), D("612.00"), D("1224.00")),
        ("freight:7901", D(1), D("35.00"), D("35.00")),
    ]
    assert [(l.source_line_id, l.line_amount) for l in second.lines] == [("receiving:59006", D("2841.00"))]
    assert first.sendable and second.sendable
    assert first.kind == "bill" and first.number == first.natural_key == "INV-88101"
    assert first.natural_key_kind is KeyKind.CONTACT_NUMBER
    assert first.contact.number == "201" and first.contact.name == "Ingram Micro NZ"
    assert first.date == dt.date(2026, 11, 11) and first.due_date == dt.date(2026, 12, 11)  # Net 30
    assert first.currency_code == "NZD" and first.status is Status.DRAFT and first.reference is None
    # Xero's tax, per line: 426.15 + 183.60 + 5.25.
    assert first.tax == D("615.00") and first.total == D("4715.00")
    assert first.url.endswith("PurchaseOrderID=7901") and first.url.startswith(WEB)
    assert "freight" in first.note and second.note is None
    # Bills cannot carry a Reference: each line names its purchase order.
    assert all("PO PO-7901" in l.description for l in first.lines + second.lines)
    assert first.lines[0].account_code == "300" and first.lines[2].account_code == "310"
    assert {l.tax_type for l in first.lines} == {"INPUT2"}


def test_the_freight_stays_with_the_first_receiving_when_the_later_bill_is_planned_alone():
    # A later run reads only the second delivery; the first is read beside it, not billed again.
    plans = bills(pos=PARTIAL["pos"], items=PARTIAL["items"], receivings=PARTIAL["receivings"][2:],
                  other=PARTIAL["receivings"][:2])
    assert list(plans) == ["201:INV-88342"]
    assert [l.source_line_id for l in plans["201:INV-88342"].lines] == ["receiving:59006"]
    # The first receiving is the lowest id: a backdated later receiving cannot take the freight.
    backdated = bills(pos=PARTIAL["pos"], items=PARTIAL["items"],
                      receivings=[received(59002, 49001, 2, 11, "INV-1"), received(59100, 49002, 2, 1, "INV-2")])
    assert "freight:7901" in [l.source_line_id for l in backdated["201:INV-1"].lines]
    assert "freight:7901" not in [l.source_line_id for l in backdated["201:INV-2"].lines]


def test_one_vendor_invoice_over_two_purchase_orders_is_one_bill_naming_both():
    plans = bills(pos=[po(7901), po(7902)], items=[item(49001), item(49002, po_id=7902, quantity=1)],
                  receivings=[received(59001, 49001, 1, 5, "INV-9"), received(59002, 49002, 1, 6, "inv-9")])
    bill = plans["201:INV-9"]
    assert [l.description for l in bill.lines] == ["Dell Latitude 5550 Laptop (PO PO-7901)",
                                                   "Dell Latitude 5550 Laptop (PO PO-7902)"]
    assert bill.date == dt.date(2026, 11, 5)


def test_the_same_number_at_two_suppliers_is_two_bills():
    plans = bills(pos=[po(7901, 201), po(7902, 202)], items=[item(49001), item(49002, po_id=7902)],
                  receivings=[received(59001, 49001, 1, 5, "10452"), received(59002, 49002, 1, 5, "10452")],
                  vendors=[vendor(), vendor(202, "Dicker Data Ltd")])
    assert set(plans) == {"201:10452", "202:10452"}
    assert plans["202:10452"].contact.name == "Dicker Data Ltd" and plans["202:10452"].natural_key == "10452"
    assert parse_bill_source_id("202:10452") == ("bill", (202, "10452"))
    assert parse_bill_source_id("receiving:59001") == ("receiving", 59001)


def test_a_foreign_currency_vendor_is_billed_in_its_currency_and_an_unsubscribed_one_is_set_aside():
    usd = bills(pos=[po(7904, 203, taxRegionID=None)],
                items=[item(49005, po_id=7904, product=31002, quantity=3, cost="368.1250")],
                receivings=[received(59004, 49005, 3, 13, "PCI-0412")],
                vendors=[vendor(203, "Pacific Components Inc", currencyID=4, taxRegionID=4)],
                the_mapping=mapping(tax={"by_region": {"Zero Rated Export": "NONE"}, "default": None}))
    bill = usd["203:PCI-0412"]
    assert bill.sendable and bill.currency_code == "USD" and bill.currency_rate is None
    # Four decimals on the unit, the line to the cent: 3 x 368.1250 = 1104.375 -> 1104.38.
    assert bill.lines[0].unit_amount == D("368.1250") and bill.lines[0].line_amount == D("1104.38")
    assert bill.lines[0].tax_type == "NONE" and bill.tax == D("0.00") and bill.total == D("1104.38")

    eur = bills(pos=[po(7904, 209)], items=[item(49005, po_id=7904)], receivings=[received(59004, 49005, 1, 13, "E-1")],
                vendors=[vendor(209, "Euro Parts GmbH", currencyID=9)])
    aside = eur["209:E-1"].set_aside
    assert "not subscribed to currency EUR" in aside.reason and "add EUR in Xero" in aside.fix


def test_a_vendor_with_no_currency_uses_autotasks_internal_currency():
    plans = bills(pos=[po()], items=[item(49001)], receivings=[received(59001, 49001, 1, 5, "A-1")],
                  vendors=[vendor(currencyID=None)])
    assert plans["201:A-1"].currency_code == "NZD"


def test_a_tax_exempt_vendor_gets_tax_exempt_and_without_it_is_set_aside():
    exempt = [vendor(isTaxExempt=True)]
    args = dict(pos=[po()], items=[item(49001)], receivings=[received(59001, 49001, 1, 5, "A-1")], vendors=exempt)
    assert {l.tax_type for l in bills(**args)["201:A-1"].lines} == {"NONE"}
    aside = bills(**args, the_mapping=mapping(tax={"tax_exempt": None}))["201:A-1"].set_aside
    assert "receiving 59001" in aside.reason and "bills.tax.tax_exempt" in aside.reason
    assert "add bills.tax.tax_exempt: <Xero purchases TaxType" in aside.fix


def test_tax_rules_in_order_product_then_region_then_default():
    args = dict(pos=[po(taxRegionID=4)], items=[item(49001), item(49002, product=31004, quantity=1, cost="31.20")],
                receivings=[received(59001, 49001, 1, 5, "A-1"), received(59002, 49002, 1, 5, "A-1")])
    rules = mapping(tax={"by_product_name": {"M365-BP": "NONE"}, "by_region": {"Zero Rated Export": "INPUT2"},
                         "default": None})
    assert [l.tax_type for l in bills(**args, the_mapping=rules)["201:A-1"].lines] == ["INPUT2", "NONE"]
    # No rule at all: the line (and its region) are named.
    aside = bills(**args, the_mapping=mapping(tax={"by_region": {}, "default": None}))["201:A-1"].set_aside
    assert "receiving 59001 (purchase order PO-7901, item 49001) has no TaxType" in aside.reason
    assert "bills.tax.by_region 'Zero Rated Export'" in aside.reason


def test_xero_tax_is_rounded_per_line_and_everything_stays_decimal():
    # Three lines of 0.10 at 15 %: Xero taxes each 0.015 -> 0.02, so 0.06, not round(0.045) = 0.05.
    plans = bills(pos=[po()], items=[item(49000 + n, quantity=1, cost="0.1000") for n in range(3)],
                  receivings=[received(59000 + n, 49000 + n, 1, 5, "T-1") for n in range(3)])
    bill = plans["201:T-1"]
    assert bill.tax == D("0.06") and bill.total == D("0.36")
    numbers = [bill.total, bill.tax] + [v for l in bill.lines for v in (l.quantity, l.unit_amount, l.line_amount)]
    assert all(type(v) is D for v in numbers)
    # A unit cost with more decimals than Xero keeps: the line is still the cent-exact product.
    odd = bills(pos=[po()], items=[item(49001, quantity=3, cost="12.345678")],
                receivings=[received(59001, 49001, 3, 5, "O-1")])["201:O-1"].lines[0]
    assert odd.line_amount == cents(D(3) * D("12.345678")) == D("37.04")
    assert cents(odd.quantity * odd.unit_amount) == odd.line_amount and odd.unit_amount == odd.unit_amount.quantize(D("0.0001"))


def test_an_item_without_a_product_takes_the_first_description_rule_or_is_set_aside():
    args = dict(pos=[po()], items=[item(49006, product=None, quantity=2, cost="84.50", memo="Cat6 patch CABLES, 50 pack"),
                                   item(49001)],
                receivings=[received(59005, 49006, 2, 13, "C-1"), received(59001, 49001, 1, 13, "C-2")])
    plans = bills(**args)
    assert plans["201:C-1"].lines[0].account_code == "300"
    assert plans["201:C-1"].lines[0].description == "Cat6 patch CABLES, 50 pack (PO PO-7901)"
    unmatched = bills(**args, the_mapping=mapping(lines={"description_rules": [{"contains": "install",
                                                                                 "account_code": "429"}]}))
    aside = unmatched["201:C-1"].set_aside
    assert "receiving 59005 (purchase order PO-7901, item 49006) has no product" in aside.reason
    assert "'Cat6 patch CABLES, 50 pack'" in aside.reason and "bills.lines.description_rules" in aside.fix
    assert unmatched["201:C-2"].sendable  # the rest goes on


def test_an_unmapped_product_is_set_aside_naming_the_receiving_and_the_keys_to_add():
    plans = bills(pos=[po()], items=[item(49009, product=31009, quantity=1, cost="10"), item(49001)],
                  receivings=[received(59009, 49009, 1, 5, "U-1"), received(59001, 49001, 1, 5, "U-2")])
    aside = plans["201:U-1"].set_aside
    assert "receiving 59009 (purchase order PO-7901, item 49009) (product 31009 'Brand New Gadget') has no account" \
        in aside.reason
    assert "bills.accounts.by_product_id 31009" in aside.fix and "by_billing_code_id 29682899" in aside.fix
    assert "refuse_unmapped: false" in aside.fix
    assert plans["201:U-2"].sendable
    # Without refuse_unmapped the default account takes it.
    relaxed = bills(pos=[po()], items=[item(49009, product=31009, quantity=1, cost="10")],
                    receivings=[received(59009, 49009, 1, 5, "U-1")],
                    the_mapping=mapping(accounts={"refuse_unmapped": False, "default": "429"}))
    assert relaxed["201:U-1"].lines[0].account_code == "429"
    # Rules by product id and by sku come before the billing code.
    by_sku = bills(pos=[po()], items=[item(49001, quantity=1)], receivings=[received(59001, 49001, 1, 5, "S-1")],
                   the_mapping=mapping(accounts={"by_product_name": {"DL-5550": "429"}}))
    assert by_sku["201:S-1"].lines[0].account_code == "429"


def test_an_account_or_tax_type_xero_does_not_have_is_set_aside_naming_the_record():
    args = dict(pos=[po(freight="20.00")], items=[item(49001, quantity=1)], receivings=[received(59001, 49001, 1, 5, "X-1")])
    account = bills(**args, the_mapping=mapping(accounts={"by_billing_code_id": {29682804: "999"}}))["201:X-1"].set_aside
    assert "account code '999' (for receiving 59001 (purchase order PO-7901, item 49001))" in account.reason
    assert "add account 999" in account.fix
    tax = bills(**args, the_mapping=mapping(tax={"by_region": {"New Zealand GST": "INPUT3"}}))["201:X-1"].set_aside
    assert "TaxType 'INPUT3' (for receiving 59001" in tax.reason and "the freight of purchase order PO-7901" in tax.reason
    freight = bills(**args, the_mapping=mapping(freight={"account_code": "425"}))["201:X-1"].set_aside
    assert "account code '425' (for the freight of purchase order PO-7901)" in freight.reason
    unset = bills(**args, the_mapping=mapping(freight={"account_code": None}))["201:X-1"].set_aside
    assert "PO-7901 has freight 20" in unset.reason and "bills.freight.account_code" in unset.fix


def test_a_receiving_without_a_vendor_invoice_number_is_set_aside_and_the_rest_goes_on():
    plans = bills(pos=[po()], items=[item(49001)], receivings=[received(59007, 49001, 1, 15, None),
                                                               received(59008, 49001, 1, 16, "  ")])
    # Blank text is no number either; each receiving is its own set-aside plan.
    assert set(plans) == {"receiving:59007", "receiving:59008"}
    aside = plans["receiving:59007"]
    assert not aside.sendable and aside.number is None and aside.natural_key is None
    assert aside.set_aside.reason == "receiving 59007 of purchase order PO-7901 has no vendorInvoiceNumber"
    assert "vendor's invoice number" in aside.set_aside.fix
    assert [l.source_line_id for l in aside.lines] == ["receiving:59007"]  # the shell sees what it covers
    assert decide(aside, None, None).action is Action.SET_ASIDE
    with_a_good_one = bills(pos=[po()], items=[item(49001)], receivings=[received(59007, 49001, 1, 15, None),
                                                                         received(59001, 49001, 1, 15, "G-1")])
    assert with_a_good_one["201:G-1"].sendable


def test_a_missing_or_unreadable_vendor_sets_its_bills_aside():
    args = dict(pos=[po(vendor_id=205)], items=[item(49001)], receivings=[received(59001, 49001, 1, 5, "M-1")])
    missing = bills(**args, vendors=[vendor()])["205:M-1"]
    assert "vendor company 205 (vendor of purchase order PO-7901) was not read from Autotask" in missing.set_aside.reason
    assert missing.contact is None and missing.lines == ()
    unreadable = bills(**args, vendors=[vendor(205, "")])["205:M-1"]
    assert "vendor company 205" in unreadable.set_aside.reason and "cannot be read" in unreadable.set_aside.reason


def test_malformed_records_set_aside_the_bill_they_belong_to_and_nothing_crashes():
    base_items = [item(49001), item(49002, quantity=1)]
    bad_receiving = bills(pos=[po()], items=base_items,
                          receivings=[received(59001, 49001, 1, 5, "B-1"),
                                      dict(received(59002, 49002, 1, 5, "B-1"), quantityNowReceiving="two"),
                                      received(59003, 49001, 1, 5, "B-2")])
    aside = bad_receiving["201:B-1"].set_aside
    assert "receiving 59002 cannot be read: quantityNowReceiving = 'two'" in aside.reason
    assert bad_receiving["201:B-2"].sendable
    # A receiving whose item cannot be found stands alone.
    orphan = bills(pos=[po()], items=base_items,
                   receivings=[dict(received(59004, 49001, 1, 5, "B-3"), purchaseOrderItemID=None)])
    assert "purchaseOrderItemID is missing" in orphan["receiving:59004"].set_aside.reason
    # A fractional quantity on the item (int32 in Autotask), and a purchase order with no vendor.
    bad_item = bills(pos=[po()], items=[dict(item(49001), quantity=D("2.5"))],
                     receivings=[received(59001, 49001, 1, 5, "B-4")])
    assert "purchase order item 49001 (of receiving 59001) cannot be read: quantity = 2.5 cannot be read: not a whole number" in \
        bad_item["201:B-4"].set_aside.reason
    bad_po = bills(pos=[dict(po(), freight="lots")], items=[item(49001)], receivings=[received(59001, 49001, 1, 5, "B-5")])
    assert "purchase order 7901 (of receiving 59001) cannot be read: freight = 'lots'" in \
        bad_po["201:B-5"].set_aside.reason
    lost = bills(pos=[], items=[item(49001)], receivings=[received(59001, 49001, 1, 5, "B-6")])
    assert "purchase order 7901 (of receiving 59001) was not read" in lost["receiving:59001"].set_aside.reason


def test_a_cancelled_purchase_orders_receivings_are_still_billed():
    plans = bills(pos=[po(7903, status=5, freight="15.00", cancelDateTime="2026-11-12T03:30:00.000Z")],
                  items=[item(49004, po_id=7903, product=31002, quantity=6, cost="298.40")],
                  receivings=[received(59001, 49004, 2, 10, "DD-55120")])
    assert plans["201:DD-55120"].sendable and plans["201:DD-55120"].lines[-1].source_line_id == "freight:7903"


def test_rerun_gives_the_same_hashes_and_a_corrected_receiving_a_new_one():
    once, again = bills(**PARTIAL), bills(**PARTIAL)
    assert {k: p.content_hash for k, p in once.items()} == {k: p.content_hash for k, p in again.items()}
    shuffled = dict(PARTIAL, receivings=random.Random(3).sample(PARTIAL["receivings"], 3),
                    items=list(reversed(PARTIAL["items"])))
    assert {k: p.content_hash for k, p in bills(**shuffled).items()} == {k: p.content_hash for k, p in once.items()}
    corrected = dict(PARTIAL, receivings=[dict(PARTIAL["receivings"][0], quantityNowReceiving=1),
                                          *PARTIAL["receivings"][1:]])
    changed = bills(**corrected)
    assert changed["201:INV-88101"].content_hash != once["201:INV-88101"].content_hash
    assert changed["201:INV-88342"].content_hash == once["201:INV-88342"].content_hash

    # The shell then reports it, never re-bills: a bill's copy in Xero is not rewritten, even as a draft.
    class Row:
        state, content_hash, target_id, natural_key, attempts, contact_id = (
            "synced", once["201:INV-88101"].content_hash, "bill-id", "INV-88101", 1, "c")
    draft = XeroDocument(kind="bill", id="bill-id", number="INV-88101", status=Status.DRAFT)
    assert decide(changed["201:INV-88101"], Row(), draft).action is Action.NEEDS_PERSON


def test_due_date_rules():
    args = dict(pos=[po()], items=[item(49001)], receivings=[received(59001, 49001, 1, 20, "D-1")])
    due = lambda rule, **extra: bills(**args, the_mapping=mapping(due_date=rule), **extra)["201:D-1"]  # noqa: E731
    assert due("payment_term").due_date == dt.date(2026, 12, 20)
    assert due({"days_after_receive": 7}).due_date == dt.date(2026, 11, 27)
    assert due({"day_of_following_month": 31}).due_date == dt.date(2026, 12, 31)
    assert due("xero_contact").due_date is None and due("xero_contact").sendable
    no_days = bills(pos=[po(paymentTerm=7)], items=[item(49001)], receivings=[received(59001, 49001, 1, 20, "D-1")])
    assert "payment term 7 was not read from Autotask PaymentTerms" in no_days["201:D-1"].set_aside.reason
    no_term = bills(pos=[po(paymentTerm=None)], items=[item(49001)], receivings=[received(59001, 49001, 1, 20, "D-1")])
    assert "purchase order PO-7901 has no payment term" in no_term["201:D-1"].set_aside.reason
    assert "{days_after_receive: N}" in no_term["201:D-1"].set_aside.fix


def test_nothing_received_or_a_negative_bill_is_set_aside():
    zero = bills(pos=[po()], items=[item(49001)], receivings=[received(59001, 49001, 0, 5, "Z-1")])["201:Z-1"]
    assert zero.lines == () and "nothing received" in zero.set_aside.reason
    negative = bills(pos=[po()], items=[item(49001)], receivings=[received(59001, 49001, -1, 5, "N-1")])["201:N-1"]
    assert "would total -1633.58" in negative.set_aside.reason and "credit note" in negative.set_aside.fix


def test_without_a_web_address_there_is_no_link():
    assert bills(**PARTIAL, web=None)["201:INV-88101"].url is None


# ---- purchase orders ---------------------------------------------------------------------------
PURCHASE_ORDERS = dict(
    pos=[po(7001, status=1, freight="25.00", latestEstimatedArrivalDate="2026-11-20T00:00:00.000Z"),
         po(7002, status=2, shippingDate="2026-11-18T00:00:00.000Z"),
         po(7003, status=3), po(7004, status=4), po(7005, status=6),
         po(7006, status=5, cancelDateTime="2026-11-09T00:00:00.000Z")],
    items=[item(41001, po_id=7001), item(41002, po_id=7001, product=31002, quantity=2, cost="612.00"),
           *[item(41000 + n, po_id=7000 + n, quantity=1) for n in range(3, 7)], item(41010, po_id=7002, quantity=1)],
)


def test_purchase_orders_carry_the_ordered_items_freight_delivery_date_and_status():
    plans = orders(**PURCHASE_ORDERS)
    new = plans["7001"]
    assert new.kind == "purchase_order" and new.number == new.natural_key == "PO-7001"
    assert new.natural_key_kind is KeyKind.NUMBER and new.contact.number == "201"
    assert [(l.source_line_id, l.quantity, l.line_amount) for l in new.lines] == [
        ("item:41001", D(4), D("5682.00")), ("item:41002", D(2), D("1224.00")), ("freight:7001", D(1), D("25.00"))]
    assert new.lines[-1].description == "Freight"
    assert new.total == D("7970.65") and new.tax == D("1039.65")
    assert new.delivery_date == dt.date(2026, 11, 20) and new.date == dt.date(2026, 11, 3)
    assert plans["7002"].delivery_date == dt.date(2026, 11, 18)
    assert [plans[k].status for k in ("7001", "7002", "7003", "7004")] == [
        Status.DRAFT, Status.AUTHORISED, Status.AUTHORISED, Status.AUTHORISED]
    assert plans["7005"].status is Status.DRAFT  # "On Hold": no rule names it, so bills.status
    assert all(p.sendable for k, p in plans.items() if k != "7006")
    assert plans["7001"].url.endswith("PurchaseOrderID=7001")


def test_a_cancelled_purchase_order_is_a_void_plan():
    plans = orders(**PURCHASE_ORDERS)
    assert plans["7006"].void and not plans["7006"].sendable and plans["7006"].set_aside is None
    # Cancelled by its label alone too, and even when it could not be mapped any more.
    by_label = orders(pos=[po(7007, status=5)], items=[], the_mapping=mapping(accounts={"by_billing_code_id": {}}))
    assert by_label["7007"].void
    assert decide(by_label["7007"], None, None).action is Action.SKIP  # never reached Xero: nothing to do


def test_purchase_order_status_and_number_rules():
    rules = mapping(purchase_order_status={2: "SUBMITTED", "on hold": "DRAFT"}, status="AUTHORISED",
                    purchase_order_number="AT-{purchaseOrderNumber}")
    plans = orders(**PURCHASE_ORDERS, the_mapping=rules)
    assert plans["7002"].status is Status.SUBMITTED  # by id, before the label's default
    assert plans["7005"].status is Status.DRAFT      # by label, in any case
    assert plans["7001"].status is Status.DRAFT      # the defaults still apply to the rest
    assert plans["7001"].number == "AT-PO-7001"
    unknown = orders(**PURCHASE_ORDERS, the_mapping=mapping(status="SUBMITTED",
                                                            purchase_order_status={"On Hold": "AUTHORISED"}))
    assert unknown["7005"].status is Status.AUTHORISED
    # No picklist read: Autotask's usual labels.
    bare = orders(**PURCHASE_ORDERS, reference={k: v for k, v in REFERENCE.items() if k != "Picklists"})
    assert bare["7001"].status is Status.DRAFT and bare["7006"].void


def test_purchase_order_set_aside_reasons():
    empty_field = orders(pos=[po(7001, externalPONumber=None)], items=[item(41001, po_id=7001)],
                         the_mapping=mapping(purchase_order_number="{externalPONumber}-{id}"))
    assert "the number template '{externalPONumber}-{id}' needs a field that is empty" in \
        empty_field["7001"].set_aside.reason
    no_items = orders(pos=[po(7001)], items=[])
    assert no_items["7001"].set_aside.reason == "purchase order PO-7001 has no items"
    frames_bad = orders(pos=[po(7001), dict(po(7002), vendorID="x")],
                        items=[item(41001, po_id=7001), dict(item(41002, po_id=7001), unitCost=None)])
    assert "purchase order item 41002 (of purchase order PO-7001) cannot be read: unitCost is missing" in \
        frames_bad["7001"].set_aside.reason
    assert frames_bad["7002"].set_aside.reason == "purchase order 7002 cannot be read: vendorID = 'x' cannot be read: not a whole number"
    unmapped = orders(pos=[po(7001)], items=[item(41001, po_id=7001, product=31009)])
    assert "purchase order PO-7001, item 41001 (product 31009 'Brand New Gadget') has no account mapping" in \
        unmapped["7001"].set_aside.reason
    missing_vendor = orders(pos=[po(7001, vendor_id=299)], items=[item(41001, po_id=7001)])
    assert "vendor company 299" in missing_vendor["7001"].set_aside.reason


def test_purchase_order_hashes_are_stable_and_follow_the_status():
    once, again = orders(**PURCHASE_ORDERS), orders(**PURCHASE_ORDERS)
    assert {k: p.content_hash for k, p in once.items()} == {k: p.content_hash for k, p in again.items()}
    submitted = dict(PURCHASE_ORDERS, pos=[dict(PURCHASE_ORDERS["pos"][0], status=2), *PURCHASE_ORDERS["pos"][1:]])
    moved = orders(**submitted)["7001"]
    assert moved.status is Status.AUTHORISED and moved.content_hash != once["7001"].content_hash


def test_rejects_can_be_given_by_hand():
    frames = purchasing_frames(purchase_orders=[po()], items=[item(49001)], vendors=[vendor()])
    assert not frames.rejected and isinstance(frames.rejected, PurchasingRejects)
    plans = plan_bills(frames.purchase_orders, frames.items, frames.receivings, frames.vendors, REFERENCE,
                       mapping().bills, XERO)
    assert plans == []


def test_purchasing_dates_and_costs_are_read_within_bounds():
    from core.bills import items_with_rejects, receivings_with_rejects

    _, rejected = receivings_with_rejects([{"id": 1, "purchaseOrderItemID": 2, "quantityNowReceiving": 1,
                                            "receiveDate": "2026-02-30T00:00:00Z", "vendorInvoiceNumber": "V-1"}])
    assert rejected and "receiveDate = '2026-02-30T00:00:00Z' cannot be read" in "; ".join(rejected[0].problems)
    _, rejected = items_with_rejects([{"id": 3, "orderID": 4, "quantity": 1, "unitCost": "1E+30"}])
    assert rejected and "unitCost" in "; ".join(rejected[0].problems)

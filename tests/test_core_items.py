"""core.items on its own: which ItemCode each planned line gets, and which invoices are set aside."""
from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from core.documents import DocumentPlan, Line
from core.items import assign_item_codes, codes_needed, set_aside_needing
from core.mapping import ItemRule, ItemRules

REFERENCE = {
    "BillingCodes": [{"id": 1, "name": "Remote Support", "externalNumber": "LAB-REMOTE"},
                     {"id": 2, "name": "Hardware", "externalNumber": "HW-SALES"}],
    "Products": [{"id": 7, "name": "Laptop", "sku": "DL-5550", "productBillingCodeID": 2}],
    "Picklists": {"BillingItems.billingItemType": [{"value": 1, "label": "Labor"}, {"value": 5, "label": "Recurring Service"}]},
}
LINES = pd.DataFrame([
    {"id": 11, "billingItemType": 1, "billingCodeID": 1, "itemName": "Remote", "description": "x", "productID": None},
    {"id": 12, "billingItemType": 5, "billingCodeID": 2, "itemName": "Laptop", "description": "y", "productID": 7},
    {"id": 13, "billingItemType": 5, "billingCodeID": 2, "itemName": "Cable", "description": "Special", "productID": None},
    {"id": 14, "billingItemType": 5, "billingCodeID": 2, "itemName": "Other", "description": "z", "productID": None},
])


def plan(*item_ids) -> DocumentPlan:
    lines = tuple(Line(description=f"line {i}", quantity=Decimal(1), unit_amount=Decimal(10), line_amount=Decimal(10),
                       account_code="200", tax_type="OUTPUT2", source_line_id=str(i)) for i in item_ids)
    return DocumentPlan(kind="invoice", source_id="1", source_number="INV-1", content_hash="h", lines=lines)


def rules(**options) -> ItemRules:
    return ItemRules(rules=[ItemRule(billing_item_type="labor", item_code="LAB"),
                            ItemRule(product_sku="dl-5550", item_code="DL"),
                            ItemRule(item_name="SPECIAL", item_code="SPC"),
                            ItemRule(external_number="HW-SALES", item_code="HW")], **options)


def test_each_rule_matches_and_the_first_one_wins():
    out = assign_item_codes([plan(11, 12, 13, 14)], LINES, REFERENCE, rules())
    assert [l.item_code for l in out.plans[0].lines] == ["LAB", "DL", "SPC", "HW"]
    assert out.plans[0].content_hash != "h"  # an item change is a change of the document
    assert out.drafts["lab"].name == "Remote Support" and out.drafts["lab"].account_code == "200"
    assert codes_needed(out.plans) == {"lab": "LAB", "dl": "DL", "spc": "SPC", "hw": "HW"}


def test_unmatched_lines_go_without_an_item_or_set_the_invoice_aside():
    only_labour = [ItemRule(billing_item_type="Labor", item_code="LAB")]
    kept = assign_item_codes([plan(11, 14)], LINES, REFERENCE, ItemRules(rules=only_labour)).plans[0]
    assert [l.item_code for l in kept.lines] == ["LAB", None] and kept.sendable
    refused = assign_item_codes([plan(11, 14)], LINES, REFERENCE,
                                ItemRules(rules=only_labour, refuse_unmatched=True)).plans[0]
    assert not refused.sendable
    assert "billing item 14 (type Recurring Service, 'Other')" in refused.set_aside.reason
    assert "items.rules" in refused.set_aside.fix


def test_without_rules_plans_and_their_hash_are_unchanged():
    original = plan(11)
    assert assign_item_codes([original], LINES, REFERENCE, ItemRules()).plans == [original]


def test_an_item_xero_refused_sets_aside_the_invoices_that_need_it():
    out = assign_item_codes([plan(11), plan(14)], LINES, REFERENCE, rules())
    after = set_aside_needing(out.plans, {"lab": "Item code 'LAB' already exists"})
    assert not after[0].sendable and "Item code 'LAB' already exists" in after[0].set_aside.reason
    assert after[1].sendable


def test_a_rule_names_exactly_one_matcher():
    with pytest.raises(ValueError, match="exactly one"):
        ItemRule(billing_item_type="Labor", item_name="x", item_code="A")
    with pytest.raises(ValueError):
        ItemRule(item_name="x", item_code="C" * 31)

"""Invoice-level tax and unit prices: Autotask's four-decimal line taxes, rounded by Xero line by line, still give
Autotask's invoice total and tax to the cent, in every tax mode and with both rounding strategies. Pure."""

import random
import zlib
from decimal import ROUND_HALF_UP, Decimal as D

import pandas as pd
import pytest

from core.invoices import apportion, companies_frame, fit_quantity_and_unit, invoices_frame, lines_frame, \
    plan_invoices, xero_totals
from tests.test_core_features import FULL_XERO, REFERENCE
from tests.test_core_invoices import company, mapping, money

FOUR = D("0.0001")
RATES = {1: D("15"), 7: D("10"), 4: D("0")}  # tax category -> rate of its TaxType (OUTPUT2, TAX001, NONE)
TAX = {"by_category_name": {"Standard Services": "OUTPUT2", "Non-Taxable": "NONE", "Alcohol": "TAX001"}}


def test_apportion_gives_the_missing_cents_to_the_largest_remainders():
    assert apportion(D("4.51"), [D("1.5045")] * 3) == [D("1.51"), D("1.50"), D("1.50")]
    assert apportion(D("2.01"), [D("1.005"), D("1.005")]) == [D("1.01"), D("1.00")]
    assert apportion(D("1.00"), [D("0.3334"), D("0.3333"), D("0.3333")]) == [D("0.34"), D("0.33"), D("0.33")]
    assert apportion(D("-0.99"), [D("-0.3333")] * 3) == [D("-0.33")] * 3
    assert apportion(D("10.00"), [D("4.00"), D("6.00")]) == [D("4.00"), D("6.00")]  # cents stay as they are
    assert apportion(D("0.00"), []) == []


def test_a_four_decimal_rate_is_sent_as_autotask_has_it():
    # 1 x 36.38 gives the same 36.38 as 1 x 36.3833, but the Autotask invoice shows 36.3833.
    assert fit_quantity_and_unit(D("3"), D("36.3833"), D("109.15")) == (D("3"), D("36.3833"), False)
    assert fit_quantity_and_unit(D("1"), D("36.3833"), D("36.38")) == (D("1"), D("36.3833"), False)
    assert fit_quantity_and_unit(D("2"), D("165"), D("330.00")) == (D("2"), D("165.0000"), False)


def _item(rng, line_id, invoice_id, sign, sub_cent_amounts, categories):
    quantity = D(rng.choice(["1", "2", "3", "0.25", "1.5", "7", "12", "45"]))
    rate = (D(rng.randint(1_0000, 900_0000)) / 10_000).quantize(FOUR)
    exact = quantity * rate * sign
    extended = exact.quantize(FOUR, rounding=ROUND_HALF_UP) if sub_cent_amounts else money(exact)
    category = rng.choice(categories)
    tax = (extended * RATES[category] / 100).quantize(FOUR, rounding=ROUND_HALF_UP)
    return {"id": line_id, "invoiceID": invoice_id, "companyID": 174, "billingCodeID": rng.choice([29682801, 29682806]),
            "billingItemType": 1, "itemName": "Remote Support", "description": "Remote Support",
            "quantity": quantity * sign, "rate": rate, "extendedPrice": extended, "taxDollars": tax,
            "totalAmount": extended + tax, "taxCategoryID": category, "sortOrderID": line_id % 100}


def generated(seed: int, count: int, *, taxed: bool):
    """Invoices as Autotask keeps them with four-decimal tax: totals are the unrounded sums of the items. Only
    those whose items' cent-rounded taxes (or amounts) miss the invoice's totals are kept."""
    rng = random.Random(seed)
    invoices, lines = [], []
    line_id, invoice_id = 80_000_001, 6001
    while len(invoices) < count:
        sign = -1 if rng.random() < 0.15 else 1  # some credits
        sub_cent = rng.random() < (0.3 if taxed else 1)
        categories = [1, 7, 4] if taxed else [4]
        items = [_item(rng, line_id + k, invoice_id, sign, sub_cent, categories) for k in range(rng.randint(1, 8))]
        total, tax = sum((i["totalAmount"] for i in items), D(0)), sum((i["taxDollars"] for i in items), D(0))
        per_line = sum((money(i["taxDollars"]) for i in items), D(0)), sum((money(i["extendedPrice"]) for i in items), D(0))
        if (money(tax), money(total) - money(tax)) == per_line:
            continue  # rounds the same either way: not what this test is about
        invoices.append({"id": invoice_id, "invoiceNumber": f"INV-{invoice_id}", "companyID": 174,
                         "invoiceDateTime": "2026-11-03T00:00:00.000Z", "dueDate": "2026-12-03T00:00:00.000Z",
                         "invoiceTotal": total, "totalTaxValue": tax, "isVoided": False, "paymentTerm": 5,
                         "taxRegionName": "New Zealand GST"})
        lines += items
        line_id += len(items)
        invoice_id += 1
    return invoices, lines


MODES = [("Exclusive", True), ("Inclusive", True), ("NoTax", False)]


@pytest.mark.parametrize("strategy", ["tax_amount", "rounding_line"])
@pytest.mark.parametrize("line_amount_types,taxed", MODES)
@pytest.mark.parametrize("group_by", ["item", "billing_code"])
def test_hundreds_of_invoices_reach_autotasks_total_and_tax_to_the_cent(strategy, line_amount_types, taxed, group_by):
    seed = zlib.crc32(f"{strategy}:{line_amount_types}:{group_by}".encode())  # stable from run to run
    invoices, lines = generated(seed, 150, taxed=taxed)
    rounding = {"strategy": strategy} | ({"account_code": "860"} if strategy == "rounding_line" else {})
    the_mapping = mapping(line_amount_types=line_amount_types, tax={**TAX, "rounding": rounding},
                          lines={"group_by": group_by})
    result = plan_invoices(invoices_frame(invoices), lines_frame(lines), companies_frame([company()]), REFERENCE,
                           the_mapping, FULL_XERO)
    assert result.set_aside == []
    by_id = {i["id"]: i for i in invoices}
    items = {l["id"]: l for l in lines}
    planned = result.drafts.groupby("autotask_invoice_id")
    assert len(planned) == len(invoices)
    gaps = 0
    for invoice_id, rows in planned:
        invoice = by_id[invoice_id]
        sign = -1 if rows.iloc[0]["document_type"] == "ACCRECCREDIT" else 1
        _, tax, total = xero_totals(rows, FULL_XERO.tax_types)
        assert (total, tax) == (sign * money(invoice["invoiceTotal"]), sign * money(invoice["totalTaxValue"])), invoice_id
        for row in rows.itertuples():
            assert money(row.quantity * row.unit_amount) == row.line_amount
            item = items.get(row.autotask_billing_item_id)
            if pd.isna(row.autotask_billing_item_id):
                # a rounding line: no amount, the tax difference of one TaxType
                assert strategy == "rounding_line" and row.line_amount == 0 and row.tax_amount
                assert row.account_code == "860" and row.tax_type in {"OUTPUT2", "TAX001"}
                gaps += 1
            elif group_by == "item" and item is not None:
                assert abs(row.line_amount - sign * (item["extendedPrice"] + (
                    item["taxDollars"] if line_amount_types == "Inclusive" else 0))) < D("0.01")
                if money(item["quantity"] * item["rate"] * sign) == item["extendedPrice"] * sign \
                        and money(row.quantity * item["rate"]) == row.line_amount:
                    assert row.unit_amount == item["rate"], row  # Autotask's four-decimal rate, as it is
        if strategy == "tax_amount":
            assert rows["line_amount"].ne(0).all() or line_amount_types == "NoTax"
    if strategy == "rounding_line" and taxed:
        assert gaps > 0

"""The invoices flow over HTTP with Autotask's four-decimal taxes: the sandbox's INV-R invoices, whose billing
items' cent-rounded taxes miss totalTaxValue by a cent or two, reach the Xero simulator with Autotask's total and
tax to the cent, with either rounding strategy, and each line shows Autotask's own rate."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
import yaml

from atx.connections import ledger_for
from ledger import DocState
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import DEMO, mapping_file

pytestmark = pytest.mark.e2e

END = date(2026, 11, 24)
SINCE, UNTIL = END - timedelta(days=40), END


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=6, window_end=END, rounding_cases=True) as s:
        yield s


@pytest.mark.parametrize("strategy", ["tax_amount", "rounding_line"])
def test_four_decimal_taxes_reach_xero_to_the_cent(stack, tmp_path, strategy):
    from flows.invoices import invoices

    cases = [i for i in stack.autotask.records("Invoices") if i["invoiceNumber"].startswith("INV-R")]
    items = stack.autotask.records("BillingItems")
    assert len(cases) == 4
    for case in cases:  # the fault this test is about is really there
        own = [l for l in items if l["invoiceID"] == case["id"]]
        assert sum((money(l["taxDollars"]) for l in own), Decimal(0)) != money(case["totalTaxValue"])
    demo_tax = yaml.safe_load(DEMO.read_text())["tax"]
    rounding = {"strategy": strategy} | ({"account_code": "260"} if strategy == "rounding_line" else {})
    settings = stack.connect_tenant("acme", mapping_file(tmp_path, tax={**demo_tax, "rounding": rounding}))
    state = invoices(tenant="acme", since=SINCE, until=UNTIL, return_state=True)
    assert state.is_completed(), state.message

    rows = ledger_for(settings).records(settings.name, "invoice")
    by_number = {doc["InvoiceNumber"]: doc for doc in stack.org.invoices.values()}
    for case in cases:
        row = rows[str(case["id"])]
        assert row.state == DocState.SYNCED, (case["invoiceNumber"], row.state, row.reason)
        doc = by_number[case["invoiceNumber"]]
        assert doc["Total"] == money(case["invoiceTotal"]), case["invoiceNumber"]
        assert doc["TotalTax"] == money(case["totalTaxValue"]), case["invoiceNumber"]
        own = sorted((l for l in items if l["invoiceID"] == case["id"]), key=lambda l: l["sortOrderID"])
        billed = [li for li in doc["LineItems"] if li.get("Description") != "Rounding"]
        # Each line shows Autotask's own four-decimal rate (unitdp=4), and Xero's LineAmount is its extendedPrice.
        assert [(li["Quantity"], li["UnitAmount"], li["LineAmount"]) for li in billed] == [
            (l["quantity"], l["rate"], l["extendedPrice"]) for l in own]
        extra = [li for li in doc["LineItems"] if li.get("Description") == "Rounding"]
        if strategy == "tax_amount":
            assert not extra
        else:
            assert extra and all(li["LineAmount"] == 0 and li["AccountCode"] == "260" and li["TaxAmount"] != 0
                                 for li in extra)

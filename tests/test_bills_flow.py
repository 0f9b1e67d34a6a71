"""The bills flow end to end: a real Prefect run, over HTTP, against both simulators.

Autotask receivings become Xero bills (ACCPAY), one per supplier and vendor invoice number; or, when the
tenant chooses it, Autotask purchase orders become Xero purchase orders kept in step. Every test ends
with the same check: each document is in Xero once, or set aside in the ledger with a reason, and the
ledger agrees with Xero.
"""
from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import pytest
import yaml

from atx.connections import ledger_for, xero_gateway
from core.documents import BILL, PURCHASE_ORDER, Status
from ledger import DocState
from sandbox.stack import SandboxStack

pytestmark = pytest.mark.e2e

SINCE, UNTIL = date(2026, 10, 1), date(2026, 11, 30)


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=7, invoices=20, window_end=UNTIL) as s:
        yield s


def run(tenant="acme", **params):
    from flows.bills import bills

    params.setdefault("since", SINCE)
    params.setdefault("until", UNTIL)
    state = bills(tenant=tenant, return_state=True, **params)
    assert state.is_completed(), state.message
    return state.result()


def purchase_order_mapping(tmp_path) -> str:
    mapping = yaml.safe_load(open("mappings/demo.yaml"))
    mapping["bills"]["target"] = "purchase_order"
    path = tmp_path / "purchase-orders.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return str(path)


def xero_bills(settings) -> list:
    return xero_gateway(settings).find_invoices(where='Type=="ACCPAY"', with_lines=True)


def po(stack: SandboxStack, number: str) -> dict:
    return next(p for p in stack.autotask.records("PurchaseOrders") if p["purchaseOrderNumber"] == number)


def assert_ledger_agrees(settings, kind) -> None:
    """Every synced row names a live Xero document of its kind, and no Xero document is there twice."""
    docs = {d.id: d for d in xero_gateway(settings).find(kind)}
    rows = ledger_for(settings).records(settings.name, kind.name)
    synced = [r for r in rows.values() if r.state == DocState.SYNCED]
    assert synced, "nothing reached Xero"
    for r in synced:
        assert r.target_id in docs, (r.source_id, "not in Xero")
        assert Decimal(r.target_total) == docs[r.target_id].total
    for r in rows.values():
        if r.state == DocState.SET_ASIDE:
            assert r.reason and r.fix and r.target_id is None
    ours = [d for d in docs.values() if d.status != Status.DELETED]
    keys = Counter((d.contact_id, d.number) for d in ours)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]


def test_receivings_become_bills_once_per_vendor_invoice_and_a_rerun_creates_none(stack):
    settings = stack.connect_tenant("acme")
    first = run()
    assert first.count("created") > 0
    bills = xero_bills(settings)
    by_key = Counter((b.contact.contact_number, b.invoice_number) for b in bills)
    assert all(n == 1 for n in by_key.values())
    # PO2026B001 was delivered twice, with two vendor invoices: two bills, never one bill twice.
    ingram = [b for b in bills if b.contact.contact_number == "201" and b.invoice_number in ("INV-88101", "INV-88342")]
    assert sorted(b.invoice_number for b in ingram) == ["INV-88101", "INV-88342"]
    # Freight goes on exactly one of them.
    freight = [b.invoice_number for b in ingram for line in b.line_items if line.description.startswith("Freight")]
    assert freight == ["INV-88101"]
    # The same vendor invoice number at another supplier is another bill.
    assert ("202", "INV-88101") in by_key
    # The PO number rides on every line (bills carry no Reference in Xero).
    assert all("PO2026B001" in line.description for b in ingram for line in b.line_items)
    # Suppliers became Xero contacts, matched as customers are (ContactNumber = the Autotask company id).
    suppliers = {c.contact_number: c for c in xero_gateway(settings).find_contacts(numbers=["201", "202", "203"])}
    assert set(suppliers) == {"201", "202", "203"}
    # A receiving without a vendor invoice number is set aside with the fix, not dropped.
    aside = {o.source_id: o for o in first.set_aside}
    assert "receiving:59007" in aside and "vendorInvoiceNumber" in aside["receiving:59007"].reason

    second = run()
    assert second.count("created") == 0 and second.count("already in Xero") == first.count("created")
    assert len(xero_bills(settings)) == len(bills)
    assert_ledger_agrees(settings, BILL)


def test_a_foreign_currency_purchase_order_is_billed_in_its_currency(stack):
    settings = stack.connect_tenant("acme")
    run()
    usd = [b for b in xero_bills(settings) if b.contact.contact_number == "203"]
    assert usd and all(str(getattr(b.currency_code, "value", b.currency_code)) == "USD" for b in usd)
    # Tax-exempt overseas supplier: no tax, and the 4-decimal unit cost kept as Autotask has it.
    assert all(Decimal(str(b.total_tax)) == 0 for b in usd)
    assert any(Decimal(str(line.unit_amount)) == Decimal("368.125") for b in usd for line in b.line_items)


def test_a_corrected_receiving_is_reported_not_billed_again(stack):
    settings = stack.connect_tenant("acme")
    run()
    before = len(xero_bills(settings))
    stack.autotask.update("PurchaseOrderItemReceiving", 59006, {"quantityNowReceiving": 1})
    again = run()
    changed = [o for o in again.outcomes if o.source_id == "201:INV-88342"]
    assert changed and changed[0].action == "changed after approval", changed
    assert "never bills a receiving twice" in changed[0].fix
    assert len(xero_bills(settings)) == before


def test_a_lost_answer_on_a_bill_batch_is_resolved_without_a_duplicate(stack):
    settings = stack.connect_tenant("acme")
    stack.xero.faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Invoices", times=1)
    first = run()
    second = run()
    # Xero wrote the batch but its answer was lost: found by supplier and number, recorded, not sent again.
    assert first.count("recovered") > 0, [o.action for o in first.outcomes]
    assert second.count("created") == 0
    keys = Counter((b.contact.contact_number, b.invoice_number) for b in xero_bills(settings))
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    rows = ledger_for(settings).records("acme", BILL.name)
    assert not [r for r in rows.values() if r.state == DocState.SENDING]
    assert_ledger_agrees(settings, BILL)


def test_purchase_orders_are_kept_in_step_and_a_cancelled_one_is_deleted(stack, tmp_path):
    settings = stack.connect_tenant("acme", mapping=purchase_order_mapping(tmp_path))
    first = run()
    assert first.count("created") > 0
    xero = xero_gateway(settings)
    docs = {d.number: d for d in xero.find(PURCHASE_ORDER)}
    assert docs["PO2026B007"].status == Status.DRAFT          # New in Autotask
    assert docs["PO2026B001"].status == Status.AUTHORISED     # received: approved in Xero
    assert "PO2026B002" not in docs                           # cancelled before it reached Xero

    # Submitted in Autotask: the Xero purchase order follows.
    stack.autotask.update("PurchaseOrders", po(stack, "PO2026B007")["id"], {"status": 2})
    # Cancelled in Autotask after it reached Xero, never billed: deleted there.
    stack.autotask.update("PurchaseOrders", po(stack, "PO2026B004")["id"], {"status": 5, "cancelDateTime": "2026-11-29T10:00:00Z"})
    second = run()
    assert second.count("created") == 0
    docs = {d.number: d for d in xero.find(PURCHASE_ORDER)}
    assert docs["PO2026B007"].status == Status.AUTHORISED
    assert docs["PO2026B004"].status == Status.DELETED
    assert next(o for o in second.outcomes if o.source_number == "PO2026B004").action.startswith("deleted")

    third = run()
    assert third.count("created") == third.count("updated in Xero") == 0
    assert_ledger_agrees(settings, PURCHASE_ORDER)

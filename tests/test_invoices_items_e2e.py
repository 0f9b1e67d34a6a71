"""Xero items on invoice lines, end to end: the mapping's items: section, a real run of the invoices flow,
and what the Xero simulator then holds, read back over HTTP through the gateway."""
from __future__ import annotations

from datetime import date

import pytest

from atx.connections import ledger_for, xero_gateway
from ledger import DocState
from sandbox.stack import SandboxStack
from sandbox.autotask import catalog
from tests.test_invoices_changes import END, connect, mapping_file, run
from tests.test_invoices_mapping_e2e import NZ, add_invoice, stack  # noqa: F401 (the fixture)

pytestmark = pytest.mark.e2e

RULES = [
    {"billing_item_type": "Labor", "item_code": "LABOUR"},
    {"product_sku": "DL-5550", "item_code": "DL5550"},
    {"item_name": "special thing", "item_code": "SPECIAL"},
    {"external_number": "MS-RECUR", "item_code": "MANAGED"},
]
INVOICE = 990001


def add_items_invoice(stack) -> None:
    """One line for each kind of rule, and one that no rule matches (Backup as a Service, recurring)."""
    add_invoice(stack, INVOICE, NZ, END - date.resolution * 3, [
        {"code": 29682801, "kind": 1, "rate": "165", "qty": "2"},                     # Labor
        {"code": 29682804, "name": "Dell Latitude 5550 Laptop", "rate": "1899"},     # product DL-5550
        {"code": 29682808, "kind": 4, "name": "Special Thing", "rate": "40"},        # by item name
        {"code": 29682806, "rate": "500"},                                            # MS-RECUR
        {"code": 29682807, "rate": "80"},                                             # no rule
    ])


def org_of(stack, settings):
    return stack.xero.orgs[settings.xero.tenant_id]


def xero_invoice(settings, autotask_id: int):
    row = ledger_for(settings).records(settings.name, "invoice")[str(autotask_id)]
    assert row.state == DocState.SYNCED, (row.state, row.reason)
    return xero_gateway(settings).find_invoices(ids=[row.target_id], with_lines=True)[0]


def test_lines_get_their_item_by_each_rule_and_missing_items_are_created_once(stack, tmp_path):
    settings = connect(stack, mapping=mapping_file(tmp_path, items={"rules": RULES, "create_missing": True}))
    add_items_invoice(stack)
    run()
    doc = xero_invoice(settings, INVOICE)
    assert [line.item_code for line in doc.line_items] == ["LABOUR", "DL5550", "SPECIAL", "MANAGED", None]

    org = org_of(stack, settings)
    created = {item["Code"]: item for item in org.items.values()}
    assert set(created) == {"LABOUR", "DL5550", "SPECIAL", "MANAGED"}
    # Named after the billing code of the first line that needs it (generated invoices have Labor lines too).
    assert created["MANAGED"]["Name"] == "Managed Services"
    assert created["LABOUR"]["Name"] in {name for name, *_ in catalog.BILLING_CODES.values()}
    assert created["MANAGED"]["SalesDetails"]["AccountCode"] == doc.line_items[3].account_code
    assert created["MANAGED"]["SalesDetails"]["TaxType"] == doc.line_items[3].tax_type
    item_calls = [key for key in org.idempotency if key[1].endswith(":items")]
    assert len(item_calls) == 1  # every missing item in one call
    rows = ledger_for(settings).records(settings.name, "item")
    assert {r.target_number for r in rows.values()} == set(created)
    assert all(r.state == DocState.SYNCED for r in rows.values())

    _, second = run()
    assert {item["Code"] for item in org.items.values()} == set(created)
    assert [key for key in org.idempotency if key[1].endswith(":items")] == item_calls  # a rerun creates none
    assert second.count("created") == 0


def test_an_item_xero_does_not_hold_sets_the_invoice_aside_with_the_reason_and_the_fix(stack, tmp_path):
    rules = [{"billing_item_type": "Labor", "item_code": "NOSUCH"}]
    settings = connect(stack, mapping=mapping_file(tmp_path, items={"rules": rules}))
    add_items_invoice(stack)
    run()
    row = ledger_for(settings).records(settings.name, "invoice")[str(INVOICE)]
    assert row.state == DocState.SET_ASIDE
    assert "Item code 'NOSUCH' is not valid" in row.reason
    assert "items.create_missing" in row.fix and "Products and services" in row.fix
    assert not org_of(stack, settings).items  # nothing created without create_missing


def test_refuse_unmatched_sets_aside_an_invoice_with_a_line_no_rule_matches(stack, tmp_path):
    settings = connect(stack, mapping=mapping_file(
        tmp_path, items={"rules": RULES, "refuse_unmatched": True, "create_missing": True}))
    add_items_invoice(stack)
    run()
    row = ledger_for(settings).records(settings.name, "invoice")[str(INVOICE)]
    assert row.state == DocState.SET_ASIDE
    assert f"billing item {INVOICE * 100 + 4} (type Recurring Service" in row.reason
    assert "items.rules" in row.fix


def test_the_first_sync_of_books_already_in_xero_uses_their_items_and_adopts_their_customer(atx_home, prefect_server,
                                                                                             tmp_path):
    rules = [{"billing_item_type": "Labor", "item_code": "LABOUR"},
             {"billing_item_type": "Recurring Service", "item_code": "MANAGED"}]
    with SandboxStack(seed=11, invoices=30, window_end=END, existing_books=True) as books:
        org = books.org
        before = {item["Code"] for item in org.items.values()}
        assert before == {"LABOUR", "MANAGED"}
        settings = connect(books, mapping=mapping_file(tmp_path, items={"rules": rules, "create_missing": True}))
        _, summary = run()
        assert {item["Code"] for item in org.items.values()} == before  # nothing created: Xero had them
        codes = {line["ItemCode"] for d in org.invoices.values() if d["Type"] == "ACCREC"
                 for line in d["LineItems"] if line.get("ItemCode")}
        assert codes and codes <= before
        customer = books.existing_customer()
        named = [c for c in org.contacts.values() if c["Name"].startswith(customer["companyName"])]
        assert len(named) == 1 and named[0]["ContactNumber"] == str(customer["id"])  # adopted, no "(Autotask #id)" copy
        assert any(customer["companyName"] in message for message in summary.contacts_adopted)

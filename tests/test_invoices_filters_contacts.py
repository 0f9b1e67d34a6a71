"""The mapping's filters and contact options, end to end: a real invoices flow against the sandbox over HTTP,
and what Xero then holds. Expected values come from the Autotask records and the README, not from core/."""
from __future__ import annotations

from decimal import Decimal

import pytest
from xero_python.accounting import Contact

from atx.connections import ledger_for, xero_gateway
from sandbox.autotask.generator import BILLING_CONTACT_COMPANY_ID, NO_SYNC_COMPANY_ID
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import END, connect, live_invoices, manual_clock, mapping_file, run

pytestmark = pytest.mark.e2e

# Companies of SandboxStack(seed=11): the first six invoices go to the first six customers, one each.
NZ, NZ2, AU = 174, 175, 176


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=8, window_end=END, clock=manual_clock(), filter_cases=True) as s:
        yield s


def _udf(company: dict, name: str):
    return next((u["value"] for u in company.get("userDefinedFields") or [] if u["name"] == name), None)


def _xero_numbers(stack) -> set[str]:
    return {d.get("InvoiceNumber") for d in stack.org.invoices.values() if d["Status"] != "DELETED"}


def test_filters_skip_and_report_each_invoice_with_its_rule_and_send_none_of_them(stack, tmp_path):
    # A company classified "Internal - do not invoice" (Companies.classification 3, by its picklist label).
    stack.autotask.update("Companies", AU, {"classification": 3})
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, filters={
        "minimum_total": 5.00, "no_sync_udf": {"name": "Xero Sync", "values": ["no"]},
        "no_sync_classifications": ["internal - do not invoice"]}))
    companies = {c["id"]: c for c in stack.autotask.records("Companies")}
    expected = {}
    for invoice in live_invoices(stack):
        company = companies[invoice["companyID"]]
        if _udf(company, "Xero Sync") == "No":
            expected[invoice["invoiceNumber"]] = f"company {company['id']} Xero Sync is 'No': filters.no_sync_udf"
        elif company.get("classification") == 3:
            expected[invoice["invoiceNumber"]] = (f"company {company['id']} classification 'Internal - do not invoice'"
                                                  ": filters.no_sync_classifications")
        elif abs(Decimal(str(invoice["invoiceTotal"]))) < Decimal("5.00"):
            expected[invoice["invoiceNumber"]] = "under 5.00: filters.minimum_total"
    assert {"INV-F0001", "INV-F0003"} <= set(expected)  # the sandbox's cases: a no-sync company, a tiny invoice
    assert any(v.endswith("no_sync_classifications") for v in expected.values())

    _, summary = run()
    skipped = {o.source_number: o.action for o in summary.outcomes if o.result.value == "skipped"}
    assert skipped == {n: f"skipped ({rule})" for n, rule in expected.items()}
    assert skipped["INV-F0003"] == "skipped (under 5.00: filters.minimum_total)"
    in_xero = _xero_numbers(stack)
    assert not in_xero & set(expected), "a filtered invoice reached Xero"
    others = {i["invoiceNumber"] for i in live_invoices(stack)} - set(expected)
    assert others <= in_xero and summary.count("created") == len(others)
    rows = ledger_for(settings).records("acme", "invoice")
    assert not {str(i["id"]) for i in live_invoices(stack) if i["invoiceNumber"] in expected} & set(rows)

    # A rerun skips and reports them again; nothing new is written.
    _, again = run()
    assert {o.source_number for o in again.outcomes if o.result.value == "skipped"} == set(expected)
    assert again.count("created") == 0 and not _xero_numbers(stack) & set(expected)


def test_existing_xero_contacts_are_adopted_by_account_number_or_name_and_reported(stack, tmp_path):
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, contacts={
        "match": ["account_number", "name"], "billing_contact_udf": "Billing Contact"}))
    companies = {c["id"]: c for c in stack.autotask.records("Companies")}
    xero = xero_gateway(settings)
    # The MSP already has customers in Xero: one under another spelling of its name, one under its account
    # number, and a name Xero holds twice (one archived), which must not be merged with either.
    by_name, by_account, twin_a, twin_b = xero.create_contacts([
        Contact(name=companies[NZ]["companyName"].upper()),
        Contact(name="Southern Cross Acctg (old name)", account_number=companies[AU]["companyNumber"]),
        Contact(name=companies[NZ2]["companyName"]),
        Contact(name=companies[NZ2]["companyName"] + " (archived)"),
    ], idempotency_key="msp-before-sync")
    stack.org.contacts[twin_a.xero_id]["ContactStatus"] = "ARCHIVED"
    stack.org.contacts[twin_b.xero_id]["Name"] = companies[NZ2]["companyName"].lower()  # the same name to Xero
    stack.org.reindex()  # a name changed in place: the sandbox files it again
    contacts_before = len(stack.org.contacts)

    _, summary = run()
    rows = ledger_for(settings).records("acme", "invoice")

    def contact_of(company_id):
        invoice = next(i for i in live_invoices(stack) if i["companyID"] == company_id)
        return stack.org.contacts[stack.org.invoices[rows[str(invoice["id"])].target_id]["Contact"]["ContactID"]]

    assert contact_of(NZ)["ContactID"] == by_name.xero_id and contact_of(NZ)["ContactNumber"] == str(NZ)
    assert contact_of(AU)["ContactID"] == by_account.xero_id and contact_of(AU)["ContactNumber"] == str(AU)
    assert contact_of(AU)["AccountNumber"] == companies[AU]["companyNumber"]
    assert summary.contacts_adopted == [  # in the mapping's order of matching
        f"Autotask company {AU} adopted the existing Xero contact 'Southern Cross Acctg (old name)' "
        "(the same account number)",
        f"Autotask company {NZ} adopted the existing Xero contact '{companies[NZ]['companyName'].upper()}' (the same name)",
    ]
    # Two candidates: neither is adopted, no copy is made, and the invoices say why.
    aside = [o for o in summary.set_aside if o.source_number in
             {i["invoiceNumber"] for i in live_invoices(stack) if i["companyID"] == NZ2}]
    assert aside and all("2 contacts named" in o.reason for o in aside)
    assert not any(c.get("ContactNumber") == str(NZ2) for c in stack.org.contacts.values())
    assert not any("(Autotask #" in c["Name"] for c in stack.org.contacts.values())
    # The billing contact the company's UDF names gives the person and e-mail, not the primary contact.
    billing = contact_of(BILLING_CONTACT_COMPANY_ID)
    assert (billing["FirstName"], billing["LastName"]) == ("Tui", "Harrison")
    assert billing["EmailAddress"] == "tui.harrison@marlborough.example.com"
    primary = next(c for c in stack.autotask.records("Contacts")
                   if c["companyID"] == NZ and c["primaryContact"])
    assert contact_of(NZ)["EmailAddress"] == primary["emailAddress"]
    created = {c["ContactNumber"] for c in stack.org.contacts.values() if c.get("ContactNumber")}
    assert len(stack.org.contacts) == contacts_before + len(created - {str(NZ), str(AU)})

    # The next run finds them by ContactNumber: nothing adopted again, nothing reported again.
    _, again = run()
    assert again.contacts_adopted == [] and again.count("created") == 0
    assert NO_SYNC_COMPANY_ID in companies  # the filter cases are there, unfiltered here


def _xero_doc(stack, settings, invoice_id: int) -> dict:
    return stack.org.invoices[ledger_for(settings).records("acme", "invoice")[str(invoice_id)].target_id]


def test_labour_lines_carry_their_time_entries(stack, tmp_path):
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, line_presentation={"time_entries": True}))
    _, summary = run()
    assert summary.set_aside_count == 0
    entries = {e["id"]: e for e in stack.autotask.records("TimeEntries")}
    resources = {r["id"]: r for r in stack.autotask.records("Resources")}
    labour = [l for l in stack.autotask.records("BillingItems") if l.get("timeEntryID") in entries]
    assert labour, "the sandbox should bill time entries"
    for line in labour:
        entry = entries[line["timeEntryID"]]
        who = resources[entry["resourceID"]]
        text = "\n".join(l["Description"] for l in _xero_doc(stack, settings, line["invoiceID"])["LineItems"])
        assert (f"{entry['dateWorked'][:10]} {who['firstName']} {who['lastName']} "
                f"{Decimal(str(entry['hoursToBill'])).normalize():f}h: {entry['summaryNotes']}") in text


def test_summary_lines_one_per_tax_type_and_account_with_the_totals_to_the_cent(stack, tmp_path):
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, tracking=None, line_presentation={
        "mode": "summary", "summary_description": "IT services {invoiceNumber}"}))
    _, summary = run()
    assert summary.set_aside_count == 0
    for invoice in live_invoices(stack):
        doc = _xero_doc(stack, settings, invoice["id"])
        keys = [(l["AccountCode"], l["TaxType"]) for l in doc["LineItems"]]
        assert len(keys) == len(set(keys))
        assert {l["Description"] for l in doc["LineItems"]} == {f"IT services {invoice['invoiceNumber']}"}
        assert Decimal(str(doc["Total"])) == Decimal(str(invoice["invoiceTotal"]))
        assert Decimal(str(doc["TotalTax"])) == Decimal(str(invoice["totalTaxValue"]))

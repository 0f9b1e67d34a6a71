"""Contacts, credit notes, currencies, PDF attachments and data built to break things, through the flow."""
from __future__ import annotations

from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import json
from decimal import Decimal

import pytest

from atx.connections import ledger_for, xero_gateway
from ledger import DocState
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import END, assert_each_once, connect, live_invoices, manual_clock, run

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=20, window_end=END, clock=manual_clock()) as s:
        yield s


def clone_company(stack, source_id: int, new_id: int, **fields) -> dict:
    company = next(c for c in stack.autotask.records("Companies") if c["id"] == source_id)
    stack.autotask.insert("Companies", {**company, "id": new_id, "companyNumber": f"C{new_id}", **fields})
    contact = next(c for c in stack.autotask.records("Contacts") if c["companyID"] == source_id and c["primaryContact"])
    stack.autotask.insert("Contacts", {**contact, "id": contact["id"] + new_id * 1000, "companyID": new_id,
                                       "emailAddress": f"accounts@c{new_id}.example.com"})
    return stack.autotask.records("Companies")[-1]


def clone_invoice(stack, source: dict, new_id: int, *, company_id: int | None = None, sign: int = 1,
                  exempt: bool = False, long_description: bool = False) -> dict:
    """A copy of an Autotask invoice and its billing items, whose totals still add up to the cent."""
    lines = [l for l in stack.autotask.records("BillingItems") if l["invoiceID"] == source["id"]]
    total = tax = Decimal(0)
    for n, line in enumerate(lines):
        extended = sign * Decimal(str(line["extendedPrice"]))
        line_tax = Decimal(0) if exempt else sign * Decimal(str(line["taxDollars"]))
        total, tax = total + extended + line_tax, tax + line_tax
        description = ("Ünïcödé support — " * 300)[:5000] if long_description and n == 0 else line["description"]
        stack.autotask.insert("BillingItems", {
            **line, "id": line["id"] + new_id * 100, "invoiceID": new_id, "companyID": company_id or line["companyID"],
            "quantity": sign * Decimal(str(line["quantity"])), "extendedPrice": extended, "taxDollars": line_tax,
            "totalAmount": extended + line_tax, "description": description,
        })
    stack.autotask.insert("Invoices", {
        **source, "id": new_id, "invoiceNumber": f"INV-{new_id}", "companyID": company_id or source["companyID"],
        "invoiceTotal": total, "totalTaxValue": tax,
    })
    return next(i for i in stack.autotask.records("Invoices") if i["id"] == new_id)


def _first_of(stack, company_id: int) -> dict:
    return next(i for i in live_invoices(stack) if i["companyID"] == company_id)


def _contact_of(stack, settings, autotask_id: int, doc_type: str = "invoice") -> dict:
    row = ledger_for(settings).records(settings.name, doc_type)[str(autotask_id)]
    store = stack.org.invoices if doc_type == "invoice" else stack.org.credit_notes
    return stack.org.contacts[store[row.target_id]["Contact"]["ContactID"]]


def test_contacts_credit_notes_and_awkward_data(stack):
    companies = {c["id"]: c for c in stack.autotask.records("Companies") if c["companyType"] == 1}
    billed = sorted({i["companyID"] for i in live_invoices(stack)} & set(companies))
    a, b = billed[0], billed[1]
    source = _first_of(stack, a)
    # Two companies, one name; a Unicode name; a tax-exempt company; a description over 4000 characters.
    twin = clone_company(stack, a, 9001)
    clone_invoice(stack, source, 880001, company_id=9001)
    clone_company(stack, a, 9002, companyName="Ōtautahi Café & Co — Ünïcödé Ltd")
    clone_invoice(stack, source, 880002, company_id=9002, long_description=True)
    clone_company(stack, a, 9003, companyName="Charity Trust (exempt)", isTaxExempt=True)
    clone_invoice(stack, source, 880003, company_id=9003, exempt=True)
    credit = clone_invoice(stack, _first_of(stack, b), 880004, sign=-1)  # a credit: a Xero credit note
    # Xero already has a contact with b's exact name and no ContactNumber: adopt it, never duplicate it.
    hand_made = xero_gateway(settings := connect(stack, "acme")).create_contacts(
        [__import__("xero_python.accounting", fromlist=["Contact"]).Contact(name=companies[b]["companyName"])],
        idempotency_key="hand-made")[0]

    _, first = run()
    assert_each_once(stack, settings)
    twin_contact = _contact_of(stack, settings, 880001)
    original = _contact_of(stack, settings, source["id"])
    assert twin_contact["ContactID"] != original["ContactID"]
    assert original["Name"] == companies[a]["companyName"] and original["ContactNumber"] == str(a)
    assert twin_contact["Name"] == f"{twin['companyName']} (Autotask #9001)" and twin_contact["ContactNumber"] == "9001"
    unicode_contact = _contact_of(stack, settings, 880002)
    assert unicode_contact["Name"] == "Ōtautahi Café & Co — Ünïcödé Ltd"
    assert unicode_contact["EmailAddress"] == "accounts@c9002.example.com"
    assert unicode_contact["TaxNumber"] == companies[a]["taxID"]
    long_doc = stack.org.invoices[ledger_for(settings).records("acme", "invoice")["880002"].target_id]
    assert max(len(l["Description"]) for l in long_doc["LineItems"]) == 4000
    exempt_doc = stack.org.invoices[ledger_for(settings).records("acme", "invoice")["880003"].target_id]
    assert {l["TaxType"] for l in exempt_doc["LineItems"]} == {"EXEMPTOUTPUT"} and exempt_doc["TotalTax"] == 0
    adopted = _contact_of(stack, settings, _first_of(stack, b)["id"])
    assert adopted["ContactID"] == hand_made.xero_id and adopted["ContactNumber"] == str(b)
    assert len([c for c in stack.org.contacts.values() if c["Name"] == companies[b]["companyName"]]) == 1
    # The credit is a credit note with positive amounts, under the Autotask number.
    row = ledger_for(settings).records("acme", "credit_note")[str(credit["id"])]
    note = stack.org.credit_notes[row.target_id]
    assert note["CreditNoteNumber"] == "INV-880004" and note["Total"] == -Decimal(str(credit["invoiceTotal"]))
    outcome = next(o for o in first.outcomes if o.autotask_id == credit["id"])
    assert outcome.action == "created" and outcome.document_type == "ACCRECCREDIT" and "CreditNote" in outcome.link

    # A rerun changes nothing: no contact is written again when Autotask did not change.
    stamps = {k: c["UpdatedDateUTC"] for k, c in stack.org.contacts.items()}
    stack.clock.advance(1)  # so that any write stamps a later UpdatedDateUTC
    _, second = run()
    assert second.count("created") == 0
    assert {k: c["UpdatedDateUTC"] for k, c in stack.org.contacts.items()} == stamps
    # A changed company is updated in Xero (same contact), and only that one.
    stack.autotask.update("Companies", 9002, {"phone": "+64 3 555 0199"})
    stack.clock.advance(1)
    _, third = run()
    updated = _contact_of(stack, settings, 880002)
    assert updated["ContactID"] == unicode_contact["ContactID"]
    assert any(p.get("PhoneNumber") == "+64 3 555 0199" for p in updated.get("Phones", []))
    assert [k for k, c in stack.org.contacts.items() if c["UpdatedDateUTC"] != stamps.get(k)] == [updated["ContactID"]]
    # The credit voided in Autotask: the draft credit note is deleted in Xero.
    stack.autotask.update("Invoices", credit["id"], {"isVoided": True, "voidedDate": "2026-11-20T00:00:00Z"})
    _, fourth = run()
    assert next(o for o in fourth.outcomes if o.autotask_id == credit["id"]).action == "deleted in Xero (was a draft)"
    assert stack.org.credit_notes[row.target_id]["Status"] == "DELETED"
    assert_each_once(stack, settings)


def test_a_contact_of_another_company_number_is_never_adopted(stack):
    settings = connect(stack, "acme")
    from xero_python.accounting import Contact

    victim_company = live_invoices(stack)[0]["companyID"]
    name = next(c["companyName"] for c in stack.autotask.records("Companies") if c["id"] == victim_company)
    other = xero_gateway(settings).create_contacts([Contact(name=name, contact_number="SOMEONE-ELSE")], idempotency_key="x")[0]
    _, summary = run()
    aside = [s for s in summary.set_aside if str(victim_company) in s.reason]
    assert aside and all("SOMEONE-ELSE" in s.reason for s in aside)
    assert stack.org.contacts[other.xero_id]["ContactNumber"] == "SOMEONE-ELSE"
    assert summary.count("created") == len(live_invoices(stack)) - summary.set_aside_count
    assert_each_once(stack, settings)


def test_currencies_rates_and_a_currency_the_org_lacks(stack):
    from prefect.client.orchestration import get_client

    settings = connect(stack, "acme")
    stack.org.currencies.pop("USD")
    state, summary = run()
    usd = [s for s in summary.set_aside if "USD" in s.reason]
    gbp = [i for i in live_invoices(stack) if i["companyID"] in
           {c["id"] for c in stack.autotask.records("Companies") if c.get("currencyID") == 3}]
    assert gbp, "the sandbox data should bill a British customer"
    doc = stack.org.invoices[ledger_for(settings).records("acme", "invoice")[str(gbp[0]["id"])].target_id]
    assert doc["CurrencyCode"] == "GBP" and doc["CurrencyRate"] == Decimal("0.458700")  # GBP per 1 NZD
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id  # filtered: an unfiltered read returns one page of the server's
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    markdown = next(a.data for a in artifacts if a.key == "invoices-acme-summary")
    table = next(a for a in artifacts if a.key == "invoices-acme")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert "| GBP |" in markdown and "API calls: Autotask" in markdown
    created = [r for r in rows if r["Action"] == "created"]
    assert created and all(r["Xero total"] and r["Autotask total"] for r in created)
    assert usd and all("add USD in Xero" in s.fix for s in usd)  # core sets them aside with the fix
    assert "lacks" in markdown and "USD" in markdown  # and the report says so
    assert_each_once(stack, settings)


def test_a_run_reports_every_call_it_made_preflight_and_pdfs_included(stack):
    settings = connect(stack, "acme", attach_pdfs=True)
    autotask_before = dict(stack.autotask_faults.requests_by_api)
    xero_before = dict(stack.xero.faults.requests_by_api)
    _, summary = run()
    autotask = {k: n - autotask_before.get(k, 0) for k, n in stack.autotask_faults.requests_by_api.items()}
    xero = {k: n - xero_before.get(k, 0) for k, n in stack.xero.faults.requests_by_api.items()}
    created = summary.count("created")
    assert created and not summary.attach_failures
    assert sum(len(stack.org.attachments.get(o.xero_id, {})) for o in summary.outcomes if o.xero_id) == created
    assert summary.autotask_calls == sum(n for k, n in autotask.items() if k.endswith("/v1.0")), autotask
    assert summary.xero_calls == xero.get("/api.xro/2.0", 0), xero


def test_pdfs_are_attached_once_and_a_failed_one_next_run(stack):
    settings = connect(stack, "acme", attach_pdfs=True)
    victim = live_invoices(stack)[2]
    # Attachments go after the invoices exist; the victim's attachment call loses its answer.
    _, planned = run(dry_run=True)
    _, first = run()
    rows = ledger_for(settings).records("acme", "invoice")
    synced = {k: r for k, r in rows.items() if r.state == DocState.SYNCED}
    assert synced and all(r.attached_at for r in synced.values())
    for r in synced.values():
        files = stack.org.attachments[r.target_id]
        assert len(files) == 1 and next(iter(files.values()))["Content"].startswith(b"%PDF")

    # Take the victim's attachment away and make its next attempt fail: the run after retries it.
    ledger = ledger_for(settings)
    mine = rows[str(victim["id"])]
    with ledger.session() as s:
        row = s.get(type(mine), mine.id)
        row.facts = {k: v for k, v in row.facts.items() if k != "attached_at"}
        s.commit()
    assert ledger.records("acme", "invoice")[str(victim["id"])].attached_at is None
    stack.org.attachments.pop(mine.target_id)
    stack.xero.faults.script("500", method="PUT", path_prefix=f"/api.xro/2.0/Invoices/{mine.target_id}/Attachments")
    _, second = run()
    assert str(victim["id"]) in second.attach_failures
    assert mine.target_id not in stack.org.attachments
    stamps = {k: r.attached_at for k, r in ledger.records("acme", "invoice").items()}
    _, third = run()
    assert third.attach_failures == {}
    assert len(stack.org.attachments[mine.target_id]) == 1
    after = ledger.records("acme", "invoice")
    assert all(after[k].attached_at == v for k, v in stamps.items() if v is not None)  # nothing attached twice

"""The pure parts of the filters, contact matching and line presentation options, without HTTP."""
from __future__ import annotations

from decimal import Decimal

import pytest

from core.contacts import Candidate, billing_person, match_contacts
from core.filters import filter_invoices, under_minimum
from core.invoices import (
    DESCRIPTION_LIMIT, ELLIPSIS, companies_frame, invoices_frame, lines_frame, plan_invoices, time_entry_text,
    xero_totals,
)
from core.mapping import InvoiceFilters, InvoiceMapping, MappingError, load_mapping
from sandbox.autotask.generator import generate_data
from tests.test_core_features import GENERATED_XERO


def test_minimum_total_is_exact_decimal_and_applies_to_credits_made_positive():
    filters = InvoiceFilters.model_validate({"minimum_total": 5.1})
    assert filters.minimum_total == Decimal("5.1")
    assert under_minimum(Decimal("5.09"), filters) == "under 5.10: filters.minimum_total"
    assert under_minimum(Decimal("5.10"), filters) is None
    assert under_minimum(Decimal("-2.00"), filters) == "under 5.10: filters.minimum_total"


def test_a_bad_filter_names_the_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("filters:\n  minimum_total: lots\n")
    with pytest.raises(MappingError, match="filters.minimum_total"):
        load_mapping(path)
    path.write_text("filters:\n  no_sync_udf: {name: Xero Sync}\n")
    with pytest.raises(MappingError, match="filters.no_sync_udf.values"):
        load_mapping(path)


def test_filters_name_their_rule_and_leave_voided_invoices_alone():
    data = generate_data(seed=11, invoices=8, filter_cases=True)
    data["Companies"][2]["classification"] = 3
    picklists = {"Companies.classification": [{"value": "3", "label": "Internal - do not invoice"}]}
    voided = next(i for i in data["Invoices"] if i["invoiceNumber"] == "INV-F0001")
    filters = InvoiceFilters.model_validate({"minimum_total": "5", "no_sync_udf": {"name": "xero sync", "values": ["NO"]},
                                             "no_sync_classifications": ["INTERNAL - DO NOT INVOICE"]})
    found = {f.number: f.detail for f in filter_invoices(invoices_frame(data["Invoices"]), companies_frame(data["Companies"]),
                                                         {"Picklists": picklists}, filters)}
    assert found["INV-F0001"] == "company 190 Xero Sync is 'No': filters.no_sync_udf"
    assert found["INV-F0003"] == "under 5.00: filters.minimum_total"
    assert found["INV-10003"] == "company 176 classification 'Internal - do not invoice': filters.no_sync_classifications"
    voided["isVoided"] = True
    again = filter_invoices(invoices_frame(data["Invoices"]), companies_frame(data["Companies"]), {"Picklists": picklists},
                            filters)
    assert "INV-F0001" not in {f.number for f in again}
    assert filter_invoices(invoices_frame(data["Invoices"]), companies_frame(data["Companies"]), {}, InvoiceFilters()) == []


def test_name_matching_compares_as_xero_does_and_never_merges_two_candidates():
    candidates = [Candidate("a", "HARBOURSIDE  dental ltd"), Candidate("b", "Kauri Freight"),
                  Candidate("c", "kauri freight"), Candidate("d", "Other Co", contact_number="SOMEONE")]
    adopted, refused = match_contacts({1: "Harbourside Dental Ltd", 2: "Kauri Freight", 3: "Other Co", 4: "Nobody"},
                                      candidates, "name")
    assert {k: a.contact_id for k, a in adopted.items()} == {1: "a"}
    assert adopted[1].message == "Autotask company 1 adopted the existing Xero contact 'HARBOURSIDE  dental ltd' (the same name)"
    assert "2 contacts named 'Kauri Freight'" in refused[2] and "ContactNumber SOMEONE" in refused[3]
    assert 4 not in refused
    # A contact another company already holds is not adopted a second time.
    adopted, refused = match_contacts({5: "C1"}, [Candidate("x", "X Ltd", account_number="c1")], "account_number", {"x"})
    assert not adopted and "already another Autotask company's" in refused[5]


def test_the_billing_contact_udf_picks_the_person_else_the_primary():
    company = {"id": 9, "userDefinedFields": [{"name": "Billing Contact", "value": "tui  harrison"}]}
    primary = {"id": 1, "firstName": "Ana", "lastName": "Ngata", "primaryContact": True}
    tui = {"id": 2, "firstName": "Tui", "lastName": "Harrison", "emailAddress": "t@x", "primaryContact": False}
    assert billing_person(company, [primary, tui], "Billing Contact") == (tui, None)
    assert billing_person(company, [primary, tui], None) == (primary, None)
    company["userDefinedFields"][0]["value"] = "t@x"
    assert billing_person(company, [primary, tui], "billing contact")[0] is tui
    company["userDefinedFields"][0]["value"] = "Someone Gone"
    person, note = billing_person(company, [primary, tui], "Billing Contact")
    assert person is primary and "names none of its contacts" in note


def _plan(data, **presentation):
    mapping = load_mapping("mappings/demo.yaml")
    mapping = mapping.model_copy(update={"line_presentation": mapping.line_presentation.model_copy(update=presentation),
                                         "tracking": []})
    return plan_invoices(invoices_frame(data["Invoices"]), lines_frame(data["BillingItems"]),
                         companies_frame(data["Companies"]), data, mapping, GENERATED_XERO)


def test_summary_lines_keep_the_totals_to_the_cent():
    data = generate_data(seed=5, invoices=40)
    plan = _plan(data, mode="summary")
    invoices = {i["id"]: i for i in data["Invoices"]}
    assert not plan.set_aside and len(plan.drafts)
    for invoice_id, rows in plan.drafts.groupby("autotask_invoice_id"):
        keys = list(zip(rows["account_code"], rows["tax_type"]))
        assert len(keys) == len(set(keys)), "one line per account and TaxType"
        assert set(rows["description"]) == {f"Services for {invoices[invoice_id]['invoiceNumber']}"}
        _, tax, total = xero_totals(rows, GENERATED_XERO.tax_types)
        assert total == abs(invoices[invoice_id]["invoiceTotal"]) and tax == abs(invoices[invoice_id]["totalTaxValue"])


def test_time_entries_go_on_labour_lines_cut_to_xeros_limit():
    data = generate_data(seed=11, invoices=8)
    entry = data["TimeEntries"][0]
    resources = {r["id"]: r for r in data["Resources"]}
    who = resources[entry["resourceID"]]
    assert time_entry_text(entry, resources) == (f"{entry['dateWorked'][:10]} {who['firstName']} {who['lastName']} "
                                                 f"{entry['hoursToBill'].normalize():f}h: {entry['summaryNotes']}")
    entry["summaryNotes"] = "Very long notes. " * 400
    plan = _plan(data, time_entries=True)
    line = next(l for l in data["BillingItems"] if l.get("timeEntryID") == entry["id"])
    text = plan.drafts[plan.drafts["autotask_invoice_id"] == line["invoiceID"]]["description"]
    long = [t for t in text if len(t) == DESCRIPTION_LIMIT]
    assert long and long[0].endswith(ELLIPSIS) and who["lastName"] in long[0]
    assert not any(entry["summaryNotes"][:40] in t for t in _plan(data).drafts["description"])

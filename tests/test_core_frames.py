"""Autotask records -> validated frames; malformed records are kept out, never raised."""

from decimal import Decimal as D
from pathlib import Path

import pytest

from core.invoices import (
    XeroReference, companies_frame, content_hash, invoices_frame, lines_frame, plan_invoices,
)
from core.mapping import load_mapping
from core.schemas import AutotaskCompanies, AutotaskInvoiceLines, AutotaskInvoices, XeroInvoiceDraft, column_dtypes
from tests.test_core_invoices import xero_body

DEMO_MAPPING = Path(__file__).resolve().parent.parent / "mappings" / "demo.yaml"


@pytest.mark.parametrize("build, model", [(invoices_frame, AutotaskInvoices), (lines_frame, AutotaskInvoiceLines),
                                          (companies_frame, AutotaskCompanies)])
def test_no_records_give_an_empty_frame_with_every_column(build, model):
    frame = build([])
    assert frame.empty
    assert list(frame.columns) == list(column_dtypes(model))
    model.validate(frame)


def test_money_is_decimal_even_when_the_client_sent_floats_or_text():
    frame = invoices_frame([{"id": 1, "companyID": 2, "invoiceDateTime": "2026-11-03T00:00:00.000Z",
                             "invoiceTotal": 114.9, "totalTaxValue": "14.99", "isVoided": False}])
    assert frame.loc[0, "invoiceTotal"] == D("114.9") and isinstance(frame.loc[0, "invoiceTotal"], D)
    assert frame.loc[0, "totalTaxValue"] == D("14.99")


def test_missing_booleans_read_as_false_and_unknown_fields_are_ignored():
    frame = companies_frame([{"id": 174, "companyName": "Ōtautahi Ltd", "userDefinedFields": [], "isActive": True}])
    assert frame.loc[0, "isTaxExempt"] == False  # noqa: E712 - a pandas boolean, not a Python bool
    assert frame.loc[0, "companyName"] == "Ōtautahi Ltd"


def test_malformed_records_are_left_out_with_their_problems():
    records = [
        {"id": 1, "invoiceID": 10, "quantity": D("1"), "rate": D("5"), "extendedPrice": D("5"),
         "taxDollars": D("0.75"), "totalAmount": D("5.75")},
        {"id": 2, "invoiceID": 10, "quantity": "two", "extendedPrice": D("5"), "taxDollars": D("0.75"),
         "totalAmount": D("5.75")},
        {"id": 3, "invoiceID": None, "quantity": D("1"), "extendedPrice": D("5"), "taxDollars": D("0.75"),
         "totalAmount": D("5.75"), "billingCodeID": 1.5},
    ]
    frame = lines_frame(records)
    assert list(frame["id"]) == [1]
    rejected = {r.record["id"]: r.problems for r in frame.attrs["rejected_lines"]}
    assert rejected[2] == ("quantity = 'two' cannot be read: not a number",)
    assert "invoiceID is missing" in rejected[3]
    assert "billingCodeID = 1.5 cannot be read: not a whole number" in rejected[3]
    assert {r.record["id"]: r.fields for r in frame.attrs["rejected_lines"]} == {
        2: ("quantity",), 3: ("billingCodeID", "invoiceID")}


def test_duplicate_ids_are_rejected():
    row = {"id": 7, "companyName": "A"}
    frame = companies_frame([row, dict(row)])
    assert frame.empty
    assert all("appears more than once" in " ".join(r.problems) for r in frame.attrs["rejected_companies"])


def test_demo_mapping_maps_everything_the_generator_produces():
    generator = pytest.importorskip("sandbox.autotask.generator")
    data = generator.generate_data(seed=11, invoices=60)
    xero = XeroReference(
        account_codes=frozenset({"200", "260", "400", "404", "429"}),
        tax_types={"OUTPUT2": D("15"), "NONE": D("0"), "ZERORATED": D("0"), "EXEMPTOUTPUT": D("0"),
                   "TAX001": D("10"), "TAX002": D("20")},
        currencies=frozenset({"NZD", "AUD", "GBP", "USD"}), base_currency="NZD",
        tracking={"Region": frozenset({"North", "South", "Central"}),
                  "Department": frozenset({"Managed Services", "Projects", "Hardware"})},
        branding_themes={"Standard": "5d1c5b1e-0000-4000-8000-000000000001",
                         "Managed Services": "5d1c5b1e-0000-4000-8000-000000000002"})
    result = plan_invoices(invoices_frame(data["Invoices"]), lines_frame(data["BillingItems"]),
                           companies_frame(data["Companies"]), data, load_mapping(DEMO_MAPPING), xero)
    voided = {i["id"] for i in data["Invoices"] if i["isVoided"]}
    assert result.set_aside == [] and {s.autotask_id for s in result.skipped} == voided
    assert all("voided" in s.reason for s in result.skipped)
    XeroInvoiceDraft.validate(result.drafts)
    invoices = {i["id"]: i for i in data["Invoices"]}
    for invoice_id, rows in result.drafts.groupby("autotask_invoice_id"):
        body = xero_body(rows)
        assert body["InvoiceNumber"] == invoices[invoice_id]["invoiceNumber"]
        lines = sum((D(str(item["LineAmount"])) for item in body["LineItems"]), D(0))
        assert lines == invoices[invoice_id]["invoiceTotal"] - invoices[invoice_id]["totalTaxValue"]
        assert len(content_hash(rows)) == 64
    assert len(set(result.drafts["autotask_invoice_id"])) == len(invoices) - len(voided)

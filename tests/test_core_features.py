"""The invoice feature set of the mapping: accounts, tax and rounding, tracking, branding, numbers, references,
due dates, status, line grouping, currencies, credit notes and contact names. Pure and fast."""

import datetime as dt
from decimal import Decimal as D

import pytest
from xero_python.accounting import CreditNote, Invoice
from xero_python.api_client.serializer import serialize

from core.invoices import (
    XeroReference, companies_frame, contact_name_for, content_hash, currency_rate_for, invoices_frame, lines_frame,
    contact_draft, invoice_documents, plan_invoices, xero_totals,
)
from clients.xero import sdk_contact
from core.mapping import BrandingRules, TrackingRule
from tests.test_core_invoices import REFERENCE_DATA, XERO, company, invoice_for, line, mapping, money, xero_body, xero_model

THEMES = {"Standard": "11111111-0000-4000-8000-000000000001", "Managed Services": "11111111-0000-4000-8000-000000000002"}
FULL_XERO = XeroReference(
    account_codes=XERO.account_codes | {"860"}, tax_types={**XERO.tax_types, "TAX001": D("10")},
    currencies=frozenset({"NZD", "GBP", "AUD"}), base_currency="NZD",
    tracking={"Region": frozenset({"North", "South"}), "Department": frozenset({"Managed Services", "Projects"})},
    branding_themes=THEMES,
)
REFERENCE = {
    **REFERENCE_DATA,
    "Currencies": [{"id": 1, "name": "NZD", "isInternalCurrency": True, "exchangeRate": D("1")},
                   {"id": 2, "name": "AUD", "exchangeRate": D("0.9134")}, {"id": 3, "name": "GBP", "exchangeRate": None},
                   {"id": 9, "name": "EUR", "exchangeRate": D("0.55")}, {"id": 11, "name": "XBT"}],
    "PaymentTerms": [{"id": 5, "name": "Net 30", "paymentDueInDays": 30}, {"id": 2, "name": "Net 7", "paymentDueInDays": 7}],
    "InvoiceTemplates": [{"id": 101, "name": "Standard Invoice"}, {"id": 102, "name": "Managed Services Invoice"}],
    "Products": [{"id": 31001, "name": "Dell Latitude 5550 Laptop", "sku": "DL-5550", "productBillingCodeID": 29682801}],
    "Picklists": {"BillingCodes.department": [{"value": 1, "label": "Service Desk"}, {"value": 2, "label": "Projects"}],
                  "BillingCodes.generalLedgerAccount": [{"value": 1, "label": "4000 Labour Revenue"}]},
}
for code in REFERENCE["BillingCodes"]:
    code.setdefault("department", 1)


def plan(invoices, lines, companies=None, the_mapping=None, xero=FULL_XERO, **kwargs):
    return plan_invoices(invoices_frame(invoices), lines_frame(lines), companies_frame(companies or [company()]),
                         REFERENCE, the_mapping or mapping(), xero, **kwargs)


def one(lines, the_mapping=None, companies=None, xero=FULL_XERO, plan_kwargs=None, **invoice_fields):
    return plan([invoice_for(lines, **invoice_fields)], lines, companies, the_mapping, xero, **(plan_kwargs or {}))


def aside_of(result):
    assert result.drafts.empty, "expected the invoice to be set aside"
    [aside] = result.set_aside
    return aside


def assert_reproduces(drafts, invoice, xero=FULL_XERO, tax=True):
    """Xero's arithmetic over the drafts gives Autotask's totals (signs turned for a credit note)."""
    sign = -1 if drafts.iloc[0]["document_type"] == "ACCRECCREDIT" else 1
    _, xero_tax, total = xero_totals(drafts, xero.tax_types)
    assert total == sign * money(invoice["invoiceTotal"])
    if tax:
        assert xero_tax == sign * money(invoice["totalTaxValue"])


# -- 1. account codes ----------------------------------------------------------------------------------

def test_product_rule_wins_over_the_billing_code():
    lines = [line(80000001, "1", "1899", itemName="Dell Latitude 5550 Laptop"), line(80000002, "1", "10")]
    drafts = one(lines, mapping(accounts={"by_product_name": {"DL-5550": "400"}, "by_billing_code_id": {29682801: "260"}})).drafts
    assert list(drafts["account_code"]) == ["400", "260"]
    drafts = one(lines, mapping(accounts={"by_product_id": {31001: "400"}})).drafts
    assert list(drafts["account_code"]) == ["400", "200"]


def test_gl_account_label_rule():
    drafts = one([line(80000001, "1", "10")], mapping(accounts={"by_gl_account_label": {"4000 Labour Revenue": "400"}})).drafts
    assert drafts.iloc[0]["account_code"] == "400"


def test_unmapped_billing_code_is_refused_with_the_key_to_add():
    aside = aside_of(one([line(80000001, "1", "10", code=29682899)], mapping(accounts={"refuse_unmapped": True})))
    assert "billing item 80000001" in aside.reason and "accounts.by_billing_code_id 29682899" in aside.fix


# -- 2. tax, line amount types and rounding ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Exclusive", "Inclusive"])
def test_rounding_trap_reproduces_the_totals(kind):
    lines = [line(80000001, "3", "33.3333"), line(80000002, "1", "0.10"), line(80000003, "1", "0.10")]
    lines[1]["taxDollars"], lines[1]["totalAmount"] = D("0.01"), D("0.11")
    result = one(lines, mapping(line_amount_types=kind))
    assert result.set_aside == []
    assert_reproduces(result.drafts, invoice_for(lines))
    if kind == "Exclusive":  # inclusive 0.11 and 0.12 happen to round as Autotask did
        assert "TaxAmount" in result.drafts.iloc[0]["rounding_note"]


def test_inclusive_lines_carry_extended_price_plus_tax():
    lines = [line(80000001, "3", "33.3333")]
    row = one(lines, mapping(line_amount_types="Inclusive")).drafts.iloc[0]
    assert row["line_amount"] == D("115.00") and row["rounding_note"] is None


def test_rounding_line_strategy_adds_a_line_on_the_configured_account():
    lines = [line(80000001, "1", "0.10"), line(80000002, "1", "0.10"), line(80000003, "1", "0.10")]
    lines[0]["taxDollars"], lines[0]["totalAmount"] = D("0.01"), D("0.11")
    the_mapping = mapping(tax={"rounding": {"strategy": "rounding_line", "account_code": "860"}})
    result = one(lines, the_mapping)
    assert result.set_aside == []
    drafts = result.drafts
    # The billing items keep Xero's own tax; the rounding line has no amount and carries the difference as
    # tax of the TaxType it belongs to, so total and tax both match Autotask's.
    assert list(drafts["tax_amount"])[:3] == [None] * 3
    last = drafts.iloc[-1]
    assert (last["account_code"], last["tax_type"], last["line_amount"], last["tax_amount"]) == (
        "860", "OUTPUT2", D("0.00"), D("-0.01"))
    assert pd_isna(last["autotask_billing_item_id"])
    assert "rounding line of -0.01 tax (OUTPUT2) on account 860" in last["rounding_note"]
    assert_reproduces(drafts, invoice_for(lines))
    body = xero_body(drafts)
    assert body["LineItems"][-1]["AccountCode"] == "860" and body["LineItems"][-1]["TaxAmount"] == -0.01


def pd_isna(value):
    import pandas as pd
    return value is None or pd.isna(value)


def test_rounding_line_needs_an_account_in_the_mapping():
    with pytest.raises(ValueError, match="account_code"):
        mapping(tax={"rounding": {"strategy": "rounding_line"}})


def test_rounding_account_missing_in_xero_is_set_aside():
    lines = [line(80000001, "1", "0.10"), line(80000002, "1", "0.10")]
    lines[0]["taxDollars"], lines[0]["totalAmount"] = D("0.01"), D("0.11")
    aside = aside_of(one(lines, mapping(tax={"rounding": {"strategy": "rounding_line", "account_code": "999"}})))
    assert "rounding account '999'" in aside.reason and "tax.rounding.account_code" in aside.fix


def test_tax_exempt_company_and_region_rules():
    result = one([line(80000001, "2", "165", tax_rate=D("0"))], companies=[company(isTaxExempt=True)])
    assert set(result.drafts["tax_type"]) == {"EXEMPTOUTPUT"}
    lines = [line(80000001, "2", "165", tax_rate=D("10"))]
    the_mapping = mapping(tax={"by_region": {"Australia GST": {"*": "TAX001"}}})
    result = one(lines, the_mapping, taxRegionName="Australia GST")
    assert set(result.drafts["tax_type"]) == {"TAX001"}
    assert_reproduces(result.drafts, invoice_for(lines))


# -- 3. tracking ----------------------------------------------------------------------------------------

def tracked(**options):
    return mapping(tracking=[
        {"category": "Region", "source": "company.udf:Region", "options": {"Auckland": "North", "*": "South"}},
        {"category": "Department", "source": "billing_code.department", "options": options or {"Service Desk": "Managed Services"}},
    ])


def test_two_tracking_categories_from_a_udf_and_a_picklist_label():
    udfs = [{"name": "Region", "value": "Auckland"}]
    result = one([line(80000001, "1", "10")], tracked(), companies=[company(userDefinedFields=udfs)])
    row = result.drafts.iloc[0]
    assert (row["tracking1_name"], row["tracking1_option"]) == ("Region", "North")
    assert (row["tracking2_name"], row["tracking2_option"]) == ("Department", "Managed Services")
    body = xero_body(result.drafts)
    assert body["LineItems"][0]["Tracking"] == [{"Name": "Region", "Option": "North"},
                                                 {"Name": "Department", "Option": "Managed Services"}]


def test_tracking_default_option_and_untracked_drafts_keep_their_hash_shape():
    row = one([line(80000001, "1", "10")], tracked()).drafts.iloc[0]
    assert row["tracking1_option"] == "South"  # no UDF: the "*" option


def test_unknown_or_archived_tracking_option_is_set_aside_naming_the_fix():
    aside = aside_of(one([line(80000001, "1", "10")], tracked(**{"1": "Legacy Support"})))
    assert "tracking option 'Legacy Support'" in aside.reason and "billing item 80000001" in aside.reason
    assert "tracking[1].options" in aside.fix


def test_unmapped_tracking_value_is_set_aside():
    the_mapping = mapping(tracking=[{"category": "Department", "source": "billing_code.department",
                                     "options": {"2": "Projects"}}])
    aside = aside_of(one([line(80000001, "1", "10")], the_mapping))
    assert "'Service Desk' (1)" in aside.reason and "tracking[0].options 'Service Desk'" in aside.fix


def test_tracking_category_missing_in_xero():
    the_mapping = mapping(tracking=[{"category": "Territory", "source": "tax_region"}])
    aside = aside_of(one([line(80000001, "1", "10")], the_mapping))
    assert "tracking category 'Territory'" in aside.reason


def test_at_most_two_tracking_categories(tmp_path):
    from core.mapping import MappingError, load_mapping
    path = tmp_path / "t.yaml"
    path.write_text("tracking:\n" + "".join(f"  - {{category: C{i}, source: contract}}\n" for i in range(3)))
    with pytest.raises(MappingError, match="at most two"):
        load_mapping(path)
    path.write_text("tracking:\n  - {category: C, source: company.shoe_size}\n")
    with pytest.raises(MappingError, match="company.udf:<name>"):
        load_mapping(path)


# -- 4. branding themes -----------------------------------------------------------------------------------

def test_branding_theme_from_the_invoice_template():
    the_mapping = mapping(branding_themes={"by_template_id": {102: "Managed Services"}, "default": "Standard"})
    row = one([line(80000001, "1", "10")], the_mapping, invoiceEditorTemplateID=102).drafts.iloc[0]
    assert row["branding_theme_id"] == THEMES["Managed Services"]
    row = one([line(80000001, "1", "10")], the_mapping, invoiceEditorTemplateID=101).drafts.iloc[0]
    assert row["branding_theme_id"] == THEMES["Standard"]
    assert xero_body(one([line(80000001, "1", "10")], the_mapping).drafts)["BrandingThemeID"]


def test_unmapped_template_and_unknown_theme_are_set_aside():
    the_mapping = mapping(branding_themes={"by_template_name": {"Managed Services Invoice": "Managed Services"}})
    aside = aside_of(one([line(80000001, "1", "10")], the_mapping, invoiceEditorTemplateID=101))
    assert "template 101 'Standard Invoice'" in aside.reason and "branding_themes.by_template_id 101" in aside.fix
    the_mapping = mapping(branding_themes={"default": "Glossy"})
    aside = aside_of(one([line(80000001, "1", "10")], the_mapping))
    assert "branding theme 'Glossy'" in aside.reason and "'Standard'" in aside.reason


def test_no_branding_rules_leave_the_theme_to_xero():
    assert one([line(80000001, "1", "10")]).drafts.iloc[0]["branding_theme_id"] is None


# -- 5. invoice numbers and the link back ------------------------------------------------------------------

def test_xero_numbering_keeps_the_autotask_number_in_the_reference_and_the_link():
    result = one([line(80000001, "1", "10")], mapping(invoice_number="xero"),
                 plan_kwargs={"autotask_web_url": "https://ww5.autotask.net/"})
    row = result.drafts.iloc[0]
    assert row["invoice_number"] is None
    assert row["reference"] == "INV-10001 / PO 4711"
    url = "https://ww5.autotask.net/Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenInvoice&InvoiceID=6001"
    assert row["source_url"] == url
    body = xero_body(result.drafts)
    assert body["Url"] == url and "InvoiceNumber" not in body


def test_reference_that_already_shows_the_number_is_not_repeated():
    row = one([line(80000001, "1", "10")], mapping(invoice_number="xero", reference="AT {invoiceNumber}")).drafts.iloc[0]
    assert row["reference"] == "AT INV-10001"
    row = one([line(80000001, "1", "10")], mapping(invoice_number="xero"), orderNumber=None).drafts.iloc[0]
    assert row["reference"] == "INV-10001"


def test_template_numbers_and_no_web_url():
    row = one([line(80000001, "1", "10")], mapping(invoice_number="INV:{id}")).drafts.iloc[0]
    assert row["invoice_number"] == "INV:6001" and row["source_url"] is None


# -- 6. reference --------------------------------------------------------------------------------------

def test_reference_lists_distinct_purchase_order_numbers():
    lines = [line(80000001, "1", "10", purchaseOrderNumber="CPO-1"), line(80000002, "1", "10", purchaseOrderNumber="CPO-2"),
             line(80000003, "1", "10", purchaseOrderNumber="CPO-1"), line(80000004, "1", "10")]
    row = one(lines, mapping(reference="{purchaseOrderNumbers}")).drafts.iloc[0]
    assert row["reference"] == "CPO-1, CPO-2"
    assert one(lines[3:], mapping(reference="{purchaseOrderNumbers}")).drafts.iloc[0]["reference"] is None


def test_reference_is_cut_to_255_characters():
    lines = [line(80000001 + i, "1", "10", purchaseOrderNumber=f"PO-{i:05d}-" + "x" * 20) for i in range(20)]
    reference = one(lines, mapping(reference="{purchaseOrderNumbers}")).drafts.iloc[0]["reference"]
    assert len(reference) == 255 and reference.endswith("…")


# -- 7. due dates -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, invoice_date, expected", [
    ("payment_term", "2026-11-03", dt.date(2026, 12, 3)),
    ({"days_after_invoice": 10}, "2026-11-03", dt.date(2026, 11, 13)),
    ({"day_of_following_month": 20}, "2026-11-03", dt.date(2026, 12, 20)),
    ({"day_of_following_month": 31}, "2027-01-31", dt.date(2027, 2, 28)),
    ({"day_of_following_month": 30}, "2028-01-15", dt.date(2028, 2, 29)),
    ({"day_of_following_month": 31}, "2026-12-05", dt.date(2027, 1, 31)),
])
def test_due_date_rules(rule, invoice_date, expected):
    row = one([line(80000001, "1", "10")], mapping(due_date=rule),
              invoiceDateTime=f"{invoice_date}T00:00:00.000Z").drafts.iloc[0]
    assert row["due_date"] == expected


def test_due_date_overrides_by_company_id_or_name_and_missing_payment_term():
    the_mapping = mapping(due_date_overrides={174: {"days_after_invoice": 7}})
    assert one([line(80000001, "1", "10")], the_mapping).drafts.iloc[0]["due_date"] == dt.date(2026, 11, 10)
    the_mapping = mapping(due_date_overrides={"Harbourside Dental Ltd": "xero_contact"})
    assert one([line(80000001, "1", "10")], the_mapping).drafts.iloc[0]["due_date"] is None
    aside = aside_of(one([line(80000001, "1", "10")], mapping(due_date="payment_term"), paymentTerm=77))
    assert "payment term 77" in aside.reason and "PaymentTerms" in aside.fix


# -- 8. status -------------------------------------------------------------------------------------------

def test_status_per_tenant_and_per_company():
    assert one([line(80000001, "1", "10")], mapping(status="AUTHORISED")).drafts.iloc[0]["status"] == "AUTHORISED"
    the_mapping = mapping(status="DRAFT", status_overrides={"Harbourside Dental Ltd": "SUBMITTED"})
    assert one([line(80000001, "1", "10")], the_mapping).drafts.iloc[0]["status"] == "SUBMITTED"


# -- 9. line detail ------------------------------------------------------------------------------------------

def test_grouped_by_billing_code_sums_amounts_and_lists_items():
    lines = [line(80000001, "3", "33.3333", itemName="Seat A"), line(80000002, "2", "165", itemName="Seat B"),
             line(80000003, "1", "42.5", tax_rate=D("0"), code=29682808, itemName="Parking")]
    result = one(lines, mapping(lines={"group_by": "billing_code", "description": "{itemName} x {quantity}"}))
    drafts = result.drafts
    assert len(drafts) == 2
    first = drafts.iloc[0]
    assert (first["quantity"], first["line_amount"]) == (D(1), D("430.00"))
    assert first["description"] == "Seat A x 3\nSeat B x 2"
    assert_reproduces(drafts, invoice_for(lines))


def test_grouped_description_is_cut_to_4000_characters():
    lines = [line(80000001 + i, "1", "10", description="y" * 900) for i in range(6)]
    drafts = one(lines, mapping(lines={"group_by": "billing_code"})).drafts
    assert len(drafts) == 1 and len(drafts.iloc[0]["description"]) == 4000


def test_description_template_leaves_empty_fields_out():
    row = one([line(80000001, "1", "10", description=None)],
              mapping(lines={"description": "{itemName} - {description}"})).drafts.iloc[0]
    assert row["description"] == "Remote Support"


def test_unknown_line_placeholder_is_refused():
    with pytest.raises(ValueError, match="itemName"):
        mapping(lines={"description": "{itemname}"})


# -- 10. currencies ------------------------------------------------------------------------------------------

def test_currency_rate_direction_base_nzd_invoice_aud():
    # Autotask: 1 NZD (internal) = 0.9134 AUD. Xero wants AUD per 1 NZD (base): 0.9134.
    reference = {"Currencies": REFERENCE["Currencies"]}
    rate = currency_rate_for("AUD", REFERENCE["Currencies"][1], reference, "NZD")
    assert rate == D("0.913400")
    # AUD 100.00 is NZD 109.48 both ways: Xero divides by the rate, as Autotask's internal amounts do.
    assert money(D("100.00") / rate) == D("109.48")


def test_currency_rate_direction_base_aud_invoice_nzd():
    # A Xero org in AUD billing in Autotask's internal NZD: NZD per 1 AUD = 1 / 0.9134.
    reference = {"Currencies": REFERENCE["Currencies"]}
    rate = currency_rate_for("NZD", REFERENCE["Currencies"][0], reference, "AUD")
    assert rate == D("1.094811")
    assert money(D("109.48") / rate) == D("100.00")


def test_currency_rate_on_drafts_and_missing_rate_is_set_aside():
    exempt_aud = mapping(currency_rate="autotask", tax={"default": "ZERORATED", "by_category_name": {}})
    lines = [line(80000001, "1", "100", tax_rate=D("0"))]
    row = one(lines, exempt_aud, companies=[company(currencyID=2)]).drafts.iloc[0]
    assert (row["currency_code"], row["currency_rate"]) == ("AUD", D("0.913400"))
    assert xero_body(one(lines, exempt_aud, companies=[company(currencyID=2)]).drafts)["CurrencyRate"] == 0.9134
    assert one(lines, mapping(tax={"default": "ZERORATED", "by_category_name": {}}),
               companies=[company(currencyID=2)]).drafts.iloc[0]["currency_rate"] is None
    aside = aside_of(one(lines, exempt_aud, companies=[company(currencyID=3)]))
    assert "no exchange rate for GBP" in aside.reason and "currency_rate: xero" in aside.fix


def test_currency_xero_lacks_and_currency_xero_does_not_know():
    aside = aside_of(one([line(80000001, "1", "10")], companies=[company(currencyID=9)]))
    assert "not subscribed to currency EUR" in aside.reason
    aside = aside_of(one([line(80000001, "1", "10")], companies=[company(currencyID=11)]))
    assert "'XBT' is not an ISO currency code" in aside.reason


# -- 11. credit notes ------------------------------------------------------------------------------------------

def test_negative_invoice_becomes_a_credit_note_with_positive_amounts():
    lines = [line(80000001, "-3", "33.3333"), line(80000002, "-1", "165"), line(80000003, "1", "10")]
    invoice = invoice_for(lines)
    assert invoice["invoiceTotal"] < 0
    result = one(lines, mapping(invoice_number="INV:{id}"))
    assert result.set_aside == []
    drafts = result.drafts
    assert set(drafts["document_type"]) == {"ACCRECCREDIT"}
    assert list(drafts["line_amount"]) == [D("100.00"), D("165.00"), D("-10.00")]
    assert_reproduces(drafts, invoice)
    [doc] = invoice_documents(result)
    assert doc.kind == "credit_note"  # never sent as an invoice
    model = xero_model(drafts)
    assert isinstance(model, CreditNote)
    body = serialize(model)
    assert body["Type"] == "ACCRECCREDIT" and body["CreditNoteNumber"] == "INV:6001"
    assert body["LineAmountTypes"] == "Exclusive" and body["Reference"] == "PO 4711" and "Url" not in body
    assert "InvoiceNumber" not in body


def test_inclusive_credit_note_totals():
    lines = [line(80000001, "-3", "33.3333"), line(80000002, "-0.75", "165")]
    drafts = one(lines, mapping(line_amount_types="Inclusive")).drafts
    assert_reproduces(drafts, invoice_for(lines))


def test_negative_quantity_adjustment_with_positive_total_stays_an_invoice():
    lines = [line(80000001, "10", "33.3333"), line(80000002, "-2", "-127.4575")]
    drafts = one(lines).drafts
    assert set(drafts["document_type"]) == {"ACCREC"}
    assert drafts.iloc[1]["quantity"] == D("-2") and drafts.iloc[1]["line_amount"] == D("254.92")
    assert_reproduces(drafts, invoice_for(lines))
    model = xero_model(drafts)
    assert isinstance(model, Invoice) and serialize(model)["Type"] == "ACCREC"


# -- 12. contacts ---------------------------------------------------------------------------------------------

def test_two_companies_with_one_name_get_distinct_contacts():
    companies = [company(175, companyName="Kauri Freight"), company(174, companyName="kauri  freight "),
                 company(176, companyName="Ōtautahi Ltd")]
    assert contact_name_for(companies[1], companies) == "kauri  freight"
    assert contact_name_for(companies[0], companies) == "Kauri Freight (Autotask #175)"
    assert contact_name_for(companies[2], companies) == "Ōtautahi Ltd"
    body = serialize(sdk_contact(contact_draft(companies[0], None, name=contact_name_for(companies[0], companies))))
    assert body["Name"] == "Kauri Freight (Autotask #175)"
    lines = [line(80000001, "1", "10"), line(80000002, "1", "10", invoice_id=6002)]
    result = plan([invoice_for(lines[:1]), invoice_for(lines[1:], invoice_id=6002, companyID=175)], lines, companies)
    assert set(result.drafts["contact_name"]) == {"kauri  freight", "Kauri Freight (Autotask #175)"}


def test_long_duplicate_name_keeps_the_suffix_within_255():
    name = "Ā" * 300
    companies = [company(1, companyName=name), company(2, companyName=name)]
    second = contact_name_for(companies[1], companies)
    assert len(second) == 255 and second.endswith(" (Autotask #2)")


# -- hashing ------------------------------------------------------------------------------------------------

def test_new_columns_change_the_hash_only_when_used():
    lines = [line(80000001, "1", "10")]
    plain = content_hash(one(lines).drafts)
    assert content_hash(one(lines, plan_kwargs={"autotask_web_url": "https://ww5.autotask.net/"}).drafts) != plain
    assert content_hash(one(lines, tracked()).drafts) != plain


# -- every generated invoice, by Xero's arithmetic ---------------------------------------------------------

GENERATED_XERO = XeroReference(
    account_codes=frozenset({"200", "260"}),
    tax_types={"OUTPUT2": D("15"), "NONE": D("0"), "ZERORATED": D("0"), "EXEMPTOUTPUT": D("0"),
               "TAX001": D("10"), "TAX002": D("20")},
    currencies=frozenset({"NZD", "AUD", "GBP", "USD"}), base_currency="NZD",
    tracking={"Department": frozenset({"Managed Services", "Projects", "Hardware"})},
    branding_themes=THEMES,
)


def _demo_mapping(**changes):
    from pathlib import Path

    from core.mapping import load_mapping
    demo = load_mapping(Path(__file__).resolve().parent.parent / "mappings" / "demo.yaml")
    # The demo org's tracking and themes, as demo.yaml describes them (switched off there for now).
    tracking = [TrackingRule(category="Department", source="billing_code.department",
                             options={"1": "Managed Services", "2": "Projects", "3": "Hardware"})]
    themes = BrandingRules(by_template_id={102: "Managed Services"}, default="Standard")
    return demo.model_copy(update={"tracking": tracking, "branding_themes": themes, **changes})


def _check_every_invoice(data, the_mapping):
    result = plan_invoices(invoices_frame(data["Invoices"]), lines_frame(data["BillingItems"]),
                           companies_frame(data["Companies"]), data, the_mapping, GENERATED_XERO)
    invoices = {i["id"]: i for i in data["Invoices"]}
    planned = set()
    for invoice_id, rows in result.drafts.groupby("autotask_invoice_id"):
        planned.add(invoice_id)
        assert_reproduces(rows, invoices[invoice_id], GENERATED_XERO)
    for aside in result.set_aside:
        assert aside.reason and aside.fix
    accounted = planned | {a.autotask_id for a in result.set_aside} | {s.autotask_id for s in result.skipped}
    assert accounted == set(invoices)
    return result


@pytest.mark.parametrize("seed", [1, 7, 23])
@pytest.mark.parametrize("kind", ["Exclusive", "Inclusive", "NoTax"])
def test_generated_invoices_reproduce_autotask_totals(seed, kind):
    generator = pytest.importorskip("sandbox.autotask.generator")
    data = generator.generate_data(seed=seed, invoices=40)
    result = _check_every_invoice(data, _demo_mapping(line_amount_types=kind))
    if kind == "NoTax":
        taxed = {i["id"] for i in data["Invoices"] if i["totalTaxValue"] != 0 and not i["isVoided"]}
        assert {a.autotask_id for a in result.set_aside} == taxed
        assert all("NoTax" in a.reason for a in result.set_aside)
    else:
        assert result.set_aside == []


def test_generated_invoices_grouped_and_as_credits():
    generator = pytest.importorskip("sandbox.autotask.generator")
    data = generator.generate_data(seed=5, invoices=40)
    for invoice in data["Invoices"][::3]:  # turn every third invoice into a credit
        invoice["invoiceTotal"], invoice["totalTaxValue"] = -invoice["invoiceTotal"], -invoice["totalTaxValue"]
        for item in data["BillingItems"]:
            if item["invoiceID"] == invoice["id"]:
                for key in ("quantity", "extendedPrice", "taxDollars", "totalAmount"):
                    item[key] = -item[key]
    grouped = _demo_mapping(lines=_demo_mapping().lines.model_copy(update={"group_by": "billing_code"}))
    result = _check_every_invoice(data, grouped)
    assert result.set_aside == []
    assert "ACCRECCREDIT" in set(result.drafts["document_type"])
    for _, rows in result.drafts[result.drafts["document_type"] == "ACCRECCREDIT"].groupby("autotask_invoice_id"):
        assert xero_body(rows)["Type"] == "ACCRECCREDIT"


def test_two_thousand_invoices():
    generator = pytest.importorskip("sandbox.autotask.generator")
    data = generator.generate_data(seed=2026, invoices=2000)
    result = _check_every_invoice(data, _demo_mapping())
    assert result.set_aside == []
    assert result.drafts["autotask_invoice_id"].nunique() == len(data["Invoices"]) - len(result.skipped)

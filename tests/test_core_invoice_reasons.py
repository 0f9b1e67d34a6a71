"""Every reason the invoice mapping sets an invoice aside for is true: each fires for an invoice that really has
its fault, names the fix, and stops firing once that fault is corrected. Pure: frames and records in, plans out.

The reasons (the start of the text, and the fault it names):

core.invoices.plan_invoices, before the mapping:
- "the invoice cannot be read: ..."                       a field of the invoice record is malformed (frames)
- "billing items cannot be read (...)"                    a billing item of the invoice is malformed
- "company N cannot be read: ..."                         the invoice's company record is malformed
- "company N was not read, and companies whose id ..."    the company is missing and a company's id is unreadable
- "the invoice's billing items do not add up ... invoiceID cannot be read ..."
                                                          items missing, and an item's invoiceID is unreadable
core.invoices._plan_one, per invoice:
- "company N was not read from Autotask"                  the invoice's company is not among those read
- "K billing item(s) add up to ...: billing items are missing"      the items carry less than the invoice
- "K billing item(s) add up to ...: the billing items carry more"   the items carry more than the invoice
- "K billing item(s) add up to ...: the billing items' tax differs" the total agrees, the tax does not
- "the invoice has no billing items and a total of zero"  an empty invoice
- "billing item N: extendedPrice ... + taxDollars ... does not equal its totalAmount"  an item that does not add up
- "company N uses Autotask currency id M, which was not read"       the company's currency is not in Currencies
- "currency 'X' is not an ISO currency code Xero knows"   the Autotask currency's name is not an ISO code
- "the Xero organisation is not subscribed to currency X" Xero lacks the invoice's currency
- "currency_rate is autotask, but Autotask has no exchange rate"    the currency has no rate in Autotask
- "the invoice number setting '...' needs a field that is empty"    the invoice_number template's field is empty
- "the invoice has no due date in Autotask"               due_date: autotask and no dueDate
- "the invoice's payment term N was not read"             due_date: payment_term and an unknown payment term
- "the due date (...) falls after 9999-12-31"             the due date would be past the calendar
- "Autotask invoice template N ... has no branding theme mapping"   the template maps to no theme
- "branding theme 'X' does not exist in Xero"             the mapped theme is not in Xero
- "the invoice carries tax X but line_amount_types is NoTax"        a taxed invoice under NoTax
- "billing item N (billing code ...) has no account mapping"        refuse_unmapped and no rule for the code
- "account code 'X' (for billing item N, ...) does not exist"       the mapped account is not in Xero
- "billing item N has no TaxType mapping: ... is not set" the item's tax category maps to no TaxType
- "TaxType 'X' (for billing item N) does not exist in Xero"         the mapped TaxType is not in Xero
- "billing item N: <source> is '...', which tracking[i].options does not map"  a tracking value without option
- "tracking category 'X' does not exist or is not active in Xero"   the tracking category is not in Xero
- "billing item N: tracking option 'X' does not exist or is archived"          the tracking option is not in Xero
- "billing item N: Autotask charged tax X on Y, but TaxType T at R% gives Z"  the TaxType's rate is not Autotask's
- "the rounding account 'X' does not exist or is archived in Xero"  rounding_line with an unknown account
- "the Xero invoice would total ... although every billing item adds up"  a guard: no input reaches it (the
                                                          property below drafts every valid invoice)
core.invoices._validated_drafts:
- "the Xero draft is not valid: <column>: <check>"        a draft Xero would refuse (a grouped line over Xero's
                                                          limit, an invoice number over 255 characters)
core.invoices.with_contact_tax (tax.from_contact):
- "the Xero contact C's default sales tax X is R %, but Autotask taxed line ..."  the contact's tax has another rate
core.items:
- "billing item N (type ...) match no items.rules entry, and items.refuse_unmatched is true"
- "Xero item 'X' that its lines need could not be created: ..."
core.contacts.match_contacts (the company's contact, so its invoices, is refused):
- "Xero has K contacts named ..."                          two candidate contacts
- "Xero already has a contact named ... that belongs to another record"  the candidate has another ContactNumber
- "the Xero contact 'X' named ... is already another Autotask company's" the candidate is taken in this run

Not set-asides: "voided in Autotask" (skipped, a void to pass on) and the filters' rules (core.filters: skipped
on purpose, with the rule).
"""
from __future__ import annotations

import random
from decimal import Decimal as D

from hypothesis import given, settings, strategies as st
import pytest

from core.contacts import Candidate, match_contacts
from core.invoices import companies_frame, invoice_documents, invoices_frame, lines_frame, plan_invoices, \
    with_contact_tax
from core.items import assign_item_codes, set_aside_needing
from core.mapping import ItemRule, ItemRules
from tests.test_core_features import FULL_XERO, REFERENCE
from tests.test_core_invoice_tax import TAX, _item
from tests.test_core_invoices import company, invoice_for, line, mapping

ITEM = 80000001


def run(invoices, lines, companies=None, the_mapping=None, xero=FULL_XERO):
    return plan_invoices(invoices_frame(invoices), lines_frame(lines),
                         companies_frame([company()] if companies is None else companies),
                         REFERENCE, the_mapping or mapping(), xero)


def one(lines=None, the_mapping=None, companies=None, xero=FULL_XERO, **invoice_fields):
    lines = [line(ITEM, "2", "165")] if lines is None else lines
    return run([invoice_for(lines, **invoice_fields)], lines, companies, the_mapping, xero)


def _two():
    return [line(ITEM, "2", "165"), line(ITEM + 1, "3", "10", code=29682806)]


def _fault_invoice(bad):
    invoice = invoice_for([line(ITEM, "2", "165")])
    if bad:
        invoice["invoiceTotal"] = "three hundred"
    return run([invoice], [line(ITEM, "2", "165")])


def _fault_line(bad):
    item = line(ITEM, "2", "165")
    return one([item | {"quantity": "lots"}] if bad else [item])


def _fault_company(bad):
    return one(companies=[company(currencyID="NZD" if bad else 1)])


def _fault_company_id(bad):
    companies = [company(175, companyName="Other Ltd")]
    companies += [company("one-seven-four")] if bad else [company()]
    return one(companies=companies)


def _fault_line_owner(bad):
    lines = _two()
    invoice = invoice_for(lines)
    if bad:
        lines[1] = {**lines[1], "invoiceID": "six thousand and one"}
    return run([invoice], lines)


def _company_not_read(bad):
    return one(companies=[company(175)] if bad else [company()])


def _items_missing(bad):
    lines = _two()
    return run([invoice_for(lines)], lines[:1] if bad else lines)


def _items_carry_more(bad):
    lines = _two()
    return run([invoice_for(lines[:1] if bad else lines)], lines)


def _tax_differs(bad):
    lines = [line(ITEM, "2", "165")]
    invoice = invoice_for(lines)
    if bad:  # the same total, but more of it tax than the items say
        invoice["totalTaxValue"] = D("60.00")
    return run([invoice], lines)


def _empty(bad):
    lines = [] if bad else [line(ITEM, "2", "165")]
    return run([invoice_for(lines)], lines)


def _item_not_adding_up(bad):
    item = line(ITEM, "2", "165")
    if bad:
        item["totalAmount"] += D("1")
    return one([item])


def _currency(currency_id, good=2, the_mapping=None):
    return lambda bad: one(companies=[company(currencyID=currency_id if bad else good)], the_mapping=the_mapping)


def _number(bad):
    return one(the_mapping=mapping(invoice_number="autotask"), invoiceNumber=None if bad else "INV-1")


def _no_due_date(bad):
    return one(the_mapping=mapping(due_date="autotask"), dueDate=None if bad else "2026-12-03T00:00:00Z")


def _payment_term(bad):
    return one(the_mapping=mapping(due_date="payment_term"), paymentTerm=99 if bad else 5)


def _due_past_calendar(bad):
    return one(the_mapping=mapping(due_date={"days_after_invoice": 30}),
               invoiceDateTime="9999-12-20T00:00:00Z" if bad else "2026-11-03T00:00:00Z")


def _template(bad):
    return one(the_mapping=mapping(branding_themes={"by_template_id": {102: "Managed Services"}}),
               invoiceEditorTemplateID=101 if bad else 102)


def _theme(bad):
    return one(the_mapping=mapping(branding_themes={"default": "Glossy" if bad else "Standard"}))


def _no_tax(bad):
    return one([line(ITEM, "2", "165", tax_rate=D("15") if bad else D("0"))], mapping(line_amount_types="NoTax"))


def _no_account(bad):
    the_mapping = mapping(accounts={"refuse_unmapped": True, "by_billing_code_id": {29682801: "200"}})
    return one([line(ITEM, "2", "165", code=29682899 if bad else 29682801)], the_mapping)


def _account(bad):
    return one(the_mapping=mapping(accounts={"default": "999" if bad else "200"}))


def _no_tax_type(bad):
    tax = {"by_category_name": {"Standard Services": "OUTPUT2", **({} if bad else {"Alcohol": "OUTPUT2"})}}
    return one([line(ITEM, "2", "165", taxCategoryID=7)], mapping(tax=tax))


def _tax_type(bad):
    return one(the_mapping=mapping(tax={"by_category_name": {"Standard Services": "GST99" if bad else "OUTPUT2"}}))


def _tracked(**rule):
    return mapping(tracking=[{"category": "Department", "source": "billing_code.department", **rule}])


def _tracking_value(bad):
    return one(the_mapping=_tracked(options={"2": "Projects"} if bad else {"1": "Projects"}))


def _tracking_category(bad):
    return one(the_mapping=_tracked(category="Territory" if bad else "Department", options={"*": "Projects"}))


def _tracking_option(bad):
    return one(the_mapping=_tracked(options={"*": "Legacy Support" if bad else "Projects"}))


def _tax_rate(bad):
    return one([line(ITEM, "2", "165", tax_rate=D("10") if bad else D("15"))])


def _rounding_account(bad):
    # Four-decimal taxes Xero rounds line by line to a cent less than Autotask's total tax: a rounding line.
    items = [line(ITEM + k, "1", "1.03") | {"taxDollars": D("0.1545"), "totalAmount": D("1.1845")} for k in range(3)]
    rounding = {"strategy": "rounding_line", "account_code": "999" if bad else "860"}
    return one(items, mapping(tax={"rounding": rounding}))


def _line_over_limit(bad):
    # Two items of one billing code, each within Xero's limit; grouped, their line is not.
    big = [line(ITEM + k, "1", "6000000000") for k in range(2)] + [line(ITEM + 2, "-1", "6000000000", code=29682806)]
    return one(big, mapping(lines={"group_by": "billing_code" if bad else "item"}))


def _number_too_long(bad):
    return one(the_mapping=mapping(invoice_number="{comments}-{id}"), comments=("A" * 300) if bad else "A-17")


CASES = [
    (_fault_invoice, "the invoice cannot be read: invoiceTotal", "invoiceTotal"),
    (_fault_line, f"billing items cannot be read (billing item {ITEM}: quantity", "billing items"),
    (_fault_company, "company 174 cannot be read: currencyID", "company"),
    (_fault_company_id, "company 174 was not read, and companies whose id cannot be read came with it", "ids"),
    (_fault_line_owner, "the invoice's billing items do not add up to its total, and billing items whose invoiceID "
                        "cannot be read came with it", "billing items"),
    (_company_not_read, "company 174 was not read from Autotask", "company"),
    (_items_missing, "1 billing item(s) add up to 379.50 (tax 49.50), but the invoice says 414.00 (tax 54.00): "
                     "billing items are missing", "Lines of Business"),
    (_items_carry_more, "2 billing item(s) add up to 414.00 (tax 54.00), but the invoice says 379.50 (tax 49.50): "
                        "the billing items carry more than the invoice", "rerun"),
    (_tax_differs, "1 billing item(s) add up to 379.50 (tax 49.50), but the invoice says 379.50 (tax 60.00): "
                   "the billing items' tax differs from the invoice's", "tax"),
    (_empty, "the invoice has no billing items and a total of zero", "lines"),
    (_item_not_adding_up, f"billing item {ITEM}: extendedPrice 330.00 + taxDollars 49.50 does not equal its "
                          "totalAmount 380.50", "amounts"),
    (_currency(99), "company 174 uses Autotask currency id 99, which was not read", "Currencies"),
    (_currency(11), "currency 'XBT' is not an ISO currency code Xero knows", "ISO code"),
    (_currency(9), "the Xero organisation is not subscribed to currency EUR", "add EUR in Xero"),
    (_currency(3, the_mapping=mapping(currency_rate="autotask")),
     "currency_rate is autotask, but Autotask has no exchange rate for GBP", "exchange rate of GBP"),
    (_number, "the invoice number setting 'autotask' needs a field that is empty on this invoice", "invoice_number"),
    (_no_due_date, "the invoice has no due date in Autotask", "due_date"),
    (_payment_term, "the invoice's payment term 99 was not read from Autotask PaymentTerms", "PaymentTerms"),
    (_due_past_calendar, "the due date (due_date) falls after 9999-12-31: the invoice date is 9999-12-20",
     "invoice date"),
    (_template, "Autotask invoice template 101 'Standard Invoice' has no branding theme mapping",
     "branding_themes.by_template_id 101"),
    (_theme, "branding theme 'Glossy' does not exist in Xero", "Glossy"),
    (_no_tax, "the invoice carries tax 49.50 but line_amount_types is NoTax", "line_amount_types: Exclusive"),
    (_no_account, f"billing item {ITEM} (billing code 29682899 'Brand New Code') has no account mapping",
     "accounts.by_billing_code_id 29682899"),
    (_account, f"account code '999' (for billing item {ITEM}, billing code 29682801 'Remote Support') does not exist",
     "account 999"),
    (_no_tax_type, f"billing item {ITEM} has no TaxType mapping: tax.by_category_name['Alcohol']",
     "tax.by_category_name['Alcohol']"),
    (_tax_type, f"TaxType 'GST99' (for billing item {ITEM}) does not exist in Xero", "GST99"),
    (_tracking_value, f"billing item {ITEM}: billing_code.department is 'Service Desk' (1), which tracking[0].options "
                      "does not map", "tracking[0].options 'Service Desk'"),
    (_tracking_category, "tracking category 'Territory' does not exist or is not active in Xero", "Territory"),
    (_tracking_option, f"billing item {ITEM}: tracking option 'Legacy Support' does not exist or is archived in "
                       "Xero's tracking category 'Department'", "Legacy Support"),
    (_tax_rate, f"billing item {ITEM}: Autotask charged tax 33.00 on 330.00, but TaxType OUTPUT2 at 15% gives 49.50",
     "tax.by_category_name"),
    (_rounding_account, "the rounding account '999' does not exist or is archived in Xero",
     "tax.rounding.account_code"),
    (_line_over_limit, "the Xero draft is not valid: line_amount: Xero accepts line amounts up to", "group_by: item"),
    (_number_too_long, "the Xero draft is not valid: invoice_number: must be text of at most 255 characters",
     "invoice_number template"),
]


@pytest.mark.parametrize("build,reason,fix", CASES, ids=[c[0].__name__.strip("_") if c[0].__name__ != "<lambda>"
                                                         else f"currency-{i}" for i, c in enumerate(CASES)])
def test_each_reason_fires_for_its_fault_and_only_for_it(build, reason, fix):
    faulty = build(True)
    [aside] = faulty.set_aside
    assert aside.reason.startswith(reason), aside.reason
    assert aside.fix.strip() and fix in aside.fix, aside.fix
    assert faulty.drafts.empty
    corrected = build(False)
    assert corrected.set_aside == [], corrected.set_aside
    assert not corrected.drafts.empty


def test_a_set_aside_invoice_shows_whom_and_how_much_it_is_for_when_it_could_be_read():
    faulty = _no_due_date(True)
    [aside] = faulty.set_aside
    assert (aside.company_id, aside.contact_name, aside.total) == (174, "Harbourside Dental Ltd", D("379.50"))
    [plan] = invoice_documents(faulty)
    assert not plan.sendable and (plan.contact.number, plan.contact.name, plan.source_total) == (
        "174", "Harbourside Dental Ltd", D("379.50"))
    # A company that was not read names nobody; the total is still the invoice's own.
    [plan] = invoice_documents(_company_not_read(True))
    assert plan.contact is None and plan.source_total == D("379.50")


# -- after the mapping: the contact's tax, items, contacts ----------------------------------------------

def _plans(lines=None):
    return invoice_documents(one(lines))


def test_contact_tax_of_another_rate_is_named_and_the_same_rate_passes():
    [plan] = with_contact_tax(_plans(), {"174": "TAX001"}, FULL_XERO.tax_types)
    assert plan.set_aside.reason.startswith(
        "the Xero contact Harbourside Dental Ltd's default sales tax TAX001 is 10 %, but Autotask taxed line "
        "'Remote Support - Harbourside Dental' at 15 % (OUTPUT2)")
    assert "tax.from_contact" in plan.set_aside.fix
    [plan] = with_contact_tax(_plans(), {"174": "OUTPUT2"}, FULL_XERO.tax_types)
    assert plan.sendable and {l.tax_type for l in plan.lines} == {"OUTPUT2"}


def test_an_unmatched_item_sets_aside_only_under_refuse_unmatched():
    plans, lines = _plans(), lines_frame([line(ITEM, "2", "165")])
    only_products = [ItemRule(billing_item_type="Product", item_code="HW")]
    [plan] = assign_item_codes(plans, lines, REFERENCE, ItemRules(rules=only_products, refuse_unmatched=True)).plans
    assert plan.set_aside.reason.startswith(f"billing item {ITEM} (type 1, 'Remote Support') match no items.rules entry")
    assert "items.rules" in plan.set_aside.fix
    matching = [ItemRule(item_name="Remote Support", item_code="LAB")]
    [plan] = assign_item_codes(plans, lines, REFERENCE, ItemRules(rules=matching, refuse_unmatched=True)).plans
    assert plan.sendable and plan.lines[0].item_code == "LAB"


def test_an_item_xero_refused_sets_aside_only_the_invoices_naming_it():
    matching = [ItemRule(item_name="Remote Support", item_code="LAB")]
    plans = assign_item_codes(_plans(), lines_frame([line(ITEM, "2", "165")]), REFERENCE, ItemRules(rules=matching)).plans
    [plan] = set_aside_needing(plans, {"lab": "Code is already in use"})
    assert plan.set_aside.reason == "Xero item 'LAB' that its lines need could not be created: Code is already in use"
    assert "create item 'LAB'" in plan.set_aside.fix
    [plan] = set_aside_needing(plans, {"hw": "Code is already in use"})
    assert plan.sendable


def test_contact_refusals_name_their_fault_and_a_single_free_candidate_is_adopted():
    wanted = {174: "Harbourside Dental Ltd"}
    free = Candidate("c-1", "Harbourside Dental Ltd")
    cases = [
        ([free, Candidate("c-2", "harbourside  dental ltd")], set(), "Xero has 2 contacts named 'Harbourside Dental Ltd'"),
        ([Candidate("c-1", "Harbourside Dental Ltd", contact_number="999")], set(),
         "Xero already has a contact named 'Harbourside Dental Ltd' that belongs to another record (ContactNumber 999)"),
        ([free], {"c-1"}, "the Xero contact 'Harbourside Dental Ltd' named 'Harbourside Dental Ltd' is already another"),
    ]
    for candidates, taken, reason in cases:
        adopted, refused = match_contacts(wanted, candidates, "name", taken)
        assert adopted == {} and refused[174].startswith(reason), refused
    adopted, refused = match_contacts(wanted, [free], "name")
    assert refused == {} and adopted[174].contact_id == "c-1"


# -- a valid invoice is never set aside -------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), line_amount_types=st.sampled_from(["Exclusive", "Inclusive", "NoTax"]),
       strategy=st.sampled_from(["tax_amount", "rounding_line"]), group_by=st.sampled_from(["item", "billing_code"]),
       summary=st.booleans())
def test_a_valid_invoice_is_never_set_aside(seed, line_amount_types, strategy, group_by, summary):
    """Every billing item adds up (extendedPrice + taxDollars == totalAmount, to Autotask's four decimals) and the
    invoice's totals are their sums: whatever the tax mode, rounding strategy and grouping, it is drafted."""
    rng = random.Random(seed)
    taxed = line_amount_types != "NoTax"
    invoices, lines, line_id = [], [], ITEM
    for invoice_id in range(6001, 6005):
        sign = -1 if rng.random() < 0.2 else 1
        items = [_item(rng, line_id + k, invoice_id, sign, rng.random() < 0.5, [1, 7, 4] if taxed else [4])
                 for k in range(rng.randint(1, 6))]
        line_id += len(items)
        for item in items:
            assert item["extendedPrice"] + item["taxDollars"] == item["totalAmount"]
        lines += items
        invoices.append(invoice_for(items, invoice_id=invoice_id))
    rounding = {"strategy": strategy} | ({"account_code": "860"} if strategy == "rounding_line" else {})
    the_mapping = mapping(line_amount_types=line_amount_types, tax={**TAX, "rounding": rounding},
                          lines={"group_by": group_by}, **({"line_presentation": {"mode": "summary"}} if summary else {}))
    result = run(invoices, lines, the_mapping=the_mapping)
    assert result.set_aside == []
    assert sorted(set(result.drafts["autotask_invoice_id"])) == [i["id"] for i in invoices]

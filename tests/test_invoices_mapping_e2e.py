"""Every mapping option, end to end: a tenant mapping that uses it, a real Prefect run of the invoices flow,
and what Xero then holds, read back over HTTP through the Xero gateway (the xero-python SDK).

Each test also makes the universal check: every live Autotask invoice is in Xero (its Total and TotalTax
equal Autotask's invoiceTotal and totalTaxValue to the cent) or set aside in the ledger with a reason.
Expected values are worked out here from the Autotask records and the README, not from core/.
"""
from __future__ import annotations

from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import calendar
import json
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
import yaml

from atx.connections import ledger_for, xero_gateway
from ledger import DocState
from sandbox.autotask import catalog
from sandbox.autotask.generator import at_utc
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import DEMO, END, connect, live_invoices, manual_clock, mapping_file, run

pytestmark = pytest.mark.e2e

# Companies of SandboxStack(seed=11): the first six invoices go to the first six customers, one each.
NZ, NZ2, AU, UK, EXPORT_USD, EXEMPT = 174, 175, 176, 177, 178, 179
DEPARTMENT_OPTIONS = {1: "Managed Services", 2: "Projects", 3: "Hardware"}
ITEM_TEMPLATE = "#{id} {itemName}"  # puts each Xero line's billing item id in its text, for matching


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=8, window_end=END, clock=manual_clock()) as s:
        yield s


def money(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def value_of(enum_or_text) -> str:
    return str(getattr(enum_or_text, "value", enum_or_text))


def company(stack, company_id: int) -> dict:
    return next(c for c in stack.autotask.records("Companies") if c["id"] == company_id)


def items_of(stack, invoice_id: int) -> list[dict]:
    return [l for l in stack.autotask.records("BillingItems") if l["invoiceID"] == invoice_id]


def add_invoice(stack, invoice_id: int, company_id: int, day: date, lines: list[dict], *, payment_term: int = 5,
                order_number: str | None = None) -> dict:
    """An Autotask invoice with Autotask's own arithmetic: extendedPrice = round(q x rate, 2) and taxDollars =
    round(extendedPrice x rate%, 2), both half up; the invoice's totals are the sums of its lines."""
    who = company(stack, company_id)
    rates = {(t["taxRegionID"], t["taxCategoryID"]): Decimal(str(t["taxRate"])) for t in stack.autotask.records("Taxes")}
    total = tax_total = Decimal("0.00")
    for n, spec in enumerate(lines):
        code = spec.get("code", 29682806)
        category = catalog.BILLING_CODES[code][4]
        percent = Decimal(0) if who["isTaxExempt"] else rates[(who["taxRegionID"], category)]
        quantity, rate = Decimal(spec.get("qty", "1")), Decimal(spec["rate"])
        extended = money(quantity * rate)
        tax = money(extended * percent / 100)
        total, tax_total = total + extended + tax, tax_total + tax
        name = spec.get("name", catalog.BILLING_CODES[code][0])
        stack.autotask.insert("BillingItems", {
            "id": invoice_id * 100 + n, "invoiceID": invoice_id, "companyID": company_id, "itemName": name,
            "description": f"{name} - {who['companyName']}", "quantity": quantity, "rate": rate,
            "extendedPrice": extended, "taxDollars": tax, "totalAmount": extended + tax, "billingCodeID": code,
            "billingItemType": spec.get("kind", 5), "sortOrderID": n + 1, "nonBillable": 0, "subType": 0,
            "purchaseOrderNumber": spec.get("po"), "itemDate": at_utc(day), "postedDate": at_utc(day),
        })
    stack.autotask.insert("Invoices", {
        "id": invoice_id, "companyID": company_id, "invoiceNumber": f"INV-{invoice_id}", "batchID": 999,
        "invoiceDateTime": at_utc(day), "createDateTime": at_utc(day), "fromDate": at_utc(day.replace(day=1)),
        "toDate": at_utc(day), "dueDate": at_utc(day + timedelta(days=99)), "paymentTerm": payment_term,
        "invoiceEditorTemplateID": who["invoiceTemplateID"], "invoiceTotal": total, "totalTaxValue": tax_total,
        "isVoided": False, "orderNumber": order_number, "taxGroup": who["taxRegionID"],
        "taxRegionName": catalog.TAX_REGIONS[who["taxRegionID"]],
    })
    return next(i for i in stack.autotask.records("Invoices") if i["id"] == invoice_id)


def in_xero(stack, settings, *, tax_may_differ: frozenset[int] = frozenset()) -> dict[int, object]:
    """Autotask id -> the Xero invoice (SDK model, read over HTTP) for every synced invoice, after checking
    that each live Autotask invoice is synced or set aside with a reason, and that each synced one has
    Autotask's Total and TotalTax to the cent (TotalTax excepted only where a rounding line was documented)."""
    rows = ledger_for(settings).records(settings.name, "invoice")
    synced = {k: r for k, r in rows.items() if r.state == DocState.SYNCED}
    gateway = xero_gateway(settings)
    by_id = {str(d.invoice_id): d for d in gateway.find_invoices(ids=[r.target_id for r in synced.values()], with_lines=True)} if synced else {}
    docs = {}
    for invoice in live_invoices(stack):
        row = rows.get(str(invoice["id"]))
        assert row is not None, f"{invoice['invoiceNumber']} neither in Xero nor set aside"
        if row.state == DocState.SET_ASIDE:
            assert row.reason and row.fix, invoice["invoiceNumber"]
            continue
        assert row.state == DocState.SYNCED, (invoice["invoiceNumber"], row.state)
        doc = by_id[row.target_id]
        assert value_of(doc.type) == "ACCREC"
        assert money(doc.total) == money(invoice["invoiceTotal"]), invoice["invoiceNumber"]
        if invoice["id"] not in tax_may_differ:
            assert money(doc.total_tax) == money(invoice["totalTaxValue"]), invoice["invoiceNumber"]
        docs[invoice["id"]] = doc
    return docs


def item_id(line) -> int:
    """The billing item id that ITEM_TEMPLATE wrote at the start of a Xero line's description."""
    assert line.description.startswith("#"), line.description
    return int(line.description[1:].split()[0])


def report_rows(state, tenant: str = "acme") -> list[dict]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id  # filtered: an unfiltered read returns one page of the server's
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    table = next(a for a in artifacts if a.key == f"invoices-{tenant}" and a.type == "table")
    return json.loads(table.data) if isinstance(table.data, str) else table.data


def following_month(day: date, wanted: int) -> date:
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return date(year, month, min(wanted, calendar.monthrange(year, month)[1]))


# ---- 1, 2. invoice_number ----------------------------------------------------------------------------
def test_invoice_number_template_numbers_by_autotask_id_and_keeps_the_autotask_number(stack, tmp_path):
    settings = connect(stack, mapping=mapping_file(tmp_path, invoice_number="INV:{id}"))
    _, first = run()
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack)) == first.count("created")
    rows = ledger_for(settings).records("acme", "invoice")
    for invoice in live_invoices(stack):
        doc = docs[invoice["id"]]
        assert doc.invoice_number == f"INV:{invoice['id']}"
        assert rows[str(invoice["id"])].source_number == invoice["invoiceNumber"]  # Autotask's number is kept
        assert rows[str(invoice["id"])].target_number == doc.invoice_number
        assert doc.url.endswith(f"InvoiceID={invoice['id']}")  # and the link back to the Autotask invoice
    _, second = run()
    assert second.count("created") == 0 and second.count("already in Xero") == len(docs)
    assert len(xero_gateway(settings).find_invoices(where='Type=="ACCREC"', with_lines=True)) == len(docs)


def test_invoice_number_xero_lets_xero_number_and_the_reference_starts_with_the_autotask_number(stack, tmp_path):
    ordered = live_invoices(stack)[0]
    stack.autotask.update("Invoices", ordered["id"], {"orderNumber": "PO-4711"})
    settings = connect(stack, mapping=mapping_file(tmp_path, invoice_number="xero"))
    _, first = run()
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack)) == first.count("created")
    autotask_numbers = {i["invoiceNumber"] for i in live_invoices(stack)}
    numbers = [d.invoice_number for d in docs.values()]
    assert len(set(numbers)) == len(numbers) and not set(numbers) & autotask_numbers  # Xero's own sequence
    for invoice in live_invoices(stack):
        reference = docs[invoice["id"]].reference
        assert reference.startswith(invoice["invoiceNumber"]), reference
    assert docs[ordered["id"]].reference == f"{ordered['invoiceNumber']} / PO-4711"  # demo reference: {orderNumber}
    rows = ledger_for(settings).records("acme", "invoice")
    assert {rows[str(k)].target_number for k in docs} == set(numbers)

    _, second = run()
    assert second.count("created") == 0 and second.count("already in Xero") == len(docs)
    again = xero_gateway(settings).find_invoices(where='Type=="ACCREC"', with_lines=True)
    assert sorted(d.invoice_number for d in again) == sorted(numbers)


# ---- 3. status ---------------------------------------------------------------------------------------
def test_status_and_a_per_company_override(stack, tmp_path):
    settings = connect(stack, mapping=mapping_file(tmp_path, status="AUTHORISED", status_overrides={NZ2: "DRAFT"}))
    run()
    docs = in_xero(stack, settings)
    companies = {i["id"]: i["companyID"] for i in live_invoices(stack)}
    assert NZ2 in companies.values() and len(set(companies.values())) > 1
    assert len(docs) == len(companies)
    for invoice_id, doc in docs.items():
        assert value_of(doc.status) == ("DRAFT" if companies[invoice_id] == NZ2 else "AUTHORISED"), invoice_id


# ---- 4. due dates ------------------------------------------------------------------------------------
HARBOURSIDE = "Harbourside Dental Ltd"  # company NZ, named in an override by its name


def _due_rules():
    # (due_date, due_date_overrides, expected(invoice date, company id, payment term) -> due date)
    def term(day, company_id, payment_term):
        return day + timedelta(days=catalog.PAYMENT_TERMS[payment_term][1])

    return {
        "payment_term, override by name {day_of_following_month: 20}": (
            "payment_term", {HARBOURSIDE: {"day_of_following_month": 20}},
            lambda d, c, t: following_month(d, 20) if c == NZ else term(d, c, t)),
        "days_after_invoice 14, override by id {day_of_following_month: 31}": (
            {"days_after_invoice": 14}, {NZ: {"day_of_following_month": 31}},
            lambda d, c, t: following_month(d, 31) if c == NZ else d + timedelta(days=14)),
        "day_of_following_month 20": (
            {"day_of_following_month": 20}, None, lambda d, c, t: following_month(d, 20)),
    }


@pytest.mark.parametrize("rule", list(_due_rules()))
def test_due_date_rules_and_overrides(stack, tmp_path, rule):
    due_date, overrides, expected = _due_rules()[rule]
    # Autotask's own due dates are 99 days out, so a rule that fell back to them would show.
    for invoice in live_invoices(stack):
        day = date.fromisoformat(invoice["invoiceDateTime"][:10])
        stack.autotask.update("Invoices", invoice["id"], {"dueDate": at_utc(day + timedelta(days=99))})
    end_of_january = [  # the month's end, into a short February; 2028 is a leap year
        add_invoice(stack, 990001, NZ, date(2027, 1, 31), [{"rate": "100"}], payment_term=3),
        add_invoice(stack, 990002, NZ, date(2028, 1, 31), [{"rate": "100"}], payment_term=3),
        add_invoice(stack, 990003, NZ2, date(2027, 1, 31), [{"rate": "100"}], payment_term=5),
    ]
    changes = {"due_date": due_date}
    if overrides:
        changes["due_date_overrides"] = overrides
    settings = connect(stack, mapping=mapping_file(tmp_path, **changes))
    run(until=date(2028, 2, 1))
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack))
    for invoice in live_invoices(stack):
        day = date.fromisoformat(invoice["invoiceDateTime"][:10])
        wanted = expected(day, invoice["companyID"], invoice["paymentTerm"])
        assert docs[invoice["id"]].due_date == wanted, (invoice["invoiceNumber"], rule)
    got = {i["id"]: docs[i["id"]].due_date for i in end_of_january}
    if due_date == "payment_term":
        assert got == {990001: date(2027, 2, 20), 990002: date(2028, 2, 20), 990003: date(2027, 3, 2)}
    elif overrides:
        assert got == {990001: date(2027, 2, 28), 990002: date(2028, 2, 29), 990003: date(2027, 2, 14)}
    else:
        assert got == {990001: date(2027, 2, 20), 990002: date(2028, 2, 20), 990003: date(2027, 2, 20)}


# ---- 5. line_amount_types ----------------------------------------------------------------------------
def test_inclusive_lines_carry_tax_and_totals_still_match(stack, tmp_path):
    settings = connect(stack, mapping=mapping_file(tmp_path, line_amount_types="Inclusive",
                                                   lines={"description": ITEM_TEMPLATE}))
    run()
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack))
    items = {l["id"]: l for l in stack.autotask.records("BillingItems")}
    assert any(money(i["totalTaxValue"]) > 0 for i in live_invoices(stack))
    for doc in docs.values():
        assert value_of(doc.line_amount_types) == "Inclusive"
        for line in doc.line_items:
            item = items[item_id(line)]
            # within the cent that spreads a four-decimal invoice tax over its lines
            assert abs(money(line.line_amount) - money(item["extendedPrice"] + item["taxDollars"])) <= Decimal("0.01")


def test_no_tax_for_an_exempt_customer_and_taxed_invoices_set_aside(stack, tmp_path):
    settings = connect(stack, mapping=mapping_file(tmp_path, line_amount_types="NoTax"))
    _, summary = run()
    docs = in_xero(stack, settings)
    untaxed = {i["id"] for i in live_invoices(stack) if money(i["totalTaxValue"]) == 0}
    exempt = {i["id"] for i in live_invoices(stack) if i["companyID"] == EXEMPT}
    assert exempt and exempt <= untaxed
    assert set(docs) == untaxed
    for doc in docs.values():
        assert value_of(doc.line_amount_types) == "NoTax" and money(doc.total_tax) == 0
    for invoice_id in exempt:  # Xero keeps no TaxType on NoTax lines: it stores NONE
        assert {li.tax_type for li in docs[invoice_id].line_items} == {"NONE"}
    aside = {s.autotask_id: s for s in summary.set_aside}
    assert set(aside) == {i["id"] for i in live_invoices(stack)} - untaxed
    assert all("NoTax" in s.reason and "Exclusive" in s.fix for s in aside.values())


# ---- 6. rounding -------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["tax_amount", "rounding_line"])
def test_rounding_traps_match_autotask_to_the_cent_and_are_reported(stack, tmp_path, strategy):
    # Three 1 x 33.3333 lines at 15 %: 33.33 and 5.00 (4.9995 half up) each, 114.99 with 15.00 tax. Xero rounds
    # each line's tax the same way, so this one needs nothing, grouped or not.
    three = add_invoice(stack, 990010, NZ, END - timedelta(days=2), [{"rate": "33.3333"}] * 3)
    # Twelve of them on one billing code, sent as one grouped line: Xero's tax on 399.96 is 59.99 (59.994),
    # Autotask charged 12 x 5.00 = 60.00. This one needs the rounding strategy.
    twelve = add_invoice(stack, 990011, NZ, END - timedelta(days=2), [{"rate": "33.3333"}] * 12)
    assert (three["invoiceTotal"], three["totalTaxValue"]) == (Decimal("114.99"), Decimal("15.00"))
    assert (twelve["invoiceTotal"], twelve["totalTaxValue"]) == (Decimal("459.96"), Decimal("60.00"))
    demo_tax = yaml.safe_load(DEMO.read_text())["tax"]
    rounding = {"strategy": strategy} | ({"account_code": "260"} if strategy == "rounding_line" else {})
    settings = connect(stack, mapping=mapping_file(tmp_path, tax={**demo_tax, "rounding": rounding},
                                                   lines={"group_by": "billing_code"}))
    state, summary = run()
    live = {i["id"]: i for i in live_invoices(stack)}
    # rounding_line: the lines keep Xero's own tax; a line of no amount carries the difference as its tax.
    docs = in_xero(stack, settings)
    assert len(docs) == len(live)
    notes = {o.autotask_id: o.note for o in summary.outcomes}
    for invoice_id, doc in docs.items():
        extra = [li for li in doc.line_items if li.description == "Rounding"]
        assert all(li.account_code == "260" and money(li.line_amount) == 0 and money(li.tax_amount) != 0
                   for li in extra)
        if strategy == "tax_amount":
            assert not extra
        else:
            assert bool(extra) == bool(notes[invoice_id]), invoice_id  # the report names each one that got it
    for invoice in (three, twelve):
        assert money(docs[invoice["id"]].total) == money(invoice["invoiceTotal"])
    assert [money(li.line_amount) for li in docs[three["id"]].line_items] == [Decimal("99.99")]
    lines = docs[twelve["id"]].line_items
    if strategy == "tax_amount":
        assert [(money(li.line_amount), money(li.tax_amount)) for li in lines] == [(Decimal("399.96"), Decimal("60.00"))]
        assert money(docs[twelve["id"]].total_tax) == Decimal("60.00")
    else:
        assert [(money(li.line_amount), money(li.tax_amount), li.account_code, li.tax_type) for li in lines] == [
            (Decimal("399.96"), Decimal("59.99"), "200", "OUTPUT2"), (Decimal("0.00"), Decimal("0.01"), "260", "OUTPUT2")]
        assert lines[1].description == "Rounding"
        assert money(docs[twelve["id"]].total_tax) == Decimal("60.00")

    assert notes[twelve["id"]] and not notes[three["id"]]
    assert ("TaxAmount" if strategy == "tax_amount" else "rounding line") in notes[twelve["id"]]
    table = {r["Autotask number"]: r for r in report_rows(state)}
    assert table[twelve["invoiceNumber"]]["Note"] == notes[twelve["id"]]
    assert table[three["invoiceNumber"]]["Note"] == ""


# ---- 7. lines ----------------------------------------------------------------------------------------
def test_lines_grouped_by_billing_code_with_templated_descriptions(stack, tmp_path):
    template = "{itemName} | {billingCode} | {quantity} | {purchaseOrderNumber}"
    add_invoice(stack, 990020, NZ, END - timedelta(days=1), [
        {"code": 29682801, "qty": "0.25", "rate": "165", "kind": 1, "name": "Remote Support", "po": "CPO-1"},
        {"code": 29682801, "qty": "1.5", "rate": "165", "kind": 1, "name": "Remote Support"},
        {"code": 29682804, "qty": "2", "rate": "845", "kind": 3, "name": "Ubiquiti UniFi Switch 24 PoE"},
        {"code": 29682801, "qty": "3", "rate": "165", "kind": 1, "name": "Remote Support"},
    ])
    settings = connect(stack, mapping=mapping_file(tmp_path, lines={"group_by": "billing_code", "description": template}))
    run()
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack))
    codes = {c["id"]: c["name"] for c in stack.autotask.records("BillingCodes")}

    def body(item):  # the README: template over the item's fields, empty fields left out
        po = item["purchaseOrderNumber"]
        text = f"{item['itemName']} | {codes[item['billingCodeID']]} | {Decimal(str(item['quantity'])).normalize():f}"
        return f"{text} | {po}" if po else text

    for invoice_id, doc in docs.items():
        items = sorted(items_of(stack, invoice_id), key=lambda l: (l["sortOrderID"], l["id"]))
        by_code: dict[int, list[dict]] = {}
        for item in items:
            by_code.setdefault(item["billingCodeID"], []).append(item)
        assert len(doc.line_items) == len(by_code), invoice_id  # one Xero line per billing code
        for line, group in zip(doc.line_items, by_code.values()):
            assert line.description == "\n".join(body(i) for i in group)
            assert money(line.line_amount) == sum(money(i["extendedPrice"]) for i in group)
            if len(group) > 1:
                assert Decimal(str(line.quantity)) == 1
    grouped = docs[990020].line_items
    assert [l.description for l in grouped] == [
        "Remote Support | Remote Support | 0.25 | CPO-1\nRemote Support | Remote Support | 1.5\n"
        "Remote Support | Remote Support | 3",
        "Ubiquiti UniFi Switch 24 PoE | Hardware | 2",
    ]
    assert [money(l.line_amount) for l in grouped] == [Decimal("783.75"), Decimal("1690.00")]


# ---- 8. reference ------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", ["PO {orderNumber}", "{purchaseOrderNumbers}"])
def test_reference_templates(stack, tmp_path, template):
    first, second = live_invoices(stack)[:2]
    stack.autotask.update("Invoices", first["id"], {"orderNumber": "4711"})
    stack.autotask.update("Invoices", second["id"], {"orderNumber": None})
    add_invoice(stack, 990030, NZ, END - timedelta(days=1), [
        {"rate": "10", "po": "CPO-1"}, {"rate": "20", "po": "CPO-2"}, {"rate": "30", "po": "CPO-1"}, {"rate": "40"}],
        order_number="77")
    settings = connect(stack, mapping=mapping_file(tmp_path, reference=template))
    run()
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack))
    for invoice in live_invoices(stack):
        reference = docs[invoice["id"]].reference or ""
        if template == "PO {orderNumber}":
            assert reference == (f"PO {invoice['orderNumber']}" if invoice["orderNumber"] else ""), invoice["id"]
        else:
            numbers = {l["purchaseOrderNumber"] for l in items_of(stack, invoice["id"]) if l["purchaseOrderNumber"]}
            assert set(filter(None, reference.split(", "))) == numbers, invoice["id"]
    if template == "PO {orderNumber}":  # a field that is empty leaves the reference empty
        assert [docs[k].reference or "" for k in (first["id"], second["id"], 990030)] == ["PO 4711", "", "PO 77"]
    else:  # the lines' distinct PO numbers, comma separated
        assert docs[990030].reference == "CPO-1, CPO-2"


# ---- 9. accounts and tax -----------------------------------------------------------------------------
def test_accounts_by_billing_item_type_and_default_and_tax_by_region(stack, tmp_path):
    accounts = {"by_billing_item_type": {4: "260", 1: "270"}, "default": "200", "refuse_unmapped": False}
    settings = connect(stack, mapping=mapping_file(tmp_path, accounts=accounts, lines={"description": ITEM_TEMPLATE}))
    _, summary = run()
    assert summary.set_aside_count == 0  # refuse_unmapped false: no billing code needs a rule of its own
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack))
    items = {l["id"]: l for l in stack.autotask.records("BillingItems")}
    companies = {c["id"]: c for c in stack.autotask.records("Companies")}
    region_rules = {"Australia GST": "TAX001", "United Kingdom VAT": "TAX002"}
    category_rules = {"Standard Services": "OUTPUT2", "Hardware": "OUTPUT2", "Software Licensing": "OUTPUT2",
                      "Non-Taxable": "NONE"}
    seen_accounts, seen_tax = set(), set()
    for invoice in live_invoices(stack):
        who = companies[invoice["companyID"]]
        region = catalog.TAX_REGIONS[who["taxRegionID"]]
        for line in docs[invoice["id"]].line_items:
            item = items[item_id(line)]
            account = {4: "260", 1: "270"}.get(item["billingItemType"], "200")
            assert line.account_code == account, item["id"]
            category = catalog.TAX_CATEGORIES[catalog.BILLING_CODES[item["billingCodeID"]][4]][0]
            if who["isTaxExempt"]:
                tax_type = "EXEMPTOUTPUT"
            elif region == "Zero Rated Export":
                tax_type = "ZERORATED"
            elif region in region_rules:
                tax_type = "NONE" if category == "Non-Taxable" else region_rules[region]
            else:
                tax_type = category_rules[category]
            assert line.tax_type == tax_type, (item["id"], region, category)
            seen_accounts.add(account)
            seen_tax.add(tax_type)
    assert seen_accounts == {"200", "260", "270"}
    assert {"TAX001", "TAX002", "ZERORATED", "OUTPUT2", "EXEMPTOUTPUT"} <= seen_tax


# ---- 10. tracking and branding themes ----------------------------------------------------------------
@pytest.mark.parametrize("source", ["company.udf:Region", "company.classification"])
def test_tracking_and_branding_themes(stack, tmp_path, source):
    if source == "company.classification":
        stack.autotask.update("Companies", NZ, {"classification": 1})
        stack.autotask.update("Companies", AU, {"classification": 2})
        region_options = {1: "North", 2: "South", "*": "Central"}
        branding = {"by_template_name": {"Standard Invoice": "Managed Services"}, "default": "Standard"}
        themed = 101
    else:
        for company_id, region in ((NZ, "Auckland"), (AU, "Christchurch")):
            udfs = company(stack, company_id)["userDefinedFields"] + [{"name": "Region", "value": region}]
            stack.autotask.update("Companies", company_id, {"userDefinedFields": udfs})
        region_options = {"Auckland": "North", "Christchurch": "South", "*": "Central"}
        branding = {"by_template_id": {102: "Managed Services"}, "default": "Standard"}
        themed = 102
    tracking = [{"category": "Region", "source": source, "options": region_options},
                {"category": "Department", "source": "billing_code.department", "options": DEPARTMENT_OPTIONS}]
    settings = connect(stack, mapping=mapping_file(tmp_path, tracking=tracking, branding_themes=branding,
                                                   lines={"description": ITEM_TEMPLATE}))
    run()
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack))
    themes = {t.name: str(t.branding_theme_id) for t in xero_gateway(settings).branding_themes()}
    items = {l["id"]: l for l in stack.autotask.records("BillingItems")}
    regions = {NZ: "North", AU: "South"}
    seen = set()
    for invoice in live_invoices(stack):
        doc = docs[invoice["id"]]
        theme = "Managed Services" if invoice["invoiceEditorTemplateID"] == themed else "Standard"
        assert str(doc.branding_theme_id) == themes[theme], invoice["id"]
        for line in doc.line_items:
            item = items[item_id(line)]
            department = catalog.BILLING_CODES[item["billingCodeID"]][3]
            wanted = {"Region": regions.get(invoice["companyID"], "Central"),
                      "Department": DEPARTMENT_OPTIONS[department]}
            assert {t.name: t.option for t in line.tracking or []} == wanted, item["id"]
            seen.add(wanted["Region"])
    assert seen == {"North", "South", "Central"}
    assert {str(d.branding_theme_id) for d in docs.values()} == {themes["Standard"], themes["Managed Services"]}


# ---- 11. currency_rate -------------------------------------------------------------------------------
@pytest.mark.parametrize("currency_rate", ["autotask", "xero"])
def test_currency_rate(stack, tmp_path, currency_rate):
    settings = connect(stack, mapping=mapping_file(tmp_path, currency_rate=currency_rate))
    run()
    docs = in_xero(stack, settings)
    assert len(docs) == len(live_invoices(stack))
    companies = {c["id"]: c for c in stack.autotask.records("Companies")}
    autotask_rates = {cid: rate for cid, (_, _, rate) in catalog.CURRENCIES.items()}
    codes = {cid: code for cid, (code, _, _) in catalog.CURRENCIES.items()}
    currencies = set()
    for invoice in live_invoices(stack):
        doc = docs[invoice["id"]]
        currency_id = companies[invoice["companyID"]]["currencyID"]
        assert value_of(doc.currency_code) == codes[currency_id]
        currencies.add(codes[currency_id])
        rate = Decimal(str(doc.currency_rate))
        if codes[currency_id] == "NZD":
            assert rate == 1
        elif currency_rate == "autotask":
            # Xero's CurrencyRate is units of the invoice currency per 1 NZD (the base): Autotask's rate as it is.
            assert rate == autotask_rates[currency_id], codes[currency_id]
        else:
            assert rate not in (autotask_rates[currency_id], (1 / autotask_rates[currency_id]).quantize(Decimal("0.000001")))
    assert {"NZD", "AUD", "GBP", "USD"} <= currencies
    aud = next(d for k, d in docs.items() if next(i for i in live_invoices(stack) if i["id"] == k)["companyID"] == AU)
    if currency_rate == "autotask":
        assert Decimal(str(aud.currency_rate)) == Decimal("0.9134")  # AUD per NZD, not NZD per AUD (1.0948)

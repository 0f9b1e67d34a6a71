"""Deterministic, realistic MSP data for the Autotask sandbox.

Records use Autotask's field names (a subset of the swagger models), numbers as Decimal and
timestamps as Autotask's UTC strings. Invoice arithmetic follows Autotask: each line's
extendedPrice = round(quantity x rate, 2), taxDollars = round(extendedPrice x rate% , 2), both
half-up; invoiceTotal (tax-inclusive) and totalTaxValue are the exact sums of the lines.
"""
from __future__ import annotations

import json
import random
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from . import catalog

CENT = Decimal("0.01")
RATE_DP = Decimal("0.0001")
DEFAULT_START = date(2026, 10, 25)

# (name, region, tax exempt, payment term, template); the first rows make sure every region,
# currency and the tax-exempt case appear whatever the seed.
_CUSTOMERS = [
    ("Harbourside Dental Ltd", 1, False, 4, 101),
    ("Kauri Freight Logistics", 1, False, 5, 102),
    ("Southern Cross Accounting Pty Ltd", 2, False, 5, 102),
    ("Thames Valley Architects LLP", 3, False, 5, 101),
    ("Pacific Rim Exports Inc", 4, False, 5, 103),
    ("Aroha Community Trust", 1, True, 3, 101),
    ("Wellington Legal Partners", 1, False, 2, 102),
    ("Brisbane Solar Installers", 2, False, 4, 103),
    ("Cotswold Veterinary Group", 3, False, 3, 102),
    ("Tasman Marine Engineering", 1, False, 5, 103),
    ("Canterbury Grain Co-op", 1, False, 4, 102),
    ("Perth Mining Services", 2, False, 5, 101),
    ("Seattle Coffee Roasters", 4, False, 5, 101),
]
_VENDORS = [("Ingram Micro NZ", 1), ("Dicker Data Ltd", 1)]
_FIRST = ["Aroha", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hemi", "Isla", "Jack", "Kiri", "Liam", "Mia"]
_LAST = ["Ngata", "Walker", "Singh", "Chen", "Taylor", "Brown", "Wilson", "Patel", "Smith", "Tane", "Murphy"]

# id -> (name, sku, billing code, unit cost, unit price)
_PRODUCTS = {
    31001: ("Dell Latitude 5550 Laptop", "DL-5550", 29682804, Decimal("1420.5000"), Decimal("1899.0000")),
    31002: ("Ubiquiti UniFi Switch 24 PoE", "USW-24-POE", 29682804, Decimal("612.0000"), Decimal("845.0000")),
    31003: ("Logitech MX Keys Combo", "LOG-MXK", 29682804, Decimal("119.9900"), Decimal("169.9500")),
    31004: ("Microsoft 365 Business Premium", "M365-BP", 29682805, Decimal("31.2000"), Decimal("36.3833")),
    31005: ("SentinelOne Control", "S1-CTRL", 29682805, Decimal("6.1250"), Decimal("9.4575")),
    31006: ("APC Back-UPS 1500VA", "APC-BX1500", 29682804, Decimal("298.4000"), Decimal("419.0000")),
}


def at_utc(value: datetime | date) -> str:
    """Autotask's wire format for timestamps: UTC with milliseconds and a Z."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0), tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _reference_data() -> dict[str, list[dict]]:
    currencies = [
        {"id": cid, "name": code, "description": desc, "exchangeRate": rate, "isActive": True,
         "isInternalCurrency": cid == catalog.INTERNAL_CURRENCY_ID, "displaySymbol": cid,
         "currencyPositiveFormat": "$X", "currencyNegativeFormat": "-$X",
         "lastModifiedDateTime": "2025-01-06T20:15:00.000Z"}
        for cid, (code, desc, rate) in catalog.CURRENCIES.items()
    ]
    regions = [{"id": rid, "name": name, "isActive": True} for rid, name in catalog.TAX_REGIONS.items()]
    categories = [{"id": cid, "name": name, "description": desc, "isActive": True}
                  for cid, (name, desc) in catalog.TAX_CATEGORIES.items()]
    taxes = []
    for rid in catalog.TAX_REGIONS:
        for cid, (cname, _) in catalog.TAX_CATEGORIES.items():
            rate = Decimal("0.0000") if cid == catalog.NON_TAXABLE_CATEGORY_ID else catalog.REGION_STANDARD_RATE[rid]
            taxes.append({"id": rid * 100 + cid, "taxRegionID": rid, "taxCategoryID": cid,
                          "taxName": f"{catalog.REGION_TAX_NAME[rid]} {rate.normalize():f}% ({cname})",
                          "taxRate": rate, "isCompounded": False})
    codes = [
        {"id": bid, "name": name, "description": f"{name} ({ext})", "externalNumber": ext,
         "generalLedgerAccount": gl, "department": dept, "taxCategoryID": tax_cat,
         "billingCodeType": 0, "useType": 1, "isActive": True, "isExcludedFromNewContracts": False,
         "markupRate": None, "unitCost": None, "unitPrice": price}
        for bid, (name, ext, gl, dept, tax_cat, price) in catalog.BILLING_CODES.items()
    ]
    terms = [{"id": tid, "name": name, "description": name, "isActive": True, "paymentDueInDays": days}
             for tid, (name, days) in catalog.PAYMENT_TERMS.items()]
    templates = [{"id": tid, "name": name, "dateFormat": 1, "numberFormat": 1, "timeFormat": 1, "pageLayout": 1,
                  "paymentTerms": 5, "groupBy": 0, "itemizeItemsInEachGroup": 1, "displayTaxCategory": True,
                  "displaySeparateLineItemForEachTax": False, "showGridHeader": True,
                  "currencyPositiveFormat": "$X", "currencyNegativeFormat": "-$X"}
                 for tid, name in catalog.INVOICE_TEMPLATES.items()]
    products = [{"id": pid, "name": name, "description": name, "sku": sku, "manufacturerName": name.split()[0],
                 "productBillingCodeID": code, "unitCost": cost, "unitPrice": price, "msrp": price,
                 "isActive": True, "isSerialized": code == 29682804, "defaultVendorID": 201,
                 "userDefinedFields": []}
                for pid, (name, sku, code, cost, price) in _PRODUCTS.items()]
    return {"Currencies": currencies, "TaxRegions": regions, "TaxCategories": categories, "Taxes": taxes,
            "BillingCodes": codes, "PaymentTerms": terms, "InvoiceTemplates": templates, "Products": products}


def _companies(rng: random.Random) -> tuple[list[dict], list[dict]]:
    count = rng.randint(8, 13)
    chosen = _CUSTOMERS[:6] + rng.sample(_CUSTOMERS[6:], count - 6)
    companies, contacts = [], []
    for i, (name, region, exempt, term, template) in enumerate(chosen):
        cid = 174 + i
        companies.append({
            "id": cid, "companyName": name, "companyNumber": f"C{1000 + i}", "companyType": 1,
            "isActive": True, "taxRegionID": region, "isTaxExempt": exempt,
            "currencyID": catalog.REGION_CURRENCY[region], "invoiceTemplateID": template,
            "phone": f"+64 9 {rng.randint(300, 999)} {rng.randint(1000, 9999)}",
            "address1": f"{rng.randint(1, 400)} {rng.choice(['Queen', 'High', 'Victoria', 'George'])} Street",
            "city": ["Auckland", "Sydney", "London", "Seattle"][region - 1] if region <= 4 else "Auckland",
            "postalCode": str(rng.randint(1000, 9999)), "taxID": f"TAX-{rng.randint(100000, 999999)}",
            "createDate": "2024-03-01T00:00:00.000Z", "lastTrackedModifiedDateTime": "2026-01-10T02:00:00.000Z",
            "userDefinedFields": [{"name": "Xero Sync", "value": "No" if i == 7 else "Yes"},
                                  {"name": "Billing Contact", "value": None}],
            "_paymentTerm": term,
        })
    for j, (name, region) in enumerate(_VENDORS):
        companies.append({
            "id": 201 + j, "companyName": name, "companyNumber": f"V{2000 + j}", "companyType": 7,
            "isActive": True, "taxRegionID": region, "isTaxExempt": False, "currencyID": 1,
            "city": "Auckland", "createDate": "2023-06-01T00:00:00.000Z",
            "userDefinedFields": [{"name": "Xero Sync", "value": "Yes"}, {"name": "Billing Contact", "value": None}],
        })
    contact_id = 30682900
    for company in companies:
        for k in range(2 if company["companyType"] == 1 else 1):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            domain = company["companyName"].split()[0].lower() + ".example.com"
            contacts.append({
                "id": contact_id, "companyID": company["id"], "firstName": first, "lastName": last,
                "emailAddress": f"{'accounts' if k == 0 else first.lower()}@{domain}",
                "primaryContact": k == 0, "isActive": 1, "title": "Accounts Payable" if k == 0 else "Office Manager",
                "createDate": "2024-03-01T00:00:00.000Z", "lastModifiedDate": "2026-01-10T02:00:00.000Z",
                "userDefinedFields": [],
            })
            contact_id += 1
    return companies, contacts


def _rate(rng: random.Random, low: int, high: int) -> Decimal:
    # Four-decimal rates (e.g. 33.3333) are where naive float pipelines lose cents.
    return (Decimal(rng.randint(low * 10_000, high * 10_000)) / 10_000).quantize(RATE_DP)


def _line_spec(rng: random.Random, kind: int) -> tuple[int, str, Decimal, Decimal, dict]:
    """(billing code, item name, quantity, rate, extra link fields) for one billing item type."""
    if kind == 1:  # Labor: time entries in quarter hours
        code = rng.choice([29682801, 29682802])
        qty = Decimal(rng.choice(["0.25", "0.5", "0.75", "1", "1.25", "1.5", "2", "3.75"]))
        return code, catalog.BILLING_CODES[code][0], qty, catalog.BILLING_CODES[code][5], {
            "ticketID": rng.randint(50000, 59999), "timeEntryID": rng.randint(700000, 799999), "roleID": 29683001}
    if kind in (2, 3):  # project/ticket cost: hardware and licences
        pid = rng.choice(list(_PRODUCTS))
        name, _, code, _, price = _PRODUCTS[pid]
        link = {"projectID": rng.randint(300, 399)} if kind == 2 else {"ticketID": rng.randint(50000, 59999)}
        return code, name, Decimal(rng.randint(1, 6)), price, link
    if kind == 4:
        return 29682808, rng.choice(["Mileage", "Parking", "Courier"]), Decimal(rng.choice(["1", "12.5", "42"])), \
            _rate(rng, 0, 30), {"expenseItemID": rng.randint(9000, 9999)}
    if kind in (5, 14):  # recurring service / subscription: per-seat fractional rates
        code = rng.choice([29682806, 29682807, 29682805])
        rate = rng.choice([Decimal("33.3333"), Decimal("127.4575"), Decimal("9.4575"), Decimal("36.3833")])
        return code, catalog.BILLING_CODES[code][0], Decimal(rng.randint(3, 45)), rate, {
            "contractID": rng.randint(800, 899), "contractServiceID": rng.randint(1000, 1999),
            "contractServicePeriodID": rng.randint(20000, 29999)}
    if kind in (6, 8):  # adjustments: seats removed mid-period come through as negative quantities
        rate = rng.choice([Decimal("33.3333"), Decimal("127.4575")])
        qty = -Decimal(rng.randint(1, 3))
        if rng.random() < 0.3:
            rate = -rate  # a negative quantity at a negative rate: positive line total
        return 29682806, "Managed Services adjustment", qty, rate, {
            "contractID": rng.randint(800, 899), "contractServiceAdjustmentID": rng.randint(4000, 4999)}
    if kind == 7:
        return 29682806, "Managed Services Bundle", Decimal(1), _rate(rng, 400, 2500), {
            "contractID": rng.randint(800, 899), "contractServiceBundleID": rng.randint(100, 199),
            "serviceBundleID": rng.randint(100, 199)}
    if kind == 9:
        return 29682809, "Milestone: " + rng.choice(["Design sign-off", "Go-live", "Migration complete"]), \
            Decimal(1), _rate(rng, 1500, 9000), {"projectID": rng.randint(300, 399), "milestoneID": rng.randint(60, 99)}
    if kind in (10, 11):
        return 29682810, "Block Hours" if kind == 10 else "Retainer", Decimal(rng.choice(["10", "20"])), \
            Decimal("150.0000"), {"contractID": rng.randint(800, 899)}
    if kind == 12:
        return 29682806, "Onboarding setup fee", Decimal(1), _rate(rng, 250, 900), {"contractID": rng.randint(800, 899)}
    if kind == 13:
        return 29682801, "Per-incident support", Decimal(rng.randint(1, 3)), Decimal("95.0000"), {
            "ticketID": rng.randint(50000, 59999)}
    # Contract Cost
    return 29682805, "Contract cost: licence true-up", Decimal(rng.randint(1, 5)), _rate(rng, 5, 60), {
        "contractID": rng.randint(800, 899)}


def _kinds_for(rng: random.Random, index: int) -> list[int]:
    all_kinds = list(catalog.BILLING_ITEM_TYPES)
    if index < len(all_kinds):
        # The first invoices cover every billing item type at least once.
        kinds = [all_kinds[index]]
    else:
        kinds = []
    weights = [30, 8, 8, 6, 20, 4, 3, 1, 2, 2, 1, 2, 2, 8, 1]
    kinds += rng.choices(all_kinds, weights=weights, k=rng.randint(1, 5))
    # Adjustments only make sense next to something they adjust, and keep the invoice positive.
    if all(k in (6, 8) for k in kinds):
        kinds.insert(0, 5)
    return kinds


def _more_kinds(rng: random.Random, count: int) -> list[int]:
    """Billing items that add to an invoice (no adjustments), for the volume runs."""
    kinds = [k for k in catalog.BILLING_ITEM_TYPES if k not in (6, 8)]
    return rng.choices(kinds, k=count) if count > 0 else []


def generate_data(seed: int = 7, invoices: int = 40, *, start: date | None = None,
                  days: int = 30, filter_cases: bool = False, rounding_cases: bool = False,
                  lines_per_invoice: int | None = None) -> dict[str, list[dict]]:
    """`lines_per_invoice` tops every invoice up to that many billing items (the benchmarks' volume runs:
    the usual 1 to 6 are about three an invoice). `filter_cases` adds the records the mapping's filters and contact options are tested on (see
    _filter_cases), `rounding_cases` the invoices whose four-decimal taxes round differently from their
    invoice-level tax (see _tax_rounding_cases); both off by default, so every data set generated
    before them is unchanged."""
    rng = random.Random(seed)
    start = start or DEFAULT_START
    data = _reference_data()
    companies, contacts = _companies(rng)
    customers = [c for c in companies if c["companyType"] == 1]
    tax_rate = {(t["taxRegionID"], t["taxCategoryID"]): t["taxRate"] for t in data["Taxes"]}
    exchange = {cid: rate for cid, (_, _, rate) in catalog.CURRENCIES.items()}

    dates = sorted(start + timedelta(days=rng.randrange(max(days, 1))) for _ in range(invoices))
    void_positions = set(rng.sample(range(invoices), min(2, invoices // 10))) if invoices >= 10 else set()
    invoice_rows, line_rows = [], []
    more = random.Random(f"lines:{seed}")  # a stream of its own, so the usual invoices' kinds stay as they were
    line_id = 80_000_001
    for i, day in enumerate(dates):
        company = rng.choice(customers) if i >= 6 else customers[i % len(customers)]
        term = company["_paymentTerm"]
        inv_id = 6001 + i
        issued = datetime.combine(day, time(0), tzinfo=timezone.utc)
        fx = exchange[company["currencyID"]]
        total = tax_total = Decimal("0.00")
        kinds = _kinds_for(rng, i)
        if lines_per_invoice:
            kinds += _more_kinds(more, lines_per_invoice - len(kinds))
        sort = 0
        while sort < len(kinds):
            kind = kinds[sort]
            code, name, qty, rate, links = _line_spec(rng, kind)
            category = catalog.BILLING_CODES[code][4]
            pct = Decimal(0) if company["isTaxExempt"] else tax_rate[(company["taxRegionID"], category)]
            extended = money(qty * rate)
            tax = money(extended * pct / 100)
            line_total = extended + tax
            total += line_total
            tax_total += tax
            item_day = issued - timedelta(days=rng.randint(0, 20), hours=rng.randint(0, 8))
            line_rows.append({
                "id": line_id, "invoiceID": inv_id, "companyID": company["id"], "itemName": name,
                "description": f"{name} - {company['companyName']}", "lineItemFullDescription": name,
                "lineItemGroupDescription": catalog.BILLING_ITEM_TYPES[kind],
                "quantity": qty, "rate": rate, "extendedPrice": extended, "taxDollars": tax,
                "totalAmount": line_total, "ourCost": money(abs(rate) * Decimal("0.62")),
                "internalCurrencyRate": (rate / fx).quantize(RATE_DP, rounding=ROUND_HALF_UP),
                "internalCurrencyExtendedPrice": money(extended / fx),
                "internalCurrencyTaxDollars": money(tax / fx),
                "internalCurrencyTotalAmount": money(extended / fx) + money(tax / fx),
                "billingCodeID": code, "billingItemType": kind, "subType": 0, "nonBillable": 0,
                "itemDate": at_utc(item_day), "postedDate": at_utc(issued),
                "postedOnTime": at_utc(issued + timedelta(hours=3)), "sortOrderID": sort + 1,
                "purchaseOrderNumber": f"CPO-{rng.randint(1000, 9999)}" if kind in (2, 3) and rng.random() < 0.4 else None,
                "webServiceDate": None, **links,
            })
            line_id += 1
            sort += 1
            if sort == len(kinds) and total <= 0:
                # Credits belong in credit notes; an invoice whose adjustments outweigh it gets a bundle line.
                kinds.append(7)
        voided = i in void_positions
        invoice_rows.append({
            "id": inv_id, "batchID": 900 + (day - start).days, "companyID": company["id"],
            "comments": "Thank you for your business." if rng.random() < 0.3 else None,
            "createDateTime": at_utc(issued + timedelta(hours=2, minutes=rng.randint(0, 59))),
            "creatorResourceID": 29682885, "invoiceDateTime": at_utc(issued),
            "dueDate": at_utc(day + timedelta(days=catalog.PAYMENT_TERMS[term][1])),
            "fromDate": at_utc(day.replace(day=1)), "toDate": at_utc(day),
            "invoiceEditorTemplateID": company["invoiceTemplateID"], "invoiceNumber": f"INV-{10001 + i}",
            "invoiceTotal": total, "totalTaxValue": tax_total, "isVoided": voided,
            "voidedDate": at_utc(issued + timedelta(days=1)) if voided else None,
            "voidedByResourceID": 29682885 if voided else None,
            "orderNumber": f"PO-{rng.randint(4000, 4999)}" if rng.random() < 0.3 else None,
            "paidDate": None, "paymentTerm": term, "taxGroup": company["taxRegionID"],
            "taxRegionName": catalog.TAX_REGIONS[company["taxRegionID"]], "webServiceDate": None,
        })

    # Invoices whose four-decimal line taxes round differently from their invoice-level tax, from a stream
    # of their own: every record above stays as it was.
    if rounding_cases:
        _tax_rounding_cases(random.Random(f"tax-rounding:{seed}"), start, days, customers, tax_rate, exchange,
                            invoice_rows, line_rows)
    pos, po_items, receivings = _purchase_orders(rng, customers, start, days, max(3, invoices // 8))
    # Cases the bills sync needs, from a stream of their own: every record above stays as it was.
    _purchasing_cases(random.Random(f"purchasing:{seed}"), start, days, companies, contacts, customers, pos,
                      po_items, receivings)
    if filter_cases:
        _filter_cases(random.Random(f"filters:{seed}"), start, days, companies, contacts, customers, invoice_rows,
                      line_rows, tax_rate)
    # The time entries behind the labour lines, from a stream of their own: new records only.
    resources, time_entries = _time_entries(random.Random(f"time:{seed}"), line_rows)
    for company in companies:
        company.pop("_paymentTerm", None)
    data.update({"Companies": companies, "Contacts": contacts, "Invoices": invoice_rows,
                 "BillingItems": line_rows, "PurchaseOrders": pos, "PurchaseOrderItems": po_items,
                 "PurchaseOrderItemReceiving": receivings, "Resources": resources, "TimeEntries": time_entries})
    return data


_RESOURCES = [(29682885, "Aroha", "Tane"), (29682886, "Ben", "Walker"), (29682887, "Chloe", "Singh")]
_WORK_NOTES = [
    "Reset the user's MFA and re-enrolled the authenticator app.",
    "Replaced the failing switch in the comms cabinet; tested every port.",
    "Investigated slow logons: removed a stale mapped drive from the group policy.",
    "Migrated the shared mailbox and checked permissions with the office manager.",
    "Patched the file server and rebooted out of hours.",
]


def _time_entries(rng: random.Random, line_rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """One TimeEntries record per labour billing item's timeEntryID, worked on the item's date."""
    resources = [{"id": rid, "firstName": first, "lastName": last, "isActive": True, "userName": first.lower(),
                  "email": f"{first.lower()}@msp.example.com", "resourceType": "Employee"}
                 for rid, first, last in _RESOURCES]
    entries = []
    for line in line_rows:
        entry_id = line.get("timeEntryID")
        if entry_id is None or any(e["id"] == entry_id for e in entries[-50:]):
            continue
        worked = datetime.strptime(line["itemDate"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        hours = abs(Decimal(line["quantity"]))
        entries.append({
            "id": entry_id, "ticketID": line.get("ticketID"), "resourceID": rng.choice(_RESOURCES)[0],
            "roleID": line.get("roleID"), "billingCodeID": line.get("billingCodeID"), "dateWorked": at_utc(worked.date()),
            "startDateTime": at_utc(worked), "endDateTime": at_utc(worked + timedelta(minutes=int(hours * 60))),
            "hoursWorked": hours, "hoursToBill": hours, "offsetHours": Decimal("0.0000"), "isNonBillable": False,
            "showOnInvoice": True, "summaryNotes": rng.choice(_WORK_NOTES), "timeEntryType": 2,
            "createDateTime": at_utc(worked + timedelta(hours=1)), "lastModifiedDateTime": at_utc(worked + timedelta(hours=1)),
        })
    return resources, entries


# Ids of the filter cases; invoices (and their items) move past the generated ones in a large data set.
NO_SYNC_COMPANY_ID, BILLING_CONTACT_COMPANY_ID = 190, 191
_CASE_INVOICE_ID, _CASE_LINE_ID = 6901, 89_000_001


def _filter_cases(rng: random.Random, start: date, days: int, companies: list[dict], contacts: list[dict],
                  customers: list[dict], invoices: list[dict], lines: list[dict], tax_rate: dict) -> None:
    """Records the mapping's filters and contact options are tested on, appended after the generated ones:

    company 190  Riverside Holdings (internal), UDF "Xero Sync" = "No", with invoice INV-F0001 (220.00 + GST).
    company 191  Marlborough Wine Estates, UDF "Billing Contact" = its second, non-primary contact's name,
                 with invoice INV-F0002.
    INV-F0003    a 2.30 parking charge (not taxable) for the first customer: a total under 5.00.
    """
    span = max(days, 1)
    day = start + timedelta(days=min(3, span - 1))
    contact_id = max(c["id"] for c in contacts) + 1
    base = {"isActive": True, "companyType": 1, "taxRegionID": 1, "isTaxExempt": False, "currencyID": 1,
            "invoiceTemplateID": 101, "city": "Auckland", "createDate": "2024-03-01T00:00:00.000Z",
            "lastTrackedModifiedDateTime": "2026-01-10T02:00:00.000Z"}
    cases = [(NO_SYNC_COMPANY_ID, "Riverside Holdings (internal)", "C1900", "No", None),
             (BILLING_CONTACT_COMPANY_ID, "Marlborough Wine Estates", "C1910", "Yes", "Tui Harrison")]
    for cid, name, number, sync, billing in cases:
        domain = name.split()[0].lower() + ".example.com"
        companies.append({**base, "id": cid, "companyName": name, "companyNumber": number,
                          "phone": f"+64 9 {rng.randint(300, 999)} {rng.randint(1000, 9999)}",
                          "address1": f"{rng.randint(1, 400)} Quay Street", "postalCode": "1010",
                          "userDefinedFields": [{"name": "Xero Sync", "value": sync},
                                                {"name": "Billing Contact", "value": billing}]})
        people = [(rng.choice(_FIRST), rng.choice(_LAST), "accounts", True)]
        if billing:
            people.append((*billing.split(), "tui.harrison", False))
        for first, last, mailbox, primary in people:
            contacts.append({"id": contact_id, "companyID": cid, "firstName": first, "lastName": last,
                             "emailAddress": f"{mailbox}@{domain}", "primaryContact": primary, "isActive": 1,
                             "title": "Accounts Payable" if primary else "Finance Manager",
                             "createDate": "2024-03-01T00:00:00.000Z", "lastModifiedDate": "2026-01-10T02:00:00.000Z",
                             "userDefinedFields": []})
            contact_id += 1
    invoice_id = max([_CASE_INVOICE_ID - 1, *(i["id"] for i in invoices)]) + 1
    line_id = max([_CASE_LINE_ID - 1, *(l["id"] for l in lines)]) + 1
    issued = datetime.combine(day, time(0), tzinfo=timezone.utc)
    specs = [("INV-F0001", NO_SYNC_COMPANY_ID, 29682806, "Managed Services", Decimal(1), Decimal("220.0000")),
             ("INV-F0002", BILLING_CONTACT_COMPANY_ID, 29682806, "Managed Services", Decimal(2), Decimal("187.5000")),
             ("INV-F0003", customers[0]["id"], 29682808, "Parking", Decimal(1), Decimal("2.3000"))]
    for number, cid, code, item, qty, rate in specs:
        company = next(c for c in companies if c["id"] == cid)
        pct = tax_rate[(company["taxRegionID"], catalog.BILLING_CODES[code][4])]
        extended = money(qty * rate)
        tax = money(extended * pct / 100)
        lines.append({
            "id": line_id, "invoiceID": invoice_id, "companyID": cid, "itemName": item,
            "description": f"{item} - {company['companyName']}", "lineItemFullDescription": item,
            "lineItemGroupDescription": "Recurring Contract Service" if code == 29682806 else "Expense",
            "quantity": qty, "rate": rate, "extendedPrice": extended, "taxDollars": tax, "totalAmount": extended + tax,
            "ourCost": money(rate * Decimal("0.62")), "internalCurrencyRate": rate, "internalCurrencyExtendedPrice": extended,
            "internalCurrencyTaxDollars": tax, "internalCurrencyTotalAmount": extended + tax,
            "billingCodeID": code, "billingItemType": 5 if code == 29682806 else 4, "subType": 0, "nonBillable": 0,
            "itemDate": at_utc(issued), "postedDate": at_utc(issued), "postedOnTime": at_utc(issued + timedelta(hours=3)),
            "sortOrderID": 1, "purchaseOrderNumber": None, "webServiceDate": None,
        })
        invoices.append({
            "id": invoice_id, "batchID": 900 + (day - start).days, "companyID": cid, "comments": None,
            "createDateTime": at_utc(issued + timedelta(hours=2)), "creatorResourceID": 29682885,
            "invoiceDateTime": at_utc(issued), "dueDate": at_utc(day + timedelta(days=20)),
            "fromDate": at_utc(day.replace(day=1)), "toDate": at_utc(day), "invoiceEditorTemplateID": 101,
            "invoiceNumber": number, "invoiceTotal": extended + tax, "totalTaxValue": tax, "isVoided": False,
            "voidedDate": None, "voidedByResourceID": None, "orderNumber": None, "paidDate": None, "paymentTerm": 5,
            "taxGroup": 1, "taxRegionName": catalog.TAX_REGIONS[1], "webServiceDate": None,
        })
        invoice_id += 1
        line_id += 1


# First ids of the tax rounding cases; moved past the generated records when a large data set reaches them.
_ROUNDING_INVOICE_ID, _ROUNDING_LINE_ID = 6901, 80_900_001
TAX_ROUNDING_CASES = 4
# The invoice's tax minus its billing items' taxes each rounded to the cent, case by case.
_TAX_GAPS = (Decimal("0.01"), Decimal("-0.01"), Decimal("0.02"), Decimal("-0.01"))


def _tax_rounding_cases(rng: random.Random, start: date, days: int, customers: list[dict],
                        tax_rate: dict[tuple[int, int], Decimal], exchange: dict[int, Decimal],
                        invoices: list[dict], lines: list[dict]) -> None:
    """Invoices numbered INV-R001.. (ids from _ROUNDING_INVOICE_ID) as Autotask keeps them when its tax is held to
    four decimals: each billing item's taxDollars = round(extendedPrice x rate%, 4), its totalAmount their
    sum, and the invoice's totalTaxValue and invoiceTotal the unrounded sums, so the billing items' taxes
    rounded to the cent one by one miss the invoice's tax by a cent or two, up and down (_TAX_GAPS)."""
    taxed = [c for c in customers if not c["isTaxExempt"] and tax_rate[(c["taxRegionID"], 1)] > 0]
    invoice_id = max([_ROUNDING_INVOICE_ID - 1, *(i["id"] for i in invoices)]) + 1
    line_id = max([_ROUNDING_LINE_ID - 1, *(l["id"] for l in lines)]) + 1
    span = max(days, 1)
    for n in range(TAX_ROUNDING_CASES):
        company = taxed[n % len(taxed)]
        pct = tax_rate[(company["taxRegionID"], 1)]
        fx = exchange[company["currencyID"]]
        while True:
            specs = [(Decimal(rng.randint(1, 12)), _rate(rng, 5, 400)) for _ in range(rng.randint(2, 6))]
            amounts = [(qty, rate, money(qty * rate)) for qty, rate in specs]
            taxes = [(extended * pct / 100).quantize(RATE_DP, rounding=ROUND_HALF_UP) for _, _, extended in amounts]
            if money(sum(taxes, Decimal(0))) - sum((money(t) for t in taxes), Decimal(0)) == _TAX_GAPS[n % 4]:
                break
        day = start + timedelta(days=rng.randrange(span))
        issued = datetime.combine(day, time(0), tzinfo=timezone.utc)
        for sort, ((qty, rate, extended), tax) in enumerate(zip(amounts, taxes), start=1):
            lines.append({
                "id": line_id, "invoiceID": invoice_id, "companyID": company["id"], "itemName": "Managed Services",
                "description": f"Managed Services - {company['companyName']}", "lineItemFullDescription": "Managed Services",
                "lineItemGroupDescription": catalog.BILLING_ITEM_TYPES[5], "quantity": qty, "rate": rate,
                "extendedPrice": extended, "taxDollars": tax, "totalAmount": extended + tax,
                "ourCost": money(rate * Decimal("0.62")),
                "internalCurrencyRate": (rate / fx).quantize(RATE_DP, rounding=ROUND_HALF_UP),
                "internalCurrencyExtendedPrice": money(extended / fx),
                "internalCurrencyTaxDollars": (tax / fx).quantize(RATE_DP, rounding=ROUND_HALF_UP),
                "internalCurrencyTotalAmount": money(extended / fx) + (tax / fx).quantize(RATE_DP, rounding=ROUND_HALF_UP),
                "billingCodeID": 29682806, "billingItemType": 5, "subType": 0, "nonBillable": 0,
                "itemDate": at_utc(issued - timedelta(days=1)), "postedDate": at_utc(issued),
                "postedOnTime": at_utc(issued + timedelta(hours=3)), "sortOrderID": sort, "purchaseOrderNumber": None,
                "webServiceDate": None, "contractID": rng.randint(800, 899),
            })
            line_id += 1
        term = company["_paymentTerm"]
        invoices.append({
            "id": invoice_id, "batchID": 900 + (day - start).days, "companyID": company["id"], "comments": None,
            "createDateTime": at_utc(issued + timedelta(hours=2)), "creatorResourceID": 29682885,
            "invoiceDateTime": at_utc(issued), "dueDate": at_utc(day + timedelta(days=catalog.PAYMENT_TERMS[term][1])),
            "fromDate": at_utc(day.replace(day=1)), "toDate": at_utc(day),
            "invoiceEditorTemplateID": company["invoiceTemplateID"], "invoiceNumber": f"INV-R{n + 1:03d}",
            "invoiceTotal": sum((e + t for (_, _, e), t in zip(amounts, taxes)), Decimal(0)),
            "totalTaxValue": sum(taxes, Decimal(0)), "isVoided": False, "voidedDate": None,
            "voidedByResourceID": None, "orderNumber": None, "paidDate": None, "paymentTerm": term,
            "taxGroup": company["taxRegionID"], "taxRegionName": catalog.TAX_REGIONS[company["taxRegionID"]],
            "webServiceDate": None,
        })
        invoice_id += 1


def _purchase_orders(rng, customers, start, days, count):
    pos, items, receivings = [], [], []
    item_id, receiving_id = 41001, 51001
    for n in range(count):
        po_id = 7001 + n
        submitted = datetime.combine(start + timedelta(days=rng.randrange(max(days, 1))), time(1, 30),
                                     tzinfo=timezone.utc)
        status = rng.choice([2, 3, 4, 4, 4])
        vendor_invoice = f"BILL-{rng.randint(100000, 999999)}" if status in (3, 4) else None
        pos.append({
            "id": po_id, "purchaseOrderNumber": f"PO{2026}{n + 1:04d}", "vendorID": rng.choice([201, 202]),
            "purchaseForCompanyID": rng.choice(customers)["id"], "status": status,
            "createDateTime": at_utc(submitted - timedelta(hours=4)), "submitDateTime": at_utc(submitted),
            "paymentTerm": 5, "taxRegionID": 1, "freight": rng.choice([Decimal("0.00"), Decimal("25.00"), Decimal("42.50")]),
            "internalCurrencyFreight": None, "vendorInvoiceNumber": vendor_invoice, "shipToName": "Main Office",
            "creatorResourceID": 29682885,
        })
        for _ in range(rng.randint(1, 3)):
            pid = rng.choice([p for p in _PRODUCTS if _PRODUCTS[p][2] == 29682804])
            qty = rng.randint(1, 8)
            cost = _PRODUCTS[pid][3]
            items.append({"id": item_id, "orderID": po_id, "productID": pid, "quantity": qty, "unitCost": cost,
                          "internalCurrencyUnitCost": cost, "memo": _PRODUCTS[pid][0],
                          "estimatedArrivalDate": at_utc(submitted + timedelta(days=5))})
            if status in (3, 4):
                received = qty if status == 4 else max(1, qty // 2)
                receivings.append({
                    "id": receiving_id, "purchaseOrderItemID": item_id, "quantityNowReceiving": received,
                    "quantityPreviouslyReceived": 0, "quantityBackOrdered": qty - received,
                    "receiveDate": at_utc(submitted + timedelta(days=rng.randint(2, 6))),
                    "receivedByResourceID": 29682885, "vendorInvoiceNumber": vendor_invoice,
                })
                receiving_id += 1
            item_id += 1
    return pos, items, receivings


# The foreign-currency vendor: billed in USD, tax-exempt (no GST on an overseas supplier's invoice).
FOREIGN_VENDOR_ID = 203
_FOREIGN_VENDOR = ("Pacific Components Inc", 4, 4)  # name, tax region, currency
# First ids of the purchasing cases; moved past the generated records when a large data set reaches them.
_CASE_PO_ID, _CASE_ITEM_ID, _CASE_RECEIVING_ID = 7901, 49001, 59001


def _purchasing_cases(rng: random.Random, start: date, days: int, companies: list[dict], contacts: list[dict],
                      customers: list[dict], pos: list[dict], items: list[dict], receivings: list[dict]) -> None:
    """Purchase orders for the bills sync, appended after the generated ones (ids from _CASE_*_ID):

    PO2026B001  Ingram Micro, delivered in two partial receivings with different vendor invoice numbers
                (INV-88101, then INV-88342), freight 35.00: two bills, the freight on the first. INV-88101
                covers two receivings a day apart, so a window can hold half of that bill.
    PO2026B002  Dicker Data, cancelled before anything was received.
    PO2026B003  Dicker Data, cancelled after a partial receiving (DD-55120), freight 15.00.
    PO2026B004  Pacific Components (USD, tax-exempt), a product line at a 4-decimal unit cost and a line
                with no product (memo "Cat6 patch cables, 50 pack"), freight 60.00, delivery by shippingDate.
    PO2026B005  Ingram Micro, a receiving without a vendor invoice number.
    PO2026B006  Dicker Data, vendor invoice INV-88101: the same bill number as Ingram's, another supplier.
    PO2026B007  Ingram Micro, New (created, not submitted).
    """
    span = max(days, 1)

    def day(offset: int, hour: int = 1, minute: int = 30) -> str:
        return at_utc(datetime.combine(start + timedelta(days=min(offset, span - 1)), time(hour, minute),
                                       tzinfo=timezone.utc))

    name, region, currency = _FOREIGN_VENDOR
    companies.append({
        "id": FOREIGN_VENDOR_ID, "companyName": name, "companyNumber": "V2002", "companyType": 7, "isActive": True,
        "taxRegionID": region, "isTaxExempt": True, "currencyID": currency, "city": "Seattle",
        "phone": f"+1 206 {rng.randint(200, 999)} {rng.randint(1000, 9999)}", "createDate": "2024-02-01T00:00:00.000Z",
        "userDefinedFields": [{"name": "Xero Sync", "value": "Yes"}, {"name": "Billing Contact", "value": None}],
    })
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    contacts.append({
        "id": max(c["id"] for c in contacts) + 1, "companyID": FOREIGN_VENDOR_ID, "firstName": first, "lastName": last,
        "emailAddress": "accounts@pacificcomponents.example.com", "primaryContact": True, "isActive": 1,
        "title": "Accounts Receivable", "createDate": "2024-02-01T00:00:00.000Z",
        "lastModifiedDate": "2026-01-10T02:00:00.000Z", "userDefinedFields": [],
    })
    usd_rate = catalog.CURRENCIES[currency][2]
    po_id = max([_CASE_PO_ID - 1, *(p["id"] for p in pos)]) + 1
    item_id = max([_CASE_ITEM_ID - 1, *(i["id"] for i in items)]) + 1
    receiving_id = max([_CASE_RECEIVING_ID - 1, *(r["id"] for r in receivings)]) + 1
    resource = 29682885

    # (number, vendor, status, submitted day, freight, extra PO fields,
    #  [(product or None, memo, quantity, unit cost, [(received, day, vendor invoice number)])])
    cases = [
        ("PO2026B001", 201, 4, 3, Decimal("35.00"), {"latestEstimatedArrivalDate": day(12)},
         [(31001, None, 4, None, [(2, 10, "INV-88101"), (2, 14, "INV-88342")]),
          (31002, None, 2, None, [(2, 11, "INV-88101")])]),
        ("PO2026B002", 202, 5, 4, Decimal("0.00"), {"cancelDateTime": day(6, 3)},
         [(31003, None, 10, None, [])]),
        ("PO2026B003", 202, 5, 5, Decimal("15.00"), {"cancelDateTime": day(11, 3)},
         [(31006, None, 6, None, [(2, 9, "DD-55120")])]),
        ("PO2026B004", FOREIGN_VENDOR_ID, 4, 6, Decimal("60.00"), {"shippingDate": day(8), "taxRegionID": region},
         [(31002, None, 3, Decimal("368.1250"), [(3, 13, "PCI-2026-0412")]),
          (None, "Cat6 patch cables, 50 pack", 2, Decimal("84.5000"), [(2, 13, "PCI-2026-0412")])]),
        ("PO2026B005", 201, 4, 7, Decimal("0.00"), {}, [(31003, None, 1, None, [(1, 15, None)])]),
        ("PO2026B006", 202, 4, 8, Decimal("0.00"), {}, [(31001, None, 1, Decimal("1398.0000"), [(1, 16, "INV-88101")])]),
        ("PO2026B007", 201, 1, None, Decimal("0.00"), {}, [(31006, None, 2, None, [])]),
    ]
    pending = []
    for number, vendor, status, submitted, freight, extra, lines in cases:
        foreign = vendor == FOREIGN_VENDOR_ID
        created = day(submitted if submitted is not None else 17, 0, 15)
        pos.append({
            "id": po_id, "purchaseOrderNumber": number, "vendorID": vendor,
            "purchaseForCompanyID": customers[(po_id - _CASE_PO_ID) % len(customers)]["id"], "status": status,
            "createDateTime": created, "submitDateTime": day(submitted) if submitted is not None else None,
            "paymentTerm": 5, "taxRegionID": 1, "freight": freight,
            "internalCurrencyFreight": money(freight / usd_rate) if foreign else freight,
            "vendorInvoiceNumber": None, "shipToName": "Main Office", "creatorResourceID": resource, **extra,
        })
        for product, memo, quantity, cost, received in lines:
            cost = cost if cost is not None else _PRODUCTS[product][3]
            items.append({
                "id": item_id, "orderID": po_id, "productID": product, "quantity": quantity, "unitCost": cost,
                "internalCurrencyUnitCost": (cost / usd_rate).quantize(RATE_DP, rounding=ROUND_HALF_UP) if foreign else cost,
                "memo": memo or _PRODUCTS[product][0],
                "estimatedArrivalDate": day((submitted or 17) + 5),
            })
            before = 0
            for count, offset, invoice in received:
                pending.append((offset, item_id, {
                    "purchaseOrderItemID": item_id, "quantityNowReceiving": count,
                    "quantityPreviouslyReceived": before, "quantityBackOrdered": quantity - before - count,
                    "receiveDate": day(offset, 2 + rng.randint(0, 5)), "receivedByResourceID": resource,
                    "vendorInvoiceNumber": invoice,
                }))
                before += count
            item_id += 1
        po_id += 1
    # Receivings get their ids in the order they happened, as Autotask records them.
    for _, _, record in sorted(pending, key=lambda p: (p[0], p[1])):
        receivings.append({"id": receiving_id, **record})
        receiving_id += 1


def load_data(path: str | Path) -> dict[str, list[dict]]:
    """Read a data set saved as {"Companies": [...], ...}; amounts stay Decimal."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh, parse_float=Decimal)

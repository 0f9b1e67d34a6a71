"""Seed data for a realistic small-business Xero organisation in NZ, AU, GB or US.

Codes and names follow Xero's default charts for those countries closely enough that a mapping written
against a real demo company also works here.
"""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from sandbox.clock import Clock
from sandbox.xero.org import XeroOrg

COUNTRIES = {
    # country: base currency, Organisation.Version, timezone, default sales/purchase tax, tax word
    "NZ": ("NZD", "NZ", "NEWZEALANDSTANDARDTIME", "OUTPUT2", "INPUT2", "GST"),
    "AU": ("AUD", "AU", "AUSEASTERNSTANDARDTIME", "OUTPUT", "INPUT", "GST"),
    "GB": ("GBP", "UK", "GMTSTANDARDTIME", "OUTPUT2", "INPUT2", "VAT"),
    "US": ("USD", "US", "EASTERNSTANDARDTIME", "TAX001", "NONE", "Sales Tax"),
}

CURRENCY_NAMES = {
    "NZD": "New Zealand Dollar", "AUD": "Australian Dollar", "GBP": "British Pound", "USD": "United States Dollar",
    "EUR": "Euro", "CAD": "Canadian Dollar", "SGD": "Singapore Dollar", "ZAR": "South African Rand",
}

# (TaxType, Name, rate %, ReportTaxType, applies to: R revenue, E expenses, A assets, L liabilities, Q equity)
TAX_RATES = {
    "NZ": [
        ("OUTPUT2", "15% GST on Income", "15", "OUTPUT", "R"),
        ("INPUT2", "15% GST on Expenses", "15", "INPUT", "EA"),
        ("NONE", "No GST", "0", "NONE", "REALQ"),
        ("ZERORATED", "Zero Rated", "0", "OUTPUT", "R"),
        ("EXEMPTOUTPUT", "Exempt Income", "0", "EXEMPTOUTPUT", "R"),
        ("EXEMPTINPUT", "Exempt Expenses", "0", "EXEMPTINPUT", "EA"),
        ("GSTONIMPORTS", "GST on Imports", "0", "GSTONIMPORTS", "EA"),
    ],
    "AU": [
        ("OUTPUT", "GST on Income", "10", "OUTPUT", "R"),
        ("INPUT", "GST on Expenses", "10", "INPUT", "E"),
        ("CAPEXINPUT", "GST on Capital", "10", "CAPEXINPUT", "A"),
        ("EXEMPTOUTPUT", "GST Free Income", "0", "EXEMPTOUTPUT", "R"),
        ("EXEMPTEXPENSES", "GST Free Expenses", "0", "EXEMPTEXPENSES", "EA"),
        ("EXEMPTEXPORT", "GST Free Exports", "0", "EXEMPTEXPORT", "R"),
        ("INPUTTAXED", "Input Taxed", "0", "INPUTTAXED", "RE"),
        ("BASEXCLUDED", "BAS Excluded", "0", "BASEXCLUDED", "REALQ"),
        ("GSTONIMPORTS", "GST on Imports", "0", "GSTONIMPORTS", "EA"),
    ],
    "GB": [
        ("OUTPUT2", "20% (VAT on Income)", "20", "OUTPUT", "R"),
        ("INPUT2", "20% (VAT on Expenses)", "20", "INPUT", "EA"),
        ("RROUTPUT", "5% (VAT on Income)", "5", "OUTPUT", "R"),
        ("RRINPUT", "5% (VAT on Expenses)", "5", "INPUT", "EA"),
        ("ZERORATEDOUTPUT", "Zero Rated Income", "0", "ZERORATEDOUTPUT", "R"),
        ("ZERORATEDINPUT", "Zero Rated Expenses", "0", "ZERORATEDINPUT", "EA"),
        ("EXEMPTOUTPUT", "Exempt Income", "0", "EXEMPTOUTPUT", "R"),
        ("EXEMPTINPUT", "Exempt Expenses", "0", "EXEMPTINPUT", "EA"),
        ("NONE", "No VAT", "0", "NONE", "REALQ"),
    ],
    "US": [
        ("TAX001", "Sales Tax", "8.875", "USSALESTAX", "RE"),
        ("NONE", "Tax Exempt", "0", "NONE", "REALQ"),
    ],
}

# (Code, Name, Type, tax: "sales" | "purchases" | "none", extra fields)
CHART = [
    ("090", "Business Bank Account", "BANK", "none", {"BankAccountNumber": "0201230045678000", "BankAccountType": "BANK", "EnablePaymentsToAccount": True}),
    ("091", "Business Savings Account", "BANK", "none", {"BankAccountNumber": "0201230045678001", "BankAccountType": "BANK", "EnablePaymentsToAccount": True}),
    ("200", "Sales", "REVENUE", "sales", {}),
    ("260", "Other Revenue", "REVENUE", "sales", {}),
    ("270", "Interest Income", "REVENUE", "none", {}),
    ("300", "Purchases", "DIRECTCOSTS", "purchases", {}),
    ("310", "Cost of Goods Sold", "DIRECTCOSTS", "purchases", {}),
    ("400", "Advertising", "EXPENSE", "purchases", {}),
    ("404", "Bank Fees", "EXPENSE", "none", {}),
    ("408", "Cleaning", "EXPENSE", "purchases", {}),
    ("412", "Consulting & Accounting", "EXPENSE", "purchases", {}),
    ("429", "General Expenses", "EXPENSE", "purchases", {}),
    ("433", "Insurance", "EXPENSE", "purchases", {}),
    ("445", "Light, Power, Heating", "EXPENSE", "purchases", {}),
    ("449", "Motor Vehicle Expenses", "EXPENSE", "purchases", {}),
    ("461", "Printing & Stationery", "EXPENSE", "purchases", {}),
    ("466", "Legacy Hosting", "EXPENSE", "purchases", {"Status": "ARCHIVED"}),
    ("469", "Rent", "EXPENSE", "purchases", {}),
    ("473", "Repairs and Maintenance", "EXPENSE", "purchases", {}),
    ("477", "Wages and Salaries", "EXPENSE", "none", {}),
    ("485", "Subscriptions", "EXPENSE", "purchases", {}),
    ("489", "Telephone & Internet", "EXPENSE", "purchases", {}),
    ("493", "Travel - National", "EXPENSE", "purchases", {}),
    ("494", "Travel - International", "EXPENSE", "none", {}),
    ("610", "Accounts Receivable", "CURRENT", "none", {"SystemAccount": "DEBTORS"}),
    ("620", "Prepayments", "CURRENT", "none", {}),
    ("710", "Office Equipment", "FIXED", "purchases", {}),
    ("720", "Computer Equipment", "FIXED", "purchases", {}),
    ("800", "Accounts Payable", "CURRLIAB", "none", {"SystemAccount": "CREDITORS"}),
    ("820", "{tax} Payable", "CURRLIAB", "none", {"SystemAccount": "GST"}),
    ("840", "Historical Adjustment", "CURRLIAB", "none", {"SystemAccount": "HISTORICAL"}),
    ("877", "Tracking Transfers", "CURRLIAB", "none", {}),
    ("880", "Owner A Drawings", "EQUITY", "none", {}),
    ("960", "Retained Earnings", "EQUITY", "none", {"SystemAccount": "RETAINEDEARNINGS"}),
]

ACCOUNT_CLASS = {
    "BANK": "ASSET", "CURRENT": "ASSET", "FIXED": "ASSET", "INVENTORY": "ASSET", "NONCURRENT": "ASSET",
    "PREPAYMENT": "ASSET", "CURRLIAB": "LIABILITY", "LIABILITY": "LIABILITY", "TERMLIAB": "LIABILITY",
    "PAYGLIABILITY": "LIABILITY", "EQUITY": "EQUITY", "REVENUE": "REVENUE", "SALES": "REVENUE",
    "OTHERINCOME": "REVENUE", "EXPENSE": "EXPENSE", "DIRECTCOSTS": "EXPENSE", "OVERHEADS": "EXPENSE",
    "DEPRECIATN": "EXPENSE",
}

TRACKING = {
    "Region": [("North", "ACTIVE"), ("South", "ACTIVE"), ("Central", "ACTIVE")],
    "Department": [("Managed Services", "ACTIVE"), ("Projects", "ACTIVE"), ("Hardware", "ACTIVE"),
                   ("Legacy Support", "ARCHIVED")],
}

ORGANISATION_ACTIONS = [
    "UseMulticurrency", "CreateApprovedInvoice", "CreateApprovedBill", "CreateInvoicePayment",
    "CreateBillPayment", "CreateApprovedPurchaseOrder", "AttachFilesIntoInvoice", "CreateDraftInvoice",
    "CreateDraftBill", "CreateDraftPurchaseOrder", "CreateContact", "CreateRepeatingInvoice",
]


def _id() -> str:
    return str(uuid.uuid4())


def build_org(name: str, country_code: str, clock: Clock, *, tenant_id: str | None = None,
              currencies: list[str] | None = None) -> XeroOrg:
    country = country_code.upper()
    if country not in COUNTRIES:
        raise ValueError(f"no seed chart for country {country_code!r}; choose one of {sorted(COUNTRIES)}")
    base, _version, timezone_name, sales_tax, purchases_tax, tax_word = COUNTRIES[country]
    created = clock.now() - timedelta(days=400)
    org = XeroOrg(
        tenant_id=tenant_id or _id(), name=name, country_code=country, base_currency=base, clock=clock,
        timezone=timezone_name, created=created.replace(microsecond=0),
        sales_tax_type=sales_tax, purchases_tax_type=purchases_tax,
    )
    none_tax = "NONE" if any(t[0] == "NONE" for t in TAX_RATES[country]) else "BASEXCLUDED"
    if country == "AU":
        none_tax = "BASEXCLUDED"

    for tax_type, tax_name, rate, report_type, applies in TAX_RATES[country]:
        rate_value = Decimal(rate)
        org.tax_rates[tax_type] = {
            "Name": tax_name, "TaxType": tax_type, "Status": "ACTIVE", "ReportTaxType": report_type,
            "CanApplyToRevenue": "R" in applies, "CanApplyToExpenses": "E" in applies,
            "CanApplyToAssets": "A" in applies, "CanApplyToLiabilities": "L" in applies,
            "CanApplyToEquity": "Q" in applies,
            "DisplayTaxRate": rate_value, "EffectiveRate": rate_value,
            "TaxComponents": [{"Name": tax_word, "Rate": rate_value, "IsCompound": False, "IsNonRecoverable": False}],
        }

    tax_for = {"sales": sales_tax, "purchases": purchases_tax, "none": none_tax}
    for code, account_name, account_type, tax, extra in CHART:
        account_id = _id()
        account = {
            "AccountID": account_id, "Code": code, "Name": account_name.format(tax=tax_word),
            "Type": account_type, "Status": "ACTIVE", "Class": ACCOUNT_CLASS[account_type],
            "TaxType": tax_for[tax], "EnablePaymentsToAccount": False, "ShowInExpenseClaims": False,
            "ReportingCode": "", "HasAttachments": False, "UpdatedDateUTC": created,
        }
        account.update(extra)
        if account_type == "BANK":
            account["CurrencyCode"] = base
        org.accounts[account_id] = account

    for category_name, options in TRACKING.items():
        category_id = _id()
        org.tracking_categories[category_id] = {
            "TrackingCategoryID": category_id, "Name": category_name, "Status": "ACTIVE",
            "Options": [
                {"TrackingOptionID": _id(), "Name": option, "Status": status, "TrackingCategoryID": category_id}
                for option, status in options
            ],
        }

    for sort_order, theme_name in enumerate(["Standard", "Managed Services"]):
        theme_id = _id()
        org.branding_themes[theme_id] = {
            "BrandingThemeID": theme_id, "Name": theme_name, "Type": "INVOICE", "SortOrder": sort_order,
            "CreatedDateUTC": created,
        }

    wanted = currencies if currencies is not None else [c for c in ("AUD", "GBP", "USD") if c != base]
    for code in [base, *[c.upper() for c in wanted if c.upper() != base]]:
        org.currencies[code] = {"Code": code, "Description": CURRENCY_NAMES.get(code, code)}

    org.actions = {action: "ALLOWED" for action in ORGANISATION_ACTIONS}
    return org

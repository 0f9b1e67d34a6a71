"""The demo tenant's reference data: names and picklist values the generator uses.

Kept in one place so the demo mapping file (Autotask billing codes, tax categories and regions ->
Xero accounts, items and tax rates) can be written from the same constants the sandbox serves.
Picklist integers are per-tenant in real Autotask; these are this sandbox tenant's values.
"""
from __future__ import annotations

from decimal import Decimal

# Invoices.paymentTerm and BillingCodes.generalLedgerAccount etc. are picklist integers; these are
# the labels `entityInformation/fields` reports for them.
BILLING_ITEM_TYPES: dict[int, str] = {
    1: "Labor",
    2: "Project Cost",
    3: "Ticket Cost",
    4: "Expense",
    5: "Recurring Service",
    6: "Recurring Service Adjustment",
    7: "Recurring Service Bundle",
    8: "Recurring Service Bundle Adjustment",
    9: "Milestone",
    10: "Contract Block",
    11: "Retainer",
    12: "Setup Fee",
    13: "Incident",
    14: "Subscription",
    15: "Contract Cost",
}

GENERAL_LEDGER_ACCOUNTS: dict[int, str] = {
    1: "4000 Labour Revenue",
    2: "4100 Hardware Sales",
    3: "4200 Software & Licensing",
    4: "4300 Managed Services",
    5: "4400 Reimbursable Expenses",
    6: "4500 Project Revenue",
}

DEPARTMENTS: dict[int, str] = {1: "Service Desk", 2: "Projects", 3: "Procurement"}

COMPANY_TYPES: dict[int, str] = {1: "Customer", 2: "Lead", 3: "Prospect", 7: "Vendor", 8: "Partner"}

# Companies.classification, a per-tenant picklist.
COMPANY_CLASSIFICATIONS: dict[int, str] = {1: "Managed", 2: "Break-fix", 3: "Internal - do not invoice"}

PURCHASE_ORDER_STATUSES: dict[int, str] = {
    1: "New", 2: "Submitted", 3: "Received Partial", 4: "Received Full", 5: "Cancelled",
}

# id -> (name, paymentDueInDays)
PAYMENT_TERMS: dict[int, tuple[str, int]] = {
    1: ("Due on Receipt", 0),
    2: ("Net 7", 7),
    3: ("Net 14", 14),
    4: ("Net 20", 20),
    5: ("Net 30", 30),
}

# id -> (code, description, exchangeRate = units of this currency per 1 unit of the internal NZD)
CURRENCIES: dict[int, tuple[str, str, Decimal]] = {
    1: ("NZD", "New Zealand Dollar", Decimal("1.0000")),
    2: ("AUD", "Australian Dollar", Decimal("0.9134")),
    3: ("GBP", "British Pound", Decimal("0.4587")),
    4: ("USD", "US Dollar", Decimal("0.5921")),
}
INTERNAL_CURRENCY_ID = 1

# id -> name
TAX_REGIONS: dict[int, str] = {
    1: "New Zealand GST",
    2: "Australia GST",
    3: "United Kingdom VAT",
    4: "Zero Rated Export",
}
REGION_CURRENCY: dict[int, int] = {1: 1, 2: 2, 3: 3, 4: 4}
REGION_STANDARD_RATE: dict[int, Decimal] = {
    1: Decimal("15.0000"), 2: Decimal("10.0000"), 3: Decimal("20.0000"), 4: Decimal("0.0000"),
}
REGION_TAX_NAME: dict[int, str] = {1: "GST", 2: "GST", 3: "VAT", 4: "Zero Rated"}

# id -> (name, description); "Non-Taxable" carries 0 % in every region (disbursements).
TAX_CATEGORIES: dict[int, tuple[str, str]] = {
    1: ("Standard Services", "Labour and managed services"),
    2: ("Hardware", "Physical goods"),
    3: ("Software Licensing", "Resold licences and subscriptions"),
    4: ("Non-Taxable", "Disbursements passed through at cost"),
}
NON_TAXABLE_CATEGORY_ID = 4

# id -> (name, externalNumber, generalLedgerAccount, department, taxCategoryID, unitPrice)
BILLING_CODES: dict[int, tuple[str, str, int, int, int, Decimal]] = {
    29682801: ("Remote Support", "LAB-REMOTE", 1, 1, 1, Decimal("165.0000")),
    29682802: ("Onsite Support", "LAB-ONSITE", 1, 1, 1, Decimal("185.0000")),
    29682803: ("Project Labour", "LAB-PROJECT", 6, 2, 1, Decimal("175.0000")),
    29682804: ("Hardware", "HW-SALES", 2, 3, 2, Decimal("0.0000")),
    29682805: ("Software Licences", "SW-LIC", 3, 3, 3, Decimal("0.0000")),
    29682806: ("Managed Services", "MS-RECUR", 4, 1, 1, Decimal("0.0000")),
    29682807: ("Backup as a Service", "MS-BACKUP", 4, 1, 1, Decimal("0.0000")),
    29682808: ("Travel & Disbursements", "EXP-DISB", 5, 1, 4, Decimal("0.0000")),
    29682809: ("Project Milestone", "PRJ-MILESTONE", 6, 2, 1, Decimal("0.0000")),
    29682810: ("Block Hours", "LAB-BLOCK", 1, 1, 1, Decimal("150.0000")),
}

# id -> name
INVOICE_TEMPLATES: dict[int, str] = {
    101: "Standard Invoice",
    102: "Managed Services Invoice",
    103: "Project Invoice",
}

"""How stored documents look on the wire (before `serialise.dumps` turns dates into MS-JSON)."""
from __future__ import annotations

from decimal import Decimal

from sandbox.xero.org import XeroOrg
from sandbox.xero.rules import CREDIT_NOTE, INVOICE, PURCHASE_ORDER, DocKind
from sandbox.xero.serialise import iso_date_string, iso_datetime_string, round_to

_DATE_FIELDS = ("Date", "DueDate", "ExpectedPaymentDate", "PlannedPaymentDate", "DeliveryDate",
                "ExpectedArrivalDate", "FullyPaidOnDate")


def _public(document: dict) -> dict:
    return {k: v for k, v in document.items() if not k.startswith("_")}


def contact_summary(org: XeroOrg, contact_id: str) -> dict:
    contact = org.contacts[contact_id]
    summary = {"ContactID": contact["ContactID"], "Name": contact["Name"], "ContactStatus": contact["ContactStatus"]}
    if contact.get("ContactNumber"):
        summary["ContactNumber"] = contact["ContactNumber"]
    summary.update({"Addresses": [], "Phones": [], "ContactGroups": [], "ContactPersons": [],
                    "HasValidationErrors": False})
    return summary


def render_contact(org: XeroOrg, contact: dict) -> dict:
    out = _public(contact)
    out["HasAttachments"] = bool(org.attachments.get(contact["ContactID"]))
    out["HasValidationErrors"] = False
    return out


def render_document(org: XeroOrg, kind: DocKind, doc: dict, *, unitdp: int = 2, with_lines: bool = True) -> dict:
    out = _public(doc)
    out["Contact"] = contact_summary(org, doc["Contact"]["ContactID"])
    for field in ("Date", "DueDate"):
        if out.get(field):
            out[f"{field}String"] = iso_date_string(out[field])
    if out.get("UpdatedDateUTC"):
        out["UpdatedDateUTCString"] = iso_datetime_string(out["UpdatedDateUTC"])
    for field in _DATE_FIELDS:
        if field in out and out[field] is None:
            del out[field]
    if with_lines:
        unit_places = 4 if (unitdp == 4 or kind is PURCHASE_ORDER) else 2
        out["LineItems"] = [dict(line, UnitAmount=round_to(line["UnitAmount"], unit_places),
                                 Tracking=[dict(t) for t in line.get("Tracking", [])])
                            for line in doc["LineItems"]]
    else:
        out.pop("LineItems", None)
    out["HasAttachments"] = bool(org.attachments.get(doc[kind.id_field]))
    out.pop("Allocations", None)
    if kind is PURCHASE_ORDER:
        for field in ("Payments", "AmountPaid", "AmountCredited", "AmountDue", "CurrencyRate"):
            out.pop(field, None)
        return out
    out["HasErrors"] = False
    out["Payments"] = [
        {"PaymentID": p["PaymentID"], "Date": p["Date"], "Amount": p["Amount"], "Reference": p["Reference"],
         "CurrencyRate": p["CurrencyRate"], "HasAccount": False, "HasValidationErrors": False}
        for p in (org.payments[pid] for pid in doc.get("Payments", [])) if p["Status"] != "DELETED"
    ]
    allocations = doc.get("Allocations", [])
    if kind is INVOICE:
        out["CreditNotes"] = [
            {"CreditNoteID": a["CreditNoteID"],
             "CreditNoteNumber": org.credit_notes[a["CreditNoteID"]].get("CreditNoteNumber", ""),
             "AppliedAmount": a["Amount"], "Date": a["Date"], "HasErrors": False}
            for a in allocations
        ]
        out["Prepayments"], out["Overpayments"] = [], []
    elif kind is CREDIT_NOTE:
        out["Allocations"] = [
            {"AllocationID": a["AllocationID"], "Amount": a["Amount"], "Date": a["Date"],
             "Invoice": {"InvoiceID": a["InvoiceID"],
                         "InvoiceNumber": org.invoices[a["InvoiceID"]].get("InvoiceNumber", ""),
                         "Payments": [], "CreditNotes": [], "Prepayments": [], "Overpayments": [],
                         "HasErrors": False, "IsDiscounted": False}}
            for a in allocations
        ]
        out["AppliedAmount"] = sum((a["Amount"] for a in allocations), Decimal("0.00"))
    return out


def render_payment(org: XeroOrg, payment: dict) -> dict:
    account = org.accounts[payment["AccountID"]]
    out = {k: v for k, v in _public(payment).items() if k not in ("AccountID", "Target", "TargetID")}
    out["UpdatedDateUTCString"] = iso_datetime_string(payment["UpdatedDateUTC"])
    out["Account"] = {"AccountID": account["AccountID"], "Code": account["Code"], "Name": account["Name"]}
    if payment["Target"] == "invoice":
        doc = org.invoices[payment["TargetID"]]
        out["Invoice"] = {
            "InvoiceID": doc["InvoiceID"], "InvoiceNumber": doc.get("InvoiceNumber", ""), "Type": doc["Type"],
            "Contact": contact_summary(org, doc["Contact"]["ContactID"]), "CurrencyCode": doc["CurrencyCode"],
            "Payments": [], "CreditNotes": [], "Prepayments": [], "Overpayments": [], "HasErrors": False,
            "IsDiscounted": False, "LineItems": [],
        }
    else:
        doc = org.credit_notes[payment["TargetID"]]
        out["CreditNote"] = {
            "CreditNoteID": doc["CreditNoteID"], "CreditNoteNumber": doc.get("CreditNoteNumber", ""),
            "Type": doc["Type"], "Contact": contact_summary(org, doc["Contact"]["ContactID"]),
            "CurrencyCode": doc["CurrencyCode"], "HasErrors": False, "LineItems": [],
        }
    out["HasAccount"] = True
    out["HasValidationErrors"] = False
    return out


def render_organisation(org: XeroOrg) -> dict:
    from sandbox.xero.seed import COUNTRIES

    out = {
        "OrganisationID": org.organisation_id, "APIKey": "", "Name": org.name, "LegalName": f"{org.name} Limited",
        "PaysTax": True, "Version": COUNTRIES[org.country_code][1], "OrganisationType": "COMPANY",
        "BaseCurrency": org.base_currency, "CountryCode": org.country_code, "IsDemoCompany": False,
        "OrganisationStatus": "ACTIVE", "FinancialYearEndDay": 31, "FinancialYearEndMonth": 3,
        "SalesTaxBasis": "INVOICE" if org.country_code != "US" else "NONE", "SalesTaxPeriod": "TWOMONTHS",
        "DefaultSalesTax": "Tax Exclusive", "DefaultPurchasesTax": "Tax Exclusive",
        "CreatedDateUTC": org.created, "OrganisationEntityType": "COMPANY", "Timezone": org.timezone,
        "ShortCode": org.short_code, "Edition": "BUSINESS", "Class": "PREMIUM", "LineOfBusiness": "IT services",
        "Addresses": [], "Phones": [], "ExternalLinks": [], "PaymentTerms": {},
    }
    if org.period_lock_date:
        out["PeriodLockDate"] = org.period_lock_date
    if org.end_of_year_lock_date:
        out["EndOfYearLockDate"] = org.end_of_year_lock_date
    return out


def render_item(item: dict, *, unitdp: int = 2) -> dict:
    """An item as Xero shows it: prices to 2 decimal places unless the request asks unitdp=4."""
    out = _public(item)
    for side in ("SalesDetails", "PurchaseDetails"):
        details = dict(out.get(side) or {})
        if details.get("UnitPrice") is not None:
            details["UnitPrice"] = round_to(details["UnitPrice"], 4 if unitdp == 4 else 2)
        out[side] = details
    if out.get("UpdatedDateUTC"):
        out["UpdatedDateUTCString"] = iso_datetime_string(out["UpdatedDateUTC"])
    return out

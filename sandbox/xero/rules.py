"""Xero's business rules for writes: validation (with Xero's wording), totals and rounding, status changes.

Every write function takes a `Write` (the organisation, the undo journal of the current element, the
`unitdp` of the request) and either stores its result or raises `Invalid` with the messages Xero would put
into `ValidationErrors`. Nothing here knows about HTTP.
"""
from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sandbox.xero.org import Journal, XeroOrg
from sandbox.xero.serialise import parse_date, round_money, round_to, to_decimal

MAX_LINE_AMOUNT = Decimal("9999999999.99")


class Invalid(Exception):
    def __init__(self, messages: list[str] | str):
        self.messages = [messages] if isinstance(messages, str) else list(messages)
        super().__init__("; ".join(self.messages))


class NotFound(Exception):
    pass


@dataclass
class Write:
    org: XeroOrg
    journal: Journal
    unitdp: int = 2
    client_id: str = ""
    # Xero's non-blocking remarks on the element written (its `Warnings`): the write still happens.
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DocKind:
    """What differs between invoices, credit notes and purchase orders; the line maths is shared."""
    collection: str
    id_field: str
    number_field: str
    number_prefix: str
    noun: str
    types: tuple[str, ...]
    statuses: dict[str, frozenset[str]]


_INVOICE_STATUSES = {
    "DRAFT": frozenset({"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"}),
    "SUBMITTED": frozenset({"SUBMITTED", "AUTHORISED", "DRAFT", "DELETED"}),
    "AUTHORISED": frozenset({"AUTHORISED", "VOIDED"}),
    "PAID": frozenset({"PAID"}),
    "VOIDED": frozenset(),
    "DELETED": frozenset(),
}
INVOICE = DocKind("invoices", "InvoiceID", "InvoiceNumber", "INV", "Invoice", ("ACCREC", "ACCPAY"), _INVOICE_STATUSES)
CREDIT_NOTE = DocKind("credit_notes", "CreditNoteID", "CreditNoteNumber", "CN", "Credit Note",
                      ("ACCRECCREDIT", "ACCPAYCREDIT"), _INVOICE_STATUSES)
PURCHASE_ORDER = DocKind(
    "purchase_orders", "PurchaseOrderID", "PurchaseOrderNumber", "PO", "Purchase Order", (),
    {
        "DRAFT": frozenset({"DRAFT", "SUBMITTED", "AUTHORISED", "DELETED"}),
        "SUBMITTED": frozenset({"SUBMITTED", "AUTHORISED", "DRAFT", "DELETED"}),
        "AUTHORISED": frozenset({"AUTHORISED", "BILLED", "DELETED", "DRAFT", "SUBMITTED"}),
        "BILLED": frozenset({"BILLED", "AUTHORISED"}),
        "DELETED": frozenset(),
    },
)
DUPLICATE_NUMBER = {"invoices": "Invoice # must be unique.", "credit_notes": "Credit Note # must be unique.",
                    "purchase_orders": "Order number must be unique"}
CREATE_STATUSES = {"DRAFT", "SUBMITTED", "AUTHORISED"}
TAX_APPLIES = {"REVENUE": "CanApplyToRevenue", "EXPENSE": "CanApplyToExpenses", "ASSET": "CanApplyToAssets",
               "LIABILITY": "CanApplyToLiabilities", "EQUITY": "CanApplyToEquity"}


def new_id() -> str:
    return str(uuid.uuid4())


def _is_sales(kind: DocKind, doc_type: str | None) -> bool:
    return doc_type in ("ACCREC", "ACCRECCREDIT")


def _long_date(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


def check_lock_dates(org: XeroOrg, when: date, what: str = "document") -> None:
    if org.end_of_year_lock_date and when <= org.end_of_year_lock_date:
        raise Invalid(f"The {what} date cannot be before the end of year lock date, currently set at "
                      f"{_long_date(org.end_of_year_lock_date)}.")
    if org.period_lock_date and when <= org.period_lock_date:
        raise Invalid(f"The {what} date cannot be before the period lock date, currently set at "
                      f"{_long_date(org.period_lock_date)}.")


def _date_field(payload: dict, key: str, errors: list[str]) -> date | None:
    if payload.get(key) in (None, ""):
        return None
    try:
        return parse_date(payload[key])
    except (ValueError, TypeError):
        errors.append(f"{key} '{payload[key]}' is not a valid date.")
        return None


def _decimal_field(value, name: str, errors: list[str]) -> Decimal | None:
    if value is None:
        return None
    try:
        return to_decimal(value)
    except ValueError:
        errors.append(f"{name} must be a number.")
        return None


# --- contacts --------------------------------------------------------------------------------------

CONTACT_FIELDS = (
    "Name", "FirstName", "LastName", "EmailAddress", "ContactNumber", "AccountNumber", "CompanyNumber",
    "TaxNumber", "TaxNumberType", "BankAccountDetails", "AccountsReceivableTaxType", "AccountsPayableTaxType",
    "Addresses", "Phones", "ContactPersons", "DefaultCurrency", "PaymentTerms", "SalesDefaultAccountCode",
    "PurchasesDefaultAccountCode", "SalesDefaultLineAmountType", "PurchasesDefaultLineAmountType",
    "XeroNetworkKey", "ContactStatus", "TrackingCategoryName", "TrackingCategoryOption",
)


def find_contact_for_update(org: XeroOrg, payload: dict) -> dict | None:
    if payload.get("ContactID"):
        return org.contacts.get(str(payload["ContactID"]).lower())
    if payload.get("ContactNumber"):
        found = org.contact_by_number(str(payload["ContactNumber"]))
        if found:
            return found
    if payload.get("Name"):
        return org.contact_by_name(str(payload["Name"]))
    return None


def save_contact(w: Write, payload: dict, *, mode: str, contact_id: str | None = None) -> dict:
    """mode: "create" (PUT), "upsert" (POST /Contacts), "update" (POST /Contacts/{id})."""
    org = w.org
    existing = None
    given_id = contact_id or payload.get("ContactID")
    if given_id:
        existing = org.contacts.get(str(given_id).lower())
        if existing is None:
            if contact_id:
                raise NotFound()
            raise Invalid("The document with the supplied id was not found for this endpoint.")
        if mode == "create":
            raise Invalid(f"A contact with ContactID {given_id} already exists; use POST to update it.")
    elif mode == "upsert":
        existing = find_contact_for_update(org, payload)

    errors: list[str] = []
    contact = copy.deepcopy(existing) if existing else {
        "ContactID": new_id(), "ContactStatus": "ACTIVE", "Addresses": [], "Phones": [], "ContactGroups": [],
        "ContactPersons": [], "IsSupplier": False, "IsCustomer": False, "HasAttachments": False,
        "_order": org.next_order(),
    }
    for field in CONTACT_FIELDS:
        if field in payload:
            contact[field] = payload[field]
    name = (contact.get("Name") or "").strip()
    if not name:
        errors.append("The contact name must be specified.")
    elif len(name) > 255:
        errors.append("The contact name must be 255 characters or fewer.")
    contact["Name"] = name
    if contact.get("ContactStatus") not in ("ACTIVE", "ARCHIVED", "GDPRREQUEST"):
        errors.append(f"ContactStatus '{contact.get('ContactStatus')}' is not valid.")
    for field in ("ContactNumber", "AccountNumber"):
        if contact.get(field) is not None and len(str(contact[field])) > 50:
            errors.append(f"{field} must be 50 characters or fewer.")
    if len(contact.get("ContactPersons") or []) > 5:
        errors.append("A contact can have at most 5 contact persons.")
    if contact.get("DefaultCurrency") and contact["DefaultCurrency"] not in org.currencies:
        errors.append(f"Organisation is not subscribed to currency {contact['DefaultCurrency']}")
    if name and contact["ContactStatus"] == "ACTIVE":
        clash = org.contact_by_name(name)
        if clash is not None and clash["ContactID"] != contact["ContactID"]:
            errors.append(f"The contact name {name} is already assigned to another contact. "
                          "The contact name must be unique across all active contacts.")
    number = contact.get("ContactNumber")
    if number:
        clash = org.contact_by_number(str(number))
        if clash is not None and clash["ContactID"] != contact["ContactID"]:
            errors.append(f"The contact number {number} is already assigned to another contact.")
    if errors:
        raise Invalid(errors)
    contact["UpdatedDateUTC"] = org.now()
    org.save(org.contacts, contact["ContactID"], contact, w.journal)
    return contact


def _resolve_document_contact(w: Write, payload: dict, *, may_create: bool) -> dict:
    org = w.org
    ref = payload.get("Contact") or {}
    if not any(ref.get(k) for k in ("ContactID", "ContactNumber", "Name")):
        raise Invalid("The Contact must contain at least 1 of the following elements to identify the contact: "
                      "Name, ContactID, ContactNumber")
    if ref.get("ContactID"):
        found = org.contacts.get(str(ref["ContactID"]).lower())
        if found is None:
            raise Invalid(f"The contact with ContactID {ref['ContactID']} could not be found.")
        return found
    if ref.get("ContactNumber"):
        found = org.contact_by_number(str(ref["ContactNumber"]))
        if found is not None:
            return found
    if ref.get("Name"):
        found = org.contact_by_name(str(ref["Name"]))
        if found is not None:
            return found
    if not may_create:
        raise Invalid("Contact could not be found. A purchase order's contact must already exist in Xero.")
    if not ref.get("Name"):
        raise Invalid(f"The contact with ContactNumber {ref.get('ContactNumber')} could not be found.")
    # Xero creates the contact when a Name matches nobody.
    return save_contact(w, {k: v for k, v in ref.items() if k in CONTACT_FIELDS}, mode="create")


# --- line items -------------------------------------------------------------------------------------

def _resolve_tracking(org: XeroOrg, tracking: list[dict], errors: list[str], where: str) -> list[dict]:
    if len(tracking) > 2:
        errors.append(f"{where}: a line item can have at most 2 tracking categories.")
        return []
    resolved, seen = [], set()
    for item in tracking:
        category = None
        if item.get("TrackingCategoryID"):
            category = org.tracking_categories.get(str(item["TrackingCategoryID"]).lower())
        elif item.get("Name"):
            category = next((c for c in org.tracking_categories.values()
                             if c["Name"].casefold() == str(item["Name"]).casefold()), None)
        label = item.get("Name") or item.get("TrackingCategoryID")
        if category is None or category["Status"] != "ACTIVE":
            errors.append(f"{where}: the tracking category '{label}' does not exist or is not active.")
            continue
        if category["TrackingCategoryID"] in seen:
            errors.append(f"{where}: tracking category '{category['Name']}' is used twice on one line.")
            continue
        seen.add(category["TrackingCategoryID"])
        option = None
        if item.get("TrackingOptionID"):
            option = next((o for o in category["Options"]
                           if o["TrackingOptionID"] == str(item["TrackingOptionID"]).lower()), None)
        elif item.get("Option"):
            option = next((o for o in category["Options"]
                           if o["Name"].casefold() == str(item["Option"]).casefold()), None)
        option_label = item.get("Option") or item.get("TrackingOptionID")
        if option is None:
            errors.append(f"{where}: the tracking option '{option_label}' does not exist in tracking category "
                          f"'{category['Name']}'.")
            continue
        if option["Status"] != "ACTIVE":
            errors.append(f"{where}: the tracking option '{option['Name']}' in tracking category "
                          f"'{category['Name']}' is archived and cannot be used.")
            continue
        resolved.append({"TrackingCategoryID": category["TrackingCategoryID"],
                         "TrackingOptionID": option["TrackingOptionID"],
                         "Name": category["Name"], "Option": option["Name"]})
    return resolved


def _apply_item(org: XeroOrg, line: dict, given: dict, sales: bool, errors: list[str]) -> None:
    """A line naming an item: the item must exist; what the line leaves out comes from the item's sales
    (or purchase) details, as in Xero."""
    item = org.item_by_code(str(given["ItemCode"]))
    if item is None:
        errors.append(f"Item code '{given['ItemCode']}' is not valid")
        return
    line["ItemCode"] = item["Code"]
    details = item.get("SalesDetails" if sales else "PurchaseDetails") or {}
    defaults = {"Description": item.get("Description" if sales else "PurchaseDescription"),
                "UnitAmount": details.get("UnitPrice"), "AccountCode": details.get("AccountCode"),
                "TaxType": details.get("TaxType")}
    for field, value in defaults.items():
        if field not in given and value not in (None, ""):
            line[field] = value


def _line_tax_rate(org: XeroOrg, tax_type: str) -> Decimal:
    return org.tax_rates[tax_type]["EffectiveRate"] / Decimal(100)


def _build_line(w: Write, kind: DocKind, doc_type: str | None, status: str, line_amount_types: str,
                given: dict, previous: dict | None, position: int, errors: list[str]) -> dict:
    org = w.org
    where = f"Line item {position}"
    line = copy.deepcopy(previous) if previous else {"LineItemID": new_id()}
    for field in ("Description", "Quantity", "UnitAmount", "ItemCode", "AccountCode", "AccountID", "TaxType",
                  "TaxAmount", "LineAmount", "DiscountRate", "DiscountAmount", "Tracking"):
        if field in given:
            line[field] = given[field]
    # A line's amounts and tax are always recomputed; TaxAmount survives only if this request sends it.
    explicit_tax = "TaxAmount" in given and given["TaxAmount"] is not None
    sales = _is_sales(kind, doc_type)
    if "ItemCode" in given and given["ItemCode"] not in (None, ""):
        _apply_item(org, line, given, sales, errors)

    description = line.get("Description")
    if description is not None and len(str(description)) > 4000:
        errors.append(f"{where}: the description must be no more than 4000 characters long.")
    if (description is None or str(description).strip() == "") and not line.get("ItemCode"):
        errors.append("The description field is mandatory for each line item.")

    account = None
    if line.get("AccountID") and not line.get("AccountCode"):
        account = org.accounts.get(str(line["AccountID"]).lower())
        if account is None:
            errors.append(f"{where}: the account with AccountID {line['AccountID']} could not be found.")
    elif line.get("AccountCode"):
        code = str(line["AccountCode"])
        account = org.account_by_code(code)
        if account is None:
            errors.append(f"Account code '{code}' has been removed as it does not match a recognised account.")
        elif account["Status"] != "ACTIVE":
            errors.append(f"Account code '{code}' has been archived, and cannot be used.")
            account = None
        elif account["Type"] == "BANK" or account.get("SystemAccount"):
            errors.append(f"Account code '{code}' is not a valid code for this document.")
            account = None
    elif kind is not PURCHASE_ORDER and status in ("SUBMITTED", "AUTHORISED"):
        errors.append(f"{where}: an AccountCode is required before the document can be approved.")
    if account is not None:
        line["AccountCode"] = account["Code"]
        line["AccountID"] = account["AccountID"]

    if line_amount_types == "NoTax":
        line["TaxType"] = "BASEXCLUDED" if "BASEXCLUDED" in org.tax_rates and "NONE" not in org.tax_rates else "NONE"
    elif not line.get("TaxType"):
        if account is not None:
            line["TaxType"] = account["TaxType"]
        else:
            line["TaxType"] = org.sales_tax_type if sales else org.purchases_tax_type
    tax_type = str(line["TaxType"])
    rate_row = org.tax_rates.get(tax_type)
    if rate_row is None or rate_row["Status"] != "ACTIVE":
        errors.append(f"The TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction.")
        rate_row = None
    elif account is not None and not rate_row[TAX_APPLIES[account["Class"]]]:
        errors.append(f"The TaxType code '{tax_type}' cannot be used with account code '{account['Code']}'.")
        rate_row = None
    elif account is None and not rate_row["CanApplyToRevenue" if sales else "CanApplyToExpenses"]:
        errors.append(f"The TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction.")
        rate_row = None

    line["Tracking"] = _resolve_tracking(org, list(line.get("Tracking") or []), errors, where)

    # Purchase orders keep four decimals on prices whatever unitdp says.
    unit_places = 4 if (w.unitdp == 4 or kind is PURCHASE_ORDER) else 2
    quantity = _decimal_field(line.get("Quantity"), "Quantity", errors)
    unit_amount = _decimal_field(line.get("UnitAmount"), "UnitAmount", errors)
    sent_amount = _decimal_field(line.get("LineAmount") if "LineAmount" in given else None, "LineAmount", errors)
    if quantity is None:
        quantity = Decimal(1)
    if unit_amount is None:
        unit_amount = sent_amount / quantity if (sent_amount is not None and quantity) else Decimal(0)
    quantity = round_to(quantity, 4)
    unit_amount = round_to(unit_amount, unit_places)
    gross = quantity * unit_amount
    discount_rate = _decimal_field(line.get("DiscountRate"), "DiscountRate", errors)
    discount_amount = _decimal_field(line.get("DiscountAmount"), "DiscountAmount", errors)
    if (discount_rate or discount_amount) and not sales:
        errors.append(f"{where}: discounts can only be applied to sales documents.")
    if discount_rate is not None and discount_rate:
        if not (Decimal(0) <= discount_rate <= Decimal(100)):
            errors.append(f"{where}: DiscountRate must be between 0 and 100.")
        line_amount = round_money(gross * (Decimal(100) - discount_rate) / Decimal(100))
        line["DiscountRate"] = round_to(discount_rate, 2)
    elif discount_amount is not None and discount_amount:
        line_amount = round_money(gross - discount_amount)
        line["DiscountAmount"] = round_money(discount_amount)
    else:
        line_amount = round_money(gross)
        line.pop("DiscountRate", None)
        line.pop("DiscountAmount", None)
    if abs(line_amount) > MAX_LINE_AMOUNT:
        errors.append(f"{where}: the line amount must be no more than 9,999,999,999.99.")

    if line_amount_types == "NoTax" or rate_row is None:
        tax = Decimal("0.00")
    elif explicit_tax:
        tax = round_money(_decimal_field(given["TaxAmount"], "TaxAmount", errors) or Decimal(0))
    else:
        rate = _line_tax_rate(org, tax_type)
        if line_amount_types == "Inclusive":
            tax = round_money(line_amount - line_amount / (1 + rate))
        else:
            tax = round_money(line_amount * rate)

    line["Quantity"] = quantity
    line["UnitAmount"] = unit_amount
    line["LineAmount"] = line_amount
    line["TaxAmount"] = tax
    return line


# --- invoices, credit notes, purchase orders --------------------------------------------------------

def find_document_for_upsert(org: XeroOrg, kind: DocKind, payload: dict) -> dict | None:
    store = getattr(org, kind.collection)
    if payload.get(kind.id_field):
        return store.get(str(payload[kind.id_field]).lower())
    number = payload.get(kind.number_field)
    if not number:
        return None
    # ACCPAY bill numbers are the supplier's and need not be unique, so they never identify a bill.
    if kind is INVOICE and payload.get("Type", "ACCREC") != "ACCREC":
        return None
    if kind is CREDIT_NOTE and payload.get("Type", "ACCRECCREDIT") != "ACCRECCREDIT":
        return None
    for document in store.find("number", str(number).casefold()):
        if str(document.get(kind.number_field, "")).casefold() == str(number).casefold() and (
            kind is PURCHASE_ORDER or document["Type"] in ("ACCREC", "ACCRECCREDIT")
        ):
            return document
    return None


def _number_taken(org: XeroOrg, kind: DocKind, doc: dict) -> bool:
    number = str(doc.get(kind.number_field) or "").casefold()
    for other in getattr(org, kind.collection).find("number", number):
        if other[kind.id_field] == doc[kind.id_field] or other.get("Status") == "DELETED":
            continue
        if kind is not PURCHASE_ORDER and other["Type"] != doc["Type"]:
            continue
        if str(other.get(kind.number_field, "")).casefold() == number:
            return True
    return False


def _check_status_change(kind: DocKind, existing: dict | None, status: str, errors: list[str]) -> None:
    noun = kind.noun
    if existing is None:
        if status not in CREATE_STATUSES:
            errors.append(f"{noun} status must be DRAFT, SUBMITTED or AUTHORISED when it is created, not {status}.")
        return
    current = existing["Status"]
    if status == current:
        if current in ("VOIDED", "DELETED"):
            errors.append(f"This {noun.lower()} cannot be edited because it is {current}.")
        return
    if status not in kind.statuses.get(current, frozenset()):
        if status == "DELETED" and current == "AUTHORISED":
            errors.append(f"An AUTHORISED {noun.lower()} cannot be deleted; void it instead.")
        elif status == "PAID":
            errors.append(f"The status PAID cannot be set directly; a {noun.lower()} becomes PAID when it is fully paid.")
        else:
            errors.append(f"{noun} not of valid status for modification: cannot change from {current} to {status}.")
        return
    if status == "VOIDED" and (existing.get("AmountPaid") or existing.get("AmountCredited")):
        errors.append(f"This {noun.lower()} has payments or credit notes allocated and cannot be voided; "
                      "remove them first.")


# Statuses in which a document may be marked sent (the OpenAPI document: "only on invoices that have been
# approved", "purchase orders that have been approved or billed"); a credit note's SentToContact is read-only.
_SENDABLE = {"invoices": frozenset({"AUTHORISED", "PAID"}), "purchase_orders": frozenset({"AUTHORISED", "BILLED"})}


def _sent_to_contact(w: Write, kind: DocKind, payload: dict, status: str, doc: dict) -> None:
    """SentToContact is kept on approved documents only; asked of any other, Xero writes the document
    without it and says so in the element's Warnings. On credit notes it is read-only and ignored."""
    if "SentToContact" not in payload or kind.collection not in _SENDABLE:
        return
    wanted = payload["SentToContact"]
    if isinstance(wanted, str):
        wanted = wanted.strip().lower() == "true"
    if wanted and status not in _SENDABLE[kind.collection]:
        allowed = " and ".join(sorted(_SENDABLE[kind.collection]))
        w.warnings.append(f"Only {allowed} {kind.noun.lower()}s may have SentToContact updated.")
        return
    doc["SentToContact"] = bool(wanted)


def save_document(w: Write, kind: DocKind, payload: dict, *, mode: str, document_id: str | None = None) -> dict:
    """mode: "create" (PUT), "upsert" (POST collection), "update" (POST /{kind}/{id})."""
    org = w.org
    store = getattr(org, kind.collection)
    existing = None
    given_id = document_id or payload.get(kind.id_field)
    if given_id:
        existing = store.get(str(given_id).lower())
        if existing is None:
            if document_id:
                raise NotFound()
            raise Invalid("The document with the supplied id was not found for this endpoint.")
        if mode == "create":
            raise Invalid(f"{kind.noun} {given_id} already exists; use POST to update it.")
    elif mode == "upsert":
        existing = find_document_for_upsert(org, kind, payload)

    errors: list[str] = []
    doc = copy.deepcopy(existing) if existing else {
        kind.id_field: new_id(), "Status": "DRAFT", "LineAmountTypes": "Exclusive", "LineItems": [],
        "CurrencyCode": org.base_currency, "CurrencyRate": Decimal("1.000000"),
        "AmountPaid": Decimal("0.00"), "AmountCredited": Decimal("0.00"), "Payments": [], "_order": org.next_order(),
        "_created_by": w.client_id,
    }
    if kind is not PURCHASE_ORDER:
        doc_type = payload.get("Type") or doc.get("Type")
        if doc_type not in kind.types:
            errors.append(f"{kind.noun} Type must be one of {', '.join(kind.types)}.")
            raise Invalid(errors)
        if existing and payload.get("Type") and payload["Type"] != existing["Type"]:
            raise Invalid(f"The Type of an existing {kind.noun.lower()} cannot be changed.")
        doc["Type"] = doc_type
    else:
        doc_type = None
    sales = _is_sales(kind, doc_type)
    old_status = existing["Status"] if existing else None
    status = payload.get("Status") or doc["Status"]
    _check_status_change(kind, existing, status, errors)
    if existing and old_status in ("PAID",) and payload.get("LineItems") is not None:
        errors.append("This document cannot be edited as it has a payment or credit note allocated to it.")
    if errors:
        raise Invalid(errors)

    if "Contact" in payload or existing is None:
        contact = _resolve_document_contact(w, payload, may_create=kind is not PURCHASE_ORDER)
        doc["Contact"] = {"ContactID": contact["ContactID"]}

    for field in ("Date", "DueDate", "ExpectedPaymentDate", "PlannedPaymentDate", "DeliveryDate",
                  "ExpectedArrivalDate"):
        if field in payload:
            doc[field] = _date_field(payload, field, errors)
    if not doc.get("Date"):
        doc["Date"] = org.today()

    if "LineAmountTypes" in payload and payload["LineAmountTypes"]:
        doc["LineAmountTypes"] = payload["LineAmountTypes"]
    currency = payload.get("CurrencyCode") or doc["CurrencyCode"]
    if currency not in org.currencies:
        errors.append(f"Organisation is not subscribed to currency {currency}")
    doc["CurrencyCode"] = currency
    if currency == org.base_currency:
        doc["CurrencyRate"] = Decimal("1.000000")
    elif payload.get("CurrencyRate") is not None:
        rate = _decimal_field(payload["CurrencyRate"], "CurrencyRate", errors)
        if rate is not None:
            if rate <= 0:
                errors.append("CurrencyRate must be greater than zero.")
            doc["CurrencyRate"] = round_to(rate, 6)

    _sent_to_contact(w, kind, payload, status, doc)
    simple_fields = ["Url", "BrandingThemeID", "Reference"]
    if kind is PURCHASE_ORDER:
        simple_fields += ["DeliveryAddress", "AttentionTo", "Telephone", "DeliveryInstructions"]
    for field in simple_fields:
        if field in payload:
            doc[field] = payload[field]
    if kind is INVOICE and doc.get("Reference") and doc_type != "ACCREC":
        errors.append("Reference can only be set on ACCREC invoices; a bill's reference is its InvoiceNumber.")
    if len(str(doc.get("DeliveryInstructions") or "")) > 500:
        errors.append("DeliveryInstructions must be 500 characters or fewer.")
    if doc.get("BrandingThemeID"):
        theme_id = str(doc["BrandingThemeID"]).lower()
        if theme_id not in org.branding_themes:
            errors.append(f"The branding theme with BrandingThemeID {doc['BrandingThemeID']} could not be found.")
        doc["BrandingThemeID"] = theme_id
    elif existing is None and (sales or kind is PURCHASE_ORDER):
        doc["BrandingThemeID"] = min(org.branding_themes.values(), key=lambda t: t["SortOrder"])["BrandingThemeID"]

    if kind.number_field in payload and payload[kind.number_field] not in (None, ""):
        doc[kind.number_field] = str(payload[kind.number_field])
    if len(str(doc.get(kind.number_field) or "")) > 255:
        errors.append(f"{kind.number_field} must be 255 characters or fewer.")
    auto_numbered = sales or kind is PURCHASE_ORDER
    if not doc.get(kind.number_field) and auto_numbered:
        while True:
            doc[kind.number_field] = org.next_number(kind.number_prefix)
            if not _number_taken(org, kind, doc):
                break
    elif doc.get(kind.number_field) and auto_numbered and _number_taken(org, kind, doc):
        errors.append(DUPLICATE_NUMBER[kind.collection])

    lines_changed = payload.get("LineItems") is not None
    if lines_changed or existing is None or "LineAmountTypes" in payload:
        if existing and (existing.get("AmountPaid") or existing.get("AmountCredited")) and lines_changed:
            errors.append("This document cannot be edited as it has a payment or credit note allocated to it.")
        previous_lines = {line["LineItemID"]: line for line in (existing or {}).get("LineItems", [])}
        incoming = payload.get("LineItems") if lines_changed else [
            {k: v for k, v in line.items() if k != "TaxAmount"} for line in doc["LineItems"]
        ]
        lines = []
        for position, given in enumerate(incoming, start=1):
            previous = previous_lines.get(str(given.get("LineItemID") or "").lower())
            lines.append(_build_line(w, kind, doc_type, status, doc["LineAmountTypes"], given, previous,
                                     position, errors))
        doc["LineItems"] = lines
    if errors:
        raise Invalid(errors)

    _compute_totals(doc)
    if existing and doc["Total"] < doc["AmountPaid"] + doc["AmountCredited"]:
        raise Invalid("The total cannot be less than the amount already paid or credited.")
    doc["Status"] = status
    if status == "VOIDED":
        doc["AmountDue"] = Decimal("0.00")

    # Only posted documents are bound by lock dates; a draft may sit in a locked period until approved.
    if kind is not PURCHASE_ORDER and (status in ("AUTHORISED", "VOIDED", "PAID") or old_status in ("AUTHORISED",)):
        check_lock_dates(org, doc["Date"])
        if existing and existing["Date"] != doc["Date"] and old_status == "AUTHORISED":
            check_lock_dates(org, existing["Date"])

    doc["UpdatedDateUTC"] = org.now()
    org.save(store, doc[kind.id_field], doc, w.journal)
    if status == "AUTHORISED" and kind is not PURCHASE_ORDER:
        contact = org.contacts[doc["Contact"]["ContactID"]]
        flag = "IsCustomer" if sales else "IsSupplier"
        if not contact.get(flag):
            updated = dict(contact, **{flag: True})
            org.save(org.contacts, contact["ContactID"], updated, w.journal)
    return doc


def _compute_totals(doc: dict) -> None:
    lines = doc["LineItems"]
    line_total = sum((line["LineAmount"] for line in lines), Decimal("0.00"))
    total_tax = sum((line["TaxAmount"] for line in lines), Decimal("0.00"))
    subtotal = line_total - total_tax if doc["LineAmountTypes"] == "Inclusive" else line_total
    discount = Decimal("0.00")
    for line in lines:
        gross = round_money(line["Quantity"] * line["UnitAmount"])
        discount += gross - line["LineAmount"] if (line.get("DiscountRate") or line.get("DiscountAmount")) else 0
    doc["SubTotal"] = round_money(subtotal)
    doc["TotalTax"] = round_money(total_tax)
    doc["Total"] = round_money(subtotal + total_tax)
    doc["TotalDiscount"] = round_money(discount)
    doc["IsDiscounted"] = discount != 0
    doc["AmountDue"] = doc["Total"] - doc.get("AmountPaid", Decimal(0)) - doc.get("AmountCredited", Decimal(0))
    if "RemainingCredit" in doc or doc.get("Type") in ("ACCRECCREDIT", "ACCPAYCREDIT"):
        doc["RemainingCredit"] = doc["AmountDue"]


# --- payments and allocations ----------------------------------------------------------------------

def _settle(org: XeroOrg, doc: dict, amount: Decimal, when: date, field: str, journal: Journal, store: dict,
            id_field: str) -> None:
    updated = copy.deepcopy(doc)
    updated[field] = updated.get(field, Decimal("0.00")) + amount
    updated["AmountDue"] = updated["Total"] - updated.get("AmountPaid", Decimal(0)) - updated.get("AmountCredited", Decimal(0))
    if "RemainingCredit" in updated:
        updated["RemainingCredit"] = updated["AmountDue"]
    if updated["AmountDue"] == 0:
        updated["Status"] = "PAID"
        updated["FullyPaidOnDate"] = when
    elif updated["Status"] == "PAID":
        updated["Status"] = "AUTHORISED"
        updated.pop("FullyPaidOnDate", None)
    updated["UpdatedDateUTC"] = org.now()
    org.save(store, updated[id_field], updated, journal)


def create_payment(w: Write, payload: dict) -> dict:
    org = w.org
    errors: list[str] = []
    target, store, id_field, kind_noun = None, org.invoices, "InvoiceID", "invoice"
    if payload.get("Invoice"):
        ref = payload["Invoice"]
        if ref.get("InvoiceID"):
            target = org.invoices.get(str(ref["InvoiceID"]).lower())
        elif ref.get("InvoiceNumber"):
            target = org.invoice_by_number(str(ref["InvoiceNumber"]), "ACCREC") or org.invoice_by_number(
                str(ref["InvoiceNumber"]), "ACCPAY")
    elif payload.get("CreditNote"):
        ref, store, id_field, kind_noun = payload["CreditNote"], org.credit_notes, "CreditNoteID", "credit note"
        if ref.get("CreditNoteID"):
            target = org.credit_notes.get(str(ref["CreditNoteID"]).lower())
        elif ref.get("CreditNoteNumber"):
            target = next((c for c in org.credit_notes.find("number", str(ref["CreditNoteNumber"]).casefold())
                           if c.get("CreditNoteNumber", "").casefold() == str(ref["CreditNoteNumber"]).casefold()), None)
    else:
        raise Invalid("A payment must be made against an Invoice or a CreditNote.")
    if target is None:
        raise Invalid(f"The {kind_noun} for this payment could not be found.")

    account_ref = payload.get("Account") or {}
    account = None
    if account_ref.get("AccountID"):
        account = org.accounts.get(str(account_ref["AccountID"]).lower())
    elif account_ref.get("Code"):
        account = org.account_by_code(str(account_ref["Code"]))
    if account is None:
        errors.append("The account for this payment could not be found; send Account.AccountID or Account.Code.")
    elif account["Status"] != "ACTIVE" or not (account["Type"] == "BANK" or account.get("EnablePaymentsToAccount")):
        errors.append(f"Account code '{account['Code']}' cannot receive payments: use a bank account or an "
                      "account with payments enabled.")

    amount = _decimal_field(payload.get("Amount"), "Amount", errors)
    if amount is None:
        errors.append("Amount is required.")
    elif amount <= 0:
        errors.append("The payment amount must be greater than zero.")
    when = _date_field(payload, "Date", errors) or org.today()
    if target["Status"] != "AUTHORISED":
        errors.append(f"Payments can only be made against AUTHORISED documents; this {kind_noun} is {target['Status']}.")
    elif amount is not None and amount > 0 and round_money(amount) > target["AmountDue"]:
        errors.append("Payment amount exceeds the amount outstanding on this document")
    if errors:
        raise Invalid(errors)
    check_lock_dates(org, when, "payment")
    amount = round_money(amount)

    payment_types = {"ACCREC": "ACCRECPAYMENT", "ACCPAY": "ACCPAYPAYMENT",
                     "ACCRECCREDIT": "ARCREDITPAYMENT", "ACCPAYCREDIT": "APCREDITPAYMENT"}
    rate = target.get("CurrencyRate", Decimal(1))
    if payload.get("CurrencyRate") is not None and target["CurrencyCode"] != org.base_currency:
        rate = round_to(to_decimal(payload["CurrencyRate"]), 6)
    payment = {
        "PaymentID": new_id(), "Date": when, "Amount": amount, "BankAmount": amount,
        "CurrencyRate": rate, "Reference": payload.get("Reference", ""), "IsReconciled": bool(payload.get("IsReconciled")),
        "Status": "AUTHORISED", "PaymentType": payment_types[target["Type"]],
        "AccountID": account["AccountID"], "Target": (store is org.invoices and "invoice") or "credit_note",
        "TargetID": target[id_field], "UpdatedDateUTC": org.now(), "_order": org.next_order(),
    }
    org.save(org.payments, payment["PaymentID"], payment, w.journal)
    _settle(org, target, amount, when, "AmountPaid", w.journal, store, id_field)
    updated = store[target[id_field]]
    updated["Payments"] = [*updated.get("Payments", []), payment["PaymentID"]]
    return payment


def delete_payment(w: Write, payment_id: str, payload: dict) -> dict:
    org = w.org
    payment = org.payments.get(payment_id.lower())
    if payment is None:
        raise NotFound()
    if str(payload.get("Status", "")).upper() != "DELETED":
        raise Invalid("The only change allowed on a payment is Status DELETED.")
    if payment["Status"] == "DELETED":
        raise Invalid("This payment has already been deleted.")
    check_lock_dates(org, payment["Date"], "payment")
    store, id_field = (org.invoices, "InvoiceID") if payment["Target"] == "invoice" else (org.credit_notes, "CreditNoteID")
    target = store[payment["TargetID"]]
    updated = dict(payment, Status="DELETED", UpdatedDateUTC=org.now())
    org.save(org.payments, payment["PaymentID"], updated, w.journal)
    _settle(org, target, -payment["Amount"], payment["Date"], "AmountPaid", w.journal, store, id_field)
    store[target[id_field]]["Payments"] = [p for p in target.get("Payments", []) if p != payment["PaymentID"]]
    return updated


def allocate_credit_note(w: Write, credit_note_id: str, payload: dict) -> dict:
    org = w.org
    credit_note = org.credit_notes.get(credit_note_id.lower())
    if credit_note is None:
        raise NotFound()
    errors: list[str] = []
    ref = payload.get("Invoice") or {}
    invoice = org.invoices.get(str(ref.get("InvoiceID", "")).lower()) if ref.get("InvoiceID") else None
    if invoice is None:
        raise Invalid("The invoice for this allocation could not be found.")
    amount = _decimal_field(payload.get("Amount"), "Amount", errors)
    when = _date_field(payload, "Date", errors) or org.today()
    expected_type = {"ACCRECCREDIT": "ACCREC", "ACCPAYCREDIT": "ACCPAY"}[credit_note["Type"]]
    if credit_note["Status"] != "AUTHORISED":
        errors.append("Only AUTHORISED credit notes can be allocated.")
    if invoice["Status"] != "AUTHORISED":
        errors.append("Credit can only be allocated to AUTHORISED invoices.")
    if invoice["Type"] != expected_type:
        errors.append(f"A {credit_note['Type']} credit note can only be allocated to {expected_type} invoices.")
    if invoice["Contact"]["ContactID"] != credit_note["Contact"]["ContactID"]:
        errors.append("The credit note and the invoice must belong to the same contact.")
    if invoice["CurrencyCode"] != credit_note["CurrencyCode"]:
        errors.append("The credit note and the invoice must be in the same currency.")
    if amount is None or amount <= 0:
        errors.append("The allocation amount must be greater than zero.")
    else:
        amount = round_money(amount)
        if amount > credit_note["RemainingCredit"]:
            errors.append("The amount allocated exceeds the remaining credit on this credit note.")
        if amount > invoice["AmountDue"]:
            errors.append("The amount allocated exceeds the amount outstanding on the invoice.")
    if errors:
        raise Invalid(errors)
    check_lock_dates(org, when, "allocation")
    allocation = {"AllocationID": new_id(), "Amount": amount, "Date": when,
                  "InvoiceID": invoice["InvoiceID"], "CreditNoteID": credit_note["CreditNoteID"]}
    _settle(org, invoice, amount, when, "AmountCredited", w.journal, org.invoices, "InvoiceID")
    _settle(org, credit_note, amount, when, "AmountCredited", w.journal, org.credit_notes, "CreditNoteID")
    org.invoices[invoice["InvoiceID"]].setdefault("Allocations", []).append(allocation)
    org.credit_notes[credit_note["CreditNoteID"]].setdefault("Allocations", []).append(allocation)
    return allocation


# --- items (products and services) ------------------------------------------------------------------

ITEM_CODE_LIMIT = 30
ITEM_NAME_LIMIT = 50
ITEM_DESCRIPTION_LIMIT = 4000
ITEM_FIELDS = ("Code", "Name", "Description", "PurchaseDescription", "IsSold", "IsPurchased",
               "InventoryAssetAccountCode")


def _item_details(org: XeroOrg, given, side: str, errors: list[str], *, tracked: bool) -> dict:
    """SalesDetails or PurchaseDetails: UnitPrice, AccountCode (COGSAccountCode on a tracked item's
    purchases), TaxType; each checked against the organisation."""
    if not given:
        return {}
    details: dict = {}
    price = _decimal_field(given.get("UnitPrice"), f"{side}.UnitPrice", errors)
    if price is not None:
        details["UnitPrice"] = round_to(price, 4)
    for field in ("AccountCode", "COGSAccountCode"):
        code = given.get(field)
        if code in (None, ""):
            continue
        account = org.account_by_code(str(code))
        if account is None or account["Status"] != "ACTIVE" or account["Type"] == "BANK" or account.get("SystemAccount"):
            errors.append(f"Account code '{code}' does not exist or cannot be applied to Items.")
            continue
        details[field] = account["Code"]
    tax_type = given.get("TaxType")
    if tax_type not in (None, ""):
        rate = org.tax_rates.get(str(tax_type))
        applies = "CanApplyToRevenue" if side == "SalesDetails" else "CanApplyToExpenses"
        if rate is None or rate["Status"] != "ACTIVE" or not rate[applies]:
            errors.append(f"The TaxType code '{tax_type}' does not exist or cannot be used for this type of transaction.")
        else:
            details["TaxType"] = rate["TaxType"]
    return details


def save_item(w: Write, payload: dict, *, mode: str, item_id: str | None = None) -> dict:
    """mode: "create" (PUT /Items), "upsert" (POST /Items: an ItemID or an existing Code updates that item),
    "update" (POST /Items/{ItemID})."""
    org = w.org
    existing = None
    given_id = item_id or payload.get("ItemID")
    if given_id:
        existing = org.items.get(str(given_id).lower())
        if existing is None:
            if item_id:
                raise NotFound()
            raise Invalid("The document with the supplied id was not found for this endpoint.")
        if mode == "create":
            raise Invalid(f"An item with ItemID {given_id} already exists; use POST to update it.")
    elif mode == "upsert" and payload.get("Code"):
        existing = org.item_by_code(str(payload["Code"]))

    errors: list[str] = []
    item = copy.deepcopy(existing) if existing else {
        "ItemID": new_id(), "IsSold": True, "IsPurchased": True, "SalesDetails": {}, "PurchaseDetails": {},
        "_order": org.next_order(),
    }
    for field in ITEM_FIELDS:
        if field in payload:
            item[field] = payload[field]
    code = str(item.get("Code") or "").strip()
    if not code:
        errors.append("Item code must be specified.")
    elif len(code) > ITEM_CODE_LIMIT:
        errors.append(f"The Code must not be more than {ITEM_CODE_LIMIT} characters long.")
    else:
        clash = org.item_by_code(code)
        if clash is not None and clash["ItemID"] != item["ItemID"]:
            errors.append(f"Item code '{code}' already exists")
    item["Code"] = code
    if len(str(item.get("Name") or "")) > ITEM_NAME_LIMIT:
        errors.append(f"The Name must not be more than {ITEM_NAME_LIMIT} characters long.")
    for field in ("Description", "PurchaseDescription"):
        if len(str(item.get(field) or "")) > ITEM_DESCRIPTION_LIMIT:
            errors.append(f"The {field} must not be more than {ITEM_DESCRIPTION_LIMIT} characters long.")

    tracked = bool(payload.get("IsTrackedAsInventory", existing.get("IsTrackedAsInventory") if existing else False)
                   or item.get("InventoryAssetAccountCode"))
    for side in ("SalesDetails", "PurchaseDetails"):
        if side in payload:
            item[side] = _item_details(org, payload[side], side, errors, tracked=tracked)
    if tracked:
        # Xero tracks an item as inventory only when both accounts are set, and only an item it both buys
        # and sells: a service (sold only, or bought only) cannot be tracked.
        asset_code = item.get("InventoryAssetAccountCode")
        if not asset_code:
            errors.append("An InventoryAssetAccountCode is required to track an item as inventory.")
        else:
            account = org.account_by_code(str(asset_code))
            if account is None or account["Type"] != "INVENTORY" or account["Status"] != "ACTIVE":
                errors.append(f"The InventoryAssetAccountCode '{asset_code}' must be an active account of type "
                              "INVENTORY.")
            else:
                item["InventoryAssetAccountCode"] = account["Code"]
        if not (item.get("PurchaseDetails") or {}).get("COGSAccountCode"):
            errors.append("A COGSAccountCode in PurchaseDetails is required to track an item as inventory.")
        if item.get("IsSold") is False or item.get("IsPurchased") is False:
            errors.append("Only items that are both bought and sold can be tracked as inventory; a service item "
                          "cannot be tracked.")
    elif (item.get("PurchaseDetails") or {}).get("COGSAccountCode"):
        errors.append("COGSAccountCode applies only to tracked inventory items; use AccountCode in PurchaseDetails.")
    if errors:
        raise Invalid(errors)

    item["IsTrackedAsInventory"] = tracked
    if tracked:
        item.setdefault("QuantityOnHand", Decimal("0.0000"))
        item.setdefault("TotalCostPool", Decimal("0.00"))
    # Xero nulls the sales side of an item no longer sold, and the purchase side of one no longer bought.
    if item.get("IsSold") is False:
        item["SalesDetails"] = {}
        item.pop("Description", None)
    if item.get("IsPurchased") is False:
        item["PurchaseDetails"] = {}
        item.pop("PurchaseDescription", None)
    item["UpdatedDateUTC"] = org.now()
    org.save(org.items, item["ItemID"], item, w.journal)
    return item

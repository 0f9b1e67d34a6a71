"""Data contracts for the frames that flow through the invoice sync.

Money columns hold decimal.Decimal values in object columns: a float column would turn 33.3333 into
33.33329999999... and the totals would stop matching Xero to the cent.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from decimal import Decimal

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

# Autotask sends "2026-11-03T00:00:00.000Z"; the date part is what the invoice means.
DATE_PREFIX = r"^\d{4}-\d{2}-\d{2}"
# The whole of an Autotask timestamp: a date, optionally a time (seconds and fraction optional) and a zone.
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,7})?)?"
                        r"(?:[Zz]|[+-]\d{2}:?\d{2})?)?", re.ASCII)

# What this sync reads from Autotask. A value outside these bounds is a malformed record: the frames report
# it (core/frames.py) and the mapping never sees it, so no arithmetic downstream can overflow on it.
MAX_AMOUNT = Decimal("9999999999.99")  # the largest line amount Xero accepts
MAX_QUANTITY = Decimal("9999999999.9999")  # quantities and rates, which Xero keeps to 4 decimal places
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date.max  # 9999-12-31
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # pandas' Int64 columns, and the ledger's BIGINT autotask_id
NUMBER_LIMIT = 100  # Autotask keeps invoice numbers to 100 characters (the ledger's autotask_number too)

# Columns by what they hold, for the frames' reading and the checks below.
AMOUNT_COLUMNS = frozenset({"invoiceTotal", "totalTaxValue", "extendedPrice", "taxDollars", "totalAmount"})
# Unit prices and costs keep 4 decimals in Xero, as quantities do.
QUANTITY_COLUMNS = frozenset({"quantity", "rate", "unitCost", "internalCurrencyUnitCost"})
TIMESTAMP_COLUMNS = frozenset({"invoiceDateTime", "dueDate", "fromDate", "toDate", "paidDate", "voidedDate",
                               "webServiceDate", "itemDate",
                               # purchasing
                               "createDateTime", "submitDateTime", "cancelDateTime", "shippingDate",
                               "latestEstimatedArrivalDate", "estimatedArrivalDate", "receiveDate"})
TEXT_LIMITS = {"invoiceNumber": NUMBER_LIMIT}


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def is_decimal(value) -> bool:
    return isinstance(value, Decimal) and value.is_finite()


def is_decimal_or_missing(value) -> bool:
    return value is None or is_decimal(value)


def within(value, limit: Decimal) -> bool:
    return is_decimal(value) and abs(value) <= limit


@functools.lru_cache(maxsize=65_536)  # a window's billing items share a few hundred dates
def timestamp_problem(value: str) -> str | None:
    """Why an Autotask timestamp cannot be read (None when it can): it must be a real date in
    EARLIEST_DATE..LATEST_DATE, with a real time of day if it has one."""
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return "not a date in the form YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ"
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return "no such date"
    if hour > 23 or minute > 59 or second > 59:
        return "no such time of day"
    if date < EARLIEST_DATE:
        return f"before {EARLIEST_DATE.isoformat()}"
    return None


def has_valid_date_prefix(value) -> bool:
    """A readable Autotask timestamp (see timestamp_problem), or no value."""
    if not isinstance(value, str):
        return _missing(value)
    return timestamp_problem(value) is None


class AutotaskInvoices(pa.DataFrameModel):
    """Invoices as read from Autotask, one row each."""

    id: Series[pd.Int64Dtype] = pa.Field(nullable=False, unique=True)
    invoiceNumber: Series[str] = pa.Field(nullable=True)
    companyID: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    invoiceDateTime: Series[str] = pa.Field(nullable=False)
    dueDate: Series[str] = pa.Field(nullable=True)
    invoiceTotal: Series[object] = pa.Field(nullable=False)
    totalTaxValue: Series[object] = pa.Field(nullable=False)
    isVoided: Series[pd.BooleanDtype] = pa.Field(nullable=False)
    orderNumber: Series[str] = pa.Field(nullable=True)
    paymentTerm: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    invoiceEditorTemplateID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    taxRegionName: Series[str] = pa.Field(nullable=True)
    comments: Series[str] = pa.Field(nullable=True)
    batchID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    fromDate: Series[str] = pa.Field(nullable=True)
    toDate: Series[str] = pa.Field(nullable=True)
    paidDate: Series[str] = pa.Field(nullable=True)
    voidedDate: Series[str] = pa.Field(nullable=True)
    webServiceDate: Series[str] = pa.Field(nullable=True)

    @pa.check("invoiceTotal", "totalTaxValue", element_wise=True,
              error="must be a Decimal amount within ±9,999,999,999.99")
    def _money(cls, value) -> bool:
        return within(value, MAX_AMOUNT)

    @pa.check("invoiceDateTime", "dueDate", "fromDate", "toDate", "paidDate", "voidedDate", "webServiceDate",
              element_wise=True, error="must be a real date from 1900-01-01 to 9999-12-31")
    def _dates(cls, value) -> bool:
        return has_valid_date_prefix(value)

    @pa.check("invoiceNumber", element_wise=True, error="must be at most 100 characters")
    def _number(cls, value) -> bool:
        return _missing(value) or len(value) <= NUMBER_LIMIT

    class Config:
        strict = True
        coerce = False


class AutotaskInvoiceLines(pa.DataFrameModel):
    """BillingItems that belong to the invoices above, one row per invoice line."""

    id: Series[pd.Int64Dtype] = pa.Field(nullable=False, unique=True)
    invoiceID: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    companyID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    billingCodeID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    billingItemType: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    itemName: Series[str] = pa.Field(nullable=True)
    description: Series[str] = pa.Field(nullable=True)
    quantity: Series[object] = pa.Field(nullable=False)
    rate: Series[object] = pa.Field(nullable=True)
    extendedPrice: Series[object] = pa.Field(nullable=False)
    taxDollars: Series[object] = pa.Field(nullable=False)
    totalAmount: Series[object] = pa.Field(nullable=False)
    purchaseOrderNumber: Series[str] = pa.Field(nullable=True)
    # Only in newer API versions; when missing, the billing code's taxCategoryID applies.
    taxCategoryID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    # The REST model has no product link; a client that joins one in (from the charge) fills productID.
    productID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    contractID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    sortOrderID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    itemDate: Series[str] = pa.Field(nullable=True)
    # The labour line's TimeEntries record (line_presentation.time_entries reads it).
    timeEntryID: Series[pd.Int64Dtype] = pa.Field(nullable=True)

    @pa.check("extendedPrice", "taxDollars", "totalAmount", element_wise=True,
              error="must be a Decimal amount within ±9,999,999,999.99")
    def _money(cls, value) -> bool:
        return within(value, MAX_AMOUNT)

    @pa.check("quantity", element_wise=True, error="must be a Decimal within ±9,999,999,999.9999")
    def _quantity(cls, value) -> bool:
        return within(value, MAX_QUANTITY)

    @pa.check("rate", element_wise=True, error="must be a Decimal within ±9,999,999,999.9999, or empty")
    def _rate(cls, value) -> bool:
        return value is None or within(value, MAX_QUANTITY)

    @pa.check("itemDate", element_wise=True, error="must be a real date from 1900-01-01 to 9999-12-31")
    def _dates(cls, value) -> bool:
        return has_valid_date_prefix(value)

    class Config:
        strict = True
        coerce = False


class AutotaskCompanies(pa.DataFrameModel):
    """Companies (Autotask accounts) that the invoices are billed to."""

    id: Series[pd.Int64Dtype] = pa.Field(nullable=False, unique=True)
    companyName: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1})
    companyNumber: Series[str] = pa.Field(nullable=True)
    taxRegionID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    isTaxExempt: Series[pd.BooleanDtype] = pa.Field(nullable=False)
    currencyID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    taxID: Series[str] = pa.Field(nullable=True)
    phone: Series[str] = pa.Field(nullable=True)
    webAddress: Series[str] = pa.Field(nullable=True)
    address1: Series[str] = pa.Field(nullable=True)
    address2: Series[str] = pa.Field(nullable=True)
    city: Series[str] = pa.Field(nullable=True)
    state: Series[str] = pa.Field(nullable=True)
    postalCode: Series[str] = pa.Field(nullable=True)
    countryID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    billToAddressToUse: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    billToAttention: Series[str] = pa.Field(nullable=True)
    billingAddress1: Series[str] = pa.Field(nullable=True)
    billingAddress2: Series[str] = pa.Field(nullable=True)
    billToCity: Series[str] = pa.Field(nullable=True)
    billToState: Series[str] = pa.Field(nullable=True)
    billToZipCode: Series[str] = pa.Field(nullable=True)
    billToCountryID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    companyType: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    classification: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    territoryID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    invoiceTemplateID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    # Autotask's [{"name": ..., "value": ...}] list, kept as it came (tracking may read a UDF).
    userDefinedFields: Series[object] = pa.Field(nullable=True)

    @pa.check("userDefinedFields", element_wise=True, error="must be a list of {name, value}")
    def _udfs(cls, value) -> bool:
        return value is None or (isinstance(value, list) and all(isinstance(u, dict) for u in value))

    class Config:
        strict = True
        coerce = False


class XeroInvoiceDraft(pa.DataFrameModel):
    """One row per Xero LineItem, each carrying its invoice's header columns.

    The rows of one autotask_invoice_id are one Xero document (one DocumentPlan, core.invoices.invoice_documents):
    an ACCREC invoice or, for a negative Autotask invoice, an ACCRECCREDIT credit note whose amounts are
    the Autotask amounts with their signs turned.
    """

    autotask_invoice_id: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    document_type: Series[str] = pa.Field(isin=["ACCREC", "ACCRECCREDIT"])
    autotask_number: Series[str] = pa.Field(nullable=False)
    # Nullable text columns are object columns so that "no value" stays None, as the SDK models want.
    invoice_number: Series[object] = pa.Field(nullable=True)
    contact_number: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 50})
    contact_name: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 255})
    date: Series[object] = pa.Field(nullable=False)
    due_date: Series[object] = pa.Field(nullable=True)
    reference: Series[object] = pa.Field(nullable=True)
    currency_code: Series[str] = pa.Field(nullable=False, str_matches=r"^[A-Z]{3}$")
    line_amount_types: Series[str] = pa.Field(isin=["Exclusive", "Inclusive", "NoTax"])
    status: Series[str] = pa.Field(isin=["DRAFT", "SUBMITTED", "AUTHORISED"])
    # Link back to the Autotask invoice; Xero keeps it as Url, so the loader can find the invoice again
    # when Xero numbers it.
    source_url: Series[object] = pa.Field(nullable=True)
    branding_theme_id: Series[object] = pa.Field(nullable=True)
    # Units of currency_code per 1 unit of the Xero base currency; None lets Xero use its daily rate.
    currency_rate: Series[object] = pa.Field(nullable=True)
    # Why the draft differs from a plain copy of Autotask's lines (explicit TaxAmount, rounding line).
    rounding_note: Series[object] = pa.Field(nullable=True)
    # True: mark the (approved) invoice sent to the contact in Xero (mapping status AUTHORISED_SENT); else None.
    sent_to_contact: Series[object] = pa.Field(nullable=True)
    line_no: Series[pd.Int64Dtype] = pa.Field(nullable=False, ge=1)
    # The first billing item of a grouped line; empty on a rounding line.
    autotask_billing_item_id: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    description: Series[str] = pa.Field(nullable=False, str_length={"min_value": 1, "max_value": 4000})
    quantity: Series[object] = pa.Field(nullable=False)
    unit_amount: Series[object] = pa.Field(nullable=False)
    account_code: Series[str] = pa.Field(nullable=False)
    tax_type: Series[str] = pa.Field(nullable=False)
    tax_amount: Series[object] = pa.Field(nullable=True)
    line_amount: Series[object] = pa.Field(nullable=False)
    autotask_total: Series[object] = pa.Field(nullable=False)
    autotask_tax: Series[object] = pa.Field(nullable=False)
    tracking1_name: Series[object] = pa.Field(nullable=True)
    tracking1_option: Series[object] = pa.Field(nullable=True)
    tracking2_name: Series[object] = pa.Field(nullable=True)
    tracking2_option: Series[object] = pa.Field(nullable=True)

    @pa.check("quantity", "unit_amount", "line_amount", "autotask_total", "autotask_tax", element_wise=True,
              error="must be a Decimal amount")
    def _money(cls, value) -> bool:
        return is_decimal(value)

    @pa.check("tax_amount", "currency_rate", element_wise=True, error="must be a Decimal amount or empty")
    def _tax_amount(cls, value) -> bool:
        return is_decimal_or_missing(value)

    @pa.check("line_amount", element_wise=True, error="Xero keeps line amounts to 2 decimal places")
    def _line_amount_in_cents(cls, value) -> bool:
        return is_decimal(value) and value == value.quantize(Decimal("0.01"))

    @pa.check("line_amount", element_wise=True, error="Xero accepts line amounts up to ±9,999,999,999.99")
    def _line_amount_in_range(cls, value) -> bool:
        return within(value, MAX_AMOUNT)

    @pa.check("invoice_number", "reference", "branding_theme_id", "tracking1_name", "tracking1_option",
              "tracking2_name", "tracking2_option", element_wise=True, error="must be text of at most 255 characters")
    def _optional_text(cls, value) -> bool:
        return value is None or (isinstance(value, str) and 0 < len(value) <= 255)

    @pa.check("source_url", "rounding_note", element_wise=True, error="must be text or empty")
    def _optional_long_text(cls, value) -> bool:
        return value is None or (isinstance(value, str) and len(value) > 0)

    @pa.check("date", element_wise=True, error="must be a datetime.date")
    def _date(cls, value) -> bool:
        return type(value) is dt.date

    @pa.check("due_date", element_wise=True, error="must be a datetime.date or empty")
    def _due_date(cls, value) -> bool:
        return value is None or type(value) is dt.date

    class Config:
        strict = True
        coerce = False


def column_dtypes(model: type[pa.DataFrameModel]) -> dict[str, object]:
    """Column name -> pandas dtype of a model, to build frames (including empty ones) that it accepts."""
    schema = model.to_schema()
    return {name: column.dtype.type if column.dtype is not None else object for name, column in schema.columns.items()}


# ---- purchasing: purchase orders, their items and receivings (bills and Xero purchase orders) -----

class AutotaskPurchaseOrders(pa.DataFrameModel):
    """PurchaseOrders as read from Autotask. The model carries no total, tax or currency: the items and
    freight are the amounts, the vendor company's currency is the currency."""

    id: Series[pd.Int64Dtype] = pa.Field(nullable=False, unique=True)
    purchaseOrderNumber: Series[str] = pa.Field(nullable=True)
    externalPONumber: Series[str] = pa.Field(nullable=True)
    vendorID: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    purchaseForCompanyID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    # A picklist value (per tenant); its label comes from entityInformation/fields.
    status: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    createDateTime: Series[str] = pa.Field(nullable=True)
    submitDateTime: Series[str] = pa.Field(nullable=True)
    cancelDateTime: Series[str] = pa.Field(nullable=True)
    shippingDate: Series[str] = pa.Field(nullable=True)
    latestEstimatedArrivalDate: Series[str] = pa.Field(nullable=True)
    paymentTerm: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    taxRegionID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    # In the vendor's currency; internalCurrencyFreight in Autotask's internal currency.
    freight: Series[object] = pa.Field(nullable=True)
    internalCurrencyFreight: Series[object] = pa.Field(nullable=True)
    vendorInvoiceNumber: Series[str] = pa.Field(nullable=True)
    generalMemo: Series[str] = pa.Field(nullable=True)

    @pa.check("freight", "internalCurrencyFreight", element_wise=True, error="must be a Decimal amount or empty")
    def _money(cls, value) -> bool:
        return is_decimal_or_missing(value)

    @pa.check("createDateTime", "submitDateTime", "cancelDateTime", "shippingDate", "latestEstimatedArrivalDate",
              element_wise=True, error="must start with a valid YYYY-MM-DD date")
    def _dates(cls, value) -> bool:
        return has_valid_date_prefix(value)

    class Config:
        strict = True
        coerce = False


class AutotaskPurchaseOrderItems(pa.DataFrameModel):
    """PurchaseOrderItems: what was ordered, one row per item."""

    id: Series[pd.Int64Dtype] = pa.Field(nullable=False, unique=True)
    orderID: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    # Empty for an item typed in without a product: its memo says what it is.
    productID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    # int32 in Autotask: a fractional quantity cannot be read and rejects the item.
    quantity: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    unitCost: Series[object] = pa.Field(nullable=False)
    internalCurrencyUnitCost: Series[object] = pa.Field(nullable=True)
    memo: Series[str] = pa.Field(nullable=True)
    estimatedArrivalDate: Series[str] = pa.Field(nullable=True)

    @pa.check("unitCost", element_wise=True, error="must be a Decimal amount")
    def _unit_cost(cls, value) -> bool:
        return is_decimal(value)

    @pa.check("internalCurrencyUnitCost", element_wise=True, error="must be a Decimal amount or empty")
    def _internal_cost(cls, value) -> bool:
        return is_decimal_or_missing(value)

    @pa.check("estimatedArrivalDate", element_wise=True, error="must start with a valid YYYY-MM-DD date")
    def _dates(cls, value) -> bool:
        return has_valid_date_prefix(value)

    class Config:
        strict = True
        coerce = False


class AutotaskPurchaseOrderReceivings(pa.DataFrameModel):
    """PurchaseOrderItemReceiving: one delivery of one item, with the vendor's invoice number for it."""

    id: Series[pd.Int64Dtype] = pa.Field(nullable=False, unique=True)
    purchaseOrderItemID: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    quantityNowReceiving: Series[pd.Int64Dtype] = pa.Field(nullable=False)
    quantityPreviouslyReceived: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    quantityBackOrdered: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    receiveDate: Series[str] = pa.Field(nullable=False, str_matches=DATE_PREFIX)
    receivedByResourceID: Series[pd.Int64Dtype] = pa.Field(nullable=True)
    serialNumber: Series[str] = pa.Field(nullable=True)
    vendorInvoiceNumber: Series[str] = pa.Field(nullable=True)

    @pa.check("receiveDate", element_wise=True, error="must start with a valid YYYY-MM-DD date")
    def _dates(cls, value) -> bool:
        return has_valid_date_prefix(value)

    class Config:
        strict = True
        coerce = False

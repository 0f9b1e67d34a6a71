"""The tenant's mapping file: how Autotask billing codes and tax categories become Xero accounts and TaxTypes.

The file is YAML, validated with pydantic. Every error names the file, the key and the fix, because the
person reading it is an MSP's bookkeeper, not the engineer who wrote this module.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

InvoiceStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED"]
# How sales invoices are imported: InvoiceStatus, or AUTHORISED_SENT (approved, then marked sent to the
# contact: Xero's SentToContact, which e-mails nobody; Xero keeps it on approved invoices only, and credit
# notes take it from Xero's screens alone, so credit notes arrive AUTHORISED).
ImportStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED", "AUTHORISED_SENT"]
AUTHORISED_SENT = "AUTHORISED_SENT"
LineAmountTypes = Literal["Exclusive", "Inclusive", "NoTax"]

# Fields of an Autotask invoice that templates (invoice number, reference) may use.
TEMPLATE_FIELDS = frozenset({"id", "invoiceNumber", "orderNumber", "companyID", "comments", "taxRegionName"})
# Only the reference may use these: they are not unique per invoice, or come from its company or lines.
REFERENCE_FIELDS = TEMPLATE_FIELDS | frozenset({
    "purchaseOrderNumbers", "companyName", "companyNumber", "fromDate", "toDate", "invoiceDate", "batchID",
})
# BillingItem fields a line description template may use.
LINE_FIELDS = frozenset({
    "itemName", "description", "quantity", "rate", "itemDate", "purchaseOrderNumber", "billingCode", "id",
})
_PLACEHOLDER = re.compile(r"{([^{}]*)}")
# Where a tracking option's Autotask value comes from.
_TRACKING_SOURCE = re.compile(
    r"^(company\.(classification|territory|companyType|udf:.+)|billing_code\.(department|name|gl_account)"
    r"|billing_item_type|contract|invoice_template|tax_region)$"
)
TRACKING_SOURCES = ("company.classification", "company.territory", "company.companyType", "company.udf:<name>",
                    "billing_code.department", "billing_code.name", "billing_code.gl_account", "billing_item_type",
                    "contract", "invoice_template", "tax_region")


class MappingError(ValueError):
    """The mapping file cannot be used; the message says where and how to fix it."""


class _Strict(BaseModel):
    # A misspelt key must fail loudly: a silently ignored "refuse_unmaped" would post to the default account.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountRules(_Strict):
    """Which Xero account code a billing item is posted to; the first rule that matches wins, in this order."""

    # The line's product (Products id, or its name or sku): more specific than its billing code.
    by_product_id: dict[int, str] = Field(default_factory=dict)
    by_product_name: dict[str, str] = Field(default_factory=dict)
    by_billing_code_id: dict[int, str] = Field(default_factory=dict)
    by_billing_code_name: dict[str, str] = Field(default_factory=dict)
    # The billing code's generalLedgerAccount (an Autotask picklist value, per tenant).
    by_gl_account: dict[int, str] = Field(default_factory=dict)
    # The same picklist by its label ("4000 Labour Revenue"), which survives a picklist renumbering.
    by_gl_account_label: dict[str, str] = Field(default_factory=dict)
    by_external_number: dict[str, str] = Field(default_factory=dict)
    # billingItemType picklist value (per tenant), for example 1 for labour.
    by_billing_item_type: dict[int, str] = Field(default_factory=dict)
    default: str | None = None
    # True: a billing code that no rule names sets its invoice aside instead of using `default`.
    refuse_unmapped: bool = False

    @field_validator(
        "by_product_id", "by_product_name", "by_billing_code_id", "by_billing_code_name", "by_gl_account",
        "by_gl_account_label", "by_external_number", "by_billing_item_type", mode="before",
    )
    @classmethod
    def _codes_are_text(cls, rules):
        # YAML reads `200` as an int; Xero account codes are text.
        if isinstance(rules, dict):
            return {key: str(code) if isinstance(code, int) else code for key, code in rules.items()}
        return rules

    @field_validator("default", mode="before")
    @classmethod
    def _default_is_text(cls, code):
        return str(code) if isinstance(code, int) else code


class TaxRules(_Strict):
    """Which Xero TaxType a line gets, from the Autotask tax category of the line or of its billing code."""

    by_category_name: dict[str, str] = Field(default_factory=dict)
    by_category_id: dict[int, str] = Field(default_factory=dict)
    # Tax region name -> {tax category name, or "*" for any category -> TaxType}; checked before the
    # category rules, because one category (say "Hardware") is taxed differently in each region.
    by_region: dict[str, dict[str, str]] = Field(default_factory=dict)
    # Used for every line of a company marked isTaxExempt in Autotask.
    tax_exempt: str | None = None
    # True: a line takes the Xero contact's default sales tax (AccountsReceivableTaxType) instead of the
    # mapped TaxType, where the contact has one of the same rate (else the invoice is set aside).
    from_contact: bool = False
    # Used when a line has no tax category, or one that no rule names; leave empty to set such invoices aside.
    default: str | None = None
    rounding: TaxRounding = Field(default_factory=lambda: TaxRounding())


class TaxRounding(_Strict):
    """What to do when Xero's per-line tax rounding would not reproduce Autotask's tax to the cent."""

    # tax_amount: send Autotask's tax on the lines as TaxAmount; rounding_line: the lines keep Xero's own tax and
    # one line of no amount per TaxType carries the difference as its TaxAmount.
    strategy: Literal["tax_amount", "rounding_line"] = "tax_amount"
    account_code: str | None = None
    # No longer used: the rounding line takes the TaxType whose tax it corrects. Kept so older files load.
    tax_type: str = "NONE"
    description: str = "Rounding"

    @field_validator("account_code", mode="before")
    @classmethod
    def _code_is_text(cls, code):
        return str(code) if isinstance(code, int) else code

    @model_validator(mode="after")
    def _line_needs_an_account(self):
        if self.strategy == "rounding_line" and not self.account_code:
            raise ValueError("strategy rounding_line needs account_code: the Xero account the rounding line is "
                             "posted to, for example \"860\"")
        return self


TaxRules.model_rebuild()


class TrackingRule(_Strict):
    """One Xero tracking category, filled from an Autotask field through a table of options."""

    category: str = Field(min_length=1)
    source: str
    # Autotask value (or picklist label) -> Xero option name; "*" is the option for any other value.
    options: dict[str, str] = Field(default_factory=dict)

    @field_validator("options", mode="before")
    @classmethod
    def _keys_are_text(cls, options):
        # Autotask ids written as YAML numbers must match the text form of the value.
        if isinstance(options, dict):
            return {str(key): str(value) if isinstance(value, int) else value for key, value in options.items()}
        return options

    @field_validator("source")
    @classmethod
    def _known_source(cls, source):
        if not _TRACKING_SOURCE.match(source):
            raise ValueError(f"unknown source '{source}'; use one of " + ", ".join(TRACKING_SOURCES))
        return source


class BrandingRules(_Strict):
    """Autotask invoice template (invoiceEditorTemplateID) -> Xero branding theme name."""

    by_template_id: dict[int, str] = Field(default_factory=dict)
    by_template_name: dict[str, str] = Field(default_factory=dict)
    # Theme for templates no rule names; null with rules present sets such invoices aside.
    default: str | None = None


class DaysAfterInvoice(_Strict):
    days_after_invoice: int = Field(ge=0)


class DayOfFollowingMonth(_Strict):
    day_of_following_month: int = Field(ge=1, le=31)


# "autotask": the invoice's dueDate; "payment_term": the invoice date plus the payment term's days;
# "invoice_date": the invoice date plus due_days; "xero_contact": leave DueDate out so Xero applies
# the payment terms on the contact card.
DueDateRule = Union[
    Literal["autotask", "payment_term", "invoice_date", "xero_contact"], DaysAfterInvoice, DayOfFollowingMonth]


class LineRules(_Strict):
    # item: one Xero line per billing item; billing_code: one per billing code (and tax type, account, tracking).
    group_by: Literal["item", "billing_code"] = "item"
    # Template over BillingItem fields; null keeps "itemName" and "description" on two lines.
    description: str | None = None

    @field_validator("description")
    @classmethod
    def _line_fields(cls, template):
        if template is None:
            return template
        unknown = sorted(set(_PLACEHOLDER.findall(template)) - LINE_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use one of "
                             + ", ".join("{" + f + "}" for f in sorted(LINE_FIELDS)))
        return template


class LinePresentation(_Strict):
    """How the Xero lines of an invoice are laid out beyond `lines.group_by` (the `line_presentation:` section)."""

    # item / billing_code: as lines.group_by says; summary: one line per TaxType and account for the whole
    # invoice (quantity 1, summed amounts), with summary_description as its text.
    mode: Literal["as_grouped", "summary"] = "as_grouped"
    summary_description: str = Field(default="Services for {invoiceNumber}", min_length=1, max_length=1000)
    # Labour lines (billing items with a timeEntryID) get their time entries' date, resource, hours and
    # summary notes appended to the description, cut to Xero's 4,000 characters with a "…".
    time_entries: bool = False

    @field_validator("summary_description")
    @classmethod
    def _summary_fields(cls, template):
        unknown = sorted(set(_PLACEHOLDER.findall(template)) - REFERENCE_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use one of "
                             + ", ".join("{" + f + "}" for f in sorted(REFERENCE_FIELDS)))
        return template


class NoSyncUdf(_Strict):
    """A company user-defined field whose value marks the company "do not sync"."""

    name: str = Field(min_length=1)
    # Compared without regard to case or surrounding spaces.
    values: list[str] = Field(min_length=1)

    @field_validator("values", mode="before")
    @classmethod
    def _values_are_text(cls, values):
        return [str(v) for v in values] if isinstance(values, list) else values


class InvoiceFilters(_Strict):
    """Invoices deliberately not sent (the `filters:` section): each is reported as skipped, with its rule."""

    # Skip invoices whose total (in the invoice's own currency; a credit's made positive) is under this.
    minimum_total: Decimal | None = Field(default=None, ge=0)
    # Skip the invoices of companies whose UDF holds one of these values.
    no_sync_udf: NoSyncUdf | None = None
    # Skip the invoices of companies with one of these classifications (picklist label or id).
    no_sync_classifications: list[str] = Field(default_factory=list)

    @field_validator("minimum_total", mode="before")
    @classmethod
    def _exact_decimal(cls, value):
        # YAML reads 5.10 as a float; its text is the amount the person wrote, never float arithmetic.
        if isinstance(value, float):
            return str(value)
        if isinstance(value, str):
            try:
                Decimal(value)
            except InvalidOperation:
                raise ValueError(f"{value!r} is not an amount; write it like 5.00") from None
        return value

    @field_validator("no_sync_classifications", mode="before")
    @classmethod
    def _labels_are_text(cls, values):
        return [str(v) for v in values] if isinstance(values, list) else values


ContactMatch = Literal["account_number", "name"]


class ContactRules(_Strict):
    """How Autotask companies find their Xero contacts (the `contacts:` section)."""

    # After the ContactNumber (the Autotask company id, always tried first), in this order: account_number
    # (Companies.companyNumber = Xero AccountNumber), name (the exact name, as Xero compares names).
    # Only a contact with no ContactNumber (or the same one) is adopted; every adoption is reported.
    match: list[ContactMatch] = Field(default_factory=lambda: ["name"])
    # A company UDF naming the billing contact (by full name, e-mail or Contacts id): the Xero contact's
    # person and e-mail come from it instead of the primary contact.
    billing_contact_udf: str | None = None

    @field_validator("match")
    @classmethod
    def _once_each(cls, match):
        if len(set(match)) != len(match):
            raise ValueError("each way of matching is listed once")
        return match


# ---- bills and purchase orders (the `bills:` section) ---------------------------------------------
# Fields of an Autotask purchase order that the Xero purchase order number template may use.
PURCHASE_ORDER_FIELDS = frozenset({"id", "purchaseOrderNumber", "externalPONumber", "vendorID"})
PurchaseOrderStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED"]
# Autotask's purchase order status labels -> the Xero status kept in step. A cancelled purchase order is
# not mapped: it is always taken out of Xero (deleted while not billed).
DEFAULT_PURCHASE_ORDER_STATUS: dict[str, str] = {
    "New": "DRAFT", "Submitted": "AUTHORISED", "Received Partial": "AUTHORISED", "Received Full": "AUTHORISED",
}
CANCELLED_LABELS = frozenset({"cancelled", "canceled"})


def _text_codes(rules):
    # YAML reads `300` as an int; Xero account codes (and TaxTypes) are text.
    if isinstance(rules, dict):
        return {key: str(code) if isinstance(code, int) else code for key, code in rules.items()}
    return rules


class PurchaseAccountRules(_Strict):
    """Which Xero account a purchased item is posted to; the first rule that matches wins, in this order."""

    by_product_id: dict[int, str] = Field(default_factory=dict)
    # The item's product by name or sku.
    by_product_name: dict[str, str] = Field(default_factory=dict)
    # The product's billing code (productBillingCodeID: its material cost code, the cost category).
    by_billing_code_id: dict[int, str] = Field(default_factory=dict)
    default: str | None = None
    # True: a product no rule names sets its bill (or purchase order) aside instead of using `default`.
    refuse_unmapped: bool = False

    @field_validator("by_product_id", "by_product_name", "by_billing_code_id", mode="before")
    @classmethod
    def _codes_are_text(cls, rules):
        return _text_codes(rules)

    @field_validator("default", mode="before")
    @classmethod
    def _default_is_text(cls, code):
        return str(code) if isinstance(code, int) else code


class PurchaseTaxRules(_Strict):
    """Which Xero TaxType (an INPUT, purchases-side type) a purchased item gets, checked in this order."""

    # Every line from a vendor company marked isTaxExempt in Autotask.
    tax_exempt: str | None = None
    by_product_id: dict[int, str] = Field(default_factory=dict)
    by_product_name: dict[str, str] = Field(default_factory=dict)
    # The purchase order's tax region (PurchaseOrders.taxRegionID, else the vendor's), by name.
    by_region: dict[str, str] = Field(default_factory=dict)
    # Lines no rule covers; null sets them aside.
    default: str | None = None


class FreightRule(_Strict):
    """The purchase order's freight, sent as a line of its own."""

    # null: bills.accounts.default.
    account_code: str | None = None
    # null: the purchase order's TaxType from bills.tax (tax_exempt, by_region, default).
    tax_type: str | None = None
    description: str = Field(default="Freight", min_length=1, max_length=200)

    @field_validator("account_code", mode="before")
    @classmethod
    def _code_is_text(cls, code):
        return str(code) if isinstance(code, int) else code


class DescriptionRule(_Strict):
    """A purchase order item with no product: its memo containing `contains` posts to `account_code`."""

    contains: str = Field(min_length=1)
    account_code: str

    @field_validator("account_code", mode="before")
    @classmethod
    def _code_is_text(cls, code):
        return str(code) if isinstance(code, int) else code


class BillLineRules(_Strict):
    # Checked in order, case-insensitively, against the memo of an item that has no product; the first
    # that matches wins. An item no rule matches sets its bill (or purchase order) aside.
    description_rules: list[DescriptionRule] = Field(default_factory=list)


class DaysAfterReceive(_Strict):
    days_after_receive: int = Field(ge=0)


# "payment_term": the receive date plus the purchase order's Autotask payment term (paymentDueInDays);
# "xero_contact": no DueDate, Xero applies the bill terms on the supplier's contact card.
BillDueDateRule = Union[Literal["payment_term", "xero_contact"], DaysAfterReceive, DayOfFollowingMonth]


class BillMapping(_Strict):
    """Autotask purchasing into Xero: bills from receivings, or purchase orders kept in step."""

    # bill: one ACCPAY bill per vendor invoice number of the receivings; purchase_order: a Xero purchase order.
    target: Literal["bill", "purchase_order"] = "bill"
    # Status of new bills (and of purchase orders whose Autotask status purchase_order_status does not name).
    status: InvoiceStatus = "DRAFT"
    # Autotask purchase order status (picklist label or id) -> Xero purchase order status. Merged over the
    # defaults, so naming one status keeps the others.
    purchase_order_status: dict[str, PurchaseOrderStatus] = Field(
        default_factory=lambda: dict(DEFAULT_PURCHASE_ORDER_STATUS))
    # Template for Xero's PurchaseOrderNumber (unique in Xero).
    purchase_order_number: str = "{purchaseOrderNumber}"
    accounts: PurchaseAccountRules = Field(default_factory=PurchaseAccountRules)
    tax: PurchaseTaxRules = Field(default_factory=PurchaseTaxRules)
    freight: FreightRule = Field(default_factory=FreightRule)
    lines: BillLineRules = Field(default_factory=BillLineRules)
    due_date: BillDueDateRule = "payment_term"

    @field_validator("purchase_order_status", mode="before")
    @classmethod
    def _over_the_defaults(cls, statuses):
        if not isinstance(statuses, dict):
            return statuses
        given = {str(key): value for key, value in statuses.items()}
        cancelled = [key for key in given if key.strip().casefold() in CANCELLED_LABELS]
        if cancelled:
            raise ValueError(f"'{cancelled[0]}' cannot be mapped: a cancelled Autotask purchase order is always "
                             "deleted from Xero (unless it is billed there); remove the key")
        return {**DEFAULT_PURCHASE_ORDER_STATUS, **given}

    @field_validator("purchase_order_number")
    @classmethod
    def _number_template(cls, template):
        used = set(_PLACEHOLDER.findall(template))
        unknown = sorted(used - PURCHASE_ORDER_FIELDS)
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use one of "
                             + ", ".join("{" + f + "}" for f in sorted(PURCHASE_ORDER_FIELDS)))
        if not used & {"id", "purchaseOrderNumber"}:
            raise ValueError("a template must contain {id} or {purchaseOrderNumber} so that every purchase order "
                             "gets its own number, for example \"AT-{purchaseOrderNumber}\"")
        return template


class ItemRule(_Strict):
    """One `items.rules` entry: exactly one matcher, and the Xero item code the matching lines get."""

    # The BillingItems.billingItemType picklist label: Labor, Project Cost, Ticket Cost, Expense, Subscription, ...
    billing_item_type: str | None = None
    # The billing item's itemName or description, whole, without regard to case.
    item_name: str | None = None
    # The sku of the line's product (Products.sku, through BillingItems.productID).
    product_sku: str | None = None
    # The line's billing code's externalNumber.
    external_number: str | None = None
    item_code: str = Field(min_length=1, max_length=30)

    @field_validator("billing_item_type", "item_name", "product_sku", "external_number", "item_code", mode="before")
    @classmethod
    def _text(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_matcher(self):
        given = [name for name in ITEM_MATCHERS if getattr(self, name) not in (None, "")]
        if len(given) != 1:
            raise ValueError("each rule names exactly one of " + ", ".join(ITEM_MATCHERS) + " and its item_code")
        return self


ITEM_MATCHERS = ("billing_item_type", "item_name", "product_sku", "external_number")


class ItemRules(_Strict):
    """Xero items (products and services) on invoice lines: the first rule that matches a line wins."""

    rules: list[ItemRule] = Field(default_factory=list)
    # True: an invoice with a line no rule matches is set aside; false: such lines go without an ItemCode.
    refuse_unmatched: bool = False
    # True: items the rules name that Xero lacks are created (once, before the invoices are sent).
    create_missing: bool = False


class WriteBack(_Strict):
    """What the invoices flow writes back to each Autotask invoice once it is in Xero (one PATCH each, once)."""

    # Xero's number into the Autotask invoice's invoiceNumber; only with invoice_number: xero.
    invoice_number: bool = False
    # The day the invoice reached Xero into its webServiceDate (Autotask's "processed by an external app").
    web_service_date: bool = False

    @property
    def enabled(self) -> bool:
        return self.invoice_number or self.web_service_date


class InvoiceMapping(_Strict):
    accounts: AccountRules = Field(default_factory=AccountRules)
    tax: TaxRules = Field(default_factory=TaxRules)
    # "autotask": Autotask's invoiceNumber; "xero": Xero numbers them; or a template such as "INV:{id}".
    invoice_number: str = "autotask"
    status: ImportStatus = "DRAFT"
    # Autotask company id (or exact company name) -> status for that customer's invoices.
    status_overrides: dict[str, ImportStatus] = Field(default_factory=dict)
    line_amount_types: LineAmountTypes = "Exclusive"
    due_date: DueDateRule = "autotask"
    due_days: int = Field(default=0, ge=0)
    due_date_overrides: dict[str, DueDateRule] = Field(default_factory=dict)
    # Template for Xero's Reference; left empty when a field it uses is empty in Autotask.
    reference: str | None = "PO {orderNumber}"
    tracking: list[TrackingRule] = Field(default_factory=list, max_length=2)
    branding_themes: BrandingRules = Field(default_factory=BrandingRules)
    lines: LineRules = Field(default_factory=LineRules)
    # xero: Xero applies its daily rate; autotask: send the rate from Autotask's Currencies.exchangeRate.
    currency_rate: Literal["autotask", "xero"] = "xero"
    # Autotask purchase orders and their receivings (see BillMapping).
    bills: BillMapping = Field(default_factory=BillMapping)
    # Xero items on invoice lines (see ItemRules).
    items: ItemRules = Field(default_factory=ItemRules)
    # Invoices deliberately not sent, each reported with its rule (see InvoiceFilters).
    filters: InvoiceFilters = Field(default_factory=InvoiceFilters)
    # How companies are matched to existing Xero contacts, and whose person and e-mail they carry.
    contacts: ContactRules = Field(default_factory=ContactRules)
    # Summary lines and time entries on labour lines (see LinePresentation).
    line_presentation: LinePresentation = Field(default_factory=LinePresentation)


    # Written back to Autotask after the invoices reach Xero (see WriteBack).
    write_back: WriteBack = Field(default_factory=WriteBack)

    @field_validator("status_overrides", "due_date_overrides", mode="before")
    @classmethod
    def _company_keys_are_text(cls, overrides):
        if isinstance(overrides, dict):
            return {str(key): value for key, value in overrides.items()}
        return overrides

    @field_validator("invoice_number", "reference")
    @classmethod
    def _templates_use_known_fields(cls, template, info):
        if template is None or template in ("autotask", "xero"):
            return template
        allowed = REFERENCE_FIELDS if info.field_name == "reference" else TEMPLATE_FIELDS
        unknown = sorted(set(_PLACEHOLDER.findall(template)) - allowed)
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}}; use one of "
                + ", ".join("{" + f + "}" for f in sorted(allowed))
            )
        return template

    @field_validator("tracking")
    @classmethod
    def _distinct_categories(cls, rules):
        names = [rule.category.casefold() for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError("the same tracking category is listed twice; Xero takes each category once per line")
        return rules

    @model_validator(mode="after")
    def _written_back_numbers_are_xero_numbers(self):
        if self.write_back.invoice_number and self.invoice_number != "xero":
            raise ValueError("write_back.invoice_number writes Xero's number into Autotask, which only differs from "
                             "Autotask's own with invoice_number: xero; set invoice_number: xero or turn it off")
        return self

    @model_validator(mode="after")
    def _template_numbers_are_unique(self):
        # A fixed invoice number would collide on the second invoice, so a template must include the id or number.
        if self.invoice_number not in ("autotask", "xero"):
            used = set(_PLACEHOLDER.findall(self.invoice_number))
            if not used & {"id", "invoiceNumber"}:
                raise ValueError(
                    "invoice_number: a template must contain {id} or {invoiceNumber} so that every invoice "
                    "gets its own number, for example \"INV:{id}\""
                )
        return self


def load_mapping(path: str | Path) -> InvoiceMapping:
    """Read and check a mapping file. Raises MappingError naming the file, the key and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MappingError(f"{path}: cannot read the mapping file ({error.strerror}). Fix: check the path.") from error
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = ""
        mark = getattr(error, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise MappingError(
            f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}. "
            "Fix: correct the indentation or quoting there."
        ) from error
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise MappingError(f"{path}: the file must be a YAML mapping of keys (accounts:, tax:, ...), not a list or text.")
    try:
        return InvoiceMapping.model_validate(content)
    except ValidationError as error:
        messages = list(dict.fromkeys(_explain(e) for e in error.errors()))
        raise MappingError(f"{path}: " + "; ".join(messages)) from error


_DUE_DATE_BRANCHES = ("DaysAfterInvoice", "DayOfFollowingMonth", "DaysAfterReceive")


def _explain(error: dict) -> str:
    loc = [str(part) for part in error["loc"]]
    # A due-date rule is one of several shapes; pydantic reports each shape's failure, the reader needs one.
    branch = [part for part in loc if part.startswith("literal[") or part in _DUE_DATE_BRANCHES]
    if branch:
        key = ".".join(loc[: loc.index(branch[0])])
        if key.startswith("bills."):
            return (f"key '{key}' is not a bill due-date rule. Fix: use payment_term, xero_contact, "
                    "{days_after_receive: N} or {day_of_following_month: D} (D from 1 to 31)")
        return (f"key '{key}' is not a due-date rule. Fix: use autotask, payment_term, invoice_date, xero_contact, "
                "{days_after_invoice: N} or {day_of_following_month: D} (D from 1 to 31)")
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"key '{key}' is not a mapping setting. Fix: remove it or correct its spelling (see mappings/example.yaml)"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"key '{key}' is {error.get('input')!r}. Fix: use one of {allowed}"
    if kind == "too_long" and key == "tracking":
        return "key 'tracking': Xero allows at most two tracking categories. Fix: keep two entries"
    if kind == "missing":
        return (f"key '{key}' is missing. Fix: add it (see the comments for '{key.split('.')[0]}' in "
                "mappings/example.yaml)")
    if kind in ("int_parsing", "int_type"):
        return f"key '{key}': {error.get('input')!r} is not a whole number. Fix: use the numeric Autotask id there"
    message = error["msg"].removeprefix("Value error, ")
    return f"key '{key}': {message}. Fix: see the comments for '{key.split('.')[0]}' in mappings/example.yaml"

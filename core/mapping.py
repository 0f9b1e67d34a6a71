"""The tenant's mapping file: how Autotask billing codes and tax categories become Xero accounts and TaxTypes.

The file is YAML, validated with pydantic. Every error names the file, the key and the fix, because the
person reading it is an MSP's bookkeeper, not the engineer who wrote this module.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

InvoiceStatus = Literal["DRAFT", "SUBMITTED", "AUTHORISED"]
LineAmountTypes = Literal["Exclusive", "Inclusive", "NoTax"]
# "autotask": the invoice's dueDate; "invoice_date": the invoice date plus due_days;
# "xero_contact": leave DueDate out so Xero applies the payment terms on the contact card.
DueDateRule = Literal["autotask", "invoice_date", "xero_contact"]

# Fields of an Autotask invoice that templates (invoice number, reference) may use.
TEMPLATE_FIELDS = frozenset({"id", "invoiceNumber", "orderNumber", "companyID", "comments", "taxRegionName"})
_PLACEHOLDER = re.compile(r"{([^{}]*)}")


class MappingError(ValueError):
    """The mapping file cannot be used; the message says where and how to fix it."""


class _Strict(BaseModel):
    # A misspelt key must fail loudly: a silently ignored "refuse_unmaped" would post to the default account.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountRules(_Strict):
    """Which Xero account code a billing item is posted to; the first rule that matches wins, in this order."""

    by_billing_code_id: dict[int, str] = Field(default_factory=dict)
    by_billing_code_name: dict[str, str] = Field(default_factory=dict)
    # The billing code's generalLedgerAccount (an Autotask picklist value, per tenant).
    by_gl_account: dict[int, str] = Field(default_factory=dict)
    by_external_number: dict[str, str] = Field(default_factory=dict)
    # billingItemType picklist value (per tenant), for example 1 for labour.
    by_billing_item_type: dict[int, str] = Field(default_factory=dict)
    default: str | None = None
    # True: a billing code that no rule names sets its invoice aside instead of using `default`.
    refuse_unmapped: bool = False

    @field_validator(
        "by_billing_code_id", "by_billing_code_name", "by_gl_account", "by_external_number",
        "by_billing_item_type", mode="before",
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
    # Used when a line has no tax category, or one that no rule names; leave empty to set such invoices aside.
    default: str | None = None


class InvoiceMapping(_Strict):
    accounts: AccountRules = Field(default_factory=AccountRules)
    tax: TaxRules = Field(default_factory=TaxRules)
    # "autotask": Autotask's invoiceNumber; "xero": Xero numbers them; or a template such as "INV:{id}".
    invoice_number: str = "autotask"
    status: InvoiceStatus = "DRAFT"
    line_amount_types: LineAmountTypes = "Exclusive"
    due_date: DueDateRule = "autotask"
    due_days: int = Field(default=0, ge=0)
    # Template for Xero's Reference; left empty when a field it uses is empty in Autotask.
    reference: str | None = "PO {orderNumber}"

    @field_validator("invoice_number", "reference")
    @classmethod
    def _templates_use_known_fields(cls, template):
        if template is None or template in ("autotask", "xero"):
            return template
        unknown = sorted(set(_PLACEHOLDER.findall(template)) - TEMPLATE_FIELDS)
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}}; use one of "
                + ", ".join("{" + f + "}" for f in sorted(TEMPLATE_FIELDS))
            )
        return template

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
        raise MappingError(f"{path}: " + "; ".join(_explain(e) for e in error.errors())) from error


def _explain(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"key '{key}' is not a mapping setting. Fix: remove it or correct its spelling (see mappings/example.yaml)"
    if kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        return f"key '{key}' is {error.get('input')!r}. Fix: use one of {allowed}"
    if kind in ("int_parsing", "int_type"):
        return f"key '{key}': {error.get('input')!r} is not a whole number. Fix: use the numeric Autotask id there"
    message = error["msg"].removeprefix("Value error, ")
    return f"key '{key}': {message}. Fix: see the comments for '{key.split('.')[0]}' in mappings/example.yaml"

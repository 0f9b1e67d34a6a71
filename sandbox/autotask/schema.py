"""Entity field metadata, read from the official Autotask swagger so the sandbox cannot drift from it.

Only what the swagger does not say (queryability, read-only rules, picklists) is added here, from
Autotask's entity documentation and this tenant's catalog.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

from . import catalog

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "autotask" / "v1.json"

ENTITY_MODELS: dict[str, str] = {
    "Invoices": "InvoiceModel",
    "BillingItems": "BillingItemModel",
    "Companies": "CompanyModel",
    "Contacts": "ContactModel",
    "BillingCodes": "BillingCodeModel",
    "TaxCategories": "TaxCategoryModel",
    "Taxes": "TaxModel",
    "TaxRegions": "TaxRegionModel",
    "Currencies": "CurrencyModel",
    "PaymentTerms": "PaymentTermModel",
    "InvoiceTemplates": "InvoiceTemplateModel",
    "PurchaseOrders": "PurchaseOrderModel",
    "PurchaseOrderItems": "PurchaseOrderItemModel",
    "PurchaseOrderItemReceiving": "PurchaseOrderItemReceivingModel",
    "Products": "ProductModel",
    "TimeEntries": "TimeEntryModel",
    "Resources": "ResourceModel",
}

# Autotask's entity docs: these exist on the model but "cannot be queried".
NOT_QUERYABLE: dict[str, set[str]] = {
    "Invoices": {"dueDate", "taxRegionID"},
    "BillingItems": {"lineItemFullDescription", "lineItemGroupDescription"},
}

# Fields an API user may change with PATCH; everything else on these entities is read-only.
WRITABLE: dict[str, set[str]] = {
    "Invoices": {"invoiceNumber", "paidDate", "webServiceDate"},
    "BillingItems": {"webServiceDate"},
}

# Date-only fields: Autotask keeps the date and sets the time to midnight.
DATE_ONLY: dict[str, set[str]] = {"Invoices": {"paidDate"}}

_PAYMENT_TERM_LABELS = {k: v[0] for k, v in catalog.PAYMENT_TERMS.items()}
PICKLISTS: dict[str, dict[str, dict[int, str]]] = {
    "Invoices": {"paymentTerm": _PAYMENT_TERM_LABELS},
    "BillingItems": {"billingItemType": catalog.BILLING_ITEM_TYPES},
    "BillingCodes": {
        "generalLedgerAccount": catalog.GENERAL_LEDGER_ACCOUNTS,
        "department": catalog.DEPARTMENTS,
    },
    "Companies": {"companyType": catalog.COMPANY_TYPES, "classification": catalog.COMPANY_CLASSIFICATIONS},
    "PurchaseOrders": {"status": catalog.PURCHASE_ORDER_STATUSES, "paymentTerm": _PAYMENT_TERM_LABELS},
}

# Swagger fields that are plumbing of the .NET serializer, not data.
_IGNORED = {"soapParentPropertyId"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    data_type: str  # integer | long | double | boolean | string | datetime | udf
    is_queryable: bool = True
    is_read_only: bool = False
    picklist: dict[int, str] = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "dataType": self.data_type,
            "length": 0,
            "isRequired": self.name == "id",
            "isReadOnly": self.is_read_only,
            "isQueryable": self.is_queryable,
            "isReference": self.name.endswith("ID") and self.name != "id",
            "referenceEntityType": "",
            "isPickList": bool(self.picklist),
            "picklistValues": [
                {"value": str(k), "label": v, "isDefaultValue": False, "sortOrder": i,
                 "parentValue": "", "isActive": True, "isSystem": True}
                for i, (k, v) in enumerate(self.picklist.items())
            ] if self.picklist else None,
            "picklistParentValueField": "",
            "isSupportedWebhookField": False,
        }


@functools.cache
def swagger_definitions() -> dict:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))["definitions"]


def _data_type(prop: dict) -> str:
    kind, fmt = prop.get("type"), prop.get("format")
    if kind == "integer":
        return "long" if fmt == "int64" else "integer"
    if kind == "number":
        return "double"
    if kind == "boolean":
        return "boolean"
    if kind == "array":
        return "udf"
    if fmt == "date-time":
        return "datetime"
    return "string"


@functools.cache
def entity_fields(entity: str) -> dict[str, FieldSpec]:
    """Field name -> spec for one entity, in swagger order."""
    props = swagger_definitions()[ENTITY_MODELS[entity]]["properties"]
    writable = WRITABLE.get(entity)
    specs = {}
    for name, prop in props.items():
        if name in _IGNORED:
            continue
        specs[name] = FieldSpec(
            name=name,
            data_type=_data_type(prop),
            is_queryable=name not in NOT_QUERYABLE.get(entity, set()) and name != "userDefinedFields",
            is_read_only=name == "id" or (writable is not None and name not in writable),
            picklist=PICKLISTS.get(entity, {}).get(name, {}),
        )
    return specs


def swagger_field_names(entity: str) -> set[str]:
    return set(entity_fields(entity))


def has_udfs(entity: str) -> bool:
    return "userDefinedFields" in entity_fields(entity)

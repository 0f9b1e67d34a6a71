"""Xero items (products and services) on invoice lines: the pure part of the mapping's `items:` section.

Each planned line is matched against `items.rules` in order (billing item type, billing item name, product
sku, the billing code's external number); the first rule that matches gives the line its ItemCode. A line
no rule matches goes without one, or, with `items.refuse_unmatched`, sets its invoice aside. For
`items.create_missing`, the same pass says which items the lines need (`ItemDraft`: named after the
billing code or item, with the line's account and tax as its sales details); `tasks/items.py` creates
those Xero lacks. No HTTP here.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd

from core.documents import DocumentPlan, SetAside
from core.invoices import _billing_code_for, _Reference, _text
from core.mapping import ItemRule, ItemRules

ITEM_NAME_LIMIT = 50
ITEM_KINDS = frozenset({"invoice", "credit_note"})
# The ledger kind under which each item this sync created (or found) in Xero is recorded, by code.
LEDGER_KIND = "item"


@dataclass(frozen=True)
class ItemDraft:
    """A Xero item to create, in plain values (clients.xero.sdk_item makes the SDK model)."""

    code: str
    name: str
    account_code: str | None = None      # SalesDetails.AccountCode
    tax_type: str | None = None          # SalesDetails.TaxType
    unit_price: Decimal | None = None    # SalesDetails.UnitPrice; None leaves it to each line
    description: str | None = None


@dataclass(frozen=True)
class XeroItem:
    id: str
    code: str
    name: str | None = None


@dataclass(frozen=True)
class ItemWritten:
    """One item's answer to a batch create, with the draft it answers."""

    ok: bool
    item: XeroItem | None
    errors: list[str]
    draft: ItemDraft | None = None


@dataclass
class ItemPlan:
    plans: list[DocumentPlan]
    # The items the plans' lines name, by code without regard to case: what create_missing would create.
    drafts: dict[str, ItemDraft] = field(default_factory=dict)


def code_key(code: str) -> str:
    """Xero compares item codes without regard to case: one key per item."""
    return code.strip().casefold()


def _same(a, b: str | None) -> bool:
    return a is not None and b is not None and str(a).strip().casefold() == str(b).strip().casefold()


def _matches(rule: ItemRule, line: dict, code: dict | None, reference: _Reference) -> bool:
    if rule.billing_item_type is not None:
        label = reference.label("BillingItems.billingItemType", line.get("billingItemType"))
        return _same(label, rule.billing_item_type)
    if rule.item_name is not None:
        return _same(_text(line.get("itemName")), rule.item_name) or _same(_text(line.get("description")), rule.item_name)
    if rule.product_sku is not None:
        product = reference.product_for(line) or {}
        return _same(_text(product.get("sku")), rule.product_sku)
    return _same(_text((code or {}).get("externalNumber")), rule.external_number)


def item_code_for(line: dict, rules: ItemRules, reference: _Reference) -> str | None:
    """The ItemCode of the first rule matching this billing item, or None."""
    code = _billing_code_for(line, reference)
    return next((rule.item_code for rule in rules.rules if _matches(rule, line, code, reference)), None)


def _item_name(line: dict, code: dict | None, item_code: str) -> str:
    name = _text((code or {}).get("name")) or _text(line.get("itemName")) or item_code
    return name[:ITEM_NAME_LIMIT]


def _with_item_hash(plan: DocumentPlan, lines) -> str:
    # Item codes join the content hash only when a line has one, so documents without items keep their hash.
    codes = [line.item_code or "" for line in lines]
    if not any(codes) or not plan.content_hash:
        return plan.content_hash
    return hashlib.sha256((plan.content_hash + "|items:" + ",".join(codes)).encode("utf-8")).hexdigest()


def assign_item_codes(plans: list[DocumentPlan], lines: pd.DataFrame, reference_data: dict[str, list[dict]],
                      rules: ItemRules) -> ItemPlan:
    """Give each planned invoice line its ItemCode, by the billing item it was made from (the first one, when
    lines are grouped by billing code). Plans already set aside pass unchanged."""
    if not rules.rules and not rules.refuse_unmatched:
        return ItemPlan(list(plans))
    reference = _Reference(reference_data)
    by_id = {str(r["id"]): r for r in lines.to_dict("records")} if len(lines) else {}
    out: list[DocumentPlan] = []
    drafts: dict[str, ItemDraft] = {}
    for plan in plans:
        if not plan.sendable or plan.kind not in ITEM_KINDS:
            out.append(plan)
            continue
        new_lines, unmatched, wanted = [], [], {}
        for line in plan.lines:
            item = by_id.get(line.source_line_id or "")
            if item is None:  # a rounding line: no billing item behind it
                new_lines.append(line)
                continue
            item_code = item_code_for(item, rules, reference)
            if item_code is None:
                unmatched.append(item)
                new_lines.append(line)
                continue
            new_lines.append(dataclasses.replace(line, item_code=item_code))
            code = _billing_code_for(item, reference)
            wanted.setdefault(code_key(item_code), ItemDraft(
                code=item_code, name=_item_name(item, code, item_code), account_code=line.account_code,
                tax_type=line.tax_type, description=_text(item.get("itemName"))))
        if unmatched and rules.refuse_unmatched:
            out.append(dataclasses.replace(plan, set_aside=_unmatched(unmatched, reference)))
            continue
        for key, draft in wanted.items():
            drafts.setdefault(key, draft)
        lines_tuple = tuple(new_lines)
        out.append(dataclasses.replace(plan, lines=lines_tuple, content_hash=_with_item_hash(plan, lines_tuple)))
    return ItemPlan(out, drafts)


def _unmatched(items: list[dict], reference: _Reference) -> SetAside:
    described = []
    for item in items:
        label = reference.label("BillingItems.billingItemType", item.get("billingItemType"))
        name = _text(item.get("itemName"))
        described.append(f"{item['id']} (type {label or item.get('billingItemType')!s}"
                         + (f", '{name}'" if name else "") + ")")
    noun = "billing item" if len(items) == 1 else "billing items"
    return SetAside(
        f"{noun} {', '.join(described)} match no items.rules entry, and items.refuse_unmatched is true",
        "add an items.rules entry (billing_item_type, item_name, product_sku or external_number, with its "
        "item_code) that matches them, or set items.refuse_unmatched: false to send such lines without an item")


def codes_needed(plans: list[DocumentPlan]) -> dict[str, str]:
    """The item codes the sendable plans' lines name: key (without regard to case) -> code as written."""
    needed: dict[str, str] = {}
    for plan in plans:
        if plan.sendable:
            for line in plan.lines:
                if line.item_code:
                    needed.setdefault(code_key(line.item_code), line.item_code)
    return needed


def set_aside_needing(plans: list[DocumentPlan], refused: dict[str, str]) -> list[DocumentPlan]:
    """Set aside each sendable plan whose lines name an item Xero refused (refused: code key -> reason)."""
    if not refused:
        return list(plans)
    out = []
    for plan in plans:
        failed = [line.item_code for line in plan.lines
                  if plan.sendable and line.item_code and code_key(line.item_code) in refused]
        if failed:
            code = failed[0]
            plan = dataclasses.replace(plan, set_aside=SetAside(
                f"Xero item '{code}' that its lines need could not be created: {refused[code_key(code)]}",
                f"create item '{code}' in Xero (Business > Products and services), or correct the items.rules "
                "entry that names it, then rerun"))
        out.append(plan)
    return out

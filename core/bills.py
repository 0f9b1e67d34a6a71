"""Autotask purchasing -> Xero bills (ACCPAY) or Xero purchase orders: the pure planning.

Nothing here talks to a network or imports the Xero SDK. Validated frames (core.schemas) and the
mapping file's `bills:` section go in; `DocumentPlan`s (core.documents) come out, one per document,
each either sendable or set aside with the reason (naming the record and field) and the fix. The shell
(`sync_documents`) claims, sends and records them.

Two targets, chosen per tenant (`bills.target`):

* **bill**: one ACCPAY bill per (vendor, vendor invoice number) over the receivings given. Its lines are
  what was received (quantityNowReceiving x the item's unitCost), its InvoiceNumber the vendor's
  invoice number. Xero allows two suppliers the same bill number, so the natural key is the supplier
  and the number (`KeyKind.CONTACT_NUMBER`). A purchase order's freight is one line on exactly one of
  its bills: the bill of its first receiving (the lowest receiving id, the order Autotask recorded
  them in, which a backdated receiving cannot change).
* **purchase_order**: one Xero purchase order per Autotask purchase order, numbered by a template,
  with the ordered quantities, the freight, the delivery date and a status kept in step with
  Autotask's. A cancelled purchase order is a void plan: the shell deletes it in Xero if it is there
  and not billed.

Amounts are Decimal throughout: a line is quantity x unit cost rounded half-up to the cent, with the
unit cost kept to 4 decimal places (sent with unitdp=4), and the tax is what Xero computes per line.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd

from core.documents import ContactRef, DocumentPlan, KeyKind, Line, SetAside, Status, with_hash
from core.frames import RejectedRecord, build_frame, companies_with_rejects
from core.invoices import (
    DESCRIPTION_LIMIT, ELLIPSIS, XeroReference, _add_months, _currency_for, _records, _Reference, _text,
    contact_names, fit_quantity_and_unit, money, xero_line_tax,
)
from core.mapping import CANCELLED_LABELS, BillMapping, DayOfFollowingMonth, DaysAfterReceive, InvoiceMapping
from core.schemas import AutotaskPurchaseOrderItems, AutotaskPurchaseOrderReceivings, AutotaskPurchaseOrders

BILL = "bill"
PURCHASE_ORDER = "purchase_order"
# Autotask's purchase order statuses as a tenant's picklist usually labels them; used only when the
# picklist (entityInformation/fields) was not read.
AUTOTASK_PO_STATUSES = {1: "New", 2: "Submitted", 3: "Received Partial", 4: "Received Full", 5: "Cancelled"}
NUMBER_LIMIT = 255  # Xero's InvoiceNumber and PurchaseOrderNumber
_PLACEHOLDER = re.compile(r"{([^{}]*)}")

RETRY = "it is retried on the next run"


# ---- frames ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PurchasingRejects:
    """Records kept out of their frames, with their problems: the plans they belong to are set aside."""

    purchase_orders: tuple[RejectedRecord, ...] = ()
    items: tuple[RejectedRecord, ...] = ()
    receivings: tuple[RejectedRecord, ...] = ()
    # Receivings read only to place each purchase order's freight (see plan_bills).
    other_receivings: tuple[RejectedRecord, ...] = ()
    vendors: tuple[RejectedRecord, ...] = ()

    def __bool__(self) -> bool:
        return any((self.purchase_orders, self.items, self.receivings, self.other_receivings, self.vendors))


@dataclass
class PurchasingFrames:
    """Validated frames of one read of Autotask purchasing, and what was rejected from them."""

    purchase_orders: pd.DataFrame
    items: pd.DataFrame
    receivings: pd.DataFrame
    other_receivings: pd.DataFrame
    vendors: pd.DataFrame
    rejected: PurchasingRejects = field(default_factory=PurchasingRejects)


def purchase_orders_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskPurchaseOrders)


def items_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskPurchaseOrderItems)


def receivings_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskPurchaseOrderReceivings)


def purchasing_frames(*, purchase_orders: list[dict] = (), items: list[dict] = (), receivings: list[dict] = (),
                      other_receivings: list[dict] = (), vendors: list[dict] = ()) -> PurchasingFrames:
    """Autotask records (dicts) -> validated frames, every malformed record kept aside with its problems."""
    pos, bad_pos = purchase_orders_with_rejects(list(purchase_orders))
    its, bad_items = items_with_rejects(list(items))
    recs, bad_recs = receivings_with_rejects(list(receivings))
    others, bad_others = receivings_with_rejects(list(other_receivings))
    vens, bad_vendors = companies_with_rejects(list(vendors))
    return PurchasingFrames(pos, its, recs, others, vens, PurchasingRejects(
        tuple(bad_pos), tuple(bad_items), tuple(bad_recs), tuple(bad_others), tuple(bad_vendors)))


# ---- small helpers -----------------------------------------------------------------------------
def _int(value) -> int | None:
    """An id from a record that may not have passed validation."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except ArithmeticError:
        return None
    return int(number) if number.is_finite() and number == number.to_integral_value() else None


def _date(value) -> dt.date | None:
    text = _text(value)
    return dt.date.fromisoformat(text[:10]) if text else None


def _shown(value: Decimal) -> str:
    return f"{value.normalize():f}" if value != 0 else "0"


def _cut(body: str, suffix: str = "") -> str:
    room = DESCRIPTION_LIMIT - len(suffix)
    if len(body) > room:
        body = body[: room - len(ELLIPSIS)] + ELLIPSIS
    return body + suffix


def _rules(mapping) -> BillMapping:
    return mapping.bills if isinstance(mapping, InvoiceMapping) else mapping


def purchase_order_url(purchase_order_id: int, autotask_web_url: str | None) -> str | None:
    """The link that opens the purchase order in Autotask (the same ExecuteCommand page as the invoices' link)."""
    if not autotask_web_url:
        return None
    base = autotask_web_url if autotask_web_url.endswith("/") else autotask_web_url + "/"
    return (f"{base}Autotask/AutotaskExtend/ExecuteCommand.aspx?Code=OpenPurchaseOrder"
            f"&PurchaseOrderID={purchase_order_id}")


def bill_source_id(vendor_id: int, vendor_invoice_number: str) -> str:
    """The ledger's id of a bill: the vendor and its invoice number."""
    return f"{vendor_id}:{vendor_invoice_number}"


def receiving_source_id(receiving_id) -> str:
    """The ledger's id of a receiving that cannot be grouped into a bill (no vendor invoice number, or
    no known vendor). Once it can, it is a line of the bill `bill_source_id` names: its Line carries
    source_line_id "receiving:<id>", by which the shell sees that the older id is superseded."""
    return f"receiving:{receiving_id}"


def parse_bill_source_id(source_id: str) -> tuple[str, int | str] | None:
    """("receiving", id) or ("bill", (vendor id, number)) for a bill plan's source_id; None otherwise."""
    head, _, tail = str(source_id).partition(":")
    if head == "receiving":
        receiving = _int(tail)
        return ("receiving", receiving) if receiving is not None else None
    vendor = _int(head)
    if vendor is not None and tail:
        return "bill", (vendor, tail)
    return None


class _Problems:
    """Everything wrong with one document, gathered so a person can fix it all in one go."""

    def __init__(self):
        self._found: list[tuple[str, str]] = []

    def add(self, reason: str, fix: str) -> None:
        if (reason, fix) not in self._found:
            self._found.append((reason, fix))

    def extend(self, other: "_Problems") -> None:
        for reason, fix in other._found:
            self.add(reason, fix)

    def __bool__(self) -> bool:
        return bool(self._found)

    def set_aside(self) -> SetAside | None:
        if not self._found:
            return None
        reasons = list(dict.fromkeys(reason for reason, _ in self._found))
        fixes = list(dict.fromkeys(fix for _, fix in self._found))
        return SetAside("; ".join(reasons), "; ".join(fixes))


class _Purchasing:
    """The frames of one planning call, indexed, with the rejected records beside them."""

    def __init__(self, purchase_orders, items, vendors, reference_data, rejected: PurchasingRejects | None):
        rejected = rejected or PurchasingRejects()
        self.rejected = rejected
        self.reference = _Reference(reference_data or {})
        self.pos = {row["id"]: row for row in _records(purchase_orders)}
        self.items = {row["id"]: row for row in _records(items)}
        vendor_rows = _records(vendors)
        self.vendors = {row["id"]: row for row in vendor_rows}
        self.names = contact_names(vendor_rows)
        self.bad_pos = {_int(r.record.get("id")): r for r in rejected.purchase_orders}
        self.bad_items = {_int(r.record.get("id")): r for r in rejected.items}
        self.bad_vendors = {_int(r.record.get("id")): r for r in rejected.vendors}

    def po_label(self, po: dict) -> str:
        return _text(po.get("purchaseOrderNumber")) or str(po["id"])

    def vendor(self, vendor_id: int | None, what: str, problems: _Problems) -> dict | None:
        vendor = self.vendors.get(vendor_id)
        if vendor is not None:
            return vendor
        if vendor_id in self.bad_vendors:
            problems.add(f"vendor company {vendor_id} ({what}) cannot be read: "
                         + "; ".join(self.bad_vendors[vendor_id].problems),
                         f"correct the company in Autotask; {RETRY}")
        else:
            problems.add(f"vendor company {vendor_id} ({what}) was not read from Autotask",
                         f"check that the Autotask API user can see this company; {RETRY}")
        return None

    def contact(self, vendor: dict) -> ContactRef:
        return ContactRef(number=str(vendor["id"]), name=self.names.get(vendor["id"]) or str(vendor["id"]))

    def product(self, item: dict) -> dict | None:
        return self.reference.products.get(item.get("productID")) if item.get("productID") is not None else None


def _item_text(item: dict, product: dict | None) -> str:
    """The item's product name and its memo (once, when the memo only repeats the name)."""
    name = _text((product or {}).get("name"))
    memo = _text(item.get("memo"))
    parts = [p for p in (name, memo) if p]
    if len(parts) == 2 and parts[1].casefold().startswith(parts[0].casefold()):
        parts = parts[1:]
    return "\n".join(parts) or f"Autotask purchase order item {item['id']}"


def _account_for(item: dict, product: dict | None, rules: BillMapping, xero: XeroReference, what: str,
                 problems: _Problems) -> str | None:
    accounts = rules.accounts
    code = None
    if item.get("productID") is None:
        memo = _text(item.get("memo")) or ""
        code = next((rule.account_code for rule in rules.lines.description_rules
                     if rule.contains.casefold() in memo.casefold()), None)
        if code is None:
            problems.add(f"{what} has no product, and no bills.lines.description_rules entry matches its memo "
                         f"{memo!r}",
                         "add {contains: <words of that memo>, account_code: <Xero account>} to "
                         "bills.lines.description_rules, or give the item a product in Autotask")
            return None
    else:
        product_id = item["productID"]
        product = product or {}
        name, sku = _text(product.get("name")), _text(product.get("sku"))
        billing_code = product.get("productBillingCodeID")
        candidates = [accounts.by_product_id.get(product_id), accounts.by_product_name.get(name or ""),
                      accounts.by_product_name.get(sku or ""), accounts.by_billing_code_id.get(billing_code)]
        code = next((c for c in candidates if c), None)
        if code is None and not accounts.refuse_unmapped:
            code = accounts.default
        if code is None:
            shown = f"product {product_id} '{name}'" if name else f"product {product_id} (not read from Autotask)"
            alternatives = [f"by_product_name '{sku or name}'"] if (sku or name) else []
            if billing_code is not None:
                alternatives.append(f"by_billing_code_id {billing_code}")
            problems.add(f"{what} ({shown}) has no account mapping",
                         f"add bills.accounts.by_product_id {product_id}: <Xero account code>"
                         + (f" (or {', or '.join(alternatives)})" if alternatives else "")
                         + ", or set bills.accounts.default"
                         + (" and refuse_unmapped: false" if accounts.refuse_unmapped else ""))
            return None
    if code not in xero.account_codes:
        problems.add(f"account code '{code}' (for {what}) does not exist or is archived in Xero",
                     f"add account {code} to Xero's chart of accounts, or map the item to an existing account "
                     "under bills.accounts")
    return code


def _tax_for(vendor: dict, item: dict | None, product: dict | None, po: dict, rules: BillMapping,
             purchasing: _Purchasing) -> tuple[str | None, str]:
    """(TaxType or None, the key to set when nothing matched), in the order tax_exempt (the vendor),
    by_product_id, by_product_name, by_region, default."""
    tax = rules.tax
    if vendor.get("isTaxExempt"):
        return tax.tax_exempt, "bills.tax.tax_exempt (the vendor is tax-exempt in Autotask)"
    product = product or {}
    chosen = ((tax.by_product_id.get(item.get("productID")) if item and item.get("productID") is not None else None)
              or tax.by_product_name.get(_text(product.get("name")) or "")
              or tax.by_product_name.get(_text(product.get("sku")) or ""))
    if chosen:
        return chosen, ""
    region_id = po.get("taxRegionID") if po.get("taxRegionID") is not None else vendor.get("taxRegionID")
    region = _text(purchasing.reference.tax_regions.get(region_id, {}).get("name")) if region_id is not None else None
    if region and region in tax.by_region:
        return tax.by_region[region], ""
    if tax.default:
        return tax.default, ""
    where = f" (nor bills.tax.by_region '{region}')" if region else " (the purchase order has no tax region)"
    return None, "bills.tax.default" + where


def _checked_tax(tax_type: str | None, wanted: str, xero: XeroReference, what: str,
                 problems: _Problems) -> Decimal | None:
    if tax_type is None:
        problems.add(f"{what} has no TaxType: {wanted} is not set",
                     f"add {wanted.split(' (')[0]}: <Xero purchases TaxType, for example INPUT2> to the mapping file")
        return None
    if tax_type not in xero.tax_types:
        problems.add(f"TaxType '{tax_type}' (for {what}) does not exist in Xero",
                     f"add tax rate {tax_type} in Xero (Settings > Tax rates), or map to an existing TaxType "
                     "under bills.tax")
        return None
    return Decimal(xero.tax_types[tax_type])


@dataclass
class _Drafted:
    line: Line
    tax: Decimal | None  # Xero's tax on it, None when its TaxType is unknown


def _line(description: str, quantity: Decimal, unit_cost: Decimal, account: str | None, tax_type: str | None,
          rate: Decimal | None, source_line_id: str) -> _Drafted:
    amount = money(quantity * unit_cost)
    fitted_quantity, unit, collapsed = fit_quantity_and_unit(quantity, unit_cost, amount)
    if collapsed:
        description = f"{description} ({_shown(quantity)} x {_shown(unit_cost)})"
    return _Drafted(
        Line(description=_cut(description), quantity=fitted_quantity, unit_amount=unit, line_amount=amount,
             account_code=account, tax_type=tax_type, source_line_id=source_line_id),
        xero_line_tax(amount, rate, "Exclusive") if rate is not None else None,
    )


def _freight_line(po: dict, vendor: dict, rules: BillMapping, purchasing: _Purchasing, xero: XeroReference,
                  problems: _Problems, on_bill: bool) -> _Drafted | None:
    freight = po.get("freight")
    if freight is None or freight == 0:
        return None
    label = purchasing.po_label(po)
    what = f"the freight of purchase order {label}"
    account = rules.freight.account_code or rules.accounts.default
    if account is None:
        problems.add(f"purchase order {label} has freight {_shown(freight)}, but bills.freight.account_code (and "
                     "bills.accounts.default) is not set",
                     "set bills.freight.account_code to the Xero account freight is posted to")
    elif account not in xero.account_codes:
        problems.add(f"account code '{account}' (for {what}) does not exist or is archived in Xero",
                     f"add account {account} to Xero's chart of accounts, or correct bills.freight.account_code")
    if rules.freight.tax_type:
        tax_type, wanted = rules.freight.tax_type, ""
    else:
        tax_type, wanted = _tax_for(vendor, None, None, po, rules, purchasing)
    rate = _checked_tax(tax_type, wanted or "bills.freight.tax_type", xero, what, problems)
    description = rules.freight.description + (f" (PO {label})" if on_bill else "")
    return _line(description, Decimal(1), freight, account, tax_type, rate, f"freight:{po['id']}")


def _totals(drafted: list[_Drafted]) -> tuple[Decimal, Decimal]:
    """(Total, TotalTax) as Xero computes them: line amounts plus each line's own rounded tax."""
    tax = sum((d.tax for d in drafted if d.tax is not None), Decimal("0.00"))
    return sum((d.line.line_amount for d in drafted), Decimal("0.00")) + tax, tax


def _currency(vendor: dict, purchasing: _Purchasing, xero: XeroReference, problems: _Problems) -> str | None:
    code, _record = _currency_for(vendor, purchasing.reference, xero, problems)
    return code


# ---- bills -------------------------------------------------------------------------------------
@dataclass
class _Received:
    """One receiving and where it leads: its item, purchase order and vendor (any may be unknown)."""

    id: int | None
    record: dict
    item: dict | None
    po: dict | None
    po_id: int | None
    vendor_id: int | None
    number: str | None
    problems: _Problems
    readable: bool  # passed its contract: its quantity can be billed


def _follow(record: dict, problems_read: tuple[str, ...] | None, purchasing: _Purchasing) -> _Received:
    problems = _Problems()
    receiving_id = _int(record.get("id"))
    shown = f"receiving {record.get('id')}"
    if problems_read:
        problems.add(f"{shown} cannot be read: " + "; ".join(problems_read),
                     f"check the receiving in Autotask (Inventory > Purchase Orders); {RETRY}")
    item_id = _int(record.get("purchaseOrderItemID"))
    item = purchasing.items.get(item_id)
    po_id = item.get("orderID") if item is not None else None
    if item is None and item_id in purchasing.bad_items:
        raw = purchasing.bad_items[item_id]
        po_id = _int(raw.record.get("orderID"))
        problems.add(f"purchase order item {item_id} (of {shown}) cannot be read: " + "; ".join(raw.problems),
                     f"check the purchase order item in Autotask; {RETRY}")
    elif item is None and item_id is not None:
        problems.add(f"purchase order item {item_id} (of {shown}) was not read from Autotask",
                     f"check that the Autotask API user can see purchase orders (Inventory); {RETRY}")
    po = purchasing.pos.get(po_id)
    vendor_id = po.get("vendorID") if po is not None else None
    if po is None and po_id is not None and po_id in purchasing.bad_pos:
        raw = purchasing.bad_pos[po_id]
        vendor_id = _int(raw.record.get("vendorID"))
        problems.add(f"purchase order {po_id} (of {shown}) cannot be read: " + "; ".join(raw.problems),
                     f"check the purchase order in Autotask; {RETRY}")
    elif po is None and po_id is not None:
        problems.add(f"purchase order {po_id} (of {shown}) was not read from Autotask",
                     f"check that the Autotask API user can see purchase orders (Inventory); {RETRY}")
    return _Received(receiving_id, record, item, po, po_id, vendor_id, _text(record.get("vendorInvoiceNumber")),
                     problems, readable=not problems_read)


def _first_receivings(received: list[_Received]) -> dict[int, int]:
    """Purchase order id -> id of its first receiving (the lowest id), over every receiving known."""
    first: dict[int, int] = {}
    for one in received:
        if one.po_id is None or one.id is None:
            continue
        first[one.po_id] = min(first.get(one.po_id, one.id), one.id)
    return first


def plan_bills(purchase_orders: pd.DataFrame, items: pd.DataFrame, receivings: pd.DataFrame, vendors: pd.DataFrame,
               reference_data: dict, mapping, xero_reference: XeroReference, *,
               autotask_web_url: str | None = None, other_receivings: pd.DataFrame | None = None,
               rejected: PurchasingRejects | None = None) -> list[DocumentPlan]:
    """One bill plan (kind "bill") per (vendorID, vendorInvoiceNumber) over `receivings`.

    `receivings` must hold every receiving of each bill it touches (the extract reads the other
    receivings with the same vendor invoice number): a bill is planned from what is given, and a
    bill planned from part of its receivings would differ from the one sent.
    `other_receivings`: the purchase orders' receivings that are not billed now, read only to know
    each purchase order's first receiving, whose bill carries the freight. Without them the first of
    the receivings given is taken, and a purchase order billed over several runs could carry its
    freight twice.
    `rejected`: the records the frames left out (PurchasingRejects); the bills they belong to are set
    aside with their problems. `mapping` is the mapping file (InvoiceMapping) or its BillMapping.

    A receiving without a vendor invoice number, or whose vendor is unknown, is a set-aside plan of
    its own (source_id "receiving:<id>"). Plans come sorted by source_id.
    """
    rules = _rules(mapping)
    purchasing = _Purchasing(purchase_orders, items, vendors, reference_data, rejected)
    rejected = purchasing.rejected
    given = [_follow(r, None, purchasing) for r in _records(receivings)]
    given += [_follow(r.record, r.problems, purchasing) for r in rejected.receivings]
    context = [_follow(r, None, purchasing) for r in _records(other_receivings)] if other_receivings is not None else []
    context += [_follow(r.record, r.problems, purchasing) for r in rejected.other_receivings]
    first = _first_receivings(given + context)

    groups: dict[tuple[int, str], list[_Received]] = {}
    alone: list[_Received] = []
    for one in given:
        if one.vendor_id is None or one.number is None:
            alone.append(one)
        else:
            groups.setdefault((one.vendor_id, one.number.casefold()), []).append(one)

    plans = []
    for (vendor_id, _), members in groups.items():
        members.sort(key=lambda m: (m.id is None, m.id or 0))
        number = members[0].number  # the spelling of the first receiving
        plans.append(_plan_bill(members, bill_source_id(vendor_id, number), number, vendor_id, first, rules,
                                purchasing, xero_reference, autotask_web_url))
    for one in alone:
        plans.append(_plan_bill([one], receiving_source_id(one.record.get("id")), None, one.vendor_id, first, rules,
                                purchasing, xero_reference, autotask_web_url))
    return sorted(plans, key=lambda p: p.source_id)


def _plan_bill(members: list[_Received], source_id: str, number: str | None, vendor_id: int | None,
               first: dict[int, int], rules: BillMapping, purchasing: _Purchasing, xero: XeroReference,
               web_url: str | None) -> DocumentPlan:
    problems = _Problems()
    for member in members:
        problems.extend(member.problems)
    head = members[0]
    if number is None:
        if head.vendor_id is not None or head.item is not None:
            po_text = f" of purchase order {purchasing.po_label(head.po)}" if head.po else ""
            problems.add(f"receiving {head.record.get('id')}{po_text} has no vendorInvoiceNumber",
                         "enter the vendor's invoice number on the receiving in Autotask (Inventory > Purchase "
                         "Orders > Receive); the bill is made on the next run")
    pos_in_order = list(dict.fromkeys(m.po_id for m in members if m.po is not None))
    what_vendor = ("vendor of purchase order " + ", ".join(purchasing.po_label(purchasing.pos[p]) for p in pos_in_order)
                   if pos_in_order else "vendor")
    vendor = purchasing.vendor(vendor_id, what_vendor, problems) if vendor_id is not None else None

    drafted: list[_Drafted] = []
    freighted: list[str] = []
    if vendor is not None:
        for po_id in pos_in_order:
            po = purchasing.pos[po_id]
            label = purchasing.po_label(po)
            for member in (m for m in members if m.po_id == po_id and m.item is not None and m.readable):
                item = member.item
                quantity = Decimal(int(member.record["quantityNowReceiving"]))
                if quantity == 0:
                    continue
                product = purchasing.product(item)
                what = f"receiving {member.record.get('id')} (purchase order {label}, item {item['id']})"
                account = _account_for(item, product, rules, xero, what, problems)
                tax_type, wanted = _tax_for(vendor, item, product, po, rules, purchasing)
                rate = _checked_tax(tax_type, wanted, xero, what, problems)
                # Xero refuses a Reference on ACCPAY bills (it is an ACCREC field; a bill's own reference
                # is its InvoiceNumber), so each line names its purchase order instead.
                drafted.append(_line(f"{_item_text(item, product)} (PO {label})", quantity, item["unitCost"],
                                     account, tax_type, rate, f"receiving:{member.record.get('id')}"))
            if first.get(po_id) in {m.id for m in members}:
                freight = _freight_line(po, vendor, rules, purchasing, xero, problems, on_bill=True)
                if freight is not None:
                    drafted.append(freight)
                    freighted.append(label)

    date = min((d for d in (_date(m.record.get("receiveDate")) for m in members) if d is not None), default=None)
    head_po = purchasing.pos.get(pos_in_order[0]) if pos_in_order else None
    currency = _currency(vendor, purchasing, xero, problems) if vendor is not None else None
    due = _bill_due_date(rules, date, head_po, purchasing, problems) if (date and head_po) else None
    total, tax = _totals(drafted)
    if vendor is not None and not problems:
        if not drafted:
            problems.add(f"bill {number} has nothing received (every receiving's quantityNowReceiving is 0)",
                         "nothing to do unless the receivings should have quantities in Autotask")
        elif total < 0:
            problems.add(f"bill {number} would total {total}: Xero bills cannot be negative (cancelled receipts "
                         "outweigh the deliveries)",
                         "enter the supplier's credit note in Xero by hand")

    plan = DocumentPlan(
        kind=BILL, source_id=source_id, source_number=number or f"receiving {head.record.get('id')}",
        contact=purchasing.contact(vendor) if vendor is not None else None,
        number=number, natural_key=number, natural_key_kind=KeyKind.CONTACT_NUMBER if number else None,
        date=date, due_date=due, currency_code=currency, status=Status(rules.status),
        url=purchase_order_url(head_po["id"], web_url) if head_po else None,
        lines=tuple(d.line for d in drafted), total=total, tax=tax,
        note=("includes the freight of purchase order " + ", ".join(freighted)) if freighted else None,
        set_aside=problems.set_aside(),
    )
    if number is not None and len(number) > NUMBER_LIMIT:
        plan = _aside(plan, f"vendor invoice number {number[:40]}… is longer than Xero's {NUMBER_LIMIT} characters",
                      "shorten the vendor invoice number on the receivings in Autotask")
    return with_hash(plan)


def _aside(plan: DocumentPlan, reason: str, fix: str) -> DocumentPlan:
    if plan.set_aside is not None:
        reason, fix = f"{plan.set_aside.reason}; {reason}", f"{plan.set_aside.fix}; {fix}"
    return dataclasses.replace(plan, set_aside=SetAside(reason, fix))


def _bill_due_date(rules: BillMapping, date: dt.date, po: dict, purchasing: _Purchasing,
                   problems: _Problems) -> dt.date | None:
    rule = rules.due_date
    if isinstance(rule, DaysAfterReceive):
        return date + dt.timedelta(days=rule.days_after_receive)
    if isinstance(rule, DayOfFollowingMonth):
        return _add_months(date, 1, rule.day_of_following_month)
    if rule == "xero_contact":
        return None
    label = purchasing.po_label(po)
    term_id = po.get("paymentTerm")
    term = purchasing.reference.payment_terms.get(term_id) if term_id is not None else None
    days = term.get("paymentDueInDays") if term else None
    if days is None:
        reason = (f"purchase order {label} has no payment term" if term_id is None else
                  f"purchase order {label}'s payment term {term_id} was not read from Autotask PaymentTerms "
                  "(or has no paymentDueInDays)")
        problems.add(reason + ", and bills.due_date is payment_term",
                     "set the purchase order's payment term in Autotask (and let the API user read PaymentTerms), or "
                     "set bills.due_date to {days_after_receive: N} or xero_contact")
        return None
    return date + dt.timedelta(days=int(days))


# ---- purchase orders ---------------------------------------------------------------------------
def purchase_order_status_label(po: dict, reference_data_or_ref) -> str | None:
    """The Autotask status's label: the tenant's picklist, else Autotask's usual labels."""
    reference = (reference_data_or_ref if isinstance(reference_data_or_ref, _Reference)
                 else _Reference(reference_data_or_ref or {}))
    return reference.label("PurchaseOrders.status", po.get("status")) or AUTOTASK_PO_STATUSES.get(po.get("status"))


def is_cancelled(po: dict, reference_data_or_ref) -> bool:
    label = purchase_order_status_label(po, reference_data_or_ref)
    return bool(_text(po.get("cancelDateTime"))) or (label or "").strip().casefold() in CANCELLED_LABELS


def xero_purchase_order_status(po: dict, rules: BillMapping, reference_data_or_ref) -> Status:
    """The Xero status kept in step with Autotask's: by status id, then by label, else bills.status."""
    table = rules.purchase_order_status
    status = po.get("status")
    if status is not None and str(status) in table:
        return Status(table[str(status)])
    label = (purchase_order_status_label(po, reference_data_or_ref) or "").strip().casefold()
    by_label = {key.strip().casefold(): value for key, value in table.items()}
    return Status(by_label.get(label, rules.status))


def purchase_order_number_for(po: dict, rules: BillMapping) -> str | None:
    """The PurchaseOrderNumber to send: the template filled in; None when a field it uses is empty."""
    values = {}
    for name in _PLACEHOLDER.findall(rules.purchase_order_number):
        value = _text(po.get(name))
        if value is None:
            return None
        values[name] = value
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], rules.purchase_order_number)


def plan_purchase_orders(purchase_orders: pd.DataFrame, items: pd.DataFrame, vendors: pd.DataFrame,
                         reference_data: dict, mapping, xero_reference: XeroReference, *,
                         autotask_web_url: str | None = None,
                         rejected: PurchasingRejects | None = None) -> list[DocumentPlan]:
    """One plan (kind "purchase_order") per Autotask purchase order: the ordered items and the freight, the
    delivery date, and the Xero status from the Autotask one. A cancelled purchase order is a void plan.
    Plans come sorted by purchase order id."""
    rules = _rules(mapping)
    purchasing = _Purchasing(purchase_orders, items, vendors, reference_data, rejected)
    items_by_po: dict[int, list[dict]] = {}
    for item in purchasing.items.values():
        items_by_po.setdefault(item["orderID"], []).append(item)
    bad_items_by_po: dict[int | None, list[RejectedRecord]] = {}
    for bad in purchasing.rejected.items:
        bad_items_by_po.setdefault(_int(bad.record.get("orderID")), []).append(bad)

    plans = [_plan_purchase_order(po, items_by_po.get(po["id"], []), bad_items_by_po.get(po["id"], []), rules,
                                  purchasing, xero_reference, autotask_web_url)
             for po in purchasing.pos.values()]
    for bad in purchasing.rejected.purchase_orders:
        record = bad.record
        plans.append(with_hash(DocumentPlan(
            kind=PURCHASE_ORDER, source_id=str(record.get("id")),
            source_number=_text(record.get("purchaseOrderNumber")) or str(record.get("id")),
            set_aside=SetAside(f"purchase order {record.get('id')} cannot be read: " + "; ".join(bad.problems),
                               f"check the purchase order in Autotask; {RETRY}"))))
    return sorted(plans, key=lambda p: (_int(p.source_id) is None, _int(p.source_id) or 0, p.source_id))


def _plan_purchase_order(po: dict, items: list[dict], bad_items: list[RejectedRecord], rules: BillMapping,
                         purchasing: _Purchasing, xero: XeroReference, web_url: str | None) -> DocumentPlan:
    problems = _Problems()
    label = purchasing.po_label(po)
    for bad in bad_items:
        problems.add(f"purchase order item {bad.record.get('id')} (of purchase order {label}) cannot be read: "
                     + "; ".join(bad.problems), f"check the purchase order item in Autotask; {RETRY}")
    cancelled = is_cancelled(po, purchasing.reference)
    vendor = purchasing.vendor(po.get("vendorID"), f"vendor of purchase order {label}", problems)

    number = purchase_order_number_for(po, rules)
    if number is None:
        problems.add(f"purchase order {label}: the number template '{rules.purchase_order_number}' needs a field "
                     "that is empty on it", "set bills.purchase_order_number to \"{purchaseOrderNumber}\" or "
                     "\"AT-{id}\"")
    elif len(number) > NUMBER_LIMIT:
        problems.add(f"purchase order {label}: its number is longer than Xero's {NUMBER_LIMIT} characters",
                     "shorten bills.purchase_order_number")

    drafted: list[_Drafted] = []
    if vendor is not None:
        for item in sorted(items, key=lambda i: i["id"]):
            quantity = Decimal(int(item["quantity"]))
            if quantity == 0:
                continue
            product = purchasing.product(item)
            what = f"purchase order {label}, item {item['id']}"
            account = _account_for(item, product, rules, xero, what, problems)
            tax_type, wanted = _tax_for(vendor, item, product, po, rules, purchasing)
            rate = _checked_tax(tax_type, wanted, xero, what, problems)
            drafted.append(_line(_item_text(item, product), quantity, item["unitCost"], account, tax_type, rate,
                                 f"item:{item['id']}"))
        freight = _freight_line(po, vendor, rules, purchasing, xero, problems, on_bill=False)
        if freight is not None:
            drafted.append(freight)
    total, tax = _totals(drafted)
    currency = _currency(vendor, purchasing, xero, problems) if vendor is not None else None
    if vendor is not None and not drafted:
        problems.add(f"purchase order {label} has no items", "add its items in Autotask; it is sent once it has some")
    elif total < 0:
        problems.add(f"purchase order {label} would total {total}; Xero purchase orders cannot be negative",
                     "correct the unit costs in Autotask")

    delivery = _date(po.get("latestEstimatedArrivalDate")) or _date(po.get("shippingDate"))
    date = _date(po.get("submitDateTime")) or _date(po.get("createDateTime"))
    # A cancelled purchase order is taken out of Xero whatever its content: its problems do not matter.
    set_aside = None if cancelled else problems.set_aside()
    return with_hash(DocumentPlan(
        kind=PURCHASE_ORDER, source_id=str(po["id"]), source_number=label,
        contact=purchasing.contact(vendor) if vendor is not None else None,
        number=number, natural_key=number, natural_key_kind=KeyKind.NUMBER if number else None,
        date=date, delivery_date=delivery, currency_code=currency,
        status=xero_purchase_order_status(po, rules, purchasing.reference),
        url=purchase_order_url(po["id"], web_url), lines=tuple(d.line for d in drafted), total=total, tax=tax,
        set_aside=set_aside, void=cancelled,
    ))

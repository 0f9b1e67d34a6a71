"""Extract Autotask purchasing for the bills and purchase-order syncs, in as few calls as the API allows.

Plain functions over an `AutotaskClient` (the flow wraps them in Prefect tasks). Every related record
is read with `in` batches (`query_in`), never one query per record. The frames are validated with the
core.schemas contracts; a malformed record is not an error of the run: it travels in
`PurchasingExtract.rejected` and sets aside the document it belongs to.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import pandas as pd

from core.bills import PurchasingRejects, parse_bill_source_id, purchasing_frames

RECEIVINGS = "PurchaseOrderItemReceiving"
ITEMS = "PurchaseOrderItems"
PURCHASE_ORDERS = "PurchaseOrders"
# Small tables the mapping reads in full; Products are read by id (only those the items name).
REFERENCE_ENTITIES = ("TaxRegions", "Currencies", "PaymentTerms")
ALL_RECORDS = [{"op": "gte", "field": "id", "value": 0}]


@dataclass
class PurchasingExtract:
    """What one run read: validated frames, the reference data the mapping needs, and the rejects."""

    purchase_orders: pd.DataFrame
    items: pd.DataFrame
    receivings: pd.DataFrame          # bills target: every receiving of each bill to plan (complete bills)
    other_receivings: pd.DataFrame    # the same purchase orders' other receivings: where the freight went
    vendors: pd.DataFrame             # the purchase orders' vendor companies (AutotaskCompanies)
    reference: dict                   # TaxRegions, Currencies, PaymentTerms, Products, Picklists
    rejected: PurchasingRejects = field(default_factory=PurchasingRejects)
    api_calls: int = 0                # Autotask calls this read made
    # The Autotask zone's web address, for the links back to each purchase order, when the client knows it.
    web_url: str | None = None


def _utc(day: date) -> str:
    return datetime.combine(day, time.min, tzinfo=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _window(field_name: str, since: date, until: date) -> list[dict]:
    return [{"op": "gte", "field": field_name, "value": _utc(since)},
            {"op": "lt", "field": field_name, "value": _utc(until + timedelta(days=1))}]


def _id(value) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _number(record: dict) -> str | None:
    value = record.get("vendorInvoiceNumber")
    if value is None:
        return None
    return str(value).strip() or None


def _unique(records: Iterable[dict]) -> list[dict]:
    """Records by id, first seen wins (one record may be read by two queries)."""
    seen: dict = {}
    for record in records:
        seen.setdefault(record.get("id"), record)
    return list(seen.values())


def _in(at, entity: str, field_name: str, values) -> list[dict]:
    wanted = sorted({v for v in values if v is not None}, key=str)
    return list(at.query_in(entity, field_name, wanted)) if wanted else []


def _reference(at, items: list[dict]) -> dict:
    reference: dict = {entity: list(at.query(entity, ALL_RECORDS)) for entity in REFERENCE_ENTITIES}
    reference["Products"] = _in(at, "Products", "id", (_id(i.get("productID")) for i in items))
    # The purchase order status labels (per tenant) that bills.purchase_order_status is written in.
    reference["Picklists"] = at.picklists(PURCHASE_ORDERS)
    return reference


def read_for_bills(at, since: date, until: date, revisit_ids: Iterable = (), bounded: bool = False) -> PurchasingExtract:
    """Receivings with receiveDate in [since, until], made into complete bills, and what they need.

    `revisit_ids`: bills the ledger holds as not yet in Xero, read whatever their date: their source ids
    ("<vendorID>:<vendorInvoiceNumber>", "receiving:<id>") or plain receiving ids.

    A bill is every receiving of one vendor with one vendor invoice number, so the receivings with the
    numbers found are all read (a vendor invoice may cover deliveries on either side of the window) and
    kept when they belong to the same vendor. The purchase orders' other receivings come back in
    `other_receivings`: not billed now, they say which bill carries each purchase order's freight.
    """
    calls = at.calls
    wanted_ids: list[int] = []
    wanted_bills: set[tuple[int, str]] = set()
    for revisit in revisit_ids:
        parsed = parse_bill_source_id(revisit) if isinstance(revisit, str) else None
        if parsed is None and _id(revisit) is not None:
            wanted_ids.append(_id(revisit))
        elif parsed is not None and parsed[0] == "receiving":
            wanted_ids.append(parsed[1])
        elif parsed is not None:
            vendor, number = parsed[1]
            wanted_bills.add((vendor, number.casefold()))

    seed = _unique([*at.query(RECEIVINGS, _window("receiveDate", since, until)), *_in(at, RECEIVINGS, "id", wanted_ids)])
    numbers = {_number(r) for r in seed} | {number for _, number in wanted_bills}
    same_number = _in(at, RECEIVINGS, "vendorInvoiceNumber", {n for n in numbers if n})
    candidates = _unique([*seed, *same_number])

    items = _unique(_in(at, ITEMS, "id", (_id(r.get("purchaseOrderItemID")) for r in candidates)))
    order_of = {_id(i.get("id")): _id(i.get("orderID")) for i in items}
    pos = _unique(_in(at, PURCHASE_ORDERS, "id", order_of.values()))
    vendor_of = {_id(p.get("id")): _id(p.get("vendorID")) for p in pos}

    def bill_key(receiving: dict) -> tuple[int, str] | None:
        vendor = vendor_of.get(order_of.get(_id(receiving.get("purchaseOrderItemID"))))
        number = _number(receiving)
        return (vendor, number.casefold()) if vendor is not None and number else None

    keys = {bill_key(r) for r in seed} | wanted_bills
    keys.discard(None)
    seed_ids = {r.get("id") for r in seed}
    billed = [r for r in candidates if r.get("id") in seed_ids or bill_key(r) in keys]
    billed_pos = {order_of.get(_id(r.get("purchaseOrderItemID"))) for r in billed}
    pos = [p for p in pos if _id(p.get("id")) in billed_pos]

    # Every item of those purchase orders and every receiving of them: where each one's freight belongs.
    all_items = _unique([*items, *_in(at, ITEMS, "orderID", (_id(p.get("id")) for p in pos))])
    po_items = [i for i in all_items if _id(i.get("orderID")) in billed_pos]
    billed_ids = {r.get("id") for r in billed}
    others = [r for r in _in(at, RECEIVINGS, "purchaseOrderItemID", (_id(i.get("id")) for i in po_items))
              if r.get("id") not in billed_ids]
    used_items = {_id(r.get("purchaseOrderItemID")) for r in [*billed, *others]}
    items = [i for i in all_items if _id(i.get("id")) in used_items or _id(i.get("orderID")) in billed_pos]

    vendors = _in(at, "Companies", "id", (_id(p.get("vendorID")) for p in pos))
    reference = _reference(at, items)
    frames = purchasing_frames(purchase_orders=pos, items=items, receivings=billed, other_receivings=others,
                               vendors=vendors)
    return PurchasingExtract(frames.purchase_orders, frames.items, frames.receivings, frames.other_receivings,
                             frames.vendors, reference, frames.rejected, api_calls=at.calls - calls,
                             web_url=getattr(at, "web_url", None))


def read_for_purchase_orders(at, since: date, until: date, revisit_ids: Iterable = (), bounded: bool = False) -> PurchasingExtract:
    """Purchase orders created or submitted in [since, until], those cancelled since `since` (whatever
    their date, so a cancellation reaches Xero; a backfill chunk, `bounded`, reads only its own days), and the ids in `revisit_ids` (purchase orders the
    ledger holds as not yet in step); their items and vendors."""
    calls = at.calls
    changed = [{"op": "or", "items": [
        {"op": "and", "items": _window("createDateTime", since, until)},
        {"op": "and", "items": _window("submitDateTime", since, until)},
        {"op": "and", "items": _window("cancelDateTime", since, until)} if bounded
        else {"op": "gte", "field": "cancelDateTime", "value": _utc(since)},
    ]}]
    wanted = [i for i in (_id(r) for r in revisit_ids) if i is not None]
    pos = _unique([*at.query(PURCHASE_ORDERS, changed), *_in(at, PURCHASE_ORDERS, "id", wanted)])
    items = _in(at, ITEMS, "orderID", (_id(p.get("id")) for p in pos))
    vendors = _in(at, "Companies", "id", (_id(p.get("vendorID")) for p in pos))
    reference = _reference(at, items)
    frames = purchasing_frames(purchase_orders=pos, items=items, vendors=vendors)
    return PurchasingExtract(frames.purchase_orders, frames.items, frames.receivings, frames.other_receivings,
                             frames.vendors, reference, frames.rejected, api_calls=at.calls - calls,
                             web_url=getattr(at, "web_url", None))

"""What the invoices flow writes back to Autotask once an invoice is in Xero, pure: no HTTP, no database.

With the mapping's `write_back` on, each Autotask invoice this sync put into Xero gets, once, Xero's number
as its `invoiceNumber` (with `invoice_number: xero` only) and the day it reached Xero as its
`webServiceDate`. Plans come from the ledger's synced invoice and credit-note rows; a write is one
`WRITE_BACK` document whose natural key names the invoice and every field and value it sets, so Autotask
holding them is the proof that it was done (a lost answer is read back, never written twice).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from core.documents import WRITE_BACK, DocumentPlan, KeyKind, SetAside, with_hash

INVOICE_NUMBER, WEB_SERVICE_DATE = "invoiceNumber", "webServiceDate"
INVOICE_NUMBER_LENGTH = 100  # Autotask keeps at most 100 characters in invoiceNumber


@dataclass(frozen=True)
class SyncedDocument:
    """An Autotask invoice this sync put into Xero, as the ledger's invoice (or credit-note) row holds it."""

    autotask_id: str
    autotask_number: str
    xero_number: str | None
    synced_on: dt.date | None


def write_key(autotask_id: str, writes: tuple[tuple[str, object], ...]) -> str:
    """The natural key of a write to an Autotask invoice: its id and every field and value written."""
    def text(value) -> str:
        return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)
    return f"{autotask_id}@" + ";".join(f"{name}={text(value)}" for name, value in writes)


def key_fields(key: str) -> tuple[str, tuple[str, ...]]:
    """The invoice id and the field names a write key names (write_key's inverse, for reading back)."""
    autotask_id, _, rest = key.partition("@")
    return autotask_id, tuple(part.partition("=")[0] for part in rest.split(";") if "=" in part)


def plan_write_backs(synced: list[SyncedDocument], *, invoice_number: bool, web_service_date: bool) -> list[DocumentPlan]:
    """One WRITE_BACK plan per synced invoice; the caller passes only those not written back yet."""
    plans = []
    for doc in synced:
        writes: list[tuple[str, object]] = []
        set_aside = None
        if invoice_number:
            if not doc.xero_number:
                set_aside = SetAside(f"Xero's number for Autotask invoice {doc.autotask_number} is not in the ledger",
                                     "nothing to do: it is written back once the invoice's row holds Xero's number")
            elif len(doc.xero_number) > INVOICE_NUMBER_LENGTH:
                set_aside = SetAside(f"Xero's number {doc.xero_number} is longer than the {INVOICE_NUMBER_LENGTH} "
                                     "characters Autotask keeps in invoiceNumber",
                                     "shorten the invoice number format in Xero (Settings > Invoice settings)")
            else:
                writes.append((INVOICE_NUMBER, doc.xero_number))
        if web_service_date and doc.synced_on is not None:
            writes.append((WEB_SERVICE_DATE, doc.synced_on))
        if not writes and set_aside is None:
            continue
        written = tuple(writes)
        plans.append(with_hash(DocumentPlan(
            kind=WRITE_BACK.name, source_id=doc.autotask_id, source_number=doc.autotask_number,
            number=doc.xero_number, natural_key=write_key(doc.autotask_id, written), natural_key_kind=KeyKind.NUMBER,
            date=doc.synced_on, reference=doc.xero_number, writes=written, set_aside=set_aside,
        )))
    return plans


def with_original_numbers(invoices: pd.DataFrame, written: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Autotask invoices as they were before Xero's number was written into them: `written` maps an
    Autotask id to (the number written, the Autotask number it replaced). Mapping them so keeps every
    synced invoice's content, and its hash, as it was, so the write-back is never read as a change."""
    if not written or invoices.empty or "invoiceNumber" not in invoices.columns:
        return invoices
    def original(row) -> object:
        number_written, before = written.get(str(row["id"]), (None, None))
        return before if number_written is not None and row["invoiceNumber"] == number_written else row["invoiceNumber"]
    restored = invoices.copy()
    restored["invoiceNumber"] = restored.apply(original, axis=1).astype(invoices["invoiceNumber"].dtype)
    return restored

"""Which tenant (Xero organisation) each Autotask invoice belongs to, when tenants share one Autotask account.

Pure functions over the extracted frames and every sharing tenant's rules. A document is never guessed
into an organisation: one that matches no tenant, or more than one, is reported and kept out of all of them.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from core.frames import read_int


@dataclass(frozen=True)
class TenantRules:
    """One tenant's routing rules; any one of them matching claims the document for the tenant."""

    companies: frozenset[int] = frozenset()
    business_units: frozenset[int] = frozenset()
    invoice_templates: frozenset[int] = frozenset()
    udf_name: str | None = None
    udf_values: frozenset[str] = frozenset()
    # The rules of a tenant whose file cannot be read: not known, so taken to claim every document. What
    # another tenant claims too is then held back as matching several, rather than given to that tenant.
    unknown: bool = False

    @classmethod
    def of(cls, companies: Iterable[int] = (), business_units: Iterable[int] = (),
           invoice_templates: Iterable[int] = (), udf_name: str | None = None,
           udf_values: Iterable[str] = ()) -> "TenantRules":
        return cls(frozenset(companies), frozenset(business_units), frozenset(invoice_templates), udf_name,
                   frozenset(v.strip().casefold() for v in udf_values))

    @property
    def empty(self) -> bool:
        return not (self.companies or self.business_units or self.invoice_templates or self.udf_name or self.unknown)


@dataclass(frozen=True)
class Document:
    """What routing looks at for one invoice (read from the frames, or from a record that failed validation)."""

    invoice_id: int
    number: str
    company_id: int | None
    template_id: int | None
    business_units: frozenset[int] = frozenset()
    company_udfs: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Routing:
    owner: dict[int, str] = field(default_factory=dict)
    # Invoice id -> the tenants that all claim it (two or more).
    conflicts: dict[int, tuple[str, ...]] = field(default_factory=dict)
    unrouted: list[int] = field(default_factory=list)
    numbers: dict[int, str] = field(default_factory=dict)

    def of(self, tenant: str) -> set[int]:
        return {i for i, t in self.owner.items() if t == tenant}


def matches(rules: TenantRules, doc: Document) -> bool:
    if rules.unknown:
        return True
    if doc.company_id is not None and doc.company_id in rules.companies:
        return True
    if doc.template_id is not None and doc.template_id in rules.invoice_templates:
        return True
    if doc.business_units & rules.business_units:
        return True
    if rules.udf_name:
        value = _udf(doc.company_udfs, rules.udf_name)
        if value is not None and value.strip().casefold() in rules.udf_values:
            return True
    return False


def route(documents: Iterable[Document], tenants: Mapping[str, TenantRules]) -> Routing:
    """Assign each document to the one tenant whose rules match it.

    A tenant alone on its Autotask account with no rules takes everything. Among several tenants, a
    tenant without rules takes nothing: a catch-all would silently swallow what another tenant's rules miss.
    """
    result = Routing()
    only = next(iter(tenants)) if len(tenants) == 1 else None
    for doc in documents:
        result.numbers[doc.invoice_id] = doc.number
        if only is not None and tenants[only].empty:
            result.owner[doc.invoice_id] = only
            continue
        claimed = tuple(sorted(name for name, rules in tenants.items() if matches(rules, doc)))
        if len(claimed) == 1:
            result.owner[doc.invoice_id] = claimed[0]
        elif claimed:
            result.conflicts[doc.invoice_id] = claimed
        else:
            result.unrouted.append(doc.invoice_id)
    return result


def documents(invoices: pd.DataFrame, lines: pd.DataFrame | None = None, *,
              business_units: Mapping[int, Iterable[int]] | None = None,
              company_udfs: Mapping[int, Mapping[str, str]] | None = None,
              extra_records: Iterable[dict] = ()) -> list[Document]:
    """Documents from the invoices frame (plus raw invoice records that failed validation).

    Business units come from the invoice's billing items (`organizationalLevelAssociationID`); pass them
    by invoice id when the lines frame does not carry that column. Company UDFs are by company id.
    """
    units: dict[int, set[int]] = {int(k): {int(u) for u in v} for k, v in (business_units or {}).items()}
    if lines is not None and len(lines) and "organizationalLevelAssociationID" in lines.columns:
        for invoice_id, unit in zip(lines["invoiceID"], lines["organizationalLevelAssociationID"]):
            if _present(unit):
                units.setdefault(int(invoice_id), set()).add(int(unit))
    udfs = company_udfs or {}
    rows = invoices[["id", "invoiceNumber", "companyID", "invoiceEditorTemplateID"]].astype(object).to_dict("records") \
        if len(invoices) else []
    out = [_document(r, units, udfs) for r in rows]
    out += [_document(r, units, udfs) for r in extra_records if _int(r.get("id")) is not None]
    return out


def udfs_by_company(company_records: Iterable[dict]) -> dict[int, dict[str, str]]:
    """Autotask returns UDFs as `userDefinedFields: [{name, value}]`; routing wants a lookup by name."""
    out: dict[int, dict[str, str]] = {}
    for record in company_records:
        cid = _int(record.get("id"))
        if cid is None:
            continue
        udfs = record.get("userDefinedFields")
        # A malformed list (not a list, or items that are not {name, value}) routes by nothing, never raises.
        out[cid] = {str(u.get("name")): str(u["value"]) for u in (udfs if isinstance(udfs, list) else [])
                    if isinstance(u, dict) and u.get("name") and u.get("value") is not None}
    return out


def _document(row: dict, units: Mapping[int, set[int]], udfs: Mapping[int, Mapping[str, str]]) -> Document:
    invoice_id = int(_int(row.get("id")))
    company = _int(row.get("companyID"))
    number = row.get("invoiceNumber")
    return Document(
        invoice_id=invoice_id,
        number=str(number) if _present(number) else f"id {invoice_id}",
        company_id=company,
        template_id=_int(row.get("invoiceEditorTemplateID")),
        business_units=frozenset(units.get(invoice_id, ())),
        company_udfs=udfs.get(company, {}) if company is not None else {},
    )


def _udf(values: Mapping[str, str], name: str) -> str | None:
    # Autotask matches UDF names without regard to case; a bookkeeper typing the label should too.
    wanted = name.strip().casefold()
    return next((v for k, v in values.items() if k.strip().casefold() == wanted), None)


def _present(value) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and value != value)


def _int(value) -> int | None:
    # As the frames read ids: int(1.5) would route invoice 1, int(inf) would raise.
    return read_int(value) if _present(value) else None

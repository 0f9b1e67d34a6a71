"""Which existing Xero contact an Autotask company adopts, and whose person and e-mail it carries: pure.

A company's own contact is found by ContactNumber (its Autotask id). Failing that, the mapping's
`contacts.match` may look for a contact of the same account number (Companies.companyNumber = Xero
AccountNumber) or the same name, compared as Xero compares names (without regard to case or repeated
spaces). Only a contact with no ContactNumber (or the company's own) is adopted; two candidates, or one
that belongs to another record, are never merged: the company is refused with the reason.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

HOW = {"name": "the same name", "account_number": "the same account number"}


@dataclass(frozen=True)
class Candidate:
    """A Xero contact as the matching sees it."""

    contact_id: str
    name: str
    contact_number: str | None = None
    account_number: str | None = None


@dataclass(frozen=True)
class Adoption:
    company_id: int
    contact_id: str
    xero_name: str
    how: str  # "name" | "account_number"

    @property
    def message(self) -> str:
        return (f"Autotask company {self.company_id} adopted the existing Xero contact '{self.xero_name}' "
                f"({HOW[self.how]})")


def same_key(how: str, value: str | None) -> str | None:
    """The value as Xero compares it: names and account numbers without regard to case or repeated spaces."""
    if value is None:
        return None
    text = " ".join(str(value).casefold().split())
    return text or None


def match_contacts(wanted: dict[int, str | None], candidates: Iterable[Candidate], how: str,
                   taken: set[str] = frozenset()) -> tuple[dict[int, Adoption], dict[int, str]]:
    """(adopted, refused) for companies -> the value they are matched by (their name or account number).

    `taken`: ContactIDs already some company's in this run; they are never adopted a second time."""
    field = "name" if how == "name" else "account_number"
    by_key: dict[str, list[Candidate]] = {}
    for c in candidates:
        key = same_key(how, getattr(c, field))
        if key is not None and all(o.contact_id != c.contact_id for o in by_key.get(key, [])):
            by_key.setdefault(key, []).append(c)
    adopted: dict[int, Adoption] = {}
    refused: dict[int, str] = {}
    used = set(taken)
    what = "named" if how == "name" else "with account number"
    for company, value in sorted(wanted.items()):
        found = by_key.get(same_key(how, value) or "", [])
        if not found:
            continue
        if len(found) > 1:
            refused[company] = (f"Xero has {len(found)} contacts {what} '{value}' ("
                                + ", ".join(f"'{c.name}'" for c in found)
                                + f"); none is adopted for Autotask company {company}: give the right one "
                                  f"ContactNumber {company} in Xero (or merge them)")
            continue
        c = found[0]
        if c.contact_number and str(c.contact_number) != str(company):
            refused[company] = (f"Xero already has a contact {what} '{value}' that belongs to another record "
                                f"(ContactNumber {c.contact_number}); it is not merged with Autotask company {company}")
            continue
        if c.contact_id in used:
            refused[company] = (f"the Xero contact '{c.name}' {what} '{value}' is already another Autotask "
                                f"company's; it is not merged with Autotask company {company}")
            continue
        used.add(c.contact_id)
        adopted[company] = Adoption(company, c.contact_id, c.name, how)
    return adopted, refused


def _full_name(contact: dict) -> str:
    return " ".join(str(p).strip() for p in (contact.get("firstName"), contact.get("lastName")) if p and str(p).strip())


def billing_person(company: dict, contacts: list[dict], udf_name: str | None) -> tuple[dict | None, str | None]:
    """(the contact whose person and e-mail the Xero contact carries, a note when the UDF names no one).

    `contacts` are the company's Autotask contacts. With `udf_name`, the UDF's value names the billing
    contact by full name, e-mail or Contacts id; otherwise, or when it names no one, the primary contact."""
    primary = next((c for c in contacts if c.get("primaryContact") is True), None)
    if not udf_name:
        return primary, None
    value = next((f.get("value") for f in company.get("userDefinedFields") or []
                  if isinstance(f, dict) and str(f.get("name", "")).strip().casefold() == udf_name.strip().casefold()),
                 None)
    wanted = " ".join(str(value).casefold().split()) if value is not None else ""
    if not wanted:
        return primary, None
    for c in contacts:
        if wanted in (" ".join(_full_name(c).casefold().split()), str(c.get("emailAddress") or "").strip().casefold(),
                      str(c.get("id"))):
            return c, None
    return primary, (f"Autotask company {company['id']}: {udf_name} '{value}' names none of its contacts; "
                     "the primary contact is used")

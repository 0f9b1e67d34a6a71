"""Contacts: one Xero contact per Autotask company a document names, customers and suppliers alike.

Matched by ContactNumber (the Autotask company id) first, then as the mapping's `contacts.match` says
(core.contacts: the same account number, the same name as Xero compares names) when that contact has no
ContactNumber (or the same one): a contact that belongs to another company number, or one of two
candidates, is never adopted. Every adoption is reported (`Contacts.adopted`).
Created or updated in batches of at most 50; updated only when the Autotask side changed (a content
hash per company in the ledger, kind "contact"). Two companies with one name get distinct names
(core.invoices.contact_names). Creation is safe to repeat: contacts are looked up by ContactNumber
before and after any write whose answer is lost.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd
from prefect import get_run_logger
from prefect.cache_policies import NONE

from atx.context import TenantContext
from clients.xero import XeroOutcomeUnknown, contact_hash
from core.contacts import Candidate, billing_person, match_contacts
from core.documents import TargetLimitReached, batches
from core.frames import read_int
from core.invoices import contact_draft, contact_names
from core.mapping import ContactRules
from tasks.prefect_task import task

KIND_CONTACT = "contact"


@dataclass
class Contacts:
    ids: dict[str, str] = field(default_factory=dict)     # ContactNumber (company id) -> Xero ContactID
    failed: dict[str, str] = field(default_factory=dict)  # ContactNumber -> why its contact could not be made
    stopped: str | None = None  # an API limit (the daily call budget) stopped the contacts: the run stops too
    adopted: list[str] = field(default_factory=list)  # which existing Xero contact each company adopted, and how
    sales_tax_types: dict[str, str] = field(default_factory=dict)  # ContactNumber -> the contact's default sales tax
    notes: list[str] = field(default_factory=list)    # a billing contact UDF that names no one, ...


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:64]


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@task(name="sync-xero-contacts", cache_policy=NONE)
def sync_contacts(ctx: TenantContext, companies: pd.DataFrame, contacts: list[dict], numbers: list[str],
                  currencies: list[dict], *, supplier: bool = False, dry_run: bool = False) -> Contacts:
    """Ensure a Xero contact for each Autotask company numbered in `numbers` (company ids as text).

    When an API limit stops it (Xero's day limit, the tenant's daily call budget), what was made is
    recorded and the answer says why it stopped (`stopped`): the run stops sending, the task does not fail.
    `dry_run`: only find the contacts Xero holds (and those a real run would adopt); nothing is written,
    and a company without one is simply left out of `ids` (a real run would create its contact)."""
    try:
        return _sync_contacts(ctx, companies, contacts, numbers, currencies, supplier, dry_run)
    except TargetLimitReached as exc:
        get_run_logger().warning("stopping: %s", exc)
        return Contacts(stopped=str(exc))


def _sync_contacts(ctx: TenantContext, companies: pd.DataFrame, contacts: list[dict], numbers: list[str],
                   currencies: list[dict], supplier: bool, dry_run: bool = False) -> Contacts:
    company_ids = sorted({i for i in (_int(n) for n in numbers) if i is not None})
    rules = _rules(ctx)
    notes: list[str] = []
    drafts = _drafts(companies, contacts, currencies, company_ids, supplier, rules, notes)
    hashes = {i: contact_hash(d) for i, d in drafts.items()}
    ids, adopt, failed, adopted, tax_of = _matched(ctx.xero, drafts, rules)
    for message in adopted + notes:
        get_run_logger().info("%s", message)
    if dry_run:
        ids.update(adopt)
        failed.update({i: f"Autotask company {i} was not found" for i in company_ids
                       if i not in drafts and i not in ids and i not in failed})
        return Contacts(ids={str(k): v for k, v in ids.items()}, failed={str(k): v for k, v in failed.items()},
                        adopted=adopted, notes=notes,
                        sales_tax_types={str(k): tax_of[v] for k, v in ids.items() if tax_of.get(v)})
    known = {int(k): r for k, r in ctx.ledger.records(ctx.tenant, KIND_CONTACT, [str(i) for i in drafts]).items()}
    to_update = [i for i in drafts if i in adopt or (i in ids and (known.get(i) is None or known[i].content_hash != hashes[i]))]
    to_create = [i for i in drafts if i not in ids and i not in adopt and i not in failed]
    for chunk in batches(to_update):
        _update(ctx, chunk, drafts, hashes, {i: adopt.get(i) or ids[i] for i in chunk})
        ids.update({i: adopt.get(i) or ids[i] for i in chunk})
    for chunk in batches(to_create):
        _create(ctx, chunk, drafts, hashes, ids, failed)
    for i in company_ids:
        if i not in ids and i not in failed:
            failed[i] = f"Autotask company {i} was not found"
    return Contacts(ids={str(k): v for k, v in ids.items()}, failed={str(k): v for k, v in failed.items()},
                    adopted=adopted, notes=notes,
                    sales_tax_types={str(k): tax_of[v] for k, v in ids.items() if tax_of.get(v)})


def _rules(ctx: TenantContext) -> ContactRules:
    mapping = getattr(ctx, "mapping", None)
    return getattr(mapping, "contacts", None) or ContactRules()


def _drafts(companies: pd.DataFrame, contacts: list[dict], currencies: list[dict], company_ids: list[int],
            supplier: bool, rules: ContactRules = ContactRules(), notes: list[str] | None = None) -> dict:
    """company id -> its ContactDraft, for the companies that were read."""
    # Contacts come as Autotask served them: one whose companyID cannot be read belongs to no company here.
    # They are the primary contacts, or every contact of the companies when a billing contact UDF is mapped.
    of_company: dict[int, list[dict]] = {}
    for c in contacts:
        if (i := read_int(c.get("companyID"))) is not None:
            of_company.setdefault(i, []).append(c)
    by_id = {int(r["id"]): r for r in companies.to_dict("records")}
    names = contact_names(companies) if len(companies) else {}
    currency_by_id = {int(c["id"]): str(c.get("name") or "") for c in currencies}
    drafts = {}
    for i in company_ids:
        if i not in by_id:
            continue
        people = of_company.get(i, [])
        if rules.billing_contact_udf:
            person, note = billing_person(by_id[i], people, rules.billing_contact_udf)
            if note and notes is not None:
                notes.append(note)
        else:
            # Only primary contacts were read: the one there is (as before the UDF option existed).
            person = next((c for c in people if c.get("primaryContact") is True), people[-1] if people else None)
        drafts[i] = contact_draft(by_id[i], person, currency_code=currency_by_id.get(_int(by_id[i].get("currencyID"))),
                                  name=names.get(i), supplier=supplier, account_number="account_number" in rules.match)
    return drafts


def _candidates(found) -> list[Candidate]:
    return [Candidate(contact_id=str(c.contact_id), name=c.name or "", contact_number=c.contact_number or None,
                      account_number=getattr(c, "account_number", None) or None) for c in found]


def _matched(xero, drafts: dict, rules: ContactRules = ContactRules()
             ) -> tuple[dict[int, str], dict[int, str], dict[int, str], list[str], dict[str, str]]:
    """(found by ContactNumber, adopted, refused, what was adopted and how, ContactID -> its default sales
    tax) for the wanted companies."""
    wanted = list(drafts)
    # The first way of matching is asked with the numbers, in the same calls (most runs need no other).
    first = rules.match[0] if rules.match else None
    early = {i: _match_value(drafts[i], first) for i in wanted} if first else {}
    early = {i: v for i, v in early.items() if v}
    asked = {"names" if first == "name" else "account_numbers": list(early.values())} if early else {}
    seen = list(xero.find_contacts(numbers=[str(i) for i in wanted], **asked)) if wanted else []
    existing = {int(c.contact_number): c for c in seen if c.contact_number and str(c.contact_number).isdigit()}
    ids = {i: str(c.contact_id) for i, c in existing.items()}
    adopt: dict[int, str] = {}
    failed: dict[int, str] = {}
    messages: list[str] = []
    # Not found by number: the mapping's ways of matching, in its order (core.contacts.match_contacts).
    for how in rules.match:
        left = [i for i in wanted if i not in ids and i not in adopt and i not in failed]
        values = {i: _match_value(drafts[i], how) for i in left}
        values = {i: v for i, v in values.items() if v}
        if not values:
            continue
        if how == first:
            found = seen  # read with the numbers above
        else:
            found = (xero.find_contacts(names=list(values.values())) if how == "name"
                     else xero.find_contacts(account_numbers=list(values.values())))
            seen += found
        taken = set(ids.values()) | set(adopt.values())
        adopted, refused = match_contacts(values, _candidates(found), how, taken)
        adopt.update({i: a.contact_id for i, a in adopted.items()})
        failed.update(refused)
        messages += [a.message for a in adopted.values()]
    tax_of = {str(c.contact_id): _plain_text(getattr(c, "accounts_receivable_tax_type", None)) for c in seen}
    return ids, adopt, failed, messages, tax_of


def _match_value(draft, how: str) -> str | None:
    return draft.name if how == "name" else draft.account_number


def _plain_text(value) -> str | None:
    value = getattr(value, "value", value)
    return str(value) if value else None


def _record(ctx: TenantContext, company: int, contact_id: str, content_hash: str) -> None:
    ctx.ledger.upsert_synced(ctx.tenant, KIND_CONTACT, str(company), target_id=contact_id, content_hash=content_hash,
                             source_number=str(company), target_number=str(company))


def _update(ctx: TenantContext, chunk: list[int], drafts: dict, hashes: dict, contact_ids: dict[int, str]) -> None:
    logger = get_run_logger()
    try:
        results = ctx.xero.update_contacts([(contact_ids[i], drafts[i]) for i in chunk],
                                           idempotency_key=_key(ctx.tenant, "contacts-update", *[f"{i}:{hashes[i]}" for i in chunk]))
    except XeroOutcomeUnknown:
        return  # an update repeats harmlessly: the next run sends it again
    for i, result in zip(chunk, results):
        if result.ok:
            _record(ctx, i, contact_ids[i], hashes[i])
            logger.info("updated contact %s in Xero", drafts[i].name)
        else:
            # The contact exists; its documents can still go. The update is retried next run.
            logger.warning("could not update contact %s in Xero: %s", drafts[i].name, "; ".join(result.errors))


def _create(ctx: TenantContext, chunk: list[int], drafts: dict, hashes: dict, ids: dict[int, str],
            failed: dict[int, str]) -> None:
    try:
        results = ctx.xero.create_contacts([drafts[i] for i in chunk], idempotency_key=_key(ctx.tenant, "contacts", *chunk))
    except XeroOutcomeUnknown:
        # Looked up by ContactNumber before anything is created again.
        found = {int(c.contact_number): str(c.contact_id)
                 for c in ctx.xero.find_contacts(numbers=[str(i) for i in chunk]) if c.contact_number}
        for i in chunk:
            if i in found:
                ids[i] = found[i]
                _record(ctx, i, found[i], hashes[i])
            else:
                failed[i] = "Xero did not answer while creating the contact; it will be retried next run"
        return
    for company_id, result in zip(chunk, results):
        if result.ok:
            ids[company_id] = result.xero_id
            _record(ctx, company_id, result.xero_id, hashes[company_id])
            get_run_logger().info("created contact %s in Xero", drafts[company_id].name)
        else:
            failed[company_id] = "; ".join(result.errors)

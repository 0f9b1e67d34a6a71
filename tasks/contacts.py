"""Contacts: one Xero contact per Autotask company a document names, customers and suppliers alike.

Matched by ContactNumber (the Autotask company id) first, then by exact name when that contact has no
ContactNumber (or the same one): a contact that belongs to another company number is never adopted.
Created or updated in batches of at most 50; updated only when the Autotask side changed (a content
hash per company in the ledger, kind "contact"). Two companies with one name get distinct names
(core.invoices.contact_names). Creation is safe to repeat: contacts are looked up by ContactNumber
before and after any write whose answer is lost.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from atx.context import TenantContext
from clients.xero import XeroOutcomeUnknown, contact_hash
from core.documents import batches
from core.frames import read_int
from core.invoices import contact_draft, contact_names

KIND_CONTACT = "contact"


@dataclass
class Contacts:
    ids: dict[str, str] = field(default_factory=dict)     # ContactNumber (company id) -> Xero ContactID
    failed: dict[str, str] = field(default_factory=dict)  # ContactNumber -> why its contact could not be made


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:64]


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@task(name="sync-xero-contacts", cache_policy=NONE)
def sync_contacts(ctx: TenantContext, companies: pd.DataFrame, contacts: list[dict], numbers: list[str],
                  currencies: list[dict], *, supplier: bool = False) -> Contacts:
    """Ensure a Xero contact for each Autotask company numbered in `numbers` (company ids as text)."""
    logger = get_run_logger()
    tenant, xero, ledger = ctx.tenant, ctx.xero, ctx.ledger
    failed: dict[int, str] = {}
    # Contacts come as Autotask served them: one whose companyID cannot be read belongs to no company here.
    primary = {i: c for c in contacts if (i := read_int(c.get("companyID"))) is not None}
    by_id = {int(r["id"]): r for r in companies.to_dict("records")}
    names = contact_names(companies) if len(companies) else {}
    currency_by_id = {int(c["id"]): str(c.get("name") or "") for c in currencies}
    company_ids = sorted({i for i in (_int(n) for n in numbers) if i is not None})
    wanted = [i for i in company_ids if i in by_id]
    drafts = {
        i: contact_draft(by_id[i], primary.get(i), currency_code=currency_by_id.get(_int(by_id[i].get("currencyID"))),
                         name=names.get(i), supplier=supplier)
        for i in wanted
    }
    hashes = {i: contact_hash(d) for i, d in drafts.items()}
    existing = {int(c.contact_number): c for c in xero.find_contacts(numbers=[str(i) for i in wanted])
                if c.contact_number and str(c.contact_number).isdigit()}
    ids = {i: str(c.contact_id) for i, c in existing.items()}
    # Not found by number: an existing contact with exactly this name and no (or the same) number is adopted.
    by_name_wanted = {drafts[i].name: i for i in wanted if i not in ids}
    adopt: dict[int, str] = {}
    if by_name_wanted:
        for c in xero.find_contacts(names=list(by_name_wanted)):
            company = by_name_wanted.get(c.name)  # exact, case and all
            if company is None or company in adopt:
                continue
            if not c.contact_number or str(c.contact_number) == str(company):
                adopt[company] = str(c.contact_id)
            else:
                failed[company] = (
                    f"Xero already has a contact named '{c.name}' that belongs to another record "
                    f"(ContactNumber {c.contact_number}); it is not merged with Autotask company {company}"
                )
    known = {int(k): r for k, r in ledger.records(tenant, KIND_CONTACT, [str(i) for i in wanted]).items()}
    to_update = [i for i in wanted if i in adopt or (i in ids and (known.get(i) is None or known[i].content_hash != hashes[i]))]
    to_create = [i for i in wanted if i not in ids and i not in adopt and i not in failed]

    for chunk in batches(to_update):
        batch = [(adopt.get(i) or ids[i], drafts[i]) for i in chunk]
        try:
            results = xero.update_contacts(batch, idempotency_key=_key(tenant, "contacts-update", *[f"{i}:{hashes[i]}" for i in chunk]))
        except XeroOutcomeUnknown:
            results = None  # an update repeats harmlessly: the next run sends it again
        for n, i in enumerate(chunk):
            contact_id = adopt.get(i) or ids[i]
            ids[i] = contact_id
            result = results[n] if results is not None else None
            if result is not None and result.ok:
                ledger.upsert_synced(tenant, KIND_CONTACT, str(i), target_id=contact_id, content_hash=hashes[i],
                                     source_number=str(i), target_number=str(i))
                logger.info("updated contact %s in Xero", drafts[i].name)
            elif result is not None:
                # The contact exists; its invoices can still go. The update is retried next run.
                logger.warning("could not update contact %s in Xero: %s", drafts[i].name, "; ".join(result.errors))

    for chunk in batches(to_create):
        key = _key(tenant, "contacts", *chunk)
        try:
            results = xero.create_contacts([drafts[i] for i in chunk], idempotency_key=key)
        except XeroOutcomeUnknown:
            results = None
        if results is None:
            found = {int(c.contact_number): str(c.contact_id) for c in xero.find_contacts(numbers=[str(i) for i in chunk]) if c.contact_number}
            ids.update(found)
            for i in chunk:
                if i in found:
                    ledger.upsert_synced(tenant, KIND_CONTACT, str(i), target_id=found[i], content_hash=hashes[i],
                                         source_number=str(i), target_number=str(i))
                else:
                    failed[i] = "Xero did not answer while creating the contact; it will be retried next run"
            continue
        for company_id, result in zip(chunk, results):
            if result.ok:
                ids[company_id] = result.xero_id
                ledger.upsert_synced(tenant, KIND_CONTACT, str(company_id), target_id=result.xero_id, content_hash=hashes[company_id],
                                     source_number=str(company_id), target_number=str(company_id))
                logger.info("created contact %s in Xero", drafts[company_id].name)
            else:
                failed[company_id] = "; ".join(result.errors)
    for i in company_ids:
        if i not in ids and i not in failed:
            failed[i] = f"Autotask company {i} was not found"
    return Contacts(ids={str(k): v for k, v in ids.items()}, failed={str(k): v for k, v in failed.items()})


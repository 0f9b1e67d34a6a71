"""Load: contacts, invoices and credit notes into Xero, exactly once, with the ledger as the record of truth.

Only reads are retried by Prefect. Writes go through the ledger's claim → send → record steps, and a
write whose answer was lost is looked up in Xero by its natural key before anything is sent again:
- the invoice (or credit note) number, when we set it;
- when Xero numbers the document, nothing in the request identifies it, so its `Url` (the link back to
  the Autotask invoice, unique per invoice) is the marker: the contact's invoices created by this app and
  modified since just before the attempt are read, and the Url must match exactly. A credit note has no
  Url in Xero: its Reference (which starts with the Autotask number when Xero numbers) is the marker.

Before anything is created, its number is looked up in Xero: a number already used by a document the
ledger does not say we created is a clash, set aside with the fix, and never overwritten or adopted.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta, timezone
from decimal import Decimal

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from atx.connections import autotask_client, ledger_for, xero_gateway
from atx.settings import load_tenant
from clients.xero import XeroAuthError, XeroError, XeroOutcomeUnknown, XeroRateLimited
from core.frames import read_int
from core.invoices import XeroReference, contact_names, content_hash, to_xero_contact, to_xero_invoice
from ledger import Candidate, DocState

DOC_INVOICE = "invoice"
DOC_CREDIT_NOTE = "credit_note"
DOC_CONTACT = "contact"
BATCH_SIZE = 50
XERO_INVOICE_LINK = "https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={id}"
XERO_CREDIT_NOTE_LINK = "https://go.xero.com/AccountsReceivable/ViewCreditNote.aspx?creditNoteID={id}"
# Markers for documents Xero numbers (see the module docstring); the ledger keeps them as natural keys.
REFERENCE_MARKER = "Reference:"
# How far before the attempt the Url lookup reads back (our clock and Xero's may disagree a little).
LOOKUP_MARGIN = timedelta(hours=1)
# Attachments per run: each is one Autotask and one Xero call; the rest follow on the next run.
ATTACHMENTS_PER_RUN = 200
CHANGED_AFTER_APPROVAL = "changed in Autotask after it was approved in Xero: raise a credit note in Xero (and a new invoice if needed)"


@dataclass
class InvoiceOutcome:
    """What happened to one Autotask invoice in this run; one row of the run report."""

    autotask_id: int
    autotask_number: str
    contact: str
    currency: str
    autotask_total: Decimal
    # created | already in Xero | recovered | updated in Xero | changed after approval | voided in Xero |
    # deleted in Xero | needs attention | set aside | in flight elsewhere | planned (dry run) | skipped (...)
    action: str
    xero_id: str | None = None
    xero_number: str | None = None
    xero_total: Decimal | None = None
    status: str | None = None
    reason: str | None = None
    fix: str | None = None
    document_type: str = "ACCREC"
    note: str | None = None  # rounding notes and other remarks for the report

    @property
    def link(self) -> str | None:
        if not self.xero_id:
            return None
        template = XERO_CREDIT_NOTE_LINK if self.document_type == "ACCRECCREDIT" else XERO_INVOICE_LINK
        return template.format(id=self.xero_id)


def idempotency_key(tenant: str, run_id: str, candidates: list[Candidate], attempt: int = 0, what: str = DOC_INVOICE) -> str:
    """Deterministic per batch and attempt, so an in-process retry of the same request replays."""
    text = "|".join([tenant, what, run_id, str(attempt)] + [f"{c.autotask_id}:{c.content_hash}" for c in candidates])
    return hashlib.sha256(text.encode()).hexdigest()[:64]


def _key(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:64]


def _status(model) -> str:
    value = getattr(model, "status", None)
    return str(getattr(value, "value", value) or "")


def _dec(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))


# ---- reference data ----------------------------------------------------------------------------
def worth_retrying(task, task_run, state) -> bool:
    """Prefect retries reads, but not into Xero's day limit or a connection that needs a person."""
    try:
        state.result()
    except (XeroRateLimited, XeroAuthError):
        return False
    except Exception:  # noqa: BLE001 - any other failure of a read is worth another try
        return True
    return True


@task(name="read-xero-settings", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def read_xero_reference(tenant: str) -> XeroReference:
    settings = load_tenant(tenant)
    xero = xero_gateway(settings)
    org = xero.organisation()
    accounts = xero.accounts()
    tax_rates = xero.tax_rates()
    currencies = xero.currencies()
    tracking = {
        str(c.name): frozenset(str(o.name) for o in (c.options or []) if _status(o) in ("ACTIVE", ""))
        for c in xero.tracking_categories()
        if c.name and _status(c) in ("ACTIVE", "")
    }
    themes = {str(t.name): str(t.branding_theme_id) for t in xero.branding_themes() if t.name}
    base = str(getattr(org.base_currency, "value", org.base_currency))
    return XeroReference(
        account_codes=frozenset(a.code for a in accounts if a.code and str(getattr(a.status, "value", a.status)) == "ACTIVE"),
        tax_types={
            t.tax_type: Decimal(str(t.effective_rate if t.effective_rate is not None else t.display_tax_rate or 0))
            for t in tax_rates
            if t.tax_type and str(t.status) in ("ACTIVE", "None")
        },
        currencies=frozenset(str(getattr(c.code, "value", c.code)) for c in currencies) | {base},
        base_currency=base,
        tracking=tracking,
        branding_themes=themes,
    )


# ---- resolving answers that never came ---------------------------------------------------------
def _prefect_run_alive(run_id: str) -> bool:
    """A ledger row's owner is alive while its Prefect flow run is not in a final state."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
    except Exception:
        return False
    return not (run.state and run.state.is_final())


@task(name="resolve-unanswered-invoices", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def resolve_unanswered(tenant: str, run_id: str) -> list[InvoiceOutcome]:
    """Rows left `sending` by a run that died: look each up in Xero before it may be sent again."""
    settings = load_tenant(tenant)
    ledger = ledger_for(settings)
    xero = xero_gateway(settings)
    for doc_type in (DOC_INVOICE, DOC_CREDIT_NOTE):
        stale = ledger.stale(tenant, doc_type, run_id=run_id, owner_alive=_prefect_run_alive, lease=settings.send_lease)
        if stale:
            _resolve(tenant, ledger, xero, doc_type, stale)
    return []


def _is_url(key: str | None) -> bool:
    return bool(key) and key.startswith(("http://", "https://"))


def _since(rows) -> object:
    claimed = [r.claimed_at for r in rows if r.claimed_at is not None]
    if not claimed:
        return None
    earliest = min(c if c.tzinfo else c.replace(tzinfo=timezone.utc) for c in claimed)
    return earliest - LOOKUP_MARGIN


def _resolve(tenant, ledger, xero, doc_type: str, rows) -> None:
    """Find each row's document in Xero by its natural key: found → synced, not found → may be sent again."""
    logger = get_run_logger()
    found: dict[int, object] = {}
    by_number = [r for r in rows if r.natural_key and not _is_url(r.natural_key) and not r.natural_key.startswith(REFERENCE_MARKER)]
    if doc_type == DOC_INVOICE:
        if by_number:
            docs = {i.invoice_number: i for i in xero.find_invoices(numbers=[r.natural_key for r in by_number])}
            found.update({r.autotask_id: docs[r.natural_key] for r in by_number if r.natural_key in docs})
        by_url = [r for r in rows if _is_url(r.natural_key)]
        # A row without a contact id is looked up among all of this app's invoices since the attempt:
        # releasing it unlooked-up could send a second copy.
        for contact_id in sorted({r.xero_contact_id or "" for r in by_url}):
            mine = [r for r in by_url if (r.xero_contact_id or "") == contact_id]
            docs = xero.find_invoices(contact_ids=[contact_id] if contact_id else [], created_by_my_app=True,
                                      modified_since=_since(mine))
            for r in mine:
                match = [d for d in docs if (d.url or "") == r.natural_key and _status(d) not in ("DELETED", "VOIDED")]
                if match:
                    found[r.autotask_id] = match[0]
                if len(match) > 1:
                    logger.error("%d Xero invoices carry the Url of Autotask invoice %s", len(match), r.autotask_number)
    else:
        if by_number:
            docs = {c.credit_note_number: c for c in xero.find_credit_notes(numbers=[r.natural_key for r in by_number])}
            found.update({r.autotask_id: docs[r.natural_key] for r in by_number if r.natural_key in docs})
        for r in [r for r in rows if (r.natural_key or "").startswith(REFERENCE_MARKER)]:
            reference = r.natural_key[len(REFERENCE_MARKER):].replace('"', '\\"')
            where = f'Reference=="{reference}"' + (f' AND Contact.ContactID==Guid("{r.xero_contact_id}")' if r.xero_contact_id else "")
            docs = [d for d in xero.find_credit_notes(where=where, modified_since=_since([r])) if _status(d) not in ("DELETED", "VOIDED")]
            if docs:
                found[r.autotask_id] = docs[0]
    for r in rows:
        doc = found.get(r.autotask_id)
        if doc is not None and _status(doc) not in ("DELETED", "VOIDED"):
            xero_id, number = _id_and_number(doc)
            ledger.record_synced(tenant, doc_type, r.autotask_id, xero_id=xero_id, xero_number=number,
                                 xero_status=_status(doc), xero_total=_dec(doc.total))
            logger.info("found %s in Xero after a lost answer; recorded it, nothing re-sent", number or r.autotask_number)
        else:
            ledger.release(tenant, doc_type, r.autotask_id)
            logger.info("%s is not in Xero after a lost answer; it will be sent again", r.autotask_number)


def _id_and_number(doc) -> tuple[str, str | None]:
    if hasattr(doc, "credit_note_id") and getattr(doc, "credit_note_id", None):
        return str(doc.credit_note_id), doc.credit_note_number
    return str(doc.invoice_id), doc.invoice_number


# ---- contacts ----------------------------------------------------------------------------------
def _contact_hash(model) -> str:
    data = model.to_dict()
    text = json.dumps(data, sort_keys=True, default=lambda v: str(getattr(v, "value", v)))
    return hashlib.sha256(text.encode()).hexdigest()


@task(name="sync-xero-contacts", cache_policy=NONE)
def sync_contacts(
    tenant: str, companies: pd.DataFrame, contacts: list[dict], company_ids: list[int], currencies: list[dict]
) -> dict:
    """Ensure a Xero contact for each Autotask company, keyed by ContactNumber = company id.

    Matched by ContactNumber first, then by exact name when that contact has no ContactNumber (or the
    same one): a contact that belongs to another company number is never adopted. Created or updated in
    batches of at most 50; updated only when the Autotask side changed (a content hash per company in
    the ledger, doc_type "contact"). Two companies with one name get distinct names (core.contact_names).

    Returns {"ids": {company id: ContactID}, "failed": {company id: reason}}. Creation is safe to
    repeat: contacts are looked up by ContactNumber before and after any write whose answer is lost.
    """
    logger = get_run_logger()
    settings = load_tenant(tenant)
    xero = xero_gateway(settings)
    ledger = ledger_for(settings)
    failed: dict[int, str] = {}
    # Contacts come as Autotask served them: one whose companyID cannot be read belongs to no company here.
    primary = {i: c for c in contacts if (i := read_int(c.get("companyID"))) is not None}
    by_id = {int(r["id"]): r for r in companies.to_dict("records")}
    names = contact_names(companies) if len(companies) else {}
    currency_by_id = {int(c["id"]): str(c.get("name") or "") for c in currencies}
    wanted = [i for i in company_ids if i in by_id]
    models = {
        i: to_xero_contact(by_id[i], primary.get(i), currency_code=currency_by_id.get(_int(by_id[i].get("currencyID"))),
                           name=names.get(i))
        for i in wanted
    }
    hashes = {i: _contact_hash(m) for i, m in models.items()}

    existing = {int(c.contact_number): c for c in xero.find_contacts(numbers=[str(i) for i in wanted])
                if c.contact_number and str(c.contact_number).isdigit()}
    ids = {i: str(c.contact_id) for i, c in existing.items()}
    # Not found by number: an existing contact with exactly this name and no (or the same) number is adopted.
    by_name_wanted = {models[i].name: i for i in wanted if i not in ids}
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
    known = ledger.records(tenant, DOC_CONTACT, wanted)
    to_update = [i for i in wanted if i in adopt or (i in ids and (known.get(i) is None or known[i].content_hash != hashes[i]))]
    to_create = [i for i in wanted if i not in ids and i not in adopt and i not in failed]

    for start in range(0, len(to_update), BATCH_SIZE):
        chunk = to_update[start : start + BATCH_SIZE]
        batch = []
        for i in chunk:
            m = models[i]
            m.contact_id = adopt.get(i) or ids[i]
            batch.append(m)
        try:
            results = xero.update_contacts(batch, idempotency_key=_key(tenant, "contacts-update", *[f"{i}:{hashes[i]}" for i in chunk]))
        except XeroOutcomeUnknown:
            results = None  # an update repeats harmlessly: the next run sends it again
        for n, i in enumerate(chunk):
            contact_id = adopt.get(i) or ids[i]
            ids[i] = contact_id
            result = results[n] if results is not None else None
            if result is not None and result.ok:
                ledger.upsert_synced(tenant, DOC_CONTACT, i, xero_id=contact_id, content_hash=hashes[i],
                                     autotask_number=str(i), xero_number=str(i))
                logger.info("updated contact %s in Xero", models[i].name)
            elif result is not None:
                # The contact exists; its invoices can still go. The update is retried next run.
                logger.warning("could not update contact %s in Xero: %s", models[i].name, "; ".join(result.errors))

    for start in range(0, len(to_create), BATCH_SIZE):
        chunk = to_create[start : start + BATCH_SIZE]
        key = _key(tenant, "contacts", *chunk)
        try:
            results = xero.create_contacts([models[i] for i in chunk], idempotency_key=key)
        except XeroOutcomeUnknown:
            results = None
        if results is None:
            found = {int(c.contact_number): str(c.contact_id) for c in xero.find_contacts(numbers=[str(i) for i in chunk]) if c.contact_number}
            ids.update(found)
            for i in chunk:
                if i in found:
                    ledger.upsert_synced(tenant, DOC_CONTACT, i, xero_id=found[i], content_hash=hashes[i],
                                         autotask_number=str(i), xero_number=str(i))
                else:
                    failed[i] = "Xero did not answer while creating the contact; it will be retried next run"
            continue
        for company_id, result in zip(chunk, results):
            if result.ok:
                ids[company_id] = result.xero_id
                ledger.upsert_synced(tenant, DOC_CONTACT, company_id, xero_id=result.xero_id, content_hash=hashes[company_id],
                                     autotask_number=str(company_id), xero_number=str(company_id))
                logger.info("created contact %s in Xero", models[company_id].name)
            else:
                failed[company_id] = "; ".join(result.errors)
    for i in company_ids:
        if i not in ids and i not in failed:
            failed[i] = f"Autotask company {i} was not found"
    return {"ids": ids, "failed": failed}


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---- invoices ----------------------------------------------------------------------------------
def fix_for(message: str) -> str:
    """Turn Xero's wording into the action a finance person can take."""
    m = message.lower()
    if "account code" in m:
        return "map the billing code to an active Xero account code in the tenant's mapping file"
    if "taxtype" in m or "tax type" in m:
        return "map the tax category to a TaxType that suits the account in the tenant's mapping file"
    if "lock date" in m:
        return "the invoice date is in a locked period: ask the accountant to move the lock date, or re-date the invoice"
    if "not subscribed to currency" in m:
        return "enable the currency in Xero (Settings > Currencies) or change the company's currency in Autotask"
    if "must be unique" in m:
        return "the number is already used in Xero by a document this sync did not create: give Autotask invoice numbers a prefix"
    if "tracking" in m:
        return "activate the tracking option in Xero or change the tracking mapping"
    if "payment" in m or "allocated" in m:
        return "remove the payments or credit notes allocated to it in Xero first, then rerun"
    return "correct the invoice in Autotask or the mapping, then run the sync again"


def _doc_type(group: pd.DataFrame) -> str:
    if "document_type" in group.columns and str(group["document_type"].iloc[0]) == "ACCRECCREDIT":
        return DOC_CREDIT_NOTE
    return DOC_INVOICE


def _natural_key(group: pd.DataFrame) -> str | None:
    """The invoice number we send; when Xero numbers: the Url (invoices) or the Reference (credit notes)."""
    number = group["invoice_number"].iloc[0]
    if number:
        return str(number)
    if _doc_type(group) == DOC_CREDIT_NOTE:
        reference = group["reference"].iloc[0]
        return f"{REFERENCE_MARKER}{reference}" if reference else None
    url = group["source_url"].iloc[0] if "source_url" in group.columns else None
    return str(url) if url else None


def _to_model(group: pd.DataFrame, contact_id: str | None):
    if _doc_type(group) == DOC_CREDIT_NOTE:
        from core.invoices import to_xero_credit_note

        return to_xero_credit_note(group, contact_id)
    return to_xero_invoice(group, contact_id)


@task(name="load-invoice-batch", cache_policy=NONE)
def load_invoice_batch(tenant: str, run_id: str, drafts: pd.DataFrame, contact_ids: dict[int, str]) -> list[InvoiceOutcome]:
    """One batch of at most 50 Autotask invoices: changed drafts updated, new ones created (invoices and
    credit notes apart), each recorded in the ledger as soon as Xero answers."""
    settings = load_tenant(tenant)
    ledger = ledger_for(settings)
    xero = xero_gateway(settings)
    groups = {int(k): g for k, g in drafts.groupby("autotask_invoice_id", sort=False)}
    outcomes: dict[int, InvoiceOutcome] = {}
    try:
        for doc_type in (DOC_INVOICE, DOC_CREDIT_NOTE):
            mine = {k: g for k, g in groups.items() if _doc_type(g) == doc_type}
            if mine:
                # A document now mapped as this type leaves any set-aside row of the other type behind.
                ledger.forget_set_aside(tenant, DOC_CREDIT_NOTE if doc_type == DOC_INVOICE else DOC_INVOICE, list(mine))
                _load_documents(tenant, run_id, ledger, xero, doc_type, mine, contact_ids, outcomes)
    except XeroRateLimited as exc:
        # Xero did nothing with the refused call (claimed rows were released, or stay `sending` for a
        # lookup when an answer was lost); what this batch already recorded stays recorded. The rest is
        # reported as left for the next run, and the flow stops sending.
        get_run_logger().warning("stopping: %s", exc)
        for k, g in groups.items():
            if k not in outcomes:
                outcomes[k] = deferred_outcome(k, g, str(exc))
    return [outcomes[k] for k in groups if k in outcomes]


DEFERRED = "not sent yet"


def deferred_outcome(autotask_id: int, g: pd.DataFrame, reason: str) -> InvoiceOutcome:
    """A document this run stopped before sending (Xero's limit): the next run sends it."""
    return InvoiceOutcome(
        autotask_id=int(autotask_id), autotask_number=str(g["autotask_number"].iloc[0]),
        contact=str(g["contact_name"].iloc[0]), currency=str(g["currency_code"].iloc[0]),
        autotask_total=g["autotask_total"].iloc[0], action=f"{DEFERRED} (Xero's API limit reached; the next run sends it)",
        reason=reason, fix="nothing to do: the next run picks it up",
        document_type=str(g["document_type"].iloc[0]) if "document_type" in g.columns else "ACCREC",
    )


def _load_documents(tenant, run_id, ledger, xero, doc_type, groups: dict[int, pd.DataFrame], contact_ids,
                    outcomes: dict[int, InvoiceOutcome]) -> dict[int, InvoiceOutcome]:
    """Fills `outcomes` as it goes, so what was recorded before an exception is still reported."""
    logger = get_run_logger()
    candidates = [
        Candidate(
            autotask_id=k,
            autotask_number=str(g["autotask_number"].iloc[0]),
            natural_key=_natural_key(g),
            content_hash=content_hash(g),
            document_date=g["date"].iloc[0],
            contact_id=contact_ids.get(_company(g)),
        )
        for k, g in groups.items()
    ]
    rows = ledger.records(tenant, doc_type, list(groups))

    # Already in Xero: unchanged → reported; changed → updated while DRAFT, else left for a person.
    synced = [c for c in candidates if rows.get(c.autotask_id) is not None and rows[c.autotask_id].state in (DocState.SYNCED, DocState.VOIDED)]
    changed = [c for c in synced if rows[c.autotask_id].state == DocState.SYNCED and rows[c.autotask_id].content_hash != c.content_hash]
    for c in synced:
        if c not in changed:
            outcomes[c.autotask_id] = _already(c, groups[c.autotask_id], rows[c.autotask_id])
    if changed:
        outcomes.update(_update_changed(tenant, ledger, xero, doc_type, changed, groups, rows, contact_ids))

    # Never synced: look the numbers up first, so a clash is found before anything is written.
    fresh = [c for c in candidates if c not in synced]
    clashes = _number_clashes(xero, doc_type, [c for c in fresh if rows.get(c.autotask_id) is None or rows[c.autotask_id].state != DocState.SENDING])
    for c in fresh:
        if c.natural_key in clashes and _our_earlier_copy(clashes[c.natural_key], c, groups[c.autotask_id], rows.get(c.autotask_id)):
            # A write of ours whose answer was lost and that an earlier lookup missed: adopt it, never send again.
            existing = clashes.pop(c.natural_key)
            xero_id, number = _id_and_number(existing)
            ledger.record_synced(tenant, doc_type, c.autotask_id, xero_id=xero_id, xero_number=number,
                                 xero_status=_status(existing), xero_total=_dec(existing.total))
            outcomes[c.autotask_id] = _outcome(c, groups[c.autotask_id], "recovered", xero_id, number)
            logger.info("found %s in Xero from an earlier attempt; recorded it, nothing re-sent", number)
    for c in fresh:
        if c.natural_key in clashes:
            existing = clashes[c.natural_key]
            noun = "Credit Note" if doc_type == DOC_CREDIT_NOTE else "Invoice"
            reason = (f"{noun} number {c.natural_key} is already used in Xero by a document this sync did not create "
                      f"({_status(existing)}, total {existing.total}); it was not sent, and the Xero document was not changed")
            fix = "give Autotask invoice numbers a prefix (invoice_number: \"AT-{invoiceNumber}\" in the mapping file), or use invoice_number: xero"
            ledger.set_aside(tenant, doc_type, c.autotask_id, autotask_number=c.autotask_number, reason=reason, fix=fix,
                             content_hash=c.content_hash, document_date=c.document_date)
            o = _outcome(c, groups[c.autotask_id], "set aside")
            o.reason, o.fix = reason, fix
            outcomes[c.autotask_id] = o
            logger.warning("set aside %s: %s", c.autotask_number, reason)
    for c in fresh:
        if not c.natural_key and c.autotask_id not in outcomes:
            # Nothing would find it again after a lost answer: sending it could make a second copy.
            reason = "Xero numbers this document and its link back to Autotask (the lookup marker) is unknown"
            fix = "check that Autotask's zoneInformation answers (it names the web address); the document is retried next run"
            ledger.set_aside(tenant, doc_type, c.autotask_id, autotask_number=c.autotask_number, reason=reason, fix=fix)
            o = _outcome(c, groups[c.autotask_id], "set aside")
            o.reason, o.fix = reason, fix
            outcomes[c.autotask_id] = o
    candidates = [c for c in fresh if c.natural_key and c.natural_key not in clashes and c.autotask_id not in outcomes]
    outcomes.update(_found_by_marker(tenant, ledger, xero, doc_type, candidates, groups, rows))
    candidates = [c for c in candidates if c.autotask_id not in outcomes]

    what = doc_type if doc_type == DOC_INVOICE else "credit_note"
    for attempt in range(3):
        key = idempotency_key(tenant, run_id, candidates, attempt, what)
        claimed = ledger.claim(tenant, doc_type, candidates, run_id=run_id, idempotency_key=key) if candidates else []
        for c in candidates:
            if c not in claimed and c.autotask_id not in outcomes:
                outcomes[c.autotask_id] = _skipped(ledger, tenant, doc_type, c, groups[c.autotask_id])
        if not claimed:
            break
        models = [_to_model(groups[c.autotask_id], c.contact_id) for c in claimed]
        try:
            if doc_type == DOC_CREDIT_NOTE:
                results = xero.create_credit_notes(models, idempotency_key=key)
            else:
                results = xero.create_invoices(models, idempotency_key=key)
        except XeroOutcomeUnknown:
            logger.warning("Xero's answer to a batch of %d documents was lost; looking them up before re-sending", len(claimed))
            _resolve(tenant, ledger, xero, doc_type, list(ledger.records(tenant, doc_type, [c.autotask_id for c in claimed]).values()))
            state = ledger.records(tenant, doc_type, [c.autotask_id for c in claimed])
            for c in claimed:
                row = state[c.autotask_id]
                if row.state == DocState.SYNCED:
                    o = _outcome(c, groups[c.autotask_id], "recovered", row.xero_id, row.xero_number)
                    o.xero_total, o.status = _dec(row.xero_total), row.xero_status
                    outcomes[c.autotask_id] = o
            # Only a number makes Xero refuse a second copy; a document found by its Url or Reference
            # marker waits for the next run, which looks it up again before sending anything.
            candidates = [c for c in claimed if state[c.autotask_id].state != DocState.SYNCED and _by_number(c.natural_key)]
            for c in claimed:
                if state[c.autotask_id].state != DocState.SYNCED and not _by_number(c.natural_key):
                    outcomes[c.autotask_id] = _outcome(c, groups[c.autotask_id], "not sent yet (answer lost; looked up again next run)")
            continue
        except XeroRateLimited:
            for c in claimed:  # a 429 means Xero did nothing with the batch
                ledger.release(tenant, doc_type, c.autotask_id)
            raise
        except XeroError as exc:
            # Refused as a whole (a 400 outside per-element results): nothing was created.
            for c in claimed:
                reason, fix = str(exc), fix_for(str(exc))
                ledger.set_aside(tenant, doc_type, c.autotask_id, autotask_number=c.autotask_number, reason=reason, fix=fix,
                                 run_id=run_id)
                o = _outcome(c, groups[c.autotask_id], "set aside")
                o.reason, o.fix = reason, fix
                outcomes[c.autotask_id] = o
            break
        for c, result in zip(claimed, results):
            g = groups[c.autotask_id]
            if result.ok:
                total, status = _dec(getattr(result.element, "total", None)), _status(result.element)
                ledger.record_synced(tenant, doc_type, c.autotask_id, xero_id=result.xero_id, xero_number=result.number,
                                     xero_status=status, xero_total=total)
                o = _outcome(c, g, "created", result.xero_id, result.number)
                o.xero_total, o.status = total, status
                outcomes[c.autotask_id] = o
                logger.info("created %s for %s in Xero", result.number, g["contact_name"].iloc[0])
            else:
                reason = "; ".join(result.errors) or "Xero refused the document without a message"
                fix = fix_for(reason)
                ledger.set_aside(tenant, doc_type, c.autotask_id, autotask_number=c.autotask_number, reason=reason, fix=fix,
                                 run_id=run_id)
                o = _outcome(c, g, "set aside")
                o.reason, o.fix = reason, fix
                outcomes[c.autotask_id] = o
                logger.warning("set aside %s: %s (fix: %s)", c.autotask_number, reason, fix)
        break
    else:
        for c in candidates:
            outcomes.setdefault(c.autotask_id, _outcome(c, groups[c.autotask_id], "in flight elsewhere"))
    return outcomes


def _by_number(natural_key: str | None) -> bool:
    return bool(natural_key) and not _is_url(natural_key) and not natural_key.startswith(REFERENCE_MARKER)


def _found_by_marker(tenant, ledger, xero, doc_type, candidates: list[Candidate], groups, rows) -> dict[int, InvoiceOutcome]:
    """Documents Xero numbers carry no number Xero could refuse twice. One that was attempted before
    (its answer lost, its row waiting again) is looked up by its marker before it may be sent."""
    attempted = [rows[c.autotask_id] for c in candidates
                 if not _by_number(c.natural_key) and rows.get(c.autotask_id) is not None and rows[c.autotask_id].attempts]
    if not attempted:
        return {}
    _resolve(tenant, ledger, xero, doc_type, attempted)
    now = ledger.records(tenant, doc_type, [r.autotask_id for r in attempted])
    found = {}
    for c in candidates:
        row = now.get(c.autotask_id)
        if row is not None and row.state == DocState.SYNCED:
            o = _outcome(c, groups[c.autotask_id], "recovered", row.xero_id, row.xero_number)
            o.xero_total, o.status = _dec(row.xero_total), row.xero_status
            found[c.autotask_id] = o
    return found


def _our_earlier_copy(existing, c: Candidate, group: pd.DataFrame, row) -> bool:
    """The Xero document holding this number is one we sent before: this row was attempted with that
    very number, and the document is for the same contact with the same total. Anything else is a
    clash with a document this sync did not create, and is never touched."""
    if row is None or not row.attempts or row.natural_key != c.natural_key or not c.contact_id:
        return False
    contact = getattr(existing, "contact", None)
    same_contact = contact is not None and str(getattr(contact, "contact_id", "")) == str(c.contact_id)
    total = existing.total
    return same_contact and total is not None and Decimal(str(total)) == abs(Decimal(str(group["autotask_total"].iloc[0])))


def _number_clashes(xero, doc_type: str, candidates: list[Candidate]) -> dict[str, object]:
    """Numbers we are about to create that Xero already holds (one read per batch of 50)."""
    numbers = [c.natural_key for c in candidates if c.natural_key and not _is_url(c.natural_key)
               and not c.natural_key.startswith(REFERENCE_MARKER)]
    if not numbers:
        return {}
    if doc_type == DOC_CREDIT_NOTE:
        docs = xero.find_credit_notes(numbers=numbers)
        return {d.credit_note_number: d for d in docs if _status(d) != "DELETED"}
    docs = xero.find_invoices(numbers=numbers, chunk_size=BATCH_SIZE)
    return {d.invoice_number: d for d in docs if _status(d) != "DELETED" and str(getattr(d.type, "value", d.type)) == "ACCREC"}


def _update_changed(tenant, ledger, xero, doc_type, changed: list[Candidate], groups, rows, contact_ids) -> dict[int, InvoiceOutcome]:
    """A document changed in Autotask after it reached Xero: a DRAFT in Xero is updated (lines replaced);
    anything further along is left alone and reported for a person."""
    logger = get_run_logger()
    outcomes: dict[int, InvoiceOutcome] = {}
    ids = [rows[c.autotask_id].xero_id for c in changed]
    if doc_type == DOC_CREDIT_NOTE:
        current = {str(d.credit_note_id): d for d in xero.find_credit_notes(ids=ids)}
    else:
        current = {str(d.invoice_id): d for d in xero.find_invoices(ids=ids)}
    drafts, later = [], []
    for c in changed:
        row = rows[c.autotask_id]
        doc = current.get(row.xero_id)
        (drafts if doc is not None and _status(doc) == "DRAFT" else later).append(c)
    for c in later:
        row, doc = rows[c.autotask_id], current.get(rows[c.autotask_id].xero_id)
        status = _status(doc) if doc is not None else "missing"
        ledger.note(tenant, doc_type, c.autotask_id, CHANGED_AFTER_APPROVAL, xero_status=status)
        o = _outcome(c, groups[c.autotask_id], "changed after approval", row.xero_id, row.xero_number)
        o.status, o.xero_total = status, _dec(getattr(doc, "total", None))
        o.reason, o.fix = f"changed in Autotask after it reached Xero, where it is {status}", CHANGED_AFTER_APPROVAL
        outcomes[c.autotask_id] = o
        logger.warning("%s changed in Autotask but is %s in Xero: left for a person", c.autotask_number, status)
    if drafts:
        models = []
        for c in drafts:
            model = _to_model(groups[c.autotask_id], c.contact_id)
            # By id, and never renumbered: the number Xero holds is the document's key in the ledger.
            if doc_type == DOC_CREDIT_NOTE:
                model.credit_note_id, model.credit_note_number = rows[c.autotask_id].xero_id, None
            else:
                model.invoice_id, model.invoice_number = rows[c.autotask_id].xero_id, None
            models.append(model)
        key = _key(tenant, "update", doc_type, *[f"{c.autotask_id}:{c.content_hash}" for c in drafts])
        try:
            results = (xero.update_credit_notes if doc_type == DOC_CREDIT_NOTE else xero.update_invoices)(models, idempotency_key=key)
        except XeroOutcomeUnknown:
            results = [None] * len(drafts)  # an update by id repeats harmlessly: the next run sends it again
        for c, result in zip(drafts, results):
            row = rows[c.autotask_id]
            if result is not None and result.ok:
                total, status = _dec(getattr(result.element, "total", None)), _status(result.element)
                ledger.record_updated(tenant, doc_type, c.autotask_id, content_hash=c.content_hash, xero_status=status, xero_total=total)
                o = _outcome(c, groups[c.autotask_id], "updated in Xero", row.xero_id, row.xero_number)
                o.xero_total, o.status = total, status
                logger.info("updated draft %s in Xero to match Autotask", row.xero_number)
            else:
                reason = "; ".join(result.errors) if result is not None else "Xero did not answer the update; it is sent again next run"
                ledger.note(tenant, doc_type, c.autotask_id, f"update refused: {reason}")
                o = _outcome(c, groups[c.autotask_id], "needs attention", row.xero_id, row.xero_number)
                o.reason, o.fix = reason, fix_for(reason)
            outcomes[c.autotask_id] = o
    return outcomes


def _company(group: pd.DataFrame) -> int:
    return int(group["contact_number"].iloc[0])


def _outcome(c: Candidate, g: pd.DataFrame, action: str, xero_id: str | None = None, number: str | None = None) -> InvoiceOutcome:
    key = c.natural_key if c.natural_key and not _is_url(c.natural_key) and not c.natural_key.startswith(REFERENCE_MARKER) else None
    return InvoiceOutcome(
        autotask_id=c.autotask_id,
        autotask_number=c.autotask_number or str(c.autotask_id),
        contact=str(g["contact_name"].iloc[0]),
        currency=str(g["currency_code"].iloc[0]),
        autotask_total=g["autotask_total"].iloc[0],
        action=action,
        xero_id=xero_id,
        xero_number=number or key,
        document_type=str(g["document_type"].iloc[0]) if "document_type" in g.columns else "ACCREC",
        note=(g["rounding_note"].iloc[0] or None) if "rounding_note" in g.columns else None,
    )


def _already(c: Candidate, g: pd.DataFrame, row) -> InvoiceOutcome:
    action = "already in Xero" if row.state == DocState.SYNCED else "already voided in Xero"
    o = _outcome(c, g, action, row.xero_id, row.xero_number)
    o.xero_total, o.status = _dec(row.xero_total), row.xero_status
    if row.attention:
        o.reason = row.attention
    return o


def _skipped(ledger, tenant: str, doc_type: str, c: Candidate, g: pd.DataFrame) -> InvoiceOutcome:
    row = ledger.records(tenant, doc_type, [c.autotask_id]).get(c.autotask_id)
    if row is not None and row.state == DocState.SYNCED:
        return _already(c, g, row)
    return _outcome(c, g, "in flight elsewhere")


# ---- voided in Autotask ------------------------------------------------------------------------
@task(name="apply-autotask-voids", cache_policy=NONE)
def apply_voids(tenant: str, run_id: str, voided: list) -> dict[int, InvoiceOutcome]:
    """Autotask invoices voided after they reached Xero: DRAFT/SUBMITTED copies are deleted, AUTHORISED
    ones voided, when no payment or credit is allocated; otherwise a person is asked to do it."""
    logger = get_run_logger()
    settings = load_tenant(tenant)
    ledger = ledger_for(settings)
    xero = xero_gateway(settings)
    by_id = {int(s.autotask_id): s for s in voided}
    outcomes: dict[int, InvoiceOutcome] = {}
    for doc_type in (DOC_INVOICE, DOC_CREDIT_NOTE):
        rows = {k: r for k, r in ledger.records(tenant, doc_type, list(by_id)).items() if r.xero_id}
        for k, r in rows.items():
            if r.state == DocState.VOIDED:
                outcomes[k] = _void_outcome(r, by_id[k], "already voided in Xero", r.xero_status)
        live = [r for r in rows.values() if r.state == DocState.SYNCED]
        if not live:
            continue
        if doc_type == DOC_CREDIT_NOTE:
            docs = {str(d.credit_note_id): d for d in xero.find_credit_notes(ids=[r.xero_id for r in live])}
        else:
            docs = {str(d.invoice_id): d for d in xero.find_invoices(ids=[r.xero_id for r in live])}
        changes: list[tuple[object, str]] = []
        for r in live:
            doc = docs.get(r.xero_id)
            status = _status(doc) if doc is not None else "missing"
            paid = doc is not None and _has_money_allocated(doc)
            if status in ("VOIDED", "DELETED"):
                ledger.record_voided(tenant, doc_type, r.autotask_id, xero_status=status)
                outcomes[r.autotask_id] = _void_outcome(r, by_id[r.autotask_id], "already voided in Xero", status)
            elif paid or status in ("PAID", "missing"):
                note = (f"voided in Autotask, but in Xero it is {status}"
                        + (" with payments or credit notes allocated" if paid else "")
                        + ": remove the payments or credits in Xero, then void it there (or reissue it in Autotask)")
                ledger.note(tenant, doc_type, r.autotask_id, note, xero_status=status)
                o = _void_outcome(r, by_id[r.autotask_id], "needs attention", status)
                o.reason, o.fix = note, "a person decides: the sync never voids a document with payments"
                outcomes[r.autotask_id] = o
                logger.warning("%s: %s", r.autotask_number, note)
            else:
                changes.append((r, "VOIDED" if status == "AUTHORISED" else "DELETED"))
        for start in range(0, len(changes), BATCH_SIZE):
            chunk = changes[start : start + BATCH_SIZE]
            pairs = [(r.xero_id, status) for r, status in chunk]
            key = _key(tenant, "void", doc_type, *[f"{a}:{b}" for a, b in pairs])
            setter = xero.set_credit_note_statuses if doc_type == DOC_CREDIT_NOTE else xero.set_invoice_statuses
            try:
                results = setter(pairs, idempotency_key=key)
            except XeroOutcomeUnknown:
                results = [None] * len(chunk)  # a status change repeats harmlessly: next run checks and sends again
            for (r, status), result in zip(chunk, results):
                if result is not None and result.ok:
                    ledger.record_voided(tenant, doc_type, r.autotask_id, xero_status=status)
                    action = "voided in Xero" if status == "VOIDED" else "deleted in Xero (was a draft)"
                    outcomes[r.autotask_id] = _void_outcome(r, by_id[r.autotask_id], action, status)
                    logger.info("%s voided in Autotask: %s", r.autotask_number, action)
                else:
                    reason = "; ".join(result.errors) if result is not None else "Xero did not answer; retried next run"
                    ledger.note(tenant, doc_type, r.autotask_id, f"voided in Autotask; Xero refused to void it: {reason}")
                    o = _void_outcome(r, by_id[r.autotask_id], "needs attention", None)
                    o.reason, o.fix = f"voided in Autotask; Xero refused to void it: {reason}", fix_for(reason)
                    outcomes[r.autotask_id] = o
    return outcomes


def _has_money_allocated(doc) -> bool:
    """Payments or credits allocated (invoice: AmountPaid/AmountCredited; credit note: payments, allocations)."""
    amounts = [getattr(doc, name, None) for name in ("amount_paid", "amount_credited")]
    if any((_dec(a) or 0) > 0 for a in amounts):
        return True
    if getattr(doc, "payments", None) or getattr(doc, "allocations", None):
        return True
    remaining, total = _dec(getattr(doc, "remaining_credit", None)), _dec(getattr(doc, "total", None))
    return remaining is not None and total is not None and remaining < total


def _void_outcome(row, s, action: str, status: str | None) -> InvoiceOutcome:
    return InvoiceOutcome(
        autotask_id=row.autotask_id, autotask_number=row.autotask_number or s.autotask_number, contact="", currency="",
        autotask_total=Decimal(0), action=action, xero_id=row.xero_id, xero_number=row.xero_number,
        xero_total=_dec(row.xero_total), status=status,
        document_type="ACCRECCREDIT" if row.doc_type == DOC_CREDIT_NOTE else "ACCREC",
    )


# ---- PDF attachments ---------------------------------------------------------------------------
@task(name="attach-invoice-pdfs", cache_policy=NONE)
def attach_pdfs(tenant: str) -> dict[int, str]:
    """When the tenant asks for it, the Autotask invoice PDF is attached to its Xero document once.

    Documents synced without one yet (new, or a failed attachment of an earlier run) get it now: one
    Autotask call (the client keeps three in flight per endpoint) and one Xero call (the gateway paces)
    each; `attached_at` in the ledger makes a rerun skip it. Returns {autotask id: problem} for failures.
    """
    settings = load_tenant(tenant)
    if not settings.attach_pdfs:
        return {}
    logger = get_run_logger()
    ledger = ledger_for(settings)
    xero = xero_gateway(settings)
    todo = [
        (doc_type, r)
        for doc_type in (DOC_INVOICE, DOC_CREDIT_NOTE)
        for r in ledger.records(tenant, doc_type).values()
        if r.state == DocState.SYNCED and r.xero_id and r.attached_at is None
    ][:ATTACHMENTS_PER_RUN]
    failed: dict[int, str] = {}

    if not todo:
        return failed
    at = autotask_client(settings)

    def one(item):
        doc_type, r = item
        try:
            file_name, content = at.invoice_pdf(r.autotask_id)
            attach = xero.attach_to_credit_note if doc_type == DOC_CREDIT_NOTE else xero.attach_to_invoice
            # A repeat can never duplicate: Xero replaces an attachment of the same file name. So each attempt
            # gets its own key (a key reused within minutes would replay the earlier answer instead).
            attach(r.xero_id, _safe_file_name(file_name, r), content, idempotency_key=_key(tenant, "pdf", r.xero_id, uuid.uuid4()))
            ledger.mark_attached(tenant, doc_type, r.autotask_id)
        except Exception as exc:  # noqa: BLE001 - one failed attachment never stops the others
            failed[r.autotask_id] = f"{type(exc).__name__}: {exc}"
            logger.warning("could not attach the PDF of %s (retried next run): %s", r.autotask_number, failed[r.autotask_id])

    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(one, todo))
    finally:
        at.close()
    return failed


def _safe_file_name(name: str, row) -> str:
    cleaned = "".join(ch for ch in name if ch not in '<>:"/\\|?*+').strip()
    return cleaned or f"Invoice_{row.autotask_number or row.autotask_id}.pdf"

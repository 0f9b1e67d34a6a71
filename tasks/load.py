"""Load: contacts and invoices into Xero, exactly once, with the ledger as the record of truth.

Only reads are retried by Prefect. Writes go through the ledger's claim → send → record steps, and a
write whose answer was lost is looked up in Xero by its natural key (the invoice number) before
anything is sent again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from atx.connections import ledger_for, xero_gateway
from atx.settings import load_tenant
from clients.xero import XeroOutcomeUnknown, XeroRateLimited
from core.invoices import XeroReference, content_hash, to_xero_contact, to_xero_invoice
from ledger import Candidate, DocState

DOC_INVOICE = "invoice"
BATCH_SIZE = 50
XERO_INVOICE_LINK = "https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={id}"


@dataclass
class InvoiceOutcome:
    """What happened to one Autotask invoice in this run; one row of the run report."""

    autotask_id: int
    autotask_number: str
    contact: str
    currency: str
    autotask_total: Decimal
    action: str  # created | already in Xero | recovered | set aside | in flight elsewhere | planned (dry run)
    xero_id: str | None = None
    xero_number: str | None = None
    xero_total: Decimal | None = None
    status: str | None = None
    reason: str | None = None
    fix: str | None = None

    @property
    def link(self) -> str | None:
        return XERO_INVOICE_LINK.format(id=self.xero_id) if self.xero_id else None


def idempotency_key(tenant: str, run_id: str, candidates: list[Candidate], attempt: int = 0) -> str:
    """Deterministic per batch and attempt, so an in-process retry of the same request replays."""
    text = "|".join([tenant, DOC_INVOICE, run_id, str(attempt)] + [f"{c.autotask_id}:{c.content_hash}" for c in candidates])
    return hashlib.sha256(text.encode()).hexdigest()[:64]


# ---- reference data ----------------------------------------------------------------------------
@task(name="read-xero-settings", retries=3, retry_delay_seconds=[5, 30, 120], cache_policy=NONE)
def read_xero_reference(tenant: str) -> XeroReference:
    settings = load_tenant(tenant)
    xero = xero_gateway(settings)
    org = xero.organisation()
    accounts = xero.accounts()
    tax_rates = xero.tax_rates()
    currencies = xero.currencies()
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


@task(name="resolve-unanswered-invoices", retries=3, retry_delay_seconds=[5, 30, 120], cache_policy=NONE)
def resolve_unanswered(tenant: str, run_id: str) -> list[InvoiceOutcome]:
    """Rows left `sending` by a run that died: look each up in Xero before it may be sent again."""
    settings = load_tenant(tenant)
    ledger = ledger_for(settings)
    stale = ledger.stale(tenant, DOC_INVOICE, run_id=run_id, owner_alive=_prefect_run_alive, lease=settings.send_lease)
    if not stale:
        return []
    xero = xero_gateway(settings)
    return _resolve(tenant, ledger, xero, [(r.autotask_id, r.natural_key) for r in stale])


def _resolve(tenant, ledger, xero, rows: list[tuple[int, str | None]]) -> list[InvoiceOutcome]:
    logger = get_run_logger()
    numbers = [n for _, n in rows if n]
    found = {i.invoice_number: i for i in xero.find_invoices(numbers=numbers)} if numbers else {}
    outcomes = []
    for autotask_id, number in rows:
        invoice = found.get(number)
        if invoice is not None and str(invoice.status) not in ("DELETED", "VOIDED"):
            ledger.record_synced(tenant, DOC_INVOICE, autotask_id, xero_id=str(invoice.invoice_id), xero_number=number)
            logger.info("found %s in Xero after a lost answer; recorded it, nothing re-sent", number)
        else:
            ledger.release(tenant, DOC_INVOICE, autotask_id)
            logger.info("%s is not in Xero after a lost answer; it will be sent again", number)
    return outcomes


# ---- contacts ----------------------------------------------------------------------------------
@task(name="sync-xero-contacts", cache_policy=NONE)
def sync_contacts(
    tenant: str, companies: pd.DataFrame, contacts: list[dict], company_ids: list[int], currencies: list[dict]
) -> dict:
    """Ensure a Xero contact for each Autotask company, keyed by ContactNumber = company id.

    Returns {"ids": {company id: ContactID}, "failed": {company id: reason}}. Creation is safe to
    repeat: contacts are looked up by ContactNumber before and after any write whose answer is lost.
    """
    logger = get_run_logger()
    settings = load_tenant(tenant)
    xero = xero_gateway(settings)
    numbers = [str(i) for i in company_ids]
    ids = {int(c.contact_number): str(c.contact_id) for c in xero.find_contacts(numbers=numbers) if c.contact_number}
    failed: dict[int, str] = {}
    primary = {int(c["companyID"]): c for c in contacts}
    by_id = {int(r["id"]): r for r in companies.to_dict("records")}
    currency_by_id = {int(c["id"]): str(c.get("name") or "") for c in currencies}
    missing = [i for i in company_ids if i not in ids and i in by_id]
    for start in range(0, len(missing), BATCH_SIZE):
        chunk = missing[start : start + BATCH_SIZE]
        models = [
            to_xero_contact(by_id[i], primary.get(i), currency_code=currency_by_id.get(_int(by_id[i].get("currencyID"))))
            for i in chunk
        ]
        key = hashlib.sha256(f"{tenant}|contacts|{','.join(map(str, chunk))}".encode()).hexdigest()[:64]
        try:
            results = xero.create_contacts(models, idempotency_key=key)
        except XeroOutcomeUnknown:
            results = None
        if results is None:
            found = {int(c.contact_number): str(c.contact_id) for c in xero.find_contacts(numbers=[str(i) for i in chunk]) if c.contact_number}
            ids.update(found)
            failed.update({i: "Xero did not answer while creating the contact; it will be retried next run" for i in chunk if i not in found})
            continue
        for company_id, result in zip(chunk, results):
            if result.ok:
                ids[company_id] = result.xero_id
                logger.info("created contact %s in Xero", by_id[company_id].get("companyName"))
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
    return "correct the invoice in Autotask or the mapping, then run the sync again"


@task(name="load-invoice-batch", cache_policy=NONE)
def load_invoice_batch(tenant: str, run_id: str, drafts: pd.DataFrame, contact_ids: dict[int, str]) -> list[InvoiceOutcome]:
    logger = get_run_logger()
    settings = load_tenant(tenant)
    ledger = ledger_for(settings)
    xero = xero_gateway(settings)
    groups = {int(k): g for k, g in drafts.groupby("autotask_invoice_id", sort=False)}
    candidates = [
        Candidate(
            autotask_id=k,
            autotask_number=str(g["autotask_number"].iloc[0]),
            natural_key=g["invoice_number"].iloc[0],
            content_hash=content_hash(g),
            document_date=g["date"].iloc[0],
        )
        for k, g in groups.items()
    ]
    outcomes: dict[int, InvoiceOutcome] = {}
    for attempt in range(3):
        key = idempotency_key(tenant, run_id, candidates, attempt)
        claimed = ledger.claim(tenant, DOC_INVOICE, candidates, run_id=run_id, idempotency_key=key)
        for c in candidates:
            if c not in claimed and c.autotask_id not in outcomes:
                outcomes[c.autotask_id] = _skipped(ledger, tenant, c, groups[c.autotask_id])
        if not claimed:
            break
        invoices = [to_xero_invoice(groups[c.autotask_id], contact_ids.get(_company(groups[c.autotask_id]))) for c in claimed]
        try:
            results = xero.create_invoices(invoices, idempotency_key=key)
        except XeroOutcomeUnknown:
            logger.warning("Xero's answer to a batch of %d invoices was lost; looking them up before re-sending", len(claimed))
            _resolve(tenant, ledger, xero, [(c.autotask_id, c.natural_key) for c in claimed])
            state = ledger.records(tenant, DOC_INVOICE, [c.autotask_id for c in claimed])
            for c in claimed:
                if state[c.autotask_id].state == DocState.SYNCED:
                    outcomes[c.autotask_id] = _outcome(c, groups[c.autotask_id], "recovered", state[c.autotask_id].xero_id)
            candidates = [c for c in claimed if state[c.autotask_id].state != DocState.SYNCED]
            continue
        except XeroRateLimited:
            for c in claimed:  # a 429 means Xero did nothing with the batch
                ledger.release(tenant, DOC_INVOICE, c.autotask_id)
            raise
        for c, result in zip(claimed, results):
            g = groups[c.autotask_id]
            if result.ok:
                ledger.record_synced(tenant, DOC_INVOICE, c.autotask_id, xero_id=result.xero_id, xero_number=result.number)
                o = _outcome(c, g, "created", result.xero_id, result.number)
                o.xero_total = getattr(result.element, "total", None)
                o.status = str(getattr(result.element, "status", "") or "")
                outcomes[c.autotask_id] = o
                logger.info("created %s for %s in Xero", result.number, g["contact_name"].iloc[0])
            else:
                reason = "; ".join(result.errors) or "Xero refused the invoice without a message"
                fix = fix_for(reason)
                ledger.set_aside(tenant, DOC_INVOICE, c.autotask_id, autotask_number=c.autotask_number, reason=reason, fix=fix)
                o = _outcome(c, g, "set aside")
                o.reason, o.fix = reason, fix
                outcomes[c.autotask_id] = o
                logger.warning("set aside %s: %s (fix: %s)", c.autotask_number, reason, fix)
        break
    else:
        for c in candidates:
            outcomes.setdefault(c.autotask_id, _outcome(c, groups[c.autotask_id], "in flight elsewhere"))
    return [outcomes[k] for k in groups if k in outcomes]


def _company(group: pd.DataFrame) -> int:
    return int(group["contact_number"].iloc[0])


def _outcome(c: Candidate, g: pd.DataFrame, action: str, xero_id: str | None = None, number: str | None = None) -> InvoiceOutcome:
    return InvoiceOutcome(
        autotask_id=c.autotask_id,
        autotask_number=c.autotask_number or str(c.autotask_id),
        contact=str(g["contact_name"].iloc[0]),
        currency=str(g["currency_code"].iloc[0]),
        autotask_total=g["autotask_total"].iloc[0],
        action=action,
        xero_id=xero_id,
        xero_number=number or c.natural_key,
    )


def _skipped(ledger, tenant: str, c: Candidate, g: pd.DataFrame) -> InvoiceOutcome:
    row = ledger.records(tenant, DOC_INVOICE, [c.autotask_id]).get(c.autotask_id)
    if row is not None and row.state == DocState.SYNCED:
        o = _outcome(c, g, "already in Xero", row.xero_id, row.xero_number)
        if row.content_hash != c.content_hash:
            o.action = "already in Xero (changed in Autotask since)"
        return o
    return _outcome(c, g, "in flight elsewhere")

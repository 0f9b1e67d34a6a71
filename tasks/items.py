"""Xero items the invoices' lines name, created once (the mapping's `items.create_missing`).

Called from the invoices flow's reading and planning, after the pure mapping gave each line its ItemCode
(core.items): items the ledger already records (kind "item", keyed by code) cost nothing; the others are
looked up in Xero in one call, and those Xero lacks are created in one batch. Each item created or found is
recorded, so a rerun creates none. An item Xero refuses sets aside the invoices that need it, with Xero's
reason.
"""
from __future__ import annotations

from prefect import get_run_logger
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.documents import DocumentPlan, TargetOutcomeUnknown
from core.items import LEDGER_KIND, ItemDraft, code_key, codes_needed, set_aside_needing
from ledger.models import DocState
from tasks.prefect_task import task


@task(name="ensure-xero-items", cache_policy=NONE)
def ensure_items(ctx: TenantContext, plans: list[DocumentPlan], drafts: dict[str, ItemDraft]) -> list[DocumentPlan]:
    needed = codes_needed(plans)
    if not needed:
        return plans
    logger = get_run_logger()
    known = ctx.ledger.records(ctx.tenant, LEDGER_KIND, list(needed))
    missing = [key for key in needed if key not in known or known[key].state != DocState.SYNCED]
    if not missing:
        return plans
    found = {code_key(item.code): item for item in ctx.xero.find_items([needed[k] for k in missing])}
    for key, item in found.items():
        _record(ctx, key, item.id, item.code)
    to_create = [drafts.get(key) or ItemDraft(code=needed[key], name=needed[key]) for key in missing
                 if key not in found]
    if not to_create:
        return plans
    refused: dict[str, str] = {}
    try:
        answers = ctx.xero.create_items(to_create, idempotency_key=f"{ctx.run_id}:items")
    except TargetOutcomeUnknown:
        # Look before sending again: what Xero made is recorded, the rest waits for the next run.
        again = {code_key(item.code): item for item in ctx.xero.find_items([d.code for d in to_create])}
        for draft in to_create:
            item = again.get(code_key(draft.code))
            if item is not None:
                _record(ctx, code_key(draft.code), item.id, item.code)
            else:
                refused[code_key(draft.code)] = "Xero's answer was lost and the item was not found; the next run tries again"
        return set_aside_needing(plans, refused)
    for draft, answer in zip(to_create, answers):
        if answer.ok and answer.item is not None:
            _record(ctx, code_key(draft.code), answer.item.id, answer.item.code)
            logger.info("created Xero item %s (%s)", answer.item.code, draft.name)
        else:
            refused[code_key(draft.code)] = "; ".join(answer.errors)
            logger.warning("Xero refused item %s: %s", draft.code, refused[code_key(draft.code)])
    return set_aside_needing(plans, refused)


def _record(ctx: TenantContext, key: str, item_id: str, code: str) -> None:
    ctx.ledger.upsert_synced(ctx.tenant, LEDGER_KIND, key, target_id=item_id, content_hash=None,
                             source_number=code, target_number=code)

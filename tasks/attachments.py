"""Attachments: the source document's PDF, attached once to its Xero copy, for kinds that carry them."""
from __future__ import annotations

import contextvars
import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.documents import DocumentKind
from ledger import DocState

# Attachments per run: each is one Autotask and one Xero call; the rest follow on the next run.
ATTACHMENTS_PER_RUN = 200

# (Autotask client, ledger row) -> (file name, PDF bytes)
FetchPdf = Callable[[object, object], tuple[str, bytes]]


@task(name="attach-pdfs", cache_policy=NONE)
def attach_pdfs(ctx: TenantContext, kinds: tuple[DocumentKind, ...], fetch: FetchPdf,
                only_ids: list[str] | None = None) -> dict[str, str]:
    """Documents synced without their PDF yet (new, or a failed attachment of an earlier run) get it now:
    one Autotask call (the client keeps three in flight per endpoint) and one Xero call (the gateway
    paces) each; the ledger's `attached_at` fact makes a rerun skip it. `only_ids`: only these documents (a
    run for a few documents leaves the others' attachments to the scheduled runs). Returns {source id: problem}."""
    if not ctx.settings.attach_pdfs:
        return {}
    logger = get_run_logger()
    todo = [(kind, r) for kind in kinds if kind.attachments
            for r in ctx.ledger.records(ctx.tenant, kind.name).values()
            if r.state == DocState.SYNCED and r.target_id and r.attached_at is None
            and (only_ids is None or r.source_id in only_ids)][:ATTACHMENTS_PER_RUN]
    failed: dict[str, str] = {}
    if not todo:
        return failed

    def one(at, item):
        kind, r = item
        try:
            file_name, content = fetch(at, r)
            # A repeat can never duplicate: Xero replaces an attachment of the same file name. So each attempt
            # gets its own key (a key reused within minutes would replay the earlier answer instead).
            key = hashlib.sha256(f"{ctx.tenant}|pdf|{r.target_id}|{uuid.uuid4()}".encode()).hexdigest()[:64]
            ctx.xero.attach(kind, r.target_id, safe_file_name(file_name, r), content, idempotency_key=key)
            ctx.ledger.mark_attached(ctx.tenant, kind.name, r.source_id)
        except Exception as exc:  # noqa: BLE001 - one failed attachment never stops the others
            failed[r.source_id] = f"{type(exc).__name__}: {exc}"
            logger.warning("could not attach the PDF of %s (retried next run): %s", r.source_number, failed[r.source_id])

    with ctx.autotask() as at, ThreadPoolExecutor(max_workers=3) as pool:
        # Each attachment runs in this task's context (a copy each), so its Xero write is audited under this run.
        futures = [pool.submit(contextvars.copy_context().run, one, at, item) for item in todo]
        for future in futures:
            future.result()
    return failed


def safe_file_name(name: str, row) -> str:
    cleaned = "".join(ch for ch in name if ch not in '<>:"/\\|?*+').strip()
    return cleaned or f"Invoice_{row.source_number or row.source_id}.pdf"

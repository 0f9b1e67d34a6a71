"""Attachments: the source document's PDF, attached once to its Xero copy, for kinds that carry them."""
from __future__ import annotations

import contextvars
import hashlib
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prefect import get_run_logger
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.call_budget import pdfs_text, plan_pdfs
from core.documents import DocumentKind, TargetLimitReached
from ledger import DocState
from tasks.prefect_task import task

# (Autotask client, ledger row) -> (file name, PDF bytes)
FetchPdf = Callable[[object, object], tuple[str, bytes]]


@dataclass
class Attached:
    """What a run did with the PDFs waiting: attached, left for a later run (and why), failed."""

    attached: int = 0
    left: int = 0
    why_left: str | None = None  # "daily budget", "xero.pdfs_per_run", "an API limit was reached", ...
    failures: dict[str, str] = field(default_factory=dict)  # source id -> problem

    @property
    def text(self) -> str:
        return pdfs_text(self.attached, self.left, self.why_left)


@task(name="attach-pdfs", cache_policy=NONE)
def attach_pdfs(ctx: TenantContext, kinds: tuple[DocumentKind, ...], fetch: FetchPdf,
                only_ids: list[str] | None = None) -> Attached:
    """Documents synced without their PDF yet (new, of an earlier run whatever its window, or a failed
    attachment) get it now, oldest first: one Autotask call (the client keeps three in flight per endpoint)
    and one Xero call (the gateway paces) each; the ledger's `attached_at` fact makes a rerun skip it.
    The run's documents are sent by now, so the PDFs spend only what the day's Xero budget leaves, less a
    reserve for the day's later runs (core/call_budget.py `plan_pdfs`); the rest wait for the next run, or
    the next day. `only_ids`: only these documents (a run for a few documents leaves the others'
    attachments to the scheduled runs)."""
    done = Attached()
    if not ctx.settings.attach_pdfs:
        return done
    logger = get_run_logger()
    waiting = sorted(((kind, r) for kind in kinds if kind.attachments
                      for r in ctx.ledger.records(ctx.tenant, kind.name).values()
                      if r.state == DocState.SYNCED and r.target_id and r.attached_at is None
                      and (only_ids is None or r.source_id in only_ids)),
                     key=lambda item: item[1].id)  # the ledger's oldest rows first: nothing waits for ever
    if not waiting:
        return done
    plan = plan_pdfs(len(waiting), status=ctx.xero.call_budget_status(), per_run=ctx.settings.xero.pdfs_per_run)
    todo = waiting[:plan.now]
    lock, limit_reached = threading.Lock(), threading.Event()

    def one(at, item):
        kind, r = item
        if limit_reached.is_set():
            return
        try:
            file_name, content = fetch(at, r)
            # A repeat can never duplicate: Xero replaces an attachment of the same file name. So each attempt
            # gets its own key (a key reused within minutes would replay the earlier answer instead).
            key = hashlib.sha256(f"{ctx.tenant}|pdf|{r.target_id}|{uuid.uuid4()}".encode()).hexdigest()[:64]
            ctx.xero.attach(kind, r.target_id, safe_file_name(file_name, r), content, idempotency_key=key)
            ctx.ledger.mark_attached(ctx.tenant, kind.name, r.source_id)
            with lock:
                done.attached += 1
        except TargetLimitReached as exc:
            # The day's budget (or Xero's day) ran out under this run, another process sharing it: the
            # rest wait for the next run. Nothing is wrong with this document.
            if not limit_reached.is_set():
                limit_reached.set()
                logger.warning("PDFs stop for now: %s", exc)
        except Exception as exc:  # noqa: BLE001 - one failed attachment never stops the others
            with lock:
                done.failures[r.source_id] = f"{type(exc).__name__}: {exc}"
            logger.warning("could not attach the PDF of %s (retried next run): %s", r.source_number,
                           done.failures[r.source_id])

    if todo:
        with ctx.autotask() as at, ThreadPoolExecutor(max_workers=3) as pool:
            # Each attachment runs in this task's context (a copy each), so its Xero write is audited under this run.
            futures = [pool.submit(contextvars.copy_context().run, one, at, item) for item in todo]
            for future in futures:
                future.result()
    done.left = len(waiting) - done.attached
    if plan.why_later is not None:
        done.why_left = plan.why_later
    elif limit_reached.is_set():
        done.why_left = "an API limit was reached"
    elif done.failures:
        done.why_left = "failed; retried next run"
    (logger.warning if done.left else logger.info)("%s", done.text)
    return done


def safe_file_name(name: str, row) -> str:
    cleaned = "".join(ch for ch in name if ch not in '<>:"/\\|?*+').strip()
    return cleaned or f"Invoice_{row.source_number or row.source_id}.pdf"

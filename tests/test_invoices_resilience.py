"""The load path under the failures that used to drop or duplicate a document, through real flow runs over
HTTP against both simulators: a day limit mid-run, set-aside documents dated before the next window, a
credit note set aside by the mapping, and a mapping set-aside meeting a row whose answer was lost."""
from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
import yaml

from atx.connections import ledger_for
from ledger import DocState
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import DEMO, END, SINCE, UNTIL, assert_each_once, connect, live_invoices, manual_clock, mapping_file, run
from tests.test_invoices_documents import clone_invoice

pytestmark = pytest.mark.e2e


def _partial_accounts() -> dict:
    demo = yaml.safe_load(DEMO.read_text())
    return dict(demo["accounts"], by_gl_account={k: v for k, v in demo["accounts"]["by_gl_account"].items() if k != 5})


def test_a_day_limit_mid_run_stops_gracefully_and_the_next_run_sends_the_rest(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=120, window_end=END, clock=manual_clock()) as stack:
        settings = connect(stack, "acme")
        # The first batch goes through; the second is refused with Xero's day limit.
        stack.xero.faults.headers_429["X-Rate-Limit-Problem"] = "day"
        stack.xero.faults.script("429", method="PUT", path_prefix="/api.xro/2.0/Invoices", times=1, after=1)
        state, first = run()
        assert state.message.startswith("stopped early"), state.message
        assert "day limit" in state.message
        left = {o.autotask_id for o in first.outcomes if o.action.startswith("not sent yet")}
        assert first.count("created") > 0 and left
        rows = ledger_for(settings).records("acme", "invoice")
        assert not [r for r in rows.values() if r.state == DocState.SENDING], "rows left sending after a 429"
        assert all(rows[str(k)].state != DocState.SYNCED for k in left if str(k) in rows)
        assert ledger_for(settings).high_water("acme", "invoices") is None  # not moved past unsent documents

        stack.xero.faults.clear()
        state, second = run()
        assert not state.message.startswith("stopped early")
        assert {o.autotask_id for o in second.outcomes if o.action == "created"} == left
        assert second.count("created") + first.count("created") + second.set_aside_count == len(live_invoices(stack))
        assert ledger_for(settings).high_water("acme", "invoices") == UNTIL
        assert_each_once(stack, settings)


def test_set_aside_documents_before_the_next_window_are_retried_and_credits_keep_their_type(atx_home, prefect_server, tmp_path):
    with SandboxStack(seed=11, invoices=30, window_end=END, clock=manual_clock()) as stack:
        settings = connect(stack, "acme", mapping=mapping_file(tmp_path, "partial", accounts=_partial_accounts()))
        _, planned = run(dry_run=True)
        source = next(i for i in live_invoices(stack) if i["id"] in {s.autotask_id for s in planned.set_aside})
        credit = clone_invoice(stack, source, 880004, sign=-1)  # a credit the partial mapping also refuses

        _, first = run()
        aside = {s.autotask_id for s in first.set_aside}
        assert credit["id"] in aside
        ledger = ledger_for(settings)
        assert ledger.records("acme", "credit_note")[str(credit["id"])].state == DocState.SET_ASIDE
        assert str(credit["id"]) not in ledger.records("acme", "invoice")  # not recorded as an invoice

        # Weeks later, the mapping fixed: the window starts from the high-water mark, after these dates.
        settings = connect(stack, "acme", mapping=mapping_file(tmp_path, "fixed"))
        until = UNTIL + timedelta(days=60)
        window_start = UNTIL - timedelta(days=settings.lookback_days)
        dated = {i["id"]: date.fromisoformat(i["invoiceDateTime"][:10]) for i in live_invoices(stack)}
        assert any(dated[k] < window_start for k in aside), "the test needs a set-aside document before the window"
        state, second = run(since=None, until=until)
        created = {o.autotask_id for o in second.outcomes if o.action == "created"}
        assert created == aside, sorted(aside - created)
        assert second.set_aside_count == 0
        assert ledger.records("acme", "credit_note")[str(credit["id"])].state == DocState.SYNCED
        assert_each_once(stack, settings)


def test_a_mapping_set_aside_never_turns_a_lost_answer_into_a_second_copy(atx_home, prefect_server, tmp_path):
    clock = manual_clock()
    with SandboxStack(seed=11, invoices=12, window_end=END, clock=clock) as stack:
        xero_numbers = mapping_file(tmp_path, "xero", invoice_number="xero")
        settings = connect(stack, "acme", mapping=xero_numbers)
        # Run 1: the batch is created, its answer lost, the lookup refused: rows stay `sending`.
        stack.xero.faults.retry_after_seconds = 3600
        stack.xero.faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Invoices", times=1)
        stack.xero.faults.script("429", method="GET", path_prefix="/api.xro/2.0/Invoices", times=1)
        run(expect_completed=False)
        sending = [r for r in ledger_for(settings).records("acme", "invoice").values() if r.state == DocState.SENDING]
        assert sending

        # Run 2: the mapping now refuses every invoice, and the lookup is refused again. The set-aside
        # must not take over the `sending` rows: only a lookup may move them on.
        demo = yaml.safe_load(DEMO.read_text())
        refuse_all = dict(demo["accounts"], by_gl_account={}, default=None)
        settings = connect(stack, "acme", mapping=mapping_file(tmp_path, "refuse", invoice_number="xero", accounts=refuse_all))
        stack.xero.faults.script("429", method="GET", path_prefix="/api.xro/2.0/Invoices", times=1)
        state, _ = run(expect_completed=False)
        rows = ledger_for(settings).records("acme", "invoice")
        assert all(rows[r.source_id].state == DocState.SENDING for r in sending)

        # Run 3, days later, the mapping back: the rows are found by their Url, nothing is sent twice.
        clock.advance(3 * 24 * 3600)
        stack.xero.faults.clear()
        settings = connect(stack, "acme", mapping=xero_numbers)
        run()
        urls = Counter(d.get("Url") for d in stack.org.invoices.values() if d["Type"] == "ACCREC" and d["Status"] != "DELETED")
        assert all(n == 1 for n in urls.values()), [u for u, n in urls.items() if n > 1]
        assert_each_once(stack, settings)

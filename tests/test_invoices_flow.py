"""The invoices flow end to end: a real Prefect run, over HTTP, against both simulators.

Every test ends with the same check: each Autotask invoice is in Xero exactly once, with the same
total and tax to the cent, or is set aside in the ledger with a reason; and the ledger agrees with Xero.
"""
from __future__ import annotations

from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

import threading
import uuid
from collections import Counter
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from atx.connections import forget_clients, ledger_for, xero_gateway
from ledger import Candidate, DocState
from sandbox.stack import SandboxStack

pytestmark = pytest.mark.e2e

END = date(2026, 11, 24)
SINCE, UNTIL = END - timedelta(days=40), END


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=30, window_end=END) as s:
        yield s


def money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def run(tenant="acme", **params):
    from flows.invoices import invoices

    params.setdefault("since", SINCE)
    params.setdefault("until", UNTIL)
    state = invoices(tenant=tenant, return_state=True, **params)
    assert state.is_completed(), state.message
    return state, state.result()


def xero_accrec(settings) -> list:
    return [i for i in xero_gateway(settings).find_invoices(where='Type=="ACCREC"', with_lines=True)]


def assert_exactly_once(stack: SandboxStack, settings) -> None:
    ledger = ledger_for(settings).records(settings.name, "invoice")
    in_xero = xero_accrec(settings)
    counts = Counter(i.invoice_number for i in in_xero)
    by_number = {i.invoice_number: i for i in in_xero}
    assert all(n == 1 for n in counts.values()), f"duplicates in Xero: {[k for k, n in counts.items() if n > 1]}"
    for inv in stack.autotask.records("Invoices"):
        if inv.get("isVoided"):
            continue
        number = inv["invoiceNumber"]
        row = ledger.get(str(inv["id"]))
        assert row is not None, f"{number} was silently dropped: neither in the ledger nor reported"
        if row.state == DocState.SET_ASIDE:
            assert number not in by_number and row.reason and row.fix
            continue
        assert row.state == DocState.SYNCED, (number, row.state)
        xi = by_number[number]
        assert str(xi.invoice_id) == row.target_id
        # to the cent: Autotask may keep its totals to four decimals
        assert Decimal(str(xi.total)) == money(Decimal(str(inv["invoiceTotal"]))), number
        assert Decimal(str(xi.total_tax)) == money(Decimal(str(inv["totalTaxValue"]))), number


def test_first_run_creates_each_invoice_and_a_rerun_creates_none(stack):
    settings = stack.connect_tenant("acme")
    state, first = run()
    created = first.count("created")
    live = [i for i in stack.autotask.records("Invoices") if not i.get("isVoided")]
    assert created + first.set_aside_count == len(live)
    assert created > 0
    assert_exactly_once(stack, settings)
    # The demo mapping's tracking category and branding themes reach Xero.
    in_xero = xero_accrec(settings)
    options = {t.option for i in in_xero for li in i.line_items for t in (li.tracking or [])}
    assert options and options <= {"Managed Services", "Projects", "Hardware"}
    themes = {t.name: str(t.branding_theme_id) for t in xero_gateway(settings).branding_themes()}
    assert {str(i.branding_theme_id) for i in in_xero} <= set(themes.values())
    assert str(themes["Managed Services"]) in {str(i.branding_theme_id) for i in in_xero}

    state, second = run()
    assert second.count("created") == 0
    assert second.count("already in Xero") == created
    assert_exactly_once(stack, settings)


def test_the_run_is_named_tagged_and_reports_every_document(stack):
    from prefect.client.orchestration import get_client

    from datetime import datetime, timezone

    from atx.cli import latest_progress

    stack.connect_tenant("acme")
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    state, summary = run()
    # What the CLI's progress bar reads: the run's own progress artifact, finished.
    assert latest_progress("acme", started) == 100.0
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
    assert flow_run.name == f"invoices · acme · {SINCE}..{UNTIL}"
    assert "tenant:acme" in flow_run.tags
    mine = [a for a in artifacts if a.flow_run_id == flow_run.id]
    table = next(a for a in mine if a.key == "invoices-acme" and a.type == "table")
    import json

    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    created = [r for r in rows if r["Action"] == "created"]
    assert len(created) == summary.count("created") > 0
    assert all(r["Xero number"] and r["Status"] for r in created)
    assert "Link" not in rows[0]  # go.xero.com cannot open the sandbox's documents
    assert any(a.type == "markdown" and "set aside" in a.data for a in mine)
    assert any(a.type == "progress" for a in mine)


def test_dry_run_writes_nothing_to_xero(stack):
    settings = stack.connect_tenant("acme")
    _, summary = run(dry_run=True)
    assert summary.count("planned") > 0
    assert xero_accrec(settings) == []
    rows = ledger_for(settings).records("acme", "invoice").values()
    assert not [r for r in rows if r.state in (DocState.SENDING, DocState.SYNCED)]


def test_a_lost_answer_is_looked_up_not_resent(stack):
    settings = stack.connect_tenant("acme")
    stack.xero.faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Invoices", times=1)
    _, summary = run()
    assert summary.count("recovered") > 0, [o.action for o in summary.outcomes]
    assert_exactly_once(stack, settings)


def test_a_run_killed_after_sending_is_resolved_by_lookup(stack):
    """Simulates a worker killed between claim+send and record: the next run finds the invoices in Xero."""
    settings = stack.connect_tenant("acme")
    _, planned = run(dry_run=True)
    victim = planned.outcomes[0]
    # The dead run: claimed and sent one invoice, then died before recording the answer.
    ledger = ledger_for(settings)
    dead_run = str(uuid.uuid4())
    ledger.claim(
        "acme", "invoice",
        [Candidate(str(victim.autotask_id), victim.autotask_number, victim.xero_number, "dead-run-hash")],
        run_id=dead_run, idempotency_key="dead-run-key",
    )
    from xero_python.accounting import Contact, Invoice, LineItem

    gateway = xero_gateway(settings)
    inv = next(i for i in stack.autotask.records("Invoices") if i["id"] == victim.autotask_id)
    sent = gateway.create_invoices(
        [Invoice(type="ACCREC", contact=Contact(name="Killed Run Ltd"), invoice_number=victim.xero_number,
                 date=date.fromisoformat(inv["invoiceDateTime"][:10]),
                 line_items=[LineItem(description="sent by a run that died", quantity=1, unit_amount=1, account_code="200")])],
        idempotency_key="dead-run-key",
    )
    assert sent[0].ok
    _, summary = run()
    numbers = Counter(i.invoice_number for i in xero_accrec(settings))
    assert numbers[victim.xero_number] == 1
    assert ledger_for(settings).records("acme", "invoice")[str(victim.autotask_id)].target_id == sent[0].xero_id


def test_two_overlapping_runs_never_duplicate(stack):
    settings = stack.connect_tenant("acme")
    results = []

    def go():
        forget_clients()
        results.append(run())

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2
    assert_exactly_once(stack, settings)
    total_created = sum(s.count("created") for _, s in results)
    live = [i for i in stack.autotask.records("Invoices") if not i.get("isVoided")]
    assert total_created <= len(live)


def test_a_window_past_one_autotask_page(atx_home, prefect_server):
    """600 invoices and their ~2,000 billing items: every Autotask query pages past 500 records."""
    with SandboxStack(seed=5, invoices=600, window_end=END) as stack:
        settings = stack.connect_tenant("bulk")
        _, summary = run("bulk")
        live = [i for i in stack.autotask.records("Invoices") if not i.get("isVoided")]
        assert len(live) > 500
        assert summary.count("created") + summary.set_aside_count == len(live)
        assert_exactly_once(stack, settings)


def test_rules_written_with_picklist_labels_match(stack, tmp_path):
    """Picklist values differ per Autotask tenant; labels do not. Rules keyed by label must match."""
    import yaml

    from sandbox.autotask.catalog import GENERAL_LEDGER_ACCOUNTS

    mapping = yaml.safe_load(open("mappings/demo.yaml"))
    mapping["accounts"] = {
        "refuse_unmapped": True,
        "by_gl_account_label": {label: ("260" if "Expenses" in label else "200") for label in GENERAL_LEDGER_ACCOUNTS.values()},
    }
    by_label = {"Service Desk": "Managed Services", "Projects": "Projects", "Procurement": "Hardware"}
    mapping["tracking"] = [{"category": "Department", "source": "billing_code.department", "options": by_label}]
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(mapping))
    settings = stack.connect_tenant("acme", mapping=str(path))
    _, summary = run()
    assert summary.set_aside_count == 0, [(s.autotask_number, s.reason) for s in summary.set_aside]
    assert_exactly_once(stack, settings)
    in_xero = xero_accrec(settings)
    assert in_xero
    for invoice in in_xero:
        for line in invoice.line_items:
            assert line.account_code in ("200", "260")
            assert {t.option for t in line.tracking or []} <= set(by_label.values())
    assert {t.option for i in in_xero for li in i.line_items for t in li.tracking or []} >= {"Managed Services"}


def test_a_copy_from_an_earlier_attempt_is_adopted_not_sent_again(stack):
    """A write whose answer was lost and that a lookup then missed (the row went back to waiting):
    the next run finds the number in Xero, sees it is our own earlier copy (same contact, same total,
    attempted with that number) and records it instead of calling it a clash or sending it again."""
    from sqlalchemy import update

    from ledger.models import SyncRecord

    settings = stack.connect_tenant("acme")
    run()
    ledger = ledger_for(settings)
    victim = next(r for r in ledger.records("acme", "invoice").values() if r.state == DocState.SYNCED)
    with ledger.session() as s:
        s.execute(update(SyncRecord).where(SyncRecord.id == victim.id).values(state=DocState.PENDING, target_id=None))
        s.commit()
    _, summary = run()
    outcome = next(o for o in summary.outcomes if o.autotask_id == int(victim.source_id))
    assert outcome.action == "recovered", (outcome.action, outcome.reason)
    assert summary.set_aside_count == 0
    assert ledger.records("acme", "invoice")[victim.source_id].target_id == victim.target_id
    assert_exactly_once(stack, settings)


def test_with_xero_numbering_an_attempted_document_is_looked_up_before_it_is_sent_again(stack, tmp_path):
    """Xero numbers the invoices, so nothing stops a second copy but our own lookup: a row that was
    attempted and is waiting again must be found by its Url marker, never sent twice."""
    import yaml
    from sqlalchemy import update

    from ledger.models import SyncRecord

    mapping = yaml.safe_load(open("mappings/demo.yaml"))
    mapping["invoice_number"] = "xero"
    path = tmp_path / "xero-numbers.yaml"
    path.write_text(yaml.safe_dump(mapping))
    settings = stack.connect_tenant("acme", mapping=str(path))
    run()
    ledger = ledger_for(settings)
    synced = [r for r in ledger.records("acme", "invoice").values() if r.state == DocState.SYNCED]
    victim = synced[0]
    with ledger.session() as s:
        s.execute(update(SyncRecord).where(SyncRecord.id == victim.id).values(state=DocState.PENDING, target_id=None))
        s.commit()
    _, summary = run()
    outcome = next(o for o in summary.outcomes if o.autotask_id == int(victim.source_id))
    assert outcome.action == "recovered", outcome.action
    urls = Counter(i.url for i in xero_accrec(settings))
    assert len(urls) == len(synced) and set(urls.values()) == {1}
    assert ledger.records("acme", "invoice")[victim.source_id].target_id == victim.target_id

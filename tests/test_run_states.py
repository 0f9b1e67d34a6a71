"""What the Prefect dashboard shows of a run, read back through the Prefect API after real runs against the
sandbox: the state's name and message, the keyed artifacts (current even when empty), the report's rows, the
flow run's own log lines, a failed check's report, and a dry run that tells what a real run would do.
"""
from __future__ import annotations

import copy
import json
from datetime import date, timedelta

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId, LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import ArtifactSort

from atx.connections import ledger_for
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import DEMO, END, UNTIL, SINCE, connect, live_invoices, manual_clock, mapping_file

pytestmark = pytest.mark.e2e

# What a finance person reads first in the invoice table, in the part of it a 1,400 px window shows beside the
# Prefect UI's panels (docs/screenshots/artifact-invoice-table.png).
FIRST_COLUMNS = ["Autotask number", "Contact", "Autotask total", "Xero total", "Status", "Action"]


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=30, window_end=END, clock=manual_clock()) as s:
        yield s


def run(flow=None, tenant="acme", **params):
    if flow is None:
        from flows.invoices import invoices as flow
    params.setdefault("since", SINCE)
    params.setdefault("until", UNTIL)
    return flow(tenant=tenant, return_state=True, **params)


def flow_run_of(state):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def artifacts_of(state) -> dict[str, object]:
    """The run's keyed artifacts by key (its last one under each key)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])), sort=ArtifactSort.CREATED_DESC)
    out: dict[str, object] = {}
    for a in found:
        if a.key:
            out.setdefault(a.key, a)
    return out


def latest(key: str):
    """What the Artifacts page shows under a key: its newest version, whichever run made it."""
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                     sort=ArtifactSort.CREATED_DESC, limit=1)[0]


def table(artifact) -> list[dict]:
    assert artifact.type == "table", (artifact.key, artifact.type)
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def flow_log(state) -> list[str]:
    """The flow run's own log lines (not its tasks'), as the run page shows them."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[state.state_details.flow_run_id])), limit=200)
    return [log.message for log in logs if log.task_run_id is None]


def _partial_accounts() -> dict:
    demo = yaml.safe_load(DEMO.read_text())
    return dict(demo["accounts"], by_gl_account={k: v for k, v in demo["accounts"]["by_gl_account"].items() if k != 5})


# ---- states and keyed artifacts ----------------------------------------------------------------------
def test_set_aside_documents_name_the_run_needs_attention_and_a_clean_rerun_shows_none(stack, tmp_path):
    connect(stack, "acme", mapping=mapping_file(tmp_path, "partial", accounts=_partial_accounts()))
    state = run()
    summary = state.result()
    aside = summary.set_aside_count
    assert aside > 0
    shown = flow_run_of(state).state
    assert shown.type.value == "COMPLETED" and shown.name == "Needs attention", (shown.name, shown.message)
    assert shown.message.startswith(f"completed with {aside} set aside")
    assert "invoices-acme-set-aside" in shown.message
    mine = artifacts_of(state)
    assert len(table(mine["invoices-acme-set-aside"])) == aside
    assert "**Needs attention**" in mine["invoices-acme-summary"].data
    assert "invoices-acme-set-aside" in mine["invoices-acme-summary"].data
    # The first of them with reason and fix in the summary too, whose text wraps where a table's cells do not.
    assert all(f"- invoice {o.source_number}: " in mine["invoices-acme-summary"].data for o in summary.set_aside[:10])
    # The reason of each set-aside document is in the flow run's own log, not only in a task's.
    lines = flow_log(state)
    named = {o.source_number for o in summary.set_aside}
    assert any(line.startswith("set aside") and any(n in line for n in named) for line in lines), lines
    assert any(line.startswith(f"completed with {aside} set aside") for line in lines)

    # Progress: keyed, so it is listed, and it says how many documents of how many are done.
    progress = mine["invoices-acme-progress"]
    planned = sum(1 for o in summary.outcomes if o.kind in ("invoice", "credit_note"))
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert progress.description == f"Invoices for acme: {planned} of {planned} documents done"

    # The invoice table: what matters first, the long text last, no go.xero.com link for a sandbox tenant.
    rows = table(mine["invoices-acme"])
    assert list(rows[0])[:6] == FIRST_COLUMNS
    assert list(rows[0])[-1] == "Note" and "Link" not in rows[0]
    reasons = {r["Autotask number"]: r for r in rows if r["Action"] == "set aside"}
    assert set(reasons) == named

    # The mapping fixed: a clean run, and the set-aside and attention keys show the current (empty) state.
    connect(stack, "acme", mapping=mapping_file(tmp_path, "fixed"))
    state = run()
    shown = flow_run_of(state).state
    assert shown.name == "Completed" and state.result().set_aside_count == 0, (shown.name, shown.message)
    for key in ("invoices-acme-set-aside", "invoices-acme-attention"):
        now = latest(key)
        assert now.flow_run_id == state.state_details.flow_run_id
        assert now.type == "markdown" and now.data.startswith("**None.**"), (key, now.data)
    assert artifacts_of(state)["invoices-acme-progress"].description == progress.description


def test_the_invoice_table_links_to_xero_only_for_xeros_own_hosts():
    from decimal import Decimal

    from tasks.outcomes import Outcome, Result
    from tasks.report import _row

    created = Outcome(kind="invoice", source_id="7", source_number="INV-7", result=Result.CREATED, xero_id="abc",
                      xero_number="INV-7", source_total=Decimal("10"), xero_total=Decimal("10"), status="DRAFT",
                      detail=None, note="a long note about rounding")
    real = _row(created, links=True)
    assert real["Link"] == "https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID=abc"
    assert list(real)[-1] == "Note" and list(real)[:6] == FIRST_COLUMNS
    assert "Link" not in _row(created, links=False)


def test_the_summary_lists_the_first_documents_set_aside_with_reason_and_fix_as_text_that_wraps():
    """A table's cells do not wrap in the Prefect UI, so a long fix runs off a laptop's screen there; the
    summary's markdown shows the first of them whole, as the text it is (no "<...>" lost as a tag)."""
    from markdown_it import MarkdownIt

    from tasks.outcomes import Outcome, Result
    from tasks.report import SHOWN_IN_SUMMARY, RunSummary, summary_markdown

    fix = "add accounts.by_billing_code_id 29682808: <Xero account code>, or set accounts.default"
    aside = [Outcome(kind="invoice", source_id=str(n), source_number=f"INV-{n}", result=Result.SET_ASIDE,
                     reason="billing code 'Travel & Disbursements' has no account mapping", fix=fix)
             for n in range(1, SHOWN_IN_SUMMARY + 3)]
    changed = Outcome(kind="invoice", source_id="99", source_number="INV-99", result=Result.CHANGED_AFTER_APPROVAL,
                      reason="changed in Autotask after it was approved in Xero", fix="void it in Xero, then rerun")
    summary = RunSummary(tenant="acme", since=SINCE, until=UNTIL, dry_run=False, outcomes=[*aside, changed])
    html = MarkdownIt().render(summary_markdown(summary))
    for o in aside[:SHOWN_IN_SUMMARY]:
        assert (f"<li>invoice {o.source_number}: billing code 'Travel &amp; Disbursements' has no account mapping; "
                "fix: add accounts.by_billing_code_id 29682808: &lt;Xero account code&gt;, or set accounts.default"
                "</li>") in html
    assert f"INV-{SHOWN_IN_SUMMARY + 1}:" not in html
    assert "<li>and 2 more in <code>invoices-acme-set-aside</code></li>" in html
    assert ("<li>invoice INV-99: changed in Autotask after it was approved in Xero; what to do: void it in Xero, "
            "then rerun</li>") in html
    # A run with nothing to act on lists nothing.
    assert "<li>" not in MarkdownIt().render(summary_markdown(RunSummary("acme", SINCE, UNTIL, dry_run=False)))


def test_documents_needing_a_person_name_the_run_and_the_attention_artifact(stack, tmp_path):
    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, status="AUTHORISED"))
    assert run().is_completed()
    changed = live_invoices(stack)[0]
    line = next(l for l in stack.autotask.records("BillingItems") if l["invoiceID"] == changed["id"])
    stack.autotask.update("BillingItems", line["id"], {"description": "Changed after approval"})
    state = run()
    shown = flow_run_of(state).state
    assert shown.name == "Needs attention" and "1 needing a person" in shown.message, shown.message
    assert "invoices-acme-attention" in shown.message
    rows = table(artifacts_of(state)["invoices-acme-attention"])
    assert [r["Autotask number"] for r in rows] == [changed["invoiceNumber"]]
    assert list(rows[0])[-1] == "Problem" and "Link" not in rows[0]
    assert any(line.startswith("needs a person") and changed["invoiceNumber"] in line for line in flow_log(state))
    assert ledger_for(settings).records("acme", "invoice")[str(changed["id"])].target_id


# ---- routing: each reason its own label ---------------------------------------------------------------------
def test_a_tenant_whose_invoices_all_go_to_another_is_told_so_not_voided(stack):
    from flows.invoices import invoices

    other = stack.add_org("Other Entity Ltd", "NZ")
    customers = stack.customer_ids
    billed = {i["companyID"] for i in stack.autotask.records("Invoices")}
    idle = 999_999  # beta's only company has no invoices
    connect(stack, "acme", routing={"companies": [c for c in customers if c != idle]})
    connect(stack, "beta", org=other, routing={"companies": [idle]})
    state = run(invoices, "beta")
    summary = state.result()
    everyone = len(stack.autotask.records("Invoices"))
    assert summary.other_tenants == everyone and summary.outcomes == []
    report = artifacts_of(state)["invoices-beta-summary"].data
    assert f"| skipped: another tenant's (routing gives it to another Xero organisation) | {everyone} |" in report
    assert "voided before sync" not in report
    assert flow_run_of(state).state.name == "Completed"
    assert latest("routing-beta").data.startswith("**None.**")

    # One company claimed by no one: both tenants report it, as not routed, and name the routing artifact.
    connect(stack, "acme", routing={"companies": [c for c in customers if c not in (idle, sorted(billed)[0])]})
    state = run(invoices, "beta")
    unclaimed = {i["invoiceNumber"] for i in stack.autotask.records("Invoices") if i["companyID"] == sorted(billed)[0]}
    report = artifacts_of(state)["invoices-beta-summary"].data
    assert f"| skipped: not routed (no tenant's routing rules, or several, claim it); see routing-beta | {len(unclaimed)} |" \
        in report
    assert f"| skipped: another tenant's (routing gives it to another Xero organisation) | {everyone - len(unclaimed)} |" \
        in report
    shown = flow_run_of(state).state
    assert shown.name == "Needs attention" and "routing-beta" in shown.message, shown.message
    assert {r["Autotask number"] for r in table(latest("routing-beta"))} == unclaimed

    # The rules fixed: the routing artifact shows the current state, none.
    connect(stack, "acme", routing={"companies": [c for c in customers if c != idle]})
    state = run(invoices, "beta")
    assert flow_run_of(state).state.name == "Completed"
    now = latest("routing-beta")
    assert now.flow_run_id == state.state_details.flow_run_id and now.data.startswith("**None.**")


# ---- a failed check ------------------------------------------------------------------------------------
def test_a_failed_check_fails_in_one_line_per_problem_with_a_report_and_no_traceback(stack, tmp_path):
    data = yaml.safe_load(DEMO.read_text())
    data["accounts"]["default"] = "BOGUS"
    data["tax"]["default"] = "NOSUCHTAX"
    connect(stack, "acme", mapping=mapping_file(tmp_path, "broken", **data))
    state = run()
    shown = flow_run_of(state).state
    assert shown.type.value == "FAILED"
    lines = shown.message.split("\n")
    assert lines[0] == "tenant acme cannot sync until this is fixed (nothing was written):"
    assert len(lines) >= 3 and all(line.startswith("- ") and "Fix: " in line for line in lines[1:]), lines
    assert any("BOGUS" in line for line in lines) and any("NOSUCHTAX" in line for line in lines)
    assert "Traceback" not in shown.message and "\\n" not in shown.message
    report = artifacts_of(state)["invoices-acme-summary"]
    assert report.type == "markdown" and report.data.startswith("# Invoices for acme: cannot sync")
    paragraph = report.data.split("\n\n", 1)[1]
    assert "\n" not in paragraph and "BOGUS" in paragraph and "Fix:" in paragraph and "Nothing was written" in paragraph
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
            any_=[state.state_details.flow_run_id])))
    assert tasks and all(t.state.type.value == "COMPLETED" for t in tasks), [(t.name, t.state.name) for t in tasks]
    assert not [line for line in flow_log(state) if "Traceback" in line]
    assert not stack.org.invoices


# ---- dry runs tell what a real run would do -----------------------------------------------------------------
def _snapshot(stack, settings, kinds):
    ledger = ledger_for(settings)
    rows = {k: {i: (r.state, r.content_hash, r.target_id, r.updated_at) for i, r in ledger.records("acme", k).items()}
            for k in kinds}
    return rows, copy.deepcopy(stack.org.invoices), copy.deepcopy(stack.org.credit_notes), \
        copy.deepcopy(stack.org.contacts), copy.deepcopy(stack.autotask.records("Invoices"))


def test_a_dry_run_after_a_sync_reads_the_ledger_and_xero_and_writes_nothing(stack, tmp_path):
    from tests.test_invoices_contact_tax import _add_rate, _existing_contact, _nz_customer_with_invoices
    from tests.test_invoices_documents import clone_invoice

    mapping = mapping_file(tmp_path, "taxed", tax=dict(yaml.safe_load(DEMO.read_text())["tax"], from_contact=True),
                           write_back={"web_service_date": True})
    settings = connect(stack, "acme", mapping=mapping)
    # A customer whose Xero contact has its own default tax (a plan revised after the contacts are known), and a credit.
    _add_rate(stack, "TAX003", "15")
    _existing_contact(settings, _nz_customer_with_invoices(stack), "TAX003")
    credit = clone_invoice(stack, live_invoices(stack)[1], 880011, sign=-1)
    real = run().result()
    assert real.count("created") > 0 and any(o.kind == "credit_note" and o.action == "created" for o in real.outcomes)
    assert any(o.kind == "write_back" for o in real.outcomes)

    before = _snapshot(stack, settings, ("invoice", "credit_note", "write_back", "contact"))
    dry_state = run(dry_run=True)
    dry = dry_state.result()
    assert _snapshot(stack, settings, ("invoice", "credit_note", "write_back", "contact")) == before
    assert dry.count("planned") == 0, [(o.source_number, o.action) for o in dry.outcomes if o.action.startswith("planned")]
    sent = {(o.kind, o.source_id) for o in real.outcomes if o.action == "created" and o.kind != "write_back"}
    already = {(o.kind, o.source_id) for o in dry.outcomes if o.action == "already in Xero"}
    assert sent == already and (("credit_note", str(credit["id"])) in already)
    assert flow_run_of(dry_state).state.name == "Completed"

    # Changed and voided in Autotask since: the dry run says what the real run will write, from Xero's copies.
    changed, voided = live_invoices(stack)[2], live_invoices(stack)[3]
    line = next(l for l in stack.autotask.records("BillingItems") if l["invoiceID"] == changed["id"])
    stack.autotask.update("BillingItems", line["id"], {"description": "Changed after sync"})
    stack.autotask.update("Invoices", voided["id"], {"isVoided": True, "voidedDate": f"{END}T00:00:00Z"})
    before = _snapshot(stack, settings, ("invoice", "credit_note", "write_back", "contact"))
    dry = run(dry_run=True).result()
    assert _snapshot(stack, settings, ("invoice", "credit_note", "write_back", "contact")) == before
    actions = {o.source_id: o.action for o in dry.outcomes if o.kind == "invoice"}
    assert actions[str(changed["id"])] == "planned (dry run) (update in Xero)"
    assert actions[str(voided["id"])] == "planned (dry run) (delete in Xero (a draft))"
    assert dry.count("planned") == 2
    real = run().result()
    actions = {o.source_id: o.action for o in real.outcomes if o.kind == "invoice"}
    assert actions[str(changed["id"])] == "updated in Xero"
    assert actions[str(voided["id"])] == "deleted in Xero (was a draft)"


def test_dry_runs_of_bills_purchase_orders_and_payments_after_a_sync_plan_nothing_already_done(stack, tmp_path):
    from flows.bills import bills
    from flows.payments import payments
    from tests.test_payments_flow import mark_paid_in_autotask, pay_in_xero, synced_invoices, xero_invoice

    for target in ("bill", "purchase_order"):
        data = yaml.safe_load(DEMO.read_text())
        data["bills"]["target"] = target
        connect(stack, "acme", mapping=mapping_file(tmp_path, target, **data), flows=["invoices", "bills"])
        real = run(bills).result()
        made = {o.source_id for o in real.outcomes if o.action == "created"}
        assert made, target
        dry = run(bills, dry_run=True).result()
        assert {o.source_id for o in dry.outcomes if o.action == "already in Xero"} == made, target
        assert dry.count("planned") == 0, target

    settings = connect(stack, "acme", mapping=mapping_file(tmp_path, "approved", status="AUTHORISED"),
                       flows=["invoices", "payments"], payments={"to_xero": True, "bank_account": "090"})
    assert run().is_completed()
    (paid_at, _), (paid_x, row) = list(synced_invoices(settings).items())[:2]
    mark_paid_in_autotask(settings, paid_at, date(2026, 11, 20))
    pay_in_xero(settings, row.target_id, xero_invoice(settings, row.target_id).amount_due, date(2026, 11, 21))
    real = run(payments).result()
    assert real.count("created") == 2
    dry = run(payments, dry_run=True).result()
    assert dry.count("planned") == 0 and dry.count("created") == 0, [o.action for o in dry.outcomes]
    assert {o.source_id for o in dry.outcomes if o.kind == "paid_date" and o.action == "already in Autotask"} == {paid_x}
    assert xero_invoice(settings, synced_invoices(settings)[paid_at].target_id).amount_due == 0  # the real run paid it


# ---- stopped early ---------------------------------------------------------------------------------------
def test_a_run_stopped_by_the_call_budget_is_named_so(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=60, window_end=END, clock=manual_clock()) as stack:
        connect(stack, "acme", xero={"daily_call_budget": 9})  # room for the first batch, not the second
        state = run()
        shown = flow_run_of(state).state
        assert shown.type.value == "COMPLETED" and shown.name == "Stopped early", (shown.name, shown.message)
        assert shown.message.startswith("stopped early")
        assert any(line.startswith("stopped early") for line in flow_log(state))
        assert "**Stopped early**" in artifacts_of(state)["invoices-acme-summary"].data


# ---- a tenant's deployment syncs only that tenant -----------------------------------------------------------
def test_a_run_of_a_tenants_deployment_for_another_tenant_is_refused_before_reading(stack):
    """A deployment as `prefect deploy` makes it from prefect.yaml: the form's tenant field is free text (the
    schema comes from the flow), so the run itself refuses another tenant."""
    from prefect.flow_engine import run_flow

    from flows.invoices import invoices

    connect(stack, "acme")
    connect(stack, "beta", org=stack.add_org("Beta Ltd", "NZ"))
    deployment_id = invoices.to_deployment(name="acme", parameters={"tenant": "acme", "dry_run": False}).apply()
    with get_client(sync_client=True) as client:
        assert "readOnly" not in client.read_deployment(deployment_id).parameter_openapi_schema["properties"]["tenant"]
        flow_run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"tenant": "beta", "since": SINCE.isoformat(), "until": UNTIL.isoformat()})
    state = run_flow(invoices, flow_run=flow_run, parameters=flow_run.parameters, return_type="state")
    shown = flow_run_of(state).state
    assert shown.type.value == "FAILED"
    assert "invoices/acme" in shown.message and "'beta'" in shown.message and "invoices/beta" in shown.message
    assert "refused" in latest("invoices-acme-summary").data
    assert not stack.org.invoices and not [o for o in stack.xero.orgs.values() if o.invoices]


def test_a_large_run_s_table_keeps_every_document_a_person_must_read():
    """Past TABLE_ROWS the per-document table is cut (Prefect refuses an event over 1.5 MB, and a 10,000-row
    table is 2.9 MB), but never a set-aside or attention row: routine rows give way, the order is kept."""
    from tasks.outcomes import Outcome, Result
    from tasks.report import TABLE_ROWS, table_outcomes

    outcomes = [Outcome(kind="invoice", source_id=str(n), source_number=f"AT{n}", result=Result.CREATED)
                for n in range(TABLE_ROWS + 500)]
    for n in (5, TABLE_ROWS + 10, TABLE_ROWS + 499):
        outcomes[n] = Outcome(kind="invoice", source_id=str(n), source_number=f"AT{n}", result=Result.SET_ASIDE)
    outcomes[TABLE_ROWS + 20] = Outcome(kind="invoice", source_id="x", source_number="ATx",
                                        result=Result.NEEDS_ATTENTION)
    shown = table_outcomes(outcomes)
    assert len(shown) == TABLE_ROWS
    assert [o.source_number for o in shown if o.result != Result.CREATED] == [
        "AT5", f"AT{TABLE_ROWS + 10}", "ATx", f"AT{TABLE_ROWS + 499}"]
    assert [int(o.source_id) for o in shown if o.source_id != "x"] == sorted(
        int(o.source_id) for o in shown if o.source_id != "x")
    assert table_outcomes(outcomes[:TABLE_ROWS]) == outcomes[:TABLE_ROWS]

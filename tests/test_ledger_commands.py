"""`atx ledger show`, `resend` and `skip`: what the ledger says about each document, one document sent now
through the pipeline, and one kept out of Xero for good.

The end-to-end test runs the commands through typer's CliRunner against both simulators, over HTTP, with
real Prefect runs; what Xero holds is read back through the Xero gateway. The texts a row shows are checked
on their own, without HTTP.
"""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from atx.connections import ledger_for, xero_gateway
from core.documents import INVOICE, SKIPPED_BY_A_PERSON, Action, decide, fix_for
from core.ledger_rows import SHOWN_STATES, check_state, reason_and_fix, shown
from ledger import Candidate, DocState, Ledger, engine_for_url
from sandbox.stack import SandboxStack
from tasks.outcomes import Outcome, Result
from tasks.report import SKIPPED_LABEL, RunSummary, summary_markdown
from tests.test_invoices_changes import DEMO, END, SINCE, UNTIL, connect, manual_clock, run
from tests.test_invoices_mapping_e2e import NZ, NZ2, add_invoice

TRAVEL = 29682808  # the sandbox's "Travel & Disbursements" billing code, on GL account 5
FIRST, SECOND = 990001, 990002


def row(**values):
    base = dict(tenant="acme", kind="invoice", source_id="42", source_number="INV-42", state=DocState.SYNCED,
                target_id=None, target_number=None, target_status=None, run_id=None, claimed_at=None, reason=None,
                fix=None, attention=None, facts={})
    return SimpleNamespace(**{**base, **values})


# ---- what a row says, without HTTP -----------------------------------------------------------------
def test_a_set_aside_row_shows_its_recorded_reason_and_fix_or_the_fix_for_xeros_words():
    aside = row(state=DocState.SET_ASIDE, reason="line 1 (billing code 7) has no account mapping",
                fix="add accounts.by_billing_code_id 7: <Xero account code>")
    assert reason_and_fix(aside) == (aside.reason, aside.fix)
    refused = row(state=DocState.SET_ASIDE, reason="Account code '999' is not a valid code for this document.")
    assert reason_and_fix(refused) == (refused.reason, fix_for(refused.reason))
    assert "account code" in reason_and_fix(refused)[1]


def test_a_skipped_row_shows_who_skipped_it_when_and_why_and_how_to_take_it_back():
    skipped = row(state=DocState.SKIPPED, kind="credit_note", reason="billed twice in Autotask",
                  facts={"skipped_by": "pat", "skipped_at": "2026-11-24T09:30:12+00:00"})
    reason, fix = reason_and_fix(skipped)
    assert reason == "skipped by pat on 2026-11-24 09:30 UTC: billed twice in Autotask"
    assert "`atx ledger resend 42 --tenant acme --kind credit_note` un-skips it" in fix


def test_a_note_for_a_person_is_split_into_what_happened_and_what_to_do():
    changed = row(attention=INVOICE.after_change, target_number="INV-42", target_status="AUTHORISED")
    what, todo = reason_and_fix(changed)
    assert what == "changed in Autotask after it was approved in Xero"
    assert todo.startswith("raise a credit note in Xero")
    refused = row(attention="update refused: Account code '999' is not a valid code")
    assert reason_and_fix(refused) == (refused.attention, fix_for("Account code '999' is not a valid code"))
    line = shown(changed)
    assert (line.kind, line.source, line.state, line.xero) == ("invoice", "42 (INV-42)", "synced, needs a person",
                                                               "INV-42 (AUTHORISED)")
    assert reason_and_fix(row(target_number="INV-42")) == ("", "")  # in Xero, nothing wrong: nothing to say


def test_every_state_says_why_a_document_is_not_in_xero():
    for state in (DocState.PENDING, DocState.SENDING):
        reason, fix = reason_and_fix(row(state=state, run_id="r1", claimed_at=datetime(2026, 11, 24, tzinfo=timezone.utc)))
        assert reason and fix.startswith("nothing")


def test_an_unknown_state_is_refused_naming_the_states():
    assert check_state("set aside") == check_state("set-aside") == "set_aside"
    with pytest.raises(ValueError) as refused:
        check_state("lost")
    assert str(refused.value) == f"unknown state 'lost': the states are {', '.join(SHOWN_STATES)}"


def test_a_skipped_row_is_never_sent_whatever_the_plan_says():
    skipped = SimpleNamespace(state=DocState.SKIPPED, content_hash=None, target_id=None, natural_key="INV-42",
                              attempts=0, contact_id=None)
    sendable = SimpleNamespace(document_kind=INVOICE, void=False, set_aside=None, natural_key="INV-42")
    assert decide(sendable, skipped, None).action == Action.SKIP
    assert decide(sendable, skipped, None).why == SKIPPED_BY_A_PERSON
    voided = SimpleNamespace(**{**vars(sendable), "void": True})
    assert decide(voided, skipped, None).action == Action.SKIP


def test_the_run_summary_counts_skipped_by_a_person_on_its_own_row():
    summary = RunSummary(tenant="acme", since=SINCE, until=UNTIL, dry_run=False, outcomes=[
        Outcome(kind="invoice", source_id="1", source_number="INV-1", result=Result.SKIPPED, detail=SKIPPED_BY_A_PERSON,
                reason="billed twice"),
        Outcome(kind="invoice", source_id="2", source_number="INV-2", result=Result.SKIPPED, detail="voided before sync")])
    text = summary_markdown(summary)
    assert f"| skipped: {SKIPPED_LABEL} | 1 |" in text.splitlines()
    assert SKIPPED_LABEL.startswith("by a person (`atx ledger skip`")
    assert "| skipped: voided before sync (voided in Autotask before it reached Xero) | 1 |" in text.splitlines()


def test_reconcile_counts_a_skipped_document_not_in_xero_as_no_finding():
    from tests.test_core_reconcile import check, doc, plan, synced

    p = plan()
    skipped = synced(p, state=DocState.SKIPPED, target_id=None, target_number=None)
    result = check(p, skipped, [])
    assert (result.findings, result.skipped) == ([], 1)
    pending = check(p, synced(p, state=DocState.PENDING, target_id=None, target_number=None), [])
    assert len(pending.findings) == 1 and pending.skipped == 0  # the same row waiting to be sent is missing
    clash = check(p, skipped, [doc(p, contact_id="someone-else", total=p.total + 1)])
    assert (clash.findings, clash.skipped) == ([], 1)


# ---- the ledger ------------------------------------------------------------------------------------
@pytest.fixture
def ledger(tmp_path) -> Ledger:
    return Ledger(engine_for_url(f"sqlite:///{tmp_path / 'ledger.db'}"))


def _candidate(source_id: str) -> Candidate:
    return Candidate(source_id=source_id, source_number=f"INV-{source_id}", natural_key=f"INV-{source_id}",
                     content_hash="h", document_date=date(2026, 11, 1))


def test_a_skipped_row_is_never_claimed_nor_set_aside_and_comes_back_pending(ledger):
    ledger.set_aside("acme", "invoice", "1", source_number="INV-1", reason="no account", fix="map it")
    version = ledger.records("acme", "invoice")["1"].version
    assert ledger.skip("acme", "invoice", "1", reason="billed twice", by="pat", version=version)
    assert ledger.claim("acme", "invoice", [_candidate("1")], run_id="r1", idempotency_key="k") == []
    assert not ledger.set_aside("acme", "invoice", "1", source_number="INV-1", reason="again", fix="again")
    skipped = ledger.records("acme", "invoice")["1"]
    assert (skipped.state, skipped.reason, skipped.facts["skipped_by"]) == (DocState.SKIPPED, "billed twice", "pat")
    assert ledger.unfinished("acme", ["invoice"]) == []  # no run reads it again
    assert ledger.unskip("acme", "invoice", "1")
    assert ledger.records("acme", "invoice")["1"].state == DocState.PENDING
    assert ledger.unfinished("acme", ["invoice"]) == ["1"]
    assert [c.source_id for c in ledger.claim("acme", "invoice", [_candidate("1")], run_id="r1", idempotency_key="k")] == ["1"]


def test_only_a_row_not_in_xero_and_not_being_sent_is_skipped(ledger):
    ledger.claim("acme", "invoice", [_candidate("1"), _candidate("2")], run_id="r1", idempotency_key="k")
    ledger.record_synced("acme", "invoice", "2", target_id="x-2", target_number="INV-2")
    rows = ledger.records("acme", "invoice")
    for source_id in ("1", "2"):  # sending, synced
        assert not ledger.skip("acme", "invoice", source_id, reason="no", by="pat", version=rows[source_id].version)
    ledger.set_aside("acme", "invoice", "3", source_number="INV-3", reason="r", fix="f")
    stale = ledger.records("acme", "invoice")["3"].version - 1  # read before a run moved it
    assert not ledger.skip("acme", "invoice", "3", reason="no", by="pat", version=stale)
    assert {r.source_id: r.state for r in ledger.documents("acme")} == {
        "1": DocState.SENDING, "2": DocState.SYNCED, "3": DocState.SET_ASIDE}


# ---- the commands, end to end ------------------------------------------------------------------------
@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=8, window_end=END, clock=manual_clock()) as s:
        yield s


@pytest.fixture
def wide(monkeypatch):
    """The commands' tables on one line per row, so a reason is found whole in the output."""
    import atx.cli

    monkeypatch.setattr(atx.cli, "console", Console(width=2000))


def atx(*args: str):
    from atx.cli import app

    return CliRunner().invoke(app, list(args))


def mapping(path, *, travel_mapped: bool) -> str:
    data = yaml.safe_load(DEMO.read_text())
    if not travel_mapped:
        data["accounts"]["by_gl_account"].pop(5)  # refuse_unmapped: its invoices are set aside
    path.write_text(yaml.safe_dump(data))
    return str(path)


def xero_invoices(settings) -> Counter:
    """InvoiceNumber -> how many live sales invoices Xero holds with it, read over HTTP."""
    held = xero_gateway(settings).find_invoices(where='Type=="ACCREC"')
    return Counter(i.invoice_number for i in held if str(getattr(i.status, "value", i.status)) not in ("DELETED", "VOIDED"))


def test_show_resend_and_skip_through_the_pipeline(stack, tmp_path, wide):
    day = END - timedelta(days=3)
    for invoice_id, company_id in ((FIRST, NZ), (SECOND, NZ2)):
        add_invoice(stack, invoice_id, company_id, day, [{"rate": "100.00"}, {"code": TRAVEL, "rate": "42.50"}])
    path = tmp_path / "mapping.yaml"
    settings = connect(stack, "acme", mapping=mapping(path, travel_mapped=False))
    _, first = run()
    aside = {o.source_id for o in first.set_aside}
    assert {str(FIRST), str(SECOND)} <= aside
    others = aside - {str(FIRST), str(SECOND)}

    shown_ = atx("ledger", "show", "--tenant", "acme", "--state", "set_aside")
    assert shown_.exit_code == 0, shown_.output
    line = next(l for l in shown_.output.splitlines() if f"{FIRST} (INV-{FIRST})" in l)
    assert "set aside" in line and f"billing code {TRAVEL} 'Travel & Disbursements'" in line
    assert "has no account mapping" in line and f"add accounts.by_billing_code_id {TRAVEL}: <Xero account code>" in line
    assert f"{SECOND} (INV-{SECOND})" in shown_.output
    assert "synced" not in shown_.output  # only the state asked for
    synced_listed = atx("ledger", "show", "--tenant", "acme", "--state", "synced", "--limit", "1")
    assert synced_listed.exit_code == 0 and "Only the 1 most recently changed are shown" in synced_listed.output

    before = xero_invoices(settings)
    assert before[f"INV-{FIRST}"] == before[f"INV-{SECOND}"] == 0
    unfixed = atx("ledger", "resend", str(FIRST), "--tenant", "acme")  # before the mapping is fixed
    assert unfixed.exit_code == 1, unfixed.output
    assert f"invoice INV-{FIRST}: set aside: billing item" in unfixed.output
    assert f"(fix: add accounts.by_billing_code_id {TRAVEL}: <Xero account code>" in unfixed.output
    assert xero_invoices(settings) == before
    mapping(path, travel_mapped=True)  # the mapping is fixed: resend the first one alone
    high_water = ledger_for(settings).high_water("acme", "invoices")
    resent = atx("ledger", "resend", str(FIRST), "--tenant", "acme")
    assert resent.exit_code == 0, resent.output
    assert ledger_for(settings).high_water("acme", "invoices") == high_water  # the scheduled runs' window stays
    assert f"invoice INV-{FIRST}: created as INV-{FIRST}" in resent.output
    after = xero_invoices(settings)
    assert after - before == Counter({f"INV-{FIRST}": 1})  # that one, once; nothing else written
    rows = ledger_for(settings).records("acme", "invoice")
    assert rows[str(FIRST)].state == DocState.SYNCED
    assert {i for i in others | {str(SECOND)} if rows[i].state == DocState.SET_ASIDE} == others | {str(SECOND)}

    again = atx("ledger", "resend", str(FIRST), "--tenant", "acme")
    assert again.exit_code == 1 and "is in Xero already as INV-" in again.stderr and "never makes a second copy" in again.stderr
    assert xero_invoices(settings) == after

    skipped = atx("ledger", "skip", str(SECOND), "--tenant", "acme", "--why", "billed twice: see INV-10001", "--by", "pat")
    assert skipped.exit_code == 0, skipped.output
    refused = atx("ledger", "skip", str(FIRST), "--tenant", "acme", "--why", "too late")
    assert refused.exit_code == 1 and "is in Xero already" in refused.stderr and "Void it in Xero" in refused.stderr
    listed = atx("ledger", "show", "--tenant", "acme", "--state", "skipped")
    assert "skipped by pat on " in listed.output and "billed twice: see INV-10001" in listed.output

    _, later = run()  # the scheduled sync: the others go now that the mapping is fixed; the skipped one never
    outcome = next(o for o in later.outcomes if o.source_id == str(SECOND))
    assert (outcome.result, outcome.detail) == (Result.SKIPPED, SKIPPED_BY_A_PERSON)
    assert outcome.reason.startswith("billed twice: see INV-10001 (by pat on ")
    assert f"| skipped: {SKIPPED_LABEL} | 1 |" in summary_markdown(later).splitlines()
    held = xero_invoices(settings)
    assert held[f"INV-{SECOND}"] == 0 and held[f"INV-{FIRST}"] == 1
    assert all(n == 1 for n in held.values())

    back = atx("ledger", "resend", str(SECOND), "--tenant", "acme")
    assert back.exit_code == 0, back.output
    assert "is no longer skipped" in back.output and f"invoice INV-{SECOND}: created" in back.output
    final = xero_invoices(settings)
    assert final - held == Counter({f"INV-{SECOND}": 1})
    assert ledger_for(settings).records("acme", "invoice")[str(SECOND)].state == DocState.SYNCED


def test_the_commands_refuse_in_one_line_naming_what_is_valid(stack):
    connect(stack, "acme")
    unknown_tenant = atx("ledger", "show", "--tenant", "nope")
    assert unknown_tenant.exit_code == 2
    assert unknown_tenant.stderr == "Error: no tenant named 'nope': the tenants are acme (tenants/NAME.yaml)\n"
    unknown_state = atx("ledger", "show", "--tenant", "acme", "--state", "lost")
    assert unknown_state.exit_code == 2
    assert unknown_state.stderr == f"Error: --state: unknown state 'lost': the states are {', '.join(SHOWN_STATES)}\n"
    unknown_kind = atx("ledger", "resend", "1", "--kind", "payment")
    assert unknown_kind.exit_code == 2 and "the kinds are invoice, credit_note, bill, purchase_order" in unknown_kind.stderr
    empty = atx("ledger", "show", "--tenant", "acme")
    assert empty.exit_code == 0 and "The ledger holds no documents for acme." in empty.output
    never_read = atx("ledger", "skip", "424242", "--why", "not ours")  # the only tenant, without --tenant
    assert never_read.exit_code == 1 and "the ledger holds no invoice 424242 for acme" in never_read.stderr
    blank = atx("ledger", "skip", "424242", "--why", "  ")
    assert blank.exit_code == 2 and "--why must say why" in blank.stderr
    missing = atx("ledger", "resend", "424242", "--tenant", "acme")
    assert missing.exit_code == 1 and "found no document 424242 to send" in missing.stderr
    assert "Traceback" not in missing.output

"""`atx reconcile` against the sandbox over HTTP: a clean sync reconciles clean; Xero and the ledger tampered
with are each found with the fix; --repair resends and records through the pipeline, never touching what
a person must fix; a second reconcile is clean and Xero holds each document once."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import delete

from atx.connections import ledger_for, xero_gateway
from core.documents import BILL
from core.reconcile import Problem, Repair
from ledger import DocState, SyncRecord
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import END, SINCE, UNTIL, connect, live_invoices, manual_clock, mapping_file, run

pytestmark = pytest.mark.e2e


def reconcile(tenant: str = "acme", **params):
    from flows.reconcile import reconcile as reconcile_flow

    params.setdefault("since", SINCE)
    params.setdefault("until", UNTIL)
    state = reconcile_flow(tenant=tenant, return_state=True, **params)
    assert state.is_completed(), state.message
    return state.result()


def by_number(summary) -> dict[str, list]:
    found: dict[str, list] = {}
    for f in summary.findings:
        found.setdefault(f.source_number, []).append(f)
    return found


def synced_invoices(settings) -> list:
    rows = ledger_for(settings).records(settings.name, "invoice").values()
    return sorted((r for r in rows if r.state == DocState.SYNCED), key=lambda r: int(r.source_id))


def add_copy(org, doc_id: str, **changes) -> str:
    """A second Xero document made from one the sync created (as a resend after a lost answer would)."""
    twin = copy.deepcopy(org.invoices[doc_id])
    new_id = str(uuid.uuid4())
    twin.update(InvoiceID=new_id, _order=org.next_order(), **changes)
    org.invoices[new_id] = twin
    return new_id


def forget_row(settings, kind: str, source_id: str) -> None:
    ledger = ledger_for(settings)
    with ledger.session() as s:
        s.execute(delete(SyncRecord).where(SyncRecord.tenant == settings.name, SyncRecord.kind == kind,
                                           SyncRecord.source_id == source_id))
        s.commit()


def live_copies(stack, key: str = "InvoiceNumber") -> Counter:
    return Counter(d.get(key) for d in stack.org.invoices.values()
                   if d["Type"] == "ACCREC" and d["Status"] not in ("DELETED", "VOIDED"))


def xero_state(stack) -> dict:
    return {i: (d["Status"], d["Total"], d.get("InvoiceNumber")) for i, d in stack.org.invoices.items()}


def ledger_state(settings) -> dict:
    return {(r.kind, r.source_id): (r.state, r.target_id, r.content_hash)
            for kind in ("invoice", "credit_note") for r in ledger_for(settings).records(settings.name, kind).values()}


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=30, window_end=END, clock=manual_clock()) as s:
        yield s


def test_each_problem_is_found_with_its_fix_and_repair_does_only_the_pipelines_part(stack):
    settings = connect(stack, "acme")
    _, first = run()
    assert first.count("created") > 10

    clean = reconcile()
    assert clean.findings == [] and clean.clean
    assert clean.compared == len(first.outcomes)  # every invoice the run saw, the ones voided before sync too
    assert clean.xero_calls <= 6  # by id and by number, 50 a call, for about 30 documents of two kinds

    org = stack.org
    deleted, changed, doubled, forgotten, voided = synced_invoices(settings)[:5]
    org.invoices[deleted.target_id]["Status"] = "DELETED"
    right_total = org.invoices[changed.target_id]["Total"]
    org.invoices[changed.target_id]["Total"] = right_total + Decimal("10.00")
    copy_id = add_copy(org, doubled.target_id)
    forget_row(settings, "invoice", forgotten.source_id)
    org.invoices[voided.target_id]["Status"] = "VOIDED"
    xero_before, ledger_before = xero_state(stack), ledger_state(settings)

    report = reconcile()
    found = by_number(report)
    assert set(found) == {r.source_number for r in (deleted, changed, doubled, forgotten, voided)}, report.findings
    assert all(len(v) == 1 for v in found.values()), report.findings
    missing = found[deleted.source_number][0]
    assert (missing.problem, missing.repair) == (Problem.MISSING, Repair.RESEND)
    assert "DELETED" in missing.found and "--repair" in missing.fix
    different = found[changed.source_number][0]
    assert (different.problem, different.what, different.repair) == (Problem.DIFFERENT, "total", Repair.NONE)
    assert different.expected == f"{right_total:,.2f}" and different.found == f"{right_total + 10:,.2f}"
    assert "changed in Xero" in different.fix
    duplicate = found[doubled.source_number][0]
    assert (duplicate.problem, duplicate.extra_ids, duplicate.xero_id) == (Problem.DUPLICATED, (copy_id,),
                                                                           doubled.target_id)
    assert duplicate.fix.startswith("void") and copy_id in duplicate.fix and "by hand" in duplicate.fix
    unrecorded = found[forgotten.source_number][0]
    assert (unrecorded.problem, unrecorded.repair, unrecorded.xero_id) == (Problem.UNRECORDED, Repair.RECORD,
                                                                           forgotten.target_id)
    gone = found[voided.source_number][0]
    assert (gone.problem, gone.repair) == (Problem.MISSING, Repair.NONE)
    assert "VOIDED" in gone.found and "void it in Autotask" in gone.fix
    assert not report.clean
    # A reconcile without --repair changes nothing, anywhere.
    assert xero_state(stack) == xero_before and ledger_state(settings) == ledger_before

    # A person does what the fixes say Xero or Autotask needs: the total put right, the extra copy voided,
    # the invoice voided in Xero voided in Autotask too.
    org.invoices[changed.target_id]["Total"] = right_total
    org.invoices[copy_id]["Status"] = "VOIDED"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    stack.autotask.update("Invoices", int(voided.source_id), {"isVoided": True, "voidedDate": now})

    repaired = reconcile(repair=True)
    assert {f.source_number for f in repaired.findings} == {deleted.source_number, forgotten.source_number}
    assert repaired.clean and len(repaired.left) == 0, [(c.finding, c.note) for c in repaired.checked]
    notes = {c.finding.source_number: c.note for c in repaired.checked}
    assert notes[deleted.source_number].startswith("created by the invoices run")
    assert notes[forgotten.source_number].startswith("recorded")
    rows = ledger_for(settings).records("acme", "invoice")
    assert rows[forgotten.source_id].state == DocState.SYNCED
    assert rows[forgotten.source_id].target_id == forgotten.target_id
    assert rows[forgotten.source_id].natural_key == forgotten.natural_key
    assert (rows[forgotten.source_id].target_total, rows[forgotten.source_id].target_status) == (
        forgotten.target_total, forgotten.target_status)
    assert rows[forgotten.source_id].content_hash == forgotten.content_hash  # as sent: the next run sends nothing
    resent = rows[deleted.source_id]
    assert resent.state == DocState.SYNCED and resent.target_id != deleted.target_id
    assert org.invoices[resent.target_id]["InvoiceNumber"] == deleted.source_number
    assert rows[voided.source_id].state == DocState.VOIDED  # the repair's sync run recorded the void
    assert org.invoices[copy_id]["Status"] == "VOIDED"  # what a person voided stays as it was

    again = reconcile()
    assert again.findings == [] and again.clean
    numbers = live_copies(stack)
    assert all(n == 1 for n in numbers.values())
    live = {i["invoiceNumber"] for i in live_invoices(stack) if i["invoiceTotal"] >= 0}
    assert live <= set(numbers)  # every live Autotask invoice once in Xero, the resent one included


def test_documents_xero_numbers_are_matched_by_their_link(atx_home, prefect_server, tmp_path):
    with SandboxStack(seed=11, invoices=12, window_end=END, clock=manual_clock()) as stack:
        settings = connect(stack, "acme", mapping=mapping_file(tmp_path, invoice_number="xero"))
        run()
        assert reconcile().findings == []
        doubled, forgotten = synced_invoices(settings)[:2]
        # A second copy under the same Url, numbered by Xero as a resend would be; a ledger row lost.
        copy_id = add_copy(stack.org, doubled.target_id, InvoiceNumber=stack.org.next_number("INV"))
        forget_row(settings, "invoice", forgotten.source_id)

        found = by_number(reconcile())
        assert set(found) == {doubled.source_number, forgotten.source_number}
        assert found[doubled.source_number][0].problem == Problem.DUPLICATED
        assert found[doubled.source_number][0].extra_ids == (copy_id,)
        assert found[forgotten.source_number][0].problem == Problem.UNRECORDED

        stack.org.invoices[copy_id]["Status"] = "DELETED"  # the person's part: the extra draft deleted
        repaired = reconcile(repair=True)
        assert repaired.clean and repaired.runs == []  # recording needs no sync run
        row = ledger_for(settings).records("acme", "invoice")[forgotten.source_id]
        assert row.state == DocState.SYNCED and row.target_id == forgotten.target_id
        assert row.natural_key == forgotten.natural_key and row.natural_key.startswith("http")
        assert reconcile().findings == []
        assert all(n == 1 for n in live_copies(stack, "Url").values())


def test_the_command_line_exits_1_on_findings_and_0_once_repaired(atx_home, prefect_server):
    from prefect.settings import PREFECT_API_URL

    with SandboxStack(seed=11, invoices=8, window_end=END) as stack:
        settings = connect(stack, "acme")
        run()
        env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), COLUMNS="200")

        def atx(*args):
            return subprocess.run([sys.executable, "-m", "atx.cli", "reconcile", "--tenant", "acme", "--since",
                                   str(SINCE), "--until", str(UNTIL), *args],
                                  capture_output=True, text=True, env=env, timeout=300)

        ok = atx()
        assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
        assert "clean" in ok.stdout

        gone = synced_invoices(settings)[0]
        stack.org.invoices[gone.target_id]["Status"] = "DELETED"
        found = atx("--kinds", "invoice")
        assert found.returncode == 1, found.stdout[-3000:] + found.stderr[-3000:]
        assert "missing in Xero" in found.stdout and gone.source_number in found.stdout
        assert "1 finding in" in found.stdout

        fixed = atx("--repair")
        assert fixed.returncode == 0, fixed.stdout[-3000:] + fixed.stderr[-3000:]
        assert "repaired 1, 0 left" in fixed.stdout

        assert atx().returncode == 0
        assert atx("--kinds", "invoice,nonsense").returncode == 2


def test_a_payment_deleted_in_xero_is_reported_and_left_to_the_payments_flow(atx_home, prefect_server, tmp_path):
    from tests import test_payments_flow as payments

    with SandboxStack(seed=11, invoices=12, window_end=payments.UNTIL) as stack:
        settings = payments.connect(stack, tmp_path, to_xero=True)
        payments.sync_invoices()
        paid_id, _ = next(iter(payments.synced_invoices(settings).items()))
        payments.mark_paid_in_autotask(settings, paid_id, date(2026, 11, 25))
        payments.sync_payments(direction="to_xero")
        window = {"since": payments.SINCE, "until": payments.UNTIL, "kinds": ["payment"]}
        clean = reconcile(**window)
        assert clean.findings == [] and clean.compared == 1

        row = ledger_for(settings).records("acme", "payment")[paid_id]
        assert xero_gateway(settings).delete_payment(row.target_id, idempotency_key="by-hand").ok
        report = reconcile(**window, repair=True)
        (finding,) = report.findings
        assert (finding.problem, finding.kind, finding.repair) == (Problem.MISSING, "payment", Repair.NONE)
        assert "DELETED" in finding.found and "clear_paid_date" in finding.fix
        # --repair leaves it to the payments flow and a person: no run, no write.
        assert report.runs == [] and len(report.left) == 1 and not report.clean
        assert ledger_for(settings).records("acme", "payment")[paid_id].state == DocState.SYNCED


def test_bills_a_deleted_one_is_resent_by_the_bills_flow_and_a_second_copy_is_for_a_person(atx_home, prefect_server):
    from tests import test_bills_flow as bills

    with SandboxStack(seed=7, invoices=20, window_end=bills.UNTIL) as stack:
        settings = stack.connect_tenant("acme")
        assert bills.run().count("created") > 1
        window = {"since": bills.SINCE, "until": bills.UNTIL, "kinds": ["bill"]}
        assert reconcile(**window).findings == []

        rows = sorted((r for r in ledger_for(settings).records("acme", "bill").values() if r.state == DocState.SYNCED),
                      key=lambda r: r.source_id)
        deleted, doubled = rows[:2]
        stack.org.invoices[deleted.target_id]["Status"] = "DELETED"
        copy_id = add_copy(stack.org, doubled.target_id)
        found = by_number(reconcile(**window))
        assert [f.problem for f in found[deleted.source_number]] == [Problem.MISSING]
        assert [(f.problem, f.extra_ids) for f in found[doubled.source_number]] == [(Problem.DUPLICATED, (copy_id,))]

        repaired = reconcile(**window, repair=True)
        notes = {c.finding.source_number: (c.repaired, c.note) for c in repaired.checked}
        assert notes[deleted.source_number][0] and "created by the bills run" in notes[deleted.source_number][1]
        assert notes[doubled.source_number] == (False, "")  # a person's: nothing done to either copy
        assert stack.org.invoices[copy_id]["Status"] == "DRAFT"
        stack.org.invoices[copy_id]["Status"] = "DELETED"
        assert reconcile(**window).findings == []
        bills.assert_ledger_agrees(settings, BILL)

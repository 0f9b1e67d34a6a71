"""Scale-out on Prefect's own distributed setup (bench/scale.py), bounded: a few tenants instead of `make scale`'s 20.

A Prefect server on PostgreSQL, a process work pool, two workers, the ledger in PostgreSQL through a
SqlAlchemyConnector block; every tenant's invoices deployment run at once. The script checks each
organisation's documents against Autotask and the ledger, the simulators' limits and the workers' share,
and this test reads its JSON summary.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.scale import WORKERS, check_tenant, limits_kept_in_prefect, spread_over_units, unit_of
from ledger.models import DocState

ROOT = Path(__file__).resolve().parent.parent
TENANTS = int(os.environ.get("ATX_SCALE_TENANTS", "6"))


# ---- the checker itself: it must see a document sent twice, or to the wrong organisation ------------------
def _org(*invoices):
    return SimpleNamespace(invoices={d["InvoiceID"]: d for d in invoices}, credit_notes={})


def _xero(number, doc_id, total="115.00"):
    return {"InvoiceID": doc_id, "InvoiceNumber": number, "Type": "ACCREC", "Status": "AUTHORISED", "Total": Decimal(total)}


def _row(target_id):
    return SimpleNamespace(state=DocState.SYNCED, target_id=target_id, reason=None, fix=None)


EXPECTED = [{"id": 6001, "invoiceNumber": "INV-10001", "invoiceTotal": Decimal("115.00")}]


def test_the_check_passes_one_copy_and_finds_a_second_or_a_stranger():
    assert check_tenant("t", EXPECTED, _org(_xero("INV-10001", "x1")), {"6001": _row("x1")}).problems == []
    twice = check_tenant("t", EXPECTED, _org(_xero("INV-10001", "x1"), _xero("INV-10001", "x2")), {"6001": _row("x1")})
    assert any("2 times" in p for p in twice.problems) and any("no expected invoice" in p for p in twice.problems)
    stranger = check_tenant("t", EXPECTED, _org(_xero("INV-10001", "x1"), _xero("INV-10099", "x9")), {"6001": _row("x1")})
    assert any("INV-10099" in p for p in stranger.problems)
    missing = check_tenant("t", EXPECTED, _org(), {})
    assert any("never taken up" in p for p in missing.problems)


def test_the_tenants_take_turns_over_the_invoices():
    units = spread_over_units(list(range(6001, 6031)), 4)
    assert sorted(set(units.values())) == [unit_of(i) for i in range(4)]
    assert max(list(units.values()).count(u) for u in set(units.values())) == 8  # 30 invoices: 8, 8, 7, 7


# ---- the whole layout, end to end ----------------------------------------------------------------------
def test_the_checker_sees_limits_not_kept_in_prefect():
    kept = {"xero-org-a-calls": 59, "xero-org-a-in-flight": 4, "autotask-abc-invoices": 3}
    assert limits_kept_in_prefect(kept, ["org-a"]) == []
    assert limits_kept_in_prefect(kept, ["org-a", "org-b"]) == [
        "no Prefect global concurrency limit 'xero-org-b-calls'", "no Prefect global concurrency limit 'xero-org-b-in-flight'"]
    assert limits_kept_in_prefect({**kept, "autotask-abc-invoices": 5}, ["org-a"]) == [
        "Prefect limit autotask-abc-invoices holds 5 slots, not Autotask's 3"]
    assert limits_kept_in_prefect({"xero-org-a-calls": 59, "xero-org-a-in-flight": 4}, ["org-a"]) == [
        "no Prefect global concurrency limit for an Autotask endpoint"]


@pytest.mark.e2e
@pytest.mark.postgres
@pytest.mark.xdist_group("scale")
def test_tenants_run_together_on_two_workers_each_document_once_no_limit_exceeded(tmp_path, postgres_url):
    summary_file = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ATX_"))}
    env.update(PYTHONPATH=str(ROOT), ATX_SCALE_POSTGRES_URL=postgres_url,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    # Generous bounds for a loaded machine: the script's own timeout fails it with a summary first.
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--tenants", str(TENANTS), "--worker-limit", "3",
         "--timeout", "900", "--summary", str(summary_file)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    output = done.stdout[-6000:] + done.stderr[-3000:]
    assert summary_file.exists(), output
    summary = json.loads(summary_file.read_text())
    assert done.returncode == 0 and summary["ok"], output
    assert summary["problems"] == [], output

    tenants = summary["tenants"]
    assert len(tenants) == TENANTS
    for name, tenant in tenants.items():
        assert tenant["state"] == "Completed", (name, output)
        assert tenant["expected"] > 0 and tenant["in_xero"] == tenant["expected"] - tenant["set_aside"], (name, output)
    # Both workers took runs, and every run names its worker.
    assert set(summary["runs_per_worker"]) == set(WORKERS), output
    assert sum(summary["runs_per_worker"].values()) == TENANTS
    assert {t["worker"] for t in tenants.values()} == set(WORKERS)
    # Nothing refused for a limit, and Autotask's three threads per endpoint were never passed.
    assert not any(summary["refusals"].values()), output
    assert max(summary["max_in_flight"].values()) <= 3, output
    # ... kept in Prefect's global concurrency limits, which the Prefect server holds once per organisation.
    assert {n for n in summary["prefect_limits"] if n.endswith("-calls")} == {
        f"xero-{t['tenant_id']}-calls" for t in tenants.values()}, output
    assert {size for n, size in summary["prefect_limits"].items() if n.startswith("autotask-")} == {3}, output

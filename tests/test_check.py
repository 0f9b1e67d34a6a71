"""`atx check` and the check every run makes at its start, against the live sandbox."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from atx.check import check_tenant
from sandbox.stack import SandboxStack

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 24)
BROKEN = """\
accounts:
  refuse_unmapped: true
  by_gl_account: {1: "200", 2: "999"}
tax:
  default: BOGUS
"""


@pytest.fixture
def stack(atx_home):
    with SandboxStack(seed=3, invoices=8, window_end=END) as s:
        yield s


def broken_tenant(stack, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    return stack.connect_tenant("acme", mapping=str(path))


def test_a_healthy_tenant_has_no_errors(stack):
    stack.connect_tenant("acme")
    assert [p for p in check_tenant("acme") if p.severity == "error"] == []


def test_a_broken_mapping_is_reported_with_the_fix_for_each_problem(stack, tmp_path):
    broken_tenant(stack, tmp_path)
    problems = check_tenant("acme")
    errors = {p.area: p for p in problems if p.severity == "error"}
    assert "999" in errors["mapping accounts.by_gl_account.2"].problem
    assert "BOGUS" in errors["mapping tax.default"].problem
    assert all(p.fix for p in problems)
    unmapped = [p for p in problems if p.severity == "warning" and p.area == "mapping accounts"]
    assert unmapped and all("has no Xero account" in p.problem for p in unmapped)
    # Exit code and table, as a user sees them.
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-m", "atx.cli", "check", "--tenant", "acme"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BOGUS" in result.stdout and "Fix" in result.stdout


def test_wrong_credentials_are_an_error_that_says_what_to_run(stack, monkeypatch):
    stack.connect_tenant("acme")
    monkeypatch.setenv("ATX_ACME_AUTOTASK_SECRET", "not-the-secret")
    errors = [p for p in check_tenant("acme") if p.severity == "error"]
    assert [p.area for p in errors] == ["Autotask credentials"]
    assert "atx connect autotask --tenant acme" in errors[0].fix
    assert "not-the-secret" not in repr(errors)


def test_a_tenant_without_rules_on_a_shared_account_is_warned(stack):
    stack.connect_tenant("acme", routing={"companies": [174]})
    stack.connect_tenant("beta")
    problems = check_tenant("beta")
    assert any(p.area == "routing" and "no routing rules" in p.problem for p in problems)


@pytest.mark.e2e
def test_a_run_with_a_broken_mapping_stops_before_any_write(stack, tmp_path, prefect_server):
    from flows.invoices import invoices

    broken_tenant(stack, tmp_path)
    contacts_before = len(stack.org.contacts)
    state = invoices(tenant="acme", since=END - timedelta(days=40), until=END, return_state=True)
    assert state.is_failed()
    assert "cannot sync until this is fixed" in state.message and "BOGUS" in state.message
    assert not stack.org.invoices and len(stack.org.contacts) == contacts_before

"""`atx check` and the check every run makes at its start, against the live sandbox."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from atx.check import check_tenant
from sandbox.stack import XERO_CLIENT_ID, SandboxStack

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


# ---- the check and the mapping judge Xero's settings from one view ------------------------------------------
def _plan(tenant: str, mapping_path: str | None = None):
    """What a run would do with this tenant's invoices: the flow's own extract, Xero read and mapping."""
    from atx.context import open_tenant
    from core.invoices import plan_invoices
    from tasks.extract import extract_invoices
    from tasks.reference import read_xero_reference

    ctx = open_tenant(tenant, "check-test")
    extract = extract_invoices.fn(ctx, END - timedelta(days=40), END)
    reference = read_xero_reference.fn(ctx)
    return plan_invoices(extract.invoices, extract.lines, extract.companies, extract.reference,
                         ctx.mapping, reference, autotask_web_url=extract.web_url)


def _set_aside_for(plan) -> set[tuple[str, str]]:
    """(kind, Xero name) of everything the mapping set a document aside for because Xero lacks it."""
    import re

    found = set()
    for s in plan.set_aside:
        found |= {("account", m) for m in re.findall(r"account code '([^']+)' \(for .*?\) does not exist or is archived", s.reason)}
        found |= {("tax", m) for m in re.findall(r"TaxType '([^']+)' \(for .*?\) does not exist", s.reason)}
        found |= {("option", m) for m in re.findall(r"tracking option '([^']+)' does not exist or is archived", s.reason)}
    return found


def _flagged(problems) -> set[tuple[str, str]]:
    import re

    found = set()
    for p in problems:
        if p.severity != "error" or not p.area.startswith("mapping "):
            continue
        for kind, pattern in (("account", r"account code (\S+) is not an active account"),
                              ("tax", r"tax type (\S+) is not an active tax rate"),
                              ("option", r"option '([^']+)' is not an active option")):
            found |= {(kind, m) for m in re.findall(pattern, p.problem)}
    return found


@pytest.fixture
def busier_stack(atx_home):
    """Enough invoices that some use each of the account, tracking option and tax rate archived below."""
    with SandboxStack(seed=3, invoices=40, window_end=END) as s:
        yield s


def test_the_check_flags_exactly_what_the_mapping_sets_aside(busier_stack):
    from atx.check import _xero
    from atx.context import open_tenant
    from atx.settings import load_tenant
    from tasks.reference import read_xero_reference

    stack = busier_stack
    stack.connect_tenant("acme")
    assert _set_aside_for(_plan("acme")) == set() and _flagged(check_tenant("acme")) == set()

    # Someone tidies up the Xero organisation: an account, a tracking option and a tax rate the mapping uses.
    org = stack.org
    next(a for a in org.accounts.values() if a["Code"] == "260")["Status"] = "ARCHIVED"
    department = next(c for c in org.tracking_categories.values() if c["Name"] == "Department")
    next(o for o in department["Options"] if o["Name"] == "Projects")["Status"] = "ARCHIVED"
    org.tax_rates["ZERORATED"]["Status"] = "ARCHIVED"
    stack.connect_tenant("acme")  # a fresh gateway: nothing remembered from before the change

    problems = check_tenant("acme")
    expected = {("account", "260"), ("option", "Projects"), ("tax", "ZERORATED")}
    assert _flagged(problems) == expected
    assert {p.area for p in problems if p.severity == "error"} == {
        "mapping accounts.by_gl_account.5", "mapping tracking[0].options.2", "mapping tax.by_region.Zero Rated Export.*"}
    assert _set_aside_for(_plan("acme")) == expected
    # Not merely the same verdicts: the very same view of the organisation.
    settings = load_tenant("acme")
    assert _xero(settings, []) == read_xero_reference.fn(open_tenant("acme", "check-test"))


NAMES_IN_ANOTHER_CASE = """\
tracking:
  - category: department
    source: billing_code.department
    options: {1: managed services, 2: PROJECTS, 3: Hardware}
branding_themes:
  default: standard
accounts:
  default: "200"
tax:
  default: OUTPUT2
"""


def test_names_in_another_case_pass_the_check_because_the_mapping_takes_them(stack, tmp_path):
    path = tmp_path / "cased.yaml"
    path.write_text(NAMES_IN_ANOTHER_CASE)
    stack.connect_tenant("acme", mapping=str(path))
    assert [p for p in check_tenant("acme") if p.severity == "error"] == []
    plan = _plan("acme")
    assert not [s for s in plan.set_aside if "tracking" in s.reason or "branding theme" in s.reason]
    assert set(plan.drafts["tracking1_name"].dropna()) == {"Department"}
    assert set(plan.drafts["tracking1_option"].dropna()) <= {"Managed Services", "Projects", "Hardware"}
    standard = next(t["BrandingThemeID"] for t in stack.org.branding_themes.values() if t["Name"] == "Standard")
    assert set(plan.drafts["branding_theme_id"]) == {standard}


def test_the_bills_part_of_the_mapping_is_checked_for_the_bills_flow_only(stack, tmp_path):
    import yaml

    mapping = yaml.safe_load(open(ROOT / "mappings" / "demo.yaml"))
    mapping["bills"]["freight"]["account_code"] = "998"
    mapping["bills"]["tax"]["default"] = "NOSUCHINPUT"
    path = tmp_path / "bills-broken.yaml"
    path.write_text(yaml.safe_dump(mapping))
    stack.connect_tenant("acme", mapping=str(path))
    # The invoices flow does not use the bills section: its check passes.
    assert [p for p in check_tenant("acme", flows=["invoices"]) if p.severity == "error"] == []
    errors = {p.area: p for p in check_tenant("acme", flows=["bills"]) if p.severity == "error"}
    assert "998" in errors["mapping bills.freight.account_code"].problem
    assert "NOSUCHINPUT" in errors["mapping bills.tax.default"].problem
    assert all(p.fix for p in errors.values())
    # And the bills flow's own preflight stops the run before anything is written.
    from atx.check import blocking

    assert blocking("acme", "bills") and not blocking("acme", "invoices")


def test_applying_payments_needs_an_account_that_takes_them_and_the_payments_scope(stack):
    # Payments into Xero are off by default: nothing about them is checked.
    stack.connect_tenant("acme", flows=["invoices", "payments"])
    assert [p for p in check_tenant("acme", flows=["payments"]) if p.severity == "error"] == []
    # By code or by name (any case), an active bank account passes.
    for named in ("090", "business bank account"):
        stack.connect_tenant("acme", flows=["payments"], payments={"to_xero": True, "bank_account": named})
        assert [p for p in check_tenant("acme", flows=["payments"]) if p.severity == "error"] == [], named
    # A revenue account takes no payments; a missing setting says what to set.
    stack.connect_tenant("acme", flows=["payments"], payments={"to_xero": True, "bank_account": "200"})
    errors = {p.area: p for p in check_tenant("acme", flows=["payments"]) if p.severity == "error"}
    assert "'200'" in errors["payments.bank_account"].problem and "bank account" in errors["payments.bank_account"].fix
    stack.connect_tenant("acme", flows=["payments"], payments={"to_xero": True})
    errors = {p.area: p for p in check_tenant("acme", flows=["payments"]) if p.severity == "error"}
    assert "no bank account is named" in errors["payments.bank_account"].problem
    # A connection granted without the payments scope cannot make them: reconnect and grant it.
    from atx.connections import forget_clients, token_store
    from atx.settings import load_tenant
    from sandbox.stack import XERO_CLIENT_ID, _with_expiry

    settings = stack.connect_tenant("acme", flows=["payments"], payments={"to_xero": True, "bank_account": "090"})
    narrow = stack.xero.issue_tokens(XERO_CLIENT_ID, [stack.org.tenant_id],
                                     scopes=["offline_access", "accounting.invoices", "accounting.contacts",
                                             "accounting.settings.read"])
    token_store(settings).save(_with_expiry(narrow, stack.clock))
    forget_clients("acme")
    errors = [p for p in check_tenant("acme", flows=["payments"]) if p.severity == "error"]
    assert [p.area for p in errors] == ["Xero connection"] and "accounting.payments" in errors[0].fix
    assert load_tenant("acme").payments.to_xero


def test_item_codes_the_mapping_names_must_be_in_xero_unless_the_sync_creates_them(atx_home, tmp_path):
    import yaml

    mapping = yaml.safe_load(open(ROOT / "mappings" / "demo.yaml"))
    mapping["items"] = {"rules": [{"billing_item_type": "Labor", "item_code": "LABOUR"},
                                  {"item_name": "Parking", "item_code": "NOSUCH"}]}
    path = tmp_path / "items.yaml"
    path.write_text(yaml.safe_dump(mapping))
    with SandboxStack(seed=3, invoices=8, window_end=END, existing_books=True) as books:  # Xero holds LABOUR
        books.connect_tenant("acme", mapping=str(path))
        errors = [p for p in check_tenant("acme", flows=["invoices"]) if p.area == "mapping items.rules"]
        # A warning: the run itself sets aside only the invoices that need the missing item.
        assert [p.severity for p in errors] == ["warning"] and "NOSUCH" in errors[0].problem
        assert "items.create_missing" in errors[0].fix
        mapping["items"]["create_missing"] = True
        path.write_text(yaml.safe_dump(mapping))
        assert not [p for p in check_tenant("acme", flows=["invoices"]) if p.area == "mapping items.rules"]


def _organisation_gone(stack):
    """acme is connected to a second organisation, which then goes from its token's connections (as when a
    sandbox is reset under it, or someone disconnects it in Xero); the first one is still reached."""
    second = stack.add_org("Second Entity Ltd", "NZ")
    stack.connect_tenant("acme", org=second)
    gone = next(c for c in stack.xero.identity.connections.values() if c.tenant_id == second.tenant_id)
    stack.xero.identity.consent(XERO_CLIENT_ID, gone.user_id, [stack.org.tenant_id])
    assert stack.xero.identity.delete_connection(XERO_CLIENT_ID, gone.user_id, gone.id)
    return second


def test_a_tenant_whose_organisation_is_gone_is_an_error_that_says_to_connect_again(stack):
    second = _organisation_gone(stack)
    errors = [p for p in check_tenant("acme") if p.severity == "error"]
    assert [p.area for p in errors] == ["Xero connection"]
    assert f"the Xero organisation {second.tenant_id} (xero.tenant_id) is not connected" in errors[0].problem
    assert stack.org.name in errors[0].problem  # what the token does reach
    assert errors[0].fix == "run `atx connect xero --tenant acme`"


@pytest.mark.e2e
def test_a_run_for_an_organisation_that_is_gone_fails_its_check_and_writes_nothing(stack, prefect_server):
    from flows.invoices import invoices

    second = _organisation_gone(stack)
    state = invoices(tenant="acme", since=END - timedelta(days=40), until=END, return_state=True)
    assert state.is_failed()
    assert f"the Xero organisation {second.tenant_id} (xero.tenant_id) is not connected" in state.message
    assert "Fix: run `atx connect xero --tenant acme`" in state.message
    assert not stack.org.invoices and not second.invoices

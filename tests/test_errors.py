"""Errors a person can act on: a bad tenant file is named once by its line and fix while the other tenants go on;
a refused command says in one line what to do, before any Prefect run exists, and never shows a traceback
(`atx --debug` does); a rewritten tenant file keeps its comments; `atx tenant list` shows the next and the last
run, and the organisation's name."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from atx.settings import load_tenant, save_tenant, tenant_file
from sandbox.stack import SandboxStack

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 24)
BROKEN_YAML = "name: beta\nautotask:\n  username: x\n  - oops\n"
BROKEN_YAML_SAYS = ("line 4: not valid YAML: expected <block end>, but found '-' (while parsing a block mapping from "
                    "line 3): line this setting up under its section with spaces, and quote a value that holds ': ' "
                    "or ' #'")


@pytest.fixture
def stack(atx_home):
    with SandboxStack(seed=3, invoices=6, window_end=END) as s:
        yield s


def atx(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The command line as a person runs it, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "atx.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def no_prefect_api() -> dict:
    return {"PREFECT_API_URL": ""}


def prefect_api() -> dict:
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value()}


def errors(result) -> list[str]:
    """The error lines a command printed; and it printed no traceback anywhere."""
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def squeezed(text: str) -> str:
    """Table output without borders and whitespace: a cell folded over several lines reads as one."""
    return "".join(text.replace("│", " ").split())


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def scaffolded(name: str) -> str:
    from atx.tenants import scaffold

    return Path(scaffold(name)).read_text()


# ---- one bad tenant file: named once, by line and fix; the other tenants go on ---------------------------
def test_tenant_list_names_a_file_with_a_yaml_error_once_by_line_and_lists_the_others(atx_home):
    scaffolded("acme")
    tenant_file("beta").write_text(BROKEN_YAML)
    listed = atx("tenant", "list", **no_prefect_api())
    assert listed.returncode == 1
    assert errors(listed) == [f"Error: {tenant_file('beta')}: {BROKEN_YAML_SAYS}"]
    assert listed.stderr.count("beta.yaml") == 1
    assert "acme" in listed.stdout and "0 6 * * * (UTC)" in listed.stdout  # the good tenant is listed
    assert "beta" in listed.stdout and "see below" in listed.stdout


def test_check_names_each_wrong_setting_by_its_path_and_line_and_checks_the_good_tenant(stack):
    stack.connect_tenant("acme")
    text = scaffolded("beta").replace("tenant_id:", "tenantid:").replace('cron: "0 6 * * *"', 'cron: "61 * * * *"')
    tenant_file("beta").write_text(text)
    checked = atx("check")
    assert checked.returncode == 1
    assert errors(checked) == [
        f"Error: {tenant_file('beta')}: "
        f"line {line_of(text, 'xero:')}: xero.tenant_id is missing: add it (the README's tenant file section lists "
        "every setting); "
        f"line {line_of(text, 'tenantid:')}: xero.tenantid is not a setting: did you mean tenant_id?; "
        f"line {line_of(text, 'cron:')}: schedule.cron: '61 * * * *' is not a cron schedule Prefect can run: "
        "minute 0-59, hour 0-23, day 1-31, month 1-12, day of week 0-6; use one like \"0 6 * * 1-5\""]
    # acme was checked against the sandbox all the same.
    assert "acme: no problems found." in checked.stdout or "Problems for acme" in checked.stdout
    assert "error" not in checked.stdout  # acme's own check found nothing that stops it

    alone = atx("check", "--tenant", "beta")
    assert alone.returncode == 1 and errors(alone) == errors(checked)
    unknown = atx("check", "--tenant", "gamma")
    assert errors(unknown) == [f"Error: no tenant named 'gamma' ({tenant_file('gamma')} does not exist): create it "
                               "with `atx tenant add gamma`, or use one of acme, beta"]


def test_deployments_sync_keeps_a_bad_files_entries_and_check_compares_the_others(atx_home, tmp_path):
    from deployments import prefect_yaml

    scaffolded("acme")
    scaffolded("beta")
    out = tmp_path / "prefect.yaml"
    out.write_text(prefect_yaml([load_tenant("acme"), load_tenant("beta")]))
    beta_entries = [d for d in yaml.safe_load(out.read_text())["deployments"] if d["name"] == "beta"]
    tenant_file("beta").write_text(BROKEN_YAML)
    edited = tenant_file("acme").read_text().replace('cron: "0 6 * * *"', 'cron: "30 7 * * 1-5"')
    tenant_file("acme").write_text(edited)

    stale = atx("deployments", "check", "--file", str(out))
    assert stale.returncode == 1
    assert errors(stale) == [f"Error: {out} is out of date for acme: run `atx deployments sync`",
                             f"Error: {tenant_file('beta')}: {BROKEN_YAML_SAYS}"]

    synced = atx("deployments", "sync", "--file", str(out))
    assert synced.returncode == 1 and errors(synced) == [f"Error: {tenant_file('beta')}: {BROKEN_YAML_SAYS}"]
    assert "kept as they were for beta" in synced.stdout
    entries = yaml.safe_load(out.read_text())["deployments"]
    assert [d for d in entries if d["name"] == "beta"] == beta_entries  # a typo never drops a tenant's deployments
    assert {d["schedules"][0]["cron"] for d in entries if d["name"] == "acme" and "schedules" in d} == {"30 7 * * 1-5"}

    checked = atx("deployments", "check", "--file", str(out))
    assert checked.returncode == 1 and errors(checked) == [f"Error: {tenant_file('beta')}: {BROKEN_YAML_SAYS}"]
    assert f"{out} matches the tenant files that can be used." in checked.stdout


def test_serve_with_no_usable_tenant_says_so_after_naming_the_bad_file(atx_home):
    tenant_file("beta").parent.mkdir(parents=True, exist_ok=True)
    tenant_file("beta").write_text(BROKEN_YAML)
    served = atx("serve", **no_prefect_api())
    assert served.returncode == 1
    assert errors(served) == [f"Error: {tenant_file('beta')}: {BROKEN_YAML_SAYS}",
                              "Error: no tenant to serve: fix the files above"]


# ---- routing: a bad file of the same Autotask account never lets its invoices go to another organisation ----
def _tenant_yaml(name: str, username: str, companies: list[int], tail: str = "") -> str:
    return (f"name: {name}\nautotask:\n  username: {username}\n  integration_code: CODE\n  secret: env:AT_{name}\n"
            f"xero:\n  client_id: C\n  client_secret: env:X_{name}\n  tenant_id: org-{name}\nmapping: demo\n"
            f"routing:\n  companies: {companies}\n{tail}")


def test_a_bad_file_on_the_same_autotask_account_still_counts_in_routing(atx_home):
    from core.routing import Document, route
    from tasks.tenancy import peers_of

    tenant_file("acme").parent.mkdir(parents=True, exist_ok=True)
    tenant_file("acme").write_text(_tenant_yaml("acme", "api@msp.example", [1]))
    acme = load_tenant("acme")

    # A setting is wrong, but its routing rules read: they count as written.
    tenant_file("beta").write_text(_tenant_yaml("beta", "API@msp.example", [2], 'schedule:\n  cron: "61 * * * *"\n'))
    peers = peers_of(acme)
    assert sorted(peers.rules) == ["acme", "beta"] and peers.rules["beta"].companies == {2}
    assert "beta.yaml: line 14: schedule.cron" in peers.notes[0]

    # The YAML breaks after the autotask section: the account is known, the rules are not, so beta is taken to
    # claim everything and what acme claims too is held back.
    tenant_file("beta").write_text(_tenant_yaml("beta", "api@msp.example", [2], "schedule:\n  cron: [\n"))
    peers = peers_of(acme)
    assert peers.rules["beta"].unknown
    routed = route([Document(10, "INV-10", 1, None), Document(11, "INV-11", 3, None)], peers.rules)
    assert routed.conflicts == {10: ("acme", "beta")} and routed.owner == {11: "beta"}
    assert "held back until the file is fixed" in peers.notes[0]

    # Broken inside the autotask section: whose account it is cannot be told; it is said, not guessed.
    tenant_file("beta").write_text("name: beta\nautotask:\n  username: api@msp.example\n  - oops\n")
    peers = peers_of(acme)
    assert list(peers.rules) == ["acme"]
    assert "whether tenant beta shares this Autotask account cannot be told" in peers.notes[0]

    # Another Autotask account's bad file changes nothing here.
    tenant_file("beta").write_text(_tenant_yaml("beta", "other@msp.example", [2], "first_sync_days: 0\n"))
    assert peers_of(acme).rules.keys() == {"acme"} and peers_of(acme).notes == []


# ---- refused before any Prefect run is created, in one line -------------------------------------------------
def _runs_of(tenant: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"tenant:{tenant}"])))


@pytest.mark.parametrize("args, code, said", [
    (["sync", "invoices", "--tenant", "refused-nobody"], 1,
     "no tenant named 'refused-nobody' ({dir}/refused-nobody.yaml does not exist): create it with "
     "`atx tenant add refused-nobody`, or use one of refused"),
    (["sync", "invoices", "--tenant", "refused", "--since", "2026-11-24", "--until", "2026-11-01"], 2,
     "--since 2026-11-24 is after --until 2026-11-01: pass a --since on or before it"),
    (["sync", "bills", "--tenant", "refused", "--since", "2026-11-31"], 2,
     "--since '2026-11-31' is not a date: use YYYY-MM-DD, for example 2026-11-01"),
    (["sync", "payments", "--tenant", "refused", "--until", "last week"], 2,
     "--until 'last week' is not a date: use YYYY-MM-DD, for example 2026-11-01"),
    (["sync", "invoices", "--tenant", "refused", "--since", "9999-01-01"], 2,
     "--since 9999-01-01 is after today ({today}, the default --until): pass a --since on or before it"),
    (["backfill", "--tenant", "refused", "--start", "2026-11-02", "--end", "2026-11-01"], 2,
     "--start 2026-11-02 is after --end 2026-11-01: pass a --start on or before it"),
    (["reconcile", "--tenant", "refused-nobody"], 2,
     "no tenant named 'refused-nobody' ({dir}/refused-nobody.yaml does not exist): create it with "
     "`atx tenant add refused-nobody`, or use one of refused"),
    (["connect", "autotask", "--tenant", "refused-nobody"], 1,
     "no tenant named 'refused-nobody' ({dir}/refused-nobody.yaml does not exist): create it with "
     "`atx tenant add refused-nobody`, or use one of refused"),
], ids=["unknown tenant", "since after until", "not a date", "words for a date", "since after today", "backfill",
        "reconcile", "connect"])
def test_a_refused_command_says_what_to_do_in_one_line_before_any_run_exists(atx_home, prefect_server, args, code,
                                                                            said):
    scaffolded("refused")
    result = atx(*args, **prefect_api())
    assert result.returncode == code, result.stdout + result.stderr
    expected = said.format(dir=tenant_file("x").parent, today=date.today())
    assert errors(result) == [f"Error: {expected}"] and result.stdout == ""
    assert _runs_of("refused") == [] and _runs_of("refused-nobody") == []


def test_a_deployment_parameter_that_is_not_a_date_is_refused_before_the_run_is_created(atx_home, prefect_server):
    from prefect.client.orchestration import get_client

    from deployments import runner_deployments

    scaffolded("deployed")
    deployments = {d.flow_name: d for d in runner_deployments([load_tenant("deployed")])}
    ids = {name: deployments[name].apply() for name in ("invoices", "backfill")}
    with get_client(sync_client=True) as client:
        for since in ("2026-13-01", "2026-02-30", "yesterday", "01/11/2026"):
            with pytest.raises(Exception, match=f"Validation failed for field 'since'. Failure reason: '{since}'"):
                client.create_flow_run_from_deployment(ids["invoices"], parameters={"since": since})
        with pytest.raises(Exception, match="Validation failed for field 'request.start'"):
            client.create_flow_run_from_deployment(ids["backfill"], parameters={
                "request": {"tenant": "deployed", "start": "2026-11-31"}})
        assert _runs_of("deployed") == []
        run = client.create_flow_run_from_deployment(ids["invoices"], parameters={"since": "2026-02-28"})
        client.delete_flow_run(run.id)  # a date is taken; this test runs nothing


def test_a_flow_that_fails_on_an_expected_error_shows_no_traceback_and_debug_shows_it(stack, prefect_server):
    stack.connect_tenant("acme")
    env = {k: v for k, v in os.environ.items() if k != "ATX_ACME_XERO_CLIENT_SECRET"}
    result = subprocess.run([sys.executable, "-m", "atx.cli", "sync", "invoices", "--tenant", "acme", "--since",
                             "2026-11-01", "--until", "2026-11-24"], env={**env, **prefect_api()}, cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 1
    errors(result)  # no traceback, though Prefect logs the run's exception with one
    assert "export ATX_ACME_XERO_CLIENT_SECRET=... before running" in " ".join(result.stdout.split())
    assert not stack.org.invoices

    debug = atx("--debug", "sync", "invoices", "--tenant", "nobody", **prefect_api())
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_a_run_that_sets_documents_aside_says_so_by_its_state_name_on_the_command_line(stack, prefect_server, tmp_path):
    from tests.test_invoices_changes import mapping_file
    from tests.test_run_states import _partial_accounts

    stack.connect_tenant("acme", mapping=mapping_file(tmp_path, "partial", accounts=_partial_accounts()))
    result = atx("sync", "invoices", "--tenant", "acme", "--since", "2026-11-01", "--until", "2026-11-24",
                 **prefect_api())
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "Set aside (retried on the next run)" in out
    assert "Needs attention: completed with " in out and "set aside" in out, out[-1500:]


# ---- tenant add: validate first, write last ------------------------------------------------------------------
@pytest.mark.parametrize("option, said", [
    (["--timezone", "Mars/Olympus"],
     "--timezone: 'Mars/Olympus' is not a time zone name; use one like Pacific/Auckland or Europe/London"),
    (["--timezone", "posixrules"],
     "--timezone: 'posixrules' is not a time zone name; use one like Pacific/Auckland or Europe/London"),
    (["--cron", "61 * * * *"],
     "--cron: '61 * * * *' is not a cron schedule Prefect can run: minute 0-59, hour 0-23, day 1-31, month 1-12, day "
     "of week 0-6; use one like \"0 6 * * 1-5\""),
    (["--cron", "0 6 * *"],
     "--cron: '0 6 * *' is not a five-field cron expression (minute hour day-of-month month day-of-week); use one "
     "like \"0 6 * * 1-5\""),
    (["--mapping", "nope"],
     "--mapping: mapping file 'nope' not found: give the path of a .yaml file, or one of the names in mappings/: "
     "demo, example"),
], ids=["time zone", "not an IANA zone", "cron out of range", "cron fields", "mapping"])
def test_tenant_add_refuses_before_writing_anything(atx_home, option, said):
    from atx.cli import app

    result = CliRunner().invoke(app, ["tenant", "add", "acme", *option])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.stderr == f"Error: {said}\n" and "Traceback" not in result.output
    folder = tenant_file("acme").parent
    assert not folder.exists() or list(folder.iterdir()) == []  # not even a temporary file

    added = CliRunner().invoke(app, ["tenant", "add", "acme", "--mapping", "demo", "--cron", "0 7 * * 1-5"])
    assert added.exit_code == 0, added.output
    assert load_tenant("acme").schedule.cron == "0 7 * * 1-5" and load_tenant("acme").mapping == "demo"
    again = CliRunner().invoke(app, ["tenant", "add", "acme"])
    assert again.exit_code == 1 and again.stderr == f"Error: {tenant_file('acme')} already exists: edit it, or choose another name\n"


# ---- comments survive a rewrite -----------------------------------------------------------------------------
def _comments(text: str) -> list[str]:
    return [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]


def test_save_tenant_rewrites_only_what_changed_and_keeps_comments_order_and_quotes(atx_home):
    before = scaffolded("acme")
    settings = load_tenant("acme")
    save_tenant(settings.model_copy(update={
        "xero": settings.xero.model_copy(update={"tenant_id": "6f0c2b1e-0000-4000-8000-000000000001",
                                                 "organisation": "Acme Ltd"}),
        "payments": settings.payments.model_copy(update={"to_xero": True, "bank_account": "090"}),
        "flows": ["invoices", "payments"]}))
    after = tenant_file("acme").read_text()
    assert _comments(after) == _comments(before)
    changed = {line for line in after.splitlines()} - {line for line in before.splitlines()}
    assert {line.split("#")[0].strip() for line in changed} == {
        "tenant_id: 6f0c2b1e-0000-4000-8000-000000000001", "organisation: Acme Ltd", "payments:", "to_xero: true",
        "bank_account: '090'", "flows:", "- invoices", "- payments"}
    assert 'cron: "0 6 * * *"' in after  # untouched lines keep their quoting
    reread = load_tenant("acme")
    assert reread.xero.organisation == "Acme Ltd" and reread.payments.bank_account == "090"
    assert reread.flows == ["invoices", "payments"]


def test_connect_autotask_keeps_every_comment_of_the_tenant_file(atx_home, stack, prefect_server):
    before = scaffolded("acme")
    cred = stack.autotask.credentials
    done = atx("connect", "autotask", "--tenant", "acme", "--zone-lookup-url", stack.autotask_url,
               ATX_AUTOTASK_USERNAME=cred.username, ATX_AUTOTASK_SECRET=cred.secret,
               ATX_AUTOTASK_INTEGRATION_CODE=cred.integration_code, **prefect_api())
    assert done.returncode == 0, done.stdout + done.stderr
    after = tenant_file("acme").read_text()
    assert _comments(after) == _comments(before)
    assert f"  username: {cred.username}" in after and f"  integration_code: {cred.integration_code}" in after
    assert cred.secret not in after
    assert load_tenant("acme").autotask.zone_lookup_url == stack.autotask_url


# ---- atx tenant list: the next run, the last run, the organisation's name --------------------------------
def test_tenant_list_shows_the_next_and_the_last_run_apart_and_the_organisations_name(stack, prefect_server):
    from zoneinfo import ZoneInfo

    from prefect import flow, tags
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    from atx.tenants import overview
    from deployments import runner_deployments

    # Paused, so that Prefect's scheduler plans no run of its own beside the one planned here.
    settings = stack.connect_tenant("listed", schedule={"cron": "0 6 * * *", "timezone": "Pacific/Auckland",
                                                        "active": False})

    @flow(name="probe")
    def probe():
        return 1

    with tags("tenant:listed"):
        state = probe(return_state=True)
    deployment_id = next(d for d in runner_deployments([settings]) if d.flow_name == "invoices").apply()
    soon = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    with get_client(sync_client=True) as client:
        last = client.read_flow_run(state.state_details.flow_run_id)
        planned = client.create_flow_run_from_deployment(deployment_id, state=Scheduled(scheduled_time=soon))
    try:
        row = next(r for r in overview().rows if r.name == "listed")
        listed = atx("tenant", "list", **prefect_api())
    finally:
        with get_client(sync_client=True) as client:
            client.delete_flow_run(planned.id)
    auckland = ZoneInfo("Pacific/Auckland")
    assert row.xero == f"{stack.org.name} [listed]"  # its name, not the tenantId, and no call to Xero for it
    assert row.next_run == soon.astimezone(auckland).strftime("%Y-%m-%d %H:%M %Z")
    assert row.last_run == f"{last.start_time.astimezone(auckland):%Y-%m-%d %H:%M %Z} Completed: {last.name}"
    assert listed.returncode == 0 and errors(listed) == []
    assert "Next run" in listed.stdout and "Last run" in listed.stdout and last.name in listed.stdout

    offline = atx("tenant", "list", **no_prefect_api())
    assert offline.returncode == 0 and errors(offline) == []
    assert squeezed("│ paused │ — │") in squeezed(offline.stdout)  # no Prefect to ask: the last run is not known

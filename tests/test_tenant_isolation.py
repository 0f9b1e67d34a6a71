"""Tenant isolation: a tenant file naming another tenant's secret or Xero token connection is refused, by the
settings loader, `atx check` and a sync, unless both files declare the sharing (`share_with`)."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from atx.settings import SettingsError, load_tenant, save_tenant, tenant_file
from sandbox.stack import SandboxStack

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 24)


@pytest.fixture
def stack(atx_home):
    with SandboxStack(seed=3, invoices=6, window_end=END) as s:
        yield s


def edit(name: str, **changes) -> None:
    """Rewrite a tenant file: `autotask={...}` / `xero={...}` merge into their sections."""
    from atx.settings import _read_tenant

    settings = _read_tenant(name)
    update = {}
    for section, values in changes.items():
        current = getattr(settings, section)
        update[section] = current.model_copy(update=values) if hasattr(current, "model_copy") else values
    save_tenant(settings.model_copy(update=update))


def squeezed(text: str) -> str:
    """Terminal output without table borders and whitespace: a cell's text wrapped or folded over several lines
    reads as one (the tables here have text on the first line only, outside the Problem column)."""
    return "".join(text.replace("│", " ").split())


def atx(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atx.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def test_naming_another_tenants_block_is_refused_with_both_files_and_the_way_to_share(stack):
    stack.connect_tenant("globex", org=stack.add_org("Globex Ltd"))
    stack.connect_tenant("acme")
    edit("acme", autotask={"secret": "block:globex-autotask-secret"})  # the name `atx connect` gave globex's

    with pytest.raises(SettingsError) as refused:
        load_tenant("acme")
    message = str(refused.value)
    assert str(tenant_file("acme")) in message and str(tenant_file("globex")) in message
    assert "block:globex-autotask-secret" in message
    assert f"`share_with: [globex]` to {tenant_file('acme')}" in message
    assert f"`share_with: [acme]` to {tenant_file('globex')}" in message
    assert load_tenant("globex").name == "globex"  # the owner is not refused for what another file names

    edit("acme", share_with=["globex"])  # one side only is not enough
    with pytest.raises(SettingsError, match=r"share_with: \[acme\]` to .*globex.yaml") as refused:
        load_tenant("acme")
    assert "share_with: [globex]" not in str(refused.value)  # what is declared already is not asked again
    edit("globex", share_with=["acme"])
    assert load_tenant("acme").autotask.secret == "block:globex-autotask-secret"


def test_a_reference_two_files_name_is_refused_for_both_until_both_declare_it(stack):
    stack.connect_tenant("globex", org=stack.add_org("Globex Ltd"))
    stack.connect_tenant("acme")
    for name in ("acme", "globex"):
        edit(name, xero={"client_secret": "env:MSP_XERO_CLIENT_SECRET"})
    for name, other in (("acme", "globex"), ("globex", "acme")):
        with pytest.raises(SettingsError, match="env:MSP_XERO_CLIENT_SECRET") as refused:
            load_tenant(name)
        assert str(tenant_file(other)) in str(refused.value)
    edit("acme", share_with=["globex"])
    edit("globex", share_with=["acme"])
    assert {load_tenant(n).xero.client_secret for n in ("acme", "globex")} == {"env:MSP_XERO_CLIENT_SECRET"}


def test_a_token_connection_of_another_tenant_or_named_by_two_is_refused_until_shared(stack):
    stack.connect_tenant("globex", org=stack.add_org("Globex Ltd"))
    stack.connect_tenant("acme")
    edit("acme", xero={"connection": "globex"})  # globex's own token set: its default connection
    with pytest.raises(SettingsError, match="the Xero token connection 'globex'"):
        load_tenant("acme")
    assert load_tenant("globex").token_connection == "globex"

    edit("acme", xero={"connection": "msp-login"})
    edit("globex", xero={"connection": "msp-login"})
    for name in ("acme", "globex"):
        with pytest.raises(SettingsError, match="the Xero token connection 'msp-login'"):
            load_tenant(name)
    edit("acme", share_with=["globex"])
    edit("globex", share_with=["acme"])
    assert {load_tenant(n).token_connection for n in ("acme", "globex")} == {"msp-login"}


def test_the_ledger_block_is_shared_by_design_and_a_broken_file_claims_nothing(stack):
    stack.connect_tenant("globex", org=stack.add_org("Globex Ltd"))
    stack.connect_tenant("acme")
    for name in ("acme", "globex"):
        edit(name, ledger_block="msp-ledger")  # one ledger database for every tenant, rows keyed by tenant
    # A file that does not read names acme's secret: it claims nothing (it is refused when loaded itself).
    tenant_file("initech").write_text("name: initech\nautotask: {secret: env:ATX_ACME_AUTOTASK_SECRET}\n")
    assert load_tenant("acme").ledger_block == load_tenant("globex").ledger_block == "msp-ledger"


@pytest.mark.e2e
def test_check_and_sync_refuse_a_tenant_using_another_tenants_secret_and_never_resolve_it(stack, prefect_server):
    from prefect.settings import PREFECT_API_URL

    from atx.check import check_tenant
    from atx.connect import store_secret

    stack.connect_tenant("globex", org=stack.add_org("Globex Ltd"), routing={"companies": [1]})
    # globex's secret in its block, as `atx connect autotask` leaves it: it would let acme's run in.
    edit("globex", autotask={"secret": store_secret("globex-autotask-secret", stack.autotask.credentials.secret)})
    stack.connect_tenant("acme")
    edit("acme", autotask={"secret": "block:globex-autotask-secret"})
    api = {"PREFECT_API_URL": PREFECT_API_URL.value()}

    checked = atx("check", "--tenant", "acme", **api)
    out = checked.stdout + checked.stderr
    assert checked.returncode == 1, out
    assert "Traceback" not in out
    assert f"`share_with:[globex]`to{tenant_file('acme')}and`share_with:[acme]`to{tenant_file('globex')}" in squeezed(out)

    synced = atx("sync", "invoices", "--tenant", "acme", "--since", "2026-10-01", "--until", "2026-11-24", **api)
    out = synced.stdout + synced.stderr
    assert synced.returncode == 1, out
    assert f"`share_with:[acme]`to{tenant_file('globex')}" in squeezed(out)
    assert not stack.org.invoices  # refused before anything was read or written
    assert stack.autotask.credentials.secret not in out

    # The owner checks clean of it, and once both files declare the sharing acme may use the block.
    assert not [p for p in check_tenant("globex") if p.area == "tenant file"]
    edit("acme", share_with=["globex"])
    edit("globex", share_with=["acme"])
    shared = atx("check", "--tenant", "acme", **api)
    assert shared.returncode == 0, shared.stdout + shared.stderr
    assert "share_with" not in shared.stdout  # only the routing warning of a shared Autotask account is left


def test_one_token_key_may_serve_every_tenant_but_not_another_tenants_secret(stack):
    stack.connect_tenant("globex", org=stack.add_org("Globex Ltd"))
    stack.connect_tenant("acme")
    for name in ("acme", "globex"):
        edit(name, xero={"token_key": "env:MSP_TOKEN_KEY"})
    assert {load_tenant(n).xero.token_key for n in ("acme", "globex")} == {"env:MSP_TOKEN_KEY"}
    edit("acme", xero={"token_key": "block:globex-xero-client-secret"})
    with pytest.raises(SettingsError, match="block:globex-xero-client-secret"):
        load_tenant("acme")

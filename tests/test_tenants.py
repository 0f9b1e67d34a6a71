"""`atx tenant add` and `atx tenant list`, and the ledger block, as a user runs them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atx.settings import SettingsError, load_tenant

ROOT = Path(__file__).resolve().parent.parent


def atx(*args, env=None):
    return subprocess.run([sys.executable, "-m", "atx.cli", *args], env=env or dict(os.environ), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_tenant_add_scaffolds_a_valid_file_without_secrets_and_list_shows_it(atx_home):
    result = atx("tenant", "add", "acme", "--cron", "0 7 * * 1-5", "--timezone", "Pacific/Auckland")
    assert result.returncode == 0, result.stdout + result.stderr
    settings = load_tenant("acme")
    assert settings.schedule.cron == "0 7 * * 1-5" and settings.schedule.timezone == "Pacific/Auckland"
    assert settings.autotask.secret == "block:acme-autotask-secret"
    assert settings.xero.client_secret == "block:acme-xero-client-secret"
    assert atx("tenant", "add", "acme").returncode == 1  # never overwrites
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    listed = atx("tenant", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    # No Prefect API to ask: the next and last runs are not known, and say so.
    assert "acme" in listed.stdout and "0 7 * * 1-5" in listed.stdout and "—" in listed.stdout


@pytest.mark.parametrize("bad", ["Acme", "a_b", "-x"])
def test_tenant_names_are_safe_for_files_tags_and_deployments(atx_home, bad):
    from atx.tenants import scaffold

    with pytest.raises(SettingsError):
        scaffold(bad)


def test_a_schedule_in_an_unknown_time_zone_is_refused(atx_home):
    from atx.tenants import scaffold

    with pytest.raises(SettingsError, match="time zone"):
        scaffold("acme", timezone="Mars/Olympus")


def test_the_ledger_block_keeps_its_password_secret(atx_home, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect_sqlalchemy import SqlAlchemyConnector

    from atx.connections import save_ledger_block
    from sandbox.stack import SandboxStack

    with SandboxStack(invoices=1) as stack:
        stack.connect_tenant("acme")
        save_ledger_block("acme-ledger", driver="postgresql+psycopg", host="db.internal", port=5432,
                          database="ledger", username="atx", password="pw-that-must-not-leak", tenants=["acme"])
    assert load_tenant("acme").ledger_block == "acme-ledger"
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name("acme-ledger", "sqlalchemy-connector", include_secrets=False)
    assert "pw-that-must-not-leak" not in str(document.data)
    block = SqlAlchemyConnector.load("acme-ledger")
    assert block.connection_info.password.get_secret_value() == "pw-that-must-not-leak"
    assert "pw-that-must-not-leak" not in yaml.safe_dump(yaml.safe_load(open(atx_home / "tenants" / "acme.yaml")))

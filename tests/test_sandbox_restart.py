"""A sandbox that survives a restart: `SandboxStack(state_dir=...)`, as `atx sandbox serve` runs it.

A restarted sandbox has the same credentials, client secret, organisations, records, documents and tokens,
at the same addresses; `atx sandbox reset` starts a new one and forgets the tenants it wrote.
"""
from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from atx.connections import forget_clients, ledger_for, token_store, xero_gateway
from atx.settings import load_tenant, save_tenant, tenant_file
from deployments import stale_entries
from sandbox import persist
from sandbox.serving import free_port
from sandbox.stack import XERO_CLIENT_ID, SandboxStack, reset

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 24)


@pytest.fixture
def state_dir(atx_home):
    return str(atx_home / "atx" / "sandbox")


def _stack(state_dir, **options) -> SandboxStack:
    return SandboxStack(**{"seed": 5, "invoices": 6, "window_end": END, "state_dir": state_dir, **options})


def _put_invoice(stack: SandboxStack, token: str) -> dict:
    """One ACCREC invoice written over Xero's API, with a Decimal rate and a date: what a sync writes."""
    body = {"Invoices": [{"Type": "ACCREC", "Contact": {"Name": "Restart Test Ltd"}, "InvoiceNumber": "RST-1",
                          "Date": "2026-11-20", "DueDate": "2026-12-20", "Status": "AUTHORISED",
                          "LineItems": [{"Description": "Managed services", "Quantity": 3, "UnitAmount": 127.4575,
                                         "AccountCode": "200", "TaxType": "OUTPUT2"}]}]}
    answer = httpx.put(f"{stack.xero_url}/api.xro/2.0/Invoices", json=body, timeout=10, headers={
        "Authorization": f"Bearer {token}", "Xero-Tenant-Id": stack.org.tenant_id, "Accept": "application/json",
        "Idempotency-Key": "restart-test-1"})  # Xero remembers the answer (bytes) under (client id, key)
    assert answer.status_code == 200, answer.text
    return answer.json()["Invoices"][0]


def test_a_restarted_sandbox_is_the_same_sandbox(state_dir):
    with _stack(state_dir, existing_books=True) as first:
        token = first.xero.issue_tokens(XERO_CLIENT_ID, [first.org.tenant_id])
        invoice = _put_invoice(first, token["access_token"])
        first.autotask.update("Invoices", first.autotask.records("Invoices")[0]["id"], {"paidDate": "2026-11-21"})
        before = {"credentials": first.autotask.credentials, "secret": first.xero_client_secret,
                  "org": first.org.tenant_id, "urls": (first.autotask_url, first.xero_url),
                  "records": first.autotask.records("Invoices"), "xero": first.xero.export_state()["orgs"]}

    with _stack(state_dir, seed=99, invoices=1) as again:  # options of a new sandbox do not apply
        assert again.resumed and (again.seed, again.invoices) == (5, 6)
        assert again.autotask.credentials == before["credentials"] and again.xero_client_secret == before["secret"]
        assert again.org.tenant_id == before["org"] and (again.autotask_url, again.xero_url) == before["urls"]
        assert again.autotask.records("Invoices") == before["records"]
        assert again.xero.export_state()["orgs"] == before["xero"]  # Decimals, dates and bytes as they were
        auth = {"Authorization": f"Bearer {token['access_token']}", "Xero-Tenant-Id": again.org.tenant_id,
                "Accept": "application/json"}
        # The access token issued before the restart still works, and reads back the same document.
        read = httpx.get(f"{again.xero_url}/api.xro/2.0/Invoices/{invoice['InvoiceID']}", headers=auth, timeout=10)
        assert read.status_code == 200 and read.json()["Invoices"][0]["Total"] == invoice["Total"]
        # So does the refresh token: the rotation goes on where it was.
        refreshed = httpx.post(f"{again.xero_url}/connect/token", auth=(XERO_CLIENT_ID, again.xero_client_secret),
                               data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}, timeout=10)
        assert refreshed.status_code == 200 and refreshed.json()["refresh_token"] != token["refresh_token"]
        # The Autotask API user of before is the one that is let in.
        cred = before["credentials"]
        zone = httpx.get(f"{again.autotask_url}/v1.0/zoneInformation", params={"user": cred.username}, timeout=10)
        assert zone.status_code == 200


def test_a_token_set_stored_by_the_sync_still_refreshes_after_a_restart(state_dir):
    with _stack(state_dir) as first:
        settings = first.connect_tenant("acme")
        stored = token_store(settings).load()
    forget_clients()
    with _stack(state_dir) as again:
        store = token_store(settings)
        store.save({**stored, "expires_at": time.time() - 60})  # the access token has expired meanwhile
        assert xero_gateway(load_tenant("acme")).organisation().name == again.org.name
        assert store.load()["refresh_token"] != stored["refresh_token"]  # refreshed by the restarted sandbox


def test_the_state_file_is_its_owners_only_and_written_whole(state_dir):
    with _stack(state_dir):
        pass
    path = persist.state_file(state_dir)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in Path(state_dir).iterdir()] == ["state.json"]  # no temporary file left behind
    saved = json.loads(path.read_text())
    assert saved["format"] == persist.FORMAT and saved["identity"]["seed"] == 5


def test_a_state_file_that_cannot_be_read_says_how_to_start_again(state_dir):
    Path(state_dir).mkdir(parents=True)
    persist.state_file(state_dir).write_text("{not json")
    with pytest.raises(persist.StateError, match="atx sandbox reset"):
        _stack(state_dir)


def test_the_tenant_file_serve_writes_matches_the_committed_prefect_yaml(state_dir):
    """`atx deployments check` passes right after `atx sandbox serve` has written tenants/sandbox.yaml."""
    with _stack(state_dir) as stack:
        stack.write_tenant("sandbox")
    assert stale_entries(ROOT / "prefect.yaml", [load_tenant("sandbox")]) == []


def test_a_connected_tenant_file_is_kept_across_restarts_and_follows_a_new_port(state_dir):
    with _stack(state_dir) as first:
        assert first.write_tenant("sandbox").startswith("wrote")
        # As `atx connect autotask` leaves it: the secret in a block.
        connected = load_tenant("sandbox")
        connected = connected.model_copy(update={"autotask": connected.autotask.model_copy(
            update={"secret": "block:sandbox-autotask-secret"})})
        save_tenant(connected)
    with _stack(state_dir) as again:
        assert again.write_tenant("sandbox").startswith("kept")
        assert load_tenant("sandbox") == connected
    port = free_port()
    with _stack(state_dir, xero_port=port) as moved:
        assert moved.write_tenant("sandbox").startswith("updated the addresses")
        now = load_tenant("sandbox")
        assert now.xero.api_base == f"http://127.0.0.1:{port}"
        assert now.autotask.secret == "block:sandbox-autotask-secret" and now.xero.tenant_id == connected.xero.tenant_id


def test_serve_leaves_a_tenant_file_that_is_not_a_sandbox_tenant_alone(state_dir):
    from atx.settings import SettingsError

    with _stack(state_dir) as stack:
        real = stack.tenant_settings("sandbox", xero={"client_id": "REALAPP"})
        save_tenant(real)
        with pytest.raises(SettingsError, match="not a sandbox tenant"):
            stack.write_tenant("sandbox")
    assert load_tenant("sandbox") == real


def _synced_row(settings) -> None:
    ledger_for(settings).upsert_synced(settings.name, "contact", "29683501", target_id="xero-contact-1",
                                       content_hash="hash", target_number="29683501")


def test_reset_starts_a_new_sandbox_and_forgets_what_the_ledger_held_for_it(state_dir):
    with _stack(state_dir) as first:
        first.write_tenant("sandbox")
        settings = first.connect_tenant("sandbox", schedule={"cron": "0 * * * *"})  # a token, as atx connect stores
        _synced_row(settings)
        old_secret = first.xero_client_secret
        with pytest.raises(RuntimeError, match="still running"):
            reset(state_dir)  # its save at exit would bring it back
    other = first.tenant_settings("other", xero={"client_id": "REALAPP"})
    _synced_row(other)

    done = reset(state_dir)
    assert any("deleted" in line and "sandbox.yaml" in line and "forgot the 1 document" in line
               and "Xero token set" in line for line in done), done
    assert not tenant_file("sandbox").exists() and not persist.state_file(state_dir).exists()
    assert ledger_for(settings).records("sandbox", "contact") == {}
    assert token_store(settings).load() is None
    assert list(ledger_for(other).records("other", "contact")) == ["29683501"]  # another tenant's rows stay
    with _stack(state_dir) as fresh:
        assert not fresh.resumed and fresh.xero_client_secret != old_secret
    assert reset(state_dir) and reset(state_dir) == []  # nothing left the second time


def test_a_new_sandbox_takes_over_the_tenant_file_of_one_that_is_gone(state_dir, atx_home):
    """A tenant file from a sandbox that no longer exists (made before sandboxes kept their state): its
    credentials and organisation become the new sandbox's, and its ledger rows, which describe documents that
    exist nowhere now, are forgotten."""
    with SandboxStack(seed=5, invoices=2, window_end=END) as gone:
        old = gone.connect_tenant("sandbox", mapping="example")
        _synced_row(old)
    forget_clients()
    with _stack(state_dir) as stack:
        said = stack.write_tenant("sandbox")
        assert "new sandbox" in said and "forgot the 1 document" in said
        now = load_tenant("sandbox")
        assert now.xero.tenant_id == stack.org.tenant_id and now.autotask.integration_code == stack.autotask.credentials.integration_code
        assert now.mapping == "example"  # what is not the sandbox's is the tenant's own
        assert ledger_for(now).records("sandbox", "contact") == {}


def test_the_sandbox_app_registers_the_redirect_uri_atx_connect_uses_by_default(state_dir):
    from atx.cli import connect_xero_cmd

    defaults = {name: p.default.default for name, p in inspect.signature(connect_xero_cmd).parameters.items()
                if name in ("port", "redirect_host")}
    with _stack(state_dir) as stack:
        uri = f"http://{defaults['redirect_host']}:{defaults['port']}/callback"
        assert uri in stack.xero.identity.apps[XERO_CLIENT_ID].redirect_uris
        assert f"http://127.0.0.1:{defaults['port']}/callback" in stack.redirect_uris  # --redirect-host 127.0.0.1


def _serve(env, *args):
    return subprocess.Popen([sys.executable, "-m", "atx.cli", "sandbox", "serve", "--invoices", "3", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            start_new_session=True)


def _ready(proc) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl+C" in line:
            return lines
    raise AssertionError("atx sandbox serve ended: " + "".join(lines) + proc.stderr.read())


def test_a_write_is_saved_while_serve_runs_so_even_a_killed_sandbox_keeps_it(atx_home, state_dir):
    env = dict(os.environ, ATX_SANDBOX_AUTOTASK_PORT=str(free_port()), ATX_SANDBOX_XERO_PORT=str(free_port()))
    proc = _serve(env)
    try:
        out = "".join(_ready(proc))
        assert "A new sandbox" in out
        exports = [line for line in out.splitlines() if line.startswith("export ")]
        assert len(exports) == 5 and all("<" not in line for line in exports)
        saved = persist.load(state_dir)
        url = saved["identity"]["addresses"]["xero"]
        org = saved["identity"]["organisation"]
        secret = saved["xero"]["identity"]["apps"][0]["client_secret"]
        assert f"export ATX_SANDBOX_XERO_CLIENT_SECRET={secret}" in exports
        # What `atx connect xero` does: consent, then the code for tokens; the sandbox saves both soon after.
        consent = httpx.get(f"{url}/identity/connect/authorize", follow_redirects=False, timeout=10, params={
            "response_type": "code", "client_id": XERO_CLIENT_ID, "redirect_uri": "http://localhost:8765/callback",
            "scope": "offline_access accounting.invoices", "state": "s"})
        code = httpx.URL(consent.headers["location"]).params["code"]
        token = httpx.post(f"{url}/connect/token", auth=(XERO_CLIENT_ID, secret), timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": "http://localhost:8765/callback"}).json()
        deadline = time.monotonic() + 60
        while not any(t["token"] == token["refresh_token"] for t in persist.load(state_dir)["xero"]["identity"]["refresh"]):
            assert time.monotonic() < deadline, "the new token set was never saved"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # no save at exit
        proc.wait(timeout=20)

        proc = _serve(env, "--seed", "8")
        out = "".join(_ready(proc))
        assert "Resumed the sandbox" in out and "--seed only make a new sandbox" in out
        assert [line for line in out.splitlines() if line.startswith("export ")] == exports
        granted = httpx.get(f"{url}/connections", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=10)
        assert [c["tenantId"] for c in granted.json()] == [org]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

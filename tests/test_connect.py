"""`atx connect` against the sandbox's identity endpoints, and the token store under concurrent refreshes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import pytest

from atx.connections import forget_clients, token_store, xero_gateway
from atx.settings import load_tenant, save_tenant
from ledger import LedgerTokenStore, TokenCipher
from sandbox.serving import free_port
from sandbox.stack import XERO_CLIENT_ID, SandboxStack

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def stack(atx_home):
    with SandboxStack(seed=3, invoices=6, window_end=date(2026, 11, 24)) as s:
        yield s


def _store(settings) -> LedgerTokenStore:
    return token_store(settings)


def _connect_xero_cli(stack, *args: str, consent_url=lambda url: url):
    """`atx connect xero --tenant acme ARGS`, with the user's browser opening `consent_url(the printed URL)`:
    the sandbox consents at once and redirects to the loopback callback. Returns (callback page, returncode,
    stdout, stderr)."""
    port = free_port()
    stack.allow_redirect(f"http://127.0.0.1:{port}/callback")
    proc = subprocess.Popen(
        [sys.executable, "-m", "atx.cli", "connect", "xero", "--tenant", "acme", "--port", str(port),
         "--redirect-host", "127.0.0.1", "--no-browser", "--timeout", "60", *args],
        env=dict(os.environ), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        for line in proc.stdout:
            if "/identity/connect/authorize?" in line:
                url = line.strip()
                break
        assert url and "code_challenge_method=S256" in url and "code_challenge=" in url
        landed = None
        for _ in range(50):
            try:
                landed = httpx.get(consent_url(url), follow_redirects=True, timeout=10)
                break
            except httpx.ConnectError:  # the callback server is a moment behind the printed URL
                time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert landed is not None
    return landed, proc.returncode, out, err


def _unconnected_tenant(stack):
    settings = stack.tenant_settings("acme")  # written, but never connected: no token yet
    save_tenant(settings)
    os.environ.update(stack.secret_env("acme"))
    return settings


def test_connect_xero_runs_consent_with_pkce_and_stores_the_chosen_organisation(stack):
    second = stack.add_org("Second Entity Ltd", "NZ")
    _unconnected_tenant(stack)
    landed, returncode, out, err = _connect_xero_cli(stack, "--org", "Second Entity Ltd")
    assert landed.status_code == 200 and "Connected" in landed.text
    assert returncode == 0, out + err
    assert "Second Entity Ltd" in out
    connected = load_tenant("acme")
    assert connected.xero.tenant_id == second.tenant_id
    assert connected.xero.organisation == "Second Entity Ltd"  # kept for `atx tenant list`, no Xero call there
    assert connected.xero.client_secret.startswith("env:")  # still a reference, never the secret
    token = _store(connected).load()
    assert token["refresh_token"] and token["access_token"] not in out + err
    from tests.test_token_encryption import assert_holds_no_token, stored_row

    assert_holds_no_token(stored_row(connected)[0], token)  # sealed at rest, from the first save
    forget_clients()
    assert xero_gateway(connected).organisation().name == "Second Entity Ltd"


def _with_state(url: str, state: str | None) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "state"] + ([("state", state)] if state is not None else [])
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize("state", ["forged-state", None], ids=["bad state", "no state"])
def test_a_callback_without_the_requests_state_is_refused_and_nothing_is_stored(stack, state):
    settings = _unconnected_tenant(stack)
    before = (Path(os.environ["ATX_TENANTS_DIR"]) / "acme.yaml").read_text()
    # Xero grants a real code, but the answer reaching the callback does not carry this request's state.
    landed, returncode, out, err = _connect_xero_cli(stack, consent_url=lambda url: _with_state(url, state))
    assert landed.status_code == 400
    assert "Refused" in landed.text and "Nothing was stored" in landed.text and "Connected" not in landed.text
    assert returncode == 1, out + err
    said = " ".join((out + err).split())  # the terminal wraps long lines; the error is on stderr
    assert "state does not match" in said and "nothing was stored" in said
    assert _store(settings).load() is None
    assert (Path(os.environ["ATX_TENANTS_DIR"]) / "acme.yaml").read_text() == before


def test_connect_autotask_checks_then_stores_the_secret_as_a_block(stack, prefect_server):
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL

    stack.connect_tenant("acme")
    cred = stack.autotask.credentials
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), ATX_AUTOTASK_USERNAME=cred.username,
               ATX_AUTOTASK_INTEGRATION_CODE=cred.integration_code, ATX_AUTOTASK_SECRET="wrong-secret")
    refused = subprocess.run([sys.executable, "-m", "atx.cli", "connect", "autotask", "--tenant", "acme"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "Nothing was stored" in refused.stderr
    assert load_tenant("acme").autotask.secret.startswith("env:")

    env["ATX_AUTOTASK_SECRET"] = cred.secret
    done = subprocess.run([sys.executable, "-m", "atx.cli", "connect", "autotask", "--tenant", "acme"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    settings = load_tenant("acme")
    assert settings.autotask.secret == "block:acme-autotask-secret"
    assert cred.secret not in (Path(os.environ["ATX_TENANTS_DIR"]) / "acme.yaml").read_text()
    assert cred.secret not in done.stdout + done.stderr
    assert Secret.load("acme-autotask-secret").get() == cred.secret


REFRESH_ONCE = """
import json, sys
from atx.connections import xero_gateway
from atx.settings import load_tenant
print(json.dumps({"access": xero_gateway(load_tenant("acme")).current_token()["access_token"][-12:]}))
"""


def test_two_runs_refreshing_at_once_rotate_the_token_once_and_keep_the_connection(stack):
    settings = stack.connect_tenant("acme")
    store = _store(settings)
    token = store.load()
    token["expires_at"] = time.time() - 10  # both runs find it expired
    store.save(token)
    issued_before = len(stack.xero.identity._refresh)
    procs = [subprocess.Popen([sys.executable, "-c", REFRESH_ONCE], env=dict(os.environ), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        answers.append(json.loads(out.strip().splitlines()[-1])["access"])
    # One refresh between them: the second waited for the lock and used the token the first saved.
    assert len(stack.xero.identity._refresh) == issued_before + 1
    assert answers[0] == answers[1] == store.load()["access_token"][-12:]
    # The saved refresh token is the live one: the connection survives the next rotation too.
    forget_clients()
    assert xero_gateway(settings).current_token(force_refresh=True)["refresh_token"] != token["refresh_token"]


def test_the_lock_serialises_refreshes_between_store_objects(stack):
    import threading

    settings = stack.connect_tenant("acme")
    inside, seen = [], []
    barrier = threading.Barrier(3)

    def refresh(n):
        store = _store(settings)  # each thread its own store, as each process has
        barrier.wait()
        with store.locked():
            inside.append(n)
            current = store.load()
            seen.append(current.get("generation", 0))
            time.sleep(0.05)  # widen the window a lost update would need; not a timing assertion
            store.save({**current, "generation": current.get("generation", 0) + 1})
            inside.remove(n)

    threads = [threading.Thread(target=refresh, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == [0, 1, 2]  # every holder saw the previous holder's save
    assert _store(settings).load()["generation"] == 3


@pytest.mark.e2e
def test_a_revoked_grant_fails_the_run_asking_to_reconnect_and_writes_nothing(stack, prefect_server):
    from flows.invoices import invoices

    settings = stack.connect_tenant("acme")
    before = _store(settings).load()
    stack.xero.disconnect_app(XERO_CLIENT_ID)  # the user clicked "Disconnect" in Xero
    forget_clients()
    state = invoices(tenant="acme", since=date(2026, 10, 1), until=date(2026, 11, 24), return_state=True)
    assert state.is_failed()
    assert "atx connect xero --tenant acme" in state.message
    assert not stack.org.invoices
    after = _store(settings).load()
    assert after == before  # the token set is untouched, nothing half-written
    assert before["access_token"] not in state.message and before["refresh_token"] not in state.message
    # Expired beyond refresh reads the same way.
    token = dict(after, expires_at=time.time() - 10)
    _store(settings).save(token)
    forget_clients()
    from clients.xero import XeroAuthError

    with pytest.raises(XeroAuthError, match="atx connect xero --tenant acme"):
        xero_gateway(settings).current_token()
    assert _store(settings).load() == token


@pytest.mark.postgres
def test_the_lock_serialises_refreshes_on_postgresql(postgres_url, postgres_schema):
    import threading
    import uuid

    from ledger import Ledger
    from tests.ledger_support import engine_in_schema

    # A schema of its own: the shared database's public schema is never migrated by a test.
    ledger = Ledger(engine_in_schema(postgres_url, postgres_schema))
    connection = f"lock-test-{uuid.uuid4().hex[:8]}"
    cipher = TokenCipher([TokenCipher.new_key()])
    first = LedgerTokenStore(ledger, connection, cipher)
    first.save({"generation": 0})
    seen = []
    barrier = threading.Barrier(3)

    def refresh():
        store = LedgerTokenStore(ledger, connection, cipher)
        barrier.wait()
        with store.locked():
            current = store.load()
            seen.append(current["generation"])
            time.sleep(0.05)  # widen the window a lost update would need; not a timing assertion
            store.save({"generation": current["generation"] + 1})

    threads = [threading.Thread(target=refresh) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert sorted(seen) == [0, 1, 2] and first.load() == {"generation": 3}
    finally:
        first.delete()

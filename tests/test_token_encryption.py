"""Xero token sets at rest: sealed with Fernet in the ledger, old plaintext rows upgraded, a lost key is a
"reconnect", keys rotate. Against the sandbox's identity server, over HTTP."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select, update

from atx.connections import forget_clients, ledger_for, token_store, xero_gateway
from clients.xero import XeroAuthError
from ledger import TokenCipher
from ledger.models import StoredToken
from sandbox.stack import SandboxStack

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 24)


@pytest.fixture
def stack(atx_home):
    with SandboxStack(seed=3, invoices=6, window_end=END) as s:
        yield s


def stored_row(settings) -> tuple[str, object]:
    """The xero_token row exactly as the database holds it: (token_json, updated_at)."""
    with ledger_for(settings).engine.connect() as conn:
        return conn.execute(select(StoredToken.token_json, StoredToken.updated_at)
                            .where(StoredToken.connection == settings.token_connection)).one()


def write_raw(settings, text: str) -> None:
    with ledger_for(settings).engine.begin() as conn:
        conn.execute(update(StoredToken).where(StoredToken.connection == settings.token_connection)
                     .values(token_json=text))


def assert_holds_no_token(text: str, *tokens: dict) -> None:
    for token in tokens:
        for name in ("access_token", "refresh_token"):
            value = token[name]
            # The whole token, and its tail (the signature part of the JWT-shaped access token).
            assert value not in text and value[-16:] not in text, f"{name} found in the ledger row"


def test_the_row_holds_no_token_after_connect_nor_after_a_refresh(stack):
    settings = stack.connect_tenant("acme")
    connected = token_store(settings).load()
    text, _ = stored_row(settings)
    assert TokenCipher.is_sealed(text)
    assert_holds_no_token(text, connected)

    refreshed = xero_gateway(settings).current_token(force_refresh=True)  # a real refresh at the sandbox
    assert refreshed["refresh_token"] != connected["refresh_token"]
    text, _ = stored_row(settings)
    assert_holds_no_token(text, connected, refreshed)
    assert "access_token" not in text and "expires_at" not in text  # not even the shape shows
    # The sealed row is the live connection: another gateway (as another process would) reads and uses it.
    forget_clients()
    assert xero_gateway(settings).organisation().name == stack.org.name
    assert token_store(settings).load()["refresh_token"] == refreshed["refresh_token"]


def test_a_plaintext_row_of_the_previous_release_is_read_and_sealed_keeping_its_age(stack):
    import json

    settings = stack.connect_tenant("acme")
    token = token_store(settings).load()
    write_raw(settings, json.dumps(token))  # what the release before encryption left in the ledger
    _, saved_at = stored_row(settings)

    forget_clients()
    assert xero_gateway(settings).organisation().name == stack.org.name  # the upgrade loses nothing
    text, updated_at = stored_row(settings)
    assert TokenCipher.is_sealed(text) and token_store(settings).load() == token
    assert_holds_no_token(text, token)
    # Sealing is not a save of a new refresh token: the token-age warning still counts from the last one.
    assert updated_at == saved_at

    # And it refreshes as before, sealed again.
    refreshed = xero_gateway(settings).current_token(force_refresh=True)
    text, _ = stored_row(settings)
    assert TokenCipher.is_sealed(text)
    assert_holds_no_token(text, token, refreshed)


def test_a_wrong_key_asks_to_reconnect_and_changes_nothing(stack, monkeypatch):
    settings = stack.connect_tenant("acme")
    before, _ = stored_row(settings)
    monkeypatch.setenv("ATX_TOKEN_KEY", TokenCipher.new_key())  # the key was lost and a new one set
    forget_clients()

    with pytest.raises(XeroAuthError, match=r"atx connect xero --tenant acme") as caught:
        xero_gateway(settings).organisation()
    assert "cannot be opened with the token key env:ATX_TOKEN_KEY" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no InvalidToken behind it

    # `atx check`, as a person runs it: a problem with its fix, no traceback.
    result = subprocess.run([sys.executable, "-m", "atx.cli", "check", "--tenant", "acme"], env=dict(os.environ),
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Xero connection" in out and "atx connect xero --tenant acme" in out
    assert "Traceback" not in out and "InvalidToken" not in out
    assert stored_row(settings)[0] == before  # the row is left for the right key to open again

    # Reconnecting (what the message asks) stores a token set under the new key, and the tenant works.
    settings = stack.connect_tenant("acme")
    assert xero_gateway(settings).organisation().name == stack.org.name


def test_a_key_that_is_not_a_fernet_key_is_reported_by_the_check(stack, monkeypatch):
    from atx.check import check_tenant

    stack.connect_tenant("acme")
    monkeypatch.setenv("ATX_TOKEN_KEY", "not-a-key")
    forget_clients()
    errors = {p.area: p for p in check_tenant("acme") if p.severity == "error"}
    assert "must hold Fernet keys" in errors["Xero token key"].problem
    assert "not-a-key" not in errors["Xero token key"].problem


def test_a_rotated_key_opens_the_old_rows_and_seals_the_next_save_with_the_new_key(stack, monkeypatch):
    old = os.environ["ATX_TOKEN_KEY"]
    settings = stack.connect_tenant("acme")  # sealed with the old key
    new = TokenCipher.new_key()
    monkeypatch.setenv("ATX_TOKEN_KEY", f"{new},{old}")
    forget_clients()
    assert xero_gateway(settings).organisation().name == stack.org.name  # the old key still opens it
    refreshed = xero_gateway(settings).current_token(force_refresh=True)
    text, _ = stored_row(settings)
    assert TokenCipher([new]).open(text)["refresh_token"] == refreshed["refresh_token"]

    monkeypatch.setenv("ATX_TOKEN_KEY", new)  # the old key retired once every token set was saved again
    forget_clients()
    assert xero_gateway(settings).organisation().name == stack.org.name


def test_a_refresh_token_expiring_in_another_process_still_rotates_once(stack):
    """The lock's guarantee holds with sealed rows: the second process opens what the first sealed."""
    settings = stack.connect_tenant("acme")
    store = token_store(settings)
    token = dict(store.load(), expires_at=time.time() - 10)
    store.save(token)
    code = ("from atx.connections import xero_gateway; from atx.settings import load_tenant; "
            "print(xero_gateway(load_tenant('acme')).current_token()['refresh_token'][-8:])")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    tails = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        tails.append(out.strip().splitlines()[-1])
    assert tails[0] == tails[1] == store.load()["refresh_token"][-8:] != token["refresh_token"][-8:]
    assert TokenCipher.is_sealed(stored_row(settings)[0])


def test_without_a_configured_key_one_is_made_in_a_prefect_secret_block_and_shared(stack, prefect_server, monkeypatch):
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL

    monkeypatch.delenv("ATX_TOKEN_KEY")
    settings = stack.connect_tenant("acme")
    key = Secret.load("atx-token-key").get()
    text, _ = stored_row(settings)
    assert TokenCipher([key]).open(text) == token_store(settings).load()
    assert key not in text
    for path in Path(os.environ["ATX_HOME"]).rglob("*"):  # the key is in no file of ATX_HOME
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    # Another process on the same Prefect API finds the same block and uses the connection.
    code = "from atx.connections import xero_gateway; from atx.settings import load_tenant; " \
           "print(xero_gateway(load_tenant('acme')).organisation().name)"
    env = {k: v for k, v in os.environ.items() if k != "ATX_TOKEN_KEY"}
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == stack.org.name
    assert Secret.load("atx-token-key").get() == key  # made once, never replaced

"""The secret scan: the invoices, bills and payments flows run against the sandbox with known secret values
(the Autotask secret, the Xero client secret, every token the sandbox's identity server issued, the key
sealing tokens, and wrong secrets a person might type), through a token refresh, lost answers and three
failed runs. Then every place a secret could be left is read back and searched: each log line, artifact,
flow and task run the Prefect API holds for those runs, every row of every ledger table (SQLite, and
PostgreSQL with ATX_TEST_POSTGRES_URL), every file under the test's ATX_HOME and tenants folder, and the
messages and tracebacks of the errors raised."""
from __future__ import annotations

import os
import secrets
import time
import traceback
from datetime import date
from decimal import Decimal

import pytest
import yaml
from sqlalchemy import MetaData, select

from atx.connections import autotask_client, forget_clients, ledger_for, token_store, xero_gateway
from clients.autotask import AutotaskError
from clients.xero import XeroAuthError
from core.documents import INVOICE, PaymentDraft
from ledger import DocState
from sandbox.stack import XERO_CLIENT_ID, SandboxStack

pytestmark = pytest.mark.e2e

SINCE, UNTIL = date(2026, 10, 1), date(2026, 11, 30)
BANK = "090"


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request):
    """None for the default SQLite ledger under ATX_HOME; a fresh PostgreSQL schema's URL otherwise."""
    if request.param == "sqlite":
        yield None
        return
    url = os.environ.get("ATX_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set ATX_TEST_POSTGRES_URL to scan a PostgreSQL ledger too")
    from tests.ledger_support import postgres_schema

    with postgres_schema(url) as schema:
        ledger_url = f"{url}?options=-csearch_path%3D{schema}"
        yield ledger_url
        from atx.connections import _ledgers

        forget_clients()  # the gateways give back their unused calls while the schema is still there
        ledger = _ledgers.pop(ledger_url, None)
        if ledger is not None:
            ledger.engine.dispose()  # before the schema is dropped


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=12, window_end=UNTIL) as s:
        yield s


def approved_mapping(tmp_path) -> str:
    mapping = yaml.safe_load(open("mappings/demo.yaml"))
    mapping["status"] = "AUTHORISED"  # payments need approved invoices
    path = tmp_path / "approved.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return str(path)


def expire_access_token(settings) -> None:
    store = token_store(settings)
    store.save(dict(store.load(), expires_at=time.time() - 10))
    forget_clients()


def failure_text(call) -> str:
    """The message and the whole traceback of the error `call` raises, as a log or a terminal shows it."""
    try:
        call()
    except (AutotaskError, XeroAuthError) as exc:
        return "".join(traceback.format_exception(exc))
    raise AssertionError("the call was expected to fail")


# ---- where secrets could be left -----------------------------------------------------------------------
def prefect_texts(run_ids: list) -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter,
                                                FlowRunFilterId, LogFilter, LogFilterFlowRunId)
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # every log line of the runs has reached the API

    def every(read):
        out, page = [], 200
        while True:
            batch = read(limit=page, offset=len(out))
            out += batch
            if len(batch) < page:
                return out

    with get_client(sync_client=True) as client:
        runs = [client.read_flow_run(run_id) for run_id in run_ids]
        task_runs = every(lambda **p: client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)), **p))
        logs = every(lambda **p: client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)), **p))
        artifacts = every(lambda **p: client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=run_ids)), **p))
    return {
        "flow runs": [r.model_dump_json() for r in runs],
        "task runs": [t.model_dump_json() for t in task_runs],
        "logs": [log.message for log in logs],
        "artifacts": [a.model_dump_json() for a in artifacts],
    }


def ledger_rows(settings) -> dict[str, list[str]]:
    engine = ledger_for(settings).engine
    tables = MetaData()
    tables.reflect(engine)
    with engine.connect() as conn:
        return {f"ledger table {name}": [repr(tuple(row)) for row in conn.execute(select(table))]
                for name, table in tables.tables.items()}


def file_contents(*folders) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}


def needles(value: str) -> list[str]:
    # The whole value, and its tail: a secret cut short in a message is still a leak.
    return [value] + ([value[-16:]] if len(value) >= 24 else [])


def leaks(known: dict[str, str], texts: dict[str, list[str]], files: dict[str, bytes]) -> list[str]:
    found = []
    for what, value in known.items():
        for needle in needles(value):
            found += [f"{what} in {where}" for where, items in texts.items() if any(needle in text for text in items)]
            found += [f"{what} in the file {path}" for path, data in files.items() if needle.encode() in data]
    return sorted(set(found))


# ---- the scan ----------------------------------------------------------------------------------------------
def test_no_secret_reaches_logs_artifacts_the_ledger_files_or_error_messages(stack, ledger_url, tmp_path, monkeypatch):
    from flows.bills import bills
    from flows.invoices import invoices
    from flows.payments import payments

    options = {"ledger_url": ledger_url} if ledger_url else {}
    settings = stack.connect_tenant("acme", approved_mapping(tmp_path), flows=["invoices", "bills", "payments"],
                                    attach_pdfs=True, payments={"bank_account": BANK}, **options)
    autotask_env, xero_env = stack.secret_env("acme")
    wrong = {"a wrong Autotask secret": "wrong-" + secrets.token_urlsafe(18),
             "a wrong Xero client secret": "wrong-" + secrets.token_urlsafe(18)}
    run_ids, errors = [], []

    def run(flow):
        state = flow(tenant="acme", since=SINCE, until=UNTIL, return_state=True)
        run_ids.append(state.state_details.flow_run_id)
        if not state.is_completed():
            errors.append(state.message or "")
        return state

    # Invoices from an expired access token (a refresh inside the run), through a lost answer and a 503.
    expire_access_token(settings)
    stack.xero.faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Invoices", times=1)
    stack.autotask_faults.script("503", method="POST", times=1)
    state = run(invoices)
    assert state.is_completed(), state.message
    assert run(bills).is_completed()
    # A person pays an invoice in Xero; the payments run writes the paid date back to Autotask.
    row = next(r for r in ledger_for(settings).records("acme", INVOICE.name).values() if r.state == DocState.SYNCED)
    due = xero_gateway(settings).find(INVOICE, ids=[row.target_id])[0].amount_due
    paid = xero_gateway(settings).create_payments(
        [PaymentDraft(invoice_id=row.target_id, amount=Decimal(due), date=date(2026, 11, 26), account_code=BANK,
                      reference="bank feed")], idempotency_key="person-pays")
    assert paid[0].ok
    assert run(payments).is_completed()

    # Failures, each a message a person reads: a wrong Autotask secret, a wrong Xero client secret at a
    # refresh, and a grant revoked in Xero.
    monkeypatch.setenv(autotask_env, wrong["a wrong Autotask secret"])
    forget_clients()
    assert run(invoices).is_failed()

    def autotask_refuses():
        with autotask_client(settings) as at:
            at.threshold()

    errors.append(failure_text(autotask_refuses))
    monkeypatch.setenv(autotask_env, stack.autotask.credentials.secret)

    monkeypatch.setenv(xero_env, wrong["a wrong Xero client secret"])
    expire_access_token(settings)
    assert run(invoices).is_failed()
    errors.append(failure_text(lambda: xero_gateway(settings).current_token()))
    monkeypatch.setenv(xero_env, stack.xero_client_secret)

    forget_clients()
    issued = stack.xero.identity
    tokens = {"access token": set(issued._access), "refresh token": set(issued._refresh)}  # before revoking
    stack.xero.disconnect_app(XERO_CLIENT_ID)
    assert run(invoices).is_failed()
    errors.append(failure_text(lambda: xero_gateway(settings).organisation()))
    assert len(errors) == 6
    assert all("Autotask refused the credentials" in e for e in errors[:2])
    assert all("atx connect xero --tenant acme" in e for e in errors[2:])

    # Every secret this test knows, the sandbox's tokens included (the connect and the refresh issued them).
    tokens["access token"] |= set(issued._access)
    tokens["refresh token"] |= set(issued._refresh)
    assert all(len(issued) >= 2 for issued in tokens.values())
    known = {"the Autotask secret": stack.autotask.credentials.secret,
             "the Xero client secret": stack.xero_client_secret,
             "the token key": os.environ["ATX_TOKEN_KEY"], **wrong}
    known.update({f"{kind} …{t[-4:]}": t for kind, values in tokens.items() for t in values})

    texts = {**prefect_texts(run_ids), **ledger_rows(settings), "error messages": errors}
    files = file_contents(atx_home_of(tmp_path), tmp_path / "tenants")
    # The scan reads what is really there: logs, reports, ledger rows and files, the sealed token set among them.
    assert len(texts["logs"]) > 20 and any("acme" in line for line in texts["logs"])
    assert any("invoices-acme" in a for a in texts["artifacts"]) and len(texts["task runs"]) > 10
    assert len(texts["ledger table sync_ledger"]) > 10 and texts["ledger table xero_token"]
    assert len(texts["ledger table audit_entries"]) > 10  # every write of those runs, the failed ones' too
    assert any(path.endswith("acme.yaml") for path in files)
    assert ledger_url or any(path.endswith("ledger.db") for path in files)
    assert leaks(known, texts, files) == []


def atx_home_of(tmp_path):
    return tmp_path / "atx"  # tests/conftest.py's atx_home fixture

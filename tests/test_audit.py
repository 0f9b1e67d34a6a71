"""The audit trail: every write the sync sends to Xero and Autotask, with its answer, kept per run in the ledger.

The redaction is tested on its own (pure). Then real runs against the sandbox over HTTP: an invoices run that
creates contacts and invoices, has one kind of invoice refused by Xero, attaches PDFs and refreshes its token
on the way, and a payments run that writes a paid date back to Autotask. Each write is checked against what
the simulators now hold, every stored row is searched for the sandbox's secrets and every token it issued,
the purge keeps exactly `audit_days`, and `atx audit show` prints the run."""
from __future__ import annotations

import json
import re
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from core.audit import (REDACTED, TEXT_LIMIT, WRITE_METHODS, answer_summary, outcome_line, redact, redact_headers,
                        redact_path, write_entry)

AT = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)


# ---- redaction, pure ------------------------------------------------------------------------------------
def test_credential_headers_are_redacted_and_the_rest_kept():
    headers = {"Authorization": "Bearer eyJhbGciOi.abc.def", "Secret": "at-secret-value",
               "ApiIntegrationCode": "CODE-1", "UserName": "api@acme.example", "Idempotency-Key": "k-123",
               "xero-tenant-id": "org-1", "Content-Type": "application/json"}
    kept = redact_headers(headers)
    assert {k: kept[k] for k in ("Authorization", "Secret", "ApiIntegrationCode", "UserName")} == dict.fromkeys(
        ("Authorization", "Secret", "ApiIntegrationCode", "UserName"), REDACTED)
    assert (kept["Idempotency-Key"], kept["xero-tenant-id"], kept["Content-Type"]) == (
        "k-123", "org-1", "application/json")


def test_secret_looking_keys_lose_their_values_at_any_depth():
    body = {"grant_type": "refresh_token", "refresh_token": "r-1", "access_token": "a-1", "id_token": "i-1",
            "client_secret": "s-1", "nested": [{"Password": "p-1", "apiKey": "k-1", "IntegrationCode": "c-1",
                                                "InvoiceNumber": "INV-1", "Total": Decimal("12.50")}],
            "empty_token": None}
    kept = redact(body)
    assert kept["grant_type"] == "refresh_token"  # a value naming a token is not one
    assert [kept[k] for k in ("refresh_token", "access_token", "id_token", "client_secret")] == [REDACTED] * 4
    assert kept["nested"] == [{"Password": REDACTED, "apiKey": REDACTED, "IntegrationCode": REDACTED,
                               "InvoiceNumber": "INV-1", "Total": "12.50"}]
    assert kept["empty_token"] is None


def test_known_secret_values_are_cut_out_of_any_text_and_files_become_their_size():
    secret = "s3cr3t-value-of-the-client"
    kept = redact({"Message": f"refused for {secret}!", "Detail": [f"x{secret}y"], "file": b"%PDF-1.7" + bytes(500),
                   "Description": "é" * (TEXT_LIMIT + 10)}, known=[secret, ""])
    assert kept["Message"] == f"refused for {REDACTED}!" and kept["Detail"] == [f"x{REDACTED}y"]
    assert kept["file"] == "<508 bytes>"
    assert kept["Description"].startswith("é" * 10) and kept["Description"].endswith(f"({TEXT_LIMIT + 10} characters)")
    assert redact_path("https://h/oauth?refresh_token=r-1&unitdp=4", [("summarizeErrors", "false")]) == (
        f"/oauth?refresh_token={REDACTED.replace('<', '%3C').replace('>', '%3E')}&unitdp=4&summarizeErrors=false")


def test_an_answer_keeps_ids_numbers_statuses_and_errors_not_the_documents():
    answer = {"Id": "e-1", "Status": "OK", "ProviderName": "atx", "Invoices": [
        {"InvoiceID": "i-1", "InvoiceNumber": "INV-1", "Type": "ACCREC", "Status": "AUTHORISED", "Total": 115.0,
         "Contact": {"ContactID": "c-1", "Name": "Acme", "Addresses": []}, "LineItems": [{"LineItemID": "l-1"}],
         "StatusAttributeString": "OK"},
        {"InvoiceNumber": "INV-2", "StatusAttributeString": "ERROR", "HasErrors": True,
         "ValidationErrors": [{"Message": "Account code '090' is not a valid code for this document."}]}]}
    kept = answer_summary(answer)
    assert kept == {"Id": "e-1", "Status": "OK", "Invoices": [
        {"InvoiceID": "i-1", "InvoiceNumber": "INV-1", "Type": "ACCREC", "Status": "AUTHORISED",
         "Contact": {"ContactID": "c-1"}, "StatusAttributeString": "OK"},
        {"InvoiceNumber": "INV-2", "StatusAttributeString": "ERROR", "HasErrors": True,
         "ValidationErrors": ["Account code '090' is not a valid code for this document."]}]}
    assert outcome_line({"body": kept}) == (
        "INV-1 i-1, INV-2 refused: Account code '090' is not a valid code for this document.")
    assert outcome_line({"body": answer_summary({"itemId": 29684})}) == "29684"
    refusal = answer_summary({"errors": ["paidDate is read-only"]})
    assert outcome_line({"body": refusal}) == "refused: paidDate is read-only"
    assert outcome_line({"error": "ReadTimeout"}) == "no answer: ReadTimeout"


def test_a_whole_entry_holds_none_of_the_secrets_it_was_given():
    secrets = {"token": "eyJ-access-token-value", "secret": "autotask-secret-value", "code": "INTEGRATION-CODE-9"}
    entry = write_entry(
        api="autotask", method="patch", url="https://at/ATServicesRest/V1.0/Invoices",
        headers={"Secret": secrets["secret"], "ApiIntegrationCode": secrets["code"], "UserName": "u@x",
                 "Authorization": f"Bearer {secrets['token']}"},
        body=json.dumps({"id": 5, "paidDate": "2026-11-26", "comment": f"echo {secrets['token']}"}),
        status=500, answer=json.dumps({"errors": [f"bad secret {secrets['secret']} for {secrets['code']}"]}).encode(),
        at=AT, known=secrets.values())
    stored = json.dumps([entry.path, entry.request, entry.response])
    assert not [name for name, value in secrets.items() if value in stored]
    assert (entry.method, entry.status, entry.request["body"]["paidDate"]) == ("PATCH", 500, "2026-11-26")
    assert entry.path == "/ATServicesRest/V1.0/Invoices"
    assert entry.outcome == f"refused: bad secret {REDACTED} for {REDACTED}"


# ---- the ledger's trail, on SQLite and PostgreSQL ---------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    from ledger import Ledger, engine_for_url
    from tests.ledger_support import engine_in_schema

    if request.param == "sqlite":
        engine = engine_for_url(f"sqlite+pysqlite:///{tmp_path / 'ledger.db'}")
    else:
        engine = engine_in_schema(request.getfixturevalue("postgres_url"), request.getfixturevalue("postgres_schema"))
    yield Ledger(engine)
    engine.dispose()


def test_the_trail_keeps_a_runs_writes_in_order_and_purges_by_tenant_and_age(ledger):
    now = datetime.now(timezone.utc)

    def entry(days: float, path: str, status: int | None = 200):
        return write_entry(api="xero", method="PUT", url=f"https://api.xero.com{path}", headers={}, body={},
                           status=status, answer=b"{}", error=None if status else "ReadTimeout",
                           at=now - timedelta(days=days))

    trail = ledger.audit
    trail.add([entry(0.002, "/second"), entry(0.003, "/first")], tenant="acme", run_id="run-1")
    trail.add([entry(0.001, "/third", None)], tenant="acme", run_id="run-1")
    trail.add([entry(31, "/old"), entry(29, "/recent")], tenant="acme", run_id="run-0")
    trail.add([entry(31, "/globex")], tenant="globex", run_id="run-0")
    kept = trail.of_run("run-1")
    assert [(e.path, e.status, e.outcome) for e in kept] == [
        ("/first", 200, ""), ("/second", 200, ""), ("/third", None, "no answer: ReadTimeout")]
    assert all(e.at.tzinfo is not None and e.tenant == "acme" for e in kept) and trail.count("run-1") == 3
    assert trail.purge("acme", 30) == 1
    assert sorted(e.path for e in trail.of_run("run-0")) == ["/globex", "/recent"]
    assert [e.path for e in trail.of_run("run-0", "globex")] == ["/globex"]


def test_audit_days_defaults_to_90_and_must_be_at_least_a_day():
    from pydantic import ValidationError

    from atx.settings import TenantSettings

    base = {"name": "acme", "mapping": "demo",
            "autotask": {"username": "u", "integration_code": "c", "secret": "env:S"},
            "xero": {"client_id": "i", "client_secret": "env:X", "tenant_id": "t"}}
    assert TenantSettings(**base).audit_days == 90
    assert TenantSettings(**base, audit_days=7).audit_days == 7
    with pytest.raises(ValidationError, match="audit_days"):
        TenantSettings(**base, audit_days=0)


# ---- real runs against the sandbox ------------------------------------------------------------------------
SINCE, UNTIL = date(2026, 10, 1), date(2026, 11, 30)
BANK = "090"  # the sandbox's bank account: active (so the check passes), but no account for an invoice's lines


@pytest.fixture
def stack(atx_home, prefect_server):
    from sandbox.stack import SandboxStack

    with SandboxStack(seed=11, invoices=12, window_end=UNTIL) as s:
        yield s


def refusing_mapping(tmp_path) -> str:
    """The demo mapping, approving invoices (payments need them approved), with one revenue account mapped to
    the bank account: Xero refuses those invoices element by element, the others go through."""
    mapping = yaml.safe_load(open("mappings/demo.yaml"))
    mapping["status"] = "AUTHORISED"
    mapping["accounts"]["by_gl_account"][5] = BANK
    path = tmp_path / "refusing.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return str(path)


def old_entry(days: int):
    return write_entry(api="xero", method="PUT", url="/api.xro/2.0/Invoices", headers={}, body={"Invoices": []},
                       status=200, answer=b'{"Invoices": []}', at=datetime.now(timezone.utc) - timedelta(days=days))


def ids_in(value) -> set[str]:
    if isinstance(value, list):
        return set().union(*map(ids_in, value)) if value else set()
    if isinstance(value, dict):
        found = {str(v) for k, v in value.items() if str(k).lower().endswith("id") and not isinstance(v, (dict, list))}
        return found.union(*map(ids_in, value.values()))
    return set()


def errors_in(value) -> list[str]:
    if isinstance(value, list):
        return [e for v in value for e in errors_in(v)]
    if isinstance(value, dict):
        return [*(value.get("ValidationErrors") or []), *(e for v in value.values() for e in errors_in(v))]
    return []


def test_a_sync_keeps_every_write_with_its_answer_and_no_secret(stack, tmp_path):
    from flows.invoices import invoices
    from flows.payments import payments

    from atx.cli import app
    from atx.connections import forget_clients, ledger_for, token_store, xero_gateway
    from core.documents import INVOICE, PaymentDraft
    from ledger import DocState
    from ledger.models import AuditEntry

    settings = stack.connect_tenant("acme", refusing_mapping(tmp_path), flows=["invoices", "payments"],
                                    attach_pdfs=True, payments={"bank_account": BANK})
    ledger = ledger_for(settings)
    trail = ledger.audit
    # Entries of earlier runs: one past the default 90 days, one within them, and another tenant's older still.
    trail.add([old_entry(91)], tenant="acme", run_id="run-91-days-ago")
    trail.add([old_entry(89)], tenant="acme", run_id="run-89-days-ago")
    trail.add([old_entry(200)], tenant="globex", run_id="globex-run")

    # The access token has expired: the run refreshes it (new tokens issued) before its first write.
    store = token_store(settings)
    store.save(dict(store.load(), expires_at=time.time() - 10))
    forget_clients()
    state = invoices(tenant="acme", since=SINCE, until=UNTIL, return_state=True)
    assert state.is_completed(), state.message
    run_id, summary = str(state.state_details.flow_run_id), state.result()

    # The purge at the run's start: the tenant's entries past audit_days are gone, the rest kept.
    assert trail.of_run("run-91-days-ago") == []
    assert len(trail.of_run("run-89-days-ago")) == 1 and len(trail.of_run("globex-run")) == 1

    entries = trail.of_run(run_id)
    assert entries and {e.method for e in entries} <= WRITE_METHODS  # writes only: the run's reads are not kept
    assert {(e.tenant, e.api) for e in entries} == {("acme", "xero")}
    assert all(e.status == 200 for e in entries), [(e.method, e.path, e.status) for e in entries]
    assert all(e.request["headers"]["Authorization"] == REDACTED and e.request["headers"]["Idempotency-Key"]
               for e in entries)

    # Every document the run created in Xero is named by a write's answer.
    rows = ledger.records("acme", INVOICE.name)
    synced = {r.target_id for r in rows.values() if r.state == DocState.SYNCED}
    invoice_writes = [e for e in entries if e.path.startswith("/api.xro/2.0/Invoices?")]
    assert {e.method for e in invoice_writes} == {"PUT"}
    assert synced and synced <= ids_in([e.response for e in invoice_writes]) and synced <= set(stack.org.invoices)
    contacts = {r.target_id for r in ledger.records("acme", "contact").values() if r.target_id}
    contact_writes = [e for e in entries if e.path.startswith("/api.xro/2.0/Contacts")]
    assert contact_writes and contacts <= ids_in([e.response for e in contact_writes]) | ids_in(
        [e.request for e in contact_writes])
    # The invoices Xero refused: each refusal's reason, as Xero gave it, is in the write's answer.
    refused = [r for r in rows.values() if r.state == DocState.SET_ASIDE and f"'{BANK}'" in (r.reason or "")]
    assert refused, "the mapping was to have Xero refuse the invoices of one account"
    stored_errors = errors_in([e.response for e in invoice_writes])
    assert all(any(m in r.reason for m in stored_errors) for r in refused), (stored_errors, [r.reason for r in refused])
    outcomes = " ".join(e.outcome for e in invoice_writes)
    assert all(f"{r.source_number} refused: Account code '{BANK}'" in outcomes for r in refused), outcomes
    # Every PDF attached is a PUT of its file, kept as its size only.
    attached = [doc for doc, files in stack.org.attachments.items() if files]
    attachment_writes = [e for e in entries if "/Attachments/" in e.path]
    assert attached and len(attachment_writes) >= len(attached)
    assert {e.path.split("/")[4] for e in attachment_writes} >= set(attached)
    assert all(re.fullmatch(r"<\d+ bytes>", e.request["body"]) for e in attachment_writes)

    # The run report names the trail and counts its writes.
    assert summary.audited_writes == len(entries)
    from tasks.report import summary_markdown

    line = f"Audit trail: `atx audit show --run {run_id} --tenant acme` ({len(entries)} writes)."
    assert line in summary_markdown(summary)

    # A person's payment in Xero (a write outside any run), then the payments run writes the paid date back.
    paid_id = next(iter(synced))
    due = xero_gateway(settings).find(INVOICE, ids=[paid_id])[0].amount_due
    assert xero_gateway(settings).create_payments(
        [PaymentDraft(invoice_id=paid_id, amount=Decimal(due), date=date(2026, 11, 26), account_code=BANK,
                      reference="bank feed")], idempotency_key="person-pays")[0].ok
    state = payments(tenant="acme", since=SINCE, until=UNTIL, return_state=True)
    assert state.is_completed(), state.message
    payment_run = str(state.state_details.flow_run_id)
    autotask_id = next(r.source_id for r in rows.values() if r.target_id == paid_id)
    [patch] = [e for e in trail.of_run(payment_run) if e.api == "autotask"]
    assert (patch.method, patch.path.lower(), patch.status) == ("PATCH", "/atservicesrest/v1.0/invoices", 200)
    assert patch.request["body"]["id"] == int(autotask_id)
    assert patch.request["body"]["paidDate"].startswith("2026-11-26")
    assert patch.response == {"body": {"itemId": int(autotask_id)}} and patch.outcome == autotask_id
    assert {patch.request["headers"][h] for h in ("Secret", "ApiIntegrationCode", "UserName")} == {REDACTED}
    with ledger.session() as s:
        outside = s.scalars(select(AuditEntry).where(AuditEntry.run_id.is_(None))).all()
    assert [(e.method, e.path.split("?")[0]) for e in outside] == [("PUT", "/api.xro/2.0/Payments")]

    # Nothing secret in any row: the sandbox's secrets and every token its identity server issued.
    issued = stack.xero.identity
    tokens = set(issued._access) | set(issued._refresh)
    assert len(issued._refresh) >= 2, "the run was to refresh its token"
    known = {"the Autotask secret": stack.autotask.credentials.secret,
             "the Autotask integration code": stack.autotask.credentials.integration_code,
             "the Xero client secret": stack.xero_client_secret,
             **{f"a token …{t[-4:]}": t for t in tokens}}
    with ledger.engine.connect() as conn:
        stored = [repr(tuple(row)) for row in conn.execute(select(AuditEntry.__table__))]
    assert len(stored) >= len(entries) + 4 and any(REDACTED in row for row in stored)
    assert [what for what, value in known.items() if any(value in row for row in stored)] == []

    # atx audit show prints the run's writes, one row each.
    result = CliRunner().invoke(app, ["audit", "show", "--run", run_id, "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    assert f"{len(entries)} writes." in result.output and "Writes of run" in result.output
    assert result.output.count(" PUT ") >= len(entries) - len(contact_writes)
    assert "/api.xro/2.0/Invoices" in result.output and "refused: Account code" in result.output
    every_ledger = CliRunner().invoke(app, ["audit", "show", "--run", payment_run])
    assert every_ledger.exit_code == 0 and "PATCH" in every_ledger.output and "autotask" in every_ledger.output
    unknown = CliRunner().invoke(app, ["audit", "show", "--run", "no-such-run", "--tenant", "acme"])
    assert unknown.exit_code == 1 and "holds no write of run no-such-run" in unknown.output


def test_fast_json_keeps_what_the_standard_library_would():
    """The trail reads and writes JSON with orjson; every value comes out as json.dumps(default=str) and
    json.loads would have made it, a 30-digit integer included."""
    import json as std
    from datetime import date as day, datetime as moment, timezone as tz
    from decimal import Decimal as D

    from core.audit import parse_body, to_json

    document = {"total": D("1.50"), "at": moment(2026, 1, 2, 3, 4, 5, tzinfo=tz.utc), "day": day(2026, 1, 2),
                "name": "Māori ✓ \u2028", "none": None, "rate": 1.5, "ok": True, "big": 2**70, "list": [1, "x"]}
    assert to_json(document) == std.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))
    text = '{"InvoiceID": "4f2c", "Total": 207.5, "Id": 123456789012345678901234567890, "Lines": [1, 2]}'
    assert parse_body(text) == parse_body(text.encode()) == std.loads(text)
    assert parse_body(text)["Id"] == 123456789012345678901234567890
    assert parse_body("not json") == "not json"

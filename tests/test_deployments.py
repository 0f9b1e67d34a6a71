"""prefect.yaml generated from the tenant files: each tenant's deployment, schedule and limit."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from deployments import deployment_entries, stale_entries
from sandbox.stack import SandboxStack

ROOT = Path(__file__).resolve().parent.parent


def test_each_tenant_gets_its_own_deployment_schedule_and_limit(atx_home, tmp_path):
    with SandboxStack(invoices=1) as stack:
        stack.connect_tenant("acme", schedule={"cron": "0 6 * * 1-5", "timezone": "Pacific/Auckland"})
        stack.connect_tenant("beta", schedule={"cron": "15 22 * * *", "timezone": "Europe/London", "active": False})
    out = tmp_path / "prefect.yaml"
    result = subprocess.run([sys.executable, "-m", "atx.cli", "deployments", "sync", "--file", str(out)],
                            env=dict(os.environ), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(out.read_text())
    by_name = {d["name"]: d for d in doc["deployments"] if d["entrypoint"] != "flows/backfill.py:backfill"}
    assert set(by_name) == {"acme", "beta"}
    acme, beta = by_name["acme"], by_name["beta"]
    assert acme["entrypoint"] == "flows/invoices.py:invoices"
    assert acme["schedules"] == [{"cron": "0 6 * * 1-5", "timezone": "Pacific/Auckland", "active": True}]
    assert beta["schedules"] == [{"cron": "15 22 * * *", "timezone": "Europe/London", "active": False}]
    assert acme["parameters"] == {"tenant": "acme", "dry_run": False}
    assert "tenant:acme" in acme["tags"] and acme["concurrency_limit"]["limit"] == 1
    # No secret and no machine path ends up in the generated file.
    text = out.read_text()
    assert str(atx_home) not in text and not re.search(r"(env|block):\w", text)
    # The runs a worker starts keep their call limits in Prefect's global concurrency limits.
    assert acme["work_pool"] == {"name": "atx", "job_variables": {"env": {"ATX_CALL_LIMITS": "prefect"}}}

    from atx.settings import load_all_tenants

    assert stale_entries(out, load_all_tenants()) == []
    check = subprocess.run([sys.executable, "-m", "atx.cli", "deployments", "check", "--file", str(out)],
                           env=dict(os.environ), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout


def test_a_changed_schedule_makes_prefect_yaml_stale(atx_home, tmp_path):
    with SandboxStack(invoices=1) as stack:
        settings = stack.connect_tenant("acme")
    out = tmp_path / "prefect.yaml"
    from deployments import prefect_yaml

    out.write_text(prefect_yaml([settings]))
    moved = settings.model_copy(update={"schedule": settings.schedule.model_copy(update={"cron": "0 9 * * *"})})
    assert stale_entries(out, [moved]) == ["acme"]
    assert deployment_entries([moved])[0]["schedules"][0]["cron"] == "0 9 * * *"


def test_a_tenant_that_lists_bills_gets_a_bills_deployment_too(atx_home):
    with SandboxStack(invoices=1) as stack:
        both = stack.connect_tenant("acme", flows=["invoices", "bills"])
        only = stack.connect_tenant("beta")
    entries = [d for d in deployment_entries([both, only]) if d["entrypoint"] != "flows/backfill.py:backfill"]
    pairs = sorted((d["entrypoint"], d["name"]) for d in entries)
    assert pairs == [("flows/bills.py:bills", "acme"), ("flows/invoices.py:invoices", "acme"),
                     ("flows/invoices.py:invoices", "beta")]
    bills = next(d for d in entries if d["entrypoint"] == "flows/bills.py:bills")
    assert "flow:bills" in bills["tags"] and bills["concurrency_limit"]["limit"] == 1
    assert bills["parameters"] == {"tenant": "acme", "dry_run": False}


def test_payments_get_a_deployment_and_a_webhook_trigger_only_where_the_tenant_enables_them(atx_home):
    with SandboxStack(invoices=1) as stack:
        pushed = stack.connect_tenant("acme", flows=["invoices", "payments"], payments={"webhooks": True})
        polled = stack.connect_tenant("beta", flows=["payments"])
    entries = {(d["entrypoint"], d["name"]): d for d in deployment_entries([pushed, polled])}
    assert set(entries) == {("flows/invoices.py:invoices", "acme"), ("flows/payments.py:payments", "acme"),
                            ("flows/payments.py:payments", "beta"), ("flows/backfill.py:backfill", "acme"),
                            ("flows/backfill.py:backfill", "beta")}
    trigger = entries[("flows/payments.py:payments", "acme")]["triggers"][0]
    assert trigger["match"] == {"prefect.resource.id": f"xero.organisation.{pushed.xero.tenant_id.lower()}"}
    assert trigger["parameters"]["tenant"] == "acme" and "{{ event.event }}" in trigger["parameters"]["reason"]
    assert "triggers" not in entries[("flows/payments.py:payments", "beta")]
    # Both schedules stay: polling is the safety net for a webhook Xero never delivers.
    assert entries[("flows/payments.py:payments", "acme")]["schedules"]


def test_each_tenant_gets_an_on_demand_backfill_that_starts_as_an_estimate(atx_home):
    from flows.backfill import Backfill

    with SandboxStack(invoices=1) as stack:
        acme = stack.connect_tenant("acme", flows=["invoices", "payments"])
    backfill = next(d for d in deployment_entries([acme]) if d["entrypoint"] == "flows/backfill.py:backfill")
    assert "schedules" not in backfill and backfill["concurrency_limit"]["limit"] == 1
    request = Backfill(**backfill["parameters"]["request"])  # "Run" with the defaults is a valid request
    assert request.dry_run and request.document_types == ["invoices", "payments"] and request.tenant == "acme"


def test_the_document_flows_forms_name_and_describe_every_field_with_date_pickers():
    from prefect.utilities.callables import parameter_schema

    from flows.bills import bills
    from flows.invoices import invoices
    from flows.payments import payments

    for flow in (invoices, bills, payments):
        schema = parameter_schema(flow).model_dump_for_openapi()
        fields = schema["properties"]
        assert {"tenant", "since", "until", "dry_run", "only_window"} <= set(fields), flow.name
        for name, field in fields.items():
            assert field.get("title") and field["title"] != name and field.get("description"), (flow.name, name)
            assert "anyOf" not in field and field.get("type") not in (None, "null"), (flow.name, name)  # no "type None"
        assert fields["since"]["format"] == fields["until"]["format"] == "date" and fields["since"]["type"] == "string"
        assert schema["required"] == ["tenant"]
    assert parameter_schema(payments).model_dump_for_openapi()["properties"]["direction"]["enum"] == [
        "both", "to_autotask", "to_xero"]


def test_a_served_deployment_fixes_its_tenant_in_the_form(atx_home):
    from deployments import runner_deployments

    with SandboxStack(invoices=1) as stack:
        acme = stack.connect_tenant("acme", flows=["invoices", "bills", "payments"])
    served = {(d.flow_name, d.name): d for d in runner_deployments([acme])}
    for flow in ("invoices", "bills", "payments"):
        deployment = served[(flow, "acme")]
        tenant = deployment._parameter_openapi_schema.properties["tenant"]
        assert tenant["readOnly"] is True and tenant["enum"] == ["acme"], flow
        assert deployment.parameters == {"tenant": "acme", "dry_run": False}  # what the API stores, unwrapped
    backfill = served[("backfill", "acme")]._parameter_openapi_schema.definitions["Backfill"]["properties"]["tenant"]
    assert backfill["readOnly"] is True and backfill["enum"] == ["acme"]

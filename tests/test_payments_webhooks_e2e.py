"""Xero's webhooks run a tenant's payments, for real: a signed delivery, a Prefect event, the deployment
trigger, one run of `payments/acme`, and the paid dates back in Autotask.

The sandbox runs in this process; the Prefect server, `atx serve` and `atx webhooks serve` are
subprocesses, as on an MSP's machine. The Xero simulator is subscribed to the receiver with the same key
and passes its intent-to-receive handshake; a person then pays several invoices in Xero in quick
succession. Each payment is an INVOICE UPDATE, so several `xero.invoice.updated` events reach the server
within the trigger's window, and the reactive trigger (threshold 1) must start one run, not one each.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from atx.webhooks import KEY_ENV, PATH
from clients.autotask import autotask_day
from deployments.generate import PAYMENT_EVENTS, TRIGGER_WITHIN_SECONDS
from sandbox.serving import free_port
from sandbox.stack import SandboxStack
from tests.test_deployments_e2e import _base_env, _client, _wait, prefect_api  # noqa: F401
from tests.test_payments_flow import BANK, approved_mapping, autotask_invoice, pay_in_xero, synced_invoices, xero_invoice

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
PAID = 3  # invoices paid in one burst


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "atx.cli", *args], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _events(api: str, name: str) -> list[dict]:
    """The events of this name the server has stored."""
    response = httpx.post(f"{api}/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50},
                          timeout=10)
    response.raise_for_status()
    return response.json()["events"]


def test_a_burst_of_signed_xero_payments_runs_the_tenants_payments_once(tmp_path, atx_home, prefect_api):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

    key = secrets.token_urlsafe(32)
    # The sandbox's invoices are dated in the 30 days up to today, so the payments run's default window
    # (a first run looks first_sync_days back from today) covers them whichever way it reads.
    today = date.today()
    with SandboxStack(seed=11, invoices=12, window_end=today) as stack, ExitStack() as processes:
        settings = stack.connect_tenant("acme", approved_mapping(tmp_path), flows=["invoices", "payments"],
                                        payments={"bank_account": BANK, "webhooks": True})

        env = _base_env(tmp_path)
        env.update(PREFECT_API_URL=prefect_api, ATX_HOME=os.environ["ATX_HOME"],
                   ATX_TENANTS_DIR=os.environ["ATX_TENANTS_DIR"], PYTHONPATH=str(ROOT),
                   # The served deployments look for runs every second, not every ten.
                   PREFECT_RUNNER_POLL_FREQUENCY="1", **stack.secret_env("acme"))
        serve_log = tmp_path / "serve.log"
        serving = _start(["serve"], env, serve_log)
        processes.callback(_stop, serving)
        port = free_port()
        receiver_log = tmp_path / "webhooks.log"
        receiving = _start(["webhooks", "serve", "--port", str(port)], {**env, KEY_ENV: key}, receiver_log)
        processes.callback(_stop, receiving)
        processes.callback(stack.xero.unsubscribe_webhooks)

        client = _client(prefect_api)

        def deployment(name):
            try:
                return client.read_deployment_by_name(name)
            except Exception:
                return None

        invoices_deployment = _wait("deployment invoices/acme", lambda: deployment("invoices/acme"),
                                    proc=serving, log=serve_log)
        payments_deployment = _wait("deployment payments/acme", lambda: deployment("payments/acme"),
                                    proc=serving, log=serve_log)
        automations = _wait("the payments trigger's automation",
                            lambda: client.read_resource_related_automations(
                                f"prefect.deployment.{payments_deployment.id}"), proc=serving, log=serve_log)
        assert len(automations) == 1 and automations[0].enabled

        def finished(run_id):
            run = client.read_flow_run(run_id)
            return run if run.state and run.state.is_final() else None

        # The invoices flow puts the approved invoices into Xero first, before anything is subscribed.
        sent = client.create_flow_run_from_deployment(
            invoices_deployment.id, parameters={"tenant": "acme", "since": (today - timedelta(days=35)).isoformat(), "until": today.isoformat()})
        done = _wait("the invoices run", lambda: finished(sent.id), timeout=90, proc=serving, log=serve_log)
        assert done.state.is_completed(), f"{done.state.message}\n{serve_log.read_text()[-3000:]}"
        to_pay = list(synced_invoices(settings).items())[:PAID]
        assert len(to_pay) == PAID
        assert all(autotask_invoice(settings, i)["paidDate"] is None for i, _ in to_pay)

        def receiver_up():
            try:
                httpx.post(f"http://127.0.0.1:{port}{PATH}", content=b"{}", timeout=1)
                return True
            except httpx.TransportError:
                return False

        _wait("atx webhooks serve", receiver_up, timeout=60, every=0.2, proc=receiving, log=receiver_log)
        subscription = stack.xero.subscribe_webhooks(f"http://127.0.0.1:{port}{PATH}", key, delay=0.05)
        assert stack.xero.webhook_intent_to_receive(), subscription.intent_checks

        # A person pays several invoices in Xero, one after another: each is an INVOICE UPDATE.
        paid_on = today
        for _, row in to_pay:
            pay_in_xero(settings, row.target_id, xero_invoice(settings, row.target_id).amount_due, paid_on)
        assert subscription.flush(10)
        assert subscription.deliveries and all(d.status == 200 for d in subscription.deliveries), subscription.deliveries

        by_deployment = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[payments_deployment.id]))

        def payments_runs():
            """The deployment's runs other than those its schedule (the safety net) put in the future."""
            return [r for r in client.read_flow_runs(flow_run_filter=by_deployment) if not r.auto_scheduled]

        first = _wait("a payments run started by the webhooks", payments_runs, timeout=60, proc=serving,
                      log=serve_log)[0]
        run = _wait("the payments run", lambda: finished(first.id), timeout=90, proc=serving, log=serve_log)

        # Every payment's event reached the server through the receiver ...
        invoice_ids = {row.target_id for _, row in to_pay}
        events = _wait(f"{PAID} xero.invoice.updated events in the server",
                       lambda: (e := _events(prefect_api, PAYMENT_EVENTS[0]))
                       and invoice_ids <= {x["payload"]["resourceId"] for x in e} and e,
                       timeout=30, proc=receiving, log=receiver_log)
        assert {x["resource"]["prefect.resource.id"] for x in events} == {
            f"xero.organisation.{settings.xero.tenant_id.lower()}"}
        # ... and all of them fell inside the trigger's window, which is what makes them one run.
        occurred = sorted(datetime.fromisoformat(x["occurred"]) for x in events)
        assert (occurred[-1] - occurred[0]).total_seconds() < TRIGGER_WITHIN_SECONDS / 2, occurred
        time.sleep(3)  # the server has had every event for a while: a second run would exist by now
        runs = payments_runs()
        assert [r.id for r in runs] == [run.id], [(r.name, r.parameters.get("reason")) for r in runs]

        assert run.state.is_completed(), f"{run.state.message}\n{serve_log.read_text()[-3000:]}"
        reason = run.parameters["reason"]
        assert reason.startswith("xero.invoice.updated ") and any(i in reason for i in invoice_ids), reason
        assert run.parameters["tenant"] == "acme" and run.parameters["dry_run"] is False
        # No window was passed: the first run looks first_sync_days back, over every sandbox invoice.
        assert run.name == f"payments · acme · {today - timedelta(days=settings.first_sync_days)}..{today}"
        # Started by the deployment's trigger, not by its schedule or a person.
        assert (run.created_by.type, run.created_by.id) == ("AUTOMATION", automations[0].id), run.created_by

        # The one run wrote every paid date back to Autotask, read over its HTTP API.
        for autotask_id, _ in to_pay:
            assert autotask_day(autotask_invoice(settings, autotask_id)["paidDate"]) == paid_on, autotask_id

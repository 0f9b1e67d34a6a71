"""Running it for real: a Prefect server, two tenants' deployments served by `atx serve`, a run on demand.

The sandbox runs in this process; the Prefect server and `atx serve` are subprocesses, as on an MSP's
machine. Two tenants share one Autotask account and sync into two Xero organisations.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from sandbox.serving import free_port, prefect_server_process
from sandbox.stack import SandboxStack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 24)
SINCE = END - timedelta(days=40)


def _base_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


@pytest.fixture
def prefect_api(tmp_path):
    """A real Prefect server on a free loopback port, with its own home and SQLite database."""
    port = free_port()
    with prefect_server_process(_base_env(tmp_path), port, tmp_path / "server.log") as url:
        try:
            yield url
        finally:
            # Prefect keeps one concurrency-slot service per set of tag limits, with a client bound to the server
            # it first spoke to: a later test's tagged run in this process would otherwise ask this stopped one.
            from prefect.concurrency.services import (ConcurrencySlotAcquisitionService,
                                                      ConcurrencySlotAcquisitionWithLeaseService)

            for service in (ConcurrencySlotAcquisitionService, ConcurrencySlotAcquisitionWithLeaseService):
                service.drain_all(timeout=10)


def _client(url: str):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(url)


def _wait(what: str, fn, timeout: float = 120, every: float = 0.5, proc=None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the serving process ended: {log.read_text()[-3000:] if log else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f": {log.read_text()[-3000:]}" if log else ""))
        time.sleep(every)


def test_two_tenants_sharing_autotask_are_served_and_run_on_demand(tmp_path, atx_home, prefect_api):
    with SandboxStack(seed=5, invoices=24, window_end=END) as stack:
        second = stack.add_org("Second Entity Ltd", "NZ")
        customers = stack.customer_ids
        acme_companies, beta_companies = customers[: len(customers) // 2], customers[len(customers) // 2:]
        acme = stack.connect_tenant("acme", routing={"companies": acme_companies},
                                    schedule={"cron": "0 6 * * 1-5", "timezone": "Pacific/Auckland"})
        beta = stack.connect_tenant("beta", org=second, routing={"companies": beta_companies},
                                    schedule={"cron": "30 7 * * *", "timezone": "Europe/London"})
        assert acme.autotask_connection == beta.autotask_connection

        env = _base_env(tmp_path)
        env.update(PREFECT_API_URL=prefect_api, ATX_HOME=os.environ["ATX_HOME"],
                   ATX_TENANTS_DIR=os.environ["ATX_TENANTS_DIR"], **stack.secret_env("acme"), **stack.secret_env("beta"))
        log = tmp_path / "serve.log"
        with open(log, "w") as out:
            serving = subprocess.Popen([sys.executable, "-m", "atx.cli", "serve"], env=env, cwd=ROOT,
                                       stdout=out, stderr=subprocess.STDOUT)
        try:
            client = _client(prefect_api)

            def deployment(name):
                try:
                    return client.read_deployment_by_name(name)
                except Exception:
                    return None

            deployments = {n: _wait(f"deployment {n}", lambda n=n: deployment(n), proc=serving, log=log)
                           for n in ("invoices/acme", "invoices/beta")}
            # Each tenant's own schedule, in its own time zone, and one run at a time.
            acme_schedule = deployments["invoices/acme"].schedules[0].schedule
            assert (acme_schedule.cron, acme_schedule.timezone) == ("0 6 * * 1-5", "Pacific/Auckland")
            beta_schedule = deployments["invoices/beta"].schedules[0].schedule
            assert (beta_schedule.cron, beta_schedule.timezone) == ("30 7 * * *", "Europe/London")
            assert "tenant:acme" in deployments["invoices/acme"].tags
            assert deployments["invoices/acme"].global_concurrency_limit.limit == 1
            # The form shows each deployment's tenant read-only, and the API refuses a run of it for another.
            tenant_field = deployments["invoices/acme"].parameter_openapi_schema["properties"]["tenant"]
            assert tenant_field["readOnly"] is True and tenant_field["enum"] == ["acme"]
            with pytest.raises(Exception, match="beta"):
                client.create_flow_run_from_deployment(deployments["invoices/acme"].id, parameters={"tenant": "beta"})

            # "Run" pressed in the UI is this API call.
            params = {"since": SINCE.isoformat(), "until": END.isoformat()}
            runs = {
                name: client.create_flow_run_from_deployment(d.id, parameters={"tenant": name.split("/")[1], **params})
                for name, d in deployments.items()
            }

            def finished(run_id):
                run = client.read_flow_run(run_id)
                return run if run.state and run.state.is_final() else None

            done = {name: _wait(f"run of {name}", lambda r=r: finished(r.id), timeout=150, proc=serving, log=log)
                    for name, r in runs.items()}
        finally:
            serving.terminate()
            try:
                serving.wait(timeout=20)
            except subprocess.TimeoutExpired:
                serving.kill()

        for name, run in done.items():
            assert run.state.is_completed(), f"{name}: {run.state.name} {run.state.message}\n{log.read_text()[-3000:]}"
        assert done["invoices/acme"].name.startswith(f"invoices · acme · {SINCE}..{END}")
        assert "tenant:acme" in done["invoices/acme"].tags

        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[done["invoices/acme"].id])))
        keys = {a.key for a in artifacts if a.key}
        assert {"invoices-acme", "invoices-acme-summary"} <= keys
        summary = next(a for a in artifacts if a.key == "invoices-acme-summary")
        assert "Invoices for acme" in summary.data

        # Each organisation holds only the invoices of its own tenant's companies, and every invoice
        # that was sent went to exactly one of them.
        company_of = {i["invoiceNumber"]: i["companyID"] for i in stack.autotask.records("Invoices")}
        in_first = [d["InvoiceNumber"] for d in stack.org.invoices.values() if d.get("Type") == "ACCREC"]
        in_second = [d["InvoiceNumber"] for d in second.invoices.values() if d.get("Type") == "ACCREC"]
        assert in_first and in_second, (summary.data, len(stack.org.invoices), len(second.invoices))
        assert all(company_of[n] in acme_companies for n in in_first)
        assert all(company_of[n] in beta_companies for n in in_second)
        assert not set(in_first) & set(in_second)

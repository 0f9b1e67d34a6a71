"""Alerts, for real: `atx alerts setup` makes a tenant's Prefect automation, and a real Prefect server fires it.

The Prefect server is a subprocess (`prefect server start`, which runs the triggers and actions services);
the sandbox, a webhook receiver and the flows run in this process. acme's run that needs attention posts
one alert; its failed run a moment later does not (once an hour); beta's failed run posts beta's own alert
only, to beta's receiver.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from atx import alerts
from sandbox.stack import SandboxStack
from tests.test_deployments_e2e import _base_env, _client, prefect_api  # noqa: F401
from tests.test_invoices_changes import DEMO, END, SINCE, UNTIL, connect, manual_clock, mapping_file

ROOT = Path(__file__).resolve().parent.parent


# ---- the automation's spec, without a server --------------------------------------------------------------
def test_the_trigger_matches_the_tenants_run_ends_a_person_must_act_on_once_an_hour():
    trigger = alerts.alert_trigger("acme")
    assert trigger["match_related"] == {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.tenant:acme"}
    assert set(trigger["expect"]) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed", "prefect.flow-run.TimedOut",
                                      "prefect.flow-run.Unfinished", "prefect.flow-run.Needs attention"}
    assert "prefect.flow-run.Completed" not in trigger["expect"]
    assert "prefect.flow-run.Stopped early" not in trigger["expect"]
    assert (trigger["posture"], trigger["threshold"], trigger["within"]) == ("Reactive", 1, 3600)
    from prefect.events.schemas.automations import AutomationCore

    spec = AutomationCore.model_validate(alerts.automation_spec("acme", alerts.webhook_action(
        "00000000-0000-0000-0000-000000000001", "acme", "http://prefect:4200")))
    assert spec.name == "atx-alerts-acme" and spec.trigger.within.total_seconds() == 3600
    assert alerts.tenant_of(spec.name) == "acme" and alerts.tenant_of("someone-elses") is None


def _render(template: str, message: str | None) -> str:
    from prefect.server.events.actions import JinjaTemplateAction
    from prefect.server.utilities.user_templates import render_user_template

    JinjaTemplateAction._register_filters_if_needed()
    context = {"flow": SimpleNamespace(name="invoices"),
               "flow_run": SimpleNamespace(id="0b7e", name='invoices · acme · "odd" run',
                                           state=SimpleNamespace(name="Needs attention", message=message))}
    return asyncio.run(render_user_template(template, context))


@pytest.mark.parametrize("message", ['completed with 2 set aside; look at "x"\nand \\ more', None])
def test_the_webhook_body_is_json_naming_tenant_flow_state_and_the_runs_page_whatever_the_message(message):
    body = json.loads(_render(alerts.webhook_payload("acme", "http://prefect:4200/"), message))
    assert body == {
        "text": 'atx: tenant acme: invoices run "invoices · acme · "odd" run" ended Needs attention: '
                "http://prefect:4200/runs/flow-run/0b7e",
        "tenant": "acme", "flow": "invoices", "flow_run": 'invoices · acme · "odd" run', "state": "Needs attention",
        "message": message, "url": "http://prefect:4200/runs/flow-run/0b7e",
    }
    subject = _render(alerts.notification_subject("acme"), message)
    assert subject == "atx: tenant acme: invoices ended Needs attention"
    text = _render(alerts.notification_body("acme", "http://prefect:4200"), message)
    assert text.startswith("atx: tenant acme: invoices run") and "/runs/flow-run/0b7e" in text
    if message:
        assert text.endswith(message)
    else:
        assert "None" not in text


# ---- a real server fires it -------------------------------------------------------------------------------
class _Receiver:
    """A webhook target on a free loopback port: every POST's path and JSON body, in order."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self, path: str) -> list[dict]:
        return [body for p, body in list(self.received) if p == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _wait(what: str, fn, timeout: float = 90, every: float = 0.5, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + (f": {log.read_text()[-3000:]}" if log else ""))
        time.sleep(every)


def _atx(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atx.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _events(api: str, name: str) -> list[dict]:
    response = httpx.post(f"{api}/events/filter", json={"filter": {"event": {"name": [name]}}, "limit": 50}, timeout=10)
    response.raise_for_status()
    return response.json()["events"]


def _broken_mapping(tmp_path: Path) -> str:
    data = yaml.safe_load(DEMO.read_text())
    data["accounts"]["default"] = "BOGUS"
    return mapping_file(tmp_path, "broken", **data)


def _sync(tenant: str):
    """An invoices run as `atx sync invoices` starts one (a deployment's runs carry its tags the same way):
    tagged with the tenant when it is created, which is what its state events carry."""
    from prefect import tags

    from flows.invoices import invoices

    with tags(f"tenant:{tenant}"):
        return invoices(tenant=tenant, since=SINCE, until=UNTIL, return_state=True)


def _partial_mapping(tmp_path: Path) -> str:
    demo = yaml.safe_load(DEMO.read_text())
    accounts = dict(demo["accounts"], by_gl_account={k: v for k, v in demo["accounts"]["by_gl_account"].items() if k != 5})
    return mapping_file(tmp_path, "partial", accounts=accounts)


@pytest.mark.e2e
@pytest.mark.xdist_group("alerts-server")
def test_a_tenants_failing_runs_alert_once_an_hour_and_only_that_tenants_webhook(tmp_path, atx_home, prefect_api):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    receiver = _Receiver()
    server_log = tmp_path / "server.log"
    env = _base_env(tmp_path)
    env.update(PREFECT_API_URL=prefect_api, ATX_HOME=os.environ["ATX_HOME"], ATX_TENANTS_DIR=os.environ["ATX_TENANTS_DIR"])
    try:
        with SandboxStack(seed=11, invoices=30, window_end=END, clock=manual_clock()) as stack, \
                temporary_settings(updates={PREFECT_API_URL: prefect_api}):
            other = stack.add_org("Other Entity Ltd", "NZ")
            connect(stack, "acme", mapping=_partial_mapping(tmp_path))
            connect(stack, "beta", org=other, mapping=_broken_mapping(tmp_path), routing={"companies": [999_999]})

            # Set up twice: the second replaces the first, it does not add a second automation.
            for url in (f"{receiver.url}/old", f"{receiver.url}/acme"):
                done = _atx(env, "alerts", "setup", "--tenant", "acme", "--webhook", url)
                assert done.returncode == 0, done.stderr
                assert receiver.url not in done.stdout + done.stderr and "atx-alerts-acme" in done.stdout
            # beta's alerts go through a notification block of its own (as a Slack or e-mail block would).
            from prefect.blocks.notifications import CustomWebhookNotificationBlock

            CustomWebhookNotificationBlock(name="beta-ops", url=f"{receiver.url}/beta",
                                           json_data={"subject": "{{subject}}", "body": "{{body}}"}).save("beta-ops")
            refused = _atx(env, "alerts", "setup", "--tenant", "beta", "--block", "custom-webhook/nope")
            assert refused.returncode == 1 and "custom-webhook/nope" in refused.stderr and "Blocks page" in refused.stderr
            done = _atx(env, "alerts", "setup", "--tenant", "beta", "--block", "custom-webhook/beta-ops")
            assert done.returncode == 0, done.stderr
            client = _client(prefect_api)
            assert len(client.read_automations_by_name("atx-alerts-acme")) == 1
            block = client.read_block_document_by_name("atx-alerts-acme", "webhook", include_secrets=False)
            assert receiver.url not in json.dumps(block.data, default=str)  # kept as a secret

            # acme's run needs attention: one alert naming the tenant, the flow, the state and the run's page.
            state = _sync("acme")
            run_id = str(state.state_details.flow_run_id)
            assert client.read_flow_run(run_id).state.name == "Needs attention"
            (alert,) = _wait("acme's alert", lambda: receiver.posts("/acme"), log=server_log)
            assert (alert["tenant"], alert["flow"], alert["state"]) == ("acme", "invoices", "Needs attention")
            assert alert["url"] == f"{prefect_api.removesuffix('/api')}/runs/flow-run/{run_id}"
            assert alert["text"].startswith("atx: tenant acme: invoices run") and alert["url"] in alert["text"]
            assert alert["message"].startswith("completed with")

            # acme fails a moment later: within the hour, so no second alert. beta fails: beta's own alert.
            connect(stack, "acme", mapping=_broken_mapping(tmp_path))
            failed = _sync("acme")
            assert failed.is_failed()
            beta = _sync("beta")
            assert beta.is_failed()
            (beta_alert,) = _wait("beta's alert", lambda: receiver.posts("/beta"), log=server_log)
            assert beta_alert["subject"] == "atx: tenant beta: invoices ended Failed"
            assert beta_alert["body"].startswith("atx: tenant beta: invoices run")
            assert f"/runs/flow-run/{beta.state_details.flow_run_id}" in beta_alert["body"]
            assert "cannot sync" in beta_alert["body"]  # the run's own message follows the headline

            # The server has seen acme's failure (its event came before beta's, which fired): not acted on.
            failed_id = str(failed.state_details.flow_run_id)
            _wait("acme's failure event", lambda: any(e["resource"]["prefect.resource.id"] == f"prefect.flow-run.{failed_id}"
                                                      for e in _events(prefect_api, "prefect.flow-run.Failed")))
            acme_id = client.read_automations_by_name("atx-alerts-acme")[0].id
            fired = [e for e in _events(prefect_api, "prefect.automation.triggered")
                     if e["resource"]["prefect.resource.id"] == f"prefect.automation.{acme_id}"]
            assert len(fired) == 1, fired
            assert len(receiver.posts("/acme")) == 1 and not receiver.posts("/old")

            # beta moves to Slack; list names each tenant's block, never its URL; remove takes beta's
            # automation and the block setup saved away, and leaves a block of one's own alone.
            slack = "https://hooks.slack.com/services/T0/B0/not-for-the-screen"
            done = _atx({**env, "ATX_ALERTS_SLACK_WEBHOOK_URL": slack}, "alerts", "setup", "--tenant", "beta")
            assert done.returncode == 0, done.stderr
            listed = _atx(env, "alerts", "list")
            assert listed.returncode == 0, listed.stderr
            assert "webhook/atx-alerts-acme" in listed.stdout and "slack-webhook/atx-alerts-beta" in listed.stdout
            assert receiver.url not in listed.stdout + done.stdout and "not-for-the-screen" not in listed.stdout + done.stdout
            removed = _atx(env, "alerts", "remove", "--tenant", "beta")
            assert removed.returncode == 0, removed.stderr
            assert [a.name for a in client.read_automations() if a.name.startswith("atx-alerts-")] == ["atx-alerts-acme"]
            with pytest.raises(Exception):
                client.read_block_document_by_name("atx-alerts-beta", "slack-webhook")
            assert CustomWebhookNotificationBlock.load("beta-ops")
    finally:
        receiver.close()


def test_setup_is_refused_in_one_line_without_a_prefect_server_or_with_two_targets(tmp_path, atx_home):
    from sandbox.stack import SandboxStack as Stack

    with Stack(seed=3, invoices=2, window_end=END) as stack:
        stack.connect_tenant("acme")
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        both = _atx(env, "alerts", "setup", "--tenant", "acme", "--webhook", "https://h/x", "--slack-webhook", "https://h/y")
        assert both.returncode == 2 and "exactly one of" in both.stderr and "https://h" not in both.stderr
        nowhere = _atx(env, "alerts", "setup", "--tenant", "acme", "--webhook", "https://hooks.example/secret-part")
        assert nowhere.returncode == 1 and "PREFECT_API_URL" in nowhere.stderr, nowhere.stderr
        assert "secret-part" not in nowhere.stderr + nowhere.stdout
        unknown = _atx(env, "alerts", "setup", "--tenant", "nobody", "--webhook", "https://h/x")
        assert unknown.returncode == 1 and "nobody" in unknown.stderr

"""Alerts: a Prefect automation per tenant that tells a person when a run fails or ends needing attention.

The automation lives in the Prefect server, so it watches every run of the tenant however it was started
(a schedule, `atx sync`, the UI's Run button) and needs no process of ours. The pure part (what the
automation says and matches) is first; the few Prefect calls that save and read it come after.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

# Flow-run state names a person must act on: a failure (Prefect's own Failed, Crashed and TimedOut, and our
# Failed-typed "Unfinished") or a completed run with documents for a person. "Stopped early" is left out:
# the next run goes on from where it stopped, with nothing for anyone to do.
ALERT_STATES = ("Failed", "Crashed", "TimedOut", "Unfinished", "Needs attention")

# At most one alert an hour per tenant: a tenant whose runs fail every five minutes is one message, not twelve.
ONCE_EVERY_SECONDS = 3600

PREFIX = "atx-alerts-"


def automation_name(tenant: str) -> str:
    """The automation's name, and the name of the notification block `atx alerts setup` saves for it."""
    return f"{PREFIX}{tenant}"


def tenant_of(name: str) -> str | None:
    """The tenant an automation named by `automation_name` alerts for; None for anyone else's automation."""
    if not name.startswith(PREFIX):
        return None
    return name[len(PREFIX):] or None


def alert_trigger(tenant: str, *, within: int = ONCE_EVERY_SECONDS) -> dict:
    """An EventTrigger (as its fields) matching the end of any run tagged `tenant:NAME` in an alert state.

    Reactive, threshold 1: it fires on the first such event, then Prefect opens its next window only when
    `within` seconds have passed since that event, and events before then are ignored. With one automation
    per tenant, that is at most one alert per `within` per tenant; another tenant's failures never use it up.
    """
    return {
        "type": "event",
        "match": {"prefect.resource.id": "prefect.flow-run.*"},
        "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.tenant:{tenant}"},
        "expect": sorted(f"prefect.flow-run.{state}" for state in ALERT_STATES),
        "posture": "Reactive",
        "threshold": 1,
        "within": within,
    }


def run_url_template(ui_url: str) -> str:
    """A Jinja expression for the run's page in the Prefect UI: the server renders the template, and it
    knows its own UI address only when PREFECT_UI_URL is set for it, so the address is the one this command
    reached the API through."""
    return json.dumps(ui_url.rstrip("/") + "/runs/flow-run/") + " ~ flow_run.id"


def headline_template(tenant: str, ui_url: str) -> str:
    """A Jinja expression: the one line a person reads, naming the tenant, flow, run, state and the run's page."""
    return (f"{json.dumps(f'atx: tenant {tenant}: ')} ~ flow.name ~ ' run \"' ~ flow_run.name ~ '\" ended ' "
            f"~ flow_run.state.name ~ ': ' ~ {run_url_template(ui_url)}")


def webhook_payload(tenant: str, ui_url: str) -> str:
    """The JSON body POSTed to a webhook. `text` is what Slack, Mattermost and Teams incoming webhooks show;
    the other fields are for a receiver that files or routes alerts."""
    fields = {
        "text": headline_template(tenant, ui_url),
        "tenant": json.dumps(tenant),
        "flow": "flow.name",
        "flow_run": "flow_run.name",
        "state": "flow_run.state.name",
        "message": "flow_run.state.message",
        "url": run_url_template(ui_url),
    }
    return "{" + ", ".join(f"{json.dumps(k)}: {{{{ ({v}) | tojson }}}}" for k, v in fields.items()) + "}"


def notification_subject(tenant: str) -> str:
    return f"atx: tenant {tenant}: {{{{ flow.name }}}} ended {{{{ flow_run.state.name }}}}"


def notification_body(tenant: str, ui_url: str) -> str:
    """What a notification block (Slack, e-mail, Teams, ...) sends: the headline, then the run's message."""
    return f"{{{{ {headline_template(tenant, ui_url)} }}}}\n\n{{{{ flow_run.state.message or '' }}}}"


def webhook_action(block_id: str, tenant: str, ui_url: str) -> dict:
    return {"type": "call-webhook", "block_document_id": block_id, "payload": webhook_payload(tenant, ui_url)}


def notification_action(block_id: str, tenant: str, ui_url: str) -> dict:
    return {"type": "send-notification", "block_document_id": block_id, "subject": notification_subject(tenant),
            "body": notification_body(tenant, ui_url)}


def automation_spec(tenant: str, action: dict, *, within: int = ONCE_EVERY_SECONDS) -> dict:
    """The whole automation, as Prefect's AutomationCore takes it."""
    states = ", ".join(ALERT_STATES)
    return {
        "name": automation_name(tenant),
        "description": (f"atx alerts for tenant {tenant}: a run tagged tenant:{tenant} ended {states}; "
                        f"at most one alert every {within // 60} minutes. Made by `atx alerts setup`."),
        "enabled": True,
        "trigger": alert_trigger(tenant, within=within),
        "actions": [action],
    }


@dataclass(frozen=True)
class Alert:
    """What `atx alerts list` shows of one tenant's automation: never the URL it posts to."""

    tenant: str
    enabled: bool
    notifies: str  # the block it sends through, as TYPE/NAME


# ---- the Prefect calls ---------------------------------------------------------------------------------
def save_webhook_block(tenant: str, url: str) -> str:
    """A Webhook block (the URL a SecretStr) named for the tenant, replaced when it exists; its id."""
    from prefect.blocks.webhook import Webhook
    from pydantic import SecretStr

    return str(Webhook(url=SecretStr(url), method="POST",
                       headers={"Content-Type": "application/json"}).save(automation_name(tenant), overwrite=True))


def save_slack_block(tenant: str, url: str) -> str:
    from prefect.blocks.notifications import SlackWebhook
    from pydantic import SecretStr

    return str(SlackWebhook(url=SecretStr(url)).save(automation_name(tenant), overwrite=True))


def notification_block_id(ref: str) -> str:
    """The id of an existing notification block named TYPE/NAME (as the Blocks page lists it)."""
    from prefect.blocks.abstract import NotificationBlock
    from prefect.blocks.core import Block

    from atx.settings import SettingsError

    if "/" not in ref:
        raise SettingsError(f"--block {ref!r}: name the block as TYPE/NAME, for example slack-webhook/ops or "
                            "sendgrid-email/finance (the Blocks page of the Prefect UI lists them)")
    try:
        block = Block.load(ref)
    except ValueError:
        raise SettingsError(f"--block {ref!r}: there is no such block; create it on the Prefect UI's Blocks page, "
                            "or pass --webhook URL or --slack-webhook URL instead") from None
    if not isinstance(block, NotificationBlock):
        raise SettingsError(f"--block {ref!r} is a {type(block).__name__}, not a notification block: pick one "
                            "such as Slack Webhook, Sendgrid Email or Microsoft Teams Webhook")
    return str(block._block_document_id)


def save_automation(spec: dict) -> str:
    """Create the automation, or replace the one of that name (and drop any duplicates of it); its id."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    automation = AutomationCore.model_validate(spec)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(spec["name"])
        if not existing:
            return str(client.create_automation(automation))
        keep, *extra = sorted(existing, key=lambda a: str(a.id))
        client.update_automation(keep.id, automation)
        for other in extra:
            client.delete_automation(other.id)
        return str(keep.id)


def list_alerts() -> list[Alert]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        automations = [a for a in client.read_automations() if tenant_of(a.name)]
        out = []
        for a in automations:
            block_ids = [getattr(action, "block_document_id", None) for action in a.actions]
            names = []
            for block_id in filter(None, block_ids):
                try:
                    document = client.read_block_document(block_id, include_secrets=False)
                    names.append(f"{document.block_type.slug}/{document.name}")
                except Exception:  # the block was deleted: the automation's action fails until setup is run again
                    names.append("(missing block)")
            out.append(Alert(tenant_of(a.name), a.enabled, ", ".join(names) or "(no notification)"))
    return sorted(out, key=lambda alert: alert.tenant)


def remove_alerts(tenant: str) -> int:
    """Delete the tenant's automation and the block `atx alerts setup` saved for it; how many automations."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    name = automation_name(tenant)
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(name)
        for automation in found:
            client.delete_automation(automation.id)
        for slug in ("webhook", "slack-webhook"):
            try:
                document = client.read_block_document_by_name(name, slug, include_secrets=False)
            except ObjectNotFound:
                continue
            client.delete_block_document(document.id)
    return len(found)


def server_ui_url() -> str:
    """The Prefect UI this command's API is served with (PREFECT_UI_URL, else derived from PREFECT_API_URL)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from atx.settings import SettingsError

    url = PREFECT_UI_URL.value()
    if not url or not PREFECT_API_URL.value():
        raise SettingsError("alerts live in a Prefect server: set PREFECT_API_URL to its API (for example "
                            "http://127.0.0.1:4200/api) and run the command again")
    return url

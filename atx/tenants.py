"""Tenant files: scaffolding a new one, and the overview `atx tenant list` prints."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from atx.settings import TENANT_NAME, SettingsError, load_tenant, tenant_file, tenant_names

TEMPLATE = """\
# Tenant {name}: one Autotask account synced into one Xero organisation.
# Secrets are never written here: `env:VARIABLE` or `block:PREFECT_SECRET_BLOCK` name where they live.
# `atx connect autotask --tenant {name}` and `atx connect xero --tenant {name}` fill in the connections.
name: {name}
autotask:
  username: API-USER@YOUR-MSP.EXAMPLE        # an API-only user with access to every line of business
  integration_code: YOUR-INTEGRATION-CODE
  secret: block:{name}-autotask-secret
  # connection: main                        # tenants with the same connection share one Autotask account
xero:
  client_id: YOUR-XERO-APP-CLIENT-ID
  client_secret: block:{name}-xero-client-secret
  tenant_id: RUN-ATX-CONNECT-XERO           # the organisation's tenantId, written by `atx connect xero`
  # connection: msp-login                   # a token set shared with tenants one Xero login granted (needs share_with)
  daily_call_budget: 1000                   # Xero calls a UTC day the sync may use (Xero allows the organisation
                                            # 5,000, or 1,000 on Starter, shared with every other integration)
mapping: {mapping}                           # mappings/{mapping}.yaml, or a path
# A tenant uses only its own secrets and Xero token connection. To share one with another tenant, both files
# name each other:
# share_with: [other-tenant]
first_sync_days: 30
lookback_days: 14
schedule:
  cron: "{cron}"
  timezone: {timezone}
  active: true
# When several tenants share one Autotask account, each says which invoices are its own
# (any one rule matching is enough; an invoice matched by no tenant or by two is reported, never guessed):
# routing:
#   companies: [174, 175]                   # Autotask company ids
#   business_units: [3]                     # BillingItems.organizationalLevelAssociationID
#   invoice_templates: [101]                # Invoices.invoiceEditorTemplateID
#   company_udf: {{name: Xero Organisation, values: ["{name}"]}}
"""


def scaffold(name: str, *, mapping: str = "example", cron: str = "0 6 * * *", timezone: str = "UTC") -> str:
    if not re.match(TENANT_NAME, name):
        raise SettingsError(f"{name!r} is not a tenant name: use lowercase letters, digits and dashes")
    path = tenant_file(name)
    if path.exists():
        raise SettingsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE.format(name=name, mapping=mapping, cron=cron, timezone=timezone))
    load_tenant(name)  # the scaffold itself must be a valid tenant file
    return str(path)


@dataclass
class TenantRow:
    name: str
    autotask: str
    xero: str
    schedule: str
    last_run: str


def rows() -> list[TenantRow]:
    out = []
    runs = _last_runs()
    for name in tenant_names():
        try:
            t = load_tenant(name)
        except SettingsError as exc:
            out.append(TenantRow(name, "invalid file", str(exc)[:80], "", ""))
            continue
        schedule = f"{t.schedule.cron} ({t.schedule.timezone})" + ("" if t.schedule.active else " paused")
        out.append(TenantRow(
            name=name,
            autotask=f"{t.autotask.username} [{t.autotask_connection}]",
            xero=f"{t.xero.tenant_id} [{t.token_connection}]",
            schedule=schedule,
            last_run=runs.get(name) or _high_water(t),
        ))
    return out


def _last_runs() -> dict[str, str]:
    """Latest flow run per tenant tag, from the Prefect API when one is configured (never an ephemeral one)."""
    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            return {}
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    out: dict[str, str] = {}
    try:
        with get_client(sync_client=True) as client:
            for name in tenant_names():
                found = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"tenant:{name}"])),
                    sort=FlowRunSort.START_TIME_DESC, limit=1,
                )
                if found:
                    run = found[0]
                    when = run.start_time.strftime("%Y-%m-%d %H:%M") if run.start_time else "not started"
                    out[name] = f"{run.state_name} {when}: {run.name}"
    except Exception:
        return out
    return out


def _high_water(settings) -> str:
    try:
        from atx.connections import ledger_for

        mark = ledger_for(settings).high_water(settings.name, "invoices")
    except Exception:
        return "never"
    return f"synced up to {mark}" if mark else "never"

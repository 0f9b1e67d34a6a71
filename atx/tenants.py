"""Tenant files: scaffolding a new one, and the overview `atx tenant list` prints."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from pydantic import ValidationError

from atx.settings import (TENANT_NAME, BrokenTenant, ScheduleSettings, SettingsError, read_tenant_file, scan_tenants,
                          tenant_file, write_new_tenant_file)

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
# audit_days: 90                            # how long the audit trail keeps each write to Xero and Autotask
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


class TenantExists(SettingsError):
    """`atx tenant add` never overwrites a tenant file."""


def scaffold(name: str, *, mapping: str = "example", cron: str = "0 6 * * *", timezone: str = "UTC") -> str:
    """Write tenants/NAME.yaml from the template. Everything is checked first, and the file is written last and
    whole, so a refused `atx tenant add` leaves nothing behind."""
    if not re.match(TENANT_NAME, name):
        raise SettingsError(f"{name!r} is not a tenant name: use lowercase letters, digits and dashes")
    path = tenant_file(name)
    if path.exists():
        raise TenantExists(f"{path} already exists: edit it, or choose another name")
    try:
        ScheduleSettings(cron=cron, timezone=timezone)
    except ValidationError as exc:
        raise SettingsError("; ".join(f"--{e['loc'][0]}: {e['msg'].removeprefix('Value error, ')}"
                                      for e in exc.errors())) from None
    text = TEMPLATE.format(name=name, mapping=_scalar(mapping), cron=cron, timezone=timezone)
    settings = read_tenant_file(path, text)  # the scaffold itself must be a valid tenant file
    try:
        settings.mapping_path()
    except SettingsError as exc:
        raise SettingsError(f"--mapping: {str(exc).removeprefix(f'tenant {name}: ')}") from None
    try:
        write_new_tenant_file(path, text)
    except FileExistsError:
        raise TenantExists(f"{path} already exists: edit it, or choose another name") from None
    return str(path)


def _scalar(text: str) -> str:
    """A value as YAML reads it back unchanged: plain when it can be, else double-quoted."""
    return text if re.fullmatch(r"[A-Za-z0-9_./-]+", text) else json.dumps(text)


@dataclass
class TenantRow:
    name: str
    autotask: str
    xero: str
    schedule: str
    next_run: str
    last_run: str


@dataclass
class TenantList:
    rows: list[TenantRow]
    broken: list[BrokenTenant]  # each reported once, below the table


NOT_KNOWN = "—"  # Prefect's API is not configured or did not answer


def overview() -> TenantList:
    """Every tenant: its connections, its schedule, and its next and last run as Prefect knows them. Cheap: the
    tenant files and one Prefect API (when there is one), never a call to Autotask or Xero."""
    files = scan_tenants()
    runs = _runs([t.name for t in files.tenants])
    out = []
    for t in files.tenants:
        schedule = f"{t.schedule.cron} ({t.schedule.timezone})" + ("" if t.schedule.active else " paused")
        next_run, last_run = runs.get(t.name, (NOT_KNOWN, NOT_KNOWN)) if runs is not None else (NOT_KNOWN, NOT_KNOWN)
        if not t.schedule.active and next_run in (NOT_KNOWN, NOT_SCHEDULED):
            next_run = "paused"
        out.append(TenantRow(
            name=t.name,
            autotask=f"{t.autotask.username} [{t.autotask_connection}]",
            xero=f"{t.xero.organisation or t.xero.tenant_id} [{t.token_connection}]",
            schedule=schedule, next_run=_local(next_run, t.schedule.timezone), last_run=_local(last_run, t.schedule.timezone),
        ))
    for b in files.broken:
        out.append(TenantRow(b.name, "file cannot be used: see below", NOT_KNOWN, NOT_KNOWN, NOT_KNOWN, NOT_KNOWN))
    return TenantList(rows=sorted(out, key=lambda r: r.name), broken=files.broken)


def rows() -> list[TenantRow]:
    return overview().rows


NOT_SCHEDULED = "none scheduled"


def _runs(names: list[str]) -> dict[str, tuple] | None:
    """tenant -> (its next scheduled run, its latest run that started), from the Prefect API when one is
    configured (never an ephemeral one): a datetime and text, or words. None when there is no answer."""
    if not names:
        return {}
    if not os.environ.get("PREFECT_API_URL"):
        from prefect.settings import PREFECT_API_URL

        if not PREFECT_API_URL.value():
            return None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterStartTime, FlowRunFilterState,
                                                FlowRunFilterStateType, FlowRunFilterTags)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    out: dict[str, tuple] = {}
    try:
        with get_client(sync_client=True) as client:
            for name in names:
                tag = FlowRunFilterTags(all_=[f"tenant:{name}"])
                scheduled = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(tags=tag, state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                    sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
                # A scheduled run has no start time: the latest run that started is the last run.
                started = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(tags=tag, start_time=FlowRunFilterStartTime(is_null_=False)),
                    sort=FlowRunSort.START_TIME_DESC, limit=1)
                next_run = ((scheduled[0].expected_start_time, f"({scheduled[0].state_name.lower()})"
                             if scheduled[0].state_name != "Scheduled" else "") if scheduled else NOT_SCHEDULED)
                last_run = ((started[0].start_time, f"{started[0].state_name}: {started[0].name}") if started
                            else "never")
                out[name] = (next_run, last_run)
    except Exception:  # an overview, not a check: Prefect unreachable is said as "—"
        return None
    return out


def _local(value, zone: str) -> str:
    """(moment, text) as the moment in the tenant's schedule's time zone, then the text; words as they are."""
    if not isinstance(value, tuple):
        return value
    from zoneinfo import ZoneInfo

    when, text = value
    return " ".join(p for p in (when.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z"), text) if p)

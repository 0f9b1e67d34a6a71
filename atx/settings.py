"""Tenant settings: one versionable YAML file per tenant, with references to secrets, never secrets.

A tenant is one Autotask account synced into one Xero organisation. Its file names:
- how to reach Autotask and Xero (base URLs are configuration, so the same code runs against the
  real services and the sandbox);
- where its secrets live: `env:NAME` (an environment variable) or `block:NAME` (a Prefect Secret block);
- its mapping file (see `mappings/`), its ledger database, and its options.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def atx_home() -> Path:
    """Where runtime state lives (ledger database, demo tenants): never inside the versioned tree."""
    return Path(os.environ.get("ATX_HOME", ".atx")).resolve()


def tenants_dir() -> Path:
    return Path(os.environ.get("ATX_TENANTS_DIR", "tenants")).resolve()


class SettingsError(ValueError):
    pass


class SecretRef(str):
    """`env:NAME` or `block:NAME`. Resolved only when a client is built, and never logged."""

    def resolve(self) -> str:
        kind, _, name = self.partition(":")
        if kind == "env":
            value = os.environ.get(name)
            if not value:
                raise SettingsError(f"secret {self!s} is not set: export {name}=... before running")
            return value
        if kind == "block":
            from prefect.blocks.system import Secret

            return Secret.load(name).get()
        raise SettingsError(f"secret reference {self!s} must start with 'env:' or 'block:'")


class AutotaskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    connection: str | None = Field(
        None, description="name of the Autotask account; tenants with the same name (default: username) share it"
    )
    integration_code: str
    secret: str = Field(description="env:NAME or block:NAME")
    zone_lookup_url: str = "https://webservices.autotask.net/atservicesrest"
    base_url: str | None = Field(None, description="skip zone discovery and use this zone URL")
    timeout_seconds: float = Field(30, gt=0, description="how long one Autotask request may take before it is given up")

    @field_validator("secret")
    @classmethod
    def _is_ref(cls, v: str) -> str:
        if not v.startswith(("env:", "block:")):
            raise ValueError("must be a reference (env:NAME or block:NAME), never the secret itself")
        return v


class XeroSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: str = Field(description="env:NAME or block:NAME")
    tenant_id: str = Field(description="the Xero organisation's tenantId (see GET /connections)")
    connection: str | None = Field(None, description="token store key; tenants sharing a Xero login share it")
    api_base: str | None = Field(None, description="one host serving every Xero API path (the sandbox); default: Xero's own hosts")
    calls_per_minute: int = 55
    max_in_flight: int = 4
    daily_call_budget: int = Field(
        1000, ge=1,
        description="calls a UTC day the sync may make to this Xero organisation, counted across every process "
                    "and tenant of it. Xero allows 5,000 a day on most plans and 1,000 on Starter, shared with "
                    "every other integration; a run that uses it up stops cleanly and the next day's run goes on",
    )
    timeout_seconds: float = Field(60, gt=0, description="how long one Xero call may take before it is given up")

    _is_ref = field_validator("client_secret")(AutotaskSettings._is_ref.__func__)


class CompanyUdfRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the company user-defined field's name, as Autotask shows it")
    values: list[str] = Field(description="this tenant takes companies whose field holds one of these values")


class RoutingSettings(BaseModel):
    """Which documents of a shared Autotask account belong to this tenant. Any one rule matching is enough."""

    model_config = ConfigDict(extra="forbid")

    companies: list[int] = Field(default_factory=list, description="Autotask company ids")
    business_units: list[int] = Field(
        default_factory=list, description="BillingItems.organizationalLevelAssociationID values"
    )
    invoice_templates: list[int] = Field(default_factory=list, description="Invoices.invoiceEditorTemplateID values")
    company_udf: CompanyUdfRule | None = None

    @property
    def empty(self) -> bool:
        return not (self.companies or self.business_units or self.invoice_templates or self.company_udf)


class ScheduleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str = "0 6 * * *"
    timezone: str = "UTC"
    active: bool = True

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError("must be a five-field cron expression, for example \"0 6 * * 1-5\"")
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a time zone name; use one like Pacific/Auckland or Europe/London") from None
        return v


class PaymentsSettings(BaseModel):
    """The payments flow, both ways. Xero → Autotask is on; Autotask → Xero ("apply payments") is off
    until the tenant enables it and names the account the payments go to."""

    model_config = ConfigDict(extra="forbid")

    to_autotask: bool = Field(True, description="write Xero's full settlement of synced invoices back as Autotask paid dates")
    clear_paid_date: bool = Field(
        True, description="clear a paid date this sync wrote when the payment is deleted in Xero (off: list it for a person)")
    to_xero: bool = Field(False, description="apply payments: an Autotask paid date becomes a Xero payment of the amount due")
    bank_account: str | None = Field(None, description="code or name of the Xero bank account payments go to (needed with to_xero)")
    time_zone: str | None = Field(None, description="the tenant's time zone for dates of moments (default: the schedule's)")
    webhooks: bool = Field(False, description="also run payments when Xero's webhooks say an invoice changed")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        return v if v is None else ScheduleSettings._known_zone.__func__(cls, v)


TENANT_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=TENANT_NAME)
    autotask: AutotaskSettings
    xero: XeroSettings
    mapping: str = Field(description="mapping file: a path, or a name in mappings/")
    ledger_url: str | None = Field(None, description="SQLAlchemy URL of the ledger; default SQLite under ATX_HOME")
    ledger_block: str | None = Field(None, description="name of a prefect-sqlalchemy SqlAlchemyConnector block")
    first_sync_days: int = Field(30, ge=1, description="how far back the very first run looks")
    lookback_days: int = Field(14, ge=0, description="overlap re-read before the last high-water mark")
    attach_pdfs: bool = False
    # The flows this tenant runs on a schedule (each gets a deployment); any flow can still be run by hand.
    flows: list[Literal["invoices", "bills", "payments"]] = Field(default_factory=lambda: ["invoices"])
    send_lease_minutes: int = Field(
        15, ge=0, description="a document claimed this long ago is looked up again even if its run still beats")
    heartbeat_seconds: float = Field(10, gt=0, description="how often a running sync writes its heartbeat")
    heartbeat_timeout_seconds: float = Field(
        60, gt=0, description="a run silent this long is presumed dead (killed); the next run resolves its documents")
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    payments: PaymentsSettings = Field(default_factory=PaymentsSettings)

    @property
    def time_zone(self) -> str:
        return self.payments.time_zone or self.schedule.timezone

    @property
    def send_lease(self) -> timedelta:
        return timedelta(minutes=self.send_lease_minutes)

    @property
    def heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_timeout_seconds)

    @property
    def token_connection(self) -> str:
        return self.xero.connection or self.name

    @property
    def autotask_connection(self) -> str:
        return (self.autotask.connection or self.autotask.username).strip().lower()

    def mapping_path(self) -> Path:
        p = Path(self.mapping)
        if p.suffix in (".yaml", ".yml") and p.exists():
            return p.resolve()
        candidate = PROJECT_ROOT / "mappings" / (self.mapping if p.suffix else f"{self.mapping}.yaml")
        if candidate.exists():
            return candidate
        raise SettingsError(f"tenant {self.name}: mapping file {self.mapping!r} not found (looked in mappings/)")


def tenant_file(name: str) -> Path:
    return tenants_dir() / f"{name}.yaml"


def load_tenant(name: str) -> TenantSettings:
    path = tenant_file(name)
    if not path.exists():
        raise SettingsError(f"no tenant named {name!r}: {path} does not exist (create it with `atx tenant add {name}`)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return TenantSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"{path}: {problems}") from None


def tenant_names() -> list[str]:
    folder = tenants_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_all_tenants() -> list[TenantSettings]:
    return [load_tenant(name) for name in tenant_names()]


def save_tenant(settings: TenantSettings) -> Path:
    path = tenant_file(settings.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings.model_dump(exclude_none=True), sort_keys=False))
    return path

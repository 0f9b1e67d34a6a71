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
    integration_code: str
    secret: str = Field(description="env:NAME or block:NAME")
    zone_lookup_url: str = "https://webservices.autotask.net/atservicesrest"
    base_url: str | None = Field(None, description="skip zone discovery and use this zone URL")

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

    _is_ref = field_validator("client_secret")(AutotaskSettings._is_ref.__func__)


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    autotask: AutotaskSettings
    xero: XeroSettings
    mapping: str = Field(description="mapping file: a path, or a name in mappings/")
    ledger_url: str | None = Field(None, description="SQLAlchemy URL of the ledger; default SQLite under ATX_HOME")
    ledger_block: str | None = Field(None, description="name of a prefect-sqlalchemy SqlAlchemyConnector block")
    first_sync_days: int = Field(30, ge=1, description="how far back the very first run looks")
    lookback_days: int = Field(14, ge=0, description="overlap re-read before the last high-water mark")
    attach_pdfs: bool = False
    send_lease_minutes: int = Field(15, ge=0)

    @property
    def send_lease(self) -> timedelta:
        return timedelta(minutes=self.send_lease_minutes)

    @property
    def token_connection(self) -> str:
        return self.xero.connection or self.name

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


def save_tenant(settings: TenantSettings) -> Path:
    path = tenant_file(settings.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings.model_dump(exclude_none=True), sort_keys=False))
    return path

"""Tenant settings: one versionable YAML file per tenant, with references to secrets, never secrets.

A tenant is one Autotask account synced into one Xero organisation. Its file names:
- how to reach Autotask and Xero (base URLs are configuration, so the same code runs against the
  real services and the sandbox);
- where its secrets live: `env:NAME` (an environment variable) or `block:NAME` (a Prefect Secret block);
- its mapping file (see `mappings/`), its ledger database, and its options.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def atx_home() -> Path:
    """Where runtime state lives (ledger database, demo tenants): never inside the versioned tree."""
    return Path(os.environ.get("ATX_HOME", ".atx")).resolve()


def tenants_dir() -> Path:
    return Path(os.environ.get("ATX_TENANTS_DIR", "tenants")).resolve()


class SettingsError(ValueError):
    """A tenant's settings cannot be used; the message is one line naming the file and the fix."""


class TenantFileError(SettingsError):
    """A tenant file that does not read: each problem with its line (1-based; None when the file lacks it)."""

    def __init__(self, path: Path, problems: list[tuple[int | None, str]]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(f"line {n}: {text}" if n else text for n, text in problems))


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

            try:
                block = Secret.load(name)
            except ValueError as exc:
                if "Unable to find block document" not in str(exc):
                    raise
                raise SettingsError(f"secret {self!s} is not stored: the Prefect Secret block {name!r} does not exist "
                                    "on this Prefect API; run `atx connect` for the tenant (or create the block)") from None
            return block.get()
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
    timeout_seconds: float = Field(
        30.0, gt=0, description="seconds one Autotask request may take before it is tried again (reads) or looked up (writes)")

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
    organisation: str | None = Field(
        None, description="the organisation's name, as Xero gave it to `atx connect xero` (shown by `atx tenant list`)")
    connection: str | None = Field(None, description="token store key; tenants sharing a Xero login share it")
    api_base: str | None = Field(None, description="one host serving every Xero API path (the sandbox); default: Xero's own hosts")
    calls_per_minute: int = Field(
        59, ge=1, description="calls to the organisation in any 60 seconds, every process and run together, each "
                              "60 seconds counted from its answer (Xero allows 60; one is kept spare)")
    max_in_flight: int = Field(
        4, ge=1, description="calls in flight to the organisation at once, every process and run together (Xero allows 5)")
    timeout_seconds: float = Field(
        60.0, gt=0, description="seconds one Xero request may take before it is tried again (reads) or looked up (writes)")
    token_key: str | None = Field(
        None,
        description="env:NAME or block:NAME holding the Fernet key(s) that encrypt this connection's token set in the "
                    "ledger (newest first, comma-separated); default: ATX_TOKEN_KEY, else the Prefect Secret block "
                    "atx-token-key, made on first use",
    )
    daily_call_budget: int = Field(
        1000, ge=1,
        description="calls a UTC day the sync may make to this Xero organisation, counted across every process "
                    "and tenant of it. Xero allows 5,000 a day on most plans and 1,000 on Starter, shared with "
                    "every other integration; a run that uses it up stops cleanly and the next day's run goes on",
    )
    pdfs_per_run: int | None = Field(
        None, ge=1,
        description="PDFs a run attaches at most (attach_pdfs: true), one Xero call each; default: as many as the "
                    "day's call budget leaves after the documents, less a tenth kept for the day's later runs",
    )

    _is_ref = field_validator("client_secret")(AutotaskSettings._is_ref.__func__)

    @field_validator("token_key")
    @classmethod
    def _is_ref_or_none(cls, v: str | None) -> str | None:
        return v if v is None else AutotaskSettings._is_ref.__func__(cls, v)


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
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5:
            raise ValueError(f"{v!r} is not a five-field cron expression (minute hour day-of-month month "
                             "day-of-week); use one like \"0 6 * * 1-5\"")
        # The schedule is Prefect's to run, so it is checked as Prefect checks a deployment's cron.
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=v)
        except ValueError:
            raise ValueError(f"{v!r} is not a cron schedule Prefect can run: minute 0-59, hour 0-23, day 1-31, "
                             "month 1-12, day of week 0-6; use one like \"0 6 * * 1-5\"") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

        try:
            ZoneInfo(v)
            # Prefect takes the zones zoneinfo lists; one it opens but does not list ("posixrules") is refused.
            known = v in available_timezones()
        except (ZoneInfoNotFoundError, ValueError):
            known = False
        if not known:
            raise ValueError(f"{v!r} is not a time zone name; use one like Pacific/Auckland or Europe/London")
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
    audit_days: int = Field(
        90, ge=1, description="how many days the audit trail keeps each write sent to Xero and Autotask")
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    payments: PaymentsSettings = Field(default_factory=PaymentsSettings)
    share_with: list[str] = Field(
        default_factory=list,
        description="tenants this one may share secret references and a Xero token connection with; "
                    "each of them must name this one too",
    )

    @field_validator("share_with")
    @classmethod
    def _tenant_names(cls, v: list[str]) -> list[str]:
        import re

        bad = [name for name in v if not re.match(TENANT_NAME, name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a tenant name (lowercase letters, digits and dashes)")
        return v

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
        names = sorted(f.stem for f in (PROJECT_ROOT / "mappings").glob("*.yaml"))
        raise SettingsError(f"tenant {self.name}: mapping file {self.mapping!r} not found: give the path of a .yaml "
                            f"file, or one of the names in mappings/: {', '.join(names)}")


def tenant_file(name: str) -> Path:
    return tenants_dir() / f"{name}.yaml"


def load_tenant(name: str) -> TenantSettings:
    """The tenant's settings, refused when its file names another tenant's secrets or Xero tokens."""
    settings = _read_tenant(name)
    _refuse_borrowing(settings, [t for t in _readable_tenants() if t.name != name])
    return settings


def _read_tenant(name: str) -> TenantSettings:
    if not re.match(TENANT_NAME, name):
        raise SettingsError(f"{name!r} is not a tenant name: tenant names are lowercase letters, digits and dashes")
    path = tenant_file(name)
    if not path.exists():
        known = tenant_names()
        raise SettingsError(
            f"no tenant named {name!r} ({path} does not exist): create it with `atx tenant add {name}`"
            + (f", or use one of {', '.join(known)}" if known else ""))
    return read_tenant_file(path)


def tenant_names() -> list[str]:
    folder = tenants_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_all_tenants() -> list[TenantSettings]:
    """Every tenant; the first file that cannot be used is raised (see `scan_tenants` to go on past it)."""
    files = scan_tenants()
    if files.broken:
        raise files.broken[0].error
    return files.tenants


def read_all_tenants() -> list[TenantSettings]:
    """Every tenant file that reads, as written, without the isolation check: for reading the parts that are
    no secret (routing rules), so a tenant refused for naming another's secrets still counts among its peers.
    A file that does not read is left out; `scan_tenants(isolated=False).broken` says what is known of it."""
    return scan_tenants(isolated=False).tenants


# ---- reading tenant files ------------------------------------------------------------------------
# Tenant files are read and written with ruamel.yaml's round trip: a file rewritten by `atx connect` keeps
# its comments, order and quoting, and every setting's line is known, so a problem is reported by line.
def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096  # never fold a long value onto a second line
    return y


def read_tenant_file(path: Path, text: str | None = None) -> TenantSettings:
    """A tenant file's settings (from `text` when given, as the file would hold it), or TenantFileError with
    each problem's line and fix."""
    data = _parse(path, text)
    try:
        settings = TenantSettings.model_validate(data)
    except ValidationError as exc:
        raise TenantFileError(path, [_field_problem(data, e) for e in exc.errors()]) from None
    if settings.name != path.stem:
        raise TenantFileError(path, [(
            _line(data, ("name",)),
            f"name is {settings.name!r} but the file is {path.name}: a tenant's name is its file's name; rename "
            f"the file to {settings.name}.yaml or set name: {path.stem}")])
    return settings


def _parse(path: Path, text: str | None = None) -> CommentedMap:
    try:
        text = path.read_text() if text is None else text
    except (OSError, UnicodeDecodeError) as exc:
        raise TenantFileError(path, [(None, f"cannot be read ({getattr(exc, 'strerror', None) or exc}): "
                                            "check the file's permissions and that it is UTF-8 text")]) from None
    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise TenantFileError(path, [_yaml_problem(exc)]) from None
    if data is None:
        raise TenantFileError(path, [(None, "the file is empty: start again from `atx tenant add NAME`'s template "
                                            "(delete the file first)")])
    if not isinstance(data, CommentedMap):
        raise TenantFileError(path, [(1, "a tenant file is a mapping of settings (name:, autotask:, xero:, "
                                         "mapping:, ...), not a list or a single value")])
    return data


def _yaml_problem(exc: YAMLError) -> tuple[int | None, str]:
    """The line of a YAML syntax error and what to do about it, in a person's words where we know them."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = str(getattr(exc, "problem", None) or exc).strip()
    if "duplicate key" in problem:
        earlier = getattr(exc, "context_mark", None)
        key = problem.split('"')[1] if '"' in problem else "a key"
        where = f" (and on line {earlier.line + 1})" if earlier is not None else ""
        return line, f"{key} is written twice in one section{where}: keep one of them"
    if "'\\t'" in problem:  # ruamel says found character '\t'
        return line, "a tab character: indent YAML with spaces"
    if "mapping values are not allowed" in problem:
        return line, "not valid YAML (a ': ' inside a value): put the value in quotes"
    context = getattr(exc, "context", None)
    started = getattr(exc, "context_mark", None)
    said = f"{problem} ({context} from line {started.line + 1})" if context and started is not None else problem
    return line, (f"not valid YAML: {said}: line this setting up under its section with spaces, and quote a value "
                  "that holds ': ' or ' #'")


def _line(data, loc: tuple) -> int | None:
    """The (1-based) line of the deepest key or item of `loc` the file holds."""
    node, line = data, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line, node = node.lc.key(part)[0] + 1, node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, node = node.lc.item(part)[0] + 1, node[part]
        else:
            break
    return line


def _field_problem(data, error: dict) -> tuple[int | None, str]:
    loc = tuple(error["loc"])
    where = ".".join(map(str, loc))
    kind = error["type"]
    if kind == "missing":
        return _line(data, loc), f"{where} is missing: add it (the README's tenant file section lists every setting)"
    if kind == "extra_forbidden":
        known = _fields_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        return _line(data, loc), (f"{where} is not a setting: " + (f"did you mean {close[0]}?" if close else
                                  f"remove it, or use one of {', '.join(known)}" if known else "remove it"))
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if kind != "value_error" and isinstance(value, (str, int, float, bool)):
        message += f" (the file says {value!r})"
    return _line(data, loc), f"{where}: {message}"


def _fields_at(loc: tuple) -> list[str]:
    """The settings a section of the tenant file takes (for suggesting the one meant)."""
    model: type[BaseModel] | None = TenantSettings
    for part in loc:
        info = model.model_fields.get(str(part)) if model is not None else None
        annotation = info.annotation if info is not None else None
        args = getattr(annotation, "__args__", ()) or (annotation,)
        model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


@dataclass(frozen=True)
class BrokenTenant:
    """A tenant file that cannot be used, with what can still be told of it: the Autotask account it names and
    its routing rules, each None when that part of the file does not read (or cannot be trusted)."""

    name: str
    error: SettingsError
    autotask_connection: str | None = None
    routing: RoutingSettings | None = None


@dataclass
class TenantFiles:
    tenants: list[TenantSettings] = field(default_factory=list)
    broken: list[BrokenTenant] = field(default_factory=list)


def scan_tenants(*, isolated: bool = True) -> TenantFiles:
    """Every tenant file, each read once: the tenants that load, and the files that do not with why. One bad
    file is reported by itself; the others go on. `isolated`: a file naming another tenant's secrets or token
    connection is broken (refused), as `load_tenant` refuses it."""
    out = TenantFiles()
    readable = []
    for name in tenant_names():
        path = tenant_file(name)
        try:
            readable.append(read_tenant_file(path))
        except TenantFileError as exc:
            out.broken.append(_what_is_known(name, path, exc))
    for settings in readable:
        try:
            if isolated:
                _refuse_borrowing(settings, [t for t in readable if t.name != settings.name])
        except SettingsError as exc:
            out.broken.append(BrokenTenant(settings.name, exc, settings.autotask_connection, settings.routing))
            continue
        out.tenants.append(settings)
    out.broken.sort(key=lambda b: b.name)
    return out


def _what_is_known(name: str, path: Path, error: TenantFileError) -> BrokenTenant:
    """The Autotask account and routing rules of a file that does not read, where its text still says them.

    A file with a YAML syntax error is read up to the last top-level section that starts before the error (and
    no further, if that does not read either): its `autotask:` section counts only when another section follows
    it there (so it is whole), and its routing rules never (a list cut in two would claim less than it means)."""
    data, whole = None, True
    try:
        data = _parse(path)
    except TenantFileError:
        whole = False
        line = next((n for n, _ in error.problems if n), None)
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        sections = [i for i, text in enumerate(lines[: line or 0]) if re.match(r"[^\s#-]", text)]
        for end in reversed(sections):  # the section the error is in may start well before the line it is seen
            try:
                data = _yaml().load("\n".join(lines[:end]))
            except YAMLError:
                continue
            break
    if not isinstance(data, CommentedMap):
        return BrokenTenant(name, error)
    keys = list(data)
    account = None
    section = data.get("autotask")
    if isinstance(section, dict) and (whole or ("autotask" in keys and keys.index("autotask") < len(keys) - 1)):
        said = section.get("connection") or section.get("username")
        account = said.strip().lower() if isinstance(said, str) and said.strip() else None
    rules = None
    if whole:
        try:
            rules = RoutingSettings.model_validate(data.get("routing") or {})
        except ValidationError:
            rules = None
    return BrokenTenant(name, error, account, rules)


def save_tenant(settings: TenantSettings) -> Path:
    """Write the tenant's settings to its file. An existing file is edited, not replaced: only the settings
    that changed are rewritten, so its comments, order and quoting stay as the person wrote them."""
    path = tenant_file(settings.name)
    new = settings.model_dump(mode="json", exclude_none=True)
    document = None
    if path.exists():
        try:
            document = _parse(path)
            old = TenantSettings.model_validate(document).model_dump(mode="json", exclude_none=True)
        except (TenantFileError, ValidationError):
            document = None  # a file that does not read is replaced whole
        else:
            _merge(document, old, new)
    text = _dump(document if document is not None else new)
    if document is not None and TenantSettings.model_validate(_yaml().load(text)) != settings:
        text = _dump(new)  # never keep an edit that says anything but these settings
    _write_atomically(path, text)
    return path


def _merge(document: CommentedMap, old: dict, new: dict) -> None:
    """Edit `document` (which says `old`) to say `new`, touching only what differs."""
    for key in [k for k in document if k in old and k not in new]:
        del document[key]
    for key, value in new.items():
        if key in old and old[key] == value:
            continue
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            if not isinstance(document.get(key), CommentedMap):
                document[key] = CommentedMap()
            _merge(document[key], old[key], value)
        else:
            document[key] = value


def _dump(data) -> str:
    import io

    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def write_new_tenant_file(path: Path, text: str) -> None:
    """A new tenant file, whole or not at all; FileExistsError when there is one already."""
    _write_atomically(path, text, new=True)


def _write_atomically(path: Path, text: str, *, new: bool = False) -> None:
    """The file is either as it was or holds all of `text`: never half written. `new`: refuse to replace one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.yaml: never read as a tenant
    try:
        temporary.write_text(text)
        if new:
            os.link(temporary, path)  # FileExistsError when the file appeared meanwhile
        else:
            if path.exists():
                import shutil

                shutil.copymode(path, temporary)
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---- tenant isolation ----------------------------------------------------------------------------
# A tenant's run resolves the secret references of its own file and uses its own Xero token connection.
# What another tenant's file names, or what `atx connect` names after another tenant, is that tenant's:
# naming it is refused unless both files declare the sharing (`share_with`). The ledger database is not
# among these: it is shared by design (every row carries its tenant).
def _claims(settings: TenantSettings, *, token_key: bool = True) -> dict[str, str]:
    """What the file names that must be the tenant's own: {reference or connection: how to say it}. The token
    key may be one for every tenant (it seals the ledger's token table, as the default key does), so it is
    never another tenant's; but it must not be another tenant's secret either."""
    x = settings.xero
    refs = (settings.autotask.secret, x.client_secret) + ((x.token_key,) if token_key else ())
    claims = {ref: ref for ref in refs if ref}
    claims[f"connection:{settings.token_connection}"] = f"the Xero token connection {settings.token_connection!r}"
    return claims


def _named_after(tenant: str) -> set[str]:
    """What `atx connect` names after a tenant: its Secret blocks and its token connection."""
    return {f"block:{tenant}-autotask-secret", f"block:{tenant}-xero-client-secret", f"connection:{tenant}"}


def _refuse_borrowing(settings: TenantSettings, others: list[TenantSettings]) -> None:
    mine = {key: said for key, said in _claims(settings).items() if key not in _named_after(settings.name)}
    for other in others:
        shared = [key for key in mine if key in set(_claims(other, token_key=False)) | _named_after(other.name)]
        if not shared or (other.name in settings.share_with and settings.name in other.share_with):
            continue
        here, there = tenant_file(settings.name), tenant_file(other.name)
        whose = (f"is tenant {other.name}'s ({there}; `atx connect` named it after that tenant)"
                 if shared[0] in _named_after(other.name) else f"{there} names too")
        missing = [f"`share_with: [{b}]` to {f}" for a, b, f in ((settings, other.name, here), (other, settings.name, there))
                   if b not in a.share_with]
        raise SettingsError(
            f"{here} names {mine[shared[0]]}, which {whose}: a tenant uses only its own secrets and Xero token "
            f"connection. If the two tenants are meant to share it, add " + " and ".join(missing)
            + f"; otherwise give {here.name} one of its own.")


def _readable_tenants() -> list[TenantSettings]:
    """Every tenant file that reads (a broken one is reported when it is loaded itself, and claims nothing)."""
    out = []
    for name in tenant_names():
        try:
            out.append(read_tenant_file(tenant_file(name)))
        except SettingsError:
            continue
    return out

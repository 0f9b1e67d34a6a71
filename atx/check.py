"""`atx check`: a tenant against the live systems, before any run writes anything.

Each problem says what is wrong and the fix. `error` problems stop a run at its start (the flows call
`blocking` through tasks/tenancy.py); `warning` problems are for the person reading `atx check`: the run
itself sets the affected documents aside with the same reason.
"""
from __future__ import annotations

from collections.abc import Iterable

from dataclasses import dataclass
from typing import Literal

from atx.connections import autotask_client, token_key_ref, token_keys, token_store, xero_gateway
from atx.settings import SecretRef, SettingsError, TenantSettings, load_tenant, scan_tenants, tenant_file
from clients.autotask import AutotaskError, AutotaskRateLimited
from clients.xero import XeroAuthError, XeroError, XeroRateLimited
from core.call_budget import SETTING as BUDGET_SETTING, usage_warning
from core.invoices import PICKLIST_ENTITIES, XeroReference
from core.mapping import MappingError, load_mapping
from core.token_age import refresh_token_warning
from core.xero_settings import xero_reference

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    severity: Severity
    area: str
    problem: str
    fix: str


class PreflightFailed(RuntimeError):
    """The tenant cannot sync until these problems are fixed; nothing has been written."""

    def __init__(self, tenant: str, problems: list[Problem]):
        self.problems = problems
        lines = [f"tenant {tenant} cannot sync until this is fixed (nothing was written):"]
        lines += [f"- {p.area}: {p.problem} Fix: {p.fix}" for p in problems]
        super().__init__("\n".join(lines))


def check_tenant(name: str, *, autotask_usage: bool = True, flows: Iterable[str] | None = None,
                 stop_at_limits: bool = False) -> list[Problem]:
    """Every problem found, errors first. `autotask_usage` also checks that what Autotask uses is mapped.
    `flows`: the flows whose part of the mapping is checked (default: the tenant's `flows`).
    `stop_at_limits`: an API limit met while checking Xero (the daily call budget used up) is raised, as
    XeroRateLimited, instead of reported: a run then stops cleanly rather than failing its check."""
    try:
        settings = load_tenant(name)
    except SettingsError as exc:
        return [Problem("error", "tenant file", str(exc), "correct the file, see the README's Tenants section")]
    problems: list[Problem] = []
    mapping = _mapping(settings, problems)
    problems += _secrets(settings)
    if not any(p.severity == "error" for p in problems):
        reference = _autotask(settings, problems, autotask_usage, stop_at_limits)
        xero = _xero(settings, problems, stop_at_limits)
        problems += call_budget(settings)
        problems += token_age(settings)
        flows = set(settings.flows if flows is None else flows)
        if mapping is not None and xero is not None:
            if "invoices" in flows:
                problems += mapping_targets(mapping, xero)
                problems += item_targets(settings, mapping)
            if "bills" in flows:
                problems += bills_targets(mapping, xero)
        if xero is not None and "payments" in flows:
            problems += payments_targets(settings, xero, _granted_scopes(settings))
        if mapping is not None and reference is not None:
            problems += mapping_coverage(mapping, reference)
        if xero is not None and reference is not None:
            problems += currencies(reference, xero)
    problems += routing_problems(settings)
    return sorted(problems, key=lambda p: p.severity != "error")


def blocking(name: str, flow: str = "invoices") -> list[Problem]:
    """What stops one flow's run before it writes anything."""
    return [p for p in check_tenant(name, autotask_usage=False, flows=[flow], stop_at_limits=True)
            if p.severity == "error"]


# ---- pieces ------------------------------------------------------------------------------------
def _mapping(settings: TenantSettings, problems: list[Problem]):
    try:
        return load_mapping(settings.mapping_path())
    except (SettingsError, MappingError) as exc:
        problems.append(Problem("error", "mapping file", str(exc), "correct the mapping file (see mappings/example.yaml)"))
        return None


def _secrets(settings: TenantSettings) -> list[Problem]:
    out = []
    key = token_key_ref(settings)
    for area, resolve, fix in (
        ("Autotask secret", lambda: SecretRef(settings.autotask.secret).resolve(),
         f"run `atx connect autotask --tenant {settings.name}`"),
        ("Xero client secret", lambda: SecretRef(settings.xero.client_secret).resolve(),
         f"run `atx connect xero --tenant {settings.name}`"),
        ("Xero token key", lambda: token_keys(key),
         f"put the key the Xero tokens were saved with in {key}, or set a new one and run "
         f"`atx connect xero --tenant {settings.name}`"),
    ):
        try:
            resolve()
        except Exception as exc:  # a missing block raises ValueError, an unreachable API something else
            out.append(Problem("error", area, _first_line(exc), fix))
    return out


def _xero(settings: TenantSettings, problems: list[Problem], stop_at_limits: bool = False) -> XeroReference | None:
    """The organisation's usable settings, derived exactly as the mapping derives them (core/xero_settings.py)."""
    reconnect = f"run `atx connect xero --tenant {settings.name}`"
    try:
        gateway = xero_gateway(settings)
        connections = gateway.connections()
        granted = {c.get("tenantId") for c in connections}
        if settings.xero.tenant_id not in granted:
            # Disconnected in Xero, or gone (a sandbox reset): a run would find none of its documents there.
            reached = ", ".join(f"{c.get('tenantName')} ({c.get('tenantId')})" for c in connections) or "none"
            problems.append(Problem("error", "Xero connection",
                                    f"the Xero organisation {settings.xero.tenant_id} (xero.tenant_id) is not connected: "
                                    f"the stored token reaches {reached}.", reconnect))
            return None
        return xero_reference(gateway.settings())
    except XeroAuthError as exc:
        problems.append(Problem("error", "Xero connection", _first_line(exc), reconnect))
    except XeroRateLimited as exc:
        if stop_at_limits:
            raise
        # Nothing is wrong with the tenant: Xero cannot be asked today. Not an error, but nothing was checked.
        problems.append(Problem("warning", "Xero limits", f"the Xero checks were not made: {_first_line(exc)}.",
                                "run `atx check` again once the sync can go on"))
    except XeroError as exc:
        problems.append(Problem("error", "Xero", _first_line(exc), "try again later; check Xero's status page"))
    return None


# Above this share of the day's budget, `atx check` warns (the runs themselves stop only at all of it).
BUDGET_WARNING_SHARE = 0.8


def call_budget(settings: TenantSettings) -> list[Problem]:
    """A warning when most of today's daily Xero call budget is used (the count every process of the
    organisation keeps in the ledger)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        status = xero_gateway(settings).call_budget_status()
    except (SettingsError, SQLAlchemyError, XeroError):  # the usage is advice: what stops it is reported elsewhere
        return []
    if status is None or status.share <= BUDGET_WARNING_SHARE:
        return []
    return [Problem("warning", "Xero call budget", usage_warning(status),
                    f"raise {BUDGET_SETTING} in the tenant file (Xero allows 5,000 calls a day on most plans, "
                    "1,000 on Starter, shared with other integrations), or let the sync go on tomorrow")]


def token_age(settings: TenantSettings) -> list[Problem]:
    """A warning when the stored Xero refresh token has gone unused for 45 days (Xero expires it at 60)."""
    text = refresh_token_warning_for(settings)
    if text is None:
        return []
    return [Problem("warning", "Xero connection", text[0].upper() + text[1:] + ".",
                    f"run any sync for the tenant (it refreshes the token), or `atx connect xero --tenant {settings.name}`")]


def refresh_token_warning_for(settings: TenantSettings) -> str | None:
    """The refresh-token age warning for a tenant, from the token set its ledger keeps; None when none is due."""
    from datetime import datetime, timezone

    from sqlalchemy.exc import SQLAlchemyError

    try:
        saved = token_store(settings).last_saved()  # the date only: the token key is not needed
    except (SettingsError, SQLAlchemyError):  # advice only: the connection check reports a broken ledger
        return None
    return refresh_token_warning(saved, datetime.now(timezone.utc), settings.name)


REFERENCE = ("BillingCodes", "TaxCategories", "InvoiceTemplates", "Currencies")


def _autotask(settings: TenantSettings, problems: list[Problem], usage: bool,
              stop_at_limits: bool = False) -> dict[str, list[dict]] | None:
    try:
        with autotask_client(settings) as at:
            at.threshold()  # the cheapest authenticated call: proves zone, user, secret and integration code
            if not usage:
                return None
            everything = [{"op": "gte", "field": "id", "value": 0}]
            reference = {entity: list(at.query(entity, everything)) for entity in REFERENCE}
            reference["Picklists"] = at.picklists_of(PICKLIST_ENTITIES)
            return reference
    except AutotaskRateLimited as exc:
        if stop_at_limits:
            raise
        # Nothing is wrong with the tenant: the database's hour is used up. Not an error, but nothing was checked.
        problems.append(Problem("warning", "Autotask limits", f"the Autotask checks were not made: {_first_line(exc)}.",
                                "run `atx check` again once the hour has drained"))
    except AutotaskError as exc:
        problems.append(Problem("error", "Autotask credentials", _first_line(exc),
                                f"check the API user, then run `atx connect autotask --tenant {settings.name}`"))
    except Exception as exc:  # httpx errors: the zone cannot be reached at all
        problems.append(Problem("error", "Autotask", f"cannot reach Autotask ({type(exc).__name__}).",
                                "check autotask.zone_lookup_url and the network"))
    return None


def mapping_targets(mapping, xero: XeroReference) -> list[Problem]:
    """Every Xero thing the mapping names is usable in the organisation, judged on the mapping's own view
    (core/xero_settings.py) with its own lookups: an error here is a document the mapping would set aside."""
    out: list[Problem] = []
    accounts = getattr(mapping, "accounts", None)
    for key, code in _named_values(accounts, "accounts"):
        if code not in xero.account_codes:
            out.append(Problem("error", "mapping " + key, f"account code {code} is not an active account in Xero.",
                               f"create (or restore) account {code} in Xero, or change {key} to an active code"))
    tax = getattr(mapping, "tax", None)
    for key, tax_type in _named_values(tax, "tax"):
        if tax_type not in xero.tax_types:
            out.append(Problem("error", "mapping " + key, f"tax type {tax_type} is not an active tax rate in Xero.",
                               f"create the tax rate in Xero, or change {key} to one of {', '.join(sorted(xero.tax_types)[:8])}…"))
    rounding = getattr(tax, "rounding", None)
    if rounding is not None and getattr(rounding, "strategy", None) == "rounding_line":
        code = rounding.account_code
        if code not in xero.account_codes:
            out.append(Problem("error", "mapping tax.rounding.account_code", f"account code {code} is not an active "
                               "account in Xero.", "point it at an active account"))
    for i, rule in enumerate(getattr(mapping, "tracking", None) or []):
        category = xero.tracking_category(rule.category)
        if category is None:
            out.append(Problem("error", f"mapping tracking[{i}]", f"tracking category {rule.category!r} is not active in Xero.",
                               "create it in Xero (Settings > Tracking categories) or correct its name"))
            continue
        for value, option in (getattr(rule, "options", None) or {}).items():
            if xero.tracking_option(category, option) is None:
                out.append(Problem("error", f"mapping tracking[{i}].options.{value}",
                                   f"option {option!r} is not an active option of {category!r} in Xero.",
                                   "add (or restore) the option in Xero or correct its name"))
    branding = getattr(mapping, "branding_themes", None)
    for key, theme in _named_values(branding, "branding_themes"):
        if xero.branding_theme_id(theme) is None:
            out.append(Problem("error", "mapping " + key, f"branding theme {theme!r} is not in Xero.",
                               "create the theme in Xero (Invoice settings) or use one of: " + ", ".join(sorted(xero.branding_themes))))
    return out


# Xero's granular scope for payments, and the broad one it replaces (until September 2027).
PAYMENT_SCOPES = ("accounting.payments", "accounting.transactions")


def _granted_scopes(settings: TenantSettings) -> set[str] | None:
    """The scopes the tenant's Xero connection was granted (None when they cannot be read)."""
    try:
        scope = xero_gateway(settings).current_token().get("scope") or []
    except XeroError:
        return None
    return set(scope.split() if isinstance(scope, str) else scope)


def payments_targets(settings: TenantSettings, xero: XeroReference, scopes: set[str] | None) -> list[Problem]:
    """Applying payments in Xero needs an account that takes payments, and a connection allowed to make them."""
    payments = settings.payments
    if not payments.to_xero:
        return []
    out: list[Problem] = []
    if not payments.bank_account:
        out.append(Problem("error", "payments.bank_account", "payments.to_xero is on but no bank account is named.",
                           "set payments.bank_account to the code or name of the Xero bank account payments go to"))
    elif xero.payment_account(payments.bank_account) is None:
        out.append(Problem("error", "payments.bank_account",
                           f"no active Xero account that takes payments has the code or name {payments.bank_account!r}.",
                           "name an active bank account (or one with payments enabled) from Xero's chart of accounts"))
    if scopes is not None and not scopes & set(PAYMENT_SCOPES):
        out.append(Problem("error", "Xero connection", "the connection may not make payments (it lacks the "
                           "accounting.payments scope).",
                           f"run `atx connect xero --tenant {settings.name}` again and grant accounting.payments"))
    return out


def item_targets(settings: TenantSettings, mapping) -> list[Problem]:
    """The item codes `items.rules` names are in Xero (one read), unless the sync creates missing ones. A
    warning: the run sets aside only the invoices whose lines need a missing item, with the same fix."""
    items = getattr(mapping, "items", None)
    codes = list(dict.fromkeys(rule.item_code for rule in (items.rules if items else [])))
    if not codes or items.create_missing:
        return []
    try:
        held = {i.code.casefold() for i in xero_gateway(settings).find_items(codes) if i.code}
    except XeroError as exc:
        return [Problem("warning", "mapping items.rules", f"the items could not be read: {_first_line(exc)}",
                        "run atx check again later")]
    return [Problem("warning", "mapping items.rules", f"item code {code} is not an item in Xero.",
                    f"create item {code} in Xero (Business > Products and services), correct items.rules, "
                    "or set items.create_missing: true")
            for code in codes if code.casefold() not in held]


def bills_targets(mapping, xero: XeroReference) -> list[Problem]:
    """The bills section's accounts and tax types exist in Xero (the same view the bills mapping plans with)."""
    bills = mapping.bills
    out: list[Problem] = []
    codes = list(_named_values(bills.accounts, "bills.accounts"))
    codes += [("bills.freight.account_code", bills.freight.account_code)] if bills.freight.account_code else []
    codes += [(f"bills.lines.description_rules[{i}].account_code", r.account_code)
              for i, r in enumerate(bills.lines.description_rules)]
    for key, code in codes:
        if code not in xero.account_codes:
            out.append(Problem("error", "mapping " + key, f"account code {code} is not an active account in Xero.",
                               f"create (or restore) account {code} in Xero, or change {key} to an active code"))
    taxes = list(_named_values(bills.tax, "bills.tax"))
    taxes += [("bills.freight.tax_type", bills.freight.tax_type)] if bills.freight.tax_type else []
    for key, tax_type in taxes:
        if tax_type not in xero.tax_types:
            out.append(Problem("error", "mapping " + key, f"tax type {tax_type} is not an active tax rate in Xero.",
                               f"create the tax rate in Xero, or change {key} to an active INPUT tax type"))
    return out


def mapping_coverage(mapping, reference: dict[str, list[dict]]) -> list[Problem]:
    """What Autotask uses (active billing codes, tax categories, templates) has a mapping."""
    out: list[Problem] = []
    accounts, tax = mapping.accounts, mapping.tax
    if accounts.refuse_unmapped or not accounts.default:
        for code in reference.get("BillingCodes", []):
            if not code.get("isActive", True):
                continue
            if not (code["id"] in accounts.by_billing_code_id or code.get("name") in accounts.by_billing_code_name
                    or code.get("generalLedgerAccount") in accounts.by_gl_account
                    or code.get("externalNumber") in accounts.by_external_number
                    or _label_mapped(accounts, code, reference)):
                out.append(Problem("warning", "mapping accounts",
                                   f"billing code {code.get('name')!r} (id {code['id']}) has no Xero account: its invoices are set aside.",
                                   f"add accounts.by_billing_code_id.{code['id']} (or a default)"))
    if not tax.default:
        star_everywhere = bool(tax.by_region) and all("*" in rules for rules in tax.by_region.values())
        for category in reference.get("TaxCategories", []):
            if not category.get("isActive", True) or star_everywhere:
                continue
            if category["id"] not in tax.by_category_id and category.get("name") not in tax.by_category_name:
                out.append(Problem("warning", "mapping tax",
                                   f"tax category {category.get('name')!r} (id {category['id']}) has no Xero tax type.",
                                   f"add tax.by_category_name.{category.get('name')} (or tax.default)"))
    branding = getattr(mapping, "branding_themes", None)
    if branding is not None and (branding.by_template_id or branding.by_template_name) and not branding.default:
        for template in reference.get("InvoiceTemplates", []):
            if template["id"] not in branding.by_template_id and template.get("name") not in branding.by_template_name:
                out.append(Problem("warning", "mapping branding_themes",
                                   f"invoice template {template.get('name')!r} (id {template['id']}) has no branding theme.",
                                   f"add branding_themes.by_template_id.{template['id']} (or a default)"))
    return out


def currencies(reference: dict[str, list[dict]], xero: XeroReference) -> list[Problem]:
    out = []
    for currency in reference.get("Currencies", []):
        code = currency.get("name") or currency.get("currencyCode")
        if currency.get("isActive", True) and code and code not in xero.currencies:
            out.append(Problem("warning", "Xero currencies",
                               f"Autotask bills in {code} but the organisation is not subscribed to it.",
                               f"add {code} in Xero (Settings > Currencies) before its invoices are synced"))
    return out


def routing_problems(settings: TenantSettings) -> list[Problem]:
    files = scan_tenants(isolated=False)
    peers = [t for t in files.tenants if t.autotask_connection == settings.autotask_connection]
    out = []
    # A file that cannot be read is reported on its own (`atx check` lists it once); here only what it changes
    # for this tenant: a tenant of this Autotask account whose rules may claim this tenant's invoices.
    for broken in files.broken:
        if broken.name != settings.name and broken.autotask_connection == settings.autotask_connection:
            out.append(Problem("warning", "routing", f"tenant {broken.name} shares this Autotask account and its file "
                               "cannot be read: " + ("its routing rules are counted as the file holds them." if
                               broken.routing is not None else "it is taken to claim every invoice, so the ones "
                               "this tenant claims too are held back."),
                               f"fix {tenant_file(broken.name)} (`atx check --tenant {broken.name}` says where)"))
    if len(peers) < 2:
        return out
    others = ", ".join(t.name for t in peers if t.name != settings.name)
    if settings.routing.empty:
        out.append(Problem("warning", "routing", f"the Autotask account is shared with {others}, and this tenant has "
                           "no routing rules: it receives no invoices.",
                           "add routing.companies, business_units, invoice_templates or company_udf to the tenant file"))
    for other in peers:
        if other.name == settings.name:
            continue
        for key in ("companies", "business_units", "invoice_templates"):
            both = sorted(set(getattr(settings.routing, key)) & set(getattr(other.routing, key)))
            if both:
                out.append(Problem("warning", "routing", f"routing.{key} {both} also route to {other.name}: those "
                                   "invoices go to neither and are reported.", "keep each value in one tenant's file"))
    return out


# ---- helpers ---------------------------------------------------------------------------------------
def _named_values(section, prefix: str):
    """(key path, Xero name) for every value a mapping section sends to Xero."""
    if section is None:
        return
    for name in type(section).model_fields:
        value = getattr(section, name)
        if name in ("refuse_unmapped", "rounding", "strategy"):
            continue
        if isinstance(value, str):
            yield f"{prefix}.{name}", value
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, str):
                    yield f"{prefix}.{name}.{k}", v
                elif isinstance(v, dict):
                    for kk, vv in v.items():
                        if isinstance(vv, str):
                            yield f"{prefix}.{name}.{k}.{kk}", vv


def _label_mapped(accounts, code: dict, reference: dict) -> bool:
    labels = getattr(accounts, "by_gl_account_label", None) or {}
    gl = {str(v.get("value")): str(v.get("label")) for v in reference.get("Picklists", {}).get("BillingCodes.generalLedgerAccount", [])}
    return bool(labels) and gl.get(str(code.get("generalLedgerAccount"))) in labels


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

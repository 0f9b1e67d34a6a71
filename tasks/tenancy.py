"""Tenancy tasks: the checks a run makes before it writes, and keeping only this tenant's documents.

Several tenants (Xero organisations) may share one Autotask account. Right after extract, each run keeps
the invoices its routing rules claim and reports, in its run report, those that match no tenant or more
than one: they are never guessed into an organisation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from atx.check import PreflightFailed, Problem, blocking
from atx.connections import autotask_client
from atx.settings import RoutingSettings, TenantSettings, scan_tenants
from core import routing
from core.documents import TargetLimitReached
from core.frames import read_int
from core.invoices import _REJECTED_COMPANIES, _REJECTED_INVOICES, _REJECTED_LINES
from tasks.extract import AutotaskExtract
from tasks.outcomes import Outcome, Result
from tasks.sync import worth_retrying
from tasks.report import routing_key
from tasks.prefect_task import task


@dataclass
class Checked:
    """What the check before any write found."""

    stopped: str | None = None  # an API limit (the daily Xero call budget) left no call for the check
    problems: list[Problem] = field(default_factory=list)  # each stops the run, with its fix


@task(name="check-tenant", cache_policy=NONE)
def check_before_writing(tenant: str, flow: str = "invoices") -> Checked:
    """The blocking part of `atx check` for one flow: credentials, the Xero connection, and every Xero name
    that flow's part of the mapping uses. The problems are returned, not raised: the flow reports them
    with their fixes and fails cleanly, and this task is not a traceback in the dashboard. An API limit
    that leaves no call for the check is a clean stop for the next run to take up, not a failure."""
    try:
        problems = blocking(tenant, flow)
    except TargetLimitReached as exc:
        get_run_logger().warning("stopping before the check could ask Xero: %s", exc)
        return Checked(stopped=str(exc))
    if problems:
        get_run_logger().error("%s cannot sync until %d problem(s) are fixed", tenant, len(problems))
        return Checked(problems=problems)
    get_run_logger().info("checked %s: Autotask and Xero answer, and every mapped account and tax type exists", tenant)
    return Checked()


def deployment_tenant() -> str | None:
    """The tenant whose deployment started this flow run (`invoices/acme` → acme), from the deployment's own
    parameters; None for a run started otherwise (a direct call, a subflow, `atx sync`). A tenant's deployment
    syncs only that tenant, whatever its run's parameters say: the form of a deployment made by
    `prefect deploy` lets a person type any tenant (`atx serve` fixes the field), so the run refuses it."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    deployment_id = getattr(getattr(context, "flow_run", None), "deployment_id", None)
    if deployment_id is None:
        return None
    with get_client(sync_client=True) as client:
        parameters = client.read_deployment(deployment_id).parameters or {}
    request = parameters.get("request")  # the backfill's one parameter is a model holding the tenant
    tenant = parameters.get("tenant") or (request.get("tenant") if isinstance(request, dict) else None)
    return str(tenant) if tenant else None


def preflight(tenant: str, flow: str = "invoices") -> str | None:
    """check_before_writing, raising PreflightFailed on a problem. Returns why the run stops before reading
    anything when an API limit leaves no call for the check, else None."""
    checked = check_before_writing(tenant, flow)
    if checked.problems:
        raise PreflightFailed(tenant, checked.problems)
    return checked.stopped


@dataclass
class Routed:
    extract: AutotaskExtract
    # One report row per invoice this tenant cannot take: matching no tenant, or several.
    outcomes: list[Outcome] = field(default_factory=list)
    others: int = 0  # invoices that belong to other tenants


def rules_of(settings: TenantSettings | RoutingSettings | None) -> routing.TenantRules:
    """A tenant's routing rules; None (rules that cannot be read) claims everything."""
    if settings is None:
        return routing.TenantRules(unknown=True)
    r = settings.routing if isinstance(settings, TenantSettings) else settings
    return routing.TenantRules.of(
        companies=r.companies,
        business_units=r.business_units,
        invoice_templates=r.invoice_templates,
        udf_name=r.company_udf.name if r.company_udf else None,
        udf_values=r.company_udf.values if r.company_udf else (),
    )


@dataclass
class Peers:
    rules: dict[str, routing.TenantRules]
    notes: list[str] = field(default_factory=list)  # tenant files that could not be read, and what that means here


def peers_of(settings: TenantSettings) -> Peers:
    """Every tenant on the same Autotask account (this one included), with its rules.

    A tenant file that cannot be read still counts when it names this Autotask account: with its rules when
    they read, else as claiming everything, so what this tenant claims too is held back (reported as matching
    several tenants) rather than sent to a Xero organisation that may not be its own. A file whose Autotask
    account cannot be told is left out, and said in the run's log."""
    files = scan_tenants(isolated=False)
    mine = settings.autotask_connection
    rules = {t.name: rules_of(t) for t in files.tenants if t.autotask_connection == mine}
    notes = []
    for broken in files.broken:
        if broken.name == settings.name:
            continue
        if broken.autotask_connection == mine:
            rules[broken.name] = rules_of(broken.routing)
            notes.append(f"{broken.error} (this Autotask account's tenant {broken.name} counts with "
                         + ("the routing rules its file holds" if broken.routing is not None else
                            "every invoice: those this tenant claims too are held back until the file is fixed")
                         + ")")
        elif broken.autotask_connection is None:
            notes.append(f"{broken.error} (whether tenant {broken.name} shares this Autotask account cannot be "
                         "told, so its routing rules are not counted until the file is fixed)")
    rules[settings.name] = rules_of(settings)
    return Peers(rules=dict(sorted(rules.items())), notes=notes)


@task(name="route-invoices", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def route_invoices(ctx, extract: AutotaskExtract) -> Routed:
    settings, tenant = ctx.settings, ctx.tenant
    found = peers_of(settings)
    peers = found.rules
    logger = get_run_logger()
    for note in found.notes:
        logger.warning("routing: %s", note)
    if len(peers) == 1 and peers[tenant].empty:
        return Routed(extract=extract)
    units, udfs, calls = _routing_facts(settings, peers, extract)

    docs = routing.documents(
        extract.invoices, extract.lines, business_units=units, company_udfs=udfs,
        extra_records=[r.record for r in extract.invoices.attrs.get(_REJECTED_INVOICES, [])],
    )
    result = routing.route(docs, peers)
    mine = result.of(tenant)
    totals = dict(zip(extract.invoices["id"], extract.invoices["invoiceTotal"])) if len(extract.invoices) else {}
    outcomes = []
    for invoice_id in result.unrouted:
        outcomes.append(_report(invoice_id, result, totals, "not routed: matches no tenant",
                                "add the company, business unit, template or UDF value to one tenant's routing rules"))
    for invoice_id, claimants in result.conflicts.items():
        if tenant in claimants:
            outcomes.append(_report(invoice_id, result, totals, f"not routed: matches {', '.join(claimants)}",
                                    "make the tenants' routing rules exclusive, so one tenant claims it"))
    others = len(result.owner) - len(mine)
    logger.info("routing: %d invoices for %s, %d for other tenants, %d match no tenant, %d match several",
                len(mine), tenant, others, len(result.unrouted), len(result.conflicts))
    for o in outcomes:
        logger.warning("%s %s: %s (fix: %s)", o.source_number, o.action, o.reason, o.fix)
    if outcomes:
        create_table_artifact(
            key=routing_key(tenant),
            table=[{"Autotask number": o.source_number, "Autotask id": o.source_id, "Problem": o.action, "Fix": o.fix}
                   for o in outcomes],
            description=f"Invoices not routed to exactly one tenant (seen by {tenant})",
        )
    else:  # the current state, so that an earlier run's table does not look current
        create_markdown_artifact(
            key=routing_key(tenant),
            markdown=f"**None.** Every invoice {tenant} read was routed to exactly one tenant "
                     f"({len(mine)} to {tenant}, {others} to other tenants).",
            description=f"Invoices not routed to exactly one tenant (seen by {tenant}): none",
        )
    kept = keep_only(extract, mine)
    kept.api_calls += calls
    return Routed(extract=kept, outcomes=outcomes, others=others)


def keep_only(extract: AutotaskExtract, invoice_ids: set[int]) -> AutotaskExtract:
    """The extract narrowed to these invoices, including the records that failed validation."""
    def narrowed(frame: pd.DataFrame, mask, key: str, keep_record) -> pd.DataFrame:
        out = frame[mask].copy() if len(frame) else frame.copy()
        out.attrs = dict(frame.attrs)
        out.attrs[key] = [r for r in frame.attrs.get(key, []) if keep_record(r.record)]
        return out

    ids = {int(i) for i in invoice_ids}
    invoices = narrowed(extract.invoices, extract.invoices["id"].isin(ids) if len(extract.invoices) else None,
                        _REJECTED_INVOICES, lambda r: _int(r.get("id")) in ids)
    # A rejected record naming no invoice (or company) that can be read stays: it may be one of these
    # invoices', and the mapping names it in the reason of any invoice it leaves short.
    lines = narrowed(extract.lines, extract.lines["invoiceID"].isin(ids) if len(extract.lines) else None,
                     _REJECTED_LINES, lambda r: _int(r.get("invoiceID")) in ids | {None})
    company_ids = {int(c) for c in invoices["companyID"]} if len(invoices) else set()
    company_ids |= {_int(r.record.get("companyID")) for r in invoices.attrs.get(_REJECTED_INVOICES, [])}
    companies = narrowed(extract.companies, extract.companies["id"].isin(company_ids) if len(extract.companies) else None,
                         _REJECTED_COMPANIES, lambda r: _int(r.get("id")) in company_ids | {None})
    contacts = [c for c in extract.contacts if _int(c.get("companyID")) in company_ids]
    return replace(extract, invoices=invoices, lines=lines, companies=companies, contacts=contacts)


def _routing_facts(settings: TenantSettings, peers: dict[str, routing.TenantRules], extract: AutotaskExtract):
    """Business units and company UDFs, read only when some tenant routes by them (the frames omit them)."""
    want_units = any(r.business_units for r in peers.values()) and "organizationalLevelAssociationID" not in extract.lines.columns
    want_udfs = any(r.udf_name for r in peers.values())
    if not (want_units or want_udfs) or not len(extract.invoices):
        return {}, {}, 0
    units: dict[int, set[int]] = {}
    udfs: dict[int, dict[str, str]] = {}
    with autotask_client(settings) as at:
        if want_units:
            for item in at.query_in("BillingItems", "invoiceID", [int(i) for i in extract.invoices["id"]],
                                    include_fields=["invoiceID", "organizationalLevelAssociationID"]):
                invoice_id, unit = read_int(item.get("invoiceID")), read_int(item.get("organizationalLevelAssociationID"))
                if invoice_id is not None and unit is not None:  # a malformed item routes by nothing
                    units.setdefault(invoice_id, set()).add(unit)
        if want_udfs:
            company_ids = sorted({int(c) for c in extract.invoices["companyID"]})
            udfs = routing.udfs_by_company(at.query_in("Companies", "id", company_ids,
                                                       include_fields=["userDefinedFields"]))
        return units, udfs, at.calls


def _report(invoice_id: int, result: routing.Routing, totals: dict, detail: str, fix: str) -> Outcome:
    return Outcome(
        kind="invoice", source_id=str(invoice_id), source_number=result.numbers.get(invoice_id, str(invoice_id)),
        result=Result.SKIPPED, detail=detail, source_total=totals.get(invoice_id),
        reason="routing rules do not pick exactly one Xero organisation", fix=fix,
    )


def _int(value) -> int | None:
    return read_int(value)  # as the frames read ids: never int(inf), nor 1.5 as 1

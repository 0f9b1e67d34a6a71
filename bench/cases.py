"""The benchmark cases: each one function, measured against the sandbox, returning its figures.

A case returns a dict: `figures` (what it measured), `inputs` (what it ran on) and, where the issue sets
one, `floor` (the fewest calls the work needs) with `ratio` (figure / floor). Calls are counted twice:
at the simulators (the fault layer's `requests_by_api`, what the APIs saw) and as the run reports them
(`summary.autotask_calls` / `summary.xero_calls`); both are kept so a drift between them shows.
"""
from __future__ import annotations

import gc
import math
import os
import pstats
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

END = date(2026, 11, 24)
SINCE = END - timedelta(days=40)
XERO_API, AUTOTASK_API = "/api.xro/2.0", "/atservicesrest/v1.0"
# The reads that tell a run what the organisation allows (tasks/reference.py): "about 6 a run".
XERO_SETTINGS = ("organisation", "accounts", "taxrates", "trackingcategories", "brandingthemes", "currencies")
DOCUMENT_ENDPOINTS = ("invoices", "creditnotes", "purchaseorders", "payments")
# What a size means for each case; `small` is a quick check, `full` what `make bench` runs.
SIZES = {
    "small": {"core": 500, "calls": 200, "pdfs": 100, "rate_limits": 300, "overhead": {"sizes": (300,), "profiled": 300},
              "scaling": (500, 2_000),
              "bills": 40, "payments": 60, "sandbox": (1_000, 10_000)},
    # What `make bench` runs: 4 minutes on that machine (a 10,000-invoice sync among them), more under load.
    "full": {"core": 2_000, "calls": 1_000, "pdfs": 1_000, "rate_limits": 3_000,
             "overhead": {"sizes": (1_000, 10_000), "profiled": 1_000},
             "scaling": (1_000, 10_000), "bills": 200, "payments": 300, "sandbox": (1_000, 10_000, 50_000)},
    # The sizes for the scaling curve: syncs of 1,000, 10,000 and 50,000 invoices, the core up to
    # 50,000, and the profile of a 10,000-invoice sync; about 15 minutes more on that machine.
    "large": {"core": 2_000, "calls": 1_000, "pdfs": 1_000, "rate_limits": 3_000,
              "overhead": {"sizes": (1_000, 10_000, 50_000), "profiled": 10_000},
              "scaling": (1_000, 10_000, 50_000), "bills": 200, "payments": 300, "sandbox": (1_000, 10_000, 50_000)},
}
UNLIMITED_XERO = {"calls_per_minute": 6_000, "daily_call_budget": 10_000_000, "max_in_flight": 4}


def per_1000(value: float, of: int) -> float:
    return round(1000 * value / of, 1) if of else 0.0


def ratio(value: float, floor: float) -> float | None:
    return round(value / floor, 3) if floor else None


# ---- measuring at the simulators ---------------------------------------------------------------------
@dataclass
class Seen:
    """What both simulators saw between two moments: requests and bytes by API and by resource."""

    autotask: Counter
    xero: Counter
    xero_bytes: Counter
    autotask_resources: Counter
    xero_resources: Counter
    xero_resource_bytes: Counter

    @property
    def autotask_calls(self) -> int:
        return sum(self.autotask.values())

    @property
    def xero_calls(self) -> int:
        """Calls to the accounting API: what the organisation's limits count, and what the run counts."""
        return self.xero[XERO_API]

    @property
    def xero_identity_calls(self) -> int:
        """GET /connections and token refreshes: Xero's identity service, outside the organisation's limits."""
        return sum(self.xero.values()) - self.xero[XERO_API]

    def xero_on_documents(self) -> int:
        """Calls of any method on the document endpoints (attachments are under them too)."""
        return sum(n for key, n in self.xero_resources.items()
                   if key.split(" ", 1)[1] in {f"{XERO_API}/{d}" for d in DOCUMENT_ENDPOINTS})

    def xero_gets(self, *resources: str) -> int:
        return sum(self.xero_resources[f"GET {XERO_API}/{r}"] for r in resources)

    def xero_by_resource(self) -> dict[str, int]:
        return dict(sorted(self.xero_resources.items()))

    def autotask_by_resource(self) -> dict[str, int]:
        return dict(sorted(self.autotask_resources.items()))


class Meter:
    def __init__(self, stack):
        self.stack = stack
        self._before = self._now()

    def _now(self) -> tuple[Counter, ...]:
        at, xero = self.stack.autotask_faults, self.stack.xero.faults
        return tuple(Counter(c) for c in (at.requests_by_api, xero.requests_by_api, xero.bytes_by_api,
                                          at.requests_by_resource, xero.requests_by_resource, xero.bytes_by_resource))

    def seen(self) -> Seen:
        now = self._now()
        return Seen(*(after - before for after, before in zip(now, self._before)))


# ---- running flows against a sandbox -----------------------------------------------------------------
@contextmanager
def prefect_and_home():
    """A throwaway ATX_HOME and a Prefect test server, shared by every flow case of one bench run."""
    from prefect.testing.utilities import prefect_test_harness

    home = tempfile.mkdtemp(prefix="atx-bench-")
    os.environ["ATX_HOME"] = home
    os.environ["ATX_TENANTS_DIR"] = os.path.join(home, "tenants")
    with prefect_test_harness(server_startup_timeout=180):
        yield home


def own_tenants(case: str) -> None:
    """A tenants directory of the case's own: tenants of one Autotask account route invoices between them,
    and each case's sandbox is a separate MSP."""
    os.environ["ATX_TENANTS_DIR"] = os.path.join(os.environ["ATX_HOME"], f"tenants-{case}")


def limits_off(stack) -> None:
    from sandbox.xero.limits import XeroLimits

    stack.xero.limits = XeroLimits(per_minute=10**7, per_day=10**8, concurrent=5, app_per_minute=10**8)


def run_flow(flow, **params):
    state = flow(return_state=True, **params)
    summary = state.result() if state.is_completed() else None
    if summary is None or getattr(summary, "unrouted", None):
        raise SystemExit(f"a benchmark run did not complete cleanly: {state.message}")
    return summary


def invoices_run(tenant: str, since: date = SINCE):
    from flows.invoices import invoices

    return run_flow(invoices, tenant=tenant, since=since, until=END)


def billing_items(stack) -> int:
    live = {i["id"] for i in stack.autotask.records("Invoices") if not i.get("isVoided")}
    return sum(1 for b in stack.autotask.records("BillingItems") if b.get("invoiceID") in live)


def xero_floor(documents: int, new_contacts: int, settings_reads: int, attachments: int = 0) -> int:
    return math.ceil(documents / 50) + math.ceil(new_contacts / 50) + settings_reads + attachments


def autotask_split(seen: Seen) -> dict[str, int]:
    """Calls to the invoice and billing-item queries, the PDFs (GET Invoices/{id}/InvoicePDF), and the rest:
    reference data, field definitions, the zone and threshold lookups."""
    invoices = seen.autotask_resources[f"POST {AUTOTASK_API}/invoices"]
    items = seen.autotask_resources[f"POST {AUTOTASK_API}/billingitems"]
    pdfs = seen.autotask_resources[f"GET {AUTOTASK_API}/invoices"]
    return {"invoice_queries": invoices, "billing_item_queries": items, "pdf_reads": pdfs,
            "reference_reads": seen.autotask_calls - invoices - items - pdfs}


def _sync_figures(stack, summary, seen: Seen, *, attachments: int = 0) -> dict:
    documents = summary.count("created")
    contacts = len(stack.org.contacts)  # a new organisation: every contact in it is new
    live = [i for i in stack.autotask.records("Invoices") if not i.get("isVoided")]
    split = autotask_split(seen)
    settings_reads = seen.xero_gets(*XERO_SETTINGS)
    at_floor = (math.ceil(len(live) / 500) + math.ceil(billing_items(stack) / 500) + split["reference_reads"]
                + attachments)
    x_floor = xero_floor(documents, contacts, settings_reads, attachments)
    return {"documents_created": documents, "new_contacts": contacts, "set_aside": summary.set_aside_count,
            "autotask_calls_seen": seen.autotask_calls, "autotask_calls_reported": summary.autotask_calls,
            "autotask_floor": at_floor, "autotask_ratio": ratio(seen.autotask_calls, at_floor), **split,
            "xero_calls_seen": seen.xero_calls, "xero_calls_reported": summary.xero_calls,
            "xero_identity_calls_seen": seen.xero_identity_calls, "xero_settings_reads": settings_reads,
            "xero_floor": x_floor, "xero_ratio": ratio(seen.xero_calls, x_floor),
            "xero_bytes": sum(seen.xero_bytes.values()),
            "xero_by_resource": seen.xero_by_resource(), "autotask_by_resource": seen.autotask_by_resource()}


# ---- the cases ---------------------------------------------------------------------------------------
def case_calls(n: int) -> dict:
    """Autotask and Xero calls and Xero bytes of a first sync of `n` invoices (no PDFs) and of a rerun with
    nothing new; the naive extractor's calls worked out from the same counts."""
    from sandbox.stack import SandboxStack

    with SandboxStack(seed=3, invoices=n, window_end=END) as stack:
        limits_off(stack)
        stack.connect_tenant("calls", xero=UNLIMITED_XERO)
        live = sum(1 for i in stack.autotask.records("Invoices") if not i.get("isVoided"))
        items = billing_items(stack)
        meter = Meter(stack)
        started = time.perf_counter()
        first = invoices_run("calls")
        wall = time.perf_counter() - started
        first_seen = meter.seen()
        figures = _sync_figures(stack, first, first_seen)
        meter = Meter(stack)
        rerun = invoices_run("calls")
        rerun_seen = meter.seen()
    # Naive: the same invoice pages and reference reads, then one BillingItems query per invoice (analytic).
    naive = figures["invoice_queries"] + figures["reference_reads"] + live
    return {
        "inputs": {"invoices": live, "billing_items": items, "attachments": False, "limits": "off"},
        "figures": {
            **figures, "first_sync_seconds": round(wall, 1),
            "autotask_calls_per_1000": per_1000(first_seen.autotask_calls, live),
            "naive_autotask_calls (analytic)": naive, "ratio_to_naive": ratio(first_seen.autotask_calls, naive),
            "xero_calls_per_1000": per_1000(first_seen.xero_calls, live),
            "xero_bytes_per_1000_first_sync": per_1000(sum(first_seen.xero_bytes.values()), live),
            "rerun_xero_calls_seen": rerun_seen.xero_calls, "rerun_xero_calls_reported": rerun.xero_calls,
            "rerun_xero_calls_on_documents": rerun_seen.xero_on_documents(),
            "rerun_created": rerun.count("created"),
            "xero_bytes_per_1000_rerun": per_1000(sum(rerun_seen.xero_bytes.values()), live),
            "rerun_xero_by_resource": rerun_seen.xero_by_resource(),
            "rerun_xero_bytes_by_resource": dict(sorted(rerun_seen.xero_resource_bytes.items())),
            "first_xero_bytes_by_resource": dict(sorted(first_seen.xero_resource_bytes.items())),
        },
        "floor": {"autotask": figures["autotask_floor"], "xero": figures["xero_floor"], "rerun_documents": 0},
    }


def case_pdfs(n: int) -> dict:
    """Xero calls of a first sync of `n` invoices with their PDFs attached (one attachment call each)."""
    from sandbox.stack import SandboxStack

    with SandboxStack(seed=3, invoices=n, window_end=END) as stack:
        limits_off(stack)
        stack.connect_tenant("pdfs", attach_pdfs=True, xero=UNLIMITED_XERO)
        live = sum(1 for i in stack.autotask.records("Invoices") if not i.get("isVoided"))
        meter = Meter(stack)
        started = time.perf_counter()
        summary = invoices_run("pdfs")
        wall = time.perf_counter() - started
        seen = meter.seen()
        figures = _sync_figures(stack, summary, seen, attachments=summary.count("created"))
    return {"inputs": {"invoices": live, "attachments": True, "limits": "off"},
            "figures": {**figures, "first_sync_seconds": round(wall, 1),
                        "xero_calls_per_1000": per_1000(seen.xero_calls, live),
                        "autotask_calls_per_1000": per_1000(seen.autotask_calls, live),
                        "xero_bytes_per_1000": per_1000(sum(seen.xero_bytes.values()), live)},
            "floor": {"autotask": figures["autotask_floor"], "xero": figures["xero_floor"]}}


def _busiest_minute(moments: list[float]) -> int:
    moments, best, start = sorted(moments), 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= 60:
            start += 1
        best = max(best, end - start + 1)
    return best


def case_rate_limits(n: int, projected_for: int = 10_000) -> dict:
    """A sync of `n` invoices with Xero's real limits (60 a minute, 5 in flight, 5,000 a day) on a clock
    that moves only when the pacer waits: calls in the busiest minute, 429s, and the wall time projected;
    with the call limits kept in the ledger, then in Prefect's global concurrency limits on a Prefect server
    backed by PostgreSQL (as the workers of a deployment keep them)."""
    result = _rate_limits_run(n, projected_for, kept_in="ledger")
    postgres = os.environ.get("ATX_BENCH_POSTGRES_URL") or os.environ.get("ATX_TEST_POSTGRES_URL")
    if not postgres:
        result["kept_in_prefect"] = {"skipped": "set ATX_BENCH_POSTGRES_URL (or ATX_TEST_POSTGRES_URL) to measure "
                                                "the limits kept in Prefect, on a Prefect server in PostgreSQL"}
        return result
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with prefect_server_on_postgres(postgres) as api_url, temporary_settings({PREFECT_API_URL: api_url}):
            result["kept_in_prefect"] = _rate_limits_run(n, projected_for, kept_in="prefect")
    except NoPostgres as exc:
        result["kept_in_prefect"] = {"skipped": str(exc)}
    return result


class NoPostgres(Exception):
    """The PostgreSQL server named for the bench cannot be reached."""


@contextmanager
def prefect_server_on_postgres(server_url: str):
    """`prefect server start` on a database of its own on that PostgreSQL server, dropped at the end; yields
    its API URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from bench.scale import create_databases, drop_databases
    from sandbox.serving import free_port, prefect_server_process

    database = f"atx_bench_prefect_{os.getpid()}"
    try:
        create_databases(server_url, [database])
    except OperationalError as exc:
        raise NoPostgres(f"no PostgreSQL server at {make_url(server_url).render_as_string(hide_password=True)} "
                         f"({exc.orig.__class__.__name__}): the limits kept in Prefect were not measured") from None
    home = Path(tempfile.mkdtemp(prefix="atx-bench-prefect-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_API_DATABASE_CONNECTION_URL=make_url(server_url).set(
                   drivername="postgresql+asyncpg", database=database).render_as_string(hide_password=False))
    try:
        with prefect_server_process(env, free_port(), home / "server.log", timeout=180) as api_url:
            yield api_url
    finally:
        drop_databases(server_url, [database])


def _rate_limits_run(n: int, projected_for: int, *, kept_in: str) -> dict:
    from atx.connections import CALL_LIMITS_ENV, call_limits, use_clock
    from atx.settings import XeroSettings
    from sandbox.clock import ManualClock
    from sandbox.stack import SandboxStack

    clock = ManualClock(start=datetime.now(timezone.utc).replace(microsecond=0))
    before = os.environ.get(CALL_LIMITS_ENV)
    os.environ[CALL_LIMITS_ENV] = kept_in
    own_tenants(f"rate-limits-{kept_in}")  # each run's sandbox is another MSP
    with SandboxStack(seed=3, invoices=n, window_end=END, clock=clock) as stack, \
            use_clock(clock, sleep=clock.advance):
        # The day budget must hold the whole run: the call budget is the subject of another test.
        settings = stack.connect_tenant(f"limits-{kept_in}", xero={"daily_call_budget": 5_000})
        live = sum(1 for i in stack.autotask.records("Invoices") if not i.get("isVoided"))
        limiter, moments = stack.xero.limiter, []
        admit = limiter.admit

        def admit_and_note(client_id, tenant_id):
            admission = admit(client_id, tenant_id)
            if admission.admitted:
                moments.append(clock.monotonic())
            return admission

        limiter.admit = admit_and_note
        meter = Meter(stack)
        refused_before = sum(limiter.refused.values())
        started, wall_started = clock.monotonic(), time.perf_counter()
        try:
            summary = invoices_run(settings.name)
            limits = call_limits(settings)
        finally:
            os.environ.pop(CALL_LIMITS_ENV) if before is None else os.environ.update({CALL_LIMITS_ENV: before})
        elapsed, wall = clock.monotonic() - started, time.perf_counter() - wall_started
        refused = dict(limiter.refused)
        fixed = meter.seen().xero_gets(*XERO_SETTINGS)
        prefect_api_calls = getattr(limits, "api_calls", None)
    busiest = _busiest_minute(moments)
    # The settings reads are once a run; the rest grows with the invoices.
    calls_projected = fixed + (len(moments) - fixed) * projected_for / live if live else 0
    # The clock moves only while the pacer waits, so its minutes are the wait the limits impose with no
    # processing time at all; the real seconds are the processing with no waits. A run takes about the
    # larger of the two, since processing between calls counts towards the pacer's minute.
    pace = XeroSettings.model_fields["calls_per_minute"].default
    limit_bound = calls_projected / pace
    processing = wall / live * projected_for / 60 if live else 0
    return {"inputs": {"invoices": live, "limits": "Xero's real: 60/min, 5 in flight, 5,000/day",
                       "clock": "ManualClock (advances only while the pacer waits)", "pacer_calls_per_minute": pace,
                       "call_limits_kept_in": kept_in,
                       **({"prefect_api_calls_for_the_limits": prefect_api_calls} if prefect_api_calls else {})},
            "figures": {"xero_calls": len(moments), "xero_calls_reported": summary.xero_calls,
                        "busiest_minute_calls": busiest, "busiest_minute_share_of_60": round(busiest / 60, 3),
                        "429s_received": sum(refused.values()) - refused_before, "429s_by_problem": refused,
                        "simulated_minutes_waited": round(elapsed / 60, 2), "real_seconds": round(wall, 1),
                        f"projected_xero_calls_for_{projected_for}": round(calls_projected),
                        f"projected_minutes_for_{projected_for}_limit_bound": round(limit_bound, 1),
                        f"projected_minutes_for_{projected_for}_processing_here": round(processing, 1),
                        f"projected_minutes_for_{projected_for}": round(max(limit_bound, processing), 1)}}


# Where a profiled function's own time goes, by its file path (first match wins) or built-in's name.
BUCKETS = (
    ("prefect orchestration", ("/prefect/", "/anyio/", "/asyncio/", "/opentelemetry/", "/pydantic_settings/")),
    ("validation (pandera, pydantic)", ("/pandera/", "/pydantic/", "/pydantic_core/", "/typeguard/", "/typing_inspect")),
    ("mapping (core/, pandas, numpy)", ("/core/", "/pandas/", "/numpy/", "/yaml/")),
    ("hashing/serialising (json, hashlib, xero-python models)", ("/json/", "hashlib", "/xero_python/models/",
                                                                  "/xero_python/api_client/", "/dateutil/",
                                                                  "/email/", "/base64")),
    ("http (httpx, urllib3, sockets, xero-python transport)", ("/httpx/", "/httpcore/", "/h11/", "/urllib3/",
                                                              "/ssl.py", "/socket.py", "/http/", "/xero_python/",
                                                              "/certifi/", "/idna/")),
    ("ledger (sqlalchemy, sqlite)", ("/sqlalchemy/", "/ledger/", "sqlite3", "/alembic/")),
)
BUILTIN_BUCKETS = (
    ("http (httpx, urllib3, sockets, xero-python transport)", ("socket", "select", "ssl", "poll")),
    ("ledger (sqlalchemy, sqlite)", ("sqlite3",)),
    ("hashing/serialising (json, hashlib, xero-python models)", ("json", "hashlib", "_hashlib", "openssl", "sha256",
                                                                 "encode", "decode", "dumps", "loads")),
    ("waiting on locks and threads", ("acquire", "lock", "wait", "sleep")),
)


def bucket_of(file: str, function: str) -> str:
    if file == "~" or file.startswith("<"):
        for name, words in BUILTIN_BUCKETS:
            if any(w in function for w in words):
                return name
        return "other"
    path = file.replace("\\", "/")
    for name, parts in BUCKETS:
        if any(p in path for p in parts):
            return name
    return "other (our shell: tasks/, clients/, pipeline/, flows/)" if any(
        f"/{d}/" in path for d in ("tasks", "clients", "pipeline", "flows", "atx")) else "other"


def profile_shares(stats: pstats.Stats) -> tuple[dict[str, float], list[str]]:
    """Each bucket's share of the profiled thread's own time (tottime sums to the whole, cumtime does not),
    and the functions with the most own time, to see what a bucket holds."""
    totals: Counter[str] = Counter()
    for (file, _, function), (_, _, own, _, _) in stats.stats.items():
        totals[bucket_of(file, function)] += own
    whole = sum(totals.values()) or 1
    top = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:15]
    heaviest = [f"{own / whole:.1%} {_short(file)}:{line} {function}" for (file, line, function), (_, _, own, _, _) in top]
    return {name: round(own / whole, 3) for name, own in totals.most_common()}, heaviest


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", os.getcwd() + "/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# The volume: ten billing items an invoice (the generator alone makes about three).
LINES_PER_INVOICE = 10


def sync_in_own_process(tenant: str, *, profile: str | None = None) -> dict:
    """One first sync in a process of its own (bench/sync_process.py), as a worker runs it: its wall, CPU and
    peak memory are the sync's alone, without the simulators this process serves."""
    import json
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(),
           "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "bench.sync_process", "--tenant", tenant, "--since", SINCE.isoformat(),
               "--until", END.isoformat()] + (["--profile", profile] if profile else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the sync process failed: {done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if figures["state"] != "Completed" or figures["set_aside"]:
        raise SystemExit(f"a benchmark run did not complete cleanly: {figures['message']}")
    return figures


@contextmanager
def _volume_stack(n: int, tenant: str):
    """A running sandbox of `n` invoices for one tenant; its tenants directory is its own, since every stack's
    Autotask account has the same credentials and tenants of one account share its invoices."""
    from sandbox.stack import SandboxStack

    own_tenants(tenant)

    stack = SandboxStack(seed=3, invoices=n, window_end=END, lines_per_invoice=LINES_PER_INVOICE).start()
    limits_off(stack)
    stack.connect_tenant(tenant, xero=UNLIMITED_XERO)
    # The generated records live as long as the stack: out of the collector's sight, the simulators' time is
    # theirs, not spent rescanning millions of objects that never become garbage.
    gc.collect()
    gc.freeze()
    try:
        yield stack
    finally:
        stack.stop()
        gc.unfreeze()


def case_overhead(sizes: tuple[int, ...], profiled: int) -> dict:
    """First syncs of each size (ten billing items an invoice, limits off), each in a process of its own:
    wall, CPU, peak memory and the calls against their floors; then one more at `profiled` under cProfile
    (on the flow thread's CPU time) for where the time goes: Prefect, validation, mapping, serialising,
    HTTP, the ledger."""
    rows = []
    for n in sizes:
        tenant = f"overhead-{n}"
        with _volume_stack(n, tenant) as stack:
            live = sum(1 for i in stack.autotask.records("Invoices") if not i.get("isVoided"))
            items = billing_items(stack)
            meter = Meter(stack)
            run = sync_in_own_process(tenant)
            seen = meter.seen()
            split = autotask_split(seen)
            at_floor = math.ceil(live / 500) + math.ceil(items / 500) + split["reference_reads"]
            x_floor = xero_floor(run["created"], len(stack.org.contacts), seen.xero_gets(*XERO_SETTINGS))
        rows.append({"invoices": live, "billing_items": items, "created": run["created"],
                     "wall_seconds": run["wall_seconds"], "cpu_seconds": run["cpu_seconds_process"],
                     "cpu_ms_per_invoice": round(1000 * run["cpu_seconds_process"] / live, 2) if live else 0,
                     "peak_rss_mib": run["peak_rss_mib"],
                     "autotask_calls": seen.autotask_calls, "autotask_floor": at_floor,
                     "autotask_ratio": ratio(seen.autotask_calls, at_floor), **split,
                     "xero_calls": seen.xero_calls, "xero_floor": x_floor, "xero_ratio": ratio(seen.xero_calls, x_floor),
                     "xero_bytes_per_1000": per_1000(sum(seen.xero_bytes.values()), live)})
    tenant = f"overhead-profiled-{profiled}"
    with _volume_stack(profiled, tenant), tempfile.TemporaryDirectory() as folder:
        where = os.path.join(folder, "sync.prof")
        run = sync_in_own_process(tenant, profile=where)
        shares, heaviest = profile_shares(pstats.Stats(where))
        tasks = _task_runs_of_last_flow()
    return {"inputs": {"sizes": list(sizes), "billing_items_per_invoice": LINES_PER_INVOICE, "limits": "off",
                       "process": "the sync alone, in its own process (bench/sync_process.py)",
                       "profiled": f"{profiled} invoices, cProfile on the flow thread's CPU time (adds overhead)"},
            "figures": {"rows": rows, "profiled_wall_seconds": run["wall_seconds"],
                        "profiled_cpu_seconds_flow_thread": run["cpu_seconds_flow_thread"],
                        "prefect_task_runs": tasks, "shares_of_flow_thread_cpu": shares,
                        "heaviest_functions (own time)": heaviest}}


def _task_runs_of_last_flow() -> int | str:
    """Task runs of the newest flow run: a handful per batch, never one per document."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    async def count() -> int | None:
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
            if not runs:
                return None
            counted, page = 0, 200  # the server's largest page
            while True:
                found = await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])), limit=page, offset=counted)
                counted += len(found)
                if len(found) < page:
                    return counted

    try:
        return asyncio.run(count())
    except Exception as exc:  # noqa: BLE001 - a figure to show, not worth failing the bench for
        return f"not read: {type(exc).__name__}: {exc}"[:200]


def case_scaling(sizes: tuple[int, ...]) -> dict:
    """Per-invoice CPU of the functional core (frames, validation, mapping) at each size: flat = linear."""
    from bench.core import map_window

    rows = [map_window(n) for n in sizes]
    first = rows[0]["cpu_ms_per_invoice"] or 1
    for row in rows:
        row["relative_to_smallest"] = round(row["cpu_ms_per_invoice"] / first, 2)
    return {"inputs": {"sizes": list(sizes), "what": "core only: invoices_frame, lines_frame, plan_invoices"},
            "figures": {"rows": rows}}


def case_bills(n: int) -> dict:
    """Calls and bytes of a bills run (Autotask receivings into Xero ACCPAY bills) and a rerun."""
    from flows.bills import bills
    from sandbox.stack import SandboxStack

    since, until = date(2026, 10, 1), date(2026, 11, 30)
    with SandboxStack(seed=7, invoices=n, window_end=until) as stack:
        limits_off(stack)
        stack.connect_tenant("bills", xero=UNLIMITED_XERO)
        contacts_before = len(stack.org.contacts)
        meter = Meter(stack)
        first = run_flow(bills, tenant="bills", since=since, until=until)
        seen = meter.seen()
        new_contacts = len(stack.org.contacts) - contacts_before
        meter = Meter(stack)
        rerun = run_flow(bills, tenant="bills", since=since, until=until)
        again = meter.seen()
    documents = first.count("created")
    settings_reads = seen.xero_gets(*XERO_SETTINGS)
    floor = xero_floor(documents, new_contacts, settings_reads)
    return {"inputs": {"receivings_source_invoices_generated": n, "bills_created": documents, "limits": "off"},
            "figures": {"autotask_calls_seen": seen.autotask_calls, "autotask_calls_reported": first.autotask_calls,
                        "autotask_by_resource": seen.autotask_by_resource(),
                        "xero_calls_seen": seen.xero_calls, "xero_calls_reported": first.xero_calls,
                        "xero_calls_per_1000_bills": per_1000(seen.xero_calls, documents),
                        "xero_bytes_per_1000_bills": per_1000(sum(seen.xero_bytes.values()), documents),
                        "xero_floor": floor, "xero_ratio": ratio(seen.xero_calls, floor),
                        "xero_by_resource": seen.xero_by_resource(),
                        "rerun_created": rerun.count("created"), "rerun_xero_calls_seen": again.xero_calls,
                        "rerun_xero_calls_on_documents": again.xero_on_documents(),
                        "rerun_xero_by_resource": again.xero_by_resource(),
                        "rerun_xero_bytes": sum(again.xero_bytes.values())},
            "floor": {"xero": floor, "rerun_documents": 0}}


def case_payments(n: int) -> dict:
    """Calls of the payments flow's two directions over `n` approved invoices. Xero -> Autotask: half of them
    paid in Xero, each payment read and its paid date written back to Autotask (one PATCH per invoice:
    Autotask has no batch write). Autotask -> Xero: the other half marked paid in Autotask, each paid in
    Xero (a batch of 50 payments a call)."""
    import yaml

    from atx.connections import autotask_client, ledger_for, xero_gateway
    from core.documents import INVOICE, PaymentDraft
    from flows.invoices import invoices
    from flows.payments import payments
    from ledger import DocState
    from sandbox.stack import SandboxStack

    since, until = date(2026, 10, 1), date(2026, 11, 30)
    # Payments need approved invoices: the demo mapping, sending them AUTHORISED.
    mapping = Path(tempfile.mkdtemp(prefix="atx-bench-map-")) / "approved.yaml"
    data = yaml.safe_load(Path("mappings/demo.yaml").read_text())
    data["status"] = "AUTHORISED"
    mapping.write_text(yaml.safe_dump(data))
    with SandboxStack(seed=11, invoices=n, window_end=until) as stack:
        limits_off(stack)
        settings = stack.connect_tenant("payments", str(mapping), payments={"bank_account": "090", "to_xero": True},
                                        xero=UNLIMITED_XERO)
        run_flow(invoices, tenant="payments", since=since, until=until)
        synced = [r for r in ledger_for(settings).records("payments", INVOICE.name).values()
                  if r.state == DocState.SYNCED]
        rows, others = synced[::2], synced[1::2]
        gateway = xero_gateway(settings)
        for start in range(0, len(rows), 50):
            drafts = [PaymentDraft(invoice_id=r.target_id, amount=Decimal(r.target_total), date=date(2026, 11, 26),
                                   account_code="090", reference="bank feed") for r in rows[start:start + 50]]
            gateway.create_payments(drafts, idempotency_key=f"bench-pay-{start}")

        def run_twice(direction: str):
            """A payments run in one direction and a rerun with nothing new: its summary and both meters."""
            meter = Meter(stack)
            summary = run_flow(payments, tenant="payments", since=since, until=until, direction=direction)
            seen = meter.seen()
            meter = Meter(stack)
            run_flow(payments, tenant="payments", since=since, until=until, direction=direction)
            return summary, seen, meter.seen()

        summary, seen, again = run_twice("to_autotask")

        with autotask_client(settings) as at:
            written = at.update_invoices([{"id": int(r.source_id), "paidDate": date(2026, 11, 27)} for r in others])
        if not all(w.ok for w in written):
            raise SystemExit("the payments benchmark could not mark invoices paid in Autotask")
        to_xero, seen_to_xero, again_to_xero = run_twice("to_xero")
    paid, marked = len(rows), len(others)
    return {"inputs": {"invoices_synced_approved": n, "paid_in_xero": paid, "marked_paid_in_autotask": marked,
                       "directions": "Xero -> Autotask paid dates, then Autotask -> Xero payments"},
            "figures": {"paid_dates_written": summary.count("created") + summary.count("updated"),
                        "autotask_calls_seen": seen.autotask_calls, "autotask_calls_reported": summary.autotask_calls,
                        "autotask_by_resource": seen.autotask_by_resource(),
                        "xero_calls_seen": seen.xero_calls, "xero_calls_reported": summary.xero_calls,
                        "xero_by_resource": seen.xero_by_resource(),
                        "xero_calls_per_1000_payments": per_1000(seen.xero_calls, paid),
                        "autotask_calls_per_1000_payments": per_1000(seen.autotask_calls, paid),
                        "xero_bytes_per_1000_payments": per_1000(sum(seen.xero_bytes.values()), paid),
                        "rerun_xero_calls_seen": again.xero_calls, "rerun_autotask_calls_seen": again.autotask_calls,
                        "rerun_xero_bytes": sum(again.xero_bytes.values()),
                        "to_xero_payments_created": to_xero.count("created"),
                        "to_xero_xero_calls_seen": seen_to_xero.xero_calls,
                        "to_xero_xero_calls_reported": to_xero.xero_calls,
                        "to_xero_autotask_calls_seen": seen_to_xero.autotask_calls,
                        "to_xero_autotask_calls_reported": to_xero.autotask_calls,
                        "to_xero_xero_by_resource": seen_to_xero.xero_by_resource(),
                        "to_xero_xero_calls_per_1000_payments": per_1000(seen_to_xero.xero_calls, marked),
                        "to_xero_xero_bytes_per_1000_payments": per_1000(sum(seen_to_xero.xero_bytes.values()), marked),
                        "to_xero_rerun_xero_calls_seen": again_to_xero.xero_calls,
                        "to_xero_rerun_xero_by_resource": again_to_xero.xero_by_resource()}}


def case_core(n: int) -> dict:
    """The functional core alone maps `n` generated invoices (no HTTP, no Prefect)."""
    from bench.core import map_window

    row = map_window(n)
    if row["mapped"] == 0:
        raise SystemExit("the core benchmark mapped nothing: its Xero reference no longer fits mappings/demo.yaml")
    return {"inputs": {"invoices": n, "billing_items": row["billing_items"]}, "figures": row}


def case_sandbox(sizes: tuple[int, ...]) -> dict:
    from bench.sandbox import bench_sandbox

    result = bench_sandbox(list(sizes))
    return {"inputs": {"sizes": list(sizes)}, "figures": {"xero": result["xero"], "autotask": result["autotask"]}}

"""Scale-out on Prefect's own distributed setup: many tenants' invoices deployments on one process work pool,
run together by two workers, with the Prefect server and the ledger in PostgreSQL.

    python -m bench.scale                      # `make scale`: 20 tenants
    ATX_SCALE_TENANTS=6 python -m bench.scale  # fewer (tests/test_scale_out.py)

What it builds, all on this machine:
- two PostgreSQL databases of its own (ATX_SCALE_POSTGRES_URL, else ATX_TEST_POSTGRES_URL, names the server),
  dropped at the end: one for `prefect server start`, one for the ledger;
- the sandbox: one Autotask account shared by every tenant (an MSP with one PSA and several legal entities),
  its invoices split between the tenants by business unit (`routing.business_units`), and one Xero
  organisation per tenant; every Autotask request is held 50 ms, so the runs' requests overlap and Autotask's
  three threads per endpoint, which all tenants of one integration share, can really be exceeded;
- the ledger as a SqlAlchemyConnector block (`atx ledger block`) that every tenant file names;
- prefect.yaml from the tenant files (`atx deployments sync`), the work pool, `prefect deploy` of each
  tenant's invoices deployment, and two `prefect worker start --pool atx` processes.

Then every tenant's deployment is run at once, and once all runs are final it checks:
- every run Completed;
- every Autotask invoice of a tenant's business unit is in its own Xero organisation exactly once (an invoice
  or a credit note, with the same total), the ledger's synced row names that document, and no organisation
  holds a document the ledger does not name (none sent twice, none to the wrong organisation);
- the simulators refused nothing for a limit: Autotask's threads per endpoint and hourly threshold, Xero's
  minute, in-flight, day and app limits, kept together across the workers in Prefect's global concurrency
  limits (prefect.yaml's deployments set ATX_CALL_LIMITS=prefect), each of which exists in the Prefect server;
- the runs were spread over both workers (each run's log says which worker submitted it).
It prints a summary and exits 1 when a check fails. The databases and processes go away in every case;
with --keep the work directory (tenant files, prefect.yaml, each process's log) is kept and printed.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POOL = "atx"  # deployments.generate.WORK_POOL: the pool prefect.yaml names
LEDGER_BLOCK = "atx-scale-ledger"
WORKERS = ("scale-worker-a", "scale-worker-b")
INVOICES_PER_TENANT = 30
SUBMITTED = re.compile(r"Worker '([^']+)' submitting flow run '([0-9a-f-]+)'")


def tenant_names(count: int) -> list[str]:
    return [f"scale-{n:02d}" for n in range(1, count + 1)]


def unit_of(tenant_index: int) -> int:
    """The Autotask business unit (organizationalLevelAssociationID) whose invoices are the tenant's."""
    return 10 + tenant_index


def spread_over_units(invoice_ids: list[int], tenants: int) -> dict[int, int]:
    """Each invoice's business unit: the tenants take turns, so each gets about the same share."""
    return {invoice_id: unit_of(i % tenants) for i, invoice_id in enumerate(sorted(invoice_ids))}


@dataclass
class TenantResult:
    tenant: str
    expected: int = 0
    in_xero: int = 0
    set_aside: int = 0
    problems: list[str] = field(default_factory=list)


def check_tenant(tenant: str, expected: list[dict], org, rows: dict) -> TenantResult:
    """Every expected Autotask invoice in this organisation exactly once, as the ledger says; nothing else there.

    `rows`: the ledger's rows of the tenant (invoice and credit_note kinds) by Autotask invoice id."""
    from ledger.models import DocState

    result = TenantResult(tenant, expected=len(expected))
    invoices = [d for d in org.invoices.values() if d.get("Type") == "ACCREC" and d.get("Status") != "DELETED"]
    credits = [d for d in org.credit_notes.values() if d.get("Status") != "DELETED"]
    by_id = {d["InvoiceID"]: d for d in invoices} | {d["CreditNoteID"]: d for d in credits}
    result.in_xero = len(by_id)
    for number, n in Counter(d.get("InvoiceNumber") for d in invoices).items():
        if n > 1:
            result.problems.append(f"{number} is in Xero {n} times")
    for url, n in Counter(d.get("Url") for d in invoices + credits if d.get("Url")).items():
        if n > 1:
            result.problems.append(f"{n} Xero documents carry the Autotask link {url}")
    named = set()
    for inv in expected:
        row = rows.get(str(inv["id"]))
        if row is None:
            result.problems.append(f"{inv['invoiceNumber']} has no ledger row: it was never taken up")
            continue
        if row.state == DocState.SET_ASIDE:
            result.set_aside += 1
            if not (row.reason and row.fix):
                result.problems.append(f"{inv['invoiceNumber']} is set aside without a reason and a fix")
            continue
        if row.state != DocState.SYNCED:
            result.problems.append(f"{inv['invoiceNumber']} ended {row.state}, not synced")
            continue
        doc = by_id.get(row.target_id)
        if doc is None:
            result.problems.append(f"{inv['invoiceNumber']}: the ledger names {row.target_id}, not in this organisation")
            continue
        named.add(row.target_id)
        sign = -1 if "CreditNoteID" in doc else 1
        if sign * Decimal(str(doc["Total"])) != Decimal(str(inv["invoiceTotal"])):
            result.problems.append(f"{inv['invoiceNumber']}: Xero total {doc['Total']}, Autotask {inv['invoiceTotal']}")
    for extra in sorted(set(by_id) - named):
        doc = by_id[extra]
        result.problems.append(f"{doc.get('InvoiceNumber') or doc.get('CreditNoteNumber') or extra} is in Xero but no "
                               "expected invoice's ledger row names it (sent twice, or to the wrong organisation)")
    return result


def limits_kept_in_prefect(limits: dict[str, int], organisations: list[str]) -> list[str]:
    """Problems, if the runs did not keep their calls under Prefect's global concurrency limits (the deployments
    set ATX_CALL_LIMITS=prefect): each organisation's minute and in-flight limits, and Autotask's endpoints."""
    problems = [f"no Prefect global concurrency limit {name!r}" for tenant_id in organisations
                for name in (f"xero-{tenant_id}-calls", f"xero-{tenant_id}-in-flight") if name not in limits]
    autotask = {name: size for name, size in limits.items() if name.startswith("autotask-")}
    if not autotask:
        problems.append("no Prefect global concurrency limit for an Autotask endpoint")
    problems += [f"Prefect limit {name} holds {size} slots, not Autotask's 3" for name, size in autotask.items() if size != 3]
    return problems


def limit_refusals(stack) -> dict[str, int]:
    """What the simulators' own limits refused: every one is a 429 our shared pacing should have avoided."""
    return {
        "autotask threads per endpoint": stack.autotask.thread_rejections,
        "autotask hourly threshold": stack.autotask.rate_rejections,
        **{f"xero {problem}": n for problem, n in stack.xero.limiter.refused.items()},
    }


# ---- the imperative shell: databases, processes ---------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _admin_engine(server_url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    return create_engine(make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT")


def create_databases(server_url: str, names: list[str]) -> None:
    from sqlalchemy import text

    engine = _admin_engine(server_url)
    with engine.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


def drop_databases(server_url: str, names: list[str]) -> None:
    from sqlalchemy import text

    engine = _admin_engine(server_url)
    with engine.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


class Processes:
    """The subprocesses this run started, each with its log; stopped in reverse order, children included."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "w")
        # A session of its own: stopping it reaches the flow-run processes a worker started too.
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.started.append((name, proc))
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def check_alive(self) -> None:
        for name, proc in self.started:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} ended with exit code {proc.returncode}:\n{self.log(name)}")

    def stop(self) -> None:
        """Last started, first stopped, each before the next: a worker stopped after the server keeps calling
        it until it is killed (that was half a minute of every scale run)."""
        import signal

        for _, proc in reversed(self.started):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.started.clear()


def run_cli(args: list[str], env: dict, what: str, timeout: float = 600, input: str | None = None) -> str:
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=input)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def wait_for(what: str, probe, timeout: float, processes: Processes, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        processes.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _probe(fn):
    def probe():
        try:
            return fn()
        except Exception:
            return None
    return probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=int(os.environ.get("ATX_SCALE_TENANTS", "20")))
    parser.add_argument("--invoices-per-tenant", type=int, default=INVOICES_PER_TENANT)
    parser.add_argument("--worker-limit", type=int, default=int(os.environ.get("ATX_SCALE_WORKER_LIMIT", "4")),
                        help="flow runs each worker runs at once (prefect worker start --limit)")
    parser.add_argument("--postgres", default=os.environ.get("ATX_SCALE_POSTGRES_URL") or os.environ.get("ATX_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server as a SQLAlchemy URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("ATX_SCALE_TIMEOUT", "1200")),
                        help="seconds the runs may take together before the scale run fails")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, tenant files)")
    parser.add_argument("--summary", help="also write the summary as JSON to this file")
    args = parser.parse_args(argv)
    if not args.postgres:
        parser.error("name a PostgreSQL server: --postgres URL, or ATX_SCALE_POSTGRES_URL / ATX_TEST_POSTGRES_URL")
    if args.tenants < 2:
        parser.error("--tenants: at least 2, so the runs can spread over two workers")

    from sqlalchemy.engine import make_url

    server = make_url(args.postgres)
    suffix = f"{os.getpid()}"
    prefect_db, ledger_db = f"atx_scale_prefect_{suffix}", f"atx_scale_ledger_{suffix}"
    work = Path(tempfile.mkdtemp(prefix="atx-scale-"))
    (work / "logs").mkdir()
    processes = Processes(work / "logs")
    started = time.monotonic()
    timings: dict[str, float] = {}
    summary: dict = {"timings": timings}

    def lap(name: str, since: float) -> float:
        timings[name] = round(time.monotonic() - since, 1)
        return time.monotonic()

    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}/api"
    from cryptography.fernet import Fernet

    # This process is one more Prefect client (it makes the block and stores the tokens): its settings are
    # fixed before anything imports Prefect.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ATX_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        PREFECT_HOME=str(work / "prefect"), PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
        PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(api_port),
        PREFECT_LOGGING_LEVEL="INFO", PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="5",
        PREFECT_TASKS_REFRESH_CACHE="true",
        ATX_HOME=str(work / "atx"), ATX_TENANTS_DIR=str(work / "tenants"), ATX_PROJECT_DIR=str(ROOT),
        ATX_TOKEN_KEY=os.environ.get("ATX_TOKEN_KEY") or Fernet.generate_key().decode(),
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith(("PREFECT_", "ATX_"))})
    ok = False
    try:
        t = time.monotonic()
        create_databases(args.postgres, [prefect_db, ledger_db])
        prefect_url = server.set(drivername="postgresql+asyncpg", database=prefect_db).render_as_string(hide_password=False)
        processes.start("prefect-server", [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                           "--port", str(api_port)],
                        {**env, "PREFECT_API_DATABASE_CONNECTION_URL": prefect_url, "PREFECT_LOGGING_LEVEL": "WARNING"})
        import httpx

        wait_for("the Prefect server", _probe(lambda: httpx.get(f"{api_url}/health", timeout=5).status_code == 200),
                 300, processes)
        t = lap("prefect server on PostgreSQL up", t)

        ok = _scale(args, env, processes, work, server, ledger_db, timings, lap, t, summary)
    except Exception as exc:
        print(f"scale run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        stopping = time.monotonic()
        processes.stop()
        try:
            drop_databases(args.postgres, [prefect_db, ledger_db])
        except Exception as exc:
            print(f"could not drop {prefect_db}, {ledger_db}: {exc}", file=sys.stderr)
        lap("stopped, databases dropped", stopping)
        if args.keep or not ok:
            print(f"work directory kept: {work} (logs/ has each process's log)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"total {time.monotonic() - started:.0f} s; " + ", ".join(f"{k} {v} s" for k, v in timings.items()))
    print("RESULT: " + ("ok" if ok else "FAILED"))
    if args.summary:
        import json

        summary.update(ok=ok, total_seconds=round(time.monotonic() - started, 1))
        Path(args.summary).write_text(json.dumps(summary, indent=2, default=str))
    return 0 if ok else 1


def _scale(args, env, processes: Processes, work: Path, server, ledger_db: str, timings, lap, t, summary: dict) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.deployments import run_deployment

    from atx.connections import forget_clients, ledger_for
    from sandbox.stack import SandboxStack

    names = tenant_names(args.tenants)
    end = date.today()
    since, until = end - timedelta(days=35), end
    atx = [sys.executable, "-m", "atx.cli"]

    stack = SandboxStack(seed=11, invoices=args.tenants * args.invoices_per_tenant, window_end=end,
                         autotask_latency=0.05)
    with stack:
        # One Autotask account; each tenant's invoices are those of its own business unit.
        units = spread_over_units([i["id"] for i in stack.autotask.records("Invoices")], args.tenants)
        for item in stack.autotask.records("BillingItems"):
            stack.autotask.update("BillingItems", item["id"], {"organizationalLevelAssociationID": units[item["invoiceID"]]})
        orgs = [stack.org] + [stack.add_org(f"Entity {n:02d} Ltd", "NZ") for n in range(2, args.tenants + 1)]

        # The ledger in PostgreSQL, as a block every tenant names; then each tenant connected to its organisation.
        ledger = server.set(database=ledger_db)
        run_cli(atx + ["ledger", "block", LEDGER_BLOCK, "--driver", ledger.drivername, "--host", ledger.host or "127.0.0.1",
                       "--port", str(ledger.port or 5432), "--database", ledger_db, "--username", ledger.username or "postgres"],
                {**env, "ATX_LEDGER_PASSWORD": ledger.password or ""}, "atx ledger block", input="\n")
        secrets = {}
        for i, (name, org) in enumerate(zip(names, orgs)):
            stack.connect_tenant(name, org=org, routing={"business_units": [unit_of(i)]}, ledger_block=LEDGER_BLOCK,
                                 schedule={"cron": "0 6 * * 1-5", "timezone": "Pacific/Auckland", "active": False})
            secrets.update(stack.secret_env(name))
        env = {**env, **secrets}
        t = lap(f"sandbox and {len(names)} tenants connected", t)

        # prefect.yaml from the tenant files, the work pool, each tenant's invoices deployment.
        prefect_file = work / "prefect.yaml"
        run_cli(atx + ["deployments", "sync", "--file", str(prefect_file)], env, "atx deployments sync")
        run_cli([sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process"], env, "work-pool create")
        deploy = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(prefect_file)]
        for name in names:
            deploy += ["--name", f"invoices/{name}"]
        run_cli(deploy, env, "prefect deploy", timeout=900)
        t = lap(f"{len(names)} deployments made", t)

        for worker in WORKERS:
            processes.start(worker, [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL,
                                     "--name", worker, "--limit", str(args.worker_limit)], env)
        with get_client(sync_client=True) as client:
            wait_for("both workers polling the pool", _probe(
                lambda: {w.name for w in client.read_workers_for_work_pool(POOL)} >= set(WORKERS)), 300, processes)
            t = lap("two workers polling", t)

            runs = {name: run_deployment(f"invoices/{name}", timeout=0,
                                         parameters={"since": since.isoformat(), "until": until.isoformat()})
                    for name in names}

            def all_final():
                states = {name: client.read_flow_run(run.id) for name, run in runs.items()}
                return states if all(r.state and r.state.is_final() for r in states.values()) else None

            final = wait_for(f"{len(runs)} flow runs to finish", all_final, args.timeout, processes, every=3)
            t = lap(f"{len(runs)} runs, triggered together", t)

            by_worker: dict[str, str] = {}
            for name, run in final.items():
                for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=50,
                                            sort=LogSort.TIMESTAMP_ASC):
                    if (m := SUBMITTED.search(log.message)) and m.group(2) == str(run.id):
                        by_worker[name] = m.group(1)
                        break

            prefect_limits = {limit.name: limit.limit for limit in client.read_global_concurrency_limits(limit=200)}

        # The checks.
        problems: list[str] = []
        problems += limits_kept_in_prefect(prefect_limits, [org.tenant_id for org in orgs])
        for name, run in sorted(final.items()):
            if not run.state.is_completed():
                problems.append(f"{name}: run ended {run.state.name}: {run.state.message}")
        invoices = [i for i in stack.autotask.records("Invoices") if not i.get("isVoided")]
        results = []
        forget_clients()
        for i, (name, org) in enumerate(zip(names, orgs)):
            from atx.settings import load_tenant

            settings = load_tenant(name)
            store = ledger_for(settings)
            rows = store.records(name, "invoice")
            rows.update({k: r for k, r in store.records(name, "credit_note").items() if k not in rows or
                         rows[k].state.value == "set_aside"})
            mine = [inv for inv in invoices if units.get(inv["id"]) == unit_of(i)]
            results.append(result := check_tenant(name, mine, org, rows))
            problems += [f"{name}: {p}" for p in result.problems]
            if result.expected and not result.in_xero:
                problems.append(f"{name}: nothing reached its organisation")
        t = lap("checks", t)
        refusals = limit_refusals(stack)
        problems += [f"the simulators refused {n} calls for {what}" for what, n in refusals.items() if n]
        spread = Counter(by_worker.values())
        if set(spread) != set(WORKERS):
            problems.append(f"the runs did not spread over both workers: {dict(spread) or 'no worker named'}")
        missing = sorted(set(names) - set(by_worker))
        if missing:
            problems.append(f"no worker is named in the logs of the runs of {', '.join(missing)}")

        print(f"\n{len(names)} tenants, one Autotask account ({len(invoices)} live invoices), {len(orgs)} Xero organisations;"
              f" Prefect server and ledger in PostgreSQL; work pool {POOL!r}, workers {', '.join(WORKERS)} (--limit {args.worker_limit})")
        print(f"{'tenant':<10} {'worker':<16} {'state':<10} {'expected':>8} {'in Xero':>8} {'set aside':>9}")
        for r in results:
            run = final[r.tenant]
            print(f"{r.tenant:<10} {by_worker.get(r.tenant, '?'):<16} {run.state.name:<10} {r.expected:>8} {r.in_xero:>8} {r.set_aside:>9}")
        print(f"runs per worker: {dict(sorted(spread.items()))}")
        print(f"Autotask requests in flight at most, per endpoint: {dict(stack.autotask.max_in_flight)} (limit 3)")
        print("limit refusals: " + (", ".join(f"{k} {v}" for k, v in refusals.items()) or "none"))
        endpoints = {k: v for k, v in prefect_limits.items() if k.startswith("autotask-")}
        organisations = [k for k in prefect_limits if k.startswith("xero-")]
        print(f"Prefect global concurrency limits the runs kept their calls under: {len(organisations)} of Xero "
              f"organisations (minute and in flight), {len(endpoints)} of Autotask endpoints with "
              f"{sorted(set(endpoints.values()))} slots; besides, {len(prefect_limits) - len(organisations) - len(endpoints)} "
              "of the deployments (one run at a time)")
        summary.update(
            tenants={r.tenant: {"worker": by_worker.get(r.tenant), "state": final[r.tenant].state.name,
                                "tenant_id": org.tenant_id,
                                "expected": r.expected, "in_xero": r.in_xero, "set_aside": r.set_aside}
                     for r, org in zip(results, orgs)},
            runs_per_worker=dict(spread), max_in_flight=dict(stack.autotask.max_in_flight), refusals=refusals,
            prefect_limits=prefect_limits,
            problems=problems)
        if problems:
            print("\nPROBLEMS:\n" + "\n".join(f"- {p}" for p in problems))
            for worker in WORKERS:
                print(f"\n--- {worker} log (tail) ---\n{processes.log(worker)}")
        return not problems


if __name__ == "__main__":
    sys.exit(main())

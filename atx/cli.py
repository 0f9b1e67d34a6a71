"""`atx`: the command line for the Autotask → Xero sync."""
from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import date
from typing import Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup


class Refused(Exception):
    """An expected refusal, said in one line that says what to do; `code` is the exit code."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


USAGE = 2  # the exit code of a refused option or argument, as click gives for its own


class _OneLineErrors(TyperGroup):
    """Every error reaches a person as one line: what is wrong and what to do, never a traceback (`--debug`
    shows it). Prefect's own log lines on the terminal lose their tracebacks too; the Prefect API keeps them."""

    def invoke(self, ctx: click.Context):
        global _debug
        _debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:
            if _debug:
                raise
            message, code = said(exc)
            typer.secho(f"Error: {message}", err=True, fg="red")
            raise typer.Exit(code) from None
        finally:
            _quiet.remove()


_debug = False


def said(exc: Exception) -> tuple[str, int]:
    """(one line for a person, exit code) for an error; an unexpected one says how to see where it came from."""
    import httpx

    from atx.connect import ConnectError
    from atx.settings import SettingsError
    from core.mapping import MappingError
    from core.windows import WindowError

    text = " ".join(str(exc).split())  # one line, whatever the message held
    if isinstance(exc, (Refused, SettingsError, ConnectError, MappingError, WindowError)):
        return text, getattr(exc, "code", 1)
    if isinstance(exc, httpx.HTTPError):
        try:
            where = str(exc.request.url.copy_with(query=None, fragment=None))  # a query may name a user: left out
        except RuntimeError:  # an error raised without its request
            where = "a service"
        answer = getattr(exc, "response", None)
        what = f"answered {answer.status_code}" if answer is not None else f"did not answer ({type(exc).__name__})"
        return (f"{where} {what}: check that it is running and that its URL (the tenant file's, or PREFECT_API_URL "
                "for Prefect's) is right"), 1
    if isinstance(exc, OSError) and exc.strerror:
        detail = f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            return f"{detail}: another process listens on that port; stop it, or pass another port option", 1
        return detail, 1
    return (f"{type(exc).__name__}: {text or 'no message'}. That was not expected: run the command again with "
            "`atx --debug ...` to see where it came from, and report it"), 1


class _TracebackFreeConsole:
    """Formats the terminal's log lines without their tracebacks while a command runs flows: a flow that fails
    on an expected error (a tenant not connected) logs it with one, and that is for the Prefect UI (which gets
    it from the API's log handler, untouched), not for the terminal. `--debug` leaves them in."""

    def __init__(self):
        self.handlers = []

    def install(self) -> None:
        import logging

        if _debug:
            return
        for handler in logging.getLogger().handlers:  # Prefect's console handler, set up when prefect loaded
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))
                self.handlers.append(handler)

    def remove(self) -> None:
        for handler in self.handlers:
            if isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(handler.formatter.inner)
        self.handlers.clear()


_quiet = _TracebackFreeConsole()


class _WithoutTraceback:
    def __init__(self, inner):
        self.inner = inner

    def format(self, record) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        error = record.exc_info[1] if record.exc_info else None
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            text = self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        said = " ".join(str(error).split()) if error is not None else ""
        if said and said not in " ".join(text.split()):
            text += f" ({type(error).__name__}: {said})"
        return text

    def __getattr__(self, name):  # formatTime, datefmt, ... as the formatter it wraps
        return getattr(self.inner, name)


app = typer.Typer(help="Self-hosted Autotask PSA → Xero sync (Prefect flows).", no_args_is_help=True,
                  cls=_OneLineErrors, pretty_exceptions_show_locals=False)


@app.callback()
def _options(debug: bool = typer.Option(
        False, "--debug", envvar="ATX_DEBUG",
        help="Show the traceback of an error instead of its one-line message (also ATX_DEBUG=1).")) -> None:
    """Self-hosted Autotask PSA → Xero sync (Prefect flows)."""
sandbox_app = typer.Typer(help="Local simulators of the Autotask and Xero APIs.", no_args_is_help=True)
sync_app = typer.Typer(help="Run a sync flow once, now.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenant files (tenants/NAME.yaml): one Autotask account into one Xero organisation.", no_args_is_help=True)
connect_app = typer.Typer(help="Connect a tenant to Autotask or Xero; secrets go to Prefect Secret blocks.", no_args_is_help=True)
deployments_app = typer.Typer(help="Prefect deployments of every tenant's flows.", no_args_is_help=True)
ledger_app = typer.Typer(help="The ledger: its database connection, and the documents it holds.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Receive Xero webhooks as Prefect events.", no_args_is_help=True)
alerts_app = typer.Typer(help="Tell a person when a tenant's run fails or needs attention (Prefect automations).",
                         no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: every write sent to Xero and Autotask, per run.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(sync_app, name="sync")
app.add_typer(tenant_app, name="tenant")
app.add_typer(connect_app, name="connect")
app.add_typer(deployments_app, name="deployments")
app.add_typer(ledger_app, name="ledger")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(alerts_app, name="alerts")
app.add_typer(audit_app, name="audit")
# Piped output (CI logs, `make demo | tee`) gets a width that keeps the report tables readable.
console = Console(width=None if sys.stdout.isatty() else 150)


def _quiet_prefect() -> None:
    # No machine running this needs to phone home; an offline server would log a failure per start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@sandbox_app.command("serve")
def sandbox_serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    autotask_port: Optional[int] = typer.Option(
        None, envvar="ATX_SANDBOX_AUTOTASK_PORT", show_default="8081, or the port the saved sandbox had",
        help="Port of the Autotask simulator."),
    xero_port: Optional[int] = typer.Option(
        None, envvar="ATX_SANDBOX_XERO_PORT", show_default="8082, or the port the saved sandbox had",
        help="Port of the Xero simulator."),
    callback_port: int = typer.Option(
        8765, envvar="ATX_XERO_CALLBACK_PORT",
        help="Port of the redirect URIs the sandbox's Xero app registers for `atx connect xero` "
             "(http://localhost:PORT/callback and http://127.0.0.1:PORT/callback); give `atx connect xero --port` "
             "the same (both read ATX_XERO_CALLBACK_PORT)."),
    seed: Optional[int] = typer.Option(None, show_default="7", help="Seed of the generated MSP data (a new sandbox only)."),
    invoices: Optional[int] = typer.Option(None, show_default="40", help="How many invoices to generate (a new sandbox only)."),
    data: Optional[str] = typer.Option(None, help="Load Autotask entities from this JSON file instead (a new sandbox only)."),
    tenant: str = typer.Option("sandbox", help="Write a tenant file with this name pointing at the simulators."),
    autotask_faults: Optional[str] = typer.Option(
        None, help="Inject faults into the Autotask simulator, e.g. '503=0.05,timeout=0.01' (kinds: 429, 500, 503, timeout, drop, lost_response)."
    ),
    xero_faults: Optional[str] = typer.Option(None, help="Inject faults into the Xero simulator, e.g. '500=0.05,lost_response=0.02'."),
) -> None:
    """Run both simulators in the foreground until interrupted. The sandbox is kept in ATX_HOME/sandbox: a
    restart is the same sandbox (credentials, organisation, documents, tokens); `atx sandbox reset` starts anew."""
    import shlex

    from atx.settings import SettingsError
    from sandbox.faults import parse_fault_spec
    from sandbox.persist import StateError
    from sandbox.stack import XERO_CLIENT_ID, SandboxStack, callback_uris

    fault_seed = 7 if seed is None else seed
    try:
        faults = {"autotask_faults": parse_fault_spec(autotask_faults, seed=fault_seed),
                  "xero_faults": parse_fault_spec(xero_faults, seed=fault_seed)}
    except ValueError as exc:
        raise Refused(f"--autotask-faults/--xero-faults: {exc}", USAGE) from None
    state_dir = str(_sandbox_state_dir())
    try:
        stack = SandboxStack(seed=7 if seed is None else seed, invoices=40 if invoices is None else invoices,
                             data_file=data, host=host, autotask_port=autotask_port, xero_port=xero_port,
                             state_dir=state_dir, callback_port=callback_port, **faults)
    except StateError as exc:
        raise Refused(str(exc)) from None
    if stack.resumed:
        ignored = [name for name, given, kept in (("--seed", seed, stack.seed), ("--invoices", invoices, stack.invoices),
                                                  ("--data", data, stack.data_file)) if given is not None and given != kept]
        console.print(f"Resumed the sandbox saved in {escape(state_dir)} (made {stack.created_at:%Y-%m-%d %H:%M} UTC "
                      f"with seed {stack.seed}, {stack.invoices} invoices): the same credentials, organisation and "
                      "documents as before.")
        if ignored:
            console.print(f"[yellow]{', '.join(ignored)} only make a new sandbox: run `atx sandbox reset` first.[/]")
    else:
        console.print(f"A new sandbox (seed {stack.seed}, {stack.invoices} invoices), kept in {escape(state_dir)}: "
                      "restarted, it is the same sandbox; `atx sandbox reset` starts a new one.")
    stack.autotask_port = stack.autotask_port or 8081
    stack.xero_port = stack.xero_port or 8082
    for what, port, option in (("Autotask", stack.autotask_port, "--autotask-port"),
                               ("Xero", stack.xero_port, "--xero-port")):
        if not _port_free(host, port):
            raise Refused(f"port {port} on {host} is in use (another `atx sandbox serve`?), so the {what} simulator "
                          f"cannot listen there: stop what holds it, or give another port with {option}")
    with stack:
        console.print(f"Autotask simulator: [bold]{stack.autotask_url}[/]  (zone lookup; API user {stack.autotask.credentials.username})")
        console.print(f"Xero simulator:     [bold]{stack.xero_url}[/]  (organisation {stack.org.name}, tenantId {stack.org.tenant_id})")
        console.print(f"Xero app: client id {XERO_CLIENT_ID}; redirect URIs "
                      f"{', '.join(callback_uris(callback_port))} (for `atx connect xero`)")
        try:
            console.print(f"Tenant [bold]{tenant}[/]: {escape(stack.write_tenant(tenant))}.")
        except SettingsError as exc:
            console.print(f"[red]No tenant written: {escape(str(exc))}[/]")
        else:
            cred = stack.autotask.credentials
            lines = {**stack.secret_env(tenant), "ATX_AUTOTASK_USERNAME": cred.username,
                     "ATX_AUTOTASK_SECRET": cred.secret, "ATX_AUTOTASK_INTEGRATION_CODE": cred.integration_code}
            console.print("In the shell you sync from, paste these lines (the sandbox's own credentials: they stay "
                          "the same until `atx sandbox reset`):")
            # The only place the sandbox's secrets are shown; plain lines, never wrapped, so they paste whole.
            for name, value in lines.items():
                typer.echo(f"export {name}={shlex.quote(value)}")
            console.print("then connect the tenant and sync:")
            for step in ("atx connect autotask", "atx connect xero", "atx check", "atx sync invoices"):
                console.print(f"  {step} --tenant {tenant}")
        console.print("Press Ctrl+C to stop; the sandbox is saved after every change and at exit.")
        stop = threading.Event()
        # Both by hand: a shell that starts a command in the background, as scripts and test runners do,
        # leaves SIGINT ignored, and Python then never raises KeyboardInterrupt: Ctrl+C did nothing.
        for stopping in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stopping, lambda *_: stop.set())
        while not stop.wait(1):
            pass


@sandbox_app.command("reset")
def sandbox_reset() -> None:
    """Start over: delete the saved sandbox and the tenant files it wrote, with their ledger rows. Stop it first."""
    from sandbox.stack import reset

    try:
        done = reset(str(_sandbox_state_dir()))
    except RuntimeError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(1)
    for line in done:
        console.print(escape(line) + ".")
    console.print("The next `atx sandbox serve` starts a new sandbox." if done else "There was no saved sandbox.")


def _sandbox_state_dir():
    from atx.settings import atx_home

    return atx_home() / "sandbox"


def _sync_command(flow_name: str, what: str):
    def command(
        tenant: str = typer.Option(..., help="Tenant name (tenants/NAME.yaml)."),
        since: Optional[str] = typer.Option(None, help="First document date, YYYY-MM-DD (default: where the last run ended)."),
        until: Optional[str] = typer.Option(None, help="Last document date, YYYY-MM-DD (default: today)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Map and validate, publish the report, write nothing to Xero."),
    ) -> None:
        _quiet_prefect()
        first, last = _window(since, until)
        _tenant(tenant)  # refused here, before a Prefect run exists, rather than as a failed run
        summary = run_flow(flow_name, tenant, first, last, dry_run)
        if summary is None:
            raise typer.Exit(1)

    command.__doc__ = f"Run the {flow_name} flow once for a tenant: {what}."
    return command


def _flows() -> dict:
    from deployments.generate import FLOWS

    return FLOWS


for _name, (_path, _what) in _flows().items():
    sync_app.command(_name)(_sync_command(_name, _what))


def run_flow(flow_name: str, tenant: str, since: date | None, until: date | None, dry_run: bool, *, table: bool = True):
    import importlib

    from prefect import tags

    module, _, attr = _flows()[flow_name][0].partition(":")
    flow = getattr(importlib.import_module(module), attr)

    def work():
        with tags(f"tenant:{tenant}"):
            return flow(tenant=tenant, since=since, until=until, dry_run=dry_run, return_state=True)

    state = _with_progress_bar(f"{flow_name} for {tenant}", tenant, work)
    if not state.is_completed():
        console.print(f"[red]The run ended {state.name}:[/] {escape(state.message or '')}")
        return None
    summary = state.result()
    print_summary(summary, state.message, table=table, state_name=state.name)
    return summary


def run_invoices(tenant: str, since: date | None, until: date | None, dry_run: bool, *, table: bool = True):
    return run_flow("invoices", tenant, since, until, dry_run, table=table)


def _with_progress_bar(description: str, tenant: str, work, *, flow: str | None = None):
    """Run a flow in a thread and mirror its Prefect progress artifact in a terminal progress bar."""
    _quiet.install()  # the flow's module has loaded Prefect, and with it Prefect's console log handler
    if not console.is_terminal:
        return work()
    from datetime import datetime, timezone

    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn

    started = datetime.now(timezone.utc)
    outcome: dict = {}

    def target():
        try:
            outcome["state"] = work()
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task(description, total=100)
        while thread.is_alive():
            done = latest_progress(tenant, started, flow)
            if done is not None:
                bar.update(task, completed=done)
            thread.join(1.0)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["state"]


def latest_progress(tenant: str, since, flow: str | None = None) -> float | None:
    """Percent done of the tenant's newest flow run (of `flow`, when given) started after `since`, from its
    progress artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterStartTime,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[f"tenant:{tenant}"]), start_time=FlowRunFilterStartTime(after_=since)
                ),
                flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])) if flow else None,
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            if not runs:
                return None
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[runs[0].id]), type=ArtifactFilterType(any_=["progress"])
                )
            )
    except Exception:  # the bar is a courtesy; the run itself reports any real problem
        return None
    return float(artifacts[-1].data) if artifacts else None


def print_summary(summary, message: str | None = None, *, table: bool = True, state_name: str | None = None) -> None:
    # The run's state as the dashboard names it, when it is more than "Completed": "Needs attention", "Stopped early".
    said = f"{state_name}: {message or ''}" if state_name and state_name != "Completed" else message or ""
    last_line = f"[bold]{escape(said)}[/]  API calls: Autotask {summary.autotask_calls}, Xero {summary.xero_calls}."
    if not table:
        console.print(last_line)
        return
    title = f"{summary.flow.capitalize()} for {summary.tenant}, " + (
        f"only {', '.join(summary.only_ids)}" if summary.only_ids else f"{summary.since}..{summary.until}")
    grid = Table(title=title + (" (dry run)" if summary.dry_run else ""))
    for col in ("Autotask", "Xero", "Contact", "Currency", "Total", "Xero total", "Status", "Action"):
        grid.add_column(col, justify="right" if "otal" in col else "left")
    for o in summary.outcomes:
        grid.add_row(o.source_number, o.xero_number or "", o.contact, o.currency,
                     "" if o.source_total is None else f"{o.source_total:,.2f}",
                     "" if o.xero_total is None else f"{o.xero_total:,.2f}", o.status or "", o.action)
    console.print(grid)
    if summary.set_aside_count:
        aside = Table(title="Set aside (retried on the next run)")
        for col in ("Autotask", "Reason", "Fix"):
            aside.add_column(col)
        for o in summary.set_aside:
            aside.add_row(o.source_number, o.reason or "", o.fix or "")
        console.print(aside)
    attention = summary.attention
    if attention:
        people = Table(title="In Xero, needs a person")
        for col in ("Autotask", "Xero", "Status", "Problem", "What to do"):
            people.add_column(col)
        for o in attention:
            people.add_row(o.autotask_number, o.xero_number or "", o.status or "", o.reason or "", o.fix or "")
        console.print(people)
    console.print(last_line)


@app.command("demo")
def demo(
    invoices: int = typer.Option(40, help="How many invoices the sandbox generates."),
    seed: int = typer.Option(7, help="Seed of the generated data."),
) -> None:
    """Start the sandbox in-process, create a `demo` tenant on it, run the invoices and bills flows twice each,
    and summarise."""
    _quiet_prefect()
    home = os.environ.setdefault("ATX_HOME", os.path.abspath(".atx/demo"))
    os.environ.setdefault("ATX_TENANTS_DIR", os.path.join(home, "tenants"))
    _fresh_demo_ledger(home)
    from sandbox.stack import SandboxStack

    with SandboxStack(seed=seed, invoices=invoices) as stack:
        stack.connect_tenant("demo")
        console.print(f"Sandbox up: Autotask {stack.autotask_url}, Xero {stack.xero_url} ({stack.org.name}).")
        console.print("[bold]First run[/]: every generated invoice goes to Xero.")
        first = run_invoices("demo", None, None, False)
        console.print("[bold]Second run[/] over the same window: nothing new may be created.")
        second = run_invoices("demo", first.since if first else None, first.until if first else None, False, table=False)
        console.print("[bold]Bills[/]: Autotask receivings into Xero bills, then the same window again.")
        bills = run_flow("bills", "demo", None, None, False)
        bills_again = run_flow("bills", "demo", bills.since if bills else None, bills.until if bills else None, False,
                               table=False)
        held = list(stack.org.invoices.values())
        sales = sum(1 for i in held if i.get("Type") == "ACCREC")
        console.print(f"The Xero simulator now holds {sales} sales invoices and {len(held) - sales} bills.")
        if any(run is not None and run.count("created") for run in (second, bills_again)):
            console.print("[red]A second run created documents: that is a duplicate and a bug.[/]")
            raise typer.Exit(1)
    console.print(
        "See the runs, logs and report artifacts in the Prefect UI: run `prefect server start`, set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api before `atx demo`, and open http://127.0.0.1:4200."
    )


# ---- tenants ----------------------------------------------------------------------------------------
@tenant_app.command("add")
def tenant_add(
    name: str = typer.Argument(..., help="Lowercase letters, digits and dashes."),
    mapping: str = typer.Option("example", help="Mapping file name in mappings/ (or a path)."),
    cron: str = typer.Option("0 6 * * *", help="When the scheduled sync runs (cron, five fields)."),
    timezone: str = typer.Option("UTC", help="Time zone of the cron schedule, e.g. Pacific/Auckland."),
) -> None:
    """Scaffold tenants/NAME.yaml (no secrets in it), ready for `atx connect`. Everything is checked before the
    file is written, so a refused add leaves nothing behind."""
    from atx.settings import SettingsError
    from atx.tenants import TenantExists, scaffold

    try:
        path = scaffold(name, mapping=mapping, cron=cron, timezone=timezone)
    except TenantExists as exc:
        raise Refused(str(exc)) from None
    except SettingsError as exc:
        raise Refused(str(exc), USAGE) from None
    console.print(f"Wrote {path}. Next: `atx connect autotask --tenant {name}`, `atx connect xero --tenant {name}`, "
                  f"`atx check --tenant {name}`, then `atx deployments sync`.")


@tenant_app.command("list")
def tenant_list() -> None:
    """Each tenant, its connections, its schedule, and its next and last run (from the Prefect API when
    PREFECT_API_URL is set; "—" otherwise). A tenant file that cannot be used is listed below the table, with
    its line and fix, and the exit code is 1."""
    _quiet_prefect()
    from atx.tenants import overview

    listed = overview()
    grid = Table(title="Tenants")
    for col in ("Tenant", "Autotask [connection]", "Xero organisation [token]", "Schedule", "Next run", "Last run"):
        grid.add_column(col, overflow="fold")
    for r in listed.rows:
        grid.add_row(*(escape(v) for v in (r.name, r.autotask, r.xero, r.schedule, r.next_run, r.last_run)))
    console.print(grid)
    _report_broken(listed.broken)


def _report_broken(broken, *, fatal: bool = True) -> None:
    """Each tenant file that cannot be used, once, in one line with its line and fix (on stderr); then exit 1
    when `fatal`, after the other tenants were done."""
    for b in broken:
        typer.secho(f"Error: {' '.join(str(b.error).split())}", err=True, fg="red")
    if broken and fatal:
        raise typer.Exit(1)


# ---- backfill ----------------------------------------------------------------------------------------
@app.command("backfill")
def backfill_cmd(
    tenant: str = typer.Option(..., help="Tenant name (tenants/NAME.yaml)."),
    start: str = typer.Option(..., help="First day of the history, YYYY-MM-DD."),
    end: str = typer.Option(..., help="Last day of the history, YYYY-MM-DD."),
    types: list[str] = typer.Option(["invoices"], "--types", help="Documents: invoices, bills, payments (repeat for several)."),
    chunk_days: int = typer.Option(30, "--chunk-days", help="Days per chunk; each chunk is recorded when it finishes."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Estimate the calls and time only; write nothing."),
) -> None:
    """Sync a tenant's history chunk by chunk, oldest first; run it again to resume."""
    _quiet_prefect()
    from pydantic import ValidationError

    from flows.backfill import Backfill, backfill

    first, last = _window(start, end, names=("--start", "--end"))
    _tenant(tenant)
    try:
        request = Backfill(tenant=tenant, start=first, end=last, document_types=types,
                           chunk_days=chunk_days, dry_run=dry_run)
    except ValidationError as exc:
        raise Refused("; ".join(f"--{str(e['loc'][0]).replace('_', '-').replace('document-types', 'types')}: "
                                f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors()), USAGE) from None
    from prefect import tags

    def work():
        with tags(f"tenant:{tenant}"):
            return backfill(request=request, return_state=True)

    state = _with_progress_bar(f"backfill for {tenant}", tenant, work, flow="backfill")
    if not state.is_completed():
        console.print(f"[red]The backfill ended {state.name}:[/] {escape(state.message or '')}")
        raise typer.Exit(1)
    summary = state.result()
    e = summary.estimate
    console.print(f"Estimate: {e.documents} documents, about {e.autotask_calls} Autotask and {e.xero_calls} Xero calls"
                  f" over {e.xero_days} day(s) of the Xero budget.")
    if not dry_run:
        grid = Table(title=f"Backfill {summary.start}..{summary.end} for {tenant}")
        for col in ("Chunk", "Documents", "State", "Created", "Already", "Set aside", "Left"):
            grid.add_column(col)
        for c in summary.chunks:
            grid.add_row(c.window, c.document_type, c.state, str(c.created), str(c.already), str(c.set_aside), str(c.left))
        console.print(grid)
    console.print(f"[bold]{state.message}[/]")


# ---- reconcile ---------------------------------------------------------------------------------------
@app.command("reconcile")
def reconcile_cmd(
    tenant: str = typer.Option(..., help="Tenant name (tenants/NAME.yaml)."),
    since: Optional[str] = typer.Option(None, help="First document date, YYYY-MM-DD (default: first_sync_days before until)."),
    until: Optional[str] = typer.Option(None, help="Last document date, YYYY-MM-DD (default: today)."),
    kinds: Optional[str] = typer.Option(
        None, help="Comma-separated kinds: invoice, credit_note, bill, purchase_order, payment (default: those of the "
                   "tenant's flows)."),
    repair: bool = typer.Option(
        False, "--repair", help="Record the documents Xero holds and the ledger lacks, and send the missing ones again "
                                "through the sync. Never voids or deletes anything in Xero."),
) -> None:
    """Compare Autotask, the ledger and Xero for a window: each document missing, duplicated or different, with the fix.

    Exit code: 0 clean; 1 findings (with --repair: those left for a person); 2 it could not finish."""
    _quiet_prefect()
    from prefect import tags

    from flows.reconcile import check_kinds, reconcile

    try:
        chosen = check_kinds([k.strip() for k in kinds.split(",") if k.strip()]) if kinds else None
    except ValueError as exc:
        raise Refused(f"--kinds: {exc}", USAGE) from None
    first, last = _window(since, until)
    _tenant(tenant, code=2)  # 1 would read as "findings"

    def work():
        with tags(f"tenant:{tenant}"):
            return reconcile(tenant=tenant, since=first, until=last, kinds=chosen, repair=repair, return_state=True)

    state = _with_progress_bar(f"reconcile for {tenant}", tenant, work, flow="reconcile")
    if not state.is_completed():
        console.print(f"[red]The reconcile ended {state.name}:[/] {state.message}")
        raise typer.Exit(2)
    summary = state.result()
    print_reconcile(summary)
    if summary.stopped:
        raise typer.Exit(2)
    if not summary.clean:
        raise typer.Exit(1)


def print_reconcile(summary) -> None:
    from core.documents import KINDS

    if summary.checked:
        grid = Table(title=f"Reconcile for {summary.tenant}, {summary.since}..{summary.until}")
        columns = ["Problem", "Document", "Autotask", "What", "Expected", "Xero", "Fix"] + (
            ["Repair"] if summary.repair else [])
        for col in columns:
            grid.add_column(col, overflow="fold")  # ids folded, never cut: a person looks them up in Xero
        for c in summary.checked:
            f = c.finding
            row = [f.problem.value, KINDS[f.kind].noun, f.source_number, f.what, f.expected, f.found, f.fix]
            if summary.repair:
                row.append(("[green]" if c.repaired else "[yellow]") + (c.note or "by hand") + "[/]")
            grid.add_row(*row)
        console.print(grid)
    for run in summary.runs:
        console.print(f"Sync run: {run}")
    colour = "green" if summary.clean else "red"
    console.print(f"[bold {colour}]{summary.message}[/]  API calls: Autotask {summary.autotask_calls}, "
                  f"Xero {summary.xero_calls}.")


# ---- check -------------------------------------------------------------------------------------------
@app.command("check")
def check(tenant: Optional[str] = typer.Option(
        None, help="Tenant name (tenants/NAME.yaml); default: every tenant, each on its own.")) -> None:
    """Validate tenants against the live Autotask and Xero: credentials, mapping, routing. Exits 1 on errors."""
    _quiet_prefect()
    from atx.settings import scan_tenants

    if tenant:
        _tenant(tenant)
        names, broken = [tenant], []
    else:
        files = scan_tenants()
        names, broken = [t.name for t in files.tenants], files.broken
        if not names and not broken:
            raise Refused("there are no tenants: create one with `atx tenant add NAME`")
    failed = [name for name in names if not _check_one(name)]
    _report_broken(broken, fatal=False)
    if failed or broken:
        raise typer.Exit(1)


def _check_one(tenant: str) -> bool:
    """Print one tenant's problems; False when there is an error among them."""
    from atx.check import check_tenant
    from atx.connections import forget_clients

    problems = check_tenant(tenant)
    forget_clients(tenant)  # the daily call budget gets back the calls the check took and did not make
    if not problems:
        console.print(f"[green]{tenant}: no problems found.[/]")
        return True
    grid = Table(title=f"Problems for {tenant}")
    for col in ("", "Where", "Problem", "Fix"):
        grid.add_column(col, overflow="fold")  # a long path is folded onto the next line, never cut
    for p in problems:
        # Messages hold literal brackets (`share_with: [acme]`), which are not markup.
        grid.add_row("[red]error[/]" if p.severity == "error" else "[yellow]warning[/]", escape(p.area),
                     escape(p.problem), escape(p.fix))
    console.print(grid)
    return not any(p.severity == "error" for p in problems)


# ---- connect -----------------------------------------------------------------------------------------
@connect_app.command("autotask")
def connect_autotask_cmd(
    tenant: str = typer.Option(..., help="Tenant name."),
    zone_lookup_url: Optional[str] = typer.Option(None, help="Zone discovery URL (default: the tenant file's)."),
) -> None:
    """Ask for (or read ATX_AUTOTASK_USERNAME, ATX_AUTOTASK_SECRET, ATX_AUTOTASK_INTEGRATION_CODE) the API
    user's credentials, discover the zone, check them, and store the secret as a Prefect Secret block."""
    _quiet_prefect()
    from atx.connect import ConnectError, connect_autotask

    _tenant(tenant)  # before asking for anything
    username = os.environ.get("ATX_AUTOTASK_USERNAME") or typer.prompt("Autotask API username")
    secret = os.environ.get("ATX_AUTOTASK_SECRET") or typer.prompt("Autotask API secret", hide_input=True)
    code = os.environ.get("ATX_AUTOTASK_INTEGRATION_CODE") or typer.prompt("Autotask API integration code")
    try:
        settings, zone = connect_autotask(tenant, username=username, secret=secret, integration_code=code,
                                          zone_lookup_url=zone_lookup_url)
    except ConnectError as exc:
        raise Refused(str(exc)) from None
    console.print(f"Autotask connected for [bold]{tenant}[/]: zone {zone}; secret stored as {settings.autotask.secret}.")


@connect_app.command("xero")
def connect_xero_cmd(
    tenant: str = typer.Option(..., help="Tenant name."),
    client_id: Optional[str] = typer.Option(None, help="Your Xero app's client id (default: the tenant file's)."),
    org: Optional[str] = typer.Option(None, help="Organisation to use (name or tenantId) when several are granted."),
    port: int = typer.Option(8765, envvar="ATX_XERO_CALLBACK_PORT",
                             help="Loopback port of the redirect URI registered with your Xero app."),
    redirect_host: str = typer.Option("localhost", help="Host of the redirect URI (localhost or 127.0.0.1)."),
    scopes: str = typer.Option(None, help="Scopes to ask for (default: granular invoices, payments, contacts, settings, attachments)."),
    open_browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the consent page in a browser."),
    timeout: int = typer.Option(300, help="Seconds to wait for the consent."),
) -> None:
    """OAuth 2.0 code flow with PKCE: consent in the browser, callback on a loopback port, pick the organisation."""
    _quiet_prefect()
    from atx.connect import (DEFAULT_SCOPES, ConnectError, consent_url, pick_org, resolve_or_none,
                             save_xero_connection, store_secret, wait_for_callback)
    from atx.connections import xero_endpoints
    from clients.xero import XeroError, exchange_code, list_connections

    settings = _tenant(tenant)
    client_id = client_id or settings.xero.client_id
    ref = settings.xero.client_secret
    secret = resolve_or_none(ref)
    if secret is None:
        secret = os.environ.get("ATX_XERO_CLIENT_SECRET") or typer.prompt("Xero app client secret", hide_input=True)
        ref = store_secret(f"{tenant}-xero-client-secret", secret)
    endpoints = xero_endpoints(settings)
    consent = consent_url(endpoints.authorize_url, client_id, f"http://{redirect_host}:{port}/callback",
                          scopes or DEFAULT_SCOPES)
    console.print("Open this address, sign in to Xero and allow access:", soft_wrap=True)
    typer.echo(consent.url)
    if open_browser:
        import webbrowser

        webbrowser.open(consent.url)
    try:
        answer = wait_for_callback("127.0.0.1" if redirect_host == "localhost" else redirect_host, port, timeout,
                                   consent.state)
        if "code" not in answer:
            raise ConnectError(f"Xero did not grant access: {answer.get('error', 'no code')} {answer.get('error_description', '')}")
        token = exchange_code(endpoints, client_id=client_id, client_secret=secret, code=answer["code"],
                              redirect_uri=consent.redirect_uri, code_verifier=consent.verifier)
        granted = list_connections(endpoints, token["access_token"])

        def choose(orgs):
            for i, c in enumerate(orgs, 1):
                console.print(f"  {i}. {c.get('tenantName')} ({c.get('tenantId')})")
            return typer.prompt("Which organisation", type=int) - 1

        chosen = pick_org(granted, org, choose)
        save_xero_connection(settings, client_id=client_id, client_secret_ref=ref, org=chosen, token=token)
    except (ConnectError, XeroError) as exc:  # neither carries the secret, the code or a token
        raise Refused(str(exc)) from None
    console.print(f"Xero connected for [bold]{tenant}[/]: {chosen.get('tenantName')} ({chosen['tenantId']}).")


# ---- webhooks ------------------------------------------------------------------------------------------
@webhooks_app.command("serve")
def webhooks_serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (put a TLS proxy in front for Xero)."),
    port: int = typer.Option(8766, help="Port to listen on."),
    key: Optional[str] = typer.Option(
        None, "--key", help="Where the webhook key is: env:NAME or block:NAME (default env:ATX_XERO_WEBHOOK_KEY)."),
) -> None:
    """Receive Xero's signed webhooks on POST /webhooks/xero and emit one Prefect event per Xero event."""
    _quiet_prefect()
    import logging

    import uvicorn
    from prefect.events import emit_event

    from atx.settings import SettingsError, scan_tenants
    from atx.webhooks import PATH, create_app, resolve_key, tenants_by_organisation

    try:
        secret = resolve_key(key)
    except SettingsError as exc:
        raise Refused(str(exc)) from None
    files = scan_tenants()
    tenants = tenants_by_organisation(files.tenants)
    if files.broken:  # served without them: their organisations' events are dropped until the files are fixed
        _report_broken(files.broken, fatal=False)
    if not tenants:
        console.print("[yellow]No tenants: every event will be dropped (create one with `atx tenant add NAME`).[/]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"Receiving Xero webhooks on [bold]http://{host}:{port}{PATH}[/] for "
                  f"{len(tenants)} organisation(s): {', '.join(sorted(tenants.values())) or 'none'}.")
    uvicorn.run(create_app(secret, tenants, emit_event), host=host, port=port, log_level="warning",
                access_log=False)


# ---- deployments and serving -------------------------------------------------------------------------
@deployments_app.command("sync")
def deployments_sync(file: str = typer.Option("prefect.yaml", help="The prefect.yaml to rewrite.")) -> None:
    """Regenerate prefect.yaml's deployments from tenants/*.yaml (then run `prefect --no-prompt deploy --all`).
    A tenant file that cannot be used keeps the entries it had, is reported, and the exit code is 1."""
    from pathlib import Path

    from atx.settings import scan_tenants
    from deployments import kept_entries, prefect_yaml

    files = scan_tenants()
    broken = [b.name for b in files.broken]
    text = prefect_yaml(files.tenants, kept=kept_entries(Path(file), broken))
    with open(file, "w") as fh:
        fh.write(text)
    console.print(f"{file}: {len(files.tenants)} tenant(s): {', '.join(t.name for t in files.tenants) or 'none'}"
                  + (f"; kept as they were for {', '.join(broken)}" if broken else "")
                  + ". Next: `prefect --no-prompt deploy --all`.")
    _report_broken(files.broken)


@deployments_app.command("check")
def deployments_check(file: str = typer.Option("prefect.yaml", help="The prefect.yaml to compare.")) -> None:
    """Fail when prefect.yaml does not match the tenant files (or a tenant file cannot be used)."""
    from pathlib import Path

    from atx.settings import scan_tenants
    from deployments import stale_entries

    files = scan_tenants()
    stale = stale_entries(Path(file), files.tenants, ignore=[b.name for b in files.broken])
    if stale:
        typer.secho(f"Error: {file} is out of date for {', '.join(stale)}: run `atx deployments sync`", err=True,
                    fg="red")
    elif not files.broken:
        console.print(f"{file} matches the tenant files.")
    else:
        console.print(f"{file} matches the tenant files that can be used.")
    _report_broken(files.broken, fatal=False)
    if stale or files.broken:
        raise typer.Exit(1)


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a sandbox just stopped is free to listen on again.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@app.command("serve")
def serve(
    tenant: Optional[list[str]] = typer.Option(None, help="Serve only these tenants (default: every tenant)."),
    limit: Optional[int] = typer.Option(None, help="At most this many runs at once in this process."),
) -> None:
    """Serve every tenant's deployments from this process (schedules and on-demand runs), until interrupted.
    A tenant file that cannot be used is reported and left out; the others are served."""
    _quiet_prefect()
    from atx.settings import scan_tenants

    if tenant:
        tenants, broken = [_tenant(t) for t in tenant], []
    else:
        files = scan_tenants()
        tenants, broken = files.tenants, files.broken
    _report_broken(broken, fatal=False)
    if not tenants:
        raise Refused("no tenant to serve: " + ("fix the files above" if broken else "create one with `atx tenant add NAME`"))
    from prefect import serve as prefect_serve

    from deployments import runner_deployments

    prefect_serve(*runner_deployments(tenants), limit=limit)


# ---- alerts ------------------------------------------------------------------------------------------
@alerts_app.command("setup")
def alerts_setup(
    tenant: str = typer.Option(..., help="Tenant name (tenants/NAME.yaml)."),
    webhook: Optional[str] = typer.Option(
        None, envvar="ATX_ALERTS_WEBHOOK_URL", show_envvar=False,
        help="POST a JSON alert to this URL (also ATX_ALERTS_WEBHOOK_URL); its `text` suits Slack or Teams."),
    slack_webhook: Optional[str] = typer.Option(
        None, envvar="ATX_ALERTS_SLACK_WEBHOOK_URL", show_envvar=False,
        help="Send through a Slack Webhook block with this incoming-webhook URL (also ATX_ALERTS_SLACK_WEBHOOK_URL)."),
    block: Optional[str] = typer.Option(
        None, help="Send through an existing notification block, named TYPE/NAME (e.g. sendgrid-email/finance)."),
) -> None:
    """Create or replace the tenant's Prefect automation atx-alerts-NAME: one alert when a run ends Failed,
    Crashed, TimedOut, Unfinished or Needs attention, at most one an hour. The URL is kept in a block as a
    secret and never printed."""
    _quiet_prefect()
    from atx import alerts

    _tenant(tenant)
    chosen = [name for name, value in (("--webhook", webhook), ("--slack-webhook", slack_webhook), ("--block", block))
              if value]
    if len(chosen) != 1:
        raise Refused("pass exactly one of --webhook URL, --slack-webhook URL or --block TYPE/NAME"
                      + (f" (not {' and '.join(chosen)})" if chosen else ""), USAGE)
    for option, url in (("--webhook", webhook), ("--slack-webhook", slack_webhook)):
        if url and not url.startswith(("https://", "http://")):
            raise Refused(f"{option}: the URL must start with https:// (or http:// on a private network)", USAGE)
    ui_url = alerts.server_ui_url()
    if webhook:
        action = alerts.webhook_action(alerts.save_webhook_block(tenant, webhook), tenant, ui_url)
        via = f"the Webhook block {alerts.automation_name(tenant)}"
    elif slack_webhook:
        action = alerts.notification_action(alerts.save_slack_block(tenant, slack_webhook), tenant, ui_url)
        via = f"the Slack Webhook block {alerts.automation_name(tenant)}"
    else:
        action = alerts.notification_action(alerts.notification_block_id(block), tenant, ui_url)
        via = f"the block {block}"
    alerts.save_automation(alerts.automation_spec(tenant, action))
    console.print(f"Automation [bold]{alerts.automation_name(tenant)}[/]: a run of {tenant} that ends "
                  f"{', '.join(alerts.ALERT_STATES)} is sent through {via}, at most once an hour. "
                  "See it on the Prefect UI's Automations page.")


@alerts_app.command("list")
def alerts_list() -> None:
    """Every tenant's alert automation and the block it sends through."""
    _quiet_prefect()
    from rich.table import Table

    from atx import alerts

    alerts.server_ui_url()  # refuses without a Prefect server to ask
    found = alerts.list_alerts()
    if not found:
        console.print("No alerts: create one with `atx alerts setup --tenant NAME --webhook URL`.")
        return
    table = Table("tenant", "automation", "enabled", "sends through")
    for alert in found:
        table.add_row(alert.tenant, alerts.automation_name(alert.tenant), "yes" if alert.enabled else "no",
                      alert.notifies)
    console.print(table)


@alerts_app.command("remove")
def alerts_remove(tenant: str = typer.Option(..., help="Tenant name.")) -> None:
    """Delete the tenant's alert automation and the block `atx alerts setup` saved for it."""
    _quiet_prefect()
    from atx import alerts

    alerts.server_ui_url()  # refuses without a Prefect server to ask
    removed = alerts.remove_alerts(tenant)
    if not removed:
        raise Refused(f"tenant {tenant} has no alerts (`atx alerts list` shows which do)")
    console.print(f"Removed the automation {alerts.automation_name(tenant)}.")


# ---- the ledger's database ---------------------------------------------------------------------------
@ledger_app.command("block")
def ledger_block(
    name: str = typer.Argument(..., help="Name of the SqlAlchemyConnector block to create or replace."),
    driver: str = typer.Option("postgresql+psycopg", help="SQLAlchemy driver, e.g. postgresql+psycopg or sqlite+pysqlite."),
    host: Optional[str] = typer.Option(None), port: Optional[int] = typer.Option(None),
    database: str = typer.Option(..., help="Database name (or the file, for SQLite)."),
    username: Optional[str] = typer.Option(None),
    tenant: Optional[list[str]] = typer.Option(None, help="Point these tenants' ledger_block at it."),
) -> None:
    """Create the prefect-sqlalchemy block the ledger uses; the password (ATX_LEDGER_PASSWORD or a prompt) is a SecretStr."""
    _quiet_prefect()
    from atx.connections import save_ledger_block

    for name_ in tenant or []:
        _tenant(name_)
    password = None
    if username:
        password = os.environ.get("ATX_LEDGER_PASSWORD") or typer.prompt("Database password", hide_input=True, default="")
    save_ledger_block(name, driver=driver, host=host, port=port, database=database, username=username,
                      password=password or None, tenants=tenant or [])
    console.print(f"Saved SqlAlchemyConnector block {name!r}" + (f" for {', '.join(tenant)}" if tenant else "") + ".")


# ---- the ledger's documents --------------------------------------------------------------------------
# The kinds `atx ledger resend` and `skip` act on, with the flow that sends them.
LEDGER_KINDS = {"invoice": "invoices", "credit_note": "invoices", "bill": "bills", "purchase_order": "bills"}
# What a resend may end in for the command to succeed: the document is in Xero.
_RESENT = ("created", "recovered", "already in Xero", "updated in Xero")


def _ledger_tenant(name: str | None):
    """The tenant's settings; without --tenant, the only tenant there is. Refused naming the tenants."""
    from atx.settings import tenant_names

    names = sorted(tenant_names())
    if name is None:
        if len(names) != 1:
            raise Refused("pass --tenant NAME: " + (f"the tenants are {', '.join(names)}" if names else
                                                  "there are no tenants (create one with `atx tenant add NAME`)"), USAGE)
        name = names[0]
    elif name not in names:
        known = f"the tenants are {', '.join(names)}" if names else "there are no tenants"
        raise Refused(f"no tenant named {name!r}: {known} (tenants/NAME.yaml)", USAGE)
    return _tenant(name)


def _ledger_kind(kind: str, kinds=LEDGER_KINDS) -> str:
    if kind not in kinds:
        raise Refused(f"--kind {kind!r} is not a kind of document: the kinds are {', '.join(kinds)}", USAGE)
    return kind


def _ledger_row(settings, kind: str, source_id: str):
    from atx.connections import ledger_for

    ledger = ledger_for(settings)
    return ledger, ledger.records(settings.name, kind, [source_id]).get(source_id)


def ledger_table(rows, title: str) -> Table:
    """The rows as `atx ledger show` prints them (core.ledger_rows says what each one says)."""
    from core.ledger_rows import shown

    grid = Table(title=title)
    for col in ("Kind", "Autotask", "State", "Xero", "Reason", "Fix"):
        grid.add_column(col, overflow="fold")  # ids and numbers folded, never cut: a person looks them up
    for r in rows:
        s = shown(r)
        grid.add_row(*(escape(v) for v in (s.kind, s.source, s.state, s.xero, s.reason, s.fix)))
    return grid


@ledger_app.command("show")
def ledger_show(
    tenant: str = typer.Option(..., help="Tenant name (tenants/NAME.yaml)."),
    state: Optional[str] = typer.Option(
        None, help="Only documents in this state: set_aside, skipped, pending, sending, synced, voided, or "
                   "needs_a_person (in Xero, with a note for a person)."),
    kind: Optional[str] = typer.Option(
        None, help="Only this kind: invoice, credit_note, bill, purchase_order, payment, paid_date, write_back, contact."),
    limit: int = typer.Option(50, min=1, help="At most this many documents, the most recently changed first."),
) -> None:
    """The documents the ledger holds for a tenant: each one's state, its Xero number, and why it is not in Xero
    (or needs a person) with the fix."""
    from core.documents import KINDS
    from core.ledger_rows import NEEDS_A_PERSON, check_state

    settings = _ledger_tenant(tenant)
    try:
        wanted = check_state(state) if state else None
    except ValueError as exc:
        raise Refused(f"--state: {exc}", USAGE) from None
    kinds = [*KINDS, "contact"]
    if kind is not None and kind not in kinds:
        raise Refused(f"--kind {kind!r} is not a kind of document: the kinds are {', '.join(kinds)}", USAGE)
    from atx.connections import ledger_for

    rows = ledger_for(settings).documents(
        settings.name, states=[wanted] if wanted and wanted != NEEDS_A_PERSON else None,
        kinds=[kind] if kind else None, needs_a_person=wanted == NEEDS_A_PERSON, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    which = " ".join(x for x in ((wanted or "").replace("_", " "), KINDS[kind].noun if kind in KINDS else kind or "") if x)
    if not rows:
        console.print(f"The ledger holds no {which + ' ' if which else ''}documents for {settings.name}.")
        return
    console.print(ledger_table(rows, f"Ledger of {settings.name}" + (f": {which}" if which else "")))
    if more:
        console.print(f"Only the {limit} most recently changed are shown: pass --limit to see more.")


@ledger_app.command("resend")
def ledger_resend(
    source_id: str = typer.Argument(..., metavar="ID", help="The document's Autotask id, as `atx ledger show` lists it."),
    tenant: Optional[str] = typer.Option(None, help="Tenant name (default: the only tenant)."),
    kind: str = typer.Option("invoice", help="invoice, credit_note, bill or purchase_order."),
) -> None:
    """Sync one document now, through the same read, plan, claim and send as every run (a set-aside one whose
    mapping was fixed, or a skipped one: resend un-skips it). A document already in Xero is refused: it is never
    sent twice."""
    _quiet_prefect()
    import importlib

    from prefect import tags

    from core.documents import KINDS

    settings = _ledger_tenant(tenant)
    kind = _ledger_kind(kind)
    ledger, row = _ledger_row(settings, kind, source_id)
    noun = kind.replace("_", " ")
    if row is not None and row.state in ("synced", "voided"):
        where = f"as {row.target_number or row.target_id}" + (f" ({row.target_status})" if row.target_status else "")
        raise Refused(f"{noun} {source_id} is in Xero already {where}: resend never makes a second copy. A change made "
                      "in Autotask reaches Xero with the next sync while Xero's copy is a draft; otherwise correct it "
                      "in Xero")
    if row is not None and row.state == "sending":
        raise Refused(f"{noun} {source_id} is being sent by run {row.run_id}: if that run was killed, the next run looks "
                      "it up in Xero first; resend it after that if it is still not there")
    if row is not None and ledger.unskip(settings.name, kind, source_id):
        console.print(f"{noun.capitalize()} {source_id} is no longer skipped.")
    day = (row.document_date if row is not None else None) or date.today()
    flow_name = LEDGER_KINDS[kind]
    module, _, attr = _flows()[flow_name][0].partition(":")
    flow = getattr(importlib.import_module(module), attr)

    def work():
        with tags(f"tenant:{settings.name}"):
            return flow(tenant=settings.name, since=day, until=day, dry_run=False, only_ids=[source_id],
                        return_state=True)

    state = _with_progress_bar(f"resend {noun} {source_id} for {settings.name}", settings.name, work, flow=flow_name)
    if not state.is_completed():
        raise Refused(f"the {flow_name} run ended {state.name}: {state.message or ''}")
    summary = state.result()
    print_summary(summary, state.message, state_name=state.name)
    mine = [o for o in summary.outcomes if o.source_id == source_id]
    if not mine:
        raise Refused(f"the {flow_name} run found no document {source_id} to send: Autotask has no {noun} with that id "
                      f"for {settings.name}, or it is no longer planned under it (`atx ledger show --tenant "
                      f"{settings.name}` lists the ledger's)")
    for o in mine:
        said = f"{KINDS[o.kind].noun} {o.source_number or source_id}: {o.action}" + (
            f" as {o.xero_number}" if o.xero_number and o.result.value in _RESENT else "")
        if o.reason and o.result.value not in _RESENT:
            said += f": {o.reason}" + (f" (fix: {o.fix})" if o.fix else "")
        console.print(escape(said))
    if not any(o.result.value in _RESENT for o in mine):
        raise typer.Exit(1)


@ledger_app.command("skip")
def ledger_skip(
    source_id: str = typer.Argument(..., metavar="ID", help="The document's Autotask id, as `atx ledger show` lists it."),
    why: str = typer.Option(..., "--why", help="Why it must not reach Xero; every run reports it with this reason."),
    tenant: Optional[str] = typer.Option(None, help="Tenant name (default: the only tenant)."),
    kind: str = typer.Option("invoice", help="invoice, credit_note, bill or purchase_order."),
    by: Optional[str] = typer.Option(None, help="Who skips it (default: the user running the command)."),
) -> None:
    """Keep a document the ledger holds out of Xero for good: no run sends it, every run reports it skipped with
    the reason, and `atx ledger resend ID` takes it back. A document already in Xero is refused: void it there."""
    import getpass

    from core.ledger_rows import resend_command

    settings = _ledger_tenant(tenant)
    kind = _ledger_kind(kind)
    if not why.strip():
        raise Refused("--why must say why the document must not reach Xero", USAGE)
    ledger, row = _ledger_row(settings, kind, source_id)
    noun = kind.replace("_", " ")
    if row is None:
        raise Refused(f"the ledger holds no {noun} {source_id} for {settings.name}: only a document a run has read can "
                      f"be skipped (`atx ledger show --tenant {settings.name}` lists them; is it another --kind?)")
    if row.state == "synced":
        raise Refused(f"{noun} {source_id} is in Xero already as {row.target_number or row.target_id}: skipping cannot "
                      "take it out. Void it in Xero (and in Autotask, so the sync never sends it again)")
    if row.state == "voided":
        raise Refused(f"{noun} {source_id} was voided in Autotask and its Xero copy taken out: nothing is left to skip")
    if row.state == "sending":
        raise Refused(f"{noun} {source_id} is being sent now by run {row.run_id}: wait until that run ends, then look "
                      f"at it with `atx ledger show --tenant {settings.name}`")
    who = by or getpass.getuser()
    if not ledger.skip(settings.name, kind, source_id, reason=" ".join(why.split()), by=who, version=row.version):
        raise Refused(f"{noun} {source_id} changed while it was being skipped (a run is at it): run the command again")
    console.print(f"Skipped {noun} {row.source_number or source_id} for {settings.name}: no run sends it; each reports "
                  f"it skipped. `{resend_command(row)}` takes it back.")
# ---- audit -------------------------------------------------------------------------------------------
@audit_app.command("show")
def audit_show(
    run: str = typer.Option(..., help="The flow run's id (the run report's audit trail line, or the Prefect UI)."),
    tenant: Optional[str] = typer.Option(None, help="Tenant name: its ledger only (default: every tenant's ledger)."),
) -> None:
    """Every write the run sent to Xero and Autotask: time, API, method, path, status, and the ids or errors."""
    _quiet_prefect()
    entries = _audit_entries(run, tenant)
    if not entries:
        where = f"tenant {tenant}'s ledger" if tenant else "the ledger"
        raise Refused(f"{where} holds no write of run {run}: check the id (the run report's audit trail line "
                      "gives it), or the run is older than the tenant's audit_days")
    grid = Table(title=f"Writes of run {run}")
    for col in ("Time (UTC)", "Tenant", "API", "Method", "Path", "Status", "Ids / errors"):
        grid.add_column(col, overflow="fold")
    for e in entries:
        ok = e.status is not None and 200 <= e.status < 300
        status = "no answer" if e.status is None else str(e.status)
        grid.add_row(e.at.strftime("%Y-%m-%d %H:%M:%S"), escape(e.tenant), e.api, e.method, escape(e.path),
                     f"[{'green' if ok else 'red'}]{status}[/]", escape(e.outcome))
    console.print(grid)
    console.print(f"{len(entries)} write" + ("" if len(entries) == 1 else "s") + ".")


def _audit_entries(run: str, tenant: str | None) -> list:
    """The run's entries from the tenant's ledger, or from each ledger any tenant uses (each once)."""
    from atx.connections import ledger_for
    from atx.settings import scan_tenants

    if tenant:
        return ledger_for(_tenant(tenant)).audit.of_run(run, tenant)
    ledgers = {id(ledger): ledger for ledger in map(ledger_for, scan_tenants().tenants)}  # one per database
    found = [e for ledger in ledgers.values() for e in ledger.audit.of_run(run)]
    return sorted(found, key=lambda e: (e.at, e.id))


def _fresh_demo_ledger(home: str) -> None:
    # Each demo starts a fresh sandbox, so it starts a fresh ledger too.
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        path = os.path.join(home, name)
        if os.path.exists(path):
            os.remove(path)


def _date(text: str | None, option: str = "the date", code: int = USAGE) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Refused(f"{option} {text!r} is not a date: use YYYY-MM-DD, for example 2026-11-01", code) from None


def _window(since: str | None, until: str | None, *, names: tuple[str, str] = ("--since", "--until"),
            code: int = USAGE) -> tuple[date | None, date | None]:
    """The dates of a window, refused in one line when one is not a date or it starts after it ends."""
    first, last = _date(since, names[0], code), _date(until, names[1], code)
    end = last or date.today()
    if first is not None and first > end:
        said_end = f"{names[1]} {end}" if last else f"today ({end}, the default {names[1]})"
        raise Refused(f"{names[0]} {first} is after {said_end}: pass a {names[0]} on or before it", code)
    return first, last


def _tenant(name: str, code: int = 1):
    """The tenant's settings, or a one-line refusal before anything is started: an unknown tenant, a file that
    does not read (by line), or one naming another tenant's secrets."""
    from atx.settings import SettingsError, load_tenant

    try:
        return load_tenant(name)
    except SettingsError as exc:
        raise Refused(str(exc), code) from None


if __name__ == "__main__":
    app()

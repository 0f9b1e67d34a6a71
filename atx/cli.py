"""`atx`: the command line for the Autotask → Xero sync."""
from __future__ import annotations

import os
import signal
import threading
from datetime import date
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Self-hosted Autotask PSA → Xero sync (Prefect flows).", no_args_is_help=True)
sandbox_app = typer.Typer(help="Local simulators of the Autotask and Xero APIs.", no_args_is_help=True)
sync_app = typer.Typer(help="Run a sync flow once, now.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(sync_app, name="sync")
console = Console()


def _quiet_prefect() -> None:
    # No machine running this needs to phone home; an offline server would log a failure per start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


@sandbox_app.command("serve")
def sandbox_serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    autotask_port: int = typer.Option(8081, help="Port of the Autotask simulator."),
    xero_port: int = typer.Option(8082, help="Port of the Xero simulator."),
    seed: int = typer.Option(7, help="Seed of the generated MSP data."),
    invoices: int = typer.Option(40, help="How many invoices to generate."),
    data: Optional[str] = typer.Option(None, help="Load Autotask entities from this JSON file instead."),
    tenant: str = typer.Option("sandbox", help="Write a tenant file with this name pointing at the simulators."),
) -> None:
    """Run both simulators in the foreground until interrupted."""
    from sandbox.stack import SandboxStack

    stack = SandboxStack(seed=seed, invoices=invoices, data_file=data, host=host, autotask_port=autotask_port, xero_port=xero_port)
    with stack:
        stack.connect_tenant(tenant)
        console.print(f"Autotask simulator: [bold]{stack.autotask_url}[/]  (zone lookup; API user {stack.autotask.credentials.username})")
        console.print(f"Xero simulator:     [bold]{stack.xero_url}[/]  (organisation {stack.org.name}, tenantId {stack.org.tenant_id})")
        console.print(f"Tenant file written for [bold]{tenant}[/]. In another shell, export its secrets and sync:")
        for name in stack.secret_env(tenant):
            console.print(f"  export {name}=<printed to stderr>")
        for name, value in stack.secret_env(tenant).items():
            # Sandbox-only credentials, printed on stderr so they can be copied; never written to a file.
            typer.echo(f"{name}={value}", err=True)
        console.print(f"  atx sync invoices --tenant {tenant}")
        console.print("Press Ctrl+C to stop.")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


@sync_app.command("invoices")
def sync_invoices(
    tenant: str = typer.Option(..., help="Tenant name (tenants/NAME.yaml)."),
    since: Optional[str] = typer.Option(None, help="First invoice date, YYYY-MM-DD (default: where the last run ended)."),
    until: Optional[str] = typer.Option(None, help="Last invoice date, YYYY-MM-DD (default: today)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Map and validate, publish the report, write nothing to Xero."),
) -> None:
    """Run the invoices flow once for a tenant."""
    _quiet_prefect()
    summary = run_invoices(tenant, _date(since), _date(until), dry_run)
    if summary is None:
        raise typer.Exit(1)


def run_invoices(tenant: str, since: date | None, until: date | None, dry_run: bool, *, table: bool = True):
    from prefect import tags

    from flows.invoices import invoices

    with tags(f"tenant:{tenant}"):
        state = invoices(tenant=tenant, since=since, until=until, dry_run=dry_run, return_state=True)
    if not state.is_completed():
        console.print(f"[red]The run ended {state.name}:[/] {state.message}")
        return None
    summary = state.result()
    print_summary(summary, state.message, table=table)
    return summary


def print_summary(summary, message: str | None = None, *, table: bool = True) -> None:
    if not table:
        console.print(f"[bold]{message or ''}[/]  API calls: Autotask {summary.autotask_calls}, Xero {summary.xero_calls}.")
        return
    grid = Table(title=f"Invoices for {summary.tenant}, {summary.since}..{summary.until}" + (" (dry run)" if summary.dry_run else ""))
    for col in ("Autotask", "Xero", "Contact", "Currency", "Total", "Action"):
        grid.add_column(col, justify="right" if col == "Total" else "left")
    for o in summary.outcomes:
        grid.add_row(o.autotask_number, o.xero_number or "", o.contact, o.currency, f"{o.autotask_total:,.2f}", o.action)
    console.print(grid)
    if summary.set_aside_count:
        aside = Table(title="Set aside (retried on the next run)")
        for col in ("Autotask", "Reason", "Fix"):
            aside.add_column(col)
        for s in summary.set_aside:
            aside.add_row(s.autotask_number, s.reason, s.fix)
        for o in summary.outcomes:
            if o.action == "set aside":
                aside.add_row(o.autotask_number, o.reason or "", o.fix or "")
        console.print(aside)
    console.print(f"[bold]{message or ''}[/]  API calls: Autotask {summary.autotask_calls}, Xero {summary.xero_calls}.")


@app.command("demo")
def demo(
    invoices: int = typer.Option(40, help="How many invoices the sandbox generates."),
    seed: int = typer.Option(7, help="Seed of the generated data."),
) -> None:
    """Start the sandbox in-process, create a `demo` tenant on it, run the invoices flow twice, and summarise."""
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
        held = stack.org.invoices if hasattr(stack.org, "invoices") else {}
        console.print(f"The Xero simulator now holds {len(held)} invoices.")
        if second is not None and second.count("created"):
            console.print("[red]The second run created invoices: that is a duplicate and a bug.[/]")
            raise typer.Exit(1)
    console.print(
        "See the runs, logs and report artifacts in the Prefect UI: run `prefect server start`, set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api before `atx demo`, and open http://127.0.0.1:4200."
    )


def _fresh_demo_ledger(home: str) -> None:
    # Each demo starts a fresh sandbox, so it starts a fresh ledger too.
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        path = os.path.join(home, name)
        if os.path.exists(path):
            os.remove(path)


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date: use YYYY-MM-DD") from None


if __name__ == "__main__":
    app()

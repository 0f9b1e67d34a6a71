"""Benchmarks of the sync against the sandbox: calls, bytes, rate-limit use, overhead and scaling.

    python -m bench [--only NAME ...] [--size small|full|large]   (make bench; BENCH_SIZE=small make bench)

Each case (bench/cases.py) is measured against the simulators over HTTP and returns its figures, its
inputs and, where one applies, the floor and the ratio to it. Everything goes to .bench/results.json
with the machine it ran on, and the headline figures are printed as a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# name: (what it measures, needs a Prefect server)
CASES = {
    "core": ("the functional core maps a window of invoices", False),
    "calls": ("Autotask and Xero calls and Xero bytes per 1,000 invoices, first sync and rerun", True),
    "pdfs": ("Xero calls per 1,000 invoices with their PDFs attached", True),
    "rate_limits": ("a sync on Xero's real limits on a compressed clock", True),
    "overhead": ("syncs in their own process: wall, CPU, peak memory, calls; where the time goes (cProfile)", True),
    "scaling": ("per-invoice CPU of the core as the window grows", False),
    "bills": ("calls and bytes of the bills flow", True),
    "payments": ("calls and bytes of the payments flow", True),
    "sandbox": ("the simulators' per-call time as their stores grow", False),
}


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in load] if load else None,
            "cpu_calibration_seconds_at_start": calibration(),
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def calibration() -> float:
    """CPU seconds of a fixed pure-Python loop, the best of three: on a shared virtual machine the same work
    takes a quarter longer at some hours than at others, so runs are compared with this beside them."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        sum(i * i for i in range(5_000_000))
        best = min(best, time.process_time() - started)
    return round(best, 3)


def run_case(name: str, size: str) -> dict:
    from bench import cases

    n = cases.SIZES[size].get(name)
    function = getattr(cases, f"case_{name}")
    started = time.perf_counter()
    result = function() if n is None else function(**n) if isinstance(n, dict) else function(n)
    result["seconds_to_run"] = round(time.perf_counter() - started, 1)
    return result


def headline(name: str, result: dict) -> list[tuple[str, str, str, str]]:
    """(figure, value, floor, value / floor) rows for the printed table."""
    f = result["figures"]
    if name == "calls":
        return [("Autotask calls per 1,000 invoices", str(f["autotask_calls_per_1000"]), "", ""),
                ("Autotask calls (seen / reported)", f"{f['autotask_calls_seen']} / {f['autotask_calls_reported']}",
                 str(f["autotask_floor"]), str(f["autotask_ratio"])),
                ("Autotask calls vs naive (one lines query per invoice, analytic)",
                 str(f["naive_autotask_calls (analytic)"]), "", str(f["ratio_to_naive"])),
                ("Xero calls per 1,000 invoices, no attachments", str(f["xero_calls_per_1000"]), "", ""),
                ("Xero calls (seen / reported)", f"{f['xero_calls_seen']} / {f['xero_calls_reported']}",
                 str(f["xero_floor"]), str(f["xero_ratio"])),
                ("Xero bytes per 1,000 invoices, first sync", f"{f['xero_bytes_per_1000_first_sync']:,.0f}", "", ""),
                ("Xero bytes per 1,000 invoices, rerun with nothing new", f"{f['xero_bytes_per_1000_rerun']:,.0f}", "", ""),
                ("rerun: Xero calls on documents (all Xero calls)",
                 f"{f['rerun_xero_calls_on_documents']} ({f['rerun_xero_calls_seen']})", "0", ""),
                ("first sync seconds (limits off)", str(f["first_sync_seconds"]), "", "")]
    if name == "pdfs":
        return [("Xero calls per 1,000 invoices with PDFs", str(f["xero_calls_per_1000"]), "", ""),
                ("Xero calls with PDFs (seen / reported)", f"{f['xero_calls_seen']} / {f['xero_calls_reported']}",
                 str(f["xero_floor"]), str(f["xero_ratio"])),
                ("Autotask calls with PDFs (seen / reported)",
                 f"{f['autotask_calls_seen']} / {f['autotask_calls_reported']}", str(f["autotask_floor"]),
                 str(f["autotask_ratio"])),
                ("first sync seconds with PDFs", str(f["first_sync_seconds"]), "", "")]
    if name == "rate_limits":
        projected = next(k for k in f if k.startswith("projected_minutes") and k[-1].isdigit())
        rows = [("busiest minute: Xero calls (share of 60), limits in the ledger",
                 f"{f['busiest_minute_calls']} ({f['busiest_minute_share_of_60']:.0%})", "", ""),
                ("429s received", str(f["429s_received"]), "0", ""),
                ("minutes the pacer waited (simulated) / real seconds",
                 f"{f['simulated_minutes_waited']} / {f['real_seconds']}", "", ""),
                (projected.replace("_", " ") + " (larger of limit-bound and processing here)",
                 f"{f[projected]} ({f[projected + '_limit_bound']} / {f[projected + '_processing_here']})", "", "")]
        prefect = result.get("kept_in_prefect") or {}
        if "figures" in prefect:
            p = prefect["figures"]
            rows += [("busiest minute (share of 60) / 429s, limits in Prefect (server on PostgreSQL)",
                      f"{p['busiest_minute_calls']} ({p['busiest_minute_share_of_60']:.0%}) / {p['429s_received']}",
                      "", ""),
                     ("  real seconds; Prefect API calls the limits made",
                      f"{p['real_seconds']}; {prefect['inputs'].get('prefect_api_calls_for_the_limits')}", "", "")]
        elif prefect:
            rows.append(("limits in Prefect", prefect["skipped"], "", ""))
        return rows
    if name == "overhead":
        shares = ", ".join(f"{k.split(' (')[0]} {v:.0%}" for k, v in list(f["shares_of_flow_thread_cpu"].items())[:6])
        rows = []
        for r in f["rows"]:
            at = f"{r['invoices']:,} invoices, {r['billing_items']:,} billing items"
            rows += [(f"sync of {at}: wall s / CPU s / peak RSS MiB",
                      f"{r['wall_seconds']} / {r['cpu_seconds']} / {r['peak_rss_mib']}", "", ""),
                     (f"  CPU ms per invoice; Autotask and Xero calls at {r['invoices']:,}",
                      f"{r['cpu_ms_per_invoice']}; {r['autotask_calls']}, {r['xero_calls']}",
                      f"{r['autotask_floor']}, {r['xero_floor']}", f"{r['autotask_ratio']}, {r['xero_ratio']}")]
        return rows + [("Prefect task runs (profiled run)", str(f["prefect_task_runs"]), "", ""),
                       ("shares of the flow thread's CPU (profiled run)", shares, "", "")]
    if name == "scaling":
        return [(f"core CPU ms per invoice at {r['invoices']:,}", str(r["cpu_ms_per_invoice"]), "",
                 f"x{r['relative_to_smallest']}") for r in f["rows"]]
    if name == "bills":
        return [("bills: Xero calls per 1,000 bills", str(f["xero_calls_per_1000_bills"]), "", ""),
                ("bills: Xero calls (seen / reported)", f"{f['xero_calls_seen']} / {f['xero_calls_reported']}",
                 str(f["xero_floor"]), str(f["xero_ratio"])),
                ("bills: Autotask calls (seen / reported)",
                 f"{f['autotask_calls_seen']} / {f['autotask_calls_reported']}", "", ""),
                ("bills: rerun Xero calls on documents (all Xero calls)",
                 f"{f['rerun_xero_calls_on_documents']} ({f['rerun_xero_calls_seen']})", "0", "")]
    if name == "payments":
        return [("payments: Xero calls per 1,000 payments", str(f["xero_calls_per_1000_payments"]), "", ""),
                ("payments: Autotask calls per 1,000 payments", str(f["autotask_calls_per_1000_payments"]), "", ""),
                ("payments: calls seen / reported (Autotask, Xero)",
                 f"{f['autotask_calls_seen']}/{f['autotask_calls_reported']}, "
                 f"{f['xero_calls_seen']}/{f['xero_calls_reported']}", "", ""),
                ("payments to Xero: Xero calls per 1,000 payments", str(f["to_xero_xero_calls_per_1000_payments"]), "", ""),
                ("payments to Xero: calls seen / reported (Autotask, Xero)",
                 f"{f['to_xero_autotask_calls_seen']}/{f['to_xero_autotask_calls_reported']}, "
                 f"{f['to_xero_xero_calls_seen']}/{f['to_xero_xero_calls_reported']}", "", ""),
                ("payments to Xero: rerun Xero calls", str(f["to_xero_rerun_xero_calls_seen"]), "", "")]
    if name == "core":
        return [(f"core: ms per invoice ({f['invoices']:,})", str(round(1000 * f["seconds"] / f["invoices"], 3)), "", "")]
    if name == "sandbox":
        last = f["xero"][-1]
        return [(f"sandbox: Xero PUT 50 ms with {last['invoices']:,} stored", str(last["xero_put_50_ms"]), "", "")]
    return []


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    info = results["machine"]
    table = Table(title=f"atx benchmarks, size {results['size']}: {info['cpu_count']} CPUs, Python {info['python']}, "
                        f"load {info['load_average_at_start']}, CPU calibration "
                        f"{info['cpu_calibration_seconds_at_start']} s / {info.get('cpu_calibration_seconds_at_end')} s, "
                        f"{info['started_utc']}")
    for column in ("case", "figure", "value", "floor", "vs floor"):
        table.add_column(column, overflow="fold")
    for name, result in results["cases"].items():
        inputs = ", ".join(f"{k}={v}" for k, v in result.get("inputs", {}).items())
        for n, (figure, value, floor, vs) in enumerate(headline(name, result)):
            table.add_row(f"{name}\n[dim]{inputs}[/dim]" if n == 0 else "", figure, value, floor, vs)
        table.add_section()
    Console(width=max(140, Console().width)).print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), metavar="NAME",
                        help=f"run only these cases: {', '.join(CASES)}")
    parser.add_argument("--size", choices=("small", "full", "large"), default=os.environ.get("BENCH_SIZE") or "full",
                        help="small: a quick check; full (default): what make bench runs; large: 10,000 invoices "
                             "profiled and the core up to 50,000")
    parser.add_argument("--output", default=".bench/results.json", help="where the results are written")
    args = parser.parse_args(argv)
    if args.size not in ("small", "full", "large"):  # a default from BENCH_SIZE is not checked by argparse
        parser.error(f"BENCH_SIZE must be small, full or large, not {args.size!r}")
    chosen = args.only or list(CASES)
    results = {"size": args.size, "machine": machine(), "cases": {}}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> None:
        print(f"bench: {name}: {CASES[name][0]} ...", file=sys.stderr, flush=True)
        results["cases"][name] = run_case(name, args.size)
        output.write_text(json.dumps(results, indent=2, default=str))  # what finished survives a later failure

    plain = [n for n in chosen if not CASES[n][1]]
    flows = [n for n in chosen if CASES[n][1]]
    for name in plain:
        one(name)
    if flows:
        from bench.cases import own_tenants, prefect_and_home

        with prefect_and_home():
            for name in flows:
                own_tenants(name)
                one(name)
    results["machine"]["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["machine"]["cpu_calibration_seconds_at_end"] = calibration()
    output.write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    print(f"full figures: {output}", file=sys.stderr)


if __name__ == "__main__":
    main()

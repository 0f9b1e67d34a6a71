"""Smoke benchmarks of the invoice sync.

1. The functional core alone: frames and mapping for a window of generated invoices.
2. The whole invoices flow against the sandbox over HTTP (a real Prefect run).
3. The simulators alone: per-call time with 1k, 10k and 50k documents held (bench/sandbox.py; the
   sizes from ATX_BENCH_SANDBOX_SIZES, e.g. "1000,10000").

Prints a table and writes .bench/results.json so runs can be compared over time.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import tracemalloc
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

END = date(2026, 11, 24)


def bench_core(invoices: int) -> dict:
    from core.invoices import XeroReference, companies_frame, invoices_frame, lines_frame, plan_invoices
    from core.mapping import load_mapping
    from sandbox.autotask import generate_data

    data = generate_data(seed=3, invoices=invoices, start=END - timedelta(days=29), days=30)
    mapping = load_mapping(Path("mappings/demo.yaml"))
    xero = XeroReference(
        account_codes=frozenset({"200", "260"}),
        tax_types={"OUTPUT2": Decimal(15), "NONE": Decimal(0), "ZERORATED": Decimal(0), "EXEMPTOUTPUT": Decimal(0),
                   "TAX001": Decimal(10), "TAX002": Decimal(20)},
        currencies=frozenset({"NZD", "AUD", "GBP", "USD"}),
        base_currency="NZD",
        # What the demo organisation has (sandbox/xero/seed.py), so mappings/demo.yaml maps everything.
        tracking={"Department": frozenset({"Managed Services", "Projects", "Hardware"})},
        branding_themes={"Standard": "theme-standard", "Managed Services": "theme-managed"},
    )
    tracemalloc.start()
    t0 = time.perf_counter()
    inv, lines, comp = invoices_frame(data["Invoices"]), lines_frame(data["BillingItems"]), companies_frame(data["Companies"])
    plan = plan_invoices(inv, lines, comp, data, mapping, xero)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "name": f"core: map {invoices} invoices ({len(data['BillingItems'])} billing items)",
        "seconds": round(seconds, 3),
        "per_invoice_ms": round(1000 * seconds / invoices, 3),
        "peak_mib": round(peak / 2**20, 1),
        "mapped": int(plan.drafts["autotask_invoice_id"].nunique()) if len(plan.drafts) else 0,
        "set_aside": len(plan.set_aside),
    }


def bench_flow(invoices: int) -> dict:
    home = tempfile.mkdtemp(prefix="atx-bench-")
    os.environ["ATX_HOME"] = home
    os.environ["ATX_TENANTS_DIR"] = os.path.join(home, "tenants")
    from prefect.testing.utilities import prefect_test_harness

    from flows.invoices import invoices as invoices_flow
    from sandbox.stack import SandboxStack

    with prefect_test_harness(server_startup_timeout=120), SandboxStack(seed=3, invoices=invoices, window_end=END) as stack:
        stack.connect_tenant("bench")
        t0 = time.perf_counter()
        state = invoices_flow(tenant="bench", since=END - timedelta(days=40), until=END, return_state=True)
        seconds = time.perf_counter() - t0
        summary = state.result()
        return {
            "name": f"flow: {invoices} invoices into the Xero sandbox",
            "seconds": round(seconds, 2),
            "per_invoice_ms": round(1000 * seconds / invoices, 1),
            "created": summary.count("created"),
            "set_aside": summary.set_aside_count,
            "autotask_calls": summary.autotask_calls,
            "xero_calls": summary.xero_calls,
        }


def main() -> None:
    from bench.sandbox import SIZES, bench_sandbox, print_table

    results = [bench_core(2000), bench_flow(int(os.environ.get("ATX_BENCH_FLOW_INVOICES", "300")))]
    if results[0]["mapped"] == 0:
        raise SystemExit("the core benchmark mapped nothing: its Xero reference no longer fits mappings/demo.yaml")
    for r in results:
        print(" | ".join(f"{k}={v}" for k, v in r.items()))
    sizes = os.environ.get("ATX_BENCH_SANDBOX_SIZES") or ",".join(str(s) for s in SIZES)
    results.append(bench_sandbox([int(s) for s in sizes.split(",") if s.strip()]))
    print_table(results[-1])
    Path(".bench").mkdir(exist_ok=True)
    Path(".bench/results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

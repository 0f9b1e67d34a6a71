"""The functional core alone: frames, validation and mapping of a window of generated invoices."""
from __future__ import annotations

import time
import tracemalloc
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

END = date(2026, 11, 24)


def demo_reference():
    from core.invoices import XeroReference

    return XeroReference(
        account_codes=frozenset({"200", "260"}),
        tax_types={"OUTPUT2": Decimal(15), "NONE": Decimal(0), "ZERORATED": Decimal(0), "EXEMPTOUTPUT": Decimal(0),
                   "TAX001": Decimal(10), "TAX002": Decimal(20)},
        currencies=frozenset({"NZD", "AUD", "GBP", "USD"}),
        base_currency="NZD",
        # What the demo organisation has (sandbox/xero/seed.py), so mappings/demo.yaml maps everything.
        tracking={"Department": frozenset({"Managed Services", "Projects", "Hardware"})},
        branding_themes={"Standard": "theme-standard", "Managed Services": "theme-managed"},
    )


def map_window(invoices: int) -> dict:
    """Build the frames and plan `invoices` generated invoices: wall and CPU per invoice, peak traced memory."""
    from core.invoices import companies_frame, invoices_frame, lines_frame, plan_invoices
    from core.mapping import load_mapping
    from sandbox.autotask import generate_data

    data = generate_data(seed=3, invoices=invoices, start=END - timedelta(days=29), days=30)
    mapping = load_mapping(Path("mappings/demo.yaml"))
    xero = demo_reference()
    tracemalloc.start()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    inv, lines, comp = invoices_frame(data["Invoices"]), lines_frame(data["BillingItems"]), companies_frame(data["Companies"])
    plan = plan_invoices(inv, lines, comp, data, mapping, xero)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "invoices": invoices,
        "billing_items": len(data["BillingItems"]),
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_invoice": round(1000 * cpu / invoices, 3),
        "peak_traced_mib": round(peak / 2**20, 1),
        "mapped": int(plan.drafts["autotask_invoice_id"].nunique()) if len(plan.drafts) else 0,
        "set_aside": len(plan.set_aside),
    }

"""The fault soak, short: a few seeded cases of bench/soak.py, one per flow (invoices, bills, payments).

Each case syncs under random faults on both simulators, with `atx sync` processes killed at random points
or run two at once, then runs once more with the faults off and checks both simulators and the ledger:
every document as a fault-free run leaves it, each once in Xero, nothing `sending` or `pending`, every run
under faults completed (or stopped because another run held its documents), and `atx reconcile` clean.
`make soak` runs the long version (every fault kind, many seeds); a failure here prints its seed and the
command that replays exactly that case.
"""
from __future__ import annotations

import pytest

from bench.soak import FLOWS, plan_case, run_case

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("soak")]

# Consecutive seeds take the flows in turn (FLOWS[seed % 3]).
SEEDS = (24, 10, 35)


def test_the_short_seeds_cover_every_flow():
    assert {plan_case(seed, "short").flow for seed in SEEDS} == set(FLOWS)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_seeded_fault_case_ends_with_every_document_once_and_nothing_unresolved(seed, atx_home, prefect_server, tmp_path):
    case = plan_case(seed, "short")
    result = run_case(case, tmp_path / f"seed-{seed}")
    assert result.ok, result.report()

"""`python -m bench` runs a case end to end and writes its figures with the machine they were measured on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_small_core_case_writes_results_with_the_machine_and_prints_the_table(tmp_path):
    output = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "core", "--size", "small", "--output", str(output)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(output.read_text())
    assert results["size"] == "small"
    assert results["machine"]["cpu_count"] == os.cpu_count()
    assert set(results["cases"]) == {"core"}
    core = results["cases"]["core"]
    assert core["inputs"]["invoices"] == 500
    assert core["figures"]["mapped"] > 0 and core["figures"]["billing_items"] == core["inputs"]["billing_items"]
    assert "core: ms per invoice (500)" in done.stdout


def test_an_unknown_case_is_refused_with_the_names_to_choose_from():
    done = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 2
    assert "calls" in done.stderr and "rate_limits" in done.stderr

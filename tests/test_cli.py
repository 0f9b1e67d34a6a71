"""The `atx` command line, run as a user runs it: in a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from sandbox.serving import free_port


def _env(tmp_path) -> dict:
    env = dict(os.environ)
    env.update(
        ATX_HOME=str(tmp_path / "atx"),
        ATX_TENANTS_DIR=str(tmp_path / "tenants"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


def test_sandbox_serve_prints_urls_and_serves_both_apis(tmp_path):
    at_port, xero_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "atx.cli", "sandbox", "serve", "--autotask-port", str(at_port), "--xero-port", str(xero_port),
         "--invoices", "5", "--tenant", "local", "--autotask-faults", "503=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path),
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl+C" in line:
                break
        out = "".join(lines)
        assert f"http://127.0.0.1:{at_port}/atservicesrest" in out
        assert f"http://127.0.0.1:{xero_port}" in out
        # Every Autotask call fails with 503: the fault option reached the simulator.
        zone = httpx.get(f"http://127.0.0.1:{at_port}/atservicesrest/v1.0/zoneInformation", params={"user": "nobody@example.com"})
        assert zone.status_code == 503
        assert httpx.get(f"http://127.0.0.1:{xero_port}/connections").status_code == 401
        assert (tmp_path / "tenants" / "local.yaml").exists()
        # The tenant file names its secrets; it never holds them.
        text = (tmp_path / "tenants" / "local.yaml").read_text()
        assert "env:ATX_LOCAL_AUTOTASK_SECRET" in text and "env:ATX_LOCAL_XERO_CLIENT_SECRET" in text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_sandbox_serve_on_a_port_in_use_says_which_and_how_to_choose_another(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "atx.cli", "sandbox", "serve", "--autotask-port", str(free_port()),
                               "--xero-port", str(port)], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert done.returncode != 0
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr and "--xero-port" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "not expected" not in done.stderr


@pytest.mark.e2e
def test_demo_syncs_then_creates_nothing_on_rerun(tmp_path, prefect_server):
    from prefect.settings import PREFECT_API_URL

    env = _env(tmp_path)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()
    env.pop("ATX_TOKEN_KEY")  # as `make demo` runs: nothing configured, the token key is a Prefect Secret block
    result = subprocess.run(
        [sys.executable, "-m", "atx.cli", "demo", "--invoices", "12"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "First run" in result.stdout and "Second run" in result.stdout
    assert "already in Xero" in result.stdout
    assert "duplicate" not in result.stdout

"""Screenshots of what a run shows in the Prefect UI, taken in headless Chromium at a laptop's width.

    python -m bench.screenshots                  # `make screenshots`: writes docs/screenshots/*.png
    python -m bench.screenshots --width 1400 --out docs/screenshots --chromium /usr/bin/chromium

It starts a Prefect server of its own (a temporary PREFECT_HOME, a free port, the UI told to call that port),
the sandbox in this process, and one invoices run for a `demo` tenant whose mapping lacks the account of one
billing code: the run ends **Needs attention** with documents set aside, so the state name, the summary, the
invoice table, the set-aside table and the progress artifact all have something to show. Then headless
Chromium, driven over its DevTools protocol, captures the flow run page, its Artifacts tab, each artifact's
page and the Artifacts page, each once the text that shows it has rendered is there (the UI is a single-page
app). Nothing outside the temporary directory is touched, apart from the PNGs written to --out.

It is slow (a Prefect server, a real run, a browser) and needs Chromium, so `make test` does not run it.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml

from sandbox.serving import free_port, prefect_server_process

ROOT = Path(__file__).resolve().parent.parent
TENANT = "demo"
# The billing code whose account the run's mapping leaves out ("4400 Reimbursable Expenses"): its invoices
# are set aside with the fix, the others go to Xero.
UNMAPPED_GL_ACCOUNT = 5
NEEDS_ATTENTION = "Needs attention"


@contextmanager
def prefect_server(home: Path, port: int, timeout: float = 180):
    """A Prefect server of its own. The UI calls the API on PREFECT_SERVER_API_PORT (4200 unless set), so both
    it and PREFECT_UI_API_URL name this port, or the pages would show "Oops"."""
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_API_URL=api,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    env.pop("PREFECT_API_URL", None)
    with prefect_server_process(env, port, home / "server.log", timeout=timeout) as url:
        yield url


def _mapping_with_a_gap(work: Path) -> str:
    data = yaml.safe_load((ROOT / "mappings" / "demo.yaml").read_text())
    data["accounts"]["by_gl_account"].pop(UNMAPPED_GL_ACCOUNT)
    path = work / "demo-with-a-gap.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run_sync(work: Path, seed: int, invoices: int):
    """One invoices run that sets documents aside; returns its flow run id and its keyed artifacts."""
    from prefect import tags
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.invoices import invoices as invoices_flow
    from sandbox.stack import SandboxStack

    with SandboxStack(seed=seed, invoices=invoices) as stack:
        stack.connect_tenant(TENANT, mapping=_mapping_with_a_gap(work))
        until = stack.window_end
        with tags(f"tenant:{TENANT}"):
            state = invoices_flow(tenant=TENANT, since=until - timedelta(days=40), until=until, return_state=True)
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        shown = client.read_flow_run(run_id).state
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])),
                                      sort=ArtifactSort.CREATED_DESC)
    print(f"The run ended {shown.name!r}: {shown.message}")
    if shown.name != NEEDS_ATTENTION:
        raise SystemExit("the run was meant to end 'Needs attention' (documents set aside); nothing to show")
    artifacts: dict[str, str] = {}
    for a in found:
        if a.key:
            artifacts.setdefault(a.key, str(a.id))  # the newest under each key
    return str(run_id), artifacts


def chromium_binary(given: str | None) -> str:
    for name in ([given] if given else ["chromium", "chromium-browser", "google-chrome", "chrome"]):
        found = shutil.which(name) if name else None
        if found:
            return found
    raise SystemExit("no Chromium found: install it (Debian: apt-get install chromium) or pass --chromium PATH")


class Browser:
    """Headless Chromium driven over its DevTools protocol: a page is captured once the text that says it has
    rendered is there (the UI is a single-page app that fetches from the API), and a tab can be clicked."""

    def __init__(self, chromium: str, profile: Path, width: int, height: int, timeout: float = 60):
        self.width, self.height, self.timeout = width, height, timeout
        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{chromium} did not start its DevTools endpoint")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        from websockets.sync.client import connect

        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=timeout)
        self.calls = 0
        self.window(height)

    def send(self, method: str, **params) -> dict:
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            message = json.loads(self.socket.recv(timeout=self.timeout))
            if message.get("id") == self.calls:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def window(self, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(f"!!document.body && document.body.innerText.includes({json.dumps(text)})"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the page never showed {text!r}")
            time.sleep(0.3)
        time.sleep(1.5)  # the text is there; let tables, charts and fonts settle before the picture

    def click(self, label: str) -> None:
        found = self.evaluate(
            "(() => { const el = [...document.querySelectorAll('button, a, [role=tab], li, span')]"
            f".find(e => e.textContent.trim() === {json.dumps(label)});"
            " if (el) { el.click(); return true; } return false; })()")
        if not found:
            raise SystemExit(f"nothing to click labelled {label!r}")

    def capture(self, page: "Page", path: Path) -> None:
        self.window(page.height or self.height)
        self.send("Page.navigate", url=page.url)
        self.wait_for(page.shows)
        if page.click:
            self.click(page.click)
            self.wait_for(page.then_shows)
        shot = self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"{path} <- {page.url}")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # it is closing either way
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Page:
    file: str
    url: str
    shows: str                 # text on the page once it has rendered
    click: str | None = None   # a tab to open, then wait until it shows then_shows
    then_shows: str = ""
    height: int | None = None  # a taller window for a long table, so that all its rows are in the picture


def pages(ui: str, run_id: str, artifacts: dict[str, str], state: str) -> list[Page]:
    """Each page worth a picture, the run first."""
    key = f"invoices-{TENANT}"
    shots = [Page("flow-run.png", f"{ui}/runs/flow-run/{run_id}", state),
             Page("flow-run-artifacts.png", f"{ui}/runs/flow-run/{run_id}", state, click="Artifacts",
                  then_shows=f"{key}-set-aside")]
    for suffix, name, shows, height in (("-summary", "summary", f"Invoices for {TENANT}", 1700),
                                        ("", "invoice-table", "Autotask number", 1700),
                                        ("-set-aside", "set-aside", "Fix", None),
                                        ("-progress", "progress", "documents done", None)):
        if f"{key}{suffix}" in artifacts:
            shots.append(Page(f"artifact-{name}.png", f"{ui}/artifacts/artifact/{artifacts[key + suffix]}", shows,
                              height=height))
    shots.append(Page("artifacts.png", f"{ui}/artifacts", f"{key}-summary"))
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where the PNGs go")
    parser.add_argument("--width", type=int, default=1400, help="window width in pixels")
    parser.add_argument("--height", type=int, default=1000, help="window height in pixels")
    parser.add_argument("--chromium", default=None, help="the Chromium binary (default: chromium on PATH)")
    parser.add_argument("--seed", type=int, default=11, help="seed of the sandbox's generated data")
    parser.add_argument("--invoices", type=int, default=30, help="how many invoices the sandbox generates")
    args = parser.parse_args(argv)
    chromium = chromium_binary(args.chromium)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="atx-screenshots-"))
    try:
        (work / "prefect").mkdir()
        port = free_port()
        with prefect_server(work / "prefect", port) as api:
            # Before Prefect is imported: this process's runs report to the server above, its state stays here.
            os.environ.update(PREFECT_API_URL=api, PREFECT_HOME=str(work / "prefect"), ATX_HOME=str(work / "atx"),
                              ATX_TENANTS_DIR=str(work / "tenants"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                              DO_NOT_TRACK="1")
            run_id, artifacts = run_sync(work, args.seed, args.invoices)
            ui = api.removesuffix("/api")
            (work / "chromium").mkdir()
            browser = Browser(chromium, work / "chromium", args.width, args.height)
            try:
                for page in pages(ui, run_id, artifacts, NEEDS_ATTENTION):
                    browser.capture(page, out / page.file)
            finally:
                browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's sandbox steps, run exactly as written, in a fresh environment.

The steps are the fenced blocks of README.md marked `<!-- sandbox-walk: ... -->`, read from the README at
test time, so the README and this test cannot drift apart:

    background NAME   the block runs in a shell of its own until it is stopped (shell 1, shell 2)
    shell             the block runs in the one working shell (shell 3); its exports last to its next block
    restart NAME      Ctrl+C in that shell, then the same block again
    stop NAME         Ctrl+C in that shell

What the walk changes, and only this: the environment is a new user's (a new HOME, PREFECT_HOME, ATX_HOME
and tenants folder, nothing else set but PATH with the virtual environment first, as `source
.venv/bin/activate` does), the default ports are free ones (Prefect's 4200 in the steps; the sandbox's
through ATX_SANDBOX_AUTOTASK_PORT, ATX_SANDBOX_XERO_PORT and ATX_XERO_CALLBACK_PORT), and the browser
`atx connect xero` opens is `$BROWSER`, a script that fetches the consent page and follows its redirect.
The export lines shell 2 printed go where the steps say to paste them.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sandbox import persist
from sandbox.serving import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- sandbox-walk: (background|shell|restart|stop)(?: ([\w-]+))? -->\n(?:\n*```bash\n(.*?)```)?", re.S)
PASTE_HERE = "# paste here the export lines atx sandbox serve printed"
SUMMARY = re.compile(r"(\d+) created, (\d+) already in Xero, (\d+) set aside")
READY_SECONDS = 180  # the Prefect server's first start migrates its database: slow on a loaded machine
STEP_SECONDS = 300



def browser_script(pids: Path) -> str:
    """A browser for the walk: like a real one, it returns at once and loads the page in the background,
    here the sandbox's consent page, which answers with a redirect to `atx connect xero`'s callback; until
    that is listening it tries again. It notes its process id, so the walk can end it whatever happens."""
    return f"""#!{sys.executable}
import os, sys, time
if os.fork():
    sys.exit(0)
os.setsid()
devnull = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):
    os.dup2(devnull, fd)
with open({str(pids)!r}, "a") as fh:
    fh.write(str(os.getpid()) + "\\n")
import httpx
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        httpx.get(sys.argv[1], follow_redirects=True, timeout=10)
        break
    except httpx.TransportError:
        time.sleep(0.2)
"""


def readme_steps() -> list[tuple[str, str, str | None]]:
    steps = [(kind, name, block) for kind, name, block in MARK.findall((ROOT / "README.md").read_text())]
    kinds = [kind for kind, _, _ in steps]
    assert kinds.count("background") == 2 and "restart" in kinds and "stop" in kinds, steps
    for kind, name, block in steps:
        assert bool(block) == (kind in ("background", "shell")), f"{kind} {name}: block {block!r}"
    return steps


class Walk:
    """The shells of the walk, and everything they started."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.ports = {"4200": str(free_port())}
        bin_dir = Path(sys.executable).parent
        self.home = tmp / "atx"
        self.tenants = tmp / "tenants"
        self.browser_pids = tmp / "browser.pids"
        browser = tmp / "browser"
        browser.write_text(browser_script(self.browser_pids))
        browser.chmod(0o755)
        self.base = {
            "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(tmp / "home"), "LANG": "C.UTF-8",
            "PREFECT_HOME": str(tmp / "prefect"), "ATX_HOME": str(self.home), "ATX_TENANTS_DIR": str(self.tenants),
            "ATX_SANDBOX_AUTOTASK_PORT": str(free_port()), "ATX_SANDBOX_XERO_PORT": str(free_port()),
            "ATX_XERO_CALLBACK_PORT": str(free_port()), "BROWSER": str(browser),
            # The checkout under test first, wherever the virtual environment's editable install points.
            "PYTHONPATH": str(ROOT),
        }
        (tmp / "home").mkdir()
        self.shell_env = dict(self.base)
        self.background: dict[str, tuple[str, subprocess.Popen, Path]] = {}
        self.exports: list[str] = []
        self.outputs: list[str] = []

    def text(self, block: str) -> str:
        for default, port in self.ports.items():
            block = re.sub(rf"\b{default}\b", port, block)
        return block

    # ---- shells 1 and 2 ----------------------------------------------------------------------------
    def start(self, name: str, block: str) -> str:
        log = self.tmp / f"{name}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", "-e", "-c", self.text(block)], env=dict(self.base), cwd=ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.background[name] = (block, proc, log)
        return self.wait_ready(name)

    def wait_ready(self, name: str) -> str:
        _, proc, log = self.background[name]
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"shell {name} ended ({proc.returncode}):\n{log.read_text()[-4000:]}")
            if name == "prefect":
                try:
                    if httpx.get(f"http://127.0.0.1:{self.ports['4200']}/api/health", timeout=2).status_code == 200:
                        return log.read_text()
                except httpx.TransportError:
                    pass
            elif "Ctrl+C" in log.read_text():
                return log.read_text()
            time.sleep(0.3)
        raise AssertionError(f"shell {name} was not ready in {READY_SECONDS} s:\n{log.read_text()[-4000:]}")

    def interrupt(self, name: str) -> None:
        """Ctrl+C in that shell, and wait for what runs there to end."""
        _, proc, _ = self.background[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # ---- shell 3 -----------------------------------------------------------------------------------
    def run(self, block: str) -> str:
        block = self.text(block)
        if PASTE_HERE in block:
            assert self.exports, "nothing to paste: the sandbox printed no export lines"
            block = block.replace(PASTE_HERE, "\n".join(self.exports))
        env_file = self.tmp / "shell.env"
        script = f"set -x\n{block}\nenv -0 > {env_file}\n"
        done = subprocess.run(["bash", "-e", "-c", script], env=self.shell_env, cwd=ROOT, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=STEP_SECONDS)
        said = done.stdout + done.stderr
        assert done.returncode == 0, f"this step of the README failed:\n{block}\n---\n{said[-6000:]}"
        self.shell_env = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
        self.outputs.append(done.stdout)
        return done.stdout

    def close(self) -> None:
        for name in list(self.background):
            self.interrupt(name)
        if self.browser_pids.exists():
            for pid in self.browser_pids.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def summary(output: str) -> tuple[int, int, int]:
    found = SUMMARY.findall(output)
    assert len(found) == 1, output[-3000:]
    return tuple(int(n) for n in found[0])


def test_the_readme_sandbox_steps_work_as_written(tmp_path):
    steps = readme_steps()
    walk = Walk(tmp_path)
    syncs = []
    try:
        for kind, name, block in steps:
            if kind == "background":
                said = walk.start(name, block)
                if name == "sandbox":
                    assert "A new sandbox" in said, said
                    walk.exports = [line for line in said.splitlines() if line.startswith("export ")]
                    assert len(walk.exports) == 5, said
            elif kind == "restart":
                walk.interrupt(name)
                said = walk.start(name, walk.background[name][0])
                assert "Resumed the sandbox" in said, said
                # The same sandbox: what shell 3 pasted still holds.
                assert [line for line in said.splitlines() if line.startswith("export ")] == walk.exports
            elif kind == "stop":
                walk.interrupt(name)
                if name == "sandbox":
                    saved = persist.load(walk.home / "sandbox")
                    org = saved["xero"]["orgs"][0]
                    held = [i["InvoiceNumber"] for i in org["invoices"].values() if i["Type"] == "ACCREC"]
                    held += [c["CreditNoteNumber"] for c in org["credit_notes"].values()]
            else:
                out = walk.run(block)
                if "atx connect xero" in block:
                    assert "Autotask connected for sandbox" in out and "Xero connected for sandbox" in out, out
                    assert "matches the tenant files" in out, out  # atx deployments check
                if "atx sync invoices" in block:
                    syncs.append(summary(out))
                    assert "needs a person" not in out, out
                if "atx sandbox reset" in block:
                    assert "deleted" in out and "sandbox.yaml" in out, out
    finally:
        walk.close()

    (created, already, aside), (again_created, again_already, again_aside) = syncs
    assert created > 0 and already == 0
    # After the restart the invoices the second run re-reads (its window starts lookback_days before the
    # first run's end) are all found in Xero: none missing, none sent twice, none for a person.
    assert again_created == 0 and again_already > 0 and again_aside == aside
    assert len(held) == len(set(held)) == created  # and the sandbox still holds every one, once
    assert not (walk.home / "sandbox" / "state.json").exists() and not (walk.tenants / "sandbox.yaml").exists()

"""The fault soak: the invoices, bills and payments flows against the sandbox under random faults on both
simulators (429s, 500s, 503s, timeouts, dropped connections, answers lost after writes) and SIGKILLs of the
worker at random points, each case checked against both simulators afterwards.

    python -m bench.soak                          # `make soak`: cases until SOAK_MINUTES (10) are up, a summary
    python -m bench.soak --seed 1234 --cases 1    # replay exactly one case (what a failure prints)

Every case is derived from one seed (`plan_case`): the flow and its options, the data, the latencies, and one
to three rounds, each a set of fault rules for either simulator and one or two `atx sync` processes at
once, one of which may be killed with SIGKILL when the ledger shows documents `sending`, after some requests,
or after a delay. Then the faults go off, one more run follows, and the case is checked (`check_case`):
- nothing left `sending` or `pending` in the ledger;
- every document ended as it does in a fault-free run over the same data (state, Xero status, contact, total
  and tax to the cent, number, paid date, write-back), so a document is set aside only where a fault-free run
  sets it aside too, with its reason and fix;
- every Xero document is named by exactly one ledger row, no number or Url twice, payments applied once
  (the flow tests' own checks as well: tests/checks.py);
- `atx reconcile` exits 0.
The fault-free run is made in the same process on a second sandbox with the same seed, before the case.

`tests/test_soak.py` runs a few short cases in `make test` (the "short" profile: the faults the sync is known
to survive); this module's `main` runs the long soak (the "full" profile: every fault kind, identity included).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 30)
SINCE, UNTIL = END - timedelta(days=40), END
FLOWS = ("invoices", "bills", "payments")
TENANT = "acme"
FAULT_FREE = "fault-free"
BANK = "090"
# A killed run is known dead 3 s after its last beat, so the next run resolves its documents at once.
FAST_HEARTBEAT = {"heartbeat_seconds": 0.5, "heartbeat_timeout_seconds": 3}
# Under faults the clients give a request CLIENT_TIMEOUT seconds; a "timeout" fault holds its answer longer,
# so it is a real timeout for the client (after the write was made). The last run has the default timeouts.
CLIENT_TIMEOUT, TIMEOUT_HOLD = 2.5, 3.5
ROUND_LIMIT_SECONDS = 300  # a round whose processes have not ended by then is a hung run: a failure

# The writes of each API: Xero creates with PUT and updates with POST; Autotask's POSTs are queries (reads),
# its writes PATCHes.
WRITES = {"autotask": ("PATCH",), "xero": ("PUT", "POST")}
XERO_API = "/api.xro/2.0"
ALL_KINDS = ("429", "500", "503", "timeout", "drop", "lost_response")


@dataclass(frozen=True)
class Profile:
    kinds: tuple[str, ...]
    documents: tuple[int, int]
    rounds: tuple[int, int]
    # Faults on Xero's identity service too (the token endpoint, while a token is refreshed).
    identity_faults: bool
    # The Autotask requests faults may hit, by method (None: all).
    autotask_methods: tuple[str, ...] | None


PROFILES = {
    # What `make test` runs: every fault kind, but none on Autotask's GETs, among which the zone lookup is not
    # retried on a 429 or a 500 today (it fails the run as a credentials problem; see the README, Tests).
    "short": Profile(kinds=ALL_KINDS, documents=(10, 24), rounds=(1, 1), identity_faults=False,
                     autotask_methods=("POST", "PATCH")),
    # `make soak`: every kind on every request of both simulators, Xero's identity service included.
    "full": Profile(kinds=ALL_KINDS, documents=(12, 70), rounds=(1, 3), identity_faults=True, autotask_methods=None),
}


# ---- a case, derived from its seed --------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    kind: str
    rate: float
    methods: tuple[str, ...] | None = None
    path_prefix: str | None = None

    def __str__(self) -> str:
        where = "/".join(self.methods) if self.methods else "all"
        return f"{self.kind}@{self.rate:g}({where}{' ' + self.path_prefix if self.path_prefix else ''})"


@dataclass(frozen=True)
class Kill:
    at: str        # "sending": when the ledger shows documents sending; "requests": after that many requests; "delay"
    after: float   # seconds after the first sending row; requests; or seconds after the round's first request

    def __str__(self) -> str:
        return {"sending": f"kill {self.after:g}s after sending", "requests": f"kill after {self.after:g} requests",
                "delay": f"kill {self.after:.1f}s in"}[self.at]


@dataclass(frozen=True)
class Round:
    autotask: tuple[Rule, ...]
    xero: tuple[Rule, ...]
    processes: int
    kill: Kill | None
    fault_seed: int

    def __str__(self) -> str:
        parts = [f"{self.processes} process{'es' if self.processes > 1 else ''}", str(self.kill or "no kill"),
                 "autotask " + (", ".join(map(str, self.autotask)) or "-"), "xero " + (", ".join(map(str, self.xero)) or "-")]
        return "; ".join(parts)


@dataclass(frozen=True)
class Case:
    seed: int
    profile: str
    flow: str
    documents: int
    options: tuple[tuple[str, object], ...]
    autotask_latency: float
    xero_latency: float
    expire_token: bool
    rounds: tuple[Round, ...]

    @property
    def option(self) -> dict:
        return dict(self.options)

    @property
    def variant(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.options)

    @property
    def replay(self) -> str:
        return f"python -m bench.soak --seed {self.seed} --cases 1 --profile {self.profile}"

    def describe(self) -> str:
        head = (f"seed {self.seed} ({self.profile}): {self.flow} [{self.variant}], {self.documents} invoices generated, "
                f"latency autotask {self.autotask_latency}s xero {self.xero_latency}s"
                f"{', expired token' if self.expire_token else ''}")
        return "\n".join([head, *(f"  round {i + 1}: {r}" for i, r in enumerate(self.rounds))])


def plan_case(seed: int, profile: str = "full") -> Case:
    """Everything about one case, from its seed: the flow is FLOWS[seed % 3], so consecutive seeds take turns."""
    chosen = PROFILES[profile]
    rng = random.Random(seed)
    flow = FLOWS[seed % len(FLOWS)]
    if flow == "invoices":
        numbering = rng.choice(("autotask", "xero"))
        options = (("numbering", numbering), ("status", rng.choice(("DRAFT", "AUTHORISED"))),
                   ("write_back", rng.random() < 0.5))
    elif flow == "bills":
        options = (("target", rng.choice(("bill", "purchase_order"))),)
    else:
        options = (("to_xero", rng.random() < 0.7),)
    rounds = tuple(_plan_round(rng, chosen) for _ in range(rng.randint(*chosen.rounds)))
    return Case(seed=seed, profile=profile, flow=flow, documents=rng.randint(*chosen.documents), options=options,
                autotask_latency=rng.choice((0.0, 0.01, 0.03)), xero_latency=rng.choice((0.0, 0.02, 0.08)),
                expire_token=rng.random() < 0.3, rounds=rounds)


def _plan_round(rng: random.Random, profile: Profile) -> Round:
    def rate(kind: str) -> float:
        return rng.choice((0.01, 0.02, 0.04) if kind == "timeout" else (0.02, 0.05, 0.1))

    def rules(api: str, api_prefix: str | None) -> tuple[Rule, ...]:
        methods = profile.autotask_methods if api == "autotask" else None
        reads = _capped([Rule(k, rate(k), methods, api_prefix) for k in profile.kinds if rng.random() < 0.5])
        # Answers lost after writes, at a higher rate: the case exactly-once is about. Checked first.
        writes = [Rule(kind, rng.choice((0.1, 0.25, 0.5)), WRITES[api], api_prefix)
                  for kind in ("lost_response", "timeout", "500") if kind in profile.kinds and rng.random() < 0.4]
        return (*writes, *reads)

    autotask = rules("autotask", None)
    xero = rules("xero", None if profile.identity_faults and rng.random() < 0.5 else XERO_API)
    processes = 2 if rng.random() < 0.3 else 1
    kill = None
    if rng.random() < 0.65:
        at = rng.choice(("sending", "sending", "requests", "delay"))
        kill = Kill(at, {"sending": round(rng.choice((0.0, rng.uniform(0.0, 1.5))), 1), "requests": rng.randint(2, 40),
                         "delay": round(rng.uniform(0.2, 4.0), 1)}[at])
    return Round(autotask=autotask, xero=xero, processes=processes, kill=kill, fault_seed=rng.randrange(2**31))


# A read is tried 4 times (Xero) or 6 (Autotask): with at most this share of all requests failing, a read that
# fails every time is one in several thousand, so a run that fails on a read is a retry missing, not bad luck.
READ_FAULTS_AT_MOST = 0.15


def _capped(rules: list[Rule]) -> list[Rule]:
    """The rules on every request (reads included), their rates scaled down to READ_FAULTS_AT_MOST in all."""
    total = sum(r.rate for r in rules)
    scale = min(1.0, READ_FAULTS_AT_MOST / total) if total else 1.0
    return [Rule(r.kind, round(r.rate * scale, 4), r.methods, r.path_prefix) for r in rules]


# ---- what a case did ----------------------------------------------------------------------------------
@dataclass
class CaseResult:
    case: Case
    runs: list[str] = field(default_factory=list)       # each run under faults: completed, killed, failed: ...
    faults: Counter = field(default_factory=Counter)    # fired, by kind, both simulators
    documents: int = 0
    seconds: float = 0.0
    error: str | None = None
    workdir: Path | None = None
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds each part of the case took

    @contextmanager
    def phase(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.monotonic() - started

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def kills(self) -> int:
        return sum(r == "killed" for r in self.runs)

    def report(self) -> str:
        lines = [self.case.describe(), "  runs under faults: " + ", ".join(self.runs),
                 "  faults fired: " + ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()) if n), *self.notes,
                 "  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in self.phases.items())]
        if self.error:
            lines += [f"  FAILED: {self.error}", f"  replay: {self.case.replay}"]
            if self.workdir:
                lines.append(f"  logs of its runs: {self.workdir}")
        return "\n".join(lines)


# ---- running a case -----------------------------------------------------------------------------------
@contextmanager
def _home(path: Path):
    """ATX_HOME and ATX_TENANTS_DIR under `path` for this process and the runs it starts."""
    from atx.connections import forget_clients

    saved = {k: os.environ.get(k) for k in ("ATX_HOME", "ATX_TENANTS_DIR")}
    os.environ["ATX_HOME"], os.environ["ATX_TENANTS_DIR"] = str(path / "atx"), str(path / "tenants")
    forget_clients()
    try:
        yield
    finally:
        forget_clients()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _mapping(case: Case, workdir: Path) -> str:
    import yaml

    data = yaml.safe_load((ROOT / "mappings" / "demo.yaml").read_text())
    o = case.option
    if case.flow == "invoices":
        data["invoice_number"] = o["numbering"]
        data["status"] = o["status"]
        if o["write_back"]:
            data["write_back"] = {"invoice_number": o["numbering"] == "xero", "web_service_date": True}
    elif case.flow == "bills":
        data["bills"]["target"] = o["target"]
    else:
        data["status"] = "AUTHORISED"  # only approved invoices can be paid
    path = workdir / "mapping.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _flows_of(case: Case) -> list[str]:
    return ["invoices", "payments"] if case.flow == "payments" else [case.flow]


def _connect(stack, case: Case, tenant: str, mapping: str):
    options = {"flows": _flows_of(case), **FAST_HEARTBEAT}
    if case.flow == "payments":
        options["payments"] = {"bank_account": BANK, "to_xero": case.option["to_xero"]}
    return stack.connect_tenant(tenant, mapping, **options)


def _with_timeouts(settings, seconds: float | None, *, calls_per_minute: int | None = None):
    """The tenant file with these client timeouts (None: the defaults), as every later run reads it; and with
    `calls_per_minute`, Xero calls paced to it."""
    from atx.connections import forget_clients
    from atx.settings import AutotaskSettings, XeroSettings, save_tenant

    autotask = seconds or AutotaskSettings.model_fields["timeout_seconds"].default
    xero = {"timeout_seconds": seconds or XeroSettings.model_fields["timeout_seconds"].default}
    if calls_per_minute:
        xero["calls_per_minute"] = calls_per_minute
    changed = settings.model_copy(update={
        "autotask": settings.autotask.model_copy(update={"timeout_seconds": autotask}),
        "xero": settings.xero.model_copy(update=xero)})
    save_tenant(changed)
    forget_clients(settings.name)
    return changed


def _kinds(case: Case):
    from core.documents import BILL, CREDIT_NOTE, INVOICE, PAID_DATE, PAYMENT, PURCHASE_ORDER, WRITE_BACK

    if case.flow == "invoices":
        return (INVOICE, CREDIT_NOTE, *((WRITE_BACK,) if case.option["write_back"] else ()))
    if case.flow == "bills":
        return (BILL if case.option["target"] == "bill" else PURCHASE_ORDER,)
    return (INVOICE, CREDIT_NOTE, PAID_DATE, PAYMENT)


def _numbers_are_ours(case: Case) -> bool:
    return not (case.flow == "invoices" and case.option["numbering"] == "xero")


def run_flow_here(flow: str, tenant: str):
    """One run in this process, faults off: it must complete."""
    import importlib

    from deployments.generate import FLOWS as REGISTERED

    module, _, attr = REGISTERED[flow][0].partition(":")
    state = getattr(importlib.import_module(module), attr)(tenant=tenant, since=SINCE, until=UNTIL, return_state=True)
    assert state.is_completed(), f"the {flow} run with the faults off ended {state.name}: {state.message}"
    return state.result()


def _persons_payments(stack, settings, case: Case):
    """People at work before the payments runs, the same in the fault-free run: the invoices are synced, then
    some are paid in Xero (in full or in part) and some marked paid in Autotask."""
    from atx.connections import autotask_client, ledger_for, xero_gateway
    from core.documents import INVOICE, PaymentDraft
    from ledger import DocState
    from tests.checks import PersonsPayments

    run_flow_here("invoices", settings.name)
    rows = sorted((r for r in ledger_for(settings).records(settings.name, INVOICE.name).values()
                   if r.state == DocState.SYNCED), key=lambda r: int(r.source_id))
    rng = random.Random(case.seed * 7919 + 1)
    in_full, in_part, marked = {}, {}, {}
    gateway = xero_gateway(settings)
    drafts = []
    for row in rows:
        due = stack.org.invoices[row.target_id]["AmountDue"]
        roll, day = rng.random(), END - timedelta(days=rng.randint(0, 8))
        if due <= 0:
            continue
        if roll < 0.3 or 0.75 <= roll < 0.82:
            in_full[row.source_id] = day
            drafts.append(PaymentDraft(invoice_id=row.target_id, amount=due, date=day, account_code=BANK, reference="bank feed"))
            if roll >= 0.75:
                marked[row.source_id] = day  # paid in both, on the same day
        elif roll < 0.45:
            in_part[row.source_id] = day
            part = (due / 2).quantize(Decimal("0.01"))
            drafts.append(PaymentDraft(invoice_id=row.target_id, amount=part, date=day, account_code=BANK, reference="part"))
        elif roll < 0.75:
            marked[row.source_id] = day
    if drafts:
        written = gateway.create_payments(drafts, idempotency_key=f"person-{case.seed}-{settings.name}")
        assert all(w.ok for w in written), [w.errors for w in written if not w.ok]
    if marked:
        with autotask_client(settings) as at:
            answers = at.update_invoices([{"id": int(sid), "paidDate": day} for sid, day in marked.items()])
            assert all(a.ok for a in answers), [a.errors for a in answers if not a.ok]
    return PersonsPayments(paid_in_xero=in_full, partly_paid_in_xero=in_part, marked_paid_in_autotask=marked,
                           to_xero=case.option["to_xero"])


def _stack(case: Case):
    from sandbox.stack import SandboxStack

    return SandboxStack(seed=case.seed, invoices=case.documents, window_end=END, autotask_latency=case.autotask_latency,
                        xero_latency=case.xero_latency)


def fault_free_outcomes(case: Case, workdir: Path) -> dict:
    """What becomes of every document when the case's data is synced with no fault at all."""
    from tests.checks import outcomes

    with _home(workdir), _stack(case) as stack:
        settings = _connect(stack, case, FAULT_FREE, _mapping(case, workdir))
        if case.flow == "payments":
            _persons_payments(stack, settings, case)
        run_flow_here(case.flow, FAULT_FREE)
        return outcomes(stack, settings, _kinds(case), compare_numbers=_numbers_are_ours(case))


def _configure(stack, rnd: Round) -> None:
    for name, faults, rules in (("autotask", stack.autotask_faults, rnd.autotask), ("xero", stack.xero_faults, rnd.xero)):
        faults.clear()
        faults.configure(seed=rnd.fault_seed + (name == "xero"), timeout_seconds=TIMEOUT_HOLD, retry_after_seconds=1)
        for rule in rules:
            faults.rule(rule.kind, rule.rate, methods=rule.methods, path_prefix=rule.path_prefix)


def _spawn(flow: str, log: Path) -> subprocess.Popen:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_LOGGING_LEVEL="INFO", COLUMNS="200")
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "atx.cli", "sync", flow, "--tenant", TENANT, "--since", SINCE.isoformat(),
             "--until", UNTIL.isoformat()], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def _sending(settings, kinds) -> bool:
    from sqlalchemy.exc import OperationalError

    from atx.connections import ledger_for
    from ledger import DocState

    try:
        return any(r.state == DocState.SENDING for k in kinds for r in ledger_for(settings).records(settings.name, k.name).values())
    except OperationalError:  # the worker holds the write lock this moment
        return False


def _requests(stack) -> int:
    return sum(c["requests"] for c in stack.fault_counts().values())


def _ended(proc: subprocess.Popen, log: Path) -> str:
    if proc.returncode == 0:
        return "completed"
    if proc.returncode == -signal.SIGKILL:
        return "killed"
    text = log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
    ended = next((i for i in range(len(text) - 1, -1, -1) if text[i].startswith("The run ended")), len(text) - 1)
    said = " ".join(line.strip() for line in text[ended:])[:600]
    # Documents another live run still held when this one gave up waiting: the run says so and stops, by design.
    return f"{'unfinished' if said.startswith('The run ended Unfinished') else 'failed'}: {said}"


def run_round(stack, settings, case: Case, rnd: Round, workdir: Path, number: int) -> list[str]:
    """One round: its faults on, its processes started, one of them killed when its moment comes."""
    _configure(stack, rnd)
    logs = [workdir / f"round{number}-run{i + 1}.log" for i in range(rnd.processes)]
    procs = [_spawn(case.flow, log) for log in logs]
    start, first_request, first_sending, killed = _requests(stack), None, None, False
    deadline = time.monotonic() + ROUND_LIMIT_SECONDS
    try:
        while any(p.poll() is None for p in procs):
            if rnd.kill and not killed and procs[0].poll() is None:
                seen = _requests(stack) - start
                now = time.monotonic()
                if first_request is None and seen:
                    first_request = now
                if rnd.kill.at == "sending" and first_sending is None and _sending(settings, _kinds(case)):
                    first_sending = now
                due = {"sending": lambda: first_sending is not None and now - first_sending >= rnd.kill.after,
                       "requests": lambda: seen >= rnd.kill.after,
                       "delay": lambda: first_request is not None and now - first_request >= rnd.kill.after}
                if due[rnd.kill.at]():
                    procs[0].send_signal(signal.SIGKILL)
                    killed = True
            if time.monotonic() > deadline:
                raise AssertionError(f"round {number}: a run did not end within {ROUND_LIMIT_SECONDS} s (hung): see {logs}")
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
    ended = [_ended(p, log) for p, log in zip(procs, logs)]
    # Unfinished is right only while another live run holds the documents: with no other process in the round
    # (a run killed earlier is dead and resolved at once), or naming no run, it is a run misreporting its own.
    return [f"failed: unfinished with no other run alive: {e}" if e.startswith("unfinished")
            and (rnd.processes == 1 or "run unknown" in e) else e for e in ended]


def check_case(stack, settings, case: Case, expected: dict, persons=None) -> int:
    """Every check a case ends with; returns the number of documents compared."""
    from tests import checks

    kinds = _kinds(case)
    checks.assert_nothing_unresolved(settings)
    found = checks.outcomes(stack, settings, kinds, compare_numbers=_numbers_are_ours(case))
    checks.assert_same_outcomes(found, expected)
    checks.assert_xero_documents_accounted_for(stack, settings, [k for k in kinds if k.target == "xero" and k.name != "payment"])
    if case.flow in ("invoices", "payments"):
        checks.assert_each_once(stack, settings)
    if case.flow == "invoices" and case.option["write_back"]:
        checks.assert_write_backs_held(stack, settings, invoice_number=case.option["numbering"] == "xero",
                                       web_service_date=True)
    if case.flow == "bills":
        checks.assert_bills_agree(settings, kinds[0])
    if case.flow == "payments":
        checks.assert_payments_agree(stack, settings)
        checks.assert_payments_as_made(stack, settings, persons)
    _reconcile_clean(case)
    return len(found)


def _reconcile_clean(case: Case) -> None:
    """`atx reconcile` over the case's window, as a person would run it: exit 0, clean."""
    from typer.testing import CliRunner

    from atx.cli import app

    answer = CliRunner().invoke(app, ["reconcile", "--tenant", TENANT, "--since", SINCE.isoformat(),
                                      "--until", UNTIL.isoformat()], env={"COLUMNS": "200"})
    assert answer.exit_code == 0, f"atx reconcile exited {answer.exit_code}:\n{answer.output[-3000:]}"


@contextmanager
def _logs_to(path: Path):
    """The flow and task run logs of this process, at INFO, into `path` (not the console) while inside."""
    import logging

    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"))
    loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
        handler.close()


def _dump_xero(stack, path: Path) -> None:
    """What the Xero simulator holds, for a failed case's directory: each document and contact, in short."""
    import json

    org = stack.org
    keep = ("InvoiceID", "CreditNoteID", "PurchaseOrderID", "PaymentID", "ContactID", "Type", "Status", "InvoiceNumber",
            "CreditNoteNumber", "PurchaseOrderNumber", "Reference", "Url", "Total", "TotalTax", "AmountDue", "Amount",
            "Date", "Name", "ContactNumber", "UpdatedDateUTC", "Contact", "TargetID")
    held = {name: [{k: d[k] for k in keep if k in d} for d in getattr(org, name).values()]
            for name in ("invoices", "credit_notes", "purchase_orders", "payments", "contacts")}
    path.write_text(json.dumps(held, indent=1, default=str))


def run_case(case: Case, workdir: Path) -> CaseResult:
    """The whole case; a failure is caught into the result (with the replay command), never raised."""
    from atx.connections import token_store
    from sandbox.xero.limits import XeroLimits

    result = CaseResult(case, workdir=workdir)
    started = time.monotonic()
    try:
        with result.phase("fault-free run"):
            expected = fault_free_outcomes(case, workdir / "fault-free")
        with _home(workdir), _stack(case) as stack:
            settings = _connect(stack, case, TENANT, _mapping(case, workdir))
            with result.phase("people"):
                persons = _persons_payments(stack, settings, case) if case.flow == "payments" else None
            if case.expire_token:
                store = token_store(settings)
                store.save({**store.load(), "expires_at": time.time() - 60})
            settings = _with_timeouts(settings, CLIENT_TIMEOUT)
            try:
                for number, rnd in enumerate(case.rounds, 1):
                    with result.phase("rounds"):
                        result.runs += run_round(stack, settings, case, rnd, workdir, number)
            finally:
                for name, counts in stack.fault_counts().items():
                    result.faults.update({k: n for k, n in counts.items() if k != "requests"})
                stack.autotask_faults.clear()
                stack.xero_faults.clear()
            settings = _with_timeouts(settings, None)
            try:
                with result.phase("last run"), _logs_to(workdir / "last-run.log"):
                    run_flow_here(case.flow, TENANT)
                with result.phase("checks"):
                    # The checks read Xero too (a call per invoice for the payments): Xero's 60 calls a minute
                    # are not what they test, so they are lifted for them.
                    stack.xero.limits = XeroLimits(per_minute=100_000, per_day=1_000_000)
                    settings = _with_timeouts(settings, None, calls_per_minute=100_000)
                    result.documents = check_case(stack, settings, case, expected, persons)
            except Exception:
                _dump_xero(stack, workdir / "xero.json")
                raise
            failed = [r for r in result.runs if r.startswith("failed")]
            # Faults are transient and capped (READ_FAULTS_AT_MOST): a run must retry through them, or stop cleanly.
            assert not failed, f"{len(failed)} of the runs under faults failed: {failed[0]}"
            refused = stack.autotask.thread_rejections, sum(stack.xero.limiter.refused.values())
            if any(refused):
                result.notes.append(f"  the simulators' own limits refused: autotask threads {refused[0]}, xero {refused[1]}")
    except Exception as exc:  # noqa: BLE001 - every failure is the case's finding
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result.error = f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}: {exc}"
    result.seconds = time.monotonic() - started
    return result


# ---- the long soak ------------------------------------------------------------------------------------
def _summary(results: list[CaseResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    grid = Table(title=f"Fault soak: {len(results)} cases")
    for col in ("seed", "flow", "variant", "rounds", "runs", "kills", "failed runs", "faults fired", "documents",
                "seconds", "result"):
        grid.add_column(col)
    for r in results:
        fired = ", ".join(f"{k} {n}" for k, n in sorted(r.faults.items()) if n) or "-"
        failed = sum(x.startswith("failed") for x in r.runs)
        grid.add_row(str(r.case.seed), r.case.flow, r.case.variant, str(len(r.case.rounds)), str(len(r.runs)),
                     str(r.kills), str(failed), fired, str(r.documents), f"{r.seconds:.0f}",
                     "ok" if r.ok else "[red]FAILED[/]")
    total = Counter()
    for r in results:
        total.update(r.faults)
    console = Console(width=200)
    console.print(grid)
    console.print("faults fired in all: " + (", ".join(f"{k} {n}" for k, n in sorted(total.items()) if n) or "none")
                  + f"; kills {sum(r.kills for r in results)}; runs under faults {sum(len(r.runs) for r in results)}")
    failed_runs = [(r.case.seed, x) for r in results for x in r.runs if x.startswith("failed")]
    if failed_runs:
        console.print("Runs that ended failed under faults (the case still converged unless marked FAILED):")
        for seed, said in failed_runs:
            console.print(f"  seed {seed}: {said}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="first case's seed (default: from the clock); case i has seed+i")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")),
                        help="start no case after this many minutes (default: SOAK_MINUTES or 10)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--keep", action="store_true", help="keep every case's directory, not only the failed ones'")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_TASKS_REFRESH_CACHE", "true")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")  # this process's flow logs; each run's go to its file
    from prefect.testing.utilities import prefect_test_harness

    root = Path(tempfile.mkdtemp(prefix="atx-soak-"))
    print(f"fault soak from seed {seed}, profile {args.profile}, up to {args.minutes:g} minutes; work in {root}", flush=True)
    results: list[CaseResult] = []
    deadline = time.monotonic() + 60 * args.minutes
    with prefect_test_harness(server_startup_timeout=120):
        while (args.cases is None or len(results) < args.cases) and (time.monotonic() < deadline or not results):
            case = plan_case(seed + len(results), args.profile)
            result = run_case(case, root / f"seed-{case.seed}")
            results.append(result)
            print(("ok     " if result.ok else "FAILED ") + result.report(), flush=True)
            if result.ok and not args.keep:
                shutil.rmtree(result.workdir, ignore_errors=True)
    _summary(results)
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"FAILED seed {r.case.seed}: {r.error}\n  replay: {r.case.replay}  (logs: {r.workdir})")
    if not failed:
        print("every case ended with each document once, nothing unresolved, reconcile clean")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

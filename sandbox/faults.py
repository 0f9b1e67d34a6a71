"""Fault injection for the simulators: the network and server failures a sync must survive.

Wrap any ASGI app (the Xero or the Autotask simulator) with `with_faults(app, config)`. Faults are off
by default. Three ways to turn them on, all changeable while the server runs (from any thread):

- rates, for soak tests and the demo: `FaultConfig(rate_503=0.05, seed=7)`, or later
  `faults.configure(rate_503=0.05, rate_timeout=0.01, seed=7)`; each matching request rolls the dice
  once per rate (deterministic for a given seed and request order). `methods` and `path_prefix` narrow
  every rate at once;
- rules, a rate of its own for some requests only, e.g. answers lost after writes while reads see 429s:
  `faults.rule("lost_response", 0.05, methods=("PUT", "POST", "PATCH"))`, `faults.rule("429", 0.1)`;
- scripts, for tests that need one exact failure:
  `faults.script("lost_response", method="PUT", path_prefix="/api.xro/2.0/Invoices", times=1)`.
Scripts are checked first, then rules, then the rates; `clear()` removes all three.

Kinds (`FAULT_KINDS`):
  "429", "500", "503"  an error response, sent before the app sees the request (nothing is processed);
  "drop"               the connection is closed before the request is processed: no status line at all;
  "timeout"            the request IS processed, then the response is held back until the client gives
                       up (or `timeout_seconds` pass, after which it is sent late), the worst case for a
                       writer: it never learns the outcome although the write happened. Keep client
                       timeouts short in soaks, or lower `timeout_seconds`;
  "lost_response"      the request IS processed, then the client receives headers promising more body
                       than ever arrives and the connection closes, so httpx and urllib3 raise a
                       protocol/read error.

What fired, for a soak report: `faults.counts()` ({kind: n} for every kind), `faults.requests_seen`
(requests that passed through), and `faults.log`, every fault as (kind, method, path). What the APIs
answered, for the benchmarks: `faults.requests_by_api` and `faults.bytes_by_api` (response body bytes),
both keyed by the path's first two segments, and `requests_by_resource` / `bytes_by_resource`, keyed by
method and first three segments ("GET /api.xro/2.0/invoices", "POST /atservicesrest/v1.0/billingitems").

"drop", "timeout" and "lost_response" need to reach the socket, which uvicorn exposes on the bound
`send` callable. Put `with_faults` outermost (what you hand to `serve()`), not inside Starlette's
middleware stack, whose wrapped `send` hides the socket; there they degrade to a bare disconnect.

Slowness is not a fault: each simulator has its own latency setting, applied where its concurrency
limit counts the request (`AutotaskSandbox.request_latency`, `XeroSandbox.latency`).
"""
from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

FAULT_KINDS = ("429", "500", "503", "timeout", "drop", "lost_response")


@dataclass
class ScriptedFault:
    kind: str
    method: str | None = None
    path_prefix: str | None = None
    times: int = 1
    fired: int = 0
    after: int = 0  # let this many matching requests through first (a fault in the middle of a run)
    passed: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path_prefix and not path.lower().startswith(self.path_prefix.lower()):
            return False
        return self.fired < self.times


@dataclass
class RateRule:
    """A rate for one fault kind on the requests it matches (all, when methods and path_prefix are None)."""

    kind: str
    rate: float
    methods: tuple[str, ...] | None = None
    path_prefix: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        return not self.path_prefix or path.lower().startswith(self.path_prefix.lower())


_SETTINGS = ("seed", "methods", "path_prefix", "timeout_seconds", "retry_after_seconds")


@dataclass
class FaultConfig:
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_timeout: float = 0.0
    rate_drop: float = 0.0
    rate_lost_response: float = 0.0
    seed: int = 0
    # Rates apply only to these methods / this path prefix (None = all); scripts carry their own filters.
    methods: tuple[str, ...] | list[str] | None = None
    path_prefix: str | None = None
    # How long a "timeout" holds the response at most; tests keep it a little above the client timeout.
    timeout_seconds: float = 30.0
    retry_after_seconds: int = 1
    # Extra headers on an injected 429 (the Xero simulator adds X-Rate-Limit-Problem).
    headers_429: dict[str, str] = field(default_factory=dict)
    # Every fault fired, as (kind, method, path), for tests and the demo report.
    log: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.seed)
        self._scripts: list[ScriptedFault] = []
        self._rules: list[RateRule] = []
        self.requests_seen = 0
        # Requests by their first two path segments ("/api.xro/2.0", "/connect/token"): what a client's own
        # count of its calls is checked against.
        self.requests_by_api: Counter[str] = Counter()
        # Response body bytes sent by the same key: a client's egress from the API (faults' own bodies included).
        self.bytes_by_api: Counter[str] = Counter()
        self.requests_by_resource: Counter[str] = Counter()
        self.bytes_by_resource: Counter[str] = Counter()
        for kind in FAULT_KINDS:
            _check_rate(kind, getattr(self, _rate_attr(kind)))

    def configure(self, **settings) -> "FaultConfig":
        """Change rates (`rate_503=0.05`, or `503=...` via `**{"503": 0.05}`) and settings (seed, methods,
        path_prefix, timeout_seconds, retry_after_seconds) while the server runs; a new seed restarts the
        dice. Unknown names and rates outside 0..1 are refused before anything changes."""
        changes = {}
        for name, value in settings.items():
            key = name if name in _SETTINGS or name.startswith("rate_") else f"rate_{name}"
            if key.startswith("rate_"):
                kind = key[len("rate_"):]
                if kind not in FAULT_KINDS:
                    raise ValueError(f"unknown fault {name!r}: use one of {', '.join(FAULT_KINDS)}")
                _check_rate(kind, value)
            elif key not in _SETTINGS:
                raise ValueError(f"unknown fault setting {name!r}")
            changes[key] = value
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)
            if "seed" in changes:
                self._rng = random.Random(changes["seed"])
        return self

    def rule(self, kind: str, rate: float, *, methods: tuple[str, ...] | list[str] | None = None,
             path_prefix: str | None = None) -> RateRule:
        """Fire `kind` on this share of the requests matching `methods` and `path_prefix`."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        _check_rate(kind, rate)
        added = RateRule(kind, rate, tuple(methods) if methods else None, path_prefix)
        with self._lock:
            self._rules.append(added)
        return added

    def counts(self) -> dict[str, int]:
        """How many times each kind fired so far (every kind, zeros included)."""
        with self._lock:
            fired = Counter(kind for kind, _, _ in self.log)
        return {kind: fired[kind] for kind in FAULT_KINDS}

    def script(self, kind: str, *, method: str | None = None, path_prefix: str | None = None,
               times: int = 1, after: int = 0) -> ScriptedFault:
        """Fire `kind` on the next `times` requests that match, after letting `after` of them through."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        scripted = ScriptedFault(kind, method, path_prefix, times, after=after)
        with self._lock:
            self._scripts.append(scripted)
        return scripted

    def clear(self) -> None:
        """Remove all scripts and rules and set every rate to zero (what fired so far stays counted)."""
        with self._lock:
            self._scripts.clear()
            self._rules.clear()
            for kind in FAULT_KINDS:
                setattr(self, _rate_attr(kind), 0.0)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self.seed = seed
            self._rng = random.Random(seed)

    def pending_scripts(self) -> list[ScriptedFault]:
        with self._lock:
            return [s for s in self._scripts if s.fired < s.times]

    def choose(self, method: str, path: str) -> str | None:
        """The fault to inject into this request, if any. Scripts win over rules, rules over rates."""
        with self._lock:
            self.requests_seen += 1
            self.requests_by_api[api_of(path)] += 1
            self.requests_by_resource[resource_of(method, path)] += 1
            for scripted in self._scripts:
                if scripted.matches(method, path):
                    if scripted.passed < scripted.after:
                        scripted.passed += 1
                        continue
                    scripted.fired += 1
                    self.log.append((scripted.kind, method, path))
                    return scripted.kind
            for rule in self._rules:
                if rule.rate > 0 and rule.matches(method, path) and self._rng.random() < rule.rate:
                    self.log.append((rule.kind, method, path))
                    return rule.kind
            if self.methods and method.upper() not in {m.upper() for m in self.methods}:
                return None
            if self.path_prefix and not path.lower().startswith(self.path_prefix.lower()):
                return None
            for kind in FAULT_KINDS:
                rate = getattr(self, _rate_attr(kind))
                if rate > 0 and self._rng.random() < rate:
                    self.log.append((kind, method, path))
                    return kind
        return None


    def count_bytes(self, method: str, path: str, sent: int) -> None:
        with self._lock:
            self.bytes_by_api[api_of(path)] += sent
            self.bytes_by_resource[resource_of(method, path)] += sent


def api_of(path: str) -> str:
    """The API a request path belongs to: its first two segments ("/api.xro/2.0", "/connect/token")."""
    return "/" + "/".join(path.strip("/").lower().split("/")[:2])


def resource_of(method: str, path: str) -> str:
    """The method and the path's first three segments: "GET /api.xro/2.0/invoices"."""
    return method.upper() + " /" + "/".join(path.strip("/").lower().split("/")[:3])


def _rate_attr(kind: str) -> str:
    return f"rate_{kind}"


def _check_rate(kind: str, rate) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"fault {kind!r} needs a share between 0 and 1, got {rate!r}")


class FaultMiddleware:
    """ASGI middleware injecting the faults a `FaultConfig` asks for."""

    def __init__(self, app, config: FaultConfig | None = None):
        self.app = app
        self.config = config or FaultConfig()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config, method, path = self.config, scope["method"], scope["path"]
        kind = config.choose(method, path)

        async def counted(message) -> None:
            if message["type"] == "http.response.body":
                config.count_bytes(method, path, len(message.get("body", b"")))
            await send(message)

        # Drops and lost responses need the bound `send` itself (its socket), so only these are counted.
        if kind is None:
            await self.app(scope, receive, counted)
        elif kind in ("429", "500", "503"):
            await self._error_response(int(kind), counted)
        elif kind == "drop":
            await _close_connection(send)
        elif kind == "timeout":
            await self._stall_after_processing(scope, receive, send)
        else:
            await self._lose_response(scope, receive, send)

    async def _error_response(self, status: int, send) -> None:
        messages = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}
        body = json.dumps({"Title": messages[status], "Status": status, "Detail": "injected fault"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status in (429, 503):
            headers.append((b"retry-after", str(self.config.retry_after_seconds).encode()))
        if status == 429:
            headers += [(k.lower().encode(), v.encode()) for k, v in self.config.headers_429.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stall_after_processing(self, scope, receive, send) -> None:
        messages = await _run_buffered(self.app, scope, receive)
        # Waiting on receive() returns as soon as the client hangs up, so a timed-out client does not
        # keep the server busy for the whole timeout_seconds.
        try:
            await asyncio.wait_for(_until_disconnect(receive), self.config.timeout_seconds)
            return
        except asyncio.TimeoutError:
            pass
        for message in messages:
            await send(message)

    async def _lose_response(self, scope, receive, send) -> None:
        messages = await _run_buffered(self.app, scope, receive)
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        transport = _transport_of(send)
        if transport is None or start is None:
            await _close_connection(send)
            return
        status = start["status"]
        head = [f"HTTP/1.1 {status} OK".encode()]
        for name, value in start.get("headers", []):
            if name.lower() not in (b"content-length", b"connection", b"transfer-encoding"):
                head.append(name + b": " + value)
        # Promise more bytes than will ever come: every HTTP client then fails with a read error.
        head.append(b"content-length: " + str(len(body) + 1024).encode())
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body[: len(body) // 2])
        await _close_connection(send)


def with_faults(app, config: FaultConfig | None = None) -> FaultMiddleware:
    return FaultMiddleware(app, config)


async def _run_buffered(app, scope, receive) -> list[dict]:
    messages: list[dict] = []

    async def capture(message) -> None:
        messages.append(message)

    await app(scope, receive, capture)
    return messages


async def _until_disconnect(receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


def _transport_of(send):
    # uvicorn's `send` is a bound method of its per-request cycle, which holds the socket's transport.
    cycle = getattr(send, "__self__", None)
    return getattr(cycle, "transport", None)


async def _close_connection(send) -> None:
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("injected fault: connection dropped")
    transport.close()
    # Let the server notice the closed socket, so it neither answers 500 nor logs an error.
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)


def parse_fault_spec(spec: str | None, *, seed: int = 0) -> FaultConfig:
    """`"rate_500=0.05,rate_lost_response=0.01"` (or `500=0.05,lost_response=0.01`) -> FaultConfig,
    for `atx sandbox serve --xero-faults ...`."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, value = part.partition("=")
        key = name.strip() if name.strip().startswith("rate_") else f"rate_{name.strip()}"
        if key not in {f"rate_{k}" for k in FAULT_KINDS}:
            raise ValueError(f"unknown fault {name!r}: use one of {', '.join(FAULT_KINDS)}")
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"fault {name!r} needs a share between 0 and 1, e.g. {name}=0.05") from None
        if not 0 <= rate <= 1:
            raise ValueError(f"fault {name!r} needs a share between 0 and 1, got {value}")
        rates[key] = rate
    return FaultConfig(seed=seed, **rates)

"""The Xero sandbox as one web app serving the paths of all Xero hosts.

    login.xero.com     /identity/connect/authorize
    identity.xero.com  /connect/token, /connect/revocation
    api.xero.com       /connections (and /Connections), /api.xro/2.0/... (the accounting API)

Every accounting request passes the gate first, in Xero's order: bearer token (401), tenant header and
connection (403), scope (403), rate limits (429). Faults from `sandbox.faults` wrap everything, the
token endpoint included, so a lost refresh response can be tested too.

An admitted accounting call then waits `sandbox.latency` seconds (real time, 0 by default) before it is
answered, in flight all along: how long Xero takes, and what makes its five-calls-in-flight limit
reachable by overlapping clients.
"""
from __future__ import annotations

import asyncio
import uuid

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.faults import FaultMiddleware
from sandbox.xero import accounting, identity
from sandbox.xero.state import XeroSandbox

ACCOUNTING_PREFIX = "/api.xro/2.0"

# Which scopes open which accounting resource for writing; reading also accepts the ".read" variant.
# Broad scopes (in the spec) and the granular ones replacing them are both accepted.
_INVOICING = ("accounting.transactions", "accounting.invoices")
_SETTINGS = ("accounting.settings",)
_WRITE_SCOPES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(["invoices", "creditnotes", "purchaseorders", "quotes", "repeatinginvoices",
                     "linkedtransactions"], _INVOICING),
    "items": _SETTINGS + ("accounting.invoices",),
    **dict.fromkeys(["payments", "batchpayments", "overpayments", "prepayments"],
                    ("accounting.transactions", "accounting.payments")),
    **dict.fromkeys(["banktransactions", "banktransfers"], ("accounting.transactions", "accounting.banktransactions")),
    "manualjournals": ("accounting.transactions", "accounting.manualjournals"),
    **dict.fromkeys(["receipts", "expenseclaims"], ("accounting.transactions",)),
    **dict.fromkeys(["contacts", "contactgroups"], ("accounting.contacts",)),
    **dict.fromkeys(["accounts", "taxrates", "trackingcategories", "brandingthemes", "currencies", "organisation",
                     "organisations", "users", "invoicereminders", "setup"], _SETTINGS),
    "paymentservices": ("paymentservices",),
}
_READ_ONLY_SCOPES = {"reports": "accounting.reports.read", "journals": "accounting.journals.read",
                     "budgets": "accounting.budgets.read"}


def scopes_for_operation(method: str, accounting_path: str) -> set[str] | None:
    """Any one of these scopes allows the call; None when the resource is unknown (no scope check)."""
    segments = [s.lower() for s in accounting_path.strip("/").split("/") if s]
    if not segments:
        return None
    reading = method.upper() in ("GET", "HEAD")
    if "attachments" in segments:
        write = ("accounting.attachments",)
    elif segments[0] in _READ_ONLY_SCOPES:
        return {_READ_ONLY_SCOPES[segments[0]]}
    elif segments[0] in _WRITE_SCOPES:
        write = _WRITE_SCOPES[segments[0]]
    else:
        return None
    return set(write) | ({s + ".read" for s in write} if reading else set())


def _problem(status: int, title: str, detail: str, headers: dict | None = None, extensions: dict | None = None):
    return JSONResponse({"Type": None, "Title": title, "Status": status, "Detail": detail,
                         "Instance": str(uuid.uuid4()), "Extensions": extensions or {}},
                        status_code=status, headers=headers)


class AccountingGate:
    """ASGI middleware: authenticate, authorise and rate-limit each accounting call before its handler."""

    def __init__(self, app, sandbox: XeroSandbox):
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].lower().startswith(ACCOUNTING_PREFIX.lower()):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            access = self.sandbox.identity.bearer(headers.get("authorization"))
        except identity.BearerError as error:
            await identity.unauthorized(error.detail)(scope, receive, send)
            return
        tenant_id = headers.get("xero-tenant-id", "").strip()
        org = self.sandbox.orgs.get(tenant_id)
        if org is None or not self.sandbox.identity.is_connected(access.client_id, access.user_id, tenant_id):
            await _problem(403, "Forbidden", "AuthenticationUnsuccessful")(scope, receive, send)
            return
        needed = scopes_for_operation(scope["method"], scope["path"][len(ACCOUNTING_PREFIX):])
        if needed is not None and not needed & set(access.scopes):
            await _problem(403, "Forbidden", "AuthorizationUnsuccessful",
                           extensions={"requiredScopes": sorted(needed)})(scope, receive, send)
            return
        admission = self.sandbox.limiter.admit(access.client_id, tenant_id)
        if not admission.admitted:
            await _problem(429, "Too Many Requests", f"Rate limit exceeded: {admission.problem}",
                           headers=admission.headers)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state.update(xero_org=org, client_id=access.client_id, scopes=list(access.scopes),
                     xero_user_id=access.user_id)
        limit_headers = [(k.encode(), v.encode()) for k, v in admission.headers.items()]

        async def send_with_limits(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + limit_headers}
            await send(message)

        try:
            await _answer_delay(self.sandbox)
            await self.app(scope, receive, send_with_limits)
        finally:
            self.sandbox.limiter.release(access.client_id, tenant_id)


async def _answer_delay(sandbox: XeroSandbox) -> None:
    """Wait out `sandbox.latency`, re-read while waiting so that lowering it frees waiting calls."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (left := started + sandbox.latency - loop.time()) > 0:
        await asyncio.sleep(min(left, 0.02))


class XeroSandboxApp(FastAPI):
    """A FastAPI app whose outermost layer injects faults (outside Starlette's own middleware, where
    the socket is still reachable to drop connections)."""

    def __init__(self, sandbox: XeroSandbox, **kwargs):
        super().__init__(**kwargs)
        self._faults = FaultMiddleware(self._serve, sandbox.faults)

    async def _serve(self, scope, receive, send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].lower().startswith("/connections"):
            # api.xero.com/connections answers whatever the case; the SDK calls /Connections.
            scope = {**scope, "path": "/connections" + scope["path"][len("/connections"):]}
        # Tests may swap the sandbox's FaultConfig on a running server.
        self._faults.config = self.state.xero.faults
        await self._faults(scope, receive, send)


async def _unknown_route(request, exc: StarletteHTTPException):
    """A path or method no route serves answers as Xero does, not with FastAPI's {"detail": ...}: an
    unknown path with the same plain-text 404 as an unknown id, a known path with another method in the
    problem shape of Xero's other refusals."""
    if exc.status_code == 404:
        return accounting.not_found()
    if exc.status_code == 405:
        return _problem(405, "Method Not Allowed",
                        f"The requested resource does not support http method '{request.method}'.",
                        headers=dict(exc.headers or {}))
    return _problem(exc.status_code, str(exc.detail or "Error"), str(exc.detail or ""), headers=dict(exc.headers or {}))


def create_app(sandbox: XeroSandbox) -> FastAPI:
    app = XeroSandboxApp(sandbox, title="Xero sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.xero = sandbox
    app.add_exception_handler(StarletteHTTPException, _unknown_route)
    app.add_middleware(AccountingGate, sandbox=sandbox)
    app.include_router(identity.router)
    app.include_router(accounting.router, prefix=ACCOUNTING_PREFIX)
    return app


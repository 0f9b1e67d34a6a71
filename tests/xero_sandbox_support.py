"""Helpers for tests that talk to the Xero sandbox over HTTP."""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import httpx
from fastapi import FastAPI, Request

from sandbox.clock import ManualClock
from sandbox.serving import BackgroundServer
from sandbox.xero.app import create_app
from sandbox.xero.identity import pkce_challenge
from sandbox.xero.state import XeroSandbox

CLIENT_ID = "sync-app-client-id"
CLIENT_SECRET = "sync-app-client-secret-do-not-log"
ACCOUNTING = "/api.xro/2.0"


@dataclass
class Callback:
    """A loopback redirect target recording what the consent page sent back, as the CLI's would."""

    received: list[dict] = field(default_factory=list)
    server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/callback"


def start_callback() -> Callback:
    callback = Callback()
    app = FastAPI()

    @app.get("/callback")
    def receive(request: Request):
        callback.received.append(dict(request.query_params))
        return {"ok": True}

    callback.server = BackgroundServer(app).start()
    return callback


@dataclass
class Sandbox:
    sandbox: XeroSandbox
    clock: ManualClock
    server: BackgroundServer
    callback: Callback
    http: httpx.Client

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def org(self, name: str):
        return self.sandbox.org_named(name)

    def tokens(self, orgs: list[str] | None = None, scopes: list[str] | None = None) -> dict:
        tenant_ids = None if orgs is None else [self.org(name).tenant_id for name in orgs]
        return self.sandbox.issue_tokens(CLIENT_ID, tenant_ids, scopes)

    def call(self, method: str, path: str, token: dict | str | None, org: str | None, **kwargs) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = "Bearer " + (token if isinstance(token, str) else token["access_token"])
        if org is not None:
            headers["xero-tenant-id"] = self.org(org).tenant_id
        headers.setdefault("Accept", "application/json")
        return self.http.request(method, ACCOUNTING + path, headers=headers, **kwargs)

    def consent(self, scope: str = "offline_access accounting.invoices accounting.settings", **extra) -> tuple[dict, str]:
        """Walk the consent page with PKCE; returns (redirect query, code_verifier)."""
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(8)
        params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": self.callback.url,
                  "scope": scope, "state": state, "code_challenge": pkce_challenge(verifier),
                  "code_challenge_method": "S256", **extra}
        with httpx.Client(follow_redirects=True) as browser:
            landed = browser.get(self.base_url + "/identity/connect/authorize", params=params)
        assert landed.status_code == 200 and landed.url.path == "/callback"
        query = self.callback.received[-1]
        assert query["state"] == state
        return query, verifier

    def exchange(self, code: str, verifier: str | None, **extra) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.callback.url,
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **extra}
        if verifier is not None:
            data["code_verifier"] = verifier
        return self.http.post("/connect/token", data=data)

    def refresh(self, refresh_token: str, **extra) -> httpx.Response:
        return self.http.post("/connect/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                                      "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                                      **extra})


def start_sandbox(configure_app=None, **sandbox_kwargs) -> Sandbox:
    clock = ManualClock()
    sandbox = XeroSandbox(clock=clock, **sandbox_kwargs)
    sandbox.add_org("Acme Pty Ltd", "AU")
    sandbox.add_org("Kiwi Ltd", "NZ")
    callback = start_callback()
    sandbox.register_app(CLIENT_ID, CLIENT_SECRET, [callback.url])
    app = create_app(sandbox)
    if configure_app is not None:
        configure_app(app)
    server = BackgroundServer(app).start()
    return Sandbox(sandbox, clock, server, callback, httpx.Client(base_url=server.base_url, timeout=10))


def stop_sandbox(sb: Sandbox) -> None:
    sb.http.close()
    sb.server.stop()
    sb.callback.server.stop()

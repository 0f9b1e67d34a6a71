"""`atx connect`: credentials into Prefect Secret blocks, and Xero's consent (code + PKCE) on a loopback port.

Secrets are stored one string per Secret block (a dict Secret comes back unmasked from the API) and the
tenant file is rewritten to name the block. The Xero token set goes to the ledger's token store. Only the
person's part is here (consent page, browser, loopback callback, choosing the organisation): the calls to
Xero's identity service (`exchange_code`, `list_connections`) and to Autotask belong to clients/.
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from atx.connections import forget_clients, token_store
from atx.settings import SecretRef, SettingsError, TenantSettings, load_tenant, save_tenant
from clients.autotask import AutotaskClient, AutotaskError

DEFAULT_SCOPES = ("offline_access accounting.invoices accounting.payments accounting.contacts "
                  "accounting.settings accounting.attachments")


class ConnectError(RuntimeError):
    pass


def store_secret(block_name: str, value: str) -> str:
    from prefect.blocks.system import Secret

    Secret(value=value).save(block_name, overwrite=True)
    return f"block:{block_name}"


# ---- Autotask ------------------------------------------------------------------------------------
def connect_autotask(tenant: str, *, username: str, secret: str, integration_code: str,
                     zone_lookup_url: str | None = None) -> tuple[TenantSettings, str]:
    """Discover the zone, prove the credentials with one cheap call, then store them. Returns (settings, zone)."""
    settings = load_tenant(tenant)
    lookup = zone_lookup_url or settings.autotask.zone_lookup_url
    client = AutotaskClient(username=username, secret=secret, integration_code=integration_code, zone_lookup_url=lookup)
    try:
        with client as at:
            at.threshold()
            zone = at.zone_url
    except AutotaskError as exc:
        raise ConnectError(f"Autotask refused these credentials: {exc}. Nothing was stored.") from None
    except httpx.HTTPError as exc:
        raise ConnectError(f"cannot reach Autotask at {lookup} ({type(exc).__name__}). Nothing was stored.") from None
    ref = store_secret(f"{tenant}-autotask-secret", secret)
    autotask = settings.autotask.model_copy(update={
        "username": username, "integration_code": integration_code, "secret": ref, "zone_lookup_url": lookup,
    })
    settings = settings.model_copy(update={"autotask": autotask})
    save_tenant(settings)
    return settings, zone


# ---- Xero ----------------------------------------------------------------------------------------
@dataclass
class Consent:
    url: str
    redirect_uri: str
    state: str
    verifier: str


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def consent_url(authorize_url: str, client_id: str, redirect_uri: str, scopes: str) -> Consent:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    query = urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scopes,
        "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
    })
    return Consent(f"{authorize_url}?{query}", redirect_uri, state, verifier)


REFUSED_PAGE = ("Refused: this answer does not carry the state of the consent `atx connect xero` asked for (a stale "
                "browser tab, or a page that is not Xero's). Nothing was stored. Run `atx connect xero` again.")


class _Callback(http.server.BaseHTTPRequestHandler):
    result: dict = {}
    state: str = ""
    done: threading.Event

    def do_GET(self):  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self.send_response(404)
            self.end_headers()
            return
        answer = {k: v[0] for k, v in parse_qs(parts.query).items()}
        # The state proves the answer comes from the consent this command started (RFC 6749 §10.12): without
        # it, any page could make the browser deliver someone else's code here.
        expected = type(self).state
        if not expected or not secrets.compare_digest(answer.get("state", "").encode(), expected.encode()):
            type(self).result.update(refused=True)
            self._answer(400, REFUSED_PAGE)
            return
        type(self).result.update(answer)
        if "code" in answer:
            self._answer(200, "Connected. You can close this window and return to the terminal.")
        else:
            self._answer(200, "Xero did not grant access. Return to the terminal for details.")

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).done.set()

    def log_message(self, *args):  # the query string holds the code: keep it out of the terminal
        pass


def wait_for_callback(host: str, port: int, timeout: float, state: str) -> dict:
    """The consent's answer on the loopback callback, once it carries `state`; ConnectError when one that
    does not arrives first (its page says it was refused) or none arrives in time."""
    handler = type("Callback", (_Callback,), {"result": {}, "state": state, "done": threading.Event()})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        if not handler.done.wait(timeout):
            raise ConnectError(f"no answer from Xero's consent page within {int(timeout)} s; run the command again")
        if handler.result.get("refused"):
            raise ConnectError("refused an answer on the callback whose state does not match this request (a stale "
                               "browser tab, or a page that is not Xero's); nothing was stored: run the command again")
        return dict(handler.result)
    finally:
        server.shutdown()
        server.server_close()


def pick_org(connections: list[dict], wanted: str | None, choose=None) -> dict:
    orgs = [c for c in connections if c.get("tenantType", "ORGANISATION") == "ORGANISATION"]
    if not orgs:
        raise ConnectError("the consent granted no Xero organisation; run `atx connect xero` again and tick one")
    if wanted:
        found = [c for c in orgs if wanted in (c.get("tenantId"), c.get("tenantName"))]
        if not found:
            names = ", ".join(f"{c.get('tenantName')} ({c.get('tenantId')})" for c in orgs)
            raise ConnectError(f"organisation {wanted!r} was not granted; granted: {names}")
        return found[0]
    if len(orgs) == 1:
        return orgs[0]
    if choose is None:
        raise ConnectError("several organisations were granted: pass --org NAME_OR_TENANT_ID")
    return orgs[choose(orgs)]


def save_xero_connection(settings: TenantSettings, *, client_id: str, client_secret_ref: str, org: dict,
                         token: dict) -> TenantSettings:
    # The organisation's name is kept beside its id, so `atx tenant list` names it without asking Xero.
    xero = settings.xero.model_copy(update={"client_id": client_id, "client_secret": client_secret_ref,
                                            "tenant_id": org["tenantId"],
                                            "organisation": org.get("tenantName")})
    settings = settings.model_copy(update={"xero": xero})
    store = token_store(settings)
    with store.locked():
        store.save(token)
    save_tenant(settings)
    forget_clients(settings.name)
    return settings


def resolve_or_none(ref: str) -> str | None:
    try:
        return SecretRef(ref).resolve()
    except (SettingsError, ValueError):
        return None

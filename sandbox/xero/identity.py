"""Xero's identity service in miniature: OAuth 2.0 apps, consent, tokens, connections.

`IdentityStore` holds the state and the rules (code single use for 5 minutes, PKCE S256, access tokens
for 30 minutes, refresh-token rotation with a 30-minute grace for the previous token, 60-day expiry of
unused refresh tokens, revocation). `router` serves it over HTTP at Xero's paths:

    GET  /identity/connect/authorize        login.xero.com (consent auto-approves and redirects)
    POST /connect/token, /connect/revocation identity.xero.com
    GET  /connections, DELETE /connections/{id}   api.xero.com (any case: the SDK calls /Connections)

A "user" is whoever consents. The consent page acts as one sandbox user; `XeroSandbox.issue_tokens`
acts as a fresh user each time, so tokens issued there reach exactly the organisations asked for.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse

from sandbox.clock import Clock

ACCESS_TOKEN_SECONDS = 1800
ID_TOKEN_SECONDS = 300
CODE_LIFETIME = timedelta(minutes=5)
REFRESH_GRACE = timedelta(minutes=30)
REFRESH_UNUSED_LIFETIME = timedelta(days=60)

# Scopes an app may ask for. Broad accounting scopes (in the spec) and the granular ones that replace
# them are both accepted; `scopes_for_operation` says which of them open which endpoint.
_ACCOUNTING_SCOPES = [
    "accounting.transactions", "accounting.contacts", "accounting.settings", "accounting.attachments",
    "accounting.invoices", "accounting.payments", "accounting.banktransactions", "accounting.manualjournals",
]
KNOWN_SCOPES = frozenset(
    ["openid", "profile", "email", "offline_access",
     "accounting.reports.read", "accounting.journals.read", "accounting.budgets.read"]
    + _ACCOUNTING_SCOPES + [s + ".read" for s in _ACCOUNTING_SCOPES]
)
# Other Xero products and the per-report granular scopes: accepted at consent, never needed here.
_OTHER_SCOPE_PREFIXES = ("accounting.reports.", "payroll.", "assets", "projects", "files", "bankfeeds",
                         "paymentservices", "finance.", "app.connections", "marketplace.")


def is_known_scope(scope: str) -> bool:
    return scope in KNOWN_SCOPES or scope.startswith(_OTHER_SCOPE_PREFIXES)


class OAuthError(Exception):
    """An OAuth error as the token endpoint reports it: 400 {"error": ..., "error_description"?: ...}."""

    def __init__(self, error: str, description: str | None = None, status: int = 400):
        super().__init__(error if description is None else f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


class BearerError(Exception):
    """Why a bearer token was refused; `detail` is Xero's 401 Detail text."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass
class RegisteredApp:
    client_id: str
    client_secret: str | None  # None: a PKCE-only ("mobile or desktop") app
    redirect_uris: list[str]
    name: str

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"RegisteredApp(client_id={self.client_id!r}, name={self.name!r})"


@dataclass
class Connection:
    id: str
    client_id: str
    user_id: str
    tenant_id: str
    auth_event_id: str
    created: datetime
    updated: datetime


@dataclass
class AuthorizationCode:
    code: str = field(repr=False)
    client_id: str
    user_id: str
    redirect_uri: str
    scopes: list[str]
    auth_event_id: str
    code_challenge: str | None
    expires_at: datetime
    used: bool = False


@dataclass
class AccessToken:
    token: str = field(repr=False)
    client_id: str
    user_id: str
    auth_event_id: str
    scopes: list[str]
    expires_at: datetime
    revoked: bool = False


@dataclass
class RefreshToken:
    token: str = field(repr=False)
    client_id: str
    user_id: str
    auth_event_id: str
    scopes: list[str]
    issued_at: datetime
    rotated_at: datetime | None = None  # when a successor was issued; the grace period runs from here
    revoked: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_looking(claims: dict) -> str:
    # Shaped like Xero's RS256 JWTs; the sandbox looks tokens up, so the signature is just noise.
    header = {"alg": "RS256", "kid": "1CAF8A4B4EDA9C3B", "typ": "JWT"}
    return ".".join([_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()),
                     _b64url(secrets.token_bytes(64))])


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for a PKCE code verifier."""
    return _b64url(hashlib.sha256(verifier.encode()).digest())


class IdentityStore:
    def __init__(self, clock: Clock):
        self.clock = clock
        self._lock = threading.RLock()
        self.apps: dict[str, RegisteredApp] = {}
        self.connections: dict[str, Connection] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}

    # --- a sandbox that survives a restart ------------------------------------------------------------
    def export_state(self) -> dict:
        """Apps, connections and the tokens that can still be used: what a restarted sandbox needs so that
        a token set stored by the sync still reaches its organisations and still refreshes. Codes (five
        minutes) and tokens that can never be used again (expired access tokens; refresh tokens revoked,
        past their grace or unused too long) are left out."""
        now = self.clock.now()
        with self._lock:
            return {
                "apps": [asdict(a) for a in self.apps.values()],
                "connections": [asdict(c) for c in self.connections.values()],
                "access": [asdict(t) for t in self._access.values() if not t.revoked and t.expires_at > now],
                "refresh": [asdict(t) for t in self._refresh.values() if not self._refresh_dead(t, now)],
            }

    def import_state(self, state: dict) -> None:
        with self._lock:
            self.apps = {a["client_id"]: RegisteredApp(**a) for a in state["apps"]}
            self.connections = {c["id"]: Connection(**c) for c in state["connections"]}
            self._codes = {}
            self._access = {t["token"]: AccessToken(**t) for t in state["access"]}
            self._refresh = {t["token"]: RefreshToken(**t) for t in state["refresh"]}

    @staticmethod
    def _refresh_dead(token: "RefreshToken", now: datetime) -> bool:
        return (token.revoked or (token.rotated_at is not None and now > token.rotated_at + REFRESH_GRACE)
                or now > token.issued_at + REFRESH_UNUSED_LIFETIME)

    # --- apps and client authentication -------------------------------------------------------------
    def register_app(self, client_id: str, client_secret: str | None, redirect_uris=(), name: str = "Autotask Sync") -> None:
        with self._lock:
            self.apps[client_id] = RegisteredApp(client_id, client_secret or None, list(redirect_uris), name)

    def authenticate_client(self, client_id: str | None, client_secret: str | None) -> RegisteredApp:
        app = self.apps.get(client_id or "")
        if app is None:
            raise OAuthError("invalid_client")
        if app.client_secret is not None and not secrets.compare_digest(
            (client_secret or "").encode(), app.client_secret.encode()
        ):
            raise OAuthError("invalid_client")
        return app

    # --- consent and the authorization code ---------------------------------------------------------
    def consent(self, client_id: str, user_id: str, tenant_ids: list[str]) -> str:
        """The user grants the app these organisations; returns the consent's auth event id.

        Consenting again to an organisation already connected keeps the connection and moves it to the
        new auth event, as Xero does.
        """
        auth_event_id = str(uuid.uuid4())
        now = self.clock.now()
        with self._lock:
            existing = {(c.user_id, c.tenant_id): c for c in self.connections.values() if c.client_id == client_id}
            for tenant_id in tenant_ids:
                connection = existing.get((user_id, tenant_id))
                if connection is None:
                    connection = Connection(str(uuid.uuid4()), client_id, user_id, tenant_id, auth_event_id, now, now)
                    self.connections[connection.id] = connection
                else:
                    connection.auth_event_id = auth_event_id
                    connection.updated = now
        return auth_event_id

    def create_code(self, *, client_id: str, user_id: str, redirect_uri: str, scopes: list[str],
                    auth_event_id: str, code_challenge: str | None) -> str:
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = AuthorizationCode(code, client_id, user_id, redirect_uri, scopes, auth_event_id,
                                                  code_challenge, self.clock.now() + CODE_LIFETIME)
        return code

    def redeem_code(self, app: RegisteredApp, code: str | None, redirect_uri: str | None,
                    code_verifier: str | None) -> dict:
        with self._lock:
            grant = self._codes.get(code or "")
            if grant is None or grant.used or grant.client_id != app.client_id:
                raise OAuthError("invalid_grant")
            grant.used = True
            if self.clock.now() >= grant.expires_at:
                raise OAuthError("invalid_grant", "authorization code expired")
            if redirect_uri != grant.redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
            if grant.code_challenge is not None:
                if not code_verifier or not secrets.compare_digest(pkce_challenge(code_verifier), grant.code_challenge):
                    raise OAuthError("invalid_grant", "invalid code_verifier")
            elif app.client_secret is None:
                raise OAuthError("invalid_grant", "code_verifier required")
            return self.issue(app.client_id, grant.user_id, grant.auth_event_id, grant.scopes)

    # --- tokens --------------------------------------------------------------------------------------
    def issue(self, client_id: str, user_id: str, auth_event_id: str, scopes: list[str]) -> dict:
        now = self.clock.now()
        expires_at = now + timedelta(seconds=ACCESS_TOKEN_SECONDS)
        claims = {
            "nbf": int(now.timestamp()), "exp": int(expires_at.timestamp()), "iss": "https://identity.xero.com",
            "aud": "https://identity.xero.com/resources", "client_id": client_id, "sub": user_id,
            "auth_time": int(now.timestamp()), "xero_userid": user_id, "global_session_id": uuid.uuid4().hex,
            "jti": uuid.uuid4().hex, "authentication_event_id": auth_event_id, "scope": scopes,
        }
        access = _jwt_looking(claims)
        response = {"access_token": access, "expires_in": ACCESS_TOKEN_SECONDS, "token_type": "Bearer",
                    "scope": " ".join(scopes)}
        with self._lock:
            self._access[access] = AccessToken(access, client_id, user_id, auth_event_id, scopes, expires_at)
            if "offline_access" in scopes:
                refresh = secrets.token_hex(32)
                self._refresh[refresh] = RefreshToken(refresh, client_id, user_id, auth_event_id, scopes, now)
                response["refresh_token"] = refresh
        if "openid" in scopes:
            response["id_token"] = _jwt_looking({
                "nbf": claims["nbf"], "exp": int((now + timedelta(seconds=ID_TOKEN_SECONDS)).timestamp()),
                "iss": claims["iss"], "aud": client_id, "sub": user_id, "xero_userid": user_id,
                "email": f"{user_id[:8]}@sandbox.invalid", "given_name": "Sandbox", "family_name": "User",
            })
        return response

    def refresh(self, app: RegisteredApp, refresh_token: str | None, requested_scope: str | None) -> dict:
        now = self.clock.now()
        with self._lock:
            token = self._refresh.get(refresh_token or "")
            if token is None or token.revoked or token.client_id != app.client_id:
                raise OAuthError("invalid_grant")
            if token.rotated_at is not None and now > token.rotated_at + REFRESH_GRACE:
                raise OAuthError("invalid_grant")
            if now > token.issued_at + REFRESH_UNUSED_LIFETIME:
                raise OAuthError("invalid_grant")
            if requested_scope and not set(requested_scope.split()) <= set(token.scopes):
                raise OAuthError("invalid_scope")
            if token.rotated_at is None:
                token.rotated_at = now
            return self.issue(token.client_id, token.user_id, token.auth_event_id, token.scopes)

    def revoke(self, app: RegisteredApp, token: str | None) -> None:
        """Revoke a refresh token: the user's grant to this app ends, with all its connections."""
        with self._lock:
            found = self._refresh.get(token or "")
            if found is None or found.client_id != app.client_id:
                return  # RFC 7009: unknown tokens are not an error
            self.disconnect_user(app.client_id, found.user_id)

    def disconnect_user(self, client_id: str, user_id: str) -> None:
        with self._lock:
            for refresh in self._refresh.values():
                if refresh.client_id == client_id and refresh.user_id == user_id:
                    refresh.revoked = True
            for access in self._access.values():
                if access.client_id == client_id and access.user_id == user_id:
                    access.revoked = True
            for connection_id in [c.id for c in self.connections.values()
                                  if c.client_id == client_id and c.user_id == user_id]:
                del self.connections[connection_id]

    def users_of(self, client_id: str) -> set[str]:
        with self._lock:
            return {t.user_id for t in list(self._refresh.values()) + list(self._access.values())
                    if t.client_id == client_id}

    def bearer(self, authorization: str | None) -> AccessToken:
        """The access token behind an Authorization header, or BearerError with Xero's 401 detail."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise BearerError("AuthorizationUnsuccessful")
        with self._lock:
            token = self._access.get(value.strip())
        if token is None or token.revoked:
            raise BearerError("AuthorizationUnsuccessful")
        if self.clock.now() >= token.expires_at:
            raise BearerError(f"TokenExpired: token expired at {token.expires_at:%m/%d/%Y %H:%M:%S}")
        return token

    # --- connections ---------------------------------------------------------------------------------
    def connections_of(self, client_id: str, user_id: str) -> list[Connection]:
        with self._lock:
            return sorted((c for c in self.connections.values() if c.client_id == client_id and c.user_id == user_id),
                          key=lambda c: c.created)

    def is_connected(self, client_id: str, user_id: str, tenant_id: str) -> bool:
        return any(c.tenant_id == tenant_id for c in self.connections_of(client_id, user_id))

    def delete_connection(self, client_id: str, user_id: str, connection_id: str) -> bool:
        with self._lock:
            connection = self.connections.get(connection_id)
            if connection is None or connection.client_id != client_id or connection.user_id != user_id:
                return False
            del self.connections[connection_id]
            return True


# --- HTTP ------------------------------------------------------------------------------------------------

router = APIRouter()


def _sandbox(request: Request):
    return request.app.state.xero


def _redirect_with(redirect_uri: str, params: dict) -> RedirectResponse:
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query) + [(k, v) for k, v in params.items() if v is not None]
    return RedirectResponse(urlunsplit(parts._replace(query=urlencode(query))), status_code=302)


@router.get("/identity/connect/authorize")
def authorize(request: Request):
    """Xero's consent page, approving at once: redirects back with a code (or an error)."""
    sandbox = _sandbox(request)
    q = request.query_params
    app = sandbox.identity.apps.get(q.get("client_id", ""))
    if app is None:
        return PlainTextResponse("unauthorized_client: unknown client_id", status_code=400)
    redirect_uri = q.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:
        # Never redirect to an unregistered address: that is how codes get stolen.
        return PlainTextResponse("invalid_request: redirect_uri is not registered for this app", status_code=400)
    state = q.get("state")

    def refuse(error: str, description: str) -> RedirectResponse:
        return _redirect_with(redirect_uri, {"error": error, "error_description": description, "state": state})

    if q.get("response_type") != "code":
        return refuse("unsupported_response_type", "response_type must be code")
    scopes = q.get("scope", "").split()
    if not scopes:
        return refuse("invalid_scope", "scope is required")
    unknown = [s for s in scopes if not is_known_scope(s)]
    if unknown:
        return refuse("invalid_scope", f"unknown scope {unknown[0]}")
    code_challenge = q.get("code_challenge")
    if code_challenge and q.get("code_challenge_method", "plain") != "S256":
        return refuse("invalid_request", "code_challenge_method must be S256")
    if app.client_secret is None and not code_challenge:
        return refuse("invalid_request", "code_challenge is required")
    tenant_ids = sandbox.consent_tenant_ids(q.get("sandbox_orgs"))
    auth_event_id = sandbox.identity.consent(app.client_id, sandbox.consent_user_id, tenant_ids)
    code = sandbox.identity.create_code(client_id=app.client_id, user_id=sandbox.consent_user_id,
                                        redirect_uri=redirect_uri, scopes=scopes, auth_event_id=auth_event_id,
                                        code_challenge=code_challenge)
    return _redirect_with(redirect_uri, {"code": code, "scope": " ".join(scopes), "state": state,
                                         "session_state": secrets.token_urlsafe(16)})


def _client_credentials(request: Request, form: dict) -> tuple[str | None, str | None]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            client_id, _, client_secret = base64.b64decode(value).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client")
        return client_id, client_secret
    return form.get("client_id"), form.get("client_secret")


async def _form(request: Request) -> dict:
    """The endpoint's parameters, which OAuth 2.0 sends form-encoded only (RFC 6749 3.2, 2.3.1): a JSON
    body is refused as a malformed request rather than read."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


def _oauth_error(error: OAuthError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers={"Cache-Control": "no-store"})


@router.post("/connect/token")
async def token(request: Request):
    sandbox = _sandbox(request)
    try:
        form = await _form(request)
        app = sandbox.identity.authenticate_client(*_client_credentials(request, form))
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            body = sandbox.identity.redeem_code(app, form.get("code"), form.get("redirect_uri"),
                                                form.get("code_verifier"))
        elif grant_type == "refresh_token":
            body = sandbox.identity.refresh(app, form.get("refresh_token"), form.get("scope"))
        elif not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        else:
            raise OAuthError("unsupported_grant_type")
    except OAuthError as error:
        return _oauth_error(error)
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post("/connect/revocation")
async def revocation(request: Request):
    sandbox = _sandbox(request)
    try:
        form = await _form(request)
        app = sandbox.identity.authenticate_client(*_client_credentials(request, form))
    except OAuthError as error:
        return _oauth_error(error)
    if not form.get("token"):
        return _oauth_error(OAuthError("invalid_request", "token is required"))
    sandbox.identity.revoke(app, form.get("token"))
    return Response(status_code=200)


def unauthorized(detail: str) -> JSONResponse:
    """Xero's 401 body for a missing, unknown, revoked or expired access token."""
    return JSONResponse({"Type": None, "Title": "Unauthorized", "Status": 401, "Detail": detail,
                         "Instance": str(uuid.uuid4()), "Extensions": {}},
                        status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _xero_datetime(value: datetime) -> str:
    # Xero writes connection dates as ISO without an offset, to 7 fractional digits.
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def _connection_json(connection: Connection, tenant_name: str) -> dict:
    return {"id": connection.id, "authEventId": connection.auth_event_id, "tenantId": connection.tenant_id,
            "tenantType": "ORGANISATION", "tenantName": tenant_name,
            "createdDateUtc": _xero_datetime(connection.created), "updatedDateUtc": _xero_datetime(connection.updated)}


@router.get("/connections")
def list_connections(request: Request, authEventId: str | None = None):
    sandbox = _sandbox(request)
    try:
        access = sandbox.identity.bearer(request.headers.get("authorization"))
    except BearerError as error:
        return unauthorized(error.detail)
    connections = sandbox.identity.connections_of(access.client_id, access.user_id)
    if authEventId:
        connections = [c for c in connections if c.auth_event_id.lower() == authEventId.lower()]
    return [_connection_json(c, getattr(sandbox.orgs.get(c.tenant_id), "name", "")) for c in connections]


@router.delete("/connections/{connection_id}")
def delete_connection(request: Request, connection_id: str):
    sandbox = _sandbox(request)
    try:
        access = sandbox.identity.bearer(request.headers.get("authorization"))
    except BearerError as error:
        return unauthorized(error.detail)
    if not sandbox.identity.delete_connection(access.client_id, access.user_id, connection_id):
        return JSONResponse({"Type": None, "Title": "Not Found", "Status": 404, "Detail": "Connection not found",
                             "Instance": str(uuid.uuid4()), "Extensions": {}}, status_code=404)
    return Response(status_code=204)

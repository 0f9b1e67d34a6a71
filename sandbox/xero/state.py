"""Everything one Xero sandbox knows: its organisations, registered apps, tokens, limits and faults."""
from __future__ import annotations

import copy
import uuid
from dataclasses import fields

from sandbox.clock import Clock, SystemClock
from sandbox.faults import FaultConfig
from sandbox.xero.identity import IdentityStore
from sandbox.xero.limits import RateLimiter, XeroLimits
from sandbox.xero.org import XeroOrg, seed_org
from sandbox.xero.webhooks import WebhookSubscription

# XeroOrg fields that belong to the running process, not to the organisation.
_NOT_SAVED = {"clock", "lock"}


# The scopes a sync needs, granular (what apps created since March 2026 get).
DEFAULT_SCOPES = ["offline_access", "accounting.invoices", "accounting.payments", "accounting.contacts",
                  "accounting.settings", "accounting.attachments"]


class XeroSandbox:
    def __init__(self, clock: Clock | None = None, limits: XeroLimits | None = None,
                 faults: FaultConfig | None = None, latency: float = 0.0):
        self.clock: Clock = clock or SystemClock()
        self.orgs: dict[str, XeroOrg] = {}
        self.identity = IdentityStore(self.clock)
        self.limiter = RateLimiter(self.clock, limits or XeroLimits())
        self.faults = faults or FaultConfig()
        # Seconds each admitted accounting call takes to answer (see sandbox.xero.app); change it any time.
        self.latency = latency
        # A rate-limit fault looks like Xero's own minute limit unless a test says otherwise.
        self.faults.headers_429.setdefault("X-Rate-Limit-Problem", "minute")
        # The user who clicks "Allow" on the consent page, and the organisations they tick
        # (tenant ids or names; None = every organisation in the sandbox).
        self.consent_user_id = str(uuid.uuid4())
        self.consent_orgs: list[str] | None = None
        # The app's webhook subscription (see subscribe_webhooks); None: no webhooks are sent.
        self.webhooks: WebhookSubscription | None = None

    # ---- a sandbox that survives a restart (sandbox/persist.py) ----------------------------------------
    def export_state(self) -> dict:
        """The organisations with every document, the registered apps, connections and live tokens, and the
        consenting user. Not kept: the rate limiters' counts, faults, latency and webhook subscriptions."""
        orgs = []
        for org in self.orgs.values():
            with org.lock:
                # Copied under the lock, so a snapshot never holds half a batch.
                orgs.append({f.name: copy.deepcopy(getattr(org, f.name)) for f in fields(org) if f.name not in _NOT_SAVED})
        return {"orgs": orgs, "identity": self.identity.export_state(), "consent_user_id": self.consent_user_id,
                "consent_orgs": self.consent_orgs}

    def import_state(self, state: dict) -> None:
        self.orgs.clear()
        for saved in state["orgs"]:
            org = XeroOrg(clock=self.clock, **saved)
            self.orgs[org.tenant_id] = org
        self.identity.import_state(state["identity"])
        self.consent_user_id = state["consent_user_id"]
        self.consent_orgs = state.get("consent_orgs")

    @property
    def limits(self) -> XeroLimits:
        return self.limiter.limits

    @limits.setter
    def limits(self, limits: XeroLimits) -> None:
        self.limiter.set_limits(limits)

    def subscribe_webhooks(self, url: str, key: str, *, delay: float = 0.2, retries: int = 3,
                           backoff: float = 0.2) -> WebhookSubscription:
        """Configure the webhook subscription, as a developer does in Xero's portal: INVOICE and CONTACT
        events of every organisation, POSTed to `url` and signed with `key`. Events are delivered once
        `webhook_intent_to_receive()` has passed. A second call replaces the first subscription."""
        self.unsubscribe_webhooks()
        self.webhooks = WebhookSubscription(url, key, delay=delay, retries=retries, backoff=backoff)
        return self.webhooks

    def webhook_intent_to_receive(self) -> bool:
        """Run Xero's intent-to-receive handshake against the subscription's URL: True when the
        receiver answered 200 (empty body) to the signed requests and 401 to the others, in time."""
        if self.webhooks is None:
            raise RuntimeError("no webhook subscription: call subscribe_webhooks(url, key) first")
        return self.webhooks.intent_to_receive()

    def unsubscribe_webhooks(self) -> None:
        if self.webhooks is not None:
            self.webhooks.close()
            self.webhooks = None

    def add_org(self, name: str, country_code: str, *, tenant_id: str | None = None, **seed_kwargs) -> XeroOrg:
        org = seed_org(name, country_code, self.clock, tenant_id=tenant_id, **seed_kwargs)
        self.orgs[org.tenant_id] = org
        return org

    def org_named(self, name: str) -> XeroOrg:
        return next(org for org in self.orgs.values() if org.name == name)

    def register_app(self, client_id: str, client_secret: str | None, redirect_uris=(),
                     name: str = "Autotask Sync") -> None:
        """Register an app as the Xero developer portal would. A None secret makes a PKCE-only app."""
        self.identity.register_app(client_id, client_secret, redirect_uris, name)

    def app_name(self, client_id: str) -> str:
        app = self.identity.apps.get(client_id)
        return app.name if app else client_id

    def issue_tokens(self, client_id: str, tenant_ids: list[str] | None = None, scopes: list[str] | None = None,
                     *, user_id: str | None = None) -> dict:
        """A token response for a new consent to these organisations, skipping the consent page.

        Each call is a different user unless `user_id` is given, so the tokens reach exactly these
        organisations (default: all of them).
        """
        if client_id not in self.identity.apps:
            raise KeyError(f"app {client_id!r} is not registered")
        tenant_ids = list(self.orgs) if tenant_ids is None else list(tenant_ids)
        unknown = [t for t in tenant_ids if t not in self.orgs]
        if unknown:
            raise KeyError(f"no organisation with tenant id {unknown[0]!r}")
        user_id = user_id or str(uuid.uuid4())
        auth_event_id = self.identity.consent(client_id, user_id, tenant_ids)
        return self.identity.issue(client_id, user_id, auth_event_id, list(scopes or DEFAULT_SCOPES))

    def disconnect_app(self, client_id: str, *, user_id: str | None = None) -> None:
        """What a user clicking "Disconnect" in Xero does: the app's tokens stop working and its
        connections go (for one user, or for everyone)."""
        users = {user_id} if user_id else {c.user_id for c in self.identity.connections.values()
                                           if c.client_id == client_id} | self.identity.users_of(client_id)
        for user in users:
            self.identity.disconnect_user(client_id, user)

    def consent_tenant_ids(self, requested: str | None = None) -> list[str]:
        """The organisations the consent page grants: those named in `requested` (comma separated
        tenant ids or names), else `consent_orgs`, else all."""
        wanted = [w.strip() for w in requested.split(",") if w.strip()] if requested else self.consent_orgs
        if not wanted:
            return list(self.orgs)
        return [org.tenant_id for org in self.orgs.values() if org.tenant_id in wanted or org.name in wanted]

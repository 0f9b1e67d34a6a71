"""The Xero webhook receiver: Xero pushes INVOICE and CONTACT events, and each becomes a Prefect event
that a deployment trigger can act on (a payment shows up as an INVOICE UPDATE).

    POST /webhooks/xero      x-xero-signature: base64(HMAC-SHA256(raw body, webhook key))

Every request's signature is checked on the raw body with `hmac.compare_digest`; a wrong or missing
one is answered 401 with an empty body, which is also how Xero's "intent to receive" handshake is
passed (an empty `events` list, correctly signed: 200 with an empty body; wrongly signed: 401). A good
delivery emits one Prefect event per Xero event, named `xero.invoice.updated`, `xero.invoice.created`,
`xero.contact.updated` or `xero.contact.created`, on the resource `xero.organisation.<tenantId>` with
the tenant whose `xero.tenant_id` it is. Events of an organisation no tenant has are logged and dropped.

The key is never logged and never answered; neither are bodies (only their size).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

log = logging.getLogger("atx.webhooks")

PATH = "/webhooks/xero"
KEY_ENV = "ATX_XERO_WEBHOOK_KEY"
_ACTIONS = {"CREATE": "created", "UPDATE": "updated"}
_CATEGORIES = {"INVOICE": "invoice", "CONTACT": "contact"}
# Prefect event ids derived from the Xero event, so a delivery Xero retries gives the same ids.
_EVENT_NAMESPACE = uuid.UUID("6f1c9a52-37a3-4c1e-9a0e-2f5b8f4d7c11")

Emit = Callable[..., object]


def signature(key: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode("ascii")


def signature_matches(key: str, body: bytes, given: str | None) -> bool:
    if not given:
        return False
    expected = signature(key, body).encode("ascii")
    return hmac.compare_digest(expected, given.strip().encode("latin-1", errors="replace"))


def prefect_event(xero_event: dict, tenant: str) -> dict | None:
    """The keyword arguments of `emit_event` for one Xero event; None when it is of no kind we know."""
    category = _CATEGORIES.get(str(xero_event.get("eventCategory", "")).upper())
    action = _ACTIONS.get(str(xero_event.get("eventType", "")).upper())
    tenant_id = str(xero_event.get("tenantId", "")).lower()
    if category is None or action is None or not tenant_id:
        return None
    resource_id = str(xero_event.get("resourceId", ""))
    identity = "/".join([tenant_id, category, resource_id, action, str(xero_event.get("eventDateUtc", ""))])
    return {
        "event": f"xero.{category}.{action}",
        "resource": {"prefect.resource.id": f"xero.organisation.{tenant_id}", "xero.tenant-id": tenant_id,
                     "atx.tenant": tenant},
        "related": [{"prefect.resource.id": f"xero.{category}.{resource_id}", "prefect.resource.role": category}],
        "payload": {key: xero_event.get(key) for key in
                    ("resourceId", "resourceUrl", "eventDateUtc", "eventType", "eventCategory", "tenantType")},
        "id": uuid.uuid5(_EVENT_NAMESPACE, identity),
    }


def create_app(key: str, tenants_by_org: Mapping[str, str], emit: Emit) -> FastAPI:
    """The receiver as a pure function of its key, the organisations' tenants (tenantId -> tenant name)
    and the function that emits a Prefect event (`prefect.events.emit_event`; tests pass a recorder)."""
    if not key:
        raise ValueError("the Xero webhook key is empty")
    tenants = {org.lower(): name for org, name in tenants_by_org.items()}
    app = FastAPI(title="atx Xero webhooks", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post(PATH)
    async def receive(request: Request) -> Response:
        raw = await request.body()
        client = request.client.host if request.client else "?"
        if not signature_matches(key, raw, request.headers.get("x-xero-signature")):
            log.warning("refused a Xero webhook from %s: its x-xero-signature does not match (%d bytes)",
                        client, len(raw))
            return Response(status_code=401)
        try:
            body = json.loads(raw)
            events = body["events"]
            if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            log.warning("refused a signed Xero webhook from %s: the body is not a webhook payload (%d bytes)",
                        client, len(raw))
            return Response(status_code=400)
        if not events:  # the intent to receive
            return Response(status_code=200)
        to_emit, dropped = [], {}
        for xero_event in events:
            org = str(xero_event.get("tenantId", "")).lower()
            if org not in tenants:
                dropped[org] = dropped.get(org, 0) + 1
                continue
            kwargs = prefect_event(xero_event, tenants[org])
            if kwargs is None:
                log.info("ignored a Xero %s %s event for tenant %s", xero_event.get("eventCategory"),
                         xero_event.get("eventType"), tenants[org])
                continue
            to_emit.append(kwargs)
        for org, count in dropped.items():
            log.warning("dropped %d Xero event(s) for organisation %s: no tenant has that xero.tenant_id",
                        count, org or "(none)")
        try:
            await run_in_threadpool(lambda: [emit(**kwargs) for kwargs in to_emit])
        except Exception as error:  # not 200, so Xero delivers the events again
            log.error("could not emit %d Prefect event(s): %s", len(to_emit), type(error).__name__)
            return Response(status_code=500)
        log.info("received events %s..%s: emitted %d Prefect event(s)", body.get("firstEventSequence"),
                 body.get("lastEventSequence"), len(to_emit))
        return Response(status_code=200)

    return app


def tenants_by_organisation(tenants) -> dict[str, str]:
    """tenantId -> tenant name for tenant settings; a second tenant on one organisation is ignored."""
    out: dict[str, str] = {}
    for tenant in sorted(tenants, key=lambda t: t.name):
        org = tenant.xero.tenant_id.lower()
        if org in out:
            log.warning("tenants %s and %s name one Xero organisation %s: its events go to %s",
                        out[org], tenant.name, org, out[org])
            continue
        out[org] = tenant.name
    return out


def resolve_key(reference: str | None = None) -> str:
    """The webhook key: a reference (`env:NAME` or `block:NAME`, as in tenant files), default
    `env:ATX_XERO_WEBHOOK_KEY`."""
    from atx.settings import SecretRef

    return SecretRef(reference or f"env:{KEY_ENV}").resolve()

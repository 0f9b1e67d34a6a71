"""Xero's webhooks, simulated: a subscription (URL + webhook key) that is told about every invoice and
contact the sandbox saves, and delivers signed payloads to the URL from a background thread.

What Xero does, and so what this does (see shared specs: xero-webhooks.yaml):
- only INVOICE and CONTACT events (CREATE, UPDATE); a payment applied or deleted changes its invoice,
  so it arrives as an INVOICE UPDATE;
- thin events: the resource id and URL, never the record;
- each body is signed: base64 of HMAC-SHA256 of the raw body with the webhook key, in `x-xero-signature`;
- events are batched: changes made within `delay` seconds of the first one go in one payload, with
  increasing `firstEventSequence` / `lastEventSequence` and random `entropy`;
- nothing is delivered until the receiver passes the "intent to receive" handshake (an empty `events`
  list, once correctly signed and once not: 200 with an empty body and 401, each within 5 seconds);
- a failed delivery is retried a few times with a short backoff (Xero keeps retrying for hours), and
  never affects the API call that caused it.

Choices where Xero's behaviour is not public: one subscription per sandbox covers every organisation in
it; events saved before the handshake passed are dropped (counted in `dropped`).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx

log = logging.getLogger("sandbox.xero.webhooks")

RESOURCE_BASE = "https://api.xero.com/api.xro/2.0"
CATEGORIES = {"invoices": ("INVOICE", "Invoices"), "contacts": ("CONTACT", "Contacts")}
INTENT_DEADLINE = 5.0
MAX_EVENTS_PER_PAYLOAD = 100


def sign(key: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode("ascii")


def event_time(moment: datetime | None) -> str:
    """Xero's eventDateUtc: UTC, milliseconds, no offset (`2025-12-02T00:44:09.923`)."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _entropy() -> str:
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))


@dataclass
class Delivery:
    """One POST the subscription made: how many events, which sequence numbers, and the answer."""
    events: int
    first_sequence: int
    last_sequence: int
    status: int | None  # None: no answer (connection refused, timeout)
    attempt: int


@dataclass
class IntentCheck:
    signed_correctly: bool
    status: int | None
    body: bytes
    seconds: float

    @property
    def passed(self) -> bool:
        if self.status is None or self.seconds > INTENT_DEADLINE:
            return False
        return (self.status == 200 and not self.body) if self.signed_correctly else self.status == 401


@dataclass
class WebhookSubscription:
    url: str
    key: str = field(repr=False)
    delay: float = 0.2          # how long changes are gathered into one payload
    retries: int = 3            # further attempts after a failed delivery
    backoff: float = 0.2        # seconds before the first retry, doubling
    verified: bool = False
    deliveries: list[Delivery] = field(default_factory=list)
    intent_checks: list[IntentCheck] = field(default_factory=list)
    dropped: int = 0

    def __post_init__(self) -> None:
        self._pending: list[dict] = []
        self._first_pending_at: float | None = None
        self._in_flight = 0
        self._sequence = 0
        self._closed = False
        self._cond = threading.Condition()
        self._http = httpx.Client(timeout=INTENT_DEADLINE)
        self._thread = threading.Thread(target=self._run, daemon=True, name="xero-webhooks")
        self._thread.start()

    # ---- what the sandbox calls when it saves -----------------------------------------------------
    def notify(self, events: list[dict]) -> None:
        """Queue events (without sequence numbers); returns at once, whatever the receiver does."""
        if not events:
            return
        with self._cond:
            if self._closed:
                return
            if not self.verified:
                self.dropped += len(events)
                log.info("dropped %d webhook events: the intent to receive has not passed yet", len(events))
                return
            for event in events:
                self._sequence += 1
                self._pending.append({**event, "_sequence": self._sequence})
            if self._first_pending_at is None:
                self._first_pending_at = time.monotonic()
            self._cond.notify_all()

    # ---- the handshake ----------------------------------------------------------------------------
    def intent_to_receive(self) -> bool:
        """Xero's handshake: empty payloads, correctly and wrongly signed, in a random order. The
        subscription delivers events only once this has passed."""
        checks = [True, False, True, False]
        secrets.SystemRandom().shuffle(checks)
        results = [self._intent_request(good) for good in checks]
        self.intent_checks = results
        passed = all(r.passed for r in results)
        with self._cond:
            self.verified = passed
        return passed

    def _intent_request(self, signed_correctly: bool) -> IntentCheck:
        body = json.dumps({"events": [], "firstEventSequence": 0, "lastEventSequence": 0,
                           "entropy": _entropy()}, separators=(",", ":")).encode()
        key = self.key if signed_correctly else secrets.token_urlsafe(32)
        started = time.monotonic()
        try:
            response = self._http.post(self.url, content=body, headers=self._headers(key, body))
            status, content = response.status_code, response.content
        except httpx.HTTPError:
            status, content = None, b""
        return IntentCheck(signed_correctly, status, content, time.monotonic() - started)

    # ---- delivery ---------------------------------------------------------------------------------
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued event was delivered (or given up on); True when nothing is left."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._first_pending_at is not None:
                self._first_pending_at = float("-inf")  # deliver what is queued now, without the delay
            self._cond.notify_all()
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._http.close()

    def _headers(self, key: str, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", "x-xero-signature": sign(key, body)}

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    self._cond.wait(self._wait_for())
                if self._closed:
                    return
                batch, self._pending = self._pending[:MAX_EVENTS_PER_PAYLOAD], self._pending[MAX_EVENTS_PER_PAYLOAD:]
                self._first_pending_at = time.monotonic() if self._pending else None
                self._in_flight += 1
            try:
                self._deliver(batch)
            except Exception:  # a broken receiver must never stop the thread
                log.exception("webhook delivery to the subscription failed")
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _due(self) -> bool:
        return bool(self._pending) and self._first_pending_at is not None and (
            time.monotonic() - self._first_pending_at >= self.delay)

    def _wait_for(self) -> float | None:
        if not self._pending or self._first_pending_at is None:
            return None
        return max(0.0, self.delay - (time.monotonic() - self._first_pending_at))

    def _deliver(self, batch: list[dict]) -> None:
        first, last = batch[0]["_sequence"], batch[-1]["_sequence"]
        body = json.dumps({"events": [{k: v for k, v in e.items() if k != "_sequence"} for e in batch],
                           "firstEventSequence": first, "lastEventSequence": last, "entropy": _entropy()},
                          separators=(",", ":")).encode()
        wait = self.backoff
        for attempt in range(1, self.retries + 2):
            try:
                status = self._http.post(self.url, content=body, headers=self._headers(self.key, body)).status_code
            except httpx.HTTPError:
                status = None
            self.deliveries.append(Delivery(len(batch), first, last, status, attempt))
            if status == 200 or self._closed or attempt > self.retries:
                break
            log.info("webhook delivery of events %d..%d answered %s; retrying", first, last, status)
            time.sleep(wait)
            wait *= 2
        if status != 200:
            log.warning("gave up delivering webhook events %d..%d (last answer %s)", first, last, status)


def events_for(org, changes: list[tuple[dict, str, bool]]) -> list[dict]:
    """Xero events for the documents one committed write changed: (collection, key, existed before)."""
    collections = {id(org.invoices): "invoices", id(org.contacts): "contacts"}
    events: list[dict] = []
    for collection, key, existed in changes:
        name = collections.get(id(collection))
        document = collection.get(key)
        if name is None or document is None:
            continue
        category, path = CATEGORIES[name]
        events.append({
            "resourceUrl": f"{RESOURCE_BASE}/{path}/{key}",
            "resourceId": key,
            "eventDateUtc": event_time(document.get("UpdatedDateUTC")),
            "eventType": "UPDATE" if existed else "CREATE",
            "eventCategory": category,
            "tenantId": org.tenant_id,
            "tenantType": "ORGANISATION",
        })
    return events

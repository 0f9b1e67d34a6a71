"""Autotask PSA REST client: zone discovery, paged queries, limits and clear errors.

Autotask answers many failures with HTTP 500 and a list of strings, rejects bursts per endpoint
("Thread Threshold Exceeded") and caps each database at a rolling hourly request count. This client
keeps at most `threads_per_entity` requests in flight per endpoint (a slot of the `CallLimits` it is
given, shared by every client of the integration when they share one), stops before the hourly
threshold when given an `HourlyThreshold`, backs off on both limits, retries reads that fail in
transit or with a 5xx, and turns the rest into `AutotaskError` subclasses that say what to fix.
Numbers are parsed as Decimal.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

import httpx

from clients.http import tls
from clients.limits import CallLimits, LocalLimits, backoff
from core.audit import AuditSink, write_entry
from core.documents import (DocumentKind, DocumentPlan, Status, TargetError, TargetLimitReached, TargetOutcomeUnknown,
                            Written, XeroDocument)
from core.payments import paid_date_key
from core.writeback import key_fields, write_key

MAX_PAGE_SIZE = 500
MAX_PAGES = 10_000  # malformed cursors have been seen to cycle; never loop forever
THREAD_LIMIT_MARKERS = ("thread threshold exceeded", "itgenatr005")
AUTH_MARKERS = ("authentication", "apiintegrationcode", "integration code", "tracking identifier", "api user",
                "user name", "not a valid user")


class AutotaskError(TargetError):
    """An Autotask call failed; the message names the entity, HTTP status and Autotask's own errors."""

    def __init__(self, message: str, *, entity: str | None = None, status: int | None = None,
                 errors: Iterable[str] = ()):
        super().__init__(message)
        self.entity = entity
        self.status = status
        self.errors = list(errors)


class AutotaskAuthError(AutotaskError):
    """The API user, secret or integration code was refused."""


class AutotaskRateLimited(AutotaskError, TargetLimitReached):
    """The hourly request threshold (or the thread limit) still refused us after every retry."""


class AutotaskQueryError(AutotaskError):
    """Autotask rejected a query: unknown or unqueryable field, bad value, too many `in` values..."""


class AutotaskOutcomeUnknown(AutotaskError, TargetOutcomeUnknown):
    """A write reached Autotask but no usable answer came back (a lost response, a timeout, a 5xx without
    Autotask's errors): it may or may not have been applied. Read the record again before deciding."""

    def __init__(self, message: str, *, entity: str | None = None, status: int | None = None,
                 errors: Iterable[str] = (), record_id: int | None = None, done: Iterable = ()):
        super().__init__(message, entity=entity, status=status, errors=errors)
        self.record_id = record_id
        self.done = list(done)  # update_invoices: the answers of the invoices written before this one


class CallMeter:
    """Every Autotask call made by any client opened while it is current: a run's preflight, reads, PDF
    downloads and write-backs, whichever task or thread makes them."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


_current_meter: ContextVar[CallMeter | None] = ContextVar("autotask_call_meter", default=None)


@contextmanager
def metered() -> Iterator[CallMeter]:
    """Count the Autotask calls of everything run inside (Prefect copies the context into its task threads)."""
    meter = CallMeter()
    token = _current_meter.set(meter)
    try:
        yield meter
    finally:
        _current_meter.reset(token)

@dataclass(frozen=True)
class InvoiceUpdate:
    """One invoice's answer to update_invoices: written, or refused with Autotask's reasons."""

    id: int
    ok: bool
    errors: tuple[str, ...] = ()


# ---- the database's rolling hour -------------------------------------------------------------------
@dataclass(frozen=True)
class _ThresholdReading:
    used: int          # requests in the database's last 60 minutes, every integration's
    threshold: int     # the database's allowance for 60 minutes
    at: float          # when it was read (the watch's clock)
    reread_after: int  # calls made here after which the reading is too old to trust


class HourlyThreshold:
    """What Autotask last said of one database's rolling hour (ThresholdInformation), shared by every client
    of that database in this process, so together they stop short of the threshold instead of meeting 429s.

    Autotask counts every integration's requests, so the reading is the truth across processes and
    workers too; between readings this process counts its own calls. A new reading is taken when this
    process alone has made a tenth of the calls the last one left (others may have made as many), when
    it is `max_age` seconds old, and before the last `reserve` calls are given up. When fewer than
    `reserve` are left, a call raises AutotaskRateLimited (a TargetLimitReached): the run stops cleanly
    and the next one goes on. The reserve is what other integrations and the calls still in flight need."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_age: float = 600.0,
                 reserve_share: float = 0.01, minimum_reserve: int = 10):
        self._clock = clock
        self.max_age = max_age
        self.reserve_share, self.minimum_reserve = reserve_share, minimum_reserve
        self._lock = threading.Lock()
        self._reading_lock = threading.Lock()
        self._reading: _ThresholdReading | None = None
        self._since = 0  # calls made here since the reading

    def reserve(self, threshold: int) -> int:
        return max(self.minimum_reserve, int(threshold * self.reserve_share))

    def record(self, answer: dict) -> None:
        """A ThresholdInformation answer."""
        try:
            used, threshold = int(answer["currentTimeframeRequestCount"]), int(answer["externalRequestThreshold"])
        except (KeyError, TypeError, ValueError):
            return  # an answer without the counts says nothing to go by
        left = threshold - used - self.reserve(threshold)
        with self._lock:
            self._reading = _ThresholdReading(used, threshold, self._clock(), max(1, left // 10))
            self._since = 0

    def exhausted(self) -> None:
        """Autotask refused a call at the threshold: nothing is left until a reading says otherwise."""
        with self._lock:
            threshold = self._reading.threshold if self._reading is not None else 0
            self._reading = _ThresholdReading(threshold, threshold, self._clock(), 1)
            self._since = 0

    def last(self) -> _ThresholdReading | None:
        with self._lock:
            return self._reading

    def before_call(self, read: Callable[[], dict], entity: str) -> None:
        """Count one call, taking a new reading first (`read`: ThresholdInformation) when the last one is too
        old to trust; raise AutotaskRateLimited when the database's hour is (nearly) used up."""
        verdict, seen = self._take()
        if verdict == "read":
            with self._reading_lock:  # one reading at a time: the threads that waited use it
                with self._lock:
                    unchanged = self._reading is seen
                if unchanged:
                    self.record(read())
            verdict, _ = self._take(after_reading=True)
        if verdict != "taken":
            raise _threshold_reached(self.last(), entity)

    def _take(self, after_reading: bool = False) -> tuple[str, _ThresholdReading | None]:
        """("taken" | "read" | "refused", the reading it was decided on)."""
        with self._lock:
            reading = self._reading
            if reading is None:
                if not after_reading:
                    return "read", reading
                self._since += 1  # Autotask gave no counts to go by: only its own 429 can stop the call
                return "taken", reading
            stale = self._clock() - reading.at >= self.max_age or self._since >= reading.reread_after
            if stale and not after_reading:
                return "read", reading
            if reading.threshold - reading.used - self._since > self.reserve(reading.threshold):
                self._since += 1
                return "taken", reading
            # Nothing left by this reading: a reading taken since calls were made here may say otherwise.
            return ("refused" if self._since == 0 or after_reading else "read"), reading

    def __repr__(self) -> str:
        return "HourlyThreshold()"


def _threshold_reached(reading: _ThresholdReading | None, entity: str) -> "AutotaskRateLimited":
    if reading is None or not reading.threshold:
        return AutotaskRateLimited(f"Autotask {entity}: the database's hourly request threshold is used up (shared "
                                   "by every integration); the run stops and the next one goes on once the hour "
                                   "drains", entity=entity, status=429)
    return AutotaskRateLimited(
        f"Autotask {entity}: the database's hourly request threshold is nearly used ({reading.used:,} of "
        f"{reading.threshold:,} requests in the last 60 minutes, shared by every integration); the run stops "
        "and the next one goes on once the hour drains", entity=entity, status=429)


class ZoneBook:
    """The zone each API user was found in, kept for every client of this process: Autotask asks an
    integration to look its zone up once and keep it, not on every connection. A kept zone that refuses
    the credentials (a 401: the database moved) is looked up again, and so is one older than `keep_seconds`."""

    def __init__(self, *, keep_seconds: float = 3600.0, clock: Callable[[], float] = time.monotonic):
        self._keep, self._clock = keep_seconds, clock
        self._zones: dict[tuple[str, str], tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def get(self, lookup_url: str, username: str, *, stale: str | None = None) -> dict | None:
        with self._lock:
            kept = self._zones.get((lookup_url, username.lower()))
        if kept is None or self._clock() - kept[0] > self._keep:
            return None
        zone = kept[1]
        return None if stale is not None and _api_base(zone["url"]) == stale else zone

    def put(self, lookup_url: str, username: str, zone: dict) -> None:
        with self._lock:
            self._zones[(lookup_url, username.lower())] = (self._clock(), zone)

    def forget(self) -> None:
        """Keep no zone: the next client of each user looks its zone up again."""
        with self._lock:
            self._zones.clear()

    def __repr__(self) -> str:
        return "ZoneBook()"


class AutotaskClient:
    def __init__(self, *, username: str, secret: str, integration_code: str,
                 zone_lookup_url: str = "https://webservices.autotask.net/atservicesrest",
                 base_url: str | None = None, timeout: float = 30.0, threads_per_entity: int = 3,
                 max_retries: int = 5, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, limits: CallLimits | None = None,
                 hourly: HourlyThreshold | None = None, audit: AuditSink | None = None,
                 zones: ZoneBook | None = None):
        """`limits` holds the per-endpoint slots (default: this client alone); `hourly` watches the
        database's rolling hour (default: none, only Autotask's own 429s stop a call). `sleep` is how
        every wait is made, `clock` what the default limits read. `audit` receives every write (a PATCH,
        POST or DELETE that is not a query) and its answer, redacted (core/audit.py). `zones` keeps the
        zone lookup's answer for other clients (default: each client looks it up once)."""
        self.username = username
        self._secret = secret
        self._integration_code = integration_code
        self.zone_lookup_url = zone_lookup_url.rstrip("/")
        self._zone_discovered = base_url is None
        self._api_base = _api_base(base_url) if base_url else None
        # The zone's web address (links to invoices), from the same zoneInformation answer as the API base.
        self._web_url: str | None = None
        self._zone_read = False
        self.threads_per_entity = threads_per_entity
        self.max_retries = max_retries
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout, verify=tls())
        self._lock = threading.Lock()
        self._zone_lock = threading.Lock()
        self._limits = limits if limits is not None else LocalLimits(clock=clock, sleep=sleep)
        self._hourly = hourly
        self._zones = zones
        # Autotask's thread limit is per integration (its tracking identifier) and endpoint; the code itself
        # stays out of limit names.
        self._integration = hashlib.sha256(integration_code.encode()).hexdigest()[:12]
        self._calls = 0
        self._meter = _current_meter.get()  # bound here: threads of this client's pools do not carry the context
        self.audit = audit

    def __repr__(self) -> str:
        return f"AutotaskClient(username={self.username!r}, base={self._api_base!r})"

    # ---- public API -------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    def query(self, entity: str, filter: list[dict], include_fields: list[str] | None = None,
              page_size: int = MAX_PAGE_SIZE) -> Iterator[dict]:
        """Every record matching `filter`, following nextPageUrl (POSTed with the same body)."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        body: dict = {"MaxRecords": page_size, "Filter": list(filter)}
        if include_fields:
            # Autotask needs id among the included fields to page past the first 500 rows.
            body["IncludeFields"] = list(dict.fromkeys(["id", *include_fields]))
        payload = _dumps(body)
        url: str | None = f"{entity}/query"
        seen: set[str] = set()
        while url:
            page = self._send("POST", url, entity, payload=payload, kind="query")
            yield from page.get("items") or []
            url = (page.get("pageDetails") or {}).get("nextPageUrl")
            if url:
                if url in seen or len(seen) >= MAX_PAGES:
                    raise AutotaskError(f"Autotask {entity} query: paging did not terminate (repeated or too "
                                        "many next pages)", entity=entity)
                seen.add(url)

    def query_in(self, entity: str, field: str, values: Iterable, *, filter: list[dict] | None = None,
                 include_fields: list[str] | None = None, batch_size: int = 400) -> Iterator[dict]:
        """Records whose `field` is one of `values`, in batches under Autotask's 500-condition cap."""
        if not 1 <= batch_size <= 500:
            raise ValueError("batch_size must be between 1 and 500")
        unique = list(dict.fromkeys(v for v in values if v is not None))
        for start in range(0, len(unique), batch_size):
            batch = unique[start:start + batch_size]
            yield from self.query(entity, [*(filter or []), {"op": "in", "field": field, "value": batch}],
                                  include_fields=include_fields)

    def count(self, entity: str, filter: list[dict]) -> int:
        result = self._send("POST", f"{entity}/query/count", entity, payload=_dumps({"Filter": list(filter)}),
                            kind="query")
        return int(result["queryCount"])

    def get(self, entity: str, id: int) -> dict | None:
        return self._send("GET", f"{entity}/{int(id)}", entity).get("item")

    def picklists(self, entity: str) -> dict[str, list[dict]]:
        """Picklist values per field ("Entity.field" -> [{value, label, ...}]): the values are per
        tenant, so rules written with labels ("4000 Labour Revenue") need this to match."""
        fields = self._send("GET", f"{entity}/entityInformation/fields", entity).get("fields") or []
        return {f"{entity}.{f['name']}": f.get("picklistValues") or [] for f in fields if f.get("isPickList")}

    def picklists_of(self, entities: Iterable[str]) -> dict[str, list[dict]]:
        """The picklists of several entities in one mapping ("Entity.field" -> [{value, label, ...}]),
        one entityInformation/fields call per entity."""
        found: dict[str, list[dict]] = {}
        for entity in dict.fromkeys(entities):
            found.update(self.picklists(entity))
        return found

    @property
    def zone_url(self) -> str:
        """The API base this client sends to: the discovered zone's, or the base_url it was given."""
        return self._base()

    @property
    def web_url(self) -> str | None:
        """The zone's web address (for example "https://ww5.autotask.net/"), for links back to invoices.

        It comes from the zone lookup the client makes anyway, so it costs no call once the zone is
        known. A client given base_url makes that one lookup when first asked; None when Autotask names
        no web address (or, with base_url, when the lookup fails: the API itself is not affected)."""
        with self._zone_lock:
            if self._zone_read:
                return self._web_url
        if self._zone_discovered:
            self._base()  # the lookup that finds the zone names its web address too
        else:
            with self._zone_lock:
                if not self._zone_read:
                    try:
                        self._web_url = _web_url_of(self._zone_information())
                    except AutotaskError:
                        self._web_url = None
                    self._zone_read = True
        with self._zone_lock:
            return self._web_url

    def invoice_pdf(self, invoice_id: int) -> tuple[str, bytes]:
        result = self._send("GET", f"Invoices/{int(invoice_id)}/InvoicePdf", "Invoices")
        if isinstance(result.get("item"), dict):  # some tenants wrap the file model
            result = result["item"]
        data = result.get("data")
        if not data:
            raise AutotaskError(f"Autotask Invoices: invoice {invoice_id} returned no PDF data", entity="Invoices")
        return result.get("fileName") or f"Invoice_{invoice_id}.pdf", base64.b64decode(data)

    def update(self, entity: str, fields: dict) -> int:
        """PATCH the fields given (must include id); returns the updated record's id."""
        if "id" not in fields:
            raise ValueError("update needs the record id in fields")
        result = self._send("PATCH", entity, entity, payload=_dumps(fields), read=False)
        return int(result["itemId"])

    def update_invoices(self, changes: list[dict]) -> list[InvoiceUpdate]:
        """PATCH /Invoices, one invoice per call (Autotask takes one entity per PATCH), in order.

        Each change is {"id": ..., and any of invoiceNumber, paidDate, webServiceDate}; Autotask keeps only
        the date of paidDate. A change Autotask refuses (a read-only field, an unknown invoice) is answered
        ok=False with Autotask's errors and the others still go. Credentials and the hourly threshold stop
        the whole call (AutotaskAuthError, AutotaskRateLimited). A lost answer raises AutotaskOutcomeUnknown
        naming the invoice, with the answers so far in `done`: read that invoice again before re-sending."""
        for change in changes:
            if not isinstance(change, dict) or isinstance(change.get("id"), bool) or not isinstance(change.get("id"), int):
                raise ValueError(f"each invoice change needs an integer id: {change!r}")
        results: list[InvoiceUpdate] = []
        for change in changes:
            try:
                self.update("Invoices", change)
            except AutotaskOutcomeUnknown as exc:
                raise AutotaskOutcomeUnknown(
                    f"Autotask invoice {change['id']}: {exc}", entity="Invoices", status=exc.status,
                    errors=exc.errors, record_id=change["id"], done=results) from None
            except (AutotaskAuthError, AutotaskRateLimited):
                raise
            except AutotaskError as exc:
                results.append(InvoiceUpdate(change["id"], False, tuple(exc.errors) or (str(exc),)))
            else:
                results.append(InvoiceUpdate(change["id"], True))
        return results

    def threshold(self) -> dict:
        """The database's hourly allowance and how much of it is used (this call counts too)."""
        answer = self._threshold_information()
        if self._hourly is not None:
            self._hourly.record(answer)  # the preflight's check of the credentials is the run's first reading
        return answer

    def _threshold_information(self) -> dict:
        return self._send("GET", "ThresholdInformation", "ThresholdInformation")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "AutotaskClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- plumbing ---------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"ApiIntegrationCode": self._integration_code, "UserName": self.username, "Secret": self._secret,
                "Content-Type": "application/json", "Accept": "application/json"}

    def _count_call(self) -> None:
        with self._lock:
            self._calls += 1
        if self._meter is not None:
            self._meter.add()

    def _slot(self, entity: str):
        return self._limits.hold(f"autotask-{self._integration}-{entity.lower()}", self.threads_per_entity)

    def _base(self) -> str:
        if self._api_base is None:
            self._resolve_zone()
        return self._api_base

    def _resolve_zone(self, stale: str | None = None) -> None:
        with self._zone_lock:
            if self._api_base is not None and self._api_base != stale:
                return  # another thread already (re)resolved it
            zone = self._zones.get(self.zone_lookup_url, self.username, stale=stale) if self._zones else None
            if zone is None:
                zone = self._zone_information()
                if self._zones is not None:
                    self._zones.put(self.zone_lookup_url, self.username, zone)
            self._api_base = _api_base(zone["url"])
            self._web_url = _web_url_of(zone)
            self._zone_read = True

    def _zone_information(self) -> dict:
        """GET zoneInformation for this user (counted, retried on transport errors and 5xx)."""
        url = f"{self.zone_lookup_url}/v1.0/zoneInformation"
        for attempt in range(self.max_retries + 1):
            self._count_call()
            try:
                resp = self._http.get(url, params={"user": self.username}, headers={"Accept": "application/json"})
            except httpx.TransportError as exc:
                if attempt < self.max_retries:
                    self._sleep(_backoff(attempt))
                    continue
                raise AutotaskError(f"Autotask zone lookup at {self.zone_lookup_url} failed: "
                                    f"{type(exc).__name__}") from None
            # An unknown user is a 500 with Autotask's own message; a 500 without one is the service failing.
            transient = resp.status_code == 429 or resp.status_code >= 502 or (resp.status_code == 500 and not _error_strings(resp))
            if transient and attempt < self.max_retries:
                self._sleep(_backoff(attempt, retry_after=_retry_after(resp)))
                continue
            if transient:
                raise AutotaskError(f"Autotask zone lookup at {self.zone_lookup_url} answered HTTP "
                                    f"{resp.status_code} {attempt + 1} times; try again later")
            break
        if resp.status_code != 200:
            errors = _error_strings(resp)
            raise AutotaskAuthError(
                f"Autotask zone lookup for API user {self.username!r} failed (HTTP {resp.status_code}: "
                f"{'; '.join(errors) or 'no detail'}). Check the API user name.",
                status=resp.status_code, errors=errors)
        try:
            zone = _loads(resp.content)
        except ValueError:
            zone = None
        if not isinstance(zone, dict) or not zone.get("url"):
            raise AutotaskError(f"Autotask zone lookup for API user {self.username!r} named no zone URL")
        return zone

    def _send(self, method: str, path_or_url: str, entity: str, *, payload: str | None = None,
              kind: str = "read", read: bool = True) -> dict:
        """One logical call with retries. `read` calls are safe to repeat after 5xx or lost connections."""
        attempt = 0
        reresolved = False
        while True:
            absolute = path_or_url.startswith(("http://", "https://"))
            base = None if absolute else self._base()
            url = path_or_url if absolute else base + path_or_url
            if self._hourly is not None and entity != "ThresholdInformation":
                self._hourly.before_call(self._threshold_information, entity)
            started, clock = datetime.now(timezone.utc), time.monotonic()
            try:
                with self._slot(entity):
                    self._count_call()
                    resp = self._http.request(method, url, headers=self._headers(),
                                              content=payload.encode() if payload is not None else None)
            except httpx.TransportError as exc:
                if not read:
                    self._audit_write(method, url, payload, None, None, type(exc).__name__, started, clock)
                # A write is repeated only when it never left (no connection): otherwise it may have been applied.
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if (read or unsent) and attempt < self.max_retries:
                    self._sleep(_backoff(attempt))
                    attempt += 1
                    continue
                if not read and not unsent:
                    raise AutotaskOutcomeUnknown(f"Autotask {entity} {method}: no answer came back "
                                                 f"({type(exc).__name__}); the outcome is unknown",
                                                 entity=entity) from None
                raise AutotaskError(f"Autotask {entity} {method}: the API could not be reached "
                                    f"({type(exc).__name__})", entity=entity) from None

            if not read:
                self._audit_write(method, url, payload, resp.status_code, resp.content, None, started, clock)
            if resp.status_code == 200:
                return _loads(resp.content)
            errors = _error_strings(resp)
            detail = self._scrub("; ".join(errors)) or "no detail"
            lowered = detail.lower()
            status = resp.status_code

            thread_limited = any(m in lowered for m in THREAD_LIMIT_MARKERS)
            if thread_limited or status == 429:
                if status == 429 and not thread_limited and self._hourly is not None:
                    # The database refuses every integration until its hour drains: stop the run now (the next
                    # one goes on) rather than sleep through it, and let this process's other clients know.
                    self._hourly.exhausted()
                    raise _threshold_reached(self._hourly.last(), entity)
                if attempt < self.max_retries:
                    self._sleep(_retry_after(resp) or _backoff(attempt, slow=not thread_limited))
                    attempt += 1
                    continue
                what = "thread limit" if thread_limited else "hourly request threshold"
                raise AutotaskRateLimited(
                    f"Autotask {entity}: {what} still exceeded after {self.max_retries} retries "
                    f"(HTTP {status}: {detail})", entity=entity, status=status, errors=errors)
            if status == 401 or (status == 500 and any(m in lowered for m in AUTH_MARKERS)):
                if status == 401 and self._zone_discovered and not reresolved and not absolute:
                    # The tenant may have moved zone; Autotask then refuses us at the old one.
                    reresolved = True
                    self._resolve_zone(stale=base)
                    continue
                raise AutotaskAuthError(
                    f"Autotask refused the credentials on {entity} (HTTP {status}: {detail}). Check the API "
                    "user name, its secret and the API integration code (tracking identifier).",
                    entity=entity, status=status, errors=errors)
            transient = status in (502, 503, 504) or (status >= 500 and not errors)
            if transient and read and attempt < self.max_retries:
                self._sleep(_backoff(attempt, retry_after=_retry_after(resp)))
                attempt += 1
                continue
            if transient and not read:
                raise AutotaskOutcomeUnknown(f"Autotask {entity} {method} answered HTTP {status} ({detail}); "
                                             "the outcome is unknown", entity=entity, status=status, errors=errors)
            error_type = AutotaskQueryError if kind == "query" and status == 500 and errors else AutotaskError
            raise error_type(f"Autotask {entity} {method} failed with HTTP {status}: {detail}",
                             entity=entity, status=status, errors=errors)

    def _audit_write(self, method: str, url: str, payload: str | None, status: int | None, answer: bytes | None,
                     error: str | None, started: datetime, clock: float) -> None:
        if self.audit is None:
            return
        self.audit.record(write_entry(
            api="autotask", method=method, url=url, headers=self._headers(), body=payload, status=status,
            answer=answer, error=error, at=started, elapsed_ms=int((time.monotonic() - clock) * 1000),
            known=[self._secret, self._integration_code]))

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def _api_base(zone_url: str) -> str:
    return zone_url.rstrip("/") + "/v1.0/"


def _web_url_of(zone: dict) -> str | None:
    web_url = zone.get("webUrl")
    return str(web_url) if web_url else None


def _backoff(attempt: int, slow: bool = False, retry_after: float | None = None) -> float:
    """Autotask's Retry-After when it sent one, else a jittered exponential step (slow: for the hour)."""
    return backoff(attempt, base=5.0 if slow else 0.5, cap=60.0, retry_after=retry_after)




def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _error_strings(resp: httpx.Response) -> list[str]:
    try:
        body = _loads(resp.content)
    except ValueError:
        return [resp.text[:500]] if resp.text.strip() else []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            return [e if isinstance(e, str) else str(e.get("message", e)) if isinstance(e, dict) else str(e)
                    for e in errors]
        if "Message" in body:
            return [str(body["Message"])]
    return []


def _loads(raw: bytes):
    return json.loads(raw, parse_float=Decimal)


def _dumps(value) -> str:
    """JSON with Decimals written digit for digit and datetimes in Autotask's UTC format."""
    if value is None or isinstance(value, (bool, str, int)):
        return json.dumps(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, set)):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return json.dumps(moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z")
    if isinstance(value, date):
        return json.dumps(value.isoformat() + "T00:00:00.000Z")
    raise TypeError(f"cannot send {type(value).__name__} to Autotask")


# ---- Autotask invoices as a pipeline target ------------------------------------------------------------
def autotask_day(value) -> date | None:
    """The date of an Autotask date-only field ("2026-11-30T00:00:00Z"): taken as it is, never shifted."""
    if not value:
        return None
    return date.fromisoformat(str(value)[:10])


class AutotaskInvoices:
    """What the pipeline writes back to Autotask invoices (the paid date), behind the calls the Xero
    gateway answers for its documents: find, create, update. A document here is an invoice numbered by
    its paid-date key ("123@2026-11-30", "123@unpaid"), so a lookup by key tells whether Autotask holds
    exactly that write. `client` opens an AutotaskClient (a context manager); a run's `metered()` counts its calls."""

    def __init__(self, client: Callable[[], "AutotaskClient"]):
        self._client = client

    def find(self, kind: DocumentKind, *, ids=(), numbers=(), contact_ids=(), created_by_my_app: bool = False,
             modified_since=None, where: str | None = None) -> list[XeroDocument]:
        """The invoices named by id or by write key, each numbered by the key of what Autotask holds now:
        the paid date (PAID_DATE), or the fields a key names ("123@invoiceNumber=...;webServiceDate=...")."""
        wanted = [int(i) for i in ids if str(i).isdigit()]
        wanted += [int(i) for i, _ in map(key_fields, map(str, numbers)) if i.isdigit()]
        if not wanted:
            return []
        # For writes of named fields: which fields each invoice's key names (by id alone: every one it may write).
        fields: dict[str, tuple[str, ...]] = {str(i): _WRITABLE for i in ids}
        fields.update(dict(key_fields(str(n)) for n in numbers))
        asked = sorted({f for names in fields.values() for f in names})
        with self._client() as at:
            records = list(at.query_in("Invoices", "id", sorted(set(wanted)),
                                       include_fields=["id", "invoiceNumber", "paidDate", "isVoided", "invoiceTotal",
                                                       "companyID", *[f for f in asked if f != "invoiceNumber"]]))
        read = _READ_AS.get(kind.name)
        return [read(kind, r) if read else _fields_document(kind, r, fields.get(str(r["id"]), _WRITABLE))
                for r in records]

    def create(self, kind: DocumentKind, plans: list[DocumentPlan], contact_ids: dict[str, str], *,
               idempotency_key: str) -> list[Written]:
        """Write the paid date of invoices that hold none from this sync yet (one PATCH each)."""
        return self._write(kind, [(p.source_id, p) for p in plans])

    def update(self, kind: DocumentKind, changes: list[tuple[str, DocumentPlan]], contact_ids: dict[str, str], *,
               idempotency_key: str) -> list[Written]:
        """Move or clear (plan.date None) a paid date this sync wrote before."""
        return self._write(kind, changes)

    def set_status(self, kind: DocumentKind, changes, *, idempotency_key: str) -> list[Written]:
        raise ValueError("the sync never voids or deletes Autotask invoices")

    def _write(self, kind: DocumentKind, changes: list[tuple[str, DocumentPlan]]) -> list[Written]:
        """One PATCH per invoice: the fields the plan writes (`plan.writes`), or its paid date."""
        patches = [{"id": int(target), **(dict(plan.writes) if plan.writes is not None else {"paidDate": plan.date})}
                   for target, plan in changes]
        with self._client() as at:
            answers = at.update_invoices(patches)
        return [Written(ok=True, errors=[], document=XeroDocument(
                    kind=kind.name, id=str(a.id),
                    number=plan.natural_key if plan.writes is not None else paid_date_key(str(a.id), plan.date),
                    status=Status.PAID if plan.date and plan.writes is None else Status.AUTHORISED, total=plan.total))
                if a.ok else Written(ok=False, document=None, errors=list(a.errors))
                for a, (_, plan) in zip(answers, changes)]


def _paid_date_document(kind: DocumentKind, record: dict) -> XeroDocument:
    paid = autotask_day(record.get("paidDate"))
    status = Status.VOIDED if record.get("isVoided") else Status.PAID if paid else Status.AUTHORISED
    total = record.get("invoiceTotal")
    return XeroDocument(kind=kind.name, id=str(record["id"]), number=paid_date_key(str(record["id"]), paid),
                        status=status, total=Decimal(str(total)) if total is not None else None,
                        contact_number=str(record.get("companyID") or "") or None)


# The Autotask invoice fields a write of named fields may set (Autotask's writable invoice fields but paidDate,
# which PAID_DATE owns), and how each reads back; a date-only field is its date.
_WRITABLE = ("invoiceNumber", "webServiceDate")
_FIELD_VALUE: dict[str, Callable[[object], object]] = {"webServiceDate": autotask_day}


def _fields_document(kind: DocumentKind, record: dict, fields: tuple[str, ...]) -> XeroDocument:
    """An invoice numbered by the write key of what it holds in `fields` now: equal to a plan's natural key
    exactly when Autotask holds every value the plan writes."""
    held = tuple((f, _FIELD_VALUE.get(f, lambda v: v)(record.get(f))) for f in fields)
    total = record.get("invoiceTotal")
    return XeroDocument(kind=kind.name, id=str(record["id"]), number=write_key(str(record["id"]), held),
                        status=Status.VOIDED if record.get("isVoided") else Status.AUTHORISED,
                        total=Decimal(str(total)) if total is not None else None,
                        contact_number=str(record.get("companyID") or "") or None)


# Kinds whose documents read back in a form of their own; any other kind writes named fields (`plan.writes`).
_READ_AS = {"paid_date": _paid_date_document}

"""An Autotask REST API simulator: one tenant database served over real HTTP.

It behaves like the parts of Autotask an accounting sync touches, including the awkward parts:
500s for business errors, case-insensitive paths, keyset paging whose next page must be fetched
with the original method, the rolling hourly request threshold and the per-endpoint thread limit.

Requests are served concurrently: each one's work runs in a worker thread while it holds its thread slot,
so the event loop takes the next request meanwhile. A real Autotask also takes its time to answer;
`request_latency` (seconds, off by default so tests stay fast) keeps every API request in its slot that
long, which is what makes the three-threads-per-endpoint limit reachable by clients that overlap
(several threads, or several processes sharing one integration code). It can be changed at any moment,
and the change applies to requests already waiting too.
"""
from __future__ import annotations

import asyncio
import base64
import bisect
import json
import logging
import math
import secrets
import threading
from collections import OrderedDict, defaultdict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Context, Decimal
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from sandbox.clock import Clock, SystemClock

from .generator import at_utc
from .pdf import render_pdf
from .query import Query, QueryError, parse_query, stored
from .schema import DATE_ONLY, ENTITY_MODELS, WRITABLE, entity_fields
from .wire import dumps, loads, parse_timestamp

log = logging.getLogger(__name__)

API_PREFIX = "/atservicesrest/v1.0/"
HOUR = 3600.0
THREAD_LIMIT_CODE = "Itgenatr005"
_ENTITY_BY_LOWER = {name.lower(): name for name in ENTITY_MODELS}


@dataclass(frozen=True)
class ApiCredential:
    """An API-only user. The secret is kept out of repr so it never lands in a log line."""

    username: str
    secret: str = field(repr=False)
    integration_code: str


class ApiError(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _errors(status: int, *messages: str, headers: dict | None = None) -> ApiError:
    return ApiError(status, {"errors": list(messages)}, headers)


def _method_not_allowed(method: str) -> ApiError:
    return ApiError(405, {"Message": f"The requested resource does not support http method '{method}'."})


class AutotaskSandbox:
    def __init__(self, data: dict[str, list[dict]] | None = None, *, clock: Clock | None = None,
                 hourly_threshold: int = 10_000, thread_limit: int = 3, usage_latency: bool = False,
                 request_latency: float = 0.0, credentials: ApiCredential | None = None):
        self.clock = clock or SystemClock()
        self.hourly_threshold = hourly_threshold
        self.thread_limit = thread_limit
        # Autotask's own slowdown as the hour's usage nears the threshold (+0.5 s from 50 %, +1 s from 75 %).
        self.usage_latency = usage_latency
        # How long every API request takes to answer, in real seconds, while holding its thread slot.
        self.request_latency = request_latency
        self.zone_name = "Sandbox Zone"
        self.ci = 99
        # Set to another server's ".../atservicesrest/" to simulate the tenant moving zone.
        self.zone_url: str | None = None

        self._lock = threading.RLock()
        self._tables: dict[str, dict[int, dict]] = {name: {} for name in ENTITY_MODELS}
        # Per record, fields it is served with in place of what it holds (see insert's served_as).
        self._served: dict[str, dict[int, dict]] = {name: {} for name in ENTITY_MODELS}
        self._sorted_ids: dict[str, list[int] | None] = {name: None for name in ENTITY_MODELS}
        # Per entity, per field an `eq` or `in` condition has asked about: compared value -> record ids.
        # Built on the first such query, then kept current by every write, so a query costs what it
        # returns, not what the table holds.
        self._indexes: dict[str, dict[str, dict]] = {name: {} for name in ENTITY_MODELS}
        self._users: dict[str, ApiCredential] = {}
        self._window: deque[float] = deque()
        self._in_flight: dict[tuple[str, str], int] = defaultdict(int)
        self._holds: dict[str, threading.Event] = {}
        self._post_pages: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Observations for tests and demos: what the limits did.
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.thread_rejections = 0
        self.rate_rejections = 0

        # A new API user per sandbox unless one is given (a sandbox resumed from its saved state).
        credentials = credentials or ApiCredential(
            "sync-api@sandbox.example.com", secrets.token_urlsafe(24), "SANDBOX" + secrets.token_hex(8).upper()
        )
        self.credentials = self.add_credential(credentials.username, credentials.secret, credentials.integration_code)
        for entity, rows in (data or {}).items():
            for row in rows:
                self.insert(entity, row)

    def __repr__(self) -> str:
        return f"AutotaskSandbox(users={len(self._users)}, threshold={self.hourly_threshold})"

    # ---- data -------------------------------------------------------------------------------

    def add_credential(self, username: str, secret: str, integration_code: str) -> ApiCredential:
        credential = ApiCredential(username, secret, integration_code)
        with self._lock:
            self._users[username.lower()] = credential
        return credential

    def insert(self, entity: str, record: dict, *, served_as: dict | None = None) -> dict:
        """Hold a record. `served_as`: fields the API writes for this record in place of what it holds,
        exactly as given and unchecked (a date that does not exist, text in a numeric field): a record as
        a faulty Autotask serves it. Filters still compare the held values, as Autotask's database does."""
        entity = self._entity(entity)
        served = self._served_fields(entity, served_as or {})
        with self._lock:
            table = self._tables[entity]
            row = self._normalise(entity, record, full=True)
            if row.get("id") is None:
                row["id"] = self._ids(entity)[-1] + 1 if table else 1
            previous = table.get(row["id"])
            if previous is not None:
                self._unfile(entity, previous)
            table[row["id"]] = row
            self._file(entity, row)
            if served:
                self._served[entity][row["id"]] = served
            else:
                self._served[entity].pop(row["id"], None)
            ids = self._sorted_ids[entity]
            if ids is not None and previous is None:
                if not ids or row["id"] > ids[-1]:
                    ids.append(row["id"])
                else:
                    bisect.insort(ids, row["id"])
            return dict(row)

    def export_state(self) -> dict:
        """Everything a restarted sandbox needs to answer as this one did: its API users and every record
        as held (and as served). Not kept: the hour's request count, threads in flight, paging cursors."""
        with self._lock:
            return {
                "users": [{"username": c.username, "secret": c.secret, "integration_code": c.integration_code}
                          for c in self._users.values()],
                "tables": {entity: [dict(table[i]) for i in self._ids(entity)]
                           for entity, table in self._tables.items() if table},
                "served": {entity: [[i, dict(fields)] for i, fields in served.items()]
                           for entity, served in self._served.items() if served},
                "zone_url": self.zone_url,
            }

    def import_state(self, state: dict) -> None:
        """Take the users and records of `export_state`, in place of this sandbox's own."""
        with self._lock:
            self._users.clear()
            for user in state["users"]:
                self.add_credential(user["username"], user["secret"], user["integration_code"])
            self.credentials = self._users[state["users"][0]["username"].lower()]
            for entity in self._tables:
                # Rows were normalised when they were first held; they come back exactly as they were.
                self._tables[entity] = {row["id"]: dict(row) for row in state["tables"].get(entity, [])}
                self._served[entity] = {int(i): dict(f) for i, f in state.get("served", {}).get(entity, [])}
                self._sorted_ids[entity] = None
                self._indexes[entity] = {}
            self.zone_url = state.get("zone_url")

    def _served_fields(self, entity: str, fields: dict) -> dict:
        bad = sorted((set(fields) - set(entity_fields(entity))) | ({"id"} & set(fields)))
        if bad:
            raise ValueError(f"{entity} cannot be served with field(s) {bad}: the id keys the record, and other "
                             "fields must be in the Autotask swagger model")
        try:
            json.dumps(fields, allow_nan=False, default=str)  # JSON has no NaN or Infinity (the writer would say null)
            loads(dumps(fields))
        except ValueError:
            raise ValueError(f"served_as for {entity} must be writable as JSON: {fields!r}") from None
        return dict(fields)

    def _as_served(self, entity: str, row: dict) -> dict:
        served = self._served[entity].get(row.get("id"))
        return {**row, **served} if served else dict(row)

    def update(self, entity: str, id: int, fields: dict) -> dict:
        """Change a record behind the API's back (a test hook: no read-only rules)."""
        entity = self._entity(entity)
        with self._lock:
            row = self._tables[entity][id]
            changes = self._normalise(entity, fields, full=False)
            self._unfile(entity, row)
            row.update(changes)
            self._file(entity, row)
            return dict(row)

    def records(self, entity: str) -> list[dict]:
        entity = self._entity(entity)
        with self._lock:
            return [dict(self._tables[entity][i]) for i in self._ids(entity)]

    def _entity(self, name: str) -> str:
        try:
            return _ENTITY_BY_LOWER[name.lower()]
        except KeyError:
            raise ValueError(f"the Autotask sandbox does not serve entity {name!r}") from None

    def _file(self, entity: str, row: dict) -> None:
        specs = entity_fields(entity)
        for name, index in list(self._indexes[entity].items()):
            try:
                index.setdefault(stored(specs[name], row.get(name)), set()).add(row["id"])
            except (TypeError, ValueError):  # a value no index can hold: the next query rebuilds or scans
                del self._indexes[entity][name]

    def _unfile(self, entity: str, row: dict) -> None:
        specs = entity_fields(entity)
        for name, index in list(self._indexes[entity].items()):
            try:
                value = stored(specs[name], row.get(name))
                filed = index.get(value)
            except (TypeError, ValueError):
                del self._indexes[entity][name]
                continue
            if filed is not None:
                filed.discard(row["id"])
                if not filed:
                    del index[value]

    def _index(self, entity: str, name: str) -> dict | None:
        """compared value -> ids for one field (built now if no query asked about it before); None when
        a value cannot be filed (the table holds something unhashable there): the query then scans."""
        index = self._indexes[entity].get(name)
        if index is None:
            spec, index = entity_fields(entity)[name], {}
            try:
                for row in self._tables[entity].values():
                    index.setdefault(stored(spec, row.get(name)), set()).add(row["id"])
            except (TypeError, ValueError):
                return None
            self._indexes[entity][name] = index
        return index

    def _candidates(self, entity: str, query: Query) -> list[int] | None:
        """Sorted ids of the only records the query's `eq`/`in` conditions allow, or None (every record):
        the smallest such set, when it is a small part of the table."""
        table = self._tables[entity]
        best: set[int] | None = None
        for spec, values in query.equalities:
            if spec.name == "id":
                ids = {v for v in values if v in table}
            else:
                index = self._index(entity, spec.name)
                if index is None:
                    continue
                ids = set().union(*(index.get(v, ()) for v in values))
            if best is None or len(ids) < len(best):
                best = ids
        # A set holding much of the table costs more to sort than walking the table in id order.
        if best is None or len(best) > len(table) // 4:
            return None
        return sorted(best)

    def _ids(self, entity: str) -> list[int]:
        ids = self._sorted_ids[entity]
        if ids is None:
            ids = self._sorted_ids[entity] = sorted(self._tables[entity])
        return ids

    def _normalise(self, entity: str, record: dict, *, full: bool) -> dict:
        specs = entity_fields(entity)
        unknown = set(record) - set(specs)
        if unknown:
            raise ValueError(f"{entity} has no field(s) {sorted(unknown)} in the Autotask swagger model")
        row = {name: None for name in specs} if full else {}
        if full and "userDefinedFields" in specs:
            row["userDefinedFields"] = []
        for name, value in record.items():
            row[name] = _to_wire(specs[name].data_type, value)
        return row

    # ---- test hooks -------------------------------------------------------------------------

    @contextmanager
    def hold(self, entity: str):
        """Keep requests to one endpoint open (after they take a thread slot) until the block ends."""
        gate = threading.Event()
        key = self._bucket(entity)
        self._holds[key] = gate
        try:
            yield gate
        finally:
            gate.set()
            self._holds.pop(key, None)

    def in_flight(self, entity: str) -> int:
        key = self._bucket(entity)
        with self._lock:
            return sum(n for (_, ent), n in self._in_flight.items() if ent == key)

    @property
    def request_count(self) -> int:
        with self._lock:
            self._drain()
            return len(self._window)

    def _bucket(self, name: str) -> str:
        return _ENTITY_BY_LOWER.get(name.lower(), name)

    # ---- limits -----------------------------------------------------------------------------

    def _drain(self) -> None:
        horizon = self.clock.monotonic() - HOUR
        while self._window and self._window[0] <= horizon:
            self._window.popleft()

    def _count_request(self) -> float:
        """Count one request against the tenant's rolling hour, or refuse it; returns usage 0..1."""
        with self._lock:
            self._drain()
            if len(self._window) >= self.hourly_threshold:
                self.rate_rejections += 1
                wait = max(1, math.ceil(self._window[0] + HOUR - self.clock.monotonic()))
                raise _errors(
                    429,
                    f"Request threshold of {self.hourly_threshold} requests per 60 minutes exceeded for this "
                    "database. Requests are refused until the usage in the last hour falls below the threshold.",
                    headers={"Retry-After": str(wait)},
                )
            self._window.append(self.clock.monotonic())
            return len(self._window) / self.hourly_threshold

    def _take_thread(self, key: tuple[str, str]) -> None:
        with self._lock:
            if self._in_flight[key] >= self.thread_limit:
                self.thread_rejections += 1
                raise _errors(
                    429,
                    f"{THREAD_LIMIT_CODE}: Thread Threshold Exceeded \u2014 The Autotask API thread threshold of "
                    f"{self.thread_limit} threads has been exceeded.",
                )
            self._in_flight[key] += 1
            self.max_in_flight[key[1]] = max(self.max_in_flight[key[1]], self._in_flight[key])

    def _release_thread(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._in_flight[key] -= 1

    # ---- request handling -------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            status, body, headers = await self._route(request)
        except ApiError as exc:
            status, body, headers = exc.status, exc.body, exc.headers
        except Exception:  # an unexpected sandbox bug should look like Autotask's generic 500
            log.exception("Autotask sandbox failed on %s %s", request.method, request.url.path)
            status, body, headers = 500, {"errors": ["An unexpected error has occurred."]}, {}
        return Response(dumps(body), status_code=status, headers=headers, media_type="application/json")

    async def _route(self, request: Request):
        path = request.url.path
        lowered = path.lower()
        if not lowered.startswith(API_PREFIX):
            raise ApiError(404, {"Message": f"No HTTP resource was found that matches the request URI '{path}'."})
        segments = [s for s in path[len(API_PREFIX):].split("/") if s]
        method = request.method.upper()
        if [s.lower() for s in segments] == ["zoneinformation"]:
            if method != "GET":
                raise _method_not_allowed(method)
            return 200, self._zone_information(request), {}

        credential = self._authenticate(request)
        if not segments:
            raise ApiError(404, {"Message": f"No HTTP resource was found that matches the request URI '{path}'."})
        head = segments[0].lower()
        bucket = {"thresholdinformation": "ThresholdInformation", "version": "Version"}.get(head)
        if bucket is None:
            if head not in _ENTITY_BY_LOWER:
                raise ApiError(404, {"Message": f"No HTTP resource was found that matches the request URI '{path}'."})
            bucket = _ENTITY_BY_LOWER[head]

        usage = self._count_request()
        key = (credential.integration_code, bucket)
        self._take_thread(key)
        try:
            body = await request.body()
            await self._answer_delay(usage)
            gate = self._holds.get(bucket)
            while gate is not None and not gate.is_set():
                await asyncio.sleep(0.005)
            # The work itself runs off the event loop, so requests overlap as they do on a real server.
            return await run_in_threadpool(self._dispatch, request, body, method, bucket,
                                           [s.lower() for s in segments[1:]])
        finally:
            self._release_thread(key)

    async def _answer_delay(self, usage: float) -> None:
        """Wait out `request_latency` (re-read while waiting, so lowering it frees waiting requests)
        and, with `usage_latency`, Autotask's extra delay near the hourly threshold."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        extra = (1.0 if usage >= 0.75 else 0.5) if self.usage_latency and usage >= 0.5 else 0.0
        while (left := started + self.request_latency + extra - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.02))

    def _zone_information(self, request: Request) -> dict:
        user = request.query_params.get("user", "")
        with self._lock:
            known = user.lower() in self._users
        if not known:
            raise _errors(500, f"Zone information could not be determined: user '{user}' is not a valid API user.")
        base = str(request.base_url)
        return {"zoneName": self.zone_name, "url": self.zone_url or base + "atservicesrest/", "webUrl": base,
                "ci": self.ci}

    def _authenticate(self, request: Request) -> ApiCredential:
        username = request.headers.get("UserName")
        secret = request.headers.get("Secret")
        code = request.headers.get("ApiIntegrationCode")
        if not username or not code:
            raise _errors(500, "Authentication failed: the UserName and ApiIntegrationCode headers are required.")
        with self._lock:
            credential = self._users.get(username.lower())
        if credential is None:
            raise _errors(500, f"Authentication failed: user '{username}' is not a valid API user.")
        if not secrets.compare_digest((secret or "").encode(), credential.secret.encode()):
            raise _errors(401, "Authentication failed: the user name or secret is incorrect.")
        if code != credential.integration_code:
            raise _errors(500, "Authentication failed: the ApiIntegrationCode (API tracking identifier) is not valid.")
        return credential

    def _dispatch(self, request: Request, body: bytes, method: str, bucket: str, rest: list[str]):
        if bucket == "ThresholdInformation":
            if method != "GET" or rest:
                raise _method_not_allowed(method)
            return 200, {"externalRequestThreshold": self.hourly_threshold, "requestThresholdTimeframe": 60,
                         "currentTimeframeRequestCount": self.request_count}, {}
        if bucket == "Version":
            return 200, {"majorVersion": 1, "minorVersion": 0, "build": 0}, {}
        entity = bucket

        if not rest:
            if method == "PATCH":
                return 200, self._patch(entity, _json_body(body)), {}
            raise _method_not_allowed(method)
        if rest[0] == "query":
            if method not in ("GET", "POST"):
                raise _method_not_allowed(method)
            tail = rest[1:]
            if tail == ["count"]:
                query = self._parse(entity, self._search(request, body, method))
                return 200, {"queryCount": len(self._matching(entity, query))}, {}
            if tail == ["next"]:
                return 200, self._next_page(request, body, method, entity), {}
            if not tail:
                search = self._search(request, body, method)
                query = self._parse(entity, search)
                return 200, self._page(request, method, entity, query, search, previous=[], start=None), {}
        if rest[0] == "entityinformation" and method == "GET":
            if rest[1:] == ["fields"]:
                return 200, {"fields": [s.describe() for s in entity_fields(entity).values()
                                        if s.name != "userDefinedFields"]}, {}
            if rest[1:] == ["userdefinedfields"]:
                return 200, {"fields": self._udf_fields(entity)}, {}
            if not rest[1:]:
                return 200, {"info": {"name": entity, "canCreate": False, "canDelete": False, "canQuery": True,
                                      "canUpdate": entity in WRITABLE,
                                      "hasUserDefinedFields": "userDefinedFields" in entity_fields(entity),
                                      "supportsWebhookCallouts": False}}, {}
        if rest[0].isdigit() and method == "GET":
            record_id = int(rest[0])
            if len(rest) == 1:
                with self._lock:
                    row = self._tables[entity].get(record_id)
                    return 200, {"item": self._as_served(entity, row) if row else None}, {}
            if entity == "Invoices" and rest[1:] == ["invoicepdf"]:
                return 200, self._invoice_pdf(record_id), {}
            if entity == "Invoices" and rest[1:] in (["invoicemarkuphtml"], ["invoicemarkupxml"]):
                lines = self._invoice_lines_text(record_id)
                return 200, {"invoiceMarkup": "<html><body>" + "<br/>".join(lines) + "</body></html>"}, {}
        if rest[0].isdigit() or rest[0] in ("query", "entityinformation"):
            raise _method_not_allowed(method)
        raise ApiError(404, {"Message": f"No HTTP resource was found that matches the request URI '{request.url.path}'."})

    # ---- queries ----------------------------------------------------------------------------

    def _search(self, request: Request, body: bytes, method: str):
        if method == "POST":
            search = _json_body(body, required=False)
            if search is not None:
                return search
        text = request.query_params.get("search")
        if not text:
            raise _errors(500, "The search parameter is required.")
        try:
            return loads(text)
        except ValueError:
            raise _errors(500, "The search parameter is not valid JSON.") from None

    def _parse(self, entity: str, search) -> Query:
        try:
            return parse_query(entity, search)
        except QueryError as exc:
            raise _errors(500, str(exc)) from None

    def _matching(self, entity: str, query: Query, start: int | None = None, limit: int | None = None) -> list[dict]:
        """The records matching, in id order from `start`; the first `limit` of them when given. Each
        call looks at the table as it is now, so a record written between two pages is seen or not by
        its id, as in Autotask's keyset paging."""
        with self._lock:
            table = self._tables[entity]
            ids = self._candidates(entity, query)
            if ids is None:
                ids = self._ids(entity)
            found = []
            for position in range(bisect.bisect_left(ids, start) if start is not None else 0, len(ids)):
                row = table[ids[position]]
                if query.matches(row):
                    found.append(row)
                    if limit is not None and len(found) >= limit:
                        break
            return found

    def _page(self, request: Request, method: str, entity: str, query: Query, search, *,
              previous: list[int], start: int | None) -> dict:
        # One record past the page says whether there is a next page, and where it starts.
        matches = self._matching(entity, query, start, limit=query.max_records + 1)
        page = matches[: query.max_records]
        items = [self._project(self._as_served(entity, row), query.include_fields) for row in page]
        base = str(request.base_url) + f"ATServicesRest/V1.0/{entity}/query/next"
        search_text = dumps(search)
        next_url = prev_url = None
        page_start = page[0]["id"] if page else start
        if len(matches) > len(page):
            paging = dumps({"pageSize": query.max_records, "previousIds": previous + [page_start],
                            "nextIds": [matches[len(page)]["id"]]})
            next_url = f"{base}?paging={quote(paging, safe='')}&search={quote(search_text, safe='')}"
            if method == "POST":
                self._remember_post_page(paging, search_text)
        if previous:
            paging = dumps({"pageSize": query.max_records, "previousIds": previous[:-1], "nextIds": [previous[-1]]})
            prev_url = f"{base}?paging={quote(paging, safe='')}&search={quote(search_text, safe='')}"
            if method == "POST":
                self._remember_post_page(paging, search_text)
        return {"items": items, "pageDetails": {"count": len(items), "requestCount": query.max_records,
                                                "prevPageUrl": prev_url, "nextPageUrl": next_url}}

    def _remember_post_page(self, paging: str, search_text: str) -> None:
        with self._lock:
            self._post_pages[(paging, search_text)] = None
            while len(self._post_pages) > 100_000:
                self._post_pages.popitem(last=False)

    def _next_page(self, request: Request, body: bytes, method: str, entity: str) -> dict:
        paging_text = request.query_params.get("paging")
        search_text = request.query_params.get("search")
        if not paging_text:
            raise _errors(500, "The paging parameter is required.")
        if method == "GET":
            with self._lock:
                issued_for_post = (paging_text, search_text) in self._post_pages
            if issued_for_post:
                raise _method_not_allowed("GET")
        search = self._search(request, body, method)
        try:
            paging = loads(paging_text)
            start = int(paging["nextIds"][0])
            previous = [int(i) for i in paging.get("previousIds", [])]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _errors(500, "The paging parameter is not valid.") from None
        query = self._parse(entity, search)
        return self._page(request, method, entity, query, search, previous=previous, start=start)

    @staticmethod
    def _project(row: dict, include: list[str] | None) -> dict:
        if not include:
            return dict(row)
        projected = {"id": row["id"]}
        for name in include:
            projected[name] = row.get(name)
        return projected

    def _udf_fields(self, entity: str) -> list[dict]:
        if "userDefinedFields" not in entity_fields(entity):
            return []
        names: dict[str, None] = {}
        with self._lock:
            for row in self._tables[entity].values():
                for udf in row.get("userDefinedFields") or []:
                    names.setdefault(udf.get("name"), None)
        return [{"name": n, "dataType": "string", "isRequired": False, "isReadOnly": False, "isQueryable": True,
                 "isPickList": False, "picklistValues": None} for n in names]

    # ---- invoices ---------------------------------------------------------------------------

    def _invoice_lines_text(self, invoice_id: int) -> list[str]:
        with self._lock:
            invoice = self._tables["Invoices"].get(invoice_id)
            if invoice is None:
                raise _errors(500, f"No matching records found. The Invoice with id {invoice_id} does not exist.")
            company = self._tables["Companies"].get(invoice["companyID"]) or {}
            currency = self._tables["Currencies"].get(company.get("currencyID")) or {}
        number = invoice.get("invoiceNumber") or str(invoice_id)
        return [
            f"Tax Invoice {number}",
            f"Bill to: {company.get('companyName', '')}",
            f"Invoice date: {(invoice.get('invoiceDateTime') or '')[:10]}",
            f"Due date: {(invoice.get('dueDate') or '')[:10]}",
            f"Total tax: {currency.get('name', '')} {invoice.get('totalTaxValue')}",
            f"Total: {currency.get('name', '')} {invoice.get('invoiceTotal')}",
        ]

    def _invoice_pdf(self, invoice_id: int) -> dict:
        pdf = render_pdf(self._invoice_lines_text(invoice_id))
        with self._lock:
            number = self._tables["Invoices"][invoice_id].get("invoiceNumber") or str(invoice_id)
        return {"id": invoice_id, "contentType": "application/pdf", "fileName": f"Invoice_{number}.pdf",
                "fileSize": len(pdf), "data": base64.b64encode(pdf).decode("ascii")}

    def _patch(self, entity: str, body) -> dict:
        if entity not in WRITABLE:
            raise _method_not_allowed("PATCH")
        if not isinstance(body, dict):
            raise _errors(500, "The request body must be a JSON object.")
        specs = entity_fields(entity)
        by_lower = {name.lower(): name for name in specs}
        fields = {}
        for key, value in body.items():
            name = by_lower.get(key.lower())
            if name is None:
                raise _errors(500, f"Unable to find {key} in the {entity} entity.")
            fields[name] = value
        record_id = fields.pop("id", None)
        if isinstance(record_id, bool) or not isinstance(record_id, int):
            raise _errors(500, "The id field is required to update an entity.")
        for name in fields:
            if name not in WRITABLE[entity]:
                raise _errors(500, f"The field {name} is read-only and cannot be updated on the {entity} entity.")
        changes = {}
        for name, value in fields.items():
            kind = specs[name].data_type
            if value is not None and kind == "datetime":
                try:
                    moment = parse_timestamp(str(value))
                except ValueError:
                    raise _errors(500, f"Invalid date value {value!r} for field {name}.") from None
                if name in DATE_ONLY.get(entity, set()):
                    # Date-only fields keep the date as given and drop the time, without a zone shift.
                    moment = datetime.combine(moment.date(), datetime.min.time(), tzinfo=timezone.utc)
                value = at_utc(moment)
            elif value is not None and kind == "string":
                if not isinstance(value, str):
                    raise _errors(500, f"Invalid value for field {name}: text expected.")
                if name == "invoiceNumber" and len(value) > 100:
                    raise _errors(500, "invoiceNumber cannot be longer than 100 characters.")
            changes[name] = value
        with self._lock:
            if record_id not in self._tables[entity]:
                raise _errors(500, f"No matching records found. The {entity} record with id {record_id} does not exist.")
            row = self._tables[entity][record_id]
            self._unfile(entity, row)
            row.update(changes)
            self._file(entity, row)
        return {"itemId": record_id}


def _json_body(raw: bytes, *, required: bool = True):
    if not raw.strip():
        if required:
            raise _errors(500, "A request body is required.")
        return None
    try:
        return loads(raw)
    except ValueError:
        raise _errors(500, "The request body is not valid JSON.") from None


def _to_wire(kind: str, value):
    if value is None:
        return None
    if kind == "double":
        if isinstance(value, bool):
            raise ValueError("boolean given for a numeric field")
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        # .NET writes doubles with a decimal point (1.0), so clients parse them as decimals, never ints.
        if not number.is_finite() or number.adjusted() > 308:
            raise ValueError(f"{number} is not a value a double holds (JSON has no NaN or Infinity either)")
        # A context wide enough for the number: 1E+30 is a double Autotask holds, not an overflow.
        wide = Context(prec=max(28, number.adjusted() + 3))
        return number.quantize(Decimal("0.0"), context=wide) if number.as_tuple().exponent >= 0 else number
    if kind == "datetime":
        if isinstance(value, datetime | date):
            return at_utc(value)
        return at_utc(parse_timestamp(str(value)))
    if kind == "udf":
        return [dict(u) for u in value]
    return value


def create_app(sandbox: AutotaskSandbox) -> FastAPI:
    """A FastAPI app serving one sandbox; plain ASGI, so fault-injection middleware can wrap it."""
    app = FastAPI(title="Autotask PSA sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = sandbox

    @app.api_route("/{path:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"], include_in_schema=False)
    async def autotask(request: Request) -> Response:
        return await sandbox.handle(request)

    return app

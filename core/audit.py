"""The audit trail's pure half: one write request to Xero or Autotask and its answer, made safe to keep.

Each client (clients/xero.py, clients/autotask.py) hands every write it sends, with its answer, to
`write_entry`, and the resulting `WriteEntry` to its `AuditSink` (ledger/audit.py keeps them per run).
What is kept has been through `redact` first: no header or body field that can hold a credential
survives (Authorization, Autotask's Secret, ApiIntegrationCode and UserName headers, any key that looks
like a secret, password, token, API key or integration code), the secrets the client itself holds are
cut out of every text, file contents become "<N bytes>", long texts are cut short. Of the answer only
what an auditor asks about is kept: ids, numbers, statuses and Xero's or Autotask's errors
(`answer_summary`), not the whole document Xero echoes back. No HTTP, no database.
"""
from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REDACTED = "<redacted>"
# Keys (in headers, bodies, query strings) whose value is never kept, whatever it holds.
SECRET_KEY = re.compile(r"secret|password|passwd|token|api[-_]?key|integration[-_]?code|authorization|credential",
                        re.IGNORECASE)
# Autotask's credentials travel in headers of these names; the user name identifies the API user.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "secret", "apiintegrationcode",
                            "username"})
TEXT_LIMIT = 2000        # characters of one text value kept (a long description is cut, with its length)
DOCUMENT_LIMIT = 200_000  # characters of one stored request or answer; beyond it, its start and its size
# An answer's fields worth keeping: ids, numbers, statuses, and the errors that say why a document was refused.
_KEPT_FIELD = re.compile(r"(id|number|status|statusattributestring|haserrors|hasvalidationerrors|type|"
                         r"errornumber|message|detail|title|reference|itemid)$", re.IGNORECASE)
_ERROR_FIELDS = frozenset({"validationerrors", "warnings", "errors"})


@dataclass(frozen=True)
class WriteEntry:
    """One write as kept: nothing in it is a secret (see `write_entry`)."""

    api: str                 # "xero" or "autotask"
    method: str              # POST, PUT, PATCH, DELETE
    path: str                # the URL's path and query, without the host
    status: int | None       # the HTTP status; None when no answer came back
    request: dict            # {"headers": {...}, "body": ...}, redacted
    response: dict           # {"body": summary} or {"error": "ReadTimeout"}, redacted
    at: datetime             # when the request was sent
    elapsed_ms: int | None = None

    @property
    def outcome(self) -> str:
        """The ids and errors of the answer, on one line (what `atx audit show` prints)."""
        return outcome_line(self.response)


class AuditSink(Protocol):
    """Where a client hands its writes. The sink adds the run and the tenant, and must never raise into the
    client: a write Xero has taken is not to be reported as failed because its audit entry was not kept."""

    def record(self, entry: WriteEntry) -> None: ...


# ---- redaction ----------------------------------------------------------------------------------------
def redact(value: Any, known: Iterable[str] = ()) -> Any:
    """`value` with every secret removed: keys that name one lose their value, the `known` secret values are
    cut out of every text, bytes become "<N bytes>", long texts are cut to TEXT_LIMIT. Pure; JSON out."""
    return _redact(value, _hidden(known))


def _hidden(known: Iterable[str]) -> list[str]:
    # Longest first, so a secret containing another is cut out whole; very short values would cut ordinary words.
    return sorted({k for k in known if k and len(k) >= 4}, key=len, reverse=True)


def _redact(value: Any, hidden: list[str]) -> Any:
    if isinstance(value, dict):
        return {str(k): (REDACTED if _secret_key(str(k)) and v not in (None, "") else _redact(v, hidden))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v, hidden) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return _text(value, hidden)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _text(str(value), hidden)  # Decimal, dates, UUIDs: their text


@functools.lru_cache(maxsize=4096)  # a batch's bodies repeat the same few dozen keys thousands of times
def _secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key)) or key.lower() in SECRET_HEADERS


def _text(text: str, hidden: list[str]) -> str:
    for secret in hidden:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if len(text) > TEXT_LIMIT:
        return f"{text[:TEXT_LIMIT]}… ({len(text)} characters)"
    return text


def redact_headers(headers: dict | None, known: Iterable[str] = ()) -> dict:
    """Headers as kept: credentials (Authorization, Autotask's Secret, ApiIntegrationCode, UserName) redacted."""
    return redact({str(k): v for k, v in (headers or {}).items()}, known)


def redact_path(url: str, query: Iterable[tuple[str, Any]] | dict | None = None, known: Iterable[str] = ()) -> str:
    """The path and query of a URL (no scheme or host), with secret-looking query values redacted."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    pairs += list(query.items() if isinstance(query, dict) else (query or []))
    path = parts.path or "/"
    if not pairs:
        return _text(path, _hidden(known))
    kept = [(k, REDACTED if _secret_key(str(k)) else str(v)) for k, v in pairs]
    return _text(f"{path}?{urlencode(kept)}", _hidden(known))


_LONG_DIGITS = {False: re.compile(rb"\d{19}"), True: re.compile(r"\d{19}")}


def parse_body(body: Any) -> Any:
    """A request or answer body as a value: JSON text or bytes parsed, other bytes left to `redact`."""
    if isinstance(body, (bytes, bytearray, str)) and not _LONG_DIGITS[type(body) is str].search(body):
        # orjson (it comes with Prefect) reads Xero's answer to a batch, every document echoed, several times
        # faster. It would read an integer past 64 bits as a float, so text with 19 digits in a row takes the
        # long way, as does text that is not JSON.
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    if isinstance(body, (bytes, bytearray)):
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(body)
        try:
            return json.loads(text)
        except ValueError:
            return bytes(body) if _binary(text) else text
    if isinstance(body, str):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def _binary(text: str) -> bool:
    return any(ch in text[:512] for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08")


# ---- the answer ---------------------------------------------------------------------------------------
def answer_summary(body: Any) -> Any:
    """What of an answer is kept: each element's ids, numbers, status and errors, nothing of its content.

    Xero answers a write with the documents it holds (every line, every total); an audit needs to know which
    documents those were and whether each was refused, and why (`ValidationErrors`). Autotask answers
    {"itemId": N} or {"errors": [...]}."""
    if isinstance(body, list):
        return [answer_summary(v) for v in body]
    if not isinstance(body, dict):
        return body
    return _element(body, top=True)


def _element(element: dict, *, top: bool = False) -> dict:
    out: dict[str, Any] = {}
    for key, value in element.items():
        lowered = str(key).lower()
        if lowered in _ERROR_FIELDS:
            out[key] = _messages(value)
        elif isinstance(value, list):
            if top and value and all(isinstance(v, dict) for v in value):
                out[key] = [_element(v) for v in value]  # the documents of the answer: Invoices, Elements, ...
        elif isinstance(value, dict):
            ids = {k: v for k, v in value.items() if not isinstance(v, (dict, list)) and _KEPT_FIELD.search(str(k))}
            if ids:
                out[key] = ids  # a document's contact, a payment's invoice: which one, not what it holds
        elif _KEPT_FIELD.search(lowered) and value not in (None, ""):
            out[key] = value
    return out


def _messages(value: Any) -> list:
    if not isinstance(value, list):
        return [value] if value not in (None, "") else []
    return [v.get("Message", v.get("message", v)) if isinstance(v, dict) else v for v in value]


def outcome_line(response: dict) -> str:
    """The ids, numbers and errors of a kept answer, on one line, each document with its own errors:
    "INV-0001 4f2c…, INV-0002 refused: Account code '090' is not a valid code for this document."."""
    if response.get("error"):
        return f"no answer: {response['error']}"
    body = response.get("body")
    if not isinstance(body, dict):
        return "" if body in (None, "", [], {}) else str(body)
    parts = [_document_line(e) for v in body.values() if isinstance(v, list) for e in v if isinstance(e, dict)]
    own = _errors_of(body) or ([str(body["Message"])] if body.get("Message") and not any(parts) else [])
    ids = [str(v) for k, v in body.items() if str(k).lower().endswith("id") and k != "Id" and v]
    text = ", ".join(p for p in parts + ids if p)  # Autotask answers a write with {"itemId": N}
    if own:
        text += ("; " if text else "") + "refused: " + "; ".join(own)
    return text


def _document_line(element: dict) -> str:
    numbers = [str(v) for k, v in element.items() if str(k).lower().endswith("number") and v]
    ids = [str(v) for k, v in element.items() if str(k).lower().endswith("id") and not isinstance(v, dict) and v]
    errors = _errors_of(element)
    if errors:  # a refused document has no id of its own (Xero answers zeros): its number says which it was
        label = " ".join(dict.fromkeys(numbers or ids[:1]))
        return f"{label} refused: {'; '.join(errors)}".strip()
    return " ".join(dict.fromkeys(numbers + ids[:1]))


def _errors_of(element: dict) -> list[str]:
    return list(dict.fromkeys(str(m) for k, v in element.items() if str(k).lower() in _ERROR_FIELDS for m in v))


def write_entry(*, api: str, method: str, url: str, query=None, headers: dict | None, body: Any,
                status: int | None, answer: Any = None, error: str | None = None, at: datetime,
                elapsed_ms: int | None = None, known: Iterable[str] = ()) -> WriteEntry:
    """The entry kept for one write: every part redacted (`known`: the secret values the client holds, cut out of
    any text where they would appear), the answer reduced to its ids, statuses and errors, and both kept to
    DOCUMENT_LIMIT characters."""
    known = _hidden(known)
    request = {"headers": redact_headers(headers, known), "body": redact(parse_body(body), known)}
    response = ({"error": _text(error, known)} if error is not None
                else {"body": redact(answer_summary(parse_body(answer)), known)})
    return WriteEntry(api=api, method=method.upper(), path=redact_path(url, query, known), status=status,
                      request=_bounded(request), response=_bounded(response), at=at, elapsed_ms=elapsed_ms)


def _bounded(document: dict) -> dict:
    text = to_json(document)
    if len(text) <= DOCUMENT_LIMIT:
        return document
    return {"truncated": f"{len(text)} characters", "start": text[:TEXT_LIMIT]}


# Datetimes and dataclasses as their str(), like json.dumps(default=str), not in orjson's own formats.
_AS_STR = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def to_json(document: dict) -> str:
    try:
        return orjson.dumps(document, default=str, option=_AS_STR).decode("utf-8")
    except TypeError:  # an integer past 64 bits, a key that is not text: the standard library writes those
        return json.dumps(document, default=str, ensure_ascii=False, separators=(",", ":"))

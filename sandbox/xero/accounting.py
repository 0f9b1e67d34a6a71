"""The Xero Accounting API simulator: routes under /api.xro/2.0.

Authentication, tenant, scope, rate limits and faults are handled before these handlers run (see app.py);
each handler finds its organisation in `request.state.xero_org`. Request bodies are checked against the
official OpenAPI schema first, then against Xero's business rules (rules.py).
"""
from __future__ import annotations

import hashlib
import math
import mimetypes
import uuid
from datetime import timedelta
from typing import Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.xero import spec
from sandbox.xero.acc_query import (QueryError, compile_where, date_bounds, equality_alternatives, sort_documents,
                                    where_fields)
from sandbox.xero.acc_render import (render_contact, render_document, render_item, render_organisation,
                                     render_payment)
from sandbox.xero.org import DOCUMENT_RANGES, Journal, XeroOrg
from sandbox.xero.rules import (CREDIT_NOTE, INVOICE, PURCHASE_ORDER, DocKind, Invalid, NotFound, Write,
                                allocate_credit_note, create_payment, delete_payment, save_contact, save_document,
                                save_item)
from sandbox.xero.serialise import dumps, loads, parse_date, parse_datetime
from sandbox.xero.webhooks import events_for

router = APIRouter()

IDEMPOTENCY_TTL = timedelta(minutes=6)
MAX_IDEMPOTENCY_KEY = 128
FORBIDDEN_FILENAME_CHARS = set('<>:"/\\|?*\0+')
_MS_DATE_KEYS = ("Date", "DueDate", "ExpectedPaymentDate", "PlannedPaymentDate", "DeliveryDate", "ExpectedArrivalDate")


# --- plumbing --------------------------------------------------------------------------------------

def _org(request: Request) -> XeroOrg:
    return request.state.xero_org


def _client_id(request: Request) -> str:
    return getattr(request.state, "client_id", "")


def _json(body, status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json; charset=utf-8")


def _envelope(request: Request, plural: str, items: list, pagination: dict | None = None) -> Response:
    sandbox = getattr(request.app.state, "xero", None)
    client_id = _client_id(request)
    provider = sandbox.app_name(client_id) if sandbox is not None and hasattr(sandbox, "app_name") else client_id
    body = {"Id": str(uuid.uuid4()), "Status": "OK", "ProviderName": provider,
            "DateTimeUTC": _org(request).now(), plural: items}
    if pagination is not None:
        body["pagination"] = pagination
    return _json(body)


def validation_error(message: str, elements: list | None = None) -> Response:
    return _json({"ErrorNumber": 10, "Type": "ValidationException", "Message": message, "Elements": elements or []},
                 status=400)


NOT_FOUND_TEXT = "The resource you're looking for cannot be found"


def not_found() -> Response:
    """Xero answers an unknown id, like an unknown path, with this sentence as plain text, not JSON (SDKs
    that parse every error body as JSON fail on it; xero-python's NotFoundException carries it as is)."""
    return Response(NOT_FOUND_TEXT, status_code=404, media_type="text/plain; charset=utf-8")


def _flag(request: Request, name: str, default: bool) -> bool:
    value = _query(request, name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("true", "1", "yes")


def _query(request: Request, name: str) -> str | None:
    # Xero treats parameter names case-insensitively (the SDK sends "IDs", people type "ids").
    wanted = name.lower()
    for key, value in request.query_params.multi_items():
        if key.lower() == wanted:
            return value
    return None


def _csv(request: Request, name: str) -> list[str]:
    value = _query(request, name)
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


def _unitdp(request: Request) -> int:
    return 4 if _query(request, "unitdp") == "4" else 2


async def _read_json(request: Request, path_template: str,
                     per_element: tuple[str, ...] = ()) -> tuple[object, Response | None]:
    raw = await request.body()
    try:
        body = loads(raw) if raw else None
    except ValueError:
        return None, validation_error("The request body is not valid JSON.")
    if body is None:
        return None, validation_error("A request body is required.")
    problems = spec.request_errors(path_template, request.method, body, per_element=per_element)
    if problems:
        return None, validation_error("The request body does not match the Xero Accounting API schema: "
                                      + "; ".join(problems[:10]))
    return body, None


def _idempotent(request: Request, raw: bytes, produce: Callable[[], Response]) -> Response:
    """Replay a remembered answer for a retried Idempotency-Key; refuse the key on a different request."""
    key = request.headers.get("idempotency-key")
    if not key:
        return produce()
    if len(key) > MAX_IDEMPOTENCY_KEY:
        return validation_error(f"The Idempotency-Key must be {MAX_IDEMPOTENCY_KEY} characters or fewer.")
    org = _org(request)
    now = org.clock.now()
    for stored_key in [k for k, v in org.idempotency.items() if now - v["stored_at"] >= IDEMPOTENCY_TTL]:
        del org.idempotency[stored_key]
    query = "&".join(sorted(f"{k.lower()}={v}" for k, v in request.query_params.multi_items()))
    fingerprint = hashlib.sha256(
        b"\n".join([request.method.encode(), request.url.path.lower().encode(), query.encode(), raw])
    ).hexdigest()
    slot = (_client_id(request), key)
    remembered = org.idempotency.get(slot)
    if remembered is not None:
        if remembered["fingerprint"] != fingerprint:
            return validation_error(f"Idempotency Key {key} is used with a different request.")
        return Response(remembered["body"], status_code=remembered["status"], media_type=remembered["media_type"])
    response = produce()
    if response.status_code < 500:
        org.idempotency[slot] = {"fingerprint": fingerprint, "stored_at": now, "status": response.status_code,
                                 "body": response.body, "media_type": response.media_type}
    return response


# Which flag a refused element carries: Payments and Contacts have HasValidationErrors in Xero's schema,
# invoices and credit notes HasErrors.
_ERROR_FLAG = {"Payments": "HasValidationErrors", "Contacts": "HasValidationErrors"}
# Elements whose schema has no error flag at all: a refused one carries only its StatusAttributeString
# and ValidationErrors.
_NO_ERROR_FLAG = {"Items", "PurchaseOrders", "Allocations"}


def _echo(payload: dict, messages: list[str], plural: str = "") -> dict:
    """A refused element as Xero returns it: what was sent, plus its errors."""
    element = dict(payload)
    for key in _MS_DATE_KEYS:
        if isinstance(element.get(key), str):
            try:
                element[key] = parse_date(element[key])
            except ValueError:
                pass
    element.update({"StatusAttributeString": "ERROR", "ValidationErrors": [{"Message": m} for m in messages]})
    if plural not in _NO_ERROR_FLAG:
        element[_ERROR_FLAG.get(plural, "HasErrors")] = True
    return element


def _write_batch(request: Request, items: list[dict], plural: str, operation: Callable[[Write, dict], dict],
                 render: Callable[[dict], dict], summarize: bool) -> Response:
    org = _org(request)
    unitdp = _unitdp(request)
    with org.lock:
        batch = Journal()
        outcomes: list[tuple[dict, dict | None, list[str]]] = []
        warnings: list[list[str]] = []
        for payload in items:
            element = Journal()
            write = Write(org, element, unitdp, _client_id(request))
            warnings.append(write.warnings)
            try:
                stored = operation(write, payload)
                batch.absorb(element)
                outcomes.append((payload, stored, []))
            except NotFound:
                element.rollback()
                batch.rollback()
                return not_found()
            except Invalid as refused:
                element.rollback()
                outcomes.append((payload, None, refused.messages))
        failed = [(payload, messages) for payload, stored, messages in outcomes if messages]
        if failed and summarize:
            batch.rollback()
            return validation_error("A validation exception occurred",
                                    [_echo(payload, messages, plural) for payload, messages in failed])
        _notify_webhooks(request, org, batch)
        results = []
        for (payload, stored, messages), remarks in zip(outcomes, warnings):
            if messages:
                results.append(_echo(payload, messages, plural))
            else:
                results.append(dict(render(stored), StatusAttributeString="OK"))
            if remarks:
                results[-1]["Warnings"] = [{"Message": m} for m in remarks]
        return _envelope(request, plural, results)


def _notify_webhooks(request: Request, org: XeroOrg, committed: Journal) -> None:
    """Tell the sandbox's webhook subscription (if any) which invoices and contacts this write saved.
    Only queues: delivery happens on the subscription's own thread, so the API call never waits or fails."""
    sandbox = getattr(request.app.state, "xero", None)
    subscription = getattr(sandbox, "webhooks", None)
    if subscription is not None:
        subscription.notify(events_for(org, committed.changes()))


def _paged(request: Request, documents: list[dict]) -> tuple[list[dict], dict | None]:
    page_text = _query(request, "page")
    if not page_text:
        return documents, None
    try:
        page = max(1, int(page_text))
        size_text = _query(request, "pageSize")
        page_size = min(1000, max(1, int(size_text))) if size_text else 100
    except ValueError:
        return documents, None
    start = (page - 1) * page_size
    count = len(documents)
    return documents[start:start + page_size], {"page": page, "pageSize": page_size,
                                               "pageCount": math.ceil(count / page_size), "itemCount": count}


def _modified_since(request: Request, documents: list[dict]) -> list[dict]:
    header = request.headers.get("if-modified-since")
    if not header:
        return documents
    try:
        since = parse_datetime(header)
    except ValueError:
        return documents
    return [d for d in documents if d.get("UpdatedDateUTC") and d["UpdatedDateUTC"] >= since]


# Per collection, the `where` paths (lower case) a read is narrowed by, and the store's index for each
# (None: the document id itself): what the sync asks by.
_WHERE_INDEXES = {
    "invoices": {"invoiceid": None, "invoicenumber": "number", "reference": "reference", "contact.contactid": "contact"},
    "credit_notes": {"creditnoteid": None, "creditnotenumber": "number", "reference": "reference",
                     "contact.contactid": "contact"},
    "contacts": {"contactid": None, "name": "where_name", "contactnumber": "where_number",
                 "accountnumber": "account_number"},
    "payments": {"paymentid": None, "reference": "reference", "invoice.invoiceid": "invoice"},
    "items": {"itemid": None, "code": "code"},
}


def _narrowed(request: Request, org: XeroOrg, collection: str, *named: set[str] | None, where: bool = True) -> list[dict]:
    """The stored documents a read may keep, in store order: those the ids in `named` (each a set of
    document ids, or None), the `where` clause's equality terms or its Date range point at (the fewest),
    else every one. It only narrows, from the indexes: the read's own filters still decide what it
    keeps, as they always did."""
    store = getattr(org, collection)
    choices = [ids for ids in named if ids is not None]
    paths = _WHERE_INDEXES.get(collection, {})
    alternatives = equality_alternatives(_query(request, "where"), set(paths)) if where and paths else None
    if alternatives is not None:
        found: set[str] = set()
        for path, value in alternatives:
            index, key = paths[path], value.casefold()
            found |= ({key, value.lower()} & store.keys()) if index is None else store.filed(index, [key])
        choices.append(found)
    ranges = DOCUMENT_RANGES.get(collection, {})
    bounds = date_bounds(_query(request, "where"), set(ranges)) if where and ranges else None
    for path, (low, low_inclusive, high, high_inclusive) in (bounds or {}).items():
        choices.append(store.between(path, low, low_inclusive, high, high_inclusive))
    if not choices:
        return list(store.values())
    return store.in_order(min(choices, key=len))


def _filter(request: Request, views: list[tuple[dict, dict]], default_order, *,
            where: bool = True) -> list[tuple[dict, dict]] | Response:
    """views: (stored document, rendered view) pairs; `where`/`order` see the rendered view. `where=False`:
    the endpoint has no `where` parameter (it is ignored)."""
    try:
        predicate = compile_where(_query(request, "where") if where else None)
        kept = [(doc, view) for doc, view in views if predicate(view)]
        by_view = {id(view): (doc, view) for doc, view in kept}
        ordered = sort_documents([dict(view, _order=doc.get("_order", 0), _ref=id(view)) for doc, view in kept],
                                 _query(request, "order"), default_order)
        return [by_view[v["_ref"]] for v in ordered]
    except QueryError as error:
        return validation_error(str(error))


# --- invoices, credit notes, purchase orders ---------------------------------------------------------

def _document_routes(kind: DocKind, base: str, plural: str) -> None:
    id_param = kind.id_field

    async def create(request: Request):
        return await _write_documents(request, kind, base, plural, "create")

    async def upsert(request: Request):
        return await _write_documents(request, kind, base, plural, "upsert")

    async def update_one(request: Request):
        return await _write_documents(request, kind, f"{base}/{{{id_param}}}", plural, "update",
                                      request.path_params[id_param])

    async def get_one(request: Request):
        org = _org(request)
        doc = _find_document(org, kind, request.path_params[id_param])
        if doc is None:
            return not_found()
        if "application/pdf" in request.headers.get("accept", ""):
            return _pdf(org, kind, doc)
        return _envelope(request, plural, [render_document(org, kind, doc, unitdp=_unitdp(request))])

    async def get_pdf(request: Request):
        org = _org(request)
        doc = _find_document(org, kind, request.path_params[id_param])
        return not_found() if doc is None else _pdf(org, kind, doc)

    async def get_many(request: Request):
        return _list_documents(request, kind, plural)

    router.add_api_route(base, create, methods=["PUT"])
    router.add_api_route(base, upsert, methods=["POST"])
    router.add_api_route(base, get_many, methods=["GET"])
    router.add_api_route(f"{base}/{{{id_param}}}/pdf", get_pdf, methods=["GET"])
    router.add_api_route(f"{base}/{{{id_param}}}", get_one, methods=["GET"])
    router.add_api_route(f"{base}/{{{id_param}}}", update_one, methods=["POST"])


def _find_document(org: XeroOrg, kind: DocKind, key: str) -> dict | None:
    store = getattr(org, kind.collection)
    found = store.get(key.lower())
    if found is None:
        found = next((d for d in store.find("number", key.casefold())
                      if str(d.get(kind.number_field, "")).casefold() == key.casefold()), None)
    return found


async def _write_documents(request: Request, kind: DocKind, template: str, plural: str, mode: str,
                           document_id: str | None = None) -> Response:
    raw = await request.body()
    body, refusal = await _read_json(request, template)
    if refusal is not None:
        return _idempotent(request, raw, lambda: refusal)
    org = _org(request)
    items = body.get(plural) or []
    if document_id is not None:
        items = items[:1]
    summarize = _flag(request, "summarizeErrors", True)
    unitdp = _unitdp(request)

    def operation(w: Write, payload: dict) -> dict:
        return save_document(w, kind, payload, mode=mode, document_id=document_id)

    def produce() -> Response:
        if not items:
            return validation_error(f"The request must contain at least one element in {plural}.")
        return _write_batch(request, items, plural, operation,
                            lambda doc: render_document(org, kind, getattr(org, kind.collection)[doc[kind.id_field]],
                                                        unitdp=unitdp), summarize)

    return _idempotent(request, raw, produce)


def _list_documents(request: Request, kind: DocKind, plural: str) -> Response:
    org = _org(request)
    unitdp = _unitdp(request)
    with org.lock:
        if kind is PURCHASE_ORDER:
            documents = list(org.purchase_orders.values())
        else:
            store = getattr(org, kind.collection)
            ids = {i.lower() for i in _csv(request, "IDs")} or None
            numbers = {n.casefold() for n in _csv(request, "InvoiceNumbers")} if kind is INVOICE else None
            contacts = {i.lower().casefold() for i in _csv(request, "ContactIDs")}
            documents = _narrowed(request, org, kind.collection, ids,
                                  store.filed("number", numbers) if numbers else None,
                                  store.filed("contact", contacts) if contacts else None)
    documents = _modified_since(request, documents)
    if kind is PURCHASE_ORDER:
        # GET /PurchaseOrders takes only If-Modified-Since, Status, DateFrom, DateTo, order, page and
        # pageSize: no `where`, IDs or ContactIDs. Like Xero, the others are ignored, not refused.
        documents = _purchase_orders_filtered(request, documents)
    else:
        documents = _shown_where(request, _documents_filtered(request, kind, documents))
    views = [(d, render_document(org, kind, d, unitdp=unitdp, with_lines=False)) for d in documents]
    filtered = _filter(request, views, [("UpdatedDateUTC", False), ("_order", False)],
                       where=kind is not PURCHASE_ORDER)
    if isinstance(filtered, Response):
        return filtered
    page, pagination = _paged(request, [doc for doc, _ in filtered])
    # Paged reads carry full line items; unpaged multi-document reads and summaryOnly do not.
    summary = kind is INVOICE and _flag(request, "summaryOnly", False)
    with_lines = pagination is not None and not summary
    items = [render_document(org, kind, d, unitdp=unitdp, with_lines=with_lines) for d in page]
    if summary:
        # Xero says only that a summary leaves out the "computation-heavy" fields: the narrowest reading
        # (no settlements, no link) keeps a client honest that reads them again by id.
        for item in items:
            for field in _LEFT_OUT_OF_SUMMARIES:
                item.pop(field, None)
    return _envelope(request, plural, items, pagination)


_LEFT_OUT_OF_SUMMARIES = ("Payments", "CreditNotes", "Prepayments", "Overpayments", "Url", "HasAttachments")


# Fields an invoice or credit note shows exactly as it is stored (render_document changes the others).
_SHOWN_AS_STORED = {
    "invoiceid", "creditnoteid", "invoicenumber", "creditnotenumber", "type", "status", "reference", "date",
    "duedate", "expectedpaymentdate", "plannedpaymentdate", "fullypaidondate", "updateddateutc", "currencycode",
    "currencyrate", "lineamounttypes", "subtotal", "totaltax", "total", "totaldiscount", "isdiscounted",
    "amountdue", "amountpaid", "amountcredited", "remainingcredit", "url", "brandingthemeid", "senttocontact",
    "contact.contactid",
}


def _shown_where(request: Request, documents: list[dict]) -> list[dict]:
    """The documents a `where` reading only fields shown as stored keeps, tested on the stored documents,
    so a date range or a Type test renders only what it keeps. The rendered views are tested again."""
    compiled = where_fields(_query(request, "where"))
    if compiled is None or not compiled[1] <= _SHOWN_AS_STORED:
        return documents
    predicate = compiled[0]
    return [d for d in documents if predicate(d)]


def _documents_filtered(request: Request, kind: DocKind, documents: list[dict]) -> list[dict]:
    ids = {i.lower() for i in _csv(request, "IDs")}
    if ids:
        documents = [d for d in documents if d[kind.id_field] in ids]
    if kind is INVOICE:
        numbers = {n.casefold() for n in _csv(request, "InvoiceNumbers")}
        if numbers:
            documents = [d for d in documents if str(d.get("InvoiceNumber", "")).casefold() in numbers]
    contact_ids = {i.lower() for i in _csv(request, "ContactIDs")}
    if contact_ids:
        documents = [d for d in documents if d["Contact"]["ContactID"] in contact_ids]
    statuses = {s.upper() for s in _csv(request, "Statuses")} | {s.upper() for s in _csv(request, "Status")}
    if statuses:
        documents = [d for d in documents if d["Status"] in statuses]
    if _flag(request, "createdByMyApp", False):
        documents = [d for d in documents if d.get("_created_by") == _client_id(request)]
    term = (_query(request, "searchTerm") or "").casefold()
    if term:
        documents = [d for d in documents if term in str(d.get(kind.number_field, "")).casefold()
                     or term in str(d.get("Reference", "")).casefold()]
    return documents


def _purchase_orders_filtered(request: Request, documents: list[dict]) -> list[dict]:
    status = (_query(request, "Status") or "").strip().upper()
    if status:
        documents = [d for d in documents if d["Status"] == status]
    for name, keep in (("DateFrom", lambda d, when: d["Date"] >= when), ("DateTo", lambda d, when: d["Date"] <= when)):
        if _query(request, name):
            when = parse_date(_query(request, name))
            documents = [d for d in documents if keep(d, when)]
    return documents


_document_routes(INVOICE, "/Invoices", "Invoices")
_document_routes(CREDIT_NOTE, "/CreditNotes", "CreditNotes")
_document_routes(PURCHASE_ORDER, "/PurchaseOrders", "PurchaseOrders")


@router.put("/CreditNotes/{CreditNoteID}/Allocations")
async def allocate(request: Request, CreditNoteID: str):
    raw = await request.body()
    body, refusal = await _read_json(request, "/CreditNotes/{CreditNoteID}/Allocations")
    if refusal is not None:
        return _idempotent(request, raw, lambda: refusal)
    org = _org(request)
    items = body.get("Allocations") or []

    def render(allocation: dict) -> dict:
        invoice = org.invoices[allocation["InvoiceID"]]
        note = org.credit_notes[allocation["CreditNoteID"]]
        return {"AllocationID": allocation["AllocationID"], "Amount": allocation["Amount"], "Date": allocation["Date"],
                "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice.get("InvoiceNumber", ""),
                            "Payments": [], "CreditNotes": [], "Prepayments": [], "Overpayments": [],
                            "HasErrors": False, "IsDiscounted": False},
                "CreditNote": {"CreditNoteID": note["CreditNoteID"], "CreditNoteNumber": note.get("CreditNoteNumber", ""),
                               "HasErrors": False}}

    return _idempotent(request, raw, lambda: _write_batch(
        request, items, "Allocations", lambda w, payload: allocate_credit_note(w, CreditNoteID, payload), render,
        _flag(request, "summarizeErrors", True)))


def _pdf(org: XeroOrg, kind: DocKind, doc: dict) -> Response:
    contact = org.contacts[doc["Contact"]["ContactID"]]
    lines = [f"{org.name}", f"{kind.noun} {doc.get(kind.number_field, '')}", f"To: {contact['Name']}",
             f"Date: {doc['Date'].isoformat()}"]
    lines += [f"{line.get('Description', '')[:60]}  {line['Quantity']} x {line['UnitAmount']} = {line['LineAmount']}"
              for line in doc["LineItems"]]
    lines += [f"Subtotal {doc['SubTotal']}", f"Tax {doc['TotalTax']}", f"Total {doc['CurrencyCode']} {doc['Total']}"]
    return Response(make_pdf(lines), media_type="application/pdf")


def make_pdf(lines: list[str]) -> bytes:
    """A small but valid one-page PDF, so clients can store and open what they fetched."""
    def escape(text: str) -> str:
        return text.encode("latin-1", "replace").decode("latin-1").replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    text = "BT /F1 11 Tf 50 800 Td 14 TL " + " ".join(f"({escape(line)}) '" for line in lines) + " ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text.encode("latin-1")) + text.encode("latin-1") + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# --- attachments ------------------------------------------------------------------------------------

def _attachment_routes(base: str, id_param: str, collection: str) -> None:
    async def list_attachments(request: Request):
        org = _org(request)
        doc_id = request.path_params[id_param].lower()
        if doc_id not in getattr(org, collection):
            return not_found()
        files = org.attachments.get(doc_id, {})
        return _envelope(request, "Attachments", [_attachment_view(a) for a in files.values()])

    async def get_attachment(request: Request):
        org = _org(request)
        doc_id = request.path_params[id_param].lower()
        wanted = request.path_params["FileName"]
        files = org.attachments.get(doc_id, {})
        found = files.get(wanted.lower()) or next((a for a in files.values() if a["AttachmentID"] == wanted.lower()), None)
        if found is None:
            return not_found()
        return Response(found["Content"], media_type=found["MimeType"])

    async def put_attachment(request: Request):
        return await _store_attachment(request, base, id_param, collection, include_online_allowed=True)

    async def post_attachment(request: Request):
        return await _store_attachment(request, base, id_param, collection, include_online_allowed=False)

    router.add_api_route(f"{base}/{{{id_param}}}/Attachments", list_attachments, methods=["GET"])
    router.add_api_route(f"{base}/{{{id_param}}}/Attachments/{{FileName}}", get_attachment, methods=["GET"])
    router.add_api_route(f"{base}/{{{id_param}}}/Attachments/{{FileName}}", put_attachment, methods=["PUT"])
    router.add_api_route(f"{base}/{{{id_param}}}/Attachments/{{FileName}}", post_attachment, methods=["POST"])


def _attachment_view(attachment: dict) -> dict:
    return {k: v for k, v in attachment.items() if k != "Content"}


async def _store_attachment(request: Request, base: str, id_param: str, collection: str,
                            include_online_allowed: bool) -> Response:
    raw = await request.body()
    org = _org(request)
    doc_id = request.path_params[id_param].lower()
    file_name = request.path_params["FileName"]

    def produce() -> Response:
        with org.lock:
            document = getattr(org, collection).get(doc_id)
            if document is None:
                return not_found()
            if not file_name.strip() or any(ch in FORBIDDEN_FILENAME_CHARS for ch in file_name):
                return validation_error(f"The file name '{file_name}' is not valid: file names cannot contain "
                                        "< > : \" / \\ | ? * + or be empty.")
            if not raw:
                return validation_error("The attachment is empty.")
            if len(raw) > org.max_attachment_bytes:
                return _json({"Title": "Request Entity Too Large", "Status": 413,
                              "Detail": f"Attachments are limited to {org.max_attachment_bytes} bytes."}, status=413)
            files = org.attachments.setdefault(doc_id, {})
            existing = files.get(file_name.lower())
            if existing is None and len(files) >= org.max_attachments_per_document:
                return validation_error(f"A document can have at most {org.max_attachments_per_document} attachments.")
            mime = request.headers.get("content-type", "").split(";")[0].strip()
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
            include_online = _flag(request, "IncludeOnline", False) if include_online_allowed else bool(
                existing and existing.get("IncludeOnline"))
            attachment_id = existing["AttachmentID"] if existing else str(uuid.uuid4())
            attachment = {
                "AttachmentID": attachment_id, "FileName": file_name,
                "Url": f"{str(request.base_url).rstrip('/')}{request.url.path}",
                "MimeType": mime, "ContentLength": len(raw), "Content": raw,
            }
            if include_online and (document.get("Type") in ("ACCREC", "ACCRECCREDIT")):
                attachment["IncludeOnline"] = True
            files[file_name.lower()] = attachment
            document["UpdatedDateUTC"] = org.now()
            return _envelope(request, "Attachments", [_attachment_view(attachment)])

    return _idempotent(request, raw, produce)


_attachment_routes("/Invoices", "InvoiceID", "invoices")
_attachment_routes("/CreditNotes", "CreditNoteID", "credit_notes")
_attachment_routes("/PurchaseOrders", "PurchaseOrderID", "purchase_orders")
_attachment_routes("/Contacts", "ContactID", "contacts")


# --- contacts ----------------------------------------------------------------------------------------

async def _write_contacts(request: Request, template: str, mode: str, contact_id: str | None = None) -> Response:
    raw = await request.body()
    body, refusal = await _read_json(request, template)
    if refusal is not None:
        return _idempotent(request, raw, lambda: refusal)
    org = _org(request)
    items = (body.get("Contacts") or [])[: 1 if contact_id else None]

    def produce() -> Response:
        if not items:
            return validation_error("The request must contain at least one element in Contacts.")
        return _write_batch(request, items, "Contacts",
                            lambda w, payload: save_contact(w, payload, mode=mode, contact_id=contact_id),
                            lambda c: render_contact(org, org.contacts[c["ContactID"]]),
                            _flag(request, "summarizeErrors", True))

    return _idempotent(request, raw, produce)


@router.put("/Contacts")
async def create_contacts(request: Request):
    return await _write_contacts(request, "/Contacts", "create")


@router.post("/Contacts")
async def update_or_create_contacts(request: Request):
    return await _write_contacts(request, "/Contacts", "upsert")


@router.post("/Contacts/{ContactID}")
async def update_contact(request: Request, ContactID: str):
    return await _write_contacts(request, "/Contacts/{ContactID}", "update", ContactID)


@router.get("/Contacts")
async def get_contacts(request: Request):
    org = _org(request)
    with org.lock:
        contacts = _narrowed(request, org, "contacts", {i.lower() for i in _csv(request, "IDs")} or None)
    contacts = _modified_since(request, contacts)
    if not _flag(request, "includeArchived", False):
        contacts = [c for c in contacts if c["ContactStatus"] != "ARCHIVED"]
    ids = {i.lower() for i in _csv(request, "IDs")}
    if ids:
        contacts = [c for c in contacts if c["ContactID"] in ids]
    term = (_query(request, "searchTerm") or "").casefold()
    if term:
        fields = ("Name", "FirstName", "LastName", "ContactNumber", "CompanyNumber", "EmailAddress")
        contacts = [c for c in contacts if any(term in str(c.get(f) or "").casefold() for f in fields)]
    filtered = _filter(request, [(c, render_contact(org, c)) for c in contacts], [("Name", False), ("_order", False)])
    if isinstance(filtered, Response):
        return filtered
    page, pagination = _paged(request, [view for _, view in filtered])
    return _envelope(request, "Contacts", page, pagination)


@router.get("/Contacts/{ContactID}")
async def get_contact(request: Request, ContactID: str):
    org = _org(request)
    contact = org.contacts.get(ContactID.lower()) or org.contact_by_number(ContactID)
    if contact is None:
        return not_found()
    return _envelope(request, "Contacts", [render_contact(org, contact)])


# --- items ---------------------------------------------------------------------------------------------
# Xero answers a too-long Code or Name per element, in its own words, so the schema's maxLength is left
# to the rules (rules.save_item).
_ITEM_PER_ELEMENT = ("maxLength",)


async def _write_items(request: Request, template: str, mode: str, item_id: str | None = None) -> Response:
    raw = await request.body()
    body, refusal = await _read_json(request, template, _ITEM_PER_ELEMENT)
    if refusal is not None:
        return _idempotent(request, raw, lambda: refusal)
    org = _org(request)
    items = (body.get("Items") or [])[: 1 if item_id else None]
    unitdp = _unitdp(request)

    def produce() -> Response:
        if not items:
            return validation_error("The request must contain at least one element in Items.")
        return _write_batch(request, items, "Items",
                            lambda w, payload: save_item(w, payload, mode=mode, item_id=item_id),
                            lambda i: render_item(org.items[i["ItemID"]], unitdp=unitdp),
                            _flag(request, "summarizeErrors", True))

    return _idempotent(request, raw, produce)


@router.put("/Items")
async def create_items(request: Request):
    return await _write_items(request, "/Items", "create")


@router.post("/Items")
async def update_or_create_items(request: Request):
    return await _write_items(request, "/Items", "upsert")


@router.post("/Items/{ItemID}")
async def update_item(request: Request, ItemID: str):
    return await _write_items(request, "/Items/{ItemID}", "update", ItemID)


@router.get("/Items")
async def get_items(request: Request):
    org = _org(request)
    unitdp = _unitdp(request)
    with org.lock:
        items = _narrowed(request, org, "items")
    items = _modified_since(request, items)
    filtered = _filter(request, [(i, render_item(i, unitdp=unitdp)) for i in items], [("Code", False)])
    if isinstance(filtered, Response):
        return filtered
    return _envelope(request, "Items", [view for _, view in filtered])


@router.get("/Items/{ItemID}")
async def get_item(request: Request, ItemID: str):
    """By ItemID or by Code, as Xero allows."""
    org = _org(request)
    item = org.items.get(ItemID.lower()) or org.item_by_code(ItemID)
    if item is None:
        return not_found()
    return _envelope(request, "Items", [render_item(item, unitdp=_unitdp(request))])


# --- payments ------------------------------------------------------------------------------------------

@router.put("/Payments")
async def create_payments(request: Request):
    raw = await request.body()
    body, refusal = await _read_json(request, "/Payments")
    if refusal is not None:
        return _idempotent(request, raw, lambda: refusal)
    org = _org(request)
    items = body.get("Payments") or []

    def produce() -> Response:
        if not items:
            return validation_error("The request must contain at least one element in Payments.")
        return _write_batch(request, items, "Payments", create_payment,
                            lambda p: render_payment(org, org.payments[p["PaymentID"]]),
                            _flag(request, "summarizeErrors", True))

    return _idempotent(request, raw, produce)


@router.post("/Payments")
async def create_single_payment(request: Request):
    raw = await request.body()
    body, refusal = await _read_json(request, "/Payments")
    if refusal is not None:
        return _idempotent(request, raw, lambda: refusal)
    org = _org(request)
    return _idempotent(request, raw, lambda: _write_batch(
        request, [body], "Payments", create_payment, lambda p: render_payment(org, org.payments[p["PaymentID"]]), True))


@router.post("/Payments/{PaymentID}")
async def delete_one_payment(request: Request, PaymentID: str):
    raw = await request.body()
    body, refusal = await _read_json(request, "/Payments/{PaymentID}")
    if refusal is not None:
        return _idempotent(request, raw, lambda: refusal)
    org = _org(request)
    return _idempotent(request, raw, lambda: _write_batch(
        request, [body], "Payments", lambda w, payload: delete_payment(w, PaymentID, payload),
        lambda p: render_payment(org, org.payments[p["PaymentID"]]), True))


@router.get("/Payments")
async def get_payments(request: Request):
    org = _org(request)
    with org.lock:
        payments = _narrowed(request, org, "payments")
    payments = _modified_since(request, payments)
    views = [(p, render_payment(org, p)) for p in payments]
    filtered = _filter(request, views, [("UpdatedDateUTC", False), ("_order", False)])
    if isinstance(filtered, Response):
        return filtered
    page, pagination = _paged(request, [view for _, view in filtered])
    return _envelope(request, "Payments", page, pagination)


@router.get("/Payments/{PaymentID}")
async def get_payment(request: Request, PaymentID: str):
    org = _org(request)
    payment = org.payments.get(PaymentID.lower())
    if payment is None:
        return not_found()
    return _envelope(request, "Payments", [render_payment(org, payment)])


# --- settings ----------------------------------------------------------------------------------------

def _settings_list(request: Request, plural: str, rows: list[dict], default_order) -> Response:
    rows = _modified_since(request, rows) if plural == "Accounts" else rows
    filtered = _filter(request, [(row, dict(row)) for row in rows], default_order)
    if isinstance(filtered, Response):
        return filtered
    return _envelope(request, plural, [view for _, view in filtered])


@router.get("/Accounts")
async def get_accounts(request: Request):
    return _settings_list(request, "Accounts", list(_org(request).accounts.values()), [("Code", False)])


@router.get("/Accounts/{AccountID}")
async def get_account(request: Request, AccountID: str):
    account = _org(request).accounts.get(AccountID.lower())
    return not_found() if account is None else _envelope(request, "Accounts", [account])


@router.get("/TaxRates")
async def get_tax_rates(request: Request):
    rows = list(_org(request).tax_rates.values())
    wanted = _query(request, "TaxType")
    if wanted:
        rows = [r for r in rows if r["TaxType"].upper() == wanted.upper()]
    return _settings_list(request, "TaxRates", rows, [("Name", False)])


@router.get("/TaxRates/{TaxType}")
async def get_tax_rate(request: Request, TaxType: str):
    rate = _org(request).tax_rates.get(TaxType.upper())
    return not_found() if rate is None else _envelope(request, "TaxRates", [rate])


def _tracking_view(category: dict, include_archived: bool) -> dict:
    options = [dict(o) for o in category["Options"] if include_archived or o["Status"] == "ACTIVE"]
    return dict(category, Options=options)


@router.get("/TrackingCategories")
async def get_tracking_categories(request: Request):
    include_archived = _flag(request, "includeArchived", False)
    rows = [_tracking_view(c, include_archived) for c in _org(request).tracking_categories.values()
            if include_archived or c["Status"] == "ACTIVE"]
    return _settings_list(request, "TrackingCategories", rows, [("Name", False)])


@router.get("/TrackingCategories/{TrackingCategoryID}")
async def get_tracking_category(request: Request, TrackingCategoryID: str):
    category = _org(request).tracking_categories.get(TrackingCategoryID.lower())
    if category is None:
        return not_found()
    return _envelope(request, "TrackingCategories", [_tracking_view(category, True)])


@router.get("/BrandingThemes")
async def get_branding_themes(request: Request):
    return _settings_list(request, "BrandingThemes", list(_org(request).branding_themes.values()),
                          [("SortOrder", False)])


@router.get("/BrandingThemes/{BrandingThemeID}")
async def get_branding_theme(request: Request, BrandingThemeID: str):
    theme = _org(request).branding_themes.get(BrandingThemeID.lower())
    return not_found() if theme is None else _envelope(request, "BrandingThemes", [theme])


@router.get("/Currencies")
async def get_currencies(request: Request):
    return _settings_list(request, "Currencies", list(_org(request).currencies.values()), [])


@router.get("/Organisation")
async def get_organisation(request: Request):
    return _envelope(request, "Organisations", [render_organisation(_org(request))])


@router.get("/Organisation/Actions")
async def get_organisation_actions(request: Request):
    actions = [{"Name": name, "Status": status} for name, status in _org(request).actions.items()]
    return _envelope(request, "Actions", actions)

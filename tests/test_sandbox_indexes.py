"""The simulators' indexes answer as a look at every record would, whatever wrote the records.

Xero files its documents by number, name, code, reference and contact; Autotask files the fields `eq`
and `in` conditions ask about. Each test writes through the API (creates, updates, voids, deletes, a
batch refused whole and rolled back, a restart from the saved state) and then checks the indexed answers
against a scan: the indexes rebuilt from the documents, the same read asked in a form no index narrows
(`NOT (Field != "x")` for `Field == "x"`), and the Autotask query evaluated over every record.
"""
from __future__ import annotations

from datetime import date

import httpx
import pytest

from sandbox.autotask.query import parse_query
from sandbox.stack import XERO_CLIENT_ID, SandboxStack
from sandbox.xero.limits import XeroLimits
from sandbox.xero.org import DOCUMENT_INDEXES, DOCUMENT_RANGES, DocumentStore

END = date(2026, 11, 24)
ROOMY = XeroLimits(per_minute=100_000, per_day=100_000, concurrent=50, app_per_minute=100_000)


def _stack(state_dir: str | None = None) -> SandboxStack:
    return SandboxStack(seed=11, invoices=8, window_end=END, state_dir=state_dir)


class _Xero:
    def __init__(self, stack: SandboxStack):
        stack.xero.limits = ROOMY
        self.stack = stack
        token = stack.xero.issue_tokens(XERO_CLIENT_ID, [stack.org.tenant_id])["access_token"]
        self.http = httpx.Client(base_url=f"{stack.xero_url}/api.xro/2.0", timeout=30, headers={
            "Authorization": f"Bearer {token}", "Xero-Tenant-Id": stack.org.tenant_id, "Accept": "application/json"})

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def write(self, method: str, path: str, plural: str, elements: list[dict], **params) -> list[dict]:
        answer = self.call(method, path, params={"summarizeErrors": "false", **params}, json={plural: elements})
        assert answer.status_code == 200, answer.text
        return answer.json()[plural]

    def read(self, path: str, **params) -> list[dict]:
        """The documents a read answers, without the envelope's per-call Id and time."""
        answer = self.call("GET", path, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return {k: v for k, v in body.items() if k not in ("Id", "DateTimeUTC")}


def _invoice(number: str, contact: dict, *, reference: str = "", status: str = "AUTHORISED", kind: str = "ACCREC",
             day: str = "2026-11-02"):
    invoice = {"Type": kind, "InvoiceNumber": number, "Contact": contact, "Date": day,
               "DueDate": "2026-11-30", "Status": status,
               "LineItems": [{"Description": "Managed services", "Quantity": 1, "UnitAmount": 100,
                              "AccountCode": "200" if kind == "ACCREC" else "400"}]}
    if reference:
        invoice["Reference"] = reference
    return invoice


def assert_indexes_current(org) -> None:
    """Every store's indexes are what filing its documents afresh gives, and keep the store's order."""
    for collection, indexes in DOCUMENT_INDEXES.items():
        store = getattr(org, collection)
        assert isinstance(store, DocumentStore), collection
        fresh = DocumentStore(indexes, dict(store), DOCUMENT_RANGES.get(collection))
        assert store._index == fresh._index, f"stale index in {collection}"
        assert store._range_keys == fresh._range_keys, f"stale ordered index in {collection}"
        assert store.in_order(list(store)) == list(store.values()), f"order of {collection}"


def _scan_invoice_by_number(org, number: str, invoice_type: str = "ACCREC"):
    return next((i for i in org.invoices.values()
                 if i["Type"] == invoice_type and i.get("InvoiceNumber", "").casefold() == number.casefold()), None)


def _scan_contact_by_name(org, name: str):
    return next((c for c in org.contacts.values() if c["ContactStatus"] == "ACTIVE"
                 and c["Name"].strip().casefold() == name.strip().casefold()), None)


def _scan_contact_by_number(org, number: str):
    return next((c for c in org.contacts.values()
                 if (c.get("ContactNumber") or "").strip().casefold() == number.strip().casefold()), None)


def _unnarrowed(field: str, values: list[str]) -> str:
    """The same test as `field=="v" OR ...`, in a form no index narrows: every document is looked at."""
    return " OR ".join(f'NOT ({field} != "{v}")' for v in values)


def _build_books(xero: _Xero) -> dict:
    """Contacts and invoices written, changed, voided and deleted over the API, and a batch refused
    whole; returns what was written."""
    contacts = xero.write("PUT", "/Contacts", "Contacts", [
        {"Name": "Index Alpha Ltd", "ContactNumber": "IX-A", "AccountNumber": "ACC-A"},
        {"Name": "Index Beta Ltd", "ContactNumber": "IX-B"},
        {"Name": "Index Gamma Ltd"},
    ])
    alpha, beta, gamma = ({"ContactID": c["ContactID"]} for c in contacts)
    made = xero.write("PUT", "/Invoices", "Invoices", [
        _invoice("IX-1", alpha, reference="PO 1"), _invoice("IX-2", alpha, reference="PO 2", day="2026-11-05"),
        _invoice("IX-3", beta, reference="po 1"), _invoice("IX-4", {"ContactNumber": "IX-B"}, status="DRAFT"),
        _invoice("IX-5", {"Name": "Index Gamma Ltd"}, status="DRAFT", reference="PO 5", day="2026-10-30"),
        _invoice("SUP-77", gamma, kind="ACCPAY"), _invoice("IX-6", gamma, status="DRAFT"),
    ])
    ids = {i["InvoiceNumber"]: i["InvoiceID"] for i in made}
    # Renumbered, moved to another contact, re-referenced, voided and deleted, each through the API.
    xero.write("POST", f"/Invoices/{ids['IX-2']}", "Invoices", [{"InvoiceNumber": "IX-2B", "Reference": "PO 2B"}])
    xero.write("POST", "/Invoices", "Invoices", [{"InvoiceID": ids["IX-6"], "Contact": beta}])
    xero.write("POST", "/Invoices", "Invoices", [{"InvoiceID": ids["IX-3"], "Status": "VOIDED"}])
    xero.write("POST", "/Invoices", "Invoices", [{"InvoiceID": ids["IX-4"], "Status": "DELETED"}])
    # Upserted by number: POST without an id finds IX-5 by its number and changes it.
    xero.write("POST", "/Invoices", "Invoices", [{"Type": "ACCREC", "InvoiceNumber": "IX-5", "Reference": "PO 5B"}])
    xero.write("POST", "/Contacts", "Contacts", [{"ContactID": beta["ContactID"], "Name": "Index Beta Renamed",
                                                  "ContactNumber": "IX-B2"}])
    # A batch refused whole (summarizeErrors): nothing of it stays, in the store or its indexes.
    refused = xero.call("PUT", "/Invoices", json={"Invoices": [
        _invoice("IX-9", alpha, reference="PO 9"), _invoice("IX-1", alpha)]})
    assert refused.status_code == 400 and "Invoice # must be unique." in refused.text
    return {"ids": ids, "contacts": contacts}


NUMBERS = ["IX-1", "IX-2", "IX-2B", "ix-3", "IX-4", "IX-5", "IX-6", "IX-9", "SUP-77", "NOPE"]
REFERENCES = ["PO 1", "PO 2", "PO 2B", "PO 5", "PO 5B", "PO 9", "none such"]


def assert_reads_agree_with_scans(xero: _Xero, written: dict) -> None:
    org = xero.stack.org
    assert_indexes_current(org)
    for number in NUMBERS:
        assert org.invoice_by_number(number) is _scan_invoice_by_number(org, number), number
        assert org.invoice_by_number(number, "ACCPAY") is _scan_invoice_by_number(org, number, "ACCPAY"), number
    for name in ["Index Alpha Ltd", " index beta ltd", "Index Beta Renamed", "INDEX GAMMA LTD", "nobody"]:
        assert org.contact_by_name(name) is _scan_contact_by_name(org, name), name
    for number in ["IX-A", "ix-b", "IX-B2", "", "nobody"]:
        assert org.contact_by_number(number) is _scan_contact_by_number(org, number), number

    # InvoiceNumbers, where on numbers and references: what the index narrows equals the scan.
    by_numbers = xero.read("/Invoices", InvoiceNumbers=",".join(NUMBERS), page=1)
    where_numbers = xero.read("/Invoices", where=" OR ".join(f'InvoiceNumber=="{n}"' for n in NUMBERS), page=1)
    scanned_numbers = xero.read("/Invoices", where=_unnarrowed("InvoiceNumber", NUMBERS), page=1)
    assert by_numbers == where_numbers == scanned_numbers
    assert {i["InvoiceNumber"] for i in by_numbers["Invoices"]} == {"IX-1", "IX-2B", "IX-3", "IX-4", "IX-5", "IX-6",
                                                                    "SUP-77"}
    references = " OR ".join(f'Reference=="{r}"' for r in REFERENCES)
    assert xero.read("/Invoices", where=references) == xero.read("/Invoices", where=_unnarrowed("Reference", REFERENCES))
    assert xero.read("/Invoices", where=f'({references}) AND Status=="AUTHORISED"', page=1) == xero.read(
        "/Invoices", where=f'({_unnarrowed("Reference", REFERENCES)}) AND Status=="AUTHORISED"', page=1)

    # A clause on fields shown as stored (dates, type, status) is tested on the stored documents first,
    # and a date range is narrowed by the ordered index: the same as testing every rendered document
    # (an OR at the top stops the narrowing; HasErrors, a rendered field, makes the read render all).
    alpha = written["contacts"][0]["ContactID"]
    for clause in ['Date>=DateTime(2026, 11, 01) AND Date<DateTime(2026, 11, 03)', 'Type=="ACCREC"',
                   'Status=="AUTHORISED" OR Status=="VOIDED"', 'NOT (Type=="ACCPAY") AND Date<=DateTime(2026,11,02)',
                   f'Contact.ContactID==Guid("{alpha}") AND Date>DateTime(2026,11,02)', 'Reference.StartsWith("po")',
                   'DueDate==null', 'AmountDue>=100', 'Date==DateTime(2026,11,05)', 'Date>DateTime(2026,11,02)',
                   'Date>=DateTime(2026,11,02) AND Date<DateTime(2026,11,02)', 'Date<=DateTime(2026,10,30) AND '
                   'Date>=DateTime(2020,1,1) AND Date<DateTime(2026,11,30)']:
        for page in ({}, {"page": 1}):
            narrowed = xero.read("/Invoices", where=clause, **page)
            assert narrowed == xero.read("/Invoices", where=f"({clause}) AND HasErrors==false", **page) \
                == xero.read("/Invoices", where=f"(({clause}) OR false) AND HasErrors==false", **page), clause
    assert [i["InvoiceNumber"] for i in xero.read("/Invoices", where='Date>=DateTime(2026, 11, 01) AND '
                                                  'Date<DateTime(2026, 11, 03) AND Type=="ACCREC"')["Invoices"]] \
        == [d["InvoiceNumber"] for d in sorted(org.invoices.values(), key=lambda d: (d["UpdatedDateUTC"], d["_order"]))
            if d["Type"] == "ACCREC" and date(2026, 11, 1) <= d["Date"] < date(2026, 11, 3)]

    # By contact (ContactIDs and Contact.ContactID), by id, and by contact number, name, account number.
    for contact in written["contacts"]:
        contact_id = contact["ContactID"]
        by_contact = xero.read("/Invoices", ContactIDs=contact_id.upper(), page=1)
        assert by_contact == xero.read("/Invoices", where=f'Contact.ContactID==Guid("{contact_id}")', page=1) \
            == xero.read("/Invoices", where=f'NOT (Contact.ContactID != Guid("{contact_id}"))', page=1)
        assert [i["InvoiceID"] for i in by_contact["Invoices"]] == [
            i["InvoiceID"] for i in sorted((d for d in org.invoices.values() if d["Contact"]["ContactID"] == contact_id),
                                           key=lambda d: (d["UpdatedDateUTC"], d["_order"]))]
    ids = list(written["ids"].values())
    assert xero.read("/Invoices", IDs=",".join(ids)) == xero.read(
        "/Invoices", where=" OR ".join(f'NOT (InvoiceID != Guid("{i}"))' for i in ids))
    for field, values in [("ContactNumber", ["IX-A", "IX-B", "IX-B2"]), ("Name", ["index alpha ltd", "Index Beta Ltd"]),
                          ("AccountNumber", ["ACC-A", "none"])]:
        where = " OR ".join(f'{field}=="{v}"' for v in values)
        assert xero.read("/Contacts", where=where, includeArchived="true") == xero.read(
            "/Contacts", where=_unnarrowed(field, values), includeArchived="true"), field


def test_xero_indexes_agree_with_a_scan_after_every_kind_of_write(atx_home):
    with _stack() as stack:
        xero = _Xero(stack)
        written = _build_books(xero)
        assert_reads_agree_with_scans(xero, written)
        assert "IX-9" not in {i.get("InvoiceNumber") for i in stack.org.invoices.values()}
        # A number freed by a delete is taken again; a voided one stays taken; a bill's number is its own.
        again = xero.write("PUT", "/Invoices", "Invoices", [
            _invoice("IX-4", {"ContactNumber": "IX-A"}), _invoice("IX-3", {"ContactNumber": "IX-A"}),
            _invoice("IX-1", {"ContactNumber": "IX-A"}, kind="ACCPAY")])
        assert [bool(i.get("HasErrors")) for i in again] == [False, True, False]
        assert again[1]["ValidationErrors"] == [{"Message": "Invoice # must be unique."}]
        assert_reads_agree_with_scans(xero, written)


def test_xero_indexes_survive_a_restart_and_still_refuse_a_taken_number(atx_home):
    state_dir = str(atx_home / "atx" / "sandbox")
    with _stack(state_dir) as first:
        written = _build_books(_Xero(first))
        before = _Xero(first).read("/Invoices", InvoiceNumbers=",".join(NUMBERS), page=1)
    with _stack(state_dir) as second:
        assert second.resumed
        xero = _Xero(second)
        assert xero.read("/Invoices", InvoiceNumbers=",".join(NUMBERS), page=1) == before
        assert_reads_agree_with_scans(xero, written)
        refused = xero.write("PUT", "/Invoices", "Invoices", [_invoice("ix-1", {"ContactNumber": "IX-A"})])
        assert refused[0]["ValidationErrors"] == [{"Message": "Invoice # must be unique."}]
        taken_name = xero.write("PUT", "/Contacts", "Contacts", [{"Name": "index alpha ltd"}])
        assert "already assigned to another contact" in taken_name[0]["ValidationErrors"][0]["Message"]
        assert_indexes_current(second.org)


# --- Autotask ---------------------------------------------------------------------------------------------

class _Autotask:
    def __init__(self, stack: SandboxStack):
        self.stack = stack
        credential = stack.autotask.credentials
        self.http = httpx.Client(base_url=f"{stack.autotask_url}/V1.0", timeout=30, headers={
            "UserName": credential.username, "Secret": credential.secret,
            "ApiIntegrationCode": credential.integration_code, "Content-Type": "application/json"})

    def post(self, path: str, body: dict) -> dict:
        answer = self.http.post(path, json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def pages(self, entity: str, body: dict, *, between=None) -> list[list[int]]:
        """The ids of each page, following nextPageUrl; `between(page_number)` runs after each page."""
        pages, url = [], f"/{entity}/query"
        while url:
            answer = self.post(url, body)
            pages.append([item["id"] for item in answer["items"]])
            if between:
                between(len(pages))
            url = answer["pageDetails"]["nextPageUrl"]
        return pages

    def scan(self, entity: str, body: dict) -> list[int]:
        """The ids a query matches, the query evaluated over every record."""
        query = parse_query(entity, body)
        return [r["id"] for r in self.stack.autotask.records(entity) if query.matches(r)]


def _billing_items(stack: SandboxStack, count: int, first_id: int = 100_000) -> None:
    for n in range(count):
        stack.autotask.insert("BillingItems", {"id": first_id + n, "invoiceID": 9_000 + n % 7,
                                               "itemName": f"Indexed item {n}", "webServiceDate": None})


def test_an_autotask_query_paged_while_records_are_added_and_changed(atx_home):
    with _stack() as stack:
        autotask = _Autotask(stack)
        _billing_items(stack, 1_200)
        # A seventh of the records: the invoiceID index narrows the search.
        body = {"MaxRecords": 100, "Filter": [{"op": "in", "field": "invoiceID", "value": [9_003]}]}
        expected_before = autotask.scan("BillingItems", body)
        assert len(expected_before) > 100

        def write_between(page: int) -> None:
            if page == 1:
                # After page 1: one new match past the cursor, one before it (keyset paging: not seen),
                # one match on a later page moved out, one record moved in.
                stack.autotask.insert("BillingItems", {"id": 200_000, "invoiceID": 9_003, "itemName": "late"})
                stack.autotask.insert("BillingItems", {"id": 50_000, "invoiceID": 9_003, "itemName": "early"})
                stack.autotask.update("BillingItems", expected_before[-1], {"invoiceID": 9_001})
                stack.autotask.update("BillingItems", 101_198, {"invoiceID": 9_003})

        pages = autotask.pages("BillingItems", body, between=write_between)
        first, rest = pages[0], [i for page in pages[1:] for i in page]
        assert first == expected_before[:100]
        assert rest == [i for i in autotask.scan("BillingItems", body) if i > first[-1]]
        assert 200_000 in rest and 50_000 not in first + rest and expected_before[-1] not in rest
        assert 101_198 in rest
        # Page by page, the same records as a scan and the same count.
        assert [i for page in autotask.pages("BillingItems", body) for i in page] == autotask.scan("BillingItems", body)
        count = autotask.post("/BillingItems/query/count", {"Filter": body["Filter"]})["queryCount"]
        assert count == len(autotask.scan("BillingItems", body))


def test_autotask_indexes_follow_patches_and_a_restart(atx_home):
    state_dir = str(atx_home / "atx" / "sandbox")
    with _stack(state_dir) as first:
        autotask = _Autotask(first)
        invoices = first.autotask.records("Invoices")
        numbers = {"MaxRecords": 500, "Filter": [{"op": "in", "field": "invoiceNumber",
                                                  "value": [i["invoiceNumber"] for i in invoices[:3]] + ["INDEXED-1"]}]}
        assert autotask.scan("Invoices", numbers) == [i["id"] for i in invoices[:3]]
        assert [i for p in autotask.pages("Invoices", numbers) for i in p] == autotask.scan("Invoices", numbers)
        # Renumbered through the API: the old number no longer finds it, the new one does (any case).
        answer = autotask.http.patch("/Invoices", json={"id": invoices[0]["id"], "invoiceNumber": "indexed-1"})
        assert answer.status_code == 200, answer.text
        by_new = {"MaxRecords": 500, "Filter": [{"op": "eq", "field": "invoiceNumber", "value": "INDEXED-1"}]}
        assert [i for p in autotask.pages("Invoices", numbers) for i in p] == autotask.scan("Invoices", numbers) \
            == [i["id"] for i in invoices[:3]]
        assert [i for p in autotask.pages("Invoices", by_new) for i in p] == [invoices[0]["id"]]
        by_ids = {"MaxRecords": 2, "Filter": [{"op": "in", "field": "id", "value": [i["id"] for i in invoices] + [10**9]}]}
        assert [i for p in autotask.pages("Invoices", by_ids) for i in p] == [i["id"] for i in invoices]
    with _stack(state_dir) as second:
        autotask = _Autotask(second)
        assert [i for p in autotask.pages("Invoices", by_new) for i in p] == [invoices[0]["id"]]
        assert [i for p in autotask.pages("Invoices", numbers) for i in p] == autotask.scan("Invoices", numbers)
        second.autotask.update("Invoices", invoices[1]["id"], {"invoiceNumber": "Indexed-1"})
        assert [i for p in autotask.pages("Invoices", by_new) for i in p] == [invoices[0]["id"], invoices[1]["id"]]


@pytest.mark.parametrize("value", [None, [1, 2]])
def test_an_autotask_query_on_a_value_no_index_files_still_answers_as_a_scan(atx_home, value):
    """A field emptied, or holding a list (written behind the API's back): eq still answers as a scan."""
    with _stack() as stack:
        autotask = _Autotask(stack)
        _billing_items(stack, 20)
        body = {"MaxRecords": 500, "Filter": [{"op": "eq", "field": "invoiceID", "value": 9_001}]}
        before = [i for p in autotask.pages("BillingItems", body) for i in p]
        assert 100_001 in before
        stack.autotask.update("BillingItems", 100_001, {"invoiceID": value})
        assert [i for p in autotask.pages("BillingItems", body) for i in p] == autotask.scan("BillingItems", body) \
            == [i for i in before if i != 100_001]
        null = {"MaxRecords": 500, "Filter": [{"op": "eq", "field": "invoiceID", "value": None}]}
        assert autotask.pages("BillingItems", null) == [[]] == [autotask.scan("BillingItems", null)]

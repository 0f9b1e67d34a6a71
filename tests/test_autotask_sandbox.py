"""The Autotask simulator over real HTTP: auth, zones, the query language, paging, limits, writes."""
from __future__ import annotations

import json
import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from sandbox.autotask import AutotaskSandbox, create_app, generate_data
from sandbox.clock import ManualClock
from sandbox.serving import serve

API = "/atservicesrest/v1.0/"


def headers_for(credential) -> dict:
    return {"ApiIntegrationCode": credential.integration_code, "UserName": credential.username,
            "Secret": credential.secret}


class Api:
    """Raw HTTP against one served sandbox, with its default API user's headers."""

    def __init__(self, sandbox: AutotaskSandbox, base_url: str):
        self.sandbox = sandbox
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, headers=headers_for(sandbox.credentials), timeout=30)

    def query(self, entity: str, filter: list, **extra) -> httpx.Response:
        return self.http.post(f"{API}{entity}/query", json={"Filter": filter, **extra})

    def ids(self, entity: str, filter: list) -> list[int]:
        resp = self.query(entity, filter)
        assert resp.status_code == 200, resp.text
        return [item["id"] for item in resp.json()["items"]]

    def error(self, resp: httpx.Response) -> str:
        assert resp.status_code == 500, resp.text
        return " ".join(resp.json()["errors"])


@pytest.fixture(scope="module")
def api():
    sandbox = AutotaskSandbox(generate_data(seed=7, invoices=200))
    with serve(create_app(sandbox)) as server:
        client = Api(sandbox, server.base_url)
        yield client
        client.http.close()


COMPANIES = [
    {"id": 1, "companyName": "Alpha Ltd", "companyType": 1, "isActive": True, "taxRegionID": 1,
     "createDate": "2026-01-01T00:00:00.000Z", "assetValue": Decimal("10.50"),
     "userDefinedFields": [{"name": "Xero Sync", "value": "Yes"}]},
    {"id": 2, "companyName": "beta corp", "companyType": 1, "isActive": False, "taxRegionID": 2,
     "createDate": "2026-01-15T09:30:00.000Z", "assetValue": Decimal("20.25"),
     "userDefinedFields": [{"name": "Xero Sync", "value": "No"}]},
    {"id": 3, "companyName": "Gamma Limited", "companyType": 7, "isActive": True, "taxRegionID": None,
     "createDate": "2026-02-01T00:00:00.000Z", "webAddress": "gamma.example.com"},
    {"id": 4, "companyName": "Delta Ltd", "companyType": 1, "isActive": True, "taxRegionID": 3,
     "createDate": "2026-02-10T23:59:59.000Z", "assetValue": Decimal("0.0001")},
]


@pytest.fixture(scope="module")
def small():
    sandbox = AutotaskSandbox({"Companies": COMPANIES})
    with serve(create_app(sandbox)) as server:
        client = Api(sandbox, server.base_url)
        yield client
        client.http.close()


def test_zone_information_points_at_this_server_and_needs_no_auth(api):
    user = api.sandbox.credentials.username
    for path in ("/atservicesrest/v1.0/zoneInformation", "/ATServicesRest/V1.0/ZoneInformation"):
        resp = httpx.get(api.base_url + path, params={"user": user})
        assert resp.status_code == 200
        zone = resp.json()
        assert zone["url"] == api.base_url + "/atservicesrest/"
        assert set(zone) == {"zoneName", "url", "webUrl", "ci"}
    unknown = httpx.get(api.base_url + API + "zoneInformation", params={"user": "nobody@example.com"})
    assert unknown.status_code == 500 and unknown.json()["errors"]


def test_authentication_errors_match_autotask(api):
    good = headers_for(api.sandbox.credentials)
    url = api.base_url + API + "Invoices/6001"
    wrong_secret = httpx.get(url, headers={**good, "Secret": "not-the-secret"})
    assert wrong_secret.status_code == 401
    unknown_user = httpx.get(url, headers={**good, "UserName": "ghost@example.com"})
    assert unknown_user.status_code == 500 and unknown_user.json()["errors"]
    bad_code = httpx.get(url, headers={**good, "ApiIntegrationCode": "WRONG"})
    assert bad_code.status_code == 500 and "ApiIntegrationCode" in bad_code.json()["errors"][0]
    for resp in (wrong_secret, unknown_user, bad_code):
        assert api.sandbox.credentials.secret not in resp.text
    assert api.sandbox.credentials.secret not in repr(api.sandbox.credentials)
    assert httpx.get(url, headers=good).status_code == 200


def test_several_api_users_and_case_insensitive_paths(api):
    other = api.sandbox.add_credential("second@sandbox.example.com", "s3cret-two", "CODE-TWO")
    resp = httpx.get(api.base_url + "/ATServicesRest/V1.0/INVOICES/6001", headers=headers_for(other))
    assert resp.status_code == 200 and resp.json()["item"]["invoiceNumber"] == "INV-10001"


@pytest.mark.parametrize("filter_, expected", [
    ([{"op": "eq", "field": "companyName", "value": "ALPHA LTD"}], [1]),
    ([{"op": "noteq", "field": "companyType", "value": 1}], [3]),
    ([{"op": "gt", "field": "assetValue", "value": 10.5}], [2]),
    ([{"op": "gte", "field": "assetValue", "value": "10.50"}], [1, 2]),
    ([{"op": "lt", "field": "id", "value": 2}], [1]),
    ([{"op": "lte", "field": "createDate", "value": "2026-01-15T09:30:00Z"}], [1, 2]),
    ([{"op": "gte", "field": "createDate", "value": "2026-02-10"}], [4]),
    ([{"op": "beginsWith", "field": "companyName", "value": "BETA"}], [2]),
    ([{"op": "endsWith", "field": "companyName", "value": "ltd"}], [1, 4]),
    ([{"op": "contains", "field": "companyName", "value": "MM"}], [3]),
    ([{"op": "exist", "field": "webAddress"}], [3]),
    ([{"op": "notExist", "field": "taxRegionID"}], [3]),
    ([{"op": "in", "field": "taxRegionID", "value": [1, 3, 99]}], [1, 4]),
    ([{"op": "notIn", "field": "companyName", "value": ["alpha ltd", "DELTA LTD"]}], [2, 3]),
    ([{"op": "eq", "field": "isActive", "value": False}], [2]),
    ([{"op": "eq", "field": "Xero Sync", "value": "no", "udf": True}], [2]),
    # Top-level conditions are ANDed; groups nest.
    ([{"op": "eq", "field": "companyType", "value": 1}, {"op": "eq", "field": "isActive", "value": True}], [1, 4]),
    ([{"op": "or", "items": [
        {"op": "eq", "field": "id", "value": 3},
        {"op": "and", "items": [{"op": "eq", "field": "isActive", "value": False},
                                {"op": "beginsWith", "field": "companyName", "value": "b"}]}]}], [2, 3]),
])
def test_filter_language(small, filter_, expected):
    assert small.ids("Companies", filter_) == expected


@pytest.mark.parametrize("bad_value", ["true", 1, None])
def test_booleans_are_strict(small, bad_value):
    resp = small.query("Companies", [{"op": "eq", "field": "isActive", "value": bad_value}])
    assert "isActive" in small.error(resp)


@pytest.mark.parametrize("entity, field", [
    ("Invoices", "dueDate"), ("Invoices", "taxRegionID"),
    ("BillingItems", "lineItemFullDescription"), ("BillingItems", "lineItemGroupDescription"),
])
def test_fields_autotask_cannot_query_are_rejected(api, entity, field):
    resp = api.query(entity, [{"op": "exist", "field": field}])
    assert resp.status_code == 500 and resp.json()["errors"]


@pytest.mark.parametrize("filter_", [
    [],
    [{"op": "eq", "field": "noSuchField", "value": 1}],
    [{"op": "startsWith", "field": "companyName", "value": "A"}],
    [{"op": "in", "field": "id", "value": list(range(501))}],
    [{"op": "or", "items": []}],
    [{"op": "eq", "field": "id", "value": "abc"}],
])
def test_invalid_queries_are_500_errors(small, filter_):
    assert small.error(small.query("Companies", filter_))


def test_in_list_of_exactly_500_is_allowed(small):
    assert small.ids("Companies", [{"op": "in", "field": "id", "value": list(range(500))}]) == [1, 2, 3, 4]


@pytest.mark.parametrize("max_records", [0, 501, -1])
def test_max_records_out_of_range(small, max_records):
    resp = small.query("Companies", [{"op": "gte", "field": "id", "value": 0}], MaxRecords=max_records)
    assert small.error(resp) == "maxCountOfRecordsToReturn must be between 1 and 500"


def test_query_keys_are_case_insensitive_and_include_fields_restrict(small):
    resp = small.http.post(f"{API}Companies/query", json={
        "maxRecords": 2, "includeFields": ["companyName"],
        "filter": [{"op": "gte", "field": "id", "value": 0}]})
    body = resp.json()
    assert body["items"] == [{"id": 1, "companyName": "Alpha Ltd"}, {"id": 2, "companyName": "beta corp"}]
    assert body["pageDetails"]["count"] == 2 and body["pageDetails"]["requestCount"] == 2


def test_post_query_pages_past_500_with_post_and_refuses_get(api):
    everything = [{"op": "gte", "field": "id", "value": 0}]
    expected = [r["id"] for r in api.sandbox.records("BillingItems")]
    assert len(expected) > 500
    first = api.query("BillingItems", everything).json()
    assert first["pageDetails"]["count"] == 500 and first["pageDetails"]["prevPageUrl"] is None
    next_url = first["pageDetails"]["nextPageUrl"]
    assert next_url.startswith(api.base_url + "/") and "/query/next?paging=" in next_url and "&search=" in next_url
    refused = api.http.get(next_url)
    assert refused.status_code == 405
    assert refused.json() == {"Message": "The requested resource does not support http method 'GET'."}
    ids = [item["id"] for item in first["items"]]
    url = next_url
    while url:
        page = api.http.post(url, json={"Filter": everything}).json()
        ids += [item["id"] for item in page["items"]]
        assert page["pageDetails"]["prevPageUrl"]
        url = page["pageDetails"]["nextPageUrl"]
    assert ids == expected


def test_get_query_with_search_parameter_pages_with_get(api):
    search = json.dumps({"MaxRecords": 250, "Filter": [{"op": "exist", "field": "invoiceID"}]})
    page = api.http.get(f"{API}BillingItems/query", params={"search": search}).json()
    ids = [i["id"] for i in page["items"]]
    while page["pageDetails"]["nextPageUrl"]:
        resp = api.http.get(page["pageDetails"]["nextPageUrl"])
        assert resp.status_code == 200
        page = resp.json()
        ids += [i["id"] for i in page["items"]]
    assert ids == [r["id"] for r in api.sandbox.records("BillingItems")]


def test_count_get_and_missing_item(api):
    voided = [{"op": "eq", "field": "isVoided", "value": True}]
    expected = sum(1 for r in api.sandbox.records("Invoices") if r["isVoided"])
    assert expected >= 1
    assert api.http.post(f"{API}Invoices/query/count", json={"filter": voided}).json() == {"queryCount": expected}
    got = api.http.get(f"{API}Invoices/query/count", params={"search": json.dumps({"filter": voided})})
    assert got.json()["queryCount"] == expected
    assert api.http.get(f"{API}Invoices/6001").json()["item"]["id"] == 6001
    assert api.http.get(f"{API}Invoices/999999").json() == {"item": None}


def test_amounts_and_dates_on_the_wire(api):
    raw = api.http.get(f"{API}Invoices/6001").text
    item = json.loads(raw, parse_float=Decimal)["item"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["invoiceDateTime"])
    lines = [r for r in api.sandbox.records("BillingItems") if r["invoiceID"] == 6001]
    assert sum(line["totalAmount"] for line in lines) == item["invoiceTotal"]
    four_dp = next(r for r in api.sandbox.records("BillingItems") if r["rate"].as_tuple().exponent == -4
                   and r["rate"] != r["rate"].quantize(Decimal("0.01")))
    wire = api.http.get(f"{API}BillingItems/{four_dp['id']}").text
    assert f'"rate":{four_dp["rate"]}' in wire
    assert json.loads(wire, parse_float=Decimal)["item"]["rate"] == four_dp["rate"]


def test_entity_information_fields(api):
    fields = {f["name"]: f for f in api.http.get(f"{API}Invoices/entityInformation/fields").json()["fields"]}
    assert fields["dueDate"]["isQueryable"] is False
    assert fields["paidDate"]["isReadOnly"] is False and fields["invoiceTotal"]["isReadOnly"] is True
    assert fields["paymentTerm"]["isPickList"] and fields["paymentTerm"]["picklistValues"]
    items = {f["name"]: f for f in api.http.get(f"{API}BillingItems/entityInformation/fields").json()["fields"]}
    assert {v["label"] for v in items["billingItemType"]["picklistValues"]} >= {"Labor", "Milestone", "Expense"}
    codes = {f["name"]: f for f in api.http.get(f"{API}BillingCodes/entityInformation/fields").json()["fields"]}
    assert codes["generalLedgerAccount"]["picklistValues"]


def test_invoice_pdf_is_a_real_pdf(api):
    resp = api.http.get(f"{API}Invoices/6002/InvoicePDF").json()
    assert resp["contentType"] == "application/pdf" and resp["id"] == 6002
    pdf = base64.b64decode(resp["data"])
    assert resp["fileSize"] == len(pdf)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert b"trailer" in pdf and b"INV-10002" in pdf
    startxref = int(pdf.rsplit(b"startxref", 1)[1].split()[0])
    assert pdf[startxref:startxref + 4] == b"xref"
    # Every object offset in the xref table points at "n 0 obj".
    entries = pdf[startxref:].split(b"\n")[3:8]
    for number, entry in enumerate(entries, start=1):
        offset = int(entry[:10])
        assert pdf[offset:].startswith(f"{number} 0 obj".encode())


def test_patch_invoice_rules(api):
    ok = api.http.patch(f"{API}Invoices", json={"id": 6003, "paidDate": "2026-11-20T15:42:10Z",
                                                "webServiceDate": "2026-11-20T15:42:10Z"})
    assert ok.status_code == 200 and ok.json() == {"itemId": 6003}
    item = api.http.get(f"{API}Invoices/6003").json()["item"]
    assert item["paidDate"] == "2026-11-20T00:00:00.000Z"
    assert item["webServiceDate"] == "2026-11-20T15:42:10.000Z"
    read_only = api.http.patch(f"{API}Invoices", json={"id": 6003, "invoiceTotal": 1})
    assert "invoiceTotal" in api.error(read_only)
    assert api.error(api.http.patch(f"{API}Invoices", json={"paidDate": "2026-11-20"}))
    assert api.error(api.http.patch(f"{API}Invoices", json={"id": 99999999, "paidDate": "2026-11-20"}))
    renamed = api.http.patch(f"{API}Invoices", json={"id": 6003, "invoiceNumber": "X-6003"})
    assert renamed.status_code == 200
    assert api.sandbox.records("Invoices")[2]["invoiceNumber"] == "X-6003"
    assert api.http.patch(f"{API}Companies", json={"id": 174, "companyName": "x"}).status_code == 405


def test_hourly_threshold_refuses_everyone_until_the_hour_drains():
    clock = ManualClock()
    sandbox = AutotaskSandbox(generate_data(invoices=5), clock=clock, hourly_threshold=5)
    other = sandbox.add_credential("other@sandbox.example.com", "other-secret", "OTHER")
    with serve(create_app(sandbox)) as server:
        with httpx.Client(base_url=server.base_url, headers=headers_for(sandbox.credentials)) as http:
            for n in range(4):
                assert http.get(f"{API}Invoices/6001").status_code == 200
                clock.advance(60)
            info = http.get(f"{API}ThresholdInformation").json()
            assert info == {"externalRequestThreshold": 5, "requestThresholdTimeframe": 60,
                            "currentTimeframeRequestCount": 5}
            refused = http.get(f"{API}Companies/174")
            assert refused.status_code == 429 and refused.json()["errors"]
            # The oldest request (4 minutes ago) leaves the window in 56 minutes.
            assert int(refused.headers["Retry-After"]) == 56 * 60
            assert httpx.get(server.base_url + API + "Invoices/6001",
                             headers=headers_for(other)).status_code == 429
            clock.advance(56 * 60)
            assert http.get(f"{API}Invoices/6001").status_code == 200
            clock.advance(3600)
            assert http.get(f"{API}ThresholdInformation").json()["currentTimeframeRequestCount"] == 1


def _wait_until(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_thread_limit_per_integration_and_endpoint():
    sandbox = AutotaskSandbox(generate_data(invoices=5))
    with serve(create_app(sandbox)) as server:
        url = server.base_url + API + "Invoices/6001"
        headers = headers_for(sandbox.credentials)
        other = sandbox.add_credential("other@sandbox.example.com", "x-secret", "OTHER-CODE")
        with ThreadPoolExecutor(4) as pool, sandbox.hold("Invoices"):
            held = [pool.submit(httpx.get, url, headers=headers, timeout=30) for _ in range(3)]
            _wait_until(lambda: sandbox.in_flight("Invoices") == 3)
            rejected = httpx.get(url, headers=headers)
            assert rejected.status_code == 429
            assert "Thread Threshold Exceeded" in rejected.text and "Itgenatr005" in rejected.text
            # Other endpoints, and other integrations on this endpoint, have their own slots.
            assert httpx.get(server.base_url + API + "Companies/174", headers=headers).status_code == 200
            held.append(pool.submit(httpx.get, url, headers=headers_for(other), timeout=30))
            _wait_until(lambda: sandbox.in_flight("Invoices") == 4)
        assert [f.result().status_code for f in held] == [200, 200, 200, 200]
        assert sandbox.thread_rejections == 1


def test_sandbox_rejects_fields_not_in_the_swagger_model():
    with pytest.raises(ValueError, match="purchaseOrderNumber"):
        AutotaskSandbox({"Invoices": [{"id": 1, "purchaseOrderNumber": "x"}]})


def test_a_record_can_be_served_malformed_while_filters_see_what_it_holds():
    """What a faulty Autotask looks like to a client: the query finds the record by what the database holds,
    and the JSON carries the malformed values (a day February lacks, text in id fields, a huge double)."""
    sandbox = AutotaskSandbox()
    sandbox.insert("Invoices", {"id": 7001, "companyID": 1, "invoiceDateTime": "2026-02-27T00:00:00Z"},
                   served_as={"invoiceDateTime": "2026-02-30T00:00:00Z", "companyID": "12x"})
    sandbox.insert("BillingItems", {"id": 9001, "invoiceID": 7001, "quantity": Decimal("1E+30")},
                   served_as={"invoiceID": "abc"})
    with serve(create_app(sandbox)) as server:
        api = Api(sandbox, server.base_url)
        window = [{"op": "gte", "field": "invoiceDateTime", "value": "2026-02-01T00:00:00Z"},
                  {"op": "lt", "field": "invoiceDateTime", "value": "9999-12-31T23:59:59.999Z"}]
        (invoice,) = api.query("Invoices", window).json()["items"]
        assert (invoice["invoiceDateTime"], invoice["companyID"]) == ("2026-02-30T00:00:00Z", "12x")
        resp = api.query("BillingItems", [{"op": "in", "field": "invoiceID", "value": [7001]}])
        (item,) = json.loads(resp.text, parse_float=Decimal)["items"]
        assert item["invoiceID"] == "abc" and item["quantity"] == Decimal("1E+30")
        assert api.http.get(f"{API}Invoices/7001").json()["item"]["companyID"] == "12x"
        api.http.close()
    assert sandbox.records("Invoices")[0]["invoiceDateTime"] == "2026-02-27T00:00:00.000Z"  # what it holds
    with pytest.raises(ValueError, match="id"):
        sandbox.insert("Invoices", {"id": 7002}, served_as={"id": "x"})
    with pytest.raises(ValueError, match="JSON"):
        sandbox.insert("Invoices", {"id": 7002}, served_as={"invoiceTotal": float("inf")})

"""Per-call time of the simulators as their stores grow: it should stay flat, so the flow benchmarks and the
tests time the sync, not the sandbox.

Xero: a lookup by InvoiceNumbers (40), a `where` of 25 References, a `where` on one day's Dates (50
invoices) and a PUT of 50 new invoices, each with 1k, 10k and 50k invoices stored. Autotask: the time of page 1, 10 and 100 of one query over 50k records, and of an
`in` query of 400 values. Prints a table (median milliseconds); never asserts a timing.

    PYTHONPATH=. .venv/bin/python -m bench.sandbox [--sizes 1000,10000,50000]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
import uuid
from datetime import date, timedelta

import httpx

from sandbox.autotask.app import AutotaskSandbox
from sandbox.autotask.app import create_app as create_autotask_app
from sandbox.serving import BackgroundServer
from sandbox.xero.app import create_app as create_xero_app
from sandbox.xero.limits import XeroLimits
from sandbox.xero.state import XeroSandbox

SIZES = (1_000, 10_000, 50_000)
REPEATS = 5
CONTACTS = 100
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
UNLIMITED = XeroLimits(per_minute=10**9, per_day=10**9, concurrent=100, app_per_minute=10**9)


def _median_ms(call, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 1)


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise SystemExit(f"the sandbox refused a benchmark call: {response.status_code} {response.text[:300]}")
    return response


class _XeroBench:
    def __init__(self) -> None:
        self.sandbox = XeroSandbox(limits=UNLIMITED)
        self.org = self.sandbox.add_org("Bench Ltd", "NZ")
        self.sandbox.register_app(CLIENT_ID, CLIENT_SECRET)
        token = self.sandbox.issue_tokens(CLIENT_ID)["access_token"]
        self.server = BackgroundServer(create_xero_app(self.sandbox)).start()
        self.http = httpx.Client(base_url=self.server.base_url + "/api.xro/2.0", timeout=120, headers={
            "Authorization": f"Bearer {token}", "xero-tenant-id": self.org.tenant_id, "Accept": "application/json"})
        contacts = [{"Name": f"Customer {n}", "ContactNumber": f"C{n}"} for n in range(CONTACTS)]
        for start in range(0, CONTACTS, 50):
            _ok(self.http.put("/Contacts", json={"Contacts": contacts[start:start + 50]}))
        self.contact_ids = [c["ContactID"] for c in self.org.contacts.values()]
        self.template = self.org.invoices[self._put(1, "TEMPLATE")[0]]
        self.stored = 1
        self.batches = 0

    def _put(self, count: int, prefix: str) -> list[str]:
        invoices = [{"Type": "ACCREC", "InvoiceNumber": f"{prefix}-{n}", "Reference": f"ref {prefix}-{n}",
                     "Contact": {"ContactNumber": f"C{n % CONTACTS}"}, "Date": "2026-11-02", "DueDate": "2026-11-30",
                     "Status": "AUTHORISED", "LineItems": [{"Description": "Managed services", "Quantity": 1,
                                                            "UnitAmount": 100, "AccountCode": "200"}]}
                    for n in range(count)]
        answer = _ok(self.http.put("/Invoices", params={"summarizeErrors": "false"}, json={"Invoices": invoices}))
        return [i["InvoiceID"] for i in answer.json()["Invoices"]]

    def grow(self, size: int) -> None:
        """Hold `size` invoices: copies of one sent through the API, stored as the rules would store them."""
        base = self.template["UpdatedDateUTC"]
        with self.org.lock:
            while self.stored < size:
                n = self.stored
                doc = copy.deepcopy(self.template)
                doc.update({"InvoiceID": str(uuid.uuid4()), "InvoiceNumber": f"INV-{n:06d}", "Reference": f"ref {n}",
                            "Date": date(2020, 1, 1) + timedelta(days=n // 50),  # 50 a day, at every size
                            "Contact": {"ContactID": self.contact_ids[n % CONTACTS]}, "_order": self.org.next_order(),
                            "UpdatedDateUTC": base + timedelta(milliseconds=n)})
                self.org.save(self.org.invoices, doc["InvoiceID"], doc, None)
                self.stored += 1

    def figures(self, size: int) -> dict:
        picks = [f"INV-{n:06d}" for n in range(1, size, max(1, size // 40))][:40]
        numbers = {"InvoiceNumbers": ",".join(picks), "page": 1}
        references = {"where": " OR ".join(f'Reference=="ref {n}"' for n in range(1, size, max(1, size // 25))[:25]),
                      "page": 1}

        dates = {"where": 'Type=="ACCREC" AND Date>=DateTime(2020, 01, 11) AND Date<DateTime(2020, 01, 12)',
                 "page": 1}

        def batch():
            self.batches += 1
            self._put(50, f"B{self.batches}")

        return {"invoices": size,
                "xero_numbers_ms": _median_ms(lambda: _ok(self.http.get("/Invoices", params=numbers))),
                "xero_where_reference_ms": _median_ms(lambda: _ok(self.http.get("/Invoices", params=references))),
                "xero_where_dates_ms": _median_ms(lambda: _ok(self.http.get("/Invoices", params=dates))),
                "xero_put_50_ms": _median_ms(batch)}

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def bench_xero(sizes=SIZES) -> list[dict]:
    bench = _XeroBench()
    try:
        rows = []
        for size in sizes:
            bench.grow(size)
            rows.append(bench.figures(size))
            bench.stored = len(bench.org.invoices)  # the PUT batches count too
        return rows
    finally:
        bench.close()


def bench_autotask(records: int = 50_000) -> dict:
    """Page 1, 10 and 100 of `id >= 0` over `records` billing items (500 a page), and one `in` of 400 values."""
    sandbox = AutotaskSandbox()
    start = date(2026, 1, 1)
    for n in range(1, records + 1):
        sandbox.insert("BillingItems", {"id": n, "invoiceID": 1 + n // 5, "itemName": f"Item {n}",
                                        "itemDate": (start + timedelta(days=n % 300)).isoformat() + "T00:00:00Z"})
    server = BackgroundServer(create_autotask_app(sandbox)).start()
    credential = sandbox.credentials
    http = httpx.Client(base_url=server.base_url, timeout=120, headers={
        "UserName": credential.username, "Secret": credential.secret,
        "ApiIntegrationCode": credential.integration_code, "Content-Type": "application/json"})
    try:
        body = {"MaxRecords": 500, "Filter": [{"op": "gte", "field": "id", "value": 0}]}
        url, page_ms = "/atservicesrest/v1.0/BillingItems/query", {}
        for page in range(1, records // 500 + 1):
            if page in (1, 10, 100):
                page_ms[page] = _median_ms(lambda: _ok(http.post(url, json=body)))
            url = _ok(http.post(url, json=body)).json()["pageDetails"]["nextPageUrl"]
            if not url:
                break
        wanted = list(range(1, records // 5, max(1, records // 5 // 400)))[:400]
        in_query = {"MaxRecords": 500, "Filter": [{"op": "in", "field": "invoiceID", "value": wanted}]}
        in_ms = _median_ms(lambda: _ok(http.post("/atservicesrest/v1.0/BillingItems/query", json=in_query)))
        return {"records": records, **{f"autotask_page_{p}_ms": ms for p, ms in page_ms.items()},
                "autotask_in_400_ms": in_ms}
    finally:
        http.close()
        server.stop()


def bench_sandbox(sizes=SIZES) -> dict:
    return {"name": "sandbox: per-call time as the stores grow (median ms)", "xero": bench_xero(sizes),
            "autotask": bench_autotask(max(sizes))}


def print_table(result: dict) -> None:
    print(result["name"])
    print(f"{'invoices stored':>16} | {'InvoiceNumbers':>14} | {'where Reference':>15} | {'where Date':>10} | "
          f"{'PUT 50':>8}")
    for row in result["xero"]:
        print(f"{row['invoices']:>16} | {row['xero_numbers_ms']:>14} | {row['xero_where_reference_ms']:>15} | "
              f"{row['xero_where_dates_ms']:>10} | {row['xero_put_50_ms']:>8}")
    print(" | ".join(f"{k}={v}" for k, v in result["autotask"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES),
                        help="comma separated store sizes (invoices held by Xero; the largest is Autotask's)")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",") if s.strip()]
    print_table(bench_sandbox(sizes))


if __name__ == "__main__":
    main()

"""One malformed Autotask record never stops a run: property-based tests over corrupted records.

Hypothesis starts from a batch of valid invoices (each with its own company and billing items) and a
clean invoice beside them, corrupts fields of the records (wrong types, huge, tiny and non-finite
numbers, exponents, text in numeric fields, impossible and out-of-range dates, missing keys, nested
junk, long and unicode text) and checks that the pure core sets the damaged invoices aside, names the
field, and still drafts everything else.
"""
from __future__ import annotations

import copy
import re
from decimal import Decimal as D

import pytest
from hypothesis import example, given, note, settings, strategies as st

from core import routing
from core.invoices import (
    companies_frame, content_hash, invoices_frame, lines_frame, plan_invoices,
)
from core.schemas import AutotaskCompanies, AutotaskInvoiceLines, AutotaskInvoices, XeroInvoiceDraft, column_dtypes
from core.routing import TenantRules
from tests.test_core_invoices import REFERENCE_DATA, XERO, company, invoice_for, line, mapping, xero_body

CORRUPTED = (1, 2, 3)  # invoices 6001..6003 may be corrupted; 6009 never is
CLEAN = 9
LEDGER_NUMBER_LIMIT = 100  # the ledger's autotask_number column


def _invoice_id(n: int) -> int:
    return 6000 + n


def _company_id(n: int) -> int:
    return 170 + n


def _line_ids(n: int) -> list[int]:
    return [80000000 + n * 10 + k for k in (1, 2)]


def _batch() -> tuple[list[dict], list[dict], list[dict]]:
    invoices, lines, companies = [], [], []
    for n in (*CORRUPTED, CLEAN):
        mine = [line(_line_ids(n)[0], "2", "165", invoice_id=_invoice_id(n), companyID=_company_id(n)),
                line(_line_ids(n)[1], "3", "33.3333", invoice_id=_invoice_id(n), companyID=_company_id(n),
                     code=29682806)]
        lines += mine
        invoices.append(invoice_for(mine, invoice_id=_invoice_id(n), companyID=_company_id(n)))
        companies.append(company(_company_id(n), companyName=f"Customer {n} Ltd",
                                 userDefinedFields=[{"name": "Xero Organisation", "value": "NZ" if n % 2 else "AU"}]))
    return invoices, lines, companies


BATCH_INTS = frozenset(
    [_invoice_id(n) for n in (*CORRUPTED, CLEAN)] + [_company_id(n) for n in (*CORRUPTED, CLEAN)]
    + [i for n in (*CORRUPTED, CLEAN) for i in _line_ids(n)])

MAPPINGS = [
    mapping(),
    mapping(due_date={"days_after_invoice": 30}),
    mapping(due_date={"day_of_following_month": 31}),
    mapping(line_amount_types="Inclusive", reference="{fromDate}..{toDate} {comments}"),
    mapping(lines={"group_by": "billing_code", "description": "{itemName} {quantity} x {rate} on {itemDate}"}),
    mapping(invoice_number="INV:{id}", due_date="invoice_date", due_days=3650),
]


# -- junk ----------------------------------------------------------------------------------------------

MISSING = object()  # the key is left out of the record


def _numeric_equal_to_batch(value) -> bool:
    """Junk that reads as one of the batch's own ids would be a valid (if wrong) link, not a malformed one."""
    try:
        return D(str(value).strip()) in BATCH_INTS
    except Exception:
        return False


def _long_text(alphabet=st.characters(codec="utf-8")):
    return st.builds(lambda c, n: c * n, alphabet, st.integers(101, 6000))


BAD_DATES = [
    "0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-11-03T25:00:00Z", "2026-11-3", "20261103", "2026-W45-2", "1899-12-31T00:00:00Z", "0001-01-01T00:00:00Z",
    "03/11/2026", "2026-11-03garbage", "-2026-11-03", "",
]
EDGE_DATES = ["9999-12-31T23:59:59.999Z", "9999-12-31", "1900-01-01T00:00:00Z", "2026-11-03T00:00:00+13:00"]
NUMERIC_TEXT = ["abc", "12x", "1E+30", "-1E+30", "1e-30", "1E+999999", "NaN", "-NaN", "sNaN", "Infinity", "-inf",
                "1_000", "١٢", "0x10", "1,5", " 7 ", "+3", "-0", "", "   ", "true", "None", "null"]
HUGE = [D("1E+30"), D("-1E+30"), D("1E+999999"), D("1E-30"), D("-1E-999999"), D("9999999999.99"),
        D("10000000000.00"), D("-9999999999.995"), D("123456789012345678901234567890.123456789"), 10**19, -(2**63) - 1,
        2**63, 2**63 - 1, 1e308, -1e308, 5e-324]

nested = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)

any_junk = st.one_of(
    st.just(MISSING), st.none(), st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from(HUGE),
    st.text(max_size=30), _long_text(),
    st.sampled_from(NUMERIC_TEXT + BAD_DATES + EDGE_DATES),
    st.dates().map(lambda d: d.isoformat() + "T00:00:00Z"),
    nested,
).filter(lambda v: not _numeric_equal_to_batch(v))

TARGETS = ([("invoice", n, None) for n in CORRUPTED] + [("company", n, None) for n in CORRUPTED]
           + [("line", n, k) for n in CORRUPTED for k in (0, 1)])
FIELDS = {"invoice": list(column_dtypes(AutotaskInvoices)), "line": list(column_dtypes(AutotaskInvoiceLines)),
          "company": list(column_dtypes(AutotaskCompanies))}


@st.composite
def corruptions(draw, junk_for):
    """[(target, field, junk)]: one to four fields of the corruptible records, each given junk."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(TARGETS))
        field = draw(st.sampled_from(FIELDS[target[0]]))
        out.append((target, field, draw(junk_for(target[0], field))))
    return out


def _apply(changes):
    invoices, lines, companies = _batch()
    for (kind, n, k), field, junk in changes:
        if kind == "invoice":
            record = invoices[CORRUPTED.index(n)]
        elif kind == "company":
            record = companies[CORRUPTED.index(n)]
        else:
            record = lines[CORRUPTED.index(n) * 2 + k]
        if junk is MISSING:
            record.pop(field, None)
        else:
            record[field] = copy.deepcopy(junk)
    return invoices, lines, companies


def _readable_id(value) -> int | None:
    """Strictly the ids any reader must accept: an int, an integral float or Decimal, or digits as text."""
    if isinstance(value, bool):
        return None
    number = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, D) and value.is_finite() and value == value.to_integral_value() and value.adjusted() < 20:
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,18}\s*", value):
        number = int(value)
    return number if number is not None and -(2**63) <= number < 2**63 else None


def _plan(invoices, lines, companies, the_mapping):
    return plan_invoices(invoices_frame(invoices), lines_frame(lines), companies_frame(companies), REFERENCE_DATA,
                         the_mapping, XERO)


def _outcomes(result):
    drafted = {int(i) for i in result.drafts["autotask_invoice_id"]} if len(result.drafts) else set()
    aside = {s.autotask_id for s in result.set_aside}
    skipped = {s.autotask_id for s in result.skipped}
    return drafted, aside, skipped


def _touched(changes) -> set[int]:
    return {n for (_, n, _), _, _ in changes}


def _check_plan(result, invoices, changes):
    drafted, aside, skipped = _outcomes(result)
    note(f"drafted={sorted(drafted)} set aside={[(s.autotask_id, s.reason) for s in result.set_aside]}")
    # Nothing silently dropped: every invoice whose id can be read is drafted, set aside or skipped.
    for record in invoices:
        invoice_id = _readable_id(record.get("id"))
        if invoice_id is not None:
            assert invoice_id in drafted | aside | skipped, f"invoice {invoice_id} was silently dropped"
    # A document is drafted, or kept out: never both.
    assert not drafted & (aside | skipped)
    # Invoices no corruption touched are drafted: the clean one, and every untouched one of the batch.
    for n in (*CORRUPTED, CLEAN):
        if n not in _touched(changes):
            assert _invoice_id(n) in drafted, f"untouched invoice {_invoice_id(n)} was not drafted"
    for s in result.set_aside + result.skipped:
        assert isinstance(s.autotask_id, int)
        assert s.reason and s.fix
        assert isinstance(s.autotask_number, str) and 0 < len(s.autotask_number) <= LEDGER_NUMBER_LIMIT
        assert len(s.reason) < 3000, "a reason quoting a whole junk value"
    # What is drafted is valid, and becomes an SDK model and a hash.
    XeroInvoiceDraft.validate(result.drafts)
    for _, rows in result.drafts.groupby("autotask_invoice_id"):
        document = rows.iloc[0]["document_type"]
        assert xero_body(rows)["Type"] == document
        assert len(content_hash(rows)) == 64
    return drafted, aside, skipped


@settings(max_examples=25)
@given(changes=corruptions(lambda kind, field: any_junk), the_mapping=st.sampled_from(MAPPINGS))
@example(changes=[(("line", 1, 0), "quantity", D("1E+30"))], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "invoiceTotal", "1E+30")], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "invoiceDateTime", "9999-12-31T00:00:00Z")], the_mapping=MAPPINGS[1])
@example(changes=[(("invoice", 1, None), "invoiceDateTime", "9999-12-31T00:00:00Z")], the_mapping=MAPPINGS[2])
@example(changes=[(("invoice", 1, None), "id", float("inf"))], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "id", 10**30)], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "invoiceNumber", "N" * 5000)], the_mapping=MAPPINGS[0])
def test_any_corruption_never_raises_nor_drops_an_invoice(changes, the_mapping):
    invoices, lines, companies = _apply(changes)
    _check_plan(_plan(invoices, lines, companies, the_mapping), invoices, changes)


MODELS = {"invoice": AutotaskInvoices, "line": AutotaskInvoiceLines, "company": AutotaskCompanies}


@st.composite
def raw_records(draw):
    kind = draw(st.sampled_from(sorted(MODELS)))
    fields = st.sampled_from(FIELDS[kind] + ["unknownField"])
    values = any_junk.filter(lambda v: v is not MISSING)
    return kind, draw(st.lists(st.dictionaries(fields, values, max_size=8), max_size=4))


@settings(max_examples=30)
@given(raw=raw_records())
def test_frames_keep_or_reject_every_record_and_never_raise(raw):
    from core.frames import build_frame

    kind, records = raw
    model = MODELS[kind]
    frame, rejected = build_frame(records, model)
    assert len(frame) + len(rejected) == len(records)
    model.validate(frame)
    for r in rejected:
        assert r.problems and set(r.fields) <= set(FIELDS[kind])
        assert all(p.split(" ", 1)[0] in r.fields for p in r.problems)
        assert all(len(p) < 400 for p in r.problems)


ROUTING = {"nz": TenantRules.of(companies=[_company_id(1)], udf_name="Xero Organisation", udf_values=["NZ"]),
           "au": TenantRules.of(companies=[_company_id(2)], udf_name="xero organisation", udf_values=["au"])}


@settings(max_examples=25)
@given(changes=corruptions(lambda kind, field: any_junk))
def test_routing_and_credits_survive_malformed_records(changes):
    from core.invoices import credit_ids
    from tasks.extract import AutotaskExtract
    from tasks.tenancy import keep_only

    invoices, lines, companies = _apply(changes)
    frames = invoices_frame(invoices), lines_frame(lines), companies_frame(companies)
    rejected = [r.record for r in frames[0].attrs["rejected_invoices"]]
    docs = routing.documents(frames[0], frames[1], company_udfs=routing.udfs_by_company(companies),
                             extra_records=rejected)
    result = routing.route(docs, ROUTING)
    readable = {i for i in (_readable_id(r.get("id")) for r in invoices) if i is not None}
    for invoice_id in readable:
        places = [invoice_id in result.owner, invoice_id in result.conflicts, invoice_id in result.unrouted]
        assert places.count(True) == 1, (invoice_id, places)
    assert _invoice_id(CLEAN) in result.owner  # its company's UDF names one organisation

    extract = AutotaskExtract(*frames, contacts=[{"companyID": c.get("id")} for c in companies],
                              reference=REFERENCE_DATA)
    unplaced = [r for r in frames[1].attrs["rejected_lines"] if _readable_id(r.record.get("invoiceID")) is None]
    for tenant in ROUTING:
        kept = keep_only(extract, result.of(tenant))
        assert set(kept.invoices["id"]) <= result.of(tenant)
        # A billing item whose invoice cannot be read may be any tenant's: each keeps it, to name it.
        assert all(r in kept.lines.attrs["rejected_lines"] for r in unplaced)
    assert credit_ids(extract.invoices) <= readable


# -- junk that no reader may accept, per kind of field ----------------------------------------------------

NOT_NULLABLE = {kind: {name for name, column in model.to_schema().columns.items() if not column.nullable}
                for kind, model in (("invoice", AutotaskInvoices), ("line", AutotaskInvoiceLines),
                                    ("company", AutotaskCompanies))}
TIMESTAMPS = {"invoiceDateTime", "dueDate", "fromDate", "toDate", "paidDate", "voidedDate", "webServiceDate",
              "itemDate"}
structures = st.one_of(st.lists(st.integers(), min_size=1, max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                        st.integers(), max_size=2))
not_a_number = st.one_of(
    st.sampled_from(["abc", "12x", "NaN", "Infinity", "-inf", "sNaN", "1_000", "١٢", "0x10", "1,5", "", "  ", "true"]),
    st.text(alphabet="xyz!€ñ", min_size=1, max_size=8),
    # (A float NaN is how pandas spells "no value", and reads as missing: see the NOT_NULLABLE junk below.)
    st.sampled_from([float("inf"), -float("inf"), D("NaN"), D("Infinity"), D("-Infinity")]),
    st.booleans(), structures,
)
not_a_whole_number = st.one_of(
    not_a_number,
    st.sampled_from([1.5, -0.25, D("12.5"), "7.25", "1E-3", 2**63, -(2**63) - 1, 10**30, D("1E+30"), "1E+30",
                     float(2**70)]),
)
out_of_range_amount = st.one_of(
    st.sampled_from([D("1E+30"), "1E+30", D("-1E+30"), 1e30, D("10000000000.00"), "-10000000000", D("1E+999999"),
                     10**20]),
    st.decimals(min_value=D("1E+10"), max_value=D("1E+40"), places=2),
)
out_of_range_quantity = st.sampled_from([D("1E+30"), "1E+30", D("-1E+30"), 1e30, D("10000000000"), 10**11,
                                         D("1E+999999")])
not_a_date = st.one_of(
    st.sampled_from(BAD_DATES), st.text(alphabet="0123456789-T:Z", min_size=1, max_size=12),
    st.integers(), st.sampled_from([D("20261103"), 1.5]), st.booleans(), structures,
    st.dates(max_value=__import__("datetime").date(1899, 12, 31)).map(lambda d: d.isoformat() + "T00:00:00Z"),
)
not_text = st.one_of(st.floats(allow_nan=False), st.booleans(), structures)
not_a_boolean = st.one_of(st.sampled_from(["yes", "no", "TRUE!", "", 2, -1, D("0.5"), 1.5]), structures)
not_udfs = st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers(), min_size=1, max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2))


def malformed_for(kind: str, field: str):
    dtype = column_dtypes({"invoice": AutotaskInvoices, "line": AutotaskInvoiceLines,
                           "company": AutotaskCompanies}[kind])[field]
    import pandas as pd

    if field == "userDefinedFields":
        options = not_udfs
    elif field in TIMESTAMPS:
        options = not_a_date
    elif isinstance(dtype, pd.Int64Dtype):
        options = not_a_whole_number
    elif isinstance(dtype, pd.BooleanDtype):
        options = not_a_boolean
    elif field == "invoiceNumber":
        options = st.one_of(not_text, _long_text(st.sampled_from("N#é")))
    elif isinstance(dtype, pd.StringDtype):
        options = not_text
    elif field in ("quantity", "rate"):
        options = st.one_of(not_a_number, out_of_range_quantity)
    else:
        options = st.one_of(not_a_number, out_of_range_amount)
    if field in NOT_NULLABLE[kind] and field != "isVoided":  # a missing boolean reads as false
        options = st.one_of(options, st.just(MISSING), st.none())
    return options.filter(lambda v: not _numeric_equal_to_batch(v))


def _names(field: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z]){re.escape(field)}(?![A-Za-z])", text) is not None


@settings(max_examples=30)
@given(changes=corruptions(malformed_for), the_mapping=st.sampled_from(MAPPINGS))
@example(changes=[(("line", 1, 0), "invoiceID", "abc")], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "companyID", "12x")], the_mapping=MAPPINGS[0])
@example(changes=[(("line", 1, 0), "quantity", D("1E+30"))], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "invoiceDateTime", "0000-01-01T00:00:00Z")], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "invoiceDateTime", "10000-01-01T00:00:00Z")], the_mapping=MAPPINGS[0])
@example(changes=[(("invoice", 1, None), "invoiceDateTime", "2026-02-30T00:00:00Z")], the_mapping=MAPPINGS[0])
@example(changes=[(("company", 1, None), "id", "abc")], the_mapping=MAPPINGS[0])
def test_each_malformed_record_sets_its_invoice_aside_naming_the_field(changes, the_mapping):
    invoices, lines, companies = _apply(changes)
    result = _plan(invoices, lines, companies, the_mapping)
    drafted, aside, skipped = _check_plan(result, invoices, changes)
    by_id: dict[int, list[str]] = {}
    for s in result.set_aside:
        by_id.setdefault(s.autotask_id, []).append(s.reason)
    for n in _touched(changes):
        fields = {field for (_, m, _), field, _ in changes if m == n}
        record = invoices[CORRUPTED.index(n)]
        invoice_id = _readable_id(record.get("id"))
        if invoice_id is None:
            # Its id cannot be read: it is set aside under id 0, saying so.
            assert any(_names("id", reason) for reason in by_id.get(0, [])), by_id
            continue
        assert invoice_id not in drafted, f"invoice {invoice_id} was drafted from a malformed record"
        assert invoice_id in aside, f"invoice {invoice_id} was not set aside"
        reasons = " | ".join(by_id[invoice_id])
        assert any(_names(field, reasons) for field in fields), (fields, reasons)


# -- each reason, against a record that really has that fault ---------------------------------------------

def _one_fault(kind: str, field: str, value, the_mapping=None):
    invoices, lines, companies = _apply([((kind, 1, 0 if kind == "line" else None), field, value)])
    result = _plan(invoices, lines, companies, the_mapping or mapping())
    drafted, aside, _ = _outcomes(result)
    assert {6002, 6003, 6009} <= drafted, "the rest of the batch goes on"
    return result


@pytest.mark.parametrize("kind, field, value, reason", [
    ("line", "invoiceID", "abc",
     "billing item 80000011: invoiceID = 'abc' cannot be read: not a whole number"),
    ("invoice", "companyID", "12x", "companyID = '12x' cannot be read: not a whole number"),
    ("line", "quantity", D("1E+30"), "quantity = 1E+30 cannot be read: out of range (at most ±9,999,999,999.9999)"),
    ("line", "quantity", "1E+30", "quantity = '1E+30' cannot be read: out of range (at most ±9,999,999,999.9999)"),
    ("line", "extendedPrice", 1e30, "extendedPrice = 1e+30 cannot be read: out of range (at most ±9,999,999,999.99)"),
    ("invoice", "invoiceTotal", "-1E+30",
     "invoiceTotal = '-1E+30' cannot be read: out of range (at most ±9,999,999,999.99)"),
    ("line", "rate", "Infinity", "rate = 'Infinity' cannot be read: not a number"),
    ("line", "taxDollars", "1_000", "taxDollars = '1_000' cannot be read: not a number"),
    ("invoice", "id", float("inf"), "id = inf cannot be read: not a whole number"),
    ("invoice", "paymentTerm", 2**63, "paymentTerm = 9223372036854775808 cannot be read: out of range"),
    ("invoice", "invoiceDateTime", "0000-01-01T00:00:00Z",
     "invoiceDateTime = '0000-01-01T00:00:00Z' cannot be read: no such date"),
    ("invoice", "invoiceDateTime", "10000-01-01T00:00:00Z",
     "invoiceDateTime = '10000-01-01T00:00:00Z' cannot be read: not a date in the form YYYY-MM-DD or "
     "YYYY-MM-DDThh:mm:ssZ"),
    ("invoice", "invoiceDateTime", "2026-02-30T00:00:00Z",
     "invoiceDateTime = '2026-02-30T00:00:00Z' cannot be read: no such date"),
    ("invoice", "dueDate", "1899-12-31T00:00:00Z", "dueDate = '1899-12-31T00:00:00Z' cannot be read: before 1900-01-01"),
    ("invoice", "fromDate", "2026-11-03T25:00:00Z",
     "fromDate = '2026-11-03T25:00:00Z' cannot be read: no such time of day"),
    ("line", "itemDate", 20261103, "itemDate = 20261103 cannot be read: not a date"),
    ("invoice", "isVoided", "yes", "isVoided = 'yes' cannot be read: not true or false"),
    ("invoice", "comments", ["a"], "comments = ['a'] cannot be read: not text"),
    ("invoice", "invoiceNumber", "N" * 5000,
     "invoiceNumber = '" + "N" * 58 + "… (5000 characters) cannot be read: longer than 100 characters"),
    ("invoice", "invoiceDateTime", None, "invoiceDateTime is missing"),
    ("company", "companyName", "", "company 171 cannot be read: companyName = '' fails str_length(1, None)"),
    ("company", "userDefinedFields", "NZ", "userDefinedFields = 'NZ' cannot be read: not a list of {name, value}"),
    ("company", "id", "abc", "company 171 was not read, and companies whose id cannot be read came with it "
                             "(id = 'abc' cannot be read: not a whole number)"),
])
def test_each_reason_is_true_of_its_record(kind, field, value, reason):
    result = _one_fault(kind, field, value)
    (aside,) = [s for s in result.set_aside if s.reason.find(field) >= 0]
    assert reason in aside.reason
    assert aside.fix
    if kind == "invoice":
        assert aside.fix == f"correct {field} on the invoice in Autotask; it is retried on the next run"
    expected_id = 0 if (kind, field) == ("invoice", "id") else 6001
    assert aside.autotask_id == expected_id
    assert aside.autotask_number == ("6001" if field == "invoiceNumber" else "INV-10001")


def test_a_line_whose_invoice_cannot_be_read_is_named_by_the_invoice_it_leaves_short():
    aside = _one_fault("line", "invoiceID", "abc").set_aside
    assert [s.autotask_id for s in aside] == [6001]
    assert aside[0].reason.startswith("the invoice's billing items do not add up to its total, and billing items "
                                      "whose invoiceID cannot be read came with it; one may be this invoice's")
    assert aside[0].fix == "correct these billing items in Autotask; the invoice is retried on the next run"


@pytest.mark.parametrize("rule", [{"days_after_invoice": 30}, {"day_of_following_month": 1}, "invoice_date"])
def test_a_due_date_past_the_calendar_sets_the_invoice_aside(rule):
    result = _one_fault("invoice", "invoiceDateTime", "9999-12-31T00:00:00Z",
                        mapping(due_date=rule, due_days=5))
    (aside,) = result.set_aside
    assert aside.reason == "the due date (due_date) falls after 9999-12-31: the invoice date is 9999-12-31"
    assert aside.fix == "correct the invoice date in Autotask; the invoice is retried on the next run"


def test_the_last_day_there_is_still_maps_when_nothing_is_added_to_it():
    result = _one_fault("invoice", "invoiceDateTime", "9999-12-31T23:59:59.999Z",
                        mapping(due_date="xero_contact"))
    assert 6001 in set(result.drafts["autotask_invoice_id"])
    assert result.set_aside == []


def test_a_grouped_line_over_xeros_limit_is_set_aside_before_it_is_sent():
    # Each billing item is within bounds, but grouped by billing code two of them make one Xero line of 12 billion.
    items = [line(80000011, "1", "6000000000", tax_rate=D(0)), line(80000012, "1", "6000000000", tax_rate=D(0)),
             line(80000013, "-1", "6000000000", tax_rate=D(0), code=29682806)]
    zero_tax = {"by_category_name": {"Standard Services": "NONE", "Non-Taxable": "NONE"}}
    result = _plan([invoice_for(items)], items, [company()],
                   mapping(tax=zero_tax, lines={"group_by": "billing_code"}))
    (aside,) = result.set_aside
    assert aside.reason == "the Xero draft is not valid: line_amount: Xero accepts line amounts up to ±9,999,999,999.99"

"""The simulators' JSON: orjson's fast path writes what the exact writer writes, Decimals digit for digit."""
from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import jsonwire
from sandbox.autotask import wire as autotask_wire
from sandbox.xero import serialise as xero_wire

leaves = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=8)
          | st.floats(allow_nan=False, allow_infinity=False)
          | st.decimals(allow_nan=False, allow_infinity=False, places=4)
          | st.datetimes(timezones=st.just(timezone.utc)) | st.dates())
values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=4), max_leaves=20)


def _slow(value, decimal, moment) -> str:
    out: list[str] = []
    jsonwire._write(value, out, decimal, moment)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(value=values)
def test_the_fast_path_reads_back_as_the_exact_writer_s_text(value):
    for decimal, moment in ((autotask_wire._decimal_text, autotask_wire._timestamp), (lambda d: format(d, "f"), str)):
        fast = jsonwire.dumps(value, decimal=decimal, moment=moment)
        assert json.loads(fast, parse_float=Decimal) == json.loads(_slow(value, decimal, moment), parse_float=Decimal)


def test_amounts_keep_their_digits_and_big_integers_still_go_out():
    page = {"items": [{"id": 7, "rate": Decimal("127.4575"), "total": Decimal("100"), "tax": Decimal("0.10"),
                       "at": datetime(2026, 11, 2, 3, 4, 5, tzinfo=timezone.utc), "day": date(2026, 11, 2)}],
            "count": 2**70}
    text = autotask_wire.dumps(page)
    assert '"rate":127.4575' in text and '"total":100.0' in text and '"tax":0.10' in text
    assert '"count":1180591620717411303424' in text
    assert json.loads(text, parse_float=Decimal)["items"][0]["tax"] == Decimal("0.10")
    assert xero_wire.loads(xero_wire.dumps({"Total": Decimal("207.50")}))["Total"] == Decimal("207.50")

"""Exact JSON for the simulators.

The standard encoder turns Decimal into float (or refuses it), but amounts and 4-dp rates must reach
clients digit for digit. Each simulator says how it spells a Decimal and a date; the rest is shared.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

import orjson

_encode_str = json.encoder.encode_basestring_ascii


def dumps(value, *, decimal: Callable[[Decimal], str], moment: Callable[[date | datetime], str]) -> str:
    # orjson (it comes with Prefect) writes a page of 500 records many times faster than the writer below, which
    # was most of the Autotask simulator's time; each Decimal goes in as the simulator's own text (a Fragment).
    # What orjson will not write (an integer past 64 bits) goes the long way, with the same result.
    def spelled(v):
        if isinstance(v, Decimal):
            return orjson.Fragment(decimal(v))
        if isinstance(v, (datetime, date)):
            return moment(v)
        raise TypeError(f"cannot serialise {type(v).__name__}")

    try:
        return orjson.dumps(value, default=spelled, option=_OPTIONS).decode("utf-8")
    except TypeError:
        out: list[str] = []
        _write(value, out, decimal, moment)
        return "".join(out)


_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def _write(value, out: list[str], decimal, moment) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        out.append(decimal(value))
    elif isinstance(value, float):
        out.append(repr(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_encode_str(str(k)))
            out.append(":")
            _write(v, out, decimal, moment)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _write(v, out, decimal, moment)
        out.append("]")
    elif isinstance(value, (datetime, date)):
        out.append(_encode_str(moment(value)))
    else:
        raise TypeError(f"cannot serialise {type(value).__name__}")

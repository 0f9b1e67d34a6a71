"""JSON and timestamp handling in Autotask's wire format.

The standard json encoder would turn Decimal into float (or refuse it); rates such as 127.4575 must
reach the client digit for digit, so numbers are written from their Decimal text.
"""
from __future__ import annotations

import functools
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

_encode_str = json.encoder.encode_basestring_ascii


def dumps(value) -> str:
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _write(value, out: list[str]) -> None:
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
        # Like .NET doubles, whole numbers keep a ".0" so readers parse every amount as a decimal.
        out.append(format(value, "f") + (".0" if value.as_tuple().exponent >= 0 else ""))
    elif isinstance(value, float):
        out.append(repr(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(_encode_str(str(k)))
            out.append(":")
            _write(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _write(v, out)
        out.append("]")
    elif isinstance(value, datetime | date):
        from .generator import at_utc

        out.append(_encode_str(at_utc(value)))
    else:
        raise TypeError(f"cannot serialise {type(value).__name__}")


def loads(text: str | bytes):
    return json.loads(text, parse_float=Decimal)


def save_data(data: dict[str, list[dict]], path: str | Path) -> None:
    Path(path).write_text(dumps(data), encoding="utf-8")


@functools.lru_cache(maxsize=65536)
def parse_timestamp(text: str) -> datetime:
    """Autotask accepts and returns several spellings: date only, with or without fraction and Z."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    if "." in cleaned:
        # Python wants 3 or 6 fraction digits before 3.11's relaxed parser; normalise anyway.
        head, _, tail = cleaned.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits):]
        cleaned = f"{head}.{(digits + '000000')[:6]}{zone}"
    parsed = datetime.fromisoformat(cleaned)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)

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

from sandbox import jsonwire

def dumps(value) -> str:
    return jsonwire.dumps(value, decimal=_decimal_text, moment=_timestamp)


def _decimal_text(value: Decimal) -> str:
    # Like .NET doubles, whole numbers keep a ".0" so readers parse every amount as a decimal.
    return format(value, "f") + (".0" if value.as_tuple().exponent >= 0 else "")


def _timestamp(value: date | datetime) -> str:
    from .generator import at_utc

    return at_utc(value)


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

"""Xero's wire formats: MS-JSON dates, exact decimal JSON, money rounding.

Xero answers dates as "/Date(1539993600000+0000)/" and the SDK refuses anything else in those fields,
so every date/datetime the simulator stores is rendered that way. Money never passes through float:
requests are parsed with Decimal and responses are written digit for digit.
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, time, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sandbox import jsonwire

TWO_DP = Decimal("0.01")
FOUR_DP = Decimal("0.0001")
_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def round_money(value: Decimal) -> Decimal:
    return value.quantize(TWO_DP, rounding=ROUND_HALF_UP)


def round_to(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def to_decimal(value) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    try:
        # str() first so a float that slipped in keeps its shortest repr, not its binary expansion
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {value!r}") from exc


def ms_date(value: date | datetime) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc)
    else:
        moment = datetime.combine(value, time(), tzinfo=timezone.utc)
    millis = int(moment.timestamp() * 1000) if moment.microsecond == 0 else (
        int(moment.replace(microsecond=0).timestamp()) * 1000 + moment.microsecond // 1000
    )
    return f"/Date({millis}+0000)/"


def iso_date_string(value: date) -> str:
    return f"{value.isoformat()}T00:00:00"


def iso_datetime_string(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value) -> datetime:
    """A request timestamp: MS-JSON or ISO 8601 (naive means UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    text = str(value).strip()
    match = _MS_DATE.match(text)
    if match:
        millis = int(match.group(1))
        # The offset in "/Date(ms+1300)/" is informational; the milliseconds are already UTC.
        return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_date(value) -> date:
    """A request date: "YYYY-MM-DD", "YYYY-MM-DDThh:mm:ss" or "/Date(ms)/" (the SDK's form)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if _MS_DATE.match(text):
        return parse_datetime(text).date()
    if len(text) == 10:
        return date.fromisoformat(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date()


def loads(raw: bytes | str):
    return json.loads(raw, parse_float=Decimal)


def _decimal_text(value: Decimal) -> str:
    text = format(value, "f")
    return text if value.is_finite() else "null"


def dumps(value) -> bytes:
    """JSON with Decimals written exactly and dates in Xero's MS-JSON form."""
    return jsonwire.dumps(value, decimal=_decimal_text, moment=ms_date).encode()

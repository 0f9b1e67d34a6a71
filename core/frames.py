"""Autotask records (dicts) -> validated frames, keeping malformed records out with the reason why.

A record that cannot be read is not an error of the run: it is reported for that one record and the
rest go on. The frame builders return the good rows; the problems come back beside them.
"""

from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import pandas as pd
import pandera.pandas as pa

from core.schemas import (
    INT64_MAX, INT64_MIN, MAX_AMOUNT, MAX_QUANTITY, NUMBER_LIMIT, QUANTITY_COLUMNS, TEXT_LIMITS, TIMESTAMP_COLUMNS,
    AutotaskCompanies, AutotaskInvoiceLines, AutotaskInvoices, column_dtypes, timestamp_problem,
)


@dataclass(frozen=True)
class RejectedRecord:
    """A record kept out of its frame, with what is wrong with it."""

    record: dict
    problems: tuple[str, ...]
    # The fields the problems are about, in the order found, each once.
    fields: tuple[str, ...] = ()


class Unreadable(ValueError):
    """A value that cannot be read, and why, when there is more to say than its type."""


# Numbers as text: ASCII digits, an optional sign, fraction and exponent. Decimal() alone would also take
# "1_000", "١٢", "Infinity" and "NaN", none of which Autotask writes for a number.
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
SHOWN_LIMIT = 60  # a value quoted in a message is cut to this many characters


def to_decimal(value) -> Decimal | None:
    """Autotask numbers as Decimal. Floats go through their shortest repr, so 0.1 stays 0.1."""
    if value is None or isinstance(value, bool):
        raise TypeError
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        if not _NUMBER_TEXT.fullmatch(value.strip()):
            raise ValueError
        return Decimal(value.strip())
    raise TypeError


def _to_int(value):
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, numbers.Integral):  # int, and numpy's integers as frames hand them out
        number = int(value)
    else:
        decimal = to_decimal(value)
        if not decimal.is_finite() or decimal != decimal.to_integral_value():
            raise ValueError
        if decimal.adjusted() > 18:
            raise Unreadable("out of range")
        number = int(decimal)
    if not INT64_MIN <= number <= INT64_MAX:
        raise Unreadable("out of range")
    return number


def read_int(value) -> int | None:
    """An Autotask id (or other whole number) as int, read the way the frames read it; None when it
    cannot be read (not a whole number, text that is not one, outside the 64-bit range)."""
    try:
        return _to_int(value)
    except (TypeError, ValueError, InvalidOperation):
        return None


def _to_bool(value):
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TypeError


def _to_text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise TypeError


def _to_amount(value, limit: Decimal) -> Decimal:
    number = to_decimal(value)
    if not number.is_finite():
        raise ValueError
    if abs(number) > limit:
        raise Unreadable(f"out of range (at most ±{limit:,})")
    return number


def _to_timestamp(value) -> str:
    if not isinstance(value, str):
        raise TypeError
    problem = timestamp_problem(value.strip())
    if problem:
        raise Unreadable(problem)
    return value.strip()


def shown(value) -> str:
    """A value as a message quotes it: Decimals as their digits, anything else as repr, cut when long."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    if len(text) <= SHOWN_LIMIT:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return text[: SHOWN_LIMIT - 1] + "…" + size


def rejected_number(record: dict) -> str:
    """How to name a rejected invoice in the report and the ledger, whatever its fields hold: its number
    when that is short text, else its id, else that its id cannot be read."""
    number = record.get("invoiceNumber")
    if isinstance(number, str) and number.strip() and len(number.strip()) <= NUMBER_LIMIT:
        return number.strip()
    invoice_id = read_int(record.get("id"))
    return str(invoice_id) if invoice_id is not None else "(id cannot be read)"


# Object columns that hold Autotask structures as they came, not amounts.
_STRUCTURED = frozenset({"userDefinedFields"})


def _coerce(value, dtype, column: str, problems: list[str]):
    """One cell to the column's Python type; a value that cannot be read is reported, not guessed."""
    if column in _STRUCTURED:
        if value is None or (isinstance(value, list) and all(isinstance(u, dict) for u in value)):
            return value
        problems.append(f"{column} = {shown(value)} cannot be read: not a list of {{name, value}}")
        return None
    if value is None or (isinstance(value, float) and value != value):
        # Autotask leaves booleans out rather than sending false.
        return False if isinstance(dtype, pd.BooleanDtype) else None
    try:
        if isinstance(dtype, pd.Int64Dtype):
            return _to_int(value)
        if isinstance(dtype, pd.BooleanDtype):
            return _to_bool(value)
        if column in TIMESTAMP_COLUMNS:
            return _to_timestamp(value)
        if isinstance(dtype, pd.StringDtype):
            text = _to_text(value)
            limit = TEXT_LIMITS.get(column)
            if limit is not None and len(text) > limit:
                raise Unreadable(f"longer than {limit} characters")
            return text
        return _to_amount(value, MAX_QUANTITY if column in QUANTITY_COLUMNS else MAX_AMOUNT)
    except (TypeError, ValueError, InvalidOperation) as exc:
        why = f": {exc}" if isinstance(exc, Unreadable) else f": {_expected(dtype, column)}"
        problems.append(f"{column} = {shown(value)} cannot be read{why}")
        return None


def _expected(dtype, column: str) -> str:
    if isinstance(dtype, pd.Int64Dtype):
        return "not a whole number"
    if isinstance(dtype, pd.BooleanDtype):
        return "not true or false"
    if column in TIMESTAMP_COLUMNS:
        return "not a date"
    if isinstance(dtype, pd.StringDtype):
        return "not text"
    return "not a number"


def empty_frame(model: type[pa.DataFrameModel]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in column_dtypes(model).items()})


def frame_of_rows(rows: list[dict], model: type[pa.DataFrameModel]) -> pd.DataFrame:
    """Rows of plain values -> a frame with exactly the model's columns and dtypes (not yet validated)."""
    dtypes = column_dtypes(model)
    if not rows:
        return empty_frame(model)
    return pd.DataFrame(
        {name: pd.Series([row[name] for row in rows], dtype=dtype) for name, dtype in dtypes.items()}
    )


_SLOW = object()


def _fast_reader(dtype, column: str):
    """The cell as `_coerce` reads it when it is already of the column's type and in range, else _SLOW (then
    `_coerce` reads it and words any problem). A hundred thousand billing items are a million cells."""
    if column in _STRUCTURED:
        return lambda value: _SLOW
    if isinstance(dtype, pd.Int64Dtype):
        return lambda value: value if type(value) is int and INT64_MIN <= value <= INT64_MAX else _SLOW
    if isinstance(dtype, pd.BooleanDtype):
        return lambda value: value if type(value) is bool else _SLOW
    if column in TIMESTAMP_COLUMNS:
        def timestamp(value):
            if type(value) is not str:
                return _SLOW
            text = value.strip()
            return text if timestamp_problem(text) is None else _SLOW
        return timestamp
    if isinstance(dtype, pd.StringDtype):
        limit = TEXT_LIMITS.get(column)
        return lambda value: value if type(value) is str and (limit is None or len(value) <= limit) else _SLOW
    limit = MAX_QUANTITY if column in QUANTITY_COLUMNS else MAX_AMOUNT
    return lambda value: value if type(value) is Decimal and value.is_finite() and abs(value) <= limit else _SLOW


def build_frame(records: list[dict], model: type[pa.DataFrameModel]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    """Validated frame of the records that pass `model`, and the rejected ones with their problems."""
    dtypes = column_dtypes(model)
    readers = [(name, dtype, _fast_reader(dtype, name)) for name, dtype in dtypes.items()]
    rows, problems_by_row = [], []
    for record in records:
        problems: list[str] = []
        row = {}
        for name, dtype, fast in readers:
            value = record.get(name)
            cell = fast(value)
            row[name] = _coerce(value, dtype, name, problems) if cell is _SLOW else cell
        rows.append(row)
        problems_by_row.append(problems)

    frame = frame_of_rows(rows, model)
    validated = None
    try:
        validated = model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        for case in errors.failure_cases.itertuples():
            position = case.index
            if position is None or pd.isna(position):
                # A whole-column failure (wrong dtype) is our bug, not the document's.
                raise
            check = str(case.check)
            if check == "not_nullable":
                message = f"{case.column} is missing"
            elif check == "field_uniqueness":
                message = f"{case.column} {shown(case.failure_case)} appears more than once"
            else:
                message = f"{case.column} = {shown(case.failure_case)} fails {check}"
            # Missing values the coercion already reported need not be reported twice.
            if not any(p.startswith(f"{case.column} = ") for p in problems_by_row[int(position)]):
                problems_by_row[int(position)].append(message)

    # Every problem starts with the name of its field.
    rejected = [RejectedRecord(record, tuple(problems), tuple(dict.fromkeys(p.split(" ", 1)[0] for p in problems)))
                for record, problems in zip(records, problems_by_row) if problems]
    if validated is not None and not rejected:
        return validated, []  # every record passed: the frame just validated is the answer (no second build)
    good_rows = [row for row, problems in zip(rows, problems_by_row) if not problems]
    good = model.validate(frame_of_rows(good_rows, model))
    return good, rejected


def invoices_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskInvoices)


def lines_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskInvoiceLines)


def companies_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskCompanies)

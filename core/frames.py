"""Autotask records (dicts) -> validated frames, keeping malformed records out with the reason why.

A record that cannot be read is not an error of the run: it is reported for that one record and the
rest go on. The frame builders return the good rows; the problems come back beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import pandas as pd
import pandera.pandas as pa

from core.schemas import AutotaskCompanies, AutotaskInvoiceLines, AutotaskInvoices, column_dtypes


@dataclass(frozen=True)
class RejectedRecord:
    """A record kept out of its frame, with what is wrong with it."""

    record: dict
    problems: tuple[str, ...]


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
        return Decimal(value.strip())
    raise TypeError


def _to_int(value):
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    number = to_decimal(value)
    if number != number.to_integral_value():
        raise ValueError
    return int(number)


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


# Object columns that hold Autotask structures as they came, not amounts.
_STRUCTURED = frozenset({"userDefinedFields"})


def _coerce(value, dtype, column: str, problems: list[str]):
    """One cell to the column's Python type; a value that cannot be read is reported, not guessed."""
    if column in _STRUCTURED:
        if value is None or (isinstance(value, list) and all(isinstance(u, dict) for u in value)):
            return value
        problems.append(f"{column} = {value!r} cannot be read")
        return None
    if value is None or (isinstance(value, float) and value != value):
        # Autotask leaves booleans out rather than sending false.
        return False if isinstance(dtype, pd.BooleanDtype) else None
    try:
        if isinstance(dtype, pd.Int64Dtype):
            return _to_int(value)
        if isinstance(dtype, pd.BooleanDtype):
            return _to_bool(value)
        if isinstance(dtype, pd.StringDtype):
            return _to_text(value)
        number = to_decimal(value)
        if not number.is_finite():
            raise ValueError
        return number
    except (TypeError, ValueError, InvalidOperation):
        problems.append(f"{column} = {value!r} cannot be read")
        return None


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


def build_frame(records: list[dict], model: type[pa.DataFrameModel]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    """Validated frame of the records that pass `model`, and the rejected ones with their problems."""
    dtypes = column_dtypes(model)
    rows, problems_by_row = [], []
    for record in records:
        problems: list[str] = []
        rows.append({name: _coerce(record.get(name), dtype, name, problems) for name, dtype in dtypes.items()})
        problems_by_row.append(problems)

    frame = frame_of_rows(rows, model)
    try:
        model.validate(frame, lazy=True)
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
                message = f"{case.column} {case.failure_case!r} appears more than once"
            else:
                message = f"{case.column} = {case.failure_case!r} fails {check}"
            # Missing values the coercion already reported need not be reported twice.
            if not any(p.startswith(f"{case.column} = ") for p in problems_by_row[int(position)]):
                problems_by_row[int(position)].append(message)

    rejected = [RejectedRecord(record, tuple(problems))
                for record, problems in zip(records, problems_by_row) if problems]
    good_rows = [row for row, problems in zip(rows, problems_by_row) if not problems]
    good = model.validate(frame_of_rows(good_rows, model))
    return good, rejected


def invoices_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskInvoices)


def lines_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskInvoiceLines)


def companies_with_rejects(records: list[dict]) -> tuple[pd.DataFrame, list[RejectedRecord]]:
    return build_frame(records, AutotaskCompanies)

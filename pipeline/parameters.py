"""The document flows' parameters, typed for the deployment's form in the Prefect UI.

Prefect builds the form from the flow's signature and gives every field its parameter's name as title, and a
description only from a `Field` default. These annotations carry a title and a description in the schema
itself, and show an optional day as a date picker: `date | None` alone is an `anyOf` with `null`, which the
form cannot draw ("Property is type None"). The flows stay plain functions of these values, so
`invoices(tenant="acme", since=date(2026, 11, 1))` is called as before.
"""
from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Optional

from pydantic import Field, WithJsonSchema

from core import windows


def _described(title: str, description: str, **schema):
    # json_schema_extra is applied last, over the title Prefect gives every field (the parameter's name).
    return Field(json_schema_extra={"title": title, "description": description, **schema})


# A day, or none: shown as a date picker that may be left empty (an empty field is not sent).
# Prefect checks a run's parameters against the pattern, not the format: a day that is not YYYY-MM-DD is refused
# before the run is created.
_DAY = WithJsonSchema({"type": "string", "format": "date", "pattern": windows.DATE_PATTERN})

Tenant = Annotated[str, _described(
    "Tenant", "The tenant to sync: the name of its file in tenants/ (NAME.yaml). A tenant's own deployment "
              "syncs only that tenant.")]
Since = Annotated[Optional[date], _DAY, _described(
    "From", "The first day of the window (documents dated on or after it). Empty: where the last completed run "
            "ended, less the tenant's lookback_days.")]
Until = Annotated[Optional[date], _DAY, _described(
    "To", "The last day of the window (documents dated on or before it). Empty: today.")]
DryRun = Annotated[bool, _described(
    "Dry run", "Read, map and report what a real run would do (from the ledger and Xero); write nothing.")]
OnlyWindow = Annotated[bool, _described(
    "Only this window", "For a backfill's chunks: read only the window's own days, and leave the scheduled "
                        "runs' high-water mark where it is. Leave it off.")]
# Empty in every scheduled run; `atx ledger resend` fills it in. An array of text, or none, drawn as a list.
OnlyIds = Annotated[Optional[list[str]], WithJsonSchema({"type": "array", "items": {"type": "string"}}), _described(
    "Only these documents", "Autotask ids of the documents to sync, read by id whatever their date; nothing "
                            "else is read or sent, and the high-water mark stays. Leave it empty.")]
Direction = Literal["both", "to_autotask", "to_xero"]
PaymentsDirection = Annotated[Direction, _described(
    "Direction", "both: Xero's settlements to Autotask paid dates, and (when the tenant enables it) Autotask's "
                 "paid dates to Xero payments; or one way only.")]
Reason = Annotated[Optional[str], WithJsonSchema({"type": "string"}), _described(
    "Reason", "Why the run was started, shown in its log (a Xero webhook's trigger fills it in). Optional.")]

"""The date window a run reads: validated, and written as Autotask filter timestamps that cannot overflow.

A window is two dates, both included: invoices dated since..until. Autotask compares timestamps, so it
is read as [since 00:00 UTC, the day after until 00:00 UTC). Python's dates end at 9999-12-31, where
"the day after" does not exist: the upper bound is then capped at the last moment of that day. Every
date arithmetic here saturates at the ends of the calendar instead of raising OverflowError.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

# The earliest day SQL Server's datetime type holds. No record in Autotask is dated before it, and a filter
# value before it is one not every back end can compare, so a window reaching further back starts here.
AUTOTASK_EARLIEST = date(1753, 1, 1)
LAST_MOMENT = "9999-12-31T23:59:59.999Z"  # the upper bound when until is date.max


# A date as a deployment parameter gives it, YYYY-MM-DD with a month and a day that exist (29 February in every
# year). Prefect checks a run's parameters against its deployment's JSON schema before it creates the run, but
# not a schema's "format": "date"; it does check a "pattern", so a parameter that is not a date is refused then.
DATE_PATTERN = (r"^[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
                r"|02-(?:0[1-9]|1[0-9]|2[0-9]))$")


class WindowError(ValueError):
    """A window that cannot be read; the message is one line that says what to pass instead."""


def _day(value, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raise WindowError(f"{name} must be a date (YYYY-MM-DD), got {value!r}")


def check_window(since, until) -> tuple[date, date]:
    """(since, until) as dates, or WindowError when either is not a date or the window starts after it ends."""
    since, until = _day(since, "since"), _day(until, "until")
    if since > until:
        raise WindowError(f"the window starts after it ends: since={since.isoformat()} until={until.isoformat()}; "
                          "pass a since on or before until")
    return since, until


def timestamp(day: date) -> str:
    """Midnight UTC of a day, as Autotask filters want it; four-digit years whatever the platform's strftime."""
    day = max(_day(day, "day"), AUTOTASK_EARLIEST)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T00:00:00Z"


def autotask_range(since, until) -> tuple[str, str]:
    """(gte, lt) timestamps for invoices dated since..until, both days included.

    The day after 9999-12-31 cannot be written, so until=date.max gives lt = 9999-12-31T23:59:59.999Z.
    """
    since, until = check_window(since, until)
    upper = LAST_MOMENT if until == date.max else timestamp(until + timedelta(days=1))
    return timestamp(since), upper


def days_before(day: date, days: int) -> date:
    """day - days, stopping at date.min (and at date.max for a negative count) instead of overflowing."""
    day = _day(day, "day")
    try:
        return day - timedelta(days=days)
    except OverflowError:
        return date.min if days > 0 else date.max


def default_since(until: date, high_water: date | None, lookback_days: int, first_sync_days: int,
                  today: date) -> date:
    """Where a run without `since` starts: lookback_days before the high-water mark, or first_sync_days
    before until on a first run. A mark in the future (written before marks were capped at the run's day)
    counts as today, so it never puts the start after the end."""
    if high_water is None:
        return days_before(until, first_sync_days)
    return days_before(min(high_water, today), lookback_days)


def chunks(start: date, end: date, days: int) -> list[tuple[date, date]]:
    """[start, end] cut into windows of `days` days (the last one shorter), oldest first, both ends included."""
    start, end = check_window(start, end)
    if days < 1:
        raise WindowError(f"a chunk must be at least one day long, got {days}")
    out: list[tuple[date, date]] = []
    while True:
        last = min(end, days_before(start, -(days - 1)))
        out.append((start, last))
        if last >= end:
            return out
        start = last + timedelta(days=1)


def high_water_mark(until: date, today: date) -> date:
    """The high-water mark a completed run may record: until, but never past the day it ran. A run with
    until=9999-12-31 has read everything dated up to today that exists today, not the future."""
    return min(_day(until, "until"), _day(today, "today"))

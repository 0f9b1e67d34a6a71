"""The tenant's daily Xero call budget, as pure arithmetic: which day a call counts in, when the next day
begins, how many calls to take from the stored count at once, and the messages that say when a run can
go on. No clock, database or HTTP here: the gateway (clients/xero.py) passes the moment in.

"The day" is the UTC calendar day. Xero's own daily limit belongs to the organisation and is shared with
every other integration; the budget is the share of it this sync may use (`xero.daily_call_budget`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

SETTING = "xero.daily_call_budget"


def utc_moment(moment: datetime) -> datetime:
    """The moment in UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def utc_day(moment: datetime) -> date:
    """The UTC calendar day a call made at this moment counts in."""
    return utc_moment(moment).date()


def next_day_starts(moment: datetime) -> datetime:
    """00:00 UTC of the day after the moment's UTC day (a moment at midnight waits the whole day)."""
    return datetime.combine(utc_day(moment) + timedelta(days=1), time(0), tzinfo=timezone.utc)


def seconds_until_next_day(moment: datetime) -> float:
    """Seconds from the moment to the next 00:00 UTC: always more than 0, at most 86,400."""
    return (next_day_starts(moment) - utc_moment(moment)).total_seconds()


def wait_text(seconds: float) -> str:
    """A wait as a person reads it, rounded up to the minute: "5 h 12 min", "3 min", "2 h"."""
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def calls_to_take(wanted: int, used: int, budget: int) -> int:
    """How many of `wanted` calls fit in the day's budget when `used` are counted already (0: none)."""
    return max(0, min(wanted, budget - used))


@dataclass(frozen=True)
class BudgetStatus:
    """Where the organisation's day stands against the tenant's budget."""

    day: date
    used: int    # calls counted for the organisation that day (by every process and tenant of it)
    budget: int  # the tenant's xero.daily_call_budget

    @property
    def left(self) -> int:
        return max(0, self.budget - self.used)

    @property
    def share(self) -> float:
        """The part of the budget used, 0.0 to 1.0 or more (when the budget was lowered below the day's use)."""
        return self.used / self.budget if self.budget else 1.0


def budget_used_up(day: date, budget: int, moment: datetime) -> str:
    """Why the gateway stopped before a call: the tenant's budget for the day is spent."""
    return (f"the daily Xero call budget (the tenant setting {SETTING}) is used up for {day.isoformat()} "
            f"({budget} calls); the sync goes on after 00:00 UTC, in {wait_text(seconds_until_next_day(moment))}, "
            f"or raise {SETTING}")


def xero_day_nearly_used(remaining: int, reserve: int, moment: datetime, until: datetime) -> str:
    """Why the gateway stopped before a call: Xero's own day limit for the organisation, which other
    integrations share, has no more than the reserve left (X-DayLimit-Remaining)."""
    wait = max((utc_moment(until) - utc_moment(moment)).total_seconds(), 1)
    when = "after 00:00 UTC" if utc_moment(until) == next_day_starts(moment) else "when Xero's day limit renews"
    return (f"Xero's day limit for this organisation is nearly reached: Xero says {remaining} calls remain "
            f"(X-DayLimit-Remaining), which other integrations share, and the sync keeps {reserve} spare; "
            f"the run stops and the sync goes on {when}, in {wait_text(wait)}")


def xero_day_reached(moment: datetime, until: datetime) -> str:
    """Why the gateway stopped before a call: Xero answered 429 for its day limit, and its Retry-After
    (or the next UTC day) has not come yet."""
    wait = max((utc_moment(until) - utc_moment(moment)).total_seconds(), 1)
    return (f"Xero's day limit for this organisation is reached (Xero answered 429); the run stops and the sync "
            f"goes on when Xero's Retry-After has passed, in {wait_text(wait)}")


def usage_warning(status: BudgetStatus) -> str:
    """What `atx check` says when most of the day's budget is used."""
    return (f"{status.used} of the {status.budget} Xero calls of the daily budget ({SETTING}) are used for "
            f"{status.day.isoformat()} ({round(100 * status.share)} %); runs stop when it is reached and go on "
            "after 00:00 UTC.")


# ---- PDFs against the day's budget -----------------------------------------------------------------
PDFS_SETTING = "xero.pdfs_per_run"
# Of the day's budget, the tenth attachments leave alone: the calls the day's later runs need for their
# documents (an invoice in Xero matters more than its PDF). At least PDF_RESERVE_MIN calls.
PDF_RESERVE_PARTS = 10
PDF_RESERVE_MIN = 10


def pdf_reserve(budget: int) -> int:
    """Calls of the day's budget attachments never spend."""
    return max(PDF_RESERVE_MIN, -(-budget // PDF_RESERVE_PARTS))


@dataclass(frozen=True)
class PdfPlan:
    """How many of the PDFs waiting a run attaches now, and why the rest wait."""

    waiting: int
    now: int
    why_later: str | None = None  # "daily budget" | PDFS_SETTING | None (nothing left for later)

    @property
    def later(self) -> int:
        return self.waiting - self.now


def plan_pdfs(waiting: int, *, status: BudgetStatus | None, per_run: int | None) -> PdfPlan:
    """Each PDF costs one Xero call: attach what the day's budget leaves after the documents (the run
    attaches once its documents are sent) less the reserve, at most `per_run` (xero.pdfs_per_run; None: no
    cap of its own). Without a budget (a bare gateway), only `per_run` limits them."""
    room = waiting if status is None else max(0, status.left - pdf_reserve(status.budget))
    now = min(waiting, room)
    why = "daily budget" if now < waiting else None
    if per_run is not None and per_run < now:
        now, why = per_run, PDFS_SETTING
    return PdfPlan(waiting=waiting, now=now, why_later=why)


def pdfs_text(attached: int, left: int, why: str | None) -> str:
    """The run report's line on PDFs: "12 PDFs attached, 30 left for the next run (daily budget)"."""
    text = f"{attached} PDF{'' if attached == 1 else 's'} attached"
    return f"{text}, {left} left for the next run ({why or 'not attached this time'})" if left > 0 else text

"""The run's date window: any dates, the ends of the calendar included, give Autotask filter timestamps or a
one-line WindowError, never an exception from date arithmetic."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import example, given, settings, strategies as st

from core.windows import (
    AUTOTASK_EARLIEST, LAST_MOMENT, WindowError, autotask_range, check_window, days_before, default_since,
    high_water_mark, timestamp,
)
from sandbox.autotask.wire import parse_timestamp

STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z")
edge_dates = st.one_of(st.dates(), st.sampled_from([date.min, date.max, date(1752, 12, 31), AUTOTASK_EARLIEST,
                                                    date(9999, 12, 30), date(1, 1, 2)]))
days = st.one_of(st.integers(-(10**10), 10**10), st.sampled_from([0, 1, 14, 30, 3_652_059, 999_999_999]))


def _moment(stamp: str) -> datetime:
    return parse_timestamp(stamp)


@settings(max_examples=300)
@given(since=edge_dates, until=edge_dates)
@example(since=date.min, until=date.max)
@example(since=date.max, until=date.max)
@example(since=date.min, until=date.min)
@example(since=date(2026, 11, 1), until=date(9999, 12, 31))
def test_any_window_gives_filter_timestamps_or_a_one_line_error(since, until):
    try:
        gte, lt = autotask_range(since, until)
    except WindowError as exc:
        assert since > until
        assert "\n" not in str(exc) and "since=" in str(exc) and "until=" in str(exc)
        return
    assert since <= until
    assert STAMP.fullmatch(gte) and STAMP.fullmatch(lt)
    start, end = _moment(gte), _moment(lt)  # both read back by the sandbox's Autotask timestamp parser
    assert start <= end
    assert start.date() == max(since, AUTOTASK_EARLIEST)
    if until >= AUTOTASK_EARLIEST:
        # Every moment of `until` is inside the window.
        last = datetime.combine(until, datetime.max.time(), tzinfo=timezone.utc).replace(microsecond=999000)
        assert end > last or (until == date.max and end == last)


def test_the_end_of_the_calendar_is_capped_not_overflowed():
    assert autotask_range(date(2026, 11, 1), date.max) == ("2026-11-01T00:00:00Z", LAST_MOMENT)
    assert autotask_range(date(2026, 11, 1), date(2026, 11, 24)) == ("2026-11-01T00:00:00Z", "2026-11-25T00:00:00Z")
    assert autotask_range(date.min, date(2026, 11, 24))[0] == "1753-01-01T00:00:00Z"
    assert timestamp(date(999, 1, 2)) == "1753-01-01T00:00:00Z"  # never "999-01-02" nor a 3-digit year


@pytest.mark.parametrize("since, until, message", [
    (date(2026, 11, 2), date(2026, 11, 1),
     "the window starts after it ends: since=2026-11-02 until=2026-11-01; pass a since on or before until"),
    ("2026-11-01", date(2026, 11, 1), "since must be a date (YYYY-MM-DD), got '2026-11-01'"),
    (date(2026, 11, 1), None, "until must be a date (YYYY-MM-DD), got None"),
])
def test_a_window_that_cannot_be_read_says_what_to_pass(since, until, message):
    with pytest.raises(WindowError) as caught:
        autotask_range(since, until)
    assert str(caught.value) == message


def test_datetimes_are_read_as_their_day():
    assert check_window(datetime(2026, 11, 1, 23, 59), date(2026, 11, 1)) == (date(2026, 11, 1), date(2026, 11, 1))


@settings(max_examples=300)
@given(day=edge_dates, count=days)
def test_days_before_saturates_at_the_ends_of_the_calendar(day, count):
    result = days_before(day, count)
    try:
        assert result == day - timedelta(days=count)
    except OverflowError:
        assert result == (date.min if count > 0 else date.max)


@settings(max_examples=300)
@given(until=edge_dates, high_water=st.none() | edge_dates, today=edge_dates, lookback=days, first=days)
@example(until=date(2026, 11, 24), high_water=date.max, today=date(2026, 11, 24), lookback=14, first=30)
@example(until=date.min, high_water=None, today=date.min, lookback=14, first=30)
def test_the_default_start_never_overflows_and_never_follows_a_future_mark(until, high_water, today, lookback, first):
    since = default_since(until, high_water, lookback, first, today)
    assert isinstance(since, date)
    if lookback >= 0 and first >= 0 and today <= until:
        check_window(since, until)  # the start never comes after the end


def test_a_run_to_the_end_of_the_calendar_marks_only_the_day_it_ran():
    assert high_water_mark(date.max, date(2026, 11, 24)) == date(2026, 11, 24)
    assert high_water_mark(date(2026, 11, 1), date(2026, 11, 24)) == date(2026, 11, 1)
    # The next run then starts lookback_days before it, not in the year 9999.
    assert default_since(date(2026, 12, 1), date.max, 14, 30, date(2026, 12, 1)) == date(2026, 11, 17)


def test_a_window_is_cut_into_chunks_oldest_first_that_cover_every_day_once():
    from datetime import timedelta

    from core.windows import chunks

    year = chunks(date(2025, 1, 1), date(2025, 12, 31), 31)
    assert year[0] == (date(2025, 1, 1), date(2025, 1, 31)) and year[-1][1] == date(2025, 12, 31)
    days = [d for start, end in year for d in (start + timedelta(n) for n in range((end - start).days + 1))]
    assert days == sorted(set(days)) and len(days) == 365
    assert chunks(date(2025, 1, 1), date(2025, 1, 1), 30) == [(date(2025, 1, 1), date(2025, 1, 1))]
    assert chunks(date(9999, 12, 1), date.max, 31) == [(date(9999, 12, 1), date.max)]  # no overflow at the end
    with pytest.raises(WindowError):
        chunks(date(2025, 1, 1), date(2025, 2, 1), 0)

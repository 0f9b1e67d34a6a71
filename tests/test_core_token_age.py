from datetime import datetime, timedelta, timezone

from core.token_age import refresh_token_warning

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def test_no_warning_before_45_days_or_without_a_token():
    assert refresh_token_warning(NOW - timedelta(days=44, hours=23), NOW, "acme") is None
    assert refresh_token_warning(None, NOW, "acme") is None


def test_after_45_days_the_warning_names_the_day_it_dies():
    text = refresh_token_warning(NOW - timedelta(days=46), NOW, "acme")
    assert "46 days" in text
    assert text.endswith("run any sync or `atx connect xero --tenant acme` before 2026-12-08")


def test_a_naive_timestamp_is_utc_and_a_dead_token_says_to_reconnect():
    naive = (NOW - timedelta(days=61)).replace(tzinfo=None)
    text = refresh_token_warning(naive, NOW, "acme")
    assert "61 days ago" in text and text.endswith("run `atx connect xero --tenant acme`")

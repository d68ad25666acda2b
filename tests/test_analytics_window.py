"""The days an analytics pull asks for: first pulls, look-back, chunks and the cursor."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from opsync.connectors.analytics.window import AnalyticsSettings, chunks, first_day, parse_cursor, today

TODAY = date(2026, 11, 20)


def settings(**values: object) -> AnalyticsSettings:
    return AnalyticsSettings(id="metrics", kind="amplitude", base_url="https://amplitude.com", **values)


def spans(found: list) -> list[tuple[str, str, str | None]]:
    return [(c.first.isoformat(), c.last.isoformat(), c.cursor.isoformat() if c.cursor else None) for c in found]


def test_a_first_pull_goes_back_history_days_in_chunks_and_ends_today() -> None:
    found = chunks(settings(history_days=65, chunk_days=30), None, TODAY)
    assert spans(found) == [
        ("2026-09-17", "2026-10-16", "2026-10-16"),
        ("2026-10-17", "2026-11-15", "2026-11-15"),
        ("2026-11-16", "2026-11-20", "2026-11-19"),  # today is asked for, the cursor stops the day before
    ]


def test_start_date_overrides_history_days() -> None:
    found = chunks(settings(start_date=date(2026, 11, 1), history_days=400), None, TODAY)
    assert found[0].first == date(2026, 11, 1)
    assert first_day(settings(start_date=date(2026, 11, 1)), TODAY) == date(2026, 11, 1)


def test_an_incremental_pull_asks_again_for_the_look_back_days_before_the_cursor() -> None:
    found = chunks(settings(look_back_days=3), date(2026, 11, 19), TODAY)
    assert spans(found) == [("2026-11-17", "2026-11-20", "2026-11-19")]


def test_no_look_back_still_asks_for_today_again_until_it_is_over() -> None:
    assert spans(chunks(settings(look_back_days=0), date(2026, 11, 19), TODAY)) == [
        ("2026-11-20", "2026-11-20", "2026-11-19")
    ]


def test_a_cursor_days_behind_catches_up_in_chunks_and_never_moves_back() -> None:
    found = chunks(settings(look_back_days=3, chunk_days=5), date(2026, 11, 10), TODAY)
    assert spans(found) == [
        ("2026-11-08", "2026-11-12", "2026-11-12"),
        ("2026-11-13", "2026-11-17", "2026-11-17"),
        ("2026-11-18", "2026-11-20", "2026-11-19"),
    ]
    ahead = chunks(settings(look_back_days=1), date(2026, 11, 25), TODAY)  # a cursor in a later time zone
    assert spans(ahead) == [("2026-11-20", "2026-11-20", "2026-11-25")]


def test_a_cursor_that_is_not_a_day_means_no_cursor() -> None:
    assert parse_cursor("2026-11-19") == date(2026, 11, 19)
    assert parse_cursor(None) is None
    assert parse_cursor("page=3") is None


def test_today_is_the_projects_day() -> None:
    evening_in_utc = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)
    assert today(settings(), evening_in_utc) == date(2026, 11, 20)
    assert today(settings(timezone="Asia/Tokyo"), evening_in_utc) == date(2026, 11, 21)
    assert today(settings(timezone="America/Los_Angeles"), evening_in_utc + timedelta(hours=3)) == TODAY


def test_settings_refuse_an_unknown_time_zone_and_empty_event_names() -> None:
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        settings(timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="at least one event"):
        settings(events=[])
    with pytest.raises(ValidationError, match="no empty names"):
        settings(events=["Signed Up", " "])
    assert settings(events=["A", "B", "A"]).events == ["A", "B"]

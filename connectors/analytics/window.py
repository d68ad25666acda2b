"""The days an analytics pull covers.

Analytics tools revise recent days (events arrive late, today is not over), so a pull asks
again for the last look_back_days complete days before the cursor, then every day up to today,
in chunks of chunk_days (one page each, so that a backfill resumes where it stopped). The
cursor is the last complete day pulled (an ISO date): today is pulled but never becomes the
cursor, so the next pull asks for it again. A first pull starts at start_date, or history_days
before today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from opsync.service.clock import now
from opsync.service.contract import ConnectionSettings


class AnalyticsSettings(ConnectionSettings):
    """What every analytics connection may say, beside its tool's credentials."""

    # Daily numbers: an hourly pull keeps them fresh within API budgets of tens of queries an
    # hour, and a full pull (the whole window again, then reconcile) weekly is plenty.
    pull_every_minutes: float = Field(default=60.0, gt=0)
    full_every_hours: float = Field(default=168.0, gt=0)
    events: list[str] | None = None  # the events to pull; None: every event the tool lists
    look_back_days: int = Field(default=3, ge=0, le=90)  # complete days pulled again, for late events
    history_days: int = Field(default=180, ge=1, le=3650)  # how far back the first pull (and the hub) goes...
    start_date: date | None = None  # ...unless this says from when
    chunk_days: int = Field(default=30, ge=1, le=365)  # days per query and page
    timezone: str = "UTC"  # the project's time zone in the tool: whose day is "today"
    concurrency: int = Field(default=4, ge=1, le=16)  # requests in flight at once

    @field_validator("events")
    @classmethod
    def _named_events(cls, events: list[str] | None) -> list[str] | None:
        if events is not None and (not events or any(not name.strip() for name in events)):
            raise ValueError("events: name at least one event, and no empty names (or leave events out: all events)")
        return list(dict.fromkeys(events)) if events is not None else None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: {name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None
        return name


@dataclass(frozen=True)
class Chunk:
    """Days first to last (inclusive) in one query, and the cursor once they are stored."""

    first: date
    last: date
    cursor: date | None


def today(settings: AnalyticsSettings, moment: datetime | None = None) -> date:
    """Today in the project's time zone."""
    return (moment or now()).astimezone(ZoneInfo(settings.timezone)).date()


def first_day(settings: AnalyticsSettings, on: date) -> date:
    """The first day a pull without a cursor asks for, and the first day the hub keeps."""
    return settings.start_date or on - timedelta(days=settings.history_days - 1)


def parse_cursor(cursor: str | None) -> date | None:
    """The last complete day pulled; None (pull everything) for no cursor or one that is not a date."""
    try:
        return date.fromisoformat(cursor) if cursor else None
    except ValueError:
        return None


def chunks(settings: AnalyticsSettings, cursor: date | None, on: date) -> list[Chunk]:
    """The chunks a pull on day `on` asks for, oldest first; the last one ends today."""
    if cursor is None:
        start = first_day(settings, on)
    else:
        start = min(cursor + timedelta(days=1 - settings.look_back_days), on)
    result = []
    done = cursor
    while start <= on:
        last = min(start + timedelta(days=settings.chunk_days - 1), on)
        complete = min(last, on - timedelta(days=1))  # today is not over: it never becomes the cursor
        if complete >= start:
            done = complete if done is None else max(done, complete)
        result.append(Chunk(start, last, done))
        start = last + timedelta(days=1)
    return result


def days(first: date, last: date) -> list[date]:
    """Every day from first to last."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]

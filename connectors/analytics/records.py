"""Daily numbers as raw records: one record per event, day and measure.

A record holds one number, so that the mapping turns it into one metric point:
    record_type "event_day", external_id "{event}|{day}|{measure}" (stable: pulling a day again
    updates it, never counts it twice), payload
    {"tool": "amplitude", "event": "Checkout Completed", "day": "2026-11-01",
     "measure": "totals" | "uniques", "value": 412, ...what else the tool says},
    version: when the tool answered (a later answer with other numbers replaces the record).
totals is how many times the event fired that day; uniques how many people fired it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from opsync.connectors.analytics.window import days
from opsync.service.contract import RawRecord, TransientError

RECORD_TYPE = "event_day"
MEASURES = ("totals", "uniques")


def record_id(event: str, day: date, measure: str) -> str:
    return f"{event}|{day.isoformat()}|{measure}"


def number(value: Any) -> int | float:
    """A count as the tool wrote it (PostHog may write 12.0); ValueError if it is none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return int(value) if isinstance(value, float) and value.is_integer() else value


def daily_records(
    tool: str,
    event: str,
    measure: str,
    values: Mapping[str, Any],
    first: date,
    last: date,
    at: datetime,
    extra: Mapping[str, Any] | None = None,
) -> list[RawRecord]:
    """The records of one event's measure for each day from first to last, from the tool's
    numbers by ISO day; TransientError when the answer lacks a day asked for or a number."""
    wanted = days(first, last)
    missing = [day for day in wanted if day.isoformat() not in values]
    if missing:
        raise TransientError(
            f"{tool} answered for {event} ({measure}) no number for {len(missing)} of the {len(wanted)} days"
            f" asked for (first missing: {missing[0]})"
        )
    records = []
    for day in wanted:  # days beyond those asked for are left out: no id twice in one pull
        try:
            value = number(values[day.isoformat()])
        except ValueError as problem:
            raise TransientError(f"{tool} answered for {event} ({measure}) on {day}: {problem}") from None
        payload = {"tool": tool, "event": event, "day": day.isoformat(), "measure": measure, "value": value}
        records.append(RawRecord(RECORD_TYPE, record_id(event, day, measure), {**payload, **(extra or {})}, at))
    return records

"""A pull of daily event numbers, whatever the tool: the window of days (window.py), one page
per chunk of days, and records by event, day and measure (records.py). A tool's connector says
how to list its events and how to ask for a measure of an event over some days.

Reconcile: list_ids names every event, day and measure from the first day the connection keeps
(start_date, or history_days back) to today, for the events the tool lists (or the settings
name). A metric day does not vanish upstream: the tool has a number, maybe 0, for every day of
every event it knows. So reconcile removes only days older than the window (history_days is a
retention) and, once delete_vanished_containers is set, the days of an event the tool no
longer lists; until then such an event is reported and kept (the mapping's container is the
event, and Listing.containers names the events listed).
"""

from __future__ import annotations

import asyncio
import sys
from abc import abstractmethod
from collections.abc import AsyncIterator, Coroutine
from datetime import date
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from opsync.connectors.analytics.client import ToolClient
from opsync.connectors.analytics.records import MEASURES, RECORD_TYPE, record_id
from opsync.connectors.analytics.window import AnalyticsSettings, chunks, days, first_day, parse_cursor, today
from opsync.service.contract import (
    ConnectionSettings,
    Connector,
    FatalError,
    Listing,
    PullPage,
    Pulls,
    RawRecord,
)

T = TypeVar("T")


class AnalyticsConnector(Connector, Pulls):
    """Daily totals and uniques of a tool's events, pulled by day with a look-back."""

    settings_model: ClassVar[type[ConnectionSettings]] = AnalyticsSettings

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, AnalyticsSettings)
        self.config = settings
        self.client = self.connect(settings)

    # --- what a tool's connector says ----------------------------------------------------

    @abstractmethod
    def connect(self, settings: Any) -> ToolClient:
        """The client to the tool, with its credentials."""

    @abstractmethod
    async def list_events(self) -> list[str]:
        """The names of the events the tool has."""

    async def measure(self, events: list[str], first: date, last: date) -> list[RawRecord]:
        """Every event's totals and uniques for each day from first to last; one request per
        event and measure by default, at most `concurrency` at once."""
        answers = await all_of([self.series(event, measure, first, last) for event in events for measure in MEASURES])
        return [record for answer in answers for record in answer]

    async def series(self, event: str, measure: str, first: date, last: date) -> list[RawRecord]:
        """One event's measure for each day from first to last (tools that ask per event)."""
        raise NotImplementedError(f"{type(self).__name__} asks for several events at once (measure)")

    # --- shared --------------------------------------------------------------------------

    @classmethod
    def default_mapping(cls) -> Path:
        """The YAML named after the kind, beside the tool's connector module (amplitude.yaml)."""
        module = sys.modules[cls.__module__].__file__
        assert module is not None
        return Path(module).with_name(f"{cls.kind}.yaml")

    async def events(self) -> list[str]:
        """The events to pull: those the settings name, else every event the tool lists."""
        return list(self.config.events) if self.config.events is not None else await self.list_events()

    async def pull(self, cursor: str | None) -> AsyncIterator[PullPage]:
        on = today(self.config)
        events = await self.events()
        for chunk in chunks(self.config, parse_cursor(cursor), on):
            records = await self.measure(events, chunk.first, chunk.last) if events else []
            records.sort(key=lambda record: record.external_id)
            yield PullPage(records, chunk.cursor.isoformat() if chunk.cursor else None)

    async def list_ids(self) -> Listing:
        on = today(self.config)
        events = await self.events()
        window = days(first_day(self.config, on), on)
        ids = {record_id(event, day, measure) for event in events for day in window for measure in MEASURES}
        return Listing({RECORD_TYPE: ids}, containers={event.lower() for event in events})

    async def aclose(self) -> None:
        await self.client.aclose()


async def all_of(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run calls at once; the first to fail cancels the others, and its error (a FatalError
    before any other: retrying will not mend it) is raised as itself, not in a group."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except ExceptionGroup as failed:
        errors = list(failed.exceptions)
        raise next((e for e in errors if isinstance(e, FatalError)), errors[0]) from None
    return [task.result() for task in tasks]

"""PostHog: each event's daily totals and unique users through the query API.

GET /api/projects/{id}/event_definitions/ names the events (paged: follow `next`);
POST /api/projects/{id}/query/ with a TrendsQuery (an EventsNode per event and math: total for
totals, dau for uniques; interval day; dateRange date_from/date_to) answers `results`, a series
each, in the order asked: {"action": {"id", "math", ...}, "label", "count", "data": [n, ...],
"days": ["YYYY-MM-DD", ...], "labels": [...]}, and `last_refresh`, when PostHog computed them
(the records' version). One query asks for several events at once. A personal API key
(scopes query:read and event_definition:read) authenticates as a Bearer token.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from opsync.connectors.analytics.client import ToolClient
from opsync.connectors.analytics.connector import AnalyticsConnector, all_of
from opsync.connectors.analytics.records import daily_records
from opsync.connectors.analytics.window import AnalyticsSettings
from opsync.service.contract import RawRecord, TransientError
from opsync.service.toolkit import tool_time

MATHS = {"totals": "total", "uniques": "dau"}
MEASURE_OF = {"total": "totals", None: "totals", "dau": "uniques"}
EVENTS_PER_QUERY = 20  # two series each
DEFINITIONS_PER_PAGE = 100


class PostHogSettings(AnalyticsSettings):
    kind: Literal["posthog"] = "posthog"
    base_url: str = Field(default="https://us.posthog.com", pattern=r"^https?://")  # EU, or self-hosted
    project_id: str = Field(pattern=r"^[0-9]+$")
    token: SecretStr  # a personal API key, phx_... (named token: the connections file reads it as ${NAME})


class PostHogConnector(AnalyticsConnector):
    kind = "posthog"
    settings_model = PostHogSettings

    def connect(self, settings: PostHogSettings) -> ToolClient:
        return ToolClient(
            self.kind,
            settings.id,
            settings.base_url,
            headers={"Authorization": f"Bearer {settings.token.get_secret_value()}"},
            concurrency=settings.concurrency,
            what_to_fix="token (a personal API key with query:read and event_definition:read on the project)",
        )

    @property
    def _project_path(self) -> str:
        assert isinstance(self.config, PostHogSettings)
        return f"/api/projects/{self.config.project_id}"

    async def list_events(self) -> list[str]:
        names: list[str] = []
        target: str | None = f"{self._project_path}/event_definitions/?limit={DEFINITIONS_PER_PAGE}"
        while target:
            answer = await self.client.get(target, what="the event definitions")
            page = answer.body if isinstance(answer.body, dict) else {}
            rows = page.get("results")
            if not isinstance(rows, list):
                raise TransientError("posthog answered the event definitions without a results list")
            names += [row["name"] for row in rows if isinstance(row, dict) and isinstance(row.get("name"), str)]
            target = _same_origin(page.get("next"))
        return names

    async def measure(self, events: list[str], first: date, last: date) -> list[RawRecord]:
        groups = [events[n : n + EVENTS_PER_QUERY] for n in range(0, len(events), EVENTS_PER_QUERY)]
        answers = await all_of([self._trends(group, first, last) for group in groups])
        return [record for answer in answers for record in answer]

    async def _trends(self, events: list[str], first: date, last: date) -> list[RawRecord]:
        series = [
            {"kind": "EventsNode", "event": event, "name": event, "math": MATHS[measure]}
            for event in events
            for measure in MATHS
        ]
        query = {
            "kind": "TrendsQuery",
            "series": series,
            "interval": "day",
            "dateRange": {"date_from": first.isoformat(), "date_to": last.isoformat()},
        }
        what = f"the trends of {len(events)} events from {first} to {last}"
        body = {"query": query, "refresh": "blocking"}  # fresh numbers, from PostHog's cache if they are
        answer = await self.client.post(f"{self._project_path}/query/", body, what=what)
        found = answer.body if isinstance(answer.body, dict) else {}
        results = found.get("results")
        if not isinstance(results, list) or len(results) != len(series):
            raise TransientError(f"posthog answered {what} without a result for each of its {len(series)} series")
        at = tool_time(found.get("last_refresh")) or answer.at
        assert isinstance(self.config, PostHogSettings)
        project = {"project": self.config.project_id}
        records = []
        for asked, result in zip(series, results, strict=True):
            try:
                event, measure, values = daily_series(result)
            except ValueError as problem:
                raise TransientError(f"posthog answered {what} unexpectedly: {problem}") from None
            if (event, MATHS[measure]) != (asked["event"], asked["math"]):
                raise TransientError(f"posthog answered {event!r} ({measure}) where {asked['event']!r} was asked")
            records += daily_records(self.kind, event, measure, values, first, last, at, project)
        return records


def daily_series(result: Any) -> tuple[str, str, dict[str, Any]]:
    """(event, measure, numbers by ISO day) of one trends result: an answer of the query API,
    or a saved insight's `result` item. ValueError when it is not a daily series of an event."""
    if not isinstance(result, dict):
        raise ValueError("a result is not an object")
    action = result.get("action")
    action = action if isinstance(action, dict) else {}
    event = action.get("id") or action.get("name") or result.get("label")
    if not isinstance(event, str) or action.get("type", "events") != "events":
        raise ValueError("the result is not a series of one event")
    math = action.get("math")
    if math not in MEASURE_OF:
        raise ValueError(f"the series of {event!r} counts by math {math!r}, neither total nor dau")
    days, data = result.get("days"), result.get("data")
    if not isinstance(days, list) or not isinstance(data, list) or len(days) != len(data):
        shown = len(data) if isinstance(data, list) else "no"
        raise ValueError(f"the series of {event!r} has {shown} numbers for its days: not a daily series")
    return event, MEASURE_OF[math], {str(day)[:10]: value for day, value in zip(days, data, strict=True)}


def _same_origin(link: Any) -> str | None:
    """A `next` link as a path and query on the connection's own base URL (credentials go
    nowhere else, and a proxy in front of PostHog keeps working)."""
    if not isinstance(link, str) or not link:
        return None
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")

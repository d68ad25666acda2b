"""Amplitude: each event's daily totals and uniques through the Dashboard REST API.

GET /api/2/events/list names the events; GET /api/2/events/segmentation with
e={"event_type": ...}, m=totals|uniques, i=1 (daily) and start/end as YYYYMMDD answers
{"data": {"series": [[n, ...]], "seriesLabels": [0], "xValues": ["YYYY-MM-DD", ...]}}.
Basic auth with the project's API key and secret key; days are in the project's time zone.
Amplitude runs at most 5 requests of a project at once and spends an hourly cost budget
(days x conditions per query): beyond either it answers 429, which is retried.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr

from opsync.connectors.analytics.client import ToolClient
from opsync.connectors.analytics.connector import AnalyticsConnector
from opsync.connectors.analytics.records import daily_records
from opsync.connectors.analytics.window import AnalyticsSettings
from opsync.service.contract import RawRecord, TransientError


class AmplitudeSettings(AnalyticsSettings):
    kind: Literal["amplitude"] = "amplitude"
    base_url: str = Field(default="https://amplitude.com", pattern=r"^https?://")  # EU: analytics.eu.amplitude.com
    api_key: SecretStr  # the project's API key
    token: SecretStr  # the project's secret key (named token: the connections file reads it as ${NAME})
    chunk_days: int = Field(default=30, ge=1, le=365)  # a daily segmentation spans a year at most
    concurrency: int = Field(default=4, ge=1, le=5)  # Amplitude's limit is 5 at once, per project


class AmplitudeConnector(AnalyticsConnector):
    kind = "amplitude"
    settings_model = AmplitudeSettings

    def connect(self, settings: AmplitudeSettings) -> ToolClient:
        credentials = httpx.BasicAuth(settings.api_key.get_secret_value(), settings.token.get_secret_value())
        return ToolClient(
            self.kind,
            settings.id,
            settings.base_url,
            auth=credentials,
            concurrency=settings.concurrency,
            what_to_fix="api_key and token (the project's API key and secret key, from its settings in Amplitude)",
        )

    async def list_events(self) -> list[str]:
        answer = await self.client.get("/api/2/events/list", what="the event list")
        try:
            return event_types(answer.body)
        except ValueError as problem:
            raise TransientError(f"amplitude answered the event list unexpectedly: {problem}") from None

    async def series(self, event: str, measure: str, first: date, last: date) -> list[RawRecord]:
        params = {
            "e": json.dumps({"event_type": event}),
            "m": measure,
            "i": "1",
            "start": first.strftime("%Y%m%d"),
            "end": last.strftime("%Y%m%d"),
        }
        answer = await self.client.get(
            "/api/2/events/segmentation", params, what=f"the {measure} of {event!r} from {first} to {last}"
        )
        try:
            values = daily_values(answer.body)
        except ValueError as problem:
            raise TransientError(f"amplitude answered the segmentation of {event!r} unexpectedly: {problem}") from None
        return daily_records(self.kind, event, measure, values, first, last, answer.at)


def event_types(body: Any) -> list[str]:
    """The event types of an event list answer, leaving out deleted ones."""
    rows = body.get("data") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise ValueError("no data list")
    return [row["value"] for row in rows if isinstance(row, dict) and row.get("value") and not row.get("deleted")]


def daily_values(body: Any) -> dict[str, Any]:
    """A segmentation answer's first series, by day ("YYYY-MM-DD")."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise ValueError("no data object")
    x_values, series = data.get("xValues"), data.get("series")
    if not isinstance(x_values, list) or not isinstance(series, list):
        raise ValueError("data has no xValues and series lists")
    first = series[0] if series else [0] * len(x_values)  # no series: the event never fired
    if not isinstance(first, list) or len(first) != len(x_values):
        shown = len(first) if isinstance(first, list) else "no"
        raise ValueError(f"the series has {shown} values for {len(x_values)} days")
    return {str(day)[:10]: value for day, value in zip(x_values, first, strict=True)}

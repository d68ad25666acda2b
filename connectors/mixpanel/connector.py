"""Mixpanel: each event's daily totals and uniques through the Query API's segmentation.

GET /api/query/events/names names the events (those fired in the last 31 days);
GET /api/query/segmentation with event, from_date/to_date (yyyy-mm-dd, inclusive), unit=day
and type=general (totals) or unique (uniques) answers
{"data": {"series": ["YYYY-MM-DD", ...], "values": {"<event>": {"YYYY-MM-DD": n}}}, "legend_size": 1}.
A service account authenticates (Basic username:secret) and names the project in every query.

Why segmentation: Mixpanel keeps it in maintenance mode and points to the Insights query API,
but that one only answers reports saved in Mixpanel (by bookmark id): a connection would need
someone to build and keep a report per event. Segmentation asks for any event directly.
The Query API allows 60 queries an hour and 5 at once: two queries per event and chunk of
days, so chunks are long (90 days) and pulls hourly by default.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr

from opsync.connectors.analytics.client import ToolClient
from opsync.connectors.analytics.connector import AnalyticsConnector
from opsync.connectors.analytics.records import daily_records
from opsync.connectors.analytics.window import AnalyticsSettings
from opsync.service.contract import RawRecord, TransientError

TYPES = {"totals": "general", "uniques": "unique"}


class MixpanelSettings(AnalyticsSettings):
    kind: Literal["mixpanel"] = "mixpanel"
    base_url: str = Field(default="https://mixpanel.com", pattern=r"^https?://")  # EU: https://eu.mixpanel.com
    project_id: int = Field(gt=0)
    workspace_id: int | None = Field(default=None, gt=0)
    username: str = Field(min_length=1)  # the service account's
    token: SecretStr  # the service account's secret (named token: the connections file reads it as ${NAME})
    chunk_days: int = Field(default=90, ge=1, le=365)
    concurrency: int = Field(default=4, ge=1, le=5)  # Mixpanel runs 5 queries at once at most


class MixpanelConnector(AnalyticsConnector):
    kind = "mixpanel"
    settings_model = MixpanelSettings

    def connect(self, settings: MixpanelSettings) -> ToolClient:
        return ToolClient(
            self.kind,
            settings.id,
            settings.base_url,
            auth=httpx.BasicAuth(settings.username, settings.token.get_secret_value()),
            concurrency=settings.concurrency,
            what_to_fix="username and token (the secret of a service account that is a member of the project)",
        )

    def _project(self) -> dict[str, Any]:
        assert isinstance(self.config, MixpanelSettings)
        params: dict[str, Any] = {"project_id": self.config.project_id}
        if self.config.workspace_id is not None:
            params["workspace_id"] = self.config.workspace_id
        return params

    async def list_events(self) -> list[str]:
        params = {**self._project(), "type": "general", "limit": 1000}
        answer = await self.client.get("/api/query/events/names", params, what="the event names")
        if not isinstance(answer.body, list) or not all(isinstance(name, str) for name in answer.body):
            raise TransientError("mixpanel answered the event names with something other than a list of names")
        return answer.body

    async def series(self, event: str, measure: str, first: date, last: date) -> list[RawRecord]:
        params = {
            **self._project(),
            "event": event,
            "from_date": first.isoformat(),
            "to_date": last.isoformat(),
            "unit": "day",
            "type": TYPES[measure],
        }
        answer = await self.client.get(
            "/api/query/segmentation", params, what=f"the {measure} of {event!r} from {first} to {last}"
        )
        try:
            values = daily_values(answer.body, event)
        except ValueError as problem:
            raise TransientError(f"mixpanel answered the segmentation of {event!r} unexpectedly: {problem}") from None
        project = {"project": str(params["project_id"])}
        return daily_records(self.kind, event, measure, values, first, last, answer.at, project)


def daily_values(body: Any, event: str) -> dict[str, Any]:
    """A segmentation answer's numbers of event, by day; a day of the series without a number is 0."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("series"), list):
        raise ValueError("no data.series list of days")
    values = data.get("values") or {}
    if not isinstance(values, dict):
        raise ValueError("data.values is not an object")
    numbers = values.get(event, {})
    if not isinstance(numbers, dict):
        raise ValueError(f"data.values[{event!r}] is not an object of days")
    return {str(day): numbers.get(day, 0) for day in data["series"]}

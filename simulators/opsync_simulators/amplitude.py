"""A fake Amplitude Dashboard REST API: the event list and daily event segmentation.

Basic auth with the project's API key and secret key; errors are plain text
("HTTP 400: Bad Request (...)") as Amplitude answers them; at most 5 requests of a project
run at once (the documented concurrent limit), beyond which it answers 429.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from opsync_simulators.analytics import AnalyticsSim

MAX_DAYS = 365  # daily segmentation covers at most this many days
MEASURES = ("totals", "uniques")


class AmplitudeSim(AnalyticsSim):
    tool = "amplitude"
    page_view_event = "[Amplitude] Page Viewed"
    unauthorized_message = "Invalid API key or secret key"
    throttled_message = "Exceeded concurrent limit of 5 requests per project"

    def __init__(self, api_key: str = "amp-api-key", secret_key: str = "amp-secret-key", **options: Any) -> None:
        """options: AnalyticsSim's (seed, history_days, rate_limit, max_concurrent: 5 by default)."""
        super().__init__(**{"max_concurrent": 5, **options})
        self.credentials = (api_key, secret_key)

    def authorized(self, headers: dict[str, str]) -> bool:
        return self.basic_credentials(headers) == self.credentials

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        reason = HTTPStatus(status).phrase
        return PlainTextResponse(f"HTTP {status}: {reason} ({message})", status_code=status, headers=headers)

    def routes(self) -> APIRouter:
        router = APIRouter(prefix="/api/2")

        @router.get("/events/list")
        def events_list() -> dict[str, Any]:
            """Every event type with this week's totals."""
            today = self.today()
            monday = today - timedelta(days=today.weekday())
            return {
                "data": [
                    {
                        "value": name,
                        "display": name,
                        "totals": sum(count.totals for _, count in self.series(name, monday, today)),
                        "hidden": False,
                        "deleted": False,
                        "non_active": False,
                        "flow_hidden": False,
                    }
                    for name in self.event_names()
                ]
            }

        @router.get("/events/segmentation")
        def segmentation(request: Request) -> Any:
            query = request.query_params
            try:
                event = _event_type(query.get("e"))
                first, last = _day(query.get("start"), "start"), _day(query.get("end"), "end")
                measure = query.get("m", "uniques")
                if measure not in MEASURES:
                    raise ValueError(f"the simulator answers m=totals or m=uniques, not {measure!r}")
                if query.get("i", "1") != "1":
                    raise ValueError("the simulator answers daily series (i=1) only")
                if last < first:
                    raise ValueError("end date is before start date")
                if (last - first).days + 1 > MAX_DAYS:
                    raise ValueError(f"Time range exceeds maximum of {MAX_DAYS * 86_400_000} ms")
            except ValueError as problem:
                return self.error(400, str(problem))
            self.record_query(event=event, measure=measure, first=first, last=last)
            days = self.series(event, first, last)
            values = [count.totals if measure == "totals" else count.uniques for _, count in days]
            return {
                "data": {
                    "series": [values],
                    "seriesLabels": [0],
                    "seriesCollapsed": [[{"setId": "", "value": _collapsed(values, measure)}]],
                    "xValues": [day.isoformat() for day, _ in days],
                }
            }

        return router


def _event_type(value: str | None) -> str:
    """The `e` parameter: a JSON event definition with an event_type."""
    try:
        event = json.loads(value or "")
    except json.JSONDecodeError:
        raise ValueError("e is not a JSON event definition") from None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise ValueError("e must name an event_type")
    return event["event_type"]


def _day(value: str | None, name: str) -> date:
    try:
        return datetime.strptime(value or "", "%Y%m%d").date()
    except ValueError:
        raise ValueError(f"{name} must be a date as YYYYMMDD, got {value!r}") from None


def _collapsed(values: list[int], measure: str) -> int:
    """The whole range's number: a sum of events, or an estimate of distinct people (they
    come back on several days, so fewer than the sum of the days' uniques)."""
    if measure == "totals" or not values:
        return sum(values)
    return max(values) + (sum(values) - max(values)) // 2

"""A fake PostHog: event definitions and the query API's TrendsQuery, by day.

A personal API key authenticates (Authorization: Bearer phx_...); errors are DRF's JSON
{"type", "code", "detail", "attr"}; too many requests a second get 429 with Retry-After,
as DRF's throttles answer.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Body, Request

from opsync_simulators.analytics import AnalyticsSim
from opsync_simulators.responses import JSONResponse

ERROR_KINDS = {
    400: ("validation_error", "invalid_input"),
    401: ("authentication_error", "authentication_failed"),
    403: ("authentication_error", "permission_denied"),
    404: ("invalid_request", "not_found"),
    429: ("throttled_error", "throttled"),
}
MATHS = {"total", "dau"}


class PostHogSim(AnalyticsSim):
    tool = "posthog"
    page_view_event = "$pageview"
    unauthorized_message = "Personal API key found in request Authorization header is invalid."
    throttled_message = "Request was throttled. Expected available in 1 second."

    def __init__(self, project_id: int = 4242, api_key: str = "phx_simulated_personal_key", **options: Any) -> None:
        """options: AnalyticsSim's (seed, history_days, rate_limit: 40 a second by default, max_concurrent)."""
        super().__init__(**{"rate_limit": 40, **options})
        self.project_id = project_id
        self.api_key = api_key

    def authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and key.strip() == self.api_key

    def error(self, status: int, message: str, headers: dict[str, str] | None = None, attr: str | None = None) -> Any:
        kind, code = ERROR_KINDS.get(status, ("server_error", "error"))
        return JSONResponse(
            {"type": kind, "code": code, "detail": message, "attr": attr}, status_code=status, headers=headers
        )

    def _project_or_refusal(self, project_id: str) -> JSONResponse | None:
        if project_id != str(self.project_id):
            return self.error(403, "You don't have access to the project.")
        return None

    def routes(self) -> APIRouter:
        router = APIRouter(prefix="/api/projects/{project_id}")

        @router.get("/event_definitions/")
        def event_definitions(project_id: str, request: Request, limit: int = 100, offset: int = 0) -> Any:
            refused = self._project_or_refusal(project_id)
            if refused is not None:
                return refused
            names = self.event_names()
            limit, offset = min(max(limit, 1), 1000), max(offset, 0)
            page = names[offset : offset + limit]

            def link(at: int) -> str:
                return str(request.url.include_query_params(limit=limit, offset=at))

            return {
                "count": len(names),
                "next": link(offset + limit) if offset + limit < len(names) else None,
                "previous": link(max(offset - limit, 0)) if offset > 0 else None,
                "results": [self._definition(name) for name in page],
            }

        @router.post("/query/")
        def query(project_id: str, body: dict[str, Any] = Body(...)) -> Any:
            refused = self._project_or_refusal(project_id)
            if refused is not None:
                return refused
            try:
                series, first, last = _trends_query(body.get("query"), self.today())
            except ValueError as problem:
                return self.error(400, str(problem), attr="query")
            return self._trends(series, first, last)

        return router

    def _definition(self, name: str) -> dict[str, Any]:
        first_seen = datetime.combine(self.stream.first_day, datetime.min.time(), UTC)
        return {
            "id": _uuid(name),
            "name": name,
            "owner": None,
            "description": None,
            "tags": [],
            "created_at": first_seen.isoformat().replace("+00:00", "Z"),
            "last_seen_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "last_updated_at": first_seen.isoformat().replace("+00:00", "Z"),
            "verified": False,
            "is_action": False,
            "post_to_slack": False,
            "volume_30_day": None,
            "query_usage_30_day": None,
        }

    def _trends(self, series: list[tuple[str, str]], first: date, last: date) -> dict[str, Any]:
        results = []
        for order, (event, math) in enumerate(series):
            self.record_query(event=event, measure="totals" if math == "total" else "uniques", first=first, last=last)
            days = self.series(event, first, last)
            data = [count.totals if math == "total" else count.uniques for _, count in days]
            results.append(
                {
                    "action": {
                        "id": event,
                        "type": "events",
                        "order": order,
                        "name": event,
                        "custom_name": None,
                        "math": math,
                        "math_property": None,
                        "math_hogql": None,
                        "math_group_type_index": None,
                        "properties": {},
                    },
                    "label": event,
                    "count": sum(data),
                    "data": data,
                    "labels": [f"{day.day}-{day.strftime('%b')}-{day.year}" for day, _ in days],
                    "days": [day.isoformat() for day, _ in days],
                }
            )
        refreshed = datetime.now(UTC)
        key = hashlib.sha256(json.dumps([series, str(first), str(last)]).encode()).hexdigest()[:32]
        return {
            "cache_key": f"cache_{key}",
            "is_cached": False,
            "last_refresh": refreshed.isoformat().replace("+00:00", "Z"),
            "next_allowed_client_refresh": (refreshed + timedelta(minutes=3)).isoformat().replace("+00:00", "Z"),
            "timezone": "UTC",
            "resolved_date_range": {
                "date_from": f"{first.isoformat()}T00:00:00Z",
                "date_to": f"{last.isoformat()}T23:59:59.999999Z",
            },
            "results": results,
            "hogql": "SELECT arrayMap(number -> ..., range(...)) AS date, ... FROM events WHERE ...",
            "timings": [],
            "query_status": None,
            "error": None,
        }


def _trends_query(query: Any, today: date) -> tuple[list[tuple[str, str]], date, date]:
    """(series as (event, math), first day, last day) of a TrendsQuery by day; ValueError otherwise."""
    if not isinstance(query, dict) or query.get("kind") != "TrendsQuery":
        raise ValueError("the simulator answers queries of kind TrendsQuery only")
    if query.get("interval", "day") != "day":
        raise ValueError("the simulator answers interval day only")
    series = []
    for node in query.get("series") or []:
        if not isinstance(node, dict) or node.get("kind") != "EventsNode" or not isinstance(node.get("event"), str):
            raise ValueError("each series must be an EventsNode naming an event")
        math = node.get("math") or "total"
        if math not in MATHS:
            raise ValueError(f"the simulator answers math total or dau, not {math!r}")
        series.append((node["event"], math))
    if not series:
        raise ValueError("a TrendsQuery needs at least one series")
    dates = query.get("dateRange") or {}
    first = _day(dates.get("date_from"), "date_from")
    last = _day(dates.get("date_to") or today.isoformat(), "date_to")
    if last < first:
        raise ValueError("date_from must be on or before date_to")
    return series, first, last


def _day(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"dateRange.{name} must be a date (YYYY-MM-DD) in the simulator, got {value!r}") from None


def _uuid(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"

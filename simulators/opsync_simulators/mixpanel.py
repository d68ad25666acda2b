"""A fake Mixpanel Query API: event names and daily segmentation of one event.

A service account authenticates with Basic auth (username:secret) and names the project in
each request (project_id); errors are JSON {"request": ..., "error": ...}; at most 5 queries
run at once (the documented concurrent limit), beyond which it answers 429.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from opsync_simulators.analytics import AnalyticsSim
from opsync_simulators.responses import JSONResponse

TYPES = {"general": "totals", "unique": "uniques"}


class MixpanelSim(AnalyticsSim):
    tool = "mixpanel"
    page_view_event = "$mp_web_page_view"
    unauthorized_message = "Invalid service account credentials"
    throttled_message = "Too many concurrent queries: at most 5 run at once, 60 an hour"

    def __init__(
        self,
        project_id: int = 2195193,
        username: str = "opsync.1a2b3c.mp-service-account",
        secret: str = "mp-secret",
        **options: Any,
    ) -> None:
        """options: AnalyticsSim's (seed, history_days, rate_limit, max_concurrent: 5 by default)."""
        super().__init__(**{"max_concurrent": 5, **options})
        self.project_id = project_id
        self.credentials = (username, secret)

    def authorized(self, headers: dict[str, str]) -> bool:
        return self.basic_credentials(headers) == self.credentials

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def refuse(self, request: Request, status: int, message: str) -> JSONResponse:
        """A query's error names the request, as Mixpanel's do."""
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return JSONResponse({"request": path, "error": message}, status_code=status)

    def _check_project(self, request: Request) -> JSONResponse | None:
        """Mixpanel asks a service account to name the project; one it cannot read is refused."""
        value = request.query_params.get("project_id")
        if not value:
            return self.refuse(request, 400, "project_id is required when authenticating with a service account")
        if value != str(self.project_id):
            return self.refuse(request, 403, f"service account does not have access to project {value}")
        return None

    def routes(self) -> APIRouter:
        router = APIRouter(prefix="/api/query")

        @router.get("/events/names")
        def names(request: Request, type: str = "general", limit: int = 255) -> Any:
            """The project's event names, most fired in the last 31 days first."""
            refused = self._check_project(request)
            if refused is not None:
                return refused
            today = self.today()
            volume = {
                name: sum(count.totals for _, count in self.series(name, today - timedelta(days=30), today))
                for name in self.event_names()
            }
            return sorted(volume, key=lambda name: -volume[name])[: max(limit, 0)]

        @router.get("/segmentation")
        def segmentation(request: Request) -> Any:
            refused = self._check_project(request)
            if refused is not None:
                return refused
            query = request.query_params
            try:
                event = query.get("event")
                if not event:
                    raise ValueError("event is required")
                first, last = _day(query.get("from_date"), "from_date"), _day(query.get("to_date"), "to_date")
                if last < first:
                    raise ValueError("from_date must be on or before to_date")
                if query.get("unit", "day") != "day":
                    raise ValueError("the simulator answers unit=day only")
                kind = query.get("type", "general")
                if kind not in TYPES:
                    raise ValueError(f"the simulator answers type general or unique, not {kind!r}")
            except ValueError as problem:
                return self.refuse(request, 400, str(problem))
            measure = TYPES[kind]
            self.record_query(event=event, measure=measure, first=first, last=last)
            days = self.series(event, first, last)
            return {
                "data": {
                    "series": [day.isoformat() for day, _ in days],
                    "values": {
                        event: {
                            day.isoformat(): count.totals if measure == "totals" else count.uniques
                            for day, count in days
                        }
                    },
                },
                "legend_size": 1,
            }

        return router


def _day(value: str | None, name: str) -> date:
    try:
        return datetime.strptime(value or "", "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"{name} must be a date as yyyy-mm-dd, got {value!r}") from None

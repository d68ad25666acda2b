"""API latency for /metrics, and the access log: a plain ASGI middleware, cheap enough for
the webhook route.

Requests are labelled by their route's path template (/api/v1/{collection}/{record_id}), never
by the raw path, so that ids in paths do not make a series each. The access log (logger
opsync.access, at INFO) has a line per request answered with an error by default: a burst of
accepted deliveries writes no line each, a refused one (401: a wrong secret) says so. The
query string is left out of it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsync.service import metrics
from opsync.service.settings import AccessLog

UNMATCHED = "unmatched"  # no route: a 404 for a path the API does not have
LOGGED_FROM = {"errors": 400, "all": 0, "off": None}  # the least status the access log has a line for

access = logging.getLogger("opsync.access")


class RequestMetrics:
    def __init__(self, app: ASGIApp, access_log: AccessLog = "errors") -> None:
        self.app = app
        self._templates: dict[int, str] = {}  # id of the matched route (or endpoint) -> its template
        self._logged_from = LOGGED_FROM[access_log]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it responds

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            metrics.http_request(self._template(scope), scope["method"], status, seconds)
            if self._logged_from is not None and status >= self._logged_from:
                client = scope.get("client")
                access.info(
                    '%s "%s %s" %d %.1f ms',
                    f"{client[0]}:{client[1]}" if client else "-",
                    scope["method"],
                    scope["path"],
                    status,
                    seconds * 1000,
                )

    def _template(self, scope: Scope) -> str:
        """The matched route's full path template. The router leaves the route (FastAPI's) or
        only its endpoint (a plain Starlette route) in the scope; a route of an included
        router knows its path without the router's prefix, which is the rest of the raw path."""
        matched: Any = scope.get("route") or scope.get("endpoint")
        if matched is None:
            return UNMATCHED
        template = self._templates.get(id(matched))
        if template is None:
            template = self._templates[id(matched)] = _template_of(matched, scope)
        return template


def _template_of(matched: Any, scope: Scope) -> str:
    path = getattr(matched, "path", None)
    if path is None:  # an endpoint: find its route among the application's own
        routes = getattr(scope.get("app"), "routes", [])
        path = next((route.path for route in routes if getattr(route, "endpoint", None) is matched), None)
        return path or UNMATCHED
    raw = scope["path"]
    cut = len(raw)
    for _ in range(path.count("/")):  # the raw path above the route's own segments
        cut = raw.rfind("/", 0, cut)
    return raw[:cut] + path if cut > 0 and ":path}" not in path else path

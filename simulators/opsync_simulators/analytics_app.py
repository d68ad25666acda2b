"""The HTTP face the analytics simulators share: the gate every API request passes (faults,
credentials, rate and concurrency limits) and the /_sim admin routes (admin.py's, and late
revisions); each tool adds its own API routes and error bodies (AnalyticsSim.routes,
AnalyticsSim.error).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Body, FastAPI
from fastapi.responses import Response

from opsync_simulators.admin import admin_routes
from opsync_simulators.faults import Fault
from opsync_simulators.latency import Latency
from opsync_simulators.responses import JSONResponse

if TYPE_CHECKING:
    from opsync_simulators.analytics import AnalyticsSim

SERVER_ERRORS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Gate:
    """ASGI middleware: count, inject faults, authenticate, then hold the request to the limits."""

    def __init__(self, app: Any, sim: AnalyticsSim) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        with sim.lock:
            sim.requests[scope["path"]] += 1
        query = scope.get("query_string", b"").decode()
        fault = sim.faults.take(scope["path"] + (f"?{query}" if query else ""))
        if fault and fault.pause:
            await sim.faults.hold()
        if fault and fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault and fault.drop_connection:
            await _cut_short(send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        response: Response | None = None
        if not sim.authorized(headers):
            response = sim.error(401, sim.unauthorized_message)
        elif fault and fault.status:
            response = _fault_response(sim, fault)
        elif fault and fault.malformed:
            response = Response(b'{"data": {"series": [[12, 4', media_type="application/json")
        if response is not None:
            await response(scope, receive, send)
            return
        wait = sim.admit()
        if wait is not None:
            await sim.error(429, sim.throttled_message, {"Retry-After": _seconds(wait)})(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            sim.release()


async def _cut_short(send: Any) -> None:
    """Promise a body, send a part of it, stop: the client sees the connection break."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"data": ', "more_body": True})


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _fault_response(sim: AnalyticsSim, fault: Fault) -> Response:
    status = int(fault.status or 500)
    headers = {}
    if status == 429 or fault.retry_after is not None:
        headers["Retry-After"] = _seconds(fault.retry_after if fault.retry_after is not None else 1)
    message = sim.throttled_message if status == 429 else SERVER_ERRORS.get(status, "Simulated fault")
    return sim.error(status, message, headers)


def admin_error(status: int, message: str) -> Response:
    """How the analytics simulators' /_sim routes answer a bad request, whichever the tool."""
    return JSONResponse({"error": message}, status_code=status)


def revision_routes(sim: AnalyticsSim) -> APIRouter:
    """/_sim/revisions: events that arrive late, changing a day already counted. Not part of any tool."""
    router = APIRouter(prefix="/_sim")

    @router.post("/revisions")
    def revise(body: dict[str, Any] = Body(...)) -> Any:
        """Late-arriving events: {"event": ..., "day": "YYYY-MM-DD", "events": n, "users": m}."""
        try:
            count = sim.revise(body["event"], body["day"], int(body["events"]), int(body["users"]))
        except (KeyError, TypeError, ValueError) as error:
            return admin_error(400, f"bad revision: {error}")
        return {"event": body["event"], "day": body["day"], "totals": count.totals, "uniques": count.uniques}

    return router


def create_app(sim: AnalyticsSim) -> FastAPI:
    app = FastAPI(title=f"{sim.tool} simulator", openapi_url=None)
    app.add_middleware(Gate, sim=sim)
    app.add_middleware(Latency, sim=sim)  # added last: outermost, before the gate
    app.include_router(sim.routes())
    app.include_router(admin_routes(sim, admin_error))
    app.include_router(revision_routes(sim))
    return app

"""The GitHub simulator's HTTP face: the gate every API request passes (faults, auth, the
rate limit, GitHub's headers), the REST routes (github_rest.py, also under /api/v3, as on GitHub
Enterprise Server) and the /_sim admin routes (admin.py, github_admin.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from opsync_simulators.admin import admin_routes, webhook_routes
from opsync_simulators.faults import Fault
from opsync_simulators.github_admin import delivery_json, github_admin_routes
from opsync_simulators.github_rest import GHES_PREFIX, error, rest_routes
from opsync_simulators.latency import Latency
from opsync_simulators.responses import JSONResponse

if TYPE_CHECKING:
    from opsync_simulators.github import GitHubSim


class Gate:
    """ASGI middleware: count, inject faults, authenticate, spend the rate limit, add headers."""

    def __init__(self, app: Any, sim: GitHubSim) -> None:
        self.app, self.sim = app, sim
        self.sequence = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            await self.app(scope, receive, send)
            return
        sim = self.sim
        path = scope["path"].removeprefix(GHES_PREFIX) or "/"
        with sim.lock:
            sim.requests[path] += 1
            host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode()
            sim.public_url = f"{scope.get('scheme', 'http')}://{host}"
        self.sequence += 1
        extra = {
            "X-GitHub-Request-Id": f"C0DE:{random.getrandbits(16):04X}:{self.sequence:07X}",
            "X-GitHub-Media-Type": "github.v3; format=json",
        }
        query = scope.get("query_string", b"").decode()
        fault = sim.take_fault(scope["path"] + (f"?{query}" if query else ""))
        if fault and fault.pause:
            await sim.faults.hold()
        if fault and fault.delay_seconds:
            await asyncio.sleep(float(fault.delay_seconds))
        if fault and fault.drop_connection:
            # Promise a body, send part of it, stop: the client sees a broken connection.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
                }
            )
            await send({"type": "http.response.body", "body": b'[{"id": ', "more_body": True})
            return
        token = self._token(scope)
        if sim.token is not None and token != sim.token:
            await error(401, "Bad credentials", extra)(scope, receive, send)
            return
        allowed, rate = self._spend(free=path == "/rate_limit")
        extra.update(rate)
        response: Response | None = None
        if not allowed:
            response = error(
                403,
                "API rate limit exceeded for user ID 1000. (But here's the good news: "
                "Authenticated requests get a higher rate limit.)",
                extra,
            )
        elif fault and fault.status:
            response = self._fault_response(fault, extra)
        elif fault and fault.malformed:
            response = Response(b'[{"id": 1, "title": "trunc', media_type="application/json", headers=extra)
        if response is not None:
            await response(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _spend(self, free: bool) -> tuple[bool, dict[str, str]]:
        """Count one request against the hourly budget, unless free (asking what is left costs
        nothing); (allowed, the rate-limit headers after it)."""
        sim = self.sim
        with sim.lock:
            allowed = True
            if not free:
                now = time.time()
                if now >= sim.rate_reset:
                    sim.rate_used, sim.rate_reset = 0, now + sim.rate_window_seconds
                allowed = sim.rate_used < sim.rate_limit
                if allowed:
                    sim.rate_used += 1
                else:
                    sim.rate_refused += 1
            return allowed, {
                "X-RateLimit-Limit": str(sim.rate_limit),
                "X-RateLimit-Remaining": str(max(sim.rate_limit - sim.rate_used, 0)),
                "X-RateLimit-Reset": str(int(sim.rate_reset + 0.999)),
                "X-RateLimit-Used": str(sim.rate_used),
                "X-RateLimit-Resource": "core",
            }

    @staticmethod
    def _token(scope: dict[str, Any]) -> str | None:
        value = dict(scope["headers"]).get(b"authorization", b"").decode()
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() in ("token", "bearer") else None

    @staticmethod
    def _fault_response(fault: Fault, headers: dict[str, str]) -> Response:
        status = int(fault.status or 500)
        if fault.retry_after is not None:
            headers = {**headers, "Retry-After": str(fault.retry_after)}
        if status in (403, 429):
            return error(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                headers,
            )
        if status >= 500:
            return Response(
                f"<html><body><h1>{status} Server Error</h1></body></html>",
                status_code=status,
                media_type="text/html",
                headers=headers,
            )
        return error(status, "Simulated fault", headers)


def create_app(sim: GitHubSim) -> FastAPI:
    app = FastAPI(title="GitHub simulator", openapi_url=None, docs_url=None, redoc_url=None)
    rest = rest_routes(sim)
    app.include_router(rest)
    app.include_router(rest, prefix=GHES_PREFIX)
    app.include_router(admin_routes(sim, error, answer_with_queue=True))
    app.include_router(webhook_routes(sim, error, delivery_json))
    app.include_router(github_admin_routes(sim))

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error(404, "Not Found")

    app.add_middleware(Gate, sim=sim)
    app.add_middleware(Latency, sim=sim)  # added last: outermost, before the gate
    return app

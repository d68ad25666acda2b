"""The Confluence simulator's HTTP surface: Confluence Cloud's REST API v2 under /wiki/api/v2,
behind a gate (faults, Basic auth), and the /_sim admin routes.

Handlers are plain `def`s: FastAPI runs them in its thread pool, so a mutation that POSTs a
webhook synchronously never stalls the event loop serving other requests.
"""

from __future__ import annotations

import asyncio
import base64
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Body, FastAPI, Request
from fastapi.responses import Response

from opsync_simulators import confluence_data as data
from opsync_simulators.admin import admin_routes, webhook_routes
from opsync_simulators.confluence import STATUSES, BadRequest, ConfluenceSim, NotFound
from opsync_simulators.faults import Fault
from opsync_simulators.latency import Latency
from opsync_simulators.responses import JSONResponse

API = "/wiki/api/v2"
MAX_LIMIT = 250
TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}


def v2_error(status: int, detail: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """Errors as REST v2 answers them: a list of {status, code, title, detail}."""
    title = TITLES.get(status, "Internal Server Error" if status >= 500 else "Error")
    code = title.upper().replace(" ", "_")
    body = {"errors": [{"status": status, "code": code, "title": title, "detail": detail}]}
    return JSONResponse(body, status_code=status, headers=headers)


class Gate:
    """ASGI middleware in front of the REST API (not /_sim): count, suffer the next fault,
    check Basic credentials as Atlassian Cloud does (email and API token)."""

    def __init__(self, app: Any, sim: ConfluenceSim) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            return await self.app(scope, receive, send)
        self.sim.api_requests += 1
        self.sim.api_paths.append(scope["path"])
        query = scope.get("query_string", b"").decode()
        fault = self.sim.take_fault(scope["path"] + (f"?{query}" if query else ""))
        response = await self._suffer(fault, send) if fault else None
        if response is None and not self._authenticated(scope):
            response = v2_error(401, "Unauthorized", {"WWW-Authenticate": 'Basic realm="Atlassian"'})
        if response is False:  # the connection was dropped
            return None
        if response is not None:
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _suffer(self, fault: Fault, send: Any) -> Response | bool | None:
        """The answer a fault gives instead of the API's (False: none, the connection drops)."""
        if fault.pause:
            await self.sim.faults.hold()
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault.drop_connection:
            # The headers promise a body that never comes; uvicorn then closes the socket.
            start = [(b"content-type", b"application/json"), (b"content-length", b"2048")]
            await send({"type": "http.response.start", "status": 200, "headers": start})
            return False
        if fault.malformed:
            return Response(b'{"results": [{"id": "11', media_type="application/json")
        if not fault.status:
            return None
        wait = fault.retry_after if fault.retry_after is not None else (1 if fault.status == 429 else None)
        headers = {} if wait is None else {"Retry-After": str(int(wait) if float(wait).is_integer() else wait)}
        if fault.status == 429:
            reset = datetime.now(UTC) + timedelta(seconds=float(wait or 0))
            headers |= {
                "X-RateLimit-Limit": "350",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "X-RateLimit-NearLimit": "true",
                "RateLimit-Reason": "confluence-quota-global-based",
            }
        return v2_error(fault.status, "Rate limit exceeded." if fault.status == 429 else "Simulated failure.", headers)

    def _authenticated(self, scope: dict[str, Any]) -> bool:
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, encoded = header.partition(" ")
        try:
            email, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        credentials = self.sim.credentials
        return scheme.lower() == "basic" and bool(email and token) and credentials in (None, (email, token))


def _listing(request: Request, results: list[Any], following: str | None) -> JSONResponse:
    """A v2 list: results, _links.next (the same query with the next cursor) and base, and
    the Link header with rel="next"."""
    base = str(request.base_url).rstrip("/") + "/wiki"
    links: dict[str, str] = {"base": base}
    headers = {}
    if following is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", following)]
        links["next"] = f"{request.url.path}?{urlencode(query)}"
        headers["Link"] = f'<{links["next"]}>; rel="next", <{base}>; rel="base"'
    return JSONResponse({"results": results, "_links": links}, headers=headers)


def _values(request: Request, name: str) -> list[str]:
    """A v2 array parameter: repeated, comma-separated, or both."""
    return [part.strip() for value in request.query_params.getlist(name) for part in value.split(",") if part.strip()]


def _numbers(request: Request, name: str) -> set[int] | None:
    values = _values(request, name)
    if not values:
        return None
    if not all(value.isdigit() for value in values):
        raise BadRequest(f"{name} must be numeric ids, got {','.join(values)}")
    return {int(value) for value in values}


def _limit(request: Request, default: int = 25) -> int:
    text = request.query_params.get("limit") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {text}")
    return int(text)


def _offset(cursor: str | None) -> int:
    """The spaces listing's cursor: an offset (spaces are few and seldom change)."""
    if not cursor:
        return 0
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        raise BadRequest(f"Invalid cursor {cursor!r}") from None


def _body_format(request: Request) -> str | None:
    value = request.query_params.get("body-format")
    if value not in (None, "storage"):
        raise BadRequest(f"body-format {value!r}: the simulator renders storage only")
    return value


def _rest_routes(app: FastAPI, sim: ConfluenceSim) -> None:
    @app.get(f"{API}/spaces")
    def spaces(request: Request) -> JSONResponse:
        ids, keys = _numbers(request, "ids"), set(_values(request, "keys"))
        rows = [s for s in sim.spaces() if (ids is None or s.id in ids) and (not keys or s.key in keys)]
        start = _offset(request.query_params.get("cursor"))
        limit = _limit(request)
        chunk = rows[start : start + limit]
        more = start + limit < len(rows)
        following = base64.urlsafe_b64encode(str(start + limit).encode()).decode().rstrip("=") if more else None
        return _listing(request, [data.render_space(s, sim.people) for s in chunk], following)

    @app.get(f"{API}/spaces/{{space_id}}")
    def space(space_id: str) -> dict[str, Any]:
        if not space_id.isdigit():
            raise BadRequest(f"space id {space_id!r} is not numeric")
        return data.render_space(sim.space(space_id), sim.people)

    @app.get(f"{API}/pages")
    def pages(request: Request) -> JSONResponse:
        statuses = tuple(_values(request, "status")) or ("current", "archived")
        unknown = set(statuses) - set(STATUSES)
        if unknown:
            raise BadRequest(f"status {sorted(unknown)[0]!r} is not one of {', '.join(STATUSES)}")
        body_format = _body_format(request)
        rows, following = sim.list_pages(
            space_ids=_numbers(request, "space-id"),
            ids=_numbers(request, "id"),
            statuses=statuses,
            title=request.query_params.get("title"),
            sort=request.query_params.get("sort") or "id",
            cursor=request.query_params.get("cursor"),
            limit=_limit(request),
        )
        return _listing(request, [sim.render(page, body_format) for page in rows], following)

    @app.get(f"{API}/pages/{{page_id}}")
    def page(page_id: str, request: Request) -> dict[str, Any]:
        rendered = sim.render(sim.page(page_id), _body_format(request))
        rendered["_links"]["base"] = str(request.base_url).rstrip("/") + "/wiki"
        return rendered

    @app.get(f"{API}/pages/{{page_id}}/labels")
    def labels(page_id: str, request: Request) -> JSONResponse:
        found = sim.page(page_id)
        rows = [{"id": str(zlib.crc32(name.encode())), "name": name, "prefix": "global"} for name in found.labels]
        return _listing(request, rows[: _limit(request)], None)


def _page_admin_routes(app: FastAPI, sim: ConfluenceSim) -> None:
    """/_sim/pages: create, edit, trash, restore, move and purge pages, as a test's user would."""

    def attempt(call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except (TypeError, ValueError) as error:  # BadRequest is a ValueError
            raise BadRequest(str(error)) from None

    @app.post("/_sim/pages", status_code=201)
    def create(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return attempt(sim.create_page, **body)

    @app.put("/_sim/pages/{page_id}")
    def update(page_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return attempt(sim.update_page, page_id, **body)

    @app.post("/_sim/pages/{page_id}/trash", status_code=204)
    def trash(page_id: str, silent: bool = False) -> Response:
        attempt(sim.trash_page, page_id, silent)
        return Response(status_code=204)

    @app.post("/_sim/pages/{page_id}/restore", status_code=204)
    def restore(page_id: str, silent: bool = False) -> Response:
        attempt(sim.restore_page, page_id, silent)
        return Response(status_code=204)

    @app.post("/_sim/pages/{page_id}/move")
    def move(page_id: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        return attempt(sim.move_page, page_id, body.get("parent"))

    @app.delete("/_sim/pages/{page_id}", status_code=204)
    def purge(page_id: str, silent: bool = False) -> Response:
        sim.purge_page(page_id, silent)
        return Response(status_code=204)


def create_app(sim: ConfluenceSim) -> FastAPI:
    app = FastAPI(title="Confluence Cloud simulator", openapi_url=None)
    app.add_middleware(Gate, sim=sim)
    app.add_middleware(Latency, sim=sim)  # added last: outermost, before the gate

    @app.exception_handler(BadRequest)
    def on_bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return v2_error(400, str(error))

    @app.exception_handler(NotFound)
    def on_not_found(request: Request, error: NotFound) -> JSONResponse:
        return v2_error(404, str(error))

    _rest_routes(app, sim)
    app.include_router(admin_routes(sim, v2_error))
    app.include_router(webhook_routes(sim, v2_error))
    _page_admin_routes(app, sim)
    return app

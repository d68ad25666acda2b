"""The Jira simulator's HTTP surface: Jira Cloud's REST paths (v2 and v3) and /_sim admin.

Handlers are plain `def`s: FastAPI runs them in its thread pool, so a mutation that POSTs a
webhook synchronously never stalls the event loop serving other requests.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from opsync_simulators.admin import admin_routes, webhook_routes
from opsync_simulators.jira import JiraSim, NotFound
from opsync_simulators.jira_jql import JqlError
from opsync_simulators.jira_render import FIELD_LIST, jira_time, render_project, render_user
from opsync_simulators.latency import Latency
from opsync_simulators.ratelimit import RequestBudget
from opsync_simulators.responses import JSONResponse

VERSIONS = ("2", "3", "latest")
ID_ONLY = {"id", "key", "issuekey"}


class JiraError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def jira_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errorMessages": [message], "errors": {}}, status_code=status, headers=headers)


class Gate:
    """ASGI middleware every API request (not /_sim) passes: the next injected fault hits it,
    then it spends its token's rate budget, whose headers its answer carries."""

    def __init__(self, app: Any, sim: JiraSim) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sim"):
            return await self.app(scope, receive, send)
        self.sim.api_requests += 1
        query = scope.get("query_string", b"").decode()
        fault = self.sim.take_fault(scope["path"] + (f"?{query}" if query else ""))
        if fault is not None and fault.pause:
            await self.sim.faults.hold()
        if fault is not None and fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault is not None and fault.drop_connection:
            # Headers promise a body that never comes; uvicorn then closes the socket.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
                }
            )
            return None
        budget = self.sim.budget
        allowed, rate = budget.spend(_token(scope)) if budget is not None else (True, {})
        response: Response | None = None
        if not allowed:
            response = jira_error(429, "Rate limit exceeded.", rate)
        elif fault is not None and fault.malformed:
            response = Response(b'{"issues": [{"id": "100', media_type="application/json", headers=rate)
        elif fault is not None and fault.status:
            headers = {}
            if fault.status == 429:
                retry_after = fault.retry_after if fault.retry_after is not None else 1
                reset = datetime.now(UTC) + timedelta(seconds=retry_after)
                headers = {
                    "Retry-After": str(int(retry_after) if float(retry_after).is_integer() else retry_after),
                    "X-RateLimit-Limit": "100",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%MZ"),
                    "X-RateLimit-NearLimit": "true",
                }
            elif fault.retry_after is not None:
                headers = {"Retry-After": str(fault.retry_after)}
            message = "Rate limit exceeded." if fault.status == 429 else f"Simulated failure {fault.status}."
            response = jira_error(fault.status, message, {**rate, **headers})
        if response is not None:
            await response(scope, receive, send)
            return None
        if not rate:
            return await self.app(scope, receive, send)

        async def send_with_rate(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                added = [(name.lower().encode(), value.encode()) for name, value in rate.items()]
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        return await self.app(scope, receive, send_with_rate)


def _token(scope: dict[str, Any]) -> str:
    """The API token of a request's Basic credential, as its budget is kept by ("": none)."""
    value = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    scheme, _, encoded = value.partition(" ")
    try:
        return base64.b64decode(encoded).decode().partition(":")[2] if scheme.lower() == "basic" else ""
    except ValueError:
        return ""


def authenticate(sim: JiraSim, request: Request) -> str:
    """The email of a valid Basic credential; JiraError(401) otherwise."""
    header = request.headers.get("authorization", "")
    try:
        scheme, encoded = header.split(" ", 1)
        email, _, token = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        scheme, email, token = "", "", ""
    valid = (
        scheme.lower() == "basic" and email and token and (sim.credentials is None or (email, token) == sim.credentials)
    )
    if not valid:
        raise JiraError(
            401,
            "Client must be authenticated to access this resource.",
            {"WWW-Authenticate": 'Basic realm="protected-area"'},
        )
    return email


def api(sim: JiraSim, request: Request, version: str) -> tuple[str, str]:
    """Check version and credentials; return (REST version, base URL) for rendering."""
    if version not in VERSIONS:
        raise JiraError(404, f"No REST API version {version}.")
    authenticate(sim, request)
    return ("2" if version == "latest" else version), str(request.base_url).rstrip("/")


def field_names(values: list[str] | str | None, default: set[str] | None) -> set[str] | None:
    """Jira's `fields` parameter: None for every field, else the named ones."""
    if values is None or values == [] or values == "":
        return default
    if isinstance(values, str):
        values = [values]
    names = {name.strip() for value in values for name in value.split(",") if name.strip()}
    if names & {"*all", "*navigable"}:
        return None
    return {name for name in names if not name.startswith("-")} - ID_ONLY


def create_app(sim: JiraSim) -> FastAPI:
    app = FastAPI(title="Jira Cloud simulator", openapi_url=None)
    app.add_middleware(Gate, sim=sim)
    app.add_middleware(Latency, sim=sim)  # added last: outermost, before the gate

    @app.exception_handler(JiraError)
    def on_jira_error(request: Request, error: JiraError) -> JSONResponse:
        return jira_error(error.status, error.message, error.headers)

    @app.exception_handler(JqlError)
    def on_jql_error(request: Request, error: JqlError) -> JSONResponse:
        return jira_error(400, str(error))

    @app.exception_handler(NotFound)
    def on_not_found(request: Request, error: NotFound) -> JSONResponse:
        return jira_error(404, "Issue does not exist or you do not have permission to see it.")

    @app.exception_handler(RequestValidationError)
    def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return jira_error(400, f"Invalid request: {error.errors()[0].get('msg', 'bad parameter')}")

    @app.get("/rest/api/{version}/serverInfo")
    def server_info(version: str, request: Request) -> dict[str, Any]:
        # Cloud answers serverInfo without credentials.
        return {
            "baseUrl": str(request.base_url).rstrip("/"),
            "version": "1001.0.0-SNAPSHOT",
            "versionNumbers": [1001, 0, 0],
            "deploymentType": "Cloud",
            "buildNumber": 100280,
            "buildDate": "2025-01-06T10:00:00.000+0000",
            "serverTime": jira_time(sim.now()),
            "scmInfo": "5d6f4e0c1f3b2a9d8e7c6b5a4f3e2d1c0b9a8f7e",
            "serverTitle": "Jira",
            "defaultLocale": {"locale": "en_US"},
        }

    @app.get("/rest/api/{version}/myself")
    def myself(version: str, request: Request) -> dict[str, Any]:
        email = authenticate(sim, request)
        base = str(request.base_url).rstrip("/")
        for person in sim.people:
            if person.email == email:
                return render_user(person, base)
        return {
            "self": f"{base}/rest/api/2/user?accountId=557058:sim-api-user",
            "accountId": "557058:sim-api-user",
            "emailAddress": email,
            "displayName": email,
            "active": True,
            "timeZone": "UTC",
            "locale": "en_US",
            "accountType": "atlassian",
            "avatarUrls": {},
        }

    @app.get("/rest/api/{version}/project/search")
    def project_search(version: str, request: Request, startAt: int = 0, maxResults: int = 50) -> dict[str, Any]:
        _, base = api(sim, request, version)
        projects = list(sim.projects.values())
        page = projects[startAt : startAt + maxResults]
        return {
            "self": str(request.url),
            "maxResults": maxResults,
            "startAt": startAt,
            "total": len(projects),
            "isLast": startAt + maxResults >= len(projects),
            "values": [{**render_project(p, base), "style": "classic", "isPrivate": False} for p in page],
        }

    @app.get("/rest/api/{version}/field")
    def fields(version: str, request: Request) -> list[dict[str, Any]]:
        api(sim, request, version)
        return FIELD_LIST

    def search(version: str, request: Request, params: dict[str, Any]) -> JSONResponse:
        rest_version, base = api(sim, request, version)
        wanted = field_names(params.get("fields"), set())  # search/jql's default is ids only
        cap = 5000 if wanted == set() else 100
        limit = min(int(params.get("maxResults") or 50), cap)
        expand = params.get("expand") or ""
        expand_set = set(expand if isinstance(expand, list) else expand.split(","))
        page = sim.search(
            params.get("jql") or "", params.get("nextPageToken"), max(limit, 1), wanted, expand_set, rest_version, base
        )
        return JSONResponse(page)  # not validated by FastAPI: a page is built as JSON

    @app.get("/rest/api/{version}/search/jql")
    def search_get(version: str, request: Request) -> JSONResponse:
        query = request.query_params
        params = {
            "jql": query.get("jql"),
            "nextPageToken": query.get("nextPageToken"),
            "maxResults": query.get("maxResults"),
            "fields": query.getlist("fields"),
            "expand": query.get("expand"),
        }
        try:
            return search(version, request, params)
        except ValueError as error:
            if isinstance(error, JqlError):
                raise
            raise JiraError(400, f"Invalid request: {error}") from None

    @app.post("/rest/api/{version}/search/jql")
    def search_post(version: str, request: Request, body: dict[str, Any] = Body(default_factory=dict)) -> JSONResponse:
        return search(version, request, body)

    @app.api_route("/rest/api/{version}/search", methods=["GET", "POST"])
    def old_search(version: str) -> JSONResponse:
        return jira_error(
            410,
            "The requested API has been removed. Please migrate to the "
            "/rest/api/3/search/jql API. A full migration guideline is available at "
            "https://developer.atlassian.com/changelog/#CHANGE-2046",
        )

    @app.get("/rest/api/{version}/issue/{id_or_key}")
    def get_issue(version: str, id_or_key: str, request: Request) -> dict[str, Any]:
        rest_version, base = api(sim, request, version)
        wanted = field_names(request.query_params.getlist("fields"), None)
        expand = set((request.query_params.get("expand") or "").split(","))
        return sim.render(sim.find(id_or_key), rest_version, base, wanted, expand)

    # --- admin: not part of Jira ---------------------------------------------------------

    app.include_router(admin_routes(sim, jira_error))
    app.include_router(webhook_routes(sim, jira_error))

    @app.get("/_sim/rate-limit")
    def rate_limit() -> dict[str, Any]:
        return sim.budget.as_json() if sim.budget is not None else {"limit": None}

    @app.put("/_sim/rate-limit")
    def set_rate_limit(body: dict[str, Any] = Body(...)) -> Any:
        """{"limit": 100, "window_seconds": 60} (a new budget, every token's window afresh);
        {"limit": null}: no limit."""
        try:
            limit = body["limit"]
            sim.budget = RequestBudget(int(limit), float(body.get("window_seconds", 60))) if limit is not None else None
        except (KeyError, TypeError, ValueError) as error:
            return jira_error(400, f"bad rate limit (limit, window_seconds): {error}")
        return rate_limit()

    @app.post("/_sim/issues", status_code=201)
    def admin_create(body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        try:
            return sim.create_issue(**body)
        except (TypeError, ValueError) as error:
            raise JiraError(400, str(error)) from None

    @app.put("/_sim/issues/{id_or_key}")
    def admin_update(id_or_key: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        try:
            return sim.update_issue(id_or_key, **body)
        except (TypeError, ValueError) as error:
            raise JiraError(400, str(error)) from None

    @app.delete("/_sim/issues/{id_or_key}", status_code=204)
    def admin_delete(id_or_key: str, silent: bool = False) -> Response:
        sim.delete_issue(id_or_key, silent)
        return Response(status_code=204)

    return app

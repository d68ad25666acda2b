"""The GitHub simulator's HTTP face: REST routes (also under /api/v3, as on GitHub
Enterprise Server), the gate every request passes (auth, rate limit, faults, headers),
and the /_sim admin routes.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from opsync_simulators import github_data as data
from opsync_simulators.faults import Fault
from opsync_simulators.github_data import Bases, SimItem
from opsync_simulators.outbox import WebhookFaults

if TYPE_CHECKING:
    from opsync_simulators.github import GitHubSim

DOCS = "https://docs.github.com/rest"
GHES_PREFIX = "/api/v3"
DEFAULT_ORDER = {"created": "desc", None: "desc"}  # pulls: desc only for created, else asc


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"message": message, "documentation_url": DOCS, "status": str(status)}, status_code=status, headers=headers
    )


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
        if path == "/rate_limit":
            allowed, rate = True, sim.rate_headers()
        else:
            allowed, rate = sim.spend_rate()
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


def _bases(sim: GitHubSim, request: Request) -> Bases:
    root = str(request.base_url).rstrip("/")
    api = root + GHES_PREFIX if request.url.path.startswith(GHES_PREFIX + "/") else root
    return Bases(api=api, web=root)


def _page(request: Request, rows: list[Any], per_page: int, page: int) -> tuple[list[Any], dict[str, str]]:
    """Slice one page and build GitHub's Link header (prev, next, last, first)."""
    per_page = min(max(per_page, 1), 100)
    page = max(page, 1)
    last = max((len(rows) + per_page - 1) // per_page, 1)
    url = request.url

    def link(n: int, rel: str) -> str:
        return f'<{url.include_query_params(per_page=per_page, page=n)}>; rel="{rel}"'

    links = []
    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links.append(link(1, "first"))
    chunk = rows[(page - 1) * per_page : page * per_page]
    return chunk, ({"Link": ", ".join(links)} if links else {})


def _parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _sorted(items: list[SimItem], sort: str, direction: str) -> list[SimItem]:
    keys = {
        "created": lambda i: (i.created_at, i.number),
        "updated": lambda i: (i.updated_at, i.number),
        "comments": lambda i: (i.comments, i.number),
        "popularity": lambda i: (i.comments, i.number),
        "long-running": lambda i: (i.updated_at - i.created_at, i.number),
    }
    return sorted(items, key=keys.get(sort, keys["created"]), reverse=direction == "desc")


def _rest_routes(sim: GitHubSim) -> APIRouter:
    router = APIRouter()

    def repo_or_404(owner: str, name: str) -> str | None:
        full = f"{owner}/{name}"
        return full if full in sim.items and full not in sim.hidden_repos else None

    @router.get("/user")
    def me(request: Request) -> Any:
        person = sim.people[0]
        return {**data.user_json(person, _bases(sim, request)), "name": person.display_name, "email": person.email}

    @router.get("/users/{login}")
    def user(login: str, request: Request) -> Any:
        b = _bases(sim, request)
        if login == data.ORG:
            return data.org_owner_json(b)
        person = sim.person(login)
        if person is None:
            return error(404, "Not Found")
        return {**data.user_json(person, b), "name": person.display_name, "email": person.email}

    @router.get("/orgs/{org}")
    def org(org: str, request: Request) -> Any:
        if org != data.ORG:
            return error(404, "Not Found")
        return data.org_json(_bases(sim, request), len(sim.repos))

    def repo_list(request: Request, per_page: int, page: int) -> Any:
        b = _bases(sim, request)
        rows, headers = _page(request, sim.visible_repos(), per_page, page)
        return JSONResponse([sim.repo_json(r, b) for r in rows], headers=headers)

    @router.get("/orgs/{org}/repos")
    def org_repos(org: str, request: Request, per_page: int = 30, page: int = 1) -> Any:
        return repo_list(request, per_page, page) if org == data.ORG else error(404, "Not Found")

    @router.get("/users/{login}/repos")
    def user_repos(login: str, request: Request, per_page: int = 30, page: int = 1) -> Any:
        if login == data.ORG:
            return repo_list(request, per_page, page)
        return JSONResponse([]) if sim.person(login) else error(404, "Not Found")

    @router.get("/user/repos")
    def my_repos(request: Request, per_page: int = 30, page: int = 1) -> Any:
        return repo_list(request, per_page, page)

    @router.get("/repos/{owner}/{name}")
    def repo(owner: str, name: str, request: Request) -> Any:
        full = repo_or_404(owner, name)
        return sim.repo_json(full, _bases(sim, request)) if full else error(404, "Not Found")

    @router.get("/repos/{owner}/{name}/issues")
    def issues(
        owner: str,
        name: str,
        request: Request,
        state: str = "open",
        since: str | None = None,
        sort: str = "created",
        direction: str = "desc",
        labels: str | None = None,
        per_page: int = 30,
        page: int = 1,
    ) -> Any:
        full = repo_or_404(owner, name)
        if not full:
            return error(404, "Not Found")
        try:
            after = _parse_since(since)
        except ValueError:
            return error(422, "Validation Failed")
        wanted = set(labels.split(",")) if labels else set()
        with sim.lock:
            rows = [
                i
                for i in sim.items[full].values()
                if not i.deleted
                and (state == "all" or i.state == state)
                and (after is None or i.updated_at >= after)
                and wanted <= set(i.labels)
            ]
            rows, headers = _page(request, _sorted(rows, sort, direction), per_page, page)
            b = _bases(sim, request)
            return JSONResponse([sim.issue_json(i, b) for i in rows], headers=headers)

    @router.get("/repos/{owner}/{name}/issues/{number}")
    def issue(owner: str, name: str, number: int, request: Request) -> Any:
        full = repo_or_404(owner, name)
        with sim.lock:
            item = sim.items[full].get(number) if full else None
            if item is None:
                return error(404, "Not Found")
            if item.deleted:
                return error(410, "This issue was deleted")
            return sim.issue_json(item, _bases(sim, request))

    @router.get("/repos/{owner}/{name}/pulls")
    def pulls(
        owner: str,
        name: str,
        request: Request,
        state: str = "open",
        sort: str = "created",
        direction: str | None = None,
        per_page: int = 30,
        page: int = 1,
    ) -> Any:
        full = repo_or_404(owner, name)
        if not full:
            return error(404, "Not Found")
        direction = direction or DEFAULT_ORDER.get(sort, "asc")
        with sim.lock:
            rows = [i for i in sim.items[full].values() if i.is_pull and (state == "all" or i.state == state)]
            rows, headers = _page(request, _sorted(rows, sort, direction), per_page, page)
            b = _bases(sim, request)
            return JSONResponse([sim.pull_json(i, b, full=False) for i in rows], headers=headers)

    @router.get("/repos/{owner}/{name}/pulls/{number}")
    def pull(owner: str, name: str, number: int, request: Request) -> Any:
        full = repo_or_404(owner, name)
        with sim.lock:
            item = sim.items[full].get(number) if full else None
            if item is None or not item.is_pull:
                return error(404, "Not Found")
            return sim.pull_json(item, _bases(sim, request))

    @router.get("/rate_limit")
    def rate_limit() -> Any:
        with sim.lock:
            core = {
                "limit": sim.rate_limit,
                "used": sim.rate_used,
                "remaining": max(sim.rate_limit - sim.rate_used, 0),
                "reset": int(sim.rate_reset + 0.999),
            }
        search = {"limit": 30, "used": 0, "remaining": 30, "reset": core["reset"]}
        return {"resources": {"core": core, "search": search}, "rate": core}

    return router


class IssueChange(BaseModel):
    title: str | None = None
    body: str | None = None
    state: str | None = None
    state_reason: str | None = None
    labels: list[str] | None = None
    assignees: list[str] | None = None


class PullChange(BaseModel):
    title: str | None = None
    body: str | None = None
    state: str | None = None
    merged: bool = False
    push: bool = False


class FaultRate(BaseModel):
    share: float
    faults: list[dict[str, Any]] = []
    seed: int = 0


class NewPull(BaseModel):
    title: str
    head: str
    base: str = "main"
    body: str | None = None
    draft: bool = False


def _admin_routes(sim: GitHubSim) -> APIRouter:
    from opsync_simulators.github import SimError

    router = APIRouter(prefix="/_sim")

    def run(call: Any) -> Any:
        try:
            return call()
        except SimError as exc:
            return error(404, str(exc))

    def queued() -> dict[str, Any]:
        return {"queued": [fault.as_json() for fault in sim.faults.pending()], "paused": sim.faults.paused()}

    @router.post("/faults", status_code=201)
    def faults(fault: dict[str, Any]) -> Any:
        try:
            sim.inject(fault)
        except TypeError as exc:
            return error(400, f"bad fault: {exc}")
        return queued()

    @router.get("/faults")
    def list_faults() -> Any:
        return queued()

    @router.delete("/faults")
    def clear_faults() -> Any:
        sim.faults.clear()
        return queued()

    @router.put("/fault-rate")
    def fault_rate(body: FaultRate) -> Any:
        try:
            sim.faults.set_rate(body.share, [Fault(**kind) for kind in body.faults], body.seed)
        except (TypeError, ValueError) as exc:
            return error(400, f"bad fault rate: {exc}")
        return {"share": body.share, "faults": body.faults, "seed": body.seed}

    @router.post("/faults/resume")
    def resume() -> Any:
        sim.faults.resume()
        return queued()

    @router.put("/webhook-faults")
    def webhook_faults(body: dict[str, Any]) -> Any:
        try:
            sim.set_webhook_faults(WebhookFaults(**body))
        except (TypeError, ValueError) as exc:
            return error(400, f"bad webhook faults: {exc}")
        return {**body, "held": sim.outbox.held()}

    @router.post("/webhook-faults/flush")
    def flush_webhooks() -> Any:
        held = sim.outbox.held()
        sim.flush_webhooks()
        return {"sent": held}

    @router.get("/truth")
    def truth(include_hidden: bool = False) -> Any:
        return sim.truth(include_hidden).as_json()

    @router.post("/repos/{owner}/{name}/archive")
    def archive(owner: str, name: str, archived: bool = True) -> Any:
        return run(lambda: sim.archive_repo(f"{owner}/{name}", archived) or {"archived": archived})

    @router.post("/repos/{owner}/{name}/hide")
    def hide(owner: str, name: str, hidden: bool = True) -> Any:
        return run(lambda: sim.hide_repo(f"{owner}/{name}", hidden) or {"hidden": hidden})

    @router.get("/requests")
    def requests() -> Any:
        with sim.lock:
            return {"total": sum(sim.requests.values()), "by_path": dict(sim.requests)}

    @router.get("/deliveries")
    def deliveries() -> Any:
        with sim.lock:
            return [
                {k: d[k] for k in ("event", "action", "delivery", "status", "error", "fault")} for d in sim.deliveries
            ]

    @router.post("/repos/{owner}/{name}/issues", status_code=201)
    def create_issue(owner: str, name: str, change: IssueChange) -> Any:
        return run(
            lambda: sim.create_issue(
                f"{owner}/{name}",
                change.title or "Untitled",
                body=change.body,
                labels=change.labels or [],
                assignees=change.assignees or [],
            )
        )

    @router.patch("/repos/{owner}/{name}/issues/{number}")
    def update_issue(owner: str, name: str, number: int, change: IssueChange) -> Any:
        return run(lambda: sim.update_issue(f"{owner}/{name}", number, **change.model_dump(exclude_none=True)))

    @router.delete("/repos/{owner}/{name}/issues/{number}")
    def delete_issue(owner: str, name: str, number: int, silent: bool = False) -> Any:
        return run(lambda: sim.delete_issue(f"{owner}/{name}", number, silent) or {"deleted": number})

    @router.post("/repos/{owner}/{name}/pulls", status_code=201)
    def create_pull(owner: str, name: str, new: NewPull) -> Any:
        return run(lambda: sim.create_pull(f"{owner}/{name}", **new.model_dump()))

    @router.patch("/repos/{owner}/{name}/pulls/{number}")
    def update_pull(owner: str, name: str, number: int, change: PullChange) -> Any:
        return run(lambda: sim.update_pull(f"{owner}/{name}", number, **change.model_dump(exclude_none=True)))

    @router.post("/mutate")
    def mutate(n: int = 5, seed: int | None = None) -> Any:
        return {"done": sim.mutate_random(n, random.Random(seed) if seed is not None else None)}

    return router


def create_app(sim: GitHubSim) -> FastAPI:
    app = FastAPI(title="GitHub simulator", openapi_url=None, docs_url=None, redoc_url=None)
    rest = _rest_routes(sim)
    app.include_router(rest)
    app.include_router(rest, prefix=GHES_PREFIX)
    app.include_router(_admin_routes(sim))

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error(404, "Not Found")

    app.add_middleware(Gate, sim=sim)
    return app

"""The GitHub simulator's REST routes: users, the organisation, repositories, issues and pull
requests (GitHub's paging: per_page, page and a Link header), and GET /rate_limit. create_app
serves them at the root and again under /api/v3, as GitHub Enterprise Server does.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request

from opsync_simulators import github_render as render
from opsync_simulators.github_data import ORG, SimItem
from opsync_simulators.github_render import Bases
from opsync_simulators.responses import JSONResponse

if TYPE_CHECKING:
    from opsync_simulators.github import GitHubSim

DOCS = "https://docs.github.com/rest"
GHES_PREFIX = "/api/v3"
DEFAULT_ORDER = {"created": "desc", None: "desc"}  # pulls: desc only for created, else asc


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"message": message, "documentation_url": DOCS, "status": str(status)}, status_code=status, headers=headers
    )


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


def rest_routes(sim: GitHubSim) -> APIRouter:
    router = APIRouter()

    def repo_or_404(owner: str, name: str) -> str | None:
        full = f"{owner}/{name}"
        return full if full in sim.items and full not in sim.hidden_repos else None

    @router.get("/user")
    def me(request: Request) -> Any:
        person = sim.people[0]
        return {**render.user_json(person, _bases(sim, request)), "name": person.display_name, "email": person.email}

    @router.get("/users/{login}")
    def user(login: str, request: Request) -> Any:
        b = _bases(sim, request)
        if login == ORG:
            return render.org_owner_json(b)
        person = sim.person(login)
        if person is None:
            return error(404, "Not Found")
        return {**render.user_json(person, b), "name": person.display_name, "email": person.email}

    @router.get("/orgs/{org}")
    def org(org: str, request: Request) -> Any:
        if org != ORG:
            return error(404, "Not Found")
        return render.org_json(_bases(sim, request), len(sim.repos))

    def repo_list(request: Request, per_page: int, page: int) -> Any:
        b = _bases(sim, request)
        rows, headers = _page(request, sim.visible_repos(), per_page, page)
        return JSONResponse([sim.repo_json(r, b) for r in rows], headers=headers)

    @router.get("/orgs/{org}/repos")
    def org_repos(org: str, request: Request, per_page: int = 30, page: int = 1) -> Any:
        return repo_list(request, per_page, page) if org == ORG else error(404, "Not Found")

    @router.get("/users/{login}/repos")
    def user_repos(login: str, request: Request, per_page: int = 30, page: int = 1) -> Any:
        if login == ORG:
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

"""The GitHub simulator's own /_sim admin routes (the ones every simulator shares are in
admin.py): archive or hide a repository, count requests, create and change issues and pull
requests, make random changes. Not part of GitHub.
"""

from __future__ import annotations

import random
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from opsync_simulators.github import GitHubSim, SimError
from opsync_simulators.github_rest import error


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


class NewPull(BaseModel):
    title: str
    head: str
    base: str = "main"
    body: str | None = None
    draft: bool = False


def github_admin_routes(sim: GitHubSim) -> APIRouter:
    router = APIRouter(prefix="/_sim")

    def run(call: Any) -> Any:
        try:
            return call()
        except SimError as exc:
            return error(404, str(exc))

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


def delivery_json(record: dict[str, Any]) -> dict[str, Any]:
    """A delivery as /_sim/deliveries lists it: what became of it, without headers or body."""
    return {k: record[k] for k in ("event", "action", "delivery", "status", "error", "fault")}

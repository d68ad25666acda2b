"""What the API should show for the simulated tools' records: the shipped mappings' rules, spelt
out here independently of the hub, applied to what the simulators hold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim

PRODUCTS = {
    "payments": ("PAY", ["acme/payments", "acme/ledger"]),
    "checkout": ("CHK", ["acme/checkout"]),
    "growth": ("GRO", ["acme/growth-web"]),
}
PRODUCT_OF = {container: product for product, (project, repos) in PRODUCTS.items() for container in [project, *repos]}
JIRA_KINDS = {"Epic": "epic", "Story": "story", "Task": "task", "Bug": "bug", "Sub-task": "subtask"}
JIRA_CATEGORIES = {
    "To Do": "todo",
    "In Progress": "in_progress",
    "In Review": "in_progress",
    "Done": "done",
    "Won't Do": "cancelled",
}


@dataclass(frozen=True)
class ToolItem:
    """A work item as a tool holds it, with the mappings' rules applied as this module spells them:
    what the API should show for it."""

    key: str
    title: str
    product: str
    kind: str
    status_category: str
    assignee: str | None  # the person's email
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    started_at: datetime | None  # the first move into an in-progress status the tool recorded


def github_kind(item: Any) -> str:
    """The simulator's issues have no issue type: one labelled bug is a bug, any other a task."""
    return "bug" if "bug" in item.labels else "task"


def github_category(item: Any) -> str:
    if item.state == "closed":
        return "cancelled" if item.state_reason == "not_planned" else "done"
    return "in_progress" if item.assignees else "todo"


def jira_started(issue: Any) -> datetime | None:
    """When the issue's changelog first shows it moving into an in-progress status."""
    return next(
        (
            history["created"]
            for history in issue.histories
            for change in history["items"]
            if change["field"] == "status" and JIRA_CATEGORIES[change["toString"]] == "in_progress"
        ),
        None,
    )


def tool_items(jira: JiraSim, github: GitHubSim) -> list[ToolItem]:
    """Every live Jira issue and GitHub issue, as the simulators hold them."""
    jira = [
        ToolItem(
            key=i.key,
            title=i.summary,
            product=PRODUCT_OF[i.project],
            kind=JIRA_KINDS[i.issuetype],
            status_category=JIRA_CATEGORIES[i.status],
            assignee=None if i.assignee is None else jira.people[i.assignee].email,
            created_at=i.created,
            updated_at=i.updated,
            completed_at=i.resolved,
            started_at=jira_started(i),
        )
        for i in jira.issues()
    ]
    github = [
        ToolItem(
            key=f"{i.repo}#{i.number}",
            title=i.title,
            product=PRODUCT_OF[i.repo],
            kind=github_kind(i),
            status_category=github_category(i),
            assignee=github.people[i.assignees[0]].email if i.assignees else None,
            created_at=i.created_at,
            updated_at=i.updated_at,
            completed_at=i.closed_at,
            started_at=None,  # the simulator records no move into progress on GitHub
        )
        for i in (i for i in github.all_items() if not i.is_pull and not i.deleted)
    ]
    return jira + github

"""The Jira simulator's issues: the compact records it holds and their seeded generation.

Issues are kept compact (one SimIssue each) and rendered on request (jira_render.py), so that
20,000 of them generate in well under a second. Their history is dated back from the
simulator's `now`, so that recent weeks always hold finished work, and every status an issue
passed through is in its changelog with its time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from opsync_simulators.clock import to_ms
from opsync_simulators.world import PRODUCTS, SimPerson

HISTORY = timedelta(days=182)  # seeded issues were created in the six months before `now`
SPRINT_LENGTH = timedelta(days=14)
RELEASE_EVERY = timedelta(days=60)
FIRST_ISSUE_ID = 10000
DAY = 86400.0  # seconds

# name -> (id, statusCategory key); the categories are Jira's three fixed ones
STATUSES = {
    "To Do": ("10000", "new"),
    "In Progress": ("3", "indeterminate"),
    "In Review": ("10001", "indeterminate"),
    "Done": ("10002", "done"),
    "Won't Do": ("10003", "done"),
}
PRIORITIES = {"Highest": "1", "High": "2", "Medium": "3", "Low": "4", "Lowest": "5"}
# name -> (id, hierarchyLevel)
ISSUE_TYPES = {
    "Epic": ("10000", 1),
    "Story": ("10001", 0),
    "Task": ("10002", 0),
    "Bug": ("10003", 0),
    "Sub-task": ("10004", -1),
}

VERBS = ["Add", "Fix", "Refactor", "Support", "Improve", "Remove", "Migrate", "Document", "Speed up"]
OBJECTS = [
    "refund flow",
    "card tokenisation",
    "3-D Secure challenge",
    "cart totals",
    "coupon codes",
    "address form",
    "onboarding emails",
    "referral links",
    "A/B test framework",
    "invoice PDF",
    "currency rounding",
    "webhook retries",
    "checkout button",
    "signup funnel",
    "tax rates",
]
LABELS = ["backend", "frontend", "tech-debt", "customer-request", "security", "performance", "ux"]
EPIC_THEMES = [
    "Q1 reliability",
    "New payment methods",
    "One-page checkout",
    "Self-serve onboarding",
    "Observability",
    "EU expansion",
    "Mobile parity",
]


@dataclass
class SimProject:
    id: str
    key: str
    name: str
    rank: int  # position in key order, for ORDER BY key
    sprints: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SimIssue:
    id: int
    project: str
    number: int
    issuetype: str
    summary: str
    description: list[str] | None  # paragraphs; rendered as wiki markup (v2) or ADF (v3)
    status: str
    priority: str
    assignee: int | None  # index into the sim's people
    reporter: int
    labels: list[str]
    story_points: float | None
    sprint: dict[str, Any] | None
    fix_version: dict[str, Any] | None
    duedate: date | None
    created: datetime
    updated: datetime
    resolved: datetime | None
    parent: int | None  # issue id of the epic or story above it
    # oldest first: {"id", "author" (index into people), "created", "items"}, seeded or from mutations
    histories: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.project}-{self.number}"


def schedule_start(now: datetime) -> datetime:
    """When the seeded history begins: the first sprint starts that morning."""
    first = now - HISTORY
    return first.replace(hour=9, minute=0, second=0, microsecond=0)


def make_projects(keys: tuple[str, ...], now: datetime) -> dict[str, SimProject]:
    """Projects with fortnightly sprints up to the active one and a release every two months."""
    names = {product.jira_project: product.name for product in PRODUCTS}
    start = schedule_start(now)
    projects: dict[str, SimProject] = {}
    for index, key in enumerate(keys):
        project = SimProject(
            id=str(10000 + index), key=key, name=names.get(key, key.title()), rank=sorted(keys).index(key)
        )
        board = index + 1
        for n in range((now - start) // SPRINT_LENGTH + 1):
            begin = start + n * SPRINT_LENGTH
            last = begin + SPRINT_LENGTH > now
            project.sprints.append(
                {
                    "id": index * 100 + n + 1,
                    "name": f"{key} Sprint {n + 1}",
                    "state": "active" if last else "closed",
                    "boardId": board,
                    "goal": "",
                    "startDate": begin.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    "endDate": (begin + SPRINT_LENGTH).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    **({} if last else {"completeDate": (begin + SPRINT_LENGTH).strftime("%Y-%m-%dT%H:%M:%S.000Z")}),
                }
            )
        for n in range(HISTORY // RELEASE_EVERY + 1):
            released = start + RELEASE_EVERY * (n + 1)
            project.versions.append(
                {
                    "id": str(10000 + index * 50 + n),
                    "name": f"{1 + n // 4}.{n % 4}",
                    "archived": False,
                    "released": released < now,
                    "releaseDate": released.date().isoformat(),
                }
            )
        projects[key] = project
    return projects


def plan_workflow(kind: str, draw: Callable[[], float]) -> list[tuple[float, str]]:
    """The statuses an issue moves to after To Do, each with its time in seconds after the issue
    was created: picked up after a wait (months, for the backlog's share), worked on for hours
    to weeks (epics for months), often reviewed, and mostly done; a few are dropped, and some
    small fixes go straight from To Do to Done. Draws the same count of numbers every time."""
    backlog = draw() < 0.35
    wait = (20 + draw() * 280) * DAY if backlog else (0.02 + draw() ** 2 * 14) * DAY
    work = (14 + draw() * 60) * DAY if kind == "Epic" else (0.1 + draw() ** 1.5 * 12) * DAY
    review = (0.05 + draw() * 3) * DAY if kind != "Epic" and draw() < 0.6 else None
    fate = draw()
    if fate < 0.05:
        return [(wait, "Won't Do")]
    if fate < 0.08:
        return [(wait, "In Progress"), (wait + work / 2, "Won't Do")]
    if fate < 0.15 and kind != "Epic":
        return [(wait, "Done")]
    moves = [(wait, "In Progress")]
    if review is not None:
        moves.append((wait + work, "In Review"))
        work += review
    moves.append((wait + work, "Done"))
    return moves


def status_item(old: str, new: str) -> dict[str, Any]:
    """A changelog item for a move between two statuses, as Jira records it."""
    return {
        "field": "status",
        "fieldtype": "jira",
        "fieldId": "status",
        "from": STATUSES[old][0],
        "fromString": old,
        "to": STATUSES[new][0],
        "toString": new,
    }


def generate_issues(
    count: int, seed: int, projects: dict[str, SimProject], people: list[SimPerson], now: datetime
) -> list[SimIssue]:
    """count issues spread over projects, created over HISTORY up to now; ids and created times
    grow together. What an issue is (project, kind, text, people) comes from one seeded stream
    and when things happened to it from another, so a seed names the same issues whatever now is."""
    rng = random.Random(seed)
    draw = rng.random  # one primitive, indexed into lists: 20,000 issues in about a second
    clock = random.Random(f"{seed}:timeline").random
    pick = lambda options: options[int(draw() * len(options))]  # noqa: E731
    keys = list(projects)
    numbers = dict.fromkeys(keys, 0)
    epics: dict[str, list[int]] = {key: [] for key in keys}
    stories: dict[str, list[int]] = {key: [] for key in keys}
    priorities = ["Highest"] + ["High"] * 3 + ["Medium"] * 8 + ["Low"] * 3 + ["Lowest"]
    label_sets = [
        [],
        [],
        [],
        *([label] for label in LABELS),
        ["backend", "tech-debt"],
        ["frontend", "ux"],
        ["customer-request", "performance"],
    ]
    issues: list[SimIssue] = []
    now = to_ms(now)
    start = schedule_start(now)
    first = now - HISTORY
    step = HISTORY.total_seconds() / max(count, 1)
    for n in range(count):
        project = pick(keys)
        numbers[project] += 1
        issue_id = FIRST_ISSUE_ID + n
        roll = draw()
        if roll < 0.05 or not epics[project]:
            kind = "Epic"
        elif roll < 0.45:
            kind = "Story"
        elif roll < 0.70:
            kind = "Task"
        elif roll < 0.90 or not stories[project]:
            kind = "Bug"
        else:
            kind = "Sub-task"
        parent = None
        if kind == "Sub-task":
            parent = pick(stories[project][-30:])
        elif (kind in ("Story", "Task") and draw() < 0.7) or (kind == "Bug" and draw() < 0.3):
            parent = pick(epics[project][-8:])
        in_sprint = kind in ("Story", "Task", "Bug") and draw() < 0.7
        released = draw() < 0.6  # if it gets done
        title = pick(EPIC_THEMES) if kind == "Epic" else f"{pick(VERBS)} {pick(OBJECTS)}"
        assignee = None if draw() < 0.15 else int(draw() * len(people))
        reporter = int(draw() * len(people))

        created = to_ms(first + timedelta(seconds=step * (n + clock())))
        status, histories = "To Do", []
        for seconds, target in plan_workflow(kind, clock):
            moment = to_ms(created + timedelta(seconds=seconds))
            if moment >= now:
                break
            histories.append(
                {
                    "id": str(issue_id * 10 + len(histories) + 1),
                    "author": reporter if assignee is None else assignee,
                    "created": moment,
                    "items": [status_item(status, target)],
                }
            )
            status = target
        last = histories[-1]["created"] if histories else created
        # later edits and comments move `updated` on, within days (weeks for untouched issues)
        horizon = min(now - last, timedelta(days=30 if not histories else 5))
        updated = to_ms(last + horizon * clock() ** 2)
        resolved = last if STATUSES[status][1] == "done" else None
        sprints = projects[project].sprints
        active = max(0, min(int((last - start) // SPRINT_LENGTH), len(sprints) - 1))
        versions = projects[project].versions
        version = (
            versions[max(0, min(int((resolved - start) // RELEASE_EVERY), len(versions) - 1))]
            if resolved is not None and status == "Done" and released
            else None
        )
        issue = SimIssue(
            id=issue_id,
            project=project,
            number=numbers[project],
            issuetype=kind,
            summary=title,
            description=None
            if draw() < 0.1
            else [
                f"As a customer I want to {title.lower()} so that paying is painless.",
                f"Acceptance: works for {pick(['cards', 'wallets', 'bank transfers'])}.",
            ],
            status=status,
            priority=pick(priorities),
            assignee=assignee,
            reporter=reporter,
            labels=list(pick(label_sets)),
            story_points=pick([1.0, 2.0, 3.0, 5.0, 8.0, 13.0]) if kind == "Story" and draw() < 0.8 else None,
            sprint=sprints[active] if in_sprint else None,
            fix_version=version,
            duedate=(created + timedelta(days=7 + int(draw() * 80))).date() if draw() < 0.3 else None,
            created=created,
            updated=updated,
            resolved=resolved,
            parent=parent,
            histories=histories,
        )
        issues.append(issue)
        if kind == "Epic":
            epics[project].append(issue_id)
        elif kind == "Story":
            stories[project].append(issue_id)
    return issues

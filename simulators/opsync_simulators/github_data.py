"""The GitHub simulator's records: compact state and its seeded generation (rendered to
GitHub's JSON shapes by github_render.py).

Seeded items are dated back from the simulator's `now`: opened over the last six months, pull
requests merged hours to days after they were opened, issues closed days to weeks after.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opsync_simulators.world import PRODUCTS

ORG = "acme"
ORG_ID = 9000
FOUNDED = datetime(2023, 3, 6, tzinfo=UTC)  # the organisation, its repositories and milestones
HISTORY = timedelta(days=182)  # seeded items were opened in the six months before `now`

LABELS: dict[str, tuple[int, str, str]] = {
    "bug": (7001, "d73a4a", "Something isn't working"),
    "enhancement": (7002, "a2eeef", "New feature or request"),
    "documentation": (7003, "0075ca", "Improvements or additions to documentation"),
    "tech-debt": (7004, "fbca04", "Cleanup we owe ourselves"),
    "performance": (7005, "5319e7", "Faster or leaner"),
    "security": (7006, "b60205", "Security relevant"),
}
MILESTONES = ("v1.0", "v1.1", "v2.0")
TOPICS = (
    "retry refunds",
    "add audit log",
    "fix rounding in totals",
    "speed up checkout page",
    "migrate to new ledger schema",
    "handle expired cards",
    "add idempotency keys",
    "clean up feature flags",
    "improve error messages",
    "paginate invoices",
    "support partial captures",
    "log webhook latency",
    "split settlement job",
)


@dataclass
class SimItem:
    """An issue, or a pull request (pull_id set) with its issue side."""

    repo: str
    number: int
    issue_id: int
    title: str
    body: str | None
    author: int  # index into the people list
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    assignees: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    milestone: int | None = None  # milestone number in the repo
    comments: int = 0
    deleted: bool = False
    pull_id: int | None = None
    head_ref: str = ""
    base_ref: str = "main"
    head_sha: str = ""
    draft: bool = False
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    reviewers: list[int] = field(default_factory=list)
    additions: int = 0
    deletions: int = 0
    changed_files: int = 0
    commits: int = 1

    @property
    def is_pull(self) -> bool:
        return self.pull_id is not None


def sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


def jira_project(repo: str) -> str | None:
    return next((p.jira_project for p in PRODUCTS if repo in p.github_repos), None)


def slug(text: str) -> str:
    return "-".join(text.lower().split())


def generate(
    count: int, seed: int, repos: tuple[str, ...], jira_keys: dict[str, int], people: int, now: datetime
) -> list[SimItem]:
    """count issues and pull requests, about half each, numbered per repo in creation order and
    opened over HISTORY up to now. What an item is comes from one seeded stream and when things
    happened to it from another, so a seed names the same items whatever now is."""
    rng = random.Random(seed)
    clock = random.Random(f"{seed}:timeline")
    now = now.replace(microsecond=0)
    numbers = dict.fromkeys(repos, 0)
    step = HISTORY / max(count, 1)
    items = []
    for k in range(count):
        repo = repos[k % len(repos)]
        numbers[repo] += 1
        created = (now - HISTORY + step * (k + clock.random())).replace(microsecond=0)
        topic = rng.choice(TOPICS)
        project = jira_project(repo)
        key = f"{project}-{rng.randint(1, jira_keys[project])}" if jira_keys.get(project) else None
        item = SimItem(
            repo=repo,
            number=numbers[repo],
            issue_id=0,
            title=topic.capitalize(),
            body=None,
            author=rng.randrange(people),
            created_at=created,
            updated_at=created,
            comments=rng.randint(0, 12),
            assignees=rng.sample(range(people), rng.choice((0, 1, 1, 1, 2))),
            labels=rng.sample(sorted(LABELS), rng.choice((0, 1, 1, 2))),
            milestone=rng.choice((None, None, 1, 2, 3)),
        )
        if rng.random() < 0.5:
            fate, reason = _make_pull(item, rng, topic, key, people), None
        else:
            item.body = rng.choice((None, "", f"We should {topic}.", f"Steps:\n1. {topic}\n2. verify"))
            fate = "closed" if rng.random() < 0.4 else None
            reason = rng.choice(("completed", "completed", "not_planned"))
        _settle(item, fate, reason, clock, now)
        items.append(item)
    return items


def _make_pull(item: SimItem, rng: random.Random, topic: str, key: str | None, people: int) -> str | None:
    """Make item a pull request; what becomes of it: "merged", "closed", or None (left open)."""
    named = key is not None and rng.random() < 0.7
    item.title = f"{key}: {topic}" if named else topic.capitalize()
    kind = rng.choice(("feature", "fix", "chore"))
    item.head_ref = f"{kind}/{key}-{slug(topic)}" if key and rng.random() < 0.6 else f"{kind}/{slug(topic)}"
    item.body = rng.choice((None, f"Implements {key}" if key else None, f"This PR will {topic}.", ""))
    item.head_sha = sha(item.repo, item.number, "head")
    item.draft = rng.random() < 0.1
    item.reviewers = rng.sample(range(people), rng.choice((0, 1, 2)))
    item.additions, item.deletions = rng.randint(1, 800), rng.randint(0, 400)
    item.changed_files, item.commits = rng.randint(1, 30), rng.randint(1, 12)
    roll = rng.random()
    return "merged" if roll < 0.55 else "closed" if roll < 0.7 else None


def _settle(item: SimItem, fate: str | None, reason: str | None, clock: random.Random, now: datetime) -> None:
    """Date what becomes of item: a pull request is merged hours to days after it was opened
    (median 18 hours) or abandoned after days, an issue closed after days to weeks. What would
    come after now has not happened yet: the item is still open. Comments later on move
    updated_at, within days of the close (weeks for an open item)."""
    typical_hours = 18.0 if fate == "merged" else 96.0 if item.is_pull else 144.0
    hours = min(clock.lognormvariate(math.log(typical_hours), 1.1), 24.0 * 60)
    done_at = item.created_at + timedelta(seconds=int(max(hours, 0.3) * 3600))
    talk = clock.random()
    if fate is not None and done_at < now:
        _close(item, done_at, reason)
        if fate == "merged":
            item.merged_at = done_at
            item.merge_commit_sha = sha(item.repo, item.number, "merge")
    last = item.closed_at or item.created_at
    horizon = min(now - last, timedelta(days=2 if item.closed_at else 20))
    item.updated_at = (last + horizon * talk**3).replace(microsecond=0)


def _close(item: SimItem, at: datetime, reason: str | None) -> None:
    item.state, item.closed_at, item.state_reason = "closed", at, reason
    item.draft = False

"""The GitHub simulator's records: compact state, seeded generation, and rendering to
the JSON shapes GitHub's REST API and webhooks use.

State holds no URLs: every URL is built at render time from the base URL the client
used, so the same records serve http://127.0.0.1:PORT and .../api/v3 alike. Seeded items are
dated back from the simulator's `now`: opened over the last six months, pull requests merged
hours to days after they were opened, issues closed days to weeks after.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from opsync_simulators.world import PRODUCTS, SimPerson

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


def iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def node_id(kind: str, number: int) -> str:
    # GitHub's legacy global ids: base64 of "<len(kind):02>:<Kind><id>"
    return base64.b64encode(f"{len(kind):02d}:{kind}{number}".encode()).decode()


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


# --- rendering ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bases:
    """Where URLs point: the API root (maybe .../api/v3) and the web root."""

    api: str
    web: str


@lru_cache(maxsize=4096)  # rendered often, identical each time; callers never mutate
def user_json(person: SimPerson, b: Bases) -> dict[str, Any]:
    u = f"{b.api}/users/{person.login}"
    return {
        "login": person.login,
        "id": person.github_id,
        "node_id": node_id("User", person.github_id),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{person.github_id}?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": f"{b.web}/{person.login}",
        "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}",
        "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs",
        "repos_url": f"{u}/repos",
        "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events",
        "type": "User",
        "user_view_type": "public",
        "site_admin": False,
    }


@lru_cache(maxsize=4096)  # rendered often, identical each time; callers never mutate
def org_owner_json(b: Bases) -> dict[str, Any]:
    u = f"{b.api}/users/{ORG}"
    return {
        "login": ORG,
        "id": ORG_ID,
        "node_id": node_id("Organization", ORG_ID),
        "avatar_url": f"https://avatars.githubusercontent.com/u/{ORG_ID}?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": f"{b.web}/{ORG}",
        "repos_url": f"{u}/repos",
        "events_url": f"{u}/events{{/privacy}}",
        "type": "Organization",
        "site_admin": False,
    }


def org_json(b: Bases, repo_count: int) -> dict[str, Any]:
    u = f"{b.api}/orgs/{ORG}"
    return {
        "login": ORG,
        "id": ORG_ID,
        "node_id": node_id("Organization", ORG_ID),
        "url": u,
        "repos_url": f"{u}/repos",
        "events_url": f"{u}/events",
        "hooks_url": f"{u}/hooks",
        "issues_url": f"{u}/issues",
        "members_url": f"{u}/members{{/member}}",
        "public_members_url": f"{u}/public_members{{/member}}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{ORG_ID}?v=4",
        "description": "Acme Inc.",
        "name": "Acme",
        "is_verified": False,
        "public_repos": repo_count,
        "followers": 0,
        "following": 0,
        "html_url": f"{b.web}/{ORG}",
        "created_at": iso(FOUNDED),
        "updated_at": iso(FOUNDED),
        "type": "Organization",
    }


@lru_cache(maxsize=4096)  # rendered often, identical each time; callers never mutate
def repo_json(full_name: str, repo_id: int, b: Bases) -> dict[str, Any]:
    u = f"{b.api}/repos/{full_name}"
    return {
        "id": repo_id,
        "node_id": node_id("Repository", repo_id),
        "name": full_name.split("/")[1],
        "full_name": full_name,
        "private": True,
        "owner": org_owner_json(b),
        "html_url": f"{b.web}/{full_name}",
        "description": None,
        "fork": False,
        "url": u,
        "issues_url": f"{u}/issues{{/number}}",
        "pulls_url": f"{u}/pulls{{/number}}",
        "labels_url": f"{u}/labels{{/name}}",
        "hooks_url": f"{u}/hooks",
        "created_at": iso(FOUNDED),
        "updated_at": iso(FOUNDED),
        "pushed_at": iso(FOUNDED),
        "default_branch": "main",
        "visibility": "private",
        "has_issues": True,
        "archived": False,
        "disabled": False,
        "open_issues_count": 0,
    }


@lru_cache(maxsize=4096)  # rendered often, identical each time; callers never mutate
def label_json(name: str, repo: str, b: Bases) -> dict[str, Any]:
    label_id, color, description = LABELS.get(name, (7999, "ededed", None))
    return {
        "id": label_id,
        "node_id": node_id("Label", label_id),
        "url": f"{b.api}/repos/{repo}/labels/{name}",
        "name": name,
        "color": color,
        "default": name in ("bug", "enhancement", "documentation"),
        "description": description,
    }


def milestone_json(number: int, repo: str, creator: dict[str, Any], b: Bases) -> dict[str, Any]:
    mid = 8000 + number
    return {
        "url": f"{b.api}/repos/{repo}/milestones/{number}",
        "html_url": f"{b.web}/{repo}/milestone/{number}",
        "labels_url": f"{b.api}/repos/{repo}/milestones/{number}/labels",
        "id": mid,
        "node_id": node_id("Milestone", mid),
        "number": number,
        "title": MILESTONES[(number - 1) % len(MILESTONES)],
        "description": None,
        "creator": creator,
        "open_issues": 0,
        "closed_issues": 0,
        "state": "open",
        "created_at": iso(FOUNDED),
        "updated_at": iso(FOUNDED),
        "due_on": None,
        "closed_at": None,
    }


def _common(item: SimItem, people: list[SimPerson], b: Bases) -> dict[str, Any]:
    """Fields the issue and the pull request representations share."""
    assignees = [user_json(people[i], b) for i in item.assignees]
    author = user_json(people[item.author], b)
    return {
        "title": item.title,
        "user": author,
        "state": item.state,
        "locked": False,
        "labels": [label_json(n, item.repo, b) for n in item.labels],
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "milestone": milestone_json(item.milestone, item.repo, author, b) if item.milestone else None,
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "closed_at": iso(item.closed_at),
        "author_association": "MEMBER",
        "active_lock_reason": None,
        "body": item.body,
    }


def issue_json(item: SimItem, people: list[SimPerson], b: Bases) -> dict[str, Any]:
    u = f"{b.api}/repos/{item.repo}/issues/{item.number}"
    data = {
        "url": u,
        "repository_url": f"{b.api}/repos/{item.repo}",
        "labels_url": f"{u}/labels{{/name}}",
        "comments_url": f"{u}/comments",
        "events_url": f"{u}/events",
        "html_url": f"{b.web}/{item.repo}/{'pull' if item.is_pull else 'issues'}/{item.number}",
        "id": item.issue_id,
        "node_id": node_id("Issue", item.issue_id),
        "number": item.number,
        **_common(item, people, b),
        "comments": item.comments,
        "reactions": {
            "url": f"{u}/reactions",
            "total_count": 0,
            "+1": 0,
            "-1": 0,
            "laugh": 0,
            "hooray": 0,
            "confused": 0,
            "heart": 0,
            "rocket": 0,
            "eyes": 0,
        },
        "timeline_url": f"{u}/timeline",
        "performed_via_github_app": None,
        "state_reason": item.state_reason,
    }
    if item.is_pull:
        web = f"{b.web}/{item.repo}/pull/{item.number}"
        data["draft"] = item.draft
        data["pull_request"] = {
            "url": f"{b.api}/repos/{item.repo}/pulls/{item.number}",
            "html_url": web,
            "diff_url": f"{web}.diff",
            "patch_url": f"{web}.patch",
            "merged_at": iso(item.merged_at),
        }
    return data


def pull_json(item: SimItem, people: list[SimPerson], b: Bases, repo: dict[str, Any], full: bool) -> dict[str, Any]:
    """A pull request; full adds what only GET /pulls/{number} and webhooks carry."""
    u = f"{b.api}/repos/{item.repo}/pulls/{item.number}"
    issue_u = f"{b.api}/repos/{item.repo}/issues/{item.number}"
    web = f"{b.web}/{item.repo}/pull/{item.number}"
    owner = org_owner_json(b)
    data: dict[str, Any] = {
        "url": u,
        "id": item.pull_id,
        "node_id": node_id("PullRequest", item.pull_id or 0),
        "html_url": web,
        "diff_url": f"{web}.diff",
        "patch_url": f"{web}.patch",
        "issue_url": issue_u,
        "number": item.number,
        **_common(item, people, b),
        "merged_at": iso(item.merged_at),
        "merge_commit_sha": item.merge_commit_sha,
        "requested_reviewers": [user_json(people[i], b) for i in item.reviewers],
        "requested_teams": [],
        "commits_url": f"{u}/commits",
        "review_comments_url": f"{u}/comments",
        "comments_url": f"{issue_u}/comments",
        "statuses_url": f"{b.api}/repos/{item.repo}/statuses/{item.head_sha}",
        "head": {
            "label": f"{ORG}:{item.head_ref}",
            "ref": item.head_ref,
            "sha": item.head_sha,
            "user": owner,
            "repo": repo,
        },
        "base": {
            "label": f"{ORG}:{item.base_ref}",
            "ref": item.base_ref,
            "sha": sha(item.repo, item.base_ref),
            "user": owner,
            "repo": repo,
        },
        "_links": {
            "self": {"href": u},
            "html": {"href": web},
            "issue": {"href": issue_u},
            "comments": {"href": f"{issue_u}/comments"},
            "commits": {"href": f"{u}/commits"},
        },
        "auto_merge": None,
        "draft": item.draft,
    }
    if full:
        merged = item.merged_at is not None
        data.update(
            {
                "merged": merged,
                "mergeable": None if merged else True,
                "rebaseable": None,
                "mergeable_state": "unknown" if merged else "clean",
                "merged_by": user_json(people[item.author], b) if merged else None,
                "comments": item.comments,
                "review_comments": 0,
                "maintainer_can_modify": False,
                "commits": item.commits,
                "additions": item.additions,
                "deletions": item.deletions,
                "changed_files": item.changed_files,
            }
        )
    return data

"""How the GitHub simulator's records look: in GitHub's REST API (users, the organisation,
repositories, labels, milestones, issues and pull requests), in its webhooks' payloads, and
as the truth a hub's view is compared with.

State holds no URLs: every URL is built at render time from the base URL the client used
(Bases), so the same records serve http://127.0.0.1:PORT and .../api/v3 alike.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from opsync_simulators.github_data import FOUNDED, LABELS, MILESTONES, ORG, ORG_ID, SimItem, sha
from opsync_simulators.truth import RecordId, Truth, TruthRecord
from opsync_simulators.world import SimPerson


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds")[:19] + "Z" if moment else None  # less any offset: UTC


def node_id(kind: str, number: int) -> str:
    # GitHub's legacy global ids: base64 of "<len(kind):02>:<Kind><id>"
    return base64.b64encode(f"{len(kind):02d}:{kind}{number}".encode()).decode()


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


# the organisation's fields a webhook payload carries (fewer than GET /orgs/{org} shows)
ORG_IN_EVENTS = (
    "login",
    "id",
    "node_id",
    "url",
    "repos_url",
    "events_url",
    "hooks_url",
    "issues_url",
    "members_url",
    "public_members_url",
    "avatar_url",
    "description",
)


def event_json(
    action: str,
    item: SimItem,
    people: list[SimPerson],
    b: Bases,
    repository: dict[str, Any],
    repo_count: int,
    **extra: Any,
) -> dict[str, Any]:
    """The payload of an `issues` event about an issue, or of a `pull_request` event about a
    pull request: the action, the item (and extras such as changes), then the repository, the
    organisation and the sender (the simulator's first person)."""
    if item.is_pull:
        subject = {"number": item.number, "pull_request": pull_json(item, people, b, repository, True)}
    else:
        subject = {"issue": issue_json(item, people, b)}
    org = org_json(b, repo_count)
    return {
        "action": action,
        **subject,
        **extra,
        "repository": repository,
        "organization": {k: org[k] for k in ORG_IN_EVENTS},
        "sender": user_json(people[0], b),
    }


def truth(items: list[SimItem]) -> Truth:
    """Every live issue and pull request among items as GitHub lists them (a pull request's
    state is merged, closed or open), and the ids of the deleted issues."""
    records: dict[RecordId, TruthRecord] = {}
    deleted: set[RecordId] = set()
    for item in items:
        if item.is_pull:
            record_type, record_id = "pull_request", str(item.pull_id)
            state = "merged" if item.merged_at else item.state
        else:
            record_type, record_id, state = "issue", str(item.issue_id), item.state
        if item.deleted:
            deleted.add((record_type, record_id))
            continue
        records[(record_type, record_id)] = TruthRecord(
            record_type, record_id, f"{item.repo}#{item.number}", item.repo, item.title, state, item.updated_at
        )
    return Truth(records, frozenset(deleted))

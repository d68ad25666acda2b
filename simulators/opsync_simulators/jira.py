"""A fake Jira Cloud: seeded issues, search/jql paging, mutations that send real webhooks, faults.

JiraSim holds the state behind a lock, because tests mutate it from their own thread while
uvicorn serves it from another. Edits to an issue's fields are applied in jira_changes.py,
issues rendered in jira_render.py and webhooks sent by jira_webhooks.py; the HTTP surface
lives in jira_app.py.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
import threading
from datetime import UTC, datetime
from typing import Any

from opsync_simulators import jira_data as data
from opsync_simulators.clock import Clock, to_ms
from opsync_simulators.faults import Fault, Faults
from opsync_simulators.jira_changes import apply_changes
from opsync_simulators.jira_data import SimIssue
from opsync_simulators.jira_jql import JqlError, parse, sort_key
from opsync_simulators.jira_render import render_issue
from opsync_simulators.jira_webhooks import Delivery, WebhookSender, webhook_body
from opsync_simulators.latency import checked_latency
from opsync_simulators.outbox import WebhookFaults
from opsync_simulators.ratelimit import RequestBudget
from opsync_simulators.truth import Truth, TruthRecord
from opsync_simulators.world import SimPerson, people


class NotFound(LookupError):
    pass


class JiraSim:
    def __init__(
        self,
        issues: int = 200,
        seed: int = 1,
        projects: tuple[str, ...] = ("PAY", "CHK", "GRO"),
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        credentials: tuple[str, str] | None = None,
        site_url: str = "https://acme.atlassian.net",
        now: datetime | None = None,
        latency_ms: float = 0.0,
        rate_limit: int | None = None,
        rate_window_seconds: float = 60.0,
    ) -> None:
        """now: the moment the seeded history leads up to (default: the current UTC time); pin
        it for data that is the same on every run. Changes made later happen on the wall clock.
        latency_ms: added to every API answer, as a remote Jira's round trip (latency.py).
        rate_limit: API requests each token may make per rate_window_seconds (None: no limit);
        past it, 429 with Jira Cloud's headers (ratelimit.py)."""
        self.webhook_url = webhook_url  # None: no webhooks; a test may point it at a hub later
        self.credentials = credentials  # None: any non-empty email and token
        self.site_url = site_url  # the base of `self` links in webhook bodies
        self.people: list[SimPerson] = people()
        seeded_until = to_ms((now or datetime.now(UTC)).astimezone(UTC))
        self.projects = data.make_projects(tuple(key.upper() for key in projects), seeded_until)
        self._rank = {key: project.rank for key, project in self.projects.items()}
        self._lock = threading.RLock()
        generated = data.generate_issues(issues, seed, self.projects, self.people, seeded_until)
        self._issues: dict[int, SimIssue] = {issue.id: issue for issue in generated}
        self._numbers = {key: 0 for key in self.projects}
        for issue in generated:
            self._numbers[issue.project] = max(self._numbers[issue.project], issue.number)
        self._next_id = data.FIRST_ISSUE_ID + issues
        # changelog ids are unique across issues, as Jira's are; above every seeded one
        self._next_history_id = self._next_id * 10
        self._clock = Clock(max((issue.updated for issue in generated), default=seeded_until))
        self._deleted: dict[int, SimIssue] = {}
        # search/jql's sorted matches per query, kept until an issue changes: a backfill asks
        # for page after page of one query, and sorting every issue for each page would make
        # the simulator's cost, not the client's, what a benchmark measures
        self._listings: dict[tuple[Any, ...], list[tuple[tuple[int, ...], int]]] = {}
        self.faults = Faults()
        self.latency_ms = checked_latency(latency_ms)
        self.budget = RequestBudget(rate_limit, rate_window_seconds) if rate_limit is not None else None
        self.webhooks = WebhookSender(webhook_secret)
        self.api_requests = 0  # counted by the app; lets tests assert request economy
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from opsync_simulators.jira_app import create_app

            self._app = create_app(self)
        return self._app

    # --- reading -------------------------------------------------------------------------

    def now(self) -> datetime:
        """Wall-clock time to the millisecond, strictly increasing, so every change sorts last."""
        return self._clock.now()

    def issue_by_id(self, issue_id: int) -> SimIssue | None:
        return self._issues.get(issue_id)

    def find(self, id_or_key: str | int) -> SimIssue:
        text = str(id_or_key).upper()
        with self._lock:
            if text.isdigit() and int(text) in self._issues:
                return self._issues[int(text)]
            for issue in self._issues.values():
                if issue.key == text:
                    return issue
        raise NotFound(f"Issue {id_or_key} does not exist")

    def key_numbers(self) -> dict[str, int]:
        """Each project's highest issue number: which Jira keys exist (for PRs that name them)."""
        with self._lock:
            return dict(self._numbers)

    def issues(self) -> list[SimIssue]:
        """Every live issue, as the simulator holds it."""
        with self._lock:
            return list(self._issues.values())

    def ids(self) -> set[str]:
        with self._lock:
            return {str(issue_id) for issue_id in self._issues}

    def truth(self) -> Truth:
        """Every live issue as Jira lists it, and the ids of the issues deleted."""
        with self._lock:
            records = {
                ("issue", str(issue.id)): TruthRecord(
                    "issue", str(issue.id), issue.key, issue.project, issue.summary, issue.status, issue.updated
                )
                for issue in self._issues.values()
            }
            return Truth(records, frozenset(("issue", str(issue_id)) for issue_id in self._deleted))

    def render(
        self,
        issue: SimIssue,
        version: str = "3",
        base: str | None = None,
        fields: set[str] | None = None,
        expand: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, Any]:
        with self._lock:
            return render_issue(issue, self, version, base or self.site_url, fields, set(expand))

    def search(
        self,
        jql: str,
        token: str | None,
        limit: int,
        fields: set[str] | None,
        expand: set[str],
        version: str,
        base: str,
    ) -> dict[str, Any]:
        """One page of search/jql; the token names the last issue's sort key (keyset paging),
        so issues changed mid-listing are seen again later rather than skipped."""
        query = parse(jql, set(self.projects), self.now())
        after = decode_token(token) if token else None
        with self._lock:
            matched = self._listings.get(listing := (jql, tuple(query.dates)))
            if matched is None:
                if len(self._listings) >= 64:
                    self._listings.clear()
                matched = self._listings[listing] = sorted(
                    (sort_key(query, issue, self._rank), issue.id)
                    for issue in self._issues.values()
                    if query.matches(issue)
                )
            start = bisect.bisect_right(matched, (after, float("inf"))) if after else 0
            page = matched[start : start + limit]
            body: dict[str, Any] = {
                "issues": [
                    render_issue(self._issues[issue_id], self, version, base, fields, expand, in_search=True)
                    for _, issue_id in page
                ]
            }
        body["isLast"] = start + limit >= len(matched)
        if not body["isLast"]:
            body["nextPageToken"] = encode_token(page[-1][0])
        return body

    # --- faults --------------------------------------------------------------------------

    def inject(self, fault: Fault | None = None, **kwargs: Any) -> None:
        """Make the next API requests fail: sim.inject(status=429, retry_after=1, count=2);
        match and after aim at some requests only (see faults.Fault)."""
        self.faults.inject(fault or Fault(**kwargs))

    def take_fault(self, target: str = "") -> Fault | None:
        return self.faults.take(target)

    # --- mutations -----------------------------------------------------------------------

    def create_issue(
        self, project: str, summary: str = "New issue", issuetype: str = "Task", **changes: Any
    ) -> dict[str, Any]:
        """Create an issue (fields as update_issue takes them, plus parent) and send
        jira:issue_created. Returns the issue as REST v3 shows it."""
        project = project.upper()
        if project not in self.projects:
            raise ValueError(f"project {project} does not exist; have {sorted(self.projects)}")
        parent = changes.pop("parent", None)
        with self._lock:
            at = self.now()
            self._numbers[project] += 1
            issue = SimIssue(
                id=self._next_id,
                project=project,
                number=self._numbers[project],
                issuetype="Task",
                summary=summary,
                description=None,
                status="To Do",
                priority="Medium",
                assignee=None,
                reporter=0,
                labels=[],
                story_points=None,
                sprint=None,
                fix_version=None,
                duedate=None,
                created=at,
                updated=at,
                resolved=None,
                parent=self.find(parent).id if parent is not None else None,
            )
            self._next_id += 1
            apply_changes(issue, {"issuetype": issuetype, **changes}, self.people, at)
            issue.histories.clear()  # a new issue has no history yet
            self._issues[issue.id] = issue
            self._listings.clear()
            body = webhook_body(self, "jira:issue_created", "issue_created", issue, at)
        self.webhooks.send(self.webhook_url, "jira:issue_created", body, issue.id)
        return self.render(issue)

    def update_issue(self, id_or_key: str | int, **changes: Any) -> dict[str, Any]:
        """Change fields (summary, status, priority, assignee (email, accountId or None),
        labels, description, story_points, duedate, issuetype), bump `updated`, send
        jira:issue_updated with the changelog. Returns the issue as REST v3 shows it."""
        with self._lock:
            issue = self.find(id_or_key)
            at = self.now()
            items = apply_changes(issue, changes, self.people, at)
            issue.updated = at
            self._listings.clear()
            history_id = str(self._next_history_id)
            self._next_history_id += 1
            issue.histories.append({"id": history_id, "author": 0, "created": at, "items": items})
            names = {item["field"] for item in items}
            event_type = (
                "issue_generic" if "status" in names else "issue_assigned" if names == {"assignee"} else "issue_updated"
            )
            changelog = {"id": history_id, "items": items}
            body = webhook_body(self, "jira:issue_updated", event_type, issue, at, changelog)
        self.webhooks.send(self.webhook_url, "jira:issue_updated", body, issue.id)
        return self.render(issue)

    def delete_issue(self, id_or_key: str | int, silent: bool = False) -> None:
        """Delete an issue; silent: send no webhook (one that was lost on the way)."""
        with self._lock:
            issue = self.find(id_or_key)
            del self._issues[issue.id]
            self._deleted[issue.id] = issue
            self._listings.clear()
            body = webhook_body(self, "jira:issue_deleted", "issue_deleted", issue, self.now())
        if not silent:
            self.webhooks.send(self.webhook_url, "jira:issue_deleted", body, issue.id)

    def mutate_random(self, n: int, rng: random.Random) -> list[str]:
        """n realistic changes (mostly workflow moves and reassignments, some new issues)."""
        changed = []
        for _ in range(n):
            with self._lock:
                ids = sorted(self._issues)
            if not ids or rng.random() < 0.1:
                created = self.create_issue(
                    rng.choice(sorted(self.projects)),
                    f"{rng.choice(data.VERBS)} {rng.choice(data.OBJECTS)}",
                    rng.choice(["Story", "Task", "Bug"]),
                )
                changed.append(created["id"])
                continue
            issue = self._issues[rng.choice(ids)]
            workflow = ["To Do", "In Progress", "In Review", "Done"]
            roll = rng.random()
            if roll < 0.5 and issue.status in workflow[:-1]:
                change: dict[str, Any] = {"status": workflow[workflow.index(issue.status) + 1]}
            elif roll < 0.7:
                change = {"assignee": rng.choice(self.people).email}
            elif roll < 0.85:
                change = {"priority": rng.choice(list(data.PRIORITIES))}
            else:
                change = {"labels": sorted(set(issue.labels) | {rng.choice(data.LABELS)})}
            self.update_issue(issue.id, **change)
            changed.append(str(issue.id))
        return changed

    # --- webhooks ------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        return self.webhooks.deliveries

    def set_webhook_faults(self, faults: WebhookFaults | None = None, **shares: Any) -> None:
        """From the next delivery on, drop, duplicate, replay or reorder a seeded share of
        webhooks, e.g. set_webhook_faults(drop=0.3, reorder=0.2, seed=4). None of them: off."""
        self.webhooks.outbox.configure(faults or WebhookFaults(**shares))

    def flush_webhooks(self) -> None:
        """Send the deliveries held back for reordering now."""
        self.webhooks.flush(self.webhook_url)


def encode_token(key: tuple[int, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_token(token: str) -> tuple[int, ...]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return tuple(int(part) for part in json.loads(raw))
    except (ValueError, TypeError) as error:
        raise JqlError("The provided next page token is invalid or expired.") from error

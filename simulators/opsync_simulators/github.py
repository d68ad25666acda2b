"""A local fake of GitHub's REST API and webhooks: seeded, deterministic, thread-safe.

GitHubSim holds the state and the admin operations (mutations that send real-shaped,
signed webhooks through github_webhooks.py; fault injection); github_app.create_app serves it
over HTTP.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from opsync_simulators import github_data as data
from opsync_simulators import github_render as render
from opsync_simulators.faults import Fault, Faults
from opsync_simulators.github_data import SimItem
from opsync_simulators.github_render import Bases
from opsync_simulators.github_webhooks import WebhookSender
from opsync_simulators.latency import checked_latency
from opsync_simulators.outbox import WebhookFaults
from opsync_simulators.truth import Truth
from opsync_simulators.world import PRODUCTS, SimPerson, people

ALL_REPOS = tuple(repo for product in PRODUCTS for repo in product.github_repos)


class SimError(LookupError):
    """An admin call named something the simulator does not have."""


class GitHubSim:
    def __init__(
        self,
        items: int = 100,
        seed: int = 1,
        repos: tuple[str, ...] | list[str] = ALL_REPOS,
        jira_keys: dict[str, int] | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        token: str | None = None,
        rate_limit: int = 5000,
        rate_window_seconds: float = 3600.0,
        now: datetime | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        """now: the moment the seeded history leads up to (default: the current UTC time); pin
        it for data that is the same on every run. Changes made later happen on the wall clock.
        latency_ms: added to every API answer, as GitHub's round trip (latency.py)."""
        self.lock = threading.RLock()
        self.people = people()
        self.repos = tuple(repos)
        self.repo_ids = {repo: 100_001 + n for n, repo in enumerate(self.repos)}
        self.webhook_url, self.token = webhook_url, token  # webhook_url None: deliveries are only recorded
        # the hourly budget of API requests, spent by github_app.Gate
        self.rate_limit, self.rate_window_seconds = rate_limit, rate_window_seconds
        self.rate_used, self.rate_reset = 0, time.time() + rate_window_seconds
        self.rate_refused = 0  # requests answered 403 because the budget was spent
        self.requests: Counter[str] = Counter()  # path -> count, admin routes excluded
        self.faults = Faults()
        self.latency_ms = checked_latency(latency_ms)
        self.webhooks = WebhookSender(webhook_secret)
        self.archived_repos: set[str] = set()
        self.hidden_repos: set[str] = set()  # invisible to the token: 404, absent from listings
        # The root URL clients reached us at; webhook payloads' URLs are built from it.
        self.public_url = "http://127.0.0.1"
        keys = jira_keys if jira_keys is not None else {p.jira_project: 50 for p in PRODUCTS}
        self._next_issue_id, self._next_pull_id = 1_000_001, 5_000_001
        self.items: dict[str, dict[int, SimItem]] = {repo: {} for repo in self.repos}
        seeded_until = (now or datetime.now(UTC)).astimezone(UTC)
        for item in data.generate(items, seed, self.repos, keys, len(self.people), seeded_until):
            self._register(item)
        self._rng = random.Random(seed + 1)
        self._app: FastAPI | None = None

    # --- reading (the HTTP app calls these under self.lock) -------------------------

    def _register(self, item: SimItem) -> None:
        item.issue_id, self._next_issue_id = self._next_issue_id, self._next_issue_id + 1
        if item.head_ref:
            item.pull_id, self._next_pull_id = self._next_pull_id, self._next_pull_id + 1
        self.items[item.repo][item.number] = item

    def item(self, repo: str, number: int) -> SimItem:
        try:
            return self.items[repo][number]
        except KeyError:
            raise SimError(f"{repo}#{number} does not exist") from None

    def items_in(self, repo: str) -> list[SimItem]:
        """The issues and pull requests of a repository in number order, deleted ones too."""
        with self.lock:
            return [self.items[repo][n] for n in sorted(self.items[repo])]

    def all_items(self) -> list[SimItem]:
        """Every issue and pull request of every repository, deleted ones too."""
        with self.lock:
            return [item for repo in sorted(self.items) for item in self.items[repo].values()]

    def bases(self, api_root: str | None = None) -> Bases:
        root = self.public_url
        return Bases(api=api_root or root, web=root)

    def repo_json(self, repo: str, b: Bases) -> dict[str, Any]:
        rendered = render.repo_json(repo, self.repo_ids[repo], b)
        return {**rendered, "archived": True} if repo in self.archived_repos else rendered

    def visible_repos(self) -> list[str]:
        with self.lock:
            return sorted(repo for repo in self.repos if repo not in self.hidden_repos)

    def truth(self, include_hidden: bool = False) -> Truth:
        """Every live issue and pull request as GitHub lists them, and the ids of deleted
        issues; records of hidden repositories only if include_hidden."""
        with self.lock:
            shown = [repo for repo in self.items if include_hidden or repo not in self.hidden_repos]
            return render.truth([item for repo in shown for item in self.items[repo].values()])

    def issue_json(self, item: SimItem, b: Bases) -> dict[str, Any]:
        return render.issue_json(item, self.people, b)

    def pull_json(self, item: SimItem, b: Bases, full: bool = True) -> dict[str, Any]:
        return render.pull_json(item, self.people, b, self.repo_json(item.repo, b), full)

    def person(self, login: str) -> SimPerson | None:
        return next((p for p in self.people if p.login == login), None)

    # --- faults and accounting --------------------------------------------------------

    def inject(self, fault: dict[str, Any] | Fault | None = None, **kwargs: Any) -> None:
        """Queue a fault for the next requests, e.g. inject(status=429, count=2, retry_after=1).

        Keys: status (+ retry_after), delay_seconds, drop_connection, malformed, pause; count
        (default 1); match (only requests whose path and query contain it), after (spare that
        many matching requests first). See faults.Fault.
        """
        if not isinstance(fault, Fault):
            fault = Fault(**{**(fault or {}), **kwargs})
        self.faults.inject(fault)

    def take_fault(self, target: str = "") -> Fault | None:
        return self.faults.take(target)

    def list_requests(self) -> int:
        """Requests made to list endpoints (issues, pulls, repos)."""
        with self.lock:
            return sum(n for path, n in self.requests.items() if path.endswith(("/issues", "/pulls", "/repos")))

    # --- mutations, each sending its webhooks -----------------------------------------

    def _bump(self, item: SimItem) -> None:
        # GitHub timestamps have one-second resolution; keep each change strictly newer.
        now = datetime.now(UTC).replace(microsecond=0)
        item.updated_at = max(now, item.updated_at + timedelta(seconds=1))

    def create_issue(
        self,
        repo: str,
        title: str,
        body: str | None = None,
        labels: list[str] | tuple[str, ...] = (),
        assignees: list[str] | tuple[str, ...] = (),
        author: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            item = self._new_item(repo, title, body, author)
            item.labels, item.assignees = list(labels), [self._person_index(a) for a in assignees]
            self._register(item)
            payload = self._event("opened", item)
        self.webhooks.send(self.webhook_url, "issues", payload)
        return payload["issue"]

    def update_issue(
        self,
        repo: str,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        state: str | None = None,
        state_reason: str | None = None,
        labels: list[str] | None = None,
        assignees: list[str] | None = None,
    ) -> dict[str, Any]:
        """Change an issue (or a PR's issue side) and send one webhook per action, as GitHub does:
        `issues` events for an issue, `pull_request` events for a pull request."""
        with self.lock:
            item = self.item(repo, number)
            self._bump(item)
            events = self._edit(item, title, body)
            if labels is not None:
                added = [name for name in labels if name not in item.labels]
                item.labels = list(labels)
                for name in added:
                    events.append(self._event("labeled", item, label=render.label_json(name, repo, self.bases())))
            if assignees is not None:
                indexes = [self._person_index(a) for a in assignees]
                added_people = [i for i in indexes if i not in item.assignees]
                item.assignees = indexes
                for i in added_people:
                    assignee = render.user_json(self.people[i], self.bases())
                    events.append(self._event("assigned", item, assignee=assignee))
            if state is not None and state != item.state:
                if state == "closed":
                    item.state, item.closed_at = "closed", item.updated_at
                    item.state_reason = state_reason or "completed"
                else:
                    item.state, item.closed_at, item.state_reason = "open", None, "reopened"
                events.append(self._event("closed" if state == "closed" else "reopened", item))
            result = self.issue_json(item, self.bases())
        for payload in events:
            self.webhooks.send(self.webhook_url, "pull_request" if item.is_pull else "issues", payload)
        return result

    def delete_issue(self, repo: str, number: int, silent: bool = False) -> None:
        """Delete an issue; silent: send no webhook (one that was lost on the way)."""
        with self.lock:
            item = self.item(repo, number)
            if item.is_pull:
                raise SimError(f"{repo}#{number} is a pull request; GitHub cannot delete those")
            payload = self._event("deleted", item)
            item.deleted = True
        if not silent:
            self.webhooks.send(self.webhook_url, "issues", payload)

    def archive_repo(self, repo: str, archived: bool = True) -> None:
        """Archive a repository: still readable, flagged archived in every listing."""
        with self.lock:
            self._repo(repo)
            (self.archived_repos.add if archived else self.archived_repos.discard)(repo)

    def hide_repo(self, repo: str, hidden: bool = True) -> None:
        """Make a repository invisible, as when the token loses access: 404, absent from listings."""
        with self.lock:
            self._repo(repo)
            (self.hidden_repos.add if hidden else self.hidden_repos.discard)(repo)

    def _repo(self, repo: str) -> None:
        if repo not in self.items:
            raise SimError(f"repository {repo} does not exist")

    def create_pull(
        self,
        repo: str,
        title: str,
        head: str,
        base: str = "main",
        body: str | None = None,
        draft: bool = False,
        author: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            item = self._new_item(repo, title, body, author)
            item.head_ref, item.base_ref, item.draft = head, base, draft
            item.head_sha = data.sha(repo, item.number, head, "0")
            item.additions, item.deletions, item.changed_files = 10, 2, 1
            self._register(item)
            payload = self._event("opened", item)
        self.webhooks.send(self.webhook_url, "pull_request", payload)
        return payload["pull_request"]

    def update_pull(
        self,
        repo: str,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        state: str | None = None,
        merged: bool = False,
        push: bool = False,
    ) -> dict[str, Any]:
        """Edit, close (merged or not), reopen, or push to (synchronize) a pull request."""
        with self.lock:
            item = self.item(repo, number)
            if not item.is_pull:
                raise SimError(f"{repo}#{number} is an issue, not a pull request")
            self._bump(item)
            events = self._edit(item, title, body)
            if push:
                before = item.head_sha
                item.head_sha = data.sha(repo, number, item.updated_at)
                item.commits += 1
                item.additions += 5
                events.append(self._event("synchronize", item, before=before, after=item.head_sha))
            if merged or state == "closed":
                if item.state != "closed":
                    item.state, item.closed_at, item.draft = "closed", item.updated_at, False
                    if merged:
                        item.merged_at = item.updated_at
                        item.merge_commit_sha = data.sha(repo, number, "merge")
                    events.append(self._event("closed", item))
            elif state == "open" and item.state == "closed" and item.merged_at is None:
                item.state, item.closed_at = "open", None
                events.append(self._event("reopened", item))
            result = self.pull_json(item, self.bases())
        for payload in events:
            self.webhooks.send(self.webhook_url, "pull_request", payload)
        return result

    def mutate_random(self, n: int, rng: random.Random | None = None) -> list[str]:
        """n realistic changes (retitle, close, label, merge, new issue); what was done."""
        rng = rng or self._rng
        done = []
        for _ in range(n):
            with self.lock:
                repo = rng.choice(self.repos)
                live = [i for i in self.items[repo].values() if not i.deleted]
            if not live or rng.random() < 0.15:
                title = rng.choice(data.TOPICS).capitalize()
                self.create_issue(repo, title, body=f"Reported while working on {title.lower()}.")
                done.append(f"opened issue in {repo}: {title}")
                continue
            item = rng.choice(live)
            ref = f"{repo}#{item.number}"
            if item.is_pull and item.state == "open":
                self.update_pull(repo, item.number, merged=True)
                done.append(f"merged {ref}")
            elif item.state == "open" and rng.random() < 0.5:
                self.update_issue(repo, item.number, state="closed")
                done.append(f"closed {ref}")
            elif rng.random() < 0.5:
                label = rng.choice(sorted(data.LABELS))
                self.update_issue(repo, item.number, labels=sorted({*item.labels, label}))
                done.append(f"labeled {ref} {label}")
            else:
                self.update_issue(repo, item.number, title=f"{item.title} (revised)")
                done.append(f"retitled {ref}")
        return done

    def _new_item(self, repo: str, title: str, body: str | None, author: str | None) -> SimItem:
        if repo not in self.items:
            raise SimError(f"repository {repo} does not exist")
        now = datetime.now(UTC).replace(microsecond=0)
        number = max(self.items[repo], default=0) + 1
        return SimItem(
            repo=repo,
            number=number,
            issue_id=0,
            title=title,
            body=body,
            author=self._person_index(author) if author else 0,
            created_at=now,
            updated_at=now,
        )

    def _person_index(self, login: str) -> int:
        for n, person in enumerate(self.people):
            if person.login == login:
                return n
        raise SimError(f"user {login} does not exist")

    def _edit(self, item: SimItem, title: str | None, body: str | None) -> list[dict[str, Any]]:
        """Retitle and rewrite item; the `edited` event that says what changed, if anything did."""
        changes: dict[str, Any] = {}
        if title is not None and title != item.title:
            changes["title"], item.title = {"from": item.title}, title
        if body is not None and body != item.body:
            changes["body"], item.body = {"from": item.body}, body
        return [self._event("edited", item, changes=changes)] if changes else []

    # --- webhooks ------------------------------------------------------------------------

    def _event(self, action: str, item: SimItem, **extra: Any) -> dict[str, Any]:
        b = self.bases()
        return render.event_json(action, item, self.people, b, self.repo_json(item.repo, b), len(self.repos), **extra)

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery made: event, action, delivery (its id), headers, body, status, error, fault."""
        return self.webhooks.deliveries

    def set_webhook_faults(self, faults: WebhookFaults | None = None, **shares: Any) -> None:
        """From the next delivery on, drop, duplicate, replay or reorder a seeded share of
        webhooks, e.g. set_webhook_faults(drop=0.3, reorder=0.2, seed=4). None of them: off."""
        self.webhooks.outbox.configure(faults or WebhookFaults(**shares))

    def flush_webhooks(self) -> None:
        """Send the deliveries held back for reordering now."""
        self.webhooks.flush(self.webhook_url)

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            from opsync_simulators.github_app import create_app

            self._app = create_app(self)
        return self._app

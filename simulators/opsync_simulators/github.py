"""A local fake of GitHub's REST API and webhooks: seeded, deterministic, thread-safe.

GitHubSim holds the state and the admin operations (mutations that send real-shaped,
signed webhooks; fault injection); github_app.create_app serves it over HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from opsync_simulators import github_data as data
from opsync_simulators.faults import Fault, Faults
from opsync_simulators.github_app import create_app
from opsync_simulators.github_data import Bases, SimItem
from opsync_simulators.outbox import Outbox, Outgoing, WebhookFaults
from opsync_simulators.truth import Truth, TruthRecord
from opsync_simulators.world import PRODUCTS, people

ALL_REPOS = tuple(repo for product in PRODUCTS for repo in product.github_repos)
HOOK_ID = 424242


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
    ) -> None:
        """now: the moment the seeded history leads up to (default: the current UTC time); pin
        it for data that is the same on every run. Changes made later happen on the wall clock."""
        self.lock = threading.RLock()
        self.people = people()
        self.repos = tuple(repos)
        self.repo_ids = {repo: 100_001 + n for n, repo in enumerate(self.repos)}
        self.webhook_url, self.webhook_secret, self.token = webhook_url, webhook_secret, token
        self.rate_limit, self.rate_window_seconds = rate_limit, rate_window_seconds
        self.rate_used, self.rate_reset = 0, time.time() + rate_window_seconds
        self.requests: Counter[str] = Counter()  # path -> count, admin routes excluded
        self.deliveries: list[dict[str, Any]] = []
        self.faults = Faults()
        self.outbox = Outbox(self._renew_delivery)
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
        self._client: httpx.Client | None = None

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
        rendered = data.repo_json(repo, self.repo_ids[repo], b)
        return {**rendered, "archived": True} if repo in self.archived_repos else rendered

    def visible_repos(self) -> list[str]:
        with self.lock:
            return sorted(repo for repo in self.repos if repo not in self.hidden_repos)

    def truth(self, include_hidden: bool = False) -> Truth:
        """Every live issue and pull request as GitHub lists them, and the ids of deleted
        issues; records of hidden repositories only if include_hidden."""
        records: dict[tuple[str, str], TruthRecord] = {}
        deleted: set[tuple[str, str]] = set()
        with self.lock:
            for repo, items in self.items.items():
                if repo in self.hidden_repos and not include_hidden:
                    continue
                for item in items.values():
                    if item.is_pull:
                        record_type, record_id = "pull_request", str(item.pull_id)
                        state = "merged" if item.merged_at else item.state
                    else:
                        record_type, record_id, state = "issue", str(item.issue_id), item.state
                    if item.deleted:
                        deleted.add((record_type, record_id))
                        continue
                    records[(record_type, record_id)] = TruthRecord(
                        record_type, record_id, f"{repo}#{item.number}", repo, item.title, state, item.updated_at
                    )
        return Truth(records, frozenset(deleted))

    def issue_json(self, item: SimItem, b: Bases) -> dict[str, Any]:
        return data.issue_json(item, self.people, b)

    def pull_json(self, item: SimItem, b: Bases, full: bool = True) -> dict[str, Any]:
        return data.pull_json(item, self.people, b, self.repo_json(item.repo, b), full)

    def person(self, login: str) -> data.SimPerson | None:
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

    def spend_rate(self) -> tuple[bool, dict[str, str]]:
        """Count one request against the hourly budget; (allowed, rate-limit headers)."""
        with self.lock:
            now = time.time()
            if now >= self.rate_reset:
                self.rate_used, self.rate_reset = 0, now + self.rate_window_seconds
            allowed = self.rate_used < self.rate_limit
            if allowed:
                self.rate_used += 1
            return allowed, self.rate_headers()

    def rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - self.rate_used, 0)),
            "X-RateLimit-Reset": str(int(self.rate_reset + 0.999)),
            "X-RateLimit-Used": str(self.rate_used),
            "X-RateLimit-Resource": "core",
        }

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
            payload = self._issue_event("opened", item)
        self._deliver("issues", payload)
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
            event = self._pull_event if item.is_pull else self._issue_event
            events: list[dict[str, Any]] = []
            changes: dict[str, Any] = {}
            if title is not None and title != item.title:
                changes["title"], item.title = {"from": item.title}, title
            if body is not None and body != item.body:
                changes["body"], item.body = {"from": item.body}, body
            if changes:
                events.append(event("edited", item, changes=changes))
            if labels is not None:
                added = [name for name in labels if name not in item.labels]
                item.labels = list(labels)
                for name in added:
                    events.append(event("labeled", item, label=data.label_json(name, repo, self.bases())))
            if assignees is not None:
                indexes = [self._person_index(a) for a in assignees]
                added_people = [i for i in indexes if i not in item.assignees]
                item.assignees = indexes
                for i in added_people:
                    events.append(event("assigned", item, assignee=data.user_json(self.people[i], self.bases())))
            if state is not None and state != item.state:
                if state == "closed":
                    item.state, item.closed_at = "closed", item.updated_at
                    item.state_reason = state_reason or "completed"
                else:
                    item.state, item.closed_at, item.state_reason = "open", None, "reopened"
                events.append(event("closed" if state == "closed" else "reopened", item))
            result = self.issue_json(item, self.bases())
        for payload in events:
            self._deliver("pull_request" if item.is_pull else "issues", payload)
        return result

    def delete_issue(self, repo: str, number: int, silent: bool = False) -> None:
        """Delete an issue; silent: send no webhook (one that was lost on the way)."""
        with self.lock:
            item = self.item(repo, number)
            if item.is_pull:
                raise SimError(f"{repo}#{number} is a pull request; GitHub cannot delete those")
            payload = self._issue_event("deleted", item)
            item.deleted = True
        if not silent:
            self._deliver("issues", payload)

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
            payload = self._pull_event("opened", item)
        self._deliver("pull_request", payload)
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
            events = []
            changes: dict[str, Any] = {}
            if title is not None and title != item.title:
                changes["title"], item.title = {"from": item.title}, title
            if body is not None and body != item.body:
                changes["body"], item.body = {"from": item.body}, body
            if changes:
                events.append(self._pull_event("edited", item, changes=changes))
            if push:
                before = item.head_sha
                item.head_sha = data.sha(repo, number, item.updated_at)
                item.commits += 1
                item.additions += 5
                events.append(self._pull_event("synchronize", item, before=before, after=item.head_sha))
            if merged or state == "closed":
                if item.state != "closed":
                    item.state, item.closed_at, item.draft = "closed", item.updated_at, False
                    if merged:
                        item.merged_at = item.updated_at
                        item.merge_commit_sha = data.sha(repo, number, "merge")
                    events.append(self._pull_event("closed", item))
            elif state == "open" and item.state == "closed" and item.merged_at is None:
                item.state, item.closed_at = "open", None
                events.append(self._pull_event("reopened", item))
            result = self.pull_json(item, self.bases())
        for payload in events:
            self._deliver("pull_request", payload)
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

    # --- webhooks ------------------------------------------------------------------------

    def _envelope(self, action: str, repo: str) -> dict[str, Any]:
        b = self.bases()
        org = data.org_json(b, len(self.repos))
        return {
            "action": action,
            "repository": self.repo_json(repo, b),
            "organization": {
                k: org[k]
                for k in (
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
            },
            "sender": data.user_json(self.people[0], b),
        }

    def _issue_event(self, action: str, item: SimItem, **extra: Any) -> dict[str, Any]:
        payload = self._envelope(action, item.repo)
        return {
            "action": action,
            "issue": self.issue_json(item, self.bases()),
            **extra,
            **{k: v for k, v in payload.items() if k != "action"},
        }

    def _pull_event(self, action: str, item: SimItem, **extra: Any) -> dict[str, Any]:
        payload = self._envelope(action, item.repo)
        return {
            "action": action,
            "number": item.number,
            "pull_request": self.pull_json(item, self.bases()),
            **extra,
            **{k: v for k, v in payload.items() if k != "action"},
        }

    def signed_headers(self, event: str, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.UUID(int=random.getrandbits(128), version=4)),
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": "organization",
            "X-GitHub-Hook-Installation-Target-ID": str(data.ORG_ID),
            "User-Agent": "GitHub-Hookshot/4d63832",
        }
        if self.webhook_secret:
            key = self.webhook_secret.encode()
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
        return headers

    def set_webhook_faults(self, faults: WebhookFaults | None = None, **shares: Any) -> None:
        """From the next delivery on, drop, duplicate, replay or reorder a seeded share of
        webhooks, e.g. set_webhook_faults(drop=0.3, reorder=0.2, seed=4). None of them: off."""
        self.outbox.configure(faults or WebhookFaults(**shares))

    def flush_webhooks(self) -> None:
        """Send the deliveries held back for reordering now."""
        for message, fault in self.outbox.flush():
            self._post(message, fault)

    def _deliver(self, event: str, payload: dict[str, Any]) -> None:
        """Hand one delivery to the outbox and send what it says (see outbox.Outbox)."""
        body = json.dumps(payload).encode()
        message = Outgoing(event, body, self.signed_headers(event, body), {"action": payload.get("action")})
        for step, fault in self.outbox.submit(message):
            self._post(step, fault)

    def _renew_delivery(self, message: Outgoing) -> Outgoing:
        return Outgoing(message.event, message.body, self.signed_headers(message.event, message.body), message.about)

    def _post(self, message: Outgoing, fault: str | None) -> None:
        """POST one delivery to webhook_url (if any, and unless dropped) and record how it went."""
        headers = message.headers
        record: dict[str, Any] = {
            "event": message.event,
            "action": message.about.get("action"),
            "delivery": headers["X-GitHub-Delivery"],
            "headers": headers,
            "body": message.body,
            "status": None,
            "error": None,
            "fault": fault,
        }
        if fault == "dropped":
            record["error"] = "dropped by the simulator's webhook faults"
        elif self.webhook_url:
            try:
                record["status"] = (
                    self._hook_client().post(self.webhook_url, content=message.body, headers=headers).status_code
                )
            except httpx.HTTPError as error:
                record["error"] = f"{type(error).__name__}: {error}"
        with self.lock:
            self.deliveries.append(record)

    def _hook_client(self) -> httpx.Client:
        # One client for all deliveries: building one per request costs ~0.1 s (TLS setup).
        with self.lock:
            if self._client is None:
                self._client = httpx.Client(timeout=10)
            return self._client

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            self._app = create_app(self)
        return self._app

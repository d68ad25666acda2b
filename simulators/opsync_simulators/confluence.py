"""A fake Confluence Cloud: seeded spaces and pages, REST v2 cursor paging, mutations that send
real webhooks (Connect's JWT-signed ones, or Data Center's HMAC-signed ones), faults.

ConfluenceSim holds the state behind a lock, because tests mutate it from their own thread
while uvicorn serves it from another. The HTTP surface lives in confluence_app.py.

What the simulator takes for Confluence's behaviour where the captures are silent: an edit
makes a new version (version.createdAt moves, and with it the page's place in modified-date
order); trashing, restoring and moving a page make none, so version.createdAt stays.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from datetime import UTC, datetime
from typing import Any

from opsync_simulators import confluence_data as data
from opsync_simulators.clock import Clock, to_ms
from opsync_simulators.confluence_data import SimPage, SimSpace
from opsync_simulators.confluence_webhooks import Delivery, WebhookSender, WebhookTarget
from opsync_simulators.faults import Fault, Faults
from opsync_simulators.latency import checked_latency
from opsync_simulators.outbox import WebhookFaults
from opsync_simulators.truth import Truth, TruthRecord
from opsync_simulators.world import SimPerson, people

SORTS = ("id", "created-date", "modified-date", "title")
STATUSES = ("current", "archived", "trashed", "deleted", "draft")


class NotFound(LookupError):
    pass


class BadRequest(ValueError):
    pass


class ConfluenceSim:
    def __init__(
        self,
        pages: int = 60,
        seed: int = 1,
        spaces: tuple[str, ...] = ("PAY", "CHK", "GRO"),
        credentials: tuple[str, str] | None = None,
        site_url: str = "https://acme.atlassian.net",
        jira_numbers: dict[str, int] | None = None,
        webhooks: WebhookTarget | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        """webhooks says where and how mutations are announced (confluence_webhooks.py);
        jira_numbers, each Jira project's highest issue number, so that planted keys exist;
        latency_ms, added to every API answer as a remote Confluence's round trip (latency.py)."""
        self.credentials = credentials  # None: any non-empty email and token
        self.site_url = site_url
        self.people: list[SimPerson] = people()
        self._lock = threading.RLock()
        started = to_ms(datetime.now(UTC))
        self._clock = Clock(started)
        keys = tuple(key.upper() for key in spaces)
        self._spaces = data.make_spaces(keys, started)
        self.jira_numbers = jira_numbers or {key: 40 for key in keys}
        generated = data.generate_pages(pages, seed, self._spaces, self.people, self.jira_numbers, site_url, started)
        self._pages: dict[int, SimPage] = {page.id: page for page in generated}
        self._purged: dict[int, SimPage] = {}
        self._next_id = max(self._pages) + 1
        self._rng = random.Random(seed)
        self.faults = Faults()
        self.latency_ms = checked_latency(latency_ms)
        self.webhooks = WebhookSender(webhooks or WebhookTarget(), self.now)
        self.api_requests = 0  # counted by the app; lets tests assert request economy
        self.api_paths: list[str] = []  # the path of each API request, in order
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from opsync_simulators.confluence_app import create_app

            self._app = create_app(self)
        return self._app

    # --- reading -------------------------------------------------------------------------

    def now(self) -> datetime:
        """Wall-clock time to the millisecond, strictly increasing, so every change sorts last."""
        return self._clock.now()

    def spaces(self) -> list[SimSpace]:
        with self._lock:
            return sorted(self._spaces.values(), key=lambda space: space.id)

    def space(self, key_or_id: str | int) -> SimSpace:
        text = str(key_or_id)
        with self._lock:
            for space in self._spaces.values():
                if text in (space.key, str(space.id)):
                    return space
        raise NotFound(f"space {key_or_id} does not exist")

    def pages(self, statuses: tuple[str, ...] = ("current", "archived")) -> list[SimPage]:
        """The pages a default listing shows (current and archived), or those of statuses."""
        with self._lock:
            return [page for page in self._pages.values() if page.status in statuses]

    def page(self, page_id: str | int) -> SimPage:
        with self._lock:
            found = self._pages.get(int(page_id)) if str(page_id).isdigit() else None
        if found is None:
            raise NotFound(f"page {page_id} does not exist")
        return found

    def ids(self) -> set[str]:
        """The ids a default listing shows: current and archived pages."""
        return {str(page.id) for page in self.pages()}

    def truth(self) -> Truth:
        """Every page a default listing shows; trashed and purged pages count as deleted."""
        with self._lock:
            records = {
                ("page", str(page.id)): TruthRecord(
                    "page", str(page.id), str(page.id), page.space, page.title, page.status, page.version_at
                )
                for page in self._pages.values()
                if page.status in ("current", "archived")
            }
            gone = [page_id for page_id, page in self._pages.items() if page.status == "trashed"] + list(self._purged)
            return Truth(records, frozenset(("page", str(page_id)) for page_id in gone))

    def list_pages(
        self,
        *,
        space_ids: set[int] | None = None,
        ids: set[int] | None = None,
        statuses: tuple[str, ...] = ("current", "archived"),
        title: str | None = None,
        sort: str = "id",
        cursor: str | None = None,
        limit: int = 25,
    ) -> tuple[list[SimPage], str | None]:
        """One page of GET /pages and the cursor of the next, if any. The cursor is the last
        row's sort key (keyset paging): a page edited mid-listing moves, it is not skipped twice."""
        field = sort.lstrip("-")
        if field not in SORTS:
            raise BadRequest(f"sort {sort!r} is not one of {', '.join(SORTS)} (or the same with a leading '-')")
        descending = sort.startswith("-")
        with self._lock:
            rows = [
                page
                for page in self._pages.values()
                if page.status in statuses
                and (space_ids is None or self._spaces[page.space].id in space_ids)
                and (ids is None or page.id in ids)
                and (title is None or page.title == title)
            ]
        keyed = sorted(((_sort_key(page, field), page.id), page) for page in rows)
        if descending:
            keyed.reverse()
        if cursor is not None:
            after = decode_cursor(cursor, sort)
            keyed = [item for item in keyed if (item[0] < after if descending else item[0] > after)]
        chunk = keyed[:limit]
        following = encode_cursor(sort, chunk[-1][0]) if len(keyed) > limit else None
        return [page for _, page in chunk], following

    # --- faults --------------------------------------------------------------------------

    def inject(self, fault: Fault | None = None, **kwargs: Any) -> None:
        """Make the next API requests fail: sim.inject(status=429, retry_after=1, count=2);
        match and after aim at some requests only (see faults.Fault)."""
        self.faults.inject(fault or Fault(**kwargs))

    def take_fault(self, target: str = "") -> Fault | None:
        return self.faults.take(target)

    # --- mutations -----------------------------------------------------------------------

    def create_page(
        self,
        space: str,
        title: str = "New page",
        body: str = "<p></p>",
        parent: str | int | None = None,
        labels: list[str] | None = None,
        author: str | None = None,
    ) -> dict[str, Any]:
        """Create a page (under the space's homepage unless parent says otherwise) and send
        page_created. Returns the page as GET /pages/{id} shows it."""
        with self._lock:
            home = self.space(space)
            who = self._person(author)
            at = self.now()
            page = SimPage(
                id=self._next_id,
                space=home.key,
                title=title,
                parent_id=self.page(parent).id if parent is not None else home.homepage_id,
                status="current",
                author=who,
                owner=who,
                created=at,
                version=1,
                version_at=at,
                version_author=who,
                version_message="",
                body=body,
                labels=sorted(set(labels or [])),
                position=len(self._pages),
            )
            self._next_id += 1
            self._pages[page.id] = page
        self._send("page_created", page, who)
        return self.render(page)

    def update_page(
        self,
        page_id: str | int,
        *,
        title: str | None = None,
        body: str | None = None,
        labels: list[str] | None = None,
        author: str | None = None,
        message: str = "",
    ) -> dict[str, Any]:
        """Edit a page: a new version by author, then page_updated."""
        with self._lock:
            page = self._live(page_id)
            who = self._person(author)
            page.title = title if title is not None else page.title
            page.body = body if body is not None else page.body
            page.labels = sorted(set(labels)) if labels is not None else page.labels
            page.version += 1
            page.version_at = page.modified = self.now()
            page.version_author, page.version_message = who, message
        self._send("page_updated", page, who)
        return self.render(page)

    def trash_page(self, page_id: str | int, silent: bool = False) -> None:
        """Move a page to the trash (no new version): page_trashed, unless silent (a webhook lost)."""
        self._set_status(page_id, "trashed", "page_trashed", silent)

    def restore_page(self, page_id: str | int, silent: bool = False) -> None:
        """Bring a trashed page back (no new version): page_restored."""
        self._set_status(page_id, "current", "page_restored", silent)

    def move_page(self, page_id: str | int, parent: str | int) -> dict[str, Any]:
        """Put a page under another parent (no new version): page_moved."""
        with self._lock:
            page = self._live(page_id)
            page.parent_id = self.page(parent).id
            page.modified = self.now()
        self._send("page_moved", page, 0)
        return self.render(page)

    def purge_page(self, page_id: str | int, silent: bool = False) -> None:
        """Delete a page for good (purged from the trash, or deleted at once): page_removed;
        GET /pages/{id} answers 404 from then on."""
        with self._lock:
            page = self.page(page_id)
            del self._pages[page.id]
            self._purged[page.id] = page
            page.modified = self.now()
        if not silent:
            self._send("page_removed", page, 0)

    def mutate_random(self, n: int, rng: random.Random | None = None) -> list[str]:
        """n realistic changes, mostly edits, some new pages and a few trashed ones."""
        rng = rng or self._rng
        changed = []
        for _ in range(n):
            live = sorted(page.id for page in self.pages(("current",)))
            roll = rng.random()
            if not live or roll < 0.15:
                created = self.create_page(rng.choice(sorted(self._spaces)), f"Notes {rng.randrange(10**6)}")
                changed.append(created["id"])
            elif roll < 0.2:
                victim = rng.choice(live)
                self.trash_page(victim)
                changed.append(str(victim))
            else:
                page = self.page(rng.choice(live))
                self.update_page(page.id, body=page.body + f"<p>Update {rng.randrange(10**6)}.</p>")
                changed.append(str(page.id))
        return changed

    def render(self, page: SimPage, body_format: str | None = "storage") -> dict[str, Any]:
        with self._lock:
            return data.render_page(page, self._spaces[page.space], self.people, body_format)

    def _live(self, page_id: str | int) -> SimPage:
        page = self.page(page_id)
        if page.status == "trashed":
            raise BadRequest(f"page {page_id} is in the trash: restore it first")
        return page

    def _set_status(self, page_id: str | int, status: str, event: str, silent: bool) -> None:
        with self._lock:
            page = self.page(page_id)
            if (page.status == "trashed") == (status == "trashed"):
                raise BadRequest(f"page {page_id} is {page.status}: cannot {event.removeprefix('page_')} it")
            page.status = status
            page.modified = self.now()
        if not silent:
            self._send(event, page, 0)

    def _person(self, who: str | None) -> int:
        if who is None:
            return 0
        for index, person in enumerate(self.people):
            if who in (person.email, person.account_id, person.display_name):
                return index
        raise BadRequest(f"no person {who!r} in the simulated world")

    # --- webhooks ------------------------------------------------------------------------

    @property
    def deliveries(self) -> list[Delivery]:
        return self.webhooks.deliveries

    def set_webhook_faults(self, faults: WebhookFaults | None = None, **shares: Any) -> None:
        """From the next delivery on, drop, duplicate, replay or reorder a seeded share of
        webhooks, e.g. set_webhook_faults(drop=0.3, seed=4). None of them: off."""
        self.webhooks.outbox.configure(faults or WebhookFaults(**shares))

    def flush_webhooks(self) -> None:
        """Send the deliveries held back for reordering now."""
        self.webhooks.flush()

    def _send(self, event: str, page: SimPage, actor: int) -> None:
        if self.webhooks.target.url is None:
            return
        with self._lock:
            body: dict[str, Any] = {
                "userAccountId": self.people[actor].account_id,
                "accountType": "customer",
                "timestamp": data.epoch_ms(self.now()),
                "page": data.render_webhook_page(page, self.people, self.site_url),
            }
        if event in ("page_created", "page_updated"):
            body |= {"updateTrigger": "edit_page", "suppressNotifications": False}
        self.webhooks.send(event, body, str(page.id))


def _sort_key(page: SimPage, field: str) -> Any:
    if field == "created-date":
        return data.epoch_ms(page.created)
    if field == "modified-date":
        return data.epoch_ms(page.version_at)
    if field == "title":
        return page.title
    return page.id


def encode_cursor(sort: str, key: tuple[Any, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps([sort, *key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    try:
        named, value, page_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if named != sort:
            raise ValueError(f"the cursor was made for sort {named}")
        return value, int(page_id)
    except (ValueError, TypeError) as error:
        raise BadRequest(f"Invalid cursor: {error}") from None

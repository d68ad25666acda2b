"""The GitHub connector: issues (work items) and pull requests (code changes) of a set of
repositories, pulled as raw JSON pages through PyGithub, kept fresh by webhooks.

Cursor (a JSON string the engine stores after each page):
    {"v": 1, "repos": {"acme/payments": {
        "issues": {"since": "2024-03-01T10:15:30Z" | null, "page": 1},
        "pulls":  {"since": "..." | null, "high": "..." | null, "page": 1}}}}
issues.since is the newest updated_at already stored (the list is read in ascending
updated order, so it can advance page by page); page > 1 only while many issues share
that second. pulls cannot be filtered by time, so they are read newest first until one
is older than pulls.since; since only advances (to high) once that listing is complete.
page is where the listing stands; one that stopped half way starts again at page 1, since
pull requests changed meanwhile moved to the front.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator

from opsync import mappings
from opsync.connectors.github import webhook
from opsync.connectors.github.client import GitHubClient, NotFoundError
from opsync.connectors.github.records import format_time, issue_record, pull_record
from opsync.service.contract import (
    ConnectionSettings,
    Connector,
    FatalError,
    FetchesOne,
    Listing,
    PullPage,
    Pulls,
    RawRecord,
    ReceivesWebhooks,
    WebhookContent,
)
from opsync.service.retry import in_thread
from opsync.service.toolkit import interleaved, tool_time

CURSOR_VERSION = 1


class GitHubSettings(ConnectionSettings):
    kind: Literal["github"] = "github"
    base_url: str = Field(default="https://api.github.com", pattern=r"^https?://")
    token: SecretStr
    repos: list[str] = Field(default_factory=list)
    org: str | None = None
    page_size: int = Field(default=100, ge=1, le=100)
    overlap_seconds: int = Field(default=60, ge=0)
    max_concurrency: int = Field(default=4, ge=1, le=16)  # pages fetched at once, in turn by the listings

    @field_validator("repos")
    @classmethod
    def _repo_names(cls, repos: list[str]) -> list[str]:
        for name in repos:
            owner, _, repo = name.partition("/")
            if not owner or not repo or "/" in repo:
                raise ValueError(f"repos: {name!r} is not of the form owner/name (e.g. acme/payments)")
        return repos

    @model_validator(mode="after")
    def _one_source(self) -> GitHubSettings:
        if bool(self.repos) == bool(self.org):
            raise ValueError(
                "set exactly one of repos (a list of owner/name) or org (every repository of that organization)"
            )
        return self


class GitHubConnector(Connector, Pulls, FetchesOne, ReceivesWebhooks):
    kind = "github"
    delivery_headers = ("content-type", "x-github-event", "x-github-delivery", "x-github-hook-id")
    settings_model = GitHubSettings

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, GitHubSettings)
        self.config = settings
        self.client = GitHubClient(
            settings.id, settings.base_url, settings.token.get_secret_value(), settings.page_size
        )
        self.overlap = timedelta(seconds=settings.overlap_seconds)

    @classmethod
    def default_mapping(cls) -> Path:
        return Path(mappings.__file__).parent / "github.yaml"

    # --- pull -------------------------------------------------------------------------

    async def pull(self, cursor: str | None) -> AsyncIterator[PullPage]:
        """Each repository's issues and its pull requests: partitions read at once (at most
        max_concurrency). Each keeps its checkpoint in the cursor, moved only as its pages are
        taken, so a stopped pull resumes every partition where it was."""
        state = _load_cursor(cursor)
        partitions: dict[str, AsyncIterator[tuple[list[RawRecord], dict[str, Any]]]] = {}
        for repo in await self.repositories():
            streams = state["repos"].setdefault(repo, {})
            partitions[f"{repo} issues"] = self._issue_pages(repo, dict(streams.get("issues") or {}))
            partitions[f"{repo} pulls"] = self._pull_pages(repo, dict(streams.get("pulls") or {}))
        async for name, (records, stream) in interleaved(partitions, self.config.max_concurrency):
            repo, _, kind = name.rpartition(" ")
            state["repos"][repo][kind] = stream
            yield PullPage(records, _dump_cursor(state))

    async def _issue_pages(
        self, repo: str, stream: dict[str, Any]
    ) -> AsyncIterator[tuple[list[RawRecord], dict[str, Any]]]:
        """A page at a time, with the stream's checkpoint after it (stream is this partition's own)."""
        stream.setdefault("since", None)
        stream.setdefault("page", 1)
        listing = _Listing()
        while not listing.done:
            yield await self._issue_page(repo, stream, listing)

    async def _issue_page(
        self, repo: str, stream: dict[str, Any], listing: _Listing
    ) -> tuple[list[RawRecord], dict[str, Any]]:
        since, page = tool_time(stream["since"]), stream["page"]
        params: dict[str, Any] = {
            "state": "all",
            "sort": "updated",
            "direction": "asc",
            "per_page": self.config.page_size,
            "page": page,
        }
        if since is not None:
            # Overlap once per run: GitHub's timestamps are coarse and writes race the read.
            params["since"] = format_time(since - self.overlap if listing.first and page == 1 else since)
        listing.first = False
        rows, has_next = await self.client.get_list(f"/repos/{repo}/issues", params, what=f"issues of {repo}")
        newest = since
        records = []
        for row in rows:
            updated = tool_time(row.get("updated_at"))
            if updated is not None and (newest is None or updated > newest):
                newest = updated
            if "pull_request" in row:  # a PR's issue side; PRs come from /pulls
                continue
            if listing.first_sight(row):
                records.append(issue_record(row))
        if not has_next:
            stream.update(since=format_time(newest) if newest else None, page=1)
        elif newest is not None and (since is None or newest > since):
            stream.update(since=format_time(newest), page=1)
            start: datetime = newest  # where the next request starts: only what changed since can come again
            listing.forget(lambda at: (moment := tool_time(at)) is None or moment >= start)
        else:
            stream["page"] = page + 1  # a whole page shares one second: read on
        listing.done = not has_next
        return records, dict(stream)

    async def _pull_pages(
        self, repo: str, stream: dict[str, Any]
    ) -> AsyncIterator[tuple[list[RawRecord], dict[str, Any]]]:
        """A page at a time, with the stream's checkpoint after it (stream is this partition's own)."""
        for key, value in (("since", None), ("high", None), ("page", 1)):
            stream.setdefault(key, value)
        # A listing that stopped half way starts again from the front: pull requests changed
        # meanwhile moved there, ahead of the page it had reached. (high, the newest seen, stays.)
        stream["page"] = 1
        since = tool_time(stream["since"])
        listing = _Listing(since=since, threshold=since - self.overlap if since else None)
        while not listing.done:
            yield await self._pull_page(repo, stream, listing)

    async def _pull_page(
        self, repo: str, stream: dict[str, Any], listing: _Listing
    ) -> tuple[list[RawRecord], dict[str, Any]]:
        page, high = stream["page"], tool_time(stream["high"])
        params = {
            "state": "all",
            "sort": "updated",
            "direction": "desc",
            "per_page": self.config.page_size,
            "page": page,
        }
        rows, has_next = await self.client.get_list(f"/repos/{repo}/pulls", params, what=f"pull requests of {repo}")
        done = not has_next
        records = []
        top = tool_time(rows[0].get("updated_at")) if rows else None  # newest first
        for row in rows:
            updated = tool_time(row.get("updated_at"))
            if listing.threshold is not None and updated is not None and updated < listing.threshold:
                done = True  # newest first: everything after this is already stored
                break
            if updated is not None and (high is None or updated > high):
                high = updated
            if listing.first_sight(row):
                records.append(pull_record(row))
        if done:
            newest = high or listing.since
            stream.update(since=format_time(newest) if newest else None, high=None, page=1)
        else:
            stream.update(high=format_time(high) if high else None, page=page + 1)
            if top is not None:  # the pages before are newer: changes meanwhile can shift only this one's onto the next
                newer: datetime = top
                listing.forget(lambda at: (moment := tool_time(at)) is None or moment <= newer)
        listing.done = done
        return records, dict(stream)

    async def repositories(self) -> list[str]:
        """The configured repositories, or every repository of the configured org."""
        if self.config.repos:
            return list(self.config.repos)
        names: list[str] = []
        page = 1
        while True:
            rows, has_next = await self.client.get_list(
                f"/orgs/{self.config.org}/repos",
                {"per_page": self.config.page_size, "page": page, "type": "all"},
                what=f"repositories of organization {self.config.org}",
            )
            names += [row["full_name"] for row in rows if not row.get("archived")]
            if not has_next:
                return names
            page += 1

    # --- reconcile and refetch --------------------------------------------------------

    async def list_ids(self) -> Listing:
        """Every issue and pull request id, a repository at a time: a repository GitHub no longer
        shows (deleted, renamed away, no access) is reported as unlisted, its records kept; so
        are an org's archived repositories, which repositories() leaves out."""
        ids: dict[str, set[str]] = {"issue": set(), "pull_request": set()}
        listed: set[str] = set()
        unlisted: dict[str, str] = {}
        for repo in await self.repositories():
            try:
                found = {
                    kind: await self._repo_ids(repo, path)
                    for kind, path in (("issue", "issues"), ("pull_request", "pulls"))
                }
            except NotFoundError as error:
                unlisted[repo.lower()] = str(error)
                continue
            for kind, repo_ids in found.items():
                ids[kind] |= repo_ids
            listed.add(repo.lower())
        return Listing(ids, containers=listed, unlisted=unlisted)

    async def _repo_ids(self, repo: str, path: str) -> set[str]:
        ids: set[str] = set()
        page = 1
        while True:
            params = {
                "state": "all",
                "sort": "created",
                "direction": "asc",
                "per_page": self.config.page_size,
                "page": page,
            }
            rows, has_next = await self.client.get_list(f"/repos/{repo}/{path}", params, what=f"{path} of {repo}")
            # the issues list holds the pull requests' issue sides too: those are no issues
            ids.update(str(row["id"]) for row in rows if path == "pulls" or "pull_request" not in row)
            if not has_next:
                return ids
            page += 1

    async def fetch_one(
        self, record_type: str, external_id: str, known: dict[str, Any] | None = None
    ) -> RawRecord | None:
        # GitHub addresses issues and PRs by repository and number, never by id.
        repo, number = _address(record_type, external_id, known)
        path = "issues" if record_type == "issue" else "pulls"
        try:
            _, row = await self.client.get(f"/repos/{repo}/{path}/{number}", what=f"{record_type} {repo}#{number}")
        except NotFoundError:
            return None
        if not isinstance(row, dict) or str(row.get("id")) != external_id:
            return None  # the number now names another record: this one moved or is gone
        return issue_record(row) if record_type == "issue" else pull_record(row)

    # --- webhooks ---------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.config.webhook_secret
        webhook.verify_signature(secret.get_secret_value() if secret else None, headers, body)

    def decode_webhook(self, headers: Mapping[str, str], body: bytes) -> Any:
        return webhook.decode_body(headers, body)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return webhook.delivery_id(headers, body)

    def parse_webhook(self, headers: Mapping[str, str], payload: Any, received_at: datetime) -> WebhookContent:
        return webhook.parse(headers, payload, received_at)

    async def aclose(self) -> None:
        await in_thread(self.client.close)


@dataclass
class _Listing:
    """Where one partition's paging stands, kept out of its generator, which yields each page
    as it is fetched: so a partition holds no page while it waits for its next turn (with
    every partition of a pull begun at once, each would keep its last page alive)."""

    done: bool = False
    first: bool = True  # issues: the first request overlaps the checkpoint
    since: datetime | None = None  # pulls: the checkpoint the listing began from
    threshold: datetime | None = None  # pulls: the time it reads back to (since less the overlap)
    # what this run has yielded, ids by updated_at as GitHub writes it: a re-query at a page
    # boundary, or a page shifted by changes meanwhile, repeats a few
    seen: dict[str, set[str]] = field(default_factory=dict)

    def first_sight(self, row: dict[str, Any]) -> bool:
        ids = self.seen.setdefault(str(row.get("updated_at")), set())
        if (key := str(row["id"])) in ids:
            return False
        ids.add(key)
        return True

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Keep the sightings at the times a later page can repeat (a pull of 100,000 records
        kept them all)."""
        self.seen = {at: ids for at, ids in self.seen.items() if keep(at)}


def _address(record_type: str, external_id: str, known: dict[str, Any] | None) -> tuple[str, int]:
    """(owner/name, number) of a record, from its last stored payload."""
    try:
        if record_type == "issue":
            owner, name = urlparse(known["repository_url"]).path.rstrip("/").split("/")[-2:]  # type: ignore[index]
            return f"{owner}/{name}", int(known["number"])  # type: ignore[index]
        if record_type == "pull_request":
            return known["base"]["repo"]["full_name"], int(known["number"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise FatalError(
            f"cannot fetch GitHub {record_type} {external_id}: GitHub finds records by "
            "repository and number, and no stored payload gives them"
        ) from None
    raise FatalError(f"GitHub has no record type {record_type!r} (expected issue or pull_request)")


def _load_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {"v": CURSOR_VERSION, "repos": {}}
    try:
        state = json.loads(cursor)
        if state.get("v") != CURSOR_VERSION or not isinstance(state.get("repos"), dict):
            raise ValueError("unknown cursor version")
    except (ValueError, AttributeError) as exc:
        raise FatalError(
            f"GitHub cursor {cursor[:80]!r} is not one this connector wrote ({exc}); run a full sync to start afresh"
        ) from None
    return state


def _dump_cursor(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))

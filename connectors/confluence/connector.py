"""The Confluence Cloud connector: the pages of chosen spaces (or of all), pulled through REST v2,
kept fresh by webhooks (Connect's or Data Center's).

A page's record is the v2 page object with its storage body, plus what the mapping reads and v2
does not put in it: `labels` (names), `space` {id, key, name}, `url` (absolute), `body_text`
(the body's plain text) and `jira_keys` ([{key, via, evidence}], the Jira issues the body names).
Its version is version.createdAt, the time of the page's current version.

Trashed pages count as deleted: v2 lists current and archived pages only, and fetch_one answers
None for a trashed page, so pulls, reconcile and webhooks agree. A page restored from the trash
keeps its old version (Confluence makes none), so the hub sees it again at its next edit.

Cursor (Cursor below, as JSON; the engine stores it after each page), per space key:
    {"v": 1, "spaces": {"PAY": {"since": "2026-03-01T10:15:30.123000Z" | null,
                                "high": "..." | null, "next": "/wiki/api/v2/pages?...cursor=..." | null}}}
A space without `since` is backfilled oldest change first (sort=modified-date), and `next`, the
listing's own next link, resumes it where a run stopped. Later pulls read newest first
(sort=-modified-date; v2 has no "modified since" filter) and stop after the first page of results
that reaches `since` minus the overlap; `since` moves to the newest version seen (`high`) once
the listing is complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from opsync.connectors.confluence import webhook
from opsync.connectors.confluence.client import API, ConfluenceClient, NotFound, Refused
from opsync.connectors.confluence.storage import read_storage
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
from opsync.service.toolkit import tool_time

LISTED = ("current", "archived")  # v2's default statuses: what exists, for the hub
ID_PAGE = 250  # v2's largest page


class ConfluenceSettings(ConnectionSettings):
    kind: Literal["confluence"] = "confluence"
    email: str = Field(min_length=3)
    token: SecretStr  # an Atlassian API token of that account; named as Jira's, so ${NAME} is read in it
    spaces: list[str] = Field(default_factory=list)  # space keys; empty: every space the user can see
    page_size: int = Field(default=100, ge=1, le=250)
    overlap_seconds: int = Field(default=120, ge=0)
    concurrency: int = Field(default=8, ge=1, le=32)  # label requests in flight at once
    connect_client_key: str | None = None  # if set, a Connect JWT must be issued by this installation
    jira_projects: list[str] = Field(default_factory=list)  # if set, keys in prose count only for these

    @field_validator("spaces", "jira_projects")
    @classmethod
    def _keys(cls, keys: list[str]) -> list[str]:
        return [key.strip() for key in keys if key.strip()]


class SpaceCursor(BaseModel):
    since: datetime | None = None  # the newest version stored, once a listing of the space completed
    high: datetime | None = None  # the newest version seen by the listing under way
    next: str | None = None  # a backfill's next link, to resume it


class Cursor(BaseModel):
    v: Literal[1] = 1
    spaces: dict[str, SpaceCursor] = Field(default_factory=dict)

    @classmethod
    def load(cls, text: str | None) -> Cursor:
        try:
            return cls.model_validate_json(text) if text else cls()
        except ValidationError as error:
            raise FatalError(
                f"Confluence cursor {(text or '')[:80]!r} is not one this connector wrote"
                f" ({error.error_count()} problems); run a full sync to start afresh"
            ) from None


class ConfluenceConnector(Connector, Pulls, FetchesOne, ReceivesWebhooks):
    kind = "confluence"
    # :path and :query name a Connect delivery's event; Authorization (a credential) is not kept
    delivery_headers = (":path", ":query", "x-atlassian-webhook-identifier")
    settings_model = ConfluenceSettings

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        if not isinstance(settings, ConfluenceSettings):
            settings = ConfluenceSettings.model_validate(settings.model_dump())
        self.config = settings
        self.client = ConfluenceClient(
            settings.id, self.config.base_url, self.config.email, self.config.token.get_secret_value()
        )
        self._projects = frozenset(key.upper() for key in self.config.jira_projects)
        self._spaces_by_id: dict[str, dict[str, str]] = {}

    @classmethod
    def default_mapping(cls) -> Path:
        return Path(__file__).with_name("confluence.yaml")

    # --- spaces ---------------------------------------------------------------------------

    async def spaces(self) -> list[dict[str, str]]:
        """The configured spaces ({id, key, name}), or every space the user can see; FatalError
        naming the configured keys Confluence does not show."""
        found, missing = await self._resolve()
        if missing:
            raise FatalError(
                f"Confluence at {self.client.site} shows no space {', '.join(missing)} to the connection's user:"
                " check the connection's spaces and the user's access"
            )
        return found

    async def _resolve(self) -> tuple[list[dict[str, str]], list[str]]:
        params: dict[str, Any] = {"limit": ID_PAGE}
        if self.config.spaces:
            params["keys"] = ",".join(self.config.spaces)
        found: list[dict[str, str]] = []
        async for rows, _ in self.client.listing(f"{API}/spaces", params, what="the list of spaces"):
            found += [{"id": str(row["id"]), "key": str(row["key"]), "name": str(row.get("name", ""))} for row in rows]
        self._spaces_by_id.update({space["id"]: space for space in found})
        keys = {space["key"] for space in found}
        return found, [key for key in self.config.spaces if key not in keys]

    # --- pull -----------------------------------------------------------------------------

    async def pull(self, cursor: str | None) -> AsyncIterator[PullPage]:
        state = Cursor.load(cursor)
        for space in await self.spaces():
            stream = state.spaces.setdefault(space["key"], SpaceCursor())
            pages = self._backfill(space, stream) if stream.since is None else self._changes(space, stream)
            async for records in pages:
                yield PullPage(records, state.model_dump_json())

    async def _backfill(self, space: dict[str, str], stream: SpaceCursor) -> AsyncIterator[list[RawRecord]]:
        """Every page of the space, oldest change first; resumable at the listing's next link."""
        params = self._page_params(space, "modified-date")
        what = f"the pages of space {space['key']}"
        try:
            async for rows, following in self.client.listing(f"{API}/pages", params, what=what, start=stream.next):
                records = await self._records(rows, space)
                stream.high = _newest(stream.high, records)
                if following:
                    stream.next = following
                else:
                    stream.since, stream.high, stream.next = stream.high, None, None
                yield records
        except Refused:
            if not stream.next:
                raise
            stream.next = None  # Confluence no longer takes that listing's cursor: start the space afresh
            async for records in self._backfill(space, stream):
                yield records

    async def _changes(self, space: dict[str, str], stream: SpaceCursor) -> AsyncIterator[list[RawRecord]]:
        """The space's pages changed since the cursor, newest first."""
        assert stream.since is not None
        threshold = stream.since - timedelta(seconds=self.config.overlap_seconds)
        params = self._page_params(space, "-modified-date")
        what = f"the pages of space {space['key']}"
        async for rows, following in self.client.listing(f"{API}/pages", params, what=what):
            fresh = [row for row in rows if (_version(row) or threshold) >= threshold]
            records = await self._records(fresh, space)
            stream.high = _newest(stream.high, records)
            # Stop after the page that reaches the threshold, not at its first older row: a page
            # moved without a new version may sort ahead of its version's time.
            done = not following or len(fresh) < len(rows)
            if done:
                stream.since, stream.high = _newest(stream.since, records, stream.high), None
            yield records
            if done:
                return

    def _page_params(self, space: dict[str, str], sort: str) -> dict[str, Any]:
        return {
            "space-id": space["id"],
            "status": list(LISTED),
            "sort": sort,
            "body-format": "storage",
            "limit": self.config.page_size,
        }

    async def _records(self, rows: list[dict[str, Any]], space: dict[str, str]) -> list[RawRecord]:
        """The pages as raw records, their labels fetched a few at a time."""
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(row: dict[str, Any]) -> RawRecord:
            async with gate:
                return await self._record(row, space)

        return list(await asyncio.gather(*(one(row) for row in rows)))

    async def _record(self, page: dict[str, Any], space: dict[str, str]) -> RawRecord:
        labels: list[str] = []
        async for rows, _ in self.client.listing(
            f"{API}/pages/{page['id']}/labels", {"limit": ID_PAGE}, what=f"the labels of page {page['id']}"
        ):
            labels += [str(row["name"]) for row in rows if isinstance(row, dict) and row.get("name")]
        body = ((page.get("body") or {}).get("storage") or {}).get("value")
        storage = read_storage(body, self._projects)
        webui = (page.get("_links") or {}).get("webui")
        payload = {
            **page,
            "labels": sorted(labels),
            "space": space,
            "url": f"{self.client.web_base()}{webui}" if webui else None,
            "body_text": storage.text,
            "jira_keys": [reference.as_json() for reference in storage.jira],
        }
        return RawRecord("page", str(page["id"]), payload, _version(page))

    # --- reconcile and refetch ------------------------------------------------------------

    async def list_ids(self) -> Listing:
        """Every current or archived page id, a space at a time; a configured space Confluence does
        not show is reported as unlisted, and its pages are kept."""
        found, missing = await self._resolve()
        ids: set[str] = set()
        listed: set[str] = set()
        unlisted = {key.lower(): f"Confluence shows no space {key} to the connection's user" for key in missing}
        for space in found:
            params = {"space-id": space["id"], "status": list(LISTED), "sort": "id", "limit": ID_PAGE}
            space_ids: set[str] = set()
            try:
                async for rows, _ in self.client.listing(
                    f"{API}/pages", params, what=f"the page ids of space {space['key']}"
                ):
                    space_ids.update(str(row["id"]) for row in rows if isinstance(row, dict) and "id" in row)
            except NotFound as error:  # the space went away while we listed
                unlisted[space["key"].lower()] = str(error)
                continue
            ids |= space_ids
            listed.add(space["key"].lower())
        return Listing({"page": ids}, containers=listed, unlisted=unlisted)

    async def fetch_one(
        self, record_type: str, external_id: str, known: dict[str, Any] | None = None
    ) -> RawRecord | None:
        """The page as it is now; None if it is purged, trashed, or in a space this connection
        does not sync."""
        if record_type != "page":
            raise FatalError(f"Confluence has no record type {record_type!r} in this connector; it syncs 'page'")
        if not external_id.isdigit():
            return None
        try:
            page = await self.client.get(
                f"{API}/pages/{external_id}", {"body-format": "storage"}, what=f"page {external_id}"
            )
        except NotFound:
            return None
        if page.get("status") not in LISTED:
            return None
        space = await self._space(str(page.get("spaceId")))
        if space is None:
            return None
        return await self._record(page, space)

    async def _space(self, space_id: str) -> dict[str, str] | None:
        if space_id not in self._spaces_by_id:
            await self._resolve()
        space = self._spaces_by_id.get(space_id)
        if space is None or (self.config.spaces and space["key"] not in self.config.spaces):
            return None
        return space

    # --- webhooks -------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.config.webhook_secret
        webhook.verify(headers, body, secret.get_secret_value() if secret else None, self.config.connect_client_key)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return webhook.delivery_id(headers, body)

    def signed_at(self, headers: Mapping[str, str], payload: Any) -> datetime | None:
        return webhook.signed_at(payload)

    def parse_webhook(self, headers: Mapping[str, str], payload: Any, received_at: datetime) -> WebhookContent:
        return webhook.parse(headers, payload, received_at)

    async def aclose(self) -> None:
        await self.client.aclose()


def _version(page: dict[str, Any]) -> datetime | None:
    version = page.get("version")
    created = version.get("createdAt") if isinstance(version, dict) else None
    return tool_time(created) or tool_time(page.get("createdAt"))


def _newest(current: datetime | None, records: list[RawRecord], *more: datetime | None) -> datetime | None:
    known = [moment for moment in (current, *more, *(record.version for record in records)) if moment is not None]
    return max(known, default=None)

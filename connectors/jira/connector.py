"""Jira Cloud connector: issues of chosen projects, pulled with search/jql, kept fresh by webhooks.

The `jira` library is synchronous, so every call runs in a worker thread. Its own retries are
off (max_retries=0): service.retry is the single retry layer, fed by the errors mapped here, and
the token's rate budget (service.ratebudget) paces every project's requests together.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import requests
from jira import JIRA, JIRAError
from pydantic import Field, SecretStr, field_validator

from opsync import mappings
from opsync.connectors.jira import partitions, webhook
from opsync.service import metrics
from opsync.service.contract import (
    ConnectionSettings,
    Connector,
    FatalError,
    FetchesOne,
    Listing,
    NamesFields,
    PullPage,
    Pulls,
    RawRecord,
    ReceivesWebhooks,
    TransientError,
    WebhookContent,
)
from opsync.service.ratebudget import budget_for
from opsync.service.retry import in_thread, with_retries
from opsync.service.toolkit import interleaved, retry_after, tool_time

T = TypeVar("T")
ID_PAGE = 5000  # search/jql's cap when only ids are asked for
# Issues come with their changelog, which the mapping reads when work started. Jira cuts it to
# the most recent histories (search/jql: 40 an issue; GET issue: 100), and says so with
# changelog.total > maxResults. A cut one is stored as it came: a long-lived issue may then lose
# its earliest moves, and fetching each one's full /changelog would cost a request an issue.
EXPAND = "changelog"


@dataclass
class _Listing:
    """Where one partition's paging stands, kept out of its generator, which yields each page
    as it is fetched: so a partition holds no page while it waits for its next turn."""

    mark: datetime | None  # a project: its newest `updated` so far; a slice: where it is still to be read
    token: str | None = None
    done: bool = False


class SearchRefused(FatalError):
    """Jira refused a search (400: no such project; 403: no access to it)."""


class JiraSettings(ConnectionSettings):
    email: str = Field(min_length=3)
    token: SecretStr
    projects: list[str] = Field(min_length=1)
    page_size: int = Field(default=100, ge=1, le=100)  # Jira returns at most 100 full issues
    overlap_minutes: int = Field(default=2, ge=0)
    max_concurrency: int = Field(default=4, ge=1, le=16)  # pages fetched at once, in turn by the partitions
    # a project read for the first time with more issues than this is read in slices of
    # creation time, searched at once
    slice_issues: int = Field(default=5000, ge=100)

    @field_validator("projects")
    @classmethod
    def _project_keys(cls, keys: list[str]) -> list[str]:
        cleaned = [key.strip().upper() for key in keys]
        for key in cleaned:
            if not key.replace("_", "").isalnum() or not key[:1].isalpha():
                raise ValueError(f"'{key}' is not a Jira project key (letters, digits, underscores)")
        return cleaned


class JiraConnector(Connector, Pulls, FetchesOne, ReceivesWebhooks, NamesFields):
    kind = "jira"
    delivery_headers = ("x-atlassian-webhook-identifier", "x-atlassian-webhook-flow", "x-atlassian-webhook-retry")
    settings_model = JiraSettings

    def __init__(self, settings: ConnectionSettings) -> None:
        super().__init__(settings)
        self.jira_settings = (
            JiraSettings.model_validate(settings.model_dump()) if not isinstance(settings, JiraSettings) else settings
        )
        self._client: JIRA | None = None
        self._client_lock = threading.Lock()
        self._budget = budget_for(self.jira_settings.base_url, self.jira_settings.token.get_secret_value())
        self._zone: ZoneInfo | None = None

    # --- pulling -------------------------------------------------------------------------

    async def pull(self, cursor: str | None) -> AsyncIterator[PullPage]:
        """Issues updated since the cursor, each project a partition searched at once with the
        others (max_concurrency), oldest change first within it; a large project read for the
        first time is read in slices of creation time, each a partition (see partitions). The
        cursor holds each partition's checkpoint, so a pull that stops resumes every partition
        where it was; a project re-reads from its checkpoint minus overlap_minutes, because
        JQL dates have minute precision and clocks are coarse."""
        state = partitions.parse(cursor, self.jira_settings.projects)
        fresh = [p for p in self.jira_settings.projects if p not in state.projects and p not in state.slices]
        for project, sliced in zip(fresh, await asyncio.gather(*(self._plan(p) for p in fresh)), strict=True):
            if sliced is not None:
                state.slices[project] = sliced
        parts: dict[tuple[str, str | None], AsyncIterator[tuple[list[RawRecord], datetime | None]]] = {}
        for project in self.jira_settings.projects:
            if project in state.slices:
                for slice_end, start in state.slices[project].left.items():
                    parts[(project, slice_end)] = self._slice_pages(project, start, slice_end)
            else:
                parts[(project, None)] = self._project_pages(project, state.projects.get(project))
        async for (key, end), (records, mark) in interleaved(parts, self.jira_settings.max_concurrency):
            if end is not None:
                state.advance(key, end, mark)
            elif mark is not None:
                state.projects[key] = mark
            yield PullPage(records, state.dump())

    async def _plan(self, project: str) -> partitions.Slices | None:
        """Slices for a project read for the first time, if it holds more than slice_issues."""
        newest = await self._first(project, "created DESC", "created")
        if partitions.issue_number(newest) <= self.jira_settings.slice_issues:
            return None
        oldest, latest = await asyncio.gather(
            self._first(project, "created ASC", "created"), self._first(project, "updated DESC", "updated")
        )
        first_created, latest_updated = (
            partitions.issue_time(oldest, "created"),
            partitions.issue_time(latest, "updated"),
        )
        if first_created is None or latest_updated is None:
            return None
        return partitions.plan(
            partitions.issue_number(newest), first_created, latest_updated, self.jira_settings.slice_issues
        )

    async def _first(self, project: str, order: str, fields: str) -> dict[str, Any] | None:
        result = await self._search(f'project = "{project}" ORDER BY {order}', None, 1, fields)
        return next(iter(result.get("issues") or []), None)

    async def _slice_pages(
        self, project: str, start: datetime, end: str
    ) -> AsyncIterator[tuple[list[RawRecord], datetime | None]]:
        """One slice of a project's issues, by creation time, a page at a time, each with the
        creation minute from which the slice is still to be read (None once it is read)."""
        zone = await self._user_zone()
        jql = f'project = "{project}" AND created >= "{start.astimezone(zone):%Y-%m-%d %H:%M}"'
        if end != partitions.OPEN:
            jql += f' AND created < "{datetime.fromisoformat(end).astimezone(zone):%Y-%m-%d %H:%M}"'
        listing = _Listing(mark=start)
        while not listing.done:
            yield await self._slice_page(jql + " ORDER BY created ASC", listing)

    async def _slice_page(self, jql: str, listing: _Listing) -> tuple[list[RawRecord], datetime | None]:
        result = await self._search(jql, listing.token, self.jira_settings.page_size, "*all", EXPAND)
        issues = result.get("issues") or []
        records = [webhook.issue_record(issue) for issue in issues]
        listing.token = result.get("nextPageToken")
        if result.get("isLast", True) or not listing.token:
            listing.done = True
            return records, None
        last = partitions.issue_time(issues[-1] if issues else None, "created")
        listing.mark = partitions.minute_of(last) if last is not None else listing.mark
        return records, listing.mark

    async def _project_pages(
        self, project: str, since: datetime | None
    ) -> AsyncIterator[tuple[list[RawRecord], datetime | None]]:
        """One project's changed issues, a page at a time, with the latest `updated` so far."""
        jql = await self._jql(project, since)
        listing = _Listing(mark=since)
        while not listing.done:
            yield await self._project_page(jql, listing)

    async def _project_page(self, jql: str, listing: _Listing) -> tuple[list[RawRecord], datetime | None]:
        result = await self._search(jql, listing.token, self.jira_settings.page_size, "*all", EXPAND)
        records = [webhook.issue_record(issue) for issue in result.get("issues") or []]
        for record in records:
            if record.version is not None and (listing.mark is None or record.version > listing.mark):
                listing.mark = record.version
        listing.token = result.get("nextPageToken")
        listing.done = bool(result.get("isLast", True)) or not listing.token
        return records, listing.mark

    async def _search(
        self, jql: str, token: str | None, max_results: int, fields: str, expand: str | None = None
    ) -> dict[str, Any]:
        """One page of search/jql as a dict. The request is the library's enhanced_search_issues
        (json_result=True) makes, through its session; the body is parsed with orjson: a page of
        100 issues with their changelogs is ~1 MB, and the standard parser the library uses took
        a tenth of a backfill's CPU."""
        params: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": max_results}
        if expand:
            params["expand"] = expand
        if token:
            params["nextPageToken"] = token

        def page(client: JIRA) -> dict[str, Any]:
            answer = client._session.get(client._get_url("search/jql"), params=params)
            result = orjson.loads(answer.content)
            if not isinstance(result, dict):
                raise ValueError(f"search/jql answered a {type(result).__name__}, not an object")
            return result

        return await self._call(page)

    async def list_ids(self) -> Listing:
        """Every issue id, a project at a time: a project Jira no longer lets us search (deleted,
        no access) is reported as unlisted, and its issues are kept."""
        ids: set[str] = set()
        listed: set[str] = set()
        unlisted: dict[str, str] = {}
        for project in self.jira_settings.projects:
            try:
                ids |= await self._project_ids(project)
            except SearchRefused as error:  # bad credentials and the like fail the whole listing
                unlisted[project.lower()] = str(error)
                continue
            listed.add(project.lower())
        return Listing({"issue": ids}, containers=listed, unlisted=unlisted)

    async def _project_ids(self, project: str) -> set[str]:
        # created never changes, so new issues land after the pages already read
        jql = f'project = "{project}" ORDER BY created ASC'
        ids: set[str] = set()
        token: str | None = None
        while True:
            result = await self._search(jql, token, ID_PAGE, "id")
            ids.update(str(issue["id"]) for issue in result.get("issues") or [] if "id" in issue)
            token = result.get("nextPageToken")
            if result.get("isLast", True) or not token:
                return ids

    async def field_names(self) -> dict[str, str]:
        """GET /rest/api/3/field: every system and custom field, name -> id."""
        fields = await self._call(lambda client: client.fields())
        return {str(f["name"]): str(f["id"]) for f in fields if f.get("name") and f.get("id")}

    async def fetch_one(
        self, record_type: str, external_id: str, known: dict[str, Any] | None = None
    ) -> RawRecord | None:
        if record_type != "issue":
            raise ValueError(f"Jira has no record type {record_type!r}; it has 'issue'")

        def get(client: JIRA) -> dict[str, Any] | None:
            try:
                return client.issue(external_id, fields="*all", expand=EXPAND).raw
            except JIRAError as error:
                if error.status_code == 404:
                    return None
                raise

        payload = await self._call(get)
        return webhook.issue_record(payload) if payload is not None else None

    # --- webhooks ------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        secret = self.settings.webhook_secret
        webhook.verify_signature(headers, body, secret.get_secret_value() if secret else None)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return webhook.delivery_id(headers, body)

    def parse_webhook(self, headers: Mapping[str, str], payload: Any, received_at: datetime) -> WebhookContent:
        return webhook.parse(payload, received_at)

    def signed_at(self, headers: Mapping[str, str], payload: Any) -> datetime | None:
        return tool_time(payload.get("timestamp")) if isinstance(payload, dict) else None

    @classmethod
    def default_mapping(cls) -> Path:
        return Path(mappings.__file__).parent / "jira.yaml"

    async def aclose(self) -> None:
        if self._client is not None:
            await in_thread(self._client.close)
            self._client = None

    # --- the library, in a thread, behind one retry layer --------------------------------

    async def _call(self, action: Callable[[JIRA], T]) -> T:
        def attempt_in_thread() -> T:
            try:
                return action(self._connect())
            except Exception as error:  # the library raises several families; classify them all
                raise self._classify(error) from error

        # an `async def`, not a lambda: tenacity awaits only what is a coroutine function
        async def attempt() -> T:
            async with self._budget.request(self.settings.id):
                return await in_thread(attempt_in_thread)

        return await with_retries(attempt, connection_id=self.settings.id)

    def _connect(self) -> JIRA:
        with self._client_lock:
            if self._client is None:
                settings = self.jira_settings
                client = JIRA(
                    server=settings.base_url.rstrip("/"),
                    basic_auth=(settings.email, settings.token.get_secret_value()),
                    max_retries=0,
                    timeout=30,
                    get_server_info=True,
                    options={"rest_api_version": "3", "check_update": False},
                )
                # the start-up's serverInfo request came before the hook below could count it:
                # it answered (2xx), or _classify counts its error
                metrics.upstream_response(settings.id, "jira", 200)

                def count(response: requests.Response, *args: Any, **kwargs: Any) -> None:
                    metrics.upstream_response(settings.id, "jira", response.status_code)
                    self._budget.observe(response.status_code, response.headers)

                client._session.hooks["response"].append(count)  # every later answer
                if client.deploymentType != "Cloud":
                    raise FatalError(
                        f"{settings.base_url} is Jira {client.deploymentType or 'Server/Data Center'}, "
                        "not Jira Cloud: this connector needs Cloud's search/jql API"
                    )
                self._client = client
            return self._client

    def _classify(self, error: Exception) -> Exception:
        settings = self.jira_settings
        where = settings.base_url
        if isinstance(error, (FatalError, TransientError)):
            return error
        if isinstance(error, (JIRAError, requests.RequestException)):
            response = getattr(error, "response", None)
            if response is None or self._client is None:  # no answer, or the client's start-up
                metrics.upstream_response(settings.id, "jira", getattr(response, "status_code", None))
        if isinstance(error, JIRAError):
            status = error.status_code
            text = (error.text or "").strip()
            wait = retry_after(error.response.headers) if error.response is not None else None
            if status is None or status == 429 or status >= 500:
                reason = "rate limited" if status == 429 else f"answered {status}"
                return TransientError(f"Jira at {where} {reason}: {text}", wait)
            if status == 401:
                return FatalError(
                    f"Jira at {where} rejected the credentials (HTTP 401): check the connection's email and API token"
                )
            if status == 403:
                return SearchRefused(
                    f"Jira at {where} denied the connection's user access (HTTP 403): grant "
                    f"'Browse projects' on {', '.join(settings.projects)}"
                )
            if status == 400:
                return SearchRefused(
                    f"Jira at {where} rejected the search (HTTP 400): {text}. Check the "
                    f"connection's projects ({', '.join(settings.projects)})"
                )
            return FatalError(
                f"Jira at {where} answered {status} for {error.url}: {text}. Check the connection's base_url"
            )
        if isinstance(error, requests.RequestException):
            return TransientError(f"could not talk to Jira at {where}: {error}")
        if isinstance(error, ValueError):  # includes requests' JSONDecodeError
            return TransientError(f"Jira at {where} sent a body that is not valid JSON: {error}")
        return error

    # --- JQL -----------------------------------------------------------------------------

    async def _jql(self, project: str, since: datetime | None) -> str:
        clause = f'project = "{project}"'
        if since is not None:
            # JQL dates are read in the API user's time zone, to the minute
            start = (since - timedelta(minutes=self.jira_settings.overlap_minutes)).astimezone(await self._user_zone())
            clause += f' AND updated >= "{start:%Y-%m-%d %H:%M}"'
        return clause + " ORDER BY updated ASC"

    async def _user_zone(self) -> ZoneInfo:
        if self._zone is None:
            me = await self._call(lambda client: client.myself())
            try:
                self._zone = ZoneInfo(me.get("timeZone") or "UTC")
            except (ZoneInfoNotFoundError, ValueError):
                self._zone = ZoneInfo("UTC")
        return self._zone

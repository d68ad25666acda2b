"""The one seam to an analytics tool's HTTP API: httpx, the retry policy, a bound on requests
in flight, and errors typed by what the caller should do.

429 and 5xx, dropped connections, timeouts and bodies that are not JSON are TransientError
(with the tool's Retry-After); 400 is a query the tool refuses and 401, 403 and 404 are
credentials or a project a person must fix: FatalError, with what the tool said.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson

from opsync.service import metrics
from opsync.service.clock import now
from opsync.service.contract import FatalError, TransientError
from opsync.service.retry import with_retries
from opsync.service.toolkit import retry_after

TIMEOUT = httpx.Timeout(60.0, connect=10.0)  # a query over many days takes the tool a while
DETAIL_CHARS = 300  # of a tool's error body, in a message


class Answered(Exception):
    """The status a tool answered, kept as a retried error's cause (service.retry reads `status`)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


@dataclass(frozen=True)
class Answer:
    """A tool's JSON answer and when it came."""

    body: Any
    at: datetime


class ToolClient:
    """Requests to one connection's tool. what_to_fix says, for a 401 or 403, which settings
    hold the credentials (e.g. "api_key and secret_key")."""

    def __init__(
        self,
        tool: str,
        connection_id: str,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        headers: dict[str, str] | None = None,
        concurrency: int = 4,
        what_to_fix: str = "the credentials",
    ) -> None:
        self.tool, self.connection_id, self.what_to_fix = tool, connection_id, what_to_fix
        self._options: dict[str, Any] = {"base_url": base_url.rstrip("/"), "auth": auth, "headers": headers}
        self._concurrency = concurrency
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(concurrency)

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """The client and the bound on requests in flight of the running event loop: both belong
        to the loop that first used them, and the hub keeps a connector across runs."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(**self._options, timeout=TIMEOUT, follow_redirects=True)
            self._slots, self._loop = asyncio.Semaphore(self._concurrency), loop
        return self._http, self._slots

    async def get(self, path: str, params: dict[str, Any] | None = None, *, what: str) -> Answer:
        return await self.request("GET", path, params=params, what=what)

    async def post(self, path: str, body: Any, *, what: str) -> Answer:
        return await self.request("POST", path, json=body, what=what)

    async def request(self, method: str, path: str, *, what: str, **options: Any) -> Answer:
        """One request, retried by the one retry policy; what names the target in messages.
        path may be absolute (a `next` link the tool gave)."""

        async def attempt() -> Answer:
            http, slots = self._session()
            async with slots:
                return await self._once(http, method, path, what, options)

        return await with_retries(attempt, connection_id=self.connection_id)

    async def _once(
        self, http: httpx.AsyncClient, method: str, path: str, what: str, options: dict[str, Any]
    ) -> Answer:
        status = None
        try:
            response = await http.request(method, path, **options)
            status = response.status_code
            at = now()
        except httpx.HTTPError as exc:  # dropped connections, timeouts, bodies cut short
            raise TransientError(f"{self.tool} request for {what} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.upstream_response(self.connection_id, self.tool, status)
        if response.is_success:
            try:
                return Answer(orjson.loads(response.content), at)
            except orjson.JSONDecodeError as exc:
                raise TransientError(f"{self.tool} answered {what} with a body that is not JSON") from exc
        raise self._error(response, what)

    def _error(self, response: httpx.Response, what: str) -> Exception:
        status = response.status_code
        detail = f"{self.tool} answered {status} for {what}: {_detail(response)}"
        if status == 429 or status >= 500:
            error = TransientError(detail, retry_after=retry_after(response.headers))
            error.__cause__ = Answered(status)  # what the retry metrics read the reason from
            return error
        if status in (401, 403):
            return FatalError(
                f"{self.tool} refused the credentials of connection {self.connection_id} ({detail}):"
                f" set valid {self.what_to_fix}, with read access to the project"
            )
        if status == 404:
            return FatalError(f"{detail} (connection {self.connection_id}: check base_url and the project)")
        return FatalError(f"{detail} (connection {self.connection_id}: check its settings)")

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = self._loop = None


def _detail(response: httpx.Response) -> str:
    """What the tool said: its error message (JSON error, detail or message), or its text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if isinstance(body.get(key), str):
                return body[key][:DETAIL_CHARS]
    return response.text.strip()[:DETAIL_CHARS] or response.reason_phrase

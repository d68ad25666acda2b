"""The one seam to Confluence Cloud's REST API v2: httpx, Basic auth (email and API token),
errors typed by what the caller should do, v2's cursor lists followed through `_links.next`.

Every answer is counted by status in service.metrics; 429 and 5xx are TransientErrors carrying
the Retry-After Confluence sent, retried by service.retry (the single retry layer). Requests are
paced by the token's rate budget (service.ratebudget), which every answer's headers update.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from opsync.service import metrics
from opsync.service.contract import FatalError, TransientError
from opsync.service.ratebudget import budget_for
from opsync.service.retry import with_retries
from opsync.service.toolkit import retry_after

API = "/wiki/api/v2"


class NotFound(FatalError):
    """Confluence answered 404: no such page or space, or the user may not see it."""


class Refused(FatalError):
    """Confluence refused the request (400), e.g. a listing cursor it no longer accepts."""


class Answered(Exception):
    """An error answer from Confluence, kept as the cause of the typed error: the retry
    metrics read its status_code."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


class ConfluenceClient:
    def __init__(self, connection_id: str, base_url: str, email: str, token: str, timeout: float = 30) -> None:
        self.connection_id = connection_id
        # Confluence Cloud lives under /wiki of the site; accept the site or the wiki URL.
        self.site = base_url.rstrip("/").removesuffix("/wiki")
        self._auth = httpx.BasicAuth(email, token)
        self._budget = budget_for(self.web_base(), token)  # Confluence's, apart from Jira's on the same site
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self, path: str, params: dict[str, Any] | None = None, *, what: str) -> dict[str, Any]:
        """GET path (from the site root, or a `_links.next` as Confluence gave it), retried;
        what names the target in errors."""

        async def attempt() -> dict[str, Any]:  # tenacity awaits only coroutine functions
            return await self._get_once(path, params, what)

        return await with_retries(attempt, connection_id=self.connection_id)

    async def listing(
        self, path: str, params: dict[str, Any], *, what: str, start: str | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        """A v2 list a page at a time: (results, the `next` link to resume from, or None at the
        end). start resumes a listing from a `next` link an earlier run yielded."""
        answer = await self.get(start, None, what=what) if start else await self.get(path, params, what=what)
        while True:
            following = (answer.get("_links") or {}).get("next")
            results = answer.get("results")
            if not isinstance(results, list):
                raise TransientError(f"Confluence answered {what} without a results list")
            yield results, following
            if not following:
                return
            answer = await self.get(following, None, what=what)

    def web_base(self) -> str:
        """Where page links (`_links.webui`) are relative to."""
        return f"{self.site}/wiki"

    async def _get_once(self, path: str, params: dict[str, Any] | None, what: str) -> dict[str, Any]:
        status = None  # no answer, until one comes
        try:
            async with self._budget.request(self.connection_id):
                answer = await self._session().get(path, params=params)
                self._budget.observe(answer.status_code, answer.headers)
            status = answer.status_code
            if status >= 400:
                raise self._error(answer, what)
            data = orjson.loads(answer.content)
        except httpx.TransportError as error:  # refused, reset, timed out, cut short
            raise TransientError(f"could not talk to Confluence at {self.site} ({what}): {error!r}") from error
        except orjson.JSONDecodeError as error:
            raise TransientError(f"Confluence at {self.site} answered {what} with invalid JSON: {error}") from error
        finally:
            metrics.upstream_response(self.connection_id, "confluence", status)
        if not isinstance(data, dict):
            raise TransientError(f"Confluence at {self.site} answered {what} with a {type(data).__name__}")
        return data

    def _error(self, answer: httpx.Response, what: str) -> Exception:
        status = answer.status_code
        detail = _detail(answer)
        where = f"Confluence at {self.site}"
        error: Exception
        if status == 429 or status >= 500:
            reason = "rate limited the connection" if status == 429 else f"answered {status}"
            error = TransientError(f"{where} {reason} for {what}{detail}", retry_after(answer.headers))
        elif status == 401:
            error = FatalError(
                f"{where} rejected the credentials (HTTP 401): check the connection's email and token"
                " (an Atlassian API token of that account)"
            )
        elif status == 403:
            error = FatalError(f"{where} denied access to {what} (HTTP 403){detail}: grant the user access to it")
        elif status == 404:
            error = NotFound(f"{where} has no {what}, or the connection's user may not see it (HTTP 404)")
        elif status == 400:
            error = Refused(f"{where} refused the request for {what} (HTTP 400){detail}")
        else:
            error = FatalError(f"{where} answered {status} for {what}{detail}: check the connection's base_url")
        error.__cause__ = Answered(status)
        return error

    def _session(self) -> httpx.AsyncClient:
        # A client's connections belong to the event loop that opened them.
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                base_url=self.site, auth=self._auth, timeout=self._timeout, headers={"Accept": "application/json"}
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._loop = None


def _detail(answer: httpx.Response) -> str:
    """What Confluence said about an error, from v2's errors list, else the body's start."""
    try:
        body = orjson.loads(answer.content)
        errors = body.get("errors") if isinstance(body, dict) else None
        parts = [str(e.get("detail") or e.get("title")) for e in errors or [] if isinstance(e, dict)]
        text = "; ".join(parts)
    except orjson.JSONDecodeError:
        text = answer.text[:200].strip()
    return f": {text}" if text else ""

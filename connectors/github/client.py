"""The one seam to GitHub's REST API: raw JSON pages through PyGithub's requester.

PyGithub's own retries and throttle are off, so tenacity (service.retry) and the
rate-limit headers are the single retry and pacing layer. Errors come out typed by what
the caller should do: FatalError (a person must act), TransientError (retry later).
Every answer is counted by status, and every wait for a rate-limit reset, in service.metrics.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import requests
from github import Auth, Github, GithubException
from github.GithubException import BadCredentialsException, RateLimitExceededException

from opsync.service import metrics
from opsync.service.contract import FatalError, TransientError
from opsync.service.retry import in_thread, with_retries
from opsync.service.toolkit import retry_after

Headers = dict[str, Any]


class NotFoundError(FatalError):
    """GitHub answered 404 or 410: the repository or record does not exist (for this token)."""


class GitHubClient:
    def __init__(self, connection_id: str, base_url: str, token: str, page_size: int) -> None:
        self.connection_id = connection_id
        self._github = Github(
            base_url=base_url.rstrip("/"),
            auth=Auth.Token(token),
            per_page=page_size,
            retry=None,
            seconds_between_requests=0,
            seconds_between_writes=0,
            timeout=30,
        )
        self._resume_at = 0.0  # epoch seconds; set when the rate-limit budget is spent

    async def get(self, path: str, params: dict[str, Any] | None = None, *, what: str) -> tuple[Headers, Any]:
        """GET path (relative to the base URL), retried; what names the target in errors."""

        # with_retries needs a coroutine function: tenacity would not await a lambda's coroutine
        async def attempt() -> tuple[Headers, Any]:
            return await self._get_once(path, params, what)

        return await with_retries(attempt, connection_id=self.connection_id)

    async def get_list(self, path: str, params: dict[str, Any], *, what: str) -> tuple[list[Any], bool]:
        """One page of a list endpoint: (rows, whether GitHub announces a next page)."""
        headers, rows = await self.get(path, params, what=what)
        if not isinstance(rows, list):
            raise TransientError(f"GitHub answered {what} with a {type(rows).__name__}, not a list")
        return rows, 'rel="next"' in headers.get("link", "")

    async def _get_once(self, path: str, params: dict[str, Any] | None, what: str) -> tuple[Headers, Any]:
        wait = self._resume_at - time.time()
        if wait > 0:  # the budget is spent: wait for its reset instead of drawing a 403
            metrics.rate_limit_wait(self.connection_id, wait)
            await asyncio.sleep(wait)
        return await in_thread(self._get_blocking, path, params, what)

    def _get_blocking(self, path: str, params: dict[str, Any] | None, what: str) -> tuple[Headers, Any]:
        requester = self._github.requester
        status = None  # no answer, until one comes
        try:
            # The body is parsed here, with orjson: a page of 100 pull requests is ~1 MB of
            # JSON, and the standard library's parser took a tenth of a backfill's CPU.
            status, headers, body = requester.requestJson("GET", path, parameters=params)
            if status >= 400:
                raise requester.createException(status, headers, _error_body(body))
            data = orjson.loads(body)
        except BadCredentialsException as exc:
            raise FatalError(
                f"bad credentials for connection {self.connection_id}: GitHub rejected the token "
                f"(401); set a valid token with read access to {what}"
            ) from exc
        except RateLimitExceededException as exc:
            raise TransientError(
                f"GitHub rate limit reached while reading {what}", retry_after=retry_after(exc.headers or {})
            ) from exc
        except GithubException as exc:
            raise _typed(exc, what, self.connection_id) from exc
        except (requests.RequestException, ValueError) as exc:
            # dropped connections, timeouts, and bodies cut short (invalid JSON)
            raise TransientError(f"GitHub request for {what} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.upstream_response(self.connection_id, "github", status)
        if str(headers.get("x-ratelimit-remaining")) == "0":
            self._resume_at = float(headers.get("x-ratelimit-reset", time.time()))
        return headers, data

    def close(self) -> None:
        self._github.close()


def _error_body(body: str) -> Any:
    """An error answer's body: GitHub's JSON message, or the text of a proxy's error page."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {"data": body}


def _typed(exc: GithubException, what: str, connection_id: str) -> Exception:
    status = exc.status
    message = exc.data.get("message") if isinstance(exc.data, dict) else None
    detail = f"GitHub answered {status} for {what}" + (f": {message}" if message else "")
    headers = exc.headers or {}
    if status in (404, 410):
        return NotFoundError(f"{detail} (connection {connection_id}: check the name and that the token can read it)")
    if status == 401:
        return FatalError(f"bad credentials for connection {connection_id}: {detail}")
    if status == 429 or (status == 403 and retry_after(headers) is not None):
        return TransientError(detail, retry_after=retry_after(headers))
    if status >= 500:
        return TransientError(detail)
    return FatalError(f"{detail} (connection {connection_id})")

"""The one seam to GitHub's REST API: raw JSON pages through PyGithub's requester.

PyGithub's own retries and throttle are off, so tenacity (service.retry) and the token's
rate budget (service.ratebudget, shared by every partition and connection using the token) are
the single retry and pacing layer. Errors come out typed by what the caller should do:
FatalError (a person must act), TransientError (retry later). Every answer is counted by
status, and every wait for the budget, in service.metrics.
"""

from __future__ import annotations

from typing import Any

import orjson
import requests
from github import Auth, Github, GithubException
from github.GithubException import BadCredentialsException, RateLimitExceededException

from opsync.service import metrics
from opsync.service.contract import FatalError, TransientError
from opsync.service.ratebudget import budget_for
from opsync.service.retry import in_thread, with_retries
from opsync.service.toolkit import retry_after

Headers = dict[str, Any]
# A secondary rate limit that names no time to wait: GitHub's docs ask for at least a minute.
SECONDARY_LIMIT_WAIT = 60.0


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
        self._budget = budget_for(base_url, token)

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
        async with self._budget.request(self.connection_id):
            return await in_thread(self._get_blocking, path, params, what)

    def _get_blocking(self, path: str, params: dict[str, Any] | None, what: str) -> tuple[Headers, Any]:
        requester = self._github.requester
        status = None  # no answer, until one comes
        try:
            # The body is parsed here, with orjson: a page of 100 pull requests is ~1 MB of
            # JSON, and the standard library's parser took a tenth of a backfill's CPU.
            status, headers, body = requester.requestJson("GET", path, parameters=params)
            self._budget.observe(status, headers)
            if status >= 400:
                raise requester.createException(status, headers, _error_body(body))
            data = orjson.loads(body)
        except BadCredentialsException as exc:
            raise FatalError(
                f"bad credentials for connection {self.connection_id}: GitHub rejected the token "
                f"(401); set a valid token with read access to {what}"
            ) from exc
        except GithubException as exc:
            raise _typed(exc, what, self.connection_id, self._rate_limit_wait(exc)) from exc
        except (requests.RequestException, ValueError) as exc:
            # dropped connections, timeouts, and bodies cut short (invalid JSON)
            raise TransientError(f"GitHub request for {what} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            metrics.upstream_response(self.connection_id, "github", status)
        return headers, data

    def _rate_limit_wait(self, exc: GithubException) -> float | None:
        """The wait a rate-limit refusal (403 or 429) asks for; None when exc is not one.
        Retry-After, else the reset of a spent budget (the budget has read both); else, for a
        secondary limit that names neither, the minute GitHub asks for, every request paused."""
        if exc.status not in (403, 429):
            return None
        wait = retry_after(exc.headers or {})
        if wait is None and (exc.status == 429 or isinstance(exc, RateLimitExceededException)):
            wait = SECONDARY_LIMIT_WAIT
            self._budget.pause(wait)
        return wait

    def close(self) -> None:
        self._github.close()


def _error_body(body: str) -> Any:
    """An error answer's body: GitHub's JSON message, or the text of a proxy's error page."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return {"data": body}


def _typed(exc: GithubException, what: str, connection_id: str, rate_limit_wait: float | None) -> Exception:
    status = exc.status
    message = exc.data.get("message") if isinstance(exc.data, dict) else None
    detail = f"GitHub answered {status} for {what}" + (f": {message}" if message else "")
    if rate_limit_wait is not None:
        return TransientError(f"{detail} (rate limited)", rate_limit_wait)
    if status in (404, 410):
        return NotFoundError(f"{detail} (connection {connection_id}: check the name and that the token can read it)")
    if status == 401:
        return FatalError(f"bad credentials for connection {connection_id}: {detail}")
    if status >= 500:
        return TransientError(detail)
    return FatalError(f"{detail} (connection {connection_id})")

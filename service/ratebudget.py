"""One rate budget per token: what a tool's answers say is left of it, spent by every
connection and partition in this process that uses the token.

A tool counts requests per credential, not per connection: the partitions of a pull, and two
connections with one token, draw on one budget. Each answer updates it: X-RateLimit-Limit,
-Remaining and -Reset (epoch seconds, as GitHub writes it, or an ISO 8601 time, as Jira does),
and a Retry-After on a refusal pauses every request until then. Before each request,
`RateBudget.request` holds the caller back: until the reset when nothing is left; once less
than a fifth is left (or the tool says it is near the limit), long enough that what remains
lasts until the reset. So every partition slows evenly, and none draws a refusal.

GitHub keeps budgets apart by resource (X-RateLimit-Resource: core, search, graphql, ...);
the connectors spend core alone, so an answer that names another resource moves nothing here
but its Retry-After.

Budgets are found by base URL and a keyed hash of the token; the token itself is never kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from opsync.service import metrics
from opsync.service.toolkit import header, retry_after, tool_time

COUNTED_RESOURCE = "core"  # GitHub's budget of REST requests; Jira names none
LOW_SHARE = 0.2  # less than this share of the limit left: requests are spread until the reset
RESET_MARGIN = 0.05  # seconds past a reset before its window is over here too
SAME_WINDOW = 1.0  # resets closer than this (seconds) belong to one window: tools round them

_SALT = secrets.token_bytes(16)  # per process: a budget's key tells nothing about its token
_budgets: dict[tuple[str, str], RateBudget] = {}
_budgets_lock = threading.Lock()


class RateBudget:
    """What is left of one token's requests until its reset, learnt from answers and spent by
    requests. Answers are read in worker threads and requests wait in event loops, so the
    state is behind a lock and waiting is an asyncio sleep outside it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # epoch seconds, the unit of GitHub's reset
        self._lock = threading.Lock()
        self.limit: int | None = None
        # What is left of the window ending at reset_at: known only while a reset is to come,
        # less the requests sent since (and those in flight, which the tool may not have
        # counted yet when it answered).
        self.remaining: int | None = None
        self.reset_at: float | None = None
        self.paused_until = 0.0
        self._near_limit = False
        self._last_sent = 0.0
        self._in_flight = 0

    @asynccontextmanager
    async def request(self, connection_id: str) -> AsyncIterator[None]:
        """Wait until the budget allows one more request, then make it inside the block; the
        wait is counted as connection_id's in service.metrics."""
        waited = 0.0
        while (delay := self.delay()) > 0:
            await asyncio.sleep(delay)
            waited += delay
        metrics.rate_limit_wait(connection_id, waited)
        try:
            yield
        finally:
            self.done()

    def delay(self) -> float:
        """Seconds to hold the next request back; 0.0: it may go now, and it is counted as sent,
        in flight until done()."""
        now = self._clock()
        with self._lock:
            if now < self.paused_until:
                return self.paused_until - now
            if self.reset_at is not None and now >= self.reset_at + RESET_MARGIN:
                # a new window: its first answers say what it holds
                self.remaining = self.reset_at = None
                self._near_limit = False
            if self.remaining is not None and self.reset_at is not None:
                if self.remaining <= 0:
                    return self.reset_at + RESET_MARGIN - now
                if self._low():  # this request and the rest, one a share of the time left
                    due = self._last_sent + (self.reset_at - now) / (self.remaining + 1)
                    if due > now:
                        return due - now
                self.remaining -= 1
            self._last_sent = now
            self._in_flight += 1
            return 0.0

    def observe(self, status: int | None, headers: Mapping[str, Any]) -> None:
        """Learn from one answer: its status (None: no answer) and headers."""
        now = self._clock()
        with self._lock:
            if status is not None and status >= 400 and header(headers, "Retry-After") is not None:
                self.paused_until = max(self.paused_until, now + (retry_after(headers, now) or 0.0))
            if header(headers, "X-RateLimit-Resource") not in (None, COUNTED_RESOURCE):
                return  # another of the token's budgets (GitHub's search, graphql, ...)
            remaining = _whole(header(headers, "X-RateLimit-Remaining"))
            reset = _moment(header(headers, "X-RateLimit-Reset"))
            if remaining is None or reset is None or reset <= now:
                return  # without a reset to come, what is left cannot be spread over time
            if self.reset_at is None or abs(reset - self.reset_at) > SAME_WINDOW:
                self.remaining, self.reset_at = None, reset
            else:
                self.reset_at = max(self.reset_at, reset)
            # the others in flight may not be counted in this answer yet
            left = remaining - max(self._in_flight - 1, 0)
            self.remaining = left if self.remaining is None else min(self.remaining, left)
            self.limit = _whole(header(headers, "X-RateLimit-Limit")) or self.limit
            self._near_limit = str(header(headers, "X-RateLimit-NearLimit")).lower() == "true"

    def done(self) -> None:
        """A request delay() let go is over: answered, or given up."""
        with self._lock:
            self._in_flight = max(self._in_flight - 1, 0)

    def pause(self, seconds: float) -> None:
        """Hold every request back for seconds (a refusal that named no time to wait)."""
        with self._lock:
            self.paused_until = max(self.paused_until, self._clock() + seconds)

    def _low(self) -> bool:
        assert self.remaining is not None
        return self._near_limit or (self.limit is not None and self.remaining < self.limit * LOW_SHARE)


def budget_for(base_url: str, token: str) -> RateBudget:
    """The budget of token at base_url, the same for every connection of this process that
    uses them (the tool counts them together, however many connections there are)."""
    digest = hashlib.blake2b(token.encode(), key=_SALT, digest_size=16).hexdigest()
    key = (base_url.rstrip("/").lower(), digest)
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = RateBudget()
        return budget


def _whole(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _moment(value: str | None) -> float | None:
    """A reset time as epoch seconds: GitHub's epoch seconds, or Jira's ISO 8601 time."""
    if value is None:
        return None
    try:
        number: float | str = float(value)
    except ValueError:
        number = value
    moment = tool_time(number)
    return moment.timestamp() if moment is not None else None

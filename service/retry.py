"""The one retry policy: exponential backoff with jitter, bounded in attempts and time.

Connectors raise TransientError for what is worth retrying (429, 5xx, dropped
connections); a Retry-After or rate-limit reset the tool gave is honoured as a floor.
Each retry is counted by reason, and the waits a tool asked for, in service.metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from opsync.service import metrics
from opsync.service.contract import TransientError

T = TypeVar("T")

MAX_WAIT_SECONDS = 60.0


def _wait(backoff: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        delay = backoff(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientError) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, MAX_WAIT_SECONDS))
        return delay

    return wait


def _count(connection_id: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        metrics.upstream_retry(connection_id, _reason(error))
        if isinstance(error, TransientError) and error.retry_after is not None and state.next_action:
            metrics.rate_limit_wait(connection_id, state.next_action.sleep)

    return before_sleep


def _reason(error: BaseException | None) -> metrics.RetryReason:
    """Why a call is retried, from the error and the library error it was raised from
    (an HTTP client library's error carries status or status_code)."""
    cause = error.__cause__ if error is not None else None
    status = getattr(cause, "status", None) or getattr(cause, "status_code", None)
    if (isinstance(error, TransientError) and error.retry_after is not None) or status == 429:
        return metrics.RetryReason.RATE_LIMITED
    if isinstance(status, int) and status >= 500:
        return metrics.RetryReason.SERVER_ERROR
    if isinstance(cause, ValueError):  # before OSError: requests' JSONDecodeError is both
        return metrics.RetryReason.BAD_RESPONSE
    if isinstance(cause, OSError):  # requests' errors are OSErrors
        return metrics.RetryReason.NETWORK
    return metrics.RetryReason.OTHER


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    connection_id: str,
    attempts: int = 6,
    max_seconds: float = 300.0,
    initial: float = 0.5,
) -> T:
    """Run call, retrying TransientError; other errors pass through at once. connection_id
    labels the retries and waits in the metrics."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=_wait(wait_exponential_jitter(multiplier=initial, max=MAX_WAIT_SECONDS, jitter=initial)),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_seconds),
        before_sleep=_count(connection_id),
        reraise=True,
    )

    async def attempt() -> T:  # tenacity awaits only what is declared async
        return await call()

    return await retrying(attempt)


async def in_thread(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a blocking library call (a client library that does not speak asyncio) off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)

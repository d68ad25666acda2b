"""The one retry policy: exponential backoff with jitter, bounded in attempts and time.

Connectors raise TransientError for what is worth retrying (429, 5xx, dropped
connections); a Retry-After or rate-limit reset the tool gave is honoured as a floor.
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

from service.contract import TransientError

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


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 6,
    max_seconds: float = 300.0,
    initial: float = 0.5,
) -> T:
    """Run call, retrying TransientError; other errors pass through at once."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientError),
        wait=_wait(wait_exponential_jitter(multiplier=initial, max=MAX_WAIT_SECONDS, jitter=initial)),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_seconds),
        reraise=True,
    )
    async def attempt() -> T:  # tenacity awaits only what is declared async
        return await call()

    return await retrying(attempt)


async def in_thread(function: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a blocking library call (jira, PyGithub) off the event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)

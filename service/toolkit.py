"""The connector contract's support module: what every tool plugin needs, written once.

- header: a header's value, whatever the case of its name;
- verify_hmac_sha256: a webhook body signed with HMAC-SHA256 (the way most tools sign);
- retry_after: how long a tool asks to be left alone (Retry-After, or a rate-limit reset);
- tool_time: a tool's timestamp (ISO 8601 with Z, +00:00 or +0000; epoch seconds or ms) as aware UTC;
- interleaved: partitions of a pull (a project, a repository's issues) fetched at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from opsync.service.contract import WebhookRejected

__all__ = ["header", "interleaved", "retry_after", "tool_time", "verify_hmac_sha256"]

_COMPACT_OFFSET = re.compile(r"[+-]\d{4}$")
T = TypeVar("T")
K = TypeVar("K")  # a partition's name


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name (HTTP names are case-insensitive)."""
    wanted = name.lower()
    value = headers.get(wanted)  # stored and parsed headers are lower-case already
    if value is not None:
        return value
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def verify_hmac_sha256(
    body: bytes, secret: str | None, headers: Mapping[str, str], *, header_name: str, tool: str
) -> None:
    """Raise WebhookRejected unless header_name is `sha256=<hex HMAC-SHA256(secret, body)>`,
    compared in constant time, over the raw bytes as received."""
    if not secret:
        raise WebhookRejected(
            f"this {tool} connection has no webhook_secret; opsync accepts only signed deliveries:"
            f" set a secret on the {tool} webhook and the same on the connection"
        )
    signature = header(headers, header_name)
    if not signature:
        raise WebhookRejected(
            f"missing {header_name} header: the {tool} webhook has no secret set, or the"
            f" request did not come from {tool}"
        )
    algorithm, _, received = signature.strip().partition("=")
    if algorithm.lower() != "sha256" or not received:
        raise WebhookRejected(f"{header_name} must be 'sha256=<hex>', got {algorithm[:20]!r}=...")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses str with characters beyond ASCII, which a header can hold.
    if not hmac.compare_digest(expected.encode(), received.lower().encode()):
        raise WebhookRejected(
            f"{header_name} does not match the body: the {tool} webhook's secret differs"
            " from the connection's webhook_secret"
        )


def retry_after(headers: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds a tool asks to wait: Retry-After (seconds or an HTTP date), else the reset time
    of a spent rate-limit budget (X-RateLimit-Remaining 0, X-RateLimit-Reset epoch seconds)."""
    now = time.time() if now is None else now
    value = header(headers, "Retry-After")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            try:
                return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
            except (TypeError, ValueError):
                return None
    reset = header(headers, "X-RateLimit-Reset")
    if str(header(headers, "X-RateLimit-Remaining")) == "0" and reset is not None:
        try:
            return max(float(reset) - now, 0.0)
        except ValueError:
            return None
    return None


def tool_time(value: Any) -> datetime | None:
    """A tool's timestamp as aware UTC; None when it is absent or not a time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000 if abs(value) > 1e11 else value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    try:  # most are ISO 8601 as they come (Python 3.11 reads "Z" and "+0000")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is UTC:
            return parsed
    except ValueError:
        pass
    text = value.strip().replace("Z", "+00:00")
    if _COMPACT_OFFSET.search(text):
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one an offset pushes out of years 1-9999
        return None


async def interleaved(
    partitions: Mapping[K, AsyncIterator[T]], concurrency: int, ahead: int = 1
) -> AsyncIterator[tuple[K, T]]:
    """The items of every partition, each with its partition's name, as they come: at most
    `concurrency` partitions fetch at once, each at most `ahead` items before they are taken.
    A partition holds its turn for one item (one page: its request) and gives it up once the
    item is queued, so a partition between requests, or one that has ended, leaves its turn to
    the next rather than idling it, and short partitions do not leave a long one alone at the
    end. The order within a partition is kept, so a connector that moves a partition's
    checkpoint as its items are taken never gets past what the engine has stored. The first
    error of any partition stops them all and is raised here."""
    queue: asyncio.Queue[tuple[K, Any]] = asyncio.Queue(maxsize=max(1, concurrency) * ahead)
    gate = asyncio.Semaphore(max(1, concurrency))
    done = object()

    async def run(name: K, items: AsyncIterator[T]) -> None:
        try:
            pages = aiter(items)
            while True:
                async with gate:
                    try:
                        item = await anext(pages)
                    except StopAsyncIteration:
                        break
                    await queue.put((name, item))
                    del item  # not kept while this partition waits for its next turn
            await queue.put((name, done))
        except Exception as error:  # handed to the consumer, which raises it
            await queue.put((name, error))

    tasks = [asyncio.create_task(run(name, items)) for name, items in partitions.items()]
    try:
        running = len(tasks)
        while running:
            name, item = await queue.get()
            if item is done:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield name, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

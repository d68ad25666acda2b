"""A remote API's round trip, added to every answer of a simulator's API.

A real tool answers after tens to hundreds of milliseconds of network and server time; on
127.0.0.1 a simulator answers at once, which hides how a client's pace depends on how many
requests it keeps in flight. Latency holds each API request (not the /_sim admin routes) for
the simulator's latency_ms before it is served. The wait is an asyncio sleep, so requests in
flight at the same time wait together, as they would on a remote API, not one after another.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class LatentSim(Protocol):
    latency_ms: float  # set at construction, or at run time through PUT /_sim/latency


class Latency:
    """ASGI middleware: wait the simulator's latency_ms before each API request."""

    def __init__(self, app: Any, sim: LatentSim) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        delay = self.sim.latency_ms
        if delay > 0 and scope["type"] == "http" and not scope["path"].startswith("/_sim"):
            await asyncio.sleep(delay / 1000)
        await self.app(scope, receive, send)


def checked_latency(latency_ms: float) -> float:
    """latency_ms as a simulator keeps it; ValueError for what cannot be a delay."""
    value = float(latency_ms)
    if not 0 <= value <= 60_000:
        raise ValueError(f"latency_ms {latency_ms} is not between 0 and 60000")
    return value

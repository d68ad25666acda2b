"""Every simulator can answer its API after a set latency, as a remote tool does: each request
waits that long, requests in flight at once wait together (a property of the simulator that
benchmarks rely on, not a speed target), and the /_sim admin routes do not wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from opsync_simulators.confluence import ConfluenceSim
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.posthog import PostHogSim
from opsync_simulators.server import serving

LATENCY_MS = 100
IN_FLIGHT = 4


@dataclass(frozen=True)
class Tool:
    """A simulator with latency_ms, and a cheap API request it answers with 200."""

    make: Callable[[float], Any]
    path: str
    client: dict[str, Any]


TOOLS = {
    "jira": Tool(lambda ms: JiraSim(issues=5, latency_ms=ms), "/rest/api/3/field", {"auth": ("ops@acme.example", "t")}),
    "github": Tool(lambda ms: GitHubSim(items=5, latency_ms=ms), "/rate_limit", {}),
    "confluence": Tool(
        lambda ms: ConfluenceSim(pages=5, latency_ms=ms), "/wiki/api/v2/spaces", {"auth": ("ops@acme.example", "t")}
    ),
    "posthog": Tool(
        lambda ms: PostHogSim(history_days=7, latency_ms=ms),
        "/api/projects/4242/event_definitions/",
        {"headers": {"Authorization": "Bearer phx_simulated_personal_key"}},
    ),
}


def timed_get(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


@pytest.mark.parametrize("name", TOOLS)
def test_an_api_answer_comes_after_the_latency_given_at_construction(name: str) -> None:
    tool = TOOLS[name]
    with serving(tool.make(LATENCY_MS).app) as url, httpx.Client(base_url=url, timeout=10, **tool.client) as client:
        assert [timed_get(client, tool.path) >= LATENCY_MS / 1000 for _ in range(2)] == [True, True]


@pytest.mark.parametrize("name", TOOLS)
def test_requests_in_flight_at_once_wait_together_not_in_turn(name: str) -> None:
    tool = TOOLS[name]

    async def at_once(url: str) -> tuple[list[int], float]:
        async with httpx.AsyncClient(base_url=url, timeout=10, **tool.client) as client:
            await client.get(tool.path)  # the app builds its middleware on its first request
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get(tool.path) for _ in range(IN_FLIGHT)))
            return [r.status_code for r in responses], time.perf_counter() - started

    with serving(tool.make(LATENCY_MS).app) as url:
        statuses, seconds = asyncio.run(at_once(url))
    assert statuses == [200] * IN_FLIGHT
    # one after another they would take IN_FLIGHT x the latency; together, one latency and a little
    assert LATENCY_MS / 1000 <= seconds < 2 * LATENCY_MS / 1000


@pytest.mark.parametrize("name", ["jira", "github"])
def test_the_latency_is_set_at_run_time_through_the_admin_api(name: str) -> None:
    tool = TOOLS[name]
    sim = tool.make(0)
    with serving(sim.app) as url, httpx.Client(base_url=url, timeout=10, **tool.client) as client:
        assert client.get("/_sim/latency").json() == {"latency_ms": 0}
        assert client.put("/_sim/latency", json={"latency_ms": LATENCY_MS}).json() == {"latency_ms": LATENCY_MS}
        assert client.get("/_sim/latency").json() == {"latency_ms": LATENCY_MS}
        assert sim.latency_ms == LATENCY_MS
        assert timed_get(client, tool.path) >= LATENCY_MS / 1000
        client.put("/_sim/latency", json={"latency_ms": 0})
        assert sim.latency_ms == 0


@pytest.mark.parametrize("name", ["jira", "github"])
def test_a_latency_that_is_no_delay_is_refused_in_the_tools_error_body(name: str) -> None:
    tool = TOOLS[name]
    with serving(tool.make(0).app) as url, httpx.Client(base_url=url, timeout=10) as client:
        for body in ({"latency_ms": -5}, {"latency_ms": "soon"}, {"ms": 100}):
            response = client.put("/_sim/latency", json=body)
            assert response.status_code == 400
            assert "bad latency" in response.text
        assert client.get("/_sim/latency").json() == {"latency_ms": 0}


def test_a_simulator_refuses_a_negative_latency_at_construction() -> None:
    with pytest.raises(ValueError, match="latency_ms -1 is not between 0 and 60000"):
        JiraSim(issues=1, latency_ms=-1)


def test_the_admin_routes_answer_without_the_latency() -> None:
    latency_ms = 2000  # far above what an admin answer takes, so the bound says only "no wait"
    with serving(JiraSim(issues=5, latency_ms=latency_ms).app) as url, httpx.Client(base_url=url, timeout=10) as client:
        started = time.perf_counter()
        assert client.get("/_sim/latency").json() == {"latency_ms": latency_ms}
        assert client.get("/_sim/faults").status_code == 200
        assert time.perf_counter() - started < latency_ms / 1000

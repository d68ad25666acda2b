"""The Amplitude, Mixpanel and PostHog connectors against their simulators, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from opsync.connectors.amplitude.connector import AmplitudeConnector, AmplitudeSettings
from opsync.connectors.analytics.connector import AnalyticsConnector
from opsync.connectors.mixpanel.connector import MixpanelConnector, MixpanelSettings
from opsync.connectors.posthog import connector as posthog_connector
from opsync.connectors.posthog.connector import PostHogConnector, PostHogSettings
from opsync.service.config import load_config
from opsync.service.contract import FatalError, Listing, PullPage
from opsync_simulators.amplitude import AmplitudeSim
from opsync_simulators.analytics import AnalyticsSim
from opsync_simulators.mixpanel import MixpanelSim
from opsync_simulators.posthog import PostHogSim
from opsync_simulators.server import serving


@dataclass(frozen=True)
class Tool:
    name: str
    simulator: Callable[..., AnalyticsSim]
    connector: type[AnalyticsConnector]
    settings: Callable[..., Any]
    credentials: dict[str, Any]
    wrong: dict[str, Any]  # the same credentials with the secret wrong


TOOLS = {
    "amplitude": Tool(
        "amplitude",
        AmplitudeSim,
        AmplitudeConnector,
        AmplitudeSettings,
        {"api_key": "amp-api-key", "token": "amp-secret-key"},
        {"token": "not-the-secret"},
    ),
    "mixpanel": Tool(
        "mixpanel",
        MixpanelSim,
        MixpanelConnector,
        MixpanelSettings,
        {"project_id": 2195193, "username": "opsync.1a2b3c.mp-service-account", "token": "mp-secret"},
        {"token": "not-the-secret"},
    ),
    "posthog": Tool(
        "posthog",
        PostHogSim,
        PostHogConnector,
        PostHogSettings,
        {"project_id": "4242", "token": "phx_simulated_personal_key"},
        {"token": "phx_not_the_key"},
    ),
}


@pytest.fixture(params=sorted(TOOLS))
def tool(request: pytest.FixtureRequest) -> Tool:
    return TOOLS[request.param]


@dataclass
class Running:
    sim: AnalyticsSim
    url: str
    tool: Tool

    def connector(self, **settings: Any) -> AnalyticsConnector:
        values = {"id": f"{self.tool.name}-test", "base_url": self.url, **self.tool.credentials, **settings}
        return self.tool.connector(self.tool.settings(**values))


@pytest.fixture
def start(tool: Tool) -> Iterator[Callable[..., Running]]:
    """Serve the tool's simulator, built with the options given."""
    with ExitStack() as stack:

        def started(**options: Any) -> Running:
            sim = tool.simulator(**options)
            return Running(sim, stack.enter_context(serving(sim.app)), tool)

        yield started


@pytest.fixture
def running(start: Callable[..., Running]) -> Running:
    """The tool's simulator as it comes, served."""
    return start()


def pull(connector: AnalyticsConnector, cursor: str | None = None) -> list[PullPage]:
    async def run() -> list[PullPage]:
        try:
            return [page async for page in connector.pull(cursor)]
        finally:
            await connector.aclose()

    return asyncio.run(run())


def list_ids(connector: AnalyticsConnector) -> Listing:
    async def run() -> Listing:
        try:
            return await connector.list_ids()
        finally:
            await connector.aclose()

    return asyncio.run(run())


def numbers(pages: list[PullPage]) -> dict[tuple[str, str, str], Any]:
    """(event, day, measure) -> value, from every record pulled."""
    return {
        (r.payload["event"], r.payload["day"], r.payload["measure"]): r.payload["value"]
        for page in pages
        for r in page.records
    }


def expected(sim: AnalyticsSim, first: date, last: date, events: list[str] | None = None) -> dict:
    truth = sim.truth()
    return {
        (event, day, measure): getattr(count, measure)
        for (event, day), count in truth.days.items()
        if first.isoformat() <= day <= last.isoformat() and (events is None or event in events)
        for measure in ("totals", "uniques")
    }


def ids(pages: list[PullPage]) -> list[str]:
    return [record.external_id for page in pages for record in page.records]


def test_a_backfill_pulls_every_events_daily_numbers_as_the_tool_holds_them(running: Running) -> None:
    pages = pull(running.connector(history_days=120))
    today = running.sim.today()
    assert numbers(pages) == expected(running.sim, today - timedelta(days=119), today)
    assert len(ids(pages)) == len(set(ids(pages)))
    record = pages[0].records[0]
    assert record.record_type == "event_day"
    assert record.external_id == "|".join(record.payload[k] for k in ("event", "day", "measure"))
    assert record.payload["tool"] == running.tool.name
    assert record.version is not None and record.version.utcoffset() == timedelta(0)


def test_pages_are_chunks_of_days_and_the_cursor_is_the_last_complete_day(running: Running) -> None:
    pages = pull(running.connector(history_days=70, chunk_days=30))
    today = running.sim.today()
    assert [page.cursor for page in pages] == [
        (today - timedelta(days=40)).isoformat(),
        (today - timedelta(days=10)).isoformat(),
        (today - timedelta(days=1)).isoformat(),  # today is pulled, but is not over
    ]
    assert {r.payload["day"] for r in pages[-1].records} >= {today.isoformat()}


def test_an_incremental_pull_asks_again_for_the_look_back_and_returns_a_revised_day_with_its_new_numbers(
    running: Running,
) -> None:
    sim = running.sim
    first = pull(running.connector(history_days=30))
    cursor = first[-1].cursor
    assert cursor == (sim.today() - timedelta(days=1)).isoformat()
    day = sim.today() - timedelta(days=2)
    before = sim.count("Checkout Completed", day)
    after = sim.revise("Checkout Completed", day, events=40, users=15)

    again = pull(running.connector(history_days=30), cursor)

    pulled = numbers(again)
    assert pulled[("Checkout Completed", day.isoformat(), "totals")] == before.totals + 40 == after.totals
    assert pulled[("Checkout Completed", day.isoformat(), "uniques")] == before.uniques + 15
    assert len(ids(again)) == len(set(ids(again)))
    # the last 3 complete days again (look_back_days), and today
    assert {key[1] for key in pulled} == {(sim.today() - timedelta(days=n)).isoformat() for n in range(4)}
    assert pulled == expected(sim, sim.today() - timedelta(days=3), sim.today())
    revised = next(r for p in again for r in p.records if r.external_id == f"Checkout Completed|{day}|totals")
    earlier = next(r for p in first for r in p.records if r.external_id == revised.external_id)
    assert revised.version is not None and earlier.version is not None and revised.version > earlier.version


def test_429_and_5xx_are_retried_and_the_pull_completes(start: Callable[..., Running]) -> None:
    running = start(max_concurrent=None, rate_limit=None)
    sim = running.sim
    sim.inject(status=429, retry_after=0.2)
    sim.inject(status=503)
    sim.inject(status=500)
    pages = pull(running.connector(history_days=20, events=["Signed Up"]))
    today = sim.today()
    assert numbers(pages) == expected(sim, today - timedelta(days=19), today, ["Signed Up"])
    assert {kind: n for kind, n in sim.faults.served().items()} == {"429": 1, "503": 1, "500": 1}


def test_a_dropped_connection_and_a_malformed_body_are_retried(running: Running) -> None:
    sim = running.sim
    sim.inject(drop_connection=True)
    sim.inject(malformed=True)
    pages = pull(running.connector(history_days=5, events=["Invite Sent"]))
    assert numbers(pages) == expected(sim, sim.today() - timedelta(days=4), sim.today(), ["Invite Sent"])


def test_the_tools_own_rate_and_concurrency_limits_are_waited_out(start: Callable[..., Running]) -> None:
    running = start(rate_limit=3, max_concurrent=2)
    events = ["Signed Up", "Invite Sent", "Checkout Started"]
    pages = pull(running.connector(history_days=20, chunk_days=10, events=events))
    today = running.sim.today()
    assert numbers(pages) == expected(running.sim, today - timedelta(days=19), today, events)


def test_bad_credentials_are_fatal_and_say_what_to_fix(running: Running) -> None:
    with pytest.raises(FatalError, match=rf"{running.tool.name} refused the credentials") as raised:
        pull(running.connector(**running.tool.wrong))
    message = str(raised.value)
    assert "401" in message and "set valid" in message
    assert all(str(secret) not in message for secret in running.tool.wrong.values())


def test_a_query_the_tool_refuses_is_fatal(running: Running) -> None:
    running.sim.inject(status=400, match="segmentation|query")
    with pytest.raises(FatalError, match="answered 400"):
        pull(running.connector(history_days=3, events=["Signed Up"]))


def test_list_ids_names_every_event_day_and_measure_the_connection_keeps(running: Running) -> None:
    listing = list_ids(running.connector(history_days=10))
    names = running.sim.event_names()
    assert len(listing.ids["event_day"]) == len(names) * 10 * 2
    assert f"Signed Up|{running.sim.today().isoformat()}|uniques" in listing.ids["event_day"]
    assert listing.containers == {name.lower() for name in names}


def test_the_events_setting_limits_what_is_pulled_and_listed(running: Running) -> None:
    connector = running.connector(history_days=4, events=["Checkout Completed"])
    assert {key[0] for key in numbers(pull(connector))} == {"Checkout Completed"}
    assert list_ids(running.connector(history_days=4, events=["Checkout Completed"])).containers == {
        "checkout completed"
    }


def test_a_cursor_that_is_not_a_day_pulls_the_whole_window_again(running: Running) -> None:
    pages = pull(running.connector(history_days=5, events=["Signed Up"]), "not-a-date")
    assert len(numbers(pages)) == 5 * 2


def test_mixpanel_names_a_project_the_service_account_cannot_read() -> None:
    sim = MixpanelSim()
    with serving(sim.app) as url:
        settings = MixpanelSettings(id="mp", base_url=url, **{**TOOLS["mixpanel"].credentials, "project_id": 7})
        with pytest.raises(FatalError, match="does not have access to project 7"):
            pull(MixpanelConnector(settings))


def test_posthog_follows_the_event_definitions_next_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(posthog_connector, "DEFINITIONS_PER_PAGE", 3)
    sim = PostHogSim()
    with serving(sim.app) as url:
        listing = list_ids(PostHogConnector(PostHogSettings(id="ph", base_url=url, **TOOLS["posthog"].credentials)))
    assert listing.containers == {name.lower() for name in sim.event_names()}
    assert sim.requests["/api/projects/4242/event_definitions/"] == 4  # 10 events, 3 a page


def test_one_connector_pulls_again_in_another_event_loop(running: Running) -> None:
    """The hub keeps a connector across runs, and each run may have its own loop."""
    connector = running.connector(history_days=2, events=["Signed Up"])

    async def once() -> list[PullPage]:
        return [page async for page in connector.pull(None)]

    assert numbers(asyncio.run(once())) == numbers(asyncio.run(once()))
    asyncio.run(connector.aclose())


def test_a_connections_file_configures_each_tool_with_its_secret_from_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "connections.yaml"
    file.write_text(
        """connections:
  - {id: amp, kind: amplitude, api_key: amp-api-key, token: "${AMP_SECRET}", events: [Signed Up]}
  - {id: mp, kind: mixpanel, project_id: 2195193, username: opsync.sa, token: "${MP_SECRET}", look_back_days: 5}
  - {id: ph, kind: posthog, project_id: "4242", token: "${PH_KEY}", start_date: 2026-01-01, timezone: Europe/Berlin}
"""
    )
    environ = {"AMP_SECRET": "s1", "MP_SECRET": "s2", "PH_KEY": "phx_3"}
    connections = load_config(file, environ).connections
    amp, mp, ph = connections.values()
    assert isinstance(amp, AmplitudeSettings) and isinstance(mp, MixpanelSettings) and isinstance(ph, PostHogSettings)
    assert [c.token.get_secret_value() for c in (amp, mp, ph)] == ["s1", "s2", "phx_3"]
    assert amp.base_url == "https://amplitude.com" and amp.events == ["Signed Up"] and mp.look_back_days == 5
    assert ph.pull_every_minutes == 60 and ph.timezone == "Europe/Berlin" and ph.start_date == date(2026, 1, 1)

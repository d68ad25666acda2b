"""One rate budget per token: the partitions of a pull, and connections with one token, slow
down together as the budget runs low and wait for its reset, instead of drawing refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import pairwise

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from opsync.connectors.github.client import SECONDARY_LIMIT_WAIT, GitHubClient
from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service import ratebudget
from opsync.service.config import HubConfig
from opsync.service.contract import ConnectionSettings, TransientError
from opsync.service.hub import Hub
from opsync.service.models import StoredPayload, table_of
from opsync.service.ratebudget import RESET_MARGIN, RateBudget, budget_for
from opsync.service.settings import Settings
from opsync.service.sync import sync_connection
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

REPOS = ("acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web")
START = 1_800_000_000.0  # the fake clock's epoch seconds


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def budget_with(clock: FakeClock, **headers: str) -> RateBudget:
    budget = RateBudget(clock)
    budget.observe(200, headers)
    return budget


def sent_until(budget: RateBudget, clock: FakeClock, deadline: float) -> list[float]:
    """When requests went, sending each as soon as the budget lets it (answered at once), until
    the fake clock reaches deadline."""
    sent = []
    while clock.now < deadline:
        delay = budget.delay()
        if delay > 0:
            clock.now += delay
            continue
        sent.append(clock.now)
        budget.done()
    return sent


# --- the arithmetic, on a fake clock -------------------------------------------------------


def test_a_plentiful_budget_holds_no_request_back() -> None:
    clock = FakeClock()
    budget = budget_with(
        clock, **{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "90", "X-RateLimit-Reset": str(int(START + 60))}
    )
    assert [budget.delay() for _ in range(10)] == [0.0] * 10


def test_a_spent_budget_holds_every_request_until_its_reset() -> None:
    clock = FakeClock()
    reset = START + 30
    budget = budget_with(
        clock, **{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(reset))}
    )
    assert budget.delay() == reset + RESET_MARGIN - START
    clock.now = reset + RESET_MARGIN
    assert budget.delay() == 0.0  # a new window: its answers will say what it holds


def test_a_low_budget_is_spread_evenly_until_the_reset_and_never_overdrawn() -> None:
    clock = FakeClock()
    reset = START + 20
    budget = budget_with(
        clock, **{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "10", "X-RateLimit-Reset": str(int(reset))}
    )
    sent = sent_until(budget, clock, reset)
    assert len(sent) == 10  # all that was left, and no more, before the reset
    gaps = [later - earlier for earlier, later in pairwise(sent)]
    assert min(gaps) >= 1.5 and max(gaps) <= 2.5  # ~20 s / 10, not all at once then a long wait
    assert sent[-1] <= reset


def test_jira_near_limit_and_an_iso_8601_reset_slow_requests_down() -> None:
    clock = FakeClock()
    reset = datetime.fromtimestamp(START + 10, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    budget = budget_with(
        clock, **{"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": reset, "X-RateLimit-NearLimit": "true"}
    )
    assert budget.reset_at == START + 10
    assert len(sent_until(budget, clock, START + 10)) == 5


def test_retry_after_on_a_refusal_pauses_every_request() -> None:
    clock = FakeClock()
    budget = RateBudget(clock)
    budget.observe(429, {"Retry-After": "3", "RateLimit-Reason": "jira-burst-based"})
    assert budget.delay() == 3.0
    clock.now += 3
    assert budget.delay() == 0.0


def test_a_secondary_limit_without_a_time_pauses_for_what_the_caller_says() -> None:
    clock = FakeClock()
    budget = RateBudget(clock)
    budget.pause(60)
    assert budget.delay() == 60.0


def test_requests_in_flight_count_against_what_an_answer_says_is_left() -> None:
    clock = FakeClock()
    budget = RateBudget(clock)
    assert [budget.delay() for _ in range(3)] == [0.0] * 3  # three partitions send at once
    reset = str(int(START + 10))
    budget.observe(200, {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "3", "X-RateLimit-Reset": reset})
    budget.done()
    # the other two may not have been counted yet when the answer was written
    assert budget.remaining == 1
    assert len(sent_until(budget, clock, START + 10)) == 1  # one more before the reset, not three


def test_an_answer_from_an_earlier_window_does_not_undo_a_later_one() -> None:
    clock = FakeClock()
    budget = budget_with(
        clock, **{"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "40", "X-RateLimit-Reset": str(int(START + 30))}
    )
    budget.observe(200, {"X-RateLimit-Limit": "50", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(START))})
    assert budget.remaining == 40 and budget.delay() == 0.0


def test_an_answer_about_another_github_resource_leaves_the_core_budget_alone() -> None:
    clock = FakeClock()
    reset = str(int(START + 60))
    budget = budget_with(
        clock,
        **{"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4000", "X-RateLimit-Reset": reset},
        **{"X-RateLimit-Resource": "core"},
    )
    # the search budget (30 a minute) nearly spent says nothing about core's
    budget.observe(
        200,
        {"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        | {"X-RateLimit-Resource": "search"},
    )
    assert [budget.delay() for _ in range(5)] == [0.0] * 5
    budget.observe(
        200,
        {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        | {"X-RateLimit-Resource": "core"},
    )
    assert budget.delay() == pytest.approx(60 + RESET_MARGIN)


def test_budgets_are_one_per_base_url_and_token_and_keep_no_token() -> None:
    token = "ghp_budget_identity_secret"
    budget = budget_for("https://api.github.example/", token)
    assert budget_for("https://api.github.example", token) is budget
    assert budget_for("https://api.github.example", token + "x") is not budget
    assert budget_for("https://ghe.example/api/v3", token) is not budget
    assert not any(token in part for key in ratebudget._budgets for part in key)


def test_a_github_secondary_limit_that_names_no_wait_pauses_every_request_a_minute() -> None:
    token = "ghp_budget_secondary"
    sim = GitHubSim(items=5, token=token, repos=REPOS[:1])
    sim.inject(status=403, count=1)  # "You have exceeded a secondary rate limit", no Retry-After
    with serving(sim.app) as url:
        client = GitHubClient("gh-secondary", url, token, page_size=10)
        with pytest.raises(TransientError) as refused:
            asyncio.run(client._get_once(f"/repos/{REPOS[0]}/issues", None, f"issues of {REPOS[0]}"))
        client.close()
    assert refused.value.retry_after == SECONDARY_LIMIT_WAIT == 60
    assert budget_for(url, token).delay() > 55  # every partition and connection with the token


# --- the Jira simulator's budget ------------------------------------------------------------


def test_the_jira_simulator_answers_with_jira_clouds_rate_limit_headers_and_429_when_spent() -> None:
    sim = JiraSim(issues=5, rate_limit=5, rate_window_seconds=30)
    with serving(sim.app) as url:
        with httpx.Client(base_url=url, auth=("ops@acme.example", "token-a")) as client:
            answers = [client.get("/rest/api/3/myself") for _ in range(6)]
            other = httpx.get(url + "/rest/api/3/myself", auth=("ops@acme.example", "token-b"))
            admin = client.get("/_sim/rate-limit").json()
            assert client.put("/_sim/rate-limit", json={"limit": None}).json() == {"limit": None}
            unlimited = client.get("/rest/api/3/myself")
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["4", "3", "2", "1", "0", "0"]
    assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"5"}
    assert [a.headers.get("X-RateLimit-NearLimit") for a in answers] == [None] * 4 + ["true"] * 2
    refused = answers[-1]
    reset = datetime.strptime(refused.headers["X-RateLimit-Reset"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 0 < (reset - datetime.now(UTC)).total_seconds() <= 31
    assert 1 <= int(refused.headers["Retry-After"]) <= 31
    assert refused.headers["RateLimit-Reason"] == "jira-burst-based"
    assert refused.json()["errorMessages"] == ["Rate limit exceeded."]
    assert other.status_code == 200 and other.headers["X-RateLimit-Remaining"] == "4"  # each token its own
    assert admin == {"limit": 5, "window_seconds": 30.0, "refused": 1}
    assert unlimited.status_code == 200 and "X-RateLimit-Remaining" not in unlimited.headers


# --- backfills against simulators with a small budget --------------------------------------


@contextmanager
def hub_of(database_url: str, *connections: ConnectionSettings) -> Iterator[Hub]:
    hub = Hub.open(Settings(database_url=database_url), HubConfig(connections={c.id: c for c in connections}))
    try:
        yield hub
    finally:
        asyncio.run(hub.close())


def stored(hub: Hub, connection_id: str) -> set[tuple[str, str]]:
    table = table_of(StoredPayload)
    query = sa.select(table.c.record_type, table.c.external_id).where(table.c.connection_id == connection_id)
    with hub.engine.connect() as db:
        return {(record_type, external_id) for record_type, external_id in db.execute(query)}


def github_truth(sim: GitHubSim, repos: tuple[str, ...] = REPOS) -> set[tuple[str, str]]:
    return {
        ("pull_request", str(item.pull_id)) if item.is_pull else ("issue", str(item.issue_id))
        for repo in repos
        for item in sim.items_in(repo)
        if not item.deleted
    }


def waited(connection_id: str) -> float:
    sample = REGISTRY.get_sample_value("opsync_upstream_rate_limit_wait_seconds_total", {"connection": connection_id})
    return sample or 0.0


def github(connection_id: str, url: str, token: str, repos: tuple[str, ...]) -> GitHubSettings:
    return GitHubSettings(
        id=connection_id,
        base_url=url,
        token=token,
        repos=list(repos),
        page_size=10,
        max_concurrency=4,
        pull_every_minutes=600,
    )


def test_a_github_backfill_of_partitions_waits_for_the_reset_instead_of_drawing_refusals(database_url) -> None:
    token = "ghp_budget_backfill"
    # ~45 pages (issues and pulls of four repositories, 10 a page) against 12 requests a second
    sim = GitHubSim(items=240, seed=31, token=token, repos=REPOS, rate_limit=12, rate_window_seconds=1.0)
    with serving(sim.app) as url, hub_of(database_url, github("gh-budget", url, token, REPOS)) as hub:
        run = asyncio.run(sync_connection(hub, "gh-budget"))
        assert run.status == "succeeded", run.errors
        assert stored(hub, "gh-budget") == github_truth(sim)
    assert sim.rate_refused == 0
    assert waited("gh-budget") > 1  # the partitions waited for resets instead


def test_two_github_connections_with_one_token_share_its_budget(database_url) -> None:
    token = "ghp_budget_shared"
    sim = GitHubSim(items=240, seed=32, token=token, repos=REPOS, rate_limit=12, rate_window_seconds=1.0)
    first, second = REPOS[:2], REPOS[2:]
    with serving(sim.app) as url:
        connections = github("gh-share-a", url, token, first), github("gh-share-b", url, token, second)
        with hub_of(database_url, *connections) as hub:

            async def both() -> list[str]:
                runs = await asyncio.gather(sync_connection(hub, "gh-share-a"), sync_connection(hub, "gh-share-b"))
                return [run.status for run in runs]

            assert asyncio.run(both()) == ["succeeded", "succeeded"]
            assert stored(hub, "gh-share-a") == github_truth(sim, first)
            assert stored(hub, "gh-share-b") == github_truth(sim, second)
    assert sim.rate_refused == 0  # eight partitions in flight, one budget


def test_a_jira_backfill_of_projects_slows_to_its_budget_instead_of_drawing_429s(database_url) -> None:
    projects = ("PAY", "CHK", "GRO", "OPS")
    # ~30 requests (a search page of 10 at a time per project, serverInfo, fields) against 12 a second
    sim = JiraSim(issues=200, seed=33, projects=projects, rate_limit=12, rate_window_seconds=1.0)
    settings = JiraSettings(
        id="jira-budget",
        kind="jira",
        base_url="http://127.0.0.1",  # replaced below, once the simulator serves
        email="ops@acme.example",
        token="jira-budget-token",
        projects=list(projects),
        page_size=10,
        max_concurrency=4,
        pull_every_minutes=600,
    )
    with serving(sim.app) as url, hub_of(database_url, settings.model_copy(update={"base_url": url})) as hub:
        run = asyncio.run(sync_connection(hub, "jira-budget"))
        assert run.status == "succeeded", run.errors
        assert {external_id for _, external_id in stored(hub, "jira-budget")} == sim.ids()
    assert sim.budget is not None and sim.budget.refused == 0
    assert waited("jira-budget") > 1

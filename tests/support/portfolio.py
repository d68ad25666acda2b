"""A hub over both simulators (Jira and GitHub), backfilled, for tests that only read it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from hub_harness import RunningHub, running_hub

from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service.config import HubConfig
from opsync_simulators.github import ALL_REPOS, GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving


@dataclass
class Portfolio:
    """The backfilled hub and the simulated tools it pulled."""

    hub: RunningHub
    jira: JiraSim
    github: GitHubSim


@contextmanager
def backfilled_portfolio(
    database_url: str, *, jira_issues: int, github_items: int, seed: int, secret: str
) -> Iterator[Portfolio]:
    """Connections "jira" and "gh" to fresh simulators, each pulled once before this yields."""
    jira = JiraSim(issues=jira_issues, seed=seed, webhook_secret=secret)
    github = GitHubSim(items=github_items, jira_keys=jira.key_numbers(), token="t", webhook_secret=secret)
    with ExitStack() as stack:
        jira_url, github_url = stack.enter_context(serving(jira.app)), stack.enter_context(serving(github.app))
        config = HubConfig(
            connections={
                "jira": JiraSettings(
                    id="jira",
                    kind="jira",
                    base_url=jira_url,
                    email="ops@acme.example",
                    token="t",
                    webhook_secret=secret,
                    projects=["PAY", "CHK", "GRO"],
                ),
                "gh": GitHubSettings(
                    id="gh", kind="github", base_url=github_url, token="t", webhook_secret=secret, repos=list(ALL_REPOS)
                ),
            }
        )
        running = stack.enter_context(running_hub(database_url, config))
        deadline = time.monotonic() + 60
        while True:
            runs = running.client.get("/api/v1/sync-runs").json()
            if {r["connection_id"] for r in runs if r["status"] != "running"} == {"jira", "gh"}:
                break
            assert time.monotonic() < deadline, f"the backfill did not finish: {runs}"
            time.sleep(0.05)
        yield Portfolio(running, jira, github)


@contextmanager
def backfilled_hub(
    database_url: str, *, jira_issues: int, github_items: int, seed: int, secret: str
) -> Iterator[RunningHub]:
    """The hub of backfilled_portfolio, for tests that read the hub only."""
    with backfilled_portfolio(
        database_url, jira_issues=jira_issues, github_items=github_items, seed=seed, secret=secret
    ) as portfolio:
        yield portfolio.hub

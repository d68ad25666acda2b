"""The GitHub connector against the GitHub simulator, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from opsync.connectors.github.connector import GitHubConnector, GitHubSettings
from opsync.service.contract import FatalError, PullPage
from opsync_simulators.github import GitHubSim
from opsync_simulators.server import serving

TOKEN = "ghp_simulated"


def connector(base_url: str, **settings: Any) -> GitHubConnector:
    values: dict[str, Any] = {"id": "gh", "base_url": base_url, "token": TOKEN, "org": "acme"}
    values.update(settings)
    if "repos" in settings:
        values.pop("org")
    return GitHubConnector(GitHubSettings(**values))


def pull_all(conn: GitHubConnector, cursor: str | None = None) -> list[PullPage]:
    async def run() -> list[PullPage]:
        return [page async for page in conn.pull(cursor)]

    return asyncio.run(run())


def records(pages: list[PullPage]) -> list[tuple[str, str]]:
    return [(r.record_type, r.external_id) for page in pages for r in page.records]


def expected(sim: GitHubSim) -> set[tuple[str, str]]:
    result = set()
    for item in sim.all_items():
        if not item.deleted:
            result.add(("pull_request", str(item.pull_id)) if item.is_pull else ("issue", str(item.issue_id)))
    return result


def test_settings_require_exactly_one_of_repos_or_org() -> None:
    with pytest.raises(ValidationError, match="exactly one of repos"):
        GitHubSettings(id="gh", token="x")
    with pytest.raises(ValidationError, match="exactly one of repos"):
        GitHubSettings(id="gh", token="x", org="acme", repos=["acme/payments"])
    with pytest.raises(ValidationError, match="owner/name"):
        GitHubSettings(id="gh", token="x", repos=["payments"])
    assert GitHubSettings(id="gh", token="x", org="acme").base_url == "https://api.github.com"


def test_full_pull_yields_every_issue_and_pull_request_exactly_once() -> None:
    sim = GitHubSim(items=450, seed=3, token=TOKEN)
    with serving(sim.app) as url:
        pages = pull_all(connector(url, page_size=25))
    seen = records(pages)
    assert len(seen) == len(set(seen))
    assert set(seen) == expected(sim)
    by_type = {r.record_type: r for page in pages for r in page.records}
    assert "pull_request" not in by_type["issue"].payload
    assert "head" in by_type["pull_request"].payload
    assert by_type["issue"].version is not None and by_type["issue"].version.tzinfo is not None


def test_full_pull_costs_one_request_per_list_page_and_no_request_per_record() -> None:
    sim = GitHubSim(items=600, seed=4, token=TOKEN)
    with serving(sim.app) as url:
        pull_all(connector(url, page_size=50))
    per_record = [p for p in sim.requests if p.rstrip("/").split("/")[-1].isdigit()]
    assert per_record == []
    rows_per_repo = [
        (len(items), sum(i.is_pull for i in items)) for items in (sim.items_in(repo) for repo in sim.repos)
    ]
    # issues list carries PRs too; a page boundary re-reads at most one second's worth
    pages = sum(math.ceil(n / 49) + math.ceil(prs / 50) for n, prs in rows_per_repo)
    assert sum(sim.requests.values()) <= pages + 1  # + the org's repository list


def test_pull_resumed_from_a_mid_run_cursor_misses_nothing() -> None:
    sim = GitHubSim(items=300, seed=5, token=TOKEN)
    with serving(sim.app) as url:
        pages = pull_all(connector(url, page_size=20))
        crash_after = len(pages) // 2 + 1  # somewhere inside a repository's streams
        stored = records(pages[:crash_after])
        resumed = pull_all(connector(url, page_size=20), pages[crash_after - 1].cursor)
    assert set(stored) | set(records(resumed)) == expected(sim)
    assert len(records(resumed)) < len(expected(sim))  # it did not start over


def test_pull_resumed_inside_the_pull_request_listing_misses_nothing() -> None:
    sim = GitHubSim(items=200, seed=6, repos=("acme/payments",), token=TOKEN)
    with serving(sim.app) as url:
        pages = pull_all(connector(url, repos=["acme/payments"], page_size=10))
        mid = next(
            n
            for n, p in enumerate(pages)
            if json.loads(p.cursor)["repos"]["acme/payments"].get("pulls", {}).get("page", 1) > 2
        )
        resumed = pull_all(connector(url, repos=["acme/payments"], page_size=10), pages[mid].cursor)
    assert set(records(pages[: mid + 1])) | set(records(resumed)) == expected(sim)


def test_incremental_pull_returns_only_what_changed_since_the_cursor() -> None:
    sim = GitHubSim(items=200, seed=7, token=TOKEN)
    with serving(sim.app) as url:
        conn = connector(url)
        cursor = pull_all(conn)[-1].cursor
        issue = next(i for i in sim.items_in("acme/ledger") if not i.is_pull)
        pr = next(i for i in sim.items_in("acme/checkout") if i.is_pull and i.state == "open")
        sim.update_issue("acme/ledger", issue.number, title="Retitled by a human")
        sim.update_pull("acme/checkout", pr.number, merged=True)
        new = sim.create_issue("acme/payments", "Brand new")
        changed = [r for page in pull_all(conn, cursor) for r in page.records]
    by_id = {(r.record_type, r.external_id): r for r in changed}
    assert by_id[("issue", str(issue.issue_id))].payload["title"] == "Retitled by a human"
    assert by_id[("pull_request", str(pr.pull_id))].payload["merged_at"] is not None
    assert ("issue", str(new["id"])) in by_id
    assert len(changed) < 20  # the overlap re-reads a little, never everything


def test_pull_retries_rate_limits_and_server_errors_then_succeeds() -> None:
    sim = GitHubSim(items=60, seed=8, token=TOKEN)
    with serving(sim.app) as url:
        sim.inject(status=429, retry_after=1, count=1)
        sim.inject(status=403, retry_after=0, count=1)  # GitHub's secondary rate limit
        sim.inject(status=502, count=1)
        pages = pull_all(connector(url))
    assert set(records(pages)) == expected(sim)


def test_pull_retries_dropped_connections_and_malformed_bodies() -> None:
    sim = GitHubSim(items=60, seed=9, token=TOKEN)
    with serving(sim.app) as url:
        sim.inject(drop_connection=True, count=1)
        sim.inject(malformed=True, count=1)
        sim.inject(delay_seconds=0.2, count=1)
        pages = pull_all(connector(url))
    assert set(records(pages)) == expected(sim)


def test_pull_waits_for_the_rate_limit_reset_instead_of_failing() -> None:
    sim = GitHubSim(items=40, seed=10, token=TOKEN, rate_limit=4, rate_window_seconds=1.0)
    with serving(sim.app) as url:
        pages = pull_all(connector(url, page_size=10))
    assert set(records(pages)) == expected(sim)


def test_bad_token_is_a_fatal_error_naming_the_connection() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    with serving(sim.app) as url:
        with pytest.raises(FatalError, match="bad credentials for connection gh"):
            pull_all(connector(url, token="wrong"))


def test_missing_repository_is_a_fatal_error_naming_it() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    with serving(sim.app) as url:
        with pytest.raises(FatalError, match="acme/nope"):
            pull_all(connector(url, repos=["acme/nope"]))


def test_github_enterprise_base_url_with_api_v3_works() -> None:
    sim = GitHubSim(items=80, seed=11, token=TOKEN)
    with serving(sim.app) as url:
        pages = pull_all(connector(url + "/api/v3", repos=["acme/payments", "acme/growth-web"]))
    got = [r for page in pages for r in page.records]
    assert {r.payload["url"].split("/repos/")[0] for r in got} == {url + "/api/v3"}
    assert len(got) == len(sim.items_in("acme/payments")) + len(sim.items_in("acme/growth-web"))


def test_list_ids_names_every_issue_and_pull_request_and_no_deleted_issue() -> None:
    sim = GitHubSim(items=150, seed=12, token=TOKEN)
    gone = next(i for i in sim.items_in("acme/payments") if not i.is_pull)
    sim.delete_issue("acme/payments", gone.number)
    with serving(sim.app) as url:
        ids = asyncio.run(connector(url).list_ids())
    assert {(t, i) for t, values in ids.ids.items() for i in values} == expected(sim)
    assert str(gone.issue_id) not in ids.ids["issue"]


def test_fetch_one_finds_a_record_from_its_stored_payload() -> None:
    sim = GitHubSim(items=60, seed=13, token=TOKEN)
    with serving(sim.app) as url:
        conn = connector(url)
        stored = {(r.record_type, r.external_id): r for page in pull_all(conn) for r in page.records}
        issue_key = next(k for k in stored if k[0] == "issue")
        pr_key = next(k for k in stored if k[0] == "pull_request")
        number = stored[issue_key].payload["number"]
        repo = stored[issue_key].payload["repository_url"].split("/repos/")[1]
        sim.update_issue(repo, number, title="Changed since")

        async def run() -> tuple[Any, Any, Any]:
            issue = await conn.fetch_one(*issue_key, known=stored[issue_key].payload)
            pr = await conn.fetch_one(*pr_key, known=stored[pr_key].payload)
            sim.delete_issue(repo, number)
            gone = await conn.fetch_one(*issue_key, known=stored[issue_key].payload)
            return issue, pr, gone

        issue, pr, gone = asyncio.run(run())
    assert issue.payload["title"] == "Changed since"
    assert pr.external_id == pr_key[1] and pr.payload["additions"] >= 1  # the full PR
    assert gone is None
    assert [p for p in sim.requests if p.endswith(f"/issues/{number}")]


def test_fetch_one_without_a_stored_payload_says_what_is_missing() -> None:
    with pytest.raises(FatalError, match="repository and number"):
        asyncio.run(connector("http://127.0.0.1:9").fetch_one("issue", "1", None))


def test_default_mapping_is_the_shipped_github_yaml() -> None:
    assert GitHubConnector.default_mapping().name == "github.yaml"
    assert GitHubConnector.default_mapping().is_file()

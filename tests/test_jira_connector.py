"""The Jira connector against the simulator over real HTTP: pulls, cursors, ids, faults."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from opsync.connectors.jira.connector import JiraConnector, JiraSettings
from opsync.service.contract import FatalError, PullPage, RawRecord
from opsync.service.mapping import load_mapping
from opsync_simulators.jira import JiraSim
from opsync_simulators.jira_data import SimIssue
from opsync_simulators.server import serving

EMAIL, TOKEN = "ops@acme.example", "api-token"
NOW = datetime(2026, 3, 4, 15, 30, 12, 345000, tzinfo=UTC)  # a pinned "now" for the seeded history


def connector(
    url: str,
    token: str = TOKEN,
    projects: tuple[str, ...] = ("PAY", "CHK", "GRO"),
    page_size: int = 50,
    slice_issues: int = 5000,
) -> JiraConnector:
    return JiraConnector(
        JiraSettings(
            id="jira-test",
            kind="jira",
            base_url=url,
            email=EMAIL,
            token=token,
            projects=list(projects),
            page_size=page_size,
            slice_issues=slice_issues,
        )
    )


async def pull(jira: JiraConnector, cursor: str | None, pages: int | None = None) -> list[PullPage]:
    collected = []
    async for page in jira.pull(cursor):
        collected.append(page)
        if pages is not None and len(collected) == pages:
            break  # as if the process died after storing this page
    await jira.aclose()
    return collected


def test_full_pull_yields_every_issue_exactly_once_across_pages() -> None:
    sim = JiraSim(issues=230)
    with serving(sim.app) as url:
        pages = asyncio.run(pull(connector(url), None))
    ids = [record.external_id for page in pages for record in page.records]
    per_project = Counter(issue.project for issue in sim.issues())
    assert len(pages) == sum(math.ceil(n / 50) for n in per_project.values())  # each project paged apart
    assert len(ids) == 230 and set(ids) == sim.ids()


def test_pulled_record_is_the_issue_as_jira_returned_it() -> None:
    sim = JiraSim(issues=20)
    with serving(sim.app) as url:
        pages = asyncio.run(pull(connector(url), None))
    record = next(r for page in pages for r in page.records if r.external_id == "10007")
    assert record.record_type == "issue"
    assert record.payload["key"] == sim.find("10007").key
    assert record.payload["fields"]["description"] is None or record.payload["fields"]["description"]["type"] == "doc"
    assert record.version == sim.find("10007").updated
    assert record.version.tzinfo is not None


def checkpoints(cursor: str) -> dict[str, datetime]:
    return {key: datetime.fromisoformat(value) for key, value in json.loads(cursor)["projects"].items()}


def test_cursor_holds_each_projects_latest_updated_time_taken() -> None:
    sim = JiraSim(issues=120)
    with serving(sim.app) as url:
        pages = asyncio.run(pull(connector(url), None))
    latest: dict[str, datetime] = {}
    for page in pages:
        for record in page.records:
            project = record.payload["key"].split("-")[0]
            latest[project] = max(latest.get(project, record.version), record.version)
        assert checkpoints(page.cursor) == latest  # only what was taken so far, project by project
    assert set(latest) == {"PAY", "CHK", "GRO"}


def test_resume_from_a_mid_run_cursor_misses_nothing() -> None:
    sim = JiraSim(issues=300)
    with serving(sim.app) as url:
        first = asyncio.run(pull(connector(url), None, pages=2))
        rest = asyncio.run(pull(connector(url), first[-1].cursor))
    before = {r.external_id for page in first for r in page.records}
    after = {r.external_id for page in rest for r in page.records}
    assert before | after == sim.ids()
    assert len(before & after) < 50  # only the overlap is read twice, not the whole run


def test_incremental_pull_returns_recent_changes_and_only_the_overlap_besides() -> None:
    sim = JiraSim(issues=200)
    with serving(sim.app) as url:
        cursor = asyncio.run(pull(connector(url), None))[-1].cursor
        for key in ("PAY-3", "CHK-2", "GRO-5"):
            sim.update_issue(key, summary=f"{key} changed")
        created = sim.create_issue("PAY", "Brand new")
        pages = asyncio.run(pull(connector(url), cursor))
    records = [r for page in pages for r in page.records]
    changed = {sim.find(key).id for key in ("PAY-3", "CHK-2", "GRO-5")}
    assert {str(i) for i in changed} | {created["id"]} <= {r.external_id for r in records}
    floor = min(checkpoints(cursor).values()) - timedelta(minutes=3)
    assert all(r.version >= floor for r in records)
    assert len(records) < 20


def test_project_filter_limits_the_pull() -> None:
    sim = JiraSim(issues=90)
    with serving(sim.app) as url:
        pages = asyncio.run(pull(connector(url, projects=("chk",)), None))
    keys = {r.payload["key"].split("-")[0] for page in pages for r in page.records}
    assert keys == {"CHK"}


def test_rate_limit_with_retry_after_is_retried_until_success() -> None:
    sim = JiraSim(issues=60)
    sim.inject(status=429, retry_after=1, count=2)
    with serving(sim.app) as url:
        started = datetime.now(UTC)
        pages = asyncio.run(pull(connector(url), None))
        waited = datetime.now(UTC) - started
    assert sum(len(page.records) for page in pages) == 60
    assert waited >= timedelta(seconds=1)  # Retry-After was honoured (projects wait at once)


def test_server_errors_dropped_connections_and_bad_bodies_are_retried() -> None:
    sim = JiraSim(issues=60)
    with serving(sim.app) as url:
        sim.inject(status=503)
        sim.inject(drop_connection=True)
        sim.inject(malformed=True)
        pages = asyncio.run(pull(connector(url), None))
    assert {r.external_id for page in pages for r in page.records} == sim.ids()


def test_wrong_token_is_a_fatal_error_naming_the_credentials() -> None:
    sim = JiraSim(issues=5, credentials=(EMAIL, TOKEN))
    with serving(sim.app) as url, pytest.raises(FatalError, match="credentials"):
        asyncio.run(pull(connector(url, token="wrong"), None))


def test_unknown_project_is_a_fatal_error_naming_it() -> None:
    sim = JiraSim(issues=5)
    with serving(sim.app) as url, pytest.raises(FatalError, match="NOPE"):
        asyncio.run(pull(connector(url, projects=("PAY", "NOPE")), None))


def test_a_cursor_of_one_time_resumes_every_project_from_it() -> None:
    """A cursor written before projects were pulled apart stands for each of them."""
    sim = JiraSim(issues=90)
    with serving(sim.app) as url:
        everything = asyncio.run(pull(connector(url), None))
        middle = sorted(r.version for page in everything for r in page.records)[45]
        pages = asyncio.run(pull(connector(url), middle.isoformat()))
    floor = middle - timedelta(minutes=3)
    assert {r.external_id for page in pages for r in page.records} == {
        r.external_id for page in everything for r in page.records if r.version >= floor
    }


def test_bad_cursor_is_a_fatal_error() -> None:
    with pytest.raises(FatalError, match="cursor"):
        asyncio.run(pull(connector("http://127.0.0.1:9"), "yesterday"))


def test_list_ids_returns_every_issue_id_and_forgets_deleted_ones() -> None:
    sim = JiraSim(issues=700)
    sim.delete_issue("10010")

    async def ids(url: str) -> dict[str, set[str]]:
        jira = connector(url)
        try:
            return await jira.list_ids()
        finally:
            await jira.aclose()

    with serving(sim.app) as url:
        listed = asyncio.run(ids(url))
    assert listed.ids == {"issue": sim.ids()}
    assert listed.containers == {"pay", "chk", "gro"} and listed.unlisted == {}
    assert "10010" not in listed.ids["issue"] and len(listed.ids["issue"]) == 699


def test_fetch_one_returns_the_current_issue_or_none() -> None:
    sim = JiraSim(issues=30)
    sim.update_issue("10004", summary="Fresh summary")

    async def fetch(url: str) -> tuple:
        jira = connector(url)
        try:
            return await jira.fetch_one("issue", "10004"), await jira.fetch_one("issue", "99999")
        finally:
            await jira.aclose()

    with serving(sim.app) as url:
        found, missing = asyncio.run(fetch(url))
    assert found.external_id == "10004"
    assert found.payload["fields"]["summary"] == "Fresh summary"
    assert found.version == sim.find("10004").updated
    assert missing is None


async def fetch(url: str, *issue_ids: str) -> list[RawRecord | None]:
    jira = connector(url)
    try:
        return [await jira.fetch_one("issue", issue_id) for issue_id in issue_ids]
    finally:
        await jira.aclose()


def moves(issue: SimIssue) -> list[tuple[datetime, str]]:
    """The status moves the simulator holds for an issue: (when, to which status), oldest first."""
    return [
        (history["created"], item["toString"])
        for history in issue.histories
        for item in history["items"]
        if item["field"] == "status"
    ]


def test_pulled_and_fetched_issues_carry_their_changelog() -> None:
    sim = JiraSim(issues=40, now=NOW)
    moved = next(issue for issue in sim.issues() if len(issue.histories) >= 2)
    with serving(sim.app) as url:
        pulled = {r.external_id: r for page in asyncio.run(pull(connector(url), None)) for r in page.records}
        [fetched] = asyncio.run(fetch(url, str(moved.id)))
    for record in (pulled[str(moved.id)], fetched):
        changelog = record.payload["changelog"]
        assert changelog["total"] == len(changelog["histories"]) == len(moved.histories)
        assert {h["id"] for h in changelog["histories"]} == {h["id"] for h in moved.histories}
    assert all(r.payload["changelog"]["total"] == len(sim.find(i).histories) for i, r in pulled.items())


def test_the_shipped_mapping_starts_work_at_the_first_move_into_progress() -> None:
    sim = JiraSim(issues=60, now=NOW)
    seeded = next(i for i in sim.issues() if i.status == "Done" and moves(i)[0][1] == "In Progress")
    waiting = next(i for i in sim.issues() if i.status == "To Do")
    reworked = next(i for i in sim.issues() if i.status == "To Do" and i is not waiting)
    for status in ("In Progress", "In Review", "In Progress", "Done"):  # back once from review
        sim.update_issue(reworked.key, status=status)
    issues = [str(issue.id) for issue in (seeded, reworked, waiting)]
    with serving(sim.app) as url:
        pulled = {r.external_id: r for page in asyncio.run(pull(connector(url), None)) for r in page.records}
        fetched = asyncio.run(fetch(url, *issues))
    mapping = load_mapping(JiraConnector.default_mapping())
    for records in ([pulled[i] for i in issues], fetched):  # search lists histories newest first, GET oldest first
        seeded_item, reworked_item, waiting_item = (mapping.apply(r, {}).values for r in records)
        assert seeded_item["started_at"] == moves(seeded)[0][0] < seeded_item["completed_at"] == seeded.resolved
        assert reworked_item["started_at"] == moves(reworked)[0][0] < moves(reworked)[2][0]
        assert reworked_item["completed_at"] == reworked.resolved > reworked_item["started_at"]
        assert waiting_item["started_at"] is None and moves(waiting) == []


def test_work_closed_or_dropped_straight_from_to_do_never_started() -> None:
    sim = JiraSim(issues=600, now=NOW)
    paths = {
        status: [i for i in sim.issues() if [s for _, s in moves(i)] == [status]] for status in ("Done", "Won't Do")
    }
    skipped = paths["Done"][:3] + paths["Won't Do"][:3]
    assert len(skipped) == 6
    with serving(sim.app) as url:
        fetched = asyncio.run(fetch(url, *(str(i.id) for i in skipped)))
    mapping = load_mapping(JiraConnector.default_mapping())
    assert [mapping.apply(r, {}).values["started_at"] for r in fetched] == [None] * len(fetched)


def test_settings_require_projects_and_uppercase_them() -> None:
    settings = JiraSettings(
        id="j", kind="jira", base_url="https://acme.atlassian.net", email=EMAIL, token=TOKEN, projects=["pay"]
    )
    assert settings.projects == ["PAY"]
    with pytest.raises(ValueError):
        JiraSettings(id="j", kind="jira", base_url="https://acme.atlassian.net", email=EMAIL, token=TOKEN, projects=[])


def test_default_mapping_is_the_shipped_jira_yaml() -> None:
    path = JiraConnector.default_mapping()
    assert path.name == "jira.yaml" and path.is_file()


def sliced(url: str, slice_issues: int = 100) -> JiraConnector:
    """A connector that reads a project of more than slice_issues issues in slices of creation time."""
    return connector(url, projects=("PAY", "CHK"), slice_issues=slice_issues)


def test_a_large_project_read_for_the_first_time_is_read_in_slices_of_creation_time() -> None:
    sim = JiraSim(issues=600, projects=("PAY", "CHK"))
    with serving(sim.app) as url:
        pages = asyncio.run(pull(sliced(url), None))
    ids = [r.external_id for page in pages for r in page.records]
    assert set(ids) == sim.ids()
    assert len(ids) - len(set(ids)) < 20  # at most a minute at a slice's resumed start is read twice
    slicing = [json.loads(page.cursor).get("slices", {}) for page in pages]
    assert {"PAY", "CHK"} <= {project for state in slicing for project in state}
    assert max(len(state.get("PAY", {}).get("left", {})) for state in slicing) >= 3  # ~300 issues, 100 a slice
    final = json.loads(pages[-1].cursor)
    assert "slices" not in final  # every slice read: each project is back to one checkpoint
    for project in ("PAY", "CHK"):
        latest = max(i.updated for i in sim.issues() if i.project == project)
        assert datetime.fromisoformat(final["projects"][project]) == latest


def test_a_stopped_sliced_backfill_resumes_every_slice_where_it_was() -> None:
    sim = JiraSim(issues=600, projects=("PAY", "CHK"))
    with serving(sim.app) as url:
        first = asyncio.run(pull(sliced(url), None, pages=5))
        assert "slices" in json.loads(first[-1].cursor)
        rest = asyncio.run(pull(sliced(url), first[-1].cursor))
        # an issue edited during the backfill is read by the next pull, whichever slice had it
        edited = sim.update_issue(sorted(sim.issues(), key=lambda i: i.created)[0].key, summary="edited meanwhile")
        later = asyncio.run(pull(sliced(url), rest[-1].cursor))
    before = {r.external_id for page in first for r in page.records}
    after = {r.external_id for page in rest for r in page.records}
    assert before | after == sim.ids()
    assert len(before & after) < 30  # the slices went on where they were, not from their starts
    assert str(edited["id"]) in {r.external_id for page in later for r in page.records}


def test_a_small_project_is_not_sliced() -> None:
    sim = JiraSim(issues=150, projects=("PAY", "CHK"))
    with serving(sim.app) as url:
        pages = asyncio.run(pull(sliced(url, slice_issues=200), None))
    assert all("slices" not in json.loads(page.cursor) for page in pages)
    assert {r.external_id for page in pages for r in page.records} == sim.ids()

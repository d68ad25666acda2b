"""One pull per connection at a time across processes, runs of dead processes, and a reconcile
that deletes only what it is sure of."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service.clock import now
from opsync.service.config import HubConfig
from opsync.service.entities.work_item import WorkItem
from opsync.service.hub import Hub
from opsync.service.leases import AlreadyRunning
from opsync.service.models import PullLease, SyncRun
from opsync.service.settings import Settings
from opsync.service.sync import begin_pull, sync_connection
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

REPOS = ["acme/payments", "acme/ledger"]


@contextmanager
def jira_hub(database_url: str, sim: JiraSim, **extra) -> Iterator[Hub]:
    with serving(sim.app) as url:
        config = HubConfig(
            connections={
                "jira": JiraSettings(
                    id="jira",
                    kind="jira",
                    base_url=url,
                    email="ops@acme.example",
                    token="t",
                    projects=["PAY", "CHK", "GRO"],
                    **extra,
                )
            }
        )
        hub = Hub.open(Settings(database_url=database_url), config)
        try:
            yield hub
        finally:
            asyncio.run(hub.close())


def _live(hub: Hub) -> set[str]:
    table = WorkItem.__table__
    with hub.engine.connect() as db:
        return set(db.execute(sa.select(table.c.external_id).where(table.c.deleted_at.is_(None))).scalars())


def test_a_second_pull_is_told_which_run_holds_the_connection(database_url):
    with jira_hub(database_url, JiraSim(issues=10, seed=2)) as hub:
        first = begin_pull(hub, "jira")
        with pytest.raises(AlreadyRunning) as busy:
            begin_pull(hub, "jira", full=True)
        assert busy.value.run_id == first.run_id and f"run {first.run_id}" in str(busy.value)
        run = asyncio.run(sync_connection(hub, "jira", pull=first))
        assert run.status == "succeeded"
        again = asyncio.run(sync_connection(hub, "jira"))  # the lease was released
        assert again.status == "succeeded" and again.id != run.id


def test_pulls_begun_at_once_record_one_run_and_every_refusal_names_it(database_url):
    with jira_hub(database_url, JiraSim(issues=5, seed=2)) as hub:
        for _ in range(5):
            start = threading.Barrier(6)

            def begin(start: threading.Barrier = start) -> int | None:
                start.wait()
                try:
                    return begin_pull(hub, "jira").run_id
                except AlreadyRunning as busy:
                    return -busy.run_id if busy.run_id is not None else None

            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda _: begin(), range(6)))
            [won] = [a for a in answers if a is not None and a > 0]
            assert sorted(answers) == sorted([won] + [-won] * 5)  # never a refusal without its run
            with Session(hub.engine) as session:
                session.get_one(PullLease, "jira").expires_at = now() - timedelta(seconds=1)
                session.commit()
        with Session(hub.engine) as session:
            assert len(session.exec(select(SyncRun).where(SyncRun.connection_id == "jira")).all()) == 5


def test_a_run_whose_process_died_is_interrupted_at_start_and_its_lease_taken_over(database_url):
    sim = JiraSim(issues=10, seed=2)
    with jira_hub(database_url, sim) as hub:
        dead = begin_pull(hub, "jira")  # its process "dies": the lease is never renewed nor released
        with pytest.raises(AlreadyRunning):
            begin_pull(hub, "jira")
        with Session(hub.engine) as session:  # the lease's minute passes
            lease = session.get(PullLease, "jira")
            lease.expires_at = now() - timedelta(seconds=1)
            session.add(lease)
            session.commit()
    with jira_hub(database_url, sim) as restarted:  # Hub.open is every process's start
        with Session(restarted.engine) as session:
            orphan = session.get(SyncRun, dead.run_id)
            assert orphan.status == "interrupted" and orphan.finished_at is not None and orphan.errors
        run = asyncio.run(sync_connection(restarted, "jira"))
        assert run.status == "succeeded" and run.fetched == 10


def test_a_live_run_is_not_interrupted_by_another_process_starting(database_url):
    sim = JiraSim(issues=5, seed=2)
    with jira_hub(database_url, sim) as hub:
        running = begin_pull(hub, "jira")
        with jira_hub(database_url, sim) as other:
            with Session(other.engine) as session:
                assert session.get(SyncRun, running.run_id).status == "running"
        assert asyncio.run(sync_connection(hub, "jira", pull=running)).status == "succeeded"


def test_reconcile_refuses_to_empty_one_project_even_when_the_whole_is_within_the_share(database_url):
    sim = JiraSim(issues=90, seed=21)
    with jira_hub(database_url, sim) as hub:
        asyncio.run(sync_connection(hub, "jira"))
        truth = sim.truth()
        chk = sorted(record.id for record in truth.records.values() if record.container == "CHK")
        for issue_id in chk[: len(chk) * 3 // 4]:
            sim.delete_issue(issue_id, silent=True)
        refused = asyncio.run(sync_connection(hub, "jira", full=True))
        assert refused.status == "failed" and refused.deleted == 0
        assert "of chk" in refused.errors[-1] and "max_delete_share" in refused.errors[-1], refused.errors
        assert set(chk) <= _live(hub)
        allowed = asyncio.run(sync_connection(hub, "jira", full=True, allow_mass_delete=True))
        assert allowed.status == "succeeded" and allowed.deleted == len(chk) * 3 // 4


def test_reconcile_keeps_the_records_of_a_repository_that_vanished_and_says_so(database_url):
    sim = GitHubSim(items=30, seed=5, token="t", repos=REPOS)
    with serving(sim.app) as url:
        config = HubConfig(
            connections={"gh": GitHubSettings(id="gh", kind="github", base_url=url, token="t", org="acme")}
        )
        hub = Hub.open(Settings(database_url=database_url), config)
        try:
            asyncio.run(sync_connection(hub, "gh"))
            stored = _live(hub)
            gone = next(item.number for item in sim.items_in("acme/payments") if not item.is_pull)
            sim.delete_issue("acme/payments", gone, silent=True)
            sim.archive_repo("acme/ledger")  # an org's archived repositories are not pulled nor listed
            run = asyncio.run(sync_connection(hub, "gh", full=True))
            assert run.status == "succeeded" and run.deleted == 1, run.errors
            assert any(e.startswith("acme/ledger was not listed") and "kept" in e for e in run.errors), run.errors
            assert len(stored - _live(hub)) == 1
        finally:
            asyncio.run(hub.close())

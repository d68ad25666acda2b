"""A pull's pages mapped in a process of its own (service/mapper.py): the same store as
mapping in the pulling process, a small process, and a pull that never fails because of it."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select
from test_sync import opened_hub

from opsync.service.contract import RawRecord
from opsync.service.entities.work_item import WorkItem
from opsync.service.mapper import Mapper
from opsync.service.models import StoredPayload
from opsync.service.normalise import map_records
from opsync.service.rules import canonical_bytes
from opsync.service.sync import sync_connection
from opsync.service.versions import canonical_json
from opsync_simulators.jira import JiraSim


@pytest.fixture
def mapped_pages(monkeypatch: pytest.MonkeyPatch) -> list[Mapper]:
    """Every mapper made, and the pages each mapped there (a spy: the mapper runs as it is)."""
    made: list[Mapper] = []
    real_map, real_init = Mapper.map, Mapper.__init__

    def init(self: Mapper, *args: object) -> None:
        real_init(self, *args)
        self.pages = 0
        made.append(self)

    def spied(self: Mapper, raws: list[RawRecord]):
        answer = real_map(self, raws)
        self.pages += answer is not None
        return answer

    monkeypatch.setattr(Mapper, "__init__", init)
    monkeypatch.setattr(Mapper, "map", spied)
    return made


def _stored(hub) -> tuple[dict[str, tuple], dict[str, tuple[str, dict]]]:
    with Session(hub.engine) as session:
        items = {
            w.external_id: (w.title, w.status_category, w.started_at, w.content_hash, w.source_updated_at)
            for w in session.exec(select(WorkItem).where(WorkItem.connection_id == "jira"))
        }
        payloads = {p.external_id: (p.hash, p.payload) for p in session.exec(select(StoredPayload))}
    return items, payloads


def test_a_pull_of_many_pages_stores_from_the_mapper_what_mapping_here_would(database_url, mapped_pages):
    sim = JiraSim(issues=450, seed=11)
    with opened_hub(database_url, sim) as hub:
        run = asyncio.run(sync_connection(hub, "jira"))
        assert (run.status, run.fetched, run.created, run.failed) == ("succeeded", 450, 450, 0)
        [mapper] = mapped_pages
        assert mapper.pages >= 3  # five pages at least; the first is mapped here
        assert mapper._process.poll() is not None  # ended with the pull
        items, payloads = _stored(hub)
        raws = [RawRecord("issue", external_id, payload, None) for external_id, (_, payload) in payloads.items()]
        here, errors = map_records(hub, "jira", raws)
        assert errors == [] and len(here) == len(items) == 450
        for record in here:
            title, category, started_at, content_hash, version = items[record.external_id]
            assert (title, category, content_hash) == (
                record.values["title"],
                record.values["status_category"],
                record.content_hash,
            )
            assert started_at == record.values["started_at"]
            assert version is not None  # the tool's own version, as this process read it
        for external_id, (digest, payload) in payloads.items():
            assert digest == canonical_json(payload)[1], external_id


def test_a_mapper_that_dies_mid_pull_leaves_the_pull_to_map_its_pages_itself(database_url, mapped_pages, caplog):
    sim = JiraSim(issues=450, seed=12)
    real_map = Mapper.map  # the spy

    def killed_on_the_third(self: Mapper, raws: list[RawRecord]):
        if self.pages == 2:
            self._process.kill()  # as the kernel's OOM killer would: SIGKILL
        return real_map(self, raws)

    with opened_hub(database_url, sim) as hub, pytest.MonkeyPatch.context() as patch:
        patch.setattr(Mapper, "map", killed_on_the_third)
        with caplog.at_level(logging.WARNING, logger="opsync.mapper"):
            run = asyncio.run(sync_connection(hub, "jira"))
        assert (run.status, run.fetched, run.created, run.failed) == ("succeeded", 450, 450, 0)
        assert mapped_pages[0].pages == 2
        assert "the pull maps its pages itself" in caplog.text
        items, payloads = _stored(hub)
        assert len(items) == len(payloads) == 450
        with Session(hub.engine) as session:
            assert session.exec(select(sa.func.count()).select_from(WorkItem)).one() == 450


def test_a_payload_that_json_cannot_carry_unchanged_is_left_to_map_here(database_url):
    sim = JiraSim(issues=5, seed=13)
    with opened_hub(database_url, sim) as hub:
        asyncio.run(hub.learn_fields("jira"))
        issue = {
            "id": "10001",
            "key": "PAY-1",
            "self": "https://acme.atlassian.net/rest/api/3/issue/10001",
            "fields": {"summary": "Pay by link", "project": {"key": "PAY"}, "updated": "2026-11-02T10:00:00.000+0000"},
        }
        version = datetime(2026, 11, 2, 10, tzinfo=UTC)
        mapper = Mapper(hub.mappings["jira"].mapping, hub.portfolio.containers("jira"), None, "jira")
        try:
            page = mapper.map([RawRecord("issue", "10001", issue, version)])
            assert page is not None
            [record] = page.records
            [expected], _ = map_records(hub, "jira", [RawRecord("issue", "10001", issue, version)])
            assert record == expected  # the version too: this process's own
            assert page.serialized == [(canonical_bytes(issue), canonical_json(issue)[1])]
            with_a_time = {**issue, "fields": {**issue["fields"], "created": datetime(2026, 1, 1, tzinfo=UTC)}}
            assert mapper.map([RawRecord("issue", "10001", with_a_time, version)]) is None
            assert not mapper.failed  # the mapper goes on with the pages after
            assert mapper.map([RawRecord("issue", "10001", issue, version)]) is not None
        finally:
            mapper.close()
        assert mapper._process.poll() is not None


def test_the_mapper_process_imports_no_database_code():
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, opsync.service.mapper; print(sorted({m.split('.')[0] for m in sys.modules}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "sqlalchemy" not in imported and "sqlmodel" not in imported and "orjson" in imported

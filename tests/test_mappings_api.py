"""Mappings that ops engineers change through the API: a preview on every stored record that
writes nothing, applying a version (re-mapping from stored raw records, no tool asked) and
applying the earlier one again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from hub_harness import RunningHub, running_hub

from opsync.connectors.jira.connector import JiraSettings
from opsync.service.config import HubConfig
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

YAML = {"Content-Type": "application/yaml"}
CANCELLED = "contains(['Won\\'t Do', 'Cancelled', 'Canceled', 'Declined'], fields.status.name) && 'cancelled'"
IN_PROGRESS_IS_DONE = f"fields.status.name == 'In Progress' && 'done' || {CANCELLED}"


@dataclass
class Mapped:
    hub: RunningHub
    jira: JiraSim

    def items(self) -> dict[str, dict[str, Any]]:
        return {i["key"]: i for i in self.hub.all("/api/v1/work-items")}

    def changes_after(self, seq: int) -> list[dict[str, Any]]:
        return self.hub.client.get("/api/v1/changes", params={"after": seq, "limit": 1000}).json()["items"]

    def last_seq(self) -> int:
        changes, seq = self.changes_after(0), 0
        while changes:
            seq = changes[-1]["seq"]
            changes = self.changes_after(seq)
        return seq

    def finish(self, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids, deadline = {r["run_id"] for r in runs}, time.monotonic() + 30
        while True:
            done = [r for r in self.hub.client.get("/api/v1/sync-runs").json() if r["id"] in ids]
            if done and all(r["status"] != "running" for r in done):
                return done
            assert time.monotonic() < deadline, done
            time.sleep(0.05)


@pytest.fixture
def mapped(database_url: str) -> Iterator[Mapped]:
    jira = JiraSim(issues=80, seed=6, webhook_secret="s")
    with ExitStack() as stack:
        url = stack.enter_context(serving(jira.app))
        settings = JiraSettings(
            id="jira", kind="jira", base_url=url, email="ops@acme.example", token="t", projects=["PAY", "CHK", "GRO"]
        )
        hub = stack.enter_context(running_hub(database_url, HubConfig(connections={"jira": settings})))
        deadline = time.monotonic() + 30
        while not any(r["status"] == "succeeded" for r in hub.client.get("/api/v1/sync-runs").json()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield Mapped(hub, jira)


def test_the_shipped_mapping_is_the_first_version_in_use(mapped):
    [jira] = mapped.hub.client.get("/api/v1/mappings").json()
    assert (jira["kind"], jira["version"], jira["in_use"], jira["connections"]) == ("jira", 1, True, ["jira"])
    text = mapped.hub.client.get("/api/v1/mappings/jira").json()["text"]
    assert CANCELLED in text
    assert {i["mapping_version"] for i in mapped.items().values()} == {1}


def test_preview_apply_and_rollback_of_a_status_moved_to_another_category(mapped):
    in_progress = {i.key for i in mapped.jira.issues() if i.status == "In Progress"}
    assert in_progress
    text = mapped.hub.client.get("/api/v1/mappings/jira").json()["text"]
    candidate = text.replace(CANCELLED, IN_PROGRESS_IS_DONE)
    before, seq, asked = mapped.items(), mapped.last_seq(), mapped.jira.api_requests

    preview = mapped.hub.client.post("/api/v1/mappings/jira/preview", content=candidate, headers=YAML)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert (body["read"], body["would_change"], body["would_create"]) == (80, len(in_progress), 0)
    assert body["failures"] == []
    for change in body["sample"]:
        assert change["fields"]["status_category"] == ["in_progress", "done"]
    assert mapped.items() == before and mapped.last_seq() == seq  # nothing was written

    applied = mapped.hub.client.put("/api/v1/mappings/jira", content=candidate, headers=YAML)
    assert applied.status_code == 202, applied.text
    assert applied.json()["version"] == 2
    [run] = mapped.finish(applied.json()["runs"])
    assert (run["mode"], run["status"], run["updated"]) == ("remap", "succeeded", len(in_progress))
    after = mapped.items()
    assert {k for k in after if after[k]["status_category"] != before[k]["status_category"]} == in_progress
    assert all(after[k]["status_category"] == "done" for k in in_progress)
    assert {i["mapping_version"] for i in after.values()} == {2}
    changes = mapped.changes_after(seq)
    assert sorted(c["entity_id"] for c in changes) == sorted(before[k]["id"] for k in in_progress)  # one each
    assert all(set(c["fields"]) == {"status_category"} for c in changes)
    assert mapped.jira.api_requests == asked  # no tool was asked

    versions = mapped.hub.client.get("/api/v1/mappings/jira/versions").json()
    assert [(v["version"], v["in_use"]) for v in versions] == [(2, True), (1, False)]
    back = mapped.hub.client.post("/api/v1/mappings/jira/versions/1/apply")
    assert back.status_code == 202, back.text
    mapped.finish(back.json()["runs"])
    restored = mapped.items()

    def content(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k not in ("synced_at", "mapping_version")}

    assert {k: content(v) for k, v in restored.items()} == {k: content(v) for k, v in before.items()}
    assert {i["mapping_version"] for i in restored.values()} == {1}
    assert mapped.jira.api_requests == asked


def test_a_broken_candidate_is_a_422_naming_its_line_and_changes_nothing(mapped):
    text = mapped.hub.client.get("/api/v1/mappings/jira").json()["text"]
    broken = text.replace("title: fields.summary", "title: titlecase(fields.summary)")
    for answer in (
        mapped.hub.client.post("/api/v1/mappings/jira/preview", content=broken, headers=YAML),
        mapped.hub.client.put("/api/v1/mappings/jira", content=broken, headers=YAML),
    ):
        assert answer.status_code == 422, answer.text
        [error] = answer.json()["errors"]
        assert error["where"].startswith("body line ") and error["where"].endswith("records.issue.fields.title")
        assert "titlecase" in error["problem"]
    assert [v["version"] for v in mapped.hub.client.get("/api/v1/mappings/jira/versions").json()] == [1]


def test_another_kinds_mapping_is_refused(mapped):
    text = mapped.hub.client.get("/api/v1/mappings/jira").json()["text"]
    answer = mapped.hub.client.put("/api/v1/mappings/github", content=text, headers=YAML)
    assert answer.status_code == 404
    answer = mapped.hub.client.post("/api/v1/mappings/jira/versions/7/apply")
    assert answer.status_code == 404


def test_a_method_the_path_does_not_answer_is_a_405_naming_every_method_it_does(mapped):
    answer = mapped.hub.client.request("OPTIONS", "/api/v1/mappings/jira")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, PUT"


def test_a_preview_lists_the_values_that_fall_to_a_default(mapped):
    text = mapped.hub.client.get("/api/v1/mappings/jira").json()["text"]
    assert "Medium: medium, " in text
    medium = sum(i.priority == "Medium" for i in mapped.jira.issues())
    assert medium
    candidate = text.replace("Medium: medium, ", "")
    body = mapped.hub.client.post("/api/v1/mappings/jira/preview", content=candidate, headers=YAML).json()
    assert body["defaults"] == {"records.issue.fields.priority": {"Medium": medium}}
    assert body["would_change"] == medium  # medium became the default, none


def test_a_field_named_by_its_name_resolves_through_the_tools_field_list(mapped):
    text = mapped.hub.client.get("/api/v1/mappings/jira").json()["text"]
    assert "estimate: fields.customfield_10016" in text
    by_name = text.replace("estimate: fields.customfield_10016", "estimate: fields.field('Story point estimate')")
    body = mapped.hub.client.post("/api/v1/mappings/jira/preview", content=by_name, headers=YAML).json()
    assert (body["read"], body["would_change"], body["failures"]) == (80, 0, [])  # the same field, by its name
    misspelt = text.replace("estimate: fields.customfield_10016", "estimate: fields.field('Story points estimate')")
    answer = mapped.hub.client.post("/api/v1/mappings/jira/preview", content=misspelt, headers=YAML)
    assert answer.status_code == 422
    assert "Story point estimate" in answer.json()["errors"][0]["problem"]  # the close match is named


def test_a_preview_warns_of_map_keys_no_stored_record_matches(mapped):
    text = mapped.hub.client.get("/api/v1/mappings/jira").json()["text"]
    candidate = text.replace("Highest: critical,", "Highest: critical, Urgentissimo: critical,")
    body = mapped.hub.client.post("/api/v1/mappings/jira/preview", content=candidate, headers=YAML).json()
    [warning] = [w for w in body["warnings"] if "Urgentissimo" in w]
    assert "records.issue.fields.priority.map.Urgentissimo" in warning and "'Medium'" in warning

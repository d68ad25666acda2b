"""The inbox under bad deliveries and absent tools: one delivery never holds back the others,
replays are duplicates, ties are settled by the tool, old deliveries are pruned."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
from hub_harness import RunningHub, github_delivery, jira_delivery, running_hub

from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service import inbox
from opsync.service.config import HubConfig
from opsync.service.hub import Hub
from opsync_simulators.github import GitHubSim
from opsync_simulators.server import serving

SECRET = "inbox-secret"
AWAY = "http://127.0.0.1:9"  # nothing listens there: the tool is unreachable


def _config(github_url: str = AWAY) -> HubConfig:
    return HubConfig(
        connections={
            "gh": GitHubSettings(
                id="gh",
                kind="github",
                base_url=github_url,
                token="t",
                webhook_secret=SECRET,
                repos=["acme/payments"],
                pull_every_minutes=600,
            ),
            "jira": JiraSettings(
                id="jira",
                kind="jira",
                base_url=AWAY,
                email="ops@acme.example",
                token="t",
                webhook_secret=SECRET,
                projects=["PAY"],
                pull_every_minutes=600,
            ),
        }
    )


def _issue(issue_id: int, **changes: Any) -> dict[str, Any]:
    issue = {
        "id": issue_id,
        "number": issue_id - 7000,
        "title": f"Issue {issue_id}",
        "state": "open",
        "body": None,
        "assignee": None,
        "labels": [],
        "html_url": f"https://github.com/acme/payments/issues/{issue_id - 7000}",
        "repository_url": "https://api.github.com/repos/acme/payments",
        "user": {"login": "adal", "id": 1000},
        "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-03-01T10:00:00Z",
        "closed_at": None,
    }
    return {**issue, **changes}


def _pull(pull_id: int, **changes: Any) -> dict[str, Any]:
    repo = {"full_name": "acme/payments"}
    pull = {
        "id": pull_id,
        "number": pull_id - 8000,
        "title": f"Pull {pull_id}",
        "state": "open",
        "body": None,
        "html_url": f"https://github.com/acme/payments/pull/{pull_id - 8000}",
        "user": {"login": "adal", "id": 1000},
        "head": {"ref": "topic", "repo": repo},
        "base": {"ref": "main", "repo": repo},
        "requested_reviewers": [],
        "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-03-01T10:00:00Z",
        "closed_at": None,
        "merged_at": None,
        "additions": 1,
        "deletions": 1,
    }
    return {**pull, **changes}


def _jira_issue_event(
    issue_id: int, summary: str, event: str = "jira:issue_created", sent: datetime | None = None
) -> dict[str, Any]:
    sent = sent or datetime.now(UTC)
    return {
        "webhookEvent": event,
        "timestamp": int(sent.timestamp() * 1000),
        "issue": {
            "id": str(issue_id),
            "key": f"PAY-{issue_id - 10000}",
            "self": f"https://acme.atlassian.net/rest/api/2/issue/{issue_id}",
            "fields": {
                "summary": summary,
                "updated": "2024-03-01T10:00:00.000+0000",
                "created": "2024-03-01T09:00:00.000+0000",
                "project": {"key": "PAY"},
                "issuetype": {"name": "Bug"},
                "status": {"name": "To Do", "statusCategory": {"key": "new"}},
            },
        },
    }


def _post_github(hub: RunningHub, event: str, payload: dict[str, Any], delivery: str) -> httpx.Response:
    body, headers = github_delivery(event, payload, SECRET, delivery)
    answer = hub.client.post(hub.webhook_url("gh"), content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return answer


def _post_jira(hub: RunningHub, payload: dict[str, Any], delivery: str) -> httpx.Response:
    body, headers = jira_delivery(payload, SECRET, delivery)
    return hub.client.post(hub.webhook_url("jira"), content=body, headers=headers)


def _shown(hub: RunningHub, path: str) -> dict[str, dict[str, Any]]:
    return {item["external_id"]: item for item in hub.all(path, include_deleted="true")}


def _failed(hub: RunningHub) -> dict[str, dict[str, Any]]:
    answer = hub.client.get("/api/v1/inbox", params={"status": "failed"})
    answer.raise_for_status()
    return {event["delivery_id"]: event for event in answer.json()}


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_delivery_the_mapping_cannot_read_is_parked_alone_and_the_others_show_at_once(database_url):
    with running_hub(database_url, _config()) as hub:
        _post_github(hub, "issues", {"action": "opened", "issue": _issue(7201)}, "good-1")
        poison = _issue(7202, repository_url=12345)  # not a string: the mapping's regex cannot read it
        _post_github(hub, "issues", {"action": "deleted", "issue": poison}, "poison")
        _post_github(hub, "issues", {"action": "opened", "issue": _issue(7203)}, "good-2")
        hub.wait_for_inbox(timeout=5)
        shown = _shown(hub, "/api/v1/work-items")
        assert {"7201", "7203"} <= shown.keys() and "7202" not in shown
        failed = _failed(hub)
        assert list(failed) == ["poison"]
        assert failed["poison"]["last_error"] and failed["poison"]["attempts"] == 1


def test_a_record_the_database_refuses_is_parked_alone_and_the_rest_of_its_batch_is_written(database_url):
    with running_hub(database_url, _config(), run_workers=False) as hub:
        _post_github(hub, "pull_request", {"action": "opened", "pull_request": _pull(8201)}, "good-1")
        huge = _pull(8202, additions=2**64 - 1)  # JSON allows it; no integer column holds it
        _post_github(hub, "pull_request", {"action": "opened", "pull_request": huge}, "poison")
        _post_github(hub, "issues", {"action": "opened", "issue": _issue(7204)}, "good-2")
        worker = Hub.open(hub.settings, _config())
        try:
            assert asyncio.run(inbox.apply_batch(worker)) == 3  # one batch: the write fails, then halves
        finally:
            asyncio.run(worker.close())
        assert set(_shown(hub, "/api/v1/code-changes")) == {"8201"}
        assert "7204" in _shown(hub, "/api/v1/work-items")
        assert list(_failed(hub)) == ["poison"]


def test_a_delivery_that_needs_an_unreachable_tool_does_not_hold_back_the_others(database_url):
    settings = {"fetch_deadline_seconds": 1, "inbox_max_attempts": 2}
    with running_hub(database_url, _config(), **settings) as hub:
        comment = _jira_issue_event(10001, "trimmed", event="comment_created")  # Jira sends a trimmed issue
        assert _post_jira(hub, comment, "comment").status_code == 202
        started = time.monotonic()
        for n in range(3):
            assert _post_jira(hub, _jira_issue_event(10002 + n, f"Complete {n}"), f"issue-{n}").status_code == 202
        hub.wait_for_inbox(timeout=5)  # the apply lane: the complete payloads
        assert time.monotonic() - started < 5
        shown = _shown(hub, "/api/v1/work-items")
        assert {shown[str(10002 + n)]["title"] for n in range(3)} == {f"Complete {n}" for n in range(3)}
        # the comment's issue is fetched, with backoff, until its attempts are spent
        _wait(lambda: "comment" in _failed(hub), 30, "the refetch was never given up")
        error = _failed(hub)["comment"]["last_error"]
        assert "gave up after 2 attempts" in error and ("Jira" in error or "within 1 s" in error), error


def test_the_same_signed_body_under_21_delivery_ids_is_stored_once(database_url):
    with running_hub(database_url, _config(), run_workers=False) as hub:
        body, headers = github_delivery("issues", {"action": "opened", "issue": _issue(7301)}, SECRET, "first")
        answers = [
            hub.client.post(
                hub.webhook_url("gh"), content=body, headers={**headers, "X-GitHub-Delivery": f"replay-{n}"}
            )
            for n in range(21)
        ]
        del headers["X-GitHub-Delivery"]
        answers.append(hub.client.post(hub.webhook_url("gh"), content=body, headers=headers))
        assert [a.status_code for a in answers] == [202] * 22
        assert [a.json()["duplicate"] for a in answers] == [False] + [True] * 21
        engine = sa.create_engine(hub.settings.database_url, poolclass=sa.NullPool)
        with engine.connect() as db:
            assert db.execute(sa.text("SELECT count(*) FROM inbox_event")).scalar_one() == 1
        engine.dispose()


def test_at_one_version_the_tool_beats_a_webhook_body_and_two_bodies_that_disagree_ask_the_tool(database_url):
    sim = GitHubSim(items=6, seed=3, token="t", repos=("acme/payments",))
    with serving(sim.app) as url, running_hub(database_url, _config(url)) as hub:
        assert hub.sync("gh")["status"] == "succeeded"

        def on_github(number: int) -> dict[str, Any]:
            answer = httpx.get(f"{url}/repos/acme/payments/issues/{number}", headers={"Authorization": "token t"})
            answer.raise_for_status()
            return answer.json()

        number = next(
            row["number"]
            for row in httpx.get(
                f"{url}/repos/acme/payments/issues", params={"state": "all"}, headers={"Authorization": "token t"}
            ).json()
            if "pull_request" not in row
        )
        pulled = on_github(number)
        _post_github(hub, "issues", {"action": "edited", "issue": {**pulled, "title": "Never on GitHub"}}, "same")
        hub.wait_for_inbox()
        assert _shown(hub, "/api/v1/work-items")[str(pulled["id"])]["title"] == pulled["title"]

        sim.update_issue("acme/payments", number, title="Renamed on GitHub")
        edited = on_github(number)
        _post_github(hub, "issues", {"action": "edited", "issue": {**edited, "title": "Body one"}}, "tie-1")
        _post_github(hub, "issues", {"action": "edited", "issue": {**edited, "title": "Body two"}}, "tie-2")
        hub.wait_for_inbox(lane=None)
        assert _shown(hub, "/api/v1/work-items")[str(edited["id"])]["title"] == "Renamed on GitHub"
        assert not _failed(hub)


def test_applied_deliveries_are_pruned_and_a_jira_body_signed_before_them_is_refused(database_url):
    with running_hub(database_url, _config(), inbox_retention_days=1 / 86400) as hub:  # one second
        old = datetime.now(UTC)
        assert _post_jira(hub, _jira_issue_event(10101, "Kept"), "kept").status_code == 202
        hub.wait_for_inbox()
        time.sleep(1.2)
        worker = Hub.open(hub.settings, _config())
        try:
            assert inbox.prune(worker) == 1
        finally:
            asyncio.run(worker.close())
        assert "10101" in _shown(hub, "/api/v1/work-items")  # the record stays; its delivery is gone
        replay = _jira_issue_event(10101, "An old body again", sent=old)
        answer = _post_jira(hub, replay, "replayed-late")
        assert answer.status_code == 400 and "pruned" in answer.json()["detail"], answer.text
        assert _post_jira(hub, _jira_issue_event(10102, "Fresh"), "fresh").status_code == 202


def test_nul_characters_from_a_tool_are_taken_out_and_stop_nothing(database_url):
    with running_hub(database_url, _config()) as hub:
        issue = _issue(7401, title="Refunds\u0000 fail", body="a\u0000b", labels=[{"name": "bug\u0000"}])
        _post_github(hub, "issues", {"action": "opened", "issue": issue}, "nul")
        _post_github(hub, "issues", {"action": "opened", "issue": _issue(7402)}, "plain")
        hub.wait_for_inbox(timeout=5)
        shown = _shown(hub, "/api/v1/work-items")
        assert shown["7401"]["title"] == "Refunds fail" and shown["7401"]["labels"] == ["bug"]
        assert "7402" in shown and not _failed(hub)

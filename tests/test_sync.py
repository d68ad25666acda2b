"""Pulls from the simulators into a real database, and webhooks on top of them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import yaml
from hub_harness import running_hub
from sqlmodel import Session, func, select

from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service.config import ConfigError, HubConfig, load_config
from opsync.service.entities.work_item import WorkItem
from opsync.service.hub import Hub
from opsync.service.models import Change, Connection
from opsync.service.settings import Settings
from opsync.service.sync import sync_connection
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

SECRET = "hook-secret"
REPOS = ["acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web"]
JIRA_KEY = re.compile(r"\b[A-Z]+-\d+\b")


def jira_config(url: str, **extra) -> HubConfig:
    return HubConfig(
        connections={
            "jira": JiraSettings(
                id="jira",
                kind="jira",
                base_url=url,
                email="ops@acme.example",
                token="t",
                webhook_secret=SECRET,
                projects=["PAY", "CHK", "GRO"],
                **extra,
            )
        }
    )


@contextmanager
def opened_hub(database_url: str, sim: JiraSim) -> Iterator[Hub]:
    """A hub on its own database with one connection to the served Jira simulator."""
    with serving(sim.app) as url:
        hub = Hub.open(Settings(database_url=database_url), jira_config(url))
        try:
            yield hub
        finally:
            asyncio.run(hub.close())


def count(hub: Hub, table, **where) -> int:
    with Session(hub.engine) as session:
        query = select(func.count()).select_from(table)
        for name, value in where.items():
            query = query.where(getattr(table, name) == value)
        return session.exec(query).one()


def test_a_full_sync_of_n_issues_yields_n_work_items_and_a_second_sync_writes_no_change(database_url):
    sim = JiraSim(issues=230, seed=3)
    with opened_hub(database_url, sim) as hub:
        first = asyncio.run(sync_connection(hub, "jira"))
        changes_after_first = count(hub, Change)
        second = asyncio.run(sync_connection(hub, "jira"))
        full = asyncio.run(sync_connection(hub, "jira", full=True))
        assert (first.status, first.fetched, first.created) == ("succeeded", 230, 230)
        assert count(hub, WorkItem, connection_id="jira") == 230
        assert (second.status, second.created, second.updated) == ("succeeded", 0, 0)
        assert (full.status, full.created, full.updated, full.deleted) == ("succeeded", 0, 0, 0)
        assert count(hub, Change) == changes_after_first


def test_updating_ten_issues_and_syncing_yields_exactly_ten_updates(database_url):
    sim = JiraSim(issues=120, seed=4)
    with opened_hub(database_url, sim) as hub:
        asyncio.run(sync_connection(hub, "jira"))
        before = count(hub, Change)
        ids = sorted(sim.ids())[:10]
        for n, issue_id in enumerate(ids):
            sim.update_issue(issue_id, summary=f"Renamed {n}")
        run = asyncio.run(sync_connection(hub, "jira"))
        assert (run.updated, run.created) == (10, 0)
        assert count(hub, Change) - before == 10
        with Session(hub.engine) as session:
            titles = session.exec(select(WorkItem.title).where(WorkItem.external_id.in_(ids))).all()
        assert sorted(titles) == sorted(f"Renamed {n}" for n in range(10))


def test_deleting_an_issue_in_jira_tombstones_it_through_the_webhook(database_url):
    sim = JiraSim(issues=40, seed=5, webhook_secret=SECRET)
    with serving(sim.app) as url, running_hub(database_url, jira_config(url)) as hub:
        assert hub.sync("jira")["status"] == "succeeded"
        victim = sorted(sim.ids())[0]
        sim.webhook_url = hub.webhook_url("jira")
        sim.delete_issue(victim)
        assert sim.deliveries[-1].status_code == 202
        hub.wait_for_inbox()
        listed = {i["external_id"] for i in hub.all("/api/v1/work-items")}
        everything = {i["external_id"]: i for i in hub.all("/api/v1/work-items", include_deleted="true")}
        assert len(listed) == 39 and victim not in listed
        assert everything[victim]["deleted_at"] is not None


def test_an_update_in_jira_reaches_the_api_through_the_webhook(database_url):
    sim = JiraSim(issues=20, seed=6, webhook_secret=SECRET)
    with serving(sim.app) as url, running_hub(database_url, jira_config(url)) as hub:
        assert hub.sync("jira")["status"] == "succeeded"
        sim.site_url = url
        sim.webhook_url = hub.webhook_url("jira")
        issue = sorted(sim.ids())[0]
        sim.update_issue(issue, summary="Checkout times out", status="Done")
        hub.wait_for_inbox()
        [item] = [i for i in hub.all("/api/v1/work-items") if i["external_id"] == issue]
        assert (item["title"], item["status"], item["status_category"]) == ("Checkout times out", "Done", "done")
        history = hub.client.get(f"/api/v1/work-items/{item['id']}").json()["history"]
        assert history[-1]["op"] == "update" and history[-1]["fields"]["title"][1] == "Checkout times out"


def test_pull_requests_naming_jira_keys_become_implements_links(database_url):
    jira = JiraSim(issues=60, seed=7)
    github = GitHubSim(items=40, seed=7, jira_keys=jira.key_numbers(), token="t")
    with serving(jira.app) as jira_url, serving(github.app) as github_url:
        config = jira_config(jira_url)
        config.connections["gh"] = GitHubSettings(
            id="gh", kind="github", base_url=github_url, token="t", webhook_secret=SECRET, repos=REPOS
        )
        with running_hub(database_url, config) as hub:
            for connection in ("jira", "gh"):
                assert hub.sync(connection)["status"] == "succeeded"
            work_items = {i["key"]: i for i in hub.all("/api/v1/work-items")}
            changes = hub.all("/api/v1/code-changes")
            people = hub.all("/api/v1/people")
    named = {
        (f"{pull.repo}#{pull.number}", key)
        for pull in github.all_items()
        if pull.is_pull
        for key in JIRA_KEY.findall(" ".join((pull.title, pull.head_ref, pull.body or "")))
    }
    assert named, "the simulator names Jira keys in PR titles, branches and bodies"
    links = [(c["key"], link) for c in changes for link in c["links"] if link["type"] == "implements"]
    assert {(key, link["to_key"]) for key, link in links} == named
    assert len(links) == len(named)
    for _, link in links:
        assert link["to_id"] == work_items[link["to_key"]]["id"]
    assert {c["state"] for c in changes} <= {"open", "merged", "closed"}
    assert {i["product"] for i in work_items.values()} == {"payments", "checkout", "growth"}
    # people.yaml names GitHub logins' emails, so a Jira user and a GitHub user are one person
    both = [p for p in people if {i["connection_id"] for i in p["identities"]} == {"jira", "gh"}]
    logins = {(p["email"], i["login"]) for p in both for i in p["identities"] if i["connection_id"] == "gh"}
    assert both and logins <= {(person.email, person.login) for person in github.people}


def test_a_failing_tool_marks_the_run_and_connection_failed_with_a_reason(database_url):
    sim = JiraSim(issues=5, credentials=("ops@acme.example", "right"))
    with opened_hub(database_url, sim) as hub:
        run = asyncio.run(sync_connection(hub, "jira"))
        assert run.status == "failed"
        assert any("credentials" in e or "401" in e for e in run.errors), run.errors
        with Session(hub.engine) as session:
            assert session.get(Connection, "jira").status == "failing"


def test_reconcile_tombstones_records_gone_upstream_but_refuses_a_mass_deletion(database_url):
    sim = JiraSim(issues=30, seed=8)
    with opened_hub(database_url, sim) as hub:
        asyncio.run(sync_connection(hub, "jira"))
        ids = sorted(sim.ids())
        sim.delete_issue(ids[0])
        run = asyncio.run(sync_connection(hub, "jira", full=True))
        assert (run.status, run.deleted) == ("succeeded", 1)
        for issue_id in ids[1:20]:
            sim.delete_issue(issue_id)
        refused = asyncio.run(sync_connection(hub, "jira", full=True))
        assert refused.status == "failed" and "max_delete_share" in refused.errors[-1]
        assert count(hub, WorkItem, connection_id="jira") - _deleted(hub) == 29


def _deleted(hub: Hub) -> int:
    with Session(hub.engine) as session:
        return session.exec(select(func.count()).select_from(WorkItem).where(WorkItem.deleted_at.is_not(None))).one()


def test_a_bad_config_names_the_file_line_and_field(tmp_path):
    file = tmp_path / "connections.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "connections": [
                    {
                        "id": "gh",
                        "kind": "github",
                        "token": "${GH_TOKEN}",
                        "webhook_secret": "x",
                        "repos": ["not-a-repo"],
                    }
                ]
            }
        )
    )
    with pytest.raises(ConfigError) as error:
        load_config(file, environ={"GH_TOKEN": "secret-value"})
    message = str(error.value)
    assert str(file) in message and "line" in message and "repos" in message and "owner/name" in message
    assert "secret-value" not in message


def test_a_config_naming_a_missing_environment_variable_fails_clearly(tmp_path):
    file = tmp_path / "connections.yaml"
    file.write_text("connections:\n  - id: gh\n    kind: github\n    token: ${GH_TOKEN}\n    repos: [acme/x]\n")
    with pytest.raises(ConfigError, match=r"line 4: connections\[0\]\.token: environment variable GH_TOKEN is not set"):
        load_config(file, environ={})


def test_an_unknown_connector_kind_lists_the_known_ones(tmp_path):
    file = tmp_path / "connections.yaml"
    file.write_text("connections:\n  - id: x\n    kind: trello\n")
    with pytest.raises(ConfigError, match=r"line 3.*unknown connector kind 'trello'.*github, jira"):
        load_config(file, environ={})

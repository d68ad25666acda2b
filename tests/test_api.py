"""The REST API under /api/v1, over HTTP, on a hub that pulled simulated Jira and GitHub.

Most tests read one hub per module that no test changes; a test that changes the tools or
the store stands up a hub of its own.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from statistics import quantiles
from typing import Any

import httpx
import pytest
from hub_harness import ADMIN_TOKEN, RunningHub, running_hub
from support.expected import (
    JIRA_CATEGORIES,
    JIRA_KINDS,
    PRODUCT_OF,
    PRODUCTS,
    ToolItem,
    github_category,
    tool_items,
)

from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service import views
from opsync.service.config import HubConfig
from opsync.service.db import create_db_engine
from opsync.service.tokens import create_token
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

JIRA_ISSUES, GITHUB_ITEMS = 60, 40
PROJECTS = ["PAY", "CHK", "GRO"]
REPOS = ["acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web"]
# Distinctive, so that a test can tell they never leave the hub.
JIRA_TOKEN, JIRA_SECRET = "jira-api-token-never-shown", "jira-webhook-secret-never-shown"
GITHUB_TOKEN, GITHUB_SECRET = "github-api-token-never-shown", "github-webhook-secret-never-shown"

WORK_ITEM_FIELDS = {
    "id",
    "key",
    "url",
    "title",
    "kind",
    "status",
    "status_category",
    "priority",
    "product",
    "assignee",
    "labels",
    "created_at",
    "updated_at",
}
PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance"}
JIRA_KEY = re.compile(r"\b[A-Z]+-\d+\b")


@dataclass
class Portfolio:
    """Simulated tools and a hub that pulled them."""

    jira: JiraSim
    github: GitHubSim
    hub: RunningHub

    @property
    def client(self) -> httpx.Client:
        return self.hub.client

    def get(self, path: str, **params: Any) -> Any:
        answer = self.client.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def work_items(self, **params: Any) -> list[dict[str, Any]]:
        return self.hub.all("/api/v1/work-items", **params)

    def keys(self, **params: Any) -> set[str]:
        return {item["key"] for item in self.work_items(**params)}

    def jira_issues(self) -> list[Any]:
        return self.jira.issues()

    def github_issues(self) -> list[Any]:
        return [item for item in self.github.all_items() if not item.is_pull and not item.deleted]

    def github_pulls(self) -> list[Any]:
        return [item for item in self.github.all_items() if item.is_pull and not item.deleted]

    def tool_items(self) -> list[ToolItem]:
        """Every live Jira issue and GitHub issue, as the simulators hold them."""
        return tool_items(self.jira, self.github)


def wait_for_pulls(client: httpx.Client, runs_per_connection: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Until every connection has finished that many sync runs; returns the runs, newest first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.get("/api/v1/sync-runs").json()
        finished = [r for r in runs if r["status"] != "running"]
        if all(
            sum(r["connection_id"] == c for r in finished) >= runs_per_connection for c in ("jira-acme", "github-acme")
        ) and len(finished) == len(runs):
            return runs
        time.sleep(0.05)
    raise AssertionError(f"sync runs not finished after {timeout} s: {runs}")


@contextmanager
def portfolio_hub(database_url: str) -> Iterator[Portfolio]:
    """Simulators served on 127.0.0.1 and a hub on database_url that backfilled from both."""
    jira = JiraSim(issues=JIRA_ISSUES, seed=1, webhook_secret=JIRA_SECRET)
    github = GitHubSim(
        items=GITHUB_ITEMS, jira_keys=jira.key_numbers(), token=GITHUB_TOKEN, webhook_secret=GITHUB_SECRET
    )
    with ExitStack() as stack:
        jira_url = stack.enter_context(serving(jira.app))
        github_url = stack.enter_context(serving(github.app))
        config = HubConfig(
            connections={
                "jira-acme": JiraSettings(
                    id="jira-acme",
                    kind="jira",
                    base_url=jira_url,
                    email="ops@acme.example",
                    token=JIRA_TOKEN,
                    webhook_secret=JIRA_SECRET,
                    projects=PROJECTS,
                ),
                "github-acme": GitHubSettings(
                    id="github-acme",
                    kind="github",
                    base_url=github_url,
                    token=GITHUB_TOKEN,
                    webhook_secret=GITHUB_SECRET,
                    repos=REPOS,
                ),
            }
        )
        hub = stack.enter_context(running_hub(database_url, config))
        wait_for_pulls(hub.client, 1)  # a never-pulled connection backfills at start
        yield Portfolio(jira, github, hub)


@pytest.fixture(scope="module")
def acme(module_database_url: str) -> Iterator[Portfolio]:
    """Read-only: no test may change these tools or this store."""
    with portfolio_hub(module_database_url) as portfolio:
        yield portfolio


@pytest.fixture
def own_acme(database_url: str) -> Iterator[Portfolio]:
    """A hub of this test's own, to change."""
    with portfolio_hub(database_url) as portfolio:
        yield portfolio


@pytest.fixture(scope="module")
def read_token(acme: Portfolio) -> str:
    engine = create_db_engine(acme.hub.settings.database_url)
    try:
        return create_token(engine, ["read"], "api-test reader")
    finally:
        engine.dispose()


def anonymous(acme: Portfolio, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=acme.hub.url, headers=headers, timeout=30)


def sync_and_wait(portfolio: Portfolio, connection_id: str, full: bool = False) -> dict[str, Any]:
    """Trigger a pull over the API (once a scheduled one running has ended); the finished run."""
    deadline = time.monotonic() + 60
    while (
        answer := portfolio.client.post(f"/api/v1/connections/{connection_id}/sync", params={"full": full})
    ).status_code == 409:
        assert answer.json()["run_id"] is not None and time.monotonic() < deadline, answer.text
        time.sleep(0.05)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    while time.monotonic() < deadline:
        [run] = [r for r in portfolio.get("/api/v1/sync-runs", connection_id=connection_id) if r["id"] == run_id]
        if run["status"] != "running":
            return run
        time.sleep(0.05)
    raise AssertionError(f"the pull of {connection_id} did not finish")


def assert_problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert PROBLEM_FIELDS <= body.keys()
    assert body["status"] == status
    assert body["instance"] == answer.request.url.path
    assert body["detail"]
    return body


def pages(portfolio: Portfolio, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
    """The work items listing page by page at that limit, following next_cursor."""
    walked, cursor = [], None
    while True:
        body = portfolio.get("/api/v1/work-items", limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        walked.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return walked


def jira_key_in(title: str) -> str | None:
    found = re.match(r"([A-Z]+-\d+):", title)
    return found.group(1) if found else None


# --- auth ------------------------------------------------------------------------------


def test_a_request_without_a_token_gets_401_with_a_bearer_challenge(acme):
    with anonymous(acme) as client:
        answer = client.get("/api/v1/work-items")
    body = assert_problem(answer, 401)
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in body["detail"]


def test_an_unknown_token_gets_401(acme):
    with anonymous(acme, "ops_not-a-token-anyone-was-given") as client:
        answer = client.get("/api/v1/work-items")
    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"] == "Bearer"


def test_a_read_token_reads_the_unified_view(acme, read_token):
    with anonymous(acme, read_token) as client:
        answer = client.get("/api/v1/work-items", params={"limit": 1})
    assert answer.status_code == 200
    assert len(answer.json()["items"]) == 1


def test_a_read_token_cannot_trigger_a_sync(acme, read_token):
    with anonymous(acme, read_token) as client:
        answer = client.post("/api/v1/connections/jira-acme/sync")
    body = assert_problem(answer, 403)
    assert "write" in body["detail"]


def test_the_bootstrap_token_is_accepted_as_admin(acme):
    with anonymous(acme, ADMIN_TOKEN) as client:
        answer = client.get("/api/v1/inbox")  # needs the admin scope
    assert answer.status_code == 200
    assert answer.json() == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_need_no_token(acme, path):
    with anonymous(acme) as client:
        answer = client.get(path)
    assert answer.status_code == 200
    assert answer.json()["status"] in ("ok", "ready")


# --- errors ----------------------------------------------------------------------------


def test_an_unknown_work_item_is_a_404_problem(acme):
    answer = acme.client.get("/api/v1/work-items/999999")
    body = assert_problem(answer, 404)
    assert body["instance"] == "/api/v1/work-items/999999"
    assert "999999" in body["detail"]


def test_an_unknown_product_summary_is_a_404_problem(acme):
    assert_problem(acme.client.get("/api/v1/products/nonesuch/summary"), 404)


def test_a_sync_of_an_unknown_connection_is_a_404_problem(acme):
    body = assert_problem(acme.client.post("/api/v1/connections/nonesuch/sync"), 404)
    assert "nonesuch" in body["detail"]


@pytest.mark.parametrize(
    "path, params, parameter",
    [
        ("/api/v1/work-items", {"kind": "nonsense"}, "kind"),
        ("/api/v1/work-items", {"limit": 0}, "limit"),
        ("/api/v1/work-items", {"limit": 501}, "limit"),
        ("/api/v1/work-items", {"updated_since": "yesterday"}, "updated_since"),
        ("/api/v1/code-changes", {"state": "nonsense"}, "state"),
        ("/api/v1/changes", {"after": -1}, "after"),
    ],
)
def test_a_bad_query_parameter_is_a_422_problem_naming_it(acme, path, params, parameter):
    body = assert_problem(acme.client.get(path, params=params), 422)
    assert parameter in body["detail"]


def test_updated_since_without_a_utc_offset_is_a_422_problem(acme):
    body = assert_problem(acme.client.get("/api/v1/work-items", params={"updated_since": "2024-06-01T00:00:00"}), 422)
    assert "updated_since" in body["detail"] and "UTC offset" in body["detail"]


def test_an_unknown_path_is_a_404_problem(acme):
    assert_problem(acme.client.get("/api/v1/nonesuch"), 404)


@pytest.mark.parametrize(
    "path, params, status",
    [
        ("/api/v1/work-items/99999999999999999999", {}, 422),
        ("/api/v1/code-changes/99999999999999999999", {}, 422),
        ("/api/v1/changes", {"after": 99999999999999999999}, 422),
        ("/api/v1/work-items", {"cursor": base64.urlsafe_b64encode(b"99999999999999999999").decode()}, 400),
        ("/api/v1/work-items", {"cursor": base64.urlsafe_b64encode(b"-1").decode()}, 400),
    ],
)
def test_an_id_beyond_what_the_database_holds_is_a_client_error(acme, path, params, status):
    assert_problem(acme.client.get(path, params=params), status)


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "YWJj", "//8="])
@pytest.mark.parametrize("path", ["/api/v1/work-items", "/api/v1/code-changes", "/api/v1/people", "/api/v1/links"])
def test_a_cursor_the_api_did_not_hand_out_is_a_400_problem(acme, path, cursor):
    body = assert_problem(acme.client.get(path, params={"cursor": cursor}), 400)
    assert "cursor" in body["detail"]


# --- work items ------------------------------------------------------------------------


def test_every_work_item_carries_the_unified_fields(acme):
    items = acme.work_items()
    assert len(items) == JIRA_ISSUES + len(acme.github_issues())
    for item in items:
        assert WORK_ITEM_FIELDS <= item.keys(), item
        assert item["kind"] in {"initiative", "epic", "story", "task", "bug", "subtask", "other"}
        assert item["status_category"] in {"todo", "in_progress", "done", "cancelled"}
        assert item["priority"] in {"critical", "high", "medium", "low", "none"}
        assert item["product"] in PRODUCTS
        assert isinstance(item["labels"], list)
        assert item["url"] and item["title"] and item["created_at"] and item["updated_at"]


def test_a_jira_issue_is_served_with_its_key_and_tool_fields(acme):
    issue = acme.jira.find("PAY-1")
    [item] = [i for i in acme.work_items(q="PAY-1") if i["key"] == "PAY-1"]
    assert item["title"] == issue.summary
    assert item["status"] == issue.status
    assert item["kind"] == JIRA_KINDS[issue.issuetype]
    assert item["url"].endswith("/browse/PAY-1")
    assert item["labels"] == issue.labels


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_the_product_filter_returns_that_products_jira_issues_and_github_issues(acme, product):
    project, repos = PRODUCTS[product]
    expected = {i.key for i in acme.jira_issues() if i.project == project}
    expected |= {f"{i.repo}#{i.number}" for i in acme.github_issues() if i.repo in repos}
    assert acme.keys(product=product) == expected


def test_the_kind_filter_returns_exactly_the_jira_epics(acme):
    expected = {i.key for i in acme.jira_issues() if i.issuetype == "Epic"}
    assert expected
    assert acme.keys(kind="epic") == expected


@pytest.mark.parametrize("kind", ["story", "task", "bug", "subtask"])
def test_the_kind_filter_returns_only_and_all_items_of_that_kind(acme, kind):
    expected = {i.key for i in acme.tool_items() if i.kind == kind}
    assert expected
    assert acme.keys(kind=kind) == expected


@pytest.mark.parametrize("category", ["todo", "in_progress", "done", "cancelled"])
def test_the_status_category_filter_matches_the_tools_statuses(acme, category):
    expected = {i.key for i in acme.jira_issues() if JIRA_CATEGORIES[i.status] == category}
    expected |= {f"{i.repo}#{i.number}" for i in acme.github_issues() if github_category(i) == category}
    assert expected
    assert acme.keys(status_category=category) == expected


def test_the_label_filter_returns_items_carrying_that_label_in_either_tool(acme):
    expected = {i.key for i in acme.jira_issues() if "tech-debt" in i.labels}
    expected |= {f"{i.repo}#{i.number}" for i in acme.github_issues() if "tech-debt" in i.labels}
    assert any("#" in key for key in expected) and any("#" not in key for key in expected)
    assert acme.keys(label="tech-debt") == expected


def test_the_assignee_filter_by_email_returns_that_persons_items_in_either_tool(acme):
    people = acme.jira.people
    counts = {n: sum(i.assignee == n for i in acme.jira_issues()) for n in range(len(people))}
    n = max(counts, key=counts.get)
    expected = {i.key for i in acme.jira_issues() if i.assignee == n}
    expected |= {f"{i.repo}#{i.number}" for i in acme.github_issues() if i.assignees and i.assignees[0] == n}
    items = acme.work_items(assignee=people[n].email)
    assert {i["key"] for i in items} == expected
    assert {i["assignee"]["email"] for i in items} == {people[n].email}


def test_the_assignee_filter_by_github_login_returns_that_persons_items(acme):
    in_jira = {i.assignee for i in acme.tool_items() if "#" not in i.key}
    assignees = [acme.github.people[n] for i in acme.github_issues() for n in i.assignees]
    person = next(p for p in assignees if p.email in in_jira)  # someone with work in both tools
    expected = {i.key for i in acme.tool_items() if i.assignee == person.email}
    assert any("#" in key for key in expected) and any("#" not in key for key in expected)
    assert acme.keys(assignee=person.login) == expected


def test_the_text_filter_matches_title_or_key_ignoring_case(acme):
    everything = acme.tool_items()
    for q in ("REFUND", "pay-1", "checkout"):
        expected = {i.key for i in everything if q.lower() in i.title.lower() or q.lower() in i.key.lower()}
        assert expected, q
        assert acme.keys(q=q) == expected, q


@pytest.mark.parametrize("q", ["%", "_", "pay_1"])
def test_the_text_filter_takes_wildcard_characters_literally(acme, q):
    assert acme.keys(q=q) == set()


@pytest.mark.parametrize("label", ['with "quotes"', "back\\slash", "ünïcode"])
def test_the_label_filter_takes_any_text(acme, label):
    assert acme.keys(label=label) == set()


@pytest.mark.parametrize("assignee", ["²", "99999999999999999999", "nobody@acme.example"])
def test_an_assignee_who_is_nobody_matches_nothing(acme, assignee):
    assert acme.keys(assignee=assignee) == set()


def test_the_assignee_filter_takes_the_hub_person_id(acme):
    email = next(i.assignee for i in acme.tool_items() if i.assignee)
    [person] = [p for p in acme.hub.all("/api/v1/people") if p["email"] == email]
    expected = {i.key for i in acme.tool_items() if i.assignee == email}
    assert acme.keys(assignee=str(person["id"])) == expected


def test_updated_since_means_the_same_moment_whatever_its_offset(acme):
    everything = acme.tool_items()
    moment = sorted(i.updated_at for i in everything)[len(everything) // 2].replace(second=0, microsecond=0)
    expected = {i.key for i in everything if i.updated_at >= moment}
    assert 0 < len(expected) < len(everything)
    assert acme.keys(updated_since=moment.astimezone(timezone(timedelta(hours=2))).isoformat()) == expected
    assert acme.keys(updated_since=moment.strftime("%Y-%m-%dT%H:%M:%SZ")) == expected


@pytest.mark.parametrize("few_updates", [views.FEW_UPDATES, 0])  # matches sorted, or ids walked
def test_updated_since_pages_in_id_order_whichever_way_the_matches_are_found(acme, monkeypatch, few_updates):
    monkeypatch.setattr(views, "FEW_UPDATES", few_updates)
    everything = acme.tool_items()
    moment = sorted(i.updated_at for i in everything)[len(everything) // 3]
    expected = {i.key for i in everything if i.updated_at >= moment}
    walked = [i for page in pages(acme, 7, updated_since=moment.isoformat()) for i in page]
    ids = [i["id"] for i in walked]
    assert ids == sorted(set(ids))
    assert {i["key"] for i in walked} == expected


def test_updated_since_returns_items_the_tool_changed_at_or_after_that_moment(acme):
    everything = acme.tool_items()
    moment = sorted(i.updated_at for i in everything)[len(everything) // 2]
    expected = {i.key for i in everything if i.updated_at >= moment}
    assert 0 < len(expected) < len(everything)
    assert acme.keys(updated_since=moment.isoformat()) == expected


def test_filters_combine(acme):
    expected = {i.key for i in acme.jira_issues() if i.project == "PAY" and i.issuetype == "Story"}
    assert acme.keys(product="payments", kind="story", connection_id="jira-acme") == expected


def test_paging_with_a_small_limit_walks_every_item_exactly_once(acme):
    everything = {i.key for i in acme.tool_items()}
    walked = pages(acme, 7)
    seen = [i["key"] for page in walked for i in page]
    assert all(len(page) <= 7 for page in walked)
    assert len(seen) == len(set(seen))
    assert set(seen) == everything
    assert len(walked) == -(-len(everything) // 7)


def test_a_filtered_listing_pages_through_only_matching_items(acme):
    expected = {i.key for i in acme.tool_items() if i.product == "payments"}
    seen = [i["key"] for page in pages(acme, 5, product="payments") for i in page]
    assert len(seen) == len(set(seen))
    assert set(seen) == expected


def test_a_deleted_work_item_is_hidden_unless_include_deleted(own_acme):
    own_acme.jira.delete_issue("CHK-2")
    run = sync_and_wait(own_acme, "jira-acme", full=True)
    assert run["status"] == "succeeded" and run["deleted"] == 1
    live = {i.key for i in own_acme.tool_items()}
    assert "CHK-2" not in live
    assert own_acme.keys() == live
    everything = own_acme.work_items(include_deleted="true")
    assert {i["key"] for i in everything} == live | {"CHK-2"}
    [item] = [i for i in everything if i["key"] == "CHK-2"]
    assert item["deleted_at"] is not None


# --- one work item ---------------------------------------------------------------------


def _id_of(portfolio: Portfolio, key: str) -> int:
    return next(i["id"] for i in portfolio.work_items(q=key) if i["key"] == key)


def test_a_subtask_links_to_its_parent_story_and_the_story_lists_it(acme):
    subtask = next(i for i in acme.jira_issues() if i.issuetype == "Sub-task")
    story = acme.jira.issue_by_id(subtask.parent)
    subtask_id, story_id = _id_of(acme, subtask.key), _id_of(acme, story.key)

    detail = acme.get(f"/api/v1/work-items/{subtask_id}")
    assert detail["key"] == subtask.key
    [parent] = [link for link in detail["links"] if link["type"] == "parent" and link["direction"] == "outgoing"]
    assert (parent["to_key"], parent["to_id"]) == (story.key, story_id)

    children = [
        link
        for link in acme.get(f"/api/v1/work-items/{story_id}")["links"]
        if link["type"] == "parent" and link["direction"] == "incoming"
    ]
    assert (subtask_id, subtask.key) in {(link["from_id"], link["from_key"]) for link in children}


def test_a_story_in_an_epic_links_to_the_epic(acme):
    story = next(i for i in acme.jira_issues() if i.issuetype == "Story" and i.parent)
    epic = acme.jira.issue_by_id(story.parent)
    detail = acme.get(f"/api/v1/work-items/{_id_of(acme, story.key)}")
    parents = [link for link in detail["links"] if link["type"] == "parent" and link["direction"] == "outgoing"]
    assert [(link["to_key"], link["to_id"]) for link in parents] == [(epic.key, _id_of(acme, epic.key))]


def test_a_work_item_named_by_a_pull_request_shows_it_implementing_it(acme):
    pull = next(p for p in acme.github_pulls() if jira_key_in(p.title))
    key = jira_key_in(pull.title)
    change = next(c for c in acme.hub.all("/api/v1/code-changes") if c["key"] == f"{pull.repo}#{pull.number}")
    detail = acme.get(f"/api/v1/work-items/{_id_of(acme, key)}")
    incoming = [link for link in detail["links"] if link["type"] == "implements" and link["direction"] == "incoming"]
    assert (change["id"], change["key"]) in {(link["from_id"], link["from_key"]) for link in incoming}
    assert all(link["from_entity"] == "code_change" and link["evidence"] for link in incoming)


def test_a_fresh_work_item_has_one_create_change_in_its_history(acme):
    detail = acme.get(f"/api/v1/work-items/{_id_of(acme, 'GRO-1')}")
    [created] = detail["history"]
    assert created["op"] == "create"
    assert created["fields"]["key"] == [None, "GRO-1"]
    assert created["fields"]["title"] == [None, acme.jira.find("GRO-1").summary]


def test_a_change_in_jira_shows_in_the_history_with_old_and_new_values(own_acme):
    old_title = own_acme.jira.find("PAY-2").summary
    own_acme.jira.update_issue("PAY-2", summary="Rename the settlement job", priority="Highest")
    run = sync_and_wait(own_acme, "jira-acme")
    assert run["status"] == "succeeded" and run["updated"] == 1

    detail = own_acme.get(f"/api/v1/work-items/{_id_of(own_acme, 'PAY-2')}")
    assert detail["title"] == "Rename the settlement job"
    assert detail["priority"] == "critical"
    assert [c["op"] for c in detail["history"]] == ["create", "update"]
    update = detail["history"][-1]
    assert update["fields"]["title"] == [old_title, "Rename the settlement job"]
    assert update["fields"]["priority"][1] == "critical"
    assert update["entity"] == "work_item" and update["entity_id"] == detail["id"]


# --- code changes ----------------------------------------------------------------------


def _expected_state(pull: Any) -> str:
    return "merged" if pull.merged_at else pull.state


def test_every_code_change_has_the_state_of_its_pull_request(acme):
    changes = {c["key"]: c for c in acme.hub.all("/api/v1/code-changes")}
    expected = {f"{p.repo}#{p.number}": _expected_state(p) for p in acme.github_pulls()}
    assert {key: c["state"] for key, c in changes.items()} == expected


@pytest.mark.parametrize("state", ["open", "merged", "closed"])
def test_the_state_filter_returns_only_and_all_code_changes_in_that_state(acme, state):
    expected = {f"{p.repo}#{p.number}" for p in acme.github_pulls() if _expected_state(p) == state}
    assert {c["key"] for c in acme.hub.all("/api/v1/code-changes", state=state)} == expected


def test_a_pull_request_closed_without_merging_is_served_as_closed(own_acme):
    pull = next(p for p in own_acme.github_pulls() if p.state == "open")
    own_acme.github.update_pull(pull.repo, pull.number, state="closed")
    run = sync_and_wait(own_acme, "github-acme")
    assert run["status"] == "succeeded" and run["updated"] >= 1
    closed = {c["key"]: c for c in own_acme.hub.all("/api/v1/code-changes", state="closed")}
    assert set(closed) == {f"{p.repo}#{p.number}" for p in own_acme.github_pulls() if _expected_state(p) == "closed"}
    change = closed[f"{pull.repo}#{pull.number}"]
    assert change["closed_at"] is not None and change["merged_at"] is None


def test_a_pull_request_naming_a_jira_key_in_its_title_implements_that_work_item(acme):
    changes = {c["key"]: c for c in acme.hub.all("/api/v1/code-changes")}
    ids = {i["key"]: i["id"] for i in acme.work_items()}
    named = [p for p in acme.github_pulls() if jira_key_in(p.title)]
    assert named
    for pull in named:
        key = jira_key_in(pull.title)
        links = [
            link
            for link in changes[f"{pull.repo}#{pull.number}"]["links"]
            if link["type"] == "implements" and link["to_key"] == key
        ]
        assert links, pull.title
        assert links[0]["to_entity"] == "work_item"
        assert links[0]["to_id"] == ids[key]
        assert key in links[0]["evidence"]


def test_a_code_change_is_served_alone_with_its_history(acme):
    pull = acme.github_pulls()[0]
    key = f"{pull.repo}#{pull.number}"
    change = next(c for c in acme.hub.all("/api/v1/code-changes") if c["key"] == key)
    detail = acme.get(f"/api/v1/code-changes/{change['id']}")
    assert (detail["key"], detail["title"], detail["state"]) == (key, pull.title, _expected_state(pull))
    assert [c["op"] for c in detail["history"]] == ["create"]
    assert_problem(acme.client.get("/api/v1/code-changes/999999"), 404)


# --- people, products, links -----------------------------------------------------------


def test_people_from_jira_carry_their_email(acme):
    people = acme.hub.all("/api/v1/people")
    emails = {p.email for p in acme.jira.people}
    from_jira = [p for p in people if any(i["connection_id"] == "jira-acme" for i in p["identities"])]
    assert from_jira
    for person in from_jira:
        assert person["email"] in emails, person
    assert len({p["id"] for p in people}) == len(people)


def test_products_are_the_three_in_the_portfolio(acme):
    products = acme.get("/api/v1/products")
    assert [(p["key"], p["name"]) for p in products] == [
        ("checkout", "Checkout"),
        ("growth", "Growth"),
        ("payments", "Payments"),
    ]
    assert all(p["owner"].endswith("@acme.example") and p["description"] for p in products)


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_a_product_summary_counts_the_products_work_items_and_code_changes(acme, product):
    summary = acme.get(f"/api/v1/products/{product}/summary")
    items = [i for i in acme.tool_items() if i.product == product]
    pulls = [p for p in acme.github_pulls() if PRODUCT_OF[p.repo] == product]
    assert summary["product"]["key"] == product
    assert summary["work_items"] == {
        "total": len(items),
        "by_status_category": dict(Counter(i.status_category for i in items)),
        "by_kind": dict(Counter(i.kind for i in items)),
    }
    assert summary["code_changes"] == {"total": len(pulls), "by_state": dict(Counter(map(_expected_state, pulls)))}


def _twelve_weeks(portfolio: Portfolio, product: str) -> tuple[dict[str, Any], list[ToolItem]]:
    """The product's summary over the 84 days to today, and the work the tools say was done in them."""
    last = datetime.now(UTC).date()
    first = last - timedelta(days=83)
    summary = portfolio.get(f"/api/v1/products/{product}/summary", **{"from": str(first), "to": str(last)})
    start = datetime.combine(first, datetime.min.time(), UTC)
    done = [i for i in portfolio.tool_items() if i.product == product and i.status_category == "done"]
    return summary, [i for i in done if i.completed_at >= start]


def _week_of(moment: datetime) -> str:
    return (moment - timedelta(days=moment.weekday())).date().isoformat()


def _percentiles(days: list[float]) -> dict[str, float | None]:
    cuts = quantiles(days, n=100, method="inclusive") if len(days) > 1 else days * 99
    return {p: round(cuts[n - 1], 2) if days else None for p, n in (("p50", 50), ("p85", 85), ("p95", 95))}


def test_work_finished_now_shows_in_this_weeks_throughput_and_lead_time(own_acme):
    issue = next(i for i in own_acme.jira_issues() if i.project == "GRO" and i.status == "In Progress")
    own_acme.jira.update_issue(issue.key, status="Done")
    run = sync_and_wait(own_acme, "jira-acme")
    assert run["updated"] == 1
    item = own_acme.get(f"/api/v1/work-items/{_id_of(own_acme, issue.key)}")
    assert item["status_category"] == "done" and _when(item["completed_at"]) == issue.resolved

    summary, done = _twelve_weeks(own_acme, "growth")
    this_week = [i.key for i in done if _week_of(i.completed_at) == _week_of(issue.resolved)]
    assert issue.key in this_week
    assert summary["throughput_per_week"][-1] == {"week_of": _week_of(issue.resolved), "done": len(this_week)}
    lead = [(i.completed_at - i.created_at).total_seconds() / 86400 for i in done]
    assert summary["lead_time_days"] == _percentiles(lead)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_product_summary_shows_the_percentiles_of_recent_done_work(own_acme):
    waiting = [i for i in own_acme.jira_issues() if i.project == "PAY" and i.status == "To Do"]
    assert len(waiting) >= 5
    for status in ("In Progress", "Done"):  # each pulled in between, as a team works through them
        for issue in waiting:
            own_acme.jira.update_issue(issue.key, status=status)
        assert sync_and_wait(own_acme, "jira-acme")["updated"] == len(waiting)

    summary, done = _twelve_weeks(own_acme, "payments")
    assert {i.key for i in waiting} < {i.key for i in done}  # and what the seeded history finished
    weeks = Counter(_week_of(i.completed_at) for i in done)
    assert summary["throughput_per_week"] == [{"week_of": week, "done": n} for week, n in sorted(weeks.items())]
    for field, start in (("lead_time_days", "created_at"), ("cycle_time_days", "started_at")):
        days = [(i.completed_at - getattr(i, start)).total_seconds() / 86400 for i in done if getattr(i, start)]
        assert summary[field] == _percentiles(days), field


def test_the_links_listing_filters_by_type(acme):
    parents = acme.hub.all("/api/v1/links", type="parent")
    expected_parents = sum(i.parent is not None for i in acme.jira_issues())
    assert len(parents) == expected_parents
    assert {link["type"] for link in parents} == {"parent"}
    named = {
        (f"{p.repo}#{p.number}", key)
        for p in acme.github_pulls()
        for key in JIRA_KEY.findall(" ".join((p.title, p.head_ref, p.body or "")))
    }
    change_keys = {c["id"]: c["key"] for c in acme.hub.all("/api/v1/code-changes")}
    implements = acme.hub.all("/api/v1/links", type="implements")
    assert named and {link["from_entity"] for link in implements} == {"code_change"}
    assert {(change_keys[link["from_id"]], link["to_key"]) for link in implements} == named
    assert len(implements) == len(named)
    everything = acme.hub.all("/api/v1/links")
    assert len(everything) == expected_parents + len(named)


# --- the change feed -------------------------------------------------------------------


def test_following_the_change_feed_sees_every_seq_once_in_order(acme):
    seqs, after = [], 0
    while True:
        body = acme.get("/api/v1/changes", after=after, limit=25)
        if not body["items"]:
            assert body["next_after"] == after
            break
        seqs += [c["seq"] for c in body["items"]]
        assert body["next_after"] == body["items"][-1]["seq"]
        after = body["next_after"]
    assert seqs == list(range(1, len(seqs) + 1))
    records = len(acme.tool_items()) + len(acme.github_pulls())
    assert len(seqs) == records  # one create each, nothing changed since


def test_the_change_feed_after_the_last_seq_is_empty(acme):
    last = acme.get("/api/v1/changes", after=0, limit=1000)["next_after"]
    assert acme.get("/api/v1/changes", after=last) == {"items": [], "next_after": last}


# --- administration --------------------------------------------------------------------


def test_connections_show_their_status_and_never_their_credentials(acme):
    answer = acme.client.get("/api/v1/connections")
    assert answer.status_code == 200
    connections = {c["id"]: c for c in answer.json()}
    assert {c: (v["kind"], v["status"] != "new", v["webhook_secret_configured"]) for c, v in connections.items()} == {
        "jira-acme": ("jira", True, True),
        "github-acme": ("github", True, True),
    }
    assert connections["jira-acme"]["webhook_url"].endswith("/api/v1/webhooks/jira-acme")
    for secret in (JIRA_TOKEN, JIRA_SECRET, GITHUB_TOKEN, GITHUB_SECRET):
        assert secret not in answer.text


def test_sync_runs_count_what_the_backfill_created(acme):
    runs = acme.get("/api/v1/sync-runs")
    by_connection = {r["connection_id"]: r for r in runs}
    assert len(runs) == 2
    jira, github = by_connection["jira-acme"], by_connection["github-acme"]
    assert (jira["status"], jira["fetched"], jira["created"], jira["failed"], jira["errors"]) == (
        "succeeded",
        JIRA_ISSUES,
        JIRA_ISSUES,
        0,
        [],
    )
    assert (github["status"], github["fetched"], github["created"], github["failed"]) == (
        "succeeded",
        GITHUB_ITEMS,
        GITHUB_ITEMS,
        0,
    )
    assert [r["connection_id"] for r in acme.get("/api/v1/sync-runs", connection_id="github-acme")] == ["github-acme"]


def test_a_triggered_sync_with_nothing_new_creates_nothing(own_acme):
    run = sync_and_wait(own_acme, "github-acme", full=True)
    assert (run["mode"], run["status"], run["fetched"], run["created"], run["updated"], run["deleted"]) == (
        "full",
        "succeeded",
        GITHUB_ITEMS,
        0,
        0,
        0,
    )
    assert run["unchanged"] == GITHUB_ITEMS

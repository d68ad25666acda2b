"""GET /api/v1/people/{id}: one person across tools, with their work in each kind of record,
checked against what the simulated tools hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.portfolio import Portfolio, backfilled_portfolio


@pytest.fixture(scope="module")
def acme(module_database_url: str) -> Iterator[Portfolio]:
    with backfilled_portfolio(module_database_url, jira_issues=40, github_items=40, seed=11, secret="s") as running:
        yield running


def _person_id(acme: Portfolio, email: str) -> int:
    return next(p["id"] for p in acme.hub.all("/api/v1/people") if p["email"] == email)


def test_a_person_is_one_across_jira_and_github_with_each_identity_naming_its_tool(acme):
    person = acme.jira.people[0]  # people.yaml names their GitHub login; Jira gives their email
    body = acme.hub.client.get(f"/api/v1/people/{_person_id(acme, person.email)}").json()
    assert body["email"] == person.email
    assert {(i["tool"], i["login"] or i["external_id"]) for i in body["identities"]} >= {
        ("jira", person.account_id),
        ("github", person.login),
    }


def test_a_persons_work_counts_what_they_are_assigned_and_author_in_every_tool(acme):
    people = acme.jira.people
    busiest = max(range(len(people)), key=lambda n: sum(i.assignee == n for i in acme.jira.issues()))
    assigned = {i.key for i in acme.jira.issues() if i.assignee == busiest}
    assigned |= {
        f"{i.repo}#{i.number}"
        for i in acme.github.all_items()
        if not i.is_pull and not i.deleted and i.assignees and i.assignees[0] == busiest
    }
    authored = {f"{i.repo}#{i.number}" for i in acme.github.all_items() if i.is_pull and i.author == busiest}
    body = acme.hub.client.get(f"/api/v1/people/{_person_id(acme, people[busiest].email)}").json()
    work = {(w["entity"], w["role"]): w for w in body["work"]}
    assert work[("work_item", "assignee")]["count"] == len(assigned)
    assert {r["key"] for r in work[("work_item", "assignee")]["recent"]} <= assigned
    assert work.get(("code_change", "author"), {"count": 0})["count"] == len(authored)
    recent = [r["updated_at"] for r in work[("work_item", "assignee")]["recent"]]
    assert recent == sorted(recent, reverse=True)


def test_an_unknown_person_is_a_404_problem(acme):
    answer = acme.hub.client.get("/api/v1/people/2147483647")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")

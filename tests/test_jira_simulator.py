"""The Jira Cloud simulator answers like Jira Cloud: paths, shapes, paging, errors, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from statistics import median

import httpx
import pytest
from fastapi import FastAPI, Request

from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving
from opsync_simulators.world import people

AUTH = ("ops@acme.example", "api-token")
NOW = datetime(2026, 3, 4, 15, 30, 12, 345000, tzinfo=UTC)  # a pinned "now" for the seeded history
# The simulated workflow's statuses and their Jira status categories.
CATEGORY = {
    "To Do": "new",
    "In Progress": "indeterminate",
    "In Review": "indeterminate",
    "Done": "done",
    "Won't Do": "done",
}
ALL = "project in (PAY, CHK, GRO) ORDER BY created ASC"


def receiver() -> tuple[FastAPI, list[tuple[dict[str, str], bytes]]]:
    """A webhook endpoint that keeps what it receives."""
    received: list[tuple[dict[str, str], bytes]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> dict[str, bool]:
        received.append((dict(request.headers), await request.body()))
        return {"ok": True}

    return app, received


def search_all(url: str, jql: str, fields: str = "id", page: int = 50, expand: str | None = None) -> list[dict]:
    issues, token = [], None
    while True:
        params = {"jql": jql, "fields": fields, "maxResults": page, **({"expand": expand} if expand else {})}
        if token:
            params["nextPageToken"] = token
        body = httpx.get(f"{url}/rest/api/3/search/jql", params=params, auth=AUTH).json()
        assert "total" not in body
        issues += body["issues"]
        token = body.get("nextPageToken")
        if body["isLast"]:
            return issues


def test_twenty_thousand_generated_issues_have_distinct_ids_and_keys() -> None:
    sim = JiraSim(issues=20_000)
    issues = [sim.render(sim.find(issue_id), fields=set()) for issue_id in sorted(sim.ids())[:5]]
    assert len(sim.ids()) == 20_000
    assert [issue["id"] for issue in issues] == ["10000", "10001", "10002", "10003", "10004"]
    assert all(issue["key"].split("-")[0] in ("PAY", "CHK", "GRO") for issue in issues)


def when(text: str) -> datetime:
    """A Jira timestamp ("2026-03-04T15:30:12.345+0000") as a datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def test_same_seed_and_now_generate_the_same_issues() -> None:
    first, second = JiraSim(issues=100, seed=3, now=NOW), JiraSim(issues=100, seed=3, now=NOW)
    expand = {"changelog"}
    assert first.render(first.find("10042"), expand=expand) == second.render(second.find("10042"), expand=expand)


def test_a_later_now_moves_the_same_history_along_with_it() -> None:
    month = timedelta(days=30)
    earlier, later = JiraSim(issues=100, seed=3, now=NOW), JiraSim(issues=100, seed=3, now=NOW + month)

    def what(sim: JiraSim) -> list[tuple]:
        return [
            (i.key, i.issuetype, i.summary, i.status, i.assignee, i.reporter, i.labels, i.parent) for i in sim.issues()
        ]

    assert what(earlier) == what(later)
    assert [i.created + month for i in earlier.issues()] == [i.created for i in later.issues()]
    assert [[h["created"] + month for h in i.histories] for i in earlier.issues()] == [
        [h["created"] for h in i.histories] for i in later.issues()
    ]


def test_seeded_issues_were_created_over_the_last_six_months_and_finish_work_every_recent_week() -> None:
    sim = JiraSim(issues=300, now=NOW)
    with serving(sim.app) as url:
        issues = search_all(url, ALL, fields="created,status,resolutiondate")
    created = [when(i["fields"]["created"]) for i in issues]
    assert NOW - timedelta(days=190) < min(created) < NOW - timedelta(days=170) and max(created) < NOW
    done = [when(i["fields"]["resolutiondate"]) for i in issues if i["fields"]["status"]["name"] == "Done"]
    weeks_ago = Counter((NOW - at) // timedelta(weeks=1) for at in done)
    assert all(weeks_ago[week] >= 1 for week in range(12)), weeks_ago
    assert 0.4 < len(done) / len(issues) < 0.8
    assert {i["fields"]["status"]["name"] for i in issues} == set(CATEGORY)


def test_every_seeded_status_is_where_the_changelog_moves_took_the_issue_at_their_times() -> None:
    sim = JiraSim(issues=300, now=NOW)
    fields = "created,updated,status,resolution,resolutiondate,statuscategorychangedate"
    with serving(sim.app) as url:
        issues = search_all(url, ALL, fields=fields, expand="changelog")
    for issue in issues:
        values, changelog = issue["fields"], issue["changelog"]
        histories = sorted(changelog["histories"], key=lambda history: when(history["created"]))
        assert changelog["total"] == changelog["maxResults"] == len(histories)
        created, status, category_changed, moved = when(values["created"]), "To Do", None, []
        for history in histories:
            assert set(history) == {"id", "author", "created", "items"} and history["author"]["accountId"]
            [item] = history["items"]
            assert set(item) == {"field", "fieldtype", "fieldId", "from", "fromString", "to", "toString"}
            assert (item["field"], item["fieldId"], item["fromString"]) == ("status", "status", status)
            at = when(history["created"])
            assert created < at < NOW and (not moved or moved[-1] < at)
            if CATEGORY[item["toString"]] != CATEGORY[status]:
                category_changed = at
            status = item["toString"]
            moved.append(at)
        assert values["status"]["name"] == status
        last = moved[-1] if moved else created
        assert last <= when(values["updated"]) < NOW
        assert when(values["statuscategorychangedate"]) == (category_changed or created)
        if CATEGORY[status] == "done":
            assert when(values["resolutiondate"]) == last and values["resolution"]["name"] == status
        else:
            assert values["resolutiondate"] is None and values["resolution"] is None


def test_seeded_work_mostly_passes_through_in_progress_and_what_is_in_progress_started_weeks_ago_at_most() -> None:
    sim = JiraSim(issues=600, now=NOW)
    with serving(sim.app) as url:
        issues = search_all(url, ALL, fields="status", expand="changelog")
    path = {
        i["key"]: [item["toString"] for h in i["changelog"]["histories"][::-1] for item in h["items"]] for i in issues
    }
    status = {i["key"]: i["fields"]["status"]["name"] for i in issues}
    done = [key for key in status if status[key] == "Done"]
    assert sum("In Progress" in path[key] for key in done) / len(done) > 0.75
    assert any(path[key] == ["Done"] for key in done)  # a small fix, closed from To Do
    assert any(path[key] == ["Won't Do"] for key in status) and any(
        "In Progress" in path[key] for key in status if status[key] == "Won't Do"
    )
    started = {
        i["key"]: when(i["changelog"]["histories"][-1]["created"])  # the oldest: search lists the newest first
        for i in issues
        if CATEGORY[status[i["key"]]] == "indeterminate"
    }
    assert len(started) >= 10
    assert median(NOW - at for at in started.values()) < timedelta(days=21)


def test_expand_changelog_keeps_the_latest_histories_issue_oldest_first_and_search_newest_first() -> None:
    sim = JiraSim(issues=20, now=NOW)
    seeded = len(sim.find("10003").histories)
    for n in range(110):
        sim.update_issue("10003", summary=f"Summary {n}")
    with serving(sim.app) as url:
        issue = httpx.get(f"{url}/rest/api/3/issue/10003", params={"expand": "changelog"}, auth=AUTH).json()
        [found] = search_all(url, "id = 10003", fields="summary", expand="changelog")
    shown, listed = issue["changelog"], found["changelog"]
    summaries = lambda histories: [h["items"][0]["toString"] for h in histories]  # noqa: E731
    assert (shown["total"], shown["maxResults"], len(shown["histories"])) == (seeded + 110, 100, 100)
    assert summaries(shown["histories"]) == [f"Summary {n}" for n in range(10, 110)]
    assert (listed["total"], listed["maxResults"], len(listed["histories"])) == (seeded + 110, 40, 40)
    assert summaries(listed["histories"]) == [f"Summary {n}" for n in range(109, 69, -1)]
    ids = [h["id"] for i in sim.issues() for h in i.histories]
    assert len(ids) == len(set(ids))  # unique across issues, as Jira's are


def test_sprints_lead_up_to_the_active_one_and_only_past_releases_are_released() -> None:
    sim = JiraSim(issues=5, now=NOW)
    for project in sim.projects.values():
        *closed, active = project.sprints
        assert active["state"] == "active" and when(active["startDate"][:-1] + "+0000") <= NOW < when(
            active["endDate"][:-1] + "+0000"
        )
        assert all(s["state"] == "closed" and when(s["completeDate"][:-1] + "+0000") <= NOW for s in closed)
        assert [v["released"] for v in project.versions] == [
            v["releaseDate"] < NOW.date().isoformat() for v in project.versions
        ]
        assert not project.versions[-1]["released"]


def test_generated_issue_has_cloud_shaped_fields() -> None:
    sim = JiraSim(issues=300)
    stories = [sim.render(sim.find(i)) for i in sorted(sim.ids()) if sim.find(i).issuetype == "Story"]
    fields = stories[-1]["fields"]
    assert fields["status"]["statusCategory"]["key"] in ("new", "indeterminate", "done")
    assert fields["reporter"]["accountType"] == "atlassian"
    assert fields["reporter"]["emailAddress"] in {person.email for person in people()}
    assert fields["project"]["key"] in ("PAY", "CHK", "GRO")
    assert fields["updated"][-5:] == "+0000" and "." in fields["updated"]
    assert any(
        "parent" in s["fields"] and s["fields"]["parent"]["fields"]["issuetype"]["name"] == "Epic" for s in stories
    )


def test_server_info_says_cloud_without_credentials() -> None:
    with serving(JiraSim(issues=1).app) as url:
        info = httpx.get(f"{url}/rest/api/3/serverInfo").json()
    assert info["deploymentType"] == "Cloud"
    assert info["versionNumbers"][0] >= 1000


def test_request_without_credentials_is_rejected_with_401() -> None:
    with serving(JiraSim(issues=1).app) as url:
        response = httpx.get(f"{url}/rest/api/3/myself")
    assert response.status_code == 401
    assert response.json()["errorMessages"]


def test_wrong_token_is_rejected_when_the_sim_has_credentials() -> None:
    with serving(JiraSim(issues=1, credentials=AUTH).app) as url:
        wrong = httpx.get(f"{url}/rest/api/3/myself", auth=(AUTH[0], "nope"))
        right = httpx.get(f"{url}/rest/api/3/myself", auth=AUTH)
    assert (wrong.status_code, right.status_code) == (401, 200)
    assert right.json()["timeZone"] == "UTC"


def test_old_search_endpoint_is_gone() -> None:
    with serving(JiraSim(issues=1).app) as url:
        for version in ("2", "3"):
            response = httpx.get(f"{url}/rest/api/{version}/search", params={"jql": ""}, auth=AUTH)
            assert response.status_code == 410
            assert "search/jql" in response.json()["errorMessages"][0]


def test_search_jql_pages_through_every_issue_once() -> None:
    sim = JiraSim(issues=230)
    with serving(sim.app) as url:
        issues = search_all(url, "project in (PAY, CHK, GRO) ORDER BY updated ASC")
    assert len(issues) == 230
    assert {issue["id"] for issue in issues} == sim.ids()


def test_search_jql_filters_by_project_and_updated_to_the_minute() -> None:
    sim = JiraSim(issues=300)
    with serving(sim.app) as url:
        everything = search_all(url, "project = PAY ORDER BY updated DESC", fields="updated,project")
        middle = everything[len(everything) // 2]["fields"]["updated"]  # 2024-..T10:15:30.123+0000
        since = middle[:10] + " " + middle[11:16]
        recent = search_all(url, f'project = PAY AND updated >= "{since}" ORDER BY updated DESC', fields="updated")
    assert all(issue["fields"]["project"]["key"] == "PAY" for issue in everything)
    stamps = [issue["fields"]["updated"] for issue in everything]
    assert stamps == sorted(stamps, reverse=True)
    assert {issue["fields"]["updated"] for issue in recent} == {s for s in stamps if s[:16] >= middle[:16]}


def test_ids_only_search_allows_large_pages_and_full_search_caps_at_100() -> None:
    with serving(JiraSim(issues=600).app) as url:
        ids = httpx.get(
            f"{url}/rest/api/3/search/jql", auth=AUTH, params={"jql": "", "fields": "id", "maxResults": 5000}
        ).json()
        full = httpx.get(
            f"{url}/rest/api/3/search/jql", auth=AUTH, params={"jql": "", "fields": "*all", "maxResults": 5000}
        ).json()
    assert (len(ids["issues"]), ids["isLast"]) == (600, True)
    assert (len(full["issues"]), full["isLast"]) == (100, False)
    assert "fields" not in ids["issues"][0]


def test_unsupported_jql_is_a_400_in_jiras_error_shape() -> None:
    with serving(JiraSim(issues=5).app) as url:
        response = httpx.get(f"{url}/rest/api/3/search/jql", params={"jql": "project = PAY OR x = 1"}, auth=AUTH)
        unknown = httpx.post(f"{url}/rest/api/3/search/jql", json={"jql": "project = NOPE"}, auth=AUTH)
    assert response.status_code == 400
    assert set(response.json()) == {"errorMessages", "errors"}
    assert unknown.status_code == 400
    assert "NOPE" in unknown.json()["errorMessages"][0]


def test_v2_description_is_wiki_markup_and_v3_is_adf() -> None:
    sim = JiraSim(issues=50)
    issue_id = next(i for i in sorted(sim.ids()) if sim.find(i).description)
    with serving(sim.app) as url:
        v2 = httpx.get(f"{url}/rest/api/2/issue/{issue_id}", auth=AUTH).json()
        v3 = httpx.get(f"{url}/rest/api/3/issue/{issue_id}", auth=AUTH).json()
    assert isinstance(v2["fields"]["description"], str)
    assert v3["fields"]["description"]["type"] == "doc"
    assert v3["fields"]["description"]["content"][0]["content"][0]["text"] in v2["fields"]["description"]


def test_issue_with_expand_changelog_lists_the_updates() -> None:
    sim = JiraSim(issues=20)
    sim.update_issue("10005", status="In Progress")
    with serving(sim.app) as url:
        issue = httpx.get(f"{url}/rest/api/3/issue/10005", params={"expand": "changelog"}, auth=AUTH).json()
        missing = httpx.get(f"{url}/rest/api/3/issue/99999", auth=AUTH)
    items = issue["changelog"]["histories"][-1]["items"]
    assert items[0]["field"] == "status" and items[0]["toString"] == "In Progress"
    assert issue["fields"]["status"]["name"] == "In Progress"
    assert missing.status_code == 404


def test_rate_limit_fault_answers_429_with_retry_after_then_recovers() -> None:
    sim = JiraSim(issues=5)
    with serving(sim.app) as url:
        assert httpx.post(f"{url}/_sim/faults", json={"status": 429, "count": 2, "retry_after": 3}).status_code == 204
        answers = [httpx.get(f"{url}/rest/api/3/myself", auth=AUTH) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"


def test_malformed_and_dropped_responses_are_injected() -> None:
    sim = JiraSim(issues=5)
    sim.inject(malformed=True)
    sim.inject(drop_connection=True)
    with serving(sim.app) as url:
        malformed = httpx.get(f"{url}/rest/api/3/myself", auth=AUTH)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/rest/api/3/myself", auth=AUTH)
        healthy = httpx.get(f"{url}/rest/api/3/myself", auth=AUTH)
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert healthy.status_code == 200


def test_update_bumps_updated_and_sends_a_signed_webhook() -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        sim = JiraSim(issues=30, webhook_url=f"{hook_url}/hook", webhook_secret="s3cret")
        before = sim.render(sim.find("PAY-1"))["fields"]["updated"]
        after = sim.update_issue("PAY-1", summary="Renamed", assignee=people()[2].email)
    headers, body = received[-1]
    payload = json.loads(body)
    assert after["fields"]["updated"] > before
    assert headers["x-hub-signature"] == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["x-atlassian-webhook-flow"] == "Primary"
    assert payload["webhookEvent"] == "jira:issue_updated"
    assert payload["issue"]["fields"]["summary"] == "Renamed"
    assert {item["field"] for item in payload["changelog"]["items"]} == {"summary", "assignee"}
    assert sim.deliveries[-1].status_code == 200


def test_admin_http_creates_updates_and_deletes_issues() -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        sim = JiraSim(issues=10, webhook_url=f"{hook_url}/hook")
        with serving(sim.app) as url:
            created = httpx.post(f"{url}/_sim/issues", json={"project": "CHK", "summary": "New"}).json()
            httpx.put(f"{url}/_sim/issues/{created['key']}", json={"status": "Done"})
            done = httpx.get(f"{url}/rest/api/3/issue/{created['id']}", auth=AUTH).json()
            httpx.delete(f"{url}/_sim/issues/{created['id']}")
            gone = httpx.get(f"{url}/rest/api/3/issue/{created['id']}", auth=AUTH)
    events = [json.loads(body)["webhookEvent"] for _, body in received]
    assert events == ["jira:issue_created", "jira:issue_updated", "jira:issue_deleted"]
    assert done["fields"]["resolutiondate"] is not None
    assert gone.status_code == 404
    assert len({headers["x-atlassian-webhook-identifier"] for headers, _ in received}) == 3


def test_random_mutations_change_the_named_issues() -> None:
    sim = JiraSim(issues=50)
    changed = sim.mutate_random(10, random.Random(5))
    assert len(changed) == 10
    assert all(sim.find(issue_id).updated > sim.find("10000").created for issue_id in changed)


def test_truth_lists_every_live_issue_as_search_shows_it_and_the_ids_of_deleted_ones() -> None:
    sim = JiraSim(issues=60, seed=4)
    sim.delete_issue("PAY-3", silent=True)
    truth = sim.truth()
    with serving(sim.app) as url:
        issues = search_all(url, "project in (PAY, CHK, GRO) ORDER BY created ASC", "summary,status,updated")
        served = httpx.get(f"{url}/_sim/truth").json()
    listed = {
        ("issue", i["id"]): (i["key"], i["fields"]["summary"], i["fields"]["status"]["name"], i["fields"]["updated"])
        for i in issues
    }
    assert {
        k: (r.key, r.title, r.state, r.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000")
        for k, r in truth.records.items()
    } == listed
    assert [r.key for r in truth.records.values() if r.key == "PAY-3"] == []
    assert len(truth.deleted) == 1 and sim.deliveries == []  # a silent deletion sends nothing
    assert served == truth.as_json()


def test_webhook_faults_set_over_http_act_the_same_way_for_the_same_seed() -> None:
    app, received = receiver()
    faults = {"drop": 0.25, "duplicate": 0.25, "replay": 0.25, "reorder": 0.25, "hold_for": 2, "seed": 8}
    runs = []
    with serving(app) as hook_url:
        for _ in range(2):
            sim = JiraSim(issues=20, webhook_url=f"{hook_url}/hook")
            with serving(sim.app) as url:
                assert httpx.put(f"{url}/_sim/webhook-faults", json=faults).status_code == 200
                for n in range(30):
                    sim.update_issue("10003", summary=f"Summary {n}")
                assert httpx.post(f"{url}/_sim/webhook-faults/flush").status_code == 200
                runs.append(
                    [
                        (d["fault"], d["body"]["issue"]["fields"]["summary"])
                        for d in httpx.get(f"{url}/_sim/deliveries").json()
                    ]
                )
    first, again = runs
    assert [fault for fault, _ in first] == [fault for fault, _ in again]
    assert {"dropped", "duplicate", "replay", "reordered", None} == {fault for fault, _ in first}
    sent = [summary for fault, summary in first if fault != "dropped"]
    assert [json.loads(body)["issue"]["fields"]["summary"] for _, body in received[: len(sent)]] == sent
    identifiers = [headers["x-atlassian-webhook-identifier"] for headers, _ in received[: len(sent)]]
    assert len(set(identifiers)) == len(identifiers) - sum(fault == "duplicate" for fault, _ in first)


def test_a_fault_aimed_at_the_id_listing_spares_the_other_searches() -> None:
    sim = JiraSim(issues=10)
    sim.inject(status=500, match="fields=id")
    with serving(sim.app) as url:
        statuses = [
            httpx.get(
                f"{url}/rest/api/3/search/jql", auth=AUTH, params={"jql": "project = PAY", "fields": fields}
            ).status_code
            for fields in ("summary", "id", "id")
        ]
    assert statuses == [200, 500, 200]

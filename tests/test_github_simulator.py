"""The GitHub simulator answers like GitHub's REST API: shapes, pagination, limits, faults."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

import httpx
from fastapi import FastAPI, Request

from opsync_simulators.github import GitHubSim
from opsync_simulators.server import serving

TOKEN = "ghp_simulated"
AUTH = {"Authorization": f"token {TOKEN}"}
NOW = datetime(2026, 3, 4, 15, 30, 12, tzinfo=UTC)  # a pinned "now" for the seeded history


HTTP = httpx.Client(timeout=10)  # one client: building one per call costs ~0.1 s of TLS setup


def get(url: str, path: str, **params: Any) -> httpx.Response:
    return HTTP.get(url + path, params=params, headers=AUTH)


def test_simulator_holds_ten_thousand_items_half_of_them_pull_requests() -> None:
    sim = GitHubSim(items=10_000)
    items = sim.all_items()
    assert len(items) == 10_000
    assert {i.repo for i in sim.all_items()} == {"acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web"}
    assert 0.4 < sum(i.is_pull for i in items) / len(items) < 0.6


def test_same_seed_and_now_generate_the_same_items() -> None:
    first, second = GitHubSim(items=50, seed=9, now=NOW), GitHubSim(items=50, seed=9, now=NOW)
    assert first.all_items() == second.all_items()


def test_a_later_now_moves_the_same_items_along_with_it() -> None:
    month = timedelta(days=30)
    earlier, later = GitHubSim(items=50, seed=9, now=NOW), GitHubSim(items=50, seed=9, now=NOW + month)

    def what(sim: GitHubSim) -> list[tuple]:
        return [
            (i.repo, i.number, i.title, i.author, i.labels, i.head_ref, i.state, i.merged_at) for i in sim.all_items()
        ]

    assert what(later) == [(*row[:-1], row[-1] and row[-1] + month) for row in what(earlier)]
    assert [i.created_at + month for i in earlier.all_items()] == [i.created_at for i in later.all_items()]


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def listed(url: str, repos: tuple[str, ...], kind: str) -> list[dict[str, Any]]:
    """Every issue (kind "issues", pull requests left out) or pull request ("pulls") of repos."""
    rows: list[dict[str, Any]] = []
    for repo in repos:
        page = 1
        while batch := get(url, f"/repos/{repo}/{kind}", state="all", per_page=100, page=page).json():
            rows += [row for row in batch if kind == "pulls" or "pull_request" not in row]
            page += 1
    return rows


def test_seeded_pull_requests_were_opened_over_six_months_and_merged_hours_to_days_later() -> None:
    sim = GitHubSim(items=600, token=TOKEN, now=NOW)
    with serving(sim.app) as url:
        pulls = listed(url, sim.repos, "pulls")
    assert len(pulls) == sum(i.is_pull for i in sim.all_items())
    created = [when(p["created_at"]) for p in pulls]
    assert NOW - timedelta(days=190) < min(created) < NOW - timedelta(days=170) and max(created) < NOW
    merged = [p for p in pulls if p["merged_at"]]
    waits = [when(p["merged_at"]) - when(p["created_at"]) for p in merged]
    assert all(wait > timedelta(0) for wait in waits)
    assert all(p["closed_at"] == p["merged_at"] and p["state"] == "closed" for p in merged)
    assert timedelta(hours=3) < median(waits) < timedelta(days=2) and max(waits) < timedelta(days=61)
    weeks_ago = Counter((NOW - when(p["merged_at"])) // timedelta(weeks=1) for p in merged)
    assert all(weeks_ago[week] >= 1 for week in range(12)), weeks_ago
    for p in pulls:
        assert when(p["created_at"]) <= when(p["updated_at"]) < NOW
        assert p["closed_at"] is None or when(p["created_at"]) < when(p["closed_at"]) <= when(p["updated_at"])
    assert {"open", "closed"} == {p["state"] for p in pulls if not p["merged_at"]}


def test_seeded_issues_close_after_they_were_opened_and_some_stay_open() -> None:
    sim = GitHubSim(items=300, token=TOKEN, now=NOW)
    with serving(sim.app) as url:
        issues = listed(url, sim.repos, "issues")
    closed = [i for i in issues if i["state"] == "closed"]
    assert closed and len(closed) < len(issues)
    assert all(when(i["created_at"]) < when(i["closed_at"]) <= when(i["updated_at"]) < NOW for i in closed)
    assert {i["state_reason"] for i in closed} == {"completed", "not_planned"}
    assert all(
        i["closed_at"] is None and when(i["created_at"]) <= when(i["updated_at"]) < NOW
        for i in issues
        if i["state"] == "open"
    )


def test_issue_list_pages_with_githubs_link_header() -> None:
    sim = GitHubSim(items=40, token=TOKEN, repos=("acme/payments",))
    with serving(sim.app) as url:
        first = get(url, "/repos/acme/payments/issues", state="all", per_page=15)
        middle = get(url, "/repos/acme/payments/issues", state="all", per_page=15, page=2)
        last = get(url, "/repos/acme/payments/issues", state="all", per_page=15, page=3)
    rels = lambda r: re.findall(r'page=(\d+)>; rel="(\w+)"', r.headers["link"])  # noqa: E731
    assert rels(first) == [("2", "next"), ("3", "last")]
    assert rels(middle) == [("1", "prev"), ("3", "next"), ("3", "last"), ("1", "first")]
    assert rels(last) == [("2", "prev"), ("1", "first")]
    assert [len(r.json()) for r in (first, middle, last)] == [15, 15, 10]
    numbers = [i["number"] for r in (first, middle, last) for i in r.json()]
    assert numbers == sorted(numbers, reverse=True)  # created, newest first by default


def test_issue_list_defaults_to_open_and_since_filters_by_update_time() -> None:
    sim = GitHubSim(items=100, token=TOKEN, repos=("acme/payments",))
    with serving(sim.app) as url:
        opened = get(url, "/repos/acme/payments/issues", per_page=100).json()
        rows = get(
            url, "/repos/acme/payments/issues", state="all", per_page=100, sort="updated", direction="asc"
        ).json()
        pivot = rows[60]["updated_at"]
        since = get(url, "/repos/acme/payments/issues", state="all", per_page=100, since=pivot).json()
    assert {i["state"] for i in opened} == {"open"}
    assert all(i["updated_at"] >= pivot for i in since)
    assert len(since) == len([r for r in rows if r["updated_at"] >= pivot])


def test_pull_request_has_a_pull_id_and_an_issue_id() -> None:
    sim = GitHubSim(items=20, token=TOKEN, repos=("acme/checkout",))
    number = next(i.number for i in sim.items_in("acme/checkout") if i.is_pull)
    with serving(sim.app) as url:
        as_issue = get(url, f"/repos/acme/checkout/issues/{number}").json()
        as_pull = get(url, f"/repos/acme/checkout/pulls/{number}").json()
        listed = get(url, "/repos/acme/checkout/pulls", state="all").json()
    assert as_issue["id"] != as_pull["id"]
    assert as_issue["pull_request"]["url"] == as_pull["url"]
    assert as_pull["head"]["ref"] and as_pull["base"]["repo"]["full_name"] == "acme/checkout"
    assert {"merged", "additions", "deletions", "changed_files"} <= set(as_pull)
    assert "additions" not in listed[0]  # list items are not complete, as on GitHub


def test_pull_request_titles_and_branches_name_existing_jira_keys() -> None:
    sim = GitHubSim(items=400, jira_keys={"PAY": 12, "CHK": 7, "GRO": 3})
    texts = [f"{i.title} {i.head_ref} {i.body}" for i in sim.all_items() if i.is_pull]
    keys = {key for text in texts for key in re.findall(r"\b(PAY|CHK|GRO)-(\d+)\b", text)}
    assert keys and all(1 <= int(n) <= {"PAY": 12, "CHK": 7, "GRO": 3}[p] for p, n in keys)
    assert any(t.startswith("feature/PAY-") for t in (i.head_ref for i in sim.all_items()))


def test_routes_are_also_served_under_api_v3_with_urls_to_match() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    with serving(sim.app) as url:
        repo = get(url, "/api/v3/repos/acme/payments")
    assert repo.status_code == 200
    assert repo.json()["url"] == f"{url}/api/v3/repos/acme/payments"


def test_users_org_and_repository_lists_look_like_github() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    with serving(sim.app) as url:
        org = get(url, "/orgs/acme").json()
        repos = get(url, "/orgs/acme/repos").json()
        login = repos[0]["owner"]["login"]
        person = get(url, f"/users/{sim.people[1].login}").json()
        missing = get(url, "/repos/acme/nope")
    assert org["type"] == "Organization" and login == "acme"
    assert person["email"] == sim.people[1].email
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"


def test_wrong_or_missing_token_gets_bad_credentials() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    with serving(sim.app) as url:
        wrong = HTTP.get(url + "/user", headers={"Authorization": "Bearer nope"})
        missing = HTTP.get(url + "/user")
        bearer = HTTP.get(url + "/user", headers={"Authorization": f"Bearer {TOKEN}"})
    assert wrong.status_code == missing.status_code == 401
    assert wrong.json()["message"] == "Bad credentials"
    assert bearer.status_code == 200


def test_every_response_carries_rate_limit_headers_and_exhaustion_answers_403() -> None:
    sim = GitHubSim(items=10, token=TOKEN, rate_limit=2)
    with serving(sim.app) as url:
        responses = [get(url, "/user") for _ in range(3)]
        status = get(url, "/rate_limit").json()
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["1", "0", "0"]
    assert all(r.headers["x-github-request-id"] for r in responses)
    assert responses[2].status_code == 403
    assert responses[2].json()["message"].startswith("API rate limit exceeded")
    assert status["resources"]["core"]["remaining"] == 0


def test_injected_faults_happen_once_each_then_the_api_recovers() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    with serving(sim.app) as url:
        HTTP.post(url + "/_sim/faults", json={"status": 429, "retry_after": 3, "count": 2})
        sim.inject(status=502)
        limited = [get(url, "/user") for _ in range(2)]
        bad_gateway = get(url, "/user")
        sim.inject(malformed=True)
        malformed = get(url, "/user")
        ok = get(url, "/user")
    assert [r.status_code for r in limited] == [429, 429]
    assert limited[0].headers["retry-after"] == "3"
    assert bad_gateway.status_code == 502
    assert malformed.status_code == 200 and malformed.text.startswith('[{"id": 1')
    assert ok.status_code == 200
    assert sim.requests["/user"] == 5


def test_a_dropped_connection_breaks_the_response_mid_body() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    with serving(sim.app) as url:
        sim.inject(drop_connection=True)
        try:
            get(url, "/user")
            dropped = False
        except httpx.HTTPError:
            dropped = True
        after = get(url, "/user")
    assert dropped and after.status_code == 200


def test_admin_routes_mutate_and_deleted_issues_answer_410() -> None:
    sim = GitHubSim(items=10, token=TOKEN, repos=("acme/payments",))
    with serving(sim.app) as url:
        created = HTTP.post(url + "/_sim/repos/acme/payments/issues", json={"title": "New", "labels": ["bug"]})
        number = created.json()["number"]
        before = get(url, f"/repos/acme/payments/issues/{number}").json()
        HTTP.patch(url + f"/_sim/repos/acme/payments/issues/{number}", json={"state": "closed"})
        closed = get(url, f"/repos/acme/payments/issues/{number}").json()
        HTTP.delete(url + f"/_sim/repos/acme/payments/issues/{number}")
        gone = get(url, f"/repos/acme/payments/issues/{number}")
        mutated = HTTP.post(url + "/_sim/mutate", params={"n": 3, "seed": 1}).json()
    assert before["labels"][0]["name"] == "bug"
    assert closed["state"] == "closed" and closed["state_reason"] == "completed"
    assert closed["updated_at"] >= before["updated_at"]
    assert gone.status_code == 410
    assert len(mutated["done"]) == 3
    assert [d["action"] for d in sim.deliveries[:3]] == ["opened", "closed", "deleted"]


def test_webhooks_are_signed_with_the_secret_when_one_is_set() -> None:
    sim = GitHubSim(items=10, webhook_secret="s3cret")
    sim.create_issue("acme/payments", "Signed")
    headers = sim.deliveries[0]["headers"]
    assert headers["X-GitHub-Event"] == "issues"
    assert headers["X-Hub-Signature-256"].startswith("sha256=")
    assert headers["X-Hub-Signature"].startswith("sha1=")
    assert headers["User-Agent"].startswith("GitHub-Hookshot/")


def test_truth_lists_every_live_record_as_the_api_does_and_the_ids_of_deleted_issues() -> None:
    sim = GitHubSim(items=40, token=TOKEN, repos=("acme/payments",))
    victim = next(i for i in sim.items_in("acme/payments") if not i.is_pull)
    sim.delete_issue("acme/payments", victim.number, silent=True)
    truth = sim.truth()
    with serving(sim.app) as url:
        issues = get(url, "/repos/acme/payments/issues", state="all", per_page=100).json()
        pulls = get(url, "/repos/acme/payments/pulls", state="all", per_page=100).json()
        served = HTTP.get(url + "/_sim/truth").json()
    listed = {
        ("issue", str(i["id"])): (f"acme/payments#{i['number']}", i["title"], i["state"], i["updated_at"])
        for i in issues
        if "pull_request" not in i
    }
    listed |= {
        ("pull_request", str(p["id"])): (
            f"acme/payments#{p['number']}",
            p["title"],
            "merged" if p["merged_at"] else p["state"],
            p["updated_at"],
        )
        for p in pulls
    }
    assert {
        k: (r.key, r.title, r.state, r.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")) for k, r in truth.records.items()
    } == listed
    assert truth.deleted == {("issue", str(victim.issue_id))}
    assert sim.deliveries == []  # a silent deletion sends nothing
    assert served == truth.as_json()


def test_webhook_faults_drop_duplicate_replay_and_reorder_deliveries_the_same_way_for_a_seed() -> None:
    received: dict[str, list[tuple[str, bytes]]] = {"first": [], "again": []}
    receiver = FastAPI()

    @receiver.post("/hook/{name}", status_code=202)
    async def hook(name: str, request: Request) -> dict[str, str]:
        received[name].append((request.headers["x-github-delivery"], await request.body()))
        return {}

    sims = {}
    with serving(receiver) as hook_url:
        for name in received:
            sim = sims[name] = GitHubSim(
                items=10, repos=("acme/payments",), webhook_url=f"{hook_url}/hook/{name}", webhook_secret="s"
            )
            sim.set_webhook_faults(drop=0.2, duplicate=0.2, replay=0.2, reorder=0.2, seed=3)
            for n in range(40):
                sim.create_issue("acme/payments", f"Issue {n}")
            sim.flush_webhooks()
    sim = sims["first"]
    faults = [d["fault"] for d in sim.deliveries]
    assert faults == [d["fault"] for d in sims["again"].deliveries]
    assert {"dropped", "duplicate", "replay", "reordered", None} == set(faults)
    dropped = {d["delivery"] for d in sim.deliveries if d["fault"] == "dropped"}
    assert dropped and not dropped & {delivery for delivery, _ in received["first"]}
    bodies = {}
    for delivery, body in received["first"]:  # a duplicate repeats its delivery id and body
        assert bodies.setdefault(delivery, body) == body
    replays = [d for d in sim.deliveries if d["fault"] == "replay"]
    first_sent = {d["body"]: d["delivery"] for d in reversed(sim.deliveries) if d["fault"] in (None, "reordered")}
    assert all(first_sent[d["body"]] != d["delivery"] for d in replays)  # an earlier body, a new id
    titles = [json.loads(body)["issue"]["title"] for _, body in received["first"]]
    originals = list(dict.fromkeys(titles))
    assert originals != sorted(originals, key=lambda t: int(t.split()[1]))  # some came late
    assert set(titles) == {f"Issue {n}" for n in range(40)} - {
        json.loads(d["body"])["issue"]["title"] for d in sim.deliveries if d["fault"] == "dropped"
    }


def test_admin_routes_hold_webhooks_back_until_flushed_and_reject_a_bad_share() -> None:
    sim = GitHubSim(items=10, repos=("acme/payments",))
    with serving(sim.app) as url:
        assert HTTP.put(url + "/_sim/webhook-faults", json={"reorder": 1.0, "hold_for": 5}).status_code == 200
        for title in ("One", "Two"):
            HTTP.post(url + "/_sim/repos/acme/payments/issues", json={"title": title})
        held = len(sim.deliveries)
        flushed = HTTP.post(url + "/_sim/webhook-faults/flush").json()
        bad = HTTP.put(url + "/_sim/webhook-faults", json={"drop": 2})
    assert held == 0 and flushed == {"sent": 2}
    assert [d["fault"] for d in sim.deliveries] == ["reordered", "reordered"]
    assert bad.status_code == 400 and "drop" in bad.json()["message"]


def test_a_hidden_repository_answers_404_and_leaves_listings_and_an_archived_one_says_so() -> None:
    sim = GitHubSim(items=40, token=TOKEN)
    with serving(sim.app) as url:
        HTTP.post(url + "/_sim/repos/acme/ledger/hide")
        sim.archive_repo("acme/checkout")
        repos = {r["full_name"]: r["archived"] for r in get(url, "/orgs/acme/repos").json()}
        hidden = [get(url, path).status_code for path in ("/repos/acme/ledger", "/repos/acme/ledger/issues")]
        archived = get(url, "/repos/acme/checkout").json()["archived"]
    assert repos == {"acme/payments": False, "acme/checkout": True, "acme/growth-web": False}
    assert hidden == [404, 404] and archived is True
    assert {r.container for r in sim.truth().records.values()} == {"acme/payments", "acme/checkout", "acme/growth-web"}
    assert "acme/ledger" in {r.container for r in sim.truth(include_hidden=True).records.values()}


def test_faults_aimed_by_match_and_after_spare_other_requests() -> None:
    sim = GitHubSim(items=20, token=TOKEN, repos=("acme/payments",))
    with serving(sim.app) as url:
        sim.inject(status=503, match="sort=created", after=1, count=2)
        statuses = [
            get(url, "/repos/acme/payments/issues", sort=sort).status_code
            for sort in ("updated", "created", "updated", "created", "created", "created")
        ]
        pending = HTTP.get(url + "/_sim/faults").json()["queued"]
    assert statuses == [200, 200, 200, 503, 503, 200]
    assert pending == [] and sim.faults.served() == {"503": 2}


def test_a_fault_rate_hits_the_same_requests_for_the_same_seed() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    rate = {"share": 0.3, "faults": [{"status": 500}], "seed": 9}
    with serving(sim.app) as url:
        HTTP.put(url + "/_sim/fault-rate", json=rate)
        first = [get(url, "/user").status_code for _ in range(30)]
        HTTP.put(url + "/_sim/fault-rate", json=rate)  # the same seed again
        again = [get(url, "/user").status_code for _ in range(30)]
    assert first == again
    assert 3 <= first.count(500) <= 18 and set(first) == {200, 500}


def test_a_paused_request_waits_until_resumed() -> None:
    sim = GitHubSim(items=10, token=TOKEN)
    answers: list[int] = []
    with serving(sim.app) as url:
        sim.inject(pause=True)
        waiting = threading.Thread(target=lambda: answers.append(get(url, "/user").status_code))
        waiting.start()
        deadline = time.monotonic() + 10
        while sim.faults.paused() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        held = (sim.faults.paused(), list(answers))
        HTTP.post(url + "/_sim/faults/resume")
        waiting.join(timeout=10)
    assert held == (1, []) and answers == [200]


def test_changing_a_pull_request_through_the_issues_api_sends_pull_request_events() -> None:
    sim = GitHubSim(items=20, repos=("acme/checkout",))
    pr = next(i for i in sim.items_in("acme/checkout") if i.is_pull)
    sim.update_issue("acme/checkout", pr.number, title="Retitled", labels=[*pr.labels, "performance"])
    events = [(d["event"], d["action"], json.loads(d["body"])["pull_request"]["title"]) for d in sim.deliveries]
    assert events == [("pull_request", "edited", "Retitled"), ("pull_request", "labeled", "Retitled")]

"""The Confluence Cloud simulator answers like Confluence Cloud's REST API v2: paths, shapes,
cursor paging, auth, errors, admin mutations, and signed webhooks (Connect and Data Center)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request

from opsync_simulators.confluence import ConfluenceSim
from opsync_simulators.confluence_data import LINK, MACRO, TEXT
from opsync_simulators.confluence_webhooks import WebhookTarget
from opsync_simulators.server import serving
from opsync_simulators.world import people

AUTH = ("ops@acme.example", "api-token")
SECRET = "connect-shared-secret-of-32-bytes-or-more"
API = "/wiki/api/v2"


def receiver() -> tuple[FastAPI, list[dict[str, Any]]]:
    """A webhook endpoint under /app that keeps each request: path, query, headers, body."""
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/app/{rest:path}")
    @app.post("/app")
    async def hook(request: Request) -> dict[str, bool]:
        received.append(
            {
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": await request.body(),
            }
        )
        return {"ok": True}

    return app, received


def list_all(url: str, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every result of a v2 list, following _links.next; checks the Link header says the same."""
    results: list[dict[str, Any]] = []
    answer = httpx.get(f"{url}{path}", params=params or None, auth=AUTH)
    while True:
        assert answer.status_code == 200, answer.text
        body = answer.json()
        results += body["results"]
        following = body["_links"].get("next")
        if following is None:
            assert "link" not in answer.headers
            return results
        assert answer.headers["link"].startswith(f'<{following}>; rel="next"')
        answer = httpx.get(f"{url}{following}", auth=AUTH)


def test_spaces_are_the_products_keyed_like_their_jira_projects() -> None:
    sim = ConfluenceSim(pages=5)
    with serving(sim.app) as url:
        body = httpx.get(f"{url}{API}/spaces", auth=AUTH).json()
    spaces = {space["key"]: space for space in body["results"]}
    assert {key: space["name"] for key, space in spaces.items()} == {
        "PAY": "Payments",
        "CHK": "Checkout",
        "GRO": "Growth",
    }
    pay = spaces["PAY"]
    assert pay["id"].isdigit() and pay["type"] == "global" and pay["status"] == "current"
    assert pay["_links"]["webui"] == "/spaces/PAY"
    assert pay["homepageId"] in sim.ids()
    assert body["_links"]["base"] == f"{url}/wiki"


def test_spaces_page_with_a_cursor_and_filter_by_key_and_id() -> None:
    sim = ConfluenceSim(pages=5)
    with serving(sim.app) as url:
        one_by_one = list_all(url, f"{API}/spaces", {"limit": 1})
        by_key = httpx.get(f"{url}{API}/spaces", params={"keys": "GRO,PAY"}, auth=AUTH).json()["results"]
        gro = next(space for space in one_by_one if space["key"] == "GRO")
        single = httpx.get(f"{url}{API}/spaces/{gro['id']}", auth=AUTH).json()
        missing = httpx.get(f"{url}{API}/spaces/4242", auth=AUTH)
    assert [space["key"] for space in one_by_one] == ["PAY", "CHK", "GRO"]
    assert {space["key"] for space in by_key} == {"GRO", "PAY"}
    assert single == gro
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["status"] == 404


def test_pages_list_in_v2_shape_with_the_body_only_when_asked() -> None:
    sim = ConfluenceSim(pages=20)
    with serving(sim.app) as url:
        bare = httpx.get(f"{url}{API}/pages", params={"limit": 5}, auth=AUTH).json()["results"]
        full = httpx.get(f"{url}{API}/pages", params={"limit": 5, "body-format": "storage"}, auth=AUTH).json()
    page = full["results"][0]
    held = sim.page(page["id"])
    assert page["id"] == str(held.id) and page["title"] == held.title and page["status"] == "current"
    assert page["spaceId"] == str(sim.space(held.space).id)
    assert set(page["version"]) >= {"number", "createdAt", "authorId", "message"}
    assert page["version"]["number"] == held.version
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", page["version"]["createdAt"])
    assert page["body"]["storage"] == {"representation": "storage", "value": held.body}
    assert set(page["_links"]) == {"webui", "editui", "tinyui"}
    assert page["_links"]["webui"].startswith(f"/spaces/{held.space}/pages/{held.id}/")
    assert all(row["body"] == {} for row in bare)
    assert {"authorId", "ownerId", "parentId", "parentType", "createdAt"} <= set(page)


def test_cursor_paging_lists_every_page_once_newest_change_first() -> None:
    sim = ConfluenceSim(pages=90)
    with serving(sim.app) as url:
        pages = list_all(url, f"{API}/pages", {"sort": "-modified-date", "limit": 7})
    times = [page["version"]["createdAt"] for page in pages]
    assert len(pages) == len({page["id"] for page in pages})
    assert {page["id"] for page in pages} == sim.ids()
    assert times == sorted(times, reverse=True)


def test_a_page_edited_during_an_oldest_first_listing_is_listed_again_not_skipped() -> None:
    sim = ConfluenceSim(pages=40)
    with serving(sim.app) as url:
        first = httpx.get(f"{url}{API}/pages", params={"sort": "modified-date", "limit": 10}, auth=AUTH).json()
        edited = first["results"][0]["id"]
        sim.update_page(edited, title="Edited while listing")
        rest = list_all(url, first["_links"]["next"])
    seen = [page["id"] for page in first["results"] + rest]
    assert set(seen) == sim.ids()
    assert seen.count(edited) == 2 and rest[-1]["title"] == "Edited while listing"


def test_pages_filter_by_space_status_and_id() -> None:
    sim = ConfluenceSim(pages=30)
    trashed = sorted(sim.ids())[5]
    sim.trash_page(trashed)
    chk = sim.space("CHK")
    with serving(sim.app) as url:
        in_chk = list_all(url, f"{API}/pages", {"space-id": chk.id, "limit": 250})
        default = list_all(url, f"{API}/pages", {"limit": 250})
        in_trash = list_all(url, f"{API}/pages", {"status": "trashed"})
        by_id = list_all(url, f"{API}/pages", {"id": f"{trashed},{sorted(sim.ids())[0]}", "status": "current,trashed"})
    assert in_chk and {page["spaceId"] for page in in_chk} == {str(chk.id)}
    assert trashed not in {page["id"] for page in default}
    assert [page["id"] for page in in_trash] == [trashed]
    assert in_trash[0]["status"] == "trashed"
    assert trashed in {page["id"] for page in by_id} and len(by_id) == 2


@pytest.mark.parametrize(
    "params",
    [{"sort": "popularity"}, {"limit": "0"}, {"limit": "251"}, {"status": "gone"}, {"cursor": "not-a-cursor"}],
)
def test_bad_list_parameters_are_a_400_in_v2_error_shape(params: dict[str, str]) -> None:
    sim = ConfluenceSim(pages=3)
    with serving(sim.app) as url:
        answer = httpx.get(f"{url}{API}/pages", params=params, auth=AUTH)
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert error["status"] == 400 and error["code"] == "BAD_REQUEST" and error["detail"]


def test_one_page_its_labels_and_404_once_purged() -> None:
    sim = ConfluenceSim(pages=10)
    labelled = next(page for page in sim.pages() if page.labels)
    with serving(sim.app) as url:
        page = httpx.get(f"{url}{API}/pages/{labelled.id}", params={"body-format": "storage"}, auth=AUTH).json()
        labels = httpx.get(f"{url}{API}/pages/{labelled.id}/labels", auth=AUTH).json()["results"]
        sim.purge_page(labelled.id)
        gone = httpx.get(f"{url}{API}/pages/{labelled.id}", auth=AUTH)
    assert page["id"] == str(labelled.id) and page["_links"]["base"] == f"{url}/wiki"
    assert page["body"]["storage"]["value"] == labelled.body
    assert [label["name"] for label in labels] == labelled.labels
    assert all(label["prefix"] == "global" and label["id"].isdigit() for label in labels)
    assert gone.status_code == 404


def test_a_trashed_page_is_still_there_by_id_with_status_trashed() -> None:
    sim = ConfluenceSim(pages=10)
    page_id = sorted(sim.ids())[4]
    sim.trash_page(page_id)
    with serving(sim.app) as url:
        page = httpx.get(f"{url}{API}/pages/{page_id}", auth=AUTH).json()
    assert page["status"] == "trashed"


def test_requests_without_valid_basic_credentials_are_401() -> None:
    sim = ConfluenceSim(pages=3, credentials=AUTH)
    with serving(sim.app) as url:
        anonymous = httpx.get(f"{url}{API}/pages")
        bearer = httpx.get(f"{url}{API}/pages", headers={"Authorization": "Bearer abc"})
        wrong = httpx.get(f"{url}{API}/spaces", auth=(AUTH[0], "other-token"))
        right = httpx.get(f"{url}{API}/spaces", auth=AUTH)
    assert [anonymous.status_code, bearer.status_code, wrong.status_code, right.status_code] == [401, 401, 401, 200]
    assert anonymous.headers["www-authenticate"].startswith("Basic")


def test_rate_limit_fault_answers_429_with_atlassian_headers_then_recovers() -> None:
    sim = ConfluenceSim(pages=3)
    sim.inject(status=429, retry_after=2)
    with serving(sim.app) as url:
        limited = httpx.get(f"{url}{API}/pages", auth=AUTH)
        then = httpx.get(f"{url}{API}/pages", auth=AUTH)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "2"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert "ratelimit-reason" in limited.headers
    assert then.status_code == 200


def test_server_errors_malformed_bodies_and_dropped_connections_are_injected() -> None:
    sim = ConfluenceSim(pages=3)
    sim.inject(status=503)
    sim.inject(malformed=True)
    sim.inject(drop_connection=True)
    with serving(sim.app) as url:
        assert httpx.get(f"{url}{API}/pages", auth=AUTH).status_code == 503
        with pytest.raises(json.JSONDecodeError):
            httpx.get(f"{url}{API}/pages", auth=AUTH).json()
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}{API}/pages", auth=AUTH)
        assert httpx.get(f"{url}{API}/pages", auth=AUTH).status_code == 200


def test_same_seed_generates_the_same_pages_and_another_seed_others() -> None:
    first, second, other = ConfluenceSim(pages=30, seed=3), ConfluenceSim(pages=30, seed=3), ConfluenceSim(pages=30)
    assert [(p.id, p.title, p.body, p.labels) for p in first.pages()] == [
        (p.id, p.title, p.body, p.labels) for p in second.pages()
    ]
    assert [p.body for p in first.pages()] != [p.body for p in other.pages()]


def test_seeded_pages_were_written_in_the_last_months_by_jiras_people() -> None:
    sim = ConfluenceSim(pages=50)
    now = datetime.now(UTC)
    accounts = {person.account_id for person in people()}
    rendered = [sim.render(page) for page in sim.pages()]
    for page in sim.pages():
        assert now - timedelta(days=180) < page.created <= page.version_at <= now
    assert {page["authorId"] for page in rendered} <= accounts
    assert {page["version"]["authorId"] for page in rendered} <= accounts


def test_seeded_bodies_name_jira_issues_the_three_ways() -> None:
    sim = ConfluenceSim(pages=60, jira_numbers={"PAY": 12, "CHK": 5, "GRO": 8})
    planted = [(page, key, how) for page in sim.pages() for key, how in page.jira_refs.items()]
    assert {how for _, _, how in planted} == {LINK, MACRO, TEXT}
    for page, key, how in planted:
        project, number = key.split("-")
        assert 1 <= int(number) <= {"PAY": 12, "CHK": 5, "GRO": 8}[project]
        if how == LINK:
            assert f'href="https://acme.atlassian.net/browse/{key}"' in page.body
        elif how == MACRO:
            assert f'<ac:parameter ac:name="key">{key}</ac:parameter>' in page.body
        else:
            assert f"<p>Open questions are collected in {key} " in page.body


def test_admin_http_creates_edits_trashes_restores_and_purges_pages() -> None:
    sim = ConfluenceSim(pages=5)
    with serving(sim.app) as url:
        created = httpx.post(
            f"{url}/_sim/pages",
            json={"space": "GRO", "title": "Launch plan", "body": "<p>GRO-3</p>", "labels": ["prd"]},
        )
        page_id = created.json()["id"]
        edited = httpx.put(f"{url}/_sim/pages/{page_id}", json={"title": "Launch plan v2", "message": "scope"})
        after_edit = httpx.get(f"{url}{API}/pages/{page_id}", auth=AUTH).json()
        httpx.post(f"{url}/_sim/pages/{page_id}/trash")
        listed_trashed = page_id in {page["id"] for page in list_all(url, f"{API}/pages", {"limit": 250})}
        httpx.post(f"{url}/_sim/pages/{page_id}/restore")
        restored = httpx.get(f"{url}{API}/pages/{page_id}", auth=AUTH).json()
        purged = httpx.delete(f"{url}/_sim/pages/{page_id}")
        gone = httpx.get(f"{url}{API}/pages/{page_id}", auth=AUTH)
        bad = httpx.post(f"{url}/_sim/pages", json={"space": "NOPE"})
    assert created.status_code == 201 and created.json()["spaceId"] == str(sim.space("GRO").id)
    assert edited.status_code == 200 and after_edit["title"] == "Launch plan v2"
    assert after_edit["version"]["number"] == 2 and after_edit["version"]["message"] == "scope"
    assert not listed_trashed
    assert restored["status"] == "current" and restored["version"] == after_edit["version"]
    assert purged.status_code == 204 and gone.status_code == 404
    assert bad.status_code == 404


def test_truth_lists_what_the_default_listing_shows_and_counts_trashed_and_purged_as_deleted() -> None:
    sim = ConfluenceSim(pages=30)
    trashed, purged = sorted(sim.ids())[3:5]
    sim.trash_page(trashed)
    sim.purge_page(purged)
    truth = sim.truth()
    with serving(sim.app) as url:
        listed = list_all(url, f"{API}/pages", {"limit": 250})
    assert {record_id for _, record_id in truth.records} == {page["id"] for page in listed}
    assert truth.deleted == {("page", trashed), ("page", purged)}
    record = truth.records[("page", listed[0]["id"])]
    assert record.title == listed[0]["title"] and record.updated_at == sim.page(listed[0]["id"]).version_at


def test_connect_webhook_goes_to_the_events_url_with_a_jwt_for_that_url() -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        sim = ConfluenceSim(pages=5, webhooks=WebhookTarget(url=f"{hook_url}/app", secret=SECRET, client_key="ck-1"))
        page_id = sorted(sim.ids())[2]
        sim.update_page(page_id, title="Edited")
    [delivery] = received
    assert delivery["path"] == "/app/page_updated" and delivery["query"] == ""
    scheme, token = delivery["headers"]["authorization"].split(" ")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert scheme == "JWT" and claims["iss"] == "ck-1" and claims["exp"] > claims["iat"]
    assert claims["qsh"] == hashlib.sha256(b"POST&/page_updated&").hexdigest()
    body = json.loads(delivery["body"])
    assert "event" not in body and "webhookEvent" not in body
    assert body["page"]["id"] == int(page_id) and body["page"]["idAsString"] == page_id
    assert body["page"]["version"] == sim.page(page_id).version and body["updateTrigger"] == "edit_page"
    assert sim.deliveries[0].status_code == 200


def test_connect_webhook_bodies_have_the_fields_of_real_captures(shared_fixtures: Path) -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        sim = ConfluenceSim(pages=5, webhooks=WebhookTarget(url=f"{hook_url}/app", secret=SECRET))
        page_id = sorted(sim.ids())[1]
        sim.update_page(page_id, body="<p>new</p>")
        sim.trash_page(page_id)
    real = shared_fixtures / "confluence/webhooks/taxonomies-for-confluence"
    for delivery in received:
        event = delivery["path"].rsplit("/", 1)[-1]
        capture = json.loads((real / f"{event}.json").read_text())
        body = json.loads(delivery["body"])
        assert set(capture) <= set(body), event
        assert set(capture["page"]) <= set(body["page"]), event
        assert isinstance(body["page"]["modificationDate"], int) and isinstance(body["timestamp"], int)


def test_connect_webhook_may_name_its_event_in_the_query() -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        target = WebhookTarget(url=f"{hook_url}/app", secret=SECRET, event_in_query=True)
        sim = ConfluenceSim(pages=5, webhooks=target)
        sim.create_page("PAY", "Fresh")
    [delivery] = received
    claims = jwt.decode(delivery["headers"]["authorization"].split(" ")[1], SECRET, algorithms=["HS256"])
    assert delivery["path"] == "/app" and delivery["query"] == "event=page_created"
    assert claims["qsh"] == hashlib.sha256(b"POST&/&event=page_created").hexdigest()


def test_data_center_webhook_names_its_event_in_the_body_and_signs_it() -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        sim = ConfluenceSim(pages=5, webhooks=WebhookTarget(url=f"{hook_url}/app", mode="dc", secret="dc-secret"))
        page_id = sorted(sim.ids())[0]
        sim.purge_page(page_id)
    [delivery] = received
    body, headers = delivery["body"], delivery["headers"]
    expected = hmac.new(b"dc-secret", body, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature"] == f"sha256={expected}"
    assert headers["x-atlassian-webhook-identifier"] == sim.deliveries[0].headers["X-Atlassian-Webhook-Identifier"]
    assert json.loads(body)["event"] == "page_removed" and json.loads(body)["page"]["idAsString"] == page_id


def test_every_mutation_sends_its_event_and_a_silent_one_none() -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        sim = ConfluenceSim(pages=5, webhooks=WebhookTarget(url=f"{hook_url}/app", secret=SECRET))
        page_id = sim.create_page("CHK", "Runbook")["id"]
        sim.update_page(page_id, body="<p>steps</p>")
        sim.move_page(page_id, sim.space("CHK").homepage_id)
        sim.trash_page(page_id)
        sim.restore_page(page_id)
        sim.trash_page(page_id, silent=True)
        sim.purge_page(page_id)
    events = [delivery["path"].rsplit("/", 1)[-1] for delivery in received]
    assert events == ["page_created", "page_updated", "page_moved", "page_trashed", "page_restored", "page_removed"]
    timestamps = [json.loads(delivery["body"])["timestamp"] for delivery in received]
    assert timestamps == sorted(set(timestamps))


def test_webhook_faults_set_over_http_drop_and_duplicate_deliveries_as_seeded() -> None:
    app, received = receiver()
    with serving(app) as hook_url:
        sim = ConfluenceSim(pages=20, webhooks=WebhookTarget(url=f"{hook_url}/app", secret=SECRET))
        with serving(sim.app) as url:
            set_faults = httpx.put(f"{url}/_sim/webhook-faults", json={"drop": 0.5, "duplicate": 0.5, "seed": 4})
            for page_id in sorted(sim.ids())[:10]:
                httpx.put(f"{url}/_sim/pages/{page_id}", json={"body": "<p>x</p>"})
            deliveries = httpx.get(f"{url}/_sim/deliveries").json()
    faults = [delivery["fault"] for delivery in deliveries]
    assert set_faults.status_code == 200
    assert "dropped" in faults and "duplicate" in faults
    assert len(received) == sum(1 for fault in faults if fault != "dropped")
    duplicated = [d for d in deliveries if d["fault"] == "duplicate"]
    assert all(d["body"] in [o["body"] for o in deliveries if o["fault"] is None] for d in duplicated)

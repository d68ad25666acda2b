"""Specs, delivery and outcomes in one hub: simulated Jira, Confluence and Amplitude pulled
into one model, read back through the API and checked against what each tool holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from statistics import mean

import pytest
from hub_harness import RunningHub, running_hub

from opsync.connectors.amplitude.connector import AmplitudeConnector, AmplitudeSettings
from opsync.connectors.confluence.connector import ConfluenceSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service.config import HubConfig
from opsync_simulators.amplitude import AmplitudeSim
from opsync_simulators.confluence import ConfluenceSim
from opsync_simulators.confluence_webhooks import WebhookTarget
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

HISTORY_DAYS = 90
SHARED_SECRET = "connect-shared-secret-of-the-test-app"  # HS256 wants 32 bytes at least
METRIC, EVENT = "checkout_conversions", "Checkout Completed"


@dataclass
class Picture:
    hub: RunningHub
    jira: JiraSim
    confluence: ConfluenceSim
    amplitude: AmplitudeSim
    epic: str  # the Jira epic the mapping says checkout_conversions measures


def _measured_epic(jira: JiraSim) -> str:
    """A finished CHK epic, or any CHK epic: what the metric is said to measure."""
    epics = [i for i in jira.issues() if i.project == "CHK" and i.issuetype == "Epic"]
    done = [i for i in epics if i.resolved is not None]
    return (done or epics)[0].key


@contextmanager
def pictured(database_url: str, mappings: Path) -> Iterator[Picture]:
    """A hub that pulled the three simulated tools once, with Confluence's webhooks sent to it."""
    jira = JiraSim(issues=60, seed=4, webhook_secret="s")
    confluence = ConfluenceSim(pages=24, seed=4, jira_numbers=jira.key_numbers())
    amplitude = AmplitudeSim(history_days=HISTORY_DAYS)
    epic = _measured_epic(jira)
    shipped = AmplitudeConnector.default_mapping().read_text()
    (mappings / "amplitude.yaml").write_text(
        shipped
        + f"""    links:
      - type: measures
        to: work_item
        key:
          from: event
          map: {{{EVENT}: {epic}}}
"""
    )
    with ExitStack() as stack:
        jira_url = stack.enter_context(serving(jira.app))
        confluence_url = stack.enter_context(serving(confluence.app))
        amplitude_url = stack.enter_context(serving(amplitude.app))
        config = HubConfig(
            connections={
                "jira": JiraSettings(
                    id="jira",
                    kind="jira",
                    base_url=jira_url,
                    email="ops@acme.example",
                    token="t",
                    webhook_secret="s",
                    projects=["PAY", "CHK", "GRO"],
                ),
                "wiki": ConfluenceSettings(
                    id="wiki",
                    kind="confluence",
                    base_url=confluence_url,
                    email="ops@acme.example",
                    token="t",
                    webhook_secret=SHARED_SECRET,
                ),
                "amp": AmplitudeSettings(
                    id="amp",
                    kind="amplitude",
                    base_url=amplitude_url,
                    api_key="amp-api-key",
                    token="amp-secret-key",
                    history_days=HISTORY_DAYS,
                ),
            }
        )
        hub = stack.enter_context(running_hub(database_url, config, mappings_dir=mappings))
        deadline = time.monotonic() + 90
        while True:
            runs = hub.client.get("/api/v1/sync-runs").json()
            if {r["connection_id"] for r in runs if r["status"] == "succeeded"} == {"jira", "wiki", "amp"}:
                break
            assert time.monotonic() < deadline, runs
            time.sleep(0.1)
        confluence.webhooks.target = WebhookTarget(url=hub.webhook_url("wiki"), secret=SHARED_SECRET)
        yield Picture(hub, jira, confluence, amplitude, epic)


@pytest.fixture(scope="module")
def picture(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Picture]:
    """Read only."""
    with pictured(module_database_url, tmp_path_factory.mktemp("mappings")) as running:
        yield running


@pytest.fixture
def own_picture(database_url: str, tmp_path: Path) -> Iterator[Picture]:
    """For a test that changes the tools."""
    with pictured(database_url, tmp_path) as running:
        yield running


# --- documents ------------------------------------------------------------------------------


def test_every_live_page_is_a_document_of_its_spaces_product(picture):
    products = {"PAY": "payments", "CHK": "checkout", "GRO": "growth"}
    expected = {(str(p.id), p.title, p.space, products[p.space]) for p in picture.confluence.pages()}
    documents = picture.hub.all("/api/v1/documents")
    assert {(d["external_id"], d["title"], d["space"], d["product"]) for d in documents} == expected
    assert all("body_text" not in d for d in documents)  # long texts are on the document's own page


def test_a_page_naming_jira_issues_specifies_them_with_its_evidence(picture):
    page = next(p for p in picture.confluence.pages() if p.jira_refs)
    [document] = [d for d in picture.hub.all("/api/v1/documents") if d["external_id"] == str(page.id)]
    whole = picture.hub.client.get(f"/api/v1/documents/{document['id']}").json()
    specifies = {link["to_key"]: link for link in whole["links"] if link["type"] == "specifies"}
    assert set(specifies) == set(page.jira_refs)
    keys = {i.key for i in picture.jira.issues()}
    for key, link in specifies.items():
        assert (link["to_id"] is not None) == (key in keys), link
        assert key in link["evidence"]
    assert whole["body_text"] and "<" not in whole["body_text"]


def test_a_work_item_lists_the_specs_that_specify_it(picture):
    keys = {i.key for i in picture.jira.issues()}
    page = next(p for p in picture.confluence.pages() if set(p.jira_refs) & keys)
    key = sorted(set(page.jira_refs) & keys)[0]
    [item] = picture.hub.all("/api/v1/work-items", q=key)
    whole = picture.hub.client.get(f"/api/v1/work-items/{item['id']}").json()
    incoming = [(link["from_entity"], link["from_key"]) for link in whole["links"] if link["type"] == "specifies"]
    assert ("document", str(page.id)) in incoming


def test_the_space_and_label_filters_match_the_tool(picture):
    page = next(p for p in picture.confluence.pages() if p.labels)
    label = page.labels[0]
    expected = {str(p.id) for p in picture.confluence.pages() if label in p.labels and p.space == page.space}
    found = picture.hub.all("/api/v1/documents", space=page.space, label=label)
    assert {d["external_id"] for d in found} == expected


def test_a_documents_author_is_the_same_person_as_in_jira(picture):
    page = picture.confluence.pages()[0]
    person = picture.confluence.people[page.author]
    [document] = [d for d in picture.hub.all("/api/v1/documents") if d["external_id"] == str(page.id)]
    assert document["author"]["email"] == person.email  # people.yaml names the Confluence account
    body = picture.hub.client.get(f"/api/v1/people/{document['author']['id']}").json()
    assert {i["tool"] for i in body["identities"]} >= {"confluence"}
    assert any(w["entity"] == "document" and w["role"] == "author" for w in body["work"])


# --- metrics --------------------------------------------------------------------------------


def _truth_series(picture: Picture, event: str, first: date, last: date) -> dict[str, float]:
    """The tool's daily totals from first to last, within the days the connection keeps
    (history_days, today included)."""
    days = picture.amplitude.truth().days
    result = {}
    day = max(first, picture.amplitude.today() - timedelta(days=HISTORY_DAYS - 1))
    while day <= last:
        if (event, day.isoformat()) in days:
            result[day.isoformat()] = float(days[(event, day.isoformat())].totals)
        day += timedelta(days=1)
    return result


def test_a_metric_series_has_the_tools_number_for_every_day_of_the_range(picture):
    last = picture.amplitude.today()
    first = last - timedelta(days=27)
    body = picture.hub.client.get(
        f"/api/v1/metrics/checkout:{METRIC}", params={"from": first.isoformat(), "to": last.isoformat()}
    ).json()
    assert {p["day"]: p["value"] for p in body["points"]} == _truth_series(picture, EVENT, first, last)
    assert [(link["type"], link["to_key"]) for link in body["links"]] == [("measures", picture.epic)]


def test_events_the_mapping_names_no_metric_for_are_not_metrics(picture):
    series = picture.hub.client.get("/api/v1/metrics", params={"product": "checkout"}).json()["items"]
    names = {s["metric"] for s in series}
    assert METRIC in names and "converting_customers" in names
    everything = picture.hub.client.get("/api/v1/metrics").json()["items"]
    assert all(s["product"] in ("payments", "checkout", "growth") for s in everything)
    assert not any(picture.amplitude.page_view_event in (s["metric"] or "") for s in everything)


# --- the product summary --------------------------------------------------------------------


def test_the_summary_shows_the_products_specs_and_its_metrics_trend_and_release(picture):
    last = picture.amplitude.today()
    first = last - timedelta(days=55)
    summary = picture.hub.client.get(
        "/api/v1/products/checkout/summary", params={"from": first.isoformat(), "to": last.isoformat()}
    ).json()
    assert summary["range"] == {"from": first.isoformat(), "to": last.isoformat()}
    checkout_keys = {i.key for i in picture.jira.issues() if i.project == "CHK"}
    specs = {str(p.id) for p in picture.confluence.pages() if p.space == "CHK" or set(p.jira_refs) & checkout_keys}
    assert summary["specs"]["total"] == len(specs)
    assert {s["key"] for s in summary["specs"]["recent"]} <= specs

    [metric] = [m for m in summary["metrics"] if m["metric"] == METRIC]
    series = _truth_series(picture, EVENT, first, last)
    assert (metric["points"], metric["total"]) == (len(series), sum(series.values()))
    opening = [v for d, v in series.items() if date.fromisoformat(d) <= first + timedelta(days=6)]
    closing = [v for d, v in series.items() if date.fromisoformat(d) >= last - timedelta(days=6)]
    assert metric["trend"]["first_week_avg"] == round(mean(opening), 2)
    assert metric["trend"]["last_week_avg"] == round(mean(closing), 2)

    [release] = metric["releases"]
    epic = next(i for i in picture.jira.issues() if i.key == picture.epic)
    assert release["key"] == picture.epic
    if epic.resolved is None:
        assert release["before_avg"] is None and release["after_avg"] is None
        return
    day = epic.resolved.date()
    around = _truth_series(picture, EVENT, day - timedelta(days=28), day + timedelta(days=27))
    before = [v for d, v in around.items() if date.fromisoformat(d) < day]
    after = [v for d, v in around.items() if date.fromisoformat(d) >= day]
    assert release["before_avg"] == (round(mean(before), 2) if before else None)
    assert release["after_avg"] == (round(mean(after), 2) if after else None)


# --- changes --------------------------------------------------------------------------------


def _wait(check, what: str, seconds: float = 20):
    deadline = time.monotonic() + seconds
    while (found := check()) is None or found is False:
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return found


def _document(picture: Picture, page_id: int, **params) -> dict | None:
    return next((d for d in picture.hub.all("/api/v1/documents", **params) if d["external_id"] == str(page_id)), None)


def test_a_page_updated_webhook_refetches_the_page_once_and_updates_its_document_once(own_picture):
    page = own_picture.confluence.pages()[0]
    [document] = [d for d in own_picture.hub.all("/api/v1/documents") if d["external_id"] == str(page.id)]
    before = len(own_picture.confluence.api_paths)
    own_picture.confluence.update_page(page.id, title="One-click checkout: the spec, revised")
    _wait(
        lambda: (_document(own_picture, page.id) or {}).get("title") == "One-click checkout: the spec, revised",
        "no update",
    )
    own_picture.hub.wait_for_inbox(lane=None)
    fetched = own_picture.confluence.api_paths[before:]
    assert fetched == [f"/wiki/api/v2/pages/{page.id}", f"/wiki/api/v2/pages/{page.id}/labels"]
    history = own_picture.hub.client.get(f"/api/v1/documents/{document['id']}").json()["history"]
    assert [change["op"] for change in history] == ["create", "update"]
    assert history[-1]["fields"]["title"][1] == "One-click checkout: the spec, revised"


def test_a_page_removed_webhook_tombstones_its_document(own_picture):
    page = own_picture.confluence.pages()[1]
    own_picture.confluence.purge_page(page.id)
    gone = _wait(lambda: _document(own_picture, page.id, include_deleted="true")["deleted_at"], "not tombstoned")
    assert gone is not None
    assert _document(own_picture, page.id) is None


def test_pulling_the_same_analytics_days_again_leaves_the_same_metric_points(own_picture):
    def points() -> dict[tuple[str, str], float]:
        since = own_picture.amplitude.today() - timedelta(days=HISTORY_DAYS)
        series = own_picture.hub.client.get("/api/v1/metrics", params={"from": since.isoformat()}).json()
        return {(s["id"], p["day"]): p["value"] for s in series["items"] for p in s["points"]}

    def feed(after: int) -> tuple[list[dict], int]:
        """Every change after that seq, and the last seq."""
        changes = []
        while items := own_picture.hub.client.get("/api/v1/changes", params={"after": after, "limit": 1000}).json()[
            "items"
        ]:
            changes += items
            after = items[-1]["seq"]
        return changes, after

    first = points()
    _, last = feed(0)
    for full in (False, True):
        answer = own_picture.hub.client.post("/api/v1/connections/amp/sync", params={"full": str(full).lower()})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        run = _wait(
            lambda run_id=run_id: next(
                (
                    r
                    for r in own_picture.hub.client.get("/api/v1/sync-runs").json()
                    if r["id"] == run_id and r["status"] != "running"
                ),
                None,
            ),
            "the pull did not finish",
        )
        assert (run["status"], run["created"], run["deleted"]) == ("succeeded", 0, 0), run
    assert points() == first
    assert [c for c in feed(last)[0] if c["entity"] == "metric_point"] == []

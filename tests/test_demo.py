"""The demo's portfolio, as a new user first sees it: every product's summary has throughput,
lead and cycle times, specs and measured metrics, and its numbers are what this test computes
from the simulated tools itself."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from statistics import mean, quantiles

import httpx
import pytest
import yaml
from pydantic import SecretStr
from rich.console import Console
from support.expected import PRODUCTS, tool_items

from opsync.api.app import create_app
from opsync.service.config import load_config
from opsync.service.db import create_db_engine
from opsync.service.tokens import create_token
from opsync_simulators.demo import Demo, demo_tools
from opsync_simulators.server import serving

SCALE = 0.15  # 300 Jira issues, 75 GitHub items, 18 pages


@pytest.fixture(scope="module")
def demo(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Demo, httpx.Client]]:
    workdir = tmp_path_factory.mktemp("demo")
    with demo_tools(workdir, SCALE, Console(file=io.StringIO()), database_url=module_database_url) as tools:
        engine = create_db_engine(module_database_url)
        token = create_token(engine, ["read"], "demo test")
        engine.dispose()
        app = create_app(tools.settings, load_config(tools.config_file))
        with serving(app, lifespan="on") as url, httpx.Client(base_url=url, timeout=30) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            yield tools, client


def _percentile(values: list[float], p: int) -> float | None:
    if not values:
        return None
    cuts = quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return round(cuts[p - 1], 2)


def _days(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() / 86400


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_every_products_summary_has_the_delivery_numbers_the_tools_give(demo, product):
    tools, client = demo
    summary = client.get(f"/api/v1/products/{product}/summary").json()
    last = datetime.now(UTC).date()
    first = last - timedelta(days=83)
    assert summary["range"] == {"from": first.isoformat(), "to": last.isoformat()}
    start = datetime.combine(first, datetime.min.time(), UTC)
    done = [
        i
        for i in tool_items(tools.jira, tools.github)
        if i.product == product and i.status_category == "done" and i.completed_at and i.completed_at >= start
    ]
    weeks = Counter((i.completed_at - timedelta(days=i.completed_at.weekday())).date().isoformat() for i in done)
    assert summary["throughput_per_week"] == [{"week_of": w, "done": n} for w, n in sorted(weeks.items())]
    assert len(weeks) >= 6, "the last 12 weeks should have throughput most weeks"
    lead = [_days(i.completed_at, i.created_at) for i in done]
    cycle = [_days(i.completed_at, i.started_at) for i in done if i.started_at]
    for field, values in (("lead_time_days", lead), ("cycle_time_days", cycle)):
        assert values, field
        expected = {name: _percentile(values, p) for name, p in (("p50", 50), ("p85", 85), ("p95", 95))}
        assert summary[field] == expected, field


@pytest.mark.parametrize("product", sorted(PRODUCTS))
def test_every_product_has_a_spec_and_a_measured_metric_with_a_trend(demo, product):
    tools, client = demo
    summary = client.get(f"/api/v1/products/{product}/summary").json()
    project = PRODUCTS[product][0]
    keys = {i.key for i in tools.jira.issues() if i.project == project}
    specs = {str(p.id) for p in tools.confluence.pages() if p.space == project or set(p.jira_refs) & keys}
    assert summary["specs"]["total"] == len(specs) >= 1
    measured = [m for m in summary["metrics"] if m["releases"]]
    assert measured, f"no metric of {product} measures an epic"
    truth, first = tools.amplitude.truth().days, datetime.fromisoformat(summary["range"]["from"]).date()
    for metric in measured:
        [release] = metric["releases"]
        assert release["key"].startswith(f"{project}-") and release["released_at"]
        event, measure = _counted(tools)[metric["metric"]]
        opening = [getattr(truth[(event, (first + timedelta(days=n)).isoformat())], measure) for n in range(7)]
        assert metric["trend"]["first_week_avg"] == round(mean(opening), 2)
        assert metric["trend"]["last_week_avg"] is not None


def _counted(tools: Demo) -> dict[str, tuple[str, str]]:
    """Each metric the demo's Amplitude mapping names -> the event and the measure it counts."""
    assert tools.settings.mappings_dir is not None
    mapping = yaml.safe_load((tools.settings.mappings_dir / "amplitude.yaml").read_text())
    names = mapping["records"]["event_day"]["fields"]["metric"]["map"]
    return {metric: tuple(key.split("/")) for key, metric in names.items()}


def test_documents_and_metrics_list_the_pages_and_series(demo):
    tools, client = demo
    documents = client.get("/api/v1/documents", params={"limit": 500}).json()["items"]
    assert {d["external_id"] for d in documents} == {str(p.id) for p in tools.confluence.pages()}
    series = client.get("/api/v1/metrics").json()["items"]
    assert {s["metric"] for s in series} == set(_counted(tools))


def test_one_person_has_identities_in_jira_github_and_confluence(demo):
    _, client = demo
    people = client.get("/api/v1/people", params={"limit": 500}).json()["items"]
    assert any({i["tool"] for i in p["identities"]} >= {"jira", "github", "confluence"} for p in people)


def _asked(tools: Demo) -> tuple[int, int, int, int]:
    """How many API requests each simulated tool has answered."""
    return (
        tools.jira.api_requests,
        sum(tools.github.requests.values()),
        tools.confluence.api_requests,
        sum(tools.amplitude.requests.values()),
    )


def test_in_the_demo_a_status_moved_to_another_category_is_previewed_applied_and_rolled_back(
    database_url: str, tmp_path
):
    """Issue 10's acceptance, in the demo: the records holding the status, and only those."""
    with demo_tools(tmp_path, 0.05, Console(file=io.StringIO()), database_url=database_url) as tools:
        bootstrap = "demo-admin-token-for-this-test"
        settings = tools.settings.model_copy(update={"bootstrap_token": SecretStr(bootstrap)})
        app = create_app(settings, load_config(tools.config_file))
        with serving(app, lifespan="on") as url, httpx.Client(base_url=url, timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {bootstrap}"
            moved = {i.key for i in tools.jira.issues() if i.status == "In Progress"}
            assert moved
            text = client.get("/api/v1/mappings/jira").json()["text"]
            marker = "contains(['Won\\'t Do'"
            candidate = text.replace(marker, "fields.status.name == 'In Progress' && 'done' || " + marker, 1)

            def work_items() -> dict[str, dict]:
                items = client.get("/api/v1/work-items", params={"limit": 500, "connection_id": "jira-acme"}).json()
                return {i["key"]: i for i in items["items"]}

            before, asked = work_items(), _asked(tools)
            feed = client.get("/api/v1/changes", params={"after": 0, "limit": 1000}).json()
            while feed["items"]:
                last = feed["next_after"]
                feed = client.get("/api/v1/changes", params={"after": last, "limit": 1000}).json()

            headers = {"Content-Type": "application/yaml"}
            preview = client.post("/api/v1/mappings/jira/preview", content=candidate, headers=headers).json()
            assert preview["would_change"] == len(moved)
            assert {c["external_id"] for c in preview["sample"]} <= {
                str(i.id) for i in tools.jira.issues() if i.key in moved
            }

            applied = client.put("/api/v1/mappings/jira", content=candidate, headers=headers).json()
            _finish(client, applied["runs"])
            after = work_items()
            assert {k for k in after if after[k]["status_category"] != before[k]["status_category"]} == moved
            changes = client.get("/api/v1/changes", params={"after": last, "limit": 1000}).json()["items"]
            assert sorted(c["entity_id"] for c in changes) == sorted(before[k]["id"] for k in moved)

            _finish(
                client, client.post(f"/api/v1/mappings/jira/versions/{applied['version'] - 1}/apply").json()["runs"]
            )
            restored = work_items()
            for key, item in before.items():
                assert {k: v for k, v in restored[key].items() if k not in ("synced_at",)} == {
                    k: v for k, v in item.items() if k not in ("synced_at",)
                }, key
            assert _asked(tools) == asked  # no simulator was asked anything


def _finish(client: httpx.Client, runs: list[dict]) -> None:
    ids = {r["run_id"] for r in runs}
    for _ in range(600):
        found = [r for r in client.get("/api/v1/sync-runs").json() if r["id"] in ids]
        if found and all(r["status"] == "succeeded" for r in found):
            return
        assert all(r["status"] in ("running", "succeeded") for r in found), found
        time.sleep(0.05)
    raise AssertionError(f"the remap runs did not finish: {runs}")

"""What an operator sees: /metrics scraped over HTTP from a running hub, and the log lines.

Counters belong to the process, which runs every test of a session: each test uses
connections of its own, or compares a scrape after with one before.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from hub_harness import github_delivery, running_hub, sign
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service import logs
from opsync.service.config import HubConfig
from opsync.service.logs import log_context
from opsync.service.settings import Settings
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

ROOT = Path(__file__).resolve().parents[1]
SECRET = "observability-webhook-secret"
GITHUB_TOKEN = "ghp_observability_token_4f2a9c"
JIRA_TOKEN = "jira-observability-token-7d1e3b"
UNREACHABLE = "http://127.0.0.1:9"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """/metrics as Prometheus reads it: no token, the text format, parsed by its own parser."""
    answer = httpx.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def github(connection_id: str, base_url: str = UNREACHABLE) -> GitHubSettings:
    return GitHubSettings(
        id=connection_id,
        kind="github",
        base_url=base_url,
        token=GITHUB_TOKEN,
        webhook_secret=SECRET,
        repos=["acme/payments"],
    )


def jira(connection_id: str, base_url: str = UNREACHABLE, token: str = JIRA_TOKEN) -> JiraSettings:
    return JiraSettings(
        id=connection_id,
        kind="jira",
        base_url=base_url,
        email="ops@acme.example",
        token=token,
        webhook_secret=SECRET,
        projects=["PAY"],
    )


def issue_event(issue_id: int) -> dict[str, Any]:
    return {
        "action": "opened",
        "repository": {"full_name": "acme/payments"},
        "issue": {
            "id": issue_id,
            "number": issue_id,
            "title": f"Issue {issue_id}",
            "state": "open",
            "updated_at": "2024-03-01T10:00:00Z",
            "html_url": f"https://github.com/acme/payments/issues/{issue_id}",
        },
    }


def wait_for_runs(
    client: httpx.Client, connection_id: str, count: int = 1, timeout: float = 60.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.get("/api/v1/sync-runs", params={"connection_id": connection_id}).json()
        if len([r for r in runs if r["status"] != "running"]) >= count:
            return runs
        time.sleep(0.05)
    raise AssertionError(f"no finished sync run of {connection_id} after {timeout} s")


# --- webhook intake and the inbox ---------------------------------------------------------


def test_metrics_count_deliveries_received_duplicated_and_rejected_and_show_the_pending_inbox(database_url):
    config = HubConfig(connections={"obs-intake": github("obs-intake"), "obs-quiet": github("obs-quiet")})
    with running_hub(database_url, config, run_workers=False, max_webhook_bytes=4096) as hub:
        url = hub.webhook_url("obs-intake")
        first = github_delivery("issues", issue_event(1), SECRET, "delivery-1")
        for body, headers in (first, first, github_delivery("issues", issue_event(2), SECRET, "delivery-2")):
            assert hub.client.post(url, content=body, headers=headers).status_code == 202
        forged, headers = github_delivery("issues", issue_event(3), "not the secret", "delivery-3")
        assert hub.client.post(url, content=forged, headers=headers).status_code == 401
        not_json = b"<xml/>"
        assert (
            hub.client.post(
                url, content=not_json, headers={**headers, "X-Hub-Signature-256": sign(SECRET, not_json)}
            ).status_code
            == 400
        )
        huge = github_delivery("issues", {**issue_event(4), "padding": "x" * 5000}, SECRET, "delivery-4")
        assert hub.client.post(url, content=huge[0], headers=huge[1]).status_code == 413
        samples = scrape(hub.url)

    assert value(samples, "opsync_webhook_deliveries_received_total", connection="obs-intake") == 3
    assert value(samples, "opsync_webhook_deliveries_duplicate_total", connection="obs-intake") == 1
    for reason in ("signature", "bad_body", "too_large"):
        assert value(samples, "opsync_webhook_deliveries_rejected_total", connection="obs-intake", reason=reason) == 1
    assert value(samples, "opsync_inbox_pending", connection="obs-intake") == 2
    assert value(samples, "opsync_inbox_oldest_pending_age_seconds", connection="obs-intake") >= 0
    assert value(samples, "opsync_inbox_failed", connection="obs-intake") == 0
    # a configured connection with nothing to show still has its series, at 0, to alert on
    for name in (
        "opsync_inbox_pending",
        "opsync_inbox_oldest_pending_age_seconds",
        "opsync_inbox_failed",
        "opsync_webhook_deliveries_received_total",
    ):
        assert (name, frozenset({("connection", "obs-quiet")})) in samples, name
    for outcome in ("applied", "failed", "ignored"):
        assert (
            "opsync_webhook_deliveries_processed_total",
            frozenset({("connection", "obs-quiet"), ("outcome", outcome)}),
        ) in samples


def test_the_inbox_gauges_count_a_delivery_parked_as_failed_and_nothing_pending(database_url):
    config = HubConfig(connections={"obs-parked": github("obs-parked")})
    with running_hub(database_url, config, inbox_max_attempts=1) as hub:
        body, headers = github_delivery("issues", {"action": "opened", "issue": {"number": 7}}, SECRET, "no-id")
        assert hub.client.post(hub.webhook_url("obs-parked"), content=body, headers=headers).status_code == 202
        hub.wait_for_inbox()
        samples = scrape(hub.url)

    assert value(samples, "opsync_webhook_deliveries_processed_total", connection="obs-parked", outcome="failed") == 1
    assert value(samples, "opsync_inbox_failed", connection="obs-parked") == 1
    assert value(samples, "opsync_inbox_pending", connection="obs-parked") == 0
    assert value(samples, "opsync_inbox_oldest_pending_age_seconds", connection="obs-parked") == 0


def test_deliveries_applied_and_ignored_are_counted_per_connection(database_url):
    config = HubConfig(connections={"obs-applied": github("obs-applied")})
    with running_hub(database_url, config) as hub:
        for body, headers in (
            github_delivery("issues", issue_event(8), SECRET, "applied-1"),
            github_delivery("issues", issue_event(9), SECRET, "applied-2"),
            github_delivery("ping", {"zen": "Keep it logically awesome."}, SECRET, "ping-1"),
        ):
            assert hub.client.post(hub.webhook_url("obs-applied"), content=body, headers=headers).status_code == 202
        hub.wait_for_inbox()
        samples = scrape(hub.url)

    outcomes = {
        outcome: value(samples, "opsync_webhook_deliveries_processed_total", connection="obs-applied", outcome=outcome)
        for outcome in ("applied", "ignored", "failed")
    }
    assert outcomes == {"applied": 2, "ignored": 1, "failed": 0}


# --- the API ------------------------------------------------------------------------------


def test_api_latency_is_labelled_by_route_template_method_and_status_never_by_raw_path(database_url):
    config = HubConfig(connections={"obs-api": github("obs-api")})
    with running_hub(database_url, config, run_workers=False) as hub:
        before = scrape(hub.url)
        for item_id in (900001, 900002):
            assert hub.client.get(f"/api/v1/work-items/{item_id}").status_code == 404
        assert hub.client.get("/no/such/path/900003").status_code == 404
        body, headers = github_delivery("issues", issue_event(5), SECRET, "delivery-5")
        assert hub.client.post(hub.webhook_url("obs-api"), content=body, headers=headers).status_code == 202
        after = scrape(hub.url)

    def served(route: str, method: str, status: str) -> float:
        labels = {"route": route, "method": method, "status": status}
        return value(after, "opsync_http_request_duration_seconds_count", **labels) - value(
            before, "opsync_http_request_duration_seconds_count", **labels
        )

    assert served("/api/v1/work-items/{record_id}", "GET", "404") == 2
    assert served("unmatched", "GET", "404") == 1
    assert served("/api/v1/webhooks/{connection_id}", "POST", "202") == 1
    assert served("/metrics", "GET", "200") >= 1
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any("9000" in route or "obs-api" in route for route in routes if route)


# --- the tools' APIs ----------------------------------------------------------------------


def test_github_answers_retries_and_rate_limit_waits_are_counted_per_connection(database_url):
    sim = GitHubSim(items=30, seed=11, repos=("acme/payments",), token=GITHUB_TOKEN)
    sim.inject(status=429, retry_after=1)
    sim.inject(status=502)
    sim.inject(drop_connection=True)
    with serving(sim.app) as github_url:
        config = HubConfig(connections={"obs-gh-api": github("obs-gh-api", github_url)})
        with running_hub(database_url, config) as hub:
            [run] = wait_for_runs(hub.client, "obs-gh-api")
            samples = scrape(hub.url)

    assert run["status"] == "succeeded", run
    mode = run["mode"]
    assert value(samples, "opsync_sync_runs_total", connection="obs-gh-api", mode=mode, status="succeeded") == 1
    assert (
        value(samples, "opsync_sync_run_duration_seconds_count", connection="obs-gh-api", mode=mode, status="succeeded")
        == 1
    )
    assert value(samples, "opsync_sync_last_success_timestamp_seconds", connection="obs-gh-api", mode=mode) > 0
    answered = {
        status: value(samples, "opsync_upstream_requests_total", connection="obs-gh-api", tool="github", status=status)
        for status in ("200", "429", "502", "error")
    }
    assert answered["429"] == answered["502"] == answered["error"] == 1
    assert answered["200"] >= 2  # the issues and the pull requests of the repository
    for reason in ("rate_limited", "server_error", "network"):
        assert value(samples, "opsync_upstream_retries_total", connection="obs-gh-api", reason=reason) == 1, reason
    assert value(samples, "opsync_upstream_rate_limit_wait_seconds_total", connection="obs-gh-api") >= 1


def test_jira_answers_retries_and_rate_limit_waits_are_counted_from_the_first_request_on(database_url):
    sim = JiraSim(issues=20, seed=12, webhook_secret=SECRET)
    sim.inject(status=429, retry_after=1)  # the client's start-up request (serverInfo) draws it
    sim.inject(status=503)
    with serving(sim.app) as jira_url:
        config = HubConfig(connections={"obs-jira-api": jira("obs-jira-api", jira_url)})
        with running_hub(database_url, config) as hub:
            [run] = wait_for_runs(hub.client, "obs-jira-api")
            samples = scrape(hub.url)

    assert run["status"] == "succeeded", run
    answered = {
        status: value(samples, "opsync_upstream_requests_total", connection="obs-jira-api", tool="jira", status=status)
        for status in ("200", "429", "503")
    }
    assert answered["429"] == answered["503"] == 1
    assert answered["200"] >= 2  # serverInfo and a search page
    assert value(samples, "opsync_upstream_retries_total", connection="obs-jira-api", reason="rate_limited") == 1
    assert value(samples, "opsync_upstream_retries_total", connection="obs-jira-api", reason="server_error") == 1
    assert value(samples, "opsync_upstream_rate_limit_wait_seconds_total", connection="obs-jira-api") >= 1


def test_a_jira_that_refuses_the_credentials_shows_as_401_answers(database_url):
    sim = JiraSim(issues=5, seed=13, webhook_secret=SECRET, credentials=("ops@acme.example", JIRA_TOKEN))
    with serving(sim.app) as jira_url:
        config = HubConfig(connections={"obs-jira-401": jira("obs-jira-401", jira_url, token=JIRA_TOKEN + "-old")})
        with running_hub(database_url, config) as hub:
            [run] = wait_for_runs(hub.client, "obs-jira-401")
            samples = scrape(hub.url)

    assert run["status"] == "failed"
    assert value(samples, "opsync_sync_runs_total", connection="obs-jira-401", mode=run["mode"], status="failed") == 1
    assert value(samples, "opsync_upstream_requests_total", connection="obs-jira-401", tool="jira", status="401") >= 1
    assert value(samples, "opsync_upstream_retries_total", connection="obs-jira-401", reason="other") == 0


# --- logs ---------------------------------------------------------------------------------


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger as configure() leaves it, put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_text_log_lines_end_with_the_ids_of_their_context_as_key_value(root_logger, capsys):
    logs.configure("INFO", json_lines=False)
    log = logging.getLogger("opsync.test")
    with log_context(connection_id="jira-acme", run_id=42):
        log.info("pulled a page")
        with log_context(delivery_id="d-7"):
            log.warning("delivery refused")
    log.info("outside")
    lines = capsys.readouterr().err.splitlines()

    assert lines[0].endswith("INFO opsync.test: pulled a page connection_id=jira-acme run_id=42")
    assert lines[1].endswith("WARNING opsync.test: delivery refused connection_id=jira-acme run_id=42 delivery_id=d-7")
    assert lines[2].endswith("INFO opsync.test: outside")


def test_json_log_lines_are_one_object_each_with_the_ids_and_the_traceback(root_logger, capsys):
    import asyncio

    logs.configure("INFO", json_lines=True)
    log = logging.getLogger("opsync.test")

    async def apply() -> None:
        with log_context(connection_id="github-acme", delivery_id="abc-123"):
            await asyncio.to_thread(log.info, "in a worker thread")
            try:
                {}["issue"]
            except KeyError:
                log.exception("delivery failed")

    asyncio.run(apply())
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())

    assert {k: first[k] for k in ("level", "logger", "message", "connection_id", "delivery_id")} == {
        "level": "INFO",
        "logger": "opsync.test",
        "message": "in a worker thread",
        "connection_id": "github-acme",
        "delivery_id": "abc-123",
    }
    assert first["time"].endswith("+00:00") and "exc_info" not in first and "run_id" not in first
    assert second["level"] == "ERROR" and second["message"] == "delivery failed"
    assert "KeyError: 'issue'" in second["exc_info"]


def test_debug_logs_of_syncs_and_deliveries_carry_no_secret(root_logger, capsys, database_url):
    github_sim = GitHubSim(items=10, seed=14, repos=("acme/payments",), token=GITHUB_TOKEN, webhook_secret=SECRET)
    jira_sim = JiraSim(issues=5, seed=15, webhook_secret=SECRET, credentials=("ops@acme.example", JIRA_TOKEN))
    logs.configure("DEBUG", json_lines=True)
    with ExitStack() as stack:
        github_url = stack.enter_context(serving(github_sim.app))
        jira_url = stack.enter_context(serving(jira_sim.app))
        config = HubConfig(
            connections={
                "obs-gh-logs": github("obs-gh-logs", github_url),
                "obs-jira-logs": jira("obs-jira-logs", jira_url, token=JIRA_TOKEN + "-wrong"),
            }
        )
        hub = stack.enter_context(running_hub(database_url, config))
        wait_for_runs(hub.client, "obs-gh-logs")
        wait_for_runs(hub.client, "obs-jira-logs")
        body, headers = github_delivery("issues", issue_event(6), SECRET, "delivery-6")
        assert hub.client.post(hub.webhook_url("obs-gh-logs"), content=body, headers=headers).status_code == 202
        hub.wait_for_inbox()
    printed = capsys.readouterr().err

    assert "rejected the credentials" in printed  # the failed pull says so, without the token
    basic = base64.b64encode(f"ops@acme.example:{JIRA_TOKEN}-wrong".encode()).decode()
    for secret in (GITHUB_TOKEN, JIRA_TOKEN, SECRET, basic):
        assert secret not in printed
    for line in printed.splitlines():
        json.loads(line)


def test_the_log_format_is_text_or_json() -> None:
    assert Settings(log_format="json").log_format == "json"
    with pytest.raises(ValidationError, match="log_format"):
        Settings(log_format="xml")


def test_serve_prints_json_lines_with_log_format_json(tmp_path, database_url):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "DATABASE_URL": database_url, "OPSYNC_LOG_FORMAT": "json"}
    server = subprocess.Popen(
        [sys.executable, "-m", "opsync.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=environment,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    stuck = threading.Timer(60, server.kill)  # a server that never says it serves ends the loop below
    stuck.start()
    try:
        for line in server.stderr:  # until uvicorn says it serves, or the process ends
            lines.append(line)
            if "Uvicorn running on" in line:
                break
    finally:
        stuck.cancel()
        server.terminate()
        server.wait(timeout=30)
    entries = [json.loads(line) for line in lines]
    assert any(
        entry["logger"].startswith("uvicorn") and "Uvicorn running on" in entry["message"] for entry in entries
    ), lines


def test_a_worker_alone_serves_its_own_metrics_on_the_port_it_is_given(tmp_path, database_url):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "connections.yaml"
    config.write_text(
        "connections:\n  - id: gh-worker\n    kind: github\n    base_url: http://127.0.0.1:9\n"
        "    token: ${WORKER_GH_TOKEN}\n    repos: [acme/payments]\n    pull_every_minutes: 600\n"
    )
    environment = {**os.environ, "DATABASE_URL": database_url, "WORKER_GH_TOKEN": "t"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "opsync.cli", "worker", "--config", str(config), "--metrics-port", str(port)],
        cwd=ROOT,
        env=environment,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the worker's start-up backfill fails (nothing listens on port 9): counted as a run
            try:
                samples = scrape(f"http://127.0.0.1:{port}")
                if value(
                    samples, "opsync_sync_runs_total", connection="gh-worker", mode="incremental", status="failed"
                ):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the worker's /metrics never showed its failed pull"
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


# --- the access log -------------------------------------------------------------------------


@pytest.mark.parametrize("access_log", ["errors", "all"])
def test_the_access_log_has_a_line_per_refused_request_and_per_accepted_one_only_when_asked(
    database_url, caplog, access_log
):
    config = HubConfig(connections={"obs-access": github("obs-access")})
    caplog.set_level(logging.INFO, logger="opsync.access")
    with running_hub(database_url, config, run_workers=False, access_log=access_log) as hub:
        body, headers = github_delivery("issues", issue_event(7), SECRET, "delivery-7")
        url = hub.webhook_url("obs-access") + "?note=kept-out-of-logs"
        accepted = hub.client.post(url, content=body, headers=headers)
        refused = hub.client.post(url, content=body, headers=headers | {"X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert (accepted.status_code, refused.status_code) == (202, 401)
    lines = [r.getMessage() for r in caplog.records if r.name == "opsync.access"]
    path = "/api/v1/webhooks/obs-access"
    assert [line for line in lines if f'"POST {path}" 401' in line]
    assert bool([line for line in lines if f'"POST {path}" 202' in line]) is (access_log == "all")
    assert not [line for line in lines if "kept-out-of-logs" in line]


def test_the_access_log_can_be_turned_off(database_url, caplog):
    config = HubConfig(connections={"obs-quiet": github("obs-quiet")})
    caplog.set_level(logging.INFO, logger="opsync.access")
    with running_hub(database_url, config, run_workers=False, access_log="off") as hub:
        assert hub.client.get("/api/v1/work-items/900004").status_code == 404
    assert not [r for r in caplog.records if r.name == "opsync.access"]


def test_the_access_log_setting_names_what_it_takes():
    with pytest.raises(ValidationError, match="access_log"):
        Settings(access_log="some")

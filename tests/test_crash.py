"""A crash (SIGKILL) after deliveries were acknowledged loses none of them."""

from __future__ import annotations

import json
import time

import httpx
from hub_harness import github_delivery
from support import processes

from opsync.service.inbox import LEASE

SECRET = "crash-secret"
DELIVERIES = 60
CONNECTION = {
    "id": "gh",
    "kind": "github",
    "base_url": "http://127.0.0.1:9",
    "token": "${CRASH_GH_TOKEN}",
    "webhook_secret": "${CRASH_GH_SECRET}",
    "repos": ["acme/payments"],
    # no scheduled pull during the test: the tool is unreachable on purpose
    "pull_every_minutes": 600,
}
ENV = {"CRASH_GH_TOKEN": "t", "CRASH_GH_SECRET": SECRET}


def _payload(n: int) -> dict:
    return {
        "action": "opened",
        "issue": {
            "id": 90_000 + n,
            "number": n,
            "title": f"Issue {n}",
            "state": "open",
            "body": None,
            "assignee": None,
            "labels": [],
            "html_url": f"https://github.com/acme/payments/issues/{n}",
            "repository_url": "https://api.github.com/repos/acme/payments",
            "user": {"login": "adal", "id": 1000},
            "created_at": "2024-03-01T10:00:00Z",
            "updated_at": "2024-03-01T10:00:00Z",
            "closed_at": None,
        },
    }


def test_deliveries_acknowledged_before_a_sigkill_are_all_applied_after_restart(tmp_path, database_url):
    port = processes.free_port()
    config = processes.write_config(tmp_path, [CONNECTION])
    process = processes.serve(tmp_path, database_url, config, port, ENV)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for n in range(DELIVERIES):
                body, headers = github_delivery("issues", _payload(n), SECRET, f"crash-{n}")
                assert client.post("/api/v1/webhooks/gh", content=body, headers=headers).status_code == 202
        process.kill()  # serve and its worker process, right after the last 202

        process = processes.serve(tmp_path, database_url, config, port, ENV)
        with processes.client(port) as client:
            # deliveries the killed worker had claimed come back when their lease ends
            deadline = time.monotonic() + LEASE.total_seconds() + 30
            titles: set[str] = set()
            while time.monotonic() < deadline:
                page = client.get("/api/v1/work-items", params={"limit": 500}).json()
                titles = {item["title"] for item in page["items"]}
                if len(titles) == DELIVERIES:
                    break
                time.sleep(0.2)
            assert titles == {f"Issue {n}" for n in range(DELIVERIES)}
            feed = client.get("/api/v1/changes", params={"after": 0, "limit": 1000}).json()
        assert [c["seq"] for c in feed["items"]] == list(range(1, DELIVERIES + 1))
        assert json.dumps(feed).count('"create"') == DELIVERIES
    finally:
        process.kill()

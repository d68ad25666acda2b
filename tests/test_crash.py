"""A crash (SIGKILL) after deliveries were acknowledged loses none of them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from hub_harness import github_delivery

from opsync.service.inbox import LEASE

SECRET = "crash-secret"
TOKEN = "crash-admin-token"
DELIVERIES = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(tmp_path: Path, database_url: str, port: int) -> subprocess.Popen:
    config = tmp_path / "connections.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "connections": [
                    {
                        "id": "gh",
                        "kind": "github",
                        "base_url": "http://127.0.0.1:9",
                        "token": "${CRASH_GH_TOKEN}",
                        "webhook_secret": "${CRASH_GH_SECRET}",
                        "repos": ["acme/payments"],
                        # no scheduled pull during the test: the tool is unreachable on purpose
                        "pull_every_minutes": 600,
                    }
                ]
            }
        )
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPSYNC_BOOTSTRAP_TOKEN": TOKEN,
        "CRASH_GH_TOKEN": "t",
        "CRASH_GH_SECRET": SECRET,
        "OPSYNC_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "opsync.cli", "serve", "--config", str(config), "--port", str(port)],
        env=env,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("opsync serve did not become ready in 30 s")


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
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(tmp_path, database_url, port)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for n in range(DELIVERIES):
                body, headers = github_delivery("issues", _payload(n), SECRET, f"crash-{n}")
                assert client.post("/api/v1/webhooks/gh", content=body, headers=headers).status_code == 202
        process.send_signal(signal.SIGKILL)  # right after the last 202
        process.wait(timeout=10)

        process = _start(tmp_path, database_url, port)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        # deliveries the killed worker had claimed come back when their lease ends
        deadline = time.monotonic() + LEASE.total_seconds() + 30
        titles: set[str] = set()
        while time.monotonic() < deadline:
            page = httpx.get(f"{url}/api/v1/work-items", params={"limit": 500}, headers=headers).json()
            titles = {item["title"] for item in page["items"]}
            if len(titles) == DELIVERIES:
                break
            time.sleep(0.2)
        assert titles == {f"Issue {n}" for n in range(DELIVERIES)}
        feed = httpx.get(f"{url}/api/v1/changes", params={"after": 0, "limit": 1000}, headers=headers).json()
        assert [c["seq"] for c in feed["items"]] == list(range(1, DELIVERIES + 1))
        assert json.dumps(feed).count('"create"') == DELIVERIES
    finally:
        process.kill()
        process.wait(timeout=10)

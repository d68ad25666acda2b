"""Standing up a real hub for tests: its API served over HTTP, signed deliveries, waiting."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa

from opsync.api.app import create_app
from opsync.service.config import HubConfig
from opsync.service.settings import Settings
from opsync_simulators.server import serving

ADMIN_TOKEN = "test-admin-token"


@dataclass
class RunningHub:
    url: str
    settings: Settings
    client: httpx.Client

    def webhook_url(self, connection_id: str) -> str:
        return f"{self.url}/api/v1/webhooks/{connection_id}"

    def all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list, following next_cursor."""
        items, cursor = [], None
        while True:
            page = self.client.get(path, params={**params, "limit": 500, **({"cursor": cursor} if cursor else {})})
            page.raise_for_status()
            body = page.json()
            items += body["items"]
            cursor = body["next_cursor"]
            if cursor is None:
                return items

    def sync(self, connection_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Pull the connection now and wait for its run to end; when a pull of it is already
        running (the start-up backfill), wait for that one instead."""
        answer = self.client.post(f"/api/v1/connections/{connection_id}/sync")
        if answer.status_code != 409:
            answer.raise_for_status()
        run_id = answer.json()["run_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.client.get("/api/v1/sync-runs", params={"connection_id": connection_id}).json()
            [run] = [r for r in runs if r["id"] == run_id]
            if run["status"] != "running":
                return run
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} of {connection_id} did not end in {timeout} s")

    def wait_for_inbox(self, timeout: float = 30.0, lane: str | None = "apply") -> None:
        """Until no delivery of the lane is pending (the in-process worker applied them all);
        lane None: of either lane (the fetch lane waits on the tool)."""
        engine = sa.create_engine(self.settings.database_url, poolclass=sa.NullPool)
        deadline = time.monotonic() + timeout
        query = sa.text(
            "SELECT count(*) FROM inbox_event WHERE status = 'pending'" + (" AND lane = :lane" if lane else "")
        ).bindparams(**({"lane": lane} if lane else {}))
        try:
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    pending = connection.execute(query).scalar_one()
                if pending == 0:
                    return
                time.sleep(0.1)
        finally:
            engine.dispose()
        raise AssertionError(f"{pending} deliveries still pending after {timeout} s")


@contextmanager
def running_hub(database_url: str, config: HubConfig, **settings: Any) -> Iterator[RunningHub]:
    hub_settings = Settings(database_url=database_url, bootstrap_token=ADMIN_TOKEN, **settings)
    with serving(create_app(hub_settings, config), lifespan="on") as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as client:
            yield RunningHub(url, hub_settings, client)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_delivery(event: str, payload: Any, secret: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(secret, body),
    }


def github_issue(number: int, repo: str = "acme/payments") -> dict[str, Any]:
    """A GitHub issue as an `issues` webhook carries it: id 70,000 + number, titled "Issue N"."""
    return {
        "id": 70_000 + number,
        "number": number,
        "title": f"Issue {number}",
        "state": "open",
        "body": None,
        "assignee": None,
        "labels": [],
        "html_url": f"https://github.com/{repo}/issues/{number}",
        "repository_url": f"https://api.github.com/repos/{repo}",
        "user": {"login": "adal", "id": 1000},
        "created_at": "2024-03-01T10:00:00Z",
        "updated_at": "2024-03-01T10:00:00Z",
        "closed_at": None,
    }


def jira_delivery(payload: Any, secret: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Atlassian-Webhook-Identifier": delivery,
        "X-Hub-Signature": sign(secret, body),
    }

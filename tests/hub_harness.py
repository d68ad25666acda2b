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

from api.app import create_app
from connectors.simulators.server import serving
from service.config import HubConfig
from service.settings import Settings

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

    def wait_for_inbox(self, timeout: float = 30.0) -> None:
        """Until no delivery is pending (the in-process worker applied them all)."""
        engine = sa.create_engine(self.settings.database_url, poolclass=sa.NullPool)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    pending = connection.execute(sa.text(
                        "SELECT count(*) FROM inbox_event WHERE status = 'pending'")).scalar_one()
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
    return body, {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                  "X-Hub-Signature-256": sign(secret, body)}


def jira_delivery(payload: Any, secret: str, delivery: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": delivery,
                  "X-Hub-Signature": sign(secret, body)}

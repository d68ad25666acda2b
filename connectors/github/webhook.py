"""GitHub webhook deliveries: signature check, body decoding, and what a delivery means."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import orjson

from opsync.connectors.github.records import issue_record, pull_record
from opsync.service.contract import Deletion, WebhookContent
from opsync.service.toolkit import header, verify_hmac_sha256


def verify_signature(secret: str | None, headers: Mapping[str, str], body: bytes) -> None:
    """Raise WebhookRejected unless X-Hub-Signature-256 is HMAC-SHA256(secret, body)."""
    verify_hmac_sha256(body, secret, headers, header_name="X-Hub-Signature-256", tool="GitHub")


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    return header(headers, "X-GitHub-Delivery") or "sha256:" + hashlib.sha256(body).hexdigest()


def decode_body(headers: Mapping[str, str], body: bytes) -> Any:
    """The JSON payload of a delivery, sent as application/json or as a form with payload=JSON.

    Raises ValueError when the body holds no JSON.
    """
    content_type = (header(headers, "Content-Type") or "application/json").lower()
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)  # UnicodeDecodeError is a ValueError
        if "payload" not in fields:
            raise ValueError("form-encoded GitHub delivery without a payload field")
        body = fields["payload"][0]
    return orjson.loads(body)  # orjson.JSONDecodeError is a ValueError


def parse(headers: Mapping[str, str], payload: Any, received_at: datetime) -> WebhookContent:
    event = header(headers, "X-GitHub-Event")
    if not isinstance(payload, dict):
        return WebhookContent(ignored_reason=f"{event} delivery body is not a JSON object")
    action = payload.get("action")
    if event == "issues":
        return _issues(action, payload, received_at)
    if event == "pull_request" and isinstance(payload.get("pull_request"), dict):
        return WebhookContent(upserts=[pull_record(payload["pull_request"])])
    if event == "ping":
        return WebhookContent(ignored_reason="ping: GitHub checks that the webhook is reachable")
    return WebhookContent(
        ignored_reason=f"event {event or '(no X-GitHub-Event header)'} {action or ''} is not synced".replace(
            "  ", " "
        ).strip()
    )


def _issues(action: str | None, payload: dict[str, Any], received_at: datetime) -> WebhookContent:
    issue = payload.get("issue")
    if not isinstance(issue, dict):
        return WebhookContent(ignored_reason=f"issues {action} delivery without an issue")
    if issue.get("pull_request") is not None:
        # The issue side of a PR; the PR's own id is not here, pull_request events carry it.
        return WebhookContent(
            ignored_reason=f"issues {action} for pull request #{issue.get('number')}: "
            "synced through pull_request events and pulls"
        )
    if action == "deleted":
        return WebhookContent(deletions=[Deletion("issue", str(issue["id"]), at=received_at, payload=issue)])
    if action == "transferred":
        # The issue left this repository; its new self (another id) is upserted if known.
        content = WebhookContent(deletions=[Deletion("issue", str(issue["id"]), at=received_at, payload=issue)])
        new_issue = (payload.get("changes") or {}).get("new_issue")
        if isinstance(new_issue, dict) and "id" in new_issue:
            content.upserts.append(issue_record(new_issue))
        return content
    return WebhookContent(upserts=[issue_record(issue)])

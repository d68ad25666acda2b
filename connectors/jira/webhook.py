"""Jira webhook deliveries: signature check and what a delivery means for the store.

Pure functions over headers and payloads, so every real payload can be tested offline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from opsync.service.contract import Deletion, RawRecord, WebhookContent
from opsync.service.toolkit import header, tool_time, verify_hmac_sha256

ISSUE_EVENTS = {"jira:issue_created", "jira:issue_updated"}
# Events about something attached to an issue: the issue in them is trimmed, so fetch it.
REFETCH_PREFIXES = ("comment_", "worklog_", "issuelink_", "attachment_")


def verify_signature(headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
    """X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)> (admin webhooks with a secret)."""
    verify_hmac_sha256(body, secret, headers, header_name="X-Hub-Signature", tool="Jira")


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """Jira's identifier is stable across its retries; without one, the body's hash is."""
    identifier = header(headers, "X-Atlassian-Webhook-Identifier")
    return identifier or "sha256:" + hashlib.sha256(body).hexdigest()


def issue_record(issue: dict[str, Any], fallback: datetime | None = None) -> RawRecord:
    """An issue payload as a RawRecord; its version is fields.updated, else fallback."""
    fields = issue.get("fields") if isinstance(issue.get("fields"), dict) else {}
    version = tool_time(fields.get("updated")) or fallback
    return RawRecord("issue", str(issue["id"]), issue, version)


def parse(payload: Any, received_at: datetime) -> WebhookContent:
    if not isinstance(payload, dict):
        return WebhookContent(ignored_reason="the body is not a JSON object")
    event = payload.get("webhookEvent")
    if not isinstance(event, str):
        return WebhookContent(ignored_reason="no webhookEvent: not a Jira webhook payload")
    issue = payload.get("issue")
    issue_id = issue.get("id") if isinstance(issue, dict) else None
    if issue_id is None or isinstance(issue_id, (dict, list, bool)) or str(issue_id) == "":
        return WebhookContent(ignored_reason=f"{event} carries no issue id")
    issue_id = str(issue_id)
    sent_at = tool_time(payload.get("timestamp")) or received_at
    if event in ISSUE_EVENTS:
        return WebhookContent(upserts=[issue_record(issue, sent_at)])
    if event == "jira:issue_deleted":
        return WebhookContent(deletions=[Deletion("issue", issue_id, sent_at, issue)])
    if event.startswith(REFETCH_PREFIXES):
        return WebhookContent(refetch=[("issue", issue_id)])
    return WebhookContent(ignored_reason=f"event {event} does not change issues")

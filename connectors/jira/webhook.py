"""Jira webhook deliveries: signature check and what a delivery means for the store.

Pure functions over headers and payloads, so every real payload can be tested offline.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opsync.service.contract import Deletion, RawRecord, WebhookContent, WebhookRejected

ISSUE_EVENTS = {"jira:issue_created", "jira:issue_updated"}
# Events about something attached to an issue: the issue in them is trimmed, so fetch it.
REFETCH_PREFIXES = ("comment_", "worklog_", "issuelink_", "attachment_")
JIRA_TIME = "%Y-%m-%dT%H:%M:%S.%f%z"


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def verify_signature(headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
    """X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>, compared in constant time."""
    if not secret:
        raise WebhookRejected(
            "this Jira connection has no webhook_secret; opsync accepts only signed "
            "deliveries: set a secret on the Jira webhook and on the connection"
        )
    signature = lower_keys(headers).get("x-hub-signature")
    if not signature:
        raise WebhookRejected(
            "missing X-Hub-Signature header: the Jira webhook has no secret set, or the request did not come from Jira"
        )
    algorithm, _, received = signature.partition("=")
    if algorithm.strip().lower() != "sha256" or not received:
        raise WebhookRejected(f"X-Hub-Signature must be 'sha256=<hex>', got {algorithm[:20]!r}=...")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # As bytes: compare_digest refuses str with characters beyond ASCII, which a header can hold.
    if not hmac.compare_digest(expected.encode(), received.strip().lower().encode()):
        raise WebhookRejected(
            "X-Hub-Signature does not match the body: the Jira webhook's secret "
            "differs from the connection's webhook_secret"
        )


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """Jira's identifier is stable across its retries; without one, the body's hash is."""
    identifier = lower_keys(headers).get("x-atlassian-webhook-identifier")
    return identifier or "sha256:" + hashlib.sha256(body).hexdigest()


def parse_time(value: Any) -> datetime | None:
    """A Jira timestamp ('2019-02-15T19:11:18.321-0800') as aware UTC, None if absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, JIRA_TIME).astimezone(UTC)
    except ValueError:
        return None


def epoch_ms(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def issue_record(issue: dict[str, Any], fallback: datetime | None = None) -> RawRecord:
    """An issue payload as a RawRecord; its version is fields.updated, else fallback."""
    fields = issue.get("fields") if isinstance(issue.get("fields"), dict) else {}
    version = parse_time(fields.get("updated")) or fallback
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
    sent_at = epoch_ms(payload.get("timestamp")) or received_at
    if event in ISSUE_EVENTS:
        return WebhookContent(upserts=[issue_record(issue, sent_at)])
    if event == "jira:issue_deleted":
        return WebhookContent(deletions=[Deletion("issue", issue_id, sent_at, issue)])
    if event.startswith(REFETCH_PREFIXES):
        return WebhookContent(refetch=[("issue", issue_id)])
    return WebhookContent(ignored_reason=f"event {event} does not change issues")

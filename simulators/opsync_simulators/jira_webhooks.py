"""How the Jira simulator sends its webhooks, as Jira Cloud does: one URL, the body names the
event (webhookEvent) and carries the issue in REST v2's shape, signed `X-Hub-Signature:
sha256=<hmac>` when the webhook has a secret.

Every delivery goes through the outbox (outbox.py), which may drop, repeat or hold it back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from opsync_simulators.jira_data import SimIssue
from opsync_simulators.jira_render import render_issue, render_user
from opsync_simulators.outbox import Outbox, Outgoing


@dataclass
class Delivery:
    """One webhook POST the sim made, as a test sees it."""

    identifier: str
    event: str
    issue_id: str
    body: bytes
    headers: dict[str, str]
    status_code: int | None = None
    error: str | None = None
    fault: str | None = None  # what the webhook faults did to it (outbox.Outbox), if anything


def webhook_body(
    sim: Any, event: str, event_type: str, issue: SimIssue, at: datetime, changelog: dict[str, Any] | None = None
) -> bytes:
    """What Jira POSTs about an issue: the event, the user who acted, the issue (v2)."""
    body: dict[str, Any] = {
        "timestamp": int(at.timestamp() * 1000),
        "webhookEvent": event,
        "issue_event_type_name": event_type,
        "user": render_user(sim.people[0], sim.site_url),
        "issue": render_issue(issue, sim, "2", sim.site_url),  # webhooks carry v2
    }
    if changelog is not None:
        body["changelog"] = changelog
    return json.dumps(body).encode()


class WebhookSender:
    """Sends to the URL each call names (the sim's webhook_url, which a test may change), and
    records each delivery; nothing is sent, or recorded, while that URL is None."""

    def __init__(self, secret: str | None) -> None:
        """secret None: deliveries go unsigned."""
        self.secret = secret
        self._lock = threading.Lock()
        self.outbox = Outbox(self._signed)
        self.deliveries: list[Delivery] = []

    def send(self, url: str | None, event: str, body: bytes, issue_id: int) -> None:
        """Deliver one event about an issue to url, through the outbox."""
        if url is None:
            return
        message = self._signed(Outgoing(event, body, {}, {"issue_id": str(issue_id)}))
        for step, fault in self.outbox.submit(message):
            self._post(url, step, fault)

    def flush(self, url: str | None) -> None:
        """Send the deliveries held back for reordering to url now."""
        for message, fault in self.outbox.flush():
            self._post(url, message, fault)

    def _signed(self, message: Outgoing) -> Outgoing:
        """The delivery's headers, with a new identifier and signed afresh (as a retry is)."""
        headers = {
            "Content-Type": "application/json",
            "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
            "X-Atlassian-Webhook-Flow": "Primary",
            "X-Atlassian-Webhook-Retry": "0",
            "User-Agent": "Atlassian Webhook HTTP Client",
        }
        if self.secret:
            digest = hmac.new(self.secret.encode(), message.body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        return Outgoing(message.event, message.body, headers, message.about)

    def _post(self, url: str | None, message: Outgoing, fault: str | None) -> None:
        headers = message.headers
        delivery = Delivery(
            headers["X-Atlassian-Webhook-Identifier"],
            message.event,
            message.about["issue_id"],
            message.body,
            headers,
            fault=fault,
        )
        if fault == "dropped":
            delivery.error = "dropped by the simulator's webhook faults"
        elif url is not None:
            try:
                delivery.status_code = httpx.post(url, content=message.body, headers=headers, timeout=10).status_code
            except httpx.HTTPError as error:
                delivery.error = repr(error)
        with self._lock:
            self.deliveries.append(delivery)

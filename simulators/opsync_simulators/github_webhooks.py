"""How the GitHub simulator sends its webhooks, as an organisation webhook does: the event in
X-GitHub-Event, a delivery id in X-GitHub-Delivery, the body signed `X-Hub-Signature-256:
sha256=<hmac>` (and the legacy sha1 X-Hub-Signature) when the hook has a secret.

Every delivery goes through the outbox (outbox.py), which may drop, repeat or hold it back, and
is recorded whether or not there is a URL to POST it to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import uuid
from typing import Any

import httpx

from opsync_simulators.github_data import ORG_ID
from opsync_simulators.outbox import Outbox, Outgoing

HOOK_ID = 424242


class WebhookSender:
    """Sends to the URL each call names (the sim's webhook_url, which a test may change), and
    records each delivery; while that URL is None, deliveries are recorded, not sent."""

    def __init__(self, secret: str | None) -> None:
        """secret None: deliveries go unsigned."""
        self.secret = secret
        self._lock = threading.Lock()
        self.outbox = Outbox(self._signed)
        # each: event, action, delivery (its id), headers, body, status, error, fault
        self.deliveries: list[dict[str, Any]] = []
        self._client: httpx.Client | None = None

    def send(self, url: str | None, event: str, payload: dict[str, Any]) -> None:
        """Hand one delivery to the outbox and send what it says to url (see outbox.Outbox)."""
        body = json.dumps(payload).encode()
        message = Outgoing(event, body, self.signed_headers(event, body), {"action": payload.get("action")})
        for step, fault in self.outbox.submit(message):
            self._post(url, step, fault)

    def flush(self, url: str | None) -> None:
        """Send the deliveries held back for reordering to url now."""
        for message, fault in self.outbox.flush():
            self._post(url, message, fault)

    def signed_headers(self, event: str, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.UUID(int=random.getrandbits(128), version=4)),
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": "organization",
            "X-GitHub-Hook-Installation-Target-ID": str(ORG_ID),
            "User-Agent": "GitHub-Hookshot/4d63832",
        }
        if self.secret:
            key = self.secret.encode()
            headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
        return headers

    def _signed(self, message: Outgoing) -> Outgoing:
        """A delivery sent again under a new delivery id, signed afresh."""
        return Outgoing(message.event, message.body, self.signed_headers(message.event, message.body), message.about)

    def _post(self, url: str | None, message: Outgoing, fault: str | None) -> None:
        """POST one delivery to url (if any, and unless dropped) and record how it went."""
        headers = message.headers
        record: dict[str, Any] = {
            "event": message.event,
            "action": message.about.get("action"),
            "delivery": headers["X-GitHub-Delivery"],
            "headers": headers,
            "body": message.body,
            "status": None,
            "error": None,
            "fault": fault,
        }
        if fault == "dropped":
            record["error"] = "dropped by the simulator's webhook faults"
        elif url:
            try:
                record["status"] = self._hook_client().post(url, content=message.body, headers=headers).status_code
            except httpx.HTTPError as error:
                record["error"] = f"{type(error).__name__}: {error}"
        with self._lock:
            self.deliveries.append(record)

    def _hook_client(self) -> httpx.Client:
        # One client for all deliveries: building one per request costs ~0.1 s (TLS setup).
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=10)
            return self._client

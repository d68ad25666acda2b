"""How the Confluence simulator sends its webhooks, the two ways Confluence does.

- Cloud, through a Connect app ("connect"): the body does not name the event; each event is
  registered at its own URL, here {url}/{event} (or {url}?event={event}), where url is the app's
  base URL. The request carries `Authorization: JWT <token>`, HS256 with the app's shared secret,
  issued by the installation's client key, its qsh hashing the request relative to that base URL.
- Data Center ("dc"): one URL, the body names the event, signed `X-Hub-Signature: sha256=<hmac>`.

Every delivery goes through the outbox (outbox.py), which may drop, repeat or hold it back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from opsync_simulators.outbox import Outbox, Outgoing

JWT_LIFETIME = timedelta(minutes=3)
MODES = ("connect", "dc")


@dataclass
class Delivery:
    """One webhook POST the sim made, as a test sees it."""

    event: str
    page_id: str
    url: str
    body: bytes
    headers: dict[str, str]
    status_code: int | None = None
    error: str | None = None
    fault: str | None = None  # what the webhook faults did to it (outbox.Outbox), if anything


@dataclass
class WebhookTarget:
    """Where and how webhooks go. url None: nowhere (nothing is sent)."""

    url: str | None = None
    mode: str = "connect"
    secret: str | None = None  # the Connect app's shared secret, or the Data Center webhook's
    client_key: str = "a1b2c3d4-sim-confluence-client"  # the installation's key: the JWT's iss
    event_in_query: bool = False  # Connect: name the event as ?event= rather than /{event}

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"webhook mode {self.mode!r} is not one of {', '.join(MODES)}")

    def address(self, event: str) -> tuple[str, str, str]:
        """(URL to post to, its path relative to the app's base URL, its query) for an event."""
        assert self.url is not None
        base = self.url.rstrip("/")
        if self.mode == "dc":
            return base, "/", ""
        if self.event_in_query:
            return f"{base}?event={event}", "/", f"event={event}"
        return f"{base}/{event}", f"/{event}", ""


class WebhookSender:
    def __init__(self, target: WebhookTarget, clock: Callable[[], datetime]) -> None:
        self.target = target
        self._clock = clock
        self._lock = threading.Lock()
        self.outbox = Outbox(self._signed)
        self.deliveries: list[Delivery] = []

    def send(self, event: str, body: dict[str, Any], page_id: str) -> None:
        """Deliver one event about a page (Data Center's body names the event too)."""
        if self.target.url is None:
            return
        if self.target.mode == "dc":
            body = {"event": event, **body}
        message = Outgoing(event, json.dumps(body).encode(), {}, {"page_id": page_id})
        for step, fault in self.outbox.submit(self._signed(message)):
            self._post(step, fault)

    def flush(self) -> None:
        """Send the deliveries held back for reordering now."""
        for message, fault in self.outbox.flush():
            self._post(message, fault)

    def _signed(self, message: Outgoing) -> Outgoing:
        """The delivery's headers, signed afresh (a tool's retry or replay is signed again)."""
        target = self.target
        headers = {"Content-Type": "application/json", "User-Agent": "Atlassian HttpClient 3.0.4"}
        url, path, query = target.address(message.event)
        if target.mode == "dc":
            headers["X-Atlassian-Webhook-Identifier"] = str(uuid.uuid4())
            if target.secret:
                digest = hmac.new(target.secret.encode(), message.body, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature"] = f"sha256={digest}"
        elif target.secret:
            token = connect_jwt(target.secret, target.client_key, "POST", path, query, self._clock())
            headers["Authorization"] = f"JWT {token}"
        return Outgoing(message.event, message.body, headers, {**message.about, "url": url})

    def _post(self, message: Outgoing, fault: str | None) -> None:
        delivery = Delivery(
            message.event, message.about["page_id"], message.about["url"], message.body, message.headers, fault=fault
        )
        if fault == "dropped":
            delivery.error = "dropped by the simulator's webhook faults"
        else:
            try:
                answer = httpx.post(delivery.url, content=message.body, headers=message.headers, timeout=10)
                delivery.status_code = answer.status_code
            except httpx.HTTPError as error:
                delivery.error = repr(error)
        with self._lock:
            self.deliveries.append(delivery)


def connect_jwt(secret: str, issuer: str, method: str, path: str, query: str, at: datetime) -> str:
    """An Atlassian Connect JWT (HS256) for a request: iss, iat, exp and qsh, the SHA-256 of
    `METHOD&path&query` (the simulator only signs queries already in canonical order)."""
    qsh = hashlib.sha256(f"{method.upper()}&{path}&{query}".encode()).hexdigest()
    issued = int(at.timestamp())
    claims = {"iss": issuer, "iat": issued, "exp": issued + int(JWT_LIFETIME.total_seconds()), "qsh": qsh}

    def segment(value: Any) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{segment(signature)}"

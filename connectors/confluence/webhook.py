"""Confluence webhook deliveries: who signed them, which event they are, what they mean.

Two senders, told apart by their signature:
- Confluence Cloud through a Connect app: `Authorization: JWT <token>`, HS256 with the app's
  shared secret; its qsh claim hashes the request (method, the path after the app's base URL,
  the query). The body does not name the event: the URL it was registered at does, as the last
  path segment (.../{connection}/page_updated) or as ?event=page_updated.
- Confluence Data Center: `X-Hub-Signature: sha256=<HMAC of the body>`, the event in the body.

Pages events carry ids and versions only, so they ask for the page to be fetched. A trashed page
is gone from the hub (fetch_one answers None for it, as pulls and listings leave it out), a
purged one (page_removed) is a deletion at once. Blog posts, comments and other content are not
synced and are ignored with a reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote

import jwt

from opsync.service.contract import Deletion, WebhookContent, WebhookRejected
from opsync.service.toolkit import header, tool_time, verify_hmac_sha256

CLOCK_SKEW_SECONDS = 60  # a Connect JWT lives 3 minutes; allow this much disagreement between clocks
REFETCH = {"page_created", "page_updated", "page_restored", "page_moved", "page_trashed"}
SYNCED = sorted(REFETCH | {"page_removed"})
NOT_SYNCED = {  # prefix -> what it is about, for the reason a delivery is ignored
    "blog_": "blog posts",
    "blogpost_": "blog posts",
    "comment_": "comments",
    "attachment_": "attachments",
    "content_": "content properties and other content",
    "label_": "labels (read with the page at its next version)",
    "space_": "spaces",
}


def verify(headers: Mapping[str, str], body: bytes, secret: str | None, client_key: str | None) -> None:
    """Raise WebhookRejected unless the delivery carries a Connect JWT made with secret for
    this very request, or a Data Center X-Hub-Signature of the body made with secret."""
    token = _jwt(headers)
    if token is not None:
        verify_connect_jwt(headers, token, secret, client_key)
    elif header(headers, "X-Hub-Signature") is not None:
        verify_hmac_sha256(body, secret, headers, header_name="X-Hub-Signature", tool="Confluence")
    else:
        raise WebhookRejected(
            "the delivery has neither an `Authorization: JWT` header (Confluence Cloud, through a Connect"
            " app) nor an X-Hub-Signature (Confluence Data Center with a secret): it did not come from"
            " Confluence, or the webhook was set up without a secret"
        )


def verify_connect_jwt(headers: Mapping[str, str], token: str, secret: str | None, client_key: str | None) -> None:
    if not secret:
        raise WebhookRejected(
            "this Confluence connection has no webhook_secret: set it to the Connect app's shared secret"
            " (from the app's installed callback)"
        )
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["iss", "iat", "exp", "qsh"], "verify_aud": False},
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise WebhookRejected("the Connect JWT has expired: a replayed or long-delayed delivery") from None
    except jwt.InvalidSignatureError:
        raise WebhookRejected(
            "the Connect JWT is not signed with the connection's webhook_secret: set it to the shared"
            " secret of the app's current installation"
        ) from None
    except jwt.PyJWTError as error:
        raise WebhookRejected(f"the Authorization header holds no valid Connect JWT ({error})") from None
    if client_key and claims.get("iss") != client_key:
        raise WebhookRejected(
            f"the Connect JWT was issued by {str(claims.get('iss'))[:80]!r}, not the connection's connect_client_key"
        )
    expected = query_string_hash(
        header(headers, ":method") or "POST", header(headers, ":path") or "/", header(headers, ":query") or ""
    )
    if not hmac.compare_digest(str(claims.get("qsh")).encode(), expected.encode()):
        raise WebhookRejected(
            "the Connect JWT was signed for another request (its qsh does not match this method, path and"
            " query): check that the app's webhook URLs end in /{event} under this connection's webhook URL"
        )


def query_string_hash(method: str, path: str, query: str) -> str:
    """Atlassian Connect's qsh: hex SHA-256 of `METHOD&path&query`, the path relative to the app's
    base URL, the query's parameters (but jwt) sorted and percent-encoded, repeated ones joined by ','."""
    canonical_path = "/" + path.strip("/") if path.strip("/") else "/"
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "jwt":
            values.setdefault(_encode(name), []).append(_encode(value))
    canonical_query = "&".join(f"{name}={','.join(sorted(values[name]))}" for name in sorted(values))
    request = f"{method.upper()}&{canonical_path.replace('&', '%26')}&{canonical_query}"
    return hashlib.sha256(request.encode()).hexdigest()


def event_name(headers: Mapping[str, str], payload: Any) -> str | None:
    """The event: the URL's last path segment, else its `event` parameter, else the body's (Data Center)."""
    path = (header(headers, ":path") or "").strip("/")
    if path:
        return path.rsplit("/", 1)[-1]
    named = dict(parse_qsl(header(headers, ":query") or "")).get("event")
    if named:
        return named
    event = payload.get("event") if isinstance(payload, dict) else None
    return event if isinstance(event, str) and event else None


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    """Data Center's webhook identifier; Connect sends none, so its event and body, which stay the
    same across its retries (the JWT does not)."""
    identifier = header(headers, "X-Atlassian-Webhook-Identifier")
    if identifier:
        return identifier
    return "sha256:" + hashlib.sha256((event_name(headers, None) or "").encode() + b"\n" + body).hexdigest()


def parse(headers: Mapping[str, str], payload: Any, received_at: datetime) -> WebhookContent:
    event = event_name(headers, payload)
    if event is None:
        return WebhookContent(
            ignored_reason="the delivery names no event: register each Connect webhook at this connection's"
            " webhook URL followed by /{event} (e.g. /page_updated)"
        )
    if not isinstance(payload, dict):
        return WebhookContent(ignored_reason=f"{event}: the body is not a JSON object")
    for prefix, what in NOT_SYNCED.items():
        if event.startswith(prefix):
            return WebhookContent(ignored_reason=f"{event}: {what} are not synced, only pages")
    if event not in SYNCED:
        return WebhookContent(ignored_reason=f"event {event} is not synced (pages are: {', '.join(SYNCED)})")
    page = payload.get("page")
    page_id = _page_id(page)
    if page_id is None:
        return WebhookContent(ignored_reason=f"{event} carries no page id")
    if event == "page_removed":  # purged: it will not come back
        at = tool_time(payload.get("timestamp")) or received_at
        return WebhookContent(deletions=[Deletion("page", page_id, at, page)])
    return WebhookContent(refetch=[("page", page_id)])


def signed_at(payload: Any) -> datetime | None:
    return tool_time(payload.get("timestamp")) if isinstance(payload, dict) else None


def _page_id(page: Any) -> str | None:
    if not isinstance(page, dict):
        return None
    value = page.get("idAsString") or page.get("id")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    return text if text.isdigit() else None


def _jwt(headers: Mapping[str, str]) -> str | None:
    """The Connect JWT, from the Authorization header (or a jwt query parameter)."""
    scheme, _, token = (header(headers, "Authorization") or "").strip().partition(" ")
    if scheme.upper() == "JWT" and token.strip():
        return token.strip()
    return dict(parse_qsl(header(headers, ":query") or "")).get("jwt") or None


def _encode(text: str) -> str:
    return quote(text, safe="-._~")

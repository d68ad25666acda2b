"""Confluence webhook deliveries: Connect JWTs and Data Center signatures, delivery ids, and what
each real payload means, with the event named where Confluence names it (the URL, or the body)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi import FastAPI, Request

from opsync.connectors.confluence.connector import ConfluenceConnector, ConfluenceSettings
from opsync.connectors.confluence.webhook import query_string_hash
from opsync.service.contract import WebhookRejected
from opsync_simulators.confluence import ConfluenceSim
from opsync_simulators.confluence_webhooks import WebhookTarget
from opsync_simulators.server import serving

RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = "the-connect-apps-shared-secret-0123456789"
CLIENT_KEY = "a1b2c3d4-acme-confluence"
BASE = "/api/v1/webhooks/confluence-test"  # the connection's webhook URL: the Connect app's base URL
REFETCHED = {"page_created", "page_updated", "page_restored", "page_trashed"}


def confluence(secret: str | None = SECRET, client_key: str | None = None) -> ConfluenceConnector:
    return ConfluenceConnector(
        ConfluenceSettings(
            id="confluence-test",
            base_url="https://acme.atlassian.net",
            email="ops@acme.example",
            token="t",
            webhook_secret=secret,
            connect_client_key=client_key,
        )
    )


def token(path: str, query: str = "", secret: str = SECRET, issued: float | None = None, **claims: Any) -> str:
    issued = time.time() if issued is None else issued
    body = {
        "iss": CLIENT_KEY,
        "iat": int(issued),
        "exp": int(issued) + 180,
        "qsh": query_string_hash("POST", path, query),
        **claims,
    }
    return jwt.encode(body, secret, algorithm="HS256")


def connect(event: str | None, jwt_token: str | None = None, query: str = "") -> dict[str, str]:
    """A Connect delivery's headers as the hub hands them over: lower case, and pseudo-headers."""
    path = f"/{event}" if event else "/"
    headers = {":method": "POST", ":path": path, ":query": query, "content-type": "application/json"}
    headers["authorization"] = f"JWT {jwt_token or token(path, query)}"
    return headers


def fixtures(shared: Path) -> list[Path]:
    found = sorted((shared / "confluence" / "webhooks").rglob("*.json"))
    assert found, "no Confluence webhook fixtures"
    return found


def event_of(path: Path) -> str:
    """The event a capture was registered for, from its file name (page_updated.webhooks-md.json,
    content_created_property_subject.json): the name up to the first dot, the known event prefix."""
    stem = path.name.split(".")[0]
    for event in ("content_created", "content_updated", "content_removed"):
        if stem.startswith(event):
            return event
    return stem


# --- every real payload --------------------------------------------------------------------


def test_every_real_confluence_payload_parses_to_what_its_event_means(shared_fixtures: Path) -> None:
    for path in fixtures(shared_fixtures):
        payload = json.loads(path.read_text())
        event = event_of(path)
        content = confluence().parse_webhook(connect(event), payload, RECEIVED_AT)
        if event in REFETCHED:
            assert content.refetch == [("page", str(payload["page"]["id"]))], path.name
            assert not (content.upserts or content.deletions or content.ignored_reason), path.name
        elif event == "page_removed":
            [deletion] = content.deletions
            assert deletion.external_id == str(payload["page"]["id"]), path.name
            assert deletion.at == datetime.fromtimestamp(payload["timestamp"] / 1000, tz=UTC)
            assert not content.refetch
        else:
            assert content.ignored_reason and not (content.upserts or content.deletions or content.refetch), path.name


def test_real_blog_and_content_property_events_are_ignored_saying_why(shared_fixtures: Path) -> None:
    hooks = shared_fixtures / "confluence/webhooks/taxonomies-for-confluence"
    blog = confluence().parse_webhook(
        connect("blog_created"), json.loads((hooks / "blog_created.json").read_text()), RECEIVED_AT
    )
    prop = json.loads((hooks / "content_created_property_subject.json").read_text())
    content = confluence().parse_webhook(connect("content_created"), prop, RECEIVED_AT)
    assert blog.ignored_reason == "blog_created: blog posts are not synced, only pages"
    assert "content properties" in (content.ignored_reason or "")


def test_the_event_may_come_as_a_query_parameter_or_in_a_data_center_body() -> None:
    page = {"id": 294914, "title": "Retail Banking"}
    by_query = confluence().parse_webhook(
        {":path": "/", ":query": "event=page_updated&user_id=x"}, {"page": page}, RECEIVED_AT
    )
    in_body = confluence().parse_webhook({":path": "/"}, {"event": "page_updated", "page": page}, RECEIVED_AT)
    assert by_query.refetch == in_body.refetch == [("page", "294914")]


@pytest.mark.parametrize(
    ("headers", "payload", "reason"),
    [
        ({":path": "/"}, {"page": {"id": 1}}, "names no event"),
        ({":path": "/page_updated"}, ["not", "an", "object"], "not a JSON object"),
        ({":path": "/page_updated"}, {"page": {"id": "abc"}}, "no page id"),
        ({":path": "/page_updated"}, {"blog": {"id": 1}}, "no page id"),
        ({":path": "/comment_created"}, {"comment": {"id": 1}}, "comments are not synced"),
        ({":path": "/space_updated"}, {"space": {"key": "X"}}, "spaces are not synced"),
        ({":path": "/page_liked"}, {"page": {"id": 1}}, "event page_liked is not synced"),
    ],
)
def test_deliveries_that_change_no_page_are_ignored_with_a_reason(
    headers: dict[str, str], payload: Any, reason: str
) -> None:
    content = confluence().parse_webhook(headers, payload, RECEIVED_AT)
    assert reason in (content.ignored_reason or "")
    assert not (content.upserts or content.deletions or content.refetch)


def test_id_as_string_is_preferred_to_the_numeric_id() -> None:
    payload = {"page": {"id": 1234567890123456789, "idAsString": "1234567890123456789"}}
    assert confluence().parse_webhook(connect("page_moved"), payload, RECEIVED_AT).refetch == [
        ("page", "1234567890123456789")
    ]


# --- Connect JWT ---------------------------------------------------------------------------


def test_a_connect_jwt_for_this_request_is_accepted() -> None:
    confluence(client_key=CLIENT_KEY).verify_webhook(connect("page_updated"), b"{}")


def test_a_connect_jwt_in_the_query_is_accepted_and_left_out_of_its_own_hash() -> None:
    signed = token("/page_updated", "lang=en")
    headers = {":method": "POST", ":path": "/page_updated", ":query": f"lang=en&jwt={signed}"}
    confluence().verify_webhook(headers, b"{}")


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({":path": "/page_updated"}, "neither"),
        (connect("page_updated", token("/page_updated", secret="another-secret-entirely-0123456789")), "shared secret"),
        (connect("page_updated", token("/page_updated", issued=time.time() - 3600)), "expired"),
        (connect("page_updated", token("/page_removed")), "another request"),
        (connect("page_updated", token("/page_updated", query="event=page_updated")), "another request"),
        ({":path": "/page_updated", "authorization": "JWT not.a.jwt"}, "no valid Connect JWT"),
        (connect("page_updated", jwt.encode({"iss": CLIENT_KEY}, SECRET, algorithm="HS256")), "no valid Connect JWT"),
    ],
)
def test_a_delivery_without_a_valid_jwt_for_this_request_is_rejected(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookRejected, match=message):
        confluence().verify_webhook(headers, b"{}")


def test_a_jwt_signed_with_none_is_rejected() -> None:
    unsigned = jwt.encode({"iss": CLIENT_KEY, "iat": 1, "exp": 2**31, "qsh": "x"}, None, algorithm="none")
    with pytest.raises(WebhookRejected):
        confluence().verify_webhook(connect("page_updated", unsigned), b"{}")


def test_a_jwt_from_another_installation_is_rejected_when_the_client_key_is_set() -> None:
    headers = connect("page_updated", token("/page_updated", iss="someone-else"))
    confluence().verify_webhook(headers, b"{}")  # no client key configured: the secret suffices
    with pytest.raises(WebhookRejected, match="connect_client_key"):
        confluence(client_key=CLIENT_KEY).verify_webhook(headers, b"{}")


def test_a_connection_without_a_secret_rejects_every_delivery() -> None:
    with pytest.raises(WebhookRejected, match="webhook_secret"):
        confluence(secret=None).verify_webhook(connect("page_updated"), b"{}")
    with pytest.raises(WebhookRejected, match="webhook_secret"):
        confluence(secret=None).verify_webhook({"x-hub-signature": "sha256=00"}, b"{}")


def test_query_string_hash_matches_a_real_connect_jwt() -> None:
    # A qsh Jira put into a real Connect JWT (published in a public gist), for GET /addon/ with this query.
    query = (
        "lic=none&tz=Europe%2FMoscow&cp=%2Fjira&user_key=admin&loc=en-US&user_id=admin&jwt=eyJ0eXAi"
        "&xdm_e=http%3A%2F%2Flocalhost%3A2990&xdm_c=channel-servlet-click-me&xdm_p=1"
    )
    assert query_string_hash("get", "/addon/", query) == (
        "3a6ff1b66f60eb275d0e4cb6be4261d5d3b0216b91c58dc6524509227ef346de"
    )


def test_query_string_hash_sorts_encodes_and_joins_repeated_values() -> None:
    expected = hashlib.sha256(b"POST&/page_updated&a=x%20y&b=1,2&c=%2C").hexdigest()
    assert query_string_hash("POST", "page_updated/", "c=%2C&b=2&a=x+y&b=1") == expected
    assert query_string_hash("POST", "", "") == hashlib.sha256(b"POST&/&").hexdigest()


# --- Data Center HMAC ----------------------------------------------------------------------


def test_a_data_center_delivery_signed_with_the_secret_is_accepted_and_others_rejected() -> None:
    body = b'{"event": "page_updated", "page": {"id": 1}}'
    good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    confluence().verify_webhook({":path": "/", "x-hub-signature": f"sha256={good}"}, body)
    with pytest.raises(WebhookRejected, match="secret"):
        confluence().verify_webhook({":path": "/", "x-hub-signature": f"sha256={good}"}, body + b" ")


# --- delivery ids --------------------------------------------------------------------------


def test_delivery_id_is_data_centers_identifier_else_the_event_and_body() -> None:
    body = b'{"page": {"id": 1}}'
    assert confluence().delivery_id({"x-atlassian-webhook-identifier": "abc-1"}, body) == "abc-1"
    first = confluence().delivery_id(connect("page_updated"), body)
    retried = confluence().delivery_id(connect("page_updated", token("/page_updated", issued=time.time() + 5)), body)
    other_event = confluence().delivery_id(connect("page_trashed"), body)
    assert first == retried and first != other_event


def test_delivery_headers_keep_the_event_and_never_the_authorization() -> None:
    kept = ConfluenceConnector.delivery_headers
    assert {":path", ":query"} <= set(kept) and "authorization" not in kept


# --- from the simulator, over HTTP ---------------------------------------------------------


def received_from(sim_changes: Any, mode: str = "connect", event_in_query: bool = False) -> list[dict[str, Any]]:
    """Deliveries the simulator posts to a hub-like receiver, as the hub hands them to connectors."""
    received: list[dict[str, Any]] = []
    app = FastAPI()

    async def keep(request: Request) -> dict[str, bool]:
        path = request.url.path.removeprefix(BASE) or "/"
        pseudo = {":method": request.method, ":path": path, ":query": request.url.query}
        received.append({"headers": {**dict(request.headers), **pseudo}, "body": await request.body()})
        return {"ok": True}

    app.add_api_route(BASE, keep, methods=["POST"])
    app.add_api_route(BASE + "/{event}", keep, methods=["POST"])
    with serving(app) as url:
        target = WebhookTarget(
            url=url + BASE,
            mode=mode,
            secret=SECRET,
            client_key=CLIENT_KEY,
            event_in_query=event_in_query,
        )
        sim_changes(ConfluenceSim(pages=10, webhooks=target))
    return received


@pytest.mark.parametrize(("mode", "event_in_query"), [("connect", False), ("connect", True), ("dc", False)])
def test_simulator_deliveries_verify_and_parse_to_the_page_changed(mode: str, event_in_query: bool) -> None:
    changed: dict[str, str] = {}

    def change(sim: ConfluenceSim) -> None:
        page_id, purged = sorted(sim.ids())[3:5]
        sim.update_page(page_id, title="Ship it")
        sim.trash_page(page_id)
        sim.purge_page(purged)
        changed.update(updated=page_id, purged=purged)

    deliveries = received_from(change, mode, event_in_query)
    connector = confluence(client_key=CLIENT_KEY)
    contents = []
    for delivery in deliveries:
        connector.verify_webhook(delivery["headers"], delivery["body"])
        payload = connector.decode_webhook(delivery["headers"], delivery["body"])
        contents.append(connector.parse_webhook(delivery["headers"], payload, RECEIVED_AT))
    assert [content.refetch for content in contents[:2]] == [[("page", changed["updated"])]] * 2
    assert [deletion.external_id for deletion in contents[2].deletions] == [changed["purged"]]
    assert connector.signed_at({}, json.loads(deliveries[0]["body"])) is not None


def test_a_simulated_delivery_replayed_to_another_event_url_is_rejected() -> None:
    [delivery] = received_from(lambda sim: sim.update_page(sorted(sim.ids())[0], title="x"))
    moved = {**delivery["headers"], ":path": "/page_removed"}
    with pytest.raises(WebhookRejected, match="another request"):
        confluence().verify_webhook(moved, delivery["body"])

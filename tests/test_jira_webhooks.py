"""Jira webhook deliveries: signatures, delivery ids, and what each real payload means."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI, Request

from opsync.connectors.jira.connector import JiraConnector, JiraSettings
from opsync.service.contract import WebhookRejected
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

RECEIVED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def jira(secret: str | None = "s3cret") -> JiraConnector:
    return JiraConnector(
        JiraSettings(
            id="jira-test",
            kind="jira",
            base_url="https://acme.atlassian.net",
            email="ops@acme.example",
            token="t",
            projects=["PAY"],
            webhook_secret=secret,
        )
    )


def signed(body: bytes, secret: str = "s3cret") -> dict[str, str]:
    return {"X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def fixtures(shared: Path) -> list[Path]:
    found = sorted((shared / "jira" / "webhooks").rglob("*.json"))
    assert found, "no Jira webhook fixtures"
    return found


def test_every_real_jira_payload_parses(shared_fixtures: Path) -> None:
    for path in fixtures(shared_fixtures):
        payload = json.loads(path.read_text())
        content = jira().parse_webhook({}, payload, RECEIVED_AT)
        outcomes = len(content.upserts) + len(content.deletions) + len(content.refetch)
        assert outcomes == 1 or content.ignored_reason, path.name


def test_real_issue_events_become_upserts_of_the_issue(shared_fixtures: Path) -> None:
    for path in fixtures(shared_fixtures):
        payload = json.loads(path.read_text())
        if payload.get("webhookEvent") in ("jira:issue_created", "jira:issue_updated"):
            [record] = jira().parse_webhook({}, payload, RECEIVED_AT).upserts
            assert record.external_id == str(payload["issue"]["id"]), path.name
            assert record.payload is payload["issue"]
            assert record.version is not None and record.version.tzinfo is not None


def test_issue_version_is_fields_updated_in_utc(shared_fixtures: Path) -> None:
    payload = json.loads((shared_fixtures / "jira/webhooks/mattermost/issue-updated-assigned.json").read_text())
    [record] = jira().parse_webhook({}, payload, RECEIVED_AT).upserts
    assert record.version == datetime(2019, 2, 16, 3, 18, 1, 707000, tzinfo=UTC)


def test_real_deleted_event_is_a_deletion_at_its_timestamp(shared_fixtures: Path) -> None:
    payload = json.loads((shared_fixtures / "jira/webhooks/zulip/deleted_v2.json").read_text())
    content = jira().parse_webhook({}, payload, RECEIVED_AT)
    [deletion] = content.deletions
    assert deletion.external_id == "10400"
    assert deletion.at == datetime.fromtimestamp(payload["timestamp"] / 1000, tz=UTC)
    assert not content.upserts


def test_cloud_comment_event_asks_to_refetch_its_issue(shared_fixtures: Path) -> None:
    payload = json.loads((shared_fixtures / "jira/webhooks/mattermost/cloud-comment-created.json").read_text())
    content = jira().parse_webhook({}, payload, RECEIVED_AT)
    assert content.refetch == [("issue", "10040")]


def test_server_comment_event_without_issue_is_ignored_with_a_reason(shared_fixtures: Path) -> None:
    payload = json.loads((shared_fixtures / "jira/webhooks/mattermost/server-comment-created.json").read_text())
    content = jira().parse_webhook({}, payload, RECEIVED_AT)
    assert "no issue id" in content.ignored_reason


def test_issue_without_updated_takes_the_delivery_timestamp() -> None:
    payload = {
        "webhookEvent": "jira:issue_updated",
        "timestamp": 1550287081752,
        "issue": {"id": "10040", "key": "TES-41", "fields": {"summary": "x", "assignee": None}},
    }
    [record] = jira().parse_webhook({}, payload, RECEIVED_AT).upserts
    assert record.version == datetime(2019, 2, 16, 3, 18, 1, 752000, tzinfo=UTC)


@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        "text",
        {},
        {"webhookEvent": "jira:issue_updated"},
        {"webhookEvent": "jira:issue_updated", "issue": {}},
        {"webhookEvent": "jira:issue_updated", "issue": {"id": None}},
        {"webhookEvent": "jira:issue_deleted", "issue": "10040"},
        {"webhookEvent": "project_created", "issue": {"id": "1"}},
    ],
)
def test_unexpected_payload_is_ignored_with_a_reason(payload: object) -> None:
    content = jira().parse_webhook({}, payload, RECEIVED_AT)
    assert content.ignored_reason
    assert not (content.upserts or content.deletions or content.refetch)


def test_correct_signature_is_accepted_whatever_the_header_case() -> None:
    body = b'{"webhookEvent": "jira:issue_updated"}'
    header = signed(body)["X-Hub-Signature"]
    jira().verify_webhook({"x-hub-signature": header}, body)
    jira().verify_webhook({"X-HUB-SIGNATURE": header}, body)


def test_github_docs_test_vector_verifies() -> None:
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    jira("It's a Secret to Everybody").verify_webhook({"X-Hub-Signature": f"sha256={expected}"}, b"Hello, World!")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature": "sha256=00"},
        {"X-Hub-Signature": "sha1=abc"},
        {"X-Hub-Signature": "sha256="},
    ],
)
def test_missing_or_wrong_signature_is_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected):
        jira().verify_webhook(headers, b"{}")


def test_signature_made_with_another_secret_is_rejected() -> None:
    body = b"{}"
    with pytest.raises(WebhookRejected, match="secret"):
        jira().verify_webhook(signed(body, "other"), body)


def test_connection_without_secret_rejects_every_delivery() -> None:
    body = b"{}"
    with pytest.raises(WebhookRejected, match="webhook_secret"):
        jira(secret=None).verify_webhook(signed(body), body)


def test_delivery_id_is_jiras_identifier_else_a_hash_of_the_body() -> None:
    assert jira().delivery_id({"x-atlassian-webhook-identifier": "abc-123"}, b"{}") == "abc-123"
    assert jira().delivery_id({}, b"{}") == jira().delivery_id({}, b"{}")
    assert jira().delivery_id({}, b"{}") != jira().delivery_id({}, b"[]")


def test_simulator_webhook_on_update_verifies_and_parses_to_the_updated_issue() -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    app = FastAPI()

    @app.post("/webhooks/jira")
    async def hook(request: Request) -> dict[str, bool]:
        received.append((dict(request.headers), await request.body()))
        return {"ok": True}

    with serving(app) as url:
        sim = JiraSim(issues=20, webhook_url=f"{url}/webhooks/jira", webhook_secret="s3cret")
        sim.update_issue("10003", summary="Ship it", status="In Review")
    [(headers, body)] = received
    connector = jira()
    connector.verify_webhook(headers, body)
    content = connector.parse_webhook(headers, json.loads(body), RECEIVED_AT)
    [record] = content.upserts
    assert connector.delivery_id(headers, body) == sim.deliveries[0].identifier
    assert record.external_id == "10003"
    assert record.payload["fields"]["summary"] == "Ship it"
    assert record.payload["fields"]["status"]["name"] == "In Review"
    assert record.version == sim.find("10003").updated

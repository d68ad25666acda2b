"""GitHub webhook deliveries: signatures, decoding, and what each real payload means."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI, Request

from opsync.connectors.github.connector import GitHubConnector, GitHubSettings
from opsync.connectors.github.webhook import decode_body
from opsync.service.contract import WebhookRejected
from opsync_simulators.github import GitHubSim
from opsync_simulators.server import serving

SECRET = "It's a Secret to Everybody"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def connector(secret: str | None = SECRET) -> GitHubConnector:
    return GitHubConnector(GitHubSettings(id="gh", token="t", org="acme", webhook_secret=secret))


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_githubs_documented_test_vector_verifies() -> None:
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    connector().verify_webhook({"X-Hub-Signature-256": signature}, b"Hello, World!")


def test_signature_header_name_is_case_insensitive() -> None:
    connector().verify_webhook({"x-hub-signature-256": sign(b"{}")}, b"{}")


def test_wrong_signature_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="does not match"):
        connector().verify_webhook({"X-Hub-Signature-256": sign(b"{}", "other")}, b"{}")


def test_missing_signature_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="missing X-Hub-Signature-256"):
        connector().verify_webhook({"X-Hub-Signature": "sha1=abc"}, b"{}")


def test_connection_without_secret_rejects_every_delivery() -> None:
    with pytest.raises(WebhookRejected, match="no webhook_secret"):
        connector(secret=None).verify_webhook({"X-Hub-Signature-256": sign(b"{}")}, b"{}")


def test_delivery_id_is_the_github_delivery_guid_or_the_body_hash() -> None:
    conn = connector()
    assert conn.delivery_id({"x-github-delivery": "72d3162e-cc78"}, b"{}") == "72d3162e-cc78"
    assert conn.delivery_id({}, b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()


def test_decode_body_reads_json_and_form_encoded_payloads() -> None:
    payload = {"action": "opened", "issue": {"id": 1, "body": "a & b = c"}}
    as_json = json.dumps(payload).encode()
    as_form = urlencode({"payload": json.dumps(payload)}).encode()
    assert decode_body({"Content-Type": "application/json"}, as_json) == payload
    assert decode_body({"content-type": "application/x-www-form-urlencoded"}, as_form) == payload


def test_decode_body_rejects_a_body_that_is_not_json() -> None:
    with pytest.raises(ValueError):
        decode_body({"Content-Type": "application/json"}, b"<html>")
    with pytest.raises(ValueError):
        decode_body({"Content-Type": "application/x-www-form-urlencoded"}, b"other=1")


def fixture_payloads(root: Path, event: str) -> list[tuple[str, dict[str, Any]]]:
    files = sorted((root / "github" / "webhooks" / event).glob("*.json"))
    assert files, f"no {event} fixtures"
    return [(f.name, json.loads(f.read_text())) for f in files]


def test_every_real_issues_payload_becomes_an_upsert_of_its_issue(shared_fixtures: Path) -> None:
    for name, payload in fixture_payloads(shared_fixtures, "issues"):
        content = connector().parse_webhook({"X-GitHub-Event": "issues"}, payload, NOW)
        issue = payload["issue"]
        if "pull_request" in issue:  # milestoned/demilestoned on a PR: PR events carry those
            assert content.upserts == [] and content.ignored_reason, name
            continue
        assert [(r.record_type, r.external_id) for r in content.upserts] == [("issue", str(issue["id"]))], name
        record = content.upserts[0]
        assert record.payload is issue and record.version is not None, name
        assert record.version.strftime("%Y-%m-%dT%H:%M:%SZ") == issue["updated_at"], name
        assert content.deletions == [], name


def test_every_real_pull_request_payload_becomes_an_upsert_of_its_pull(shared_fixtures: Path) -> None:
    for name, payload in fixture_payloads(shared_fixtures, "pull_request"):
        content = connector().parse_webhook({"X-GitHub-Event": "pull_request"}, payload, NOW)
        pull = payload["pull_request"]
        assert [(r.record_type, r.external_id) for r in content.upserts] == [("pull_request", str(pull["id"]))], name
        assert content.upserts[0].version is not None, name


def test_deleted_issue_becomes_a_deletion_at_receipt_time() -> None:
    issue = {"id": 77, "number": 3, "updated_at": "2024-03-01T10:15:30Z"}
    content = connector().parse_webhook({"X-GitHub-Event": "issues"}, {"action": "deleted", "issue": issue}, NOW)
    assert [(d.record_type, d.external_id, d.at) for d in content.deletions] == [("issue", "77", NOW)]
    assert content.upserts == []


def test_transferred_issue_deletes_the_old_and_upserts_the_new() -> None:
    old = {"id": 77, "updated_at": "2024-03-01T10:15:30Z"}
    new = {"id": 88, "updated_at": "2024-03-01T10:15:31Z"}
    payload = {"action": "transferred", "issue": old, "changes": {"new_issue": new}}
    content = connector().parse_webhook({"X-GitHub-Event": "issues"}, payload, NOW)
    assert [d.external_id for d in content.deletions] == ["77"]
    assert [r.external_id for r in content.upserts] == ["88"]


def test_ping_and_unsynced_events_are_ignored_with_a_reason(shared_fixtures: Path) -> None:
    _, ping = fixture_payloads(shared_fixtures, "ping")[0]
    content = connector().parse_webhook({"X-GitHub-Event": "ping"}, ping, NOW)
    assert content.ignored_reason and not content.upserts
    _, push = fixture_payloads(shared_fixtures, "push")[0]
    content = connector().parse_webhook({"x-github-event": "push"}, push, NOW)
    assert "push" in (content.ignored_reason or "") and not content.upserts


def test_webhook_the_simulator_sends_on_update_verifies_and_parses_to_the_change() -> None:
    received: list[tuple[dict[str, str], bytes]] = []
    receiver = FastAPI()

    @receiver.post("/hook", status_code=202)
    async def hook(request: Request) -> dict[str, str]:
        received.append((dict(request.headers), await request.body()))
        return {}

    with serving(receiver) as hook_url:
        sim = GitHubSim(items=40, seed=2, webhook_url=hook_url + "/hook", webhook_secret=SECRET)
        issue = next(i for i in sim.items_in("acme/payments") if not i.is_pull)
        old_title = issue.title
        sim.update_issue("acme/payments", issue.number, title="Refunds retry twice", state="closed")
        pr = next(i for i in sim.items_in("acme/checkout") if i.is_pull and i.state == "open")
        sim.update_pull("acme/checkout", pr.number, merged=True)

    assert [d["status"] for d in sim.deliveries] == [202, 202, 202]
    conn = connector()
    results = []
    for headers, body in received:
        conn.verify_webhook(headers, body)
        results.append((json.loads(body), conn.parse_webhook(headers, decode_body(headers, body), NOW)))
    (edited, edit), (closed, close), (merged, merge) = results
    assert edited["action"] == "edited" and edited["changes"]["title"]["from"] == old_title
    assert edit.upserts[0].external_id == str(issue.issue_id)
    assert edit.upserts[0].payload["title"] == "Refunds retry twice"
    assert closed["action"] == "closed" and close.upserts[0].payload["state"] == "closed"
    assert merged["action"] == "closed" and merged["pull_request"]["merged"] is True
    assert merge.upserts[0].record_type == "pull_request"
    assert merge.upserts[0].external_id == str(pr.pull_id)
    assert received[0][0]["x-github-event"] == "issues"
    assert received[2][0]["x-github-event"] == "pull_request"

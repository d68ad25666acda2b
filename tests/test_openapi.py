"""The OpenAPI document is a contract: every status and content type an operation answers is
declared, the token it needs is declared, and the cursor's format is the one handed out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hub_harness import RunningHub
from support.portfolio import backfilled_hub

from opsync.service.db import create_db_engine
from opsync.service.tokens import create_token

PROBLEM = "application/problem+json"

# What each operation may answer: the specification this suite holds the document to.
DECLARED = {
    ("get", "/api/v1/work-items"): {200, 400, 401, 422, 500},
    ("get", "/api/v1/work-items/{record_id}"): {200, 401, 404, 422, 500},
    ("get", "/api/v1/code-changes"): {200, 400, 401, 422, 500},
    ("get", "/api/v1/code-changes/{record_id}"): {200, 401, 404, 422, 500},
    ("get", "/api/v1/people"): {200, 400, 401, 422, 500},
    ("get", "/api/v1/products"): {200, 401, 500},
    ("get", "/api/v1/products/{key}/summary"): {200, 401, 404, 422, 500},
    ("get", "/api/v1/links"): {200, 400, 401, 422, 500},
    ("get", "/api/v1/changes"): {200, 401, 422, 500},
    ("get", "/api/v1/connections"): {200, 401, 500},
    ("get", "/api/v1/sync-runs"): {200, 401, 422, 500},
    ("post", "/api/v1/connections/{connection_id}/sync"): {202, 401, 403, 404, 409, 422, 500},
    ("get", "/api/v1/inbox"): {200, 401, 403, 422, 500},
    ("get", "/api/v1/mappings"): {200, 401, 500},
    ("get", "/api/v1/mappings/{kind}"): {200, 401, 404, 422, 500},
    ("post", "/api/v1/mappings/{kind}/preview"): {200, 401, 403, 404, 413, 422, 500},
    ("put", "/api/v1/mappings/{kind}"): {202, 401, 403, 404, 413, 422, 500},
    ("get", "/api/v1/mappings/{kind}/versions"): {200, 401, 404, 422, 500},
    ("post", "/api/v1/mappings/{kind}/versions/{version}/apply"): {202, 401, 403, 404, 422, 500},
    ("post", "/api/v1/inbox/replay"): {200, 400, 401, 403, 422, 500},
    ("get", "/api/v1/people/{person_id}"): {200, 401, 404, 422, 500},
    ("get", "/api/v1/documents"): {200, 400, 401, 422, 500},
    ("get", "/api/v1/documents/{record_id}"): {200, 401, 404, 422, 500},
    ("get", "/api/v1/metrics"): {200, 401, 422, 500},
    ("get", "/api/v1/metrics/{series_id}"): {200, 401, 404, 422, 500},
    ("post", "/api/v1/webhooks/{connection_id}"): {202, 400, 401, 404, 413, 500},
    ("post", "/api/v1/webhooks/{connection_id}/{event}"): {202, 400, 401, 404, 413, 500},
    ("get", "/healthz"): {200, 500},
    ("get", "/readyz"): {200, 500, 503},
    ("get", "/metrics"): {200, 500},
}
SCOPE = {
    ("post", "/api/v1/connections/{connection_id}/sync"): "write",
    ("get", "/api/v1/inbox"): "admin",
    ("post", "/api/v1/inbox/replay"): "admin",
    ("post", "/api/v1/mappings/{kind}/preview"): "write",
    ("put", "/api/v1/mappings/{kind}"): "admin",
    ("post", "/api/v1/mappings/{kind}/versions/{version}/apply"): "admin",
}
UNPROTECTED = {
    ("post", "/api/v1/webhooks/{connection_id}"),
    ("post", "/api/v1/webhooks/{connection_id}/{event}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
}

# Requests a client gets wrong, each with the answer it gets: (method, operation path, URL, params or body, status).
MISTAKES = [
    ("get", "/api/v1/work-items", "/api/v1/work-items", {"limit": "x"}, 422),
    ("get", "/api/v1/work-items", "/api/v1/work-items", {"cursor": "not-a-cursor"}, 400),
    ("get", "/api/v1/work-items", "/api/v1/work-items", {"kind": "nonsense"}, 422),
    ("get", "/api/v1/work-items/{record_id}", "/api/v1/work-items/x", {}, 422),
    ("get", "/api/v1/work-items/{record_id}", "/api/v1/work-items/2147483646", {}, 404),
    ("get", "/api/v1/code-changes", "/api/v1/code-changes", {"state": "nonsense"}, 422),
    ("get", "/api/v1/code-changes", "/api/v1/code-changes", {"cursor": "!!"}, 400),
    ("get", "/api/v1/code-changes/{record_id}", "/api/v1/code-changes/2147483648", {}, 422),
    ("get", "/api/v1/code-changes/{record_id}", "/api/v1/code-changes/2147483646", {}, 404),
    ("get", "/api/v1/people", "/api/v1/people", {"limit": 501}, 422),
    ("get", "/api/v1/people", "/api/v1/people", {"cursor": "YWJj"}, 400),
    ("get", "/api/v1/products/{key}/summary", "/api/v1/products/nonesuch/summary", {}, 404),
    ("get", "/api/v1/products/{key}/summary", "/api/v1/products/non%00such/summary", {}, 422),
    ("get", "/api/v1/links", "/api/v1/links", {"from_entity": "nonsense"}, 422),
    ("get", "/api/v1/links", "/api/v1/links", {"cursor": "//8="}, 400),
    ("get", "/api/v1/changes", "/api/v1/changes", {"after": -1}, 422),
    ("get", "/api/v1/sync-runs", "/api/v1/sync-runs", {"limit": 0}, 422),
    ("post", "/api/v1/connections/{connection_id}/sync", "/api/v1/connections/nonesuch/sync", {}, 404),
    ("post", "/api/v1/connections/{connection_id}/sync", "/api/v1/connections/jira/sync", {"full": "maybe"}, 422),
    ("get", "/api/v1/inbox", "/api/v1/inbox", {"status": "nonsense"}, 422),
    ("post", "/api/v1/inbox/replay", "/api/v1/inbox/replay", b'{"ids": [\xc3\x28]}', 400),
    ("post", "/api/v1/inbox/replay", "/api/v1/inbox/replay", {"ids": "x"}, 422),
    ("get", "/api/v1/people/{person_id}", "/api/v1/people/2147483646", {}, 404),
    ("get", "/api/v1/people/{person_id}", "/api/v1/people/0", {}, 422),
    ("get", "/api/v1/documents", "/api/v1/documents", {"cursor": "!!"}, 400),
    ("get", "/api/v1/documents/{record_id}", "/api/v1/documents/2147483646", {}, 404),
    ("get", "/api/v1/metrics", "/api/v1/metrics", {"to": "0"}, 422),
    ("get", "/api/v1/products/{key}/summary", "/api/v1/products/checkout/summary", {"from": "2026-1-1"}, 422),
    ("get", "/api/v1/metrics", "/api/v1/metrics", {"from": "yesterday"}, 422),
    ("get", "/api/v1/metrics/{series_id}", "/api/v1/metrics/payments:nonesuch", {}, 404),
    ("get", "/api/v1/metrics/{series_id}", "/api/v1/metrics/nocolon", {}, 404),
    ("get", "/api/v1/mappings/{kind}", "/api/v1/mappings/nonesuch", {}, 404),
    ("post", "/api/v1/mappings/{kind}/preview", "/api/v1/mappings/jira/preview", b"kind: [", 422),
    ("post", "/api/v1/mappings/{kind}/preview", "/api/v1/mappings/jira/preview", b"\xff\xfe", 422),
    ("put", "/api/v1/mappings/{kind}", "/api/v1/mappings/nonesuch", b"kind: nonesuch", 404),
    ("post", "/api/v1/mappings/{kind}/versions/{version}/apply", "/api/v1/mappings/jira/versions/0/apply", {}, 422),
    ("post", "/api/v1/webhooks/{connection_id}", "/api/v1/webhooks/nonesuch", b"{}", 404),
    ("post", "/api/v1/webhooks/{connection_id}", "/api/v1/webhooks/jira", b"{}", 401),
    ("post", "/api/v1/webhooks/{connection_id}/{event}", "/api/v1/webhooks/nonesuch/page_updated", b"{}", 404),
    ("post", "/api/v1/webhooks/{connection_id}/{event}", "/api/v1/webhooks/jira/page_updated", b"{}", 401),
]


@pytest.fixture(scope="module")
def hub(module_database_url: str) -> Iterator[RunningHub]:
    """Read-only: a hub that pulled 12 Jira issues and 8 GitHub items."""
    with backfilled_hub(module_database_url, jira_issues=12, github_items=8, seed=5, secret="s") as running:
        yield running


@pytest.fixture(scope="module")
def document(hub: RunningHub) -> dict[str, Any]:
    return hub.client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def read_token(hub: RunningHub) -> str:
    engine = create_db_engine(hub.settings.database_url)
    try:
        return create_token(engine, ["read"], "openapi-test reader")
    finally:
        engine.dispose()


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][path][method]


def assert_declared(document: dict[str, Any], method: str, path: str, answer: httpx.Response) -> None:
    """The answer's status is declared for the operation, with the answer's content type."""
    responses = operation(document, method, path)["responses"]
    assert str(answer.status_code) in responses, f"{method} {path} answered {answer.status_code}: {answer.text}"
    content_type = answer.headers["content-type"].split(";")[0]
    assert content_type in responses[str(answer.status_code)].get("content", {}), (method, path, content_type)


def test_the_document_lists_exactly_the_operations_this_suite_specifies(document):
    assert {(m, p) for p, ops in document["paths"].items() for m in ops} == set(DECLARED)


@pytest.mark.parametrize("method, path", sorted(DECLARED))
def test_every_operation_declares_the_statuses_it_can_answer(document, method, path):
    assert {int(s) for s in operation(document, method, path)["responses"]} == DECLARED[(method, path)]


@pytest.mark.parametrize("method, path", sorted(DECLARED))
def test_every_error_an_operation_declares_is_a_problem_document(document, method, path):
    schemas = document["components"]["schemas"]
    for status, response in operation(document, method, path)["responses"].items():
        if int(status) < 400:
            continue
        assert set(response["content"]) == {PROBLEM}, (status, response)
        declared = schemas[response["content"][PROBLEM]["schema"]["$ref"].rsplit("/", 1)[1]]
        assert {"type", "title", "status", "detail", "instance"} <= set(declared["required"])
        if status == "422":
            assert "errors" in declared["required"]
        if status == "409":
            assert declared["properties"]["run_id"]["type"] == "integer"


def test_a_bearer_token_scheme_is_declared(document):
    schemes = document["components"]["securitySchemes"]
    assert [s for s in schemes.values() if (s["type"], s["scheme"]) == ("http", "bearer")] == list(schemes.values())
    assert len(schemes) == 1


@pytest.mark.parametrize("method, path", sorted(DECLARED))
def test_every_operation_that_needs_a_token_says_so_and_no_other(document, method, path):
    security = operation(document, method, path).get("security")
    if (method, path) in UNPROTECTED:
        assert not security
    else:
        assert security == [{name: []} for name in document["components"]["securitySchemes"]]


@pytest.mark.parametrize("method, path", sorted(DECLARED.keys() - UNPROTECTED))
def test_a_request_without_a_token_gets_a_declared_401(hub, document, method, path):
    url = path.format(
        record_id=1,
        person_id=1,
        version=1,
        kind="jira",
        series_id="payments:x",
        key="payments",
        connection_id="jira",
        event="e",
    )
    answer = httpx.request(method, hub.url + url, json={"ids": []} if method == "post" else None)
    assert answer.status_code == 401
    assert_declared(document, method, path, answer)


@pytest.mark.parametrize("method, path", sorted(SCOPE))
def test_a_token_without_the_scope_gets_a_declared_403(hub, document, read_token, method, path):
    url = path.format(connection_id="jira", kind="jira", version=1)
    answer = httpx.request(
        method,
        hub.url + url,
        json={"ids": []} if method == "post" else None,
        headers={"Authorization": f"Bearer {read_token}"},
    )
    assert answer.status_code == 403
    assert_declared(document, method, path, answer)


@pytest.mark.parametrize("method, path, url, given, status", MISTAKES)
def test_a_mistaken_request_gets_a_declared_problem(hub, document, method, path, url, given, status):
    if isinstance(given, bytes):
        answer = hub.client.request(method, url, content=given, headers={"Content-Type": "application/json"})
    elif method == "post" and path.endswith("replay"):
        answer = hub.client.request(method, url, json=given)
    else:
        answer = hub.client.request(method, url, params=given)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert_declared(document, method, path, answer)


@pytest.mark.parametrize("path", ["/api/v1/work-items", "/api/v1/code-changes", "/api/v1/people", "/api/v1/links"])
def test_every_cursor_handed_out_matches_the_declared_pattern(hub, document, path):
    parameter = next(p for p in operation(document, "get", path)["parameters"] if p["name"] == "cursor")
    pattern, longest = parameter["schema"]["pattern"], parameter["schema"]["maxLength"]
    cursors, cursor = [], None
    while True:
        page = hub.client.get(path, params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
        cursors.append(cursor)
    assert cursors
    assert all(re.fullmatch(pattern, c) and len(c) <= longest for c in cursors)

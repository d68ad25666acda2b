"""The shipped Confluence mapping over real page objects: the REST captures in
../shared/fixtures/confluence/rest are v1 content (the connector reads v2), and each page among
them still maps to a document without error, with its id, title and status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opsync.connectors.confluence.connector import ConfluenceConnector
from opsync.service.contract import RawRecord
from opsync.service.mapping import load_mapping


def _pages(document: Any) -> list[dict[str, Any]]:
    """The page objects of a v1 answer: one content object, or results (of a search, nested in content)."""
    if isinstance(document, dict) and document.get("type") == "page":
        return [document]
    found = []
    for item in document.get("results", []) if isinstance(document, dict) else []:
        found += _pages(item.get("content", item))
    if isinstance(document, dict) and isinstance(document.get("page"), dict):
        found += _pages(document["page"])
    return found


def test_every_captured_page_maps_to_a_document(shared_fixtures: Path):
    mapping = load_mapping(ConfluenceConnector.default_mapping())
    pages = [
        page
        for file in sorted((shared_fixtures / "confluence" / "rest").rglob("*.json"))
        for page in _pages(json.loads(file.read_text()))
    ]
    assert len(pages) >= 3
    for page in pages:
        unified = mapping.apply(RawRecord("page", page["id"], page, None), {})
        assert unified.entity == "document"
        assert (unified.values["key"], unified.values["title"]) == (page["id"], page["title"])
        assert unified.values["status"] == page["status"]

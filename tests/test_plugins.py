"""A new tool is a package with an entry point and a mapping: the example of docs/connectors.md,
installed as a plugin (a distribution's metadata on the path), pulled into a hub."""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opsync.service import plugins
from opsync.service.config import HubConfig
from opsync.service.contract import ConnectionSettings, Unsupported
from opsync.service.hub import Hub
from opsync.service.settings import Settings
from opsync.service.sync import sync_connection
from opsync_simulators.server import serving

DOC = Path(__file__).resolve().parents[1] / "docs" / "connectors.md"
TICKETS = [
    {
        "id": 1,
        "key": "T-1",
        "title": "Export fails",
        "state": "open",
        "project": "ops",
        "updated": "2026-01-02T10:00:00Z",
    },
    {
        "id": 2,
        "key": "T-2",
        "title": "Slow search",
        "state": "doing",
        "project": "ops",
        "updated": "2026-01-03T10:00:00Z",
    },
]


def _block(language: str) -> str:
    [code] = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    return code


@pytest.fixture
def tickets_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The documented connector, installed: its module, its mapping, its entry point."""
    (tmp_path / "tickets_connector.py").write_text(_block("python"))
    (tmp_path / "tickets.yaml").write_text(_block("yaml"))
    info = tmp_path / "tickets_connector-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tickets-connector\nVersion: 0.1\n")
    declared = tomllib.loads(_block("toml"))["project"]["entry-points"]["opsync.connectors"]
    (info / "entry_points.txt").write_text(
        "[opsync.connectors]\n" + "".join(f"{name} = {target}\n" for name, target in declared.items())
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.connector_classes.cache_clear()
    yield
    plugins.connector_classes.cache_clear()


def test_the_documented_connector_is_pulled_and_reconciled_with_no_core_change(tickets_plugin, database_url):
    seen: list[str | None] = []

    async def tickets(request: Request) -> JSONResponse:
        since = request.query_params.get("since")
        seen.append(since)
        return JSONResponse([t for t in TICKETS if since is None or t["updated"] > since])

    with serving(Starlette(routes=[Route("/tickets", tickets)])) as url:
        config = HubConfig(connections={"tix": ConnectionSettings(id="tix", kind="tickets", base_url=url)})
        hub = Hub.open(Settings(database_url=database_url), config)
        try:
            first = asyncio.run(sync_connection(hub, "tix"))
            again = asyncio.run(sync_connection(hub, "tix"))
            full = asyncio.run(sync_connection(hub, "tix", full=True))
            with pytest.raises(Unsupported, match="cannot receive webhooks"):
                hub.receiver("tix")
        finally:
            asyncio.run(hub.close())
    assert (first.status, first.fetched, first.created) == ("succeeded", 2, 2), first.errors
    assert (again.status, again.fetched, again.created) == ("succeeded", 0, 0), again.errors
    assert (full.status, full.created, full.deleted) == ("succeeded", 0, 0), full.errors
    assert seen == [None, "2026-01-03T10:00:00Z", None, None]  # resumed from its cursor; full: pulled, listed

"""Connector discovery through the `opsync.connectors` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from opsync.service.contract import ConnectionSettings, Connector

GROUP = "opsync.connectors"


@cache
def connector_classes() -> dict[str, type[Connector]]:
    return {ep.name: ep.load() for ep in entry_points(group=GROUP)}


def connector_class(kind: str) -> type[Connector]:
    classes = connector_classes()
    if kind not in classes:
        known = ", ".join(sorted(classes)) or "none installed"
        raise LookupError(f"unknown connector kind {kind!r}; expected one of: {known}")
    return classes[kind]


def build_connector(settings: ConnectionSettings) -> Connector:
    return connector_class(settings.kind)(settings)

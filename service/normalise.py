"""The normalising step: raw records through the active mapping into the product-work model,
and deletions into tombstones. No I/O."""

from __future__ import annotations

from opsync.service.contract import Deletion, RawRecord
from opsync.service.hub import Hub
from opsync.service.mapping import Mapping, Unified
from opsync.service.store import Tombstone


def map_records(
    hub: Hub, connection_id: str, raws: list[RawRecord], mapping: Mapping | None = None
) -> tuple[list[Unified], list[str]]:
    """Normalise raw records with the mapping in use (or the one given); errors are collected,
    not raised."""
    kind = hub.connections[connection_id].kind
    active = mapping or hub.mappings[kind].mapping
    found, errors = active.map_page(raws, hub.portfolio.containers(kind), hub.people.get(kind), connection_id)
    return [unified for _, unified in found], errors


def tombstones_for(hub: Hub, connection_id: str, deletions: list[Deletion]) -> list[Tombstone]:
    """Deletions -> tombstones, carrying the record's last content when the tool sent it.
    Raises what the mapping raises on content it cannot read."""
    kind = hub.connections[connection_id].kind
    active = hub.mappings[kind].mapping
    result = []
    for deletion in deletions:
        if deletion.record_type not in active.records:
            continue
        record = None
        if deletion.payload is not None:
            raw = RawRecord(deletion.record_type, deletion.external_id, deletion.payload, None)
            if not active.maps(raw):
                continue
            record = active.apply(raw, hub.portfolio.containers(kind), hub.people.get(kind))
            if not active.keeps(record):
                continue
        result.append(Tombstone(active.records[deletion.record_type].entity, deletion.external_id, deletion.at, record))
    return result

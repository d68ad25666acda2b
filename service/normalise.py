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
    mapped, errors = [], []
    containers = hub.portfolio.containers(kind)
    for raw in raws:
        if raw.record_type not in active.records:
            errors.append(f"{connection_id}: no mapping for record type {raw.record_type!r} in {kind}.yaml")
            continue
        try:
            if not active.maps(raw):  # the rule's `when` leaves it raw
                continue
            unified = active.apply(raw, containers, hub.people.get(kind))
            if active.keeps(unified):  # else a field its kind requires is missing: it stays raw
                mapped.append(unified)
        except Exception as error:  # a record the mapping cannot read must not stop the page
            errors.append(f"{connection_id}: {raw.record_type} {raw.external_id}: {error}")
    return mapped, errors


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

"""Pulls: page by page into the store, the cursor committed with each page; reconcile."""
from __future__ import annotations

import logging
from collections.abc import Callable

from sqlmodel import Session, select

from service.clock import now
from service.contract import ConnectorError, Deletion, RawRecord
from service.hub import Hub
from service.models import ENTITY_TABLES, Connection, SyncRun
from service.store import Counts, Tombstone, Transaction

log = logging.getLogger("opsync.sync")
Progress = Callable[[int], None]
_KEEP = object()


class ReconcileRefused(ConnectorError):
    """A reconcile would delete more than the connection allows in one run."""


def map_records(hub: Hub, connection_id: str, raws: list[RawRecord]) -> tuple[list, list[str]]:
    """Normalise raw records with the active mapping; errors are collected, not raised."""
    kind = hub.connections[connection_id].kind
    active = hub.mappings[kind].mapping
    mapped, errors = [], []
    containers = hub.portfolio.containers(kind)
    for raw in raws:
        if raw.record_type not in active.records:
            errors.append(f"{connection_id}: no mapping for record type {raw.record_type!r} in {kind}.yaml")
            continue
        try:
            mapped.append(active.apply(raw, containers, hub.people.get(kind)))
        except Exception as error:  # a record the mapping cannot read must not stop the page
            errors.append(f"{connection_id}: {raw.record_type} {raw.external_id}: {error}")
    return mapped, errors


def tombstones_for(hub: Hub, connection_id: str, deletions: list[Deletion]) -> list[Tombstone]:
    """Deletions -> tombstones, carrying the record's last content when the tool sent it."""
    kind = hub.connections[connection_id].kind
    active = hub.mappings[kind].mapping
    result = []
    for deletion in deletions:
        if deletion.record_type not in active.records:
            continue
        record = None
        if deletion.payload is not None:
            raw = RawRecord(deletion.record_type, deletion.external_id, deletion.payload, None)
            record = active.apply(raw, hub.portfolio.containers(kind), hub.people.get(kind))
        result.append(Tombstone(active.records[deletion.record_type].entity, deletion.external_id,
                                deletion.at, record))
    return result


def write_page(tx: Transaction, hub: Hub, raws: list[RawRecord]) -> list[str]:
    mapped, errors = map_records(hub, tx.connection_id, raws)
    tx.save_raw(raws)
    tx.upsert(mapped)
    return errors


def _set_cursor(tx: Transaction, cursor: str | None) -> None:
    connection = tx.session.get(Connection, tx.connection_id)
    connection.cursor = cursor


async def sync_connection(hub: Hub, connection_id: str, *, full: bool = False,
                          allow_mass_delete: bool = False, progress: Progress | None = None) -> SyncRun:
    """Pull what changed since the stored cursor (everything, then reconcile, if full)."""
    if connection_id not in hub.connections:
        raise KeyError(f"no connection {connection_id!r}; configured: {', '.join(hub.connections) or 'none'}")
    connector = hub.connector(connection_id)
    mapping_version = hub.mappings[hub.connections[connection_id].kind].version_id
    with Session(hub.engine, expire_on_commit=False) as session:
        cursor = None if full else session.get(Connection, connection_id).cursor
        run = SyncRun(connection_id=connection_id, mode="full" if full else "incremental", started_at=now())
        session.add(run)
        session.commit()
    counts, errors, fetched, failed = Counts(), [], 0, 0
    try:
        async for page in connector.pull(cursor):
            with hub.store.transaction(connection_id, mapping_version) as tx:
                page_errors = write_page(tx, hub, page.records)
                _set_cursor(tx, page.cursor)
            counts.add(tx.counts)
            fetched += len(page.records)
            failed += len(page_errors)
            errors.extend(page_errors[: max(0, 20 - len(errors))])
            if progress:
                progress(fetched)
        if full:
            counts.deleted += await reconcile(hub, connection_id, allow_mass_delete=allow_mass_delete)
        status, error = "succeeded", None
    except ConnectorError as exc:
        status, error = "failed", str(exc)
        errors.append(error)
        log.warning("sync of %s failed: %s", connection_id, error)
    with Session(hub.engine, expire_on_commit=False) as session:
        run = session.get(SyncRun, run.id)
        run.status, run.finished_at, run.fetched, run.failed = status, now(), fetched, failed
        run.created, run.updated, run.unchanged = counts.created, counts.updated, counts.unchanged
        run.stale, run.deleted, run.errors = counts.stale, counts.deleted, errors
        connection = session.get(Connection, connection_id)
        connection.status = "ok" if status == "succeeded" else "failing"
        connection.last_error, connection.last_sync_at = error, now()
        session.add_all([run, connection])
        session.commit()
    return run


async def reconcile(hub: Hub, connection_id: str, *, allow_mass_delete: bool = False) -> int:
    """Tombstone this connection's records that no longer exist upstream.

    Runs only after a complete listing; refuses to delete more than the connection's
    max_delete_share unless told to, because a tool answering "nothing" is a fault.
    """
    connector = hub.connector(connection_id)
    upstream = await connector.list_ids()
    settings = hub.connections[connection_id]
    missing: list[Tombstone] = []
    live_total = 0
    at = now()
    with Session(hub.engine) as session:
        for record_type, entity in connector.record_types.items():
            table = ENTITY_TABLES[entity]
            live = session.exec(select(table.external_id).where(
                table.connection_id == connection_id, table.deleted_at.is_(None))).all()
            live_total += len(live)
            present = upstream.get(record_type, set())
            missing += [Tombstone(entity, external_id, at) for external_id in live if external_id not in present]
    if not missing:
        return 0
    if not allow_mass_delete and len(missing) > settings.max_delete_share * live_total:
        raise ReconcileRefused(
            f"reconcile of {connection_id} would delete {len(missing)} of {live_total} records, more than"
            f" max_delete_share {settings.max_delete_share:.0%}; nothing was deleted. If the tool really"
            " lost them, run `opsync sync --full --allow-mass-delete`."
        )
    with hub.store.transaction(connection_id, hub.mappings[settings.kind].version_id) as tx:
        tx.delete(missing)
    return tx.counts.deleted

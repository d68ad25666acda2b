"""Pulls: page by page into the store, the cursor committed with each page; reconcile."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session, select

from service.clock import now
from service.contract import ConnectorError, Deletion, Page, RawRecord
from service.hub import Hub
from service.mapping import Unified
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


@dataclass
class _Mapped:
    page: Page
    records: list[Unified]
    errors: list[str]


def _store_pages(hub: Hub, connection_id: str, mapping_version: int, pages: list[_Mapped]) -> Counts:
    """Write mapped pages with the last one's cursor, in one transaction (runs in a worker thread)."""
    with hub.store.transaction(connection_id, mapping_version) as tx:
        tx.save_raw([raw for mapped in pages for raw in mapped.page.records])
        tx.upsert([record for mapped in pages for record in mapped.records])
        _set_cursor(tx, pages[-1].page.cursor)
    return tx.counts


def _set_cursor(tx: Transaction, cursor: str | None) -> None:
    table = Connection.__table__
    tx.db.execute(sa.update(table).where(table.c.id == tx.connection_id).values(cursor=cursor))


async def _prepared(hub: Hub, connection_id: str, pages: AsyncIterator[Page],
                    depth: int = 4) -> AsyncIterator[list[_Mapped]]:
    """Fetch and map ahead while the caller writes: fetching, mapping and writing overlap
    (mapping runs while the writer waits on the database). Yields the pages that are ready,
    up to depth: when the writer falls behind, it writes several in one transaction."""
    queue: asyncio.Queue[_Mapped | BaseException | None] = asyncio.Queue(maxsize=depth)

    async def produce() -> None:
        try:
            async for page in pages:
                records, errors = await asyncio.to_thread(map_records, hub, connection_id, page.records)
                await queue.put(_Mapped(page, records, errors))
            await queue.put(None)
        except Exception as error:  # handed to the consumer, which raises it in its own task
            await queue.put(error)

    producer = asyncio.create_task(produce())
    try:
        finished = False
        while not finished:
            ready: list[_Mapped] = []
            item = await queue.get()
            while True:
                if item is None or isinstance(item, BaseException):
                    finished = True
                    break
                ready.append(item)
                if len(ready) == depth or queue.empty():
                    break
                item = queue.get_nowait()
            if ready:
                yield ready  # the pages before a failure are still written
            if isinstance(item, BaseException):
                raise item
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)


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
    status, error = "failed", None
    try:
        async for ready in _prepared(hub, connection_id, connector.pull(cursor)):
            counts.add(await asyncio.to_thread(_store_pages, hub, connection_id, mapping_version, ready))
            for mapped in ready:
                fetched += len(mapped.page.records)
                failed += len(mapped.errors)
                errors.extend(mapped.errors[: max(0, 20 - len(errors))])
            if progress:
                progress(fetched)
        if full:
            counts.deleted += await reconcile(hub, connection_id, allow_mass_delete=allow_mass_delete)
        status = "succeeded"
    except ConnectorError as exc:
        error = str(exc)
        log.warning("sync of %s failed: %s", connection_id, error)
    except asyncio.CancelledError:
        status, error = "interrupted", "the process stopped during the pull; the next pull resumes from its cursor"
        raise
    except Exception as exc:  # a bug or a database fault: the run says so, the scheduler goes on
        error = f"{type(exc).__name__}: {exc}"
        log.exception("sync of %s failed", connection_id)
    finally:
        if error:
            errors.append(error)
        _finish_run(hub, run.id, status, error, counts, errors, fetched, failed)
    return _load_run(hub, run.id)


def _finish_run(hub: Hub, run_id: int, status: str, error: str | None, counts: Counts, errors: list[str],
                fetched: int, failed: int) -> None:
    with Session(hub.engine) as session:
        run = session.get(SyncRun, run_id)
        run.status, run.finished_at, run.fetched, run.failed = status, now(), fetched, failed
        run.created, run.updated, run.unchanged = counts.created, counts.updated, counts.unchanged
        run.stale, run.deleted, run.errors = counts.stale, counts.deleted, errors
        connection = session.get(Connection, run.connection_id)
        connection.status = "ok" if status == "succeeded" else "failing"
        connection.last_error, connection.last_sync_at = error, now()
        session.add_all([run, connection])
        session.commit()


def _load_run(hub: Hub, run_id: int) -> SyncRun:
    with Session(hub.engine, expire_on_commit=False) as session:
        return session.get(SyncRun, run_id)


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
    def write() -> int:
        with hub.store.transaction(connection_id, hub.mappings[settings.kind].version_id) as tx:
            tx.delete(missing)
        return tx.counts.deleted

    return await asyncio.to_thread(write)

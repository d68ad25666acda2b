"""Pulls: page by page into the store, the cursor committed with each page; reconcile."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import Session

from opsync.service import metrics
from opsync.service.clock import now
from opsync.service.collector import fewer_collections
from opsync.service.contract import ConnectorError, FetchesOne, PullPage, RawRecord
from opsync.service.entities import ENTITIES
from opsync.service.hub import ActiveMapping, Hub
from opsync.service.leases import Lease
from opsync.service.logs import log_context
from opsync.service.mapping import Unified
from opsync.service.models import Connection, PullLease, RunMode, RunStatus, SyncRun, table_of
from opsync.service.normalise import map_records
from opsync.service.store import Counts, Tombstone, Transaction

if TYPE_CHECKING:  # imported when a pull starts a mapper: processes that never do (the API's) go without
    from opsync.service.mapper import Mapper, Serialized

log = logging.getLogger("opsync.sync")
Progress = Callable[[int], None]
CONFIRM_AT_MOST = 20  # a missing set this small is confirmed record by record before deleting
ALWAYS_DELETABLE = 2  # per record type and container, whatever max_delete_share (unless it is 0)


class ReconcileRefused(ConnectorError):
    """A reconcile would delete more than the connection allows in one run."""


@dataclass
class _Mapped:
    page: PullPage
    records: list[Unified]
    errors: list[str]
    version_id: int  # of the mapping that made the records
    serialized: list[Serialized] | None = None  # each raw record's canonical JSON and hash, if the mapper made them


def _store_pages(hub: Hub, connection_id: str, pages: list[_Mapped]) -> Counts:
    """Write mapped pages with the last one's cursor, in one transaction (runs in a worker thread);
    pages mapped by different versions (one was applied meanwhile) in one transaction each."""
    counts = Counts()
    for version, group in itertools.groupby(pages, key=lambda mapped: mapped.version_id):
        batch = list(group)
        with hub.store.transaction(connection_id, version) as tx:
            raws = [raw for mapped in batch for raw in mapped.page.records]
            if all(mapped.serialized is not None for mapped in batch):
                tx.save_raw(raws, serialized=[item for mapped in batch for item in mapped.serialized or ()])
            else:
                tx.save_raw(raws)
            tx.upsert([record for mapped in batch for record in mapped.records])
            _set_cursor(tx, batch[-1].page.cursor)
        counts.add(tx.counts)
    return counts


def _set_cursor(tx: Transaction, cursor: str | None) -> None:
    table = table_of(Connection)
    tx.db.execute(sa.update(table).where(table.c.id == tx.connection_id).values(cursor=cursor))


async def _prepared(
    hub: Hub, connection_id: str, pages: AsyncIterator[PullPage], depth: int = 4, at_once: int = 2
) -> AsyncIterator[list[_Mapped]]:
    """Fetch and map ahead while the caller writes: fetching, mapping and writing overlap.
    From the second page on, pages are mapped in a process of their own (service/mapper.py),
    at_once pages at a time. Yields the pages that are ready, in order, up to depth: when the
    writer falls behind, it writes several in one transaction."""
    kind = hub.connections[connection_id].kind
    mapping: asyncio.Queue[asyncio.Task[_Mapped] | None] = asyncio.Queue(maxsize=at_once)
    queue: asyncio.Queue[_Mapped | BaseException | None] = asyncio.Queue(maxsize=depth)
    mapper: tuple[ActiveMapping, Mapper] | None = None  # and the mapping it was given
    waiting = ThreadPoolExecutor(at_once, thread_name_prefix="opsync-map")  # for the mapper's answers

    async def prepare(page: PullPage, active: ActiveMapping) -> _Mapped:
        done = None
        if mapper is not None and mapper[0] is active:  # else a version applied since maps it here
            done = await asyncio.get_running_loop().run_in_executor(waiting, mapper[1].map, page.records)
        if done is None:
            records, errors = await asyncio.to_thread(map_records, hub, connection_id, page.records, active.mapping)
            return _Mapped(page, records, errors, active.version_id)
        return _Mapped(page, done.records, done.errors, active.version_id, done.serialized)

    async def produce() -> None:
        nonlocal mapper
        seen = 0
        try:
            async for page in pages:
                await asyncio.to_thread(hub.refresh_mappings)  # a version applied meanwhile maps this page
                active = hub.mappings[kind]
                if seen == 1:  # a pull of more than one page
                    mapper = await _start_mapper(hub, connection_id, active)
                await mapping.put(asyncio.create_task(prepare(page, active)))
                seen += 1
            await mapping.put(None)
        except Exception as error:  # raised in its turn: after the pages before it are written
            await mapping.put(asyncio.create_task(_raise(error)))

    async def collect() -> None:
        """The pages in the order they were fetched, each once it is mapped."""
        try:
            while (task := await mapping.get()) is not None:
                await queue.put(await task)
            await queue.put(None)
        except Exception as error:  # handed to the consumer, which raises it in its own task
            await queue.put(error)

    producer = asyncio.create_task(produce())
    collector = asyncio.create_task(collect())
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
        collector.cancel()
        left = [task for task in (mapping.get_nowait() for _ in range(mapping.qsize())) if task is not None]
        for task in left:
            task.cancel()
        await asyncio.gather(producer, collector, *left, return_exceptions=True)
        if mapper is not None:
            await asyncio.to_thread(mapper[1].stop)  # a call still waiting on it returns
        await asyncio.to_thread(waiting.shutdown)
        if mapper is not None:
            mapper[1].close()


async def _start_mapper(hub: Hub, connection_id: str, active: ActiveMapping) -> tuple[ActiveMapping, Mapper] | None:
    from opsync.service.mapper import Mapper, MapperUnavailable

    kind = hub.connections[connection_id].kind
    try:
        started = await asyncio.to_thread(
            Mapper, active.mapping, hub.portfolio.containers(kind), hub.people.get(kind), connection_id
        )
    except MapperUnavailable as error:
        log.warning("%s: the pull maps its pages itself: %s", connection_id, error)
        return None
    return active, started


async def _raise(error: Exception) -> _Mapped:
    raise error


@dataclass
class Pull:
    """A pull that holds its connection's lease and has its run."""

    connection_id: str
    full: bool
    lease: Lease
    run_id: int
    cursor: str | None


def begin_pull(hub: Hub, connection_id: str, *, full: bool = False) -> Pull:
    """Take the connection's lease and record the run; AlreadyRunning if another pull holds it."""
    if connection_id not in hub.connections:
        raise KeyError(f"no connection {connection_id!r}; configured: {', '.join(hub.connections) or 'none'}")
    mode = RunMode.FULL if full else RunMode.INCREMENTAL
    lease, run_id = Lease.acquire(
        hub.engine, connection_id, SyncRun(connection_id=connection_id, mode=mode, started_at=now())
    )
    try:
        with Session(hub.engine) as session:  # read under the lease: the last pull's cursor is stored
            cursor = None if full else session.get_one(Connection, connection_id).cursor
    except BaseException:
        lease.release()  # its run is then marked interrupted
        raise
    return Pull(connection_id, full, lease, run_id, cursor)


def adopt_pull(hub: Hub, run_id: int, holder: str) -> Pull | None:
    """The pull another process began (run_id, its lease's holder), to be run here: the API's
    process hands a pull it was asked for to its worker process, and hands it again to the
    next one if that process dies. None when the lease is no longer that run's, or expired
    (the run is or will be marked interrupted), or the run is over."""
    with Session(hub.engine) as session:
        run = session.get(SyncRun, run_id)
        if run is None or run.status != RunStatus.RUNNING or run.connection_id not in hub.connections:
            return None
        lease = session.get(PullLease, run.connection_id)
        if lease is None or lease.holder != holder or lease.run_id != run_id or lease.expires_at <= now():
            return None
        full = run.mode == RunMode.FULL
        cursor = None if full else session.get_one(Connection, run.connection_id).cursor
        return Pull(run.connection_id, full, Lease(hub.engine, run.connection_id, holder), run_id, cursor)


async def sync_connection(
    hub: Hub,
    connection_id: str,
    *,
    full: bool = False,
    allow_mass_delete: bool = False,
    progress: Progress | None = None,
    pull: Pull | None = None,
) -> SyncRun:
    """Pull what changed since the stored cursor (everything, then reconcile, if full).
    Raises AlreadyRunning when another pull of the connection holds its lease."""
    if pull is None:
        pull = await asyncio.to_thread(begin_pull, hub, connection_id, full=full)
    with log_context(connection_id=connection_id, run_id=pull.run_id):
        return await _run(hub, pull, allow_mass_delete, progress)


async def _run(hub: Hub, pull: Pull, allow_mass_delete: bool, progress: Progress | None) -> SyncRun:
    connection_id = pull.connection_id
    keeper = asyncio.create_task(pull.lease.keep())
    await hub.learn_fields(connection_id)  # a mapping may name the tool's fields
    errors: list[str] = []
    counts, fetched, failed = Counts(), 0, 0
    status, error = RunStatus.FAILED, None
    started = now()
    try:
        with fewer_collections():  # pages of decoded payloads, alive for a moment
            async for ready in _prepared(hub, connection_id, hub.puller(connection_id).pull(pull.cursor)):
                if pull.lease.lost:
                    raise ConnectorError(
                        "another process took this connection's pull lease over (this one had"
                        " stalled); the pages before were stored"
                    )
                counts.add(await asyncio.to_thread(_store_pages, hub, connection_id, ready))
                for mapped in ready:
                    fetched += len(mapped.page.records)
                    failed += len(mapped.errors)
                    errors.extend(mapped.errors[: max(0, 20 - len(errors))])
                if progress:
                    progress(fetched)
        if pull.full:
            report = await reconcile(hub, connection_id, allow_mass_delete=allow_mass_delete)
            counts.deleted += report.deleted
            errors.extend(report.notes)
        status = RunStatus.SUCCEEDED
    except ConnectorError as exc:
        error = str(exc)
        log.warning("sync of %s failed: %s", connection_id, error)
    except asyncio.CancelledError:
        status, error = (
            RunStatus.INTERRUPTED,
            "the process stopped during the pull; the next pull resumes from its cursor",
        )
        raise
    except Exception as exc:  # a bug or a database fault: the run says so, the scheduler goes on
        error = f"{type(exc).__name__}: {exc}"
        log.exception("sync of %s failed", connection_id)
    finally:
        keeper.cancel()
        if error:
            errors.append(error)
        try:
            _finish_run(hub, pull.run_id, status, error, counts, errors, fetched, failed)
        finally:
            pull.lease.release()
        seconds = (now() - started).total_seconds()
        metrics.sync_run_finished(connection_id, RunMode.FULL if pull.full else RunMode.INCREMENTAL, status, seconds)
        log.info("pull %s of %s %s in %.1f s", pull.run_id, connection_id, status, seconds)
    return _load_run(hub, pull.run_id)


def _finish_run(
    hub: Hub,
    run_id: int,
    status: RunStatus,
    error: str | None,
    counts: Counts,
    errors: list[str],
    fetched: int,
    failed: int,
) -> None:
    with Session(hub.engine) as session:
        run = session.get_one(SyncRun, run_id)
        run.status, run.finished_at, run.fetched, run.failed = status, now(), fetched, failed
        run.created, run.updated, run.unchanged = counts.created, counts.updated, counts.unchanged
        run.stale, run.deleted, run.errors = counts.stale, counts.deleted, errors
        connection = session.get_one(Connection, run.connection_id)
        connection.status = "ok" if status == RunStatus.SUCCEEDED else "failing"
        connection.last_error, connection.last_sync_at = error, now()
        session.add_all([run, connection])
        session.commit()


def _load_run(hub: Hub, run_id: int) -> SyncRun:
    with Session(hub.engine, expire_on_commit=False) as session:
        return session.get_one(SyncRun, run_id)


@dataclass
class ReconcileReport:
    deleted: int = 0
    notes: list[str] = field(default_factory=list)  # what a person should know: containers kept, unconfirmed


async def reconcile(hub: Hub, connection_id: str, *, allow_mass_delete: bool = False) -> ReconcileReport:
    """Tombstone this connection's records that no longer exist upstream.

    Only records stored before the listing began can go, and only after a complete listing;
    a container missing from the listing is reported, not emptied (unless the connection says
    delete_vanished_containers); a small missing set is confirmed record by record; and more
    than max_delete_share of a record type in one container is refused unless told to,
    because a tool answering "nothing" is a fault.
    """
    connector = hub.puller(connection_id)
    settings = hub.connections[connection_id]
    record_types = {rt: rule.entity for rt, rule in hub.mappings[settings.kind].mapping.records.items()}
    started = now()
    before = await asyncio.to_thread(_live_records, hub, connection_id, set(record_types.values()))
    listing = await connector.list_ids()
    present: dict[str, set[str]] = {}
    for record_type, entity in record_types.items():
        present.setdefault(entity, set()).update(listing.ids.get(record_type, set()))
    report = ReconcileReport()
    missing: dict[tuple[str, str | None], list[str]] = {}
    vanished: dict[str, int] = {}
    for entity, live in before.items():
        for external_id, container in live.items():
            if external_id in present.get(entity, ()):
                continue
            group = container.lower() if container else None
            if (
                listing.containers is not None
                and group is not None
                and group not in listing.containers
                and not settings.delete_vanished_containers
            ):
                vanished[group] = vanished.get(group, 0) + 1
                continue
            missing.setdefault((entity, group), []).append(external_id)
    for container, kept in sorted(vanished.items()):
        why = listing.unlisted.get(container, "it is gone, archived, or no longer readable with this token")
        report.notes.append(
            f"{container} was not listed ({why}): its {kept} records were kept; set"
            " delete_vanished_containers: true on the connection to delete them"
        )
    alive: list[RawRecord] = []
    if 0 < sum(map(len, missing.values())) <= CONFIRM_AT_MOST and isinstance(hub.connector(connection_id), FetchesOne):
        alive = await _confirm(hub, connection_id, record_types, missing, report)
    _refuse_mass_deletion(connection_id, settings.max_delete_share, before, missing, allow_mass_delete)
    if not missing and not alive:
        return report
    tombstones = [
        Tombstone(entity, external_id, started) for (entity, _), ids in missing.items() for external_id in ids
    ]

    def write() -> int:
        mapped, _ = map_records(hub, connection_id, alive)
        with hub.store.transaction(connection_id, hub.mappings[settings.kind].version_id) as tx:
            tx.save_raw(alive)
            tx.upsert(mapped)
            tx.delete(_untouched_since(tx, tombstones, started))
        return tx.counts.deleted

    report.deleted = await asyncio.to_thread(write)
    return report


def _live_records(hub: Hub, connection_id: str, entities: set[str]) -> dict[str, dict[str, str | None]]:
    """Each entity's live records of the connection: external id -> container."""
    result: dict[str, dict[str, str | None]] = {}
    with hub.engine.connect() as db:
        for name in entities:
            table = ENTITIES[name].table
            result[name] = dict(
                db.execute(
                    sa.select(table.c.external_id, table.c.container).where(
                        table.c.connection_id == connection_id, table.c.deleted_at.is_(None)
                    )
                ).all()
            )
    return result


async def _confirm(
    hub: Hub,
    connection_id: str,
    record_types: dict[str, str],
    missing: dict[tuple[str, str | None], list[str]],
    report: ReconcileReport,
) -> list[RawRecord]:
    """Ask the tool for each missing record: those it still has stay (and are returned, fresh),
    those it cannot say anything about stay too, this time."""
    connector = hub.fetcher(connection_id)
    by_entity = {entity: record_type for record_type, entity in record_types.items()}
    alive: list[RawRecord] = []
    for group, ids in missing.items():
        gone = []
        for external_id in ids:
            record_type = by_entity[group[0]]
            known = await asyncio.to_thread(hub.store.raw_payload, connection_id, record_type, external_id)
            try:
                fetched = await connector.fetch_one(record_type, external_id, known)
            except ConnectorError as error:
                report.notes.append(
                    f"{record_type} {external_id} is not listed, but fetching it failed ({error}):"
                    " kept until a later reconcile can confirm it is gone"
                )
                continue
            if fetched is None:
                gone.append(external_id)
            else:
                alive.append(fetched)
        missing[group] = gone
    for group in [g for g, ids in missing.items() if not ids]:
        del missing[group]
    return alive


def _refuse_mass_deletion(
    connection_id: str,
    share: float,
    before: dict[str, dict[str, str | None]],
    missing: dict[tuple[str, str | None], list[str]],
    allowed: bool,
) -> None:
    if allowed:
        return
    refused = []
    for (entity, container), ids in sorted(missing.items(), key=lambda item: (item[0][0], item[0][1] or "")):
        live = sum(1 for c in before[entity].values() if (c.lower() if c else None) == container)
        if len(ids) > max(share * live, ALWAYS_DELETABLE if share > 0 else 0):
            refused.append(f"{len(ids)} of {live} {entity} records of {container or 'no container'}")
    if refused:
        raise ReconcileRefused(
            f"reconcile of {connection_id} would delete {'; '.join(refused)}: more than max_delete_share"
            f" {share:.0%}; nothing was deleted. If the tool really lost them, run"
            " `opsync sync --full --allow-mass-delete`."
        )


def _untouched_since(tx: Transaction, tombstones: list[Tombstone], started: datetime) -> list[Tombstone]:
    """Leave out records the hub changed after the listing began: a webhook saw them alive."""
    result = []
    for name in {t.entity for t in tombstones}:
        table = ENTITIES[name].table
        batch = [t for t in tombstones if t.entity == name]
        touched = set(
            tx.db.execute(
                sa.select(table.c.external_id).where(
                    table.c.connection_id == tx.connection_id,
                    table.c.external_id.in_({t.external_id for t in batch}),
                    table.c.updated_at > started,
                )
            ).scalars()
        )
        result += [t for t in batch if t.external_id not in touched]
    return result

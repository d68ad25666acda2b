"""Re-mapping: a kind's records made again from their stored raw payloads with a mapping,
without asking any tool: to preview a candidate (every write rolled back) or, once a version is
applied, to bring every record to it (a run of mode remap, per connection).

A remap run holds a lease of its own per connection ("remap:<connection>"), so that one runs at
a time and a dead process's run is marked interrupted. Pulls and webhooks go on meanwhile: each
page or batch is mapped with the version in use when it is written, and a record written with
an older one during the run is made again at its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from opsync.service.clock import now
from opsync.service.collector import fewer_collections
from opsync.service.contract import RawRecord
from opsync.service.entities import ENTITIES
from opsync.service.hub import Hub
from opsync.service.leases import AlreadyRunning, Lease
from opsync.service.logs import log_context
from opsync.service.mapping import Mapping, unmatched_map_keys
from opsync.service.mapping_schema import map_key
from opsync.service.models import Origin, RunMode, RunStatus, StoredPayload, SyncRun, table_of
from opsync.service.normalise import map_records
from opsync.service.store import Counts
from opsync.service.yamlfile import Problem

__all__ = ["Preview", "preview", "remap_connection", "start_remap", "stored_warnings"]

T = TypeVar("T")
log = logging.getLogger("opsync.remap")
BATCH = 2000  # raw records read, mapped and written at a time
SAMPLE = 20  # field-level diffs shown by a preview
_RAW = table_of(StoredPayload)


def _batches(
    hub: Hub, connection_id: str, record_type: str | None = None, external_ids: set[str] | None = None
) -> Iterator[list[tuple[RawRecord, Origin]]]:
    """The connection's stored raw records, a batch at a time, in id order."""
    last = 0
    while True:
        query = (
            sa.select(_RAW.c.id, _RAW.c.record_type, _RAW.c.external_id, _RAW.c.payload, _RAW.c.version, _RAW.c.origin)
            .where(_RAW.c.connection_id == connection_id, _RAW.c.id > last)
            .order_by(_RAW.c.id)
            .limit(BATCH)
        )
        if record_type is not None:
            query = query.where(_RAW.c.record_type == record_type)
        if external_ids is not None:
            query = query.where(_RAW.c.external_id.in_(external_ids))
        with hub.engine.connect() as db:
            rows = db.execute(query).all()
        if not rows:
            return
        last = rows[-1].id
        yield [
            (RawRecord(r.record_type, r.external_id, r.payload, r.version), Origin(r.origin or Origin.FETCH))
            for r in rows
        ]


def _read_ahead(batches: Iterator[T]) -> Iterator[T]:
    """The batches, the next one read (a query and its JSON decoded) in another thread while
    the caller maps and writes this one: on PostgreSQL the read is mostly waiting on the server."""
    with ThreadPoolExecutor(1, thread_name_prefix="remap-read") as reader:
        coming = reader.submit(next, batches, None)
        while (batch := coming.result()) is not None:
            coming = reader.submit(next, batches, None)
            yield batch


@dataclass
class Outcome:
    """What re-mapping did, or would do."""

    read: int = 0
    counts: Counts = field(default_factory=Counts)
    failed: list[str] = field(default_factory=list)  # records the mapping cannot read, and why
    changes: list[dict[str, Any]] = field(default_factory=list)  # field-level diffs, up to `keep`
    changed: Counter[str] = field(default_factory=Counter)  # records changed, by kind


def _remap_batch(
    hub: Hub,
    connection_id: str,
    batch: list[tuple[RawRecord, Origin]],
    mapping: Mapping,
    version_id: int | None,
    outcome: Outcome,
    *,
    commit: bool,
    keep: int,
) -> None:
    by_origin: dict[Origin, list[RawRecord]] = {}
    for raw, origin in batch:
        by_origin.setdefault(origin, []).append(raw)
    with hub.store.transaction(connection_id, version_id, remapping=True, commit=commit) as tx:
        for origin, raws in by_origin.items():
            records, errors = map_records(hub, connection_id, raws, mapping)
            outcome.failed += errors
            tx.upsert(records, origin)
    outcome.read += len(batch)
    outcome.counts.add(tx.counts)
    for entity, external_id, op, fields in tx.changes:
        outcome.changed[entity] += 1
        if len(outcome.changes) < keep:
            outcome.changes.append({"entity": entity, "external_id": external_id, "op": op, "fields": fields})


@dataclass
class Preview:
    kind: str
    read: int  # raw records read
    would_create: int
    would_change: int
    unchanged: int
    changed_by_kind: dict[str, int]
    sample: list[dict[str, Any]]  # the field-level diff of some records: fields -> [now, then]
    failures: list[str]  # records the candidate cannot map, and why
    defaults: dict[str, dict[str, int]]  # field -> value that fell to the field's default -> records
    warnings: list[str]  # the file's own (unresolved field names), and map keys no stored value matches

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _fell_to_default(mapping: Mapping, batch: list[tuple[RawRecord, Origin]], found: dict[str, Counter[str]]) -> None:
    """Count, per field, the tool's values that no key of the field's value map matched."""
    for raw, _ in batch:
        rule = mapping.records.get(raw.record_type)
        if rule is None or not mapping.maps(raw):
            continue
        for value_rule in rule.value_rules():
            chosen = value_rule.choose(raw.payload)
            if chosen is None or chosen.value_map is None or chosen.expression is None:
                continue
            value = map_key(chosen.expression(raw.payload))
            if value is not None and value not in chosen.value_map:
                found.setdefault(chosen.path or f"{raw.record_type}.{chosen.name}", Counter())[str(value)] += 1


def stored_warnings(
    hub: Hub, mapping: Mapping, connection_id: str | None = None, record_type: str | None = None
) -> list[Problem]:
    """The map keys of mapping that no value of the stored raw records of its kind matches."""
    connections = (
        [connection_id] if connection_id else [c for c, s in hub.connections.items() if s.kind == mapping.kind]
    )
    payloads = (
        (raw.record_type, raw.payload)
        for connection in connections
        for batch in _batches(hub, connection, record_type)
        for raw, _ in batch
    )
    return unmatched_map_keys(mapping, payloads)


def preview(
    hub: Hub,
    mapping: Mapping,
    *,
    connection_id: str | None = None,
    record_type: str | None = None,
    sample: int = SAMPLE,
) -> Preview:
    """What applying mapping would do to the stored records of its kind (or of one connection,
    one record type): every write is made in a transaction that is rolled back."""
    outcome, defaults = Outcome(), dict[str, Counter[str]]()
    connections = [c for c, s in hub.connections.items() if s.kind == mapping.kind]
    with fewer_collections():
        for connection in [connection_id] if connection_id else connections:
            for batch in _batches(hub, connection, record_type):
                _remap_batch(hub, connection, batch, mapping, None, outcome, commit=False, keep=sample)
                _fell_to_default(mapping, batch, defaults)
    return Preview(
        kind=mapping.kind,
        read=outcome.read,
        would_create=outcome.counts.created,
        would_change=outcome.counts.updated,
        unchanged=outcome.counts.unchanged,
        changed_by_kind=dict(outcome.changed),
        sample=outcome.changes,
        failures=outcome.failed[:sample],
        defaults={path: dict(values.most_common(20)) for path, values in sorted(defaults.items())},
        warnings=[str(w) for w in (*mapping.warnings, *stored_warnings(hub, mapping, connection_id, record_type))],
    )


def _lease_key(connection_id: str) -> str:
    return f"remap:{connection_id}"


async def start_remap(hub: Hub, connection_id: str, wait_seconds: float = 30.0) -> tuple[Lease, int]:
    """Take the connection's remap lease (a run before this one stops at its next batch when a
    newer version was applied) and record the run."""
    deadline = asyncio.get_running_loop().time() + wait_seconds
    while True:
        run = SyncRun(connection_id=connection_id, mode=RunMode.REMAP, started_at=now())
        try:
            return await asyncio.to_thread(Lease.acquire, hub.engine, _lease_key(connection_id), run)
        except AlreadyRunning:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def remap_connection(
    hub: Hub, connection_id: str, lease: Lease, run_id: int, progress: Callable[[int], None] | None = None
) -> SyncRun:
    """Bring every record of the connection to the version in use, from its stored raw records."""
    kind = hub.connections[connection_id].kind
    version_id = hub.mappings[kind].version_id
    keeper = asyncio.create_task(lease.keep())
    outcome, status, error = Outcome(), RunStatus.FAILED, None
    with log_context(connection_id=connection_id, run_id=run_id):
        try:
            await asyncio.to_thread(_remap_all, hub, connection_id, version_id, outcome, run_id, lease, progress)
            status = RunStatus.SUCCEEDED
        except _Superseded as superseded:
            status, error = RunStatus.INTERRUPTED, str(superseded)
        except asyncio.CancelledError:
            status, error = RunStatus.INTERRUPTED, "the process stopped during the remap; apply the version again"
            raise
        except Exception as exc:  # a bug or a database fault: the run says so
            error = f"{type(exc).__name__}: {exc}"
            log.exception("remap of %s failed", connection_id)
        finally:
            keeper.cancel()
            await asyncio.to_thread(_finish, hub, run_id, status, error, outcome)
            await asyncio.to_thread(lease.release)
    with Session(hub.engine, expire_on_commit=False) as session:
        return session.get_one(SyncRun, run_id)


class _Superseded(Exception):
    """A newer version was applied: its own run takes over."""


def _remap_all(
    hub: Hub,
    connection_id: str,
    version_id: int,
    outcome: Outcome,
    run_id: int,
    lease: Lease,
    progress: Callable[[int], None] | None,
) -> None:
    kind = hub.connections[connection_id].kind

    def remap(external_ids: set[str] | None) -> None:
        ordered = sorted(external_ids or ())
        chunks = [None] if external_ids is None else [set(ordered[i : i + 500]) for i in range(0, len(ordered), 500)]
        batches = (batch for chunk in chunks for batch in _batches(hub, connection_id, external_ids=chunk))
        for batch in _read_ahead(batches):
            hub.refresh_mappings()
            if hub.mappings[kind].version_id != version_id:
                raise _Superseded(f"version {hub.mappings[kind].version_id} was applied meanwhile; its run goes on")
            if lease.lost:
                raise _Superseded("another process took this remap over")
            _remap_batch(
                hub, connection_id, batch, hub.mappings[kind].mapping, version_id, outcome, commit=True, keep=0
            )
            _progress(hub, run_id, outcome)
            if progress:
                progress(outcome.read)

    with fewer_collections():
        remap(None)
    for _ in range(3):  # records a pull or webhook wrote with the version before, meanwhile
        stragglers = _written_by_other_versions(hub, connection_id, version_id)
        if not stragglers:
            return
        remap(stragglers)


def _written_by_other_versions(hub: Hub, connection_id: str, version_id: int) -> set[str]:
    found: set[str] = set()
    with hub.engine.connect() as db:
        for kind in ENTITIES.values():
            c = kind.table.c
            found |= set(
                db.execute(
                    sa.select(c.external_id).where(
                        c.connection_id == connection_id,
                        c.deleted_at.is_(None),
                        c.mapping_version_id.is_distinct_from(version_id),
                    )
                ).scalars()
            )
    return found


def _progress(hub: Hub, run_id: int, outcome: Outcome) -> None:
    runs = table_of(SyncRun)
    with hub.engine.begin() as db:
        db.execute(
            sa.update(runs)
            .where(runs.c.id == run_id)
            .values(
                fetched=outcome.read,
                created=outcome.counts.created,
                updated=outcome.counts.updated,
                unchanged=outcome.counts.unchanged,
            )
        )


def _finish(hub: Hub, run_id: int, status: RunStatus, error: str | None, outcome: Outcome) -> None:
    with Session(hub.engine) as session:
        run = session.get_one(SyncRun, run_id)
        run.status, run.finished_at, run.fetched = status, now(), outcome.read
        run.created, run.updated, run.unchanged = (
            outcome.counts.created,
            outcome.counts.updated,
            outcome.counts.unchanged,
        )
        run.stale, run.failed = outcome.counts.stale, len(outcome.failed)
        run.errors = [*outcome.failed[:20], *([error] if error else [])]
        session.add(run)
        session.commit()

"""The durable webhook inbox: deliveries stored by intake (service/intake.py) are applied by
workers, a claimed batch at a time. Applying a delivery twice is harmless.

Two lanes. A delivery that carries its records is applied in a batch and never waits on a
tool. One that needs the tool's API (it names a record by id only, or two bodies of one
version disagree) moves to the fetch lane, where it is fetched under a deadline and, when
the tool is away, rescheduled with backoff. A delivery whose content, mapping or write fails
is parked as failed alone: the rest of its batch is applied. Every claim is an attempt, and
a delivery is parked once it has had its attempts, whatever the error.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from opsync.service import metrics
from opsync.service.clock import now
from opsync.service.contract import Deletion, RawRecord, TransientError, WebhookContent
from opsync.service.hub import Hub
from opsync.service.logs import log_context
from opsync.service.mapping import Unified
from opsync.service.models import Connection, DeliveryStatus, InboxEvent, Lane, Origin, table_of
from opsync.service.normalise import map_records, tombstones_for
from opsync.service.store import Tombstone

log = logging.getLogger("opsync.inbox")
LEASE = timedelta(seconds=15)  # a worker that died mid-batch: its claims return to the queue then
FETCH_BATCH = 20
FETCH_CONCURRENCY = 4  # fetches in flight at once, per worker
PRUNE_BATCH = 5000
_TABLE = table_of(InboxEvent)
# Errors of the database itself (gone, locked): the batch is retried after its lease, not parked.
_DATABASE_DOWN = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


# -- claiming and marking ----------------------------------------------------------------


@dataclass
class Claim:
    """Deliveries leased to one worker; its marks count only while its token still holds them."""

    token: str
    events: list[sa.Row]


def claim(hub: Hub, lane: Lane, limit: int, lease: timedelta = LEASE) -> Claim:
    """Lease a batch of pending deliveries of a lane, in one statement; another worker skips
    them (SKIP LOCKED on PostgreSQL) until the lease ends. Each claim counts as an attempt.
    An empty lane is seen by a read first: an UPDATE, even of no row, takes SQLite's write
    lock, which intake's commits wait for."""
    at, token = now(), uuid.uuid4().hex
    due = sa.and_(_TABLE.c.status == DeliveryStatus.PENDING, _TABLE.c.lane == lane, _TABLE.c.available_at <= at)
    pending = sa.select(_TABLE.c.id).where(due).order_by(_TABLE.c.id).limit(limit).with_for_update(skip_locked=True)
    lease_them = (
        sa.update(_TABLE)
        .where(_TABLE.c.id.in_(pending))
        .values(available_at=at + lease, attempts=_TABLE.c.attempts + 1, claim=token)
        .returning(
            _TABLE.c.id,
            _TABLE.c.connection_id,
            _TABLE.c.delivery_id,
            _TABLE.c.headers,
            _TABLE.c.body,
            _TABLE.c.received_at,
            _TABLE.c.attempts,
            _TABLE.c.last_error,
        )
    )
    with hub.engine.begin() as connection:
        if connection.execute(sa.select(_TABLE.c.id).where(due).limit(1)).first() is None:
            return Claim(token, [])
        return Claim(token, sorted(connection.execute(lease_them).all(), key=lambda event: event.id))


@dataclass
class Marks:
    """What became of a claim's deliveries; written only where the claim still holds them."""

    done: list[int] = field(default_factory=list)
    ignored: dict[int, str] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    to_fetch: list[int] = field(default_factory=list)
    retry: dict[int, tuple[str, float]] = field(default_factory=dict)  # error, seconds to wait

    def write(self, db: sa.Connection, token: str) -> None:
        at = now()
        held = _TABLE.c.claim == token
        if self.done:  # the usual case, one statement for the batch
            db.execute(
                sa.update(_TABLE)
                .where(_TABLE.c.id.in_(self.done), held)
                .values(status=DeliveryStatus.DONE, last_error=None, processed_at=at, claim=None)
            )
        if self.to_fetch:
            db.execute(
                sa.update(_TABLE)
                .where(_TABLE.c.id.in_(self.to_fetch), held)
                .values(lane=Lane.FETCH, available_at=at, claim=None)
            )
        one = sa.update(_TABLE).where(_TABLE.c.id == sa.bindparam("_id"), held)
        finished = [
            {"_id": i, "_status": DeliveryStatus.IGNORED, "_error": reason} for i, reason in self.ignored.items()
        ]
        finished += [{"_id": i, "_status": DeliveryStatus.FAILED, "_error": error} for i, error in self.failed.items()]
        if finished:
            db.execute(
                one.values(
                    status=sa.bindparam("_status"), last_error=sa.bindparam("_error"), processed_at=at, claim=None
                ),
                finished,
            )
        if self.retry:
            db.execute(
                one.values(available_at=sa.bindparam("_at"), last_error=sa.bindparam("_error"), claim=None),
                [
                    {"_id": i, "_at": at + timedelta(seconds=wait), "_error": error}
                    for i, (error, wait) in self.retry.items()
                ],
            )

    def count(self) -> int:
        return len(self.done) + len(self.ignored) + len(self.failed) + len(self.to_fetch) + len(self.retry)


def _mark(hub: Hub, token: str, marks: Marks, events: list[sa.Row]) -> None:
    if marks.count():
        with hub.engine.begin() as connection:
            marks.write(connection, token)
        _observe(marks, events)


def _observe(marks: Marks, events: list[sa.Row]) -> None:
    """Count what became of deliveries, per connection, for /metrics."""
    connection_of = {event.id: event.connection_id for event in events}
    for outcome, ids in (
        (metrics.DeliveryOutcome.APPLIED, marks.done),
        (metrics.DeliveryOutcome.FAILED, marks.failed),
        (metrics.DeliveryOutcome.IGNORED, marks.ignored),
    ):
        per_connection: dict[str, int] = {}
        for event_id in ids:
            per_connection[connection_of[event_id]] = per_connection.get(connection_of[event_id], 0) + 1
        for connection_id, count in per_connection.items():
            metrics.delivery_outcomes(connection_id, outcome, count)


def backoff(attempts: int) -> float:
    return float(min(300, 2**attempts))


# -- applying ----------------------------------------------------------------------------


@dataclass
class _Ready:
    """One delivery's records, mapped and ready to write."""

    event: sa.Row
    raws: list[RawRecord]
    records: list[Unified]
    tombstones: list[Tombstone]


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _content(hub: Hub, event: sa.Row) -> WebhookContent:
    connector = hub.receiver(event.connection_id)
    payload = connector.decode_webhook(event.headers, event.body.encode())
    return connector.parse_webhook(event.headers, payload, event.received_at)


def _prepare(hub: Hub, event: sa.Row, upserts: list[RawRecord], deletions: list[Deletion]) -> _Ready:
    """Map a delivery's records; a record the mapping cannot read fails the delivery."""
    records, errors = map_records(hub, event.connection_id, upserts)
    if errors:
        raise ValueError("; ".join(errors[:3]) + (f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""))
    return _Ready(event, upserts, records, tombstones_for(hub, event.connection_id, deletions))


def _screen(hub: Hub, event: sa.Row, marks: Marks) -> bool:
    """Whether the delivery may be worked on; otherwise it is marked."""
    if event.connection_id not in hub.connections:
        marks.failed[event.id] = f"connection {event.connection_id!r} is no longer configured"
        return False
    limit = hub.settings.inbox_max_attempts
    if event.attempts > limit:
        marks.failed[event.id] = (
            f"gave up after {limit} attempts; last error: {event.last_error or 'none (the worker stopped)'}"
        )
        return False
    return True


async def apply_batch(hub: Hub, limit: int = 100) -> int:
    """Apply one claimed batch of the apply lane; how many deliveries were claimed."""
    claimed = await asyncio.to_thread(claim, hub, Lane.APPLY, limit)
    if claimed.events:
        await asyncio.to_thread(_apply_claimed, hub, claimed)
    return len(claimed.events)


def _apply_claimed(hub: Hub, claimed: Claim) -> None:
    hub.refresh_mappings()  # a version another process applied is used from this batch on
    marks = Marks()
    ready: list[_Ready] = []
    for event in claimed.events:
        if not _screen(hub, event, marks):
            continue
        try:
            content = _content(hub, event)
            if content.refetch:
                marks.to_fetch.append(event.id)
            elif content.ignored_reason and not (content.upserts or content.deletions):
                marks.ignored[event.id] = content.ignored_reason
            else:
                ready.append(_prepare(hub, event, content.upserts, content.deletions))
        except Exception as error:  # this delivery's content or mapping: it alone is parked
            marks.failed[event.id] = _describe(error)
    _mark(hub, claimed.token, marks, claimed.events)
    _write_by_connection(hub, claimed.token, ready, Origin.WEBHOOK)


def _write_by_connection(hub: Hub, token: str, ready: list[_Ready], origin: Origin) -> None:
    by_connection: dict[str, list[_Ready]] = {}
    for item in ready:
        by_connection.setdefault(item.event.connection_id, []).append(item)
    for connection_id, items in by_connection.items():
        _write(hub, connection_id, token, items, origin)


def _write(hub: Hub, connection_id: str, token: str, items: list[_Ready], origin: Origin) -> None:
    """Write deliveries' records and mark them, in one transaction. When that fails, halves
    are written apart until the offending delivery is alone, and parked."""
    kind = hub.connections[connection_id].kind
    try:
        with hub.store.transaction(connection_id, hub.mappings[kind].version_id) as tx:
            tx.save_raw([raw for item in items for raw in item.raws], origin)
            tx.upsert([record for item in items for record in item.records], origin)
            tx.delete([tombstone for item in items for tombstone in item.tombstones], Origin.WEBHOOK)
            marks = Marks()
            for item in items:
                tied = any((r.entity, r.external_id) in tx.ties for r in item.records)
                (marks.to_fetch if tied else marks.done).append(item.event.id)
            marks.write(tx.db, token)
        _observe(marks, [item.event for item in items])
    except _DATABASE_DOWN:
        raise
    except Exception as error:
        if len(items) == 1:
            with log_context(connection_id=connection_id, delivery_id=items[0].event.delivery_id):
                log.warning("delivery parked as failed: %s", error)
            _mark(hub, token, Marks(failed={items[0].event.id: _describe(error)}), [items[0].event])
            return
        half = len(items) // 2
        _write(hub, connection_id, token, items[:half], origin)
        _write(hub, connection_id, token, items[half:], origin)


# -- the fetch lane ----------------------------------------------------------------------


async def fetch_batch(hub: Hub, limit: int = FETCH_BATCH) -> int:
    """Fetch and apply one claimed batch of the fetch lane; how many were claimed."""
    deadline = hub.settings.fetch_deadline_seconds
    claimed = await asyncio.to_thread(claim, hub, Lane.FETCH, limit, LEASE + timedelta(seconds=deadline))
    if not claimed.events:
        return 0
    await asyncio.to_thread(hub.refresh_mappings)
    marks = Marks()
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(event: sa.Row) -> _Ready | None:
        async with gate:
            try:
                return await asyncio.wait_for(_fetched(hub, event), deadline)
            except (TransientError, TimeoutError) as error:
                reason = _describe(error) if str(error) else f"the tool did not answer within {deadline:g} s"
                if event.attempts >= hub.settings.inbox_max_attempts:
                    marks.failed[event.id] = f"gave up after {event.attempts} attempts; last error: {reason}"
                else:
                    marks.retry[event.id] = (reason, backoff(event.attempts))
            except Exception as error:
                marks.failed[event.id] = _describe(error)
            return None

    screened = [event for event in claimed.events if _screen(hub, event, marks)]
    ready = [item for item in await asyncio.gather(*(one(event) for event in screened)) if item is not None]
    await asyncio.to_thread(_mark, hub, claimed.token, marks, claimed.events)
    await asyncio.to_thread(_write_by_connection, hub, claimed.token, ready, Origin.FETCH)
    return len(claimed.events)


async def _fetched(hub: Hub, event: sa.Row) -> _Ready:
    """The delivery's records as the tool has them now: every record it names is fetched."""
    content = await asyncio.to_thread(_content, hub, event)
    connector = hub.fetcher(event.connection_id)
    wanted = list(dict.fromkeys([*content.refetch, *((raw.record_type, raw.external_id) for raw in content.upserts)]))
    upserts: list[RawRecord] = []
    deletions = list(content.deletions)
    for record_type, external_id in wanted:
        known = await asyncio.to_thread(hub.store.raw_payload, event.connection_id, record_type, external_id)
        fetched = await connector.fetch_one(record_type, external_id, known)
        if fetched is None:
            deletions.append(Deletion(record_type, external_id, event.received_at))
        else:
            upserts.append(fetched)
    return await asyncio.to_thread(_prepare, hub, event, upserts, deletions)


# -- keeping the inbox -------------------------------------------------------------------


def prune(hub: Hub) -> int:
    """Delete applied and ignored deliveries older than the retention period (failed ones
    stay for a person to see), remembering per connection the newest one pruned."""
    cutoff = now() - timedelta(days=hub.settings.inbox_retention_days)
    finished = sa.and_(
        _TABLE.c.status.in_([DeliveryStatus.DONE, DeliveryStatus.IGNORED]), _TABLE.c.processed_at < cutoff
    )
    connections = table_of(Connection)
    total = 0
    while True:
        with hub.engine.begin() as db:
            rows = db.execute(
                sa.select(_TABLE.c.id, _TABLE.c.connection_id, _TABLE.c.received_at)
                .where(finished)
                .order_by(_TABLE.c.id)
                .limit(PRUNE_BATCH)
            ).all()
            if not rows:
                return total
            newest: dict[str, datetime] = {}
            for row in rows:
                newest[row.connection_id] = max(row.received_at, newest.get(row.connection_id, row.received_at))
            for connection_id, received in newest.items():
                db.execute(
                    sa.update(connections)
                    .where(
                        connections.c.id == connection_id,
                        sa.or_(connections.c.pruned_through.is_(None), connections.c.pruned_through < received),
                    )
                    .values(pruned_through=received)
                )
            db.execute(sa.delete(_TABLE).where(_TABLE.c.id.in_([row.id for row in rows])))
            total += len(rows)


def replay(hub: Hub, event_ids: list[int]) -> int:
    """Put failed deliveries back in the queue (after a fix to a mapping or a connector)."""
    with hub.engine.begin() as connection:
        return connection.execute(
            sa.update(_TABLE)
            .where(_TABLE.c.id.in_(event_ids), _TABLE.c.status == DeliveryStatus.FAILED)
            .values(
                status=DeliveryStatus.PENDING,
                lane=Lane.APPLY,
                attempts=0,
                available_at=now(),
                last_error=None,
                claim=None,
            )
        ).rowcount

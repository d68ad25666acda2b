"""The durable webhook inbox: verified deliveries are stored before they are acknowledged,
then applied by workers a batch at a time. Applying a delivery twice is harmless."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, select

from service.clock import now
from service.contract import ConnectorError, Deletion, RawRecord, TransientError, WebhookContent
from service.hub import Hub
from service.models import InboxEvent
from service.models import RawRecord as StoredRaw
from service.sync import map_records, tombstones_for

log = logging.getLogger("opsync.inbox")
LEASE = timedelta(seconds=15)  # a worker that died mid-batch: its claims return to the queue then
MAX_ATTEMPTS = 8
# Headers worth keeping with a delivery (never Authorization or cookies).
KEPT_HEADERS = ("content-type", "x-github-event", "x-github-delivery", "x-github-hook-id",
                "x-atlassian-webhook-identifier", "x-atlassian-webhook-flow",
                "x-atlassian-webhook-retry", "user-agent")


class UnknownConnection(LookupError):
    pass


class BadDelivery(ValueError):
    """The body is not what the tool sends (not JSON): 400, nothing stored."""


def accept(hub: Hub, connection_id: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """Verify one delivery and make its inbox row. Raises UnknownConnection, WebhookRejected,
    BadDelivery. CPU only (an HMAC and a JSON parse), so it runs on the event loop."""
    if connection_id not in hub.connections:
        raise UnknownConnection(f"no connection {connection_id!r}")
    connector = hub.connector(connection_id)
    lowered = {k.lower(): v for k, v in headers.items()}
    connector.verify_webhook(lowered, body)
    try:
        connector.decode_webhook(lowered, body)
    except ValueError as error:
        raise BadDelivery(f"the body is not a JSON document ({error})") from None
    at = now()
    return {"connection_id": connection_id, "delivery_id": connector.delivery_id(lowered, body),
            "received_at": at, "headers": {k: lowered[k] for k in KEPT_HEADERS if k in lowered},
            "body": body.decode("utf-8", errors="replace"), "status": "pending", "attempts": 0,
            "available_at": at}


def store(hub: Hub, rows: list[dict[str, Any]]) -> list[bool]:
    """Insert accepted deliveries in one transaction; for each, whether it is a duplicate: a
    redelivery (also one within rows) keeps the first one's row."""
    table = InboxEvent.__table__
    keys = [(row["connection_id"], row["delivery_id"]) for row in rows]
    with hub.engine.begin() as connection:
        seen = set(connection.execute(sa.select(table.c.connection_id, table.c.delivery_id)
                                      .where(sa.tuple_(table.c.connection_id, table.c.delivery_id).in_(keys))).all())
        duplicates, fresh = [], []
        for key, row in zip(keys, rows):
            duplicates.append(key in seen)
            if key not in seen:
                seen.add(key)
                fresh.append(row)
        if fresh:  # a row another process stored meanwhile stays as it is
            connection.execute(_insert(hub).on_conflict_do_nothing(index_elements=["connection_id", "delivery_id"]),
                               fresh)
    return duplicates


def _insert(hub: Hub):  # noqa: ANN202  (the dialect's INSERT, which knows ON CONFLICT)
    return (postgresql.insert if hub.engine.dialect.name == "postgresql" else sqlite.insert)(InboxEvent.__table__)


class Intake:
    """Stores the deliveries that arrive together in one transaction: one commit (one fsync,
    one SQLite write lock) for many requests, each answered only after that commit."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._waiting: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task | None = None

    async def store(self, row: dict[str, Any]) -> bool:
        """Store row, committed when this returns; whether it was a duplicate."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((row, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    duplicates = await asyncio.to_thread(store, self.hub, [row for row, _ in group])
                except Exception as error:  # nothing of this group was stored: each request fails
                    for _, future in group:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), duplicate in zip(group, duplicates):
                    if not future.done():
                        future.set_result(duplicate)
        finally:
            self._writer = None


def claim(hub: Hub, limit: int) -> list[sa.Row]:
    """Lease a batch of pending deliveries, in one statement; another worker skips them
    (SKIP LOCKED on PostgreSQL) until the lease ends."""
    at = now()
    table = InboxEvent.__table__
    pending = (sa.select(table.c.id).where(table.c.status == "pending", table.c.available_at <= at)
               .order_by(table.c.id).limit(limit).with_for_update(skip_locked=True))
    lease = (sa.update(table).where(table.c.id.in_(pending))
             .values(available_at=at + LEASE, attempts=table.c.attempts + 1)
             .returning(table.c.id, table.c.connection_id, table.c.headers, table.c.body, table.c.received_at))
    with hub.engine.begin() as connection:
        return sorted(connection.execute(lease).all(), key=lambda event: event.id)


async def _content(hub: Hub, event: sa.Row) -> WebhookContent:
    connector = hub.connector(event.connection_id)
    payload = connector.decode_webhook(event.headers, event.body.encode())
    content = connector.parse_webhook(event.headers, payload, event.received_at)
    for record_type, external_id in content.refetch:
        with Session(hub.engine) as session:
            known = session.exec(select(StoredRaw.payload).where(
                StoredRaw.connection_id == event.connection_id, StoredRaw.record_type == record_type,
                StoredRaw.external_id == external_id)).first()
        fetched = await connector.fetch_one(record_type, external_id, known)
        if fetched is None:
            content.deletions.append(Deletion(record_type, external_id, event.received_at))
        else:
            content.upserts.append(fetched)
    return content


async def process_batch(hub: Hub, limit: int = 100) -> int:
    """Apply one claimed batch; returns how many deliveries were claimed."""
    events = await asyncio.to_thread(claim, hub, limit)
    by_connection: dict[str, list[sa.Row]] = {}
    for event in events:
        by_connection.setdefault(event.connection_id, []).append(event)
    for connection_id, batch in by_connection.items():
        if connection_id not in hub.connections:
            _finish(hub, batch, {e.id: "connection no longer configured" for e in batch}, {})
            continue
        upserts: list[RawRecord] = []
        deletions: list[Deletion] = []
        failures: dict[int, str] = {}
        retry: dict[int, str] = {}
        ignored: dict[int, str] = {}
        for event in batch:
            try:
                content = await _content(hub, event)
            except TransientError as error:
                retry[event.id] = str(error)
                continue
            except (ConnectorError, ValueError, KeyError, TypeError) as error:
                failures[event.id] = f"{type(error).__name__}: {error}"
                continue
            if content.ignored_reason and not (content.upserts or content.deletions):
                ignored[event.id] = content.ignored_reason
            upserts += content.upserts
            deletions += content.deletions
        await asyncio.to_thread(_apply, hub, connection_id, batch, upserts, deletions, failures, retry, ignored)
    return len(events)


def _apply(hub: Hub, connection_id: str, batch: list[sa.Row], upserts: list[RawRecord],
           deletions: list[Deletion], failures: dict[int, str], retry: dict[int, str],
           ignored: dict[int, str]) -> None:
    """Write a batch's records and mark its deliveries, in one transaction."""
    mapped, errors = map_records(hub, connection_id, upserts)
    for message in errors:
        log.warning("webhook record not mapped: %s", message)
    kind = hub.connections[connection_id].kind
    with hub.store.transaction(connection_id, hub.mappings[kind].version_id) as tx:
        tx.save_raw(upserts)
        tx.upsert(mapped)
        tx.delete(tombstones_for(hub, connection_id, deletions))
        _mark(tx.session, batch, failures, retry, ignored)


def _mark(session: Session, batch: list[sa.Row], failures: dict[int, str], retry: dict[int, str],
          ignored: dict[int, str]) -> None:
    at = now()
    # the usual case, applied, is one UPDATE for the whole batch; the others go row by row
    done = [e.id for e in batch if e.id not in failures and e.id not in retry and e.id not in ignored]
    if done:
        session.execute(sa.update(InboxEvent).where(InboxEvent.id.in_(done))
                        .values(status="done", last_error=None, processed_at=at))
    for event in batch:
        if event.id in done:
            continue
        row = session.get(InboxEvent, event.id)
        if event.id in retry and row.attempts < MAX_ATTEMPTS:
            # back off, then another claim retries it
            row.available_at = at + timedelta(seconds=min(300, 2 ** row.attempts))
            row.last_error = retry[event.id]
            continue
        error = failures.get(event.id) or retry.get(event.id)
        row.status = "failed" if error else "ignored"
        row.last_error = error or ignored.get(event.id)
        row.processed_at = at


def _finish(hub: Hub, batch: list[sa.Row], failures: dict[int, str], ignored: dict[int, str]) -> None:
    with Session(hub.engine) as session:
        _mark(session, batch, failures, {}, ignored)
        session.commit()


def replay(hub: Hub, event_ids: list[int]) -> int:
    """Put failed deliveries back in the queue (after a fix to a mapping or a connector)."""
    with Session(hub.engine) as session:
        result = session.execute(sa.update(InboxEvent)
                                 .where(InboxEvent.id.in_(event_ids), InboxEvent.status == "failed")
                                 .values(status="pending", attempts=0, available_at=now(), last_error=None))
        session.commit()
        return result.rowcount


def pending_count(hub: Hub) -> int:
    with Session(hub.engine) as session:
        return session.exec(select(sa.func.count()).select_from(InboxEvent)
                            .where(InboxEvent.status == "pending")).one()


def inbox_summary(hub: Hub) -> dict[str, Any]:
    with Session(hub.engine) as session:
        rows = session.exec(select(InboxEvent.status, sa.func.count()).group_by(InboxEvent.status)).all()
    return {status: count for status, count in rows}

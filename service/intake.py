"""Webhook intake: a delivery is verified, and stored durably with the others that arrive with
it, before it is acknowledged. Workers apply it later (service/inbox.py). A redelivery (the
same delivery id) or a replay (the same body) is a duplicate."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from opsync.service.clock import now
from opsync.service.db import insert_many
from opsync.service.hub import Hub
from opsync.service.models import Connection, DeliveryStatus, InboxEvent, Lane, table_of

CLOCK_SKEW = timedelta(hours=1)  # between a tool's signing clock and ours
_TABLE = table_of(InboxEvent)


class BadDelivery(ValueError):
    """The body is not what the tool sends (not JSON): 400, nothing stored."""


class StaleDelivery(ValueError):
    """The body was signed before deliveries this inbox has already pruned: it may be one of
    them, so it is refused rather than applied again (400, nothing stored)."""


def accept(
    hub: Hub, connection_id: str, headers: Mapping[str, str], body: bytes, *, path: str = "/", query: str = ""
) -> dict[str, Any]:
    """Verify one delivery and make its inbox row. Raises WebhookRejected, BadDelivery,
    StaleDelivery. CPU only in the usual case (an HMAC and a JSON parse), so it runs on the
    event loop.

    path is what the URL says after the connection's webhook URL ("/" when nothing), query its
    raw query string: some tools name the event there, or sign them. The connector sees them as
    the pseudo-headers `:path` and `:query` (kept with the delivery if it names them in
    delivery_headers)."""
    connector = hub.receiver(connection_id)
    lowered = {k.lower(): v for k, v in headers.items()} | {":method": "POST", ":path": path, ":query": query}
    connector.verify_webhook(lowered, body)
    try:
        payload = connector.decode_webhook(lowered, body)
    except ValueError as error:
        raise BadDelivery(f"the body is not a JSON document ({error})") from None
    at = now()
    signed = connector.signed_at(lowered, payload)
    if signed is not None and signed < at - timedelta(days=hub.settings.inbox_retention_days):
        _refuse_if_pruned(hub, connection_id, signed)
    return {
        "connection_id": connection_id,
        "delivery_id": connector.delivery_id(lowered, body),
        "body_hash": hashlib.sha256(body).hexdigest(),
        "received_at": at,
        "headers": {k: lowered[k] for k in ("content-type", *connector.delivery_headers) if k in lowered},
        "body": body.decode("utf-8", errors="replace"),
        "status": DeliveryStatus.PENDING,
        "lane": Lane.APPLY,
        "attempts": 0,
        "available_at": at,
    }


def _refuse_if_pruned(hub: Hub, connection_id: str, signed: datetime) -> None:
    """A body signed before the newest pruned delivery may have been pruned: its duplicate
    could no longer be recognised. (Read only for old bodies: never on the usual path.)"""
    with hub.engine.connect() as connection:
        pruned = connection.execute(
            sa.select(table_of(Connection).c.pruned_through).where(table_of(Connection).c.id == connection_id)
        ).scalar()
    if pruned is not None and signed <= pruned + CLOCK_SKEW:
        raise StaleDelivery(
            f"the delivery was signed at {signed:%Y-%m-%d %H:%M:%S} UTC, before deliveries this hub has already"
            f" pruned (kept {hub.settings.inbox_retention_days:g} days): it may be one of them, so it is not"
            " applied again"
        )


def store(hub: Hub, rows: list[dict[str, Any]]) -> list[bool]:
    """Insert accepted deliveries in one transaction; for each, whether it is a duplicate: a
    redelivery (same delivery id) or a replay (same body), also one within rows, keeps the
    first one's row."""
    with hub.engine.begin() as connection:
        seen_ids, seen_hashes = _stored(connection, rows)
        duplicates, fresh = [], []
        for row in rows:
            key, body = (row["connection_id"], row["delivery_id"]), (row["connection_id"], row["body_hash"])
            duplicate = key in seen_ids or body in seen_hashes
            duplicates.append(duplicate)
            if not duplicate:
                seen_ids.add(key)
                seen_hashes.add(body)
                fresh.append(row)
        # a row another process stored meanwhile stays as it is
        insert_many(connection, _TABLE, fresh, skip_conflicts=True)
    return duplicates


def _lookup() -> sa.CompoundSelect:
    """The stored rows among a connection's delivery ids and body hashes, by each unique index:
    connection_id = :id lets SQLite search the index (a (connection_id, delivery_id) IN (...)
    scans it whole). Built once; each use only binds its values."""
    columns = (_TABLE.c.connection_id, _TABLE.c.delivery_id, _TABLE.c.body_hash)
    connection_id: sa.BindParameter[str] = sa.bindparam("connection_id")
    return sa.union_all(
        sa.select(*columns).where(
            _TABLE.c.connection_id == connection_id, _TABLE.c.delivery_id.in_(sa.bindparam("ids", expanding=True))
        ),
        sa.select(*columns).where(
            _TABLE.c.connection_id == connection_id, _TABLE.c.body_hash.in_(sa.bindparam("hashes", expanding=True))
        ),
    )


_LOOKUP = _lookup()


def _stored(connection: sa.Connection, rows: list[dict[str, Any]]) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """The (connection_id, delivery_id) and (connection_id, body_hash) pairs of rows that the
    inbox holds already."""
    by_connection: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_connection.setdefault(row["connection_id"], []).append(row)
    ids, hashes = set(), set()
    for connection_id, mine in by_connection.items():
        wanted = {
            "connection_id": connection_id,
            "ids": [row["delivery_id"] for row in mine],
            "hashes": [row["body_hash"] for row in mine],
        }
        for _, delivery_id, body_hash in connection.execute(_LOOKUP, wanted):
            ids.add((connection_id, delivery_id))
            hashes.add((connection_id, body_hash))
    return ids, hashes


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
                for (_, future), duplicate in zip(group, duplicates, strict=True):
                    if not future.done():
                        future.set_result(duplicate)
        finally:
            self._writer = None

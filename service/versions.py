"""The versioning rules, for records and raw payloads alike, and the raw payload store.

A raw payload is kept as the tool sent it, so that a new mapping re-normalises every record
without contacting the tool.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from enum import Enum
from typing import Any

import orjson
import sqlalchemy as sa

from opsync.service.contract import RawRecord
from opsync.service.db import insert_many, update_many
from opsync.service.models import Origin, StoredPayload, table_of
from opsync.service.rules import canonical_bytes

__all__ = ["Verdict", "canonical_json", "jsonable", "judge", "save_payloads"]


class Verdict(Enum):
    NEWER = "newer"  # the incoming content replaces the stored one
    SAME = "same"  # the same content (its version may still move forward)
    STALE = "stale"  # the stored content stays
    TIE = "tie"  # two webhook bodies of one version disagree: only the tool can say which is right


def judge(
    version: datetime | None,
    origin: Origin,
    digest: str,
    stored_version: datetime | None,
    stored_origin: str | None,
    stored_digest: str | None,
) -> Verdict:
    """Does incoming content win over the stored one? The versioning rules, for records and
    raw payloads alike."""
    if stored_digest is None:  # a tombstone that never had content
        return Verdict.NEWER
    if digest == stored_digest:
        return Verdict.SAME
    if version != stored_version:
        if version is None or stored_version is None:
            return Verdict.NEWER if version is not None else Verdict.STALE
        return Verdict.NEWER if version > stored_version else Verdict.STALE
    stored = Origin(stored_origin) if stored_origin else Origin.FETCH
    if origin is not stored:
        return Verdict.NEWER if origin is Origin.FETCH else Verdict.STALE
    if origin is Origin.WEBHOOK:
        return Verdict.TIE
    return Verdict.NEWER if digest > stored_digest else Verdict.STALE


def jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def canonical_json(payload: Any) -> tuple[orjson.Fragment, str]:
    """A payload serialised once, with sorted keys, and its hash: the JSON column writes
    the fragment as it is instead of serialising the payload (often 10 KB) again."""
    serialized = canonical_bytes(payload)
    return orjson.Fragment(serialized), hashlib.sha256(serialized).hexdigest()


def save_payloads(
    db: sa.Connection,
    connection_id: str,
    at: datetime,
    raws: list[RawRecord],
    origin: Origin,
    serialized: list[tuple[bytes, str]] | None = None,
) -> None:
    """Keep the payloads as received, so a new mapping re-normalises without refetching;
    by the same versioning rules as the records. serialized: each raw's canonical JSON and
    its hash, when they were made already (by a mapper process)."""
    if not raws:
        return
    table = table_of(StoredPayload)
    latest: dict[tuple[str, str], tuple[RawRecord, orjson.Fragment, str]] = {}
    for index, raw in enumerate(raws):
        key = (raw.record_type, raw.external_id)
        if serialized is None:
            payload, digest = canonical_json(raw.payload)
        else:
            payload, digest = orjson.Fragment(serialized[index][0]), serialized[index][1]
        kept = latest.get(key)
        if kept is None or judge(raw.version, origin, digest, kept[0].version, origin, kept[2]) is Verdict.NEWER:
            latest[key] = (raw, payload, digest)
    stored: dict[tuple[str, str], sa.Row[Any]] = {}
    for record_type in {k[0] for k in latest}:  # the unique index is (connection, type, id)
        stored |= {
            (row.record_type, row.external_id): row
            for row in db.execute(
                sa.select(
                    table.c.id,
                    table.c.record_type,
                    table.c.external_id,
                    table.c.hash,
                    table.c.version,
                    table.c.origin,
                ).where(
                    table.c.connection_id == connection_id,
                    table.c.record_type == record_type,
                    table.c.external_id.in_({k[1] for k in latest if k[0] == record_type}),
                )
            )
        }
    inserts, updates = [], []
    for key, (raw, payload, digest) in latest.items():
        row = stored.get(key)
        if row is None:
            inserts.append(
                {
                    "connection_id": connection_id,
                    "record_type": raw.record_type,
                    "external_id": raw.external_id,
                    "payload": payload,
                    "hash": digest,
                    "fetched_at": at,
                    "version": raw.version,
                    "origin": origin,
                }
            )
            continue
        verdict = judge(raw.version, origin, digest, row.version, row.origin, row.hash)
        if verdict is Verdict.NEWER or (
            verdict is Verdict.SAME and raw.version is not None and (row.version is None or raw.version > row.version)
        ):
            updates.append(
                {
                    "_id": row.id,
                    "payload": payload,
                    "hash": digest,
                    "fetched_at": at,
                    "version": raw.version,
                    "origin": origin,
                }
            )
    insert_many(db, table, inserts)
    update_many(db, table, updates)

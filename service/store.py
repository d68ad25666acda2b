"""The one place that writes synced records, applying the versioning rules.

Rules (order-independent, so webhooks and pulls can arrive in any order):
- a row keeps the values of the newest version seen; an older version is stale;
  an equal version with another content hash is decided by the higher hash;
- a delete at T tombstones a row whose version is not newer than T; an upsert
  resurrects it only if its version is newer than the tombstone;
- only a real change of content writes a Change row, numbered gap-free and in
  commit order (writers serialise on the change counter row).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from service.clock import now
from service.contract import RawRecord as RawRecordIn
from service.mapping import LinkRef, PersonRef, Unified
from service.models import (
    ENTITY_TABLES,
    Change,
    ChangeCounter,
    Link,
    Person,
    PersonIdentity,
    RawRecord,
    SyncedRecord,
)

PERSON_COLUMNS = {"assignee": "assignee_id", "reporter": "reporter_id", "author": "author_id"}


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    deleted: int = 0

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class Tombstone:
    entity: str
    external_id: str
    at: datetime
    record: Unified | None = None  # the record as it was when deleted, if the tool sent it


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def payload_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class Transaction:
    """One write transaction; see Store.transaction."""

    def __init__(self, session: Session, connection_id: str, mapping_version_id: int | None) -> None:
        self.session = session
        self.connection_id = connection_id
        self.mapping_version_id = mapping_version_id
        self.counts = Counts()
        self._seq = session.exec(select(ChangeCounter.value).where(ChangeCounter.id == 1)).one()
        self._at = now()

    # -- changes -----------------------------------------------------------------------
    def _change(self, entity: str, entity_id: int, op: str, changed: dict[str, list[Any]]) -> None:
        self._seq += 1
        self.session.add(Change(seq=self._seq, entity=entity, entity_id=entity_id, op=op,
                                fields=changed, at=self._at))

    def finish(self) -> None:
        self.session.execute(sa.update(ChangeCounter).where(ChangeCounter.id == 1).values(value=self._seq))

    # -- people ------------------------------------------------------------------------
    def _people(self, refs: list[PersonRef]) -> dict[str, int]:
        """Tool person id -> hub person id, creating people; one person across tools by email."""
        wanted = {r.external_id: r for r in refs}
        if not wanted:
            return {}
        rows = self.session.exec(select(PersonIdentity).where(
            PersonIdentity.connection_id == self.connection_id,
            PersonIdentity.external_id.in_(list(wanted)),
        )).all()
        found = {row.external_id: row.person_id for row in rows}
        for external_id, ref in wanted.items():
            if external_id in found:
                continue
            email = ref.email.lower() if ref.email else None
            person = self.session.exec(select(Person).where(Person.email == email)).first() if email else None
            if person is None:
                person = Person(display_name=ref.display_name or ref.login, email=email)
                self.session.add(person)
                self.session.flush()
            self.session.add(PersonIdentity(person_id=person.id, connection_id=self.connection_id,
                                            external_id=external_id, login=ref.login,
                                            display_name=ref.display_name))
            found[external_id] = person.id
        return found

    # -- records -----------------------------------------------------------------------
    def _existing(self, table: type[SyncedRecord], external_ids: list[str]) -> dict[str, SyncedRecord]:
        rows = self.session.exec(select(table).where(
            table.connection_id == self.connection_id, table.external_id.in_(external_ids)
        )).all()
        return {row.external_id: row for row in rows}

    def _columns(self, record: Unified, people: dict[str, int]) -> dict[str, Any]:
        columns = dict(record.values)
        for name, ref in record.people.items():
            columns[PERSON_COLUMNS[name]] = people[ref.external_id] if ref else None
        columns["product_key"] = record.product_key
        return columns

    def _set_links(self, entity: str, row_id: int, links: list[LinkRef]) -> None:
        self.session.execute(sa.delete(Link).where(Link.from_entity == entity, Link.from_id == row_id))
        for link in {(l.type, l.to_entity, l.to_key): l for l in links}.values():
            self.session.add(Link(from_entity=entity, from_id=row_id, to_entity=link.to_entity,
                                  to_key=link.to_key, type=link.type, origin=link.origin,
                                  evidence=link.evidence))

    def _newer(self, record: Unified, row: SyncedRecord) -> bool:
        """Does record win over the row's stored version?"""
        if row.content_hash is None:  # a tombstone that never had content
            return True
        if record.version != row.source_updated_at:
            if record.version is None or row.source_updated_at is None:
                return record.version is not None
            return record.version > row.source_updated_at
        return record.content_hash > row.content_hash

    def upsert(self, records: list[Unified]) -> None:
        people = self._people([r for u in records for r in u.people.values() if r])
        for entity in {r.entity for r in records}:
            table = ENTITY_TABLES[entity]
            batch = [r for r in records if r.entity == entity]
            existing = self._existing(table, list({r.external_id for r in batch}))
            for record in batch:
                existing[record.external_id] = self._upsert_one(table, record, existing.get(record.external_id), people)

    def _upsert_one(self, table: type[SyncedRecord], record: Unified, row: SyncedRecord | None,
                    people: dict[str, int]) -> SyncedRecord:
        entity = record.entity
        columns = self._columns(record, people)
        if row is None:
            row = table(connection_id=self.connection_id, external_id=record.external_id,
                        source_updated_at=record.version, content_hash=record.content_hash,
                        mapping_version_id=self.mapping_version_id, updated_at=self._at, **columns)
            self.session.add(row)
            self.session.flush()
            self._set_links(entity, row.id, record.links)
            self._change(entity, row.id, "create",
                         {k: [None, _jsonable(v)] for k, v in columns.items() if v not in (None, [], {})})
            self.counts.created += 1
            return row
        same_content = record.content_hash == row.content_hash
        if not same_content and not self._newer(record, row):
            self.counts.stale += 1
            return row
        changed: dict[str, list[Any]] = {}
        if not same_content:
            for name, value in columns.items():
                old = getattr(row, name)
                if old != value:
                    changed[name] = [_jsonable(old), _jsonable(value)]
                    setattr(row, name, value)
            row.content_hash = record.content_hash
            row.mapping_version_id = self.mapping_version_id
            row.source_updated_at = record.version
            self._set_links(entity, row.id, record.links)
        elif record.version is not None and (row.source_updated_at is None or record.version > row.source_updated_at):
            row.source_updated_at = record.version  # same content, newer version: no Change
        if row.deleted_at is not None and record.version is not None and record.version > row.deleted_at:
            changed["deleted_at"] = [_jsonable(row.deleted_at), None]
            row.deleted_at = None
        if changed:
            row.updated_at = self._at
            self._change(entity, row.id, "update", changed)
            self.counts.updated += 1
        else:
            self.counts.unchanged += 1
        return row

    def delete(self, tombstones: list[Tombstone]) -> None:
        with_records = [t.record for t in tombstones if t.record is not None]
        if with_records:
            counted = replace(self.counts)
            self.upsert(with_records)  # the deleted record's last content, counted as the delete
            self.counts = counted
        for entity in {t.entity for t in tombstones}:
            table = ENTITY_TABLES[entity]
            batch = [t for t in tombstones if t.entity == entity]
            existing = self._existing(table, list({t.external_id for t in batch}))
            for tombstone in batch:
                existing[tombstone.external_id] = self._delete_one(table, tombstone, existing.get(tombstone.external_id))

    def _delete_one(self, table: type[SyncedRecord], tombstone: Tombstone, row: SyncedRecord | None) -> SyncedRecord:
        entity = tombstone.entity
        if row is None:
            row = table(connection_id=self.connection_id, external_id=tombstone.external_id,
                        deleted_at=tombstone.at, updated_at=self._at)
            self.session.add(row)
            self.session.flush()
            self._change(entity, row.id, "delete", {"deleted_at": [None, _jsonable(tombstone.at)]})
            self.counts.deleted += 1
            return row
        if row.deleted_at is not None:
            if tombstone.at > row.deleted_at:
                row.deleted_at = tombstone.at  # the latest delete time, so any order ends alike
            self.counts.unchanged += 1
            return row
        if row.source_updated_at is not None and tombstone.at < row.source_updated_at:
            self.counts.stale += 1
            return row
        row.deleted_at = tombstone.at
        row.updated_at = self._at
        self._change(entity, row.id, "delete", {"deleted_at": [None, _jsonable(tombstone.at)]})
        self.counts.deleted += 1
        return row

    def save_raw(self, raws: list[RawRecordIn]) -> None:
        """Keep the payloads as received, so a new mapping re-normalises without refetching."""
        if not raws:
            return
        latest = {(r.record_type, r.external_id): r for r in raws}
        rows = self.session.exec(select(RawRecord).where(
            RawRecord.connection_id == self.connection_id,
            RawRecord.external_id.in_([k[1] for k in latest]),
        )).all()
        stored = {(r.record_type, r.external_id): r for r in rows}
        for key, raw in latest.items():
            digest = payload_hash(raw.payload)
            row = stored.get(key)
            if row is None:
                self.session.add(RawRecord(connection_id=self.connection_id, record_type=raw.record_type,
                                           external_id=raw.external_id, payload=raw.payload,
                                           hash=digest, fetched_at=self._at))
            elif row.hash != digest:
                row.payload, row.hash, row.fetched_at = raw.payload, digest, self._at


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def transaction(self, connection_id: str, mapping_version_id: int | None = None) -> Iterator[Transaction]:
        """A write transaction: everything in it commits together or not at all."""
        with Session(self.engine, expire_on_commit=False) as session:
            # The first statement takes the writers' lock (row lock on PostgreSQL, the
            # database write lock on SQLite) so seqs are handed out in commit order.
            session.execute(sa.update(ChangeCounter).where(ChangeCounter.id == 1)
                            .values(value=ChangeCounter.value))
            tx = Transaction(session, connection_id, mapping_version_id)
            yield tx
            tx.finish()
            session.commit()

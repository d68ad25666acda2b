"""The one place that writes synced records, applying the versioning rules.

Rules (order-independent, so webhooks and pulls can arrive in any order):
- a row keeps the values of the newest version seen; an older version is stale;
  at an equal version with other content, what the tool answered (a pull or a fetch) wins
  over a webhook body; two fetched contents are decided by the higher hash; two webhook
  bodies are a tie that the caller settles by fetching the record (Transaction.ties);
- raw payloads follow the same rules, by their own hash;
- a delete at T tombstones a row whose version is not newer than T; an upsert
  resurrects it only if its version is newer than the tombstone;
- only a real change of content writes a Change row, numbered gap-free and in
  commit order (writers serialise on the change counter row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from opsync.service.clock import now
from opsync.service.contract import RawRecord
from opsync.service.db import insert_many, update_many
from opsync.service.entities import entity
from opsync.service.mapping import LinkRef, PersonRef, Unified
from opsync.service.models import (
    Change,
    ChangeCounter,
    Link,
    Origin,
    Person,
    PersonIdentity,
    StoredPayload,
    UTCDateTime,
    id_of,
    table_of,
)
from opsync.service.versions import Verdict, jsonable, judge, save_payloads


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


class Transaction:
    """One write transaction; see Store.transaction."""

    def __init__(
        self, session: Session, connection_id: str, mapping_version_id: int | None, remapping: bool = False
    ) -> None:
        self.session = session  # for the rare ORM writes (new people)
        self.db = session.connection()  # for the bulk statements: Core, no ORM bookkeeping
        self.connection_id = connection_id
        self.mapping_version_id = mapping_version_id
        # Re-mapping stored raw records: at the version a record already has, the mapping in
        # use wins (the content differs because the mapping does); tombstones stay.
        self.remapping = remapping
        self.changes: list[tuple[str, str, str, dict[str, list[Any]]]] = []  # (entity, external id, op, fields)
        self.counts = Counts()
        self.ties: set[tuple[str, str]] = set()  # (entity, external_id) to fetch: see judge
        # The first statement takes the writers' lock (row lock on PostgreSQL, the database
        # write lock on SQLite), so seqs are handed out in commit order.
        counter = table_of(ChangeCounter)
        self._seq = self.db.execute(
            sa.update(counter).where(counter.c.id == 1).values(value=counter.c.value).returning(counter.c.value)
        ).scalar_one()
        self._at = now()

    # -- changes -----------------------------------------------------------------------
    def finish(self) -> None:
        counter = table_of(ChangeCounter)
        self.db.execute(sa.update(counter).where(counter.c.id == 1).values(value=self._seq))

    # -- people ------------------------------------------------------------------------
    def _people(self, refs: list[PersonRef]) -> dict[str, int]:
        """Tool person id -> hub person id, creating people; one person across tools by email."""
        wanted = {r.external_id: r for r in refs}
        if not wanted:
            return {}
        identity = table_of(PersonIdentity)
        found: dict[str, int] = {
            external_id: person_id
            for external_id, person_id in self.db.execute(
                sa.select(identity.c.external_id, identity.c.person_id).where(
                    identity.c.connection_id == self.connection_id, identity.c.external_id.in_(list(wanted))
                )
            )
        }
        if len(found) == len(wanted):
            return found
        for external_id, ref in wanted.items():
            if external_id in found:
                continue
            email = ref.email.lower() if ref.email else None
            person = self.session.exec(select(Person).where(Person.email == email)).first() if email else None
            if person is None:
                person = Person(display_name=ref.display_name or ref.login, email=email)
                self.session.add(person)
                self.session.flush()
            elif ref.display_name and ref.display_name != ref.login and self._named_by_login(person):
                person.display_name = ref.display_name  # a tool that knows their name, after one that gave a login
            self.session.add(
                PersonIdentity(
                    person_id=id_of(person),
                    connection_id=self.connection_id,
                    external_id=external_id,
                    login=ref.login,
                    display_name=ref.display_name,
                )
            )
            found[external_id] = id_of(person)
        self.session.flush()  # the statements that follow go around the session
        return found

    def _named_by_login(self, person: Person) -> bool:
        """Whether a person has no name but one of their logins (a tool without names came first)."""
        if person.display_name is None:
            return True
        logins = select(PersonIdentity.login).where(PersonIdentity.person_id == person.id)
        return person.display_name in self.session.exec(logins).all()

    # -- records -----------------------------------------------------------------------
    # Rows are read and written with SQLAlchemy Core, a page at a time: building ORM objects
    # per record costs more than the tool's own API does.

    def _existing(self, table: sa.Table, external_ids: set[str]) -> dict[str, _Row]:
        rows = self.db.execute(
            sa.select(table).where(table.c.connection_id == self.connection_id, table.c.external_id.in_(external_ids))
        )
        return {row.external_id: _Row(dict(row._mapping)) for row in rows}

    def _columns(self, record: Unified, people: dict[str, int], stored: dict[str, Any] | None) -> dict[str, Any]:
        kind = entity(record.entity)
        columns = dict(record.values)
        for name, ref in record.people.items():
            columns[kind.people[name]] = people[ref.external_id] if ref else None
        columns["product_key"] = record.product_key
        for name, (when, value) in kind.stamps.items():
            if columns.get(name) is None:
                kept = stored.get(name) if stored else None
                stamp = (record.version or self._at) if columns.get(when) == value else None
                columns[name] = kept or stamp
        return columns

    def upsert(self, records: list[Unified], origin: Origin = Origin.FETCH) -> None:
        """Write records that came from origin, by the versioning rules."""
        people = self._people([r for u in records for r in u.people.values() if r])
        for name in {r.entity for r in records}:
            table = entity(name).table
            batch = [r for r in records if r.entity == name]
            rows = self._existing(table, {r.external_id for r in batch})
            for record in batch:
                rows[record.external_id] = self._upsert_one(table, record, origin, rows.get(record.external_id), people)
            self._write(name, table, rows.values())

    def _new_row(self, table: sa.Table, external_id: str) -> _Row:
        values = dict.fromkeys(_columns_of(table))
        values.update(connection_id=self.connection_id, external_id=external_id, updated_at=self._at)
        return _Row(values, new=True)

    def _upsert_one(
        self, table: sa.Table, record: Unified, origin: Origin, row: _Row | None, people: dict[str, int]
    ) -> _Row:
        columns = self._columns(record, people, row.values if row else None)
        if row is None:
            row = self._new_row(table, record.external_id)
            row.set(
                source_updated_at=record.version,
                content_hash=record.content_hash,
                origin=origin,
                container=record.container,
                mapping_version_id=self.mapping_version_id,
                **columns,
            )
            row.links = record.links
            shown = {
                k: [None, v] for k, v in columns.items() if v is not None and (v or not isinstance(v, (list, dict)))
            }
            for name in _times_of(table).intersection(shown):
                shown[name][1] = jsonable(shown[name][1])
            row.events.append(("create", shown))
            self.counts.created += 1
            return row
        values = row.values
        verdict = judge(
            record.version,
            origin,
            record.content_hash,
            values["source_updated_at"],
            values["origin"],
            values["content_hash"],
        )
        if self.remapping:
            if values["deleted_at"] is not None:
                self.counts.unchanged += 1
                return row
            if verdict in (Verdict.STALE, Verdict.TIE) and record.version == values["source_updated_at"]:
                verdict = Verdict.NEWER
        if verdict in (Verdict.STALE, Verdict.TIE):
            if verdict is Verdict.TIE:
                self.ties.add((record.entity, record.external_id))
            self.counts.stale += 1
            return row
        changed: dict[str, list[Any]] = {}
        if verdict is Verdict.NEWER:
            changed = {k: [jsonable(values[k]), jsonable(v)] for k, v in columns.items() if values[k] != v}
            row.set(
                content_hash=record.content_hash,
                mapping_version_id=self.mapping_version_id,
                source_updated_at=record.version,
                origin=origin,
                **columns,
            )
            row.links = record.links
        else:  # the same content: a newer version or a fetch confirming a webhook body moves on, no Change
            if record.version is not None and (
                values["source_updated_at"] is None or record.version > values["source_updated_at"]
            ):
                row.set(source_updated_at=record.version)
            if origin is Origin.FETCH and values["origin"] == Origin.WEBHOOK:
                row.set(origin=origin)
            if self.mapping_version_id is not None and values["mapping_version_id"] != self.mapping_version_id:
                row.set(mapping_version_id=self.mapping_version_id)  # the same content from this version
        if record.container is not None and values["container"] != record.container:
            row.set(container=record.container)
        if values["deleted_at"] is not None and record.version is not None and record.version > values["deleted_at"]:
            changed["deleted_at"] = [jsonable(values["deleted_at"]), None]
            row.set(deleted_at=None)
        if changed:
            row.set(updated_at=self._at)
            row.events.append(("update", changed))
            self.counts.updated += 1
        else:
            self.counts.unchanged += 1
        return row

    def delete(self, tombstones: list[Tombstone], origin: Origin = Origin.FETCH) -> None:
        with_records = [t.record for t in tombstones if t.record is not None]
        if with_records:
            counted = replace(self.counts)
            self.upsert(with_records, origin)  # the deleted record's last content, counted as the delete
            self.counts = counted
        for name in {t.entity for t in tombstones}:
            table = entity(name).table
            batch = [t for t in tombstones if t.entity == name]
            rows = self._existing(table, {t.external_id for t in batch})
            for tombstone in batch:
                rows[tombstone.external_id] = self._delete_one(table, tombstone, rows.get(tombstone.external_id))
            self._write(name, table, rows.values())

    def _delete_one(self, table: sa.Table, tombstone: Tombstone, row: _Row | None) -> _Row:
        if row is None:
            row = self._new_row(table, tombstone.external_id)
        deleted_at, version = row.values["deleted_at"], row.values["source_updated_at"]
        if deleted_at is not None:
            if tombstone.at > deleted_at:
                row.set(deleted_at=tombstone.at)  # the latest delete time, so any order ends alike
            self.counts.unchanged += 1
            return row
        if version is not None and tombstone.at < version:
            self.counts.stale += 1
            return row
        row.set(deleted_at=tombstone.at, updated_at=self._at)
        row.events.append(("delete", {"deleted_at": [None, jsonable(tombstone.at)]}))
        self.counts.deleted += 1
        return row

    def _write(self, entity: str, table: sa.Table, rows: Iterable[_Row]) -> None:
        """Insert new rows, update changed ones, replace their links, then number their changes."""
        rows = list(rows)
        new = [r for r in rows if r.new]
        if new:
            # a plain executemany, then the new ids by external_id (unique per connection):
            # cheaper on both databases than INSERT .. RETURNING for many rows
            by_external_id = {r.values["external_id"]: r for r in new}
            insert_many(self.db, table, [r.values for r in new])
            for external_id, row_id in self.db.execute(
                sa.select(table.c.external_id, table.c.id).where(
                    table.c.connection_id == self.connection_id, table.c.external_id.in_(by_external_id)
                )
            ):
                row = by_external_id[external_id]
                row.values["id"], row.new, row.dirty = row_id, False, set()
        # one UPDATE per set of changed columns: a row whose only change is its mapping version
        # (a re-map that changes nothing else) writes that column, not all of them
        by_columns: dict[tuple[str, ...], list[_Row]] = {}
        for r in rows:
            if r.dirty:
                by_columns.setdefault(tuple(sorted(r.dirty)), []).append(r)
        for names, dirty in by_columns.items():
            update_many(self.db, table, [{"_id": r.values["id"], **{n: r.values[n] for n in names}} for r in dirty])
        relinked = [r for r in rows if r.links is not None]
        if relinked:
            link_table = table_of(Link)
            self.db.execute(
                sa.delete(link_table).where(
                    link_table.c.from_entity == entity, link_table.c.from_id.in_([r.values["id"] for r in relinked])
                )
            )
            links = [
                {
                    "from_entity": entity,
                    "from_id": r.values["id"],
                    "to_entity": link.to_entity,
                    "to_key": link.to_key,
                    "type": link.type,
                    "origin": link.origin,
                    "evidence": link.evidence,
                }
                for r in relinked
                for link in {(x.type, x.to_entity, x.to_key): x for x in r.links or ()}.values()
            ]
            if links:
                insert_many(self.db, link_table, links)
        if self.remapping:
            self.changes += [(entity, r.values["external_id"], op, fields) for r in rows for op, fields in r.events]
        events = [(r.values["id"], op, fields) for r in rows for op, fields in r.events]
        if events:
            insert_many(
                self.db,
                table_of(Change),
                [
                    {
                        "seq": self._next_seq(),
                        "entity": entity,
                        "entity_id": row_id,
                        "op": op,
                        "fields": fields,
                        "at": self._at,
                    }
                    for row_id, op, fields in events
                ],
            )
        for row in rows:
            row.dirty, row.links, row.events = set(), None, []

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def save_raw(
        self, raws: list[RawRecord], origin: Origin = Origin.FETCH, serialized: list[tuple[bytes, str]] | None = None
    ) -> None:
        """Keep the payloads as received, so a new mapping re-normalises without refetching;
        by the same versioning rules as the records (serialized: see save_payloads)."""
        save_payloads(self.db, self.connection_id, self._at, raws, origin, serialized)


@cache
def _columns_of(table: sa.Table) -> tuple[str, ...]:
    """A record table's columns but its id (read per new row)."""
    return tuple(c.name for c in table.columns if c.name != "id")


@cache
def _times_of(table: sa.Table) -> frozenset[str]:
    """A record table's columns of times, shown in Change rows as ISO 8601 text."""
    return frozenset(c.name for c in table.columns if isinstance(c.type, (UTCDateTime, sa.DateTime, sa.Date)))


class _Row:
    """A record's row while a transaction works on it: its values and what is to be written."""

    __slots__ = ("dirty", "events", "links", "new", "values")

    def __init__(self, values: dict[str, Any], new: bool = False) -> None:
        self.values = values
        self.new = new
        self.dirty: set[str] = set()
        self.links: list[LinkRef] | None = None  # replace the row's links with these
        self.events: list[tuple[str, dict[str, list[Any]]]] = []  # Change rows to number

    def set(self, **values: Any) -> None:
        self.values.update(values)
        self.dirty.update(values)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def raw_payload(self, connection_id: str, record_type: str, external_id: str) -> dict[str, Any] | None:
        """A record's last stored payload (a connector may need it to address the record)."""
        table = table_of(StoredPayload)
        with self.engine.connect() as db:
            return db.execute(
                sa.select(table.c.payload).where(
                    table.c.connection_id == connection_id,
                    table.c.record_type == record_type,
                    table.c.external_id == external_id,
                )
            ).scalar()

    @contextmanager
    def transaction(
        self,
        connection_id: str,
        mapping_version_id: int | None = None,
        *,
        remapping: bool = False,
        commit: bool = True,
    ) -> Iterator[Transaction]:
        """A write transaction: everything in it commits together or not at all (never, if not
        commit: a preview of what the writes would change, rolled back)."""
        with Session(self.engine, expire_on_commit=False) as session:
            tx = Transaction(session, connection_id, mapping_version_id, remapping)
            yield tx
            tx.finish()
            if commit:
                session.commit()
            else:
                session.rollback()

"""The read side: every kind of record in the registry as the API serves it (lists with
their filters and keyset pagination, one record with its links and history), the links and
the change feed. People and products: service/directory.py."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased, defer
from sqlmodel import Session, col, select

from opsync.service.entities import ENTITIES
from opsync.service.entity import Entity, FieldType
from opsync.service.models import Change, Link, Person, PersonIdentity, SyncedRecord, id_of

__all__ = ["MAX_ID", "KeysetPage", "RecordFilter", "get_record", "list_records"]

# The largest id or seq any database we run on holds: they are `integer` columns, 32-bit on
# PostgreSQL. A larger one in a request is refused (it would be an error in the database).
MAX_ID = 2**31 - 1
FEW_UPDATES = 50_000  # up to this many matches, sorting them beats walking the id order


@dataclass
class KeysetPage:
    items: list[dict[str, Any]]
    next_cursor: int | None  # the last id (or seq) of this page when more may follow


@dataclass
class RecordFilter:
    """What every list filters on, and the kind's own filters (Entity.filters) by name."""

    product: str | None = None
    connection_id: str | None = None
    updated_since: datetime | None = None
    q: str | None = None  # text in the title or key
    include_deleted: bool = False
    fields: dict[str, str] = field(default_factory=dict)


def as_utc(moment: datetime) -> datetime:
    """An aware moment in UTC. One beyond datetime's range once in UTC (0001-01-01T00:00+14:00
    is in year 0) becomes that end of the range, which no stored time lies beyond."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        end = datetime.min if moment.year == datetime.min.year else datetime.max
        return end.replace(tzinfo=UTC)


# People by id, looked up with a record's optional person id (None finds no one).
People = dict[int | None, dict[str, Any]]


def _people(session: Session, ids: set[int | None]) -> People:
    ids.discard(None)
    if not ids:
        return {}
    rows = session.exec(select(Person).where(col(Person.id).in_(ids))).all()
    return {p.id: _person_json(p) for p in rows}


def _person_json(person: Person) -> dict[str, Any]:
    return {"id": person.id, "display_name": person.display_name, "email": person.email}


def record_json(kind: Entity, row: SyncedRecord, people: People, *, whole: bool = False) -> dict[str, Any]:
    """A record as the API shows it: in a list, or whole (with the fields lists leave out)."""
    item = {
        "id": row.id,
        "key": row.key,
        "url": row.url,
        "title": row.title,
        "product": row.product_key,
        "connection_id": row.connection_id,
        "external_id": row.external_id,
        "updated_at": row.source_updated_at,
        "synced_at": row.updated_at,
        "mapping_version": row.mapping_version_id,
        "deleted_at": row.deleted_at,
    }
    for name, spec in kind.fields.items():
        if not spec.shown or not (spec.in_list or whole):
            continue
        value = getattr(row, spec.column_of(name))
        if spec.type is FieldType.PERSON:
            value = people.get(value)
        elif spec.type is FieldType.LIST:
            value = value or []
        elif spec.type is FieldType.OBJECT:
            value = value or {}
        item[name] = value
    return item


def _member_filter(session: Session, kind: Entity, column: str, member: str) -> Any:
    """The list in column holds member."""
    values = kind.table.c[column]
    if session.get_bind().dialect.name == "postgresql":
        return values.op("@>")(sa.cast(sa.literal(json.dumps([member])), values.type))
    each = sa.func.json_each(values).table_valued("value")
    return sa.exists(select(1).select_from(each).where(each.c.value == member))


def _person_filter(kind: Entity, column: str, person: str) -> Any:
    """The person in column is this hub id, email or tool login."""
    ids = kind.table.c[column]
    if person.isascii() and person.isdigit() and int(person) <= MAX_ID:
        return ids == int(person)
    by_email = select(Person.id).where(Person.email == person.lower())
    by_login = select(PersonIdentity.person_id).where(PersonIdentity.login == person)
    return ids.in_(by_email.union(by_login))


def _conditions(session: Session, kind: Entity, f: RecordFilter, after: int | None) -> list[Any]:
    c = kind.table.c
    conditions: list[Any] = []
    if after is not None:
        conditions.append(c.id > after)
    if not f.include_deleted:
        conditions.append(c.deleted_at.is_(None))
    if f.product is not None:
        conditions.append(c.product_key == f.product)
    if f.connection_id is not None:
        conditions.append(c.connection_id == f.connection_id)
    for name, value in f.fields.items():
        field_name = kind.filters[name]
        spec = kind.fields[field_name]
        column = spec.column_of(field_name)
        if spec.type is FieldType.PERSON:
            conditions.append(_person_filter(kind, column, value))
        elif spec.type is FieldType.LIST:
            conditions.append(_member_filter(session, kind, column, value))
        else:
            conditions.append(c[column] == value)
    if f.updated_since:
        conditions.append(c.source_updated_at >= as_utc(f.updated_since))
    if f.q:
        # Matched literally (% and _ are not wildcards). One bound pattern, not '%' || q || '%',
        # so that PostgreSQL plans with the text itself and can use its trigram indexes.
        text = f.q.lower().replace("/", "//").replace("%", "/%").replace("_", "/_")
        pattern = f"%{text}%"
        conditions.append(
            sa.or_(sa.func.lower(c.title).like(pattern, escape="/"), sa.func.lower(c.key).like(pattern, escape="/"))
        )
    return conditions


def list_records(session: Session, kind: Entity, f: RecordFilter, after: int | None, limit: int) -> KeysetPage:
    model, c = kind.table_model, kind.table.c
    conditions = _conditions(session, kind, f, after)
    # the records' people come in the same statement: one round trip a page, not one more
    people = {name: aliased(Person) for name in kind.people}
    query = select(model, *people.values())
    for name, column in kind.people.items():
        query = query.outerjoin(people[name], c[column] == people[name].id)
    query = query.order_by(c.id).options(
        *(defer(getattr(model, n)) for n, spec in kind.fields.items() if not spec.in_list)
    )
    narrowed = f.product or f.connection_id or f.q or f.fields
    if f.updated_since and not narrowed and _few_updated_since(session, kind, as_utc(f.updated_since)):
        # Recent changes cluster at high ids, which walking ids in order reaches last
        # (PostgreSQL at 1M: 95,000 rows read for a page of a 15-day window, 40 ms). The
        # page's ids are taken from the matches found through the source_updated_at index,
        # sorted (18 ms), then their rows are read. With another filter the planners pick
        # that filter's index for the sort, which is no faster on PostgreSQL and slower on
        # SQLite, so the id walk stays.
        page = sa.select(c.id).where(*conditions).order_by(c.id + 0).limit(limit + 1)
        query = query.where(c.id.in_(page))
    else:
        query = query.where(*conditions).limit(limit + 1)
    rows: list[Any] = list(session.exec(query).all())
    more = len(rows) > limit
    rows = rows[:limit]
    found = {p.id: _person_json(p) for _, *named in rows for p in named if p is not None}
    items = [record_json(kind, row, found) for row, *_ in rows]
    if kind.links_in_list:
        links = _links_from(session, kind.name, [item["id"] for item in items])
        for item in items:
            item["links"] = links.get(item["id"], [])
    return KeysetPage(items, items[-1]["id"] if more else None)


def _few_updated_since(session: Session, kind: Entity, since: datetime) -> bool:
    """Whether at most FEW_UPDATES records changed since then: a count that stops there, read
    from the source_updated_at index alone (a table without one walks its ids)."""
    table = kind.table
    if not any([c.name for c in index.columns] == ["source_updated_at"] for index in table.indexes):
        return False
    recent = (
        sa.select(sa.literal(1)).select_from(table).where(table.c.source_updated_at >= since).limit(FEW_UPDATES + 1)
    )
    return session.exec(select(sa.func.count()).select_from(recent.subquery())).one() <= FEW_UPDATES


def link_targets(session: Session, targets: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(kind, key) -> the id of the live record links to that kind and key point to, if one has it."""
    wanted = set(targets)
    result: dict[tuple[str, str], int] = {}
    for name in sorted({kind for kind, _ in wanted}):
        keys = {key for kind, key in wanted if kind == name}
        if name not in ENTITIES or not keys:
            continue
        c = ENTITIES[name].table.c
        for key, id_ in (
            session.connection().execute(sa.select(c.key, c.id).where(c.key.in_(keys), c.deleted_at.is_(None))).all()
        ):
            result[(name, key)] = id_
    return result


def _links_from(session: Session, entity: str, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not ids:
        return {}
    links = list(
        session.exec(
            select(Link).where(Link.from_entity == entity, col(Link.from_id).in_(ids)).order_by(col(Link.id))
        ).all()
    )
    targets = link_targets(session, [(link.to_entity, link.to_key) for link in links])
    result: dict[int, list[dict[str, Any]]] = {}
    for link in links:
        result.setdefault(link.from_id, []).append(
            {
                "type": link.type,
                "to_entity": link.to_entity,
                "to_key": link.to_key,
                "to_id": targets.get((link.to_entity, link.to_key)),
                "origin": link.origin,
                "evidence": link.evidence,
            }
        )
    return result


def _incoming(session: Session, kind: Entity, row: SyncedRecord) -> list[dict[str, Any]]:
    """Links from live records elsewhere that name this one by its key (a change implementing
    it, a spec specifying it), and its children when the kind has parents."""
    found: list[dict[str, Any]] = []
    if row.key:
        links = session.exec(select(Link).where(Link.to_entity == kind.name, Link.to_key == row.key)).all()
        for name in sorted({link.from_entity for link in links}):
            if name not in ENTITIES:
                continue
            c = ENTITIES[name].table.c
            ids = {link.from_id for link in links if link.from_entity == name}
            keys = dict(
                session.connection().execute(sa.select(c.id, c.key).where(c.id.in_(ids), c.deleted_at.is_(None))).all()
            )
            found += [
                {
                    "type": link.type,
                    "direction": "incoming",
                    "from_entity": name,
                    "from_id": link.from_id,
                    "from_key": keys[link.from_id],
                    "origin": link.origin,
                    "evidence": link.evidence,
                }
                for link in links
                if link.from_entity == name and link.from_id in keys
            ]
    if kind.parent_field:
        c = kind.table.c
        children = (
            session.connection()
            .execute(
                sa.select(c.id, c.key).where(
                    c.connection_id == row.connection_id,
                    c[kind.parent_field] == row.external_id,
                    c.deleted_at.is_(None),
                )
            )
            .all()
        )
        found += [
            {
                "type": "parent",
                "direction": "incoming",
                "from_entity": kind.name,
                "from_id": i,
                "from_key": k,
                "origin": "source",
                "evidence": f"{k} has parent {row.key}",
            }
            for i, k in children
        ]
    return found


def get_record(session: Session, kind: Entity, record_id: int) -> dict[str, Any] | None:
    """One record with its links (outgoing, then incoming) and its history."""
    row = session.get(kind.table_model, record_id)
    if row is None:
        return None
    people = _people(session, {getattr(row, column) for column in kind.people.values()})
    item = record_json(kind, row, people, whole=True)
    links = _links_from(session, kind.name, [id_of(row)]).get(id_of(row), []) + _incoming(session, kind, row)
    return item | {"links": links, "history": history(session, kind.name, id_of(row))}


def history(session: Session, entity: str, entity_id: int) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Change).where(Change.entity == entity, Change.entity_id == entity_id).order_by(col(Change.seq))
    ).all()
    return [change_json(c) for c in rows]


def change_json(change: Change) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "entity": change.entity,
        "entity_id": change.entity_id,
        "op": change.op,
        "fields": change.fields,
        "at": change.at,
    }


def list_changes(session: Session, after: int, limit: int) -> KeysetPage:
    rows = session.exec(select(Change).where(col(Change.seq) > after).order_by(col(Change.seq)).limit(limit)).all()
    return KeysetPage([change_json(c) for c in rows], rows[-1].seq if rows else after)


def list_links(
    session: Session, *, type: str | None, from_entity: str | None, to_key: str | None, after: int | None, limit: int
) -> KeysetPage:
    query = select(Link).order_by(col(Link.id)).limit(limit + 1)
    for column, value in ((col(Link.type), type), (col(Link.from_entity), from_entity), (col(Link.to_key), to_key)):
        if value is not None:
            query = query.where(column == value)
    if after is not None:
        query = query.where(col(Link.id) > after)
    rows = session.exec(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    targets = link_targets(session, [(link.to_entity, link.to_key) for link in rows])
    items = [
        {
            "id": link.id,
            "type": link.type,
            "from_entity": link.from_entity,
            "from_id": link.from_id,
            "to_entity": link.to_entity,
            "to_key": link.to_key,
            "to_id": targets.get((link.to_entity, link.to_key)),
            "origin": link.origin,
            "evidence": link.evidence,
        }
        for link in rows
    ]
    return KeysetPage(items, rows[-1].id if more else None)

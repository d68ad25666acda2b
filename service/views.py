"""The read side: the unified view as the API serves it, with keyset pagination."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from opsync.service.models import (
    Change,
    CodeChange,
    Link,
    Person,
    PersonIdentity,
    Product,
    SyncedRecord,
    WorkItem,
    id_of,
    table_of,
)
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

# The largest id or seq any database we run on holds: they are `integer` columns, 32-bit on
# PostgreSQL. A larger one in a request is refused (it would be an error in the database).
MAX_ID = 2**31 - 1


@dataclass
class PageOf:
    items: list[dict[str, Any]]
    next_cursor: int | None  # the last id (or seq) of this page when more may follow


@dataclass
class WorkItemFilter:
    product: str | None = None
    kind: str | None = None
    status_category: str | None = None
    assignee: str | None = None  # hub person id, email, or a tool login
    label: str | None = None
    updated_since: datetime | None = None
    q: str | None = None
    connection_id: str | None = None
    include_deleted: bool = False


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


def _common(row: SyncedRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "key": row.key,
        "url": row.url,
        "title": row.title,
        "product": row.product_key,
        "connection_id": row.connection_id,
        "external_id": row.external_id,
        "updated_at": row.source_updated_at,
        "synced_at": row.updated_at,
        "deleted_at": row.deleted_at,
    }


def work_item_json(row: WorkItem, people: People) -> dict[str, Any]:
    return _common(row) | {
        "kind": row.kind,
        "status": row.status,
        "status_category": row.status_category,
        "priority": row.priority,
        "assignee": people.get(row.assignee_id),
        "reporter": people.get(row.reporter_id),
        "labels": row.labels or [],
        "estimate": row.estimate,
        "iteration": row.iteration,
        "release": row.release,
        "due_at": row.due_at,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "completed_at": row.completed_at,
        "description": row.description,
        "extra": row.extra or {},
    }


def _label_filter(session: Session, label: str) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return col(WorkItem.labels).op("@>")(sa.cast(sa.literal(json.dumps([label])), table_of(WorkItem).c.labels.type))
    each = sa.func.json_each(WorkItem.labels).table_valued("value")
    return sa.exists(select(1).select_from(each).where(each.c.value == label))


def _assignee_filter(session: Session, assignee: str) -> Any:
    if assignee.isascii() and assignee.isdigit() and int(assignee) <= MAX_ID:
        return WorkItem.assignee_id == int(assignee)
    by_email = select(Person.id).where(Person.email == assignee.lower())
    by_login = select(PersonIdentity.person_id).where(PersonIdentity.login == assignee)
    return col(WorkItem.assignee_id).in_(by_email.union(by_login))


def list_work_items(session: Session, f: WorkItemFilter, after: int | None, limit: int) -> PageOf:
    conditions: list[Any] = []
    if after is not None:
        conditions.append(col(WorkItem.id) > after)
    if not f.include_deleted:
        conditions.append(col(WorkItem.deleted_at).is_(None))
    for column, value in (
        (col(WorkItem.product_key), f.product),
        (col(WorkItem.kind), f.kind),
        (col(WorkItem.status_category), f.status_category),
        (col(WorkItem.connection_id), f.connection_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if f.assignee:
        conditions.append(_assignee_filter(session, f.assignee))
    if f.label:
        conditions.append(_label_filter(session, f.label))
    since = as_utc(f.updated_since) if f.updated_since else None
    if since:
        conditions.append(col(WorkItem.source_updated_at) >= since)
    if f.q:
        # Matched literally (% and _ are not wildcards). One bound pattern, not '%' || q || '%',
        # so that PostgreSQL plans with the text itself and can use its trigram indexes.
        text = f.q.lower().replace("/", "//").replace("%", "/%").replace("_", "/_")
        pattern = f"%{text}%"
        conditions.append(
            sa.or_(
                sa.func.lower(WorkItem.title).like(pattern, escape="/"),
                sa.func.lower(WorkItem.key).like(pattern, escape="/"),
            )
        )
    # assignee and reporter come in the same statement: one round trip a page, not two
    assignee, reporter = aliased(Person), aliased(Person)
    query = (
        select(WorkItem, assignee, reporter)
        .outerjoin(assignee, col(WorkItem.assignee_id) == assignee.id)
        .outerjoin(reporter, col(WorkItem.reporter_id) == reporter.id)
        .order_by(col(WorkItem.id))
    )
    narrowed = any((f.product, f.kind, f.status_category, f.connection_id, f.assignee, f.label, f.q))
    if since and not narrowed and _few_updated_since(session, since):
        # Recent changes cluster at high ids, which walking ids in order reaches last
        # (PostgreSQL at 1M: 95,000 rows read for a page of a 15-day window, 40 ms). The
        # page's ids are taken from the matches found through the source_updated_at index,
        # sorted (18 ms), then their rows are read. With another filter the planners pick
        # that filter's index for the sort, which is no faster on PostgreSQL and slower on
        # SQLite, so the id walk stays.
        page = select(WorkItem.id).where(*conditions).order_by(col(WorkItem.id) + 0).limit(limit + 1)
        query = query.where(col(WorkItem.id).in_(page))
    else:
        query = query.where(*conditions).limit(limit + 1)
    rows = session.exec(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    people = {p.id: _person_json(p) for _, *named in rows for p in named if p is not None}
    return PageOf([work_item_json(r, people) for r, _, _ in rows], rows[-1][0].id if more else None)


FEW_UPDATES = 50_000  # up to this many matches, sorting them beats walking the id order


def _few_updated_since(session: Session, since: datetime) -> bool:
    """Whether at most FEW_UPDATES work items changed since then: a count that stops there,
    read from the source_updated_at index alone."""
    recent = (
        sa.select(sa.literal(1))
        .select_from(table_of(WorkItem))
        .where(col(WorkItem.source_updated_at) >= since)
        .limit(FEW_UPDATES + 1)
        .subquery()
    )
    return session.exec(select(sa.func.count()).select_from(recent)).one() <= FEW_UPDATES


def _work_item_ids_by_key(session: Session, keys: set[str]) -> dict[str, int]:
    if not keys:
        return {}
    rows = session.exec(
        select(WorkItem.key, WorkItem.id).where(col(WorkItem.key).in_(keys), col(WorkItem.deleted_at).is_(None))
    ).all()
    # Neither is ever None here (matched by key; ids are primary keys): the filter tells the type checker.
    return {key: id_ for key, id_ in rows if key is not None and id_ is not None}


def _links_from(session: Session, entity: str, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    if not ids:
        return {}
    links = session.exec(
        select(Link).where(Link.from_entity == entity, col(Link.from_id).in_(ids)).order_by(col(Link.id))
    ).all()
    targets = _work_item_ids_by_key(session, {link.to_key for link in links if link.to_entity == "work_item"})
    result: dict[int, list[dict[str, Any]]] = {}
    for link in links:
        result.setdefault(link.from_id, []).append(
            {
                "type": link.type,
                "to_entity": link.to_entity,
                "to_key": link.to_key,
                "to_id": targets.get(link.to_key) if link.to_entity == "work_item" else None,
                "origin": link.origin,
                "evidence": link.evidence,
            }
        )
    return result


def code_change_json(row: CodeChange, people: People, links: list[dict[str, Any]]) -> dict[str, Any]:
    return _common(row) | {
        "state": row.state,
        "author": people.get(row.author_id),
        "reviewers": row.reviewers or [],
        "head_branch": row.head_branch,
        "base_branch": row.base_branch,
        "created_at": row.created_at,
        "merged_at": row.merged_at,
        "closed_at": row.closed_at,
        "additions": row.additions,
        "deletions": row.deletions,
        "links": links,
    }


def list_code_changes(
    session: Session, *, product: str | None, state: str | None, include_deleted: bool, after: int | None, limit: int
) -> PageOf:
    query = select(CodeChange).order_by(col(CodeChange.id)).limit(limit + 1)
    if after is not None:
        query = query.where(col(CodeChange.id) > after)
    if not include_deleted:
        query = query.where(col(CodeChange.deleted_at).is_(None))
    if product:
        query = query.where(CodeChange.product_key == product)
    if state:
        query = query.where(CodeChange.state == state)
    rows = session.exec(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    people = _people(session, {r.author_id for r in rows})
    links = _links_from(session, "code_change", [id_of(r) for r in rows])
    return PageOf([code_change_json(r, people, links.get(id_of(r), [])) for r in rows], rows[-1].id if more else None)


def get_code_change(session: Session, change_id: int) -> dict[str, Any] | None:
    row = session.get(CodeChange, change_id)
    if row is None:
        return None
    item = code_change_json(
        row, _people(session, {row.author_id}), _links_from(session, "code_change", [id_of(row)]).get(id_of(row), [])
    )
    return item | {"history": history(session, "code_change", id_of(row))}


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


def get_work_item(session: Session, item_id: int) -> dict[str, Any] | None:
    row = session.get(WorkItem, item_id)
    if row is None:
        return None
    item = work_item_json(row, _people(session, {row.assignee_id, row.reporter_id}))
    links = _links_from(session, "work_item", [id_of(row)]).get(id_of(row), [])
    if row.key:  # records elsewhere that name this one (a PR implementing it)
        incoming = session.exec(
            select(Link, CodeChange)
            .join(CodeChange, col(CodeChange.id) == Link.from_id)
            .where(
                Link.to_entity == "work_item",
                Link.to_key == row.key,
                Link.from_entity == "code_change",
                col(CodeChange.deleted_at).is_(None),
            )
        ).all()
        links += [
            {
                "type": link.type,
                "direction": "incoming",
                "from_entity": "code_change",
                "from_id": c.id,
                "from_key": c.key,
                "origin": link.origin,
                "evidence": link.evidence,
            }
            for link, c in incoming
        ]
    children = session.exec(
        select(WorkItem.id, WorkItem.key).where(
            WorkItem.connection_id == row.connection_id,
            WorkItem.parent_external_id == row.external_id,
            col(WorkItem.deleted_at).is_(None),
        )
    ).all()
    links += [
        {
            "type": "parent",
            "direction": "incoming",
            "from_entity": "work_item",
            "from_id": i,
            "from_key": k,
            "origin": "source",
            "evidence": f"{k} has parent {row.key}",
        }
        for i, k in children
    ]
    return item | {"links": links, "history": history(session, "work_item", id_of(row))}


def list_changes(session: Session, after: int, limit: int) -> PageOf:
    rows = session.exec(select(Change).where(col(Change.seq) > after).order_by(col(Change.seq)).limit(limit)).all()
    return PageOf([change_json(c) for c in rows], rows[-1].seq if rows else after)


def list_people(session: Session, after: int | None, limit: int) -> PageOf:
    query = select(Person).order_by(col(Person.id)).limit(limit + 1)
    if after is not None:
        query = query.where(col(Person.id) > after)
    rows = session.exec(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    identities: dict[int, list[dict[str, Any]]] = {}
    if rows:
        for i in session.exec(
            select(PersonIdentity).where(col(PersonIdentity.person_id).in_([p.id for p in rows]))
        ).all():
            identities.setdefault(i.person_id, []).append(
                {
                    "connection_id": i.connection_id,
                    "external_id": i.external_id,
                    "login": i.login,
                    "display_name": i.display_name,
                }
            )
    items = [
        {"id": p.id, "display_name": p.display_name, "email": p.email, "identities": identities.get(id_of(p), [])}
        for p in rows
    ]
    return PageOf(items, rows[-1].id if more else None)


def list_links(
    session: Session, *, type: str | None, from_entity: str | None, to_key: str | None, after: int | None, limit: int
) -> PageOf:
    query = select(Link).order_by(col(Link.id)).limit(limit + 1)
    for column, value in ((col(Link.type), type), (col(Link.from_entity), from_entity), (col(Link.to_key), to_key)):
        if value is not None:
            query = query.where(column == value)
    if after is not None:
        query = query.where(col(Link.id) > after)
    rows = session.exec(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    targets = _work_item_ids_by_key(session, {link.to_key for link in rows if link.to_entity == "work_item"})
    items = [
        {
            "id": link.id,
            "type": link.type,
            "from_entity": link.from_entity,
            "from_id": link.from_id,
            "to_entity": link.to_entity,
            "to_key": link.to_key,
            "to_id": targets.get(link.to_key),
            "origin": link.origin,
            "evidence": link.evidence,
        }
        for link in rows
    ]
    return PageOf(items, rows[-1].id if more else None)


def list_products(session: Session) -> list[dict[str, Any]]:
    return [
        {"key": p.key, "name": p.name, "description": p.description, "owner": p.owner}
        for p in session.exec(select(Product).order_by(Product.key)).all()
    ]

"""The read side of who and what: people (one person across every tool, with their work in
each kind of record) and the portfolio's products."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from opsync.service.entities import ENTITIES
from opsync.service.models import Connection, Person, PersonIdentity, Product, id_of
from opsync.service.views import KeysetPage

__all__ = ["get_person", "list_people", "list_products"]

RECENT = 10  # records shown per kind and role on a person's page


def _identities(session: Session, person_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each person's tool accounts, naming the tool (the connection's kind)."""
    found: dict[int, list[dict[str, Any]]] = {}
    if not person_ids:
        return found
    rows = session.exec(
        select(PersonIdentity, Connection.kind)
        .outerjoin(Connection, col(Connection.id) == PersonIdentity.connection_id)
        .where(col(PersonIdentity.person_id).in_(person_ids))
        .order_by(col(PersonIdentity.id))
    ).all()
    for identity, tool in rows:
        found.setdefault(identity.person_id, []).append(
            {
                "tool": tool,
                "connection_id": identity.connection_id,
                "external_id": identity.external_id,
                "login": identity.login,
                "display_name": identity.display_name,
            }
        )
    return found


def list_people(session: Session, after: int | None, limit: int) -> KeysetPage:
    query = select(Person).order_by(col(Person.id)).limit(limit + 1)
    if after is not None:
        query = query.where(col(Person.id) > after)
    rows = session.exec(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    identities = _identities(session, [id_of(p) for p in rows])
    items = [
        {"id": p.id, "display_name": p.display_name, "email": p.email, "identities": identities.get(id_of(p), [])}
        for p in rows
    ]
    return KeysetPage(items, rows[-1].id if more else None)


def _work(session: Session, person_id: int) -> list[dict[str, Any]]:
    """What the person does in each kind of record that names people: per kind and role
    (assignee, author, ...), how many live records, and the most recently changed."""
    work = []
    for kind in ENTITIES.values():
        c = kind.table.c
        for role, column in kind.people.items():
            mine = (c[column] == person_id, c.deleted_at.is_(None))
            db = session.connection()
            count = db.execute(sa.select(sa.func.count()).select_from(kind.table).where(*mine)).scalar_one()
            if not count:
                continue
            recent = db.execute(
                sa.select(c.id, c.key, c.title, c.product_key, c.source_updated_at)
                .where(*mine)
                .order_by(c.source_updated_at.desc(), c.id.desc())
                .limit(RECENT)
            ).all()
            work.append(
                {
                    "entity": kind.name,
                    "role": role,
                    "count": count,
                    "recent": [
                        {"id": i, "key": k, "title": t, "product": p, "updated_at": u} for i, k, t, p, u in recent
                    ],
                }
            )
    return work


def get_person(session: Session, person_id: int) -> dict[str, Any] | None:
    person = session.get(Person, person_id)
    if person is None:
        return None
    return {
        "id": person.id,
        "display_name": person.display_name,
        "email": person.email,
        "identities": _identities(session, [person_id]).get(person_id, []),
        "work": _work(session, person_id),
    }


def list_products(session: Session) -> list[dict[str, Any]]:
    return [
        {"key": p.key, "name": p.name, "description": p.description, "owner": p.owner}
        for p in session.exec(select(Product).order_by(Product.key)).all()
    ]

"""Documents: specs and pages that say what is planned and why."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session

from opsync.service.entities.work_item import WorkItem
from opsync.service.entity import Entity, FieldSpec, FieldType
from opsync.service.models import LIVE, Link, SyncedRecord, json_field, table_of, time_field


class Document(SyncedRecord, table=True):
    __tablename__ = "document"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "external_id"),
        sa.Index(
            "ix_document_live_product_space", "product_key", "space", "id", postgresql_where=LIVE, sqlite_where=LIVE
        ),
        sa.Index("ix_document_source_updated_at", "source_updated_at"),
        sa.Index("ix_document_parent", "connection_id", "parent_external_id"),
    )
    space: str | None = Field(default=None, index=True)
    status: str | None = None
    labels: list[str] | None = json_field(list)
    version_number: int | None = None
    author_id: int | None = Field(default=None, index=True)
    parent_external_id: str | None = None
    body_text: str | None = None
    created_at: datetime | None = time_field()


SPECS_SHOWN = 20


def summarise(session: Session, product: str, first: date, last: date) -> dict[str, Any]:
    """The specs of the product: live documents that specify one of its work items, or that the
    portfolio files under it; the most recently changed first, with the keys they specify."""
    link, items = table_of(Link), table_of(WorkItem)
    specifies = (
        sa.select(link.c.from_id)
        .join(items, sa.and_(items.c.key == link.c.to_key, items.c.product_key == product))
        .where(link.c.from_entity == ENTITY_NAME, link.c.type == "specifies", link.c.to_entity == "work_item")
    )
    doc = table_of(Document).c
    mine = (doc.deleted_at.is_(None), sa.or_(doc.product_key == product, doc.id.in_(specifies)))
    db = session.connection()
    total = db.execute(sa.select(sa.func.count()).where(*mine)).scalar_one()
    rows = db.execute(
        sa.select(doc.id, doc.key, doc.title, doc.url, doc.space, doc.source_updated_at)
        .where(*mine)
        .order_by(doc.source_updated_at.desc(), doc.id.desc())
        .limit(SPECS_SHOWN)
    ).all()
    keys: dict[int, list[str]] = {}
    for from_id, to_key in db.execute(
        sa.select(link.c.from_id, link.c.to_key)
        .where(link.c.from_entity == ENTITY_NAME, link.c.type == "specifies", link.c.from_id.in_([r.id for r in rows]))
        .order_by(link.c.to_key)
    ).all():
        keys.setdefault(from_id, []).append(to_key)
    return {
        "specs": {
            "total": total,
            "recent": [
                {
                    "id": r.id,
                    "key": r.key,
                    "title": r.title,
                    "url": r.url,
                    "space": r.space,
                    "updated_at": r.source_updated_at,
                    "specifies": keys.get(r.id, []),
                }
                for r in rows
            ],
        }
    }


ENTITY_NAME = "document"
ENTITY = Entity(
    name=ENTITY_NAME,
    label="document",
    table_model=Document,
    path="/documents",
    fields={
        "space": FieldSpec(FieldType.TEXT, description="the space (or folder) the tool keeps it in"),
        "status": FieldSpec(FieldType.TEXT, values=("current", "draft", "archived", "trashed")),
        "labels": FieldSpec(FieldType.LIST),
        "version_number": FieldSpec(FieldType.INTEGER, description="the tool's version of the document"),
        "author": FieldSpec(FieldType.PERSON, column="author_id"),
        "parent_external_id": FieldSpec(FieldType.TEXT, shown=False),
        "created_at": FieldSpec(FieldType.TIME),
        "body_text": FieldSpec(FieldType.TEXT, in_list=False, description="the body as plain text"),
    },
    filters={"space": "space", "label": "labels", "author": "author"},
    links_in_list=True,
    parent_field="parent_external_id",
    summary=summarise,
)

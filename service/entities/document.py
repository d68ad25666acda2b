"""Documents: specs and pages that say what is planned and why."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from opsync.service.entity import Entity, FieldSpec, FieldType
from opsync.service.models import LIVE, SyncedRecord, json_field, time_field
from sqlmodel import Field


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


ENTITY = Entity(
    name="document",
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
)

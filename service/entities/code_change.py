"""Code changes: pull requests and merge requests."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, col, select

from opsync.service.entity import Entity, FieldSpec, FieldType
from opsync.service.measures import day_bounds, days_between, percentiles
from opsync.service.models import LIVE, SyncedRecord, json_field, time_field


class CodeChange(SyncedRecord, table=True):
    __tablename__ = "code_change"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "external_id"),
        sa.Index(
            "ix_code_change_live_product_state",
            "product_key",
            "state",
            "id",
            postgresql_where=LIVE,
            sqlite_where=LIVE,
        ),
    )
    state: str | None = Field(default=None, index=True)
    author_id: int | None = None
    reviewers: list[str] | None = json_field(list)
    head_branch: str | None = None
    base_branch: str | None = None
    created_at: datetime | None = time_field()
    merged_at: datetime | None = time_field()
    closed_at: datetime | None = time_field()
    additions: int | None = None
    deletions: int | None = None


def summarise(session: Session, product: str, first: date, last: date) -> dict[str, Any]:
    """Counts by state; how long the changes merged in the range took, from opened to merged."""
    live = (CodeChange.product_key == product, col(CodeChange.deleted_at).is_(None))
    by_state = session.exec(select(CodeChange.state, sa.func.count()).where(*live).group_by(CodeChange.state)).all()
    counts = {str(state): n for state, n in by_state}
    start, end = day_bounds(first, last)
    merged = (*live, col(CodeChange.merged_at) >= start, col(CodeChange.merged_at) < end)
    hours = days_between(session, CodeChange.created_at, CodeChange.merged_at) * 24
    return {
        "code_changes": {"total": sum(counts.values()), "by_state": counts},
        "merge_time_hours": percentiles(session, hours, merged)
        | {"merged": session.exec(select(sa.func.count()).select_from(CodeChange).where(*merged)).one()},
    }


TEXT, TIME, INTEGER = FieldSpec(FieldType.TEXT), FieldSpec(FieldType.TIME), FieldSpec(FieldType.INTEGER)

ENTITY = Entity(
    name="code_change",
    label="code change",
    table_model=CodeChange,
    path="/code-changes",
    fields={
        "state": FieldSpec(FieldType.TEXT, values=("open", "merged", "closed")),
        "author": FieldSpec(FieldType.PERSON, column="author_id"),
        "reviewers": FieldSpec(FieldType.LIST),
        "head_branch": TEXT,
        "base_branch": TEXT,
        "created_at": TIME,
        "merged_at": TIME,
        "closed_at": TIME,
        "additions": INTEGER,
        "deletions": INTEGER,
    },
    filters={"state": "state"},
    links_in_list=True,
    summary=summarise,
)

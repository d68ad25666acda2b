"""Work items: what is planned and delivered (issues, stories, epics, bugs)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, Session, col, select

from opsync.service.clock import now
from opsync.service.entity import Entity, FieldSpec, FieldType
from opsync.service.measures import day_bounds, days_between, monday_of, percentiles
from opsync.service.models import LIVE, SyncedRecord, UTCDateTime, json_field, time_field


class WorkItem(SyncedRecord, table=True):
    __tablename__ = "work_item"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "external_id"),
        # The read side (migrations 0002, 0003): filters in keyset order, the product summary, children.
        # On PostgreSQL, 0003 also adds trigram indexes on lower(title) and lower(key) for ?q=.
        sa.Index(
            "ix_work_item_live_product_status",
            "product_key",
            "status_category",
            "id",
            postgresql_where=LIVE,
            sqlite_where=LIVE,
        ),
        sa.Index(
            "ix_work_item_live_product_kind", "product_key", "kind", "id", postgresql_where=LIVE, sqlite_where=LIVE
        ),
        sa.Index(
            "ix_work_item_live_product_summary",
            "product_key",
            "status_category",
            "completed_at",
            "kind",
            "created_at",
            "started_at",
            postgresql_where=LIVE,
            sqlite_where=LIVE,
        ),
        sa.Index("ix_work_item_source_updated_at", "source_updated_at"),
        sa.Index("ix_work_item_parent", "connection_id", "parent_external_id"),
    )
    kind: str | None = Field(default=None, index=True)
    description: str | None = None
    status: str | None = None
    status_category: str | None = Field(default=None, index=True)
    priority: str | None = None
    assignee_id: int | None = Field(default=None, index=True)
    reporter_id: int | None = None
    labels: list[str] | None = json_field(list)
    parent_external_id: str | None = None
    estimate: float | None = None
    iteration: str | None = None
    release: str | None = None
    due_at: datetime | None = time_field()
    created_at: datetime | None = time_field()
    started_at: datetime | None = time_field()
    completed_at: datetime | None = time_field()
    extra: dict[str, Any] | None = json_field(dict)


TEXT, TIME = FieldSpec(FieldType.TEXT), FieldSpec(FieldType.TIME)


OLDEST = 5  # work in progress listed by age


def summarise(session: Session, product: str, first: date, last: date) -> dict[str, Any]:
    """Counts by status category and kind; of the work done in the range, throughput per week
    and lead and cycle times; the work in progress now and its age."""
    live = (WorkItem.product_key == product, col(WorkItem.deleted_at).is_(None))
    by_category: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for category, kind, count in session.exec(
        select(WorkItem.status_category, WorkItem.kind, sa.func.count())
        .where(*live)
        .group_by(col(WorkItem.status_category), col(WorkItem.kind))
    ):
        by_category[str(category)] = by_category.get(str(category), 0) + count
        by_kind[str(kind)] = by_kind.get(str(kind), 0) + count
    start, end = day_bounds(first, last)
    done = (
        *live,
        WorkItem.status_category == "done",
        col(WorkItem.completed_at) >= start,
        col(WorkItem.completed_at) < end,
    )
    week = monday_of(session, WorkItem.completed_at)
    weeks = session.exec(select(week, sa.func.count()).where(*done).group_by(week).order_by(week)).all()
    return {
        "work_items": {"total": sum(by_category.values()), "by_status_category": by_category, "by_kind": by_kind},
        "throughput_per_week": [{"week_of": w.isoformat() if isinstance(w, date) else w, "done": n} for w, n in weeks],
        "lead_time_days": percentiles(session, _days(session, WorkItem.created_at), done),
        "cycle_time_days": percentiles(session, _days(session, WorkItem.started_at), done),
        "work_in_progress": _in_progress(session, live),
    }


def _days(session: Session, since: Any) -> Any:
    return days_between(session, since, WorkItem.completed_at)


def _in_progress(session: Session, live: tuple[Any, ...]) -> dict[str, Any]:
    """What is in progress now, and for how long: since it started, or since it was created
    when no start is known."""
    wip = (*live, WorkItem.status_category == "in_progress")
    since = sa.func.coalesce(WorkItem.started_at, WorkItem.created_at)
    age = days_between(session, since, sa.literal(now(), UTCDateTime))
    count = session.exec(select(sa.func.count()).select_from(WorkItem).where(*wip)).one()
    oldest = (
        session.connection()
        .execute(
            sa.select(col(WorkItem.id), col(WorkItem.key), col(WorkItem.title), since, age)
            .where(*wip, since.is_not(None))
            .order_by(since, col(WorkItem.id))
            .limit(OLDEST)
        )
        .all()
    )
    return {
        "count": count,
        "age_days": percentiles(session, age, wip),
        "oldest": [
            {"id": i, "key": k, "title": t, "since": s, "age_days": round(float(a), 2)} for i, k, t, s, a in oldest
        ],
    }


ENTITY = Entity(
    name="work_item",
    label="work item",
    table_model=WorkItem,
    path="/work-items",
    fields={
        "kind": FieldSpec(FieldType.TEXT, values=("initiative", "epic", "story", "task", "bug", "subtask", "other")),
        "status": FieldSpec(FieldType.TEXT, description="the tool's own status name"),
        "status_category": FieldSpec(FieldType.TEXT, values=("todo", "in_progress", "done", "cancelled")),
        "priority": FieldSpec(FieldType.TEXT, values=("critical", "high", "medium", "low", "none")),
        "assignee": FieldSpec(FieldType.PERSON, column="assignee_id"),
        "reporter": FieldSpec(FieldType.PERSON, column="reporter_id"),
        "labels": FieldSpec(FieldType.LIST),
        "parent_external_id": FieldSpec(FieldType.TEXT, shown=False),
        "estimate": FieldSpec(FieldType.NUMBER),
        "iteration": TEXT,
        "release": TEXT,
        "due_at": TIME,
        "created_at": TIME,
        "started_at": FieldSpec(
            FieldType.TIME,
            description="the first move into an in-progress status: from the tool's history if the mapping reads"
            " one, else the first change the hub saw that put it in progress",
            stamped_when=("status_category", "in_progress"),
        ),
        "completed_at": TIME,
        "description": TEXT,
        "extra": FieldSpec(FieldType.OBJECT, description="fields the mapping keeps as they are"),
    },
    filters={
        "kind": "kind",
        "status_category": "status_category",
        "assignee": "assignee",
        "label": "labels",
    },
    parent_field="parent_external_id",
    summary=summarise,
)

"""Metric points: what a product's users did, a number per metric and day (from an analytics tool)."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from opsync.service.entities.work_item import WorkItem
from opsync.service.entity import Entity, FieldSpec, FieldType, Series, series_id
from opsync.service.measures import shift
from opsync.service.models import LIVE, Link, SyncedRecord, table_of


class MetricPoint(SyncedRecord, table=True):
    __tablename__ = "metric_point"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "external_id"),
        sa.Index(
            "ix_metric_point_live_series", "product_key", "metric", "day", postgresql_where=LIVE, sqlite_where=LIVE
        ),
    )
    metric: str | None = None
    day: date | None = None
    value: float | None = None
    source: str | None = None


AROUND = 28  # a release is judged by the days this long before and after it
ENDS = 6  # the trend compares the first and the last week of the range


def summarise(session: Session, product: str, first: date, last: date) -> dict[str, Any]:
    """Each of the product's metrics over the range: its points, its trend (the first week's
    average against the last week's), and before and after the release of each work item it
    measures (the average over AROUND on either side of its completion)."""
    c = table_of(MetricPoint).c
    live = (c.product_key == product, c.deleted_at.is_(None))
    in_range = (*live, c.day >= first, c.day <= last)
    opening = sa.func.avg(sa.case((c.day <= shift(first, ENDS), c.value)))
    closing = sa.func.avg(sa.case((c.day >= shift(last, -ENDS), c.value)))
    rows = (
        session.connection()
        .execute(
            sa.select(
                c.metric,
                sa.func.count(),
                sa.func.sum(c.value),
                sa.func.min(c.day),
                sa.func.max(c.day),
                opening,
                closing,
            )
            .where(*in_range)
            .group_by(c.metric)
            .order_by(c.metric)
        )
        .all()
    )
    measured = _measured(session, product)
    metrics = []
    for metric, points, total, since, until, start, end in rows:
        metrics.append(
            {
                "id": series_id(product, metric),
                "metric": metric,
                "points": points,
                "first_day": since,
                "last_day": until,
                "total": total,
                "trend": {"first_week_avg": _round(start), "last_week_avg": _round(end), "change": _change(start, end)},
                "releases": [_around(session, live, metric, work) for work in measured.get(metric, [])],
            }
        )
    return {"metrics": metrics}


def _measured(session: Session, product: str) -> dict[str, list[Any]]:
    """The work items each metric measures (its points' `measures` links), by metric."""
    link, c, items = table_of(Link).c, table_of(MetricPoint).c, table_of(WorkItem).c
    keys = (
        sa.select(c.metric, link.to_key)
        .distinct()
        .select_from(
            table_of(MetricPoint).join(table_of(Link), sa.and_(link.from_entity == ENTITY_NAME, link.from_id == c.id))
        )
        .where(c.product_key == product, c.deleted_at.is_(None), link.type == "measures", link.to_entity == "work_item")
        .subquery()
    )
    rows = (
        session.connection()
        .execute(
            sa.select(keys.c.metric, items.id, items.key, items.title, items.completed_at)
            .join(table_of(WorkItem), sa.and_(items.key == keys.c.to_key, items.deleted_at.is_(None)))
            .order_by(keys.c.metric, items.completed_at, items.key)
        )
        .all()
    )
    found: dict[str, list[Any]] = {}
    for row in rows:
        found.setdefault(row.metric, []).append(row)
    return found


def _around(session: Session, live: tuple[Any, ...], metric: str, work: Any) -> dict[str, Any]:
    release = {"id": work.id, "key": work.key, "title": work.title, "released_at": work.completed_at}
    if work.completed_at is None:
        return release | {"before_avg": None, "after_avg": None, "change": None}
    c, day = table_of(MetricPoint).c, work.completed_at.date()
    before, after = (
        session.connection()
        .execute(
            sa.select(
                sa.func.avg(sa.case((c.day < day, c.value))),
                sa.func.avg(sa.case((c.day >= day, c.value))),
            ).where(*live, c.metric == metric, c.day >= shift(day, -AROUND), c.day < shift(day, AROUND))
        )
        .one()
    )
    return release | {"before_avg": _round(before), "after_avg": _round(after), "change": _change(before, after)}


def _round(value: Any) -> float | None:
    return round(float(value), 2) if value is not None else None


def _change(before: Any, after: Any) -> float | None:
    """after relative to before (0.25: a quarter more); None when either is missing or before is 0."""
    if before is None or after is None or not before:
        return None
    return round((float(after) - float(before)) / float(before), 4)


ENTITY_NAME = "metric_point"
ENTITY = Entity(
    name=ENTITY_NAME,
    label="metric",
    table_model=MetricPoint,
    path="/metrics",
    fields={
        "metric": FieldSpec(FieldType.TEXT, required=True, description="the metric's name, as the mapping gives it"),
        "day": FieldSpec(
            FieldType.DATE, required=True, description="the day the value counts, in the tool's time zone"
        ),
        "value": FieldSpec(FieldType.NUMBER, required=True),
        "source": FieldSpec(FieldType.TEXT, description="what the tool counted (an event, a measure)"),
    },
    series=Series(by="metric", along="day", value="value"),
    summary=summarise,
)

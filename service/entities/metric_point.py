"""Metric points: what a product's users did, a number per metric and day (from an analytics tool)."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from opsync.service.entity import Entity, FieldSpec, FieldType, Series
from opsync.service.models import LIVE, SyncedRecord


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


ENTITY = Entity(
    name="metric_point",
    label="metric",
    table_model=MetricPoint,
    path="/metrics",
    fields={
        "metric": FieldSpec(FieldType.TEXT, description="the metric's name, as the mapping gives it"),
        "day": FieldSpec(FieldType.DATE, description="the UTC day the value counts"),
        "value": FieldSpec(FieldType.NUMBER),
        "source": FieldSpec(FieldType.TEXT, description="what the tool counted (an event, a measure)"),
    },
    series=Series(by="metric", along="day", value="value"),
)

"""The read side of kinds whose records are points of series (Entity.series): one series per
product and value of the kind's `by` field, with its points over a range of days and the links
its points carry (a metric that measures an epic)."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from opsync.service.entity import Entity, series_id
from opsync.service.models import Link
from opsync.service.views import link_targets

__all__ = ["list_series"]


def list_series(
    session: Session, kind: Entity, *, start: date, end: date, product: str | None = None, name: str | None = None
) -> list[dict[str, Any]]:
    """Every series matching product and name (its `by` value), with its points from start to
    end (both included), in order of product, name and day."""
    assert kind.series is not None
    spec, c = kind.series, kind.table.c
    shown = [n for n, f in kind.fields.items() if f.shown and n != spec.by]
    live: list[Any] = [c.deleted_at.is_(None)]
    if product is not None:
        live.append(c.product_key == product)
    if name is not None:
        live.append(c[spec.by] == name)
    rows = (
        session.connection()
        .execute(
            sa.select(c.product_key, c[spec.by], *(c[kind.fields[n].column_of(n)] for n in shown))
            .where(*live, c[spec.along] >= start, c[spec.along] <= end)
            .order_by(c.product_key, c[spec.by], c[spec.along], c.id)
        )
        .all()
    )
    found: dict[str, dict[str, Any]] = {}
    for product_key, by, *values in rows:
        series = found.setdefault(
            series_id(product_key, by),
            {"id": series_id(product_key, by), "product": product_key, spec.by: by, "points": [], "links": []},
        )
        series["points"].append(dict(zip(shown, values, strict=True)))
    for key, links in (_links(session, kind, live) if found else {}).items():
        if key in found:
            found[key]["links"] = links
    return list(found.values())


def _links(session: Session, kind: Entity, live: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """The distinct links of each series' points (over all its days)."""
    assert kind.series is not None
    c, link = kind.table.c, sa.inspect(Link).local_table
    rows = (
        session.connection()
        .execute(
            sa.select(c.product_key, c[kind.series.by], link.c.type, link.c.to_entity, link.c.to_key, link.c.origin)
            .distinct()
            .select_from(kind.table.join(link, sa.and_(link.c.from_entity == kind.name, link.c.from_id == c.id)))
            .where(*live)
            .order_by(c.product_key, c[kind.series.by], link.c.type, link.c.to_key)
        )
        .all()
    )
    targets = link_targets(session, [(r.to_entity, r.to_key) for r in rows])
    result: dict[str, list[dict[str, Any]]] = {}
    for product_key, by, type_, to_entity, to_key, origin in rows:
        result.setdefault(series_id(product_key, by), []).append(
            {
                "type": type_,
                "to_entity": to_entity,
                "to_key": to_key,
                "to_id": targets.get((to_entity, to_key)),
                "origin": origin,
                "evidence": None,
            }
        )
    return result

"""A product at a glance: what is in flight, what got done, how long it took."""
from __future__ import annotations

from datetime import timedelta
from statistics import quantiles
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from service.clock import now
from service.models import CodeChange, Product, WorkItem

WEEKS = 12


def _percentiles(days: list[float]) -> dict[str, float | None]:
    if len(days) < 2:
        value = round(days[0], 2) if days else None
        return {"p50": value, "p85": value, "p95": value}
    cuts = quantiles(days, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p85": round(cuts[84], 2), "p95": round(cuts[94], 2)}


def product_summary(session: Session, key: str) -> dict[str, Any] | None:
    product = session.exec(select(Product).where(Product.key == key)).first()
    if product is None:
        return None
    live = (WorkItem.product_key == key, WorkItem.deleted_at.is_(None))
    by_category = dict(session.exec(select(WorkItem.status_category, sa.func.count())
                                    .where(*live).group_by(WorkItem.status_category)).all())
    by_kind = dict(session.exec(select(WorkItem.kind, sa.func.count()).where(*live).group_by(WorkItem.kind)).all())
    by_state = dict(session.exec(select(CodeChange.state, sa.func.count())
                                 .where(CodeChange.product_key == key, CodeChange.deleted_at.is_(None))
                                 .group_by(CodeChange.state)).all())
    since = now() - timedelta(weeks=WEEKS)
    done = session.exec(select(WorkItem.created_at, WorkItem.started_at, WorkItem.completed_at).where(
        *live, WorkItem.status_category == "done", WorkItem.completed_at >= since)).all()
    weeks: dict[str, int] = {}
    lead, cycle = [], []
    for created, started, completed in done:
        week = (completed - timedelta(days=completed.weekday())).date().isoformat()
        weeks[week] = weeks.get(week, 0) + 1
        if created:
            lead.append((completed - created).total_seconds() / 86400)
        if started:
            cycle.append((completed - started).total_seconds() / 86400)
    return {
        "product": {"key": product.key, "name": product.name, "description": product.description,
                    "owner": product.owner},
        "work_items": {"total": sum(by_category.values()),
                       "by_status_category": {str(k): v for k, v in by_category.items()},
                       "by_kind": {str(k): v for k, v in by_kind.items()}},
        "code_changes": {"total": sum(by_state.values()), "by_state": {str(k): v for k, v in by_state.items()}},
        "throughput_per_week": [{"week_of": w, "done": weeks[w]} for w in sorted(weeks)],
        "lead_time_days": _percentiles(lead),
        "cycle_time_days": _percentiles(cycle),
    }

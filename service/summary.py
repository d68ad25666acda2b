"""A product at a glance: what is in flight, what got done, how long it took.

Everything is counted and ranked in SQL: a product holds hundreds of thousands of work
items, and the index ix_work_item_live_product_summary answers every query here alone.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from opsync.service.clock import now
from opsync.service.models import CodeChange, Product, WorkItem
from sqlmodel import Session, col, select

WEEKS = 12
PERCENTILES = {"p50": 50, "p85": 85, "p95": 95}


def _days_between(session: Session, earlier: Any, later: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return sa.extract("epoch", later - earlier) / 86400
    return sa.func.julianday(later) - sa.func.julianday(earlier)


def _monday_of(session: Session, moment: Any) -> Any:
    """The UTC date of the Monday starting moment's week."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.date_trunc("week", sa.func.timezone("UTC", moment)), sa.Date)
    return sa.func.date(moment, "weekday 0", "-6 days")  # the next Sunday (or that day), less 6 days


def _percentiles(session: Session, days: Any, where: tuple[Any, ...]) -> dict[str, float | None]:
    """Percentiles interpolated between the closest ranks, as statistics.quantiles(method=
    "inclusive") does: SQL ranks the values and returns the two around each cut."""
    ranked = (
        select(
            days.label("days"),
            sa.func.row_number().over(order_by=days).label("rank"),
            sa.func.count().over().label("n"),
        )
        .where(*where, days.is_not(None))
        .subquery()
    )
    position = ranked.c.rank - 1  # 0-based
    wanted = [(ranked.c.n - 1) * p // 100 for p in PERCENTILES.values()]  # integer division, both here and in SQL
    near = sa.or_(*(position == w for w in wanted), *(position == w + 1 for w in wanted))
    rows = session.exec(select(position, ranked.c.days, ranked.c.n).where(near)).all()
    if not rows:
        return dict.fromkeys(PERCENTILES)
    values = {int(i): float(v) for i, v, _ in rows}
    last = int(rows[0][2]) - 1
    result: dict[str, float | None] = {}
    for name, p in PERCENTILES.items():
        below, weight = divmod(last * p, 100)
        above = values.get(below + 1, values[below])
        result[name] = round(values[below] + (above - values[below]) * weight / 100, 2)
    return result


def product_summary(session: Session, key: str) -> dict[str, Any] | None:
    product = session.exec(select(Product).where(Product.key == key)).first()
    if product is None:
        return None
    live = (WorkItem.product_key == key, col(WorkItem.deleted_at).is_(None))
    by_category: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for category, kind, count in session.exec(
        select(WorkItem.status_category, WorkItem.kind, sa.func.count())
        .where(*live)
        .group_by(col(WorkItem.status_category), col(WorkItem.kind))
    ):
        by_category[str(category)] = by_category.get(str(category), 0) + count
        by_kind[str(kind)] = by_kind.get(str(kind), 0) + count
    by_state = dict(
        session.exec(
            select(CodeChange.state, sa.func.count())
            .where(CodeChange.product_key == key, col(CodeChange.deleted_at).is_(None))
            .group_by(CodeChange.state)
        ).all()
    )
    done = (*live, WorkItem.status_category == "done", col(WorkItem.completed_at) >= now() - timedelta(weeks=WEEKS))
    week = _monday_of(session, WorkItem.completed_at)
    weeks = session.exec(select(week, sa.func.count()).where(*done).group_by(week).order_by(week)).all()
    return {
        "product": {
            "key": product.key,
            "name": product.name,
            "description": product.description,
            "owner": product.owner,
        },
        "work_items": {"total": sum(by_category.values()), "by_status_category": by_category, "by_kind": by_kind},
        "code_changes": {"total": sum(by_state.values()), "by_state": {str(k): v for k, v in by_state.items()}},
        "throughput_per_week": [{"week_of": w.isoformat() if isinstance(w, date) else w, "done": n} for w, n in weeks],
        "lead_time_days": _percentiles(
            session, _days_between(session, WorkItem.created_at, WorkItem.completed_at), done
        ),
        "cycle_time_days": _percentiles(
            session, _days_between(session, WorkItem.started_at, WorkItem.completed_at), done
        ),
    }

"""Measures computed in the database, on SQLite and PostgreSQL alike: days between two
moments, the week a moment falls in, percentiles of a column. The summary's parts use them."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

__all__ = ["PERCENTILES", "day_bounds", "days_between", "monday_of", "percentiles", "shift"]

PERCENTILES = {"p50": 50, "p85": 85, "p95": 95}


def shift(day: date, days: int) -> date:
    """day moved by days, within the calendar's range (a request may name its first or last day)."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The moments a range of UTC days spans: from first's midnight to the midnight after last."""
    start = datetime.combine(first, time(), UTC)
    if last == date.max:
        return start, datetime.max.replace(tzinfo=UTC)
    return start, datetime.combine(last + timedelta(days=1), time(), UTC)


def days_between(session: Session, earlier: Any, later: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return sa.extract("epoch", later - earlier) / 86400
    return sa.func.julianday(later) - sa.func.julianday(earlier)


def monday_of(session: Session, moment: Any) -> Any:
    """The UTC date of the Monday starting moment's week."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.cast(sa.func.date_trunc("week", sa.func.timezone("UTC", moment)), sa.Date)
    return sa.func.date(moment, "weekday 0", "-6 days")  # the next Sunday (or that day), less 6 days


def percentiles(session: Session, values: Any, where: tuple[Any, ...]) -> dict[str, float | None]:
    """Percentiles interpolated between the closest ranks, as statistics.quantiles(method=
    "inclusive") does: SQL ranks the values and returns the two around each cut."""
    ranked = (
        select(
            values.label("value"),
            sa.func.row_number().over(order_by=values).label("rank"),
            sa.func.count().over().label("n"),
        )
        .where(*where, values.is_not(None))
        .subquery()
    )
    position = ranked.c.rank - 1  # 0-based
    wanted = [(ranked.c.n - 1) * p // 100 for p in PERCENTILES.values()]  # integer division, both here and in SQL
    near = sa.or_(*(position == w for w in wanted), *(position == w + 1 for w in wanted))
    rows = session.exec(select(position, ranked.c.value, ranked.c.n).where(near)).all()
    if not rows:
        return dict.fromkeys(PERCENTILES)
    found = {int(i): float(v) for i, v, _ in rows}
    last = int(rows[0][2]) - 1
    result: dict[str, float | None] = {}
    for name, p in PERCENTILES.items():
        below, weight = divmod(last * p, 100)
        above = found.get(below + 1, found[below])
        result[name] = round(found[below] + (above - found[below]) * weight / 100, 2)
    return result

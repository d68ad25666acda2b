"""A product at a glance: each kind of record in the registry adds its part (what is in
flight, what got done, how long it took), counted and ranked in SQL."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlmodel import Session, select

from opsync.service.entities import ENTITIES
from opsync.service.models import Product


def product_summary(session: Session, key: str, first: date, last: date) -> dict[str, Any] | None:
    """The product's summary over the days from first to last (both included); None if the
    portfolio has no such product."""
    product = session.exec(select(Product).where(Product.key == key)).first()
    if product is None:
        return None
    summary: dict[str, Any] = {
        "product": {
            "key": product.key,
            "name": product.name,
            "description": product.description,
            "owner": product.owner,
        },
        "range": {"from": first.isoformat(), "to": last.isoformat()},
    }
    for entity in ENTITIES.values():
        if entity.summary is not None:
            summary |= entity.summary(session, key, first, last)
    return summary

"""A product at a glance: each kind of record in the registry adds its part (what is in
flight, what got done, how long it took), counted and ranked in SQL."""

from __future__ import annotations

from typing import Any

from opsync.service.entities import ENTITIES
from opsync.service.models import Product
from sqlmodel import Session, select


def product_summary(session: Session, key: str) -> dict[str, Any] | None:
    product = session.exec(select(Product).where(Product.key == key)).first()
    if product is None:
        return None
    summary: dict[str, Any] = {
        "product": {
            "key": product.key,
            "name": product.name,
            "description": product.description,
            "owner": product.owner,
        }
    }
    for entity in ENTITIES.values():
        if entity.summary is not None:
            summary |= entity.summary(session, key)
    return summary

"""The entity registry: every kind of record the hub keeps, each declared once in its own
module here (its table, fields, enumerations, person references, API collection and summary
part; see opsync.service.entity). Mapping, store, views, reconcile and the API derive from it:
a new kind of record is a new module here, named in KINDS, and a migration for its table."""

from __future__ import annotations

from opsync.service.entities import code_change, document, metric_point, work_item
from opsync.service.entity import Entity

__all__ = ["ENTITIES", "entity"]

KINDS = (work_item, code_change, document, metric_point)  # in the order the API and the summary present them
ENTITIES: dict[str, Entity] = {kind.ENTITY.name: kind.ENTITY for kind in KINDS}


def entity(name: str) -> Entity:
    """The declared kind of record called name; KeyError names the known ones."""
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"no kind of record {name!r}; the registry has {', '.join(ENTITIES)}") from None

"""What declaring a kind of record says: its fields, their types and enumerations, its person
references, its table, its API collection and filters, its part of a product's summary.

The kinds themselves are declared once each, in opsync.service.entities; mapping, store, views,
reconcile and the API derive everything from those declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session

from opsync.service.functions import FieldType
from opsync.service.models import SyncedRecord, table_of

__all__ = [
    "COMMON_FIELDS",
    "SERIES_SEPARATOR",
    "Entity",
    "FieldSpec",
    "FieldType",
    "Series",
    "SummaryPart",
    "series_id",
]


@dataclass(frozen=True)
class FieldSpec:
    type: FieldType
    values: tuple[str, ...] | None = None  # an enumeration: a mapped value outside it falls to the default
    column: str | None = None  # the table column, when not the field's own name (a person's id column)
    shown: bool = True  # part of the API representation
    in_list: bool = True  # also in list items, not only in the record's own page (False: long texts)
    # When the mapping gives no value (a TIME field): the version time of the first change the
    # hub sees that gives field stamped_when[0] the value stamped_when[1]; kept once set.
    stamped_when: tuple[str, str] | None = None
    required: bool = False  # a record the mapping gives no value here is not kept (its raw record is)
    description: str | None = None

    def column_of(self, name: str) -> str:
        return self.column or name


# Every kind of record has these, beside the columns of SyncedRecord.
COMMON_FIELDS: dict[str, FieldSpec] = {
    "key": FieldSpec(FieldType.TEXT, description="the tool's human key (PROJ-12, org/repo#3)"),
    "url": FieldSpec(FieldType.TEXT, description="where a person opens it in the tool"),
    "title": FieldSpec(FieldType.TEXT),
}

# A kind's part of GET /products/{key}/summary: session, product key and the range of days
# asked for (first and last, both included) -> JSON-able members of the summary.
SummaryPart = Callable[[Session, str, date, date], dict[str, Any]]


SERIES_SEPARATOR = ":"


def series_id(product: str | None, name: str | None) -> str:
    """The id of a product's series of that name (Series.by's value): product:name."""
    return f"{product or ''}{SERIES_SEPARATOR}{name or ''}"


@dataclass(frozen=True)
class Series:
    """Records that are the points of series (a metric's value per day): the API serves them
    as series, one per product and value of `by`, with the points along `along` (a DATE
    field) holding `value`."""

    by: str
    along: str
    value: str


@dataclass(frozen=True)
class Entity:
    """One kind of record.

    name is what mappings (`entity:`), links (`to:`) and the change feed call it; path is its
    API collection (/api/v1{path}, /api/v1{path}/{id}), None when it has no generic one.
    filters maps a list's query parameters to the fields they test: an enumerated or text field
    is matched exactly, a person by hub id, email or tool login, a list by one member.
    """

    name: str
    label: str  # in messages: "work item"
    table_model: type[SyncedRecord]
    fields: dict[str, FieldSpec]
    path: str | None
    filters: dict[str, str] = field(default_factory=dict)
    links_in_list: bool = False  # list items carry their outgoing links
    parent_field: str | None = None  # holds the parent's external id: children show as incoming links
    summary: SummaryPart | None = None
    series: Series | None = None  # served as series at path, not as a list of records

    @property
    def table(self) -> Table:
        return table_of(self.table_model)

    # the derived views below are read per record while writing: computed once
    @cached_property
    def mappable(self) -> dict[str, FieldSpec]:
        """Every field a mapping may set."""
        return COMMON_FIELDS | self.fields

    @cached_property
    def people(self) -> dict[str, str]:
        """Person fields -> their id columns."""
        return {n: f.column_of(n) for n, f in self.fields.items() if f.type is FieldType.PERSON}

    @cached_property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.fields.items() if f.required)

    @cached_property
    def stamps(self) -> dict[str, tuple[str, str]]:
        """TIME fields the hub stamps from the history it keeps (FieldSpec.stamped_when)."""
        return {n: f.stamped_when for n, f in self.fields.items() if f.stamped_when is not None}

    @property
    def schema_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

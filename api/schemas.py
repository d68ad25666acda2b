"""The public API's shapes, as OpenAPI documents them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic import create_model as _create_model

from opsync.service.entity import Entity, FieldSpec, FieldType
from opsync.service.models import DeliveryStatus
from opsync.service.views import MAX_ID

T = TypeVar("T")
create_model: Any = _create_model  # models built from the registry: their fields are known only at run time

# A cursor is the URL-safe base64 (padded) of the decimal position of the last row of a page,
# up to 19 digits, or empty for the first page: exactly the strings this pattern matches. It is
# written out per 4-character group of three digits so that the OpenAPI document describes
# every cursor this API accepts.
_PAIR = "(?:[MN][DTjz]|O[DT])"  # the first two characters of a group holding two or three digits
_GROUP = _PAIR + "[AEIMQUYcgk][w-z0-5]"
CURSOR_PATTERN = (
    f"^(?:(?:{_GROUP}){{0,6}}|(?:{_GROUP}){{0,6}}(?:[MN][AQgw]|O[AQ])==|(?:{_GROUP}){{0,5}}{_PAIR}[AEIMQUYcgk]=)$"
)
CURSOR_MAX_LENGTH = 28


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="pass as ?cursor= to read on; null at the end",
        json_schema_extra={"pattern": CURSOR_PATTERN, "maxLength": CURSOR_MAX_LENGTH},
    )


class PersonRef(BaseModel):
    id: int
    display_name: str | None
    email: str | None


class LinkOut(BaseModel):
    type: str
    origin: str
    evidence: str | None
    direction: Literal["outgoing", "incoming"] = "outgoing"
    to_entity: str | None = None
    to_key: str | None = None
    to_id: int | None = None
    from_entity: str | None = None
    from_id: int | None = None
    from_key: str | None = None


class ChangeOut(BaseModel):
    seq: int
    entity: str
    entity_id: int
    op: Literal["create", "update", "delete"]
    fields: dict[str, list[Any]]
    at: datetime


class Record(BaseModel):
    id: int
    key: str | None
    url: str | None
    title: str | None
    product: str | None
    connection_id: str
    external_id: str
    updated_at: datetime | None  # the tool's last change
    synced_at: datetime | None  # the hub's last change
    mapping_version: int | None = Field(description="the version of its tool's mapping that made it")
    deleted_at: datetime | None


_PLAIN: dict[FieldType, type] = {
    FieldType.TEXT: str,
    FieldType.NUMBER: float,
    FieldType.INTEGER: int,
    FieldType.TIME: datetime,
    FieldType.DATE: date,
}


def _annotation(spec: FieldSpec) -> Any:
    if spec.type is FieldType.PERSON:
        return PersonRef | None
    if spec.type is FieldType.LIST:
        return list[str]
    if spec.type is FieldType.OBJECT:
        return dict[str, Any]
    if spec.values:
        return Literal[spec.values] | None
    return _PLAIN[spec.type] | None


def record_schemas(kind: Entity) -> tuple[type[BaseModel], type[BaseModel]]:
    """A kind's list item and its detail (with links and history), from its declaration."""
    shown = {name: spec for name, spec in kind.fields.items() if spec.shown}
    fields: dict[str, Any] = {
        name: (_annotation(spec), Field(description=spec.description)) for name, spec in shown.items() if spec.in_list
    }
    if kind.links_in_list:
        fields["links"] = (list[LinkOut], ...)
    item = create_model(kind.schema_name, __base__=Record, **fields)
    whole: dict[str, Any] = {
        name: (_annotation(spec), Field(description=spec.description))
        for name, spec in shown.items()
        if not spec.in_list
    }
    detail = create_model(
        f"{kind.schema_name}Detail",
        __base__=item,
        links=(list[LinkOut], ...),
        history=(list[ChangeOut], ...),
        **whole,
    )
    return item, detail


class SeriesList(BaseModel, Generic[T]):
    items: list[T]


def series_schema(kind: Entity) -> type[BaseModel]:
    """A series of a kind whose records are points (Entity.series), from its declaration."""
    assert kind.series is not None
    point = create_model(
        f"{kind.schema_name}Value",
        **{
            name: (_annotation(spec), Field(description=spec.description))
            for name, spec in kind.fields.items()
            if spec.shown and name != kind.series.by
        },
    )
    return create_model(
        f"{kind.schema_name}Series",
        id=(str, Field(description="product:name, for GET .../{series_id}")),
        product=(str | None, ...),
        points=(list[point], ...),  # type: ignore[valid-type]  # a model built from the registry
        links=(list[LinkOut], ...),
        **{kind.series.by: (str | None, ...)},
    )


class MappingVersion(BaseModel):
    kind: str
    version: int
    hash: str  # sha256 of the text
    first_applied_at: datetime
    first_applied_by: str | None
    in_use: bool


class MappingInUse(MappingVersion):
    applied_at: datetime
    applied_by: str | None
    connections: list[str]


class MappingText(MappingInUse):
    text: str  # the YAML


class RemapRun(BaseModel):
    connection_id: str
    run_id: int  # a sync run of mode remap: GET /sync-runs shows its progress


class MappingApplied(BaseModel):
    kind: str
    version: int
    runs: list[RemapRun]


class MappingPreview(BaseModel):
    kind: str
    read: int = Field(description="stored raw records read")
    would_create: int = Field(description="records the candidate makes that do not exist yet")
    would_change: int = Field(description="records whose fields would change")
    unchanged: int
    changed_by_kind: dict[str, int]
    sample: list[dict[str, Any]] = Field(description="some changes: entity, external_id, op, fields -> [now, then]")
    failures: list[str] = Field(description="records the candidate cannot map, and why")
    defaults: dict[str, dict[str, int]] = Field(description="field -> value that fell to the default -> records")
    warnings: list[str] = Field(description="names that resolve to no field; map keys no stored value matches")


class Identity(BaseModel):
    tool: str | None = Field(description="the kind of tool of the connection (its connector)")
    connection_id: str
    external_id: str
    login: str | None
    display_name: str | None


class Person(BaseModel):
    id: int
    display_name: str | None
    email: str | None
    identities: list[Identity]


class WorkRecord(BaseModel):
    id: int
    key: str | None
    title: str | None
    product: str | None
    updated_at: datetime | None


class Work(BaseModel):
    entity: str = Field(description="the kind of record")
    role: str = Field(description="the person's part in it: the field naming them (assignee, author, ...)")
    count: int = Field(description="live records of this kind naming the person in this role")
    recent: list[WorkRecord] = Field(description="the most recently changed of them")


class PersonDetail(Person):
    work: list[Work]


class Product(BaseModel):
    key: str
    name: str
    description: str | None
    owner: str | None


class LinkRow(BaseModel):
    id: int
    type: str
    from_entity: str
    from_id: int
    to_entity: str
    to_key: str
    to_id: int | None
    origin: str
    evidence: str | None


class ChangeFeed(BaseModel):
    items: list[ChangeOut]
    next_after: int  # pass as ?after= to follow the feed


class Connection(BaseModel):
    id: str
    kind: str
    base_url: str
    status: str
    last_sync_at: datetime | None
    last_error: str | None
    webhook_url: str
    webhook_secret_configured: bool


class SyncRun(BaseModel):
    id: int
    connection_id: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    fetched: int
    created: int
    updated: int
    unchanged: int
    stale: int
    deleted: int
    failed: int
    errors: list[str]


class WebhookAccepted(BaseModel):
    delivery_id: str
    duplicate: bool


class InboxEvent(BaseModel):
    id: int
    connection_id: str
    delivery_id: str
    received_at: datetime
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    processed_at: datetime | None


REPLAY_MAX = 1000  # ids in one replay


def _json_integer(value: Any) -> Any:
    """A JSON integer (1 or 1.0, as JSON Schema has it), never a string or a boolean."""
    if isinstance(value, (str, bool)):
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    return value


DeliveryId = Annotated[int, Field(ge=1, le=MAX_ID), BeforeValidator(_json_integer)]


class InboxReplay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[DeliveryId] = Field(
        max_length=REPLAY_MAX, description="ids of failed deliveries (GET /inbox?status=failed)"
    )


class InboxReplayed(BaseModel):
    replayed: int  # how many of the ids were failed deliveries, now queued again

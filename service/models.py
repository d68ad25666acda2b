"""The hub's own tables (people, links, changes, raw payloads, connections, runs, the inbox)
and SyncedRecord, what every kind of record's table shares. The kinds themselves and their
tables are declared in opsync.service.entities.

Every synced record has a hub id and an identity (connection_id, external_id), a version
(source_updated_at, the tool's own last-change time) and deleted_at (a tombstone).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes on every database (SQLite keeps no offset of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        """On SQLite, the text SQLAlchemy's DATETIME writes ('YYYY-MM-DD HH:MM:SS.ffffff'), made
        in one step: a backfill binds several times per record, and two processors in a row
        cost a tenth of its writing."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is not None and value.tzinfo is UTC:  # most are: the text less its offset
                return value.isoformat(" ", "microseconds")[:-6]
            utc = self.process_bind_param(value, dialect)
            return None if utc is None else utc.isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Origin(StrEnum):
    """Where a stored version came from. At equal versions the tool's own answer (a pull or a
    fetch) wins over a webhook body; two webhook bodies that disagree call for a fetch."""

    FETCH = "fetch"
    WEBHOOK = "webhook"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    IGNORED = "ignored"  # verified, but nothing in it is synced (a ping, an unsynced event)
    FAILED = "failed"  # parked with its error until a person replays it


class Lane(StrEnum):
    """Deliveries that carry their records are applied without waiting on any tool; those
    that need the tool's API go to the fetch lane, which has its own worker."""

    APPLY = "apply"
    FETCH = "fetch"


class RunMode(StrEnum):
    INCREMENTAL = "incremental"
    FULL = "full"  # with reconcile
    REMAP = "remap"  # stored raw records through the mapping in use; no tool is asked


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its process stopped or died; the next pull resumes from the cursor


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def time_field(**kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, **kw)


def json_field(default: Any = None) -> Any:
    if default is None:
        return Field(default=None, sa_type=JSONType)
    return Field(default_factory=default, sa_type=JSONType)


class Product(SQLModel, table=True):
    __tablename__ = "product"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True)
    name: str
    description: str | None = None
    owner: str | None = None


class Person(SQLModel, table=True):
    __tablename__ = "person"
    id: int | None = Field(default=None, primary_key=True)
    display_name: str | None = None
    email: str | None = Field(default=None, unique=True)


class PersonIdentity(SQLModel, table=True):
    """A person's account in one tool (an account id, a user id)."""

    __tablename__ = "person_identity"
    __table_args__ = (sa.UniqueConstraint("connection_id", "external_id"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    connection_id: str
    external_id: str
    login: str | None = None
    display_name: str | None = None


class SyncedRecord(SQLModel):
    """Columns every synced entity shares."""

    id: int | None = Field(default=None, primary_key=True)
    connection_id: str = Field(index=True)
    external_id: str
    product_key: str | None = Field(default=None, index=True)
    key: str | None = Field(default=None, index=True)
    url: str | None = None
    title: str | None = None
    source_updated_at: datetime | None = time_field()
    deleted_at: datetime | None = time_field()
    content_hash: str | None = None
    mapping_version_id: int | None = None
    updated_at: datetime | None = time_field(index=True)  # when the hub last changed it
    origin: str | None = None  # an Origin; None (rows older than origins) counts as fetched
    container: str | None = None  # the tool's container (project, repository), for reconcile


LIVE = sa.text("deleted_at IS NULL")  # the condition of partial indexes over live records


class Link(SQLModel, table=True):
    """A relation between records; the target is named by key, resolved when read."""

    __tablename__ = "link"
    __table_args__ = (sa.UniqueConstraint("from_entity", "from_id", "type", "to_entity", "to_key"),)
    id: int | None = Field(default=None, primary_key=True)
    from_entity: str
    from_id: int = Field(index=True)
    to_entity: str
    to_key: str = Field(index=True)
    type: str
    origin: str  # source or inferred
    evidence: str | None = None


class Change(SQLModel, table=True):
    """The change feed and the history: one row per real change, seq gap-free."""

    __tablename__ = "change"
    __table_args__ = (sa.Index("ix_change_entity", "entity", "entity_id"),)
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    entity: str
    entity_id: int
    op: str  # create, update, delete
    fields: dict[str, Any] = json_field(dict)
    at: datetime = Field(sa_type=UTCDateTime)


class ChangeCounter(SQLModel, table=True):
    """The last seq handed out; its row lock orders writers so seqs commit in order."""

    __tablename__ = "change_counter"
    id: int = Field(default=1, primary_key=True)
    value: int = 0


class StoredPayload(SQLModel, table=True):
    """A raw record's payload as the tool sent it (the contract's RawRecord, kept)."""

    __tablename__ = "raw_record"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "record_type", "external_id"),
        sa.Index("ix_raw_record_connection_id", "connection_id", "id"),  # re-mapping reads in id order
    )
    id: int | None = Field(default=None, primary_key=True)
    connection_id: str
    record_type: str
    external_id: str
    payload: dict[str, Any] = json_field(dict)
    hash: str
    fetched_at: datetime = Field(sa_type=UTCDateTime)
    version: datetime | None = time_field()  # the tool's last-change time of this payload
    origin: str | None = None  # fetch or webhook, as on the record


class Connection(SQLModel, table=True):
    """A configured connection's state; its settings live in the config file."""

    __tablename__ = "connection"
    id: str = Field(primary_key=True)
    kind: str
    cursor: str | None = None
    status: str = "new"  # new, ok, failing
    last_error: str | None = None
    last_sync_at: datetime | None = time_field()
    # the newest received_at of the deliveries pruned from the inbox: a body signed before
    # then may have been pruned, so it is refused rather than applied again
    pruned_through: datetime | None = time_field()
    field_names: dict[str, str] | None = json_field()  # the tool's fields, name -> id (NamesFields)


class PullLease(SQLModel, table=True):
    """One pull per connection at a time, across processes: held while a pull runs, renewed
    by its holder, taken over by another once it expires (its holder died)."""

    __tablename__ = "pull_lease"
    connection_id: str = Field(primary_key=True)
    holder: str
    run_id: int | None = None
    expires_at: datetime = Field(sa_type=UTCDateTime)


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"
    id: int | None = Field(default=None, primary_key=True)
    connection_id: str = Field(index=True)
    mode: str  # a RunMode
    status: str = "running"  # running, succeeded, failed, interrupted
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = time_field()
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    deleted: int = 0
    failed: int = 0
    errors: list[str] = json_field(list)


class InboxEvent(SQLModel, table=True):
    """A webhook delivery, stored before it is acknowledged."""

    __tablename__ = "inbox_event"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "delivery_id"),
        sa.UniqueConstraint("connection_id", "body_hash", name="uq_inbox_event_body"),
        sa.Index("ix_inbox_pending", "status", "lane", "available_at"),
        sa.Index("ix_inbox_processed", "status", "processed_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    connection_id: str
    delivery_id: str
    received_at: datetime = Field(sa_type=UTCDateTime)
    headers: dict[str, str] = json_field(dict)
    body: str
    body_hash: str | None = None  # sha256 of the body: the same body again is a duplicate
    status: str = "pending"  # pending, done, ignored, failed
    lane: str = Field(default="apply", sa_column_kwargs={"server_default": "apply"})  # apply, fetch
    attempts: int = 0
    available_at: datetime = Field(sa_type=UTCDateTime)  # a claim leases it until then
    claim: str | None = None  # the token of the claim that holds it
    last_error: str | None = None
    processed_at: datetime | None = time_field()


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    token_hash: str = Field(unique=True)
    scopes: list[str] = json_field(list)
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = time_field()


class MappingVersion(SQLModel, table=True):
    """A mapping's text, once per content: the versions an ops engineer can apply again."""

    __tablename__ = "mapping_version"
    __table_args__ = (sa.UniqueConstraint("kind", "hash"),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str
    hash: str
    content: str
    applied_at: datetime = Field(sa_type=UTCDateTime)  # when it was first applied
    applied_by: str | None = None  # who first applied it (a token's name, "opsync" for the shipped default)


class AppliedMapping(SQLModel, table=True):
    """The version of each connector kind's mapping in use, for every process on the database."""

    __tablename__ = "applied_mapping"
    kind: str = Field(primary_key=True)
    version_id: int = Field(foreign_key="mapping_version.id")
    applied_at: datetime = Field(sa_type=UTCDateTime)
    applied_by: str | None = None


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table behind a table model, for statements that bypass the ORM."""
    # SQLModel sets __table__ on table models at class creation but declares it to no type checker.
    return model.__table__  # type: ignore[attr-defined]


class _Identified(Protocol):
    id: int | None


def id_of(row: _Identified) -> int:
    """The id of a row the database has numbered (read back, or added and flushed)."""
    if row.id is None:
        raise ValueError(f"this {type(row).__name__} has no id yet: flush the session that added it")
    return row.id

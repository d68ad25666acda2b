"""The contract between the sync engine and connector plugins.

A connector turns one tool's API and webhooks into raw records. It never writes to
the store and never keeps cursors: the engine owns both, so that a cursor is committed
in the same transaction as the data it covers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, SecretStr


class ConnectionSettings(BaseModel):
    """What every connection has; a connector's settings model extends it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    kind: str
    base_url: str = Field(pattern=r"^https?://")
    webhook_secret: SecretStr | None = None
    pull_every_minutes: float = Field(default=5.0, gt=0)
    full_every_hours: float = Field(default=24.0, gt=0)  # a full pull and reconcile, this often
    max_delete_share: float = Field(default=0.5, ge=0, le=1)  # per record type and container
    delete_vanished_containers: bool = False  # a container gone from the listing is reported, not emptied


@dataclass(frozen=True)
class RawRecord:
    """One record as the tool describes it.

    record_type names the kind of record in the tool (e.g. "ticket", "page");
    external_id is the tool's stable id (never a key or number that can change);
    version is the tool's own last-change time, or None when the payload has none.
    """

    record_type: str
    external_id: str
    payload: dict[str, Any]
    version: datetime | None


@dataclass(frozen=True)
class Deletion:
    record_type: str
    external_id: str
    at: datetime
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class PullPage:
    """A page of a pull, with the cursor to resume from once it is stored."""

    records: list[RawRecord]
    cursor: str | None


@dataclass(frozen=True)
class Listing:
    """Every id that exists upstream, by record type, for reconcile.

    containers names the containers (projects, repositories) that were listed completely,
    lower-case; None when the tool has no containers. A stored record whose container is not
    among them is not deleted: its container vanished (archived, no access) or failed to list,
    and unlisted says why, by container.
    """

    ids: dict[str, set[str]]
    containers: set[str] | None = None
    unlisted: dict[str, str] = field(default_factory=dict)


@dataclass
class WebhookContent:
    """What a delivery means: records to upsert or delete, ids to fetch from the tool."""

    upserts: list[RawRecord] = field(default_factory=list)
    deletions: list[Deletion] = field(default_factory=list)
    refetch: list[tuple[str, str]] = field(default_factory=list)
    ignored_reason: str | None = None


class ConnectorError(Exception):
    """Base of connector errors; the subclass says what the caller should do."""


class TransientError(ConnectorError):
    """Retry later: rate limited, 5xx, timeout, dropped connection."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(ConnectorError):
    """Retrying will not help (bad credentials, missing project): a person must act."""


class Unsupported(FatalError):
    """The connection's connector lacks the capability asked of it (an analytics tool takes no webhooks)."""


class WebhookRejected(ConnectorError):
    """The delivery is not authentic (bad or missing signature)."""


class Connector(ABC):
    """A tool plugin, registered in the entry-point group `opsync.connectors`.

    What a connector can do is the capabilities it also derives from: Pulls (records changed
    since a cursor, and every id for reconcile), FetchesOne (one record by id, for webhooks
    that carry only an id), ReceivesWebhooks (verify and read deliveries). An analytics tool
    pulls only; a tool that can be asked nothing but sends webhooks only receives them.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[ConnectionSettings]] = ConnectionSettings  # or a model derived from it

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings

    @classmethod
    @abstractmethod
    def default_mapping(cls) -> Path:
        """The shipped YAML mapping for this kind."""

    async def aclose(self) -> None:  # noqa: B027  (optional: most connectors hold no client to close)
        """Release clients; the default has nothing to release."""


class Pulls(ABC):
    """The capability to pull: the engine's schedules and reconcile use it."""

    @abstractmethod
    def pull(self, cursor: str | None) -> AsyncIterator[PullPage]:
        """Records changed since cursor (None: everything), a page at a time."""

    @abstractmethod
    async def list_ids(self) -> Listing:
        """Every id that exists upstream (for reconcile)."""


class FetchesOne(ABC):
    """The capability to fetch one record: refetches of webhooks that name a record only,
    and reconcile's confirmation that a record is gone."""

    @abstractmethod
    async def fetch_one(
        self, record_type: str, external_id: str, known: dict[str, Any] | None = None
    ) -> RawRecord | None:
        """The record as it is now, or None if the tool says it does not exist.

        known is the last stored payload of the record, if any: tools that address
        records by something other than their id (a container and a number) find it there.
        """


class NamesFields(ABC):
    """The capability to list the tool's fields by name, so that a mapping may name a field
    (field('Story Points')) where the tool knows it by an id (customfield_10016)."""

    @abstractmethod
    async def field_names(self) -> dict[str, str]:
        """Each field's name -> its id."""


class ReceivesWebhooks(ABC):
    """The capability to receive webhooks: POST /api/v1/webhooks/{connection_id}[/{event}].

    Every method sees the delivery's headers in lower case, plus the pseudo-headers `:method`,
    `:path` (what the URL says after the connection's webhook URL: "/" or "/{event}") and `:query`
    (the raw query string), for tools that name the event in the URL or sign it.
    """

    # The delivery headers worth keeping with it (lower-case; never credentials): what
    # delivery_id and parse_webhook read again when the inbox applies it.
    delivery_headers: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise WebhookRejected unless the delivery is signed with the connection's secret."""

    @abstractmethod
    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        """The tool's id of this delivery, stable across its retries."""

    def signed_at(self, headers: Mapping[str, str], payload: Any) -> datetime | None:
        """When the tool sent the delivery, if the signed body says so (None: it does not)."""
        return None

    def decode_webhook(self, headers: Mapping[str, str], body: bytes) -> Any:
        """The delivery's JSON document; ValueError if the body is not one."""
        return orjson.loads(body)  # orjson.JSONDecodeError is a ValueError

    @abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], payload: Any, received_at: datetime) -> WebhookContent:
        """Turn a verified delivery into upserts, deletions and ids to refetch."""

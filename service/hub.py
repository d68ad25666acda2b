"""The running hub: database, connections, their connectors, mappings and the portfolio."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from opsync import mappings as shipped_mappings
from opsync.service.clock import now
from opsync.service.config import HubConfig, load_config
from opsync.service.contract import (
    ConnectionSettings,
    Connector,
    FetchesOne,
    NamesFields,
    Pulls,
    ReceivesWebhooks,
    Unsupported,
)
from opsync.service.db import create_db_engine, upgrade
from opsync.service.leases import interrupt_orphaned_runs
from opsync.service.mapping import Mapping, load_mapping, parse_mapping
from opsync.service.models import AppliedMapping, Connection, MappingVersion, Product, id_of, table_of
from opsync.service.plugins import build_connector, connector_class
from opsync.service.portfolio import Portfolio, load_people, load_portfolio
from opsync.service.settings import Settings
from opsync.service.store import Store

log = logging.getLogger("opsync.hub")
_APPLIED = table_of(AppliedMapping)


@dataclass
class ActiveMapping:
    mapping: Mapping
    version_id: int


@dataclass
class Hub:
    settings: Settings
    engine: Engine
    store: Store
    connections: dict[str, ConnectionSettings]
    portfolio: Portfolio
    people: dict[str, dict[str, str]]  # connector kind -> account name -> email (people.yaml)
    mappings: dict[str, ActiveMapping] = field(default_factory=dict)  # by connector kind
    _connectors: dict[str, Connector] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, config: HubConfig | None = None, *, copy_wal: bool = True) -> Hub:
        """Migrate the database, load config, mappings and portfolio; fail early and clearly.
        copy_wal: see db.create_db_engine."""
        if config is None:
            config = load_config(settings.config) if settings.config else HubConfig(connections={})
        upgrade(settings.database_url)
        engine = create_db_engine(settings.database_url, copy_wal=copy_wal)
        hub = cls(
            settings=settings,
            engine=engine,
            store=Store(engine),
            connections=config.connections,
            portfolio=load_portfolio(hub_file(settings, "portfolio.yaml")),
            people=load_people(hub_file(settings, "people.yaml")),
        )
        for kind in sorted({c.kind for c in config.connections.values()}):
            hub._use_applied_or_default(kind)
        hub._record_connections_and_products()
        interrupt_orphaned_runs(engine)  # runs a dead process left `running`
        return hub

    def default_mapping_file(self, kind: str) -> Path:
        """The ops engineers' file for the kind in mappings_dir, else the connector's shipped one."""
        custom = self.settings.mappings_dir / f"{kind}.yaml" if self.settings.mappings_dir else None
        return custom if custom and custom.exists() else connector_class(kind).default_mapping()

    def fields_of(self, kind: str) -> dict[str, str] | None:
        """The field list the kind's tools gave (name -> id), None if none was fetched yet."""
        with Session(self.engine) as session:
            lists = session.exec(
                select(Connection.field_names).where(Connection.kind == kind, col(Connection.field_names).is_not(None))
            ).all()
        return {name: id_ for names in lists if names for name, id_ in names.items()} or None

    async def learn_fields(self, connection_id: str) -> None:
        """Fetch the tool's field list (if it names fields) and keep it; the mapping in use is
        compiled again with it if it changed, so that fields named in the mapping resolve."""
        connector = self.connector(connection_id)
        if not isinstance(connector, NamesFields):
            return
        try:
            names = await connector.field_names()
        except Exception as error:  # a mapping naming fields warns; the pull goes on
            log.warning("could not read the field list of %s: %s", connection_id, error)
            return
        kind = self.connections[connection_id].kind

        def keep() -> bool:
            with Session(self.engine) as session:
                connection = session.get_one(Connection, connection_id)
                if connection.field_names == names:
                    return False
                connection.field_names = names
                session.add(connection)
                session.commit()
                return True

        if await asyncio.to_thread(keep) and kind in self.mappings:
            self.mappings[kind] = await asyncio.to_thread(self._load_version, self.mappings[kind].version_id)

    def _use_applied_or_default(self, kind: str) -> None:
        """The version applied on this database, or on first start the default file, applied."""
        default = load_mapping(self.default_mapping_file(kind), fields_by_name=self.fields_of(kind))
        with Session(self.engine) as session:
            applied = session.get(AppliedMapping, kind)
        if applied is None:
            self.apply_mapping(default, by="opsync (the default, on first start)")
            return
        self.mappings[kind] = self._load_version(applied.version_id)
        if self.mappings[kind].mapping.hash != default.hash:
            log.info(
                "the %s mapping in use is version %s, not %s: apply the file to use it (opsync mappings apply)",
                kind,
                applied.version_id,
                self.default_mapping_file(kind),
            )

    def _load_version(self, version_id: int) -> ActiveMapping:
        with Session(self.engine) as session:
            version = session.get_one(MappingVersion, version_id)
        mapping = parse_mapping(
            f"{version.kind} mapping, version {version_id}",
            version.content,
            fields_by_name=self.fields_of(version.kind),
        )
        return ActiveMapping(mapping, version_id)

    def apply_mapping(self, mapping: Mapping, by: str | None = None) -> int:
        """Store the mapping as a version (once per content) and make it the one in use, for
        this process now and for every other on the database at its next page or batch."""
        with Session(self.engine) as session:
            version = session.exec(
                select(MappingVersion).where(MappingVersion.kind == mapping.kind, MappingVersion.hash == mapping.hash)
            ).first()
            if version is None:
                version = MappingVersion(
                    kind=mapping.kind, hash=mapping.hash, content=mapping.source, applied_at=now(), applied_by=by
                )
                session.add(version)
                session.flush()
            applied = session.get(AppliedMapping, mapping.kind) or AppliedMapping(
                kind=mapping.kind, version_id=id_of(version), applied_at=now()
            )
            applied.version_id, applied.applied_at, applied.applied_by = id_of(version), now(), by
            session.add(applied)
            session.commit()
            version_id = id_of(version)
        self.mappings[mapping.kind] = ActiveMapping(mapping, version_id)
        return version_id

    def refresh_mappings(self) -> None:
        """Take up the versions other processes applied since (one small read)."""
        with self.engine.connect() as db:
            applied = dict(db.execute(sa.select(_APPLIED.c.kind, _APPLIED.c.version_id)).all())
        for kind, active in list(self.mappings.items()):
            if applied.get(kind, active.version_id) != active.version_id:
                self.mappings[kind] = self._load_version(applied[kind])

    def _record_connections_and_products(self) -> None:
        with Session(self.engine) as session:
            for settings in self.connections.values():
                if session.get(Connection, settings.id) is None:
                    session.add(Connection(id=settings.id, kind=settings.kind))
            stored = {p.key: p for p in session.exec(select(Product)).all()}
            for spec in self.portfolio.products:
                product = stored.get(spec.key) or Product(key=spec.key, name=spec.name)
                product.name, product.description, product.owner = spec.name, spec.description, spec.owner
                session.add(product)
            session.commit()

    def connector(self, connection_id: str) -> Connector:
        if connection_id not in self._connectors:
            self._connectors[connection_id] = build_connector(self.connections[connection_id])
        return self._connectors[connection_id]

    # One isinstance per capability, not a helper taking the class: mypy refuses an abstract
    # class passed as a type[T] argument (type-abstract).
    def puller(self, connection_id: str) -> Pulls:
        connector = self.connector(connection_id)
        if not isinstance(connector, Pulls):
            raise _unsupported(connection_id, connector, "be pulled")
        return connector

    def fetcher(self, connection_id: str) -> FetchesOne:
        connector = self.connector(connection_id)
        if not isinstance(connector, FetchesOne):
            raise _unsupported(connection_id, connector, "fetch one record")
        return connector

    def receiver(self, connection_id: str) -> ReceivesWebhooks:
        connector = self.connector(connection_id)
        if not isinstance(connector, ReceivesWebhooks):
            raise _unsupported(connection_id, connector, "receive webhooks")
        return connector

    async def close(self) -> None:
        for connector in self._connectors.values():
            await connector.aclose()
        self._connectors.clear()
        self.engine.dispose()


def _unsupported(connection_id: str, connector: Connector, what: str) -> Unsupported:
    return Unsupported(f"connection {connection_id} ({connector.kind}) cannot {what}")


def hub_file(settings: Settings, name: str) -> Path:
    """An ops engineer's file from mappings_dir if present, else the shipped default."""
    if settings.mappings_dir and (settings.mappings_dir / name).exists():
        return settings.mappings_dir / name
    return Path(shipped_mappings.__file__).parent / name

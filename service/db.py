"""Database engines and schema migrations (Alembic), the same code on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
WAL_PAGES_AT_MOST = 10_000  # SQLite: a commit copies the WAL into the database itself past this
CHECKPOINT_EVERY = 0.1  # seconds: the checkpointer's pace while commits keep coming
CHECKPOINTER_IDLE = 1.0  # seconds with no commit, and its thread ends (the next commit starts one)

log = logging.getLogger("opsync.db")


def json_dumps(value: object) -> str:
    """JSON columns hold raw tool payloads of several KB each: orjson writes them ~10x faster."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def create_db_engine(url: str, *, copy_wal: bool = True) -> Engine:
    """copy_wal (SQLite): this process copies the WAL into the database after commits, in a
    thread of its own (_Checkpointer). False when another process beside it does (serve's
    worker process): its commits then copy it only once it reaches WAL_PAGES_AT_MOST."""
    codecs = {"json_serializer": json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **codecs)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the API read while a worker writes. Writers serialise on the change
            # counter row, the first statement of every write transaction (see store.py).
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES_AT_MOST}")
            cursor.close()

        path = sa.engine.make_url(url).database
        if copy_wal and path and path != ":memory:" and not path.startswith("file:"):
            checkpointer = _Checkpointer(path)
            sa.event.listen(engine, "commit", lambda _connection: checkpointer.committed())
        return engine
    # executemany as psycopg does it (pipelined, one short statement prepared once), not
    # SQLAlchemy's multi-row INSERTs: psycopg re-parses every long statement it is given.
    engine = sa.create_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, use_insertmanyvalues=False, **codecs
    )

    @sa.event.listens_for(engine, "connect")
    def _custom_plans(dbapi_connection: Any, _record: Any) -> None:
        # Prepared statements are planned for their parameters every time: a generic plan
        # made while a table was empty (a first backfill) would stay a sequential scan.
        dbapi_connection.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_connection.commit()

    return engine


class _Checkpointer:
    """Copies a SQLite database's WAL into it after commits, from a thread of its own. By
    SQLite's default the commit that finds the WAL past 1,000 pages does it, and its writer (a
    pull, the inbox) waits meanwhile; here the copy, SQLite's own code run without the GIL,
    goes on beside the Python that maps and writes the next page. A checkpoint that finds
    the database busy (a checkpoint of another process) leaves it for the next commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._due = threading.Event()
        self._lock = threading.Lock()
        self._running = False

    def committed(self) -> None:
        with self._lock:
            self._due.set()
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True).start()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                if not self._due.wait(CHECKPOINTER_IDLE):
                    with self._lock:  # a commit now finds no thread, and starts one
                        if not self._due.is_set():
                            self._running = False
                            return
                self._due.clear()
                if connection is None:  # mode=rw: a database that went away is not made again
                    connection = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True, timeout=1)
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                time.sleep(CHECKPOINT_EVERY)
        except sqlite3.Error as error:  # the commits' own checkpoints remain
            log.debug("WAL checkpoint of %s stopped: %s", self.path, error)
            with self._lock:
                self._running = False
        finally:
            if connection is not None:
                connection.close()


def insert_many(
    db: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], *, skip_conflicts: bool = False
) -> None:
    """INSERT every row (an executemany); every row has the first row's keys. skip_conflicts:
    a row that a unique index already holds is left out (ON CONFLICT DO NOTHING)."""
    if rows:
        _run_many(db, _compiled(db.dialect, table, tuple(rows[0]), (), skip_conflicts), rows)


def update_many(db: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """UPDATE the row whose id is each row's "_id" with its other keys; every row has the
    first row's keys."""
    if rows:
        _run_many(db, _compiled(db.dialect, table, tuple(k for k in rows[0] if k != "_id"), ("_id",), False), rows)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: bool
    bound: tuple[tuple[str, Any], ...]  # parameter name, its processor (None: none)
    statement: sa.Insert | sa.Update


@lru_cache(maxsize=256)  # keyed by the engine's dialect: one per engine (tests open many)
def _compiled(
    dialect: sa.Dialect, table: sa.Table, keys: tuple[str, ...], where: tuple[str, ...], skip_conflicts: bool
) -> _Compiled:
    """The statement for rows of these keys, compiled once per dialect, with the processors
    SQLAlchemy would apply to each parameter. Binding them here, in one pass, costs a fraction
    of SQLAlchemy's per-row work for rows of some 30 columns (a tenth of a backfill)."""
    statement: sa.Insert | sa.Update = sa.insert(table)
    if skip_conflicts:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = insert(table).on_conflict_do_nothing()
    if where:
        statement = sa.update(table).where(table.c.id == sa.bindparam(where[0]))
        statement = statement.values({key: sa.bindparam(key) for key in keys})
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
    processors = compiled._bind_processors  # name -> what SQLAlchemy itself applies
    if not set(names) <= {*keys, *where}:  # values SQLAlchemy computes (a Python default, onupdate)
        return _Compiled("", False, (), statement)
    return _Compiled(compiled.string, compiled.positional, tuple((n, processors.get(n)) for n in names), statement)


def _run_many(db: sa.Connection, compiled: _Compiled, rows: list[dict[str, Any]]) -> None:
    if not compiled.sql:
        db.execute(compiled.statement, rows)
        return
    bound = compiled.bound
    if compiled.positional:
        parameters: list[Any] = [
            tuple([process(row[name]) if process else row[name] for name, process in bound]) for row in rows
        ]
    else:
        parameters = [{name: process(row[name]) if process else row[name] for name, process in bound} for row in rows]
    db.exec_driver_sql(compiled.sql, parameters)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    command.upgrade(alembic_config(url), "head")


@contextmanager
def scratch_database(directory: Path, prefix: str = "scratch") -> Iterator[str]:
    """A throwaway database for tests and benchmarks: a SQLite file in directory, or, when
    DATABASE_URL names a PostgreSQL server, a fresh schema there, dropped afterwards."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgresql"):
        yield f"sqlite:///{directory / 'opsync.db'}"
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            # a process that used the schema may still be ending (killed by a test): its
            # sessions are ended first, so that dropping neither waits on them nor deadlocks
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE c.relnamespace = CAST(:schema AS regnamespace) AND l.pid <> pg_backend_pid()"
                ),
                {"schema": f'"{schema}"'},
            )
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

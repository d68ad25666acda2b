"""Shared test fixtures: the real payloads in ../shared/fixtures, a fresh store per test."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.db import create_db_engine, upgrade

SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    """The published payloads (GitHub, Atlassian); absent in a user's clone."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real payload fixtures not found at {SHARED_FIXTURES} (they ship beside CI's clone only)")
    return SHARED_FIXTURES


@contextmanager
def _fresh_database(directory: Path) -> Iterator[str]:
    """A SQLite file in directory, or a fresh schema in DATABASE_URL's PostgreSQL, dropped after."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgresql"):
        yield f"sqlite:///{directory / 'opsync.db'}"
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.NullPool)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own."""
    with _fresh_database(tmp_path) as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database shared by one test module, for data its tests only read."""
    with _fresh_database(tmp_path_factory.mktemp("module-db")) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()

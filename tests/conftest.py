"""Shared test fixtures: the real payloads in ../shared/fixtures, a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from opsync.service.db import create_db_engine, scratch_database, upgrade

SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture
def shared_fixtures() -> Path:
    """The published payloads (GitHub, Atlassian); absent in a user's clone."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real payload fixtures not found at {SHARED_FIXTURES} (they ship beside CI's clone only)")
    return SHARED_FIXTURES


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A database of this test's own."""
    with scratch_database(tmp_path, "test") as url:
        yield url


@pytest.fixture(scope="module")
def module_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database shared by one test module, for data its tests only read."""
    with scratch_database(tmp_path_factory.mktemp("module-db"), "test") as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()

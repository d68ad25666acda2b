"""SQLite's write-ahead log: copied into the database while commits keep coming, by a thread
beside the writers rather than by the commit that finds it long; left to another process
when one beside this one does it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import sqlalchemy as sa

from opsync.service.db import CHECKPOINTER_IDLE, create_db_engine

MB = 1024 * 1024


def _write(engine: sa.Engine, megabytes: int) -> None:
    """megabytes of rows, 256 KB per commit, a few commits per checkpointer round."""
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS blob (data BLOB)")
    for _ in range(megabytes * 4):
        with engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO blob (data) VALUES (?)", (b"x" * (MB // 4),))
        time.sleep(0.03)


def _wal_bytes(database: Path) -> int:
    wal = database.with_name(database.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-checkpoint"]


def test_the_wal_is_copied_into_the_database_while_commits_keep_coming(tmp_path):
    database = tmp_path / "wal.db"
    engine = create_db_engine(f"sqlite:///{database}")
    try:
        _write(engine, 12)
        # 12 MB went through the WAL; copied as it came, the log restarted small each time
        # (its commits alone would have let it grow to 10,000 pages, some 40 MB)
        assert _wal_bytes(database) < 4 * MB
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM blob").scalar() == 48
    finally:
        engine.dispose()


def test_the_checkpointer_thread_ends_once_commits_stop_and_a_later_commit_starts_one(tmp_path):
    database = tmp_path / "idle.db"
    engine = create_db_engine(f"sqlite:///{database}")
    try:
        _write(engine, 1)
        deadline = time.monotonic() + CHECKPOINTER_IDLE + 5
        while _checkpointers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _checkpointers()
        _write(engine, 8)
        assert _wal_bytes(database) < 4 * MB
    finally:
        engine.dispose()


def test_a_process_whose_wal_another_copies_leaves_it_to_that_one(tmp_path):
    database = tmp_path / "beside.db"
    engine = create_db_engine(f"sqlite:///{database}", copy_wal=False)
    try:
        _write(engine, 12)
        assert _wal_bytes(database) > 10 * MB  # nothing copied it: no other process here
        with engine.connect() as connection:  # what a process beside it would do
            busy, _, _ = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        assert busy == 0 and _wal_bytes(database) == 0
    finally:
        engine.dispose()

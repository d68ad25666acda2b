"""One pull per connection at a time, across every process on the database: a lease row that
its holder renews while the pull runs, and that another process may take once it expires
(its holder died). Runs whose lease is gone are marked interrupted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session

from opsync.service.clock import now
from opsync.service.models import PullLease, RunStatus, SyncRun, id_of, table_of

log = logging.getLogger("opsync.leases")
TTL = timedelta(seconds=30)
RENEW_SECONDS = 10.0
_LEASES = table_of(PullLease)
_RUNS = table_of(SyncRun)


class AlreadyRunning(Exception):
    """Another pull of the connection holds the lease."""

    def __init__(self, connection_id: str, run_id: int | None) -> None:
        running = f" (run {run_id})" if run_id is not None else ""
        super().__init__(
            f"a pull of {connection_id} is already running{running}; it holds the connection's lease until it finishes"
        )
        self.connection_id, self.run_id = connection_id, run_id


class Lease:
    """A held pull lease. lost turns true if renewing it failed: another process may then pull."""

    def __init__(self, engine: Engine, connection_id: str, holder: str) -> None:
        self.engine, self.connection_id, self.holder = engine, connection_id, holder
        self.lost = False

    @classmethod
    def acquire(cls, engine: Engine, key: str, run: SyncRun) -> tuple[Lease, int]:
        """Take the lease named key if it is free or expired, and record the run it covers, in
        one transaction: nobody ever sees the lease without its run. Answers the lease and the
        run's id; raises AlreadyRunning, recording nothing, when another holder has it."""
        holder, at = uuid.uuid4().hex, now()
        insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(_LEASES)
        take = insert.values(connection_id=key, holder=holder, run_id=None, expires_at=at + TTL)
        take = take.on_conflict_do_update(
            index_elements=[_LEASES.c.connection_id],
            set_={"holder": holder, "run_id": None, "expires_at": at + TTL},
            where=_LEASES.c.expires_at < at,
        )
        with Session(engine) as session:
            db = session.connection()
            db.execute(take)
            current = db.execute(
                sa.select(_LEASES.c.holder, _LEASES.c.run_id).where(_LEASES.c.connection_id == key)
            ).one()
            if current.holder != holder:
                raise AlreadyRunning(run.connection_id, current.run_id)
            session.add(run)
            session.flush()
            run_id = id_of(run)
            db.execute(sa.update(_LEASES).where(_LEASES.c.connection_id == key).values(run_id=run_id))
            session.commit()
        interrupt_orphaned_runs(engine)  # the run of a holder whose lease this took over, if any
        return cls(engine, key, holder), run_id

    def _mine(self) -> sa.ColumnElement[bool]:
        return sa.and_(_LEASES.c.connection_id == self.connection_id, _LEASES.c.holder == self.holder)

    def renew(self) -> bool:
        with self.engine.begin() as db:
            held = db.execute(sa.update(_LEASES).where(self._mine()).values(expires_at=now() + TTL)).rowcount == 1
        self.lost = self.lost or not held
        return held

    async def keep(self) -> None:
        """Renew until cancelled or lost."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                if not await asyncio.to_thread(self.renew):
                    log.warning("the pull lease of %s was taken over: this pull stops", self.connection_id)
                    return
            except Exception:  # the database is away: try again; the lease lasts a while
                log.exception("renewing the pull lease of %s failed", self.connection_id)

    def release(self) -> None:
        with self.engine.begin() as db:
            db.execute(sa.delete(_LEASES).where(self._mine()))


def interrupt_orphaned_runs(engine: Engine) -> int:
    """Runs still `running` whose lease is gone or expired: their process stopped or died."""
    at = now()
    alive = sa.select(_LEASES.c.run_id).where(_LEASES.c.run_id == _RUNS.c.id, _LEASES.c.expires_at > at)
    with engine.begin() as db:
        return db.execute(
            sa.update(_RUNS)
            .where(_RUNS.c.status == RunStatus.RUNNING, ~sa.exists(alive))
            .values(
                status=RunStatus.INTERRUPTED,
                finished_at=at,
                errors=[
                    "the process running this pull stopped before it finished; the next pull resumes from"
                    " the stored cursor"
                ],
            )
        ).rowcount

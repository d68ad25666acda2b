"""Background work: apply the inbox (both lanes), keep it pruned, and pull each connection on
its schedule. Any number of processes may run this on one database: pulls take the
connection's lease, deliveries are claimed.

A worker beside intake (in the API's process, or its child told of deliveries through a
pipe) yields to it: while deliveries arrive, applying takes a small share of the time in
small batches, so that intake, which a tool's burst waits on, keeps the CPU and, on SQLite,
the write lock. When they stop arriving it drains the backlog at full speed."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from opsync.service.clock import now
from opsync.service.contract import Pulls
from opsync.service.hub import Hub
from opsync.service.inbox import FETCH_BATCH, apply_batch, fetch_batch, prune
from opsync.service.leases import AlreadyRunning, interrupt_orphaned_runs
from opsync.service.models import RunMode, RunStatus, SyncRun, table_of
from opsync.service.sync import adopt_pull, sync_connection

log = logging.getLogger("opsync.worker")
IDLE_POLL_SECONDS = 0.5
# After a batch that was not full, let deliveries gather this long before the next claim:
# a claim and a store transaction per few deliveries cost more than the wait.
GATHER_SECONDS = 0.05
HOUSEKEEPING_SECONDS = 60.0  # runs orphaned by a dead process; the inbox pruned every tenth time
BUSY_RETRY_SECONDS = 30.0  # a schedule that found its connection's pull running elsewhere
ARRIVING_SECONDS = 0.1  # a delivery stored this recently: intake is busy
BUSY_SHARE = 0.1  # of the time spent applying while intake is busy (at 0.2, intake p99 was 10-20 ms higher)
BUSY_BATCH = 5  # deliveries per batch while intake is busy: a short hold of SQLite's write lock (at 20, p99 +10 ms)


def _default_concurrency(hub: Hub) -> int:
    """Batches applied at once. On PostgreSQL one batch is mapped while another is written
    (their transactions still commit one at a time, on the change counter); SQLite has one
    writer, and a second would only wait for the lock."""
    return 2 if hub.engine.dialect.name == "postgresql" else 1


async def _idle(wake: asyncio.Event | None) -> None:
    """Until wake is set, or IDLE_POLL_SECONDS."""
    if wake is None:
        await asyncio.sleep(IDLE_POLL_SECONDS)
        return
    try:
        async with asyncio.timeout(IDLE_POLL_SECONDS):
            await wake.wait()
    except TimeoutError:
        pass


class Worker:
    """Runs alone (`opsync worker`), in a child of the API's process (`opsync serve`), or in
    the API's process itself (`opsync serve --embedded-worker`)."""

    def __init__(self, hub: Hub, *, schedules: bool = True) -> None:
        self.hub = hub
        self.schedules = schedules
        self._wake = asyncio.Event()
        self._arrived = -math.inf  # when intake last told of a delivery (time.monotonic)
        self._tasks: list[asyncio.Task] = []
        self._requested: set[asyncio.Task] = set()  # pulls the API's process handed over

    def deliveries_arrived(self) -> None:
        """Intake beside this worker stored deliveries: apply them soon, and yield to intake
        while more keep coming."""
        self._arrived = time.monotonic()
        self._wake.set()

    def pull_requested(self, run_id: int, holder: str) -> None:
        """Run the pull the API's process began (its run and lease) and handed to this worker,
        so that it runs beside intake's process, not in it."""
        task = asyncio.create_task(self._run_requested(run_id, holder), name=f"pull-run:{run_id}")
        self._requested.add(task)
        task.add_done_callback(self._requested.discard)

    async def _run_requested(self, run_id: int, holder: str) -> None:
        try:
            pull = await asyncio.to_thread(adopt_pull, self.hub, run_id, holder)
            if pull is None:  # over, or its lease ended first (then the run is marked interrupted)
                log.info("run %d, handed to this process, is over or no longer holds its lease: not run", run_id)
                return
            await sync_connection(self.hub, pull.connection_id, full=pull.full, pull=pull)
        except Exception:
            log.exception("the pull of run %d failed", run_id)

    def start(self) -> None:
        def apply(limit: int) -> Awaitable[int]:
            return apply_batch(self.hub, limit)

        def fetch(limit: int) -> Awaitable[int]:
            return fetch_batch(self.hub, limit)

        batch = self.hub.settings.worker_batch
        for n in range(self.hub.settings.inbox_concurrency or _default_concurrency(self.hub)):
            self._tasks.append(
                asyncio.create_task(self._drain(apply, batch, self._wake, yields=n > 0), name=f"inbox-{n}")
            )
        # intake fills the apply lane only: the fetch lane, filled by applying, is not woken by it
        self._tasks.append(asyncio.create_task(self._drain(fetch, FETCH_BATCH, None), name="inbox-fetch"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.schedules:
            for connection_id in [c for c in self.hub.connections if isinstance(self.hub.connector(c), Pulls)]:
                self._tasks.append(asyncio.create_task(self._schedule(connection_id), name=f"pull:{connection_id}"))

    async def stop(self) -> None:
        running = {*self._tasks, *self._requested}
        while running:  # again for a task that let a cancellation pass (it came as its wait ended)
            for task in running:
                task.cancel()
            _, running = await asyncio.wait(running, timeout=1.0)
        self._tasks.clear()

    def _intake_busy(self) -> bool:
        return time.monotonic() - self._arrived < ARRIVING_SECONDS

    async def _drain(
        self, batch: Callable[[int], Awaitable[int]], full: int, wake: asyncio.Event | None, *, yields: bool = False
    ) -> None:
        """Claim and apply batches of at most full deliveries (fewer while intake is busy).
        wake: set when deliveries arrive in the lane; after a batch that was not full, more
        gather before the next claim. Without it, an empty lane is looked at every
        IDLE_POLL_SECONDS. yields: a second drain of the lane, which waits while intake is
        busy (the first one alone takes the share of the time then)."""
        while True:
            busy = self._intake_busy()
            if busy and yields:
                await asyncio.sleep(ARRIVING_SECONDS)
                continue
            limit = min(full, BUSY_BATCH) if busy else full
            started = time.monotonic()
            if wake:
                wake.clear()  # deliveries told of from now on end the idle wait below
            try:
                claimed = await batch(limit)
            except Exception:  # the database is away or a bug: the lease brings the batch back
                log.exception("applying webhook deliveries failed")
                claimed = 0
            if not claimed:
                await _idle(wake)
            elif busy:  # applying took its share of the time; intake has the rest
                await asyncio.sleep((time.monotonic() - started) * (1 - BUSY_SHARE) / BUSY_SHARE)
            elif wake and claimed < limit:
                await asyncio.sleep(GATHER_SECONDS)

    async def _housekeeping(self) -> None:
        rounds = 0
        while True:
            try:
                interrupted = await asyncio.to_thread(interrupt_orphaned_runs, self.hub.engine)
                if interrupted:
                    log.warning("%d sync runs of a stopped process marked interrupted", interrupted)
                if rounds % 10 == 0:
                    pruned = await asyncio.to_thread(prune, self.hub)
                    if pruned:
                        log.info(
                            "pruned %d applied deliveries older than %g days",
                            pruned,
                            self.hub.settings.inbox_retention_days,
                        )
            except Exception:
                log.exception("inbox housekeeping failed")
            rounds += 1
            await asyncio.sleep(HOUSEKEEPING_SECONDS)

    async def _schedule(self, connection_id: str) -> None:
        """Pull when due, by the runs every process recorded: so several workers on one database
        pull a connection once per period, not once each."""
        while True:
            try:
                wait, full = await asyncio.to_thread(self._due, connection_id)
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                await sync_connection(self.hub, connection_id, full=full)
            except AlreadyRunning:
                await asyncio.sleep(BUSY_RETRY_SECONDS * (0.5 + random.random()))
            except Exception:
                log.exception("scheduled pull of %s failed", connection_id)
                await asyncio.sleep(BUSY_RETRY_SECONDS)

    def _due(self, connection_id: str) -> tuple[float, bool]:
        """(seconds until the next pull is due, whether it is a full one). A connection never
        pulled backfills at once; a full pull (with reconcile) follows every full_every_hours."""
        settings = self.hub.connections[connection_id]
        runs = table_of(SyncRun)
        mine = runs.c.connection_id == connection_id
        with self.hub.engine.connect() as db:
            last: datetime | None = db.execute(sa.select(sa.func.max(runs.c.started_at)).where(mine)).scalar()
            first: datetime | None = db.execute(sa.select(sa.func.min(runs.c.started_at)).where(mine)).scalar()
            last_full: datetime | None = db.execute(
                sa.select(sa.func.max(runs.c.started_at)).where(
                    mine, runs.c.mode == RunMode.FULL, runs.c.status == RunStatus.SUCCEEDED
                )
            ).scalar()
        if last is None or first is None:  # both or neither: the same runs
            return 0.0, False
        at = now()
        full = (last_full or first) + timedelta(hours=settings.full_every_hours) <= at
        due = last + timedelta(minutes=settings.pull_every_minutes)
        return max(0.0, (due - at).total_seconds()), full

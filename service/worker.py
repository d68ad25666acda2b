"""Background work: apply the inbox, and pull each connection on its schedule."""
from __future__ import annotations

import asyncio
import logging

from sqlmodel import Session

from service.hub import Hub
from service.inbox import process_batch
from service.models import Connection
from service.sync import sync_connection

log = logging.getLogger("opsync.worker")
IDLE_POLL_SECONDS = 0.5
# After a batch that was not full, let deliveries gather this long before the next claim:
# a claim and a store transaction per few deliveries cost more than the wait.
GATHER_SECONDS = 0.05


def _default_concurrency(hub: Hub) -> int:
    """Batches applied at once. On PostgreSQL one batch is mapped while another is written
    (their transactions still commit one at a time, on the change counter); SQLite has one
    writer, and a second would only wait for the lock."""
    return 2 if hub.engine.dialect.name == "postgresql" else 1


class Worker:
    """Runs in the API process (embedded default) or alone (`opsync worker`)."""

    def __init__(self, hub: Hub, *, schedules: bool = True) -> None:
        self.hub = hub
        self.schedules = schedules
        self.wake = asyncio.Event()  # set by webhook intake in the same process
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        for n in range(self.hub.settings.inbox_concurrency or _default_concurrency(self.hub)):
            self._tasks.append(asyncio.create_task(self._apply_inbox(), name=f"inbox-{n}"))
        if self.schedules:
            for connection_id in self.hub.connections:
                self._tasks.append(asyncio.create_task(self._schedule(connection_id), name=f"pull:{connection_id}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def lock(self, connection_id: str) -> asyncio.Lock:
        """One pull at a time per connection, whoever asked for it."""
        return self._locks.setdefault(connection_id, asyncio.Lock())

    async def _apply_inbox(self) -> None:
        while True:
            try:
                claimed = await process_batch(self.hub, self.hub.settings.worker_batch)
            except Exception:  # a bad batch must not stop the worker; the lease brings it back
                log.exception("applying webhook deliveries failed")
                claimed = 0
            if not claimed:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), IDLE_POLL_SECONDS)
                except TimeoutError:
                    pass
            elif claimed < self.hub.settings.worker_batch:
                await asyncio.sleep(GATHER_SECONDS)

    async def _schedule(self, connection_id: str) -> None:
        every = self.hub.connections[connection_id].pull_every_minutes * 60
        # A connection never pulled before backfills at once; the others wait for their turn.
        first_wait = 0 if self._never_pulled(connection_id) else every
        await asyncio.sleep(first_wait)
        while True:
            try:
                async with self.lock(connection_id):
                    await sync_connection(self.hub, connection_id)
            except Exception:
                log.exception("scheduled pull of %s failed", connection_id)
            await asyncio.sleep(every)

    def _never_pulled(self, connection_id: str) -> bool:
        with Session(self.hub.engine) as session:
            connection = session.get(Connection, connection_id)
            return connection is None or connection.last_sync_at is None

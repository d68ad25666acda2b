"""The FastAPI application: the API under /api/v1, webhooks, health; the worker beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.responses import PlainTextResponse, Response

from opsync.api import problems
from opsync.api.deps import get_hub
from opsync.api.metrics import RequestMetrics
from opsync.api.problems import Problem
from opsync.api.routers import admin, mappings, records, webhooks
from opsync.service import metrics as hub_metrics
from opsync.service.config import HubConfig
from opsync.service.hub import Hub
from opsync.service.intake import Intake
from opsync.service.settings import Settings
from opsync.service.worker import Worker
from opsync.service.worker_process import WorkerProcess, merged_exposition


def create_app(
    settings: Settings, config: HubConfig | None = None, *, worker_process: WorkerProcess | None = None
) -> FastAPI:
    """worker_process: the worker runs in that child process, started once the database is
    migrated; otherwise in this process when settings.run_workers, else nowhere here."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # SQLite: the worker process copies the WAL into the database after the batches it
        # commits; this process, whose intake commits every burst, leaves that work to it
        hub = Hub.open(settings, config, copy_wal=worker_process is None)
        app.state.hub = hub
        app.state.intake = Intake(hub)
        app.state.background = set()
        worker = Worker(hub) if settings.run_workers and worker_process is None else None
        beside = worker or worker_process
        # routes that stored deliveries call this: the worker applies them soon
        app.state.tell_worker = beside.deliveries_arrived if beside else lambda: None
        # a pull asked for through the API runs in the worker's process when it has one
        app.state.hand_pull = worker_process.request_pull if worker_process else lambda run_id, holder: False
        if beside:
            beside.start()
        try:
            yield
        finally:
            if beside:
                await beside.stop()
            for task in list(app.state.background):
                task.cancel()
            await hub.close()

    app = FastAPI(
        title="opsync",
        version="0.1.0",
        lifespan=lifespan,
        description="One product-work model over every tool a product team uses.",
    )
    problems.install(app)
    app.add_middleware(RequestMetrics, access_log=settings.access_log)
    for router in (records.router, admin.router, mappings.router):
        app.include_router(router, prefix="/api/v1")
    webhooks.install(app)

    @app.get("/healthz", tags=["health"], responses={500: problems.UNEXPECTED})
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={500: problems.UNEXPECTED, 503: problems.declared("The database does not answer")},
    )
    def readyz(hub: Hub = Depends(get_hub)) -> dict[str, str]:
        try:
            with hub.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            raise Problem(503, "the database does not answer") from None
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse, tags=["health"], responses={500: problems.UNEXPECTED})
    def metrics(hub: Hub = Depends(get_hub)) -> Response:
        """Prometheus text: this process's counters (and its worker process's) and the inbox as
        stored now (docs/operations.md)."""
        text = hub_metrics.exposition(hub.engine, hub.connections)
        if worker_process is not None:  # what the worker counts is counted in its process
            text = merged_exposition(text, worker_process.scrape())
        return Response(text, media_type=hub_metrics.CONTENT_TYPE)

    return app

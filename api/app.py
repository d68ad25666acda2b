"""The FastAPI application: the API under /api/v1, webhooks, health; workers when embedded."""

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


def create_app(settings: Settings, config: HubConfig | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = Hub.open(settings, config)
        app.state.hub = hub
        app.state.intake = Intake(hub)
        app.state.background = set()
        app.state.worker = Worker(hub) if settings.run_workers else None
        if app.state.worker:
            app.state.worker.start()
        try:
            yield
        finally:
            if app.state.worker:
                await app.state.worker.stop()
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
    app.add_middleware(RequestMetrics)
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
        """Prometheus text: this process's counters and the inbox as stored now (docs/operations.md)."""
        return Response(hub_metrics.exposition(hub.engine, hub.connections), media_type=hub_metrics.CONTENT_TYPE)

    return app

"""Administration: connections, sync runs, triggering a pull, the webhook inbox."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlmodel import Session, col, select

from opsync.api import schemas
from opsync.api.deps import CONNECTION_ID_LENGTH, NO_NUL, get_hub, get_session, refused, require, text_query
from opsync.api.problems import INVALID, UNEXPECTED, Problem, SyncAlreadyRunning, declared
from opsync.service import inbox
from opsync.service.hub import Hub
from opsync.service.leases import AlreadyRunning
from opsync.service.models import Connection, DeliveryStatus, InboxEvent, SyncRun
from opsync.service.sync import begin_pull, sync_connection

router = APIRouter(responses={500: UNEXPECTED})


@router.get(
    "/connections",
    response_model=list[schemas.Connection],
    dependencies=[Depends(require("read"))],
    responses=refused("read"),
)
def list_connections(
    request: Request, hub: Hub = Depends(get_hub), session: Session = Depends(get_session)
) -> list[dict[str, Any]]:
    stored = {c.id: c for c in session.exec(select(Connection)).all()}
    result = []
    for settings in hub.connections.values():
        state = stored.get(settings.id)
        result.append(
            {
                "id": settings.id,
                "kind": settings.kind,
                "base_url": settings.base_url,
                "status": state.status if state else "new",
                "last_sync_at": state.last_sync_at if state else None,
                "last_error": state.last_error if state else None,
                "webhook_url": str(request.url_for("receive_webhook", connection_id=settings.id)),
                "webhook_secret_configured": settings.webhook_secret is not None,
            }
        )
    return result


@router.get(
    "/sync-runs",
    response_model=list[schemas.SyncRun],
    dependencies=[Depends(require("read"))],
    responses={**refused("read"), 422: INVALID},
)
def list_sync_runs(
    session: Session = Depends(get_session),
    connection_id: str | None = text_query(CONNECTION_ID_LENGTH),
    limit: int = Query(50, ge=1, le=500),
) -> list[SyncRun]:
    query = select(SyncRun).order_by(col(SyncRun.id).desc()).limit(limit)
    if connection_id:
        query = query.where(SyncRun.connection_id == connection_id)
    return list(session.exec(query).all())


@router.post(
    "/connections/{connection_id}/sync",
    status_code=202,
    dependencies=[Depends(require("write"))],
    responses={
        **refused("write"),
        404: declared("No connection with this id"),
        409: declared("A pull of this connection is already running; run_id names it", SyncAlreadyRunning),
        422: INVALID,
    },
)
async def trigger_sync(
    request: Request,
    connection_id: str = Path(max_length=CONNECTION_ID_LENGTH, pattern=NO_NUL),
    full: bool = Query(False, description="also reconcile deletions"),
    hub: Hub = Depends(get_hub),
) -> dict[str, Any]:
    if connection_id not in hub.connections:
        raise Problem(404, f"no connection {connection_id!r}")
    try:  # the lease is taken here, so that a second request is told at once
        pull = await asyncio.to_thread(begin_pull, hub, connection_id, full=full)
    except AlreadyRunning as busy:
        raise Problem(409, str(busy), run_id=busy.run_id) from None
    if not request.app.state.hand_pull(pull.run_id, pull.lease.holder):  # else it runs in this process
        task = asyncio.create_task(sync_connection(hub, connection_id, full=full, pull=pull))
        request.app.state.background.add(task)
        task.add_done_callback(request.app.state.background.discard)
    return {
        "connection_id": connection_id,
        "mode": "full" if full else "incremental",
        "status": "started",
        "run_id": pull.run_id,
    }


@router.get(
    "/inbox",
    response_model=list[schemas.InboxEvent],
    dependencies=[Depends(require("admin"))],
    responses={**refused("admin"), 422: INVALID},
)
def list_inbox(
    session: Session = Depends(get_session),
    status: DeliveryStatus = Query(DeliveryStatus.FAILED, description="the deliveries in this state"),
    limit: int = Query(100, ge=1, le=1000),
) -> list[InboxEvent]:
    return list(
        session.exec(
            select(InboxEvent).where(InboxEvent.status == status).order_by(col(InboxEvent.id).desc()).limit(limit)
        ).all()
    )


@router.post(
    "/inbox/replay",
    response_model=schemas.InboxReplayed,
    dependencies=[Depends(require("admin"))],
    responses={**refused("admin"), 400: declared("The body cannot be read as JSON text"), 422: INVALID},
)
async def replay_inbox(body: schemas.InboxReplay, request: Request, hub: Hub = Depends(get_hub)) -> dict[str, int]:
    count = await asyncio.to_thread(inbox.replay, hub, body.ids)
    request.app.state.tell_worker()  # on the event loop: the worker's wake is not thread-safe
    return {"replayed": count}

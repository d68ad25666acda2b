"""POST /webhooks/{connection_id}: verified, stored durably, then acknowledged.

The route every tool's burst lands on: it reads what it needs from the app's state and
writes its answer itself, without dependencies or response validation."""
from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from api import schemas
from api.problems import Problem
from service import inbox
from service.contract import WebhookRejected
from service.hub import Hub

router = APIRouter()


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > limit:
            raise Problem(413, f"the delivery is {declared} bytes; this hub accepts at most {limit}")
        return await request.body()  # the server stops at the declared length
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the delivery exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/{connection_id}", status_code=202, response_model=schemas.WebhookAccepted,
             name="receive_webhook")
async def receive_webhook(connection_id: str, request: Request) -> Response:
    hub: Hub = request.app.state.hub
    if connection_id not in hub.connections:
        raise Problem(404, f"no connection {connection_id!r}")
    body = await _body(request, hub.settings.max_webhook_bytes)
    try:
        row = inbox.accept(hub, connection_id, request.headers, body)
    except WebhookRejected as error:
        raise Problem(401, str(error)) from None
    except inbox.BadDelivery as error:
        raise Problem(400, str(error)) from None
    duplicate = await request.app.state.intake.store(row)  # committed before the 202
    worker = request.app.state.worker
    if worker:
        worker.wake.set()
    return Response(orjson.dumps({"delivery_id": row["delivery_id"], "duplicate": duplicate}),
                    status_code=202, media_type="application/json")

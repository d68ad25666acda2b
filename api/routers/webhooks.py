"""POST /webhooks/{connection_id}: verified, stored durably, then acknowledged."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api import schemas
from api.deps import get_hub
from api.problems import Problem
from service import inbox
from service.contract import WebhookRejected
from service.hub import Hub

router = APIRouter()


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the delivery is {declared} bytes; this hub accepts at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the delivery exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/{connection_id}", status_code=202, response_model=schemas.WebhookAccepted,
             name="receive_webhook")
async def receive_webhook(connection_id: str, request: Request, hub: Hub = Depends(get_hub)) -> dict:
    if connection_id not in hub.connections:
        raise Problem(404, f"no connection {connection_id!r}")
    body = await _body(request, hub.settings.max_webhook_bytes)
    try:
        row = inbox.accept(hub, connection_id, request.headers, body)
    except WebhookRejected as error:
        raise Problem(401, str(error)) from None
    except inbox.BadDelivery as error:
        raise Problem(400, str(error)) from None
    receipt = await request.app.state.intake.store(row)  # committed before the 202
    worker = request.app.state.worker
    if worker:
        worker.wake.set()
    return {"delivery_id": receipt.delivery_id, "duplicate": receipt.duplicate}

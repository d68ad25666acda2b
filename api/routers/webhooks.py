"""POST /api/v1/webhooks/{connection_id}: verified, stored durably, then acknowledged.

The route every tool's burst lands on is a plain Starlette route whose endpoint is an ASGI
app, matched before all others: FastAPI's per-request work (dependencies, validation, route
context) would be a third of its CPU, and a function endpoint adds a second exception layer
to the app's own (ExceptionMiddleware answers a Problem raised here just the same). Its
OpenAPI entry is written here by hand.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from opsync.api import schemas
from opsync.api.problems import UNEXPECTED, Problem, declared
from opsync.service import intake, metrics
from opsync.service.contract import ReceivesWebhooks, WebhookRejected
from opsync.service.hub import Hub

PATH = "/api/v1/webhooks/{connection_id}"
EVENT_PATH = PATH + "/{event}"  # tools that name the event in the URL they post to


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


async def receive_webhook(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    connection_id = request.path_params["connection_id"]
    if connection_id not in hub.connections:
        raise Problem(404, f"no connection {connection_id!r}")
    if not isinstance(hub.connector(connection_id), ReceivesWebhooks):
        raise Problem(404, f"connection {connection_id!r} takes no webhooks; its tool is pulled only")
    try:
        body = await _body(request, hub.settings.max_webhook_bytes)
    except Problem:
        metrics.delivery_rejected(connection_id, "too_large")
        raise
    try:
        event = request.path_params.get("event")
        row = intake.accept(
            hub, connection_id, request.headers, body, path=f"/{event}" if event else "/", query=request.url.query
        )
    except WebhookRejected as error:
        metrics.delivery_rejected(connection_id, "signature")
        raise Problem(401, str(error)) from None
    except intake.BadDelivery as error:
        metrics.delivery_rejected(connection_id, "bad_body")
        raise Problem(400, str(error)) from None
    except intake.StaleDelivery as error:
        metrics.delivery_rejected(connection_id, "stale")
        raise Problem(400, str(error)) from None
    duplicate = await request.app.state.intake.store(row)  # committed before the 202
    metrics.delivery_received(connection_id, duplicate=duplicate)
    request.app.state.tell_worker()
    return Response(
        orjson.dumps({"delivery_id": row["delivery_id"], "duplicate": duplicate}),
        status_code=202,
        media_type="application/json",
    )


class _Endpoint:
    """receive_webhook as an ASGI app: Starlette wraps a function endpoint, not this."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await receive_webhook(Request(scope, receive))
        await response(scope, receive, send)


def install(app: FastAPI) -> None:
    endpoint = _Endpoint()
    app.router.routes.insert(0, Route(PATH, endpoint, methods=["POST"], name="receive_webhook"))
    app.router.routes.insert(1, Route(EVENT_PATH, endpoint, methods=["POST"], name="receive_webhook_event"))
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = generate()
            schema["paths"][PATH] = {"post": _OPERATION}
            schema["paths"][EVENT_PATH] = {"post": _EVENT_OPERATION}
            schema.setdefault("components", {}).setdefault("schemas", {})["WebhookAccepted"] = (
                schemas.WebhookAccepted.model_json_schema()
            )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


_OPERATION: dict[str, Any] = {
    "summary": "Receive a webhook delivery",
    "description": "A delivery from the tool of this connection, signed with the "
    "connection's webhook_secret. It is stored durably before the 202; applying it follows.",
    "operationId": "receive_webhook",
    "parameters": [{"name": "connection_id", "in": "path", "required": True, "schema": {"type": "string"}}],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {}}, "application/x-www-form-urlencoded": {"schema": {}}},
    },
    "responses": {
        "202": {
            "description": "Stored; duplicate is true when this delivery id was received before",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookAccepted"}}},
        },
        "400": declared(
            "The body is not what the tool sends (not JSON), or a delivery's signed "
            "timestamp is older than the retention period (OPSYNC_INBOX_RETENTION_DAYS)"
        ),
        "401": declared("The signature is missing or does not match the connection's secret"),
        "404": declared("No such connection"),
        "413": declared("The delivery is larger than OPSYNC_MAX_WEBHOOK_BYTES"),
        "500": UNEXPECTED,
    },
}


_EVENT_OPERATION: dict[str, Any] = _OPERATION | {
    "summary": "Receive a webhook delivery that names its event in the URL",
    "description": "As POST /api/v1/webhooks/{connection_id}, for tools whose bodies do not name their event "
    "(an app framework posts each event to the URL registered for it): the event is the last path segment.",
    "operationId": "receive_webhook_event",
    "parameters": [
        *_OPERATION["parameters"],
        {"name": "event", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100}},
    ],
}

"""Errors as RFC 9457 problem details (application/problem+json), and how OpenAPI declares them."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    def __init__(
        self, status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers, extra
        self.title = title or HTTPStatus(status).phrase


class ProblemDetails(BaseModel):
    """An error as RFC 9457 describes it; some problems add members of their own."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str  # what went wrong and what to change
    instance: str  # the path of the request


class FieldError(BaseModel):
    where: str  # e.g. query.limit, path.item_id, body.ids.0
    problem: str


class InvalidRequest(ProblemDetails):
    errors: list[FieldError]


class SyncAlreadyRunning(ProblemDetails):
    run_id: int  # the pull of this connection that is running


def problem_response(
    request: Request,
    status: int,
    detail: str,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def declared(
    description: str, model: type[ProblemDetails] = ProblemDetails, headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One status of an operation's OpenAPI `responses`: a problem of that model."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


UNAUTHORIZED = declared(
    "No API token, or one that is unknown or revoked",
    headers={"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
)
FORBIDDEN = declared("The API token lacks the scope this operation needs")
INVALID = declared(
    "A parameter or the body is not what this operation accepts; errors names each, where it is and what was expected",
    InvalidRequest,
)
UNEXPECTED = declared("An unexpected error; the server log has the details")


def _problem_of(error: dict[str, Any]) -> str:
    """Pydantic's message, without the 'Value error, ' it puts before our validators' own."""
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return error["msg"]


def _allowed(request: Request) -> list[str]:
    """Every method the OpenAPI document says the request's path answers."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.detail, exc.title, exc.headers, **exc.extra)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette names the methods of the first route with this path only
            headers = {**(headers or {}), "Allow": ", ".join(_allowed(request))}
        return problem_response(request, exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"where": ".".join(str(p) for p in e["loc"]), "problem": _problem_of(e)} for e in exc.errors()]
        detail = "; ".join(f"{e['where']}: {e['problem']}" for e in errors)
        return problem_response(request, 422, detail, "Invalid request", errors=errors)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette still logs the exception; the client gets a problem, never a traceback.
        return problem_response(request, 500, "an unexpected error; the server log has the details")

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = generate()
            _, definitions = models_json_schema(
                [(model, "serialization") for model in (ProblemDetails, InvalidRequest, SyncAlreadyRunning)],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema

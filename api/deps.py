"""What routes need, injected with Depends: the hub, a session, the caller's scopes."""
from __future__ import annotations

import base64
from collections.abc import Iterator

from fastapi import Depends, Request
from sqlmodel import Session

from api.problems import Problem
from service.hub import Hub
from service.tokens import token_scopes
from service.views import MAX_ID


async def get_hub(request: Request) -> Hub:  # async: no trip to the thread pool
    return request.app.state.hub


def get_session(hub: Hub = Depends(get_hub)) -> Iterator[Session]:
    with Session(hub.engine) as session:
        yield session


def require(scope: str):  # noqa: ANN201  (a dependency factory)
    def check(request: Request, hub: Hub = Depends(get_hub)) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "send an API token as 'Authorization: Bearer <token>'",
                          headers={"WWW-Authenticate": "Bearer"})
        bootstrap = hub.settings.bootstrap_token.get_secret_value() if hub.settings.bootstrap_token else None
        scopes = token_scopes(hub.engine, token.strip(), bootstrap)
        if scopes is None:
            raise Problem(401, "the API token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        if scope not in scopes:
            raise Problem(403, f"this token lacks the {scope!r} scope")

    return check


def encode_cursor(position: int | None) -> str | None:
    return base64.urlsafe_b64encode(str(position).encode()).decode() if position is not None else None


def decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        position = int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        position = -1
    if not 0 <= position <= MAX_ID:
        raise Problem(400, f"cursor {cursor!r} is not one this API handed out; pass next_cursor unchanged")
    return position

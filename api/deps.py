"""What routes need, injected with Depends: the hub, a session, the caller's scopes, a page's start."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BeforeValidator
from sqlmodel import Session

from opsync.api import problems
from opsync.api.problems import Problem
from opsync.api.schemas import CURSOR_MAX_LENGTH, CURSOR_PATTERN
from opsync.service.hub import Hub
from opsync.service.tokens import token_name, token_scopes
from opsync.service.views import MAX_ID

bearer = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="opsync API token",
    auto_error=False,
    description="A token from `opsync tokens create` (or OPSYNC_BOOTSTRAP_TOKEN)",
)

# Every text parameter is bounded, and holds no NUL character (PostgreSQL text cannot).
NO_NUL = r"^[^\x00]*$"
CONNECTION_ID_LENGTH = 63  # the longest connection id a config can hold

_RFC_3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc_3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC_3339.fullmatch(value):
        raise ValueError("expected a date and time with a UTC offset (RFC 3339), e.g. 2024-03-01T00:00:00Z")
    return value


# A moment as RFC 3339 writes it: no bare numbers read as Unix times, no moment without an offset.
Moment = Annotated[AwareDatetime, BeforeValidator(_rfc_3339)]

_ISO_DAY = re.compile(r"\d{4}-\d\d-\d\d")


def _iso_day(value: Any) -> Any:
    if not (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
        raise ValueError("expected a day as YYYY-MM-DD, e.g. 2024-03-01")
    return value


# A calendar day as ISO 8601 writes it (no bare number read as a Unix time).
Day = Annotated[date, BeforeValidator(_iso_day)]


async def get_hub(request: Request) -> Hub:  # async: no trip to the thread pool
    return request.app.state.hub


def get_session(hub: Hub = Depends(get_hub)) -> Iterator[Session]:
    with Session(hub.engine) as session:
        yield session


def caller(credentials: HTTPAuthorizationCredentials | None = Security(bearer), hub: Hub = Depends(get_hub)) -> str:
    """The name of the token a request came with (after require() let it in)."""
    bootstrap = hub.settings.bootstrap_token.get_secret_value() if hub.settings.bootstrap_token else None
    name = token_name(hub.engine, credentials.credentials.strip(), bootstrap) if credentials else None
    return f"API token {name!r}" if name else "an API token"


def require(scope: str):
    def check(credentials: HTTPAuthorizationCredentials | None = Security(bearer), hub: Hub = Depends(get_hub)) -> None:
        if credentials is None:
            raise Problem(
                401, "send an API token as 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
            )
        bootstrap = hub.settings.bootstrap_token.get_secret_value() if hub.settings.bootstrap_token else None
        scopes = token_scopes(hub.engine, credentials.credentials.strip(), bootstrap)
        if scopes is None:
            raise Problem(401, "the API token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        if scope not in scopes:
            raise Problem(403, f"this token lacks the {scope!r} scope")

    return check


def refused(scope: str) -> dict[int | str, dict[str, Any]]:
    """What an operation that needs scope declares it may answer before it runs: every token
    grants read, so only the write and admin scopes can be lacking."""
    # Keyed int | str as FastAPI's `responses` is: a status or a range such as "4XX".
    answer: dict[int | str, dict[str, Any]] = {401: problems.UNAUTHORIZED}
    if scope != "read":
        answer[403] = problems.FORBIDDEN
    return answer


def text_query(max_length: int, description: str | None = None) -> Any:
    """An optional text parameter of the query."""
    return Query(None, max_length=max_length, pattern=NO_NUL, description=description)


def encode_cursor(position: int | None) -> str | None:
    return base64.urlsafe_b64encode(str(position).encode()).decode() if position is not None else None


def decode_cursor(cursor: str | None) -> int | None:
    """The position a cursor names. One past every id (a position beyond MAX_ID) reads an
    empty page, as it would in a database with wider ids."""
    if not cursor:
        return None
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise Problem(
            400,
            f"cursor {cursor[: CURSOR_MAX_LENGTH + 1]!r} is not one this API handed out; pass next_cursor unchanged",
        )
    return min(int(base64.urlsafe_b64decode(cursor)), MAX_ID)


def page_after(
    cursor: str | None = Query(
        None,
        description="next_cursor of the previous page (the URL-safe base64 of the position of its "
        "last row); absent or empty for the first page",
        json_schema_extra={"pattern": CURSOR_PATTERN, "maxLength": CURSOR_MAX_LENGTH},
    ),
) -> int | None:
    """The position a page starts after, from its cursor; the pattern is documented, and
    checked here to answer a 400 that says what to do."""
    return decode_cursor(cursor)

"""The unified view: work items, code changes, people, products, links, the change feed."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from opsync.api import schemas
from opsync.api.deps import (
    CONNECTION_ID_LENGTH,
    NO_NUL,
    Moment,
    encode_cursor,
    get_session,
    page_after,
    refused,
    require,
    text_query,
)
from opsync.api.problems import INVALID, UNEXPECTED, Problem, declared
from opsync.service import views
from opsync.service.summary import product_summary
from opsync.service.views import MAX_ID
from sqlmodel import Session

router = APIRouter(dependencies=[Depends(require("read"))], responses={**refused("read"), 500: UNEXPECTED})
Limit = Query(50, ge=1, le=500, description="page size")
IncludeDeleted = Query(False, description="include tombstoned records")
TEXT, KEY = 200, 100  # the longest filter text and product key accepted

LISTED: dict[int | str, dict[str, Any]] = {400: declared("The cursor is not one this API handed out"), 422: INVALID}


def _id(thing: str) -> Any:
    return Path(ge=1, le=MAX_ID, description=f"the hub's id of the {thing}")


def _page(page: views.PageOf) -> dict[str, Any]:
    return {"items": page.items, "next_cursor": encode_cursor(page.next_cursor)}


@router.get("/work-items", response_model=schemas.Page[schemas.WorkItem], responses=LISTED)
def list_work_items(
    session: Session = Depends(get_session),
    product: str | None = text_query(KEY, "product key"),
    kind: Literal["initiative", "epic", "story", "task", "bug", "subtask", "other"] | None = None,
    status_category: Literal["todo", "in_progress", "done", "cancelled"] | None = None,
    assignee: str | None = text_query(TEXT, "person id, email or tool login"),
    label: str | None = text_query(TEXT),
    updated_since: Moment | None = Query(
        None, description="the tool's last change at or after this moment (ISO 8601 with a UTC offset)"
    ),
    q: str | None = text_query(TEXT, "text in the title or key"),
    connection_id: str | None = text_query(CONNECTION_ID_LENGTH),
    include_deleted: bool = IncludeDeleted,
    after: int | None = Depends(page_after),
    limit: int = Limit,
) -> dict[str, Any]:
    f = views.WorkItemFilter(
        product, kind, status_category, assignee, label, updated_since, q, connection_id, include_deleted
    )
    return _page(views.list_work_items(session, f, after, limit))


@router.get(
    "/work-items/{item_id}",
    response_model=schemas.WorkItemDetail,
    responses={404: declared("No work item with this id"), 422: INVALID},
)
def get_work_item(item_id: int = _id("work item"), session: Session = Depends(get_session)) -> dict[str, Any]:
    item = views.get_work_item(session, item_id)
    if item is None:
        raise Problem(404, f"no work item with id {item_id}")
    return item


@router.get("/code-changes", response_model=schemas.Page[schemas.CodeChange], responses=LISTED)
def list_code_changes(
    session: Session = Depends(get_session),
    product: str | None = text_query(KEY, "product key"),
    state: Literal["open", "merged", "closed"] | None = None,
    include_deleted: bool = IncludeDeleted,
    after: int | None = Depends(page_after),
    limit: int = Limit,
) -> dict[str, Any]:
    return _page(
        views.list_code_changes(
            session, product=product, state=state, include_deleted=include_deleted, after=after, limit=limit
        )
    )


@router.get(
    "/code-changes/{change_id}",
    response_model=schemas.CodeChangeDetail,
    responses={404: declared("No code change with this id"), 422: INVALID},
)
def get_code_change(change_id: int = _id("code change"), session: Session = Depends(get_session)) -> dict[str, Any]:
    item = views.get_code_change(session, change_id)
    if item is None:
        raise Problem(404, f"no code change with id {change_id}")
    return item


@router.get("/people", response_model=schemas.Page[schemas.Person], responses=LISTED)
def list_people(
    session: Session = Depends(get_session), after: int | None = Depends(page_after), limit: int = Limit
) -> dict[str, Any]:
    return _page(views.list_people(session, after, limit))


@router.get("/products", response_model=list[schemas.Product])
def list_products(session: Session = Depends(get_session)) -> list[dict[str, Any]]:
    return views.list_products(session)


@router.get(
    "/products/{key}/summary", responses={404: declared("No product with this key in portfolio.yaml"), 422: INVALID}
)
def get_product_summary(
    key: str = Path(max_length=KEY, pattern=NO_NUL), session: Session = Depends(get_session)
) -> dict[str, Any]:
    summary = product_summary(session, key)
    if summary is None:
        raise Problem(404, f"no product {key!r}; products come from portfolio.yaml")
    return summary


@router.get("/links", response_model=schemas.Page[schemas.LinkRow], responses=LISTED)
def list_links(
    session: Session = Depends(get_session),
    type: str | None = text_query(TEXT, "the link's type, e.g. implements"),
    from_entity: Literal["work_item", "code_change"] | None = None,
    to_key: str | None = text_query(TEXT, "the key the link points to, e.g. PAY-12"),
    after: int | None = Depends(page_after),
    limit: int = Limit,
) -> dict[str, Any]:
    return _page(views.list_links(session, type=type, from_entity=from_entity, to_key=to_key, after=after, limit=limit))


@router.get("/changes", response_model=schemas.ChangeFeed, responses={422: INVALID})
def list_changes(
    session: Session = Depends(get_session),
    after: int = Query(0, ge=0, le=MAX_ID, description="the last seq you have seen"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    page = views.list_changes(session, after, limit)
    return {"items": page.items, "next_after": page.next_cursor}

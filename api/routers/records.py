"""The unified view: work items, code changes, people, products, links, the change feed."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlmodel import Session

from api import schemas
from api.deps import decode_cursor, encode_cursor, get_session, require
from api.problems import Problem
from service import views
from service.summary import product_summary
from service.views import MAX_ID

router = APIRouter(dependencies=[Depends(require("read"))])
Limit = Query(50, ge=1, le=500, description="page size")
Cursor = Query(None, description="next_cursor of the previous page")
IncludeDeleted = Query(False, description="include tombstoned records")


def _page(page: views.PageOf) -> dict[str, Any]:
    return {"items": page.items, "next_cursor": encode_cursor(page.next_cursor)}


@router.get("/work-items", response_model=schemas.Page[schemas.WorkItem])
def list_work_items(
    session: Session = Depends(get_session),
    product: str | None = None,
    kind: Literal["initiative", "epic", "story", "task", "bug", "subtask", "other"] | None = None,
    status_category: Literal["todo", "in_progress", "done", "cancelled"] | None = None,
    assignee: str | None = Query(None, description="person id, email or tool login"),
    label: str | None = None,
    updated_since: datetime | None = Query(None, description="the tool's last change at or after (ISO 8601)"),
    q: str | None = Query(None, description="text in the title or key"),
    connection_id: str | None = None,
    include_deleted: bool = IncludeDeleted,
    cursor: str | None = Cursor,
    limit: int = Limit,
) -> dict[str, Any]:
    if updated_since is not None and updated_since.tzinfo is None:
        raise Problem(400, "updated_since needs a UTC offset, e.g. 2024-03-01T00:00:00Z")
    f = views.WorkItemFilter(product, kind, status_category, assignee, label, updated_since, q,
                             connection_id, include_deleted)
    return _page(views.list_work_items(session, f, decode_cursor(cursor), limit))


@router.get("/work-items/{item_id}", response_model=schemas.WorkItemDetail)
def get_work_item(item_id: int = Path(le=MAX_ID), session: Session = Depends(get_session)) -> dict[str, Any]:
    item = views.get_work_item(session, item_id)
    if item is None:
        raise Problem(404, f"no work item with id {item_id}")
    return item


@router.get("/code-changes", response_model=schemas.Page[schemas.CodeChange])
def list_code_changes(
    session: Session = Depends(get_session),
    product: str | None = None,
    state: Literal["open", "merged", "closed"] | None = None,
    include_deleted: bool = IncludeDeleted,
    cursor: str | None = Cursor,
    limit: int = Limit,
) -> dict[str, Any]:
    return _page(views.list_code_changes(session, product=product, state=state, include_deleted=include_deleted,
                                         after=decode_cursor(cursor), limit=limit))


@router.get("/code-changes/{change_id}", response_model=schemas.CodeChangeDetail)
def get_code_change(change_id: int = Path(le=MAX_ID), session: Session = Depends(get_session)) -> dict[str, Any]:
    item = views.get_code_change(session, change_id)
    if item is None:
        raise Problem(404, f"no code change with id {change_id}")
    return item


@router.get("/people", response_model=schemas.Page[schemas.Person])
def list_people(session: Session = Depends(get_session), cursor: str | None = Cursor,
                limit: int = Limit) -> dict[str, Any]:
    return _page(views.list_people(session, decode_cursor(cursor), limit))


@router.get("/products", response_model=list[schemas.Product])
def list_products(session: Session = Depends(get_session)) -> list[dict[str, Any]]:
    return views.list_products(session)


@router.get("/products/{key}/summary")
def get_product_summary(key: str, session: Session = Depends(get_session)) -> dict[str, Any]:
    summary = product_summary(session, key)
    if summary is None:
        raise Problem(404, f"no product {key!r}; products come from portfolio.yaml")
    return summary


@router.get("/links", response_model=schemas.Page[schemas.LinkRow])
def list_links(
    session: Session = Depends(get_session),
    type: str | None = None,
    from_entity: Literal["work_item", "code_change"] | None = None,
    to_key: str | None = None,
    cursor: str | None = Cursor,
    limit: int = Limit,
) -> dict[str, Any]:
    return _page(views.list_links(session, type=type, from_entity=from_entity, to_key=to_key,
                                  after=decode_cursor(cursor), limit=limit))


@router.get("/changes", response_model=schemas.ChangeFeed)
def list_changes(
    session: Session = Depends(get_session),
    after: int = Query(0, ge=0, le=MAX_ID, description="the last seq you have seen"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    page = views.list_changes(session, after, limit)
    return {"items": page.items, "next_after": page.next_cursor}

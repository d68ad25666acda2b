"""The unified view: every kind of record in the registry, people, products, links, the change feed."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from sqlmodel import Session

from opsync.api import schemas
from opsync.api.deps import (
    CONNECTION_ID_LENGTH,
    NO_NUL,
    Day,
    Moment,
    encode_cursor,
    get_session,
    page_after,
    refused,
    require,
    text_query,
)
from opsync.api.problems import INVALID, UNEXPECTED, Problem, declared
from opsync.service import directory, views
from opsync.service.clock import now
from opsync.service.entities import ENTITIES
from opsync.service.entity import SERIES_SEPARATOR, Entity, FieldType
from opsync.service.measures import shift
from opsync.service.series import list_series
from opsync.service.summary import product_summary
from opsync.service.views import MAX_ID

router = APIRouter(dependencies=[Depends(require("read"))], responses={**refused("read"), 500: UNEXPECTED})
Limit = Query(50, ge=1, le=500, description="page size")
IncludeDeleted = Query(False, description="include tombstoned records")
TEXT, KEY = 200, 100  # the longest filter text and product key accepted

LISTED: dict[int | str, dict[str, Any]] = {400: declared("The cursor is not one this API handed out"), 422: INVALID}


def _id(thing: str) -> Any:
    return Path(ge=1, le=MAX_ID, description=f"the hub's id of the {thing}")


def _page(page: views.KeysetPage) -> dict[str, Any]:
    return {"items": page.items, "next_cursor": encode_cursor(page.next_cursor)}


def _list_endpoint(kind: Entity) -> Callable[..., dict[str, Any]]:
    """GET {path}: the common filters, then the kind's own (Entity.filters), as query parameters."""
    since = "the tool's last change at or after this moment (ISO 8601 with a UTC offset)"
    common: dict[str, tuple[Any, Any]] = {
        "session": (Session, Depends(get_session)),
        "product": (str | None, text_query(KEY, "product key")),
        "updated_since": (Moment | None, Query(None, description=since)),
        "q": (str | None, text_query(TEXT, "text in the title or key")),
        "connection_id": (str | None, text_query(CONNECTION_ID_LENGTH)),
        "include_deleted": (bool, IncludeDeleted),
        "after": (int | None, Depends(page_after)),
        "limit": (int, Limit),
    }
    own: dict[str, tuple[Any, Any]] = {}
    for name, field_name in kind.filters.items():
        spec = kind.fields[field_name]
        if spec.values:
            values = Literal[spec.values]  # type: ignore[name-defined]  # the declared values
            own[name] = (values | None, Query(None, description=spec.description))
        elif spec.type is FieldType.PERSON:
            own[name] = (str | None, text_query(TEXT, "person id, email or tool login"))
        else:
            own[name] = (
                str | None,
                text_query(TEXT, f"one of the {field_name}" if spec.type is FieldType.LIST else None),
            )
    parameters = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        for name, (annotation, default) in (common | own).items()
    ]

    def endpoint(**given: Any) -> dict[str, Any]:
        f = views.RecordFilter(
            product=given["product"],
            connection_id=given["connection_id"],
            updated_since=given["updated_since"],
            q=given["q"],
            include_deleted=given["include_deleted"],
            fields={name: given[name] for name in own if given[name] is not None},
        )
        return _page(views.list_records(given["session"], kind, f, given["after"], given["limit"]))

    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]  # read by FastAPI
    return endpoint


def _get_endpoint(kind: Entity) -> Callable[..., dict[str, Any]]:
    def endpoint(record_id: int = _id(kind.label), session: Session = Depends(get_session)) -> dict[str, Any]:
        item = views.get_record(session, kind, record_id)
        if item is None:
            raise Problem(404, f"no {kind.label} with id {record_id}")
        return item

    return endpoint


SERIES_DAYS = 84  # the default range of a series' points and of a summary: 12 weeks


def _day_range(start: date | None, end: date | None) -> tuple[date, date]:
    """The days asked for, both included; from after to is an empty range."""
    end = end or now().date()
    return start or shift(end, -(SERIES_DAYS - 1)), end


def _install_series(kind: Entity) -> None:
    """GET {path}: series with their points over a range of days; GET {path}/{series_id}: one."""
    assert kind.series is not None and kind.path is not None
    by = kind.series.by
    model = schemas.series_schema(kind)
    From = Query(None, alias="from", description=f"the first day (default: {SERIES_DAYS} days before to)")
    To = Query(None, alias="to", description="the last day (default: today, UTC)")
    ranged: dict[int | str, dict[str, Any]] = {422: INVALID}

    def list_endpoint(
        session: Session = Depends(get_session),
        product: str | None = text_query(KEY, "product key"),
        name: str | None = Query(None, alias=by, max_length=TEXT, pattern=NO_NUL, description=f"the {by}"),
        start: Day | None = From,
        end: Day | None = To,
    ) -> dict[str, Any]:
        first, last = _day_range(start, end)
        return {"items": list_series(session, kind, start=first, end=last, product=product, name=name)}

    def get_endpoint(
        series_id: str = Path(max_length=KEY + TEXT + 1, pattern=NO_NUL, description="product:name"),
        session: Session = Depends(get_session),
        start: Day | None = From,
        end: Day | None = To,
    ) -> dict[str, Any]:
        product, separator, name = series_id.partition(SERIES_SEPARATOR)
        first, last = _day_range(start, end)
        found = list_series(session, kind, start=first, end=last, product=product, name=name) if separator else []
        if not found:
            raise Problem(404, f"no {kind.label} {series_id!r} with points from {first} to {last}")
        return found[0]

    router.add_api_route(
        kind.path,
        list_endpoint,
        methods=["GET"],
        response_model=schemas.SeriesList[model],  # type: ignore[valid-type]  # a model built from the registry
        responses=ranged,
        name=f"list_{kind.name}_series",
        summary=f"List {kind.label} series",
    )
    router.add_api_route(
        kind.path + "/{series_id}",
        get_endpoint,
        methods=["GET"],
        response_model=model,
        responses={**ranged, 404: declared(f"No {kind.label} series with this id and points in the range")},
        name=f"get_{kind.name}_series",
        summary=f"Get a {kind.label} series",
    )


for _kind in ENTITIES.values():
    if _kind.path is None:
        continue
    if _kind.series is not None:
        _install_series(_kind)
        continue
    _item, _detail = schemas.record_schemas(_kind)
    router.add_api_route(
        _kind.path,
        _list_endpoint(_kind),
        methods=["GET"],
        response_model=schemas.Page[_item],  # type: ignore[valid-type]  # a model built from the registry
        responses=LISTED,
        name=f"list_{_kind.name}s",
        summary=f"List {_kind.label}s",
    )
    router.add_api_route(
        _kind.path + "/{record_id}",
        _get_endpoint(_kind),
        methods=["GET"],
        response_model=_detail,
        responses={404: declared(f"No {_kind.label} with this id"), 422: INVALID},
        name=f"get_{_kind.name}",
        summary=f"Get a {_kind.label}",
    )


@router.get("/people", response_model=schemas.Page[schemas.Person], responses=LISTED)
def list_people(
    session: Session = Depends(get_session), after: int | None = Depends(page_after), limit: int = Limit
) -> dict[str, Any]:
    return _page(directory.list_people(session, after, limit))


@router.get(
    "/people/{person_id}",
    response_model=schemas.PersonDetail,
    responses={404: declared("No person with this id"), 422: INVALID},
)
def get_person(person_id: int = _id("person"), session: Session = Depends(get_session)) -> dict[str, Any]:
    person = directory.get_person(session, person_id)
    if person is None:
        raise Problem(404, f"no person with id {person_id}")
    return person


@router.get("/products", response_model=list[schemas.Product])
def list_products(session: Session = Depends(get_session)) -> list[dict[str, Any]]:
    return directory.list_products(session)


@router.get(
    "/products/{key}/summary",
    responses={404: declared("No product with this key in portfolio.yaml"), 422: INVALID},
)
def get_product_summary(
    key: str = Path(max_length=KEY, pattern=NO_NUL),
    session: Session = Depends(get_session),
    start: Day | None = Query(None, alias="from", description=f"the first day (default: {SERIES_DAYS} days before to)"),
    end: Day | None = Query(None, alias="to", description="the last day (default: today, UTC)"),
) -> dict[str, Any]:
    """Each kind of record's part: counts now; throughput, lead, cycle and merge times of the work
    finished in the range; work in progress and its age; the product's specs; its metrics' trends
    over the range and around the release of the work they measure."""
    first, last = _day_range(start, end)
    summary = product_summary(session, key, first, last)
    if summary is None:
        raise Problem(404, f"no product {key!r}; products come from portfolio.yaml")
    return summary


@router.get("/links", response_model=schemas.Page[schemas.LinkRow], responses=LISTED)
def list_links(
    session: Session = Depends(get_session),
    type: str | None = text_query(TEXT, "the link's type, e.g. implements"),
    from_entity: Literal[tuple(ENTITIES)] | None = None,  # type: ignore[valid-type]  # the registry's kinds
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

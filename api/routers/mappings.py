"""Mappings that ops engineers own: the version in use per connector kind, its history, a
preview of a candidate on every stored record (nothing written), applying one (re-mapping the
stored records in the background, no tool asked) and applying an earlier one again."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlmodel import Session, col, select

from opsync.api import schemas
from opsync.api.deps import CONNECTION_ID_LENGTH, NO_NUL, caller, get_hub, get_session, refused, require, text_query
from opsync.api.problems import INVALID, UNEXPECTED, InvalidRequest, Problem, declared
from opsync.service import remap
from opsync.service.hub import Hub
from opsync.service.mapping import Mapping, MappingError, parse_mapping
from opsync.service.models import AppliedMapping, MappingVersion
from opsync.service.views import MAX_ID
from opsync.service.yamlfile import Problem as FileProblem

router = APIRouter(responses={500: UNEXPECTED})
KIND = Path(max_length=CONNECTION_ID_LENGTH, pattern=NO_NUL, description="a connector kind in use, e.g. jira")
MAX_MAPPING_BYTES = 1 << 20
YAML_BODY = {
    "requestBody": {
        "required": True,
        "description": "the mapping file, as YAML",
        "content": {"application/yaml": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}},
    }
}
UNKNOWN_KIND = declared("No connection of this kind is configured")
BAD_MAPPING = declared(
    "The mapping is not valid: each error names the line and column, the field and what was expected", InvalidRequest
)
TOO_LARGE = declared(f"The mapping is larger than {MAX_MAPPING_BYTES} bytes")


def _kind(hub: Hub, kind: str) -> str:
    if kind not in hub.mappings:
        raise Problem(404, f"no connection of kind {kind!r}; configured kinds: {', '.join(sorted(hub.mappings))}")
    return kind


async def _candidate(request: Request, hub: Hub, kind: str) -> Mapping:
    body = await request.body()
    if len(body) > MAX_MAPPING_BYTES:
        raise Problem(413, f"the mapping is {len(body)} bytes; at most {MAX_MAPPING_BYTES} are accepted")
    try:
        text = body.decode("utf-8")
        mapping = parse_mapping(f"{kind}.yaml (request body)", text, fields_by_name=hub.fields_of(kind))
    except UnicodeDecodeError:
        raise _invalid("the mapping is not UTF-8 text") from None
    except MappingError as error:
        raise _invalid(str(error), error.problems) from None
    if mapping.kind != kind:
        raise _invalid(f"the mapping says kind: {mapping.kind!r}; this is the {kind!r} mapping")
    return mapping


def _invalid(message: str, problems: list[FileProblem] | None = None) -> Problem:
    """422, with one error per problem: where is body, the line and column, and the field."""
    errors = [
        {
            "where": "body"
            + (f" line {p.line}" + (f", column {p.column}" if p.column else "") if p.line else "")
            + (f": {p.path}" if p.path else ""),
            "problem": p.message,
        }
        for p in problems or []
    ]
    return Problem(422, message, title="Invalid mapping", errors=errors or [{"where": "body", "problem": message}])


def _version_json(version: MappingVersion, applied: AppliedMapping | None) -> dict[str, Any]:
    return {
        "kind": version.kind,
        "version": version.id,
        "hash": version.hash,
        "first_applied_at": version.applied_at,
        "first_applied_by": version.applied_by,
        "in_use": applied is not None and applied.version_id == version.id,
    }


@router.get(
    "/mappings",
    response_model=list[schemas.MappingInUse],
    dependencies=[Depends(require("read"))],
    responses=refused("read"),
)
def list_mappings(hub: Hub = Depends(get_hub), session: Session = Depends(get_session)) -> list[dict[str, Any]]:
    result = []
    for kind in sorted(hub.mappings):
        applied = session.get(AppliedMapping, kind)
        if applied is None:
            continue
        version = session.get_one(MappingVersion, applied.version_id)
        result.append(_in_use(hub, version, applied))
    return result


def _in_use(hub: Hub, version: MappingVersion, applied: AppliedMapping) -> dict[str, Any]:
    return _version_json(version, applied) | {
        "applied_at": applied.applied_at,
        "applied_by": applied.applied_by,
        "connections": sorted(c for c, s in hub.connections.items() if s.kind == version.kind),
    }


@router.get(
    "/mappings/{kind}",
    response_model=schemas.MappingText,
    dependencies=[Depends(require("read"))],
    responses={**refused("read"), 404: UNKNOWN_KIND, 422: INVALID},
)
def get_mapping(
    kind: str = KIND, hub: Hub = Depends(get_hub), session: Session = Depends(get_session)
) -> dict[str, Any]:
    applied = session.get(AppliedMapping, _kind(hub, kind))
    if applied is None:
        raise Problem(404, f"no {kind} mapping has been applied yet")
    version = session.get_one(MappingVersion, applied.version_id)
    return _in_use(hub, version, applied) | {"text": version.content}


@router.post(
    "/mappings/{kind}/preview",
    response_model=schemas.MappingPreview,
    dependencies=[Depends(require("write"))],
    responses={**refused("write"), 404: UNKNOWN_KIND, 413: TOO_LARGE, 422: BAD_MAPPING},
    openapi_extra=YAML_BODY,
)
async def preview_mapping(
    request: Request,
    kind: str = KIND,
    connection_id: str | None = text_query(CONNECTION_ID_LENGTH, "only this connection's records"),
    record_type: str | None = text_query(100, "only raw records of this type (e.g. issue)"),
    sample: int = Query(remap.SAMPLE, ge=0, le=200, description="field-level diffs to show"),
    hub: Hub = Depends(get_hub),
) -> dict[str, Any]:
    """What applying this mapping would change in the stored records, writing nothing."""
    mapping = await _candidate(request, hub, _kind(hub, kind))
    if connection_id is not None and hub.connections.get(connection_id, None) is None:
        raise Problem(404, f"no connection {connection_id!r} of kind {kind!r}")
    result = await asyncio.to_thread(
        remap.preview, hub, mapping, connection_id=connection_id, record_type=record_type, sample=sample
    )
    return result.as_json()


async def _apply(request: Request, hub: Hub, mapping: Mapping, by: str) -> dict[str, Any]:
    version_id = await asyncio.to_thread(hub.apply_mapping, mapping, by)
    runs = []
    for connection_id in sorted(c for c, s in hub.connections.items() if s.kind == mapping.kind):
        lease, run_id = await remap.start_remap(hub, connection_id)
        task = asyncio.create_task(remap.remap_connection(hub, connection_id, lease, run_id))
        request.app.state.background.add(task)
        task.add_done_callback(request.app.state.background.discard)
        runs.append({"connection_id": connection_id, "run_id": run_id})
    return {"kind": mapping.kind, "version": version_id, "runs": runs}


@router.put(
    "/mappings/{kind}",
    status_code=202,
    response_model=schemas.MappingApplied,
    dependencies=[Depends(require("admin"))],
    responses={**refused("admin"), 404: UNKNOWN_KIND, 413: TOO_LARGE, 422: BAD_MAPPING},
    openapi_extra=YAML_BODY,
)
async def apply_mapping(
    request: Request, kind: str = KIND, hub: Hub = Depends(get_hub), by: str = Depends(caller)
) -> dict[str, Any]:
    """Store the mapping as a version, use it from now on, and re-map every stored record of
    the kind from its raw record in the background (one remap run per connection)."""
    mapping = await _candidate(request, hub, _kind(hub, kind))
    return await _apply(request, hub, mapping, by)


@router.get(
    "/mappings/{kind}/versions",
    response_model=list[schemas.MappingVersion],
    dependencies=[Depends(require("read"))],
    responses={**refused("read"), 404: UNKNOWN_KIND, 422: INVALID},
)
def list_versions(
    kind: str = KIND, hub: Hub = Depends(get_hub), session: Session = Depends(get_session)
) -> list[dict[str, Any]]:
    applied = session.get(AppliedMapping, _kind(hub, kind))
    versions = session.exec(
        select(MappingVersion).where(MappingVersion.kind == kind).order_by(col(MappingVersion.id).desc())
    ).all()
    return [_version_json(v, applied) for v in versions]


@router.post(
    "/mappings/{kind}/versions/{version}/apply",
    status_code=202,
    response_model=schemas.MappingApplied,
    dependencies=[Depends(require("admin"))],
    responses={**refused("admin"), 404: declared("No such kind, or no such version of it"), 422: INVALID},
)
async def apply_version(
    request: Request,
    kind: str = KIND,
    version: int = Path(ge=1, le=MAX_ID, description="a version from GET .../versions"),
    hub: Hub = Depends(get_hub),
    by: str = Depends(caller),
) -> dict[str, Any]:
    """Use an earlier version again (a rollback), re-mapping every stored record to it."""
    _kind(hub, kind)
    with Session(hub.engine) as session:
        stored = session.get(MappingVersion, version)
    if stored is None or stored.kind != kind:
        raise Problem(404, f"no version {version} of the {kind} mapping")
    again = parse_mapping(f"{kind} mapping, version {version}", stored.content, fields_by_name=hub.fields_of(kind))
    return await _apply(request, hub, again, by)

"""`opsync mappings ...`: check, preview, apply and roll back the mappings ops engineers own.
Applying re-maps every stored record of the kind from its raw record, asking no tool."""

from __future__ import annotations

import asyncio
import getpass
import socket
from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table
from sqlmodel import Session, col, select

from opsync.cli_support import ConfigOption, console, fail, open_hub, progress_bar, settings_for
from opsync.service.mapping import Mapping, MappingError, load_mapping, parse_mapping

mappings_app = typer.Typer(help="Mappings (YAML) that ops engineers own.", no_args_is_help=True)


def _load(file: Path) -> Mapping:
    try:
        return load_mapping(file)
    except MappingError as error:
        fail(str(error))
        raise  # _fail exits; this tells the type checker


def _with_fields(hub: Any, mapping: Mapping, label: str) -> Mapping:
    """The mapping compiled with the field list the hub keeps for its kind (field('Name'))."""
    names = hub.fields_of(mapping.kind)
    return parse_mapping(label, mapping.source, fields_by_name=names) if names else mapping


def _who() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} (opsync mappings)"


@mappings_app.command("validate")
def mappings_validate(
    files: list[Path],
    config: Path | None = typer.Option(
        None, "--config", "-c", help="also warn of map keys no record stored on this hub's database matches"
    ),
) -> None:
    """Check mapping files; errors name the file, the line and the field."""
    from opsync.service.remap import stored_warnings

    failed, valid = False, []
    for file in files:
        try:
            valid.append(load_mapping(file))
            console.print(f"[green]ok[/green] {file}")
        except MappingError as error:
            console.print(f"[red]error:[/red] {error}")
            failed = True
    hub = open_hub(settings_for(config)) if config else None
    try:
        for mapping in valid:
            stored = (
                stored_warnings(hub, _with_fields(hub, mapping, mapping.file))
                if hub and mapping.kind in hub.mappings
                else []
            )
            for warning in [*mapping.warnings, *stored]:
                console.print(f"[yellow]warning:[/yellow] {warning}")
    finally:
        if hub:
            asyncio.run(hub.close())
    if failed:
        raise typer.Exit(1)


@mappings_app.command("preview")
def mappings_preview(
    file: Path,
    config: Path | None = ConfigOption,
    connection: str | None = typer.Option(None, help="only this connection's records"),
    record_type: str | None = typer.Option(None, help="only raw records of this type"),
    sample: int = typer.Option(10, min=0, help="field-level diffs to show"),
) -> None:
    """What applying FILE would change in the stored records, writing nothing."""
    from opsync.service.remap import preview

    mapping = _load(file)
    hub = open_hub(settings_for(config))
    try:
        if mapping.kind not in hub.mappings:
            fail(f"no connection of kind {mapping.kind!r} in the config")
        candidate = _with_fields(hub, mapping, str(file))
        result = preview(hub, candidate, connection_id=connection, record_type=record_type, sample=sample)
    finally:
        asyncio.run(hub.close())
    console.print(
        f"{result.read} raw records read: {result.would_change} would change, {result.would_create} would be"
        f" created, {result.unchanged} unchanged, {len(result.failures)} shown failing"
    )
    table = Table("record", "field", "now", "would be")
    for change in result.sample:
        for name, (before, after) in change["fields"].items():
            table.add_row(f"{change['entity']} {change['external_id']}", name, str(before), str(after))
    if result.sample:
        console.print(table)
    for failure in result.failures:
        console.print(f"[red]fails:[/red] {failure}")


def _apply(config: Path | None, mapping: Mapping, label: str) -> None:
    from opsync.service.remap import remap_connection, start_remap

    async def run() -> None:
        hub = open_hub(settings_for(config))
        try:
            if mapping.kind not in hub.mappings:
                fail(f"no connection of kind {mapping.kind!r} in the config")
            version = await asyncio.to_thread(hub.apply_mapping, _with_fields(hub, mapping, label), _who())
            console.print(f"the {mapping.kind} mapping in use is now version {version}")
            for connection_id in sorted(c for c, s in hub.connections.items() if s.kind == mapping.kind):
                lease, run_id = await start_remap(hub, connection_id)
                with progress_bar() as bar:
                    task = bar.add_task(f"re-mapping {connection_id}", total=None)

                    def advance(done: int, task: TaskID = task, bar: Progress = bar) -> None:
                        bar.update(task, completed=done)

                    result = await remap_connection(hub, connection_id, lease, run_id, progress=advance)
                console.print(
                    f"{connection_id}: {result.status}, {result.updated} changed, {result.created} created,"
                    f" {result.unchanged} unchanged, {result.failed} failing"
                )
        finally:
            await hub.close()

    asyncio.run(run())


@mappings_app.command("apply")
def mappings_apply(file: Path, config: Path | None = ConfigOption) -> None:
    """Use FILE from now on, and re-map every stored record of its kind (no tool is asked)."""
    _apply(config, _load(file), str(file))


@mappings_app.command("versions")
def mappings_versions(kind: str, config: Path | None = ConfigOption) -> None:
    """The versions of KIND's mapping, newest first, and which one is in use."""
    from opsync.service.models import AppliedMapping, MappingVersion

    hub = open_hub(settings_for(config))
    try:
        with Session(hub.engine) as session:
            applied = session.get(AppliedMapping, kind)
            rows: list[Any] = list(
                session.exec(
                    select(MappingVersion).where(MappingVersion.kind == kind).order_by(col(MappingVersion.id).desc())
                ).all()
            )
    finally:
        asyncio.run(hub.close())
    if not rows:
        fail(f"no version of a {kind!r} mapping is stored")
    table = Table("version", "first applied", "by", "hash", "in use")
    for row in rows:
        in_use = "yes" if applied and applied.version_id == row.id else ""
        table.add_row(str(row.id), f"{row.applied_at:%Y-%m-%d %H:%M}", row.applied_by or "", row.hash[:12], in_use)
    console.print(table)


@mappings_app.command("rollback")
def mappings_rollback(kind: str, version: int, config: Path | None = ConfigOption) -> None:
    """Use an earlier VERSION of KIND's mapping again, re-mapping every stored record to it."""
    from opsync.service.db import create_db_engine
    from opsync.service.models import MappingVersion

    settings = settings_for(config)
    engine = create_db_engine(settings.database_url)
    try:
        with Session(engine) as session:
            stored = session.get(MappingVersion, version)
    finally:
        engine.dispose()
    if stored is None or stored.kind != kind:
        fail(f"no version {version} of the {kind} mapping (see: opsync mappings versions {kind})")
        return
    label = f"{kind} mapping, version {version}"
    _apply(config, parse_mapping(label, stored.content), label)

"""What the `opsync` commands share: the console, settings from the options, failing with a
message, opening a hub, the progress bar."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from opsync.service.config import ConfigError
from opsync.service.mapping import MappingError
from opsync.service.settings import Settings

console = Console(stderr=True)
ConfigOption = typer.Option(None, "--config", "-c", help="connections file (default: $OPSYNC_CONFIG)")


def settings_for(config: Path | None) -> Settings:
    settings = Settings()
    if config is not None:
        settings = settings.model_copy(update={"config": config})
    return settings


def fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def progress_bar() -> Progress:
    """The bar `opsync sync` and `opsync mappings apply` show: records so far, time taken."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} records"),
        TimeElapsedColumn(),
        console=console,
    )


def open_hub(settings: Settings):
    from opsync.service.hub import Hub

    try:
        return Hub.open(settings)
    except (ConfigError, MappingError) as error:
        fail(str(error))

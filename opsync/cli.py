"""The `opsync` command: the composition root that wires the core, the API and the connectors
(the core itself imports neither)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import typer

from opsync.cli_support import ConfigOption, console, fail, open_hub, progress_bar, settings_for
from opsync.mappings_cli import mappings_app
from opsync.service import logs, malloc
from opsync.service.config import ConfigError, load_config
from opsync.service.settings import Settings

malloc.fewer_arenas()  # before any thread starts: every opsync process comes through here

app = typer.Typer(help="opsync: one product-work model over every tool a product team uses.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tokens_app, name="tokens")
app.add_typer(mappings_app, name="mappings")


def long_lived() -> None:
    """What start-up made (modules, routes, models) lives as long as the process: keep it out
    of the garbage collector's full passes, which otherwise pause requests for tens of ms."""
    gc.collect()
    gc.freeze()


def long_lived_after_startup(lifespan: Callable[[Any], AbstractAsyncContextManager[Any]]) -> Callable[..., Any]:
    """The app's lifespan, then long_lived(): what the app's start-up makes (the hub, its
    engine, connectors and mappings) lives as long as the process too."""

    @asynccontextmanager
    async def started(app: Any) -> AsyncIterator[Any]:
        async with lifespan(app) as state:
            long_lived()
            yield state

    return started


@app.command()
def serve(
    config: Path | None = ConfigOption,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: bool = typer.Option(
        True, help="apply webhooks and run schedules, in a worker process this one starts and stops"
    ),
    embedded_worker: bool = typer.Option(
        False,
        "--embedded-worker",
        help="run the worker in this process instead: one process, but applying then competes with"
        " webhook intake for one core",
    ),
) -> None:
    """Serve the API (and, by default, a worker process beside it: webhooks applied, schedules run)."""
    import uvicorn

    from opsync.api.app import create_app
    from opsync.service.worker_process import WorkerProcess

    settings = settings_for(config).model_copy(update={"run_workers": workers and embedded_worker})
    try:
        hub_config = load_config(settings.config) if settings.config else None
    except ConfigError as error:
        fail(str(error))
    logs.configure(settings.log_level, json_lines=settings.log_format == "json")
    worker_process = None
    if workers and not embedded_worker:
        # the same settings reach the child: it inherits the environment and is given the file
        given = ["--config", str(settings.config)] if settings.config else []
        worker_process = WorkerProcess([sys.executable, "-m", "opsync.cli", "worker", "--supervised", *given])
    application = create_app(settings, hub_config, worker_process=worker_process)
    application.router.lifespan_context = long_lived_after_startup(application.router.lifespan_context)
    # log_config=None: uvicorn's own loggers go through the handler logs.configure installed;
    # the access log is the app's own (OPSYNC_ACCESS_LOG), by default only for errors
    uvicorn.run(
        application, host=host, port=port, log_level=settings.log_level.lower(), log_config=None, access_log=False
    )


@app.command()
def worker(
    config: Path | None = ConfigOption,
    metrics_port: int | None = typer.Option(None, help="serve this process's /metrics on this port"),
    metrics_host: str = typer.Option("127.0.0.1", help="the address of --metrics-port"),
    supervised: bool = typer.Option(False, hidden=True, help="started by `opsync serve`: stdin is its pipe"),
) -> None:
    """Apply webhook deliveries and run schedules, without serving the API (SIGTERM stops it
    after the batch in hand)."""
    from opsync.service.worker import Worker
    from opsync.service.worker_process import STOP_SECONDS, follow_supervisor

    settings = settings_for(config)
    logs.configure(settings.log_level, json_lines=settings.log_format == "json")

    async def run() -> None:
        hub = open_hub(settings)
        if metrics_port is not None:  # once the hub is open: an answer there says the worker runs
            # what this process counts (deliveries applied, pulls, requests to the tools); the
            # inbox's depth is read from the database by the API's /metrics
            from prometheus_client import start_http_server

            start_http_server(metrics_port, metrics_host)
        long_lived()
        running = Worker(hub)
        running.start()
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        ends: list[asyncio.Task] = [asyncio.create_task(stopping.wait())]
        if supervised:
            ends.append(asyncio.create_task(follow_supervisor(running)))
        try:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for end in ends:
                end.cancel()
            try:
                async with asyncio.timeout(STOP_SECONDS):
                    await running.stop()
                    await hub.close()
            except TimeoutError:  # whatever holds it up, the process ends: its leases expire
                logging.getLogger("opsync.worker").error("the worker did not stop within %g s: exiting", STOP_SECONDS)
                logging.shutdown()
                os._exit(1)

    asyncio.run(run())


@app.command()
def sync(
    connection: str,
    config: Path | None = ConfigOption,
    full: bool = typer.Option(False, "--full", help="pull everything, then reconcile deletions"),
    allow_mass_delete: bool = typer.Option(False, help="let reconcile delete more than max_delete_share"),
) -> None:
    """Pull one connection now, with progress, and record the run."""
    from opsync.service.leases import AlreadyRunning
    from opsync.service.sync import sync_connection

    settings = settings_for(config)

    async def run() -> None:
        hub = open_hub(settings)
        if connection not in hub.connections:
            fail(
                f"no connection {connection!r} in {settings.config}; configured: {', '.join(hub.connections) or 'none'}"
            )
        try:
            with progress_bar() as bar:
                task = bar.add_task(f"pulling {connection}", total=None)
                result = await sync_connection(
                    hub,
                    connection,
                    full=full,
                    allow_mass_delete=allow_mass_delete,
                    progress=lambda n: bar.update(task, completed=n),
                )
        except AlreadyRunning as busy:
            fail(str(busy))
        finally:
            await hub.close()
        console.print(
            f"{result.status}: fetched {result.fetched}, created {result.created}, updated"
            f" {result.updated}, unchanged {result.unchanged}, stale {result.stale}, deleted"
            f" {result.deleted}, failed {result.failed}"
        )
        for error in result.errors:
            console.print(f"  [yellow]{error}[/yellow]")
        if result.status != "succeeded":
            raise typer.Exit(1)

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the database schema to the newest version."""
    from opsync.service.db import upgrade

    upgrade(Settings().database_url)
    console.print("database schema is up to date")


@tokens_app.command("create")
def tokens_create(
    scope: list[str] = typer.Option(["read"], "--scope", help="read, write or admin; repeatable"),
    name: str = typer.Option("", help="what the token is for"),
) -> None:
    """Create an API token and print it (it is stored hashed: this is the only time it shows)."""
    from opsync.service.db import create_db_engine, upgrade
    from opsync.service.tokens import create_token

    settings = Settings()
    upgrade(settings.database_url)
    engine = create_db_engine(settings.database_url)
    try:
        print(create_token(engine, scope, name))
    except ValueError as error:
        fail(str(error))
    finally:
        engine.dispose()


@app.command()
def demo(
    port: int = 8000,
    scale: float = typer.Option(1.0, min=0.01, max=50, help="how much seeded data the simulated tools hold"),
    workdir: Path = typer.Option(Path("opsync-demo"), help="where the demo keeps its config and database"),
) -> None:
    """Start the simulated tools, sync them, serve the API on 127.0.0.1 and keep changing records."""
    found = [ep for ep in entry_points(group="opsync.demo")]
    if not found:
        fail("the demo needs the simulators: pip install -e ./simulators (from a clone of opsync)")
    found[0].load()(port=port, scale=scale, workdir=workdir)


if __name__ == "__main__":
    app()

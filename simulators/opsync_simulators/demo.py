"""`opsync demo`: simulated Jira, GitHub, Confluence and Amplitude, synced into a fresh hub,
served on 127.0.0.1, with a few records changing every 20 seconds so that webhooks flow."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from opsync.api.app import create_app
from opsync.connectors.amplitude.connector import AmplitudeConnector
from opsync.service.config import load_config
from opsync.service.db import create_db_engine
from opsync.service.hub import Hub
from opsync.service.settings import Settings
from opsync.service.sync import sync_connection
from opsync.service.tokens import create_token
from opsync_simulators.amplitude import AmplitudeSim
from opsync_simulators.analytics import PRODUCT_EVENTS
from opsync_simulators.confluence import ConfluenceSim
from opsync_simulators.confluence_webhooks import WebhookTarget
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving
from opsync_simulators.world import PRODUCTS

MUTATION_INTERVAL_SECONDS = 20.0


SECRETS = (
    "JIRA_TOKEN",
    "JIRA_WEBHOOK_SECRET",
    "GITHUB_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
    "CONFLUENCE_TOKEN",
    "CONFLUENCE_SHARED_SECRET",
    "AMPLITUDE_API_KEY",
    "AMPLITUDE_SECRET_KEY",
)


def _secret(name: str) -> str:
    return os.environ[f"OPSYNC_DEMO_{name}"]


def write_config(workdir: Path, jira_url: str, github_url: str, confluence_url: str, amplitude_url: str) -> Path:
    """The connections file, secrets as ${...} references like a real one."""
    config = {
        "connections": [
            {
                "id": "jira-acme",
                "kind": "jira",
                "base_url": jira_url,
                "email": "ops@acme.example",
                "token": "${OPSYNC_DEMO_JIRA_TOKEN}",
                "webhook_secret": "${OPSYNC_DEMO_JIRA_WEBHOOK_SECRET}",
                "projects": ["PAY", "CHK", "GRO"],
            },
            {
                "id": "github-acme",
                "kind": "github",
                "base_url": github_url,
                "token": "${OPSYNC_DEMO_GITHUB_TOKEN}",
                "webhook_secret": "${OPSYNC_DEMO_GITHUB_WEBHOOK_SECRET}",
                "repos": ["acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web"],
            },
            {
                "id": "confluence-acme",
                "kind": "confluence",
                "base_url": confluence_url,
                "email": "ops@acme.example",
                "token": "${OPSYNC_DEMO_CONFLUENCE_TOKEN}",
                "webhook_secret": "${OPSYNC_DEMO_CONFLUENCE_SHARED_SECRET}",
                "spaces": ["PAY", "CHK", "GRO"],
            },
            {
                "id": "amplitude-acme",
                "kind": "amplitude",
                "base_url": amplitude_url,
                "api_key": "${OPSYNC_DEMO_AMPLITUDE_API_KEY}",
                "token": "${OPSYNC_DEMO_AMPLITUDE_SECRET_KEY}",
            },
        ]
    }
    file = workdir / "connections.yaml"
    file.write_text(yaml.safe_dump(config, sort_keys=False))
    return file


def write_metric_mapping(workdir: Path, jira: JiraSim) -> Path:
    """The shipped Amplitude mapping, plus which epic each launch's metric measures: the finished
    epic of the product's project closest to the day the simulated event's numbers changed."""
    projects = {product.key: product.jira_project for product in PRODUCTS}
    measured = {}
    for event in PRODUCT_EVENTS:
        if event.change_days_ago is None or event.product is None:
            continue
        launch = datetime.now(UTC) - timedelta(days=event.change_days_ago)
        epics = [
            i for i in jira.issues() if i.project == projects[event.product] and i.issuetype == "Epic" and i.resolved
        ]
        if epics:
            measured[event.name] = min(epics, key=lambda i: abs(i.resolved - launch)).key
    mapping = yaml.safe_load(AmplitudeConnector.default_mapping().read_text())
    rule = {"type": "measures", "to": "work_item", "key": {"from": "event", "map": measured}}
    mapping["records"]["event_day"]["links"] = [rule]
    directory = workdir / "mappings"
    directory.mkdir(exist_ok=True)
    (directory / "amplitude.yaml").write_text(
        "# The shipped mapping, with the epics the demo's launches are measured against.\n"
        + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True)
    )
    return directory


def _mutate_forever(
    jira: JiraSim, github: GitHubSim, confluence: ConfluenceSim, stop: threading.Event, console: Console
) -> None:
    rng = random.Random(42)
    while not stop.wait(MUTATION_INTERVAL_SECONDS):
        try:
            jira.mutate_random(rng.randint(1, 2), rng)
            github.mutate_random(1, rng)
            confluence.mutate_random(1, rng)
        except Exception as error:  # the demo goes on if one change fails
            console.print(f"[yellow]simulated change failed: {error}[/yellow]")


async def _initial_sync(settings: Settings, console: Console) -> None:
    hub = Hub.open(settings)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} records"),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            for connection_id in hub.connections:
                task = bar.add_task(f"syncing {connection_id}", total=None)
                run = await sync_connection(
                    hub, connection_id, full=True, progress=lambda n, t=task: bar.update(t, completed=n)
                )
                bar.update(task, description=f"{connection_id}: {run.status}, {run.created} new")
    finally:
        await hub.close()


JIRA_ISSUES, GITHUB_ITEMS, PAGES = 2000, 500, 120  # at scale 1


@dataclass
class Demo:
    """The simulated tools, serving, and a hub's settings and config that pulled them once."""

    jira: JiraSim
    github: GitHubSim
    confluence: ConfluenceSim
    amplitude: AmplitudeSim
    urls: dict[str, str]  # each tool's base URL
    settings: Settings
    config_file: Path

    def send_webhooks_to(self, hub_url: str) -> None:
        """Let the tools' changes reach the hub at hub_url by webhook."""
        self.jira.webhook_url = f"{hub_url}/api/v1/webhooks/jira-acme"
        self.github.webhook_url = f"{hub_url}/api/v1/webhooks/github-acme"
        self.confluence.webhooks.target = WebhookTarget(
            url=f"{hub_url}/api/v1/webhooks/confluence-acme", secret=_secret("CONFLUENCE_SHARED_SECRET")
        )


@contextmanager
def demo_tools(workdir: Path, scale: float, console: Console, database_url: str | None = None) -> Iterator[Demo]:
    """Start the simulated tools (seeded, dated up to now), write the connections file and the
    demo's mapping into workdir, and pull every connection once; the tools stop with the block."""
    jira_issues, github_items = max(1, round(JIRA_ISSUES * scale)), max(1, round(GITHUB_ITEMS * scale))
    workdir.mkdir(parents=True, exist_ok=True)
    for name in SECRETS:
        os.environ.setdefault(f"OPSYNC_DEMO_{name}", secrets.token_hex(16))
    database_url = database_url or f"sqlite:///{(workdir / 'opsync.db').resolve()}"
    console.print("starting simulated Jira, GitHub, Confluence and Amplitude…")
    jira = JiraSim(issues=jira_issues, webhook_secret=_secret("JIRA_WEBHOOK_SECRET"))
    github = GitHubSim(
        items=github_items,
        jira_keys=jira.key_numbers(),
        webhook_secret=_secret("GITHUB_WEBHOOK_SECRET"),
        token=_secret("GITHUB_TOKEN"),
    )
    confluence = ConfluenceSim(
        pages=max(3, round(PAGES * scale)),
        jira_numbers=jira.key_numbers(),
        credentials=("ops@acme.example", _secret("CONFLUENCE_TOKEN")),
    )
    amplitude = AmplitudeSim(api_key=_secret("AMPLITUDE_API_KEY"), secret_key=_secret("AMPLITUDE_SECRET_KEY"))
    with ExitStack() as stack:
        urls = {
            "jira": stack.enter_context(serving(jira.app)),
            "github": stack.enter_context(serving(github.app)),
            "confluence": stack.enter_context(serving(confluence.app)),
            "amplitude": stack.enter_context(serving(amplitude.app)),
        }
        jira.site_url = urls["jira"]  # webhook bodies name the same site the REST API does
        config_file = write_config(workdir, urls["jira"], urls["github"], urls["confluence"], urls["amplitude"])
        settings = Settings(
            database_url=database_url, config=config_file, mappings_dir=write_metric_mapping(workdir, jira)
        )
        asyncio.run(_initial_sync(settings, console))
        yield Demo(jira, github, confluence, amplitude, urls, settings, config_file)


def run_demo(port: int, scale: float, workdir: Path) -> None:
    console = Console(stderr=True)
    hub_url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    with demo_tools(workdir, scale, console) as demo:
        engine = create_db_engine(demo.settings.database_url)
        token = create_token(engine, ["read"], "demo")
        engine.dispose()
        demo.send_webhooks_to(hub_url)
        threading.Thread(
            target=_mutate_forever, args=(demo.jira, demo.github, demo.confluence, stop, console), daemon=True
        ).start()
        urls, config_file = demo.urls, demo.config_file
        print(
            f"""
opsync demo is up
  API docs        {hub_url}/docs
  work items      {hub_url}/api/v1/work-items
  code changes    {hub_url}/api/v1/code-changes
  documents       {hub_url}/api/v1/documents
  metrics         {hub_url}/api/v1/metrics?product=checkout
  change feed     {hub_url}/api/v1/changes?after=0
  simulated Jira  {urls["jira"]}    simulated GitHub  {urls["github"]}
  simulated Confluence  {urls["confluence"]}    simulated Amplitude  {urls["amplitude"]}
  config          {config_file}
  read token      {token}

  try: curl -H 'Authorization: Bearer {token}' '{hub_url}/api/v1/products/checkout/summary'
  a few records change every {MUTATION_INTERVAL_SECONDS:.0f} s in the simulators and reach the hub by webhook.
  Ctrl-C stops everything.
""",
            flush=True,
        )
        try:
            uvicorn.run(
                create_app(demo.settings, load_config(config_file)), host="127.0.0.1", port=port, log_level="warning"
            )
        finally:
            stop.set()

"""Backfill throughput: a full sync of N records from a simulator into an empty store,
against a ceiling measured in the same run (a plain httpx client fetching and parsing
the same pages from the same simulator).

    python bench/backfill.py --source jira --records 20000
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/backfill.py --source github

The simulator runs in a process of its own, and each measured phase in a fresh process,
so neither phase's figures (time, peak RSS) include the other's or the simulator's work.
Raw and sync are measured in turn, three rounds by default; the summary line is the
median round's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from opsync.service.db import scratch_database

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
PROJECTS = ["PAY", "CHK", "GRO"]
REPOS = ["acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web"]
PAGE_SIZE = 100


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def simulator(source: str, records: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "opsync_simulators", source, "--records", str(records), "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the {source} simulator did not start")
        yield url
    finally:
        process.kill()
        process.wait()


# -- the ceiling: plain httpx, same pages -------------------------------------------------


def raw_jira(url: str) -> int:
    count, token = 0, None
    with httpx.Client(base_url=url, auth=("bench@acme.example", TOKEN), timeout=60) as client:
        while True:
            params: dict[str, Any] = {
                "jql": f"project in ({', '.join(PROJECTS)}) ORDER BY updated ASC",
                "maxResults": PAGE_SIZE,
                "fields": "*all",
            }
            if token:
                params["nextPageToken"] = token
            page = client.get("/rest/api/3/search/jql", params=params).json()
            count += len(page["issues"])
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return count


def raw_github(url: str) -> int:
    count = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"token {TOKEN}"}, timeout=60) as client:
        for repo in REPOS:
            for path, params in (
                (f"/repos/{repo}/issues", {"sort": "updated", "direction": "asc"}),
                (f"/repos/{repo}/pulls", {"sort": "updated", "direction": "desc"}),
            ):
                next_url: str | None = path
                query: dict[str, Any] | None = {"state": "all", "per_page": PAGE_SIZE, **params}
                while next_url:
                    response = client.get(next_url, params=query)
                    rows = response.json()
                    count += sum(1 for row in rows if "pull_request" not in row)
                    next_url, query = response.links.get("next", {}).get("url"), None
    return count


# -- the hub: a full sync into an empty store ---------------------------------------------


@contextmanager
def empty_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory, scratch_database(Path(directory), "bench") as url:
        yield url


def sync(source: str, url: str) -> tuple[int, float]:
    """Records written and seconds taken by the pull alone (not start-up or migrations)."""
    from opsync.service.config import HubConfig
    from opsync.service.hub import Hub
    from opsync.service.plugins import connector_class
    from opsync.service.settings import Settings
    from opsync.service.sync import sync_connection

    settings = {"id": "bench", "kind": source, "base_url": url, "token": TOKEN, "page_size": PAGE_SIZE}
    settings |= {"email": "bench@acme.example", "projects": PROJECTS} if source == "jira" else {"repos": REPOS}
    config = HubConfig(connections={"bench": connector_class(source).settings_model(**settings)})
    with empty_database() as database_url:
        hub = Hub.open(Settings(database_url=database_url), config)
        try:
            started = time.perf_counter()
            run = asyncio.run(sync_connection(hub, "bench"))
            seconds = time.perf_counter() - started
        finally:
            asyncio.run(hub.close())
    if run.status != "succeeded":
        raise SystemExit(f"sync failed: {run.errors}")
    return run.created, seconds


def measure(phase: str, source: str, url: str, profile: Path | None = None) -> dict[str, float]:
    """Run one phase in a fresh process; its own time and peak RSS come back as JSON.
    With profile, the process runs under py-spy, which writes a speedscope file there."""
    command = [sys.executable, __file__, "--phase", phase, "--source", source, "--url", url]
    if profile:
        command = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--output",
            str(profile),
            "--format",
            "speedscope",
            "--rate",
            "200",
            "--threads",
            "--",
            *command,
        ]
    output = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def run_phase(phase: str, source: str, url: str) -> None:
    if phase == "raw":
        started = time.perf_counter()
        records = raw_jira(url) if source == "jira" else raw_github(url)
        seconds = time.perf_counter() - started
    else:
        records, seconds = sync(source, url)
    print(json.dumps({"records": records, "seconds": seconds, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["jira", "github"], default="jira")
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="raw and sync measured this many times")
    parser.add_argument("--profile", type=Path, help="record the first sync phase with py-spy into this file")
    parser.add_argument("--phase", choices=["raw", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 9 or not 1 <= args.records <= 200_000:
        parser.error("keep the run bounded: 1..9 rounds, 1..200000 records")
    if args.phase:
        run_phase(args.phase, args.source, args.url)
        return
    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgresql") else "SQLite"
    print(f"backfill of {args.records} {args.source} records into an empty store on {database}, {args.rounds} rounds")
    rounds = []
    with simulator(args.source, args.records) as url:
        for n in range(args.rounds):
            # raw and sync one after the other: the machine's speed drifts less between neighbours
            raw = measure("raw", args.source, url)
            synced = measure("sync", args.source, url, args.profile if n == 0 else None)
            ratio = (synced["records"] / synced["seconds"]) / (raw["records"] / raw["seconds"])
            print(f"  round {n + 1}: ratio sync/raw {ratio:.2f}", flush=True)
            rounds.append((ratio, raw, synced))
    ratio, raw, synced = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
    print(f"the median round:\n{'phase':<28}{'records':>9}{'seconds':>10}{'records/s':>11}{'peak RSS MB':>13}")
    for name, figures in (("raw fetch + parse (httpx)", raw), ("opsync sync", synced)):
        rate = figures["records"] / figures["seconds"]
        print(
            f"{name:<28}{figures['records']:>9}{figures['seconds']:>10.2f}{rate:>11.0f}{figures['peak_rss_mb']:>13.0f}"
        )
    print(f"peak RSS of sync over all rounds: {max(r[2]['peak_rss_mb'] for r in rounds):.0f} MB")
    print(f"ratio sync/raw = {ratio:.2f}")


if __name__ == "__main__":
    main()

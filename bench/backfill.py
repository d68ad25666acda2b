"""Backfill throughput: a full sync of N records from a simulator into an empty store,
against ceilings measured in the same run: a plain httpx client fetching and parsing the
same pages from the same simulator, one page after another, and the same client with
--concurrency requests in flight.

    python bench/backfill.py --source jira --records 20000
    python bench/backfill.py --source github --records 10000 --latency-ms 150
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/backfill.py --source github

The pages fall into partitions, each paged on its own: Jira one search per project, GitHub
the issues and the pulls of each repository. The plain client pages them one after another,
or hands them to --concurrency threads, each with its own connection. --latency-ms makes
the simulator answer every API request that much later, as a remote API's round trip does;
on 127.0.0.1 nothing else would show what pulling pages one at a time costs.

The simulator runs in a process of its own, and each measured phase in a fresh process,
so no phase's figures (time, peak RSS) include another's or the simulator's work. The
phases are measured in turn, three rounds by default; the summary lines are the median
round's ratios (the round is the median by sync/raw). Each phase's CPU time per record is
printed beside the simulator's in the same while: on a machine of few cores, what the
simulator spends is taken from the phase measured.
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
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from opsync.service.db import scratch_database

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
EMAIL = "bench@acme.example"
PROJECTS = ["PAY", "CHK", "GRO", "OPS"]  # four, so that four searches can be in flight at once
REPOS = ["acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web"]
PAGE_SIZE = 100

Partition = tuple[str, dict[str, Any]]  # the path and query of a partition's first page


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemoryWatch:
    """Peak memory of this process and the processes it starts (a pull's mapper): this
    process's RSS plus what is private to each child (the shared libraries both map are
    counted once, in this one's RSS). Sampled every 50 ms (Linux /proc)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, peak_rss_mb())

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                total = _kb(Path("/proc/self/status"), "VmRSS:")
                for task in Path("/proc/self/task").iterdir():
                    for child in (task / "children").read_text().split():
                        rollup = Path(f"/proc/{child}/smaps_rollup")
                        total += _kb(rollup, "Private_Clean:") + _kb(rollup, "Private_Dirty:")
            except OSError:  # not Linux, or a child that just ended
                continue
            self.peak_mb = max(self.peak_mb, total / 1024)


def _kb(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


@dataclass
class Simulator:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the simulator's process has used so far (Linux /proc; 0.0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@contextmanager
def simulator(source: str, records: int, latency_ms: float) -> Iterator[Simulator]:
    options = ["--records", str(records), "--token", TOKEN, "--latency-ms", str(latency_ms)]
    options += ["--projects", ",".join(PROJECTS)] if source == "jira" else []
    process = subprocess.Popen(
        [sys.executable, "-m", "opsync_simulators", source, *options],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        url = process.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the {source} simulator did not start")
        yield Simulator(url, process.pid)
    finally:
        process.kill()
        process.wait()


# -- the ceilings: plain httpx, the same pages, one after another or several in flight ----


def partitions(source: str) -> list[Partition]:
    if source == "jira":
        # the pages opsync asks for: every field, and the changelog its mapping reads
        query = {"maxResults": PAGE_SIZE, "fields": "*all", "expand": "changelog"}
        return [
            ("/rest/api/3/search/jql", {"jql": f"project = {key} ORDER BY updated ASC", **query}) for key in PROJECTS
        ]
    return [
        (f"/repos/{repo}/{listing}", {"state": "all", "per_page": PAGE_SIZE, "sort": "updated", "direction": direction})
        for repo in REPOS
        for listing, direction in (("issues", "asc"), ("pulls", "desc"))
    ]


def plain_client(source: str, url: str) -> httpx.Client:
    if source == "jira":
        return httpx.Client(base_url=url, auth=(EMAIL, TOKEN), timeout=60)
    return httpx.Client(base_url=url, headers={"Authorization": f"token {TOKEN}"}, timeout=60)


def fetch_partition(source: str, url: str, partition: Partition) -> int:
    """Every page of one partition, one after another on one connection; records in them."""
    path, query = partition
    count = 0
    with plain_client(source, url) as client:
        if source == "jira":
            token = None
            while True:
                page = client.get(path, params=query | ({"nextPageToken": token} if token else {})).json()
                count += len(page["issues"])
                token = page.get("nextPageToken")
                if page.get("isLast", True) or not token:
                    return count
        next_url: str | None = path
        params: dict[str, Any] | None = query
        while next_url:
            response = client.get(next_url, params=params)
            # GitHub lists pull requests among the issues too; they are counted from /pulls
            count += sum(1 for row in response.json() if "pull_request" not in row)
            next_url, params = response.links.get("next", {}).get("url"), None
    return count


def raw(source: str, url: str, concurrency: int) -> int:
    """Records in every partition's pages, fetched by `concurrency` threads (1: one page
    after another), each taking the next partition not yet taken."""
    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(lambda partition: fetch_partition(source, url, partition), partitions(source)))


# -- the hub: a full sync into an empty store ---------------------------------------------


@contextmanager
def empty_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as directory, scratch_database(Path(directory), "bench") as url:
        yield url


def pulls_at_once(source: str) -> bool:
    """Whether the source's connector takes max_concurrency (pages partitions at once)."""
    from opsync.service.plugins import connector_class

    return "max_concurrency" in connector_class(source).settings_model.model_fields


def children_cpu() -> float:
    """CPU seconds of the processes this one started and waited for (a pull's mapper)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sync(source: str, url: str, concurrency: int) -> tuple[int, float, float]:
    """Records written, and seconds and CPU seconds taken by the pull alone (not start-up or
    migrations), its mapper process's included."""
    from opsync.service.config import HubConfig
    from opsync.service.hub import Hub
    from opsync.service.plugins import connector_class
    from opsync.service.settings import Settings
    from opsync.service.sync import sync_connection

    settings = {"id": "bench", "kind": source, "base_url": url, "token": TOKEN, "page_size": PAGE_SIZE}
    settings |= {"email": EMAIL, "projects": PROJECTS} if source == "jira" else {"repos": REPOS}
    settings |= {"max_concurrency": concurrency} if pulls_at_once(source) else {}
    config = HubConfig(connections={"bench": connector_class(source).settings_model(**settings)})
    with empty_database() as database_url:
        hub = Hub.open(Settings(database_url=database_url), config)
        try:
            started, cpu = time.perf_counter(), time.process_time() + children_cpu()
            run = asyncio.run(sync_connection(hub, "bench"))
            seconds, cpu = time.perf_counter() - started, time.process_time() + children_cpu() - cpu
        finally:
            asyncio.run(hub.close())
    if run.status != "succeeded":
        raise SystemExit(f"sync failed: {run.errors}")
    return run.created, seconds, cpu


def measure(phase: str, source: str, sim: Simulator, concurrency: int, profile: Path | None = None) -> dict[str, float]:
    """Run one phase in a fresh process; its own time, CPU time and peak RSS come back as JSON,
    with the simulator's CPU time while it ran. With profile, the process runs under py-spy,
    which writes a speedscope file there."""
    command = [sys.executable, __file__, "--phase", phase, "--source", source, "--url", sim.url]
    command += ["--concurrency", str(concurrency)]
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
    before = sim.cpu_seconds()
    output = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    figures = json.loads([line for line in output.splitlines() if line.startswith("{")][-1])
    return figures | {"simulator_cpu_seconds": sim.cpu_seconds() - before}


def run_phase(phase: str, source: str, url: str, concurrency: int) -> None:
    if phase == "raw":
        started, cpu = time.perf_counter(), time.process_time()
        records = raw(source, url, concurrency)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak_mb = peak_rss_mb()
    else:
        from opsync.service import malloc

        malloc.fewer_arenas()  # as the opsync command does
        with MemoryWatch() as memory:
            records, seconds, cpu = sync(source, url, concurrency)
        peak_mb = memory.peak_mb
    print(json.dumps({"records": records, "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak_mb}))


def rate(figures: dict[str, float]) -> float:
    return figures["records"] / figures["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["jira", "github"], default="jira")
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="every phase measured this many times")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the simulator answers every API request this late"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight for the second plain client")
    parser.add_argument("--profile", type=Path, help="record the first sync phase with py-spy into this file")
    parser.add_argument("--phase", choices=["raw", "sync"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 9 or not 1 <= args.records <= 200_000:
        parser.error("keep the run bounded: 1..9 rounds, 1..200000 records")
    if not 0 <= args.latency_ms <= 5000 or not 1 <= args.concurrency <= 16:
        parser.error("keep the run bounded: 0..5000 ms of latency, 1..16 requests in flight")
    if args.phase:
        run_phase(args.phase, args.source, args.url, args.concurrency)
        return
    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgresql") else "SQLite"
    at_once = args.concurrency
    print(
        f"backfill of {args.records} {args.source} records into an empty store on {database}, {args.rounds} rounds,"
        f" {args.latency_ms:g} ms added to every API answer"
    )
    opsync_pace = (
        f"max_concurrency {at_once}" if pulls_at_once(args.source) else "one page at a time (no max_concurrency)"
    )
    print(
        f"{len(partitions(args.source))} partitions; the plain client 1 and {at_once} in flight; opsync {opsync_pace}"
    )
    rounds = []
    with simulator(args.source, args.records, args.latency_ms) as sim:
        for n in range(args.rounds):
            concurrent = measure("raw", args.source, sim, at_once)
            # raw and sync one after the other: the machine's speed drifts less between neighbours
            one_by_one = measure("raw", args.source, sim, 1)
            synced = measure("sync", args.source, sim, at_once, args.profile if n == 0 else None)
            ratio, ratio_at_once = rate(synced) / rate(one_by_one), rate(synced) / rate(concurrent)
            print(
                f"  round {n + 1}: ratio sync/raw {ratio:.2f}, with {at_once} in flight {ratio_at_once:.2f}", flush=True
            )
            rounds.append((ratio, ratio_at_once, one_by_one, concurrent, synced))
    ratio, ratio_at_once, one_by_one, concurrent, synced = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
    print(
        f"the median round:\n{'phase':<28}{'records':>9}{'seconds':>10}{'records/s':>11}{'peak MB':>13}"
        f"{'CPU ms/rec':>12}{'simulator CPU ms/rec':>22}"
    )
    phases = (
        ("raw fetch + parse (httpx)", one_by_one),
        (f"raw, {at_once} requests in flight", concurrent),
        ("opsync sync", synced),
    )
    for name, figures in phases:
        per_record = 1000 / figures["records"]
        print(
            f"{name:<28}{figures['records']:>9}{figures['seconds']:>10.2f}{rate(figures):>11.0f}"
            f"{figures['peak_rss_mb']:>13.0f}{figures['cpu_seconds'] * per_record:>12.3f}"
            f"{figures['simulator_cpu_seconds'] * per_record:>22.3f}"
        )
    peak = max(r[4]["peak_rss_mb"] for r in rounds)
    print(f"peak memory of sync over all rounds (its RSS and what its mapper process holds alone): {peak:.0f} MB")
    print(f"ratio sync/raw = {ratio:.2f}")
    print(f"ratio sync/raw with {at_once} in flight = {ratio_at_once:.2f}")


if __name__ == "__main__":
    main()

"""Webhook intake and apply throughput: N signed GitHub `issues` deliveries posted to
`opsync serve` by C concurrent clients, against a ceiling measured in the same run (a bare
FastAPI endpoint that reads the body and answers 202, driven with the same client and bodies).

    python bench/webhooks.py --deliveries 5000 --concurrency 32
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/webhooks.py

Each server runs in a process of its own on 127.0.0.1, and the client speaks HTTP/1.1 on
plain sockets. opsync serves from a fresh database (a SQLite file, or a fresh schema of
DATABASE_URL's PostgreSQL, dropped after); its one GitHub connection is recorded as pulled
just now, so no scheduled pull runs during the measurement. Each round measures the bare
endpoint, then opsync in each setup (--setups):

default:   `opsync serve` as started with no option: its worker process applies the
           deliveries while they are taken in (the bench waits for that process to run first).
separate:  `opsync serve --no-workers` takes the deliveries in (intake alone); then
           `opsync worker` starts and applies them (apply alone, timed from the first
           deliveries seen applied, so the worker's start-up is not in it).
embedded:  `opsync serve --embedded-worker`, applying in the API's own process.

intake: every answer must be 202, and each is durable (committed before it is sent). The
summary gives, per setup, the median round's ratio of the bare endpoint's time to intake's.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import yaml
from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from backfill import empty_database  # noqa: E402  (one way to make a fresh database)

FIXTURE = ROOT.parent / "shared" / "fixtures" / "github" / "webhooks" / "issues" / "opened.payload.json"
SECRET = "bench-webhook-secret"
CONNECTION = "gh"
READY_SECONDS = 60
REQUEST_TIMEOUT = 30.0
APPLY_TIMEOUT = 600.0


# -- the deliveries ------------------------------------------------------------------------


def template() -> dict[str, Any]:
    """The published `issues opened` example if it is here, else one of the same shape."""
    if FIXTURE.is_file():
        return json.loads(FIXTURE.read_text())
    user = {"login": "adal", "id": 1000, "type": "User", "site_admin": False}
    return {
        "action": "opened",
        "issue": {
            "url": "https://api.github.com/repos/acme/payments/issues/1",
            "id": 1,
            "number": 1,
            "html_url": "https://github.com/acme/payments/issues/1",
            "repository_url": "https://api.github.com/repos/acme/payments",
            "title": "An issue",
            "user": user,
            "labels": [{"id": 1, "name": "bug", "color": "d73a4a", "default": True}],
            "state": "open",
            "locked": False,
            "assignee": user,
            "assignees": [user],
            "milestone": None,
            "comments": 0,
            "created_at": "2024-03-01T10:00:00Z",
            "updated_at": "2024-03-01T10:00:00Z",
            "closed_at": None,
            "author_association": "OWNER",
            "body": "Steps to reproduce: " + "x " * 200,
        },
        "repository": {
            "id": 42,
            "name": "payments",
            "full_name": "acme/payments",
            "private": False,
            "owner": user,
            "html_url": "https://github.com/acme/payments",
        },
        "sender": user,
    }


def deliveries(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """count signed deliveries, each of a distinct issue and delivery id."""
    base = template()
    repo = base["issue"]["repository_url"].split("/repos/", 1)[1]
    result = []
    for n in range(count):
        payload = copy.deepcopy(base)
        issue = payload["issue"]
        issue["id"], issue["number"] = 7_000_000_000 + n, n + 1
        issue["title"] = f"Bench issue {n}"
        issue["html_url"] = f"https://github.com/{repo}/issues/{n + 1}"
        issue["url"] = f"https://api.github.com/repos/{repo}/issues/{n + 1}"
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        result.append(
            (
                body,
                {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": f"bench-{n:08d}",
                    "X-Hub-Signature-256": signature,
                },
            )
        )
    return result


# -- the servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    with httpx.Client(timeout=1) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the server at {url} exited with {process.returncode}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {READY_SECONDS} s")


@contextmanager
def serving(command: list[str], ready_url: str, env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, env=env, cwd=cwd)
    try:
        wait_ready(process, ready_url)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def bare_app() -> FastAPI:
    """The ceiling: read the body, answer 202, nothing else."""
    app = FastAPI()

    @app.post("/api/v1/webhooks/{connection_id}", status_code=202)
    async def receive(connection_id: str, request: Request) -> Response:
        await request.body()
        return Response(status_code=202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning")


def prepare_database(database_url: str) -> None:
    """Schema, and the connection recorded as pulled just now (a finished full pull: the
    schedules read the runs): no pull runs during the bench."""
    from sqlmodel import Session

    from opsync.service.clock import now
    from opsync.service.db import create_db_engine, upgrade
    from opsync.service.models import Connection, RunMode, RunStatus, SyncRun

    upgrade(database_url)
    engine = create_db_engine(database_url)
    with Session(engine) as session:
        at = now()
        session.add(Connection(id=CONNECTION, kind="github", status="ok", last_sync_at=at))
        session.add(
            SyncRun(
                connection_id=CONNECTION, mode=RunMode.FULL, status=RunStatus.SUCCEEDED, started_at=at, finished_at=at
            )
        )
        session.commit()
    engine.dispose()


def write_config(directory: Path) -> Path:
    config = directory / "connections.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "connections": [
                    {
                        "id": CONNECTION,
                        "kind": "github",
                        "base_url": "http://127.0.0.1:9",
                        "token": "${BENCH_GH_TOKEN}",
                        "webhook_secret": "${BENCH_GH_SECRET}",
                        "repos": ["acme/payments"],
                        "pull_every_minutes": 100000,
                    }
                ]
            }
        )
    )
    return config


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU time (user + system), where /proc tells it: on a shared machine the
    server's CPU per request is steadier than its wall-clock rate."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the client ----------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    requests: int
    seconds: float
    latencies: list[float]
    cpu: float | None = None  # the server's CPU seconds in this phase

    def row(self) -> str:
        rate = self.requests / self.seconds if self.seconds else 0.0
        if self.latencies:
            cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
            p50, p99 = f"{cuts[49] * 1000:.1f}", f"{cuts[98] * 1000:.1f}"
        else:
            p50 = p99 = "-"
        cpu = f"{self.cpu / self.requests * 1000:.2f}" if self.cpu is not None else "-"
        return f"{self.name:<48}{self.requests:>9}{self.seconds:>9.2f}{rate:>9.0f}{p50:>9}{p99:>9}{cpu:>12}"


def request_bytes(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection; (status, body)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(head[9:12]), (await reader.readexactly(length) if length else b"")


async def drive(port: int, bodies: list[tuple[bytes, dict[str, str]]], concurrency: int) -> tuple[float, list[float]]:
    """Post every body from `concurrency` kept-alive connections; returns (seconds, latencies);
    every answer must be 202. The client speaks HTTP/1.1 on plain sockets: a full HTTP client
    library costs more CPU per request than the bare endpoint, and would be the bottleneck."""
    host = f"127.0.0.1:{port}"
    requests = [request_bytes(host, f"/api/v1/webhooks/{CONNECTION}", body, headers) for body, headers in bodies]
    latencies: list[float] = []
    failures: list[str] = []
    pending = iter(requests)
    # open the connections first, so connection set-up is not in the figures
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for request in pending:
            started = time.perf_counter()
            try:
                status, body = await asyncio.wait_for(exchange(reader, writer, request), REQUEST_TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                failures.append(f"{type(error).__name__}: {error}")
                return
            latencies.append(time.perf_counter() - started)
            if status != 202:
                failures.append(f"{status}: {body[:200]!r}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(reader, writer) for reader, writer in connections))
    seconds = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    if failures:
        raise SystemExit(f"{len(failures)} of {len(bodies)} deliveries were not answered 202; first: {failures[0]}")
    return seconds, latencies


def wait_applied(database_url: str, expected: int, pid: int | None = None) -> tuple[float, int, float | None]:
    """Until no delivery is pending and every issue is a work item; returns when the first
    deliveries were seen applied (perf_counter), how many were by then, and the CPU time of
    process pid then."""
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    deadline = time.monotonic() + APPLY_TIMEOUT
    first: tuple[float, int, float | None] | None = None
    try:
        while True:
            with engine.connect() as connection:
                done = connection.execute(
                    sa.text("SELECT count(*) FROM inbox_event WHERE status <> 'pending'")
                ).scalar_one()
                items = connection.execute(sa.text("SELECT count(*) FROM work_item")).scalar_one()
            if done and first is None:
                first = (time.perf_counter(), done, cpu_seconds(pid) if pid else None)
            if done == expected and items >= expected:
                return first
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"not applied after {APPLY_TIMEOUT:.0f} s: {done} of {expected} done, {items} work items"
                )
            time.sleep(0.02)
    finally:
        engine.dispose()


def check_durable(database_url: str, expected: int) -> None:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        rows = dict(connection.execute(sa.text("SELECT status, count(*) FROM inbox_event GROUP BY status")).all())
    engine.dispose()
    if rows != {"done": expected}:
        raise SystemExit(f"expected {expected} deliveries done, the inbox holds {rows}")


# -- the run -------------------------------------------------------------------------------


@contextmanager
def spying(pid: int, profile: Path | None) -> Iterator[None]:
    """Record a process with py-spy into profile (speedscope format), if asked."""
    if profile is None:
        yield
        return
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--output",
            str(profile),
            "--format",
            "speedscope",
            "--rate",
            "200",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)
    try:
        yield
    finally:
        spy.send_signal(2)
        spy.wait(timeout=60)


@dataclass(frozen=True)
class Setup:
    label: str
    options: list[str]


SETUPS = {
    "default": Setup("`opsync serve` (worker process)", []),
    "separate": Setup("`serve --no-workers`", ["--no-workers"]),
    "embedded": Setup("`serve --embedded-worker`", ["--embedded-worker"]),
}


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def family_cpu(pid: int) -> float | None:
    """CPU seconds of a process and its children (the default setup's worker process)."""
    own = cpu_seconds(pid)
    return None if own is None else own + sum(cpu_seconds(child) or 0.0 for child in children(pid))


def wait_worker_process(server: subprocess.Popen) -> None:
    """Until the worker process `opsync serve` started answers its metrics port: it opens the
    hub before it serves them, so by then it is applying."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        for child in children(server.pid):
            arguments = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            if b"--metrics-port" in arguments:
                port = int(arguments[arguments.index(b"--metrics-port") + 1])
                try:
                    httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
                    return
                except httpx.TransportError:
                    pass
        time.sleep(0.1)
    raise SystemExit(f"the worker process of `opsync serve` did not start within {READY_SECONDS} s")


def opsync_phases(
    bodies: list[tuple[bytes, dict[str, str]]], concurrency: int, setup: str, profile: Path | None
) -> list[Phase]:
    """Post every delivery to `opsync serve` in the setup on a fresh database and wait until
    all are applied: as they arrive (default, embedded), or (separate) by `opsync worker`
    started after the last 202, so that intake and apply are each measured alone."""
    count = len(bodies)
    label = SETUPS[setup].label
    with tempfile.TemporaryDirectory() as directory, empty_database() as database_url:
        prepare_database(database_url)
        config = str(write_config(Path(directory)))
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "OPSYNC_DATABASE_URL": database_url,
            "BENCH_GH_TOKEN": "t",
            "BENCH_GH_SECRET": SECRET,
        }
        command = [sys.executable, "-m", "opsync.cli", "serve", "--config", config, "--port", str(port)]
        with serving(
            [*command, *SETUPS[setup].options], f"http://127.0.0.1:{port}/readyz", env, Path(directory)
        ) as server:
            if setup == "default":
                wait_worker_process(server)
            with spying(server.pid, profile and profile.with_suffix(f".{setup}.json")):
                cpu = cpu_seconds(server.pid)
                started_cpu = family_cpu(server.pid)
                started = time.perf_counter()
                seconds, latencies = asyncio.run(drive(port, bodies, concurrency))
                intake_done = time.perf_counter()
                intake_cpu = cpu_seconds(server.pid)
                phases = [
                    Phase(
                        f"opsync intake, {label}",
                        count,
                        seconds,
                        latencies,
                        intake_cpu - cpu if cpu is not None and intake_cpu is not None else None,
                    )
                ]
                if setup != "separate":
                    wait_applied(database_url, count)
                    applied = time.perf_counter()
                    applied_cpu = family_cpu(server.pid)
                    phases.append(
                        Phase(
                            "  applied (first send to last)",
                            count,
                            applied - started,
                            [],
                            applied_cpu - started_cpu if started_cpu is not None and applied_cpu else None,
                        )
                    )
                    phases.append(Phase("  of which after the last 202", count, applied - intake_done, []))
            if setup == "separate":
                worker = subprocess.Popen(
                    [sys.executable, "-m", "opsync.cli", "worker", "--config", config], env=env, cwd=directory
                )
                try:
                    with spying(worker.pid, profile and profile.with_suffix(".apply.json")):
                        first, done, cpu = wait_applied(database_url, count, worker.pid)
                        applied = time.perf_counter()
                        applied_cpu = cpu_seconds(worker.pid)
                finally:
                    worker.terminate()
                    worker.wait(timeout=15)
                # timed from the first deliveries seen applied: the worker's start-up is not in it
                phases.append(
                    Phase(
                        "opsync apply alone (opsync worker)",
                        count - done,
                        applied - first,
                        [],
                        applied_cpu - cpu if cpu is not None and applied_cpu is not None else None,
                    )
                )
        check_durable(database_url, count)
    return phases


def bare_phase(bodies: list[tuple[bytes, dict[str, str]]], concurrency: int) -> Phase:
    port = free_port()
    with serving(
        [sys.executable, __file__, "--serve-bare", str(port)],
        f"http://127.0.0.1:{port}/healthz",
        dict(os.environ),
        ROOT,
    ) as server:
        cpu = cpu_seconds(server.pid)
        seconds, latencies = asyncio.run(drive(port, bodies, concurrency))
        cpu = cpu_seconds(server.pid) - cpu if cpu is not None else None
    return Phase("bare FastAPI 202 (ceiling)", len(bodies), seconds, latencies, cpu)


def p99(phase: Phase) -> float:
    return statistics.quantiles(phase.latencies, n=100, method="inclusive")[98] * 1000


def run(count: int, concurrency: int, rounds: int, setups: list[str], profile: Path | None) -> None:
    bodies = deliveries(count)
    size = sum(len(body) for body, _ in bodies) // count
    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgresql") else "SQLite"
    print(
        f"{count} signed GitHub issues deliveries ({size} bytes each), concurrency {concurrency}, on {database}, "
        f"{rounds} rounds"
    )
    # Each round measures the ceiling and opsync one after the other: on a shared machine
    # the speed drifts over a minute, and a ratio of neighbours drifts least.
    results: dict[str, list[tuple[float, Phase, list[Phase]]]] = {setup: [] for setup in setups}
    for n in range(rounds):
        bare = bare_phase(bodies, concurrency)
        for setup in setups:
            phases = opsync_phases(bodies, concurrency, setup, profile if n == 0 else None)
            results[setup].append((bare.seconds / phases[0].seconds, bare, phases))
        print(
            f"  round {n + 1}: ratio intake/bare "
            + ", ".join(f"{SETUPS[setup].label} {results[setup][-1][0]:.2f}" for setup in setups),
            flush=True,
        )

    print(
        f"each setup's median round:\n{'phase':<48}{'requests':>9}{'seconds':>9}{'req/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'CPU ms/req':>12}"
    )
    medians = {
        setup: sorted(rounds_, key=lambda result: result[0])[len(rounds_) // 2] for setup, rounds_ in results.items()
    }
    for setup in setups:
        _, bare, phases = medians[setup]
        for phase in [bare, *phases]:
            print(phase.row())
    for setup in setups:
        ratio, _, phases = medians[setup]
        every = ", ".join(f"{result[0]:.2f}" for result in results[setup])
        print(f"ratio intake/bare, {SETUPS[setup].label} = {ratio:.2f} (rounds {every}); p99 {p99(phases[0]):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="ceiling and opsync measured this many times")
    parser.add_argument(
        "--setups",
        default=",".join(SETUPS),
        help=f"which of {', '.join(SETUPS)} to measure, comma-separated (default: all)",
    )
    parser.add_argument("--profile", type=Path, help="record the opsync server with py-spy into this file")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    if not 1 <= args.concurrency <= 256 or not 1 <= args.deliveries <= 200_000 or not 1 <= args.rounds <= 9:
        parser.error("keep the load bounded: 1..256 concurrent clients, 1..200000 deliveries, 1..9 rounds")
    setups = args.setups.split(",")
    if unknown := [setup for setup in setups if setup not in SETUPS]:
        parser.error(f"no setup {', '.join(unknown)}; there are {', '.join(SETUPS)}")
    run(args.deliveries, args.concurrency, args.rounds, setups, args.profile)


if __name__ == "__main__":
    main()

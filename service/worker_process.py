"""The worker in a child process of the API's (what `opsync serve` runs by default): applying
webhooks and pulling run beside intake without sharing its GIL.

The API's process starts the child once its own start-up (migrations) is done, starts it
again with backoff when it dies, and stops it when it stops itself: SIGTERM, then SIGKILL
after STOP_SECONDS. The child's stdin is a pipe from the API's process: a byte on it says
deliveries were stored (the child wakes, and yields to intake while they keep coming,
service/worker.py); the pipe's end says the API's process is gone, however it went, and the
child stops too. The child inherits the environment (settings and secrets), the working
directory and stderr (one stream of logs); it serves its counters on a loopback port that
the API's /metrics adds to its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from opsync.service.worker import ARRIVING_SECONDS, Worker

log = logging.getLogger("opsync.worker")
STOP_SECONDS = 10.0  # a worker stops within this after SIGTERM (`opsync worker` exits then), else it is killed
FIRST_BACKOFF_SECONDS = 1.0
LONGEST_BACKOFF_SECONDS = 60.0
HEALTHY_SECONDS = 60.0  # a child that ran this long before it died is started again at once
SCRAPE_SECONDS = 2.0
PIPE_LIMIT = 4096  # bytes not yet read by the child: it knows deliveries are waiting
TELL_SECONDS = ARRIVING_SECONDS / 5
WORKER_NICENESS = 10  # the child runs at a lower CPU priority than intake, which a burst of deliveries waits on
HANDED_KEPT = 32  # the latest pulls handed to a child, handed again to the next one if it dies
PULL = "P"  # on the pipe: a line "P<run id> <lease holder>" hands the child a pull


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WorkerProcess:
    """The supervisor, in the API's process. command runs the worker (`opsync worker
    --supervised`); `--metrics-port PORT` is added to it at each start."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.metrics_port: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task | None = None
        self._told_at = -math.inf
        # the latest pulls handed to a child (run id: the lease's holder): a child that dies
        # before it reads one, or while it runs one, leaves it to the next child
        self._handed: dict[int, str] = {}

    @property
    def pid(self) -> int | None:
        """The running child's process id, None between two of them."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="worker-process")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            async with asyncio.timeout(STOP_SECONDS + 1):
                await process.wait()
        except TimeoutError:
            log.warning("the worker process %d did not stop within %g s: killed", process.pid, STOP_SECONDS)
            process.kill()
            await process.wait()

    def request_pull(self, run_id: int, holder: str) -> bool:
        """Hand the child a pull this process began (its run and the lease's holder): it runs
        there, not beside intake. False when there is no child to take it (starting or
        restarting): the caller runs it itself."""
        process = self._process
        pipe = process.stdin if process is not None and process.returncode is None else None
        if pipe is None or pipe.is_closing():
            return False
        pipe.write(f"{PULL}{run_id} {holder}\n".encode())
        self._handed[run_id] = holder
        for older in list(self._handed)[:-HANDED_KEPT]:
            del self._handed[older]
        return True

    def _hand_again(self, pipe: asyncio.StreamWriter) -> None:
        """Hand a new child the pulls handed lately: the child before may have died before it
        read them, or while it ran them. A child takes one only while its lease is still the
        one it was begun with and unexpired (sync.adopt_pull), so a pull that ended, or that
        another process took over, is not run again; one cut short resumes from its cursor."""
        for run_id, holder in self._handed.items():
            pipe.write(f"{PULL}{run_id} {holder}\n".encode())

    def deliveries_arrived(self) -> None:
        """Tell the child at once, but not more often than every TELL_SECONDS: during a burst
        it only needs to know that deliveries keep arriving, not each one."""
        at = time.monotonic()
        if at - self._told_at < TELL_SECONDS:
            return
        self._told_at = at
        process = self._process
        pipe = process.stdin if process is not None and process.returncode is None else None
        if pipe is not None and not pipe.is_closing() and pipe.transport.get_write_buffer_size() < PIPE_LIMIT:
            pipe.write(b".")

    async def _supervise(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while True:
            started = time.monotonic()
            self.metrics_port = _free_port()
            command = [*self.command, "--metrics-port", str(self.metrics_port)]
            try:
                # a process group of its own: a Ctrl-C at the terminal reaches this process, which
                # stops the child in turn, rather than both at once
                self._process = await asyncio.create_subprocess_exec(
                    *command, stdin=asyncio.subprocess.PIPE, process_group=0
                )
            except OSError as error:
                log.error("could not start the worker process (%s): %s", " ".join(command), error)
                exit_status = "could not start"
            else:
                log.info("worker process %d started", self._process.pid)
                _lower_priority(self._process.pid)
                if self._process.stdin is not None:
                    self._hand_again(self._process.stdin)
                exit_status = f"exited with {await self._process.wait()}"
            if time.monotonic() - started >= HEALTHY_SECONDS:
                backoff = FIRST_BACKOFF_SECONDS
            log.warning("the worker process %s; starting another in %g s", exit_status, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, LONGEST_BACKOFF_SECONDS)

    def scrape(self) -> str:
        """The child's /metrics text; empty while it is not answering (starting, or restarting)."""
        if self.pid is None or self.metrics_port is None:
            return ""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=SCRAPE_SECONDS
            ) as answer:
                return answer.read().decode()
        except OSError:  # refused, timed out, or an HTTP error status
            return ""


# -- in the child ------------------------------------------------------------------------


async def follow_supervisor(worker: Worker) -> None:
    """Return when the pipe from the API's process ends (it stopped or died); until then a "."
    on stdin tells the worker that deliveries were stored, and a line "P<run id> <holder>"
    hands it a pull."""
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    class Pipe(asyncio.Protocol):
        def __init__(self) -> None:
            self.line = b""

        def data_received(self, data: bytes) -> None:
            if b"." in data:
                worker.deliveries_arrived()
                data = data.replace(b".", b"")
            *lines, self.line = (self.line + data).split(b"\n")
            for line in lines:
                run_id, _, holder = line.decode().removeprefix(PULL).partition(" ")
                if line.startswith(PULL.encode()) and run_id.isdigit() and holder:
                    worker.pull_requested(int(run_id), holder)
                else:
                    log.error("the worker process was told %r, which it does not understand", line[:80])

        def connection_lost(self, exc: Exception | None) -> None:
            if not gone.done():
                gone.set_result(None)

    transport, _ = await loop.connect_read_pipe(Pipe, sys.stdin)
    try:
        await gone
    finally:
        transport.close()


# -- one /metrics for both processes -----------------------------------------------------


def merged_exposition(own: bytes, child: str) -> bytes:
    """The API's exposition with the child's counters added in: Prometheus scrapes one target
    for the default deployment. Counters and histograms add up; gauges of the same series keep
    the larger value; the child's process_* and python_* families (its runtime, not the hub's)
    are left out."""
    if not child:
        return own
    families = {family.name: family for family in text_string_to_metric_families(own.decode())}
    for family in text_string_to_metric_families(child):
        if family.name.startswith(("process_", "python_")):
            continue
        known = families.setdefault(family.name, family)
        if known is not family:
            known.samples = list(_added(known, family))
    return generate_latest(_Families(list(families.values())))


def _added(known: Metric, other: Metric) -> Iterator[Sample]:
    samples = {(s.name, tuple(sorted(s.labels.items()))): s for s in known.samples}
    for sample in other.samples:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        before = samples.get(key)
        if before is None:
            samples[key] = sample
        elif sample.name.endswith("_created"):  # when the series began: the earlier one
            samples[key] = before._replace(value=min(before.value, sample.value))
        elif known.type == "gauge":
            samples[key] = before._replace(value=max(before.value, sample.value))
        else:
            samples[key] = before._replace(value=before.value + sample.value)
    return iter(samples.values())


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _lower_priority(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS, 19))
    except OSError as error:
        log.warning("could not lower the worker process's CPU priority: %s", error)

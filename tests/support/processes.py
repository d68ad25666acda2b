"""opsync as deployed: `opsync serve` (with the worker process it starts) and `opsync worker`
as subprocesses on one database, configured by a connections file, stopped (or killed) by the
test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

TOKEN = "process-admin-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(directory: Path, connections: list[dict[str, Any]]) -> Path:
    """The connections file; secrets as ${VAR} references, as a real one has them."""
    file = directory / "connections.yaml"
    file.write_text(yaml.safe_dump({"connections": connections}, sort_keys=False))
    return file


class Process:
    """One opsync command running in the background, its output kept in a file."""

    def __init__(self, args: list[str], directory: Path, database_url: str, env: dict[str, str]) -> None:
        self.log = directory / f"{args[0]}-{time.monotonic_ns()}.log"
        environment = {
            **os.environ,
            **env,
            "DATABASE_URL": database_url,
            "OPSYNC_BOOTSTRAP_TOKEN": TOKEN,
            "OPSYNC_LOG_LEVEL": "WARNING",
        }
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "opsync.cli", *args],
                env=environment,
                cwd=directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self, tail: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def kill(self) -> None:
        """SIGKILL to the process and those it started (`opsync serve`'s worker process): no
        cleanup, as when a machine dies."""
        if self.popen.poll() is None:
            started = children(self.popen.pid)
            self.popen.send_signal(signal.SIGKILL)
            for pid in started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.popen.wait(timeout=10)

    def worker_process(self, timeout: float = 30) -> int:
        """The pid of the worker process `opsync serve` started, once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if started := children(self.popen.pid):
                return started[0]
            time.sleep(0.1)
        raise AssertionError(f"no worker process under {self.popen.pid} after {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def serve(directory: Path, database_url: str, config: Path, port: int, env: dict[str, str], *extra: str) -> Process:
    """`opsync serve`, once it answers /readyz."""
    process = Process(["serve", "--config", str(config), "--port", str(port), *extra], directory, database_url, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise AssertionError(f"opsync serve exited with {process.popen.returncode}:\n{process.output()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"opsync serve did not become ready in 30 s:\n{process.output()}")


def worker(directory: Path, database_url: str, config: Path, env: dict[str, str]) -> Process:
    return Process(["worker", "--config", str(config)], directory, database_url, env)


def children(pid: int) -> list[int]:
    """The processes pid started that still run (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread or the process ended meanwhile
            pass
    return found


def alive(pid: int) -> bool:
    """Whether pid runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def client(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

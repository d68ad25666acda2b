"""opsync as deployed: `opsync serve` and `opsync worker` as subprocesses on one database,
configured by a connections file, stopped (or killed) by the test."""

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
        """SIGKILL: no cleanup, as when a machine dies."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

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


def client(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

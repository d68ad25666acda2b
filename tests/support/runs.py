"""Pulls through a hub's API: start one, wait for it, wait for a hub to be idle."""

from __future__ import annotations

import time
from typing import Any

import httpx


def runs(client: httpx.Client, connection_id: str) -> list[dict[str, Any]]:
    """The connection's sync runs, newest first."""
    answer = client.get("/api/v1/sync-runs", params={"connection_id": connection_id, "limit": 500})
    answer.raise_for_status()
    return answer.json()


def wait_until_idle(client: httpx.Client, connection_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Until the connection has a run and none is running (a new hub backfills at start);
    the newest run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(client, connection_id)
        if found and all(run["status"] != "running" for run in found):
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{connection_id} still pulling after {timeout} s: {runs(client, connection_id)[:3]}")


def pull(client: httpx.Client, connection_id: str, *, full: bool = False, timeout: float = 90.0) -> dict[str, Any]:
    """Start a pull through the API and wait for it to finish; the finished run. While another
    pull holds the connection (or a dead process's lease has not expired yet) it is retried,
    so the run returned began after this call."""
    deadline = time.monotonic() + timeout
    while True:
        before = max((run["id"] for run in runs(client, connection_id)), default=0)
        answer = client.post(f"/api/v1/connections/{connection_id}/sync", params={"full": str(full).lower()})
        if answer.status_code == 202 and answer.json().get("status") == "started":
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"could not start a pull of {connection_id}: {answer.status_code} {answer.text}")
        time.sleep(0.2)
    run_id = answer.json().get("run_id")
    mode = "full" if full else "incremental"
    while time.monotonic() < deadline:
        mine = [
            run
            for run in runs(client, connection_id)
            if (run["id"] == run_id if run_id is not None else run["id"] > before and run["mode"] == mode)
        ]
        if mine and mine[-1]["status"] != "running":
            return mine[-1]
        time.sleep(0.1)
    raise AssertionError(f"the {mode} pull of {connection_id} did not finish in {timeout} s")

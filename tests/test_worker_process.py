"""`opsync serve` with no option runs its worker in a process of its own: it applies what the
API takes in, is started again when it dies, and does not outlive the API's process."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from hub_harness import github_delivery, github_issue
from support import processes
from support.processes import alive

SECRET = "worker-process-secret"
ENV = {"WP_GH_TOKEN": "t", "WP_GH_SECRET": SECRET}


def _config(directory: Path) -> Path:
    return processes.write_config(
        directory,
        [
            {
                "id": "gh",
                "kind": "github",
                "base_url": "http://127.0.0.1:9",  # nothing listens: the start-up pull fails, webhooks flow
                "token": "${WP_GH_TOKEN}",
                "webhook_secret": "${WP_GH_SECRET}",
                "repos": ["acme/payments"],
                "pull_every_minutes": 600,
            }
        ],
    )


def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture
def serve(tmp_path, database_url) -> Iterator[tuple[processes.Process, int]]:
    port = processes.free_port()
    process = processes.serve(tmp_path, database_url, _config(tmp_path), port, ENV)
    try:
        yield process, port
    finally:
        process.kill()


def _deliver(client: httpx.Client, n: int) -> None:
    body, headers = github_delivery("issues", {"action": "opened", "issue": github_issue(n)}, SECRET, f"wp-{n}")
    assert client.post("/api/v1/webhooks/gh", content=body, headers=headers).status_code == 202


def _deliver_and_wait_applied(port: int, n: int) -> None:
    with processes.client(port) as client:
        _deliver(client, n)

        def applied() -> bool:
            titles = [item["title"] for item in client.get("/api/v1/work-items").json()["items"]]
            return f"Issue {n}" in titles

        assert _until(applied, 30), "the delivery was not applied"


def test_serve_with_no_option_applies_webhooks_in_a_worker_process_of_its_own(serve):
    process, port = serve
    worker = process.worker_process()
    _deliver_and_wait_applied(port, 1)
    assert processes.children(process.popen.pid) == [worker]
    # it yields the CPU to intake, which a burst of deliveries waits on
    assert os.getpriority(os.PRIO_PROCESS, worker) > os.getpriority(os.PRIO_PROCESS, process.popen.pid)


def test_serves_metrics_count_the_deliveries_its_worker_process_applied(serve):
    process, port = serve
    process.worker_process()
    _deliver_and_wait_applied(port, 1)
    applied = 'opsync_webhook_deliveries_processed_total{connection="gh",outcome="applied"} 1.0'
    with processes.client(port) as client:
        assert _until(lambda: applied in client.get("/metrics").text.splitlines(), 10), client.get("/metrics").text


def test_a_killed_worker_process_is_started_again_and_applies_what_arrives(serve):
    process, port = serve
    first = process.worker_process()
    os.kill(first, signal.SIGKILL)
    assert _until(lambda: processes.children(process.popen.pid) not in ([], [first]), 30), process.output()
    _deliver_and_wait_applied(port, 2)
    assert process.popen.poll() is None


def test_the_worker_process_stops_when_serve_is_stopped(serve):
    process, _ = serve
    worker = process.worker_process()
    process.popen.terminate()  # serve stops its worker process before it exits
    process.popen.wait(timeout=30)
    assert not alive(worker), f"worker process {worker} still runs after serve stopped"


def test_the_worker_process_does_not_outlive_serve_killed_amid_deliveries(serve):
    process, port = serve
    worker = process.worker_process()
    with processes.client(port) as client:
        for n in range(30):
            _deliver(client, n)
    process.popen.send_signal(signal.SIGKILL)  # serve alone: nothing stops the worker but its pipe's end
    process.popen.wait(timeout=10)
    assert _until(lambda: not alive(worker), 30), f"worker process {worker} still runs after serve was killed"


def _own_metrics(worker: int) -> str:
    """The worker process's own /metrics (serve's adds its own counters to them)."""
    command = Path(f"/proc/{worker}/cmdline").read_text().split("\0")
    port = command[command.index("--metrics-port") + 1]
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def _runs_after_start_up(client: httpx.Client) -> Callable[[], list[dict]]:
    """The connection's runs, read anew at each call, once the start-up pull (the tool is
    unreachable on purpose) has ended."""

    def runs() -> list[dict]:
        return client.get("/api/v1/sync-runs", params={"connection_id": "gh"}).json()

    assert _until(lambda: bool(runs()) and all(run["status"] != "running" for run in runs()), 30), runs()
    return runs


def test_a_pull_asked_for_through_the_api_runs_in_the_worker_process(serve):
    process, port = serve
    worker = process.worker_process()
    with processes.client(port) as client:
        runs = _runs_after_start_up(client)
        answer = client.post("/api/v1/connections/gh/sync", params={"full": "true"})
        assert answer.status_code == 202, answer.text
        run_id = answer.json()["run_id"]
        assert _until(lambda: any(r["id"] == run_id and r["status"] == "failed" for r in runs()), 60), (
            runs(),
            process.output(),
        )
    # counted by the worker process, which ran it; serve's own process ran no pull
    counted = [line for line in _own_metrics(worker).splitlines() if line.startswith("opsync_sync_runs_total")]
    assert 'opsync_sync_runs_total{connection="gh",mode="full",status="failed"} 1.0' in counted, counted


def test_a_pull_handed_to_a_worker_process_that_dies_unread_runs_in_the_next_one(serve):
    process, port = serve
    first = process.worker_process()
    with processes.client(port) as client:
        runs = _runs_after_start_up(client)
        os.kill(first, signal.SIGSTOP)  # it never reads the pull handed to it
        try:
            answer = client.post("/api/v1/connections/gh/sync", params={"full": "true"})
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["run_id"]
        finally:
            os.kill(first, signal.SIGKILL)
        # the next worker process runs it (it fails: the tool is unreachable on purpose), well
        # before the lease would have expired and the run been marked interrupted
        assert _until(lambda: any(r["id"] == run_id and r["status"] == "failed" for r in runs()), 60), (
            runs(),
            process.output(),
        )
    second = process.worker_process()
    assert second != first
    counted = [line for line in _own_metrics(second).splitlines() if line.startswith("opsync_sync_runs_total")]
    assert 'opsync_sync_runs_total{connection="gh",mode="full",status="failed"} 1.0' in counted, counted

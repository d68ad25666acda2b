"""Under faults (an API that rate-limits, fails and dawdles; webhooks lost, repeated, replayed
and late; deletions nobody announces; a service killed mid-work) the hub's view ends equal to
the tool's truth, record by record."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hub_harness import RunningHub, running_hub
from support import processes
from support.processes import free_port, write_config
from support.runs import pull, wait_until_idle
from support.truth import (
    ViewDiff,
    all_items,
    assert_view_equals_truth,
    github_view_diff,
    jira_view_diff,
)

from opsync.connectors.github.connector import GitHubSettings
from opsync.connectors.jira.connector import JiraSettings
from opsync.service.config import HubConfig
from opsync.service.inbox import LEASE
from opsync_simulators.faults import Fault
from opsync_simulators.github import GitHubSim
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

SECRET = "fault-secret"
REPOS = ["acme/payments", "acme/ledger", "acme/checkout", "acme/growth-web"]
API_FAULTS = [Fault(status=429, retry_after=1), Fault(status=502), Fault(status=503), Fault(delay_seconds=0.3)]


@dataclass
class Tool:
    """One simulated tool wired to a running hub."""

    name: str  # github, jira
    sim: Any
    hub: RunningHub
    connection_id: str

    def diff(self, **truth: Any) -> ViewDiff:
        if self.name == "github":
            return github_view_diff(self.hub.client, self.connection_id, self.sim.truth(**truth))
        return jira_view_diff(self.hub.client, self.connection_id, self.sim.truth())

    def delete_silently(self, count: int, rng: random.Random) -> list[str]:
        """Delete count live issues upstream, sending no webhook; their keys."""
        live = sorted(r.key for r in self.sim.truth().records.values() if r.record_type == "issue")
        victims = rng.sample(live, count)
        for key in victims:
            if self.name == "github":
                repo, _, number = key.partition("#")
                self.sim.delete_issue(repo, int(number), silent=True)
            else:
                self.sim.delete_issue(key, silent=True)
        return victims


def make_sim(name: str, records: int, seed: int) -> GitHubSim | JiraSim:
    if name == "github":
        return GitHubSim(items=records, seed=seed, token="t", webhook_secret=SECRET)
    return JiraSim(issues=records, seed=seed, webhook_secret=SECRET)


def connection(name: str, url: str, **extra: Any) -> GitHubSettings | JiraSettings:
    # no scheduled pull during a test: each pull is one the test asks for
    common = {"base_url": url, "webhook_secret": SECRET, "page_size": 25, "pull_every_minutes": 600, **extra}
    if name == "github":
        repos = {} if {"org", "repos"} & set(extra) else {"repos": REPOS}
        return GitHubSettings(id="gh", kind="github", token="t", **repos, **common)
    return JiraSettings(
        id="jira", kind="jira", email="ops@acme.example", token="t", projects=["PAY", "CHK", "GRO"], **common
    )


@contextmanager
def wired(name: str, sim: GitHubSim | JiraSim, database_url: str, **settings: Any) -> Iterator[Tool]:
    """The simulator served, a hub connected to it that has finished its first backfill, and
    the simulator's webhooks pointed at the hub."""
    with serving(sim.app) as url:
        if isinstance(sim, JiraSim):
            sim.site_url = url  # webhook bodies name the site the REST API is on
        config = connection(name, url, **settings)
        with running_hub(database_url, HubConfig(connections={config.id: config})) as hub:
            wait_until_idle(hub.client, config.id)
            sim.webhook_url = hub.webhook_url(config.id)
            yield Tool(name, sim, hub, config.id)


def wait_for_inbox(tool: Tool, timeout: float = 60.0) -> None:
    """Until the hub has applied every delivery it accepted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = tool.hub.client.get("/api/v1/inbox", params={"status": "pending", "limit": 1})
        answer.raise_for_status()
        if not answer.json():
            return
        time.sleep(0.1)
    raise AssertionError(f"deliveries still pending after {timeout} s")


def failed_deliveries(tool: Tool) -> list[dict[str, Any]]:
    answer = tool.hub.client.get("/api/v1/inbox", params={"status": "failed"})
    answer.raise_for_status()
    return answer.json()


def tombstoned(tool: Tool) -> set[str]:
    rows = all_items(tool.hub.client, "/api/v1/work-items", include_deleted="true", connection_id=tool.connection_id)
    return {row["key"] for row in rows if row["deleted_at"] is not None}


TOOLS = pytest.mark.parametrize("name", ["github", "jira"])


@TOOLS
def test_a_backfill_through_rate_limits_server_errors_and_slow_responses_equals_the_truth(name, database_url):
    sim = make_sim(name, records=200, seed=11)
    sim.faults.set_rate(0.2, API_FAULTS, seed=11)
    with wired(name, sim, database_url) as tool:
        [run] = tool.hub.client.get("/api/v1/sync-runs").json()
        assert run["status"] == "succeeded", run["errors"]
        assert_view_equals_truth(tool.diff())
    served = sim.faults.served()
    assert served["429"] and served["502"] + served["503"] and served["delay"], served


def test_a_reconcile_whose_listing_fails_half_way_tombstones_nothing_and_fails(database_url):
    sim = make_sim("github", records=200, seed=12)
    with wired("github", sim, database_url) as tool:
        deleted = tool.delete_silently(5, random.Random(12))
        # the id listing (sorted by creation) fails for good on its sixth page: the token was revoked
        sim.inject(status=401, count=1000, match="sort=created", after=5)
        run = pull(tool.hub.client, "gh", full=True)
        assert run["status"] == "failed" and run["deleted"] == 0 and run["errors"], run
        assert tombstoned(tool) == set()
        diff = tool.diff()
        assert sorted(line.split()[0] for line in diff.not_tombstoned) == sorted(deleted)
        assert not (diff.missing or diff.extra or diff.wrong or diff.duplicated), diff.report()
    assert sim.faults.served()["401"] >= 1


@TOOLS
def test_records_deleted_upstream_without_a_webhook_are_tombstoned_by_the_next_full_sync(name, database_url):
    sim = make_sim(name, records=150, seed=13)
    with wired(name, sim, database_url) as tool:
        deleted = tool.delete_silently(6, random.Random(13))
        assert set(deleted).isdisjoint(tombstoned(tool))  # nothing told the hub yet
        run = pull(tool.hub.client, tool.connection_id, full=True)
        assert (run["status"], run["deleted"]) == ("succeeded", 6), run
        assert tombstoned(tool) == set(deleted)
        assert_view_equals_truth(tool.diff())


@TOOLS
def test_webhooks_lost_repeated_replayed_and_reordered_are_made_good_by_the_next_pull(name, database_url):
    sim = make_sim(name, records=150, seed=14)
    with wired(name, sim, database_url) as tool:
        sim.set_webhook_faults(drop=0.3, duplicate=0.15, replay=0.15, reorder=0.2, seed=14)
        sim.mutate_random(60, random.Random(14))
        sim.flush_webhooks()
        wait_for_inbox(tool)
        faults = {d["fault"] if isinstance(d, dict) else d.fault for d in sim.deliveries}
        assert {"dropped", "duplicate", "replay", "reordered"} <= faults
        run = pull(tool.hub.client, tool.connection_id)
        assert run["status"] == "succeeded", run["errors"]
        assert_view_equals_truth(tool.diff())
        assert failed_deliveries(tool) == []


@pytest.mark.parametrize("how", ["hidden", "archived"])
def test_a_repository_that_vanishes_from_the_org_is_reported_not_emptied(how, database_url):
    sim = make_sim("github", records=200, seed=15)
    with wired("github", sim, database_url, org="acme") as tool:
        if how == "hidden":
            sim.hide_repo("acme/ledger")  # the token lost access
        else:
            sim.archive_repo("acme/ledger")  # the connector skips archived repositories
        run = pull(tool.hub.client, "gh", full=True)
        assert run["deleted"] == 0 and any("acme/ledger" in error for error in run["errors"]), run
        assert tombstoned(tool) == set()
        assert_view_equals_truth(tool.diff(include_hidden=True))


def test_an_issue_created_by_webhook_while_reconcile_lists_ids_survives_the_reconcile(database_url):
    sim = make_sim("github", records=120, seed=16)
    with wired("github", sim, database_url) as tool:
        # the id listing's last request (the last repository's pull requests) waits for the test
        sim.inject(pause=True, match=r"/repos/acme/growth-web/pulls\?.*sort=created")
        tool.hub.client.post("/api/v1/connections/gh/sync", params={"full": "true"}).raise_for_status()
        deadline = time.monotonic() + 60
        while not sim.faults.paused():
            assert time.monotonic() < deadline, "the reconcile never reached its last listing request"
            time.sleep(0.05)
        # a repository already listed gets a new issue; its webhook reaches the hub at once
        created = sim.create_issue("acme/payments", "Created while the ids were listed")
        wait_for_inbox(tool)
        keys = {row["key"] for row in all_items(tool.hub.client, "/api/v1/work-items", connection_id="gh")}
        assert f"acme/payments#{created['number']}" in keys
        sim.faults.resume()
        run = wait_until_idle(tool.hub.client, "gh")
        assert (run["mode"], run["status"]) == ("full", "succeeded"), run
        assert_view_equals_truth(tool.diff())


def test_a_pull_that_resumes_a_failed_backfill_shows_a_pull_request_changed_in_between(database_url):
    sim = GitHubSim(items=120, seed=17, token="t", webhook_secret=SECRET, repos=("acme/payments",))
    sim.inject(status=401, match=r"/pulls\?.*sort=updated", after=1)  # the backfill stops after one page of them
    with wired("github", sim, database_url, repos=["acme/payments"]) as tool:
        assert wait_until_idle(tool.hub.client, "gh")["status"] == "failed"
        oldest = min((i for i in sim.items_in("acme/payments") if i.is_pull), key=lambda i: i.updated_at)
        sim.set_webhook_faults(drop=1.0)  # only a pull can tell the hub
        sim.update_pull("acme/payments", oldest.number, title="Retitled before the next pull")
        run = pull(tool.hub.client, "gh")
        assert run["status"] == "succeeded", run
        assert_view_equals_truth(tool.diff())


# --- a service killed with SIGKILL, again and again --------------------------------------

KILLS = 3


@dataclass
class CrashOutcome:
    kills: list[str]  # where each kill landed
    acknowledged: dict[str, set[str]]  # connection -> delivery ids the hub answered 2xx
    inbox: dict[str, str]  # delivery id -> its status in the inbox, as the API lists it
    diffs: dict[str, ViewDiff]  # connection -> view against truth, after the final pull
    runs: list[dict[str, Any]]


def _acknowledged(jira: JiraSim, github: GitHubSim) -> dict[str, set[str]]:
    return {
        "jira": {d.identifier for d in list(jira.deliveries) if d.status_code and d.status_code < 300},
        "gh": {d["delivery"] for d in list(github.deliveries) if d["status"] and d["status"] < 300},
    }


def _mutate_until(stop: threading.Event, jira: JiraSim, github: GitHubSim, seed: int) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        jira.mutate_random(1, rng)
        github.mutate_random(1, rng)
        stop.wait(0.02)


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def crash_outcome(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> CrashOutcome:
    """Serve, sync and receive webhooks; SIGKILL the service at seeded points of its backfill
    and of its webhook processing, KILLS times; restart, let it settle, pull once more."""
    directory = tmp_path_factory.mktemp("crash")
    rng = random.Random(21)
    jira = JiraSim(issues=150, seed=21, webhook_secret=SECRET)
    github = GitHubSim(items=150, seed=21, token="t", webhook_secret=SECRET)
    for sim in (jira, github):  # slow enough that a kill lands mid-backfill
        sim.faults.set_rate(0.3, [Fault(delay_seconds=0.2), Fault(status=503)], seed=21)
    env = {"FAULTS_TOKEN": "t", "FAULTS_SECRET": SECRET}
    port = free_port()
    with serving(jira.app) as jira_url, serving(github.app) as github_url:
        jira.site_url = jira_url
        config = write_config(
            directory,
            [
                {
                    "id": "jira",
                    "kind": "jira",
                    "base_url": jira_url,
                    "email": "ops@acme.example",
                    "token": "${FAULTS_TOKEN}",
                    "webhook_secret": "${FAULTS_SECRET}",
                    "projects": ["PAY", "CHK", "GRO"],
                    "page_size": 10,
                    "pull_every_minutes": 600,
                },
                {
                    "id": "gh",
                    "kind": "github",
                    "base_url": github_url,
                    "token": "${FAULTS_TOKEN}",
                    "webhook_secret": "${FAULTS_SECRET}",
                    "repos": REPOS,
                    "page_size": 10,
                    "pull_every_minutes": 600,
                },
            ],
        )
        hub_url = f"http://127.0.0.1:{port}/api/v1/webhooks"
        jira.webhook_url, github.webhook_url = f"{hub_url}/jira", f"{hub_url}/gh"
        kills: list[str] = []
        for n in range(KILLS):
            process = processes.serve(directory, module_database_url, config, port, env)
            stop = threading.Event()
            mutator = threading.Thread(target=_mutate_until, args=(stop, jira, github, rng.randrange(10**6)))
            mutator.start()
            try:
                requests = sum(github.requests.values()) + jira.api_requests
                delivered = sum(map(len, _acknowledged(jira, github).values()))
                # the first kill lands mid-backfill; the pull lease it leaves behind holds later
                # pulls off until it expires, so the next ones land amid webhooks alone
                aim = "requests" if n == 0 else "deliveries"
                if aim == "requests":
                    more = rng.randint(3, 20)
                    target = requests + more
                    _wait_for(lambda t=target: sum(github.requests.values()) + jira.api_requests >= t, 10)
                else:
                    more = rng.randint(5, 40)
                    target = delivered + more
                    _wait_for(lambda t=target: sum(map(len, _acknowledged(jira, github).values())) >= t, 10)
                with processes.client(port) as client:
                    running = [
                        r["connection_id"] for r in client.get("/api/v1/sync-runs").json() if r["status"] == "running"
                    ]
                process.kill()
                kills.append(f"after {more} more {aim}, pulls running: {running or 'none'}")
            finally:
                stop.set()
                mutator.join(timeout=30)
                process.kill()
        process = processes.serve(directory, module_database_url, config, port, env)
        try:
            with processes.client(port) as client:
                # deliveries a killed worker had claimed come back when their lease ends; a pull
                # starts once the killed one's lease has expired
                assert _wait_for(
                    lambda: not client.get("/api/v1/inbox", params={"status": "pending"}).json(),
                    LEASE.total_seconds() + 45,
                ), "deliveries still pending"
                for connection_id in ("jira", "gh"):
                    run = pull(client, connection_id)
                    assert run["status"] == "succeeded", run
                inbox = {
                    row["delivery_id"]: row["status"]
                    for status in ("done", "ignored", "failed", "pending")
                    for row in client.get("/api/v1/inbox", params={"status": status, "limit": 1000}).json()
                }
                return CrashOutcome(
                    kills,
                    _acknowledged(jira, github),
                    inbox,
                    {
                        "jira": jira_view_diff(client, "jira", jira.truth()),
                        "gh": github_view_diff(client, "gh", github.truth()),
                    },
                    client.get("/api/v1/sync-runs", params={"limit": 500}).json(),
                )
        finally:
            process.kill()


def test_a_service_killed_mid_backfill_and_mid_webhooks_loses_no_acknowledged_delivery(crash_outcome):
    outcome = crash_outcome
    for connection_id, acknowledged in outcome.acknowledged.items():
        assert acknowledged, f"no delivery to {connection_id} was acknowledged: the scenario tested nothing"
        lost = sorted(d for d in acknowledged if d not in outcome.inbox)
        unapplied = sorted(
            f"{d}: {outcome.inbox[d]}" for d in acknowledged if outcome.inbox.get(d) not in (None, "done", "ignored")
        )
        assert not lost and not unapplied, (outcome.kills, connection_id, lost[:10], unapplied[:10])
    assert any("pulls running: none" not in kill for kill in outcome.kills), outcome.kills


def test_a_service_killed_again_and_again_duplicates_no_record_and_ends_equal_to_the_truth(crash_outcome):
    for connection_id, diff in crash_outcome.diffs.items():
        assert not diff, f"{connection_id} after kills {crash_outcome.kills}:\n{diff.report()}"


def test_runs_a_killed_service_left_running_are_shown_interrupted_after_restart(crash_outcome):
    statuses = [(run["connection_id"], run["mode"], run["status"]) for run in crash_outcome.runs]
    assert not [s for s in statuses if s[2] == "running"], statuses
    assert any(s[2] == "interrupted" for s in statuses), statuses


# --- several processes on one database ----------------------------------------------------


def _overlapping(runs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Pairs of runs whose [started_at, finished_at] overlap."""
    spans = sorted((run["started_at"], run["finished_at"] or "9999", run["id"]) for run in runs)
    return [(a[2], b[2]) for n, a in enumerate(spans) for b in spans[n + 1 :] if b[0] < a[1]]


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgresql"),
    reason="several processes on one database are a PostgreSQL deployment",
)
def test_two_workers_and_a_serve_on_one_database_run_one_pull_at_a_time_per_connection(database_url, tmp_path):
    github = GitHubSim(items=150, seed=23, token="t", webhook_secret=SECRET)
    github.inject(pause=True)  # the first request of the first pull waits for the test
    env = {"FAULTS_TOKEN": "t", "FAULTS_SECRET": SECRET}
    port = free_port()
    started: list[processes.Process] = []
    with serving(github.app) as github_url:
        config = write_config(
            tmp_path,
            [
                {
                    "id": "gh",
                    "kind": "github",
                    "base_url": github_url,
                    "token": "${FAULTS_TOKEN}",
                    "webhook_secret": "${FAULTS_SECRET}",
                    "repos": REPOS,
                    "page_size": 10,
                    "pull_every_minutes": 600,
                    "max_concurrency": 1,  # one request at a time: a second one means a second pull
                }
            ],
        )
        try:
            started.append(processes.serve(tmp_path, database_url, config, port, env))
            started += [processes.worker(tmp_path, database_url, config, env) for _ in range(2)]
            github.webhook_url = f"http://127.0.0.1:{port}/api/v1/webhooks/gh"
            with processes.client(port) as client:
                assert _wait_for(lambda: github.faults.paused() == 1, 30), "no process started the backfill"
                busy = client.post("/api/v1/connections/gh/sync")
                assert busy.status_code == 409, busy.text
                # while the first pull waits, every process has booted and wants to backfill, and
                # webhooks flow (any process may apply them)
                github.mutate_random(30, random.Random(23))
                second = _wait_for(
                    lambda: (
                        github.list_requests() > 1
                        or sum(r["status"] == "running" for r in client.get("/api/v1/sync-runs").json()) > 1
                    ),
                    5,
                )
                github.faults.resume()
                wait_until_idle(client, "gh", timeout=60)
                runs = client.get("/api/v1/sync-runs", params={"connection_id": "gh"}).json()
                assert not second and not _overlapping(runs), runs
                assert [run["status"] for run in runs] == ["succeeded"], runs
                assert_view_equals_truth(github_view_diff(client, "gh", github.truth()))
        finally:
            for process in started:
                process.kill()

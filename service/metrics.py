"""The hub's Prometheus metrics, declared once: what code counts goes through the functions
here, and the inbox's state is read from the database when /metrics is scraped.

Counters live in the process that counts (each `opsync serve` and `opsync worker`):
Prometheus scrapes every process and sums; the inbox gauges are the database's, the same
from any process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import StrEnum

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from opsync.service.clock import now
from opsync.service.models import InboxEvent, table_of

CONTENT_TYPE = CONTENT_TYPE_LATEST


class DeliveryOutcome(StrEnum):
    """What applying a webhook delivery came to."""

    APPLIED = "applied"
    FAILED = "failed"  # parked with its error until a person replays it
    IGNORED = "ignored"  # verified, but nothing in it is synced


class RetryReason(StrEnum):
    RATE_LIMITED = "rate_limited"  # 429, or a spent budget with a reset time
    SERVER_ERROR = "server_error"  # 5xx
    NETWORK = "network"  # no answer: refused, dropped, timed out
    BAD_RESPONSE = "bad_response"  # an answer cut short or not JSON
    OTHER = "other"


DELIVERIES_RECEIVED = Counter(
    "opsync_webhook_deliveries_received",
    "Webhook deliveries verified and stored (202), duplicates included",
    ["connection"],
)
DELIVERIES_DUPLICATE = Counter(
    "opsync_webhook_deliveries_duplicate",
    "Webhook deliveries received again (same delivery id or same body): not stored twice",
    ["connection"],
)
DELIVERIES_REJECTED = Counter(
    "opsync_webhook_deliveries_rejected",
    "Webhook deliveries refused at intake, by reason: signature (401), "
    "bad_body (400), stale (400: signed before pruned deliveries), too_large (413)",
    ["connection", "reason"],
)
DELIVERIES_PROCESSED = Counter(
    "opsync_webhook_deliveries_processed",
    "Webhook deliveries the inbox worker finished, by outcome: applied, failed (parked), ignored",
    ["connection", "outcome"],
)

SYNC_RUNS = Counter(
    "opsync_sync_runs",
    "Sync runs finished, by mode (incremental, full) and status (succeeded, failed, interrupted)",
    ["connection", "mode", "status"],
)
SYNC_RUN_SECONDS = Histogram(
    "opsync_sync_run_duration_seconds",
    "How long sync runs took, by mode and status",
    ["connection", "mode", "status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
SYNC_LAST_SUCCESS = Gauge(
    "opsync_sync_last_success_timestamp_seconds",
    "When a sync run of this mode last succeeded (Unix time)",
    ["connection", "mode"],
)

UPSTREAM_REQUESTS = Counter(
    "opsync_upstream_requests",
    "HTTP requests to the tools' APIs, by HTTP status of the answer (error: no answer at all)",
    ["connection", "tool", "status"],
)
UPSTREAM_RETRIES = Counter(
    "opsync_upstream_retries",
    "Calls to a tool's API retried after a transient error, by reason",
    ["connection", "reason"],
)
RATE_LIMIT_WAIT = Counter(
    "opsync_upstream_rate_limit_wait_seconds",
    "Seconds requests waited for the tool's rate budget (a Retry-After, a spent budget's reset, "
    "requests spread as it runs low), summed over the requests waiting at once",
    ["connection"],
)

HTTP_REQUEST_SECONDS = Histogram(
    "opsync_http_request_duration_seconds",
    "The hub's API: time to answer, by route template, method and status",
    ["route", "method", "status"],
)


def delivery_received(connection_id: str, *, duplicate: bool) -> None:
    DELIVERIES_RECEIVED.labels(connection_id).inc()
    if duplicate:
        DELIVERIES_DUPLICATE.labels(connection_id).inc()


def delivery_rejected(connection_id: str, reason: str) -> None:
    """reason: signature, bad_body or too_large."""
    DELIVERIES_REJECTED.labels(connection_id, reason).inc()


def delivery_outcomes(connection_id: str, outcome: DeliveryOutcome | str, count: int = 1) -> None:
    """count deliveries of connection_id finished as outcome (applied, failed, ignored)."""
    if count:
        DELIVERIES_PROCESSED.labels(connection_id, DeliveryOutcome(outcome).value).inc(count)


def sync_run_finished(connection_id: str, mode: str, status: str, seconds: float) -> None:
    SYNC_RUNS.labels(connection_id, mode, status).inc()
    SYNC_RUN_SECONDS.labels(connection_id, mode, status).observe(seconds)
    if status == "succeeded":
        SYNC_LAST_SUCCESS.labels(connection_id, mode).set(now().timestamp())


def upstream_response(connection_id: str, tool: str, status: int | None) -> None:
    """One answer (status None: none, the connection failed) from a tool's API."""
    UPSTREAM_REQUESTS.labels(connection_id, tool, "error" if status is None else str(status)).inc()


def upstream_retry(connection_id: str, reason: RetryReason) -> None:
    UPSTREAM_RETRIES.labels(connection_id, reason.value).inc()


def rate_limit_wait(connection_id: str, seconds: float) -> None:
    if seconds > 0:
        RATE_LIMIT_WAIT.labels(connection_id).inc(seconds)


_http_series: dict[tuple[str, str, int], Histogram] = {}


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """One API request answered; route is the path template (/api/v1/{collection}/{record_id})."""
    key = (route, method, status)
    series = _http_series.get(key)
    if series is None:  # labels() takes a lock and builds a tuple: once per series, not per request
        series = _http_series[key] = HTTP_REQUEST_SECONDS.labels(route, method, str(status))
    series.observe(seconds)


# --- the scrape -------------------------------------------------------------------------


def exposition(engine: Engine, connection_ids: Iterable[str]) -> bytes:
    """The text Prometheus scrapes: this process's counters and the inbox as stored now."""
    connection_ids = list(connection_ids)
    for connection_id in connection_ids:  # a series that exists at 0 lets increase() see its first event
        for outcome in DeliveryOutcome:
            DELIVERIES_PROCESSED.labels(connection_id, outcome.value)
        DELIVERIES_RECEIVED.labels(connection_id)
        DELIVERIES_DUPLICATE.labels(connection_id)
    return generate_latest(_Scrape(engine, connection_ids))


class _Scrape:
    """The default registry (with the process and Python collectors) plus the inbox."""

    def __init__(self, engine: Engine, connection_ids: list[str]) -> None:
        self.engine, self.connection_ids = engine, connection_ids

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from inbox_metrics(self.engine, self.connection_ids)


def inbox_metrics(engine: Engine, connection_ids: Iterable[str]) -> list[Metric]:
    """Pending and failed deliveries per connection, and the age of the oldest pending one."""
    table = table_of(InboxEvent)
    query = (
        sa.select(table.c.connection_id, table.c.status, sa.func.count(), sa.func.min(table.c.received_at))
        .where(table.c.status.in_(("pending", "failed")))
        .group_by(table.c.connection_id, table.c.status)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    at = now()
    pending = {connection_id: (0, 0.0) for connection_id in connection_ids}
    failed = {connection_id: 0 for connection_id in connection_ids}
    for connection_id, status, count, oldest in rows:
        if status == "pending":
            pending[connection_id] = (count, max((at - oldest).total_seconds(), 0.0))
        else:
            failed[connection_id] = count
    depth = GaugeMetricFamily(
        "opsync_inbox_pending", "Webhook deliveries waiting to be applied (or retried)", labels=["connection"]
    )
    age = GaugeMetricFamily(
        "opsync_inbox_oldest_pending_age_seconds",
        "Age of the oldest pending delivery (0 when none is pending)",
        labels=["connection"],
    )
    parked = GaugeMetricFamily(
        "opsync_inbox_failed", "Deliveries parked as failed, waiting for a replay", labels=["connection"]
    )
    for connection_id, (count, seconds) in sorted(pending.items()):
        depth.add_metric([connection_id], count)
        age.add_metric([connection_id], seconds)
    for connection_id, count in sorted(failed.items()):
        parked.add_metric([connection_id], count)
    return [depth, age, parked]

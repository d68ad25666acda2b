"""GitHub objects as raw records: stable ids, versions from updated_at."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opsync.service.contract import RawRecord


def parse_time(value: str | None) -> datetime | None:
    """GitHub's `2024-03-01T10:15:30Z` as an aware UTC datetime."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_record(issue: dict[str, Any]) -> RawRecord:
    """An issue keyed by its id (numbers change when an issue moves repository)."""
    return RawRecord("issue", str(issue["id"]), issue, parse_time(issue.get("updated_at")))


def pull_record(pull: dict[str, Any]) -> RawRecord:
    """A pull request keyed by its pull id (not the id of its issue side)."""
    return RawRecord("pull_request", str(pull["id"]), pull, parse_time(pull.get("updated_at")))

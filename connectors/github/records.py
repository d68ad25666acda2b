"""GitHub objects as raw records: stable ids, versions from updated_at."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opsync.service.contract import RawRecord
from opsync.service.toolkit import tool_time


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_record(issue: dict[str, Any]) -> RawRecord:
    """An issue keyed by its id (numbers change when an issue moves repository)."""
    return RawRecord("issue", str(issue["id"]), issue, tool_time(issue.get("updated_at")))


def pull_record(pull: dict[str, Any]) -> RawRecord:
    """A pull request keyed by its pull id (not the id of its issue side)."""
    return RawRecord("pull_request", str(pull["id"]), pull, tool_time(pull.get("updated_at")))

"""What a simulator holds, as the tool would list it: the answer fault tests compare a hub's
view with, read through a public method instead of the simulator's internals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

RecordId = tuple[str, str]  # (record type, the tool's id): ("issue", "10042")


@dataclass(frozen=True)
class TruthRecord:
    record_type: str  # "issue", "pull_request"
    id: str  # the tool's stable id, as its API shows it
    key: str  # PAY-12, acme/payments#45
    container: str  # the Jira project or GitHub repository
    title: str  # Jira's summary, GitHub's title
    state: str  # Jira's status name; GitHub's open or closed, or merged for a pull request
    updated_at: datetime  # the tool's last change, timezone-aware

    def as_json(self) -> dict[str, Any]:
        return {
            "record_type": self.record_type,
            "id": self.id,
            "key": self.key,
            "container": self.container,
            "title": self.title,
            "state": self.state,
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Truth:
    """Every live record by (record type, id), and the ids of the records deleted upstream."""

    records: dict[RecordId, TruthRecord]
    deleted: frozenset[RecordId]

    def as_json(self) -> dict[str, Any]:
        return {
            "records": [r.as_json() for r in self.records.values()],
            "deleted": [{"record_type": t, "id": i} for t, i in sorted(self.deleted)],
        }

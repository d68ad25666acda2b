"""Compare what a hub's API shows with what a simulator holds, record by record.

One function per tool says which API list each record type lands in and which fields must
equal the tool's own; the comparison reads the API as a consumer would (every page,
tombstones included) and returns a ViewDiff whose report names each difference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from opsync_simulators.truth import Truth, TruthRecord


@dataclass
class ViewDiff:
    missing: list[str] = field(default_factory=list)  # alive upstream; absent or tombstoned in the view
    extra: list[str] = field(default_factory=list)  # live in the view; unknown upstream
    not_tombstoned: list[str] = field(default_factory=list)  # deleted upstream; live in the view
    wrong: list[str] = field(default_factory=list)  # a field differs
    duplicated: list[str] = field(default_factory=list)  # one tool record, several hub records

    def __bool__(self) -> bool:
        return any((self.missing, self.extra, self.not_tombstoned, self.wrong, self.duplicated))

    def report(self, limit: int = 15) -> str:
        lines = []
        for name in ("missing", "extra", "not_tombstoned", "wrong", "duplicated"):
            found = getattr(self, name)
            if found:
                lines.append(f"{name.replace('_', ' ')} ({len(found)}):")
                lines += [f"  {line}" for line in found[:limit]]
                if len(found) > limit:
                    lines.append(f"  … and {len(found) - limit} more")
        return "\n".join(lines) or "the view equals the truth"


def all_items(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated API list, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = client.get(path, params={**params, "limit": 500, **({"cursor": cursor} if cursor else {})})
        answer.raise_for_status()
        body = answer.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def github_view_diff(client: httpx.Client, connection_id: str, truth: Truth) -> ViewDiff:
    """Issues as work items (status is GitHub's state), pull requests as code changes
    (state open, closed or merged)."""
    work_items = _view(client, "/api/v1/work-items", connection_id)
    code_changes = _view(client, "/api/v1/code-changes", connection_id)
    return _compare(truth, {"issue": (work_items, "status"), "pull_request": (code_changes, "state")})


def jira_view_diff(client: httpx.Client, connection_id: str, truth: Truth) -> ViewDiff:
    """Issues as work items; status is Jira's status name."""
    return _compare(truth, {"issue": (_view(client, "/api/v1/work-items", connection_id), "status")})


def assert_view_equals_truth(diff: ViewDiff) -> None:
    assert not diff, "the hub's view differs from the tool's truth:\n" + diff.report()


def _view(client: httpx.Client, path: str, connection_id: str) -> list[dict[str, Any]]:
    # code-changes has no connection filter: the hub may hold several tools' records
    return [
        row
        for row in all_items(client, path, include_deleted="true", connection_id=connection_id)
        if row["connection_id"] == connection_id
    ]


def _compare(truth: Truth, views: dict[str, tuple[list[dict[str, Any]], str]]) -> ViewDiff:
    diff = ViewDiff()
    for record_type, (rows, state_field) in views.items():
        counts = Counter(row["external_id"] for row in rows)
        diff.duplicated += [
            f"{record_type} {external_id}: {n} records in the view"
            for external_id, n in sorted(counts.items())
            if n > 1
        ]
        by_id = {row["external_id"]: row for row in rows}
        expected = {i: r for (t, i), r in truth.records.items() if t == record_type}
        deleted = {i for t, i in truth.deleted if t == record_type}
        for external_id, record in sorted(expected.items()):
            row = by_id.get(external_id)
            if row is None:
                diff.missing.append(f"{_name(record)}: not in the view")
            elif row["deleted_at"] is not None:
                diff.missing.append(f"{_name(record)}: tombstoned at {row['deleted_at']}, alive upstream")
            else:
                diff.wrong += _field_differences(record, row, state_field)
        for external_id, row in sorted(by_id.items()):
            if external_id in expected or (row["deleted_at"] is not None and external_id in deleted):
                continue
            if external_id in deleted:
                diff.not_tombstoned.append(f"{row['key']} ({record_type} {external_id}): deleted upstream, live")
            elif row["deleted_at"] is None:
                diff.extra.append(f"{row['key']} ({record_type} {external_id}): live, unknown upstream")
            else:
                diff.extra.append(f"{row['key']} ({record_type} {external_id}): tombstoned, never known upstream")
    return diff


def _field_differences(record: TruthRecord, row: dict[str, Any], state_field: str) -> list[str]:
    wanted = {"key": record.key, "title": record.title, state_field: record.state, "updated_at": record.updated_at}
    shown = {**{name: row[name] for name in wanted}, "updated_at": _time(row["updated_at"])}
    return [
        f"{_name(record)}: {name} is {_show(shown[name])} in the view, {_show(value)} upstream"
        for name, value in wanted.items()
        if shown[name] != value
    ]


def _show(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


def _time(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _name(record: TruthRecord) -> str:
    return f"{record.key} ({record.record_type} {record.id})"

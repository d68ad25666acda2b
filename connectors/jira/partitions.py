"""How a Jira pull is split, and where each part of it stands (the connection's cursor).

Each project is a partition, searched by `updated` from its checkpoint. A project read for
the first time (no checkpoint) with more issues than slice_issues is read in slices of its
creation time instead, all searched at once with the other partitions: creation times never
change, so every issue is in exactly one slice however often it is edited meanwhile. Each
slice keeps where it stands, the creation minute from which it is still to be read, so a
stopped backfill resumes every slice where it was. Once every slice is read, the project's
checkpoint becomes the latest `updated` it had when slicing began: what changed after that
is read by the next pull, which searches by `updated` as for any project.

The cursor: {"projects": {KEY: ISO 8601}, "slices": {KEY: {"through": ISO 8601,
"left": {END: START}}}}, END being a slice's end ("" for the last, which has none).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opsync.service.contract import FatalError
from opsync.service.toolkit import tool_time

OPEN = ""  # the end of the last slice: none, so issues created during the backfill are read too


@dataclass
class Slices:
    through: datetime  # the project's latest `updated` when slicing began
    left: dict[str, datetime]  # each slice still to be read: its end (ISO 8601, or OPEN) -> its start


@dataclass
class Checkpoints:
    projects: dict[str, datetime] = field(default_factory=dict)  # the latest `updated` taken
    slices: dict[str, Slices] = field(default_factory=dict)  # projects being read in slices

    def advance(self, project: str, end: str, start: datetime | None) -> None:
        """A slice's page was taken: the slice goes on from start, or is done (None)."""
        sliced = self.slices[project]
        if start is None:
            sliced.left.pop(end, None)
        else:
            sliced.left[end] = start
        if not sliced.left:
            self.projects[project] = sliced.through
            del self.slices[project]

    def dump(self) -> str:
        return json.dumps(
            {
                "projects": {key: moment.isoformat() for key, moment in sorted(self.projects.items())},
                **(
                    {
                        "slices": {
                            key: {
                                "through": sliced.through.isoformat(),
                                "left": {end: start.isoformat() for end, start in sorted(sliced.left.items())},
                            }
                            for key, sliced in sorted(self.slices.items())
                        }
                    }
                    if self.slices
                    else {}
                ),
            }
        )


def parse(cursor: str | None, projects: list[str]) -> Checkpoints:
    """The checkpoints a cursor holds. A cursor of one time (before projects were pulled
    apart) stands for every project."""
    if not cursor:
        return Checkpoints()
    try:
        if not cursor.startswith("{"):
            return Checkpoints(projects=dict.fromkeys(projects, _aware(datetime.fromisoformat(cursor))))
        found = json.loads(cursor)
        return Checkpoints(
            projects={key: _aware(datetime.fromisoformat(value)) for key, value in found["projects"].items()},
            slices={
                key: Slices(
                    _aware(datetime.fromisoformat(sliced["through"])),
                    {end: _aware(datetime.fromisoformat(start)) for end, start in sliced["left"].items()},
                )
                for key, sliced in found.get("slices", {}).items()
            },
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise FatalError(
            f"Jira cursor {cursor[:200]!r} is not one this connector wrote; reset the connection's cursor"
            " to run a full pull"
        ) from None


def issue_number(issue: dict[str, Any] | None) -> int:
    """The number in an issue's key (PAY-123 -> 123): issues are numbered as they are created,
    so the newest one's number bounds how many a project holds."""
    number = str((issue or {}).get("key", "")).rpartition("-")[2]
    return int(number) if number.isdigit() else 0


def issue_time(issue: dict[str, Any] | None, name: str) -> datetime | None:
    return tool_time(((issue or {}).get("fields") or {}).get(name))


def plan(issues: int, first_created: datetime, latest_updated: datetime, slice_issues: int) -> Slices | None:
    """Slices of creation time for a project of about `issues` issues, the first created at
    first_created: as many as slice_issues fit, of equal length, on whole minutes (JQL's
    precision); none when one slice would do."""
    count = math.ceil(issues / slice_issues)
    start = minute_of(first_created)
    span = minute_of(max(latest_updated, first_created)) - start
    step = _minute_span(span / count) if count > 1 else timedelta(0)
    if step <= timedelta(0):
        return None
    bounds = [start + step * i for i in range(count)]
    ends = [bound.isoformat() for bound in bounds[1:]] + [OPEN]
    return Slices(latest_updated, dict(zip(ends, bounds, strict=True)))


def minute_of(moment: datetime) -> datetime:
    """The start of moment's minute (JQL's precision): a slice resumed from there re-reads at
    most that minute."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _minute_span(span: timedelta) -> timedelta:
    return timedelta(minutes=math.ceil(span.total_seconds() / 60))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

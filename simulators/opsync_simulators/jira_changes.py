"""An edit to a Jira issue's fields: applied to the SimIssue, and the changelog items Jira
records for it (the items of one history, and of the jira:issue_updated webhook's changelog).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from opsync_simulators.jira_data import ISSUE_TYPES, PRIORITIES, STATUSES, SimIssue, status_item
from opsync_simulators.jira_render import render_description
from opsync_simulators.world import SimPerson

EDITABLE = {
    "summary",
    "status",
    "priority",
    "assignee",
    "labels",
    "description",
    "story_points",
    "duedate",
    "issuetype",
}


def apply_changes(
    issue: SimIssue, changes: dict[str, Any], people: list[SimPerson], at: datetime
) -> list[dict[str, Any]]:
    """Set fields (an assignee by email, accountId or display name, or None); return the
    changelog items Jira would record. A move into a done status resolves the issue at `at`,
    unless it was resolved already."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"cannot set {sorted(unknown)}; editable fields are {sorted(EDITABLE)}")
    items = []
    for name, value in changes.items():
        if name == "status" and value not in STATUSES:
            raise ValueError(f"status {value!r} is not one of {list(STATUSES)}")
        if name == "priority" and value not in PRIORITIES:
            raise ValueError(f"priority {value!r} is not one of {list(PRIORITIES)}")
        if name == "issuetype" and value not in ISSUE_TYPES:
            raise ValueError(f"issuetype {value!r} is not one of {list(ISSUE_TYPES)}")
        item = _change(issue, name, value, people, at)
        if item is not None:
            items.append(item)
    return items


def _person(who: str | None, people: list[SimPerson]) -> int | None:
    if who is None:
        return None
    for index, person in enumerate(people):
        if who in (person.email, person.account_id, person.display_name):
            return index
    raise ValueError(f"no person {who!r} in the simulated world")


def _item(
    field_name: str,
    old: Any,
    new: Any,
    old_text: Any,
    new_text: Any,
    field_id: str | None = None,
    fieldtype: str = "jira",
) -> dict[str, Any]:
    return {
        "field": field_name,
        "fieldtype": fieldtype,
        "fieldId": field_id or field_name,
        "from": old,
        "fromString": old_text,
        "to": new,
        "toString": new_text,
    }


def _change(issue: SimIssue, name: str, value: Any, people: list[SimPerson], at: datetime) -> dict[str, Any] | None:
    if name == "status":
        old = issue.status
        issue.status = value
        done = STATUSES[value][1] == "done"
        issue.resolved = (issue.resolved or at) if done else None
        return status_item(old, value)
    if name == "assignee":
        old_index, new_index = issue.assignee, _person(value, people)
        issue.assignee = new_index
        account = lambda i: None if i is None else people[i].account_id  # noqa: E731
        display = lambda i: None if i is None else people[i].display_name  # noqa: E731
        return _item("assignee", account(old_index), account(new_index), display(old_index), display(new_index))
    if name == "priority":
        old = issue.priority
        issue.priority = value
        return _item("priority", PRIORITIES[old], PRIORITIES[value], old, value)
    if name == "issuetype":
        old = issue.issuetype
        issue.issuetype = value
        return _item("issuetype", ISSUE_TYPES[old][0], ISSUE_TYPES[value][0], old, value)
    if name == "labels":
        old_labels, issue.labels = issue.labels, sorted(value)
        return _item("labels", None, None, " ".join(old_labels), " ".join(issue.labels))
    if name == "description":
        old_text = render_description(issue.description, "2")
        issue.description = None if value is None else [value]
        return _item("description", None, None, old_text, value)
    if name == "story_points":
        old_points, issue.story_points = issue.story_points, value
        return _item(
            "Story point estimate",
            None,
            None,
            old_points and str(old_points),
            value and str(value),
            "customfield_10016",
            "custom",
        )
    if name == "duedate":
        old_due = issue.duedate
        issue.duedate = value if value is None or isinstance(value, date) else date.fromisoformat(value)
        return _item(
            "duedate",
            old_due and old_due.isoformat(),
            issue.duedate and issue.duedate.isoformat(),
            old_due and old_due.isoformat(),
            issue.duedate and issue.duedate.isoformat(),
        )
    old_summary, issue.summary = issue.summary, value
    return _item("summary", None, None, old_summary, value)

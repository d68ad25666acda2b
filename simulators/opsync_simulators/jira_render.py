"""How the Jira simulator's issues, projects and people look in Jira Cloud's REST API: v2 with
wiki-markup descriptions, v3 with ADF, both rendered on request from one SimIssue.

Changelogs are cut as Cloud cuts them (40 histories in search/jql, 100 in GET issue), and GET
field lists the fields and the clause names JQL knows them by.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from opsync_simulators.jira_data import ISSUE_TYPES, PRIORITIES, STATUSES, SimIssue, SimProject
from opsync_simulators.world import SimPerson

# How many histories expand=changelog returns, the most recent ones: search/jql cuts an issue's
# changelog at 40 (Cloud's enhanced search), GET issue at 100; the rest only the paged
# /issue/{id}/changelog endpoint lists (which the simulator does not serve).
SEARCH_CHANGELOG_LIMIT = 40
ISSUE_CHANGELOG_LIMIT = 100
# statusCategory key -> its JSON; the categories are Jira's three fixed ones
CATEGORIES = {
    "new": {"id": 2, "key": "new", "colorName": "blue-gray", "name": "To Do"},
    "indeterminate": {"id": 4, "key": "indeterminate", "colorName": "yellow", "name": "In Progress"},
    "done": {"id": 3, "key": "done", "colorName": "green", "name": "Done"},
}
RESOLUTIONS = {"Done": "10000", "Won't Do": "10001"}


def jira_time(moment: datetime) -> str:
    """Jira's timestamp format: milliseconds and an offset without a colon."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "+0000"  # less "+00:00"


def render_user(person: SimPerson, base: str) -> dict[str, Any]:
    avatar = f"https://avatar-management.example/{person.account_id}"
    return {
        "self": f"{base}/rest/api/2/user?accountId={person.account_id}",
        "accountId": person.account_id,
        "emailAddress": person.email,
        "avatarUrls": {size: f"{avatar}/{size.split('x')[0]}" for size in ("48x48", "24x24", "16x16", "32x32")},
        "displayName": person.display_name,
        "active": True,
        "timeZone": "UTC",
        "accountType": "atlassian",
    }


def render_project(project: SimProject, base: str) -> dict[str, Any]:
    return {
        "self": f"{base}/rest/api/2/project/{project.id}",
        "id": project.id,
        "key": project.key,
        "name": project.name,
        "projectTypeKey": "software",
        "simplified": False,
        "avatarUrls": {
            size: f"{base}/rest/api/2/universal_avatar/view/type/project/avatar/10400?size={size}"
            for size in ("48x48", "24x24", "16x16", "32x32")
        },
    }


def render_description(paragraphs: list[str] | None, version: str) -> Any:
    if paragraphs is None:
        return None
    if version == "3":
        return {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]} for text in paragraphs],
        }
    return "\n\n".join(paragraphs)


def render_status(name: str, base: str) -> dict[str, Any]:
    status_id, category = STATUSES[name]
    return {
        "self": f"{base}/rest/api/2/status/{status_id}",
        "description": "",
        "iconUrl": f"{base}/",
        "name": name,
        "id": status_id,
        "statusCategory": {
            "self": f"{base}/rest/api/2/statuscategory/{CATEGORIES[category]['id']}",
            **CATEGORIES[category],
        },
    }


def render_issuetype(name: str, base: str) -> dict[str, Any]:
    type_id, level = ISSUE_TYPES[name]
    return {
        "self": f"{base}/rest/api/2/issuetype/{type_id}",
        "id": type_id,
        "description": "",
        "iconUrl": f"{base}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{type_id}",
        "name": name,
        "subtask": name == "Sub-task",
        "avatarId": int(type_id),
        "hierarchyLevel": level,
    }


def render_priority(name: str, base: str) -> dict[str, Any]:
    return {
        "self": f"{base}/rest/api/2/priority/{PRIORITIES[name]}",
        "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
        "name": name,
        "id": PRIORITIES[name],
    }


def render_fields(issue: SimIssue, sim: Any, version: str, base: str) -> dict[str, Any]:
    """Every field of the issue, as GET issue/{id} returns them in REST `version`."""
    people = sim.people
    parent = sim.issue_by_id(issue.parent) if issue.parent is not None else None
    project = sim.projects[issue.project]
    resolution = None
    if issue.resolved is not None:
        resolution_id = RESOLUTIONS.get(issue.status, "10000")
        resolution = {
            "self": f"{base}/rest/api/2/resolution/{resolution_id}",
            "id": resolution_id,
            "description": "",
            "name": issue.status if issue.status in RESOLUTIONS else "Done",
        }
    fields: dict[str, Any] = {
        "summary": issue.summary,
        "issuetype": render_issuetype(issue.issuetype, base),
        "project": render_project(project, base),
        "status": render_status(issue.status, base),
        "statuscategorychangedate": jira_time(category_changed_at(issue)),
        "priority": render_priority(issue.priority, base),
        "assignee": render_user(people[issue.assignee], base) if issue.assignee is not None else None,
        "reporter": render_user(people[issue.reporter], base),
        "creator": render_user(people[issue.reporter], base),
        "labels": list(issue.labels),
        "components": [],
        "description": render_description(issue.description, version),
        "environment": None,
        "fixVersions": [{"self": f"{base}/rest/api/2/version/{issue.fix_version['id']}", **issue.fix_version}]
        if issue.fix_version
        else [],
        "versions": [],
        "duedate": issue.duedate.isoformat() if issue.duedate else None,
        "created": jira_time(issue.created),
        "updated": jira_time(issue.updated),
        "resolution": resolution,
        "resolutiondate": jira_time(issue.resolved) if issue.resolved else None,
        "lastViewed": None,
        "issuelinks": [],
        "subtasks": [],
        "votes": {"self": f"{base}/rest/api/2/issue/{issue.key}/votes", "votes": 0, "hasVoted": False},
        "watches": {"self": f"{base}/rest/api/2/issue/{issue.key}/watchers", "watchCount": 1, "isWatching": False},
        "timetracking": {},
        "customfield_10016": issue.story_points,
        "customfield_10020": [dict(issue.sprint)] if issue.sprint else None,
    }
    if parent is not None:
        fields["parent"] = {
            "id": str(parent.id),
            "key": parent.key,
            "self": f"{base}/rest/api/{version}/issue/{parent.id}",
            "fields": {
                "summary": parent.summary,
                "status": render_status(parent.status, base),
                "priority": render_priority(parent.priority, base),
                "issuetype": render_issuetype(parent.issuetype, base),
            },
        }
    return fields


def category_changed_at(issue: SimIssue) -> datetime:
    """When the issue last moved into another status category (statuscategorychangedate)."""
    moment = issue.created
    for history in issue.histories:
        for item in history["items"]:
            if item["field"] == "status" and STATUSES[item["fromString"]][1] != STATUSES[item["toString"]][1]:
                moment = history["created"]
    return moment


def render_changelog(issue: SimIssue, sim: Any, base: str, in_search: bool = False) -> dict[str, Any]:
    """The most recent histories, as expand=changelog shows them: GET issue lists up to 100,
    oldest first; search/jql up to 40, most recent first, as its documentation puts it. total
    counts them all, so a reader can tell a cut changelog (total > maxResults)."""
    limit = SEARCH_CHANGELOG_LIMIT if in_search else ISSUE_CHANGELOG_LIMIT
    histories = [
        {
            **history,
            "author": render_user(sim.people[history["author"]], base),
            "created": jira_time(history["created"]),
        }
        for history in issue.histories[-limit:]
    ]
    if in_search:
        histories.reverse()
    return {"startAt": 0, "maxResults": len(histories), "total": len(issue.histories), "histories": histories}


def render_issue(
    issue: SimIssue,
    sim: Any,
    version: str,
    base: str,
    fields: set[str] | None = None,
    expand: set[str] = frozenset(),
    in_search: bool = False,
) -> dict[str, Any]:
    """The issue JSON; fields=None means all, an empty set means id/key only; in_search: as
    search/jql lists it (which cuts the changelog shorter)."""
    body: dict[str, Any] = {
        "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
        "id": str(issue.id),
        "self": f"{base}/rest/api/{version}/issue/{issue.id}",
        "key": issue.key,
    }
    if fields is None or fields:
        rendered = render_fields(issue, sim, version, base)
        body["fields"] = (
            rendered if fields is None else {name: value for name, value in rendered.items() if name in fields}
        )
    if "changelog" in expand:
        body["changelog"] = render_changelog(issue, sim, base, in_search)
    return body


FIELD_LIST = [  # GET field: what the library reads clause names from
    {
        "id": "issuekey",
        "key": "issuekey",
        "name": "Key",
        "custom": False,
        "navigable": True,
        "searchable": False,
        "clauseNames": ["id", "issue", "issuekey", "key"],
    },
    *(
        {
            "id": name,
            "key": name,
            "name": label,
            "custom": False,
            "navigable": True,
            "searchable": True,
            "clauseNames": [name],
            "schema": {"type": kind, "system": name},
        }
        for name, label, kind in [
            ("summary", "Summary", "string"),
            ("issuetype", "Issue Type", "issuetype"),
            ("project", "Project", "project"),
            ("status", "Status", "status"),
            ("priority", "Priority", "priority"),
            ("assignee", "Assignee", "user"),
            ("reporter", "Reporter", "user"),
            ("labels", "Labels", "array"),
            ("description", "Description", "string"),
            ("fixVersions", "Fix versions", "array"),
            ("duedate", "Due date", "date"),
            ("created", "Created", "datetime"),
            ("updated", "Updated", "datetime"),
            ("resolutiondate", "Resolved", "datetime"),
            ("resolution", "Resolution", "resolution"),
            ("parent", "Parent", "issuelink"),
        ]
    ),
    {
        "id": "customfield_10016",
        "key": "customfield_10016",
        "name": "Story point estimate",
        "custom": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["cf[10016]", "Story point estimate"],
        "schema": {"type": "number", "custom": "com.pyxis.greenhopper.jira:jsw-story-points", "customId": 10016},
    },
    {
        "id": "customfield_10020",
        "key": "customfield_10020",
        "name": "Sprint",
        "custom": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": ["cf[10020]", "Sprint"],
        "schema": {
            "type": "array",
            "items": "json",
            "custom": "com.pyxis.greenhopper.jira:gh-sprint",
            "customId": 10020,
        },
    },
]

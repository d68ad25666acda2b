"""The subset of JQL the simulator understands, with Jira's error messages for the rest.

project = K, project in (K, ...), key = K-1, id = N, created/updated compared with a date
("yyyy-MM-dd[ HH:mm]", "yyyy/MM/dd[ HH:mm]", or relative like "-5d"), joined by AND, then
ORDER BY updated|created|key|id [ASC|DESC]. Dates have minute precision, in the user's zone (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from opsync_simulators.jira_data import SimIssue

TOKEN = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|(>=|<=|!=|=|>|<|\(|\)|,)|([\w\-./:\[\]]+))')
DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")
RELATIVE = re.compile(r"^([-+]?\d+)([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


class JqlError(ValueError):
    """The query is not valid (for the sim); the message is Jira's wording."""


@dataclass
class Query:
    projects: set[str] | None = None
    keys: set[str] | None = None
    ids: set[int] | None = None
    dates: list[tuple[str, str, datetime]] = field(default_factory=list)
    order: str = "id"
    descending: bool = False

    def matches(self, issue: SimIssue) -> bool:
        if self.projects is not None and issue.project not in self.projects:
            return False
        if self.keys is not None and issue.key not in self.keys:
            return False
        if self.ids is not None and issue.id not in self.ids:
            return False
        return all(COMPARE[op](getattr(issue, name), value) for name, op, value in self.dates)


def tokenize(jql: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) with kind 'str' for quoted values, 'op', or 'word'."""
    tokens, position = [], 0
    while position < len(jql.rstrip()):
        match = TOKEN.match(jql, position)
        if not match:
            raise JqlError(
                f"Error in the JQL Query: The character '{jql[position:].strip()[0]}' "
                f"is a reserved JQL character. (line 1, character {position + 1})"
            )
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        if quoted is not None:
            tokens.append(("str", quoted, match.start(0) + 1))
        elif match.group(3):
            tokens.append(("op", match.group(3), match.start(3) + 1))
        else:
            tokens.append(("word", match.group(4), match.start(4) + 1))
        position = match.end(0)
    return tokens


def parse_date(text: str, field_name: str, now: datetime) -> datetime:
    relative = RELATIVE.match(text)
    if relative:
        return now + timedelta(**{UNITS[relative.group(2)]: int(relative.group(1))})
    for pattern in DATE_FORMATS:
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise JqlError(
        f"Date value '{text}' for field '{field_name}' is invalid. Valid formats include: "
        "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period "
        "format e.g. '-5d', '4w 2d'."
    )


def parse(jql: str, known_projects: set[str], now: datetime) -> Query:
    tokens = tokenize(jql)
    query = Query()
    at = 0

    def take(expected: str | None = None) -> tuple[str, str, int]:
        nonlocal at
        if at >= len(tokens):
            raise JqlError(f"Error in the JQL Query: Expecting {expected or 'more'} but reached the end of the query.")
        token = tokens[at]
        if expected and token[1].upper() != expected.upper():
            raise JqlError(
                f"Error in the JQL Query: Expecting '{expected}' but got '{token[1]}'. (line 1, character {token[2]})"
            )
        at += 1
        return token

    def values() -> list[str]:
        if at < len(tokens) and tokens[at][1] == "(":
            take("(")
            found = [take()[1]]
            while take()[1] == ",":
                found.append(take()[1])
            return found
        return [take()[1]]

    while at < len(tokens) and tokens[at][1].upper() != "ORDER":
        if query.projects or query.dates or query.keys or query.ids:
            take("AND")
        _, name, position = take()
        name = name.lower()
        operator = take()[1].upper()
        if name == "project" and operator in ("=", "IN"):
            wanted = {value.upper() for value in values()}
            for value in sorted(wanted - known_projects):
                raise JqlError(f"The value '{value}' does not exist for the field 'project'.")
            query.projects = wanted if query.projects is None else query.projects & wanted
        elif name in ("key", "issuekey") and operator in ("=", "IN"):
            query.keys = {value.upper() for value in values()}
        elif name == "id" and operator in ("=", "IN"):
            try:
                query.ids = {int(value) for value in values()}
            except ValueError as error:
                raise JqlError(f"Error in the JQL Query: {error}") from None
        elif name in ("updated", "created") and operator in COMPARE:
            query.dates.append((name, operator, parse_date(take()[1], name, now)))
        elif name in ("project", "key", "id", "updated", "created"):
            raise JqlError(
                f"Error in the JQL Query: the operator '{operator}' is not supported by "
                f"the simulator for field '{name}'. (line 1, character {position})"
            )
        else:
            raise JqlError(
                f"Field '{name}' does not exist or you do not have permission to view it. "
                "(The simulator supports project, key, id, created and updated.)"
            )
    if at < len(tokens):
        take("ORDER")
        take("BY")
        query.order = take()[1].lower()
        if query.order not in ("updated", "created", "key", "id", "issuekey"):
            raise JqlError(f"Not able to sort using field '{query.order}'.")
        if at < len(tokens):
            direction = take()[1].upper()
            if direction not in ("ASC", "DESC"):
                raise JqlError(f"Error in the JQL Query: Expecting 'ASC' or 'DESC' but got '{direction}'.")
            query.descending = direction == "DESC"
        if at < len(tokens):
            raise JqlError(
                f"Error in the JQL Query: only one ORDER BY field is supported by the "
                f"simulator. (line 1, character {tokens[at][2]})"
            )
    return query


def sort_key(query: Query, issue: SimIssue, project_rank: dict[str, int]) -> tuple[int, ...]:
    """A numeric key per issue, so that pages resume strictly after the last one seen."""
    if query.order == "updated":
        key: tuple[int, ...] = (int(issue.updated.timestamp() * 1000), issue.id)
    elif query.order == "created":
        key = (int(issue.created.timestamp() * 1000), issue.id)
    elif query.order in ("key", "issuekey"):
        key = (project_rank[issue.project], issue.number)
    else:
        key = (issue.id,)
    return tuple(-part for part in key) if query.descending else key

"""The functions mappings may call beside JMESPath's own (abs, contains, join, length, ...):
adf_text, lower, upper, regex, concat, coalesce and to_datetime. A mapping may also write
field('Name'), which is no function: it is resolved when the mapping is loaded (see
opsync.service.expressions). And what a mapped value becomes: the type of its field."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from functools import lru_cache
from typing import Any

from jmespath import functions

from opsync.service.toolkit import tool_time


class FieldType(StrEnum):
    """What a mapped value becomes (as_field_type converts to it); a field's type in an entity."""

    TEXT = "text"
    NUMBER = "number"
    INTEGER = "integer"
    TIME = "time"  # an aware UTC moment
    DATE = "date"  # a calendar day
    LIST = "list"  # of texts, sorted, without repeats
    OBJECT = "object"  # a JSON object
    PERSON = "person"  # a tool account, resolved to a hub person


_BLOCKS = {"paragraph", "heading", "listItem", "blockquote", "codeBlock", "rule", "tableRow", "panel"}


def adf_to_text(node: Any) -> str:
    """Plain text of an ADF node: the JSON rich-text format trackers and wikis send in their REST APIs."""
    parts: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, list):
            for child in item:
                walk(child)
            return
        if not isinstance(item, dict):
            return
        kind = item.get("type")
        if kind == "text":
            parts.append(str(item.get("text", "")))
        elif kind == "hardBreak":
            parts.append("\n")
        elif kind in ("mention", "emoji", "status", "date", "inlineCard"):
            attrs = item.get("attrs") or {}
            parts.append(str(attrs.get("text") or attrs.get("shortName") or attrs.get("url") or ""))
        walk(item.get("content"))
        if kind in _BLOCKS:
            parts.append("\n")

    walk(node)
    return re.sub(r"\n{3,}", "\n\n", "".join(parts)).strip()


# Linear in the length of the markup, since descriptions are whatever a tool's user typed: a
# scan that starts at a marker stops at the next opening marker (no class admits it), and an
# emphasis, whose span may hold '-', spans at most EMPHASIS_SPAN characters.
_MACRO = re.compile(r"\{(?:code|noformat|quote|panel|color)(?::[^{}]*)?\}")
_LINK = re.compile(r"\[([^|\[\]]+)\|[^\[\]]+\]")  # [label|url] -> label
_HEADING = re.compile(r"^h[1-6]\.\s*", re.MULTILINE)
EMPHASIS_SPAN = 200
_EMPHASIS = re.compile(rf"(?<!\w)[*_+-]([^\s*_+-][^*_+]{{0,{EMPHASIS_SPAN}}}?)[*_+-](?!\w)")


def wiki_to_text(markup: str) -> str:
    """Plain text of wiki markup (the *bold*, h1., {code} dialect of older REST APIs and webhooks): drop
    the common markers."""
    text = _MACRO.sub("", markup)
    text = _LINK.sub(r"\1", text)
    text = _HEADING.sub("", text)
    text = _EMPHASIS.sub(r"\1", text)
    return text.replace("\r\n", "\n").strip()


SCAN_LIMIT = 64 * 1024  # characters of tool content that a mapping's pattern scans


def without_nul(value: Any) -> Any:
    """value with NUL characters taken out of its strings: PostgreSQL's text and JSONB hold
    none, and a tool that sends one must not stop the write of every record beside it."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return without_nul(text)


def _date(value: Any) -> Any:
    moment = tool_time(value)
    return moment.date() if moment is not None else None


def _list(value: Any) -> list[str]:
    return sorted({without_nul(str(v)) for v in (value if isinstance(value, list) else [value]) if v is not None})


_CONVERT = {  # a mapping converts tens of values per record: one lookup, not a chain of tests
    FieldType.TEXT: _text,
    FieldType.NUMBER: lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None,
    FieldType.INTEGER: lambda v: int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None,
    FieldType.TIME: tool_time,
    FieldType.DATE: _date,
    FieldType.LIST: _list,
    FieldType.OBJECT: lambda v: without_nul(v) if isinstance(v, dict) else None,
}


def as_field_type(kind: FieldType, value: Any) -> Any:
    """A mapped value as the type of the field it sets (None where it is not one)."""
    if value is None:
        return None
    convert = _CONVERT.get(kind)
    return convert(value) if convert is not None else value


@lru_cache(maxsize=256)
def pattern(source: str) -> re.Pattern[str]:
    """A mapping's regular expression, compiled once (re.error if it is not one)."""
    return re.compile(source)


# The argument (by position) of each function that is a regular expression: a string literal
# there is compiled when the mapping is loaded, so a broken pattern is a mapping error.
PATTERN_ARGUMENTS = {"regex": 1}


class HubFunctions(functions.Functions):
    @functions.signature({"types": ["object", "string", "null"]})
    def _func_adf_text(self, value: Any) -> str | None:
        """Description text whether the tool sent ADF (v3) or wiki markup (v2)."""
        if value is None:
            return None
        return wiki_to_text(value) if isinstance(value, str) else adf_to_text(value)

    @functions.signature({"types": ["string", "null"]})
    def _func_lower(self, value: str | None) -> str | None:
        return value.lower() if value is not None else None

    @functions.signature({"types": ["string", "null"]})
    def _func_upper(self, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_regex(self, value: str | None, expression: str) -> str | None:
        """The first group (or the whole match) of the regular expression in value, else null.

        Only the first SCAN_LIMIT characters of value are scanned: the pattern is an ops
        engineer's and the value a tool's, and a backtracking pattern on a long value could
        otherwise hold the sync for minutes.
        """
        if value is None:
            return None
        match = pattern(expression).search(value[:SCAN_LIMIT])
        if not match:
            return None
        return match.group(1) if match.groups() else match.group(0)

    @functions.signature({"types": []}, {"types": [], "variadic": True})
    def _func_concat(self, *values: Any) -> str | None:
        """Values joined as text; null if any is null (a URL with a missing part is no URL)."""
        if any(v is None for v in values):
            return None
        return "".join(str(v) for v in values)

    @functions.signature({"types": [], "variadic": True})
    def _func_coalesce(self, *values: Any) -> Any:
        """The first value that is not null (false, 0 and '' are values), else null."""
        return next((v for v in values if v is not None), None)

    @functions.signature({"types": ["string", "number", "null"]})
    def _func_to_datetime(self, value: Any) -> str | None:
        """A tool's timestamp (ISO 8601 in any offset, a date, epoch seconds or milliseconds)
        as ISO 8601 in UTC, e.g. 2026-11-02T09:30:00+00:00; null if it is none of those."""
        moment = tool_time(value)
        return moment.isoformat() if moment is not None else None


FUNCTIONS = HubFunctions()

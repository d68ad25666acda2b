"""The functions mappings may call beside JMESPath's own."""

from __future__ import annotations

import re
from typing import Any

from jmespath import functions

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

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_regex(self, value: str | None, pattern: str) -> str | None:
        """The first group (or the whole match) of pattern in value, else null.

        Only the first SCAN_LIMIT characters of value are scanned: the pattern is an ops
        engineer's and the value a tool's, and a backtracking pattern on a long value could
        otherwise hold the sync for minutes.
        """
        if value is None:
            return None
        match = re.search(pattern, value[:SCAN_LIMIT])
        if not match:
            return None
        return match.group(1) if match.groups() else match.group(0)

    @functions.signature({"types": []}, {"types": [], "variadic": True})
    def _func_concat(self, *values: Any) -> str | None:
        """Values joined as text; null if any is null (a URL with a missing part is no URL)."""
        if any(v is None for v in values):
            return None
        return "".join(str(v) for v in values)


FUNCTIONS = HubFunctions()

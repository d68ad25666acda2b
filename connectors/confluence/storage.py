"""Confluence storage format (XHTML with ac: and ri: elements): a page's plain text, and the
Jira issues it names, each with how it names it.

A page names an issue three ways: a link to .../browse/KEY (an <a href> or an <ri:url>), a Jira
macro (<ac:structured-macro ac:name="jira"> with a `key` parameter), or the key in its prose.
A key named several ways keeps the most deliberate one: macro, then link, then text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

MACRO, LINK, TEXT = "macro", "link", "text"
_RANK = {MACRO: 0, LINK: 1, TEXT: 2}
_KEY = r"[A-Z][A-Z0-9_]{1,9}-[1-9][0-9]{0,8}"
BROWSE = re.compile(rf"/browse/({_KEY})(?![A-Za-z0-9_-])")
IN_TEXT = re.compile(rf"(?<![A-Za-z0-9_/.-])({_KEY})(?![A-Za-z0-9_-])")
_BLOCKS = {
    "p", "div", "br", "li", "tr", "td", "th", "pre", "blockquote", "table",
    "h1", "h2", "h3", "h4", "h5", "h6", "ac:task", "ac:layout-cell",
}  # fmt: skip
_HIDDEN = {"ac:parameter", "ac:task-id", "ac:task-status"}  # macro settings, not prose


@dataclass(frozen=True)
class JiraReference:
    key: str
    via: str  # MACRO, LINK or TEXT
    evidence: str  # what a person reads to see why the page names the issue

    def as_json(self) -> dict[str, str]:
        return {"key": self.key, "via": self.via, "evidence": self.evidence}


@dataclass(frozen=True)
class Storage:
    text: str
    jira: list[JiraReference]


def read_storage(xhtml: str | None, projects: frozenset[str] = frozenset()) -> Storage:
    """The plain text of a storage body and the Jira keys it names. projects, if any, limits
    keys found in prose to those projects (prose has words shaped like keys: UTF-8, ISO-8601);
    links and macros always count."""
    if not xhtml:
        return Storage("", [])
    reader = _Reader()
    reader.feed(xhtml)
    reader.close()
    text = _tidy("".join(reader.parts))
    for match in IN_TEXT.finditer(text):
        key = match.group(1)
        if not projects or key.split("-", 1)[0] in projects:
            reader.found(JiraReference(key, TEXT, "named in the page's text"))
    return Storage(text, sorted(reader.references.values(), key=lambda ref: (_RANK[ref.via], ref.key)))


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.references: dict[str, JiraReference] = {}
        self._macros: list[str] = []  # names of the structured macros we are inside
        self._parameter: str | None = None  # name of the macro parameter we are inside
        self._hidden = 0

    def found(self, reference: JiraReference) -> None:
        known = self.references.get(reference.key)
        if known is None or _RANK[reference.via] < _RANK[known.via]:
            self.references[reference.key] = reference

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in ("a", "ri:url"):
            href = values.get("href") or values.get("ri:value") or ""
            for key in BROWSE.findall(href):
                self.found(JiraReference(key, LINK, f"a link to {href[:200]}"))
        elif tag == "ac:structured-macro":
            self._macros.append(values.get("ac:name", ""))
        elif tag == "ac:parameter":
            self._parameter = values.get("ac:name", "")
        if tag in _HIDDEN:
            self._hidden += 1
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "ac:structured-macro" and self._macros:
            self._macros.pop()
        elif tag == "ac:parameter":
            self._parameter = None
        if tag in _HIDDEN and self._hidden:
            self._hidden -= 1
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._parameter == "key" and self._macros and self._macros[-1] == "jira":
            key = data.strip()
            if re.fullmatch(_KEY, key):
                self.found(JiraReference(key, MACRO, "a Jira issue macro"))
                self.parts.append(f" {key} ")  # the macro shows the issue: its key is part of what a reader sees
            return
        if not self._hidden:
            self.parts.append(data)

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA[") and not self._hidden:  # a code or noformat macro's body
            self.parts.append("\n" + data.removeprefix("CDATA[") + "\n")


def _tidy(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.replace("\xa0", " ").splitlines())
    return re.sub(r"\n{2,}", "\n", "\n".join(lines)).strip()

"""YAML files that people edit: parsed keeping each value's line and column, so that a problem
is reported where it stands.

Beside what PyYAML reports, a document lists the mistakes YAML lets through silently:
a key given twice (PyYAML keeps the last one) and a YES, No, on or Off that YAML 1.1 reads
as a boolean where text was meant. validate() checks the data against a pydantic schema and
turns its errors into located problems: line, column, the path of the field, what was expected.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Tag, ValidationError
from yaml.constructor import SafeConstructor

M = TypeVar("M", bound=BaseModel)
_BOOLEAN = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
_TYPE_ERRORS = {"string_type", "dict_type", "list_type", "model_type", "model_attributes_type", "float_type"}
_TYPE_ERRORS |= {"int_type", "bool_type", "int_parsing", "float_parsing"}
_BY_ERROR = {"list_type": "a list", "dict_type": "a mapping", "string_type": "text", "int_type": "a whole number"}


@dataclass(frozen=True)
class Problem:
    """One mistake in a file, where it stands: path is the field's (records.issue.fields.kind);
    message says what is wrong and what was expected, expected says the latter alone."""

    file: str
    path: str
    message: str
    expected: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        at = f" line {self.line}" + (f", column {self.column}" if self.column else "") if self.line else ""
        return f"{self.file}{at}: " + (f"{self.path}: " if self.path else "") + self.message


def dotted(path: tuple[Any, ...]) -> str:
    """('records', 'issue', 'links', 0, 'to') -> 'records.issue.links[0].to'."""
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def described(value: Any) -> str:
    """What a YAML value is, in a message: 'a list', 'text', 'nothing'."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, (date, datetime)):  # YAML reads 2026-11-02 unquoted as a date
        return f"a {type(value).__name__} ({value.isoformat()}, unquoted)"
    names: dict[type, str] = {str: "text", list: "a list", dict: "a mapping"}
    return names.get(type(value), type(value).__name__)


class YamlDocument:
    """A parsed YAML file that can say where each of its values stands."""

    def __init__(self, file: Path | str, text: str) -> None:
        self.file, self.text = str(file), text
        loader = yaml.SafeLoader(text)
        try:
            self.root: yaml.Node | None = loader.get_single_node()
            self._keys = SafeConstructor()
            self.problems: list[Problem] = []  # YAML-level mistakes that are not syntax errors
            if self.root is not None:
                self._inspect(self.root, (), set())
            self.data: Any = loader.construct_document(self.root) if self.root is not None else None
        finally:
            loader.dispose()

    @classmethod
    def read(cls, file: Path) -> YamlDocument:
        return cls(file, file.read_text())

    def _key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return None
        return self._keys.construct_object(node)

    def _inspect(self, node: yaml.Node, path: tuple[Any, ...], open_nodes: set[int]) -> None:
        """Duplicated keys and YAML 1.1 booleans, before construction merges `<<` keys in."""
        if id(node) in open_nodes:  # an alias of a node that holds it
            return
        open_nodes = open_nodes | {id(node)}
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOLEAN and node.value.lower() not in ("true", "false"):
            self.problems.append(
                self.problem(
                    path,
                    f"YAML reads {node.value} as the boolean {str(self._key(node)).lower()}: quote it"
                    f" ('{node.value}') if it is text, or write true or false",
                    "text in quotes, or true or false",
                    node=node,
                )
            )
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._inspect(item, path + (index,), open_nodes)
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Node] = {}
            for key_node, value_node in node.value:
                key = self._key(key_node) if key_node.tag != _MERGE else None
                self._inspect(key_node, path, open_nodes)
                if key is not None and key in first:
                    line = first[key].start_mark.line + 1
                    self.problems.append(
                        self.problem(
                            path + (key,),
                            f"duplicate key {key!r} (first at line {line}); YAML would keep only the last",
                            "each key once",
                            node=key_node,
                        )
                    )
                elif key is not None:
                    first[key] = key_node
                self._inspect(value_node, path + (key,), open_nodes)

    def node(self, path: tuple[Any, ...], key: bool = False) -> yaml.Node | None:
        """The node at path (its key's node if key), or its deepest existing parent's."""
        node, key_node = self.root, None
        for part in path:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                matches = [(k, v) for k, v in node.value if k.value == part or self._key(k) == part]
                if matches:
                    key_node, child = matches[-1]  # construction keeps the last of duplicated keys
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                key_node, child = None, node.value[part]
            if child is None:
                return node
            node = child
        return key_node if key and key_node is not None else node

    def key_positions(self, path: tuple[Any, ...]) -> dict[Any, tuple[int | None, int | None]]:
        """Each key of the mapping at path -> the line and column where it stands."""
        node = self.node(path)
        if not isinstance(node, yaml.MappingNode) or (path and self.node(path[:-1]) is node):
            return {}
        return {self._key(k): self.position(k) for k, _ in node.value}

    def line(self, path: tuple[Any, ...]) -> int | None:
        """The 1-based line of the value at path, or of its deepest existing parent."""
        node = self.node(path)
        return node.start_mark.line + 1 if node is not None else None

    def position(self, node: yaml.Node | None, offset: int | None = None) -> tuple[int | None, int | None]:
        """1-based line and column of node; offset is a character of its text, counted exactly
        where the scalar is written on one line without escapes."""
        if node is None:
            return None, None
        mark = node.start_mark
        column = mark.column + 1
        if offset is not None and isinstance(node, yaml.ScalarNode) and mark.line == node.end_mark.line:
            written = self.text[mark.index : node.end_mark.index]
            quote = node.style if node.style in ("'", '"') else ""
            if written == f"{quote}{node.value}{quote}":
                column += len(quote) + offset
        return mark.line + 1, column

    def where(self, path: tuple[Any, ...]) -> str:
        """'file line N: a.b[0].c' for messages."""
        line = self.line(path)
        return self.file + (f" line {line}" if line else "") + (f": {dotted(path)}" if path else "")

    def problem(
        self,
        path: tuple[Any, ...],
        message: str,
        expected: str | None = None,
        *,
        key: bool = False,
        offset: int | None = None,
        node: yaml.Node | None = None,
    ) -> Problem:
        line, column = self.position(node or self.node(path, key), offset)
        return Problem(self.file, dotted(path), message, expected, line, column)

    def validate(self, model: type[M], context: dict[str, Any] | None = None) -> tuple[M | None, list[Problem]]:
        """The data as model, or the problems pydantic found, each where it stands."""
        try:
            return model.model_validate(self.data, context=context), []
        except ValidationError as error:
            # One problem per place: a value that no member of a union takes fails each of them.
            problems: dict[tuple[Any, ...], Problem] = {}
            for found in error.errors(include_url=False):
                problem = self._problem_of(model, found)
                problems.setdefault((problem.path, problem.line, problem.column), problem)
            return None, list(problems.values())

    def _problem_of(self, model: type[BaseModel], error: Any) -> Problem:
        path, key = self._data_path(error["loc"], error["type"] == "missing")
        kind, ctx, got, loc = error["type"], error.get("ctx") or {}, error.get("input"), error["loc"]
        if "message" in ctx:  # a validator's own message, maybe pointing further in (at)
            at = tuple(ctx.get("at") or ())
            return self.problem(path + at, ctx["message"], ctx.get("expected"), offset=ctx.get("offset"))
        if kind == "extra_forbidden":
            parent = _annotation_at(model, loc[:-1])
            allowed = _keys_of(parent[0]) if parent else []
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            expected: str | None = f"one of {', '.join(allowed)}"
            return self.problem(path, f"unknown key {path[-1]!r}{hint}; expected {expected}", expected, key=True)
        found = _annotation_at(model, loc)
        expected = found[1] if found else None
        if kind == "missing":
            expected = expected or "a value"
            return self.problem(path, f"missing; expected {expected}", expected)
        if kind == "literal_error":
            allowed = [str(v) for v in typing.get_args(found[0])] if found else []
            expected = f"one of {', '.join(allowed)}" if allowed else str(ctx.get("expected", ""))
            return self.problem(path, f"{got!r} is not {expected}", expected)
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            field = str(ctx["discriminator"]).strip("'")
            at = path + (field,)
            if kind == "union_tag_not_found":
                tags = _tags(found[0], field) if found else []
                expected = f"one of {', '.join(tags)}" if tags else None
                return self.problem(at, "missing" + (f"; expected {expected}" if expected else ""), expected)
            expected = "one of " + str(ctx["expected_tags"]).replace("'", "")
            return self.problem(at, f"{ctx['tag']!r} is not {expected}", expected)
        if kind == "shape":
            expected = error["msg"]
        if kind == "string_pattern_mismatch" and expected:
            return self.problem(path, f"{got!r} is not {expected}", expected)
        if kind == "too_short" and expected:
            return self.problem(path, f"empty; expected {expected}", expected)
        if not loc and got is None:
            keys = f"a mapping with {', '.join(_keys_of(model))}"
            return self.problem(path, f"the file is empty; expected {keys}", keys)
        if kind in _TYPE_ERRORS or kind == "shape":
            expected = expected or (_kind_of(found[0]) if found else None) or _BY_ERROR.get(kind)
            if expected:
                return self.problem(path, f"expected {expected}; got {described(got)}", expected, key=key)
        message = error["msg"][0].lower() + error["msg"][1:]
        return self.problem(path, f"{message}; got {described(got)}", None, key=key)

    def _data_path(self, loc: tuple[Any, ...], missing: bool) -> tuple[tuple[Any, ...], bool]:
        """The path in the data of an error's location: pydantic adds the tag of a union's member
        (which names no value) and '[key]' for a mapping's key."""
        path: list[Any] = []
        value = self.data
        for index, part in enumerate(loc):
            if part == "[key]":
                return tuple(path), True
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
                value = value[part]
            elif not missing or index < len(loc) - 1:
                continue  # a tag
            path.append(part)  # the missing key
        return tuple(path), False


def _unwrapped(annotation: Any) -> Any:
    """Optional[X] -> X, Annotated[X, ...] -> X."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _member(annotation: Any, tag: Any) -> Any:
    """The member of a union that a discriminated union's tag names, or None."""
    for member in typing.get_args(annotation):
        metadata = typing.get_args(member)[1:] if typing.get_origin(member) is typing.Annotated else ()
        if any(isinstance(m, Tag) and m.tag == tag for m in metadata):
            return member
        inner = _unwrapped(member)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            literal = [
                f.annotation for f in inner.model_fields.values() if typing.get_origin(f.annotation) is typing.Literal
            ]
            if any(tag in typing.get_args(a) for a in literal):
                return member
    return None


def _annotation_at(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, str | None] | None:
    """The type the schema expects at loc, and the description of the field it is in."""
    annotation: Any = model
    description: str | None = None
    for part in loc:
        annotation = _unwrapped(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found = next(
                (f for n, f in annotation.model_fields.items() if (f.alias or n) == part),
                None,
            )
            if found is None:
                return None
            annotation, description = found.annotation, found.description or description
        elif origin is dict:  # an entry's description is not its mapping's
            annotation, description = typing.get_args(annotation)[0 if part == "[key]" else 1], None
        elif origin is list:
            annotation, description = typing.get_args(annotation)[0], None
        elif origin in (typing.Union, types.UnionType):
            annotation = _member(annotation, part)
            if annotation is None:
                return None
        else:
            return None
    return _unwrapped(annotation), description


def _tags(union: Any, field: str) -> list[str]:
    """The values of field that tell a discriminated union's members apart."""
    members = [_unwrapped(m) for m in typing.get_args(union)]
    found = [m.model_fields.get(field) for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    return [str(tag) for f in found if f is not None for tag in typing.get_args(f.annotation)]


def _kind_of(annotation: Any) -> str | None:
    """What a type is, in a message, where its field has no description."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a mapping with {', '.join(_keys_of(annotation))}"
    origin = typing.get_origin(annotation) or annotation
    return {list: "a list", dict: "a mapping", str: "text", int: "a whole number", float: "a number"}.get(origin)


def _keys_of(annotation: Any) -> list[str]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or n for n, f in annotation.model_fields.items()]
    return []


def _description(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    found = _annotation_at(model, loc)
    return found[1] if found else None


def yaml_error_message(file: Path | str, error: yaml.YAMLError) -> str:
    return str(yaml_problem(file, error))


def yaml_problem(file: Path | str, error: yaml.YAMLError) -> Problem:
    """A YAML syntax error, where the parser stopped."""
    mark = getattr(error, "problem_mark", None)
    reason = getattr(error, "problem", None) or str(error)
    if "\t" in reason or "tab" in reason:
        reason += " (indent with spaces: YAML does not allow tabs there)"
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    return Problem(str(file), "", f"not valid YAML ({reason})", "valid YAML", line, column)

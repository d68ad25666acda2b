"""A mapping's JMESPath expressions: checked when the mapping is loaded, compiled once.

Checked: the syntax, every function's name, its number of arguments and the types of its
literal arguments, and regular expressions given as literals (regex(title, '([A-Z]+-[0-9]+)')).
A tool's field may be named instead of given by id: field('Story Points') stands where its id
would (fields.field('Story Points') for Jira's fields.customfield_10016), resolved through the
tool's field list when the mapping is loaded; without a list it reads nothing (a warning).

Mapping a backfill evaluates tens of expressions per record; jmespath's tree-walking
interpreter costs more than fetching the record did. The subset mappings use (fields,
indexes, projections, filters, ||, &&, comparisons, functions) compiles here to plain
closures with the same semantics; anything else falls back to jmespath itself.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import EmptyExpressionError, IncompleteExpressionError, JMESPathError, LexerError
from jmespath.parser import ParsedResult

from opsync.service.functions import FUNCTIONS, PATTERN_ARGUMENTS, pattern

Evaluate = Callable[[Any], Any]
FIELD_BY_NAME = "field"  # field('Story Points'): resolved at load, never called
OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)
_JMESPATH_TYPES = {bool: "boolean", str: "string", int: "number", float: "number", list: "array", dict: "object"}


class ExpressionError(ValueError):
    """An expression that cannot be loaded; offset is the character of the expression at fault."""

    def __init__(self, message: str, expected: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message, self.expected, self.offset = message, expected, offset


class Expression:
    """One JMESPath expression of a mapping, checked and compiled when the mapping is loaded."""

    def __init__(
        self,
        source: str,
        where: str = "",
        *,
        fields_by_name: Mapping[str, str] | None = None,
        library: functions.Functions = FUNCTIONS,
    ) -> None:
        try:
            tree = _parse(source)
            tree, unresolved = resolve_field_names(source, tree, fields_by_name)
            check_calls(source, tree, library)
        except ExpressionError as error:
            if where:
                error.args = (f"{where}: {error.message}",)
            raise
        self._compile(source, tree, unresolved, library)

    def _compile(self, source: str, tree: dict[str, Any], unresolved: list[str], library: functions.Functions) -> None:
        self.source, self.unresolved, self._library = source, unresolved, library
        self._compiled = ParsedResult(source, tree)
        self._options = jmespath.Options(custom_functions=library)
        # the compiled closure when the expression is in the subset, else jmespath itself
        self.evaluate: Evaluate = compile_node(tree, library) or self._search

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its source and checked tree, and compiled again where it is loaded (a
        mapper process); only over the hub's own functions, which every process has."""
        if self._library is not FUNCTIONS:
            raise TypeError(f"{self.source!r} calls functions of its own: it is not pickled")
        return (_loaded, (self.source, self._compiled.parsed, self.unresolved))

    def __call__(self, record: Any) -> Any:
        return self.evaluate(record)

    def _search(self, record: Any) -> Any:
        return self._compiled.search(record, options=self._options)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _loaded(source: str, tree: dict[str, Any], unresolved: list[str]) -> Expression:
    expression = Expression.__new__(Expression)
    expression._compile(source, tree, unresolved, FUNCTIONS)
    return expression


def _parse(source: str) -> dict[str, Any]:
    try:
        parsed: dict[str, Any] = jmespath.compile(source).parsed
    except RecursionError:
        raise ExpressionError(
            f"{source[:40]!r}... nests too deeply to be read", "an expression of a few levels"
        ) from None
    except JMESPathError as error:
        position = getattr(error, "lex_position", None)
        if isinstance(error, EmptyExpressionError):
            reason = "it is empty"
        elif isinstance(error, IncompleteExpressionError):
            reason = "it ends before it is complete"
        elif isinstance(error, LexerError):
            reason = error.message[0].lower() + error.message[1:]
        else:
            reason = str(getattr(error, "msg", error)).lower()
        at = f" at character {position + 1}" if isinstance(position, int) else ""
        raise ExpressionError(
            f"{source!r} is not a valid JMESPath expression: {reason}{at}", "a JMESPath expression", position
        ) from None
    return parsed


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children", []):
        yield from _nodes(child)


def known_functions(library: functions.Functions = FUNCTIONS) -> list[str]:
    return sorted([*library.FUNCTION_TABLE, FIELD_BY_NAME])


def resolve_field_names(
    source: str, node: dict[str, Any], fields_by_name: Mapping[str, str] | None
) -> tuple[dict[str, Any], list[str]]:
    """node with each field('Name') replaced by a read of that field's id, and the names left
    unresolved (read as null) because no field list was given. jmespath caches parsed trees:
    the one given is copied, never changed."""
    unresolved: list[str] = []

    def resolve(item: dict[str, Any]) -> dict[str, Any]:
        if item["type"] != "function_expression" or item["value"] != FIELD_BY_NAME:
            children = item.get("children", [])
            return {**item, "children": [resolve(c) for c in children]} if children else item
        offset = _offset(source, FIELD_BY_NAME + "(")
        arguments = item["children"]
        if len(arguments) != 1 or arguments[0]["type"] != "literal" or not isinstance(arguments[0]["value"], str):
            raise ExpressionError(
                "field() takes the name of one of the tool's fields, quoted: field('Story Points')",
                "field('a field name')",
                offset,
            )
        name = arguments[0]["value"]
        if fields_by_name is None:
            unresolved.append(name)
            return {"type": "literal", "value": None, "children": []}
        if name in fields_by_name:
            return {"type": "field", "value": fields_by_name[name], "children": []}
        if name in fields_by_name.values():  # an id is its own name
            return {"type": "field", "value": name, "children": []}
        close = _close(name, fields_by_name)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ExpressionError(
            f"the tool has no field named {name!r}{hint}", "the name of one of the tool's fields", offset
        )

    return resolve(node), unresolved


def _close(name: str, names: Mapping[str, str] | list[str]) -> list[str]:
    folded = {n.lower(): n for n in names}
    return [folded[n] for n in difflib.get_close_matches(name.lower(), list(folded), n=3, cutoff=0.6)]


def _offset(source: str, text: str) -> int | None:
    found = source.find(text)
    return found if found >= 0 else None


def _static_type(node: dict[str, Any]) -> str | None:
    """An argument's JMESPath type when it is known without a record: literals, &expressions."""
    if node["type"] == "literal":
        return _JMESPATH_TYPES.get(type(node["value"]), "null")
    return "expref" if node["type"] == "expref" else None


def _accepts(types: list[str], kind: str, value: Any) -> bool:
    if not types or kind in types:
        return True
    element: dict[str, type | tuple[type, ...]] = {"array-string": str, "array-number": (int, float)}
    return kind == "array" and any(
        t in element and all(isinstance(v, element[t]) and not isinstance(v, bool) for v in value) for t in types
    )


def check_calls(source: str, node: dict[str, Any], library: functions.Functions = FUNCTIONS) -> None:
    """Every call names a known function, with as many arguments as it takes, and literal
    arguments of the types it takes; a literal regular expression compiles."""
    for item in _nodes(node):
        if item["type"] != "function_expression":
            continue
        name, arguments = item["value"], item["children"]
        offset = _offset(source, name + "(")
        spec = library.FUNCTION_TABLE.get(name)
        if spec is None:
            close = _close(name, known_functions(library))
            hint = f"did you mean {' or '.join(f'{c}()' for c in close)}? " if close else ""
            raise ExpressionError(
                f"unknown function {name}(); {hint}the functions are {', '.join(known_functions(library))}",
                "a known function",
                offset,
            )
        signature = spec["signature"]
        variadic = bool(signature) and signature[-1].get("variadic", False)
        if len(arguments) < len(signature) or (not variadic and len(arguments) > len(signature)):
            count = f"{'at least ' if variadic else ''}{len(signature)} argument{'s' * (len(signature) != 1)}"
            raise ExpressionError(f"{name}() takes {count}; got {len(arguments)}", count, offset)
        for position, (argument, allowed) in enumerate(zip(arguments, signature, strict=False), start=1):
            kind = _static_type(argument)
            wanted = allowed["types"]
            if kind is not None and not _accepts(wanted, kind, argument.get("value")):
                shown = f"{kind} {argument['value']!r}" if argument["type"] == "literal" else kind
                expected = " or ".join(wanted)
                raise ExpressionError(f"{name}() argument {position} must be {expected}; got {shown}", expected, offset)
            if wanted == ["expref"] and kind is None:
                raise ExpressionError(
                    f"{name}() argument {position} must be an &expression (e.g. &name)", "an &expression", offset
                )
        at = PATTERN_ARGUMENTS.get(name)
        if at is not None and at < len(arguments) and arguments[at]["type"] == "literal":
            text = arguments[at]["value"]
            try:
                pattern(text)
            except re.error as error:
                start = _offset(source, f"'{text}'")
                where = start + 1 + error.pos if start is not None and error.pos is not None else offset
                raise ExpressionError(
                    f"{name}() argument {at + 1} is not a valid regular expression: {error.msg}"
                    + (f" at position {error.pos}" if error.pos is not None else ""),
                    "a valid regular expression",
                    where,
                ) from None


def is_false(value: Any) -> bool:
    """JMESPath falsiness: null, false, and empty strings, lists and objects (not 0)."""
    if value is None or value is False:
        return True
    return not value if isinstance(value, (str, list, dict)) else False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equals(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool) and _is_number(left) | _is_number(right):
        return False  # JMESPath: true is not 1
    return left == right


_ORDER = {"lt": lambda a, b: a < b, "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b}


def compile_node(node: dict[str, Any], library: functions.Functions) -> Evaluate | None:
    """A closure evaluating node, or None if it uses something outside the subset."""
    kind = node["type"]
    compiled = [compile_node(child, library) for child in node.get("children", [])]
    if kind == "index_expression":
        index_node = node["children"][1]
        indexed = compiled[0]
        if indexed is None or index_node["type"] != "index":
            return None
        index = index_node["value"]

        def at_index(v: Any) -> Any:
            v = indexed(v)
            if not isinstance(v, list) or not -len(v) <= index < len(v):
                return None
            return v[index]

        return at_index
    kids = [k for k in compiled if k is not None]
    if len(kids) < len(compiled):
        return None
    if kind == "field":
        name = node["value"]
        return lambda v: v.get(name) if isinstance(v, dict) else None
    if kind in ("current", "identity"):
        return lambda v: v
    if kind == "literal":
        constant = node["value"]
        return lambda v: constant
    if kind == "subexpression" and all(child["type"] == "field" for child in node["children"]):
        names = [child["value"] for child in node["children"]]

        def path(v: Any) -> Any:  # a.b.c: the commonest expression, in one closure
            for name in names:
                if not isinstance(v, dict):
                    return None
                v = v.get(name)
            return v

        return path
    if kind == "subexpression":

        def subexpression(v: Any) -> Any:
            for step in kids:
                v = step(v)
                if v is None:
                    return None
            return v

        return subexpression
    if kind == "or_expression":
        left, right = kids
        return lambda v: right(v) if is_false(first := left(v)) else first
    if kind == "and_expression":
        left, right = kids
        return lambda v: first if is_false(first := left(v)) else right(v)
    if kind == "not_expression":
        [inner] = kids
        return lambda v: is_false(inner(v))
    if kind == "pipe":
        left, right = kids
        return lambda v: right(left(v))
    if kind == "flatten":
        [inner] = kids

        def flatten(v: Any) -> Any:
            v = inner(v)
            if not isinstance(v, list):
                return None
            out: list[Any] = []
            for item in v:
                out.extend(item) if isinstance(item, list) else out.append(item)
            return out

        return flatten
    if kind == "projection":
        left, right = kids

        def project(v: Any) -> Any:
            base = left(v)
            if not isinstance(base, list):
                return None
            return [r for r in map(right, base) if r is not None]

        return project
    if kind == "filter_projection":
        left, right, condition = kids

        def filter_project(v: Any) -> Any:
            base = left(v)
            if not isinstance(base, list):
                return None
            return [r for item in base if not is_false(condition(item)) and (r := right(item)) is not None]

        return filter_project
    if kind == "multi_select_list":
        return lambda v: None if v is None else [k(v) for k in kids]
    if kind == "comparator":
        left, right = kids
        operator = node["value"]
        texts = [child.get("value") if child["type"] == "literal" else None for child in node["children"]]
        if operator in ("eq", "ne") and any(isinstance(text, str) for text in texts):
            # a text literal on one side: equal only to that text, whatever the other side is
            text, other = (texts[1], left) if isinstance(texts[1], str) else (texts[0], right)
            if operator == "eq":
                return lambda v: other(v) == text
            return lambda v: other(v) != text
        if operator == "eq":
            return lambda v: _equals(left(v), right(v))
        if operator == "ne":
            return lambda v: not _equals(left(v), right(v))
        order = _ORDER[operator]

        def compare(v: Any) -> Any:
            a, b = left(v), right(v)
            return order(a, b) if _is_number(a) and _is_number(b) else None

        return compare
    if kind == "function_expression":
        general = _function(node["value"], kids, library)
        if node["value"] == "contains" and (members := _literal_members(node["children"][0])) is not None:
            listed, search = list(members), kids[1]

            def contains_listed(v: Any) -> Any:  # contains(['Done', 'Closed'], x): one set lookup
                if v is None:  # a multi-select of nothing is null, not a list: as jmespath has it
                    return general(v)
                value = search(v)
                try:
                    return value in members
                except TypeError:  # an object or an array: not hashable, compared one by one
                    return value in listed

            return contains_listed
        return general
    return None


def _literal_members(node: dict[str, Any]) -> frozenset[Any] | None:
    """The texts and numbers of a literal array (`["a", 1]`, or the list ['a', 'b'] of raw
    texts) as a set; None for anything else."""
    if node["type"] == "literal":
        values = node["value"]
    elif node["type"] == "multi_select_list" and all(c["type"] == "literal" for c in node["children"]):
        values = [c["value"] for c in node["children"]]
    else:
        return None
    if not isinstance(values, list) or not all(isinstance(x, (str, int, float)) for x in values):
        return None
    return frozenset(values)


def _function(name: str, kids: list[Evaluate], library: functions.Functions) -> Evaluate:
    """A call: straight to the function when every argument has an allowed type; otherwise
    through jmespath, which checks arity, array element types, and raises its errors."""

    def checked(v: Any) -> Any:
        return library.call_function(name, [k(v) for k in kids])

    spec = library.FUNCTION_TABLE.get(name)
    if spec is None:
        return checked
    signature = spec["signature"]
    if signature and signature[-1].get("variadic") and all(not a["types"] for a in signature):
        # Any values, as many as given (concat, coalesce): jmespath would only count them.
        variadic = spec["function"]
        if len(kids) < len(signature):
            return checked
        return lambda v: variadic(library, *[k(v) for k in kids])
    if len(signature) == 1 == len(kids) and set(signature[0]["types"]) == {"array-number", "array-string"}:
        # min, max, sort: straight to the function for an array of texts only or numbers only
        [argument], direct = kids, spec["function"]

        def uniform(v: Any) -> Any:
            value = argument(v)
            if type(value) is list and (
                all(type(x) is str for x in value) or all(type(x) in (int, float) for x in value)
            ):
                return direct(library, value)
            return library.call_function(name, [value])

        return uniform
    if any(a.get("variadic") or any("-" in t for t in a["types"]) for a in signature):
        return checked
    allowed = [
        frozenset(library._get_allowed_pytypes(a["types"])[0]) if a["types"] else None for a in spec["signature"]
    ]
    function = spec["function"]
    if len(allowed) != len(kids):
        return checked

    def call(v: Any) -> Any:
        args = [k(v) for k in kids]
        for arg, types in zip(args, allowed, strict=False):
            if types is not None and type(arg).__name__ not in types:
                return library.call_function(name, args)
        return function(library, *args)

    return call

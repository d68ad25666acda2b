"""JMESPath expressions compiled to Python closures.

Mapping a backfill evaluates tens of expressions per record; jmespath's tree-walking
interpreter costs more than fetching the record did. The subset mappings use (fields,
indexes, projections, filters, ||, &&, comparisons, functions) compiles here to plain
closures with the same semantics; anything else falls back to jmespath itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmespath import functions

Evaluate = Callable[[Any], Any]


def is_false(value: Any) -> bool:
    """JMESPath falsiness: null, false, and empty strings, lists and objects (not 0)."""
    return value is None or value is False or value == "" or value == [] or value == {}


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
        return _function(node["value"], kids, library)
    return None


def _function(name: str, kids: list[Evaluate], library: functions.Functions) -> Evaluate:
    """A call: straight to the function when every argument has an allowed type; otherwise
    through jmespath, which checks arity, array element types, and raises its errors."""

    def checked(v: Any) -> Any:
        return library.call_function(name, [k(v) for k in kids])

    spec = library.FUNCTION_TABLE.get(name)
    if spec is None or any(a.get("variadic") or any("-" in t for t in a["types"]) for a in spec["signature"]):
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

"""Mappings: YAML that turns a tool's raw records into the product-work model.

A mapping file is validated against its schema (opsync.service.mapping_schema) and compiled
here into rules; every problem is a MappingError naming the file, the line and column, the
field and what was expected. Applying a mapping is a pure function of (raw record, mapping):
no I/O, so it is cheap to run over every stored raw record when a mapping changes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from collections.abc import Mapping as ReadOnly
from pathlib import Path
from typing import Any

import yaml

from opsync.service.entities import ENTITIES
from opsync.service.expressions import Expression, is_false
from opsync.service.functions import FieldType, without_nul
from opsync.service.mapping_schema import (
    KEY_PATTERN,
    MappingError,
    expressions_in,
    given_fields,
    mapping_file,
    never_a_traceback,
)
from opsync.service.rules import (
    ConditionalRule,
    ExtraRule,
    FieldRule,
    LinkRef,
    LinkRule,
    Mapping,
    PersonRef,
    RecordMapping,
    Rule,
    Unified,
    content_hash,
    map_key,
)
from opsync.service.yamlfile import Problem, YamlDocument, dotted, yaml_problem

__all__ = [  # the rules are opsync.service.rules', named here too: where mappings are read
    "ConditionalRule",
    "Expression",
    "ExtraRule",
    "FieldRule",
    "LinkRef",
    "LinkRule",
    "Mapping",
    "MappingError",
    "PersonRef",
    "RecordMapping",
    "Rule",
    "Unified",
    "content_hash",
    "load_mapping",
    "parse_mapping",
    "unmatched_map_keys",
    "without_nul",
]


class _Compiler:
    """A validated mapping file into rules, each remembering where it stands in the file."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def rule(self, path: tuple[Any, ...], name: str, kind: FieldType | None, spec: Any, allowed: Any = None) -> Rule:
        if isinstance(spec, list):
            rules = [self.one(path + (i,), name, kind, s, allowed) for i, s in enumerate(spec)]
            return ConditionalRule(name, kind, rules)
        if isinstance(spec, Expression):
            return FieldRule(name, kind, expression=spec, allowed=allowed, path=dotted(path))
        rule = self.one(path, name, kind, spec, allowed)
        return ConditionalRule(name, kind, [rule]) if rule.when is not None else rule

    def one(self, path: tuple[Any, ...], name: str, kind: FieldType | None, spec: Any, allowed: Any) -> FieldRule:
        if kind == FieldType.PERSON:
            person = {k: getattr(spec, k) for k in ("id", "name", "email", "login") if getattr(spec, k) is not None}
            return FieldRule(name, kind, person=person, when=spec.when, path=dotted(path))
        return FieldRule(
            name,
            kind,
            expression=spec.source,
            value_map=dict(spec.map) if spec.map is not None else None,
            default=spec.default,
            allowed=allowed,
            when=spec.when,
            path=dotted(path),
            map_keys_at={map_key(k): at for k, at in self.doc.key_positions(path + ("map",)).items()},
        )

    def record(self, record_type: str, spec: Any) -> RecordMapping:
        path: tuple[Any, ...] = ("records", record_type)
        declared = ENTITIES[spec.entity].mappable
        fields: list[Rule | ExtraRule] = [
            self.rule(path + ("fields", n), n, declared[n].type, s, declared[n].values)
            for n, s in given_fields(spec.fields).items()
        ]
        extra = getattr(spec, "extra", None)
        if extra:
            at = path + ("extra",)
            fields.append(ExtraRule("extra", {n: self.rule(at + (n,), n, None, s) for n, s in extra.items()}))
        return RecordMapping(
            record_type=record_type,
            entity=spec.entity,
            container=spec.container,
            fields=fields,
            links=[self.link(path + ("links", i), link) for i, link in enumerate(spec.links)],
            product=self.rule(path + ("product",), "product", FieldType.TEXT, spec.product) if spec.product else None,
            when=spec.when,
        )

    def link(self, path: tuple[Any, ...], spec: Any) -> LinkRule:
        if spec.keys_in is not None:
            pattern = spec.pattern or re.compile(KEY_PATTERN)
            return LinkRule(spec.type, spec.to, dict(spec.keys_in), pattern, "inferred")
        key = self.rule(path + ("key",), "key", FieldType.TEXT, spec.key)
        return LinkRule(spec.type, spec.to, {"key": key}, None, "source")


def parse_mapping(
    file: Path | str, text: str, *, fields_by_name: ReadOnly[str, str] | None = None, kind: str | None = None
) -> Mapping:
    """Validate and compile a mapping; every problem found raises one MappingError.

    fields_by_name (the tool's field list, name -> id) resolves field('Story Points'); without
    it such names read nothing, with a warning. kind, when given, is the kind the file must map.
    """
    return never_a_traceback(file, lambda: _parse(file, text, fields_by_name, kind))


def _parse(file: Path | str, text: str, fields_by_name: ReadOnly[str, str] | None, kind: str | None) -> Mapping:
    try:
        doc = YamlDocument(file, text)
    except yaml.YAMLError as error:
        raise MappingError(yaml_problem(file, error)) from None
    model: Any
    model, problems = doc.validate(mapping_file(), {"fields_by_name": fields_by_name})
    problems = doc.problems + problems
    if model is not None and kind is not None and model.kind != kind:
        problems.append(doc.problem(("kind",), f"{model.kind!r} is not {kind}, the kind this file maps", kind))
    if problems or model is None:
        raise MappingError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    records = {t: _Compiler(doc).record(t, spec) for t, spec in model.records.items()}
    unresolved = [(path, name) for path, expression in expressions_in(model) for name in expression.unresolved]
    warnings = [
        doc.problem(path, f"field({name!r}) reads nothing: no field list of the tool was given to resolve it")
        for path, name in unresolved
    ]
    required = {rule.entity: ENTITIES[rule.entity].required for rule in records.values()}
    return Mapping(model.kind, text, records, doc.file, warnings, required)


def load_mapping(file: Path, *, fields_by_name: ReadOnly[str, str] | None = None, kind: str | None = None) -> Mapping:
    try:
        text = Path(file).read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise MappingError(Problem(str(file), "", f"cannot read the mapping ({reason})")) from None
    return parse_mapping(file, text, fields_by_name=fields_by_name, kind=kind)


def unmatched_map_keys(mapping: Mapping, raw_payloads: Iterable[tuple[str, Any]], shown: int = 10) -> list[Problem]:
    """Warnings: each value map's keys that no record's value matched, listing the values seen
    (most frequent first). raw_payloads are (record type, payload) pairs: the stored raw records.
    A record counts where the mapping maps it (its rule's when) and where that rule applies."""
    seen: dict[int, Counter[str]] = {}
    counted: Counter[str] = Counter()
    rules = {t: list(m.value_rules()) for t, m in mapping.records.items()}
    for record_type, payload in raw_payloads:
        record = mapping.records.get(record_type)
        if record is None or (record.when is not None and is_false(record.when(payload))):
            continue
        counted[record_type] += 1
        for rule in rules[record_type]:
            chosen = rule.choose(payload)
            if chosen is not None and chosen.value_map is not None and chosen.expression is not None:
                value = chosen.expression(payload)
                seen.setdefault(id(chosen), Counter()).update([map_key(value)] if value is not None else [])
    warnings = []
    for record_type in (t for t in rules if counted[t]):
        for chosen in (c for r in rules[record_type] for c in (r.rules if isinstance(r, ConditionalRule) else [r])):
            values = seen.get(id(chosen), Counter())
            listed = ", ".join(f"{v!r} ({n})" for v, n in values.most_common(shown))
            listed += f" and {len(values) - shown} more" if len(values) > shown else ""
            for key in [k for k in chosen.value_map or {} if k not in values and chosen.expression is not None]:
                message = f"{key!r} matches no value of the {counted[record_type]} stored {record_type} records; " + (
                    f"the values seen: {listed}" if values else "this rule gave none a value"
                )
                line, column = chosen.map_keys_at.get(key, (None, None))
                path = f"{chosen.path}.map.{key}"
                warnings.append(Problem(mapping.file, path, message, "a value the tool sends", line, column))
    return warnings

"""Mappings: YAML that turns a tool's raw records into the product-work model.

A mapping file is validated against its schema (opsync.service.mapping_schema) and compiled
here into rules; every problem is a MappingError naming the file, the line and column, the
field and what was expected. Applying a mapping is a pure function of (raw record, mapping):
no I/O, so it is cheap to run over every stored raw record when a mapping changes.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from collections.abc import Mapping as ReadOnly
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from opsync.service.contract import RawRecord
from opsync.service.entities import ENTITIES
from opsync.service.entity import FieldType
from opsync.service.expressions import Expression, is_false
from opsync.service.functions import SCAN_LIMIT, as_field_type, without_nul
from opsync.service.mapping_schema import (
    KEY_PATTERN,
    MappingError,
    expressions_in,
    given_fields,
    map_key,
    mapping_file,
    never_a_traceback,
)
from opsync.service.yamlfile import Problem, YamlDocument, dotted, yaml_problem


@dataclass(frozen=True)
class PersonRef:
    external_id: str
    display_name: str | None = None
    email: str | None = None
    login: str | None = None


@dataclass(frozen=True)
class LinkRef:
    type: str
    to_entity: str
    to_key: str
    origin: str
    evidence: str


@dataclass
class Unified:
    """A record in the product-work model, ready for the store."""

    entity: str
    external_id: str
    version: datetime | None
    product_key: str | None
    values: dict[str, Any]
    people: dict[str, PersonRef | None]
    links: list[LinkRef]
    content_hash: str = ""
    container: str | None = None  # the tool's project or repository, as the mapping names it


@dataclass
class FieldRule:
    """One field's value: an expression, or from/map/default, or a person's expressions.
    type None keeps the value as the tool gives it (an extra field)."""

    name: str
    type: FieldType | None
    expression: Expression | None = None
    value_map: dict[str, Any] | None = None
    default: Any = None
    person: dict[str, Expression] | None = None
    allowed: tuple[str, ...] | None = None  # an enumerated field's values
    when: Expression | None = None  # in a list of rules: where this one applies
    path: str = ""  # where it stands in the file, for warnings
    map_keys_at: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # key -> line, column

    def __call__(self, record: Any) -> Any:
        return self.apply(record)

    def choose(self, record: Any) -> FieldRule | None:
        return self

    def apply(self, record: Any) -> Any:
        if self.person is not None:
            values = {k: without_nul(e(record)) for k, e in self.person.items()}
            if values.get("id") in (None, ""):
                return None
            return PersonRef(str(values["id"]), values.get("name"), values.get("email"), values.get("login"))
        value = self.expression.evaluate(record) if self.expression else None
        if self.value_map is not None:
            value = self.value_map.get(map_key(value), self.default) if value is not None else self.default
        elif value is None:
            value = self.default
        value = as_field_type(self.type, value) if self.type is not None else without_nul(value)
        if self.allowed and value not in self.allowed:
            return self.default
        return value


@dataclass
class ConditionalRule:
    """A field given as rules with when: the first whose when holds applies; none, no value."""

    name: str
    type: FieldType | None
    rules: list[FieldRule]

    def choose(self, record: Any) -> FieldRule | None:
        for rule in self.rules:
            if rule.when is None or not is_false(rule.when(record)):
                return rule
        return None

    def apply(self, record: Any) -> Any:
        rule = self.choose(record)
        return rule.apply(record) if rule is not None else None


@dataclass
class ExtraRule:
    """The extra object: name -> value, each kept as the tool gives it."""

    name: str
    values: dict[str, FieldRule | ConditionalRule]
    type: FieldType = FieldType.OBJECT

    def apply(self, record: Any) -> Any:
        return {name: rule.apply(record) for name, rule in self.values.items()}


Rule = FieldRule | ConditionalRule


@dataclass
class LinkRule:
    type: str
    to_entity: str
    sources: dict[str, Any]  # evidence label -> an Expression giving text to scan, or the key's rule
    pattern: re.Pattern[str] | None
    origin: str

    def apply(self, record: Any) -> list[LinkRef]:
        found: dict[str, str] = {}
        for label, expression in self.sources.items():
            value = (
                expression.apply(record) if isinstance(expression, (FieldRule, ConditionalRule)) else expression(record)
            )
            if not isinstance(value, str) or not value:
                continue
            # A pattern scans the first SCAN_LIMIT characters: a title, branch or body is a tool's.
            keys = self.pattern.findall(value[:SCAN_LIMIT]) if self.pattern else [value]
            for key in keys:
                found.setdefault(key, f"{key} named in {label}" if self.pattern else f"{label} is {key}")
        return [LinkRef(self.type, self.to_entity, k, self.origin, e) for k, e in found.items()]


@dataclass
class RecordMapping:
    record_type: str
    entity: str
    container: Expression
    fields: list[Rule | ExtraRule]
    links: list[LinkRule] = field(default_factory=list)
    product: Rule | None = None  # the product key itself, instead of the portfolio's by container
    when: Expression | None = None  # only records where it is true are mapped; the others stay raw

    def value_rules(self) -> Iterable[Rule]:
        """Every rule that gives a value: fields, extra fields, the product, link keys."""
        for rule in self.fields:
            yield from rule.values.values() if isinstance(rule, ExtraRule) else [rule]
        if self.product is not None:
            yield self.product
        for link in self.links:
            yield from (s for s in link.sources.values() if isinstance(s, (FieldRule, ConditionalRule)))


@dataclass
class Mapping:
    kind: str
    source: str  # the YAML text, stored as a version when applied
    records: dict[str, RecordMapping]
    file: str = ""
    warnings: list[Problem] = field(default_factory=list)  # what loads, but may not be meant

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def maps(self, raw: RawRecord) -> bool:
        """Whether raw becomes a record: its type has a rule, whose `when` (if any) holds."""
        rule = self.records.get(raw.record_type)
        return rule is not None and (rule.when is None or not is_false(rule.when(raw.payload)))

    def keeps(self, unified: Unified) -> bool:
        """Whether a mapped record has every field its kind requires (FieldSpec.required): a
        record the mapping gives no name or day where its kind needs one stays raw."""
        return all(unified.values.get(name) is not None for name in ENTITIES[unified.entity].required)

    def apply(self, raw: RawRecord, portfolio: dict[str, str], people: dict[str, str] | None = None) -> Unified:
        """Normalise one raw record; portfolio maps container -> product key, people maps
        account names (for tools whose payloads carry no email) -> email."""
        rule = self.records[raw.record_type]
        values: dict[str, Any] = {}
        persons: dict[str, PersonRef | None] = {}
        for field_rule in rule.fields:
            value = field_rule.apply(raw.payload)
            if field_rule.type == FieldType.PERSON:
                if value is not None and value.email is None and people:
                    email = people.get((value.login or value.external_id).lower())
                    value = replace(value, email=email) if email else value
                persons[field_rule.name] = value
            else:
                values[field_rule.name] = value
        links = [link for link_rule in rule.links for link in link_rule.apply(raw.payload)]
        container = rule.container(raw.payload)
        if rule.product is not None:
            product = rule.product.apply(raw.payload)
        else:
            product = portfolio.get(str(container).lower()) if container is not None else None
        unified = Unified(
            entity=rule.entity,
            external_id=raw.external_id,
            version=raw.version,
            product_key=product,
            values=values,
            people=persons,
            links=links,
            container=str(container) if container is not None else None,
        )
        unified.content_hash = content_hash(unified)
        return unified


def content_hash(unified: Unified) -> str:
    body = orjson.dumps(
        [unified.product_key, unified.values, unified.people, unified.links],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(body).hexdigest()


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
    return Mapping(model.kind, text, records, doc.file, warnings)


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

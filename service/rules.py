"""A compiled mapping: the rules that turn a tool's raw record into a record of the
product-work model (opsync.service.mapping reads and checks the YAML they come from).

Applying them is a pure function of (raw record, rules): no I/O. This module imports no
database code, so that a mapper process (opsync.service.mapper) loads it alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from opsync.service.contract import RawRecord
from opsync.service.expressions import Expression, is_false
from opsync.service.functions import SCAN_LIMIT, FieldType, as_field_type, without_nul
from opsync.service.yamlfile import Problem


def map_key(value: Any) -> Any:
    """The text a value map's key stands for, and that a tool's value is looked up by: YAML's
    and JSON's true, 3 and 3.0 are 'true', '3' and '3' (null stays null: no key is null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) or value is None else str(value)


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
    required: dict[str, tuple[str, ...]] = field(default_factory=dict)  # entity -> fields it requires

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
        return all(unified.values.get(name) is not None for name in self.required.get(unified.entity, ()))

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

    def map_page(
        self, raws: list[RawRecord], portfolio: dict[str, str], people: dict[str, str] | None, where: str
    ) -> tuple[list[tuple[int, Unified]], list[str]]:
        """Each raw record this mapping makes a record of, with its position in raws, and the
        errors (where: the connection, to name in them): a record the mapping cannot read is
        an error and does not stop the others."""
        mapped, errors = [], []
        for index, raw in enumerate(raws):
            if raw.record_type not in self.records:
                errors.append(f"{where}: no mapping for record type {raw.record_type!r} in {self.kind}.yaml")
                continue
            try:
                if not self.maps(raw):  # the rule's `when` leaves it raw
                    continue
                unified = self.apply(raw, portfolio, people)
                if self.keeps(unified):  # else a field its kind requires is missing: it stays raw
                    mapped.append((index, unified))
            except Exception as error:  # a record the mapping cannot read must not stop the page
                errors.append(f"{where}: {raw.record_type} {raw.external_id}: {error}")
        return mapped, errors


def content_hash(unified: Unified) -> str:
    body = orjson.dumps(
        [unified.product_key, unified.values, unified.people, unified.links],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(body).hexdigest()


def canonical_bytes(payload: Any) -> bytes:
    """A payload serialised with sorted keys, as it is stored and hashed (versions.canonical_json)."""
    serialized = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    if b"\\u0000" in serialized:  # rare: a NUL character, which JSONB cannot hold
        serialized = orjson.dumps(without_nul(payload), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return serialized

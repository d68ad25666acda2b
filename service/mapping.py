"""Mappings: YAML that turns a tool's raw records into the product-work model.

Applying a mapping is a pure function of (raw record, mapping): no I/O, so it is
cheap to run over every stored raw record when a mapping changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jmespath
import orjson
import yaml
from jmespath.exceptions import JMESPathError

from opsync.service.contract import RawRecord
from opsync.service.entities import ENTITIES
from opsync.service.entity import FieldType
from opsync.service.expressions import compile_node
from opsync.service.functions import FUNCTIONS, SCAN_LIMIT
from opsync.service.yamlfile import YamlDocument, yaml_error_message

TEXT, NUMBER, INTEGER, TIME, DATE, LIST, OBJECT, PERSON = (
    FieldType.TEXT,
    FieldType.NUMBER,
    FieldType.INTEGER,
    FieldType.TIME,
    FieldType.DATE,
    FieldType.LIST,
    FieldType.OBJECT,
    FieldType.PERSON,
)
RECORD_RULE_KEYS = {"entity", "container", "fields", "links", "product", "when"}
LINK_TYPES = ("parent", "implements", "specifies", "measures", "blocks", "relates", "mentions")
KEY_PATTERN = r"\b[A-Z][A-Z0-9]{1,9}-[1-9][0-9]*\b"  # PROJECT-123, the keys trackers hand out
_OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)


class MappingError(Exception):
    """A mapping file problem, naming the file, the line and the field."""


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


class Expression:
    def __init__(self, source: str, where: str) -> None:
        self.source = source
        try:
            self._compiled = jmespath.compile(source)
        except JMESPathError as error:
            raise MappingError(f"{where}: {source!r} is not a valid JMESPath expression ({error})") from None

        self._fast = compile_node(self._compiled.parsed, FUNCTIONS)

    def __call__(self, record: Any) -> Any:
        if self._fast is not None:
            return self._fast(record)
        return self._compiled.search(record, options=_OPTIONS)


@dataclass
class FieldRule:
    name: str
    type: FieldType
    expression: Expression | None = None
    value_map: dict[str, Any] | None = None
    default: Any = None
    person: dict[str, Expression] | None = None
    allowed: tuple[str, ...] | None = None  # an enumerated field's values

    def __call__(self, record: Any) -> Any:
        return self.apply(record)

    def apply(self, record: Any) -> Any:
        if self.person is not None:
            values = {k: without_nul(e(record)) for k, e in self.person.items()}
            if values.get("id") in (None, ""):
                return None
            return PersonRef(str(values["id"]), values.get("name"), values.get("email"), values.get("login"))
        value = self.expression(record) if self.expression else None
        if self.value_map is not None:
            value = self.value_map.get(str(value), self.default) if value is not None else self.default
        elif value is None:
            value = self.default
        value = _convert(self.type, value)
        if self.allowed and value not in self.allowed:
            return self.default
        return value


@dataclass
class LinkRule:
    type: str
    to_entity: str
    sources: dict[str, Callable[[Any], Any]]  # evidence label -> what yields text to scan, or the key
    pattern: re.Pattern[str] | None
    origin: str

    def apply(self, record: Any) -> list[LinkRef]:
        found: dict[str, str] = {}
        for label, expression in self.sources.items():
            value = expression(record)
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
    fields: list[FieldRule]
    links: list[LinkRule] = field(default_factory=list)
    product: FieldRule | None = None  # the product key itself, instead of the portfolio's by container
    when: Expression | None = None  # only records where it is true are mapped; the others stay raw


@dataclass
class Mapping:
    kind: str
    source: str  # the YAML text, stored as a version when applied
    records: dict[str, RecordMapping]

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    def maps(self, raw: RawRecord) -> bool:
        """Whether raw becomes a record: its type has a rule, whose `when` (if any) holds."""
        rule = self.records.get(raw.record_type)
        return rule is not None and (rule.when is None or bool(rule.when(raw.payload)))

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
        directory = people
        for field_rule in rule.fields:
            value = field_rule.apply(raw.payload)
            if field_rule.type == PERSON:
                if value is not None and value.email is None and directory:
                    email = directory.get((value.login or value.external_id).lower())
                    value = replace(value, email=email) if email else value
                persons[field_rule.name] = value
            else:
                values[field_rule.name] = value
        links = [link for link_rule in rule.links for link in link_rule.apply(raw.payload)]
        container = rule.container(raw.payload)
        unified = Unified(
            entity=rule.entity,
            external_id=raw.external_id,
            version=raw.version,
            product_key=rule.product.apply(raw.payload)
            if rule.product
            else portfolio.get(str(container).lower())
            if container is not None
            else None,
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


def _convert(kind: FieldType, value: Any) -> Any:
    if value is None:
        return None
    if kind == TEXT:
        text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        return without_nul(text)
    if kind == NUMBER:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == INTEGER:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == TIME:
        return parse_time(value)
    if kind == DATE:
        moment = parse_time(value)
        return moment.date() if moment is not None else None
    if kind == LIST:
        items = value if isinstance(value, list) else [value]
        return sorted({without_nul(str(v)) for v in items if v is not None})
    if kind == OBJECT:
        return without_nul(value) if isinstance(value, dict) else None
    return value


def parse_time(value: Any) -> datetime | None:
    """Tool timestamps: ISO 8601 ('Z', '+00:00', '+0000'), dates, epoch seconds or ms."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _require(doc: YamlDocument, path: tuple[Any, ...], value: Any, kind: type, expected: str) -> Any:
    if not isinstance(value, kind):
        raise MappingError(f"{doc.where(path)}: expected {expected}, got {type(value).__name__}")
    return value


def _field_rule(doc: YamlDocument, path: tuple[Any, ...], entity: str, name: str, spec: Any) -> FieldRule:
    declared = ENTITIES[entity].mappable
    if name not in declared:
        raise MappingError(f"{doc.where(path)}: {entity} has no field {name!r}; expected one of {', '.join(declared)}")
    kind, allowed = declared[name].type, declared[name].values
    where = doc.where(path)
    if kind == PERSON:
        spec = _require(doc, path, spec, dict, "a mapping with id, name, email, login expressions")
        unknown = set(spec) - {"id", "name", "email", "login"}
        if unknown or "id" not in spec:
            raise MappingError(f"{where}: a person takes id (required), name, email, login; got {', '.join(spec)}")
        return FieldRule(name, kind, person={k: Expression(str(v), doc.where(path + (k,))) for k, v in spec.items()})
    return _value_rule(doc, path, name, kind, allowed, spec)


def _value_rule(
    doc: YamlDocument, path: tuple[Any, ...], name: str, kind: FieldType, allowed: tuple[str, ...] | None, spec: Any
) -> FieldRule:
    """A value: an expression, or from (an expression), map (value -> value) and default."""
    where = doc.where(path)
    if isinstance(spec, str):
        return FieldRule(name, kind, expression=Expression(spec, where), allowed=allowed)
    spec = _require(doc, path, spec, dict, "an expression, or a mapping with from, map, default")
    unknown = set(spec) - {"from", "map", "default"}
    if unknown:
        raise MappingError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected from, map, default")
    expression = Expression(str(spec["from"]), doc.where(path + ("from",))) if "from" in spec else None
    value_map = spec.get("map")
    if value_map is not None:
        value_map = {
            str(k): v for k, v in _require(doc, path + ("map",), value_map, dict, "a mapping of values").items()
        }
    if allowed:
        for source, target in [*(value_map or {}).items(), ("default", spec.get("default"))]:
            if target is not None and target not in allowed:
                at = path + (("map", source) if source != "default" else ("default",))
                raise MappingError(f"{doc.where(at)}: {target!r} is not one of {', '.join(allowed)}")
    return FieldRule(
        name, kind, expression=expression, value_map=value_map, default=spec.get("default"), allowed=allowed
    )


def _link_rule(doc: YamlDocument, path: tuple[Any, ...], spec: Any) -> LinkRule:
    spec = _require(doc, path, spec, dict, "a link rule (type, to, and key or keys_in)")
    if spec.get("type") not in LINK_TYPES:
        raise MappingError(f"{doc.where(path + ('type',))}: {spec.get('type')!r} is not one of {', '.join(LINK_TYPES)}")
    to_entity = spec.get("to")
    if to_entity not in ENTITIES:
        raise MappingError(
            f"{doc.where(path + ('to',))}: expected the kind of record linked to, one of {', '.join(ENTITIES)};"
            f" got {to_entity!r}"
        )
    if "keys_in" in spec:
        sources = _require(doc, path + ("keys_in",), spec["keys_in"], dict, "a mapping of label: expression")
        pattern = re.compile(spec.get("pattern", KEY_PATTERN))
        origin = "inferred"
        compiled: dict[str, Callable[[Any], Any]] = {
            label: Expression(str(e), doc.where(path + ("keys_in", label))) for label, e in sources.items()
        }
        return LinkRule(spec["type"], to_entity, compiled, pattern, origin)
    if "key" in spec:  # an expression, or from/map/default like a field
        key = _value_rule(doc, path + ("key",), "key", TEXT, None, spec["key"])
        return LinkRule(spec["type"], to_entity, {"key": key}, None, "source")
    raise MappingError(f"{doc.where(path)}: a link rule needs key (an expression) or keys_in (texts to scan)")


def parse_mapping(file: Path | str, text: str) -> Mapping:
    """Validate and compile a mapping; every problem raises MappingError."""
    try:
        doc = YamlDocument(file, text)
    except yaml.YAMLError as error:
        raise MappingError(yaml_error_message(file, error)) from None
    data = _require(doc, (), doc.data, dict, "a mapping with kind and records")
    kind = _require(doc, ("kind",), data.get("kind"), str, "the connector kind it maps")
    records = _require(doc, ("records",), data.get("records"), dict, "a mapping of record type to rules")
    compiled: dict[str, RecordMapping] = {}
    for record_type, spec in records.items():
        path: tuple[Any, ...] = ("records", record_type)
        spec = _require(doc, path, spec, dict, "entity, container and fields")
        unknown = set(spec) - RECORD_RULE_KEYS
        if unknown:
            raise MappingError(
                f"{doc.where(path + (sorted(unknown)[0],))}: unknown key {sorted(unknown)[0]!r}; expected"
                f" {', '.join(sorted(RECORD_RULE_KEYS))}"
            )
        entity = spec.get("entity")
        if entity not in ENTITIES:
            raise MappingError(f"{doc.where(path + ('entity',))}: {entity!r} is not one of {', '.join(ENTITIES)}")
        fields = _require(doc, path + ("fields",), spec.get("fields"), dict, "a mapping of field: expression")
        container = _require(
            doc, path + ("container",), spec.get("container"), str, "an expression naming the container"
        )
        compiled[record_type] = RecordMapping(
            record_type=record_type,
            entity=entity,
            container=Expression(container, doc.where(path + ("container",))),
            fields=[_field_rule(doc, path + ("fields", n), entity, n, s) for n, s in fields.items()],
            links=[_link_rule(doc, path + ("links", i), s) for i, s in enumerate(spec.get("links") or [])],
            product=_value_rule(doc, path + ("product",), "product", TEXT, None, spec["product"])
            if "product" in spec
            else None,
            when=Expression(str(spec["when"]), doc.where(path + ("when",))) if "when" in spec else None,
        )
    return Mapping(kind=kind, source=text, records=compiled)


def load_mapping(file: Path) -> Mapping:
    try:
        text = file.read_text()
    except OSError as error:
        raise MappingError(f"{file}: cannot read the mapping ({error.strerror})") from None
    return parse_mapping(file, text)

"""The schema of a tool's mapping file, derived from the entity registry: which kinds of record
there are, their fields, each field's type and enumerated values.

    kind: jira                        # the connector kind it maps
    records:
      issue:                          # a record type the connector hands over
        entity: work_item             # the kind of record it becomes
        container: fields.project.key
        when: <expression>            # optional: only records where it holds are mapped
        product: <value>              # optional: the product key, instead of the portfolio's
        fields:
          title: fields.summary       # an expression...
          kind:                       # ...or a rule: from, map (value: value), default...
            from: fields.issuetype.name
            map: {Story: story, Bug: bug}
            default: other
          status_category:            # ...or rules, the first whose `when` holds applies
            - when: "fields.project.key == 'OPS'"
              from: fields.status.name
              map: {Triage: todo, Fixing: in_progress, Shipped: done}
            - from: fields.status.statusCategory.key
              map: {new: todo, indeterminate: in_progress, done: done}
          assignee: {id: fields.assignee.accountId, name: fields.assignee.displayName}
        extra:                        # kept as the tool gives them, in the record's extra object
          team: fields.field('Team').value
        links:
          - {type: parent, to: work_item, key: fields.parent.key}
          - {type: implements, to: work_item, keys_in: {title: title}, pattern: '[A-Z]+-[0-9]+'}

Expressions are checked and compiled as they are validated (opsync.service.expressions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    StringConstraints,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from opsync.service.entities import ENTITIES
from opsync.service.entity import Entity, FieldSpec, FieldType
from opsync.service.expressions import Expression, ExpressionError
from opsync.service.rules import map_key
from opsync.service.yamlfile import Problem, described

LINK_TYPES = ("parent", "implements", "specifies", "measures", "blocks", "relates", "mentions")
KEY_PATTERN = r"\b[A-Z][A-Z0-9]{1,9}-[1-9][0-9]*\b"  # PROJECT-123, the keys trackers hand out
EXPRESSION = "an expression (JMESPath, in quotes where YAML needs them)"
T = TypeVar("T")


class MappingError(Exception):
    """A mapping file that cannot be used: every problem found, each naming the file, the line
    and column, the field, and what was expected."""

    def __init__(self, problems: str | Problem | Sequence[Problem]) -> None:
        if isinstance(problems, str):
            self.problems: list[Problem] = []
            super().__init__(problems)
            return
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def never_a_traceback(file: Path | str, load: Callable[[], T]) -> T:
    """load(), with whatever it raises that is no MappingError said as one: a file people edit
    must never crash whoever loads it (a YAML nested past Python's recursion limit, say)."""
    try:
        return load()
    except MappingError:
        raise
    except RecursionError:
        raise MappingError(Problem(str(file), "", "cannot be loaded: it nests too deeply")) from None
    except Exception as error:
        raise MappingError(Problem(str(file), "", f"cannot be loaded: {type(error).__name__}: {error}")) from error


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)


def _validators(**checks: Callable[[Any], Any]) -> dict[str, Any]:
    """create_model's __validators__: each check runs on the model once its fields are valid."""
    return {name: model_validator(mode="after")(check) for name, check in checks.items()}


def problem(message: str, expected: str | None = None, **context: Any) -> PydanticCustomError:
    """A validation error with our message; context may say where further in (at) and at
    which character of the value (offset)."""
    return PydanticCustomError("mapping", "{message}", {"message": message, "expected": expected, **context})


def _expression(value: Any, info: ValidationInfo) -> Expression:
    if not isinstance(value, str):
        raise problem(f"expected {EXPRESSION}; got {described(value)}", EXPRESSION)
    try:
        return Expression(value, fields_by_name=(info.context or {}).get("fields_by_name"))
    except ExpressionError as error:
        raise problem(error.message, error.expected, offset=error.offset) from None


def _pattern(value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise problem(f"expected a regular expression; got {described(value)}", "a regular expression")
    try:
        return re.compile(value)
    except re.error as error:
        raise problem(
            f"not a valid regular expression: {error.msg} at position {error.pos}",
            "a valid regular expression",
            offset=error.pos,
        ) from None


ExpressionText = Annotated[
    Expression, PlainValidator(_expression), WithJsonSchema({"type": "string", "description": EXPRESSION})
]
Pattern = Annotated[re.Pattern[str], PlainValidator(_pattern), WithJsonSchema({"type": "string", "format": "regex"})]


MapKey = Annotated[str, BeforeValidator(map_key)]

# What a rule's map and default may give, by the type of the field it sets.
_TARGETS: dict[FieldType, tuple[tuple[type, ...], str, dict[str, Any]]] = {
    FieldType.TEXT: ((str, int, float), "text", {"type": ["string", "number"]}),
    FieldType.NUMBER: ((int, float), "a number", {"type": "number"}),
    FieldType.INTEGER: ((int,), "a whole number", {"type": "integer"}),
    FieldType.TIME: ((str,), "a time in quotes ('2026-11-02T09:00:00Z')", {"type": "string"}),
    FieldType.DATE: ((str,), "a date in quotes ('2026-11-02')", {"type": "string"}),
    FieldType.LIST: ((str, list), "text or a list of texts", {"type": ["string", "array"]}),
    FieldType.OBJECT: ((dict,), "a mapping", {"type": "object"}),
}


def _target(field_type: FieldType | None, values: tuple[str, ...] | None) -> tuple[Any, str]:
    """What a rule's map and default may give, by the type (and values) of the field it sets."""
    kinds: tuple[type, ...]
    schema: dict[str, Any]
    if values:
        kinds, expected, schema = (str,), f"one of {', '.join(values)}", {"enum": list(values)}
    elif field_type is None:
        kinds, expected, schema = (), "a value", {}
    else:
        kinds, expected, schema = _TARGETS[field_type]

    def check(value: Any) -> Any:
        if values and value not in values:
            raise problem(f"{value!r} is not {expected}", expected)
        wrong = isinstance(value, bool) or (isinstance(value, list) and not all(isinstance(v, str) for v in value))
        if kinds and (wrong or not isinstance(value, kinds)):
            raise problem(f"expected {expected}; got {described(value)}", expected)
        return value

    return Annotated[Any, PlainValidator(check), WithJsonSchema(schema)], expected


def _rule_model(name: str, target: Any, expected: str) -> type[BaseModel]:
    """A value rule: from (an expression), map (value: value), default; when in a list of rules."""

    def needs_a_source(rule: Any) -> Any:
        if rule.source is None and rule.map is not None:
            raise problem("a map needs from: the expression whose values it maps", EXPRESSION, at=("from",))
        if rule.source is None and rule.default is None:
            raise problem("a rule needs from (an expression) or a default", "from or default")
        return rule

    return create_model(
        name,
        __base__=Strict,
        __validators__=_validators(needs_a_source=needs_a_source),
        when=(ExpressionText | None, Field(None, description="an expression: the rule applies where it holds")),
        source=(ExpressionText | None, Field(None, alias="from", description="the expression whose value is taken")),
        map=(dict[MapKey, target] | None, Field(None, description=f"a mapping of the tool's values to {expected}")),
        default=(target | None, Field(None, description=f"{expected}, where from gives nothing the map names")),
    )


class PersonRule(Strict):
    """A tool account: its id, and what the tool says of its name, email and login."""

    when: ExpressionText | None = Field(None, description="an expression: the rule applies where it holds")
    id: ExpressionText = Field(description="an expression giving the account's id in the tool")
    name: ExpressionText | None = Field(None, description="an expression giving the person's name")
    email: ExpressionText | None = Field(None, description="an expression giving the person's email")
    login: ExpressionText | None = Field(None, description="an expression giving the account's login")


def _every_rule_but_the_last_has_a_when(rules: list[Any]) -> list[Any]:
    if not rules:
        raise problem("an empty list of rules", "at least one rule")
    for index, rule in enumerate(rules[:-1]):
        if rule.when is None:
            raise problem(
                f"rule {index + 1} of {len(rules)} has no when, so the rules after it never apply;"
                " only the last rule may go without one",
                "a when on every rule but the last",
                at=(index,),
            )
    return rules


def _spec(rule: type[BaseModel], expression: bool, expected: str) -> Any:
    """An expression (where allowed), one rule, or a list of rules with when."""

    def shape(value: Any) -> str | None:
        if isinstance(value, str):
            return "expression" if expression else None
        return "rule" if isinstance(value, dict) else "rules" if isinstance(value, list) else None

    members: list[Any] = [
        Annotated[rule, Tag("rule")],
        Annotated[list[rule], AfterValidator(_every_rule_but_the_last_has_a_when), Tag("rules")],  # type: ignore[valid-type]
    ]
    if expression:
        members.insert(0, Annotated[ExpressionText, Tag("expression")])
    return Annotated[
        Union[tuple(members)],  # noqa: UP007 (built from a list)
        Discriminator(shape, custom_error_type="shape", custom_error_message=expected),
        Field(description=expected),
    ]


@cache
def value_spec(field_type: FieldType | None, values: tuple[str, ...] | None = None, label: str = "Text") -> Any:
    """The schema of a value: field_type None is a value kept as the tool gives it."""
    target, expected = _target(field_type, values)
    rule = _rule_model(f"{label}Rule", target, expected)
    return _spec(rule, True, f"{EXPRESSION}, a rule (from, map, default) or a list of rules with when")


def _field_spec(entity: Entity, name: str, spec: FieldSpec) -> Any:
    if spec.type is FieldType.PERSON:
        return _spec(PersonRule, False, "a person (id, name, email, login) or a list of them with when")
    label = entity.schema_name + "".join(p.capitalize() for p in name.split("_")) if spec.values else spec.type.title()
    return value_spec(spec.type, spec.values, label)


def _one_of(values: tuple[str, ...]) -> Any:
    return Literal[values]


@cache
def link_rule() -> type[BaseModel]:
    def key_or_keys_in(rule: Any) -> Any:
        if (rule.key is None) == (rule.keys_in is None):
            raise problem(
                "a link rule needs key (an expression giving the key linked to) or keys_in (texts to scan"
                " for keys), one of the two",
                "key or keys_in",
            )
        if rule.pattern is not None and rule.keys_in is None:
            raise problem("pattern scans the texts of keys_in; this rule has none", "keys_in", at=("pattern",))
        return rule

    return create_model(
        "LinkRule",
        __base__=Strict,
        __validators__=_validators(key_or_keys_in=key_or_keys_in),
        type=(_one_of(LINK_TYPES), Field(description="what the link says")),
        to=(_one_of(tuple(ENTITIES)), Field(description="the kind of record linked to")),
        key=(value_spec(FieldType.TEXT) | None, Field(None, description="the key of the record linked to")),
        keys_in=(
            dict[str, ExpressionText] | None,
            Field(None, description="label: expression giving text to scan for keys"),
        ),
        pattern=(Pattern | None, Field(None, description="a regular expression matching a key in those texts")),
    )


def _fields_model(entity: Entity) -> type[BaseModel]:
    # Python names field_<name>: a field called schema or copy must not shadow BaseModel's.
    definitions: dict[str, Any] = {
        f"field_{name}": (_field_spec(entity, name, spec), Field(None, alias=name, description=spec.description))
        for name, spec in entity.mappable.items()
    }
    return create_model(f"{entity.schema_name}Fields", __base__=Strict, **definitions)


def _record_rule(entity: Entity) -> type[BaseModel]:
    definitions: dict[str, Any] = {
        "entity": (_one_of((entity.name,)), Field(description="the kind of record it becomes")),
        "container": (ExpressionText, Field(description="an expression naming the tool's container")),
        "when": (ExpressionText | None, Field(None, description="an expression: only records where it holds map")),
        "product": (value_spec(FieldType.TEXT) | None, Field(None, description="the product key")),
        "fields": (_fields_model(entity), Field(description=f"a mapping of a {entity.label}'s fields to values")),
        "links": (list[link_rule()], Field([], description="links to other records")),  # type: ignore[misc]
    }
    keeps_extra = entity.mappable.get("extra")
    if keeps_extra is not None and keeps_extra.type is FieldType.OBJECT:
        definitions["extra"] = (
            dict[str, value_spec(None, None, "Extra")] | None,  # type: ignore[misc]
            Field(None, description="name: value kept as the tool gives it, in the record's extra object"),
        )

    def extra_once(rule: Any) -> Any:
        if getattr(rule, "extra", None) and rule.fields.field_extra is not None:
            raise problem("extra is mapped twice, under fields and here: keep one", "extra given once", at=("extra",))
        return rule

    return create_model(
        f"{entity.schema_name}Rule",
        __base__=Strict,
        __validators__=_validators(extra_once=extra_once),
        **definitions,
    )


@cache
def mapping_file() -> type[BaseModel]:
    """The schema of a tool's mapping file (model_json_schema() gives it as JSON Schema)."""
    rules = [_record_rule(entity) for entity in ENTITIES.values()]
    record_rule: Any = Annotated[Union[tuple(rules)], Field(discriminator="entity")] if len(rules) > 1 else rules[0]  # noqa: UP007
    kind: Any = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")]
    records: Any = Annotated[dict[str, record_rule], Field(min_length=1)]
    return create_model(
        "MappingFile",
        __base__=Strict,
        kind=(kind, Field(description="the connector kind it maps, a lower-case name such as jira")),
        records=(records, Field(description="a mapping of the tool's record types to rules (issue: {entity: ...})")),
    )


def given_fields(fields: BaseModel) -> dict[str, Any]:
    """name -> spec of the fields a record rule maps, in the file's order."""
    given = fields.model_fields_set
    return {n.removeprefix("field_"): getattr(fields, n) for n in type(fields).model_fields if n in given}


def expressions_in(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Expression]]:
    """Every expression of a validated mapping, with its path in the file."""
    if isinstance(value, Expression):
        yield path, value
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            yield from expressions_in(getattr(value, name), path + (info.alias or name,))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from expressions_in(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from expressions_in(item, path + (index,))

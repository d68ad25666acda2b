"""Mappings: validation errors people can act on, and compiled expressions that agree with JMESPath."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jmespath
import pytest
from hypothesis import given
from hypothesis import strategies as st

from opsync import mappings
from opsync.service.contract import RawRecord
from opsync.service.expressions import compile_node
from opsync.service.functions import FUNCTIONS, adf_to_text
from opsync.service.mapping import _OPTIONS, FieldRule, MappingError, load_mapping, parse_mapping

SHIPPED = Path(mappings.__file__).parent


def _expressions(mapping):
    def of(value_rule):
        return [value_rule.expression] if value_rule.expression else (value_rule.person or {}).values()

    for rule in mapping.records.values():
        yield rule.container
        for field in rule.fields:
            yield from of(field)
        for link in rule.links:
            for source in link.sources.values():
                yield from of(source) if isinstance(source, FieldRule) else [source]


def test_every_shipped_mapping_validates():
    for name in ("jira", "github"):
        assert load_mapping(SHIPPED / f"{name}.yaml").kind == name


def test_compiled_expressions_agree_with_jmespath_on_every_real_payload(shared_fixtures):
    payloads = []
    for file in sorted(shared_fixtures.glob("*/webhooks/*/*.json")):
        body = json.loads(file.read_text())
        if isinstance(body, dict):
            payloads += [body, body.get("issue"), body.get("pull_request")]
    payloads = [p for p in payloads if p]
    checked = 0
    for name in ("jira", "github"):
        for expression in _expressions(load_mapping(SHIPPED / f"{name}.yaml")):
            compiled = compile_node(expression._compiled.parsed, FUNCTIONS)
            assert compiled is not None, f"{expression.source} fell back to the interpreter"
            for payload in payloads:
                assert compiled(payload) == expression._compiled.search(payload, options=_OPTIONS), expression.source
                checked += 1
    assert checked > 1000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "a", "b", "closed"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "name", "state"]), inner, max_size=3)
    ),
    max_leaves=8,
)
EXPRESSIONS = [
    "a",
    "a.b",
    "a[0]",
    "a[-1].name",
    "a || b",
    "a && b || 'x'",
    "!a",
    "a[].name",
    "a[?name == 'a'].b",
    "a == b",
    "a != `1`",
    "a.b | [0]",
    "[a, b]",
    "state == 'closed' && (a && 'c' || 'd') || 'e'",
    # functions, which raise on arguments of the wrong type
    "lower(name)",
    "regex(name, '(b+)')",
    "contains(a, 'x')",
    "starts_with(name, 'a')",
    "length(a)",
    "join(',', a)",
    "concat(name, '-', state)",
    "adf_text(a)",
    "to_string(b)",
]


def _outcome(evaluate, document):
    try:
        return evaluate(document)
    except jmespath.exceptions.JMESPathError as error:
        return type(error).__name__


@given(document=json_values)
def test_compiled_expressions_agree_with_jmespath_on_any_document(document):
    for source in EXPRESSIONS:
        parsed = jmespath.compile(source)
        compiled = compile_node(parsed.parsed, FUNCTIONS)
        expected = _outcome(lambda d, parsed=parsed: parsed.search(d, options=_OPTIONS), document)
        assert _outcome(compiled, document) == expected, source


def _error(text: str) -> str:
    with pytest.raises(MappingError) as error:
        parse_mapping("jira.yaml", text)
    return str(error.value)


BASE = "kind: jira\nrecords:\n  issue:\n    entity: work_item\n    container: fields.project.key\n    fields:\n"


def test_a_value_outside_the_allowed_set_names_file_line_and_field():
    message = _error(BASE + "      status_category:\n        from: x\n        map: {Doing: doing}\n")
    assert (
        message == "jira.yaml line 9: records.issue.fields.status_category.map.Doing: 'doing' is not one of todo,"
        " in_progress, done, cancelled"
    )


def test_an_unknown_field_lists_the_fields_there_are():
    assert "work_item has no field 'titel'; expected one of key, url, title" in _error(
        BASE + "      titel: fields.summary\n"
    )


def test_a_broken_expression_is_reported_where_it_stands():
    message = _error(BASE + "      title: fields.[summary\n")
    assert message.startswith("jira.yaml line 7: records.issue.fields.title: 'fields.[summary' is not a valid JMESPath")


def test_invalid_yaml_is_reported_with_its_line():
    assert _error("kind: jira\nrecords: [\n").startswith("jira.yaml line 3: not valid YAML")


def test_a_jira_issue_maps_to_a_work_item_with_plain_text_description():
    mapping = load_mapping(SHIPPED / "jira.yaml")
    issue = {
        "id": "10001",
        "key": "PAY-7",
        "self": "https://acme.atlassian.net/rest/api/3/issue/10001",
        "fields": {
            "summary": "Refunds",
            "project": {"key": "PAY"},
            "issuetype": {"name": "Story"},
            "status": {"name": "Won't Do", "statusCategory": {"key": "done"}},
            "priority": {"name": "Highest"},
            "description": {
                "type": "doc",
                "version": 1,
                "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Pay back"}]}],
            },
            "labels": ["money"],
            "assignee": None,
        },
    }
    unified = mapping.apply(RawRecord("issue", "10001", issue, None), {"pay": "payments"})
    assert unified.product_key == "payments"
    assert unified.values["url"] == "https://acme.atlassian.net/browse/PAY-7"
    assert (unified.values["kind"], unified.values["status_category"], unified.values["priority"]) == (
        "story",
        "cancelled",
        "critical",
    )
    assert unified.values["description"] == "Pay back"
    assert unified.people["assignee"] is None


def test_adf_text_keeps_paragraphs_apart():
    doc = {
        "type": "doc",
        "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "One"}]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Two"}]},
        ],
    }
    assert adf_to_text(doc) == "One\nTwo"


EVENTS = """\
kind: events
records:
  event_day:
    entity: metric_point
    container: event
    when: contains(['Checkout Completed'], event)
    product:
      from: event
      map: {Checkout Completed: checkout}
    fields:
      metric: "join('/', [event, measure])"
      day: day
      value: value
    links:
      - type: measures
        to: work_item
        key:
          from: event
          map: {Checkout Completed: CHK-7}
"""


def _event(event: str) -> RawRecord:
    payload = {"event": event, "measure": "totals", "day": "2026-11-02", "value": 41}
    return RawRecord("event_day", f"{event}|2026-11-02|totals", payload, None)


def test_a_rules_when_leaves_the_records_it_does_not_hold_for_raw():
    mapping = parse_mapping("events.yaml", EVENTS)
    assert mapping.maps(_event("Checkout Completed"))
    assert not mapping.maps(_event("Page Viewed"))
    assert not mapping.maps(RawRecord("other", "1", {}, None))


def test_a_rules_product_names_the_product_whatever_the_portfolio_says():
    unified = parse_mapping("events.yaml", EVENTS).apply(_event("Checkout Completed"), {"checkout completed": "growth"})
    assert unified.product_key == "checkout"
    assert (unified.values["metric"], unified.values["day"], unified.values["value"]) == (
        "Checkout Completed/totals",
        date(2026, 11, 2),
        41.0,
    )


def test_a_link_key_may_be_a_value_map():
    [link] = parse_mapping("events.yaml", EVENTS).apply(_event("Checkout Completed"), {}).links
    assert (link.type, link.to_entity, link.to_key, link.origin) == ("measures", "work_item", "CHK-7", "source")


def test_an_unknown_key_of_a_record_rule_is_an_error_with_its_line():
    with pytest.raises(MappingError, match=r"events.yaml.* line 6.*unknown key 'wen'"):
        parse_mapping("events.yaml", EVENTS.replace("    when:", "    wen:"))

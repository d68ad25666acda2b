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
from opsync.connectors.amplitude.connector import AmplitudeConnector
from opsync.connectors.confluence.connector import ConfluenceConnector
from opsync.service.contract import RawRecord
from opsync.service.expressions import OPTIONS as _OPTIONS
from opsync.service.expressions import compile_node
from opsync.service.functions import FUNCTIONS, adf_to_text
from opsync.service.mapping import (
    ConditionalRule,
    ExtraRule,
    FieldRule,
    MappingError,
    load_mapping,
    parse_mapping,
    unmatched_map_keys,
)

SHIPPED = Path(mappings.__file__).parent
SHIPPED_FILES = [
    SHIPPED / "jira.yaml",
    SHIPPED / "github.yaml",
    ConfluenceConnector.default_mapping(),
    AmplitudeConnector.default_mapping(),
]


def _expressions(mapping):
    def of(rule):
        if isinstance(rule, ExtraRule):
            return [e for r in rule.values.values() for e in of(r)]
        if isinstance(rule, ConditionalRule):
            return [e for r in rule.rules for e in of(r)]
        found = [rule.when] if rule.when else []
        return found + ([rule.expression] if rule.expression else list((rule.person or {}).values()))

    for rule in mapping.records.values():
        yield rule.container
        for field in rule.fields:
            yield from of(field)
        for link in rule.links:
            for source in link.sources.values():
                yield from of(source) if isinstance(source, (FieldRule, ConditionalRule)) else [source]


def test_every_shipped_mapping_validates_without_warnings():
    for file in SHIPPED_FILES:
        mapping = load_mapping(file)
        assert mapping.kind == file.stem
        assert mapping.warnings == []


# Expressions with the functions of ours that no shipped mapping calls.
MORE_OF_OURS = [
    "upper(fields.status.name || state)",
    "lower(fields.priority.name)",
    "coalesce(fields.assignee.displayName, fields.reporter.displayName, user.login, 'nobody')",
    "coalesce(fields.resolution)",
    "to_datetime(fields.created || created_at)",
    "to_datetime(fields.updated || updated_at || `1767225600000`)",
    "join(', ', fields.labels || labels[].name || `[]`)",
    "regex(fields.summary || title, '([A-Z][A-Z0-9]+-[0-9]+)')",
]


def test_compiled_expressions_agree_with_jmespath_on_every_real_payload(shared_fixtures):
    payloads = []
    files = [*shared_fixtures.glob("*/webhooks/*/*.json"), *shared_fixtures.glob("jira/rest/*/*.json")]
    for file in sorted(files):
        body = json.loads(file.read_text())
        if isinstance(body, dict):
            payloads += [body, body.get("issue"), body.get("pull_request"), *(body.get("issues") or [])[:20]]
    payloads = [p for p in payloads if p]
    expressions = [e for file in SHIPPED_FILES[:2] for e in _expressions(load_mapping(file))]
    expressions += [jmespath.compile(source) for source in MORE_OF_OURS]
    checked = 0
    for expression in expressions:
        parsed = expression._compiled if hasattr(expression, "_compiled") else expression
        compiled = compile_node(parsed.parsed, FUNCTIONS)
        assert compiled is not None, f"{parsed.expression} fell back to the interpreter"
        for payload in payloads:
            assert compiled(payload) == parsed.search(payload, options=_OPTIONS), parsed.expression
            checked += 1
    assert checked > 2000


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
    "a[?'a' != name && state == 'closed'].name.b",
    "a.b.name",
    "name == 'a'",
    "'closed' == state",
    "a == `true`",
    "a != `0`",
    "a == b",
    "a != `1`",
    "a.b | [0]",
    "[a, b]",
    "state == 'closed' && (a && 'c' || 'd') || 'e'",
    # functions, which raise on arguments of the wrong type
    "lower(name)",
    "regex(name, '(b+)')",
    "contains(a, 'x')",
    "contains(['closed', 'a', `1`], name)",
    'contains(`["a", 0, 2.5]`, a)',
    "a[?!contains(['a', 'b'], name)].state",
    "starts_with(name, 'a')",
    "length(a)",
    "join(',', a)",
    "concat(name, '-', state)",
    "adf_text(a)",
    "to_string(b)",
    "upper(name)",
    "coalesce(a, b, 'x')",
    "coalesce(a)",
    "coalesce(`null`, a.b, state)",
    "to_datetime(name)",
    "to_datetime(a)",
    "to_datetime(`1767225600`)",
    "to_datetime('2026-11-02T10:00:00.000+0100')",
    "min(a)",
    "max(a[].name)",
    "sort(a)",
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
        message == "jira.yaml line 9, column 22: records.issue.fields.status_category.map.Doing: 'doing' is not one"
        " of todo, in_progress, done, cancelled"
    )


def test_an_unknown_field_lists_the_fields_there_are():
    assert "fields.titel: unknown key 'titel' (did you mean 'title'?); expected one of key, url, title" in _error(
        BASE + "      titel: fields.summary\n"
    )


def test_a_broken_expression_is_reported_at_the_character_where_it_breaks():
    message = _error(BASE + "      title: fields.[summary\n")
    assert message == (
        "jira.yaml line 7, column 29: records.issue.fields.title: 'fields.[summary' is not a valid JMESPath"
        " expression: it ends before it is complete at character 16"
    )


def test_invalid_yaml_is_reported_with_its_line():
    assert _error("kind: jira\nrecords: [\n").startswith("jira.yaml line 3, column 1: not valid YAML")


def test_every_problem_of_a_file_is_reported_at_once_in_the_order_of_its_lines():
    with pytest.raises(MappingError) as error:
        parse_mapping("jira.yaml", BASE + "      titel: x\n      kind: {from: x, map: {A: a}}\n      key: upper(`1`)\n")
    assert [(p.line, p.path) for p in error.value.problems] == [
        (7, "records.issue.fields.titel"),
        (8, "records.issue.fields.kind.map.A"),
        (9, "records.issue.fields.key"),
    ]
    assert error.value.problems[1].expected == "one of initiative, epic, story, task, bug, subtask, other"


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


def _search(source: str, document):
    """An expression's value through jmespath and through the compiled path; both must agree."""
    parsed = jmespath.compile(source)
    expected = parsed.search(document, options=_OPTIONS)
    assert compile_node(parsed.parsed, FUNCTIONS)(document) == expected, source
    return expected


def test_coalesce_gives_the_first_value_that_is_not_null():
    document = {"a": None, "b": "", "c": "x"}
    assert _search("coalesce(a, b, c)", document) == ""
    assert _search("coalesce(a, missing, c)", document) == "x"
    assert _search("coalesce(a, missing)", document) is None
    assert _search("coalesce(`false`, c)", document) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-02T10:15:00.000+0100", "2026-11-02T09:15:00+00:00"),  # Jira
        ("2026-11-02T09:15:00Z", "2026-11-02T09:15:00+00:00"),  # GitHub
        ("2026-11-02", "2026-11-02T00:00:00+00:00"),
        (1793610900, "2026-11-02T09:15:00+00:00"),  # epoch seconds
        (1793610900000, "2026-11-02T09:15:00+00:00"),  # epoch milliseconds
        ("next week", None),
        (None, None),
    ],
)
def test_to_datetime_reads_a_tools_timestamp_as_iso_8601_in_utc(value, expected):
    assert _search("to_datetime(v)", {"v": value}) == expected


def test_upper_and_lower_change_case_and_keep_null():
    assert _search("upper(a)", {"a": "In Progress"}) == "IN PROGRESS"
    assert _search("lower(a)", {"a": "In Progress"}) == "in progress"
    assert _search("upper(a)", {}) is None


def _issue(project: str, status: str, category: str, **fields) -> RawRecord:
    payload = {
        "id": f"{project}-{status}",
        "key": f"{project}-1",
        "fields": {
            "project": {"key": project},
            "status": {"name": status, "statusCategory": {"key": category}},
            **fields,
        },
    }
    return RawRecord("issue", payload["id"], payload, None)


CONDITIONS = (
    BASE
    + """\
      status_category:
        - when: "fields.project.key == 'OPS'"
          from: fields.status.name
          map: {Triage: todo, Fixing: in_progress, Shipped: done}
        - from: fields.status.statusCategory.key
          map: {new: todo, indeterminate: in_progress, done: done}
          default: todo
      estimate:
        when: "fields.project.key != 'OPS'"
        from: fields.customfield_10016
"""
)


def test_the_first_rule_whose_when_holds_gives_the_field():
    mapping = parse_mapping("jira.yaml", CONDITIONS)
    ops = mapping.apply(_issue("OPS", "Fixing", "indeterminate", customfield_10016=3), {})
    pay = mapping.apply(_issue("PAY", "Fixing", "indeterminate", customfield_10016=3), {})
    shipped = mapping.apply(_issue("OPS", "Shipped", "indeterminate"), {})
    assert (ops.values["status_category"], shipped.values["status_category"]) == ("in_progress", "done")
    assert pay.values["status_category"] == "in_progress"  # the second rule, by the category
    assert (ops.values["estimate"], pay.values["estimate"]) == (None, 3.0)  # where no rule applies, no value


STORY_POINTS = (
    BASE
    + """\
      estimate: fields.field('Story Points')
      iteration: fields.field('Sprint')[-1].name
"""
)
JIRA_FIELDS = {"Story Points": "customfield_10016", "Sprint": "customfield_10020", "Team": "customfield_10001"}


def test_a_custom_field_named_reads_the_field_the_tools_list_gives_that_name():
    mapping = parse_mapping("jira.yaml", STORY_POINTS, fields_by_name=JIRA_FIELDS)
    raw = _issue("PAY", "Done", "done", customfield_10016=5, customfield_10020=[{"name": "S1"}, {"name": "S2"}])
    assert mapping.warnings == []
    unified = mapping.apply(raw, {})
    assert (unified.values["estimate"], unified.values["iteration"]) == (5.0, "S2")


def test_a_custom_field_named_without_the_tools_list_reads_nothing_with_a_warning():
    mapping = parse_mapping("jira.yaml", STORY_POINTS)
    unified = mapping.apply(_issue("PAY", "Done", "done", customfield_10016=5), {})
    assert unified.values["estimate"] is None
    assert [(w.line, w.path) for w in mapping.warnings] == [
        (7, "records.issue.fields.estimate"),
        (8, "records.issue.fields.iteration"),
    ]
    assert "field('Story Points') reads nothing" in mapping.warnings[0].message


def test_a_custom_field_name_the_tool_does_not_have_is_an_error_naming_the_close_ones():
    with pytest.raises(MappingError) as error:
        parse_mapping("jira.yaml", STORY_POINTS.replace("'Story Points'", "'story point'"), fields_by_name=JIRA_FIELDS)
    assert str(error.value) == (
        "jira.yaml line 7, column 24: records.issue.fields.estimate: the tool has no field named 'story point';"
        " did you mean 'Story Points'?"
    )


EXTRA = (
    BASE
    + """\
      title: fields.summary
    extra:
      team: fields.field('Team').value
      components: fields.components[].name
      size:
        from: fields.customfield_10030.value
        map: {S: 1, M: 3, L: 8}
"""
)


def test_extra_fields_are_kept_as_the_tool_gives_them():
    mapping = parse_mapping("jira.yaml", EXTRA, fields_by_name=JIRA_FIELDS)
    raw = _issue(
        "PAY",
        "Done",
        "done",
        summary="Refunds",
        customfield_10001={"value": "Ledger"},
        components=[{"name": "api"}, {"name": "web"}],
        customfield_10030={"value": "M"},
    )
    assert mapping.apply(raw, {}).values["extra"] == {"team": "Ledger", "components": ["api", "web"], "size": 3}


def test_extra_on_a_kind_of_record_without_an_extra_field_is_an_unknown_key():
    text = EXTRA.replace("entity: work_item", "entity: code_change")
    with pytest.raises(MappingError, match=r"line 8, column 5: records.issue.extra: unknown key 'extra'"):
        parse_mapping("github.yaml", text)


def test_map_keys_no_stored_record_matches_are_warnings_listing_the_values_seen():
    mapping = parse_mapping("jira.yaml", CONDITIONS)
    stored = [
        ("issue", _issue("OPS", "Triage", "new").payload),
        ("issue", _issue("OPS", "Review", "indeterminate").payload),
        ("issue", _issue("OPS", "Review", "indeterminate").payload),
        ("issue", _issue("PAY", "Done", "done").payload),
        ("issue", _issue("PAY", "Done", "done").payload),
        ("other", {}),  # a record type the mapping has no rule for
    ]
    warnings = unmatched_map_keys(mapping, stored)
    assert [(w.line, w.column, w.path) for w in warnings] == [
        (10, 31, "records.issue.fields.status_category[0].map.Fixing"),
        (10, 52, "records.issue.fields.status_category[0].map.Shipped"),
        (12, 17, "records.issue.fields.status_category[1].map.new"),
        (12, 28, "records.issue.fields.status_category[1].map.indeterminate"),
    ]
    assert warnings[0].message == (
        "'Fixing' matches no value of the 5 stored issue records; the values seen: 'Review' (2), 'Triage' (1)"
    )
    assert warnings[2].message.endswith("the values seen: 'done' (2)")


def test_no_stored_record_of_a_type_means_nothing_to_warn_of():
    assert unmatched_map_keys(parse_mapping("jira.yaml", CONDITIONS), []) == []


def test_applying_a_mapping_compiles_nothing(monkeypatch):
    """Expressions and patterns are compiled once, when the mapping is loaded."""
    mapping = load_mapping(SHIPPED / "jira.yaml")
    records = [_issue("PAY", "Done", "done", summary=f"PAY-{n} follow-up") for n in range(50)]

    def refuse(*args, **kwargs):
        raise AssertionError("compiled while applying")

    monkeypatch.setattr(jmespath, "compile", refuse)
    monkeypatch.setattr("re.compile", refuse)
    for raw in records:
        raw.payload["self"] = "https://acme.atlassian.net/rest/api/3/issue/1"
        assert mapping.apply(raw, {"pay": "payments"}).values["url"] == "https://acme.atlassian.net/browse/PAY-1"


def test_a_person_may_be_given_by_rules_with_when():
    text = (
        BASE
        + """\
      assignee:
        - when: fields.assignee.accountId
          id: fields.assignee.accountId
          name: fields.assignee.displayName
        - id: fields.assignee.name
"""
    )
    mapping = parse_mapping("jira.yaml", text)
    cloud = mapping.apply(_issue("PAY", "Done", "done", assignee={"accountId": "5b1", "displayName": "Ada"}), {})
    server = mapping.apply(_issue("PAY", "Done", "done", assignee={"name": "ada"}), {})
    assert (cloud.people["assignee"].external_id, cloud.people["assignee"].display_name) == ("5b1", "Ada")
    assert (server.people["assignee"].external_id, server.people["assignee"].display_name) == ("ada", None)


def test_a_file_that_maps_another_kind_than_the_one_asked_for_is_an_error():
    with pytest.raises(MappingError, match=r"^jira.yaml line 1, column 7: kind: 'jira' is not github, the kind"):
        parse_mapping("jira.yaml", BASE + "      title: fields.summary\n", kind="github")


def test_the_schema_is_json_schema_an_editor_can_check_a_mapping_with():
    from opsync.service.mapping_schema import mapping_file

    schema = mapping_file().model_json_schema(by_alias=True)
    status_category = schema["$defs"]["WorkItemStatusCategoryRule"]["properties"]["default"]["anyOf"][0]
    assert status_category == {"enum": ["todo", "in_progress", "done", "cancelled"]}
    assert "extra" in schema["$defs"]["WorkItemRule"]["properties"]
    assert "extra" not in schema["$defs"]["CodeChangeRule"]["properties"]


def test_the_shipped_portfolio_and_people_files_load():
    from opsync.service.portfolio import load_people, load_portfolio

    portfolio = load_portfolio(SHIPPED / "portfolio.yaml")
    assert portfolio.containers("jira") == {"pay": "payments", "chk": "checkout", "gro": "growth"}
    assert load_people(SHIPPED / "people.yaml")["github"]["adal"] == "ada.lovelace@acme.example"

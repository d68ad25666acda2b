"""Every example of docs/mappings.md is a valid mapping (a fragment of a record rule is checked
inside the smallest Jira mapping), so the guide cannot drift from what opsync accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from opsync.service.mapping import parse_mapping
from opsync.service.portfolio import parse_people, parse_portfolio

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "mappings.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)
SKELETON = """kind: jira
records:
  issue:
    entity: work_item
    container: fields.project.key
    fields:
      title: fields.summary
{fragment}"""
FIELDS = {"Story Points": "customfield_10016", "Team": "customfield_10001", "Sprint": "customfield_10020"}


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example-{n}" for n in range(len(BLOCKS))])
def test_every_example_of_the_guide_is_accepted(block):
    if block.startswith("kind:"):
        parse_mapping("example.yaml", block, fields_by_name=FIELDS)
    elif block.startswith("products:"):
        parse_portfolio("portfolio.yaml", block)
    elif block.startswith("people:"):
        parse_people("people.yaml", block)
    elif block.startswith("      "):
        mapping = parse_mapping("example.yaml", SKELETON.format(fragment=block), fields_by_name=FIELDS)
        assert not mapping.warnings, mapping.warnings
    else:
        pytest.fail(f"an example the test does not know how to check:\n{block}")


def test_the_guide_has_its_worked_examples():
    assert len(BLOCKS) >= 8

"""Every broken mapping in tests/mappings/broken is one MappingError (never another exception)
naming its file, the line and column, the field, and what was expected.

Each file says what it expects in its header:
    # expect: line 14, column 34: records.issue.fields.kind.map.Story: 'tale' is not one of ...
the beginning of the one problem reported, after the file name. portfolio_* and people_* files
are read as portfolio.yaml and people.yaml; a `# fields: Name=id; ...` line gives the tool's
field list that field('Name') is resolved through.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opsync.service.mapping import MappingError, load_mapping, parse_mapping
from opsync.service.portfolio import load_people, load_portfolio, parse_people, parse_portfolio

BROKEN = Path(__file__).parent / "mappings" / "broken"
FILES = sorted(BROKEN.glob("*.yaml"))


def _header(file: Path, name: str) -> str | None:
    prefix = f"# {name}: "
    return next((line[len(prefix) :] for line in file.read_text().splitlines() if line.startswith(prefix)), None)


def _loader(file: Path) -> Callable[[Path], Any]:
    if file.name.startswith("portfolio_"):
        return load_portfolio
    if file.name.startswith("people_"):
        return load_people
    listed = _header(file, "fields")
    fields = dict(pair.split("=", 1) for pair in listed.split("; ")) if listed else None
    return lambda path: load_mapping(path, fields_by_name=fields)


def test_there_are_broken_variants_of_every_kind_of_mapping_file():
    kinds = {file.name.split("_")[0] for file in FILES}
    assert len(FILES) >= 20
    assert kinds >= {"jira", "github", "confluence", "amplitude", "portfolio", "people"}


@pytest.mark.parametrize("file", FILES, ids=[f.stem for f in FILES])
def test_a_broken_mapping_is_one_error_naming_its_line_field_and_what_was_expected(file: Path):
    expected = _header(file, "expect")
    assert expected, f"{file.name} has no '# expect:' line"
    try:
        _loader(file)(file)
    except MappingError as error:
        [problem] = error.problems
        assert str(problem).startswith(f"{file}{' ' if problem.line else ''}")
        assert str(problem).removeprefix(str(file)).lstrip(" :").startswith(expected), str(problem)
        assert str(error) == str(problem)
    else:
        pytest.fail(f"{file.name} loaded without an error")


@pytest.mark.parametrize("file", [f for f in FILES if f.name.startswith("jira_")][:5], ids=lambda f: f.stem)
def test_a_mapping_that_cannot_be_read_says_so(file: Path, tmp_path: Path):
    missing = tmp_path / file.name
    with pytest.raises(MappingError, match=rf"^{missing}: cannot read the mapping \(No such file or directory\)$"):
        load_mapping(missing)
    missing.write_bytes(b"kind: jira\nrecords: \xff\n")
    with pytest.raises(MappingError, match=r"cannot read the mapping \(not UTF-8 text\)"):
        load_mapping(missing)


@pytest.mark.parametrize(
    "text",
    [
        "kind: jira\nrecords: !!python/object:os.system ls\n",  # a tag safe loading refuses
        "&a [*a, *a]\n",  # a list that holds itself
        "kind: jira\nrecords:\n  issue:\n    " + "[" * 200 + "]" * 200 + "\n",
        "kind: jira\nrecords:\n  issue:\n    entity: work_item\n    container: " + "(" * 3000 + "a" + ")" * 3000,
        "kind: jira\nrecords:\n  ? [a, b]\n  : {}\n",  # a key YAML cannot hash
        "--- \nkind: jira\n---\nkind: github\n",  # two documents
        "\x00",
    ],
)
def test_nothing_a_file_holds_escapes_as_another_exception(text: str):
    with pytest.raises(MappingError) as error:
        parse_mapping("odd.yaml", text)
    assert str(error.value).startswith("odd.yaml")


@pytest.mark.parametrize("parse", [parse_portfolio, parse_people])
def test_nothing_a_portfolio_or_people_file_holds_escapes_as_another_exception(parse: Callable[[str, str], Any]):
    with pytest.raises(MappingError, match=r"^deep.yaml: cannot be loaded: it nests too deeply$"):
        parse("deep.yaml", "products: " + "[" * 5000 + "]" * 5000)


def test_portfolio_and_people_files_load_with_their_problems_typed_too():
    with pytest.raises(MappingError, match=r"^portfolio.yaml: the file is empty; expected a mapping with products$"):
        parse_portfolio("portfolio.yaml", "")
    with pytest.raises(MappingError, match=r"^people.yaml line 1, column 9: people: expected a list of people"):
        parse_people("people.yaml", "people: {ada: ada@acme.example}\n")

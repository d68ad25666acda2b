"""portfolio.yaml (the products, and which tool containers belong to each) and people.yaml
(who is who across tools), each validated against its schema: a mistake is a MappingError
naming the file, the line and column, the field and what was expected.

    products:                              people:
      - key: payments                        - email: ada.lovelace@acme.example
        name: Payments                         github: [adal]       # connector kind: accounts
        owner: ada.lovelace@acme.example       confluence: [5b10ac8d82e05b22cc7da4c100]
        containers: {jira: [PAY], github: [acme/payments]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from opsync.service.mapping_schema import MappingError, Strict, never_a_traceback
from opsync.service.yamlfile import Problem, YamlDocument, yaml_problem

M = TypeVar("M", bound=BaseModel)


def _as_text(value: Any) -> Any:
    """A container or account name YAML read as a number (a numeric account id) is its text."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Name = Annotated[str, BeforeValidator(_as_text), StringConstraints(min_length=1)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$")]


class ProductEntry(Strict):
    key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = Field(
        description="the product's key, as the API names it: letters, digits, '-', '_' or '.'"
    )
    name: Annotated[str, StringConstraints(min_length=1)] = Field(description="the product's name")
    description: str | None = Field(None, description="a sentence on what the product is")
    owner: str | None = Field(None, description="who owns it (an email people.yaml may know)")
    containers: dict[str, list[Name]] = Field(
        {}, description="a mapping of connector kind to its containers ([PAY], [acme/payments])"
    )


class PortfolioFile(Strict):
    products: list[ProductEntry] = Field(description="a list of products (key, name, containers)")


class PersonEntry(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    __pydantic_extra__: dict[str, list[Name]] = Field(init=False)  # connector kind: account names

    email: Email = Field(description="an email address, the person's in every tool")


class PeopleFile(Strict):
    people: list[PersonEntry] = Field(description="a list of people: email, and account names per connector kind")


@dataclass(frozen=True)
class ProductSpec:
    key: str
    name: str
    description: str | None = None
    owner: str | None = None
    containers: dict[str, list[str]] = field(default_factory=dict)  # connector kind -> containers


@dataclass(frozen=True)
class Portfolio:
    products: list[ProductSpec]

    def containers(self, kind: str) -> dict[str, str]:
        """container (lower-cased) -> product key, for one connector kind."""
        return {c.lower(): p.key for p in self.products for c in p.containers.get(kind, [])}


def _validated(file: Path | str, text: str, model: type[M]) -> tuple[YamlDocument, M]:
    try:
        doc = YamlDocument(file, text)
    except yaml.YAMLError as error:
        raise MappingError(yaml_problem(file, error)) from None
    found, problems = doc.validate(model)
    if found is None or doc.problems:
        raise MappingError(sorted(doc.problems + problems, key=lambda p: (p.line or 0, p.column or 0)))
    return doc, found


def _once(doc: YamlDocument, seen: dict[Any, tuple[Any, ...]], value: str, path: tuple[Any, ...], what: str) -> None:
    """value (of what: a product key, a jira container) must not repeat, compared without case."""
    first = seen.setdefault((what, value.lower()), path)
    if first != path:
        raise MappingError(
            doc.problem(path, f"{what} {value!r} is given twice (first at line {doc.line(first)})", f"each {what} once")
        )


def parse_portfolio(file: Path | str, text: str) -> Portfolio:
    return never_a_traceback(file, lambda: _portfolio(file, text))


def _portfolio(file: Path | str, text: str) -> Portfolio:
    doc, found = _validated(file, text, PortfolioFile)
    seen: dict[Any, tuple[Any, ...]] = {}
    for index, product in enumerate(found.products):
        _once(doc, seen, product.key, ("products", index, "key"), "product key")
        for kind, names in product.containers.items():
            for position, name in enumerate(names):
                # A container belongs to one product: the hub could not say which one otherwise.
                path = ("products", index, "containers", kind, position)
                _once(doc, seen, name, path, f"{kind} container")
    return Portfolio(
        [
            ProductSpec(p.key, p.name, p.description, p.owner, {k: list(v) for k, v in p.containers.items()})
            for p in found.products
        ]
    )


def load_portfolio(file: Path) -> Portfolio:
    return parse_portfolio(file, _read(file))


def parse_people(file: Path | str, text: str) -> dict[str, dict[str, str]]:
    """people.yaml -> connector kind -> account name (lower-cased) -> email."""
    return never_a_traceback(file, lambda: _people(file, text))


def _people(file: Path | str, text: str) -> dict[str, dict[str, str]]:
    doc, found = _validated(file, text, PeopleFile)
    directory: dict[str, dict[str, str]] = {}
    seen: dict[Any, tuple[Any, ...]] = {}
    for index, person in enumerate(found.people):
        _once(doc, seen, person.email, ("people", index, "email"), "email")
        for kind, names in (person.model_extra or {}).items():
            for position, name in enumerate(names):
                _once(doc, seen, name, ("people", index, kind, position), f"{kind} account")
                directory.setdefault(kind, {})[name.lower()] = person.email.lower()
    return directory


def load_people(file: Path) -> dict[str, dict[str, str]]:
    return parse_people(file, _read(file)) if file.exists() else {}


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise MappingError(Problem(str(file), "", f"cannot be read ({reason})")) from None

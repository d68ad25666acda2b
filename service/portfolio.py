"""portfolio.yaml: the products, and which tool containers belong to each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from opsync.service.mapping import MappingError
from opsync.service.yamlfile import YamlDocument, yaml_error_message


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


def parse_portfolio(file: Path | str, text: str) -> Portfolio:
    try:
        doc = YamlDocument(file, text)
    except yaml.YAMLError as error:
        raise MappingError(yaml_error_message(file, error)) from None
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("products"), list):
        raise MappingError(f"{doc.where(())}: expected a mapping with a list under 'products'")
    products, seen = [], set()
    for index, item in enumerate(doc.data["products"]):
        path: tuple[Any, ...] = ("products", index)
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item.get("name"):
            raise MappingError(f"{doc.where(path)}: a product needs a key and a name")
        if item["key"] in seen:
            raise MappingError(f"{doc.where(path + ('key',))}: duplicate product key {item['key']!r}")
        seen.add(item["key"])
        containers = item.get("containers") or {}
        if not isinstance(containers, dict) or not all(isinstance(v, list) for v in containers.values()):
            raise MappingError(f"{doc.where(path + ('containers',))}: expected kind: [container, ...]")
        products.append(
            ProductSpec(
                key=item["key"],
                name=str(item["name"]),
                description=item.get("description"),
                owner=item.get("owner"),
                containers={k: [str(c) for c in v] for k, v in containers.items()},
            )
        )
    return Portfolio(products)


def load_portfolio(file: Path) -> Portfolio:
    return parse_portfolio(file, file.read_text())


def parse_people(file: Path | str, text: str) -> dict[str, dict[str, str]]:
    """people.yaml -> connector kind -> account name (lower-cased) -> email."""
    try:
        doc = YamlDocument(file, text)
    except yaml.YAMLError as error:
        raise MappingError(yaml_error_message(file, error)) from None
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("people"), list):
        raise MappingError(f"{doc.where(())}: expected a mapping with a list under 'people'")
    directory: dict[str, dict[str, str]] = {}
    for index, person in enumerate(doc.data["people"]):
        path: tuple[Any, ...] = ("people", index)
        if not isinstance(person, dict) or not isinstance(person.get("email"), str) or "@" not in person["email"]:
            raise MappingError(f"{doc.where(path)}: a person needs an email (and account names per kind)")
        for kind, accounts in person.items():
            if kind == "email":
                continue
            if not isinstance(accounts, list):
                raise MappingError(f"{doc.where(path + (kind,))}: expected a list of account names")
            for account in accounts:
                directory.setdefault(kind, {})[str(account).lower()] = person["email"].lower()
    return directory


def load_people(file: Path) -> dict[str, dict[str, str]]:
    return parse_people(file, file.read_text()) if file.exists() else {}

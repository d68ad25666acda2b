"""The connections file: YAML that ops engineers keep in git, secrets as ${ENV_VAR} references."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from service.contract import ConnectionSettings
from service.plugins import connector_class
from service.yamlfile import YamlDocument, yaml_error_message

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A config file problem, naming the file, the line and the field."""


@dataclass(frozen=True)
class HubConfig:
    connections: dict[str, ConnectionSettings]


def _is_secret(loc: tuple[Any, ...]) -> bool:
    """Never echo a credential back in an error message."""
    return any(isinstance(p, str) and any(w in p for w in ("token", "secret", "password")) for p in loc)


def _expand(value: Any, doc: YamlDocument, path: tuple[Any, ...], environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(
                    f"{doc.where(path)}: environment variable {name} is not set"
                    " (secrets are written as ${NAME} and read from the environment)"
                )
            return environ[name]
        return ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand(v, doc, path + (k,), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, doc, path + (i,), environ) for i, v in enumerate(value)]
    return value


def load_config(file: Path, environ: Mapping[str, str] | None = None) -> HubConfig:
    """Read and validate the connections file; any problem raises ConfigError."""
    environ = os.environ if environ is None else environ
    try:
        doc = YamlDocument.read(file)
    except OSError as error:
        raise ConfigError(f"{file}: cannot read the config file ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(yaml_error_message(file, error)) from None
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("connections"), list):
        raise ConfigError(f"{file}: expected a mapping with a list under 'connections'")
    connections: dict[str, ConnectionSettings] = {}
    for index, raw in enumerate(doc.data["connections"]):
        path: tuple[Any, ...] = ("connections", index)
        if not isinstance(raw, dict):
            raise ConfigError(f"{doc.where(path)}: expected a mapping of connection settings")
        try:
            model = connector_class(str(raw.get("kind"))).settings_model
        except LookupError as error:
            raise ConfigError(f"{doc.where(path + ('kind',))}: {error}") from None
        try:
            settings = model.model_validate(_expand(raw, doc, path, environ))
        except ValidationError as error:
            first = error.errors()[0]
            loc = tuple(first["loc"])
            shown = "" if _is_secret(loc) or isinstance(first["input"], dict) else f" (got {first['input']!r})"
            raise ConfigError(f"{doc.where(path + loc)}: {first['msg']}{shown}") from None
        if settings.id in connections:
            raise ConfigError(f"{doc.where(path + ('id',))}: duplicate connection id {settings.id!r}")
        connections[settings.id] = settings
    return HubConfig(connections=connections)

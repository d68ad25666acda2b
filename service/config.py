"""The connections file: YAML that ops engineers keep in git, secrets as ${ENV_VAR} references.

A reference is read only in a credential field (a settings model's SecretStr fields, and
email); anywhere else it is an error, so that what a file means is in the file. A base URL is
https, or http to this machine.
No message shows a credential field's value, which the environment may have supplied.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import SecretStr, ValidationError

from opsync.service.contract import ConnectionSettings
from opsync.service.plugins import connector_class
from opsync.service.yamlfile import YamlDocument, yaml_error_message

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
LOOPBACK_NAMES = ("localhost",)  # beside the addresses 127.0.0.0/8 and ::1


class ConfigError(Exception):
    """A config file problem, naming the file, the line and the field."""


@dataclass(frozen=True)
class HubConfig:
    connections: dict[str, ConnectionSettings]


def credential_fields(model: type[ConnectionSettings]) -> tuple[str, ...]:
    """The settings a connection may read from the environment: its SecretStr fields, and email."""
    return tuple(
        sorted(
            name
            for name, info in model.model_fields.items()
            if name == "email" or SecretStr in (info.annotation, *get_args(info.annotation))
        )
    )


def _is_secret(loc: tuple[Any, ...], credentials: tuple[str, ...]) -> bool:
    """Never echo a credential back in an error message."""
    return any(
        isinstance(p, str) and (p in credentials or any(w in p for w in ("token", "secret", "password", "key")))
        for p in loc
    )


def _refuse_references(value: Any, doc: YamlDocument, path: tuple[Any, ...], credentials: tuple[str, ...]) -> None:
    if isinstance(value, str) and "${" in value:
        raise ConfigError(
            f"{doc.where(path)}: ${{...}} references are read only in "
            f"{', '.join(credentials)}; write this setting's value itself"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_references(item, doc, path + (key,), credentials)
    if isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_references(item, doc, path + (index,), credentials)


def _expand_credentials(
    raw: dict[str, Any],
    doc: YamlDocument,
    path: tuple[Any, ...],
    environ: Mapping[str, str],
    credentials: tuple[str, ...],
) -> dict[str, Any]:
    expanded = {}
    for key, value in raw.items():
        if key in credentials:
            expanded[key] = _expand(value, doc, path + (key,), environ)
        else:
            _refuse_references(value, doc, path + (key,), credentials)
            expanded[key] = value
    return expanded


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
    return value


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(url: str, doc: YamlDocument, path: tuple[Any, ...]) -> None:
    """https, or http to this machine (the simulators, a tunnel): a token never crosses a network in clear."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return
    raise ConfigError(
        f"{doc.where(path)}: base_url must be https:// (http:// only to a loopback address: "
        f"127.0.0.0/8, localhost, [::1]); got {parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    )


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
        _refuse_references(raw.get("kind"), doc, path + ("kind",), ("the credentials of its connector",))
        try:
            model = connector_class(str(raw.get("kind"))).settings_model
        except LookupError as error:
            raise ConfigError(f"{doc.where(path + ('kind',))}: {error}") from None
        credentials = credential_fields(model)
        expanded = _expand_credentials(raw, doc, path, environ, credentials)
        try:
            settings = model.model_validate(expanded)
        except ValidationError as error:
            first = error.errors()[0]
            loc = tuple(first["loc"])
            hidden = _is_secret(loc, credentials) or isinstance(first["input"], dict)
            shown = "" if hidden else f" (got {first['input']!r})"
            raise ConfigError(f"{doc.where(path + loc)}: {first['msg']}{shown}") from None
        _check_base_url(settings.base_url, doc, path + ("base_url",))
        if settings.id in connections:
            raise ConfigError(f"{doc.where(path + ('id',))}: duplicate connection id {settings.id!r}")
        connections[settings.id] = settings
    return HubConfig(connections=connections)

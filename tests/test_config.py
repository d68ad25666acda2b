"""The connections file is strict: references only in credentials, https to other machines,
and no message that shows a credential."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from opsync.service.config import ConfigError, HubConfig, load_config

SECRETS = {
    "JIRA_TOKEN": "jira-token-3f9a",
    "JIRA_SECRET": "jira-secret-77c1",
    "JIRA_EMAIL": "ops@acme.example",
    "GH_TOKEN": "gh-token-b41e",
    "GH_SECRET": "gh-secret-09d2",
}


def jira(**changes: Any) -> dict[str, Any]:
    return {
        "id": "jira-acme",
        "kind": "jira",
        "base_url": "https://acme.atlassian.net",
        "email": "${JIRA_EMAIL}",
        "token": "${JIRA_TOKEN}",
        "webhook_secret": "${JIRA_SECRET}",
        "projects": ["PAY"],
    } | changes


def github(**changes: Any) -> dict[str, Any]:
    return {
        "id": "github-acme",
        "kind": "github",
        "token": "${GH_TOKEN}",
        "webhook_secret": "${GH_SECRET}",
        "repos": ["acme/payments"],
    } | changes


def load(tmp_path: Path, *connections: dict[str, Any], environ: dict[str, str] = SECRETS) -> HubConfig:
    file = tmp_path / "connections.yaml"
    file.write_text(yaml.safe_dump({"connections": list(connections)}, sort_keys=False))
    return load_config(file, environ=environ)


def error(tmp_path: Path, *connections: dict[str, Any], environ: dict[str, str] = SECRETS) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, *connections, environ=environ)
    return str(raised.value)


def test_references_in_credentials_are_read_from_the_environment(tmp_path):
    config = load(tmp_path, jira(), github())
    settings = config.connections["jira-acme"]
    assert (settings.email, settings.token.get_secret_value(), settings.webhook_secret.get_secret_value()) == (
        "ops@acme.example",
        "jira-token-3f9a",
        "jira-secret-77c1",
    )
    assert config.connections["github-acme"].token.get_secret_value() == "gh-token-b41e"


CREDENTIALS = "email, token, webhook_secret"  # a Jira connection's SecretStr fields, and email


@pytest.mark.parametrize(
    "field, value, where",
    [
        ("id", "jira-${ENV}", "line 2: connections[0].id"),
        ("kind", "${KIND}", "line 3: connections[0].kind"),
        ("base_url", "${JIRA_URL}", "line 4: connections[0].base_url"),
        ("projects", ["PAY", "${PROJECT}"], "line 10: connections[0].projects[1]"),
        ("pull_every_minutes", "${MINUTES}", "line 10: connections[0].pull_every_minutes"),
    ],
)
def test_a_reference_outside_a_credential_is_an_error_naming_file_line_and_field(tmp_path, field, value, where):
    environ = SECRETS | {"ENV": "x", "KIND": "jira", "JIRA_URL": "https://x.example", "PROJECT": "CHK", "MINUTES": "5"}
    message = error(tmp_path, jira(**{field: value}), environ=environ)
    assert message == (
        f"{tmp_path / 'connections.yaml'} {where}: ${{...}} references are read only in "
        f"{'the credentials of its connector' if field == 'kind' else CREDENTIALS}; write this setting's value itself"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://localhost:9000/jira",
        "http://LOCALHOST",
        "http://[::1]:8443",
        "https://acme.atlassian.net",
        "https://10.0.0.5/jira",
    ],
)
def test_a_base_url_is_https_or_http_to_a_loopback_address(tmp_path, url):
    assert load(tmp_path, jira(base_url=url)).connections["jira-acme"].base_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://acme.atlassian.net",
        "http://10.0.0.5",
        "http://128.0.0.1",
        "http://localhost.example.com",
        "http://[::2]",
    ],
)
def test_a_base_url_over_http_to_another_machine_is_an_error_saying_what_is_allowed(tmp_path, url):
    message = error(tmp_path, jira(base_url=url))
    assert "line 4: connections[0].base_url: base_url must be https://" in message
    assert "127.0.0.0/8, localhost, [::1]" in message


def test_a_base_url_error_shows_no_credential_of_the_url(tmp_path):
    message = error(tmp_path, jira(base_url="http://ops:hunter2@jira.acme.example"))
    assert "hunter2" not in message and "http://jira.acme.example" in message


@pytest.mark.parametrize(
    "connections, environ",
    [
        ([jira(email="${JIRA_EMAIL}")], SECRETS | {"JIRA_EMAIL": "zq"}),  # too short an email
        ([jira(projects=["not a key"])], SECRETS),
        ([jira(base_url="http://jira.acme.example")], SECRETS),
        ([jira(unknown_setting=1)], SECRETS),
        ([github(org="acme")], SECRETS),  # both repos and org
        ([github(repos=["payments"])], SECRETS),
        ([jira(), jira()], SECRETS),  # duplicate id
        ([jira(token="${MISSING}")], SECRETS),
    ],
)
def test_no_error_message_shows_a_value_read_from_the_environment(tmp_path, connections, environ):
    message = error(tmp_path, *connections, environ=environ)
    assert str(tmp_path) in message
    for name, value in environ.items():
        assert value not in message, (name, message)


def test_every_secret_setting_of_a_connector_reads_the_environment(tmp_path):
    """A plugin's credentials are its SecretStr settings, whatever their names (Amplitude's api_key)."""
    amplitude = {
        "id": "amplitude-acme",
        "kind": "amplitude",
        "base_url": "https://amplitude.com",
        "api_key": "${AMPLITUDE_API_KEY}",
        "token": "${AMPLITUDE_SECRET_KEY}",
    }
    environ = {"AMPLITUDE_API_KEY": "amp-key-51c0", "AMPLITUDE_SECRET_KEY": "amp-secret-9d2e"}
    settings = load(tmp_path, amplitude, environ=environ).connections["amplitude-acme"]
    assert (settings.api_key.get_secret_value(), settings.token.get_secret_value()) == (
        "amp-key-51c0",
        "amp-secret-9d2e",
    )

"""`opsync mappings preview|apply|versions|rollback` on a database a pull filled, as an ops
engineer runs them: the commands are subprocesses, the tool a simulator that must not be asked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from support.processes import write_config

from opsync.connectors.jira.connector import JiraConnector
from opsync_simulators.jira import JiraSim
from opsync_simulators.server import serving

DONE_EARLY = "fields.status.name == 'In Progress' && 'done' || "


def opsync(directory: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": database_url, "OPSYNC_LOG_LEVEL": "WARNING", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "opsync.cli", *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def categories(database_url: str) -> dict[str, str]:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with engine.connect() as db:
        rows = db.execute(sa.text("SELECT key, status_category FROM work_item WHERE deleted_at IS NULL")).all()
    engine.dispose()
    return dict(rows)


def test_an_ops_engineer_previews_applies_and_rolls_back_a_mapping(tmp_path, database_url):
    jira = JiraSim(issues=40, seed=8)
    moved = {i.key for i in jira.issues() if i.status == "In Progress"}
    assert moved
    shipped = JiraConnector.default_mapping().read_text()
    marker = "contains(['Won\\'t Do'"
    assert marker in shipped
    candidate = tmp_path / "jira.yaml"
    candidate.write_text(shipped.replace(marker, DONE_EARLY + marker, 1))
    with serving(jira.app) as url:
        config = write_config(
            tmp_path,
            [
                {
                    "id": "jira",
                    "kind": "jira",
                    "base_url": url,
                    "email": "o@acme.example",
                    "token": "t",
                    "projects": ["PAY", "CHK", "GRO"],
                }
            ],
        )
        assert opsync(tmp_path, database_url, "sync", "jira", "-c", str(config)).returncode == 0
        before, asked = categories(database_url), jira.api_requests

        unmatched = tmp_path / "unmatched" / "jira.yaml"
        unmatched.parent.mkdir()
        unmatched.write_text(shipped.replace("Highest: critical,", "Highest: critical, Urgentissimo: critical,"))
        checked = opsync(tmp_path, database_url, "mappings", "validate", str(unmatched), "-c", str(config))
        assert checked.returncode == 0, checked.stderr
        assert "warning:" in checked.stderr and "Urgentissimo" in checked.stderr

        preview = opsync(tmp_path, database_url, "mappings", "preview", str(candidate), "-c", str(config))
        assert preview.returncode == 0, preview.stderr
        assert f"{len(moved)} would change" in preview.stderr
        assert categories(database_url) == before

        applied = opsync(tmp_path, database_url, "mappings", "apply", str(candidate), "-c", str(config))
        assert applied.returncode == 0, applied.stderr
        assert "version 2" in applied.stderr and f"{len(moved)} changed" in applied.stderr
        after = categories(database_url)
        assert {k for k in after if after[k] != before[k]} == moved

        versions = opsync(tmp_path, database_url, "mappings", "versions", "jira", "-c", str(config))
        assert versions.returncode == 0 and "yes" in versions.stderr

        back = opsync(tmp_path, database_url, "mappings", "rollback", "jira", "1", "-c", str(config))
        assert back.returncode == 0, back.stderr
        assert categories(database_url) == before
        assert jira.api_requests == asked  # previews, applies and rollbacks ask no tool

        missing = opsync(tmp_path, database_url, "mappings", "rollback", "jira", "9", "-c", str(config))
        assert missing.returncode == 2 and "no version 9" in missing.stderr

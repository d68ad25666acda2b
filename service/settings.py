"""The one settings object: environment variables with the OPSYNC_ prefix (and DATABASE_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

AccessLog = Literal["errors", "all", "off"]  # which API requests get an access-log line


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSYNC_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{Path.cwd() / 'opsync.db'}",
        validation_alias=AliasChoices("OPSYNC_DATABASE_URL", "DATABASE_URL"),
    )
    config: Path | None = None  # the connections file (YAML)
    mappings_dir: Path | None = None  # ops engineers' mappings; the shipped ones otherwise
    bootstrap_token: SecretStr | None = None  # accepted as an admin token, for automation
    max_webhook_bytes: int = 5 * 1024 * 1024
    worker_batch: int = 100
    inbox_concurrency: int | None = None  # batches applied at once; default 2 on PostgreSQL, 1 on SQLite
    inbox_max_attempts: int = Field(default=8, ge=1)  # then a delivery is parked as failed, whatever the error
    inbox_retention_days: float = Field(default=7, gt=0)  # applied deliveries are pruned after this; failed ones kept
    fetch_deadline_seconds: float = Field(default=10, gt=0)  # a refetch that takes longer is rescheduled
    run_workers: bool = True  # the API process applies the inbox and runs schedules itself
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line (service.logs)
    # a line per API request answered: only those answered 4xx or 5xx (errors), every one, or none
    access_log: AccessLog = "errors"

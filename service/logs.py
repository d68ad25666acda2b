"""Log lines an operator can search by what they concern, and that never carry a secret.

Code wraps work in log_context(connection_id=..., run_id=..., delivery_id=...); every record
logged inside it (in that task, and in the threads and tasks it starts) carries those ids.
configure() prints them as `key=value` after the message, or as fields of one JSON object
per line. Secrets stay out because nothing logs them: connection settings keep them as
SecretStr, and API clients send them in headers, never in URLs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

IDS = ("connection_id", "run_id", "delivery_id")

_context: ContextVar[dict[str, Any]] = ContextVar("opsync_log_context")


@contextmanager
def log_context(
    *, connection_id: str | None = None, run_id: int | str | None = None, delivery_id: int | str | None = None
) -> Iterator[None]:
    """Tag every record logged inside with these ids (those given; outer ones stay)."""
    given = {"connection_id": connection_id, "run_id": run_id, "delivery_id": delivery_id}
    token = _context.set({**_context.get({}), **{k: v for k, v in given.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the enclosing log_context's ids onto each record (ids given with extra= win)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get({}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message connection_id=… run_id=…`, then the traceback if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = " ".join(f"{key}={getattr(record, key)}" for key in IDS if getattr(record, key, None) is not None)
        return f"{line} {ids}" if ids else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids, exc_info when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in IDS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str | int, json_lines: bool) -> None:
    """Send every logger's records to stderr at level and above, as text or JSON lines.
    Calling it again replaces what it installed before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.set_name("opsync")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "opsync"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)

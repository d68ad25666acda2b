"""A budget of API requests per token and window, answered with Jira Cloud's rate-limit headers.

Every answer carries X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset (an ISO
8601 time), and X-RateLimit-NearLimit: true once less than a fifth is left. A request past the
budget is refused: 429 with Retry-After (whole seconds) and RateLimit-Reason. A token's window
starts with its first request after the last window ended. Jira writes the reset to the minute;
this budget writes it to the second, rounded up, so that windows of a few seconds mean something.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

NEAR_LIMIT_SHARE = 0.2  # Jira: "less than 20% of the budget remains"
REASON = "jira-burst-based"  # what governs API-token traffic on Jira Cloud


@dataclass
class RequestBudget:
    limit: int
    window_seconds: float
    refused: int = 0  # requests answered 429 because the budget was spent
    _windows: dict[str, tuple[int, float]] = field(default_factory=dict, repr=False)  # token -> (used, reset)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.limit < 1 or not 0 < self.window_seconds <= 86_400:
            raise ValueError(
                f"a budget needs a limit of at least 1 and a window of 0 to 86400 seconds,"
                f" not {self.limit} per {self.window_seconds}"
            )

    def spend(self, token: str, now: float | None = None) -> tuple[bool, dict[str, str]]:
        """Count one request of token: (whether it is allowed, the headers of its answer)."""
        now = time.time() if now is None else now
        with self._lock:
            used, reset = self._windows.get(token, (0, 0.0))
            if now >= reset:
                used, reset = 0, now + self.window_seconds
            allowed = used < self.limit
            if allowed:
                used += 1
            else:
                self.refused += 1
            self._windows[token] = (used, reset)
        left = self.limit - used
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(left),
            "X-RateLimit-Reset": datetime.fromtimestamp(math.ceil(reset), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if left < self.limit * NEAR_LIMIT_SHARE:
            headers["X-RateLimit-NearLimit"] = "true"
        if not allowed:
            headers["Retry-After"] = str(max(math.ceil(reset - now), 1))
            headers["RateLimit-Reason"] = REASON
        return allowed, headers

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "window_seconds": self.window_seconds, "refused": self.refused}

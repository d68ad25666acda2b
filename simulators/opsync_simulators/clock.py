"""The clock the Atlassian simulators date changes by: wall-clock time cut to the millisecond
(what Jira's and Confluence's timestamps can say), strictly increasing, so every change sorts
after the one before it even when two land in the same millisecond."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def to_ms(moment: datetime) -> datetime:
    """moment cut to the millisecond: what the tool's timestamps can say, so what a sim holds."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Clock:
    def __init__(self, last: datetime) -> None:
        """last: the latest moment already handed out (the newest seeded change)."""
        self.last = last
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The wall-clock time to the millisecond, or a millisecond after the last one given."""
        with self._lock:
            moment = to_ms(datetime.now(UTC))
            if moment <= self.last:
                moment = self.last + timedelta(milliseconds=1)
            self.last = moment
            return moment

"""The faults a simulator's API suffers: queued ones that hit the next matching requests, a
seeded share of every request, and pauses a test releases when it is ready.

Both simulators' HTTP gates ask take(target) once per API request (admin routes excluded),
where target is the request's path and query string, and act on the Fault it returns.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from typing import Any

PAUSE_LIMIT_SECONDS = 60.0  # a paused request goes on by itself then, so a forgetful test cannot hang


@dataclass
class Fault:
    """What the next `count` matching API requests suffer (one kind per fault).

    match: only requests whose path and query string this regular expression is found in
    (e.g. "sort=created", r"/repos/acme/ledger/pulls\\?.*sort=created");
    after: let this many matching requests through first;
    pause: hold the request until resume() (then it is answered normally).
    """

    status: int | None = None
    retry_after: float | None = None
    delay_seconds: float = 0.0
    drop_connection: bool = False
    malformed: bool = False
    pause: bool = False
    count: int = 1
    match: str | None = None
    after: int = 0

    @property
    def kind(self) -> str:
        if self.status:
            return str(self.status)
        for name in ("pause", "drop_connection", "malformed"):
            if getattr(self, name):
                return name
        return "delay" if self.delay_seconds else "none"

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False, 0, 0.0) or k == "count"}


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._share = 0.0
        self._kinds: list[Fault] = []
        self._rng = random.Random(0)
        self._generation = 0  # resume() starts a new one; a pause waits for the next
        self._paused = 0
        self._served: Counter[str] = Counter()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._queue.append(fault)

    def set_rate(self, share: float, kinds: list[Fault], seed: int = 0) -> None:
        """Besides queued faults, a share of all requests suffers one of kinds, picked by a
        seeded RNG (the same requests in the same order suffer the same faults). share 0: none."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share {share} is not between 0 and 1")
        if share and not kinds:
            raise ValueError("a fault rate needs at least one kind of fault")
        with self._lock:
            self._share, self._kinds, self._rng = share, list(kinds), random.Random(seed)

    def clear(self) -> None:
        """Forget queued faults and the rate; release paused requests."""
        with self._lock:
            self._queue.clear()
            self._share, self._kinds = 0.0, []
        self.resume()

    def pending(self) -> list[Fault]:
        """The queued faults not yet spent."""
        with self._lock:
            return [replace(fault) for fault in self._queue]

    def take(self, target: str = "") -> Fault | None:
        """The fault the request to target suffers, if any."""
        with self._lock:
            for fault in self._queue:
                if fault.match is not None and not re.search(fault.match, target):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.count -= 1
                if fault.count <= 0:
                    self._queue.remove(fault)
                self._served[fault.kind] += 1
                return fault
            if self._share and self._rng.random() < self._share:
                fault = replace(self._rng.choice(self._kinds), count=1)
                self._served[fault.kind] += 1
                return fault
            return None

    def served(self) -> Counter[str]:
        """How many requests suffered each kind of fault so far ("429", "delay", "pause", ...)."""
        with self._lock:
            return Counter(self._served)

    async def hold(self) -> None:
        """Wait, in a request's handler, until resume() (or PAUSE_LIMIT_SECONDS)."""
        with self._lock:
            generation = self._generation
            self._paused += 1
        try:
            deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
            while self._generation == generation and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            with self._lock:
                self._paused -= 1

    def paused(self) -> int:
        """Requests held by a pause fault right now."""
        with self._lock:
            return self._paused

    def resume(self) -> None:
        """Let every paused request go on."""
        with self._lock:
            self._generation += 1

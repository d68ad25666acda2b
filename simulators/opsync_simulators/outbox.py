"""How a simulator's webhooks go wrong on the way out, as they do from real tools: lost,
retried, replayed, late. Seeded, so a test sees the same faults on every run.

A simulator hands each delivery it would send to its Outbox and sends what the outbox says,
in order: the delivery itself (or nothing, if dropped), a duplicate under the same delivery
id, an earlier body again under a new delivery id, and held-back deliveries that are now due.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REPLAYABLE = 100  # a replay re-sends one of the last this many bodies sent


@dataclass
class WebhookFaults:
    """Shares of deliveries that suffer each fault, decided per delivery by a seeded RNG."""

    drop: float = 0.0  # never sent
    duplicate: float = 0.0  # sent twice under the same delivery id, as a tool's retry does
    replay: float = 0.0  # after this delivery, an earlier body is sent again under a new delivery id
    reorder: float = 0.0  # held back, sent after `hold_for` later deliveries (or at flush)
    hold_for: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "replay", "reorder"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"webhook fault {name}: {share} is not a share between 0 and 1")
        if self.hold_for < 1:
            raise ValueError(f"webhook fault hold_for: {self.hold_for} must be at least 1")

    @property
    def any(self) -> bool:
        return bool(self.drop or self.duplicate or self.replay or self.reorder)


@dataclass
class Outgoing:
    """One delivery: what to POST, and what the simulator wants to remember about it."""

    event: str
    body: bytes
    headers: dict[str, str]
    about: dict[str, Any] = field(default_factory=dict)


# What to do with a delivery: its fault (None: sent as is), "dropped", "duplicate",
# "replay" (an earlier body under a new delivery id) or "reordered" (sent late).
Step = tuple[Outgoing, str | None]


class Outbox:
    def __init__(self, renew: Callable[[Outgoing], Outgoing]) -> None:
        self._renew = renew  # the same body under a new delivery id, signed again
        self._lock = threading.Lock()
        self.faults = WebhookFaults()
        self._rng = random.Random(0)
        self._held: list[list[Any]] = []  # [deliveries still to wait for, Outgoing]
        self._sent: list[Outgoing] = []

    def configure(self, faults: WebhookFaults) -> None:
        """Use these faults from the next delivery on; the RNG restarts from their seed."""
        with self._lock:
            self.faults, self._rng = faults, random.Random(faults.seed)

    def submit(self, message: Outgoing) -> list[Step]:
        """What to send now, in order, for a delivery the simulator would send."""
        with self._lock:
            faults = self.faults
            if not faults.any and not self._held:
                return [(message, None)]
            rng = self._rng
            # four draws per delivery whatever happens, so one fault's share never shifts another's
            drop, reorder, duplicate, replay = (rng.random() for _ in range(4))
            steps: list[Step] = []
            if drop < faults.drop:
                steps.append((message, "dropped"))
            elif reorder < faults.reorder:
                self._held.append([faults.hold_for, message])
            else:
                steps.append((message, None))
                if duplicate < faults.duplicate:
                    steps.append((message, "duplicate"))
            if replay < faults.replay and self._sent:
                steps.append((self._renew(rng.choice(self._sent)), "replay"))
            due = []
            for entry in self._held:
                if entry[1] is not message:
                    entry[0] -= 1
                if entry[0] <= 0:
                    due.append(entry)
            for entry in due:
                self._held.remove(entry)
                steps.append((entry[1], "reordered"))
            self._remember(steps)
            return steps

    def flush(self) -> list[Step]:
        """Every held-back delivery, to send now."""
        with self._lock:
            steps: list[Step] = [(entry[1], "reordered") for entry in self._held]
            self._held.clear()
            self._remember(steps)
            return steps

    def held(self) -> int:
        with self._lock:
            return len(self._held)

    def _remember(self, steps: list[Step]) -> None:
        self._sent += [message for message, fault in steps if fault in (None, "reordered")]
        del self._sent[:-REPLAYABLE]

"""The seeded event stream the analytics simulators (Amplitude, Mixpanel, PostHog) share.

Each product of the world (payments, checkout, growth) fires a handful of events; every day
of the last ~6 months has a number of events (totals) and of people who fired them (uniques),
with weekly seasonality, a slow trend, and for some events a step change on a launch day, so
that before/after comparisons show something. A day's numbers are a pure function of the seed,
the event and the day, anchored to the day the simulator was built; today's are partial (the
day is not over). Late-arriving events revise a past day (revise). A tool's HTTP face (its
paths, auth and error bodies) lives in amplitude.py, mixpanel.py and posthog.py; the gate and
admin routes they share in analytics_app.py.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any

from opsync_simulators.analytics_app import create_app
from opsync_simulators.faults import Fault, Faults
from opsync_simulators.latency import checked_latency

TODAY_SHARE = 0.4  # how much of today's traffic has arrived when the tool is asked
WEEKEND_FACTOR = 0.7


@dataclass(frozen=True)
class SimEvent:
    """An event type and how its traffic behaves."""

    name: str
    product: str | None  # None: a tool's own event (page views) that belongs to no product
    users: float  # people who fire it on a weekday at the start of the history
    per_user: float  # events per person who fires it (>= 1)
    growth: float = 0.0  # daily growth of the level
    change_days_ago: int | None = None  # a launch that many days before the simulator was built...
    change: float = 1.0  # ...multiplies the level from then on


PRODUCT_EVENTS: tuple[SimEvent, ...] = (
    SimEvent("Payment Succeeded", "payments", 420, 1.6, growth=0.001),
    SimEvent("Payment Failed", "payments", 60, 1.3, change_days_ago=75, change=0.55),  # smarter retries
    SimEvent("Refund Requested", "payments", 25, 1.1),
    SimEvent("Checkout Started", "checkout", 900, 1.4, growth=0.0005),
    SimEvent("Checkout Completed", "checkout", 380, 1.1, change_days_ago=60, change=1.35),  # one-click checkout
    SimEvent("Cart Abandoned", "checkout", 300, 1.2, change_days_ago=60, change=0.8),
    SimEvent("Signed Up", "growth", 150, 1.0, growth=0.003),
    SimEvent("Onboarding Completed", "growth", 90, 1.05, change_days_ago=45, change=1.5),  # new onboarding flow
    SimEvent("Invite Sent", "growth", 40, 2.5),
)


def tool_event(name: str) -> SimEvent:
    """The page-view event a tool tracks by itself, outside every product."""
    return SimEvent(name, None, 2500, 3.2)


@dataclass(frozen=True)
class DayCount:
    totals: int  # how many times the event fired that day
    uniques: int  # how many people fired it that day


@dataclass(frozen=True)
class AnalyticsTruth:
    """What the tool would answer for every event and day from first_day to today."""

    first_day: date
    today: date
    products: dict[str, str | None]  # event name -> product key (None: no product)
    days: dict[tuple[str, str], DayCount]  # (event, ISO day) -> its numbers

    def as_json(self) -> dict[str, Any]:
        return {
            "first_day": self.first_day.isoformat(),
            "today": self.today.isoformat(),
            "products": self.products,
            "days": [
                {"event": event, "day": day, "totals": count.totals, "uniques": count.uniques}
                for (event, day), count in sorted(self.days.items())
            ],
        }


class EventStream:
    """Daily numbers per event: seeded, anchored to `anchor` (the day the tool was built)."""

    def __init__(self, events: tuple[SimEvent, ...], seed: int, history_days: int, anchor: date) -> None:
        self.events = {event.name: event for event in events}
        self.seed = seed
        self.anchor = anchor
        self.first_day = anchor - timedelta(days=history_days)
        self.late: dict[tuple[str, date], DayCount] = {}  # late-arriving events added to a day

    def full_day(self, name: str, day: date) -> DayCount:
        """A whole day's numbers before late arrivals (0 before the history and for unknown events)."""
        event = self.events.get(name)
        if event is None or day < self.first_day:
            return DayCount(0, 0)
        rng = random.Random(f"{self.seed}|{name}|{day.isoformat()}")
        level = event.users * (1 + event.growth) ** (day - self.first_day).days
        if event.change_days_ago is not None and day >= self.anchor - timedelta(days=event.change_days_ago):
            level *= event.change
        if day.weekday() >= 5:
            level *= WEEKEND_FACTOR
        uniques = max(0, round(level * rng.uniform(0.85, 1.15)))
        repeats = round(uniques * (event.per_user - 1) * rng.uniform(0.8, 1.2))
        return DayCount(uniques + repeats, uniques)

    def count(self, name: str, day: date, today: date) -> DayCount:
        """What the tool says about a day, asked on `today`: nothing yet for the future, a part of today."""
        if day > today:
            return DayCount(0, 0)
        whole = self.full_day(name, day)
        if day == today:
            whole = DayCount(round(whole.totals * TODAY_SHARE), round(whole.uniques * TODAY_SHARE))
        late = self.late.get((name, day), DayCount(0, 0))
        return DayCount(whole.totals + late.totals, whole.uniques + late.uniques)


class AnalyticsSim:
    """The state behind one analytics tool's simulator: its events, faults and limits.

    rate_limit: API requests allowed per second (None: no limit); max_concurrent: requests
    in flight at once (None: no limit). Beyond either the tool answers 429 with Retry-After.
    A subclass gives the tool's name, its own page-view event, how it authenticates and how
    its errors look (authorized, error), and its routes (routes).
    """

    tool = "analytics"
    page_view_event = "Page Viewed"
    unauthorized_message = "Invalid credentials"  # what the tool says to bad credentials...
    throttled_message = "Too many requests"  # ...and beyond its limits

    def __init__(
        self,
        seed: int = 1,
        history_days: int = 183,
        rate_limit: float | None = None,
        max_concurrent: int | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        anchor = datetime.now(UTC).date()
        self.stream = EventStream((*PRODUCT_EVENTS, tool_event(self.page_view_event)), seed, history_days, anchor)
        self.rate_limit = rate_limit
        self.max_concurrent = max_concurrent
        self.faults = Faults()
        self.latency_ms = checked_latency(latency_ms)  # added to every API answer (latency.py)
        self.lock = threading.RLock()
        self.requests: Counter[str] = Counter()  # API requests by path
        self.queries: list[dict[str, Any]] = []  # each data query: event(s), measure(s), first and last day
        self.in_flight = 0
        self._recent: deque[float] = deque()  # monotonic times of the last second's requests
        self.today_override: date | None = None

    @cached_property
    def app(self) -> Any:
        """The tool's ASGI app, built once."""
        return create_app(self)

    # --- what the tool holds -----------------------------------------------------------

    def today(self) -> date:
        """The tool's today (UTC, the projects' time zone), unless a test moved it."""
        return self.today_override or datetime.now(UTC).date()

    def event_names(self) -> list[str]:
        return list(self.stream.events)

    def count(self, event: str, day: date) -> DayCount:
        with self.lock:
            return self.stream.count(event, day, self.today())

    def series(self, event: str, first: date, last: date) -> list[tuple[date, DayCount]]:
        """Each day from first to last with its numbers."""
        with self.lock:
            today = self.today()
            return [
                (first + timedelta(days=n), self.stream.count(event, first + timedelta(days=n), today))
                for n in range((last - first).days + 1)
            ]

    def truth(self) -> AnalyticsTruth:
        """Every event's numbers on every day from the start of the history to today."""
        with self.lock:
            today = self.today()
            first = self.stream.first_day
            return AnalyticsTruth(
                first_day=first,
                today=today,
                products={name: event.product for name, event in self.stream.events.items()},
                days={
                    (name, day.isoformat()): count
                    for name in self.stream.events
                    for day, count in self.series(name, first, today)
                },
            )

    # --- changes and faults --------------------------------------------------------------

    def revise(self, event: str, day: date | str, events: int, users: int) -> DayCount:
        """Late-arriving events: `events` more of `event` on `day`, from `users` more people.
        Returns the day's numbers as the tool now answers them."""
        day = date.fromisoformat(day) if isinstance(day, str) else day
        if event not in self.stream.events:
            raise ValueError(f"no event {event!r}; have {', '.join(self.stream.events)}")
        if events < users or users < 0:
            raise ValueError(f"{events} late events cannot come from {users} people")
        with self.lock:
            if not self.stream.first_day <= day <= self.today():
                raise ValueError(f"{day} is outside the history ({self.stream.first_day} to {self.today()})")
            late = self.stream.late.get((event, day), DayCount(0, 0))
            self.stream.late[(event, day)] = DayCount(late.totals + events, late.uniques + users)
            return self.count(event, day)

    def inject(self, fault: Fault | None = None, **kwargs: Any) -> None:
        """Make the next API requests fail: sim.inject(status=429, retry_after=1, count=2)."""
        self.faults.inject(fault or Fault(**kwargs))

    def admit(self) -> float | None:
        """Count a request against the limits: None if it may run, else the seconds to wait."""
        with self.lock:
            now = time.monotonic()
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            if self.max_concurrent is not None and self.in_flight >= self.max_concurrent:
                return 1.0
            if self.rate_limit is not None and len(self._recent) >= self.rate_limit:
                return max(1.0 - (now - self._recent[0]), 0.1)
            self._recent.append(now)
            self.in_flight += 1
            return None

    def release(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def record_query(self, **query: Any) -> None:
        with self.lock:
            self.queries.append(query)

    # --- what a tool's subclass says ------------------------------------------------------

    def authorized(self, headers: dict[str, str]) -> bool:
        raise NotImplementedError

    @staticmethod
    def basic_credentials(headers: dict[str, str]) -> tuple[str, str] | None:
        """(user, password) of a Basic Authorization header, if it holds one."""
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return None
        return user, password

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        """The tool's error answer (a Starlette Response)."""
        raise NotImplementedError

    def routes(self) -> Any:
        """The tool's API routes (a FastAPI APIRouter)."""
        raise NotImplementedError

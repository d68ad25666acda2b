"""Read latency: the API calls users make most, over real HTTP, against a store of N work items.

    python bench/query.py --work-items 100000
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/query.py --work-items 1000000

The store is seeded with bulk SQL (COPY on PostgreSQL, batched inserts on SQLite) with rows
shaped as the store writes them: people and their tool identities, the portfolio's products,
work items from Jira and GitHub with parents, labels and history, pull requests implementing
them, their links and Change rows. Seeding is not measured. The API then runs in a process of
its own (uvicorn, as deployed), and each call is timed from a client in this process.
Targets (the issue, at 1,000,000 work items on PostgreSQL): list with filters p99 <= 50 ms,
product summary p99 <= 200 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ scripts share helpers
from backfill import empty_database

ROOT = Path(__file__).resolve().parents[1]
LIST_TARGET_MS, SUMMARY_TARGET_MS = 50, 200
NOW = datetime.now(UTC).replace(microsecond=0)
SPAN = timedelta(days=3 * 365)  # how far back the portfolio's history goes

JIRA_PROJECTS = {"PAY": "payments", "CHK": "checkout", "GRO": "growth"}
REPOS = {
    "acme/payments": "payments",
    "acme/ledger": "payments",
    "acme/checkout": "checkout",
    "acme/growth-web": "growth",
}
KINDS = ["story"] * 40 + ["task"] * 25 + ["bug"] * 20 + ["subtask"] * 8 + ["epic"] * 5 + ["initiative", "other"]
PRIORITIES = ["none"] * 10 + ["low"] * 20 + ["medium"] * 45 + ["high"] * 20 + ["critical"] * 5
LABELS = [
    "backend",
    "frontend",
    "api",
    "ux",
    "tech-debt",
    "customer",
    "security",
    "performance",
    "mobile",
    "infra",
] * 4 + ["q3-okr", "pci", "gdpr", "a11y", "flaky-test", "hotfix", "migration", "experiment", "oncall", "legal"]
VERBS = ["Fix", "Add", "Remove", "Refactor", "Speed up", "Document", "Migrate", "Retry", "Validate", "Log"]
THINGS = [
    "refund rounding",
    "card tokenisation",
    "ledger export",
    "cart totals",
    "coupon codes",
    "sign-up form",
    "onboarding email",
    "webhook retries",
    "currency conversion",
    "order receipt",
    "fraud score",
    "payout schedule",
    "tax lines",
    "A/B test flag",
    "session timeout",
    "address lookup",
]
PLACES = [
    "in checkout",
    "for EU merchants",
    "on mobile",
    "in the admin UI",
    "in the API",
    "for guests",
    "after 3DS",
    "in the nightly job",
    "for partial captures",
    "in reports",
]
STATUS = {"todo": "To Do", "in_progress": "In Progress", "done": "Done", "cancelled": "Won't Do"}


BLOCK = 100_000  # on PostgreSQL, work items made in Python; the rest are copies made by SQL


def people_for(work_items: int) -> int:
    return max(50, work_items // 400)


# -- seeding --------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _hash() -> str:
    return f"{random.getrandbits(256):064x}"


class Seed:
    """Rows as the store writes them, generated in the order a backfill would create them."""

    def __init__(self, work_items: int, people: int) -> None:
        self.n = work_items
        self.people = people
        self.seq = 0
        self.code_changes = 0

    def product_rows(self) -> list[dict[str, Any]]:
        from opsync.service.hub import hub_file
        from opsync.service.portfolio import load_portfolio
        from opsync.service.settings import Settings

        portfolio = load_portfolio(hub_file(Settings(database_url="sqlite://"), "portfolio.yaml"))
        return [
            {"id": i, "key": p.key, "name": p.name, "description": p.description, "owner": p.owner}
            for i, p in enumerate(portfolio.products, 1)
        ]

    def mapping_rows(self) -> list[dict[str, Any]]:
        from opsync import mappings

        rows = []
        for i, kind in enumerate(("jira", "github"), 1):
            text = (Path(mappings.__file__).parent / f"{kind}.yaml").read_text()
            rows.append(
                {
                    "id": i,
                    "kind": kind,
                    "hash": hashlib.sha256(text.encode()).hexdigest(),
                    "content": text,
                    "applied_at": NOW,
                }
            )
        return rows

    def person_rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for i in range(1, self.people + 1):
            name = f"person{i:05d}"
            yield "person", {"id": i, "display_name": f"Person {i}", "email": f"{name}@acme.example"}
            yield (
                "person_identity",
                {
                    "id": 2 * i - 1,
                    "person_id": i,
                    "connection_id": "jira",
                    "external_id": f"5b10ac8d82e05b22cc7d{i:06d}",
                    "login": None,
                    "display_name": f"Person {i}",
                },
            )
            yield (
                "person_identity",
                {
                    "id": 2 * i,
                    "person_id": i,
                    "connection_id": "github",
                    "external_id": str(1000 + i),
                    "login": name,
                    "display_name": name,
                },
            )

    def _change(self, entity: str, entity_id: int, op: str, fields: dict[str, Any], at: datetime) -> dict[str, Any]:
        self.seq += 1
        return {"seq": self.seq, "entity": entity, "entity_id": entity_id, "op": op, "fields": fields, "at": at}

    def rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Work items (with their parent links, code changes and history), oldest first."""
        rng = random.Random(7)
        numbers = {p: 0 for p in [*JIRA_PROJECTS, *REPOS]}
        parents: dict[str, list[tuple[str, str]]] = {p: [] for p in numbers}  # container -> (external_id, key)
        recent: dict[str, list[str]] = {p: [] for p in JIRA_PROJECTS.values()}  # product -> recent item keys
        pr_id = 0
        for item_id in range(1, self.n + 1):
            jira = rng.random() < 0.8
            container = rng.choice(list(JIRA_PROJECTS) if jira else list(REPOS))
            product = (JIRA_PROJECTS if jira else REPOS)[container]
            numbers[container] += 1
            number = numbers[container]
            key = f"{container}-{number}" if jira else f"{container}#{number}"
            external_id = str(10000 + item_id) if jira else str(900000000 + item_id)
            kind = rng.choice(KINDS) if jira else rng.choice(["task", "task", "bug", "story"])
            created = NOW - SPAN + SPAN * (item_id / self.n) - timedelta(minutes=rng.randrange(600))
            age = (NOW - created).days
            weights = (3, 2, 85, 10) if age > 90 else (25, 30, 40, 5) if age > 14 else (60, 30, 8, 2)
            category = rng.choices(["todo", "in_progress", "done", "cancelled"], weights)[0]
            completed = None
            if category in ("done", "cancelled"):
                completed = min(NOW - timedelta(minutes=1), created + timedelta(days=rng.lognormvariate(2.0, 1.0)))
            updated = completed or min(NOW, created + timedelta(days=rng.random() * max(age, 1) * 0.3))
            parent = None
            if jira and kind not in ("epic", "initiative") and parents[container] and rng.random() < 0.7:
                parent = rng.choice(parents[container][-20:])
            labels = rng.sample(LABELS, rng.choice([0, 1, 1, 2, 2, 3]))
            labels = list(dict.fromkeys(labels))
            assignee = rng.randrange(1, self.people + 1) if category != "todo" or rng.random() < 0.5 else None
            values = {
                "key": key,
                "url": (
                    f"https://acme.atlassian.net/browse/{key}"
                    if jira
                    else f"https://github.com/{container}/issues/{number}"
                ),
                "title": f"{rng.choice(VERBS)} {rng.choice(THINGS)} {rng.choice(PLACES)}",
                "kind": kind,
                "description": f"As reported by support: {rng.choice(THINGS)} misbehaves.",
                "status": STATUS[category] if jira else ("closed" if completed else "open"),
                "status_category": category,
                "priority": rng.choice(PRIORITIES) if jira else "none",
                "assignee_id": assignee,
                "reporter_id": rng.randrange(1, self.people + 1),
                "labels": labels,
                "parent_external_id": parent[0] if parent else None,
                "estimate": rng.choice([None, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0]) if jira else None,
                "iteration": f"Sprint {created.isocalendar()[1] // 2 + 1}" if jira else None,
                "release": f"v3.{age // 30}" if jira and completed else None,
                "due_at": None,
                "created_at": created,
                "started_at": None,
                "completed_at": completed,
                "extra": {},
                "product_key": product,
            }
            deleted = updated + timedelta(hours=1) if rng.random() < 0.01 else None
            row = {
                "id": item_id,
                "connection_id": "jira" if jira else "github",
                "external_id": external_id,
                "source_updated_at": updated,
                "deleted_at": deleted,
                "content_hash": _hash(),
                "mapping_version_id": 1 if jira else 2,
                "updated_at": deleted or updated,
                **values,
            }
            yield "work_item", row
            if kind in ("epic", "initiative"):
                parents[container].append((external_id, key))
            if parent:
                yield (
                    "link",
                    {
                        "from_entity": "work_item",
                        "from_id": item_id,
                        "to_entity": "work_item",
                        "to_key": parent[1],
                        "type": "parent",
                        "origin": "source",
                        "evidence": f"fields.parent.key is {parent[1]}",
                    },
                )
            # history: created as To Do, then moved along to where it is now
            first = {k: [None, _json(v)] for k, v in values.items() if v not in (None, [], {})}
            first["status"][1] = STATUS["todo"] if jira else "open"
            first["status_category"][1] = "todo"
            first.pop("completed_at", None)
            yield "change", self._change("work_item", item_id, "create", first, created)
            if category in ("in_progress", "done"):
                yield (
                    "change",
                    self._change(
                        "work_item",
                        item_id,
                        "update",
                        {
                            "status": [first["status"][1], "In Progress" if jira else "open"],
                            "status_category": ["todo", "in_progress"],
                        },
                        created + (updated - created) / 3,
                    ),
                )
            if category != "todo":
                before = "in_progress" if category == "done" else "todo"
                yield (
                    "change",
                    self._change(
                        "work_item",
                        item_id,
                        "update",
                        {
                            "status": [STATUS[before] if jira else "open", values["status"]],
                            "status_category": [before, category],
                            "completed_at": [None, _json(completed)],
                        }
                        if completed
                        else {"assignee_id": [None, assignee]},
                        updated,
                    ),
                )
            if deleted:
                yield (
                    "change",
                    self._change("work_item", item_id, "delete", {"deleted_at": [None, _json(deleted)]}, deleted),
                )
            recent[product].append(key)
            if rng.random() < 0.25:  # a pull request naming one or two recent work items
                pr_id += 1
                yield from self._pull_request(rng, pr_id, product, recent[product][-30:], created)
            if len(recent[product]) > 200:
                del recent[product][:100]
        self.code_changes = pr_id

    def _pull_request(
        self, rng: random.Random, pr_id: int, product: str, keys: list[str], created: datetime
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        repo = rng.choice([r for r, p in REPOS.items() if p == product])
        named = rng.sample(keys, min(len(keys), rng.choice([1, 1, 2])))
        state = rng.choices(["merged", "open", "closed"], (75, 10, 15))[0]
        closed = None if state == "open" else min(NOW, created + timedelta(days=rng.lognormvariate(0.5, 1.0)))
        branch = f"feature/{named[0].lower()}-{rng.choice(THINGS).replace(' ', '-').replace('/', '')}"
        values = {
            "key": f"{repo}#{50000 + pr_id}",
            "url": f"https://github.com/{repo}/pull/{50000 + pr_id}",
            "title": f"{named[0]}: {rng.choice(VERBS).lower()} {rng.choice(THINGS)}",
            "state": state,
            "author_id": rng.randrange(1, self.people + 1),
            "reviewers": [f"person{rng.randrange(1, self.people + 1):05d}"],
            "head_branch": branch,
            "base_branch": "main",
            "created_at": created,
            "merged_at": closed if state == "merged" else None,
            "closed_at": closed,
            "additions": rng.randrange(1, 800),
            "deletions": rng.randrange(0, 300),
            "product_key": product,
        }
        updated = closed or created
        yield (
            "code_change",
            {
                "id": pr_id,
                "connection_id": "github",
                "external_id": str(700000000 + pr_id),
                "source_updated_at": updated,
                "deleted_at": None,
                "content_hash": _hash(),
                "mapping_version_id": 2,
                "updated_at": updated,
                **values,
            },
        )
        for key in named:
            where = "title" if key in values["title"] else "branch"
            yield (
                "link",
                {
                    "from_entity": "code_change",
                    "from_id": pr_id,
                    "to_entity": "work_item",
                    "to_key": key,
                    "type": "implements",
                    "origin": "inferred",
                    "evidence": f"{key} named in {where}",
                },
            )
        yield (
            "change",
            self._change(
                "code_change",
                pr_id,
                "create",
                {k: [None, _json(v)] for k, v in values.items() if v not in (None, [], {})},
                created,
            ),
        )


def seed(database_url: str, work_items: int) -> tuple[dict[str, int], str]:
    """Migrate, then bulk-load; returns row counts per table and a read token."""
    from opsync.service.db import create_db_engine, upgrade
    from opsync.service.models import SQLModel

    upgrade(database_url)
    engine = create_db_engine(database_url)
    tables = SQLModel.metadata.tables
    postgres = engine.dialect.name == "postgresql"
    block = min(work_items, BLOCK) if postgres else work_items
    data = Seed(block, people_for(work_items))
    counts: dict[str, int] = {}
    with engine.begin() as connection:
        # PostgreSQL builds an index at once faster than it updates it row by row (the trigram
        # ones above all): secondary indexes go before the load and come back after it.
        indexes = (
            connection.exec_driver_sql(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND indexname LIKE 'ix%%'"
            ).all()
            if postgres
            else []
        )
        for name, _ in indexes:
            connection.exec_driver_sql(f"DROP INDEX {name}")
        connection.execute(tables["product"].delete())
        for name, rows in (("product", data.product_rows()), ("mapping_version", data.mapping_rows())):
            connection.execute(tables[name].insert(), rows)
            counts[name] = len(rows)
        batches: dict[str, list[dict[str, Any]]] = {}
        writer = _copy_writer(connection, tables) if postgres else _insert_writer(connection, tables)

        def flush() -> None:  # parents before children, for the foreign keys
            for table in ("person", "person_identity", "work_item", "code_change", "link", "change"):
                if batches.get(table):
                    writer(table, batches[table])
                    counts[table] = counts.get(table, 0) + len(batches[table])
                    batches[table].clear()

        for table, row in itertools.chain(data.person_rows(), data.rows()):
            batch = batches.setdefault(table, [])
            batch.append(row)
            if len(batch) >= 5000:
                flush()
        flush()
        copies = -(-work_items // block)
        for copy in range(1, copies):
            size = min(block, work_items - copy * block)
            _replicate(connection, copy, block, size, data.code_changes, data.seq)
        if postgres:
            connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            connection.exec_driver_sql(definition)
        for table in ("work_item", "code_change", "link", "change"):
            counts[table] = connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
        connection.execute(tables["change_counter"].update().values(value=counts["change"]))
        if postgres:  # ids were given explicitly; the store's next insert takes the next one
            for table in (
                "person",
                "person_identity",
                "work_item",
                "code_change",
                "link",
                "mapping_version",
                "product",
            ):
                connection.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
    if postgres:  # what autovacuum does after a bulk load: statistics and the visibility map
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    from opsync.service.tokens import create_token

    token = create_token(engine, ["read"], "bench")  # a stored token, checked as users' are
    engine.dispose()
    return counts, token


def _replicate(connection: Any, copy: int, block: int, size: int, code_changes: int, seq: int) -> None:
    """Copy the first block of work items (and their pull requests, links, history) under new
    ids, keys and seqs: Python makes 100,000 realistic rows a minute, PostgreSQL copies millions."""
    shift_key = f"regexp_replace({{0}}, '[0-9]+$', '') || (substring({{0}} from '[0-9]+$')::bigint + {copy * block})"
    wi = f"id <= {size}"
    sql = [
        f"""INSERT INTO work_item SELECT id + {copy * block}, connection_id,
            (external_id::bigint + {copy * block})::text,
            product_key, {shift_key.format("key")}, {shift_key.format("url")}, title, source_updated_at, deleted_at,
            md5(content_hash || '{copy}'), mapping_version_id, updated_at, kind, description, status,
            status_category, priority, assignee_id, reporter_id, labels,
            (parent_external_id::bigint + {copy * block})::text, estimate, iteration, release, due_at,
            created_at, started_at, completed_at, extra FROM work_item WHERE {wi}""",
        f"""INSERT INTO code_change SELECT id + {copy * code_changes}, connection_id,
            (external_id::bigint + {copy * code_changes})::text, product_key, {shift_key.format("key")},
            {shift_key.format("url")}, title, source_updated_at, deleted_at, md5(content_hash || '{copy}'),
            mapping_version_id, updated_at, state, author_id, reviewers, head_branch, base_branch, created_at,
            merged_at, closed_at, additions, deletions FROM code_change WHERE id <= {code_changes}""",
        f"""INSERT INTO link (from_entity, from_id, to_entity, to_key, type, origin, evidence)
            SELECT from_entity, from_id + CASE from_entity WHEN 'work_item' THEN {copy * block}
            ELSE {copy * code_changes} END, to_entity, {shift_key.format("to_key")}, type, origin, evidence
            FROM link WHERE (from_entity = 'code_change' AND from_id <= {code_changes})
            OR (from_entity = 'work_item' AND from_id <= {size}) ORDER BY id""",
        f"""INSERT INTO change SELECT seq + {copy * seq}, entity, entity_id + CASE entity WHEN 'work_item'
            THEN {copy * block} ELSE {copy * code_changes} END, op, fields, at FROM change WHERE seq <= {seq}
            AND (entity <> 'work_item' OR entity_id <= {size})""",
    ]
    for statement in sql:
        connection.exec_driver_sql(statement)


def _insert_writer(connection: Any, tables: dict[str, Any]) -> Callable[[str, list[dict[str, Any]]], None]:
    def write(table: str, rows: list[dict[str, Any]]) -> None:
        connection.execute(tables[table].insert(), rows)

    return write


def _copy_writer(connection: Any, tables: dict[str, Any]) -> Callable[[str, list[dict[str, Any]]], None]:
    json_columns = {"labels", "extra", "fields", "reviewers"}

    def write(table: str, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        jsons = [i for i, c in enumerate(columns) if c in json_columns]
        cursor = connection.connection.driver_connection.cursor()
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                values = [row[c] for c in columns]
                for i in jsons:
                    values[i] = json.dumps(values[i])
                copy.write_row(values)

    return write


# -- serving and timing ---------------------------------------------------------------------


def serve(database_url: str, port: int) -> None:
    import uvicorn

    from opsync.api.app import create_app
    from opsync.cli import long_lived
    from opsync.service.config import HubConfig
    from opsync.service.settings import Settings

    app = create_app(Settings(database_url=database_url, run_workers=False), HubConfig(connections={}))
    long_lived()  # as `opsync serve` does
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(
    client: httpx.Client, calls: list[tuple[str, dict[str, Any]]], warmup: int = 10
) -> tuple[list[float], list[Any]]:
    for path, params in calls[:warmup]:
        client.get(path, params=params).raise_for_status()
    times, bodies = [], []
    for path, params in calls:
        started = time.perf_counter()
        response = client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        bodies.append(response.json())
    return times, bodies


def measure(
    client: httpx.Client, n: int, people: int, last_seq: int, code_changes: int, requests: int
) -> list[tuple[str, bool, list[float]]]:
    rng = random.Random(11)
    products = list(dict.fromkeys(JIRA_PROJECTS.values()))
    categories = ["todo", "in_progress", "done", "cancelled"]
    kinds = ["story", "task", "bug", "epic", "subtask"]
    W = "/api/v1/work-items"

    def varied(make: Callable[[], dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        return [(W, make()) for _ in range(requests)]

    plan: list[tuple[str, bool, list[tuple[str, dict[str, Any]]]]] = [
        (
            "work-items ?product&status_category",
            True,
            varied(lambda: {"product": rng.choice(products), "status_category": rng.choice(categories)}),
        ),
        (
            "work-items ?product&kind",
            True,
            varied(lambda: {"product": rng.choice(products), "kind": rng.choice(kinds)}),
        ),
        ("work-items ?kind", True, varied(lambda: {"kind": rng.choice(kinds)})),
        ("work-items ?label", True, varied(lambda: {"label": rng.choice(LABELS)})),
        (
            "work-items ?product&label",
            True,
            varied(lambda: {"product": rng.choice(products), "label": rng.choice(LABELS)}),
        ),
        (
            "work-items ?assignee (email)",
            True,
            varied(lambda: {"assignee": f"person{rng.randrange(1, people + 1):05d}@acme.example"}),
        ),
        (
            "work-items ?assignee&status_category",
            True,
            varied(lambda: {"assignee": str(rng.randrange(1, people + 1)), "status_category": "in_progress"}),
        ),
        (
            "work-items ?updated_since (1-30 days)",
            True,
            varied(lambda: {"updated_since": (NOW - timedelta(days=rng.randrange(1, 31))).isoformat()}),
        ),
        (
            "work-items ?product&updated_since",
            True,
            varied(
                lambda: {
                    "product": rng.choice(products),
                    "updated_since": (NOW - timedelta(days=rng.randrange(1, 31))).isoformat(),
                }
            ),
        ),
        (
            "work-items ?q (key)",
            True,
            varied(lambda: {"q": f"{rng.choice(list(JIRA_PROJECTS))}-{rng.randrange(1, n // 4)}"}),
        ),
        ("work-items ?q (title word)", True, varied(lambda: {"q": rng.choice(THINGS).split()[0]})),
        (
            "work-items ?product&q (title words)",
            True,
            varied(lambda: {"product": rng.choice(products), "q": rng.choice(THINGS)}),
        ),
        ("work-items/{id}", False, [(f"{W}/{rng.randrange(1, n + 1)}", {}) for _ in range(requests)]),
        (
            "products/{key}/summary",
            False,
            [(f"/api/v1/products/{rng.choice(products)}/summary", {}) for _ in range(requests)],
        ),
        (
            "code-changes ?product&state",
            False,
            [
                (
                    "/api/v1/code-changes",
                    {"product": rng.choice(products), "state": rng.choice(["open", "merged", "closed"])},
                )
                for _ in range(requests)
            ],
        ),
        (
            "changes ?after=SEQ",
            False,
            [("/api/v1/changes", {"after": rng.randrange(0, last_seq), "limit": 100}) for _ in range(requests)],
        ),
    ]
    results = []
    for name, is_list, calls in plan:
        times, _ = timed(client, calls)
        results.append((name, is_list, times))
        print(f"  measured {name}", file=sys.stderr, flush=True)
    # pagination: walk 5 pages by cursor under a filter, timing every page
    pages: list[float] = []
    for _ in range(max(1, requests // 5)):
        params: dict[str, Any] = {
            "product": rng.choice(products),
            "status_category": rng.choice(categories),
            "limit": 100,
        }
        for _ in range(5):
            started = time.perf_counter()
            body = client.get(W, params=params).raise_for_status().json()
            pages.append((time.perf_counter() - started) * 1000)
            if not body["next_cursor"]:
                break
            params["cursor"] = body["next_cursor"]
    results.append(("work-items pages 1-5 by cursor (limit 100)", True, pages))
    return results


def percentile(times: list[float], p: int) -> float:
    return quantiles(times, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-items", type=int, default=100000)
    parser.add_argument("--requests", type=int, default=200, help="requests per call")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # database URL, in the server process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="wait for Enter before dropping the database")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgresql") else "SQLite"
    with empty_database() as database_url:
        started = time.perf_counter()
        counts, token = seed(database_url, args.work_items)
        print(
            f"seeded {database} in {time.perf_counter() - started:.0f} s: "
            + ", ".join(f"{t} {c}" for t, c in counts.items()),
            flush=True,
        )
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", database_url, "--port", str(port)], cwd=ROOT)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=60, headers={"Authorization": f"Bearer {token}"}
            ) as client:
                for _ in range(600):
                    try:
                        if client.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.1)
                else:
                    raise SystemExit("the API did not start")
                results = measure(
                    client,
                    args.work_items,
                    people_for(args.work_items),
                    counts["change"],
                    counts.get("code_change", 0),
                    args.requests,
                )
        finally:
            server.terminate()
            server.wait()
        report(results, args.work_items, database, args.requests)
        if args.keep:
            input(f"database {database_url} kept; Enter drops it ")


def report(results: list[tuple[str, bool, list[float]]], work_items: int, database: str, requests: int) -> None:
    print(f"\n{work_items} work items on {database}, {requests} requests per call, over HTTP")
    print(f"{'call':<44}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, _, times in results:
        print(f"{name:<44}{len(times):>9}{percentile(times, 50):>9.1f}{percentile(times, 99):>9.1f}")
    list_p99 = max(percentile(t, 99) for _, is_list, t in results if is_list)
    worst = max((r for r in results if r[1]), key=lambda r: percentile(r[2], 99))[0]
    summary_p99 = percentile(next(t for name, _, t in results if name.startswith("products/")), 99)
    print(
        f"list p99 = {list_p99:.1f} ms ({worst}; target {LIST_TARGET_MS}), "
        f"summary p99 = {summary_p99:.1f} ms (target {SUMMARY_TARGET_MS})"
    )


if __name__ == "__main__":
    main()

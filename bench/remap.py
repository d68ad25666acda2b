"""Re-mapping throughput: every stored raw record of a connection made again with a newly
applied mapping, against a ceiling measured in the same run (plain JMESPath evaluating the
same mapping's expressions over the same payloads, read from the same database).

    python bench/remap.py --records 100000
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test python bench/remap.py

The store is filled by a full sync of N issues from the Jira simulator (in a process of its
own), so the stored payloads are what the connector stores; filling is not measured. The
candidate is the shipped jira.yaml with one status moved to another category ('To Do'
counted as in progress). Rounds alternate between the candidate and the shipped mapping,
so each round changes the same records. On PostgreSQL, each round starts with VACUUM
ANALYZE of the tables (autovacuum's work; it is off on the test server). Each measured
phase runs in a fresh process:

- the ceiling reads the payloads a batch at a time and evaluates every expression of the
  mapping (container, fields, people's parts, link sources, conditions) with
  jmespath.compile(...).search(payload, options) and opsync's functions; only the
  evaluation is timed, not the reading;
- the remap applies the mapping and times the whole run (start_remap, remap_connection:
  reading raw records, mapping, writing the changed records, their links and Change rows).

Target (issue 10): at least half the ceiling's records/s. The summary line is the median
round's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ scripts share helpers
from backfill import PAGE_SIZE, PROJECTS, ROOT, TOKEN, empty_database, peak_rss_mb, simulator

CONNECTION = "bench"
TARGET = 0.5
BATCH = 2000  # payloads read at a time by the ceiling, as the remap reads them
# The candidate: the shipped status_category rule, with 'To Do' counted as in progress (a
# team whose to-do column holds committed work): about a quarter of the simulator's issues.
SHIPPED_RULE = r"contains(['Won\'t Do', 'Cancelled', 'Canceled', 'Declined'], fields.status.name) && 'cancelled'"
CANDIDATE_RULE = "fields.status.name == 'To Do' && 'indeterminate' || " + SHIPPED_RULE


def mapping_text(which: str) -> str:
    from opsync.service.plugins import connector_class

    shipped = connector_class("jira").default_mapping().read_text()
    if SHIPPED_RULE not in shipped:
        raise SystemExit("jira.yaml's status_category rule changed: update SHIPPED_RULE in bench/remap.py")
    return shipped if which == "shipped" else shipped.replace(SHIPPED_RULE, CANDIDATE_RULE)


def open_hub(database_url: str, base_url: str) -> Any:
    from opsync.service.config import HubConfig
    from opsync.service.hub import Hub
    from opsync.service.plugins import connector_class
    from opsync.service.settings import Settings

    settings = connector_class("jira").settings_model(
        id=CONNECTION,
        kind="jira",
        base_url=base_url,
        token=TOKEN,
        page_size=PAGE_SIZE,
        email="bench@acme.example",
        projects=PROJECTS,
    )
    return Hub.open(Settings(database_url=database_url), HubConfig(connections={CONNECTION: settings}))


# -- filling: a full sync from the simulator ----------------------------------------------


def fill(database_url: str, simulator_url: str) -> dict[str, Any]:
    from opsync.service.sync import sync_connection

    hub = open_hub(database_url, simulator_url)
    try:
        started = time.perf_counter()
        run = asyncio.run(sync_connection(hub, CONNECTION))
        seconds = time.perf_counter() - started
    finally:
        asyncio.run(hub.close())
    if run.status != "succeeded":
        raise SystemExit(f"filling failed: {run.errors}")
    return {"records": run.created, "seconds": seconds}


# -- the ceiling: plain JMESPath over the same payloads -----------------------------------


def expressions_of(rules: Any) -> list[Any]:
    """Every Expression in a compiled mapping, once per place it stands (as the mapping
    evaluates it), found by walking its rules: dataclasses, dicts and lists."""
    from opsync.service.mapping import Expression

    found: dict[int, Any] = {}

    def walk(item: Any) -> None:
        if isinstance(item, Expression):
            found.setdefault(id(item), item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            for f in dataclasses.fields(item):
                if f.name not in ("source", "warnings", "map_keys_at", "value_map", "default"):
                    walk(getattr(item, f.name))
        elif isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, (list, tuple)):
            for value in item:
                walk(value)

    walk(rules)
    return list(found.values())


def ceiling(database_url: str, which: str) -> dict[str, Any]:
    import jmespath
    import sqlalchemy as sa

    from opsync.service.db import create_db_engine
    from opsync.service.functions import FUNCTIONS
    from opsync.service.mapping import parse_mapping
    from opsync.service.models import StoredPayload, table_of

    mapping = parse_mapping(f"jira.yaml ({which})", mapping_text(which))
    sources = [e.source for e in expressions_of(mapping.records["issue"])]
    compiled = [jmespath.compile(source) for source in sources]
    options = jmespath.Options(custom_functions=FUNCTIONS)
    raw = table_of(StoredPayload)
    engine = create_db_engine(database_url)
    records, reading, evaluating, last = 0, 0.0, 0.0, 0
    while True:
        started = time.perf_counter()
        with engine.connect() as db:  # by id alone (the bench's one connection): a range of the primary key
            rows = db.execute(
                sa.select(raw.c.id, raw.c.payload).where(raw.c.id > last).order_by(raw.c.id).limit(BATCH)
            ).all()
        reading += time.perf_counter() - started
        if not rows:
            break
        last = rows[-1].id
        payloads = [row.payload for row in rows]
        started = time.perf_counter()
        for payload in payloads:
            for expression in compiled:
                expression.search(payload, options=options)
        evaluating += time.perf_counter() - started
        records += len(payloads)
    engine.dispose()
    return {
        "records": records,
        "seconds": evaluating,
        "reading_seconds": reading,
        "expressions": len(sources),
        "peak_rss_mb": peak_rss_mb(),
    }


# -- opsync: apply the mapping, time the remap run ----------------------------------------


def remap(database_url: str, which: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from opsync.service.mapping import parse_mapping
    from opsync.service.remap import remap_connection, start_remap

    hub = open_hub(database_url, "http://127.0.0.1:9")  # never asked: a remap reads only the store

    def changes() -> int:
        with hub.engine.connect() as db:
            return db.exec_driver_sql("SELECT count(*) FROM change").scalar_one()

    async def run() -> Any:
        lease, run_id = await start_remap(hub, CONNECTION)
        return await remap_connection(hub, CONNECTION, lease, run_id)

    try:
        hub.apply_mapping(parse_mapping(f"jira.yaml ({which})", mapping_text(which)), by="bench")
        before = changes()
        started = time.perf_counter()
        result = asyncio.run(run())
        seconds = time.perf_counter() - started
        written = changes() - before
        with hub.engine.connect() as db:
            records = db.execute(sa.text("SELECT count(*) FROM work_item")).scalar_one()
    finally:
        asyncio.run(hub.close())
    if result.status != "succeeded" or result.failed:
        raise SystemExit(f"the remap {result.status}: {result.errors}")
    return {
        "records": result.fetched,
        "seconds": seconds,
        "changed": result.updated,
        "unchanged": result.unchanged,
        "change_rows": written,
        "work_items": records,
        "peak_rss_mb": peak_rss_mb(),
    }


# -- running the phases -------------------------------------------------------------------


def settle(database_url: str) -> None:
    """On PostgreSQL, what autovacuum does after a bulk write (statistics, dead rows), done
    before each round so that its plans are a deployment's: this server runs autovacuum off,
    and without statistics the lookup of a batch's rows scans every row of the connection."""
    if not database_url.startswith("postgresql"):
        return
    import sqlalchemy as sa

    engine = sa.create_engine(database_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        for table in ("raw_record", "work_item", "link", "change"):
            db.exec_driver_sql(f"VACUUM ANALYZE {table}")
    engine.dispose()


def measure(phase: str, url: str, which: str = "", sim: str = "", profile: Path | None = None) -> dict[str, Any]:
    """Run one phase in a fresh process; its figures come back as JSON. With profile, the
    process runs under py-spy, which writes a speedscope file there."""
    command = [sys.executable, __file__, "--phase", phase, "--url", url, "--mapping", which or "shipped"]
    command += ["--sim", sim] if sim else []
    if profile:
        py_spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "speedscope", "--rate", "200"]
        command = [*py_spy, "--output", str(profile), "--", *command]
    output = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


def run_phase(phase: str, url: str, which: str, sim: str) -> None:
    if phase == "fill":
        figures = fill(url, sim)
    elif phase == "ceiling":
        figures = ceiling(url, which)
    else:
        figures = remap(url, which)
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="ceiling and remap measured this many times")
    parser.add_argument("--profile", type=Path, help="record the first remap with py-spy into this file")
    parser.add_argument("--phase", choices=["fill", "ceiling", "remap"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mapping", choices=["candidate", "shipped"], help=argparse.SUPPRESS)
    parser.add_argument("--sim", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 9 or not 1 <= args.records <= 200_000:
        parser.error("keep the run bounded: 1..9 rounds, 1..200000 records")
    if args.phase:
        run_phase(args.phase, args.url, args.mapping, args.sim)
        return
    database = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgresql") else "SQLite"
    with empty_database() as url:
        with simulator("jira", args.records, latency_ms=0.0) as sim:
            filled = measure("fill", url, sim=sim.url)
        print(
            f"remap of {args.records} Jira issues stored on {database}, {args.rounds} rounds; filled by a full "
            f"sync from the Jira simulator ({filled['records']} issues in {filled['seconds']:.0f} s, not measured)",
            flush=True,
        )
        rounds = []
        for n in range(args.rounds):
            # the candidate, then back to the shipped mapping: every round changes the same records
            which = "candidate" if n % 2 == 0 else "shipped"
            settle(url)
            bare = measure("ceiling", url, which)
            remapped = measure("remap", url, which, profile=args.profile if n == 0 else None)
            ratio = (remapped["records"] / remapped["seconds"]) / (bare["records"] / bare["seconds"])
            print(
                f"  round {n + 1} ({which}): ratio remap/jmespath {ratio:.2f}, {remapped['changed']} records changed",
                flush=True,
            )
            rounds.append((ratio, which, bare, remapped))
    ratio, which, bare, remapped = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
    print(f"the median round ({which} applied):")
    print(f"{'phase':<40}{'records':>9}{'seconds':>10}{'records/s':>11}{'peak RSS MB':>13}")
    for name, figures in (
        (f"plain JMESPath, {bare['expressions']} expressions", bare),
        ("opsync remap run", remapped),
    ):
        rate = figures["records"] / figures["seconds"]
        print(
            f"{name:<40}{figures['records']:>9}{figures['seconds']:>10.2f}{rate:>11.0f}{figures['peak_rss_mb']:>13.0f}"
        )
    print(
        f"reading the payloads for the ceiling (not counted in it): {bare['reading_seconds']:.2f} s; "
        f"records changed by the remap: {remapped['changed']} of {remapped['work_items']} "
        f"({remapped['change_rows']} Change rows), unchanged {remapped['unchanged']}"
    )
    with_reading = (remapped["records"] / remapped["seconds"]) / (
        bare["records"] / (bare["seconds"] + bare["reading_seconds"])
    )
    print(f"(against JMESPath with the reading counted too: ratio {with_reading:.2f})")
    print(f"ratio remap/jmespath = {ratio:.2f} (target {TARGET})")


if __name__ == "__main__":
    main()

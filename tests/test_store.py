"""The store's versioning rules, against a real database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from opsync.service.entities.work_item import WorkItem
from opsync.service.mapping import LinkRef, PersonRef, Unified, content_hash
from opsync.service.models import Change, Link, Person
from opsync.service.store import Store, Tombstone

T0 = datetime(2024, 3, 1, tzinfo=UTC)
_connections = itertools.count()


def item(external_id: str, minute: int, title: str, **values: object) -> Unified:
    record = Unified(
        entity="work_item",
        external_id=external_id,
        version=T0 + timedelta(minutes=minute),
        product_key="payments",
        values={"title": title, "key": f"PAY-{external_id}", **values},
        people={},
        links=[],
    )
    record.content_hash = content_hash(record)
    return record


def stored(engine, connection_id: str) -> dict[str, WorkItem]:
    with Session(engine) as session:
        rows = session.exec(select(WorkItem).where(WorkItem.connection_id == connection_id)).all()
        return {r.external_id: r for r in rows}


def changes(engine) -> list[Change]:
    with Session(engine) as session:
        return list(session.exec(select(Change).order_by(Change.seq)).all())


def test_new_record_is_created_with_a_change_row(engine):
    store = Store(engine)
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 0, "Refunds")])
    assert tx.counts.created == 1
    assert stored(engine, "jira-a")["1"].title == "Refunds"
    [change] = changes(engine)
    assert (change.seq, change.op, change.fields["title"]) == (1, "create", [None, "Refunds"])


def test_same_version_same_content_is_a_no_op(engine):
    store = Store(engine)
    for _ in range(2):
        with store.transaction("jira-a") as tx:
            tx.upsert([item("1", 0, "Refunds")])
    assert (tx.counts.unchanged, tx.counts.created) == (1, 0)
    assert len(changes(engine)) == 1


def test_older_version_is_stale_and_changes_nothing(engine):
    store = Store(engine)
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 5, "New title")])
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 1, "Old title")])
    assert tx.counts.stale == 1
    assert stored(engine, "jira-a")["1"].title == "New title"
    assert len(changes(engine)) == 1


def test_newer_version_writes_only_the_changed_fields(engine):
    store = Store(engine)
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 0, "Refunds", status="To Do")])
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 1, "Refunds", status="Done")])
    last = changes(engine)[-1]
    assert (last.seq, last.op, last.fields) == (2, "update", {"status": ["To Do", "Done"]})


def test_delete_tombstones_and_an_older_upsert_does_not_resurrect(engine):
    store = Store(engine)
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 0, "Refunds")])
    with store.transaction("jira-a") as tx:
        tx.delete([Tombstone("work_item", "1", T0 + timedelta(minutes=3))])
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 2, "Refunds v2")])
    row = stored(engine, "jira-a")["1"]
    assert row.deleted_at == T0 + timedelta(minutes=3)
    assert [c.op for c in changes(engine)] == ["create", "delete", "update"]


def test_a_newer_upsert_resurrects_a_tombstone(engine):
    store = Store(engine)
    with store.transaction("jira-a") as tx:
        tx.delete([Tombstone("work_item", "1", T0)])
        tx.upsert([item("1", 1, "Back again")])
    row = stored(engine, "jira-a")["1"]
    assert (row.deleted_at, row.title) == (None, "Back again")


def test_identities_are_per_connection(engine):
    store = Store(engine)
    with store.transaction("jira-a") as tx:
        tx.upsert([item("1", 0, "A")])
    with store.transaction("jira-b") as tx:
        tx.upsert([item("1", 0, "B")])
    assert stored(engine, "jira-a")["1"].title == "A"
    assert stored(engine, "jira-b")["1"].title == "B"


def test_people_are_merged_across_tools_by_email(engine):
    store = Store(engine)
    record = item("1", 0, "A")
    record.people = {"assignee": PersonRef("acc-1", "Ada Lovelace", "Ada@Acme.example")}
    record.content_hash = content_hash(record)
    with store.transaction("jira-a") as tx:
        tx.upsert([record])
    other = item("2", 0, "B")
    other.people = {"assignee": PersonRef("1000", "adal", "ada@acme.example", "adal")}
    other.content_hash = content_hash(other)
    with store.transaction("github-a") as tx:
        tx.upsert([other])
    with Session(engine) as session:
        assert len(session.exec(select(Person)).all()) == 1
    assert stored(engine, "jira-a")["1"].assignee_id == stored(engine, "github-a")["2"].assignee_id


def test_links_are_replaced_when_a_record_changes(engine):
    store = Store(engine)
    record = item("1", 0, "A")
    record.links = [LinkRef("implements", "work_item", "PAY-1", "inferred", "PAY-1 named in title")]
    record.content_hash = content_hash(record)
    with store.transaction("gh") as tx:
        tx.upsert([record])
    record = item("1", 1, "B")
    record.links = [LinkRef("implements", "work_item", "PAY-2", "inferred", "PAY-2 named in title")]
    record.content_hash = content_hash(record)
    with store.transaction("gh") as tx:
        tx.upsert([record])
    with Session(engine) as session:
        assert [link.to_key for link in session.exec(select(Link)).all()] == ["PAY-2"]


def test_failed_transaction_writes_nothing_and_leaves_no_gap(engine):
    store = Store(engine)
    try:
        with store.transaction("jira-a") as tx:
            tx.upsert([item("1", 0, "A")])
            raise RuntimeError("crash mid-page")
    except RuntimeError:
        pass
    with store.transaction("jira-a") as tx:
        tx.upsert([item("2", 0, "B")])
    assert [c.seq for c in changes(engine)] == [1]
    assert list(stored(engine, "jira-a")) == ["2"]


# -- any order of the same events ends in the same state -----------------------------------

event = st.one_of(
    st.tuples(st.just("upsert"), st.sampled_from(["1", "2"]), st.integers(0, 4), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("delete"), st.sampled_from(["1", "2"]), st.integers(0, 4), st.none()),
)


def _apply(store: Store, connection_id: str, events: list[tuple], per_transaction: int) -> None:
    for start in range(0, len(events), per_transaction):
        with store.transaction(connection_id) as tx:
            for op, external_id, minute, title in events[start : start + per_transaction]:
                if op == "upsert":
                    tx.upsert([item(external_id, minute, title)])
                else:
                    tx.delete([Tombstone("work_item", external_id, T0 + timedelta(minutes=minute))])


def _state(engine, connection_id: str) -> dict[str, tuple]:
    return {
        k: (r.title, r.source_updated_at, r.deleted_at, r.content_hash)
        for k, r in stored(engine, connection_id).items()
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event, min_size=1, max_size=8), data=st.data())
def test_any_order_of_the_same_events_ends_in_the_same_state(engine, events, data):
    store = Store(engine)
    reordered = data.draw(st.permutations(events))
    first, second = f"c{next(_connections)}", f"c{next(_connections)}"
    _apply(store, first, events, per_transaction=1)
    _apply(store, second, reordered, per_transaction=data.draw(st.integers(1, 4)))
    assert _state(engine, first) == _state(engine, second)


def test_started_at_is_stamped_by_the_first_change_into_progress_and_kept(engine):
    store = Store(engine)
    moves = [(0, "todo"), (5, "in_progress"), (9, "todo"), (12, "in_progress"), (20, "done")]
    for minute, category in moves:
        with store.transaction("gh-a") as tx:
            tx.upsert([item("7", minute, "Retry refunds", status_category=category)])
        started = stored(engine, "gh-a")["7"].started_at
        assert started == (None if minute < 5 else T0 + timedelta(minutes=5)), (minute, category)


def test_a_started_at_the_mapping_reads_wins_over_the_hubs_stamp(engine):
    store = Store(engine)
    told = T0 - timedelta(days=2)
    with store.transaction("jira-a") as tx:
        tx.upsert([item("8", 0, "Ledger export", status_category="in_progress", started_at=told)])
    assert stored(engine, "jira-a")["8"].started_at == told


def test_a_person_first_met_by_login_takes_the_name_a_later_tool_gives(engine):
    store = Store(engine)
    by_login = PersonRef("1001", display_name="adal", email="ada.lovelace@acme.example", login="adal")
    by_name = PersonRef("5b10ac8d", display_name="Ada Lovelace", email="ada.lovelace@acme.example")
    for connection, ref, name in (("gh-a", by_login, "adal"), ("jira-a", by_name, "Ada Lovelace")):
        with store.transaction(connection) as tx:
            record = item("1", 0, "Refunds")
            record.people = {"assignee": ref}
            tx.upsert([record])
        with Session(engine) as session:
            [person] = session.exec(select(Person)).all()
        assert person.display_name == name, connection

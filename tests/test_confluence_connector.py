"""The Confluence connector against the simulator over real HTTP: pulls, cursors, ids, one page,
faults; and what it reads out of storage bodies."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from opsync.connectors.confluence.connector import ConfluenceConnector, ConfluenceSettings
from opsync.connectors.confluence.storage import read_storage
from opsync.service.contract import FatalError, PullPage, RawRecord
from opsync_simulators.confluence import ConfluenceSim
from opsync_simulators.server import serving

EMAIL, TOKEN = "ops@acme.example", "api-token"


def connector(url: str, token: str = TOKEN, **settings: Any) -> ConfluenceConnector:
    return ConfluenceConnector(
        ConfluenceSettings(id="confluence-test", base_url=url, email=EMAIL, token=token, **settings)
    )


def pull(confluence: ConfluenceConnector, cursor: str | None, pages: int | None = None) -> list[PullPage]:
    """The pages of a pull; with pages, only that many, as if the process died after storing them."""

    async def collect() -> list[PullPage]:
        collected: list[PullPage] = []
        async for page in confluence.pull(cursor):
            collected.append(page)
            if len(collected) == pages:
                break
        return collected

    return run(confluence, collect())


def records(pages: list[PullPage]) -> list[RawRecord]:
    return [record for page in pages for record in page.records]


def run(confluence: ConfluenceConnector, call: Any) -> Any:
    async def go() -> Any:
        try:
            return await call
        finally:
            await confluence.aclose()

    return asyncio.run(go())


def test_full_pull_yields_every_current_and_archived_page_exactly_once() -> None:
    sim = ConfluenceSim(pages=150)
    sim.trash_page(sorted(sim.ids())[7])
    with serving(sim.app) as url:
        pages = pull(connector(url, page_size=20), None)
    ids = [record.external_id for record in records(pages)]
    assert len(ids) == len(set(ids)) and set(ids) == sim.ids()
    assert len(pages) >= 9  # 20 a page, a space at a time


def test_pulled_record_is_the_v2_page_with_labels_space_url_and_version() -> None:
    sim = ConfluenceSim(pages=30)
    held = next(page for page in sim.pages() if page.labels and page.version > 1)
    with serving(sim.app) as url:
        record = next(r for r in records(pull(connector(url), None)) if r.external_id == str(held.id))
    space = sim.space(held.space)
    assert record.record_type == "page"
    assert record.payload["title"] == held.title and record.payload["status"] == "current"
    assert record.payload["body"]["storage"]["value"] == held.body
    assert record.payload["labels"] == held.labels
    assert record.payload["space"] == {"id": str(space.id), "key": space.key, "name": space.name}
    assert record.payload["_links"]["webui"].startswith(f"/spaces/{held.space}/pages/{held.id}/")
    assert record.payload["url"] == f"{url}/wiki" + record.payload["_links"]["webui"]
    assert record.payload["version"]["number"] == held.version
    assert record.version == held.version_at and record.version.tzinfo is not None


def test_pulled_records_name_the_jira_issues_the_simulator_planted_and_how() -> None:
    sim = ConfluenceSim(pages=80, jira_numbers={"PAY": 30, "CHK": 30, "GRO": 30})
    with serving(sim.app) as url:
        pulled = {r.external_id: r for r in records(pull(connector(url), None))}
    planted = {str(page.id): page.jira_refs for page in sim.pages() if page.jira_refs}
    assert planted
    for page_id, refs in planted.items():
        found = {ref["key"]: ref["via"] for ref in pulled[page_id].payload["jira_keys"]}
        assert found == refs, page_id
        assert all(ref["evidence"] for ref in pulled[page_id].payload["jira_keys"])
    assert all(not record.payload["jira_keys"] for page_id, record in pulled.items() if page_id not in planted)


def test_body_text_is_what_a_reader_sees_without_markup() -> None:
    sim = ConfluenceSim(pages=20)
    page_id = sim.create_page(
        "PAY",
        "Refunds",
        '<h1>Refunds</h1><p>Money back &amp; fast.</p><ac:structured-macro ac:name="code">'
        '<ac:parameter ac:name="language">sql</ac:parameter><ac:plain-text-body><![CDATA[select 1]]>'
        "</ac:plain-text-body></ac:structured-macro><ul><li>one</li><li>two</li></ul>",
    )["id"]
    with serving(sim.app) as url:
        record = next(r for r in records(pull(connector(url), None)) if r.external_id == page_id)
    assert record.payload["body_text"] == "Refunds\nMoney back & fast.\nselect 1\none\ntwo"


def test_each_page_of_the_pull_carries_the_cursor_to_resume_from() -> None:
    sim = ConfluenceSim(pages=120)
    with serving(sim.app) as url:
        first = pull(connector(url, page_size=10), None, pages=3)
        rest = pull(connector(url, page_size=10), first[-1].cursor)
    before, after = {r.external_id for r in records(first)}, {r.external_id for r in records(rest)}
    assert before | after == sim.ids()
    assert len(before & after) <= 10  # at most the page under way when the run stopped
    state = json.loads(rest[-1].cursor)
    assert set(state["spaces"]) == {"PAY", "CHK", "GRO"}
    assert all(space["since"] and space["next"] is None for space in state["spaces"].values())


def test_incremental_pull_brings_edits_and_new_pages_and_drops_nothing_else() -> None:
    sim = ConfluenceSim(pages=100)
    with serving(sim.app) as url:
        cursor = pull(connector(url), None)[-1].cursor
        edited = sorted(sim.ids())[10]
        sim.update_page(edited, title="Edited after the backfill")
        created = sim.create_page("GRO", "Brand new")["id"]
        later = pull(connector(url, overlap_seconds=0), cursor)
    pulled = {r.external_id: r for r in records(later)}
    assert {edited, created} <= set(pulled)
    assert pulled[edited].payload["title"] == "Edited after the backfill"
    assert len(pulled) <= 2 + 3  # and at most the newest page of each space again, at the cursor itself


def test_incremental_pull_reads_few_requests_when_little_changed() -> None:
    sim = ConfluenceSim(pages=300)
    with serving(sim.app) as url:
        cursor = pull(connector(url, page_size=50), None)[-1].cursor
        sim.update_page(sorted(sim.ids())[0], title="One change")
        before = sim.api_requests
        pull(connector(url, page_size=50, overlap_seconds=0), cursor)
    # the spaces, one listing page per space, and the labels of the pages that changed
    assert sim.api_requests - before <= 1 + 3 + 4


def test_list_ids_is_every_listed_page_by_space_and_leaves_out_trashed_and_purged() -> None:
    sim = ConfluenceSim(pages=120)
    trashed, purged = sorted(sim.ids())[20:22]
    sim.trash_page(trashed)
    sim.purge_page(purged)
    with serving(sim.app) as url:
        confluence = connector(url)
        listing = run(confluence, confluence.list_ids())
    assert listing.ids == {"page": sim.ids()}
    assert trashed not in listing.ids["page"] and purged not in listing.ids["page"]
    assert listing.containers == {"pay", "chk", "gro"} and listing.unlisted == {}


def test_a_configured_space_confluence_does_not_show_is_unlisted_and_fails_a_pull() -> None:
    sim = ConfluenceSim(pages=30)
    with serving(sim.app) as url:
        confluence = connector(url, spaces=["PAY", "OPS"])
        listing = run(confluence, confluence.list_ids())
        with pytest.raises(FatalError, match="OPS"):
            pull(connector(url, spaces=["PAY", "OPS"]), None)
    assert listing.containers == {"pay"}
    assert "OPS" in listing.unlisted["ops"] and EMAIL not in listing.unlisted["ops"]
    assert listing.ids["page"] == {str(page.id) for page in sim.pages() if page.space == "PAY"}


def test_spaces_setting_limits_the_pull_to_those_spaces() -> None:
    sim = ConfluenceSim(pages=60)
    with serving(sim.app) as url:
        pulled = records(pull(connector(url, spaces=["CHK"]), None))
    assert {record.payload["space"]["key"] for record in pulled} == {"CHK"}
    assert {record.external_id for record in pulled} == {str(page.id) for page in sim.pages() if page.space == "CHK"}


def test_fetch_one_is_the_page_now_and_none_once_trashed_or_purged() -> None:
    sim = ConfluenceSim(pages=20)
    live, trashed, purged = sorted(sim.ids())[3:6]
    sim.update_page(live, title="Fetched")
    sim.trash_page(trashed)
    sim.purge_page(purged)

    async def fetch_all(confluence: ConfluenceConnector) -> list[RawRecord | None]:
        return [await confluence.fetch_one("page", page_id) for page_id in (live, trashed, purged, "not-a-number")]

    with serving(sim.app) as url:
        confluence = connector(url)
        fetched = run(confluence, fetch_all(confluence))
    record = fetched[0]
    assert record is not None and record.external_id == live and record.payload["title"] == "Fetched"
    assert record.version == sim.page(live).version_at and record.payload["space"]["key"] == sim.page(live).space
    assert fetched[1:] == [None, None, None]


def test_fetch_one_of_a_page_in_a_space_not_synced_is_none() -> None:
    sim = ConfluenceSim(pages=20)
    elsewhere = next(page for page in sim.pages() if page.space == "GRO")
    with serving(sim.app) as url:
        confluence = connector(url, spaces=["PAY"])
        assert run(confluence, confluence.fetch_one("page", str(elsewhere.id))) is None


def test_fetch_one_of_another_record_type_is_refused() -> None:
    confluence = connector("https://acme.atlassian.net")
    with pytest.raises(FatalError, match="'page'"):
        run(confluence, confluence.fetch_one("blogpost", "1"))


def test_rate_limits_and_server_errors_are_retried_and_the_pull_completes() -> None:
    sim = ConfluenceSim(pages=40)
    sim.inject(status=429, retry_after=0.2, count=2)
    sim.inject(status=503, count=1, match="/pages")
    with serving(sim.app) as url:
        ids = {r.external_id for r in records(pull(connector(url), None))}
    assert ids == sim.ids()
    assert sim.faults.served() == {"429": 2, "503": 1}


def test_dropped_connections_and_malformed_bodies_are_retried() -> None:
    sim = ConfluenceSim(pages=40)
    sim.inject(drop_connection=True, match="/labels")
    sim.inject(malformed=True, match="sort=modified-date")
    with serving(sim.app) as url:
        ids = {r.external_id for r in records(pull(connector(url), None))}
    assert ids == sim.ids()
    assert sim.faults.served() == {"drop_connection": 1, "malformed": 1}


def test_rejected_credentials_are_fatal_and_say_what_to_fix() -> None:
    sim = ConfluenceSim(pages=5, credentials=(EMAIL, TOKEN))
    with serving(sim.app) as url:
        with pytest.raises(FatalError, match="email and token") as raised:
            pull(connector(url, token="wrong"), None)
    assert "wrong" not in str(raised.value) and EMAIL not in str(raised.value)  # credentials are never shown
    assert sim.api_requests == 1  # not retried


def test_a_cursor_this_connector_did_not_write_is_fatal() -> None:
    with pytest.raises(FatalError, match="full sync"):
        pull(connector("https://acme.atlassian.net"), '{"v": 9}')


def test_a_backfill_whose_listing_cursor_confluence_refuses_starts_the_space_again() -> None:
    sim = ConfluenceSim(pages=60)
    stale = {"v": 1, "spaces": {"PAY": {"next": "/wiki/api/v2/pages?sort=modified-date&cursor=expired"}}}
    with serving(sim.app) as url:
        pulled = records(pull(connector(url, spaces=["PAY"]), json.dumps(stale)))
    assert {record.external_id for record in pulled} == {str(page.id) for page in sim.pages() if page.space == "PAY"}


def test_base_url_may_be_the_site_or_its_wiki() -> None:
    sim = ConfluenceSim(pages=10)
    with serving(sim.app) as url:
        confluence = connector(f"{url}/wiki/")
        listing = run(confluence, confluence.list_ids())
    assert listing.ids["page"] == sim.ids()


def test_default_mapping_is_the_shipped_confluence_yaml_mapping_pages_to_documents() -> None:
    path = ConfluenceConnector.default_mapping()
    mapping = yaml.safe_load(path.read_text())
    assert path.name == "confluence.yaml" and mapping["kind"] == "confluence"
    assert mapping["records"]["page"]["entity"] == "document"
    assert mapping["records"]["page"]["container"] == "space.key"


# --- storage bodies, read offline ---------------------------------------------------------


def test_storage_names_jira_keys_by_macro_link_and_text_keeping_the_most_deliberate() -> None:
    body = (
        '<p>See <a href="https://acme.atlassian.net/browse/PAY-12?focusedCommentId=1">the epic</a>.</p>'
        '<ac:structured-macro ac:name="jira"><ac:parameter ac:name="key">CHK-7</ac:parameter>'
        "</ac:structured-macro><p>Related: GRO-3, CHK-7 and PAY-12.</p>"
        '<p><ac:link><ri:url ri:value="https://acme.atlassian.net/browse/GRO-9" /></ac:link></p>'
    )
    found = {ref.key: (ref.via, ref.evidence) for ref in read_storage(body).jira}
    assert found == {
        "CHK-7": ("macro", "a Jira issue macro"),
        "PAY-12": ("link", "a link to https://acme.atlassian.net/browse/PAY-12?focusedCommentId=1"),
        "GRO-9": ("link", "a link to https://acme.atlassian.net/browse/GRO-9"),
        "GRO-3": ("text", "named in the page's text"),
    }


def test_storage_ignores_key_shaped_words_outside_the_named_projects_and_inside_words() -> None:
    body = "<p>UTF-8 and ISO-8601 in PAY-4; xPAY-5 and PAY-6x are no keys; a/PAY-7 is a path.</p>"
    assert [ref.key for ref in read_storage(body, frozenset({"PAY"})).jira] == ["PAY-4"]
    assert {ref.key for ref in read_storage(body).jira} == {"PAY-4", "UTF-8", "ISO-8601"}


def test_storage_macro_settings_are_not_text_and_a_jira_macro_shows_its_key() -> None:
    body = (
        '<ac:structured-macro ac:name="toc"><ac:parameter ac:name="maxLevel">2</ac:parameter>'
        '</ac:structured-macro><p>Tracked in</p><ac:structured-macro ac:name="jira">'
        '<ac:parameter ac:name="server">System Jira</ac:parameter>'
        '<ac:parameter ac:name="key">PAY-1</ac:parameter></ac:structured-macro>'
    )
    assert read_storage(body).text == "Tracked in\nPAY-1"


def test_empty_or_missing_storage_reads_as_nothing() -> None:
    assert read_storage(None).text == "" and read_storage("").jira == []

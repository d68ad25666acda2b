"""The Confluence simulator's spaces and pages: seeded generation and rendering in the shapes
of Confluence Cloud's REST API v2 and of its webhooks.

One space per product, keyed like the product's Jira project (PAY, CHK, GRO), so that a space
and a project name the same product. Pages are written in storage format (XHTML) and some name
Jira issues the three ways people do: a link to /browse/KEY, a Jira macro, or the key in prose.
The simulator remembers which keys it planted and how (SimPage.jira_refs), as the truth a
connector's extraction is compared with.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from opsync_simulators.clock import to_ms
from opsync_simulators.world import PRODUCTS, SimPerson

FIRST_SPACE_ID = 98305
FIRST_PAGE_ID = 1179649
HISTORY = timedelta(days=120)  # seeded pages were written in the last four months
LABELS = ["prd", "spec", "runbook", "retro", "decision", "rfc", "onboarding", "q3-planning"]
FEATURES = [
    "refund flow",
    "card tokenisation",
    "3-D Secure challenge",
    "one-page checkout",
    "coupon codes",
    "address autocomplete",
    "onboarding emails",
    "referral programme",
    "invoice PDFs",
    "currency rounding",
    "webhook retries",
    "tax rates",
]
KINDS = [("PRD", "prd"), ("Tech spec", "spec"), ("Runbook", "runbook"), ("RFC", "rfc"), ("Decision", "decision")]
# How a page names a Jira issue (SimPage.jira_refs): the simulator's own words for the three ways.
LINK, MACRO, TEXT = "link", "macro", "text"


@dataclass
class SimSpace:
    id: int
    key: str
    name: str
    author: int  # index into the sim's people
    created: datetime
    homepage_id: int | None = None


@dataclass
class SimPage:
    id: int
    space: str  # space key
    title: str
    parent_id: int | None
    status: str  # current, archived, trashed (purged pages leave the sim)
    author: int
    owner: int
    created: datetime
    version: int
    version_at: datetime
    version_author: int
    version_message: str
    body: str  # storage format
    labels: list[str]
    position: int
    jira_refs: dict[str, str] = field(default_factory=dict)  # Jira key -> LINK, MACRO or TEXT
    modified: datetime | None = None  # last change of any kind (webhooks' modificationDate)

    def __post_init__(self) -> None:
        if self.modified is None:
            self.modified = self.version_at


def iso(moment: datetime) -> str:
    """Confluence v2's timestamps: UTC, milliseconds, Z."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def make_spaces(keys: tuple[str, ...], now: datetime) -> dict[str, SimSpace]:
    names = {product.jira_project: product.name for product in PRODUCTS}
    return {
        key: SimSpace(
            id=FIRST_SPACE_ID + 98304 * n,
            key=key,
            name=names.get(key, key.title()),
            author=n % 3,
            created=to_ms(now - HISTORY - timedelta(days=30 + n)),
        )
        for n, key in enumerate(keys)
    }


def jira_macro(key: str, rng: random.Random) -> str:
    macro_id = uuid.UUID(int=rng.getrandbits(128))
    return (
        f'<ac:structured-macro ac:name="jira" ac:schema-version="1" ac:macro-id="{macro_id}">'
        '<ac:parameter ac:name="server">System Jira</ac:parameter>'
        '<ac:parameter ac:name="serverId">8f2b6c1e-7d3a-3c5e-9b1f-2a4d6e8f0a1c</ac:parameter>'
        f'<ac:parameter ac:name="key">{key}</ac:parameter></ac:structured-macro>'
    )


def jira_reference(key: str, how: str, site_url: str, rng: random.Random) -> str:
    """One paragraph that names key the way `how` says."""
    if how == LINK:
        label = rng.choice(["the tracking ticket", "this epic", "the Jira issue", key])
        return f'<p>Delivery is tracked in <a href="{site_url}/browse/{key}">{label}</a>.</p>'
    if how == MACRO:
        return f"<p>Status of the work:</p>{jira_macro(key, rng)}"
    return f"<p>Open questions are collected in {key} &amp; its sub-tasks.</p>"


def storage_body(
    title: str, feature: str, refs: dict[str, str], site_url: str, rng: random.Random, person: SimPerson
) -> str:
    """A page body in storage format: headings, prose, a list, an info panel, a code macro,
    a mention of a person, and the planted Jira references."""
    parts = [
        "<h1>Overview</h1>",
        f"<p>This page describes the {feature} work: why we do it, what changes for customers,"
        " and how we will know it worked.</p>",
        '<ac:structured-macro ac:name="info" ac:schema-version="1"><ac:rich-text-body>'
        f'<p>Owner: <ac:link><ri:user ri:account-id="{person.account_id}"/></ac:link></p>'
        "</ac:rich-text-body></ac:structured-macro>",
        "<h2>Goals</h2><ul>"
        + "".join(f"<li>{goal}</li>" for goal in rng.sample(["fewer support tickets", "faster flow", "less risk"], 2))
        + "</ul>",
    ]
    parts += [jira_reference(key, how, site_url, rng) for key, how in refs.items()]
    if rng.random() < 0.4:
        parts.append(
            '<ac:structured-macro ac:name="code" ac:schema-version="1">'
            '<ac:parameter ac:name="language">python</ac:parameter>'
            f"<ac:plain-text-body><![CDATA[retry(max_attempts=3)  # {title}]]></ac:plain-text-body>"
            "</ac:structured-macro>"
        )
    parts.append("<p>Last reviewed by the team&rsquo;s product manager.</p>")
    return "".join(parts)


def plant_refs(space: str, jira_numbers: dict[str, int], rng: random.Random) -> dict[str, str]:
    """0 to 3 Jira keys for a page, mostly of its own product's project, each named one way."""
    count = rng.choices([0, 1, 2, 3], weights=[3, 4, 2, 1])[0]
    refs: dict[str, str] = {}
    projects = sorted(jira_numbers)
    for _ in range(count):
        project = space if space in jira_numbers and rng.random() < 0.8 else rng.choice(projects)
        key = f"{project}-{rng.randint(1, max(jira_numbers[project], 1))}"
        refs.setdefault(key, rng.choice([LINK, MACRO, TEXT]))
    return refs


def generate_pages(
    count: int,
    seed: int,
    spaces: dict[str, SimSpace],
    people: list[SimPerson],
    jira_numbers: dict[str, int],
    site_url: str,
    now: datetime,
) -> list[SimPage]:
    """A homepage per space, then count pages under them, oldest first; deterministic for a seed
    (times are offsets back from now)."""
    rng = random.Random(seed)
    pages: list[SimPage] = []
    by_space: dict[str, list[int]] = {key: [] for key in spaces}
    next_id = FIRST_PAGE_ID
    start = now - HISTORY
    for space in spaces.values():
        author = rng.randrange(len(people))
        created = to_ms(start + timedelta(minutes=rng.randint(0, 600)))
        home = SimPage(
            id=next_id,
            space=space.key,
            title=f"{space.name} Home",
            parent_id=None,
            status="current",
            author=author,
            owner=author,
            created=created,
            version=1,
            version_at=created,
            version_author=author,
            version_message="",
            body=f"<p>Welcome to the {space.name} space: specs, runbooks and decisions.</p>",
            labels=[],
            position=0,
        )
        space.homepage_id = home.id
        pages.append(home)
        by_space[space.key].append(home.id)
        next_id += 65536 // 16
    keys = sorted(spaces)
    offsets = sorted(rng.random() for _ in range(count))
    for n, offset in enumerate(offsets):
        space_key = keys[rng.randrange(len(keys))]
        kind, label = rng.choice(KINDS)
        feature = rng.choice(FEATURES)
        author = rng.randrange(len(people))
        created = to_ms(start + HISTORY * offset * 0.9 + timedelta(hours=1))
        versions = rng.choices([1, 2, 3, 5, 8], weights=[4, 3, 2, 1, 1])[0]
        edited = to_ms(created + (now - created) * rng.random() * 0.8) if versions > 1 else created
        editor = rng.randrange(len(people)) if versions > 1 else author
        refs = plant_refs(space_key, jira_numbers, rng)
        title = f"{kind}: {feature} ({n + 1})"
        pages.append(
            SimPage(
                id=next_id,
                space=space_key,
                title=title,
                parent_id=rng.choice(by_space[space_key]),
                status="archived" if rng.random() < 0.05 else "current",
                author=author,
                owner=author,
                created=created,
                version=versions,
                version_at=edited,
                version_author=editor,
                version_message="" if versions == 1 else rng.choice(["", "Review comments", "Scope update"]),
                body=storage_body(title, feature, refs, site_url, rng, people[author]),
                labels=sorted({label, *rng.sample(LABELS, rng.randint(0, 2))}),
                position=n + 1,
                jira_refs=refs,
            )
        )
        by_space[space_key].append(next_id)
        next_id += 1 + rng.randint(0, 40)
    return pages


def webui(page: SimPage) -> str:
    return f"/spaces/{page.space}/pages/{page.id}/{quote_plus(page.title)}"


def render_space(space: SimSpace, people: list[SimPerson]) -> dict[str, Any]:
    return {
        "id": str(space.id),
        "key": space.key,
        "name": space.name,
        "type": "global",
        "status": "current",
        "authorId": people[space.author].account_id,
        "createdAt": iso(space.created),
        "homepageId": str(space.homepage_id) if space.homepage_id is not None else None,
        "description": None,
        "icon": None,
        "_links": {"webui": f"/spaces/{space.key}"},
    }


def render_page(page: SimPage, space: SimSpace, people: list[SimPerson], body_format: str | None) -> dict[str, Any]:
    """A page as GET /wiki/api/v2/pages lists it; the body only when a body-format is asked for."""
    body: dict[str, Any] = {}
    if body_format == "storage":
        body = {"storage": {"representation": "storage", "value": page.body}}
    return {
        "id": str(page.id),
        "status": page.status,
        "title": page.title,
        "spaceId": str(space.id),
        "parentId": str(page.parent_id) if page.parent_id is not None else None,
        "parentType": "page" if page.parent_id is not None else None,
        "position": page.position,
        "authorId": people[page.author].account_id,
        "ownerId": people[page.owner].account_id,
        "lastOwnerId": None,
        "createdAt": iso(page.created),
        "version": {
            "number": page.version,
            "message": page.version_message,
            "minorEdit": False,
            "authorId": people[page.version_author].account_id,
            "createdAt": iso(page.version_at),
        },
        "body": body,
        "_links": {
            "webui": webui(page),
            "editui": f"/pages/resumedraft.action?draftId={page.id}",
            "tinyui": f"/x/{_tiny(page.id)}",
        },
    }


def render_webhook_page(page: SimPage, people: list[SimPerson], site_url: str) -> dict[str, Any]:
    """The page as a Connect webhook names it: ids and times, epoch milliseconds, no body."""
    assert page.modified is not None
    return {
        "creatorAccountId": people[page.author].account_id,
        "spaceKey": page.space,
        "modificationDate": epoch_ms(page.modified),
        "lastModifierAccountId": people[page.version_author].account_id,
        "self": f"{site_url}/wiki{webui(page)}",
        "id": page.id,
        "idAsString": str(page.id),
        "title": page.title,
        "creationDate": epoch_ms(page.created),
        "contentType": "page",
        "version": page.version,
    }


def _tiny(page_id: int) -> str:
    """Confluence's tiny links: the id's little-endian bytes in URL-safe base64, unpadded."""
    raw = page_id.to_bytes(8, "little").rstrip(b"\x00")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")

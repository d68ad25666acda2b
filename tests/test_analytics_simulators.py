"""The analytics simulators over HTTP: their data, their auth, their refusals and their limits."""

from __future__ import annotations

import json
import statistics
from datetime import timedelta

import httpx
import pytest

from opsync_simulators.amplitude import AmplitudeSim
from opsync_simulators.analytics import TODAY_SHARE, AnalyticsSim
from opsync_simulators.mixpanel import MixpanelSim
from opsync_simulators.posthog import PostHogSim
from opsync_simulators.server import serving

AMPLITUDE_AUTH = ("amp-api-key", "amp-secret-key")
MIXPANEL_AUTH = ("opsync.1a2b3c.mp-service-account", "mp-secret")
POSTHOG_AUTH = {"Authorization": "Bearer phx_simulated_personal_key"}


def trends(event: str, math: str, first: str, last: str) -> dict:
    series = [{"kind": "EventsNode", "event": event, "math": math}]
    return {"query": {"kind": "TrendsQuery", "series": series, "dateRange": {"date_from": first, "date_to": last}}}


def amplitude_params(event: str, first: str, last: str, measure: str = "totals") -> dict:
    return {"e": json.dumps({"event_type": event}), "start": first, "end": last, "m": measure, "i": "1"}


def test_the_same_seed_gives_the_same_numbers_and_uniques_never_exceed_totals() -> None:
    first, again, other = AmplitudeSim(seed=5).truth(), AmplitudeSim(seed=5).truth(), AmplitudeSim(seed=6).truth()
    product_days = {key: count for key, count in first.days.items() if first.products[key[0]]}
    assert {k: v for k, v in again.days.items() if k in product_days} == product_days
    assert other.days != first.days
    assert all(0 < count.uniques <= count.totals for count in product_days.values())
    assert len(first.days) == len(first.products) * ((first.today - first.first_day).days + 1)


def test_a_launch_shows_in_the_numbers_before_and_after_it() -> None:
    sim = MixpanelSim()
    truth, launch = sim.truth(), sim.today() - timedelta(days=60)

    def weekly_mean(first: int, last: int) -> float:
        wanted = {(launch + timedelta(days=n)).isoformat() for n in range(first, last)}
        days = [count for (event, day), count in truth.days.items() if event == "Checkout Completed" and day in wanted]
        return statistics.mean(count.totals for count in days)

    assert weekly_mean(0, 28) > 1.2 * weekly_mean(-28, 0)


def test_today_is_partial_and_late_events_revise_a_day() -> None:
    sim = PostHogSim()
    today = sim.stream.full_day("Signed Up", sim.today())
    assert sim.count("Signed Up", sim.today()).totals == round(today.totals * TODAY_SHARE)
    day = sim.today() - timedelta(days=3)
    before = sim.count("Signed Up", day)
    assert sim.revise("Signed Up", day.isoformat(), events=9, users=4) == type(before)(
        before.totals + 9, before.uniques + 4
    )
    assert sim.truth().days[("Signed Up", day.isoformat())].totals == before.totals + 9
    with pytest.raises(ValueError, match="cannot come from"):
        sim.revise("Signed Up", day, events=1, users=2)
    with pytest.raises(ValueError, match="outside the history"):
        sim.revise("Signed Up", sim.today() + timedelta(days=1), events=1, users=1)


def test_amplitude_answers_daily_segmentation_and_refuses_bad_ranges_as_amplitude_does() -> None:
    sim = AmplitudeSim()
    day = sim.today() - timedelta(days=2)
    with serving(sim.app) as url, httpx.Client(base_url=url, auth=AMPLITUDE_AUTH) as client:
        stamp = day.strftime("%Y%m%d")
        body = client.get("/api/2/events/segmentation", params=amplitude_params("Invite Sent", stamp, stamp)).json()
        assert body["data"]["xValues"] == [day.isoformat()]
        assert body["data"]["series"] == [[sim.count("Invite Sent", day).totals]]
        backwards = client.get("/api/2/events/segmentation", params=amplitude_params("Invite Sent", stamp, "20200101"))
        assert backwards.status_code == 400 and backwards.text.startswith("HTTP 400: Bad Request (")
        too_long = client.get("/api/2/events/segmentation", params=amplitude_params("Invite Sent", "20240101", stamp))
        assert too_long.status_code == 400 and "Time range exceeds maximum" in too_long.text
        listed = client.get("/api/2/events/list").json()["data"]
        assert {row["value"] for row in listed} == set(sim.event_names())
        assert httpx.get(f"{url}/api/2/events/list", auth=("amp-api-key", "wrong")).status_code == 401


def test_mixpanel_answers_segmentation_by_event_and_day_and_needs_a_project() -> None:
    sim = MixpanelSim()
    day = (sim.today() - timedelta(days=1)).isoformat()
    with serving(sim.app) as url, httpx.Client(base_url=url, auth=MIXPANEL_AUTH) as client:
        query = {"project_id": 2195193, "event": "Signed Up", "from_date": day, "to_date": day, "type": "unique"}
        body = client.get("/api/query/segmentation", params=query).json()
        assert body == {
            "data": {"series": [day], "values": {"Signed Up": {day: sim.truth().days[("Signed Up", day)].uniques}}},
            "legend_size": 1,
        }
        refused = client.get("/api/query/segmentation", params={**query, "from_date": "2099-01-01"})
        assert refused.status_code == 400 and refused.json()["request"].startswith("/api/query/segmentation?")
        assert client.get("/api/query/segmentation", params={**query, "project_id": ""}).status_code == 400
        assert client.get("/api/query/segmentation", params={**query, "project_id": 1}).status_code == 403
        assert client.get("/api/query/events/names", params={"project_id": 2195193}).json()[0] == "$mp_web_page_view"


def test_posthog_answers_a_trends_query_and_pages_event_definitions() -> None:
    sim = PostHogSim()
    first, last = sim.today() - timedelta(days=2), sim.today()
    with serving(sim.app) as url, httpx.Client(base_url=url, headers=POSTHOG_AUTH) as client:
        answer = client.post("/api/projects/4242/query/", json=trends("Signed Up", "dau", str(first), str(last)))
        [result] = answer.json()["results"]
        assert result["days"] == [(first + timedelta(days=n)).isoformat() for n in range(3)]
        assert result["data"] == [sim.count("Signed Up", first + timedelta(days=n)).uniques for n in range(3)]
        assert result["action"]["math"] == "dau" and result["count"] == sum(result["data"])
        backwards = client.post("/api/projects/4242/query/", json=trends("Signed Up", "dau", str(last), str(first)))
        assert backwards.status_code == 400 and backwards.json()["type"] == "validation_error"
        page = client.get("/api/projects/4242/event_definitions/", params={"limit": 4}).json()
        assert page["count"] == 10 and len(page["results"]) == 4 and "offset=4" in page["next"]
        assert client.get("/api/projects/1/event_definitions/").status_code == 403
        unauthorized = httpx.get(f"{url}/api/projects/4242/event_definitions/")
        assert unauthorized.status_code == 401 and unauthorized.json()["type"] == "authentication_error"


@pytest.mark.parametrize("sim", [AmplitudeSim(rate_limit=2), PostHogSim(rate_limit=2)], ids=["amplitude", "posthog"])
def test_requests_beyond_the_rate_limit_get_429_with_retry_after(sim: AnalyticsSim) -> None:
    amplitude = sim.tool == "amplitude"
    path = "/api/2/events/list" if amplitude else "/api/projects/4242/event_definitions/"
    with serving(sim.app) as url:
        credentials = {"auth": AMPLITUDE_AUTH} if amplitude else {"headers": POSTHOG_AUTH}
        with httpx.Client(base_url=url, **credentials) as client:
            statuses = [client.get(path) for _ in range(4)]
    assert [answer.status_code for answer in statuses][:2] == [200, 200]
    assert statuses[2].status_code == 429 and 0 < float(statuses[2].headers["Retry-After"]) <= 1


def test_faults_and_truth_through_the_admin_routes() -> None:
    sim = AmplitudeSim()
    day = (sim.today() - timedelta(days=1)).isoformat()
    with serving(sim.app) as url, httpx.Client(base_url=url, auth=AMPLITUDE_AUTH) as client:
        assert client.post("/_sim/faults", json={"status": 503}).status_code == 204
        assert client.get("/api/2/events/list").status_code == 503
        revised = client.post("/_sim/revisions", json={"event": "Invite Sent", "day": day, "events": 5, "users": 2})
        truth = client.get("/_sim/truth").json()
    [row] = [r for r in truth["days"] if r["event"] == "Invite Sent" and r["day"] == day]
    assert (row["totals"], row["uniques"]) == (revised.json()["totals"], revised.json()["uniques"])
    assert truth["products"]["Invite Sent"] == "growth"

"""Real answers read by the same code that reads the simulators', and the shipped mappings
against the simulators' events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from opsync.connectors.amplitude.connector import AmplitudeConnector, daily_values
from opsync.connectors.analytics.connector import AnalyticsConnector
from opsync.connectors.mixpanel.connector import MixpanelConnector
from opsync.connectors.posthog.connector import PostHogConnector, daily_series
from opsync.service.mapping import Expression
from opsync_simulators.analytics import PRODUCT_EVENTS


def insight(shared_fixtures: Path, name: str) -> dict:
    return json.loads((shared_fixtures / "posthog" / "insights" / name).read_text())


def test_a_saved_posthog_trends_line_reads_as_a_daily_series_of_its_event(shared_fixtures: Path) -> None:
    [result] = insight(shared_fixtures, "trendsLine.json")["result"]
    event, measure, values = daily_series(result)
    assert (event, measure) == ("$pageview", "totals")  # a legacy insight: no action, math total by default
    assert values == dict(zip(result["days"], result["data"], strict=True))
    assert values["2022-03-08"] == 22870 and sum(values.values()) == result["count"]


def test_a_posthog_bold_number_is_refused_as_not_a_daily_series(shared_fixtures: Path) -> None:
    [result] = insight(shared_fixtures, "trendsNumber.json")["result"]
    with pytest.raises(ValueError, match="'signed_up' has 0 numbers for its days: not a daily series"):
        daily_series(result)


def test_an_amplitude_segmentation_answer_reads_by_day() -> None:
    body = {"data": {"series": [[3, 0, 7]], "seriesLabels": [0], "xValues": ["2026-11-01", "2026-11-02", "2026-11-03"]}}
    assert daily_values(body) == {"2026-11-01": 3, "2026-11-02": 0, "2026-11-03": 7}
    with pytest.raises(ValueError, match="2 values for 3 days"):
        daily_values({"data": {"series": [[3, 0]], "xValues": ["2026-11-01", "2026-11-02", "2026-11-03"]}})


@pytest.mark.parametrize("connector", [AmplitudeConnector, MixpanelConnector, PostHogConnector])
def test_each_shipped_mapping_names_a_metric_for_every_product_event_and_its_container_is_the_event(
    connector: type[AnalyticsConnector],
) -> None:
    """Evaluated with the mapping's own expressions; the metric_point entity itself is the core's."""
    path = connector.default_mapping()
    assert path.name == f"{connector.kind}.yaml"
    document = yaml.safe_load(path.read_text())
    assert document["kind"] == connector.kind
    rule = document["records"]["event_day"]
    assert rule["entity"] == "metric_point"
    fields = rule["fields"]

    def mapped(spec: str | dict, payload: dict) -> object:
        found = Expression(spec["from"] if isinstance(spec, dict) else spec, str(path))(payload)
        return spec["map"].get(found) if isinstance(spec, dict) else found

    metrics = set()
    for event in PRODUCT_EVENTS:
        for measure in ("totals", "uniques"):
            payload = {"tool": connector.kind, "event": event.name, "day": "2026-11-01", "measure": measure, "value": 5}
            assert mapped(rule["container"], payload) == event.name  # portfolio.yaml: the product's events
            assert mapped(fields["day"], payload) == "2026-11-01" and mapped(fields["value"], payload) == 5
            metrics.add(mapped(fields["metric"], payload))
    assert None not in metrics and len(metrics) == 2 * len(PRODUCT_EVENTS)
    assert "checkout_conversions" in metrics
    assert mapped(fields["metric"], {"event": "$pageview", "measure": "totals"}) is None  # not a product's

"""Which Flashduty alert each callback opens or closes, through the real app and a Flashduty stand-in
that takes the harsher reading of its docs: an alert's severity is fixed when it opens."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.callbacks import load_json


@pytest.fixture
def relay(client, stub) -> Any:
    app = client(FLASHDUTY_PUSH_URL=stub.url, FLASHDUTY_INTEGRATION_KEY="key-default")

    def post(callback: dict[str, Any]) -> None:
        answer = app.post("/", json=callback)
        assert answer.status_code == 200, answer.get_json()

    return post


def at_level(callback: dict[str, Any], level: str) -> dict[str, Any]:
    return {**copy.deepcopy(callback), "Level": level}


def recovery_of(firing: dict[str, Any], level: str) -> dict[str, Any]:
    """The firing's recovery, as thin as Volcengine may send it: each resource by its id alone."""
    thin = [{"Id": r["Id"], "Region": r.get("Region")} for r in firing["Resources"]]
    return {
        **copy.deepcopy(firing),
        "Type": "MetricRecovered",
        "Level": level,
        "Resources": [],
        "RecoveredResources": thin,
    }


def open_severities(stub) -> list[str]:
    return sorted(alert["alert_severity"] for alert in stub.open_alert_records())


@pytest.mark.parametrize("recovery_level", ["critical", "warning", "recovery", ""])
def test_an_escalation_pages_at_its_new_level_and_the_recovery_closes_every_level(
    relay, stub, recovery_level: str
) -> None:
    firing = load_json("samples/metric.json")
    relay(at_level(firing, "warning"))
    assert open_severities(stub) == ["Warning", "Warning"]
    relay(at_level(firing, "critical"))
    assert "Critical" in open_severities(stub), "the escalation did not open a Critical alert"
    relay(recovery_of(firing, recovery_level))
    assert stub.open_alert_records() == []


def test_a_de_escalation_keeps_the_critical_alert_until_the_alarm_recovers(relay, stub) -> None:
    firing = load_json("samples/metric.json")
    relay(at_level(firing, "critical"))
    relay(at_level(firing, "warning"))
    assert open_severities(stub) == ["Critical", "Critical", "Warning", "Warning"]
    relay(recovery_of(firing, "warning"))
    assert stub.open_alert_records() == []


@pytest.mark.parametrize("part", ["metric-gpu-cards", "metric-clb-listeners"])
def test_a_thin_recovery_closes_exactly_the_parts_it_recovers(relay, stub, part: str) -> None:
    relay(load_json(f"tests/events/{part}.json"))
    assert len(stub.open_alert_records()) == 2
    relay(load_json(f"tests/events/{part}-recovered-thin.json"))
    assert stub.open_alert_records() == []


def test_a_recovery_of_one_part_leaves_its_sibling_open(relay, stub) -> None:
    relay(load_json("tests/events/metric-gpu-cards.json"))
    recovery = load_json("tests/events/metric-gpu-cards-recovered-thin.json")
    recovery["RecoveredResources"] = recovery["RecoveredResources"][1:]
    relay(recovery)
    (still_open,) = stub.open_alert_records()
    assert still_open["labels"]["dim_device_name"] == "nvidia0"


def test_resources_named_only_by_instance_id_are_alerts_of_their_own(relay, stub) -> None:
    relay(load_json("tests/events/metric-instance-id-only.json"))
    alerts = stub.open_alert_records()
    assert len(alerts) == 2
    assert sorted(a["labels"]["resource_id"] for a in alerts) == ["i-only0000000000000a", "i-only0000000000000b"]
    assert not any("unknown resource" in a["title"] for a in alerts)


def test_a_unitless_metric_shows_no_unit(relay, stub) -> None:
    relay(load_json("tests/events/metric-unit-none.json"))
    (alert,) = stub.open_alert_records()
    assert "None" not in alert["title"] and "= 12.5 (threshold 8)" in alert["title"], alert["title"]
    assert "metric_unit" not in alert["labels"]


def test_a_gpu_redeploy_closes_when_it_succeeds(relay, stub) -> None:
    relay(load_json("tests/events/event-gpu-redeploy-inquiring.json"))
    (alert,) = stub.open_alert_records()
    assert alert["alert_severity"] == "Critical"
    relay(load_json("tests/events/event-gpu-redeploy-succeeded.json"))
    assert stub.open_alert_records() == []


def test_a_file_system_gone_read_only_pages(relay, stub) -> None:
    relay(load_json("tests/events/event-filesystem-read-only.json"))
    (alert,) = stub.open_alert_records()
    assert alert["alert_severity"] == "Critical" and "FileSystemReadOnly.Change" in alert["title"]
